//! `argo-drift diff` on a corpus shaped like what SREs diff, beside Argo CD's own engine.
//!
//! The corpus: BENCH_PAIRS (2,000) desired/live pairs seeded from gitops-engine's own diff
//! testdata (its Deployments, StatefulSet, Services and Secret), made live by the real API
//! server: created through it (half by server-side apply as Argo CD syncs, half by a client-side
//! `kubectl apply` that leaves last-applied-configuration), quantities spelled otherwise than the
//! server prints them, Secrets from `stringData`, status written by a "controller"; 20% then
//! really drifted by `kubectl edit` (image, replicas, a Secret value, a label, an added env var).
//! Half of the live objects lose their managedFields, as `kubectl get -o yaml` prints them. The
//! corpus is cached in target/diff-corpus/ (`BENCH_REGENERATE=1` makes it again).
//!
//! Measured: the whole `argo-drift diff` process (start, parse, analyse, JSON out) on two forms
//! of the same objects — as `kubectl get -o yaml` prints them (converted by kubectl's own printer
//! library, sigs.k8s.io/yaml) and as JSON documents — pairs/s of the best of BENCH_ROUNDS runs
//! and peak RSS against the input size (and beyond what the program weighs on empty input);
//! precision and recall against what was really drifted, with the fields reported unverified;
//! and gitops-engine's `diff.Diff` in-process on the same objects (`scripts/testenv.sh
//! gitops-diff`), timed in turn with argo-drift's runs (round by round), with the ratio. Then the
//! same on the corpus BENCH_REPEAT (10) times over, for how time and memory grow with the
//! input.
//!
//!   cargo bench -p argo-drift-controller --bench diff_corpus
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::*;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let pairs = env_usize("BENCH_PAIRS", 2000);
    let rounds = env_usize("BENCH_ROUNDS", 5);
    let dir = root().join(format!("target/diff-corpus/{pairs}"));
    if std::env::var_os("BENCH_REGENERATE").is_some() || !dir.join("truth.json").exists() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(generate(&dir, pairs));
    }
    measure(&dir, rounds);
}

/// The seeds: gitops-engine's own testdata of the kinds the corpus holds.
fn seeds() -> Vec<Value> {
    let source = PathBuf::from(exported(
        &testenv("gitops-engine-source"),
        "ARGO_DRIFT_GITOPS_ENGINE_SOURCE",
    ));
    let testdata = source.join("pkg/diff/testdata");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&testdata)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.contains("-config") && (n.ends_with(".yaml") || n.ends_with(".json"))
        })
        .collect();
    names.sort();
    let mut out = Vec::new();
    for p in names {
        let text = std::fs::read_to_string(&p).unwrap();
        let mut v: Value = serde_yaml::from_str(&text).unwrap();
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        if !["Deployment", "StatefulSet", "Service", "Secret"].contains(&kind.as_str()) {
            continue;
        }
        if kind == "StatefulSet" {
            v["apiVersion"] = json!("apps/v1");
        }
        out.push(v);
    }
    assert!(out.len() >= 8, "{} seeds", out.len());
    out
}

fn api_version_parts(v: &Value) -> (String, String) {
    let av = v["apiVersion"].as_str().unwrap();
    match av.split_once('/') {
        Some((g, ver)) => (g.to_string(), ver.to_string()),
        None => (String::new(), av.to_string()),
    }
}

fn key(v: &Value) -> String {
    let (group, _) = api_version_parts(v);
    format!(
        "{group}/{}/{}/{}",
        v["kind"].as_str().unwrap(),
        v["metadata"]["namespace"].as_str().unwrap_or_default(),
        v["metadata"]["name"].as_str().unwrap()
    )
}

