//! The SyncFail hook as Argo CD runs it: the real binary, the real API server holding the
//! Application in the state Argo CD leaves after a failed sync, and the fake Argo CD API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "hook-token";

/// Run `argo-drift-syncfail` with `args` and `env`; (exit code, stdout and stderr).
fn syncfail(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_argo-drift-syncfail"))
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .env_remove("APP_NAME")
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .envs(records_beside_apps(args))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stderr}{stdout}"))
}

/// An Application whose sync of `failing` just failed, with these history revisions (ids 1..),
/// automated sync on or off.
fn failed_app(history: &[&str], failing: &str, automated: bool, started: &str) -> Value {
    let mut app = application(
        "web",
        "https://git.example.com/shop.git",
        "web",
        "shop",
        None,
    );
    if automated {
        app["spec"]["syncPolicy"] = json!({"automated": {"selfHeal": true, "prune": false}});
    }
    let history: Vec<Value> = history
        .iter()
        .enumerate()
        .map(|(i, r)| json!({"id": i + 1, "revision": r, "deployedAt": "2026-11-20T10:00:00Z",
            "source": {"repoURL": "https://git.example.com/shop.git", "path": "web", "targetRevision": "main"}}))
        .collect();
    app["status"] = json!({
        "sync": {"status": "OutOfSync", "revision": failing},
        "history": history,
        "operationState": {
            "operation": {"sync": {"revision": failing}, "initiatedBy": {"username": "alice"}},
            "phase": "Failed",
            "message": "one or more objects failed to apply",
            "startedAt": started,
            "finishedAt": started,
            "syncResult": {"revision": failing, "resources": []}
        }
    });
    app
}

async fn alerts(client: &kube::Client, ns: &str) -> Vec<Value> {
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), ns);
    api.list(&kube::api::ListParams::default().labels("alert-type=emergency"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| serde_json::from_str(&c.data.as_ref().unwrap()["alert.json"]).unwrap())
        .collect()
}

