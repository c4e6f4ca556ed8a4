//! PreSync: what the sync about to run will change, and which out-of-band changes it will
//! overwrite (with the managers who made them), classified by the policy and written to an
//! analysis ConfigMap for PostSync. The gate: exit 1, so Argo CD fails the sync, when either is
//! at or above the app's gate severity and nobody approved this revision.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use argo_drift_cluster::application::Application;
use argo_drift_cluster::application::{compile_ignores, tracking_name};
use argo_drift_cluster::discovery::{place, Kinds};
use argo_drift_cluster::live::read_once;
use argo_drift_cluster::process::PolicyArgs;
use argo_drift_cluster::records::label_value;
use argo_drift_core::argocd_cm::ArgoCdSettings;
use argo_drift_core::manifest::index_by_key;
use argo_drift_core::report::{analyse, AnalyseOptions, DriftReport};
use argo_drift_core::{Severity, Status};
use argo_drift_desired::argocd::ArgoCd;
use argo_drift_desired::Sources;
use kube::Client;
use serde_json::{json, Value};

use crate::postsync::{known_hosts, repo_secrets, repos};
use crate::{audit, short, target, text, Common, Outcome};

/// On the Application: the severity at which the sync is stopped (or `none`).
pub const GATE_ANNOTATION: &str = "argo-drift.io/gate";
/// On the Application: the revision a human approved to sync past the gate.
pub const APPROVE_ANNOTATION: &str = "argo-drift.io/approve-sync";
pub const ANALYSIS_LABEL: &str = "argo-drift.io/analysis";

#[derive(Debug, clap::Parser)]
#[command(
    name = "argo-drift-presync",
    version,
    about = "Argo CD PreSync hook: analyse what the sync will change and gate it",
    long_about = "Run as an Argo CD PreSync hook. Renders the application at the revision being synced, compares it with the cluster, and writes ConfigMap argo-drift-analysis-<app>-<revision>: what the sync will change (classified by the policy) and which out-of-band changes it will overwrite, with their managers. Fails the sync when either is at or above the gate severity (annotation argo-drift.io/gate on the Application, else --gate) unless the Application carries argo-drift.io/approve-sync: <revision>.\n\nExit codes: 0 sync may go on, 1 gate closed, 2 error."
)]
pub struct Args {
    #[command(flatten)]
    pub global: argo_drift_cluster::process::GlobalArgs,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Gate severity when the Application does not set argo-drift.io/gate (`none`: no gate).
    #[arg(
        long,
        env = "ARGO_DRIFT_GATE",
        default_value = "critical",
        value_name = "SEVERITY"
    )]
    pub gate: String,
    /// Where Git repositories are cloned (bare).
    #[arg(
        long,
        env = "ARGO_DRIFT_REPO_CACHE",
        default_value = "/tmp/argo-drift-repos",
        value_name = "DIR"
    )]
    pub repo_cache: PathBuf,
}

pub fn analysis_name(app: &str, revision: &str) -> String {
    audit::name(&["argo-drift-analysis", app, short(revision)])
}

