//! Kinds as a cluster serves them, and desired resources placed as that cluster would place
//! them. The controller (through its per-cluster `LiveState`) and the PreSync hook resolve
//! kinds and namespaces here, so that both compare the same objects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argo_drift_core::manifest::{Resource, Scopes};
use argo_drift_core::normalize::{prepare, Prepared, TrackingKeys};
use kube::api::{ApiResource, GroupVersionKind};
use kube::discovery::{pinned_kind, Scope};
use kube::Client;

use crate::error::{Error, Result};
use crate::lock;

/// A kind as the API server serves it.
#[derive(Debug)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// One cluster's discovery, cached per apiVersion and kind (kinds are looked up one at a time:
/// an application needs a handful, not the whole API surface).
pub struct Kinds {
    client: Client,
    cache: Mutex<HashMap<(String, String), Arc<Kind>>>,
}

impl Kinds {
    pub fn new(client: Client) -> Kinds {
        Kinds {
            client,
            cache: Mutex::default(),
        }
    }

    /// Resolve an apiVersion and kind through discovery (cached).
    pub async fn kind(&self, api_version: &str, kind: &str) -> Result<Arc<Kind>> {
        let cache_key = (api_version.to_string(), kind.to_string());
        if let Some(k) = lock(&self.cache).get(&cache_key) {
            return Ok(k.clone());
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) =
            pinned_kind(&self.client, &gvk)
                .await
                .map_err(|e| Error::Discover {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                    message: e.to_string(),
                })?;
        let k = Arc::new(Kind {
            resource,
            namespaced: caps.scope == Scope::Namespaced,
        });
        lock(&self.cache).insert(cache_key, k.clone());
        Ok(k)
    }
}

/// Desired resources as the cluster would hold them: each kind resolved through discovery, the
/// destination namespace filled in exactly where the kind is namespaced (as the API server and
/// Argo CD fill it in), and prepared for comparison with `tracking`. A kind the cluster does not
/// serve is an error naming it.
pub async fn place(
    kinds: &Kinds,
    resources: Vec<Resource>,
    tracking: &TrackingKeys,
    default_namespace: &str,
) -> Result<Vec<(Prepared, Arc<Kind>)>> {
    let mut scopes = Scopes::default();
    let mut resolved = Vec::with_capacity(resources.len());
    for r in &resources {
        let kind = kinds.kind(&r.api_version, &r.key.kind).await?;
        scopes.learn(&r.key.group, &r.key.kind, !kind.namespaced);
        resolved.push(kind);
    }
    let default_namespace = if default_namespace.is_empty() {
        "default"
    } else {
        default_namespace
    };
    Ok(resources
        .into_iter()
        .zip(resolved)
        .map(|(r, kind)| {
            let mut p = prepare(r, tracking);
            p.resolve_namespace(default_namespace, &scopes);
            (p, kind)
        })
        .collect())
}
