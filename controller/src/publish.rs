//! Where a drift report goes: one ConfigMap per application (server-side apply under our own
//! field manager, written only when its content changes) and a Kubernetes Event on the
//! Application when the drift itself changes.

use std::collections::BTreeSet;

use argo_drift_core::age::FirstSeen;
use argo_drift_core::audit::ChangedBy;
use argo_drift_core::report::{ChangeReport, DriftReport};
use argo_drift_core::{Severity, Status};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
pub use kube::runtime::events::EventType;
use kube::Client;
use serde::Serialize;

use crate::error::{Error, Result};
pub use argo_drift_cluster::records::{
    fnv, keep_newest, label_value, record_name, report_name, APP_LABEL, APP_NAMESPACE_LABEL,
};

pub const FIELD_MANAGER: &str = "argo-drift";
pub const REPORT_LABEL: &str = "argo-drift.io/report";
pub const SEVERITY_LABEL: &str = "argo-drift.io/severity";
pub const FINGERPRINT_ANNOTATION: &str = "argo-drift.io/drift-fingerprint";
pub const INCIDENT_ANNOTATION: &str = "argo-drift.io/incident";
pub const INCIDENT_SEVERITY_ANNOTATION: &str = "argo-drift.io/incident-severity";
/// When the drift of a still-open incident went away (RFC 3339): the incident resolves once
/// it has stayed away for the notifier's resolve hold.
pub const RESOLVING_ANNOTATION: &str = "argo-drift.io/incident-resolving-since";
/// When the open incident began (RFC 3339): the age of the drift, kept while it goes on.
pub const OPENED_ANNOTATION: &str = "argo-drift.io/incident-opened";
/// The severities whose drift the open incident has announced as stale (`drift-stale`), comma
/// separated: not announced again after a restart or a hand-over.
pub const STALE_ANNOTATION: &str = "argo-drift.io/stale-announced";
/// On the report: the Application's own name (the app label may be shortened to fit).
/// On a report: the replica that wrote it (its `--identity`, the pod name).
pub const REPORTED_BY_ANNOTATION: &str = "argo-drift.io/reported-by";
pub const APPLICATION_ANNOTATION: &str = "argo-drift.io/application";
pub const REPORT_KEY: &str = "report.json";
/// Beside a report that holds no resources (a failed analysis): when each drift the report
/// before it held was first seen, so that a restart while analyses fail keeps the drift's age.
pub const FIRST_SEEN_KEY: &str = "first-seen.json";
/// On the Application, for its Lua health check (health-checks/argoproj.io/Application).
pub const DRIFT_SEVERITY_ANNOTATION: &str = "argo-drift.io/drift-severity";
pub const DRIFT_SUMMARY_ANNOTATION: &str = "argo-drift.io/drift-summary";
/// The current drift's report id (while there is drift): what `argo-drift.io/heal-now` names.
pub const REPORT_ID_ANNOTATION: &str = "argo-drift.io/report-id";
/// The id of the approval argo-drift waits for (while one is pending): what
/// `argo-drift.io/approve` and `argo-drift.io/reject` name.
pub const PENDING_APPROVAL_ANNOTATION: &str = "argo-drift.io/pending-approval";
/// Why automation is stopped for the app (`frozen`, `recurrence-breaker`), until a human sets
/// `argo-drift.io/reset`.
pub const STOPPED_ANNOTATION: &str = "argo-drift.io/stopped";

/// What argo-drift keeps on a watched Application for Argo CD's UI (its health check and
/// resource actions read them). Keys not set are removed: they are applied server-side under
/// argo-drift's field manager, which owns them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppAnnotations {
    pub severity: String,
    pub summary: String,
    pub report_id: Option<String>,
    pub pending_approval: Option<String>,
    pub stopped: Option<String>,
}

