//! One application, end to end: read it, render its desired state from Git (or Argo CD), read its
//! live objects from the shared watches, analyse with the core engine, publish the report.
//! The shape is kube-runtime's: `reconcile` returns an `Action`, `error_policy` decides retries.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use argo_drift_core::age::FirstSeen;
use argo_drift_core::agreement::{self, Agreement, ArgoCdResource};
use argo_drift_core::argocd_cm::ArgoCdSettings;
use argo_drift_core::manifest::{index_by_key, Resource, ResourceKey};
use argo_drift_core::normalize::ignore::IgnoreRule;
use argo_drift_core::normalize::Prepared;
use argo_drift_core::report::{analyse, AnalyseOptions, DriftReport};
use argo_drift_core::{Policy, Severity, Status};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource as _;
use serde_json::Value;
use tracing::instrument;

use crate::application::{self, Application};
pub use crate::application::{compile_ignores, tracking_name};
use crate::argocd::{ArgoCd, ResourceDiff};
use crate::clusters::Clusters;
use crate::error::{Error, Result};
use crate::live::{value_to_prepared, AppRef, Kind, LiveState, WatchKey};
use crate::lock;
use crate::metrics::{labels, Metrics};
use crate::publish::{self, Envelope, Published, Publisher};
use crate::repo::Repos;
use argo_drift_cluster::discovery::place;
use argo_drift_notify::{ChangeLine, EventKind, Notification};

pub struct Settings {
    /// Analyse every application again this often even without a change (Git may move).
    pub resync: Duration,
    /// How long to wait for a new watch's first list.
    pub watch_timeout: Duration,
    /// Argo CD's own namespace: its applications are tracked by bare name, others as `ns_name`.
    pub control_plane_namespace: String,
}

pub struct Context {
    pub settings: Settings,
    pub policy: RwLock<Arc<Policy>>,
    pub repos: Arc<Repos>,
    pub argocd: Option<ArgoCd>,
    /// Destination clusters, each with its live state.
    pub clusters: Clusters,
    pub publisher: Publisher,
    pub metrics: Arc<Metrics>,
    /// Argo CD's repository credentials and SSH known hosts.
    pub git: GitSettings,
    /// Slack, PagerDuty and email, when `--notifications` is given.
    pub notifier: Option<argo_drift_notify::dispatch::Notifier>,
    /// Decisions and actions (a no-op in observe mode).
    pub remediator: crate::remediate::Remediator,
    /// The earliest live change not yet reflected in an application's report.
    pub pending: Mutex<HashMap<AppRef, Instant>>,
    published: Mutex<HashMap<AppRef, Published>>,
    /// Applications analysed at least once (for readiness).
    pub reconciled: Mutex<HashSet<AppRef>>,
    /// Failed analyses in a row, per application.
    failures: Mutex<HashMap<AppRef, u32>>,
    /// Argo CD's `argocd-cm`, for the settings argo-drift follows.
    pub argocd_cm: Option<Store<ConfigMap>>,
    /// Which applications this replica works on (all of them unless sharded).
    pub shards: Arc<crate::leader::Shards>,
    /// The API servers' audit events, when received (`--audit-webhook-addr`, `--audit-log`).
    pub audit: Option<Arc<crate::audit::Trails>>,
    /// How long an analysis with new drift waits for its audit events.
    pub audit_wait: Duration,
    /// Argo CD's settings read from `argocd-cm`, by its resourceVersion.
    argocd_settings: Mutex<Option<(String, Arc<ArgoCdSettings>)>>,
    /// The policy with those settings' tracking, for the settings and policy it was made from.
    effective: Mutex<Option<Effective>>,
}

/// What Git access Argo CD has configured, as watched: its repository Secrets
/// (`argocd.argoproj.io/secret-type: repository|repo-creds`) and `argocd-ssh-known-hosts-cm`.
/// The analyses read repositories with it, and the `adopt` action pushes with it.
#[derive(Clone, Default)]
pub struct GitSettings {
    pub repo_secrets: Option<Store<Secret>>,
    pub known_hosts: Option<Store<ConfigMap>>,
}

impl GitSettings {
    pub fn repo_secrets(&self) -> Vec<Secret> {
        self.repo_secrets
            .as_ref()
            .map(|s| s.state().iter().map(|s| (**s).clone()).collect())
            .unwrap_or_default()
    }

    /// The `ssh_known_hosts` text of Argo CD's known-hosts ConfigMap (empty when there is none).
    pub fn known_hosts(&self) -> String {
        self.known_hosts
            .as_ref()
            .and_then(|s| s.state().into_iter().next())
            .and_then(|cm| cm.data.as_ref()?.get("ssh_known_hosts").cloned())
            .unwrap_or_default()
    }
}

/// The policy an analysis uses: `policy` with Argo CD's tracking `settings` applied.
struct Effective {
    settings: Arc<ArgoCdSettings>,
    policy: Arc<Policy>,
    effective: Arc<Policy>,
}

