//! Which namespaces' Applications argo-drift watches: Argo CD's own, and those of "apps in any
//! namespace", written as Argo CD's `application.namespaces` (argocd-cmd-params-cm) writes them:
//! names, globs, or regular expressions between slashes (util/security IsNamespaceEnabled,
//! util/glob MatchStringInList with REGEXP).

/// One entry of the list, compiled.
#[derive(Debug, Clone)]
enum Entry {
    Exact(String),
    Glob(globset::GlobMatcher),
    Regex(fancy_regex::Regex),
}

/// The watched namespaces. Clones share one set, which `replace` changes for all of them (Argo
/// CD's `application.namespaces` is followed while the controller runs).
#[derive(Debug, Clone)]
pub struct AppNamespaces {
    entries: std::sync::Arc<std::sync::RwLock<Vec<(String, Entry)>>>,
}

impl AppNamespaces {
    /// Compile the entries; an invalid glob or expression is an error naming it.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<AppNamespaces, String> {
        let mut out = Vec::new();
        for text in entries
            .iter()
            .map(|e| e.as_ref().trim())
            .filter(|e| !e.is_empty())
        {
            let entry = if text.len() > 2 && text.starts_with('/') && text.ends_with('/') {
                let inner = &text[1..text.len() - 1];
                Entry::Regex(
                    fancy_regex::Regex::new(inner)
                        .map_err(|e| format!("{text:?} is not a regular expression: {e}"))?,
                )
            } else if text.contains(['*', '?', '[', '{']) {
                Entry::Glob(
                    globset::GlobBuilder::new(text)
                        .literal_separator(false)
                        .build()
                        .map_err(|e| format!("{text:?} is not a glob: {e}"))?
                        .compile_matcher(),
                )
            } else {
                Entry::Exact(text.to_string())
            };
            out.push((text.to_string(), entry));
        }
        if out.is_empty() {
            return Err("no namespace given".into());
        }
        Ok(AppNamespaces {
            entries: std::sync::Arc::new(std::sync::RwLock::new(out)),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(String, Entry)>> {
        // Writers replace the whole list in one assignment: a poisoned lock still holds a list.
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Take `other`'s entries, for every clone of this set.
    pub fn replace(&self, other: &AppNamespaces) {
        let entries = other.read().clone();
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = entries;
    }

    /// The one namespace, when the list is a single name (its Applications can be watched
    /// there alone).
    pub fn single(&self) -> Option<String> {
        match self.read().as_slice() {
            [(_, Entry::Exact(name))] => Some(name.clone()),
            _ => None,
        }
    }

    /// Whether Applications in `namespace` are watched. Regular expressions are matched
    /// unanchored, as regexp2's MatchString does.
    pub fn contains(&self, namespace: &str) -> bool {
        self.read().iter().any(|(_, e)| match e {
            Entry::Exact(name) => name == namespace,
            Entry::Glob(g) => g.is_match(namespace),
            // A match that gives up (backtracking limit) is no match, as Argo CD logs and says no.
            Entry::Regex(r) => r.is_match(namespace).unwrap_or(false),
        })
    }

    pub fn describe(&self) -> String {
        self.read()
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Argo CD's namespace plus argocd-cmd-params-cm `application.namespaces` (comma-separated),
/// which Argo CD's components take as `ARGOCD_APPLICATION_NAMESPACES`.
pub fn from_argocd(control_plane: &str, application_namespaces: Option<&str>) -> Vec<String> {
    let mut list = vec![control_plane.to_string()];
    list.extend(
        application_namespaces
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string),
    );
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases of Argo CD's util/security/application_namespaces_test.go (IsNamespaceEnabled).
    #[test]
    fn namespaces_match_as_argo_cd_matches_them() {
        let ns = |list: &[&str]| AppNamespaces::new(list).unwrap();
        assert!(ns(&["argocd"]).contains("argocd"));
        assert_eq!(ns(&["argocd"]).single().as_deref(), Some("argocd"));
        assert!(!ns(&["argocd"]).contains("other"));
        let globs = ns(&["argocd", "team-*"]);
        assert!(globs.contains("team-a"));
        assert!(!globs.contains("other"));
        assert_eq!(globs.single(), None);
        let regex = ns(&["argocd", "/^team-[0-9]+$/"]);
        assert!(regex.contains("team-12"));
        assert!(!regex.contains("team-x"));
        // Unanchored, as regexp2's MatchString.
        assert!(ns(&["/team/"]).contains("my-team-ns"));
        // Argo CD's own case: everything but one word, with a negative lookahead.
        let but = ns(&["argocd", "/^((?!disallowed).)*$/"]);
        assert!(!but.contains("disallowed"));
        assert!(but.contains("allowed"));
        assert!(AppNamespaces::new(&["/(/"])
            .unwrap_err()
            .contains("regular expression"));
        assert_eq!(
            from_argocd("argocd", Some("team-*, /^ops-/ ,")),
            ["argocd", "team-*", "/^ops-/"]
        );
        assert_eq!(from_argocd("argocd", None), ["argocd"]);
    }

    #[test]
    fn a_replaced_set_is_seen_by_every_clone() {
        let watched = AppNamespaces::new(&["argocd"]).unwrap();
        let elsewhere = watched.clone();
        watched.replace(&AppNamespaces::new(&["argocd", "team-*"]).unwrap());
        assert!(elsewhere.contains("team-a"));
        assert_eq!(elsewhere.describe(), "argocd,team-*");
    }
}