impl AppAnnotations {
    fn entries(&self) -> Vec<(&'static str, Option<&str>)> {
        vec![
            (DRIFT_SEVERITY_ANNOTATION, Some(self.severity.as_str())),
            (DRIFT_SUMMARY_ANNOTATION, Some(self.summary.as_str())),
            (REPORT_ID_ANNOTATION, self.report_id.as_deref()),
            (
                PENDING_APPROVAL_ANNOTATION,
                self.pending_approval.as_deref(),
            ),
            (STOPPED_ANNOTATION, self.stopped.as_deref()),
        ]
    }
}
/// A digest of what analysis reads of an Application: everything but its bookkeeping
/// (resourceVersion, managedFields, generation), the times Argo CD writes on every refresh
/// (`status.reconciledAt`, `status.observedAt`) and the annotations argo-drift itself keeps on
/// it. Two versions with the same digest need no second analysis: a refresh that found nothing
/// new, or argo-drift's own annotation write.
pub fn application_digest(o: &kube::api::DynamicObject) -> Option<u64> {
    let mut meta = o.metadata.clone();
    meta.resource_version = None;
    meta.managed_fields = None;
    // Application has no status subresource: every status write bumps the generation; the spec
    // itself is in the digest.
    meta.generation = None;
    if let Some(annotations) = &mut meta.annotations {
        for (key, _) in AppAnnotations::default().entries() {
            annotations.remove(key);
        }
    }
    let mut data = o.data.clone();
    if let Some(status) = data.get_mut("status").and_then(|s| s.as_object_mut()) {
        status.remove("reconciledAt");
        status.remove("observedAt");
    }
    if data
        .get("status")
        .is_some_and(|s| s.as_object().is_some_and(|m| m.is_empty()))
    {
        data.as_object_mut().map(|m| m.remove("status"));
    }
    Some(crate::live::object_digest(&meta, &data))
}

/// Annotation values stay short: the UI shows them whole.
const SUMMARY_MAX: usize = 250;
/// A ConfigMap holds at most 1 MiB; keep room for metadata and managedFields.
pub const REPORT_LIMIT: usize = 900 * 1024;

/// What the report ConfigMap holds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<'a> {
    pub application: &'a str,
    pub namespace: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<&'a str>,
    /// Set when the analysis could not run: the report then holds no resources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
    /// Notifications about this application that could not be delivered, per channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification_failures: Option<String>,
    /// The approval argo-drift waits for, if any: its `id` is what to put in
    /// `argo-drift.io/approve` (or `reject`), or the Application's `approve-drift` action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_approval: Option<&'a argo_drift_core::policy::PendingApproval>,
    /// What remediation decided: steps, and what a guardrail held back and until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'a argo_drift_core::policy::Decision>,
    /// Where argo-drift and Argo CD disagree, by class (each resource carries Argo CD's view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<&'a argo_drift_core::agreement::Agreement>,
    #[serde(flatten)]
    pub report: &'a DriftReport,
}

/// What was last published for an application.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub fingerprint: String,
    pub drifted: bool,
    /// The open incident (its id, the first drift's fingerprint) and its highest severity: kept
    /// while drift changes, so notifications about it share one id (a PagerDuty `dedup_key`).
    pub incident: Option<(String, Severity)>,
    /// Set while the incident's drift is gone but the resolve hold has not passed.
    pub resolving_since: Option<Timestamp>,
    /// When the open incident began.
    pub opened: Option<Timestamp>,
    /// Digest of the report text last written by this process (`None` when read back).
    pub text_hash: Option<String>,
    /// When each drift of the report was first seen (read back from the report's JSON).
    pub first_seen: FirstSeen,
    /// The severities whose drift the open incident has announced as stale.
    pub stale: BTreeSet<Severity>,
}

/// What the report ConfigMap says about the report in its labels and annotations (what the
/// fleet view reads without parsing reports).
#[derive(Debug, Clone, Copy)]
pub struct ReportMeta<'a> {
    pub severity_label: &'a str,
    pub fingerprint: &'a str,
    pub incident: Option<&'a (String, Severity)>,
    pub resolving_since: Option<Timestamp>,
    pub opened: Option<Timestamp>,
    /// The severities announced as stale in the open incident.
    pub stale: &'a BTreeSet<Severity>,
    /// First-seen times to keep beside a report that holds none (see [`FIRST_SEEN_KEY`]).
    pub first_seen: Option<&'a FirstSeen>,
    /// One line: the drift, or that everything matches.
    pub summary: &'a str,
}

/// Reports listed per request when looking for those of gone applications. In the scale bench
/// (2,000 reports, listed every 30 s by each of 3 replicas) pages of 500 took the API requests
/// per replica in steady state from 1.15-1.25/s to 1.30-1.35/s; 1,000 lists them in as many
/// requests as the Applications and reports took before, with a peak a page's size.
pub const PRUNE_PAGE: u32 = 1000;

pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    /// argo-drift's own namespace, where the reports are.
    reports: String,
    /// Application namespaces whose apps' reports and Events this identity may write (once
    /// allowed, for good).
    allowed: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Publisher {
    /// Reports go to `reports`, argo-drift's own namespace; Events to each Application's.
    pub fn new(client: Client, instance: String, reports: String) -> Publisher {
        Publisher {
            client,
            controller: format!("argo-drift.io/{FIELD_MANAGER}"),
            instance,
            reports,
            allowed: Default::default(),
        }
    }

    /// Where the reports are.
    pub fn reports_namespace(&self) -> &str {
        &self.reports
    }

    /// Whether this identity may write the report of an application of `namespace` (a
    /// ConfigMap in argo-drift's namespace) and its Events (events.k8s.io, in `namespace`):
    /// SelfSubjectAccessReviews. An application whose report or Events could not be written is
    /// not analysed, so nothing is ever done without the record that says so.
    pub async fn may_publish_in(&self, namespace: &str) -> Result<bool> {
        use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
        if crate::lock(&self.allowed).contains(namespace) {
            return Ok(true);
        }
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        for (group, resource, namespace) in [
            ("", "configmaps", self.reports.as_str()),
            ("events.k8s.io", "events", namespace),
        ] {
            let review: SelfSubjectAccessReview = serde_json::from_value(serde_json::json!({
                "spec": {"resourceAttributes": {
                    "namespace": namespace, "verb": "create", "group": group, "resource": resource}}
            }))
            .map_err(|e| Error::Kube {
                context: "building a SelfSubjectAccessReview".into(),
                cause: kube::Error::SerdeError(e),
            })?;
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(Error::kube(format!(
                    "asking whether reports may be written in {namespace}"
                )))?;
            if !answer.status.is_some_and(|s| s.allowed) {
                return Ok(false);
            }
        }
        crate::lock(&self.allowed).insert(namespace.to_string());
        Ok(true)
    }

    /// What an earlier run (maybe another replica) published for Application `namespace/app`,
    /// so a restart does not repeat Events.
    pub async fn previous(&self, namespace: &str, app: &str) -> Result<Option<Published>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.reports);
        let name = report_name(namespace, app);
        let cm = api.get_opt(&name).await.map_err(Error::kube(format!(
            "reading ConfigMap {}/{name}",
            self.reports
        )))?;
        Ok(cm.map(|cm| {
            let fingerprint = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(FINGERPRINT_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            let drifted = cm
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SEVERITY_LABEL))
                .is_some_and(|s| s != "none");
            let annotation = |k: &str| {
                cm.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(k))
                    .cloned()
            };
            let incident = annotation(INCIDENT_ANNOTATION)
                .filter(|i| !i.is_empty())
                .map(|id| {
                    let severity = annotation(INCIDENT_SEVERITY_ANNOTATION)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(Severity::Medium);
                    (id, severity)
                });
            let stale = annotation(STALE_ANNOTATION)
                .filter(|_| incident.is_some())
                .map(|s| s.split(',').filter_map(|s| s.parse().ok()).collect())
                .unwrap_or_default();
            Published {
                fingerprint,
                drifted,
                resolving_since: annotation(RESOLVING_ANNOTATION)
                    .and_then(|t| t.parse().ok())
                    .filter(|_| incident.is_some()),
                opened: annotation(OPENED_ANNOTATION)
                    .and_then(|t| t.parse().ok())
                    .filter(|_| incident.is_some()),
                incident,
                text_hash: None,
                first_seen: first_seen_in(&cm),
                stale,
            }
        }))
    }

    /// Write the report ConfigMap. In the Application's own namespace `owner` makes it go away
    /// with the Application; elsewhere (an owner must share its dependant's namespace) the
    /// controller deletes it when it forgets the app (`delete_report`).
    pub async fn write_report(
        &self,
        owner: &ObjectReference,
        envelope: &Envelope<'_>,
        meta: &ReportMeta<'_>,
    ) -> Result<()> {
        let ReportMeta {
            severity_label,
            fingerprint,
            incident,
            resolving_since,
            opened,
            stale,
            first_seen,
            summary,
        } = *meta;
        let namespace = self.reports.as_str();
        let name = report_name(envelope.namespace, envelope.application);
        let text = fit_report(envelope);
        let owners = if owner.namespace.as_deref() == Some(namespace) {
            serde_json::json!([{
                "apiVersion": owner.api_version,
                "kind": owner.kind,
                "name": owner.name,
                "uid": owner.uid,
            }])
        } else {
            serde_json::json!([])
        };
        let mut cm = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    REPORT_LABEL: "true",
                    APP_LABEL: label_value(envelope.application),
                    APP_NAMESPACE_LABEL: envelope.namespace,
                    SEVERITY_LABEL: severity_label,
                    "app.kubernetes.io/managed-by": "argo-drift",
                },
                "annotations": {
                    FINGERPRINT_ANNOTATION: fingerprint,
                    INCIDENT_ANNOTATION: incident.map(|i| i.0.as_str()).unwrap_or(""),
                    INCIDENT_SEVERITY_ANNOTATION: incident.map(|i| i.1.as_str()).unwrap_or(""),
                    RESOLVING_ANNOTATION: resolving_since.map(|t| t.to_string()).unwrap_or_default(),
                    OPENED_ANNOTATION: opened.map(|t| t.to_string()).unwrap_or_default(),
                    STALE_ANNOTATION: stale.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
                    APPLICATION_ANNOTATION: envelope.application,
                    REPORTED_BY_ANNOTATION: self.instance,
                    DRIFT_SUMMARY_ANNOTATION: summary,
                    PENDING_APPROVAL_ANNOTATION: envelope
                        .pending_approval
                        .map(|p| p.id.as_str())
                        .unwrap_or(""),
                },
                "ownerReferences": owners,
            },
            "data": {REPORT_KEY: text},
        });
        // Applied without the key, a report with resources drops the one a failure left.
        if let Some(times) = first_seen.filter(|t| !t.is_empty()) {
            cm["data"][FIRST_SEEN_KEY] = fit_first_seen(times).into();
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await
        .map_err(Error::kube(format!("writing ConfigMap {namespace}/{name}")))?;
        Ok(())
    }

    /// Delete the report of a forgotten Application (deleted, or no longer opted in).
    pub async fn delete_report(&self, namespace: &str, app: &str) -> Result<()> {
        let name = report_name(namespace, app);
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.reports);
        match api.delete(&name, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(Error::kube(format!(
                "deleting ConfigMap {}/{name}",
                self.reports
            ))(e)),
        }
    }

    /// Delete the reports of the watched namespaces whose application is not in `alive`
    /// (deleted, or opted out, also while argo-drift was down). Reports of other namespaces are
    /// left alone: another argo-drift may share this namespace. Listed `page_size` at a time
    /// ([`PRUNE_PAGE`]). Returns how many went.
    pub async fn prune_reports(
        &self,
        alive: &std::collections::HashSet<
            kube::runtime::reflector::ObjectRef<kube::api::DynamicObject>,
        >,
        watched: &crate::namespaces::AppNamespaces,
        page_size: u32,
    ) -> Result<usize> {
        let keep: std::collections::HashSet<String> = alive
            .iter()
            .map(|a| report_name(a.namespace.as_deref().unwrap_or_default(), &a.name))
            .collect();
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.reports);
        // Names and labels alone, a page at a time: listing the reports whole every GC interval
        // (with the Applications' metadata) took 70-110 MB for a moment per replica at 2,000
        // reports (scale bench, RSS sampled every 2 s), and the allocator kept part of it.
        let mut params = kube::api::ListParams::default()
            .labels(&format!("{REPORT_LABEL}=true"))
            .limit(page_size);
        let mut pruned = 0;
        loop {
            let page = api
                .list_metadata(&params)
                .await
                .map_err(Error::kube(format!(
                    "listing the reports in {}",
                    self.reports
                )))?;
            for cm in &page.items {
                let name = cm.metadata.name.as_deref().unwrap_or_default();
                let of_watched = cm
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(APP_NAMESPACE_LABEL))
                    .is_some_and(|ns| watched.contains(ns));
                if of_watched && !keep.contains(name) {
                    api.delete(name, &Default::default())
                        .await
                        .map_err(Error::kube(format!(
                            "deleting ConfigMap {}/{name}",
                            self.reports
                        )))?;
                    pruned += 1;
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        Ok(pruned)
    }

    /// The drift summary on the Application itself, under our field manager (server-side
    /// apply of two annotations we alone own), for Argo CD's health check and UI. Written only
    /// when it changes.
    pub async fn annotate_application(
        &self,
        object: &kube::api::DynamicObject,
        wanted: &AppAnnotations,
    ) -> Result<()> {
        let mut wanted = wanted.clone();
        wanted.summary = short_summary(&wanted.summary);
        let current = |k: &str| {
            object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .map(String::as_str)
        };
        if wanted.entries().iter().all(|(k, v)| current(k) == *v) {
            return Ok(());
        }
        let annotations: serde_json::Map<String, serde_json::Value> = wanted
            .entries()
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), serde_json::Value::from(v))))
            .collect();
        let name = object.metadata.name.clone().unwrap_or_default();
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let patch = serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": annotations,
            },
        });
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &namespace,
            &crate::application::api_resource(),
        );
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::kube(format!(
            "annotating Application {namespace}/{name}"
        )))?;
        Ok(())
    }

    /// Write an Event about `on`. Every call creates one: drift Events are already written only
    /// when the drift changes, and each carries its own message. (kube-runtime's `Recorder`
    /// folds repeats into a series that keeps the first message, which would hide new drift.)
    pub async fn event(
        &self,
        on: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> Result<()> {
        let now = Timestamp::now();
        let namespace = on
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    on.name.as_deref().unwrap_or("object"),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(match type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            reason: Some(reason.into()),
            action: Some("AnalyseDrift".into()),
            note: Some(truncate(note, 1000)),
            regarding: Some(on.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &event)
            .await
            .map_err(Error::kube(format!("writing Event {reason}")))?;
        Ok(())
    }
}

/// First-seen times as JSON (`[[drift, time], …]`, oldest first) within the report's limit:
/// beyond it the newest are left out (they will count as new: their age is the least).
fn fit_first_seen(times: &FirstSeen) -> String {
    let mut list = times.to_list();
    loop {
        let text = serde_json::to_string(&list).unwrap_or_default();
        if text.len() <= REPORT_LIMIT || list.is_empty() {
            return text;
        }
        list.truncate(list.len() * 3 / 4);
    }
}

/// The first-seen times of the drifts in a report ConfigMap: its report's, or those kept beside
/// a report of a failed analysis. A report that does not parse (written by another version, or
/// cut by hand) gives none: its drifts count as new.
fn first_seen_in(cm: &ConfigMap) -> FirstSeen {
    let kept = cm.data.as_ref().and_then(|d| d.get(FIRST_SEEN_KEY));
    if let Some(Ok(list)) = kept.map(|t| serde_json::from_str(t)) {
        return FirstSeen::from_list(list);
    }
    let text = cm.data.as_ref().and_then(|d| d.get(REPORT_KEY));
    match text.map(|t| serde_json::from_str::<DriftReport>(t)) {
        Some(Ok(report)) => FirstSeen::from_report(&report),
        Some(Err(e)) => {
            tracing::warn!(
                configmap = cm.metadata.name.as_deref().unwrap_or_default(),
                error = %e,
                "the previous report does not parse: its drifts are dated anew"
            );
            FirstSeen::default()
        }
        None => FirstSeen::default(),
    }
}

/// The report as JSON, made to fit a ConfigMap: patches and text diffs go first, then the
/// least severe resources, and the envelope says what was left out.
pub fn fit_report(envelope: &Envelope<'_>) -> String {
    let text = serde_json::to_string(envelope).unwrap_or_default();
    if text.len() <= REPORT_LIMIT {
        return text;
    }
    let mut report = envelope.report.clone();
    for r in &mut report.resources {
        r.patch = None;
        r.diff = None;
    }
    report
        .resources
        .sort_by_key(|r| std::cmp::Reverse(r.severity));
    let total = report.resources.len();
    loop {
        let omitted = total - report.resources.len();
        let note = format!(
            "the full report exceeds the ConfigMap limit: patches and text diffs removed{}",
            if omitted > 0 {
                format!(", {omitted} of {total} resources (the least severe) left out")
            } else {
                String::new()
            }
        );
        let cut = Envelope {
            truncated: Some(note),
            report: &report,
            error: envelope.error.clone(),
            notification_failures: envelope.notification_failures.clone(),
            ..*envelope
        };
        let text = serde_json::to_string(&cut).unwrap_or_default();
        if text.len() <= REPORT_LIMIT || report.resources.is_empty() {
            return text;
        }
        let keep = report.resources.len() * 3 / 4;
        report.resources.truncate(keep);
    }
}

/// A stable digest of what drifts (not of when it was seen): the same drift gives the same
/// fingerprint across restarts, so Events are not repeated.
pub fn fingerprint(report: &DriftReport) -> String {
    let drifted: Vec<_> = report
        .resources
        .iter()
        .filter(|r| r.status != Status::Synced)
        .map(|r| {
            // When a drift was first seen is not what it is: left out.
            let changes: Vec<ChangeReport> = r
                .changes
                .iter()
                .map(|c| ChangeReport {
                    first_seen: None,
                    changed_by: None,
                    ..c.clone()
                })
                .collect();
            (r.key().to_string(), r.status, r.severity, changes)
        })
        .collect();
    fnv(&serde_json::to_vec(&drifted).unwrap_or_default())
}

/// A digest of a whole report as written, to skip writes that would change nothing.
pub fn fingerprint_text(envelope: &Envelope<'_>) -> String {
    fnv(&serde_json::to_vec(envelope).unwrap_or_default())
}

pub fn fingerprint_str(text: &str) -> String {
    fnv(text.as_bytes())
}

/// The highest severity among resources not in sync; `None` when all are.
pub fn drift_severity(report: &DriftReport) -> Option<Severity> {
    report
        .resources
        .iter()
        .filter(|r| r.status != Status::Synced)
        .map(|r| r.severity)
        .max()
}

/// The severity label of a report: its drift severity, or `none`.
pub fn severity_label(report: &DriftReport) -> String {
    drift_severity(report).map_or_else(|| "none".to_string(), |s| s.to_string())
}

/// "high drift in 2 resources: apps/Deployment shop/web spec.replicas (high, kubectl-scale); …"
/// A summary cut to what an annotation shows whole.
pub fn short_summary(summary: &str) -> String {
    summary.chars().take(SUMMARY_MAX).collect()
}

pub fn drift_message(report: &DriftReport) -> String {
    let mut drifted: Vec<_> = report
        .resources
        .iter()
        .filter(|r| r.status != Status::Synced)
        .collect();
    drifted.sort_by_key(|r| std::cmp::Reverse(r.severity));
    let worst = drifted
        .first()
        .map(|r| r.severity.to_string())
        .unwrap_or_default();
    let mut parts = Vec::new();
    for r in drifted.iter().take(5) {
        let key = r.key().to_string();
        if r.changes.is_empty() {
            let by = r
                .changed_by
                .as_ref()
                .map(|b| format!(", by {}", b.who()))
                .unwrap_or_default();
            parts.push(format!("{key} {} ({}{by})", r.status.as_str(), r.severity));
            continue;
        }
        let mut changes: Vec<_> = r.changes.iter().collect();
        changes.sort_by_key(|c| std::cmp::Reverse(c.severity));
        let fields: Vec<String> = changes
            .iter()
            .take(3)
            .map(
                |c| match ChangedBy::with_manager(c.changed_by.as_deref(), c.manager.as_deref()) {
                    Some(by) => format!("{} ({}, {by})", c.field, c.severity),
                    None => format!("{} ({})", c.field, c.severity),
                },
            )
            .collect();
        parts.push(format!("{key} {}", fields.join(", ")));
    }
    let more = drifted.len().saturating_sub(5);
    let mut text = format!(
        "{worst} drift in {} resource{}: {}",
        drifted.len(),
        if drifted.len() == 1 { "" } else { "s" },
        parts.join("; ")
    );
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    text
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max - 1;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use argo_drift_core::diff::Op;
    use argo_drift_core::normalize::AttributionKind;
    use argo_drift_core::report::{ChangeReport, ResourceReport, Summary};
    use serde_json::json;

    #[test]
    fn names_too_long_for_a_label_or_a_configmap_stay_valid_and_distinct() {
        assert_eq!(label_value("web"), "web");
        let long = format!("payments-{}", "x".repeat(62));
        let other = format!("payments-{}y", "x".repeat(61));
        let (a, b) = (label_value(&long), label_value(&other));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.starts_with("payments-xxx"));
        assert_eq!(label_value(&long), a, "stable");
        assert!(label_value("-odd name-")
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let app = "a".repeat(253);
        let report = report_name("shop", &app);
        assert!(report.len() <= 253 && report.starts_with("argo-drift-report-shop.aaa"));
        assert_ne!(report, report_name("shop", &"a".repeat(252)));
        assert_eq!(report_name("shop", "web"), "argo-drift-report-shop.web");
        assert_ne!(report_name("a-b", "c"), report_name("a", "b-c"));
        let long = "b".repeat(253);
        let (one, two) = (
            record_name(&["argo-drift-audit", &long, "1800000000"]),
            record_name(&["argo-drift-audit", &long, "1800000001"]),
        );
        assert!(one.len() <= 253 && two.len() <= 253);
        assert_ne!(one, two, "told apart by the time");
    }

    fn resource(
        name: &str,
        status: Status,
        severity: Severity,
        changes: Vec<ChangeReport>,
    ) -> ResourceReport {
        ResourceReport {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: name.into(),
            status,
            severity,
            rule: None,
            changes,
            patch: None,
            diff: None,
            source: None,
            unverified: Vec::new(),
            argocd: None,
            first_seen: None,
            changed_by: None,
        }
    }

    fn change(
        field: &str,
        severity: Severity,
        manager: &str,
        live: serde_json::Value,
    ) -> ChangeReport {
        ChangeReport {
            path: format!("/{}", field.replace('.', "/")),
            field: field.into(),
            op: Op::Replace,
            desired: Some(json!(2)),
            live: Some(live),
            severity,
            rule: "r".into(),
            manager: Some(manager.into()),
            attribution: AttributionKind::Exact,
            time: Some("2026-11-21T06:00:00Z".into()),
            first_seen: None,
            changed_by: None,
        }
    }

    fn report(resources: Vec<ResourceReport>) -> DriftReport {
        DriftReport {
            summary: Summary::default(),
            resources,
        }
    }

    #[test]
    fn the_event_message_leads_with_the_worst_severity_and_names_fields_and_managers() {
        let r = report(vec![
            resource(
                "api",
                Status::Modified,
                Severity::Low,
                vec![change(
                    "spec.replicas",
                    Severity::Low,
                    "kubectl-scale",
                    json!(5),
                )],
            ),
            resource(
                "web",
                Status::Modified,
                Severity::High,
                vec![
                    change("spec.replicas", Severity::Low, "kubectl-scale", json!(3)),
                    change(
                        "spec.template.spec.containers[name=web].image",
                        Severity::High,
                        "kubectl-set",
                        json!("evil"),
                    ),
                ],
            ),
            resource("ok", Status::Synced, Severity::None, vec![]),
        ]);
        assert_eq!(
            drift_message(&r),
            "high drift in 2 resources: Deployment.apps shop/web spec.template.spec.containers[name=web].image (high, kubectl-set), spec.replicas (low, kubectl-scale); Deployment.apps shop/api spec.replicas (low, kubectl-scale)"
        );
        assert_eq!(severity_label(&r), "high");
        assert_eq!(
            severity_label(&report(vec![resource(
                "ok",
                Status::Synced,
                Severity::None,
                vec![]
            )])),
            "none"
        );
    }

    #[test]
    fn the_event_message_names_the_person_behind_a_change_as_the_audit_trail_gives_it() {
        let by = |user: &str, sa: Option<&str>, impersonator: Option<&str>| ChangedBy {
            user: user.into(),
            groups: vec![],
            service_account: sa.map(str::to_string),
            impersonator: impersonator.map(|i| argo_drift_core::audit::UserInfo {
                username: i.into(),
                groups: vec![],
            }),
            user_agent: None,
            time: "2026-12-07T22:00:00.123456Z".into(),
            verb: "patch".into(),
            source_ips: vec![],
            matched: argo_drift_core::audit::Match::ResourceVersion,
            candidates: None,
            audit_id: "a".into(),
        };
        let mut replicas = change("spec.replicas", Severity::Low, "kubectl-scale", json!(3));
        replicas.changed_by = Some(Box::new(by("alice", None, None)));
        let mut image = change(
            "spec.template.spec.containers[name=web].image",
            Severity::High,
            "kubectl-set",
            json!("evil"),
        );
        image.changed_by = Some(Box::new(by("carol", None, Some("admin"))));
        let mut extra = resource("debug", Status::Extra, Severity::Medium, vec![]);
        extra.changed_by = Some(Box::new(by(
            "system:serviceaccount:ci:deployer",
            Some("ci/deployer"),
            None,
        )));
        let r = report(vec![
            resource(
                "web",
                Status::Modified,
                Severity::High,
                vec![replicas, image],
            ),
            extra,
        ]);
        assert_eq!(
            drift_message(&r),
            "high drift in 2 resources: Deployment.apps shop/web spec.template.spec.containers[name=web].image (high, carol (impersonated by admin) with kubectl-set), spec.replicas (low, alice with kubectl-scale); Deployment.apps shop/debug extra (medium, by ServiceAccount ci/deployer)"
        );
    }

    #[test]
    fn the_fingerprint_follows_the_drift_not_the_synced_resources() {
        let drift = |live| {
            report(vec![resource(
                "web",
                Status::Modified,
                Severity::Low,
                vec![change(
                    "spec.replicas",
                    Severity::Low,
                    "kubectl-scale",
                    live,
                )],
            )])
        };
        assert_eq!(fingerprint(&drift(json!(5))), fingerprint(&drift(json!(5))));
        assert_ne!(fingerprint(&drift(json!(5))), fingerprint(&drift(json!(6))));
        let mut with_synced = drift(json!(5));
        with_synced
            .resources
            .push(resource("ok", Status::Synced, Severity::None, vec![]));
        assert_eq!(fingerprint(&with_synced), fingerprint(&drift(json!(5))));
        // Dated, the same drift keeps its fingerprint.
        let mut dated = drift(json!(5));
        FirstSeen::default().stamp(&mut dated, chrono::Utc::now());
        assert!(dated.resources[0].changes[0].first_seen.is_some());
        assert_eq!(fingerprint(&dated), fingerprint(&drift(json!(5))));
        // Stable across builds: it is stored on the ConfigMap and compared after a restart.
        assert_eq!(fnv(b"argo-drift"), fnv(b"argo-drift"));
        assert_eq!(fnv(b""), "cbf29ce484222325");
    }

    #[test]
    fn a_report_over_the_configmap_limit_loses_patches_then_the_least_severe_resources_and_says_so()
    {
        let big = "x".repeat(20_000);
        let mut resources = Vec::new();
        for i in 0..100 {
            let severity = if i == 7 {
                Severity::Critical
            } else {
                Severity::Low
            };
            let mut r = resource(
                &format!("r{i}"),
                Status::Modified,
                severity,
                vec![change("data.k", severity, "kubectl-edit", json!(big))],
            );
            r.patch = serde_json::value::to_raw_value(
                &json!([{"op": "replace", "path": "/data/k", "value": big}]),
            )
            .ok();
            resources.push(r);
        }
        let r = report(resources);
        let envelope = Envelope {
            application: "web",
            namespace: "argocd",
            revision: None,
            error: None,
            truncated: None,
            notification_failures: None,
            pending_approval: None,
            decision: None,
            agreement: None,
            report: &r,
        };
        let text = fit_report(&envelope);
        assert!(text.len() <= REPORT_LIMIT, "{}", text.len());
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let kept = v["resources"].as_array().unwrap();
        assert!(kept.len() < 100 && !kept.is_empty());
        assert_eq!(kept[0]["name"], "r7", "the critical resource is kept first");
        assert!(kept.iter().all(|r| r.get("patch").is_none()));
        let note = v["truncated"].as_str().unwrap();
        assert!(
            note.contains(&format!("{} of 100 resources", 100 - kept.len())),
            "{note}"
        );

        let small = report(vec![resource(
            "web",
            Status::Synced,
            Severity::None,
            vec![],
        )]);
        let text = fit_report(&Envelope {
            report: &small,
            ..envelope
        });
        assert!(!text.contains("truncated"));
    }
}
