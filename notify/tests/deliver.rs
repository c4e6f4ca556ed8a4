//! Delivery against local HTTP servers that answer like Slack and PagerDuty do: their payload
//! rules checked on every request, scripted 429 with Retry-After, 5xx, slow answers, and a dead
//! endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argo_drift_core::Severity;
use argo_drift_notify::deliver::{HttpTarget, RateLimit, Retry};
use argo_drift_notify::event::{ChangeLine, EventKind, Notification};
use argo_drift_notify::{pagerduty, slack, Error};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// A scripted answer: status, Retry-After, delay before answering.
type Step = (u16, Option<u64>, u64);

#[derive(Default)]
struct Peer {
    script: Mutex<VecDeque<Step>>,
    received: Mutex<Vec<(Instant, Value)>>,
}

/// PagerDuty Events v2's documented rules for an event.
fn pagerduty_problems(e: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if !e["routing_key"].is_string() {
        p.push("routing_key is required".into());
    }
    let action = e["event_action"].as_str().unwrap_or("");
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        p.push(format!("event_action {action:?} is invalid"));
    }
    if let Some(k) = e["dedup_key"].as_str() {
        if k.chars().count() > 255 {
            p.push("dedup_key is longer than 255".into());
        }
    } else if action != "trigger" {
        p.push("dedup_key is required to acknowledge or resolve".into());
    }
    if action == "trigger" {
        let payload = &e["payload"];
        for field in ["summary", "source", "severity"] {
            if !payload[field].is_string() {
                p.push(format!("payload.{field} is required"));
            }
        }
        if payload["summary"]
            .as_str()
            .is_some_and(|s| s.chars().count() > 1024)
        {
            p.push("payload.summary is longer than 1024".into());
        }
        if !["critical", "error", "warning", "info"]
            .contains(&payload["severity"].as_str().unwrap_or(""))
        {
            p.push("payload.severity is invalid".into());
        }
    }
    p
}

/// Slack's rules for an incoming-webhook message with blocks.
fn slack_problems(m: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if !m["text"].is_string() && !m["blocks"].is_array() {
        p.push("no_text".into());
    }
    let blocks = m["blocks"].as_array().cloned().unwrap_or_default();
    if blocks.len() > 50 {
        p.push("invalid_blocks: more than 50".into());
    }
    for b in &blocks {
        match b["type"].as_str().unwrap_or("") {
            "header" => {
                if b["text"]["type"] != "plain_text"
                    || b["text"]["text"]
                        .as_str()
                        .is_none_or(|t| t.chars().count() > 150)
                {
                    p.push("invalid_blocks: header".into());
                }
            }
            "section" => {
                if b["text"]["text"]
                    .as_str()
                    .is_some_and(|t| t.chars().count() > 3000)
                {
                    p.push("invalid_blocks: section text over 3000".into());
                }
                if b["fields"].as_array().is_some_and(|f| f.len() > 10) {
                    p.push("invalid_blocks: more than 10 fields".into());
                }
            }
            "context" | "actions" | "divider" => {}
            other => p.push(format!("invalid_blocks: unknown type {other}")),
        }
    }
    p
}

async fn answer(
    peer: &Peer,
    body: Value,
    problems: Vec<String>,
    ok: StatusCode,
    rejected: Value,
) -> axum::response::Response {
    peer.received.lock().unwrap().push((Instant::now(), body));
    let step = peer.script.lock().unwrap().pop_front();
    if let Some((status, retry_after, delay)) = step {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let mut headers = HeaderMap::new();
        if let Some(s) = retry_after {
            headers.insert("retry-after", s.to_string().parse().unwrap());
        }
        return (StatusCode::from_u16(status).unwrap(), headers, "scripted").into_response();
    }
    if problems.is_empty() {
        (
            ok,
            Json(json!({"status": "success", "message": "Event processed"})),
        )
            .into_response()
    } else {
        let mut rejected = rejected;
        rejected["errors"] = json!(problems);
        (StatusCode::BAD_REQUEST, Json(rejected)).into_response()
    }
}

