//! The controller's Prometheus metrics (prometheus-client), registered once and shared.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub type Labels = Vec<(String, String)>;

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
    /// Replicas sharing the applications, as this replica sees them (sharded only).
    pub replicas: Gauge,
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
        let replicas = Gauge::default();
        registry.register(
            "shard_replicas",
            "Replicas sharing the applications, as this replica sees them (0 unless sharded)",
            replicas.clone(),
        );
        Metrics {
            registry,
            replicas,
            cluster_up,
            cluster_watches,
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
