//! Argo CD-compatible `ignoreDifferences`: JSON pointers, jq path expressions and field managers
//! whose fields are taken out of both sides before comparing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest::ResourceKey;
use crate::normalize::managed::Ownership;

/// One `ignoreDifferences` entry as written in Argo CD's Application spec or our policy file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IgnoreDifferences {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub json_pointers: Vec<String>,
    #[serde(default)]
    pub jq_path_expressions: Vec<String>,
    #[serde(default)]
    pub managed_fields_managers: Vec<String>,
}

type JqFilter = jaq_core::compile::Filter<jaq_core::Native<jaq_core::data::JustLut<jaq_json::Val>>>;

/// An `ignoreDifferences` entry with its jq expressions compiled once.
#[derive(Clone)]
pub struct IgnoreRule {
    spec: IgnoreDifferences,
    jq: Vec<(String, std::sync::Arc<JqFilter>)>,
}

impl std::fmt::Debug for IgnoreRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IgnoreRule")
            .field("spec", &self.spec)
            .finish()
    }
}

impl IgnoreRule {
    /// The rule as written.
    pub fn spec(&self) -> &IgnoreDifferences {
        &self.spec
    }

    /// Compile an entry; the error is a message for the caller to place (file and key path).
    pub fn compile(spec: IgnoreDifferences) -> Result<IgnoreRule, (String, String)> {
        if spec.kind.is_empty() {
            return Err(("kind".to_string(), "kind is required".to_string()));
        }
        for (i, pointer) in spec.json_pointers.iter().enumerate() {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err((
                    format!("jsonPointers[{i}]"),
                    format!("{pointer:?} is not a JSON pointer (it must start with /)"),
                ));
            }
        }
        let mut jq = Vec::new();
        for (i, expr) in spec.jq_path_expressions.iter().enumerate() {
            let filter = compile_deletion(expr)
                .map_err(|m| (format!("jqPathExpressions[{i}]"), format!("{expr:?}: {m}")))?;
            jq.push((expr.clone(), std::sync::Arc::new(filter)));
        }
        Ok(IgnoreRule { spec, jq })
    }

    pub fn applies_to(&self, key: &ResourceKey) -> bool {
        glob(&self.spec.group, &key.group)
            && glob(&self.spec.kind, &key.kind)
            && (self.spec.name.is_empty() || self.spec.name == key.name)
            && (self.spec.namespace.is_empty() || self.spec.namespace == key.namespace)
    }

    /// Take the ignored fields out of both objects.
    pub fn apply(&self, desired: &mut Value, live: &mut Value, ownership: Option<&Ownership>) {
        for pointer in &self.spec.json_pointers {
            remove_pointer(desired, pointer);
            remove_pointer(live, pointer);
        }
        for (_, filter) in &self.jq {
            for side in [&mut *desired, &mut *live] {
                if let Some(out) = run_deletion(filter, side) {
                    *side = out;
                }
            }
        }
        if let Some(ownership) = ownership {
            for manager in &self.spec.managed_fields_managers {
                ownership.strip_manager(manager, live, desired);
            }
        }
    }
}

/// One resource override's `ignoreDifferences` in `argocd-cm` (Argo CD's OverrideIgnoreDiff).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OverrideIgnoreDiff {
    // A list given as null (`jqPathExpressions:` left empty, or Argo CD's API answering
    // `null`) is an empty list, as Go reads it.
    #[serde(default, deserialize_with = "null_as_empty")]
    json_pointers: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    jq_path_expressions: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    managed_fields_managers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// The system-level ignore rules of Argo CD's `argocd-cm`, read as Argo CD reads them