/// After this many failed analyses in a row, a transient failure is published on the app.
const TRANSIENT_FAILURES_REPORTED: u32 = 3;

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        policy: Policy,
        repos: Arc<Repos>,
        argocd: Option<ArgoCd>,
        clusters: Clusters,
        publisher: Publisher,
        metrics: Arc<Metrics>,
        repo_secrets: Option<Store<Secret>>,
        known_hosts: Option<Store<ConfigMap>>,
        notifier: Option<argo_drift_notify::dispatch::Notifier>,
        remediator: crate::remediate::Remediator,
    ) -> Context {
        Context {
            settings,
            policy: RwLock::new(Arc::new(policy)),
            repos,
            argocd,
            clusters,
            publisher,
            metrics,
            git: GitSettings {
                repo_secrets,
                known_hosts,
            },
            notifier,
            remediator,
            pending: Mutex::default(),
            published: Mutex::default(),
            reconciled: Mutex::default(),
            failures: Mutex::default(),
            argocd_cm: None,
            shards: crate::leader::Shards::whole("argo-drift"),
            audit: None,
            audit_wait: Duration::ZERO,
            argocd_settings: Mutex::default(),
            effective: Mutex::default(),
        }
    }

    /// Argo CD's settings from `argocd-cm` (Argo CD's defaults without it), parsed once per
    /// version of the ConfigMap. A setting Argo CD could not read either fails the analysis
    /// with the key named: argo-drift must not page about what the user told Argo CD to ignore.
    pub fn argocd_settings(&self) -> Result<Arc<ArgoCdSettings>> {
        let Some(cm) = self
            .argocd_cm
            .as_ref()
            .and_then(|s| s.state().into_iter().next())
        else {
            return Ok(Arc::new(ArgoCdSettings::default()));
        };
        let version = cm.metadata.resource_version.clone().unwrap_or_default();
        if let Some((v, settings)) = lock(&self.argocd_settings).as_ref() {
            if *v == version {
                return Ok(settings.clone());
            }
        }
        let settings = Arc::new(argo_drift_cluster::settings::from_configmap(&cm)?);
        *lock(&self.argocd_settings) = Some((version, settings.clone()));
        Ok(settings)
    }

    /// The policy with Argo CD's tracking settings over its own (Argo CD's are the baseline),
    /// and those settings; followed on every analysis, so a change needs no restart.
    pub fn effective_policy(&self) -> Result<(Arc<Policy>, Arc<ArgoCdSettings>)> {
        let settings = self.argocd_settings()?;
        let policy = self.policy();
        if let Some(e) = lock(&self.effective).as_ref() {
            if Arc::ptr_eq(&e.settings, &settings) && Arc::ptr_eq(&e.policy, &policy) {
                return Ok((e.effective.clone(), settings));
            }
        }
        let mut tracking = policy.tracking.clone();
        settings.apply_tracking(&mut tracking);
        let effective = if tracking == policy.tracking {
            policy.clone()
        } else {
            let mut effective = (*policy).clone();
            effective.tracking = tracking;
            Arc::new(effective)
        };
        *lock(&self.effective) = Some(Effective {
            settings: settings.clone(),
            policy,
            effective: effective.clone(),
        });
        Ok((effective, settings))
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    /// Drop everything kept for applications that are gone: their interest in live objects, the
    /// watches only they needed, their state, and their gauges (a deleted app must not keep
    /// alerting on drift).
    /// Forget the applications not in `alive` (deleted, or no longer opted in) and return them;
    /// the caller deletes their reports.
    ///
    /// Sharded, `owned` are the apps of `alive` this replica works on: the others it worked on
    /// before are handed over (their state and gauges dropped, no notification, the report
    /// left to the new owner) and not returned.
    pub fn forget_missing(&self, alive: &HashSet<AppRef>, owned: &HashSet<AppRef>) -> Vec<AppRef> {
        let mut forgotten = self.clusters.retain_apps(owned);
        // Apps never analysed here still hold nothing but may be in the readiness set.
        lock(&self.reconciled).retain(|a| owned.contains(a));
        let handed_over: Vec<AppRef> = forgotten
            .iter()
            .filter(|a| alive.contains(*a))
            .cloned()
            .collect();
        forgotten.retain(|a| !alive.contains(a));
        for app in &handed_over {
            let (name, _) = self.drop_app(app);
            tracing::info!(app = %name, "application handed over to another replica");
        }
        for app in &forgotten {
            let (name, published) = self.drop_app(app);
            // An open page must not stay open.
            if let (Some(notifier), Some(incident)) =
                (&self.notifier, published.and_then(|p| p.incident))
            {
                let empty = DriftReport {
                    summary: Default::default(),
                    resources: Vec::new(),
                };
                notifier.notify(notification(
                    EventKind::DriftResolved,
                    &name,
                    &incident,
                    "the application was deleted",
                    &empty,
                ));
            }
            tracing::info!(app = %name, "application gone: forgotten");
        }
        forgotten
    }

    /// Drop what is kept for `app` here (gone, or handed over to another replica): its pending
    /// change, published state, failures, gauges and cached guardrail state. Returns its
    /// `namespace/name` and what was last published.
    fn drop_app(&self, app: &AppRef) -> (String, Option<Published>) {
        lock(&self.pending).remove(app);
        let published = lock(&self.published).remove(app);
        lock(&self.failures).remove(app);
        lock(&self.reconciled).remove(app);
        let name = format!(
            "{}/{}",
            app.namespace.as_deref().unwrap_or_default(),
            app.name
        );
        self.forget_gauges(&name);
        self.remediator.let_go(&name);
        (name, published)
    }

    /// Drop an application's gauges: gone, or exported by the replica it was handed over to.
    fn forget_gauges(&self, name: &str) {
        self.metrics.drift_ages.remove(name);
        for severity in Severity::ALL {
            self.metrics
                .drifted_resources
                .remove(&labels(&[("app", name), ("severity", severity.as_str())]));
        }
        for class in agreement::Class::DISAGREEMENTS {
            self.metrics
                .argocd_disagreements
                .remove(&labels(&[("app", name), ("class", class.as_str())]));
        }
    }

    /// Note a live change for an application; the oldest one counts for latency.
    pub fn note_change(&self, app: &AppRef, seen: Instant) {
        lock(&self.pending).entry(app.clone()).or_insert(seen);
    }
}

fn app_ref(object: &DynamicObject) -> AppRef {
    ObjectRef::from_obj_with(object, application::api_resource())
}

#[instrument(skip_all, fields(app = %app_ref(&object)))]
pub async fn reconcile(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let app = app_ref(&object);
    let since = lock(&ctx.pending).remove(&app);
    let started = Instant::now();
    let result = analyse_app(&object, &app, &ctx).await;
    lock(&ctx.reconciled).insert(app.clone());
    match result {
        Ok(sooner) => {
            lock(&ctx.failures).remove(&app);
            ctx.metrics
                .reconciles
                .get_or_create(&labels(&[("result", "ok")]))
                .inc();
            if let Some(since) = since {
                ctx.metrics
                    .detection_latency
                    .observe(since.elapsed().as_secs_f64());
            }
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "analysed"
            );
            // An incident waiting out its resolve hold is looked at again when the hold ends.
            let after = sooner.map_or(ctx.settings.resync, |s| s.min(ctx.settings.resync));
            Ok(Action::requeue(after))
        }
        Err(e) => {
            ctx.metrics
                .reconciles
                .get_or_create(&labels(&[("result", "error")]))
                .inc();
            ctx.metrics
                .reconcile_errors
                .get_or_create(&labels(&[("category", e.category())]))
                .inc();
            if let Some(since) = since {
                ctx.note_change(&app, since);
            }
            let failures = {
                let mut f = lock(&ctx.failures);
                let n = f.entry(app.clone()).or_insert(0);
                *n += 1;
                *n
            };
            // Invalid input at once; a transient failure (Git unreachable, credentials refused,
            // Argo CD down) once it has lasted a few attempts, so that a blip stays quiet.
            if !e.is_transient() || failures >= TRANSIENT_FAILURES_REPORTED {
                // Said once on the application itself, where its owners look.
                if let Err(pe) = publish_failure(&object, &app, &ctx, &e).await {
                    tracing::warn!(error = %pe, "could not publish the failure");
                }
            }
            Err(e)
        }
    }
}

/// Transient failures retry with a growing delay (1 s, 2 s, 4 s, … up to 5 minutes, plus
/// jitter so that many failing applications do not retry in lockstep); invalid input waits for
/// the next change of the Application (or Git, at the next resync).
pub fn error_policy(object: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
    let app = app_ref(&object);
    tracing::warn!(app = %app, category = error.category(), error = %error, "analysis failed");
    if !error.is_transient() {
        return Action::requeue(ctx.settings.resync);
    }
    let failures = lock(&ctx.failures).get(&app).copied().unwrap_or(1);
    Action::requeue(retry_delay(failures, jitter_ms()))
}

fn retry_delay(failures: u32, jitter_ms: u64) -> Duration {
    let base = Duration::from_secs(1u64 << failures.saturating_sub(1).min(9));
    base.min(Duration::from_secs(300)) + Duration::from_millis(jitter_ms % 1000)
}

/// Up to a second of jitter; the clock's nanoseconds are random enough to spread retries.
fn jitter_ms() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos / 1_000_000)
}

