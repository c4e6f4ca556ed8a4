//! Fleet-scale benchmark against the real API server: N applications × M objects (each app in
//! its own namespace: a Deployment and M-1 ConfigMaps), R `argo-drift run --sharding true`
//! processes sharing them. Prints one table:
//! - time to the first full analysis (every replica ready, every app reported);
//! - out-of-band write → updated report, p50/p99, while a steady stream of status-only updates
//!   (Deployment `/status`, as a controller writes them) runs beside;
//! - analyses caused by status-only churn alone (target 0), and the watch events ignored;
//! - Kubernetes API requests per second per replica in steady state (`argo_drift_kube_requests_total`);
//! - resident memory per replica, and per object it tracks;
//! - failover: a replica killed (SIGKILL), until all its apps are reported by the others.
//!
//!   cargo bench -p argo-drift-controller --bench scale
//!   BENCH_APPS=200 BENCH_OBJECTS_PER_APP=50 BENCH_REPLICAS=3 cargo bench -p argo-drift-controller --bench scale
//!
//! Other knobs: BENCH_WRITES (200), BENCH_WRITE_RATE (writes/s, 5), BENCH_STATUS_RATE
//! (status updates/s, 200), BENCH_CHURN_SECONDS (20), BENCH_LEASE_SECONDS (10),
//! BENCH_APPS_PER_NAMESPACE (1: each app in a namespace of its own).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::*;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list here
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

impl Replica {
    async fn metrics(&self) -> String {
        match reqwest::get(format!("{}/metrics", self.admin)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The sum of every series of metric `name` (all label sets).
    async fn sum(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }
}

/// Per app, its last report: who wrote it, its text, when it landed.
fn latest(log: &ReportLog) -> HashMap<String, (String, String, Instant)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|r| (r.app.clone(), (r.by.clone(), r.text.clone(), r.at)))
        .collect()
}

