//! `config/notifications.yaml`: channels, where their secrets come from (an environment variable
//! or a file, never the file itself), and routes by event and severity. Read raw, then checked
//! and compiled once; errors name the file, the key path and the problem.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use argo_drift_core::Severity;
use serde::Deserialize;

use crate::email::Tls;
use crate::event::EventKind;
use crate::template::{self, Templates};
use lettre::message::Mailbox;

pub const API_VERSION: &str = "argo-drift.io/v1alpha1";
pub const KIND: &str = "Notifications";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationsFile {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    /// Argo CD's UI, for links.
    #[serde(default)]
    pub argocd_url: Option<String>,
    /// The same event for the same incident is sent once per channel within this window.
    #[serde(default = "default_window")]
    pub dedup_window_seconds: u64,
    /// Flap damping: drift must stay gone this long before its incident is resolved; drift
    /// that comes back sooner continues the same incident instead of paging anew.
    #[serde(default = "default_resolve_hold")]
    pub resolve_hold_seconds: u64,
    /// How long drift of each severity may last before a `drift-stale` notification says so
    /// (once per incident and severity). Given, it replaces the defaults whole: a severity left
    /// out is never announced as stale.
    #[serde(default = "default_stale_after")]
    pub stale_after_seconds: BTreeMap<Severity, u64>,
    /// Messages waiting per channel; beyond this new ones are dropped (and counted), so a dead
    /// channel never holds up detection or remediation.
    #[serde(default = "default_queue")]
    pub queue_size: usize,
    #[serde(default)]
    pub channels: Vec<ChannelSpec>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// CloudEvents `source` (a URI reference); the controller and the hooks use their own
    /// identity when this is not set.
    #[serde(default)]
    pub cloud_events_source: Option<String>,
    /// Titles and bodies by event and channel; the first that matches is used.
    #[serde(default)]
    pub templates: Vec<TemplateSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateSpec {
    /// Event names or `"*"` (the default).
    #[serde(default)]
    pub events: Vec<String>,
    /// Channel names; empty (the default) for every channel.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Slack's header, the email subject, PagerDuty's summary.
    #[serde(default)]
    pub title: Option<String>,
    /// Slack's first section, the top of the email, PagerDuty's `custom_details.message`.
    #[serde(default)]
    pub body: Option<String>,
}

/// The JSON Schema of the notifications file (committed as `config/notifications.schema.json`
/// for editors).
pub fn schema() -> serde_json::Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(NotificationsFile)).unwrap_or_default();
    schema["title"] = "argo-drift Notifications".into();
    schema
}

fn default_window() -> u64 {
    600
}

fn default_resolve_hold() -> u64 {
    120
}

/// critical 15 min, high 1 h, medium 24 h; low drift is never announced as stale.
fn default_stale_after() -> BTreeMap<Severity, u64> {
    BTreeMap::from([
        (Severity::Critical, 15 * 60),
        (Severity::High, 60 * 60),
        (Severity::Medium, 24 * 60 * 60),
    ])
}

