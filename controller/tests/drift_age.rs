//! Drift age against the real API server: each drifted field carries when it was first seen,
//! kept while it lasts, across a restart of the controller; the oldest drift's age is exported
//! as `argo_drift_oldest_drift_seconds`; a drift gone and back is new.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::{json, Value};
use support::*;

/// The first-seen time of the change at `path` in a report, if it is there.
fn first_seen(report: &Value, path: &str) -> Option<String> {
    report["resources"]
        .as_array()?
        .iter()
        .flat_map(|r| r["changes"].as_array().into_iter().flatten())
        .find(|c| c["path"] == path)?
        .get("firstSeen")?
        .as_str()
        .map(str::to_string)
}

/// The value of `argo_drift_oldest_drift_seconds` for `app` and `severity` in a scrape.
fn oldest(metrics: &str, app: &str, severity: &str) -> Option<f64> {
    let prefix =
        format!("argo_drift_oldest_drift_seconds{{app=\"{app}\",severity=\"{severity}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|v| v.parse().unwrap())
}

async fn edit(configmaps: &Api<ConfigMap>, data: Value) {
    edit_config_map(configmaps, "flags", data).await;
}

/// A controller started with `args` for the app of `synced`, once it has reported on it; and
/// the app's live ConfigMaps.
async fn start_reporting(
    client: &kube::Client,
    synced: &SyncedApp,
    args: &[&str],
) -> (Running, Api<ConfigMap>) {
    let controller = Running::start(&admin_config().await, &synced.argocd, args).await;
    wait_for("the first report", Duration::from_secs(20), || async {
        report(client, &synced.argocd, "flags").await
    })
    .await;
    (controller, Api::namespaced(client.clone(), &synced.shop))
}

/// The report once the field at `path` is dated as drifted.
async fn dated(client: &kube::Client, argocd: &str, path: &str) -> Value {
    wait_for(
        &format!("{path} to drift"),
        Duration::from_secs(30),
        || async {
            let (_, r) = report(client, argocd, "flags").await?;
            first_seen(&r, path).map(|_| r)
        },
    )
    .await
}

/// `data.mode` edited by hand: the report once it dates that drift, and its first-seen time.
async fn drift_mode(
    client: &kube::Client,
    argocd: &str,
    configmaps: &Api<ConfigMap>,
) -> (Value, String) {
    edit(configmaps, json!({"mode": "yolo"})).await;
    let r = dated(client, argocd, "/data/mode").await;
    let since = first_seen(&r, "/data/mode").unwrap();
    (r, since)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_keeps_its_first_seen_time_across_a_restart_and_its_age_is_exported() {
    let client = client().await;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  mode: safe\n  level: low\n";
    let synced = synced_app(&client, "flags", "flags.yaml", cm).await;
    let argocd = &synced.argocd;
    let app = format!("{argocd}/flags");
    let args = ["--leader-election", "false"];
    let (controller, configmaps) = start_reporting(&client, &synced, &args).await;

    let (r, mode_since) = drift_mode(&client, argocd, &configmaps).await;
    let resource = &r["resources"][0];
    assert_eq!(resource["firstSeen"], mode_since.as_str(), "{r:#}");
    // Kubernetes' form of a time: RFC 3339, UTC, to the second.
    assert!(
        mode_since.len() == 20 && mode_since.ends_with('Z'),
        "{mode_since}"
    );

    // A second field drifts later: it has its own time, the first keeps its own.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    edit(&configmaps, json!({"level": "high"})).await;
    let r = dated(&client, argocd, "/data/level").await;
    let level_since = first_seen(&r, "/data/level").unwrap();
    assert_eq!(
        first_seen(&r, "/data/mode").as_deref(),
        Some(mode_since.as_str()),
        "{r:#}"
    );
    assert!(level_since > mode_since, "{level_since} vs {mode_since}");
    assert_eq!(r["resources"][0]["firstSeen"], mode_since.as_str());

    // The age is taken at the scrape: it grows between analyses.
    let (_, metrics) = controller.get("/metrics").await;
    let age = oldest(&metrics, &app, "medium")
        .unwrap_or_else(|| panic!("no age for {app}, medium:\n{metrics}"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, metrics) = controller.get("/metrics").await;
    let later = oldest(&metrics, &app, "medium").unwrap();
    assert!(later >= age + 1.0, "{age} then {later}");
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);

    // A new controller (a restart, or another replica taking the app over) reads the times
    // back from the report: the drift, edited again meanwhile, keeps its first time.
    edit(&configmaps, json!({"mode": "reckless"})).await;
    let controller = Running::start(&admin_config().await, argocd, &args).await;
    let r = wait_for(
        "the report after the restart",
        Duration::from_secs(30),
        || async {
            let (_, r) = report(&client, argocd, "flags").await?;
            let changes = r["resources"][0]["changes"].as_array()?;
            changes
                .iter()
                .any(|c| c["path"] == "/data/mode" && c["live"] == "reckless")
                .then_some(r)
        },
    )
    .await;
    assert_eq!(
        first_seen(&r, "/data/mode").as_deref(),
        Some(mode_since.as_str()),
        "{r:#}"
    );
    assert_eq!(
        first_seen(&r, "/data/level").as_deref(),
        Some(level_since.as_str())
    );
    let (_, metrics) = controller.get("/metrics").await;
    let age = oldest(&metrics, &app, "medium").unwrap();
    assert!(age >= later, "{later} before the restart, {age} after");

    // Both fields put back as Git has them: in sync, and the app's age series is gone.
    edit(&configmaps, json!({"mode": "safe", "level": "low"})).await;
    wait_for("the drift to go", Duration::from_secs(30), || async {
        let (_, r) = report(&client, argocd, "flags").await?;
        (r["summary"]["modified"] == 0).then_some(())
    })
    .await;
    let (_, metrics) = controller.get("/metrics").await;
    assert_eq!(oldest(&metrics, &app, "medium"), None, "{metrics}");

    // The same field drifting again is a new drift, dated now.
    let (r, since) = drift_mode(&client, argocd, &configmaps).await;
    assert!(since > level_since, "{r:#}");
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);
}

/// The `drift-stale` events PagerDuty got so far.
fn stale_pages(pagerduty: &Capture) -> Vec<Value> {
    pagerduty
        .got()
        .into_iter()
        .filter(|e| {
            e["payload"]["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("Drift outlived its limit"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_outliving_its_limit_is_announced_once_even_across_a_restart_and_again_when_new() {
    let client = client().await;
    let dir = tempfile::tempdir().unwrap();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  mode: safe\n";
    let synced = synced_app(&client, "flags", "flags.yaml", cm).await;
    let argocd = &synced.argocd;
    let pagerduty = Capture::start().await;
    let notifications = pagerduty_notifications(
        dir.path(),
        &pagerduty.url,
        &["drift-stale"],
        "low",
        "resolveHoldSeconds: 0\nstaleAfterSeconds: {medium: 3}\n",
    );
    let args = ["--notifications", notifications.to_str().unwrap()];
    let (controller, configmaps) = start_reporting(&client, &synced, &args).await;

    let (_, since) = drift_mode(&client, argocd, &configmaps).await;
    // Not yet due: checked only while the drift is surely younger than its 3 s limit (a slow
    // machine may take that long to get here).
    let age =
        chrono::Utc::now().fixed_offset() - chrono::DateTime::parse_from_rfc3339(&since).unwrap();
    let pages = stale_pages(&pagerduty);
    if age < chrono::Duration::seconds(2) {
        assert!(
            pages.is_empty(),
            "paged at {age} for a 3 s limit: {pages:?}"
        );
    }
    // Nothing changes after the drift: the controller looks again when the limit falls due.
    let pages = wait_for("the stale page", Duration::from_secs(20), || async {
        let pages = stale_pages(&pagerduty);
        (!pages.is_empty()).then_some(pages)
    })
    .await;
    let summary = pages[0]["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("{argocd}/flags — medium drift has lasted "))
            && summary.ends_with("(limit 3s)"),
        "{summary}"
    );
    let dedup_key = pages[0]["dedup_key"].as_str().unwrap().to_string();
    let (cm, _) = report(&client, argocd, "flags").await.unwrap();
    let annotations = cm.metadata.annotations.unwrap();
    assert_eq!(annotations["argo-drift.io/stale-announced"], "medium");
    assert!(dedup_key.ends_with(&annotations["argo-drift.io/incident"]));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stale_pages(&pagerduty).len(), 1, "announced once");
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);

    // A restart, and the drift edited again meanwhile: still the same drift, not announced again.
    edit(&configmaps, json!({"mode": "reckless"})).await;
    let controller = Running::start(&admin_config().await, argocd, &args).await;
    wait_for(
        "the report after the restart",
        Duration::from_secs(30),
        || async {
            let (_, r) = report(&client, argocd, "flags").await?;
            let change = &r["resources"][0]["changes"][0];
            (change["live"] == "reckless").then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stale_pages(&pagerduty).len(),
        1,
        "not again after the restart"
    );

    // Back in sync, then the field drifts again: a new drift, announced when it is due.
    edit(&configmaps, json!({"mode": "safe"})).await;
    wait_for("the drift to go", Duration::from_secs(30), || async {
        let (_, r) = report(&client, argocd, "flags").await?;
        (r["summary"]["modified"] == 0).then_some(())
    })
    .await;
    edit(&configmaps, json!({"mode": "yolo"})).await;
    wait_for("the second stale page", Duration::from_secs(30), || async {
        (stale_pages(&pagerduty).len() == 2).then_some(())
    })
    .await;
    let (_, r) = report(&client, argocd, "flags").await.unwrap();
    assert!(first_seen(&r, "/data/mode").unwrap() > since, "{r:#}");
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_the_analysis_fails_keeps_the_drifts_first_seen_times() {
    let client = client().await;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  mode: safe\n";
    let synced = synced_app(&client, "flags", "flags.yaml", cm).await;
    let argocd = &synced.argocd;
    let args = ["--leader-election", "false"];
    let (controller, configmaps) = start_reporting(&client, &synced, &args).await;
    let (_, since) = drift_mode(&client, argocd, &configmaps).await;

    // Git cannot be read: the report says so and holds no resources.
    let applications = dynamic(&client, argocd, "argoproj.io/v1alpha1", "Application").await;
    let source = |url: &str| json!({"spec": {"source": {"repoURL": url}}});
    applications
        .patch(
            "flags",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(source(&format!(
                "git://127.0.0.1:{}/nowhere.git",
                free_port()
            ))),
        )
        .await
        .unwrap();
    wait_for("the failure report", Duration::from_secs(30), || async {
        let (_, r) = report(&client, argocd, "flags").await?;
        r["error"].is_string().then_some(())
    })
    .await;
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);

    // Restarted while it still fails, then Git is fixed: the drift keeps its first time.
    let controller = Running::start(&admin_config().await, argocd, &args).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    applications
        .patch(
            "flags",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(source(&synced.repo.url())),
        )
        .await
        .unwrap();
    let (cm, r) = wait_for("the report again", Duration::from_secs(30), || async {
        let (cm, r) = report(&client, argocd, "flags").await?;
        first_seen(&r, "/data/mode").map(|_| (cm, r))
    })
    .await;
    assert_eq!(first_seen(&r, "/data/mode"), Some(since), "{r:#}");
    // The times kept beside the failure report go with it.
    assert!(
        !cm.data.unwrap().contains_key("first-seen.json"),
        "a report with resources carries its times itself"
    );
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);
}
