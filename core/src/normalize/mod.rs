//! Normalisation: what makes a live object equal to its desired manifest when nothing really
//! drifted. Per object (`prepare`): server-owned fields, nulls, Secret `stringData`. Per pair (used
//! by the diff walk): equivalent values, server defaults versus out-of-band additions, and
//! `ignoreDifferences`.

pub mod defaults;
pub mod ignore;
pub mod known_types;
pub mod managed;
pub mod merge_keys;
pub mod quantity;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::manifest::{Origin, Resource, ResourceKey};
use crate::path::{FieldPath, Step};
use managed::Ownership;

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
pub const DEPLOYMENT_REVISION: &str = "deployment.kubernetes.io/revision";
pub const DEFAULT_TRACKING_LABEL: &str = "app.kubernetes.io/instance";
pub const DEFAULT_TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";

/// Which field managers are whose. Argo CD 2.5 and later apply every manifest, client-side and
/// server-side, under `argocd-controller` (gitops-engine `pkg/utils/kube/resource_ops.go` sets
/// kubectl's `FieldManager`, gitops-engine #418), so `kubectl-client-side-apply` is a person
/// running `kubectl apply`: out of band, attributed exactly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Managers {
    /// Managers that apply Git: a field only they own, present only in live, is not drift.
    #[serde(default = "Managers::default_gitops")]
    pub gitops: Vec<String>,
    /// Kubernetes' own controllers: fields only they add (a PVC's volumeName) are not drift.
    #[serde(default = "Managers::default_system")]
    pub system: Vec<String>,
    /// Managers that cannot tell GitOps from a person: their writes are reported as ambiguous.
    /// Empty by default; an Argo CD older than 2.5 applied as `kubectl-client-side-apply`.
    #[serde(default)]
    pub ambiguous: Vec<String>,
}

impl Managers {
    fn default_gitops() -> Vec<String> {
        ["argocd-controller", "argocd-application-controller"]
            .map(String::from)
            .to_vec()
    }
    fn default_system() -> Vec<String> {
        ["kube-controller-manager", "kube-scheduler", "kubelet"]
            .map(String::from)
            .to_vec()
    }
}

impl Default for Managers {
    fn default() -> Self {
        Managers {
            gitops: Managers::default_gitops(),
            system: Managers::default_system(),
            ambiguous: Vec::new(),
        }
    }
}

/// Which mark tells Argo CD that a live object is an application's (argocd-cm
/// `application.resourceTrackingMethod`; util/argo/resource_tracking.go GetAppName).
#[derive(
    Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum TrackingMethod {
    /// The tracking-id annotation only: Argo CD 3.x's default. A label alone tracks nothing.
    #[default]
    #[serde(rename = "annotation")]
    Annotation,
    /// The annotation; the label is written too, for other tools, and not read.
    #[serde(rename = "annotation+label")]
    AnnotationAndLabel,
    /// The instance label only (Argo CD before 3.0 by default).
    #[serde(rename = "label")]
    Label,
}

impl std::str::FromStr for TrackingMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "annotation" => Ok(TrackingMethod::Annotation),
            "annotation+label" => Ok(TrackingMethod::AnnotationAndLabel),
            "label" => Ok(TrackingMethod::Label),
            other => Err(format!(
                "unknown tracking method {other:?} (annotation, annotation+label or label)"
            )),
        }
    }
}

/// The annotation Argo CD sets to its `installationID` (common.AnnotationInstallationID).
pub const INSTALLATION_ID: &str = "argocd.argoproj.io/installation-id";

/// How Argo CD marks the live objects it tracks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrackingKeys {
    /// Which of the two marks counts (argocd-cm `application.resourceTrackingMethod`).
    #[serde(default)]
    pub method: TrackingMethod,
    /// The instance label (argocd-cm `application.instanceLabelKey`).
    #[serde(default = "TrackingKeys::default_label")]
    pub label: String,
    #[serde(default = "TrackingKeys::default_annotation")]
    pub annotation: String,
    /// argocd-cm `installationID`: with annotation tracking, an object whose
    /// `argocd.argoproj.io/installation-id` differs belongs to another Argo CD.
    #[serde(default)]
    pub installation_id: String,
}

