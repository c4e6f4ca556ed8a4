//! One module per subcommand.

pub mod diff;
pub mod health;
pub mod notify;
pub mod policy;
pub mod run;

use anyhow::Context;
use argo_drift_core::Policy;

use crate::cli::PolicyArgs;

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
