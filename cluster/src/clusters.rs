//! Destination clusters, found as Argo CD finds them: `spec.destination.server` or `.name`, the
//! local cluster as `https://kubernetes.default.svc` / `in-cluster`, every other one from Argo
//! CD's cluster Secrets (label `argocd.argoproj.io/secret-type: cluster` in its namespace). Each
//! cluster has one client, one discovery cache and one set of shared watches, rebuilt when its
//! Secret changes (a rotated token takes effect without a restart). A cluster that does not
//! answer, or refuses its credentials, is said to be exactly that on its applications: nothing
//! is compared there and no action taken.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::Store;
use kube::Client;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use argo_drift_core::normalize::TrackingKeys;

use crate::application::Application;
use crate::connect::{WatchConnections, STREAMS_PER_CONNECTION};
use crate::error::{Error, Result};
use crate::live::{AppRef, LiveState, Trigger};
use crate::lock;
use crate::metrics::{labels, Metrics};

/// Argo CD's address of the cluster it runs in (`KubernetesInternalAPIServerAddr`).
pub const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";
/// Argo CD's name of that cluster (`KubernetesInClusterName`).
pub const IN_CLUSTER_NAME: &str = "in-cluster";
/// Argo CD's cluster Secrets (common.LabelKeySecretType = cluster).
pub const SECRET_SELECTOR: &str = "argocd.argoproj.io/secret-type=cluster";
/// How long a probe of a cluster may take before the cluster counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the last probe of a cluster found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not probed yet.
    Unknown,
    Reachable,
    /// No answer: connection refused, timed out, TLS failed.
    Unreachable(String),
    /// The API server refused the credentials (401, 403).
    Unauthorised(String),
}

/// One destination cluster: its client, live state and health.
pub struct Cluster {
    /// The Secret's `name` (`in-cluster` for the local one): metrics and messages.
    pub name: String,
    /// The API server URL, as Argo CD keys clusters.
    pub server: String,
    pub live: LiveState,
    client: Client,
    health: Mutex<Health>,
    /// The cluster Secret's resourceVersion it was built from (empty without a Secret).
    version: String,
    probe: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Cluster {
    pub fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    /// Fails with [`Error::ClusterUnavailable`] when the cluster's last probe failed; a cluster
    /// never probed is probed now.
    pub async fn usable(&self) -> Result<()> {
        let mut health = self.health();
        if health == Health::Unknown {
            health = self.probe_now().await;
        }
        self.check(health)
    }

    /// After a failure that may be the cluster's (discovery, a watch that did not list): probe
    /// again, and say that the cluster is unavailable if it is, else pass the error on.
    pub async fn explain(&self, error: Error) -> Error {
        if !matches!(
            error,
            Error::Discover { .. } | Error::WatchNotReady { .. } | Error::Kube { .. }
        ) {
            return error;
        }
        match self.check(self.probe_now().await) {
            Ok(()) => error,
            Err(unavailable) => unavailable,
        }
    }

    fn check(&self, health: Health) -> Result<()> {
        let (state, reason) = match health {
            Health::Unknown | Health::Reachable => return Ok(()),
            Health::Unreachable(r) => ("unreachable", r),
            Health::Unauthorised(r) => ("unauthorised", r),
        };
        Err(Error::ClusterUnavailable {
            cluster: self.name.clone(),
            server: self.server.clone(),
            state,
            reason,
        })
    }

    async fn probe_now(&self) -> Health {
        let health = probe(&self.client).await;
        *lock(&self.health) = health.clone();
        health
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(p) = lock(&self.probe).take() {
            p.abort();
        }
    }
}

/// `GET /version` with the cluster's credentials. A revoked or wrong token is refused there
/// (401) even though the endpoint is public to anonymous users.
async fn probe(client: &Client) -> Health {
    match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
        Err(_) => Health::Unreachable(format!("no answer in {} s", PROBE_TIMEOUT.as_secs())),
        Ok(Ok(_)) => Health::Reachable,
        Ok(Err(kube::Error::Api(s))) if s.code == 401 || s.code == 403 => {
            Health::Unauthorised(format!("{} ({} {})", s.message, s.code, s.reason))
        }
        Ok(Err(e)) => Health::Unreachable(with_causes(&e)),
    }
}

