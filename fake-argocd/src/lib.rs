//! A small, faithful stand-in for Argo CD's API server, for tests: the REST paths, request and
//! response bodies and errors argo-drift uses, backed by the `Application` objects in a real
//! Kubernetes API server, so that what a call changes (an `operation` to run, a spec patch) is
//! visible there exactly as Argo CD's own server would leave it.
//!
//! Served: `GET /api/v1/applications/{name}`, `PATCH /api/v1/applications/{name}`,
//! `POST …/{name}/sync`, `POST …/{name}/rollback`, `GET …/{name}/manifests`,
//! `GET …/{applicationName}/managed-resources`. Errors have Argo CD's REST shape
//! `{"error", "code", "message", "details"}` with its gRPC codes: 16 (401) without a valid
//! token, 5 (404) for an unknown application, 9 (400) for a rollback while automated sync is on
//! or an operation already running, 3 (400) for a bad argument.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{json, Value};

/// The user Argo CD names as the initiator of operations started with the token.
pub const USERNAME: &str = "argo-drift";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Value,
}

struct Shared {
    client: Client,
    token: String,
    default_namespace: String,
    manifests: Mutex<HashMap<String, Vec<Value>>>,
    requests: Mutex<Vec<Request>>,
}

/// The running fake; stops when dropped.
pub struct FakeArgoCd {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeArgoCd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeArgoCd {
    /// Serve on a free loopback port. `default_namespace` is Argo CD's own namespace, used
    /// when a call names no `appNamespace`.
    pub async fn start(
        client: Client,
        token: &str,
        default_namespace: &str,
    ) -> std::io::Result<FakeArgoCd> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        FakeArgoCd::serve(listener, client, token, default_namespace)
    }

    /// Serve HTTPS with this certificate and key (PEM), as Argo CD's server does.
    pub async fn start_tls(
        client: Client,
        token: &str,
        default_namespace: &str,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> std::io::Result<FakeArgoCd> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid(e.to_string()))?;
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://{}", tcp.local_addr()?);
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        };
        Ok(FakeArgoCd::serve_on(
            listener,
            url,
            client,
            token,
            default_namespace,
        ))
    }

    pub fn serve(
        listener: tokio::net::TcpListener,
        client: Client,
        token: &str,
        default_namespace: &str,
    ) -> std::io::Result<FakeArgoCd> {
        let url = format!("http://{}", listener.local_addr()?);
        Ok(FakeArgoCd::serve_on(
            listener,
            url,
            client,
            token,
            default_namespace,
        ))
    }

    fn serve_on<L>(
        listener: L,
        url: String,
        client: Client,
        token: &str,
        default_namespace: &str,
    ) -> FakeArgoCd
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let shared = Arc::new(Shared {
            client,
            token: token.to_string(),
            default_namespace: default_namespace.to_string(),
            manifests: Mutex::default(),
            requests: Mutex::default(),
        });
        let app = Router::new()
            .route("/api/v1/applications/{name}", get(get_app).patch(patch_app))
            .route("/api/v1/applications/{name}/sync", post(sync))
            .route("/api/v1/applications/{name}/rollback", post(rollback))
            .route("/api/v1/applications/{name}/manifests", get(manifests))
            .route(
                "/api/v1/applications/{name}/managed-resources",
                get(managed_resources),
            )
            .fallback(not_served)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeArgoCd { url, shared, task }
    }

    /// What `GET …/manifests` returns for `app`: the documents Argo CD would render.
    pub fn set_manifests(&self, app: &str, documents: Vec<Value>) {
        lock(&self.shared.manifests).insert(app.to_string(), documents);
    }

    /// Every authenticated request so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// The requests that would change something (all but reads).
    pub fn writes(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
    }
}

/// TLS on accepted connections; a failed handshake (a client that does not trust us) is
/// dropped and the next connection taken.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A CA and a server certificate it signed for 127.0.0.1 and localhost, as PEM:
/// (CA certificate, server certificate, server key).
pub fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let generate = || -> std::result::Result<(String, String, String), rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fake Argo CD CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let key = KeyPair::generate()?;
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?
            .signed_by(&key, &ca)?;
        Ok((ca.pem(), cert.pem(), key.serialize_pem()))
    };
    // Test support: rcgen failing to make a key is a broken build, not a runtime condition.
    #[allow(clippy::expect_used)]
    generate().expect("rcgen generates test certificates")
}

