//! Decisions: what to do about an application's drift, or why nothing is done. A pure function
//! of the report, the remediation policy, the guardrail state, outside signals and the clock
//! (`now`, in Unix seconds, injected so tests never sleep). It returns the steps to take and
//! the updated state as values; the controller persists the state, performs the steps and
//! audits both.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::classify::{Severity, Status};
use crate::manifest::ResourceKey;
use crate::report::DriftReport;

mod rate_limit;
pub mod recurrence;

pub use recurrence::{EndedOperation, OperationView, TrippedField, HEAL_INFO};

/// What may be done about drift, weakest first. `page` is added to another action.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing, not even a notification.
    Ignore,
    /// Tell the team (routes in notifications.yaml).
    Notify,
    /// Sync only the drifted resources back to Git.
    Heal,
    /// Keep the live values and propose them to Git instead: a commit of the drifted fields'
    /// live values on a new branch, and a pull request when a forge is configured. Nothing in
    /// the cluster changes, so the cluster guardrails (windows, rate limits, blast radius, error
    /// budget, breaker) do not apply; it is proposed once per drift. Secrets are never adopted.
    Adopt,
    /// Run the configured Argo Workflows template (diagnose, quarantine, ...) for each drifted
    /// resource, behind the same guardrails as a heal.
    Workflow,
    /// Ask a human; heal once approved.
    Approve,
    /// Stop Argo CD's automation on the app and keep the evidence: security-relevant drift.
    Freeze,
    /// Page the on-call.
    Page,
}

/// How far argo-drift may go on an application.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Report only; no decisions.
    Observe,
    /// Decide and report what would happen; do nothing.
    #[default]
    DryRun,
    /// Act.
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "observe" => Ok(Mode::Observe),
            "dry-run" => Ok(Mode::DryRun),
            "enforce" => Ok(Mode::Enforce),
            _ => Err(format!(
                "unknown mode {s:?} (one of observe, dry-run, enforce)"
            )),
        }
    }
}

/// Actions by severity, as written in the policy file; a tier may give only some severities.
pub type ActionTable = BTreeMap<Severity, Vec<Action>>;

/// At most `actions` actions in any window of `perSeconds` seconds: each action counts for
/// `perSeconds` after it was taken (a sliding window, not a bucket that refills continuously).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateSpec {
    pub actions: u32,
    pub per_seconds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimits {
    #[serde(default = "RateLimits::default_global")]
    pub global: RateSpec,
    #[serde(default = "RateLimits::default_per_app")]
    pub per_app: RateSpec,
}

impl RateLimits {
    fn default_global() -> RateSpec {
        RateSpec {
            actions: 2,
            per_seconds: 60,
        }
    }
    fn default_per_app() -> RateSpec {
        RateSpec {
            actions: 1,
            per_seconds: 300,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            global: RateLimits::default_global(),
            per_app: RateLimits::default_per_app(),
        }
    }
}

/// The recurrence breaker: a field whose drift recurs `count` times within `windowSeconds`
/// after heals that took effect stops automation for the app and pages — the remediation is
/// not working. A recurrence is counted only once the heal's Argo CD operation has ended: the
/// field was seen back in sync and drifted again, or the operation failed and the drift is
/// still there, or it succeeded but the field was never seen in sync by the end of the
/// cooldown. Nothing counts while an operation is requested or running.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecurrenceSpec {
    pub count: u32,
    pub window_seconds: u32,
}

impl Default for RecurrenceSpec {
    fn default() -> Self {
        RecurrenceSpec {
            count: 3,
            window_seconds: 1800,
        }
    }
}

/// Automatic action is refused when it would touch more than `maxResources` resources or (for
/// more than one resource) more than `maxPercent` of the application's resources.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlastRadiusSpec {
    pub max_resources: usize,
    pub max_percent: u32,
}

impl Default for BlastRadiusSpec {
    fn default() -> Self {
        BlastRadiusSpec {
            max_resources: 10,
            max_percent: 50,
        }
    }
}

/// The error-budget gate: a Prometheus query whose value is the remaining budget (0..1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorBudgetSpec {
    /// Prometheus' base URL (`http://prometheus:9090`).
    pub prometheus_url: String,
    /// An instant query returning one number; `{{app}}`, `{{namespace}}` and `{{name}}` are
    /// replaced with the application's.
    pub query: String,
    /// Below this, nothing is done automatically: the on-call is paged instead.
    pub minimum: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSpec {
    #[serde(default = "ApprovalSpec::default_expire")]
    pub expire_seconds: u32,
    /// Notify again when an approval has waited this long (0: never).
    #[serde(default = "ApprovalSpec::default_escalate")]
    pub escalate_seconds: u32,
}

impl ApprovalSpec {
    fn default_expire() -> u32 {
        24 * 3600
    }
    fn default_escalate() -> u32 {
        3600
    }
}

