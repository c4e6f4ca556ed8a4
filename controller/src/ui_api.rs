//! The drift view's API: a small read-only HTTP server for argo-drift's UI extension in Argo
//! CD, reached only through argocd-server's proxy extension (`/extensions/argo-drift/…`).
//!
//! argocd-server authenticates the user, checks Argo CD RBAC (`applications, get` on the app
//! and `extensions, invoke, argo-drift`), strips the browser's `Authorization` and `Cookie`,
//! sets `Argocd-Application-Name` to the app it authorised as `<namespace>:<name>`, and adds
//! the headers of the extension's config — among them ours, whose value is a key of
//! argocd-secret (server/extension/extension.go: `CallExtension`, `authorize`,
//! `prepareRequest`, `NewProxy`). So this API trusts a request only when it carries the shared
//! token, and then serves only the application that header names.
//!
//! - `GET /api/v1/report`: that application's report, as argo-drift published it (values
//!   masked as in the report), plus `driftSince`.
//! - `GET /api/v1/fleet`: one line per analysed application (name, namespace, worst severity,
//!   one-line summary, drift since, pending approval) — no field values. Whoever may invoke
//!   the extension sees every app's line; the UI shows only the apps Argo CD lists for the
//!   user (docs/ui-extension.md).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::Client;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::publish::{
    report_name, APPLICATION_ANNOTATION, APP_LABEL, APP_NAMESPACE_LABEL, DRIFT_SUMMARY_ANNOTATION,
    OPENED_ANNOTATION, PENDING_APPROVAL_ANNOTATION, REPORT_KEY, REPORT_LABEL, SEVERITY_LABEL,
};

/// The header argocd-server adds from the extension config (`deploy/argocd-extension`).
pub const TOKEN_HEADER: &str = "argo-drift-proxy-token";
/// Set by argocd-server to the application it authorised: `<namespace>:<name>`.
pub const APPLICATION_HEADER: &str = "argocd-application-name";

#[derive(Clone)]
struct UiApi {
    client: Client,
    /// Where the reports are (argo-drift's own namespace).
    reports: String,
    token: Arc<[u8]>,
}

/// The shared token, read from `path`: the file's content without surrounding whitespace.
/// Errors name the file, never its content.
pub fn read_token(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    read_secret_file(path, "UI API token file")
}

/// A shared secret from the file at `path` (`what` names it in errors): its content without
/// surrounding whitespace, at least 16 bytes. Errors name the file, never its content.
pub fn read_secret_file(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("reading the {what} {}: {e}", path.display()))?;
    let token = text.trim_ascii().to_vec();
    if token.len() < 16 {
        anyhow::bail!(
            "the {what} {} holds {} byte(s) after trimming whitespace; use at least 16 \
             random bytes (e.g. `openssl rand -hex 32`)",
            path.display(),
            token.len()
        );
    }
    Ok(token)
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

pub fn router(client: Client, reports: String, token: Vec<u8>) -> Router {
    let state = UiApi {
        client,
        reports,
        token: token.into(),
    };
    Router::new()
        .route("/api/v1/report", get(report))
        .route("/api/v1/fleet", get(fleet))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(middleware::from_fn_with_state(state.clone(), proxied_only))
        .with_state(state)
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    client: Client,
    reports: String,
    token: Vec<u8>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(client, reports, token))
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

/// Only what argocd-server proxied: the shared token, compared in constant time.
async fn proxied_only(State(api): State<UiApi>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(presented.ct_eq(&api.token)) {
        return error(
            StatusCode::UNAUTHORIZED,
            format!(
                "argo-drift's UI API answers only requests proxied by argocd-server (header \
                 {TOKEN_HEADER} missing or wrong: see docs/ui-extension.md)"
            ),
        );
    }
    next.run(request).await
}

