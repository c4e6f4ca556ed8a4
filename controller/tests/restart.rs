//! Resilience: the API server goes away and comes back; the controller re-lists and misses no
//! drift. A binary of its own, because it restarts the shared test API server (cargo runs test
//! binaries one after another).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_made_while_the_controller_reconnects_after_an_api_server_restart_is_reported() {
    let client = client().await;
    let ours = kubeconfig().starts_with(
        std::env::var("ARGO_DRIFT_TESTENV_DIR").unwrap_or("/tmp/argo-drift-testenv".into()),
    );
    if !ours {
        eprintln!("skipped: the cluster in KUBECONFIG is not the project's own test API server");
        return;
    }
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  mode: safe\n";
    let synced = synced_app(&client, "flags", "flags.yaml", cm).await;
    let (argocd, shop) = (&synced.argocd, &synced.shop);
    let controller = Running::start(
        &admin_config().await,
        argocd,
        &["--leader-election", "false"],
    )
    .await;
    wait_for("the first report", Duration::from_secs(20), || async {
        report(&client, argocd, "flags").await
    })
    .await;

    let out = std::process::Command::new(root().join("scripts/testenv.sh"))
        .args(["restart-apiserver", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Straight after the restart (and the shared Argo CD's, which the script restarts with it).
    let client = support::client().await;
    let configmaps =
        kube::api::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), shop);
    edit_config_map(&configmaps, "flags", json!({"mode": "yolo"})).await;
    let (cm, r) = wait_for(
        "the drift made across the restart",
        Duration::from_secs(60),
        || async {
            let (cm, r) = report(&client, argocd, "flags").await?;
            (r["summary"]["modified"] == 1).then_some((cm, r))
        },
    )
    .await;
    assert_eq!(
        cm.metadata.labels.as_ref().unwrap()["argo-drift.io/severity"],
        "medium",
        "{r:#}"
    );
    let (_, metrics) = controller.get("/metrics").await;
    // The ConfigMap watch lost its connection and listed again.
    assert!(
        metrics
            .contains("argo_drift_watch_restarts_total{cluster=\"in-cluster\",kind=\"ConfigMap\"}"),
        "{metrics}"
    );
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);
}