impl Default for ApprovalSpec {
    fn default() -> Self {
        ApprovalSpec {
            expire_seconds: ApprovalSpec::default_expire(),
            escalate_seconds: ApprovalSpec::default_escalate(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardrailSpec {
    #[serde(default)]
    pub rate_limit: RateLimits,
    /// The same resource and field is not acted on again within this many seconds.
    #[serde(default = "GuardrailSpec::default_cooldown")]
    pub cooldown_seconds: u32,
    #[serde(default)]
    pub recurrence: RecurrenceSpec,
    #[serde(default)]
    pub blast_radius: BlastRadiusSpec,
    #[serde(default)]
    pub error_budget: Option<ErrorBudgetSpec>,
    /// Maintenance and freeze windows for automatic action, like Argo CD's sync windows: no
    /// automatic heal during a `deny` window, nor outside every `allow` window if there are any.
    #[serde(default)]
    pub windows: Vec<WindowSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSpec {
    pub kind: WindowKind,
    /// When the window opens: a five-field cron expression (`0 22 * * 1-5`).
    pub schedule: String,
    /// How long it stays open: `1h`, `30m`, `1h30m`, `90s`.
    pub duration: String,
    /// IANA time zone of the schedule (`Europe/Berlin`); UTC when absent.
    #[serde(default)]
    pub time_zone: Option<String>,
}

impl GuardrailSpec {
    fn default_cooldown() -> u32 {
        600
    }
}

// Written out: a derived Default would give a zero cooldown where serde gives 600.
impl Default for GuardrailSpec {
    fn default() -> Self {
        GuardrailSpec {
            rate_limit: RateLimits::default(),
            cooldown_seconds: GuardrailSpec::default_cooldown(),
            recurrence: RecurrenceSpec::default(),
            blast_radius: BlastRadiusSpec::default(),
            error_budget: None,
            windows: Vec::new(),
        }
    }
}

/// The `remediation` section of the policy file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemediationSpec {
    /// Global mode; an application's label `argo-drift.io/mode` overrides it for that app (so
    /// one app can be enforced while the rest stay in dry-run).
    #[serde(default)]
    pub mode: Mode,
    /// Actions by severity.
    #[serde(default = "RemediationSpec::default_actions")]
    pub actions: ActionTable,
    /// Overrides by the application's label `argo-drift.io/tier` (set by ApplicationSets).
    #[serde(default)]
    pub tiers: BTreeMap<String, ActionTable>,
    #[serde(default)]
    pub guardrails: GuardrailSpec,
    #[serde(default)]
    pub approvals: ApprovalSpec,
    /// What the `workflow` action runs.
    #[serde(default)]
    pub workflow: Option<WorkflowSpec>,
}

/// An Argo Workflows template to run for a drifted resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowSpec {
    /// The WorkflowTemplate (or ClusterWorkflowTemplate) name.
    pub template: String,
    /// A ClusterWorkflowTemplate rather than a WorkflowTemplate in `namespace`.
    #[serde(default)]
    pub cluster_scope: bool,
    /// Where the Workflow is created.
    pub namespace: String,
    pub service_account: String,
    /// Parameters added to app, namespace, kind, name, severity, fields and report-id.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Delete the Workflow this long after it finished.
    #[serde(default)]
    pub ttl_seconds_after_finished: Option<u32>,
}

/// A Workflow to create: the template and its parameters, as the report shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRequest {
    pub template: String,
    pub cluster_scope: bool,
    pub namespace: String,
    pub service_account: String,
    pub parameters: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u32>,
}

impl RemediationSpec {
    fn default_actions() -> ActionTable {
        use Action::*;
        BTreeMap::from([
            (Severity::None, vec![Ignore]),
            (Severity::Info, vec![Ignore]),
            (Severity::Low, vec![Heal]),
            (Severity::Medium, vec![Approve]),
            (Severity::High, vec![Approve, Page]),
            (Severity::Critical, vec![Freeze, Page]),
        ])
    }
}

impl Default for RemediationSpec {
    fn default() -> Self {
        RemediationSpec {
            mode: Mode::default(),
            actions: RemediationSpec::default_actions(),
            tiers: BTreeMap::new(),
            guardrails: GuardrailSpec::default(),
            approvals: ApprovalSpec::default(),
            workflow: None,
        }
    }
}

impl RemediationSpec {
    /// Check what serde cannot; errors are (key path, message).
    pub fn validate(
        &self,
        rule_actions: &BTreeMap<String, Vec<Action>>,
    ) -> Result<(), (String, String)> {
        let g = &self.guardrails;
        for (key, rate) in [
            ("guardrails.rateLimit.global", g.rate_limit.global),
            ("guardrails.rateLimit.perApp", g.rate_limit.per_app),
        ] {
            if rate.actions == 0 || rate.per_seconds == 0 {
                return Err((
                    key.into(),
                    "actions and perSeconds must be at least 1".into(),
                ));
            }
        }
        if g.recurrence.count == 0 {
            return Err((
                "guardrails.recurrence.count".into(),
                "must be at least 1".into(),
            ));
        }
        if g.blast_radius.max_percent == 0 || g.blast_radius.max_percent > 100 {
            return Err((
                "guardrails.blastRadius.maxPercent".into(),
                format!("{} is not within 1..=100", g.blast_radius.max_percent),
            ));
        }
        if let Some(b) = &g.error_budget {
            if !(0.0..=1.0).contains(&b.minimum) {
                return Err((
                    "guardrails.errorBudget.minimum".into(),
                    format!("{} is not within 0..=1", b.minimum),
                ));
            }
            if b.query.trim().is_empty() {
                return Err(("guardrails.errorBudget.query".into(), "is empty".into()));
            }
        }
        let tables = std::iter::once(("actions".to_string(), &self.actions))
            .chain(self.tiers.iter().map(|(t, a)| (format!("tiers.{t}"), a)));
        for (at, table) in tables {
            for (severity, actions) in table {
                check_actions(actions).map_err(|m| (format!("{at}.{severity}"), m))?;
            }
        }
        for (rule, actions) in rule_actions {
            check_actions(actions).map_err(|m| (format!("severity.rules[{rule}].actions"), m))?;
        }
        let uses_workflow = self
            .actions
            .values()
            .chain(self.tiers.values().flat_map(|t| t.values()))
            .chain(rule_actions.values())
            .any(|a| a.contains(&Action::Workflow));
        if uses_workflow && self.workflow.is_none() {
            return Err((
                "workflow".into(),
                "the workflow action is used but no workflow (template, namespace, serviceAccount) is set".into(),
            ));
        }
        Ok(())
    }
}

/// A window with its schedule parsed.
#[derive(Debug, Clone)]
pub struct Window {
    pub kind: WindowKind,
    schedule: String,
    cron: croner::Cron,
    duration: i64,
    tz: chrono_tz::Tz,
}

impl Window {
    /// Compile `spec`; the error is (key inside the window, message).
    pub fn compile(spec: &WindowSpec) -> Result<Window, (String, String)> {
        let cron: croner::Cron = spec
            .schedule
            .parse()
            .map_err(|e| ("schedule".to_string(), format!("{:?}: {e}", spec.schedule)))?;
        let duration = parse_duration(&spec.duration).ok_or_else(|| {
            (
                "duration".to_string(),
                format!("{:?} is not a duration like 1h30m", spec.duration),
            )
        })?;
        let tz = match &spec.time_zone {
            Some(name) => name.parse().map_err(|_| {
                (
                    "timeZone".to_string(),
                    format!("{name:?} is not an IANA time zone"),
                )
            })?,
            None => chrono_tz::UTC,
        };
        Ok(Window {
            kind: spec.kind,
            schedule: spec.schedule.clone(),
            cron,
            duration,
            tz,
        })
    }

    /// If `now` is inside the window, when it closes (overlapping openings merged).
    pub fn open_until(&self, now: i64) -> Option<i64> {
        use chrono::TimeZone as _;
        let now = self.tz.timestamp_opt(now, 0).single()?;
        let span = chrono::Duration::seconds(self.duration);
        let start = self.cron.find_next_occurrence(&(now - span), false).ok()?;
        if start > now {
            return None;
        }
        let mut end = start + span;
        let mut at = start;
        // Bounded: a schedule every minute with a long duration would otherwise loop long.
        for _ in 0..1000 {
            match self.cron.find_next_occurrence(&at, false) {
                Ok(next) if next <= end => {
                    end = end.max(next + span);
                    at = next;
                }
                _ => break,
            }
        }
        Some(end.timestamp())
    }

    /// When the window next opens after `now`.
    pub fn next_opening(&self, now: i64) -> Option<i64> {
        use chrono::TimeZone as _;
        let now = self.tz.timestamp_opt(now, 0).single()?;
        self.cron
            .find_next_occurrence(&now, false)
            .ok()
            .map(|t| t.timestamp())
    }

    fn describe(&self) -> String {
        format!("{:?} for {} s ({})", self.schedule, self.duration, self.tz)
    }
}

/// Go-style durations as Argo CD's sync windows write them: `1h`, `30m`, `1h30m`, `90s`.
fn parse_duration(text: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total += number.parse::<i64>().ok()? * unit;
        number.clear();
    }
    (number.is_empty() && total > 0).then_some(total)
}

/// A remediation policy compiled once: the spec, rules' own actions, parsed windows.
#[derive(Debug, Clone)]
pub struct Remediation {
    pub spec: RemediationSpec,
    /// Severity rules that say their own actions, by rule name.
    pub rule_actions: BTreeMap<String, Vec<Action>>,
    pub windows: Vec<Window>,
}

impl Remediation {
    /// Validate and compile; errors are (key path under `remediation`, message).
    pub fn compile(
        spec: RemediationSpec,
        rule_actions: BTreeMap<String, Vec<Action>>,
    ) -> Result<Remediation, (String, String)> {
        spec.validate(&rule_actions)?;
        let mut windows = Vec::new();
        for (i, w) in spec.guardrails.windows.iter().enumerate() {
            windows.push(
                Window::compile(w).map_err(|(k, m)| (format!("guardrails.windows[{i}].{k}"), m))?,
            );
        }
        Ok(Remediation {
            spec,
            rule_actions,
            windows,
        })
    }

