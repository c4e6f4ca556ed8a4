//! `argo-drift adopt` end to end: an app whose Git repository is served over Git's smart HTTP
//! protocol with a token (Argo CD's repository Secret holds it), drifted by two people on the
//! real API server; adopt pushes a branch whose files keep every other byte, with a commit
//! naming who changed what (from the audit log); the app pointed at that commit is in sync.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use argo_drift_controller::commands::adopt::{adopt, AdoptArgs};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::json;
use support::*;

const FLAGS: &str = "# Feature flags of the shop: edit with care.\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags # read at start\ndata:\n  mode: safe   # safe | fast\n  level: \"low\"\n  'owner': team-a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\ndata: {k: v}\n";

const TOKEN: &str = "glpat-adopt-0123456789";

/// Argo CD's repository Secret for `url`, with the token the test's Git server wants.
async fn repository_secret(client: &kube::Client, argocd: &str, url: &str) {
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "repo", "labels": {"argocd.argoproj.io/secret-type": "repository"}},
        "stringData": {"type": "git", "url": url, "username": "deploy-bot", "password": TOKEN}
    });
    apply(client, argocd, secret, "argocd-server").await;
}

fn args(app: &str, argocd: &str, branch: &str, dry_run: bool) -> AdoptArgs {
    AdoptArgs {
        app: app.into(),
        fields: vec![],
        namespaces: argo_drift_controller::cli::NamespaceArgs {
            control_plane_namespace: argocd.into(),
            state_namespace: argocd.into(),
        },
        branch: Some(branch.into()),
        author: "argo-drift <argo-drift@example.com>".into(),
        dry_run,
        repo_cache: None,
        forge: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_pushes_a_branch_that_keeps_every_other_byte_and_brings_the_app_in_sync() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let base = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&base.path().join("shop.git"));
    repo.write("app/flags.yaml", FLAGS);
    repo.write("app/README.md", "Flags.\n");
    let commit = repo.commit("flags");
    let server = GitHttp::start(base.path(), "deploy-bot", TOKEN);
    let url = format!("http://127.0.0.1:{}/shop.git", server.port);
    repository_secret(&client, &argocd, &url).await;
    // With the test API server's audit log, the commit names the people; shipped from before
    // the app is applied, as a shipper runs all along (a removed field is named from the write
    // before it, which had the field).
    let audit_log = testenv("env")
        .into_iter()
        .find(|(k, _)| k == "ARGO_DRIFT_TESTENV_AUDIT_LOG")
        .map(|(_, v)| v);
    let shipper = audit_log
        .as_ref()
        .map(|log| AuditShipper::start(log.as_ref()));
    app_in_sync(
        &client, &argocd, &shop, "flags", &url, "app", &commit, FLAGS,
    )
    .await;
    let mut controller_args = vec!["--leader-election".to_string(), "false".to_string()];
    if let Some(shipper) = &shipper {
        controller_args.extend([
            "--audit-log".to_string(),
            shipper.path.display().to_string(),
        ]);
    }
    let controller_args: Vec<&str> = controller_args.iter().map(String::as_str).collect();
    let controller = Running::start(&admin_config().await, &argocd, &controller_args).await;
    wait_report(
        &client,
        &argocd,
        "flags",
        "the first report",
        Duration::from_secs(30),
        |r| r["summary"]["synced"] == 2,
    )
    .await;

    // Someone sets a field, adds one and removes one.
    let alice = match &audit_log {
        Some(_) => impersonating("alice").await,
        None => client.clone(),
    };
    let configmaps: Api<ConfigMap> = Api::namespaced(alice.clone(), &shop);
    edit_config_map(
        &configmaps,
        "flags",
        json!({"mode": "fast", "extra": "1", "owner": null}),
    )
    .await;
    wait_report(
        &client,
        &argocd,
        "flags",
        "the drift",
        Duration::from_secs(30),
        |r| {
            let changes = r["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r["changes"].as_array().cloned().unwrap_or_default())
                .collect::<Vec<_>>();
            changes.len() == 3
                && (audit_log.is_none() || changes.iter().all(|c| c.get("changedBy").is_some()))
        },
    )
    .await;

    // A dry run shows the change and pushes nothing.
    let mut out = Vec::new();
    adopt(
        admin_config().await,
        &args("flags", &argocd, "adopt-dry", true),
        &mut out,
    )
    .await
    .unwrap();
    let shown = String::from_utf8(out).unwrap();
    assert!(
        shown.contains("-  mode: safe   # safe | fast\n+  mode: fast   # safe | fast"),
        "{shown}"
    );
    assert!(repo.git(&["branch", "--list", "adopt-dry"]).is_empty());

    let mut out = Vec::new();
    adopt(
        admin_config().await,
        &args("flags", &argocd, "adopt-flags", false),
        &mut out,
    )
    .await
    .unwrap();
    let said = String::from_utf8(out).unwrap();
    assert!(
        said.starts_with("pushed branch adopt-flags (commit "),
        "{said}"
    );
    assert!(
        said.contains("3 field(s) of 1 resource(s) in app/flags.yaml"),
        "{said}"
    );

    // The pushed file: the three fields, nothing else moved (comments, quoting, the other
    // document, the flow map).
    let pushed = repo.git(&["show", "adopt-flags:app/flags.yaml"]) + "\n";
    let expected = FLAGS
        .replace("mode: safe   # safe | fast", "mode: fast   # safe | fast")
        .replace("  'owner': team-a\n", "")
        .replace("  level: \"low\"\n", "  level: \"low\"\n  extra: \"1\"\n");
    assert_eq!(pushed, expected);
    assert_eq!(repo.git(&["show", "adopt-flags:app/README.md"]), "Flags.");
    let message = repo.git(&["log", "-1", "--format=%B", "adopt-flags"]);
    assert!(
        message.starts_with(&format!(
            "argo-drift: adopt live drift of {argocd}/flags into Git"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("ConfigMap {shop}/flags:")),
        "{message}"
    );
    assert!(
        message.contains("- data.mode: \"safe\" -> \"fast\""),
        "{message}"
    );
    assert!(
        message.contains("- data.owner: \"team-a\" -> (absent)"),
        "{message}"
    );
    if audit_log.is_some() {
        assert!(
            message.contains("changed by alice (impersonated by admin) with kubectl-edit, at 20"),
            "{message}"
        );
    }
    assert!(message.contains("drifted since 20"), "{message}");
    assert_eq!(
        repo.git(&["log", "-1", "--format=%an <%ae>", "adopt-flags"]),
        "argo-drift <argo-drift@example.com>"
    );
    assert_eq!(
        repo.git(&["rev-parse", "adopt-flags^"]),
        commit,
        "on the analysed commit"
    );
    // The token is nowhere in what adopt said or wrote.
    assert!(!said.contains(TOKEN) && !message.contains(TOKEN));

    // The same branch again is refused, not overwritten.
    let mut out = Vec::new();
    let e = adopt(
        admin_config().await,
        &args("flags", &argocd, "adopt-flags", false),
        &mut out,
    )
    .await
    .unwrap_err();
    assert!(format!("{e:#}").contains("adopt-flags"), "{e:#}");
    assert!(!format!("{e:#}").contains(TOKEN));

    // Argo CD syncing the adopted commit: the app is in sync, nothing reverted.
    let adopted = repo.git(&["rev-parse", "adopt-flags"]);
    apply(
        &client,
        &argocd,
        application("flags", &url, "app", &shop, Some(&adopted)),
        "argocd-server",
    )
    .await;
    let (_, r) = wait_report(
        &client,
        &argocd,
        "flags",
        "in sync on the adopted commit",
        Duration::from_secs(30),
        |r| r["summary"]["synced"] == 2 && r["revision"] == adopted.as_str(),
    )
    .await;
    assert_eq!(r["summary"]["modified"], 0, "{r:#}");
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);
}

/// The real kustomize's build of `dir`.
fn kustomize(dir: &std::path::Path) -> String {
    let kustomize = exported(&testenv("tools"), "ARGO_DRIFT_TEST_KUSTOMIZE");
    let out = std::process::Command::new(kustomize)
        .arg("build")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `argo-drift diff` of `desired` against `live` (YAML texts), as JSON, and its exit code.
fn offline_diff(dir: &std::path::Path, desired: &str, live: &str) -> (i32, serde_json::Value) {
    std::fs::write(dir.join("desired.yaml"), desired).unwrap();
    std::fs::write(dir.join("live.yaml"), live).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_argo-drift"))
        .args(["diff", "-o", "json", "--desired"])
        .arg(dir.join("desired.yaml"))
        .arg("--live")
        .arg(dir.join("live.yaml"))
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

/// The report of app `argocd/app` as the controller would publish it (with the analysed
/// revision), made by `argo-drift diff` of `desired` against `live` at `commit`.
async fn publish_offline_report(
    client: &kube::Client,
    argocd: &str,
    app: &str,
    work: &std::path::Path,
    desired: &str,
    live: &str,
    commit: &str,
) {
    let (code, mut report) = offline_diff(work, desired, live);
    assert_eq!(code, 1, "{report:#}");
    report["revision"] = json!(commit);
    let name = argo_drift_cluster::records::report_name(argocd, app);
    apply(
        client,
        argocd,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"report.json": report.to_string()}
        }),
        "argo-drift",
    )
    .await;
}