fn default_queue() -> usize {
    256
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelSpec {
    pub name: String,
    #[serde(default)]
    pub slack: Option<SlackSpec>,
    #[serde(default)]
    pub pagerduty: Option<PagerDutySpec>,
    #[serde(default)]
    pub email: Option<EmailSpec>,
    /// CloudEvents 1.0 (structured JSON) to a webhook sink, e.g. an Argo Events EventSource.
    #[serde(default)]
    pub cloudevents: Option<CloudEventsSpec>,
    /// Messages per second; Slack's default 1, PagerDuty's 2 (120 per minute).
    #[serde(default)]
    pub rate_per_second: Option<f64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackSpec {
    pub webhook_url: SecretRef,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudEventsSpec {
    /// The sink, e.g. `http://drift-eventsource-svc.argo-events:12000/drift`.
    pub url: String,
    /// Bearer token or basic auth for the sink.
    #[serde(default)]
    pub auth: Option<SinkAuthSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkAuthSpec {
    #[serde(default)]
    pub bearer: Option<SecretRef>,
    #[serde(default)]
    pub basic: Option<BasicAuthSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuthSpec {
    pub username: String,
    pub password: SecretRef,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PagerDutySpec {
    pub routing_key: SecretRef,
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailSpec {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: Tls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretRef>,
    pub from: String,
    pub to: Vec<String>,
    /// PEM file of CA certificates trusted besides the system's (a relay with a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Where a secret is read from. There is deliberately no inline form.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// Event names (`drift-detected`, …) or `"*"` for all.
    pub events: Vec<String>,
    #[serde(default)]
    pub min_severity: Option<Severity>,
    pub channels: Vec<String>,
}

/// serde's message with every quoted string value left out: a webhook URL or routing key written
/// inline where a secret reference belongs would otherwise be quoted in the error, and the error
/// goes to the logs.
fn without_values(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(MARK) {
        out.push_str(&rest[..start]);
        out.push_str("a string (value not shown)");
        let after = &rest[start + MARK.len()..];
        let mut escaped = false;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = i + 1;
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A secret value; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone)]
pub enum ChannelKind {
    Slack {
        webhook_url: Secret,
    },
    PagerDuty {
        routing_key: Secret,
        url: String,
    },
    CloudEvents {
        url: String,
        auth: Option<crate::deliver::HttpAuth>,
    },
    Email {
        host: String,
        port: Option<u16>,
        tls: Tls,
        username: Option<String>,
        password: Option<Secret>,
        from: Mailbox,
        to: Vec<Mailbox>,
        ca_pem: Option<Vec<u8>>,
    },
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    pub rate_per_second: f64,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Empty: every event.
    pub events: Vec<EventKind>,
    pub min_severity: Severity,
    pub channels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Notifications {
    pub argocd_url: Option<String>,
    pub dedup_window: Duration,
    pub resolve_hold: Duration,
    /// How long drift of a severity may last before it is announced as stale.
    pub stale_after: BTreeMap<Severity, Duration>,
    pub queue_size: usize,
    pub channels: Vec<Channel>,
    pub routes: Vec<Route>,
    pub templates: Templates,
    /// CloudEvents `source`; `None` until the controller or a hook names itself.
    pub source: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {key_path}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key_path: String,
    pub message: String,
}

impl Notifications {
    /// Parse and check `text`; `file` names it in errors. `env` looks up environment variables
    /// (injected so tests need not change the process environment).
    pub fn from_yaml(
        file: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Notifications, ConfigError> {
        let fail = |key_path: String, message: String| ConfigError {
            file: file.to_string(),
            key_path,
            message,
        };
        let raw: NotificationsFile = serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "(document)".into());
            let message = e.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_string();
            fail(at, without_values(&message))
        })?;
        if raw.api_version.as_deref().is_some_and(|v| v != API_VERSION) {
            return Err(fail(
                "apiVersion".into(),
                format!("must be {API_VERSION:?}"),
            ));
        }
        if raw.kind.as_deref().is_some_and(|k| k != KIND) {
            return Err(fail("kind".into(), format!("must be {KIND:?}")));
        }
        if raw.queue_size == 0 {
            return Err(fail("queueSize".into(), "must be at least 1".into()));
        }
        let mut channels: Vec<Channel> = Vec::new();
        for (i, c) in raw.channels.into_iter().enumerate() {
            let at = |k: &str| format!("channels[{i}]{k}");
            if c.name.is_empty() {
                return Err(fail(at(".name"), "is required".into()));
            }
            if channels.iter().any(|o| o.name == c.name) {
                return Err(fail(at(".name"), format!("{:?} is used twice", c.name)));
            }
            let at_err = |(key, message): (String, String)| fail(at(&key), message);
            let (kind, default_rate) = match (c.slack, c.pagerduty, c.email, c.cloudevents) {
                (Some(s), None, None, None) => (
                    ChannelKind::Slack {
                        webhook_url: resolve(&s.webhook_url, env)
                            .map_err(|m| fail(at(".slack.webhookUrl"), m))?,
                    },
                    1.0,
                ),
                (None, Some(p), None, None) => (
                    ChannelKind::PagerDuty {
                        routing_key: resolve(&p.routing_key, env)
                            .map_err(|m| fail(at(".pagerduty.routingKey"), m))?,
                        url: p
                            .url
                            .unwrap_or_else(|| crate::pagerduty::DEFAULT_URL.to_string()),
                    },
                    2.0,
                ),
                (None, None, Some(e), None) => (email_channel(e, env).map_err(at_err)?, 1.0),
                (None, None, None, Some(ce)) => {
                    (cloudevents_channel(ce, env).map_err(at_err)?, 10.0)
                }
                _ => {
                    return Err(fail(
                        at(""),
                        "needs exactly one of slack, pagerduty, email, cloudevents".into(),
                    ))
                }
            };
            let rate = c.rate_per_second.unwrap_or(default_rate);
            if !rate.is_finite() || rate <= 0.0 {
                return Err(fail(
                    at(".ratePerSecond"),
                    format!("{rate} is not a positive rate"),
                ));
            }
            channels.push(Channel {
                name: c.name,
                kind,
                rate_per_second: rate,
            });
        }
        let mut routes = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let events =
                events(&r.events).map_err(|(j, m)| fail(format!("routes[{i}].events[{j}]"), m))?;
            for (j, name) in r.channels.iter().enumerate() {
                if !channels.iter().any(|c| &c.name == name) {
                    return Err(fail(
                        format!("routes[{i}].channels[{j}]"),
                        format!("no channel named {name:?}"),
                    ));
                }
            }
            routes.push(Route {
                events,
                min_severity: r.min_severity.unwrap_or(Severity::None),
                channels: r.channels,
            });
        }
        let mut sources = Vec::new();
        for (i, t) in raw.templates.into_iter().enumerate() {
            sources.push(template::Source {
                events: events(&t.events)
                    .map_err(|(j, m)| fail(format!("templates[{i}].events[{j}]"), m))?,
                channels: t.channels,
                title: t.title,
                body: t.body,
            });
        }
        let templates = Templates::compile(sources).map_err(|(at, m)| fail(at, m))?;
        let mut stale_after = BTreeMap::new();
        for (&severity, &seconds) in &raw.stale_after_seconds {
            let at = format!("staleAfterSeconds.{severity}");
            if severity == Severity::None {
                return Err(fail(at, "drift has no severity none".into()));
            }
            if seconds == 0 {
                return Err(fail(
                    at,
                    "must be at least 1 (leave the severity out never to announce it)".into(),
                ));
            }
            stale_after.insert(severity, Duration::from_secs(seconds));
        }
        for (at, name) in templates.channel_references() {
            if !channels.iter().any(|c| c.name == name) {
                return Err(fail(at, format!("no channel named {name:?}")));
            }
        }
        Ok(Notifications {
            source: raw.cloud_events_source,
            templates,
            argocd_url: raw.argocd_url,
            dedup_window: Duration::from_secs(raw.dedup_window_seconds),
            resolve_hold: Duration::from_secs(raw.resolve_hold_seconds),
            stale_after,
            queue_size: raw.queue_size,
            channels,
            routes,
        })
    }

    /// The channels an event goes to, each once, in configuration order.
    pub fn channels_for(&self, kind: EventKind, severity: Severity) -> Vec<&Channel> {
        self.channels
            .iter()
            .filter(|c| {
                self.routes.iter().any(|r| {
                    (r.events.is_empty() || r.events.contains(&kind))
                        && severity >= r.min_severity
                        && r.channels.contains(&c.name)
                })
            })
            .collect()
    }
}

/// An email channel; errors are (key under the channel, message).
fn email_channel(
    e: EmailSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ChannelKind, (String, String)> {
    let from = e
        .from
        .parse::<Mailbox>()
        .map_err(|err| (".email.from".to_string(), format!("{:?}: {err}", e.from)))?;
    let mut to = Vec::new();
    for (j, addr) in e.to.iter().enumerate() {
        to.push(
            addr.parse::<Mailbox>()
                .map_err(|err| (format!(".email.to[{j}]"), format!("{addr:?}: {err}")))?,
        );
    }
    if to.is_empty() {
        return Err((".email.to".into(), "needs at least one recipient".into()));
    }
    let password = match &e.password {
        Some(p) => Some(resolve(p, env).map_err(|m| (".email.password".to_string(), m))?),
        None => None,
    };
    if password.is_some() != e.username.is_some() {
        return Err((".email".into(), "username and password go together".into()));
    }
    if e.tls == Tls::None && e.ca_file.is_some() {
        return Err((
            ".email.caFile".into(),
            "has no effect with tls: none".into(),
        ));
    }
    let ca_pem = match &e.ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|err| {
            (
                ".email.caFile".to_string(),
                format!("{}: {err}", path.display()),
            )
        })?),
        None => None,
    };
    Ok(ChannelKind::Email {
        host: e.host,
        port: e.port,
        tls: e.tls,
        username: e.username,
        password,
        from,
        to,
        ca_pem,
    })
}

/// A CloudEvents sink; errors are (key under the channel, message).
fn cloudevents_channel(
    ce: CloudEventsSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ChannelKind, (String, String)> {
    use crate::deliver::HttpAuth;
    let auth = match ce.auth {
        None => None,
        Some(SinkAuthSpec {
            bearer: Some(b),
            basic: None,
        }) => Some(HttpAuth::Bearer(
            resolve(&b, env).map_err(|m| (".cloudevents.auth.bearer".to_string(), m))?,
        )),
        Some(SinkAuthSpec {
            bearer: None,
            basic: Some(b),
        }) => Some(HttpAuth::Basic(
            b.username,
            resolve(&b.password, env)
                .map_err(|m| (".cloudevents.auth.basic.password".to_string(), m))?,
        )),
        Some(_) => {
            return Err((
                ".cloudevents.auth".into(),
                "needs exactly one of bearer, basic".into(),
            ))
        }
    };
    if !(ce.url.starts_with("http://") || ce.url.starts_with("https://")) {
        return Err((
            ".cloudevents.url".into(),
            format!("{:?} is not an http(s) URL", ce.url),
        ));
    }
    Ok(ChannelKind::CloudEvents { url: ce.url, auth })
}

fn resolve(r: &SecretRef, env: &dyn Fn(&str) -> Option<String>) -> Result<Secret, String> {
    match (&r.env, &r.file) {
        (Some(var), None) => env(var)
            .filter(|v| !v.is_empty())
            .map(|v| Secret(v.trim().to_string()))
            .ok_or_else(|| format!("environment variable {var} is not set")),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|v| Secret(v.trim().to_string()))
            .map_err(|e| format!("reading {}: {e}", path.display())),
        _ => Err("needs exactly one of env, file".into()),
    }
}

/// Event names to kinds; `"*"` (or nothing) is every event, returned as an empty list.
/// Errors are (index, message).
fn events(names: &[String]) -> Result<Vec<EventKind>, (usize, String)> {
    let mut events = Vec::new();
    for (j, e) in names.iter().enumerate() {
        if e == "*" {
            return Ok(Vec::new());
        }
        let kind = EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == e)
            .ok_or_else(|| {
                let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                (
                    j,
                    format!(
                        "unknown event {e:?} (one of {}, or \"*\")",
                        known.join(", ")
                    ),
                )
            })?;
        events.push(kind);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SLACK_HOOK").then(|| "https://hooks.slack.com/services/T/B/SECRET".to_string())
    }

    const GOOD: &str = r#"
apiVersion: argo-drift.io/v1alpha1
kind: Notifications
argocdUrl: https://argocd.example.com
channels:
- name: sre
  slack: {webhookUrl: {env: SLACK_HOOK}}
- name: oncall
  pagerduty: {routingKey: {env: SLACK_HOOK}, url: http://127.0.0.1:9/v2/enqueue}
  ratePerSecond: 0.5
routes:
- events: [drift-detected, drift-changed, drift-resolved]
  minSeverity: high
  channels: [oncall]
- events: ["*"]
  channels: [sre]
"#;

    #[test]
    fn stale_limits_default_to_15_minutes_1_hour_1_day_and_a_given_map_replaces_them() {
        let n = Notifications::from_yaml("n.yaml", GOOD, &env).unwrap();
        let minutes = |n: &Notifications, s| n.stale_after.get(&s).map(|d| d.as_secs() / 60);
        assert_eq!(minutes(&n, Severity::Critical), Some(15));
        assert_eq!(minutes(&n, Severity::High), Some(60));
        assert_eq!(minutes(&n, Severity::Medium), Some(24 * 60));
        assert_eq!(minutes(&n, Severity::Low), None);
        let given = format!("{GOOD}staleAfterSeconds: {{critical: 300, low: 604800}}\n");
        let n = Notifications::from_yaml("n.yaml", &given, &env).unwrap();
        assert_eq!(minutes(&n, Severity::Critical), Some(5));
        assert_eq!(minutes(&n, Severity::High), None);
        assert_eq!(minutes(&n, Severity::Low), Some(7 * 24 * 60));
        for (bad, at) in [
            (
                "{high: 0}",
                "n.yaml: staleAfterSeconds.high: must be at least 1",
            ),
            (
                "{none: 60}",
                "n.yaml: staleAfterSeconds.none: drift has no severity none",
            ),
        ] {
            let text = format!("{GOOD}staleAfterSeconds: {bad}\n");
            let e = Notifications::from_yaml("n.yaml", &text, &env).unwrap_err();
            assert!(e.to_string().starts_with(at), "{e}");
        }
        let e = Notifications::from_yaml(
            "n.yaml",
            &format!("{GOOD}staleAfterSeconds: {{urgent: 60}}\n"),
            &env,
        )
        .unwrap_err();
        assert!(e.to_string().contains("urgent"), "{e}");
    }

    #[test]
    fn routes_pick_channels_by_event_and_severity() {
        let n = Notifications::from_yaml("n.yaml", GOOD, &env).unwrap();
        let names = |k, s| {
            n.channels_for(k, s)
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(EventKind::DriftDetected, Severity::Critical),
            ["sre", "oncall"]
        );
        assert_eq!(names(EventKind::DriftDetected, Severity::Medium), ["sre"]);
        assert_eq!(
            names(EventKind::RollbackFailed, Severity::Critical),
            ["sre"]
        );
        assert_eq!(n.dedup_window, Duration::from_secs(600));
        assert_eq!(n.channels[1].rate_per_second, 0.5);
        assert_eq!(n.channels[0].rate_per_second, 1.0);
        // Secrets never show in debug output.
        assert!(!format!("{n:?}").contains("SECRET"));
    }

    #[test]
    fn errors_name_the_file_key_path_and_problem() {
        let err = |text: &str| {
            Notifications::from_yaml("n.yaml", text, &env)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("channels:\n- name: a\n  slack: {webhookUrl: {env: MISSING}}\n"),
            "n.yaml: channels[0].slack.webhookUrl: environment variable MISSING is not set"
        );
        assert_eq!(
            err("channels:\n- name: a\n  slack: {webhookUrl: {env: SLACK_HOOK}}\nroutes:\n- events: [drift-detectd]\n  channels: [a]\n"),
            "n.yaml: routes[0].events[0]: unknown event \"drift-detectd\" (one of drift-detected, drift-changed, drift-resolved, drift-stale, approval-requested, approval-expired, action-taken, action-held, recurrence-breaker-tripped, sync-gated, rollback-done, rollback-failed, or \"*\")"
        );
        assert_eq!(
            err("routes:\n- events: [\"*\"]\n  channels: [nowhere]\n"),
            "n.yaml: routes[0].channels[0]: no channel named \"nowhere\""
        );
        assert_eq!(
            err("channels:\n- name: a\n"),
            "n.yaml: channels[0]: needs exactly one of slack, pagerduty, email, cloudevents"
        );
        // A secret written inline is refused without being quoted back.
        let inline = err(
            "channels:\n- name: a\n  slack: {webhookUrl: \"https://hooks.slack.com/services/T/B/XYZ\\\"q\"}\n",
        );
        assert!(inline.starts_with("n.yaml: line 3 column"), "{inline}");
        assert!(inline.contains("a string (value not shown)"), "{inline}");
        assert!(
            !inline.contains("hooks.slack.com") && !inline.contains("XYZ"),
            "{inline}"
        );
        let key = err("channels:\n- name: p\n  pagerduty: {routingKey: R0UT1NGKEY}\n");
        assert!(!key.contains("R0UT1NGKEY"), "{key}");
        let mail = "channels:\n- name: m\n  email: {host: relay, from: a@example.com, to: [b@example.com], ";
        assert_eq!(
            err(&format!("{mail}caFile: /nonexistent/ca.pem}}\n")),
            "n.yaml: channels[0].email.caFile: /nonexistent/ca.pem: No such file or directory (os error 2)"
        );
        assert_eq!(
            err(&format!("{mail}tls: none, caFile: /etc/hostname}}\n")),
            "n.yaml: channels[0].email.caFile: has no effect with tls: none"
        );
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    /// The example shipped in config/ must stay valid.
    #[test]
    fn the_shipped_notifications_file_is_valid() {
        let key = std::env::temp_dir().join(format!("argo-drift-pd-key-{}", std::process::id()));
        let text = include_str!("../../config/notifications.yaml").replace(
            "/etc/argo-drift/secrets/pagerduty-routing-key",
            &key.display().to_string(),
        );
        std::fs::write(&key, "R0UTINGKEY\n").unwrap();
        let n =
            Notifications::from_yaml("config/notifications.yaml", &text, &|_| Some("set".into()))
                .unwrap();
        let _ = std::fs::remove_file(&key);
        assert_eq!(n.channels.len(), 3);
        let names = |k, s| {
            n.channels_for(k, s)
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(EventKind::DriftDetected, Severity::Critical),
            ["sre-slack", "oncall", "platform-mail"]
        );
        assert_eq!(names(EventKind::DriftChanged, Severity::Low), ["sre-slack"]);
        assert!(
            matches!(&n.channels[1].kind, ChannelKind::PagerDuty { routing_key, .. } if routing_key.0 == "R0UTINGKEY")
        );
        let change = |i: usize| crate::event::ChangeLine {
            resource: "Deployment.apps shop/web".into(),
            field: format!("spec.f{i}"),
            severity: Severity::High,
            manager: Some("kubectl-edit".into()),
            live: None,
            changed_by: None,
        };
        let event = crate::event::Notification {
            kind: EventKind::DriftDetected,
            app: "argocd/web".into(),
            severity: Severity::High,
            summary: "high drift in 1 resource".into(),
            changes: {
                let mut changes: Vec<_> = (0..5).map(change).collect();
                // The second change's writer is known from the audit trail.
                changes[1].changed_by = Some(argo_drift_core::audit::ChangedBy {
                    user: "alice".into(),
                    groups: vec![],
                    service_account: None,
                    impersonator: None,
                    user_agent: None,
                    time: "t".into(),
                    verb: "patch".into(),
                    source_ips: vec![],
                    matched: argo_drift_core::audit::Match::ResourceVersion,
                    candidates: None,
                    audit_id: "a".into(),
                });
                changes
            },
            decision: None,
            incident: "i".into(),
            time: "t".into(),
        };
        let r = n
            .templates
            .render("sre-slack", &event, None, crate::template::Escape::Slack)
            .unwrap();
        assert_eq!(r.title.as_deref(), Some("HIGH drift in web"));
        assert_eq!(
            r.body.as_deref(),
            Some("high drift in 1 resource\n• `spec.f0` on Deployment.apps shop/web, set by `kubectl-edit`\n• `spec.f1` on Deployment.apps shop/web, set by alice with `kubectl-edit`\n• `spec.f2` on Deployment.apps shop/web, set by `kubectl-edit`\n…and 2 more")
        );
    }
}
