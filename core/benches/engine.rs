//! Throughput of the engine: resource pairs normalised + diffed + classified per second, on one
//! core, over the bundled example (API-server-shaped live objects with managedFields, defaults and
//! status, a third of them drifted) replicated into many namespaces.
//!
//! Also reading: the live objects as block YAML (what kubectl and Helm print), MB/s of the
//! manifest reader against serde_yaml on the same text.
//!
//! Run: `cargo bench -p argo-drift-core --bench engine`. Target: >= 20,000 pairs/s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use argo_drift_core::manifest::{index_by_key, parse_manifests, Resource};
use argo_drift_core::normalize::prepare;
use argo_drift_core::{analyse, AnalyseOptions, Policy};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const COPIES: usize = 300;

fn load(dir: &str) -> Vec<Resource> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/offline")
        .join(dir);
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        out.extend(parse_manifests(&f.display().to_string(), &std::fs::read(&f).unwrap()).unwrap());
    }
    out
}

/// The example replicated into `COPIES` namespaces.
fn corpus() -> (Vec<Resource>, Vec<Resource>) {
    let (desired, live) = (load("desired"), load("live"));
    let replicate = |set: &[Resource]| {
        let mut out = Vec::new();
        for i in 0..COPIES {
            for r in set {
                let mut r = r.clone();
                let ns = format!("shop-{i}");
                r.key.namespace = ns.clone();
                r.object["metadata"]["namespace"] = ns.into();
                out.push(r);
            }
        }
        out
    };
    (replicate(&desired), replicate(&live))
}

fn bench(c: &mut Criterion) {
    let policy = Policy::builtin().unwrap();
    let (desired, live) = corpus();
    let pairs = desired
        .iter()
        .filter(|d| live.iter().any(|l| l.key == d.key))
        .count();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(pairs as u64));
    group.sample_size(20);
    let variants = [
        ("changes", false, false),
        ("changes_and_patches", true, false),
        ("changes_patches_and_text_diffs", true, true),
    ];
    for (name, patches, text_diffs) in variants {
        group.bench_function(name, |b| {
            b.iter_batched(
                || (desired.clone(), live.clone()),
                |(d, l)| {
                    let d: Vec<_> = d
                        .into_iter()
                        .map(|r| prepare(r, &policy.tracking))
                        .collect();
                    let l: Vec<_> = l
                        .into_iter()
                        .map(|r| prepare(r, &policy.tracking))
                        .collect();
                    let (d, l): (BTreeMap<_, _>, BTreeMap<_, _>) =
                        (index_by_key(d).unwrap(), index_by_key(l).unwrap());
                    let options = AnalyseOptions {
                        app: None,
                        patches,
                        text_diffs,
                        ..Default::default()
                    };
                    let report = analyse(d, &l, &policy, &options);
                    // Hand the live set and the report back so that freeing them is not timed as
                    // engine work (the desired set is consumed, and freed, inside `analyse`).
                    (l, report)
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn parse(c: &mut Criterion) {
    let (_, live) = corpus();
    let text = live
        .iter()
        .map(|r| serde_yaml::to_string(&r.object).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(20);
    group.bench_function("manifest_reader", |b| {
        b.iter(|| {
            let objects = parse_manifests("live.yaml", text.as_bytes()).unwrap();
            assert_eq!(objects.len(), live.len());
            objects
        })
    });
    group.bench_function("serde_yaml", |b| {
        b.iter(|| {
            let objects: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
                .map(|d| serde::Deserialize::deserialize(d).unwrap())
                .collect();
            assert_eq!(objects.len(), live.len());
            objects
        })
    });
    group.finish();
}

criterion_group!(benches, bench, parse);
criterion_main!(benches);
