//! Desired state from Git: one bare clone per repository URL, shared by every application that
//! uses it, fetched only when the wanted revision is not there yet (or a branch name is older
//! than the refresh interval), and rendered the way Argo CD's *directory* source reads a path.
//!
//! Everything here blocks (libgit2); callers run it on `spawn_blocking`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, FetchOptions, ObjectType, Oid,
    RemoteCallbacks, Repository,
};
use globset::GlobMatcher;
use prometheus_client::metrics::counter::Counter;

use crate::application::{DirectoryOptions, SourceKind};
use crate::error::{Error, Result};

/// Credentials for one repository, as Argo CD keeps them in repository Secrets.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    /// An HTTPS password or token.
    pub password: Option<String>,
    pub ssh_private_key: Option<String>,
    /// Argo CD's `insecure: "true"`: skip the SSH host key check.
    pub insecure: bool,
}

impl std::fmt::Debug for Credentials {
    // Secrets are never printed, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "ssh_private_key",
                &self.ssh_private_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A file of a repository: its path from the root, its content.
pub type RepoFile = (String, Vec<u8>);

/// The manifest files of one application path at one commit.
#[derive(Debug)]
pub struct Rendered {
    pub commit: Oid,
    /// (path inside the repository, contents), in path order.
    pub files: Vec<(String, Vec<u8>)>,
    /// Set when the path holds a Helm chart or a Kustomization (the tool, and the file that
    /// says so): then only Argo CD can render it, and `files` is empty.
    pub tool: Option<(&'static str, String)>,
}

#[derive(Default)]
struct RepoState {
    lock: Arc<Mutex<()>>,
    last_fetch: Option<Instant>,
}

/// A commit's author, time (Unix seconds) and message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    pub commit: String,
    pub author: String,
    pub email: String,
    pub time: i64,
    pub message: String,
}

pub struct Repos {
    root: PathBuf,
    refresh: Duration,
    state: Mutex<HashMap<String, RepoState>>,
    /// Shared with the `git_fetches` metric, so concurrent analyses count each fetch once.
    fetches: Counter,
    /// Per root tree: the first symbolic link leading out of the repository, if any.
    symlink_checks: Mutex<HashMap<git2::Oid, Option<String>>>,
    /// Rendered directories by (repository URL, commit, path, source options).
    rendered: Mutex<HashMap<RenderKey, Arc<Rendered>>>,
    render_hits: std::sync::atomic::AtomicU64,
}

/// Repository URL, commit, path, source options.
type RenderKey = (String, Oid, String, String);

/// How many rendered directories are kept (each holds its files' bytes).
const RENDER_CACHE_ENTRIES: usize = 512;

impl Repos {
    /// `root` holds the clones; a branch or tag is fetched again when its last fetch is older
    /// than `refresh` (a commit is never fetched twice). `fetches` counts every fetch.
    pub fn new(root: PathBuf, refresh: Duration, fetches: Counter) -> Repos {
        Repos {
            root,
            refresh,
            state: Mutex::new(HashMap::new()),
            fetches,
            symlink_checks: Mutex::new(HashMap::new()),
            rendered: Mutex::new(HashMap::new()),
            render_hits: Default::default(),
        }
    }

    /// How many fetches have run: lets tests and metrics see clones being reused.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.get()
    }

    /// One lock per repository: fetches and reads of the same bare clone do not interleave.
    fn lock_for(&self, url: &str) -> Arc<Mutex<()>> {
        let mut state = crate::lock(&self.state);
        state.entry(url.to_string()).or_default().lock.clone()
    }

