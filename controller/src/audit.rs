//! Kubernetes audit events in, for naming who changed each drifted field (`changedBy`; the join
//! is [`argo_drift_core::audit`]'s).
//!
//! Two ways in, each feeding one [`Trail`] per cluster:
//! - the API server's **audit webhook backend** (`--audit-webhook-config-file`, for
//!   self-managed control planes): `POST /audit` (the cluster argo-drift runs in, `in-cluster`)
//!   or `POST /audit/<cluster>` (an Argo CD cluster's name or server URL) with an
//!   `audit.k8s.io/v1` `EventList`, over HTTPS, authenticated by a client certificate of a
//!   CA given to argo-drift and/or a bearer token (deploy/audit/webhook-kubeconfig.yaml);
//! - a **JSON-lines audit log** (`--audit-log [CLUSTER=]PATH`, what a log shipper forwards from a
//!   managed control plane, or kube-apiserver's own `--audit-log-path`): read from its start,
//!   then followed, across rotation; `-` is standard input.
//!
//! Nothing of an event is logged: an error names the file and line, or the peer, never content.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use argo_drift_cluster::metrics::{labels, Metrics};
use argo_drift_core::audit::{self, Limits, Trail};
use argo_drift_core::DriftReport;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The cluster argo-drift runs in, as Argo CD names it.
pub const IN_CLUSTER: &str = "in-cluster";

/// The audit trails of every cluster, shared by the receivers and the analyses.
pub struct Trails {
    limits: Limits,
    by_cluster: Mutex<HashMap<String, Trail>>,
    metrics: Arc<Metrics>,
    /// Where events may come from: any cluster (a webhook receiver: any API server may post
    /// to it), or the clusters of the audit logs read.
    sources: Sources,
}

/// The clusters whose audit events argo-drift may receive.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// A webhook receiver runs: any cluster's API server may post to it.
    pub any_cluster: bool,
    /// The clusters of `--audit-log`.
    pub logs: Vec<String>,
}

