//! `argo-drift`: parse arguments, set up logging, run the subcommand, map the outcome to an exit
//! code (0 in sync, 1 drift at or above the threshold, 2 error).

use std::process::ExitCode;

use clap::Parser;

use argo_drift_controller::cli::Args;

/// See controller/Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    argo_drift_controller::telemetry::init(&args.global);
    match argo_drift_controller::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