/// Analyse one application and publish the result; `Some(d)`: look again after `d` (an
/// incident is waiting out its resolve hold).
async fn analyse_app(
    object: &DynamicObject,
    app_ref: &AppRef,
    ctx: &Context,
) -> Result<Option<Duration>> {
    let app = Application::parse(object)?;
    // Fail closed: where no report can be written, nothing is compared and nothing is done.
    if !ctx.publisher.may_publish_in(&app.namespace).await? {
        return Err(Error::ReportForbidden {
            namespace: app.namespace.clone(),
        });
    }
    // The destination cluster, as Argo CD finds it (once Argo CD's cluster Secrets and
    // argocd-cm are listed); one that does not answer fails the analysis here, said as such on
    // the app, before anything is compared or done.
    let cluster = ctx.clusters.resolve(&app, app_ref).await?;
    cluster.usable().await?;
    let live_state = &cluster.live;
    let (policy, argocd) = ctx.effective_policy()?;
    ctx.clusters.set_tracking(&policy.tracking);
    // Argo CD's own ignore rules (argocd-cm) first, then the app's.
    let mut app_ignore: Vec<IgnoreRule> = argocd.ignore_rules.clone();
    app_ignore.extend(compile_ignores(&app)?);
    let (resources, revision) = desired(&app, ctx).await?;
    // Kinds Argo CD does not manage on this cluster (resource.exclusions/inclusions) are not
    // compared: Argo CD drops them from the target state with an ExcludedResourceWarning
    // (controller/state.go CompareAppState).
    let (resources, excluded): (Vec<_>, Vec<_>) = resources.into_iter().partition(|r| {
        !argocd
            .resources
            .is_excluded(&r.key.group, &r.key.kind, &cluster.server)
    });
    for r in &excluded {
        tracing::debug!(resource = %r.key, "excluded in Argo CD's settings: not compared");
    }

    // Kinds and namespaces as this cluster serves them (shared with the PreSync hook).
    let placed = match place(
        live_state.kinds(),
        resources,
        &policy.tracking,
        &app.destination_namespace,
    )
    .await
    {
        Ok(placed) => placed,
        Err(e) => return Err(cluster.explain(e).await),
    };
    let mut prepared = Vec::with_capacity(placed.len());
    let mut needed: BTreeMap<String, (Arc<Kind>, WatchKey)> = BTreeMap::new();
    for (p, kind) in placed {
        let key = WatchKey {
            group: kind.resource.group.clone(),
            version: kind.resource.version.clone(),
            kind: kind.resource.kind.clone(),
            namespace: kind.namespaced.then(|| p.key.namespace.clone()),
        };
        needed.entry(key.to_string()).or_insert((kind, key));
        prepared.push(p);
    }
    let desired = index_by_key(prepared)?;
    let tracking_name = tracking_name(&app, &ctx.settings.control_plane_namespace);
    // Kinds Argo CD tracks for the app and Git does not have (objects it would prune): watched
    // too, so that argo-drift sees the extra objects Argo CD sees.
    let mut optional: BTreeMap<String, (Arc<Kind>, WatchKey)> = BTreeMap::new();
    let status = argocd_status(object);
    for (api_version, kind_name, namespace) in argocd_listed_kinds(&status) {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        if argocd
            .resources
            .is_excluded(group, &kind_name, &cluster.server)
        {
            continue;
        }
        let kind = match live_state.kind(&api_version, &kind_name).await {
            Ok(kind) => kind,
            Err(e) => {
                tracing::debug!(kind = %kind_name, error = %e, "a kind Argo CD lists for the app");
                continue;
            }
        };
        let key = WatchKey {
            group: kind.resource.group.clone(),
            version: kind.resource.version.clone(),
            kind: kind.resource.kind.clone(),
            namespace: kind.namespaced.then_some(namespace),
        };
        let id = key.to_string();
        if !needed.contains_key(&id) {
            optional.entry(id).or_insert((kind, key));
        }
    }
    let needed: Vec<_> = needed.into_values().collect();
    let optional: Vec<_> = optional.into_values().collect();
    // Audit events name objects by resource (plural).
    let plurals: HashMap<(String, String), String> = needed
        .iter()
        .chain(&optional)
        .map(|(kind, _)| {
            let r = &kind.resource;
            ((r.group.clone(), r.kind.clone()), r.plural.clone())
        })
        .collect();
    let watch_keys: Vec<WatchKey> = needed
        .iter()
        .chain(&optional)
        .map(|(_, k)| k.clone())
        .collect();
    if let Err(e) = live_state
        .register(
            app_ref,
            &tracking_name,
            desired.keys().cloned().collect(),
            needed,
            optional,
            ctx.settings.watch_timeout,
        )
        .await
    {
        return Err(cluster.explain(e).await);
    }
    // Watches keep their last list while a cluster is away: a cluster lost since the last
    // probe is not compared on stale objects.
    cluster.usable().await?;

    let live = live_objects(live_state, &watch_keys, &desired, &tracking_name, &policy)?;
    // Argo CD's own comparison: its word on each resource (the agreement), and on Secret values
    // its manifests API masked.
    let managed = match &ctx.argocd {
        Some(argocd) => match argocd.managed_resources(&app.name, &app.namespace).await {
            Ok(diffs) => Some(diffs),
            Err(e) => {
                tracing::warn!(error = %e, "Argo CD's managed resources (agreement, masked Secrets)");
                None
            }
        },
        None => None,
    };
    let options = AnalyseOptions {
        app: Some(tracking_name),
        patches: true,
        text_diffs: false,
        app_ignore: Arc::new(app_ignore),
        sensitive_annotations: Arc::new(argocd.sensitive_annotations.clone()),
        argocd_secret_differences: managed.as_deref().map(|m| Arc::new(secret_differences(m))),
        known_types: argocd.known_types.clone(),
    };
    let mut report = analyse(desired, &live, &policy, &options);
    // Once per analysis: it serialises the drifted part of the report.
    let fingerprint = publish::fingerprint(&report);
    // Argo CD's own word on each resource, next to ours (not part of the drift's identity).
    let argocd_view = argocd_resources(status, managed);
    let agreement = agreement::compare(&mut report, &argocd_view);
    // Each drift dated by the report before (this process's, or the ConfigMap's after a restart
    // or a hand-over): not part of the drift's identity, so after the fingerprint.
    let before = previous(ctx, app_ref, &app.namespace, &app.name).await?;
    let analysed_at = chrono::Utc::now();
    let first_seen = before.first_seen.stamp(&mut report, analysed_at);
    // Who changed each drift, from the API server's audit events: not part of the drift's
    // identity either. New drift waits a little for its events, so that the Event and the
    // notifications name the person too.
    if let Some(trails) = &ctx.audit {
        let wait = if before.fingerprint.is_empty() {
            Duration::ZERO
        } else {
            ctx.audit_wait
        };
        name_writers(trails, &cluster, &mut report, &plurals, analysed_at, wait).await;
    }
    let outcome = ctx
        .remediator
        .run(
            object,
            &app,
            &report,
            &fingerprint,
            &policy.remediation,
            &ctx.metrics,
            crate::remediate::Analysed {
                revision: revision.as_deref(),
            },
        )
        .await?;
    let analysed = Analysed {
        report: &report,
        fingerprint: &fingerprint,
        revision: revision.as_deref(),
        decision: Some(&outcome.decision),
        agreement: Some(&agreement),
    };
    let sooner = publish_report(object, app_ref, &app, ctx, &analysed, before, first_seen).await?;
    announce(
        object,
        app_ref,
        &app,
        ctx,
        &analysed,
        &outcome.announcements,
    )
    .await;
    Ok(match (sooner, outcome.next_look) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Name who changed each drift of `report` from `trails`; while a field that drifted in this
/// analysis (first seen `now`, changed in the last two minutes by managedFields) has no writer,
/// look again every 200 ms, for up to `wait`. A cluster no source can bring events of (no
/// webhook receiver, no audit log of that cluster) is not waited for.
async fn name_writers(
    trails: &crate::audit::Trails,
    cluster: &argo_drift_cluster::clusters::Cluster,
    report: &mut DriftReport,
    plurals: &HashMap<(String, String), String>,
    now: chrono::DateTime<chrono::Utc>,
    wait: Duration,
) {
    let started = Instant::now();
    let first_seen_now = argo_drift_core::age::format_time(now);
    let recent = now - chrono::Duration::minutes(2);
    loop {
        let named = trails.attribute(&cluster.name, &cluster.server, report, |group, kind| {
            plurals.get(&(group.to_string(), kind.to_string())).cloned()
        });
        if named.is_none() {
            return;
        }
        let unnamed = report
            .resources
            .iter()
            .filter(|r| r.status == argo_drift_core::Status::Modified)
            .flat_map(|r| &r.changes)
            .any(|c| {
                c.changed_by.is_none()
                    && c.first_seen.as_deref() == Some(first_seen_now.as_str())
                    && c.time
                        .as_deref()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .is_none_or(|t| t >= recent)
            });
        if !unnamed || started.elapsed() >= wait {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    trails.count(report);
}

/// Say what remediation did or asks for: an Event on the Application and a notification in
/// the app's current incident.
async fn announce(
    object: &DynamicObject,
    app_ref: &AppRef,
    app: &Application,
    ctx: &Context,
    analysed: &Analysed<'_>,
    announcements: &[crate::remediate::Announcement],
) {
    let report = analysed.report;
    if announcements.is_empty() {
        return;
    }
    let owner = owner_reference(object);
    let app_name = format!("{}/{}", app.namespace, app.name);
    let incident = lock(&ctx.published)
        .get(app_ref)
        .and_then(|p| p.incident.clone())
        .unwrap_or_else(|| (analysed.fingerprint.to_string(), Severity::None));
    for a in announcements {
        let type_ = if a.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        if let Err(e) = ctx
            .publisher
            .event(&owner, type_, a.reason, a.message.clone())
            .await
        {
            tracing::warn!(error = %e, reason = a.reason, "event not written");
        }
        ctx.metrics
            .events_emitted
            .get_or_create(&labels(&[("reason", a.reason)]))
            .inc();
        if let Some(notifier) = &ctx.notifier {
            let mut n = notification(a.kind, &app_name, &incident, &a.message, report);
            n.severity = n.severity.max(a.severity);
            n.decision = Some(a.message.clone());
            notifier.notify(n);
        }
    }
}

/// The Application's `status.resources`: what Argo CD says of each resource, with its
/// apiVersion.
fn argocd_status(object: &DynamicObject) -> Vec<(ArgoCdResource, String)> {
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    object.data["status"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let (group, version) = (text(r, "group"), text(r, "version"));
            let api_version = if group.is_empty() {
                version
            } else {
                format!("{group}/{version}")
            };
            let resource = ArgoCdResource {
                key: ResourceKey {
                    group,
                    kind: text(r, "kind"),
                    namespace: text(r, "namespace"),
                    name: text(r, "name"),
                },
                status: text(r, "status"),
                requires_pruning: r["requiresPruning"].as_bool().unwrap_or(false),
                modified: None,
                hook: r["hook"].as_bool().unwrap_or(false),
            };
            (resource, api_version)
        })
        .collect()
}

/// (apiVersion, kind, namespace) of the app's resources Argo CD would prune: in its status, not
/// in Git.
fn argocd_listed_kinds(status: &[(ArgoCdResource, String)]) -> BTreeSet<(String, String, String)> {
    status
        .iter()
        .filter(|(r, _)| r.requires_pruning && !r.hook)
        .map(|(r, api_version)| {
            (
                api_version.clone(),
                r.key.kind.clone(),
                r.key.namespace.clone(),
            )
        })
        .collect()
}

/// What Argo CD says of the app's resources: its status, and with its API the managed-resources
/// diff (`modified`). A failing API call leaves the status alone: the agreement is a second
/// opinion, not a reason to fail the analysis.
fn argocd_resources(
    status: Vec<(ArgoCdResource, String)>,
    managed: Option<Vec<ResourceDiff>>,
) -> Vec<ArgoCdResource> {
    let mut out: Vec<ArgoCdResource> = status.into_iter().map(|(r, _)| r).collect();
    for d in managed.unwrap_or_default() {
        let key = ResourceKey {
            group: d.group,
            kind: d.kind,
            namespace: d.namespace,
            name: d.name,
        };
        match out.iter_mut().find(|r| r.key == key) {
            Some(r) => r.modified = Some(d.modified),
            None => out.push(ArgoCdResource {
                key,
                status: "Unknown".into(),
                requires_pruning: false,
                modified: Some(d.modified),
                hook: d.hook,
            }),
        }
    }
    out
}

/// Per Secret of Argo CD's managed-resources diff, the `data` keys whose masks differ between
/// its target and live states. Argo CD masks both together (gitops-engine pkg/diff
/// HideSecretData, called by server/application ManagedResources), one run of `+` per distinct
/// value of a key, so the masks differ exactly when the values do.
fn secret_differences(diffs: &[ResourceDiff]) -> BTreeMap<ResourceKey, BTreeSet<String>> {
    let data = |text: &str| -> Option<serde_json::Map<String, Value>> {
        let v: Value = serde_json::from_str(text).ok()?;
        v.get("data")?.as_object().cloned()
    };
    let mut out = BTreeMap::new();
    for d in diffs
        .iter()
        .filter(|d| d.group.is_empty() && d.kind == "Secret")
    {
        let (Some(target), Some(live)) = (data(&d.target_state), data(&d.live_state)) else {
            continue;
        };
        let differ: BTreeSet<String> = target
            .iter()
            .filter(|(k, v)| live.get(*k).is_some_and(|l| l != *v))
            .map(|(k, _)| k.clone())
            .collect();
        out.insert(
            ResourceKey {
                group: String::new(),
                kind: d.kind.clone(),
                namespace: d.namespace.clone(),
                name: d.name.clone(),
            },
            differ,
        );
    }
    out
}

/// The application's manifests and the revision they were read at.
async fn desired(app: &Application, ctx: &Context) -> Result<(Vec<Resource>, Option<String>)> {
    let secrets = ctx.git.repo_secrets();
    let sources = crate::desired::Sources {
        repos: ctx.repos.clone(),
        argocd: ctx.argocd.as_ref(),
        repo_secrets: &secrets,
        known_hosts: ctx.git.known_hosts(),
    };
    sources.render(app, None).await
}

/// The live objects the analysis needs: the counterparts of desired objects and whatever the
/// application's tracking marks claim.
fn live_objects(
    live_state: &LiveState,
    watches: &[WatchKey],
    desired: &BTreeMap<ResourceKey, Prepared>,
    tracking_name: &str,
    policy: &Policy,
) -> Result<BTreeMap<ResourceKey, Prepared>> {
    let mut live = BTreeMap::new();
    for w in watches {
        for o in live_state.objects(w) {
            let key = ResourceKey {
                group: w.group.clone(),
                kind: w.kind.clone(),
                namespace: o.metadata.namespace.to_string(),
                name: o.metadata.name.to_string(),
            };
            if !desired.contains_key(&key) && !tracked_by(&o.metadata, tracking_name, policy) {
                continue;
            }
            if o.metadata.label(publish::REPORT_LABEL).is_some() {
                continue; // our own reports are never part of an application
            }
            live.insert(
                key,
                value_to_prepared(o.value(), &w.api_version(), &w.kind, &policy.tracking)?,
            );
        }
    }
    Ok(live)
}

fn tracked_by(o: &crate::live::Meta, app: &str, policy: &Policy) -> bool {
    crate::live::tracking_names(o, &policy.tracking).any(|n| n == app)
}

impl Context {
    /// A Workflow argo-drift started has ended: an Event on its Application and a
    /// notification (action-taken when it succeeded, action-held otherwise).
    pub async fn workflow_finished(
        &self,
        client: &kube::Client,
        workflow: &DynamicObject,
        phase: &str,
    ) -> Result<()> {
        let label = |k: &str| {
            workflow
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(k))
                .cloned()
                .unwrap_or_default()
        };
        // The full name is in the annotation (Workflows started before it only have the label).
        let name = workflow
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::remediate::WORKFLOW_APP_ANNOTATION))
            .cloned()
            .unwrap_or_else(|| label(crate::remediate::WORKFLOW_APP_LABEL));
        let namespace = label(crate::remediate::WORKFLOW_APP_NAMESPACE_LABEL);
        // Sharded: the replica that works on the app says how its Workflow ended.
        if !self.shards.owns(&format!("{namespace}/{name}")) {
            return Ok(());
        }
        let wf = format!(
            "{}/{}",
            workflow.metadata.namespace.as_deref().unwrap_or_default(),
            workflow.metadata.name.as_deref().unwrap_or_default()
        );
        let apps: kube::Api<DynamicObject> =
            kube::Api::namespaced_with(client.clone(), &namespace, &application::api_resource());
        let app = apps.get(&name).await.map_err(Error::kube(format!(
            "reading Application {namespace}/{name}"
        )))?;
        let message = workflow
            .data
            .pointer("/status/message")
            .and_then(Value::as_str)
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let (kind, reason, type_) = if phase == "Succeeded" {
            (
                EventKind::ActionTaken,
                "DriftWorkflowSucceeded",
                EventType::Normal,
            )
        } else {
            (
                EventKind::ActionHeld,
                "DriftWorkflowFailed",
                EventType::Warning,
            )
        };
        let note = format!("Workflow {wf} {}{message}", phase.to_lowercase());
        self.publisher
            .event(&owner_reference(&app), type_, reason, note.clone())
            .await?;
        self.metrics
            .events_emitted
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
        self.metrics
            .actions
            .get_or_create(&labels(&[
                ("action", "workflow"),
                ("outcome", &phase.to_lowercase()),
            ]))
            .inc();
        if let Some(notifier) = &self.notifier {
            let app_ref = ObjectRef::from_obj_with(&app, application::api_resource());
            let incident = lock(&self.published)
                .get(&app_ref)
                .and_then(|p| p.incident.clone())
                .unwrap_or_else(|| (wf.clone(), Severity::Medium));
            let empty = DriftReport {
                summary: Default::default(),
                resources: Vec::new(),
            };
            let mut n = notification(
                kind,
                &format!("{namespace}/{name}"),
                &incident,
                &note,
                &empty,
            );
            n.decision = Some(note);
            notifier.notify(n);
        }
        Ok(())
    }
}

