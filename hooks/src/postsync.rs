//! PostSync: the audit record of a sync — who asked for it, which commit (author, date,
//! message from Git), what PreSync said it would change, and what each resource's sync did —
//! as a ConfigMap a compliance reviewer can read, the newest N per app kept.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use argo_drift_cluster::application::Application;
use argo_drift_cluster::records::label_value;
use argo_drift_desired::repo::Repos;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::{audit, short, target, text, Common, Outcome};

pub const AUDIT_TYPE_LABEL: &str = "audit-type";
pub const AUDIT_TYPE: &str = "drift-remediation";
/// Tells sync audits from the controller's remediation audits (same `audit-type`).
pub const RECORD_LABEL: &str = "argo-drift.io/record";
/// Room under the 1 MiB ConfigMap limit for metadata.
const RECORD_LIMIT: usize = 900 * 1024;

#[derive(Debug, clap::Parser)]
#[command(
    name = "argo-drift-postsync",
    version,
    about = "Argo CD PostSync hook: write the sync's audit record",
    long_about = "Run as an Argo CD PostSync hook. Writes a ConfigMap (labels audit-type=drift-remediation, argo-drift.io/app, argo-drift.io/severity) with the application, project, revision and previous revision, the commit's author, date and message from Git, who initiated the sync, the PreSync analysis, the sync result per resource and timestamps; keeps the newest N per application.\n\nExit codes: 0 recorded, 2 error."
)]
pub struct Args {
    #[command(flatten)]
    pub global: argo_drift_cluster::process::GlobalArgs,
    #[command(flatten)]
    pub common: Common,
    /// Where Git repositories are cloned (bare) to read commit details.
    #[arg(
        long,
        env = "ARGO_DRIFT_REPO_CACHE",
        default_value = "/tmp/argo-drift-repos",
        value_name = "DIR"
    )]
    pub repo_cache: PathBuf,
}

/// The revision being (or just) synced.
pub fn synced_revision(app: &Value) -> Option<String> {
    text(app, "/status/operationState/syncResult/revision")
        .or_else(|| text(app, "/status/operationState/operation/sync/revision"))
        .or_else(|| text(app, "/operation/sync/revision"))
        .or_else(|| text(app, "/status/sync/revision"))
        .map(str::to_string)
}

/// The newest history revision other than `current`.
pub fn previous_revision(app: &Value, current: &str) -> Option<String> {
    app.pointer("/status/history")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|h| {
            Some((
                h.get("id").and_then(Value::as_i64)?,
                text(h, "/revision")?.to_string(),
            ))
        })
        .filter(|(_, r)| r != current)
        .max_by_key(|(id, _)| *id)
        .map(|(_, r)| r)
}

/// Argo CD's repository Secrets, for private repositories; none when this hook may not read
/// them (then public repositories still work).
pub async fn repo_secrets(client: &Client, namespace: &str) -> Vec<Secret> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .list(
            &ListParams::default()
                .labels("argocd.argoproj.io/secret-type in (repository,repo-creds)"),
        )
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

pub async fn known_hosts(client: &Client, namespace: &str) -> String {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt("argocd-ssh-known-hosts-cm")
        .await
        .ok()
        .flatten()
        .and_then(|c| c.data?.get("ssh_known_hosts").cloned())
        .unwrap_or_default()
}

