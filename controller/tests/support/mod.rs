//! Shared pieces of the integration tests: the real API server from `scripts/testenv.sh` (or
//! the cluster in KUBECONFIG), fresh namespaces, Git repositories made on the spot, server-side
//! apply under a chosen field manager, and the controller running in-process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod agreement;

use argo_drift_controller::cli::{Args, Command as Cmd};
use clap::Parser;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::pinned_kind;
use kube::{Client, Config};
use serde_json::{json, Value};

static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
static ARGOCD: OnceLock<RealArgoCd> = OnceLock::new();

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Run a command to its end; its stdout, or a panic naming `what` with its stderr.
#[allow(dead_code)]
pub fn run_ok(command: &mut Command, what: &str) -> Vec<u8> {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Run `scripts/testenv.sh VERB` and return the `export NAME=VALUE` lines it prints.
pub fn testenv(verb: &str) -> Vec<(String, String)> {
    testenv_with(&[verb])
}

fn testenv_with(args: &[&str]) -> Vec<(String, String)> {
    let out = Command::new(root().join("scripts/testenv.sh"))
        .args(args)
        .output()
        .expect("running scripts/testenv.sh");
    assert!(
        out.status.success(),
        "scripts/testenv.sh {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn exported(exports: &[(String, String)], name: &str) -> String {
    exports
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("scripts/testenv.sh exported no {name}"))
}

/// Where the pinned Argo CD release's CRDs are (the script fetches them, for any cluster).
static ARGOCD_CRDS: OnceLock<PathBuf> = OnceLock::new();

/// The kubeconfig of the test cluster: KUBECONFIG when set, else the project's own API server,
/// started (and built, the first time) by `scripts/testenv.sh up`.
pub fn kubeconfig() -> PathBuf {
    KUBECONFIG
        .get_or_init(|| {
            let exports = testenv("up");
            let _ = ARGOCD_CRDS.set(PathBuf::from(exported(&exports, "ARGO_DRIFT_ARGOCD_CRDS")));
            PathBuf::from(exported(&exports, "KUBECONFIG"))
        })
        .clone()
}

/// The real Argo CD (`scripts/testenv.sh argocd`: argocd-server, application-controller,
/// repo-server and applicationset-controller of the pinned release, on loopback against the test
/// API server), started once per test run.
pub struct RealArgoCd {
    /// `host:port` of argocd-server (HTTPS, certificate from the test CA).
    pub server: String,
    pub ca: PathBuf,
    pub token_file: PathBuf,
    /// The namespace Argo CD runs in and keeps its Applications in.
    pub namespace: String,
    /// Argo CD also manages the Applications of namespaces named `<this>-...` ("apps in any
    /// namespace").
    pub apps_namespace_prefix: String,
}

impl RealArgoCd {
    pub fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file)
            .unwrap()
            .trim()
            .to_string()
    }

    /// A client of argo-drift's for this server, authenticated with the argo-drift account's token.
    pub fn client(&self) -> argo_drift_controller::argocd::ArgoCd {
        self.client_with_token(self.token())
    }

    /// A client trusting the test CA that presents `token`.
    /// A new API token for Argo CD account `account` (made by the argo-drift account, an
    /// admin), once Argo CD has read the account from argocd-cm. A token id is unique per
    /// account, and tokens outlive the test: each gets a fresh one.
    pub async fn account_token(&self, account: &str) -> String {
        let admin = self.client();
        wait_for(
            &format!("a token for {account}"),
            Duration::from_secs(60),
            || async {
                let id = format!("argo-drift-tests-{:x}", rand_u32());
                admin.account_token(account, &id).await.ok()
            },
        )
        .await
    }

    pub fn client_with_token(&self, token: String) -> argo_drift_controller::argocd::ArgoCd {
        use argo_drift_controller::argocd::{ArgoCd, Settings};
        let mut settings = Settings::new(&format!("https://{}", self.server), token);
        settings.ca_pem = Some(std::fs::read(&self.ca).unwrap());
        ArgoCd::new(settings).unwrap()
    }

    /// A fresh namespace whose Applications the real Argo CD manages.
    pub async fn fresh_apps_namespace(&self, client: &Client) -> String {
        fresh_namespace(client, &self.apps_namespace_prefix).await
    }

    /// The Application `namespace/name` as the API server has it.
    pub async fn app(&self, client: &Client, namespace: &str, name: &str) -> Value {
        let api = dynamic(client, namespace, "argoproj.io/v1alpha1", "Application").await;
        serde_json::to_value(api.get(name).await.unwrap()).unwrap()
    }

    /// Wait until Argo CD's own view of the app satisfies `ready` (its controller runs on its
    /// own); on timeout, fail with the app's status and Argo CD's logs.
    pub async fn wait_app(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        what: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let app = self.app(client, namespace, name).await;
            if ready(&app) {
                return app;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what}; the Application:\n{:#}\nArgo CD's logs:\n{}",
                app["status"],
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Sync the whole app through the API and wait until Argo CD says it is Synced.
    pub async fn sync_and_wait(&self, client: &Client, namespace: &str, name: &str) -> Value {
        self.client().sync(name, namespace, &[]).await.unwrap();
        self.wait_app(client, namespace, name, "the first sync", synced)
            .await
    }

    /// The components' logs, for a failing test's message.
    pub fn logs(&self) -> String {
        let out = Command::new(root().join("scripts/testenv.sh"))
            .args(["logs", "40"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Argo CD's own word that the app is in sync and its last operation succeeded.
pub fn synced(app: &Value) -> bool {
    app["status"]["sync"]["status"] == "Synced"
        && app["status"]["operationState"]["phase"] == "Succeeded"
}

pub fn real_argocd() -> &'static RealArgoCd {
    ARGOCD.get_or_init(|| {
        if std::env::var_os("KUBECONFIG").is_some_and(|k| !k.is_empty()) {
            panic!("the real Argo CD runs against the project's own API server: unset KUBECONFIG");
        }
        kubeconfig();
        let exports = testenv("argocd");
        RealArgoCd {
            server: exported(&exports, "ARGO_DRIFT_TEST_ARGOCD_SERVER"),
            ca: PathBuf::from(exported(&exports, "ARGO_DRIFT_TEST_ARGOCD_CA")),
            token_file: PathBuf::from(exported(&exports, "ARGO_DRIFT_TEST_ARGOCD_TOKEN_FILE")),
            namespace: exported(&exports, "ARGO_DRIFT_TEST_ARGOCD_NAMESPACE"),
            apps_namespace_prefix: exported(&exports, "ARGO_DRIFT_TEST_ARGOCD_APPS_NAMESPACES")
                .trim_end_matches('*')
                .trim_end_matches('-')
                .to_string(),
        }
    })
}

/// The second API server (`scripts/testenv.sh up --cluster spoke`): a cluster Argo CD manages
/// besides the one it runs in.
pub struct Spoke {
    /// Its API server URL.
    pub server: String,
    /// Its CA certificate, base64 (as a cluster Secret's `caData` holds it).
    pub ca_data: String,
    /// A token with full rights there.
    pub token: String,
    pub client: Client,
    /// Its certificates and keys (the CA signs client certificates too).
    pub pki: PathBuf,
}

static SPOKE_KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();

pub async fn spoke() -> Spoke {
    if std::env::var_os("KUBECONFIG").is_some_and(|k| !k.is_empty()) {
        panic!("the spoke cluster is the project's own second API server: unset KUBECONFIG");
    }
    let path = SPOKE_KUBECONFIG
        .get_or_init(|| {
            let exports = testenv_with(&["up", "--cluster", "spoke"]);
            PathBuf::from(exported(&exports, "KUBECONFIG"))
        })
        .clone();
    let kc = Kubeconfig::read_from(&path).unwrap();
    let cluster = kc.clusters[0].cluster.clone().unwrap();
    let text: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let token = text["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Spoke {
        server: cluster.server.unwrap(),
        ca_data: cluster.certificate_authority_data.unwrap(),
        token,
        client: Client::try_from(config).unwrap(),
        pki: path.parent().unwrap().join("pki"),
    }
}

impl Spoke {
    /// An Argo CD cluster Secret for the spoke named `name` in `namespace`, with `token`.
    pub fn secret(&self, namespace: &str, secret_name: &str, name: &str, token: &str) -> Value {
        let config = json!({"bearerToken": token, "tlsClientConfig": {"insecure": false, "caData": self.ca_data}});
        self.secret_with(namespace, secret_name, name, config)
    }

    /// A cluster Secret with this Argo CD `ClusterConfig`.
    pub fn secret_with(
        &self,
        namespace: &str,
        secret_name: &str,
        name: &str,
        config: Value,
    ) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret_name, "namespace": namespace,
                         "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
            "stringData": {"name": name, "server": self.server, "config": config.to_string()}
        })
    }

    /// A client certificate and key (PEM) for `user` in group system:masters, signed by the
    /// spoke's CA (openssl).
    pub fn client_certificate(&self, dir: &Path, user: &str) -> (String, String) {
        client_certificate(&self.pki, dir, user, "system:masters")
    }
}

/// A client certificate and key (PEM) for `user` in `group`, signed by the CA in `pki` (the
/// test API servers' CA signs client certificates too), made with openssl in `dir`.
pub fn client_certificate(pki: &Path, dir: &Path, user: &str, group: &str) -> (String, String) {
    let key = dir.join(format!("{user}.key"));
    let csr = dir.join(format!("{user}.csr"));
    let crt = dir.join(format!("{user}.crt"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let p = |p: &Path| p.to_str().unwrap().to_string();
    // Extensions make it an X.509 v3 certificate, the only version rustls accepts.
    let ext = dir.join(format!("{user}.ext"));
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &p(&key),
    ]);
    run(&[
        "req",
        "-new",
        "-key",
        &p(&key),
        "-subj",
        &format!("/O={group}/CN={user}"),
        "-out",
        &p(&csr),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&pki.join("ca.crt")),
        "-CAkey",
        &p(&pki.join("ca.key")),
        "-set_serial",
        &rand_u32().to_string(),
        "-extfile",
        &p(&ext),
        "-days",
        "1",
        "-out",
        &p(&crt),
    ]);
    (
        std::fs::read_to_string(crt).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    )
}

