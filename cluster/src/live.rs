//! Live state: one watch per (kind, namespace) that some application needs, shared between
//! applications, each keeping its objects compactly (see [`Cached`]). Every change a watch sees is turned into a trigger for exactly the applications
//! that hold that object in Git or track it (annotation or label), so an out-of-band edit
//! re-analyses only its own application. A process that lives for seconds (a hook) reads
//! objects once instead (`read_once`); both turn them into comparable resources the same way
//! (`to_prepared`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use argo_drift_core::manifest::{Origin, Resource, ResourceKey};
use argo_drift_core::normalize::{prepare, Prepared, TrackingKeys};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::connect::WatchConnections;
pub use crate::discovery::Kind;
use crate::discovery::Kinds;
use crate::error::{Error, Result};
use crate::lock;
use crate::metrics::{labels, Metrics};

pub type AppRef = ObjectRef<DynamicObject>;

/// A live change that concerns an application, and when it was seen.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub app: AppRef,
    pub seen: Instant,
    /// A change of a live object (counted for detection latency), not an internal reason.
    pub live_change: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchKey {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
}

impl WatchKey {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl std::fmt::Display for WatchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{group}/{}/{}", self.version, self.kind)?;
        if let Some(ns) = &self.namespace {
            write!(f, " in {ns}")?;
        }
        Ok(())
    }
}

/// A live object as the cache keeps it: what finding an application's objects reads ([`Meta`]),
/// the digest of what analysis reads (an update that leaves it alone triggers nothing), and the
/// object itself serialised — a few hundred bytes rather than a tree of maps, parsed only when
/// its application is analysed.
pub struct Cached {
    pub metadata: Meta,
    digest: u64,
    json: Box<str>,
}

/// The metadata an object is found by: name, namespace, labels, and annotations but the
/// last-applied copy. Kept for every watched object, so in boxed slices rather than an
/// `ObjectMeta` (some 350 bytes even when empty) with a B-tree node per map (544 bytes for a
/// `String` map's first node, however few entries it holds).
pub struct Meta {
    pub name: Box<str>,
    /// Empty for cluster-scoped objects.
    pub namespace: Box<str>,
    labels: Box<[(Box<str>, Box<str>)]>,
    annotations: Box<[(Box<str>, Box<str>)]>,
}

impl Meta {
    pub fn new(o: &ObjectMeta) -> Meta {
        let pairs = |map: &Option<BTreeMap<String, String>>| -> Box<[(Box<str>, Box<str>)]> {
            map.iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != argo_drift_core::normalize::LAST_APPLIED)
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect()
        };
        Meta {
            name: o.name.as_deref().unwrap_or_default().into(),
            namespace: o.namespace.as_deref().unwrap_or_default().into(),
            labels: pairs(&o.labels),
            annotations: pairs(&o.annotations),
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        find(&self.labels, key)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        find(&self.annotations, key)
    }
}

/// The value of `key` among `pairs`, sorted by key (they come from a `BTreeMap`).
fn find<'a>(pairs: &'a [(Box<str>, Box<str>)], key: &str) -> Option<&'a str> {
    pairs
        .binary_search_by(|(k, _)| (**k).cmp(key))
        .ok()
        .map(|i| &*pairs[i].1)
}

impl Cached {
    fn new(o: &DynamicObject) -> Cached {
        let json = serde_json::to_string(o).unwrap_or_default();
        Cached {
            metadata: Meta::new(&o.metadata),
            // In cache form the object holds only what analysis reads: its text is the digest.
            digest: {
                use std::hash::{Hash as _, Hasher as _};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                json.hash(&mut hasher);
                hasher.finish()
            },
            json: json.into_boxed_str(),
        }
    }

    /// The object as the API server sent it (in cache form).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }
}

/// A watch's objects, told apart by namespace and name — those of their own [`Meta`], so the
/// set holds no second copy of them.
type Objects = HashSet<ByName>;

/// A cached object as a member of its watch's set: equal to another of the same namespace and
/// name.
struct ByName(Arc<Cached>);

impl ByName {
    /// A stand-in to find or remove the object with `meta`'s namespace and name.
    fn key(meta: Meta) -> ByName {
        ByName(Arc::new(Cached {
            metadata: meta,
            digest: 0,
            json: Box::default(),
        }))
    }