    /// Whether a window keeps automatic action from happening at `now`, and until when.
    pub fn window_hold(&self, now: i64) -> Option<(String, Option<i64>)> {
        if let Some((w, until)) = self
            .windows
            .iter()
            .filter(|w| w.kind == WindowKind::Deny)
            .find_map(|w| w.open_until(now).map(|u| (w, u)))
        {
            return Some((format!("deny window {} is open", w.describe()), Some(until)));
        }
        let allows: Vec<&Window> = self
            .windows
            .iter()
            .filter(|w| w.kind == WindowKind::Allow)
            .collect();
        if allows.is_empty() || allows.iter().any(|w| w.open_until(now).is_some()) {
            return None;
        }
        let next = allows.iter().filter_map(|w| w.next_opening(now)).min();
        Some(("outside every allow window".to_string(), next))
    }
}

/// At most one of heal, adopt, workflow, approve and freeze; ignore alone.
fn check_actions(actions: &[Action]) -> Result<(), String> {
    let primary = actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Heal | Action::Adopt | Action::Workflow | Action::Approve | Action::Freeze
            )
        })
        .count();
    if primary > 1 {
        return Err("at most one of heal, adopt, workflow, approve and freeze".into());
    }
    if actions.contains(&Action::Ignore) && actions.len() > 1 {
        return Err("ignore cannot be combined with other actions".into());
    }
    Ok(())
}

// ----- guardrail state -------------------------------------------------------------------------

/// A request for a human to approve healing this report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingApproval {
    /// The report id an approval must name (`argo-drift.io/approve: <id>`).
    pub id: String,
    pub resources: Vec<ResourceKey>,
    pub requested_at: i64,
    pub expires_at: i64,
    /// When to notify again; `None` once done (or never).
    pub escalate_at: Option<i64>,
}

/// Everything the guardrails remember; persisted by the controller (a ConfigMap) so that it
/// survives restarts and is the same for whichever replica leads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailState {
    /// When the actions that still count against the global rate limit were taken. (The
    /// token buckets of earlier versions, `globalBucket` and `appBuckets`, are ignored when
    /// read and dropped at the next write.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub global_actions: Vec<i64>,
    /// The same per application.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub app_actions: BTreeMap<String, Vec<i64>>,
    /// `app|resource|field` -> not again before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cooldowns: BTreeMap<String, i64>,
    /// Per application, the heals asked for and what became of them: what the recurrence
    /// breaker counts. (Earlier versions kept bare heal times under `heals`; ignored.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub heal_records: BTreeMap<String, Vec<recurrence::HealRecord>>,
    /// Makes heal ids unique.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub heal_seq: u64,
    /// Applications whose recurrence breaker tripped, and when; cleared by a human.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub breakers: BTreeMap<String, i64>,
    /// Applications frozen, and when; cleared by a human.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub frozen: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approvals: BTreeMap<String, PendingApproval>,
    /// Report ids whose approval was rejected or expired: not asked again for the same drift.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub declined: BTreeMap<String, String>,
    /// Per application, the report id last proposed to Git (`adopt`): not proposed again for
    /// the same drift.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub adopted: BTreeMap<String, String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl GuardrailState {
    /// Drop what can no longer matter at `now` (expired cooldowns, heals that can no longer
    /// count, actions outside their rate window), so the persisted state stays small.
    pub fn prune(&mut self, spec: &RemediationSpec, now: i64) {
        self.cooldowns.retain(|_, until| *until > now);
        let window = i64::from(spec.guardrails.recurrence.window_seconds);
        self.heal_records.retain(|_, records| {
            recurrence::prune(records, window, now);
            !records.is_empty()
        });
        let limits = spec.guardrails.rate_limit;
        rate_limit::prune(&mut self.global_actions, limits.global, now);
        self.app_actions.retain(|_, log| {
            rate_limit::prune(log, limits.per_app, now);
            !log.is_empty()
        });
    }

    /// A heal whose request Argo CD refused or never received: nothing ran, so it is no heal
    /// the recurrence breaker could count (its cooldown and rate-limit use stay).
    pub fn heal_not_run(&mut self, app: &str, id: &str) {
        if let Some(records) = self.heal_records.get_mut(app) {
            records.retain(|r| r.id != id);
            if records.is_empty() {
                self.heal_records.remove(app);
            }
        }
    }

    /// What the state remembers of `app` alone (its action log, cooldowns, heals, breaker,
    /// freeze, approval, declines), taken out of `self`. The controller keeps each app's part in
    /// a ConfigMap of its own, so that replicas deciding for different apps never contend.
    pub fn take_app(&mut self, app: &str) -> GuardrailState {
        fn take<V>(m: &mut BTreeMap<String, V>, app: &str) -> BTreeMap<String, V> {
            let prefix = format!("{app}|");
            let (taken, kept) = std::mem::take(m)
                .into_iter()
                .partition(|(k, _)| k == app || k.starts_with(&prefix));
            *m = kept;
            taken
        }
        GuardrailState {
            global_actions: Vec::new(),
            app_actions: take(&mut self.app_actions, app),
            cooldowns: take(&mut self.cooldowns, app),
            heal_records: take(&mut self.heal_records, app),
            // Heal ids only need to be unique per application.
            heal_seq: self.heal_seq,
            breakers: take(&mut self.breakers, app),
            frozen: take(&mut self.frozen, app),
            approvals: take(&mut self.approvals, app),
            declined: take(&mut self.declined, app),
            adopted: take(&mut self.adopted, app),
        }
    }

    /// Whether the state holds nothing about any application (only the global action log).
    pub fn holds_no_app(&self) -> bool {
        self.app_actions.is_empty()
            && self.cooldowns.is_empty()
            && self.heal_records.is_empty()
            && self.breakers.is_empty()
            && self.frozen.is_empty()
            && self.approvals.is_empty()
            && self.declined.is_empty()
            && self.adopted.is_empty()
    }

    /// Forget an application (deleted, or reset by a human).
    pub fn forget(&mut self, app: &str) {
        let prefix = format!("{app}|");
        self.app_actions.remove(app);
        self.cooldowns.retain(|k, _| !k.starts_with(&prefix));
        self.heal_records.remove(app);
        self.breakers.remove(app);
        self.frozen.remove(app);
        self.approvals.remove(app);
        self.declined.remove(app);
        self.adopted.remove(app);
    }
}

