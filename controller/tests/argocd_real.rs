//! The Argo CD API client against a real Argo CD (`scripts/testenv.sh argocd`: argocd-server,
//! application-controller and repo-server of the pinned release, on the test API server): Argo
//! CD's own errors, a partial sync that really syncs the named resource, rollback refused while
//! automated sync is on, and the manifests of a Helm chart with its Secret masked as Argo CD masks
//! it. Faults the real server cannot produce on demand (5xx, timeouts) stay in `argocd.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use argo_drift_controller::argocd::{SyncResource, FAILED_PRECONDITION};
use argo_drift_controller::error::Error;
use kube::api::Api;
use serde_json::{json, Value};
use support::*;

fn code_of(e: &Error) -> (Option<u16>, Option<i32>) {
    match e {
        Error::ArgoCd { status, code, .. } => (*status, *code),
        other => panic!("not an Argo CD error: {other}"),
    }
}

/// A Git repository with `files`, committed; the repository stays for the whole test run (Argo
/// CD's repo-server caches it by URL).
fn repo(files: &[(&str, &str)]) -> GitRepo {
    let dir = std::env::temp_dir().join(format!("argo-drift-real-{:x}", rand_u32()));
    let repo = GitRepo::new(&dir);
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.commit("first");
    repo
}

/// An Application in Argo CD's namespace reading `path` of `repo`, deploying to `namespace` on
/// the in-cluster destination.
async fn create_app(
    client: &kube::Client,
    name: &str,
    repo: &GitRepo,
    path: &str,
    namespace: &str,
    automated: bool,
) {
    let argocd = real_argocd();
    let mut app = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": argocd.namespace},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo.url(), "path": path, "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace}
        }
    });
    if automated {
        app["spec"]["syncPolicy"] = json!({"automated": {"prune": false, "selfHeal": false}});
    }
    apply(client, &argocd.namespace, app, "argo-drift-tests").await;
}

/// Wait until Argo CD's own view of the app in its namespace satisfies `ready`.
async fn wait_app(
    client: &kube::Client,
    name: &str,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let argocd = real_argocd();
    argocd
        .wait_app(client, &argocd.namespace, name, what, ready)
        .await
}

const CONFIG_MAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  level: info\n";

