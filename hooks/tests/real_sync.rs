//! The hooks in a real sync: the real Argo CD (`scripts/testenv.sh argocd`) renders an app that
//! includes deploy/hooks as a kustomize component, and creates its PreSync, PostSync and SyncFail
//! Jobs. No kubelet or controller-manager runs here, so the test plays what they would do: the
//! hook's Pod (the hook binary run with the Job's environment, as the hooks' ServiceAccount) and
//! the Job controller (the Job's status, succeeded or failed, from the binary's exit code), and
//! the garbage collector (a Job Argo CD deletes in the foreground goes once its Pod is gone).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::*;

const HOOKS: [&str; 5] = [
    "kustomization.yaml",
    "rbac.yaml",
    "presync-job.yaml",
    "postsync-job.yaml",
    "syncfail-job.yaml",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// ConfigMap `web` as Git has it.
fn config_map(a: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"{a}\"\n  b: \"1\"\n")
}

/// An application namespace's kustomization, as deploy/hooks/kustomization.yaml tells users to
/// write it: the component and the three bindings renamed for the app's namespace, the apps
/// binding moved to where the Application lives (apps in any namespace). The records go to this
/// test's stand-in for argo-drift's own namespace.
fn kustomization(shop: &str, apps: &str, records: &str, resources: &[&str]) -> String {
    let resources = resources.join(", ");
    format!(
        r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [{resources}]
components: [../hooks]
patches:
- target: {{kind: RoleBinding, name: argo-drift-hooks-APP_NAMESPACE}}
  patch: |-
    - {{op: replace, path: /metadata/name, value: argo-drift-hooks-{shop}}}
    - {{op: replace, path: /metadata/namespace, value: {records}}}
    - {{op: replace, path: /subjects/0/namespace, value: {shop}}}
- target: {{kind: RoleBinding, name: argo-drift-hooks-apps-APP_NAMESPACE}}
  patch: |-
    - {{op: replace, path: /metadata/name, value: argo-drift-hooks-apps-{shop}}}
    - {{op: replace, path: /metadata/namespace, value: {apps}}}
    - {{op: replace, path: /subjects/0/namespace, value: {shop}}}
- target: {{kind: ClusterRoleBinding, name: argo-drift-hooks-read-APP_NAMESPACE}}
  patch: |-
    - {{op: replace, path: /metadata/name, value: argo-drift-hooks-read-{shop}}}
    - {{op: replace, path: /subjects/0/namespace, value: {shop}}}
- target: {{kind: Job, labelSelector: app.kubernetes.io/name=argo-drift-hooks}}
  patch: |-
    - {{op: replace, path: /spec/template/spec/containers/0/env/3, value: {{name: ARGO_DRIFT_RECORDS_NAMESPACE, value: {records}}}}}
"#
    )
}

/// An app with the hooks, synced once without them (strategy `apply`), then left to the test.
struct RealSync {
    client: kube::Client,
    /// The Application's namespace ("apps in any namespace").
    apps: String,
    /// argo-drift's own namespace: the hooks' records, the controller's state.
    records: String,
    /// The destination namespace, where the hook Jobs run.
    shop: String,
    name: String,
    repo: GitRepo,
    _dir: tempfile::TempDir,
    gc: tokio::task::JoinHandle<()>,
}

impl Drop for RealSync {
    fn drop(&mut self) {
        self.gc.abort();
    }
}

/// The app's own PostSync smoke test (its Job fails or succeeds as the test says).
const SMOKE_TEST: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: smoke-test
  annotations:
    argocd.argoproj.io/hook: PostSync
    argocd.argoproj.io/hook-delete-policy: BeforeHookCreation
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: smoke, image: example.com/smoke:1, command: [smoke]}
"#;

