//! Applications on other clusters, with two real API servers: the hub (where Argo CD and
//! argo-drift run) and the spoke (`scripts/testenv.sh up --cluster spoke`), registered as Argo CD
//! registers clusters, with a cluster Secret. The spoke's live state is compared, never the
//! hub's; a cluster that does not answer, or refuses its credentials, is reported as exactly
//! that, with no action; a new cluster Secret or a rotated token takes effect without a restart.
//! Also where the Applications are: the namespaces Argo CD's settings name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use kube::api::Patch;
use serde_json::{json, Value};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

fn config_map(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  mode: {value:?}\n"
    )
}

/// An opted-in Application of `repo` at `path`, deploying to `destination` in `namespace`.
fn app_to(name: &str, repo: &str, path: &str, destination: Value, namespace: &str) -> Value {
    let mut destination = destination;
    destination["namespace"] = json!(namespace);
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "labels": {"argo-drift.io/enabled": "true"}},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo, "path": path, "targetRevision": "main"},
            "destination": destination,
            "syncPolicy": {"syncOptions": ["CreateNamespace=true"]}
        }
    })
}

/// ConfigMap `web` live in `shop` as Argo CD applied it, and a Git repository (in `dir`) with it
/// at `web/`: the repository and its commit.
async fn web_in_sync(live: &kube::Client, shop: &str, dir: &std::path::Path) -> (GitRepo, String) {
    apply_yaml(live, shop, &config_map("web", "calm"), "argocd-controller").await;
    let repo = GitRepo::new(&dir.join("repo"));
    repo.write("web/cm.yaml", &config_map("web", "calm"));
    let commit = repo.commit("web");
    (repo, commit)
}

fn change<'a>(report: &'a Value, name: &str, field: &str) -> Option<&'a Value> {
    report["resources"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)?["changes"]
        .as_array()?
        .iter()
        .find(|c| c["field"] == field)
}

/// The real Argo CD syncs two apps to the spoke, one by server URL and one by cluster name;
/// argo-drift compares the spoke's objects (the hub has none of them) and sees an out-of-band
/// change made on the spoke.
#[tokio::test]
async fn apps_on_another_cluster_are_compared_with_that_clusters_live_state() {
    let client = client().await;
    let spoke = spoke().await;
    let real = real_argocd();
    // One Secret for the spoke in Argo CD's namespace, shared by the tests that use it.
    apply(
        &client,
        &real.namespace,
        spoke.secret(
            &real.namespace,
            "argo-drift-test-spoke",
            "spoke",
            &spoke.token,
        ),
        "argocd-cli",
    )
    .await;
    let apps = real.fresh_apps_namespace(&client).await;
    let shop = format!("shop-{:x}", rand_u32());
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("repo"));
    repo.write("by-server/cm.yaml", &config_map("by-server", "calm"));
    repo.write("by-name/cm.yaml", &config_map("by-name", "calm"));
    repo.commit("two apps for the spoke");
    let destinations = [
        ("by-server", json!({"server": spoke.server})),
        ("by-name", json!({"name": "spoke"})),
    ];
    for (name, destination) in &destinations {
        let app = app_to(name, &repo.url(), name, destination.clone(), &shop);
        apply(&client, &apps, app, "argocd-server").await;
        real.sync_and_wait(&client, &apps, name).await;
    }
    let controller = Running::start_with_real_argocd(
        &admin_config().await,
        &apps,
        &["--cluster-probe-interval", "1s"],
    )
    .await;
    for (name, _) in &destinations {
        let (_, r) = wait_report(&client, &apps, name, "a report in sync", WAIT, |r| {
            r["summary"]["synced"] == 1
        })
        .await;
        assert_eq!(r["summary"]["missing"], 0, "{r:#}");
        assert!(r["error"].is_null(), "{r:#}");
    }
    // The hub has none of it: what was compared is the spoke's.
    let hub_namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(client.clone());
    assert!(hub_namespaces.get_opt(&shop).await.unwrap().is_none());

    let configmaps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(spoke.client.clone(), &shop);
    let edited = Instant::now();
    configmaps
        .patch(
            "by-name",
            &manager("kubectl-edit"),
            &Patch::Merge(json!({"data": {"mode": "yolo"}})),
        )
        .await
        .unwrap();
    let c = wait_for("the spoke's change in the report", WAIT, || async {
        let (_, r) = report(&client, &apps, "by-name").await?;
        change(&r, "by-name", "data.mode").cloned()
    })
    .await;
    eprintln!("spoke change reported after {:?}", edited.elapsed());
    assert_eq!(
        (c["desired"].clone(), c["live"].clone()),
        (json!("calm"), json!("yolo"))
    );
    assert_eq!(c["manager"], "kubectl-edit", "{c:#}");
    let (_, other) = report(&client, &apps, "by-server").await.unwrap();
    assert_eq!(other["summary"]["synced"], 1, "{other:#}");

    let (_, metrics) = controller.get("/metrics").await;
    let up = format!(
        "argo_drift_cluster_up{{cluster=\"spoke\",server=\"{}\"}} 1",
        spoke.server
    );
    assert!(metrics.contains(&up), "{up} not in\n{metrics}");
    let (_, ready) = controller.get("/readyz").await;
    assert!(
        ready.contains(&format!("cluster spoke ({}): reachable", spoke.server)),
        "{ready}"
    );
    controller.stop().await;
}

