//! The notifier: routes each event to its channels, drops repeats within the dedup window, and
//! hands the rest to one bounded queue and worker per channel. `notify` never waits: a slow or
//! dead channel fills its own queue, new messages to it are dropped and counted, and detection
//! and remediation carry on.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::config::{Channel, ChannelKind, Notifications};
use crate::deliver::{HttpTarget, RateLimit, Retry};
use crate::email::{self, EmailChannel};
use crate::event::{EventKind, Notification};
use crate::template::{Escape, Templates};
use crate::{pagerduty, slack};

type Labels = Vec<(String, String)>;

/// What became of one event on one channel at `notify` time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    Queued(String),
    /// Sent already within the dedup window.
    Duplicate(String),
    /// The channel's queue is full (the channel is down or far behind).
    Dropped(String),
}

#[derive(Default)]
pub struct Stats {
    /// By channel and outcome: sent, failed, dropped, duplicate, skipped.
    pub messages: Family<Labels, Counter>,
    /// The last delivery failure per application and channel, for the application's report;
    /// a success on that channel clears it.
    failures: Mutex<HashMap<String, std::collections::BTreeMap<String, String>>>,
    /// Told the application whenever its failures change, so its report can show them now
    /// rather than at its next analysis.
    changed: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

impl Stats {
    fn failed(&self, app: &str, channel: &str, message: String) {
        let before = lock(&self.failures)
            .entry(app.to_string())
            .or_default()
            .insert(channel.to_string(), message.clone());
        if before.as_ref() != Some(&message) {
            self.tell(app);
        }
    }

    fn delivered(&self, app: &str, channel: &str) {
        let mut failures = lock(&self.failures);
        let Some(f) = failures.get_mut(app) else {
            return;
        };
        if f.remove(channel).is_some() {
            if f.is_empty() {
                failures.remove(app);
            }
            drop(failures);
            self.tell(app);
        }
    }

    fn tell(&self, app: &str) {
        if let Some(tx) = lock(&self.changed).as_ref() {
            let _ = tx.send(app.to_string());
        }
    }

