//! Adopting drift into Git: the live values of chosen drifted fields written into the
//! application's files, each file kept byte for byte but for those fields
//! ([`argo_drift_core::yaml_edit`]).
//!
//! - A directory source: the document that declares the resource is edited in place.
//! - A kustomize source: the fields go into a strategic-merge patch of the app's directory,
//!   `argo-drift-adopted-<kind>-<name>.yaml`, which the kustomization's `patches` then lists (the
//!   resource may come from a base argo-drift must not touch).
//!
//! Secrets are never adopted: their values are not argo-drift's to put in Git.

use argo_drift_core::path::{FieldPath, Selector, Step};
use argo_drift_core::yaml_edit::{set_fields, EditError, FieldEdit};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The fields of one resource to adopt.
#[derive(Debug, Clone)]
pub struct Adoption {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Each field's live value (`None`: absent live, removed in Git).
    pub fields: Vec<FieldEdit>,
}

impl Adoption {
    fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    fn describe(&self) -> String {
        match self.namespace.as_str() {
            "" => format!("{} {}", self.kind, self.name),
            ns => format!("{} {ns}/{}", self.kind, self.name),
        }
    }
}

/// How the app's directory is rendered.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    Directory,
    /// `kustomization` is the kustomization file's path in the repository.
    Kustomize {
        kustomization: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("{resource}: a Secret is never adopted into Git")]
    Secret { resource: String },
    #[error("{resource} is declared in no file under {dir:?} (generated, or from elsewhere): adopt it with a kustomize patch or by hand")]
    NotFound { resource: String, dir: String },
    #[error("{resource} is declared twice under {dir:?}: {first} and {second}")]
    Twice {
        resource: String,
        dir: String,
        first: String,
        second: String,
    },
    #[error("{file}: {source}")]
    Edit {
        file: String,
        #[source]
        source: EditError,
    },
    #[error("{resource}: {path}: {reason}")]
    Patch {
        resource: String,
        path: String,
        reason: String,
    },
}