/// An error with its causes ("client error (Connect)" alone does not say "connection refused").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Each cluster's latest health by server URL, with its name: `/readyz` shows it.
pub type Board = Arc<Mutex<BTreeMap<String, (String, Health)>>>;

/// One line per cluster for `/readyz`.
pub fn describe_board(board: &Board) -> String {
    lock(board)
        .iter()
        .map(|(server, (name, health))| {
            let state = match health {
                Health::Unknown => "not probed yet".to_string(),
                Health::Reachable => "reachable".to_string(),
                Health::Unreachable(r) => format!("unreachable: {r}"),
                Health::Unauthorised(r) => format!("unauthorised: {r}"),
            };
            format!("cluster {name} ({server}): {state}\n")
        })
        .collect()
}

/// Every destination cluster argo-drift has needed, keyed by server URL.
pub struct Clusters {
    local: Client,
    /// What the local client was built from: its watches' connections are built from it too.
    local_config: kube::Config,
    /// Argo CD's namespace, where its cluster Secrets live (for messages).
    control_plane: String,
    secrets: Option<Store<Secret>>,
    argocd_cm: Option<Store<ConfigMap>>,
    built: Mutex<HashMap<String, Arc<Cluster>>>,
    /// The cluster (server) each application was last found on.
    placed: Arc<Mutex<HashMap<AppRef, String>>>,
    tracking: Arc<RwLock<TrackingKeys>>,
    triggers: mpsc::UnboundedSender<Trigger>,
    metrics: Arc<Metrics>,
    probe_every: Duration,
    board: Board,
}

/// What `Clusters` needs besides the local client.
pub struct ClusterSettings {
    pub control_plane: String,
    pub secrets: Option<Store<Secret>>,
    pub argocd_cm: Option<Store<ConfigMap>>,
    pub tracking: TrackingKeys,
    pub probe_every: Duration,
    pub board: Board,
}

impl Clusters {
    pub fn new(
        local: Client,
        local_config: kube::Config,
        settings: ClusterSettings,
        triggers: mpsc::UnboundedSender<Trigger>,
        metrics: Arc<Metrics>,
    ) -> Clusters {
        Clusters {
            local,
            local_config,
            control_plane: settings.control_plane,
            secrets: settings.secrets,
            argocd_cm: settings.argocd_cm,
            built: Mutex::default(),
            placed: Arc::default(),
            tracking: Arc::new(RwLock::new(settings.tracking)),
            triggers,
            metrics,
            probe_every: settings.probe_every,
            board: settings.board,
        }
    }

    /// The cluster an application deploys to, its client built (or rebuilt, when its Secret
    /// changed). The application is forgotten on the cluster it was on before, if another.
    pub async fn resolve(&self, app: &Application, app_ref: &AppRef) -> Result<Arc<Cluster>> {
        self.listed().await?;
        let server = self.destination_server(app)?;
        let cluster = self.cluster(&server).await?;
        let before = lock(&self.placed).insert(app_ref.clone(), server.clone());
        if let Some(before) = before.filter(|b| *b != server) {
            if let Some(old) = lock(&self.built).get(&before).cloned() {
                let others: HashSet<AppRef> = old
                    .live
                    .apps()
                    .into_iter()
                    .filter(|a| a != app_ref)
                    .collect();
                old.live.retain_apps(&others);
            }
        }
        Ok(cluster)
    }

