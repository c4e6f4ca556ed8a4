//! Severity classification: rules written as data (group, kind, path pattern, op, live value),
//! first match wins per field; a change that adds or removes a whole subtree is as severe as the
//! most severe field inside it (a volume added with a hostPath is a hostPath change).

use std::fmt;
use std::str::FromStr;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diff::{Change, Op};
use crate::manifest::ResourceKey;
use crate::normalize::merge_keys::{selector, single_list_key};
use crate::path::{FieldPath, PathPattern, Selector, Step};

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
    Default,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    None,
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::None,
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str() == s)
            .ok_or_else(|| {
                format!("unknown severity {s:?} (one of none, info, low, medium, high, critical)")
            })
    }
}

/// A resource's state relative to Git.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Synced,
    Modified,
    /// In Git, not in the cluster.
    Missing,
    /// In the cluster, tracked by the app, not in Git.
    Extra,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Synced => "synced",
            Status::Modified => "modified",
            Status::Missing => "missing",
            Status::Extra => "extra",
        }
    }
}

/// A severity rule as written in the policy file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `missing` or `extra` for rules about whole resources; absent (or `modified`) for rules
    /// about changed fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<Op>,
    /// Match only when the live value is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live_values: Vec<Value>,
    pub severity: Severity,
    /// What to do about drift this rule matches, instead of the actions of its severity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<crate::policy::Action>,
}

/// A rule with its patterns compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub spec: RuleSpec,
    paths: Vec<PathPattern>,
}

impl Rule {
    /// Compile a rule; the error is (key path inside the rule, message).
    pub fn compile(spec: RuleSpec) -> Result<Rule, (String, String)> {
        if spec.name.trim().is_empty() {
            return Err((
                "name".into(),
                "every rule needs a name (reports cite it)".into(),
            ));
        }
        let resource_level = matches!(spec.status, Some(Status::Missing) | Some(Status::Extra));
        if resource_level
            && (!spec.paths.is_empty() || !spec.ops.is_empty() || !spec.live_values.is_empty())
        {
            return Err((
                "status".into(),
                "a rule about missing or extra resources cannot also match paths, ops or liveValues".into(),
            ));
        }
        if spec.status == Some(Status::Synced) {
            return Err((
                "status".into(),
                "synced resources have no severity to classify".into(),
            ));
        }
        let mut paths = Vec::new();
        for (i, text) in spec.paths.iter().enumerate() {
            paths.push(
                PathPattern::parse(text).map_err(|e| (format!("paths[{i}]"), e.to_string()))?,
            );
        }
        Ok(Rule { spec, paths })
    }

    fn resource_level(&self) -> bool {
        matches!(
            self.spec.status,
            Some(Status::Missing) | Some(Status::Extra)
        )
    }