impl TrackingKeys {
    fn default_label() -> String {
        DEFAULT_TRACKING_LABEL.to_string()
    }
    fn default_annotation() -> String {
        DEFAULT_TRACKING_ANNOTATION.to_string()
    }
}

impl Default for TrackingKeys {
    fn default() -> Self {
        TrackingKeys {
            method: TrackingMethod::default(),
            label: TrackingKeys::default_label(),
            annotation: TrackingKeys::default_annotation(),
            installation_id: String::new(),
        }
    }
}

/// What tracking marks a live object carries.
#[derive(Debug, Clone, Default)]
pub struct Tracking {
    /// Value of the tracking-id annotation (`<app>:<group>/<Kind>:<namespace>/<name>`).
    pub annotation: Option<String>,
    /// Value of the instance label.
    pub label: Option<String>,
    /// Has ownerReferences: a child of another object (a ReplicaSet, a Pod), never "extra".
    pub owned: bool,
}

impl Tracking {
    /// The Argo CD application this object belongs to, if it says so. A tracking-id that names
    /// another object (copied annotations) does not count, as in Argo CD.
    pub fn app(&self, key: &ResourceKey) -> Option<&str> {
        if self.owned {
            return None;
        }
        if let Some(id) = &self.annotation {
            let (app, rest) = id.split_once(':')?;
            let expected = format!("{}/{}:{}/{}", key.group, key.kind, key.namespace, key.name);
            return (rest == expected).then_some(app);
        }
        self.label.as_deref()
    }
}

/// The `kubectl.kubernetes.io/last-applied-configuration` annotation of a live object, parsed
/// the first time a field is looked up in it. Many objects that carry it never need it: with
/// managedFields it is only read for a field that Git lacks and only GitOps or system managers
/// own. On the 2,000-pair corpus parsing every one was 3.6% of a diff (`kubectl get -o yaml`
/// form, callgrind).
#[derive(Debug, Clone)]
pub struct LastApplied {
    text: String,
    parsed: std::sync::OnceLock<Option<Value>>,
}

impl LastApplied {
    pub fn new(text: String) -> LastApplied {
        LastApplied {
            text,
            parsed: std::sync::OnceLock::new(),
        }
    }

    /// The configuration, or `None` when the annotation is not a JSON document.
    pub fn value(&self) -> Option<&Value> {
        self.parsed
            .get_or_init(|| serde_json::from_str(&self.text).ok())
            .as_ref()
    }
}

/// An object ready to compare: server-owned fields gone, with what the pairwise step needs kept
/// aside (ownership, last-applied configuration, tracking).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub key: ResourceKey,
    pub api_version: String,
    pub origin: Origin,
    pub object: Value,
    pub ownership: Option<Ownership>,
    /// The last-applied configuration; may hold Secret values, so it is never output.
    pub last_applied: Option<LastApplied>,
    pub tracking: Tracking,
    pub namespace_given: bool,
}

impl crate::manifest::Located for Prepared {
    fn key(&self) -> &ResourceKey {
        &self.key
    }
    fn origin(&self) -> &Origin {
        &self.origin
    }
}

impl Prepared {
    /// See [`crate::manifest::namespace_resolved`].
    pub fn namespace_resolved(
        &self,
        default_namespace: &str,
        scopes: &crate::manifest::Scopes,
    ) -> bool {
        crate::manifest::namespace_resolved(
            &self.key,
            &self.object,
            self.namespace_given,
            default_namespace,
            scopes,
        )
    }

    /// See [`crate::manifest::resolve_namespace`].
    pub fn resolve_namespace(&mut self, default_namespace: &str, scopes: &crate::manifest::Scopes) {
        crate::manifest::resolve_namespace(
            &mut self.key,
            &mut self.object,
            self.namespace_given,
            default_namespace,
            scopes,
        );
    }
}