/// A kustomize source: the fields go into a patch the overlay's kustomization lists (its base,
/// shared with other overlays, untouched); the pushed branch, built by the real kustomize,
/// matches the live object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kustomize_overlay_gets_a_patch_and_builds_to_what_is_live() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let base = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&base.path().join("kshop.git"));
    let base_flags = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  mode: safe\n  level: low\n";
    repo.write("base/flags.yaml", base_flags);
    repo.write("base/kustomization.yaml", "resources:\n- flags.yaml\n");
    let overlay = format!(
        "# The production overlay.\nresources:\n- ../../base  # shared\nnamespace: {shop}\n"
    );
    repo.write("overlays/prod/kustomization.yaml", &overlay);
    let commit = repo.commit("kustomize");
    let server = GitHttp::start(base.path(), "deploy-bot", TOKEN);
    let url = format!("http://127.0.0.1:{}/kshop.git", server.port);
    repository_secret(&client, &argocd, &url).await;
    let built = kustomize(&repo.dir.join("overlays/prod"));
    app_in_sync(
        &client,
        &argocd,
        &shop,
        "kflags",
        &url,
        "overlays/prod",
        &commit,
        &built,
    )
    .await;

    // Drift: a value changed, a key removed.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &shop);
    edit_config_map(&configmaps, "flags", json!({"mode": "fast", "level": null})).await;
    let live = serde_yaml::to_string(&configmaps.get("flags").await.unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    publish_offline_report(
        &client,
        &argocd,
        "kflags",
        work.path(),
        &built,
        &live,
        &commit,
    )
    .await;

    let mut out = Vec::new();
    adopt(
        admin_config().await,
        &args("kflags", &argocd, "adopt-kflags", false),
        &mut out,
    )
    .await
    .unwrap();
    let said = String::from_utf8(out).unwrap();
    assert!(
        said.contains("overlays/prod/kustomization.yaml, overlays/prod/argo-drift-adopted-configmap-flags.yaml"),
        "{said}"
    );
    // The base is untouched; the overlay's kustomization keeps its lines and lists the patch.
    assert_eq!(
        repo.git(&["show", "adopt-kflags:base/flags.yaml"]) + "\n",
        base_flags
    );
    assert_eq!(
        repo.git(&["show", "adopt-kflags:overlays/prod/kustomization.yaml"]) + "\n",
        format!("{overlay}patches:\n  - path: argo-drift-adopted-configmap-flags.yaml\n")
    );
    // Built by the real kustomize from the pushed branch: what is live, no drift left.
    let checkout = base.path().join("checkout");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        checkout.to_str().unwrap(),
        "adopt-kflags",
    ]);
    let adopted = kustomize(&checkout.join("overlays/prod"));
    let (code, after) = offline_diff(work.path(), &adopted, &live);
    assert_eq!(code, 0, "{after:#}\n{adopted}");
    assert_eq!(after["summary"]["modified"], 0);
}

