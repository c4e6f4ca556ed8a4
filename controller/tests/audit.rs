//! deploy/audit/audit-policy.yaml on the real API server (the test environment starts it with
//! that policy and a JSON audit log): two people, a ServiceAccount and an impersonated request
//! edit objects; the log names each writer with the written object's resourceVersion, keeps
//! reads out, and keeps Secret values out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use support::*;

/// The audit log's events about `resource` `namespace/name`.
fn events_about(log: &str, resource: &str, namespace: &str, name: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| {
            let o = &e["objectRef"];
            o["resource"] == resource && o["namespace"] == namespace && o["name"] == name
        })
        .collect()
}

async fn patch_as(client: &kube::Client, shop: &str, manager: &str, data: Value) -> String {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), shop);
    let params = PatchParams {
        field_manager: Some(manager.into()),
        ..Default::default()
    };
    let cm = configmaps
        .patch("flags", &params, &Patch::Merge(json!({ "data": data })))
        .await
        .unwrap();
    cm.metadata.resource_version.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_audit_policy_names_each_writer_with_the_written_version_and_no_secret() {
    let admin = client().await;
    let exports = testenv("env");
    let Some(log) = exports
        .iter()
        .find(|(k, _)| k == "ARGO_DRIFT_TESTENV_AUDIT_LOG")
        .map(|(_, v)| v.clone())
    else {
        eprintln!("skipped: the cluster in KUBECONFIG is not the project's own test API server");
        return;
    };
    let shop = fresh_namespace(&admin, "shop").await;
    apply_yaml(
        &admin,
        &shop,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  mode: safe\n  level: low\n",
        "argocd-controller",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Two people (client certificates, as an OIDC or certificate login names them) in group
    // system:masters, a ServiceAccount's token, and an admin impersonating a third person.
    let alice = user_client(dir.path(), "alice", "system:masters").await;
    let bob = user_client(dir.path(), "bob", "system:masters").await;
    let alice_version = patch_as(&alice, &shop, "kubectl-edit", json!({"mode": "yolo"})).await;
    let bob_version = patch_as(&bob, &shop, "kubectl-patch", json!({"level": "high"})).await;

    let carol = impersonating("carol").await;
    let carol_version = patch_as(&carol, &shop, "kubectl-edit", json!({"mode": "reckless"})).await;

    // A CI job's ServiceAccount.
    let sa = configmap_deployer(&admin, &shop).await;
    let sa_version =
        patch_config_map_once_allowed(&sa, &shop, "flags", "ci-deploy", json!({"level": "low"}))
            .await;
    // A read, and a Secret written with a value.
    let _ = Api::<ConfigMap>::namespaced(alice.clone(), &shop)
        .get("flags")
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(alice.clone(), &shop);
    secrets
        .patch(
            "db",
            &PatchParams::apply("kubectl-client-side-apply"),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                "stringData": {"password": "hunter2-audit"}
            })),
        )
        .await
        .unwrap();

    // The log is written as requests complete; wait for the last write's event.
    let events = wait_for("the audit events", Duration::from_secs(10), || async {
        let events = events_about(&log, "configmaps", &shop, "flags");
        let versions: Vec<&str> = events
            .iter()
            .filter_map(|e| e["responseObject"]["metadata"]["resourceVersion"].as_str())
            .collect();
        versions.contains(&sa_version.as_str()).then_some(events)
    })
    .await;
    let by_version = |version: &str| -> &Value {
        events
            .iter()
            .find(|e| e["responseObject"]["metadata"]["resourceVersion"] == version)
            .unwrap_or_else(|| panic!("no event for resourceVersion {version}: {events:#?}"))
    };
    let alice_event = by_version(&alice_version);
    assert_eq!(alice_event["user"]["username"], "alice");
    assert_eq!(alice_event["verb"], "patch");
    assert_eq!(alice_event["level"], "RequestResponse");
    assert_eq!(alice_event["stage"], "ResponseComplete");
    assert!(alice_event["user"]["groups"]
        .as_array()
        .unwrap()
        .contains(&json!("system:masters")));
    assert!(alice_event["requestURI"]
        .as_str()
        .unwrap()
        .contains("fieldManager=kubectl-edit"));
    assert!(alice_event["sourceIPs"]
        .as_array()
        .is_some_and(|ips| !ips.is_empty()));
    assert_eq!(by_version(&bob_version)["user"]["username"], "bob");
    let carol_event = by_version(&carol_version);
    assert_eq!(carol_event["user"]["username"], "admin");
    assert_eq!(carol_event["impersonatedUser"]["username"], "carol");
    let sa_event = by_version(&sa_version);
    assert_eq!(
        sa_event["user"]["username"],
        format!("system:serviceaccount:{shop}:deployer")
    );
    assert!(sa_event["user"]["groups"]
        .as_array()
        .unwrap()
        .contains(&json!("system:serviceaccounts")));
    // Reads are not kept.
    assert!(events.iter().all(|e| e["verb"] != "get"), "{events:#?}");
    // The Secret's write is kept, by whom and when, without its value anywhere in the log.
    let secret_events = events_about(&log, "secrets", &shop, "db");
    assert_eq!(secret_events.len(), 1, "{secret_events:#?}");
    assert_eq!(secret_events[0]["level"], "Metadata");
    assert_eq!(secret_events[0]["user"]["username"], "alice");
    let whole = std::fs::read_to_string(&log).unwrap();
    assert!(!whole.contains("hunter2-audit"));
    assert!(!whole.contains("aHVudGVyMi1hdWRpdA"), "base64 of the value");
}