/// Strip what the server owns and keep aside what the comparison needs.
pub fn prepare(resource: Resource, tracking_keys: &TrackingKeys) -> Prepared {
    let Resource {
        key,
        api_version,
        mut object,
        origin,
        namespace_given,
        nulls,
        mut ownership,
    } = resource;
    let mut last_applied = None;
    let mut tracking = Tracking::default();
    if let Value::Object(map) = &mut object {
        map.remove("status");
        map.remove("apiVersion");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            // One pass over the fields rather than a search for each one removed.
            let mut managed = None;
            meta.retain(|field, value| match field.as_str() {
                "managedFields" => {
                    managed = Some(value.take());
                    false
                }
                // Set by controllers that adopt an object; Git never holds them.
                "ownerReferences" => {
                    tracking.owned = true;
                    false
                }
                "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "selfLink"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds" => false,
                _ => true,
            });
            if let Some(managed) = managed {
                ownership = Ownership::from_managed_fields(managed);
            }
            if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
                if let Some(Value::String(text)) = annotations.remove(LAST_APPLIED) {
                    last_applied = Some(LastApplied::new(text));
                }
                annotations.remove(DEPLOYMENT_REVISION);
                // Argo CD writes it on every object it applies when installationID is set.
                let installation = annotations.remove(INSTALLATION_ID);
                if let Some(Value::String(id)) = annotations.remove(&tracking_keys.annotation) {
                    // util/argo/resource_tracking.go getAppInstanceValue: another installation's
                    // object is nobody's here.
                    let ours = tracking_keys.installation_id.is_empty()
                        || installation.as_ref().and_then(Value::as_str)
                            == Some(tracking_keys.installation_id.as_str());
                    if tracking_keys.method != TrackingMethod::Label && ours {
                        tracking.annotation = Some(id);
                    }
                }
            }
            if let Some(Value::Object(labels)) = meta.get("labels") {
                if tracking_keys.method == TrackingMethod::Label {
                    tracking.label = labels
                        .get(&tracking_keys.label)
                        .and_then(Value::as_str)
                        .map(str::to_string);
                }
            }
        }
        if key.group.is_empty() && key.kind == "Secret" {
            merge_string_data(map);
        }
    }
    remove_nulls(&mut object, &mut nulls.unwrap_or(usize::MAX));
    Prepared {
        key,
        api_version,
        origin,
        object,
        ownership,
        last_applied,
        tracking,
        namespace_given,
    }
}

/// Argo CD's manifests API returns Secrets with every `data` value (and `stringData`, merged
/// into `data` first) replaced by a run of `+` (gitops-engine `pkg/diff/diff.go`,
/// `HideSecretData`, called by `server/application/application.go` for GetManifests). Such a
/// value says nothing about the real one. With `argocd_differs` (the keys whose masks differ in
/// Argo CD's managed-resources diff, where equal values get equal masks), a key Argo CD sees
/// changed keeps its mask, so it is compared as a change (its values masked in the report), and
/// any other masked key takes the live value. Without it, every masked key the live Secret has
/// takes the live value and is named as unverified. A key on one side only is still drift.
/// `None` when `desired` has no masked value.
pub fn unmask_secret_values(
    desired: &Prepared,
    live: &Prepared,
    argocd_differs: Option<&std::collections::BTreeSet<String>>,
) -> Option<(Prepared, Vec<String>)> {
    if !(desired.key.group.is_empty() && desired.key.kind == "Secret") {
        return None;
    }
    let is_masked = |v: &Value| {
        v.as_str()
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b == b'+'))
    };
    let data = desired.object.get("data")?.as_object()?;
    if !data.values().any(is_masked) {
        return None;
    }
    let live_data = live.object.get("data").and_then(Value::as_object);
    let mut copy = desired.clone();
    let mut unverified = Vec::new();
    if let Some(Value::Object(d)) = copy.object.get_mut("data") {
        for (k, v) in d.iter_mut() {
            if !is_masked(v) {
                continue;
            }
            if let Some(live_value) = live_data.and_then(|l| l.get(k)) {
                match argocd_differs {
                    Some(differs) if differs.contains(k) => {}
                    Some(_) => *v = live_value.clone(),
                    None => {
                        *v = live_value.clone();
                        unverified.push(format!("data.{k}"));
                    }
                }
            }
        }
    }
    Some((copy, unverified))
}