    /// The bare clone of `url` with `revision` resolved to a commit, fetching when the commit
    /// is not there yet or a branch is older than the refresh interval. Call with its lock held.
    fn open_at(
        &self,
        url: &str,
        revision: &str,
        credentials: Option<&Credentials>,
        known_hosts: &str,
    ) -> Result<(Repository, Oid)> {
        let fail = |source: git2::Error| Error::FetchRepo {
            url: url.to_string(),
            revision: revision.to_string(),
            source: Box::new(source),
        };
        let dir = self.root.join(repo_dir_name(url));
        let repo = match Repository::open_bare(&dir) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(&self.root)
                    .map_err(|e| fail(git2::Error::from_str(&e.to_string())))?;
                Repository::init_bare(&dir).map_err(fail)?
            }
        };
        let stale = {
            let state = crate::lock(&self.state);
            state
                .get(url)
                .and_then(|s| s.last_fetch)
                .is_none_or(|t| t.elapsed() >= self.refresh)
        };
        let commit = match resolve_local(&repo, revision) {
            Some(oid) if is_commit_id(revision) || !stale => oid,
            _ => {
                self.fetch(&repo, url, credentials, known_hosts)
                    .map_err(fail)?;
                resolve_local(&repo, revision).ok_or_else(|| {
                    fail(git2::Error::from_str(
                        "no such branch, tag or commit in the repository",
                    ))
                })?
            }
        };
        Ok((repo, commit))
    }

    /// Who made `revision`, when, and why: for audit records.
    pub fn commit_info(
        &self,
        url: &str,
        revision: &str,
        credentials: Option<&Credentials>,
        known_hosts: &str,
    ) -> Result<CommitInfo> {
        let lock = self.lock_for(url);
        let _guard = crate::lock(&lock);
        let (repo, oid) = self.open_at(url, revision, credentials, known_hosts)?;
        let commit = repo.find_commit(oid).map_err(|source| Error::FetchRepo {
            url: url.to_string(),
            revision: revision.to_string(),
            source: Box::new(source),
        })?;
        let author = commit.author();
        let time = commit.time();
        Ok(CommitInfo {
            commit: oid.to_string(),
            author: author.name().unwrap_or_default().to_string(),
            email: author.email().unwrap_or_default().to_string(),
            time: time.seconds(),
            message: commit.message().unwrap_or_default().trim_end().to_string(),
        })
    }

    /// Read `path` at `revision` as Argo CD's directory source would.
    pub fn render(
        &self,
        url: &str,
        revision: &str,
        path: &str,
        kind: Option<&SourceKind>,
        credentials: Option<&Credentials>,
        known_hosts: &str,
    ) -> Result<Arc<Rendered>> {
        let lock = self.lock_for(url);
        let _guard = crate::lock(&lock);
        let (repo, commit) = self.open_at(url, revision, credentials, known_hosts)?;
        // A commit's files never change: rendered once per (repository, commit, path, options),
        // whichever app and revision name asked for them.
        let key = (
            url.to_string(),
            commit,
            path.trim_matches('/').to_string(),
            format!("{kind:?}"),
        );
        if let Some(hit) = crate::lock(&self.rendered).get(&key).cloned() {
            self.render_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(hit);
        }
        let rendered = Arc::new(self.render_commit(&repo, commit, url, revision, path, kind)?);
        let mut cache = crate::lock(&self.rendered);
        if cache.len() >= RENDER_CACHE_ENTRIES {
            // Old commits are rarely asked for again; start afresh rather than track ages.
            cache.clear();
        }
        cache.insert(key, rendered.clone());
        Ok(rendered)
    }

    /// Every file under `dir` at `revision` (paths from the repository's root), and the
    /// commit: what `adopt` edits.
    pub fn files_at(
        &self,
        url: &str,
        revision: &str,
        dir: &str,
        credentials: Option<&Credentials>,
        known_hosts: &str,
    ) -> Result<(Oid, Vec<RepoFile>)> {
        let lock = self.lock_for(url);
        let _guard = crate::lock(&lock);
        let (repo, commit) = self.open_at(url, revision, credentials, known_hosts)?;
        let fail = |source: git2::Error| Error::FetchRepo {
            url: url.to_string(),
            revision: revision.to_string(),
            source: Box::new(source),
        };
        let tree = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(fail)?;
        let dir = dir.trim_matches('/');
        let mut files = Vec::new();
        let mut failed = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |parent, entry| {
            if entry.kind() != Some(ObjectType::Blob) {
                return git2::TreeWalkResult::Ok;
            }
            let path = format!("{parent}{}", entry.name().unwrap_or_default());
            let inside = dir.is_empty() || dir == "." || path.starts_with(&format!("{dir}/"));
            if inside {
                match repo.find_blob(entry.id()) {
                    Ok(blob) => files.push((path, blob.content().to_vec())),
                    Err(e) => {
                        failed = Some(e);
                        return git2::TreeWalkResult::Abort;
                    }
                }
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(fail)?;
        if let Some(e) = failed {
            return Err(fail(e));
        }
        Ok((commit, files))
    }

    /// A commit on `base` (a commit `files_at` read) with `files` (path, content) written, by
    /// `author` (name, email), pushed to `url` as the new branch `branch` with the repository's
    /// credentials. An existing branch of that name is not overwritten.
    #[allow(clippy::too_many_arguments)]
    pub fn push_commit(
        &self,
        url: &str,
        base: Oid,
        files: &[RepoFile],
        branch: &str,
        message: &str,
        author: (&str, &str),
        credentials: Option<&Credentials>,
        known_hosts: &str,
    ) -> Result<Oid> {
        let lock = self.lock_for(url);
        let _guard = crate::lock(&lock);
        let fail = |source: git2::Error| Error::PushRepo {
            url: url.to_string(),
            branch: branch.to_string(),
            source: Box::new(source),
        };
        let repo = Repository::open_bare(self.root.join(repo_dir_name(url))).map_err(fail)?;
        let parent = repo.find_commit(base).map_err(fail)?;
        let tree = parent.tree().map_err(fail)?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, content) in files {
            let blob = repo.blob(content).map_err(fail)?;
            update.upsert(path.as_str(), blob, git2::FileMode::Blob);
        }
        let tree = update
            .create_updated(&repo, &tree)
            .and_then(|t| repo.find_tree(t))
            .map_err(fail)?;
        let signature = git2::Signature::now(author.0, author.1).map_err(fail)?;
        let commit = repo
            .commit(None, &signature, &signature, message, &tree, &[&parent])
            .map_err(fail)?;
        let local = format!("refs/heads/{branch}");
        // Never onto an existing branch: someone's work, or an adoption under review.
        {
            let refusal = std::cell::RefCell::new(None::<String>);
            let mut remote = repo.remote_anonymous(url).map_err(fail)?;
            let connection = remote
                .connect_auth(
                    git2::Direction::Fetch,
                    Some(remote_callbacks(credentials, known_hosts, &refusal)),
                    None,
                )
                .map_err(|e| match refusal.borrow().as_deref() {
                    Some(message) => fail(git2::Error::from_str(message)),
                    None => fail(e),
                })?;
            if connection
                .list()
                .map_err(fail)?
                .iter()
                .any(|h| h.name() == local)
            {
                return Err(Error::BranchExists {
                    url: url.to_string(),
                    branch: branch.to_string(),
                });
            }
        }
        repo.reference(&local, commit, true, "argo-drift adopt")
            .map_err(fail)?;
        let refusal = std::cell::RefCell::new(None::<String>);
        let rejected = std::cell::RefCell::new(None::<String>);
        let mut callbacks = remote_callbacks(credentials, known_hosts, &refusal);
        callbacks.push_update_reference(|_, status| {
            if let Some(status) = status {
                *rejected.borrow_mut() = Some(status.to_string());
            }
            Ok(())
        });
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(callbacks);
        let mut remote = repo.remote_anonymous(url).map_err(fail)?;
        remote
            .push(&[format!("{local}:{local}")], Some(&mut options))
            .map_err(|e| match refusal.borrow().as_deref() {
                Some(message) => fail(git2::Error::from_str(message)),
                None => fail(e),
            })?;
        drop(remote);
        drop(options);
        if let Some(status) = rejected.borrow().clone() {
            return Err(fail(git2::Error::from_str(&format!(
                "the repository refused the branch: {status}"
            ))));
        }
        Ok(commit)
    }

    /// How many renders were answered from the cache (for tests and benchmarks).
    pub fn render_cache_hits(&self) -> u64 {
        self.render_hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn render_commit(
        &self,
        repo: &Repository,
        commit: Oid,
        url: &str,
        revision: &str,
        path: &str,
        kind: Option<&SourceKind>,
    ) -> Result<Rendered> {
        let render_fail = |message: String| Error::RenderSource {
            url: url.to_string(),
            revision: revision.to_string(),
            path: path.to_string(),
            message,
        };
        let root = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(|e| render_fail(e.message().to_string()))?;
        let tree = root.clone();
        let clean = path.trim_matches('/');
        let tree = if clean.is_empty() || clean == "." {
            tree
        } else {
            let entry = tree
                .get_path(Path::new(clean))
                .map_err(|_| render_fail("the path does not exist in the repository".into()))?;
            entry
                .to_object(repo)
                .and_then(|o| o.peel_to_tree())
                .map_err(|_| render_fail("the path is not a directory".into()))?
        };
        let options = match kind {
            Some(SourceKind::Directory(o)) => o.clone(),
            Some(SourceKind::Rendered(tool)) => {
                return Err(render_fail(format!(
                    "{tool} sources are rendered by Argo CD, not read from Git"
                )))
            }
            None => {
                // Argo CD decides the source type by the files it finds at the path.
                for (file, tool) in [
                    ("Chart.yaml", "Helm"),
                    ("kustomization.yaml", "Kustomize"),
                    ("kustomization.yml", "Kustomize"),
                    ("Kustomization", "Kustomize"),
                ] {
                    if tree.get_name(file).is_some() {
                        return Ok(Rendered {
                            commit,
                            files: Vec::new(),
                            tool: Some((tool, file.to_string())),
                        });
                    }
                }
                DirectoryOptions::default()
            }
        };
        // Argo CD refuses a repository with any link out of it, wherever it is
        // (reposerver/repository checkOutOfBoundsSymlinks on the whole work tree, util/app/path
        // CheckOutOfBoundsSymlinks); checked once per tree.
        let known = crate::lock(&self.symlink_checks).get(&root.id()).cloned();
        let escape = match known {
            Some(escape) => escape,
            None => {
                let escape = out_of_bounds_link(repo, &root, "")
                    .map_err(|e| render_fail(e.message().to_string()))?;
                crate::lock(&self.symlink_checks).insert(root.id(), escape.clone());
                escape
            }
        };
        if let Some(link) = escape {
            return Err(render_fail(format!(
                "repository contains out-of-bounds symlinks: {link}"
            )));
        }
        let globs = Globs::new(&options).map_err(render_fail)?;
        let mut files = Vec::new();
        let walk = Walk {
            repo,
            root: &root,
            base: clean,
            options: &options,
            globs: &globs,
        };
        walk.collect(&tree, "", &mut files)
            .map_err(|e| render_fail(e.message().to_string()))?;
        // Argo CD's directory source evaluates `.jsonnet` files (reposerver/repository
        // findManifests): only Argo CD renders those.
        if let Some((path, _)) = files.iter().find(|(p, _)| p.ends_with(".jsonnet")) {
            return Ok(Rendered {
                commit,
                files: Vec::new(),
                tool: Some(("Jsonnet", path.clone())),
            });
        }
        Ok(Rendered {
            commit,
            files,
            tool: None,
        })
    }

    fn fetch(
        &self,
        repo: &Repository,
        url: &str,
        credentials: Option<&Credentials>,
        known_hosts: &str,
    ) -> std::result::Result<(), git2::Error> {
        // libgit2 replaces a callback's message with its own generic one; keep ours to report.
        let refusal = std::cell::RefCell::new(None::<String>);
        let callbacks = remote_callbacks(credentials, known_hosts, &refusal);
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks);
        options.download_tags(AutotagOption::All);
        let mut remote = repo.remote_anonymous(url)?;
        remote
            .fetch(
                &[
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                    "+HEAD:refs/remotes/origin/HEAD",
                ],
                Some(&mut options),
                None,
            )
            .map_err(|e| match refusal.borrow().as_deref() {
                Some(message) => git2::Error::from_str(message),
                None => e,
            })?;
        self.fetches.inc();
        let mut state = crate::lock(&self.state);
        state.entry(url.to_string()).or_default().last_fetch = Some(Instant::now());
        Ok(())
    }
}

