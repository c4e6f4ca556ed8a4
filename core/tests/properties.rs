//! Properties of the engine over generated Kubernetes-like objects:
//! - an object compared with itself shows no drift;
//! - the JSON Patch turns the normalised live object into the normalised desired one;
//! - a change planted in the live copy of an object is reported, exactly and alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use argo_drift_core::diff::{compare, CompareOptions, Op};
use argo_drift_core::manifest::{Origin, Resource};
use argo_drift_core::normalize::{prepare, Managers, Prepared, TrackingKeys};
use argo_drift_core::redact::Redactor;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn prepared(object: Value) -> Prepared {
    let origin = Origin {
        source: "generated".into(),
        document: 1,
        item: None,
        line: 1,
    };
    prepare(
        Resource::from_object(object, origin).unwrap(),
        &TrackingKeys::default(),
    )
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::from),
        (-5i64..5000).prop_map(Value::from),
        "[a-z0-9./:-]{0,12}".prop_map(Value::from),
        Just(json!("100m")),
        Just(json!("1Gi")),
    ]
}

fn free_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z.]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn env() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[A-Z_]{1,6}", "[a-z0-9]{0,6}", 0..4).prop_map(|m| {
        Value::Array(
            m.into_iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect(),
        )
    })
}

/// A container without its name: the Deployment names it, uniquely.
fn container() -> impl Strategy<Value = Value> {
    (
        "(nginx|envoy|app):[0-9]\\.[0-9]{1,2}",
        env(),
        prop::option::of(prop_oneof![
            Just("250m"),
            Just("1"),
            Just("1000m"),
            Just("0.5")
        ]),
        prop::option::of(free_value()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(image, env, cpu, extra, privileged)| {
            let mut c = json!({"image": image, "env": env});
            if let Some(cpu) = cpu {
                c["resources"] = json!({"limits": {"cpu": cpu}});
            }
            if let Some(extra) = extra {
                c["x-extra"] = extra;
            }
            if let Some(p) = privileged {
                c["securityContext"] = json!({"privileged": p});
            }
            c
        })
}

prop_compose! {
    fn deployment()(
        replicas in 0u32..5,
        labels in prop::collection::btree_map("[a-z]{1,6}", "[a-z0-9]{0,6}", 0..3),
        containers in prop::collection::btree_map("[a-z]{1,6}", container(), 1..4),
        extra in prop::option::of(free_value()),
        args in prop::collection::vec("[a-z-]{1,6}", 0..3),
    ) -> Value {
        let containers: Vec<Value> = containers.into_iter().map(|(name, mut c)| {
            // The map key is unique, as container names must be.
            c["name"] = json!(name);
            c["args"] = json!(args);
            c
        }).collect();
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": labels},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": containers}}}
        });
        if let Some(extra) = extra {
            d["spec"]["x-extra"] = extra;
        }
        d
    }
}

