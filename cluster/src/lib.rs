//! argo-drift's one way in to the clusters, for the controller and the hooks alike: where live
//! state comes from. Argo CD's cluster registry (its cluster Secrets) and one client, discovery
//! cache and set of shared watches per cluster; one-shot reads for the short-lived hooks; Argo
//! CD's settings and Applications as Argo CD reads them; and argo-drift's own records. The drift
//! logic itself stays pure, in `argo-drift-core`.

pub mod application;
pub mod clusters;
pub mod connect;
pub mod discovery;
pub mod error;
pub mod live;
pub mod metrics;
pub mod namespaces;
pub mod process;
pub mod records;
pub mod settings;

/// Lock a mutex even if a panic elsewhere poisoned it: a panicking task must not take the
/// process down with it, and every map behind these locks is updated by single inserts and
/// removes, so it stays consistent.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
