//! Reading manifests from the filesystem and stdin: files, directories (recursive) and `-`.
//! Each object is prepared (server-owned fields dropped) as soon as it is parsed, so a large live
//! dump is never held twice.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use argo_drift_core::manifest::parse_source;
use argo_drift_core::normalize::{prepare, Prepared, TrackingKeys};

/// How deep a directory walk may go: a guard against symlink loops.
const MAX_DEPTH: usize = 64;

/// Load and prepare every object under `paths`, handing each to `sink` as soon as it is parsed.
/// `role` ("desired", "live") names the set in errors; `stdin_taken` makes sure `-` is read once
/// across all sets. Returns how many objects were read.
pub fn for_each(
    paths: &[PathBuf],
    role: &str,
    tracking: &TrackingKeys,
    stdin_taken: &mut bool,
    sink: &mut dyn FnMut(Prepared) -> argo_drift_core::Result<()>,
) -> anyhow::Result<usize> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            if *stdin_taken {
                bail!("- (stdin) is given more than once; it can be read only once");
            }
            *stdin_taken = true;
            files.push(None);
            continue;
        }
        let meta =
            std::fs::metadata(path).with_context(|| format!("{role} path {}", path.display()))?;
        if meta.is_dir() {
            let before = files.len();
            walk(path, &mut files, 0)
                .with_context(|| format!("reading {role} directory {}", path.display()))?;
            if files.len() == before {
                bail!(
                    "{role} directory {} holds no *.yaml, *.yml or *.json file",
                    path.display()
                );
            }
        } else {
            files.push(Some(path.clone()));
        }
    }
    let mut count = 0;
    for file in files {
        let (name, bytes) = match &file {
            None => {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .context("reading stdin")?;
                ("<stdin>".to_string(), bytes)
            }
            Some(path) => (
                path.display().to_string(),
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            ),
        };
        let before = count;
        parse_source(&name, &bytes, &mut |resource| {
            count += 1;
            sink(prepare(resource, tracking))
        })?;
        tracing::debug!(file = %name, objects = count - before, bytes = bytes.len(), "loaded {role} manifests");
    }
    Ok(count)
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml") | Some("json")
    )
}

/// Collect manifest files below `dir` in a stable (sorted) order, skipping hidden entries such
/// as `.git`.
fn walk(dir: &Path, files: &mut Vec<Option<PathBuf>>, depth: usize) -> anyhow::Result<()> {
    if depth > MAX_DEPTH {
        bail!(
            "{} is nested more than {MAX_DEPTH} directories deep (a symlink loop?)",
            dir.display()
        );
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files, depth + 1)?;
        } else if is_manifest(&path) {
            files.push(Some(path));
        }
    }
    Ok(())
}
