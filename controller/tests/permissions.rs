//! What the shipped ServiceAccounts may do, proven against the real API server with their own
//! tokens: the RBAC of deploy/base and deploy/hooks and the admission policy of
//! deploy/base/admission-policy.yaml, installed as shipped — and the same RBAC and policy as the
//! Helm chart renders them (deploy/helm/argo-drift). An application namespace's hooks
//! write their own records and nothing else: not Argo CD's settings, not another app's audit
//! trail, and no Secret of Argo CD's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::*;

fn shipped(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)).unwrap()
}

/// How the RBAC and the admission policy under test are installed: the manifests of deploy/base,
/// or the Helm chart's (deploy/helm/argo-drift) rendered with its defaults.
#[derive(Debug, Clone, Copy)]
enum Install {
    Kustomize,
    Chart,
}

/// deploy/base's `file` (rbac.yaml, hooks-rbac.yaml, admission-policy.yaml) as `install` ships it.
fn installed(file: &str, install: Install) -> String {
    match install {
        Install::Kustomize => shipped(&format!("deploy/base/{file}")),
        Install::Chart => chart_template(&["--show-only", &format!("templates/{file}")]),
    }
}

/// The API server's refusal, as (403, message): RBAC refuses with 403, the admission policy
/// with 403 (`reason: Forbidden`), or 422 while an older version of it is still loaded.
fn refused<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 || status.code == 422 => {
            (403, status.message.clone())
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn record(name: &str, hook_namespace: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {
        "app.kubernetes.io/managed-by": "argo-drift",
        "argo-drift.io/hook-namespace": hook_namespace,
        "audit-type": "drift-remediation"}},
        "data": {"audit.json": "{}"}}))
    .unwrap()
}

/// A fresh Argo CD namespace with its settings (argocd-cm, argocd-rbac-cm) and a cluster Secret.
async fn argo_cd_namespace(client: &kube::Client) -> String {
    let argocd = fresh_namespace(client, "argocd").await;
    for (name, data) in [
        ("argocd-cm", json!({})),
        ("argocd-rbac-cm", json!({"policy.default": "role:readonly"})),
    ] {
        apply(
            client,
            &argocd,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}),
            "argocd-server",
        )
        .await;
    }
    apply(
        client,
        &argocd,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cluster-prod",
            "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
            "stringData": {"server": "https://prod.example.com", "config": "{\"bearerToken\":\"t\"}"}}),
        "argocd-server",
    )
    .await;
    argocd
}

/// deploy/base/rbac.yaml in this test's Argo CD namespace and a fresh namespace for argo-drift's
/// own state, which it returns (the cluster-wide binding renamed after the Argo CD namespace, so
/// that parallel runs do not rebind one another's).
async fn install_controller_rbac(client: &kube::Client, argocd: &str, install: Install) -> String {
    let state = fresh_namespace(client, "argo-drift").await;
    let rbac = installed("rbac.yaml", install)
        .replace("namespace: argocd", &format!("namespace: {argocd}"))
        .replace("namespace: argo-drift", &format!("namespace: {state}"));
    for doc in serde_yaml::Deserializer::from_str(&rbac) {
        let mut v = <Value as serde::Deserialize>::deserialize(doc).unwrap();
        if v.is_null() {
            continue;
        }
        if v["kind"] == "ClusterRoleBinding" {
            v["metadata"]["name"] = json!(format!("argo-drift-read-{argocd}"));
        }
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        apply(client, &ns, v, "argo-drift-tests").await;
    }
    state
}

/// `api`'s identity (in Argo CD's namespace) may neither change argocd-rbac-cm (made admin by
/// default) nor delete argocd-cm: argo-drift's ServiceAccounts have no ConfigMap right there.
async fn argo_cds_settings_refused(api: &Api<ConfigMap>) {
    let (code, message) = refused(
        api.patch(
            "argocd-rbac-cm",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"policy.default": "role:admin"}})),
        )
        .await,
    );
    assert_eq!(code, 403, "{message}");
    let (code, _) = refused(api.delete("argocd-cm", &DeleteParams::default()).await);
    assert_eq!(code, 403);
}