fn last_line(out: &str) -> &str {
    out.trim_end().lines().last().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_is_rolled_back_once_to_the_last_good_revision() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    apply(
        &client,
        &argocd,
        failed_app(
            &["aaaa1111", "bbbb2222", "cccc3333"],
            "cccc3333",
            true,
            "2026-11-21T10:00:00Z",
        ),
        "argocd-application-controller",
    )
    .await;
    let fake = FakeArgoCd::start(client.clone(), TOKEN, &argocd)
        .await
        .unwrap();
    // The page goes to PagerDuty through notifications.yaml.
    let pagerduty = Capture::start().await;
    let dir = tempfile::tempdir().unwrap();
    let notifications = pagerduty_notifications(
        dir.path(),
        &pagerduty.url,
        &["rollback-done", "rollback-failed"],
        "none",
        "",
    );
    let args = [
        "--app",
        "web",
        "--app-namespace",
        argocd.as_str(),
        "--argocd-server",
        fake.url.as_str(),
        "--notifications",
        notifications.to_str().unwrap(),
    ];
    let env = [("ARGOCD_AUTH_TOKEN", TOKEN)];

    // Dry-run first: says what it would do, does nothing.
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let (code, out) = syncfail(&dry, &env);
    assert_eq!(code, 0, "{out}");
    assert!(
        last_line(&out).contains("dry-run: would turn automated sync off, then roll"),
        "{out}"
    );
    assert!(fake.writes().is_empty());
    // The Application was read through Argo CD's API (it answers on any cluster).
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/api/v1/applications/web"),
        "{out}"
    );

    let (code, out) = syncfail(&args, &env);
    assert_eq!(code, 0, "{out}");
    let last = last_line(&out);
    assert!(
        last.starts_with("argo-drift-syncfail: ")
            && last.contains("rolled back to history id 2 (revision bbbb2222)")
            && last.contains("automated sync turned off and left off"),
        "{out}"
    );
    assert!(!out.contains(TOKEN));
    let calls: Vec<(String, String)> = fake
        .writes()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            ("PATCH".to_string(), "/api/v1/applications/web".to_string()),
            (
                "POST".to_string(),
                "/api/v1/applications/web/rollback".to_string()
            ),
        ],
        "automated sync off first: Argo CD refuses a rollback otherwise"
    );
    // A number: the real Argo CD 3.x refuses the id as a string (argocd_real.rs rolls back).
    assert_eq!(fake.writes()[1].body["id"], 2);
    let app = serde_json::to_value(
        dynamic(&client, &argocd, "argoproj.io/v1alpha1", "Application")
            .await
            .get("web")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(app["operation"]["sync"]["revision"], "bbbb2222");
    assert!(app["spec"]["syncPolicy"].get("automated").is_none());
    let raised = alerts(&client, &argocd).await;
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0]["rolledBackTo"]["historyId"], 2);
    assert_eq!(raised[0]["failingRevision"], "cccc3333");
    assert_eq!(raised[0]["automatedSyncTurnedOff"], true);
    let pages = pagerduty.got();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0]["event_action"], "trigger");
    assert_eq!(pages[0]["payload"]["class"], "rollback-done");
    assert_eq!(pages[0]["payload"]["severity"], "critical");

    // Argo CD may run the hook again for the same failed operation: nothing happens.
    let (code, out) = syncfail(&args, &env);
    assert_eq!(code, 0, "{out}");
    assert!(last_line(&out).contains("already handled"), "{out}");
    assert_eq!(fake.writes().len(), 2);
    assert_eq!(alerts(&client, &argocd).await.len(), 1);

    // Another failed sync ten minutes later: one rollback per 30 minutes per app.
    merge(
        &dynamic(&client, &argocd, "argoproj.io/v1alpha1", "Application").await,
        "web",
        "argocd-application-controller",
        json!({"operation": null, "status": {"operationState": {"startedAt": "2026-11-21T10:10:00Z"}}}),
    )
    .await;
    let (code, out) = syncfail(&args, &env);
    assert_eq!(code, 1, "{out}");
    assert!(last_line(&out).contains("at most one per 30m"), "{out}");
    assert_eq!(fake.writes().len(), 2, "no rollback call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_earlier_revision_it_refuses_and_raises_an_alert() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    apply(
        &client,
        &argocd,
        failed_app(&["cccc3333"], "cccc3333", false, "2026-11-21T10:00:00Z"),
        "argocd-application-controller",
    )
    .await;
    let fake = FakeArgoCd::start(client.clone(), TOKEN, &argocd)
        .await
        .unwrap();
    let (code, out) = syncfail(
        &[
            "--app",
            "web",
            "--app-namespace",
            &argocd,
            "--argocd-server",
            &fake.url,
        ],
        &[("ARGOCD_AUTH_TOKEN", TOKEN)],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        last_line(&out).contains("no earlier revision in status.history"),
        "{out}"
    );
    assert!(
        fake.writes().is_empty(),
        "never rolls back to the failing revision"
    );
    let raised = alerts(&client, &argocd).await;
    assert_eq!(raised.len(), 1);
    assert!(raised[0]["rolledBackTo"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_is_found_from_the_hooks_own_job_and_a_miss_says_what_was_tried() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    apply(
        &client,
        &argocd,
        failed_app(
            &["aaaa1111", "cccc3333"],
            "cccc3333",
            false,
            "2026-11-21T10:00:00Z",
        ),
        "argocd-application-controller",
    )
    .await;
    // The Job Argo CD created for the hook, tracked by annotation, and its Pod.
    let pod = hook_pod(
        &client,
        &shop,
        "web-syncfail",
        json!({"annotations": {
            "argocd.argoproj.io/tracking-id": "web:batch/Job:shop/web-syncfail",
            "argocd.argoproj.io/hook": "SyncFail"}}),
    )
    .await;
    let (code, out) = syncfail(
        &["--app-namespace", &argocd, "--dry-run"],
        &[("POD_NAME", &pod), ("POD_NAMESPACE", &shop)],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        last_line(&out).contains(&format!("would roll {argocd}/web back to history id 1")),
        "{out}"
    );
    // A Job tracked by label only (Argo CD's label tracking) works too.
    let pod = hook_pod(
        &client,
        &shop,
        "web-syncfail-2",
        json!({"labels": {"app.kubernetes.io/instance": "web"}}),
    )
    .await;
    let (code, out) = syncfail(
        &["--app-namespace", &argocd, "--dry-run"],
        &[("POD_NAME", &pod), ("POD_NAMESPACE", &shop)],
    );
    assert_eq!(code, 0, "{out}");

    // A Pod without an owning Job: the error says what was tried.
    apply(
        &client,
        &shop,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray"},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}),
        "kubectl",
    )
    .await;
    let (code, out) = syncfail(
        &["--app-namespace", &argocd],
        &[("POD_NAME", "stray"), ("POD_NAMESPACE", &shop)],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "no --app/APP_NAME, and Pod {shop}/stray has no owning Job"
        )),
        "{out}"
    );
    let (code, out) = syncfail(&[], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("POD_NAME/POD_NAMESPACE"), "{out}");
}

