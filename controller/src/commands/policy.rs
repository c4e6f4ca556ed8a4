//! `argo-drift policy explain` and `argo-drift policy validate`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use argo_drift_core::classify::Status;
use argo_drift_core::diff::Op;
use argo_drift_core::path::FieldPath;
use argo_drift_core::{Policy, ResourceKey};
use serde_json::Value;

use crate::cli::{ExplainArgs, ValidateArgs};
use crate::output::print_stdout;

/// The API group of well-known kinds, so that `--kind Deployment` needs no `--group apps`.
fn guess_group(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "ControllerRevision" => "apps",
        "Job" | "CronJob" => "batch",
        "Ingress" | "IngressClass" | "NetworkPolicy" => "networking.k8s.io",
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
            "rbac.authorization.k8s.io"
        }
        "HorizontalPodAutoscaler" => "autoscaling",
        "PodDisruptionBudget" => "policy",
        "CustomResourceDefinition" => "apiextensions.k8s.io",
        "StorageClass" | "VolumeAttachment" | "CSIDriver" => "storage.k8s.io",
        "PriorityClass" => "scheduling.k8s.io",
        "Application" | "AppProject" | "ApplicationSet" => "argoproj.io",
        _ => "",
    }
}

pub fn explain(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let policy = super::load_policy(&args.policy)?;
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| guess_group(&args.kind).to_string());
    let key = ResourceKey {
        group,
        kind: args.kind.clone(),
        namespace: String::new(),
        name: String::new(),
    };
    let kind_label = if key.group.is_empty() {
        key.kind.clone()
    } else {
        format!("{}.{}", key.kind, key.group)
    };
    let mut out = String::new();
    writeln!(out, "policy:   {}", policy.source)?;
    writeln!(out, "kind:     {kind_label}")?;
    if let Some(status) = &args.status {
        let status = if status == "missing" {
            Status::Missing
        } else {
            Status::Extra
        };
        let verdict = policy.classifier.classify_resource(&key, status);
        writeln!(out, "resource: {}", status.as_str())?;
        writeln!(out, "severity: {}", verdict.severity)?;
        let rule = policy
            .classifier
            .rules()
            .iter()
            .find(|r| r.spec.name == verdict.rule);
        match rule {
            Some(rule) => writeln!(out, "rule:     {} ({})", verdict.rule, describe(rule))?,
            None => writeln!(
                out,
                "rule:     default (no rule matched; the policy's default severity applies)"
            )?,
        }
        print_stdout(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let path_text = args.path.as_deref().unwrap_or_default();
    let path = FieldPath::parse(path_text)?;
    let op = Op::parse(&args.op).context("--op must be add, remove or replace")?;
    let live_value = args
        .live_value
        .as_deref()
        .map(|v| serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_string())));
    let explanation = policy
        .classifier
        .explain_field(&key, &path, op, live_value.as_ref());
    writeln!(out, "field:    {path} (op {})", op.as_str())?;
    if let Some(v) = &live_value {
        writeln!(out, "live:     {v}")?;
    }
    writeln!(out, "severity: {}", explanation.verdict.severity)?;
    writeln!(out, "rule:     {}", explanation.verdict.rule)?;
    writeln!(out, "why:      {}", explanation.reason)?;
    if !explanation.passed_over.is_empty() {
        writeln!(out, "\nearlier rules that did not match:")?;
        for (name, why) in &explanation.passed_over {
            writeln!(out, "  {name}: {why}")?;
        }
    }
    print_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn describe(rule: &argo_drift_core::classify::Rule) -> String {
    if rule.spec.description.is_empty() {
        format!("matches {}", rule.describe())
    } else {
        format!("{}; matches {}", rule.spec.description, rule.describe())
    }
}

pub fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading policy file {}", args.file.display()))?;
    match Policy::from_yaml(&args.file.display().to_string(), &text) {
        Ok(policy) => {
            print_stdout(&format!(
                "{}: valid ({} severity rules, {} ignoreDifferences entries, default severity {})\n",
                args.file.display(),
                policy.classifier.rules().len(),
                policy.ignore.len(),
                policy.classifier.default_severity()
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("invalid policy: {err}");
            Ok(ExitCode::from(1))
        }
    }
}
