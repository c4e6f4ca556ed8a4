//! Install assets as a cluster sees them: every manifest in applicationsets/, examples/tiers/ and
//! deploy/ is accepted by the real API server (server-side dry-run, CRDs installed), the RBAC
//! has no wildcards and no cluster-wide Secret write. (The tiers as the real
//! applicationset-controller renders them: applicationsets.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};
use support::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// Every YAML file under `dir`, recursively, sorted.
/// Object `kind` `name` of a kustomize build.
fn built(objects: &[Value], kind: &str, name: &str) -> Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the build"))
        .clone()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(yaml_files(&p));
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Server-side dry-run apply of `doc`, its `argocd` namespace replaced by `argocd`, and its
/// other namespaced objects (argo-drift's own namespace's too) put in `namespace`.
async fn dry_run(client: &kube::Client, doc: &Value, argocd: &str, namespace: &str) {
    let mut doc: Value = serde_json::from_str(
        &doc.to_string()
            .replace(
                "\"namespace\":\"argocd\"",
                &format!("\"namespace\":\"{argocd}\""),
            )
            .replace("APP_NAMESPACE", namespace)
            .replace(
                "\"namespace\":\"shop\"",
                &format!("\"namespace\":\"{namespace}\""),
            )
            .replace(
                "\"namespace\":\"argo-drift-workflows\"",
                &format!("\"namespace\":\"{namespace}\""),
            )
            .replace(
                "\"namespace\":\"argo-drift\"",
                &format!("\"namespace\":\"{namespace}\""),
            ),
    )
    .unwrap();
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or(namespace)
        .to_string();
    if let Some(m) = doc["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    let api = dynamic_api(client, &ns, &doc).await;
    let name = doc["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(
        &name,
        &PatchParams::apply("argocd-controller").force().dry_run(),
        &Patch::Apply(&doc),
    )
    .await
    .unwrap_or_else(|e| panic!("{} {name} rejected: {e}", doc["kind"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_install_manifest_applicationset_and_example_app_is_accepted() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    // The ServiceMonitor CRD was just installed: wait until it serves.
    let monitors = dynamic(
        &client,
        &argocd,
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    )
    .await;
    wait_for(
        "the ServiceMonitor CRD",
        std::time::Duration::from_secs(20),
        || async { monitors.list(&Default::default()).await.ok() },
    )
    .await;
    let mut files = yaml_files(&repo("applicationsets"));
    files.extend(yaml_files(&repo("examples/tiers")));
    files.extend(yaml_files(&repo("examples/workflows")));
    files.extend(yaml_files(&repo("examples/offline/desired")));
    for f in yaml_files(&repo("deploy")) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        // Kustomize files are not objects; the CRDs are installed already; the sidecar and the
        // extension's patches are patches, checked below and in
        // the_argocd_extension_component_composes_with_argo_cds_own_install; the alert rules'
        // unit tests are promtool's (tests/monitoring.rs); the audit policy and webhook
        // kubeconfig are the API server's files, not objects (tests/audit.rs,
        // tests/changed_by.rs), and the audit component is checked below.
        if name == "kustomization.yaml"
            || f.starts_with(repo("deploy/testenv"))
            || f.starts_with(repo("deploy/audit"))
            || f.starts_with(repo("deploy/monitoring/tests"))
            || f.starts_with(repo("deploy/sidecar"))
            || name.ends_with("-patch.yaml")
        {
            continue;
        }
        files.push(f);
    }
    let mut applied = 0;
    for f in &files {
        for doc in documents(f) {
            dry_run(&client, &doc, &argocd, &shop).await;
            applied += 1;
        }
    }
    assert!(applied >= 25, "{applied} objects from {files:?}");

    // The sidecar patch merged into a minimal application controller StatefulSet.
    let patch = &documents(&repo("deploy/sidecar/application-controller-patch.yaml"))[0];
    let sidecar = &patch["spec"]["template"]["spec"];
    let mut containers = vec![
        json!({"name": "argocd-application-controller", "image": "quay.io/argoproj/argocd:v2.13.0"}),
    ];
    containers.extend(sidecar["containers"].as_array().unwrap().iter().cloned());
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "argocd-application-controller", "namespace": "argocd"},
        "spec": {
            "serviceName": "argocd-application-controller",
            "selector": {"matchLabels": {"app.kubernetes.io/name": "argocd-application-controller"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "argocd-application-controller"}},
                "spec": {"containers": containers, "volumes": sidecar["volumes"]}
            }
        }
    });
    dry_run(&client, &sts, &argocd, &shop).await;
}

