//! Argo CD `Application`s as argo-drift reads them: only the fields it needs, taken defensively
//! from the untyped object (we do not own the CRD, and a malformed one must not stop the watch).

use argo_drift_core::normalize::ignore::{IgnoreDifferences, IgnoreRule};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

use crate::error::{Error, Result};

/// The label an Application carries to opt in.
pub const OPT_IN_LABEL: &str = "argo-drift.io/enabled";

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

/// An Application as the controller keeps it in its cache: without what nothing in argo-drift
/// reads and what makes an Application large at scale — `managedFields`, a last-applied copy of
/// the whole object, Argo CD's deployment `status.history` and the per-resource
/// `status.operationState.syncResult.resources` (one entry per resource an app manages). Kept:
/// metadata otherwise, `spec`, `operation`, and the status argo-drift reads (`sync`,
/// `resources`, `sourceType`, the operation's phase and info). The hooks read history and sync
/// results from the API server, not from this cache.
pub fn cache_form(app: &mut DynamicObject) {
    app.metadata.managed_fields = None;
    if let Some(annotations) = &mut app.metadata.annotations {
        annotations.remove(argo_drift_core::normalize::LAST_APPLIED);
    }
    if let Some(status) = app.data.get_mut("status").and_then(Value::as_object_mut) {
        status.remove("history");
        if let Some(Value::Object(result)) = status
            .get_mut("operationState")
            .and_then(|s| s.get_mut("syncResult"))
        {
            result.remove("resources");
        }
    }
}

/// What an application's manifests are rendered by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// Plain YAML/JSON files, as Argo CD's directory source reads them.
    Directory(DirectoryOptions),
    /// Helm, Kustomize or a plugin: only Argo CD can render these the way it applies them.
    Rendered(&'static str),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryOptions {
    pub recurse: bool,
    pub include: Option<String>,
    pub exclude: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub repo_url: String,
    pub path: String,
    pub target_revision: String,
    /// `None` when the spec names no type: Argo CD then looks at the files (Chart.yaml,
    /// kustomization.yaml) to decide.
    pub kind: Option<SourceKind>,
}

#[derive(Debug, Clone)]
pub struct Application {
    pub name: String,
    pub namespace: String,
    pub sources: Vec<Source>,
    pub destination_namespace: String,
    /// `spec.destination.server` and `.name`: which cluster (crate::clusters resolves them).
    pub destination_server: String,
    pub destination_name: String,
    pub ignore_differences: Vec<IgnoreDifferences>,
    /// The revision Argo CD last synced (`status.sync.revision`), a commit for Git sources.
    pub synced_revision: Option<String>,
    /// The tool Argo CD detected for the source (`status.sourceType`: Helm, Kustomize, Directory,
    /// Plugin — a config-management plugin's discovery rule only Argo CD can apply).
    pub source_type: Option<String>,
}

impl Application {
    /// The revision to read Git at: what Argo CD last synced, else what it targets.
    pub fn revision(&self, source: &Source) -> String {
        match &self.synced_revision {
            Some(r) if self.sources.len() == 1 && !r.is_empty() => r.clone(),
            _ if source.target_revision.is_empty() => "HEAD".to_string(),
            _ => source.target_revision.clone(),
        }
    }

