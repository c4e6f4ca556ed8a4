//! `argo-drift-presync`: the PreSync hook (see `argo_drift_hooks::presync`).

use std::process::ExitCode;

use clap::Parser;

use argo_drift_hooks::presync::{run, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    let global = args.global.clone();
    argo_drift_hooks::main_with("argo-drift-presync", &global, args, run)
}
