//! Argo CD's settings as argo-drift reads them: from `argocd-cm` where it can be read (the
//! controller watches it; see `clusters`), or from Argo CD's settings API (`GET
//! /api/v1/settings`), which a hook on any cluster can reach with its Argo CD token. The API
//! serves the resource overrides (ignoreDifferences, `.all` as `*/*`, knownTypeFields), the
//! tracking method, the instance label key and the installation ID (server/settings/settings.go
//! Get); it does not serve resource exclusions, compare options or the masked annotations, so
//! those stay at Argo CD's defaults when only the API is available.

use std::collections::BTreeMap;

use argo_drift_core::argocd_cm::ArgoCdSettings;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use serde_json::Value;

use crate::error::{Error, Result};

pub const ARGOCD_CM: &str = "argocd-cm";

/// The settings of one version of `argocd-cm`. A setting Argo CD could not read either is an
/// error naming the ConfigMap and key; entries Argo CD skips with a warning are logged.
pub fn from_configmap(cm: &ConfigMap) -> Result<ArgoCdSettings> {
    let data: BTreeMap<String, String> = cm.data.clone().unwrap_or_default();
    let name = format!(
        "{}/{}",
        cm.metadata.namespace.as_deref().unwrap_or_default(),
        cm.metadata.name.as_deref().unwrap_or_default()
    );
    parsed(&name, &data)
}

fn parsed(source: &str, data: &BTreeMap<String, String>) -> Result<ArgoCdSettings> {
    let settings =
        ArgoCdSettings::from_data(data).map_err(|(key, message)| Error::ArgoCdSettings {
            configmap: source.to_string(),
            key,
            message,
        })?;
    for w in &settings.warnings {
        tracing::warn!(settings = source, "{w}: skipped, as Argo CD skips it");
    }
    Ok(settings)
}

/// `argocd-cm` read once (a hook): `Ok(Err(why))` when it is not there or not readable by this
/// identity, so the caller can try Argo CD's API.
pub async fn read(
    client: &Client,
    namespace: &str,
) -> Result<std::result::Result<ArgoCdSettings, String>> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    match api.get_opt(ARGOCD_CM).await {
        Ok(Some(cm)) => Ok(Ok(from_configmap(&cm)?)),
        Ok(None) => Ok(Err(format!("{namespace}/{ARGOCD_CM} does not exist"))),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(Err(format!(
            "{namespace}/{ARGOCD_CM} is not readable by this ServiceAccount"
        ))),
        Err(e) => Err(Error::kube(format!("reading {namespace}/{ARGOCD_CM}"))(e)),
    }
}

/// The settings from Argo CD's settings API answer, read as the `argocd-cm` keys they come
/// from, so that both take one parser.
pub fn from_api(settings: &Value) -> Result<ArgoCdSettings> {
    let mut data = BTreeMap::new();
    if let Some(Value::Object(overrides)) = settings.get("resourceOverrides") {
        let mut customizations = serde_json::Map::new();
        for (key, o) in overrides {
            let mut entry = serde_json::Map::new();
            for field in ["ignoreDifferences", "knownTypeFields"] {
                if let Some(v) = o.get(field).filter(|v| !v.is_null()) {
                    entry.insert(field.to_string(), v.clone());
                }
            }
            if !entry.is_empty() {
                customizations.insert(key.clone(), Value::Object(entry));
            }
        }
        if !customizations.is_empty() {
            // JSON is YAML: the ConfigMap parser reads it as it reads the YAML form.
            data.insert(
                "resource.customizations".to_string(),
                Value::Object(customizations).to_string(),
            );
        }
    }
    for (field, key) in [
        ("trackingMethod", "application.resourceTrackingMethod"),
        ("appLabelKey", "application.instanceLabelKey"),
        ("installationID", "installationID"),
    ] {
        if let Some(v) = settings.get(field).and_then(Value::as_str) {
            data.insert(key.to_string(), v.to_string());
        }
    }
    parsed("Argo CD's settings API", &data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_settings_api_answer_reads_as_the_configmap_it_comes_from() {
        // The shape of GET /api/v1/settings (clusterSettings in Argo CD's swagger).
        let answer = json!({
            "appLabelKey": "team.example.com/app",
            "trackingMethod": "annotation+label",
            "installationID": "hub-1",
            "resourceOverrides": {
                // Argo CD answers unset lists as null.
                "*/*": {"ignoreDifferences": {"jsonPointers": ["/status"],
                    "jqPathExpressions": null, "managedFieldsManagers": null}},
                "apps/Deployment": {"ignoreDifferences": {"jqPathExpressions": [".spec.replicas"]}},
                "cert-manager.io/Certificate": {"knownTypeFields": [
                    {"field": "spec.duration", "type": "meta/v1/Duration"}
                ]},
                "Service": {"healthLua": "return {}"}
            }
        });
        let s = from_api(&answer).unwrap();
        assert_eq!(
            s.instance_label_key.as_deref(),
            Some("team.example.com/app")
        );
        assert_eq!(s.installation_id.as_deref(), Some("hub-1"));
        assert!(s.tracking_method.is_some());
        assert_eq!(s.ignore_rules.len(), 2);
        assert!(s.known_types.applies_to("cert-manager.io", "Certificate"));
        let bad = json!({"trackingMethod": "guess"});
        let e = from_api(&bad).unwrap_err().to_string();
        assert!(e.contains("application.resourceTrackingMethod"), "{e}");
    }
}
