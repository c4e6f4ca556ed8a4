//! Records the hooks leave in Argo CD's namespace (analysis, audit, alert, hook state): one
//! ConfigMap each, labelled for selection, the newest N per application kept.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

pub const FIELD_MANAGER: &str = "argo-drift-hooks";

/// Create (or replace) ConfigMap `name` with `labels` and `data`.
pub async fn write(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    data: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": data,
    });
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await
        .map_err(crate::kube_error(format!(
            "writing ConfigMap {namespace}/{name}"
        )))?;
    Ok(())
}

/// Read ConfigMap `name`'s data, if it exists.
pub async fn read(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(crate::kube_error(format!(
            "reading ConfigMap {namespace}/{name}"
        )))?;
    Ok(cm.map(|c| c.data.unwrap_or_default()))
}

/// Delete all but the newest `keep` ConfigMaps matching `selector` (by creation time, then
/// name). Failures are logged: retention never fails a hook.
pub async fn keep_newest(client: &Client, namespace: &str, selector: &str, keep: usize) {
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let Ok(list) = api.list(&ListParams::default().labels(selector)).await else {
        tracing::warn!(selector, "could not list records for retention");
        return;
    };
    let mut items: Vec<(String, String)> = list
        .items
        .into_iter()
        .filter_map(|c| {
            let created = c
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            c.metadata.name.map(|n| (created, n))
        })
        .collect();
    items.sort();
    let excess = items.len().saturating_sub(keep.max(1));
    for (_, name) in items.into_iter().take(excess) {
        if let Err(e) = api.delete(&name, &Default::default()).await {
            tracing::warn!(record = %name, error = %e, "could not delete an old record");
        }
    }
}

/// A ConfigMap name from parts: lower case, `[a-z0-9.-]`, at most 253 characters.
pub fn name(parts: &[&str]) -> String {
    let joined = parts.join("-").to_lowercase();
    let cleaned: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(253)
        .collect();
    cleaned.trim_matches('-').to_string()
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// RFC 3339 now.
pub fn timestamp() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}
