//! Command-line arguments (clap derive). Every flag can also come from an `ARGO_DRIFT_*`
//! environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use argo_drift_core::Severity;
use clap::{Parser, Subcommand, ValueEnum};

pub use argo_drift_cluster::process::{ColorChoice, GlobalArgs, LogFormat, PolicyArgs};
pub use argo_drift_desired::argocd::{argocd_opts_flags, ArgoCdArgs};

#[derive(Debug, Parser)]
#[command(
    name = "argo-drift",
    version,
    about = "Find, classify and explain drift between Git and a Kubernetes cluster, beside Argo CD",
    long_about = None,
)]
pub struct Args {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compare desired manifests (Git) with live objects (`kubectl get -o yaml` dumps), offline.
    ///
    /// Exit code: 0 in sync (or drift below --fail-on), 1 drift at or above --fail-on, 2 error.
    Diff(DiffArgs),
    /// Inspect and check severity policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run the live drift controller: watch opted-in Argo CD Applications (label
    /// argo-drift.io/enabled=true), compare Git with the cluster on every change, and publish
    /// reports (ConfigMap argo-drift-report-<app>), Events, metrics and logs.
    Run(Box<RunArgs>),
    /// Check notification channels.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Adopt an application's drift into Git: the live values of its drifted fields (from its
    /// report) written into the Git files — in place for a directory source, as a patch for a
    /// kustomize source, every other byte kept — committed with who changed what and when, and
    /// pushed as a new branch with Argo CD's credentials for the repository. Secrets never.
    Adopt(crate::commands::adopt::AdoptArgs),
    /// Run Argo CD Lua health checks as Argo CD runs them.
    #[command(subcommand)]
    Health(HealthCommand),
}

#[derive(Debug, Subcommand)]
pub enum HealthCommand {
    /// Run every health_test.yaml under DIR (Argo CD's layout <group>/<Kind>/{health.lua,
    /// health_test.yaml, testdata/}); one line per case, then `N passed, N failed`.
    ///
    /// Exit code: 0 when no case failed, 1 otherwise, 2 error.
    Test(HealthTestArgs),
    /// Run one script on one object and print the health status as JSON.
    ///
    /// Exit code: 0 the script ran, 2 it failed (error, time limit, malformed result).
    Run(HealthRunArgs),
    /// Print the argocd-cm entries (resource.customizations.health.<group>_<Kind>) for the
    /// checks under DIR, as YAML to merge into the ConfigMap's data.
    Configmap(HealthConfigmapArgs),
}

#[derive(Debug, clap::Args)]
pub struct HealthTestArgs {
    #[arg(value_name = "DIR", default_value = "health-checks")]
    pub dir: PathBuf,
    /// Run the scripts as argocd-cm overrides (resource.customizations.health.*): standard
    /// libraries closed unless --open-libs. Without it they run as Argo CD runs its built-in
    /// scripts and its own suite: libraries open.
    #[arg(long)]
    pub r#override: bool,
    /// With --override: Argo CD's resource.customizations.useOpenLibs (string, math,
    /// coroutines).
    #[arg(long, requires = "override")]
    pub open_libs: bool,
}

#[derive(Debug, clap::Args)]
pub struct HealthRunArgs {
    #[arg(long, value_name = "FILE")]
    pub script: PathBuf,
    /// The object, YAML or JSON.
    #[arg(long, value_name = "FILE")]
    pub object: PathBuf,
    #[arg(long)]
    pub open_libs: bool,
}

#[derive(Debug, clap::Args)]
pub struct HealthConfigmapArgs {
    #[arg(value_name = "DIR", default_value = "health-checks")]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a sample notification on one channel of the notifications file, bypassing routes
    /// and dedup, to check its address and credentials. For an event that closes an incident
    /// (drift-resolved), a trigger is sent first so that the resolve has something to close.
    Test(NotifyTestArgs),
}

