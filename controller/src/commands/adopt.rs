//! `argo-drift adopt`: the live values of an application's drifted fields written back to Git,
//! on a new branch (see [`crate::adopt`]), and a pull request when a forge is configured.

use std::process::ExitCode;

use anyhow::Context as _;
use argo_drift_core::path::PathPattern;
use argo_drift_core::DriftReport;
use argo_drift_desired::repo::Repos;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, ListParams};

use crate::adopt::{Choice, GitAccess};
use crate::application::{self, Application};
use crate::forge::Forge;

/// Adopt an application's drift into Git.
#[derive(Debug, clap::Args)]
pub struct AdoptArgs {
    /// The Application: NAME (in --control-plane-namespace), NAMESPACE/NAME, or Argo CD's
    /// tracking form NAMESPACE_NAME.
    #[arg(long, env = "ARGO_DRIFT_ADOPT_APP", value_name = "APP")]
    pub app: String,
    /// Only the drifted fields matching these paths or patterns (`spec.replicas`,
    /// `**.containers[*].image`); repeatable. Default: every drifted field of the report.
    #[arg(long = "field", value_name = "PATH")]
    pub fields: Vec<String>,
    #[command(flatten)]
    pub namespaces: crate::cli::NamespaceArgs,
    /// The branch to push (default `argo-drift/adopt/<namespace>/<app>-<time>`); never an
    /// existing one.
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// The commit's author.
    #[arg(
        long,
        env = "ARGO_DRIFT_ADOPT_AUTHOR",
        default_value = "argo-drift <argo-drift@localhost>",
        value_name = "NAME <EMAIL>"
    )]
    pub author: String,
    /// Print the commit message and the changed files, push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the repository is cloned (a temporary directory by default).
    #[arg(long, value_name = "DIR")]
    pub repo_cache: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub forge: crate::forge::ForgeArgs,
}

pub fn run(args: &AdoptArgs) -> anyhow::Result<ExitCode> {
    super::with_kubernetes(
        |config| async move { adopt(config, args, &mut std::io::stdout()).await },
    )
}

/// Adopt, writing what was done to `out`. Public for the tests, which run it in-process.
pub async fn adopt(
    config: kube::Config,
    args: &AdoptArgs,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<ExitCode> {
    // Checked before anything is read or written: a forge that cannot be used is an error now,
    // not after the push.
    let forge = Forge::from_args(&args.forge)?;
    let (author, email) =
        crate::adopt::parse_author(&args.author).map_err(|e| anyhow::anyhow!("--author {e}"))?;
    let client = argo_drift_cluster::connect::client(&config)
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let (namespace, name) =
        application::parse_app_name(&args.app, &args.namespaces.control_plane_namespace);
    let apps: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, &application::api_resource());
    let object = apps
        .get(&name)
        .await
        .with_context(|| format!("reading Application {namespace}/{name}"))?;
    let app = Application::parse(&object)?;
    let reports: Api<ConfigMap> = Api::namespaced(client.clone(), &args.namespaces.state_namespace);
    let report_name = argo_drift_cluster::records::report_name(&namespace, &name);
    let cm = reports.get(&report_name).await.with_context(|| {
        format!(
            "reading the report of {namespace}/{name} (ConfigMap {}/{report_name}): is the app opted in and analysed?",
            args.namespaces.state_namespace
        )
    })?;
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(crate::publish::REPORT_KEY))
        .with_context(|| {
            format!(
                "ConfigMap {report_name} holds no {}",
                crate::publish::REPORT_KEY
            )
        })?;
    let envelope: serde_json::Value = serde_json::from_str(text).with_context(|| {
        format!(
            "ConfigMap {report_name}: {} is not JSON",
            crate::publish::REPORT_KEY
        )
    })?;
    let report: DriftReport = serde_json::from_value(envelope.clone())
        .with_context(|| format!("ConfigMap {report_name}: not a drift report"))?;
    let patterns = args
        .fields
        .iter()
        .map(|f| PathPattern::parse(f).with_context(|| format!("--field {f}")))
        .collect::<anyhow::Result<Vec<_>>>()?;

    // The revision the report was made against: the adopted commit goes on top of it.
    let revision = envelope["revision"]
        .as_str()
        .map(str::to_string)
        .or_else(|| app.synced_revision.clone())
        .or_else(|| app.sources.first().map(|s| app.revision(s)))
        .unwrap_or_else(|| "HEAD".to_string());
    let secrets: Api<Secret> =
        Api::namespaced(client.clone(), &args.namespaces.control_plane_namespace);
    let listed = secrets
        .list(
            &ListParams::default()
                .labels("argocd.argoproj.io/secret-type in (repository,repo-creds)"),
        )
        .await
        .with_context(|| {
            format!(
                "listing Argo CD's repository Secrets in {}",
                args.namespaces.control_plane_namespace
            )
        })?;
    let repo_url = app
        .sources
        .first()
        .map(|s| s.repo_url.clone())
        .unwrap_or_default();
    let access = GitAccess {
        credentials: argo_drift_desired::credentials_for(&listed.items, &repo_url),
        known_hosts: Api::<ConfigMap>::namespaced(
            client.clone(),
            &args.namespaces.control_plane_namespace,
        )
        .get_opt("argocd-ssh-known-hosts-cm")
        .await
        .ok()
        .flatten()
        .and_then(|cm| cm.data?.get("ssh_known_hosts").cloned())
        .unwrap_or_default(),
    };
    // The clone: in --repo-cache, or a temporary directory removed when adopt returns.
    let temporary = tempfile::tempdir().context("creating a temporary directory for the clone")?;
    let clones = args
        .repo_cache
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let repos = Repos::new(clones, std::time::Duration::ZERO, Default::default());
    let origin = format!("argo-drift adopt --app {namespace}/{name}");
    let choice = Choice {
        patterns: &patterns,
        resources: None,
        origin: &origin,
    };
    let Some(proposal) = crate::adopt::prepare(&app, &report, &revision, &choice, &repos, &access)?
    else {
        writeln!(
            out,
            "nothing to adopt: no drifted field of {namespace}/{name} matches"
        )?;
        return Ok(ExitCode::SUCCESS);
    };
    let branch = args.branch.clone().unwrap_or_else(|| {
        format!(
            "argo-drift/adopt/{namespace}/{name}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        )
    });
    if args.dry_run {
        writeln!(
            out,
            "would push branch {branch} to {} on {revision}:\n",
            proposal.repo_url
        )?;
        writeln!(out, "{}", proposal.message)?;
        write!(out, "{}", proposal.diff())?;
        return Ok(ExitCode::SUCCESS);
    }
    let commit = crate::adopt::push(&proposal, &repos, &branch, (&author, &email), &access)?;
    writeln!(out, "{}", proposal.pushed(&branch, commit))?;
    if let Some(forge) = &forge {
        let opened = proposal
            .pull_request(forge, &branch)
            .await
            .with_context(|| {
                format!("the branch {branch} is pushed, but opening its pull request failed")
            })?;
        match opened {
            Some(pr) => writeln!(out, "opened pull request #{}: {}", pr.number, pr.url)?,
            None => writeln!(
                out,
                "no pull request: {} is not on the forge (--forge-url)",
                proposal.repo_url
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