    fn id(&self) -> (&str, &str) {
        (&self.0.metadata.namespace, &self.0.metadata.name)
    }
}

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for ByName {}

impl std::hash::Hash for ByName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

struct Watch {
    objects: Arc<Mutex<Objects>>,
    ready: watch::Receiver<bool>,
    task: tokio::task::AbortHandle,
    /// The watch's latest error, said when it does not list in time (e.g. "forbidden").
    last_error: Arc<Mutex<Option<String>>>,
}

/// An application reference shared by every entry naming it: an `ObjectRef` is a dozen
/// strings, and there is an entry per tracked object.
type Shared = Arc<AppRef>;

/// Which applications care about which objects.
///
/// There is an entry in `by_key` per object some application holds in Git, so it is kept
/// small: the key is shared with the application's own list in `registered` (one allocation
/// instead of two copies of four strings), and the applications holding an object — almost
/// always one — are a vector rather than a hash set.
#[derive(Default)]
struct Interest {
    by_key: HashMap<Arc<ResourceKey>, Vec<Shared>>,
    /// Application names as tracking marks name them.
    by_name: HashMap<String, HashSet<Shared>>,
    by_watch: HashMap<WatchKey, HashSet<Shared>>,
    registered: HashMap<Shared, Registration>,
}

/// What an application registered: the objects it holds in Git, its tracking name, its watches.
type Registration = (Vec<Arc<ResourceKey>>, String, Vec<WatchKey>);

/// The live state of one cluster.
pub struct LiveState {
    client: Client,
    /// The connections the watches share (HTTP/2 streams; see `crate::connect`).
    connections: WatchConnections,
    /// The cluster's name, for metrics and logs.
    cluster: String,
    /// Argo CD's tracking marks, shared by every cluster and followed as argocd-cm changes.
    tracking: Arc<RwLock<TrackingKeys>>,
    kinds: Kinds,
    watches: Mutex<HashMap<WatchKey, Arc<Watch>>>,
    interest: Arc<Mutex<Interest>>,
    triggers: mpsc::UnboundedSender<Trigger>,
    metrics: Arc<Metrics>,
}

impl LiveState {
    pub fn new(
        client: Client,
        connections: WatchConnections,
        cluster: &str,
        tracking: Arc<RwLock<TrackingKeys>>,
        triggers: mpsc::UnboundedSender<Trigger>,
        metrics: Arc<Metrics>,
    ) -> LiveState {
        LiveState {
            kinds: Kinds::new(client.clone()),
            client,
            connections,
            cluster: cluster.to_string(),
            tracking,
            watches: Mutex::default(),
            interest: Arc::default(),
            triggers,
            metrics,
        }
    }

    /// Resolve an apiVersion and kind through this cluster's discovery (cached).
    pub async fn kind(&self, api_version: &str, kind: &str) -> Result<Arc<Kind>> {
        self.kinds.kind(api_version, kind).await
    }

    /// This cluster's discovery.
    pub fn kinds(&self) -> &Kinds {
        &self.kinds
    }

    /// Record what an application needs and start any watch not running yet. Returns once every
    /// watch it needs has listed its objects, or fails after `timeout`.
    pub async fn register(
        &self,
        app: &AppRef,
        tracking_name: &str,
        keys: Vec<ResourceKey>,
        needed: Vec<(Arc<Kind>, WatchKey)>,
        optional: Vec<(Arc<Kind>, WatchKey)>,
        timeout: Duration,
    ) -> Result<()> {
        let watch_keys: Vec<WatchKey> = needed
            .iter()
            .chain(&optional)
            .map(|(_, w)| w.clone())
            .collect();
        {
            let mut interest = lock(&self.interest);
            interest.unregister(app);
            let app: Shared = Arc::new(app.clone());
            let keys: Vec<Arc<ResourceKey>> = keys.into_iter().map(Arc::new).collect();
            for k in &keys {
                let apps = interest.by_key.entry(k.clone()).or_default();
                if !apps.contains(&app) {
                    apps.push(app.clone());
                }
            }
            interest
                .by_name
                .entry(tracking_name.to_string())
                .or_default()
                .insert(app.clone());
            for w in &watch_keys {
                interest
                    .by_watch
                    .entry(w.clone())
                    .or_default()
                    .insert(app.clone());
            }
            interest
                .registered
                .insert(app.clone(), (keys, tracking_name.to_string(), watch_keys));
        }
        // Optional watches are not waited for: once listed, they trigger the app's analysis
        // again; one that never lists (no permission) only logs its errors.
        for (kind, key) in &optional {
            self.ensure_watch(kind, key);
        }
        for (kind, key) in needed {
            let watch = self.ensure_watch(&kind, &key);
            let mut ready = watch.ready.clone();
            let waited = tokio::time::timeout(timeout, ready.wait_for(|r| *r)).await;
            if !matches!(waited, Ok(Ok(_))) {
                return Err(Error::WatchNotReady {
                    what: key.to_string(),
                    seconds: timeout.as_secs(),
                    last_error: lock(&watch.last_error).clone(),
                });
            }
        }
        Ok(())
    }

