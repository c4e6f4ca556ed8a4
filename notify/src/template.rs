//! User templates (minijinja, Jinja2 syntax) for a message's title and body. A template sees
//! only the notification's own fields — already masked — and nothing else: no environment,
//! no files, no other template, no channel settings, so it cannot reach a secret. Each one is
//! compiled and tried on sample notifications when the config is loaded, so a typo fails at
//! start-up with its key path and line, not at 3 a.m. on the first page.

use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{json, Value};

use crate::event::{ChangeLine, EventKind, Notification};
use crate::pagerduty::app_url;

/// Instructions one render may spend: ample for any message, and a bound on a template that
/// loops for ever, so it cannot stall its channel's worker.
const FUEL: u64 = 200_000;

/// How the values a template interpolates are escaped for where the output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Plain text: email's text part, PagerDuty, every title.
    None,
    /// Slack mrkdwn: `&`, `<`, `>` in values would otherwise become links or mentions.
    Slack,
    /// Email's HTML part.
    Html,
}

/// One `templates[]` entry: which events and channels it is for, and its two templates.
#[derive(Debug, Clone)]
struct Rule {
    /// Empty: every event.
    events: Vec<EventKind>,
    /// Empty: every channel.
    channels: Vec<String>,
    title: Option<String>,
    body: Option<String>,
}

/// What a template made of one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub title: Option<String>,
    pub body: Option<String>,
}

/// Every configured template, compiled once.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    rules: Vec<Rule>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("rules", &self.rules)
            .finish()
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            env: Arc::new(environment()),
            rules: Vec::new(),
        }
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A misspelt variable is an error at load time, not an empty string in a page.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env
}

/// A template to add: where it sits in the file, and its source.
pub struct Source {
    pub events: Vec<EventKind>,
    pub channels: Vec<String>,
    pub title: Option<String>,
    pub body: Option<String>,
}

impl Templates {
    /// Compile `sources` (index `i` is `templates[i]` in the file) and render each against
    /// sample notifications of the events it is for. Errors are `(key path, message)`.
    pub fn compile(sources: Vec<Source>) -> Result<Templates, (String, String)> {
        let mut env = environment();
        let mut rules = Vec::new();
        for (i, s) in sources.into_iter().enumerate() {
            let mut rule = Rule {
                events: s.events,
                channels: s.channels,
                title: None,
                body: None,
            };
            for (part, source) in [("title", s.title), ("body", s.body)] {
                let Some(source) = source else { continue };
                let name = format!("templates[{i}].{part}");
                env.add_template_owned(name.clone(), source)
                    .map_err(|e| (name.clone(), describe(&e)))?;
                if part == "title" {
                    rule.title = Some(name);
                } else {
                    rule.body = Some(name);
                }
            }
            if rule.title.is_none() && rule.body.is_none() {
                return Err((format!("templates[{i}]"), "needs a title or a body".into()));
            }
            rules.push(rule);
        }
        let templates = Templates {
            env: Arc::new(env),
            rules,
        };
        for rule in &templates.rules {
            let kinds = if rule.events.is_empty() {
                EventKind::ALL.to_vec()
            } else {
                rule.events.clone()
            };
            for kind in kinds {
                for sample in samples(kind) {
                    for name in [&rule.title, &rule.body].into_iter().flatten() {
                        templates
                            .render_one(
                                name,
                                &sample,
                                Some("https://argocd.example.com"),
                                Escape::None,
                            )
                            .map_err(|e| {
                                (
                                    name.clone(),
                                    format!(
                                        "on a sample {} event: {}",
                                        kind.as_str(),
                                        describe(&e)
                                    ),
                                )
                            })?;
                    }
                }
            }
        }
        Ok(templates)
    }