/// The desired object of pair `i`: seed `i % n`, named and spelled for this pair.
fn desired(seed: &Value, i: usize, namespace: &str) -> Value {
    let mut v = seed.clone();
    let base = v["metadata"]["name"].as_str().unwrap().to_string();
    let name = format!("{}-{i}", &base[..base.len().min(40)]);
    v["metadata"]["name"] = json!(name);
    v["metadata"]["namespace"] = json!(namespace);
    if let Some(a) = v["metadata"]["annotations"].as_object_mut() {
        a.remove("argocd.argoproj.io/sync-options");
    }
    match v["kind"].as_str().unwrap() {
        "Deployment" | "StatefulSet" => {
            // Quantities as people write them; the server prints them otherwise.
            if let Some(c) = v["spec"]["template"]["spec"]["containers"][0].as_object_mut() {
                let spelled = [("0.5", "1024Mi"), ("1", "0.5Gi"), ("250m", "128974848")];
                let (cpu, memory) = spelled[i % spelled.len()];
                c.insert(
                    "resources".into(),
                    json!({"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": "2Gi"}}),
                );
            }
        }
        "Secret" if i.is_multiple_of(2) => {
            // stringData, which the server turns into data.
            let data = v["data"].take();
            let mut string_data = serde_json::Map::new();
            for (k, val) in data.as_object().into_iter().flatten() {
                use base64::Engine as _;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(val.as_str().unwrap_or_default())
                    .unwrap_or_default();
                string_data.insert(k.clone(), json!(String::from_utf8_lossy(&raw)));
            }
            v.as_object_mut().unwrap().remove("data");
            v["stringData"] = Value::Object(string_data);
        }
        _ => {}
    }
    v
}

