//! Agreement with Argo CD, judged against the real Argo CD (`scripts/testenv.sh argocd`): the
//! app of the live scenarios is synced by Argo CD itself, people change it out of band as in
//! live.rs, and after each change both Argo CD and argo-drift look again. No resource Argo CD
//! calls OutOfSync may be reported in sync by argo-drift, and every drift only argo-drift sees
//! must belong to a documented class (docs/agreement.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch};
use serde_json::json;
use support::agreement::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_drift_never_calls_synced_what_argo_cd_calls_out_of_sync_and_names_what_only_it_sees()
{
    let real = real_argocd();
    let client = client().await;
    let apps = real.fresh_apps_namespace(&client).await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("shop.git"));
    for (path, text) in WEB {
        repo.write(path, text);
    }
    repo.commit("web");
    let mut app = application("web", &repo.url(), "apps/web", &shop, None);
    app["spec"]["source"]["directory"] = json!({"recurse": true});
    let (s, controller) = Scenario::start(&client, &apps, &shop, app).await;
    let first = s.settled(&[]).await;
    assert_eq!(first["summary"]["synced"], 4, "{first:#}");
    assert_eq!(
        class_of(&first, "Deployment", "web"),
        ("Synced".into(), "agree".into())
    );

    // kubectl scale, and a label added to the Service by hand.
    let deployments = dynamic(&client, &s.shop, "apps/v1", "Deployment").await;
    merge(
        &deployments,
        "web",
        "kubectl-scale",
        json!({"spec": {"replicas": 5}}),
    )
    .await;
    let services = dynamic(&client, &s.shop, "v1", "Service").await;
    merge(
        &services,
        "web",
        "kubectl-label",
        json!({"metadata": {"labels": {"team": "payments"}}}),
    )
    .await;
    let r = s.settled(&["Deployment/web", "Service/web"]).await;
    assert_eq!(
        class_of(&r, "Deployment", "web"),
        ("OutOfSync".into(), "agree".into())
    );
    // Argo CD never applied that label, so its diff does not see it; argo-drift does.
    assert_eq!(
        class_of(&r, "Service", "web"),
        ("Synced".into(), "out-of-band-addition".into())
    );
    assert_eq!(
        r["agreement"]["disagreements"],
        json!({"out-of-band-addition": 1})
    );
    let (_, metrics) = controller.get("/metrics").await;
    let line = format!(
        "argo_drift_argocd_disagreements{{app=\"{apps}/web\",class=\"out-of-band-addition\"}} 1"
    );
    assert!(metrics.contains(&line), "{metrics}");

    // kubectl set image, an environment variable added by kubectl edit, a rule added to the
    // Role, and the Secret's value changed.
    deployments
        .patch(
            "web",
            &manager("kubectl-edit"),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.26-evil",
                 "env": [{"name": "DEBUG", "value": "1"}]}]}}}})),
        )
        .await
        .unwrap();
    let roles = dynamic(&client, &s.shop, "rbac.authorization.k8s.io/v1", "Role").await;
    merge(
        &roles,
        "web-reader",
        "kubectl-edit",
        json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                         {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
    )
    .await;
    let secrets = dynamic(&client, &s.shop, "v1", "Secret").await;
    merge(
        &secrets,
        "web-creds",
        "kubectl-edit",
        json!({"data": {"password": "b3RoZXI="}}),
    )
    .await;
    let r = s
        .settled(&[
            "Deployment/web",
            "Service/web",
            "Role/web-reader",
            "Secret/web-creds",
        ])
        .await;
    for (kind, name) in [("Role", "web-reader"), ("Secret", "web-creds")] {
        assert_eq!(
            class_of(&r, kind, name),
            ("OutOfSync".into(), "agree".into()),
            "{kind}"
        );
    }

    // The Secret deleted, and an object of nobody's Git that carries the app's tracking mark.
    Api::<Secret>::namespaced(client.clone(), &shop)
        .delete("web-creds", &DeleteParams::default())
        .await
        .unwrap();
    apply(
        &client,
        &shop,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "stray", "annotations": {
                "argocd.argoproj.io/tracking-id": format!("{apps}_web:/ConfigMap:{shop}/stray")}},
            "data": {"k": "v"}}),
        "kubectl-client-side-apply",
    )
    .await;
    // One with only the app's instance label: with Argo CD 3's default tracking (annotation)
    // it is nobody's, for Argo CD and argo-drift alike (settled below names no drift for it).
    apply(
        &client,
        &shop,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "labelled", "labels": {
                "app.kubernetes.io/instance": format!("{apps}_web")}},
            "data": {"k": "v"}}),
        "kubectl-client-side-apply",
    )
    .await;
    let r = s
        .settled(&[
            "ConfigMap/stray",
            "Deployment/web",
            "Role/web-reader",
            "Secret/web-creds",
            "Service/web",
        ])
        .await;
    assert_eq!(
        class_of(&r, "Secret", "web-creds"),
        ("OutOfSync".into(), "agree".into())
    );
    assert_eq!(
        class_of(&r, "ConfigMap", "stray"),
        ("OutOfSync".into(), "agree".into())
    );
    assert!(!names(&r, "labelled"), "{r:#}");
    controller.stop().await;
}

