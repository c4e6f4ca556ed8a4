//! The agreement scenarios with the real Argo CD (`scripts/testenv.sh argocd`): an app Argo
//! CD itself syncs, a controller beside it, and the rules by which their verdicts must agree
//! (docs/agreement.md).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

pub struct Scenario {
    pub client: kube::Client,
    pub apps: String,
    pub shop: String,
}

impl Scenario {
    /// Application `app` (named `web`) in `apps`, synced by the real Argo CD, and a controller
    /// watching it beside Argo CD.
    pub async fn start(
        client: &kube::Client,
        apps: &str,
        shop: &str,
        app: Value,
    ) -> (Scenario, Running) {
        let real = real_argocd();
        apply(client, apps, app, "argocd-server").await;
        real.sync_and_wait(client, apps, "web").await;
        let controller = Running::start_with_real_argocd(&admin_config().await, apps, &[]).await;
        let s = Scenario {
            client: client.clone(),
            apps: apps.to_string(),
            shop: shop.to_string(),
        };
        (s, controller)
    }

    /// The plainest app: ConfigMap `web` from a fresh Git repository, in fresh namespaces,
    /// synced by the real Argo CD, with a controller beside it. The repository's directory must
    /// outlive the scenario.
    pub async fn config_map_app(client: &kube::Client) -> (Scenario, Running, tempfile::TempDir) {
        let (apps, shop, app, dir) = config_map_application(client).await;
        let (s, controller) = Scenario::start(client, &apps, &shop, app).await;
        (s, controller, dir)
    }

