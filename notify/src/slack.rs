//! Slack incoming webhooks: one Block Kit message per event. Webhooks cannot edit or thread a
//! message they sent, so a resolved incident gets its own short follow-up naming the incident.

use argo_drift_core::Severity;
use serde_json::{json, Value};

use crate::event::{EventKind, Notification};
use crate::pagerduty::{app_url, cut};
use crate::template::Rendered;

/// Block Kit limits: header text 150 characters, section text 3000.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
/// Changed fields listed; the rest are counted.
const CHANGES_SHOWN: usize = 10;

fn icon(kind: EventKind, severity: Severity) -> &'static str {
    if kind.closes_incident() {
        return ":white_check_mark:";
    }
    match severity {
        Severity::Critical => ":rotating_light:",
        Severity::High => ":red_circle:",
        Severity::Medium => ":large_orange_circle:",
        _ => ":large_blue_circle:",
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn message(n: &Notification, argocd_url: Option<&str>) -> Value {
    message_with(n, argocd_url, None)
}

/// The message, with a user template's title (the header) and body (the first section, in
/// mrkdwn, its values already escaped) when one applies.
pub fn message_with(
    n: &Notification,
    argocd_url: Option<&str>,
    template: Option<&Rendered>,
) -> Value {
    let icon = icon(n.kind, n.severity);
    let title = template
        .and_then(|t| t.title.clone())
        .unwrap_or_else(|| format!("{}: {}", n.kind.title(), n.app));
    let fallback = format!("{icon} {title} ({}) — {}", n.severity, n.summary);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&title, HEADER_MAX)},
    })];
    let mut facts = vec![
        json!({"type": "mrkdwn", "text": format!("*Severity*\n{icon} {}", n.severity)}),
        json!({"type": "mrkdwn", "text": format!("*Event*\n{}", n.kind.as_str())}),
    ];
    if let Some(d) = &n.decision {
        facts.push(
            json!({"type": "mrkdwn", "text": cut(&format!("*Decision*\n{}", escape(d)), 2000)}),
        );
    }
    blocks.push(json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": cut(&template.and_then(|t| t.body.clone()).unwrap_or_else(|| escape(&n.summary)), SECTION_MAX)},
        "fields": facts,
    }));
    if !n.changes.is_empty() {
        let mut lines: Vec<String> = n
            .changes
            .iter()
            .take(CHANGES_SHOWN)
            .map(|c| {
                let by = c
                    .by()
                    .map(|b| format!(", by `{}`", escape(&b)))
                    .unwrap_or_default();
                format!(
                    "• `{}` `{}` — {}{by}",
                    escape(&c.resource),
                    escape(&c.field),
                    c.severity
                )
            })
            .collect();
        if n.changes.len() > CHANGES_SHOWN {
            lines.push(format!(
                "_…and {} more changed fields (see the report ConfigMap)_",
                n.changes.len() - CHANGES_SHOWN
            ));
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": trim_lines(&lines, SECTION_MAX)}}));
    }
    let mut context = format!("incident `{}` · {}", escape(&n.incident), n.time);
    if n.kind.closes_incident() {
        context = format!("closes {context}");
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(&context, SECTION_MAX)}]}));
    if let Some(url) = app_url(argocd_url, &n.app) {
        blocks.push(json!({
            "type": "actions",
            "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open in Argo CD"}, "url": url}],
        }));
    }
    json!({"text": fallback, "blocks": blocks})
}

