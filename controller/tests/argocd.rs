//! The Argo CD API client against the fake Argo CD server, for what the real one cannot produce
//! on demand: 5xx and retries, an operation already running, TLS set-ups. Everything else is
//! tested against the real Argo CD in `argocd_real.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use argo_drift_controller::argocd::{ArgoCd, Settings, SyncResource, FAILED_PRECONDITION};
use argo_drift_controller::error::Error;
use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "s3cret-argocd-token";

/// A fresh Argo CD namespace with Application "web" (automated sync on, two history entries,
/// status.resources naming a live ConfigMap), a fake Argo CD in front of it, and a client.
async fn setup() -> (kube::Client, String, FakeArgoCd, ArgoCd) {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    apply_yaml(
        &client,
        &shop,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"1\"\n",
        "argocd-controller",
    )
    .await;
    let mut app = application(
        "web",
        "https://git.example.com/shop.git",
        "web",
        &shop,
        None,
    );
    app["spec"]["syncPolicy"] = json!({"automated": {"prune": false, "selfHeal": true}});
    app["status"] = json!({
        "sync": {"status": "OutOfSync", "revision": "bbbb"},
        "history": [
            {"id": 1, "revision": "aaaa", "deployedAt": "2026-11-20T10:00:00Z",
             "source": {"repoURL": "https://git.example.com/shop.git", "path": "web", "targetRevision": "main"}},
            {"id": 2, "revision": "bbbb", "deployedAt": "2026-11-21T10:00:00Z",
             "source": {"repoURL": "https://git.example.com/shop.git", "path": "web", "targetRevision": "main"}}
        ],
        "resources": [{"group": "", "version": "v1", "kind": "ConfigMap", "namespace": shop, "name": "web", "status": "OutOfSync"}]
    });
    apply(&client, &argocd, app, "argocd-server").await;
    let fake = FakeArgoCd::start(client.clone(), TOKEN, &argocd)
        .await
        .unwrap();
    let api = ArgoCd::new(Settings::new(&fake.url, TOKEN.into())).unwrap();
    (client, argocd, fake, api)
}

async fn stored(client: &kube::Client, namespace: &str) -> Value {
    let api = dynamic_api(
        client,
        namespace,
        &json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application"}),
    )
    .await;
    serde_json::to_value(api.get("web").await.unwrap()).unwrap()
}

fn code_of(e: &Error) -> (Option<u16>, Option<i32>) {
    match e {
        Error::ArgoCd { status, code, .. } => (*status, *code),
        other => panic!("not an Argo CD error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_sync_becomes_the_applications_operation_and_a_second_one_is_refused() {
    let (client, argocd, fake, api) = setup().await;
    let shop = stored(&client, &argocd).await["spec"]["destination"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let resources = [SyncResource {
        group: String::new(),
        kind: "ConfigMap".into(),
        namespace: shop.clone(),
        name: "web".into(),
    }];
    let returned = api.sync("web", &argocd, &resources).await.unwrap();
    let app = stored(&client, &argocd).await;
    assert_eq!(returned["operation"], app["operation"]);
    assert_eq!(
        app["operation"]["sync"]["resources"],
        json!([{"group": "", "kind": "ConfigMap", "namespace": shop, "name": "web"}])
    );
    assert_eq!(app["operation"]["sync"]["prune"], false);
    assert_eq!(
        app["operation"]["initiatedBy"]["username"],
        argo_drift_fake_argocd::USERNAME
    );
    // The body Argo CD received is the documented ApplicationSyncRequest.
    let sent = fake.requests().last().unwrap().body.clone();
    assert_eq!(sent["name"], "web");
    assert_eq!(sent["appNamespace"], argocd.as_str());

    let err = api.sync("web", &argocd, &resources).await.unwrap_err();
    assert_eq!(
        code_of(&err),
        (Some(400), Some(FAILED_PRECONDITION)),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("another operation is already in progress"));
}

/// A server that answers 503 `failures` times, then 200 with `{}`; counts requests.
async fn flaky(failures: usize) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let handler = move || {
        let seen = seen.clone();
        async move {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            if n < failures {
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(
                        json!({"error": "upstream connect error", "code": 14, "message": "upstream connect error"}),
                    ),
                )
            } else {
                (axum::http::StatusCode::OK, axum::Json(json!({})))
            }
        }
    };
    let router = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, count)
}

#[tokio::test]
async fn reads_are_retried_on_5xx_but_a_sync_is_never_sent_twice() {
    let (url, count) = flaky(2).await;
    let api = ArgoCd::new(Settings::new(&url, TOKEN.into())).unwrap();
    api.application("web", "argocd").await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3, "two 503s, then the answer");

    let (url, count) = flaky(1).await;
    let api = ArgoCd::new(Settings::new(&url, TOKEN.into())).unwrap();
    let err = api.sync("web", "argocd", &[]).await.unwrap_err();
    assert_eq!(code_of(&err), (Some(503), Some(14)));
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "a sync may have started: not repeated"
    );
}

