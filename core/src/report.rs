//! A drift run from start to end as values: desired and live sets in, a `DriftReport` out
//! (statuses, classified changes, patches, text diffs). The JSON shape is a contract other tools
//! read: keep the field names.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::classify::{Severity, Status};
use crate::config::Policy;
use crate::diff::{compare_object, patch, text_diff, CompareOptions, Op};
use crate::manifest::{KeyMap, Origin, ResourceKey};
use crate::normalize::ignore::IgnoreRule;
use crate::normalize::{AttributionKind, Prepared};
use crate::redact::Redactor;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftReport {
    pub summary: Summary,
    pub resources: Vec<ResourceReport>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub resources: usize,
    pub synced: usize,
    pub modified: usize,
    pub missing: usize,
    pub extra: usize,
    pub severity: Severity,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceReport {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub status: Status,
    pub severity: Severity,
    /// For missing and extra resources: the rule that set the severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub changes: Vec<ChangeReport>,
    /// RFC 6902 patch turning the normalised live object into the desired one. Kept as JSON
    /// text: as a parsed tree it would be the largest part of a big report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Box<serde_json::value::RawValue>>,
    /// Unified diff of the normalised objects as YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Where the desired (or, for extra resources, live) document came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Fields that could not be judged, and are not counted as drift: a Secret value Argo CD's
    /// manifests API masked (its presence is checked, its value is not), or a field only in
    /// live that an object without managedFields cannot attribute (not in the last-applied
    /// annotation, not a server default: a webhook, a controller or a person may have set it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unverified: Vec<String>,
    /// What Argo CD itself says of the resource, when it was asked (see `agreement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argocd: Option<crate::agreement::ArgoCdView>,
    /// When its oldest drift was first seen (RFC 3339), in the controller's reports: see
    /// [`crate::age`]. An offline diff has no earlier report and leaves it out.
    #[serde(default, rename = "firstSeen", skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    /// For extra and missing resources, in the controller's reports: who created or deleted
    /// it, from the API server's audit events (see [`crate::audit`]). Boxed: every resource of
    /// every report carries the field, few carry a value.
    #[serde(default, rename = "changedBy", skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<Box<crate::audit::ChangedBy>>,
}

impl ResourceReport {
    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            group: self.group.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChangeReport {
    /// RFC 6901 pointer into the live object.
    pub path: String,
    /// Readable path, list items named by merge key.
    pub field: String,
    pub op: Op,
    pub desired: Option<Value>,
    pub live: Option<Value>,
    pub severity: Severity,
    pub rule: String,
    pub manager: Option<String>,
    pub attribution: AttributionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// When this field was first seen drifted (RFC 3339), in the controller's reports: see
    /// [`crate::age`].
    #[serde(default, rename = "firstSeen", skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    /// Who gave the field its live value, in the controller's reports: from the API server's
    /// audit events (see [`crate::audit`]). Boxed: every change of every report (the offline
    /// diff's too) carries the field; inline it would add ~200 bytes to each.
    #[serde(default, rename = "changedBy", skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<Box<crate::audit::ChangedBy>>,
}

impl DriftReport {
    /// Whether any resource drifted at or above `threshold`.
    pub fn has_drift_at(&self, threshold: Severity) -> bool {
        self.resources
            .iter()
            .any(|r| r.status != Status::Synced && r.severity >= threshold)
    }
}

/// Options of one analysis besides the policy.
#[derive(Debug, Clone, Default)]
pub struct AnalyseOptions {
    /// Only live objects tracked by this Argo CD application count as extra; any tracked object
    /// does when unset.
    pub app: Option<String>,
    /// Add a JSON Patch to each modified resource.
    pub patches: bool,
    /// Add a unified text diff to each modified resource (YAML rendering: the costly part).
    pub text_diffs: bool,
    /// The application's `spec.ignoreDifferences`, compiled; added to the policy's own.
    pub app_ignore: std::sync::Arc<Vec<IgnoreRule>>,
    /// Secret annotations whose values are masked (argocd-cm
    /// `resource.sensitive.mask.annotations`).
    pub sensitive_annotations: std::sync::Arc<Vec<String>>,
    /// Argo CD's own word on Secret values its manifests API masked: per Secret, the `data`
    /// keys whose masks differ in its managed-resources diff (Argo CD masks a pair of values
    /// with the same run of `+` exactly when they are equal). `None`: Argo CD was not asked.
    pub argocd_secret_differences:
        Option<std::sync::Arc<BTreeMap<ResourceKey, std::collections::BTreeSet<String>>>>,
    /// Argo CD's `knownTypeFields` (and its built-in for Rollouts).
    pub known_types: std::sync::Arc<crate::normalize::known_types::KnownTypes>,
}

fn version_of(api_version: &str) -> String {
    api_version
        .rsplit('/')
        .next()
        .unwrap_or(api_version)
        .to_string()
}

/// Compare every desired object with its live counterpart and classify what differs. The keys
/// are unique by construction (see `manifest::index_by_key`).
pub fn analyse(
    desired: BTreeMap<ResourceKey, Prepared>,
    live: &BTreeMap<ResourceKey, Prepared>,
    policy: &Policy,
    options: &AnalyseOptions,
) -> DriftReport {
    let mut analyser = Analyser::new(policy, options.clone());
    for d in desired.into_values() {
        let index = analyser.desired.len();
        analyser.desired.insert(
            d.key.clone(),
            Pending {
                stored: Stored::Parsed(Box::new(d)),
                index,
            },
        );
    }
    for l in live.values() {
        // Keys of a map are unique: no live object is refused as a second one.
        let _ = analyser.observe_live(l);
    }
    analyser.finish()
}

/// A desired object waiting for its live counterpart. Kept packed ([`crate::packed`]) when memory
/// matters: a parsed object takes 10 to 25 times the space of its text.
enum Stored {
    Parsed(Box<Prepared>),
    /// `prepared.object` is null and `prepared.key` empty (the map holds the key); the object
    /// is at `span` in the analyser's [`CompactStore`].
    Compact {
        prepared: Box<Prepared>,
        span: PackedSpan,
    },
}

/// Desired objects packed, side by side in large buffers: one allocation per 256 KiB rather
/// than one per object, none of them among the short-lived ones of reading and comparing
/// (scattered among those, the kept objects held otherwise free pages of the allocator: about
/// 0.5 MB of peak RSS on the 2,000-pair corpus, median of 12 runs under `/usr/bin/time -f %M`).
#[derive(Default)]
struct CompactStore {
    chunks: Vec<String>,
}

/// Where one packed object is in the analyser's compact store (see [`Analyser::compact`]).
#[derive(Debug, Clone, Copy)]
pub struct PackedSpan {
    chunk: usize,
    start: usize,
    len: usize,
}

const COMPACT_CHUNK: usize = 256 * 1024;

impl CompactStore {
    /// Keep `value` packed.
    fn push(&mut self, value: &Value) -> PackedSpan {
        let mut packed = String::new();
        crate::packed::write(value, &mut packed);
        self.push_packed(&packed)
    }

    /// Keep a value's packed form (written by [`crate::packed::write`]).
    fn push_packed(&mut self, packed: &str) -> PackedSpan {
        let len = packed.len();
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= len);
        if !fits {
            self.chunks
                .push(String::with_capacity(COMPACT_CHUNK.max(len)));
        }
        let chunk = self.chunks.len() - 1;
        let buffer = &mut self.chunks[chunk];
        let start = buffer.len();
        buffer.push_str(packed);
        PackedSpan { chunk, start, len }
    }

    /// The packed value at `span`, which [`CompactStore::push`] of this store gave.
    fn get(&self, span: PackedSpan) -> &str {
        &self.chunks[span.chunk][span.start..span.start + span.len]
    }
}

impl Stored {
    /// The object's metadata. For a compact one, `key` is empty: the map holds it.
    fn prepared(&self) -> &Prepared {
        match self {
            Stored::Parsed(p) | Stored::Compact { prepared: p, .. } => p,
        }
    }
}

struct Pending {
    stored: Stored,
    /// Its place in [`Tally::seen`]: the order it was added in.
    index: usize,
}

/// What the analyser records as live objects are observed, behind a lock so that comparisons
/// can run on other threads meanwhile ([`Analyser::compare_live`]).
#[derive(Default)]
struct Tally {
    /// For each desired object (by [`Pending::index`]), where its live counterpart was read, once
    /// it has been.
    seen: Vec<Option<Origin>>,
    /// Where each live object without a desired counterpart was read.
    extra: KeyMap<Origin>,
    resources: Vec<ResourceReport>,
    /// Masks are numbered in the order values are met: only observations in order use it.
    redactor: Redactor,
}

/// A live object compared with its desired counterpart, or judged as extra, by
/// [`Analyser::compare_live`], for [`Analyser::observe_compared`] to record.
pub struct Compared(Outcome);

enum Outcome {
    Extra(Option<ResourceReport>),
    Desired(ResourceReport),
}

/// Analysis one live object at a time: desired objects are added first, then each live object is
/// compared as it arrives and can be dropped at once, so a large live dump is never held whole.
///
/// Once the desired objects are in, the analyser can be shared between threads: any of them can
/// compare ([`Analyser::compare_live`]), and one records the comparisons in the order the live
/// objects were read ([`Analyser::observe_compared`]), which keeps errors, and the numbers of
/// Secret masks, those of reading the objects one after the other.
pub struct Analyser<'p> {
    policy: &'p Policy,
    options: AnalyseOptions,
    /// Hashed, not ordered: the report is sorted at the end. Ordered, its lookups were 5% of
    /// `argo-drift diff` on 20,000 pairs.
    desired: KeyMap<Pending>,
    compact: CompactStore,
    tally: std::sync::Mutex<Tally>,
}

