//! The controller's Prometheus metrics (prometheus-client), registered once and shared.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use argo_drift_core::Severity;
use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub type Labels = Vec<(String, String)>;

/// The age of each application's oldest drift, by severity: `argo_drift_oldest_drift_seconds`.
/// The analysis leaves when each drift was first seen (`argo_drift_core::age`); the age is taken
/// at each scrape, so it grows between analyses as the drift does. An application without drift
/// of a severity has no series for it.
#[derive(Debug, Default)]
pub struct DriftAges {
    /// By application (`namespace/name`), the first-seen time of its oldest drift by severity.
    oldest: std::sync::Mutex<BTreeMap<String, BTreeMap<Severity, DateTime<Utc>>>>,
}

impl DriftAges {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<Severity, DateTime<Utc>>>> {
        // The map is whole after any panic (every change is one insert or remove).
        self.oldest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the latest analysis of `app` found: the first-seen time of its oldest drift of
    /// each severity (none: the app is in sync).
    pub fn set(&self, app: &str, oldest: BTreeMap<Severity, DateTime<Utc>>) {
        let mut ages = self.lock();
        if oldest.is_empty() {
            ages.remove(app);
        } else {
            ages.insert(app.to_string(), oldest);
        }
    }

    /// Forget `app` (gone, or handed over to another replica).
    pub fn remove(&self, app: &str) {
        self.lock().remove(app);
    }

