//! argo-drift's I/O side: reading manifests from files and stdin, the command line, rendering
//! reports. The drift logic itself lives in `argo-drift-core`.

pub mod cli;
pub mod commands;
pub mod output;
pub mod sources;
pub mod telemetry;

use std::process::ExitCode;

use cli::{Args, Command, PolicyCommand};

/// Run one subcommand; errors become exit code 2 in `main`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Diff(diff) => commands::diff::run(&diff, &args.global),
        Command::Policy(PolicyCommand::Explain(explain)) => commands::policy::explain(&explain),
        Command::Policy(PolicyCommand::Validate(validate)) => commands::policy::validate(&validate),
    }
}
