//! `argo-drift-postsync`: the PostSync hook (see `argo_drift_hooks::postsync`).

use std::process::ExitCode;

use clap::Parser;

use argo_drift_hooks::postsync::{run, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    let global = args.global.clone();
    argo_drift_hooks::main_with("argo-drift-postsync", &global, args, run)
}