fn owner_reference(object: &DynamicObject) -> ObjectReference {
    object.object_ref(&application::api_resource())
}

/// What was last published for an application: from this process's memory, else from the
/// report ConfigMap an earlier run (or another replica) wrote.
async fn previous(
    ctx: &Context,
    app_ref: &AppRef,
    namespace: &str,
    name: &str,
) -> Result<Published> {
    let cached = lock(&ctx.published).get(app_ref).cloned();
    if let Some(p) = cached {
        return Ok(p);
    }
    Ok(ctx
        .publisher
        .previous(namespace, name)
        .await?
        .unwrap_or_default())
}

/// What happens to the incident of an application given its drift now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IncidentStep {
    /// No incident before or now.
    None,
    /// First drift: a new incident with this id.
    Opened((String, Severity)),
    /// Drift goes on (or came back within the hold): same incident.
    Continued((String, Severity)),
    /// Drift is gone; the incident stays open until the hold has passed.
    Holding {
        incident: (String, Severity),
        since: Timestamp,
        remaining: Duration,
    },
    /// Drift has stayed gone for the hold: the incident closes.
    Resolved((String, Severity)),
}

/// Flap damping: a drift that goes away is not resolved until it has stayed away for `hold`;
/// one that comes back sooner continues the incident it had, so a flapping field opens one
/// incident (one page) instead of one per flap.
fn incident_step(
    before: &Published,
    drifted: Option<Severity>,
    fingerprint: &str,
    now: Timestamp,
    hold: Duration,
) -> IncidentStep {
    match (drifted, &before.incident) {
        (Some(s), Some((id, was))) => IncidentStep::Continued((id.clone(), (*was).max(s))),
        (Some(s), None) => IncidentStep::Opened((fingerprint.to_string(), s)),
        (None, None) => IncidentStep::None,
        (None, Some(incident)) => {
            let since = before.resolving_since.unwrap_or(now);
            let gone = now
                .duration_since(since)
                .try_into()
                .unwrap_or(Duration::ZERO);
            match hold.checked_sub(gone) {
                Some(remaining) if !remaining.is_zero() => IncidentStep::Holding {
                    incident: incident.clone(),
                    since,
                    remaining,
                },
                _ => IncidentStep::Resolved(incident.clone()),
            }
        }
    }
}

