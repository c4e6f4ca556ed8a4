//! Decisions and guardrails, as a pure function of the report, the policy, the state and an
//! injected clock: every guardrail is shown here without a cluster and without sleeping.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use argo_drift_core::policy::{
    decide, Action, Answer, AppInput, Budget, Decision, Guardrail, GuardrailState, Mode,
    Remediation, RemediationSpec, Step,
};
use argo_drift_core::report::DriftReport;
use argo_drift_core::{Policy, Severity};
use serde_json::json;

const T0: i64 = 1_800_000_000;

/// A report of `total` resources of which these ConfigMaps drifted: (name, field, severity,
/// rule).
fn report(drifted: &[(&str, &str, &str, &str)], total: usize) -> DriftReport {
    let resources: Vec<_> = drifted
        .iter()
        .map(|(name, field, severity, rule)| {
            json!({
                "group": "", "version": "v1", "kind": "ConfigMap", "namespace": "shop", "name": name,
                "status": "modified", "severity": severity,
                "changes": [{
                    "path": "/data/x", "field": field, "op": "replace", "desired": "1", "live": "2",
                    "severity": severity, "rule": rule, "manager": "kubectl-edit", "attribution": "exact"
                }]
            })
        })
        .collect();
    serde_json::from_value(json!({
        "summary": {"resources": total, "synced": total - drifted.len(), "modified": drifted.len(),
                    "missing": 0, "extra": 0, "severity": "none"},
        "resources": resources,
    }))
    .unwrap()
}

fn enforce() -> RemediationSpec {
    RemediationSpec {
        mode: Mode::Enforce,
        ..RemediationSpec::default()
    }
}

struct Run {
    remediation: Remediation,
    state: GuardrailState,
}

impl Run {
    fn new(spec: &RemediationSpec) -> Run {
        Run {
            remediation: Remediation::compile(spec.clone(), BTreeMap::new()).unwrap(),
            state: GuardrailState::default(),
        }
    }

    fn decide_with(
        &mut self,
        app: &str,
        report: &DriftReport,
        id: &str,
        answer: Option<Answer>,
        budget: Budget,
        now: i64,
    ) -> Decision {
        let input = AppInput {
            app,
            tier: None,
            mode: None,
            report,
            report_id: id,
            answer,
            budget,
            operation_running: false,
        };
        decide(&self.remediation, &input, &mut self.state, now)
    }

    /// With a human's answer on the Application.
    fn answered(
        &mut self,
        app: &str,
        report: &DriftReport,
        id: &str,
        answer: Answer,
        now: i64,
    ) -> Decision {
        self.decide_with(app, report, id, Some(answer), Budget::NotConfigured, now)
    }

    fn decide(&mut self, app: &str, report: &DriftReport, now: i64) -> Decision {
        self.decide_with(app, report, "r1", None, Budget::NotConfigured, now)
    }
}

