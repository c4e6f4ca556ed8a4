//! The hook install assets in deploy/: what Argo CD needs on each Job, a safe container, and
//! manifests the real API server accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use kube::api::{Patch, PatchParams};
use serde_json::Value;
use support::*;

fn deploy(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn each_hook_job_carries_what_argo_cd_and_a_restricted_namespace_need() {
    for (file, hook, binary) in [
        ("hooks/presync-job.yaml", "PreSync", "argo-drift-presync"),
        ("hooks/postsync-job.yaml", "PostSync", "argo-drift-postsync"),
        ("hooks/syncfail-job.yaml", "SyncFail", "argo-drift-syncfail"),
    ] {
        let job = &documents(file)[0];
        let annotations = &job["metadata"]["annotations"];
        assert_eq!(annotations["argocd.argoproj.io/hook"], hook, "{file}");
        assert_eq!(
            annotations["argocd.argoproj.io/hook-delete-policy"], "BeforeHookCreation",
            "{file}"
        );
        assert!(
            annotations["argocd.argoproj.io/sync-wave"].is_string(),
            "{file}"
        );
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "argo-drift-hooks");
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let c = &pod["containers"][0];
        assert_eq!(c["command"][0], binary, "{file}");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert!(c["resources"]["limits"]["memory"].is_string());
        let env: Vec<(&str, &Value)> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e))
            .collect();
        for (name, field) in [
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
        ] {
            let e = env.iter().find(|(n, _)| *n == name).unwrap().1;
            assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], field, "{file}");
        }
        assert_eq!(job["spec"]["backoffLimit"], 0);
    }
    let component = documents("hooks/kustomization.yaml");
    assert_eq!(component[0]["kind"], "Component");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_accepts_the_hook_manifests() {
    let client = client().await;
    let shop = fresh_namespace(&client, "shop").await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let mut all = documents("base/hooks-rbac.yaml");
    for f in [
        "hooks/rbac.yaml",
        "hooks/presync-job.yaml",
        "hooks/postsync-job.yaml",
        "hooks/syncfail-job.yaml",
    ] {
        all.extend(documents(f));
    }
    for mut doc in all {
        let text = doc.to_string().replace("APP_NAMESPACE", &shop).replace(
            "\"namespace\":\"argocd\"",
            &format!("\"namespace\":\"{argocd}\""),
        );
        doc = serde_json::from_str(&text).unwrap();
        let namespace = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&shop)
            .to_string();
        let api = dynamic_api(&client, &namespace, &doc).await;
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        api.patch(
            &name,
            &PatchParams::apply("argocd-controller").dry_run(),
            &Patch::Apply(&doc),
        )
        .await
        .unwrap_or_else(|e| panic!("{} {name}: {e}", doc["kind"]));
    }
}