async fn start(script: Vec<Step>) -> (String, Arc<Peer>) {
    let peer = Arc::new(Peer::default());
    peer.script.lock().unwrap().extend(script);
    let app = Router::new()
        .route(
            "/v2/enqueue",
            post(
                |State(peer): State<Arc<Peer>>, Json(body): Json<Value>| async move {
                    let problems = pagerduty_problems(&body);
                    answer(
                        &peer,
                        body,
                        problems,
                        StatusCode::ACCEPTED,
                        json!({"status": "invalid event", "message": "Event object is invalid"}),
                    )
                    .await
                },
            ),
        )
        .route(
            "/services/T000/B000/XXXXSECRETXXXX",
            post(
                |State(peer): State<Arc<Peer>>, Json(body): Json<Value>| async move {
                    let problems = slack_problems(&body);
                    answer(
                        &peer,
                        body,
                        problems,
                        StatusCode::OK,
                        json!({"error": "invalid_blocks"}),
                    )
                    .await
                },
            ),
        )
        .with_state(peer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, peer)
}

fn target(url: &str, attempts: u32, timeout_ms: u64, per_second: f64) -> HttpTarget {
    HttpTarget::new(
        "test",
        url,
        Duration::from_millis(timeout_ms),
        Retry {
            attempts,
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(400),
            max_retry_after: Duration::from_secs(5),
        },
        RateLimit::per_second(per_second),
    )
}

fn notification(kind: EventKind) -> Notification {
    Notification {
        kind,
        app: "argocd/web".into(),
        severity: Severity::Critical,
        summary: "critical drift in 1 resource".into(),
        changes: vec![ChangeLine {
            resource: "Secret shop/db".into(),
            field: "data.password".into(),
            severity: Severity::High,
            manager: Some("kubectl-edit".into()),
            live: Some("\"<redacted #1>\"".into()),
            changed_by: None,
        }],
        decision: None,
        incident: "argo-drift/argocd/web/00ff".into(),
        time: "2026-11-21T06:00:00Z".into(),
    }
}