pub fn repos(cache: &std::path::Path) -> Arc<Repos> {
    Arc::new(Repos::new(
        cache.to_path_buf(),
        Duration::ZERO,
        Default::default(),
    ))
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let target = target::find(&client, &args.common).await?;
    let argocd = args.common.argocd()?;
    let object = target::load(&client, argocd.as_ref(), &target).await?;
    let app = serde_json::to_value(&object).unwrap_or(Value::Null);
    let full = format!("{}/{}", target.namespace, target.name);
    let revision = synced_revision(&app)
        .with_context(|| format!("Application {full} names no synced revision"))?;
    let previous = previous_revision(&app, &revision);
    let records = &args.common.records_namespace;
    let argocd_namespace = &args.common.app_namespace;

    // The commit from Git; a failure to read it is recorded, not fatal: the audit must exist.
    let commit = match Application::parse(&object) {
        Ok(parsed)
            if parsed.sources.len() == 1
                && !matches!(
                    parsed.sources[0].kind,
                    Some(argo_drift_cluster::application::SourceKind::Rendered(_))
                ) =>
        {
            let url = parsed.sources[0].repo_url.clone();
            let secrets = repo_secrets(&client, argocd_namespace).await;
            let credentials = argo_drift_desired::credentials_for(&secrets, &url);
            let known = known_hosts(&client, argocd_namespace).await;
            let repos = repos(&args.repo_cache);
            let rev = revision.clone();
            match tokio::task::spawn_blocking(move || {
                repos.commit_info(&url, &rev, credentials.as_ref(), &known)
            })
            .await
            {
                Ok(Ok(info)) => json!(info),
                Ok(Err(e)) => json!({"error": e.to_string()}),
                Err(e) => json!({"error": e.to_string()}),
            }
        }
        Ok(_) => json!({"error": "not a single Git source: no commit details"}),
        Err(e) => json!({"error": e.to_string()}),
    };
    let analysis_name =
        crate::presync::analysis_name(&target.tracking_name(argocd_namespace), &revision);
    let analysis: Value = audit::read(&client, records, &analysis_name)
        .await?
        .and_then(|d| d.get("analysis.json").cloned())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let severity = analysis
        .pointer("/severity")
        .and_then(Value::as_str)
        .unwrap_or("none")
        .to_string();
    let operation = app
        .pointer("/status/operationState")
        .cloned()
        .unwrap_or(Value::Null);
    let mut record = json!({
        "application": full,
        "project": app.pointer("/spec/project").cloned().unwrap_or(Value::Null),
        "revision": revision,
        "previousRevision": previous,
        "commit": commit,
        "initiatedBy": operation.pointer("/operation/initiatedBy").cloned().unwrap_or(Value::Null),
        "phase": operation.get("phase").cloned().unwrap_or(Value::Null),
        "message": operation.get("message").cloned().unwrap_or(Value::Null),
        "startedAt": operation.get("startedAt").cloned().unwrap_or(Value::Null),
        "finishedAt": operation.get("finishedAt").cloned().unwrap_or(Value::Null),
        "recordedAt": audit::timestamp(),
        "resources": operation.pointer("/syncResult/resources").cloned().unwrap_or(json!([])),
        "presync": analysis,
    });
    let text = fit(&mut record);
    let name = audit::name(&[
        "argo-drift-audit",
        &target.tracking_name(argocd_namespace),
        short(&revision),
        &audit::now().to_string(),
    ]);
    let labels = BTreeMap::from([
        (AUDIT_TYPE_LABEL.to_string(), AUDIT_TYPE.to_string()),
        (RECORD_LABEL.to_string(), "sync".to_string()),
        ("argo-drift.io/app".to_string(), label_value(&target.name)),
        (
            "argo-drift.io/app-namespace".to_string(),
            target.namespace.clone(),
        ),
        ("argo-drift.io/severity".to_string(), severity.clone()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "argo-drift".to_string(),
        ),
    ]);
    if args.common.dry_run {
        return Ok(Outcome::Done(format!(
            "dry-run: would record {name} ({} bytes) for {full} at {}",
            text.len(),
            short(&revision)
        )));
    }
    let data = BTreeMap::from([("audit.json".to_string(), text)]);
    audit::write(&client, records, &name, &labels, &data).await?;
    let selector = format!(
        "{AUDIT_TYPE_LABEL}={AUDIT_TYPE},{RECORD_LABEL}=sync,argo-drift.io/app={},argo-drift.io/app-namespace={}",
        label_value(&target.name), target.namespace
    );
    audit::keep_newest(&client, records, &selector, args.common.keep).await;
    Ok(Outcome::Done(format!(
        "recorded {name} for {full}: revision {} (previously {}), severity {severity}",
        short(&revision),
        previous.as_deref().map(short).unwrap_or("none")
    )))
}

/// The record as text under the ConfigMap limit: the PreSync analysis is summarised first,
/// then the per-resource results, each saying so.
pub fn fit(record: &mut Value) -> String {
    let mut text = record.to_string();
    if text.len() > RECORD_LIMIT {
        let summary = record
            .pointer("/presync/summary")
            .cloned()
            .unwrap_or(Value::Null);
        record["presync"] = json!({"summary": summary, "truncated": "the full analysis did not fit in the record; it is in the analysis ConfigMap"});
        text = record.to_string();
    }
    if text.len() > RECORD_LIMIT {
        if let Some(resources) = record.get("resources").and_then(Value::as_array).cloned() {
            let total = resources.len();
            let mut kept = resources;
            while record.to_string().len() > RECORD_LIMIT && !kept.is_empty() {
                let n = kept.len() / 2;
                kept.truncate(n);
                record["resources"] = json!(kept);
                record["resourcesTruncated"] =
                    json!(format!("{} of {total} resources shown", kept.len()));
            }
        }
        text = record.to_string();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_record_is_summarised_under_the_limit_and_says_so() {
        let big: Vec<Value> = (0..20_000)
            .map(|i| json!({"kind": "ConfigMap", "name": format!("cm-{i}"), "status": "Synced", "message": "x".repeat(40)}))
            .collect();
        let mut record = json!({
            "revision": "abc",
            "resources": big,
            "presync": {"summary": {"changes": 3}, "changes": vec!["y".repeat(100); 5000]},
        });
        let text = fit(&mut record);
        assert!(text.len() <= RECORD_LIMIT, "{}", text.len());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["presync"]["summary"]["changes"], 3);
        assert!(v["presync"]["truncated"].is_string());
        assert!(v["resourcesTruncated"]
            .as_str()
            .unwrap()
            .ends_with("of 20000 resources shown"));
    }

    #[test]
    fn revisions_from_the_states_argo_cd_writes() {
        let app = json!({"status": {
            "operationState": {"syncResult": {"revision": "bbb"}},
            "history": [{"id": 1, "revision": "aaa"}, {"id": 2, "revision": "bbb"}]
        }});
        assert_eq!(synced_revision(&app).as_deref(), Some("bbb"));
        assert_eq!(previous_revision(&app, "bbb").as_deref(), Some("aaa"));
        assert_eq!(previous_revision(&app, "zzz").as_deref(), Some("bbb"));
    }
}