/// Join lines up to `max` characters, saying how many were left out.
fn trim_lines(lines: &[String], max: usize) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let note = format!("\n_…{} more lines trimmed_", lines.len() - i);
        if out.len() + line.len() + 1 + note.len() > max {
            out.push_str(&note);
            return out;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ChangeLine;

    fn n(kind: EventKind, changes: usize) -> Notification {
        Notification {
            kind,
            app: "argocd/web".into(),
            severity: Severity::Critical,
            summary: "critical drift in 2 resources <b>".into(),
            changes: (0..changes)
                .map(|i| ChangeLine {
                    resource: format!("Role.rbac.authorization.k8s.io shop/r{i}"),
                    field: "rules[1]".into(),
                    severity: Severity::Critical,
                    manager: Some("kubectl-edit".into()),
                    live: None,
                    changed_by: None,
                })
                .collect(),
            decision: Some("notify only (dry-run)".into()),
            incident: "argo-drift/argocd/web/1".into(),
            time: "2026-11-21T06:00:00Z".into(),
        }
    }

    #[test]
    fn a_drift_message_names_app_severity_fields_managers_decision_and_links_argo_cd() {
        let m = message(
            &n(EventKind::DriftDetected, 2),
            Some("https://argocd.example.com"),
        );
        let blocks = m["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], "Drift detected: argocd/web");
        assert_eq!(
            blocks[1]["text"]["text"],
            "critical drift in 2 resources &lt;b&gt;"
        );
        let facts = serde_json::to_string(&blocks[1]["fields"]).unwrap();
        assert!(
            facts.contains("critical") && facts.contains("notify only (dry-run)"),
            "{facts}"
        );
        assert_eq!(
            blocks[2]["text"]["text"],
            "• `Role.rbac.authorization.k8s.io shop/r0` `rules[1]` — critical, by `kubectl-edit`\n• `Role.rbac.authorization.k8s.io shop/r1` `rules[1]` — critical, by `kubectl-edit`"
        );
        // With the audit trail's word, the person first.
        let mut named = n(EventKind::DriftDetected, 1);
        named.changes[0].changed_by = Some(argo_drift_core::audit::ChangedBy {
            user: "alice".into(),
            groups: vec!["sre".into()],
            service_account: None,
            impersonator: None,
            user_agent: Some("kubectl/v1.37.2".into()),
            time: "2026-11-21T05:59:58.000001Z".into(),
            verb: "patch".into(),
            source_ips: vec![],
            matched: argo_drift_core::audit::Match::ResourceVersion,
            candidates: None,
            audit_id: "id".into(),
        });
        let m = message(&named, None);
        assert_eq!(
            m["blocks"][2]["text"]["text"],
            "• `Role.rbac.authorization.k8s.io shop/r0` `rules[1]` — critical, by `alice with kubectl-edit`"
        );
        // CloudEvents carry the change lines as they are: changedBy whole.
        let data = serde_json::to_value(&named.changes[0]).unwrap();
        assert_eq!(data["changedBy"]["user"], "alice");
        assert_eq!(data["changedBy"]["match"], "resourceVersion");
        assert_eq!(
            blocks[4]["elements"][0]["url"],
            "https://argocd.example.com/applications/argocd/web"
        );
        assert!(m["text"]
            .as_str()
            .unwrap()
            .starts_with(":rotating_light: Drift detected: argocd/web (critical)"));
    }

    #[test]
    fn long_change_lists_are_trimmed_with_a_note_within_block_kit_limits() {
        let m = message(&n(EventKind::DriftChanged, 40), None);
        let text = m["blocks"][2]["text"]["text"].as_str().unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with('•')).count(), 10);
        assert!(
            text.ends_with("_…and 30 more changed fields (see the report ConfigMap)_"),
            "{text}"
        );
        for b in m["blocks"].as_array().unwrap() {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(t.chars().count() <= 3000);
            }
        }
        let long: Vec<String> = (0..500)
            .map(|i| format!("line {i} {}", "x".repeat(40)))
            .collect();
        let t = trim_lines(&long, 3000);
        assert!(
            t.len() <= 3000 && t.ends_with("more lines trimmed_"),
            "{}",
            t.len()
        );
    }

    #[test]
    fn a_resolution_is_its_own_follow_up_naming_the_incident() {
        let m = message(&n(EventKind::DriftResolved, 0), None);
        assert!(m["text"]
            .as_str()
            .unwrap()
            .starts_with(":white_check_mark: Drift resolved"));
        let context = m["blocks"].as_array().unwrap().last().unwrap()["elements"][0]["text"]
            .as_str()
            .unwrap();
        assert!(
            context.starts_with("closes incident `argo-drift/argocd/web/1`"),
            "{context}"
        );
    }
}
