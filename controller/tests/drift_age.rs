//! Drift age against the real API server: each drifted field carries when it was first seen,
//! kept while it lasts, across a restart of the controller; the oldest drift's age is exported
//! as `argo_drift_oldest_drift_seconds`; a drift gone and back is new.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
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
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    configmaps
        .patch("flags", &edit, &Patch::Merge(json!({ "data": data })))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_keeps_its_first_seen_time_across_a_restart_and_its_age_is_exported() {
    let client = client().await;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  mode: safe\n  level: low\n";
    let synced = synced_app(&client, "flags", "flags.yaml", cm).await;
    let (argocd, shop) = (&synced.argocd, &synced.shop);
    let app = format!("{argocd}/flags");
    let args = ["--leader-election", "false"];
    let controller = Running::start(&admin_config().await, argocd, &args).await;
    wait_for("the first report", Duration::from_secs(20), || async {
        report(&client, argocd, "flags").await
    })
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), shop);

    edit(&configmaps, json!({"mode": "yolo"})).await;
    let r = wait_for("the first drift", Duration::from_secs(30), || async {
        let (_, r) = report(&client, argocd, "flags").await?;
        first_seen(&r, "/data/mode").map(|_| r)
    })
    .await;
    let mode_since = first_seen(&r, "/data/mode").unwrap();
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
    let r = wait_for("the second drift", Duration::from_secs(30), || async {
        let (_, r) = report(&client, argocd, "flags").await?;
        first_seen(&r, "/data/level").map(|_| r)
    })
    .await;
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
    edit(&configmaps, json!({"mode": "yolo"})).await;
    let r = wait_for("the drift back", Duration::from_secs(30), || async {
        let (_, r) = report(&client, argocd, "flags").await?;
        first_seen(&r, "/data/mode").map(|_| r)
    })
    .await;
    assert!(first_seen(&r, "/data/mode").unwrap() > level_since, "{r:#}");
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);
}