/// `none` or a severity.
fn parse_gate(text: &str) -> anyhow::Result<Option<Severity>> {
    if text == "none" {
        return Ok(None);
    }
    text.parse::<Severity>()
        .map(Some)
        .map_err(|e| anyhow::anyhow!("gate: {e} (or none)"))
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let target = target::find(&client, &args.common).await?;
    let argocd = args.common.argocd()?;
    let object = target::load(&client, argocd.as_ref(), &target).await?;
    let app_value = serde_json::to_value(&object).unwrap_or(Value::Null);
    let full = format!("{}/{}", target.namespace, target.name);
    let app = Application::parse(&object)?;
    let running = text(&app_value, "/status/operationState/phase") == Some("Running");
    let requested = app_value.get("operation").is_some_and(|o| !o.is_null());
    if !running && !requested {
        bail!("Application {full} has no sync operation running: PreSync runs inside a sync");
    }
    let revision = text(&app_value, "/operation/sync/revision")
        .or_else(|| text(&app_value, "/status/operationState/operation/sync/revision"))
        .map(str::to_string)
        .or_else(|| app.sources.first().map(|s| s.target_revision.clone()))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "HEAD".into());
    let mut policy = argo_drift_cluster::process::load_policy(&args.policy)?;
    let records = args.common.records_namespace.clone();
    let argocd_namespace = args.common.app_namespace.clone();
    // Argo CD's settings are the baseline, as in the controller: its tracking, ignore rules,
    // known types, exclusions and masked annotations.
    let (settings, settings_from) =
        argocd_settings(&client, argocd.as_ref(), &argocd_namespace).await?;
    settings.apply_tracking(&mut policy.tracking);
    let mut app_ignore = settings.ignore_rules.clone();
    app_ignore.extend(compile_ignores(&app)?);

    let secrets = repo_secrets(&client, &argocd_namespace).await;
    let sources = Sources {
        repos: repos(&args.repo_cache),
        argocd: argocd.as_ref(),
        repo_secrets: &secrets,
        known_hosts: known_hosts(&client, &argocd_namespace).await,
    };
    let (resources, commit) = sources.render(&app, Some(&revision)).await?;
    let commit = commit.unwrap_or_else(|| revision.clone());
    // Kinds Argo CD does not manage on the destination are neither applied nor compared.
    let server = if app.destination_server.is_empty() {
        argo_drift_cluster::clusters::IN_CLUSTER_SERVER
    } else {
        app.destination_server.as_str()
    };
    let resources: Vec<_> = resources
        .into_iter()
        .filter(|r| {
            !settings
                .resources
                .is_excluded(&r.key.group, &r.key.kind, server)
        })
        .collect();

    // Kinds, namespaces and live objects as the controller reads them (argo-drift-cluster),
    // once each: a hook lives for seconds, so no watches.
    let kinds = Kinds::new(client.clone());
    let placed = place(
        &kinds,
        resources,
        &policy.tracking,
        &app.destination_namespace,
    )
    .await?;
    let wanted: Vec<_> = placed
        .iter()
        .map(|(p, kind)| (p.key.clone(), p.api_version.clone(), kind.clone()))
        .collect();
    let mut desired = index_by_key(placed.into_iter().map(|(p, _)| p).collect())?;
    let (live, unreadable) = read_once(&client, &wanted, &policy.tracking).await?;
    // What the hooks may not read (a Secret outside the hook's namespace) is not compared:
    // neither a change nor an overwrite, but named in the analysis.
    for key in &unreadable {
        desired.remove(key);
    }
    let options = AnalyseOptions {
        app: Some(tracking_name(&app, &argocd_namespace)),
        patches: false,
        text_diffs: false,
        app_ignore: Arc::new(app_ignore),
        sensitive_annotations: Arc::new(settings.sensitive_annotations.clone()),
        argocd_secret_differences: None,
        known_types: settings.known_types.clone(),
    };
    let report = analyse(desired, &live, &policy, &options);
    let (changes, overwrites) = describe(&report, &policy.managers.gitops);
    let change_severity = changes.iter().map(|c| c.1).max().unwrap_or(Severity::None);
    let overwrite_severity = overwrites
        .iter()
        .map(|c| c.1)
        .max()
        .unwrap_or(Severity::None);
    let severity = change_severity.max(overwrite_severity);

    let gate_text = object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(GATE_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| args.gate.clone());
    let gate = parse_gate(&gate_text)
        .with_context(|| format!("Application {full} annotation {GATE_ANNOTATION} or --gate"))?;
    let approval = object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(APPROVE_ANNOTATION))
        .cloned();
    let approved = approval.as_deref().is_some_and(|a| {
        a.len() >= 7 && (commit.starts_with(a) || revision.starts_with(a) || a == revision)
    });
    let closed = gate.is_some_and(|g| severity >= g && severity > Severity::None) && !approved;

    let analysis = json!({
        "application": full,
        "revision": revision,
        "commit": commit,
        "severity": severity.as_str(),
        "changeSeverity": change_severity.as_str(),
        "overwriteSeverity": overwrite_severity.as_str(),
        "summary": {
            "resources": report.summary.resources,
            "changes": changes.len(),
            "overwrites": overwrites.len(),
            "created": report.summary.missing,
        },
        "changes": changes.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
        "overwrites": overwrites.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
        "notCompared": unreadable.iter().map(|k| json!({"resource": k.to_string(),
            "why": "the hooks' ServiceAccount may not read it"})).collect::<Vec<_>>(),
        "argocdSettings": settings_from,
        "gate": {"severity": gate_text, "approved": approved, "closed": closed && !args.common.dry_run},
        "analysedAt": audit::timestamp(),
    });
    let name = analysis_name(&target.tracking_name(&argocd_namespace), &commit);
    let how_to_approve = format!(
        "kubectl -n {} annotate application {} {APPROVE_ANNOTATION}={} --overwrite",
        target.namespace,
        target.name,
        short(&commit)
    );
    let summary = format!(
        "{full} at {}: {} change(s) up to {change_severity}, overwriting {} out-of-band change(s) up to {overwrite_severity}{}; gate {gate_text}",
        short(&commit),
        changes.len(),
        overwrites.len(),
        if unreadable.is_empty() {
            String::new()
        } else {
            format!(
                "; {} resource(s) not compared (not readable by the hooks: {})",
                unreadable.len(),
                unreadable
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    if !args.common.dry_run {
        let labels = BTreeMap::from([
            (ANALYSIS_LABEL.to_string(), "presync".to_string()),
            ("argo-drift.io/app".to_string(), label_value(&target.name)),
            (
                "argo-drift.io/app-namespace".to_string(),
                target.namespace.clone(),
            ),
            (
                "argo-drift.io/severity".to_string(),
                severity.as_str().to_string(),
            ),
            (
                "app.kubernetes.io/managed-by".to_string(),
                "argo-drift".to_string(),
            ),
        ]);
        let mut record = analysis.clone();
        let data = BTreeMap::from([(
            "analysis.json".to_string(),
            crate::postsync::fit(&mut record),
        )]);
        audit::write(&client, &records, &name, &labels, &data).await?;
        let selector = format!(
            "{ANALYSIS_LABEL}=presync,argo-drift.io/app={},argo-drift.io/app-namespace={}",
            label_value(&target.name),
            target.namespace
        );
        audit::keep_newest(&client, &records, &selector, args.common.keep).await;
    }
    if closed {
        let why = format!(
            "{summary}: at or above the gate and not approved; to let it through: {how_to_approve}"
        );
        if args.common.dry_run {
            return Ok(Outcome::Done(format!(
                "dry-run: would close the gate: {why}"
            )));
        }
        tracing::warn!(analysis = %name, "{why}");
        let n = argo_drift_notify::Notification {
            kind: argo_drift_notify::EventKind::SyncGated,
            app: full.clone(),
            severity,
            summary: summary.clone(),
            changes: Vec::new(),
            decision: Some(format!("sync stopped; to let it through: {how_to_approve}")),
            incident: format!("argo-drift/{full}/presync/{commit}"),
            time: audit::timestamp(),
        };
        if let Some(failure) = crate::notify(
            args.common.notifications.as_ref(),
            "/argo-drift/hooks/presync",
            n,
        )
        .await
        {
            tracing::warn!(failure, "the sync-gated notification was not delivered");
        }
        return Ok(Outcome::Refused(why));
    }
    let approved_note = if approved && gate.is_some_and(|g| severity >= g) {
        " (approved)"
    } else {
        ""
    };
    Ok(Outcome::Done(format!(
        "{summary}{approved_note}; analysis in {name}"
    )))
}

/// A change as the analysis shows it, and its severity.
type Line = (Value, Severity);

/// The change lines, and those of them that overwrite an out-of-band change (a manager that is
/// not a GitOps one made the live value): (line, severity).
fn describe(report: &DriftReport, gitops: &[String]) -> (Vec<Line>, Vec<Line>) {
    let mut changes = Vec::new();
    let mut overwrites = Vec::new();
    for r in report
        .resources
        .iter()
        .filter(|r| r.status != Status::Synced)
    {
        let resource = r.key().to_string();
        if r.changes.is_empty() {
            let what = if r.status == Status::Missing {
                "create"
            } else {
                r.status.as_str()
            };
            changes.push((
                json!({"resource": resource, "change": what, "severity": r.severity.as_str()}),
                r.severity,
            ));
            continue;
        }
        for c in &r.changes {
            let line = json!({
                "resource": resource,
                "field": c.field,
                "op": c.op,
                "severity": c.severity.as_str(),
                "rule": c.rule,
                "manager": c.manager,
                "desired": c.desired,
                "live": c.live,
            });
            let out_of_band = c.manager.as_ref().is_some_and(|m| !gitops.contains(m));
            if out_of_band {
                overwrites.push((line.clone(), c.severity));
            }
            changes.push((line, c.severity));
        }
    }
    (changes, overwrites)
}

/// Argo CD's settings, and where they came from: Argo CD's API when configured (it answers on
/// any cluster), else `argocd-cm` when this ServiceAccount may read it, else Argo CD's defaults
/// (the analysis says why). Settings Argo CD could not read either fail the hook, naming the key.
async fn argocd_settings(
    client: &Client,
    argocd: Option<&ArgoCd>,
    argocd_namespace: &str,
) -> anyhow::Result<(ArgoCdSettings, String)> {
    let mut tried = Vec::new();
    if let Some(argocd) = argocd {
        match argocd.settings().await {
            Ok(answer) => {
                return Ok((
                    argo_drift_cluster::settings::from_api(&answer)?,
                    "Argo CD's settings API".into(),
                ))
            }
            Err(e) => tried.push(e.to_string()),
        }
    }
    match argo_drift_cluster::settings::read(client, argocd_namespace).await? {
        Ok(settings) => Ok((
            settings,
            format!(
                "{argocd_namespace}/{}",
                argo_drift_cluster::settings::ARGOCD_CM
            ),
        )),
        Err(why) => {
            tried.push(why);
            let note = format!("Argo CD's defaults ({})", tried.join("; "));
            tracing::warn!("Argo CD's settings not read: using {note}");
            Ok((ArgoCdSettings::default(), note))
        }
    }
}
