//! Decisions and guardrails, as a pure function of the report, the policy, the state and an
//! injected clock: every guardrail is shown here without a cluster and without sleeping.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use argo_drift_core::policy::{
    decide, Action, Answer, AppInput, Budget, Decision, EndedOperation, Guardrail, GuardrailState,
    Mode, OperationView, Remediation, RemediationSpec, Step,
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

/// Decisions in a row, with Argo CD's part played: unless a test says otherwise, every heal's
/// operation has ended successfully by the next look (`operations`, per app).
struct Run {
    remediation: Remediation,
    state: GuardrailState,
    operations: BTreeMap<String, OperationView>,
    /// `argo-drift.io/heal-now` on every app.
    heal_now: Option<String>,
}

impl Run {
    fn new(spec: &RemediationSpec) -> Run {
        Run::compiled(Remediation::compile(spec.clone(), BTreeMap::new()).unwrap())
    }

    fn compiled(remediation: Remediation) -> Run {
        Run {
            remediation,
            state: GuardrailState::default(),
            operations: BTreeMap::new(),
            heal_now: None,
        }
    }

    /// Argo CD ended the app's last heal this way.
    fn heal_ended(&mut self, app: &str, d: &Decision, succeeded: bool) {
        self.operations.insert(
            app.to_string(),
            OperationView {
                running: false,
                last: Some(EndedOperation {
                    heal_id: Some(heal_id(d)),
                    succeeded,
                    message: if succeeded {
                        "successfully synced (all tasks run)".into()
                    } else {
                        "one or more objects failed to apply".into()
                    },
                }),
            },
        );
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
            heal_now: self.heal_now.clone(),
            budget,
            operation: self.operations.get(app).cloned().unwrap_or_default(),
        };
        let d = decide(&self.remediation, &input, &mut self.state, now);
        if d.steps.iter().any(|s| matches!(s, Step::Heal { .. })) {
            self.heal_ended(app, &d, true);
        }
        d
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

/// The id of the decision's heal.
fn heal_id(d: &Decision) -> String {
    d.steps
        .iter()
        .find_map(|s| match s {
            Step::Heal { id, .. } => Some(id.clone()),
            _ => None,
        })
        .unwrap()
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
    let mut run = Run::compiled(policy.remediation.clone());
    let r = report(&[("a", "data.a", "low", "r")], 5);
    let input = AppInput {
        app: "argocd/pay",
        tier: Some("critical-services"),
        mode: None,
        report: &r,
        report_id: "r1",
        answer: None,
        heal_now: None,
        budget: Budget::NotConfigured,
        operation: OperationView::default(),
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
        heal_now: None,
        budget: Budget::NotConfigured,
        operation: OperationView::default(),
    };
    let d = decide(&run.remediation, &input, &mut run.state, T0);
    assert!(d.steps.is_empty() && d.held.is_empty());
    assert_eq!(d.mode, Mode::Observe);
}

#[test]
fn the_per_app_rate_limit_holds_until_its_window_allows() {
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
    assert_eq!(
        d.held[0].until,
        Some(T0 + 300),
        "one action in any 5 minutes"
    );
    assert_eq!(
        d.held[0].reason,
        "at most 1 action(s) in any 300 s for this application; the next one may start at 2027-01-15T08:05:00Z"
    );
    let d = run.decide(
        "argocd/web",
        &report(&[("b", "data.b", "low", "r")], 5),
        T0 + 299,
    );
    assert_eq!(held_by(&d), [Guardrail::RateLimitApp]);
    let d = run.decide(
        "argocd/web",
        &report(&[("b", "data.b", "low", "r")], 5),
        T0 + 300,
    );
    assert_eq!(heals(&d), ["b"]);
}

/// Six apps drift at once under the shipped "at most 2 actions per 60 s across all
/// applications"; each looks again every second for five minutes. Returns who acted when.
fn burst_of_six(run: &mut Run) -> Vec<(i64, String)> {
    let r = report(&[("a", "data.a", "low", "r")], 5);
    let mut acted: Vec<(i64, String)> = Vec::new();
    for t in 0..300 {
        for i in 0..6 {
            let app = format!("argocd/app-{i}");
            if acted.iter().any(|(_, a)| *a == app) {
                continue;
            }
            let d = run.decide(&app, &r, T0 + t);
            if !heals(&d).is_empty() {
                acted.push((t, app));
            } else {
                let h = &d.held[0];
                assert_eq!(h.guardrail, Guardrail::RateLimitGlobal, "{d:?}");
                assert_eq!(
                    h.reason,
                    format!(
                        "at most 2 action(s) in any 60 s across all applications; the next one may start at {}",
                        chrono::DateTime::from_timestamp(h.until.unwrap(), 0)
                            .unwrap()
                            .format("%Y-%m-%dT%H:%M:%SZ")
                    )
                );
                // The hold's `until` is exact: nothing acts before it, and the first look at
                // it acts (checked below through the times).
                assert!(h.until.unwrap() > T0 + t);
            }
        }
    }
    acted
}

#[test]
fn a_burst_of_six_apps_acts_exactly_twice_in_any_minute() {
    // Regression: a token bucket let a third action through at +30 s.
    let mut run = Run::new(&enforce());
    let acted = burst_of_six(&mut run);
    let times: Vec<i64> = acted.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [0, 0, 60, 60, 120, 120], "{acted:?}");
    for start in 0..300 {
        let n = times
            .iter()
            .filter(|t| **t >= start && **t < start + 60)
            .count();
        assert!(n <= 2, "{n} actions in [{start}, {}) s", start + 60);
    }
}

