//! Argo CD's REST API, as the controller uses it: the application, the manifests Argo CD renders
//! (Helm, Kustomize, plugins), its managed resources, and the calls that act — a partial sync of
//! drifted resources, a rollback to a history entry, a spec patch (automated sync off and on).
//! Reads and patches are retried on timeouts, 5xx and 429; a sync or rollback only when the
//! connection failed before it was sent.

use std::collections::BTreeMap;
use std::path::PathBuf;
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

    /// `GET /api/v1/settings`: Argo CD's settings as its API serves them (resource overrides
    /// only to a logged-in caller, which a token is).
    pub async fn settings(&self) -> Result<Value> {
        self.call(reqwest::Method::GET, "/api/v1/settings", &[], None, true)
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
        self.sync_with_info(app, app_namespace, resources, &[])
            .await
    }

    /// The same, with `infos` (name, value) that Argo CD keeps on the operation
    /// (`status.operationState.operation.info`; server/application/application.go copies
    /// `syncReq.Infos` into `Operation.Info`): how a caller knows its operation when it ends.
    pub async fn sync_with_info(
        &self,
        app: &str,
        app_namespace: &str,
        resources: &[SyncResource],
        infos: &[(&str, &str)],
    ) -> Result<Value> {
        let path = format!("/api/v1/applications/{app}/sync");
        let infos: Vec<Value> = infos
            .iter()
            .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
            .collect();
        let body = serde_json::json!({
            "name": app,
            "appNamespace": app_namespace,
            "prune": false,
            "resources": resources,
            "infos": infos,
        });
        self.call(reqwest::Method::POST, &path, &[], Some(&body), false)
            .await
    }

    /// `GET /api/v1/applications/{name}/resource/actions`: the actions Argo CD offers on one
    /// of the app's resources (the Application itself: its own group, kind and name), as its
    /// discovery scripts say.
    pub async fn resource_actions(
        &self,
        app: &str,
        app_namespace: &str,
        resource: &ResourceRef,
    ) -> Result<Value> {
        let path = format!("/api/v1/applications/{app}/resource/actions");
        self.call(
            reqwest::Method::GET,
            &path,
            &resource.query(app_namespace),
            None,
            true,
        )
        .await
    }

    /// `POST /api/v1/applications/{name}/resource/actions`: run action `action` on a resource,
    /// under Argo CD's RBAC (`applications, action/<group>/<kind>/<action>`).
    pub async fn run_resource_action(
        &self,
        app: &str,
        app_namespace: &str,
        resource: &ResourceRef,
        action: &str,
    ) -> Result<Value> {
        let path = format!("/api/v1/applications/{app}/resource/actions");
        // The body is the action's name, a JSON string (ResourceActionRunRequest's `action`).
        self.call(
            reqwest::Method::POST,
            &path,
            &resource.query(app_namespace),
            Some(&Value::String(action.to_string())),
            false,
        )
        .await
    }

    /// `POST /api/v1/account/{name}/token`: a new API token for a local account with the
    /// `apiKey` capability (the caller needs `accounts, update`).
    pub async fn account_token(&self, account: &str, id: &str) -> Result<String> {
        let path = format!("/api/v1/account/{account}/token");
        let body = serde_json::json!({"name": account, "id": id});
        let answer = self
            .call(reqwest::Method::POST, &path, &[], Some(&body), false)
            .await?;
        Ok(answer["token"].as_str().unwrap_or_default().to_string())
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

/// How to reach Argo CD's API server; the environment variables are the `argocd` CLI's.
#[derive(Debug, Clone, clap::Args)]
pub struct ArgoCdArgs {
    /// Argo CD API server (`argocd-server.argocd.svc:443` or a URL): needed for Helm,
    /// Kustomize, plugin and multi-source applications, whose manifests only Argo CD renders,
    /// and used to heal, freeze and roll back. Without it, heals are requested by writing the
    /// Application's `operation` through Kubernetes, as Argo CD's own API does.
    #[arg(long, env = "ARGOCD_SERVER", value_name = "ADDRESS")]
    pub argocd_server: Option<String>,
    /// Argo CD API token (prefer --argocd-token-file or the environment; never logged).
    #[arg(
        long,
        env = "ARGOCD_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        conflicts_with = "argocd_token_file"
    )]
    pub argocd_token: Option<String>,
    /// File holding the Argo CD API token (a mounted Secret); re-read at start only.
    #[arg(long, env = "ARGO_DRIFT_ARGOCD_TOKEN_FILE", value_name = "PATH")]
    pub argocd_token_file: Option<PathBuf>,
    /// PEM certificates to trust for the Argo CD API server, besides the system's: a file, or a
    /// directory whose files are all read (deploy/ mounts argocd-server's own certificate there,
    /// so Argo CD's default self-signed one is trusted out of the box).
    #[arg(long, env = "ARGO_DRIFT_ARGOCD_CA_FILE", value_name = "PATH")]
    pub argocd_ca_file: Option<PathBuf>,
    /// Plain HTTP to the Argo CD API server (behind a TLS-terminating proxy).
    #[arg(long, env = "ARGO_DRIFT_ARGOCD_PLAINTEXT")]
    pub argocd_plaintext: bool,
    /// Accept any TLS certificate from the Argo CD API server.
    #[arg(long, env = "ARGO_DRIFT_ARGOCD_INSECURE")]
    pub argocd_insecure: bool,
}