#[derive(Debug, clap::Args)]
pub struct NotifyTestArgs {
    /// The notifications file.
    #[arg(
        long,
        env = "ARGO_DRIFT_NOTIFICATIONS",
        default_value = "config/notifications.yaml",
        value_name = "FILE"
    )]
    pub config: PathBuf,
    /// The channel to test, by name.
    #[arg(long, env = "ARGO_DRIFT_NOTIFY_CHANNEL", value_name = "NAME")]
    pub channel: String,
    /// The event to send (drift-detected, drift-resolved, rollback-failed, ...).
    #[arg(
        long,
        env = "ARGO_DRIFT_NOTIFY_EVENT",
        default_value = "drift-detected",
        value_name = "EVENT"
    )]
    pub event: String,
    /// The severity of the sample.
    #[arg(
        long,
        env = "ARGO_DRIFT_NOTIFY_SEVERITY",
        default_value = "high",
        value_name = "SEVERITY"
    )]
    pub severity: Severity,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Namespaces whose Applications are watched: names, globs or /regular expressions/, as
    /// Argo CD's `application.namespaces`. Default: Argo CD's own namespace plus
    /// argocd-cmd-params-cm `application.namespaces` ("apps in any namespace"), followed while
    /// running (every --policy-reload).
    #[arg(
        long = "app-namespace",
        env = "ARGO_DRIFT_APP_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS"
    )]
    pub app_namespaces: Vec<String>,
    #[command(flatten)]
    pub namespaces: NamespaceArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Notifications file (Slack, PagerDuty, email; see config/notifications.yaml). Without it,
    /// drift is reported through the ConfigMap, Events, metrics and logs only.
    #[arg(long, env = "ARGO_DRIFT_NOTIFICATIONS", value_name = "FILE")]
    pub notifications: Option<PathBuf>,
    /// How often each destination cluster is probed (`GET /version` with Argo CD's credentials
    /// for it); a change of answer re-analyses its applications.
    #[arg(long, env = "ARGO_DRIFT_CLUSTER_PROBE_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub cluster_probe_interval: Duration,
    /// How often to look at the policy file for changes.
    #[arg(long, env = "ARGO_DRIFT_POLICY_RELOAD", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub policy_reload: Duration,
    /// Address of the drift view's read-only API for Argo CD's UI extension (reached through
    /// argocd-server's proxy extension; docs/ui-extension.md). Off unless set; needs
    /// --ui-api-token-file.
    #[arg(
        long,
        env = "ARGO_DRIFT_UI_API_ADDR",
        value_name = "ADDR",
        requires = "ui_api_token_file"
    )]
    pub ui_api_addr: Option<SocketAddr>,
    /// File holding the token argocd-server sends in header `Argo-Drift-Proxy-Token` (the
    /// extension config's header value, a key of argocd-secret). Requests without it are refused.
    #[arg(long, env = "ARGO_DRIFT_UI_API_TOKEN_FILE", value_name = "FILE")]
    pub ui_api_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub audit: AuditArgs,
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(
        long,
        env = "ARGO_DRIFT_ADMIN_ADDR",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub admin_addr: SocketAddr,
    /// Where Git clones are kept (one bare clone per repository URL).
    #[arg(
        long,
        env = "ARGO_DRIFT_REPO_CACHE",
        default_value = "/tmp/argo-drift/repos",
        value_name = "DIR"
    )]
    pub repo_cache: PathBuf,
    /// Fetch a branch or tag again when its last fetch is older than this (commits are fetched once).
    #[arg(long, env = "ARGO_DRIFT_GIT_REFRESH", default_value = "3m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub git_refresh: Duration,
    /// Analyse every application again this often even without a change.
    #[arg(long, env = "ARGO_DRIFT_RESYNC", default_value = "10m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub resync: Duration,
    /// How long to wait for a new watch's first list before the analysis fails and is retried.
    #[arg(long, env = "ARGO_DRIFT_WATCH_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub watch_timeout: Duration,
    /// How often to look for deleted or opted-out Applications and forget them (their metrics,
    /// and the watches only they needed).
    #[arg(long, env = "ARGO_DRIFT_GC_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub gc_interval: Duration,
    /// Applications analysed at the same time.
    #[arg(
        long,
        env = "ARGO_DRIFT_CONCURRENCY",
        default_value_t = 8,
        value_name = "N"
    )]
    pub concurrency: u16,
    #[command(flatten)]
    pub argocd: ArgoCdArgs,
    /// Audit records (ConfigMaps labelled audit-type=drift-remediation) kept per application.
    #[arg(
        long,
        env = "ARGO_DRIFT_AUDIT_KEEP",
        default_value_t = 50,
        value_name = "N"
    )]
    pub audit_keep: usize,
    /// The author of the commits the `adopt` action pushes.
    #[arg(
        long,
        env = "ARGO_DRIFT_ADOPT_AUTHOR",
        default_value = "argo-drift <argo-drift@localhost>",
        value_name = "NAME <EMAIL>"
    )]
    pub adopt_author: String,
    /// Pull requests for the `adopt` action's branches.
    #[command(flatten)]
    pub forge: crate::forge::ForgeArgs,
    /// Tests only: read the clock (Unix seconds) from this file, so that cooldowns and
    /// approval expiry can be tested without waiting.
    #[arg(long, env = "ARGO_DRIFT_CLOCK_FILE", hide = true, value_name = "PATH")]
    pub clock_file: Option<PathBuf>,
    /// Elect a leader through a Lease so that only one replica writes.
    #[arg(long, env = "ARGO_DRIFT_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub leader_election: bool,
    /// Every replica works, each on its share of the applications (consistent hashing over the
    /// replicas holding a fresh `<lease-name>-member-<identity>` Lease); replaces leader
    /// election. When a replica stops renewing its Lease, the others take its apps within
    /// --lease-duration.
    #[arg(long, env = "ARGO_DRIFT_SHARDING", default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sharding: bool,
    /// Name of the leader election Lease (the prefix of the membership Leases when sharded).
    #[arg(
        long,
        env = "ARGO_DRIFT_LEASE_NAME",
        default_value = "argo-drift-controller",
        value_name = "NAME"
    )]
    pub lease_name: String,
    /// Namespace of the Lease (default: the state namespace).
    #[arg(long, env = "ARGO_DRIFT_LEASE_NAMESPACE", value_name = "NS")]
    pub lease_namespace: Option<String>,
    /// A leader that has not renewed for this long loses the lease.
    #[arg(long, env = "ARGO_DRIFT_LEASE_DURATION", default_value = "15s", value_parser = lease_duration, value_name = "DURATION")]
    pub lease_duration: Duration,
    /// This replica's name in the Lease and in Events (the pod name in a cluster).
    #[arg(long, env = "POD_NAME", default_value_t = default_identity(), value_name = "NAME")]
    pub identity: String,
}