/// A client of the project's own (hub) test API server as `user` in `group`, authenticated by a
/// client certificate its CA signed.
pub async fn user_client(dir: &Path, user: &str, group: &str) -> Client {
    let pki = kubeconfig().parent().unwrap().join("pki");
    client_certificate(&pki, dir, user, group);
    let path = |ext: &str| Some(dir.join(format!("{user}.{ext}")).display().to_string());
    let mut config = admin_config().await;
    config.auth_info = kube::config::AuthInfo {
        client_certificate: path("crt"),
        client_key: path("key"),
        ..Default::default()
    };
    Client::try_from(config).unwrap()
}

pub async fn client() -> Client {
    // Controller logs in test output: RUST_LOG=argo_drift_controller=debug to see more.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("argo_drift_controller=info")
            }),
        )
        .with_test_writer()
        .try_init();
    let client = Client::try_from(admin_config().await).unwrap();
    install_crds(&client).await;
    client
}

/// The test cluster's admin credentials (what [`client`] is built from): a controller under
/// test builds its own clients from them, as `argo-drift run` does from its kubeconfig.
pub async fn admin_config() -> Config {
    let kc = Kubeconfig::read_from(kubeconfig()).unwrap();
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap()
}

/// The pinned Argo CD release's CRDs and the project's test CRDs (Argo Workflows, the
/// ServiceMonitor and PrometheusRule), idempotent, for clusters the script did not start.
async fn install_crds(client: &Client) {
    let dirs = [
        ARGOCD_CRDS.get().cloned().unwrap(),
        root().join("deploy/testenv/crds"),
    ];
    let mut files: Vec<_> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(path).unwrap();
        apply_yaml(client, "", &text, "argo-drift-tests").await;
    }
    // Established takes a moment after the first install.
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &argo_drift_controller::application::api_resource(),
    );
    wait_for("the Application CRD", Duration::from_secs(20), || async {
        api.list(&Default::default()).await.ok()
    })
    .await;
}

pub async fn fresh_namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{:x}", rand_u32());
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
    name
}

pub fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()));
    h.finish() as u32
}

/// Server-side apply every document of `yaml` under `manager` (namespace filled in for
/// namespaced kinds when `namespace` is not empty).
pub async fn apply_yaml(client: &Client, namespace: &str, yaml: &str, manager: &str) {
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = <Value as serde::Deserialize>::deserialize(doc).unwrap();
        if value.is_null() {
            continue;
        }
        apply(client, namespace, value, manager).await;
    }
}

