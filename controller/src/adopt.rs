//! Adopting drift into Git: the live values of an application's drifted fields written to its
//! Git files on a new branch, with a commit that says what drifted, who changed it and when
//! (from the report's `changedBy` and `firstSeen`). A directory source's files are edited in
//! place, a kustomize source gets a patch (see [`argo_drift_desired::adopt`]); every other byte
//! of each file is kept. Secrets are never adopted. Used by `argo-drift adopt` and by the
//! policy action `adopt` (also the answer to an approval).

use anyhow::Context as _;
use argo_drift_core::path::{FieldPath, PathPattern};
use argo_drift_core::yaml_edit::FieldEdit;
use argo_drift_core::{DriftReport, ResourceKey, Status};
use argo_drift_desired::adopt::{plan, Adoption, Layout};
use argo_drift_desired::repo::{Credentials, RepoFile, Repos};

use crate::application::{Application, SourceKind};

/// What an adoption needs to reach the repository: Argo CD's credentials for it and its SSH
/// known hosts.
pub struct GitAccess {
    pub credentials: Option<Credentials>,
    pub known_hosts: String,
}

/// A commit ready to push: the files it writes on `base`, and what it says.
pub struct Proposal {
    pub repo_url: String,
    /// The revision the report was made against, and its commit: the adoption's parent.
    pub revision: String,
    pub base: git2::Oid,
    /// The source's files at `base` (for a dry run's diff).
    pub before: Vec<RepoFile>,
    pub written: Vec<RepoFile>,
    /// The commit's first line, and the pull request's title.
    pub title: String,
    pub message: String,
    pub fields: usize,
    pub resources: usize,
    /// The branch the app follows (`targetRevision`), when it names one: where a pull request
    /// goes. `None`: HEAD, a tag or a commit (the forge's default branch is asked).
    pub target_branch: Option<String>,
}

impl Proposal {
    /// The paths the commit writes.
    pub fn paths(&self) -> Vec<&str> {
        self.written.iter().map(|(p, _)| p.as_str()).collect()
    }

    /// What was pushed, in words.
    pub fn pushed(&self, branch: &str, commit: git2::Oid) -> String {
        format!(
            "pushed branch {branch} (commit {commit}) to {}: {} field(s) of {} resource(s) in {}",
            self.repo_url,
            self.fields,
            self.resources,
            self.paths().join(", ")
        )
    }

    /// Open the pull request of `branch` on `forge`; `None` when the repository is not on it.
    pub async fn pull_request(
        &self,
        forge: &crate::forge::Forge,
        branch: &str,
    ) -> anyhow::Result<Option<crate::forge::PullRequest>> {
        let Some(project) = forge.project(&self.repo_url) else {
            return Ok(None);
        };
        forge
            .open_pull_request(
                &project,
                branch,
                self.target_branch.as_deref(),
                &self.title,
                &self.message,
            )
            .await
            .map(Some)
    }

    /// A unified diff of every written file against `before`.
    pub fn diff(&self) -> String {
        let mut out = String::new();
        for (path, content) in &self.written {
            let before = self
                .before
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let after = String::from_utf8_lossy(content);
            let diff = similar::TextDiff::from_lines(before.as_str(), after.as_ref());
            out.push_str(
                &diff
                    .unified_diff()
                    .header(&format!("a/{path}"), &format!("b/{path}"))
                    .to_string(),
            );
        }
        out
    }
}

/// What to adopt of a report.
pub struct Choice<'a> {
    /// Only the drifted fields matching these (all without).
    pub patterns: &'a [PathPattern],
    /// Only these resources (all without).
    pub resources: Option<&'a [ResourceKey]>,
    /// Said in the commit message's trailer: `argo-drift adopt --app ns/name`, or the policy's
    /// decision.
    pub origin: &'a str,
}

