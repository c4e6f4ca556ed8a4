//! One module per subcommand.

pub mod diff;
pub mod health;
pub mod notify;
pub mod policy;
pub mod run;

pub use argo_drift_cluster::process::load_policy;
