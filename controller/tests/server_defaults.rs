//! The defaults model, from the real API server: each object of
//! tests/data/server-defaults-samples.yaml is created twice with a server-side dry run, and every
//! field the server filled in is recorded — its value when both runs agree, "any" when the
//! server allocates it (cluster IPs, node ports, generated labels). The committed table,
//! core/src/normalize/server_defaults.json, must be what the current server fills in; it is
//! what `argo-drift diff` consults for objects without managedFields.
//!
//!   ARGO_DRIFT_UPDATE_SERVER_DEFAULTS=1 cargo test -p argo-drift-controller --test server_defaults
//!
//! writes the table instead of checking it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use kube::api::{DynamicObject, PostParams};
use serde_json::{json, Map, Value};
use support::*;

/// A path segment as argo-drift's path patterns spell it.
fn segment(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        format!(".{name}")
    } else {
        format!("[{}]", serde_json::to_string(name).unwrap())
    }
}

/// Every value of `live` that `sample` does not have, by generalised path (list items `[*]`).
/// A scalar list, an empty map or an empty list counts as one value.
fn filled_in(sample: Option<&Value>, live: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match live {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let child = sample.and_then(|s| s.get(k));
                filled_in(child, v, &format!("{path}{}", segment(k)), out);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            for (n, item) in items.iter().enumerate() {
                let child = sample.and_then(|s| s.get(n));
                filled_in(child, item, &format!("{path}[*]"), out);
            }
        }
        _ => {
            if sample.is_none() {
                out.push((path.trim_start_matches('.').to_string(), live.clone()));
            }
        }
    }
}

/// What the server adds that says nothing about defaults (identity, bookkeeping, status).
fn bookkeeping(path: &str) -> bool {
    path == "status"
        || path.starts_with("status.")
        || [
            "metadata.uid",
            "metadata.resourceVersion",
            "metadata.creationTimestamp",
            "metadata.generation",
            "metadata.namespace",
            "metadata.managedFields",
        ]
        .iter()
        .any(|p| {
            path == *p || path.starts_with(&format!("{p}.")) || path.starts_with(&format!("{p}["))
        })
}

/// Values the server computes from the object itself rather than fixed defaults: argo-drift's
/// hand-written rules compute them the same way (core/src/normalize/defaults.rs: the pull
/// policy from the image's tag, a Service port's targetPort from its port, the deprecated
/// serviceAccount from serviceAccountName), and a Secret's data from its stringData.
fn derived(kind: &str, path: &str) -> bool {
    path.ends_with(".imagePullPolicy")
        || path.ends_with(".serviceAccount")
        || (kind == "Service" && path == "spec.ports[*].targetPort")
        || (kind == "Secret" && path.starts_with("data."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_defaults_table_is_what_the_current_api_server_fills_in() {
    let client = client().await;
    let namespace = fresh_namespace(&client, "defaults").await;
    let text =
        std::fs::read_to_string(root().join("controller/tests/data/server-defaults-samples.yaml"))
            .unwrap();
    let samples: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let pod = samples[0]["spec"]["template"]["spec"].clone();
    let mut samples = samples;
    for s in &mut samples {
        for at in ["/spec", "/spec/template/spec"] {
            if let Some(v) = s.pointer_mut(at) {
                if v == "same-pod-spec-as-the-deployment" {
                    *v = pod.clone();
                }
            }
        }
    }
    // kind -> path -> Some(value) while every run agreed, None once they differed.
    let mut table: BTreeMap<String, BTreeMap<String, Option<Value>>> = BTreeMap::new();
    for sample in &samples {
        let kind = sample["kind"].as_str().unwrap().to_string();
        let api = dynamic_api(&client, &namespace, sample).await;
        let mut runs = Vec::new();
        // A dry run, then a real create under another name: what the server allocates (IPs,
        // node ports, uids) or derives from the name differs between the two.
        for (dry_run, suffix) in [(true, ""), (false, "-b")] {
            let mut sample = sample.clone();
            let name = format!("{}{suffix}", sample["metadata"]["name"].as_str().unwrap());
            sample["metadata"]["name"] = json!(name);
            let object: DynamicObject = serde_json::from_value(sample.clone()).unwrap();
            let created = api
                .create(
                    &PostParams {
                        dry_run,
                        field_manager: Some("argo-drift-defaults".into()),
                    },
                    &object,
                )
                .await
                .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
            let live = serde_json::to_value(created).unwrap();
            let mut added = Vec::new();
            filled_in(Some(&sample), &live, "", &mut added);
            added.retain(|(p, _)| !bookkeeping(p) && !derived(&kind, p));
            runs.push(added);
        }
        let entries = table.entry(kind).or_default();
        for (path, value) in runs.concat() {
            match entries.get(&path) {
                None => {
                    entries.insert(path, Some(value));
                }
                Some(Some(v)) if *v != value => {
                    entries.insert(path, None);
                }
                _ => {}
            }
        }
    }
    let mut kinds = Map::new();
    for (kind, entries) in &table {
        let mut fields = Map::new();
        for (path, value) in entries {
            fields.insert(
                path.clone(),
                match value {
                    Some(v) => json!({"equals": v}),
                    None => json!({"any": true}),
                },
            );
        }
        kinds.insert(kind.clone(), Value::Object(fields));
    }
    let generated = serde_json::to_string_pretty(&json!({
        "comment": "What the API server fills in for Kubernetes' own kinds, recorded by controller/tests/server_defaults.rs from a real API server (regenerate: ARGO_DRIFT_UPDATE_SERVER_DEFAULTS=1). Paths are argo-drift path patterns; 'any' marks values the server allocates.",
        "kinds": kinds,
    }))
    .unwrap()
        + "\n";
    let committed_path = root().join("core/src/normalize/server_defaults.json");
    if std::env::var_os("ARGO_DRIFT_UPDATE_SERVER_DEFAULTS").is_some() {
        std::fs::write(&committed_path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if committed != generated {
        let old: Value = serde_json::from_str(&committed).unwrap_or(Value::Null);
        let new: Value = serde_json::from_str(&generated).unwrap();
        let mut differences = Vec::new();
        for (kind, fields) in new["kinds"].as_object().unwrap() {
            for (path, v) in fields.as_object().unwrap() {
                if old["kinds"][kind][path] != *v {
                    differences.push(format!(
                        "{kind} {path}: committed {} , server {v}",
                        old["kinds"][kind][path]
                    ));
                }
            }
        }
        for (kind, fields) in old["kinds"].as_object().into_iter().flatten() {
            for path in fields.as_object().unwrap().keys() {
                if new["kinds"][kind][path].is_null() {
                    differences.push(format!("{kind} {path}: committed, no longer filled in"));
                }
            }
        }
        panic!(
            "core/src/normalize/server_defaults.json is not what this API server fills in \
             (ARGO_DRIFT_UPDATE_SERVER_DEFAULTS=1 regenerates it):\n{}",
            differences.join("\n")
        );
    }
}
