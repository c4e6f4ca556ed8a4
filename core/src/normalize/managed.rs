//! Field ownership from `metadata.managedFields` (server-side apply's FieldsV1 sets): who wrote a
//! field, so that a field present only in live can be told apart as a server default (no owner),
//! a GitOps or system write, or an out-of-band change by someone else.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::path::{FieldPath, Step};

/// One element of a FieldsV1 path: `f:name`, `k:{"name":"web"}`, `v:"value"` or `i:3`.
#[derive(Debug, Clone, PartialEq)]
enum Element {
    Field(String),
    Key(Map<String, Value>),
    Value(Value),
    Index(usize),
}

/// A node of a manager's field set. A node with no children is an owned leaf; `dot` marks a
/// node (list item, map) whose existence itself is owned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldNode {
    dot: bool,
    children: Vec<(Element, FieldNode)>,
}

impl FieldNode {
    /// Takes the FieldsV1 value apart rather than copying it: its keys become the elements
    /// (`f:` names with their prefix cut off in place), one allocation fewer per field of every
    /// manager of every live object.
    pub(crate) fn parse(value: Value) -> FieldNode {
        let mut node = FieldNode::default();
        let Value::Object(map) = value else {
            return node;
        };
        for (key, child) in map {
            node.add(Cow::Owned(key), || FieldNode::parse(child));
        }
        node
    }

    /// An empty node with room for `children` children.
    pub(crate) fn with_capacity(children: usize) -> FieldNode {
        FieldNode {
            dot: false,
            children: Vec::with_capacity(children),
        }
    }

    /// Add the child under a FieldsV1 key (`f:name`, `k:{…}`, `v:…`, `i:3`; `.` marks the node
    /// itself owned). Children are added in the keys' order (a FieldsV1 object's, as parsed);
    /// `child` is not called for a key of no known form, which is skipped. An owned key becomes
    /// the field's name in place.
    pub(crate) fn add(&mut self, key: Cow<'_, str>, child: impl FnOnce() -> FieldNode) {
        if key == "." {
            self.dot = true;
            return;
        }
        // Not `split_at`: it panics on a key whose second character is more than one byte
        // long (`aé`); such a key is of no known form and is skipped like any other.
        let Some(prefix) = key.get(..2) else {
            return;
        };
        let rest = &key[2..];
        let element = match prefix {
            "f:" => Element::Field(match key {
                Cow::Owned(mut key) => {
                    key.replace_range(..2, "");
                    key
                }
                Cow::Borrowed(key) => key[2..].to_string(),
            }),
            "k:" => match serde_json::from_str(rest) {
                Ok(Value::Object(m)) => Element::Key(m),
                _ => return,
            },
            "v:" => match serde_json::from_str(rest) {
                Ok(v) => Element::Value(v),
                _ => return,
            },
            "i:" => match rest.parse() {
                Ok(i) => Element::Index(i),
                _ => return,
            },
            _ => return,
        };
        self.children.push((element, child()));
    }

    /// Owned as a whole: a leaf, or a node whose existence the manager owns.
    pub fn is_whole(&self) -> bool {
        self.dot || self.children.is_empty()
    }

    fn field(&self, name: &str) -> Option<&FieldNode> {
        self.children.iter().find_map(|(e, n)| match e {
            Element::Field(f) if f == name => Some(n),
            _ => None,
        })
    }

    fn item(&self, index: usize, item: &Value) -> Option<&FieldNode> {
        self.children.iter().find_map(|(e, n)| {
            let hit = match e {
                Element::Key(keys) => key_matches(keys, item, false),
                Element::Value(v) => v == item,
                Element::Index(i) => *i == index,
                Element::Field(_) => false,
            };
            hit.then_some(n)
        })
    }
}