pub async fn apply(
    client: &Client,
    namespace: &str,
    mut value: Value,
    manager: &str,
) -> DynamicObject {
    let api = dynamic_api(client, namespace, &value).await;
    let name = value["metadata"]["name"].as_str().unwrap().to_string();
    if let Some(m) = value["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&value),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"))
}

pub async fn dynamic_api(client: &Client, namespace: &str, value: &Value) -> Api<DynamicObject> {
    let api_version = value["apiVersion"].as_str().unwrap();
    let kind = value["kind"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = pinned_kind(client, &gvk).await.unwrap();
    if caps.scope == kube::discovery::Scope::Namespaced && !namespace.is_empty() {
        Api::namespaced_with(client.clone(), namespace, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

/// Poll `check` until it gives a value or `timeout` passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Git repository made by the test, committed with the git CLI.
pub struct GitRepo {
    pub dir: PathBuf,
}

impl GitRepo {
    pub fn new(dir: &Path) -> GitRepo {
        std::fs::create_dir_all(dir).unwrap();
        let repo = GitRepo {
            dir: dir.to_path_buf(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_AUTHOR_NAME", "test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn write(&self, path: &str, text: &str) {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Commit everything; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

/// A server process the test started; stopped when dropped.
pub struct Server(std::process::Child);

impl Server {
    /// Spawn `command` and wait until it accepts connections on `port`.
    pub fn start(command: &mut Command, port: u16, what: &str) -> Server {
        let server = Server(command.spawn().unwrap());
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a log shipper forwards of the test API server's audit log: the lines written from now
/// on (`tail -n 0 -F`, across the API server's rotation), into a file of the test's own that
/// argo-drift follows (`--audit-log`). The API server's own log holds every earlier test's
/// events (up to 100 MB): read whole in a debug build, it takes longer than a test waits.
pub struct AuditShipper {
    _tail: Server,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl AuditShipper {
    pub fn start(log: &Path) -> AuditShipper {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let out = std::fs::File::create(&path).unwrap();
        let tail = Server(
            Command::new("tail")
                .args(["-n", "0", "-F"])
                .arg(log)
                .stdout(out)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        AuditShipper {
            _tail: tail,
            path,
            _dir: dir,
        }
    }
}

/// `git daemon` serving a directory of repositories over git:// on loopback.
pub struct GitDaemon {
    _server: Server,
    pub port: u16,
}

impl GitDaemon {
    pub fn start(base: &Path) -> GitDaemon {
        let port = free_port();
        // `git daemon` would fork `git-daemon` and leave it running when killed: start the real
        // one, so that dropping this stops the server (and frees the test's output pipes).
        let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
        let exec_path = String::from_utf8_lossy(&exec_path.stdout)
            .trim()
            .to_string();
        let server = Server::start(
            Command::new(Path::new(&exec_path).join("git-daemon"))
                .args([
                    "--export-all",
                    "--reuseaddr",
                    "--listen=127.0.0.1",
                    &format!("--port={port}"),
                    &format!("--base-path={}", base.display()),
                    &base.display().to_string(),
                ])
                .stderr(std::process::Stdio::null()),
            port,
            "git daemon did not start",
        );
        GitDaemon {
            _server: server,
            port,
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The controller, in-process, until dropped.
pub struct Running {
    shutdown: tokio::sync::watch::Sender<bool>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<std::process::ExitCode>>>,
    pub admin: String,
    pub repo_cache: tempfile::TempDir,
    /// Files the controller reads (a token), removed with it.
    _files: Option<tempfile::TempDir>,
}

impl Running {
    /// A controller watching `app_namespace`, which is also its Argo CD's namespace.
    pub async fn start(config: &Config, app_namespace: &str, extra: &[&str]) -> Running {
        Running::start_beside(config, app_namespace, app_namespace, extra).await
    }

    /// A controller watching `app_namespace` (also its Argo CD's namespace) that calls the fake
    /// Argo CD at `url` with `token`, with `extra` arguments.
    pub async fn start_with_fake(
        config: &Config,
        app_namespace: &str,
        url: &str,
        token: &str,
        extra: &[&str],
    ) -> Running {
        let files = tempfile::tempdir().unwrap();
        let token_file = files.path().join("argocd-token");
        std::fs::write(&token_file, token).unwrap();
        let mut args = vec![
            "--argocd-server",
            url,
            "--argocd-token-file",
            token_file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let mut running = Running::start(config, app_namespace, &args).await;
        running._files = Some(files);
        running
    }

    /// A controller watching `app_namespace` beside the real Argo CD, using its API (server,
    /// the argo-drift account's token, the test CA), with `extra` arguments.
    pub async fn start_with_real_argocd(
        config: &Config,
        app_namespace: &str,
        extra: &[&str],
    ) -> Running {
        let real = real_argocd();
        let server = format!("https://{}", real.server);
        let mut args = vec![
            "--argocd-server",
            &server,
            "--argocd-token-file",
            real.token_file.to_str().unwrap(),
            "--argocd-ca-file",
            real.ca.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Running::start_beside(config, app_namespace, &real.namespace, &args).await
    }

    /// A controller watching `app_namespace`, beside an Argo CD that runs in `control_plane`;
    /// its own objects (state, audit records, lease) are kept in `app_namespace` unless `extra`
    /// names `--state-namespace`. An empty `app_namespace` leaves the choice to the controller
    /// (Argo CD's settings; state in `control_plane`).
    pub async fn start_beside(
        config: &Config,
        app_namespace: &str,
        control_plane: &str,
        extra: &[&str],
    ) -> Running {
        let repo_cache = tempfile::tempdir().unwrap();
        let port = free_port();
        // No app namespace: the controller takes Argo CD's (argocd-cmd-params-cm).
        let state = if app_namespace.is_empty() {
            control_plane
        } else {
            app_namespace
        };
        let mut argv: Vec<String> = [
            "argo-drift",
            "run",
            "--control-plane-namespace",
            control_plane,
            "--admin-addr",
            &format!("127.0.0.1:{port}"),
            "--repo-cache",
            &repo_cache.path().display().to_string(),
            "--lease-duration",
            "4s",
            "--identity",
            &format!("test-{}", rand_u32()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !app_namespace.is_empty() {
            argv.extend(["--app-namespace".to_string(), app_namespace.to_string()]);
        }
        if !extra.contains(&"--state-namespace") {
            argv.extend(["--state-namespace".to_string(), state.to_string()]);
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        let Cmd::Run(args) = Args::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        let (tx, rx) = tokio::sync::watch::channel(false);
        let config = config.clone();
        let handle = tokio::spawn(async move {
            argo_drift_controller::commands::run::serve(config, &args, rx).await
        });
        Running {
            shutdown: tx,
            handle: Some(handle),
            admin: format!("http://127.0.0.1:{port}"),
            repo_cache,
            _files: None,
        }
    }

    /// Stop gracefully and return the exit code the binary would have.
    pub async fn stop(mut self) -> std::process::ExitCode {
        let _ = self.shutdown.send(true);
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(20), handle)
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        match reqwest::get(format!("{}{path}", self.admin)).await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The report ConfigMap of application `app`, found in `namespace` (argo-drift's state
/// namespace; the tests give each controller its apps' namespace) by its labels, parsed.
pub async fn report(client: &Client, namespace: &str, app: &str) -> Option<(ConfigMap, Value)> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let selector = format!(
        "argo-drift.io/report=true,argo-drift.io/app={}",
        argo_drift_cluster::records::label_value(app)
    );
    let cm = api
        .list(&ListParams::default().labels(&selector))
        .await
        .ok()?
        .items
        .into_iter()
        .next()?;
    let text = cm.data.as_ref()?.get("report.json")?.clone();
    Some((cm, serde_json::from_str(&text).unwrap()))
}

pub fn severity_label(cm: &ConfigMap) -> String {
    cm.metadata.labels.as_ref().unwrap()["argo-drift.io/severity"].clone()
}

/// Events about an application: (reason, note), oldest first.
pub async fn events(client: &Client, namespace: &str, app: &str) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    let mut list: Vec<_> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(app))
        .collect();
    list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    list.into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// An application in sync: `live` (its manifests) applied as Argo CD applies them, and the
/// Application, opted in, reading `repo_url` at `path` and synced at `commit`.
#[allow(clippy::too_many_arguments)]
pub async fn app_in_sync(
    client: &Client,
    argocd: &str,
    shop: &str,
    name: &str,
    repo_url: &str,
    path: &str,
    commit: &str,
    live: &str,
) {
    apply_yaml(client, shop, live, "argocd-controller").await;
    apply(
        client,
        argocd,
        application(name, repo_url, path, shop, Some(commit)),
        "argocd-server",
    )
    .await;
}

/// An opted-in Application in sync, in fresh namespaces: Git (a repository in a temporary
/// directory, kept while this lives) holds `manifest` in `file` at its root, and the cluster
/// holds it as Argo CD applied it.
pub struct SyncedApp {
    pub argocd: String,
    pub shop: String,
    pub repo: GitRepo,
    _dir: tempfile::TempDir,
}

pub async fn synced_app(client: &Client, name: &str, file: &str, manifest: &str) -> SyncedApp {
    let argocd = fresh_namespace(client, "argocd").await;
    let shop = fresh_namespace(client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("r"));
    repo.write(file, manifest);
    let commit = repo.commit(name);
    app_in_sync(
        client,
        &argocd,
        &shop,
        name,
        &repo.url(),
        "",
        &commit,
        manifest,
    )
    .await;
    SyncedApp {
        argocd,
        shop,
        repo,
        _dir: dir,
    }
}

/// A person's `kubectl edit` of ConfigMap `name`: `data` merged into its data, under the
/// field manager kubectl gives such an edit.
pub async fn edit_config_map(configmaps: &Api<ConfigMap>, name: &str, data: Value) {
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    configmaps
        .patch(name, &edit, &Patch::Merge(json!({ "data": data })))
        .await
        .unwrap();
}

/// The objects the real kustomize builds from an overlay of `kustomization` (its paths relative
/// to a directory two levels below the repository's root: kustomize takes only relative paths
/// to other kustomizations, so the overlay sits in target/) and `files` beside it.
pub fn kustomize_build(kustomization: &str, files: &[(&str, &str)]) -> Vec<Value> {
    let kustomize = exported(&testenv("tools"), "ARGO_DRIFT_TEST_KUSTOMIZE");
    let overlay = root().join(format!("target/kustomize-overlay-{:x}", rand_u32()));
    std::fs::create_dir_all(&overlay).unwrap();
    for (name, text) in files {
        std::fs::write(overlay.join(name), text).unwrap();
    }
    std::fs::write(overlay.join("kustomization.yaml"), kustomization).unwrap();
    let out = std::process::Command::new(&kustomize)
        .arg("build")
        .arg(&overlay)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&overlay);
    assert!(
        out.status.success(),
        "kustomize build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// An Application opted in to argo-drift, read from `repo_url` at `path`.
pub fn application(
    name: &str,
    repo_url: &str,
    path: &str,
    destination: &str,
    revision: Option<&str>,
) -> Value {
    let mut app = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "labels": {"argo-drift.io/enabled": "true"}},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo_url, "path": path, "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": destination}
        }
    });
    if let Some(r) = revision {
        app["status"] = json!({"sync": {"status": "Synced", "revision": r}});
    }
    app
}

#[allow(unused_imports)]
pub use argo_drift_fake_argocd::FakeArgoCd;

/// Git's smart HTTP protocol (`git http-backend`) behind HTTP basic auth, on loopback: how Git
/// hosts take an HTTPS token (plain HTTP here; the credential exchange is the same). Fetches
/// and pushes (an authenticated user may push: http-backend's default).
pub struct GitHttp {
    _server: Server,
    pub port: u16,
}

const GIT_HTTP_SERVER: &str = r#"
import base64, http.server, os, subprocess, sys
port, root, user, token = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
expected = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def handle_one(self):
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # A push's pack (libgit2 sends it chunked).
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        env = dict(os.environ, GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                   QUERY_STRING=query, REQUEST_METHOD=self.command, REMOTE_USER=user,
                   CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(len(body)))
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            k, _, v = line.partition(": ")
            if k.lower() == "status": status = int(v.split()[0])
            elif k: headers.append((k, v))
        self.send_response(status)
        for k, v in headers: self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
    do_GET = handle_one
    do_POST = handle_one
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

impl GitHttp {
    pub fn start(root: &Path, user: &str, token: &str) -> GitHttp {
        let port = free_port();
        let server = Server::start(
            Command::new("python3")
                .args([
                    "-c",
                    GIT_HTTP_SERVER,
                    &port.to_string(),
                    &root.display().to_string(),
                    user,
                    token,
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
            port,
            "git HTTP server did not start",
        );
        GitHttp {
            _server: server,
            port,
        }
    }
}

/// An sshd on loopback that lets one key in as the current user, so Git runs over SSH the way
/// it does with a Git host; its host key goes into Argo CD's known hosts by the test.
pub struct Sshd {
    _server: Server,
    pub port: u16,
    pub user: String,
    pub client_key: String,
    pub host_key_line: String,
    _dir: tempfile::TempDir,
}

impl Sshd {
    /// The ssh:// URL of `repo` through this server, and Argo CD's repository Secret for it
    /// (the client key) in `argocd`.
    pub async fn repository(&self, client: &Client, argocd: &str, repo: &GitRepo) -> String {
        let url = format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.dir.display()
        );
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "repo-ssh", "labels": {"argocd.argoproj.io/secret-type": "repository"}},
            "stringData": {"type": "git", "url": url, "sshPrivateKey": self.client_key}
        });
        apply(client, argocd, secret, "argocd-server").await;
        url
    }

    /// `None` when this machine has no sshd (`scripts/testenv.sh up` installs it).
    pub fn start() -> Option<Sshd> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, comment) in [("host", "host"), ("client", "argo-drift-test")] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(d.join(name))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {keys}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile {pid}\nSetEnv PATH=/usr/local/bin:/usr/bin:/bin\n",
            host = d.join("host").display(),
            keys = d.join("authorized_keys").display(),
            pid = d.join("sshd.pid").display(),
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        // sshd wants its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let server = Server::start(
            Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
            port,
            "sshd did not start",
        );
        let host_pub = std::fs::read_to_string(d.join("host.pub")).unwrap();
        Some(Sshd {
            _server: server,
            port,
            user,
            client_key: std::fs::read_to_string(d.join("client")).unwrap(),
            host_key_line: format!("[127.0.0.1]:{port} {}", host_pub.trim()),
            _dir: dir,
        })
    }
}

/// An HTTP endpoint that accepts every JSON POST with 202 (as PagerDuty does) and keeps the bodies.
pub struct Capture {
    pub url: String,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Capture {
    pub async fn start() -> Capture {
        use axum::extract::State;
        use axum::http::StatusCode;
        use axum::Json;
        type Bodies = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;
        let bodies: Bodies = Default::default();
        let app = axum::Router::new()
            .route(
                "/v2/enqueue",
                axum::routing::post(|State(b): State<Bodies>, Json(v): Json<Value>| async move {
                    b.lock().unwrap().push(v);
                    (
                        StatusCode::ACCEPTED,
                        Json(json!({"status": "success", "message": "Event processed"})),
                    )
                }),
            )
            .with_state(bodies.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v2/enqueue", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Capture { url, bodies, task }
    }

    pub fn got(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An out-of-band merge patch, as `kubectl` writes it under `field_manager`.
pub async fn merge(api: &Api<DynamicObject>, name: &str, field_manager: &str, patch: Value) {
    api.patch(name, &manager(field_manager), &Patch::Merge(patch))
        .await
        .unwrap_or_else(|e| panic!("patching {name} as {field_manager}: {e}"));
}

/// Wait until the app's report satisfies `ready`; returns its ConfigMap and the parsed report.
pub async fn wait_report(
    client: &Client,
    namespace: &str,
    app: &str,
    what: &str,
    timeout: Duration,
    ready: impl Fn(&Value) -> bool,
) -> (k8s_openapi::api::core::v1::ConfigMap, Value) {
    wait_for(what, timeout, || async {
        let (cm, r) = report(client, namespace, app).await?;
        ready(&r).then_some((cm, r))
    })
    .await
}

pub fn manager(name: &str) -> PatchParams {
    PatchParams {
        field_manager: Some(name.to_string()),
        ..Default::default()
    }
}

pub async fn dynamic(
    client: &Client,
    ns: &str,
    api_version: &str,
    kind: &str,
) -> Api<DynamicObject> {
    dynamic_api(
        client,
        ns,
        &json!({"apiVersion": api_version, "kind": kind}),
    )
    .await
}

/// A notifications file in `dir` paging through PagerDuty at `url` (routing key R0UTINGKEY,
/// read from a file) for `events` from `min_severity` up; `header` adds top-level settings.
pub fn pagerduty_notifications(
    dir: &Path,
    url: &str,
    events: &[&str],
    min_severity: &str,
    header: &str,
) -> PathBuf {
    let key = dir.join("routing-key");
    std::fs::write(&key, "R0UTINGKEY\n").unwrap();
    let file = dir.join("notifications.yaml");
    let events: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
    std::fs::write(
        &file,
        format!(
            "{header}channels:\n- name: oncall\n  pagerduty: {{routingKey: {{file: {}}}, url: \"{url}\"}}\n  ratePerSecond: 50\nroutes:\n- events: [{}]\n  minSeverity: {min_severity}\n  channels: [oncall]\n",
            key.display(),
            events.join(", ")
        ),
    )
    .unwrap();
    file
}

/// An app of the usual kinds (Deployment, Service, Secret, Role) and a file that is no manifest.
pub const WEB: &[(&str, &str)] = &[
    (
        "apps/web/deployment.yaml",
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
          protocol: TCP
        env:
        - name: MODE
          value: production
        resources:
          requests: {cpu: 100m, memory: 64Mi}
"#,
    ),
    (
        "apps/web/service.yaml",
        r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
    protocol: TCP
"#,
    ),
    (
        "apps/web/secret.yaml",
        r#"apiVersion: v1
kind: Secret
metadata:
  name: web-creds
type: Opaque
data:
  password: c2VjcmV0LXZhbHVl
"#,
    ),
    (
        "apps/web/rbac.yaml",
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: web-reader
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
"#,
    ),
    (
        "apps/web/README.md",
        "not a manifest: skipped like Argo CD does\n",
    ),
    (
        "apps/web/settings.yaml",
        "# YAML that is no manifest (a tool's settings): Argo CD skips it, and so do we.\nlogLevel: debug\nfeatures: [a, b]\n",
    ),
];

/// A kubeconfig for ServiceAccount `namespace/name`, with a token from the TokenRequest API.
pub async fn service_account_kubeconfig(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    path: &Path,
) {
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}});
    let http = ::http::Request::post(format!(
        "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
    ))
    .header("Content-Type", "application/json")
    .body(serde_json::to_vec(&request).unwrap())
    .unwrap();
    let answer: Value = client.request(http).await.unwrap();
    let token = answer["status"]["token"].as_str().unwrap();
    let mut config: Value =
        serde_yaml::from_str(&std::fs::read_to_string(kubeconfig()).unwrap()).unwrap();
    config["users"] = json!([{"name": "hooks", "user": {"token": token}}]);
    config["contexts"][0]["context"]["user"] = json!("hooks");
    config["contexts"][0]["context"]["namespace"] = json!(namespace);
    std::fs::write(path, serde_yaml::to_string(&config).unwrap()).unwrap();
}

/// A client acting as ServiceAccount `namespace/name` (a TokenRequest token), for tests that
/// prove what the shipped RBAC and admission policy let it do.
pub async fn service_account_client(client: &Client, namespace: &str, name: &str) -> Client {
    Client::try_from(service_account_config(client, namespace, name).await).unwrap()
}

/// A ServiceAccount `deployer` of `namespace` (a CI job's, say) with a TokenRequest token,
/// allowed to get and patch ConfigMaps there (no controller-manager aggregates the built-in
/// `edit` role on this server). Not argo-drift's own: the shipped admission policy keeps that one
/// off apps' objects.
pub async fn configmap_deployer(admin: &Client, namespace: &str) -> Client {
    for object in [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}}),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "patch-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]}]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "patch-configmaps"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "patch-configmaps"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": namespace}]
        }),
    ] {
        apply(admin, namespace, object, "argo-drift-tests").await;
    }
    service_account_client(admin, namespace, "deployer").await
}

/// Merge `data` into ConfigMap `name` as `client` under field manager `manager`, once RBAC lets
/// it (a role binding just made takes a moment): the written resourceVersion.
pub async fn patch_config_map_once_allowed(
    client: &Client,
    namespace: &str,
    name: &str,
    manager: &str,
    data: Value,
) -> String {
    wait_for("the role binding", Duration::from_secs(10), || async {
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let params = PatchParams {
            field_manager: Some(manager.into()),
            ..Default::default()
        };
        configmaps
            .patch(name, &params, &Patch::Merge(json!({ "data": data })))
            .await
            .ok()
            .and_then(|cm| cm.metadata.resource_version)
    })
    .await
}

/// The administrator impersonating `user` in group system:masters.
pub async fn impersonating(user: &str) -> Client {
    let mut config = admin_config().await;
    config.auth_info.impersonate = Some(user.into());
    config.auth_info.impersonate_groups = Some(vec!["system:masters".into()]);
    Client::try_from(config).unwrap()
}

/// The credentials of ServiceAccount `namespace/name` (a TokenRequest token).
pub async fn service_account_config(client: &Client, namespace: &str, name: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    service_account_kubeconfig(client, namespace, name, &path).await;
    let kc = Kubeconfig::read_from(&path).unwrap();
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap()
}

/// Annotate Application `namespace/name` as `manager` does (a person with kubectl, the argocd
/// CLI asking for a refresh).
pub async fn annotate_application(
    client: &Client,
    namespace: &str,
    name: &str,
    manager: &str,
    annotations: Value,
) {
    let apps = dynamic(client, namespace, "argoproj.io/v1alpha1", "Application").await;
    merge(
        &apps,
        name,
        manager,
        json!({"metadata": {"annotations": annotations}}),
    )
    .await;
}

/// These tests keep the hooks' records in their stand-in Argo CD namespace (the one given as
/// `--app-namespace`), so that each test's records stay its own; the shipped Jobs write them to
/// argo-drift's namespace.
pub fn records_beside_apps(args: &[&str]) -> Vec<(&'static str, String)> {
    args.windows(2)
        .find(|w| w[0] == "--app-namespace")
        .map(|w| vec![("ARGO_DRIFT_RECORDS_NAMESPACE", w[1].to_string())])
        .unwrap_or_default()
}

/// A process's memory figure from /proc/<pid>/status (`VmRSS:`, `VmHWM:`), in MiB.
#[allow(dead_code)]
pub fn memory_mib(pid: u32, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// One report update as it landed: the application, the replica that wrote it
/// (`argo-drift.io/reported-by`), the report's text, and when it was seen.
#[allow(dead_code)]
pub struct ReportSeen {
    pub app: String,
    pub by: String,
    pub text: String,
    pub at: Instant,
}

#[allow(dead_code)]
pub type ReportLog = std::sync::Arc<std::sync::Mutex<Vec<ReportSeen>>>;

/// Every update of the report ConfigMaps in `namespace`, in order, until the task is aborted.
#[allow(dead_code)]
pub fn follow_reports(
    client: &Client,
    namespace: &str,
) -> (ReportLog, tokio::task::JoinHandle<()>) {
    use futures::TryStreamExt as _;
    let log: ReportLog = Default::default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let writer = log.clone();
    let task = tokio::spawn(async move {
        let stream = kube::runtime::watcher(
            api,
            kube::runtime::watcher::Config::default().labels("argo-drift.io/report=true"),
        );
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(event)) = stream.try_next().await {
            let (kube::runtime::watcher::Event::Apply(cm)
            | kube::runtime::watcher::Event::InitApply(cm)) = event
            else {
                continue;
            };
            let annotation = |k: &str| {
                cm.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(k))
                    .cloned()
                    .unwrap_or_default()
            };
            let text = cm
                .data
                .as_ref()
                .and_then(|d| d.get("report.json"))
                .cloned()
                .unwrap_or_default();
            writer.lock().unwrap().push(ReportSeen {
                app: annotation("argo-drift.io/application"),
                by: annotation("argo-drift.io/reported-by"),
                text,
                at: Instant::now(),
            });
        }
    });
    (log, task)
}

/// A fleet app's ConfigMap `cm-<j>` (benchmarks).
#[allow(dead_code)]
pub fn fleet_configmap(app: usize, j: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{j}\n  labels: {{app: app-{app}}}\ndata:\n  level: info\n  owner: team-{app}\n  settings.json: '{{\"retries\": 3, \"timeout\": \"30s\", \"item\": {j}}}'\n"
    )
}

/// A fleet app's Deployment `web` (benchmarks).
#[allow(dead_code)]
pub fn fleet_deployment(app: usize) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: app-{app}}}\n  template:\n    metadata:\n      labels: {{app: app-{app}}}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n        ports:\n        - containerPort: 80\n          protocol: TCP\n"
    )
}

