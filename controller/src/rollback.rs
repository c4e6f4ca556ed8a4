//! Rollbacks the SyncFail hook asked for. Argo CD runs SyncFail hooks inside the failed
//! operation, and its API refuses a rollback while an operation runs (util/argo/argo.go,
//! SetAppOperation: "another operation is already in progress"); the operation ends only once
//! the hook's Job has finished. So the hook writes its decision into its alert ConfigMap
//! (label `argo-drift.io/rollback=requested`), and the controller, which outlives the hook,
//! asks Argo CD for the rollback as soon as that operation has ended, unless someone acted in
//! the meantime (a newer operation: the request is then superseded).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::desired::short;
use crate::reconcile::Context;
use argo_drift_cluster::records::HOOK_NAMESPACE_LABEL;
pub use argo_drift_cluster::records::{Request, REQUEST_KEY, ROLLBACK_LABEL};

const SELECTOR: &str = "alert-type=emergency,argo-drift.io/rollback=requested";
const FIELD_MANAGER: &str = "argo-drift-rollback";

/// What to do with a request, given the Application as it is now.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The failed operation is still running (its SyncFail hooks): wait.
    Wait,
    /// The failed operation has ended and nothing happened since: roll back now.
    RollBack,
    /// Someone or something acted since (another operation, or the app is gone): why.
    Superseded(String),
}

/// `writer`: the application namespace whose hooks wrote the request (its label), if hooks did.
pub fn step(request: &Request, writer: Option<&str>, app: Option<&Value>) -> Step {
    let Some(app) = app else {
        return Step::Superseded("the Application is gone".into());
    };
    // The hooks of one namespace may not roll back another's app: a request from hooks must
    // come from the namespace the app deploys to, where its hooks run.
    let destination = app
        .pointer("/spec/destination/namespace")
        .and_then(Value::as_str);
    if let Some(writer) = writer.filter(|w| Some(*w) != destination) {
        return Step::Superseded(format!(
            "the request was written by the hooks of namespace {writer}, not by the app's own ({})",
            destination.unwrap_or("no destination namespace")
        ));
    }
    let state = &app["status"]["operationState"];
    let started = state["startedAt"].as_str().unwrap_or("");
    if started != request.operation_started_at {
        return Step::Superseded(format!(
            "another operation (started {}) has run since the failed one",
            if started.is_empty() { "?" } else { started }
        ));
    }
    let running = app.get("operation").is_some_and(|o| !o.is_null());
    match state["phase"].as_str() {
        Some("Running" | "Terminating") => Step::Wait,
        _ if running => Step::Wait,
        Some("Failed" | "Error") => Step::RollBack,
        other => Step::Superseded(format!(
            "the operation ended {}, not failed",
            other.unwrap_or("without a phase")
        )),
    }
}

/// Look at pending requests in argo-drift's records namespace, for the Applications of the
/// watched namespaces, every `interval` until `shutdown`.
pub async fn serve(
    ctx: Arc<Context>,
    client: Client,
    records: String,
    namespaces: crate::namespaces::AppNamespaces,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = pending(&ctx, &client, &records, &namespaces).await {
            tracing::warn!(namespace = %records, error = %e, "rollback requests");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn pending(
    ctx: &Context,
    client: &Client,
    namespace: &str,
    watched: &crate::namespaces::AppNamespaces,
) -> anyhow::Result<()> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for cm in configmaps
        .list(&ListParams::default().labels(SELECTOR))
        .await?
        .items
    {
        let name = cm.metadata.name.clone().unwrap_or_default();
        let here = namespace;
        let data = cm.data.clone().unwrap_or_default();
        let request: Request = match data.get(REQUEST_KEY).map(|t| serde_json::from_str(t)) {
            Some(Ok(r)) => r,
            other => {
                let why = match other {
                    Some(Err(e)) => format!("{REQUEST_KEY} is not a rollback request: {e}"),
                    _ => format!("no {REQUEST_KEY}"),
                };
                tracing::warn!(configmap = %format!("{here}/{name}"), %why, "rollback request");
                close(&configmaps, &name, &data, "failed", &why).await?;
                continue;
            }
        };
        // Another controller may watch the app's namespace: its request is left to that one.
        if !watched.contains(&request.app_namespace) {
            continue;
        }
        // Sharded: the replica that works on the app rolls it back.
        if !ctx
            .shards
            .owns(&format!("{}/{}", request.app_namespace, request.app))
        {
            continue;
        }
        let apps: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &request.app_namespace,
            &crate::application::api_resource(),
        );
        let app = apps
            .get_opt(&request.app)
            .await?
            .map(serde_json::to_value)
            .transpose()?;
        let full = format!("{}/{}", request.app_namespace, request.app);
        let writer = cm
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HOOK_NAMESPACE_LABEL))
            .cloned();
        let (state, message, kind) = match step(&request, writer.as_deref(), app.as_ref()) {
            Step::Wait => continue,
            Step::Superseded(why) => (
                "superseded",
                format!("{full}: rollback to history id {} not run: {why}", request.history_id),
                argo_drift_notify::EventKind::RollbackFailed,
            ),
            Step::RollBack => match &ctx.argocd {
                None => (
                    "failed",
                    format!("{full}: rollback to history id {} not run: the controller has no --argocd-server", request.history_id),
                    argo_drift_notify::EventKind::RollbackFailed,
                ),
                Some(argocd) => match argocd
                    .rollback(&request.app, &request.app_namespace, request.history_id, request.prune)
                    .await
                {
                    Ok(_) => (
                        "done",
                        format!(
                            "{full}: rolled back to history id {} (revision {}) from failing revision {}",
                            request.history_id,
                            short(&request.revision),
                            short(&request.failing_revision)
                        ),
                        argo_drift_notify::EventKind::RollbackDone,
                    ),
                    Err(e) => (
                        "failed",
                        format!("{full}: rollback to history id {} failed: {e}", request.history_id),
                        argo_drift_notify::EventKind::RollbackFailed,
                    ),
                },
            },
        };
        tracing::warn!(application = %full, outcome = state, "{message}");
        close(&configmaps, &name, &data, state, &message).await?;
        if let Some(app) = &app {
            let on = ObjectReference {
                api_version: Some("argoproj.io/v1alpha1".into()),
                kind: Some("Application".into()),
                name: Some(request.app.clone()),
                namespace: Some(request.app_namespace.clone()),
                uid: app["metadata"]["uid"].as_str().map(str::to_string),
                ..Default::default()
            };
            let (type_, reason) = match state {
                "done" => (EventType::Normal, "RollbackDone"),
                _ => (EventType::Warning, "RollbackNotRun"),
            };
            if let Err(e) = ctx
                .publisher
                .event(&on, type_, reason, message.clone())
                .await
            {
                tracing::warn!(error = %e, "writing the rollback Event");
            }
        }
        if let Some(n) = &ctx.notifier {
            n.notify(argo_drift_notify::Notification {
                kind,
                app: full.clone(),
                severity: argo_drift_core::Severity::Critical,
                summary: message.clone(),
                changes: Vec::new(),
                decision: Some(message),
                incident: format!(
                    "argo-drift/{full}/syncfail/{}/{}",
                    request.operation_started_at, request.failing_revision
                ),
                time: timestamp(),
            });
        }
    }
    Ok(())
}