/// Admission policies take a moment to load: wait until `api`'s identity is refused an
/// unmarked ConfigMap.
async fn policy_in_force(api: &Api<ConfigMap>) {
    wait_for(
        "the admission policy in force",
        std::time::Duration::from_secs(30),
        || async {
            let probe: ConfigMap =
                serde_json::from_value(json!({"metadata": {"generateName": "probe-"}})).unwrap();
            api.create(&PostParams::default(), &probe)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_namespaces_hooks_write_their_own_records_and_nothing_else() {
    hooks_write_their_own_records(Install::Kustomize).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_charts_rbac_the_hooks_write_their_own_records_and_nothing_else() {
    hooks_write_their_own_records(Install::Chart).await;
}

async fn hooks_write_their_own_records(install: Install) {
    let client = client().await;
    // The admission policy and the hooks' ClusterRoles, installed as shipped (cluster-wide and
    // idempotent; they only concern ServiceAccounts named argo-drift and argo-drift-hooks).
    for file in ["admission-policy.yaml", "hooks-rbac.yaml"] {
        apply_yaml(
            &client,
            "default",
            &installed(file, install),
            "argo-drift-tests",
        )
        .await;
    }
    // Argo CD's namespace with its settings and a cluster Secret, and two app namespaces with
    // the hooks' identity bound as deploy/hooks binds it.
    let argocd = argo_cd_namespace(&client).await;
    // argo-drift's own namespace, where the hooks write their records.
    let records = fresh_namespace(&client, "argo-drift").await;
    let mut hooks = Vec::new();
    for team in ["team-a", "team-b"] {
        let ns = fresh_namespace(&client, team).await;
        let rbac = shipped("deploy/hooks/rbac.yaml")
            .replace("APP_NAMESPACE", &ns)
            .replace("namespace: argocd", &format!("namespace: {argocd}"))
            .replace("namespace: argo-drift", &format!("namespace: {records}"));
        for doc in serde_yaml::Deserializer::from_str(&rbac) {
            let mut v = <Value as serde::Deserialize>::deserialize(doc).unwrap();
            if v.is_null() {
                continue;
            }
            if v["kind"] == "RoleBinding" && v["metadata"]["namespace"].is_string() {
                // The records binding in argo-drift's namespace, the apps one in Argo CD's.
                let target = v["metadata"]["namespace"].as_str().unwrap().to_string();
                v["subjects"][0]["namespace"] = json!(ns);
                apply(&client, &target, v, "argo-drift-tests").await;
            } else if v["kind"] == "ClusterRoleBinding" {
                v["subjects"][0]["namespace"] = json!(ns);
                apply(&client, "", v, "argo-drift-tests").await;
            } else {
                apply(&client, &ns, v, "argo-drift-tests").await;
            }
        }
        hooks.push((
            ns.clone(),
            service_account_client(&client, &ns, "argo-drift-hooks").await,
        ));
    }
    let (a_ns, a) = &hooks[0];
    let (_, b) = &hooks[1];
    let as_a: Api<ConfigMap> = Api::namespaced(a.clone(), &records);
    let as_b: Api<ConfigMap> = Api::namespaced(b.clone(), &records);

    policy_in_force(&as_a).await;
    as_a.create(&PostParams::default(), &record("audit-a", a_ns))
        .await
        .unwrap();
    // ... and change it again.
    as_a.patch(
        "audit-a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"outcome.json": "{}"}})),
    )
    .await
    .unwrap();

    // Argo CD's settings: the hooks may read argocd-cm (PreSync takes Argo CD's settings as its
    // baseline; it holds no secret) but write no ConfigMap in Argo CD's namespace.
    let in_argocd: Api<ConfigMap> = Api::namespaced(a.clone(), &argocd);
    in_argocd.get("argocd-cm").await.unwrap();
    argo_cds_settings_refused(&in_argocd).await;
    // In argo-drift's namespace, a ConfigMap that is not argo-drift's stays out of reach, and
    // labelling it as ours does not help: the old object decides.
    apply_yaml(
        &client,
        &records,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: someone-elses\n",
        "kubectl",
    )
    .await;
    let (code, _) = refused(
        as_a.patch(
            "someone-elses",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "argo-drift"}}}),
            ),
        )
        .await,
    );
    assert_eq!(code, 403);
    // A ConfigMap without argo-drift's mark cannot be created either.
    let plain: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "plain"}})).unwrap();
    let (code, _) = refused(as_a.create(&PostParams::default(), &plain).await);
    assert_eq!(code, 403);

    // Another app's hooks cannot alter team-a's audit trail, nor write in its name.
    let (code, message) = refused(
        as_b.patch(
            "audit-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"audit.json": "{\"forged\":true}"}})),
        )
        .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains("may change only their own records"),
        "{message}"
    );
    let (code, _) = refused(as_b.delete("audit-a", &DeleteParams::default()).await);
    assert_eq!(code, 403);
    let (code, _) = refused(
        as_b.create(&PostParams::default(), &record("forged", a_ns))
            .await,
    );
    assert_eq!(code, 403);

    // No Secret of Argo CD's: its cluster Secrets hold bearer tokens for every cluster.
    let secrets: Api<Secret> = Api::namespaced(a.clone(), &argocd);
    let (code, _) = refused(secrets.get("cluster-prod").await);
    assert_eq!(code, 403);
    // The app's own Secrets, in its namespace, it may read (PreSync compares them).
    apply(
        &client,
        a_ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"p": "x"}}),
        "argocd-controller",
    )
    .await;
    Api::<Secret>::namespaced(a.clone(), a_ns)
        .get("db")
        .await
        .unwrap();
}

