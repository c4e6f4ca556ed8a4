//! Argo CD's `knownTypeFields`: fields of custom resources that hold a Kubernetes type (a
//! `PodSpec` in a Rollout, a `Duration` in a cert-manager Certificate), compared as that type
//! compares them rather than as raw JSON.
//!
//! Argo CD re-marshals such a field through the Go type on both sides before diffing
//! (util/argo/normalizers/knowntypes_normalizer.go): a quantity takes its canonical form
//! (`2000m` → `2`, `1.25G` → `1250M`), a duration too (`8760h` → `8760h0m0s`), and a struct drops
//! its empty `omitempty` fields (`readOnly: false`). The path is dot-separated, and a list met
//! on the way is entered item by item. The group and kind must match exactly; an unsupported
//! type is skipped with a warning, as Argo CD skips it. An Argo Rollout's `spec.template.spec`
//! is a `core/v1/PodSpec` unless configured otherwise.
//!
//! Here the same outcome without Go's types: where desired and live hold equal quantities or
//! durations at such a field, the desired side takes the live spelling; inside a struct type,
//! empty values are dropped on both sides, and quantities compare by value as everywhere else.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::quantity::Quantity;

/// What a known field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownType {
    /// `core/Quantity`.
    Quantity,
    /// `meta/v1/Duration`.
    Duration,
    /// `core/v1/<Type>` (a struct of the core API).
    Struct(String),
}