/// One analysis' result, as the publishing steps take it.
struct Analysed<'a> {
    report: &'a DriftReport,
    /// `publish::fingerprint(report)`: the drift's identity (and the report id approvals name).
    fingerprint: &'a str,
    revision: Option<&'a str>,
    decision: Option<&'a argo_drift_core::policy::Decision>,
    agreement: Option<&'a Agreement>,
}

async fn publish_report(
    object: &DynamicObject,
    app_ref: &AppRef,
    app: &Application,
    ctx: &Context,
    analysed: &Analysed<'_>,
    before: Published,
    first_seen: FirstSeen,
) -> Result<Option<Duration>> {
    let Analysed {
        report,
        revision,
        decision,
        agreement,
        ..
    } = *analysed;
    let fingerprint = analysed.fingerprint.to_string();
    let drifted_severity = publish::drift_severity(report);
    let severity = drifted_severity.map_or_else(|| "none".to_string(), |s| s.to_string());
    let drifted = drifted_severity.is_some();
    let oldest = first_seen.oldest_by_severity(report);
    update_gauges(ctx, app, report, agreement, &oldest);
    // One incident from the first drift until it is resolved; its id is the first fingerprint.
    let hold = ctx
        .notifier
        .as_ref()
        .map_or(Duration::ZERO, |n| n.resolve_hold());
    let step = incident_step(
        &before,
        drifted_severity,
        &fingerprint,
        Timestamp::now(),
        hold,
    );
    // When the incident began: now for a new one; kept while it goes on (now for one opened
    // before argo-drift kept this).
    let opened = match &step {
        IncidentStep::Opened(_) => Some(Timestamp::now()),
        IncidentStep::Continued(_) | IncidentStep::Holding { .. } => {
            before.opened.or_else(|| Some(Timestamp::now()))
        }
        IncidentStep::None | IncidentStep::Resolved(_) => None,
    };
    let (incident, resolving_since, sooner) = match &step {
        IncidentStep::Opened(i) | IncidentStep::Continued(i) => (Some(i.clone()), None, None),
        IncidentStep::Holding {
            incident,
            since,
            remaining,
        } => (Some(incident.clone()), Some(*since), Some(*remaining)),
        IncidentStep::None | IncidentStep::Resolved(_) => (None, None, None),
    };
    // Drift that has outlived its severity's limit, announced once per incident and severity;
    // the app is looked at again when the next limit falls due.
    let stale = match (&ctx.notifier, &incident) {
        (Some(notifier), Some(_)) => stale_drift(
            &oldest,
            |s| notifier.stale_after(s),
            &before.stale,
            chrono::Utc::now(),
        ),
        _ => Stale::default(),
    };
    let sooner = match (sooner, stale.next) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let app_name = format!("{}/{}", app.namespace, app.name);
    let envelope = Envelope {
        application: &app.name,
        namespace: &app.namespace,
        revision,
        error: None,
        truncated: None,
        notification_failures: ctx
            .notifier
            .as_ref()
            .and_then(|n| n.last_failure(&app_name)),
        pending_approval: decision.and_then(|d| d.pending_approval.as_ref()),
        decision,
        agreement,
        report,
    };
    let text_hash = publish::fingerprint_text(&envelope);
    let now = Published {
        fingerprint: fingerprint.clone(),
        drifted,
        incident: incident.clone(),
        resolving_since,
        opened,
        text_hash: Some(text_hash),
        first_seen,
        stale: stale.announced.clone(),
    };
    if before.text_hash == now.text_hash
        && before.stale == now.stale
        && before.fingerprint == now.fingerprint
        && before.incident == now.incident
        && before.resolving_since == now.resolving_since
        && before.opened == now.opened
    {
        return Ok(sooner); // nothing new: no write, no Event
    }
    let owner = owner_reference(object);
    let summary = if drifted {
        publish::drift_message(report)
    } else {
        format!("all {} resources match Git", report.summary.resources)
    };
    ctx.publisher
        .write_report(
            &owner,
            &envelope,
            &publish::ReportMeta {
                severity_label: &severity,
                fingerprint: &fingerprint,
                incident: incident.as_ref(),
                resolving_since,
                opened,
                stale: &now.stale,
                first_seen: None,
                summary: &publish::short_summary(&summary),
            },
        )
        .await?;
    let held = |g: argo_drift_core::policy::Guardrail| {
        decision.is_some_and(|d| d.held.iter().any(|h| h.guardrail == g))
    };
    let wanted = publish::AppAnnotations {
        severity: severity.clone(),
        summary,
        report_id: drifted.then(|| fingerprint.clone()),
        pending_approval: decision
            .and_then(|d| d.pending_approval.as_ref())
            .map(|p| p.id.clone()),
        stopped: if held(argo_drift_core::policy::Guardrail::Frozen) {
            Some("frozen".into())
        } else if held(argo_drift_core::policy::Guardrail::RecurrenceBreaker) {
            Some("recurrence-breaker".into())
        } else {
            None
        },
    };
    if let Err(e) = ctx.publisher.annotate_application(object, &wanted).await {
        // The report is written; the annotation only feeds the UI's health: say so, go on.
        tracing::warn!(error = %e, "could not annotate the Application with its drift summary");
    }
    // Drift the policy says to ignore is reported, not announced.
    let ignored = decision.is_some_and(|d| {
        !d.resources.is_empty()
            && d.resources
                .iter()
                .all(|r| r.actions == [argo_drift_core::policy::Action::Ignore])
    });
    if !ignored {
        notify(
            ctx,
            &app_name,
            &step,
            &before,
            &fingerprint,
            report,
            decision,
        );
        if let (Some(notifier), Some(incident)) = (&ctx.notifier, &incident) {
            for due in &stale.due {
                notifier.notify(stale_notification(&app_name, incident, due, report));
            }
        }
    }
    let event = if drifted && fingerprint != before.fingerprint {
        Some((
            EventType::Warning,
            "DriftDetected",
            publish::drift_message(report),
        ))
    } else if !drifted && before.drifted {
        Some((
            EventType::Normal,
            "DriftResolved",
            format!("all {} resources match Git again", report.summary.resources),
        ))
    } else {
        None
    };
    if let Some((type_, reason, note)) = event {
        tracing::info!(reason, severity = %severity, message = %note, "drift changed");
        ctx.publisher
            .event(&owner, type_, reason, note.clone())
            .await?;
        ctx.metrics
            .events_emitted
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }
    lock(&ctx.published).insert(app_ref.clone(), now);
    Ok(sooner)
}

