//! Argo CD's REST API, as the controller uses it: the application, the manifests Argo CD renders
//! (Helm, Kustomize, plugins), its managed resources, and the calls that act — a partial sync of
//! drifted resources, a rollback to a history entry, a spec patch (automated sync off and on).
//! Reads and patches are retried on timeouts, 5xx and 429; a sync or rollback only when the
//! connection failed before it was sent.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct ArgoCd {
    base: String,
    token: String,
    http: reqwest::Client,
    attempts: u32,
}

impl std::fmt::Debug for ArgoCd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgoCd")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// `repositoryManifestResponse`, the fields we use.
#[derive(Debug, Deserialize)]
pub struct Manifests {
    #[serde(default)]
    pub manifests: Vec<String>,
    #[serde(default)]
    pub revision: String,
    #[serde(default, rename = "sourceType")]
    pub source_type: String,
}

/// Argo CD's error body over REST (grpc-gateway's `runtimeError`).
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: i32,
}

/// gRPC's FailedPrecondition: Argo CD's answer to a rollback while automated sync is on, or to
/// a second operation while one runs.
pub const FAILED_PRECONDITION: i32 = 9;

/// How to reach Argo CD's API server, as the `argocd` CLI takes it.
#[derive(Clone)]
pub struct Settings {
    /// `host:port` or a URL.
    pub server: String,
    /// Bearer token (from `ARGOCD_AUTH_TOKEN` or a mounted Secret file); never logged.
    pub token: String,
    /// PEM CA certificates to trust besides the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// Plain HTTP (`--plaintext`): a server behind a TLS-terminating proxy or on loopback.
    pub plaintext: bool,
    /// Skip TLS verification (`--insecure`).
    pub insecure: bool,
    pub timeout: Duration,
    /// Tries of a call that is safe to repeat (reads and patches); a sync or rollback is sent
    /// again only when the connection failed before it left.
    pub attempts: u32,
}

impl Settings {
    pub fn new(server: &str, token: String) -> Settings {
        Settings {
            server: server.to_string(),
            token,
            ca_pem: None,
            plaintext: false,
            insecure: false,
            timeout: Duration::from_secs(30),
            attempts: 3,
        }
    }

    /// `https://host:port` (or `http://` with plaintext) from what the user gave.
    fn base_url(&self) -> std::result::Result<String, String> {
        let server = self.server.trim().trim_end_matches('/');
        if server.is_empty() {
            return Err("no server address".into());
        }
        let base = match server.split_once("://") {
            Some(("http", _)) | Some(("https", _)) => server.to_string(),
            Some((scheme, _)) => return Err(format!("unsupported scheme {scheme:?}")),
            None if self.plaintext => format!("http://{server}"),
            None => format!("https://{server}"),
        };
        if self.plaintext && base.starts_with("https://") {
            return Err("--argocd-plaintext with an https:// address".into());
        }
        Ok(base)
    }
}

/// A resource to sync (`SyncOperationResource`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncResource {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// One `ResourceDiff` of `managed-resources`: Argo CD's own view of a resource, states as JSON
/// text ("null" when absent).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDiff {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub live_state: String,
    #[serde(default)]
    pub target_state: String,
    #[serde(default)]
    pub modified: bool,
    /// A hook resource (not part of the desired state).
    #[serde(default)]
    pub hook: bool,
}