/// A cluster whose API server does not answer: its app's report says so, nothing is compared
/// (the hub's objects of the same names are not the app's), and nothing is done, though the app
/// is in enforce mode and Argo CD is at hand.
#[tokio::test]
async fn an_unreachable_cluster_is_reported_as_such_and_nothing_is_done() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let closed = free_port();
    let server = format!("https://127.0.0.1:{closed}");
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cluster-gone",
                     "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
        "stringData": {"name": "gone", "server": server,
                       "config": json!({"bearerToken": "t0k3n-never-printed", "tlsClientConfig": {"insecure": true}}).to_string()}
    });
    apply(&client, &argocd, secret, "argocd-cli").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("repo"));
    repo.write("web/cm.yaml", &config_map("web", "calm"));
    let commit = repo.commit("web");
    // The same object on the hub, drifted: were the hub compared, it would be healed.
    apply_yaml(&client, &shop, &config_map("web", "yolo"), "kubectl-edit").await;
    let mut app = app_to("web", &repo.url(), "web", json!({"name": "gone"}), &shop);
    app["metadata"]["labels"]["argo-drift.io/mode"] = json!("enforce");
    app["status"] = json!({"sync": {"status": "Synced", "revision": commit}});
    apply(&client, &argocd, app, "argocd-server").await;
    let fake = FakeArgoCd::start(client.clone(), "fake-token", &argocd)
        .await
        .unwrap();
    let controller = Running::start_with_fake(
        &admin_config().await,
        &argocd,
        &fake.url,
        "fake-token",
        &["--cluster-probe-interval", "1s"],
    )
    .await;
    let (_, r) = wait_report(&client, &argocd, "web", "the failure", WAIT, |r| {
        r["error"].is_string()
    })
    .await;
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("cluster gone ({server}) is unreachable"))
            && error.contains("no action taken"),
        "{error}"
    );
    assert!(!error.contains("t0k3n"), "{error}");
    assert_eq!(r["summary"]["missing"], 0, "{r:#}");
    assert!(r["resources"].as_array().unwrap().is_empty(), "{r:#}");
    // The Event is written after the report.
    wait_for("the DriftAnalysisFailed Event", WAIT, || async {
        events(&client, &argocd, "web")
            .await
            .iter()
            .any(|(reason, note)| {
                reason == "DriftAnalysisFailed" && note.starts_with("cluster_unreachable:")
            })
            .then_some(())
    })
    .await;
    let (_, metrics) = controller.get("/metrics").await;
    let down = format!("argo_drift_cluster_up{{cluster=\"gone\",server=\"{server}\"}} 0");
    assert!(metrics.contains(&down), "{down} not in\n{metrics}");
    // A few probes later, still nothing asked of Argo CD.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asked: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .filter(|r| !r.starts_with("GET "))
        .collect();
    assert!(asked.is_empty(), "argo-drift acted: {asked:?}");
    controller.stop().await;
}

