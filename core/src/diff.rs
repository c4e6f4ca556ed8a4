//! Desired vs live for one object: the list of changes (field by field, list items matched by
//! merge key), plus a JSON Patch and a unified text diff of the normalised objects.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::manifest::ResourceKey;
use crate::normalize::ignore::IgnoreRule;
use crate::normalize::merge_keys::{item_key, list_key, selector};
use crate::normalize::{
    equivalent, Attribution, LiveContext, LiveOnly, Managers, Prepared, TrackingKeys,
};
use crate::path::{FieldPath, Selector, Step};
use crate::redact::{is_secret, Redactor};

/// What happened to live relative to Git: `add` — live has a field Git does not; `remove` — live
/// lacks a field Git has; `replace` — the values differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Add,
    Remove,
    Replace,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Remove => "remove",
            Op::Replace => "replace",
        }
    }

    pub fn parse(text: &str) -> Option<Op> {
        match text {
            "add" => Some(Op::Add),
            "remove" => Some(Op::Remove),
            "replace" => Some(Op::Replace),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: FieldPath,
    pub op: Op,
    pub desired: Option<Value>,
    pub live: Option<Value>,
    pub attribution: Attribution,
}

/// The outcome of comparing one pair.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub changes: Vec<Change>,
    /// Normalised desired object, aligned to live (equivalent values, list order).
    pub desired: Value,
    /// Normalised live object (defaults removed); built only when there are changes.
    pub live: Option<Value>,
    /// Live-only fields nothing could judge (no managedFields): neither drift nor default.
    pub unverified: Vec<FieldPath>,
}

/// Everything the comparison needs besides the two objects.
pub struct CompareOptions<'a> {
    pub managers: &'a Managers,
    pub tracking: &'a TrackingKeys,
    pub ignore: &'a [IgnoreRule],
    /// The application's own `spec.ignoreDifferences`, applied after the policy's.
    pub app_ignore: &'a [IgnoreRule],
}

/// Compare a desired object with its live counterpart.
pub fn compare(
    desired: &Prepared,
    live: &Prepared,
    options: &CompareOptions<'_>,
    redactor: &mut Redactor,
) -> Comparison {
    compare_object(
        desired.object.clone(),
        &desired.key,
        live,
        options,
        redactor,
    )
}

/// [`compare`] on a desired object the caller already owns, so that it is not copied again: the
/// walk changes it into the normalised desired object. `key` is the desired object's.
pub fn compare_object(
    desired_object: Value,
    key: &ResourceKey,
    live: &Prepared,
    options: &CompareOptions<'_>,
    redactor: &mut Redactor,
) -> Comparison {
    let mut d = desired_object;
    // The live object is only copied when something has to change in it.
    let mut l = Cow::Borrowed(&live.object);
    // Argo CD adds its tracking label at apply time; only compare it when Git sets it too.
    if label(&d, &options.tracking.label).is_none() && label(&l, &options.tracking.label).is_some()
    {
        remove_label(l.to_mut(), &options.tracking.label);
    }
    let rules = options.ignore.iter().chain(options.app_ignore);
    for rule in rules.filter(|r| r.applies_to(key)) {
        rule.apply(&mut d, l.to_mut(), live.ownership.as_ref());
    }
    if is_secret(&key.group, &key.kind) {
        redactor.redact_secret(&mut d);
        redactor.redact_secret(l.to_mut());
    }
    let l: &Value = &l;
    let ctx = LiveContext {
        kind: &key.kind,
        live: l,
        ownership: live.ownership.as_ref(),
        last_applied: live.last_applied.as_ref(),
        managers: options.managers,
    };
    let mut walk = Walk {
        ctx,
        changes: Vec::new(),
        defaults: Defaults::default(),
        unverified: Vec::new(),
        path: FieldPath::root(),
    };
    walk.values(&mut d, l);
    let Walk {
        mut changes,
        defaults,
        unverified,
        ..
    } = walk;
    // Report in path order, whatever order the walk met them in (Git's fields, then live's).
    changes.sort_by(|a, b| compare_steps(&a.path.0, &b.path.0));
    let live_normalised = (!changes.is_empty()).then(|| defaults.pruned(l));
    Comparison {
        changes,
        desired: d,
        live: live_normalised,
        unverified,
    }
}

fn compare_steps(a: &[Step], b: &[Step]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x, y) {
            (Step::Field(x), Step::Field(y)) => x.cmp(y),
            (Step::Item { index: x, .. }, Step::Item { index: y, .. }) => x.cmp(y),
            (Step::Field(_), Step::Item { .. }) => std::cmp::Ordering::Less,
            (Step::Item { .. }, Step::Field(_)) => std::cmp::Ordering::Greater,
        };
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