/// The real Argo CD's system-level rule for ConfigMaps, in its argocd-cm as users write it:
/// these JSON pointers ignored (under a field manager of the tests' own, so the installation's
/// other settings stay).
async fn ignore_config_map_fields(client: &kube::Client, pointers: &[&str]) {
    let list: String = pointers.iter().map(|p| format!("- {p}\n")).collect();
    let settings = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm"},
        "data": {"resource.customizations.ignoreDifferences.ConfigMap": format!("jsonPointers:\n{list}")}});
    apply(
        client,
        &real_argocd().namespace,
        settings,
        "argo-drift-tests-ignore",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignore_rule_set_once_in_argocd_cm_holds_for_argo_cd_and_argo_drift_alike() {
    let real = real_argocd();
    let client = client().await;
    // A system-level rule in Argo CD's own settings, as users write them (only ConfigMaps with a
    // `tuned` key are touched, so the shared test installation is otherwise unchanged).
    ignore_config_map_fields(&client, &["/data/tuned"]).await;
    let apps = real.fresh_apps_namespace(&client).await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("tuning.git"));
    repo.write(
        "tuning/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tuning\ndata:\n  tuned: \"1\"\n  other: a\n",
    );
    repo.commit("tuning");
    let app = application("web", &repo.url(), "tuning", &shop, None);
    let (s, controller) = Scenario::start(&client, &apps, &shop, app).await;
    s.settled(&[]).await;
    // The tuned value changed by hand: ignored by both.
    let configmaps = dynamic(&client, &shop, "v1", "ConfigMap").await;
    merge(
        &configmaps,
        "tuning",
        "kubectl-edit",
        json!({"data": {"tuned": "2"}}),
    )
    .await;
    let r = s.settled(&[]).await;
    assert_eq!(
        class_of(&r, "ConfigMap", "tuning"),
        ("Synced".into(), "agree".into())
    );
    // Another key changed too: drift for both, and argo-drift names only that key.
    merge(
        &configmaps,
        "tuning",
        "kubectl-edit",
        json!({"data": {"other": "b"}}),
    )
    .await;
    let r = s.settled(&["ConfigMap/tuning"]).await;
    assert_eq!(
        class_of(&r, "ConfigMap", "tuning"),
        ("OutOfSync".into(), "agree".into())
    );
    assert_eq!(changed_fields(&r), ["data.other"]);
    // The rule widened in argocd-cm while both run: taken up without a restart.
    ignore_config_map_fields(&client, &["/data/tuned", "/data/other"]).await;
    let r = s.settled(&[]).await;
    assert_eq!(
        class_of(&r, "ConfigMap", "tuning"),
        ("Synced".into(), "agree".into())
    );
    controller.stop().await;
    // Back to the narrow rule for the next run (other tests never use these keys).
    ignore_config_map_fields(&client, &["/data/tuned"]).await;
}

