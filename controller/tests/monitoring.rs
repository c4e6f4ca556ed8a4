//! deploy/monitoring against the real thing: its rules pass `promtool check rules` and the
//! promtool unit tests beside them (Debian's prometheus package), every series those tests feed
//! in and every metric the rules and the dashboard read is one a real controller exports (scraped
//! from one that watches an app with drift, an app it cannot analyse and a channel it cannot
//! reach), with the same labels; the dashboard's queries parse; the component builds with the
//! real kustomize.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::{json, Value};
use support::*;

fn monitoring(file: &str) -> PathBuf {
    root().join("deploy/monitoring").join(file)
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let promtool = exported(&testenv("promtool"), "ARGO_DRIFT_PROMTOOL");
    let out = std::process::Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The PrometheusRule's `spec`: a Prometheus rule file.
fn rule_file() -> Value {
    let text = std::fs::read_to_string(monitoring("prometheusrule.yaml")).unwrap();
    let rule: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(rule["kind"], "PrometheusRule");
    rule["spec"].clone()
}

/// The metric names a PromQL expression or series selector reads: `argo_drift_…` words that
/// are not recording-rule names (those hold a colon) nor label values (quoted).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let unquoted: String = expr
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(" ");
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("argo_drift_") && !w.contains(':'))
        .map(str::to_string)
        .collect()
}

/// A series selector's metric name and label names (`name{a="x",b="y"}`).
fn selector(series: &str) -> (String, BTreeSet<String>) {
    let (name, rest) = series.split_once('{').unwrap_or((series, "}"));
    let labels = rest
        .trim_end_matches('}')
        .split(',')
        .filter(|l| !l.is_empty())
        .map(|l| l.split_once('=').unwrap().0.trim().to_string())
        .collect();
    (name.to_string(), labels)
}

/// The label-name sets a scrape has samples of `name` with.
fn exported_label_sets(scrape: &str, name: &str) -> Vec<BTreeSet<String>> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' ').map(|(s, _)| s))
        .map(selector)
        .filter(|(n, _)| n == name)
        .map(|(_, labels)| labels)
        .collect()
}

/// Whether the metrics catalogue (docs/architecture.md, Metrics) lists `name`. prometheus-client
/// leaves a family out of a scrape until it has a sample (a counter of actions no app has
/// taken yet): those are looked up here.
fn catalogued(name: &str) -> bool {
    let docs = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    docs.lines()
        .any(|l| l.starts_with(&format!("| `{name}` |")))
}