/// An `argo-drift run --sharding true` process (the binary at `bin`) watching `namespace`, which
/// is also its Argo CD's and its state namespace.
#[allow(dead_code)]
pub struct Replica {
    pub identity: String,
    pub child: std::process::Child,
    pub admin: String,
    _cache: tempfile::TempDir,
}

#[allow(dead_code)]
impl Replica {
    pub fn start(bin: &str, identity: &str, namespace: &str, lease_seconds: u64) -> Replica {
        let port = free_port();
        let cache = tempfile::tempdir().unwrap();
        let child = Command::new(bin)
            .args([
                "run",
                "--sharding",
                "true",
                "--identity",
                identity,
                "--lease-duration",
                &format!("{lease_seconds}s"),
                "--app-namespace",
                namespace,
                "--control-plane-namespace",
                namespace,
                "--state-namespace",
                namespace,
                "--admin-addr",
                &format!("127.0.0.1:{port}"),
                "--repo-cache",
                &cache.path().display().to_string(),
                "--log-level",
                "warn",
            ])
            .env("KUBECONFIG", kubeconfig())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Replica {
            identity: identity.to_string(),
            child,
            admin: format!("http://127.0.0.1:{port}"),
            _cache: cache,
        }
    }
}

/// A fleet for the benchmarks: `apps` applications of `per_app` objects each (Deployment `web`
/// and ConfigMaps `cm-<j>`), `per_namespace` apps to a namespace (their object names then start
/// with `a<app>-`), in one Git repository; live as Argo CD applied them and opted in as
/// Applications in a namespace of their own (`argocd`).
#[allow(dead_code)]
pub struct Fleet {
    pub argocd: String,
    /// Each app's namespace, by app.
    pub namespaces: Vec<String>,
    pub per_namespace: usize,
    /// Live objects applied.
    pub objects: usize,
    _repo: tempfile::TempDir,
}