/// Argo CD's settings that decide what is compared at all, set once in the real Argo CD's
/// argocd-cm: a kind excluded from management (`resource.exclusions`) is neither synced nor
/// compared by Argo CD, so argo-drift must not call it missing; an aggregated ClusterRole's
/// rules, filled in by Kubernetes' aggregation controller, are not drift with
/// `resource.compareoptions: ignoreAggregatedRoles: true`. Both agree, with no drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_kinds_and_aggregated_roles_are_judged_as_argo_cd_judges_them() {
    let real = real_argocd();
    let client = client().await;
    // Under a field manager of this test's own; no other test uses LimitRanges or aggregated
    // ClusterRoles, so the shared installation is otherwise unchanged.
    let settings = json!({"apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "argocd-cm"},
    "data": {
        "resource.exclusions": "- apiGroups: ['']\n  kinds: [LimitRange]\n",
        "resource.compareoptions": "ignoreAggregatedRoles: true\n",
    }});
    apply(
        &client,
        &real.namespace,
        settings,
        "argo-drift-tests-settings",
    )
    .await;
    let apps = real.fresh_apps_namespace(&client).await;
    let shop = fresh_namespace(&client, "shop").await;
    let role = format!("argo-drift-test-aggregate-{:x}", rand_u32());
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("settings.git"));
    repo.write(
        "web/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  a: \"1\"\n",
    );
    repo.write(
        "web/limits.yaml",
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: limits\nspec:\n  limits:\n  - type: Container\n    default:\n      cpu: 500m\n",
    );
    repo.write(
        "web/role.yaml",
        &format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\naggregationRule:\n  clusterRoleSelectors:\n  - matchLabels:\n      {role}/aggregate: \"true\"\nrules: []\n"),
    );
    repo.commit("settings");
    let app = application("web", &repo.url(), "web", &shop, None);
    let (s, controller) = Scenario::start(&client, &apps, &shop, app).await;
    // Kubernetes' aggregation controller fills the rules in (none runs here: the test does).
    let roles = dynamic(&client, "", "rbac.authorization.k8s.io/v1", "ClusterRole").await;
    merge(
        &roles,
        &role,
        "clusterrole-aggregation-controller",
        json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
    )
    .await;
    let r = s.settled(&[]).await;
    assert_eq!(
        class_of(&r, "ClusterRole", &role),
        ("Synced".into(), "agree".into())
    );
    let kinds: Vec<&str> = r["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(!kinds.contains(&"LimitRange"), "{r:#}");
    // Argo CD never created it: it is excluded from management.
    let limits = dynamic(&client, &shop, "v1", "LimitRange").await;
    assert!(limits.get_opt("limits").await.unwrap().is_none());
    controller.stop().await;
}

/// `knownTypeFields` set once in the real Argo CD's argocd-cm: a custom resource's quantity and
/// duration rewritten to an equal value in another spelling (as a controller or webhook that
/// normalises them would) are in sync for Argo CD and for argo-drift alike; a different value
/// is drift for both, and argo-drift names only that field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_type_fields_set_in_argocd_cm_compare_as_argo_cd_compares_them() {
    let real = real_argocd();
    let client = client().await;
    let group = "known-types.argo-drift.io";
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("certificates.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "certificates", "singular": "certificate", "kind": "Certificate"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}});
    apply(&client, "", crd, "argo-drift-tests").await;
    wait_for("the test CRD to be served", Duration::from_secs(30), || {
        let client = client.clone();
        async move {
            let gvk = kube::api::GroupVersionKind::gvk(group, "v1", "Certificate");
            kube::discovery::pinned_kind(&client, &gvk).await.ok()
        }
    })
    .await;
    // Under a field manager of this test's own; no other test uses this group.
    let settings = json!({"apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "argocd-cm"},
    "data": {
        format!("resource.customizations.knownTypeFields.{group}_Certificate"):
            "- field: spec.duration\n  type: meta/v1/Duration\n- field: spec.ram\n  type: core/Quantity\n",
    }});
    apply(
        &client,
        &real.namespace,
        settings,
        "argo-drift-tests-known-types",
    )
    .await;
    let apps = real.fresh_apps_namespace(&client).await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("known.git"));
    repo.write(
        "certs/cert.yaml",
        &format!("apiVersion: {group}/v1\nkind: Certificate\nmetadata:\n  name: web\nspec:\n  duration: 8760h\n  ram: 1.25G\n  issuer: acme\n"),
    );
    repo.commit("certificate");
    let app = application("web", &repo.url(), "certs", &shop, None);
    let (s, controller) = Scenario::start(&client, &apps, &shop, app).await;
    s.settled(&[]).await;
    let certs = dynamic(&client, &shop, &format!("{group}/v1"), "Certificate").await;
    merge(
        &certs,
        "web",
        "cert-normaliser",
        json!({"spec": {"duration": "8760h0m0s", "ram": "1250M"}}),
    )
    .await;
    let r = s.settled(&[]).await;
    assert_eq!(
        class_of(&r, "Certificate", "web"),
        ("Synced".into(), "agree".into())
    );
    merge(
        &certs,
        "web",
        "kubectl-edit",
        json!({"spec": {"ram": "2G"}}),
    )
    .await;
    let r = s.settled(&["Certificate/web"]).await;
    assert_eq!(
        class_of(&r, "Certificate", "web"),
        ("OutOfSync".into(), "agree".into())
    );
    assert_eq!(changed_fields(&r), ["spec.ram"]);
    controller.stop().await;
}

