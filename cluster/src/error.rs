//! What can go wrong while watching and analysing an application, with a short category for
//! metric labels and Event reasons, and whether retrying can help.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Application {app}: {message}")]
    InvalidApplication { app: String, message: String },
    #[error("Application {app}: {message}")]
    UnsupportedSource { app: String, message: String },
    /// A setting of Argo CD's that Argo CD could not read either.
    #[error("Argo CD settings {configmap}: {key}: {message}")]
    ArgoCdSettings {
        configmap: String,
        key: String,
        message: String,
    },
    #[error("fetching {url} at {revision:?}: {source}")]
    FetchRepo {
        url: String,
        revision: String,
        #[source]
        /// git2's error (kept as a source; this crate does not link Git).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("pushing branch {branch:?} to {url}: {source}")]
    PushRepo {
        url: String,
        branch: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The branch exists in the repository already: someone's work, or an adoption proposed
    /// before (its name is the drift's).
    #[error("pushing branch {branch:?} to {url}: the branch exists already in the repository")]
    BranchExists { url: String, branch: String },
    #[error("{url} at {revision:?}, path {path:?}: {message}")]
    RenderSource {
        url: String,
        revision: String,
        path: String,
        message: String,
    },
    #[error(transparent)]
    Manifest(#[from] argo_drift_core::Error),
    /// The API server's message is the whole story: the client error is kept (not as a
    /// `source`, whose chain would print the full Status dump after it).
    #[error("Kubernetes API, {context}: {}", describe(cause))]
    Kube { context: String, cause: kube::Error },
    #[error("Lease {lease}: {message}")]
    Lease { lease: String, message: String },
    #[error("{api_version} {kind} is not served by the cluster: {message}")]
    Discover {
        api_version: String,
        kind: String,
        message: String,
    },
    #[error("Argo CD API {path}: {message}")]
    ArgoCd {
        path: String,
        status: Option<u16>,
        /// Argo CD's gRPC code, when it sent one (9: failed precondition, 16: unauthenticated).
        code: Option<i32>,
        message: String,
    },
    #[error("waiting for the watch on {what}: not synced after {seconds} s{}", last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    WatchNotReady {
        what: String,
        seconds: u64,
        last_error: Option<String>,
    },
    /// argo-drift may not write the application's report (in its own namespace) or its Events
    /// (in the application's namespace).
    #[error("argo-drift may not write the report of an application of namespace {namespace} in its own namespace, or its Events in {namespace} (bind ClusterRole argo-drift-report there: deploy/README.md); the application is not analysed and nothing is done")]
    ReportForbidden { namespace: String },
    /// The destination does not name a cluster Argo CD knows (Argo CD's own words).
    #[error("destination: {message}")]
    Destination { message: String },
    /// A cluster Secret argo-drift cannot turn into a client (invalid, or an auth kind it does
    /// not support). Never quotes the Secret's values.
    #[error("cluster {cluster} (Secret {secret}): {message}")]
    ClusterConfig {
        cluster: String,
        secret: String,
        message: String,
    },
    /// The destination cluster does not answer, or refuses the credentials: nothing was compared
    /// and no action taken.
    #[error("cluster {cluster} ({server}) is {state}: {reason}; live state not compared, no action taken")]
    ClusterUnavailable {
        cluster: String,
        server: String,
        /// `unreachable` or `unauthorised`.
        state: &'static str,
        reason: String,
    },
}

impl Error {
    pub fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |cause| Error::Kube { context, cause }
    }

    /// A short, stable name: a metric label and an Event reason suffix.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidApplication { .. } => "invalid_application",
            Error::UnsupportedSource { .. } => "unsupported_source",
            Error::ArgoCdSettings { .. } => "argocd_settings",
            Error::FetchRepo { .. } => "fetch_repo",
            Error::PushRepo { .. } | Error::BranchExists { .. } => "push_repo",
            Error::RenderSource { .. } => "render_source",
            Error::Manifest(e) => e.category(),
            Error::Kube { .. } => "kube_api",
            Error::Lease { .. } => "lease",
            Error::Discover { .. } => "discovery",
            Error::ArgoCd { .. } => "argocd_api",
            Error::WatchNotReady { .. } => "watch_not_ready",
            Error::ReportForbidden { .. } => "report_forbidden",
            Error::Destination { .. } => "destination",
            Error::ClusterConfig { .. } => "cluster_config",
            Error::ClusterUnavailable { state, .. } => match *state {
                "unauthorised" => "cluster_unauthorised",
                _ => "cluster_unreachable",
            },
        }
    }

    /// Whether trying again later can succeed without anyone changing the Application or Git:
    /// network and API failures can; a malformed spec or manifest waits for a change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::FetchRepo { .. }
                | Error::Kube { .. }
                | Error::Discover { .. }
                | Error::ArgoCd { .. }
                | Error::WatchNotReady { .. }
                | Error::ClusterUnavailable { .. }
        )
    }
}

/// The API server's own message and code, without the full `Status` debug dump.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}
