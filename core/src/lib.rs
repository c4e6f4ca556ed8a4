//! argo-drift's pure engine: manifests in, classified drift out. No I/O, no clock, no network:
//! every function takes values and returns values, so it can be tested without a cluster.
//!
//! The pipeline: [`manifest`] parses documents into objects with a [`manifest::ResourceKey`];
//! [`normalize`] strips what the server owns and decides what is a default; [`diff`] compares
//! field by field; [`classify`] gives each change a severity by the rules of a [`config::Policy`];
//! [`report`] puts a run together; [`redact`] keeps Secret values out of all of it.

pub mod age;
pub mod agreement;
pub mod argocd_cm;
pub mod audit;
pub mod classify;
pub mod config;
pub mod diff;
pub mod error;
pub mod manifest;
pub mod normalize;
pub mod packed;
pub mod path;
pub mod policy;
pub mod redact;
pub mod report;
pub mod yaml_edit;

pub use classify::{Severity, Status};
pub use config::Policy;
pub use error::{Error, Result};
pub use manifest::{Resource, ResourceKey};
pub use report::{analyse, AnalyseOptions, DriftReport};
