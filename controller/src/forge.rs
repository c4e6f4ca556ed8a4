//! Pull requests for adopted drift, through a forge's REST API: GitHub (`POST
//! /repos/{owner}/{repo}/pulls`), Gitea and Forgejo (the same request under `/api/v1`), GitLab
//! (`POST /projects/{id}/merge_requests`). The token is read from a file for each request (a
//! mounted Secret can rotate) and never printed: not in errors, not in logs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

/// Which API the forge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Github,
    Gitlab,
    /// Gitea or Forgejo.
    Gitea,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Github => "github",
            Kind::Gitlab => "gitlab",
            Kind::Gitea => "gitea",
        }
    }
}

/// Where adoptions open their pull requests (`run` and `adopt`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ForgeArgs {
    /// Open a pull request for each adoption's branch on this forge: github, gitlab or gitea
    /// (also Forgejo). Only repositories on --forge-url's host get one; others get the branch.
    #[arg(long, env = "ARGO_DRIFT_FORGE", value_name = "KIND")]
    pub forge: Option<Kind>,
    /// The forge's web address (default for github: https://github.com).
    #[arg(long, env = "ARGO_DRIFT_FORGE_URL", value_name = "URL")]
    pub forge_url: Option<String>,
    /// Its REST API, when not where the kind keeps it (github.com: https://api.github.com,
    /// GitHub Enterprise: URL/api/v3, GitLab: URL/api/v4, Gitea: URL/api/v1).
    #[arg(long, env = "ARGO_DRIFT_FORGE_API_URL", value_name = "URL")]
    pub forge_api_url: Option<String>,
    /// A file holding the API token (GitHub: a token that may create pull requests; GitLab:
    /// api scope). Read for each request, never printed.
    #[arg(long, env = "ARGO_DRIFT_FORGE_TOKEN_FILE", value_name = "PATH")]
    pub forge_token_file: Option<PathBuf>,
    /// PEM CA bundle for a forge with a private CA (added to the system's roots).
    #[arg(long, env = "ARGO_DRIFT_FORGE_CA_FILE", value_name = "PATH")]
    pub forge_ca_file: Option<PathBuf>,
}

/// A configured forge.
#[derive(Clone)]
pub struct Forge {
    kind: Kind,
    /// The web address's host, and its path prefix (a forge under `/gitlab`).
    host: String,
    prefix: String,
    api: String,
    token_file: PathBuf,
    http: reqwest::Client,
}

/// A pull (merge) request: its number and web page; `existed`: one for the branch was open
/// already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
    pub existed: bool,
}

impl Forge {
    /// The forge of `args`, `None` without `--forge`.
    pub fn from_args(args: &ForgeArgs) -> anyhow::Result<Option<Forge>> {
        let Some(kind) = args.forge else {
            return Ok(None);
        };
        let web = match (&args.forge_url, kind) {
            (Some(u), _) => u.trim_end_matches('/').to_string(),
            (None, Kind::Github) => "https://github.com".to_string(),
            (None, _) => anyhow::bail!(
                "--forge {} needs --forge-url (its web address)",
                kind.as_str()
            ),
        };
        let parsed = reqwest::Url::parse(&web).with_context(|| format!("--forge-url {web:?}"))?;
        let host = parsed
            .host_str()
            .with_context(|| format!("--forge-url {web:?} has no host"))?
            .to_lowercase();
        let api = match (&args.forge_api_url, kind) {
            (Some(u), _) => u.trim_end_matches('/').to_string(),
            (None, Kind::Github) if host == "github.com" => "https://api.github.com".to_string(),
            (None, Kind::Github) => format!("{web}/api/v3"),
            (None, Kind::Gitlab) => format!("{web}/api/v4"),
            (None, Kind::Gitea) => format!("{web}/api/v1"),
        };
        reqwest::Url::parse(&api).with_context(|| format!("--forge-api-url {api:?}"))?;
        let token_file = args
            .forge_token_file
            .clone()
            .context("--forge needs --forge-token-file (a file holding the API token)")?;
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("argo-drift/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &args.forge_ca_file {
            let pem = std::fs::read(ca)
                .with_context(|| format!("reading --forge-ca-file {}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!("--forge-ca-file {}: not PEM certificates", ca.display())
            })? {
                http = http.add_root_certificate(cert);
            }
        }
        Ok(Some(Forge {
            kind,
            host,
            prefix: parsed.path().trim_matches('/').to_string(),
            api,
            token_file,
            http: http.build().context("building the forge's HTTP client")?,
        }))
    }