    /// Which channel names the rules mention, with the rule's key path, for checking them.
    pub fn channel_references(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            for (j, c) in r.channels.iter().enumerate() {
                out.push((format!("templates[{i}].channels[{j}]"), c.clone()));
            }
        }
        out
    }

    /// The title and body for `n` on `channel`, from the first rule that matches it; `None`
    /// when none does (the channel's own layout is used). A render error — which the load-time
    /// check makes unlikely — is logged and the default layout used: a message is never lost
    /// to a template.
    pub fn render(
        &self,
        channel: &str,
        n: &Notification,
        argocd_url: Option<&str>,
        escape: Escape,
    ) -> Option<Rendered> {
        let rule = self.rules.iter().find(|r| {
            (r.events.is_empty() || r.events.contains(&n.kind))
                && (r.channels.is_empty() || r.channels.iter().any(|c| c == channel))
        })?;
        let part = |name: &Option<String>, escape: Escape| {
            let name = name.as_ref()?;
            match self.render_one(name, n, argocd_url, escape) {
                Ok(text) => Some(text),
                Err(e) => {
                    tracing::warn!(template = %name, channel, error = %e, "template failed; using the default layout");
                    None
                }
            }
        };
        Some(Rendered {
            // Titles are plain text everywhere (Slack header, email subject, PagerDuty summary).
            title: part(&rule.title, Escape::None),
            body: part(&rule.body, escape),
        })
    }

    fn render_one(
        &self,
        name: &str,
        n: &Notification,
        argocd_url: Option<&str>,
        escape: Escape,
    ) -> Result<String, minijinja::Error> {
        self.env
            .get_template(name)?
            .render(context(n, argocd_url, escape))
    }
}

/// "line 2: undefined value: ..." — the file's key path already names the template.
fn describe(e: &minijinja::Error) -> String {
    let mut message = e.kind().to_string();
    if let Some(detail) = e.detail() {
        message = format!("{message}: {detail}");
    }
    match e.line() {
        Some(line) => format!("line {line}: {message}"),
        None => message,
    }
}

/// The variables a template sees — all of them, documented in config/notifications.yaml.
fn context(n: &Notification, argocd_url: Option<&str>, escape: Escape) -> Value {
    let (namespace, name) = n.app.split_once('/').unwrap_or(("", &n.app));
    let mut v = json!({
        "event": n.kind.as_str(),
        "headline": n.kind.title(),
        "app": n.app,
        "appNamespace": namespace,
        "appName": name,
        "severity": n.severity.as_str(),
        "summary": n.summary,
        "changes": n.changes.iter().map(|c| json!({
            "resource": c.resource,
            "field": c.field,
            "severity": c.severity.as_str(),
            "manager": c.manager,
            "changedBy": c.changed_by,
            "live": c.live,
        })).collect::<Vec<_>>(),
        "decision": n.decision,
        "incident": n.incident,
        "time": n.time,
        "appUrl": app_url(argocd_url, &n.app),
    });
    escape_strings(&mut v, escape);
    v
}