/// A severity whose oldest drift has outlived its limit.
#[derive(Debug, Clone, PartialEq)]
struct StaleDrift {
    severity: Severity,
    age: Duration,
    limit: Duration,
}

/// What the stale-drift check of one analysis found.
#[derive(Debug, Default, PartialEq)]
struct Stale {
    /// Severities to announce now.
    due: Vec<StaleDrift>,
    /// The severities announced in the incident, these included, that still have drift (one
    /// whose drift went away and came back is announced again when the new drift outlives the
    /// limit).
    announced: BTreeSet<Severity>,
    /// When the next limit falls due.
    next: Option<Duration>,
}

/// The stale-drift check: for each severity's oldest drift (first seen at `oldest`), whether it
/// has outlived `limit` and was not announced yet (`announced`), at `now`.
fn stale_drift(
    oldest: &BTreeMap<Severity, chrono::DateTime<chrono::Utc>>,
    limit: impl Fn(Severity) -> Option<Duration>,
    announced: &BTreeSet<Severity>,
    now: chrono::DateTime<chrono::Utc>,
) -> Stale {
    let mut stale = Stale::default();
    for (&severity, &first) in oldest {
        let Some(limit) = limit(severity) else {
            continue;
        };
        if announced.contains(&severity) {
            stale.announced.insert(severity);
            continue;
        }
        // A first-seen time ahead of this clock (another replica's) counts as now.
        let age = (now - first).to_std().unwrap_or(Duration::ZERO);
        match limit.checked_sub(age) {
            Some(left) if !left.is_zero() => {
                stale.next = Some(stale.next.map_or(left, |n: Duration| n.min(left)));
            }
            _ => {
                stale.due.push(StaleDrift {
                    severity,
                    age,
                    limit,
                });
                stale.announced.insert(severity);
            }
        }
    }
    stale
}