    /// The project path (`owner/name`, GitLab `group/sub/name`) of `repo_url` when the
    /// repository is on this forge: HTTPS, `ssh://` and scp-like (`git@host:owner/name.git`)
    /// URLs; the port is not compared (SSH and HTTPS differ).
    pub fn project(&self, repo_url: &str) -> Option<String> {
        let (host, path) = match reqwest::Url::parse(repo_url) {
            Ok(u) if u.host_str().is_some() => (u.host_str()?.to_lowercase(), u.path().to_string()),
            _ => {
                // scp-like: [user@]host:path
                let (left, path) = repo_url.split_once(':')?;
                let host = left.rsplit('@').next()?;
                (host.to_lowercase(), path.to_string())
            }
        };
        if host != self.host {
            return None;
        }
        let path = path.trim_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        let path = match self.prefix.as_str() {
            "" => path,
            prefix => path.strip_prefix(prefix)?.trim_start_matches('/'),
        };
        (path.contains('/')).then(|| path.to_string())
    }

    /// Open a pull request of `head` into `base` (the repository's default branch when
    /// `None`); one already open for `head` is returned as it is.
    pub async fn open_pull_request(
        &self,
        project: &str,
        head: &str,
        base: Option<&str>,
        title: &str,
        body: &str,
    ) -> anyhow::Result<PullRequest> {
        let token = self.token()?;
        let base = match base {
            Some(b) => b.to_string(),
            None => self.default_branch(project, &token).await?,
        };
        let (url, request) = match self.kind {
            Kind::Github | Kind::Gitea => (
                format!("{}/repos/{project}/pulls", self.api),
                json!({"title": title, "head": head, "base": base, "body": body}),
            ),
            Kind::Gitlab => (
                format!("{}/projects/{}/merge_requests", self.api, encode(project)),
                json!({"source_branch": head, "target_branch": base, "title": title,
                       "description": body, "remove_source_branch": true}),
            ),
        };
        // A branch just pushed may not be known to the forge's API yet (Gitea indexes it after
        // the push returns: 404; GitHub may say 422): asked again, a few times.
        let attempt = || async {
            let response = self
                .authorized(self.http.post(&url), &token)
                .json(&request)
                .send()
                .await
                .map_err(|e| Attempt::Final(anyhow::anyhow!("POST {url}: {}", without_url(e))))?;
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return self.pull_request(&answer, false).ok_or_else(|| {
                    Attempt::Final(anyhow::anyhow!(
                        "POST {url}: the forge's answer names no pull request"
                    ))
                });
            }
            // GitHub answers 422 and GitLab and Gitea 409 when one is open for the branch
            // already.
            if status.as_u16() == 409 || status.as_u16() == 422 {
                if let Some(existing) = self
                    .find_open(project, head, &token)
                    .await
                    .map_err(Attempt::Final)?
                {
                    return Ok(existing);
                }
            }
            let e = anyhow::anyhow!(
                "POST {url}: {status}: {}",
                redact(&message(&answer), &token)
            );
            Err(match status.as_u16() {
                404 | 422 => Attempt::Again(e),
                _ => Attempt::Final(e),
            })
        };
        use backon::Retryable as _;
        attempt
            .retry(
                backon::ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_times(5),
            )
            .when(|e| matches!(e, Attempt::Again(_)))
            .await
            .map_err(Attempt::into_inner)
    }

    /// The open pull request of `head`, if any.
    async fn find_open(
        &self,
        project: &str,
        head: &str,
        token: &str,
    ) -> anyhow::Result<Option<PullRequest>> {
        let url = match self.kind {
            Kind::Github | Kind::Gitea => {
                format!(
                    "{}/repos/{project}/pulls?state=open&per_page=100&limit=50",
                    self.api
                )
            }
            Kind::Gitlab => format!(
                "{}/projects/{}/merge_requests?state=opened&source_branch={}",
                self.api,
                encode(project),
                encode(head)
            ),
        };
        let list = self.get(&url, token).await?;
        let found = list.as_array().into_iter().flatten().find(|pr| {
            let branch = match self.kind {
                Kind::Gitlab => &pr["source_branch"],
                _ => &pr["head"]["ref"],
            };
            branch.as_str() == Some(head)
        });
        Ok(found.and_then(|pr| self.pull_request(pr, true)))
    }

    async fn default_branch(&self, project: &str, token: &str) -> anyhow::Result<String> {
        let url = match self.kind {
            Kind::Github | Kind::Gitea => format!("{}/repos/{project}", self.api),
            Kind::Gitlab => format!("{}/projects/{}", self.api, encode(project)),
        };
        let repo = self.get(&url, token).await?;
        repo["default_branch"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("GET {url}: no default_branch in the answer"))
    }

    async fn get(&self, url: &str, token: &str) -> anyhow::Result<Value> {
        let response = self
            .authorized(self.http.get(url), token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {}", without_url(e)))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!("GET {url}: {status}: {}", redact(&message(&answer), token));
        }
        Ok(answer)
    }

    fn pull_request(&self, answer: &Value, existed: bool) -> Option<PullRequest> {
        let (number, url) = match self.kind {
            Kind::Gitlab => (&answer["iid"], &answer["web_url"]),
            _ => (&answer["number"], &answer["html_url"]),
        };
        Some(PullRequest {
            number: number.as_u64()?,
            url: url.as_str()?.to_string(),
            existed,
        })
    }

    fn authorized(&self, request: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
        match self.kind {
            // GitLab's personal, project and group access tokens.
            Kind::Gitlab => request.header("PRIVATE-TOKEN", token),
            Kind::Github => request
                .bearer_auth(token)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28"),
            Kind::Gitea => request.header("Authorization", format!("token {token}")),
        }
    }

    /// The token, read now (a mounted Secret may have been rotated).
    fn token(&self) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(&self.token_file).with_context(|| {
            format!("reading the forge token file {}", self.token_file.display())
        })?;
        let token = text.trim();
        if token.is_empty() {
            anyhow::bail!(
                "the forge token file {} is empty",
                self.token_file.display()
            );
        }
        Ok(token.to_string())
    }
}