    /// The applications registered here.
    pub fn apps(&self) -> HashSet<AppRef> {
        lock(&self.interest)
            .registered
            .keys()
            .map(|a| (**a).clone())
            .collect()
    }

    /// Forget applications that are gone (deleted, opted out, moved to another cluster) and
    /// stop the watches no application needs any more. Returns the applications forgotten.
    pub fn retain_apps(&self, alive: &HashSet<AppRef>) -> Vec<AppRef> {
        let (gone, unused) = {
            let mut interest = lock(&self.interest);
            let gone: Vec<AppRef> = interest
                .registered
                .keys()
                .filter(|a| !alive.contains(&***a))
                .map(|a| (**a).clone())
                .collect();
            for app in &gone {
                interest.unregister(app);
            }
            let watches = lock(&self.watches);
            let unused: Vec<WatchKey> = watches
                .keys()
                .filter(|k| !interest.by_watch.contains_key(*k))
                .cloned()
                .collect();
            (gone, unused)
        };
        let mut watches = lock(&self.watches);
        for key in unused {
            if let Some(w) = watches.remove(&key) {
                w.task.abort();
                tracing::info!(cluster = %self.cluster, watch = %key, "watch stopped: no application needs it");
            }
        }
        self.count_watches(watches.len());
        gone
    }

    fn count_watches(&self, n: usize) {
        let cluster = labels(&[("cluster", &self.cluster)]);
        self.metrics
            .cluster_watches
            .get_or_create(&cluster)
            .set(n as i64);
        self.metrics
            .watch_connections
            .get_or_create(&cluster)
            .set(self.connections.connections() as i64);
    }

    /// The objects a running watch holds now.
    pub fn objects(&self, key: &WatchKey) -> Vec<Arc<Cached>> {
        lock(&self.watches)
            .get(key)
            .map(|w| lock(&w.objects).iter().map(|o| o.0.clone()).collect())
            .unwrap_or_default()
    }