#[allow(dead_code)]
impl Fleet {
    pub async fn create(
        client: &Client,
        prefix: &str,
        apps: usize,
        per_app: usize,
        per_namespace: usize,
    ) -> Fleet {
        use futures::StreamExt as _;
        let per_namespace = per_namespace.max(1);
        let argocd = fresh_namespace(client, &format!("{prefix}-argocd")).await;
        let dir = tempfile::tempdir().unwrap();
        let repo = GitRepo::new(&dir.path().join("fleet"));
        let mut namespaces: Vec<String> = Vec::with_capacity(apps);
        let mut docs: Vec<(String, Value)> = Vec::with_capacity(apps * per_app);
        for a in 0..apps {
            let ns = if a % per_namespace == 0 {
                fresh_namespace(client, &format!("{prefix}-{a}")).await
            } else {
                namespaces[a - 1].clone()
            };
            let names = Fleet::names_of(a, per_namespace);
            let mut text = fleet_deployment(a).replace("name: web", &format!("name: {names}web"));
            for j in 1..per_app {
                text.push_str("---\n");
                text.push_str(
                    &fleet_configmap(a, j).replace("name: cm-", &format!("name: {names}cm-")),
                );
            }
            repo.write(&format!("apps/app-{a}/all.yaml"), &text);
            for d in serde_yaml::Deserializer::from_str(&text) {
                docs.push((
                    ns.clone(),
                    <Value as serde::Deserialize>::deserialize(d).unwrap(),
                ));
            }
            namespaces.push(ns);
        }
        let commit = repo.commit("fleet");
        let objects = docs.len();
        // Applied as Argo CD would, many requests at a time.
        futures::stream::iter(docs)
            .for_each_concurrent(32, |(ns, v)| async move {
                apply(client, &ns, v, "argocd-controller").await;
            })
            .await;
        let url = repo.url();
        futures::stream::iter(namespaces.iter().enumerate())
            .for_each_concurrent(16, |(a, ns)| {
                let app = application(
                    &format!("app-{a}"),
                    &url,
                    &format!("apps/app-{a}"),
                    ns,
                    Some(&commit),
                );
                let argocd = argocd.clone();
                async move {
                    apply(client, &argocd, app, "argocd-server").await;
                }
            })
            .await;
        Fleet {
            argocd,
            namespaces,
            per_namespace,
            objects,
            _repo: dir,
        }
    }