/// Over SSH with the key of Argo CD's repository Secret, the server's host key checked against
/// Argo CD's known hosts: unknown, refused; known, pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_pushes_over_ssh_only_to_a_known_host() {
    let Some(sshd) = Sshd::start() else {
        eprintln!("skipped: no /usr/sbin/sshd (scripts/testenv.sh up installs openssh-server)");
        return;
    };
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let base = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&base.path().join("ssh.git"));
    let cm =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: over-ssh\ndata:\n  k: v # the value\n";
    repo.write("cm.yaml", cm);
    let commit = repo.commit("c");
    let url = sshd.repository(&client, &argocd, &repo).await;
    app_in_sync(&client, &argocd, &shop, "ssh", &url, "", &commit, cm).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &shop);
    edit_config_map(&configmaps, "over-ssh", json!({"k": "w"})).await;
    let live = serde_yaml::to_string(&configmaps.get("over-ssh").await.unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    // Argo CD places the namespace-less document in the app's destination namespace.
    let placed = cm.replace("metadata:\n", &format!("metadata:\n  namespace: {shop}\n"));
    publish_offline_report(
        &client,
        &argocd,
        "ssh",
        work.path(),
        &placed,
        &live,
        &commit,
    )
    .await;

    let mut out = Vec::new();
    let e = adopt(
        admin_config().await,
        &args("ssh", &argocd, "adopt-ssh", false),
        &mut out,
    )
    .await
    .map(|_| String::from_utf8(out.clone()).unwrap())
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("not in Argo CD's known hosts"),
        "{e:#}"
    );
    let known = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "argocd-ssh-known-hosts-cm"},
        "data": {"ssh_known_hosts": format!("{}\n", sshd.host_key_line)}
    });
    apply(&client, &argocd, known, "argocd-server").await;
    let mut out = Vec::new();
    adopt(
        admin_config().await,
        &args("ssh", &argocd, "adopt-ssh", false),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(
        repo.git(&["show", "adopt-ssh:cm.yaml"]) + "\n",
        cm.replace("k: v # the value", "k: w # the value")
    );
    let said = String::from_utf8(out).unwrap();
    assert!(!said.contains("PRIVATE KEY"), "{said}");
}

