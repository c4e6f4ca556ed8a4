//! CloudEvents 1.0 in structured JSON mode, for sinks such as an Argo Events webhook
//! EventSource: every notification becomes an event other tools can route by `type` and
//! `subject`. The body is built once per notification, so a retry carries the same `id`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use crate::event::{EventKind, Notification};

pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// `io.argo-drift.drift.detected`, `io.argo-drift.recurrence-breaker.tripped`, ...
pub fn event_type(kind: EventKind) -> String {
    let name = kind.as_str();
    match name.rsplit_once('-') {
        Some((subject, verb)) => format!("io.argo-drift.{subject}.{verb}"),
        None => format!("io.argo-drift.{name}"),
    }
}

/// A unique id: the time in nanoseconds and a process-wide counter.
fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The event for `n` from `source` (the controller's or a hook's identity, a URI reference).
pub fn event(n: &Notification, source: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": new_id(),
        "source": source,
        "type": event_type(n.kind),
        "subject": n.app,
        "time": n.time,
        "datacontenttype": "application/json",
        "data": {
            "event": n.kind.as_str(),
            "application": n.app,
            "severity": n.severity.as_str(),
            "summary": n.summary,
            "decision": n.decision,
            "incident": n.incident,
            "changes": n.changes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_name_the_subject_and_what_happened() {
        assert_eq!(
            event_type(EventKind::DriftDetected),
            "io.argo-drift.drift.detected"
        );
        assert_eq!(
            event_type(EventKind::RecurrenceBreakerTripped),
            "io.argo-drift.recurrence-breaker.tripped"
        );
        assert_eq!(event_type(EventKind::SyncGated), "io.argo-drift.sync.gated");
        assert_ne!(new_id(), new_id());
    }
}
