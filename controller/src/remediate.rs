//! Acting on drift: reads what the pure `decide` needs (the Application's tier, mode and
//! approval annotations, the error budget, the guardrail state), runs it, persists the state,
//! and carries out the steps — through Argo CD's API when configured, else by writing the
//! Application's `operation` as Argo CD's API itself does — with an audit record of the intent
//! before and of the outcome after every action.

use std::path::PathBuf;
use std::time::Duration;

use argo_drift_core::policy::{
    decide, resource_actions, Action, Answer, AppInput, Budget, Decision, EndedOperation,
    GuardrailState, Mode, OperationView, Remediation, Step, HEAL_INFO,
};
use argo_drift_core::report::DriftReport;
use argo_drift_core::Severity;
use argo_drift_notify::EventKind;
use backon::RetryableWithContext as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::application::{self, Application};
use crate::argocd::{ArgoCd, SyncResource};
use crate::error::{Error, Result};
use crate::metrics::{labels, Metrics};
use crate::publish::label_value;
use crate::publish::FIELD_MANAGER;

pub const MODE_LABEL: &str = "argo-drift.io/mode";
pub const TIER_LABEL: &str = "argo-drift.io/tier";
pub const APPROVE_ANNOTATION: &str = "argo-drift.io/approve";
pub const REJECT_ANNOTATION: &str = "argo-drift.io/reject";
/// `<report id>`: answer a pending approval by keeping the live values and proposing them to
/// Git (the `adopt` action) instead of healing.
pub const ADOPT_ANNOTATION: &str = "argo-drift.io/adopt";
/// `<report id>`: a person asks to heal this drift now, through the automatic guardrails.
pub const HEAL_NOW_ANNOTATION: &str = "argo-drift.io/heal-now";
/// A new value clears the app's recurrence breaker and freeze (a human looked at it).
pub const RESET_ANNOTATION: &str = "argo-drift.io/reset";
/// On a frozen Application: its `spec.syncPolicy.automated` before the freeze (JSON), put back
/// when a human resets the app.
pub const FROZEN_AUTOMATED_ANNOTATION: &str = "argo-drift.io/frozen-automated";
pub const STATE_CONFIGMAP: &str = "argo-drift-guardrails";
/// On Workflows argo-drift started: the Application they are for.
pub const WORKFLOW_APP_LABEL: &str = "argo-drift.io/app";
/// The Workflow's Application, by its full name.
pub const WORKFLOW_APP_ANNOTATION: &str = "argo-drift.io/app";
pub const WORKFLOW_APP_NAMESPACE_LABEL: &str = "argo-drift.io/app-namespace";
/// On a finished Workflow once its outcome was announced (so a restart does not repeat it).
pub const WORKFLOW_REPORTED_ANNOTATION: &str = "argo-drift.io/reported";

/// Argo Workflows' Workflow.
pub fn workflow_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Workflow"),
        "workflows",
    )
}
pub const STATE_KEY: &str = "state.json";
pub const AUDIT_TYPE_LABEL: &str = "audit-type";
pub const AUDIT_TYPE: &str = "drift-remediation";

/// Seconds since the Unix epoch. Tests (hidden `--clock-file`) set it from a file so that a
/// cooldown or an approval expiry needs no sleeping.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    file: Option<PathBuf>,
}

impl Clock {
    pub fn new(file: Option<PathBuf>) -> Clock {
        Clock { file }
    }

    pub fn now(&self) -> i64 {
        if let Some(t) = self
            .file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| t.trim().parse().ok())
        {
            return t;
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// Something to tell people about a step: a Kubernetes Event on the Application and a
/// notification.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub kind: EventKind,
    pub reason: &'static str,
    pub message: String,
    pub warning: bool,
    pub severity: Severity,
}

pub struct Outcome {
    pub decision: Decision,
    pub announcements: Vec<Announcement>,
    /// Look at the app again then: a hold ends, an approval escalates or expires.
    pub next_look: Option<Duration>,
}

/// A guardrail-state ConfigMap's content and resourceVersion (`None`: not created yet).
type Versioned = (GuardrailState, Option<String>);
type AppSlot = std::sync::Arc<tokio::sync::Mutex<Option<Versioned>>>;

/// On every guardrail-state ConfigMap (the global one and each app's).
pub const GUARDRAILS_LABEL: &str = "argo-drift.io/guardrails";
/// How often a decision is taken again after another replica wrote the state first.
const CONFLICT_RETRIES: usize = 8;

/// What a decision reads from the Application's annotations besides the answer.
struct AppAnnotations {
    /// `argo-drift.io/reset`: clear the breaker and freeze once per new value.
    reset: Option<String>,
    /// The app was frozen by argo-drift (a reset puts its automated sync back).
    frozen: bool,
}

/// Someone else wrote the ConfigMap since we read it (or created it first).
fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Kube { cause: kube::Error::Api(s), .. } if s.code == 409)
}

pub struct Remediator {
    client: Client,
    /// argo-drift's state namespace: the state ConfigMap and the audit records live there.
    namespace: String,
    argocd: Option<ArgoCd>,
    clock: Clock,
    audit_keep: usize,
    http: reqwest::Client,
    /// Each application's part of the guardrail state as last read or written, with its
    /// ConfigMap's resourceVersion: one decision per app at a time, none waits for another app.
    apps: std::sync::Mutex<std::collections::HashMap<String, AppSlot>>,
    /// The global action log every replica shares, as last read or written. Never locked across
    /// a decision: a write with a stale version is refused by the API server and decided again.
    global: std::sync::Mutex<Option<Versioned>>,
    /// The report each app was last paged or notified for: a decision is taken again on
    /// every analysis, the page goes out once per drift.
    told: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// What the `adopt` action writes with; without it an adoption fails, saying so.
    adopter: Option<std::sync::Arc<Adopter>>,
}