/// Whether a list item carries the key fields of a `k:` element. On the desired side, key fields
/// the server defaults (a port's `protocol`) may be missing: `lenient` lets them be.
fn key_matches(keys: &Map<String, Value>, item: &Value, lenient: bool) -> bool {
    let mut matched = 0;
    for (k, v) in keys {
        match item.get(k) {
            Some(have) if have == v => matched += 1,
            Some(have) if have.as_str().is_some() && have.as_str() == v.as_str() => matched += 1,
            None if lenient => {}
            _ => return false,
        }
    }
    matched > 0
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManagerEntry {
    pub manager: String,
    pub operation: String,
    pub time: Option<String>,
    fields: FieldNode,
}

impl ManagerEntry {
    /// One entry of `metadata.managedFields`, its field set taken out by `fields` (called only
    /// for an entry kept): `None` for the status subresource's entry (status is never
    /// compared), and for an entry without a manager or a field set.
    pub(crate) fn read(
        mut entry: Map<String, Value>,
        fields: impl FnOnce(&mut Map<String, Value>) -> Option<FieldNode>,
    ) -> Option<ManagerEntry> {
        if entry.get("subresource").and_then(Value::as_str) == Some("status") {
            return None;
        }
        let mut text = |key: &str| match entry.remove(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let manager = text("manager")?;
        let operation = text("operation").unwrap_or_default();
        let time = text("time");
        Some(ManagerEntry {
            manager,
            operation,
            time,
            fields: fields(&mut entry)?,
        })
    }
}

/// All managers' field sets for one live object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ownership {
    entries: Vec<ManagerEntry>,
}

/// A manager found to own (part of) a path, and whether it owns the node as a whole.
pub struct Owner<'a> {
    pub entry: &'a ManagerEntry,
    pub whole: bool,
}

impl Ownership {
    /// Read `metadata.managedFields`; entries for the status subresource are left out (status is
    /// never compared).
    pub fn from_managed_fields(managed: Value) -> Option<Ownership> {
        let Value::Array(items) = managed else {
            return None;
        };
        let entries = items
            .into_iter()
            .filter_map(|e| match e {
                Value::Object(map) => {
                    ManagerEntry::read(map, |e| e.remove("fieldsV1").map(FieldNode::parse))
                }
                _ => None,
            })
            .collect();
        Some(Ownership { entries })
    }

    /// Managers whose field set reaches `path` (the node or anything below it) in `live`.
    pub fn owners<'a>(&'a self, live: &Value, path: &FieldPath) -> Vec<Owner<'a>> {
        self.entries
            .iter()
            // An entry with no fields (left after dropping status) owns nothing.
            .filter(|entry| !entry.fields.children.is_empty())
            .filter_map(|entry| {
                find(&entry.fields, live, &path.0).map(|node| Owner {
                    entry,
                    whole: node.is_whole(),
                })
            })
            .collect()
    }

    /// The entries read by [`ManagerEntry::read`], in their order.
    pub(crate) fn from_entries(entries: Vec<ManagerEntry>) -> Ownership {
        Ownership { entries }
    }

    pub fn entries(&self) -> &[ManagerEntry] {
        &self.entries
    }

    /// Remove every field a manager owns from both objects (Argo CD's
    /// `ignoreDifferences.managedFieldsManagers`): those fields are that manager's business.
    pub fn strip_manager(&self, manager: &str, live: &mut Value, desired: &mut Value) {
        for entry in self.entries.iter().filter(|e| e.manager == manager) {
            strip(&entry.fields, live, false);
            strip(&entry.fields, desired, true);
        }
    }
}

fn find<'a>(node: &'a FieldNode, live: &Value, steps: &[Step]) -> Option<&'a FieldNode> {
    let Some((step, rest)) = steps.split_first() else {
        return Some(node);
    };
    // A leaf owns its whole value: an atomic list or map, and everything inside it.
    if node.children.is_empty() {
        return Some(node);
    }
    match step {
        Step::Field(name) => {
            let child = node.field(name)?;
            // The live value is read only for a list item further down, matched by its keys: a
            // lookup at every step was 0.5% of the instructions of a diff of `kubectl get -o yaml`
            // dumps.
            let below = if rest.iter().any(|s| matches!(s, Step::Item { .. })) {
                live.get(name.as_str()).unwrap_or(&Value::Null)
            } else {
                &Value::Null
            };
            find(child, below, rest)
        }
        Step::Item { index, .. } => {
            let item = live.get(*index)?;
            let child = node.item(*index, item)?;
            find(child, item, rest)
        }
    }
}