// ----- inputs and outputs ----------------------------------------------------------------------

/// The remaining error budget, as the controller could read it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Budget {
    /// No error-budget gate configured.
    #[default]
    NotConfigured,
    Remaining(f64),
    /// Prometheus unreachable or the query returned nothing usable: fail safe.
    Unavailable(String),
}

/// A human's answer, read from the Application's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `argo-drift.io/approve: <report id>`
    Approve(String),
    /// `argo-drift.io/reject: <report id>`
    Reject(String),
    /// `argo-drift.io/adopt: <report id>`: keep the live values and propose them to Git
    /// instead of healing (the other answer an approval offers).
    Adopt(String),
}

impl Answer {
    /// The report the answer names.
    pub fn report_id(&self) -> &str {
        match self {
            Answer::Approve(id) | Answer::Reject(id) | Answer::Adopt(id) => id,
        }
    }
}

pub struct AppInput<'a> {
    /// `namespace/name`.
    pub app: &'a str,
    /// Label `argo-drift.io/tier`.
    pub tier: Option<&'a str>,
    /// Label `argo-drift.io/mode`.
    pub mode: Option<Mode>,
    pub report: &'a DriftReport,
    /// Identifies this report's drift (its fingerprint): what an approval names.
    pub report_id: &'a str,
    pub answer: Option<Answer>,
    /// `argo-drift.io/heal-now: <report id>` (a person asked for a heal of this drift, e.g.
    /// with the Application's resource action): the drift is healed like drift the policy heals
    /// on its own — through every automatic guardrail — unless it calls for a freeze.
    pub heal_now: Option<String>,
    pub budget: Budget,
    /// Argo CD's operations on the app: nothing new is started while one is requested or
    /// running, and the end of a heal argo-drift asked for is read from the last one.
    pub operation: OperationView,
}

/// Which guardrail held an action back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guardrail {
    Observe,
    DryRun,
    RateLimitGlobal,
    RateLimitApp,
    Cooldown,
    RecurrenceBreaker,
    BlastRadius,
    ErrorBudget,
    ErrorBudgetUnavailable,
    Window,
    OperationInProgress,
    Frozen,
    ApprovalPending,
    StaleApproval,
}

impl Guardrail {
    pub fn as_str(self) -> &'static str {
        match self {
            Guardrail::Observe => "observe",
            Guardrail::DryRun => "dry-run",
            Guardrail::RateLimitGlobal => "rate-limit-global",
            Guardrail::RateLimitApp => "rate-limit-app",
            Guardrail::Cooldown => "cooldown",
            Guardrail::RecurrenceBreaker => "recurrence-breaker",
            Guardrail::BlastRadius => "blast-radius",
            Guardrail::ErrorBudget => "error-budget",
            Guardrail::ErrorBudgetUnavailable => "error-budget-unavailable",
            Guardrail::Window => "window",
            Guardrail::OperationInProgress => "operation-in-progress",
            Guardrail::Frozen => "frozen",
            Guardrail::ApprovalPending => "approval-pending",
            Guardrail::StaleApproval => "stale-approval",
        }
    }
}

/// Something to do now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "step")]
pub enum Step {
    /// Sync these resources back to Git. `approved`: the report id a human approved. `id`
    /// goes into the Argo CD operation's `info` (as `argo-drift-heal`) to know it when it ends.
    Heal {
        id: String,
        resources: Vec<ResourceKey>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approved: Option<String>,
    },
    /// Turn Argo CD's automated sync off for the app.
    Freeze,
    /// Put the app's automated sync back as it was before a freeze, after a human reset it.
    Unfreeze,
    RequestApproval {
        id: String,
        resources: Vec<ResourceKey>,
    },
    /// Write the live values of these resources' drifted fields to Git on a new branch (and
    /// open a pull request when a forge is configured). `id`: the report id (names the branch:
    /// one proposal per drift); `approved`: the approval a human answered with adopt.
    Adopt {
        id: String,
        resources: Vec<ResourceKey>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approved: Option<String>,
    },
    /// Create these Workflows (one per drifted resource).
    RunWorkflows {
        workflows: Vec<WorkflowRequest>,
    },
    EscalateApproval {
        id: String,
    },
    ApprovalExpired {
        id: String,
    },
    ApprovalRejected {
        id: String,
    },
    /// The recurrence breaker tripped: automation stops for the app. `history`: each field's
    /// heals that count, with their outcome and times.
    BreakerTripped {
        fields: Vec<String>,
        history: Vec<TrippedField>,
        /// What happened, in words: the page's reason.
        summary: String,
    },
    Page {
        severity: Severity,
        reason: String,
    },
    Notify {
        severity: Severity,
    },
}