/// The callbacks of a fetch or push: SSH host keys checked against Argo CD's known hosts (a
/// refusal's message kept in `refusal`, as libgit2 replaces it), the repository's credentials
/// offered once.
fn remote_callbacks<'a>(
    credentials: Option<&'a Credentials>,
    known_hosts: &'a str,
    refusal: &'a std::cell::RefCell<Option<String>>,
) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let insecure = credentials.is_some_and(|c| c.insecure);
    callbacks.certificate_check(move |cert, host| {
        // TLS certificates get libgit2's usual verification; SSH host keys are checked
        // against Argo CD's known hosts, as Argo CD does.
        let Some(hostkey) = cert.as_hostkey() else {
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        if insecure {
            return Ok(CertificateCheckStatus::CertificateOk);
        }
        match hostkey.hostkey() {
            Some(key) if known_host(known_hosts, host, key) => {
                Ok(CertificateCheckStatus::CertificateOk)
            }
            _ => {
                let message = format!(
                    "the SSH host key of {host} is not in Argo CD's known hosts (argocd-ssh-known-hosts-cm)"
                );
                *refusal.borrow_mut() = Some(message.clone());
                Err(git2::Error::from_str(&message))
            }
        }
    });
    let mut attempts = 0;
    callbacks.credentials(move |_url, username_from_url, allowed| {
        // libgit2 asks again after a refusal; a second try with the same secret would loop.
        attempts += 1;
        if attempts > 1 {
            return Err(git2::Error::from_str(
                "authentication failed with the repository's credentials",
            ));
        }
        let Some(c) = credentials else {
            return Err(git2::Error::from_str(
                "the repository asks for credentials and none are configured",
            ));
        };
        let user = c.username.as_deref().or(username_from_url).unwrap_or("git");
        if allowed.contains(CredentialType::SSH_KEY) {
            if let Some(key) = &c.ssh_private_key {
                return Cred::ssh_key_from_memory(user, None, key, None);
            }
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if let Some(password) = &c.password {
                return Cred::userpass_plaintext(user, password);
            }
        }
        Err(git2::Error::from_str(
            "no credential of the kind the repository asks for",
        ))
    });
    callbacks
}