    fn ensure_watch(&self, kind: &Kind, key: &WatchKey) -> Arc<Watch> {
        let mut watches = lock(&self.watches);
        if let Some(w) = watches.get(key) {
            return w.clone();
        }
        // A place on a shared connection, held by the watch's task until it ends.
        let place = match self.connections.place() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(cluster = %self.cluster, watch = %key, error = %e,
                    "no client for a watch connection of its own; the watch uses the cluster's client");
                None
            }
        };
        let client = place
            .as_ref()
            .map_or_else(|| self.client.clone(), |p| p.client());
        let api: Api<DynamicObject> = match &key.namespace {
            Some(ns) => Api::namespaced_with(client, ns, &kind.resource),
            None => Api::all_with(client, &kind.resource),
        };
        let secret = argo_drift_core::redact::is_secret(&kind.resource.group, &kind.resource.kind);
        let objects: Arc<Mutex<Objects>> = Arc::default();
        let (ready_tx, ready_rx) = watch::channel(false);
        // kube-runtime's watcher re-lists on 410 Gone and backs off with jitter on errors.
        // Analysis never reads a live object's status: it is not kept, and a change of status
        // alone analyses nothing again (see `cache_form` and `Cached`).
        let stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(move |o: &mut DynamicObject| cache_form(o, secret));
        let store = objects.clone();
        let interest = self.interest.clone();
        let triggers = self.triggers.clone();
        let tracking = self.tracking.clone();
        let metrics = self.metrics.clone();
        let watch_key = key.clone();
        let label = key.to_string();
        let cluster = self.cluster.clone();
        let last_error: Arc<Mutex<Option<String>>> = Arc::default();
        let errors = last_error.clone();
        let task = tokio::spawn(async move {
            let _place = place;
            let mut stream = std::pin::pin!(stream);
            let mut listed = false;
            let watch_labels = labels(&[("cluster", &cluster), ("kind", &watch_key.kind)]);
            // A (re-)list fills this, then replaces the objects at once.
            let mut relisted: Objects = HashSet::new();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::Apply(o)) => {
                        let cached = Arc::new(Cached::new(&o));
                        // What analysis could see is unchanged (status, resourceVersion, the
                        // status writer's managedFields entry): nothing to do.
                        let before = lock(&store).replace(ByName(cached.clone()));
                        if before.is_some_and(|b| b.0.digest == cached.digest) {
                            metrics
                                .watch_events_ignored
                                .get_or_create(&watch_labels)
                                .inc();
                            continue;
                        }
                        let keys = tracking.read().unwrap_or_else(|p| p.into_inner()).clone();
                        let apps = lock(&interest).apps_for(&cached.metadata, &watch_key, &keys);
                        send(&triggers, apps);
                    }
                    Ok(Event::InitApply(o)) => {
                        relisted.replace(ByName(Arc::new(Cached::new(&o))));
                    }
                    Ok(Event::Delete(o)) => {
                        let gone = ByName::key(Meta::new(&o.metadata));
                        lock(&store).remove(&gone);
                        let keys = tracking.read().unwrap_or_else(|p| p.into_inner()).clone();
                        let apps = lock(&interest).apps_for(&gone.0.metadata, &watch_key, &keys);
                        send(&triggers, apps);
                    }
                    Ok(Event::Init) => {
                        // A list that broke off and starts again must not leave its first
                        // items behind (an object deleted in between would stay).
                        relisted.clear();
                        if listed {
                            metrics.watch_restarts.get_or_create(&watch_labels).inc();
                            tracing::info!(cluster = %cluster, watch = %label, "watch re-listing");
                        }
                    }
                    Ok(Event::InitDone) => {
                        *lock(&store) = std::mem::take(&mut relisted);
                        listed = true;
                        *lock(&errors) = None;
                        let _ = ready_tx.send(true);
                        // After a re-list (410 Gone, API server restart) changes may have been
                        // missed: every application on this watch is analysed again.
                        let apps = lock(&interest)
                            .by_watch
                            .get(&watch_key)
                            .map(|a| a.iter().map(|a| (**a).clone()).collect())
                            .unwrap_or_default();
                        send(&triggers, apps);
                    }
                    Err(e) => {
                        metrics.watch_errors.get_or_create(&watch_labels).inc();
                        tracing::warn!(cluster = %cluster, watch = %label, error = %e, "watch error; retrying with backoff");
                        *lock(&errors) = Some(e.to_string());
                    }
                }
            }
        });
        let w = Arc::new(Watch {
            objects,
            ready: ready_rx,
            task: task.abort_handle(),
            last_error,
        });
        watches.insert(key.clone(), w.clone());
        self.count_watches(watches.len());
        w
    }
}

/// A cluster's live state replaced (its credentials rotated) or dropped stops its watches.
impl Drop for LiveState {
    fn drop(&mut self) {
        for w in lock(&self.watches).values() {
            w.task.abort();
        }
    }
}