    /// Wait for the first list of the cluster Secrets and argocd-cm: an analysis before it
    /// would find no cluster (and no Secret change would come to correct it).
    async fn listed(&self) -> Result<()> {
        if let Some(s) = &self.secrets {
            wait_listed(s, &format!("cluster Secrets in {}", self.control_plane)).await?;
        }
        if let Some(s) = &self.argocd_cm {
            wait_listed(s, &format!("{}/argocd-cm", self.control_plane)).await?;
        }
        Ok(())
    }

    /// Argo CD's tracking marks now (argocd-cm can change them): the watches route changes by
    /// them.
    pub fn set_tracking(&self, keys: &TrackingKeys) {
        let mut tracking = self.tracking.write().unwrap_or_else(|p| p.into_inner());
        if *tracking != *keys {
            *tracking = keys.clone();
        }
    }

    /// Forget applications that are gone, on every cluster, and the clusters no application
    /// deploys to any more (their watches and probe stop). Returns the applications forgotten.
    pub fn retain_apps(&self, alive: &HashSet<AppRef>) -> Vec<AppRef> {
        let in_use: HashSet<String> = {
            let mut placed = lock(&self.placed);
            placed.retain(|a, _| alive.contains(a));
            placed.values().cloned().collect()
        };
        lock(&self.built).retain(|server, c| {
            let keep = in_use.contains(server);
            if !keep {
                tracing::info!(cluster = %c.name, server, "no application deploys there: cluster forgotten");
                lock(&self.board).remove(server);
            }
            keep
        });
        let clusters: Vec<Arc<Cluster>> = lock(&self.built).values().cloned().collect();
        let mut gone: Vec<AppRef> = Vec::new();
        for c in clusters {
            for a in c.live.retain_apps(alive) {
                if !gone.contains(&a) {
                    gone.push(a);
                }
            }
        }
        gone
    }

    /// `cluster.inClusterEnabled` of argocd-cm: anything but "false" enables it
    /// (util/settings/settings.go, IsInClusterEnabled).
    fn in_cluster_enabled(&self) -> bool {
        self.argocd_cm
            .as_ref()
            .and_then(|s| s.state().into_iter().next())
            .and_then(|cm| cm.data.as_ref()?.get("cluster.inClusterEnabled").cloned())
            .is_none_or(|v| v != "false")
    }

    fn cluster_secrets(&self) -> Vec<Arc<Secret>> {
        let mut secrets = self.secrets.as_ref().map(Store::state).unwrap_or_default();
        // Argo CD takes the first Secret of its index for a URL; by name, to be stable.
        secrets.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        secrets
    }

    /// The server URL of an application's destination ([`destination_server`]).
    pub fn destination_server(&self, app: &Application) -> Result<String> {
        destination_server(
            &app.destination_name,
            &app.destination_server,
            &self.cluster_secrets(),
            self.in_cluster_enabled(),
        )
    }

