//! argo-drift's I/O side: the command line, manifests from files and stdin, and the live
//! controller (Kubernetes watches, Git, reports, Events, metrics). The drift logic itself lives in `argo-drift-core`.

pub mod actions;
pub mod admin;
pub mod adopt;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod forge;
pub mod health;
pub mod leader;
pub mod output;
pub mod publish;
pub mod reconcile;
pub mod remediate;
pub mod rollback;
pub mod sources;
pub mod ui_api;

// Where live state comes from (clusters, watches, Argo CD's settings and Applications) and
// where desired state comes from (Git, Argo CD's API) are libraries the hooks share; they are
// re-exported here under the paths the controller's modules use.
pub use argo_drift_cluster::process as telemetry;
pub use argo_drift_cluster::{application, clusters, error, live, metrics, namespaces};
pub use argo_drift_desired::{argocd, repo, sources as desired};

use std::process::ExitCode;

use cli::{Args, Command, NotifyCommand, PolicyCommand};

/// Run one subcommand; errors become exit code 2 in `main`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Diff(diff) => commands::diff::run(&diff, &args.global),
        Command::Policy(PolicyCommand::Explain(explain)) => commands::policy::explain(&explain),
        Command::Policy(PolicyCommand::Validate(validate)) => commands::policy::validate(&validate),
        Command::Run(run) => commands::run::run(&run),
        Command::Notify(NotifyCommand::Test(test)) => commands::notify::test(&test),
        Command::Health(health) => commands::health::run(&health),
        Command::Adopt(adopt) => commands::adopt::run(&adopt),
    }
}

pub(crate) use argo_drift_cluster::lock;