/// `drift-stale`: the drift of one severity has lasted longer than its limit. It carries that
/// severity (routes pick channels by it) and that severity's fields, in the incident's id.
fn stale_notification(
    app: &str,
    incident: &(String, Severity),
    stale: &StaleDrift,
    report: &DriftReport,
) -> Notification {
    let whole = |d: Duration| {
        let seconds = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        format!(
            "{:#}",
            k8s_openapi::jiff::SignedDuration::from_secs(seconds)
        )
    };
    let summary = format!(
        "{} drift has lasted {} (limit {})",
        stale.severity,
        whole(stale.age),
        whole(stale.limit)
    );
    let mut n = notification(EventKind::DriftStale, app, incident, &summary, report);
    n.severity = stale.severity;
    n.changes.retain(|c| c.severity == stale.severity);
    n
}

/// Tell the notifier what the incident did: opened, changed (new drift, or drift back within
/// the hold — repeats fall in the notifier's dedup window), or resolved after the hold. A
/// resolution carries the incident's severity, so it takes the same routes as the page it
/// closes. Kubernetes Events, by contrast, follow the drift itself.
fn notify(
    ctx: &Context,
    app_name: &str,
    step: &IncidentStep,
    before: &Published,
    fingerprint: &str,
    report: &DriftReport,
    decision: Option<&argo_drift_core::policy::Decision>,
) {
    let Some(notifier) = &ctx.notifier else {
        return;
    };
    let new_drift = fingerprint != before.fingerprint;
    let (kind, incident, summary) = match step {
        IncidentStep::Opened(i) => (EventKind::DriftDetected, i, publish::drift_message(report)),
        IncidentStep::Continued(i) if new_drift => {
            (EventKind::DriftChanged, i, publish::drift_message(report))
        }
        IncidentStep::Resolved(i) => (
            EventKind::DriftResolved,
            i,
            format!("all {} resources match Git again", report.summary.resources),
        ),
        _ => return,
    };
    let mut n = notification(kind, app_name, incident, &summary, report);
    if let Some(d) = decision.filter(|_| kind != EventKind::DriftResolved) {
        n.decision = Some(describe_decision(d));
    }
    notifier.notify(n);
}

/// One line on what remediation decided, for a notification.
fn describe_decision(d: &argo_drift_core::policy::Decision) -> String {
    use argo_drift_core::policy::{Guardrail, Mode, Step};
    let mut parts: Vec<String> = d
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Heal { resources, .. } => Some(format!("heal {} resource(s)", resources.len())),
            Step::Freeze => Some("freeze (automated sync off)".into()),
            Step::Adopt { resources, .. } => Some(format!(
                "adopt {} resource(s) into Git (a branch, and a pull request with a forge)",
                resources.len()
            )),
            Step::RequestApproval { id, .. } => {
                Some(format!("approval requested (argo-drift.io/approve: {id})"))
            }
            Step::BreakerTripped { .. } => Some("recurrence breaker tripped".into()),
            _ => None,
        })
        .collect();
    parts.extend(
        d.held
            .iter()
            .filter(|h| h.guardrail != Guardrail::DryRun)
            .map(|h| format!("held by {}: {}", h.guardrail.as_str(), h.reason)),
    );
    let text = if parts.is_empty() {
        "reported".to_string()
    } else {
        parts.join("; ")
    };
    match d.mode {
        Mode::Observe => "reported (observe mode)".into(),
        Mode::DryRun => format!("dry-run, nothing done; would: {text}"),
        Mode::Enforce => text,
    }
}

/// What the notifier gets: the report's drifted fields, values already masked.
fn notification(
    kind: EventKind,
    app: &str,
    incident: &(String, Severity),
    summary: &str,
    report: &DriftReport,
) -> Notification {
    let mut changes = Vec::new();
    for r in report
        .resources
        .iter()
        .filter(|r| r.status != Status::Synced)
    {
        let resource = r.key().to_string();
        if r.changes.is_empty() {
            changes.push(ChangeLine {
                resource,
                field: format!("({})", r.status.as_str()),
                severity: r.severity,
                manager: None,
                live: None,
                changed_by: r.changed_by.as_deref().cloned(),
            });
            continue;
        }
        for c in &r.changes {
            changes.push(ChangeLine {
                resource: resource.clone(),
                field: c.field.clone(),
                severity: c.severity,
                manager: c.manager.clone(),
                live: c.live.as_ref().map(|v| v.to_string()),
                changed_by: c.changed_by.as_deref().cloned(),
            });
        }
    }
    changes.sort_by_key(|c| std::cmp::Reverse(c.severity));
    Notification {
        kind,
        app: app.to_string(),
        severity: incident.1,
        summary: summary.to_string(),
        changes,
        decision: Some("reported".into()),
        incident: format!("argo-drift/{app}/{}", incident.0),
        time: Timestamp::now().to_string(),
    }
}

fn update_gauges(
    ctx: &Context,
    app: &Application,
    report: &DriftReport,
    agreement: Option<&Agreement>,
    oldest: &BTreeMap<Severity, chrono::DateTime<chrono::Utc>>,
) {
    let name = format!("{}/{}", app.namespace, app.name);
    ctx.metrics.drift_ages.set(&name, oldest.clone());
    if let Some(agreement) = agreement {
        for class in agreement::Class::DISAGREEMENTS {
            let n = agreement.disagreements.get(&class).copied().unwrap_or(0);
            ctx.metrics
                .argocd_disagreements
                .get_or_create(&labels(&[("app", &name), ("class", class.as_str())]))
                .set(n as i64);
        }
    }
    let mut counts: BTreeMap<Severity, i64> = Severity::ALL.into_iter().map(|s| (s, 0)).collect();
    for r in report
        .resources
        .iter()
        .filter(|r| r.status != Status::Synced)
    {
        *counts.entry(r.severity).or_default() += 1;
    }
    for (severity, n) in counts {
        ctx.metrics
            .drifted_resources
            .get_or_create(&labels(&[("app", &name), ("severity", severity.as_str())]))
            .set(n);
    }
}

