//! Remediation end to end against the real API server: decisions, actions with their audit
//! records, and the guardrails that hold them back. Heal and freeze go through the real Argo
//! CD's API (`Fixture::with_argocd`); the guardrail tests play Argo CD's part themselves, since
//! they are about what argo-drift decides, not how Argo CD carries it out. The controller's
//! clock is a file the test sets (`--clock-file`), so cooldowns and expiries need no sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::{json, Value};
use support::*;

const WAIT: Duration = Duration::from_secs(20);
const T0: i64 = 1_800_000_000;

/// Namespaces, one Git repository with a directory per app holding ConfigMap `<app>`, the live
/// ConfigMaps as Argo CD applied them, and the Applications (label `argo-drift.io/mode` as
/// given, more labels from `labels`).
struct Fixture {
    client: kube::Client,
    /// The Applications' namespace, where the controller also keeps its state.
    argocd: String,
    /// Argo CD's own namespace.
    control_plane: String,
    shop: String,
    repo: GitRepo,
    dir: tempfile::TempDir,
    clock: PathBuf,
}

impl Fixture {
    /// Applications nobody but argo-drift acts on: the test plays Argo CD's part.
    async fn new(apps: &[&str], labels: Value) -> Fixture {
        let client = client().await;
        let argocd = fresh_namespace(&client, "argocd").await;
        let f = Fixture::build(client, argocd.clone(), argocd, apps).await;
        let commit = f.repo.git(&["rev-parse", "HEAD"]);
        for app in apps {
            apply_yaml(&f.client, &f.shop, &config_map(app), "argocd-controller").await;
            let a = application(app, &f.repo_url(), app, &f.shop, Some(&commit));
            apply(&f.client, &f.argocd, labelled(a, &labels), "argocd-server").await;
        }
        f
    }

    /// Applications the real Argo CD manages (in an "apps in any namespace" namespace), synced
    /// once by Argo CD before the test begins.
    async fn with_argocd(apps: &[&str], labels: Value) -> Fixture {
        let client = client().await;
        let real = real_argocd();
        let namespace = real.fresh_apps_namespace(&client).await;
        let f = Fixture::build(client, namespace, real.namespace.clone(), apps).await;
        for app in apps {
            let a = application(app, &f.repo_url(), app, &f.shop, None);
            apply(&f.client, &f.argocd, labelled(a, &labels), "argocd-server").await;
            real.sync_and_wait(&f.client, &f.argocd, app).await;
        }
        f
    }

    /// Namespaces, the Git repository with a directory per app, and the clock.
    async fn build(
        client: kube::Client,
        argocd: String,
        control_plane: String,
        apps: &[&str],
    ) -> Fixture {
        let shop = fresh_namespace(&client, "shop").await;
        let dir = tempfile::tempdir().unwrap();
        let repo = GitRepo::new(&dir.path().join("repo"));
        for app in apps {
            repo.write(&format!("{app}/cm.yaml"), &config_map(app));
        }
        repo.commit("apps");
        let clock = dir.path().join("clock");
        let f = Fixture {
            client,
            argocd,
            control_plane,
            shop,
            repo,
            dir,
            clock,
        };
        f.set_clock(T0);
        f
    }

    fn repo_url(&self) -> String {
        self.repo.url()
    }

    fn set_clock(&self, t: i64) {
        std::fs::write(&self.clock, t.to_string()).unwrap();
    }

    async fn start(&self, extra: &[&str]) -> Running {
        let mut args = vec!["--clock-file", self.clock.to_str().unwrap()];
        args.extend_from_slice(extra);
        Running::start_beside(
            &admin_config().await,
            &self.argocd,
            &self.control_plane,
            &args,
        )
        .await
    }

    /// A controller that acts through the real Argo CD's API.
    async fn start_with_argocd(&self, extra: &[&str]) -> Running {
        let mut args = vec!["--clock-file", self.clock.to_str().unwrap()];
        args.extend_from_slice(extra);
        Running::start_with_real_argocd(&admin_config().await, &self.argocd, &args).await
    }

    /// The live ConfigMap `name` of the shop namespace.
    async fn live(&self, name: &str) -> Value {
        let api = dynamic(&self.client, &self.shop, "v1", "ConfigMap").await;
        serde_json::to_value(api.get(name).await.unwrap()).unwrap()
    }

    /// A policy file: the shipped one with `remediation` lines replaced as given.
    fn policy(&self, replace: &[(&str, &str)]) -> String {
        let mut text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/policy.yaml"),
        )
        .unwrap();
        for (from, to) in replace {
            assert!(text.contains(from), "{from} not in the shipped policy");
            text = text.replacen(from, to, 1);
        }
        let path = self.dir.path().join("policy.yaml");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// An out-of-band change of ConfigMap `name`: a label (low) or its data (medium).
    async fn drift(&self, name: &str, patch: Value) {
        let api = dynamic(&self.client, &self.shop, "v1", "ConfigMap").await;
        merge(&api, name, "kubectl-edit", patch).await;
    }

    async fn apps(&self) -> Api<DynamicObject> {
        dynamic(
            &self.client,
            &self.argocd,
            "argoproj.io/v1alpha1",
            "Application",
        )
        .await
    }

    async fn app(&self, name: &str) -> Value {
        serde_json::to_value(self.apps().await.get(name).await.unwrap()).unwrap()
    }

    /// Annotate the Application: an answer, a reset, or just a nudge so it is looked at again.
    async fn annotate(&self, name: &str, key: &str, value: &str) {
        annotate_application(
            &self.client,
            &self.argocd,
            name,
            "kubectl-annotate",
            json!({key: value}),
        )
        .await;
    }

    /// What Argo CD's application controller does once it ran the operation successfully:
    /// the operation (with its `info`) moves to `status.operationState` and is cleared.
    async fn finish_operation(&self, name: &str) {
        self.end_operation(name, "Succeeded", "successfully synced (all tasks run)")
            .await;
    }

    async fn end_operation(&self, name: &str, phase: &str, message: &str) {
        let operation = self.app(name).await["operation"].clone();
        assert!(operation.is_object(), "no operation on {name} to end");
        let now = k8s_openapi::jiff::Timestamp::now()
            .round(k8s_openapi::jiff::Unit::Second)
            .unwrap()
            .to_string();
        merge(
            &self.apps().await,
            name,
            "argocd-application-controller",
            json!({
                "operation": null,
                "status": {"operationState": {
                    "operation": operation,
                    "phase": phase,
                    "message": message,
                    "startedAt": now,
                    "finishedAt": now,
                }},
            }),
        )
        .await;
    }

    /// Wait for the app's report to satisfy `ready`; on timeout, show the last one.
    async fn report_where(&self, app: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let start = std::time::Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < WAIT {
            if let Some((_, r)) = report(&self.client, &self.argocd, app).await {
                if ready(&r) {
                    return r;
                }
                last = r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last["resources"] = Value::Null;
        panic!("timed out waiting for {what} of {app}; last report: {last:#}");
    }

    async fn audit(&self, app: &str) -> Vec<ConfigMap> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.argocd);
        let selector = argo_drift_controller::remediate::audit_selector(app, &self.argocd);
        api.list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
    }
}

