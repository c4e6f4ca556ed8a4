//! PreSync and PostSync as Argo CD runs them around a sync: the real binaries, the real API
//! server holding the Application with its running operation, a Git repository made here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::process::Command;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use serde_json::{json, Value};
use support::*;

/// Run hook binary `bin` with `args`; (exit code, stderr and stdout).
fn hook(bin: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .env_remove("APP_NAME")
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .envs(records_beside_apps(args))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn last_line(out: &str) -> &str {
    out.trim_end().lines().last().unwrap_or("")
}

async fn configmaps(client: &kube::Client, ns: &str, selector: &str) -> Vec<ConfigMap> {
    kube::Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presync_gates_a_sync_that_overwrites_out_of_band_changes_and_postsync_audits_it() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("repo"));
    let cm = |a: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"{a}\"\n  b: \"1\"\n")
    };
    repo.write("web/cm.yaml", &cm("1"));
    let first = repo.commit("first");
    apply_yaml(&client, &shop, &cm("1"), "argocd-controller").await;
    // Someone fixed something by hand: the sync will overwrite it.
    merge(
        &dynamic(&client, &shop, "v1", "ConfigMap").await,
        "web",
        "kubectl-edit",
        json!({"data": {"b": "9"}}),
    )
    .await;
    repo.write("web/cm.yaml", &cm("2"));
    let second = repo.commit("second: raise a");

    // The Application as Argo CD has it while the sync of `second` runs.
    let mut app = application("web", &repo.url(), "web", &shop, None);
    app["metadata"]["annotations"] = json!({"argo-drift.io/gate": "medium"});
    app["operation"] = json!({"sync": {"revision": second}, "initiatedBy": {"username": "alice"}});
    app["status"] = json!({
        "sync": {"status": "OutOfSync", "revision": first},
        "history": [{"id": 1, "revision": first, "deployedAt": "2026-11-20T10:00:00Z",
            "source": {"repoURL": repo.url(), "path": "web", "targetRevision": "main"}}],
        "operationState": {"phase": "Running", "startedAt": "2026-11-21T10:00:00Z",
            "operation": {"sync": {"revision": second}, "initiatedBy": {"username": "alice"}}}
    });
    apply(&client, &argocd, app, "argocd-server").await;
    let cache = dir.path().join("cache");
    let presync = env!("CARGO_BIN_EXE_argo-drift-presync");
    // A gated sync is announced (sync-gated) where notifications.yaml routes it.
    let pagerduty = Capture::start().await;
    let notifications =
        pagerduty_notifications(dir.path(), &pagerduty.url, &["sync-gated"], "none", "");
    let args = [
        "--app",
        "web",
        "--app-namespace",
        argocd.as_str(),
        "--repo-cache",
        cache.to_str().unwrap(),
        "--notifications",
        notifications.to_str().unwrap(),
    ];

    let (code, out) = hook(presync, &args);
    assert_eq!(code, 1, "the gate closes: {out}");
    let last = last_line(&out);
    assert!(last.starts_with("argo-drift-presync: refused: "), "{out}");
    assert!(
        last.contains("overwriting 1 out-of-band change(s) up to medium"),
        "{out}"
    );
    assert!(
        last.contains(&format!(
            "kubectl -n {argocd} annotate application web argo-drift.io/approve-sync={}",
            &second[..12]
        )),
        "{out}"
    );
    let analyses = configmaps(&client, &argocd, "argo-drift.io/analysis=presync").await;
    assert_eq!(analyses.len(), 1);
    assert_eq!(
        analyses[0].metadata.name.as_deref().unwrap(),
        format!("argo-drift-analysis-web-{}", &second[..12])
    );
    let analysis: Value =
        serde_json::from_str(&analyses[0].data.as_ref().unwrap()["analysis.json"]).unwrap();
    assert_eq!(analysis["commit"], second.as_str());
    let fields: Vec<&str> = analysis["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"data.a") && fields.contains(&"data.b"),
        "{analysis:#}"
    );
    assert_eq!(analysis["overwrites"][0]["field"], "data.b");
    assert_eq!(analysis["overwrites"][0]["manager"], "kubectl-edit");
    assert_eq!(analysis["overwrites"][0]["live"], "9");
    let pages = pagerduty.got();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0]["payload"]["class"], "sync-gated");
    assert!(pages[0]["payload"]["custom_details"]["decision"]
        .as_str()
        .unwrap()
        .contains("argo-drift.io/approve-sync="));

    // Dry-run reports without gating.
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let (code, out) = hook(presync, &dry);
    assert_eq!(code, 0, "{out}");
    assert!(
        last_line(&out).contains("dry-run: would close the gate"),
        "{out}"
    );

    // A human approves this revision: the sync may go on.
    merge(
        &dynamic(&client, &argocd, "argoproj.io/v1alpha1", "Application").await,
        "web",
        "kubectl-annotate",
        json!({"metadata": {"annotations": {"argo-drift.io/approve-sync": &second[..12]}}}),
    )
    .await;
    let (code, out) = hook(presync, &args);
    assert_eq!(code, 0, "{out}");
    assert!(last_line(&out).contains("(approved)"), "{out}");

    // The sync ran; PostSync writes the audit record.
    merge(
        &dynamic(&client, &argocd, "argoproj.io/v1alpha1", "Application").await,
        "web",
        "argocd-application-controller",
        json!({"operation": null, "status": {"operationState": {
            "phase": "Succeeded", "finishedAt": "2026-11-21T10:00:05Z", "message": "successfully synced",
            "syncResult": {"revision": second, "resources": [
                {"group": "", "version": "v1", "kind": "ConfigMap", "namespace": shop, "name": "web",
                 "status": "Synced", "message": "configmap/web configured", "syncPhase": "Sync"}]}}}}),
    )
    .await;
    let postsync = env!("CARGO_BIN_EXE_argo-drift-postsync");
    let mut post_args = args.to_vec();
    post_args.extend(["--keep", "1"]);
    let (code, out) = hook(postsync, &post_args);
    assert_eq!(code, 0, "{out}");
    assert!(
        last_line(&out).contains(&format!(
            "revision {} (previously {}), severity medium",
            &second[..12],
            &first[..12]
        )),
        "{out}"
    );
    let audits = configmaps(
        &client,
        &argocd,
        "audit-type=drift-remediation,argo-drift.io/record=sync,argo-drift.io/app=web",
    )
    .await;
    assert_eq!(audits.len(), 1);
    assert_eq!(
        audits[0].metadata.labels.as_ref().unwrap()["argo-drift.io/severity"],
        "medium"
    );
    let record: Value =
        serde_json::from_str(&audits[0].data.as_ref().unwrap()["audit.json"]).unwrap();
    assert_eq!(record["revision"], second.as_str());
    assert_eq!(record["previousRevision"], first.as_str());
    assert_eq!(record["commit"]["author"], "test");
    assert_eq!(record["commit"]["message"], "second: raise a");
    assert_eq!(record["initiatedBy"]["username"], "alice");
    assert_eq!(record["project"], "default");
    assert_eq!(record["resources"][0]["status"], "Synced");
    assert_eq!(
        record["presync"]["overwrites"][0]["manager"],
        "kubectl-edit"
    );
    // Run again (Argo CD retried the hook): still the newest one only.
    let (code, out) = hook(postsync, &post_args);
    assert_eq!(code, 0, "{out}");
    let audits = configmaps(
        &client,
        &argocd,
        "audit-type=drift-remediation,argo-drift.io/record=sync,argo-drift.io/app=web",
    )
    .await;
    assert_eq!(audits.len(), 1, "--keep 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presync_outside_a_sync_is_an_error_and_a_quiet_sync_passes_the_gate() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("repo"));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"1\"\n";
    repo.write("web/cm.yaml", cm);
    let rev = repo.commit("only");
    apply_yaml(&client, &shop, cm, "argocd-controller").await;
    let app = application("web", &repo.url(), "web", &shop, Some(&rev));
    apply(&client, &argocd, app, "argocd-server").await;
    let presync = env!("CARGO_BIN_EXE_argo-drift-presync");
    let cache = dir.path().join("cache");
    let args = [
        "--app",
        "web",
        "--app-namespace",
        argocd.as_str(),
        "--repo-cache",
        cache.to_str().unwrap(),
        "--gate",
        "low",
    ];
    let (code, out) = hook(presync, &args);
    assert_eq!(code, 2, "{out}");
    assert!(
        last_line(&out).contains("has no sync operation running"),
        "{out}"
    );

    merge(
        &dynamic(&client, &argocd, "argoproj.io/v1alpha1", "Application").await,
        "web",
        "argocd-application-controller",
        json!({"operation": {"sync": {"revision": rev}}}),
    )
    .await;
    let (code, out) = hook(presync, &args);
    assert_eq!(code, 0, "nothing changes: the gate stays open: {out}");
    assert!(last_line(&out).contains("0 change(s) up to none"), "{out}");
}