/// What `kubectl edit` changes in pair `i`'s live object, if it is one of the drifted fifth:
/// (merge patch, fields it drifts).
fn drift(v: &Value, i: usize) -> Option<(Value, Vec<&'static str>)> {
    if !i.is_multiple_of(5) {
        return None;
    }
    let variant = (i / 5) % 3;
    Some(match v["kind"].as_str().unwrap() {
        "Deployment" | "StatefulSet" => {
            let c = &v["spec"]["template"]["spec"]["containers"][0];
            let name = c["name"].clone();
            match variant {
                0 => (json!({"spec": {"replicas": 7}}), vec!["spec.replicas"]),
                1 => {
                    let image = format!("{}-debug", c["image"].as_str().unwrap());
                    (
                        json!({"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}),
                        vec!["image"],
                    )
                }
                _ => (
                    json!({"metadata": {"labels": {"debug": "true"}}}),
                    vec!["metadata.labels.debug"],
                ),
            }
        }
        "Service" => (
            json!({"metadata": {"labels": {"debug": "true"}}, "spec": {"sessionAffinity": "ClientIP"}}),
            vec!["metadata.labels.debug", "spec.sessionAffinity"],
        ),
        "Secret" => {
            use base64::Engine as _;
            let key = v["data"]
                .as_object()
                .or(v["stringData"].as_object())
                .and_then(|m| m.keys().next().cloned())
                .unwrap();
            (
                json!({"data": {key: base64::engine::general_purpose::STANDARD.encode(format!("changed-{i}"))}}),
                vec!["data"],
            )
        }
        _ => return None,
    })
}

async fn generate(dir: &Path, pairs: usize) {
    let started = Instant::now();
    let client = client().await;
    let seeds = seeds();
    std::fs::create_dir_all(dir).unwrap();
    let namespaces: Vec<String> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(fresh_namespace(&client, "corpus").await);
        }
        out
    };
    let mut desired_docs = Vec::new();
    let mut live_docs = Vec::new();
    let mut truth = BTreeMap::new();
    for i in 0..pairs {
        let ns = &namespaces[i % namespaces.len()];
        let d = desired(&seeds[i % seeds.len()], i, ns);
        let api = dynamic_api(&client, ns, &d).await;
        let name = d["metadata"]["name"].as_str().unwrap().to_string();
        let mut body = d.clone();
        body.as_object_mut().unwrap().remove("status");
        if i.is_multiple_of(2) {
            // As Argo CD syncs with server-side apply.
            api.patch(
                &name,
                &PatchParams::apply("argocd-controller").force(),
                &Patch::Apply(&body),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {}: {e}", key(&d)));
        } else {
            // As `kubectl apply` (client-side) creates: last-applied-configuration kept.
            body["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
                json!(serde_json::to_string(&d).unwrap());
            let object: kube::api::DynamicObject = serde_json::from_value(body).unwrap();
            api.create(
                &PostParams {
                    field_manager: Some("kubectl-client-side-apply".into()),
                    ..Default::default()
                },
                &object,
            )
            .await
            .unwrap_or_else(|e| panic!("creating {}: {e}", key(&d)));
        }
        // Status, as the workload controllers write it.
        if matches!(d["kind"].as_str(), Some("Deployment" | "StatefulSet")) {
            let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let status = json!({"status": {"observedGeneration": 1, "replicas": replicas,
                "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas}});
            api.patch_status(
                &name,
                &PatchParams {
                    field_manager: Some("kube-controller-manager".into()),
                    ..Default::default()
                },
                &Patch::Merge(&status),
            )
            .await
            .unwrap();
        }
        if let Some((patch, fields)) = drift(&d, i) {
            merge(&api, &name, "kubectl-edit", patch).await;
            truth.insert(key(&d), fields);
        }
        let mut live = serde_json::to_value(api.get(&name).await.unwrap()).unwrap();
        if i % 4 >= 2 {
            // As `kubectl get -o yaml` prints it.
            live["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("managedFields");
        }
        desired_docs.push(serde_json::to_string(&d).unwrap());
        live_docs.push(serde_json::to_string(&live).unwrap());
    }
    std::fs::write(dir.join("desired.yaml"), desired_docs.join("\n---\n")).unwrap();
    std::fs::write(dir.join("live.yaml"), live_docs.join("\n---\n")).unwrap();
    std::fs::write(
        dir.join("truth.json"),
        serde_json::to_string_pretty(&truth).unwrap(),
    )
    .unwrap();
    eprintln!(
        "corpus: {pairs} pairs ({} drifted) from {} seeds in {:.1} s: {}",
        truth.len(),
        seeds.len(),
        started.elapsed().as_secs_f64(),
        dir.display()
    );
}

/// Run `command` to its end, returning its output and peak RSS in KiB (VmHWM, read from /proc
/// while it runs; a high-water mark, so the last reading before it exits is the peak). It is
/// read without pause, or the last moments (the report's output, or a whole run on empty input)
/// would be missed: such runs measure memory, not time.
fn run_measured(command: &mut Command) -> (std::process::Output, u64) {
    use std::io::Read as _;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).unwrap();
        buf
    });
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::yield_now();
    }
    let stdout = reader.join().unwrap();
    let mut output = child.wait_with_output().unwrap();
    output.stdout = stdout;
    (output, peak)
}

/// One form of the corpus as `argo-drift diff` reads it: the best of `rounds` whole-process
/// runs, its peak RSS, and its report.
struct Run {
    seconds: f64,
    rss_kib: u64,
    input: u64,
    report: Value,
}

fn run_form(desired: &Path, live: &Path, rounds: usize) -> Run {
    let mut form = Form::new(desired, live);
    for _ in 0..rounds {
        form.time();
    }
    form.run()
}

/// One form of the corpus: its peak RSS measured first, then timed runs one at a time.
struct Form<'a> {
    desired: &'a Path,
    live: &'a Path,
    best: f64,
    rss_kib: u64,
    output: Vec<u8>,
}

impl<'a> Form<'a> {
    fn new(desired: &'a Path, live: &'a Path) -> Form<'a> {
        let mut form = Form {
            desired,
            live,
            best: f64::MAX,
            rss_kib: 0,
            output: Vec::new(),
        };
        // Memory is measured in runs of its own: reading /proc without pause takes a core.
        form.rss_kib = (0..3)
            .map(|_| run_measured(&mut form.diff()).1)
            .max()
            .unwrap();
        form
    }

    fn diff(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_argo-drift"));
        command
            .args(["diff", "-o", "json", "--fail-on", "critical", "--desired"])
            .arg(self.desired)
            .arg("--live")
            .arg(self.live);
        command
    }

    fn time(&mut self) {
        let start = Instant::now();
        let out = self.diff().output().unwrap();
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "argo-drift diff: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.best = self.best.min(elapsed);
        self.output = out.stdout;
    }

    fn run(self) -> Run {
        let input = std::fs::metadata(self.desired).unwrap().len()
            + std::fs::metadata(self.live).unwrap().len();
        Run {
            seconds: self.best,
            rss_kib: self.rss_kib,
            input,
            report: serde_json::from_slice(&self.output).unwrap(),
        }
    }
}