/// The application argocd-server authorised, from `Argocd-Application-Name`
/// (`<namespace>:<name>`, as `getAppName` in server/extension/extension.go splits it).
/// The error says what is wrong with the header (a bad request).
fn application(headers: &HeaderMap) -> Result<(String, String), String> {
    let value = headers
        .get(APPLICATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| "header Argocd-Application-Name must be provided".to_string())?;
    let parts: Vec<&str> = value.split(':').collect();
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    match parts.as_slice() {
        [namespace, name] if valid(namespace) && valid(name) => {
            Ok((namespace.to_string(), name.to_string()))
        }
        _ => Err(format!(
            "invalid value {value:?} for header Argocd-Application-Name: expected \
             <namespace>:<app-name>"
        )),
    }
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

async fn report(State(api): State<UiApi>, headers: HeaderMap) -> Response {
    let (namespace, name) = match application(&headers) {
        Ok(app) => app,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let configmaps: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.reports);
    let object = report_name(&namespace, &name);
    let cm = match configmaps.get_opt(&object).await {
        Ok(cm) => cm,
        Err(e) => {
            tracing::warn!(error = %e, configmap = %object, "UI API: reading a report");
            return error(
                StatusCode::BAD_GATEWAY,
                format!("could not read report ConfigMap {}/{object}", api.reports),
            );
        }
    };
    // The report must be this application's (the name is a digest of namespace and name).
    let cm = cm.filter(|cm| {
        label(&cm.metadata, APP_NAMESPACE_LABEL) == Some(namespace.as_str())
            && annotation(&cm.metadata, APPLICATION_ANNOTATION).map_or_else(
                || label(&cm.metadata, APP_LABEL) == Some(name.as_str()),
                |a| a == name,
            )
    });
    let Some(cm) = cm else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no report for Application {namespace}/{name}: argo-drift has not analysed it \
                 (is it opted in?)"
            ),
        );
    };
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(REPORT_KEY))
        .map(String::as_str)
        .unwrap_or("{}");
    let mut report: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!(
                    "report ConfigMap {}/{object} key {REPORT_KEY} is not JSON: {e}",
                    api.reports
                ),
            )
        }
    };
    if let (Some(map), Some(since)) = (
        report.as_object_mut(),
        annotation(&cm.metadata, OPENED_ANNOTATION),
    ) {
        map.insert("driftSince".into(), since.into());
    }
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(report)).into_response()
}

async fn fleet(State(api): State<UiApi>) -> Response {
    let configmaps: Api<ConfigMap> = Api::namespaced(api.client.clone(), &api.reports);
    // Metadata only: the fleet view needs labels and annotations, not the reports.
    let list = match configmaps
        .list_metadata(&ListParams::default().labels(&format!("{REPORT_LABEL}=true")))
        .await
    {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "UI API: listing reports");
            return error(
                StatusCode::BAD_GATEWAY,
                format!("could not list the reports in namespace {}", api.reports),
            );
        }
    };
    let mut apps: Vec<Value> = list
        .items
        .iter()
        .filter_map(|m| {
            let cm = &m.metadata;
            let namespace = label(cm, APP_NAMESPACE_LABEL)?;
            let name = annotation(cm, APPLICATION_ANNOTATION).or(label(cm, APP_LABEL))?;
            Some(json!({
                "application": name,
                "namespace": namespace,
                "severity": label(cm, SEVERITY_LABEL).unwrap_or("unknown"),
                "summary": annotation(cm, DRIFT_SUMMARY_ANNOTATION).unwrap_or(""),
                "driftSince": annotation(cm, OPENED_ANNOTATION),
                "pendingApproval": annotation(cm, PENDING_APPROVAL_ANNOTATION),
            }))
        })
        .collect();
    apps.sort_by(|a, b| {
        (a["namespace"].as_str(), a["application"].as_str())
            .cmp(&(b["namespace"].as_str(), b["application"].as_str()))
    });
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "applications": apps })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(APPLICATION_HEADER, value.parse().unwrap());
        h
    }

    #[test]
    fn the_application_header_is_namespace_colon_name() {
        assert_eq!(
            application(&headers("argocd:web")),
            Ok(("argocd".into(), "web".into()))
        );
        for bad in ["web", "a:b:c", ":web", "ns:", "NS:web", "ns:we b"] {
            let e = application(&headers(bad)).unwrap_err();
            assert!(e.contains("expected <namespace>:<app-name>"), "{bad}: {e}");
        }
        assert!(application(&HeaderMap::new())
            .unwrap_err()
            .contains("must be provided"));
    }

    #[test]
    fn a_token_file_error_names_the_file_never_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("token");
        std::fs::write(&short, "s3cr3t\n").unwrap();
        let e = read_token(&short).unwrap_err().to_string();
        assert!(e.contains(&short.display().to_string()), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        std::fs::write(&short, "  0123456789abcdef0123\n").unwrap();
        assert_eq!(read_token(&short).unwrap(), b"0123456789abcdef0123");
        let missing = dir.path().join("missing");
        assert!(read_token(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing"));
    }
}
