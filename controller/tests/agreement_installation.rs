//! Agreement with the real Argo CD on `installationID` (argocd-cm): set, an object that carries
//! the app's tracking mark but another installation's ID is neither Argo CD's nor argo-drift's;
//! one with this installation's ID is an extra object for both.
//!
//! A setting of the whole installation: every app Argo CD manages is compared with it. So it has
//! a test binary of its own (cargo runs test binaries one after another) and puts the setting
//! back when it ends, failed or not (`ArgoCdSetting`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::agreement::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_another_installation_are_nobodys_for_argo_cd_and_argo_drift_alike() {
    let real = real_argocd();
    let client = client().await;
    let id = format!("hub-{:x}", rand_u32());
    let _setting = ArgoCdSetting::set(
        &client,
        &real.namespace,
        "argo-drift-tests-installation",
        json!({"installationID": id}),
    )
    .await;
    let api = real.client();
    wait_for(
        "the installation ID in Argo CD's settings",
        Duration::from_secs(30),
        || async {
            let answer = api.settings().await.unwrap();
            (answer["installationID"] == id.as_str()).then_some(())
        },
    )
    .await;
    let (s, controller, _dir) = Scenario::config_map_app(&client).await;
    let (apps, shop) = (s.apps.clone(), s.shop.clone());
    // Argo CD marks what it applies with its installation ID.
    let configmaps = dynamic(&client, &shop, "v1", "ConfigMap").await;
    let web = serde_json::to_value(configmaps.get("web").await.unwrap()).unwrap();
    assert_eq!(
        web["metadata"]["annotations"]["argocd.argoproj.io/installation-id"],
        id.as_str(),
        "{web:#}"
    );
    s.settled(&[]).await;
    let tracked = |name: &str, installation: &str| -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "annotations": {
                "argocd.argoproj.io/tracking-id": format!("{apps}_web:/ConfigMap:{shop}/{name}"),
                "argocd.argoproj.io/installation-id": installation}},
            "data": {"k": "v"}})
    };
    apply(&client, &shop, tracked("ours", &id), "kubectl").await;
    apply(&client, &shop, tracked("theirs", "another-hub"), "kubectl").await;
    let r = s.settled(&["ConfigMap/ours"]).await;
    assert_eq!(
        class_of(&r, "ConfigMap", "ours"),
        ("OutOfSync".into(), "agree".into())
    );
    assert!(!names(&r, "theirs"), "{r:#}");
    controller.stop().await;
}
