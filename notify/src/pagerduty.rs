//! PagerDuty Events API v2: a `trigger` per incident with a stable `dedup_key`, and the
//! `resolve` with that same key when the drift is gone (Argo CD's notifications never resolve).

use argo_drift_core::Severity;
use serde_json::{json, Value};

use crate::event::Notification;
use crate::template::Rendered;

pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's limits: `dedup_key` 255 characters, `summary` 1024, payload 512 KB.
const DEDUP_KEY_MAX: usize = 255;
const SUMMARY_MAX: usize = 1024;
/// Changes listed in `custom_details`; the rest are counted.
const CHANGES_MAX: usize = 50;

/// PagerDuty's four severities.
pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        _ => "info",
    }
}

/// The Events v2 body for `n`.
pub fn event(n: &Notification, routing_key: &str, argocd_url: Option<&str>) -> Value {
    event_with(n, routing_key, argocd_url, None)
}

/// The body, with a user template's title as `summary` and its body as
/// `custom_details.message` when one applies.
pub fn event_with(
    n: &Notification,
    routing_key: &str,
    argocd_url: Option<&str>,
    template: Option<&Rendered>,
) -> Value {
    let dedup_key = cut(&n.incident, DEDUP_KEY_MAX);
    if n.kind.closes_incident() {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let changes: Vec<Value> = n
        .changes
        .iter()
        .take(CHANGES_MAX)
        .map(|c| {
            json!({
                "resource": c.resource,
                "field": c.field,
                "severity": c.severity.as_str(),
                "manager": c.manager,
                "changedBy": c.changed_by,
                "live": c.live,
            })
        })
        .collect();
    let mut details = json!({
        "app": n.app,
        "event": n.kind.as_str(),
        "severity": n.severity.as_str(),
        "decision": n.decision,
        "changes": changes,
    });
    if n.changes.len() > CHANGES_MAX {
        details["more_changes"] = json!(n.changes.len() - CHANGES_MAX);
    }
    if let Some(body) = template.and_then(|t| t.body.as_ref()) {
        details["message"] = json!(body);
    }
    let summary = template
        .and_then(|t| t.title.clone())
        .unwrap_or_else(|| format!("{}: {} — {}", n.kind.title(), n.app, n.summary));
    let (namespace, _) = n.app.split_once('/').unwrap_or(("", &n.app));
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "argo-drift",
        "payload": {
            "summary": cut(&summary, SUMMARY_MAX),
            "source": n.app,
            "severity": severity(n.severity),
            "timestamp": n.time,
            "component": n.changes.first().map(|c| c.resource.clone()).unwrap_or_default(),
            "group": namespace,
            "class": n.kind.as_str(),
            "custom_details": details,
        },
    });
    if let Some(url) = app_url(argocd_url, &n.app) {
        body["client_url"] = json!(url);
        body["links"] = json!([{"href": url, "text": "Application in Argo CD"}]);
    }
    body
}

/// The Argo CD UI page of an application (`/applications/<namespace>/<name>`).
pub fn app_url(argocd_url: Option<&str>, app: &str) -> Option<String> {
    let base = argocd_url?.trim_end_matches('/');
    Some(format!("{base}/applications/{app}"))
}

/// At most `max` characters, cut on a character boundary.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ChangeLine, EventKind};

    fn notification(kind: EventKind) -> Notification {
        Notification {
            kind,
            app: "argocd/web".into(),
            severity: Severity::High,
            summary: "high drift in 1 resource".into(),
            changes: vec![ChangeLine {
                resource: "Deployment.apps shop/web".into(),
                field: "spec.template.spec.containers[name=web].image".into(),
                severity: Severity::High,
                manager: Some("kubectl-set".into()),
                live: Some("\"nginx:evil\"".into()),
                changed_by: None,
            }],
            decision: Some("notify only".into()),
            incident: "argo-drift/argocd/web/0123abcd".into(),
            time: "2026-11-21T06:00:00Z".into(),
        }
    }

    #[test]
    fn a_trigger_has_the_documented_shape_and_a_resolve_reuses_its_dedup_key() {
        let t = event(
            &notification(EventKind::DriftDetected),
            "R0UT1NG",
            Some("https://argocd.example.com/"),
        );
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["routing_key"], "R0UT1NG");
        assert_eq!(t["payload"]["severity"], "error");
        assert_eq!(t["payload"]["source"], "argocd/web");
        assert_eq!(
            t["payload"]["summary"],
            "Drift detected: argocd/web — high drift in 1 resource"
        );
        assert_eq!(
            t["payload"]["custom_details"]["changes"][0]["manager"],
            "kubectl-set"
        );
        assert_eq!(
            t["links"][0]["href"],
            "https://argocd.example.com/applications/argocd/web"
        );
        let r = event(&notification(EventKind::DriftResolved), "R0UT1NG", None);
        assert_eq!(
            r,
            json!({"routing_key": "R0UT1NG", "event_action": "resolve", "dedup_key": t["dedup_key"]})
        );
    }

    #[test]
    fn long_keys_and_summaries_fit_pagerdutys_limits() {
        let mut n = notification(EventKind::DriftChanged);
        n.incident = "k".repeat(400);
        n.summary = "é".repeat(2000);
        let t = event(&n, "r", None);
        assert_eq!(t["dedup_key"].as_str().unwrap().chars().count(), 255);
        assert_eq!(
            t["payload"]["summary"].as_str().unwrap().chars().count(),
            1024
        );
        n.changes = (0..80).map(|_| n.changes[0].clone()).collect();
        let t = event(&n, "r", None);
        assert_eq!(
            t["payload"]["custom_details"]["changes"]
                .as_array()
                .unwrap()
                .len(),
            50
        );
        assert_eq!(t["payload"]["custom_details"]["more_changes"], 30);
        assert!(serde_json::to_vec(&t).unwrap().len() < 512 * 1024);
    }

    #[test]
    fn severities_map_to_pagerdutys_four() {
        let mapped: Vec<_> = Severity::ALL.into_iter().map(severity).collect();
        assert_eq!(
            mapped,
            ["info", "info", "info", "warning", "error", "critical"]
        );
    }
}
