//! Install assets as a cluster sees them: every manifest in applicationsets/, examples/tiers/ and
//! deploy/ is accepted by the real API server (server-side dry-run, CRDs installed), the RBAC
//! has no wildcards and no cluster-wide Secret write; the Helm chart renders deploy/base with its
//! defaults, lints, installs, upgrades and uninstalls with the real helm, and the real Argo CD
//! syncs the self-managed example. (The tiers as the real
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

/// A client and fresh namespaces for Argo CD and an application, once the Prometheus Operator's
/// CRDs (installed by the test environment just before) serve.
async fn namespaces_with_crds() -> (kube::Client, String, String) {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        let api = dynamic(&client, &argocd, "monitoring.coreos.com/v1", kind).await;
        wait_for(
            &format!("the {kind} CRD"),
            std::time::Duration::from_secs(20),
            || async { api.list(&Default::default()).await.ok() },
        )
        .await;
    }
    (client, argocd, shop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_install_manifest_applicationset_and_example_app_is_accepted() {
    let (client, argocd, shop) = namespaces_with_crds().await;
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
            // The chart's templates are not objects: rendered and checked in the chart tests.
            || f.starts_with(repo("deploy/helm"))
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
    // The manifests, and the chart as rendered with its default and its maximal values.
    let mut sources: Vec<(String, Vec<Value>)> = yaml_files(&repo("deploy"))
        .into_iter()
        .filter(|f| !f.starts_with(repo("deploy/helm")))
        .map(|f| (f.display().to_string(), documents(&f)))
        .collect();
    sources.push(("helm template (defaults)".into(), rendered(&[])));
    sources.push((
        "helm template (maximal values)".into(),
        rendered(&["-f", &maximal()]),
    ));
    for (f, docs) in &sources {
        for doc in docs.iter().cloned() {
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
                        f,
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
                    f,
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

// ----- the Helm chart (deploy/helm/argo-drift) ---------------------------------------------------

/// The chart's values with every option on.
fn maximal() -> String {
    repo("deploy/helm/argo-drift/ci/maximal-values.yaml")
        .display()
        .to_string()
}

fn parse_all(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The chart rendered by the real helm with these arguments, as objects.
fn rendered(extra: &[&str]) -> Vec<Value> {
    parse_all(&chart_template(extra))
}

/// An object without what only Helm adds (its labels, the keep policy), and with the runs of
/// whitespace in multi-line strings made one space: kustomize re-emits a folded scalar's
/// more-indented lines with an extra blank line (the admission policy's CEL), which means the
/// same to CEL.
fn comparable(mut o: Value) -> Value {
    fn squeeze(v: &mut Value) {
        match v {
            Value::String(s) if s.contains('\n') => {
                *s = s.split_whitespace().collect::<Vec<_>>().join(" ");
            }
            Value::Array(a) => a.iter_mut().for_each(squeeze),
            Value::Object(m) => m.values_mut().for_each(squeeze),
            _ => {}
        }
    }
    let m = o["metadata"].as_object_mut().unwrap();
    for (field, helms) in [
        (
            "labels",
            &[
                "helm.sh/chart",
                "app.kubernetes.io/managed-by",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/version",
            ][..],
        ),
        ("annotations", &["helm.sh/resource-policy"][..]),
    ] {
        if let Some(map) = m.get_mut(field).and_then(Value::as_object_mut) {
            for k in helms {
                map.remove(*k);
            }
            if map.is_empty() {
                m.remove(field);
            }
        }
    }
    squeeze(&mut o);
    o
}

fn object_key(o: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&o["kind"]),
        s(&o["metadata"]["namespace"]),
        s(&o["metadata"]["name"]),
    )
}

/// The chart's files/ are the project's own: symbolic links to config/policy.yaml, the
/// monitoring rules and dashboard and the built UI extension (helm includes what they point at,
/// in a packaged chart too), and the argocd-cm entries of health-checks/ generated as `argo-drift
/// health configmap` prints them (`ARGO_DRIFT_UPDATE_CHART=1 cargo test` rewrites that one).
#[test]
fn the_charts_files_are_the_projects_own() {
    let files = repo("deploy/helm/argo-drift/files");
    for (link, source) in [
        ("policy.yaml", "config/policy.yaml"),
        (
            "prometheusrule.yaml",
            "deploy/monitoring/prometheusrule.yaml",
        ),
        (
            "grafana-dashboard.json",
            "deploy/monitoring/grafana-dashboard.json",
        ),
        (
            "extension-argo-drift.js",
            "deploy/argocd-extension/extension-argo-drift.js",
        ),
    ] {
        let path = files.join(link);
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{} is a link to {source}, not a copy",
            path.display()
        );
        assert_eq!(
            std::fs::canonicalize(&path).unwrap(),
            std::fs::canonicalize(repo(source)).unwrap()
        );
    }
    let entries = argo_drift_controller::health::configmap_entries(&repo("health-checks")).unwrap();
    let map: serde_yaml::Mapping = entries
        .into_iter()
        .map(|(k, v)| (serde_yaml::Value::String(k), serde_yaml::Value::String(v)))
        .collect();
    let argocd_cm = format!(
        "# Generated from health-checks/ (argo-drift health configmap); kept equal by\n\
         # controller/tests/install.rs: ARGO_DRIFT_UPDATE_CHART=1 cargo test rewrites it.\n{}",
        serde_yaml::to_string(&map).unwrap()
    );
    let path = files.join("argocd-cm.yaml");
    if std::env::var_os("ARGO_DRIFT_UPDATE_CHART").is_some() {
        std::fs::write(&path, &argocd_cm).unwrap();
    }
    assert!(
        std::fs::read_to_string(&path).unwrap_or_default() == argocd_cm,
        "{} is out of date: run ARGO_DRIFT_UPDATE_CHART=1 cargo test --test install",
        path.display()
    );
}

/// `helm lint` passes with the default and the maximal values; with the defaults the chart
/// renders exactly `kustomize build deploy/base` (besides Helm's labels) plus the policy
/// ConfigMap of config/policy.yaml; the maximal values turn every option on; the schema refuses
/// what is not a value or would widen the RBAC.
#[test]
fn the_chart_renders_the_kustomize_base_and_every_option() {
    let chart = repo("deploy/helm/argo-drift").display().to_string();
    for values in [vec![], vec!["-f".to_string(), maximal()]] {
        let mut args = vec!["lint", "--strict", chart.as_str()];
        args.extend(values.iter().map(String::as_str));
        let out = helm(&args, false);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
    }

    let kustomize = exported(&testenv("tools"), "ARGO_DRIFT_TEST_KUSTOMIZE");
    let built = std::process::Command::new(kustomize)
        .arg("build")
        .arg(repo("deploy/base"))
        .output()
        .unwrap();
    assert!(built.status.success());
    let base: std::collections::BTreeMap<_, _> = parse_all(&String::from_utf8_lossy(&built.stdout))
        .into_iter()
        .map(|o| (object_key(&o), comparable(o)))
        .collect();
    let mut chart_objects: std::collections::BTreeMap<_, _> = rendered(&[])
        .into_iter()
        .map(|o| (object_key(&o), comparable(o)))
        .collect();
    let policy = chart_objects
        .remove(&(
            "ConfigMap".to_string(),
            "argocd".to_string(),
            "argo-drift-policy".to_string(),
        ))
        .expect("the policy ConfigMap");
    assert_eq!(
        policy["data"]["policy.yaml"].as_str().unwrap(),
        std::fs::read_to_string(repo("config/policy.yaml"))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        "the default policy, as config/policy.yaml"
    );
    assert_eq!(
        chart_objects.keys().collect::<Vec<_>>(),
        base.keys().collect::<Vec<_>>(),
        "the chart's objects are deploy/base's"
    );
    for (key, object) in &base {
        assert_eq!(
            &chart_objects[key], object,
            "{key:?} differs from deploy/base"
        );
    }

    // Every option on.
    let max = rendered(&["-f", &maximal()]);
    let find = |kind: &str, name: &str| {
        max.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} with the maximal values"))
            .clone()
    };
    let deployment = find("Deployment", "argo-drift");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "registry.example.com/platform/argo-drift:0.1.0-rc1"
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2).any(|w| w
            == [
                "--notifications",
                "/etc/argo-drift/notifications/notifications.yaml"
            ])
            && args.windows(2).any(|w| w == ["--sharding", "true"])
            && args.ends_with(&["--resync", "10m"]),
        "{args:?}"
    );
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (name, value) in [
        ("ARGO_DRIFT_FORGE", "github"),
        (
            "ARGO_DRIFT_FORGE_TOKEN_FILE",
            "/etc/argo-drift/secrets/forge-token",
        ),
        (
            "ARGO_DRIFT_ADOPT_AUTHOR",
            "Platform Bot <platform@example.com>",
        ),
        ("ARGO_DRIFT_LOG", "debug"),
        ("ARGO_DRIFT_AUDIT_WAIT", "3s"),
    ] {
        assert!(
            env.contains(&(name.to_string(), value.to_string())),
            "{name}={value} in {env:?}"
        );
    }
    assert_eq!(
        find("PodDisruptionBudget", "argo-drift")["spec"]["minAvailable"],
        2
    );
    assert_eq!(
        find("ServiceMonitor", "argo-drift")["metadata"]["labels"]["release"],
        "prometheus"
    );
    let rules: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo("deploy/monitoring/prometheusrule.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(find("PrometheusRule", "argo-drift")["spec"], rules["spec"]);
    assert!(
        find("ConfigMap", "argo-drift-dashboard")["data"]["grafana-dashboard.json"]
            .as_str()
            .unwrap()
            .contains("argo_drift_oldest_drift_seconds")
    );
    let settings = find("ConfigMap", "argo-drift-argocd-cm");
    assert!(
        settings["data"]["resource.customizations.actions.argoproj.io_Application"]
            .as_str()
            .unwrap()
            .contains("adopt-drift"),
        "{settings:#}"
    );
    assert!(
        find("ConfigMap", "argo-drift-notifications")["data"]["notifications.yaml"]
            .as_str()
            .unwrap()
            .contains("sre-slack")
    );
    assert!(
        find("ConfigMap", "argo-drift-policy")["data"]["policy.yaml"]
            .as_str()
            .unwrap()
            .contains("mode: observe")
    );
    let read = find("ClusterRole", "argo-drift-read");
    assert!(read["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["apiGroups"][0] == "cert-manager.io"));

    // The drift view in Argo CD's UI: what deploy/argocd-extension adds to argo-drift, and the
    // Argo CD settings it patches in, as snippets.
    for doc in documents(&repo("deploy/argocd-extension/ui-api.yaml")) {
        let name = doc["metadata"]["name"].as_str().unwrap();
        let kind = doc["kind"].as_str().unwrap();
        assert_eq!(
            comparable(find(kind, name)),
            comparable(doc.clone()),
            "{kind} {name}"
        );
    }
    let patch = &documents(&repo("deploy/argocd-extension/argo-drift-patch.yaml"))[0];
    let patched = &patch["spec"]["template"]["spec"]["containers"][0];
    for e in patched["env"].as_array().unwrap() {
        assert!(
            env.contains(&(
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string()
            )),
            "{e}"
        );
    }
    assert!(container["ports"]
        .as_array()
        .unwrap()
        .contains(&patched["ports"][0]));
    assert!(
        find("ConfigMap", "argo-drift-ui-extension")["data"]["extension-argo-drift.js"]
            .as_str()
            .unwrap()
            .starts_with(
                std::fs::read_to_string(repo("deploy/argocd-extension/extension-argo-drift.js"))
                    .unwrap()
                    .trim_end()
            )
    );
    for (snippet, patch) in [
        ("argo-drift-argocd-cm", "argocd-cm-patch.yaml"),
        ("argo-drift-argocd-rbac-cm", "argocd-rbac-cm-patch.yaml"),
        (
            "argo-drift-argocd-cmd-params-cm",
            "argocd-cmd-params-cm-patch.yaml",
        ),
    ] {
        let ours = find("ConfigMap", snippet);
        let theirs = &documents(&repo(&format!("deploy/argocd-extension/{patch}")))[0];
        for (k, v) in theirs["data"].as_object().unwrap() {
            assert_eq!(&ours["data"][k], v, "{snippet} {k}");
        }
    }

    // The schema: a wrong value, an unknown key, or a write verb for the extra read rules.
    for (set, says) in [
        ("controller.replicas=0", "/controller/replicas"),
        ("controller.replica=2", "additional properties 'replica' not allowed"),
        (
            "rbac.extraReadRules[0].apiGroups[0]=x,rbac.extraReadRules[0].resources[0]=y,rbac.extraReadRules[0].verbs[0]=create",
            "/rbac/extraReadRules/0/verbs/0",
        ),
        ("adopt.forge.kind=bitbucket", "/adopt/forge/kind"),
    ] {
        let (_, err, ok) = helm_output(&["template", "argo-drift", &chart, "--set", set], false);
        assert!(!ok && err.contains(says), "--set {set}: {err}");
    }
}

/// Every object the chart renders (default and maximal values) and the self-managed examples are
/// accepted by the API server; `helm install`, `helm upgrade` (values changed) and `helm
/// uninstall` against the test cluster do what they say and leave argo-drift's namespace (its
/// records); the real Argo CD syncs the example Application, which installs the chart, to Synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_upgrades_uninstalls_and_argo_cd_syncs_it() {
    let (client, argocd, shop) = namespaces_with_crds().await;
    let mut objects = rendered(&[]);
    objects.extend(rendered(&["-f", &maximal()]));
    for f in yaml_files(&repo("examples/self-managed")) {
        objects.extend(documents(&f));
    }
    for doc in &objects {
        dry_run(&client, doc, &argocd, &shop).await;
    }

    // helm install, into this test's namespaces. The cluster-wide objects (ClusterRoles, the
    // admission policy) exist already from other tests, as shipped: the release takes them over.
    let chart = repo("deploy/helm/argo-drift").display().to_string();
    let state = format!("{argocd}-state");
    let namespaces = [
        "--namespace".to_string(),
        argocd.clone(),
        "--set".to_string(),
        format!("argocd.namespace={argocd},stateNamespace.name={state}"),
    ];
    // Helm 4 applies server-side: the objects other tests applied under their own field manager
    // are taken over (as `kubectl apply --server-side --force-conflicts` would).
    let mut install = vec![
        "install",
        "argo-drift",
        chart.as_str(),
        "--take-ownership",
        "--force-conflicts",
    ];
    install.extend(namespaces.iter().map(String::as_str));
    let said = helm(&install, true);
    assert!(said.contains("The policy's mode is dry-run"), "{said}");
    let deployments = dynamic(&client, &argocd, "apps/v1", "Deployment").await;
    let d = deployments.get("argo-drift").await.unwrap();
    assert_eq!(d.data["spec"]["replicas"], 2);
    assert_eq!(
        d.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
        "Helm"
    );
    let configmaps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), &argocd);
    let policy = configmaps.get("argo-drift-policy").await.unwrap();
    assert_eq!(
        policy.data.as_ref().unwrap()["policy.yaml"],
        std::fs::read_to_string(repo("config/policy.yaml")).unwrap()
    );
    let namespaces_api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(client.clone());
    let ns = namespaces_api.get(&state).await.unwrap();
    assert_eq!(
        ns.metadata.labels.as_ref().unwrap()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let bindings = dynamic(
        &client,
        &state,
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
    )
    .await;
    bindings.get("argo-drift-state").await.unwrap();

    // helm upgrade with values changed: three replicas, a policy of the user's.
    let values = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        values.path(),
        "controller:\n  replicas: 3\npolicy:\n  yaml: |\n    remediation:\n      mode: observe\n",
    )
    .unwrap();
    let values_path = values.path().display().to_string();
    let mut upgrade = vec![
        "upgrade",
        "argo-drift",
        chart.as_str(),
        "-f",
        &values_path,
        "--force-conflicts",
    ];
    upgrade.extend(namespaces.iter().map(String::as_str));
    let said = helm(&upgrade, true);
    assert!(said.contains("The policy's mode is observe"), "{said}");
    assert_eq!(
        deployments.get("argo-drift").await.unwrap().data["spec"]["replicas"],
        3
    );
    assert_eq!(
        configmaps
            .get("argo-drift-policy")
            .await
            .unwrap()
            .data
            .unwrap()["policy.yaml"],
        "remediation:\n  mode: observe\n"
    );
    let history = helm(
        &[
            "history",
            "argo-drift",
            "--namespace",
            &argocd,
            "-o",
            "json",
        ],
        true,
    );
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2, "{history:#}");

    // helm uninstall: the release's objects go; argo-drift's namespace (its records) stays.
    helm(&["uninstall", "argo-drift", "--namespace", &argocd], true);
    assert!(deployments.get_opt("argo-drift").await.unwrap().is_none());
    assert!(configmaps
        .get_opt("argo-drift-policy")
        .await
        .unwrap()
        .is_none());
    let kept = namespaces_api.get(&state).await.unwrap();
    assert!(
        kept.metadata.deletion_timestamp.is_none(),
        "argo-drift's namespace is kept on uninstall"
    );
    let roles = dynamic(&client, "", "rbac.authorization.k8s.io/v1", "ClusterRole").await;
    assert!(roles.get_opt("argo-drift-read").await.unwrap().is_none());

    // Self-managed: the example Application installs the chart from Git (here a repository of
    // this checkout's chart), and the real Argo CD syncs it to Synced on its own (automated).
    let real = real_argocd();
    let apps = real.fresh_apps_namespace(&client).await;
    let target = fresh_namespace(&client, "argocd").await;
    let dir = tempfile::tempdir().unwrap();
    let git = GitRepo::new(&dir.path().join("argo-drift"));
    // The chart as the repository holds it: its links, and the files they point at.
    let chart_dir = repo("deploy/helm/argo-drift");
    for f in walk(&chart_dir) {
        let relative = f.strip_prefix(repo("")).unwrap();
        let copy = git.dir.join(relative);
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        match std::fs::read_link(&f) {
            Ok(target) => {
                let source = std::fs::canonicalize(&f).unwrap();
                let source = source
                    .strip_prefix(std::fs::canonicalize(repo("")).unwrap())
                    .unwrap();
                git.write(
                    &source.display().to_string(),
                    &std::fs::read_to_string(&f).unwrap(),
                );
                std::os::unix::fs::symlink(target, &copy).unwrap();
            }
            Err(_) => git.write(
                &relative.display().to_string(),
                &std::fs::read_to_string(&f).unwrap(),
            ),
        }
    }
    let commit = git.commit("the chart");
    let mut app = documents(&repo("examples/self-managed/argo-drift.yaml"))
        .pop()
        .unwrap();
    app["metadata"]["namespace"] = json!(apps);
    app["spec"]["source"]["repoURL"] = json!(git.url());
    app["spec"]["source"]["targetRevision"] = json!(commit);
    app["spec"]["source"]["helm"]["valuesObject"]["argocd"]["namespace"] = json!(target);
    app["spec"]["source"]["helm"]["valuesObject"]["stateNamespace"] =
        json!({"name": format!("{target}-state")});
    app["spec"]["destination"]["namespace"] = json!(target);
    apply(&client, &apps, app, "argocd-server").await;
    let synced_app = real
        .wait_app(
            &client,
            &apps,
            "argo-drift",
            "the self-managed install synced",
            |a| synced(a) && a["status"]["sync"]["revision"] == commit.as_str(),
        )
        .await;
    let resources = synced_app["status"]["resources"].as_array().unwrap();
    assert!(
        resources.iter().all(|r| r["status"] == "Synced"),
        "{resources:#?}"
    );
    let installed = dynamic(&client, &target, "apps/v1", "Deployment").await;
    let d = installed.get("argo-drift").await.unwrap();
    assert_eq!(
        d.metadata.labels.as_ref().unwrap()["app.kubernetes.io/instance"],
        "argo-drift"
    );

    // No self-healing copy of the cluster-wide objects may outlive the test: the Application is
    // deleted without its cascade (the test API server never finishes deleting a namespace, so
    // Argo CD's cascade — the finalizer — would wait forever for argo-drift's).
    delete_application_keeping_resources(&client, &apps, "argo-drift").await;
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
