//! Who changed a drifted field: Kubernetes audit events (`audit.k8s.io/v1`) joined to the
//! changes of a report.
//!
//! A field manager (`kubectl-edit`) names a tool; the API server's audit events name the person
//! (`user`, `impersonatedUser`, `userAgent`, `sourceIPs`). A [`Trail`] keeps, per object, the
//! recent successful writes, with the object the API server returned (at the `RequestResponse`
//! level of `deploy/audit/audit-policy.yaml`), in bounded memory (see [`Limits`]). A drifted
//! field is then joined to the write that gave it its live value:
//!
//! - [`Match::ResourceVersion`] (exact): ordered by the returned objects' `resourceVersion`, the
//!   write after which the field holds its live value, and held it in every write since, with a
//!   write before it that had another value (or the object's create). Two writes in the same
//!   second by the same tool are told apart.
//! - [`Match::ManagerTime`] otherwise: a write by the field's manager (`fieldManager=` in the
//!   request, else the user agent up to its first `/`, as the API server names a manager) at the
//!   second managedFields gives for the field. Used for writes kept without their object
//!   (Secrets, at `Metadata`, or objects over [`Limits::object_bytes`]) and subresources.
//!
//! Secrets' bodies are never kept, whatever the API server's policy sends.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::classify::Status;
use crate::path::{lookup, same_value, FieldPath, Step};
use crate::report::{DriftReport, ResourceReport};

/// One audit event, as the API server writes it (the fields read here).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default, rename = "auditID")]
    pub audit_id: String,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub verb: String,
    #[serde(default, rename = "requestURI")]
    pub request_uri: String,
    #[serde(default)]
    pub user: UserInfo,
    #[serde(default)]
    pub impersonated_user: Option<UserInfo>,
    #[serde(default, rename = "sourceIPs")]
    pub source_ips: Vec<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub object_ref: Option<ObjectReference>,
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
    #[serde(default)]
    pub response_object: Option<Box<RawValue>>,
    #[serde(default)]
    pub request_received_timestamp: Option<String>,
    #[serde(default)]
    pub stage_timestamp: Option<String>,
}

/// What the audit webhook backend posts: `{"kind":"EventList","items":[...]}`.
#[derive(Debug, Deserialize)]
pub struct EventList {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub items: Vec<Event>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub api_group: String,
    #[serde(default)]
    pub subresource: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ResponseStatus {
    #[serde(default)]
    pub code: Option<u16>,
}

/// An object as audit events name it: API group, resource (plural), namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

/// How much a [`Trail`] keeps. The defaults are documented in docs/audit.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Writes kept per object (the oldest go first).
    pub per_object: usize,
    /// Bytes of returned objects kept in all (the oldest writes go first).
    pub bytes: usize,
    /// A returned object larger than this is not kept (who and when are).
    pub object_bytes: usize,
    /// Writes older than this are dropped.
    pub retention: Duration,
    /// Whether `sourceIPs` are kept and shown.
    pub source_ips: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            per_object: 32,
            bytes: 64 << 20,
            object_bytes: 256 << 10,
            retention: Duration::hours(6),
            source_ips: false,
        }
    }
}

/// How a change was joined to its write; see the module's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Match {
    ResourceVersion,
    ManagerTime,
}

/// The person (or ServiceAccount) behind a change, from the API server's audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangedBy {
    /// The user the request acted as (the impersonated one, when impersonating).
    pub user: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// `namespace/name` when the user is a ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Who made the request while impersonating `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonator: Option<UserInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// When the API server completed the write (RFC 3339, as the event gives it).
    pub time: String,
    pub verb: String,
    #[serde(default, rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(rename = "match")]
    pub matched: Match,
    /// For [`Match::ManagerTime`]: how many writes fit, when more than one (the latest is named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<usize>,
    #[serde(rename = "auditID")]
    pub audit_id: String,
}

impl ChangedBy {
    /// Who, in a few words: `alice`, `carol (impersonated by admin)`,
    /// `ServiceAccount ci/deployer`.
    pub fn who(&self) -> String {
        match (&self.service_account, &self.impersonator) {
            (Some(sa), _) => format!("ServiceAccount {sa}"),
            (None, Some(i)) => format!("{} (impersonated by {})", self.user, i.username),
            (None, None) => self.user.clone(),
        }
    }