    pub fn parse(object: &DynamicObject) -> Result<Application> {
        let name = object.metadata.name.clone().unwrap_or_default();
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let app = format!("{namespace}/{name}");
        let invalid = |message: String| Error::InvalidApplication {
            app: app.clone(),
            message,
        };
        let spec = object
            .data
            .get("spec")
            .filter(|s| s.is_object())
            .ok_or_else(|| invalid("spec is missing or not an object".into()))?;
        let mut sources = Vec::new();
        if let Some(hydrator) = spec.get("sourceHydrator").filter(|h| h.is_object()) {
            // Argo CD syncs what the hydrator wrote: the sync source, its branch and path, in the
            // dry source's repository unless it names its own (pkg/apis/application/v1alpha1/
            // types.go, SourceHydrator.GetSyncSource; ApplicationSpec.GetSource prefers it).
            let text = |p: &str| {
                hydrator
                    .pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            };
            let repo_url = match text("/syncSource/repoURL") {
                "" => text("/drySource/repoURL"),
                own => own,
            };
            let sync = serde_json::json!({
                "repoURL": repo_url,
                "path": text("/syncSource/path"),
                "targetRevision": text("/syncSource/targetBranch"),
            });
            sources.push(
                parse_source(&sync).map_err(|m| invalid(format!("spec.sourceHydrator.{m}")))?,
            );
        }
        if let Some(list) = spec
            .get("sources")
            .and_then(Value::as_array)
            .filter(|_| sources.is_empty())
        {
            for (i, s) in list.iter().enumerate() {
                sources
                    .push(parse_source(s).map_err(|m| invalid(format!("spec.sources[{i}].{m}")))?);
            }
        }
        if sources.is_empty() {
            let s = spec
                .get("source")
                .ok_or_else(|| invalid("spec.source is missing".into()))?;
            sources.push(parse_source(s).map_err(|m| invalid(format!("spec.source.{m}")))?);
        }
        let destination = spec.get("destination");
        let destination_field = |field: &str| {
            destination
                .and_then(|d| d.get(field))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let destination_namespace = destination_field("namespace");
        let destination_server = destination_field("server");
        let destination_name = destination_field("name");
        let mut ignore_differences = Vec::new();
        if let Some(list) = spec.get("ignoreDifferences") {
            let list = list
                .as_array()
                .ok_or_else(|| invalid("spec.ignoreDifferences is not a list".into()))?;
            for (i, entry) in list.iter().enumerate() {
                let parsed: IgnoreDifferences = serde_json::from_value(entry.clone())
                    .map_err(|e| invalid(format!("spec.ignoreDifferences[{i}]: {e}")))?;
                ignore_differences.push(parsed);
            }
        }
        let synced_revision = object
            .data
            .pointer("/status/sync/revision")
            .and_then(Value::as_str)
            .map(str::to_string);
        let source_type = object
            .data
            .pointer("/status/sourceType")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        Ok(Application {
            source_type,
            name,
            namespace,
            sources,
            destination_namespace,
            destination_server,
            destination_name,
            ignore_differences,
            synced_revision,
        })
    }
}

fn parse_source(s: &Value) -> std::result::Result<Source, String> {
    let text = |field: &str| -> std::result::Result<String, String> {
        match s.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(v)) => Ok(v.clone()),
            Some(other) => Err(format!("{field}: expected a string, found {other}")),
        }
    };
    let repo_url = text("repoURL")?;
    if repo_url.is_empty() {
        return Err("repoURL is missing".into());
    }
    let kind = if s.get("chart").is_some() || s.get("helm").is_some() {
        Some(SourceKind::Rendered("Helm"))
    } else if s.get("kustomize").is_some() {
        Some(SourceKind::Rendered("Kustomize"))
    } else if s.get("plugin").is_some() {
        Some(SourceKind::Rendered("plugin"))
    } else if let Some(d) = s.get("directory") {
        if d.get("jsonnet")
            .is_some_and(|j| j.as_object().is_some_and(|o| !o.is_empty()))
        {
            Some(SourceKind::Rendered("Jsonnet"))
        } else {
            let glob = |field: &str| {
                d.get(field)
                    .and_then(Value::as_str)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
            };
            Some(SourceKind::Directory(DirectoryOptions {
                recurse: d.get("recurse").and_then(Value::as_bool).unwrap_or(false),
                include: glob("include"),
                exclude: glob("exclude"),
            }))
        }
    } else {
        None
    };
    Ok(Source {
        repo_url,
        path: text("path")?,
        target_revision: text("targetRevision")?,
        kind,
    })
}

/// An Application named on a command line: `name` (in `default_namespace`), `namespace/name`,
/// or Argo CD's tracking form `namespace_name` (apps outside Argo CD's namespace; a namespace
/// cannot contain `_`, so the first one splits). (namespace, name).
pub fn parse_app_name(text: &str, default_namespace: &str) -> (String, String) {
    let (namespace, name) = text
        .split_once('/')
        .or_else(|| text.split_once('_'))
        .unwrap_or((default_namespace, text));
    (namespace.to_string(), name.to_string())
}

/// Argo CD names an application in tracking marks by its name when it lives in Argo CD's own
/// namespace, and as `<namespace>_<name>` otherwise ("apps in any namespace").
pub fn tracking_name(app: &Application, control_plane: &str) -> String {
    if app.namespace == control_plane || app.namespace.is_empty() {
        app.name.clone()
    } else {
        format!("{}_{}", app.namespace, app.name)
    }
}

