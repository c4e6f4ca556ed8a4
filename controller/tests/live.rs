//! The live controller against a real kube-apiserver: Git in, out-of-band changes by other field
//! managers, reports, Events and metrics out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::*;

const WAIT: Duration = Duration::from_secs(20);

/// Apply Git's objects as Argo CD's server-side apply does: under `argocd-controller`, with the
/// tracking annotation.
async fn sync_like_argocd(client: &kube::Client, app: &str, ns: &str, files: &[(&str, &str)]) {
    for (path, text) in files {
        if !path.ends_with(".yaml") {
            continue;
        }
        let mut v: Value = serde_yaml::from_str(text).unwrap();
        if v.get("kind").is_none() {
            continue; // no manifest: Argo CD applies nothing of it
        }
        let (group, kind, name) = (
            v["apiVersion"]
                .as_str()
                .unwrap()
                .split_once('/')
                .map(|(g, _)| g)
                .unwrap_or("")
                .to_string(),
            v["kind"].as_str().unwrap().to_string(),
            v["metadata"]["name"].as_str().unwrap().to_string(),
        );
        v["metadata"]["annotations"] =
            json!({"argocd.argoproj.io/tracking-id": format!("{app}:{group}/{kind}:{ns}/{name}")});
        apply(client, ns, v, "argocd-controller").await;
    }
}

/// The WEB app (Deployment, Service, ConfigMap, Secret) from a fresh Git repository, applied
/// as Argo CD syncs it, in fresh namespaces: (client, Argo CD's namespace, the app's, the
/// repository's directory, the repository, its commit). Application `web` is not yet created.
async fn web_app() -> (
    kube::Client,
    String,
    String,
    tempfile::TempDir,
    GitRepo,
    String,
) {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("shop.git"));
    for (path, text) in WEB {
        repo.write(path, text);
    }
    let commit = repo.commit("web");
    sync_like_argocd(&client, "web", &shop, WEB).await;
    (client, argocd, shop, dir, repo, commit)
}

fn resource<'a>(report: &'a Value, kind: &str, name: &str) -> &'a Value {
    report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind && r["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not in the report: {report:#}"))
}

fn change<'a>(r: &'a Value, field: &str) -> Option<&'a Value> {
    r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == field)
}

async fn wait_change(
    client: &kube::Client,
    ns: &str,
    app: &str,
    kind: &str,
    name: &str,
    field: &str,
) -> Value {
    wait_for(
        &format!("{kind} {name} {field} in the report"),
        WAIT,
        || async {
            let (_, report) = report(client, ns, app).await?;
            let r = resource(&report, kind, name);
            change(r, field).cloned()
        },
    )
    .await
}