    /// The person and the tool, as known: `alice with kubectl-edit`, `alice`, `kubectl-edit`.
    pub fn with_manager(by: Option<&ChangedBy>, manager: Option<&str>) -> Option<String> {
        match (by.map(ChangedBy::who), manager) {
            (Some(w), Some(m)) => Some(format!("{w} with {m}")),
            (Some(w), None) => Some(w),
            (None, Some(m)) => Some(m.to_string()),
            (None, None) => None,
        }
    }
}

/// One kept write.
#[derive(Debug)]
struct Write {
    seq: u64,
    audit_id: String,
    verb: String,
    subresource: String,
    user: UserInfo,
    impersonated: Option<UserInfo>,
    user_agent: Option<String>,
    source_ips: Vec<String>,
    time: DateTime<Utc>,
    time_text: String,
    manager: Option<String>,
    /// The returned object's `metadata.resourceVersion`, as a number (etcd's revision).
    resource_version: Option<u64>,
    object: Option<Box<RawValue>>,
}

impl Write {
    fn size(&self) -> usize {
        self.object.as_ref().map_or(0, |o| o.get().len())
    }

    fn changed_by(&self, matched: Match, candidates: Option<usize>) -> ChangedBy {
        let (user, impersonator) = match &self.impersonated {
            Some(as_user) => (as_user.clone(), Some(self.user.clone())),
            None => (self.user.clone(), None),
        };
        let service_account = user
            .username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .map(|(ns, name)| format!("{ns}/{name}"));
        ChangedBy {
            user: user.username,
            groups: user.groups,
            service_account,
            impersonator,
            user_agent: self.user_agent.clone(),
            time: self.time_text.clone(),
            verb: self.verb.clone(),
            source_ips: self.source_ips.clone(),
            matched,
            candidates,
            audit_id: self.audit_id.clone(),
        }
    }
}

/// The recent writes of every object, bounded by [`Limits`].
#[derive(Debug)]
pub struct Trail {
    limits: Limits,
    objects: HashMap<ObjectKey, VecDeque<Arc<Write>>>,
    /// Every kept write in arrival order, for retention and the byte budget.
    order: VecDeque<(u64, ObjectKey, DateTime<Utc>)>,
    bytes: usize,
    next_seq: u64,
    writes: usize,
}

/// Why an event was not kept (counted by the controller's metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// A read, a failed request, an intermediate stage, or not about one named object.
    NotAWrite,
}