impl ArgoCd {
    pub fn new(settings: Settings) -> Result<ArgoCd> {
        let fail = |message: String| Error::ArgoCd {
            path: settings.server.clone(),
            status: None,
            code: None,
            message,
        };
        let base = settings.base_url().map_err(fail)?;
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .danger_accept_invalid_certs(settings.insecure);
        if let Some(pem) = &settings.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| fail(format!("CA file: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| fail(e.to_string()))?;
        Ok(ArgoCd {
            base,
            token: settings.token,
            http,
            attempts: settings.attempts.max(1),
        })
    }

    /// One call. `idempotent`: safe to send again after a timeout, a 5xx or a 429.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<Value> {
        let fail = |status: Option<u16>, code: Option<i32>, message: String| Error::ArgoCd {
            path: path.to_string(),
            status,
            code,
            message,
        };
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base), query)
            .map_err(|e| fail(None, None, format!("bad server URL: {e}")))?;
        let mut delay = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&self.token);
            if let Some(b) = body {
                request = request.json(b);
            }
            let last = attempt >= self.attempts;
            let response = match request.send().await {
                Ok(r) => r,
                // Not connected: nothing was sent, so even a sync may go again.
                Err(e) if !last && (e.is_connect() || (idempotent && e.is_timeout())) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    continue;
                }
                Err(e) => return Err(fail(None, None, without_url(&e))),
            };
            let status = response.status();
            let body = response
                .bytes()
                .await
                .map_err(|e| fail(Some(status.as_u16()), None, without_url(&e)))?;
            if status.is_success() {
                return serde_json::from_slice(&body).map_err(|e| {
                    fail(
                        Some(status.as_u16()),
                        None,
                        format!("unexpected response: {e}"),
                    )
                });
            }
            let retry = idempotent
                && (status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS);
            if retry && !last {
                tokio::time::sleep(delay).await;
                delay *= 2;
                continue;
            }
            let (message, code) = match serde_json::from_slice::<ApiError>(&body) {
                Ok(e) if !e.message.is_empty() || !e.error.is_empty() => {
                    let text = if e.message.is_empty() {
                        e.error
                    } else {
                        e.message
                    };
                    (format!("{status}: {text} (code {})", e.code), Some(e.code))
                }
                _ => (
                    format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    ),
                    None,
                ),
            };
            return Err(fail(Some(status.as_u16()), code, message));
        }
    }

    /// `GET /api/v1/applications/{name}`
    pub async fn application(&self, app: &str, app_namespace: &str) -> Result<Value> {
        let path = format!("/api/v1/applications/{app}");
        self.call(
            reqwest::Method::GET,
            &path,
            &[("appNamespace", app_namespace)],
            None,
            true,
        )
        .await
    }

    /// `POST /api/v1/applications/{name}/sync` with only `resources`: a partial sync, as
    /// Argo CD's self-heal does (no hooks, nothing pruned).
    pub async fn sync(
        &self,
        app: &str,
        app_namespace: &str,
        resources: &[SyncResource],
    ) -> Result<Value> {
        let path = format!("/api/v1/applications/{app}/sync");
        let body = serde_json::json!({
            "name": app,
            "appNamespace": app_namespace,
            "prune": false,
            "resources": resources,
        });
        self.call(reqwest::Method::POST, &path, &[], Some(&body), false)
            .await
    }

    /// `POST /api/v1/applications/{name}/rollback` to history entry `id`.
    pub async fn rollback(
        &self,
        app: &str,
        app_namespace: &str,
        id: i64,
        prune: bool,
    ) -> Result<Value> {
        let path = format!("/api/v1/applications/{app}/rollback");
        // A number: Argo CD 3.x decodes the request with encoding/json into an int64 and refuses
        // a string ("cannot unmarshal string into Go struct field ApplicationRollbackRequest.id
        // of type int64", seen against the real argocd-server v3.6.2).
        let body = serde_json::json!({
            "name": app,
            "appNamespace": app_namespace,
            "id": id,
            "prune": prune,
        });
        self.call(reqwest::Method::POST, &path, &[], Some(&body), false)
            .await
    }

    /// `PATCH /api/v1/applications/{name}` with a JSON merge patch of the Application (e.g.
    /// `{"spec":{"syncPolicy":{"automated":null}}}` to turn automated sync off).
    pub async fn patch(
        &self,
        app: &str,
        app_namespace: &str,
        merge_patch: &Value,
    ) -> Result<Value> {
        let path = format!("/api/v1/applications/{app}");
        let body = serde_json::json!({
            "name": app,
            "appNamespace": app_namespace,
            "patch": merge_patch.to_string(),
            "patchType": "merge",
        });
        self.call(reqwest::Method::PATCH, &path, &[], Some(&body), true)
            .await
    }

    /// `GET /api/v1/applications/{name}/managed-resources`
    pub async fn managed_resources(
        &self,
        app: &str,
        app_namespace: &str,
    ) -> Result<Vec<ResourceDiff>> {
        #[derive(Deserialize)]
        struct Items {
            #[serde(default)]
            items: Vec<ResourceDiff>,
        }
        let path = format!("/api/v1/applications/{app}/managed-resources");
        let value = self
            .call(
                reqwest::Method::GET,
                &path,
                &[("appNamespace", app_namespace)],
                None,
                true,
            )
            .await?;
        let items: Items = serde_json::from_value(value).map_err(|e| Error::ArgoCd {
            path,
            status: Some(200),
            code: None,
            message: format!("unexpected response: {e}"),
        })?;
        Ok(items.items)
    }

    /// `GET /api/v1/applications/{name}/manifests`
    pub async fn manifests(
        &self,
        app: &str,
        app_namespace: &str,
        revision: Option<&str>,
    ) -> Result<Manifests> {
        let path = format!("/api/v1/applications/{app}/manifests");
        let mut query = vec![("appNamespace", app_namespace)];
        if let Some(r) = revision {
            query.push(("revision", r));
        }
        let value = self
            .call(reqwest::Method::GET, &path, &query, None, true)
            .await?;
        serde_json::from_value(value).map_err(|e| Error::ArgoCd {
            path,
            status: Some(200),
            code: None,
            message: format!("unexpected response: {e}"),
        })
    }
}

/// reqwest's errors carry the URL; ours name the path already and must not carry query secrets.
/// With its causes ("error sending request" alone does not say that a certificate was refused).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    text
}