/// A stable directory name per URL; credentials in a URL never reach the filesystem.
fn repo_dir_name(url: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    url.hash(&mut h);
    let tail: String = url
        .rsplit('/')
        .next()
        .unwrap_or("repo")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
        .take(40)
        .collect();
    format!("{:016x}-{tail}", h.finish())
}

/// Whether `known_hosts` (OpenSSH format, as in `argocd-ssh-known-hosts-cm`) holds `key` for
/// `host`. Entries for a host on another port (`[host]:2222`) count: libgit2 names the host only.
/// Hashed entries (`|1|...`) are not supported and never match.
pub fn known_host(known_hosts: &str, host: &str, key: &[u8]) -> bool {
    use base64::Engine as _;
    known_hosts.lines().any(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return false;
        }
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(_kind), Some(blob)) = (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        let names_host = hosts.split(',').any(|h| {
            h == host
                || h.strip_prefix('[')
                    .and_then(|rest| rest.split_once("]:"))
                    .is_some_and(|(name, _port)| name == host)
        });
        names_host
            && base64::engine::general_purpose::STANDARD
                .decode(blob)
                .is_ok_and(|decoded| decoded == key)
    })
}

fn is_commit_id(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

fn resolve_local(repo: &Repository, revision: &str) -> Option<Oid> {
    if is_commit_id(revision) {
        let oid = Oid::from_str(revision).ok()?;
        return repo.find_commit(oid).ok().map(|c| c.id());
    }
    let candidates: Vec<String> = if revision.is_empty() || revision == "HEAD" {
        vec!["refs/remotes/origin/HEAD".into()]
    } else {
        vec![
            format!("refs/remotes/origin/{revision}"),
            format!("refs/tags/{revision}"),
            revision.to_string(),
        ]
    };
    candidates.iter().find_map(|name| {
        repo.find_reference(name)
            .ok()
            .and_then(|r| r.peel_to_commit().ok())
            .map(|c| c.id())
    })
}

struct Globs {
    include: Option<GlobMatcher>,
    exclude: Option<GlobMatcher>,
}

impl Globs {
    fn new(options: &DirectoryOptions) -> std::result::Result<Globs, String> {
        let compile = |field: &str,
                       pattern: &Option<String>|
         -> std::result::Result<Option<GlobMatcher>, String> {
            pattern
                .as_deref()
                .map(|p| {
                    globset::Glob::new(p)
                        .map(|g| g.compile_matcher())
                        .map_err(|e| format!("directory.{field} {p:?}: {e}"))
                })
                .transpose()
        };
        Ok(Globs {
            include: compile("include", &options.include)?,
            exclude: compile("exclude", &options.exclude)?,
        })
    }

    /// Argo CD matches both globs against the path relative to the application's path, and `*`
    /// crosses directories there.
    fn admits(&self, relative: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(relative))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(relative))
    }
}

