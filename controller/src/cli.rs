//! Command-line arguments (clap derive). Every flag can also come from an `ARGO_DRIFT_*`
//! environment variable.

use std::path::PathBuf;

use argo_drift_core::Severity;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "argo-drift",
    version,
    about = "Find, classify and explain drift between Git and a Kubernetes cluster, beside Argo CD",
    long_about = None,
)]
pub struct Args {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Log filter (tracing syntax: warn, info, argo_drift_core=debug, ...); logs go to stderr.
    #[arg(long, global = true, env = "ARGO_DRIFT_LOG", default_value = "warn")]
    pub log_level: String,
    /// Colour in text output: auto (when stdout is a terminal and NO_COLOR is unset), always, never.
    #[arg(long, global = true, env = "ARGO_DRIFT_COLOR", value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compare desired manifests (Git) with live objects (`kubectl get -o yaml` dumps), offline.
    ///
    /// Exit code: 0 in sync (or drift below --fail-on), 1 drift at or above --fail-on, 2 error.
    Diff(DiffArgs),
    /// Inspect and check severity policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Policy file (severity rules, managers, ignoreDifferences); the built-in config/policy.yaml
    /// when not given.
    #[arg(long, env = "ARGO_DRIFT_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// Desired manifests: files or directories (recursive: *.yaml, *.yml, *.json), or - for stdin.
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', env = "ARGO_DRIFT_DESIRED", value_name = "PATH")]
    pub desired: Vec<PathBuf>,
    /// Live objects, as the API server returns them: files, directories or - for stdin.
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', env = "ARGO_DRIFT_LIVE", value_name = "PATH")]
    pub live: Vec<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Namespace for namespaced objects that name none.
    #[arg(
        long,
        short = 'n',
        env = "ARGO_DRIFT_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,
    /// Output format.
    #[arg(long, short = 'o', env = "ARGO_DRIFT_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Exit 1 only when some drift is at least this severe (none, info, low, medium, high, critical).
    #[arg(long, env = "ARGO_DRIFT_FAIL_ON", default_value = "info", value_parser = parse_severity)]
    pub fail_on: Severity,
    /// Count as extra only live objects tracked by this Argo CD application (any app otherwise).
    #[arg(long, env = "ARGO_DRIFT_APP")]
    pub app: Option<String>,
    /// Also give a unified diff of each modified object (in text, JSON and YAML output).
    #[arg(long, env = "ARGO_DRIFT_SHOW_DIFF")]
    pub show_diff: bool,
    /// In text output, also list resources that are in sync.
    #[arg(long, env = "ARGO_DRIFT_SHOW_SYNCED")]
    pub show_synced: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show which rule gives a field its severity, and why earlier rules did not match.
    Explain(ExplainArgs),
    /// Check a policy file; exit 0 when valid, 1 when not (with the file, key and problem).
    Validate(ValidateArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Kind of the object (Deployment, Secret, ...).
    #[arg(long, env = "ARGO_DRIFT_EXPLAIN_KIND")]
    pub kind: String,
    /// API group of the kind ("" for the core group); guessed for well-known kinds when omitted.
    #[arg(long, env = "ARGO_DRIFT_EXPLAIN_GROUP")]
    pub group: Option<String>,
    /// Field path, e.g. spec.template.spec.containers[name=web].image. Omit with --status
    /// missing or extra.
    #[arg(
        long,
        env = "ARGO_DRIFT_EXPLAIN_PATH",
        required_unless_present = "status"
    )]
    pub path: Option<String>,
    /// What happened to live: add (live has it, Git not), remove, replace.
    #[arg(long, env = "ARGO_DRIFT_EXPLAIN_OP", default_value = "replace", value_parser = ["add", "remove", "replace"])]
    pub op: String,
    /// The live value, as JSON or a bare string (rules such as run-as-root look at it).
    #[arg(long, env = "ARGO_DRIFT_EXPLAIN_LIVE_VALUE")]
    pub live_value: Option<String>,
    /// Explain the severity of a whole missing or extra resource instead of a field.
    #[arg(long, env = "ARGO_DRIFT_EXPLAIN_STATUS", value_parser = ["missing", "extra"], conflicts_with = "path")]
    pub status: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Policy file to check.
    #[arg(env = "ARGO_DRIFT_POLICY")]
    pub file: PathBuf,
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Args::command().debug_assert();
    }
}