#[test]
fn server_addresses_are_taken_as_the_argocd_cli_takes_them() {
    let base = |server: &str, plaintext: bool| {
        let mut s = Settings::new(server, String::new());
        s.plaintext = plaintext;
        ArgoCd::new(s)
            .map(|a| format!("{a:?}"))
            .map_err(|e| e.to_string())
    };
    assert!(base("argocd.example.com", false)
        .unwrap()
        .contains("https://argocd.example.com"));
    assert!(base("argocd-server.argocd.svc:80", true)
        .unwrap()
        .contains("http://argocd-server.argocd.svc:80"));
    assert!(base("https://argocd.example.com/", false)
        .unwrap()
        .contains("\"https://argocd.example.com\""));
    assert!(base("https://argocd.example.com", true)
        .unwrap_err()
        .contains("plaintext"));
    assert!(base("ftp://x", false)
        .unwrap_err()
        .contains("unsupported scheme"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_by_default_against_the_system_or_the_given_ca() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let (ca, cert, key) = argo_drift_fake_argocd::certificates();
    let fake = FakeArgoCd::start_tls(client, TOKEN, &argocd, cert.as_bytes(), key.as_bytes())
        .await
        .unwrap();
    assert!(fake.url.starts_with("https://"));
    let address = fake.url.trim_start_matches("https://").to_string();

    // host:port means HTTPS, verified: a private CA is not trusted by default.
    let err = ArgoCd::new(Settings::new(&address, TOKEN.into()))
        .unwrap()
        .application("web", &argocd)
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), (None, None), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // With the CA file: the connection is made (and Argo CD answers: no such app).
    let mut trusted = Settings::new(&address, TOKEN.into());
    trusted.ca_pem = Some(ca.into_bytes());
    let err = ArgoCd::new(trusted)
        .unwrap()
        .application("web", &argocd)
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), (Some(404), Some(5)), "{err}");

    // --insecure skips verification, as the argocd CLI's flag does.
    let mut insecure = Settings::new(&address, TOKEN.into());
    insecure.insecure = true;
    let err = ArgoCd::new(insecure)
        .unwrap()
        .application("web", &argocd)
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), (Some(404), Some(5)), "{err}");
}

/// An app whose tool Argo CD detected as a config-management plugin (`status.sourceType:
/// Plugin`; only the repo-server knows its sidecars' discovery rules) is compared with Argo CD's
/// rendering, never with its files read as YAML. The fake stands in for a plugin sidecar, which
/// the test installation does not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_app_is_compared_with_argo_cds_rendering_not_its_raw_files() {
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("repo"));
    // What the plugin reads: a template, not the object it makes.
    repo.write(
        "web/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  level: ${LEVEL}\n",
    );
    let commit = repo.commit("plugin input");
    let rendered = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "web", "namespace": shop}, "data": {"level": "info"}});
    apply(&client, &shop, rendered.clone(), "argocd-controller").await;
    let mut app = application("web", &repo.url(), "web", &shop, Some(&commit));
    app["status"]["sourceType"] = json!("Plugin");
    apply(&client, &argocd, app, "argocd-server").await;
    let fake = FakeArgoCd::start(client.clone(), TOKEN, &argocd)
        .await
        .unwrap();
    fake.set_manifests("web", vec![rendered]);
    let controller =
        Running::start_with_fake(&admin_config().await, &argocd, &fake.url, TOKEN, &[]).await;
    let (_, r) = wait_report(
        &client,
        &argocd,
        "web",
        "the report",
        Duration::from_secs(30),
        |r| r["summary"]["resources"] == 1,
    )
    .await;
    assert!(r["error"].is_null(), "{r:#}");
    assert_eq!(r["summary"]["synced"], 1, "{r:#}");
    assert!(fake
        .requests()
        .iter()
        .any(|q| q.method == "GET" && q.path.ends_with("/web/manifests")));
    controller.stop().await;
}

/// Argo CD's default TLS: argocd-server's self-signed certificate (not a CA), which deploy/
/// mounts into a directory given as `--argocd-ca-file`, is trusted; the same directory empty
/// (no certificate mounted) trusts only the system's roots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cds_default_self_signed_certificate_is_trusted_from_a_mounted_directory() {
    use argo_drift_controller::cli::{Args, Command as Cmd};
    use clap::Parser;
    let client = client().await;
    let argocd = fresh_namespace(&client, "argocd").await;
    let (cert, key) = argo_drift_fake_argocd::self_signed();
    let fake = FakeArgoCd::start_tls(client, TOKEN, &argocd, cert.as_bytes(), key.as_bytes())
        .await
        .unwrap();
    let address = fake.url.trim_start_matches("https://").to_string();
    let dir = tempfile::tempdir().unwrap();
    let settings = |ca_dir: &std::path::Path| {
        let argv = [
            "argo-drift",
            "run",
            "--argocd-server",
            &address,
            "--argocd-token",
            TOKEN,
            "--argocd-ca-file",
            ca_dir.to_str().unwrap(),
        ];
        let Cmd::Run(args) = Args::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        args.argocd.settings_with("").unwrap().unwrap()
    };
    // Nothing mounted (argocd-server-tls and argocd-secret's certificate both absent).
    let err = ArgoCd::new(settings(dir.path()))
        .unwrap()
        .application("web", &argocd)
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    // As a projected volume lays it out: the file, and Kubernetes' hidden ..data entry.
    std::fs::create_dir(dir.path().join("..data")).unwrap();
    std::fs::write(dir.path().join("argocd-server.crt"), &cert).unwrap();
    let err = ArgoCd::new(settings(dir.path()))
        .unwrap()
        .application("web", &argocd)
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), (Some(404), Some(5)), "{err}");
}