/// Drop `path` from the page cache (written back first, so that every page can go). Freshly
/// linked, the binary's cached pages are the large folios the linker's writes made, and a run
/// maps more of them: the same binary peaked at 15.0 MiB on empty input, 14.3 once its pages
/// had been read back from disk (median of 10 runs each). Memory is measured after this, so
/// that figures do not depend on whether the binary was just built.
fn evict_from_page_cache(path: &str) {
    let file = std::fs::File::open(path).unwrap();
    file.sync_all().unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
}

/// How many of controller/link-order.txt's functions `bin` defines, of how many the file lists
/// (the file names the functions of two builds; see scripts/link-order.sh). `None` without `nm`.
fn link_order_found(bin: &str) -> Option<(usize, usize)> {
    let listed = std::fs::read_to_string(root().join("controller/link-order.txt")).ok()?;
    let out = Command::new("nm")
        .args(["--defined-only", bin])
        .output()
        .ok()?;
    let defined: BTreeSet<&str> = std::str::from_utf8(&out.stdout)
        .ok()?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let listed: Vec<&str> = listed.lines().filter(|l| !l.starts_with('#')).collect();
    let found = listed.iter().filter(|f| defined.contains(*f)).count();
    Some((found, listed.len()))
}

/// The process's peak RSS on empty input: what the program itself weighs before any input.
fn empty_rss_kib(dir: &Path) -> u64 {
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    let (out, peak) = run_measured(
        Command::new(env!("CARGO_BIN_EXE_argo-drift"))
            .args(["diff", "--desired"])
            .arg(&empty)
            .arg("--live")
            .arg(&empty),
    );
    assert!(out.status.success());
    peak
}

/// The clusters of `scripts/testenv.sh` running on this machine, each known by its etcd
/// (`--name argo-drift-testenv-CLUSTER`; the hub's Argo CD runs only beside the hub's). Left
/// running by the test suite, their API servers and Argo CD kept a core 15% busy and made a run
/// of this benchmark 1.5–2× slower.
fn testenv_clusters() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut clusters: Vec<String> = entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter_map(|cmdline| {
            let text = String::from_utf8_lossy(&cmdline).into_owned();
            let mut args = text.split('\0');
            args.position(|a| a == "--name")?;
            let cluster = args.next()?.strip_prefix("argo-drift-testenv-")?;
            Some(cluster.to_string())
        })
        .collect();
    clusters.sort();
    clusters.dedup();
    clusters
}

