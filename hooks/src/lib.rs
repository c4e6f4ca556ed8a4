//! argo-drift's Argo CD resource hooks: small binaries Argo CD runs as Jobs around a sync.
//! `presync` analyses what the sync will change and gates it, `postsync` writes the audit
//! record, `syncfail` rolls back. They share the core engine, the Argo CD client and the
//! Kubernetes code with the controller.
//!
//! Exit codes are the contract with Argo CD: 0 done, 1 refused (gate closed, rollback refused
//! by policy), 2 error. Each prints a one-line summary last.

use std::path::PathBuf;
use std::process::ExitCode;

use argo_drift_cluster::process::GlobalArgs;
use argo_drift_desired::argocd::ArgoCdArgs;

pub mod audit;
pub mod postsync;
pub mod presync;
pub mod syncfail;
pub mod target;

/// How a hook ended, besides an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Done(String),
    /// Exit 1: the gate is closed or policy refused the action.
    Refused(String),
}

/// Flags every hook takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The Application (`name`, `namespace/name`, or Argo CD's `namespace_name`); found from
    /// this Pod's Job when absent (plain-YAML apps get no ARGOCD_APP_NAME).
    #[arg(long, env = "APP_NAME", value_name = "APP")]
    pub app: Option<String>,
    /// Argo CD's namespace: where Applications live unless named `namespace/name`, and where
    /// Argo CD keeps its settings and repository Secrets.
    #[arg(
        long,
        env = "ARGO_DRIFT_APP_NAMESPACE",
        default_value = "argocd",
        value_name = "NS"
    )]
    pub app_namespace: String,
    /// argo-drift's own namespace, where the hooks write their records (analyses, audits,
    /// alerts): never among Argo CD's settings.
    #[arg(
        long,
        env = "ARGO_DRIFT_RECORDS_NAMESPACE",
        default_value = "argo-drift",
        value_name = "NS"
    )]
    pub records_namespace: String,
    /// This Pod's name and namespace (downward API), to find the Application from its Job.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub pod_name: Option<String>,
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    pub pod_namespace: Option<String>,
    /// Report what would be done; gate nothing, change nothing.
    #[arg(long, env = "ARGO_DRIFT_DRY_RUN")]
    pub dry_run: bool,
    /// Notifications file (config/notifications.yaml); nothing is sent without it.
    #[arg(long, env = "ARGO_DRIFT_NOTIFICATIONS", value_name = "FILE")]
    pub notifications: Option<PathBuf>,
    /// Records of this hook kept per application.
    #[arg(long, env = "ARGO_DRIFT_KEEP", default_value_t = 50, value_name = "N")]
    pub keep: usize,
    #[command(flatten)]
    pub argocd: ArgoCdArgs,
}

impl Common {
    /// Argo CD's API client, when a server is given (flag, `ARGOCD_SERVER` or `ARGOCD_OPTS`).
    pub fn argocd(&self) -> anyhow::Result<Option<argo_drift_desired::argocd::ArgoCd>> {
        match self.argocd.settings()? {
            Some(s) => Ok(Some(argo_drift_desired::argocd::ArgoCd::new(s)?)),
            None => Ok(None),
        }
    }
}

/// Run a hook: logging set up, a runtime, the summary printed last, the exit code mapped.
pub fn main_with<A, F, Fut>(name: &str, global: &GlobalArgs, args: A, run: F) -> ExitCode
where
    F: FnOnce(A) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Outcome>>,
{
    argo_drift_cluster::process::init(global);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            println!("{name}: error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(Outcome::Done(summary)) => {
            println!("{name}: {summary}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Refused(summary)) => {
            println!("{name}: refused: {summary}");
            ExitCode::from(1)
        }
        Err(e) => {
            println!("{name}: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The JSON text at `pointer`, when it is a non-empty string.
pub fn text<'a>(v: &'a serde_json::Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
}

pub use argo_drift_desired::short;

/// Send `n` now to every channel its routes pick, waiting for each (a hook's process ends
/// right after). Failures are logged and returned as text; they never fail the hook.
/// `source` names the hook in CloudEvents (`/argo-drift/hooks/syncfail`).
pub async fn notify(
    file: Option<&PathBuf>,
    source: &str,
    n: argo_drift_notify::Notification,
) -> Option<String> {
    let path = file?;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    let mut config = match argo_drift_notify::config::Notifications::from_yaml(
        &path.display().to_string(),
        &text,
        &|k| std::env::var(k).ok(),
    ) {
        Ok(c) => c,
        Err(e) => return Some(e.to_string()),
    };
    config.source.get_or_insert_with(|| source.to_string());
    let mut failures = Vec::new();
    for channel in config.channels_for(n.kind, n.severity) {
        if let Err(e) =
            argo_drift_notify::dispatch::send_now(&config, channel, std::slice::from_ref(&n)).await
        {
            tracing::warn!(channel = %channel.name, error = %e, "notification not delivered");
            failures.push(format!("{}: {e}", channel.name));
        }
    }
    (!failures.is_empty()).then(|| failures.join("; "))
}