/// A self-signed, non-CA certificate and its key (PEM), as argocd-server generates one at first
/// start when no certificate is configured (util/settings/settings.go: tlsutil
/// GenerateX509KeyPair with IsCA false, Organization "Argo CD"), for 127.0.0.1 and localhost.
pub fn self_signed() -> (String, String) {
    use rcgen::{CertificateParams, DnType, IsCa, KeyPair};
    let generate = || -> std::result::Result<(String, String), rcgen::Error> {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        params.is_ca = IsCa::ExplicitNoCa;
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Argo CD");
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    #[allow(clippy::expect_used)]
    generate().expect("rcgen generates test certificates")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Argo CD's error: gRPC code mapped to HTTP status as grpc-gateway does.
struct ApiError {
    code: i32,
    message: String,
}

impl ApiError {
    fn new(code: i32, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    fn not_found(name: &str) -> ApiError {
        ApiError::new(5, format!("applications.argoproj.io \"{name}\" not found"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.code {
            3 | 9 | 11 => StatusCode::BAD_REQUEST,
            10 => StatusCode::CONFLICT,
            5 => StatusCode::NOT_FOUND,
            7 => StatusCode::FORBIDDEN,
            16 => StatusCode::UNAUTHORIZED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = json!({"error": self.message, "code": self.code, "message": self.message, "details": []});
        (status, Json(body)).into_response()
    }
}

type Result<T> = std::result::Result<T, ApiError>;

/// A bearer token, or Argo CD's `argocd.token` cookie.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<()> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| {
            c.split(';')
                .find_map(|kv| kv.trim().strip_prefix("argocd.token="))
        });
    match bearer.or(cookie) {
        None => Err(ApiError::new(16, "no session information")),
        Some(t) if t == shared.token => Ok(()),
        Some(_) => Err(ApiError::new(
            16,
            "invalid session: token signature is invalid",
        )),
    }
}

fn record(shared: &Shared, method: &Method, uri: &Uri, body: &Value) {
    lock(&shared.requests).push(Request {
        method: method.to_string(),
        path: uri.path().to_string(),
        body: body.clone(),
    });
}

fn applications(shared: &Shared, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "applications");
    Api::namespaced_with(shared.client.clone(), namespace, &resource)
}

/// What every handler needs of a request: the shared state, the application named in the
/// path, the query, and what to authenticate and record.
struct Call {
    shared: Arc<Shared>,
    name: String,
    query: HashMap<String, String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl FromRequestParts<Arc<Shared>> for Call {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        shared: &Arc<Shared>,
    ) -> Result<Call> {
        let Path(name) = Path::<String>::from_request_parts(parts, shared)
            .await
            .map_err(|e| ApiError::new(3, e.to_string()))?;
        let Query(query) = Query::<HashMap<String, String>>::from_request_parts(parts, shared)
            .await
            .map_err(|e| ApiError::new(3, e.to_string()))?;
        Ok(Call {
            shared: shared.clone(),
            name,
            query,
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }
}

impl Call {
    /// Authenticate, record the request, and name the Application's namespace.
    fn begin(&self, body: &Value) -> Result<String> {
        authenticate(&self.shared, &self.headers)?;
        record(&self.shared, &self.method, &self.uri, body);
        Ok(namespace_of(&self.shared, &self.query, body))
    }
}

fn namespace_of(shared: &Shared, query: &HashMap<String, String>, body: &Value) -> String {
    body.get("appNamespace")
        .and_then(Value::as_str)
        .or_else(|| query.get("appNamespace").map(String::as_str))
        .filter(|n| !n.is_empty())
        .unwrap_or(&shared.default_namespace)
        .to_string()
}

async fn load(shared: &Shared, namespace: &str, name: &str) -> Result<Value> {
    let api = applications(shared, namespace);
    match api.get_opt(name).await {
        Ok(Some(app)) => serde_json::to_value(app).map_err(|e| ApiError::new(13, e.to_string())),
        Ok(None) => Err(ApiError::not_found(name)),
        Err(e) => Err(ApiError::new(13, e.to_string())),
    }
}

/// Merge-patch the Application in Kubernetes, as Argo CD's server updates it, and return it.
async fn update(shared: &Shared, namespace: &str, name: &str, patch: &Value) -> Result<Value> {
    let api = applications(shared, namespace);
    let app = api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| kube_error(name, e))?;
    serde_json::to_value(app).map_err(|e| ApiError::new(13, e.to_string()))
}

fn kube_error(name: &str, e: kube::Error) -> ApiError {
    match e {
        kube::Error::Api(s) if s.code == 404 => ApiError::not_found(name),
        kube::Error::Api(s) if s.code == 409 => ApiError::new(10, s.message),
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => ApiError::new(3, s.message),
        e => ApiError::new(13, e.to_string()),
    }
}

/// Request a sync operation, as Argo CD's server does: the Application's `operation` field,
/// which its application controller then runs.
async fn start_operation(
    shared: &Shared,
    namespace: &str,
    name: &str,
    sync: Value,
    infos: Option<Value>,
) -> Result<Json<Value>> {
    let mut operation = json!({
        "sync": sync,
        "initiatedBy": {"username": USERNAME},
        "retry": {},
    });
    // As Argo CD: the request's `infos` become the operation's `info`
    // (server/application/application.go).
    if let Some(infos) = infos {
        operation["info"] = infos;
    }
    Ok(Json(
        update(shared, namespace, name, &json!({"operation": operation})).await?,
    ))
}

/// Argo CD refuses a new operation while one is running.
fn no_operation_running(app: &Value) -> Result<()> {
    let running = app.get("operation").is_some_and(|o| !o.is_null())
        || app
            .pointer("/status/operationState/phase")
            .and_then(Value::as_str)
            .is_some_and(|p| p == "Running" || p == "Terminating");
    if running {
        return Err(ApiError::new(9, "another operation is already in progress"));
    }
    Ok(())
}

async fn get_app(call: Call) -> Result<Json<Value>> {
    let namespace = call.begin(&Value::Null)?;
    let (shared, name) = (&call.shared, call.name.as_str());
    Ok(Json(load(shared, &namespace, name).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchRequest {
    #[serde(default)]
    patch: String,
    #[serde(default)]
    patch_type: String,
}

/// `ApplicationService.Patch`: the patch applies to the whole Application document; Argo CD
/// then keeps its new `spec` (and labels and annotations).
async fn patch_app(call: Call, Json(body): Json<Value>) -> Result<Json<Value>> {
    let namespace = call.begin(&body)?;
    let (shared, name) = (&call.shared, call.name.as_str());
    let request: PatchRequest =
        serde_json::from_value(body.clone()).map_err(|e| ApiError::new(3, e.to_string()))?;
    let mut app = load(shared, &namespace, name).await?;
    let patch: Value = serde_json::from_str(&request.patch)
        .map_err(|e| ApiError::new(3, format!("error unmarshaling patch: {e}")))?;
    match request.patch_type.as_str() {
        "merge" => json_patch::merge(&mut app, &patch),
        "json" | "" => {
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::new(3, format!("invalid json patch: {e}")))?;
            json_patch::patch(&mut app, &ops).map_err(|e| ApiError::new(3, e.to_string()))?;
        }
        other => {
            return Err(ApiError::new(
                3,
                format!("Patch type '{other}' is not supported"),
            ))
        }
    }
    // Argo CD keeps the new spec, labels and annotations, and writes the whole object back
    // (an update with the read resourceVersion, so a concurrent change is a conflict).
    let mut current: DynamicObject = serde_json::from_value(load(shared, &namespace, name).await?)
        .map_err(|e| ApiError::new(13, e.to_string()))?;
    current.metadata.labels = serde_json::from_value(
        app.pointer("/metadata/labels")
            .cloned()
            .unwrap_or(Value::Null),
    )
    .map_err(|e| ApiError::new(3, format!("metadata.labels: {e}")))?;
    current.metadata.annotations = serde_json::from_value(
        app.pointer("/metadata/annotations")
            .cloned()
            .unwrap_or(Value::Null),
    )
    .map_err(|e| ApiError::new(3, format!("metadata.annotations: {e}")))?;
    current.data["spec"] = app.get("spec").cloned().unwrap_or(Value::Null);
    let replaced = applications(shared, &namespace)
        .replace(name, &PostParams::default(), &current)
        .await
        .map_err(|e| kube_error(name, e))?;
    Ok(Json(
        serde_json::to_value(replaced).map_err(|e| ApiError::new(13, e.to_string()))?,
    ))
}

async fn sync(call: Call, Json(body): Json<Value>) -> Result<Json<Value>> {
    let namespace = call.begin(&body)?;
    let (shared, name) = (&call.shared, call.name.as_str());
    let app = load(shared, &namespace, name).await?;
    no_operation_running(&app)?;
    let revision = body
        .get("revision")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .or_else(|| {
            app.pointer("/spec/source/targetRevision")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "HEAD".into());
    let mut sync = json!({"revision": revision});
    for key in ["prune", "dryRun", "resources", "syncStrategy"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            sync[key] = v.clone();
        }
    }
    if let Some(items) = body.pointer("/syncOptions/items") {
        sync["syncOptions"] = items.clone();
    }
    let infos = body.get("infos").filter(|v| !v.is_null()).cloned();
    start_operation(shared, &namespace, name, sync, infos).await
}

async fn rollback(call: Call, Json(body): Json<Value>) -> Result<Json<Value>> {
    let namespace = call.begin(&body)?;
    let (shared, name) = (&call.shared, call.name.as_str());
    let app = load(shared, &namespace, name).await?;
    if app
        .pointer("/spec/syncPolicy/automated")
        .is_some_and(|a| !a.is_null())
    {
        return Err(ApiError::new(
            9,
            "rollback cannot be initiated when auto-sync is enabled",
        ));
    }
    no_operation_running(&app)?;
    // int64 travels as a JSON string over grpc-gateway; accept both.
    let id = body.get("id").and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    });
    let history = app
        .pointer("/status/history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let entry = id.and_then(|id| {
        history
            .iter()
            .find(|h| h.get("id").and_then(Value::as_i64) == Some(id))
    });
    let Some(entry) = entry else {
        return Err(ApiError::new(
            3,
            format!(
                "application {name} does not have deployment with id {}",
                id.unwrap_or(0)
            ),
        ));
    };
    let mut sync = json!({
        "revision": entry.get("revision").cloned().unwrap_or(Value::Null),
        "prune": body.get("prune").cloned().unwrap_or(json!(false)),
        "dryRun": body.get("dryRun").cloned().unwrap_or(json!(false)),
    });
    if let Some(source) = entry.get("source") {
        sync["source"] = source.clone();
    }
    start_operation(shared, &namespace, name, sync, None).await
}

async fn manifests(call: Call) -> Result<Json<Value>> {
    let namespace = call.begin(&Value::Null)?;
    let (shared, name) = (&call.shared, call.name.as_str());
    let app = load(shared, &namespace, name).await?;
    // Argo CD answers gRPC Unknown (HTTP 500) when the repo server cannot render the source.
    let Some(documents) = lock(&shared.manifests).get(name).cloned() else {
        return Err(ApiError::new(
            2,
            format!("Manifest generation error (cached): {name}: no manifests were set for this application in the fake"),
        ));
    };
    let revision = call
        .query
        .get("revision")
        .cloned()
        .or_else(|| {
            app.pointer("/status/sync/revision")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    Ok(Json(json!({
        "manifests": documents.iter().map(Value::to_string).collect::<Vec<_>>(),
        "namespace": app.pointer("/spec/destination/namespace").cloned().unwrap_or(json!("")),
        "server": app.pointer("/spec/destination/server").cloned().unwrap_or(json!("https://kubernetes.default.svc")),
        "revision": revision,
        "sourceType": "Helm",
    })))
}

/// `managed-resources`: one `ResourceDiff` per entry of the Application's
/// `status.resources`, with the live object read from Kubernetes and the target from the
/// manifests set for the app, both as JSON text (Argo CD's representation).
async fn managed_resources(call: Call) -> Result<Json<Value>> {
    let namespace = call.begin(&Value::Null)?;
    let (shared, name) = (&call.shared, call.name.as_str());
    let app = load(shared, &namespace, name).await?;
    let targets = lock(&shared.manifests)
        .get(name)
        .cloned()
        .unwrap_or_default();
    let mut items = Vec::new();
    let resources = app
        .pointer("/status/resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in resources {
        let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (group, version, kind, ns, rname) = (
            field("group"),
            field("version"),
            field("kind"),
            field("namespace"),
            field("name"),
        );
        let live = live_object(shared, &group, &version, &kind, &ns, &rname).await;
        let target = targets.iter().find(|d| {
            d.get("kind").and_then(Value::as_str) == Some(kind.as_str())
                && d.pointer("/metadata/name").and_then(Value::as_str) == Some(rname.as_str())
        });
        let text = |v: Option<&Value>| v.map_or_else(|| "null".to_string(), Value::to_string);
        items.push(json!({
            "group": group,
            "kind": kind,
            "namespace": ns,
            "name": rname,
            "liveState": text(live.as_ref()),
            "targetState": text(target),
            "normalizedLiveState": text(live.as_ref()),
            "predictedLiveState": text(target),
            "modified": r.get("status").and_then(Value::as_str) == Some("OutOfSync"),
            "hook": false,
            "resourceVersion": live.as_ref().and_then(|l| l.pointer("/metadata/resourceVersion")).cloned().unwrap_or(json!("")),
        }));
    }
    Ok(Json(json!({ "items": items })))
}

async fn live_object(
    shared: &Shared,
    group: &str,
    version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<Value> {
    let version = if version.is_empty() { "v1" } else { version };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = kube::discovery::pinned_kind(&shared.client, &gvk)
        .await
        .ok()?;
    let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        Api::namespaced_with(shared.client.clone(), namespace, &resource)
    } else {
        Api::all_with(shared.client.clone(), &resource)
    };
    let object = api.get_opt(name).await.ok()??;
    serde_json::to_value(object).ok()
}

async fn not_served(uri: Uri) -> ApiError {
    ApiError::new(
        12,
        format!("{}: not served by the fake Argo CD", uri.path()),
    )
}
