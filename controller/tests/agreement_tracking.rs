//! Agreement with the real Argo CD on how it tracks objects: `application.resourceTrackingMethod:
//! label` with a custom `application.instanceLabelKey`. Argo CD then labels what it applies with
//! that key; an object carrying the label is the app's (extra for both), one carrying only the
//! tracking annotation is nobody's.
//!
//! Settings of the whole installation: a test binary of its own, the settings put back however
//! it ends (`ArgoCdSetting`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::agreement::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_tracking_under_a_custom_key_is_followed_as_argo_cd_follows_it() {
    let real = real_argocd();
    let client = client().await;
    let key = "team.example.com/app";
    let _setting = ArgoCdSetting::set(
        &client,
        &real.namespace,
        "argo-drift-tests-tracking",
        json!({"application.resourceTrackingMethod": "label", "application.instanceLabelKey": key}),
    )
    .await;
    let api = real.client();
    wait_for(
        "label tracking in Argo CD's settings",
        Duration::from_secs(30),
        || async {
            let answer = api.settings().await.unwrap();
            (answer["trackingMethod"] == "label" && answer["appLabelKey"] == key).then_some(())
        },
    )
    .await;
    let (s, controller, _dir) = Scenario::config_map_app(&client).await;
    let (apps, shop) = (s.apps.clone(), s.shop.clone());
    // Argo CD labels what it applies with the configured key.
    let instance = format!("{apps}_web");
    let configmaps = dynamic(&client, &shop, "v1", "ConfigMap").await;
    let web = serde_json::to_value(configmaps.get("web").await.unwrap()).unwrap();
    assert_eq!(web["metadata"]["labels"][key], instance.as_str(), "{web:#}");
    s.settled(&[]).await;
    apply(
        &client,
        &shop,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "labelled", "labels": {key: instance}}, "data": {"k": "v"}}),
        "kubectl",
    )
    .await;
    apply(
        &client,
        &shop,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "annotated", "annotations": {
                "argocd.argoproj.io/tracking-id": format!("{instance}:/ConfigMap:{shop}/annotated")}},
            "data": {"k": "v"}}),
        "kubectl",
    )
    .await;
    let r = s.settled(&["ConfigMap/labelled"]).await;
    assert_eq!(
        class_of(&r, "ConfigMap", "labelled"),
        ("OutOfSync".into(), "agree".into())
    );
    assert!(!names(&r, "annotated"), "{r:#}");
    controller.stop().await;
}