/// A hook Job `job` with these metadata marks, and a Pod it owns; returns the Pod's name.
async fn hook_pod(client: &kube::Client, namespace: &str, job: &str, marks: Value) -> String {
    let mut metadata = json!({"name": job});
    for (k, v) in marks.as_object().unwrap() {
        metadata[k] = v.clone();
    }
    let created = apply(
        client,
        namespace,
        json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "hook", "image": "argo-drift:test"}]}}}
        }),
        "argocd-controller",
    )
    .await;
    let pod = format!("{job}-x7k2p");
    apply(
        client,
        namespace,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": job,
                "uid": created.metadata.uid.clone().unwrap(), "controller": true}]},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "hook", "image": "argo-drift:test"}]}
        }),
        "kube-controller-manager",
    )
    .await;
    pod
}

/// The controller carries out the rollbacks SyncFail asks for in argo-drift's namespace, but only
/// for the app whose own hooks asked (the admission policy keeps the writer's label true): a
/// request written by another namespace's hooks is closed unrun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_rolls_back_only_what_the_apps_own_hooks_asked_for() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let records = fresh_namespace(&client, "argo-drift").await;
    let started = "2026-11-21T10:00:00Z";
    // The failed operation has ended (no `operation` left on the Application).
    let app = failed_app(&["aaaa1111", "bbbb2222"], "cccc3333", false, started);
    apply(&client, &argocd, app, "argocd-server").await;
    let fake = FakeArgoCd::start(client.clone(), TOKEN, &argocd)
        .await
        .unwrap();
    let request = |name: &str, writer: &str| {
        let request = json!({"appNamespace": argocd, "app": "web", "historyId": 2,
            "revision": "bbbb2222", "failingRevision": "cccc3333",
            "operationStartedAt": started, "prune": false});
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {
                "alert-type": "emergency", "argo-drift.io/rollback": "requested",
                "app.kubernetes.io/managed-by": "argo-drift",
                "argo-drift.io/hook-namespace": writer}},
            "data": {"rollback.json": request.to_string(), "alert.json": "{}"}})
    };
    let state = |name: &'static str| {
        let client = client.clone();
        let records = records.clone();
        async move {
            let cm =
                kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client, &records)
                    .get(name)
                    .await
                    .unwrap();
            let label = cm.metadata.labels.unwrap()["argo-drift.io/rollback"].clone();
            (label != "requested").then_some(label)
        }
    };
    apply(
        &client,
        &records,
        request("forged", "intruder"),
        "argo-drift-hooks",
    )
    .await;
    let controller = Running::start_beside(
        &admin_config().await,
        &argocd,
        &argocd,
        &[
            "--state-namespace",
            &records,
            "--argocd-server",
            &fake.url,
            "--argocd-token",
            TOKEN,
        ],
    )
    .await;
    let outcome = wait_for("the forged request closed", Duration::from_secs(20), || {
        state("forged")
    })
    .await;
    assert_eq!(outcome, "superseded");
    assert!(fake.writes().is_empty(), "no rollback for a forged request");

    apply(
        &client,
        &records,
        request("genuine", "shop"),
        "argo-drift-hooks",
    )
    .await;
    let outcome = wait_for("the genuine request run", Duration::from_secs(20), || {
        state("genuine")
    })
    .await;
    assert_eq!(outcome, "done");
    let calls: Vec<String> = fake.writes().iter().map(|r| r.path.clone()).collect();
    assert_eq!(calls, ["/api/v1/applications/web/rollback"]);
    controller.stop().await;
}