fn escape_strings(v: &mut Value, escape: Escape) {
    match v {
        Value::String(s) => {
            *s = match escape {
                Escape::None => return,
                Escape::Slack => crate::slack::escape(s),
                Escape::Html => crate::email::html_escape(s),
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| escape_strings(i, escape)),
        Value::Object(map) => map.values_mut().for_each(|i| escape_strings(i, escape)),
        _ => {}
    }
}

/// Notifications of `kind` to try a template on: one with every field set, one with the
/// optional ones empty.
fn samples(kind: EventKind) -> [Notification; 2] {
    let full = Notification {
        kind,
        app: "argocd/sample".into(),
        severity: argo_drift_core::Severity::High,
        summary: "high drift in 1 resource".into(),
        changes: vec![ChangeLine {
            resource: "Deployment.apps shop/web".into(),
            field: "spec.replicas".into(),
            severity: argo_drift_core::Severity::High,
            manager: Some("kubectl-edit".into()),
            live: Some("5".into()),
            changed_by: None,
        }],
        decision: Some("notify only".into()),
        incident: "argo-drift/argocd/sample/0".into(),
        time: "2026-01-01T00:00:00Z".into(),
    };
    let bare = Notification {
        changes: Vec::new(),
        decision: None,
        ..full.clone()
    };
    [full, bare]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(title: &str, body: Option<&str>) -> Result<Templates, (String, String)> {
        Templates::compile(vec![Source {
            events: Vec::new(),
            channels: Vec::new(),
            title: Some(title.into()),
            body: body.map(Into::into),
        }])
    }

    fn sample() -> Notification {
        let mut n = samples(EventKind::DriftDetected)[0].clone();
        n.app = "argocd/web".into();
        n.changes[0].manager = Some("<script>&".into());
        n
    }

    #[test]
    fn a_template_renders_the_notification_fields() {
        let t = compile(
            "{{ severity | upper }} {{ event }} in {{ appName }}",
            Some("{% for c in changes %}{{ c.field }} by {{ c.manager }}{% endfor %} {{ appUrl }}"),
        )
        .unwrap();
        let r = t
            .render("any", &sample(), Some("https://cd.example"), Escape::None)
            .unwrap();
        assert_eq!(r.title.as_deref(), Some("HIGH drift-detected in web"));
        assert_eq!(
            r.body.as_deref(),
            Some("spec.replicas by <script>& https://cd.example/applications/argocd/web")
        );
    }

    #[test]
    fn values_are_escaped_for_slack_and_html_bodies_but_titles_stay_plain() {
        let each = "{% for c in changes %}{{ c.manager }}{% endfor %}";
        let t = compile(each, Some(each)).unwrap();
        let slack = t.render("c", &sample(), None, Escape::Slack).unwrap();
        assert_eq!(slack.body.as_deref(), Some("&lt;script&gt;&amp;"));
        assert_eq!(slack.title.as_deref(), Some("<script>&"));
        let html = t.render("c", &sample(), None, Escape::Html).unwrap();
        assert_eq!(html.body.as_deref(), Some("&lt;script&gt;&amp;"));
    }

    #[test]
    fn a_misspelt_variable_or_a_syntax_error_fails_at_load_with_its_key_path() {
        let (at, message) = compile("{{ sevrity }}", None).unwrap_err();
        assert_eq!(at, "templates[0].title");
        assert!(message.contains("undefined value"), "{message}");
        let (at, message) = compile("ok", Some("{% for c in changes %}")).unwrap_err();
        assert_eq!(at, "templates[0].body");
        assert!(message.contains("syntax error"), "{message}");
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn templates_cannot_reach_secrets_the_environment_or_files() {
        for probe in [
            "{{ routing_key }}",
            "{{ webhookUrl }}",
            "{{ env }}",
            "{{ env.HOME }}",
            "{% include '/etc/passwd' %}",
            "{{ self }}",
        ] {
            assert!(compile(probe, None).is_err(), "{probe} must not compile");
        }
    }

    #[test]
    fn a_template_that_never_ends_runs_out_of_fuel_instead_of_stalling_the_channel() {
        let err = compile(
            "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
            None,
        )
        .unwrap_err();
        assert!(err.1.contains("fuel"), "{err:?}");
    }

    #[test]
    fn the_first_rule_for_the_event_and_channel_wins_and_none_means_the_default_layout() {
        let t = Templates::compile(vec![
            Source {
                events: vec![EventKind::DriftResolved],
                channels: Vec::new(),
                title: Some("resolved".into()),
                body: None,
            },
            Source {
                events: Vec::new(),
                channels: vec!["slack".into()],
                title: Some("slack".into()),
                body: None,
            },
        ])
        .unwrap();
        let n = sample();
        assert_eq!(
            t.render("slack", &n, None, Escape::None)
                .unwrap()
                .title
                .as_deref(),
            Some("slack")
        );
        assert_eq!(t.render("mail", &n, None, Escape::None), None);
        let resolved = Notification {
            kind: EventKind::DriftResolved,
            ..n
        };
        assert_eq!(
            t.render("mail", &resolved, None, Escape::None)
                .unwrap()
                .title
                .as_deref(),
            Some("resolved")
        );
    }
}
