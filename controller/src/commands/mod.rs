//! One module per subcommand.

pub mod adopt;
pub mod diff;
pub mod health;
pub mod notify;
pub mod policy;
pub mod run;

pub use argo_drift_cluster::process::load_policy;

/// Run `work` on a multi-threaded runtime of its own, with the Kubernetes configuration
/// (in-cluster, or KUBECONFIG).
pub fn with_kubernetes<F, Fut>(work: F) -> anyhow::Result<std::process::ExitCode>
where
    F: FnOnce(kube::Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<std::process::ExitCode>>,
{
    use anyhow::Context as _;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let config = kube::Config::infer()
            .await
            .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
        work(config).await
    })
}