    /// What app `a`'s object names start with: nothing when each app has its own namespace.
    fn names_of(a: usize, per_namespace: usize) -> String {
        if per_namespace > 1 {
            format!("a{a}-")
        } else {
            String::new()
        }
    }

    /// The name of app `a`'s object `name` (`web`, `cm-3`).
    pub fn object(&self, a: usize, name: &str) -> String {
        format!("{}{name}", Fleet::names_of(a, self.per_namespace))
    }
}

/// `n` applications `app-0`.. in a fresh Argo CD namespace, each of one ConfigMap in one fresh
/// namespace, held in Git and live as Argo CD applied it: (Argo CD namespace, the apps'
/// namespace, app names, the directory holding the repository — keep it while the apps are
/// read).
pub async fn config_map_apps(
    client: &Client,
    n: usize,
) -> (String, String, Vec<String>, tempfile::TempDir) {
    let config_map = |name: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  level: info\n"
        )
    };
    let argocd = fresh_namespace(client, "argocd").await;
    let shop = fresh_namespace(client, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("fleet.git"));
    let names: Vec<String> = (0..n).map(|i| format!("app-{i}")).collect();
    for name in &names {
        repo.write(&format!("{name}/cm.yaml"), &config_map(name));
    }
    let commit = repo.commit("fleet");
    for name in &names {
        apply_yaml(client, &shop, &config_map(name), "argocd-controller").await;
        let app = application(name, &repo.url(), name, &shop, Some(&commit));
        apply(client, &argocd, app, "argocd-server").await;
    }
    (argocd, shop, names, dir)
}

