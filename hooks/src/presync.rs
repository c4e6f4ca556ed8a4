//! PreSync: what the sync about to run will change, and which out-of-band changes it will
//! overwrite (with the managers who made them), classified by the policy and written to an
//! analysis ConfigMap for PostSync. The gate: exit 1, so Argo CD fails the sync, when either is
//! at or above the app's gate severity and nobody approved this revision.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use argo_drift_controller::application::Application;
use argo_drift_controller::argocd::ArgoCd;
use argo_drift_controller::cli::PolicyArgs;
use argo_drift_controller::desired::Sources;
use argo_drift_controller::publish::label_value;
use argo_drift_controller::reconcile::{compile_ignores, tracking_name};
use argo_drift_core::manifest::{index_by_key, Origin, ResourceKey, Scopes};
use argo_drift_core::normalize::{prepare, Prepared};
use argo_drift_core::report::{analyse, AnalyseOptions, DriftReport};
use argo_drift_core::{Severity, Status};
use kube::api::{DynamicObject, GroupVersionKind};
use kube::discovery::{pinned_kind, Scope};
use kube::{Api, Client};
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
    pub global: argo_drift_controller::cli::GlobalArgs,
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
    let object = target::load(&client, &target).await?;
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
    let policy = argo_drift_controller::commands::load_policy(&args.policy)?;
    let records = args.common.app_namespace.clone();

    let argocd = match args.common.argocd.settings()? {
        Some(s) => Some(ArgoCd::new(s)?),
        None => None,
    };
    let secrets = repo_secrets(&client, &records).await;
    let sources = Sources {
        repos: repos(&args.repo_cache),
        argocd: argocd.as_ref(),
        repo_secrets: &secrets,
        known_hosts: known_hosts(&client, &records).await,
    };
    let (resources, commit) = sources.render(&app, Some(&revision)).await?;
    let commit = commit.unwrap_or_else(|| revision.clone());

    // Kinds through discovery: scope decides where a namespace is filled in.
    let mut scopes = Scopes::default();
    let mut apis: BTreeMap<(String, String), (kube::api::ApiResource, bool)> = BTreeMap::new();
    for r in &resources {
        let id = (r.api_version.clone(), r.key.kind.clone());
        if apis.contains_key(&id) {
            continue;
        }
        let (group, version) = r
            .api_version
            .split_once('/')
            .unwrap_or(("", r.api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &r.key.kind);
        let (resource, caps) = pinned_kind(&client, &gvk).await.with_context(|| {
            format!(
                "{} {}: unknown to the API server",
                r.api_version, r.key.kind
            )
        })?;
        let namespaced = caps.scope == Scope::Namespaced;
        scopes.learn(&r.key.group, &r.key.kind, !namespaced);
        apis.insert(id, (resource, namespaced));
    }
    let default_namespace = if app.destination_namespace.is_empty() {
        "default".to_string()
    } else {
        app.destination_namespace.clone()
    };
    let mut prepared = Vec::new();
    for r in resources {
        let mut p = prepare(r, &policy.tracking);
        p.resolve_namespace(&default_namespace, &scopes);
        prepared.push(p);
    }
    let mut desired = index_by_key(prepared)?;
    let (live, unreadable) = live_objects(&client, &desired, &apis, &policy).await?;
    // What the hooks may not read (a Secret outside the hook's namespace) is not compared:
    // neither a change nor an overwrite, but named in the analysis.
    for key in &unreadable {
        desired.remove(key);
    }
    let options = AnalyseOptions {
        app: Some(tracking_name(&app, &records)),
        patches: false,
        text_diffs: false,
        app_ignore: Arc::new(compile_ignores(&app)?),
        sensitive_annotations: Arc::default(),
        argocd_secret_differences: None,
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
        "gate": {"severity": gate_text, "approved": approved, "closed": closed && !args.common.dry_run},
        "analysedAt": audit::timestamp(),
    });
    let name = analysis_name(&target.name, &commit);
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

/// The live counterparts of the desired objects, read one by one (a hook lives for seconds:
/// no watches), and the objects the hooks may not read (403).
async fn live_objects(
    client: &Client,
    desired: &BTreeMap<ResourceKey, Prepared>,
    apis: &BTreeMap<(String, String), (kube::api::ApiResource, bool)>,
    policy: &argo_drift_core::Policy,
) -> anyhow::Result<(BTreeMap<ResourceKey, Prepared>, Vec<ResourceKey>)> {
    let source: Arc<str> = Arc::from("live");
    let mut live = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (key, d) in desired {
        let Some((resource, namespaced)) = apis.get(&(d.api_version.clone(), key.kind.clone()))
        else {
            continue;
        };
        let api: Api<DynamicObject> = if *namespaced {
            Api::namespaced_with(client.clone(), &key.namespace, resource)
        } else {
            Api::all_with(client.clone(), resource)
        };
        let object = match api.get_opt(&key.name).await {
            Ok(Some(object)) => object,
            Ok(None) => continue,
            Err(kube::Error::Api(status)) if status.code == 403 => {
                unreadable.push(key.clone());
                continue;
            }
            Err(e) => {
                return Err(
                    argo_drift_controller::error::Error::kube(format!("reading {key}"))(e).into(),
                )
            }
        };
        let mut value = serde_json::to_value(&object).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("apiVersion".into(), Value::String(d.api_version.clone()));
            map.insert("kind".into(), Value::String(key.kind.clone()));
        }
        let origin = Origin {
            source: source.clone(),
            document: 1,
            item: None,
            line: 1,
        };
        let resource = argo_drift_core::Resource::from_object(value, origin)?;
        live.insert(key.clone(), prepare(resource, &policy.tracking));
    }
    Ok((live, unreadable))
}
