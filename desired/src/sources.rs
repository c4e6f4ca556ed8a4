//! The desired state of an Application: its manifests rendered from Git at a revision (the
//! directory source, read like Argo CD reads it), or, for what only Argo CD renders (Helm,
//! Kustomize, plugins, several sources), its manifests API. Shared by the controller and the
//! hooks.

use std::sync::Arc;

use argo_drift_core::manifest::{parse_source, Resource};
use k8s_openapi::api::core::v1::Secret;

use crate::application::{Application, SourceKind};
use crate::argocd::ArgoCd;
use crate::error::{Error, Result};
use crate::repo::{Credentials, Repos};

/// Where manifests come from.
pub struct Sources<'a> {
    pub repos: Arc<Repos>,
    pub argocd: Option<&'a ArgoCd>,
    /// Argo CD's repository Secrets (`argocd.argoproj.io/secret-type: repository|repo-creds`).
    pub repo_secrets: &'a [Secret],
    /// `ssh_known_hosts` of Argo CD's known-hosts ConfigMap.
    pub known_hosts: String,
}

impl Sources<'_> {
    /// The application's manifests at `revision` (default: what Argo CD last synced, else its
    /// target), and the revision they were read at.
    pub async fn render(
        &self,
        app: &Application,
        revision: Option<&str>,
    ) -> Result<(Vec<Resource>, Option<String>)> {
        let app_name = format!("{}/{}", app.namespace, app.name);
        let needs_argocd = app.sources.len() > 1
            || app
                .sources
                .iter()
                .any(|s| matches!(s.kind, Some(SourceKind::Rendered(_))));
        if needs_argocd {
            return self
                .rendered_by_argocd(
                    app,
                    revision,
                    "multi-source, Helm, Kustomize and plugin sources",
                )
                .await;
        }
        // What Argo CD itself detected: a plugin found by its discovery rules (only the
        // repo-server knows its sidecars), or a tool the files at the path do not show.
        if let Some(tool) = app.source_type.as_deref().filter(|t| *t != "Directory") {
            return self
                .rendered_by_argocd(
                    app,
                    revision,
                    &format!("{tool} sources (status.sourceType)"),
                )
                .await;
        }
        let source = &app.sources[0];
        let revision = revision
            .map(str::to_string)
            .unwrap_or_else(|| app.revision(source));
        let credentials = credentials_for(self.repo_secrets, &source.repo_url);
        let repos = self.repos.clone();
        let (url, path, kind) = (
            source.repo_url.clone(),
            source.path.clone(),
            source.kind.clone(),
        );
        let rev = revision.clone();
        let known_hosts = self.known_hosts.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            repos.render(
                &url,
                &rev,
                &path,
                kind.as_ref(),
                credentials.as_ref(),
                &known_hosts,
            )
        })
        .await
        .map_err(|e| Error::RenderSource {
            url: source.repo_url.clone(),
            revision: revision.clone(),
            path: source.path.clone(),
            message: format!("the Git task failed: {e}"),
        })??;
        if let Some((tool, file)) = &rendered.tool {
            return self
                .rendered_by_argocd(
                    app,
                    Some(&revision),
                    &format!("{tool} sources ({file} at {:?})", source.path),
                )
                .await;
        }
        let mut resources = Vec::new();
        for (path, bytes) in &rendered.files {
            let name = format!(
                "{}@{}:{path}",
                source.repo_url,
                short(&rendered.commit.to_string())
            );
            if !parse_directory_file(&name, path, bytes, &mut resources)? {
                tracing::debug!(app = %app_name, file = %path, "not a manifest: skipped, as Argo CD skips it");
            }
        }
        tracing::debug!(app = %app_name, files = rendered.files.len(), objects = resources.len(), "rendered from Git");
        Ok((resources, Some(rendered.commit.to_string())))
    }

    async fn rendered_by_argocd(
        &self,
        app: &Application,
        revision: Option<&str>,
        what: &str,
    ) -> Result<(Vec<Resource>, Option<String>)> {
        let Some(argocd) = self.argocd else {
            return Err(Error::UnsupportedSource {
            app: format!("{}/{}", app.namespace, app.name),
            message: format!(
                "{what} are rendered by Argo CD; give --argocd-server (and a token) to read its manifests"
            ),
        });
        };
        // The revision Argo CD last synced, so the comparison is with what was applied; several
        // sources have one revision each, which this endpoint takes differently: leave it to Argo CD.
        let revision = revision.or_else(|| {
            app.synced_revision
                .as_deref()
                .filter(|r| app.sources.len() == 1 && !r.is_empty())
        });
        let m = argocd
            .manifests(&app.name, &app.namespace, revision)
            .await?;
        let mut resources = Vec::new();
        for (i, text) in m.manifests.iter().enumerate() {
            let name = format!("argocd:{}/{} manifest {}", app.namespace, app.name, i + 1);
            parse_source(&name, text.as_bytes(), &mut |r| {
                resources.push(r);
                Ok(())
            })?;
        }
        // Argo CD v3.6's server answers with the manifests only (no `revision`) when asked for a
        // revision: the one asked for is then the one read.
        let read = if m.revision.is_empty() {
            revision.map(str::to_string)
        } else {
            Some(m.revision)
        };
        Ok((resources, read))
    }
}

