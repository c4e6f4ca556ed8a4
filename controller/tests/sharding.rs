//! Sharding against the real API server: three `argo-drift run --sharding true` processes share
//! 24 applications; each app is reported by exactly one replica (the one consistent hashing over
//! the live membership Leases gives it); one replica is killed (SIGKILL: no goodbye, its Lease
//! just stops being renewed) and its apps are reported again by the others within the lease
//! duration, while the survivors' own apps stay where they were.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const WAIT: Duration = Duration::from_secs(60);
const APPS: usize = 24;
const LEASE_SECONDS: u64 = 4;

/// The last report of each app and who wrote it.
fn latest(seen: &ReportLog) -> BTreeMap<String, (String, Value)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|r| {
            let report = serde_json::from_str(&r.text).unwrap_or(Value::Null);
            (r.app.clone(), (r.by.clone(), report))
        })
        .collect()
}

/// The replicas that wrote each app's report from entry `from` of the log on.
fn writers_since(seen: &ReportLog, from: usize) -> BTreeMap<String, BTreeSet<String>> {
    let mut by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in seen.lock().unwrap().iter().skip(from) {
        by.entry(r.app.clone()).or_default().insert(r.by.clone());
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_report_each_app_once_and_a_killed_replicas_apps_move_within_the_lease() {
    let client = client().await;
    let (argocd, shop, names, _dir) = config_map_apps(&client, APPS).await;
    let key = |n: &str| format!("{argocd}/{n}");
    let (seen, follow) = follow_reports(&client, &argocd);

    let mut replicas: Vec<Replica> = ["replica-a", "replica-b", "replica-c"]
        .iter()
        .map(|id| Replica::start(env!("CARGO_BIN_EXE_argo-drift"), id, &argocd, LEASE_SECONDS))
        .collect();
    let everyone: Vec<String> = replicas.iter().map(|r| r.identity.clone()).collect();
    let owner_among = |members: &[String], n: &str| {
        argo_drift_controller::leader::owner(members, &key(n))
            .unwrap()
            .to_string()
    };

    // Every app reported, by the replica consistent hashing gives it; every replica ready.
    wait_for("every app reported by its owner", WAIT, || async {
        let now = latest(&seen);
        names
            .iter()
            .all(|n| now.get(n.as_str()).map(|(who, _)| who) == Some(&owner_among(&everyone, n)))
            .then_some(())
    })
    .await;
    for r in &replicas {
        wait_for("every replica ready", WAIT, || async {
            let ok = reqwest::get(format!("{}/readyz", r.admin)).await.ok()?;
            ok.status().is_success().then_some(())
        })
        .await;
    }
    let mut share: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for n in &names {
        share.entry(owner_among(&everyone, n)).or_default().push(n);
    }
    eprintln!("apps by replica: {share:?}");
    assert_eq!(share.len(), 3, "every replica has a share: {share:?}");

    // Steady state: every app drifts; each report is written by its owner alone.
    let from = seen.lock().unwrap().len();
    let edit = dynamic(&client, &shop, "v1", "ConfigMap").await;
    for n in &names {
        merge(
            &edit,
            n,
            "kubectl-edit",
            json!({"data": {"level": "debug"}}),
        )
        .await;
    }
    wait_for("every app's drift reported", WAIT, || async {
        let now = latest(&seen);
        names
            .iter()
            .all(|n| {
                now.get(n.as_str())
                    .is_some_and(|(_, r)| r["summary"]["modified"] == 1)
            })
            .then_some(())
    })
    .await;
    let writers = writers_since(&seen, from);
    for n in &names {
        assert_eq!(
            writers[n.as_str()],
            BTreeSet::from([owner_among(&everyone, n)]),
            "{n} written by exactly its owner"
        );
    }

    // Kill the replica with the most apps: no release, its Lease just stops being renewed.
    let (victim, _) = share
        .iter()
        .max_by_key(|(_, apps)| apps.len())
        .map(|(r, a)| (r.clone(), a.len()))
        .unwrap();
    let index = replicas.iter().position(|r| r.identity == victim).unwrap();
    let mut dead = replicas.remove(index);
    let from = seen.lock().unwrap().len();
    let killed = Instant::now();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let survivors: Vec<String> = replicas.iter().map(|r| r.identity.clone()).collect();
    let moved: Vec<&str> = share[&victim].clone();
    let failover = wait_for(
        "the killed replica's apps reported by the others",
        WAIT,
        || async {
            let now = latest(&seen);
            moved
                .iter()
                .all(|n| now.get(*n).map(|(who, _)| who) == Some(&owner_among(&survivors, n)))
                .then(|| killed.elapsed())
        },
    )
    .await;
    eprintln!(
        "replica {victim} killed; its {} apps reported by the others after {:.1} s (lease {LEASE_SECONDS} s)",
        moved.len(),
        failover.as_secs_f64()
    );
    // Within the lease duration, plus one look at the Leases (a third of it) and the analysis.
    assert!(
        failover < Duration::from_secs(LEASE_SECONDS * 2 + 2),
        "failover took {failover:?}"
    );
    // A moved app's drift is still reported as drift (by its new owner).
    let now = latest(&seen);
    for n in &moved {
        assert_eq!(now[*n].1["summary"]["modified"], 1, "{n}");
    }
    // The survivors' own apps did not move; nothing was written by the dead replica.
    for (n, who) in writers_since(&seen, from) {
        assert!(!who.contains(&victim), "{n} written by the dead replica");
        assert_eq!(who, BTreeSet::from([owner_among(&survivors, &n)]), "{n}");
    }

    // A graceful stop gives the Lease up: the last replica takes everything at once.
    let leaving = replicas.remove(0);
    let from = seen.lock().unwrap().len();
    let stopped = Instant::now();
    Command::new("kill")
        .args(["-TERM", &leaving.child.id().to_string()])
        .status()
        .unwrap();
    let mut leaving = leaving;
    assert!(leaving.child.wait().unwrap().success());
    let last = replicas[0].identity.clone();
    for n in &names {
        merge(
            &edit,
            n,
            "kubectl-edit",
            json!({"data": {"level": "trace"}}),
        )
        .await;
    }
    let handover = wait_for("every app reported by the last replica", WAIT, || async {
        let now = latest(&seen);
        names
            .iter()
            .all(|n| {
                now.get(n.as_str()).is_some_and(|(who, r)| {
                    who == &last && r["resources"].to_string().contains("trace")
                })
            })
            .then(|| stopped.elapsed())
    })
    .await;
    eprintln!(
        "replica {} stopped; every app with {} after {:.1} s",
        leaving.identity,
        last,
        handover.as_secs_f64()
    );
    for (n, who) in writers_since(&seen, from) {
        assert!(
            !who.contains(&leaving.identity),
            "{n} written after it left"
        );
    }
    for mut r in replicas {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
    follow.abort();
}