/// Remove what `node` owns from `value`; returns whether the value became empty and should be
/// removed by the caller. `lenient` is for the desired side, where list items may lack key fields
/// the server defaults.
fn strip(node: &FieldNode, value: &mut Value, lenient: bool) -> bool {
    match value {
        Value::Object(map) => {
            for (element, child) in &node.children {
                let Element::Field(name) = element else {
                    continue;
                };
                let remove = match map.get_mut(name) {
                    Some(_) if child.children.is_empty() => true,
                    Some(v) => strip(child, v, lenient),
                    None => false,
                };
                if remove {
                    map.remove(name);
                }
            }
            map.is_empty()
        }
        Value::Array(items) => {
            let mut remove = Vec::new();
            for (index, item) in items.iter_mut().enumerate() {
                let child = node.children.iter().find_map(|(e, n)| {
                    let hit = match e {
                        Element::Key(keys) => key_matches(keys, item, lenient),
                        Element::Value(v) => v == item,
                        Element::Index(i) => *i == index,
                        Element::Field(_) => false,
                    };
                    hit.then_some(n)
                });
                let Some(child) = child else { continue };
                if child.children.is_empty() || strip(child, item, lenient) {
                    remove.push(index);
                }
            }
            for index in remove.into_iter().rev() {
                items.remove(index);
            }
            items.is_empty()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ownership() -> Ownership {
        Ownership::from_managed_fields(json!([
            {"manager": "argocd-controller", "operation": "Apply", "time": "2024-01-01T00:00:00Z",
             "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}},
            {"manager": "kubectl-edit", "operation": "Update", "time": "2024-01-02T00:00:00Z",
             "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {"f:env": {".": {}, "k:{\"name\":\"DEBUG\"}": {".": {}, "f:name": {}, "f:value": {}}}}}}}}}}
        ]))
        .unwrap()
    }

    fn live() -> Value {
        json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx", "env": [{"name": "DEBUG", "value": "1"}],
             "terminationMessagePath": "/dev/termination-log"}]}}}})
    }

    /// Keys of no known form are skipped, whatever characters they hold (`aé` made the reader
    /// panic: `split_at` in the middle of `é`).
    #[test]
    fn field_keys_of_no_known_form_are_skipped() {
        let own = Ownership::from_managed_fields(json!([{"manager": "m", "fieldsV1":
            {"aé": {}, "é": {}, "f": {}, "f:": {}, "k:[1]": {}, "i:x": {}, "v:{": {}, "f:ok": {}}}]))
        .unwrap();
        let elements: Vec<_> = own.entries[0]
            .fields
            .children
            .iter()
            .map(|(e, _)| e.clone())
            .collect();
        assert_eq!(
            elements,
            [Element::Field(String::new()), Element::Field("ok".into())]
        );
    }

    #[test]
    fn owners_are_found_by_list_key() {
        let own = ownership();
        let live = live();
        let path = FieldPath::parse("spec.template.spec.containers[0].env[0]").unwrap();
        let owners = own.owners(&live, &path);
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].entry.manager, "kubectl-edit");
        assert!(owners[0].whole);
        let default =
            FieldPath::parse("spec.template.spec.containers[0].terminationMessagePath").unwrap();
        assert!(own.owners(&live, &default).is_empty());
    }

    #[test]
    fn stripping_a_manager_removes_its_fields_from_both_sides() {
        let own = ownership();
        let mut live = live();
        let mut desired = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx", "env": [{"name": "DEBUG", "value": "0"}]}]}}}});
        own.strip_manager("kubectl-edit", &mut live, &mut desired);
        assert!(live
            .pointer("/spec/template/spec/containers/0/env")
            .is_none());
        assert!(desired
            .pointer("/spec/template/spec/containers/0/env")
            .is_none());
        assert_eq!(
            live.pointer("/spec/template/spec/containers/0/image"),
            Some(&json!("nginx"))
        );
    }
}