/// What the live cache keeps of an object: no status and no resourceVersion (analysis never
/// reads them, so an update of only those is ignored), and of a
/// Secret no value — its `data` and kubectl's copy in the last-applied annotation hold keyed
/// digests instead ([`argo_drift_core::redact::DIGEST_PREFIX`]), which mask like the values.
pub fn cache_form(o: &mut DynamicObject, secret: bool) {
    if let Some(map) = o.data.as_object_mut() {
        map.remove("status");
    }
    // Who wrote the status says nothing about the fields analysis reads, nor does the version
    // (the watcher has taken it from the event before this runs).
    if let Some(fields) = &mut o.metadata.managed_fields {
        fields.retain(|f| f.subresource.as_deref() != Some("status"));
    }
    o.metadata.resource_version = None;
    // Listed items come without apiVersion and kind, watched ones with: the watch knows them.
    o.types = None;
    if !secret {
        return;
    }
    argo_drift_core::redact::digest_secret_values(&mut o.data);
    if let Some(text) = o
        .metadata
        .annotations
        .as_mut()
        .and_then(|a| a.get_mut(argo_drift_core::normalize::LAST_APPLIED))
    {
        *text = argo_drift_core::redact::digest_last_applied(text).unwrap_or_default();
    }
}

/// A digest of an object's metadata and content, for telling versions apart that analysis
/// would see the same (callers first take out what it does not read).
pub fn object_digest(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    data: &Value,
) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(meta)
        .unwrap_or_default()
        .hash(&mut hasher);
    serde_json::to_string(data)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

fn send(triggers: &mpsc::UnboundedSender<Trigger>, apps: HashSet<AppRef>) {
    send_all(triggers, apps, true);
}

/// Analyse `apps` again; `live_change`: because a live object changed (counted for latency).
/// A live object as the comparison takes it: typed (items of a list or watch may come without
/// their apiVersion and kind; the caller knows them) and prepared with Argo CD's tracking marks.
pub fn to_prepared(
    object: &DynamicObject,
    api_version: &str,
    kind: &str,
    tracking: &TrackingKeys,
) -> Result<Prepared> {
    let value = serde_json::to_value(object).unwrap_or(Value::Null);
    value_to_prepared(value, api_version, kind, tracking)
}

/// [`to_prepared`] for an object already as JSON (a [`Cached`] object's value).
pub fn value_to_prepared(
    mut value: Value,
    api_version: &str,
    kind: &str,
    tracking: &TrackingKeys,
) -> Result<Prepared> {
    if let Value::Object(map) = &mut value {
        map.insert("apiVersion".into(), Value::String(api_version.to_string()));
        map.insert("kind".into(), Value::String(kind.to_string()));
    }
    let origin = Origin {
        source: Arc::from("live"),
        document: 1,
        item: None,
        line: 1,
    };
    Ok(prepare(Resource::from_object(value, origin)?, tracking))
}

/// The live counterparts of `wanted` (key, apiVersion, kind as served), read one by one without
/// watches, for a process that lives for seconds; and the keys the caller may not read (403),
/// which are named rather than failing the whole read.
pub async fn read_once(
    client: &Client,
    wanted: &[(ResourceKey, String, Arc<Kind>)],
    tracking: &TrackingKeys,
) -> Result<(BTreeMap<ResourceKey, Prepared>, Vec<ResourceKey>)> {
    let mut live = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (key, api_version, kind) in wanted {
        let api: Api<DynamicObject> = if kind.namespaced {
            Api::namespaced_with(client.clone(), &key.namespace, &kind.resource)
        } else {
            Api::all_with(client.clone(), &kind.resource)
        };
        match api.get_opt(&key.name).await {
            Ok(Some(object)) => {
                live.insert(
                    key.clone(),
                    to_prepared(&object, api_version, &key.kind, tracking)?,
                );
            }
            Ok(None) => {}
            Err(kube::Error::Api(status)) if status.code == 403 => unreadable.push(key.clone()),
            Err(e) => return Err(Error::kube(format!("reading {key}"))(e)),
        }
    }
    Ok((live, unreadable))
}

pub fn send_all(
    triggers: &mpsc::UnboundedSender<Trigger>,
    apps: impl IntoIterator<Item = AppRef>,
    live_change: bool,
) {
    let seen = Instant::now();
    for app in apps {
        let _ = triggers.send(Trigger {
            app,
            seen,
            live_change,
        });
    }
}

