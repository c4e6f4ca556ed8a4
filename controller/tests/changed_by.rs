//! Who changed each drifted field, end to end on the real API server: it runs with the shipped
//! audit policy (deploy/audit/audit-policy.yaml), a JSON audit log, and the shipped audit
//! webhook config (deploy/audit/webhook-kubeconfig.yaml) pointing at the port a test's
//! controller listens on. Two people with tokens of their own, an impersonated request and a
//! ServiceAccount edit fields of an app the real Argo CD synced; the report, the Event and the
//! PagerDuty notification name each field's writer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use support::*;

/// The test API server's audit settings, or None for a cluster of KUBECONFIG's.
struct AuditEnv {
    log: PathBuf,
    webhook_addr: String,
    webhook_dir: PathBuf,
    tokens: PathBuf,
}

fn audit_env() -> Option<AuditEnv> {
    let exports = testenv("env");
    let get = |k: &str| {
        exports
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    Some(AuditEnv {
        log: get("ARGO_DRIFT_TESTENV_AUDIT_LOG")?.into(),
        webhook_addr: get("ARGO_DRIFT_TESTENV_AUDIT_WEBHOOK_ADDR")?,
        webhook_dir: get("ARGO_DRIFT_TESTENV_AUDIT_WEBHOOK_DIR")?.into(),
        tokens: get("ARGO_DRIFT_TESTENV_USER_TOKENS")?.into(),
    })
}

/// A client authenticated by the bearer token in `<tokens>/<user>.token`.
async fn token_client(env: &AuditEnv, user: &str) -> kube::Client {
    let token = std::fs::read_to_string(env.tokens.join(format!("{user}.token"))).unwrap();
    let mut config = admin_config().await;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.trim().to_string().into()),
        ..Default::default()
    };
    kube::Client::try_from(config).unwrap()
}

/// `kubectl edit` of `data` in ConfigMap flags, as `client`.
async fn edit_as(client: &kube::Client, shop: &str, data: Value) {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), shop);
    edit_config_map(&configmaps, "flags", data).await;
}

/// The change at `path` of the report's first resource.
fn change<'r>(report: &'r Value, path: &str) -> Option<&'r Value> {
    report["resources"][0]["changes"]
        .as_array()?
        .iter()
        .find(|c| c["path"] == path)
}

/// The report once every path of `paths` has a `changedBy`.
async fn named(client: &kube::Client, argocd: &str, paths: &[&str]) -> Value {
    wait_for(
        "changedBy on every field",
        Duration::from_secs(40),
        || async {
            let (_, r) = report(client, argocd, "flags").await?;
            paths
                .iter()
                .all(|p| change(&r, p).is_some_and(|c| c.get("changedBy").is_some()))
                .then_some(r)
        },
    )
    .await
}

const FLAGS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  mode: safe\n  level: low\n  tier: gold\n  owner: team-a\n";

/// The receiver's arguments: listening on `addr`, its certificate from the test
/// environment, and `auth` (the client CA, the token file).
fn receiver_args(env: &AuditEnv, addr: &str, auth: &[(&str, String)]) -> Vec<String> {
    let file = |name: &str| env.webhook_dir.join(name).display().to_string();
    let args: Vec<String> = [
        ("--leader-election", "false".to_string()),
        ("--audit-webhook-addr", addr.to_string()),
        ("--audit-webhook-tls-cert", file("receiver.crt")),
        ("--audit-webhook-tls-key", file("receiver.key")),
    ]
    .into_iter()
    .chain(auth.iter().map(|(k, v)| (*k, v.clone())))
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect();
    args
}

/// The client CA argument of a receiver that wants the API server's client certificate.
fn client_ca(env: &AuditEnv) -> (&'static str, String) {
    (
        "--audit-webhook-client-ca",
        env.webhook_dir.join("client-ca.crt").display().to_string(),
    )
}