/// An action not taken, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    pub action: Action,
    pub guardrail: Guardrail,
    pub reason: String,
    /// When it could happen at the earliest (Unix seconds), if that is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// The actions wanted for one drifted resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDecision {
    #[serde(flatten)]
    pub key: ResourceKey,
    pub severity: Severity,
    pub actions: Vec<Action>,
}

/// What was decided for one application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// When it was taken (Unix seconds, the controller's clock).
    #[serde(default)]
    pub at: i64,
    pub mode: Mode,
    pub resources: Vec<ResourceDecision>,
    /// What to do now (in dry-run: what would be done; nothing is).
    pub steps: Vec<Step>,
    pub held: Vec<Held>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_approval: Option<PendingApproval>,
}

impl Decision {
    /// Whether the steps are to be carried out.
    pub fn acts(&self) -> bool {
        self.mode == Mode::Enforce
    }
}

// ----- the decision ----------------------------------------------------------------------------

/// Actions for a severity: the tier's entry if it has one, else the policy's.
fn table_actions(spec: &RemediationSpec, tier: Option<&str>, severity: Severity) -> Vec<Action> {
    tier.and_then(|t| spec.tiers.get(t))
        .and_then(|t| t.get(&severity))
        .or_else(|| spec.actions.get(&severity))
        .cloned()
        .unwrap_or_else(|| vec![Action::Notify])
}

/// The actions a drifted resource asks for: per change, the matching rule's `actions` if it
/// has some, else those of the change's severity; combined by taking the strongest of heal,
/// approve and freeze, and notify or page if any change asks for it.
pub fn resource_actions(
    spec: &RemediationSpec,
    rule_actions: &BTreeMap<String, Vec<Action>>,
    tier: Option<&str>,
    resource: &crate::report::ResourceReport,
) -> Vec<Action> {
    let mut wanted: BTreeSet<Action> = BTreeSet::new();
    let mut add = |rule: Option<&str>, severity: Severity| {
        let actions = rule
            .and_then(|r| rule_actions.get(r))
            .cloned()
            .unwrap_or_else(|| table_actions(spec, tier, severity));
        wanted.extend(actions);
    };
    if resource.changes.is_empty() {
        add(resource.rule.as_deref(), resource.severity);
    }
    for c in &resource.changes {
        add(Some(&c.rule), c.severity);
    }
    let primary = wanted
        .iter()
        .copied()
        .filter(|a| {
            matches!(
                a,
                Action::Heal | Action::Adopt | Action::Workflow | Action::Approve | Action::Freeze
            )
        })
        .max();
    let mut out: Vec<Action> = primary.into_iter().collect();
    for extra in [Action::Notify, Action::Page] {
        if wanted.contains(&extra) {
            out.push(extra);
        }
    }
    if out.is_empty() {
        out.push(Action::Ignore);
    }
    out.sort();
    out
}

/// A person asked to heal now: heal takes the place of approve, adopt, notify-only or ignore (page
/// and notify stay); a freeze or a Workflow stays what it is.
fn heal_if_asked(actions: Vec<Action>, asked: bool) -> Vec<Action> {
    if !asked
        || actions
            .iter()
            .any(|a| matches!(a, Action::Freeze | Action::Workflow | Action::Heal))
    {
        return actions;
    }
    let mut out: Vec<Action> = actions
        .into_iter()
        .filter(|a| matches!(a, Action::Notify | Action::Page))
        .collect();
    out.push(Action::Heal);
    out.sort();
    out
}

fn field_keys(app: &str, resource: &crate::report::ResourceReport) -> Vec<String> {
    let key = resource.key().to_string();
    if resource.changes.is_empty() {
        return vec![format!("{app}|{key}|({})", resource.status.as_str())];
    }
    resource
        .changes
        .iter()
        .map(|c| format!("{app}|{key}|{}", c.field))
        .collect()
}

/// A drifted resource's fields as the recurrence breaker names them: `<resource> <field>`.
fn field_ids(resource: &crate::report::ResourceReport) -> Vec<String> {
    let key = resource.key();
    fields_of(resource)
        .into_iter()
        .map(|f| format!("{key} {f}"))
        .collect()
}

