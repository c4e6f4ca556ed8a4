//! argo-drift's own records in the cluster (reports, analyses, audits, alerts, rollback
//! requests): how they are named and labelled, so that every writer and reader (the controller,
//! the hooks, selectors) agrees, and how old ones are let go.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::Client;
use serde::{Deserialize, Serialize};

/// The label naming a record's Application (its `label_value`).
pub const APP_LABEL: &str = "argo-drift.io/app";
/// The label naming a record's Application's namespace.
pub const APP_NAMESPACE_LABEL: &str = "argo-drift.io/app-namespace";
/// The application namespace whose hooks wrote a record: the admission policy
/// (deploy/base/admission-policy.yaml) keeps it true, and only those hooks may change it.
pub const HOOK_NAMESPACE_LABEL: &str = "argo-drift.io/hook-namespace";

/// The report ConfigMap of Application `namespace/app`, in argo-drift's own namespace:
/// `argo-drift-report-<namespace>.<app>` (a namespace holds no `.`, so two apps never share one).
pub fn report_name(namespace: &str, app: &str) -> String {
    bounded_name("argo-drift-report-", &format!("{namespace}.{app}"), 253)
}

/// The guardrail-state ConfigMap of Application `namespace/app`, in argo-drift's own namespace
/// (one per app, so that replicas deciding for different apps never write the same object).
pub fn guardrail_name(namespace: &str, app: &str) -> String {
    bounded_name("argo-drift-guardrails-", &format!("{namespace}.{app}"), 253)
}

/// `prefix` + `name`, kept within `max` characters: a name that would not fit keeps its start
/// and gets a hash of the whole, so that two long names stay two names.
fn bounded_name(prefix: &str, name: &str, max: usize) -> String {
    let full = format!("{prefix}{name}");
    if full.len() <= max {
        return full;
    }
    let hash = &fnv(name.as_bytes())[..10];
    let keep = max - prefix.len() - hash.len() - 1;
    let start: String = name.chars().take(keep).collect();
    format!("{prefix}{}-{hash}", start.trim_end_matches(['-', '.']))
}

/// A label value for a name (an Application's or a namespace's, up to 253 characters): the name
/// itself when it is a valid label value, else its first characters and a hash of the whole
/// (label values are at most 63 characters). Selectors use the same function.
pub fn label_value(name: &str) -> String {
    let valid = name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid || name.is_empty() {
        return name.to_string();
    }
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let start: String = cleaned
        .trim_start_matches(['-', '_', '.'])
        .chars()
        .take(52)
        .collect();
    let start = start.trim_end_matches(['-', '_', '.']);
    let hash = &fnv(name.as_bytes())[..10];
    if start.is_empty() {
        hash.to_string()
    } else {
        format!("{start}-{hash}")
    }
}

/// Delete all but the newest `keep` ConfigMaps matching `selector` (by creation time, then
/// name: record names end in their time). Failures are logged: retention never fails the
/// action it follows.
pub async fn keep_newest(client: &Client, namespace: &str, selector: &str, keep: usize) {
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    // Creation times and names are all retention reads: the records' contents stay on the server.
    let Ok(list) = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
    else {
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

/// A ConfigMap name from parts: lower case, `[a-z0-9.-]`, at most 253 characters. Too long (an
/// Application name can take them all), it keeps its start and ends in a hash of the whole, so
/// that records told apart by a later part (a time) stay apart.
pub fn record_name(parts: &[&str]) -> String {
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
        .collect();
    let cleaned = cleaned.trim_matches('-');
    if cleaned.len() <= 253 {
        return cleaned.to_string();
    }
    let start = cleaned[..242].trim_end_matches(['-', '.']);
    format!("{start}-{}", &fnv(joined.as_bytes())[..10])
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike `DefaultHasher`.
pub fn fnv(bytes: &[u8]) -> String {
    format!("{:016x}", fnv64(bytes))
}

/// FNV-1a, 64 bits, as a number.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The alert ConfigMap's label carrying the request's state: `requested`, then `done`,
/// `failed` or `superseded`.
pub const ROLLBACK_LABEL: &str = "argo-drift.io/rollback";
/// The alert ConfigMap's key holding the request.
pub const REQUEST_KEY: &str = "rollback.json";

/// What the SyncFail hook decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub app_namespace: String,
    pub app: String,
    /// The history entry to roll back to, and its revision.
    pub history_id: i64,
    pub revision: String,
    pub failing_revision: String,
    /// `status.operationState.startedAt` of the failed operation: the one this request is about.
    pub operation_started_at: String,
    pub prune: bool,
}
