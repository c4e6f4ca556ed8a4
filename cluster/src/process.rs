//! What every argo-drift process shares: the global flags, the policy file, and logging.
//! Logging: structured logs to stderr, so stdout stays the report. `--log-format json`
//! gives one JSON object per line (fields, span context) for log pipelines.

use std::path::PathBuf;

use anyhow::Context as _;
use argo_drift_core::Policy;
use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

pub fn init(global: &GlobalArgs) {
    let filter = EnvFilter::try_new(&global.log_level).unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}

#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Log filter (tracing syntax: warn, info, argo_drift_core=debug, ...); logs go to stderr.
    #[arg(long, global = true, env = "ARGO_DRIFT_LOG", default_value = "warn")]
    pub log_level: String,
    /// Log format: text for people, json (one object per line) for log pipelines.
    #[arg(long, global = true, env = "ARGO_DRIFT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Colour in text output: auto (when stdout is a terminal and NO_COLOR is unset), always, never.
    #[arg(long, global = true, env = "ARGO_DRIFT_COLOR", value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Policy file (severity rules, managers, ignoreDifferences); the built-in config/policy.yaml
    /// when not given.
    #[arg(long, env = "ARGO_DRIFT_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

/// The policy named by `--policy`, or the built-in one.
pub fn load_policy(args: &PolicyArgs) -> anyhow::Result<Policy> {
    match &args.policy {
        None => Ok(Policy::builtin()?),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading policy file {}", path.display()))?;
            Ok(Policy::from_yaml(&path.display().to_string(), &text)?)
        }
    }
}
