//! The `argo-drift` binary as a user runs it: exit codes, output formats, errors, stdin, help.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_argo-drift"));
    c.env_remove("NO_COLOR").env("ARGO_DRIFT_COLOR", "never");
    c
}

fn example(side: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/offline")
        .join(side)
}

/// `argo-drift diff` on the bundled example, with extra flags.
fn diff_example(extra: &[&str]) -> Output {
    diff(&example("desired"), &example("live"), extra)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: shop\ndata:\n  a: \"1\"\n";

#[test]
fn the_bundled_example_reports_its_drift_and_exits_1() {
    let o = diff_example(&["-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let summary = &report["summary"];
    assert_eq!(summary["resources"], 7);
    assert_eq!(summary["synced"], 2);
    assert_eq!(summary["modified"], 3);
    assert_eq!(summary["missing"], 1);
    assert_eq!(summary["extra"], 1);
    assert_eq!(summary["severity"], "critical");
    let web = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "Deployment")
        .unwrap();
    for key in [
        "group",
        "version",
        "kind",
        "namespace",
        "name",
        "status",
        "severity",
        "changes",
    ] {
        assert!(web.get(key).is_some(), "resource lacks {key}");
    }
    let image = web["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "spec.template.spec.containers[name=web].image")
        .unwrap();
    for key in [
        "path", "field", "op", "desired", "live", "severity", "rule", "manager",
    ] {
        assert!(image.get(key).is_some(), "change lacks {key}");
    }
    assert_eq!(image["path"], "/spec/template/spec/containers/0/image");
    assert_eq!(image["op"], "replace");
    assert_eq!(image["severity"], "high");
    assert_eq!(image["manager"], "kubectl-edit");
    assert_eq!(web["version"], "v1");
    // The patch and diff of a modified resource are there, and the rotated password is not.
    assert!(web["patch"].as_array().is_some_and(|p| !p.is_empty()));
    let text = stdout(&o);
    assert!(
        !text.contains("VHIwdWI0ZG9y")
            && !text.contains("Tr0ub4dor")
            && !text.contains("correct-horse")
    );
}

#[test]
fn text_and_yaml_outputs() {
    let o = diff_example(&["--show-diff"]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(
        text.contains("Deployment.apps shop/web modified [high]"),
        "{text}"
    );
    assert!(
        text.contains("by kubectl-edit at 2024-05-03T22:41:55Z; rule container-image"),
        "{text}"
    );
    assert!(
        text.contains("+++ desired/Deployment.apps shop/web"),
        "{text}"
    );
    assert!(
        text.contains(
            "7 resources: 2 synced, 3 modified, 1 missing, 1 extra; highest severity critical"
        ),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "no colour when asked for none");
    let o = diff_example(&["-o", "yaml", "--color", "always"]);
    let report: serde_yaml::Value = serde_yaml::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["summary"]["missing"], 1);
    let o = diff_example(&["--color", "always"]);
    assert!(stdout(&o).contains("\u{1b}["), "colour when asked for");
}

#[test]
fn fail_on_sets_the_threshold() {
    assert_eq!(
        diff_example(&["--fail-on", "critical"]).status.code(),
        Some(1)
    );
    let dir = tempfile::tempdir().unwrap();
    let label = |team: &str| {
        CM.replace(
            "  namespace: shop\n",
            &format!("  namespace: shop\n  labels: {{team: {team}}}\n"),
        )
    };
    let desired = write(dir.path(), "desired.yaml", &label("a"));
    let labelled = write(dir.path(), "live.yaml", &label("x"));
    let (desired, labelled) = (desired.to_str().unwrap(), labelled.to_str().unwrap());
    // A label changed is low: below --fail-on medium the run passes, at info it fails.
    assert_eq!(
        run(&[
            "diff",
            "--desired",
            desired,
            "--live",
            labelled,
            "--fail-on",
            "medium"
        ])
        .status
        .code(),
        Some(0)
    );
    assert_eq!(
        run(&["diff", "--desired", desired, "--live", labelled])
            .status
            .code(),
        Some(1)
    );
    // A label only in a live dump without managedFields: nothing says who set it; unverified,
    // not drift.
    let cm = write(dir.path(), "cm.yaml", CM);
    let cm = cm.to_str().unwrap();
    let o = run(&["diff", "--desired", cm, "--live", labelled]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("1 field(s) of 1 resource(s) in sync unverified"),
        "{}",
        stdout(&o)
    );
    // In sync: 0.
    let o = run(&["diff", "--desired", cm, "--live", cm]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("No drift."));
    let bad = run(&["diff", "--desired", cm, "--live", cm, "--fail-on", "urgent"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("urgent"));
}

#[test]
fn stdin_and_namespace_default() {
    let dir = tempfile::tempdir().unwrap();
    let desired = write(
        dir.path(),
        "git/app/cm.yaml",
        &CM.replace("  namespace: shop\n", ""),
    );
    let _ignored = write(dir.path(), "git/README.md", "not a manifest");
    let mut child = bin()
        .args([
            "diff",
            "--desired",
            dir.path().join("git").to_str().unwrap(),
            "--live",
            "-",
            "-n",
            "shop",
            "-o",
            "json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(CM.replace("\"1\"", "\"2\"").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["resources"][0]["namespace"], "shop");
    assert_eq!(report["resources"][0]["changes"][0]["field"], "data.a");
    let _ = desired;
    let twice = run(&["diff", "--desired", "-", "--live", "-"]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(stderr(&twice).contains("stdin"));
}

/// Live objects are compared on both threads once the desired ones are in, but a Secret's masks
/// are numbered over the whole run, in the order of reading: a value gets the same mask in every
/// Secret it is in. Swapped values in two Secrets far into the sources show as the same two masks,
/// swapped.
#[test]
fn secret_masks_are_numbered_over_the_run_however_the_work_is_shared() {
    let dir = tempfile::tempdir().unwrap();
    // Enough objects before the Secrets for them to be read after the desired ones are shared.
    let cms: Vec<String> = (0..200)
        .map(|i| CM.replace("name: cfg", &format!("name: cfg-{i}")))
        .collect();
    let secret = |name: &str, value: &str| {
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: shop\ndata:\n  a: {value}\n")
    };
    // base64 of X and of Y.
    let (x, y) = ("WA==", "WQ==");
    let mut desired = cms.clone();
    desired.extend([secret("s1", x), secret("s2", y)]);
    let mut live = cms;
    live.extend([secret("s1", y), secret("s2", x)]);
    let d = write(dir.path(), "desired.yaml", &desired.join("---\n"));
    let l = write(dir.path(), "live.yaml", &live.join("---\n"));
    let o = diff(&d, &l, &["-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        !text.contains(x) && !text.contains(y),
        "a value leaked: {text}"
    );
    let report: Value = serde_json::from_str(&text).unwrap();
    let change = |name: &str| {
        let r = report["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "Secret" && r["name"] == name)
            .unwrap_or_else(|| panic!("no report for {name}"));
        assert_eq!(r["status"], "modified", "{r}");
        let c = &r["changes"][0];
        (c["desired"].clone(), c["live"].clone())
    };
    let (s1_desired, s1_live) = change("s1");
    let (s2_desired, s2_live) = change("s2");
    assert_ne!(s1_desired, s1_live);
    assert_eq!((&s2_desired, &s2_live), (&s1_live, &s1_desired));
}

/// Parsing is shared by two threads, in batches: a long diff must give what reading the sources
/// one after the other gives — a CRD late in the desired sources still decides the scope of its
/// kind's objects parsed before it, on both sides, and `-n` fills in the rest.
#[test]
fn a_long_diff_parsed_on_two_threads_gives_the_in_order_answer() {
    let dir = tempfile::tempdir().unwrap();
    let widget =
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 1\n";
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  names: {kind: Widget, plural: widgets}\n  scope: Cluster\n  versions: [{name: v1, served: true, storage: true}]\n";
    let cms = |n: usize, value: &dyn Fn(usize) -> String| -> Vec<String> {
        (0..n)
            .map(|i| {
                CM.replace("name: cfg", &format!("name: cfg-{i}"))
                    .replace("  namespace: shop\n", "")
                    .replace("\"1\"", &value(i))
            })
            .collect()
    };
    // A Gadget's scope is only declared by a CRD near the end of the live objects, long after
    // the desired objects were read and while live batches are parsed on both threads: Git's
    // Gadget is namespaced (in shop), live's is cluster-scoped, so they are not one object.
    let gadget = widget
        .replace("Widget", "Gadget")
        .replace("name: w", "name: g");
    let mut desired = vec![widget.to_string(), gadget.clone()];
    desired.extend(cms(3000, &|_| "\"1\"".to_string()));
    desired.push(crd.to_string());
    // Every 7th ConfigMap drifted, the last 10 are missing, and a Widget is extra.
    let mut live = vec![widget.to_string()];
    live.extend(cms(2990, &|i| {
        if i % 7 == 0 {
            "\"2\"".to_string()
        } else {
            "\"1\"".to_string()
        }
    }));
    live.push(crd.to_string());
    live.push(widget.replace(
        "name: w",
        "name: extra\n  annotations: {argocd.argoproj.io/tracking-id: \"shop:example.com/Widget:/extra\"}",
    ));
    live.push(crd.replace("Widget", "Gadget").replace("widget", "gadget"));
    live.push(gadget.replace(
        "name: g",
        "name: g\n  annotations: {argocd.argoproj.io/tracking-id: \"shop:example.com/Gadget:/g\"}",
    ));
    // The same for a Gizmo that names its namespace, which the helper thread may compare ahead
    // with the Gizmo of Git as namespaced (its scope, as far as the desired objects tell): the
    // live CRD read before it makes it cluster-scoped, and that comparison is not the answer.
    let gizmo = widget
        .replace("Widget", "Gizmo")
        .replace("name: w", "name: z");
    desired.push(gizmo.clone());
    live.extend(
        cms(64, &|_| "\"1\"".to_string())
            .into_iter()
            .map(|cm| cm.replace("name: cfg-", "name: late-")),
    );
    live.push(crd.replace("Widget", "Gizmo").replace("widget", "gizmo"));
    live.push(gizmo.replace(
        "name: z",
        "name: z\n  namespace: shop\n  annotations: {argocd.argoproj.io/tracking-id: \"shop:example.com/Gizmo:/z\"}",
    ));
    let d = write(dir.path(), "desired.yaml", &desired.join("---\n"));
    let l = write(dir.path(), "live.yaml", &live.join("---\n"));
    let o = diff(&d, &l, &["-n", "shop", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let summary = &report["summary"];
    assert_eq!(summary["resources"], 3007, "{summary}");
    assert_eq!(summary["modified"], 2989 / 7 + 1, "{summary}");
    assert_eq!(summary["missing"], 12, "{summary}");
    assert_eq!(summary["extra"], 3, "{summary}");
    let resources = report["resources"].as_array().unwrap();
    // Git's object is namespaced (missing in shop), live's cluster-scoped (extra).
    for kind in ["Gadget", "Gizmo"] {
        let found: Vec<(&str, &str)> = resources
            .iter()
            .filter(|r| r["kind"] == kind)
            .map(|r| {
                (
                    r["namespace"].as_str().unwrap_or("?"),
                    r["status"].as_str().unwrap_or("?"),
                )
            })
            .collect();
        assert_eq!(found, [("", "extra"), ("shop", "missing")], "{kind}");
    }
    let widgets: Vec<&Value> = resources.iter().filter(|r| r["kind"] == "Widget").collect();
    assert_eq!(widgets.len(), 2);
    for w in widgets {
        assert_eq!(w["namespace"], "", "{w}");
    }
    assert!(resources
        .iter()
        .filter(|r| r["kind"] == "ConfigMap")
        .all(|r| r["namespace"] == "shop"));
    // An error in the last desired batch is the one named, though live batches are parsed by then.
    let broken = write(
        dir.path(),
        "broken.yaml",
        &format!("{}---\nkind: [\n", desired.join("---\n")),
    );
    let e = diff_error(&broken, &l);
    assert!(e.contains("broken.yaml: document 3005 (line"), "{e}");
    // A duplicate far apart in the live sources is found.
    let dup = write(
        dir.path(),
        "dup.yaml",
        &format!("{}---\n{}", live.join("---\n"), live[5]),
    );
    let e = diff_error(&d, &dup);
    assert!(
        e.contains("ConfigMap default/cfg-4 is defined twice"),
        "{e}"
    );
}

/// `argo-drift diff --desired D --live L`, with extra flags.
fn diff(desired: &Path, live: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "diff",
        "--desired",
        desired.to_str().unwrap(),
        "--live",
        live.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// `argo-drift diff --desired D --live L` that must fail with exit code 2: its stderr.
fn diff_error(desired: &Path, live: &Path) -> String {
    let o = diff(desired, live, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    stderr(&o)
}

/// A managedFields key of no form Kubernetes writes, with a multi-byte character second (it made
/// `diff` panic), is skipped; the manager's other fields still attribute the change.
#[test]
fn a_field_set_key_of_no_known_form_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let desired = write(dir.path(), "desired.yaml", CM);
    let live = write(
        dir.path(),
        "live.yaml",
        &CM.replace("a: \"1\"", "a: \"2\"").replace(
            "  namespace: shop\n",
            "  namespace: shop\n  managedFields:\n  - manager: kubectl-edit\n    operation: Update\n    fieldsV1:\n      aé: {}\n      f:data:\n        f:a: {}\n",
        ),
    );
    let o = diff(&desired, &live, &["-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let change = &report["resources"][0]["changes"][0];
    assert_eq!(change["field"], "data.a", "{report}");
    assert_eq!(change["manager"], "kubectl-edit", "{report}");
    assert_eq!(change["attribution"], "exact", "{report}");
}

#[test]
fn errors_name_the_file_document_and_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.yaml", CM);
    let broken = write(
        dir.path(),
        "broken.yaml",
        &format!("{CM}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x\n"),
    );
    let e = diff_error(&broken, &good);
    assert!(e.contains("broken.yaml: document 2 (line"), "{e}");
    // Live errors are named the same way, and an error on the desired side is the one reported
    // even while a long live input is being parsed on the other thread.
    let e = diff_error(&good, &broken);
    assert!(e.contains("broken.yaml: document 2 (line"), "{e}");
    let many: Vec<String> = (0..5000)
        .map(|i| CM.replace("name: cfg", &format!("name: cfg-{i}")))
        .collect();
    let long = write(dir.path(), "long.yaml", &many.join("---\n"));
    let e = diff_error(&broken, &long);
    assert!(e.contains("broken.yaml: document 2 (line"), "{e}");
    assert!(!e.contains("stopped"), "{e}");
    let dup = write(dir.path(), "dup.yaml", &format!("{CM}---\n{CM}"));
    let e = diff_error(&dup, &good);
    assert!(e.contains("ConfigMap shop/cfg is defined twice"), "{e}");
    let e = diff_error(&good, &dup);
    assert!(e.contains("ConfigMap shop/cfg is defined twice"), "{e}");
    assert!(
        e.contains("dup.yaml: document 1") && e.contains("dup.yaml: document 2"),
        "{e}"
    );
    // A live object Git does not hold is refused twice as well, both places named.
    let other = write(
        dir.path(),
        "other.yaml",
        &CM.replace("name: cfg", "name: other"),
    );
    let e = diff_error(&other, &dup);
    assert!(e.contains("ConfigMap shop/cfg is defined twice"), "{e}");
    assert!(
        e.contains("dup.yaml: document 1") && e.contains("dup.yaml: document 2"),
        "{e}"
    );
    let e = diff_error(Path::new("/nonexistent/x.yaml"), &good);
    assert!(e.contains("/nonexistent/x.yaml"), "{e}");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = diff_error(&empty, &good);
    assert!(e.contains("holds no *.yaml"), "{e}");
}

#[test]
fn policy_explain_names_the_rule_and_why() {
    let o = run(&[
        "policy",
        "explain",
        "--kind",
        "Deployment",
        "--path",
        "spec.template.spec.containers[name=web].image",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("kind:     Deployment.apps"), "{text}");
    assert!(
        text.contains("severity: high") && text.contains("rule:     container-image"),
        "{text}"
    );
    assert!(
        text.contains(
            "privileged: path spec.template.spec.containers[name=web].image is under none of"
        ),
        "{text}"
    );
    let o = run(&[
        "policy",
        "explain",
        "--kind",
        "Pod",
        "--path",
        "spec.securityContext.runAsUser",
        "--live-value",
        "0",
    ]);
    assert!(
        stdout(&o).contains("rule:     run-as-root"),
        "{}",
        stdout(&o)
    );
    let o = run(&[
        "policy",
        "explain",
        "--kind",
        "Pod",
        "--path",
        "spec.securityContext.runAsUser",
        "--live-value",
        "1000",
    ]);
    assert!(stdout(&o).contains("rule:     default"), "{}", stdout(&o));
    let o = run(&[
        "policy", "explain", "--kind", "Secret", "--status", "missing",
    ]);
    assert!(stdout(&o).contains("severity: critical"), "{}", stdout(&o));
    let o = run(&[
        "policy",
        "explain",
        "--kind",
        "Deployment",
        "--path",
        "spec..x",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn policy_validate_accepts_the_default_and_names_problems() {
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/policy.yaml");
    let o = run(&["policy", "validate", default.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("valid ("));
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "p.yaml",
        "severity:\n  rules:\n  - name: x\n    paths: [\"**.containers[\"]\n    severity: high\n",
    );
    let o = run(&["policy", "validate", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("p.yaml: severity.rules[0].paths[0]"),
        "{}",
        stderr(&o)
    );
    let o = run(&["policy", "validate", "/nonexistent.yaml"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["diff", "--help"],
        vec!["policy", "--help"],
        vec!["policy", "explain", "--help"],
        vec!["policy", "validate", "--help"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(stdout(&o).contains("Usage:"), "{args:?}");
    }
    assert!(stdout(&run(&["diff", "--help"])).contains("ARGO_DRIFT_FAIL_ON"));
}

#[test]
fn logs_can_be_json_lines_and_run_has_help_and_a_clear_error_without_a_cluster() {
    let out = diff_example(&["--log-level", "info", "--log-format", "json"]);
    let line = stderr(&out).lines().next().unwrap().to_string();
    let log: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(log["level"], "INFO");
    assert_eq!(log["fields"]["message"], "compared");

    let help = stdout(&run(&["run", "--help"]));
    for flag in [
        "--app-namespace",
        "--argocd-server",
        "--leader-election",
        "--policy",
        "ARGO_DRIFT_RESYNC",
    ] {
        assert!(
            help.contains(flag),
            "{flag} missing from run --help:\n{help}"
        );
    }
    let out = bin()
        .args(["run"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: connecting to Kubernetes")
            && err.contains("/nonexistent/kubeconfig"),
        "{err}"
    );
}

/// A one-shot HTTP peer that answers 202 like PagerDuty and hands back the bodies it got.
fn pagerduty_peer(requests: usize) -> (String, std::thread::JoinHandle<Vec<serde_json::Value>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v2/enqueue", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for _ in 0..requests {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            bodies.push(serde_json::from_slice(&body).unwrap());
            let answer = "{\"status\":\"success\",\"message\":\"Event processed\"}";
            let mut stream = reader.into_inner();
            write!(stream, "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}", answer.len()).unwrap();
        }
        bodies
    });
    (url, handle)
}

#[test]
fn notify_test_sends_a_sample_and_for_a_resolution_the_trigger_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (url, peer) = pagerduty_peer(2);
    let config = write(
        dir.path(),
        "n.yaml",
        &format!("channels:\n- name: oncall\n  pagerduty: {{routingKey: {{env: TEST_PD_KEY}}, url: \"{url}\"}}\n"),
    );
    let out = bin()
        .args([
            "notify",
            "test",
            "--config",
            config.to_str().unwrap(),
            "--channel",
            "oncall",
            "--event",
            "drift-resolved",
        ])
        .env("TEST_PD_KEY", "R0UTINGKEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "sent a test drift-detected notification to oncall (1 attempt)\nsent a test drift-resolved notification to oncall (1 attempt)\n"
    );
    let bodies = peer.join().unwrap();
    assert_eq!(bodies[0]["event_action"], "trigger");
    assert_eq!(bodies[1]["event_action"], "resolve");
    assert_eq!(bodies[0]["dedup_key"], bodies[1]["dedup_key"]);
    assert!(!stdout(&out).contains("R0UTINGKEY") && !stderr(&out).contains("R0UTINGKEY"));

    let out = bin()
        .args([
            "notify",
            "test",
            "--config",
            config.to_str().unwrap(),
            "--channel",
            "nope",
        ])
        .env("TEST_PD_KEY", "R0UTINGKEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("has no channel named \"nope\" (channels: oncall)"),
        "{}",
        stderr(&out)
    );
    let out = bin()
        .args([
            "notify",
            "test",
            "--config",
            config.to_str().unwrap(),
            "--channel",
            "oncall",
        ])
        .env_remove("TEST_PD_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "channels[0].pagerduty.routingKey: environment variable TEST_PD_KEY is not set"
        ),
        "{}",
        stderr(&out)
    );
}

fn health_checks() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../health-checks")
}

#[test]
fn every_shipped_health_check_passes_its_table() {
    let dir = health_checks();
    // Shipped as argocd-cm overrides without useOpenLibs: run with the libraries closed.
    let out = run(&["health", "test", "--override", dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let last = text.trim_end().lines().last().unwrap();
    assert!(last.ends_with("passed, 0 failed"), "{text}");
    assert!(
        text.contains("PASS argoproj.io/Application testdata/high-drift.yaml"),
        "{text}"
    );
}

#[test]
fn a_failing_case_a_broken_script_and_a_loop_are_reported_not_crashed() {
    let dir = tempfile::tempdir().unwrap();
    let check = dir.path().join("example.com/Widget");
    std::fs::create_dir_all(check.join("testdata")).unwrap();
    std::fs::write(
        check.join("testdata/w.yaml"),
        "kind: Widget\nstatus: {ready: false}\n",
    )
    .unwrap();
    std::fs::write(
        check.join("health.lua"),
        "if obj.status.ready then return {status = \"Healthy\"} end\nreturn {status = \"Progressing\", message = \"not ready\"}\n",
    )
    .unwrap();
    std::fs::write(
        check.join("health_test.yaml"),
        "tests:\n- healthStatus: {status: Progressing, message: not ready}\n  inputPath: testdata/w.yaml\n- healthStatus: {status: Healthy}\n  inputPath: testdata/w.yaml\n- healthStatus: {status: Healthy}\n  inputPath: testdata/missing.yaml\n",
    )
    .unwrap();
    let out = run(&["health", "test", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL example.com/Widget testdata/w.yaml: expected Healthy \"\", got Progressing \"not ready\""), "{text}");
    assert!(
        text.contains("FAIL example.com/Widget testdata/missing.yaml:"),
        "{text}"
    );
    assert_eq!(
        text.trim_end().lines().last().unwrap(),
        "1 passed, 2 failed"
    );

    let looping = dir.path().join("loop.lua");
    std::fs::write(&looping, "while true do end").unwrap();
    let object = check.join("testdata/w.yaml");
    let out = run(&[
        "health",
        "run",
        "--script",
        looping.to_str().unwrap(),
        "--object",
        object.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ran longer than 1000 ms"));

    let ok = check.join("health.lua");
    let out = run(&[
        "health",
        "run",
        "--script",
        ok.to_str().unwrap(),
        "--object",
        object.to_str().unwrap(),
    ]);
    assert_eq!(
        stdout(&out).trim(),
        r#"{"status":"Progressing","message":"not ready"}"#
    );
}

#[test]
fn the_argocd_cm_entries_carry_each_script() {
    let dir = health_checks();
    let out = run(&["health", "configmap", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let map: serde_yaml::Mapping = serde_yaml::from_str(&stdout(&out)).unwrap();
    let script = map
        .get("resource.customizations.health.argoproj.io_Application")
        .and_then(|v| v.as_str())
        .unwrap();
    assert_eq!(
        script,
        std::fs::read_to_string(dir.join("argoproj.io/Application/health.lua")).unwrap()
    );
}