/// The app names a cluster no Secret has yet; the Secret arrives with a wrong token, then the
/// token is rotated: each step shows in the report without a restart.
#[tokio::test]
async fn a_new_cluster_secret_and_a_rotated_token_take_effect_without_a_restart() {
    let client = client().await;
    let spoke = spoke().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&spoke.client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let (repo, commit) = web_in_sync(&spoke.client, &shop, dir.path()).await;
    let mut app = app_to("web", &repo.url(), "web", json!({"name": "late"}), &shop);
    app["status"] = json!({"sync": {"status": "Synced", "revision": commit}});
    apply(&client, &argocd, app, "argocd-server").await;
    let controller = Running::start(
        &admin_config().await,
        &argocd,
        &["--cluster-probe-interval", "1s"],
    )
    .await;
    let failure = |what: &'static str| {
        let client = client.clone();
        let argocd = argocd.clone();
        async move {
            let (_, r) = wait_report(&client, &argocd, "web", what, WAIT, |r| {
                r["error"].as_str().is_some_and(|e| e.contains(what))
            })
            .await;
            r["error"].as_str().unwrap().to_string()
        }
    };
    failure("there are no clusters with this name: late").await;

    apply(
        &client,
        &argocd,
        spoke.secret(&argocd, "cluster-late", "late", "not-the-token"),
        "argocd-cli",
    )
    .await;
    let error = failure("is unauthorised").await;
    assert!(
        error.starts_with(&format!("cluster late ({}) is unauthorised", spoke.server)),
        "{error}"
    );
    assert!(!error.contains("not-the-token"), "{error}");

    apply(
        &client,
        &argocd,
        spoke.secret(&argocd, "cluster-late", "late", &spoke.token),
        "argocd-cli",
    )
    .await;
    let (_, r) = wait_report(&client, &argocd, "web", "the report in sync", WAIT, |r| {
        r["error"].is_null() && r["summary"]["synced"] == 1
    })
    .await;
    assert_eq!(r["summary"]["missing"], 0, "{r:#}");
    controller.stop().await;
}

/// The other ways Argo CD reaches a cluster: a TLS client certificate, and an exec credential
/// plugin (`execProviderConfig`, as EKS/GKE/AKS installs use), each compared like a token's.
#[tokio::test]
async fn client_certificates_and_exec_plugins_reach_the_cluster() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let client = client().await;
    let spoke = spoke().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&spoke.client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = spoke.client_certificate(dir.path(), "argo-drift-test-cert");
    // An exec plugin as client-go runs them: it prints an ExecCredential with a token.
    let plugin = dir.path().join("credential-plugin");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\n[ \"$CLUSTER\" = spoke ] || exit 3\necho '{{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{}\"}}}}'\n",
            spoke.token
        ),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let configs = [
        (
            "cert",
            json!({"tlsClientConfig": {"caData": spoke.ca_data, "certData": b64(&cert), "keyData": b64(&key)}}),
        ),
        (
            "exec",
            json!({"tlsClientConfig": {"caData": spoke.ca_data},
                   "execProviderConfig": {"command": plugin.to_str().unwrap(),
                                          "apiVersion": "client.authentication.k8s.io/v1beta1",
                                          "env": {"CLUSTER": "spoke"}}}),
        ),
    ];
    let repo = GitRepo::new(&dir.path().join("repo"));
    for (name, _) in &configs {
        repo.write(&format!("{name}/cm.yaml"), &config_map(name, "calm"));
        apply_yaml(
            &spoke.client,
            &shop,
            &config_map(name, "calm"),
            "argocd-controller",
        )
        .await;
    }
    let commit = repo.commit("apps");
    // One cluster Secret for the server at a time (Argo CD keys clusters by server), each
    // reaching the spoke its own way.
    for (name, config) in &configs {
        apply(
            &client,
            &argocd,
            spoke.secret_with(&argocd, &format!("cluster-{name}"), name, config.clone()),
            "argocd-cli",
        )
        .await;
        let mut app = app_to(name, &repo.url(), name, json!({"name": name}), &shop);
        app["status"] = json!({"sync": {"status": "Synced", "revision": commit}});
        apply(&client, &argocd, app, "argocd-server").await;
        let controller = Running::start(
            &admin_config().await,
            &argocd,
            &["--cluster-probe-interval", "1s"],
        )
        .await;
        let (_, r) = wait_report(&client, &argocd, name, "a report in sync", WAIT, |r| {
            r["error"].is_null() && r["summary"]["synced"] == 1
        })
        .await;
        assert_eq!(r["summary"]["missing"], 0, "{name}: {r:#}");
        controller.stop().await;
        kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &argocd)
            .delete(&format!("cluster-{name}"), &Default::default())
            .await
            .unwrap();
    }
}