/// A directory source's walk through one commit's tree.
struct Walk<'a> {
    repo: &'a Repository,
    /// The repository's root tree, where symbolic links are resolved.
    root: &'a git2::Tree<'a>,
    /// The application's path in the repository.
    base: &'a str,
    options: &'a DirectoryOptions,
    globs: &'a Globs,
}

impl Walk<'_> {
    fn collect(
        &self,
        tree: &git2::Tree<'_>,
        prefix: &str,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> std::result::Result<(), git2::Error> {
        for entry in tree.iter() {
            let Ok(name) = entry.name() else { continue };
            let relative = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            let full = if self.base.is_empty() || self.base == "." {
                relative.clone()
            } else {
                format!("{}/{relative}", self.base)
            };
            match entry.kind() {
                Some(ObjectType::Tree) if self.options.recurse => {
                    let sub = entry.to_object(self.repo)?.peel_to_tree()?;
                    self.collect(&sub, &relative, out)?;
                }
                Some(ObjectType::Blob) => {
                    // Argo CD's manifestFile pattern: yaml, yml, json, jsonnet.
                    let manifest = [".yaml", ".yml", ".json", ".jsonnet"]
                        .iter()
                        .any(|ext| name.ends_with(ext));
                    if !manifest || !self.globs.admits(&relative) {
                        continue;
                    }
                    let blob = entry.to_object(self.repo)?.peel_to_blob()?;
                    let content = if entry.filemode() == 0o120000 {
                        // A symbolic link: its target's content, as Argo CD reads a linked
                        // file (a link to a directory is not walked, as Go's filepath.Walk
                        // does not).
                        match self.follow(&full, blob.content())? {
                            Some(content) => content,
                            None => continue,
                        }
                    } else {
                        blob.content().to_vec()
                    };
                    out.push((full, content));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The content a symbolic link at `path` (repository-relative) leads to; `None` for a
    /// directory. A link out of the repository is refused, as Argo CD refuses the whole
    /// repository then ("repository contains out-of-bounds symlinks",
    /// util/io/path/resolved.go CheckOutOfBoundsSymlinks).
    fn follow(
        &self,
        path: &str,
        target: &[u8],
    ) -> std::result::Result<Option<Vec<u8>>, git2::Error> {
        let mut path = path.to_string();
        let mut target = String::from_utf8_lossy(target).into_owned();
        for _ in 0..16 {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            let Some(resolved) = resolve_in_repo(dir, &target) else {
                return Err(git2::Error::from_str(&format!(
                    "repository contains out-of-bounds symlinks: {path} -> {target}"
                )));
            };
            let entry = self.root.get_path(Path::new(&resolved)).map_err(|_| {
                git2::Error::from_str(&format!("symbolic link {path} -> {target}: no such file"))
            })?;
            match entry.kind() {
                Some(ObjectType::Tree) => return Ok(None),
                Some(ObjectType::Blob) => {
                    let blob = entry.to_object(self.repo)?.peel_to_blob()?;
                    if entry.filemode() != 0o120000 {
                        return Ok(Some(blob.content().to_vec()));
                    }
                    path = resolved;
                    target = String::from_utf8_lossy(blob.content()).into_owned();
                }
                _ => return Ok(None),
            }
        }
        Err(git2::Error::from_str(&format!(
            "symbolic link {path}: too many levels of links"
        )))
    }
}

/// The first symbolic link anywhere under `tree` whose target leaves the repository, as
/// `path -> target`.
fn out_of_bounds_link(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    prefix: &str,
) -> std::result::Result<Option<String>, git2::Error> {
    for entry in tree.iter() {
        let Ok(name) = entry.name() else { continue };
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        match entry.kind() {
            Some(ObjectType::Tree) => {
                let sub = entry.to_object(repo)?.peel_to_tree()?;
                if let Some(found) = out_of_bounds_link(repo, &sub, &path)? {
                    return Ok(Some(found));
                }
            }
            Some(ObjectType::Blob) if entry.filemode() == 0o120000 => {
                let blob = entry.to_object(repo)?.peel_to_blob()?;
                let target = String::from_utf8_lossy(blob.content()).into_owned();
                if resolve_in_repo(prefix, &target).is_none() {
                    return Ok(Some(format!("{path} -> {target}")));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// `target` (a link's text) read from directory `dir`, as a repository-relative path; `None`
/// when it leaves the repository (absolute, or more `..` than there are directories).
fn resolve_in_repo(dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for step in target.split('/') {
        match step {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn repo_with(files: &[(&str, &str)]) -> (tempfile::TempDir, String, String) {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", "c"]);
        let head = git(dir.path(), &["rev-parse", "HEAD"]);
        let url = format!("file://{}", dir.path().display());
        (dir, url, head)
    }

    #[test]
    fn symbolic_links_in_the_repository_are_followed_and_links_out_of_it_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(root.join("base")).unwrap();
        std::fs::create_dir_all(root.join("app/nested")).unwrap();
        std::fs::write(root.join("base/cm.yaml"), "shared").unwrap();
        std::os::unix::fs::symlink("../base/cm.yaml", root.join("app/cm.yaml")).unwrap();
        // A link to a link, and a link to a directory (not walked, as Go's filepath.Walk).
        std::os::unix::fs::symlink("../cm.yaml", root.join("app/nested/again.yaml")).unwrap();
        std::os::unix::fs::symlink("../base", root.join("app/base.yaml")).unwrap();
        git(root, &["add", "-A"]);
        git(root, &["commit", "-q", "-m", "links"]);
        let head = git(root, &["rev-parse", "HEAD"]);
        let url = format!("file://{}", root.display());
        let cache = tempfile::tempdir().unwrap();
        let repos = Repos::new(
            cache.path().to_path_buf(),
            Duration::from_secs(60),
            Counter::default(),
        );
        let recurse = SourceKind::Directory(DirectoryOptions {
            recurse: true,
            include: None,
            exclude: None,
        });
        let r = repos
            .render(&url, &head, "app", Some(&recurse), None, "")
            .unwrap();
        let files: Vec<(&str, &[u8])> = r
            .files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_slice()))
            .collect();
        assert_eq!(
            files,
            [
                ("app/cm.yaml", &b"shared"[..]),
                ("app/nested/again.yaml", &b"shared"[..])
            ]
        );
        // A link out of the repository anywhere (here beside a README, not a manifest) makes
        // Argo CD refuse the whole repository, so every app of it.
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::os::unix::fs::symlink("../../etc/passwd", root.join("docs/passwd")).unwrap();
        git(root, &["add", "-A"]);
        git(root, &["commit", "-q", "-m", "a link out"]);
        let head = git(root, &["rev-parse", "HEAD"]);
        for path in ["app", "docs"] {
            let err = repos
                .render(&url, &head, path, Some(&recurse), None, "")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("out-of-bounds symlinks: docs/passwd -> ../../etc/passwd"),
                "{err}"
            );
        }
        assert_eq!(resolve_in_repo("a/b", "../c"), Some("a/c".into()));
        assert_eq!(resolve_in_repo("a", "../../c"), None);
        assert_eq!(resolve_in_repo("a", "/etc"), None);
    }

    #[test]
    fn commit_info_names_author_time_and_message() {
        let (_dir, url, head) = repo_with(&[("a.yaml", "a")]);
        let cache = tempfile::tempdir().unwrap();
        let repos = Repos::new(
            cache.path().to_path_buf(),
            Duration::from_secs(60),
            Counter::default(),
        );
        let info = repos.commit_info(&url, "main", None, "").unwrap();
        assert_eq!(info.commit, head);
        assert_eq!(
            (info.author.as_str(), info.email.as_str()),
            ("t", "t@example.com")
        );
        assert_eq!(info.message, "c");
        assert!(info.time > 1_600_000_000);
    }

    fn names(r: &Rendered) -> Vec<&str> {
        r.files.iter().map(|(p, _)| p.as_str()).collect()
    }

    #[test]
    fn a_directory_source_reads_yaml_and_json_with_argo_cds_recurse_include_and_exclude() {
        let (_dir, url, head) = repo_with(&[
            ("app/a.yaml", "a"),
            ("app/b.json", "b"),
            ("app/notes.md", "n"),
            ("app/sub/c.yml", "c"),
            ("app/sub/test/d.yaml", "d"),
            ("other/e.yaml", "e"),
        ]);
        let cache = tempfile::tempdir().unwrap();
        let repos = Repos::new(
            cache.path().to_path_buf(),
            Duration::from_secs(60),
            Counter::default(),
        );
        let dir = |recurse, include: Option<&str>, exclude: Option<&str>| {
            SourceKind::Directory(DirectoryOptions {
                recurse,
                include: include.map(str::to_string),
                exclude: exclude.map(str::to_string),
            })
        };
        let r = repos
            .render(&url, &head, "app", Some(&dir(false, None, None)), None, "")
            .unwrap();
        assert_eq!(names(&r), ["app/a.yaml", "app/b.json"]);
        assert_eq!(r.commit.to_string(), head);
        let r = repos
            .render(&url, &head, "app", Some(&dir(true, None, None)), None, "")
            .unwrap();
        assert_eq!(
            names(&r),
            [
                "app/a.yaml",
                "app/b.json",
                "app/sub/c.yml",
                "app/sub/test/d.yaml"
            ]
        );
        // Globs match the path relative to the app's path, and `*` crosses directories.
        let r = repos
            .render(
                &url,
                &head,
                "app",
                Some(&dir(true, Some("*.{yaml,yml}"), Some("*test/*"))),
                None,
                "",
            )
            .unwrap();
        assert_eq!(names(&r), ["app/a.yaml", "app/sub/c.yml"]);
        // The clone is reused: a commit already there is not fetched again, nor is the branch
        // within the refresh interval.
        let before = repos.fetch_count();
        let by_branch = repos.render(&url, "main", "/app/", None, None, "").unwrap();
        let hits = repos.render_cache_hits();
        let by_commit = repos.render(&url, &head, "app", None, None, "").unwrap();
        assert_eq!(repos.fetch_count(), before);
        // The same commit, path and options, asked by branch and by commit: rendered once.
        assert_eq!(repos.render_cache_hits(), hits + 1);
        assert!(Arc::ptr_eq(&by_branch, &by_commit));
        // Other options are another rendering.
        let other = repos
            .render(
                &url,
                &head,
                "app",
                Some(&dir(false, Some("*.yaml"), None)),
                None,
                "",
            )
            .unwrap();
        assert_eq!(repos.render_cache_hits(), hits + 1);
        assert!(!Arc::ptr_eq(&other, &by_commit));
    }

    /// Argo CD's directory source evaluates `.jsonnet` files: such a directory is Argo CD's to
    /// render, unless its exclude glob leaves the jsonnet out.
    #[test]
    fn a_directory_with_jsonnet_is_left_to_argo_cd() {
        let (_dir, url, head) = repo_with(&[("app/main.jsonnet", "{}"), ("app/cm.yaml", "a")]);
        let cache = tempfile::tempdir().unwrap();
        let repos = Repos::new(
            cache.path().to_path_buf(),
            Duration::from_secs(60),
            Counter::default(),
        );
        let r = repos.render(&url, &head, "app", None, None, "").unwrap();
        assert_eq!(r.tool, Some(("Jsonnet", "app/main.jsonnet".to_string())));
        let r = repos
            .render(
                &url,
                &head,
                "app",
                Some(&SourceKind::Directory(DirectoryOptions {
                    recurse: false,
                    include: None,
                    exclude: Some("*.jsonnet".into()),
                })),
                None,
                "",
            )
            .unwrap();
        assert_eq!(r.tool, None);
        assert_eq!(names(&r), ["app/cm.yaml"]);
    }

    #[test]
    fn errors_name_the_repository_revision_and_path_and_charts_are_recognised() {
        let (_dir, url, head) = repo_with(&[
            ("chart/Chart.yaml", "apiVersion: v2"),
            ("k/kustomization.yaml", ""),
        ]);
        let cache = tempfile::tempdir().unwrap();
        let repos = Repos::new(
            cache.path().to_path_buf(),
            Duration::from_secs(60),
            Counter::default(),
        );
        let r = repos.render(&url, &head, "chart", None, None, "").unwrap();
        assert_eq!(r.tool, Some(("Helm", "Chart.yaml".to_string())));
        assert!(r.files.is_empty());
        let r = repos.render(&url, &head, "k", None, None, "").unwrap();
        assert_eq!(
            r.tool,
            Some(("Kustomize", "kustomization.yaml".to_string()))
        );
        let e = repos
            .render(&url, &head, "nope", None, None, "")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{url} at {head:?}, path \"nope\": the path does not exist in the repository")
        );
        let e = repos
            .render(&url, "no-such-branch", "chart", None, None, "")
            .unwrap_err();
        assert!(
            e.to_string().contains("no such branch, tag or commit"),
            "{e}"
        );
        let e = repos
            .render("file:///nonexistent/repo", "main", "", None, None, "")
            .unwrap_err();
        assert_eq!(e.category(), "fetch_repo");
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let c = Credentials {
            username: Some("bot".into()),
            password: Some("glpat-secret".into()),
            ssh_private_key: Some("-----BEGIN OPENSSH PRIVATE KEY-----".into()),
            insecure: false,
        };
        let text = format!("{c:?}");
        assert!(
            !text.contains("glpat-secret") && !text.contains("BEGIN"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod known_hosts_tests {
    use super::known_host;

    #[test]
    fn known_hosts_match_by_host_with_or_without_a_port_and_by_exact_key() {
        let key = b"\x00\x00\x00\x0bssh-ed25519key";
        use base64::Engine as _;
        let blob = base64::engine::general_purpose::STANDARD.encode(key);
        let file = format!("# Argo CD's known hosts\ngithub.com,gh ssh-ed25519 {blob}\n[127.0.0.1]:2222 ssh-ed25519 {blob} comment\n");
        assert!(known_host(&file, "github.com", key));
        assert!(known_host(&file, "gh", key));
        assert!(known_host(&file, "127.0.0.1", key));
        assert!(!known_host(&file, "gitlab.com", key));
        assert!(!known_host(&file, "github.com", b"another key"));
        assert!(!known_host("", "github.com", key));
    }
}