    fn count(&self, channel: &str, outcome: &str) {
        self.messages
            .get_or_create(&vec![
                ("channel".into(), channel.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
    }

    pub fn count_of(&self, channel: &str, outcome: &str) -> u64 {
        self.messages
            .get_or_create(&vec![
                ("channel".into(), channel.into()),
                ("outcome".into(), outcome.into()),
            ])
            .get()
    }
}

pub struct Notifier {
    config: Notifications,
    queues: HashMap<String, mpsc::Sender<Notification>>,
    dedup: Mutex<HashMap<(String, String, EventKind), Instant>>,
    stats: Arc<Stats>,
}

impl Notifier {
    /// Start one worker per channel (inside a Tokio runtime). Metrics go to `registry` if given.
    /// Fails only when a channel cannot be set up at all (an email host TLS cannot name).
    pub fn start(
        config: Notifications,
        registry: Option<&mut Registry>,
    ) -> Result<Notifier, String> {
        let stats = Arc::new(Stats::default());
        if let Some(r) = registry {
            r.register(
                "notifications",
                "Notifications by channel and outcome (sent, failed, dropped, duplicate, skipped)",
                stats.messages.clone(),
            );
        }
        let mut queues = HashMap::new();
        for channel in &config.channels {
            let (tx, rx) = mpsc::channel(config.queue_size);
            queues.insert(channel.name.clone(), tx);
            let worker = Worker::new(channel, &config, stats.clone())?;
            tokio::spawn(worker.run(rx));
        }
        Ok(Notifier {
            config,
            queues,
            dedup: Mutex::default(),
            stats,
        })
    }

    /// Applications (`namespace/name`) whose delivery failures changed, from now on.
    pub fn failure_changes(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.stats.changed) = Some(tx);
        rx
    }

    /// How long drift must stay gone before its incident is resolved (flap damping).
    pub fn resolve_hold(&self) -> Duration {
        self.config.resolve_hold
    }

    /// How long drift of `severity` may last before it is announced as stale (`None`: never).
    pub fn stale_after(&self, severity: argo_drift_core::Severity) -> Option<Duration> {
        self.config.stale_after.get(&severity).copied()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The failures to deliver notifications about `app`, per channel, since that channel's
    /// last success (for the application's report).
    pub fn last_failure(&self, app: &str) -> Option<String> {
        let failures = lock(&self.stats.failures);
        let f = failures.get(app)?;
        Some(f.values().cloned().collect::<Vec<_>>().join("; "))
    }

    /// Route `n` and queue it for each of its channels. Never waits.
    pub fn notify(&self, n: Notification) -> Vec<Queued> {
        let now = Instant::now();
        let window = self.config.dedup_window;
        let mut out = Vec::new();
        for channel in self.config.channels_for(n.kind, n.severity) {
            let name = channel.name.clone();
            let key = (name.clone(), n.incident.clone(), n.kind);
            {
                let mut seen = lock(&self.dedup);
                seen.retain(|_, t| now.duration_since(*t) < window);
                if seen.contains_key(&key) {
                    self.stats.count(&name, "duplicate");
                    out.push(Queued::Duplicate(name));
                    continue;
                }
                seen.insert(key, now);
            }
            let Some(queue) = self.queues.get(&name) else {
                continue;
            };
            match queue.try_send(n.clone()) {
                Ok(()) => out.push(Queued::Queued(name)),
                Err(_) => {
                    self.stats.count(&name, "dropped");
                    tracing::warn!(channel = %name, app = %n.app, "notification dropped: the channel's queue is full");
                    self.stats.failed(
                        &n.app,
                        &name,
                        format!("{name}: queue full, notification dropped"),
                    );
                    out.push(Queued::Dropped(name));
                }
            }
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolved incidents a PagerDuty channel remembers, to send each resolve once.
const RESOLVED_REMEMBERED: usize = 10_000;

enum Target {
    Slack(HttpTarget),
    CloudEvents {
        http: HttpTarget,
        source: String,
    },
    PagerDuty {
        http: HttpTarget,
        routing_key: String,
        /// Incidents this channel resolved: a resolve is sent once per incident. One for an
        /// incident not seen here (opened before a restart: its id lives on the report
        /// ConfigMap) is sent; PagerDuty ignores a resolve for a key it does not know.
        resolved: HashSet<String>,
    },
    Email(Box<EmailChannel>, RateLimit),
}

struct Worker {
    name: String,
    target: Target,
    argocd_url: Option<String>,
    templates: Templates,
    stats: Arc<Stats>,
}

impl Worker {
    fn new(channel: &Channel, config: &Notifications, stats: Arc<Stats>) -> Result<Worker, String> {
        let argocd_url = config.argocd_url.clone();
        let templates = &config.templates;
        let source = &config.source;
        let http = |url: &str| {
            HttpTarget::new(
                &channel.name,
                url,
                Duration::from_secs(10),
                Retry::default(),
                RateLimit::per_second(channel.rate_per_second),
            )
        };
        let target = match &channel.kind {
            ChannelKind::Slack { webhook_url } => Target::Slack(http(&webhook_url.0)),
            ChannelKind::CloudEvents { url, auth } => {
                let mut http = http(url);
                http.content_type = Some(crate::cloudevents::CONTENT_TYPE);
                http.auth = auth.clone();
                Target::CloudEvents {
                    http,
                    source: source.clone().unwrap_or_else(|| "/argo-drift".into()),
                }
            }
            ChannelKind::PagerDuty { routing_key, url } => Target::PagerDuty {
                http: http(url),
                routing_key: routing_key.0.clone(),
                resolved: HashSet::new(),
            },
            ChannelKind::Email {
                host,
                port,
                tls,
                username,
                password,
                from,
                to,
                ca_pem,
            } => {
                let settings = email::Settings {
                    host: host.clone(),
                    port: *port,
                    tls: *tls,
                    username: username.clone(),
                    password: password.as_ref().map(|p| p.0.clone()),
                    from: from.clone(),
                    to: to.clone(),
                    timeout: Duration::from_secs(10),
                    ca_pem: ca_pem.clone(),
                };
                let c = EmailChannel::new(&channel.name, settings)
                    .map_err(|e| format!("channel {}: {e}", channel.name))?
                    .with_templates(templates.clone());
                Target::Email(Box::new(c), RateLimit::per_second(channel.rate_per_second))
            }
        };
        Ok(Worker {
            templates: templates.clone(),
            name: channel.name.clone(),
            target,
            argocd_url,
            stats,
        })
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Notification>) {
        while let Some(n) = rx.recv().await {
            let Some(result) = self.deliver(&n).await else {
                self.stats.count(&self.name, "skipped");
                continue; // nothing of ours is open to resolve
            };
            match result {
                Ok(_) => {
                    self.stats.count(&self.name, "sent");
                    self.stats.delivered(&n.app, &self.name);
                }
                Err(e) => {
                    self.stats.count(&self.name, "failed");
                    tracing::warn!(channel = %self.name, app = %n.app, error = %e, "notification not delivered");
                    self.stats.failed(&n.app, &self.name, e.to_string());
                }
            }
        }
    }

    /// Deliver one notification; `None` when there is nothing to send (a resolve for an
    /// incident this channel never paged).
    async fn deliver(&mut self, n: &Notification) -> Option<crate::Result<u32>> {
        let argocd_url = self.argocd_url.as_deref();
        Some(match &mut self.target {
            Target::CloudEvents { http, source } => {
                http.post(&crate::cloudevents::event(n, source)).await
            }
            Target::Slack(http) => {
                let t = self
                    .templates
                    .render(&self.name, n, argocd_url, Escape::Slack);
                http.post(&slack::message_with(n, argocd_url, t.as_ref()))
                    .await
            }
            Target::PagerDuty {
                http,
                routing_key,
                resolved,
            } => {
                if n.kind.closes_incident() {
                    if resolved.contains(&n.incident) {
                        return None;
                    }
                    // Bounded: incident ids are per drift episode, so old ones never return.
                    if resolved.len() >= RESOLVED_REMEMBERED {
                        resolved.clear();
                    }
                    resolved.insert(n.incident.clone());
                } else {
                    resolved.remove(&n.incident);
                }
                let t = self
                    .templates
                    .render(&self.name, n, argocd_url, Escape::None);
                http.post(&pagerduty::event_with(
                    n,
                    routing_key,
                    argocd_url,
                    t.as_ref(),
                ))
                .await
            }
            Target::Email(channel, limit) => {
                limit.acquire().await;
                channel.send(n, argocd_url).await
            }
        })
    }
}

/// Send notifications on one channel now, in order, without routing, dedup or queue: what
/// `argo-drift notify test` uses to check a channel's settings. Returns the attempts each took.
pub async fn send_now(
    config: &Notifications,
    channel: &Channel,
    notifications: &[Notification],
) -> Result<Vec<u32>, String> {
    let mut worker = Worker::new(channel, config, Arc::new(Stats::default()))?;
    let mut attempts = Vec::new();
    for n in notifications {
        match worker.deliver(n).await {
            Some(Ok(a)) => attempts.push(a),
            Some(Err(e)) => return Err(e.to_string()),
            None => attempts.push(0),
        }
    }
    Ok(attempts)
}
