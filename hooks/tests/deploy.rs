//! The hook install assets in deploy/: what Argo CD needs on each Job and a safe container.
//! (That the API server accepts them is checked with every other manifest in
//! controller/tests/install.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

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