impl Trails {
    pub fn new(limits: Limits, metrics: Arc<Metrics>, sources: Sources) -> Arc<Trails> {
        Arc::new(Trails {
            limits,
            by_cluster: Mutex::new(HashMap::new()),
            metrics,
            sources,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Trail>> {
        self.by_cluster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keep the successful writes among `events`, for `cluster`.
    pub fn record(&self, cluster: &str, source: &str, events: Vec<audit::Event>) {
        let now = chrono::Utc::now();
        let (mut kept, mut skipped) = (0u64, 0u64);
        let writes = {
            let mut trails = self.lock();
            let trail = trails
                .entry(cluster.to_string())
                .or_insert_with(|| Trail::new(self.limits));
            for event in events {
                match trail.record(event, now) {
                    Ok(()) => kept += 1,
                    Err(audit::Skipped::NotAWrite) => skipped += 1,
                }
            }
            trail.len()
        };
        let count = |outcome: &str, n: u64| {
            if n > 0 {
                self.metrics
                    .audit_events
                    .get_or_create(&labels(&[
                        ("cluster", cluster),
                        ("source", source),
                        ("outcome", outcome),
                    ]))
                    .inc_by(n);
            }
        };
        count("kept", kept);
        count("skipped", skipped);
        self.metrics
            .audit_writes
            .get_or_create(&labels(&[("cluster", cluster)]))
            .set(i64::try_from(writes).unwrap_or(i64::MAX));
    }

    /// Writes kept now for `cluster`.
    pub fn writes(&self, cluster: &str) -> usize {
        self.lock().get(cluster).map_or(0, Trail::len)
    }

    fn malformed(&self, cluster: &str, source: &str) {
        self.metrics
            .audit_events
            .get_or_create(&labels(&[
                ("cluster", cluster),
                ("source", source),
                ("outcome", "malformed"),
            ]))
            .inc();
    }

    /// Name who changed each drift of `report`, from the trail of the cluster named `name` or
    /// `server` (Argo CD's name for it, or its URL); `resource` gives a kind's plural. The
    /// trail is locked only to take the drifted objects' writes out; the joins run without it.
    /// Returns how many changes and resources were named; `None` when no source can bring
    /// events of that cluster (nothing to wait for).
    pub fn attribute(
        &self,
        name: &str,
        server: &str,
        report: &mut DriftReport,
        resource: impl Fn(&str, &str) -> Option<String>,
    ) -> Option<usize> {
        let keys = audit::drifted_objects(report, resource);
        let writes = {
            let mut trails = self.lock();
            let key = if trails.contains_key(name) {
                name
            } else {
                server
            };
            let Some(trail) = trails.get_mut(key) else {
                // None yet: none may ever come (no source for this cluster), or the first
                // are on their way (the receiver or the log reader has just started).
                let covered = self.sources.any_cluster
                    || self.sources.logs.iter().any(|c| c == name || c == server);
                return covered.then_some(0);
            };
            trail.expire(chrono::Utc::now());
            trail.writes_of(&keys)
        };
        Some(audit::attribute(report, &keys, &writes))
    }

    /// Count the report's named changes by how they were joined (once per analysis).
    pub fn count(&self, report: &DriftReport) {
        for r in &report.resources {
            let by = r.changes.iter().filter_map(|c| c.changed_by.as_ref());
            for c in r.changed_by.iter().chain(by) {
                let matched = match c.matched {
                    audit::Match::ResourceVersion => "resourceVersion",
                    audit::Match::ManagerTime => "managerTime",
                };
                self.metrics
                    .changes_attributed
                    .get_or_create(&labels(&[("match", matched)]))
                    .inc();
            }
        }
    }
}

// --- the webhook backend's receiver ------------------------------------------------------------

/// How the receiver is reached and who may post to it.
pub struct WebhookSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates must chain to these (the API server's webhook kubeconfig presents one).
    pub client_ca: Option<PathBuf>,
    /// `Authorization: Bearer` must carry this (the webhook kubeconfig's `token`).
    pub token: Option<Vec<u8>>,
    /// The largest EventList accepted.
    pub body_limit: usize,
}

/// The TLS server configuration: our certificate, and a client certificate required when a CA
/// is given. Errors name the file, never its content.
pub fn server_tls(settings: &WebhookSettings) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = pem_certificates(&settings.cert, "the audit webhook's certificate")?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|e| {
        anyhow::anyhow!(
            "reading the audit webhook's private key {}: {}",
            settings.key.display(),
            pem_error(&e)
        )
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &settings.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in pem_certificates(ca, "the audit webhook's client CA")? {
                roots
                    .add(cert)
                    .with_context(|| format!("{}: not a usable CA certificate", ca.display()))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .with_context(|| format!("{}: client certificate verifier", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "{} and {}: the certificate and key do not make a TLS server identity",
            settings.cert.display(),
            settings.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn pem_certificates(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("reading {what} {}: {}", path.display(), pem_error(&e)))?;
    if certs.is_empty() {
        anyhow::bail!("{what} {}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}

/// A PEM error without any of the file's content.
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM item of that type in it".into(),
        Error::MissingSectionEnd { .. } | Error::IllegalSectionStart { .. } => {
            "a PEM section is not closed".into()
        }
        Error::Base64Decode(_) => "a PEM section is not valid base64".into(),
        _ => "not valid PEM".into(),
    }
}

/// TLS connections, handshaken concurrently (a slow or refused client holds up no other).
struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(conn) => conn,
            // The acceptor is gone (shutdown): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

fn tls_listener(listener: TcpListener, tls: Arc<rustls::ServerConfig>) -> io::Result<TlsListener> {
    let local = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(tls);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "audit webhook: accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    // Without a client certificate of the CA, or not TLS at all.
                    Ok(Err(e)) => {
                        tracing::warn!(peer = %peer, error = %e, "audit webhook: TLS handshake refused")
                    }
                    Err(_) => {
                        tracing::warn!(peer = %peer, "audit webhook: TLS handshake timed out")
                    }
                }
            });
        }
    });
    Ok(TlsListener {
        accepted: rx,
        local,
    })
}

#[derive(Clone)]
struct Receiver {
    trails: Arc<Trails>,
    token: Option<Arc<[u8]>>,
}

/// Serve the webhook backend's receiver on `listener` until `shutdown`.
pub async fn serve_webhook(
    listener: TcpListener,
    settings: WebhookSettings,
    trails: Arc<Trails>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = server_tls(&settings)?;
    let receiver = Receiver {
        trails,
        token: settings.token.map(Arc::from),
    };
    let router = Router::new()
        .route("/audit", post(receive_in_cluster))
        .route("/audit/{cluster}", post(receive))
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .with_state(receiver);
    let listener = tls_listener(listener, tls)?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving the audit webhook")
}

async fn receive_in_cluster(
    state: State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    accept(&state, IN_CLUSTER, &headers, &body)
}

async fn receive(
    state: State<Receiver>,
    UrlPath(cluster): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    accept(&state, &cluster, &headers, &body)
}

fn accept(
    receiver: &Receiver,
    cluster: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (StatusCode, String) {
    if let Some(token) = &receiver.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::as_bytes)
            .unwrap_or_default();
        if !bool::from(given.ct_eq(token)) {
            tracing::warn!(
                cluster,
                "audit webhook: a request without the bearer token was refused"
            );
            return (
                StatusCode::UNAUTHORIZED,
                "a bearer token is required\n".into(),
            );
        }
    }
    if cluster.is_empty() || cluster.len() > 253 {
        return (StatusCode::NOT_FOUND, "no such cluster name\n".into());
    }
    match serde_json::from_slice::<audit::EventList>(body) {
        Ok(list) if list.kind == "EventList" => {
            let n = list.items.len();
            receiver.trails.record(cluster, "webhook", list.items);
            tracing::debug!(cluster, events = n, "audit events received");
            (StatusCode::OK, "{}\n".into())
        }
        Ok(_) => {
            receiver.trails.malformed(cluster, "webhook");
            (
                StatusCode::BAD_REQUEST,
                "expected an audit.k8s.io/v1 EventList\n".into(),
            )
        }
        Err(e) => {
            receiver.trails.malformed(cluster, "webhook");
            // serde's message names a position, not content.
            (
                StatusCode::BAD_REQUEST,
                format!("not an audit.k8s.io/v1 EventList: {e}\n"),
            )
        }
    }
}

// --- the audit log reader ----------------------------------------------------------------------

/// `[CLUSTER=]PATH` of `--audit-log`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSource {
    pub cluster: String,
    pub path: PathBuf,
}