async fn start(argocd: &str, args: &[String]) -> Running {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Running::start(&admin_config().await, argocd, &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_names_each_fields_writer_in_the_report_the_event_and_the_page() {
    let admin = client().await;
    let Some(env) = audit_env() else {
        eprintln!("skipped: the cluster in KUBECONFIG is not the project's own test API server (no audit webhook)");
        return;
    };
    let synced = synced_app(&admin, "flags", "flags.yaml", FLAGS).await;
    let (argocd, shop) = (&synced.argocd, &synced.shop);
    let capture = Capture::start().await;
    let dir = tempfile::tempdir().unwrap();
    let notifications = pagerduty_notifications(
        dir.path(),
        &capture.url,
        &["drift-detected", "drift-changed"],
        "info",
        "",
    );
    let auth = [
        client_ca(&env),
        ("--notifications", notifications.display().to_string()),
    ];
    let controller = start(argocd, &receiver_args(&env, &env.webhook_addr, &auth)).await;
    wait_for("the first report", Duration::from_secs(20), || async {
        report(&admin, argocd, "flags").await
    })
    .await;
    // Argo CD applies the app again (as every sync does) now that the receiver listens: the
    // write before the people's, which the exact join needs (the first apply's event went to a
    // receiver that was not there yet).
    apply_yaml(&admin, shop, FLAGS, "argocd-controller").await;

    // Two people, each with a token of their own, edit one field each with the same tool,
    // one right after the other (within a second: managedFields cannot tell them apart).
    let alice = token_client(&env, "alice").await;
    let bob = token_client(&env, "bob").await;
    edit_as(&alice, shop, json!({"mode": "yolo"})).await;
    edit_as(&bob, shop, json!({"level": "high"})).await;
    let r = named(&admin, argocd, &["/data/mode", "/data/level"]).await;
    let mode = &change(&r, "/data/mode").unwrap()["changedBy"];
    let level = &change(&r, "/data/level").unwrap()["changedBy"];
    assert_eq!(mode["user"], "alice", "{r:#}");
    assert_eq!(level["user"], "bob", "{r:#}");
    for by in [mode, level] {
        assert_eq!(by["match"], "resourceVersion", "{by:#}");
        assert_eq!(by["verb"], "patch");
        assert!(by["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:masters")));
        assert!(by["time"].as_str().unwrap().starts_with("20"), "{by}");
        assert!(!by["auditID"].as_str().unwrap().is_empty());
        // Source IPs are off by default.
        assert!(by.get("sourceIPs").is_none(), "{by}");
    }
    assert_eq!(change(&r, "/data/mode").unwrap()["manager"], "kubectl-edit");

    // An administrator impersonating carol, and a CI job's ServiceAccount.
    let carol = impersonating("carol").await;
    edit_as(&carol, shop, json!({"tier": "bronze"})).await;
    let sa = configmap_deployer(&admin, shop).await;
    patch_config_map_once_allowed(&sa, shop, "flags", "ci-deploy", json!({"owner": "ci"})).await;
    let r = named(
        &admin,
        argocd,
        &["/data/mode", "/data/level", "/data/tier", "/data/owner"],
    )
    .await;
    let tier = &change(&r, "/data/tier").unwrap()["changedBy"];
    assert_eq!(tier["user"], "carol", "{r:#}");
    assert_eq!(tier["impersonator"]["username"], "admin");
    let owner = &change(&r, "/data/owner").unwrap()["changedBy"];
    assert_eq!(
        owner["user"],
        format!("system:serviceaccount:{shop}:deployer"),
        "{r:#}"
    );
    assert_eq!(owner["serviceAccount"], format!("{shop}/deployer"));
    assert_eq!(change(&r, "/data/owner").unwrap()["manager"], "ci-deploy");
    // The earlier fields keep their writers (the later writes did not change them).
    assert_eq!(
        change(&r, "/data/mode").unwrap()["changedBy"]["user"],
        "alice"
    );
    assert_eq!(
        change(&r, "/data/level").unwrap()["changedBy"]["user"],
        "bob"
    );

    // The Application's Events and the page name them too.
    let events: Api<Event> = Api::namespaced(admin.clone(), argocd);
    let messages = wait_for(
        "Events naming the writers",
        Duration::from_secs(20),
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            let messages: Vec<String> = list
                .items
                .iter()
                .filter(|e| e.reason.as_deref().is_some_and(|r| r.starts_with("Drift")))
                .filter_map(|e| e.message.clone())
                .collect();
            let all = messages.join("\n");
            // The message names up to three fields a resource: level, mode and owner here.
            (all.contains("bob with kubectl-edit") && all.contains("ServiceAccount")).then_some(all)
        },
    )
    .await;
    assert!(messages.contains("alice with kubectl-edit"), "{messages}");
    assert!(
        messages.contains(&format!("ServiceAccount {shop}/deployer with ci-deploy")),
        "{messages}"
    );
    let pages = wait_for(
        "pages naming the writers",
        Duration::from_secs(20),
        || async {
            let bodies = capture.bodies.lock().unwrap().clone();
            let users: Vec<String> = bodies
                .iter()
                .flat_map(|b| {
                    b["payload"]["custom_details"]["changes"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|c| c["changedBy"]["user"].as_str().map(str::to_string))
                .collect();
            (users.contains(&"alice".to_string()) && users.contains(&"bob".to_string()))
                .then_some(bodies)
        },
    )
    .await;
    assert!(!pages.is_empty());

    // The receiver counted what it kept.
    let (_, metrics) = controller.get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("argo_drift_audit_events_total{")
                && l.contains("source=\"webhook\"")
                && l.contains("outcome=\"kept\"")),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(
            |l| l.starts_with("argo_drift_changes_attributed_total{match=\"resourceVersion\"}")
        ),
        "{metrics}"
    );
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_names_the_writer_and_the_receiver_refuses_strangers() {
    let admin = client().await;
    let Some(env) = audit_env() else {
        eprintln!("skipped: the cluster in KUBECONFIG is not the project's own test API server (no audit log)");
        return;
    };
    // The API server's audit log as a shipper forwards it (from now on, followed: from before
    // the app is applied, so the write before alice's is there for the exact join); and a
    // receiver on another port that wants a bearer token (its TLS needs no client certificate).
    let shipper = AuditShipper::start(&env.log);
    let synced = synced_app(&admin, "flags", "flags.yaml", FLAGS).await;
    let (argocd, shop) = (&synced.argocd, &synced.shop);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-audit-token-0123456789\n").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let auth = [
        ("--audit-webhook-token-file", token.display().to_string()),
        ("--audit-log", shipper.path.display().to_string()),
    ];
    let controller = start(argocd, &receiver_args(&env, &addr, &auth)).await;
    let file = |name: &str| env.webhook_dir.join(name).display().to_string();
    wait_for("the first report", Duration::from_secs(20), || async {
        report(&admin, argocd, "flags").await
    })
    .await;
    let alice = token_client(&env, "alice").await;
    edit_as(&alice, shop, json!({"mode": "yolo"})).await;
    let r = named(&admin, argocd, &["/data/mode"]).await;
    let by = &change(&r, "/data/mode").unwrap()["changedBy"];
    assert_eq!(by["user"], "alice", "{r:#}");
    assert_eq!(by["match"], "resourceVersion");

    // The receiver: without the token, or with another, refused; with it, an EventList taken.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(file("ca.crt")).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://{addr}/audit");
    let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": []});
    let post = |auth: Option<&'static str>| {
        let mut req = http.post(&url).json(&list);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(
        post(Some("Bearer wrong-token")).await.unwrap().status(),
        401
    );
    let ok = post(Some("Bearer s3cret-audit-token-0123456789"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = http
        .post(&url)
        .header("Authorization", "Bearer s3cret-audit-token-0123456789")
        .body("{\"kind\": \"Status\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let (_, metrics) = controller.get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("argo_drift_audit_events_total{")
                && l.contains("source=\"log\"")
                && l.contains("outcome=\"kept\"")),
        "{metrics}"
    );
    assert!(!metrics.contains("s3cret"), "the token is never shown");
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_wanting_client_certificates_refuses_a_client_without_one() {
    // The test environment first (this starts it on a fresh machine), then its settings.
    let admin = client().await;
    let Some(env) = audit_env() else {
        eprintln!("skipped: the cluster in KUBECONFIG is not the project's own test API server");
        return;
    };
    let ns = fresh_namespace(&admin, "audit-mtls").await;
    let addr = format!("127.0.0.1:{}", free_port());
    let controller = start(&ns, &receiver_args(&env, &addr, &[client_ca(&env)])).await;
    let file = |name: &str| env.webhook_dir.join(name).display().to_string();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(file("ca.crt")).unwrap()).unwrap();
    let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": []});
    let url = format!("https://{addr}/audit/spoke");
    // Wait for the receiver to listen.
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .build()
        .unwrap();
    let refused = wait_for("the receiver", Duration::from_secs(20), || async {
        match anonymous.post(&url).json(&list).send().await {
            Ok(r) => Some(Ok(r.status())),
            // The handshake (or the first read after it, with TLS 1.3) fails.
            Err(e) if !format!("{e:?}").contains("ConnectionRefused") => Some(Err(e)),
            Err(_) => None,
        }
    })
    .await;
    assert!(
        refused.is_err(),
        "a client without a certificate got {refused:?}"
    );
    // The API server's client certificate (the one its webhook kubeconfig presents) is taken.
    let mut pem = std::fs::read(file("client.crt")).unwrap();
    pem.extend(std::fs::read(file("client.key")).unwrap());
    let identity = reqwest::Identity::from_pem(&pem).unwrap();
    let with_cert = reqwest::Client::builder()
        .add_root_certificate(ca)
        .identity(identity)
        .build()
        .unwrap();
    let r = with_cert.post(&url).json(&list).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);
}
