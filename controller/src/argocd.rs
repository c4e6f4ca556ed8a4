//! The part of Argo CD's REST API the controller reads: the manifests Argo CD renders for an
//! application (Helm, Kustomize, plugins), which only Argo CD can produce exactly as it applies them.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct ArgoCd {
    base: String,
    token: String,
    http: reqwest::Client,
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

impl ArgoCd {
    pub fn new(base: &str, token: String, insecure: bool) -> Result<ArgoCd> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .danger_accept_invalid_certs(insecure)
            .build()
            .map_err(|e| Error::ArgoCd {
                path: base.to_string(),
                status: None,
                message: e.to_string(),
            })?;
        Ok(ArgoCd {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
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
        let fail = |status: Option<u16>, message: String| Error::ArgoCd {
            path: path.clone(),
            status,
            message,
        };
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base), &query)
            .map_err(|e| fail(None, format!("bad server URL: {e}")))?;
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| fail(None, without_url(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| fail(Some(status.as_u16()), without_url(&e)))?;
        if !status.is_success() {
            let message = match serde_json::from_slice::<ApiError>(&body) {
                Ok(e) if !e.message.is_empty() || !e.error.is_empty() => {
                    let text = if e.message.is_empty() {
                        e.error
                    } else {
                        e.message
                    };
                    format!("{status}: {text} (code {})", e.code)
                }
                _ => format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                ),
            };
            return Err(fail(Some(status.as_u16()), message));
        }
        serde_json::from_slice(&body)
            .map_err(|e| fail(Some(status.as_u16()), format!("unexpected response: {e}")))
    }
}

/// reqwest's errors carry the URL; ours name the path already and must not carry query secrets.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    text
}