impl Trail {
    pub fn new(limits: Limits) -> Trail {
        Trail {
            limits,
            objects: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            next_seq: 0,
            writes: 0,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Writes kept now.
    pub fn len(&self) -> usize {
        self.writes
    }

    pub fn is_empty(&self) -> bool {
        self.writes == 0
    }

    /// Bytes of returned objects kept now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keep `event` if it is a successful write of one named object; `now` dates an event
    /// without timestamps and drives retention.
    pub fn record(&mut self, event: Event, now: DateTime<Utc>) -> Result<(), Skipped> {
        const WRITES: [&str; 4] = ["create", "update", "patch", "delete"];
        if event.stage != "ResponseComplete" || !WRITES.contains(&event.verb.as_str()) {
            return Err(Skipped::NotAWrite);
        }
        if event
            .response_status
            .as_ref()
            .and_then(|s| s.code)
            .is_some_and(|c| !(200..300).contains(&c))
        {
            return Err(Skipped::NotAWrite);
        }
        let Some(r) = event.object_ref else {
            return Err(Skipped::NotAWrite);
        };
        if r.name.is_empty() || r.resource.is_empty() {
            return Err(Skipped::NotAWrite);
        }
        let time_text = event
            .stage_timestamp
            .or(event.request_received_timestamp)
            .unwrap_or_default();
        let time = DateTime::parse_from_rfc3339(&time_text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        let secret = r.api_group.is_empty() && r.resource == "secrets";
        let object = event
            .response_object
            .filter(|o| !secret && o.get().len() <= self.limits.object_bytes);
        let resource_version = object.as_ref().and_then(|o| resource_version_of(o.get()));
        let manager = manager_of(&event.request_uri, event.user_agent.as_deref());
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = ObjectKey {
            group: r.api_group,
            resource: r.resource,
            namespace: r.namespace,
            name: r.name,
        };
        let write = Write {
            seq,
            audit_id: event.audit_id,
            verb: event.verb,
            subresource: r.subresource,
            user: event.user,
            impersonated: event.impersonated_user,
            user_agent: event.user_agent,
            source_ips: if self.limits.source_ips {
                event.source_ips
            } else {
                Vec::new()
            },
            time,
            time_text,
            manager,
            resource_version,
            object,
        };
        self.bytes += write.size();
        self.writes += 1;
        self.order.push_back((seq, key.clone(), time));
        let writes = self.objects.entry(key).or_default();
        writes.push_back(Arc::new(write));
        if writes.len() > self.limits.per_object {
            if let Some(old) = writes.pop_front() {
                self.bytes -= old.size();
                self.writes -= 1;
            }
        }
        self.expire(now);
        Ok(())
    }

    /// Drop writes past retention, then the oldest until the byte budget holds.
    pub fn expire(&mut self, now: DateTime<Utc>) {
        let oldest = now - self.limits.retention;
        while let Some((seq, key, time)) = self.order.front() {
            let over = self.bytes > self.limits.bytes;
            if *time >= oldest && !over {
                break;
            }
            let (seq, key) = (*seq, key.clone());
            self.order.pop_front();
            let Some(writes) = self.objects.get_mut(&key) else {
                continue;
            };
            // Already gone when the object's own limit pushed it out.
            if writes.front().is_some_and(|w| w.seq == seq) {
                if let Some(old) = writes.pop_front() {
                    self.bytes -= old.size();
                    self.writes -= 1;
                }
            }
            if writes.is_empty() {
                self.objects.remove(&key);
            }
        }
    }

    /// The kept writes of one object, taken out to be joined without the trail (shared, not
    /// copied): a caller holding the trail behind a lock lets go of it before the joins.
    pub fn writes(&self, key: &ObjectKey) -> Option<ObjectWrites> {
        let writes = self.objects.get(key)?;
        Some(ObjectWrites {
            writes: writes.iter().cloned().collect(),
            parsed: std::sync::OnceLock::new(),
        })
    }

    /// The kept writes of each of `keys`' objects ([`drifted_objects`]), for [`attribute`].
    pub fn writes_of(&self, keys: &[Option<ObjectKey>]) -> HashMap<ObjectKey, ObjectWrites> {
        keys.iter()
            .flatten()
            .filter_map(|k| Some((k.clone(), self.writes(k)?)))
            .collect()
    }
}

/// The kept writes of one object ([`Trail::writes`]). The returned objects are parsed once, for
/// the first field asked about, and shared by the object's other fields.
#[derive(Debug)]
pub struct ObjectWrites {
    writes: Vec<Arc<Write>>,
    /// (resourceVersion, index in `writes`, returned object), by version.
    parsed: std::sync::OnceLock<Vec<(u64, usize, Value)>>,
}

impl ObjectWrites {
    fn parsed(&self) -> &[(u64, usize, Value)] {
        self.parsed.get_or_init(|| {
            let mut parsed: Vec<(u64, usize, Value)> = self
                .writes
                .iter()
                .enumerate()
                .filter_map(|(i, w)| {
                    let object = serde_json::from_str(w.object.as_ref()?.get()).ok()?;
                    Some((w.resource_version?, i, object))
                })
                .collect();
            parsed.sort_by_key(|(version, _, _)| *version);
            parsed
        })
    }

    /// Who gave `field` of the object its `live` value (`None`: the field is absent live).
    /// `kind` is the object's kind (a subresource's reply of another kind is not the object);
    /// `manager` and `managed_at` are what managedFields say of the field, when known.
    pub fn changed_field(
        &self,
        kind: &str,
        field: &FieldPath,
        live: Option<&Value>,
        manager: Option<&str>,
        managed_at: Option<DateTime<Utc>>,
    ) -> Option<ChangedBy> {
        self.exact(kind, field, live)
            .or_else(|| by_manager_and_time(&self.writes, manager?, managed_at?))
    }

    /// The latest successful write of `verb` to the object (who created an extra resource,
    /// who deleted a missing one).
    pub fn latest(&self, verb: &str) -> Option<ChangedBy> {
        let w = self
            .writes
            .iter()
            .rev()
            .find(|w| w.verb == verb && w.subresource.is_empty())?;
        Some(w.changed_by(
            if w.resource_version.is_some() {
                Match::ResourceVersion
            } else {
                Match::ManagerTime
            },
            None,
        ))
    }

    /// The write after which the field holds its live value (see the module's documentation).
    fn exact(&self, kind: &str, field: &FieldPath, live: Option<&Value>) -> Option<ChangedBy> {
        // `kubectl scale` writes the scale subresource: its reply is a Scale whose
        // spec.replicas is the object's.
        let replicas = field.0.len() == 2
            && matches!(&field.0[0], Step::Field(f) if f == "spec")
            && matches!(&field.0[1], Step::Field(f) if f == "replicas");
        let seen: Vec<(&Write, &Value)> = self
            .parsed()
            .iter()
            .filter_map(|(_, i, object)| {
                let w = self.writes[*i].as_ref();
                let its_kind = object.get("kind").and_then(Value::as_str).unwrap_or(kind);
                let fits = its_kind == kind || (replicas && w.subresource == "scale");
                fits.then_some((w, object))
            })
            .collect();
        let holds = |object: &Value| same(lookup(object, &field.0), live);
        let last = seen.len().checked_sub(1)?;
        if !holds(seen[last].1) {
            return None;
        }
        let mut first = last;
        while first > 0 && holds(seen[first - 1].1) {
            first -= 1;
        }
        let w = seen[first].0;
        (first > 0 || w.verb == "create").then(|| w.changed_by(Match::ResourceVersion, None))
    }
}

/// The written object's version, from the raw reply without parsing all of it.
fn resource_version_of(object: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(default, rename = "resourceVersion")]
        resource_version: String,
    }
    #[derive(Deserialize)]
    struct Object {
        #[serde(default)]
        metadata: Option<Meta>,
    }
    let o: Object = serde_json::from_str(object).ok()?;
    o.metadata?.resource_version.parse().ok()
}

/// The field manager of a request: `fieldManager=` in its URI, else the user agent up to the
/// first `/` (what the API server records when no manager is given).
fn manager_of(uri: &str, user_agent: Option<&str>) -> Option<String> {
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("fieldManager=") {
            return Some(percent_decode(value));
        }
    }
    let agent = user_agent?;
    let prefix = agent.split('/').next().unwrap_or(agent);
    (!prefix.is_empty()).then(|| prefix.to_string())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match text.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                Some(Ok(b)) => {
                    out.push(b);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equal, both absent, or the same scalar as a string and a number.
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_value(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// The latest write by `manager` in the second managedFields gives for the field.
fn by_manager_and_time(
    writes: &[Arc<Write>],
    manager: &str,
    managed_at: DateTime<Utc>,
) -> Option<ChangedBy> {
    // managedFields times are to the second, truncated: the write completed in that second (or,
    // finishing just after it, in the next).
    let fits = |w: &&Arc<Write>| {
        let lag = w.time - managed_at;
        w.manager.as_deref() == Some(manager)
            && lag >= Duration::zero()
            && lag < Duration::seconds(2)
    };
    let found: Vec<&Arc<Write>> = writes.iter().filter(fits).collect();
    let w = found.last()?;
    let candidates = (found.len() > 1).then_some(found.len());
    Some(w.changed_by(Match::ManagerTime, candidates))
}

/// The objects of `report`'s drift, as audit events name them; `resource` gives the plural
/// resource name of a group and kind. Resources in sync, and kinds without a plural, are `None`.
pub fn drifted_objects(
    report: &DriftReport,
    resource: impl Fn(&str, &str) -> Option<String>,
) -> Vec<Option<ObjectKey>> {
    report
        .resources
        .iter()
        .map(|r| {
            (r.status != Status::Synced).then_some(())?;
            Some(ObjectKey {
                group: r.group.clone(),
                resource: resource(&r.group, &r.kind)?,
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            })
        })
        .collect()
}

/// Name the writer of every drifted field of `report`, and who created each extra resource and
/// deleted each missing one, from `writes` ([`Trail::writes_of`] `keys`, the report's
/// [`drifted_objects`]). Returns how many were named.
pub fn attribute(
    report: &mut DriftReport,
    keys: &[Option<ObjectKey>],
    writes: &HashMap<ObjectKey, ObjectWrites>,
) -> usize {
    let mut named = 0;
    for (r, key) in report.resources.iter_mut().zip(keys) {
        let Some(writes) = key.as_ref().and_then(|k| writes.get(k)) else {
            continue;
        };
        named += attribute_resource(r, writes);
    }
    named
}

fn attribute_resource(r: &mut ResourceReport, writes: &ObjectWrites) -> usize {
    match r.status {
        Status::Extra => r.changed_by = writes.latest("create").map(Box::new),
        Status::Missing => r.changed_by = writes.latest("delete").map(Box::new),
        _ => {}
    }
    let mut named = usize::from(r.changed_by.is_some());
    for c in &mut r.changes {
        let Ok(field) = FieldPath::parse(&c.field) else {
            continue;
        };
        let managed_at = c
            .time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        c.changed_by = writes
            .changed_field(
                &r.kind,
                &field,
                c.live.as_ref(),
                c.manager.as_deref(),
                managed_at,
            )
            .map(Box::new);
        named += usize::from(c.changed_by.is_some());
    }
    named
}

/// Parse one line of a JSON-lines audit log (an `Event`, or an `EventList` some shippers
/// forward whole).
pub fn parse_line(line: &str) -> serde_json::Result<Vec<Event>> {
    // Only an EventList has `"kind":"EventList"` at its top; an Event has no `kind` of that name
    // (its objects' kinds are of Kubernetes types).
    if line.contains("\"EventList\"") {
        if let Ok(list) = serde_json::from_str::<EventList>(line) {
            if list.kind == "EventList" {
                return Ok(list.items);
            }
        }
    }
    Ok(vec![serde_json::from_str::<Event>(line)?])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn at(second: u32, micros: u32) -> String {
        format!("2026-12-07T10:00:{second:02}.{micros:06}Z")
    }

    /// An audit event of the shape the API server writes for a write at RequestResponse.
    fn write_event(
        user: &str,
        manager: &str,
        version: u64,
        data: Value,
        second: u32,
        micros: u32,
    ) -> Event {
        let line = json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": format!("id-{version}"), "stage": "ResponseComplete",
            "requestURI": format!("/api/v1/namespaces/shop/configmaps/flags?fieldManager={manager}"),
            "verb": "patch",
            "user": {"username": user, "groups": ["system:authenticated"]},
            "sourceIPs": ["10.0.0.7"], "userAgent": "kubectl/v1.37.2 (linux/amd64) kubernetes/abc",
            "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "flags", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "responseObject": {"kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"name": "flags", "namespace": "shop", "resourceVersion": version.to_string()},
                "data": data},
            "requestReceivedTimestamp": at(second, micros),
            "stageTimestamp": at(second, micros + 900),
        });
        serde_json::from_value(line).unwrap()
    }

    fn key() -> ObjectKey {
        ObjectKey {
            group: String::new(),
            resource: "configmaps".into(),
            namespace: "shop".into(),
            name: "flags".into(),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T10:01:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn path(text: &str) -> FieldPath {
        FieldPath::parse(text).unwrap()
    }

    /// A person's `kubectl edit` (Argo CD's sync for `argocd`) of ConfigMap flags, at second
    /// `second`, written as `version`.
    fn edit(user: &str, version: u64, data: Value, second: u32) -> Event {
        let manager = if user == "argocd" {
            "argocd-controller"
        } else {
            "kubectl-edit"
        };
        write_event(user, manager, version, data, second, 0)
    }

    /// Who the exact join names for `field` of ConfigMap flags holding `live` (`None`: absent).
    fn joined(trail: &Trail, field: &str, live: Option<Value>) -> Option<ChangedBy> {
        trail
            .writes(&key())?
            .changed_field("ConfigMap", &path(field), live.as_ref(), None, None)
    }

    /// Who the join by `manager` and managedFields' second `at` names for data.mode = "yolo".
    fn by_manager(trail: &Trail, manager: &str, at: DateTime<Utc>) -> Option<ChangedBy> {
        let live = json!("yolo");
        trail.writes(&key())?.changed_field(
            "ConfigMap",
            &path("data.mode"),
            Some(&live),
            Some(manager),
            Some(at),
        )
    }

    fn trail(events: Vec<Event>) -> Trail {
        let mut trail = Trail::new(Limits::default());
        for e in events {
            trail.record(e, now()).unwrap();
        }
        trail
    }

    #[test]
    fn two_writes_by_one_tool_in_one_second_are_told_apart_by_resource_version() {
        // Argo CD's sync sets both fields, then alice and bob each edit one with kubectl-edit
        // within the same second: managedFields cannot tell them apart, the versions can.
        let trail = trail(vec![
            edit("argocd", 10, json!({"mode": "safe", "level": "low"}), 1),
            write_event(
                "alice",
                "kubectl-edit",
                11,
                json!({"mode": "yolo", "level": "low"}),
                5,
                100,
            ),
            write_event(
                "bob",
                "kubectl-edit",
                12,
                json!({"mode": "yolo", "level": "high"}),
                5,
                300_000,
            ),
        ]);
        let mode = joined(&trail, "data.mode", Some(json!("yolo"))).unwrap();
        assert_eq!(mode.user, "alice");
        assert_eq!(mode.matched, Match::ResourceVersion);
        assert_eq!(mode.audit_id, "id-11");
        assert_eq!(mode.time, at(5, 1000));
        let level = joined(&trail, "data.level", Some(json!("high"))).unwrap();
        assert_eq!(level.user, "bob");
        assert_eq!(level.groups, vec!["system:authenticated"]);
        assert_eq!(
            level.user_agent.as_deref(),
            Some("kubectl/v1.37.2 (linux/amd64) kubernetes/abc")
        );
        // Source IPs only when asked for.
        assert!(level.source_ips.is_empty());
    }

    #[test]
    fn arrival_order_does_not_matter_only_the_versions_do() {
        // A webhook's batches and a log shipper may deliver out of order.
        let trail = trail(vec![
            edit("bob", 12, json!({"mode": "yolo"}), 6),
            edit("argocd", 10, json!({"mode": "safe"}), 1),
            edit("alice", 11, json!({"mode": "yolo"}), 5),
        ]);
        let by = joined(&trail, "data.mode", Some(json!("yolo"))).unwrap();
        assert_eq!(by.user, "alice", "bob's write did not change the field");
    }

    #[test]
    fn a_value_set_back_names_the_last_change_and_a_removed_field_its_remover() {
        let trail = trail(vec![
            edit("argocd", 10, json!({"mode": "safe", "x": "1"}), 1),
            edit("alice", 11, json!({"mode": "yolo", "x": "1"}), 2),
            edit("bob", 12, json!({"mode": "safe", "x": "1"}), 3),
            edit("carol", 13, json!({"mode": "yolo"}), 4),
        ]);
        let mode = joined(&trail, "data.mode", Some(json!("yolo")));
        assert_eq!(mode.unwrap().user, "carol");
        let x = joined(&trail, "data.x", None);
        assert_eq!(x.unwrap().user, "carol");
    }

    #[test]
    fn without_the_write_before_the_change_the_join_falls_back_to_manager_and_time() {
        // Only alice's write is kept (the earlier ones are past retention or never sent): it may
        // not be the one that changed the field, so no exact answer; managedFields' manager and
        // second (10:00:05) find it, said as such.
        let trail = trail(vec![write_event(
            "alice",
            "kubectl-edit",
            11,
            json!({"mode": "yolo"}),
            5,
            400_000,
        )]);
        let live = json!("yolo");
        assert_eq!(joined(&trail, "data.mode", Some(live.clone())), None);
        let managed_at = DateTime::parse_from_rfc3339("2026-12-07T10:00:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let by = by_manager(&trail, "kubectl-edit", managed_at).unwrap();
        assert_eq!(
            (by.user.as_str(), by.matched, by.candidates),
            ("alice", Match::ManagerTime, None)
        );
        // Another manager, or another second, is not a match.
        assert_eq!(by_manager(&trail, "kubectl-patch", managed_at), None);
        let later = managed_at + Duration::seconds(10);
        assert_eq!(by_manager(&trail, "kubectl-edit", later), None);
    }

    #[test]
    fn live_value_newer_than_every_kept_write_is_not_guessed() {
        let trail = trail(vec![
            edit("argocd", 10, json!({"mode": "safe"}), 1),
            edit("alice", 11, json!({"mode": "yolo"}), 2),
        ]);
        let by = joined(&trail, "data.mode", Some(json!("other")));
        assert_eq!(by, None);
    }

    #[test]
    fn impersonation_and_service_accounts_are_named_as_such() {
        let mut e = edit("admin", 11, json!({"mode": "yolo"}), 2);
        e.impersonated_user = Some(UserInfo {
            username: "carol".into(),
            groups: vec!["sre".into()],
        });
        let mut sa = write_event(
            "system:serviceaccount:ci:deployer",
            "ci-deploy",
            12,
            json!({"mode": "yolo", "level": "x"}),
            3,
            0,
        );
        sa.user.groups = vec![
            "system:serviceaccounts".into(),
            "system:serviceaccounts:ci".into(),
        ];
        let trail = trail(vec![edit("argocd", 10, json!({}), 1), e, sa]);
        let mode = joined(&trail, "data.mode", Some(json!("yolo"))).unwrap();
        assert_eq!(mode.user, "carol");
        assert_eq!(mode.groups, vec!["sre"]);
        assert_eq!(mode.impersonator.unwrap().username, "admin");
        assert_eq!(mode.service_account, None);
        let level = joined(&trail, "data.level", Some(json!("x"))).unwrap();
        assert_eq!(level.service_account.as_deref(), Some("ci/deployer"));
        assert_eq!(level.impersonator, None);
    }

    #[test]
    fn list_items_are_found_by_merge_key_and_a_scale_reply_counts_for_replicas_only() {
        let deployment = |version: u64, replicas: u64, image: &str| {
            json!({"kind": "Deployment", "metadata": {"resourceVersion": version.to_string()},
                   "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                       {"name": "sidecar", "image": "envoy"}, {"name": "web", "image": image}]}}}})
        };
        let event = |user: &str, version: u64, sub: &str, object: Value| -> Event {
            serde_json::from_value(json!({
                "auditID": format!("id-{version}"), "stage": "ResponseComplete", "verb": "patch",
                "requestURI": "/apis/apps/v1/namespaces/shop/deployments/web",
                "user": {"username": user}, "userAgent": format!("{user}-tool/1.0"),
                "objectRef": {"resource": "deployments", "namespace": "shop", "name": "web",
                              "apiGroup": "apps", "subresource": sub},
                "responseStatus": {"code": 200}, "responseObject": object,
                "stageTimestamp": at(version as u32 % 60, 0)
            }))
            .unwrap()
        };
        let scale = json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                           "metadata": {"resourceVersion": "12"}, "spec": {"replicas": 5}});
        let trail = trail(vec![
            event("argocd", 10, "", deployment(10, 2, "web:1")),
            event("dave", 11, "", deployment(11, 2, "web:2")),
            event("erin", 12, "scale", scale),
        ]);
        let key = ObjectKey {
            group: "apps".into(),
            resource: "deployments".into(),
            namespace: "shop".into(),
            name: "web".into(),
        };
        let writes = trail.writes(&key).unwrap();
        let image = writes
            .changed_field(
                "Deployment",
                &path("spec.template.spec.containers[name=web].image"),
                Some(&json!("web:2")),
                None,
                None,
            )
            .unwrap();
        assert_eq!(image.user, "dave");
        let replicas = writes
            .changed_field(
                "Deployment",
                &path("spec.replicas"),
                Some(&json!(5)),
                None,
                None,
            )
            .unwrap();
        assert_eq!(replicas.user, "erin");
        // The manager without fieldManager= is the user agent up to its first '/'.
        assert_eq!(trail.objects[&key][1].manager.as_deref(), Some("dave-tool"));
    }

    #[test]
    fn reads_failures_and_secret_bodies_are_not_kept() {
        let mut trail = Trail::new(Limits::default());
        let mut read = write_event("alice", "x", 11, json!({}), 1, 0);
        read.verb = "get".into();
        assert_eq!(trail.record(read, now()), Err(Skipped::NotAWrite));
        let mut refused = write_event("alice", "x", 12, json!({}), 1, 0);
        refused.response_status = Some(ResponseStatus { code: Some(403) });
        assert_eq!(trail.record(refused, now()), Err(Skipped::NotAWrite));
        let mut received = write_event("alice", "x", 13, json!({}), 1, 0);
        received.stage = "RequestReceived".into();
        assert_eq!(trail.record(received, now()), Err(Skipped::NotAWrite));
        assert!(trail.is_empty());
        // A Secret sent with its body (a policy other than ours): who and when only.
        let mut secret = write_event("alice", "x", 14, json!({"password": "aHVudGVy"}), 1, 0);
        secret.object_ref.as_mut().unwrap().resource = "secrets".into();
        trail.record(secret, now()).unwrap();
        assert_eq!(trail.len(), 1);
        assert_eq!(trail.bytes(), 0);
        assert!(!format!("{trail:?}").contains("aHVudGVy"));
    }

    #[test]
    fn memory_is_bounded_per_object_in_bytes_and_in_time() {
        let limits = Limits {
            per_object: 3,
            bytes: 2_000,
            object_bytes: 1_000,
            retention: Duration::minutes(10),
            source_ips: true,
        };
        let mut trail = Trail::new(limits);
        for v in 0..5 {
            trail
                .record(
                    write_event("alice", "m", 10 + v, json!({"v": v.to_string()}), 1, 0),
                    now(),
                )
                .unwrap();
        }
        assert_eq!(trail.len(), 3, "three per object");
        assert_eq!(
            trail.objects[&key()].front().unwrap().resource_version,
            Some(12)
        );
        // A big object is kept without its body.
        let big = "x".repeat(2_000);
        trail
            .record(
                write_event("bob", "m", 20, json!({"big": big}), 2, 0),
                now(),
            )
            .unwrap();
        assert!(trail.objects[&key()].back().unwrap().object.is_none());
        // Bytes: other objects push the oldest out.
        for n in 0..20 {
            let mut e = write_event("alice", "m", 100 + n, json!({"v": "y".repeat(300)}), 3, 0);
            e.object_ref.as_mut().unwrap().name = format!("cm-{n}");
            trail.record(e, now()).unwrap();
            assert!(trail.bytes() <= 2_000, "{} bytes", trail.bytes());
        }
        assert!(
            !trail.objects.contains_key(&key()),
            "flags' writes were the oldest"
        );
        // Time: everything is past retention an hour later.
        trail.expire(now() + Duration::hours(1));
        assert_eq!((trail.len(), trail.bytes(), trail.objects.len()), (0, 0, 0));
        // Source IPs kept when enabled.
        let t = {
            let mut t = Trail::new(limits);
            t.record(write_event("alice", "m", 30, json!({}), 1, 0), now())
                .unwrap();
            t
        };
        assert_eq!(t.objects[&key()][0].source_ips, vec!["10.0.0.7"]);
    }

    #[test]
    fn an_audit_log_line_is_an_event_or_an_event_list() {
        let one = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","verb":"patch","user":{"username":"alice"},"responseObject":{"kind":"ConfigMap","data":{"k":"EventList"}}}"#;
        let events = parse_line(one).unwrap();
        assert_eq!((events.len(), events[0].audit_id.as_str()), (1, "a"));
        let list = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"auditID":"a"},{"auditID":"b"}]}"#;
        assert_eq!(parse_line(list).unwrap().len(), 2);
        assert!(parse_line("{not json").is_err());
        assert_eq!(
            manager_of("/api/v1/x?fieldManager=kubectl%2Dedit&force=true", None).as_deref(),
            Some("kubectl-edit")
        );
        assert_eq!(
            manager_of("/api/v1/x", Some("Go-http-client/2.0")).as_deref(),
            Some("Go-http-client")
        );
        assert_eq!(manager_of("/api/v1/x", None), None);
    }

    #[test]
    fn a_report_gets_changed_by_on_fields_and_on_extra_and_missing_resources() {
        let report: DriftReport = serde_json::from_value(json!({
            "summary": {"resources": 2, "synced": 0, "modified": 1, "missing": 1, "extra": 0, "severity": "high"},
            "resources": [
                {"group": "", "version": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "flags",
                 "status": "modified", "severity": "high", "changes": [
                    {"path": "/data/mode", "field": "data.mode", "op": "replace", "desired": "safe", "live": "yolo",
                     "severity": "high", "rule": "r", "manager": "kubectl-edit", "attribution": "exact",
                     "time": "2026-12-07T10:00:05Z"}]},
                {"group": "", "version": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "gone",
                 "status": "missing", "severity": "high", "changes": []}
            ]
        }))
        .unwrap();
        let mut deleted = write_event("bob", "kubectl", 20, json!({}), 9, 0);
        deleted.verb = "delete".into();
        deleted.object_ref.as_mut().unwrap().name = "gone".into();
        deleted.response_object = None;
        let trail = trail(vec![
            edit("argocd", 10, json!({"mode": "safe"}), 1),
            edit("alice", 11, json!({"mode": "yolo"}), 5),
            deleted,
        ]);
        let mut report = report;
        let keys = drifted_objects(&report, |g, k| {
            (g.is_empty() && k == "ConfigMap").then(|| "configmaps".into())
        });
        let named = attribute(&mut report, &keys, &trail.writes_of(&keys));
        assert_eq!(named, 2);
        let text = serde_json::to_value(&report).unwrap();
        assert_eq!(
            text["resources"][0]["changes"][0]["changedBy"]["user"],
            "alice"
        );
        assert_eq!(
            text["resources"][0]["changes"][0]["changedBy"]["match"],
            "resourceVersion"
        );
        assert_eq!(
            text["resources"][0]["changes"][0]["changedBy"]["auditID"],
            "id-11"
        );
        assert_eq!(text["resources"][1]["changedBy"]["user"], "bob");
        assert_eq!(text["resources"][1]["changedBy"]["verb"], "delete");
        assert_eq!(text["resources"][1]["changedBy"]["match"], "managerTime");
    }
}
