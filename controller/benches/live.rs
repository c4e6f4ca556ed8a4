//! Live benchmark against the real API server: N applications with M tracked objects each, the
//! `argo-drift` binary running as its own process; out-of-band writes one at a time, timed until
//! the application's report ConfigMap shows them. Prints latency percentiles and the controller's
//! resident memory.
//!
//!   cargo bench -p argo-drift-controller --bench live
//!   BENCH_APPS=50 BENCH_OBJECTS=1000,10000 BENCH_WRITES=200 cargo bench -p argo-drift-controller --bench live
//!
//! `BENCH_WRAPPER=PROGRAM` runs the controller as `PROGRAM ARGO-DRIFT-PATH ARGS…` (see
//! scripts/link-order.sh; `heaptrack` works too, with the global allocator set aside for that
//! build, since heaptrack sees only malloc). The controller's process group is killed at the
//! end, so a wrapper's child goes with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::*;

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|v| v.trim().parse().unwrap())
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list here
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let apps = env_list("BENCH_APPS", "50")[0];
        let writes = env_list("BENCH_WRITES", "200")[0];
        for total in env_list("BENCH_OBJECTS", "1000,10000") {
            run(apps, total / apps, writes).await;
        }
    });
}

async fn run(apps: usize, per_app: usize, writes: usize) {
    let client = client().await;
    let setup = Instant::now();
    let fleet = Fleet::create(&client, "bench", apps, per_app, 1).await;
    let (argocd, namespaces, total) = (fleet.argocd.clone(), &fleet.namespaces, fleet.objects);
    eprintln!(
        "bench: {apps} apps, {total} objects applied in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let port = free_port();
    let cache = tempfile::tempdir().unwrap();
    // BENCH_WRAPPER: a program the controller runs under (its path and arguments follow), as
    // scripts/link-order.sh runs it under valgrind to learn which functions it calls.
    let mut controller = match std::env::var("BENCH_WRAPPER") {
        Ok(wrapper) => {
            let mut c = Command::new(wrapper);
            c.arg(env!("CARGO_BIN_EXE_argo-drift"));
            c
        }
        Err(_) => Command::new(env!("CARGO_BIN_EXE_argo-drift")),
    };
    let mut controller = controller
        .args([
            "run",
            "--app-namespace",
            &argocd,
            "--control-plane-namespace",
            &argocd,
            "--state-namespace",
            &argocd,
            "--admin-addr",
            &format!("127.0.0.1:{port}"),
            "--repo-cache",
            &cache.path().display().to_string(),
            "--leader-election",
            "false",
            "--log-level",
            "warn",
        ])
        .env("KUBECONFIG", kubeconfig())
        .stdout(Stdio::null())
        // A group of its own, killed whole at the end: a wrapper that runs the controller as
        // its child (heaptrack) would otherwise leave the controller running.
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    wait_for("controller readiness", Duration::from_secs(600), || async {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let first_sync = started.elapsed();
    let rss_ready = memory_mib(controller.id(), "VmRSS:");

    // Every report update, as it lands.
    let (reports, watch) = follow_reports(&client, &argocd);

    let mut latencies = Vec::with_capacity(writes);
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    for k in 0..writes {
        let a = k % apps;
        let j = 1 + (k * 7) % (per_app - 1).max(1);
        let marker = format!("bench-{k}-{}", rand_u32());
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &namespaces[a]);
        let from = reports.lock().unwrap().len();
        let t0 = Instant::now();
        cms.patch(
            &format!("cm-{j}"),
            &edit,
            &Patch::Merge(json!({"data": {"level": marker}})),
        )
        .await
        .unwrap();
        let app = format!("app-{a}");
        let landed = wait_for(
            "the write in its report",
            Duration::from_secs(30),
            || async {
                reports
                    .lock()
                    .unwrap()
                    .iter()
                    .skip(from)
                    .find(|r| r.app == app && r.text.contains(&marker))
                    .map(|r| r.at)
            },
        )
        .await;
        latencies.push(landed.saturating_duration_since(t0));
    }
    watch.abort();
    let rss_after = memory_mib(controller.id(), "VmRSS:");
    let hwm = memory_mib(controller.id(), "VmHWM:");
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", controller.id())])
        .status();
    let _ = controller.kill();
    let _ = controller.wait();

    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("live bench: {apps} apps x {per_app} objects = {total} tracked objects");
    println!(
        "  first full analysis (start to /readyz): {:.2} s",
        first_sync.as_secs_f64()
    );
    println!(
        "  out-of-band write -> updated report, {} writes: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap())
    );
    println!(
        "  controller RSS: {:.1} MiB when ready, {:.1} MiB after the writes, peak {:.1} MiB",
        rss_ready, rss_after, hwm
    );
    let counts: HashMap<&str, &str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("argo_drift_detection_latency_seconds_count")
                || l.starts_with("argo_drift_detection_latency_seconds_sum")
        })
        .filter_map(|l| l.split_once(' '))
        .collect();
    println!("  controller's own histogram: {counts:?}");
}