/// `stringData` is write-only: the server merges it into `data` (base64) and never returns it.
fn merge_string_data(secret: &mut Map<String, Value>) {
    let Some(Value::Object(string_data)) = secret.remove("stringData") else {
        return;
    };
    let data = secret
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    if let Value::Object(data) = data {
        for (k, v) in string_data {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            data.insert(
                k,
                Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

/// A null in a manifest means "absent" to the API server: removed from every mapping (a list's
/// null items stay). `left` is how many nulls may still be found: the walk stops once it is 0.
fn remove_nulls(value: &mut Value, left: &mut usize) {
    match value {
        Value::Object(map) if *left > 0 => {
            let before = map.len();
            map.retain(|_, v| !v.is_null());
            *left = left.saturating_sub(before - map.len());
            for v in map.values_mut() {
                if *left == 0 {
                    break;
                }
                remove_nulls(v, left);
            }
        }
        Value::Array(items) if *left > 0 => {
            for item in items {
                if *left == 0 {
                    break;
                }
                if item.is_null() {
                    *left -= 1;
                } else {
                    remove_nulls(item, left);
                }
            }
        }
        _ => {}
    }
}

/// Whether two leaves that differ as JSON mean the same to Kubernetes: `1` and `1.0`, a port
/// given as `"8080"` or `8080`, quantities in any notation.
pub fn equivalent(
    parent: Option<&str>,
    field: Option<&str>,
    desired: &Value,
    live: &Value,
) -> bool {
    if desired == live {
        return true;
    }
    if let Some(field) = field {
        if quantity::is_quantity_field(parent, field) {
            if let (Some(a), Some(b)) = (
                quantity::Quantity::from_value(desired),
                quantity::Quantity::from_value(live),
            ) {
                return a == b;
            }
        }
    }
    match (desired, live) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            is_plain_number(s) && s.parse::<f64>().ok() == n.as_f64()
        }
        _ => false,
    }
}

fn is_plain_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
}

/// How sure we are of who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributionKind {
    /// `managedFields` names the manager.
    Exact,
    /// Argo CD or a person: a manager listed in `managers.ambiguous`, or a field found only in
    /// the last-applied annotation of an object without `managedFields`.
    Ambiguous,
    /// Nothing says who: no `managedFields`, or a field removed from live.
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub manager: Option<String>,
    pub kind: AttributionKind,
    pub time: Option<String>,
}

impl Attribution {
    pub fn unknown() -> Attribution {
        Attribution {
            manager: None,
            kind: AttributionKind::Unknown,
            time: None,
        }
    }
}

/// The verdict on a field present only in live.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveOnly {
    /// Filled in by the server or a system controller: not drift.
    Default,
    /// Added out of band.
    Drift(Attribution),
    /// Mixed: look at the fields inside one by one.
    Descend,
    /// Only ownership data could say (no managedFields, not in the last-applied annotation, not
    /// a server default): a webhook, a controller or a person may have set it. Reported as
    /// unverified, not as drift.
    Unverified,
}

/// What the pairwise step knows about the live side of one pair.
pub struct LiveContext<'a> {
    pub kind: &'a str,
    pub live: &'a Value,
    pub ownership: Option<&'a Ownership>,
    pub last_applied: Option<&'a LastApplied>,
    pub managers: &'a Managers,
}