/// Decide for one application. `state` is updated in enforce mode only: in dry-run the
/// guardrails are consulted but nothing is spent or recorded.
pub fn decide(
    remediation: &Remediation,
    input: &AppInput<'_>,
    state: &mut GuardrailState,
    now: i64,
) -> Decision {
    let spec = &remediation.spec;
    let rule_actions = &remediation.rule_actions;
    let mode = input.mode.unwrap_or(spec.mode);
    let drifted: Vec<&crate::report::ResourceReport> = input
        .report
        .resources
        .iter()
        .filter(|r| r.status != Status::Synced)
        .collect();
    let resources: Vec<ResourceDecision> = drifted
        .iter()
        .map(|r| ResourceDecision {
            key: r.key(),
            severity: r.severity,
            actions: heal_if_asked(
                resource_actions(spec, rule_actions, input.tier, r),
                input.heal_now.as_deref() == Some(input.report_id),
            ),
        })
        .collect();
    let decision = Decision {
        at: now,
        mode,
        resources,
        steps: Vec::new(),
        held: Vec::new(),
        pending_approval: None,
    };
    if mode == Mode::Observe {
        return decision;
    }
    let mut scratch;
    let state = if mode == Mode::Enforce {
        state
    } else {
        scratch = state.clone();
        &mut scratch
    };
    let app = input.app;
    // What the heals asked for became: ended operations, fields seen back in sync.
    let drifted_fields: BTreeSet<String> = drifted.iter().flat_map(|r| field_ids(r)).collect();
    if let Some(records) = state.heal_records.get_mut(app) {
        recurrence::observe(records, &input.operation, &drifted_fields, now);
    }
    let wants = |a: Action| {
        decision
            .resources
            .iter()
            .filter(move |r| r.actions.contains(&a))
    };
    let max_severity = |a: Action| wants(a).map(|r| r.severity).max();
    // Automatic actions: heals and workflows go through the same guardrails.
    let heal: Vec<&crate::report::ResourceReport> = drifted
        .iter()
        .zip(&decision.resources)
        .filter(|(_, d)| d.actions.contains(&Action::Heal) || d.actions.contains(&Action::Workflow))
        .map(|(r, _)| *r)
        .collect();
    let by_workflow: Vec<ResourceKey> = wants(Action::Workflow).map(|r| r.key.clone()).collect();
    let approve: Vec<ResourceKey> = wants(Action::Approve).map(|r| r.key.clone()).collect();
    let adopt: Vec<ResourceKey> = wants(Action::Adopt).map(|r| r.key.clone()).collect();
    let mut steps = Vec::new();
    let mut held = Vec::new();

    if let Some(s) = max_severity(Action::Notify) {
        steps.push(Step::Notify { severity: s });
    }
    if let Some(s) = max_severity(Action::Page) {
        steps.push(Step::Page {
            severity: s,
            reason: "the policy pages for this drift".into(),
        });
    }

    // Freeze first: security-relevant drift is kept as evidence, so nothing is healed.
    if wants(Action::Freeze).next().is_some() || state.frozen.contains_key(app) {
        if !state.frozen.contains_key(app) {
            state.frozen.insert(app.to_string(), now);
            steps.push(Step::Freeze);
        }
        if !decision.resources.is_empty() {
            held.push(Held {
                action: Action::Heal,
                guardrail: Guardrail::Frozen,
                reason: "the application is frozen: drift is kept as evidence until a human sets the argo-drift.io/reset annotation".into(),
                until: None,
            });
        }
        state.approvals.remove(app);
        return finish(decision, steps, held, state, app, mode);
    }

    // The recurrence breaker, counted only with nothing in flight: a heal still running (or
    // not yet seen in the watch) is not drift that came back.
    let ours = state
        .heal_records
        .get(app)
        .and_then(|r| recurrence::in_flight(r))
        .map(|h| (h.id.clone(), h.requested_at));
    let in_flight = input.operation.running || ours.is_some();
    if !in_flight && !state.breakers.contains_key(app) {
        let tripped = state
            .heal_records
            .get_mut(app)
            .map_or_else(Vec::new, |records| {
                recurrence::count(
                    records,
                    &drifted_fields,
                    spec.guardrails.recurrence,
                    i64::from(spec.guardrails.cooldown_seconds),
                    now,
                )
            });
        if !tripped.is_empty() {
            state.breakers.insert(app.to_string(), now);
            let summary = recurrence::describe(&tripped, spec.guardrails.recurrence);
            steps.push(Step::BreakerTripped {
                fields: tripped.iter().map(|t| t.field.clone()).collect(),
                history: tripped,
                summary: summary.clone(),
            });
            steps.push(Step::Page {
                severity: decision
                    .resources
                    .iter()
                    .map(|r| r.severity)
                    .max()
                    .unwrap_or(Severity::Medium),
                reason: summary,
            });
        }
    }
    let breaker = state.breakers.contains_key(app);

    // An operation in flight (our own heal, a sync someone started): wait for it, deciding
    // nothing new.
    // (An adoption waits too: the sync may be changing the very values it would write.)
    if in_flight && !breaker && (!heal.is_empty() || !approve.is_empty() || !adopt.is_empty()) {
        held.push(Held {
            action: if heal.is_empty() && approve.is_empty() {
                Action::Adopt
            } else {
                Action::Heal
            },
            guardrail: Guardrail::OperationInProgress,
            reason: match ours {
                Some((id, at)) => format!(
                    "argo-drift's heal {id} (requested {}) has not finished in Argo CD yet; nothing new starts and no recurrence counts until it has",
                    recurrence::utc(at)
                ),
                None => "an Argo CD operation is requested or running on the application; waiting for it".into(),
            },
            until: None,
        });
        return finish(decision, steps, held, state, app, mode);
    }

    // Approvals: a human's answer, expiry, escalation, or a new request.
    let mut approved: Option<String> = None;
    let mut adopt_approved: Option<String> = None;
    if let Some(p) = state.approvals.get(app).cloned() {
        let current = p.id == input.report_id;
        match &input.answer {
            Some(Answer::Approve(id)) if *id == p.id && current => {
                approved = Some(id.clone());
                state.approvals.remove(app);
            }
            Some(Answer::Adopt(id)) if *id == p.id && current => {
                // Keep the live values: this drift is not healed, nor asked about again.
                adopt_approved = Some(id.clone());
                state.approvals.remove(app);
                state.declined.insert(app.to_string(), p.id.clone());
            }
            Some(Answer::Reject(id)) if *id == p.id => {
                steps.push(Step::ApprovalRejected { id: id.clone() });
                state.approvals.remove(app);
                state.declined.insert(app.to_string(), p.id.clone());
            }
            answer => {
                if let Some(Answer::Approve(id) | Answer::Adopt(id)) = answer {
                    if *id != input.report_id {
                        held.push(Held {
                            action: Action::Heal,
                            guardrail: Guardrail::StaleApproval,
                            reason: format!(
                                "approval names report {id}, but the drift is now report {}",
                                input.report_id
                            ),
                            until: None,
                        });
                    }
                }
                if !current || approve.is_empty() {
                    // The drift changed or is gone: the request is void.
                    state.approvals.remove(app);
                } else if now >= p.expires_at {
                    steps.push(Step::ApprovalExpired { id: p.id.clone() });
                    state.approvals.remove(app);
                    state.declined.insert(app.to_string(), p.id.clone());
                } else if p.escalate_at.is_some_and(|t| now >= t) {
                    steps.push(Step::EscalateApproval { id: p.id.clone() });
                    if let Some(p) = state.approvals.get_mut(app) {
                        p.escalate_at = None;
                    }
                }
            }
        }
    } else if let Some(Answer::Approve(id) | Answer::Adopt(id)) = &input.answer {
        let adopted_already = state.adopted.get(app) == Some(id);
        if !approve.is_empty() && !adopted_already {
            held.push(Held {
                action: Action::Heal,
                guardrail: Guardrail::StaleApproval,
                reason: format!("no approval is pending for report {id}"),
                until: None,
            });
        }
    }
    if approved.is_none()
        && !approve.is_empty()
        && !state.approvals.contains_key(app)
        && state.declined.get(app).map(String::as_str) != Some(input.report_id)
    {
        let a = spec.approvals;
        let p = PendingApproval {
            id: input.report_id.to_string(),
            resources: approve.clone(),
            requested_at: now,
            expires_at: now + i64::from(a.expire_seconds),
            escalate_at: (a.escalate_seconds > 0).then(|| now + i64::from(a.escalate_seconds)),
        };
        steps.push(Step::RequestApproval {
            id: p.id.clone(),
            resources: approve.clone(),
        });
        state.approvals.insert(app.to_string(), p);
    }
    if let Some(p) = state.approvals.get(app) {
        held.push(Held {
            action: Action::Heal,
            guardrail: Guardrail::ApprovalPending,
            reason: format!(
                "waiting for argo-drift.io/approve: {id} on the Application (or adopt: {id} to keep the live values and propose them to Git, reject: {id} to leave it)",
                id = p.id
            ),
            until: Some(p.expires_at),
        });
    }

    // Adoption: what a human chose to keep instead of healing, and what the policy adopts on
    // its own; proposed once per drift (the report id names the branch).
    let adopt_keys: Vec<ResourceKey> = match &adopt_approved {
        Some(_) => {
            let mut keys = approve.clone();
            keys.extend(adopt.iter().cloned());
            keys.sort();
            keys.dedup();
            keys
        }
        None => adopt,
    };
    if !adopt_keys.is_empty() && state.adopted.get(app).map(String::as_str) != Some(input.report_id)
    {
        state
            .adopted
            .insert(app.to_string(), input.report_id.to_string());
        steps.push(Step::Adopt {
            id: input.report_id.to_string(),
            resources: adopt_keys,
            approved: adopt_approved,
        });
    }

    // A human approved: heal what was asked (and what heals on its own), past the automatic
    // guardrails — a person took the decision — but never past a tripped breaker.
    if let Some(id) = approved {
        if breaker {
            held.push(breaker_held(state, app));
        } else {
            let mut keys: Vec<ResourceKey> = approve;
            keys.extend(
                heal.iter()
                    .map(|r| r.key())
                    .filter(|k| !by_workflow.contains(k)),
            );
            keys.sort();
            keys.dedup();
            let heal_id = record_heal(spec, state, app, &drifted, &keys, false, now);
            steps.push(Step::Heal {
                id: heal_id,
                resources: keys,
                approved: Some(id),
            });
        }
        return finish(decision, steps, held, state, app, mode);
    }

    if heal.is_empty() {
        return finish(decision, steps, held, state, app, mode);
    }
    let hold = |guardrail: Guardrail, reason: String, until: Option<i64>| Held {
        action: Action::Heal,
        guardrail,
        reason,
        until,
    };
    if breaker {
        held.push(breaker_held(state, app));
        return finish(decision, steps, held, state, app, mode);
    }
    match &input.budget {
        Budget::NotConfigured => {}
        Budget::Unavailable(why) => {
            held.push(hold(
                Guardrail::ErrorBudgetUnavailable,
                format!("the error budget could not be read ({why}): no automatic action"),
                None,
            ));
            return finish(decision, steps, held, state, app, mode);
        }
        Budget::Remaining(left) => {
            let minimum = spec
                .guardrails
                .error_budget
                .as_ref()
                .map_or(0.0, |b| b.minimum);
            if *left < minimum {
                held.push(hold(
                    Guardrail::ErrorBudget,
                    format!("error budget {left:.3} is below {minimum}: paging instead of healing"),
                    None,
                ));
                steps.push(Step::Page {
                    severity: heal
                        .iter()
                        .map(|r| r.severity)
                        .max()
                        .unwrap_or(Severity::Low),
                    reason: format!(
                        "drift not healed: the error budget ({left:.3}) is below {minimum}"
                    ),
                });
                return finish(decision, steps, held, state, app, mode);
            }
        }
    }
    if let Some((reason, until)) = remediation.window_hold(now) {
        held.push(hold(Guardrail::Window, reason, until));
        return finish(decision, steps, held, state, app, mode);
    }
    let blast = spec.guardrails.blast_radius;
    let total = input.report.summary.resources.max(1);
    let percent = heal.len() * 100 / total;
    // One resource is never a blast, whatever share of a small app it is.
    if heal.len() > blast.max_resources || (heal.len() > 1 && percent > blast.max_percent as usize)
    {
        held.push(hold(
            Guardrail::BlastRadius,
            format!(
                "healing would touch {} of {} resources ({percent}%); the limit is {} resources or {}%",
                heal.len(),
                total,
                blast.max_resources,
                blast.max_percent
            ),
            None,
        ));
        return finish(decision, steps, held, state, app, mode);
    }
    // Cooldown: resources whose every drifted field was acted on within the window wait.
    let mut ready = Vec::new();
    let mut cooling: Option<i64> = None;
    for r in &heal {
        let until = field_keys(app, r)
            .iter()
            .filter_map(|k| state.cooldowns.get(k).copied())
            .filter(|u| *u > now)
            .min();
        let all_cooling = field_keys(app, r)
            .iter()
            .all(|k| state.cooldowns.get(k).is_some_and(|u| *u > now));
        if all_cooling {
            cooling = cooling.max(until);
        } else {
            ready.push(*r);
        }
    }
    if ready.is_empty() {
        held.push(hold(
            Guardrail::Cooldown,
            format!(
                "acted on these fields less than {} min ago",
                spec.guardrails.cooldown_seconds / 60
            ),
            cooling,
        ));
        return finish(decision, steps, held, state, app, mode);
    }
    // Rate limits: at most N actions in any window, for the app and across all apps.
    let limits = spec.guardrails.rate_limit;
    let app_log = state.app_actions.get(app).cloned().unwrap_or_default();
    for (log, rate, guardrail, scope) in [
        (
            &app_log,
            limits.per_app,
            Guardrail::RateLimitApp,
            "for this application",
        ),
        (
            &state.global_actions,
            limits.global,
            Guardrail::RateLimitGlobal,
            "across all applications",
        ),
    ] {
        if let Some(until) = rate_limit::next_allowed(log, rate, now) {
            held.push(hold(
                guardrail,
                format!(
                    "at most {} action(s) in any {} s {scope}; the next one may start at {}",
                    rate.actions,
                    rate.per_seconds,
                    recurrence::utc(until)
                ),
                Some(until),
            ));
            return finish(decision, steps, held, state, app, mode);
        }
    }
    rate_limit::record(&mut state.global_actions, limits.global, now);
    rate_limit::record(
        state.app_actions.entry(app.to_string()).or_default(),
        limits.per_app,
        now,
    );
    let (run, sync): (Vec<_>, Vec<_>) = ready
        .iter()
        .copied()
        .partition(|r| by_workflow.contains(&r.key()));
    if !sync.is_empty() {
        let keys: Vec<ResourceKey> = sync.iter().map(|r| r.key()).collect();
        let id = record_heal(spec, state, app, &drifted, &keys, false, now);
        steps.push(Step::Heal {
            id,
            resources: keys,
            approved: None,
        });
    }
    if !run.is_empty() {
        let keys: Vec<ResourceKey> = run.iter().map(|r| r.key()).collect();
        record_heal(spec, state, app, &drifted, &keys, true, now);
    }
    if let (false, Some(w)) = (run.is_empty(), &spec.workflow) {
        steps.push(Step::RunWorkflows {
            workflows: run
                .iter()
                .map(|r| workflow_request(w, app, r, input.report_id))
                .collect(),
        });
    }
    finish(decision, steps, held, state, app, mode)
}