async fn run() {
    let apps = knob("BENCH_APPS", 2000) as usize;
    let per_app = knob("BENCH_OBJECTS_PER_APP", 50).max(2) as usize;
    let replicas_n = knob("BENCH_REPLICAS", 3) as usize;
    let writes = knob("BENCH_WRITES", 200) as usize;
    let write_rate = knob("BENCH_WRITE_RATE", 5).max(1);
    let status_rate = knob("BENCH_STATUS_RATE", 200).max(1);
    let churn_seconds = knob("BENCH_CHURN_SECONDS", 20);
    let lease_seconds = knob("BENCH_LEASE_SECONDS", 10);
    let per_namespace = knob("BENCH_APPS_PER_NAMESPACE", 1).max(1) as usize;
    let client = client().await;

    // ----- the fleet: Git, namespaces, live objects as Argo CD applied them, Applications.
    let setup = Instant::now();
    let fleet = Fleet::create(&client, "scale", apps, per_app, per_namespace).await;
    let (argocd, namespaces, total) = (
        fleet.argocd.clone(),
        fleet.namespaces.clone(),
        fleet.objects,
    );
    eprintln!(
        "scale: {apps} apps, {total} objects applied in {:.0} s",
        setup.elapsed().as_secs_f64()
    );

    // Every report update as it lands: who wrote it, its text, when.
    let (reports, follow) = follow_reports(&client, &argocd);

    // ----- the replicas, and the first full analysis.
    let started = Instant::now();
    let mut replicas: Vec<Replica> = (0..replicas_n)
        .map(|i| {
            Replica::start(
                env!("CARGO_BIN_EXE_argo-drift"),
                &format!("replica-{i}"),
                &argocd,
                lease_seconds,
            )
        })
        .collect();
    let long = Duration::from_secs(3600);
    wait_for("every app reported", long, || async {
        (latest(&reports).len() >= apps).then_some(())
    })
    .await;
    for r in &replicas {
        wait_for("every replica ready", long, || async {
            let ok = reqwest::get(format!("{}/readyz", r.admin)).await.ok()?;
            ok.status().is_success().then_some(())
        })
        .await;
    }
    let first_full = started.elapsed();
    let share: BTreeMap<String, usize> = {
        let r = latest(&reports);
        let mut share = BTreeMap::new();
        for (who, _, _) in r.values() {
            *share.entry(who.clone()).or_default() += 1;
        }
        share
    };
    eprintln!(
        "scale: first full analysis after {:.1} s; apps by replica {share:?}",
        first_full.as_secs_f64()
    );
    // Let the start-up settle (first Events, annotations).
    tokio::time::sleep(Duration::from_secs(5)).await;

    // ----- status-only churn: Deployment status, `status_rate` per second, until stopped.
    let churn_sent = Arc::new(AtomicU64::new(0));
    let churn = {
        let client = client.clone();
        let namespaces = namespaces.clone();
        // Each app's Deployment, by app.
        let webs: Vec<String> = (0..namespaces.len())
            .map(|a| fleet.object(a, "web"))
            .collect();
        let sent = churn_sent.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / status_rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let limit = Arc::new(tokio::sync::Semaphore::new(32));
            for n in 0u64.. {
                tick.tick().await;
                let permit = limit.clone().acquire_owned().await.unwrap();
                let a = (n as usize) % namespaces.len();
                let web = webs[a].clone();
                let api: Api<Deployment> = Api::namespaced(client.clone(), &namespaces[a]);
                let sent = sent.clone();
                tokio::spawn(async move {
                    let status = json!({"status": {"observedGeneration": 1, "replicas": 2,
                        "unavailableReplicas": 2, "conditions": [{"type": "Progressing",
                        "status": "True", "reason": "ReplicaSetUpdated",
                        "message": format!("churn {n}")}]}});
                    if api
                        .patch_status(&web, &PatchParams::default(), &Patch::Merge(&status))
                        .await
                        .is_ok()
                    {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(permit);
                });
            }
        })
    };

    // Status-only churn alone: analyses it causes, watch events ignored, API requests.
    let sum_all = |name: &'static str| {
        let replicas = &replicas;
        async move {
            let mut total = Vec::new();
            for r in replicas {
                total.push(r.sum(name).await);
            }
            total
        }
    };
    let reconciles_before = sum_all("argo_drift_reconciles_total").await;
    let ignored_before = sum_all("argo_drift_watch_events_ignored_total").await;
    let requests_before = sum_all("argo_drift_kube_requests_total").await;
    let sent_before = churn_sent.load(Ordering::Relaxed);
    let churn_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(churn_seconds)).await;
    let churn_elapsed = churn_started.elapsed().as_secs_f64();
    let reconciles_after = sum_all("argo_drift_reconciles_total").await;
    let ignored_after = sum_all("argo_drift_watch_events_ignored_total").await;
    let requests_after = sum_all("argo_drift_kube_requests_total").await;
    let churn_rate = (churn_sent.load(Ordering::Relaxed) - sent_before) as f64 / churn_elapsed;
    let analyses_by_churn: f64 = reconciles_after
        .iter()
        .zip(&reconciles_before)
        .map(|(a, b)| a - b)
        .sum();
    let ignored: f64 = ignored_after
        .iter()
        .zip(&ignored_before)
        .map(|(a, b)| a - b)
        .sum();
    let requests_per_s: Vec<f64> = requests_after
        .iter()
        .zip(&requests_before)
        .map(|(a, b)| (a - b) / churn_elapsed)
        .collect();

    // Out-of-band writes, `write_rate` per second, while the churn goes on.
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    let mut latencies = Vec::with_capacity(writes);
    let mut pending: Vec<(String, String, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / write_rate));
    for k in 0..writes {
        tick.tick().await;
        let a = (k * 7919) % apps;
        let j = 1 + (k * 13) % (per_app - 1);
        let marker = format!("bench-{k}-{:x}", rand_u32());
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &namespaces[a]);
        let t0 = Instant::now();
        cms.patch(
            &fleet.object(a, &format!("cm-{j}")),
            &edit,
            &Patch::Merge(json!({"data": {"level": marker}})),
        )
        .await
        .unwrap();
        pending.push((format!("app-{a}"), marker, t0));
        collect_latencies(&reports, &mut pending, &mut latencies);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        collect_latencies(&reports, &mut pending, &mut latencies);
    }
    let lost = pending.len();

    // Memory, per replica and per object it tracks.
    let mut memory = Vec::new();
    for r in &replicas {
        let owned = share.get(&r.identity).copied().unwrap_or(0) * per_app;
        memory.push((
            r.identity.clone(),
            memory_mib(r.child.id(), "VmRSS:"),
            memory_mib(r.child.id(), "VmHWM:"),
            owned,
        ));
    }

    // Failover: kill the replica with the most apps (with one replica there is nobody to
    // take over).
    let failover = if replicas.len() > 1 {
        let victim = share
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(r, _)| r.clone())
            .unwrap();
        let i = replicas.iter().position(|r| r.identity == victim).unwrap();
        let mut dead = replicas.remove(i);
        let moved: Vec<String> = latest(&reports)
            .iter()
            .filter(|(_, (who, _, _))| *who == victim)
            .map(|(a, _)| a.clone())
            .collect();
        let killed = Instant::now();
        dead.child.kill().unwrap();
        dead.child.wait().unwrap();
        let took = wait_for(
            "the killed replica's apps reported by the others",
            long,
            || async {
                let r = latest(&reports);
                moved
                    .iter()
                    .all(|a| {
                        r.get(a)
                            .is_some_and(|(who, _, at)| *who != victim && *at > killed)
                    })
                    .then(|| killed.elapsed())
            },
        )
        .await;
        Some((victim, moved.len(), took))
    } else {
        None
    };
    churn.abort();
    follow.abort();
    for mut r in replicas {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }

    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "scale bench: {apps} apps x {per_app} objects = {total} objects, {replicas_n} replicas (lease {lease_seconds} s)"
    );
    println!(
        "  time to first full analysis (start to every replica ready, every app reported): {:.1} s",
        first_full.as_secs_f64()
    );
    println!(
        "  out-of-band write -> updated report ({} writes at {write_rate}/s, status churn {churn_rate:.0}/s beside): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms{}",
        latencies.len(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap()),
        if lost > 0 { format!(", {lost} never reported") } else { String::new() }
    );
    println!(
        "  status-only churn alone, {churn_elapsed:.0} s at {churn_rate:.0} updates/s: analyses caused {analyses_by_churn:.0} (target 0), watch events ignored {ignored:.0}"
    );
    for ((id, rss, hwm, owned), rps) in memory.iter().zip(&requests_per_s) {
        println!(
            "  {id}: RSS {rss:.0} MiB (peak {hwm:.0} MiB), {owned} objects tracked = {:.1} KiB/object; API requests in steady state {rps:.2}/s",
            rss * 1024.0 / (*owned).max(1) as f64
        );
    }
    if let Some((victim, moved, took)) = failover {
        println!(
            "  failover: {victim} killed (SIGKILL); its {moved} apps reported by the others after {:.1} s",
            took.as_secs_f64()
        );
    }
    // The objects go (their namespaces never finish deleting without a controller-manager, and
    // Argo CD's cluster cache on the shared test server would carry them).
    let cleanup = Instant::now();
    let all = kube::api::DeleteParams::default();
    let every = kube::api::ListParams::default();
    let distinct: std::collections::BTreeSet<&String> = namespaces.iter().collect();
    futures::stream::iter(distinct)
        .for_each_concurrent(16, |ns| {
            let client = client.clone();
            let (all, every) = (all.clone(), every.clone());
            async move {
                let _ = Api::<ConfigMap>::namespaced(client.clone(), ns)
                    .delete_collection(&all, &every)
                    .await;
                let _ = Api::<Deployment>::namespaced(client, ns)
                    .delete_collection(&all, &every)
                    .await;
            }
        })
        .await;
    let apps_api = dynamic(&client, &argocd, "argoproj.io/v1alpha1", "Application").await;
    let _ = apps_api.delete_collection(&all, &every).await;
    let _ = Api::<ConfigMap>::namespaced(client.clone(), &argocd)
        .delete_collection(&all, &every)
        .await;
    eprintln!(
        "scale: objects deleted in {:.0} s",
        cleanup.elapsed().as_secs_f64()
    );
}

/// Move the writes whose marker has reached their app's report into `latencies`.
fn collect_latencies(
    reports: &ReportLog,
    pending: &mut Vec<(String, String, Instant)>,
    latencies: &mut Vec<Duration>,
) {
    let r = latest(reports);
    pending.retain(|(app, marker, t0)| match r.get(app) {
        Some((_, text, at)) if text.contains(marker.as_str()) => {
            latencies.push(at.saturating_duration_since(*t0));
            false
        }
        _ => true,
    });
}