impl Interest {
    fn unregister(&mut self, app: &AppRef) {
        let Some((keys, name, watches)) = self.registered.remove(app) else {
            return;
        };
        for k in keys {
            if let Some(apps) = self.by_key.get_mut(&k) {
                apps.retain(|a| **a != *app);
                if apps.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
        remove_from(&mut self.by_name, &name, app);
        for w in watches {
            remove_from(&mut self.by_watch, &w, app);
        }
    }

    fn apps_for(&self, o: &Meta, watch: &WatchKey, tracking: &TrackingKeys) -> HashSet<AppRef> {
        let mut apps = HashSet::new();
        let key = ResourceKey {
            group: watch.group.clone(),
            kind: watch.kind.clone(),
            namespace: o.namespace.to_string(),
            name: o.name.to_string(),
        };
        if let Some(a) = self.by_key.get(&key) {
            apps.extend(a.iter().map(|a| (**a).clone()));
        }
        for name in tracking_names(o, tracking) {
            if let Some(a) = self.by_name.get(name) {
                // Only applications that watch this kind and namespace can see the object.
                let on_watch = self.by_watch.get(watch);
                apps.extend(
                    a.iter()
                        .filter(|app| on_watch.is_some_and(|w| w.contains(*app)))
                        .map(|a| (**a).clone()),
                );
            }
        }
        apps
    }
}

/// The application names an object's tracking marks give: the app part of the tracking-id
/// annotation and the instance label. A quick filter; the core engine checks a tracking-id
/// against the object it sits on.
pub fn tracking_names<'a>(o: &'a Meta, keys: &TrackingKeys) -> impl Iterator<Item = &'a str> {
    let annotation = o
        .annotation(&keys.annotation)
        .and_then(|v| v.split(':').next());
    annotation.into_iter().chain(o.label(&keys.label))
}

fn remove_from<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, HashSet<Shared>>,
    key: &K,
    app: &AppRef,
) {
    if let Some(set) = map.get_mut(key) {
        set.remove(app);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_no_status_and_no_secret_value() {
        let mut secret: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration":
                    "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"data\":{\"password\":\"czNjcjN0\"}}"}},
            "data": {"password": "czNjcjN0"},
            "type": "Opaque",
        }))
        .unwrap();
        cache_form(&mut secret, true);
        let text = serde_json::to_string(&secret).unwrap();
        assert!(!text.contains("czNjcjN0"), "{text}");
        assert_eq!(secret.data["type"], "Opaque");
        let mut r = argo_drift_core::redact::Redactor::new();
        let mut git = serde_json::json!({"stringData": {"password": "s3cr3t"}});
        r.redact_secret(&mut git);
        let mut cached = secret.data.clone();
        r.redact_secret(&mut cached);
        assert_eq!(cached["data"]["password"], git["stringData"]["password"]);

        let mut cm: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"a": "1"}, "status": {"x": 1},
        }))
        .unwrap();
        cache_form(&mut cm, false);
        assert_eq!(cm.data, serde_json::json!({"data": {"a": "1"}}));
    }

    #[test]
    fn an_objects_tracking_marks_are_found_in_its_compact_metadata() {
        let o: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "shop",
                "labels": {"app.kubernetes.io/instance": "shop-web", "tier": "web", "a": "1"},
                "annotations": {
                    "argocd.argoproj.io/tracking-id": "web:/ConfigMap:shop/c",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "zeta": "z"}},
        }))
        .unwrap();
        let meta = Meta::new(&o.metadata);
        assert_eq!((&*meta.name, &*meta.namespace), ("c", "shop"));
        assert_eq!(meta.label("tier"), Some("web"));
        assert_eq!(meta.label("a"), Some("1"));
        assert_eq!(meta.label("missing"), None);
        assert_eq!(meta.annotation("zeta"), Some("z"));
        // The last-applied copy is not kept: it is most of an object's metadata.
        assert_eq!(
            meta.annotation(argo_drift_core::normalize::LAST_APPLIED),
            None
        );
        let names: Vec<&str> = tracking_names(&meta, &TrackingKeys::default()).collect();
        assert_eq!(names, ["web", "shop-web"]);

        let cluster_scoped: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"},
        }))
        .unwrap();
        let meta = Meta::new(&cluster_scoped.metadata);
        assert_eq!(&*meta.namespace, "");
        assert_eq!(tracking_names(&meta, &TrackingKeys::default()).count(), 0);
    }
}
