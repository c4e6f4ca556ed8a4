//! `argo-drift run`: the long-running controller. Wires the pieces together: admin server, leader
//! election, the Application controller, live watches, Git, policy reloads, graceful shutdown.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::{mpsc, watch};

use crate::application::{self, OPT_IN_LABEL};
use crate::argocd::ArgoCd;
use crate::cli::{PolicyArgs, RunArgs};
use crate::clusters::{self, ClusterSettings, Clusters};
use crate::leader::{self, Held, Shards};
use crate::live::{AppRef, Trigger};
use crate::metrics::Metrics;
use crate::namespaces::AppNamespaces;
use crate::publish::Publisher;
use crate::reconcile::{self, Context, Settings};
use crate::remediate::{Clock, Remediator};
use crate::repo::Repos;
use crate::{admin, reconcile::error_policy};
use crate::{audit, ui_api};
use argo_drift_notify::config::Notifications;
use argo_drift_notify::dispatch::Notifier;

/// How long running analyses may take to finish after a shutdown request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often pending rollback requests of the SyncFail hook are looked at.
const ROLLBACK_INTERVAL: Duration = Duration::from_secs(2);

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    super::with_kubernetes(|config| serve(config, args, shutdown_signal()))
}

/// The audit webhook receiver and the audit log readers, when configured (docs/audit.md).
async fn start_audit(
    args: &RunArgs,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<Arc<audit::Trails>>> {
    let a = &args.audit;
    if !a.enabled() {
        return Ok(None);
    }
    let sources = audit::Sources {
        any_cluster: a.audit_webhook_addr.is_some(),
        logs: a.audit_logs.iter().map(|l| l.cluster.clone()).collect(),
    };
    let trails = audit::Trails::new(a.limits(), metrics.clone(), sources);
    if let Some(addr) = a.audit_webhook_addr {
        if a.audit_webhook_client_ca.is_none() && a.audit_webhook_token_file.is_none() {
            anyhow::bail!(
                "--audit-webhook-addr needs --audit-webhook-client-ca or --audit-webhook-token-file: \
                 the receiver accepts audit events from the API server only"
            );
        }
        let token = match &a.audit_webhook_token_file {
            Some(path) => Some(ui_api::read_secret_file(path, "audit webhook token file")?),
            None => None,
        };
        let settings = audit::WebhookSettings {
            cert: a
                .audit_webhook_tls_cert
                .clone()
                .context("--audit-webhook-tls-cert")?,
            key: a
                .audit_webhook_tls_key
                .clone()
                .context("--audit-webhook-tls-key")?,
            client_ca: a.audit_webhook_client_ca.clone(),
            token,
            body_limit: a.audit_webhook_body_limit_mib.saturating_mul(1 << 20),
        };
        // Refused at start, not at the first request: a wrong file is said now.
        audit::server_tls(&settings)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the audit webhook port {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "audit webhook: POST /audit, /audit/<cluster>");
        let trails = trails.clone();
        let stop = stopped(shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = audit::serve_webhook(listener, settings, trails, stop).await {
                tracing::error!(error = %format!("{e:#}"), "audit webhook stopped");
            }
        });
    }
    for source in &a.audit_logs {
        tokio::spawn(audit::follow_log(
            source.clone(),
            trails.clone(),
            shutdown.clone(),
        ));
    }
    Ok(Some(trails))
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        let _ = tx.send(true);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        let _ = tx.send(true);
    });
    rx
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Run the controller until `shutdown` turns true. Public so that tests and the benchmark run it
/// in-process against a real API server.
pub async fn serve(
    config: kube::Config,
    args: &RunArgs,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<ExitCode> {
    let client = argo_drift_cluster::connect::client(&config)
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let policy_path = args.policy.policy.clone();
    // Argo CD's tracking settings (argocd-cm) are applied over the policy's on every analysis.
    let policy = super::load_policy(&args.policy)?;
    let app_namespaces = app_namespaces(&client, args).await?;
    tracing::info!(namespaces = %app_namespaces.describe(), "watching Applications");
    let mut metrics = Metrics::new();
    let notifier = match &args.notifications {
        Some(path) => {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading notifications file {file}"))?;
            let mut config = Notifications::from_yaml(&file, &text, &|k| std::env::var(k).ok())?;
            config
                .source
                .get_or_insert_with(|| format!("/argo-drift/controller/{}", args.identity));
            tracing::info!(file = %file, channels = config.channels.len(), "notifications configured");
            Some(
                Notifier::start(config, Some(metrics.registry_mut()))
                    .map_err(anyhow::Error::msg)?,
            )
        }
        None => None,
    };
    let metrics = Arc::new(metrics);
    let ready = Arc::new(AtomicBool::new(false));
    let listener = admin::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding the admin port {}", args.admin_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "admin server: /metrics /healthz /readyz");
    let cluster_board = clusters::Board::default();
    tokio::spawn(admin::serve(
        listener,
        metrics.clone(),
        ready.clone(),
        cluster_board.clone(),
        stopped(shutdown.clone()),
    ));

    if let Some(addr) = args.ui_api_addr {
        // Every replica serves the drift view: it only reads the published reports.
        let path = args
            .ui_api_token_file
            .as_deref()
            .context("--ui-api-token-file")?;
        let token = ui_api::read_token(path)?;
        let listener = ui_api::bind(addr)
            .await
            .with_context(|| format!("binding the UI API port {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "drift view API: /api/v1/report /api/v1/fleet");
        tokio::spawn(ui_api::serve(
            listener,
            client.clone(),
            args.state_namespace().to_string(),
            token,
            stopped(shutdown.clone()),
        ));
    }

    // Audit events are received by every replica from the start, standbys too: a replica that
    // takes over has the recent writes already.
    let audit = start_audit(args, &metrics, &shutdown).await?;

    let lease_namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| args.state_namespace().to_string());
    let (lost_tx, lost_rx) = watch::channel(false);
    // Sharded, every replica works on its share and holds a membership Lease of its own;
    // otherwise one leader works and the others wait for its Lease.
    let (held, shards) = if args.sharding {
        let name = leader::member_lease(&args.lease_name, &args.identity);
        let mut held = Held::start(
            client.clone(),
            &lease_namespace,
            &name,
            &args.identity,
            args.lease_duration,
        )
        .await?;
        if !held.acquired(&mut shutdown.clone()).await {
            return Ok(ExitCode::SUCCESS);
        }
        tracing::info!(identity = %args.identity, lease = %name, "joined the replicas sharing the applications");
        (Some(held), Shards::sharded(&args.identity))
    } else if args.leader_election {
        // A standby is ready for its role (taking over): were it not ready, a Deployment with
        // two replicas could never finish a rolling update. It turns unready on becoming
        // leader until its first full analysis is done.
        ready.store(true, Ordering::Relaxed);
        tracing::info!(identity = %args.identity, lease = %args.lease_name, "waiting to become leader");
        let mut held = Held::start(
            client.clone(),
            &lease_namespace,
            &args.lease_name,
            &args.identity,
            args.lease_duration,
        )
        .await?;
        if !held.acquired(&mut shutdown.clone()).await {
            held.release().await;
            return Ok(ExitCode::SUCCESS);
        }
        ready.store(false, Ordering::Relaxed);
        tracing::info!(identity = %args.identity, "became leader");
        (Some(held), Shards::whole(&args.identity))
    } else {
        (None, Shards::whole(&args.identity))
    };
    // A Lease that is no longer ours (not renewed in time, taken by another replica): stop, so
    // that two replicas never work on the same app.
    let lost_watch = held.as_ref().map(|h| {
        let lost = h.lost();
        let tx = lost_tx.clone();
        tokio::spawn(async move {
            lost.await;
            let _ = tx.send(true);
        })
    });

    let (trigger_tx, trigger_rx) = mpsc::unbounded_channel::<Trigger>();
    let argocd = match args.argocd.settings()? {
        Some(settings) => Some(ArgoCd::new(settings)?),
        None => None,
    };
    let argocd_for_actions = argocd.clone();
    let repo_secrets: reflector::Store<Secret> = watched(
        &client,
        &args.namespaces.control_plane_namespace,
        watcher::Config::default()
            .labels("argocd.argoproj.io/secret-type in (repository,repo-creds)"),
        "repository Secrets",
        None,
    );
    let argocd_cm: reflector::Store<ConfigMap> = watched(
        &client,
        &args.namespaces.control_plane_namespace,
        watcher::Config::default().fields("metadata.name=argocd-cm"),
        "argocd-cm",
        None,
    );
    let known_hosts: reflector::Store<ConfigMap> = watched(
        &client,
        &args.namespaces.control_plane_namespace,
        watcher::Config::default().fields("metadata.name=argocd-ssh-known-hosts-cm"),
        "argocd-ssh-known-hosts-cm",
        None,
    );
    // Argo CD's cluster Secrets: a new cluster, or a rotated token, re-analyses every app.
    let cluster_secrets_changed = Arc::new(tokio::sync::Notify::new());
    let cluster_secrets: reflector::Store<Secret> = watched(
        &client,
        &args.namespaces.control_plane_namespace,
        watcher::Config::default().labels(clusters::SECRET_SELECTOR),
        "cluster Secrets",
        Some(cluster_secrets_changed.clone()),
    );
    let clusters = Clusters::new(
        client.clone(),
        config,
        ClusterSettings {
            control_plane: args.namespaces.control_plane_namespace.clone(),
            secrets: Some(cluster_secrets),
            argocd_cm: Some(argocd_cm.clone()),
            tracking: policy.tracking.clone(),
            probe_every: args.cluster_probe_interval,
            board: cluster_board,
        },
        trigger_tx.clone(),
        metrics.clone(),
    );
    // A notification that could not be delivered shows in its application's report at once:
    // the application is analysed again and its report rewritten with the failure.
    if let Some(n) = &notifier {
        let mut changes = n.failure_changes();
        let triggers = trigger_tx.clone();
        let resource = application::api_resource();
        tokio::spawn(async move {
            while let Some(app) = changes.recv().await {
                let Some((namespace, name)) = app.split_once('/') else {
                    continue;
                };
                let app = ObjectRef::new_with(name, resource.clone()).within(namespace);
                let _ = triggers.send(Trigger {
                    app,
                    seen: Instant::now(),
                    live_change: false,
                });
            }
        });
    }
    let repos = Arc::new(Repos::new(
        args.repo_cache.clone(),
        args.git_refresh,
        metrics.git_fetches.clone(),
    ));
    let adopter = crate::remediate::Adopter {
        repos: repos.clone(),
        git: crate::reconcile::GitSettings {
            repo_secrets: Some(repo_secrets.clone()),
            known_hosts: Some(known_hosts.clone()),
        },
        forge: crate::forge::Forge::from_args(&args.forge)?,
        author: crate::adopt::parse_author(&args.adopt_author)
            .map_err(|e| anyhow::anyhow!("--adopt-author {e}"))?,
    };
    let mut ctx = Context::new(
        Settings {
            resync: args.resync,
            watch_timeout: args.watch_timeout,
            control_plane_namespace: args.namespaces.control_plane_namespace.clone(),
        },
        policy,
        repos,
        argocd,
        clusters,
        Publisher::new(
            client.clone(),
            args.identity.clone(),
            args.state_namespace().to_string(),
        ),
        metrics.clone(),
        Some(repo_secrets),
        Some(known_hosts),
        notifier,
        Remediator::new(
            client.clone(),
            args.state_namespace().to_string(),
            argocd_for_actions,
            Clock::new(args.clock_file.clone()),
            args.audit_keep,
        )
        .with_adopter(adopter),
    );
    // Argo CD's own settings are the baseline: an ignore rule set once, in Argo CD, holds here.
    ctx.argocd_cm = Some(argocd_cm);
    ctx.shards = shards.clone();
    ctx.audit = audit;
    ctx.audit_wait = args.audit.audit_wait;
    let ctx = Arc::new(ctx);

    let resource = application::api_resource();
    // One namespace named with --app-namespace is watched there alone; Argo CD's own list can
    // change while argo-drift runs, so its Applications are watched everywhere and filtered.
    let namespaced = if args.app_namespaces.is_empty() {
        None
    } else {
        app_namespaces.single()
    };
    let apps: Api<DynamicObject> = match &namespaced {
        Some(one) => Api::namespaced_with(client.clone(), one, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let selector = format!("{OPT_IN_LABEL}=true");
    let config = watcher::Config::default().labels(&selector);
    let trigger_ctx = ctx.clone();
    let triggers = tokio_stream_from(trigger_rx).map(move |t: Trigger| {
        if t.live_change {
            trigger_ctx.note_change(&t.app, t.seen);
        }
        t.app
    });
    // Applications change all the time for nothing analysis reads (Argo CD's refresh times,
    // argo-drift's own annotations): those versions are filtered out before they trigger.
    let writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
    let reader = writer.as_reader();
    let (listed_tx, listed) = watch::channel(false);
    let opted_in = OptedIn {
        store: reader.clone(),
        listed,
        namespaces: app_namespaces.clone(),
        namespaced: namespaced.is_some(),
    };
    let watch = watcher::watcher(apps, config)
        .default_backoff()
        .modify(application::cache_form);
    let app_stream = reflector::reflector(writer, watch)
        // After the reflector: the store holds the first list when this is signalled.
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                listed_tx.send_replace(true);
            }
        })
        .applied_objects()
        .predicate_filter(
            crate::publish::application_digest,
            kube::runtime::PredicateConfig::default(),
        );
    let controller = Controller::for_stream_with(app_stream, reader, resource.clone())
        .with_config(controller::Config::default().concurrency(args.concurrency))
        .reconcile_on(triggers);
    let store = controller.store();

    tokio::spawn(readiness(opted_in.clone(), ctx.clone(), ready.clone()));
    // Workflows started by the workflow action: their end is reported on the Application.
    if let Some(w) = &ctx.policy().remediation.spec.workflow {
        tokio::spawn(crate::remediate::watch_workflows(
            ctx.clone(),
            client.clone(),
            w.namespace.clone(),
        ));
    }
    // Rollbacks the SyncFail hook asked for, once Argo CD has ended the failed operation.
    tokio::spawn(crate::rollback::serve(
        ctx.clone(),
        client.clone(),
        args.state_namespace().to_string(),
        app_namespaces.clone(),
        ROLLBACK_INTERVAL,
        shutdown.clone(),
    ));
    tokio::spawn(forget_gone_apps(
        opted_in.clone(),
        ctx.clone(),
        args.gc_interval,
    ));
    tokio::spawn(follow_cluster_secrets(
        cluster_secrets_changed,
        store.clone(),
        trigger_tx.clone(),
    ));
    if args.app_namespaces.is_empty() {
        tokio::spawn(follow_application_namespaces(
            args.policy_reload,
            Api::<ConfigMap>::namespaced(client.clone(), &args.namespaces.control_plane_namespace),
            args.namespaces.control_plane_namespace.clone(),
            app_namespaces.clone(),
            store.clone(),
            trigger_tx.clone(),
        ));
    }
    if let Some(argocd_cm) = ctx.argocd_cm.clone() {
        tokio::spawn(follow_argocd_cm(
            args.policy_reload,
            argocd_cm,
            store.clone(),
            trigger_tx.clone(),
        ));
    }
    if let Some(path) = policy_path.clone() {
        tokio::spawn(reload_policy(
            path,
            args.policy_reload,
            ctx.clone(),
            store.clone(),
            trigger_tx.clone(),
        ));
    }
    if shards.is_sharded() {
        let store = store.clone();
        let triggers = trigger_tx.clone();
        let metrics = metrics.clone();
        let gaining = shards.clone();
        tokio::spawn(leader::follow_members(
            Api::namespaced(client.clone(), &lease_namespace),
            args.lease_name.clone(),
            shards.clone(),
            args.lease_duration / 3,
            move |previous, members| {
                metrics
                    .replicas
                    .set(i64::try_from(members.len()).unwrap_or(i64::MAX));
                // The apps that are ours now and were not are analysed; the ones kept need
                // nothing, the ones lost are forgotten by the next sweep (forget_gone_apps).
                let gained = store
                    .state()
                    .into_iter()
                    .filter(|app| gaining.gained(previous, &shard_key(app)));
                let apps = gained
                    .map(|app| ObjectRef::from_obj_with(app.as_ref(), application::api_resource()));
                crate::live::send_all(&triggers, apps, false);
            },
        ));
    }
    let mut lost = lost_rx.clone();
    let stop = {
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                _ = stopped(shutdown) => {}
                _ = lost.wait_for(|l| *l) => {}
            }
        }
    };
    let running = controller
        .graceful_shutdown_on(stop)
        .run(
            move |app, ctx| {
                let allowed = opted_in.watches(&app.metadata) && ctx.shards.owns(&shard_key(&app));
                async move {
                    if !allowed {
                        return Ok(controller::Action::await_change());
                    }
                    reconcile::reconcile(app, ctx).await
                }
            },
            error_policy,
            ctx,
        )
        .for_each(|_| futures::future::ready(()));

    // Running analyses get a moment to finish; kube-runtime's controller can also wait forever
    // when stopped before its first list, and Kubernetes would then kill us mid-write.
    let deadline = {
        let (mut s, mut l) = (shutdown.clone(), lost_rx.clone());
        async move {
            tokio::select! {
                _ = s.wait_for(|v| *v) => {}
                _ = l.wait_for(|v| *v) => {}
            }
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
    };
    tokio::select! {
        _ = running => {}
        _ = deadline => tracing::warn!("analyses still running {SHUTDOWN_GRACE:?} after shutdown; stopping anyway"),
    }

    if *lost_rx.borrow() {
        tracing::error!("lost our Lease; stopping so that another replica takes over");
        return Ok(ExitCode::from(3));
    }
    if let Some(w) = lost_watch {
        w.abort();
        let _ = w.await;
    }
    if let Some(held) = held {
        held.release().await;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// `--app-namespace` as given, else Argo CD's namespace and argocd-cmd-params-cm
/// `application.namespaces`.
async fn app_namespaces(client: &Client, args: &RunArgs) -> anyhow::Result<AppNamespaces> {
    let list = if args.app_namespaces.is_empty() {
        let params =
            Api::<ConfigMap>::namespaced(client.clone(), &args.namespaces.control_plane_namespace)
                .get_opt("argocd-cmd-params-cm")
                .await
                .with_context(|| {
                    format!(
                        "reading {}/argocd-cmd-params-cm (application.namespaces)",
                        args.namespaces.control_plane_namespace
                    )
                })?
                .and_then(|cm| cm.data)
                .unwrap_or_default();
        crate::namespaces::from_argocd(
            &args.namespaces.control_plane_namespace,
            params.get("application.namespaces").map(String::as_str),
        )
    } else {
        args.app_namespaces.clone()
    };
    AppNamespaces::new(&list).map_err(|e| anyhow::anyhow!("--app-namespace: {e}"))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Argo CD's Secrets and ConfigMaps, watched so that they are at hand without an API call per
/// analysis; `changed` is notified on every change after the first list.
fn watched<K>(
    client: &Client,
    namespace: &str,
    config: watcher::Config,
    what: &'static str,
    changed: Option<Arc<tokio::sync::Notify>>,
) -> reflector::Store<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher::watcher(api, config).default_backoff());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut listed = false;
        while let Some(event) = stream.next().await {
            match event {
                Err(e) => tracing::warn!(error = %e, "watching {what}"),
                Ok(watcher::Event::InitDone) => listed = true,
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) if listed => {
                    if let Some(c) = &changed {
                        c.notify_one();
                    }
                }
                Ok(_) => {}
            }
        }
    });
    reader
}

