//! The drift view inside Argo CD: the controller's read-only UI API, reached through the real
//! argocd-server's proxy extension (`--enable-proxy-extension`, argocd-cm `extension.config`,
//! a header from argocd-secret, RBAC `extensions, invoke`), and the UI extension rendered by
//! headless Chromium the way Argo CD's UI loads it (argocd-server's own `/extensions.js`,
//! `window.React`, `window.extensionsAPI`, the props Argo CD passes), on a drifted app's real
//! report. Screenshots are kept in `target/ui-extension/`.
//!
//! Settings of the whole installation (argocd-cm, argocd-secret, an argocd-rbac-cm overlay,
//! argocd-server's /tmp/extensions): a test binary of its own, put back however it ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use support::agreement::ArgoCdSetting;
use support::*;

const WAIT: Duration = Duration::from_secs(60);
/// What Git holds for the Secret's password, and what someone put live: neither may show.
const GIT_SECRET: &str = "git-password-Zq81";
const LIVE_SECRET: &str = "live-password-Xw42";
const TOKEN: &str = "ui-api-token-0123456789abcdef";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// No secret value, in clear or base64, and not the UI API's token.
fn assert_no_secret(what: &str, text: &str) {
    for secret in [GIT_SECRET, LIVE_SECRET, TOKEN] {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        assert!(
            !text.contains(&b64(secret)),
            "{what} shows base64 of {secret}:\n{text}"
        );
    }
}

struct Ui {
    base: String,
    http: reqwest::Client,
}

impl Ui {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// The built extension in argocd-server's extensions directory (fixed: server/server.go
/// `extensionsSharedPath`), removed however the test ends.
struct InstalledExtension(PathBuf);

impl InstalledExtension {
    fn install() -> InstalledExtension {
        let dir = PathBuf::from("/tmp/extensions/resources/argo-drift");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            root().join("deploy/argocd-extension/extension-argo-drift.js"),
            dir.join("extension-argo-drift.js"),
        )
        .unwrap();
        InstalledExtension(dir)
    }
}