    /// Ask Argo CD for a full comparison (`argocd app get --refresh` sets this annotation), wait
    /// until it has done it and argo-drift's report carries Argo CD's current word on every
    /// resource, with `drifted` (kind/name) drifted by argo-drift's verdict; then check the
    /// agreement. Returns the report.
    pub async fn settled(&self, drifted: &[&str]) -> Value {
        let real = real_argocd();
        annotate_application(
            &self.client,
            &self.apps,
            "web",
            "argocd-cli",
            json!({"argocd.argoproj.io/refresh": "normal"}),
        )
        .await;
        let want: BTreeSet<String> = drifted.iter().map(|s| s.to_string()).collect();
        let start = std::time::Instant::now();
        let mut disagreement: Option<String> = None;
        loop {
            let app = real.app(&self.client, &self.apps, "web").await;
            let report = report(&self.client, &self.apps, "web").await.map(|r| r.1);
            // Argo CD removes the annotation once it has compared.
            let compared = app["metadata"]["annotations"]
                .get("argocd.argoproj.io/refresh")
                .is_none();
            if let (true, Some(report)) = (compared, report.as_ref()) {
                let ours: BTreeSet<String> = report["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| r["status"] != "synced")
                    .map(|r| {
                        format!(
                            "{}/{}",
                            r["kind"].as_str().unwrap(),
                            r["name"].as_str().unwrap()
                        )
                    })
                    .collect();
                let current = report["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r["argocd"]["status"] == argocd_status(&app, r));
                // Argo CD's cluster cache can lag behind a change it was asked to compare, and
                // compare once more when the change reaches it: the two must come to agree.
                if ours == want && current {
                    match check(report) {
                        Ok(()) => return report.clone(),
                        Err(e) => disagreement = Some(e),
                    }
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "not settled on {want:?}{}; argo-drift's report:\n{report:#?}\nArgo CD's resources:\n{:#}",
                disagreement.as_deref().map(|d| format!(" (last disagreement: {d})")).unwrap_or_default(),
                app["status"]["resources"]
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Argo CD's status of the report's resource `r` in the Application, `Absent` if unlisted.
pub fn argocd_status(app: &Value, r: &Value) -> Value {
    app["status"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| {
            a["kind"] == r["kind"]
                && a["name"] == r["name"]
                && a["namespace"].as_str().unwrap_or("") == r["namespace"].as_str().unwrap_or("")
                && a["group"].as_str().unwrap_or("") == r["group"].as_str().unwrap_or("")
        })
        .map_or(json!("Absent"), |a| a["status"].clone())
}

/// The agreement rules: nothing Argo CD calls OutOfSync is in sync for argo-drift, and what
/// only argo-drift sees is of a documented class.
pub fn check(report: &Value) -> Result<(), String> {
    for r in report["resources"].as_array().unwrap() {
        let class = r["argocd"]["agreement"].as_str().unwrap();
        if !["agree", "no-verdict", "out-of-band-addition"].contains(&class) {
            return Err(format!("{} {}: {class}\n{r:#}", r["kind"], r["name"]));
        }
        if r["argocd"]["status"] == "OutOfSync" && r["status"] == "synced" {
            return Err(format!(
                "OutOfSync for Argo CD, synced for argo-drift: {r:#}"
            ));
        }
    }
    match report["agreement"].get("argocdOnly") {
        Some(only) => Err(format!("only Argo CD sees drift: {only:#}")),
        None => Ok(()),
    }
}

/// The fields argo-drift names as changed on the report's first resource.
pub fn changed_fields(report: &Value) -> Vec<&str> {
    report["resources"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect()
}

/// Whether the report lists a resource of this name.
pub fn names(report: &Value, name: &str) -> bool {
    report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == name)
}

pub fn class_of(report: &Value, kind: &str, name: &str) -> (String, String) {
    let r = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind && r["name"] == name)
        .unwrap();
    (
        r["argocd"]["status"].as_str().unwrap().to_string(),
        r["argocd"]["agreement"].as_str().unwrap().to_string(),
    )
}

/// A setting of the whole Argo CD installation in its argocd-cm, under a field manager of the
/// test's own; removed when dropped, however the test ends (other tests assume Argo CD's
/// defaults). Tests that set one run alone in a test binary of their own.
pub struct ArgoCdSetting {
    namespace: String,
    kind: &'static str,
    config_map: String,
    manager: String,
}

impl ArgoCdSetting {
    pub async fn set(
        client: &Client,
        namespace: &str,
        manager: &str,
        data: Value,
    ) -> ArgoCdSetting {
        ArgoCdSetting::set_in(client, namespace, "argocd-cm", manager, data).await
    }

    /// The same in another of Argo CD's ConfigMaps (argocd-rbac-cm).
    pub async fn set_in(
        client: &Client,
        namespace: &str,
        config_map: &str,
        manager: &str,
        data: Value,
    ) -> ArgoCdSetting {
        ArgoCdSetting::apply_kind(client, namespace, "ConfigMap", config_map, manager, data).await
    }

    /// Keys of argocd-secret (`data`, base64), what `$key` references in argocd-cm resolve to.
    pub async fn set_secret(
        client: &Client,
        namespace: &str,
        manager: &str,
        data: Value,
    ) -> ArgoCdSetting {
        ArgoCdSetting::apply_kind(client, namespace, "Secret", "argocd-secret", manager, data).await
    }

    async fn apply_kind(
        client: &Client,
        namespace: &str,
        kind: &'static str,
        name: &str,
        manager: &str,
        data: Value,
    ) -> ArgoCdSetting {
        apply(
            client,
            namespace,
            json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "data": data}),
            manager,
        )
        .await;
        ArgoCdSetting {
            namespace: namespace.to_string(),
            kind,
            config_map: name.to_string(),
            manager: manager.to_string(),
        }
    }
}

impl Drop for ArgoCdSetting {
    fn drop(&mut self) {
        let (namespace, manager) = (self.namespace.clone(), self.manager.clone());
        let config_map = self.config_map.clone();
        let kind = self.kind;
        // A runtime of its own: the test's may be unwinding.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let client = client().await;
                apply(
                    &client,
                    &namespace,
                    json!({"apiVersion": "v1", "kind": kind,
                        "metadata": {"name": config_map}, "data": {}}),
                    &manager,
                )
                .await;
            });
        })
        .join();
    }
}

/// Fresh namespaces (an "apps in any namespace" one and `shop`), a Git repository with
/// ConfigMap `web` (`a: "1"`) under `web/`, and Application `web` for it (not yet applied).
/// Returns (apps, shop, application, the repository's directory, which must outlive the test).
pub async fn config_map_application(
    client: &kube::Client,
) -> (String, String, Value, tempfile::TempDir) {
    let apps = real_argocd().fresh_apps_namespace(client).await;
    let shop = fresh_namespace(client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("web.git"));
    repo.write(
        "web/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"1\"\n",
    );
    repo.commit("web");
    let app = application("web", &repo.url(), "web", &shop, None);
    (apps, shop, app, dir)
}