/// Gitea, the pinned release built from Go modules (`scripts/testenv.sh forge`), on loopback
/// with its own sqlite database: a real forge, with Git's smart HTTP protocol behind a token and
/// the pull-request API GitHub's request shape is sent to (under `/api/v1`).
pub struct Gitea {
    _server: Server,
    pub url: String,
    pub user: String,
    /// An access token of `user` (an admin) with every scope.
    pub token: String,
    _dir: tempfile::TempDir,
}

impl Gitea {
    pub fn start() -> Gitea {
        let env = testenv("forge");
        let binary = exported(&env, "ARGO_DRIFT_TEST_GITEA");
        let root = exported(&env, "ARGO_DRIFT_TEST_GITEA_ROOT");
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        // Root on CI machines: Gitea refuses that unless told (and logs a warning).
        let config = format!(
            "I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true\nRUN_MODE = prod\nWORK_PATH = {work}\n\
             [server]\nHTTP_ADDR = 127.0.0.1\nHTTP_PORT = {port}\nROOT_URL = {url}/\n\
             STATIC_ROOT_PATH = {root}\nDISABLE_SSH = true\nOFFLINE_MODE = true\nLFS_START_SERVER = false\n\
             [database]\nDB_TYPE = sqlite3\nPATH = {work}/data/gitea.db\n\
             [security]\nINSTALL_LOCK = true\n[service]\nDISABLE_REGISTRATION = true\n\
             [repository]\nROOT = {work}/repos\nDEFAULT_BRANCH = main\n\
             [log]\nLEVEL = Warn\n[indexer]\nREPO_INDEXER_ENABLED = false\n\
             [cron]\nENABLED = false\n[actions]\nENABLED = false\n[mailer]\nENABLED = false\n",
            work = work.display(),
        );
        let ini = work.join("app.ini");
        std::fs::write(&ini, config).unwrap();
        let gitea = |args: &[&str]| {
            let out = Command::new(&binary)
                .arg("--config")
                .arg(&ini)
                .arg("--work-path")
                .arg(work)
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "gitea {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        gitea(&["migrate"]);
        let user = "ops".to_string();
        gitea(&[
            "admin",
            "user",
            "create",
            "--username",
            &user,
            "--password",
            "argo-drift-test-0123",
            "--email",
            "ops@example.com",
            "--admin",
            "--must-change-password=false",
        ]);
        let token = gitea(&[
            "admin",
            "user",
            "generate-access-token",
            "--username",
            &user,
            "--token-name",
            "argo-drift",
            "--scopes",
            "all",
            "--raw",
        ]);
        let token = token.lines().last().unwrap_or_default().trim().to_string();
        let log = std::fs::File::create(work.join("web.log")).unwrap();
        let server = Server::start(
            Command::new(&binary)
                .arg("--config")
                .arg(&ini)
                .arg("--work-path")
                .arg(work)
                .arg("web")
                .stdout(log.try_clone().unwrap())
                .stderr(log),
            port,
            "gitea did not start",
        );
        Gitea {
            _server: server,
            url,
            user,
            token,
            _dir: dir,
        }
    }

    /// A GET of Gitea's API, `None` on an error status (a repository just pushed answers 404
    /// until Gitea has processed the push).
    pub async fn get(&self, path: &str) -> Option<Value> {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1{path}", self.url))
            .header("Authorization", format!("token {}", self.token))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// A call of Gitea's API as its admin: the answer's JSON (null when empty).
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = reqwest::Client::new()
            .request(method.clone(), format!("{}/api/v1{path}", self.url))
            .header("Authorization", format!("token {}", self.token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A new private repository of the admin with `repo`'s `main` pushed: its clone URL.
    pub async fn repository(&self, name: &str, repo: &GitRepo) -> String {
        self.api(
            reqwest::Method::POST,
            "/user/repos",
            Some(json!({"name": name, "private": true, "default_branch": "main"})),
        )
        .await;
        let url = format!("{}/{}/{name}.git", self.url, self.user);
        let with_token = url.replacen("://", &format!("://{}:{}@", self.user, self.token), 1);
        repo.git(&["push", "-q", &with_token, "main"]);
        url
    }
}

/// The real helm (built from Go modules by `scripts/testenv.sh tools`), with its own
/// configuration, cache and data directories (nothing of the user's), and `KUBECONFIG` when the
/// command talks to the cluster. Returns stdout; fails the test with helm's stderr.
pub fn helm(args: &[&str], cluster: bool) -> String {
    let (out, err, ok) = helm_output(args, cluster);
    assert!(ok, "helm {args:?}:\n{out}{err}");
    out
}

/// helm's stdout, stderr and whether it succeeded.
pub fn helm_output(args: &[&str], cluster: bool) -> (String, String, bool) {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    let home = HOME.get_or_init(|| tempfile::tempdir().unwrap()).path();
    let binary = exported(&testenv("tools"), "ARGO_DRIFT_TEST_HELM");
    let mut command = Command::new(binary);
    command
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    if cluster {
        command.env("KUBECONFIG", kubeconfig());
    }
    let out = command.output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// deploy/helm/argo-drift rendered by `helm template` with these extra arguments (`-f`, `--set`,
/// `--show-only`).
pub fn chart_template(extra: &[&str]) -> String {
    let chart = root().join("deploy/helm/argo-drift");
    let mut args = vec!["template", "argo-drift", chart.to_str().unwrap()];
    args.extend_from_slice(extra);
    helm(&args, false)
}

/// Delete Application `namespace/name` without Argo CD's cascade (its finalizer cleared first),
/// and wait until it is gone: the test API server never finishes deleting a namespace, so a
/// cascade that deletes one would wait forever.
pub async fn delete_application_keeping_resources(client: &Client, namespace: &str, name: &str) {
    let apps = dynamic(client, namespace, "argoproj.io/v1alpha1", "Application").await;
    if apps.get_opt(name).await.unwrap().is_none() {
        return;
    }
    merge(
        &apps,
        name,
        "argocd-server",
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    let _ = apps.delete(name, &Default::default()).await;
    wait_for(
        &format!("Application {namespace}/{name} deleted"),
        Duration::from_secs(60),
        || async { apps.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}