/// Argo CD's namespace and argo-drift's own (`run`, `adopt`).
#[derive(Debug, Clone, clap::Args)]
pub struct NamespaceArgs {
    /// Argo CD's own namespace: its repository Secrets live there, and its applications are
    /// named by bare name in tracking marks.
    #[arg(
        long,
        env = "ARGO_DRIFT_CONTROL_PLANE_NAMESPACE",
        default_value = "argocd",
        value_name = "NS"
    )]
    pub control_plane_namespace: String,
    /// Where argo-drift keeps its own objects: the guardrail state ConfigMap, the audit records
    /// and the leader election Lease; its own namespace, never among Argo CD's settings.
    #[arg(
        long,
        env = "ARGO_DRIFT_STATE_NAMESPACE",
        default_value = "argo-drift",
        value_name = "NS"
    )]
    pub state_namespace: String,
}

/// Who changed each drifted field, from the API servers' audit events (docs/audit.md). Off
/// unless a webhook address or a log is given.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Address of the audit webhook receiver (HTTPS; `POST /audit` for the cluster argo-drift
    /// runs in, `POST /audit/<cluster>` for an Argo CD cluster by name or server URL). Needs
    /// --audit-webhook-tls-cert and -key, and --audit-webhook-client-ca and/or
    /// --audit-webhook-token-file.
    #[arg(
        long,
        env = "ARGO_DRIFT_AUDIT_WEBHOOK_ADDR",
        value_name = "ADDR",
        requires_all = ["audit_webhook_tls_cert", "audit_webhook_tls_key"]
    )]
    pub audit_webhook_addr: Option<SocketAddr>,
    /// The receiver's certificate (PEM, with its chain).
    #[arg(long, env = "ARGO_DRIFT_AUDIT_WEBHOOK_TLS_CERT", value_name = "FILE")]
    pub audit_webhook_tls_cert: Option<PathBuf>,
    /// The receiver's private key (PEM).
    #[arg(long, env = "ARGO_DRIFT_AUDIT_WEBHOOK_TLS_KEY", value_name = "FILE")]
    pub audit_webhook_tls_key: Option<PathBuf>,
    /// CA certificates (PEM): the API server must present a client certificate they signed.
    #[arg(long, env = "ARGO_DRIFT_AUDIT_WEBHOOK_CLIENT_CA", value_name = "FILE")]
    pub audit_webhook_client_ca: Option<PathBuf>,
    /// File holding the bearer token the API server must send (its webhook kubeconfig's `token`).
    #[arg(long, env = "ARGO_DRIFT_AUDIT_WEBHOOK_TOKEN_FILE", value_name = "FILE")]
    pub audit_webhook_token_file: Option<PathBuf>,
    /// The largest EventList the receiver accepts, in MiB.
    #[arg(
        long,
        env = "ARGO_DRIFT_AUDIT_WEBHOOK_BODY_LIMIT_MIB",
        default_value_t = 64,
        value_name = "MIB"
    )]
    pub audit_webhook_body_limit_mib: usize,
    /// A JSON-lines audit log to read and follow, `[CLUSTER=]PATH` (CLUSTER: an Argo CD cluster's
    /// name or server URL, default the cluster argo-drift runs in; PATH `-`: standard input).
    /// Repeatable.
    #[arg(long = "audit-log", env = "ARGO_DRIFT_AUDIT_LOGS", value_delimiter = ',', value_parser = crate::audit::parse_log_source, value_name = "[CLUSTER=]PATH")]
    pub audit_logs: Vec<crate::audit::LogSource>,
    /// Writes kept per object.
    #[arg(
        long,
        env = "ARGO_DRIFT_AUDIT_PER_OBJECT",
        default_value_t = 32,
        value_name = "N"
    )]
    pub audit_per_object: usize,
    /// Memory for the written objects kept, in MiB, all clusters each (the oldest go first).
    #[arg(
        long,
        env = "ARGO_DRIFT_AUDIT_MEMORY_MIB",
        default_value_t = 64,
        value_name = "MIB"
    )]
    pub audit_memory_mib: usize,
    /// How long a write is kept.
    #[arg(long, env = "ARGO_DRIFT_AUDIT_RETENTION", default_value = "6h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub audit_retention: Duration,
    /// Show the requests' source IPs in changedBy (personal data in some jurisdictions: off by
    /// default).
    #[arg(long, env = "ARGO_DRIFT_AUDIT_SOURCE_IPS", default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub audit_source_ips: bool,
    /// How long an analysis that finds new drift waits for its audit events before it reports
    /// and announces it without them (the API server's webhook batches, a shipper's flush).
    #[arg(long, env = "ARGO_DRIFT_AUDIT_WAIT", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub audit_wait: Duration,
}

