//! Agreement with Argo CD: what Argo CD itself says of each resource (the Application's
//! `status.resources[].status`, and with its API the managed-resources diff's `modified`) next to
//! argo-drift's verdict, and each disagreement named by class. Users judge argo-drift against
//! Argo CD's own answer; every difference has to be one we can explain (docs/agreement.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::classify::Status;
use crate::diff::Op;
use crate::manifest::ResourceKey;
use crate::report::{DriftReport, ResourceReport};

/// What Argo CD says of one resource of the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgoCdResource {
    pub key: ResourceKey,
    /// `Synced`, `OutOfSync` or `Unknown` (status.resources[].status).
    pub status: String,
    /// A live resource Git no longer has (status.resources[].requiresPruning).
    pub requires_pruning: bool,
    /// Argo CD's own diff found a difference (managed-resources `modified`), when asked.
    pub modified: Option<bool>,
    /// A hook: not part of the desired state either side compares.
    pub hook: bool,
}

impl ArgoCdResource {
    /// Argo CD's verdict: `Some(true)` drifted, `Some(false)` in sync, `None` no verdict.
    fn drifted(&self) -> Option<bool> {
        if self.modified == Some(true) || self.requires_pruning {
            return Some(true);
        }
        match self.status.as_str() {
            "OutOfSync" => Some(true),
            "Synced" => Some(false),
            _ => self.modified,
        }
    }
}

/// How argo-drift's verdict on a resource relates to Argo CD's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Both say in sync, or both say drifted.
    Agree,
    /// Argo CD gave no verdict (`Unknown`, a comparison error).
    NoVerdict,
    /// argo-drift reports fields the live object has and Git does not set (a label, an
    /// annotation, a container argument added by hand). Argo CD's diff leaves them out: it
    /// compares what it applied (the last-applied configuration, or its own managed fields with
    /// server-side diff), and it never applied these.
    OutOfBandAddition,
    /// argo-drift reports drift Argo CD does not, for no reason above. Expected: none.
    ArgoDriftOnly,
    /// Argo CD says OutOfSync; argo-drift says in sync, or does not know the resource. Expected:
    /// none.
    #[serde(rename = "argocd-only")]
    ArgoCdOnly,
}

impl Class {
    pub const DISAGREEMENTS: [Class; 3] = [
        Class::OutOfBandAddition,
        Class::ArgoDriftOnly,
        Class::ArgoCdOnly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Agree => "agree",
            Class::NoVerdict => "no-verdict",
            Class::OutOfBandAddition => "out-of-band-addition",
            Class::ArgoDriftOnly => "argo-drift-only",
            Class::ArgoCdOnly => "argocd-only",
        }
    }

    pub fn is_disagreement(self) -> bool {
        Class::DISAGREEMENTS.contains(&self)
    }
}

/// Argo CD's word on a resource of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoCdView {
    /// Argo CD's sync status of the resource; `Absent` when Argo CD does not list it.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<bool>,
    pub agreement: Class,
}

/// The application's agreement with Argo CD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agreement {
    /// Resources in disagreement, by class (classes with none are left out).
    pub disagreements: BTreeMap<Class, usize>,
    /// Resources Argo CD calls OutOfSync that the report does not have at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argocd_only: Vec<String>,
}

/// Put Argo CD's view on each resource of `report`, and count the disagreements.
pub fn compare(report: &mut DriftReport, argocd: &[ArgoCdResource]) -> Agreement {
    let mut by_key: BTreeMap<&ResourceKey, &ArgoCdResource> = argocd
        .iter()
        .filter(|r| !r.hook)
        .map(|r| (&r.key, r))
        .collect();
    let mut agreement = Agreement::default();
    for resource in &mut report.resources {
        let key = resource.key();
        let theirs = by_key.remove(&key);
        let class = classify(resource, theirs);
        resource.argocd = Some(ArgoCdView {
            status: theirs.map_or_else(|| "Absent".to_string(), |t| t.status.clone()),
            modified: theirs.and_then(|t| t.modified),
            agreement: class,
        });
        if class.is_disagreement() {
            *agreement.disagreements.entry(class).or_default() += 1;
        }
    }
    // What Argo CD calls drifted and argo-drift did not analyse at all.
    for theirs in by_key.values() {
        if theirs.drifted() == Some(true) {
            *agreement
                .disagreements
                .entry(Class::ArgoCdOnly)
                .or_default() += 1;
            agreement.argocd_only.push(theirs.key.to_string());
        }
    }
    agreement
}

