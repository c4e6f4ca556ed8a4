//! A drift run from start to end as values: desired and live sets in, a `DriftReport` out
//! (statuses, classified changes, patches, text diffs). The JSON shape is a contract other tools
//! read: keep the field names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::classify::{Severity, Status};
use crate::config::Policy;
use crate::diff::{compare, patch, text_diff, CompareOptions, Op};
use crate::manifest::ResourceKey;
use crate::normalize::{AttributionKind, Prepared};
use crate::redact::Redactor;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// RFC 6902 patch turning the normalised live object into the desired one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Value>,
    /// Unified diff of the normalised objects as YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Where the desired (or, for extra resources, live) document came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
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
    /// Leave out patches and text diffs (the controller's hot path needs only changes).
    pub without_patches: bool,
}

fn version_of(api_version: &str) -> String {
    api_version
        .rsplit('/')
        .next()
        .unwrap_or(api_version)
        .to_string()
}

/// Compare every desired object with its live counterpart and classify what differs.
pub fn analyse(
    desired: &BTreeMap<ResourceKey, Prepared>,
    live: &BTreeMap<ResourceKey, Prepared>,
    policy: &Policy,
    options: &AnalyseOptions,
) -> DriftReport {
    let mut redactor = Redactor::new();
    let compare_options = CompareOptions {
        managers: &policy.managers,
        tracking: &policy.tracking,
        ignore: &policy.ignore,
    };
    let classifier = &policy.classifier;
    let mut resources = Vec::with_capacity(desired.len());
    for (key, d) in desired {
        let base = |status, severity, rule: Option<String>| ResourceReport {
            group: key.group.clone(),
            version: version_of(&d.api_version),
            kind: key.kind.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            status,
            severity,
            rule,
            changes: Vec::new(),
            patch: None,
            diff: None,
            source: Some(d.origin.to_string()),
        };
        let Some(l) = live.get(key) else {
            let verdict = classifier.classify_resource(key, Status::Missing);
            resources.push(base(Status::Missing, verdict.severity, Some(verdict.rule)));
            continue;
        };
        let comparison = compare(d, l, &compare_options, &mut redactor);
        if comparison.changes.is_empty() {
            resources.push(base(Status::Synced, Severity::None, None));
            continue;
        }
        let mut report = base(Status::Modified, Severity::None, None);
        for change in &comparison.changes {
            let verdict = classifier.classify_change(key, change);
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
            });
        }
        if let (false, Some(live_normalised)) = (options.without_patches, &comparison.live) {
            let p = patch(live_normalised, &comparison.desired);
            report.patch = serde_json::to_value(p).ok();
            report.diff = Some(text_diff(
                &key.to_string(),
                live_normalised,
                &comparison.desired,
            ));
        }
        resources.push(report);
    }
    for (key, l) in live {
        if desired.contains_key(key) {
            continue;
        }
        let Some(app) = l.tracking.app(key) else {
            continue;
        };
        if options.app.as_deref().is_some_and(|want| want != app) {
            continue;
        }
        let verdict = classifier.classify_resource(key, Status::Extra);
        resources.push(ResourceReport {
            group: key.group.clone(),
            version: version_of(&l.api_version),
            kind: key.kind.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            status: Status::Extra,
            severity: verdict.severity,
            rule: Some(verdict.rule),
            changes: Vec::new(),
            patch: None,
            diff: None,
            source: Some(l.origin.to_string()),
        });
    }
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