#[derive(Deserialize)]
struct Head {
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Meta,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

fn is_manifest(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// (file, 0-based document) declaring the resource under `dir`.
fn declaring(
    files: &[(String, String)],
    dir: &str,
    a: &Adoption,
) -> Result<(usize, usize), AdoptError> {
    let mut found: Vec<(usize, usize)> = Vec::new();
    for (i, (path, text)) in files.iter().enumerate() {
        if !is_manifest(path) {
            continue;
        }
        for (d, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let Ok(head) = Head::deserialize(doc) else {
                continue;
            };
            let group = head.api_version.rsplit_once('/').map_or("", |(g, _)| g);
            let namespace_fits = head.metadata.namespace.is_empty()
                || a.namespace.is_empty()
                || head.metadata.namespace == a.namespace;
            if head.kind == a.kind
                && group == a.group()
                && head.metadata.name == a.name
                && namespace_fits
            {
                found.push((i, d));
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(AdoptError::NotFound {
            resource: a.describe(),
            dir: dir.to_string(),
        }),
        [first, second, ..] => Err(AdoptError::Twice {
            resource: a.describe(),
            dir: dir.to_string(),
            first: files[first.0].0.clone(),
            second: files[second.0].0.clone(),
        }),
    }
}

/// The files to write, (path, new content), for `adoptions` in the app directory `dir` of
/// `files` (the repository's files under it, path from the repository's root).
pub fn plan(
    files: &[(String, Vec<u8>)],
    dir: &str,
    layout: &Layout,
    adoptions: &[Adoption],
) -> Result<Vec<(String, Vec<u8>)>, AdoptError> {
    for a in adoptions {
        if a.kind == "Secret" && a.group().is_empty() {
            return Err(AdoptError::Secret {
                resource: a.describe(),
            });
        }
    }
    let mut texts: Vec<(String, String)> = files
        .iter()
        .map(|(p, b)| (p.clone(), String::from_utf8_lossy(b).into_owned()))
        .collect();
    let mut changed: Vec<usize> = Vec::new();
    let edit = |texts: &mut Vec<(String, String)>, i: usize, doc: usize, fields: &[FieldEdit]| {
        let out = set_fields(&texts[i].1, doc, fields).map_err(|source| AdoptError::Edit {
            file: texts[i].0.clone(),
            source,
        })?;
        texts[i].1 = out;
        Ok::<(), AdoptError>(())
    };
    match layout {
        Layout::Directory => {
            for a in adoptions.iter().filter(|a| !a.fields.is_empty()) {
                let (i, doc) = declaring(&texts, dir, a)?;
                edit(&mut texts, i, doc, &a.fields)?;
                changed.push(i);
            }
        }
        Layout::Kustomize { kustomization } => {
            let base = kustomization.rsplit_once('/').map_or("", |(d, _)| d);
            for a in adoptions.iter().filter(|a| !a.fields.is_empty()) {
                let name = format!(
                    "argo-drift-adopted-{}-{}.yaml",
                    a.kind.to_lowercase(),
                    a.name
                );
                let path = if base.is_empty() {
                    name.clone()
                } else {
                    format!("{base}/{name}")
                };
                let i = match texts.iter().position(|(p, _)| p == &path) {
                    Some(i) => {
                        edit(&mut texts, i, 0, &a.fields)?;
                        i
                    }
                    None => {
                        let named = patch_target_name(&texts, kustomization, &a.name);
                        texts.push((path.clone(), new_patch(a, &named)?));
                        texts.len() - 1
                    }
                };
                changed.push(i);
                let k = texts
                    .iter()
                    .position(|(p, _)| p == kustomization)
                    .ok_or_else(|| AdoptError::NotFound {
                        resource: kustomization.clone(),
                        dir: dir.to_string(),
                    })?;
                let listed = FieldEdit {
                    path: FieldPath(vec![
                        Step::Field("patches".into()),
                        Step::Item {
                            selector: Selector::Key(vec![(
                                "path".into(),
                                Value::String(name.clone()),
                            )]),
                            index: 0,
                        },
                    ]),
                    value: Some(serde_json::json!({ "path": name })),
                };
                let before = texts[k].1.clone();
                edit(&mut texts, k, 0, std::slice::from_ref(&listed))?;
                if texts[k].1 != before {
                    changed.push(k);
                }
            }
        }
    }
    changed.sort_unstable();
    changed.dedup();
    Ok(changed
        .into_iter()
        .map(|i| (texts[i].0.clone(), texts[i].1.clone().into_bytes()))
        .collect())
}

/// The name a patch of the kustomization must target for the live object `live_name`: without
/// the kustomization's `namePrefix`/`nameSuffix`, which kustomize adds after its patches.
fn patch_target_name(texts: &[(String, String)], kustomization: &str, live_name: &str) -> String {
    #[derive(Deserialize, Default)]
    struct Names {
        #[serde(default, rename = "namePrefix")]
        prefix: String,
        #[serde(default, rename = "nameSuffix")]
        suffix: String,
    }
    let names: Names = texts
        .iter()
        .find(|(p, _)| p == kustomization)
        .and_then(|(_, t)| serde_yaml::from_str(t).ok())
        .unwrap_or_default();
    let name = live_name
        .strip_prefix(names.prefix.as_str())
        .unwrap_or(live_name);
    name.strip_suffix(names.suffix.as_str())
        .unwrap_or(name)
        .to_string()
}

/// A strategic-merge patch naming the resource and setting its fields: list items named by
/// their merge key (which the patch must carry), a removed field as `null` (kustomize deletes it).
/// No namespace: kustomize applies patches before its `namespace` transformer, so the target
/// has the namespace of its base (usually none) when the patch meets it.
fn new_patch(a: &Adoption, name: &str) -> Result<String, AdoptError> {
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(name.to_string()));
    let mut patch = serde_json::json!({
        "apiVersion": a.api_version,
        "kind": a.kind,
        "metadata": metadata,
    });
    for f in &a.fields {
        // Removed: a field as null, a list item by its key with `$patch: delete`.
        let value = match (&f.value, f.path.0.last()) {
            (Some(v), _) => v.clone(),
            (
                None,
                Some(Step::Item {
                    selector: Selector::Key(pairs),
                    ..
                }),
            ) => {
                let mut item: Map<String, Value> =
                    pairs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                item.insert("$patch".into(), Value::String("delete".into()));
                Value::Object(item)
            }
            (None, _) => Value::Null,
        };
        put(&mut patch, &f.path.0, value).map_err(|reason| AdoptError::Patch {
            resource: a.describe(),
            path: f.path.to_string(),
            reason,
        })?;
    }
    // Kubernetes' order: apiVersion, kind, metadata, then the rest (serde_yaml keeps the map's).
    let mut text = String::new();
    for key in ["apiVersion", "kind", "metadata"] {
        text.push_str(
            &serde_yaml::to_string(&serde_json::json!({ key: patch[key] })).unwrap_or_default(),
        );
    }
    if let Value::Object(map) = &patch {
        for (k, v) in map {
            if !["apiVersion", "kind", "metadata"].contains(&k.as_str()) {
                text.push_str(
                    &serde_yaml::to_string(&serde_json::json!({ k: v })).unwrap_or_default(),
                );
            }
        }
    }
    Ok(text)
}

/// Set `value` at `steps` of a patch being built, making the maps and list items on the way.
fn put(here: &mut Value, steps: &[Step], value: Value) -> Result<(), String> {
    let Some((step, rest)) = steps.split_first() else {
        *here = value;
        return Ok(());
    };
    match step {
        Step::Field(name) => {
            if !here.is_object() {
                *here = Value::Object(Map::new());
            }
            let map = here.as_object_mut().ok_or("not a map")?;
            let next = map.entry(name.to_string()).or_insert(Value::Null);
            put(next, rest, value)
        }
        Step::Item {
            selector: Selector::Key(pairs),
            ..
        } => {
            if !here.is_array() {
                *here = Value::Array(Vec::new());
            }
            let items = here.as_array_mut().ok_or("not a list")?;
            let at = items.iter().position(|item| {
                pairs.iter().all(|(k, v)| item.get(k) == Some(v))
            });
            let i = match at {
                Some(i) => i,
                None => {
                    let item: Map<String, Value> =
                        pairs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    items.push(Value::Object(item));
                    items.len() - 1
                }
            };
            put(&mut items[i], rest, value)
        }
        Step::Item {
            selector: Selector::Index(_),
            ..
        } => Err("a list without a merge key cannot be patched item by item; adopt it in the base by hand".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn edit(path: &str, value: Option<Value>) -> FieldEdit {
        FieldEdit {
            path: FieldPath::parse(path).unwrap(),
            value,
        }
    }

    fn web(fields: Vec<FieldEdit>) -> Adoption {
        Adoption {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
            fields,
        }
    }

    const WEB: &str = "# web\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2 # two\n  template:\n    spec:\n      containers:\n      - name: web\n        image: web:1\n";

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_directory_source_gets_its_declaring_document_edited() {
        let repo = files(&[
            (
                "apps/web/svc.yaml",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n",
            ),
            ("apps/web/deploy.yaml", WEB),
            ("apps/web/README.md", "kind: Deployment\n"),
        ]);
        let out = plan(
            &repo,
            "apps/web",
            &Layout::Directory,
            &[web(vec![
                edit("spec.replicas", Some(json!(5))),
                edit(
                    "spec.template.spec.containers[name=web].image",
                    Some(json!("web:2")),
                ),
            ])],
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "apps/web/deploy.yaml");
        assert_eq!(
            String::from_utf8(out[0].1.clone()).unwrap(),
            WEB.replace("replicas: 2 # two", "replicas: 5 # two")
                .replace("image: web:1", "image: web:2")
        );
        // Not there, or a Secret: refused, saying why.
        let mut api = web(vec![edit("spec.replicas", Some(json!(1)))]);
        api.name = "api".into();
        let e = plan(&repo, "apps/web", &Layout::Directory, &[api]).unwrap_err();
        assert!(
            e.to_string()
                .contains("Deployment shop/api is declared in no file under \"apps/web\""),
            "{e}"
        );
        let secret = Adoption {
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: "shop".into(),
            name: "db".into(),
            fields: vec![edit("data.password", Some(json!("x")))],
        };
        let e = plan(&repo, "apps/web", &Layout::Directory, &[secret]).unwrap_err();
        assert!(matches!(e, AdoptError::Secret { .. }), "{e}");
    }

    #[test]
    fn a_kustomize_source_gets_a_patch_the_kustomization_lists() {
        let kustomization = "# overlay\nresources:\n- ../../base   # shared\nimages:\n- name: web\n  newTag: \"1\"\n";
        let repo = files(&[("overlays/prod/kustomization.yaml", kustomization)]);
        let layout = Layout::Kustomize {
            kustomization: "overlays/prod/kustomization.yaml".into(),
        };
        let adoption = web(vec![
            edit("spec.replicas", Some(json!(5))),
            edit(
                "spec.template.spec.containers[name=web].resources.limits.memory",
                Some(json!("512Mi")),
            ),
            edit(
                "spec.template.spec.containers[name=web].env[name=DEBUG]",
                None,
            ),
        ]);
        let out = plan(
            &repo,
            "overlays/prod",
            &layout,
            std::slice::from_ref(&adoption),
        )
        .unwrap();
        let by_path = |p: &str| {
            out.iter()
                .find(|(path, _)| path == p)
                .map(|(_, b)| String::from_utf8(b.clone()).unwrap())
                .unwrap_or_else(|| panic!("{p} not written: {out:?}"))
        };
        assert_eq!(
            by_path("overlays/prod/kustomization.yaml"),
            format!("{kustomization}patches:\n  - path: argo-drift-adopted-deployment-web.yaml\n")
        );
        let patch: Value = serde_yaml::from_str(&by_path(
            "overlays/prod/argo-drift-adopted-deployment-web.yaml",
        ))
        .unwrap();
        assert_eq!(
            patch,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {"replicas": 5, "template": {"spec": {"containers": [{
                    "name": "web",
                    "resources": {"limits": {"memory": "512Mi"}},
                    "env": [{"name": "DEBUG", "$patch": "delete"}]
                }]}}}
            })
        );
        assert!(
            by_path("overlays/prod/argo-drift-adopted-deployment-web.yaml")
                .starts_with("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n")
        );
        // A second adoption edits the same patch, and lists it once.
        let mut again = files(&[(
            "overlays/prod/kustomization.yaml",
            &by_path("overlays/prod/kustomization.yaml"),
        )]);
        again.push((
            "overlays/prod/argo-drift-adopted-deployment-web.yaml".into(),
            by_path("overlays/prod/argo-drift-adopted-deployment-web.yaml").into_bytes(),
        ));
        let out = plan(
            &again,
            "overlays/prod",
            &layout,
            &[web(vec![edit("spec.replicas", Some(json!(7)))])],
        )
        .unwrap();
        assert_eq!(out.len(), 1, "only the patch changes: {out:?}");
        assert!(String::from_utf8(out[0].1.clone())
            .unwrap()
            .contains("replicas: 7"));
    }
}

#[cfg(test)]
mod names {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_patch_targets_the_name_before_the_kustomizations_prefix_and_suffix() {
        let texts = vec![(
            "o/kustomization.yaml".to_string(),
            "namePrefix: prod-\nnameSuffix: -v2\nresources: [../base]\n".to_string(),
        )];
        assert_eq!(
            patch_target_name(&texts, "o/kustomization.yaml", "prod-web-v2"),
            "web"
        );
        // A name without them (the prefix set in a base) is kept.
        assert_eq!(
            patch_target_name(&texts, "o/kustomization.yaml", "api"),
            "api"
        );
        assert_eq!(
            patch_target_name(&[], "o/kustomization.yaml", "prod-web"),
            "prod-web"
        );
    }
}
