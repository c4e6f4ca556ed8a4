//! `argo-drift notify test`: send a sample on one channel, so users can check their settings.

use std::process::ExitCode;

use anyhow::{bail, Context};
use argo_drift_notify::config::Notifications;
use argo_drift_notify::dispatch::send_now;
use argo_drift_notify::{ChangeLine, EventKind, Notification};

use crate::cli::NotifyTestArgs;

pub fn test(args: &NotifyTestArgs) -> anyhow::Result<ExitCode> {
    let file = args.config.display().to_string();
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading notifications file {file}"))?;
    let config = Notifications::from_yaml(&file, &text, &|k| std::env::var(k).ok())?;
    let Some(channel) = config.channels.iter().find(|c| c.name == args.channel) else {
        let names: Vec<_> = config.channels.iter().map(|c| c.name.as_str()).collect();
        bail!(
            "{file} has no channel named {:?} (channels: {})",
            args.channel,
            names.join(", ")
        );
    };
    let Some(kind) = EventKind::ALL
        .into_iter()
        .find(|k| k.as_str() == args.event)
    else {
        let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        bail!(
            "unknown event {:?} (one of {})",
            args.event,
            known.join(", ")
        );
    };
    let sample = |kind| sample(kind, args.severity);
    let mut notifications = Vec::new();
    if kind.closes_incident() {
        notifications.push(sample(EventKind::DriftDetected));
    }
    notifications.push(sample(kind));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let attempts = runtime
        .block_on(send_now(&config, channel, &notifications))
        .map_err(anyhow::Error::msg)?;
    for (n, a) in notifications.iter().zip(attempts) {
        println!(
            "sent a test {} notification to {} ({} attempt{})",
            n.kind.as_str(),
            channel.name,
            a,
            if a == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn sample(kind: EventKind, severity: argo_drift_core::Severity) -> Notification {
    let now = k8s_openapi::jiff::Timestamp::now();
    Notification {
        kind,
        app: "argocd/argo-drift-test".into(),
        severity,
        summary: "a test notification from `argo-drift notify test`: nothing drifted".into(),
        changes: vec![ChangeLine {
            resource: "Deployment.apps default/example".into(),
            field: "spec.replicas".into(),
            severity,
            manager: Some("kubectl-scale".into()),
            live: Some("5".into()),
            changed_by: None,
        }],
        decision: Some("none: this is a test".into()),
        incident: format!("argo-drift/test/{}", now.as_second()),
        time: now.to_string(),
    }
}