/// A failed request: worth asking again (the branch not known yet), or not.
enum Attempt {
    Again(anyhow::Error),
    Final(anyhow::Error),
}

impl Attempt {
    fn into_inner(self) -> anyhow::Error {
        match self {
            Attempt::Again(e) | Attempt::Final(e) => e,
        }
    }
}

/// A path segment, percent-encoded (GitLab's project id `group%2Fname`).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The API's own words: GitHub `message` and `errors[].message`, GitLab `message` (a string,
/// list or map), Gitea `message`.
fn message(answer: &Value) -> String {
    let mut parts = Vec::new();
    match &answer["message"] {
        Value::String(s) => parts.push(s.clone()),
        Value::Null => {}
        other => parts.push(other.to_string()),
    }
    for e in answer["errors"].as_array().into_iter().flatten() {
        match e["message"].as_str() {
            Some(m) => parts.push(m.to_string()),
            None => parts.push(e.to_string()),
        }
    }
    if parts.is_empty() {
        "no message".to_string()
    } else {
        let text = parts.join("; ");
        text.chars().take(500).collect()
    }
}

fn redact(text: &str, token: &str) -> String {
    text.replace(token, "***")
}

/// A transport error without its URL (said by the caller already).
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn forge(kind: Kind, url: Option<&str>) -> Forge {
        Forge::from_args(&ForgeArgs {
            forge: Some(kind),
            forge_url: url.map(str::to_string),
            forge_api_url: None,
            forge_token_file: Some("/nonexistent".into()),
            forge_ca_file: None,
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn repositories_on_the_forge_are_named_by_their_project_path() {
        let gh = forge(Kind::Github, None);
        assert_eq!(gh.api, "https://api.github.com");
        for url in [
            "https://github.com/acme/shop.git",
            "https://github.com/acme/shop",
            "git@github.com:acme/shop.git",
            "ssh://git@github.com:22/acme/shop.git",
        ] {
            assert_eq!(gh.project(url).as_deref(), Some("acme/shop"), "{url}");
        }
        assert_eq!(gh.project("https://gitlab.com/acme/shop.git"), None);
        let gl = forge(Kind::Gitlab, Some("https://git.example.com/gitlab/"));
        assert_eq!(gl.api, "https://git.example.com/gitlab/api/v4");
        assert_eq!(
            gl.project("https://git.example.com/gitlab/platform/apps/shop.git")
                .as_deref(),
            Some("platform/apps/shop")
        );
        assert_eq!(encode("platform/apps/shop"), "platform%2Fapps%2Fshop");
        let ghe = forge(Kind::Github, Some("https://ghe.example.com"));
        assert_eq!(ghe.api, "https://ghe.example.com/api/v3");
        let gitea = forge(Kind::Gitea, Some("http://127.0.0.1:3000"));
        assert_eq!(gitea.api, "http://127.0.0.1:3000/api/v1");
        assert_eq!(
            gitea
                .project("http://127.0.0.1:3000/ops/shop.git")
                .as_deref(),
            Some("ops/shop")
        );
    }

    #[test]
    fn a_misconfigured_forge_is_named_without_its_token() {
        let e = Forge::from_args(&ForgeArgs {
            forge: Some(Kind::Gitlab),
            ..ForgeArgs::default()
        })
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "--forge gitlab needs --forge-url (its web address)"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "\n").unwrap();
        let mut f = forge(Kind::Github, None);
        f.token_file = file;
        assert!(f.token().unwrap_err().to_string().ends_with("is empty"));
        assert_eq!(
            message(
                &json!({"message": "Validation Failed", "errors": [{"message": "No commits between main and x"}]})
            ),
            "Validation Failed; No commits between main and x"
        );
        assert_eq!(redact("bad token s3cret", "s3cret"), "bad token ***");
    }
}