    /// util/db/cluster.go GetCluster: the in-cluster address is the local cluster (unless
    /// disabled; a Secret for it only names it), any other comes from its Secret.
    async fn cluster(&self, server: &str) -> Result<Arc<Cluster>> {
        let secret = self
            .cluster_secrets()
            .into_iter()
            .find(|s| secret_field(s, "server").is_some_and(|v| v.trim_end_matches('/') == server));
        if server == IN_CLUSTER_SERVER {
            if !self.in_cluster_enabled() {
                return Err(Error::Destination {
                    message: format!(
                        "cluster {server:?} is disabled (argocd-cm cluster.inClusterEnabled)"
                    ),
                });
            }
            let name = secret
                .as_ref()
                .and_then(|s| secret_field(s, "name"))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| IN_CLUSTER_NAME.to_string());
            // argo-drift's own credentials: it runs beside Argo CD, in that cluster.
            let version = format!("local:{name}");
            return self
                .built(server, &version, || async {
                    Ok((name.clone(), self.local.clone(), self.local_config.clone()))
                })
                .await;
        }
        let Some(secret) = secret else {
            return Err(Error::Destination {
                message: format!(
                    "cluster {server:?} not found: no Secret labelled {SECRET_SELECTOR} in {} has this server",
                    self.control_plane
                ),
            });
        };
        let version = secret.metadata.resource_version.clone().unwrap_or_default();
        let name = secret_field(&secret, "name")
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| server.to_string());
        let secret_name = format!(
            "{}/{}",
            secret.metadata.namespace.as_deref().unwrap_or_default(),
            secret.metadata.name.as_deref().unwrap_or_default()
        );
        self.built(server, &version, || async {
            let fail = |message: String| Error::ClusterConfig {
                cluster: name.clone(),
                secret: secret_name.clone(),
                message,
            };
            let kubeconfig = kubeconfig(server, &secret).map_err(fail)?;
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| fail(format!("building a client: {}", with_causes(&e))))?;
            let client = crate::connect::client(&config)
                .map_err(|e| fail(format!("building a client: {}", with_causes(&e))))?;
            Ok((name.clone(), client, config))
        })
        .await
    }

    /// The cluster built for `server` from `version`, or a new one (its probe started).
    async fn built<F, Fut>(&self, server: &str, version: &str, make: F) -> Result<Arc<Cluster>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Client, kube::Config)>>,
    {
        if let Some(c) = lock(&self.built).get(server) {
            if c.version == version {
                return Ok(c.clone());
            }
        }
        let (name, client, config) = make().await?;
        let cluster = Arc::new(Cluster {
            live: LiveState::new(
                client.clone(),
                WatchConnections::new(config, STREAMS_PER_CONNECTION),
                &name,
                self.tracking.clone(),
                self.triggers.clone(),
                self.metrics.clone(),
            ),
            name,
            server: server.to_string(),
            client,
            health: Mutex::new(Health::Unknown),
            version: version.to_string(),
            probe: Mutex::default(),
        });
        let task = tokio::spawn(keep_probing(
            Arc::downgrade(&cluster),
            self.probe_every,
            self.placed.clone(),
            self.triggers.clone(),
            self.metrics.clone(),
            self.board.clone(),
        ));
        *lock(&cluster.probe) = Some(task.abort_handle());
        let mut built = lock(&self.built);
        // Another analysis may have built it meanwhile: keep one.
        if let Some(c) = built.get(server).filter(|c| c.version == version) {
            return Ok(c.clone());
        }
        if built.insert(server.to_string(), cluster.clone()).is_some() {
            tracing::info!(cluster = %cluster.name, server, "cluster Secret changed: new client, watches restarted");
        } else {
            tracing::info!(cluster = %cluster.name, server, "destination cluster added");
        }
        Ok(cluster)
    }
}

/// Probe a cluster now and then; when its health changes, say so in the metrics and log, and
/// analyse its applications again (their reports say the cluster is unavailable, or compare
/// again once it is back).
async fn keep_probing(
    cluster: Weak<Cluster>,
    every: Duration,
    placed: Arc<Mutex<HashMap<AppRef, String>>>,
    triggers: mpsc::UnboundedSender<Trigger>,
    metrics: Arc<Metrics>,
    board: Board,
) {
    let mut last: Option<Health> = None;
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let health = c.probe_now().await;
        lock(&board).insert(c.server.clone(), (c.name.clone(), health.clone()));
        metrics
            .cluster_up
            .get_or_create(&labels(&[("cluster", &c.name), ("server", &c.server)]))
            .set(i64::from(health == Health::Reachable));
        if last.as_ref().is_some_and(|l| *l != health) {
            match &health {
                Health::Reachable => tracing::info!(cluster = %c.name, "cluster reachable again"),
                other => tracing::warn!(cluster = %c.name, health = ?other, "cluster unavailable"),
            }
            let apps: Vec<AppRef> = lock(&placed)
                .iter()
                .filter(|(_, s)| **s == c.server)
                .map(|(a, _)| a.clone())
                .collect();
            crate::live::send_all(&triggers, apps, false);
        }
        last = Some(health);
        drop(c);
        tokio::time::sleep(every).await;
    }
}