/// The Application's own `spec.ignoreDifferences`, compiled; a rule Argo CD could not use either
/// is an error naming its index and field.
pub fn compile_ignores(app: &Application) -> Result<Vec<IgnoreRule>> {
    let mut rules = Vec::new();
    for (i, spec) in app.ignore_differences.iter().enumerate() {
        let rule = IgnoreRule::compile(spec.clone()).map_err(|(key, message)| {
            Error::InvalidApplication {
                app: format!("{}/{}", app.namespace, app.name),
                message: format!("spec.ignoreDifferences[{i}].{key}: {message}"),
            }
        })?;
        rules.push(rule);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(data: Value) -> DynamicObject {
        let mut o = DynamicObject::new("web", &api_resource()).within("argocd");
        o.data = data;
        o
    }

    #[test]
    fn the_cache_form_drops_what_nothing_reads_and_keeps_the_rest() {
        let mut a = app(serde_json::json!({
            "spec": {"project": "default", "source": {"repoURL": "https://git.example/shop.git"}},
            "operation": {"sync": {"revision": "abc"}},
            "status": {
                "sync": {"status": "OutOfSync", "revision": "abc"},
                "resources": [{"kind": "ConfigMap", "name": "web", "status": "OutOfSync"}],
                "sourceType": "Directory",
                "history": [{"id": 1, "revision": "abc"}],
                "operationState": {"phase": "Running", "operation": {"info": [{"name": "heal", "value": "1"}]},
                                   "syncResult": {"revision": "abc", "resources": [{"kind": "ConfigMap", "name": "web"}]}}
            }
        }));
        a.metadata.labels = Some([(OPT_IN_LABEL.to_string(), "true".to_string())].into());
        a.metadata.annotations = Some(
            [
                (
                    argo_drift_core::normalize::LAST_APPLIED.to_string(),
                    "{}".to_string(),
                ),
                ("argo-drift.io/gate".to_string(), "high".to_string()),
            ]
            .into(),
        );
        a.metadata.managed_fields = Some(vec![Default::default()]);
        let mut expected = a.data.clone();
        cache_form(&mut a);
        assert_eq!(a.metadata.managed_fields, None);
        assert_eq!(
            a.metadata.annotations,
            Some([("argo-drift.io/gate".to_string(), "high".to_string())].into())
        );
        assert_eq!(a.metadata.labels.as_ref().map(|l| l.len()), Some(1));
        let status = expected["status"].as_object_mut().unwrap();
        status.remove("history");
        status["operationState"]["syncResult"]
            .as_object_mut()
            .unwrap()
            .remove("resources");
        assert_eq!(a.data, expected);
    }

    #[test]
    fn a_directory_source_with_its_globs_and_the_synced_revision() {
        let a = Application::parse(&app(serde_json::json!({
            "spec": {
                "source": {"repoURL": "https://git.example/shop.git", "path": "web", "targetRevision": "main",
                           "directory": {"recurse": true, "include": "*.yaml", "exclude": "{test/*,x.yaml}"}},
                "destination": {"namespace": "shop"},
                "ignoreDifferences": [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}]
            },
            "status": {"sync": {"revision": "0123456789abcdef0123456789abcdef01234567"}}
        })))
        .unwrap();
        assert_eq!(a.destination_namespace, "shop");
        assert_eq!(a.ignore_differences[0].json_pointers, ["/spec/replicas"]);
        let s = &a.sources[0];
        assert_eq!(
            s.kind,
            Some(SourceKind::Directory(DirectoryOptions {
                recurse: true,
                include: Some("*.yaml".into()),
                exclude: Some("{test/*,x.yaml}".into()),
            }))
        );
        assert_eq!(a.revision(s), "0123456789abcdef0123456789abcdef01234567");
    }

    #[test]
    fn a_hydrated_app_is_read_from_its_sync_source() {
        let hydrated = |sync: Value| {
            Application::parse(&app(serde_json::json!({
                "spec": {"sourceHydrator": {
                    "drySource": {"repoURL": "https://git.example/dry.git", "path": "helm/web", "targetRevision": "main"},
                    "syncSource": sync},
                    "destination": {"namespace": "shop"}}
            })))
            .unwrap()
        };
        let a = hydrated(serde_json::json!({"targetBranch": "environments/prod", "path": "web"}));
        assert_eq!(a.sources.len(), 1);
        let s = &a.sources[0];
        assert_eq!(
            (
                s.repo_url.as_str(),
                s.path.as_str(),
                s.target_revision.as_str()
            ),
            ("https://git.example/dry.git", "web", "environments/prod")
        );
        // No type given: the files decide, as Argo CD decides (hydrated output is plain YAML).
        assert_eq!(s.kind, None);
        let a = hydrated(
            serde_json::json!({"repoURL": "https://git.example/hydrated.git",
            "targetBranch": "prod", "path": "web"}),
        );
        assert_eq!(a.sources[0].repo_url, "https://git.example/hydrated.git");
    }

    #[test]
    fn helm_and_kustomize_sources_need_argo_cd_to_render() {
        let a = Application::parse(&app(serde_json::json!({
            "spec": {"sources": [{"repoURL": "https://charts.example", "chart": "redis", "targetRevision": "1.2.3"},
                                 {"repoURL": "https://git.example/x.git", "path": "k", "kustomize": {}}]}
        })))
        .unwrap();
        assert_eq!(a.sources[0].kind, Some(SourceKind::Rendered("Helm")));
        assert_eq!(a.sources[1].kind, Some(SourceKind::Rendered("Kustomize")));
        // Several sources: the synced revision is a list in Argo CD, so targetRevision is used.
        assert_eq!(a.revision(&a.sources[0]), "1.2.3");
    }

    #[test]
    fn a_malformed_application_names_the_field() {
        let err = Application::parse(&app(
            serde_json::json!({"spec": {"source": {"repoURL": 3}}}),
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Application argocd/web: spec.source.repoURL: expected a string, found 3"
        );
        let err = Application::parse(&app(serde_json::json!({
            "spec": {"source": {"repoURL": "x"}, "ignoreDifferences": [{"group": "apps"}]}
        })))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("spec.ignoreDifferences[0]: missing field `kind`"),
            "{err}"
        );
        let err = Application::parse(&app(serde_json::json!({}))).unwrap_err();
        assert!(err.to_string().contains("spec is missing"), "{err}");
    }
}
