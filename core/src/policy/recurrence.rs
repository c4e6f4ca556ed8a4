//! The recurrence breaker's memory: every heal argo-drift asked for, followed until it took
//! effect, and what each healed field did afterwards.
//!
//! A heal is an Argo CD operation that takes seconds to minutes; the drift it is healing is
//! still there in every analysis until it has run and the watch has seen the result. So a
//! recurrence is counted only once a heal is over, and only when the field shows that the
//! remediation did not hold:
//! - **came back**: Argo CD's operation ended and the field was seen in sync since, then it
//!   drifted again — the remediation worked and something undid it;
//! - **heal failed**: the operation ended `Failed` or `Error` and the field is still drifted — a
//!   heal that cannot be applied is automation that does not converge, and retrying it each
//!   cooldown against a live system is what the breaker exists to stop;
//! - **did not take**: the operation succeeded but the field was never seen in sync, and the
//!   cooldown is over (so the watch has long caught up) — the sync does not touch the field.
//!
//! Nothing counts while an operation is requested or running (ours or anyone's), nor a drift
//! seen after a successful operation before the field was seen in sync (the watch may not
//! have caught up yet), nor a request Argo CD refused (nothing ran; the record is dropped).
//! The Argo CD operation is recognised by the heal's id, carried in its `info` (Argo CD copies
//! the sync request's `infos` into `operation.info`, server/application/application.go, and
//! the operation into `status.operationState.operation`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::RecurrenceSpec;

/// The name of the operation `info` entry that carries a heal's id.
pub const HEAL_INFO: &str = "argo-drift-heal";

/// A heal's operation never seen, and none running, this long after it was requested: it was
/// replaced or dropped before it ran (Argo CD sets `operation` as it accepts the request, so a
/// real one is visible within the watch's latency).
const UNSEEN_AFTER_SECONDS: i64 = 60;

/// After a successful operation, how long a field may still look drifted before "did not
/// take" can count (on top of the cooldown): the watch's latency, generously.
const SETTLE_SECONDS: i64 = 30;

/// At most this many heals are remembered per application.
const KEEP_PER_APP: usize = 50;

/// What the Application says about Argo CD operations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperationView {
    /// An operation is requested (`operation`) or running (`status.operationState.phase`
    /// `Running`/`Terminating`), whoever started it.
    pub running: bool,
    /// The last operation that ended (`status.operationState`).
    pub last: Option<EndedOperation>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndedOperation {
    /// The heal id in its `info`, if argo-drift asked for it.
    pub heal_id: Option<String>,
    /// Phase `Succeeded` (else `Failed` or `Error`).
    pub succeeded: bool,
    pub message: String,
}