    /// The ages at `now`, by application and severity, in seconds (never below zero: a time
    /// written by a replica whose clock runs ahead counts as now).
    pub fn ages_at(&self, now: DateTime<Utc>) -> Vec<(String, Severity, f64)> {
        let ages = self.lock();
        ages.iter()
            .flat_map(|(app, oldest)| {
                oldest.iter().map(move |(severity, first)| {
                    let age = (now - *first).num_milliseconds().max(0) as f64 / 1000.0;
                    (app.clone(), *severity, age)
                })
            })
            .collect()
    }
}

impl Collector for DriftAges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (app, severity, age) in self.ages_at(Utc::now()) {
            family
                .get_or_create(&labels(&[("app", &app), ("severity", severity.as_str())]))
                .set(age);
        }
        let metric = encoder.encode_descriptor(
            "oldest_drift_seconds",
            "Age of the oldest drift of an application still drifted, by severity: seconds since it was first seen",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

/// Requests to the Kubernetes API by this process, by verb (`get`, `list`, `watch`, `create`,
/// `update`, `patch`, `delete`): counted by a layer on the client's HTTP stack
/// ([`count_request`]), so every client built with it counts here.
pub fn kube_requests() -> &'static Family<Labels, Counter> {
    static REQUESTS: std::sync::OnceLock<Family<Labels, Counter>> = std::sync::OnceLock::new();
    REQUESTS.get_or_init(Family::default)
}

/// Whether an API path names a collection (`/api/v1/namespaces/shop/configmaps`) rather than
/// one object (`…/configmaps/web`, `/api/v1/namespaces/shop`).
fn is_collection(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match parts.first() {
        Some(&"api") => parts.get(2..),
        Some(&"apis") => parts.get(3..),
        _ => None,
    };
    let Some(mut rest) = rest else {
        return false;
    };
    if rest.len() > 2 && rest[0] == "namespaces" {
        rest = &rest[2..];
    }
    rest.len() == 1
}

/// Count one request to the Kubernetes API (see [`kube_requests`]).
pub fn count_request<B>(request: http::Request<B>) -> http::Request<B> {
    let query = request.uri().query().unwrap_or_default();
    let verb = match *request.method() {
        http::Method::GET
            if query
                .split('&')
                .any(|p| p == "watch=true" || p == "watch=1") =>
        {
            "watch"
        }
        http::Method::GET if is_collection(request.uri().path()) => "list",
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    };
    kube_requests()
        .get_or_create(&vec![("verb".to_string(), verb.to_string())])
        .inc();
    request
}

pub struct Metrics {
    registry: Registry,
    /// Resources not in sync, by application and severity.
    pub drifted_resources: Family<Labels, Gauge>,
    /// From the watch event of a live change to the written report.
    pub detection_latency: Histogram,
    pub reconcile_errors: Family<Labels, Counter>,
    pub reconciles: Family<Labels, Counter>,
    pub watch_restarts: Family<Labels, Counter>,
    pub watch_errors: Family<Labels, Counter>,
    /// Live object updates that changed nothing analysis reads (status only), by cluster and kind.
    pub watch_events_ignored: Family<Labels, Counter>,
    pub events_emitted: Family<Labels, Counter>,
    pub git_fetches: Counter,
    /// Remediation actions carried out, by action and outcome (succeeded, failed).
    pub actions: Family<Labels, Counter>,
    /// Actions a guardrail held back, by guardrail.
    pub actions_held: Family<Labels, Counter>,
    pub breaker_trips: Counter,
    /// Resources whose verdict differs from Argo CD's, by application and class.
    pub argocd_disagreements: Family<Labels, Gauge>,
    /// 1 when a destination cluster answers with its credentials, else 0, by cluster.
    pub cluster_up: Family<Labels, Gauge>,
    /// Live-state watches running, by cluster.
    pub cluster_watches: Family<Labels, Gauge>,
    /// Connections to the API server the live-state watches share, by cluster.
    pub watch_connections: Family<Labels, Gauge>,
    /// Replicas sharing the applications, as this replica sees them (sharded only).
    pub replicas: Gauge,
    /// The age of each application's oldest drift, by severity.
    pub drift_ages: Arc<DriftAges>,
    /// Audit events received, by cluster, source (webhook, log) and outcome.
    pub audit_events: Family<Labels, Counter>,
    /// Writes the audit trail keeps now, by cluster.
    pub audit_writes: Family<Labels, Gauge>,
    /// Drifted fields and resources named with who changed them, by how they were joined.
    pub changes_attributed: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("argo_drift");
        let drifted_resources = Family::<Labels, Gauge>::default();
        registry.register(
            "drifted_resources",
            "Resources out of sync with Git, by application and severity",
            drifted_resources.clone(),
        );
        let detection_latency =
            Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        registry.register(
            "detection_latency_seconds",
            "Time from a live change seen by a watch to the updated drift report",
            detection_latency.clone(),
        );
        let reconcile_errors = Family::<Labels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed analyses, by error category",
            reconcile_errors.clone(),
        );
        let reconciles = Family::<Labels, Counter>::default();
        registry.register("reconciles", "Analyses run, by result", reconciles.clone());
        let watch_restarts = Family::<Labels, Counter>::default();
        registry.register(
            "watch_restarts",
            "Watches that re-listed (410 Gone, API server restart), by cluster and kind",
            watch_restarts.clone(),
        );
        let watch_errors = Family::<Labels, Counter>::default();
        registry.register(
            "watch_errors",
            "Watch stream errors, by cluster and kind",
            watch_errors.clone(),
        );
        let watch_events_ignored = Family::<Labels, Counter>::default();
        registry.register(
            "watch_events_ignored",
            "Live object updates that change nothing analysis reads (status only): no re-analysis, by cluster and kind",
            watch_events_ignored.clone(),
        );
        let events_emitted = Family::<Labels, Counter>::default();
        registry.register(
            "events",
            "Kubernetes Events written, by reason",
            events_emitted.clone(),
        );
        let git_fetches = Counter::default();
        registry.register("git_fetches", "Git fetches run", git_fetches.clone());
        let actions = Family::<Labels, Counter>::default();
        registry.register(
            "actions",
            "Remediation actions carried out, by action and outcome",
            actions.clone(),
        );
        let actions_held = Family::<Labels, Counter>::default();
        registry.register(
            "actions_held",
            "Remediation actions held back, by guardrail",
            actions_held.clone(),
        );
        let breaker_trips = Counter::default();
        registry.register(
            "recurrence_breaker_trips",
            "Applications whose recurrence breaker tripped",
            breaker_trips.clone(),
        );
        let argocd_disagreements = Family::<Labels, Gauge>::default();
        registry.register(
            "argocd_disagreements",
            "Resources where argo-drift and Argo CD disagree on drift, by application and class (docs/agreement.md)",
            argocd_disagreements.clone(),
        );
        let cluster_up = Family::<Labels, Gauge>::default();
        registry.register(
            "cluster_up",
            "Whether a destination cluster answers with Argo CD's credentials for it (1) or not (0), by cluster and server",
            cluster_up.clone(),
        );
        let cluster_watches = Family::<Labels, Gauge>::default();
        registry.register(
            "cluster_watches",
            "Live-state watches running, by cluster",
            cluster_watches.clone(),
        );
        let watch_connections = Family::<Labels, Gauge>::default();
        registry.register(
            "watch_connections",
            "Connections to the API server the live-state watches share (HTTP/2 streams), by cluster",
            watch_connections.clone(),
        );
        registry.register(
            "kube_requests",
            "Requests to the Kubernetes API by this process, by verb",
            kube_requests().clone(),
        );
        let replicas = Gauge::default();
        registry.register(
            "shard_replicas",
            "Replicas sharing the applications, as this replica sees them (0 unless sharded)",
            replicas.clone(),
        );
        let drift_ages = Arc::new(DriftAges::default());
        registry.register_collector(Box::new(drift_ages.clone()));
        let audit_events = Family::<Labels, Counter>::default();
        registry.register(
            "audit_events",
            "Kubernetes audit events received, by cluster, source (webhook, log) and outcome (kept, skipped: not a successful write, malformed)",
            audit_events.clone(),
        );
        let audit_writes = Family::<Labels, Gauge>::default();
        registry.register(
            "audit_writes",
            "Writes the audit trail keeps to name who changed a field, by cluster",
            audit_writes.clone(),
        );
        let changes_attributed = Family::<Labels, Counter>::default();
        registry.register(
            "changes_attributed",
            "Drifted fields and resources named with who changed them, by match (resourceVersion, managerTime); counted in every analysis that names them",
            changes_attributed.clone(),
        );
        Metrics {
            audit_events,
            audit_writes,
            changes_attributed,
            registry,
            replicas,
            drift_ages,
            cluster_up,
            cluster_watches,
            watch_connections,
            argocd_disagreements,
            drifted_resources,
            detection_latency,
            reconcile_errors,
            reconciles,
            watch_restarts,
            watch_errors,
            watch_events_ignored,
            events_emitted,
            git_fetches,
            actions,
            actions_held,
            breaker_trips,
        }
    }

    /// For other components (the notifier) to register their metrics before serving starts.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The text exposition format for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_verb() {
        let verb_of = |method: &str, uri: &str| {
            let before = |v: &str| {
                kube_requests()
                    .get_or_create(&vec![("verb".to_string(), v.to_string())])
                    .get()
            };
            let all = [
                "get", "list", "watch", "create", "update", "patch", "delete",
            ];
            let counts: Vec<u64> = all.iter().map(|v| before(v)).collect();
            let r = http::Request::builder()
                .method(method)
                .uri(uri)
                .body(())
                .unwrap();
            count_request(r);
            all.iter()
                .zip(counts)
                .find(|(v, c)| before(v) == c + 1)
                .map(|(v, _)| *v)
                .unwrap()
        };
        assert_eq!(
            verb_of("GET", "/api/v1/namespaces/shop/configmaps/web"),
            "get"
        );
        assert_eq!(verb_of("GET", "/api/v1/namespaces/shop/configmaps"), "list");
        assert_eq!(verb_of("GET", "/api/v1/namespaces/shop"), "get");
        assert_eq!(verb_of("GET", "/api/v1/namespaces"), "list");
        assert_eq!(
            verb_of("GET", "/apis/apps/v1/deployments?labelSelector=a"),
            "list"
        );
        assert_eq!(
            verb_of(
                "GET",
                "/apis/apps/v1/namespaces/shop/deployments?watch=true&resourceVersion=5"
            ),
            "watch"
        );
        assert_eq!(
            verb_of(
                "PATCH",
                "/apis/argoproj.io/v1alpha1/namespaces/a/applications/x"
            ),
            "patch"
        );
        assert_eq!(verb_of("POST", "/api/v1/namespaces/a/configmaps"), "create");
    }

    #[test]
    fn the_oldest_drift_is_exported_with_its_age_at_the_scrape() {
        let metrics = Metrics::new();
        let now = Utc::now();
        let oldest = BTreeMap::from([
            (Severity::Critical, now - chrono::Duration::seconds(900)),
            (Severity::Low, now - chrono::Duration::seconds(30)),
        ]);
        metrics.drift_ages.set("shop/web", oldest);
        let text = metrics.encode();
        assert!(
            text.contains("# TYPE argo_drift_oldest_drift_seconds gauge"),
            "{text}"
        );
        let value = |severity: &str| {
            let prefix = format!(
                "argo_drift_oldest_drift_seconds{{app=\"shop/web\",severity=\"{severity}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .map(|v| v.parse::<f64>().unwrap())
        };
        let critical = value("critical").unwrap();
        assert!((900.0..960.0).contains(&critical), "{critical}");
        let low = value("low").unwrap();
        assert!((30.0..90.0).contains(&low), "{low}");
        assert_eq!(value("high"), None, "no high drift, no series");
        // In sync again: the app's series go.
        metrics.drift_ages.set("shop/web", BTreeMap::new());
        assert!(!metrics.encode().contains("app=\"shop/web\""));
        // A first-seen time ahead of this clock counts as now.
        metrics.drift_ages.set(
            "shop/api",
            BTreeMap::from([(Severity::High, now + chrono::Duration::seconds(60))]),
        );
        assert_eq!(metrics.drift_ages.ages_at(now)[0].2, 0.0);
        metrics.drift_ages.remove("shop/api");
        assert!(metrics.drift_ages.ages_at(now).is_empty());
    }
}
