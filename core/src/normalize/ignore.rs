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
pub struct IgnoreRule {
    spec: IgnoreDifferences,
    jq: Vec<(String, JqFilter)>,
}

impl std::fmt::Debug for IgnoreRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IgnoreRule")
            .field("spec", &self.spec)
            .finish()
    }
}

impl IgnoreRule {
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
            jq.push((expr.clone(), filter));
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