fn measure(dir: &Path, rounds: usize) {
    let running = testenv_clusters();
    if !running.is_empty() {
        println!(
            "note: the test environment runs beside this benchmark (clusters: {}) and skews its timings; `scripts/testenv.sh down --cluster NAME` stops each",
            running.join(", ")
        );
    }
    let truth: BTreeMap<String, Vec<String>> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap();
    let tool = exported(&testenv("gitops-diff"), "ARGO_DRIFT_GITOPS_DIFF");
    // The same objects as `kubectl get -o yaml` prints them (sigs.k8s.io/yaml, as kubectl's
    // printer): block YAML, keys sorted, long values wrapped.
    for side in ["desired", "live"] {
        let kubectl = dir.join(format!("{side}-kubectl.yaml"));
        if stale(&kubectl, &dir.join(format!("{side}.yaml"))) {
            run_ok(
                Command::new(&tool)
                    .arg("to-yaml")
                    .arg(dir.join(format!("{side}.yaml")))
                    .arg(&kubectl),
                "gitops-diff to-yaml",
            );
        }
    }
    let forms = [
        (
            "kubectl get -o yaml",
            "desired-kubectl.yaml",
            "live-kubectl.yaml",
        ),
        ("JSON documents", "desired.yaml", "live.yaml"),
    ];
    evict_from_page_cache(env!("CARGO_BIN_EXE_argo-drift"));
    let paths: Vec<(PathBuf, PathBuf)> = forms
        .iter()
        .map(|(_, d, l)| (dir.join(d), dir.join(l)))
        .collect();
    let mut timed: Vec<Form> = paths.iter().map(|(d, l)| Form::new(d, l)).collect();
    // Argo CD's engine, in-process, on the same objects, in turn with argo-drift's runs: each
    // round runs it (best of two passes in one process, the first warming it up), then each form
    // once, so that both sides are timed under the same load. Run one after the other, a busy
    // spell of the machine during one side's runs moved the ratio by 30% (gitops-engine at 547
    // and 773 pairs/s on the same day).
    let mut rate: f64 = 0.0;
    let mut theirs = Value::Null;
    for _ in 0..rounds {
        let out = run_ok(
            Command::new(&tool)
                .arg(dir.join("desired.yaml"))
                .arg(dir.join("live.yaml"))
                .arg("2"),
            "gitops-diff",
        );
        theirs = serde_json::from_slice(&out).unwrap();
        rate = rate.max(theirs["pairsPerSecond"].as_f64().unwrap());
        for form in &mut timed {
            form.time();
        }
    }
    let runs: Vec<(&str, Run)> = forms
        .iter()
        .zip(timed)
        .map(|((name, _, _), form)| (*name, form.run()))
        .collect();
    let baseline = empty_rss_kib(dir);
    let resources = runs[0].1.report["resources"].as_array().unwrap();
    let pairs = resources
        .iter()
        .filter(|r| r["status"] != "missing" && r["status"] != "extra")
        .count();
    let flagged: BTreeSet<String> = resources
        .iter()
        .filter(|r| r["status"] == "modified")
        .map(report_key)
        .collect();
    for (name, run) in &runs[1..] {
        let theirs: BTreeSet<String> = run.report["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "modified")
            .map(report_key)
            .collect();
        assert_eq!(flagged, theirs, "the {name} form is judged otherwise");
    }
    let unverified: usize = resources
        .iter()
        .map(|r| r["unverified"].as_array().map_or(0, Vec::len))
        .sum();
    let ours = verdict(&flagged, &truth);
    // Real drift not reported as drift but named unverified: only ownership data could tell.
    let unverified_drift = truth
        .keys()
        .filter(|k| !flagged.contains(*k))
        .filter(|k| {
            resources.iter().any(|r| {
                report_key(r) == **k && r["unverified"].as_array().is_some_and(|u| !u.is_empty())
            })
        })
        .count();
    println!(
        "corpus: {} ({} pairs, {} drifted)",
        dir.display(),
        pairs,
        truth.len(),
    );
    println!(
        "  drift found {}/{} ({} more reported unverified, {} missed), false drifts {}; unverified fields {}",
        ours.found,
        ours.drifted,
        unverified_drift,
        ours.drifted - ours.found - unverified_drift,
        ours.false_positives.len(),
        unverified
    );
    for k in ours.false_positives.iter().take(5) {
        let r = resources.iter().find(|r| report_key(r) == *k).unwrap();
        let fields: Vec<&str> = r["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["field"].as_str())
            .collect();
        println!("    false: {k}: {fields:?}");
    }
    let modified: BTreeSet<String> = theirs["modified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let argo = verdict(&modified, &truth);
    println!(
        "gitops-engine diff.Diff (in-process, no parsing, best of {rounds} runs of two passes, in turn with argo-drift's): {:.0} pairs/s; drift found {}/{}, false drifts {}",
        rate,
        argo.found,
        argo.drifted,
        argo.false_positives.len()
    );
    println!(
        "argo-drift diff (whole process: start, parse, analyse, JSON out; best of {rounds}, in turn with gitops-engine's); the program alone peaks at {:.1} MiB RSS:",
        baseline as f64 / 1024.0
    );
    for (name, run) in &runs {
        print_run(name, run, pairs, rate, baseline);
    }
    if let Some((found, listed)) = link_order_found(env!("CARGO_BIN_EXE_argo-drift")) {
        println!(
            "  linked in the order of controller/link-order.txt: {found} of the {listed} functions it lists for two builds are in this one (far fewer: run scripts/link-order.sh)"
        );
    }
    // The same corpus several times over (each copy in namespaces of its own): how time and
    // memory grow with the input, beyond the program's fixed weight.
    let repeat = env_usize("BENCH_REPEAT", 10);
    if repeat > 1 {
        let (desired, live) = repeated(dir, repeat);
        let run = run_form(&desired, &live, rounds.min(3));
        print_run(
            &format!("{repeat}x, kubectl form"),
            &run,
            pairs * repeat,
            rate,
            baseline,
        );
    }
}

fn print_run(name: &str, run: &Run, pairs: usize, rate: f64, baseline: u64) {
    println!(
        "  {name:<20} {:.1} MB: {:.3} s = {:.0} pairs/s = {:.1}x gitops-engine; peak RSS {:.1} MiB = {:.2}x the input ({:.2}x beyond the program's own)",
        run.input as f64 / 1e6,
        run.seconds,
        pairs as f64 / run.seconds,
        (pairs as f64 / run.seconds) / rate,
        run.rss_kib as f64 / 1024.0,
        run.rss_kib as f64 * 1024.0 / run.input as f64,
        run.rss_kib.saturating_sub(baseline) as f64 * 1024.0 / run.input as f64,
    );
}

/// Whether a file made from `source` is missing or older than it (the corpus was made again).
fn stale(derived: &Path, source: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(derived), modified(source)) {
        (Some(d), Some(s)) => d < s,
        _ => true,
    }
}

/// The kubectl form of the corpus `times` over, each copy's namespaces renamed.
fn repeated(dir: &Path, times: usize) -> (PathBuf, PathBuf) {
    let out = dir.join(format!("repeated-{times}"));
    std::fs::create_dir_all(&out).unwrap();
    let mut paths = Vec::new();
    for side in ["desired", "live"] {
        let path = out.join(format!("{side}-kubectl.yaml"));
        let source = dir.join(format!("{side}-kubectl.yaml"));
        if stale(&path, &source) {
            let text = std::fs::read_to_string(&source).unwrap();
            let copies: Vec<String> = (0..times)
                .map(|k| text.replace("corpus-", &format!("r{k}-corpus-")))
                .collect();
            std::fs::write(&path, copies.join("---\n")).unwrap();
        }
        paths.push(path);
    }
    (paths[0].clone(), paths[1].clone())
}

/// A report resource's key, as `key` makes it for the corpus.
fn report_key(r: &Value) -> String {
    format!(
        "{}/{}/{}/{}",
        r["group"].as_str().unwrap(),
        r["kind"].as_str().unwrap(),
        r["namespace"].as_str().unwrap(),
        r["name"].as_str().unwrap()
    )
}

struct Verdict {
    drifted: usize,
    found: usize,
    false_positives: Vec<String>,
}

fn verdict(flagged: &BTreeSet<String>, truth: &BTreeMap<String, Vec<String>>) -> Verdict {
    Verdict {
        drifted: truth.len(),
        found: truth.keys().filter(|k| flagged.contains(*k)).count(),
        false_positives: flagged
            .iter()
            .filter(|k| !truth.contains_key(*k))
            .cloned()
            .collect(),
    }
}