#[test]
fn rbac_has_no_wildcards_and_no_cluster_wide_secret_write() {
    let writes = [
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "*",
    ];
    let mut checked = 0;
    for f in yaml_files(&repo("deploy")) {
        for doc in documents(&f) {
            let kind = doc["kind"].as_str().unwrap_or("");
            if kind != "Role" && kind != "ClusterRole" {
                continue;
            }
            for rule in doc["rules"].as_array().unwrap() {
                checked += 1;
                for field in ["apiGroups", "resources", "verbs"] {
                    let values = rule[field].as_array().unwrap();
                    assert!(
                        values.iter().all(|v| v != "*"),
                        "{}: {kind} {}: a wildcard in {field}",
                        f.display(),
                        doc["metadata"]["name"]
                    );
                }
                let secrets = rule["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == "secrets");
                let writes_them = rule["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| writes.contains(&v.as_str().unwrap()));
                assert!(
                    !(kind == "ClusterRole" && secrets && writes_them),
                    "{}: {} may write Secrets cluster-wide",
                    f.display(),
                    doc["metadata"]["name"]
                );
            }
        }
    }
    assert!(checked >= 10, "{checked} rules");
}

#[test]
fn the_image_carries_every_binary() {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    for bin in [
        "argo-drift",
        "argo-drift-presync",
        "argo-drift-postsync",
        "argo-drift-syncfail",
    ] {
        assert!(
            dockerfile.contains(&format!("target/release/{bin}")),
            "{bin}"
        );
    }
    assert!(dockerfile.contains("nonroot"));
}

/// deploy/argocd-extension as users add it: a kustomization with Argo CD's own install.yaml (of
/// the pinned release), argo-drift's base and the component, built by the real kustomize; the
/// composed objects carry the extension, its config and RBAC, and the API server accepts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_argocd_extension_component_composes_with_argo_cds_own_install() {
    let source = PathBuf::from(exported(
        &testenv("argocd-source"),
        "ARGO_DRIFT_ARGOCD_SOURCE",
    ));
    let install = std::fs::read_to_string(source.join("manifests/install.yaml")).unwrap();
    let objects = kustomize_build(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n\
         - install.yaml\n- ../../deploy/base\ncomponents:\n- ../../deploy/argocd-extension\n",
        &[("install.yaml", &install)],
    );
    let find = |kind: &str, name: &str| built(&objects, kind, name);
    let by_prefix = |kind: &str, prefix: &str| -> Value {
        objects
            .iter()
            .find(|o| {
                o["kind"] == kind
                    && o["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(prefix))
            })
            .unwrap_or_else(|| panic!("no {kind} {prefix}* in the build"))
            .clone()
    };

    // argocd-server serves the extension, the very file the source builds, from its
    // extensions directory.
    let js = by_prefix("ConfigMap", "argo-drift-ui-extension-");
    assert_eq!(
        js["data"]["extension-argo-drift.js"].as_str().unwrap(),
        std::fs::read_to_string(repo("deploy/argocd-extension/extension-argo-drift.js")).unwrap()
    );
    let server = find("Deployment", "argocd-server");
    let pod = &server["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "argo-drift-ui-extension")
        .unwrap();
    assert_eq!(volume["configMap"]["name"], js["metadata"]["name"]);
    let mounts = pod["containers"][0]["volumeMounts"].to_string();
    assert!(
        mounts.contains("/tmp/extensions/resources/argo-drift"),
        "{mounts}"
    );
    // The proxy extension is on and points at the controller's UI API with the token header.
    assert_eq!(
        find("ConfigMap", "argocd-cmd-params-cm")["data"]["server.enable.proxy.extension"],
        "true"
    );
    let config: Value = serde_yaml::from_str(
        find("ConfigMap", "argocd-cm")["data"]["extension.config"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let ext = &config["extensions"][0];
    assert_eq!(ext["name"], "argo-drift");
    let service = &ext["backend"]["services"][0];
    assert_eq!(service["url"], "http://argo-drift-ui-api.argocd.svc:8081");
    assert!(service["headers"][0]["name"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case(argo_drift_controller::ui_api::TOKEN_HEADER));
    assert_eq!(service["headers"][0]["value"], "$argo-drift.ui-api.token");
    assert!(
        find("ConfigMap", "argocd-rbac-cm")["data"]["policy.argo-drift.csv"]
            .as_str()
            .unwrap()
            .contains("extensions, invoke, argo-drift, allow")
    );
    // The controller serves it on the port the Service targets, token from its Secret mount.
    let controller = find("Deployment", "argo-drift");
    let container = &controller["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].to_string();
    assert!(
        env.contains("ARGO_DRIFT_UI_API_ADDR")
            && env.contains("/etc/argo-drift/secrets/ui-api-token"),
        "{env}"
    );
    assert!(container["ports"].to_string().contains("\"ui-api\""));
    assert!(container["volumeMounts"]
        .to_string()
        .contains("\"/etc/argo-drift/secrets\""));
    assert_eq!(
        find("Service", "argo-drift-ui-api")["spec"]["ports"][0]["targetPort"],
        "ui-api"
    );

    // The API server accepts what the component adds or changes.
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let other = fresh_namespace(&client, "argo-drift").await;
    for object in [
        js,
        server,
        find("ConfigMap", "argocd-cm"),
        find("ConfigMap", "argocd-cmd-params-cm"),
        find("ConfigMap", "argocd-rbac-cm"),
        controller,
        find("Service", "argo-drift-ui-api"),
        find("NetworkPolicy", "argo-drift-ui-api"),
    ] {
        let mut object = object;
        if object["metadata"]["namespace"].is_null() {
            object["metadata"]["namespace"] = json!("argocd");
        }
        dry_run(&client, &object, &argocd, &other).await;
    }
}

/// deploy/audit as users add it to the base: the controller gets the receiver (address,
/// certificate, key, client CA from Secret argo-drift-audit-tls), the Service reaches it, the
/// NetworkPolicy lets the API server in; the API server accepts all of it. The receiver's flags
/// are read by the controller's own argument parser, so a renamed variable fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_component_adds_the_receiver_to_the_controller() {
    let objects = kustomize_build(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n\
         - ../../deploy/base\ncomponents:\n- ../../deploy/audit\n",
        &[],
    );
    let find = |kind: &str, name: &str| built(&objects, kind, name);
    let deployment = find("Deployment", "argo-drift");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    // The base's variables are kept beside the component's.
    assert!(env.iter().any(|(k, _)| k == "ARGO_DRIFT_LOG"), "{env:?}");
    // Every variable the component sets is one `argo-drift run` reads (clap's own table).
    let command = <argo_drift_controller::cli::Args as clap::CommandFactory>::command();
    let run = command.find_subcommand("run").unwrap();
    let read: Vec<String> = run
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().to_string())
        .collect();
    let value = |name: &str| {
        assert!(
            read.iter().any(|r| r == name),
            "argo-drift run reads no {name}"
        );
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    };
    assert_eq!(value("ARGO_DRIFT_AUDIT_WEBHOOK_ADDR"), Some("0.0.0.0:8443"));
    assert_eq!(
        value("ARGO_DRIFT_AUDIT_WEBHOOK_CLIENT_CA"),
        Some("/etc/argo-drift/audit/client-ca.crt")
    );
    assert_eq!(
        value("ARGO_DRIFT_AUDIT_WEBHOOK_TLS_CERT"),
        Some("/etc/argo-drift/audit/tls.crt")
    );
    assert_eq!(
        value("ARGO_DRIFT_AUDIT_WEBHOOK_TLS_KEY"),
        Some("/etc/argo-drift/audit/tls.key")
    );
    let mounts = container["volumeMounts"].as_array().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m["name"] == "audit-tls" && m["mountPath"] == "/etc/argo-drift/audit"));
    assert!(
        mounts.iter().any(|m| m["name"] == "policy"),
        "base mounts kept"
    );
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(volumes
        .iter()
        .any(|v| v["secret"]["secretName"] == "argo-drift-audit-tls"));
    let service = find("Service", "argo-drift-audit");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "audit");
    assert!(container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "audit" && p["containerPort"] == 8443));
    let policy = find("NetworkPolicy", "argo-drift");
    let ports: Vec<&Value> = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["ports"].as_array().unwrap())
        .map(|p| &p["port"])
        .collect();
    assert!(
        ports.contains(&&json!(8443)) && ports.contains(&&json!(8080)),
        "{ports:?}"
    );

    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let other = fresh_namespace(&client, "argo-drift").await;
    for object in [deployment, service, policy] {
        dry_run(&client, &object, &argocd, &other).await;
    }
}