impl LiveContext<'_> {
    /// Decide whether a field found only in live is a default or drift. `is_item` says the value is
    /// a whole list item: an item is judged as one (a container added is one change).
    pub fn live_only(
        &self,
        path: &FieldPath,
        value: &Value,
        parent: Option<&Map<String, Value>>,
        is_item: bool,
    ) -> LiveOnly {
        let descendable = !is_item && matches!(value, Value::Object(m) if !m.is_empty());
        if let Some(ownership) = self.ownership {
            let owners = ownership.owners(self.live, path);
            if owners.is_empty() {
                return LiveOnly::Default;
            }
            let managers = self.managers;
            let out_of_band: Vec<_> = owners
                .iter()
                .filter(|o| {
                    !managers.gitops.contains(&o.entry.manager)
                        && !managers.system.contains(&o.entry.manager)
                })
                .collect();
            if !out_of_band.is_empty() {
                // A request that sets one field makes its manager own the defaults the server
                // filled in with it (`type: NodePort` brings `externalTrafficPolicy: Cluster`).
                // A value equal to the API default changes nothing, whoever owns it.
                if defaults::is_default_value(self.kind, path, value, parent) {
                    return LiveOnly::Default;
                }
                // A map the server filled in whole (`strategy.rollingUpdate` with its two
                // percentages) is owned whole by the creating manager; it is still only
                // defaults when every value in it is.
                if descendable && defaults::all_default_values(self.kind, path, value) {
                    return LiveOnly::Default;
                }
                if descendable && !out_of_band.iter().any(|o| o.whole) {
                    return LiveOnly::Descend;
                }
                let latest = out_of_band
                    .iter()
                    .max_by(|a, b| a.entry.time.cmp(&b.entry.time))
                    .map(|o| o.entry);
                return LiveOnly::Drift(self.attribution(latest));
            }
            if self.in_last_applied(path) {
                // Argo CD applied this field from an earlier Git revision (it is in the
                // last-applied annotation it wrote) and Git has dropped it since: drift, by the
                // GitOps manager that owns it.
                let latest = owners
                    .iter()
                    .max_by(|a, b| a.entry.time.cmp(&b.entry.time))
                    .map(|o| o.entry);
                return LiveOnly::Drift(self.attribution(latest));
            }
            return LiveOnly::Default;
        }
        if self.in_last_applied(path) {
            // Both Argo CD's client-side apply and a person's `kubectl apply` write the
            // last-applied annotation: a field there but not in Git was applied by someone, or
            // Git moved on since the last sync. Without managedFields nobody can say which.
            return LiveOnly::Drift(Attribution {
                manager: None,
                kind: AttributionKind::Ambiguous,
                time: None,
            });
        }
        if defaults::is_api_default(self.kind, path, value, parent) {
            return LiveOnly::Default;
        }
        if descendable {
            return LiveOnly::Descend;
        }
        // Argo CD's three-way diff (gitops-engine ThreeWayDiff) ignores such a field too when the
        // last-applied annotation is there, and its two-way diff always does.
        LiveOnly::Unverified
    }

    /// Who last wrote a field present on both sides (or only in live): the manager owning the
    /// leaf; the most recent one if several share it.
    pub fn owner_of(&self, path: &FieldPath) -> Attribution {
        let Some(ownership) = self.ownership else {
            return Attribution::unknown();
        };
        let owners = ownership.owners(self.live, path);
        let latest = owners
            .iter()
            .filter(|o| o.whole)
            .chain(owners.iter())
            .max_by(|a, b| (a.whole, &a.entry.time).cmp(&(b.whole, &b.entry.time)))
            .map(|o| o.entry);
        self.attribution(latest)
    }

    fn attribution(&self, entry: Option<&managed::ManagerEntry>) -> Attribution {
        match entry {
            None => Attribution::unknown(),
            Some(e) => Attribution {
                manager: Some(e.manager.clone()),
                kind: if self.managers.ambiguous.contains(&e.manager) {
                    AttributionKind::Ambiguous
                } else {
                    AttributionKind::Exact
                },
                time: e.time.clone(),
            },
        }
    }

    fn in_last_applied(&self, path: &FieldPath) -> bool {
        let Some(root) = self.last_applied.and_then(LastApplied::value) else {
            return false;
        };
        resolve(root, self.live, path).is_some()
    }
}

/// Find the value at a live path inside another object (last-applied, desired): list items are
/// found by their merge key, read from the live item the path points at.
pub fn resolve<'a>(root: &'a Value, live: &Value, path: &FieldPath) -> Option<&'a Value> {
    let mut here = root;
    let mut live_here = Some(live);
    for step in &path.0 {
        match step {
            Step::Field(name) => {
                here = here.get(name.as_str())?;
                live_here = live_here.and_then(|l| l.get(name.as_str()));
            }
            Step::Item { selector, index } => {
                let items = here.as_array()?;
                let position = merge_keys::find_item(items, selector).or_else(|| {
                    // A live item named by index: look for an equal item.
                    let live_item = live_here?.get(*index)?;
                    items.iter().position(|i| i == live_item)
                })?;
                here = &items[position];
                live_here = live_here.and_then(|l| l.get(*index));
            }
        }
    }
    Some(here)
}

