//! SyncFail: the emergency rollback. Picks the newest history entry whose revision is not the
//! failing one, turns automated sync off first when it is on (Argo CD refuses a rollback
//! otherwise) and leaves it off, asks Argo CD to roll back, leaves an alert ConfigMap and pages.
//! Once per failed operation, at most one rollback per app per interval, never to the failing
//! revision.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _};
use argo_drift_cluster::records::label_value;
use argo_drift_core::Severity;
use argo_drift_notify::{EventKind, Notification};
use kube::Client;
use serde_json::{json, Value};

use argo_drift_cluster::records::{Request, REQUEST_KEY, ROLLBACK_LABEL};

use crate::{audit, short, target, text, Common, Outcome};

pub const ALERT_TYPE_LABEL: &str = "alert-type";

#[derive(Debug, clap::Parser)]
#[command(
    name = "argo-drift-syncfail",
    version,
    about = "Argo CD SyncFail hook: roll the application back to its last good revision",
    long_about = "Run as an Argo CD SyncFail hook. Picks the newest status.history entry whose revision differs from the failing one, turns automated sync off first if it is on (and leaves it off), calls Argo CD's rollback API, writes an alert ConfigMap (alert-type=emergency) and pages. A second run for the same failed operation does nothing.\n\nExit codes: 0 rolled back (or nothing to do), 1 refused by policy (rate limit, no earlier revision), 2 error."
)]
pub struct Args {
    #[command(flatten)]
    pub global: argo_drift_cluster::process::GlobalArgs,
    #[command(flatten)]
    pub common: Common,
    /// At most one rollback per application within this interval.
    #[arg(long, env = "ARGO_DRIFT_ROLLBACK_INTERVAL", default_value = "30m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub min_interval: Duration,
    /// Prune resources the rolled-back revision does not have.
    #[arg(long, env = "ARGO_DRIFT_ROLLBACK_PRUNE")]
    pub prune: bool,
}