/// The Workflow for one drifted resource: the template, and the parameters that say what
/// drifted (app, namespace, kind, name, severity, fields, report-id) plus the static ones.
fn workflow_request(
    spec: &WorkflowSpec,
    app: &str,
    r: &crate::report::ResourceReport,
    report_id: &str,
) -> WorkflowRequest {
    let mut parameters = vec![
        ("app".to_string(), app.to_string()),
        ("namespace".to_string(), r.namespace.clone()),
        ("kind".to_string(), r.kind.clone()),
        ("name".to_string(), r.name.clone()),
        ("severity".to_string(), r.severity.as_str().to_string()),
        ("fields".to_string(), fields_of(r).join(",")),
        ("report-id".to_string(), report_id.to_string()),
    ];
    for (k, v) in &spec.parameters {
        if !parameters.iter().any(|(name, _)| name == k) {
            parameters.push((k.clone(), v.clone()));
        }
    }
    WorkflowRequest {
        template: spec.template.clone(),
        cluster_scope: spec.cluster_scope,
        namespace: spec.namespace.clone(),
        service_account: spec.service_account.clone(),
        parameters,
        ttl_seconds_after_finished: spec.ttl_seconds_after_finished,
    }
}

fn fields_of(r: &crate::report::ResourceReport) -> Vec<String> {
    if r.changes.is_empty() {
        return vec![format!("({})", r.status.as_str())];
    }
    r.changes.iter().map(|c| c.field.clone()).collect()
}