/// The Application with `labels` added to its own.
fn labelled(mut app: Value, labels: &Value) -> Value {
    for (k, v) in labels.as_object().unwrap() {
        app["metadata"]["labels"][k] = v.clone();
    }
    app
}

/// ConfigMap `name` as Git has it: label `team: shop`, data `a: "1"`.
fn config_map(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    team: shop\ndata:\n  a: \"1\"\n"
    )
}

fn held(r: &Value) -> Vec<String> {
    r["decision"]["held"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|h| h["guardrail"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn steps(r: &Value) -> Vec<String> {
    r["decision"]["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| s["step"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_dry_run_reports_what_it_would_do_and_does_nothing() {
    let f = Fixture::new(&["web"], json!({})).await;
    let controller = f.start(&[]).await;
    f.report_where("web", "the first report", |_| true).await;
    f.drift("web", json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    let r = f
        .report_where("web", "a dry-run decision", |r| steps(r) == ["heal"])
        .await;
    assert_eq!(r["decision"]["mode"], "dry-run");
    assert_eq!(held(&r), ["dry-run"]);
    assert!(
        f.app("web").await.get("operation").is_none(),
        "nothing was done"
    );
    assert!(f.audit("web").await.is_empty());
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_drift_is_healed_through_argo_cds_api_audited_and_not_again_within_the_cooldown_across_a_restart(
) {
    // The real Argo CD syncs the named resource: the live object returns to Git's value.
    let f = Fixture::with_argocd(&["web"], json!({"argo-drift.io/mode": "enforce"})).await;
    let real = real_argocd();
    let controller = f.start_with_argocd(&[]).await;
    f.report_where("web", "the first report", |_| true).await;
    f.drift("web", json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    let r = f
        .report_where("web", "the heal", |r| {
            steps(r) == ["heal"] || held(r) == ["operation-in-progress"]
        })
        .await;
    assert_eq!(r["decision"]["mode"], "enforce");
    let app = real
        .wait_app(&f.client, &f.argocd, "web", "Argo CD's heal", |a| {
            a["status"]["operationState"]["operation"]["initiatedBy"]["username"] == "argo-drift"
                && a["status"]["operationState"]["phase"] == "Succeeded"
        })
        .await;
    let operation = &app["status"]["operationState"]["operation"];
    // Argo CD stores the core group as no group at all (omitempty).
    assert_eq!(
        operation["sync"]["resources"],
        json!([{"kind": "ConfigMap", "namespace": f.shop, "name": "web"}])
    );
    assert_eq!(
        app["status"]["operationState"]["syncResult"]["resources"][0]["status"], "Synced",
        "{:#}",
        app["status"]["operationState"]
    );
    assert_eq!(f.live("web").await["metadata"]["labels"]["team"], "shop");
    let first_heal = app["status"]["operationState"]["startedAt"].clone();
    // The audit record: intent, then outcome.
    let records = wait_for("the audit outcome", WAIT, || async {
        let r = f.audit("web").await;
        r.iter()
            .all(|c| c.data.as_ref().unwrap().contains_key("outcome.json"))
            .then_some(r)
    })
    .await;
    assert_eq!(records.len(), 1);
    let labels = records[0].metadata.labels.clone().unwrap();
    assert_eq!(labels["audit-type"], "drift-remediation");
    assert_eq!(labels["argo-drift.io/severity"], "low");
    let data = records[0].data.clone().unwrap();
    let intent: Value = serde_json::from_str(&data["intent.json"]).unwrap();
    assert_eq!(intent["action"], "heal");
    let outcome: Value = serde_json::from_str(&data["outcome.json"]).unwrap();
    assert_eq!(outcome["result"], "succeeded");
    let (_, metrics) = controller.get("/metrics").await;
    assert!(
        metrics.contains("argo_drift_actions_total{action=\"heal\",outcome=\"succeeded\"} 1"),
        "{metrics}"
    );

    // The same field drifts again a minute later: the cooldown holds, also after a restart of
    // the controller (the state is in a ConfigMap).
    controller.stop().await;
    f.set_clock(T0 + 60);
    let controller = f.start_with_argocd(&[]).await;
    f.drift("web", json!({"metadata": {"labels": {"team": "y"}}}))
        .await;
    let r = f
        .report_where("web", "the cooldown", |r| held(r) == ["cooldown"])
        .await;
    assert_eq!(r["decision"]["held"][0]["until"], T0 + 600);
    let app = real.app(&f.client, &f.argocd, "web").await;
    assert_eq!(app["status"]["operationState"]["startedAt"], first_heal);
    assert_eq!(
        f.audit("web").await.len(),
        1,
        "no second heal in the cooldown"
    );
    assert_eq!(f.live("web").await["metadata"]["labels"]["team"], "y");
    // Past the cooldown (and the per-app rate limit), it heals again.
    f.set_clock(T0 + 601);
    f.annotate("web", "test/nudge", "1").await;
    // Argo CD's `startedAt` has one-second resolution and both heals may start within the same
    // second, so the second heal is told apart by argo-drift's second audit record and by the
    // live object, then confirmed as Argo CD's finished operation.
    wait_for("the second heal's audit outcome", WAIT, || async {
        let r = f.audit("web").await;
        (r.len() == 2
            && r.iter()
                .all(|c| c.data.as_ref().unwrap().contains_key("outcome.json")))
        .then_some(())
    })
    .await;
    real.wait_app(&f.client, &f.argocd, "web", "the second heal", |a| {
        a["status"]["operationState"]["phase"] == "Succeeded"
    })
    .await;
    assert_eq!(f.live("web").await["metadata"]["labels"]["team"], "shop");
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_argo_cds_api_a_heal_is_the_applications_operation_written_through_kubernetes() {
    let f = Fixture::new(&["web"], json!({"argo-drift.io/mode": "enforce"})).await;
    let controller = f.start(&[]).await;
    f.report_where("web", "the first report", |_| true).await;
    f.drift("web", json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    let app = wait_for("the operation", WAIT, || async {
        let app = f.app("web").await;
        app.get("operation").is_some().then_some(app)
    })
    .await;
    assert_eq!(app["operation"]["sync"]["resources"][0]["name"], "web");
    assert_eq!(app["operation"]["sync"]["prune"], false);
    // The heal's id, by which its end is known (Argo CD moves the operation, `info`
    // included, to `status.operationState`).
    assert_eq!(app["operation"]["info"][0]["name"], "argo-drift-heal");
    assert!(app["operation"]["info"][0]["value"].is_string(), "{app:#}");
    let managers: Vec<String> = app["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["fieldsV1"]["f:operation"].is_object())
        .map(|m| m["manager"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        managers,
        ["argo-drift"],
        "written under our own field manager"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medium_drift_waits_for_an_approval_naming_its_report_and_an_unanswered_one_expires() {
    let f = Fixture::new(&["web", "api"], json!({"argo-drift.io/mode": "enforce"})).await;
    let controller = f.start(&[]).await;
    f.report_where("web", "the first report", |_| true).await;
    f.drift("web", json!({"data": {"a": "2"}})).await;
    let r = f
        .report_where("web", "the approval request", |r| {
            held(r) == ["approval-pending"]
        })
        .await;
    let id = r["decision"]["pendingApproval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(r["decision"]["pendingApproval"]["expiresAt"], T0 + 86400);
    let reasons =
        |events: Vec<(String, String)>| events.into_iter().map(|e| e.0).collect::<Vec<_>>();
    wait_for("the approval Event", WAIT, || async {
        reasons(events(&f.client, &f.argocd, "web").await)
            .contains(&"DriftApprovalRequested".to_string())
            .then_some(())
    })
    .await;
    // An approval of another report does nothing.
    f.annotate("web", "argo-drift.io/approve", "0000stale")
        .await;
    f.report_where("web", "the stale approval", |r| {
        held(r).contains(&"stale-approval".to_string())
    })
    .await;
    assert!(f.app("web").await.get("operation").is_none());
    // The right one heals.
    // Unanswered for an hour: asked again.
    f.set_clock(T0 + 3600);
    f.annotate("web", "test/nudge", "1").await;
    wait_for("the escalation Event", WAIT, || async {
        reasons(events(&f.client, &f.argocd, "web").await)
            .contains(&"DriftApprovalEscalated".to_string())
            .then_some(())
    })
    .await;
    f.annotate("web", "argo-drift.io/approve", &id).await;
    let app = wait_for("the approved heal", WAIT, || async {
        let app = f.app("web").await;
        app.get("operation").is_some().then_some(app)
    })
    .await;
    assert_eq!(app["operation"]["sync"]["resources"][0]["name"], "web");

    // The other app's request is never answered: it expires after 24 h.
    f.drift("api", json!({"data": {"a": "2"}})).await;
    f.report_where("api", "the second request", |r| {
        held(r) == ["approval-pending"]
    })
    .await;
    f.set_clock(T0 + 3600 + 86400);
    f.annotate("api", "test/nudge", "1").await;
    wait_for("the expiry Event", WAIT, || async {
        reasons(events(&f.client, &f.argocd, "api").await)
            .contains(&"DriftApprovalExpired".to_string())
            .then_some(())
    })
    .await;
    let r = f
        .report_where("api", "no pending approval", |r| {
            r["decision"]["pendingApproval"].is_null()
        })
        .await;
    assert!(f.app("api").await.get("operation").is_none(), "{r:#}");
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_that_freezes_turns_automated_sync_off_through_argo_cd_and_heals_nothing() {
    let f = Fixture::with_argocd(
        &["vault"],
        json!({"argo-drift.io/mode": "enforce", "argo-drift.io/tier": "locked"}),
    )
    .await;
    merge(
        &f.apps().await,
        "vault",
        "argocd-server",
        // Automated sync without self-heal: Argo CD deploys Git's commits but leaves the
        // drift, the evidence, as it is.
        json!({"spec": {"syncPolicy": {"automated": {"prune": true}}}}),
    )
    .await;
    let policy = f.policy(&[(
        "  tiers: {}",
        "  tiers:\n    locked: {medium: [freeze, page]}",
    )]);
    // Actions go to the on-call through the notifier, as routed.
    let pagerduty = Capture::start().await;
    let notifications =
        pagerduty_notifications(f.dir.path(), &pagerduty.url, &["action-taken"], "none", "");
    let controller = f
        .start_with_argocd(&[
            "--policy",
            &policy,
            "--notifications",
            notifications.to_str().unwrap(),
        ])
        .await;
    f.report_where("vault", "the first report", |_| true).await;
    f.drift("vault", json!({"data": {"a": "2"}})).await;
    let app = wait_for("automated sync off", WAIT, || async {
        let app = f.app("vault").await;
        app["spec"]["syncPolicy"]
            .get("automated")
            .is_none()
            .then_some(app)
    })
    .await;
    assert!(
        app.get("operation").is_none(),
        "nothing healed: the drift is evidence"
    );
    assert_eq!(f.live("vault").await["data"]["a"], "2");
    f.report_where("vault", "frozen", |r| held(r) == ["frozen"])
        .await;
    let records = f.audit("vault").await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].metadata.labels.as_ref().unwrap()["argo-drift.io/action"],
        "freeze"
    );
    wait_for("the DriftFrozen Event", WAIT, || async {
        events(&f.client, &f.argocd, "vault")
            .await
            .iter()
            .any(|e| e.0 == "DriftFrozen")
            .then_some(())
    })
    .await;
    let paged = wait_for("the page about the freeze", WAIT, || async {
        pagerduty
            .got()
            .into_iter()
            .find(|e| e["payload"]["class"] == "action-taken")
    })
    .await;
    assert!(
        paged["payload"]["custom_details"]["decision"]
            .as_str()
            .unwrap()
            .contains("automated sync turned off"),
        "{paged:#}"
    );
    assert_eq!(
        app["metadata"]["annotations"]["argo-drift.io/frozen-automated"],
        "{\"prune\":true}"
    );
    // A human looked at it and put the data back: the reset annotation unfreezes the app,
    // automated sync as it was.
    f.drift("vault", json!({"data": {"a": "1"}})).await;
    f.annotate("vault", "argo-drift.io/reset", "2026-11-21 by alice")
        .await;
    let app = wait_for("automated sync back", WAIT, || async {
        let app = f.app("vault").await;
        app["spec"]["syncPolicy"]
            .get("automated")
            .is_some()
            .then_some(app)
    })
    .await;
    assert_eq!(
        app["spec"]["syncPolicy"]["automated"],
        json!({"prune": true})
    );
    assert!(app["metadata"]["annotations"]
        .get("argo-drift.io/frozen-automated")
        .is_none());
    let actions: Vec<String> = f
        .audit("vault")
        .await
        .iter()
        .map(|c| c.metadata.labels.as_ref().unwrap()["argo-drift.io/action"].clone())
        .collect();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(actions.contains(&"unfreeze".to_string()), "{actions:?}");
    controller.stop().await;
}

/// The apps with an operation requested (the heals argo-drift asked for).
async fn operations(f: &Fixture, apps: &[&str]) -> Vec<String> {
    let mut with = Vec::new();
    for n in apps {
        if f.app(n).await.get("operation").is_some() {
            with.push(n.to_string());
        }
    }
    with
}

/// Those of `apps` that did not act: each held by the global rate limit until `until` (its
/// report in `reports`, in the order of `apps`).
fn held_globally_until<'a>(
    apps: &[&'a str],
    reports: &[Value],
    acted: &[String],
    until: i64,
) -> Vec<&'a str> {
    let mut waiting = Vec::new();
    for (n, r) in apps.iter().zip(reports) {
        if acted.contains(&n.to_string()) {
            continue;
        }
        assert_eq!(held(r), ["rate-limit-global"], "{n}: {r:#}");
        assert_eq!(r["decision"]["held"][0]["until"], until, "{n}");
        waiting.push(*n);
    }
    waiting
}

/// Nudge `apps` with the clock at `t` and wait until each has been decided at `t`.
async fn look_again_at(f: &Fixture, apps: &[&str], t: i64) -> Vec<Value> {
    f.set_clock(t);
    let mut reports = Vec::new();
    for n in apps {
        f.annotate(n, "test/nudge", &t.to_string()).await;
    }
    for n in apps {
        reports.push(
            f.report_where(n, &format!("a decision at T0+{}", t - T0), |r| {
                r["decision"]["at"] == t
            })
            .await,
        );
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_six_drifting_apps_acts_exactly_twice_in_the_first_minute_and_again_exactly_when_the_window_allows(
) {
    // Regression: under "at most 2 actions per 60 s" a token bucket let a third heal through
    // at +30 s. The shipped limits: 2 in any 60 s across all apps, 1 in any 300 s per app.
    let names: Vec<String> = (0..6).map(|i| format!("app-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let f = Fixture::new(&refs, json!({"argo-drift.io/mode": "enforce"})).await;
    let controller = f.start(&[]).await;
    let mut timeline = Vec::new();
    for n in &refs {
        f.report_where(n, "the first reports", |_| true).await;
    }
    for n in &refs {
        f.drift(n, json!({"metadata": {"labels": {"team": "x"}}}))
            .await;
    }
    let mut decided = Vec::new();
    for n in &refs {
        decided.push(
            f.report_where(n, "a decision", |r| {
                steps(r) == ["heal"]
                    || held(r) == ["rate-limit-global"]
                    || held(r) == ["operation-in-progress"]
            })
            .await,
        );
    }
    let first = operations(&f, &refs).await;
    assert_eq!(first.len(), 2, "2 heals at +0 s: {first:?}");
    timeline.push(format!("+0 s: 6 apps drift; heals requested for {first:?}"));
    let waiting = held_globally_until(&refs, &decided, &first, T0 + 60);
    assert_eq!(
        decided.iter().find(|r| held(r) == ["rate-limit-global"]).unwrap()["decision"]["held"][0]["reason"],
        "at most 2 action(s) in any 60 s across all applications; the next one may start at 2027-01-15T08:01:00Z"
    );
    timeline.push(format!(
        "+0 s: {waiting:?} held: rate-limit-global until +60 s"
    ));
    // Argo CD runs the two heals.
    for n in &first {
        f.finish_operation(n).await;
    }
    // Half a minute later, and a second before the window allows: nothing more.
    for t in [30, 59] {
        for r in look_again_at(&f, &waiting, T0 + t).await {
            assert_eq!(held(&r), ["rate-limit-global"], "+{t} s: {r:#}");
            assert_eq!(r["decision"]["held"][0]["until"], T0 + 60);
        }
        assert!(operations(&f, &refs).await.is_empty(), "+{t} s");
        timeline.push(format!(
            "+{t} s: looked again at {waiting:?}: all held until +60 s"
        ));
    }
    // Exactly when the window allows: exactly two more.
    let reports = look_again_at(&f, &waiting, T0 + 60).await;
    let second = operations(&f, &refs).await;
    assert_eq!(second.len(), 2, "+60 s: {second:?}");
    let still = held_globally_until(&waiting, &reports, &second, T0 + 120);
    timeline.push(format!(
        "+60 s: heals requested for {second:?}; {still:?} held until +120 s"
    ));
    let (_, metrics) = controller.get("/metrics").await;
    assert!(
        metrics.contains("argo_drift_actions_held_total{guardrail=\"rate-limit-global\"}"),
        "{metrics}"
    );
    assert_eq!(
        metrics
            .lines()
            .find(|l| l
                .starts_with("argo_drift_actions_total{action=\"heal\",outcome=\"succeeded\"}"))
            .unwrap_or_default(),
        "argo_drift_actions_total{action=\"heal\",outcome=\"succeeded\"} 4",
        "{metrics}"
    );
    eprintln!("timeline (controller clock):\n  {}", timeline.join("\n  "));
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sharded_replicas_share_the_apps_and_still_act_only_twice_under_the_global_limit() {
    // Six apps, three replicas each deciding for its own share with its own state in memory:
    // the global limit (2 in any 60 s) is kept in one ConfigMap all replicas write with its
    // resourceVersion, each app's state in a ConfigMap of its own.
    let names: Vec<String> = (0..6).map(|i| format!("app-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let f = Fixture::new(&refs, json!({"argo-drift.io/mode": "enforce"})).await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(f.start(&["--sharding", "true"]).await);
    }
    for n in &refs {
        f.report_where(n, "the first reports", |_| true).await;
    }
    // Every app is reported by the replica consistent hashing gives it.
    let members = live_members(&f).await;
    assert_eq!(members.len(), 3, "{members:?}");
    let configmaps: Api<ConfigMap> = Api::namespaced(f.client.clone(), &f.argocd);
    let mut by = std::collections::BTreeMap::<String, Vec<&str>>::new();
    for n in &refs {
        let key = format!("{}/{n}", f.argocd);
        let owner = argo_drift_controller::leader::owner(&members, &key).unwrap();
        let cm = wait_for("the report by the app's owner", WAIT, || async {
            let cm = configmaps
                .get(&argo_drift_cluster::records::report_name(&f.argocd, n))
                .await
                .ok()?;
            let who = cm
                .metadata
                .annotations
                .as_ref()?
                .get("argo-drift.io/reported-by")?;
            (who == owner).then_some(cm)
        })
        .await;
        assert!(cm.data.is_some());
        by.entry(owner.to_string()).or_default().push(n);
    }
    eprintln!("apps by replica: {by:?}");
    for n in &refs {
        f.drift(n, json!({"metadata": {"labels": {"team": "x"}}}))
            .await;
    }
    for n in &refs {
        f.report_where(n, "a decision", |r| {
            steps(r) == ["heal"]
                || held(r) == ["rate-limit-global"]
                || held(r) == ["operation-in-progress"]
        })
        .await;
    }
    // Let every replica look again a few times: still two.
    for t in [1, 2] {
        look_again_at(&f, &refs, T0 + t).await;
    }
    let healed = operations(&f, &refs).await;
    assert_eq!(healed.len(), 2, "2 heals across the replicas: {healed:?}");
    let state = configmaps
        .get(argo_drift_controller::remediate::STATE_CONFIGMAP)
        .await
        .unwrap();
    let global: Value =
        serde_json::from_str(&state.data.unwrap()[argo_drift_controller::remediate::STATE_KEY])
            .unwrap();
    assert_eq!(
        global["globalActions"].as_array().unwrap().len(),
        2,
        "{global:#}"
    );
    assert!(global.get("appActions").is_none(), "{global:#}");
    // Each app acted on has its own state, naming it.
    for n in &healed {
        let cm = configmaps
            .get(&argo_drift_cluster::records::guardrail_name(&f.argocd, n))
            .await
            .unwrap();
        let state: Value =
            serde_json::from_str(&cm.data.unwrap()[argo_drift_controller::remediate::STATE_KEY])
                .unwrap();
        let key = format!("{}/{n}", f.argocd);
        assert_eq!(
            state["appActions"][&key].as_array().unwrap().len(),
            1,
            "{state:#}"
        );
        assert_eq!(
            state["appActions"].as_object().unwrap().len(),
            1,
            "{state:#}"
        );
    }
    for r in replicas {
        r.stop().await;
    }
    // Stopped replicas gave their Leases up.
    let left = live_members(&f).await;
    assert!(left.is_empty(), "{left:?}");
}

/// The replicas holding a fresh membership Lease in the fixture's state namespace.
async fn live_members(f: &Fixture) -> Vec<String> {
    let leases = Api::namespaced(f.client.clone(), &f.argocd);
    argo_drift_controller::leader::live_members(
        &leases,
        "argo-drift-controller",
        k8s_openapi::jiff::Timestamp::now(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_tripped_in_the_single_state_configmap_of_earlier_versions_still_holds() {
    // Earlier versions kept every app's guardrail state in `argo-drift-guardrails`; after the
    // upgrade an app's part is read from there until the app has a ConfigMap of its own.
    let f = Fixture::new(&["web", "api"], json!({"argo-drift.io/mode": "enforce"})).await;
    let web = format!("{}/web", f.argocd);
    let legacy = json!({"globalActions": [T0 - 10], "breakers": {&web: T0 - 10},
                        "appActions": {&web: [T0 - 10]}});
    let configmaps: Api<ConfigMap> = Api::namespaced(f.client.clone(), &f.argocd);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": argo_drift_controller::remediate::STATE_CONFIGMAP},
        "data": {argo_drift_controller::remediate::STATE_KEY: legacy.to_string()},
    }))
    .unwrap();
    configmaps.create(&Default::default(), &cm).await.unwrap();
    let controller = f.start(&[]).await;
    for n in ["web", "api"] {
        f.report_where(n, "the first report", |_| true).await;
    }
    let (r, _) = held_back(&f, "web", "recurrence-breaker").await;
    assert_eq!(r["decision"]["held"].as_array().unwrap().len(), 1, "{r:#}");
    // Its part now has a ConfigMap of its own, with what the old one held of it.
    let own = configmaps
        .get(&argo_drift_cluster::records::guardrail_name(
            &f.argocd, "web",
        ))
        .await
        .unwrap();
    let state: Value =
        serde_json::from_str(&own.data.unwrap()[argo_drift_controller::remediate::STATE_KEY])
            .unwrap();
    assert_eq!(state["breakers"][&web], T0 - 10, "{state:#}");
    assert!(state.get("globalActions").is_none(), "{state:#}");
    // Another app is not held by web's breaker, and the old global log still counts: the
    // global limit (2 in 60 s) has room for one more.
    f.drift("api", json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    f.report_where("api", "healed", |r| {
        steps(r) == ["heal"] || held(r) == ["operation-in-progress"]
    })
    .await;
    assert_eq!(operations(&f, &["web", "api"]).await, ["api"]);
    let global = configmaps
        .get(argo_drift_controller::remediate::STATE_CONFIGMAP)
        .await
        .unwrap();
    let global: Value =
        serde_json::from_str(&global.data.unwrap()[argo_drift_controller::remediate::STATE_KEY])
            .unwrap();
    assert_eq!(global["globalActions"], json!([T0 - 10, T0]), "{global:#}");
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_prometheus_means_no_automatic_action() {
    let f = Fixture::new(&["web"], json!({"argo-drift.io/mode": "enforce"})).await;
    let policy = f.policy(&[(
        "    windows: []",
        &format!(
            "    windows: []\n    errorBudget: {{prometheusUrl: \"http://127.0.0.1:{}\", query: \"slo:budget\", minimum: 0.2}}",
            free_port()
        ),
    )]);
    let controller = f.start(&["--policy", &policy]).await;
    f.report_where("web", "the first report", |_| true).await;
    let (r, reason) = held_back(&f, "web", "error-budget-unavailable").await;
    assert!(reason.contains("Prometheus"), "{r:#}");
    controller.stop().await;
}

/// Drift `app` (a label) and wait until `guardrail` alone holds its heal back; nothing was
/// requested of Argo CD. Returns the report and the hold's reason.
async fn held_back(f: &Fixture, app: &str, guardrail: &str) -> (Value, String) {
    f.drift(app, json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    let r = f
        .report_where(app, guardrail, |r| held(r) == [guardrail])
        .await;
    assert!(
        f.app(app).await.get("operation").is_none(),
        "{guardrail}: nothing requested"
    );
    let reason = r["decision"]["held"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    (r, reason)
}

/// Heal `app` (wait for the operation), then let Argo CD "finish" it.
async fn healed(f: &Fixture, app: &str) {
    wait_for("a heal", WAIT, || async {
        f.app(app).await.get("operation").map(|_| ())
    })
    .await;
    f.finish_operation(app).await;
}

/// The heal id argo-drift put on Argo CD's last operation of `app`, once it ended as `phase`.
fn heal_of(app: &Value) -> Option<String> {
    app["status"]["operationState"]["operation"]["info"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == "argo-drift-heal")?["value"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recurrence_breaker_counts_only_heals_that_took_effect_in_the_real_argo_cd() {
    // Regression: with `count: 2` the breaker tripped 70 ms after the second heal was
    // requested, before Argo CD had applied it, and stopped automation for a heal that worked.
    let f = Fixture::with_argocd(&["web"], json!({"argo-drift.io/mode": "enforce"})).await;
    let real = real_argocd();
    let policy = f.policy(&[(
        "recurrence: {count: 3, windowSeconds: 1800}",
        "recurrence: {count: 2, windowSeconds: 1800}",
    )]);
    let controller = f.start_with_argocd(&["--policy", &policy]).await;
    let started = std::time::Instant::now();
    let mut timeline = Vec::new();
    let mut note = |clock: i64, what: String| {
        timeline.push(format!(
            "{:>6.1} s real, T0+{clock} s: {what}",
            started.elapsed().as_secs_f64()
        ));
    };
    f.report_where("web", "the first report", |_| true).await;
    let mut heals: Vec<String> = Vec::new();
    // Heals 1 and 2: each drift is healed by the real Argo CD and the label is seen back in
    // sync; the second drift is recurrence 1 of 2.
    for (k, clock) in [(0, 0), (1, 601)] {
        f.set_clock(T0 + clock);
        f.drift(
            "web",
            json!({"metadata": {"labels": {"team": format!("x{k}")}}}),
        )
        .await;
        note(clock, format!("label team drifted to x{k}"));
        let app = real
            .wait_app(&f.client, &f.argocd, "web", "argo-drift's heal", |a| {
                heal_of(a).is_some_and(|h| !heals.contains(&h))
                    && a["status"]["operationState"]["phase"] == "Succeeded"
            })
            .await;
        let id = heal_of(&app).unwrap();
        note(
            clock,
            format!(
                "Argo CD's operation for heal {id} Succeeded ({}, {} to {})",
                app["status"]["operationState"]["message"],
                app["status"]["operationState"]["startedAt"],
                app["status"]["operationState"]["finishedAt"]
            ),
        );
        heals.push(id);
        let r = f
            .report_where("web", "in sync after the heal", |r| {
                r["summary"]["modified"] == 0
            })
            .await;
        assert_eq!(f.live("web").await["metadata"]["labels"]["team"], "shop");
        // The controller has seen the operation end (an analysis after Argo CD's last write),
        // before the clock moves on: the heal's end is dated now.
        let last = heals.last().unwrap().clone();
        wait_for("the heal's end in the guardrail state", WAIT, || async {
            let api: Api<ConfigMap> = Api::namespaced(f.client.clone(), &f.argocd);
            // The app's own part of the guardrail state.
            let cm = api
                .get_opt(&argo_drift_cluster::records::guardrail_name(
                    &f.argocd, "web",
                ))
                .await
                .ok()??;
            let state: Value =
                serde_json::from_str(cm.data?.get(argo_drift_controller::remediate::STATE_KEY)?)
                    .ok()?;
            state["healRecords"]
                .as_object()?
                .values()
                .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                .any(|h| h["id"] == last.as_str() && !h["ended"].is_null())
                .then_some(())
        })
        .await;
        note(clock, "report: in sync; breaker not tripped".into());
        assert!(held(&r).is_empty(), "{r:#}");
    }
    // However often the app was analysed while heal 2 was requested, running and ending
    // (Argo CD writes the Application several times), nothing tripped.
    assert!(
        !events(&f.client, &f.argocd, "web")
            .await
            .iter()
            .any(|e| e.0 == "DriftRecurrenceBreakerTripped"),
        "tripped during a heal that worked"
    );
    let (_, metrics) = controller.get("/metrics").await;
    assert!(
        metrics.contains("argo_drift_recurrence_breaker_trips_total 0"),
        "{metrics}"
    );
    // Recurrence 2 of 2, after heal 2 took effect: the breaker trips, nothing is healed.
    f.set_clock(T0 + 1202);
    f.drift("web", json!({"metadata": {"labels": {"team": "x2"}}}))
        .await;
    note(1202, "label team drifted to x2".into());
    let r = f
        .report_where("web", "the breaker", |r| held(r) == ["recurrence-breaker"])
        .await;
    note(1202, "report: held by recurrence-breaker".into());
    let event = wait_for("the breaker Event", WAIT, || async {
        events(&f.client, &f.argocd, "web")
            .await
            .into_iter()
            .find(|e| e.0 == "DriftRecurrenceBreakerTripped")
            .map(|e| e.1)
    })
    .await;
    note(
        1202,
        format!("Event DriftRecurrenceBreakerTripped: {event}"),
    );
    assert!(
        event.starts_with(
            "recurrence breaker: ConfigMap shop-"
        ) && event.contains("/web metadata.labels.team drifted again after 2 heal(s) within 30 min (heal requested 2027-01-15T08:00:00Z, Argo CD's sync succeeded 2027-01-15T08:00:00Z, in sync 2027-01-15T08:00:00Z, drifted back 2027-01-15T08:10:01Z; heal requested 2027-01-15T08:10:01Z, Argo CD's sync succeeded 2027-01-15T08:10:01Z, in sync 2027-01-15T08:10:01Z, drifted back 2027-01-15T08:20:02Z); automation stopped for the app until a human sets argo-drift.io/reset on the Application"),
        "{event}"
    );
    assert!(r["decision"]["held"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("recurrence breaker tripped"));
    let app = real.app(&f.client, &f.argocd, "web").await;
    assert_eq!(heal_of(&app).as_ref(), heals.last(), "no third heal");
    assert_eq!(f.live("web").await["metadata"]["labels"]["team"], "x2");
    let (_, metrics) = controller.get("/metrics").await;
    assert!(
        metrics.contains("argo_drift_recurrence_breaker_trips_total 1"),
        "{metrics}"
    );
    // A human resets it: healing resumes at once (the real Argo CD heals again).
    f.annotate("web", "argo-drift.io/reset", "1").await;
    note(1202, "annotation argo-drift.io/reset: 1".into());
    let app = real
        .wait_app(
            &f.client,
            &f.argocd,
            "web",
            "the heal after the reset",
            |a| {
                heal_of(a).is_some_and(|h| !heals.contains(&h))
                    && a["status"]["operationState"]["phase"] == "Succeeded"
            },
        )
        .await;
    note(
        1202,
        format!(
            "Argo CD's operation for heal {} Succeeded",
            heal_of(&app).unwrap()
        ),
    );
    f.report_where("web", "in sync after the reset", |r| {
        r["summary"]["modified"] == 0
    })
    .await;
    note(1202, "report: in sync".into());
    eprintln!("timeline:\n  {}", timeline.join("\n  "));
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_act_once_and_share_the_guardrail_state() {
    let f = Fixture::new(&["web"], json!({"argo-drift.io/mode": "enforce"})).await;
    let first = f.start(&[]).await;
    let second = f.start(&[]).await;
    f.report_where("web", "the first report", |_| true).await;
    f.drift("web", json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    healed(&f, "web").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(f.audit("web").await.len(), 1, "one replica acted, once");
    // The leader goes away; the other takes over with the same state: the cooldown holds.
    first.stop().await;
    f.set_clock(T0 + 60);
    f.drift("web", json!({"metadata": {"labels": {"team": "y"}}}))
        .await;
    f.report_where("web", "the cooldown under the new leader", |r| {
        held(r) == ["cooldown"]
    })
    .await;
    assert_eq!(f.audit("web").await.len(), 1);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blast_radius_windows_and_a_spent_error_budget_hold_heals_back() {
    // A fake Prometheus whose answer is the budget left: 5%.
    let router = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(|| async {
            axum::Json(json!({"status": "success", "data": {"resultType": "vector",
                "result": [{"metric": {}, "value": [1800000000, "0.05"]}]}}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let prometheus = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let f = Fixture::new(
        &["night", "budget", "blast"],
        json!({"argo-drift.io/mode": "enforce"}),
    )
    .await;
    let policy = f.policy(&[(
        "    windows: []",
        "    windows: [{kind: deny, schedule: \"0 7 * * *\", duration: 2h}]",
    )]);
    let controller = f.start(&["--policy", &policy]).await;
    for app in ["night", "budget", "blast"] {
        f.report_where(app, "the first report", |_| true).await;
    }
    // T0 is 08:00 UTC: inside the deny window 07:00-09:00.
    let (r, _) = held_back(&f, "night", "window").await;
    assert_eq!(r["decision"]["held"][0]["until"], T0 + 3600);
    controller.stop().await;

    // Outside the window, with 5% of the error budget left and 20% required: page instead.
    f.set_clock(T0 + 3 * 3600);
    let budget = format!(
        "    windows: []\n    errorBudget: {{prometheusUrl: \"{prometheus}\", query: \"slo:budget{{app='{{{{name}}}}'}}\", minimum: 0.2}}"
    );
    let policy = f.policy(&[("    windows: []", budget.as_str())]);
    let controller = f.start(&["--policy", &policy]).await;
    let (r, reason) = held_back(&f, "budget", "error-budget").await;
    assert!(reason.contains("0.050"), "{r:#}");
    assert!(
        steps(&r).contains(&"page".to_string()),
        "pages instead: {r:#}"
    );
    controller.stop().await;

    // A blast radius of no resource at all: nothing is healed automatically.
    let policy = f.policy(&[(
        "    blastRadius: {maxResources: 10, maxPercent: 50}",
        "    blastRadius: {maxResources: 0, maxPercent: 50}",
    )]);
    let controller = f.start(&["--policy", &policy]).await;
    let (r, reason) = held_back(&f, "blast", "blast-radius").await;
    assert!(reason.contains("1 of 1"), "{r:#}");
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_closes_the_request_and_audit_records_are_kept_to_the_limit() {
    let f = Fixture::new(&["web", "api"], json!({"argo-drift.io/mode": "enforce"})).await;
    let controller = f.start(&["--audit-keep", "2"]).await;
    f.report_where("web", "the first report", |_| true).await;
    f.drift("web", json!({"data": {"a": "2"}})).await;
    let r = f
        .report_where("web", "the request", |r| held(r) == ["approval-pending"])
        .await;
    let id = r["decision"]["pendingApproval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    f.annotate("web", "argo-drift.io/reject", &id).await;
    f.report_where("web", "no request after the rejection", |r| {
        r["decision"]["pendingApproval"].is_null() && held(r).is_empty()
    })
    .await;
    assert!(f.app("web").await.get("operation").is_none());

    // Three heals of "api" (past cooldown and rate limit each time): two records stay.
    for k in 0..3 {
        f.set_clock(T0 + 1000 * (k + 1));
        f.drift(
            "api",
            json!({"metadata": {"labels": {"team": format!("x{k}")}}}),
        )
        .await;
        healed(&f, "api").await;
    }
    let records = wait_for("the trimmed audit", WAIT, || async {
        let r = f.audit("api").await;
        (r.len() == 2).then_some(r)
    })
    .await;
    let mut times: Vec<i64> = records
        .iter()
        .map(|c| {
            let intent: Value =
                serde_json::from_str(&c.data.as_ref().unwrap()["intent.json"]).unwrap();
            intent["decidedAt"].as_i64().unwrap()
        })
        .collect();
    times.sort();
    assert_eq!(times, [T0 + 2000, T0 + 3000], "the newest are kept");
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_mode_and_ignored_drift_decide_nothing() {
    let f = Fixture::new(&["watched"], json!({"argo-drift.io/mode": "observe"})).await;
    let quiet = Fixture::new(
        &["quiet"],
        json!({"argo-drift.io/mode": "enforce", "argo-drift.io/tier": "quiet"}),
    )
    .await;
    let controller = f.start(&[]).await;
    f.report_where("watched", "the first report", |_| true)
        .await;
    f.drift("watched", json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    let r = f
        .report_where("watched", "the drift", |r| r["summary"]["modified"] == 1)
        .await;
    assert_eq!(r["decision"]["mode"], "observe");
    assert!(steps(&r).is_empty() && held(&r).is_empty(), "{r:#}");
    controller.stop().await;

    let policy = quiet.policy(&[("  tiers: {}", "  tiers:\n    quiet: {low: [ignore]}")]);
    let controller = quiet.start(&["--policy", &policy]).await;
    quiet
        .report_where("quiet", "the first report", |_| true)
        .await;
    quiet
        .drift("quiet", json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    let r = quiet
        .report_where("quiet", "the drift", |r| r["summary"]["modified"] == 1)
        .await;
    assert_eq!(r["decision"]["resources"][0]["actions"], json!(["ignore"]));
    assert!(steps(&r).is_empty() && held(&r).is_empty(), "{r:#}");
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_app_gets_one_action_per_five_minutes() {
    let f = Fixture::new(
        &["web"],
        json!({"argo-drift.io/mode": "enforce", "argo-drift.io/tier": "eager"}),
    )
    .await;
    let policy = f.policy(&[("  tiers: {}", "  tiers:\n    eager: {medium: [heal]}")]);
    let controller = f.start(&["--policy", &policy]).await;
    f.report_where("web", "the first report", |_| true).await;
    f.drift("web", json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    healed(&f, "web").await;
    // A minute later another field drifts: no cooldown on it, but the app had its one action in any 300 s.
    f.set_clock(T0 + 60);
    f.drift("web", json!({"data": {"a": "2"}})).await;
    let r = f
        .report_where("web", "the per-app rate limit", |r| {
            held(r) == ["rate-limit-app"]
        })
        .await;
    assert_eq!(r["decision"]["held"][0]["until"], T0 + 300);
    f.set_clock(T0 + 300);
    f.annotate("web", "test/nudge", "1").await;
    healed(&f, "web").await;
    assert_eq!(f.audit("web").await.len(), 2);
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_with_a_seventy_character_name_is_reported_and_healed_with_its_audit_record()
{
    // Valid for an Application (up to 253 characters), too long for a label value (63).
    let name = format!("payments-{}", "a".repeat(61));
    let f = Fixture::new(&[&name], json!({"argo-drift.io/mode": "enforce"})).await;
    let controller = f.start(&[]).await;
    f.report_where(&name, "the first report", |_| true).await;
    let (cm, _) = report(&f.client, &f.argocd, &name).await.unwrap();
    let label = cm.metadata.labels.unwrap()["argo-drift.io/app"].clone();
    assert!(
        label.len() <= 63 && label.starts_with("payments-aaa"),
        "{label}"
    );
    f.drift(&name, json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    healed(&f, &name).await;
    let records = wait_for("the audit outcome", WAIT, || async {
        let r = f.audit(&name).await;
        (r.len() == 1 && r[0].data.as_ref().unwrap().contains_key("outcome.json")).then_some(r)
    })
    .await;
    assert_eq!(
        records[0].metadata.labels.as_ref().unwrap()["argo-drift.io/app"],
        label
    );
    let intent: Value =
        serde_json::from_str(&records[0].data.as_ref().unwrap()["intent.json"]).unwrap();
    assert_eq!(intent["application"], format!("{}/{name}", f.argocd));
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_whose_audit_intent_cannot_be_written_does_not_run() {
    let f = Fixture::new(&["web"], json!({"argo-drift.io/mode": "enforce"})).await;
    // The API server itself refuses audit records in this namespace (a ValidatingAdmissionPolicy:
    // a full disk or a quota would look the same to argo-drift).
    let name = format!("deny-audit-{}", f.argocd);
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["configmaps"]}]},
            "validations": [{"expression":
                "!has(object.metadata.labels) || !('audit-type' in object.metadata.labels)",
                "message": "audit records are not accepted here"}]}
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels":
                {"kubernetes.io/metadata.name": f.argocd}}}}
    });
    apply(&f.client, "", policy, "argo-drift-tests").await;
    apply(&f.client, "", binding, "argo-drift-tests").await;
    // Admission policies take a moment to load: wait until a record is refused.
    let configmaps: kube::Api<ConfigMap> = kube::Api::namespaced(f.client.clone(), &f.argocd);
    wait_for("the policy in force", WAIT, || async {
        let probe: ConfigMap = serde_json::from_value(json!({"metadata": {
            "generateName": "probe-", "labels": {"audit-type": "probe"}}}))
        .unwrap();
        configmaps
            .create(&kube::api::PostParams::default(), &probe)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let controller = f.start(&[]).await;
    f.report_where("web", "the first report", |_| true).await;
    f.drift("web", json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    let (_, metrics) = wait_for("the failed action", WAIT, || async {
        let m = controller.get("/metrics").await;
        m.1.contains("argo_drift_actions_total{action=\"heal\",outcome=\"failed\"}")
            .then_some(m)
    })
    .await;
    assert!(!metrics.contains("outcome=\"succeeded\""), "{metrics}");
    assert!(
        f.app("web").await.get("operation").is_none(),
        "no sync was asked for without its audit record"
    );
    controller.stop().await;
    for (api_version, kind) in [
        (
            "admissionregistration.k8s.io/v1",
            "ValidatingAdmissionPolicyBinding",
        ),
        (
            "admissionregistration.k8s.io/v1",
            "ValidatingAdmissionPolicy",
        ),
    ] {
        let api = dynamic(&f.client, "", api_version, kind).await;
        let _ = api.delete(&name, &Default::default()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_carries_its_drift_summary_and_the_shipped_health_check_reads_it() {
    let f = Fixture::new(&["web"], json!({})).await;
    f.annotate("web", "argo-drift.io/degrade-at", "low").await;
    let controller = f.start(&[]).await;
    f.report_where("web", "the first report", |_| true).await;
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../health-checks/argoproj.io/Application/health.lua"),
    )
    .unwrap();
    let health = |app: &Value| {
        argo_drift_controller::health::run(&script, app, Default::default())
            .unwrap()
            .unwrap()
    };
    let app = wait_for("the in-sync summary", WAIT, || async {
        let app = f.app("web").await;
        (app["metadata"]["annotations"]["argo-drift.io/drift-severity"] == "none").then_some(app)
    })
    .await;
    assert_eq!(health(&app).status, "Healthy");
    f.drift("web", json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    let app = wait_for("the drift summary", WAIT, || async {
        let app = f.app("web").await;
        (app["metadata"]["annotations"]["argo-drift.io/drift-severity"] == "low").then_some(app)
    })
    .await;
    let status = health(&app);
    assert_eq!(status.status, "Degraded");
    assert!(
        status
            .message
            .starts_with("argo-drift: low drift in 1 resource"),
        "{status:?}"
    );
    let managers: Vec<&str> = app["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["fieldsV1"]["f:metadata"]["f:annotations"]["f:argo-drift.io/drift-severity"]
                .is_object()
        })
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["argo-drift"]);
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_action_starts_workflows_behind_the_rate_limit_and_reports_how_they_end() {
    let f = Fixture::new(
        &["a", "b", "c"],
        json!({"argo-drift.io/mode": "enforce", "argo-drift.io/tier": "wf"}),
    )
    .await;
    let dry = Fixture::new(&["d"], json!({"argo-drift.io/tier": "wf"})).await;
    let runs = fresh_namespace(&f.client, "workflows").await;
    let workflows = dynamic(&f.client, &runs, "argoproj.io/v1alpha1", "Workflow").await;
    wait_for("the Workflow CRD", WAIT, || async {
        workflows.list(&Default::default()).await.ok()
    })
    .await;
    let replace = [
        ("  tiers: {}", "  tiers:\n    wf: {low: [workflow]}"),
        (
            "  approvals:",
            &*format!("  workflow: {{template: argo-drift-diagnose, namespace: {runs}, serviceAccount: drift-runner, parameters: {{team: sre}}, ttlSecondsAfterFinished: 600}}\n  approvals:"),
        ),
    ];
    let policy = f.policy(&replace);
    let controller = f.start(&["--policy", &policy]).await;
    for app in ["a", "b", "c"] {
        f.report_where(app, "the first report", |_| true).await;
    }
    for app in ["a", "b", "c"] {
        f.drift(app, json!({"metadata": {"labels": {"team": "x"}}}))
            .await;
    }
    let started = wait_for("two Workflows", WAIT, || async {
        let list = workflows.list(&Default::default()).await.ok()?;
        (list.items.len() >= 2).then_some(list.items)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut limited = 0;
    for app in ["a", "b", "c"] {
        let r = f
            .report_where(app, "a decision", |r| {
                !steps(r).is_empty() || !held(r).is_empty()
            })
            .await;
        if held(&r) == ["rate-limit-global"] {
            limited += 1;
        }
    }
    assert_eq!(limited, 1, "2 actions per minute: the third app waits");
    let (_, metrics) = controller.get("/metrics").await;
    assert!(
        metrics.contains("argo_drift_actions_total{action=\"workflow\",outcome=\"created\"} 2"),
        "{metrics}"
    );
    assert_eq!(
        workflows
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let w = serde_json::to_value(&started[0]).unwrap();
    assert_eq!(
        w["spec"]["workflowTemplateRef"]["name"],
        "argo-drift-diagnose"
    );
    assert_eq!(w["spec"]["serviceAccountName"], "drift-runner");
    assert_eq!(w["spec"]["ttlStrategy"]["secondsAfterCompletion"], 600);
    let app = w["metadata"]["labels"]["argo-drift.io/app"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        w["metadata"]["labels"]["argo-drift.io/app-namespace"],
        f.argocd.as_str()
    );
    let params: std::collections::BTreeMap<String, String> = w["spec"]["arguments"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(params["app"], format!("{}/{app}", f.argocd));
    assert_eq!(params["kind"], "ConfigMap");
    assert_eq!(params["name"], app);
    assert_eq!(params["namespace"], f.shop);
    assert_eq!(params["fields"], "metadata.labels.team");
    assert_eq!(params["severity"], "low");
    assert_eq!(params["team"], "sre");
    assert_eq!(
        w["metadata"]["labels"]["argo-drift.io/report"]
            .as_str()
            .unwrap(),
        params["report-id"]
    );
    // The audit names the Workflow.
    let records = f.audit(&app).await;
    let outcome: Value =
        serde_json::from_str(&records[0].data.as_ref().unwrap()["outcome.json"]).unwrap();
    assert_eq!(
        outcome["workflow"],
        format!("{runs}/{}", w["metadata"]["name"].as_str().unwrap())
    );

    // The Workflow fails: reported on its Application, once.
    merge(
        &workflows,
        w["metadata"]["name"].as_str().unwrap(),
        "workflow-controller",
        json!({"status": {"phase": "Failed", "message": "kubectl: forbidden"}}),
    )
    .await;
    let failed = wait_for("the failure Event", WAIT, || async {
        events(&f.client, &f.argocd, &app)
            .await
            .into_iter()
            .find(|e| e.0 == "DriftWorkflowFailed")
    })
    .await;
    assert!(
        failed.1.contains("failed: kubectl: forbidden"),
        "{failed:?}"
    );
    let marked = wait_for("the reported mark", WAIT, || async {
        let w = workflows
            .get(started[0].metadata.name.as_deref().unwrap())
            .await
            .ok()?;
        w.metadata
            .annotations?
            .get("argo-drift.io/reported")
            .cloned()
    })
    .await;
    assert_eq!(marked, "Failed");
    controller.stop().await;

    // Dry-run: the report shows the Workflow it would start; nothing is created.
    let policy = dry.policy(&replace);
    let controller = dry.start(&["--policy", &policy]).await;
    dry.report_where("d", "the first report", |_| true).await;
    dry.drift("d", json!({"metadata": {"labels": {"team": "x"}}}))
        .await;
    let r = dry
        .report_where("d", "the dry-run decision", |r| {
            steps(r) == ["runWorkflows"]
        })
        .await;
    assert_eq!(r["decision"]["mode"], "dry-run");
    assert_eq!(
        r["decision"]["steps"][0]["workflows"][0]["template"],
        "argo-drift-diagnose"
    );
    assert_eq!(
        workflows
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    controller.stop().await;
}