/// A cluster Secret added, changed or deleted: every application is analysed again (its
/// destination may now resolve, or resolve to new credentials).
async fn follow_cluster_secrets(
    changed: Arc<tokio::sync::Notify>,
    store: reflector::Store<DynamicObject>,
    triggers: mpsc::UnboundedSender<Trigger>,
) {
    loop {
        changed.notified().await;
        // A burst of changes (Argo CD's own cluster cache updates) is one re-analysis.
        tokio::time::sleep(Duration::from_millis(200)).await;
        tracing::info!("cluster Secrets changed; analysing every application again");
        analyse_all(&store, &triggers);
    }
}

/// The opted-in Applications in the watched namespaces, as the Application watcher's store holds
/// them once its first list is in: an empty store before that list must not look like "no
/// applications". They were listed from the API server (metadata alone) every GC interval,
/// for what the store knew: with the reports' metadata, listed then too, that took 20-35 MB for
/// a moment per replica at 2,000 apps (scale bench, RSS sampled every 2 s).
///
/// The first list is signalled by the stream itself rather than `Store::wait_until_ready`: that
/// waits on a oneshot receiver (kube-runtime 5.0 `utils/delayed_init.rs`), which wakes only the
/// task that polled it last, and the controller's runner waits on it too — readiness then never
/// came (tests/live.rs).
#[derive(Clone)]
struct OptedIn {
    store: reflector::Store<DynamicObject>,
    /// Turns true once the watcher's first list is in the store.
    listed: watch::Receiver<bool>,
    namespaces: AppNamespaces,
    /// The watch is of one namespace: everything it lists is watched.
    namespaced: bool,
}