/// `object` read from a live source, prepared.
#[cfg(test)]
pub(crate) fn prepare_live(object: Value, keys: &TrackingKeys) -> Prepared {
    let origin = Origin {
        source: std::sync::Arc::from("live"),
        document: 1,
        item: None,
        line: 1,
    };
    let resource = Resource::from_object(object, origin).unwrap();
    prepare(resource, keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nulls_are_removed_from_mappings_at_any_depth_and_the_walk_stops_at_the_count() {
        let object = json!({
            "metadata": {"annotations": null, "labels": {"a": "b", "c": null}},
            "spec": {"items": [null, {"x": null, "y": [1, {"z": null}]}], "w": null},
        });
        let cleaned = json!({
            "metadata": {"labels": {"a": "b"}},
            "spec": {"items": [null, {"y": [1, {}]}]},
        });
        // Six nulls: counted exactly, or not counted at all.
        for budget in [6, usize::MAX] {
            let mut value = object.clone();
            let mut left = budget;
            remove_nulls(&mut value, &mut left);
            assert_eq!(value, cleaned, "budget {budget}");
        }
        // Told there is one, the walk stops after the first (in key order: metadata's).
        let mut value = object.clone();
        remove_nulls(&mut value, &mut 1);
        assert!(value["metadata"].get("annotations").is_none());
        assert!(value["metadata"]["labels"].get("c").is_some());
        assert!(value["spec"].get("w").is_some());
    }

    /// What the API server sets in metadata goes, in one pass; what Git may hold stays;
    /// ownerReferences mark a child; managedFields become ownership.
    #[test]
    fn server_set_metadata_is_removed_and_what_it_says_kept() {
        let live = |metadata: Value| {
            let object = json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
                "spec": {"replicas": 1}, "status": {"replicas": 1},
            });
            prepare_live(object, &TrackingKeys::default())
        };
        let p = live(json!({
            "name": "web", "namespace": "shop", "labels": {"app": "web"},
            "uid": "1b4e", "resourceVersion": "42", "generation": 3,
            "creationTimestamp": "2026-12-07T00:00:00Z", "selfLink": "/apis/apps/v1/x",
            "deletionTimestamp": "2026-12-07T00:00:01Z", "deletionGracePeriodSeconds": 30,
            "ownerReferences": [{"kind": "Rollout", "name": "web", "uid": "9f"}],
            "finalizers": ["x/y"],
            "managedFields": [{
                "manager": "kubectl-edit", "operation": "Update", "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}},
            }],
        }));
        assert_eq!(
            p.object,
            json!({
                "kind": "Deployment",
                "metadata": {
                    "name": "web", "namespace": "shop", "labels": {"app": "web"},
                    "finalizers": ["x/y"],
                },
                "spec": {"replicas": 1},
            })
        );
        assert!(p.tracking.owned);
        let ownership = p.ownership.expect("managedFields read");
        assert_eq!(ownership.entries().len(), 1);
        assert_eq!(ownership.entries()[0].manager, "kubectl-edit");

        let p = live(json!({"name": "web", "namespace": "shop"}));
        assert!(!p.tracking.owned);
        assert!(p.ownership.is_none());
        assert_eq!(
            p.object["metadata"],
            json!({"name": "web", "namespace": "shop"})
        );
    }

    fn verdict(last_applied: Option<&str>, field: &str) -> LiveOnly {
        let live = json!({"spec": {"paused": true, "minReadySeconds": 5}});
        let last_applied = last_applied.map(|text| LastApplied::new(text.to_string()));
        let managers = Managers::default();
        let ctx = LiveContext {
            kind: "Deployment",
            live: &live,
            ownership: None,
            last_applied: last_applied.as_ref(),
            managers: &managers,
        };
        let path = FieldPath::parse(field).unwrap();
        let value = live
            .pointer(&format!("/{}", field.replace('.', "/")))
            .unwrap();
        ctx.live_only(&path, value, live["spec"].as_object(), false)
    }

    /// The annotation is read when a field is looked up in it; one that is not JSON says
    /// nothing, as if absent.
    #[test]
    fn a_field_is_looked_up_in_the_last_applied_annotation_when_asked() {
        let applied = r#"{"spec":{"paused":true}}"#;
        assert!(matches!(
            verdict(Some(applied), "spec.paused"),
            LiveOnly::Drift(Attribution {
                kind: AttributionKind::Ambiguous,
                ..
            })
        ));
        assert_eq!(
            verdict(Some(applied), "spec.minReadySeconds"),
            LiveOnly::Unverified
        );
        assert_eq!(
            verdict(Some("{not json"), "spec.paused"),
            LiveOnly::Unverified
        );
        assert_eq!(verdict(None, "spec.paused"), LiveOnly::Unverified);
    }
}