/// A controller's /metrics once it has seen drift (a ConfigMap edited by hand), failed to analyse
/// an app (its Git repository does not exist) and failed to notify (a PagerDuty URL nobody
/// listens on).
async fn real_scrape() -> String {
    let client = client().await;
    let dir = tempfile::tempdir().unwrap();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  mode: safe\n";
    let synced = synced_app(&client, "flags", "flags.yaml", cm).await;
    let (argocd, shop) = (&synced.argocd, &synced.shop);
    let missing = format!("git://127.0.0.1:{}/nowhere.git", free_port());
    apply(
        &client,
        argocd,
        application("lost", &missing, "", shop, Some("main")),
        "argocd-server",
    )
    .await;
    let url = format!("http://127.0.0.1:{}/v2/enqueue", free_port());
    let notifications = pagerduty_notifications(dir.path(), &url, &["*"], "low", "");
    let args = ["--notifications", notifications.to_str().unwrap()];
    let controller = Running::start(&admin_config().await, argocd, &args).await;
    wait_for("the first report", Duration::from_secs(20), || async {
        report(&client, argocd, "flags").await
    })
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), shop);
    edit_config_map(&configmaps, "flags", json!({"mode": "yolo"})).await;
    let wanted = [
        "argo_drift_oldest_drift_seconds{",
        "argo_drift_reconcile_errors_total{",
        "argo_drift_notifications_total{channel=\"oncall\",outcome=\"failed\"}",
    ];
    // A failed delivery is counted after its retries (about 8 s).
    let scrape = wait_for(
        "drift, a failed analysis and a failed notification in /metrics",
        Duration::from_secs(60),
        || async {
            let (_, scrape) = controller.get("/metrics").await;
            wanted.iter().all(|w| scrape.contains(w)).then_some(scrape)
        },
    )
    .await;
    assert_eq!(controller.stop().await, std::process::ExitCode::SUCCESS);
    scrape
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_rules_and_dashboard_read_what_a_real_controller_exports_and_pass_promtool() {
    let scrape = real_scrape().await;

    // The rule file and its unit tests, side by side as the test file names them.
    let dir = tempfile::tempdir().unwrap();
    let rules = rule_file();
    std::fs::write(
        dir.path().join("argo-drift-rules.yaml"),
        serde_yaml::to_string(&rules).unwrap(),
    )
    .unwrap();
    let tests_text =
        std::fs::read_to_string(monitoring("tests/argo-drift-rules.test.yaml")).unwrap();
    std::fs::write(dir.path().join("argo-drift-rules.test.yaml"), &tests_text).unwrap();
    let checked = promtool(&["check", "rules", "argo-drift-rules.yaml"], dir.path());
    assert!(checked.contains("SUCCESS: 6 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "argo-drift-rules.test.yaml"], dir.path());
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every series the unit tests feed in is exported with those labels (besides the `pod` a
    // scrape adds), so the tests test what a cluster will see.
    let tests: Value = serde_yaml::from_str(&tests_text).unwrap();
    let mut fed = 0;
    for series in tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["input_series"].as_array().unwrap())
    {
        let (name, mut labels) = selector(series["series"].as_str().unwrap());
        labels.remove("pod");
        let exported = exported_label_sets(&scrape, &name);
        assert!(
            exported.contains(&labels),
            "{name} with labels {labels:?} is fed to the rule tests, but the controller exports \
             it with {exported:?}:\n{scrape}"
        );
        fed += 1;
    }
    assert!(fed >= 8, "{fed}");

    // Every metric a rule reads is exported.
    let mut read = BTreeSet::new();
    for rule in rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        read.extend(metric_names(rule["expr"].as_str().unwrap()));
    }
    for name in &read {
        assert!(
            !exported_label_sets(&scrape, name).is_empty(),
            "a rule reads {name}, which the controller does not export:\n{scrape}"
        );
    }

    // The dashboard: each query reads exported metrics (in the scrape, or catalogued when this
    // controller had nothing to count: no remediation action was taken) and parses as PromQL
    // (checked by promtool as recording rules, with Grafana's variables given values).
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    exprs.extend(
        dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["definition"].as_str())
            .filter_map(|d| d.strip_prefix("label_values("))
            .map(|d| d.split(',').next().unwrap().to_string()),
    );
    assert!(exprs.len() >= 12, "{exprs:?}");
    let recorded: BTreeSet<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["record"].as_str().map(str::to_string))
        .collect();
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(
                !exported_label_sets(&scrape, &name).is_empty() || catalogued(&name),
                "the dashboard reads {name}, which the controller does not export:\n{scrape}"
            );
        }
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if word.contains(':') && word.starts_with("argo_drift") {
                assert!(recorded.contains(word), "{word} is recorded by no rule");
            }
        }
    }
    let as_rules = json!({"groups": [{
        "name": "dashboard",
        "rules": exprs.iter().enumerate().map(|(i, e)| json!({
            "record": format!("dashboard:query_{i}"),
            "expr": e.replace("$app", ".*"),
        })).collect::<Vec<_>>(),
    }]});
    std::fs::write(
        dir.path().join("dashboard.yaml"),
        serde_yaml::to_string(&as_rules).unwrap(),
    )
    .unwrap();
    promtool(&["check", "rules", "dashboard.yaml"], dir.path());
    // Not `promtool check metrics`: it reads Prometheus' classic text format, and /metrics is
    // OpenMetrics (served as such), where a counter's HELP names its family without `_total`.
}

/// The component as users add it: argo-drift's base and deploy/monitoring, built by the real
/// kustomize; the rule and the dashboard come out whole.
#[test]
fn the_monitoring_component_builds_with_kustomize() {
    let objects = kustomize_build(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n\
         - ../../deploy/base\ncomponents:\n- ../../deploy/monitoring\n",
        &[],
    );
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the build"))
    };
    assert_eq!(find("PrometheusRule", "argo-drift")["spec"], rule_file());
    let dashboard = find("ConfigMap", "argo-drift-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dashboard["metadata"]["namespace"], "argocd");
    let json: Value = serde_json::from_str(
        dashboard["data"]["grafana-dashboard.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["uid"], "argo-drift");
    find("ServiceMonitor", "argo-drift");
}