/// A PEM file, or every file of a directory (a projected volume: its entries are links into a
/// `..data` directory, hidden entries skipped), concatenated; `None` for an empty directory.
fn read_pems(path: &std::path::Path) -> std::io::Result<Option<Vec<u8>>> {
    if !path.is_dir() {
        return std::fs::read(path).map(Some);
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
                && p.is_file()
        })
        .collect();
    names.sort();
    let mut pem = Vec::new();
    for name in names {
        pem.extend(std::fs::read(name)?);
        pem.push(b'\n');
    }
    Ok((!pem.is_empty()).then_some(pem))
}

impl ArgoCdArgs {
    /// The client settings, token and CA read from their files; `None` without a server. What
    /// is not given here comes from `ARGOCD_OPTS`, as the argocd CLI takes it.
    pub fn settings(&self) -> anyhow::Result<Option<Settings>> {
        let opts = std::env::var("ARGOCD_OPTS").unwrap_or_default();
        self.settings_with(&opts)
    }

    /// `settings` with `ARGOCD_OPTS` given.
    pub fn settings_with(&self, argocd_opts: &str) -> anyhow::Result<Option<Settings>> {
        use anyhow::Context as _;
        let opts = argocd_opts_flags(argocd_opts).map_err(anyhow::Error::msg)?;
        let flag = |k: &str| opts.get(k).map(String::as_str) == Some("true");
        let Some(server) = self.argocd_server.as_ref().or(opts.get("server")) else {
            return Ok(None);
        };
        let token = match (&self.argocd_token, &self.argocd_token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the Argo CD token file {}", path.display()))?
                .trim()
                .to_string(),
            (None, None) => opts.get("auth-token").cloned().unwrap_or_default(),
        };
        let ca_pem = match &self.argocd_ca_file {
            Some(path) => read_pems(path)
                .with_context(|| format!("reading the Argo CD CA file {}", path.display()))?,
            None => None,
        };
        let mut settings = Settings::new(server, token);
        settings.ca_pem = ca_pem;
        settings.plaintext = self.argocd_plaintext || flag("plaintext");
        settings.insecure = self.argocd_insecure || flag("insecure");
        Ok(Some(settings))
    }
}

/// `ARGOCD_OPTS` read as the argocd CLI reads it (util/config/env.go, LoadFlags): shell words;
/// `--flag value`, `--flag` alone meaning `true`, and `--flag=value`. Values are never quoted
/// back in errors (`--auth-token` is one).
pub fn argocd_opts_flags(text: &str) -> Result<BTreeMap<String, String>, String> {
    let words = shlex::split(text).ok_or_else(|| "ARGOCD_OPTS: unbalanced quotes".to_string())?;
    let mut flags = BTreeMap::new();
    let mut key: Option<String> = None;
    for (i, word) in words.iter().enumerate() {
        if let Some(name) = word.strip_prefix("--") {
            if let Some(k) = key.take() {
                flags.insert(k, "true".to_string());
            }
            key = Some(name.to_string());
        } else if let Some(k) = key.take() {
            flags.insert(k, word.clone());
        } else {
            return Err(format!(
                "ARGOCD_OPTS: word {} is not a --flag nor a flag's value",
                i + 1
            ));
        }
    }
    if let Some(k) = key {
        flags.insert(k, "true".to_string());
    }
    // `--foo=bar`, which shell splitting leaves whole (argo-cd issue 6822).
    let joined: Vec<(String, String)> = flags
        .iter()
        .filter(|(k, v)| k.contains('=') && v.as_str() == "true")
        .filter_map(|(k, _)| {
            k.split_once('=')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    for (k, v) in joined {
        flags.entry(k).or_insert(v);
    }
    Ok(flags)
}

/// A resource of an application, as Argo CD's resource endpoints name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRef {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ResourceRef {
    fn query<'a>(&'a self, app_namespace: &'a str) -> Vec<(&'static str, &'a str)> {
        vec![
            ("appNamespace", app_namespace),
            ("namespace", self.namespace.as_str()),
            ("resourceName", self.name.as_str()),
            ("group", self.group.as_str()),
            ("kind", self.kind.as_str()),
            ("version", self.version.as_str()),
        ]
    }
}
