//! argo-drift's resource actions on `argoproj.io/Application`, through the real Argo CD: the
//! actions `argo-drift health configmap` renders into argocd-cm, offered by discovery only when
//! they apply, run through `POST /api/v1/applications/{name}/resource/actions` under Argo CD's
//! RBAC — allowed for a user whose policy grants `action/argoproj.io/Application/*`, refused for
//! one whose policy does not — and answered by the controller (an approval heals).
//!
//! Settings of the whole installation (argocd-cm actions and accounts, an argocd-rbac-cm
//! policy overlay): a test binary of its own, put back however the test ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use argo_drift_controller::argocd::ResourceRef;
use serde_json::{json, Value};
use support::agreement::{config_map_application, ArgoCdSetting};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

fn action_names(answer: &Value) -> Vec<(String, bool)> {
    let mut names: Vec<(String, bool)> = answer["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["name"].as_str().unwrap_or_default().to_string(),
                        x["disabled"].as_bool().unwrap_or(false),
                    )
                })
                // Argo CD's own (built-in toggle-auto-sync) are merged in: only ours count.
                .filter(|(n, _): &(String, bool)| n.contains("drift"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_through_argo_cds_resource_action_heals_and_rbac_decides_who_may() {
    let real = real_argocd();
    let client = client().await;
    // The shipped actions, as `argo-drift health configmap` renders them, and two accounts.
    let health_checks = root().join("health-checks");
    let mut data = serde_json::Map::new();
    for (k, v) in argo_drift_controller::health::configmap_entries(&health_checks).unwrap() {
        if k.starts_with("resource.customizations.actions.") {
            data.insert(k, Value::String(v));
        }
    }
    assert_eq!(data.len(), 1, "{data:?}");
    data.insert("accounts.drift-approver".into(), json!("apiKey"));
    data.insert("accounts.drift-viewer".into(), json!("apiKey"));
    let _settings = ArgoCdSetting::set(
        &client,
        &real.namespace,
        "argo-drift-tests-actions",
        Value::Object(data),
    )
    .await;
    let _rbac = ArgoCdSetting::set_in(
        &client,
        &real.namespace,
        "argocd-rbac-cm",
        "argo-drift-tests-actions",
        json!({"policy.argo-drift-tests.csv": "\
p, role:drift-approver, applications, get, *, allow\n\
p, role:drift-approver, applications, action/argoproj.io/Application/*, *, allow\n\
p, role:drift-viewer, applications, get, *, allow\n\
g, drift-approver, role:drift-approver\n\
g, drift-viewer, role:drift-viewer\n"}),
    )
    .await;
    // Tokens for both, made through Argo CD's API once it has read the accounts.
    let approver = real.client_with_token(real.account_token("drift-approver").await);
    let viewer = real.client_with_token(real.account_token("drift-viewer").await);

    // An app in enforce mode whose ConfigMap's data drifts: medium, so it waits for approval.
    let (apps, shop, mut app, _dir) = config_map_application(&client).await;
    app["metadata"]["labels"]["argo-drift.io/mode"] = json!("enforce");
    apply(&client, &apps, app, "argocd-server").await;
    real.sync_and_wait(&client, &apps, "web").await;
    let controller = Running::start_with_real_argocd(&admin_config().await, &apps, &[]).await;
    wait_for("the first report", WAIT, || async {
        report(&client, &apps, "web").await.map(|_| ())
    })
    .await;
    let configmaps = dynamic(&client, &shop, "v1", "ConfigMap").await;
    merge(
        &configmaps,
        "web",
        "kubectl-edit",
        json!({"data": {"a": "2"}}),
    )
    .await;
    let (_, r) = wait_for("the pending approval", WAIT, || async {
        report(&client, &apps, "web")
            .await
            .filter(|(_, r)| r["pendingApproval"]["id"].is_string())
    })
    .await;
    let id = r["pendingApproval"]["id"].as_str().unwrap().to_string();
    let application = wait_for("the approval on the Application", WAIT, || async {
        let a = real.app(&client, &apps, "web").await;
        (a["metadata"]["annotations"]["argo-drift.io/pending-approval"] == id.as_str()).then_some(a)
    })
    .await;
    assert_eq!(
        application["metadata"]["annotations"]["argo-drift.io/report-id"],
        r["decision"]["pendingApproval"]["id"]
    );

    // Discovery, as Argo CD's UI asks for it: adopt, approve, reject and heal-now; no reset.
    let itself = ResourceRef {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        kind: "Application".into(),
        namespace: apps.clone(),
        name: "web".into(),
    };
    let offered = wait_for("the actions on offer", WAIT, || async {
        let answer = viewer.resource_actions("web", &apps, &itself).await.ok()?;
        let names = action_names(&answer);
        (!names.is_empty()).then_some(names)
    })
    .await;
    assert_eq!(
        offered,
        [
            ("adopt-drift".to_string(), false),
            ("approve-drift".to_string(), false),
            ("heal-drift-now".to_string(), false),
            ("reject-drift".to_string(), false)
        ]
    );

    // The viewer may look but not act: Argo CD refuses, nothing is written.
    let refused = viewer
        .run_resource_action("web", &apps, &itself, "approve-drift")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("permission denied") || refused.contains("403"),
        "{refused}"
    );
    let a = real.app(&client, &apps, "web").await;
    assert!(
        a["metadata"]["annotations"]["argo-drift.io/approve"].is_null(),
        "{a:#}"
    );

    // The approver approves: the annotation names the pending approval, argo-drift heals
    // through Argo CD, the drift is gone.
    approver
        .run_resource_action("web", &apps, &itself, "approve-drift")
        .await
        .unwrap();
    let a = real.app(&client, &apps, "web").await;
    assert_eq!(
        a["metadata"]["annotations"]["argo-drift.io/approve"],
        id.as_str()
    );
    wait_for("the approved heal", WAIT, || async {
        let live = configmaps.get("web").await.ok()?;
        (live.data.get("data")?["a"] == "1").then_some(())
    })
    .await;
    let (_, r) = wait_for("the report in sync", WAIT, || async {
        report(&client, &apps, "web")
            .await
            .filter(|(_, r)| r["summary"]["modified"] == 0)
    })
    .await;
    assert!(r.get("pendingApproval").is_none(), "{r:#}");
    // Nothing left to approve or heal: the Application's actions say so, once Argo CD's view
    // of the Application has the annotations argo-drift cleared (it reads them from its own
    // informer, a moment after the report).
    wait_for("no action on offer", WAIT, || async {
        let names = action_names(&viewer.resource_actions("web", &apps, &itself).await.ok()?);
        names.is_empty().then_some(())
    })
    .await;
    controller.stop().await;
}