impl OptedIn {
    fn watches(&self, app: &ObjectMeta) -> bool {
        self.namespaced
            || self
                .namespaces
                .contains(app.namespace.as_deref().unwrap_or_default())
    }

    /// Waits for the watcher's first list; an error only when the watch ended before it. (A
    /// relist after the watch expired replaces the store's contents at its end, never empties
    /// it on the way.)
    async fn list(&self) -> Result<HashSet<AppRef>, watch::error::RecvError> {
        self.listed.clone().wait_for(|listed| *listed).await?;
        Ok(self
            .store
            .state()
            .iter()
            .filter(|a| self.watches(&a.metadata))
            .map(|a| {
                let name = a.metadata.name.as_deref().unwrap_or_default();
                let app = ObjectRef::new_with(name, application::api_resource());
                match &a.metadata.namespace {
                    Some(namespace) => app.within(namespace),
                    None => app,
                }
            })
            .collect())
    }
}

/// `namespace/name`, the key apps are sharded by.
fn app_key(app: &AppRef) -> String {
    format!(
        "{}/{}",
        app.namespace.as_deref().unwrap_or_default(),
        app.name
    )
}

/// Ready once each opted-in Application that existed at start has been analysed once.
async fn readiness(opted_in: OptedIn, ctx: Arc<Context>, ready: Arc<AtomicBool>) {
    // No list: the Application watch ended before its first list (the controller is stopping).
    let Ok(wanted) = opted_in.list().await else {
        return;
    };
    loop {
        // Sharded, a replica is ready once its own share is analysed; it knows its share once
        // it has seen the other replicas.
        let done = (!ctx.shards.is_sharded() || !ctx.shards.members().is_empty()) && {
            let reconciled = crate::lock(&ctx.reconciled);
            wanted
                .iter()
                .filter(|a| ctx.shards.owns(&app_key(a)))
                .all(|a| reconciled.contains(a))
        };
        if done {
            ready.store(true, Ordering::Relaxed);
            tracing::info!(
                applications = wanted.len(),
                "first full analysis done: ready"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deleted or opted-out Applications get no reconcile call; look for them now and then.
async fn forget_gone_apps(opted_in: OptedIn, ctx: Arc<Context>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        // No list: the Application watch ended before its first list (the controller is
        // stopping); nothing is left to forget.
        let Ok(alive) = opted_in.list().await else {
            return;
        };
        let owned: HashSet<AppRef> = alive
            .iter()
            .filter(|a| ctx.shards.owns(&app_key(a)))
            .cloned()
            .collect();
        for app in ctx.forget_missing(&alive, &owned) {
            let namespace = app.namespace.as_deref().unwrap_or_default();
            if let Err(e) = ctx.publisher.delete_report(namespace, &app.name).await {
                tracing::warn!(app = %app.name, error = %e, "deleting the report of a forgotten application");
            }
        }
        // Also the reports of apps never analysed here, or gone while argo-drift was down.
        match ctx
            .publisher
            .prune_reports(&alive, &opted_in.namespaces, crate::publish::PRUNE_PAGE)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(reports = n, "reports of gone applications deleted"),
            Err(e) => tracing::warn!(error = %e, "pruning the reports of gone applications"),
        }
    }
}

/// Re-read the policy file when it changes (a ConfigMap volume swaps a symlink, so the
/// modification time and size are compared rather than relying on inotify). A bad file is
/// logged and the running policy kept.
/// When Argo CD's `argocd-cm` changes, every application is analysed again with its settings.
async fn follow_argocd_cm(
    every: Duration,
    argocd_cm: reflector::Store<ConfigMap>,
    store: reflector::Store<DynamicObject>,
    triggers: mpsc::UnboundedSender<Trigger>,
) {
    let version = || {
        argocd_cm
            .state()
            .into_iter()
            .next()
            .and_then(|cm| cm.metadata.resource_version.clone())
    };
    let mut last = version();
    loop {
        tokio::time::sleep(every).await;
        let now = version();
        if now == last {
            continue;
        }
        last = now;
        tracing::info!("argocd-cm changed; analysing every application again");
        analyse_all(&store, &triggers);
    }
}

/// Follow argocd-cmd-params-cm `application.namespaces` while running: a namespace added is
/// watched (its apps analysed at once), one removed is let go (its apps forgotten, their
/// reports deleted, at the next forgetting round). An entry that does not compile is logged and
/// the running list kept. (Argo CD's own components take the list at start.)
async fn follow_application_namespaces(
    every: Duration,
    configmaps: Api<ConfigMap>,
    control_plane: String,
    watched: AppNamespaces,
    store: reflector::Store<DynamicObject>,
    triggers: mpsc::UnboundedSender<Trigger>,
) {
    loop {
        tokio::time::sleep(every).await;
        let params = match configmaps.get_opt("argocd-cmd-params-cm").await {
            Ok(cm) => cm.and_then(|cm| cm.data).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "reading argocd-cmd-params-cm (application.namespaces)");
                continue;
            }
        };
        let list = crate::namespaces::from_argocd(
            &control_plane,
            params.get("application.namespaces").map(String::as_str),
        );
        let now = match AppNamespaces::new(&list) {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, "argocd-cmd-params-cm application.namespaces: keeping the running list");
                continue;
            }
        };
        if now.describe() == watched.describe() {
            continue;
        }
        tracing::info!(from = %watched.describe(), to = %now.describe(), "application.namespaces changed; watching Applications there");
        watched.replace(&now);
        analyse_all(&store, &triggers);
    }
}