fn label<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object.get("metadata")?.get("labels")?.get(key)
}

fn remove_label(object: &mut Value, key: &str) {
    if let Some(Value::Object(labels)) =
        object.get_mut("metadata").and_then(|m| m.get_mut("labels"))
    {
        labels.remove(key);
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

struct Walk<'a> {
    ctx: LiveContext<'a>,
    changes: Vec<Change>,
    /// Live-only paths judged to be defaults: taken out of the normalised live object.
    defaults: Defaults,
    /// Live-only paths nothing could judge (also taken out: they are not drift).
    unverified: Vec<FieldPath>,
    path: FieldPath,
}

/// The live values judged to be defaults, kept only to take them out of the normalised live
/// object when the pair has changes (a fifth of pairs on the 2,000-pair corpus). Nearly every
/// live object has some, so each is kept as the address of its value in the live object, which
/// the walk only reads: kept as a copy of its path (items by position), they cost 1.2% more of a
/// diff's instructions (callgrind, 2,000-pair corpus, `kubectl get -o yaml` form).
#[derive(Default)]
struct Defaults {
    addresses: Vec<usize>,
}

fn address(value: &Value) -> usize {
    std::ptr::from_ref(value) as usize
}

impl Defaults {
    fn push(&mut self, value: &Value) {
        self.addresses.push(address(value));
    }

    fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Keep the first `len`.
    fn truncate(&mut self, len: usize) {
        self.addresses.truncate(len);
    }

    /// A copy of `live` (the object walked) without its defaults; maps and lists that lose
    /// every entry that way go too.
    fn pruned(mut self, live: &Value) -> Value {
        self.addresses.sort_unstable();
        self.without(live)
    }

    fn without(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), self.kept(v)?)))
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.iter().filter_map(|v| self.kept(v)).collect())
            }
            other => other.clone(),
        }
    }

    fn kept(&self, value: &Value) -> Option<Value> {
        if self.addresses.binary_search(&address(value)).is_ok() {
            return None;
        }
        let kept = self.without(value);
        let emptied = match (&kept, value) {
            (Value::Object(k), Value::Object(v)) => k.is_empty() && !v.is_empty(),
            (Value::Array(k), Value::Array(v)) => k.is_empty() && !v.is_empty(),
            _ => false,
        };
        (!emptied).then_some(kept)
    }
}