impl RealSync {
    /// `smoke_test`: the app also has a PostSync smoke-test Job of its own.
    async fn new(annotations: Value, smoke_test: bool) -> RealSync {
        let real = real_argocd();
        let client = client().await;
        // The hooks' ClusterRoles come once with deploy/base.
        let rbac = std::fs::read_to_string(root().join("deploy/base/hooks-rbac.yaml")).unwrap();
        apply_yaml(&client, "default", &rbac, "argo-drift-tests").await;
        let apps = real.fresh_apps_namespace(&client).await;
        let shop = fresh_namespace(&client, "shop").await;
        let records = fresh_namespace(&client, "argo-drift").await;
        let dir = tempfile::tempdir().unwrap();
        let repo = GitRepo::new(&dir.path().join("repo"));
        for file in HOOKS {
            let text = std::fs::read_to_string(root().join("deploy/hooks").join(file)).unwrap();
            repo.write(&format!("hooks/{file}"), &text);
        }
        // A Secret in the hooks' namespace (readable by them), and one elsewhere (not).
        repo.write(
            "web/secrets.yaml",
            &format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: hunter2\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: elsewhere\n  namespace: {apps}\nstringData:\n  token: t0k3n\n"),
        );
        let mut resources = vec!["cm.yaml", "secrets.yaml"];
        if smoke_test {
            repo.write("web/smoke-test.yaml", SMOKE_TEST);
            resources.push("smoke-test.yaml");
        }
        repo.write(
            "web/kustomization.yaml",
            &kustomization(&shop, &apps, &records, &resources),
        );
        repo.write("web/cm.yaml", &config_map("1"));
        repo.commit("first");
        // The SyncFail hook rolls back through Argo CD's API with this token.
        let token = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "argo-drift-argocd-token"},
            "stringData": {"token": real.token()}});
        apply(&client, &shop, token, "argo-drift-tests").await;
        let name = "web".to_string();
        let app = application(&name, &repo.url(), "web", &shop, None);
        apply(&client, &apps, app, "argocd-server").await;
        let gc = tokio::spawn(collect_garbage(
            client.clone(),
            vec![shop.clone(), apps.clone(), records.clone()],
        ));
        let s = RealSync {
            client,
            apps,
            records,
            shop,
            name,
            repo,
            _dir: dir,
            gc,
        };
        // The first sync, hooks and all: the hooks' ServiceAccount and RBAC are PreSync hooks
        // themselves, so they exist before the PreSync Job runs. Creating the app's Secret is a
        // critical change for the default gate: a person approves the first revision.
        let first = s.repo.git(&["rev-parse", "HEAD"]);
        s.approve(&first).await;
        real.client().sync(&s.name, &s.apps, &[]).await.unwrap();
        let mut hooks = vec![(
            "argo-drift-presync",
            env!("CARGO_BIN_EXE_argo-drift-presync"),
        )];
        if smoke_test {
            hooks.push(("smoke-test", "true"));
        }
        hooks.push((
            "argo-drift-postsync",
            env!("CARGO_BIN_EXE_argo-drift-postsync"),
        ));
        for (job, binary) in hooks {
            let (code, out) = s.run_hook(job, binary).await;
            assert_eq!(code, 0, "{job} in the first sync: {out}");
        }
        s.wait_app("the first sync", synced).await;
        // The gate and other settings of the test, from here on.
        s.annotate(annotations).await;
        s
    }

    /// Annotate the Application, as a person with kubectl does.
    async fn annotate(&self, annotations: Value) {
        annotate_application(
            &self.client,
            &self.apps,
            &self.name,
            "kubectl-annotate",
            annotations,
        )
        .await;
    }

    /// A person approves `commit` past the PreSync gate.
    async fn approve(&self, commit: &str) {
        self.annotate(json!({"argo-drift.io/approve-sync": &commit[..12]}))
            .await;
    }

    async fn app(&self) -> Value {
        real_argocd()
            .app(&self.client, &self.apps, &self.name)
            .await
    }

    async fn wait_app(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        real_argocd()
            .wait_app(&self.client, &self.apps, &self.name, what, ready)
            .await
    }

    async fn live(&self) -> Value {
        let api = dynamic(&self.client, &self.shop, "v1", "ConfigMap").await;
        serde_json::to_value(api.get("web").await.unwrap()).unwrap()
    }

    /// A new commit with `a` as ConfigMap web's `data.a`.
    fn commit(&self, a: &str, message: &str) -> String {
        self.repo.write("web/cm.yaml", &config_map(a));
        self.repo.commit(message)
    }

    /// Wait for the hook Job `job` that Argo CD created and nobody has run yet.
    async fn hook_job(&self, job: &str) -> Job {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.shop);
        let start = std::time::Instant::now();
        loop {
            if let Some(j) = jobs.get_opt(job).await.unwrap() {
                let fresh = j.metadata.deletion_timestamp.is_none()
                    && j.status
                        .as_ref()
                        .and_then(|s| s.start_time.as_ref())
                        .is_none();
                if fresh {
                    return j;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "Argo CD created no Job {job}; the Application:\n{:#}\nArgo CD's logs:\n{}",
                self.app().await["status"],
                real_argocd().logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Play the Pod and the Job controller for hook Job `job`: run `binary` with the Job's
    /// environment as the hooks' ServiceAccount, then mark the Job succeeded or failed by the
    /// exit code. Returns the exit code and the output.
    async fn run_hook(&self, job: &str, binary: &str) -> (i32, String) {
        let job = self.hook_job(job).await;
        let name = job.metadata.name.clone().unwrap();
        let pod = format!("{name}-{:x}", rand_u32() & 0xfffff);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.shop);
        let mut template = job.spec.as_ref().unwrap().template.clone();
        let mut metadata = template.metadata.take().unwrap_or_default();
        metadata.name = Some(pod.clone());
        metadata.owner_references = Some(vec![serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job", "name": name,
            "uid": job.metadata.uid.clone().unwrap(), "controller": true,
            "blockOwnerDeletion": true}))
        .unwrap()]);
        let pod_object = Pod {
            metadata,
            spec: template.spec.clone(),
            ..Default::default()
        };
        pods.create(&PostParams::default(), &pod_object)
            .await
            .unwrap();
        let env = self.job_env(&job, &pod).await;
        // A fresh token each time: the ServiceAccount is created anew on every sync.
        let kubeconfig_path = self._dir.path().join(format!("kubeconfig-{pod}"));
        let account = template
            .spec
            .as_ref()
            .and_then(|p| p.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        // (No controller-manager makes `default` ServiceAccounts here; the app's own hooks are
        // played by a plain command that needs none.)
        if account == "default" {
            std::fs::copy(kubeconfig(), &kubeconfig_path).unwrap();
        } else {
            service_account_kubeconfig(&self.client, &self.shop, &account, &kubeconfig_path).await;
        }
        let out = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .envs(env)
            .env("KUBECONFIG", &kubeconfig_path)
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        finish_job(&self.client, &self.shop, &name, code == 0).await;
        (code, text)
    }

    /// The container's environment as the kubelet would give it, with Argo CD's in-cluster
    /// address replaced by the test server's (and its CA, which a cluster would mount).
    async fn job_env(&self, job: &Job, pod: &str) -> Vec<(String, String)> {
        let container = &job
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.shop);
        let mut env = Vec::new();
        for var in container.env.clone().unwrap_or_default() {
            let value = match (&var.value, &var.value_from) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(from)) => {
                    if let Some(field) = &from.field_ref {
                        match field.field_path.as_str() {
                            "metadata.name" => Some(pod.to_string()),
                            "metadata.namespace" => Some(self.shop.clone()),
                            other => panic!("a field the test does not play: {other}"),
                        }
                    } else if let Some(key) = &from.secret_key_ref {
                        let secret = secrets.get_opt(&key.name).await.unwrap();
                        let value = secret
                            .and_then(|s| s.data)
                            .and_then(|d| d.get(&key.key).cloned())
                            .map(|b| String::from_utf8(b.0).unwrap());
                        assert!(value.is_some() || key.optional == Some(true));
                        value
                    } else {
                        panic!("an env source the test does not play: {from:?}")
                    }
                }
                (None, None) => Some(String::new()),
            };
            if let Some(v) = value {
                env.push((var.name.clone(), v));
            }
        }
        let real = real_argocd();
        for (name, value) in env.iter_mut() {
            if name == "ARGOCD_SERVER" {
                assert_eq!(value, "argocd-server.argocd.svc:443");
                *value = real.server.clone();
            }
        }
        env.push((
            "ARGO_DRIFT_ARGOCD_CA_FILE".into(),
            real.ca.display().to_string(),
        ));
        env
    }
}

