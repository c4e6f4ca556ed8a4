//! Records the hooks leave in argo-drift's own namespace (analysis, audit, alert, hook state): one
//! ConfigMap each, labelled for selection, the newest N per application kept.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

pub const FIELD_MANAGER: &str = "argo-drift-hooks";

pub use argo_drift_cluster::records::HOOK_NAMESPACE_LABEL;

/// Create (or replace) ConfigMap `name` with `labels` and `data`.
pub async fn write(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    data: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    // The marks deploy/base/admission-policy.yaml asks for: argo-drift's own ConfigMap, and the
    // application namespace whose hooks wrote it (only they may change it again).
    let mut labels = labels.clone();
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        "argo-drift".to_string(),
    );
    if let Ok(own) = std::env::var("POD_NAMESPACE") {
        if !own.is_empty() {
            labels.insert(HOOK_NAMESPACE_LABEL.to_string(), own);
        }
    }
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
        .map_err(argo_drift_cluster::error::Error::kube(format!(
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
        .map_err(argo_drift_cluster::error::Error::kube(format!(
            "reading ConfigMap {namespace}/{name}"
        )))?;
    Ok(cm.map(|c| c.data.unwrap_or_default()))
}

pub use argo_drift_cluster::records::{keep_newest, record_name as name};

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
