//! Cost of a remediation decision, taken after every analysis of an application: `decide` on
//! the bundled example's report (a third of its resources drifted), for many applications
//! sharing one guardrail state, in enforce mode (tokens, cooldowns and heals recorded) and in
//! the shipped dry-run (state cloned, nothing kept).
//!
//! Run: `cargo bench -p argo-drift-core --bench decide`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use argo_drift_core::manifest::{index_by_key, parse_manifests, Resource};
use argo_drift_core::normalize::prepare;
use argo_drift_core::policy::{decide, AppInput, Budget, GuardrailState, Mode};
use argo_drift_core::{analyse, AnalyseOptions, Policy};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const APPS: usize = 1000;

fn load(policy: &Policy, dir: &str) -> Vec<argo_drift_core::normalize::Prepared> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/offline")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out: Vec<Resource> = Vec::new();
    for f in files {
        out.extend(parse_manifests(&f.display().to_string(), &std::fs::read(&f).unwrap()).unwrap());
    }
    out.into_iter()
        .map(|r| prepare(r, &policy.tracking))
        .collect()
}

fn bench(c: &mut Criterion) {
    let policy = Policy::builtin().unwrap();
    let desired = index_by_key(load(&policy, "desired")).unwrap();
    let live = index_by_key(load(&policy, "live")).unwrap();
    let report = analyse(desired, &live, &policy, &AnalyseOptions::default());
    let names: Vec<String> = (0..APPS).map(|i| format!("argocd/app-{i}")).collect();
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(APPS as u64));
    for mode in [Mode::Enforce, Mode::DryRun] {
        group.bench_function(mode.as_str(), |b| {
            b.iter(|| {
                let mut state = GuardrailState::default();
                for (i, app) in names.iter().enumerate() {
                    let input = AppInput {
                        app,
                        tier: None,
                        mode: Some(mode),
                        report: &report,
                        report_id: "r1",
                        answer: None,
                        heal_now: None,
                        budget: Budget::NotConfigured,
                        operation: Default::default(),
                    };
                    std::hint::black_box(decide(
                        &policy.remediation,
                        &input,
                        &mut state,
                        1_800_000_000 + i as i64,
                    ));
                }
                state
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