fn heals(d: &Decision) -> Vec<String> {
    d.steps
        .iter()
        .filter_map(|s| match s {
            Step::Heal { resources, .. } => {
                Some(resources.iter().map(|k| k.name.clone()).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

fn held_by(d: &Decision) -> Vec<Guardrail> {
    d.held.iter().map(|h| h.guardrail).collect()
}

#[test]
fn the_shipped_defaults_by_severity() {
    let spec = enforce();
    let mut run = Run::new(&spec);
    let d = run.decide(
        "argocd/info",
        &report(&[("a", "data.a", "info", "r")], 5),
        T0,
    );
    assert_eq!(d.resources[0].actions, [Action::Ignore]);
    assert!(d.steps.is_empty() && d.held.is_empty(), "{d:?}");

    let d = run.decide("argocd/low", &report(&[("a", "data.a", "low", "r")], 5), T0);
    assert_eq!(heals(&d), ["a"]);

    let d = run.decide(
        "argocd/medium",
        &report(&[("a", "data.a", "medium", "r")], 5),
        T0,
    );
    assert!(
        matches!(&d.steps[..], [Step::RequestApproval { id, .. }] if id == "r1"),
        "{d:?}"
    );
    assert_eq!(held_by(&d), [Guardrail::ApprovalPending]);
    assert!(d.pending_approval.is_some());

    let d = run.decide(
        "argocd/high",
        &report(&[("a", "data.a", "high", "r")], 5),
        T0,
    );
    assert_eq!(d.resources[0].actions, [Action::Approve, Action::Page]);
    assert!(d.steps.iter().any(|s| matches!(
        s,
        Step::Page {
            severity: Severity::High,
            ..
        }
    )));
    assert!(d
        .steps
        .iter()
        .any(|s| matches!(s, Step::RequestApproval { .. })));

    let d = run.decide(
        "argocd/crit",
        &report(
            &[
                ("a", "data.a", "critical", "r"),
                ("b", "data.b", "low", "r"),
            ],
            5,
        ),
        T0,
    );
    assert!(d.steps.contains(&Step::Freeze), "{d:?}");
    assert!(
        heals(&d).is_empty(),
        "frozen: the low drift is kept as evidence too"
    );
    assert_eq!(held_by(&d), [Guardrail::Frozen]);
    // Frozen stays frozen, without freezing again.
    let d = run.decide(
        "argocd/crit",
        &report(&[("b", "data.b", "low", "r")], 5),
        T0 + 60,
    );
    assert!(!d.steps.contains(&Step::Freeze));
    assert_eq!(held_by(&d), [Guardrail::Frozen]);
}

#[test]
fn tiers_and_rules_override_the_actions_of_a_severity() {
    let policy = Policy::from_yaml(
        "p.yaml",
        "severity:\n  rules:\n  - {name: replicas, paths: [spec.replicas], severity: medium, actions: [heal, notify]}\nremediation:\n  mode: enforce\n  tiers:\n    critical-services:\n      low: [approve]\n",
    )
    .unwrap();
    let mut run = Run {
        remediation: policy.remediation.clone(),
        state: GuardrailState::default(),
    };
    let r = report(&[("a", "data.a", "low", "r")], 5);
    let input = AppInput {
        app: "argocd/pay",
        tier: Some("critical-services"),
        mode: None,
        report: &r,
        report_id: "r1",
        answer: None,
        budget: Budget::NotConfigured,
        operation_running: false,
    };
    let d = decide(&run.remediation, &input, &mut run.state, T0);
    assert_eq!(d.resources[0].actions, [Action::Approve]);
    let d = run.decide(
        "argocd/web",
        &report(&[("a", "spec.replicas", "medium", "replicas")], 5),
        T0,
    );
    assert_eq!(d.resources[0].actions, [Action::Notify, Action::Heal]);
    assert_eq!(heals(&d), ["a"]);
}

#[test]
fn observe_decides_nothing_and_dry_run_spends_nothing() {
    let spec = RemediationSpec::default();
    assert_eq!(spec.mode, Mode::DryRun, "the shipped default");
    let mut run = Run::new(&spec);
    let r = report(&[("a", "data.a", "low", "r")], 5);
    for _ in 0..3 {
        let d = run.decide("argocd/web", &r, T0);
        assert_eq!(heals(&d), ["a"], "what would be done");
        assert!(!d.acts());
        assert!(held_by(&d).contains(&Guardrail::DryRun));
    }
    assert_eq!(
        run.state,
        GuardrailState::default(),
        "no token, cooldown or heal recorded"
    );
    let input = AppInput {
        app: "argocd/web",
        tier: None,
        mode: Some(Mode::Observe),
        report: &r,
        report_id: "r1",
        answer: None,
        budget: Budget::NotConfigured,
        operation_running: false,
    };
    let d = decide(&run.remediation, &input, &mut run.state, T0);
    assert!(d.steps.is_empty() && d.held.is_empty());
    assert_eq!(d.mode, Mode::Observe);
}

#[test]
fn the_per_app_rate_limit_holds_until_a_token_is_back() {
    let spec = enforce();
    let mut run = Run::new(&spec);
    let d = run.decide("argocd/web", &report(&[("a", "data.a", "low", "r")], 5), T0);
    assert_eq!(heals(&d), ["a"]);
    let d = run.decide(
        "argocd/web",
        &report(&[("b", "data.b", "low", "r")], 5),
        T0 + 10,
    );
    assert_eq!(held_by(&d), [Guardrail::RateLimitApp]);
    assert_eq!(d.held[0].until, Some(T0 + 300), "one action per 5 minutes");
    let d = run.decide(
        "argocd/web",
        &report(&[("b", "data.b", "low", "r")], 5),
        T0 + 300,
    );
    assert_eq!(heals(&d), ["b"]);
}

#[test]
fn a_burst_of_twenty_drifting_apps_lets_exactly_the_global_allowance_act() {
    let spec = enforce();
    let mut run = Run::new(&spec);
    let mut acted = 0;
    let mut held = Vec::new();
    for i in 0..20 {
        let d = run.decide(
            &format!("argocd/app-{i}"),
            &report(&[("a", "data.a", "low", "r")], 5),
            T0,
        );
        if heals(&d).is_empty() {
            held.push(d.held[0].clone());
        } else {
            acted += 1;
        }
    }
    assert_eq!(acted, 2, "2 per minute across all applications");
    assert_eq!(held.len(), 18);
    assert!(held
        .iter()
        .all(|h| h.guardrail == Guardrail::RateLimitGlobal && h.until == Some(T0 + 30)));
    // Half a minute later one more token is back.
    let d = run.decide(
        "argocd/app-2",
        &report(&[("a", "data.a", "low", "r")], 5),
        T0 + 30,
    );
    assert_eq!(heals(&d), ["a"]);
}

fn generous() -> RemediationSpec {
    let mut spec = enforce();
    spec.guardrails.rate_limit.per_app.actions = 100;
    spec.guardrails.rate_limit.global.actions = 100;
    spec
}

#[test]
fn the_same_field_is_not_acted_on_again_within_the_cooldown_even_after_a_restart() {
    let spec = generous();
    let mut run = Run::new(&spec);
    let r = report(&[("a", "data.a", "low", "r")], 5);
    assert_eq!(heals(&run.decide("argocd/web", &r, T0)), ["a"]);
    // The controller restarts: the state is persisted as JSON and read back.
    let text = serde_json::to_string(&run.state).unwrap();
    run.state = serde_json::from_str(&text).unwrap();
    let d = run.decide("argocd/web", &r, T0 + 60);
    assert_eq!(held_by(&d), [Guardrail::Cooldown], "{d:?} {text}");
    assert_eq!(d.held[0].until, Some(T0 + 600));
    // Another field of the same app is not cooling down.
    let d = run.decide(
        "argocd/web",
        &report(&[("a", "data.b", "low", "r")], 5),
        T0 + 61,
    );
    assert_eq!(heals(&d), ["a"]);
    assert_eq!(heals(&run.decide("argocd/web", &r, T0 + 600)), ["a"]);
}

#[test]
fn a_field_that_keeps_coming_back_trips_the_recurrence_breaker() {
    let spec = generous();
    let mut run = Run::new(&spec);
    let r = report(&[("a", "data.a", "low", "r")], 5);
    for k in 0..3 {
        let d = run.decide("argocd/web", &r, T0 + k * 601);
        assert_eq!(heals(&d), ["a"], "heal {k}");
    }
    let d = run.decide("argocd/web", &r, T0 + 1300);
    assert!(heals(&d).is_empty());
    assert!(d.steps.iter().any(|s| matches!(s, Step::BreakerTripped { fields } if fields == &["ConfigMap shop/a data.a"])), "{d:?}");
    assert!(d.steps.iter().any(|s| matches!(s, Step::Page { .. })));
    assert_eq!(held_by(&d), [Guardrail::RecurrenceBreaker]);
    // It stays tripped, without paging again, until a human resets it.
    let d = run.decide("argocd/web", &r, T0 + 5000);
    assert!(!d
        .steps
        .iter()
        .any(|s| matches!(s, Step::BreakerTripped { .. } | Step::Page { .. })));
    assert_eq!(held_by(&d), [Guardrail::RecurrenceBreaker]);
    run.state.forget("argocd/web");
    assert_eq!(heals(&run.decide("argocd/web", &r, T0 + 5001)), ["a"]);
    // Heals spread wider than the window do not trip it.
    let mut run = Run::new(&spec);
    for k in 0..6 {
        assert_eq!(
            heals(&run.decide("argocd/other", &r, T0 + k * 1000)),
            ["a"],
            "heal {k}"
        );
    }
}

#[test]
fn blast_radius_refuses_heals_that_touch_too_much() {
    let spec = generous();
    let mut run = Run::new(&spec);
    let many: Vec<(String, &str, &str, &str)> = (0..11)
        .map(|i| (format!("c{i}"), "data.a", "low", "r"))
        .collect();
    let many: Vec<(&str, &str, &str, &str)> = many
        .iter()
        .map(|(n, f, s, r)| (n.as_str(), *f, *s, *r))
        .collect();
    let d = run.decide("argocd/web", &report(&many, 100), T0);
    assert_eq!(held_by(&d), [Guardrail::BlastRadius]);
    assert!(
        d.held[0].reason.contains("11 of 100"),
        "{}",
        d.held[0].reason
    );
    let d = run.decide(
        "argocd/small",
        &report(
            &[
                ("a", "data.a", "low", "r"),
                ("b", "data.a", "low", "r"),
                ("c", "data.a", "low", "r"),
            ],
            4,
        ),
        T0,
    );
    assert_eq!(held_by(&d), [Guardrail::BlastRadius], "75% of the app");
    let d = run.decide(
        "argocd/fine",
        &report(
            &[("a", "data.a", "low", "r"), ("b", "data.a", "low", "r")],
            4,
        ),
        T0,
    );
    assert_eq!(heals(&d), ["a", "b"], "50% is allowed");
    let d = run.decide(
        "argocd/tiny",
        &report(&[("a", "data.a", "low", "r")], 1),
        T0,
    );
    assert_eq!(heals(&d), ["a"], "one resource is never a blast");
}

#[test]
fn the_error_budget_gate_pages_instead_and_fails_safe() {
    let mut spec = generous();
    spec.guardrails.error_budget = Some(
        serde_json::from_value(json!({
            "prometheusUrl": "http://prometheus:9090", "query": "slo:budget", "minimum": 0.2
        }))
        .unwrap(),
    );
    let mut run = Run::new(&spec);
    let r = report(&[("a", "data.a", "low", "r")], 5);
    let d = run.decide_with("argocd/a", &r, "r1", None, Budget::Remaining(0.1), T0);
    assert_eq!(held_by(&d), [Guardrail::ErrorBudget]);
    assert!(d.steps.iter().any(|s| matches!(s, Step::Page { .. })));
    let d = run.decide_with(
        "argocd/b",
        &r,
        "r1",
        None,
        Budget::Unavailable("connection refused".into()),
        T0,
    );
    assert_eq!(held_by(&d), [Guardrail::ErrorBudgetUnavailable]);
    assert!(heals(&d).is_empty());
    let d = run.decide_with("argocd/c", &r, "r1", None, Budget::Remaining(0.5), T0);
    assert_eq!(heals(&d), ["a"]);
}

#[test]
fn approvals_heal_when_approved_and_only_for_the_current_report() {
    let spec = enforce();
    let mut run = Run::new(&spec);
    let r = report(&[("a", "data.a", "medium", "r")], 5);
    run.decide_with("argocd/web", &r, "r1", None, Budget::NotConfigured, T0);
    // An approval naming another report does nothing.
    let d = run.answered(
        "argocd/web",
        &r,
        "r1",
        Answer::Approve("r0".into()),
        T0 + 10,
    );
    assert!(heals(&d).is_empty());
    assert!(held_by(&d).contains(&Guardrail::StaleApproval));
    assert!(held_by(&d).contains(&Guardrail::ApprovalPending));
    let d = run.answered(
        "argocd/web",
        &r,
        "r1",
        Answer::Approve("r1".into()),
        T0 + 20,
    );
    assert!(
        matches!(&d.steps[..], [Step::Heal { approved: Some(id), .. }] if id == "r1"),
        "{d:?}"
    );
    assert!(d.pending_approval.is_none());
    // The same annotation still there on the next pass does not heal again.
    let d = run.answered(
        "argocd/web",
        &r,
        "r1",
        Answer::Approve("r1".into()),
        T0 + 30,
    );
    assert!(heals(&d).is_empty(), "{d:?}");
}

#[test]
fn an_approval_on_a_changed_drift_is_stale_and_a_new_one_is_requested() {
    let spec = enforce();
    let mut run = Run::new(&spec);
    let r = report(&[("a", "data.a", "medium", "r")], 5);
    run.decide_with("argocd/web", &r, "r1", None, Budget::NotConfigured, T0);
    let changed = report(&[("a", "data.b", "medium", "r")], 5);
    let d = run.answered(
        "argocd/web",
        &changed,
        "r2",
        Answer::Approve("r1".into()),
        T0 + 10,
    );
    assert!(heals(&d).is_empty());
    assert!(
        d.steps
            .iter()
            .any(|s| matches!(s, Step::RequestApproval { id, .. } if id == "r2")),
        "{d:?}"
    );
    assert_eq!(d.pending_approval.unwrap().id, "r2");
}

#[test]
fn approvals_escalate_once_expire_and_are_not_asked_again_for_the_same_drift() {
    let spec = enforce();
    let mut run = Run::new(&spec);
    let r = report(&[("a", "data.a", "medium", "r")], 5);
    run.decide("argocd/web", &r, T0);
    assert!(!run
        .decide("argocd/web", &r, T0 + 3599)
        .steps
        .iter()
        .any(|s| matches!(s, Step::EscalateApproval { .. })));
    let d = run.decide("argocd/web", &r, T0 + 3600);
    assert!(
        matches!(&d.steps[..], [Step::EscalateApproval { id }] if id == "r1"),
        "{d:?}"
    );
    assert!(
        run.decide("argocd/web", &r, T0 + 3700).steps.is_empty(),
        "escalated once"
    );
    let d = run.decide("argocd/web", &r, T0 + 24 * 3600);
    assert!(
        matches!(&d.steps[..], [Step::ApprovalExpired { id }] if id == "r1"),
        "{d:?}"
    );
    assert!(d.pending_approval.is_none());
    let d = run.decide("argocd/web", &r, T0 + 24 * 3600 + 60);
    assert!(
        d.steps.is_empty(),
        "not asked again for the same drift: {d:?}"
    );
    // Approving after expiry does nothing.
    let d = run.answered(
        "argocd/web",
        &r,
        "r1",
        Answer::Approve("r1".into()),
        T0 + 25 * 3600,
    );
    assert!(heals(&d).is_empty());
}

#[test]
fn a_rejection_closes_the_request_for_that_drift() {
    let spec = enforce();
    let mut run = Run::new(&spec);
    let r = report(&[("a", "data.a", "medium", "r")], 5);
    run.decide("argocd/web", &r, T0);
    let d = run.answered("argocd/web", &r, "r1", Answer::Reject("r1".into()), T0 + 5);
    assert!(
        matches!(&d.steps[..], [Step::ApprovalRejected { id }] if id == "r1"),
        "{d:?}"
    );
    assert!(run.decide("argocd/web", &r, T0 + 10).steps.is_empty());
}

#[test]
fn the_shipped_policy_has_the_documented_remediation_defaults() {
    let p = Policy::builtin().unwrap();
    assert_eq!(p.remediation.spec, RemediationSpec::default());
    let g = &p.remediation.spec.guardrails;
    assert_eq!(
        (
            g.cooldown_seconds,
            g.recurrence.count,
            g.recurrence.window_seconds
        ),
        (600, 3, 1800)
    );
    assert_eq!(
        (g.blast_radius.max_resources, g.blast_radius.max_percent),
        (10, 50)
    );
    assert_eq!(
        (g.rate_limit.global.actions, g.rate_limit.global.per_seconds),
        (2, 60)
    );
    assert_eq!(
        (
            g.rate_limit.per_app.actions,
            g.rate_limit.per_app.per_seconds
        ),
        (1, 300)
    );
    assert_eq!(p.remediation.spec.approvals.expire_seconds, 86400);
    assert_eq!(p.remediation.spec.mode, Mode::DryRun);
    let err = Policy::from_yaml(
        "p.yaml",
        "remediation:\n  actions:\n    low: [heal, freeze]\n",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "p.yaml: remediation.actions.low: at most one of heal, workflow, approve and freeze"
    );
    let err = Policy::from_yaml("p.yaml", "remediation:\n  mode: enforced\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("enforced"), "{err}");
}

#[test]
fn windows_hold_automatic_heals_like_argo_cd_sync_windows() {
    // T0 = 2027-01-15T08:00:00Z, a Friday.
    let mut spec = generous();
    spec.guardrails.windows = serde_json::from_value(json!([
        {"kind": "deny", "schedule": "0 7 * * *", "duration": "2h"}
    ]))
    .unwrap();
    let mut run = Run::new(&spec);
    let r = report(&[("a", "data.a", "low", "r")], 5);
    let d = run.decide("argocd/web", &r, T0);
    assert_eq!(held_by(&d), [Guardrail::Window]);
    assert_eq!(d.held[0].until, Some(T0 + 3600), "closes at 09:00");
    assert_eq!(heals(&run.decide("argocd/web", &r, T0 + 3600)), ["a"]);

    // Allow windows: automation only inside them, in their time zone.
    spec.guardrails.windows = serde_json::from_value(json!([
        {"kind": "allow", "schedule": "0 10 * * 1-5", "duration": "1h", "timeZone": "Europe/Berlin"}
    ]))
    .unwrap();
    let mut run = Run::new(&spec);
    let d = run.decide("argocd/web", &r, T0);
    assert_eq!(held_by(&d), [Guardrail::Window]);
    assert_eq!(
        d.held[0].until,
        Some(T0 + 3600),
        "10:00 in Berlin is 09:00 UTC in January"
    );
    assert_eq!(
        heals(&run.decide("argocd/web", &r, T0 + 3600 + 1800)),
        ["a"]
    );
}

#[test]
fn window_errors_name_the_key() {
    let err = |w: &str| {
        Policy::from_yaml(
            "p.yaml",
            &format!("remediation:\n  guardrails:\n    windows: [{w}]\n"),
        )
        .unwrap_err()
        .to_string()
    };
    assert!(err("{kind: deny, schedule: '61 * * * *', duration: 1h}")
        .starts_with("p.yaml: remediation.guardrails.windows[0].schedule:"));
    assert!(err("{kind: deny, schedule: '0 * * * *', duration: 1d}")
        .starts_with("p.yaml: remediation.guardrails.windows[0].duration:"));
    assert!(
        err("{kind: deny, schedule: '0 * * * *', duration: 1h, timeZone: Mars/Olympus}")
            .starts_with("p.yaml: remediation.guardrails.windows[0].timeZone:")
    );
}

#[test]
fn nothing_new_starts_while_an_operation_is_in_flight() {
    let spec = enforce();
    let mut run = Run::new(&spec);
    let r = report(&[("a", "data.a", "low", "r")], 5);
    let input = AppInput {
        app: "argocd/web",
        tier: None,
        mode: None,
        report: &r,
        report_id: "r1",
        answer: None,
        budget: Budget::NotConfigured,
        operation_running: true,
    };
    let d = decide(&run.remediation, &input, &mut run.state, T0);
    assert!(heals(&d).is_empty());
    assert_eq!(held_by(&d), [Guardrail::OperationInProgress]);
    assert_eq!(run.state, GuardrailState::default(), "no token spent");
}

#[test]
fn the_workflow_action_runs_the_template_per_resource_behind_the_same_guardrails() {
    let policy = Policy::from_yaml(
        "p.yaml",
        "remediation:\n  mode: enforce\n  actions: {low: [workflow]}\n  workflow: {template: diagnose, namespace: wf, serviceAccount: drift-runner, parameters: {team: sre}, ttlSecondsAfterFinished: 3600}\n",
    )
    .unwrap();
    let mut run = Run {
        remediation: policy.remediation.clone(),
        state: GuardrailState::default(),
    };
    let d = run.decide("argocd/web", &report(&[("a", "data.a", "low", "r")], 5), T0);
    let Step::RunWorkflows { workflows } = &d.steps[0] else {
        panic!("{d:?}")
    };
    assert_eq!(workflows.len(), 1);
    let w = &workflows[0];
    assert_eq!(
        (
            w.template.as_str(),
            w.namespace.as_str(),
            w.service_account.as_str()
        ),
        ("diagnose", "wf", "drift-runner")
    );
    let p: std::collections::BTreeMap<_, _> = w.parameters.iter().cloned().collect();
    assert_eq!(p["app"], "argocd/web");
    assert_eq!(p["kind"], "ConfigMap");
    assert_eq!(p["name"], "a");
    assert_eq!(p["namespace"], "shop");
    assert_eq!(p["severity"], "low");
    assert_eq!(p["fields"], "data.a");
    assert_eq!(p["report-id"], "r1");
    assert_eq!(p["team"], "sre");
    assert_eq!(w.ttl_seconds_after_finished, Some(3600));
    // The same cooldown and rate limits as a heal.
    let d = run.decide(
        "argocd/web",
        &report(&[("a", "data.a", "low", "r")], 5),
        T0 + 60,
    );
    assert_eq!(held_by(&d), [Guardrail::Cooldown]);
    // Without a workflow section the policy does not load.
    let err = Policy::from_yaml("p.yaml", "remediation:\n  actions: {low: [workflow]}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("remediation.workflow"), "{err}");
}
