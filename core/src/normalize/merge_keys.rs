//! Which field(s) identify the items of a list (Kubernetes' strategic-merge keys), so that lists
//! are compared item by item by key, not by position.

use serde_json::Value;

use crate::path::Selector;

/// Key candidates by list field name, tried in order. A candidate applies only when every item on
/// both sides has all its fields and no two items on one side share a key; otherwise the next
/// candidate is tried, and a list with none is compared by index.
fn candidates(field: &str) -> &'static [&'static [&'static str]] {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => &[&["name"]],
        // Container ports merge on containerPort, Service ports on port (protocol is defaulted
        // by the server, so it cannot be part of the key we match Git against).
        "ports" => &[&["containerPort"], &["port"], &["name"]],
        "volumeMounts" => &[&["mountPath"]],
        "volumeDevices" => &[&["devicePath"]],
        "hostAliases" => &[&["ip"]],
        "readinessGates" => &[&["conditionType"]],
        "topologySpreadConstraints" => &[&["topologyKey", "whenUnsatisfiable"]],
        "ownerReferences" => &[&["uid"]],
        "conditions" => &[&["type"]],
        "volumeClaimTemplates" => &[&["metadata.name"]],
        _ => &[&["name"]],
    }
}

fn lookup<'a>(item: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(item, |v, part| v.get(part))
}

/// Scalars only: a key must be a string or number to name an item.
fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The key fields that identify items of the list `field`, if the lists' contents allow one.
pub fn list_key(field: &str, desired: &[Value], live: &[Value]) -> Option<&'static [&'static str]> {
    candidates(field).iter().copied().find(|key| {
        [desired, live].iter().all(|items| {
            let mut seen = std::collections::HashSet::new();
            items
                .iter()
                .all(|item| item_key(item, key).is_some_and(|k| seen.insert(k)))
        })
    })
}

/// The key of one item as comparable text.
pub fn item_key(item: &Value, key: &[&str]) -> Option<Vec<String>> {
    key.iter()
        .map(|k| lookup(item, k).and_then(key_text))
        .collect()
}

/// The readable selector for one item (`[name=web]`).
pub fn selector(item: &Value, key: &[&str]) -> Selector {
    Selector::Key(
        key.iter()
            .map(|k| {
                (
                    k.to_string(),
                    lookup(item, k).cloned().unwrap_or(Value::Null),
                )
            })
            .collect(),
    )
}

/// Key for one list with no counterpart on the other side (an added or removed list).
pub fn single_list_key(field: &str, items: &[Value]) -> Option<&'static [&'static str]> {
    list_key(field, items, &[])
}

/// Find the item a selector names. Keys compare as text, so `8080` finds `"8080"`.
pub fn find_item(items: &[Value], selector: &Selector) -> Option<usize> {
    match selector {
        Selector::Index(i) => (*i < items.len()).then_some(*i),
        Selector::Key(pairs) => items.iter().position(|item| {
            pairs
                .iter()
                .all(|(k, v)| lookup(item, k).and_then(key_text) == key_text(v))
        }),
    }
}