/// What the `adopt` action needs: the controller's clones, Argo CD's repository credentials
/// and known hosts (as the analyses read them), the forge for pull requests, the author.
pub struct Adopter {
    pub repos: std::sync::Arc<crate::repo::Repos>,
    pub git: crate::reconcile::GitSettings,
    pub forge: Option<crate::forge::Forge>,
    /// Name, email.
    pub author: (String, String),
}

/// What an analysis hands the remediator besides the report: the revision it was made at
/// (an adoption's parent commit).
#[derive(Debug, Clone, Copy, Default)]
pub struct Analysed<'a> {
    pub revision: Option<&'a str>,
}

impl Remediator {
    pub fn new(
        client: Client,
        namespace: String,
        argocd: Option<ArgoCd>,
        clock: Clock,
        audit_keep: usize,
    ) -> Remediator {
        Remediator {
            client,
            namespace,
            argocd,
            clock,
            audit_keep: audit_keep.max(1),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            apps: std::sync::Mutex::default(),
            global: std::sync::Mutex::default(),
            told: std::sync::Mutex::default(),
            adopter: None,
        }
    }

    /// Adoptions (the `adopt` action) write with this.
    pub fn with_adopter(mut self, adopter: Adopter) -> Remediator {
        self.adopter = Some(std::sync::Arc::new(adopter));
        self
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Forget what is cached of one application (it moved to another replica).
    pub fn let_go(&self, app: &str) {
        crate::lock(&self.apps).remove(app);
    }

    fn state_api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn app_slot(&self, app: &str) -> AppSlot {
        crate::lock(&self.apps)
            .entry(app.to_string())
            .or_default()
            .clone()
    }

    /// A guardrail-state ConfigMap's content and version; `None` when it does not exist.
    async fn read(&self, name: &str) -> Result<Option<Versioned>> {
        let cm = self
            .state_api()
            .get_opt(name)
            .await
            .map_err(Error::kube(format!(
                "reading ConfigMap {}/{name}",
                self.namespace
            )))?;
        let Some(cm) = cm else {
            return Ok(None);
        };
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(STATE_KEY))
            .cloned()
            .unwrap_or_default();
        // An unreadable state is not silently reset: guardrails would forget their limits.
        let state = if text.is_empty() {
            GuardrailState::default()
        } else {
            serde_json::from_str(&text).map_err(|e| Error::InvalidApplication {
                app: format!("ConfigMap {}/{name}", self.namespace),
                message: format!("{STATE_KEY}: {e}"),
            })?
        };
        Ok(Some((state, cm.metadata.resource_version)))
    }

    /// The global state (the shared action log, and the app entries of versions that kept
    /// every app in it), from the cache or the API server.
    async fn global(&self) -> Result<Versioned> {
        if let Some(g) = crate::lock(&self.global).clone() {
            return Ok(g);
        }
        let g = self
            .read(STATE_CONFIGMAP)
            .await?
            .unwrap_or((GuardrailState::default(), None));
        *crate::lock(&self.global) = Some(g.clone());
        Ok(g)
    }

    /// `app`'s part: its own ConfigMap, else (first decision after an upgrade from the single
    /// ConfigMap) what the global state still holds of it.
    async fn load_app(&self, app: &str) -> Result<Versioned> {
        if let Some(own) = self.read(&self.app_configmap(app)).await? {
            return Ok(own);
        }
        let (mut global, _) = self.global().await?;
        Ok((global.take_app(app), None))
    }

    fn app_configmap(&self, app: &str) -> String {
        let (namespace, name) = app.split_once('/').unwrap_or(("", app));
        argo_drift_cluster::records::guardrail_name(namespace, name)
    }