/// The newest history entry (highest id) whose revision is not `failing`: (id, revision).
pub fn last_good(history: &[Value], failing: &str) -> Option<(i64, String)> {
    history
        .iter()
        .filter_map(|h| {
            let id = h.get("id").and_then(Value::as_i64)?;
            let revision = text(h, "/revision").map(str::to_string).or_else(|| {
                h.pointer("/revisions/0")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })?;
            Some((id, revision))
        })
        .filter(|(_, r)| r != failing)
        .max_by_key(|(id, _)| *id)
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let target = target::find(&client, &args.common).await?;
    let argocd = args.common.argocd()?;
    let app = target::load(&client, argocd.as_ref(), &target).await?;
    let data = serde_json::to_value(&app.data).unwrap_or(Value::Null);
    let full = format!("{}/{}", target.namespace, target.name);
    let failing = text(&data, "/status/operationState/operation/sync/revision")
        .or_else(|| text(&data, "/status/operationState/syncResult/revision"))
        .or_else(|| text(&data, "/operation/sync/revision"))
        .map(str::to_string);
    let Some(failing) = failing else {
        bail!("Application {full} has no sync operation (status.operationState) to roll back from");
    };
    let started = text(&data, "/status/operationState/startedAt").unwrap_or("");
    let operation = format!("{started}/{failing}");
    let records = &args.common.records_namespace;
    let state_name = audit::name(&["argo-drift-syncfail", &target.namespace, &target.name]);
    let state = audit::read(&client, records, &state_name)
        .await?
        .unwrap_or_default();
    if state.get("lastOperation") == Some(&operation) {
        return Ok(Outcome::Done(format!(
            "{full}: the failed operation (revision {}, started {started}) was already handled; nothing to do",
            short(&failing)
        )));
    }
    let now = audit::now();
    let mut new_state = state.clone();
    new_state.insert("lastOperation".into(), operation.clone());
    let state_labels = state_labels(&target.name);
    if let Some(hooks) = nothing_applied(&data) {
        // A sync that failed before applying anything (a PreSync hook, such as argo-drift's
        // own gate, or a dry run Kubernetes refused) left the cluster as it was: "rolling
        // back" would re-sync the deployed revision over what the gate was protecting.
        let message = format!(
            "{full}: the sync of revision {} failed before any resource was applied{}; nothing to roll back",
            short(&failing),
            if hooks.is_empty() {
                String::new()
            } else {
                format!(" (failed: {})", hooks.join(", "))
            }
        );
        if !args.common.dry_run {
            audit::write(&client, records, &state_name, &state_labels, &new_state).await?;
        }
        return Ok(Outcome::Done(message));
    }
    let history: Vec<Value> = data
        .pointer("/status/history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let last_rollback = state
        .get("lastRollbackAt")
        .and_then(|t| t.parse::<i64>().ok());
    let good = last_good(&history, &failing);
    // Refused by policy: (why, whether an alert is raised as well as the page).
    let recent = last_rollback.filter(|at| now - at < args.min_interval.as_secs() as i64);
    let refusal = match (recent, &good) {
        (Some(at), _) => Some((
            format!(
                "{full}: a rollback ran {} min ago; at most one per {}; revision {} stays failed",
                (now - at) / 60,
                humantime::format_duration(args.min_interval),
                short(&failing)
            ),
            false,
        )),
        (None, None) => Some((
            format!(
                "{full}: no earlier revision in status.history to roll back to (failing: {}); a human must fix it",
                short(&failing)
            ),
            true,
        )),
        (None, Some(_)) => None,
    };
    if let Some((message, raise_alert)) = refusal {
        page(
            &args,
            &full,
            EventKind::RollbackFailed,
            &message,
            &operation,
        )
        .await;
        if !args.common.dry_run {
            if raise_alert {
                let a = Alert {
                    failing: &failing,
                    to: None,
                    automated_off: false,
                    message: &message,
                    request: None,
                };
                alert(&client, &args, &target, a).await?;
            }
            audit::write(&client, records, &state_name, &state_labels, &new_state).await?;
        }
        return Ok(Outcome::Refused(message));
    }
    let Some((id, good)) = good else {
        bail!("no history entry to roll back to");
    };
    let automated = data
        .pointer("/spec/syncPolicy/automated")
        .is_some_and(|a| !a.is_null());
    if args.common.dry_run {
        return Ok(Outcome::Done(format!(
            "dry-run: would {}roll {full} back to history id {id} (revision {}) from failing revision {}",
            if automated { "turn automated sync off, then " } else { "" },
            short(&good),
            short(&failing)
        )));
    }
    let Some(argocd) = argocd else {
        bail!("rolling back needs Argo CD's API: give --argocd-server (ARGOCD_SERVER) and a token");
    };
    if automated {
        argocd
            .patch(
                &target.name,
                &target.namespace,
                &json!({"spec": {"syncPolicy": {"automated": null}}}),
            )
            .await
            .context("turning automated sync off before the rollback")?;
    }
    if data.get("operation").is_some_and(|o| !o.is_null()) {
        // Argo CD runs this hook inside the failed operation and refuses a rollback until that
        // operation has ended, which it does only once this hook's Job has finished
        // (util/argo/argo.go SetAppOperation; gitops-engine sync_context.go
        // executeSyncFailPhase). The controller, which outlives this Pod, runs the request.
        let request = Request {
            app_namespace: target.namespace.clone(),
            app: target.name.clone(),
            history_id: id,
            revision: good.clone(),
            failing_revision: failing.clone(),
            operation_started_at: started.to_string(),
            prune: args.prune,
        };
        let message = format!(
            "{full}: rollback to history id {id} (revision {}) from failing revision {} requested; argo-drift's controller runs it once Argo CD has ended the failed operation{}",
            short(&good),
            short(&failing),
            if automated {
                "; automated sync turned off and left off"
            } else {
                ""
            }
        );
        let a = Alert {
            failing: &failing,
            to: Some((id, &good)),
            automated_off: automated,
            message: &message,
            request: Some(&request),
        };
        alert(&client, &args, &target, a).await?;
        new_state.insert("lastRollbackAt".into(), now.to_string());
        audit::write(&client, records, &state_name, &state_labels, &new_state).await?;
        return Ok(Outcome::Done(message));
    }
    let result = argocd
        .rollback(&target.name, &target.namespace, id, args.prune)
        .await;
    let (kind, message) = match &result {
        Ok(_) => (
            EventKind::RollbackDone,
            format!(
                "{full}: rolled back to history id {id} (revision {}) from failing revision {}{}",
                short(&good),
                short(&failing),
                if automated {
                    "; automated sync turned off and left off"
                } else {
                    ""
                }
            ),
        ),
        Err(e) => (
            EventKind::RollbackFailed,
            format!("{full}: rollback to history id {id} failed: {e}"),
        ),
    };
    let a = Alert {
        failing: &failing,
        to: Some((id, &good)),
        automated_off: automated,
        message: &message,
        request: None,
    };
    alert(&client, &args, &target, a).await?;
    new_state.insert("lastRollbackAt".into(), now.to_string());
    audit::write(&client, records, &state_name, &state_labels, &new_state).await?;
    page(&args, &full, kind, &message, &operation).await;
    match result {
        Ok(_) => Ok(Outcome::Done(message)),
        // The message already carries Argo CD's answer.
        Err(_) => Err(anyhow::anyhow!(message)),
    }
}

/// The alert ConfigMap (`alert-type=emergency`), newest `--keep` per app kept.
/// What an alert says: the failing revision, the rollback's target, whether automated sync was
/// turned off, and the rollback request handed to the controller, if any.
struct Alert<'a> {
    failing: &'a str,
    to: Option<(i64, &'a str)>,
    automated_off: bool,
    message: &'a str,
    request: Option<&'a Request>,
}

async fn alert(
    client: &Client,
    args: &Args,
    target: &target::Target,
    alert: Alert<'_>,
) -> anyhow::Result<()> {
    let Alert {
        failing,
        to,
        automated_off,
        message,
        request,
    } = alert;
    let records = &args.common.records_namespace;
    let now = audit::now();
    let name = audit::name(&[
        "argo-drift-alert",
        &target.tracking_name(&args.common.app_namespace),
        &now.to_string(),
        short(failing),
    ]);
    let mut labels = BTreeMap::from([
        (ALERT_TYPE_LABEL.to_string(), "emergency".to_string()),
        ("argo-drift.io/app".to_string(), label_value(&target.name)),
        (
            "argo-drift.io/app-namespace".to_string(),
            target.namespace.clone(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "argo-drift".to_string(),
        ),
    ]);
    let body = json!({
        "application": format!("{}/{}", target.namespace, target.name),
        "failingRevision": failing,
        "rolledBackTo": to.map(|(id, r)| json!({"historyId": id, "revision": r})),
        "automatedSyncTurnedOff": automated_off,
        "message": message,
        "time": audit::timestamp(),
    });
    let mut data = BTreeMap::from([("alert.json".to_string(), body.to_string())]);
    if let Some(request) = request {
        labels.insert(ROLLBACK_LABEL.to_string(), "requested".to_string());
        data.insert(REQUEST_KEY.to_string(), serde_json::to_string(request)?);
    }
    audit::write(client, records, &name, &labels, &data).await?;
    let selector = format!(
        "{ALERT_TYPE_LABEL}=emergency,argo-drift.io/app={},argo-drift.io/app-namespace={}",
        label_value(&target.name),
        target.namespace
    );
    audit::keep_newest(client, records, &selector, args.common.keep).await;
    Ok(())
}

fn state_labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("argo-drift.io/app".to_string(), label_value(app)),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "argo-drift".to_string(),
        ),
    ])
}