/// An Application's key for sharding: `namespace/name`.
fn shard_key(app: &DynamicObject) -> String {
    format!(
        "{}/{}",
        app.metadata.namespace.as_deref().unwrap_or_default(),
        app.metadata.name.as_deref().unwrap_or_default()
    )
}

fn analyse_all(store: &reflector::Store<DynamicObject>, triggers: &mpsc::UnboundedSender<Trigger>) {
    let apps = store
        .state()
        .into_iter()
        .map(|app| ObjectRef::from_obj_with(app.as_ref(), application::api_resource()));
    crate::live::send_all(triggers, apps, false);
}

async fn reload_policy(
    path: std::path::PathBuf,
    every: Duration,
    ctx: Arc<Context>,
    store: reflector::Store<DynamicObject>,
    triggers: mpsc::UnboundedSender<Trigger>,
) {
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
    };
    let mut last = stamp(&path);
    loop {
        tokio::time::sleep(every).await;
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        match super::load_policy(&PolicyArgs {
            policy: Some(path.clone()),
        }) {
            Ok(policy) => {
                tracing::info!(file = %path.display(), "policy reloaded; analysing every application again");
                ctx.set_policy(policy);
                analyse_all(&store, &triggers);
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %format!("{e:#}"), "policy not reloaded; keeping the previous one")
            }
        }
    }
}
