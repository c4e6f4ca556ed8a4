//! What a notification says. Built from drift reports, whose Secret values are already masked,
//! so nothing here can carry a secret; templates and channels only see these fields.

use argo_drift_core::Severity;
use serde::{Deserialize, Serialize};

/// Everything argo-drift notifies about. Later features (approvals, guardrails, hooks) emit the
/// kinds after `DriftResolved` through this same layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    DriftDetected,
    DriftChanged,
    DriftResolved,
    /// Drift of a severity has lasted longer than the limit set for it (`staleAfterSeconds`).
    DriftStale,
    ApprovalRequested,
    ApprovalExpired,
    ActionTaken,
    ActionHeld,
    RecurrenceBreakerTripped,
    SyncGated,
    RollbackDone,
    RollbackFailed,
}

impl EventKind {
    pub const ALL: [EventKind; 12] = [
        EventKind::DriftDetected,
        EventKind::DriftChanged,
        EventKind::DriftResolved,
        EventKind::DriftStale,
        EventKind::ApprovalRequested,
        EventKind::ApprovalExpired,
        EventKind::ActionTaken,
        EventKind::ActionHeld,
        EventKind::RecurrenceBreakerTripped,
        EventKind::SyncGated,
        EventKind::RollbackDone,
        EventKind::RollbackFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::DriftDetected => "drift-detected",
            EventKind::DriftChanged => "drift-changed",
            EventKind::DriftResolved => "drift-resolved",
            EventKind::DriftStale => "drift-stale",
            EventKind::ApprovalRequested => "approval-requested",
            EventKind::ApprovalExpired => "approval-expired",
            EventKind::ActionTaken => "action-taken",
            EventKind::ActionHeld => "action-held",
            EventKind::RecurrenceBreakerTripped => "recurrence-breaker-tripped",
            EventKind::SyncGated => "sync-gated",
            EventKind::RollbackDone => "rollback-done",
            EventKind::RollbackFailed => "rollback-failed",
        }
    }

    /// Whether this event ends the incident it belongs to (a page is resolved, not re-sent).
    /// A rollback done is not one: an emergency rollback is itself something to look at.
    pub fn closes_incident(self) -> bool {
        matches!(self, EventKind::DriftResolved)
    }

    /// Readable headline word.
    pub fn title(self) -> &'static str {
        match self {
            EventKind::DriftDetected => "Drift detected",
            EventKind::DriftChanged => "Drift changed",
            EventKind::DriftResolved => "Drift resolved",
            EventKind::DriftStale => "Drift outlived its limit",
            EventKind::ApprovalRequested => "Approval requested",
            EventKind::ApprovalExpired => "Approval expired",
            EventKind::ActionTaken => "Action taken",
            EventKind::ActionHeld => "Action held back",
            EventKind::RecurrenceBreakerTripped => "Recurrence breaker tripped",
            EventKind::SyncGated => "Sync gated",
            EventKind::RollbackDone => "Rollback done",
            EventKind::RollbackFailed => "Rollback failed",
        }
    }
}

/// One changed field, as a notification shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeLine {
    /// `Deployment.apps shop/web`
    pub resource: String,
    /// `spec.template.spec.containers[name=web].image`
    pub field: String,
    pub severity: Severity,
    /// The field manager that made the change, when known.
    pub manager: Option<String>,
    /// The live value, already masked for Secrets, as compact JSON.
    pub live: Option<String>,
    /// Who made the change, from the API server's audit events, when known.
    #[serde(default, rename = "changedBy", skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<argo_drift_core::audit::ChangedBy>,
}

impl ChangeLine {
    /// The person and the tool, as known: `alice with kubectl-edit`, `alice`, `kubectl-edit`.
    pub fn by(&self) -> Option<String> {
        argo_drift_core::audit::ChangedBy::with_manager(
            self.changed_by.as_ref(),
            self.manager.as_deref(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: EventKind,
    /// `namespace/name` of the Argo CD Application.
    pub app: String,
    pub severity: Severity,
    /// One line: "high drift in 2 resources".
    pub summary: String,
    pub changes: Vec<ChangeLine>,
    /// What argo-drift did or decided (notify only, healed, held back by a guardrail, ...).
    pub decision: Option<String>,
    /// Stable for one incident of one application: a PagerDuty `dedup_key`, a dedup window key.
    pub incident: String,
    /// RFC 3339.
    pub time: String,
}
