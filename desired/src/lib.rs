//! Where argo-drift's desired state comes from, for the controller and the hooks alike: Git,
//! read as Argo CD reads it (`repo`), and Argo CD's API (`argocd`: the manifests it rendered,
//! its own diff, and the actions argo-drift asks of it). `sources` picks between them per
//! application source.

pub mod adopt;
pub mod argocd;
pub mod repo;
pub mod sources;

pub use sources::{credentials_for, short, Sources};

// The shared error type and Application model, under the paths this crate's modules use.
pub(crate) use argo_drift_cluster::{application, error, lock};