/// An app named `<prefix>-<random>` whose Git holds ConfigMap `web` (`level: info`), deployed
/// to a fresh namespace: the client, that namespace and the app's name.
async fn config_map_app(prefix: &str, automated: bool) -> (kube::Client, String, String) {
    let client = client().await;
    let shop = fresh_namespace(&client, "shop").await;
    let git = repo(&[("web/cm.yaml", CONFIG_MAP)]);
    let name = format!("{prefix}-{:x}", rand_u32());
    create_app(&client, &name, &git, "web", &shop, automated).await;
    (client, shop, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cds_own_errors_reach_the_caller_without_the_token() {
    let argocd = real_argocd();
    let api = argocd.client();
    let err = api
        .application("no-such-app", &argocd.namespace)
        .await
        .unwrap_err();
    // Argo CD answers "permission denied" for an application that does not exist, so that a
    // caller cannot probe for names (server/application/application.go, getAppEnforceRBAC).
    assert_eq!(code_of(&err), (Some(403), Some(7)), "{err}");
    assert!(err.to_string().contains("permission denied"), "{err}");

    let anonymous = argocd.client_with_token("wrong-token".into());
    let err = anonymous
        .application("no-such-app", &argocd.namespace)
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), (Some(401), Some(16)), "{err}");
    assert!(!err.to_string().contains("wrong-token"));

    // Without the test CA, the server's certificate is refused.
    let untrusted =
        argo_drift_controller::argocd::ArgoCd::new(argo_drift_controller::argocd::Settings::new(
            &format!("https://{}", argocd.server),
            argocd.token(),
        ))
        .unwrap();
    let err = untrusted
        .application("no-such-app", &argocd.namespace)
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_sync_makes_argo_cd_put_the_named_resource_back_to_gits_value() {
    let (client, shop, name) = config_map_app("heal", false).await;
    let argocd = real_argocd();
    let api = argocd.client();
    let resources = [SyncResource {
        group: String::new(),
        kind: "ConfigMap".into(),
        namespace: shop.clone(),
        name: "web".into(),
    }];
    api.sync(&name, &argocd.namespace, &resources)
        .await
        .unwrap();
    wait_app(&client, &name, "the first sync", synced).await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &shop);
    let cm = cms.get("web").await.unwrap();
    assert_eq!(cm.data.unwrap()["level"], "info");
    // Argo CD 2.5 and later apply as argocd-controller (DOMAIN: field managers).
    let managers: Vec<String> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"argocd-controller".to_string()),
        "{managers:?}"
    );

    // A person edits it; argo-drift's heal is a partial sync of just that resource.
    let dynamic_cms = dynamic(&client, &shop, "v1", "ConfigMap").await;
    merge(
        &dynamic_cms,
        "web",
        "kubectl-edit",
        json!({"data": {"level": "debug"}}),
    )
    .await;
    // Argo CD's operation timestamps have one-second resolution and a sync here takes less: the
    // heal shows as the live value back at Git's.
    api.sync(&name, &argocd.namespace, &resources)
        .await
        .unwrap();
    wait_for(
        "the live ConfigMap back at Git's value",
        Duration::from_secs(60),
        || async {
            let cm = cms.get("web").await.ok()?;
            (cm.data?.get("level")? == "info").then_some(())
        },
    )
    .await;
    let app = wait_app(&client, &name, "the heal's operation", |a| {
        a["status"]["operationState"]["phase"] == "Succeeded"
    })
    .await;
    assert_eq!(
        app["status"]["operationState"]["operation"]["sync"]["resources"][0]["name"],
        "web"
    );
    assert_eq!(cms.get("web").await.unwrap().data.unwrap()["level"], "info");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_is_refused_while_automated_sync_is_on_and_accepted_once_it_is_off() {
    let (client, _, name) = config_map_app("rollback", true).await;
    let argocd = real_argocd();
    let app = wait_app(&client, &name, "the automated sync", |a| {
        synced(a)
            && a["status"]["history"]
                .as_array()
                .is_some_and(|h| !h.is_empty())
    })
    .await;
    let id = app["status"]["history"][0]["id"].as_i64().unwrap();
    let api = argocd.client();
    let err = api
        .rollback(&name, &argocd.namespace, id, false)
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&err),
        (Some(400), Some(FAILED_PRECONDITION)),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("rollback cannot be initiated when auto-sync is enabled"),
        "{err}"
    );

    api.patch(
        &name,
        &argocd.namespace,
        &json!({"spec": {"syncPolicy": {"automated": null}}}),
    )
    .await
    .unwrap();
    let app = real_argocd()
        .app(&client, &real_argocd().namespace, &name)
        .await;
    assert!(
        app["spec"]["syncPolicy"].get("automated").is_none(),
        "{:#}",
        app["spec"]
    );
    assert_eq!(
        app["spec"]["project"], "default",
        "the rest of the spec stays"
    );

    let err = api
        .rollback(&name, &argocd.namespace, 999, false)
        .await
        .unwrap_err();
    assert_eq!(code_of(&err).0, Some(400), "{err}");
    api.rollback(&name, &argocd.namespace, id, false)
        .await
        .unwrap();
    wait_app(&client, &name, "the rollback", |a| {
        a["status"]["operationState"]["operation"]["rollback"].is_object() || synced(a)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_charts_manifests_come_with_the_secret_masked_as_argo_cd_masks_it() {
    let client = client().await;
    let argocd = real_argocd();
    let shop = fresh_namespace(&client, "shop").await;
    let git = repo(&[
        ("chart/Chart.yaml", "apiVersion: v2\nname: shop\nversion: 0.1.0\n"),
        ("chart/values.yaml", "password: correct-horse\n"),
        (
            "chart/templates/secret.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {{ .Values.password }}\n",
        ),
        (
            "chart/templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  labels:\n    app.kubernetes.io/instance: {{ .Release.Name }}\ndata:\n  level: info\n",
        ),
    ]);
    let name = format!("helm-{:x}", rand_u32());
    create_app(&client, &name, &git, "chart", &shop, false).await;
    let api = argocd.client();
    let manifests = api.manifests(&name, &argocd.namespace, None).await.unwrap();
    assert_eq!(manifests.manifests.len(), 2, "{:?}", manifests.manifests);
    let secret: Value = manifests
        .manifests
        .iter()
        .map(|m| serde_json::from_str::<Value>(m).unwrap())
        .find(|m| m["kind"] == "Secret")
        .unwrap();
    let masked = secret["data"]["password"].as_str().unwrap();
    assert!(
        !masked.is_empty() && masked.bytes().all(|b| b == b'+'),
        "{secret:#}"
    );
    assert!(!manifests
        .manifests
        .iter()
        .any(|m| m.contains("correct-horse")));

    // Managed resources: Argo CD's own comparison, before any sync.
    wait_app(&client, &name, "the first comparison", |a| {
        a["status"]["sync"]["status"] == "OutOfSync"
    })
    .await;
    let managed = api
        .managed_resources(&name, &argocd.namespace)
        .await
        .unwrap();
    assert_eq!(managed.len(), 2, "{managed:?}");
}

/// The real Argo CD's settings API, read as the PreSync hook reads it on a cluster where it
/// cannot read argocd-cm: a rule set in argocd-cm (split key) comes back as an override and is
/// the same ignore rule, and Argo CD 3's default tracking (annotation) comes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cds_settings_api_serves_the_rules_set_in_argocd_cm() {
    let argocd = real_argocd();
    let client = client().await;
    let key = "resource.customizations.ignoreDifferences.argo-drift-settings-api.io_Probe";
    let settings = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm"},
        "data": {key: "jsonPointers:\n- /spec/probe\n"}});
    apply(
        &client,
        &argocd.namespace,
        settings,
        "argo-drift-tests-settings-api",
    )
    .await;
    let api = argocd.client();
    // Argo CD's settings manager follows argocd-cm through an informer: wait for the rule.
    let answer = wait_for(
        "the rule in Argo CD's settings API",
        Duration::from_secs(30),
        || async {
            let answer = api.settings().await.unwrap();
            answer["resourceOverrides"]
                .get("argo-drift-settings-api.io/Probe")
                .is_some()
                .then_some(answer)
        },
    )
    .await;
    let parsed = argo_drift_cluster::settings::from_api(&answer).unwrap();
    assert_eq!(
        parsed.tracking_method,
        Some(argo_drift_core::normalize::TrackingMethod::Annotation),
        "{answer:#}"
    );
    let probe = parsed
        .ignore_rules
        .iter()
        .find(|r| r.spec().group == "argo-drift-settings-api.io")
        .unwrap_or_else(|| panic!("no rule for the probe kind: {answer:#}"));
    assert_eq!(probe.spec().kind, "Probe");
    assert_eq!(probe.spec().json_pointers, ["/spec/probe"]);
}