#[tokio::test]
async fn pagerduty_trigger_and_resolve_are_accepted_by_the_documented_rules() {
    let (url, peer) = start(vec![]).await;
    let pd = target(&format!("{url}/v2/enqueue"), 3, 2000, 100.0);
    let trigger = pagerduty::event(&notification(EventKind::DriftDetected), "R0UTINGKEY", None);
    assert_eq!(pd.post(&trigger).await.unwrap(), 1);
    let resolve = pagerduty::event(&notification(EventKind::DriftResolved), "R0UTINGKEY", None);
    assert_eq!(pd.post(&resolve).await.unwrap(), 1);
    {
        let got = peer.received.lock().unwrap();
        assert_eq!(got[1].1["dedup_key"], got[0].1["dedup_key"]);
    }
    // The peer does refuse a broken event.
    let err = pd
        .post(&json!({"event_action": "trigger"}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rejected {
                protocol: "HTTP",
                status: 400,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn slack_messages_pass_block_kit_rules_even_when_long() {
    let (url, _peer) = start(vec![]).await;
    let hook = target(
        &format!("{url}/services/T000/B000/XXXXSECRETXXXX"),
        3,
        2000,
        100.0,
    );
    let mut n = notification(EventKind::DriftDetected);
    n.changes = (0..200).map(|_| n.changes[0].clone()).collect();
    n.summary = "x".repeat(5000);
    assert_eq!(
        hook.post(&slack::message(&n, Some("https://argocd.example.com")))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_5xx_with_backoff() {
    let (url, peer) = start(vec![(429, Some(1), 0), (500, None, 0), (503, None, 0)]).await;
    let pd = target(&format!("{url}/v2/enqueue"), 5, 2000, 100.0);
    let started = Instant::now();
    let attempts = pd
        .post(&pagerduty::event(
            &notification(EventKind::DriftDetected),
            "k",
            None,
        ))
        .await
        .unwrap();
    assert_eq!(attempts, 4);
    let got = peer.received.lock().unwrap();
    let gap = got[1].0 - got[0].0;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {gap:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test]
async fn slow_and_dead_channels_give_up_after_the_attempts_without_showing_the_url() {
    let (url, peer) = start(vec![(200, None, 800), (200, None, 800)]).await;
    let slow = target(
        &format!("{url}/services/T000/B000/XXXXSECRETXXXX"),
        2,
        100,
        100.0,
    );
    let err = slow.post(&json!({"text": "hi"})).await.unwrap_err();
    assert!(
        matches!(err, Error::Undelivered { attempts: 2, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("SECRET"), "{err}");
    assert_eq!(peer.received.lock().unwrap().len(), 2);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = target(
        &format!("http://127.0.0.1:{port}/services/T000/B000/XXXXSECRETXXXX"),
        3,
        500,
        100.0,
    );
    let err = dead.post(&json!({"text": "hi"})).await.unwrap_err();
    assert_eq!(err.category(), "undelivered");
    assert!(!err.to_string().contains("SECRET"), "{err}");
}

#[tokio::test]
async fn the_rate_limit_spreads_a_burst() {
    let (url, peer) = start(vec![]).await;
    let hook = target(
        &format!("{url}/services/T000/B000/XXXXSECRETXXXX"),
        1,
        2000,
        10.0,
    );
    for i in 0..5 {
        hook.post(&json!({"text": format!("message {i}")}))
            .await
            .unwrap();
    }
    let got = peer.received.lock().unwrap();
    let span = got[4].0 - got[0].0;
    assert!(
        span >= Duration::from_millis(390),
        "5 messages at 10/s span {span:?}"
    );
}

mod dispatch {
    use super::*;
    use argo_drift_notify::config::Notifications;
    use argo_drift_notify::dispatch::{Notifier, Queued};

    fn config(pd_url: &str, slack_url: &str, queue: usize) -> Notifications {
        config_with(pd_url, slack_url, queue, "")
    }

    /// Both channels, routed: high and above to PagerDuty, everything to Slack; `extra` is
    /// appended to the file.
    fn config_with(pd_url: &str, slack_url: &str, queue: usize, extra: &str) -> Notifications {
        let text = format!(
            "queueSize: {queue}\nchannels:\n- name: oncall\n  pagerduty: {{routingKey: {{env: PD_KEY}}, url: \"{pd_url}\"}}\n  ratePerSecond: 100\n- name: sre\n  slack: {{webhookUrl: {{env: SLACK_URL}}}}\n  ratePerSecond: 100\nroutes:\n- events: [\"*\"]\n  minSeverity: high\n  channels: [oncall]\n- events: [\"*\"]\n  channels: [sre]\n{extra}"
        );
        let slack_url = slack_url.to_string();
        Notifications::from_yaml("n.yaml", &text, &move |k| match k {
            "PD_KEY" => Some("R0UTINGKEY0123456789".into()),
            "SLACK_URL" => Some(slack_url.clone()),
            _ => None,
        })
        .unwrap()
    }

    async fn settle(peer: &Peer, n: usize) -> Vec<Value> {
        for _ in 0..100 {
            if peer.received.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        peer.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    #[tokio::test]
    async fn one_trigger_per_incident_and_exactly_one_resolve_with_the_same_dedup_key() {
        let (url, peer) = start(vec![]).await;
        let notifier = Notifier::start(
            config(
                &format!("{url}/v2/enqueue"),
                &format!("{url}/services/T000/B000/XXXXSECRETXXXX"),
                16,
            ),
            None,
        )
        .unwrap();
        let detected = notification(EventKind::DriftDetected);
        assert_eq!(
            notifier.notify(detected.clone()),
            [
                Queued::Queued("oncall".into()),
                Queued::Queued("sre".into())
            ]
        );
        // The same event again within the window (a flapping field): nothing new is sent.
        assert_eq!(
            notifier.notify(detected.clone()),
            [
                Queued::Duplicate("oncall".into()),
                Queued::Duplicate("sre".into())
            ]
        );
        let resolved = notification(EventKind::DriftResolved);
        notifier.notify(resolved.clone());
        notifier.notify(resolved.clone());
        let got = settle(&peer, 4).await;
        let pd: Vec<&Value> = got
            .iter()
            .filter(|v| v.get("event_action").is_some())
            .collect();
        assert_eq!(pd.len(), 2, "{pd:#?}");
        assert_eq!(pd[0]["event_action"], "trigger");
        assert_eq!(pd[1]["event_action"], "resolve");
        assert_eq!(pd[0]["dedup_key"], pd[1]["dedup_key"]);
        let slack: Vec<&Value> = got.iter().filter(|v| v.get("blocks").is_some()).collect();
        assert_eq!(slack.len(), 2, "detected and one resolved follow-up");
        assert_eq!(notifier.stats().count_of("oncall", "sent"), 2);
        assert_eq!(notifier.stats().count_of("oncall", "duplicate"), 2);

        // An incident is resolved once, even after the dedup window: a second resolution (a
        // second replica, a replay) is skipped.
        assert_eq!(notifier.stats().count_of("oncall", "skipped"), 0);
        // An incident opened before a restart is unknown here and still resolved, with its
        // own key: the page must not stay open.
        let mut earlier = notification(EventKind::DriftResolved);
        earlier.incident = "argo-drift/argocd/web/opened-before-restart".into();
        notifier.notify(earlier);
        let got = settle(&peer, 5).await;
        let last = got
            .iter()
            .rev()
            .find(|v| v.get("event_action").is_some())
            .unwrap();
        assert_eq!(last["event_action"], "resolve");
        assert_eq!(
            last["dedup_key"],
            "argo-drift/argocd/web/opened-before-restart"
        );
        // Below the pager's threshold: Slack only.
        let mut low = notification(EventKind::DriftChanged);
        low.severity = Severity::Low;
        assert_eq!(notifier.notify(low), [Queued::Queued("sre".into())]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_channel_fills_only_its_own_queue_and_the_failure_is_visible() {
        let (url, _peer) = start(vec![]).await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead_pd = format!("http://127.0.0.1:{port}/v2/enqueue");
        let notifier = Notifier::start(
            config(
                &dead_pd,
                &format!("{url}/services/T000/B000/XXXXSECRETXXXX"),
                2,
            ),
            None,
        )
        .unwrap();
        let mut outcomes = Vec::new();
        for i in 0..20 {
            let mut n = notification(EventKind::DriftDetected);
            n.incident = format!("incident-{i}");
            let started = Instant::now();
            outcomes.extend(notifier.notify(n));
            assert!(
                started.elapsed() < Duration::from_millis(50),
                "notify never waits for a channel"
            );
            // Drift arrives over time: the healthy channel keeps up, the dead one does not.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let dropped = outcomes
            .iter()
            .filter(|o| matches!(o, Queued::Dropped(c) if c == "oncall"))
            .count();
        assert!(dropped >= 15, "{outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|o| !matches!(o, Queued::Dropped(c) if c == "sre")),
            "Slack keeps up: {outcomes:?}"
        );
        assert_eq!(
            notifier.stats().count_of("oncall", "dropped"),
            dropped as u64
        );
        let failure = notifier.last_failure("argocd/web").unwrap();
        assert!(failure.starts_with("oncall:"), "{failure}");
    }

    #[tokio::test]
    async fn templates_shape_titles_and_bodies_and_the_payloads_stay_valid() {
        let (url, peer) = start(vec![]).await;
        let templates = r#"templates:
- events: [drift-detected]
  title: "{{ severity | upper }} drift in {{ appName }} ({{ changes | length }} fields)"
  body: |-
    Changed by {% for c in changes %}{{ c.manager }} <{{ c.field }}>{% endfor %}
"#;
        let notifier = Notifier::start(
            config_with(
                &format!("{url}/v2/enqueue"),
                &format!("{url}/services/T000/B000/XXXXSECRETXXXX"),
                16,
                templates,
            ),
            None,
        )
        .unwrap();
        let mut n = notification(EventKind::DriftDetected);
        n.changes[0].manager = Some("<@U123>&co".into());
        notifier.notify(n);
        let got = settle(&peer, 2).await;
        let pd = got.iter().find(|v| v.get("routing_key").is_some()).unwrap();
        let slack = got.iter().find(|v| v.get("blocks").is_some()).unwrap();
        assert_eq!(pagerduty_problems(pd), Vec::<String>::new());
        assert_eq!(slack_problems(slack), Vec::<String>::new());
        assert_eq!(pd["payload"]["summary"], "CRITICAL drift in web (1 fields)");
        assert_eq!(
            pd["payload"]["custom_details"]["message"],
            "Changed by <@U123>&co <data.password>"
        );
        assert_eq!(
            slack["blocks"][0]["text"]["text"],
            "CRITICAL drift in web (1 fields)"
        );
        // Values are escaped for mrkdwn, so a manager name cannot ping anyone; the template's
        // own text is left as written.
        assert_eq!(
            slack["blocks"][1]["text"]["text"],
            "Changed by &lt;@U123&gt;&amp;co <data.password>"
        );
        // Events without a template keep the default layout.
        notifier.notify(notification(EventKind::DriftResolved));
        let got = settle(&peer, 4).await;
        let resolved = got
            .iter()
            .rev()
            .find(|v| v.get("blocks").is_some())
            .unwrap();
        assert_eq!(
            resolved["blocks"][0]["text"]["text"],
            "Drift resolved: argocd/web"
        );
    }

    #[tokio::test]
    async fn an_incident_is_resolved_once_even_after_the_dedup_window() {
        let (url, peer) = start(vec![]).await;
        let notifier = Notifier::start(
            config_with(
                &format!("{url}/v2/enqueue"),
                &format!("{url}/services/T000/B000/XXXXSECRETXXXX"),
                16,
                "dedupWindowSeconds: 0\n",
            ),
            None,
        )
        .unwrap();
        notifier.notify(notification(EventKind::DriftDetected));
        notifier.notify(notification(EventKind::DriftResolved));
        notifier.notify(notification(EventKind::DriftResolved));
        let got = settle(&peer, 5).await;
        let actions: Vec<&Value> = got.iter().filter_map(|v| v.get("event_action")).collect();
        assert_eq!(actions, ["trigger", "resolve"]);
        assert_eq!(notifier.stats().count_of("oncall", "skipped"), 1);
    }
}

mod cloudevents {
    use super::*;
    use argo_drift_notify::config::Notifications;
    use argo_drift_notify::dispatch::Notifier;
    use std::sync::Mutex;

    type Seen = Arc<Mutex<Vec<(axum::http::HeaderMap, Value)>>>;

    /// A sink that answers 500 to the first `failures` requests, then 202.
    async fn sink(failures: usize) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let handler = move |headers: axum::http::HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let n = {
                    let mut got = s.lock().unwrap();
                    got.push((headers, value));
                    got.len()
                };
                if n <= failures {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::ACCEPTED
                }
            }
        };
        let app = axum::Router::new().route("/drift", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/drift", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    /// The CloudEvents 1.0 JSON format's rules for the attributes argo-drift sends.
    fn problems(e: &Value) -> Vec<String> {
        let mut p = Vec::new();
        if e["specversion"] != "1.0" {
            p.push("specversion must be \"1.0\"".into());
        }
        for required in ["id", "source", "type"] {
            if e[required].as_str().is_none_or(|s| s.is_empty()) {
                p.push(format!("{required} must be a non-empty string"));
            }
        }
        if let Some(t) = e["time"].as_str() {
            if !rfc3339(t) {
                p.push(format!("time {t:?} is not RFC 3339"));
            }
        }
        if e.get("data").is_some() && e["datacontenttype"] != "application/json" {
            p.push("data without datacontenttype application/json".into());
        }
        if !e["data"].is_object() {
            p.push("data must be a JSON object".into());
        }
        let known = [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "data",
        ];
        for key in e
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if !known.contains(&key.as_str())
                && !key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                p.push(format!(
                    "extension attribute {key:?} must be lower-case alphanumeric"
                ));
            }
        }
        p
    }

    /// RFC 3339 without a date library: `YYYY-MM-DDTHH:MM:SS(.f)?(Z|+HH:MM|-HH:MM)`.
    fn rfc3339(s: &str) -> bool {
        let b = s.as_bytes();
        let digits =
            |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
        b.len() >= 20
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && (b[10] == b'T' || b[10] == b't')
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19)
            && (s.ends_with('Z') || s[19..].contains('+') || s[19..].contains('-'))
    }

    #[tokio::test]
    async fn events_are_cloudevents_1_0_structured_json_and_a_retry_keeps_the_id() {
        let (url, seen) = sink(1).await;
        let text = format!(
            "cloudEventsSource: /argo-drift/controller/test\nchannels:\n- name: events\n  cloudevents:\n    url: \"{url}\"\n    auth: {{bearer: {{env: SINK_TOKEN}}}}\n  ratePerSecond: 100\nroutes:\n- events: [drift-detected, drift-resolved]\n  minSeverity: high\n  channels: [events]\n"
        );
        let config = Notifications::from_yaml("n.yaml", &text, &|k| {
            (k == "SINK_TOKEN").then(|| "s3cret".to_string())
        })
        .unwrap();
        let notifier = Notifier::start(config, None).unwrap();
        notifier.notify(notification(EventKind::DriftDetected));
        let mut low = notification(EventKind::DriftChanged);
        low.severity = Severity::Low;
        notifier.notify(low);
        for _ in 0..200 {
            if seen.lock().unwrap().len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let got = seen.lock().unwrap().clone();
        assert_eq!(
            got.len(),
            2,
            "a 500, then the retry; the low change is filtered out"
        );
        let (first, second) = (&got[0], &got[1]);
        assert_eq!(first.1["id"], second.1["id"], "a retry is the same event");
        for (headers, event) in [first, second] {
            assert_eq!(problems(event), Vec::<String>::new(), "{event:#}");
            assert!(headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/cloudevents+json"));
            assert_eq!(headers["authorization"], "Bearer s3cret");
        }
        let e = &second.1;
        assert_eq!(e["type"], "io.argo-drift.drift.detected");
        assert_eq!(e["source"], "/argo-drift/controller/test");
        assert_eq!(e["subject"], "argocd/web");
        assert_eq!(e["data"]["severity"], "critical");
        assert_eq!(e["data"]["changes"][0]["field"], "data.password");
        assert_eq!(e["data"]["changes"][0]["live"], "\"<redacted #1>\"");
        assert_eq!(notifier.stats().count_of("events", "sent"), 1);
    }
}

#[test]
fn the_argo_events_example_filters_on_the_types_argo_drift_sends() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/argo-events");
    let sensor: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("sensor.yaml")).unwrap()).unwrap();
    let types = &sensor["spec"]["dependencies"][0]["filters"]["data"][0]["value"];
    for kind in [EventKind::DriftDetected, EventKind::DriftChanged] {
        let t = argo_drift_notify::cloudevents::event_type(kind);
        assert!(types.as_array().unwrap().iter().any(|v| v == &t), "{t}");
    }
    let source: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("eventsource.yaml")).unwrap())
            .unwrap();
    assert_eq!(source["spec"]["webhook"]["drift"]["endpoint"], "/drift");
}
