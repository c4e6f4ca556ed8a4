//! `argo-drift health test|run|configmap`: Argo CD Lua health checks, run as Argo CD runs them.

use std::process::ExitCode;

use anyhow::bail;

use crate::cli::HealthCommand;
use crate::health::{self, Options};

pub fn run(command: &HealthCommand) -> anyhow::Result<ExitCode> {
    match command {
        HealthCommand::Test(args) => {
            let options = Options {
                open_libs: !args.r#override || args.open_libs,
                ..Options::default()
            };
            let results = health::test_dir(&args.dir, options).map_err(anyhow::Error::msg)?;
            let mut failed = 0;
            for r in &results {
                match &r.failure {
                    None => println!("PASS {}", r.name),
                    Some(why) => {
                        failed += 1;
                        println!("FAIL {}: {why}", r.name);
                    }
                }
            }
            println!("{} passed, {failed} failed", results.len() - failed);
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        HealthCommand::Run(args) => {
            let script = std::fs::read_to_string(&args.script)
                .map_err(|e| anyhow::anyhow!("{}: {e}", args.script.display()))?;
            let object = health::load_object(&args.object).map_err(anyhow::Error::msg)?;
            let options = Options {
                open_libs: args.open_libs,
                ..Options::default()
            };
            match health::run(&script, &object, options) {
                Ok(status) => {
                    // `null`: the script returned nil, no health.
                    println!("{}", serde_json::to_string(&status)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => bail!("{}: {e}", args.script.display()),
            }
        }
        HealthCommand::Configmap(args) => {
            let entries = health::configmap_entries(&args.dir).map_err(anyhow::Error::msg)?;
            if entries.is_empty() {
                bail!("{}: no <group>/<Kind>/health.lua found", args.dir.display());
            }
            let map: serde_yaml::Mapping = entries
                .into_iter()
                .map(|(k, v)| (serde_yaml::Value::String(k), serde_yaml::Value::String(v)))
                .collect();
            print!("{}", serde_yaml::to_string(&map)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