/// Without `--app-namespace`, the Applications watched are Argo CD's: its namespace and its
/// argocd-cmd-params-cm `application.namespaces` (globs and regular expressions, as Argo CD
/// matches them); an Application elsewhere is not Argo CD's to reconcile, nor argo-drift's.
#[tokio::test]
async fn the_watched_namespaces_are_argo_cds_application_namespaces() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let team = format!("team-{:x}", rand_u32());
    let matching = format!("{team}-a");
    let elsewhere = format!("other-{:x}", rand_u32());
    for ns in [&matching, &elsewhere] {
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
        let n = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        api.create(&Default::default(), &n).await.unwrap();
    }
    apply(
        &client,
        &argocd,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "argocd-cmd-params-cm"},
               "data": {"application.namespaces": format!("{team}-*, /^never$/")}}),
        "argocd-cli",
    )
    .await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let (repo, commit) = web_in_sync(&client, &shop, dir.path()).await;
    for ns in [&matching, &elsewhere] {
        let mut app = app_to(
            "web",
            &repo.url(),
            "web",
            json!({"server": "https://kubernetes.default.svc"}),
            &shop,
        );
        app["status"] = json!({"sync": {"status": "Synced", "revision": commit}});
        apply(&client, ns, app, "argocd-server").await;
    }
    // Reports go to the controller's state namespace (Argo CD's here), labelled with the app's.
    let controller = Running::start_beside(
        &admin_config().await,
        "",
        &argocd,
        &["--policy-reload", "500ms", "--gc-interval", "1s"],
    )
    .await;
    let (cm, r) = wait_report(&client, &argocd, "web", "the report", WAIT, |r| {
        r["summary"]["synced"] == 1
    })
    .await;
    assert!(r["error"].is_null(), "{r:#}");
    assert_eq!(
        cm.metadata.labels.unwrap()["argo-drift.io/app-namespace"],
        matching
    );
    // The other one never gets a report (its first analysis would have come with the first).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reports: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), &argocd);
    let selector = format!("argo-drift.io/report=true,argo-drift.io/app-namespace={elsewhere}");
    let listed = reports
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert!(listed.items.is_empty());

    // Argo CD's list widened while argo-drift runs: the other namespace's app is analysed
    // without a restart; narrowed again, it is let go and its report deleted.
    let params = |list: String| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "argocd-cmd-params-cm"},
               "data": {"application.namespaces": list}})
    };
    apply(
        &client,
        &argocd,
        params(format!("{team}-*, {elsewhere}")),
        "argocd-cli",
    )
    .await;
    wait_for("the other namespace's report", WAIT, || async {
        let listed = reports
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .unwrap();
        (!listed.items.is_empty()).then_some(())
    })
    .await;
    apply(&client, &argocd, params(format!("{team}-*")), "argocd-cli").await;
    wait_for("the other namespace's report deleted", WAIT, || async {
        let listed = reports
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .unwrap();
        listed.items.is_empty().then_some(())
    })
    .await;
    controller.stop().await;
}