pub fn parse_log_source(text: &str) -> Result<LogSource, String> {
    let (cluster, path) = match text.split_once('=') {
        // A path may hold '=' too; a cluster name (Argo CD's) holds no '/'.
        Some((cluster, path)) if !cluster.is_empty() && !cluster.contains('/') => {
            (cluster.to_string(), path)
        }
        _ => (IN_CLUSTER.to_string(), text),
    };
    if path.is_empty() {
        return Err(format!("{text}: no path (use - for standard input)"));
    }
    Ok(LogSource {
        cluster,
        path: PathBuf::from(path),
    })
}

/// How often a followed file is looked at again once read to its end.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// Read the log from its start and follow it (a file: across rotation, until `shutdown`; `-`:
/// until standard input ends).
pub async fn follow_log(
    source: LogSource,
    trails: Arc<Trails>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let name = source.path.display().to_string();
    if source.path == Path::new("-") {
        read_lines(
            &name,
            &source.cluster,
            tokio::io::stdin(),
            &trails,
            None,
            &mut shutdown,
        )
        .await;
        tracing::info!(cluster = %source.cluster, "audit log: standard input ended");
        return;
    }
    let mut warned = false;
    loop {
        let file = match tokio::fs::File::open(&source.path).await {
            Ok(f) => f,
            Err(e) => {
                // Not there yet (the API server has not written it), or not readable.
                if !warned {
                    tracing::warn!(file = %name, error = %e, "audit log: cannot open it; trying again");
                    warned = true;
                }
                if wait_or_stop(&mut shutdown, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        warned = false;
        let identity = file.metadata().await.ok().map(|m| file_identity(&m));
        tracing::info!(file = %name, cluster = %source.cluster, "audit log: reading");
        let follow = Follow {
            path: source.path.clone(),
            identity,
        };
        if read_lines(
            &name,
            &source.cluster,
            file,
            &trails,
            Some(follow),
            &mut shutdown,
        )
        .await
        {
            return;
        }
        tracing::info!(file = %name, "audit log: rotated; reading the new file");
    }
}

struct Follow {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

#[cfg(unix)]
fn file_identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn file_identity(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// Sleep `d` unless shutdown comes first; true when shutting down.
async fn wait_or_stop(shutdown: &mut tokio::sync::watch::Receiver<bool>, d: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

/// Read lines of `input` into the trail. At the end of a followed file, wait for more until the
/// path names another file (rotated) or the file shrank (truncated): returns false then, true
/// on shutdown (or at the end of unfollowed input).
async fn read_lines(
    name: &str,
    cluster: &str,
    input: impl AsyncRead + Unpin,
    trails: &Trails,
    follow: Option<Follow>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut line = Vec::new();
    let (mut number, mut offset) = (0u64, 0u64);
    let mut batch = Vec::new();
    loop {
        let n = match reader.read_until(b'\n', &mut line).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(file = %name, error = %e, "audit log: reading");
                0
            }
        };
        offset += n as u64;
        if line.ends_with(b"\n") {
            number += 1;
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if !text.is_empty() {
                match audit::parse_line(text) {
                    Ok(events) => batch.extend(events),
                    Err(e) => {
                        trails.malformed(cluster, "log");
                        tracing::warn!(file = %name, line = number, error = %e, "audit log: a line that is not an audit event, skipped");
                    }
                }
            }
            line.clear();
            if batch.len() >= 256 {
                trails.record(cluster, "log", std::mem::take(&mut batch));
            }
            continue;
        }
        // At the end for now (a partial line stays in `line` until its end is written).
        if !batch.is_empty() {
            trails.record(cluster, "log", std::mem::take(&mut batch));
        }
        let Some(follow) = &follow else {
            return true;
        };
        if wait_or_stop(shutdown, FOLLOW_EVERY).await {
            return true;
        }
        if n == 0 {
            if let Ok(m) = tokio::fs::metadata(&follow.path).await {
                let moved = follow.identity.is_some_and(|id| id != file_identity(&m));
                if moved || m.len() < offset {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write as _;

    use super::*;

    /// One audit log line: a successful patch of ConfigMap `name`, written as `version`.
    fn line(name: &str, version: u64) -> String {
        let event = serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": format!("{name}-{version}"), "stage": "ResponseComplete", "verb": "patch",
            "requestURI": format!("/api/v1/namespaces/shop/configmaps/{name}?fieldManager=kubectl-edit"),
            "user": {"username": "alice"},
            "objectRef": {"resource": "configmaps", "namespace": "shop", "name": name, "apiVersion": "v1"},
            "responseStatus": {"code": 200},
            "responseObject": {"kind": "ConfigMap", "metadata": {"resourceVersion": version.to_string()}},
            "stageTimestamp": chrono::Utc::now().to_rfc3339(),
        });
        format!("{event}\n")
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..100 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn a_followed_log_is_read_across_partial_lines_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = std::fs::File::create(&path).unwrap();
        // What the file held before argo-drift started is read too, and a bad line is skipped.
        file.write_all(line("a", 1).as_bytes()).unwrap();
        file.write_all(b"{this is not json\n").unwrap();
        let metrics = Arc::new(Metrics::new());
        let trails = Trails::new(Limits::default(), metrics.clone(), Sources::default());
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let source = parse_log_source(&format!("prod={}", path.display())).unwrap();
        assert_eq!(source.cluster, "prod");
        let task = tokio::spawn(follow_log(source, trails.clone(), shutdown));
        until("the existing line", || trails.writes("prod") == 1).await;

        // A line written in two parts is read once it is whole.
        let second = line("b", 2);
        let (head, tail) = second.split_at(40);
        file.write_all(head.as_bytes()).unwrap();
        file.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(trails.writes("prod"), 1);
        file.write_all(tail.as_bytes()).unwrap();
        until("the completed line", || trails.writes("prod") == 2).await;

        // Rotated: renamed away, a new file at the path.
        std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(line("c", 3).as_bytes()).unwrap();
        until("the rotated file", || trails.writes("prod") == 3).await;

        // Truncated in place (logrotate's copytruncate), then written again once that was seen
        // (a file that has grown past the old end again by the next look cannot be told from
        // one that was appended to: kube-apiserver rotates by renaming).
        file.set_len(0).unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(line("d", 4).as_bytes()).unwrap();
        until("the truncated file", || trails.writes("prod") == 4).await;

        let scrape = metrics.encode();
        assert!(
            scrape.contains(r#"argo_drift_audit_events_total{cluster="prod",source="log",outcome="malformed"} 1"#),
            "{scrape}"
        );
        assert!(!scrape.contains("this is not json"));
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn a_log_source_names_its_cluster_or_is_the_local_one() {
        let plain = parse_log_source("/var/log/audit.log").unwrap();
        assert_eq!(
            (plain.cluster.as_str(), plain.path.to_str()),
            (IN_CLUSTER, Some("/var/log/audit.log"))
        );
        assert_eq!(parse_log_source("-").unwrap().path, PathBuf::from("-"));
        // A path with '=' in a directory name is a path.
        let odd = parse_log_source("/logs/a=b/audit.log").unwrap();
        assert_eq!(odd.cluster, IN_CLUSTER);
        assert!(parse_log_source("prod=").is_err());
    }
}