fn options<'a>(managers: &'a Managers, tracking: &'a TrackingKeys) -> CompareOptions<'a> {
    CompareOptions {
        managers,
        tracking,
        ignore: &[],
        app_ignore: &[],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn an_object_compared_with_itself_has_no_drift(object in deployment()) {
        let (managers, tracking) = (Managers::default(), TrackingKeys::default());
        let p = prepared(object);
        let result = compare(&p, &p, &options(&managers, &tracking), &mut Redactor::new());
        prop_assert!(result.changes.is_empty(), "{:?}", result.changes);
    }

    #[test]
    fn the_patch_turns_normalised_live_into_normalised_desired(desired in deployment(), live in deployment()) {
        let (managers, tracking) = (Managers::default(), TrackingKeys::default());
        let result = compare(&prepared(desired), &prepared(live), &options(&managers, &tracking), &mut Redactor::new());
        if let Some(mut normalised_live) = result.live.clone() {
            prop_assert!(!result.changes.is_empty());
            let patch = argo_drift_core::diff::patch(&normalised_live, &result.desired);
            json_patch::patch(&mut normalised_live, &patch).unwrap();
            prop_assert_eq!(normalised_live, result.desired);
        } else {
            prop_assert!(result.changes.is_empty());
        }
    }

    #[test]
    fn a_planted_image_change_is_the_one_change_reported(object in deployment(), pick in any::<prop::sample::Index>()) {
        let (managers, tracking) = (Managers::default(), TrackingKeys::default());
        let mut live = object.clone();
        let containers = live["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap();
        let i = pick.index(containers.len());
        let name = containers[i]["name"].as_str().unwrap().to_string();
        let old = containers[i]["image"].clone();
        containers[i]["image"] = json!("registry.example/planted:9.9");
        let result = compare(&prepared(object), &prepared(live), &options(&managers, &tracking), &mut Redactor::new());
        prop_assert_eq!(result.changes.len(), 1, "{:?}", result.changes);
        let change = &result.changes[0];
        prop_assert_eq!(change.path.to_string(), format!("spec.template.spec.containers[name={name}].image"));
        prop_assert_eq!(change.path.pointer(), format!("/spec/template/spec/containers/{i}/image"));
        prop_assert_eq!(change.op, argo_drift_core::diff::Op::Replace);
        prop_assert_eq!(change.desired.clone(), Some(old));
        prop_assert_eq!(change.live.clone(), Some(json!("registry.example/planted:9.9")));
    }

    #[test]
    /// Without managedFields nothing says who planted it (a webhook? a person?): it is named
    /// unverified, at its exact path, and is not drift.
    fn a_planted_env_var_is_reported_as_unverified(object in deployment(), pick in any::<prop::sample::Index>()) {
        let (managers, tracking) = (Managers::default(), TrackingKeys::default());
        let mut live = object.clone();
        let containers = live["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap();
        let i = pick.index(containers.len());
        let name = containers[i]["name"].as_str().unwrap().to_string();
        containers[i]["env"].as_array_mut().unwrap().push(json!({"name": "planted", "value": "1"}));
        let result = compare(&prepared(object), &prepared(live), &options(&managers, &tracking), &mut Redactor::new());
        prop_assert_eq!(result.changes.len(), 0, "{:?}", result.changes);
        let unverified: Vec<String> = result.unverified.iter().map(|p| p.to_string()).collect();
        prop_assert_eq!(unverified, vec![format!("spec.template.spec.containers[name={name}].env[name=planted]")]);
    }
}

/// An example beside the properties: live-only keys before, between and after the desired
/// ones; a desired key live lacks; an empty desired map live lacks (dropped, no drift); keys
/// equal on both sides.
#[test]
fn desired_and_live_keys_interleaved_are_each_judged_once() {
    let desired = prepared(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n", "labels": {}},
        "data": {"b": "1", "d": "2", "f": "3", "h": "gone"}
    }));
    let live = prepared(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n", "annotations": {"x": "y"}},
        "data": {"a": "new", "b": "1", "c": "new", "d": "changed", "f": "3", "g": "new", "z": "new"}
    }));
    let managers = Managers::default();
    let tracking = TrackingKeys::default();
    let options = CompareOptions {
        managers: &managers,
        tracking: &tracking,
        ignore: &[],
        app_ignore: &[],
    };
    let comparison = compare(&desired, &live, &options, &mut Redactor::new());
    let changes: Vec<(String, Op)> = comparison
        .changes
        .iter()
        .map(|c| (c.path.to_string(), c.op))
        .collect();
    assert_eq!(
        changes,
        [
            ("data.d".to_string(), Op::Replace),
            ("data.h".to_string(), Op::Remove),
        ]
    );
    // Without managedFields or last-applied, a live-only field is unverified, not drift.
    let unverified: Vec<String> = comparison
        .unverified
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        unverified,
        [
            "data.a",
            "data.c",
            "data.g",
            "data.z",
            "metadata.annotations.x"
        ]
    );
    assert!(comparison.desired["metadata"].get("labels").is_none());
}