fn breaker_held(state: &GuardrailState, app: &str) -> Held {
    Held {
        action: Action::Heal,
        guardrail: Guardrail::RecurrenceBreaker,
        reason: "the recurrence breaker tripped: the same drift keeps coming back after heals; automation is stopped until a human resets it".into(),
        until: None,
    }
    .with_since(state.breakers.get(app).copied())
}

impl Held {
    fn with_since(mut self, since: Option<i64>) -> Held {
        if let Some(t) = since {
            self.reason = format!("{} (since {t})", self.reason);
        }
        self
    }
}

/// Remember a heal of `keys`: a cooldown for each of their drifted fields, and a record the
/// recurrence breaker follows until the heal took effect. Returns the heal's id. Workflows are
/// not Argo CD operations: nothing waits for them to end.
fn record_heal(
    spec: &RemediationSpec,
    state: &mut GuardrailState,
    app: &str,
    drifted: &[&crate::report::ResourceReport],
    keys: &[ResourceKey],
    workflow: bool,
    now: i64,
) -> String {
    let cooldown = i64::from(spec.guardrails.cooldown_seconds);
    let mut fields = BTreeMap::new();
    for r in drifted.iter().filter(|r| keys.contains(&r.key())) {
        for k in field_keys(app, r) {
            state.cooldowns.insert(k, now + cooldown);
        }
        for f in field_ids(r) {
            fields.insert(f, recurrence::FieldAfterHeal::default());
        }
    }
    state.heal_seq += 1;
    let id = format!("{now}-{}", state.heal_seq);
    state
        .heal_records
        .entry(app.to_string())
        .or_default()
        .push(recurrence::HealRecord {
            id: id.clone(),
            requested_at: now,
            ended: workflow.then(|| recurrence::HealEnd {
                at: now,
                outcome: recurrence::HealOutcome::WorkflowStarted,
                message: String::new(),
            }),
            fields,
        });
    id
}

fn finish(
    mut decision: Decision,
    steps: Vec<Step>,
    held: Vec<Held>,
    state: &GuardrailState,
    app: &str,
    mode: Mode,
) -> Decision {
    decision.steps = steps;
    decision.held = held;
    if mode == Mode::DryRun && !decision.steps.is_empty() {
        decision.held.push(Held {
            action: Action::Heal,
            guardrail: Guardrail::DryRun,
            reason: "dry-run: the steps above are what would be done; nothing was".into(),
            until: None,
        });
    }
    decision.pending_approval = state.approvals.get(app).cloned();
    decision
}

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn an_apps_part_is_taken_whole_and_nothing_of_another_app_with() {
        let mut s = GuardrailState {
            global_actions: vec![10, 20],
            heal_seq: 7,
            ..Default::default()
        };
        for app in ["shop/web", "shop/web2"] {
            s.app_actions.insert(app.into(), vec![10]);
            s.cooldowns
                .insert(format!("{app}|Deployment|spec.replicas"), 99);
            s.breakers.insert(app.into(), 5);
            s.frozen.insert(app.into(), 6);
            s.declined.insert(app.into(), "r1".into());
            s.declined.insert(format!("{app}|reset"), "x".into());
        }
        let web = s.take_app("shop/web");
        assert!(web.global_actions.is_empty());
        assert_eq!(web.heal_seq, 7);
        assert_eq!(web.app_actions.keys().collect::<Vec<_>>(), ["shop/web"]);
        assert_eq!(
            web.cooldowns.keys().collect::<Vec<_>>(),
            ["shop/web|Deployment|spec.replicas"]
        );
        assert_eq!(
            web.declined.keys().collect::<Vec<_>>(),
            ["shop/web", "shop/web|reset"]
        );
        // `shop/web2` starts with `shop/web` but is another app: left where it was.
        assert_eq!(s.app_actions.keys().collect::<Vec<_>>(), ["shop/web2"]);
        assert_eq!(s.declined.len(), 2);
        assert_eq!(s.global_actions, [10, 20]);
        assert!(!s.holds_no_app());
        s.take_app("shop/web2");
        assert!(s.holds_no_app());
    }
}