    /// Whether this rule matches a field; the allocation-free twin of `mismatch`.
    fn matches(&self, key: &ResourceKey, path: &FieldPath, op: Op, live: Option<&Value>) -> bool {
        !self.resource_level()
            && self.kind_matches(key)
            && (self.spec.ops.is_empty() || self.spec.ops.contains(&op))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path)))
            && (self.spec.live_values.is_empty()
                || live.is_some_and(|v| self.spec.live_values.contains(v)))
    }

    fn kind_matches(&self, key: &ResourceKey) -> bool {
        (self.spec.groups.is_empty()
            || self.spec.groups.iter().any(|g| g == "*" || *g == key.group))
            && (self.spec.kinds.is_empty()
                || self.spec.kinds.iter().any(|k| k == "*" || *k == key.kind))
    }

    /// Why this rule does not match a field, or None when it does.
    fn mismatch(
        &self,
        key: &ResourceKey,
        path: &FieldPath,
        op: Op,
        live: Option<&Value>,
    ) -> Option<String> {
        if self.resource_level() {
            return Some(format!(
                "applies to {} resources only",
                self.spec.status.map(Status::as_str).unwrap_or("")
            ));
        }
        self.mismatch_kind(key)
            .or_else(|| {
                (!self.spec.ops.is_empty() && !self.spec.ops.contains(&op)).then(|| {
                    format!(
                        "op {} is not one of {:?}",
                        op.as_str(),
                        self.spec.ops.iter().map(|o| o.as_str()).collect::<Vec<_>>()
                    )
                })
            })
            .or_else(|| {
                (!self.paths.is_empty() && !self.paths.iter().any(|p| p.matches(path))).then(|| {
                    format!(
                        "path {path} is under none of {}",
                        self.spec.paths.join(", ")
                    )
                })
            })
            .or_else(|| {
                (!self.spec.live_values.is_empty()
                    && !live.is_some_and(|v| self.spec.live_values.contains(v)))
                .then(|| {
                    format!(
                        "live value {} is not one of {}",
                        live.map(|v| v.to_string())
                            .unwrap_or_else(|| "(absent)".into()),
                        Value::Array(self.spec.live_values.clone())
                    )
                })
            })
    }

    fn mismatch_kind(&self, key: &ResourceKey) -> Option<String> {
        if !self.spec.groups.is_empty()
            && !self.spec.groups.iter().any(|g| g == "*" || *g == key.group)
        {
            return Some(format!(
                "group {:?} is not one of {:?}",
                key.group, self.spec.groups
            ));
        }
        if !self.spec.kinds.is_empty()
            && !self.spec.kinds.iter().any(|k| k == "*" || *k == key.kind)
        {
            return Some(format!(
                "kind {} is not one of {:?}",
                key.kind, self.spec.kinds
            ));
        }
        None
    }

    /// A one-line account of what the rule matches, for `policy explain`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(status) = self.spec.status {
            parts.push(format!("{} resources", status.as_str()));
        }
        if !self.spec.groups.is_empty() {
            parts.push(format!("groups {}", self.spec.groups.join(", ")));
        }
        if !self.spec.kinds.is_empty() {
            parts.push(format!("kinds {}", self.spec.kinds.join(", ")));
        }
        if !self.spec.paths.is_empty() {
            parts.push(format!("fields under {}", self.spec.paths.join(", ")));
        }
        if !self.spec.ops.is_empty() {
            parts.push(format!(
                "ops {}",
                self.spec
                    .ops
                    .iter()
                    .map(|o| o.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !self.spec.live_values.is_empty() {
            parts.push(format!(
                "live value in {}",
                Value::Array(self.spec.live_values.clone())
            ));
        }
        if parts.is_empty() {
            "every changed field".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// The severity given to a change or resource, and the rule that gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub severity: Severity,
    pub rule: String,
}

/// The name reported when no rule matched and the default severity applied.
pub const DEFAULT_RULE: &str = "default";

/// How one candidate field was judged, for `policy explain`.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub verdict: Verdict,
    /// The matching rule's description, or how the default applied.
    pub reason: String,
    /// Rules before the matching one, with why each did not match.
    pub passed_over: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Classifier {
    rules: Vec<Rule>,
    default: Severity,
}

impl Classifier {
    pub fn new(rules: Vec<Rule>, default: Severity) -> Classifier {
        Classifier { rules, default }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn default_severity(&self) -> Severity {
        self.default
    }

    /// Severity of a missing or extra resource.
    pub fn classify_resource(&self, key: &ResourceKey, status: Status) -> Verdict {
        self.rules
            .iter()
            .find(|r| r.spec.status == Some(status) && r.kind_matches(key))
            .map(|r| Verdict {
                severity: r.spec.severity,
                rule: r.spec.name.clone(),
            })
            .unwrap_or(Verdict {
                severity: self.default,
                rule: DEFAULT_RULE.to_string(),
            })
    }

    /// Severity of one field: the first rule that matches.
    pub fn classify_field(
        &self,
        key: &ResourceKey,
        path: &FieldPath,
        op: Op,
        live: Option<&Value>,
    ) -> Verdict {
        match self.rules.iter().find(|r| r.matches(key, path, op, live)) {
            Some(rule) => Verdict {
                severity: rule.spec.severity,
                rule: rule.spec.name.clone(),
            },
            None => Verdict {
                severity: self.default,
                rule: DEFAULT_RULE.to_string(),
            },
        }
    }

    pub fn explain_field(
        &self,
        key: &ResourceKey,
        path: &FieldPath,
        op: Op,
        live: Option<&Value>,
    ) -> Explanation {
        let mut passed_over = Vec::new();
        for rule in &self.rules {
            match rule.mismatch(key, path, op, live) {
                None => {
                    return Explanation {
                        verdict: Verdict {
                            severity: rule.spec.severity,
                            rule: rule.spec.name.clone(),
                        },
                        reason: if rule.spec.description.is_empty() {
                            format!("matches {}", rule.describe())
                        } else {
                            format!("{} (matches {})", rule.spec.description, rule.describe())
                        },
                        passed_over,
                    }
                }
                Some(why) => passed_over.push((rule.spec.name.clone(), why)),
            }
        }
        Explanation {
            verdict: Verdict {
                severity: self.default,
                rule: DEFAULT_RULE.to_string(),
            },
            reason: format!(
                "no rule matched; the policy's default severity is {}",
                self.default
            ),
            passed_over,
        }
    }

    /// Severity of a change: the most severe of the change's own path and of every field inside
    /// the value it adds, removes or replaces.
    pub fn classify_change(&self, key: &ResourceKey, change: &Change) -> Verdict {
        let mut best = self.classify_field(key, &change.path, change.op, change.live.as_ref());
        let mut consider = |path: &FieldPath, live: Option<&Value>| {
            let v = self.classify_field(key, path, change.op, live);
            if v.severity > best.severity {
                best = v;
            }
        };
        if let Some(live) = &change.live {
            for_each_leaf(&change.path, live, &mut |p, v| consider(p, Some(v)));
        }
        if let Some(desired) = &change.desired {
            for_each_leaf(&change.path, desired, &mut |p, _| consider(p, None));
        }
        best
    }
}

/// Visit every leaf below a composite value (not the value itself), with its path.
fn for_each_leaf(base: &FieldPath, value: &Value, visit: &mut dyn FnMut(&FieldPath, &Value)) {
    fn walk(
        path: &mut FieldPath,
        value: &Value,
        visit: &mut dyn FnMut(&FieldPath, &Value),
        top: bool,
    ) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    path.0.push(Step::Field(k.as_str().into()));
                    walk(path, v, visit, false);
                    path.0.pop();
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let field = match path.0.last() {
                    Some(Step::Field(f)) => f.clone(),
                    _ => CompactString::default(),
                };
                let key = single_list_key(&field, items);
                for (i, item) in items.iter().enumerate() {
                    let sel = match key {
                        Some(key) => selector(item, key),
                        None => Selector::Index(i),
                    };
                    path.0.push(Step::Item {
                        selector: sel,
                        index: i,
                    });
                    walk(path, item, visit, false);
                    path.0.pop();
                }
            }
            leaf => {
                if !top {
                    visit(path, leaf)
                }
            }
        }
    }
    let mut path = base.clone();
    walk(&mut path, value, visit, true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use serde_json::json;

    /// `classify_field` (the fast path) and `explain_field` (what `policy explain` prints) are two
    /// readings of the same rules: they must never disagree.
    #[test]
    fn classification_and_explanation_agree() {
        let policy = Policy::builtin().unwrap();
        let classifier = &policy.classifier;
        let kinds = [
            ("apps", "Deployment"),
            ("", "Service"),
            ("", "Secret"),
            ("", "ConfigMap"),
            ("rbac.authorization.k8s.io", "Role"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("networking.k8s.io", "Ingress"),
            ("", "PersistentVolume"),
            ("example.com", "Widget"),
        ];
        let paths = [
            "spec.replicas",
            "spec.template.spec.containers[name=web].image",
            "spec.template.spec.containers[name=web].securityContext.runAsUser",
            "spec.template.spec.securityContext.runAsNonRoot",
            "spec.template.spec.hostNetwork",
            "spec.template.spec.volumes[name=h].hostPath.path",
            "spec.selector.app",
            "spec.externalIPs[0]",
            "spec.type",
            "spec.rules[0].host",
            "data.password",
            "rules[1]",
            "subjects[name=x]",
            "metadata.labels.team",
            "spec.template.metadata.labels.app",
            "spec.hostPath.path",
            "spec.size",
        ];
        let lives = [None, Some(json!(0)), Some(json!(false)), Some(json!("x"))];
        let mut checked = 0;
        for (group, kind) in kinds {
            let key = ResourceKey {
                group: group.into(),
                kind: kind.into(),
                namespace: "n".into(),
                name: "x".into(),
            };
            for path in paths {
                let path = FieldPath::parse(path).unwrap();
                for op in [Op::Add, Op::Remove, Op::Replace] {
                    for live in &lives {
                        let fast = classifier.classify_field(&key, &path, op, live.as_ref());
                        let explained = classifier
                            .explain_field(&key, &path, op, live.as_ref())
                            .verdict;
                        assert_eq!(fast, explained, "{kind} {path} {op:?} {live:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, kinds.len() * paths.len() * 3 * lives.len());
    }
}