impl Drop for InstalledExtension {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Chromium and the extension's npm packages (`scripts/testenv.sh browser`).
fn browser_tools() -> (String, PathBuf) {
    let exports = testenv("browser");
    (
        exported(&exports, "ARGO_DRIFT_TEST_CHROMIUM"),
        PathBuf::from(exported(&exports, "ARGO_DRIFT_TEST_UI_EXTENSION")),
    )
}

#[test]
fn the_shipped_extension_is_what_its_source_builds() {
    let (_, ui) = browser_tools();
    let built = tempfile::tempdir().unwrap();
    let out = built.path().join("extension-argo-drift.js");
    let status = Command::new("node")
        .arg(ui.join("build.mjs"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let shipped = root().join("deploy/argocd-extension/extension-argo-drift.js");
    let (built, shipped) = (
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&shipped).unwrap(),
    );
    assert!(
        built == shipped,
        "deploy/argocd-extension/extension-argo-drift.js is not what ui-extension/src builds: \
         run `npm run build` in ui-extension"
    );
    // One file, React from the page: nothing imported, no React inside.
    assert!(shipped.contains("window.React"));
    for bundled in [
        "require(",
        "import ",
        "react.production",
        "__SECRET_INTERNALS",
    ] {
        assert!(
            !shipped.contains(bundled),
            "the extension bundles {bundled}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drift_view_serves_argo_cd_proxied_requests_and_renders_in_a_browser() {
    let real = real_argocd();
    let client = client().await;

    // An app with a ConfigMap and a Secret, synced by the real Argo CD; both then edited live.
    let apps = real.fresh_apps_namespace(&client).await;
    let shop = fresh_namespace(&client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("web.git"));
    repo.write(
        "web/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"1\"\n",
    );
    repo.write(
        "web/secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-secret\ndata:\n  password: {}\n",
            b64(GIT_SECRET)
        ),
    );
    repo.commit("web");
    apply(
        &client,
        &apps,
        application("web", &repo.url(), "web", &shop, None),
        "argocd-server",
    )
    .await;
    real.sync_and_wait(&client, &apps, "web").await;
    // A second app, same Git path, its own namespace: it drifts first, and less.
    let shop2 = fresh_namespace(&client, "shop").await;
    apply(
        &client,
        &apps,
        application("api", &repo.url(), "web", &shop2, None),
        "argocd-server",
    )
    .await;
    real.sync_and_wait(&client, &apps, "api").await;

    let ui_port = free_port();
    let token_file = dir.path().join("ui-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let ui_addr = format!("127.0.0.1:{ui_port}");
    let controller = Running::start_with_real_argocd(
        &admin_config().await,
        &apps,
        &[
            "--ui-api-addr",
            &ui_addr,
            "--ui-api-token-file",
            token_file.to_str().unwrap(),
        ],
    )
    .await;
    wait_for("the first report", WAIT, || async {
        report(&client, &apps, "web").await.map(|_| ())
    })
    .await;
    let older = dynamic(&client, &shop2, "v1", "ConfigMap").await;
    merge(&older, "web", "kubectl-edit", json!({"data": {"a": "3"}})).await;
    wait_for("the older drift in the report", WAIT, || async {
        let (cm, _) = report(&client, &apps, "api").await?;
        (severity_label(&cm) == "medium").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let configmaps = dynamic(&client, &shop, "v1", "ConfigMap").await;
    merge(
        &configmaps,
        "web",
        "kubectl-edit",
        json!({"data": {"a": "2"}}),
    )
    .await;
    let secrets = dynamic(&client, &shop, "v1", "Secret").await;
    merge(
        &secrets,
        "web-secret",
        "kubectl-edit",
        json!({"data": {"password": b64(LIVE_SECRET)}}),
    )
    .await;
    wait_for("the drift in the report", WAIT, || async {
        let (cm, r) = report(&client, &apps, "web").await?;
        (severity_label(&cm) == "high" && r["summary"]["modified"] == 2).then_some(())
    })
    .await;

    // The controller's API, called directly: only with the token, only the app named.
    let ui = Ui {
        base: format!("http://{ui_addr}"),
        http: reqwest::Client::new(),
    };
    let app_header = format!("{apps}:web");
    let named = [
        ("Argocd-Application-Name", app_header.as_str()),
        ("Argo-Drift-Proxy-Token", TOKEN),
    ];
    let (status, body) = ui
        .get(
            "/api/v1/report",
            &[("Argocd-Application-Name", &app_header)],
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_no_secret("the refusal", &body);
    let (status, body) = ui
        .get(
            "/api/v1/report",
            &[
                ("Argocd-Application-Name", &app_header),
                ("Argo-Drift-Proxy-Token", "ui-api-token-0123456789abcdeX"),
            ],
        )
        .await;
    assert_eq!(status, 401, "a wrong token: {body}");
    let (status, body) = ui.get("/api/v1/report", &named).await;
    assert_eq!(status, 200, "{body}");
    assert_no_secret("the report", &body);
    let direct: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(direct["application"], "web");
    assert!(direct["driftSince"].is_string(), "{direct}");
    let secret = direct["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "Secret")
        .unwrap();
    assert_eq!(secret["changes"][0]["path"], "/data/password");
    assert!(
        secret["changes"][0]["live"]
            .as_str()
            .unwrap()
            .starts_with("<redacted"),
        "{secret}"
    );
    let other = format!("{apps}:other");
    let (status, body) = ui
        .get(
            "/api/v1/report",
            &[
                ("Argocd-Application-Name", &other),
                ("Argo-Drift-Proxy-Token", TOKEN),
            ],
        )
        .await;
    assert_eq!(status, 404, "another app's report: {body}");
    for bad in ["web", "a:b:c", "Apps:web", ":web"] {
        let (status, body) = ui
            .get(
                "/api/v1/report",
                &[
                    ("Argocd-Application-Name", bad),
                    ("Argo-Drift-Proxy-Token", TOKEN),
                ],
            )
            .await;
        assert_eq!(status, 400, "header {bad:?}: {body}");
    }
    let (status, _) = ui
        .get("/api/v1/report", &[("Argo-Drift-Proxy-Token", TOKEN)])
        .await;
    assert_eq!(status, 400, "no application header");
    let post = ui
        .http
        .post(format!("{}/api/v1/report", ui.base))
        .header("Argo-Drift-Proxy-Token", TOKEN)
        .header("Argocd-Application-Name", &app_header)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 405, "the API is read-only");
    let (status, body) = ui.get("/api/v1/fleet", &named).await;
    assert_eq!(status, 200, "{body}");
    let fleet: Value = serde_json::from_str(&body).unwrap();
    let line = fleet["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["application"] == "web" && a["namespace"] == apps.as_str())
        .unwrap_or_else(|| panic!("{fleet}"));
    assert_eq!(line["severity"], "high");
    assert!(line["driftSince"].is_string() && line["summary"].is_string());
    assert_no_secret("the fleet", &body);

    // Through the real argocd-server, configured with what deploy/argocd-extension ships (the
    // extension config, its header from argocd-secret, the RBAC line), only the backend's
    // address changed; two accounts: one with role:readonly, one allowed only to read apps.
    let shipped = |file: &str, key: &str| -> String {
        let text =
            std::fs::read_to_string(root().join("deploy/argocd-extension").join(file)).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        doc["data"][key].as_str().unwrap().to_string()
    };
    let in_cluster = "http://argo-drift-ui-api.argocd.svc:8081";
    let extension_config = shipped("argocd-cm-patch.yaml", "extension.config");
    assert!(extension_config.contains(in_cluster), "{extension_config}");
    let extension_config = extension_config.replace(in_cluster, &format!("http://{ui_addr}"));
    let rbac = shipped("argocd-rbac-cm-patch.yaml", "policy.argo-drift.csv");
    let _secret = ArgoCdSetting::set_secret(
        &client,
        &real.namespace,
        "argo-drift-tests-ui",
        json!({"argo-drift.ui-api.token": b64(TOKEN)}),
    )
    .await;
    let _settings = ArgoCdSetting::set(
        &client,
        &real.namespace,
        "argo-drift-tests-ui",
        json!({
            "extension.config": extension_config,
            "accounts.drift-ui-viewer": "apiKey",
            "accounts.drift-ui-noext": "apiKey",
        }),
    )
    .await;
    let _rbac = ArgoCdSetting::set_in(
        &client,
        &real.namespace,
        "argocd-rbac-cm",
        "argo-drift-tests-ui",
        json!({"policy.argo-drift-tests-ui.csv": format!("{rbac}\
p, role:drift-ui-noext, applications, get, *, allow\n\
g, drift-ui-viewer, role:readonly\n\
g, drift-ui-noext, role:drift-ui-noext\n")}),
    )
    .await;
    let viewer = real.account_token("drift-ui-viewer").await;
    let noext = real.account_token("drift-ui-noext").await;
    let argocd = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&real.ca).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let through = |token: String, path: &'static str, app: String| {
        let argocd = argocd.clone();
        let server = real.server.clone();
        async move {
            let r = argocd
                .get(format!("https://{server}/extensions/argo-drift{path}"))
                // The extension route authenticates by the UI's session cookie only
                // (util/session/sessionmanager.go, WithAuthMiddleware).
                .header("Cookie", format!("argocd.token={token}"))
                .header("Argocd-Application-Name", app)
                .header("Argocd-Project-Name", "default")
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let proxied = wait_for("argocd-server to proxy the extension", WAIT, || async {
        let (status, body) = through(viewer.clone(), "/api/v1/report", app_header.clone()).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_no_secret("the proxied report", &proxied);
    let proxied: Value = serde_json::from_str(&proxied).unwrap();
    // The same report (Argo CD's own word on each resource may have moved on meanwhile).
    let verdicts = |r: &Value| -> Vec<(Value, Value)> {
        r["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["name"].clone(), x["changes"].clone()))
            .collect()
    };
    assert_eq!(verdicts(&proxied), verdicts(&direct));
    let (status, body) = through(noext.clone(), "/api/v1/report", app_header.clone()).await;
    assert_eq!(status, 401, "no `extensions, invoke`: {body}");
    let (status, body) = through(viewer.clone(), "/api/v1/fleet", app_header.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = through(viewer.clone(), "/api/v1/report", format!("{apps}:nope")).await;
    assert_eq!(status, 401, "an app argocd-server does not know: {body}");

    // The browser: Argo CD's own /extensions.js, the viewer's session cookie.
    let _installed = InstalledExtension::install();
    let (chromium, ui_dir) = browser_tools();
    let shots = root().join("target/ui-extension");
    std::fs::create_dir_all(&shots).unwrap();
    let viewer_file = dir.path().join("viewer-token");
    std::fs::write(&viewer_file, &viewer).unwrap();
    let out = tokio::task::spawn_blocking({
        let (apps, shop, shots) = (apps.clone(), shop.clone(), shots.clone());
        let ca = real.ca.clone();
        let server = real.server.clone();
        move || {
            Command::new("node")
                .arg(ui_dir.join("test/browser.mjs"))
                .env("ARGOCD_SERVER", format!("https://{server}"))
                .env("ARGOCD_CA", ca)
                .env("ARGOCD_TOKEN_FILE", &viewer_file)
                .env("APP", format!("{apps}/web"))
                .env("RESOURCE", format!("/v1/ConfigMap/{shop}/web"))
                .env("OUT", shots)
                .env("CHROMIUM", chromium)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_no_secret("the rendered pages", &stdout);
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!(
        "rendered: {}",
        serde_json::to_string_pretty(&json!({
            "registered": seen["registered"],
            "statusPanel": seen["statusPanel"],
            "flyout rows": seen["flyout"]["rows"],
            "resourceTab": seen["resourceTab"]["rows"],
            "fleet": seen["fleet"]["rows"],
            "fleetByAge": seen["fleetByAge"],
        }))
        .unwrap()
    );
    assert_eq!(seen["consoleErrors"], json!([]), "{seen}");
    assert_eq!(
        seen["registered"],
        json!({"resource": [["*", "*", "Drift"]], "system": [["Drift", "/drift", "fa-code-branch"]],
            "statusPanel": [["Drift", "argo-drift", true]]})
    );
    // Status panel: the worst severity and the counts.
    assert_eq!(seen["statusPanel"]["severities"], json!(["high"]));
    let panel = seen["statusPanel"]["text"].as_str().unwrap();
    assert!(panel.contains("2 resource(s), 2 field(s)"), "{panel}");
    // Flyout: both changed fields, with Git and live values, who changed them, severities.
    let row = |rows: &Value, path: &str| -> Vec<String> {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("no row for {path}: {rows}"))["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    let a = row(&seen["flyout"]["rows"], "/data/a");
    assert_eq!(&a[..4], ["data.a", "1", "2", "kubectl-edit"], "{a:?}");
    let password = row(&seen["flyout"]["rows"], "/data/password");
    assert_eq!(password[0], "data.password");
    assert!(
        password[1].starts_with("<redacted") && password[2].starts_with("<redacted"),
        "{password:?}"
    );
    assert_eq!(password[3], "kubectl-edit");
    assert_eq!(password[5], "high");
    assert_eq!(password[6], "secret-data");
    let severities = seen["flyout"]["severities"].to_string();
    assert!(
        severities.contains("\"high\"") && severities.contains("\"medium\""),
        "{severities}"
    );
    // Resource tab of the ConfigMap: only its own field, and the decision.
    assert_eq!(seen["resourceTab"]["tabs"], json!(["Drift"]));
    let rows = seen["resourceTab"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        &row(&seen["resourceTab"]["rows"], "/data/a")[..4],
        ["data.a", "1", "2", "kubectl-edit"]
    );
    assert!(
        seen["resourceTab"]["text"]
            .as_str()
            .unwrap()
            .contains("Decision"),
        "{}",
        seen["resourceTab"]["text"]
    );
    // The fleet page: both drifted apps, worst first; by age, the older drift first.
    assert_eq!(
        seen["fleet"]["rows"],
        json!([format!("{apps}/web"), format!("{apps}/api")]),
        "{}",
        seen["fleet"]
    );
    assert_eq!(
        seen["fleetByAge"],
        json!([format!("{apps}/api"), format!("{apps}/web")])
    );
    for shot in ["status-panel-flyout.png", "resource-tab.png", "fleet.png"] {
        let size = std::fs::metadata(shots.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 1000, "screenshot {shot}: {size} bytes");
    }
    eprintln!("screenshots in {}", shots.display());
    controller.stop().await;
}