impl Walk<'_> {
    fn last_field(&self, from_end: usize) -> Option<&str> {
        let steps = &self.path.0;
        let i = steps.len().checked_sub(1 + from_end)?;
        match &steps[i] {
            Step::Field(f) => Some(f),
            Step::Item { .. } => None,
        }
    }

    fn record(
        &mut self,
        op: Op,
        desired: Option<&Value>,
        live: Option<&Value>,
        attribution: Attribution,
    ) {
        self.changes.push(Change {
            path: self.path.clone(),
            op,
            desired: desired.cloned(),
            live: live.cloned(),
            attribution,
        });
    }

    fn values(&mut self, d: &mut Value, l: &Value) {
        match (d, l) {
            (Value::Object(dm), Value::Object(lm)) => self.objects(dm, lm),
            (Value::Array(da), Value::Array(la)) => self.arrays(da, la),
            (d, l) => {
                let field = self.last_field(0);
                let parent = self.last_field(1);
                if equivalent(parent, field, d, l) {
                    if d != l {
                        *d = l.clone();
                    }
                } else {
                    let attribution = self.ctx.owner_of(&self.path);
                    self.record(Op::Replace, Some(d), Some(l), attribution);
                }
            }
        }
    }

    fn objects(&mut self, dm: &mut Map<String, Value>, lm: &Map<String, Value>) {
        // Empty desired fields missing in live are dropped after the walk over the map.
        let mut empty = Vec::new();
        // Both maps iterate in key order (see `maps_iterate_in_key_order` in the tests): they
        // are walked side by side, so no key is searched for in the other map.
        let mut live = lm.iter().peekable();
        for (k, dv) in dm.iter_mut() {
            while let Some((lk, lv)) = live.next_if(|(lk, _)| lk.as_str() < k.as_str()) {
                self.live_only_field(lk, lv, lm);
            }
            self.path.0.push(Step::Field(k.as_str().into()));
            match live.next_if(|(lk, _)| *lk == k) {
                Some((_, lv)) => self.values(dv, lv),
                None if is_empty(dv) => empty.push(k.clone()),
                None => self.record(Op::Remove, Some(dv), None, Attribution::unknown()),
            }
            self.path.0.pop();
        }
        for (lk, lv) in live {
            self.live_only_field(lk, lv, lm);
        }
        for k in empty {
            dm.remove(&k);
        }
    }

    /// A field of the live map `parent` that the desired map lacks.
    fn live_only_field(&mut self, key: &str, lv: &Value, parent: &Map<String, Value>) {
        self.path.0.push(Step::Field(key.into()));
        self.live_only(lv, Some(parent), false);
        self.path.0.pop();
    }

    fn live_only(&mut self, lv: &Value, parent: Option<&Map<String, Value>>, is_item: bool) {
        if is_empty(lv) {
            self.defaults.push(lv);
            return;
        }
        match self.ctx.live_only(&self.path, lv, parent, is_item) {
            LiveOnly::Default => self.defaults.push(lv),
            LiveOnly::Unverified => {
                self.unverified.push(self.path.clone());
                self.defaults.push(lv);
            }
            LiveOnly::Drift(attribution) => self.record(Op::Add, None, Some(lv), attribution),
            LiveOnly::Descend => {
                let Value::Object(map) = lv else {
                    self.record(Op::Add, None, Some(lv), Attribution::unknown());
                    return;
                };
                let (changes_before, defaults_before) = (self.changes.len(), self.defaults.len());
                for (k, v) in map {
                    self.live_only_field(k, v, map);
                }
                if self.changes.len() == changes_before {
                    // Nothing inside was drift: drop the whole subtree as one default (what
                    // inside it is unverified stays named).
                    self.defaults.truncate(defaults_before);
                    self.defaults.push(lv);
                }
            }
        }
    }

    fn arrays(&mut self, da: &mut Vec<Value>, la: &[Value]) {
        if let Some(key) = list_key(self.last_field(0).unwrap_or_default(), da, la) {
            self.keyed_arrays(da, la, key);
            return;
        }
        let common = da.len().min(la.len());
        for (i, (dv, lv)) in da.iter_mut().zip(la).enumerate() {
            self.path.0.push(Step::Item {
                selector: Selector::Index(i),
                index: i,
            });
            self.values(dv, lv);
            self.path.0.pop();
        }
        // Items beyond the common length in a list without keys change the list's value: they
        // are never server defaults, so they are drift attributed to the list's owner.
        for (i, lv) in la.iter().enumerate().skip(common) {
            self.path.0.push(Step::Item {
                selector: Selector::Index(i),
                index: i,
            });
            let attribution = self.ctx.owner_of(&self.path);
            self.record(Op::Add, None, Some(lv), attribution);
            self.path.0.pop();
        }
        for (i, dv) in da.iter().enumerate().skip(common) {
            self.path.0.push(Step::Item {
                selector: Selector::Index(i),
                index: i,
            });
            self.record(Op::Remove, Some(dv), None, Attribution::unknown());
            self.path.0.pop();
        }
    }

    fn keyed_arrays(&mut self, da: &mut Vec<Value>, la: &[Value], key: &[&str]) {
        // The desired item each live item pairs with: the first with its key, unless an earlier
        // live item took it. Keys are borrowed from the items, so pairing comes first.
        let pairs: Vec<Option<usize>> = {
            let desired_keys: Vec<_> = da.iter().map(|v| item_key(v, key)).collect();
            let mut taken = vec![false; da.len()];
            la.iter()
                .map(|lv| {
                    let lk = item_key(lv, key);
                    let di = desired_keys
                        .iter()
                        .position(|dk| dk.is_some() && *dk == lk)?;
                    (!std::mem::replace(&mut taken[di], true)).then_some(di)
                })
                .collect()
        };
        let mut desired: Vec<Option<Value>> = std::mem::take(da).into_iter().map(Some).collect();
        let mut aligned = Vec::with_capacity(desired.len());
        for ((li, lv), di) in la.iter().enumerate().zip(pairs) {
            self.path.0.push(Step::Item {
                selector: selector(lv, key),
                index: li,
            });
            match di.and_then(|di| desired[di].take()) {
                Some(mut dv) => {
                    self.values(&mut dv, lv);
                    aligned.push(dv);
                }
                None => self.live_only(lv, None, true),
            }
            self.path.0.pop();
        }
        // Items in Git but not in live go after live's own, where a patch would append them.
        for (next_index, dv) in (la.len()..).zip(desired.into_iter().flatten()) {
            self.path.0.push(Step::Item {
                selector: selector(&dv, key),
                index: next_index,
            });
            self.record(Op::Remove, Some(&dv), None, Attribution::unknown());
            self.path.0.pop();
            aligned.push(dv);
        }
        *da = aligned;
    }
}

/// A JSON Patch (RFC 6902) turning the normalised live object into the normalised desired one.
pub fn patch(live: &Value, desired: &Value) -> json_patch::Patch {
    json_patch::diff(live, desired)
}