impl<'p> Analyser<'p> {
    pub fn new(policy: &'p Policy, options: AnalyseOptions) -> Analyser<'p> {
        let sensitive = options.sensitive_annotations.clone();
        Analyser {
            policy,
            options,
            desired: KeyMap::default(),
            compact: CompactStore::default(),
            tally: std::sync::Mutex::new(Tally {
                redactor: Redactor::with_sensitive_annotations(sensitive),
                ..Tally::default()
            }),
        }
    }

    /// Room for `additional` more desired objects, so that adding them does not grow the
    /// table step by step.
    pub fn reserve_desired(&mut self, additional: usize) {
        self.desired.reserve(additional);
    }

    /// Keep a desired object packed, for [`Analyser::add_desired_compact`]: callers that must
    /// read every desired object before adding any (to learn the scopes of custom kinds) hold
    /// the span, not the parsed object.
    pub fn compact(&mut self, object: &Value) -> PackedSpan {
        self.compact.push(object)
    }

    /// [`Analyser::compact`] for an object already packed by [`crate::packed::write`] (on
    /// another thread, say).
    pub fn compact_packed(&mut self, packed: &str) -> PackedSpan {
        self.compact.push_packed(packed)
    }

    /// Add a desired object already compacted by [`Analyser::compact`] (`prepared.object` left
    /// null, the object at `span`). Its namespace is taken from the key when it is restored, so
    /// the key may be resolved after compacting.
    pub fn add_desired_compact(
        &mut self,
        mut prepared: Box<Prepared>,
        span: PackedSpan,
    ) -> crate::Result<()> {
        let index = self.desired.len();
        match self.desired.entry(std::mem::take(&mut prepared.key)) {
            Entry::Occupied(first) => {
                let origin = &first.get().stored.prepared().origin;
                Err(crate::Error::duplicate(
                    first.key(),
                    origin,
                    &prepared.origin,
                ))
            }
            Entry::Vacant(slot) => {
                slot.insert(Pending {
                    stored: Stored::Compact { prepared, span },
                    index,
                });
                Ok(())
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // Recording panics only where the whole analysis does.
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Compare one live object with its desired counterpart, or judge it as extra. A second live
    /// object with the same key is refused, naming both: keeping either would hide drift in the
    /// other.
    pub fn observe_live(&self, live: &Prepared) -> crate::Result<()> {
        self.record(live, None)
    }

    /// The comparison [`Analyser::observe_live`] makes, without recording it: any thread can make
    /// it while another records. `None` for a Secret with a desired counterpart, whose masks are
    /// numbered in the order of observation: `observe_live` compares it.
    pub fn compare_live(&self, live: &Prepared) -> Option<Compared> {
        let Some(pending) = self.desired.get(&live.key) else {
            return Some(Compared(Outcome::Extra(extra_report(
                live,
                self.policy,
                &self.options,
            ))));
        };
        if crate::redact::is_secret(&live.key.group, &live.key.kind) {
            return None;
        }
        // Only a Secret's values are masked: this one is never used.
        let mut unused =
            Redactor::with_sensitive_annotations(self.options.sensitive_annotations.clone());
        Some(Compared(Outcome::Desired(self.compare_desired(
            pending,
            live,
            &mut unused,
        ))))
    }

    /// [`Analyser::observe_live`] with the comparison [`Analyser::compare_live`] made of `live`.
    pub fn observe_compared(&self, live: &Prepared, compared: Compared) -> crate::Result<()> {
        self.record(live, Some(compared))
    }

    fn record(&self, live: &Prepared, compared: Option<Compared>) -> crate::Result<()> {
        let mut tally = self.lock();
        let tally = &mut *tally;
        if tally.resources.capacity() == 0 {
            // About one report per desired object: grown by doubling, the list left its old
            // copies among the comparison's short-lived allocations.
            tally.resources.reserve(self.desired.len());
        }
        let Some(pending) = self.desired.get(&live.key) else {
            // Only extra objects are remembered for this: a desired one already holds its key.
            match tally.extra.entry(live.key.clone()) {
                Entry::Occupied(first) => {
                    return Err(crate::Error::duplicate(
                        &live.key,
                        first.get(),
                        &live.origin,
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert(live.origin.clone());
                }
            }
            let report = match compared {
                Some(Compared(Outcome::Extra(report))) => report,
                _ => extra_report(live, self.policy, &self.options),
            };
            tally.resources.extend(report);
            return Ok(());
        };
        if tally.seen.len() < self.desired.len() {
            tally.seen.resize(self.desired.len(), None);
        }
        let seen = &mut tally.seen[pending.index];
        if let Some(first) = seen {
            return Err(crate::Error::duplicate(&live.key, first, &live.origin));
        }
        *seen = Some(live.origin.clone());
        let report = match compared {
            Some(Compared(Outcome::Desired(report))) => report,
            _ => self.compare_desired(pending, live, &mut tally.redactor),
        };
        tally.resources.push(report);
        Ok(())
    }

    fn compare_desired(
        &self,
        pending: &Pending,
        live: &Prepared,
        redactor: &mut Redactor,
    ) -> ResourceReport {
        let desired = match &pending.stored {
            Stored::Parsed(p) => Cow::Borrowed(&**p),
            Stored::Compact { prepared, span } => {
                // The restored object is the comparison's to change: it is not copied again.
                let mut p = (**prepared).clone();
                p.key = live.key.clone();
                p.object = crate::packed::read(self.compact.get(*span)).unwrap_or(Value::Null);
                if let Some(Value::Object(meta)) = p.object.get_mut("metadata") {
                    if p.key.namespace.is_empty() {
                        meta.remove("namespace");
                    } else {
                        meta.insert("namespace".into(), Value::String(p.key.namespace.clone()));
                    }
                }
                Cow::Owned(p)
            }
        };
        modified_report(desired, live, self.policy, &self.options, redactor)
    }

    /// Desired objects never seen live are missing; the report is sorted by key.
    pub fn finish(self) -> DriftReport {
        let classifier = &self.policy.classifier;
        let Tally {
            seen,
            mut resources,
            ..
        } = self.tally.into_inner().unwrap_or_else(|p| p.into_inner());
        for (key, pending) in &self.desired {
            if seen.get(pending.index).is_some_and(Option::is_some) {
                continue;
            }
            let d = pending.stored.prepared();
            let verdict = classifier.classify_resource(key, Status::Missing);
            let mut report =
                base_report(key, &d.api_version, &d.origin.to_string(), Status::Missing);
            report.severity = verdict.severity;
            report.rule = Some(verdict.rule);
            resources.push(report);
        }
        // Keys are unique, so an unstable sort orders as a stable one, without its buffer.
        resources.sort_unstable_by(|a, b| {
            (&a.group, &a.kind, &a.namespace, &a.name).cmp(&(
                &b.group,
                &b.kind,
                &b.namespace,
                &b.name,
            ))
        });
        let mut summary = Summary {
            resources: resources.len(),
            ..Summary::default()
        };
        for r in &resources {
            match r.status {
                Status::Synced => summary.synced += 1,
                Status::Modified => summary.modified += 1,
                Status::Missing => summary.missing += 1,
                Status::Extra => summary.extra += 1,
            }
            summary.severity = summary.severity.max(r.severity);
        }
        DriftReport { summary, resources }
    }
}

fn base_report(
    key: &ResourceKey,
    api_version: &str,
    source: &str,
    status: Status,
) -> ResourceReport {
    ResourceReport {
        group: key.group.clone(),
        version: version_of(api_version),
        kind: key.kind.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        status,
        severity: Severity::None,
        rule: None,
        changes: Vec::new(),
        patch: None,
        diff: None,
        source: Some(source.to_string()),
        unverified: Vec::new(),
        argocd: None,
        first_seen: None,
        changed_by: None,
    }
}

fn extra_report(
    live: &Prepared,
    policy: &Policy,
    options: &AnalyseOptions,
) -> Option<ResourceReport> {
    let app = live.tracking.app(&live.key)?;
    if options.app.as_deref().is_some_and(|want| want != app) {
        return None;
    }
    // A hook Argo CD created (it carries the app's tracking mark) is not an extra object, and
    // neither is one marked IgnoreExtraneous (controller/state.go, CompareAppState).
    if crate::manifest::is_hook(&live.object) || ignores_extraneous(&live.object) {
        return None;
    }
    let verdict = policy
        .classifier
        .classify_resource(&live.key, Status::Extra);
    let mut report = base_report(
        &live.key,
        &live.api_version,
        &live.origin.to_string(),
        Status::Extra,
    );
    report.severity = verdict.severity;
    report.rule = Some(verdict.rule);
    Some(report)
}

/// `argocd.argoproj.io/compare-options: IgnoreExtraneous` (a comma-separated list, as Argo CD's
/// resourceutil.HasAnnotationOption reads it).
fn ignores_extraneous(object: &Value) -> bool {
    object["metadata"]["annotations"]["argocd.argoproj.io/compare-options"]
        .as_str()
        .is_some_and(|v| v.split(',').any(|o| o.trim() == "IgnoreExtraneous"))
}

/// `d` is borrowed when the analyser keeps it parsed, owned when it was restored for this
/// comparison (then it is changed in place rather than copied).
fn modified_report(
    d: Cow<'_, Prepared>,
    l: &Prepared,
    policy: &Policy,
    options: &AnalyseOptions,
    redactor: &mut Redactor,
) -> ResourceReport {
    let compare_options = CompareOptions {
        managers: &policy.managers,
        tracking: &policy.tracking,
        ignore: &policy.ignore,
        app_ignore: &options.app_ignore,
    };
    let differing = options
        .argocd_secret_differences
        .as_ref()
        .map(|all| all.get(&d.key).cloned().unwrap_or_default());
    let (mut d, unverified) =
        match crate::normalize::unmask_secret_values(&d, l, differing.as_ref()) {
            Some((copy, fields)) => (Cow::Owned(copy), fields),
            None => (d, Vec::new()),
        };
    let aligned;
    let l = if options.known_types.applies_to(&d.key.group, &d.key.kind) {
        let mut l = l.clone();
        let d = d.to_mut();
        options
            .known_types
            .align(&d.key.group, &d.key.kind, &mut d.object, &mut l.object);
        aligned = l;
        &aligned
    } else {
        l
    };
    // The comparison changes the desired object into its normalised form: an owned one is
    // handed over, a borrowed one copied.
    let object = match &mut d {
        Cow::Owned(p) => std::mem::take(&mut p.object),
        Cow::Borrowed(p) => p.object.clone(),
    };
    let comparison = compare_object(object, &d.key, l, &compare_options, redactor);
    let key = &d.key;
    let mut report = base_report(key, &d.api_version, &d.origin.to_string(), Status::Synced);
    report.unverified = unverified;
    report
        .unverified
        .extend(comparison.unverified.iter().map(|p| p.to_string()));
    if comparison.changes.is_empty() {
        // Nothing to look at in the source of a synced object; at scale the strings add up.
        report.source = None;
        return report;
    }
    report.status = Status::Modified;
    for change in &comparison.changes {
        let verdict = policy.classifier.classify_change(key, change);
        report.severity = report.severity.max(verdict.severity);
        report.changes.push(ChangeReport {
            path: change.path.pointer(),
            field: change.path.to_string(),
            op: change.op,
            desired: change.desired.clone(),
            live: change.live.clone(),
            severity: verdict.severity,
            rule: verdict.rule,
            manager: change.attribution.manager.clone(),
            attribution: change.attribution.kind,
            time: change.attribution.time.clone(),
            first_seen: None,
            changed_by: None,
        });
    }
    if let Some(live_normalised) = &comparison.live {
        if options.patches {
            report.patch =
                serde_json::value::to_raw_value(&patch(live_normalised, &comparison.desired)).ok();
        }
        if options.text_diffs {
            report.diff = Some(text_diff(
                &key.to_string(),
                live_normalised,
                &comparison.desired,
            ));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compact_store_gives_back_each_object_across_buffers() {
        let mut store = CompactStore::default();
        let small = serde_json::json!({"kind": "ConfigMap", "data": {"a": "b"}});
        // Larger than a buffer: it gets one of its own.
        let large = serde_json::json!({"data": {"blob": "x".repeat(COMPACT_CHUNK + 10)}});
        let mut spans = Vec::new();
        for i in 0..3000 {
            let value = if i % 1000 == 999 { &large } else { &small };
            spans.push((store.push(value), value));
        }
        assert!(store.chunks.len() > 3, "{} buffers", store.chunks.len());
        for (span, value) in spans {
            let back = crate::packed::read(store.get(span)).unwrap();
            assert_eq!(&back, value);
        }
    }
}