impl AuditArgs {
    pub fn enabled(&self) -> bool {
        self.audit_webhook_addr.is_some() || !self.audit_logs.is_empty()
    }

    pub fn limits(&self) -> argo_drift_core::audit::Limits {
        argo_drift_core::audit::Limits {
            per_object: self.audit_per_object.max(1),
            bytes: self.audit_memory_mib.saturating_mul(1 << 20),
            object_bytes: argo_drift_core::audit::Limits::default().object_bytes,
            retention: chrono::Duration::from_std(self.audit_retention)
                .unwrap_or(chrono::Duration::hours(6)),
            source_ips: self.audit_source_ips,
        }
    }
}

impl RunArgs {
    /// The namespace of argo-drift's own objects.
    pub fn state_namespace(&self) -> &str {
        &self.namespaces.state_namespace
    }
}

/// A lease duration: whole seconds (the Lease counts in seconds), at least 2 (it is renewed a
/// third of it before it runs out).
fn lease_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(2) || d.subsec_nanos() != 0 {
        return Err(format!(
            "{text}: a lease duration is whole seconds, at least 2s"
        ));
    }
    Ok(d)
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "argo-drift".to_string());
    format!("{host}-{}", std::process::id())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// Desired manifests: files or directories (recursive: *.yaml, *.yml, *.json), or - for stdin.
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', env = "ARGO_DRIFT_DESIRED", value_name = "PATH")]
    pub desired: Vec<PathBuf>,
    /// Live objects, as the API server returns them: files, directories or - for stdin.
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', env = "ARGO_DRIFT_LIVE", value_name = "PATH")]
    pub live: Vec<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Namespace for namespaced objects that name none.
    #[arg(
        long,
        short = 'n',
        env = "ARGO_DRIFT_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,
    /// Output format.
    #[arg(long, short = 'o', env = "ARGO_DRIFT_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Exit 1 only when some drift is at least this severe (none, info, low, medium, high, critical).
    #[arg(long, env = "ARGO_DRIFT_FAIL_ON", default_value = "info", value_parser = parse_severity)]
    pub fail_on: Severity,
    /// Count as extra only live objects tracked by this Argo CD application (any app otherwise).
    #[arg(long, env = "ARGO_DRIFT_APP")]
    pub app: Option<String>,
    /// Also give a unified diff of each modified object (in text, JSON and YAML output).
    #[arg(long, env = "ARGO_DRIFT_SHOW_DIFF")]
    pub show_diff: bool,
    /// In text output, also list resources that are in sync.
    #[arg(long, env = "ARGO_DRIFT_SHOW_SYNCED")]
    pub show_synced: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show which rule gives a field its severity, and why earlier rules did not match.
    Explain(ExplainArgs),
    /// Check a policy file; exit 0 when valid, 1 when not (with the file, key and problem).
    Validate(ValidateArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Kind of the object (Deployment, Secret, ...).
    #[arg(long, env = "ARGO_DRIFT_EXPLAIN_KIND")]
    pub kind: String,
    /// API group of the kind ("" for the core group); guessed for well-known kinds when omitted.
    #[arg(long, env = "ARGO_DRIFT_EXPLAIN_GROUP")]
    pub group: Option<String>,
    /// Field path, e.g. spec.template.spec.containers[name=web].image. Omit with --status
    /// missing or extra.
    #[arg(
        long,
        env = "ARGO_DRIFT_EXPLAIN_PATH",
        required_unless_present = "status"
    )]
    pub path: Option<String>,
    /// What happened to live: add (live has it, Git not), remove, replace.
    #[arg(long, env = "ARGO_DRIFT_EXPLAIN_OP", default_value = "replace", value_parser = ["add", "remove", "replace"])]
    pub op: String,
    /// The live value, as JSON or a bare string (rules such as run-as-root look at it).
    #[arg(long, env = "ARGO_DRIFT_EXPLAIN_LIVE_VALUE")]
    pub live_value: Option<String>,
    /// Explain the severity of a whole missing or extra resource instead of a field.
    #[arg(long, env = "ARGO_DRIFT_EXPLAIN_STATUS", value_parser = ["missing", "extra"], conflicts_with = "path")]
    pub status: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Policy file to check.
    #[arg(env = "ARGO_DRIFT_POLICY")]
    pub file: PathBuf,
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn argocd_opts_is_read_as_the_argocd_cli_reads_it() {
        let flags = argocd_opts_flags(
            "--server argocd.example.com:443 --plaintext --auth-token 'tok en' --grpc-web --header=X-A:1",
        )
        .unwrap();
        assert_eq!(flags["server"], "argocd.example.com:443");
        assert_eq!(flags["plaintext"], "true");
        assert_eq!(flags["auth-token"], "tok en");
        assert_eq!(flags["grpc-web"], "true");
        assert_eq!(flags["header"], "X-A:1");
        let err = argocd_opts_flags("s3cret --insecure").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(argocd_opts_flags("--auth-token 'open").is_err());

        let args = |argv: &[&str]| {
            let mut all = vec!["argo-drift", "run"];
            all.extend_from_slice(argv);
            let Command::Run(run) = Args::try_parse_from(all).unwrap().command else {
                unreachable!()
            };
            run.argocd
        };
        let s = args(&[])
            .settings_with("--server argocd:443 --insecure --auth-token t1")
            .unwrap()
            .unwrap();
        assert!(s.insecure && !s.plaintext);
        // Flags given to argo-drift win over ARGOCD_OPTS.
        let s = args(&["--argocd-server", "other:443", "--argocd-token", "t2"])
            .settings_with("--server argocd:443 --auth-token t1")
            .unwrap()
            .unwrap();
        assert_eq!(s.server, "other:443");
        assert!(args(&[]).settings_with("").unwrap().is_none());
    }
}
