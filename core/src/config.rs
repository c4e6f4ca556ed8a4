//! The policy file (`config/policy.yaml`): read as raw serde structs, then validated and compiled
//! once (patterns parsed, jq compiled). Errors name the file, the key path and the bad value.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::classify::{Classifier, Rule, RuleSpec, Severity};
use crate::error::{Error, Result};
use crate::normalize::ignore::{IgnoreDifferences, IgnoreRule};
use crate::normalize::{Managers, TrackingKeys};
use crate::policy::{Remediation, RemediationSpec};

pub const DEFAULT_POLICY_NAME: &str = "<built-in config/policy.yaml>";
/// The policy shipped with argo-drift, used when no `--policy` is given: config/policy.yaml as
/// JSON, converted by build.rs (read at every start without `--policy`, for a tenth of the YAML's
/// cost).
const DEFAULT_POLICY_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/policy.json"));
pub const API_VERSION: &str = "argo-drift.io/v1alpha1";
pub const KIND: &str = "DriftPolicy";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub managers: Managers,
    #[serde(default)]
    pub tracking: TrackingKeys,
    #[serde(default)]
    pub ignore_differences: Vec<IgnoreDifferences>,
    #[serde(default)]
    pub severity: SeveritySpec,
    #[serde(default)]
    pub remediation: RemediationSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeveritySpec {
    /// Severity of a change no rule matches.
    #[serde(default = "SeveritySpec::default_severity")]
    pub default: Severity,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// The JSON Schema of the policy file (committed as `config/policy.schema.json` for editors).
pub fn schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(PolicyFile)).unwrap_or_default();
    schema["title"] = "argo-drift DriftPolicy".into();
    schema
}

impl SeveritySpec {
    fn default_severity() -> Severity {
        Severity::Medium
    }
}

impl Default for SeveritySpec {
    fn default() -> Self {
        SeveritySpec {
            default: Severity::Medium,
            rules: Vec::new(),
        }
    }
}

/// A validated, compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub source: String,
    pub managers: Managers,
    pub tracking: TrackingKeys,
    pub ignore: Vec<IgnoreRule>,
    pub classifier: Classifier,
    pub remediation: Remediation,
}

impl Policy {
    /// The built-in default policy.
    pub fn builtin() -> Result<Policy> {
        let raw: PolicyFile =
            serde_json::from_str(DEFAULT_POLICY_JSON).map_err(|e| Error::LoadPolicy {
                file: DEFAULT_POLICY_NAME.to_string(),
                key_path: "(document)".to_string(),
                message: e.to_string(),
            })?;
        Policy::compile(DEFAULT_POLICY_NAME, raw)
    }

    /// Parse and compile a policy; `file` names it in errors.
    pub fn from_yaml(file: &str, text: &str) -> Result<Policy> {
        let raw: PolicyFile = serde_yaml::from_str(text).map_err(|e| {
            let key_path = e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "(document)".to_string());
            let message = e.to_string();
            let message = match message.find(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            Error::LoadPolicy {
                file: file.to_string(),
                key_path,
                message,
            }
        })?;
        Policy::compile(file, raw)
    }

    pub fn compile(file: &str, raw: PolicyFile) -> Result<Policy> {
        let fail = |key_path: String, message: String| Error::LoadPolicy {
            file: file.to_string(),
            key_path,
            message,
        };
        if let Some(v) = &raw.api_version {
            if v != API_VERSION {
                return Err(fail(
                    "apiVersion".into(),
                    format!("{v:?} is not {API_VERSION:?}"),
                ));
            }
        }
        if let Some(k) = &raw.kind {
            if k != KIND {
                return Err(fail("kind".into(), format!("{k:?} is not {KIND:?}")));
            }
        }
        let mut ignore = Vec::new();
        for (i, spec) in raw.ignore_differences.into_iter().enumerate() {
            ignore.push(IgnoreRule::compile(spec).map_err(|(key, message)| {
                fail(format!("ignoreDifferences[{i}].{key}"), message)
            })?);
        }
        let mut names = HashSet::new();
        let mut rules = Vec::new();
        let mut rule_actions = BTreeMap::new();
        for (i, spec) in raw.severity.rules.into_iter().enumerate() {
            if !spec.actions.is_empty() {
                rule_actions.insert(spec.name.clone(), spec.actions.clone());
            }
            if !names.insert(spec.name.clone()) {
                return Err(fail(
                    format!("severity.rules[{i}].name"),
                    format!(
                        "{:?} is used by an earlier rule; names must be unique",
                        spec.name
                    ),
                ));
            }
            rules.push(
                Rule::compile(spec).map_err(|(key, message)| {
                    fail(format!("severity.rules[{i}].{key}"), message)
                })?,
            );
        }
        let remediation = Remediation::compile(raw.remediation, rule_actions)
            .map_err(|(key, message)| fail(format!("remediation.{key}"), message))?;
        Ok(Policy {
            remediation,
            source: file.to_string(),
            managers: raw.managers,
            tracking: raw.tracking,
            ignore,
            classifier: Classifier::new(rules, raw.severity.default),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped policy as users read it.
    const DEFAULT_POLICY: &str = include_str!("../../config/policy.yaml");

    #[test]
    fn the_builtin_policy_compiles() {
        let policy = Policy::builtin().unwrap();
        assert!(policy.classifier.rules().len() > 20);
        assert_eq!(policy.classifier.default_severity(), Severity::Medium);
    }

    #[test]
    fn the_builtin_policy_is_the_yaml_file_read_from_its_json_form() {
        let from_yaml: PolicyFile = serde_yaml::from_str(DEFAULT_POLICY).unwrap();
        let from_json: PolicyFile = serde_json::from_str(DEFAULT_POLICY_JSON).unwrap();
        assert_eq!(from_json, from_yaml);
        // And compiled alike: the compiled policy has no equality, its debug form says it all.
        assert_eq!(
            format!("{:?}", Policy::builtin().unwrap()),
            format!(
                "{:?}",
                Policy::from_yaml(DEFAULT_POLICY_NAME, DEFAULT_POLICY).unwrap()
            )
        );
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_value() {
        let err = Policy::from_yaml(
            "p.yaml",
            "severity:\n  rules:\n  - name: a\n    paths: ['spec[']\n    severity: high\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("p.yaml: severity.rules[0].paths[0]:"),
            "{err}"
        );
        assert!(err.contains("spec["), "{err}");
        let err = Policy::from_yaml(
            "p.yaml",
            "severity:\n  rules:\n  - name: a\n    sevrity: high\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("p.yaml: line 4")
                && err.contains("severity.rules[0]")
                && err.contains("sevrity"),
            "{err}"
        );
        let err = Policy::from_yaml(
            "p.yaml",
            "severity:\n  rules:\n  - name: a\n    severity: urgent\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("urgent"), "{err}");
        let dup =
            "severity:\n  rules:\n  - {name: a, severity: low}\n  - {name: a, severity: high}\n";
        let err = Policy::from_yaml("p.yaml", dup).unwrap_err().to_string();
        assert!(err.contains("severity.rules[1].name"), "{err}");
    }
}