/// The objects of one file of a directory source, added to `out`; `Ok(false)` when the file is
/// skipped. Argo CD skips a YAML file that yields no object and does not look like a manifest
/// (it lacks one of `apiVersion:`, `kind:`, `metadata:`): a values file, a CI config next to the
/// manifests (reposerver/repository/repository.go, getObjsFromYAMLOrJSON). A JSON file, or a
/// YAML file that yielded objects before failing, is an error, as there.
pub fn parse_directory_file(
    name: &str,
    path: &str,
    bytes: &[u8],
    out: &mut Vec<Resource>,
) -> Result<bool> {
    let before = out.len();
    let parsed = parse_source(name, bytes, &mut |r| {
        out.push(r);
        Ok(())
    });
    match parsed {
        Ok(()) => Ok(true),
        Err(e) => {
            let yaml = !path.to_ascii_lowercase().ends_with(".json");
            let looks_like_manifest = [&b"apiVersion:"[..], b"kind:", b"metadata:"]
                .iter()
                .all(|needle| bytes.windows(needle.len()).any(|w| w == *needle));
            if yaml && out.len() == before && !looks_like_manifest {
                Ok(false)
            } else {
                Err(e.into())
            }
        }
    }
}

/// A commit (or revision) as people read it: its first 12 characters.
pub fn short(commit: &str) -> &str {
    // By characters: a revision is any ref name, and a byte index can fall inside one.
    match commit.char_indices().nth(12) {
        Some((end, _)) => &commit[..end],
        None => commit,
    }
}

/// Argo CD's repository Secrets: an exact `repository` match first, then the longest matching
/// `repo-creds` URL prefix (credential templates).
pub fn credentials_for(secrets: &[Secret], url: &str) -> Option<Credentials> {
    let normal = |u: &str| {
        u.trim_end_matches('/')
            .trim_end_matches(".git")
            .to_lowercase()
    };
    let wanted = normal(url);
    let field = |s: &Secret, k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .or_else(|| s.string_data.as_ref().and_then(|d| d.get(k)).cloned())
    };
    let kind_of = |s: &Secret| {
        s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("argocd.argoproj.io/secret-type"))
            .cloned()
            .unwrap_or_default()
    };
    let exact = secrets.iter().find(|s| {
        kind_of(s) == "repository" && field(s, "url").is_some_and(|u| normal(&u) == wanted)
    });
    let chosen = exact.or_else(|| {
        secrets
            .iter()
            .filter(|s| kind_of(s) == "repo-creds")
            .filter_map(|s| field(s, "url").map(|u| (u, s)))
            .filter(|(u, _)| url.starts_with(u.as_str()))
            .max_by_key(|(u, _)| u.len())
            .map(|(_, s)| s)
    })?;
    Some(Credentials {
        username: field(chosen, "username"),
        password: field(chosen, "password"),
        ssh_private_key: field(chosen, "sshPrivateKey"),
        insecure: field(chosen, "insecure").is_some_and(|v| v == "true"),
    })
}

#[cfg(test)]
mod short_tests {
    use super::short;

    #[test]
    fn non_manifest_yaml_is_skipped_as_argo_cd_skips_it() {
        use super::parse_directory_file as parse;
        let mut out = Vec::new();
        // A CI config and a values file next to the manifests: skipped.
        assert!(!parse(
            "r",
            ".gitlab-ci.yml",
            b"stages: [test]\ntest:\n  script: make\n",
            &mut out
        )
        .unwrap());
        assert!(!parse("r", "values.yaml", b"replicas: 3\nimage: nginx\n", &mut out).unwrap());
        assert!(out.is_empty());
        // A manifest with a mistake: an error, naming the file.
        let bad = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n";
        let err = parse("repo@abc:cm.yaml", "cm.yaml", bad, &mut out).unwrap_err();
        assert!(err.to_string().contains("cm.yaml"), "{err}");
        // One good object, then garbage: an error, as in Argo CD.
        let mixed = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nfoo: bar\n";
        assert!(parse("r", "mixed.yaml", mixed, &mut out).is_err());
        // JSON is never skipped.
        assert!(parse("r", "package.json", b"{\"name\": \"x\"}", &mut Vec::new()).is_err());
        let good = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n";
        let mut out = Vec::new();
        assert!(parse("r", "cm.yaml", good, &mut out).unwrap());
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_revision_is_shortened_by_characters() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("v1"), "v1");
        assert_eq!(short("release/ünïcödé-ß-2026"), "release/ünïc");
    }
}