/// Argo CD's util/argo/argo.go GetDestinationServer and util/db/cluster.go
/// GetClusterServersByName, with their messages: `server` as given (trailing `/` trimmed), or
/// the one cluster Secret with `name` (`in-cluster` is the local cluster unless a Secret takes
/// the name, or argocd-cm disables it).
pub fn destination_server(
    name: &str,
    server: &str,
    secrets: &[Arc<Secret>],
    in_cluster_enabled: bool,
) -> Result<String> {
    let fail = |message: String| Err(Error::Destination { message });
    if !name.is_empty() && !server.is_empty() {
        return fail(format!(
            "application destination can't have both name and server defined: {name} {server}"
        ));
    }
    if !server.is_empty() {
        return Ok(server.trim_end_matches('/').to_string());
    }
    if name.is_empty() {
        return fail("Destination server missing from app spec".into());
    }
    let mut servers: Vec<String> = secrets
        .iter()
        .filter(|s| secret_field(s, "name").as_deref() == Some(name))
        .filter_map(|s| secret_field(s, "server"))
        .map(|s| s.trim_end_matches('/').to_string())
        .collect();
    if servers.is_empty() && name == IN_CLUSTER_NAME && in_cluster_enabled {
        servers.push(IN_CLUSTER_SERVER.to_string());
    }
    if !in_cluster_enabled {
        servers.retain(|s| s != IN_CLUSTER_SERVER);
    }
    match servers.len() {
        0 => fail(format!("there are no clusters with this name: {name}")),
        1 => Ok(servers.remove(0)),
        n => fail(format!(
            "there are {n} clusters with the same name: [{}]",
            servers.join(" ")
        )),
    }
}

/// How long an analysis waits for the first list of Argo CD's Secrets and ConfigMaps.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