/// A failure that needs someone to change the Application or Git: written into the report
/// ConfigMap and said once as an Event, not on every retry.
async fn publish_failure(
    object: &DynamicObject,
    app_ref: &AppRef,
    ctx: &Context,
    error: &Error,
) -> Result<()> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let message = error.to_string();
    let fingerprint = format!("error:{}", publish::fingerprint_str(&message));
    let before = previous(ctx, app_ref, &namespace, &name).await?;
    if before.fingerprint == fingerprint {
        return Ok(());
    }
    let empty = DriftReport {
        summary: Default::default(),
        resources: Vec::new(),
    };
    let envelope = Envelope {
        application: &name,
        namespace: &namespace,
        revision: None,
        error: Some(message.clone()),
        truncated: None,
        notification_failures: None,
        pending_approval: None,
        decision: None,
        agreement: None,
        report: &empty,
    };
    let owner = owner_reference(object);
    ctx.publisher
        .write_report(
            &owner,
            &envelope,
            &publish::ReportMeta {
                severity_label: "unknown",
                fingerprint: &fingerprint,
                incident: before.incident.as_ref(),
                resolving_since: before.resolving_since,
                opened: before.opened,
                stale: &before.stale,
                first_seen: Some(&before.first_seen),
                summary: &publish::short_summary(&message),
            },
        )
        .await?;
    ctx.publisher
        .event(
            &owner,
            EventType::Warning,
            "DriftAnalysisFailed",
            format!("{}: {message}", error.category()),
        )
        .await?;
    ctx.metrics
        .events_emitted
        .get_or_create(&labels(&[("reason", "DriftAnalysisFailed")]))
        .inc();
    lock(&ctx.published).insert(
        app_ref.clone(),
        Published {
            fingerprint,
            drifted: before.drifted,
            incident: before.incident.clone(),
            resolving_since: before.resolving_since,
            opened: before.opened,
            text_hash: None,
            // Kept while the analysis fails: the drift has not been seen gone.
            first_seen: before.first_seen,
            stale: before.stale,
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_past_its_severitys_limit_is_due_once_and_the_next_limit_is_when_to_look_again() {
        let now = chrono::Utc::now();
        let ago = |minutes| now - chrono::Duration::minutes(minutes);
        let limit = |s| match s {
            Severity::Critical => Some(Duration::from_secs(15 * 60)),
            Severity::High => Some(Duration::from_secs(60 * 60)),
            _ => None,
        };
        let oldest = BTreeMap::from([
            (Severity::Critical, ago(16)),
            (Severity::High, ago(20)),
            (Severity::Low, ago(600)),
        ]);
        let stale = stale_drift(&oldest, limit, &BTreeSet::new(), now);
        assert_eq!(
            stale.due,
            [StaleDrift {
                severity: Severity::Critical,
                age: Duration::from_secs(16 * 60),
                limit: Duration::from_secs(15 * 60),
            }]
        );
        assert_eq!(stale.announced, BTreeSet::from([Severity::Critical]));
        assert_eq!(stale.next, Some(Duration::from_secs(40 * 60)));
        // Announced already: not again, and still remembered while that drift lasts.
        let again = stale_drift(&oldest, limit, &stale.announced, now);
        assert!(again.due.is_empty());
        assert_eq!(again.announced, stale.announced);
        // The critical drift went away: forgotten, so a new one is announced when it is due.
        let without = BTreeMap::from([(Severity::High, ago(20))]);
        let gone = stale_drift(&without, limit, &stale.announced, now);
        assert!(gone.announced.is_empty());
        // A first-seen time ahead of this clock is not due.
        let ahead = BTreeMap::from([(Severity::Critical, now + chrono::Duration::minutes(5))]);
        let early = stale_drift(&ahead, limit, &BTreeSet::new(), now);
        assert!(early.due.is_empty());
        assert_eq!(early.next, Some(Duration::from_secs(15 * 60)));
    }

    #[test]
    fn a_stale_drift_notification_says_how_long_against_what_limit_with_that_severitys_fields() {
        let report: DriftReport = serde_json::from_value(serde_json::json!({
            "summary": {"resources": 1, "synced": 0, "modified": 1, "missing": 0, "extra": 0,
                        "severity": "critical"},
            "resources": [{
                "group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop",
                "name": "web", "status": "modified", "severity": "critical",
                "changes": [
                    {"path": "/spec/replicas", "field": "spec.replicas", "op": "replace",
                     "desired": 2, "live": 5, "severity": "high", "rule": "r", "manager": null,
                     "attribution": "unknown"},
                    {"path": "/spec/template/spec/containers/0/image",
                     "field": "spec.template.spec.containers[name=web].image", "op": "replace",
                     "desired": "web:1", "live": "web:2", "severity": "critical", "rule": "r",
                     "manager": "kubectl-edit", "attribution": "exact"}
                ]
            }]
        }))
        .unwrap();
        let stale = StaleDrift {
            severity: Severity::High,
            age: Duration::from_secs(3600 + 125),
            limit: Duration::from_secs(3600),
        };
        let n = stale_notification(
            "argocd/web",
            &("f1".into(), Severity::Critical),
            &stale,
            &report,
        );
        assert_eq!(n.kind, EventKind::DriftStale);
        assert_eq!(n.severity, Severity::High);
        assert_eq!(n.summary, "high drift has lasted 1h 2m 5s (limit 1h)");
        assert_eq!(n.incident, "argo-drift/argocd/web/f1");
        let fields: Vec<&str> = n.changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["spec.replicas"]);
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn open(resolving_since: Option<Timestamp>) -> Published {
        Published {
            fingerprint: "f1".into(),
            drifted: resolving_since.is_none(),
            incident: Some(("i1".into(), Severity::High)),
            resolving_since,
            opened: None,
            text_hash: None,
            first_seen: FirstSeen::default(),
            stale: BTreeSet::new(),
        }
    }

    #[test]
    fn an_incident_opens_goes_on_and_keeps_its_highest_severity() {
        let hold = Duration::from_secs(120);
        let none = Published::default();
        assert_eq!(
            incident_step(&none, Some(Severity::Low), "f1", at(0), hold),
            IncidentStep::Opened(("f1".into(), Severity::Low))
        );
        assert_eq!(
            incident_step(&open(None), Some(Severity::Low), "f2", at(0), hold),
            IncidentStep::Continued(("i1".into(), Severity::High))
        );
        assert_eq!(
            incident_step(&none, None, "f0", at(0), hold),
            IncidentStep::None
        );
    }

    #[test]
    fn drift_that_goes_away_resolves_only_after_the_hold() {
        let hold = Duration::from_secs(120);
        let incident = ("i1".to_string(), Severity::High);
        assert_eq!(
            incident_step(&open(None), None, "f0", at(10), hold),
            IncidentStep::Holding {
                incident: incident.clone(),
                since: at(10),
                remaining: hold
            }
        );
        assert_eq!(
            incident_step(&open(Some(at(10))), None, "f0", at(100), hold),
            IncidentStep::Holding {
                incident: incident.clone(),
                since: at(10),
                remaining: Duration::from_secs(30)
            }
        );
        assert_eq!(
            incident_step(&open(Some(at(10))), None, "f0", at(130), hold),
            IncidentStep::Resolved(incident.clone())
        );
        assert_eq!(
            incident_step(&open(None), None, "f0", at(0), Duration::ZERO),
            IncidentStep::Resolved(incident),
            "no hold: resolved at once"
        );
    }

    #[test]
    fn a_flap_within_the_hold_continues_the_incident() {
        assert_eq!(
            incident_step(
                &open(Some(at(10))),
                Some(Severity::Medium),
                "f3",
                at(20),
                Duration::from_secs(120)
            ),
            IncidentStep::Continued(("i1".into(), Severity::High))
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes_with_jitter() {
        let secs = |n| retry_delay(n, 0).as_secs();
        assert_eq!([secs(1), secs(2), secs(3), secs(4)], [1, 2, 4, 8]);
        assert_eq!(secs(9), 256);
        assert_eq!(secs(10), 300);
        assert_eq!(secs(60), 300);
        assert_eq!(retry_delay(1, 999), Duration::from_millis(1999));
        assert_eq!(
            retry_delay(1, 1500),
            Duration::from_millis(1500),
            "jitter stays under a second"
        );
    }
}