fn classify(ours: &ResourceReport, theirs: Option<&ArgoCdResource>) -> Class {
    let we_drifted = ours.status != Status::Synced;
    let Some(theirs) = theirs else {
        // Argo CD does not list it: a resource it neither renders nor tracks.
        return if we_drifted {
            Class::ArgoDriftOnly
        } else {
            Class::NoVerdict
        };
    };
    match (we_drifted, theirs.drifted()) {
        (_, None) => Class::NoVerdict,
        (true, Some(true)) | (false, Some(false)) => Class::Agree,
        (false, Some(true)) => Class::ArgoCdOnly,
        (true, Some(false)) => {
            let additions_only = ours.status == Status::Modified
                && !ours.changes.is_empty()
                && ours.changes.iter().all(|c| c.op == Op::Add);
            if additions_only {
                Class::OutOfBandAddition
            } else {
                Class::ArgoDriftOnly
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Severity;
    use crate::report::{ChangeReport, Summary};

    fn key(name: &str) -> ResourceKey {
        ResourceKey {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    fn ours(name: &str, status: Status, ops: &[Op]) -> ResourceReport {
        ResourceReport {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "shop".into(),
            name: name.into(),
            status,
            severity: Severity::Low,
            rule: None,
            changes: ops
                .iter()
                .map(|op| ChangeReport {
                    path: "/metadata/labels/team".into(),
                    field: "metadata.labels.team".into(),
                    op: *op,
                    desired: None,
                    live: None,
                    severity: Severity::Low,
                    rule: "test".into(),
                    manager: None,
                    attribution: crate::normalize::AttributionKind::Unknown,
                    time: None,
                    first_seen: None,
                    changed_by: None,
                })
                .collect(),
            patch: None,
            diff: None,
            source: None,
            unverified: Vec::new(),
            argocd: None,
            first_seen: None,
            changed_by: None,
        }
    }

    fn theirs(name: &str, status: &str) -> ArgoCdResource {
        ArgoCdResource {
            key: key(name),
            status: status.into(),
            requires_pruning: false,
            modified: None,
            hook: false,
        }
    }

    #[test]
    fn each_disagreement_is_named_by_its_class() {
        let mut report = DriftReport {
            summary: Summary::default(),
            resources: vec![
                ours("same", Status::Synced, &[]),
                ours("both", Status::Modified, &[Op::Replace]),
                ours("label", Status::Modified, &[Op::Add]),
                ours("mixed", Status::Modified, &[Op::Add, Op::Replace]),
                ours("hidden", Status::Synced, &[]),
                ours("unknown", Status::Modified, &[Op::Replace]),
                ours("unlisted", Status::Synced, &[]),
            ],
        };
        let mut pruned = theirs("old", "OutOfSync");
        pruned.requires_pruning = true;
        let mut hook = theirs("presync", "OutOfSync");
        hook.hook = true;
        let argocd = vec![
            theirs("same", "Synced"),
            theirs("both", "OutOfSync"),
            theirs("label", "Synced"),
            theirs("mixed", "Synced"),
            theirs("hidden", "OutOfSync"),
            theirs("unknown", "Unknown"),
            pruned,
            hook,
        ];
        let agreement = compare(&mut report, &argocd);
        let class = |name: &str| {
            report
                .resources
                .iter()
                .find(|r| r.name == name)
                .unwrap()
                .argocd
                .as_ref()
                .unwrap()
                .agreement
        };
        assert_eq!(class("same"), Class::Agree);
        assert_eq!(class("both"), Class::Agree);
        assert_eq!(class("label"), Class::OutOfBandAddition);
        assert_eq!(class("mixed"), Class::ArgoDriftOnly);
        assert_eq!(class("hidden"), Class::ArgoCdOnly);
        assert_eq!(class("unknown"), Class::NoVerdict);
        assert_eq!(class("unlisted"), Class::NoVerdict);
        assert_eq!(
            agreement.disagreements,
            BTreeMap::from([
                (Class::OutOfBandAddition, 1),
                (Class::ArgoDriftOnly, 1),
                (Class::ArgoCdOnly, 2),
            ])
        );
        assert_eq!(
            agreement.argocd_only,
            vec!["ConfigMap shop/old".to_string()]
        );
    }

    #[test]
    fn argo_cds_own_diff_counts_as_its_verdict() {
        let mut report = DriftReport {
            summary: Summary::default(),
            resources: vec![ours("web", Status::Synced, &[])],
        };
        let mut r = theirs("web", "Unknown");
        r.modified = Some(true);
        let agreement = compare(&mut report, &[r]);
        assert_eq!(
            agreement.disagreements,
            BTreeMap::from([(Class::ArgoCdOnly, 1)])
        );
        let view = report.resources[0].argocd.as_ref().unwrap();
        assert_eq!(view.modified, Some(true));
        assert_eq!(view.status, "Unknown");
    }
}