/// The Job controller's status for a finished Job.
async fn finish_job(client: &kube::Client, namespace: &str, name: &str, succeeded: bool) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let now = "2026-12-04T10:00:00Z";
    let started = "2026-12-04T09:59:58Z";
    let status = if succeeded {
        json!({"startTime": started, "completionTime": now, "succeeded": 1, "active": 0,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                {"type": "Complete", "status": "True", "lastTransitionTime": now}]})
    } else {
        json!({"startTime": started, "failed": 1, "active": 0,
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit", "lastTransitionTime": now},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit", "lastTransitionTime": now}]})
    };
    jobs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .unwrap_or_else(|e| panic!("setting Job {namespace}/{name}'s status: {e}"));
}

/// The garbage collector's part for hooks Argo CD deletes in the foreground (its hook deletion
/// policy): the Pods a Job owns go, then the `foregroundDeletion` finalizer, for every kind the
/// hooks are made of, in the app's namespace and the records namespace.
async fn collect_garbage(client: kube::Client, namespaces: Vec<String>) {
    let pods_of = |ns: &str| Api::<Pod>::namespaced(client.clone(), ns);
    loop {
        for ns in &namespaces {
            for (api_version, kind) in [
                ("batch/v1", "Job"),
                ("v1", "ServiceAccount"),
                ("rbac.authorization.k8s.io/v1", "Role"),
                ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ] {
                let api = dynamic(&client, ns, api_version, kind).await;
                collect(&api, &pods_of(ns)).await;
            }
        }
        let bindings = dynamic(
            &client,
            "",
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
        )
        .await;
        collect(&bindings, &pods_of(&namespaces[0])).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn collect(api: &Api<kube::api::DynamicObject>, pods: &Api<Pod>) {
    let Ok(list) = api.list(&ListParams::default()).await else {
        return;
    };
    for object in list.items {
        let finalizers = object.metadata.finalizers.clone().unwrap_or_default();
        if object.metadata.deletion_timestamp.is_none()
            || !finalizers.iter().any(|f| f == "foregroundDeletion")
        {
            continue;
        }
        let uid = object.metadata.uid.clone().unwrap();
        if let Ok(owned) = pods.list(&ListParams::default()).await {
            for pod in owned.items.iter().filter(|p| {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid)
            }) {
                let _ = pods
                    .delete(
                        pod.metadata.name.as_deref().unwrap(),
                        &DeleteParams::default().grace_period(0),
                    )
                    .await;
            }
        }
        let rest: Vec<String> = finalizers
            .into_iter()
            .filter(|f| f != "foregroundDeletion")
            .collect();
        let _ = api
            .patch(
                object.metadata.name.as_deref().unwrap(),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": rest}})),
            )
            .await;
    }
}

async fn configmaps(client: &kube::Client, ns: &str, selector: &str) -> Vec<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

fn last_line(out: &str) -> &str {
    out.trim_end().lines().last().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_gate_stops_a_real_sync_until_the_revision_is_approved_and_postsync_audits_it() {
    let s = RealSync::new(json!({"argo-drift.io/gate": "medium"}), false).await;
    // Someone fixed something by hand: the next sync would overwrite it.
    merge(
        &dynamic(&s.client, &s.shop, "v1", "ConfigMap").await,
        "web",
        "kubectl-edit",
        json!({"data": {"b": "9"}}),
    )
    .await;
    let second = s.commit("2", "second: raise a");
    let argocd = real_argocd().client();
    argocd.sync(&s.name, &s.apps, &[]).await.unwrap();

    let presync = env!("CARGO_BIN_EXE_argo-drift-presync");
    let (code, out) = s.run_hook("argo-drift-presync", presync).await;
    assert_eq!(code, 1, "the gate closes: {out}");
    assert!(
        last_line(&out).contains("overwriting 1 out-of-band change(s) up to medium"),
        "{out}"
    );
    // The hooks read the app's Secret in their namespace, not the one in another.
    assert!(
        last_line(&out).contains(&format!(
            "1 resource(s) not compared (not readable by the hooks: Secret {}/elsewhere)",
            s.apps
        )),
        "{out}"
    );
    assert!(!out.contains("hunter2") && !out.contains("t0k3n"), "{out}");
    // The failed PreSync fails the sync: Argo CD runs SyncFail, which finds nothing of the
    // failing revision applied, so nothing to roll back.
    let syncfail = env!("CARGO_BIN_EXE_argo-drift-syncfail");
    let (code, out) = s.run_hook("argo-drift-syncfail", syncfail).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        last_line(&out).contains(
            "failed before any resource was applied (failed: PreSync Job argo-drift-presync); nothing to roll back"
        ),
        "{out}"
    );
    let app = s
        .wait_app("the failed sync", |a| {
            a["status"]["operationState"]["phase"] == "Failed"
        })
        .await;
    let presync_result = app["status"]["operationState"]["syncResult"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "argo-drift-presync")
        .cloned()
        .unwrap();
    assert_eq!(presync_result["hookPhase"], "Failed");
    let live = s.live().await;
    assert_eq!(live["data"], json!({"a": "1", "b": "9"}), "the gate held");

    // A human approves this revision: the next sync goes through, and PostSync audits it.
    s.approve(&second).await;
    argocd.sync(&s.name, &s.apps, &[]).await.unwrap();
    let (code, out) = s.run_hook("argo-drift-presync", presync).await;
    assert_eq!(code, 0, "{out}");
    assert!(last_line(&out).contains("(approved)"), "{out}");
    let postsync = env!("CARGO_BIN_EXE_argo-drift-postsync");
    let (code, out) = s.run_hook("argo-drift-postsync", postsync).await;
    assert_eq!(code, 0, "{out}");
    let app = s.wait_app("the approved sync", synced).await;
    assert_eq!(
        app["status"]["operationState"]["syncResult"]["revision"],
        second.as_str()
    );
    assert_eq!(s.live().await["data"], json!({"a": "2", "b": "1"}));
    let audits = configmaps(
        &s.client,
        &s.records,
        "audit-type=drift-remediation,argo-drift.io/record=sync",
    )
    .await;
    // One record per sync that went through: the first, and the approved one.
    let records: Vec<Value> = audits
        .iter()
        .map(|a| serde_json::from_str(&a.data.as_ref().unwrap()["audit.json"]).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{records:#?}");
    let record = records
        .iter()
        .find(|r| r["revision"] == second.as_str())
        .unwrap();
    assert_eq!(
        record["previousRevision"],
        records
            .iter()
            .find(|r| r["revision"] != second.as_str())
            .unwrap()["revision"]
    );
    assert_eq!(record["initiatedBy"]["username"], "argo-drift");
    assert_eq!(
        record["presync"]["overwrites"][0]["manager"],
        "kubectl-edit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_whose_smoke_test_fails_is_rolled_back_by_the_controller_once_argo_cd_has_ended_it()
{
    let s = RealSync::new(json!({}), true).await;
    let real = real_argocd();
    let first = s.app().await["status"]["sync"]["revision"]
        .as_str()
        .unwrap()
        .to_string();
    let controller = Running::start_with_real_argocd(
        &admin_config().await,
        &s.apps,
        &["--state-namespace", s.records.as_str()],
    )
    .await;
    let first_postsync = Api::<Job>::namespaced(s.client.clone(), &s.shop)
        .get("argo-drift-postsync")
        .await
        .unwrap()
        .metadata
        .uid;
    let second = s.commit("2", "second: raise a");
    let argocd = real.client();
    argocd.sync(&s.name, &s.apps, &[]).await.unwrap();
    let presync = env!("CARGO_BIN_EXE_argo-drift-presync");
    let syncfail = env!("CARGO_BIN_EXE_argo-drift-syncfail");
    let (code, out) = s.run_hook("argo-drift-presync", presync).await;
    assert_eq!(code, 0, "nothing out of band, no gate: {out}");
    // The ConfigMap went out; the app's smoke test fails.
    let (code, _) = s.run_hook("smoke-test", "false").await;
    assert_eq!(code, 1);
    assert_eq!(s.live().await["data"]["a"], "2");
    let (code, out) = s.run_hook("argo-drift-syncfail", syncfail).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        last_line(&out).contains(&format!(
            "rollback to history id 0 (revision {}) from failing revision {} requested",
            &first[..12],
            &second[..12]
        )),
        "{out}"
    );
    // Argo CD ends the failed operation; the controller then asks for the rollback, and Argo
    // CD syncs the first revision (a rollback skips hooks: server/application/application.go
    // Rollback uses the "apply" strategy). Git still says `second`: OutOfSync, as it should.
    let app = s
        .wait_app("the rollback", |a| {
            let state = &a["status"]["operationState"];
            state["operation"]["sync"]["revision"] == first.as_str()
                && state["phase"] == "Succeeded"
        })
        .await;
    let operation = &app["status"]["operationState"]["operation"];
    assert_eq!(operation["initiatedBy"]["username"], "argo-drift");
    assert_eq!(operation["sync"]["syncStrategy"], json!({"apply": {}}));
    s.wait_app("Argo CD's comparison with Git's newest revision", |a| {
        a["status"]["sync"]["status"] == "OutOfSync"
    })
    .await;
    assert_eq!(s.live().await["data"]["a"], "1");
    // The SyncFail Job was the last hook: no PostSync ran for the failed sync (the PostSync Job
    // there is the first sync's).
    let jobs: Api<Job> = Api::namespaced(s.client.clone(), &s.shop);
    let postsync = jobs.get("argo-drift-postsync").await.unwrap();
    assert_eq!(postsync.metadata.uid, first_postsync);
    let alerts = wait_for("the alert closed", Duration::from_secs(20), || async {
        let done = configmaps(
            &s.client,
            &s.records,
            "alert-type=emergency,argo-drift.io/rollback=done",
        )
        .await;
        (!done.is_empty()).then_some(done)
    })
    .await;
    let alert: Value =
        serde_json::from_str(&alerts[0].data.as_ref().unwrap()["alert.json"]).unwrap();
    assert!(
        alert["rollback"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "rolled back to history id 0 (revision {})",
                &first[..12]
            )),
        "{alert:#}"
    );
    let reasons: Vec<String> = events(&s.client, &s.apps, &s.name)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(reasons.contains(&"RollbackDone".to_string()), "{reasons:?}");
    controller.stop().await;
}