/// When the failed operation's result shows that no resource of the app was applied: the hooks
/// that failed ("PreSync Job name"), possibly none. `None` when something was applied, or when
/// the result does not say (no resources recorded).
pub fn nothing_applied(app: &Value) -> Option<Vec<String>> {
    let resources = app
        .pointer("/status/operationState/syncResult/resources")?
        .as_array()?;
    let mut failed_hooks = Vec::new();
    for r in resources {
        let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
        if field("hookType").is_empty() {
            // One of the app's own resources: applied unless its own apply failed.
            if field("status") != "SyncFailed" {
                return None;
            }
        } else if matches!(field("hookPhase"), "Failed" | "Error") {
            failed_hooks.push(format!(
                "{} {} {}",
                field("hookType"),
                field("kind"),
                field("name")
            ));
        }
    }
    (!resources.is_empty()).then_some(failed_hooks)
}

async fn page(args: &Args, app: &str, kind: EventKind, message: &str, operation: &str) {
    let n = Notification {
        kind,
        app: app.to_string(),
        severity: Severity::Critical,
        summary: message.to_string(),
        changes: Vec::new(),
        decision: Some(message.to_string()),
        incident: format!("argo-drift/{app}/syncfail/{operation}"),
        time: audit::timestamp(),
    };
    if let Some(failure) = crate::notify(
        args.common.notifications.as_ref(),
        "/argo-drift/hooks/syncfail",
        n,
    )
    .await
    {
        tracing::warn!(failure, "the page was not delivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_that_failed_before_applying_anything_is_told_apart() {
        let app = |resources: Value| json!({"status": {"operationState": {"syncResult": {"resources": resources}}}});
        // Captured from Argo CD v3.6.2: the PreSync gate failed, SyncFail runs.
        let gated = app(json!([
            {"group": "batch", "kind": "Job", "name": "argo-drift-presync", "hookType": "PreSync",
             "hookPhase": "Failed", "status": "Synced", "syncPhase": "PreSync"},
            {"group": "batch", "kind": "Job", "name": "argo-drift-syncfail", "hookType": "SyncFail",
             "hookPhase": "Running", "status": "Synced", "syncPhase": "SyncFail"}
        ]));
        assert_eq!(
            nothing_applied(&gated),
            Some(vec!["PreSync Job argo-drift-presync".to_string()])
        );
        // Kubernetes refused one object: nothing else was applied either.
        let refused = app(json!([
            {"kind": "Service", "name": "web", "status": "SyncFailed", "syncPhase": "Sync"}
        ]));
        assert_eq!(nothing_applied(&refused), Some(vec![]));
        // The ConfigMap went out, then a PostSync smoke test failed.
        let applied = app(json!([
            {"kind": "ConfigMap", "name": "web", "status": "Synced", "syncPhase": "Sync"},
            {"group": "batch", "kind": "Job", "name": "smoke", "hookType": "PostSync",
             "hookPhase": "Failed", "status": "Synced", "syncPhase": "PostSync"}
        ]));
        assert_eq!(nothing_applied(&applied), None);
        assert_eq!(nothing_applied(&app(json!([]))), None);
        assert_eq!(nothing_applied(&json!({})), None);
    }

    #[test]
    fn the_last_good_revision_is_the_newest_that_is_not_failing() {
        let history = vec![
            json!({"id": 3, "revision": "ccc"}),
            json!({"id": 1, "revision": "aaa"}),
            json!({"id": 2, "revision": "bbb"}),
            json!({"id": 4, "revision": "ddd"}),
        ];
        assert_eq!(last_good(&history, "ddd"), Some((3, "ccc".into())));
        assert_eq!(last_good(&history, "zzz"), Some((4, "ddd".into())));
        assert_eq!(
            last_good(&[json!({"id": 1, "revision": "aaa"})], "aaa"),
            None
        );
        assert_eq!(last_good(&[], "aaa"), None);
    }
}