/// (util/settings/settings.go, GetResourceOverrides and appendResourceOverridesFromSplitKeys;
/// util/argo/normalizers/diff_normalizer.go, NewIgnoreNormalizer): the YAML map under
/// `resource.customizations` (`<group>/<kind>` or `<kind>` to an override whose
/// `ignoreDifferences` is YAML text), then the split keys
/// `resource.customizations.ignoreDifferences.<group>_<kind>`, `.<kind>` and `.all` (every
/// kind), which replace the map's entry for the same kind. Errors name the key.
pub fn argocd_cm_rules(
    data: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<IgnoreRule>, (String, String)> {
    const PREFIX: &str = "resource.customizations";
    let mut overrides: std::collections::BTreeMap<String, (String, OverrideIgnoreDiff)> =
        Default::default();
    if let Some(text) = data.get(PREFIX).filter(|t| !t.trim().is_empty()) {
        let map: std::collections::BTreeMap<String, Value> =
            serde_yaml::from_str(text).map_err(|e| (PREFIX.to_string(), e.to_string()))?;
        for (key, value) in map {
            let at = format!("{PREFIX}: {key}.ignoreDifferences");
            let diff = match value.get("ignoreDifferences") {
                None | Some(Value::Null) => continue,
                // The older form: the override's ignoreDifferences as YAML text.
                Some(Value::String(t)) => {
                    serde_yaml::from_str(t).map_err(|e| (at.clone(), e.to_string()))?
                }
                Some(v) => {
                    serde_json::from_value(v.clone()).map_err(|e| (at.clone(), e.to_string()))?
                }
            };
            overrides.insert(key, (at, diff));
        }
    }
    let split = format!("{PREFIX}.ignoreDifferences.");
    for (key, text) in data {
        let Some(group_kind) = key.strip_prefix(&split) else {
            continue;
        };
        let parts: Vec<&str> = group_kind.split('_').collect();
        let override_key = match parts.as_slice() {
            ["all"] => "*/*".to_string(),
            [group, kind] => format!("{group}/{kind}"),
            [kind] if !kind.is_empty() => kind.to_string(),
            _ => return Err((
                key.clone(),
                "must be resource.customizations.ignoreDifferences.<group>_<kind>, .<kind> or .all"
                    .to_string(),
            )),
        };
        let diff: OverrideIgnoreDiff =
            serde_yaml::from_str(text).map_err(|e| (key.clone(), e.to_string()))?;
        overrides.insert(override_key, (key.clone(), diff));
    }
    let mut rules = Vec::new();
    for (override_key, (at, diff)) in overrides {
        let (group, kind) = match override_key.split_once('/') {
            Some((g, k)) => (g.to_string(), k.to_string()),
            None => (String::new(), override_key.clone()),
        };
        let spec = IgnoreDifferences {
            group,
            kind,
            name: String::new(),
            namespace: String::new(),
            json_pointers: diff.json_pointers,
            jq_path_expressions: diff.jq_path_expressions,
            managed_fields_managers: diff.managed_fields_managers,
        };
        rules.push(IgnoreRule::compile(spec).map_err(|(field, m)| (format!("{at}: {field}"), m))?);
    }
    Ok(rules)
}

/// Argo CD matches group and kind as globs (`*` for any); an empty group is the core group.
fn glob(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if !pattern.contains('*') {
        return pattern == value;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = value;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else {
                return false;
            };
            rest = &rest[pos + part.len()..];
        }
    }
    rest.is_empty()
}

fn remove_pointer(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    let parent = if parent.is_empty() {
        Some(value)
    } else {
        value.pointer_mut(parent)
    };
    match parent {
        Some(Value::Object(map)) => {
            map.remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = last.parse::<usize>() {
                if i < items.len() {
                    items.remove(i);
                }
            }
        }
        _ => {}
    }
}

/// Argo CD runs `del(<expression>)` over each object; so do we, with jaq.
fn compile_deletion(expr: &str) -> Result<JqFilter, String> {
    use jaq_core::load::{Arena, File, Loader};
    let code = format!("del({expr})");
    let program = File {
        code: code.as_str(),
        path: (),
    };
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(&arena, program)
        .map_err(|errs| format!("does not parse as jq ({} error(s))", errs.len()))?;
    jaq_core::Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| format!("does not compile as jq ({} error(s))", errs.len()))
}