/// `resource.sensitive.mask.annotations` set once in the real Argo CD's argocd-cm: a Secret
/// annotation changed by hand is drift for both, and neither Argo CD's own diff nor argo-drift's
/// report shows its value, before or after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_annotation_argo_cd_masks_is_drift_whose_value_neither_shows() {
    let real = real_argocd();
    let client = client().await;
    let key = "masked.argo-drift.io/token";
    // Under a field manager of this test's own; no other test's Secrets carry this annotation.
    apply(
        &client,
        &real.namespace,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"},
            "data": {"resource.sensitive.mask.annotations": key}}),
        "argo-drift-tests-mask",
    )
    .await;
    let apps = real.fresh_apps_namespace(&client).await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("masked.git"));
    repo.write(
        "web/secret.yaml",
        &format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n  annotations:\n    {key}: from-git-7f3a\nstringData:\n  k: v\n"),
    );
    repo.commit("secret");
    let app = application("web", &repo.url(), "web", &shop, None);
    let (s, controller) = Scenario::start(&client, &apps, &shop, app).await;
    s.settled(&[]).await;
    let secrets = dynamic(&client, &shop, "v1", "Secret").await;
    merge(
        &secrets,
        "api",
        "kubectl-edit",
        json!({"metadata": {"annotations": {key: "by-hand-91cd"}}}),
    )
    .await;
    let r = s.settled(&["Secret/api"]).await;
    assert_eq!(
        class_of(&r, "Secret", "api"),
        ("OutOfSync".into(), "agree".into())
    );
    assert_eq!(
        changed_fields(&r),
        [format!("metadata.annotations[\"{key}\"]").as_str()]
    );
    let text = r.to_string();
    assert!(
        !text.contains("from-git-7f3a") && !text.contains("by-hand-91cd"),
        "{r:#}"
    );
    // Argo CD's own diff masks it the same way.
    let managed = real.client().managed_resources("web", &apps).await.unwrap();
    let secret = managed.iter().find(|d| d.name == "api").unwrap();
    assert!(
        secret.live_state.contains(key) && !secret.live_state.contains("by-hand-91cd"),
        "{}",
        secret.live_state
    );
    controller.stop().await;
}

/// A directory of `.jsonnet` (Argo CD evaluates it; argo-drift takes Argo CD's rendering from its
/// manifests API rather than reading the file as YAML): in sync after Argo CD's sync, and a
/// change by hand is drift for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jsonnet_directory_is_compared_as_argo_cd_renders_it() {
    let real = real_argocd();
    let client = client().await;
    let apps = real.fresh_apps_namespace(&client).await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("jsonnet.git"));
    repo.write(
        "web/main.jsonnet",
        "local level = 'info';\n{\n  apiVersion: 'v1',\n  kind: 'ConfigMap',\n  metadata: { name: 'rendered' },\n  data: { level: level, replicas: std.toString(1 + 2) },\n}\n",
    );
    repo.commit("jsonnet");
    let app = application("web", &repo.url(), "web", &shop, None);
    let (s, controller) = Scenario::start(&client, &apps, &shop, app).await;
    let r = s.settled(&[]).await;
    assert_eq!(
        class_of(&r, "ConfigMap", "rendered"),
        ("Synced".into(), "agree".into())
    );
    let configmaps = dynamic(&client, &shop, "v1", "ConfigMap").await;
    merge(
        &configmaps,
        "rendered",
        "kubectl-edit",
        json!({"data": {"replicas": "9"}}),
    )
    .await;
    let r = s.settled(&["ConfigMap/rendered"]).await;
    let change = &r["resources"][0]["changes"][0];
    assert_eq!(
        (
            change["field"].clone(),
            change["desired"].clone(),
            change["live"].clone()
        ),
        (json!("data.replicas"), json!("3"), json!("9")),
        "{r:#}"
    );
    controller.stop().await;
}

/// A Helm chart's Secret: Argo CD's manifests API masks its values, so argo-drift cannot compare
/// them itself. In sync after Argo CD's sync (no false drift), and a password changed by hand is
/// drift for both: Argo CD's managed-resources diff masks equal values alike and different ones
/// differently, and argo-drift takes its word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_secret_is_in_sync_until_its_live_value_changes() {
    let real = real_argocd();
    let client = client().await;
    let apps = real.fresh_apps_namespace(&client).await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("chart.git"));
    repo.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: shop\nversion: 0.1.0\n",
    );
    repo.write("chart/values.yaml", "password: correct-horse\n");
    repo.write(
        "chart/templates/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {{ .Values.password }}\n  user: shop\n",
    );
    repo.commit("chart");
    let app = application("web", &repo.url(), "chart", &shop, None);
    let (s, controller) = Scenario::start(&client, &apps, &shop, app).await;
    let r = s.settled(&[]).await;
    assert_eq!(
        class_of(&r, "Secret", "db"),
        ("Synced".into(), "agree".into())
    );
    let secrets = dynamic(&client, &shop, "v1", "Secret").await;
    merge(
        &secrets,
        "db",
        "kubectl-edit",
        json!({"stringData": {"password": "battery-staple"}}),
    )
    .await;
    let r = s.settled(&["Secret/db"]).await;
    assert_eq!(
        class_of(&r, "Secret", "db"),
        ("OutOfSync".into(), "agree".into())
    );
    let changes = r["resources"][0]["changes"].as_array().unwrap();
    let fields: Vec<&str> = changes
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["data.password"], "{r:#}");
    let text = r.to_string();
    assert!(
        !text.contains("battery-staple") && !text.contains("correct-horse"),
        "{text}"
    );
    controller.stop().await;
}
