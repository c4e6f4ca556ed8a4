//! `argo-drift adopt`: the live values of an application's drifted fields written back to Git,
//! on a new branch, with a commit that says what drifted, who changed it and when (from the
//! report's `changedBy` and `firstSeen`). A directory source's files are edited in place, a
//! kustomize source gets a patch (see [`argo_drift_desired::adopt`]); every other byte of each
//! file is kept. Secrets are never adopted.

use std::process::ExitCode;

use anyhow::Context as _;
use argo_drift_core::path::{FieldPath, PathPattern};
use argo_drift_core::yaml_edit::FieldEdit;
use argo_drift_core::{DriftReport, Status};
use argo_drift_desired::adopt::{plan, Adoption, Layout};
use argo_drift_desired::repo::Repos;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, ListParams};

use crate::application::{self, Application, SourceKind};

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
    /// The branch to push (default `argo-drift/adopt/<app>-<time>`); never an existing one.
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
    let [source] = app.sources.as_slice() else {
        anyhow::bail!(
            "Application {namespace}/{name} has {} sources: adopt handles one Git source",
            app.sources.len()
        );
    };
    let rendered_by = match &source.kind {
        Some(SourceKind::Rendered(tool)) => Some(*tool),
        _ => app
            .source_type
            .as_deref()
            .filter(|t| *t == "Helm" || *t == "Plugin"),
    };
    if rendered_by.is_some_and(|t| !t.eq_ignore_ascii_case("kustomize")) {
        anyhow::bail!(
            "Application {namespace}/{name} is rendered by {}: adopt writes directory and kustomize sources only",
            rendered_by.unwrap_or_default()
        );
    }
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
    let (adoptions, lines) = choose(&report, &patterns)?;
    if adoptions.is_empty() {
        writeln!(
            out,
            "nothing to adopt: no drifted field of {namespace}/{name} matches"
        )?;
        return Ok(ExitCode::SUCCESS);
    }

    // The revision the report was made against: the adopted commit goes on top of it.
    let revision = envelope["revision"]
        .as_str()
        .map(str::to_string)
        .or_else(|| app.synced_revision.clone())
        .unwrap_or_else(|| app.revision(source));
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
    let credentials = argo_drift_desired::credentials_for(&listed.items, &source.repo_url);
    let known_hosts =
        Api::<ConfigMap>::namespaced(client.clone(), &args.namespaces.control_plane_namespace)
            .get_opt("argocd-ssh-known-hosts-cm")
            .await
            .ok()
            .flatten()
            .and_then(|cm| cm.data?.get("ssh_known_hosts").cloned())
            .unwrap_or_default();
    // The clone: in --repo-cache, or a temporary directory removed when adopt returns.
    let temporary = tempfile::tempdir().context("creating a temporary directory for the clone")?;
    let clones = args
        .repo_cache
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let repos = Repos::new(clones, std::time::Duration::ZERO, Default::default());
    let dir = source.path.trim_matches('/').to_string();
    let (base, files) = repos.files_at(
        &source.repo_url,
        &revision,
        &dir,
        credentials.as_ref(),
        &known_hosts,
    )?;
    let kustomization = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|f| {
            if dir.is_empty() {
                f.to_string()
            } else {
                format!("{dir}/{f}")
            }
        })
        .find(|p| files.iter().any(|(path, _)| path == p));
    let layout = match (&source.kind, kustomization) {
        (Some(SourceKind::Directory(_)), _) | (None, None) => Layout::Directory,
        (_, Some(k)) => Layout::Kustomize { kustomization: k },
        (Some(SourceKind::Rendered(_)), None) => anyhow::bail!(
            "{namespace}/{name}: a kustomize source without a kustomization file under {dir:?}"
        ),
    };
    let written = plan(&files, &dir, &layout, &adoptions)?;
    let message = commit_message(&namespace, &name, &revision, &lines);
    let branch = args.branch.clone().unwrap_or_else(|| {
        format!(
            "argo-drift/adopt/{name}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        )
    });
    let paths: Vec<String> = written.iter().map(|(p, _)| p.clone()).collect();
    if args.dry_run {
        writeln!(
            out,
            "would push branch {branch} to {} on {revision}:\n",
            source.repo_url
        )?;
        writeln!(out, "{message}")?;
        for (path, content) in &written {
            let before = files
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let after = String::from_utf8_lossy(content);
            let diff = similar::TextDiff::from_lines(before.as_str(), after.as_ref());
            write!(
                out,
                "{}",
                diff.unified_diff()
                    .header(&format!("a/{path}"), &format!("b/{path}"))
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (author, email) = parse_author(&args.author)?;
    let commit = repos.push_commit(
        &source.repo_url,
        base,
        &written,
        &branch,
        &message,
        (&author, &email),
        credentials.as_ref(),
        &known_hosts,
    )?;
    writeln!(
        out,
        "pushed branch {branch} (commit {commit}) to {}: {} field(s) of {} resource(s) in {}",
        source.repo_url,
        lines.len(),
        adoptions.len(),
        paths.join(", ")
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `Name <email>`.
fn parse_author(text: &str) -> anyhow::Result<(String, String)> {
    let (name, rest) = text
        .split_once('<')
        .with_context(|| format!("--author {text:?}: expected `Name <email>`"))?;
    let email = rest.trim_end().trim_end_matches('>');
    Ok((name.trim().to_string(), email.trim().to_string()))
}

/// One adopted field, as the commit message tells it.
struct Line {
    resource: String,
    field: String,
    desired: Option<serde_json::Value>,
    live: Option<serde_json::Value>,
    by: Option<String>,
    when: Option<String>,
    since: Option<String>,
}

/// The drifted fields to adopt: of modified resources, matching `patterns` (all without).
/// A Secret named by a pattern is refused; other Secrets are left out.
fn choose(
    report: &DriftReport,
    patterns: &[PathPattern],
) -> anyhow::Result<(Vec<Adoption>, Vec<Line>)> {
    let mut adoptions = Vec::new();
    let mut lines = Vec::new();
    for r in report
        .resources
        .iter()
        .filter(|r| r.status == Status::Modified)
    {
        let mut fields = Vec::new();
        for c in &r.changes {
            let path = FieldPath::parse(&c.field)
                .with_context(|| format!("{}: field {}", r.key(), c.field))?;
            if !patterns.is_empty() && !patterns.iter().any(|p| p.matches(&path)) {
                continue;
            }
            if r.kind == "Secret" && r.group.is_empty() {
                if !patterns.is_empty() {
                    anyhow::bail!("{}: a Secret is never adopted into Git", r.key());
                }
                continue;
            }
            fields.push(FieldEdit {
                path,
                value: c.live.clone(),
            });
            lines.push(Line {
                resource: r.key().to_string(),
                field: c.field.clone(),
                desired: c.desired.clone(),
                live: c.live.clone(),
                by: argo_drift_core::audit::ChangedBy::with_manager(
                    c.changed_by.as_deref(),
                    c.manager.as_deref(),
                ),
                when: c
                    .changed_by
                    .as_ref()
                    .map(|b| b.time.clone())
                    .or_else(|| c.time.clone()),
                since: c.first_seen.clone(),
            });
        }
        if fields.is_empty() {
            continue;
        }
        let api_version = if r.group.is_empty() {
            r.version.clone()
        } else {
            format!("{}/{}", r.group, r.version)
        };
        adoptions.push(Adoption {
            api_version,
            kind: r.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            fields,
        });
    }
    Ok((adoptions, lines))
}

fn commit_message(namespace: &str, name: &str, revision: &str, lines: &[Line]) -> String {
    let show = |v: &Option<serde_json::Value>| {
        v.as_ref().map_or("(absent)".to_string(), |v| v.to_string())
    };
    let mut text = format!(
        "argo-drift: adopt live drift of {namespace}/{name} into Git\n\n\
         The live cluster differed from Git (at {revision}) in {} field(s); this commit writes\n\
         the live values, so that the next sync keeps them instead of reverting them.\n",
        lines.len()
    );
    let mut resource = "";
    for l in lines {
        if l.resource != resource {
            text.push_str(&format!("\n{}:\n", l.resource));
            resource = &l.resource;
        }
        text.push_str(&format!(
            "- {}: {} -> {}",
            l.field,
            show(&l.desired),
            show(&l.live)
        ));
        let mut about = Vec::new();
        if let Some(by) = &l.by {
            about.push(format!("changed by {by}"));
        }
        if let Some(when) = &l.when {
            about.push(format!("at {when}"));
        }
        if let Some(since) = &l.since {
            about.push(format!("drifted since {since}"));
        }
        if !about.is_empty() {
            text.push_str(&format!(" ({})", about.join(", ")));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "\nAdopted-by: argo-drift adopt --app {namespace}/{name}\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn report() -> DriftReport {
        serde_json::from_value(serde_json::json!({
            "summary": {"resources": 3, "synced": 0, "modified": 2, "missing": 1, "extra": 0, "severity": "high"},
            "resources": [
                {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop", "name": "web",
                 "status": "modified", "severity": "high", "changes": [
                    {"path": "/spec/replicas", "field": "spec.replicas", "op": "replace", "desired": 2, "live": 5,
                     "severity": "low", "rule": "r", "manager": "kubectl-scale", "attribution": "exact",
                     "time": "2026-12-07T10:00:05Z", "firstSeen": "2026-12-07T10:00:06Z"},
                    {"path": "/spec/template/spec/containers/0/image", "field": "spec.template.spec.containers[name=web].image",
                     "op": "replace", "desired": "web:1", "live": "web:2", "severity": "high", "rule": "r",
                     "manager": "kubectl-set", "attribution": "exact"}]},
                {"group": "", "version": "v1", "kind": "Secret", "namespace": "shop", "name": "db",
                 "status": "modified", "severity": "high", "changes": [
                    {"path": "/data/password", "field": "data.password", "op": "replace", "desired": "+++",
                     "live": "++++", "severity": "high", "rule": "r", "manager": "kubectl-edit", "attribution": "exact"}]},
                {"group": "", "version": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "gone",
                 "status": "missing", "severity": "medium", "changes": []}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn fields_are_chosen_by_pattern_and_secrets_are_left_out_or_refused() {
        let (all, lines) = choose(&report(), &[]).unwrap();
        assert_eq!(
            all.len(),
            1,
            "the Secret and the missing resource are not adopted"
        );
        assert_eq!(
            (all[0].api_version.as_str(), all[0].fields.len()),
            ("apps/v1", 2)
        );
        assert_eq!(lines.len(), 2);
        let image = [PathPattern::parse("**.image").unwrap()];
        let (some, _) = choose(&report(), &image).unwrap();
        assert_eq!(some[0].fields.len(), 1);
        assert_eq!(some[0].fields[0].value, Some(serde_json::json!("web:2")));
        let secret = [PathPattern::parse("data.password").unwrap()];
        let e = choose(&report(), &secret).err().unwrap();
        assert_eq!(
            e.to_string(),
            "Secret shop/db: a Secret is never adopted into Git"
        );
    }

    #[test]
    fn the_commit_message_says_what_from_what_to_what_by_whom_and_since_when() {
        let (_, lines) = choose(&report(), &[]).unwrap();
        let message = commit_message("argocd", "web", "abc123", &lines);
        assert_eq!(
            message,
            "argo-drift: adopt live drift of argocd/web into Git\n\n\
             The live cluster differed from Git (at abc123) in 2 field(s); this commit writes\n\
             the live values, so that the next sync keeps them instead of reverting them.\n\n\
             Deployment.apps shop/web:\n\
             - spec.replicas: 2 -> 5 (changed by kubectl-scale, at 2026-12-07T10:00:05Z, drifted since 2026-12-07T10:00:06Z)\n\
             - spec.template.spec.containers[name=web].image: \"web:1\" -> \"web:2\" (changed by kubectl-set)\n\n\
             Adopted-by: argo-drift adopt --app argocd/web\n"
        );
        assert_eq!(
            parse_author("Ops Bot <ops@example.com>").unwrap(),
            ("Ops Bot".to_string(), "ops@example.com".to_string())
        );
        assert!(parse_author("no email").is_err());
    }
}