async fn wait_event(
    client: &kube::Client,
    ns: &str,
    app: &str,
    reason: &str,
    contains: &str,
) -> String {
    wait_for(
        &format!("Event {reason} mentioning {contains}"),
        WAIT,
        || async {
            events(client, ns, app)
                .await
                .into_iter()
                .find(|(r, note)| r == reason && note.contains(contains))
                .map(|(_, note)| note)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_band_changes_are_reported_with_severity_manager_and_events_and_reverting_resolves_them(
) {
    let (client, argocd, shop, _dir, repo, commit) = web_app().await;
    let apps: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &argocd,
        &argo_drift_controller::application::api_resource(),
    );
    let mut app = application("web", &repo.url(), "apps/web", &shop, Some(&commit));
    app["spec"]["source"]["directory"] = json!({"recurse": true});
    apply(&client, &argocd, app, "argocd-server").await;

    let controller = Running::start(&admin_config().await, &argocd, &[]).await;

    // Pure server defaults (strategy, clusterIP, sessionAffinity, dnsPolicy, ...) are no drift.
    let (cm, first) = wait_for("the first report", WAIT, || async {
        report(&client, &argocd, "web").await
    })
    .await;
    assert_eq!(severity_label(&cm), "none", "{first:#}");
    assert_eq!(first["summary"]["resources"], 4, "{first:#}");
    assert_eq!(first["summary"]["synced"], 4, "{first:#}");
    assert_eq!(first["revision"], commit.as_str());
    assert_eq!(
        cm.metadata.labels.as_ref().unwrap()["argo-drift.io/report"],
        "true"
    );
    assert_eq!(
        cm.metadata.labels.as_ref().unwrap()["argo-drift.io/app"],
        "web"
    );
    assert!(
        events(&client, &argocd, "web").await.is_empty(),
        "no drift, no Event"
    );
    let (status, _) = wait_for("readiness", WAIT, || async {
        let r = controller.get("/readyz").await;
        (r.0 == 200).then_some(r)
    })
    .await;
    assert_eq!(status, 200);

    let deployments = dynamic(&client, &shop, "apps/v1", "Deployment").await;
    // kubectl scale
    merge(
        &deployments,
        "web",
        "kubectl-scale",
        json!({"spec": {"replicas": 5}}),
    )
    .await;
    let c = wait_change(
        &client,
        &argocd,
        "web",
        "Deployment",
        "web",
        "spec.replicas",
    )
    .await;
    assert_eq!(
        (c["desired"].clone(), c["live"].clone()),
        (json!(2), json!(5))
    );
    assert_eq!(c["severity"], "low");
    assert_eq!(c["manager"], "kubectl-scale");
    wait_event(&client, &argocd, "web", "DriftDetected", "spec.replicas").await;

    // kubectl set image
    deployments
        .patch(
            "web",
            &manager("kubectl-set"),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.26-evil"}]}}}})),
        )
        .await
        .unwrap();
    let c = wait_change(
        &client,
        &argocd,
        "web",
        "Deployment",
        "web",
        "spec.template.spec.containers[name=nginx].image",
    )
    .await;
    assert_eq!(c["live"], "nginx:1.26-evil");
    assert_eq!(c["severity"], "high");
    assert_eq!(c["manager"], "kubectl-set");

    // kubectl edit adds an environment variable
    deployments
        .patch(
            "web",
            &manager("kubectl-edit"),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "env": [{"name": "DEBUG", "value": "1"}]}]}}}})),
        )
        .await
        .unwrap();
    let c = wait_change(
        &client,
        &argocd,
        "web",
        "Deployment",
        "web",
        "spec.template.spec.containers[name=nginx].env[name=DEBUG]",
    )
    .await;
    assert_eq!(c["op"], "add");
    assert_eq!(c["severity"], "medium");
    assert_eq!(c["manager"], "kubectl-edit");

    // Service type change: the nodePort the server allocates is not drift of its own.
    let services = dynamic(&client, &shop, "v1", "Service").await;
    merge(
        &services,
        "web",
        "kubectl-edit",
        json!({"spec": {"type": "NodePort"}}),
    )
    .await;
    let c = wait_change(&client, &argocd, "web", "Service", "web", "spec.type").await;
    assert_eq!(
        (c["live"].clone(), c["severity"].clone()),
        (json!("NodePort"), json!("medium"))
    );
    let (_, r) = report(&client, &argocd, "web").await.unwrap();
    let svc = resource(&r, "Service", "web");
    assert_eq!(
        svc["changes"].as_array().unwrap().len(),
        1,
        "only the type: {svc:#}"
    );

    // RBAC rule added
    let roles = dynamic(&client, &shop, "rbac.authorization.k8s.io/v1", "Role").await;
    roles
        .patch(
            "web-reader",
            &manager("kubectl-edit"),
            &Patch::<Value>::Json(serde_json::from_value(json!([
                {"op": "add", "path": "/rules/-", "value": {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}}
            ])).unwrap()),
        )
        .await
        .unwrap();
    let c = wait_change(&client, &argocd, "web", "Role", "web-reader", "rules[1]").await;
    assert_eq!(c["severity"], "critical");
    assert_eq!(c["manager"], "kubectl-edit");

    // Secret deleted
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &shop);
    secrets
        .delete("web-creds", &DeleteParams::default())
        .await
        .unwrap();
    let (cm, r) = wait_report(
        &client,
        &argocd,
        "web",
        "the Secret reported missing",
        WAIT,
        |r| resource(r, "Secret", "web-creds")["status"] == "missing",
    )
    .await;
    assert_eq!(resource(&r, "Secret", "web-creds")["severity"], "critical");
    assert_eq!(severity_label(&cm), "critical");
    // Secret values never reach the report.
    assert!(!serde_json::to_string(&r)
        .unwrap()
        .contains("c2VjcmV0LXZhbHVl"));
    let note = wait_event(&client, &argocd, "web", "DriftDetected", "web-creds").await;
    assert!(note.starts_with("critical drift in 4 resources"), "{note}");

    let (_, metrics) = controller.get("/metrics").await;
    let app_label = format!("app=\"{argocd}/web\"");
    let critical = metrics
        .lines()
        .find(|l| {
            l.starts_with("argo_drift_drifted_resources")
                && l.contains(&app_label)
                && l.contains("severity=\"critical\"")
        })
        .unwrap_or_else(|| panic!("no drifted_resources metric:\n{metrics}"));
    assert!(critical.ends_with(" 2"), "{critical}");
    assert!(
        metrics.contains("argo_drift_detection_latency_seconds_count"),
        "{metrics}"
    );
    // The app's watches (Deployments, Services, ConfigMaps, Secrets in its namespace) share one
    // HTTP/2 connection.
    let gauge = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("cluster=\"in-cluster\""))
            .and_then(|l| l.rsplit_once(' ')?.1.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("no {name} metric:\n{metrics}"))
    };
    assert!(gauge("argo_drift_cluster_watches") >= 4, "{metrics}");
    assert_eq!(gauge("argo_drift_watch_connections"), 1, "{metrics}");

    // Revert everything, as a sync by Argo CD would: drift resolved.
    for (kind, name) in [
        ("Deployment", "web"),
        ("Service", "web"),
        ("Role", "web-reader"),
    ] {
        let api = match kind {
            "Deployment" => &deployments,
            "Service" => &services,
            _ => &roles,
        };
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    sync_like_argocd(&client, "web", &shop, WEB).await;
    wait_event(&client, &argocd, "web", "DriftResolved", "match Git").await;
    let (cm, r) = report(&client, &argocd, "web").await.unwrap();
    assert_eq!(severity_label(&cm), "none", "{r:#}");
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);
    drop(apps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_protocol_extra_objects_and_a_malformed_application_that_stops_nothing_else() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let base = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&base.path().join("config.git"));
    repo.write(
        "cm/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: info\n",
    );
    repo.write(
        "cm/nested/ignored.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nested\n",
    );
    repo.commit("settings");
    let daemon = GitDaemon::start(base.path());
    let url = format!("git://127.0.0.1:{}/config.git", daemon.port);
    apply_yaml(
        &client,
        &shop,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: info\n",
        "argocd-controller",
    )
    .await;
    // Tracked by Argo CD's annotation, not in Git: extra. One with only the instance label
    // (a Helm chart's, say) is no application's under Argo CD 3.x's annotation tracking.
    apply_yaml(
        &client,
        &shop,
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leftover\n  annotations:\n    argocd.argoproj.io/tracking-id: settings:/ConfigMap:{shop}/leftover\n"),
        "argocd-controller",
    )
    .await;
    apply_yaml(
        &client,
        &shop,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: chart-labelled\n  labels:\n    app.kubernetes.io/instance: settings\n",
        "helm",
    )
    .await;
    // No synced revision yet: targetRevision (a branch) is used.
    apply(
        &client,
        &argocd,
        application("settings", &url, "cm", &shop, None),
        "argocd-server",
    )
    .await;
    let broken = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "broken", "labels": {"argo-drift.io/enabled": "true"}},
        // Argo CD's CRD admits an Application without a source (a sourceHydrator one, say);
        // a wrongly typed field the API server itself refuses.
        "spec": {"project": "default", "destination": {"namespace": shop}}
    });
    let apps: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &argocd,
        &argo_drift_controller::application::api_resource(),
    );
    apps.create(
        &PostParams::default(),
        &serde_json::from_value(broken).unwrap(),
    )
    .await
    .unwrap();
    // Not opted in: never analysed.
    let mut ignored = application("ignored", &url, "cm", &shop, None);
    ignored["metadata"]["labels"] = json!({});
    apply(&client, &argocd, ignored, "argocd-server").await;

    // Branches are fetched again at every analysis, so the chart commit below is seen.
    let controller = Running::start(
        &admin_config().await,
        &argocd,
        &["--git-refresh", "0s", "--gc-interval", "200ms"],
    )
    .await;
    let (cm, r) = wait_report(
        &client,
        &argocd,
        "settings",
        "the settings report with the extra object",
        WAIT,
        |r| r["summary"]["extra"] == 1,
    )
    .await;
    assert_eq!(
        r["summary"]["synced"], 1,
        "nested/ is not read without recurse: {r:#}"
    );
    assert_eq!(resource(&r, "ConfigMap", "leftover")["status"], "extra");
    assert!(
        !r["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "chart-labelled"),
        "{r:#}"
    );
    assert_eq!(severity_label(&cm), "info");
    assert_eq!(r["revision"].as_str().unwrap().len(), 40);

    let (_, b) = wait_for("the broken app's report", WAIT, || async {
        report(&client, &argocd, "broken").await
    })
    .await;
    assert_eq!(
        b["error"],
        format!("Application {argocd}/broken: spec.source is missing")
    );
    wait_event(
        &client,
        &argocd,
        "broken",
        "DriftAnalysisFailed",
        "spec.source",
    )
    .await;
    assert!(report(&client, &argocd, "ignored").await.is_none());
    let (_, metrics) = controller.get("/metrics").await;
    assert!(
        metrics.contains("argo_drift_reconcile_errors_total{category=\"invalid_application\"}"),
        "{metrics}"
    );

    // A Helm chart in Git without an Argo CD server: said clearly, on that app only.
    repo.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
    );
    repo.commit("chart");
    apply(
        &client,
        &argocd,
        application("chart", &url, "chart", &shop, None),
        "argocd-server",
    )
    .await;
    let (_, c) = wait_for("the chart app's report", WAIT, || async {
        report(&client, &argocd, "chart").await
    })
    .await;
    let error = c["error"].as_str().unwrap();
    assert!(
        error.contains("Helm sources (Chart.yaml") && error.contains("--argocd-server"),
        "{error}"
    );

    // A deleted application stops being measured: no stale drift gauge keeps alerting.
    assert!(report(&client, &argocd, "settings").await.is_some());
    let gauge =
        format!("argo_drift_drifted_resources{{app=\"{argocd}/settings\",severity=\"info\"}} 1");
    assert!(controller.get("/metrics").await.1.contains(&gauge));
    apps.delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the deleted app's gauges removed", WAIT, || async {
        let metrics = controller.get("/metrics").await.1;
        (!metrics.contains(&format!("app=\"{argocd}/settings\""))).then_some(())
    })
    .await;
    // ... and its report goes with it (deleted by argo-drift: reports live in its own namespace,
    // where the Application cannot own them; no garbage collector runs here either).
    wait_for("the deleted app's report removed", WAIT, || async {
        report(&client, &argocd, "settings")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    // A report whose app went while no controller ran (or was never analysed) goes too; one of
    // a namespace this controller does not watch is another's to keep.
    let stale = |name: &str, namespace: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {
            "argo-drift.io/report": "true", "argo-drift.io/app-namespace": namespace,
            "app.kubernetes.io/managed-by": "argo-drift"}}})
    };
    apply(
        &client,
        &argocd,
        stale("argo-drift-report-ghost", &argocd),
        "argo-drift",
    )
    .await;
    apply(
        &client,
        &argocd,
        stale("argo-drift-report-theirs", "elsewhere"),
        "argo-drift",
    )
    .await;
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &argocd);
    wait_for("the stale report pruned", WAIT, || async {
        configmaps
            .get_opt("argo-drift-report-ghost")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(configmaps
        .get_opt("argo-drift-report-theirs")
        .await
        .unwrap()
        .is_some());
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_ignore_differences_and_a_reloaded_policy_change_the_report() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("r"));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    repo.write("flags.yaml", cm);
    let commit = repo.commit("flags");
    apply_yaml(&client, &shop, cm, "argocd-controller").await;
    let mut app = application("flags", &repo.url(), "", &shop, Some(&commit));
    app["spec"]["ignoreDifferences"] = json!([{"kind": "ConfigMap", "jsonPointers": ["/data/b"]}]);
    apply(&client, &argocd, app, "argocd-server").await;
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, "severity:\n  default: medium\n").unwrap();
    let controller = Running::start(
        &admin_config().await,
        &argocd,
        &[
            "--policy",
            policy_file.to_str().unwrap(),
            "--policy-reload",
            "200ms",
        ],
    )
    .await;
    wait_for("the first report", WAIT, || async {
        report(&client, &argocd, "flags").await
    })
    .await;
    let configmaps = dynamic(&client, &shop, "v1", "ConfigMap").await;
    merge(
        &configmaps,
        "flags",
        "kubectl-edit",
        json!({"data": {"a": "9", "b": "9"}}),
    )
    .await;
    let c = wait_change(&client, &argocd, "flags", "ConfigMap", "flags", "data.a").await;
    assert_eq!(c["severity"], "medium");
    let (_, r) = report(&client, &argocd, "flags").await.unwrap();
    assert!(
        change(resource(&r, "ConfigMap", "flags"), "data.b").is_none(),
        "ignored by the app: {r:#}"
    );

    std::fs::write(
        &policy_file,
        "severity:\n  default: medium\n  rules:\n  - name: flags-are-critical\n    kinds: [ConfigMap]\n    paths: [data]\n    severity: critical\n",
    )
    .unwrap();
    wait_for("the reloaded policy's severity", WAIT, || async {
        let (_, r) = report(&client, &argocd, "flags").await?;
        let c = change(resource(&r, "ConfigMap", "flags"), "data.a")?.clone();
        (c["rule"] == "flags-are-critical" && c["severity"] == "critical").then_some(())
    })
    .await;
    // A broken policy file is refused and the running policy kept.
    std::fs::write(&policy_file, "severity: [").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, _) = controller.get("/healthz").await;
    assert_eq!(status, 200);
    controller.stop().await;
}