/// The proposal for `app`'s drift in `report` (made at `revision`), read from the repository
/// with `access`; `None` when no drifted field is chosen. Blocking (Git).
pub fn prepare(
    app: &Application,
    report: &DriftReport,
    revision: &str,
    choice: &Choice<'_>,
    repos: &Repos,
    access: &GitAccess,
) -> anyhow::Result<Option<Proposal>> {
    let (namespace, name) = (&app.namespace, &app.name);
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
    if let Some(tool) = rendered_by.filter(|t| !t.eq_ignore_ascii_case("kustomize")) {
        anyhow::bail!(
            "Application {namespace}/{name} is rendered by {tool}: adopt writes directory and kustomize sources only"
        );
    }
    let (adoptions, lines) = choose(report, choice.patterns, choice.resources)?;
    if adoptions.is_empty() {
        return Ok(None);
    }
    let dir = source.path.trim_matches('/').to_string();
    let (base, files) = repos.files_at(
        &source.repo_url,
        revision,
        &dir,
        access.credentials.as_ref(),
        &access.known_hosts,
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
    let message = commit_message(namespace, name, revision, &lines, choice.origin);
    let target = source.target_revision.trim();
    let target_branch = (!target.is_empty()
        && target != "HEAD"
        && !(target.len() >= 7 && target.chars().all(|c| c.is_ascii_hexdigit())))
    .then(|| target.trim_start_matches("refs/heads/").to_string());
    Ok(Some(Proposal {
        repo_url: source.repo_url.clone(),
        revision: revision.to_string(),
        base,
        before: files,
        written,
        title: message.lines().next().unwrap_or_default().to_string(),
        message,
        fields: lines.len(),
        resources: adoptions.len(),
        target_branch,
    }))
}

/// Push `proposal` as the new branch `branch` by `author` (name, email). Blocking (Git).
pub fn push(
    proposal: &Proposal,
    repos: &Repos,
    branch: &str,
    author: (&str, &str),
    access: &GitAccess,
) -> crate::error::Result<git2::Oid> {
    repos.push_commit(
        &proposal.repo_url,
        proposal.base,
        &proposal.written,
        branch,
        &proposal.message,
        author,
        access.credentials.as_ref(),
        &access.known_hosts,
    )
}

/// `Name <email>`.
pub fn parse_author(text: &str) -> anyhow::Result<(String, String)> {
    let (name, rest) = text
        .split_once('<')
        .with_context(|| format!("{text:?}: expected an author as `Name <email>`"))?;
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

/// The drifted fields to adopt: of modified resources (of `resources` when given), matching
/// `patterns` (all without). A Secret named by a pattern is refused; other Secrets are left
/// out.
fn choose(
    report: &DriftReport,
    patterns: &[PathPattern],
    resources: Option<&[ResourceKey]>,
) -> anyhow::Result<(Vec<Adoption>, Vec<Line>)> {
    let mut adoptions = Vec::new();
    let mut lines = Vec::new();
    for r in report.resources.iter().filter(|r| {
        r.status == Status::Modified && resources.is_none_or(|keys| keys.contains(&r.key()))
    }) {
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

fn commit_message(
    namespace: &str,
    name: &str,
    revision: &str,
    lines: &[Line],
    origin: &str,
) -> String {
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
    text.push_str(&format!("\nAdopted-by: {origin}\n"));
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
    fn fields_are_chosen_by_pattern_and_resource_and_secrets_are_left_out_or_refused() {
        let (all, lines) = choose(&report(), &[], None).unwrap();
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
        let (some, _) = choose(&report(), &image, None).unwrap();
        assert_eq!(some[0].fields.len(), 1);
        assert_eq!(some[0].fields[0].value, Some(serde_json::json!("web:2")));
        let secret = [PathPattern::parse("data.password").unwrap()];
        let e = choose(&report(), &secret, None).err().unwrap();
        assert_eq!(
            e.to_string(),
            "Secret shop/db: a Secret is never adopted into Git"
        );
        // A decision names resources: only those, and a Secret among them is still left out.
        let r = report();
        let keys = [r.resources[1].key()];
        let (none, _) = choose(&r, &[], Some(&keys)).unwrap();
        assert!(none.is_empty());
        let keys = [r.resources[0].key()];
        assert_eq!(choose(&r, &[], Some(&keys)).unwrap().0.len(), 1);
    }

    #[test]
    fn the_commit_message_says_what_from_what_to_what_by_whom_and_since_when() {
        let (_, lines) = choose(&report(), &[], None).unwrap();
        let message = commit_message(
            "argocd",
            "web",
            "abc123",
            &lines,
            "argo-drift adopt --app argocd/web",
        );
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