#[test]
fn a_held_app_is_told_exactly_when_the_window_allows() {
    let mut run = Run::new(&enforce());
    let r = report(&[("a", "data.a", "low", "r")], 5);
    assert_eq!(heals(&run.decide("argocd/a", &r, T0)), ["a"]);
    assert_eq!(heals(&run.decide("argocd/b", &r, T0 + 40)), ["a"]);
    let d = run.decide("argocd/c", &r, T0 + 41);
    assert_eq!(
        d.held[0].until,
        Some(T0 + 60),
        "when the action at +0 s stops counting"
    );
    assert!(heals(&run.decide("argocd/c", &r, T0 + 59)).is_empty());
    assert_eq!(heals(&run.decide("argocd/c", &r, T0 + 60)), ["a"]);
    let d = run.decide("argocd/d", &r, T0 + 61);
    assert_eq!(
        d.held[0].until,
        Some(T0 + 100),
        "when the action at +40 s stops counting"
    );
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

fn tripped(d: &Decision) -> Option<&Step> {
    d.steps
        .iter()
        .find(|s| matches!(s, Step::BreakerTripped { .. }))
}

fn page(d: &Decision) -> Option<&str> {
    d.steps.iter().find_map(|s| match s {
        Step::Page { reason, .. } => Some(reason.as_str()),
        _ => None,
    })
}

/// `count: 2`, everything else shipped but generous rate limits.
fn breaker_spec() -> RemediationSpec {
    let mut spec = generous();
    spec.guardrails.recurrence.count = 2;
    spec
}

#[test]
fn the_breaker_counts_nothing_while_a_heal_is_in_flight_and_trips_on_the_count_th_recurrence() {
    // Regression: the breaker tripped 70 ms after the second heal was requested, because the
    // next analysis still saw the drift that heal was about to fix.
    let mut run = Run::new(&breaker_spec());
    let app = "argocd/web";
    let drifted = report(&[("a", "data.a", "low", "r")], 5);
    let clean = report(&[], 5);
    let in_flight = OperationView {
        running: true,
        last: None,
    };

    // Heal 1: requested, in flight for a while (the drift is still seen), ends, in sync.
    let d = run.decide(app, &drifted, T0);
    assert_eq!(heals(&d), ["a"]);
    let first = d.clone();
    run.operations.insert(app.into(), in_flight.clone());
    for t in 1..5 {
        let d = run.decide(app, &drifted, T0 + t);
        assert_eq!(held_by(&d), [Guardrail::OperationInProgress], "{d:?}");
        assert!(tripped(&d).is_none());
    }
    run.heal_ended(app, &first, true);
    // Ended, but the watch has not seen the healed object yet: no recurrence.
    let d = run.decide(app, &drifted, T0 + 5);
    assert_eq!(held_by(&d), [Guardrail::Cooldown]);
    assert!(run.decide(app, &clean, T0 + 6).steps.is_empty());
    // Recurrence 1 at +10 min: it drifts back after the heal took effect; past the cooldown,
    // heal 2.
    let d = run.decide(app, &drifted, T0 + 601);
    assert!(tripped(&d).is_none(), "1 of 2");
    assert_eq!(heals(&d), ["a"]);
    let second = d.clone();
    // Heal 2 in flight: Argo CD has not even shown the operation yet, then it runs. However
    // long, however often the drift is seen, nothing counts.
    run.operations.remove(app);
    for t in [601, 602, 620, 659] {
        let d = run.decide(app, &drifted, T0 + t);
        assert!(tripped(&d).is_none(), "+{t} s: {d:?}");
        assert_eq!(held_by(&d), [Guardrail::OperationInProgress], "+{t} s");
        assert!(d.held[0].reason.starts_with(&format!(
            "argo-drift's heal {} (requested 2027-01-15T08:10:01Z) has not finished",
            heal_id(&second)
        )));
    }
    run.operations.insert(app.into(), in_flight);
    let d = run.decide(app, &drifted, T0 + 700);
    assert!(tripped(&d).is_none());
    run.heal_ended(app, &second, true);
    assert!(tripped(&run.decide(app, &drifted, T0 + 701)).is_none());
    assert!(run.decide(app, &clean, T0 + 702).steps.is_empty());
    // Recurrence 2: trips, pages once, names both heals and their times.
    let d = run.decide(app, &drifted, T0 + 900);
    let Some(Step::BreakerTripped {
        fields,
        history,
        summary,
    }) = tripped(&d)
    else {
        panic!("{d:?}")
    };
    assert_eq!(
        Some(summary.as_str()),
        page(&d),
        "the Event says what the page says"
    );
    assert_eq!(fields, &["ConfigMap shop/a data.a"]);
    assert_eq!(history[0].heals.len(), 2);
    assert_eq!(held_by(&d), [Guardrail::RecurrenceBreaker]);
    assert_eq!(
        page(&d),
        Some(
            "recurrence breaker: ConfigMap shop/a data.a drifted again after 2 heal(s) within 30 min (\
             heal requested 2027-01-15T08:00:00Z, Argo CD's sync succeeded 2027-01-15T08:00:05Z, in sync 2027-01-15T08:00:06Z, drifted back 2027-01-15T08:10:01Z; \
             heal requested 2027-01-15T08:10:01Z, Argo CD's sync succeeded 2027-01-15T08:11:41Z, in sync 2027-01-15T08:11:42Z, drifted back 2027-01-15T08:15:00Z\
             ); automation stopped for the app"
        )
    );
    // It stays tripped, without paging again, until a human resets it.
    let d = run.decide(app, &drifted, T0 + 5000);
    assert!(tripped(&d).is_none() && page(&d).is_none());
    assert_eq!(held_by(&d), [Guardrail::RecurrenceBreaker]);
    // Reset: healing starts again, and the count starts from nothing.
    run.state.forget(app);
    let d = run.decide(app, &drifted, T0 + 5001);
    assert_eq!(heals(&d), ["a"]);
    assert!(run.decide(app, &clean, T0 + 5002).steps.is_empty());
    let d = run.decide(app, &drifted, T0 + 5700);
    assert!(tripped(&d).is_none(), "1 of 2 after the reset");
    assert_eq!(heals(&d), ["a"]);
}

#[test]
fn the_breaker_does_not_trip_while_heals_succeed_and_hold() {
    let mut run = Run::new(&breaker_spec());
    let drifted = report(&[("a", "data.a", "low", "r")], 5);
    let clean = report(&[], 5);
    // Ten heals that each took effect and kept the field in sync: every one requested while
    // the drift is still seen in the analyses right after it, none is a recurrence.
    for k in 0..10 {
        let t = T0 + k * 3600;
        let d = run.decide("argocd/web", &drifted, t);
        assert_eq!(heals(&d), ["a"], "heal {k}");
        for s in 1..4 {
            let d = run.decide("argocd/web", &drifted, t + s);
            assert!(tripped(&d).is_none(), "heal {k} +{s} s: {d:?}");
        }
        assert!(run.decide("argocd/web", &clean, t + 10).steps.is_empty());
    }
    // Drift coming back after heals spread wider than the window does not trip it either.
    let mut run = Run::new(&breaker_spec());
    for k in 0..6 {
        let t = T0 + k * 1900;
        assert_eq!(heals(&run.decide("argocd/other", &drifted, t)), ["a"]);
        assert!(run.decide("argocd/other", &clean, t + 10).steps.is_empty());
    }
}

#[test]
fn a_failed_heal_counts_a_refused_one_does_not_and_one_that_does_not_take_counts_after_the_cooldown(
) {
    let app = "argocd/web";
    let drifted = report(&[("a", "data.a", "low", "r")], 5);
    // Failed operations: the drift is still there; two of them trip at the second.
    let mut run = Run::new(&breaker_spec());
    let d = run.decide(app, &drifted, T0);
    run.heal_ended(app, &d, false);
    let d = run.decide(app, &drifted, T0 + 5);
    assert!(tripped(&d).is_none(), "1 of 2");
    let d = run.decide(app, &drifted, T0 + 601);
    assert_eq!(heals(&d), ["a"]);
    run.heal_ended(app, &d, false);
    let d = run.decide(app, &drifted, T0 + 610);
    assert!(tripped(&d).is_some(), "{d:?}");
    assert!(
        page(&d).unwrap().contains("Argo CD's sync failed 2027-01-15T08:10:10Z (one or more objects failed to apply), still drifted 2027-01-15T08:10:10Z"),
        "{:?}",
        page(&d)
    );

    // Refused requests (another operation in progress): nothing ran, nothing counts.
    let mut run = Run::new(&breaker_spec());
    for k in 0..4 {
        let d = run.decide(app, &drifted, T0 + k * 601);
        assert_eq!(heals(&d), ["a"], "heal {k}");
        run.state.heal_not_run(app, &heal_id(&d));
        run.operations.remove(app);
        assert!(tripped(&run.decide(app, &drifted, T0 + k * 601 + 5)).is_none());
    }

    // Succeeded but the field never came back to Git's value: counted once the cooldown is
    // over (the watch has long caught up by then), not before.
    let mut run = Run::new(&breaker_spec());
    let d = run.decide(app, &drifted, T0);
    assert_eq!(heals(&d), ["a"]);
    assert!(tripped(&run.decide(app, &drifted, T0 + 5)).is_none());
    assert!(tripped(&run.decide(app, &drifted, T0 + 599)).is_none());
    let d = run.decide(app, &drifted, T0 + 600);
    assert!(tripped(&d).is_none(), "1 of 2: {d:?}");
    assert_eq!(heals(&d), ["a"]);
    assert!(tripped(&run.decide(app, &drifted, T0 + 605)).is_none());
    let d = run.decide(app, &drifted, T0 + 1200);
    assert!(
        page(&d)
            .unwrap()
            .contains("never seen in sync by 2027-01-15T08:20:00Z"),
        "{d:?}"
    );
}

#[test]
fn a_heal_whose_operation_never_shows_up_stops_holding_after_a_minute() {
    let mut run = Run::new(&generous());
    let app = "argocd/web";
    let r = report(
        &[("a", "data.a", "low", "r"), ("b", "data.b", "low", "r")],
        10,
    );
    let d = run.decide(app, &report(&[("a", "data.a", "low", "r")], 10), T0);
    assert_eq!(heals(&d), ["a"]);
    // Someone replaced the operation before it ran: Argo CD shows neither it nor its end.
    run.operations.remove(app);
    let d = run.decide(app, &r, T0 + 59);
    assert_eq!(held_by(&d), [Guardrail::OperationInProgress]);
    let d = run.decide(app, &r, T0 + 60);
    assert_eq!(heals(&d), ["b"], "{d:?}");
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
        "p.yaml: remediation.actions.low: at most one of heal, adopt, workflow, approve and freeze"
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
        heal_now: None,
        budget: Budget::NotConfigured,
        operation: OperationView {
            running: true,
            last: None,
        },
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
    let mut run = Run::compiled(policy.remediation.clone());
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

#[test]
fn state_written_by_the_token_bucket_version_still_loads() {
    // Upgrading must not fail on the persisted state: the old keys are ignored and dropped.
    let old = r#"{"globalBucket":{"tokens":0.5,"at":1800000000},"appBuckets":{"argocd/web":{"tokens":0.0,"at":1800000000}},"heals":{"argocd/web|ConfigMap shop/a|data.a":[1800000000]},"cooldowns":{"argocd/web|ConfigMap shop/a|data.a":1800000600}}"#;
    let state: GuardrailState = serde_json::from_str(old).unwrap();
    assert_eq!(
        state.cooldowns.len(),
        1,
        "what still means the same is kept"
    );
    let text = serde_json::to_string(&state).unwrap();
    assert!(
        !text.contains("Bucket") && !text.contains("\"heals\""),
        "{text}"
    );
}

#[test]
fn heal_now_heals_what_waits_for_approval_through_every_automatic_guardrail() {
    let mut run = Run::new(&enforce());
    let medium = report(&[("a", "data.a", "medium", "r")], 5);
    // Asked for another drift's report: nothing changes, the approval is requested.
    run.heal_now = Some("r0".into());
    let d = run.decide("argocd/web", &medium, T0);
    assert!(heals(&d).is_empty());
    assert_eq!(held_by(&d), [Guardrail::ApprovalPending]);
    // For this report: healed, no approval any more.
    run.heal_now = Some("r1".into());
    let d = run.decide("argocd/web", &medium, T0 + 1);
    assert_eq!(heals(&d), ["a"], "{d:?}");
    assert!(d.pending_approval.is_none());
    // ...but not around the guardrails: the per-app rate limit holds the next one.
    let other = report(&[("b", "data.b", "medium", "r")], 5);
    let d = run.decide_with(
        "argocd/web",
        &other,
        "r1",
        None,
        Budget::NotConfigured,
        T0 + 10,
    );
    assert_eq!(held_by(&d), [Guardrail::RateLimitApp]);
    // A freeze stays a freeze.
    let critical = report(&[("c", "data.c", "critical", "r")], 5);
    let d = run.decide("argocd/crit", &critical, T0);
    assert!(
        d.steps.contains(&Step::Freeze) && heals(&d).is_empty(),
        "{d:?}"
    );
}

fn adoptions(d: &Decision) -> Vec<(String, Vec<String>, Option<String>)> {
    d.steps
        .iter()
        .filter_map(|s| match s {
            Step::Adopt {
                id,
                resources,
                approved,
            } => Some((
                id.clone(),
                resources.iter().map(|k| k.name.clone()).collect(),
                approved.clone(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn an_approval_answered_with_adopt_proposes_the_drift_to_git_once_and_heals_nothing() {
    let spec = enforce();
    let mut run = Run::new(&spec);
    let r = report(&[("a", "data.a", "medium", "r")], 5);
    let d = run.decide("argocd/web", &r, T0);
    let reason = &d.held[0].reason;
    assert!(
        reason.contains("adopt: r1"),
        "the hold offers adopt: {reason}"
    );
    // Adopting another report's drift does nothing.
    let d = run.answered("argocd/web", &r, "r1", Answer::Adopt("r0".into()), T0 + 5);
    assert!(adoptions(&d).is_empty(), "{d:?}");
    assert!(held_by(&d).contains(&Guardrail::StaleApproval));
    let d = run.answered("argocd/web", &r, "r1", Answer::Adopt("r1".into()), T0 + 10);
    assert_eq!(
        adoptions(&d),
        [("r1".to_string(), vec!["a".to_string()], Some("r1".into()))],
        "{d:?}"
    );
    assert!(heals(&d).is_empty());
    assert!(d.pending_approval.is_none());
    // The answer still on the Application: neither proposed again, nor asked again, nor
    // called stale.
    for t in [T0 + 20, T0 + 3 * 3600] {
        let d = run.answered("argocd/web", &r, "r1", Answer::Adopt("r1".into()), t);
        assert!(d.steps.is_empty(), "{d:?}");
        assert!(d.held.is_empty(), "{d:?}");
    }
    // New drift is asked about afresh.
    let changed = report(&[("a", "data.b", "medium", "r")], 5);
    let d = run.answered(
        "argocd/web",
        &changed,
        "r2",
        Answer::Adopt("r1".into()),
        T0 + 40,
    );
    assert!(
        d.steps
            .iter()
            .any(|s| matches!(s, Step::RequestApproval { id, .. } if id == "r2")),
        "{d:?}"
    );
}

#[test]
fn the_adopt_action_proposes_once_per_drift_without_the_cluster_guardrails() {
    let mut spec = enforce();
    spec.actions.insert(Severity::Medium, vec![Action::Adopt]);
    spec.actions.insert(Severity::Low, vec![Action::Heal]);
    // Windows, rate limits and the blast radius guard the cluster; an adoption writes to Git.
    spec.guardrails.blast_radius.max_resources = 0;
    let mut run = Run::new(&spec);
    let r = report(
        &[
            ("a", "data.a", "medium", "r"),
            ("b", "data.b", "medium", "r"),
        ],
        5,
    );
    let d = run.decide("argocd/web", &r, T0);
    assert_eq!(
        adoptions(&d),
        [(
            "r1".to_string(),
            vec!["a".to_string(), "b".to_string()],
            None
        )]
    );
    assert_eq!(
        d.resources[0].actions,
        [Action::Adopt],
        "adopt is the resource's action"
    );
    assert!(run.decide("argocd/web", &r, T0 + 60).steps.is_empty());
    // A resource a rule wants healed and one wanting adopt: one heal, one adoption.
    let mixed = report(
        &[("a", "data.a", "medium", "r"), ("c", "data.c", "low", "r")],
        5,
    );
    let d = run.decide_with(
        "argocd/web",
        &mixed,
        "r2",
        None,
        Budget::NotConfigured,
        T0 + 120,
    );
    assert_eq!(adoptions(&d)[0].1, ["a"]);
    assert!(
        held_by(&d).contains(&Guardrail::BlastRadius),
        "the heal is held by the blast radius, the adoption is not: {d:?}"
    );
    // In dry-run: what would be proposed, nothing remembered.
    let mut dry = spec.clone();
    dry.mode = Mode::DryRun;
    let mut run = Run::new(&dry);
    for t in [T0, T0 + 60] {
        let d = run.decide("argocd/web", &r, t);
        assert_eq!(adoptions(&d).len(), 1, "{d:?}");
    }
    assert!(run.state.adopted.is_empty());
}

#[test]
fn adopt_is_exclusive_with_heal_and_loses_to_freeze_and_approve_heal_now_wins() {
    let mut spec = enforce();
    spec.actions
        .insert(Severity::Medium, vec![Action::Adopt, Action::Heal]);
    let rules = BTreeMap::new();
    let err = spec.validate(&rules).unwrap_err();
    assert_eq!(err.0, "actions.medium");
    assert!(err.1.contains("adopt"), "{err:?}");
    spec.actions.insert(Severity::Medium, vec![Action::Adopt]);
    spec.actions.insert(Severity::High, vec![Action::Approve]);
    spec.actions
        .insert(Severity::Critical, vec![Action::Freeze]);
    let mut run = Run::new(&spec);
    // One resource with an adopt change and an approve change: approve (a human chooses).
    let mut r = report(&[("a", "data.a", "medium", "r")], 5);
    let mut second = r.resources[0].changes[0].clone();
    second.field = "data.z".into();
    second.severity = Severity::High;
    r.resources[0].changes.push(second);
    let d = run.decide("argocd/web", &r, T0);
    assert_eq!(d.resources[0].actions, [Action::Approve]);
    // A person asking to heal now: heal, not adopt.
    run.heal_now = Some("r9".into());
    let only_adopt = report(&[("b", "data.b", "medium", "r")], 5);
    let d = run.decide_with(
        "argocd/web",
        &only_adopt,
        "r9",
        None,
        Budget::NotConfigured,
        T0 + 60,
    );
    assert_eq!(d.resources[0].actions, [Action::Heal]);
    assert!(adoptions(&d).is_empty());
    // Frozen: nothing is proposed.
    run.heal_now = None;
    let critical = report(
        &[
            ("a", "data.a", "critical", "r"),
            ("b", "data.b", "medium", "r"),
        ],
        5,
    );
    let d = run.decide_with(
        "argocd/frozen",
        &critical,
        "r3",
        None,
        Budget::NotConfigured,
        T0,
    );
    assert!(adoptions(&d).is_empty(), "{d:?}");
}