/// A Lease held by someone else, renewed now, for `seconds`.
async fn lease_held_elsewhere(client: &kube::Client, ns: &str, name: &str, seconds: i32) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let lease: k8s_openapi::api::coordination::v1::Lease = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": seconds,
                 "acquireTime": now.to_string(), "renewTime": now.to_string()},
    }))
    .unwrap();
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), ns)
        .create(&Default::default(), &lease)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_leads_and_a_released_lease_passes_to_the_standby() {
    use argo_drift_controller::leader::Held;
    let client = client().await;
    let ns = fresh_namespace(&client, "lease").await;
    let (_, mut never) = tokio::sync::watch::channel(false);
    let d = Duration::from_secs(3);
    let mut a = Held::start(client.clone(), &ns, "argo-drift", "replica-a", d)
        .await
        .unwrap();
    assert!(a.acquired(&mut never).await);
    let mut b = Held::start(client.clone(), &ns, "argo-drift", "replica-b", d)
        .await
        .unwrap();
    // Held and renewed: b waits well past the duration.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(a.holds(), "a renews its lease");
    assert!(!b.holds(), "the lease is held and fresh");
    let released = Instant::now();
    a.release().await;
    assert!(b.acquired(&mut never).await, "a released lease is free");
    assert!(
        released.elapsed() < Duration::from_secs(3),
        "taken over at once, not after expiry: {:?}",
        released.elapsed()
    );
    b.release().await;

    // A lease whose holder stopped renewing is taken over once it expires.
    lease_held_elsewhere(&client, &ns, "short", 2).await;
    let mut c = Held::start(client.clone(), &ns, "short", "replica-c", d)
        .await
        .unwrap();
    let waited = Instant::now();
    assert!(c.acquired(&mut never).await, "expired");
    assert!(waited.elapsed() < Duration::from_secs(10));
    c.release().await;

    // A controller whose lease is held elsewhere waits and writes nothing.
    let argocd = fresh_namespace(&client, "argocd").await;
    lease_held_elsewhere(&client, &argocd, "argo-drift-controller", 60).await;
    let standby = Running::start(&admin_config().await, &argocd, &[]).await;
    let (status, _) = wait_for("the standby's health endpoint", WAIT, || async {
        let r = standby.get("/healthz").await;
        (r.0 == 200).then_some(r)
    })
    .await;
    assert_eq!(status, 200);
    let (ready, _) = standby.get("/readyz").await;
    assert_eq!(ready, 200, "a standby is ready to take over");
    // It writes nothing while it waits.
    let lease: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &argocd);
    let held = lease.get("argo-drift-controller").await.unwrap();
    assert_eq!(
        held.spec.unwrap().holder_identity.as_deref(),
        Some("someone-else")
    );
    assert_eq!(standby.stop().await, std::process::ExitCode::SUCCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_applications_are_read_from_argo_cds_rendered_manifests_with_its_token() {
    // The real Argo CD renders a chart from Git and syncs it; argo-drift reads what it rendered.
    let real = real_argocd();
    let client = client().await;
    let apps = real.fresh_apps_namespace(&client).await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("charts.git"));
    repo.write(
        "redis/Chart.yaml",
        "apiVersion: v2\nname: redis\nversion: 1.2.3\n",
    );
    repo.write("redis/values.yaml", "maxmemory: 256mb\n");
    repo.write(
        "redis/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: redis-config\n  labels:\n    helm.sh/chart: redis-{{ .Chart.Version }}\ndata:\n  maxmemory: {{ .Values.maxmemory }}\n",
    );
    let commit = repo.commit("redis chart");
    apply(
        &client,
        &apps,
        application("redis", &repo.url(), "redis", &shop, None),
        "argocd-server",
    )
    .await;
    real.sync_and_wait(&client, &apps, "redis").await;
    // An app Argo CD cannot render: a chart from a Helm repository it cannot reach.
    let mut unknown = application("unknown", "https://charts.invalid", "", &shop, None);
    unknown["spec"]["source"] =
        json!({"repoURL": "https://charts.invalid", "chart": "nope", "targetRevision": "1.0.0"});
    apply(&client, &apps, unknown, "argocd-server").await;
    let server = format!("https://{}", real.server);
    let ca = real.ca.to_str().unwrap();
    let start = |token_file: String| {
        let (apps, server) = (apps.clone(), server.clone());
        async move {
            Running::start_beside(
                &admin_config().await,
                &apps,
                &real.namespace,
                &[
                    "--argocd-server",
                    &server,
                    "--argocd-token-file",
                    &token_file,
                    "--argocd-ca-file",
                    ca,
                ],
            )
            .await
        }
    };
    let controller = start(real.token_file.display().to_string()).await;
    let (cm, r) = wait_for("the Helm app's report", WAIT, || async {
        report(&client, &apps, "redis").await
    })
    .await;
    assert_eq!(severity_label(&cm), "none", "{r:#}");
    assert_eq!(r["summary"]["synced"], 1, "{r:#}");
    assert_eq!(r["revision"], commit.as_str());
    let configmaps = dynamic(&client, &shop, "v1", "ConfigMap").await;
    merge(
        &configmaps,
        "redis-config",
        "kubectl-edit",
        json!({"data": {"maxmemory": "8gb"}}),
    )
    .await;
    let c = wait_change(
        &client,
        &apps,
        "redis",
        "ConfigMap",
        "redis-config",
        "data.maxmemory",
    )
    .await;
    assert_eq!(c["live"], "8gb");
    assert_eq!(c["desired"], "256mb");
    // Argo CD's own error when it cannot render an application, retried as transient.
    let (_, metrics) = wait_for("the Argo CD API error counted", WAIT, || async {
        let m = controller.get("/metrics").await;
        m.1.contains("category=\"argocd_api\"").then_some(m)
    })
    .await;
    assert!(metrics.contains("argo_drift_reconcile_errors_total{category=\"argocd_api\"}"));
    controller.stop().await;

    // A wrong token: Argo CD's 401 is counted and reported with its message, the token never.
    let wrong_token = dir.path().join("wrong-token");
    std::fs::write(&wrong_token, "wrong-token").unwrap();
    let wrong = start(wrong_token.display().to_string()).await;
    wait_for("the 401 counted", WAIT, || async {
        let m = wrong.get("/metrics").await.1;
        m.contains("category=\"argocd_api\"").then_some(())
    })
    .await;
    let err = real
        .client_with_token("wrong-token".into())
        .manifests("redis", &apps, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("Argo CD API /api/v1/applications/redis/manifests: 401 Unauthorized: "),
        "{err}"
    );
    assert!(err.ends_with("(code 16)"), "{err}");
    assert!(!err.contains("wrong-token"));
    wrong.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_repository_is_read_with_the_token_from_argo_cds_repository_secret() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let base = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&base.path().join("private.git"));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: private\ndata:\n  k: v\n";
    repo.write("app/cm.yaml", cm);
    let commit = repo.commit("private");
    let server = GitHttp::start(base.path(), "deploy-bot", "glpat-0123456789");
    let url = format!("http://127.0.0.1:{}/private.git", server.port);
    app_in_sync(&client, &argocd, &shop, "private", &url, "app", &commit, cm).await;
    let controller = Running::start(&admin_config().await, &argocd, &[]).await;

    // No credentials yet: after a few attempts the failure is said on the app.
    let (_, r) = wait_report(
        &client,
        &argocd,
        "private",
        "the credentials failure on the app",
        WAIT,
        |r| r["error"].is_string(),
    )
    .await;
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains(&url) && error.contains("credentials"),
        "{error}"
    );

    // Argo CD's repository Secret: the next retry reads the repository with its token.
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "repo-private", "labels": {"argocd.argoproj.io/secret-type": "repository"}},
        "stringData": {"type": "git", "url": url, "username": "deploy-bot", "password": "glpat-0123456789"}
    });
    apply(&client, &argocd, secret, "argocd-server").await;
    let (cm, r) = wait_report(
        &client,
        &argocd,
        "private",
        "the private repository's report",
        Duration::from_secs(40),
        |r| r["summary"]["synced"] == 1,
    )
    .await;
    assert_eq!(severity_label(&cm), "none", "{r:#}");
    assert!(r.get("error").is_none());
    // The token is in no report, Event or metric.
    let (_, metrics) = controller.get("/metrics").await;
    let events = events(&client, &argocd, "private").await;
    for text in [
        serde_json::to_string(&r).unwrap(),
        metrics,
        format!("{events:?}"),
    ] {
        assert!(!text.contains("glpat-0123456789"));
    }
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_does_its_job_with_only_the_shipped_least_privilege_rbac() {
    let admin = client().await;
    // The test API server has a token for system:serviceaccount:argocd:argo-drift, with no rights
    // but what RBAC grants; another cluster may not.
    let Some(controller_kubeconfig) = kubeconfig()
        .parent()
        .map(|d| d.join("kubeconfig-controller"))
        .filter(|p| p.exists())
    else {
        eprintln!("skipped: no kubeconfig for the controller's service account");
        return;
    };
    let argocd = fresh_namespace(&admin, "argocd").await;
    let shop = fresh_namespace(&admin, "shop").await;
    let rbac = std::fs::read_to_string(root().join("deploy/base/rbac.yaml")).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&rbac) {
        let mut v = <Value as serde::Deserialize>::deserialize(doc).unwrap();
        match v["kind"].as_str().unwrap() {
            // Cluster-wide pieces as shipped; the namespaced grants go to this test's namespace.
            "ServiceAccount" => continue,
            "Role" | "RoleBinding" => v["metadata"]["namespace"] = json!(argocd),
            _ => {}
        }
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        apply(&admin, &ns, v, "argo-drift-tests").await;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("r"));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: limited\ndata:\n  k: v\n";
    repo.write("cm.yaml", cm);
    let commit = repo.commit("c");
    app_in_sync(
        &admin,
        &argocd,
        &shop,
        "limited",
        &repo.url(),
        "",
        &commit,
        cm,
    )
    .await;

    let kc = kube::config::Kubeconfig::read_from(controller_kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let limited = kube::Client::try_from(config.clone()).unwrap();
    let controller = Running::start(&config, &argocd, &[]).await;
    wait_for(
        "the report written under the shipped RBAC",
        WAIT,
        || async { report(&admin, &argocd, "limited").await },
    )
    .await;
    let configmaps = dynamic(&admin, &shop, "v1", "ConfigMap").await;
    merge(
        &configmaps,
        "limited",
        "kubectl-edit",
        json!({"data": {"k": "changed"}}),
    )
    .await;
    wait_event(&admin, &argocd, "limited", "DriftDetected", "data.k").await;
    // The controller cannot write to the application's objects.
    let as_controller: Api<DynamicObject> = dynamic(&limited, &shop, "v1", "ConfigMap").await;
    let denied = as_controller
        .patch(
            "limited",
            &manager("argo-drift"),
            &Patch::Merge(json!({"data": {"k": "v"}})),
        )
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("forbidden"), "{denied}");
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);

    // The install manifests are valid objects for the API server (v1.20 schema validation).
    let install = fresh_namespace(&admin, "install").await;
    let text = std::fs::read_to_string(root().join("deploy/base/deployment.yaml")).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut v = <Value as serde::Deserialize>::deserialize(doc).unwrap();
        v["metadata"]["namespace"] = json!(install);
        apply(&admin, &install, v, "argo-drift-tests").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_over_ssh_is_read_with_the_secrets_key_and_a_known_host_key_only() {
    let Some(sshd) = Sshd::start() else {
        eprintln!("skipped: no /usr/sbin/sshd (scripts/testenv.sh up installs openssh-server)");
        return;
    };
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let base = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&base.path().join("ssh.git"));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: over-ssh\ndata:\n  k: v\n";
    repo.write("cm.yaml", cm);
    let commit = repo.commit("c");
    let url = sshd.repository(&client, &argocd, &repo).await;
    app_in_sync(&client, &argocd, &shop, "ssh", &url, "", &commit, cm).await;
    let controller = Running::start(&admin_config().await, &argocd, &[]).await;

    // The server's host key is not known yet: refused, and said on the app.
    let (_, r) = wait_report(
        &client,
        &argocd,
        "ssh",
        "the unknown host key refused",
        WAIT,
        |r| r["error"].is_string(),
    )
    .await;
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("not in Argo CD's known hosts"),
        "{r:#}"
    );

    let known = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "argocd-ssh-known-hosts-cm"},
        "data": {"ssh_known_hosts": format!("# test\n{}\n", sshd.host_key_line)}
    });
    apply(&client, &argocd, known, "argocd-server").await;
    let (cm, r) = wait_report(
        &client,
        &argocd,
        "ssh",
        "the repository read over SSH",
        Duration::from_secs(40),
        |r| r["summary"]["synced"] == 1,
    )
    .await;
    assert_eq!(severity_label(&cm), "none", "{r:#}");
    assert!(!serde_json::to_string(&r).unwrap().contains("PRIVATE KEY"));
    controller.stop().await;
}