    /// Write a guardrail-state ConfigMap. The resourceVersion makes a concurrent writer (another
    /// replica) a conflict (409) rather than a lost update; `None` creates it (409 if it exists).
    async fn write(
        &self,
        name: &str,
        app: Option<&str>,
        state: &GuardrailState,
        version: Option<String>,
    ) -> Result<Option<String>> {
        let text = serde_json::to_string(state).unwrap_or_default();
        let mut labels = serde_json::Map::new();
        labels.insert("app.kubernetes.io/managed-by".into(), "argo-drift".into());
        labels.insert(GUARDRAILS_LABEL.into(), "true".into());
        if let Some((namespace, app)) = app.and_then(|a| a.split_once('/')) {
            labels.insert(
                argo_drift_cluster::records::APP_LABEL.into(),
                label_value(app).into(),
            );
            labels.insert(
                argo_drift_cluster::records::APP_NAMESPACE_LABEL.into(),
                label_value(namespace).into(),
            );
        }
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "resourceVersion": version,
                "labels": labels,
                "annotations": app.map(|a| json!({crate::publish::APPLICATION_ANNOTATION: a})),
            },
            "data": {STATE_KEY: text},
        }))
        .map_err(|e| Error::InvalidApplication {
            app: name.into(),
            message: e.to_string(),
        })?;
        let api = self.state_api();
        let what = format!("writing ConfigMap {}/{name}", self.namespace);
        let written = match version {
            Some(_) => api
                .replace(name, &PostParams::default(), &cm)
                .await
                .map_err(Error::kube(what))?,
            None => api
                .create(&PostParams::default(), &cm)
                .await
                .map_err(Error::kube(what))?,
        };
        Ok(written.metadata.resource_version)
    }

    /// One attempt at deciding for `app` on its state `mine`: the decision and `app`'s new
    /// state, both written (the global log first: an action it records but that then does not
    /// happen only makes the limit stricter). A conflict means another replica wrote first:
    /// the cached copy is dropped and the caller decides again on fresh state.
    async fn decide_once(
        &self,
        app: &str,
        mine: Option<Versioned>,
        annotations: &AppAnnotations,
        input: &AppInput<'_>,
        remediation: &Remediation,
    ) -> (Option<Versioned>, Result<(Decision, bool)>) {
        let (mine, version) = match mine {
            Some(m) => m,
            None => match self.load_app(app).await {
                Ok(m) => m,
                Err(e) => return (None, Err(e)),
            },
        };
        let (global, global_version) = match self.global().await {
            Ok(g) => g,
            Err(e) => return (Some((mine, version)), Err(e)),
        };
        let mut state = mine.clone();
        state.global_actions = global.global_actions.clone();
        let now = self.clock.now();
        let mut unfreeze = false;
        if let Some(reset) = &annotations.reset {
            let key = format!("{app}|reset");
            if state.declined.get(&key) != Some(reset) {
                state.forget(app);
                state.declined.insert(key, reset.clone());
                unfreeze = annotations.frozen;
            }
        }
        state.prune(&remediation.spec, now);
        let decision = decide(remediation, input, &mut state, now);
        let actions = std::mem::take(&mut state.global_actions);
        if actions != global.global_actions {
            let mut next = global.clone();
            next.global_actions = actions;
            match self
                .write(STATE_CONFIGMAP, None, &next, global_version)
                .await
            {
                Ok(v) => *crate::lock(&self.global) = Some((next, v)),
                Err(e) => {
                    *crate::lock(&self.global) = None;
                    return (Some((mine, version)), Err(e));
                }
            }
        }
        // Nothing changed, or nothing to remember of an app never acted on: no write.
        if state == mine && (version.is_some() || state == GuardrailState::default()) {
            return (Some((mine, version)), Ok((decision, unfreeze)));
        }
        let name = self.app_configmap(app);
        match self.write(&name, Some(app), &state, version).await {
            Ok(v) => (Some((state, v)), Ok((decision, unfreeze))),
            Err(e) => (None, Err(e)),
        }
    }

    /// Decide for `app` and carry the steps out (in enforce mode).
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        &self,
        object: &DynamicObject,
        app: &Application,
        report: &DriftReport,
        report_id: &str,
        remediation: &Remediation,
        metrics: &Metrics,
        analysed: Analysed<'_>,
    ) -> Result<Outcome> {
        let app_name = format!("{}/{}", app.namespace, app.name);
        let label = |k: &str| {
            object
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(k))
                .cloned()
        };
        let annotation = |k: &str| {
            object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let mode = match label(MODE_LABEL) {
            Some(m) => Some(m.parse::<Mode>().map_err(|e| Error::InvalidApplication {
                app: app_name.clone(),
                message: format!("label {MODE_LABEL}: {e}"),
            })?),
            None => None,
        };
        let tier = label(TIER_LABEL);
        let answer = human_answer(
            [
                annotation(REJECT_ANNOTATION).map(Answer::Reject),
                annotation(ADOPT_ANNOTATION).map(Answer::Adopt),
                annotation(APPROVE_ANNOTATION).map(Answer::Approve),
            ],
            report_id,
        );
        let heal_now = annotation(HEAL_NOW_ANNOTATION);
        // Prometheus is asked only when the gate can matter: some drift wants an automatic
        // action (or a person asked to heal it now) and the mode decides at all (this runs on
        // every analysis).
        let asked = heal_now.as_deref() == Some(report_id);
        let automatic = mode.unwrap_or(remediation.spec.mode) != Mode::Observe
            && (asked
                || report
                    .resources
                    .iter()
                    .filter(|r| r.status != argo_drift_core::Status::Synced)
                    .any(|r| {
                        resource_actions(
                            &remediation.spec,
                            &remediation.rule_actions,
                            tier.as_deref(),
                            r,
                        )
                        .iter()
                        .any(|a| matches!(a, Action::Heal | Action::Workflow))
                    }));
        let budget = match &remediation.spec.guardrails.error_budget {
            Some(spec) if automatic => self.error_budget(spec, app).await,
            _ => Budget::NotConfigured,
        };

        let annotations = AppAnnotations {
            reset: annotation(RESET_ANNOTATION),
            frozen: annotation(FROZEN_AUTOMATED_ANNOTATION).is_some(),
        };
        let input = AppInput {
            app: &app_name,
            tier: tier.as_deref(),
            mode,
            report,
            report_id,
            answer,
            heal_now: heal_now.clone(),
            budget,
            operation: operation_view(object),
        };
        let slot = self.app_slot(&app_name);
        let mut guard = slot.lock().await;
        let (kept, decided) = {
            |mine: Option<Versioned>| {
                self.decide_once(&app_name, mine, &annotations, &input, remediation)
            }
        }
        .retry(
            backon::ConstantBuilder::default()
                .with_delay(Duration::from_millis(20))
                .with_max_times(CONFLICT_RETRIES),
        )
        .context(guard.take())
        .when(is_conflict)
        .await;
        *guard = kept;
        drop(guard);
        let (decision, unfreeze) = decided?;
        let now = self.clock.now();

        for h in &decision.held {
            metrics
                .actions_held
                .get_or_create(&labels(&[("guardrail", h.guardrail.as_str())]))
                .inc();
        }
        let mut announcements = Vec::new();
        let first_time = crate::lock(&self.told).insert(app_name.clone(), report_id.to_string())
            != Some(report_id.to_string());
        for step in &decision.steps {
            if matches!(step, Step::Page { .. } | Step::Notify { .. }) && !first_time {
                continue;
            }
            if let Some(a) = self
                .carry_out(object, app, step, &decision, metrics, (report, analysed))
                .await
            {
                announcements.push(a);
            }
        }
        // A reset of a frozen app puts its automated sync back, unless it freezes again now.
        if unfreeze && decision.acts() && !decision.steps.contains(&Step::Freeze) {
            let severity = Severity::None;
            let result = self
                .act(app, "unfreeze", severity, &Step::Unfreeze, || {
                    self.unfreeze(object, app)
                })
                .await;
            metrics
                .actions
                .get_or_create(&labels(&[
                    ("action", "unfreeze"),
                    ("outcome", outcome(&result)),
                ]))
                .inc();
            announcements.push(Announcement {
                kind: EventKind::ActionTaken,
                reason: if result.is_ok() {
                    "DriftUnfrozen"
                } else {
                    "DriftUnfreezeFailed"
                },
                message: match result {
                    Ok(()) => {
                        "reset by a human: automated sync is back as it was before the freeze"
                            .into()
                    }
                    Err(e) => format!("putting automated sync back failed: {e}"),
                },
                warning: false,
                severity,
            });
        }
        let next_look = next_look(&decision, now);
        Ok(Outcome {
            decision,
            announcements,
            next_look,
        })
    }

    /// One step: audited and performed in enforce mode; announced in both enforce and dry-run
    /// for steps that only tell people.
    async fn carry_out(
        &self,
        object: &DynamicObject,
        app: &Application,
        step: &Step,
        decision: &Decision,
        metrics: &Metrics,
        (report, analysed): (&DriftReport, Analysed<'_>),
    ) -> Option<Announcement> {
        let severity = decision
            .resources
            .iter()
            .map(|r| r.severity)
            .max()
            .unwrap_or(Severity::None);
        let enforce = decision.acts();
        let announce = |kind, reason, message: String, warning| {
            Some(Announcement {
                kind,
                reason,
                message,
                warning,
                severity,
            })
        };
        match step {
            Step::Heal { id, resources, approved } => {
                if !enforce {
                    return None;
                }
                let what = match approved {
                    Some(id) => format!("heal {} resource(s), approved for report {id}", resources.len()),
                    None => format!("heal {} resource(s)", resources.len()),
                };
                let result = self
                    .act(app, "heal", severity, step, || self.heal(object, app, resources, id))
                    .await;
                if result.is_err() {
                    // Nothing ran: no heal for the recurrence breaker to follow.
                    self.heal_not_run(app, id).await;
                }
                metrics
                    .actions
                    .get_or_create(&labels(&[("action", "heal"), ("outcome", outcome(&result))]))
                    .inc();
                match result {
                    Ok(()) => announce(EventKind::ActionTaken, "DriftHealRequested", format!("{what}: a sync of only the drifted resources was requested"), false),
                    Err(e) => announce(EventKind::ActionHeld, "DriftHealFailed", format!("{what} failed: {e}"), true),
                }
            }
            Step::Freeze => {
                if !enforce {
                    return None;
                }
                let result = self
                    .act(app, "freeze", severity, step, || self.freeze(object, app))
                    .await;
                metrics
                    .actions
                    .get_or_create(&labels(&[("action", "freeze"), ("outcome", outcome(&result))]))
                    .inc();
                match result {
                    Ok(()) => announce(EventKind::ActionTaken, "DriftFrozen", "automated sync turned off: security-relevant drift is kept as evidence; nothing is healed until a human resets the app".into(), true),
                    Err(e) => announce(EventKind::ActionHeld, "DriftFreezeFailed", format!("turning automated sync off failed: {e}"), true),
                }
            }
            Step::Adopt { id, resources, approved } => {
                if !enforce {
                    return None;
                }
                let result = self
                    .adopt(app, report, analysed, step, id, resources, severity)
                    .await;
                metrics
                    .actions
                    .get_or_create(&labels(&[
                        ("action", "adopt"),
                        ("outcome", if result.is_ok() { "succeeded" } else { "failed" }),
                    ]))
                    .inc();
                let what = match approved {
                    Some(id) => format!("adopt the drift into Git, as answered for report {id}"),
                    None => "adopt the drift into Git".to_string(),
                };
                match result {
                    Ok(done) => announce(EventKind::ActionTaken, "DriftAdopted", format!("{what}: {done}"), false),
                    Err(e) => announce(EventKind::ActionHeld, "DriftAdoptFailed", format!("{what} failed: {e}"), true),
                }
            }
            Step::RequestApproval { id, resources } if enforce => announce(
                EventKind::ApprovalRequested,
                "DriftApprovalRequested",
                format!(
                    "approve healing {} resource(s): run `kubectl annotate application -n {ns} {name} {APPROVE_ANNOTATION}={id}` or use the Application's action approve-drift in Argo CD; to keep the live values and propose them to Git instead: `{ADOPT_ANNOTATION}={id}` or the action adopt-drift; to reject: `kubectl annotate application -n {ns} {name} {REJECT_ANNOTATION}={id}` or the action reject-drift",
                    resources.len(),
                    ns = app.namespace,
                    name = app.name,
                ),
                true,
            ),
            Step::EscalateApproval { id } if enforce => announce(
                EventKind::ApprovalRequested,
                "DriftApprovalEscalated",
                format!("still waiting for {APPROVE_ANNOTATION}: {id}"),
                true,
            ),
            Step::ApprovalExpired { id } if enforce => announce(
                EventKind::ApprovalExpired,
                "DriftApprovalExpired",
                format!("no approval for report {id}: the drift stays; it is not asked again for the same drift"),
                true,
            ),
            Step::ApprovalRejected { id } if enforce => announce(
                EventKind::ActionHeld,
                "DriftApprovalRejected",
                format!("healing report {id} was rejected"),
                false,
            ),
            Step::BreakerTripped { summary, .. } if enforce => {
                metrics.breaker_trips.inc();
                let _ = self
                    .act(app, "recurrence-breaker", severity, step, || async { Ok(()) })
                    .await;
                announce(
                    EventKind::RecurrenceBreakerTripped,
                    "DriftRecurrenceBreakerTripped",
                    format!(
                        "{} until a human sets {RESET_ANNOTATION} on the Application",
                        summary
                    ),
                    true,
                )
            }
            Step::Page { reason, .. } if enforce => announce(
                EventKind::ActionHeld,
                "DriftPage",
                reason.clone(),
                true,
            ),
            Step::RunWorkflows { workflows } if enforce => {
                let mut created = Vec::new();
                let mut failures = Vec::new();
                for w in workflows {
                    let outcome = match self.run_workflow(app, w, severity, step).await {
                        Ok(name) => {
                            created.push(format!("{}/{name}", w.namespace));
                            "created"
                        }
                        Err(e) => {
                            failures.push(e.to_string());
                            "failed"
                        }
                    };
                    metrics
                        .actions
                        .get_or_create(&labels(&[("action", "workflow"), ("outcome", outcome)]))
                        .inc();
                }
                if failures.is_empty() {
                    announce(
                        EventKind::ActionTaken,
                        "DriftWorkflowStarted",
                        format!("started Workflow {}", created.join(", ")),
                        false,
                    )
                } else {
                    announce(
                        EventKind::ActionHeld,
                        "DriftWorkflowFailed",
                        format!("could not start a Workflow: {}", failures.join("; ")),
                        true,
                    )
                }
            }
            _ => None,
        }
    }

    /// Create one Workflow (audited: intent, then the outcome with the Workflow's name).
    async fn run_workflow(
        &self,
        app: &Application,
        w: &argo_drift_core::policy::WorkflowRequest,
        severity: Severity,
        step: &Step,
    ) -> Result<String> {
        // Fail closed, as every action: no intent recorded, no Workflow.
        let record = self.audit_intent(app, "workflow", severity, step).await?;
        let report = w
            .parameters
            .iter()
            .find(|(k, _)| k == "report-id")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut spec = json!({
            "workflowTemplateRef": {"name": w.template, "clusterScope": w.cluster_scope},
            "serviceAccountName": w.service_account,
            "arguments": {"parameters": w.parameters.iter()
                .map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>()},
        });
        if let Some(ttl) = w.ttl_seconds_after_finished {
            spec["ttlStrategy"] = json!({"secondsAfterCompletion": ttl});
        }
        let workflow: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {
                "generateName": format!("argo-drift-{}-", app.name.chars().take(40).collect::<String>()),
                "namespace": w.namespace,
                // The label selects; the annotation names the app whole (a label value is
                // at most 63 characters, an Application name up to 253).
                "annotations": {WORKFLOW_APP_ANNOTATION: app.name},
                "labels": {
                    WORKFLOW_APP_LABEL: label_value(&app.name),
                    WORKFLOW_APP_NAMESPACE_LABEL: app.namespace,
                    "argo-drift.io/report": report.chars().take(63).collect::<String>(),
                    "app.kubernetes.io/managed-by": "argo-drift",
                },
            },
            "spec": spec,
        }))
        .map_err(|e| Error::InvalidApplication {
            app: format!("{}/{}", app.namespace, app.name),
            message: format!("building the Workflow: {e}"),
        })?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &w.namespace, &workflow_resource());
        let result = api
            .create(&PostParams::default(), &workflow)
            .await
            .map_err(Error::kube(format!(
                "creating a Workflow in {}",
                w.namespace
            )))
            .map(|created| created.metadata.name.unwrap_or_default());
        let detail = result
            .as_ref()
            .ok()
            .map(|n| json!({"workflow": format!("{}/{n}", w.namespace)}));
        let error = result.as_ref().err().map(|e| e.to_string());
        self.audit_outcome_with(&record, error, detail).await;
        result
    }

    /// Audit the intent, perform, audit the outcome.
    async fn act<F, Fut>(
        &self,
        app: &Application,
        action: &str,
        severity: Severity,
        step: &Step,
        perform: F,
    ) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        // Fail closed: an action whose intent could not be recorded does not run.
        let record = self.audit_intent(app, action, severity, step).await?;
        let result = perform().await;
        self.audit_outcome(&record, &result).await;
        result
    }

    /// Propose `resources`' drift to Git (audited: the intent, then the outcome with the
    /// branch, commit and pull request). A failure that may pass (the repository or the forge
    /// unreachable) is forgotten, so that the next analysis tries again — the branch, named by
    /// the drift, is pushed once whatever happens; one that cannot pass (a Helm source) is not.
    #[allow(clippy::too_many_arguments)]
    async fn adopt(
        &self,
        app: &Application,
        report: &DriftReport,
        analysed: Analysed<'_>,
        step: &Step,
        id: &str,
        resources: &[argo_drift_core::ResourceKey],
        severity: Severity,
    ) -> std::result::Result<String, String> {
        let record = self
            .audit_intent(app, "adopt", severity, step)
            .await
            .map_err(|e| e.to_string())?;
        let result = self.propose(app, report, analysed, id, resources).await;
        match &result {
            Ok((_, detail)) => {
                self.audit_outcome_with(&record, None, Some(detail.clone()))
                    .await
            }
            Err((e, _)) => {
                self.audit_outcome_with(&record, Some(e.clone()), None)
                    .await
            }
        }
        match result {
            Ok((done, _)) => Ok(done),
            Err((e, retry)) => {
                if retry {
                    self.adopt_not_done(app, id).await;
                }
                Err(e)
            }
        }
    }

    /// The adoption itself: what was done and the audit record's detail, or the error and
    /// whether to try again at the next analysis.
    async fn propose(
        &self,
        app: &Application,
        report: &DriftReport,
        analysed: Analysed<'_>,
        id: &str,
        resources: &[argo_drift_core::ResourceKey],
    ) -> std::result::Result<(String, Value), (String, bool)> {
        use crate::adopt::{Choice, GitAccess};
        let adopter = self.adopter.clone().ok_or_else(|| {
            (
                "this controller has no Git access for adoptions".to_string(),
                false,
            )
        })?;
        let revision = analysed
            .revision
            .map(str::to_string)
            .or_else(|| app.synced_revision.clone())
            .ok_or_else(|| ("the analysed revision is not known".to_string(), true))?;
        let repo_url = app
            .sources
            .first()
            .map(|s| s.repo_url.clone())
            .unwrap_or_default();
        let access = GitAccess {
            credentials: argo_drift_desired::credentials_for(
                &adopter.git.repo_secrets(),
                &repo_url,
            ),
            known_hosts: adopter.git.known_hosts(),
        };
        // One branch per drift of this app (apps of the same name live in other namespaces):
        // pushed once, found again after a restart or by another replica.
        let branch = format!("argo-drift/adopt/{}/{}-{id}", app.namespace, app.name);
        let origin = format!(
            "argo-drift remediation (report {id} of {}/{})",
            app.namespace, app.name
        );
        let (app_owned, report_owned, keys) = (app.clone(), report.clone(), resources.to_vec());
        let git = adopter.clone();
        let (branch_owned, origin_owned) = (branch.clone(), origin);
        let pushed = tokio::task::spawn_blocking(move || {
            let choice = Choice {
                patterns: &[],
                resources: Some(&keys),
                origin: &origin_owned,
            };
            let proposal = crate::adopt::prepare(
                &app_owned,
                &report_owned,
                &revision,
                &choice,
                &git.repos,
                &access,
            )
            .map_err(|e| {
                // Reading the repository may work next time; a source adopt cannot write won't.
                let retry = e
                    .downcast_ref::<Error>()
                    .is_some_and(|e| matches!(e, Error::FetchRepo { .. }));
                (format!("{e:#}"), retry)
            })?;
            let Some(proposal) = proposal else {
                return Ok(None);
            };
            let author = (git.author.0.as_str(), git.author.1.as_str());
            match crate::adopt::push(&proposal, &git.repos, &branch_owned, author, &access) {
                Ok(commit) => Ok(Some((proposal, Some(commit)))),
                Err(Error::BranchExists { .. }) => Ok(Some((proposal, None))),
                Err(e) => Err((e.to_string(), true)),
            }
        })
        .await
        .map_err(|e| (format!("the adoption stopped: {e}"), true))??;
        let Some((proposal, commit)) = pushed else {
            return Ok((
                "nothing to adopt: no drifted field of these resources can be written to Git (Secrets never are)".into(),
                json!({"adopted": 0}),
            ));
        };
        let mut done = match commit {
            Some(c) => proposal.pushed(&branch, c),
            None => format!(
                "branch {branch} is in {} already (proposed before)",
                proposal.repo_url
            ),
        };
        let mut detail = json!({
            "repository": proposal.repo_url,
            "branch": branch,
            "revision": proposal.revision,
            "fields": proposal.fields,
        });
        if let Some(c) = commit {
            detail["commit"] = json!(c.to_string());
        }
        if let Some(forge) = &adopter.forge {
            let opened = proposal.pull_request(forge, &branch).await.map_err(|e| {
                (
                    format!("{done}; opening its pull request failed: {e:#}"),
                    true,
                )
            })?;
            match opened {
                Some(pr) => {
                    done.push_str(&format!(
                        "; pull request #{} {}: {}",
                        pr.number,
                        if pr.existed {
                            "(open already)"
                        } else {
                            "opened"
                        },
                        pr.url
                    ));
                    detail["pullRequest"] = json!(pr.url);
                }
                None => done.push_str("; no pull request: the repository is not on the forge"),
            }
        }
        Ok((done, detail))
    }

    /// Forget that `app`'s drift `id` was proposed: it failed in a way that may pass.
    async fn adopt_not_done(&self, app: &Application, id: &str) {
        let app_name = format!("{}/{}", app.namespace, app.name);
        let slot = self.app_slot(&app_name);
        let mut guard = slot.lock().await;
        let Some((mut state, version)) = guard.take() else {
            return;
        };
        if state.adopted.get(&app_name).map(String::as_str) == Some(id) {
            state.adopted.remove(&app_name);
        }
        let name = self.app_configmap(&app_name);
        match self.write(&name, Some(&app_name), &state, version).await {
            Ok(v) => *guard = Some((state, v)),
            Err(e) => {
                tracing::warn!(error = %e, app = %app_name, "forgetting an adoption that failed");
            }
        }
    }

    /// Forget heal `id` of `app` in the guardrail state: its request failed.
    async fn heal_not_run(&self, app: &Application, id: &str) {
        let app_name = format!("{}/{}", app.namespace, app.name);
        let slot = self.app_slot(&app_name);
        let mut guard = slot.lock().await;
        let Some((mut state, version)) = guard.take() else {
            return;
        };
        state.heal_not_run(&app_name, id);
        let name = self.app_configmap(&app_name);
        match self.write(&name, Some(&app_name), &state, version).await {
            Ok(v) => *guard = Some((state, v)),
            Err(e) => {
                // Read afresh at the next decision.
                tracing::warn!(error = %e, app = %app_name, "forgetting a heal that did not run");
            }
        }
    }

    async fn heal(
        &self,
        object: &DynamicObject,
        app: &Application,
        resources: &[argo_drift_core::ResourceKey],
        id: &str,
    ) -> Result<()> {
        let resources: Vec<SyncResource> = resources
            .iter()
            .map(|k| SyncResource {
                group: k.group.clone(),
                kind: k.kind.clone(),
                namespace: k.namespace.clone(),
                name: k.name.clone(),
            })
            .collect();
        if let Some(argocd) = &self.argocd {
            argocd
                .sync_with_info(&app.name, &app.namespace, &resources, &[(HEAL_INFO, id)])
                .await?;
            return Ok(());
        }
        // What Argo CD's API does for a sync: set `operation`, which its application
        // controller runs. Refused, as Argo CD refuses, while another operation is there.
        if object.data.get("operation").is_some_and(|o| !o.is_null()) {
            return Err(Error::ArgoCd {
                path: "Application.operation".into(),
                status: None,
                code: Some(crate::argocd::FAILED_PRECONDITION),
                message: "another operation is already in progress".into(),
            });
        }
        let revision = app
            .synced_revision
            .clone()
            .or_else(|| app.sources.first().map(|s| s.target_revision.clone()))
            .unwrap_or_default();
        let patch = json!({"operation": {
            "sync": {"revision": revision, "prune": false, "resources": resources},
            "initiatedBy": {"username": FIELD_MANAGER},
            "info": [{"name": HEAL_INFO, "value": id}],
            "retry": {},
        }});
        self.patch_application(app, &patch).await
    }

    async fn freeze(&self, object: &DynamicObject, app: &Application) -> Result<()> {
        let mut patch = json!({"spec": {"syncPolicy": {"automated": null}}});
        // Remember what to put back, unless an earlier freeze already did.
        let remembered = object
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(FROZEN_AUTOMATED_ANNOTATION));
        if !remembered {
            let before = object
                .data
                .pointer("/spec/syncPolicy/automated")
                .cloned()
                .unwrap_or(Value::Null);
            patch["metadata"] =
                json!({"annotations": {FROZEN_AUTOMATED_ANNOTATION: before.to_string()}});
        }
        if let Some(argocd) = &self.argocd {
            argocd.patch(&app.name, &app.namespace, &patch).await?;
            return Ok(());
        }
        self.patch_application(app, &patch).await
    }

    async fn unfreeze(&self, object: &DynamicObject, app: &Application) -> Result<()> {
        let before: Value = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FROZEN_AUTOMATED_ANNOTATION))
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(Value::Null);
        let patch = json!({
            "metadata": {"annotations": {FROZEN_AUTOMATED_ANNOTATION: null}},
            "spec": {"syncPolicy": {"automated": before}},
        });
        if let Some(argocd) = &self.argocd {
            argocd.patch(&app.name, &app.namespace, &patch).await?;
            return Ok(());
        }
        self.patch_application(app, &patch).await
    }

    /// A merge patch under our field manager: removing a field another manager owns (Argo
    /// CD's `automated`) is not possible with server-side apply.
    async fn patch_application(&self, app: &Application, patch: &Value) -> Result<()> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &app.namespace,
            &application::api_resource(),
        );
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        api.patch(&app.name, &params, &Patch::Merge(patch))
            .await
            .map_err(Error::kube(format!(
                "patching Application {}/{}",
                app.namespace, app.name
            )))?;
        Ok(())
    }

    async fn audit_intent(
        &self,
        app: &Application,
        action: &str,
        severity: Severity,
        step: &Step,
    ) -> Result<String> {
        let now = self.clock.now();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = crate::publish::record_name(&[
            "argo-drift-audit",
            &app.name,
            &now.to_string(),
            &format!("{nanos:09}"),
        ]);
        let intent = json!({
            "application": format!("{}/{}", app.namespace, app.name),
            "action": action,
            "step": step,
            "decidedAt": now,
            "by": FIELD_MANAGER,
        });
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {
                    AUDIT_TYPE_LABEL: AUDIT_TYPE,
                    "argo-drift.io/app": label_value(&app.name),
                    "argo-drift.io/app-namespace": app.namespace,
                    "argo-drift.io/severity": severity.as_str(),
                    "argo-drift.io/action": action,
                    "app.kubernetes.io/managed-by": "argo-drift",
                },
            },
            "data": {"intent.json": intent.to_string()},
        }))
        .map_err(|e| Error::InvalidApplication {
            app: name.clone(),
            message: e.to_string(),
        })?;
        self.state_api()
            .create(&PostParams::default(), &cm)
            .await
            .map_err(Error::kube(format!("writing audit record {name}")))?;
        self.trim_audit(app).await;
        Ok(name)
    }

    async fn audit_outcome(&self, name: &str, result: &Result<()>) {
        let error = result.as_ref().err().map(|e| e.to_string());
        self.audit_outcome_with(name, error, None).await;
    }

    /// The outcome record: succeeded, or failed with `error`; `detail` adds fields (the
    /// Workflow's name).
    async fn audit_outcome_with(&self, name: &str, error: Option<String>, detail: Option<Value>) {
        let mut outcome = match error {
            None => json!({"result": "succeeded", "at": self.clock.now()}),
            Some(e) => json!({"result": "failed", "error": e, "at": self.clock.now()}),
        };
        if let Some(Value::Object(more)) = detail {
            for (k, v) in more {
                outcome[k] = v;
            }
        }
        let patch = json!({"data": {"outcome.json": outcome.to_string()}});
        if let Err(e) = self
            .state_api()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(record = name, error = %e, "audit outcome not written");
        }
    }

    /// Keep the newest `audit_keep` records of the app.
    async fn trim_audit(&self, app: &Application) {
        let selector = audit_selector(&app.name, &app.namespace);
        crate::publish::keep_newest(&self.client, &self.namespace, &selector, self.audit_keep)
            .await;
    }

    /// The remaining error budget from Prometheus; unreadable is `Unavailable` (fail safe).
    async fn error_budget(
        &self,
        spec: &argo_drift_core::policy::ErrorBudgetSpec,
        app: &Application,
    ) -> Budget {
        let query = spec
            .query
            .replace("{{app}}", &format!("{}/{}", app.namespace, app.name))
            .replace("{{namespace}}", &app.namespace)
            .replace("{{name}}", &app.name);
        let url = format!("{}/api/v1/query", spec.prometheus_url.trim_end_matches('/'));
        let url = match reqwest::Url::parse_with_params(&url, &[("query", &query)]) {
            Ok(u) => u,
            Err(e) => return Budget::Unavailable(format!("prometheusUrl: {e}")),
        };
        let response = match self.http.get(url).send().await {
            Ok(r) => r,
            Err(e) => return Budget::Unavailable(format!("Prometheus: {}", e.without_url())),
        };
        let status = response.status();
        let body: Value = match response.json().await {
            Ok(b) => b,
            Err(e) => {
                return Budget::Unavailable(format!("Prometheus {status}: {}", e.without_url()))
            }
        };
        if body["status"] != "success" {
            return Budget::Unavailable(format!(
                "Prometheus {status}: {}",
                body["error"].as_str().unwrap_or("query failed")
            ));
        }
        // An instant vector or a scalar; the value is [time, "number"].
        let value = match body["data"]["resultType"].as_str() {
            Some("vector") => body["data"]["result"][0]["value"][1].as_str(),
            Some("scalar") => body["data"]["result"][1].as_str(),
            _ => None,
        };
        match value.and_then(|v| v.parse::<f64>().ok()) {
            Some(v) if v.is_finite() => Budget::Remaining(v),
            _ => Budget::Unavailable(format!("the query {query:?} returned no number")),
        }
    }
}