async fn wait_listed<K>(store: &Store<K>, what: &str) -> Result<()>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    use futures::FutureExt as _;
    // Store::wait_until_ready wakes only the last of several waiters (kube-runtime 5's
    // DelayedInit polls a oneshot receiver, which keeps one waker): analyses that waited
    // together hung forever. Each looks now and then instead.
    let deadline = tokio::time::Instant::now() + LIST_TIMEOUT;
    loop {
        if matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::WatchNotReady {
                what: what.to_string(),
                seconds: LIST_TIMEOUT.as_secs(),
                last_error: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn secret_field(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

/// Argo CD's `ClusterConfig` (pkg/apis/application/v1alpha1/types.go), the JSON in a cluster
/// Secret's `config`. Byte fields are base64 in JSON, as kubeconfig's `*-data` fields are.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ClusterConfig {
    username: String,
    password: String,
    bearer_token: String,
    tls_client_config: TlsClientConfig,
    aws_auth_config: Option<Value>,
    exec_provider_config: Option<ExecProviderConfig>,
    disable_compression: bool,
    proxy_url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TlsClientConfig {
    insecure: bool,
    server_name: String,
    cert_data: String,
    key_data: String,
    ca_data: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ExecProviderConfig {
    command: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    api_version: String,
    install_hint: String,
    provide_cluster_info: bool,
    config: Option<Value>,
}

/// A kubeconfig with the one cluster of a Secret, as Argo CD's Cluster.RawRestConfig builds its
/// rest.Config: awsAuthConfig first (not supported here), then execProviderConfig (its token
/// and basic auth ignored, as there), else bearer token, basic auth and client certificate.
/// Errors never quote the Secret's values.
fn kubeconfig(server: &str, secret: &Secret) -> std::result::Result<Kubeconfig, String> {
    let config: ClusterConfig = match secret.data.as_ref().and_then(|d| d.get("config")) {
        Some(bytes) if !bytes.0.is_empty() => serde_json::from_slice(&bytes.0).map_err(|e| {
            // serde_json's message can quote the offending value: only where and what kind.
            format!(
                "data.config is not Argo CD's cluster config JSON ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            )
        })?,
        _ => ClusterConfig::default(),
    };
    if config.aws_auth_config.is_some() {
        return Err("config.awsAuthConfig (EKS IAM authentication through argocd-k8s-auth) is not supported by argo-drift; use a bearerToken, a TLS client certificate or an execProviderConfig whose command is in argo-drift's image".into());
    }
    let tls = &config.tls_client_config;
    let mut cluster = json!({"server": server});
    if tls.insecure {
        cluster["insecure-skip-tls-verify"] = json!(true);
    } else if !tls.ca_data.is_empty() {
        cluster["certificate-authority-data"] = json!(tls.ca_data);
    }
    if !tls.server_name.is_empty() {
        cluster["tls-server-name"] = json!(tls.server_name);
    }
    if !config.proxy_url.is_empty() {
        cluster["proxy-url"] = json!(config.proxy_url);
    }
    if config.disable_compression {
        cluster["disable-compression"] = json!(true);
    }
    let mut user = json!({});
    if !tls.cert_data.is_empty() {
        user["client-certificate-data"] = json!(tls.cert_data);
    }
    if !tls.key_data.is_empty() {
        user["client-key-data"] = json!(tls.key_data);
    }
    if let Some(exec) = &config.exec_provider_config {
        if exec.command.is_empty() {
            return Err("config.execProviderConfig has no command".into());
        }
        let env: Vec<Value> = exec
            .env
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect();
        user["exec"] = json!({
            "apiVersion": exec.api_version,
            "command": exec.command,
            "args": exec.args,
            "env": env,
            "installHint": exec.install_hint,
            "provideClusterInfo": exec.provide_cluster_info,
            "interactiveMode": "Never",
        });
        if let Some(extension) = &exec.config {
            cluster["extensions"] =
                json!([{"name": "client.authentication.k8s.io/exec", "extension": extension}]);
        }
    } else {
        if !config.bearer_token.is_empty() {
            user["token"] = json!(config.bearer_token);
        }
        if !config.username.is_empty() {
            user["username"] = json!(config.username);
            user["password"] = json!(config.password);
        }
    }
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "destination", "cluster": cluster}],
        "users": [{"name": "argocd", "user": user}],
        "contexts": [{"name": "destination", "context": {"cluster": "destination", "user": "argocd"}}],
        "current-context": "destination",
    });
    serde_json::from_value(kubeconfig).map_err(|e| {
        format!(
            "the cluster config does not make a kubeconfig ({:?} error)",
            e.classify()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(name: &str, server: &str, config: &str) -> Secret {
        let mut data = BTreeMap::new();
        data.insert("name".to_string(), ByteString(name.as_bytes().to_vec()));
        data.insert("server".to_string(), ByteString(server.as_bytes().to_vec()));
        data.insert("config".to_string(), ByteString(config.as_bytes().to_vec()));
        Secret {
            data: Some(data),
            ..Default::default()
        }
    }

    fn dest(name: &str, server: &str, secrets: &[Secret], enabled: bool) -> String {
        let secrets: Vec<Arc<Secret>> = secrets.iter().cloned().map(Arc::new).collect();
        match destination_server(name, server, &secrets, enabled) {
            Ok(s) => s,
            Err(e) => format!("error: {e}"),
        }
    }

    /// Cases of Argo CD's TestGetDestinationServer / TestGetClusterServersByName
    /// (util/argo/argo_test.go, util/db/cluster_test.go).
    #[test]
    fn destinations_resolve_as_argo_cd_resolves_them() {
        let spoke = secret("spoke", "https://spoke:6443/", "");
        let twin = secret("spoke", "https://other:6443", "");
        let named_local = secret("local", IN_CLUSTER_SERVER, "");
        assert_eq!(
            dest("", "https://spoke:6443/", &[], true),
            "https://spoke:6443"
        );
        assert_eq!(
            dest("spoke", "", std::slice::from_ref(&spoke), true),
            "https://spoke:6443"
        );
        assert_eq!(dest("in-cluster", "", &[], true), IN_CLUSTER_SERVER);
        assert_eq!(
            dest("in-cluster", "", &[], false),
            "error: destination: there are no clusters with this name: in-cluster"
        );
        assert_eq!(
            dest("local", "", std::slice::from_ref(&named_local), true),
            IN_CLUSTER_SERVER
        );
        assert_eq!(
            dest("local", "", &[named_local], false),
            "error: destination: there are no clusters with this name: local"
        );
        assert_eq!(
            dest("spoke", "", &[spoke.clone(), twin], true),
            "error: destination: there are 2 clusters with the same name: [https://spoke:6443 https://other:6443]"
        );
        assert_eq!(
            dest("spoke", "https://spoke:6443", &[spoke], true),
            "error: destination: application destination can't have both name and server defined: spoke https://spoke:6443"
        );
        assert_eq!(
            dest("", "", &[], true),
            "error: destination: Destination server missing from app spec"
        );
    }

    /// Many analyses wait for the first list at once: every one goes on once it is done (with
    /// Store::wait_until_ready only the last waiter did; the others hung).
    #[tokio::test]
    async fn every_analysis_waiting_for_the_first_list_goes_on() {
        use kube::runtime::watcher::Event;
        let mut writer = kube::runtime::reflector::store::Writer::<Secret>::default();
        let store = writer.as_reader();
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { wait_listed(&store, "cluster Secrets").await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitDone);
        for w in waiters {
            let done = tokio::time::timeout(Duration::from_secs(5), w).await;
            assert!(matches!(done, Ok(Ok(Ok(())))), "a waiter hung");
        }
    }

    #[test]
    fn a_bearer_token_and_ca_make_a_kubeconfig() {
        let s = secret(
            "spoke",
            "https://spoke:6443",
            r#"{"bearerToken":"s3cr3t","tlsClientConfig":{"insecure":false,"caData":"Q0E="}}"#,
        );
        let kc = kubeconfig("https://spoke:6443", &s).unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://spoke:6443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Q0E="));
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.token.is_some());
        assert!(user.exec.is_none());
    }

    #[test]
    fn an_exec_provider_wins_over_a_token_as_in_argo_cd() {
        let s = secret(
            "gke",
            "https://gke",
            r#"{"bearerToken":"ignored","execProviderConfig":{"command":"argocd-k8s-auth","args":["gcp"],"apiVersion":"client.authentication.k8s.io/v1beta1","env":{"A":"b"}},"tlsClientConfig":{"insecure":true}}"#,
        );
        let kc = kubeconfig("https://gke", &s).unwrap();
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        let exec = user.exec.as_ref().unwrap();
        assert_eq!(exec.command.as_deref(), Some("argocd-k8s-auth"));
        assert_eq!(exec.args.as_deref(), Some(&["gcp".to_string()][..]));
        assert!(user.token.is_none());
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.insecure_skip_tls_verify, Some(true));
    }

    #[test]
    fn unsupported_and_invalid_configs_are_refused_without_quoting_secrets() {
        let aws = secret(
            "eks",
            "https://eks",
            r#"{"awsAuthConfig":{"clusterName":"prod","roleARN":"arn:aws:iam::1:role/x"}}"#,
        );
        let e = kubeconfig("https://eks", &aws).unwrap_err();
        assert!(e.contains("awsAuthConfig"), "{e}");
        assert!(!e.contains("arn:aws"), "{e}");
        let bad = secret(
            "x",
            "https://x",
            r#"{"bearerToken": 12345678, "tlsClientConfig": {}}"#,
        );
        let e = kubeconfig("https://x", &bad).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        assert!(!e.contains("12345678"), "{e}");
        let typed = secret(
            "x",
            "https://x",
            r#"{"tlsClientConfig": {"insecure": "hunter2"}}"#,
        );
        let e = kubeconfig("https://x", &typed).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