/// An app "paged" (one ConfigMap in Git and live, in sync) in fresh namespaces, a controller
/// paging through PagerDuty at `pagerduty_url` with routing key R0UTINGKEY, and the live
/// ConfigMaps. Returns (argocd namespace, ConfigMap API, controller).
async fn paged_app(
    client: &kube::Client,
    dir: &std::path::Path,
    pagerduty_url: &str,
    resolve_hold_seconds: u64,
) -> (String, kube::Api<kube::api::DynamicObject>, Running) {
    let argocd = fresh_namespace(client, "argocd").await;
    let shop = fresh_namespace(client, "shop").await;
    let repo = GitRepo::new(&dir.join("r"));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: paged\ndata:\n  a: \"1\"\n  b: \"1\"\n";
    repo.write("cm.yaml", cm);
    let commit = repo.commit("c");
    app_in_sync(
        client,
        &argocd,
        &shop,
        "paged",
        &repo.url(),
        "",
        &commit,
        cm,
    )
    .await;
    let notifications = pagerduty_notifications(
        dir,
        pagerduty_url,
        &["*"],
        "medium",
        &format!("resolveHoldSeconds: {resolve_hold_seconds}\n"),
    );
    let controller = Running::start(
        &admin_config().await,
        &argocd,
        &["--notifications", notifications.to_str().unwrap()],
    )
    .await;
    wait_for("the first report", WAIT, || async {
        report(client, &argocd, "paged").await
    })
    .await;
    let configmaps = dynamic(client, &shop, "v1", "ConfigMap").await;
    (argocd, configmaps, controller)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_cannot_deliver_shows_in_the_report_without_another_change() {
    let client = client().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/v2/enqueue", free_port());
    let (argocd, configmaps, controller) = paged_app(&client, dir.path(), &url, 0).await;
    merge(
        &configmaps,
        "paged",
        "kubectl-edit",
        json!({"data": {"a": "2"}}),
    )
    .await;
    // Five attempts with backoff take about 8 s; then the report is rewritten on its own.
    let (_, r) = wait_report(
        &client,
        &argocd,
        "paged",
        "the failure in the report",
        Duration::from_secs(60),
        |r| r["notificationFailures"].is_string(),
    )
    .await;
    let failure = r["notificationFailures"].as_str().unwrap();
    assert!(failure.contains("oncall"), "{failure}");
    assert!(!failure.contains("R0UTINGKEY"), "{failure}");
    assert_eq!(r["summary"]["modified"], 1, "{r:#}");
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_pages_once_a_flap_within_the_hold_does_not_page_again_and_one_resolve_closes_it() {
    let client = client().await;
    let dir = tempfile::tempdir().unwrap();
    let pagerduty = Capture::start().await;
    let (argocd, configmaps, controller) = paged_app(&client, dir.path(), &pagerduty.url, 4).await;

    merge(
        &configmaps,
        "paged",
        "kubectl-edit",
        json!({"data": {"a": "2"}}),
    )
    .await;
    wait_for("the trigger", WAIT, || async {
        (pagerduty.got().len() == 1).then_some(())
    })
    .await;
    // The drift changes while the incident is open: same dedup_key, PagerDuty updates it.
    merge(
        &configmaps,
        "paged",
        "kubectl-edit",
        json!({"data": {"b": "2"}}),
    )
    .await;
    wait_for("the update", WAIT, || async {
        (pagerduty.got().len() == 2).then_some(())
    })
    .await;
    // The field flaps: reverted, then changed again within the resolve hold. The incident
    // stays open (the report says since when it is resolving) and nobody is paged again.
    let revert = json!({"data": {"a": "1", "b": "1"}});
    merge(&configmaps, "paged", "kubectl-edit", revert.clone()).await;
    let (cm, _) = wait_report(&client, &argocd, "paged", "the drift gone", WAIT, |r| {
        r["summary"]["modified"] == 0
    })
    .await;
    let annotations = cm.metadata.annotations.unwrap();
    assert!(!annotations["argo-drift.io/incident"].is_empty());
    assert!(!annotations["argo-drift.io/incident-resolving-since"].is_empty());
    merge(
        &configmaps,
        "paged",
        "kubectl-edit",
        json!({"data": {"a": "2"}}),
    )
    .await;
    let (cm, _) = wait_report(&client, &argocd, "paged", "the drift back", WAIT, |r| {
        r["summary"]["modified"] == 1
    })
    .await;
    assert_eq!(
        cm.metadata.annotations.unwrap()["argo-drift.io/incident-resolving-since"],
        "",
        "the incident goes on"
    );
    merge(&configmaps, "paged", "kubectl-edit", revert).await;
    let reverted = std::time::Instant::now();
    wait_for("the resolve", WAIT, || async {
        (pagerduty.got().len() == 3).then_some(())
    })
    .await;
    assert!(
        reverted.elapsed() >= Duration::from_secs(3),
        "resolved only after the hold: {:?}",
        reverted.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = pagerduty.got();
    assert_eq!(got.len(), 3, "{got:#?}");
    let actions: Vec<_> = got
        .iter()
        .map(|e| e["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "trigger", "resolve"]);
    assert!(
        got.iter().all(|e| e["dedup_key"] == got[0]["dedup_key"]),
        "{got:#?}"
    );
    assert_eq!(
        got[0]["payload"]["custom_details"]["changes"][0]["field"],
        "data.a"
    );
    assert_eq!(
        got[0]["payload"]["custom_details"]["changes"][0]["manager"],
        "kubectl-edit"
    );
    assert_eq!(got[1]["payload"]["class"], "drift-changed");
    let (_, metrics) = controller.get("/metrics").await;
    assert!(
        metrics.contains("argo_drift_notifications_total{channel=\"oncall\",outcome=\"sent\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("argo_drift_notifications_total{channel=\"oncall\",outcome=\"duplicate\"} 1"),
        "the flap's change fell in the dedup window: {metrics}"
    );
    let (cm, _) = report(&client, &argocd, "paged").await.unwrap();
    assert_eq!(
        cm.metadata.annotations.unwrap()["argo-drift.io/incident"],
        ""
    );
    controller.stop().await;
}

/// The WEB app as Application `web` with a controller beside it, once its first report is
/// written: (client, Argo CD's namespace, the app's, the repository's directory, controller).
async fn web_app_analysed() -> (kube::Client, String, String, tempfile::TempDir, Running) {
    let (client, argocd, shop, dir, repo, commit) = web_app().await;
    let mut app = application("web", &repo.url(), "apps/web", &shop, Some(&commit));
    app["spec"]["source"]["directory"] = json!({"recurse": true});
    apply(&client, &argocd, app, "argocd-server").await;
    let controller = Running::start(&admin_config().await, &argocd, &[]).await;
    wait_for("the first report", WAIT, || async {
        report(&client, &argocd, "web").await
    })
    .await;
    (client, argocd, shop, dir, controller)
}

/// Counter `series` once the first analyses have settled: it no longer moves for 2 s.
async fn settled(controller: &Running, series: &str) -> f64 {
    let mut before = counter(controller, series).await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = counter(controller, series).await;
        if now == before {
            return now;
        }
        before = now;
    }
}

/// The value of counter `name` with `labels` (`k="v",...`) on the controller's /metrics, 0 when
/// absent.
async fn counter(controller: &Running, series: &str) -> f64 {
    let (_, text) = controller.get("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_only_updates_analyse_nothing_again_and_a_spec_change_does() {
    let (client, argocd, shop, _dir, controller) = web_app_analysed().await;
    let ok = "argo_drift_reconciles_total{result=\"ok\"}";
    let ignored =
        "argo_drift_watch_events_ignored_total{cluster=\"in-cluster\",kind=\"Deployment\"}";
    let before = settled(&controller, ok).await;
    // A controller writing the Deployment's status, ten times.
    let deployments = dynamic(&client, &shop, "apps/v1", "Deployment").await;
    for i in 0..10 {
        deployments
            .patch_status(
                "web",
                &PatchParams {
                    field_manager: Some("kube-controller-manager".into()),
                    ..Default::default()
                },
                &Patch::Merge(json!({"status": {"observedGeneration": 1, "replicas": i}})),
            )
            .await
            .unwrap();
    }
    wait_for("the status updates to be seen", WAIT, || async {
        (counter(&controller, ignored).await >= 10.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        counter(&controller, ok).await,
        before,
        "status-only updates analysed the app again"
    );
    // A change analysis reads is analysed.
    merge(
        &deployments,
        "web",
        "kubectl-edit",
        json!({"metadata": {"labels": {"debug": "true"}}}),
    )
    .await;
    wait_change(
        &client,
        &argocd,
        "web",
        "Deployment",
        "web",
        "metadata.labels.debug",
    )
    .await;
    // The report is written before the analysis is counted: wait for the count.
    wait_for("the analysis counted", WAIT, || async {
        (counter(&controller, ok).await > before).then_some(())
    })
    .await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_refreshes_and_argo_drifts_own_annotations_analyse_nothing_again() {
    let (client, argocd, _shop, _dir, controller) = web_app_analysed().await;
    let ok = "argo_drift_reconciles_total{result=\"ok\"}";
    // A sync that ended, as Argo CD records it (analysed: its phase and revision are read).
    merge(
        &applications(&client, &argocd),
        "web",
        "argocd-application-controller",
        json!({"status": {"operationState": {"phase": "Succeeded",
            "startedAt": "2026-12-05T00:00:00Z", "operation": {"sync": {"revision": "abc"}},
            "syncResult": {"revision": "abc", "resources": []}}}}),
    )
    .await;
    let before = settled(&controller, ok).await;
    // Argo CD refreshing the app: only its times change.
    for i in 0..5 {
        merge(
            &applications(&client, &argocd),
            "web",
            "argocd-application-controller",
            json!({"status": {"reconciledAt": format!("2026-12-05T00:00:0{i}Z")}}),
        )
        .await;
    }
    let unchanged = |what: &'static str| {
        let controller = &controller;
        async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(
                counter(controller, ok).await,
                before,
                "{what} analysed the app again"
            );
        }
    };
    unchanged("Argo CD's refreshes").await;
    // Argo CD's deployment history and per-resource sync results: not kept in the controller's
    // cache (application::cache_form), so writing them changes nothing it sees.
    merge(
        &applications(&client, &argocd),
        "web",
        "argocd-application-controller",
        json!({"status": {"history": [{"id": 1, "revision": "abc", "deployedAt": "2026-12-05T00:00:01Z"}],
            "operationState": {"syncResult": {"resources": [
                {"group": "", "version": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "web",
                 "status": "Synced", "message": "configured"}]}}}}),
    )
    .await;
    unchanged("Argo CD's history and sync results").await;
    // argo-drift's own annotations changing (as its write after an analysis does).
    merge(
        &applications(&client, &argocd),
        "web",
        "argo-drift",
        json!({"metadata": {"annotations": {"argo-drift.io/drift-summary": "written by argo-drift"}}}),
    )
    .await;
    unchanged("argo-drift's own annotation write").await;
    // Anything else on the Application is looked at.
    merge(
        &applications(&client, &argocd),
        "web",
        "kubectl-annotate",
        json!({"metadata": {"annotations": {"example.com/touched": "1"}}}),
    )
    .await;
    wait_for("another analysis", WAIT, || async {
        (counter(&controller, ok).await > before).then_some(())
    })
    .await;
    controller.stop().await;
}

fn applications(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &argo_drift_controller::application::api_resource(),
    )
}

/// Stale reports are looked for a page of the list at a time (at 2,000 reports a whole list was
/// a peak of each replica's memory): with pages of two, the reports of gone apps on every page
/// go, those of live apps and of a namespace not watched stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reports_are_pruned_on_every_page_of_the_list() {
    use argo_drift_controller::publish::Publisher;
    use kube::runtime::reflector::ObjectRef;

    let client = client().await;
    let records = fresh_namespace(&client, "records").await;
    let report = |namespace: &str, app: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": argo_drift_cluster::records::report_name(namespace, app),
            "labels": {"argo-drift.io/report": "true", "argo-drift.io/app-namespace": namespace}}})
    };
    let gone = ["g1", "g2", "g3", "g4", "g5"];
    let alive = ["a1", "a2"];
    for app in gone.iter().chain(&alive) {
        apply(&client, &records, report("team", app), "argo-drift").await;
    }
    apply(&client, &records, report("elsewhere", "g6"), "argo-drift").await;

    let publisher = Publisher::new(client.clone(), "test".into(), records.clone());
    let living = alive
        .iter()
        .map(|a| {
            ObjectRef::new_with(a, argo_drift_cluster::application::api_resource()).within("team")
        })
        .collect();
    let watched = argo_drift_cluster::namespaces::AppNamespaces::new(&["team"]).unwrap();
    let pruned = publisher.prune_reports(&living, &watched, 2).await.unwrap();
    assert_eq!(pruned, gone.len());

    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &records);
    let mut left: Vec<String> = configmaps
        .list_metadata(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .filter(|n| n.starts_with("argo-drift-report-"))
        .collect();
    left.sort();
    let mut expected = vec![
        argo_drift_cluster::records::report_name("elsewhere", "g6"),
        argo_drift_cluster::records::report_name("team", "a1"),
        argo_drift_cluster::records::report_name("team", "a2"),
    ];
    expected.sort();
    assert_eq!(left, expected);
}

/// Ready only once every opted-in Application present at start has been analysed: the set is
/// read from the Application watcher's store once its first list is in, and an empty store
/// before that list must not make the controller ready at once (it did when the list was taken
/// without waiting for that signal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_every_application_present_at_start_is_reported() {
    let client = client().await;
    let (argocd, _, names, _dir) = config_map_apps(&client, 8).await;

    // Without leader election: a standby is ready by design until it leads (run.rs).
    let controller = Running::start(
        &admin_config().await,
        &argocd,
        &["--leader-election", "false"],
    )
    .await;
    wait_for("readiness", WAIT, || async {
        (controller.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    for n in &names {
        assert!(
            report(&client, &argocd, n).await.is_some(),
            "ready before {n} was reported"
        );
    }
    controller.stop().await;
}