impl KnownType {
    fn parse(text: &str) -> Option<KnownType> {
        match text {
            "core/Quantity" => Some(KnownType::Quantity),
            "meta/v1/Duration" => Some(KnownType::Duration),
            t => t
                .strip_prefix("core/v1/")
                .filter(|name| {
                    name.starts_with(|c: char| c.is_ascii_uppercase())
                        && name.chars().all(|c| c.is_ascii_alphanumeric())
                })
                .map(|name| KnownType::Struct(name.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct KnownField {
    path: Vec<String>,
    known: KnownType,
}

/// The known fields by group and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownTypes {
    fields: BTreeMap<(String, String), Vec<KnownField>>,
}

impl Default for KnownTypes {
    /// Argo CD's built-in: `argoproj.io/Rollout` `spec.template.spec` is a `core/v1/PodSpec`.
    fn default() -> KnownTypes {
        KnownTypes::from_overrides(BTreeMap::new()).0
    }
}

/// One entry of an override's `knownTypeFields`.
#[derive(Debug, Clone, Deserialize)]
pub struct KnownTypeField {
    #[serde(default)]
    pub field: String,
    #[serde(default, rename = "type")]
    pub known: String,
}

impl KnownTypes {
    /// From Argo CD's resource overrides (key `<group>/<kind>` or `<kind>`): the known fields,
    /// and a warning per entry skipped as Argo CD skips it.
    pub fn from_overrides(
        overrides: BTreeMap<String, Vec<KnownTypeField>>,
    ) -> (KnownTypes, Vec<String>) {
        let mut fields: BTreeMap<(String, String), Vec<KnownField>> = BTreeMap::new();
        let mut warnings = Vec::new();
        for (key, entries) in overrides {
            let (group, kind) = match key.split('/').collect::<Vec<_>>().as_slice() {
                [group, kind] => (group.to_string(), kind.to_string()),
                [kind] => (String::new(), kind.to_string()),
                _ => {
                    warnings.push(format!(
                        "override key must be <group>/<kind> or <kind>, got: {key:?}"
                    ));
                    continue;
                }
            };
            for entry in entries {
                match KnownType::parse(&entry.known) {
                    Some(known) => fields
                        .entry((group.clone(), kind.clone()))
                        .or_default()
                        .push(KnownField {
                            path: entry.field.split('.').map(str::to_string).collect(),
                            known,
                        }),
                    None => warnings.push(format!(
                        "{key} knownTypeFields field {:?}: type {:?} is not supported",
                        entry.field, entry.known
                    )),
                }
            }
        }
        // knowntypes_normalizer.go ensureDefaultCRDsConfigured.
        fields
            .entry(("argoproj.io".to_string(), "Rollout".to_string()))
            .or_insert_with(|| {
                vec![KnownField {
                    path: vec!["spec".into(), "template".into(), "spec".into()],
                    known: KnownType::Struct("PodSpec".into()),
                }]
            });
        (KnownTypes { fields }, warnings)
    }

    /// Whether any field of this group and kind is known.
    pub fn applies_to(&self, group: &str, kind: &str) -> bool {
        self.fields
            .contains_key(&(group.to_string(), kind.to_string()))
    }

    /// Bring desired and live to the forms Argo CD compares for this kind's known fields.
    pub fn align(&self, group: &str, kind: &str, desired: &mut Value, live: &mut Value) {
        let Some(fields) = self.fields.get(&(group.to_string(), kind.to_string())) else {
            return;
        };
        for f in fields {
            align_at(desired, Some(live), &f.path, &f.known);
        }
    }
}

/// Walk `path` on the desired side (the live side alongside, where it has the same shape),
/// entering lists item by item, and align the values at its end.
fn align_at(desired: &mut Value, mut live: Option<&mut Value>, path: &[String], known: &KnownType) {
    let Some((first, rest)) = path.split_first() else {
        align_value(desired, live, known);
        return;
    };
    let Some(d) = desired.get_mut(first.as_str()) else {
        if let Some(l) = live.and_then(|l| l.get_mut(first.as_str())) {
            align_at_live_only(l, rest, known);
        }
        return;
    };
    let l = live.as_mut().and_then(|l| l.get_mut(first.as_str()));
    match d {
        Value::Array(items) if !rest.is_empty() => {
            let mut live_items = match l {
                Some(Value::Array(live_items)) => live_items.iter_mut().map(Some).collect(),
                _ => Vec::new(),
            };
            live_items.resize_with(items.len(), || None);
            for (item, l) in items.iter_mut().zip(live_items) {
                align_at(item, l, rest, known);
            }
        }
        Value::Array(items) if matches!(known, KnownType::Struct(_)) => {
            let mut live_items = match l {
                Some(Value::Array(live_items)) => live_items.iter_mut().map(Some).collect(),
                _ => Vec::new(),
            };
            live_items.resize_with(items.len(), || None);
            for (item, l) in items.iter_mut().zip(live_items) {
                align_value(item, l, known);
            }
        }
        d => align_at(d, l, rest, known),
    }
}

/// A field only the live side has: its struct empties are dropped all the same.
fn align_at_live_only(live: &mut Value, path: &[String], known: &KnownType) {
    if !matches!(known, KnownType::Struct(_)) {
        return;
    }
    match path.split_first() {
        None => match live {
            Value::Array(items) => items.iter_mut().for_each(drop_empty),
            v => drop_empty(v),
        },
        Some((first, rest)) => match live {
            Value::Array(items) => items
                .iter_mut()
                .for_each(|i| align_at_live_only(i, path, known)),
            Value::Object(map) => {
                if let Some(v) = map.get_mut(first.as_str()) {
                    align_at_live_only(v, rest, known);
                }
            }
            _ => {}
        },
    }
}

fn align_value(desired: &mut Value, live: Option<&mut Value>, known: &KnownType) {
    match known {
        KnownType::Quantity => {
            if let Some(l) = live {
                if Quantity::from_value(desired).is_some()
                    && Quantity::from_value(desired) == Quantity::from_value(l)
                {
                    *desired = l.clone();
                }
            }
        }
        KnownType::Duration => {
            if let Some(l) = live {
                let parse = |v: &Value| v.as_str().and_then(parse_duration);
                if parse(desired).is_some() && parse(desired) == parse(l) {
                    *desired = l.clone();
                }
            }
        }
        KnownType::Struct(_) => {
            drop_empty(desired);
            if let Some(l) = live {
                drop_empty(l);
            }
        }
    }
}

/// Go's `omitempty` on re-marshalling: empty strings, `false`, zero numbers, empty lists and
/// maps, and nulls leave their object.
fn drop_empty(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(drop_empty);
            map.retain(|_, v| !is_empty(v));
        }
        Value::Array(items) => items.iter_mut().for_each(drop_empty),
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

/// A Go duration (`time.ParseDuration`: `1h2m3.5s`, `300ms`, `-1.5h`, `0`) in nanoseconds.
pub fn parse_duration(text: &str) -> Option<i128> {
    let (sign, mut rest) = match text.as_bytes().first()? {
        b'-' => (-1, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let int: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let mut value = int.checked_mul(scale)?;
        let mut place = scale;
        for c in frac_part.chars() {
            place /= 10;
            value += i128::from(c as u8 - b'0') * place;
        }
        total = total.checked_add(value)?;
        rest = next;
    }
    Some(sign * total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn types(key: &str, field: &str, known: &str) -> KnownTypes {
        let overrides = BTreeMap::from([(
            key.to_string(),
            vec![KnownTypeField {
                field: field.into(),
                known: known.into(),
            }],
        )]);
        let (types, warnings) = KnownTypes::from_overrides(overrides);
        assert!(warnings.is_empty(), "{warnings:?}");
        types
    }

    // The cases of Argo CD's knowntypes_normalizer_test.go, as desired/live pairs: what Argo
    // CD normalises to the same text compares equal here.
    #[test]
    fn quantities_and_durations_at_a_known_field_compare_by_value() {
        let t = types("some.io/TestCRD", "spec.ram", "core/Quantity");
        let mut d = json!({"spec": {"ram": "1.25G"}});
        let mut l = json!({"spec": {"ram": "1250M"}});
        t.align("some.io", "TestCRD", &mut d, &mut l);
        assert_eq!(d, l);
        let mut d = json!({"spec": {"ram": "1.5G"}});
        t.align("some.io", "TestCRD", &mut d, &mut l);
        assert_eq!(
            d["spec"]["ram"], "1.5G",
            "a different value stays different"
        );
        // Group and kind match exactly.
        let mut d = json!({"spec": {"ram": "1.25G"}});
        t.align("some.io", "OtherCRD", &mut d, &mut l);
        assert_eq!(d["spec"]["ram"], "1.25G");

        let t = types(
            "cert-manager.io/Certificate",
            "spec.duration",
            "meta/v1/Duration",
        );
        let mut d = json!({"spec": {"duration": "8760h"}});
        let mut l = json!({"spec": {"duration": "8760h0m0s"}});
        t.align("cert-manager.io", "Certificate", &mut d, &mut l);
        assert_eq!(d, l);
        assert_eq!(parse_duration("1h30m"), parse_duration("90m"));
        assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("10"), None, "a unit is required but for 0");
        assert_eq!(parse_duration("1d"), None);
    }

    #[test]
    fn struct_fields_drop_their_empties_through_nested_lists() {
        let t = types(
            "some.io/TestCRD",
            "spec.templates.spec.containers",
            "core/v1/Container",
        );
        let mut d = json!({"spec": {"templates": [{"spec": {"containers": [
            {"name": "app", "volumeMounts": [{"name": "c", "mountPath": "/c", "readOnly": false}]}
        ]}}]}});
        let mut l = json!({"spec": {"templates": [{"spec": {"containers": [
            {"name": "app", "volumeMounts": [{"name": "c", "mountPath": "/c"}]}
        ]}}]}});
        t.align("some.io", "TestCRD", &mut d, &mut l);
        assert_eq!(d, l);
        // A path that is not there changes nothing (TestFieldDoesNotExist).
        let t = types("some.io/TestCRD", "fieldDoesNotExist", "core/v1/PodSpec");
        let mut d = json!({"spec": {"x": false}});
        let before = d.clone();
        t.align("some.io", "TestCRD", &mut d, &mut l);
        assert_eq!(d, before);
    }

    #[test]
    fn rollouts_are_preconfigured_and_unknown_types_are_skipped_with_a_warning() {
        let t = KnownTypes::default();
        assert!(t.applies_to("argoproj.io", "Rollout"));
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "stdin": false}]}}}});
        let mut l = json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}});
        t.align("argoproj.io", "Rollout", &mut d, &mut l);
        assert_eq!(d, l);

        let overrides = BTreeMap::from([
            (
                "Pod".to_string(),
                vec![KnownTypeField {
                    field: "spec".into(),
                    known: "core/v1/PodSpec".into(),
                }],
            ),
            (
                "some.io/TestCRD".to_string(),
                vec![KnownTypeField {
                    field: "spec.x".into(),
                    known: "apps/v1/DeploymentSpec".into(),
                }],
            ),
        ]);
        let (t, warnings) = KnownTypes::from_overrides(overrides);
        assert!(t.applies_to("", "Pod"), "an override key without a group");
        assert!(!t.applies_to("some.io", "TestCRD"));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("is not supported"), "{warnings:?}");
    }
}