/// Argo CD's operations as the Application shows them: one requested (`operation`) or
/// running (`status.operationState.phase`), and the last one that ended, with the heal id
/// argo-drift put in its `info` if it was ours.
fn operation_view(object: &DynamicObject) -> OperationView {
    let state = object.data.pointer("/status/operationState");
    let phase = state
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let running = object.data.get("operation").is_some_and(|o| !o.is_null())
        || phase == "Running"
        || phase == "Terminating";
    // Argo CD's phases (pkg/apis/application/v1alpha1, OperationPhase): Running, Terminating,
    // Failed, Error, Succeeded.
    let last = matches!(phase, "Succeeded" | "Failed" | "Error").then(|| EndedOperation {
        heal_id: state
            .and_then(|s| s.pointer("/operation/info"))
            .and_then(Value::as_array)
            .and_then(|infos| {
                infos
                    .iter()
                    .find(|i| i.get("name").and_then(Value::as_str) == Some(HEAL_INFO))
            })
            .and_then(|i| i.get("value"))
            .and_then(Value::as_str)
            .map(str::to_string),
        succeeded: phase == "Succeeded",
        message: state
            .and_then(|s| s.get("message"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    });
    OperationView { running, last }
}

/// The human's answer among the Application's annotations (rejection, adopt, approve, in that
/// order): the one naming the current report, if any — an earlier report's answer stays on the
/// Application after it was taken —, else the first (the decision says it is stale). Between
/// answers to the same report a rejection wins, then adopt over approve (keeping the live
/// values is the more cautious of the two).
fn human_answer(answers: [Option<Answer>; 3], report_id: &str) -> Option<Answer> {
    let answers: Vec<Answer> = answers.into_iter().flatten().collect();
    answers
        .iter()
        .find(|a| a.report_id() == report_id)
        .or(answers.first())
        .cloned()
}

fn outcome(result: &Result<()>) -> &'static str {
    if result.is_ok() {
        "succeeded"
    } else {
        "failed"
    }
}

/// When to look again: the earliest end of a hold, escalation or expiry still ahead.
fn next_look(decision: &Decision, now: i64) -> Option<Duration> {
    let mut times: Vec<i64> = decision.held.iter().filter_map(|h| h.until).collect();
    if let Some(p) = &decision.pending_approval {
        times.push(p.expires_at);
        times.extend(p.escalate_at);
    }
    times
        .into_iter()
        .filter(|t| *t > now)
        .min()
        .map(|t| Duration::from_secs((t - now) as u64))
}

/// Labels of an audit record, for readers (and tests).
pub fn audit_selector(app: &str, app_namespace: &str) -> String {
    format!(
        "{AUDIT_TYPE_LABEL}={AUDIT_TYPE},argo-drift.io/app={},argo-drift.io/app-namespace={app_namespace}",
        label_value(app)
    )
}

/// Watch the Workflows argo-drift started in `namespace` and announce each one's end once
/// (marked on the Workflow, so that a restart or a new leader does not repeat it).
pub async fn watch_workflows(
    ctx: std::sync::Arc<crate::reconcile::Context>,
    client: Client,
    namespace: String,
) {
    use futures::StreamExt;
    use kube::runtime::{watcher, WatchStreamExt};
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, &workflow_resource());
    let config = watcher::Config::default().labels(WORKFLOW_APP_LABEL);
    let mut events = watcher(api.clone(), config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(item) = events.next().await {
        let workflow = match item {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(namespace = %namespace, error = %e, "watching Workflows");
                continue;
            }
        };
        let phase = workflow
            .data
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let reported = workflow
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(WORKFLOW_REPORTED_ANNOTATION));
        if reported || !matches!(phase.as_str(), "Succeeded" | "Failed" | "Error") {
            continue;
        }
        if let Err(e) = ctx.workflow_finished(&client, &workflow, &phase).await {
            tracing::warn!(error = %e, "could not report a finished Workflow");
            continue;
        }
        let name = workflow.metadata.name.clone().unwrap_or_default();
        let mark = json!({"metadata": {"annotations": {WORKFLOW_REPORTED_ANNOTATION: phase}}});
        if let Err(e) = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&mark))
            .await
        {
            tracing::warn!(workflow = %name, error = %e, "could not mark the Workflow as reported");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_to_the_current_report_wins_over_an_earlier_reports_left_behind() {
        let answer = |reject: Option<&str>, adopt: Option<&str>, approve: Option<&str>| {
            human_answer(
                [
                    reject.map(|i| Answer::Reject(i.into())),
                    adopt.map(|i| Answer::Adopt(i.into())),
                    approve.map(|i| Answer::Approve(i.into())),
                ],
                "r2",
            )
        };
        // r1's adopt or rejection still on the Application does not hide r2's approval.
        assert_eq!(
            answer(None, Some("r1"), Some("r2")),
            Some(Answer::Approve("r2".into()))
        );
        assert_eq!(
            answer(Some("r1"), None, Some("r2")),
            Some(Answer::Approve("r2".into()))
        );
        // Answers to the same report: reject, then adopt, then approve.
        assert_eq!(
            answer(Some("r2"), Some("r2"), Some("r2")),
            Some(Answer::Reject("r2".into()))
        );
        assert_eq!(
            answer(None, Some("r2"), Some("r2")),
            Some(Answer::Adopt("r2".into()))
        );
        // Only stale answers: the first, which the decision calls stale.
        assert_eq!(
            answer(None, Some("r1"), Some("r0")),
            Some(Answer::Adopt("r1".into()))
        );
        assert_eq!(answer(None, None, None), None);
    }
}
