//! The controller's Prometheus metrics (prometheus-client), registered once and shared.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub type Labels = Vec<(String, String)>;

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
        Metrics {
            registry,
            replicas,
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
}