/// One heal argo-drift asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealRecord {
    pub id: String,
    pub requested_at: i64,
    /// How it ended, once seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<HealEnd>,
    /// The fields it was to heal (`<resource> <field>`), each with what became of it.
    pub fields: BTreeMap<String, FieldAfterHeal>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealEnd {
    /// When argo-drift saw it end.
    pub at: i64,
    pub outcome: HealOutcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealOutcome {
    /// Argo CD's operation succeeded.
    Succeeded,
    /// Argo CD's operation ended `Failed` or `Error`.
    Failed,
    /// Another operation took its place before its end was seen, or it never showed up.
    Unseen,
    /// Workflows were started: not an Argo CD operation, nothing waits for them.
    WorkflowStarted,
}

impl HealOutcome {
    fn describe(self) -> &'static str {
        match self {
            HealOutcome::Succeeded => "Argo CD's sync succeeded",
            HealOutcome::Failed => "Argo CD's sync failed",
            HealOutcome::Unseen => "its sync's end was not seen",
            HealOutcome::WorkflowStarted => "Workflow started",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldAfterHeal {
    /// First seen in sync after the heal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_sync_at: Option<i64>,
    /// Counted as a recurrence (once per heal and field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurred: Option<Recurrence>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recurrence {
    pub at: i64,
    pub kind: RecurrenceKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecurrenceKind {
    CameBack,
    HealFailed,
    DidNotTake,
}

/// A field that tripped the breaker, with the heals that count against it, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrippedField {
    pub field: String,
    pub heals: Vec<HealTrace>,
}

/// One heal of a tripped field, as the page tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealTrace {
    pub id: String,
    pub requested_at: i64,
    pub outcome: HealOutcome,
    pub ended_at: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_sync_at: Option<i64>,
    pub recurred: Recurrence,
}

/// Take in what is seen now: an operation of ours that ended (or vanished), and healed fields
/// that are in sync.
pub(super) fn observe(
    records: &mut [HealRecord],
    op: &OperationView,
    drifted: &BTreeSet<String>,
    now: i64,
) {
    for r in records.iter_mut() {
        if r.ended.is_none() {
            let ours = op
                .last
                .as_ref()
                .filter(|e| e.heal_id.as_deref() == Some(r.id.as_str()));
            if let Some(e) = ours {
                r.ended = Some(HealEnd {
                    at: now,
                    outcome: if e.succeeded {
                        HealOutcome::Succeeded
                    } else {
                        HealOutcome::Failed
                    },
                    message: e.message.clone(),
                });
            } else if !op.running && now - r.requested_at >= UNSEEN_AFTER_SECONDS {
                r.ended = Some(HealEnd {
                    at: now,
                    outcome: HealOutcome::Unseen,
                    message: String::new(),
                });
            }
        }
        for (field, after) in r.fields.iter_mut() {
            if after.in_sync_at.is_none() && !drifted.contains(field) {
                after.in_sync_at = Some(now);
            }
        }
    }
}

/// The heal argo-drift is still waiting for, if any.
pub(super) fn in_flight(records: &[HealRecord]) -> Option<&HealRecord> {
    records.iter().find(|r| r.ended.is_none())
}

/// Count the recurrences that happened by `now` (call only with nothing in flight) and return
/// the drifted fields that reached `spec.count` within the window.
pub(super) fn count(
    records: &mut [HealRecord],
    drifted: &BTreeSet<String>,
    spec: RecurrenceSpec,
    cooldown: i64,
    now: i64,
) -> Vec<TrippedField> {
    for r in records.iter_mut() {
        let Some(end) = r.ended.clone() else {
            continue;
        };
        let settled = now >= (r.requested_at + cooldown).max(end.at + SETTLE_SECONDS);
        for (field, after) in r.fields.iter_mut() {
            if after.recurred.is_some() || !drifted.contains(field) {
                continue;
            }
            let kind = if after.in_sync_at.is_some() {
                Some(RecurrenceKind::CameBack)
            } else if end.outcome == HealOutcome::Failed {
                Some(RecurrenceKind::HealFailed)
            } else if settled && end.outcome != HealOutcome::WorkflowStarted {
                // A Workflow may be read-only (diagnose): not changing the field is no failure.
                Some(RecurrenceKind::DidNotTake)
            } else {
                None
            };
            after.recurred = kind.map(|kind| Recurrence { at: now, kind });
        }
    }
    let window = i64::from(spec.window_seconds);
    let mut tripped = Vec::new();
    for field in drifted {
        let heals: Vec<HealTrace> = records
            .iter()
            .filter_map(|r| {
                let after = r.fields.get(field)?;
                let recurred = after.recurred.filter(|c| now - c.at < window)?;
                let end = r.ended.as_ref()?;
                Some(HealTrace {
                    id: r.id.clone(),
                    requested_at: r.requested_at,
                    outcome: end.outcome,
                    ended_at: end.at,
                    message: end.message.clone(),
                    in_sync_at: after.in_sync_at,
                    recurred,
                })
            })
            .collect();
        if heals.len() >= spec.count as usize {
            tripped.push(TrippedField {
                field: field.clone(),
                heals,
            });
        }
    }
    tripped
}

/// Forget heals that can no longer count, keeping the one in flight.
pub(super) fn prune(records: &mut Vec<HealRecord>, window: i64, now: i64) {
    records.retain(|r| {
        let Some(end) = &r.ended else {
            return true;
        };
        let latest = r
            .fields
            .values()
            .flat_map(|f| [f.in_sync_at, f.recurred.map(|c| c.at)])
            .flatten()
            .chain([r.requested_at, end.at])
            .max()
            .unwrap_or(r.requested_at);
        now - latest < window
    });
    if records.len() > KEEP_PER_APP {
        records.drain(..records.len() - KEEP_PER_APP);
    }
}

pub(super) fn utc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// What happened, for the page and the Event: each field with its heals, their outcome and
/// times.
pub fn describe(tripped: &[TrippedField], spec: RecurrenceSpec) -> String {
    let fields: Vec<String> = tripped
        .iter()
        .map(|t| {
            let heals: Vec<String> = t
                .heals
                .iter()
                .map(|h| {
                    let mut s = format!(
                        "heal requested {}, {} {}",
                        utc(h.requested_at),
                        h.outcome.describe(),
                        utc(h.ended_at)
                    );
                    if h.outcome == HealOutcome::Failed && !h.message.is_empty() {
                        s.push_str(&format!(" ({})", h.message));
                    }
                    if let Some(t) = h.in_sync_at {
                        s.push_str(&format!(", in sync {}", utc(t)));
                    }
                    s.push_str(&match h.recurred.kind {
                        RecurrenceKind::CameBack => {
                            format!(", drifted back {}", utc(h.recurred.at))
                        }
                        RecurrenceKind::HealFailed => {
                            format!(", still drifted {}", utc(h.recurred.at))
                        }
                        RecurrenceKind::DidNotTake => {
                            format!(", never seen in sync by {}", utc(h.recurred.at))
                        }
                    });
                    s
                })
                .collect();
            format!(
                "{} drifted again after {} heal(s) within {} min ({})",
                t.field,
                t.heals.len(),
                spec.window_seconds / 60,
                heals.join("; ")
            )
        })
        .collect();
    format!(
        "recurrence breaker: {}; automation stopped for the app",
        fields.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(utc(1_800_000_000), "2027-01-15T08:00:00Z");
    }
}