/// A unified diff of the normalised objects as YAML, live first (as `kubectl diff` shows it).
/// Keys are sorted so that Git's key order and the server's do not show up as differences.
pub fn text_diff(label: &str, live: &Value, desired: &Value) -> String {
    let live_text = serde_yaml::to_string(&sorted(live)).unwrap_or_default();
    let desired_text = serde_yaml::to_string(&sorted(desired)).unwrap_or_default();
    similar::TextDiff::from_lines(&live_text, &desired_text)
        .unified_diff()
        .context_radius(3)
        .header(&format!("live/{label}"), &format!("desired/{label}"))
        .to_string()
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Walk::objects` walks a desired and a live map side by side, which needs
    /// `serde_json::Map` to iterate in key order: a B-tree, as long as no dependency turns on
    /// serde_json's `preserve_order` (insertion order).
    #[test]
    fn maps_iterate_in_key_order() {
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"b": 1, "a": 2, "B": 3, "ab": 4, "a.b": 5}"#).unwrap();
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(keys, ["B", "a", "a.b", "ab", "b"]);
    }

    /// The normalised live object leaves out what was judged a default; a map or list that
    /// loses every entry that way goes too, an empty one that held no default stays.
    #[test]
    fn defaults_are_left_out_of_the_normalised_live_object() {
        let live = serde_json::json!({
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate"},
                "template": {"spec": {
                    "containers": [
                        {"name": "web", "imagePullPolicy": "Always"},
                        {"name": "side", "imagePullPolicy": "Always", "image": "x"}
                    ],
                    "volumes": []
                }}
            }
        });
        let spec = &live["spec"];
        let containers = &spec["template"]["spec"]["containers"];
        let mut defaults = Defaults::default();
        defaults.push(&spec["strategy"]["type"]);
        defaults.push(&containers[0]["name"]);
        defaults.push(&containers[0]["imagePullPolicy"]);
        defaults.push(&containers[1]["imagePullPolicy"]);
        defaults.push(&spec["replicas"]);
        defaults.truncate(4);
        assert_eq!(defaults.len(), 4);
        assert_eq!(
            defaults.pruned(&live),
            serde_json::json!({
                "spec": {
                    "replicas": 2,
                    "template": {"spec": {
                        "containers": [{"name": "side", "image": "x"}],
                        "volumes": []
                    }}
                }
            })
        );
    }

    /// Taking out one path at a time, last first, as the normalised live object was made before
    /// the defaults were kept by address.
    fn remove_at(value: &mut Value, steps: &[Step]) -> bool {
        let Some((step, rest)) = steps.split_first() else {
            return false;
        };
        match (step, value) {
            (Step::Field(name), Value::Object(map)) => {
                if rest.is_empty() {
                    map.remove(name.as_str());
                } else if let Some(child) = map.get_mut(name.as_str()) {
                    if remove_at(child, rest) {
                        map.remove(name.as_str());
                    }
                }
                map.is_empty()
            }
            (Step::Item { index, .. }, Value::Array(items)) => {
                if *index < items.len() && (rest.is_empty() || remove_at(&mut items[*index], rest))
                {
                    items.remove(*index);
                }
                items.is_empty()
            }
            _ => false,
        }
    }

    /// Pick defaults in walk order as the walk does: nothing inside a default is judged.
    fn pick<'v>(
        value: &'v Value,
        path: &mut Vec<Step>,
        choices: &mut impl Iterator<Item = bool>,
        picked: &mut Vec<(Vec<Step>, &'v Value)>,
    ) {
        let children: Vec<(Step, &Value)> = match value {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| (Step::Field(k.as_str().into()), v))
                .collect(),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let step = Step::Item {
                        selector: Selector::Index(i),
                        index: i,
                    };
                    (step, v)
                })
                .collect(),
            _ => return,
        };
        for (step, child) in children {
            path.push(step);
            if choices.next().unwrap_or(false) {
                picked.push((path.clone(), child));
            } else {
                pick(child, path, choices, picked);
            }
            path.pop();
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u8>().prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map("[a-d]{1,2}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn pruning_by_address_equals_removing_paths_last_first(
            live in json_value(),
            choices in proptest::collection::vec(proptest::prelude::any::<bool>(), 0..64),
        ) {
            let mut picked = Vec::new();
            pick(&live, &mut Vec::new(), &mut choices.into_iter(), &mut picked);
            let mut expected = live.clone();
            for (path, _) in picked.iter().rev() {
                remove_at(&mut expected, path);
            }
            let mut defaults = Defaults::default();
            for (_, value) in &picked {
                defaults.push(value);
            }
            proptest::prop_assert_eq!(defaults.pruned(&live), expected);
        }
    }
}