/// Mark the request `state` and record the outcome in the alert.
async fn close(
    configmaps: &Api<ConfigMap>,
    name: &str,
    data: &BTreeMap<String, String>,
    state: &str,
    message: &str,
) -> anyhow::Result<()> {
    let mut alert: Value = data
        .get("alert.json")
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| json!({}));
    alert["rollback"] = json!({"state": state, "message": message, "time": timestamp()});
    let patch = json!({
        "metadata": {"labels": {ROLLBACK_LABEL: state}},
        "data": {"alert.json": alert.to_string()},
    });
    configmaps
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(patch),
        )
        .await?;
    Ok(())
}

fn timestamp() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            app_namespace: "argocd".into(),
            app: "web".into(),
            history_id: 3,
            revision: "aaaa".into(),
            failing_revision: "bbbb".into(),
            operation_started_at: "2026-12-04T10:00:00Z".into(),
            prune: false,
        }
    }

    fn app(operation: bool, started: &str, phase: &str) -> Value {
        let mut app = json!({"spec": {"destination": {"namespace": "shop"}},
            "status": {"operationState": {"startedAt": started, "phase": phase}}});
        if operation {
            app["operation"] = json!({"sync": {"revision": "bbbb"}});
        }
        app
    }

    #[test]
    fn a_request_waits_for_its_operation_to_end_and_gives_way_to_a_newer_one() {
        let r = request();
        let t = "2026-12-04T10:00:00Z";
        // SyncFail hooks run inside the operation: still running.
        assert_eq!(step(&r, None, Some(&app(true, t, "Running"))), Step::Wait);
        // Argo CD has written the phase but not yet cleared the operation.
        assert_eq!(step(&r, None, Some(&app(true, t, "Failed"))), Step::Wait);
        assert_eq!(
            step(&r, None, Some(&app(false, t, "Failed"))),
            Step::RollBack
        );
        assert_eq!(
            step(&r, None, Some(&app(false, t, "Error"))),
            Step::RollBack
        );
        assert!(matches!(
            step(&r, None, Some(&app(false, "2026-12-04T10:05:00Z", "Succeeded"))),
            Step::Superseded(why) if why.contains("another operation (started 2026-12-04T10:05:00Z)")
        ));
        assert!(matches!(step(&r, None, None), Step::Superseded(why) if why.contains("gone")));
    }

    #[test]
    fn only_the_apps_own_hooks_may_ask_for_its_rollback() {
        let r = request();
        let ended = app(false, "2026-12-04T10:00:00Z", "Failed");
        assert_eq!(step(&r, Some("shop"), Some(&ended)), Step::RollBack);
        assert!(matches!(
            step(&r, Some("team-b"), Some(&ended)),
            Step::Superseded(why) if why.contains("hooks of namespace team-b, not by the app's own (shop)")
        ));
    }
}