/// PreSync takes Argo CD's settings as its baseline, as the controller does: an out-of-band
/// change to a field argocd-cm tells Argo CD to ignore is no overwrite, and the analysis says
/// where the settings came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presync_ignores_what_argo_cds_settings_ignore() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("repo"));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"1\"\n  tuned: \"1\"\n";
    repo.write("web/cm.yaml", cm);
    let rev = repo.commit("only");
    apply_yaml(&client, &shop, cm, "argocd-controller").await;
    merge(
        &dynamic(&client, &shop, "v1", "ConfigMap").await,
        "web",
        "kubectl-edit",
        json!({"data": {"tuned": "7"}}),
    )
    .await;
    let mut app = application("web", &repo.url(), "web", &shop, Some(&rev));
    app["operation"] = json!({"sync": {"revision": rev}});
    apply(&client, &argocd, app, "argocd-server").await;
    let presync = env!("CARGO_BIN_EXE_argo-drift-presync");
    let cache = dir.path().join("cache");
    let args = [
        "--app",
        "web",
        "--app-namespace",
        argocd.as_str(),
        "--repo-cache",
        cache.to_str().unwrap(),
        "--gate",
        "low",
        "--dry-run",
    ];
    let (code, out) = hook(presync, &args);
    assert_eq!(code, 0, "{out}");
    assert!(
        last_line(&out).contains("dry-run: would close the gate")
            && last_line(&out).contains("overwriting 1 out-of-band change(s)"),
        "without Argo CD's settings the hand-tuned value is overwritten: {out}"
    );

    let settings = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n  resource.customizations.ignoreDifferences.ConfigMap: |\n    jsonPointers:\n    - /data/tuned\n";
    apply_yaml(&client, &argocd, settings, "argocd-server").await;
    let (code, out) = hook(presync, &args[..args.len() - 1]);
    assert_eq!(code, 0, "{out}");
    assert!(last_line(&out).contains("0 change(s) up to none"), "{out}");
    let analyses = configmaps(&client, &argocd, "argo-drift.io/analysis=presync").await;
    let analysis: Value =
        serde_json::from_str(&analyses[0].data.as_ref().unwrap()["analysis.json"]).unwrap();
    assert_eq!(analysis["argocdSettings"], format!("{argocd}/argocd-cm"));

    // An Argo CD API that refuses the hook's token: the Application and the settings are read
    // through Kubernetes instead, and the log says why.
    let fake = argo_drift_fake_argocd::FakeArgoCd::start(client.clone(), "right-token", &argocd)
        .await
        .unwrap();
    let mut refused = args[..args.len() - 1].to_vec();
    refused.extend([
        "--argocd-server",
        fake.url.as_str(),
        "--argocd-token",
        "wrong-token",
    ]);
    let (code, out) = hook(presync, &refused);
    assert_eq!(code, 0, "{out}");
    assert!(last_line(&out).contains("0 change(s) up to none"), "{out}");
    assert!(
        out.contains("read through Kubernetes, Argo CD's API failed"),
        "{out}"
    );
    assert!(!out.contains("wrong-token"), "{out}");

    // Settings Argo CD could not read either stop the hook, naming the key.
    let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n  application.resourceTrackingMethod: guess\n";
    apply_yaml(&client, &argocd, broken, "argocd-server").await;
    let (code, out) = hook(presync, &args);
    assert_eq!(code, 2, "{out}");
    assert!(
        last_line(&out).contains("argocd-cm: application.resourceTrackingMethod"),
        "{out}"
    );
}

#[test]
fn every_hook_has_help_naming_its_exit_codes() {
    for bin in [
        env!("CARGO_BIN_EXE_argo-drift-presync"),
        env!("CARGO_BIN_EXE_argo-drift-postsync"),
        env!("CARGO_BIN_EXE_argo-drift-syncfail"),
    ] {
        let out = Command::new(bin).arg("--help").output().unwrap();
        assert!(out.status.success(), "{bin}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Exit codes: 0"), "{bin}: {text}");
        assert!(text.contains("--app <APP>"), "{bin}: {text}");
        if bin.ends_with("syncfail") {
            assert!(text.contains("--min-interval"), "{text}");
        }
    }
}
