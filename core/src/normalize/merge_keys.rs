//! Which field(s) identify the items of a list (Kubernetes' strategic-merge keys), so that lists
//! are compared item by item by key, not by position.

use std::borrow::Cow;

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
    // Nearly every key is one field: no splitting for it.
    if !dotted.as_bytes().contains(&b'.') {
        return item.get(dotted);
    }
    dotted.split('.').try_fold(item, |v, part| v.get(part))
}

/// Scalars only: a key must be a string or number to name an item.
fn key_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// The key fields that identify items of the list `field`, if the lists' contents allow one.
pub fn list_key(field: &str, desired: &[Value], live: &[Value]) -> Option<&'static [&'static str]> {
    candidates(field)
        .iter()
        .copied()
        .find(|key| [desired, live].iter().all(|items| unique_keys(items, key)))
}

/// Whether every item has the key and no two share it. The keys are borrowed from the items and
/// sorted, so a long list (hundreds of `env` entries) costs n log n comparisons, not n².
fn unique_keys(items: &[Value], key: &[&str]) -> bool {
    if let [item] = items {
        return item_key(item, key).is_some();
    }
    let Some(mut keys) = items
        .iter()
        .map(|item| item_key(item, key))
        .collect::<Option<Vec<ItemKey<'_>>>>()
    else {
        return false;
    };
    keys.sort_unstable();
    keys.windows(2).all(|pair| pair[0] != pair[1])
}

/// The key of one item, comparable as text (`8080` equals `"8080"`).
pub type ItemKey<'a> = Vec<Cow<'a, str>>;

/// The key of one item as comparable text.
pub fn item_key<'a>(item: &'a Value, key: &[&str]) -> Option<ItemKey<'a>> {
    let mut texts = ItemKey::with_capacity(key.len());
    for k in key {
        texts.push(lookup(item, k).and_then(key_text)?);
    }
    Some(texts)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items(v: Value) -> Vec<Value> {
        v.as_array().cloned().unwrap_or_default()
    }

    #[test]
    fn a_list_is_keyed_only_when_every_item_has_a_key_no_other_item_shares() {
        let containers = items(json!([{"name": "a"}, {"name": "b"}]));
        assert_eq!(
            list_key("containers", &containers, &[]),
            Some(&["name"][..])
        );
        let shared = items(json!([{"name": "a"}, {"name": "a"}]));
        assert_eq!(list_key("containers", &containers, &shared), None);
        let one = items(json!([{"name": "a"}]));
        assert_eq!(list_key("containers", &one, &one), Some(&["name"][..]));
        let unnamed = items(json!([{"image": "x"}]));
        assert_eq!(list_key("containers", &one, &unnamed), None);
        let missing = items(json!([{"name": "a"}, {"image": "x"}]));
        assert_eq!(list_key("containers", &missing, &containers), None);
        // Container ports: `containerPort` first; Service ports have none, so `port`.
        let service = items(json!([{"port": 80}, {"port": 443}]));
        assert_eq!(list_key("ports", &service, &service), Some(&["port"][..]));
        // The same port on two protocols shares `port`: `name` tells them apart.
        let dns = items(json!([
            {"port": 53, "protocol": "UDP", "name": "dns"},
            {"port": 53, "protocol": "TCP", "name": "dns-tcp"}
        ]));
        assert_eq!(list_key("ports", &dns, &dns), Some(&["name"][..]));
    }

    #[test]
    fn keys_compare_as_text() {
        let number = json!({"containerPort": 8080});
        let text = json!({"containerPort": "8080"});
        let key = &["containerPort"][..];
        assert_eq!(item_key(&number, key), item_key(&text, key));
        let other = json!({"containerPort": 80});
        assert_ne!(item_key(&number, key), item_key(&other, key));
        // A key that is not a scalar names nothing.
        assert_eq!(item_key(&json!({"containerPort": {"a": 1}}), key), None);
        assert_eq!(
            item_key(&json!({"metadata": {"name": "data"}}), &["metadata.name"]),
            Some(vec![Cow::Borrowed("data")])
        );
        let both = items(json!([{"containerPort": 8080}, {"containerPort": "8080"}]));
        // 8080 and "8080" are one key twice, and no other candidate is there: by index.
        assert_eq!(list_key("ports", &both, &[]), None);
    }
}
