//! `argo-drift-syncfail`: the SyncFail hook (see `argo_drift_hooks::syncfail`).

use std::process::ExitCode;

use clap::Parser;

use argo_drift_hooks::syncfail::{run, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    let global = args.global.clone();
    argo_drift_hooks::main_with("argo-drift-syncfail", &global, args, run)
}
