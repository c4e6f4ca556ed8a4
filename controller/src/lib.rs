//! argo-drift's I/O side: the command line, manifests from files and stdin, and the live
//! controller (Kubernetes watches, Git, reports, Events, metrics). The drift logic itself lives in `argo-drift-core`.

pub mod admin;
pub mod application;
pub mod argocd;
pub mod cli;
pub mod clusters;
pub mod commands;
pub mod desired;
pub mod error;
pub mod health;
pub mod leader;
pub mod live;
pub mod metrics;
pub mod namespaces;
pub mod output;
pub mod publish;
pub mod reconcile;
pub mod remediate;
pub mod repo;
pub mod rollback;
pub mod sources;
pub mod telemetry;

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
    }
}

/// Lock a mutex even if a panic elsewhere poisoned it: a panicking task must not take the
/// controller down with it, and every map behind these locks is updated by single inserts and
/// removes, so it stays consistent.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