fn run_deletion(filter: &JqFilter, value: &Value) -> Option<Value> {
    use jaq_core::{data, unwrap_valr, Ctx, Vars};
    let input = jaq_json::read::parse_single(value.to_string().as_bytes()).ok()?;
    let ctx = Ctx::<data::JustLut<jaq_json::Val>>::new(&filter.lut, Vars::new([]));
    let mut out = filter.id.run((ctx, input)).map(unwrap_valr);
    // A path expression that selects nothing, or fails on this object (a field of a string),
    // leaves the object as it is, as in Argo CD.
    let first = out.next()?.ok()?;
    serde_json::from_str(&first.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argocd_cm_ignore_rules_are_read_as_argo_cd_reads_them() {
        let data: std::collections::BTreeMap<String, String> = [
            (
                "resource.customizations",
                "admissionregistration.k8s.io/MutatingWebhookConfiguration:\n  ignoreDifferences: |\n    jsonPointers:\n    - /webhooks/0/clientConfig/caBundle\napps/Deployment:\n  ignoreDifferences: |\n    jsonPointers: [/spec/paused]\n",
            ),
            // The split key replaces the map's entry for the same kind.
            (
                "resource.customizations.ignoreDifferences.apps_Deployment",
                "jqPathExpressions: ['.spec.template.spec.initContainers[] | select(.name == \"istio-init\")']",
            ),
            (
                "resource.customizations.ignoreDifferences.ConfigMap",
                "jsonPointers: [/data/tuned]",
            ),
            (
                "resource.customizations.ignoreDifferences.all",
                "managedFieldsManagers: [kube-controller-manager]",
            ),
            ("resource.customizations.health.apps_Deployment", "return {}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let rules = argocd_cm_rules(&data).unwrap();
        let specs: Vec<(String, String, usize, usize, usize)> = rules
            .iter()
            .map(|r| {
                (
                    r.spec.group.clone(),
                    r.spec.kind.clone(),
                    r.spec.json_pointers.len(),
                    r.spec.jq_path_expressions.len(),
                    r.spec.managed_fields_managers.len(),
                )
            })
            .collect();
        assert_eq!(
            specs,
            [
                ("*".into(), "*".into(), 0, 0, 1),
                ("".into(), "ConfigMap".into(), 1, 0, 0),
                (
                    "admissionregistration.k8s.io".into(),
                    "MutatingWebhookConfiguration".into(),
                    1,
                    0,
                    0
                ),
                ("apps".into(), "Deployment".into(), 0, 1, 0),
            ]
        );
        let key = |group: &str, kind: &str| ResourceKey {
            group: group.into(),
            kind: kind.into(),
            namespace: "shop".into(),
            name: "web".into(),
        };
        assert!(rules[1].applies_to(&key("", "ConfigMap")));
        assert!(!rules[1].applies_to(&key("example.com", "ConfigMap")));
        assert!(rules[0].applies_to(&key("example.com", "Widget")));

        let bad = |k: &str, v: &str| {
            let data = [(k.to_string(), v.to_string())].into_iter().collect();
            argocd_cm_rules(&data).unwrap_err()
        };
        assert_eq!(
            bad(
                "resource.customizations.ignoreDifferences.a_b_c",
                "jsonPointers: []"
            )
            .0,
            "resource.customizations.ignoreDifferences.a_b_c"
        );
        let (at, message) = bad(
            "resource.customizations.ignoreDifferences.ConfigMap",
            "jsonPointers: [data/x]",
        );
        assert_eq!(
            at,
            "resource.customizations.ignoreDifferences.ConfigMap: jsonPointers[0]"
        );
        assert!(message.contains("not a JSON pointer"), "{message}");
    }
    use serde_json::json;

    fn rule(yaml: &str) -> IgnoreRule {
        IgnoreRule::compile(serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn jq_path_expressions_delete_what_they_select() {
        let r = rule(
            "kind: Deployment\ngroup: apps\njqPathExpressions:\n- '.spec.template.spec.initContainers[] | select(.name == \"injected\")'\n",
        );
        let mut desired =
            json!({"spec": {"template": {"spec": {"initContainers": [{"name": "keep"}]}}}});
        let mut live = json!({"spec": {"template": {"spec": {"initContainers": [{"name": "keep"}, {"name": "injected"}]}}}});
        r.apply(&mut desired, &mut live, None);
        assert_eq!(live, desired);
    }

    #[test]
    fn json_pointers_and_globs() {
        let r = rule(
            "kind: '*'\ngroup: '*'\njsonPointers: [/spec/replicas, /metadata/annotations/a~1b]\n",
        );
        let key = ResourceKey {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: "x".into(),
            name: "y".into(),
        };
        assert!(r.applies_to(&key));
        let mut live =
            json!({"spec": {"replicas": 3}, "metadata": {"annotations": {"a/b": "1", "c": "2"}}});
        let mut desired = json!({});
        r.apply(&mut desired, &mut live, None);
        assert_eq!(
            live,
            json!({"spec": {}, "metadata": {"annotations": {"c": "2"}}})
        );
        assert!(glob("apps*", "apps.example.com"));
        assert!(!glob("apps", "apps.example.com"));
    }

    #[test]
    fn invalid_jq_is_refused_with_the_expression() {
        let spec: IgnoreDifferences =
            serde_yaml::from_str("kind: X\njqPathExpressions: ['.spec[']\n").unwrap();
        let err = IgnoreRule::compile(spec).unwrap_err();
        assert_eq!(err.0, "jqPathExpressions[0]");
        assert!(err.1.contains(".spec["));
    }
}