/// The controller's ServiceAccount, with the RBAC of deploy/base/rbac.yaml and the admission
/// policy as shipped: it reads what it compares (Applications, the apps' objects, Argo CD's
/// cluster Secrets, which it needs to reach other clusters) and writes its own reports and
/// Events and Applications' patches in Argo CD's namespace; it cannot write Argo CD's settings,
/// any Secret, an application's objects, a Pod, or any RBAC (no way to escalate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_reads_what_it_compares_and_writes_only_its_own_objects() {
    controller_permissions(Install::Kustomize).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_charts_rbac_the_controller_writes_only_its_own_objects() {
    controller_permissions(Install::Chart).await;
}

async fn controller_permissions(install: Install) {
    let client = client().await;
    apply_yaml(
        &client,
        "default",
        &installed("admission-policy.yaml", install),
        "argo-drift-tests",
    )
    .await;
    let argocd = argo_cd_namespace(&client).await;
    let shop = fresh_namespace(&client, "shop").await;
    let state = install_controller_rbac(&client, &argocd, install).await;
    apply_yaml(
        &client,
        &shop,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"1\"\n",
        "argocd-controller",
    )
    .await;
    let controller = service_account_client(&client, &argocd, "argo-drift").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(controller.clone(), &argocd);
    let state_configmaps: Api<ConfigMap> = Api::namespaced(controller.clone(), &state);

    policy_in_force(&state_configmaps).await;

    // Its job: read, report, patch Applications.
    let secrets: Api<Secret> = Api::namespaced(controller.clone(), &argocd);
    secrets.get("cluster-prod").await.unwrap();
    Api::<ConfigMap>::namespaced(controller.clone(), &shop)
        .get("web")
        .await
        .unwrap();
    let report: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "argo-drift-report-shop.web",
        "labels": {"app.kubernetes.io/managed-by": "argo-drift", "argo-drift.io/report": "true"}},
        "data": {"report.json": "{}"}}))
        .unwrap();
    state_configmaps
        .create(&PostParams::default(), &report)
        .await
        .unwrap();
    // No ConfigMap of its own in Argo CD's namespace: RBAC refuses it there before the admission
    // policy is asked.
    let (code, _) = refused(configmaps.create(&PostParams::default(), &report).await);
    assert_eq!(code, 403);

    // Its own state (guardrail state, audit records, Lease) in its own namespace; no Lease
    // among Argo CD's objects.
    let audit: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "argo-drift-audit-web-1",
        "labels": {"app.kubernetes.io/managed-by": "argo-drift"}}}))
        .unwrap();
    state_configmaps
        .create(&PostParams::default(), &audit)
        .await
        .unwrap();
    let lease: k8s_openapi::api::coordination::v1::Lease =
        serde_json::from_value(json!({"metadata": {"name": "argo-drift"}})).unwrap();
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(controller.clone(), &state)
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
    let (code, _) = refused(
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(controller.clone(), &argocd)
            .create(&PostParams::default(), &lease)
            .await,
    );
    assert_eq!(code, 403);
    // Sharded, it lists the replicas' Leases and holds its own with server-side apply, as
    // kube-lease-manager does.
    let leases =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(controller.clone(), &state);
    leases.list(&Default::default()).await.unwrap();
    leases
        .patch(
            "argo-drift",
            &kube::api::PatchParams::apply("kube-lease-manager-replica-a"),
            &kube::api::Patch::Apply(json!({"apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease", "spec": {"holderIdentity": "replica-a"}})),
        )
        .await
        .unwrap();

    // Argo CD's settings: refused (RBAC gives it no ConfigMap there).
    argo_cds_settings_refused(&configmaps).await;
    // No Secret write, anywhere.
    let (code, _) = refused(
        secrets
            .patch(
                "cluster-prod",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"server": "https://evil.example.com"}})),
            )
            .await,
    );
    assert_eq!(code, 403);
    // The application's own objects are Argo CD's to change (healing is a sync).
    let (code, _) = refused(
        Api::<ConfigMap>::namespaced(controller.clone(), &shop)
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"a": "2"}})),
            )
            .await,
    );
    assert_eq!(code, 403);
    // No Pod to run code as someone else, no RBAC to grant itself more.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(controller.clone(), &argocd);
    let pod = serde_json::from_value(json!({"metadata": {"name": "x"},
        "spec": {"containers": [{"name": "x", "image": "busybox"}]}}))
    .unwrap();
    let (code, _) = refused(pods.create(&PostParams::default(), &pod).await);
    assert_eq!(code, 403);
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
        Api::all(controller.clone());
    let binding = serde_json::from_value(json!({"metadata": {"name": format!("escalate-{argocd}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "argo-drift", "namespace": argocd}]}))
    .unwrap();
    let (code, _) = refused(bindings.create(&PostParams::default(), &binding).await);
    assert_eq!(code, 403);
}

/// The controller, running as its shipped ServiceAccount, does not analyse (nor act on) the
/// Applications of a namespace where it may not write their reports; once the namespace binds
/// ClusterRole argo-drift-report as deploy/README.md says, their reports appear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_application_is_analysed_where_its_report_cannot_be_written() {
    let client = client().await;
    apply_yaml(
        &client,
        "default",
        &shipped("deploy/base/admission-policy.yaml"),
        "argo-drift-tests",
    )
    .await;
    let argocd = argo_cd_namespace(&client).await;
    let state = install_controller_rbac(&client, &argocd, Install::Kustomize).await;
    let team = fresh_namespace(&client, "team").await;
    let shop = fresh_namespace(&client, "shop").await;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"1\"\n";
    apply_yaml(&client, &shop, cm, "argocd-controller").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("repo"));
    repo.write("web/cm.yaml", cm);
    let commit = repo.commit("web");
    apply(
        &client,
        &team,
        application("web", &repo.url(), "web", &shop, Some(&commit)),
        "argocd-server",
    )
    .await;
    // Argo CD manages the team's namespace too ("apps in any namespace").
    apply(
        &client,
        &argocd,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cmd-params-cm"},
            "data": {"application.namespaces": team}}),
        "argocd-server",
    )
    .await;
    let identity = service_account_config(&client, &argocd, "argo-drift").await;
    let controller = Running::start_beside(
        &identity,
        "",
        &argocd,
        &["--resync", "1s", "--state-namespace", &state],
    )
    .await;
    wait_for(
        "the refusal counted",
        std::time::Duration::from_secs(30),
        || async {
            let (_, metrics) = controller.get("/metrics").await;
            metrics
                .contains("argo_drift_reconcile_errors_total{category=\"report_forbidden\"}")
                .then_some(())
        },
    )
    .await;
    // Its report, in argo-drift's own namespace, says why and what to do; nothing was compared.
    let (_, r) = wait_report(
        &client,
        &state,
        "web",
        "the report naming the refusal",
        std::time::Duration::from_secs(30),
        |r| r["error"].is_string(),
    )
    .await;
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("Events in {team}")) && error.contains("argo-drift-report"),
        "{error}"
    );
    assert_eq!(r["summary"]["resources"], 0, "{r:#}");
    // The binding deploy/README.md shows: the app is analysed and reported.
    apply(
        &client,
        &team,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "argo-drift-report"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "argo-drift-report"},
            "subjects": [{"kind": "ServiceAccount", "name": "argo-drift", "namespace": argocd}]}),
        "argo-drift-tests",
    )
    .await;
    wait_report(
        &client,
        &state,
        "web",
        "the report once allowed",
        std::time::Duration::from_secs(30),
        |r| r["summary"]["synced"] == 1,
    )
    .await;
    controller.stop().await;
}