/// The policy action `adopt` and the approval answered with adopt, against a real forge
/// (Gitea, whose API takes GitHub's pull-request request), for apps outside Argo CD's namespace:
/// the controller pushes a branch named by the drift with the repository credentials of Argo
/// CD's namespace and opens a pull request into the repository's default branch; merged, the
/// app rendered from that branch is in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adopt_action_pushes_a_branch_and_opens_a_pull_request_on_a_real_forge() {
    let client = client().await;
    // Argo CD's namespace holds the repository Secret; the Applications live in a namespace
    // of their own ("apps in any namespace"), where argo-drift keeps their reports too.
    let argocd = fresh_namespace(&client, "argocd").await;
    let team = fresh_namespace(&client, "apps").await;
    let shop = fresh_namespace(&client, "shop").await;
    let gitea = Gitea::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("work"));
    let limits = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: limits\ndata:\n  max: \"10\" # per minute\n";
    repo.write("flags/flags.yaml", FLAGS);
    repo.write("limits/limits.yaml", limits);
    let commit = repo.commit("apps");
    let url = gitea.repository("shop", &repo).await;
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "forge", "labels": {"argocd.argoproj.io/secret-type": "repository"}},
        "stringData": {"type": "git", "url": url, "username": gitea.user, "password": gitea.token}
    });
    apply(&client, &argocd, secret, "argocd-server").await;
    // flags adopts medium drift on its own (tier keep); limits asks for approval (the default).
    for (name, tier, live) in [("flags", Some("keep"), FLAGS), ("limits", None, limits)] {
        apply_yaml(&client, &shop, live, "argocd-controller").await;
        let mut app = application(name, &url, name, &shop, Some(&commit));
        app["metadata"]["labels"]["argo-drift.io/mode"] = json!("enforce");
        if let Some(tier) = tier {
            app["metadata"]["labels"]["argo-drift.io/tier"] = json!(tier);
        }
        apply(&client, &team, app, "argocd-server").await;
    }
    let policy_text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/policy.yaml"),
    )
    .unwrap()
    .replacen("  tiers: {}", "  tiers:\n    keep: {medium: [adopt]}", 1);
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, policy_text).unwrap();
    let token_file = dir.path().join("forge-token");
    std::fs::write(&token_file, format!("{}\n", gitea.token)).unwrap();
    let controller = Running::start_beside(
        &admin_config().await,
        &team,
        &argocd,
        &[
            "--leader-election",
            "false",
            "--policy",
            policy.to_str().unwrap(),
            "--forge",
            "gitea",
            "--forge-url",
            &gitea.url,
            "--forge-token-file",
            token_file.to_str().unwrap(),
            "--adopt-author",
            "argo-drift <argo-drift@example.com>",
        ],
    )
    .await;
    for name in ["flags", "limits"] {
        wait_report(
            &client,
            &team,
            name,
            "the first report",
            Duration::from_secs(30),
            |r| r["summary"]["modified"] == 0 && r["summary"]["synced"].as_u64() > Some(0),
        )
        .await;
    }

    // Someone changes a flag: the policy adopts it, once, with a pull request.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &shop);
    edit_config_map(&configmaps, "flags", json!({"mode": "fast"})).await;
    let pulls = |prefix: String| {
        let gitea = &gitea;
        async move {
            let open = gitea
                .get("/repos/ops/shop/pulls?state=open")
                .await
                .unwrap_or_default();
            open.as_array()
                .into_iter()
                .flatten()
                .filter(|p| {
                    p["head"]["ref"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with(&prefix)
                })
                .cloned()
                .collect::<Vec<_>>()
        }
    };
    let pr = wait_for("the pull request", Duration::from_secs(40), || async {
        pulls(format!("argo-drift/adopt/{team}/flags-"))
            .await
            .into_iter()
            .next()
    })
    .await;
    // The branch is named by the drift: the report id the Application carries.
    let branch = pr["head"]["ref"].as_str().unwrap().to_string();
    let id = branch
        .trim_start_matches(&format!("argo-drift/adopt/{team}/flags-"))
        .to_string();
    let apps = dynamic(&client, &team, "argoproj.io/v1alpha1", "Application").await;
    wait_for(
        "the report id on the Application",
        Duration::from_secs(20),
        || async {
            let flags = apps.get("flags").await.ok()?;
            (flags.metadata.annotations?.get("argo-drift.io/report-id")? == &id).then_some(())
        },
    )
    .await;
    assert_eq!(pr["base"]["ref"], "main", "into the default branch: {pr:#}");
    assert_eq!(
        pr["title"],
        format!("argo-drift: adopt live drift of {team}/flags into Git")
    );
    let body = pr["body"].as_str().unwrap();
    assert!(body.contains("- data.mode: \"safe\" -> \"fast\""), "{body}");
    assert!(
        body.contains(&format!(
            "Adopted-by: argo-drift remediation (report {id} of {team}/flags)"
        )),
        "{body}"
    );
    // The branch: on the analysed commit, only the changed line differs.
    let with_token = url.replacen("://", &format!("://{}:{}@", gitea.user, gitea.token), 1);
    repo.git(&["fetch", "-q", &with_token, &format!("{branch}:adopted")]);
    assert_eq!(repo.git(&["rev-parse", "adopted^"]), commit);
    assert_eq!(
        repo.git(&["show", "adopted:flags/flags.yaml"]) + "\n",
        FLAGS.replace("mode: safe   # safe | fast", "mode: fast   # safe | fast")
    );
    assert_eq!(
        repo.git(&["log", "-1", "--format=%an <%ae>", "adopted"]),
        "argo-drift <argo-drift@example.com>"
    );
    // Said in an Event, with the pull request; the audit record has it too; the token nowhere.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &team);
    let event = wait_for(
        "the DriftAdopted Event",
        Duration::from_secs(20),
        || async {
            events
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("DriftAdopted"))
        },
    )
    .await;
    let message = event.message.unwrap_or_default();
    assert!(
        message.contains(&format!("pushed branch {branch} (commit "))
            && message.contains(&format!(
                "pull request #{} opened: {}",
                pr["number"],
                pr["html_url"].as_str().unwrap()
            )),
        "{message}"
    );
    assert!(!message.contains(&gitea.token));
    let records: Api<ConfigMap> = Api::namespaced(client.clone(), &team);
    let audit = records
        .list(&kube::api::ListParams::default().labels("audit-type=drift-remediation"))
        .await
        .unwrap();
    let outcome = audit
        .items
        .iter()
        .filter_map(|cm| cm.data.as_ref()?.get("outcome.json").cloned())
        .find(|o| o.contains("pullRequest"))
        .expect("an audit record with the pull request");
    assert!(
        outcome.contains(&branch) && !outcome.contains(&gitea.token),
        "{outcome}"
    );
    // Later analyses of the same drift propose nothing again (a change of the Application
    // has it analysed again).
    merge(
        &apps,
        "flags",
        "argocd-server",
        json!({"metadata": {"annotations": {"example.com/poke": "1"}}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // One adoption carried out, not one per analysis (the branch and the open pull request
    // would be found again either way: the audit trail says how often it was done).
    let adoptions = records
        .list(&kube::api::ListParams::default().labels("audit-type=drift-remediation"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|cm| cm.data?.get("intent.json").cloned())
        .filter(|i| {
            let i: serde_json::Value = serde_json::from_str(i).unwrap();
            i["action"] == "adopt" && i["application"] == format!("{team}/flags")
        })
        .count();
    assert_eq!(adoptions, 1);
    assert_eq!(pulls(branch.clone()).await.len(), 1);
    let branches = gitea
        .api(reqwest::Method::GET, "/repos/ops/shop/branches", None)
        .await;
    assert_eq!(
        branches
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("argo-drift/adopt/{team}/flags-")))
            .count(),
        1,
        "{branches:#}"
    );

    // Merged, the app rendered from the default branch is in sync: the field is no drift.
    gitea
        .api(
            reqwest::Method::POST,
            &format!("/repos/ops/shop/pulls/{}/merge", pr["number"]),
            Some(json!({"Do": "merge"})),
        )
        .await;
    let main = gitea
        .api(reqwest::Method::GET, "/repos/ops/shop/branches/main", None)
        .await["commit"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut app = application("flags", &url, "flags", &shop, Some(&main));
    app["metadata"]["labels"]["argo-drift.io/mode"] = json!("enforce");
    app["metadata"]["labels"]["argo-drift.io/tier"] = json!("keep");
    apply(&client, &team, app, "argocd-server").await;
    let (_, r) = wait_report(
        &client,
        &team,
        "flags",
        "in sync on the merged commit",
        Duration::from_secs(30),
        |r| r["revision"] == main.as_str(),
    )
    .await;
    assert_eq!(r["summary"]["modified"], 0, "{r:#}");

    // limits asks for approval; answered with adopt, its drift is proposed, not healed.
    edit_config_map(&configmaps, "limits", json!({"max": "50"})).await;
    let (_, r) = wait_report(
        &client,
        &team,
        "limits",
        "the approval request",
        Duration::from_secs(30),
        |r| r["pendingApproval"]["id"].is_string(),
    )
    .await;
    let id = r["pendingApproval"]["id"].as_str().unwrap().to_string();
    merge(
        &apps,
        "limits",
        "argocd-server",
        json!({"metadata": {"annotations": {"argo-drift.io/adopt": id}}}),
    )
    .await;
    let branch = format!("argo-drift/adopt/{team}/limits-{id}");
    let pr = wait_for(
        "the pull request of the answer",
        Duration::from_secs(30),
        || async { pulls(branch.clone()).await.into_iter().next() },
    )
    .await;
    assert!(
        pr["body"]
            .as_str()
            .unwrap()
            .contains("- data.max: \"10\" -> \"50\""),
        "{pr:#}"
    );
    let (_, r) = wait_report(
        &client,
        &team,
        "limits",
        "the approval closed",
        Duration::from_secs(30),
        |r| r.get("pendingApproval").is_none(),
    )
    .await;
    assert_eq!(r["summary"]["modified"], 1, "nothing healed: {r:#}");

    // The command opens its pull request the same way; a wrong token is refused by the forge
    // after the push, and said without the token.
    let mut cli = args(&format!("{team}/limits"), &argocd, "cli-limits", false);
    cli.namespaces.state_namespace = team.clone();
    cli.forge = argo_drift_controller::forge::ForgeArgs {
        forge: Some(argo_drift_controller::forge::Kind::Gitea),
        forge_url: Some(gitea.url.clone()),
        forge_token_file: Some(token_file.clone()),
        ..Default::default()
    };
    let mut out = Vec::new();
    adopt(admin_config().await, &cli, &mut out).await.unwrap();
    let said = String::from_utf8(out).unwrap();
    let cli_pr = pulls("cli-limits".into()).await;
    assert_eq!(cli_pr.len(), 1, "{said}");
    assert!(
        said.ends_with(&format!(
            "opened pull request #{}: {}\n",
            cli_pr[0]["number"],
            cli_pr[0]["html_url"].as_str().unwrap()
        )),
        "{said}"
    );
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token-0123").unwrap();
    cli.branch = Some("cli-limits-2".into());
    cli.forge.forge_token_file = Some(wrong);
    let e = adopt(admin_config().await, &cli, &mut Vec::new())
        .await
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("the branch cli-limits-2 is pushed, but opening its pull request failed")
            && e.contains("401"),
        "{e}"
    );
    assert!(
        !e.contains("not-the-token-0123") && !e.contains(&gitea.token),
        "{e}"
    );
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);
}
