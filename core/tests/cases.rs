//! Table tests: every directory under `tests/cases/` holds `desired.yaml`, `live.yaml` and
//! `expected.json` (and optionally `policy.yaml`, `namespace`, `app`). The engine's report must
//! contain everything `expected.json` says: objects are matched key by key (keys not named are
//! not checked), arrays element by element and with the same length, so an extra or a missing
//! change fails the case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use argo_drift_core::manifest::{index_by_key, parse_manifests, Scopes};
use argo_drift_core::normalize::{prepare, Prepared};
use argo_drift_core::{analyse, AnalyseOptions, Policy};
use serde_json::Value;

fn load(path: &Path, policy: &Policy) -> Vec<Prepared> {
    let bytes = std::fs::read(path).unwrap();
    parse_manifests(&path.display().to_string(), &bytes)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|r| prepare(r, &policy.tracking))
        .collect()
}

/// Whether `actual` contains `expected`; on mismatch, the JSON path of the first difference.
fn contains(actual: &Value, expected: &Value, at: &str) -> Result<(), String> {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, ev) in e {
                let av = a.get(k).unwrap_or(&Value::Null);
                contains(av, ev, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(e)) => {
            if a.len() != e.len() {
                return Err(format!(
                    "{at}: {} items, expected {}:\n{}",
                    a.len(),
                    e.len(),
                    serde_json::to_string_pretty(actual).unwrap()
                ));
            }
            for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                contains(av, ev, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (a, e) if a == e => Ok(()),
        (a, e) => Err(format!("{at}: got {a}, expected {e}")),
    }
}

fn run_case(dir: &Path) -> Result<(), String> {
    let policy = match std::fs::read_to_string(dir.join("policy.yaml")) {
        Ok(text) => Policy::from_yaml("policy.yaml", &text).map_err(|e| e.to_string())?,
        Err(_) => Policy::builtin().unwrap(),
    };
    let namespace =
        std::fs::read_to_string(dir.join("namespace")).unwrap_or_else(|_| "default".into());
    let app = std::fs::read_to_string(dir.join("app"))
        .ok()
        .map(|s| s.trim().to_string());
    let mut desired = load(&dir.join("desired.yaml"), &policy);
    let mut live = load(&dir.join("live.yaml"), &policy);
    let mut scopes = Scopes::default();
    for p in desired.iter().chain(live.iter()) {
        scopes.learn_crd(&p.key, &p.object);
    }
    for p in desired.iter_mut().chain(live.iter_mut()) {
        p.resolve_namespace(namespace.trim(), &scopes);
    }
    let report = analyse(
        index_by_key(desired).unwrap(),
        &index_by_key(live).unwrap(),
        &policy,
        &AnalyseOptions {
            app,
            patches: true,
            text_diffs: true,
            ..Default::default()
        },
    );
    let actual = serde_json::to_value(&report).unwrap();
    // Secret values must never reach a report.
    if let Ok(secrets) = std::fs::read_to_string(dir.join("secrets")) {
        let text = actual.to_string();
        for secret in secrets.lines().filter(|l| !l.is_empty()) {
            if text.contains(secret) {
                return Err(format!("secret value {secret:?} appears in the report"));
            }
        }
    }
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
            .map_err(|e| format!("expected.json: {e}"))?;
    contains(&actual, &expected, "$")
}

#[test]
fn every_case_matches_its_expected_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 20,
        "expected the full case table, found {}",
        dirs.len()
    );
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            run_case(d)
                .err()
                .map(|e| format!("{}: {e}", d.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}
