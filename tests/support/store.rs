//! Generic object storage keyed by (resource, namespace, name), with a global resource
//! version counter and a change feed used by watches and controllers.

use super::resources::ResourceDef;
use super::util::{
    ApiError, name_of, namespace_of, now_rfc3339, obj_mut, random_suffix, random_u64, random_uuid,
    str_at,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

const HISTORY: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change in the store.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    pub rv: u64,
    pub etype: EventType,
    pub resource: String,
    pub object: Value,
    /// The previous state for `Modified`.
    pub old: Option<Value>,
}

type Key = (String, String);

/// All cluster state. Obtain it through [`super::SimCluster::with_store`].
pub struct Store {
    objects: BTreeMap<String, BTreeMap<Key, Value>>,
    rv: u64,
    history: VecDeque<Arc<StoreEvent>>,
    tx: broadcast::Sender<Arc<StoreEvent>>,
    resources: Arc<Vec<ResourceDef>>,
    logs: HashMap<Key, PodLog>,
    next_cluster_ip: u32,
}

/// A cloneable handle to the store.
#[derive(Clone)]
pub struct SharedStore(pub(super) Arc<Mutex<Store>>);

impl SharedStore {
    pub fn new(store: Store) -> Self {
        SharedStore(Arc::new(Mutex::new(store)))
    }

    pub fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves consistent-enough state for a test double.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.lock())
    }
}

/// The parts of an Event every recorder writes: name, namespace, the involved object,
/// type, reason and message.
fn event_about(involved: &Value, event_type: &str, reason: &str, message: &str) -> Value {
    let ns = match namespace_of(involved) {
        "" => "default",
        ns => ns,
    };
    json!({
        "metadata": {
            "name": format!("{}.{:016x}", name_of(involved), random_u64()),
            "namespace": ns,
        },
        "involvedObject": {
            "kind": str_at(involved, "kind"),
            "apiVersion": str_at(involved, "apiVersion"),
            "name": name_of(involved),
            "namespace": namespace_of(involved),
            "uid": str_at(involved, "metadata.uid"),
            "resourceVersion": str_at(involved, "metadata.resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": event_type,
    })
}

/// A pod's log and the time of each of its lines.
#[derive(Debug, Default)]
struct PodLog {
    text: String,
    stamps: Vec<jiff::Timestamp>,
}

/// Receives every later change of the store.
pub type EventReceiver = broadcast::Receiver<Arc<StoreEvent>>;

/// The resource version is too old to replay the changes since then.
#[derive(Debug)]
pub struct TooOld;

impl Store {
    pub fn new(resources: Arc<Vec<ResourceDef>>) -> Self {
        let (tx, _) = broadcast::channel(HISTORY);
        Store {
            objects: BTreeMap::new(),
            rv: 1000,
            history: VecDeque::new(),
            tx,
            resources,
            logs: HashMap::new(),
            next_cluster_ip: 1,
        }
    }

    pub fn resources(&self) -> &[ResourceDef] {
        &self.resources
    }

    pub fn resource(&self, plural: &str) -> Option<&ResourceDef> {
        self.resources.iter().find(|r| r.plural == plural)
    }

    fn def(&self, plural: &str) -> Result<ResourceDef, ApiError> {
        self.resource(plural)
            .cloned()
            .ok_or_else(|| ApiError::not_found("", plural, ""))
    }

    /// The current (latest) resource version.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(resource)?
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// Sets an object's `creationTimestamp` as if it had been created then: for seeding
    /// objects older than the simulator (no API request can do this). `false` if absent.
    pub fn set_created(&mut self, resource: &str, namespace: &str, name: &str, at: &str) -> bool {
        let key = (namespace.to_string(), name.to_string());
        match self.objects.get_mut(resource).and_then(|m| m.get_mut(&key)) {
            Some(obj) => {
                obj_mut(obj, "metadata").insert("creationTimestamp".into(), at.into());
                true
            }
            None => false,
        }
    }

    /// All objects of a resource, optionally restricted to a namespace, in key order.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        self.iter(resource)
            .filter(|o| namespace.is_none_or(|ns| namespace_of(o) == ns))
            .cloned()
            .collect()
    }

    pub fn iter<'a>(&'a self, resource: &str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .get(resource)
            .into_iter()
            .flat_map(|m| m.values())
    }

    fn emit(&mut self, etype: EventType, resource: &str, object: Value, old: Option<Value>) {
        let ev = Arc::new(StoreEvent {
            rv: self.rv,
            etype,
            resource: resource.to_string(),
            object,
            old,
        });
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(ev.clone());
        let _ = self.tx.send(ev);
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Create an object: fills kind/apiVersion, namespace (for namespaced resources, default
    /// `default`), `generateName`, uid, resourceVersion, creationTimestamp, generation and
    /// type-specific defaults. Does not check that the namespace exists.
    pub fn create(&mut self, resource: &str, obj: Value) -> Result<Value, ApiError> {
        self.create_opts(resource, obj, false)
    }

    /// [`Store::create`]; with `dry_run` everything is validated and filled in, but nothing
    /// is stored (the resourceVersion stays empty).
    pub fn create_opts(
        &mut self,
        resource: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let def = self.def(resource)?;
        if !obj.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        obj["kind"] = def.kind.clone().into();
        obj["apiVersion"] = def.api_version().into();
        let meta = obj_mut(&mut obj, "metadata");
        if def.namespaced {
            if meta
                .get("namespace")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                meta.insert("namespace".into(), "default".into());
            }
        } else {
            meta.remove("namespace");
        }
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            let gen_name = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if gen_name.is_empty() {
                return Err(ApiError::invalid(
                    &def.group,
                    &def.kind,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            name = format!("{gen_name}{}", random_suffix(5));
            meta.insert("name".into(), name.clone().into());
        }
        let ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let key = (ns, name.clone());
        if self
            .objects
            .get(resource)
            .is_some_and(|m| m.contains_key(&key))
        {
            return Err(ApiError::already_exists(&def.group, resource, &name));
        }
        let meta = obj_mut(&mut obj, "metadata");
        meta.insert("uid".into(), random_uuid().into());
        meta.insert("creationTimestamp".into(), now_rfc3339().into());
        meta.remove("deletionTimestamp");
        meta.remove("resourceVersion");
        if obj.get("spec").is_some() {
            obj_mut(&mut obj, "metadata").insert("generation".into(), 1.into());
        }
        self.apply_defaults(resource, &mut obj);
        if dry_run {
            return Ok(obj);
        }
        let rv = self.bump();
        obj_mut(&mut obj, "metadata").insert("resourceVersion".into(), rv.to_string().into());
        self.objects
            .entry(resource.to_string())
            .or_default()
            .insert(key, obj.clone());
        self.emit(EventType::Added, resource, obj.clone(), None);
        Ok(obj)
    }

    fn apply_defaults(&mut self, resource: &str, obj: &mut Value) {
        match resource {
            "namespaces" => {
                let name = name_of(obj).to_string();
                obj_mut(obj, "metadata");
                obj_mut(&mut obj["metadata"], "labels")
                    .insert("kubernetes.io/metadata.name".into(), name.into());
                obj_mut(obj, "spec")
                    .entry("finalizers")
                    .or_insert(json!(["kubernetes"]));
                obj_mut(obj, "status")
                    .entry("phase")
                    .or_insert("Active".into());
            }
            "pods" => {
                let spec = obj_mut(obj, "spec");
                spec.entry("restartPolicy").or_insert("Always".into());
                spec.entry("schedulerName")
                    .or_insert("default-scheduler".into());
                spec.entry("serviceAccountName").or_insert("default".into());
                spec.entry("dnsPolicy").or_insert("ClusterFirst".into());
                spec.entry("terminationGracePeriodSeconds")
                    .or_insert(30.into());
                let status = obj_mut(obj, "status");
                status.entry("phase").or_insert("Pending".into());
                status.entry("qosClass").or_insert("BestEffort".into());
            }
            "services" => {
                let n = self.next_cluster_ip;
                self.next_cluster_ip += 1;
                let spec = obj_mut(obj, "spec");
                spec.entry("type").or_insert("ClusterIP".into());
                let ip = format!("10.96.{}.{}", n / 250, n % 250 + 1);
                if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                    spec.insert("clusterIP".into(), ip.clone().into());
                    spec.insert("clusterIPs".into(), json!([ip]));
                }
                spec.entry("sessionAffinity").or_insert("None".into());
                obj_mut(obj, "status")
                    .entry("loadBalancer")
                    .or_insert(json!({}));
            }
            "deployments" => {
                let spec = obj_mut(obj, "spec");
                spec.entry("replicas").or_insert(1.into());
                spec.entry("strategy").or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}));
                spec.entry("revisionHistoryLimit").or_insert(10.into());
                spec.entry("progressDeadlineSeconds").or_insert(600.into());
            }
            "jobs" => {
                let spec = obj_mut(obj, "spec");
                spec.entry("backoffLimit").or_insert(6.into());
                spec.entry("completions").or_insert(1.into());
                spec.entry("parallelism").or_insert(1.into());
            }
            "persistentvolumeclaims" => {
                super::storage::admit_claim(self, obj);
                obj_mut(obj, "status")
                    .entry("phase")
                    .or_insert("Pending".into());
            }
            _ => {}
        }
    }

    /// Replace an existing object. If `check_rv` and the body carries a resourceVersion that
    /// differs from the stored one, fails with 409 Conflict. uid and creationTimestamp are
    /// preserved; generation is bumped when `spec` changes. A no-op update keeps the
    /// resourceVersion and emits no event.
    pub fn update(
        &mut self,
        resource: &str,
        obj: Value,
        check_rv: bool,
    ) -> Result<Value, ApiError> {
        self.update_opts(resource, obj, check_rv, false)
    }

    /// [`Store::update`]; with `dry_run` the result is computed but not stored.
    pub fn update_opts(
        &mut self,
        resource: &str,
        mut obj: Value,
        check_rv: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let def = self.def(resource)?;
        if !obj.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        obj["kind"] = def.kind.clone().into();
        obj["apiVersion"] = def.api_version().into();
        let name = name_of(&obj).to_string();
        let ns = if def.namespaced {
            let ns = namespace_of(&obj);
            if ns.is_empty() { "default" } else { ns }.to_string()
        } else {
            String::new()
        };
        let key = (ns.clone(), name.clone());
        let Some(current) = self
            .objects
            .get(resource)
            .and_then(|m| m.get(&key))
            .cloned()
        else {
            return Err(ApiError::not_found(&def.group, resource, &name));
        };
        let body_rv = str_at(&obj, "metadata.resourceVersion");
        let cur_rv = str_at(&current, "metadata.resourceVersion");
        if check_rv && !body_rv.is_empty() && body_rv != cur_rv {
            return Err(ApiError::conflict(&def.group, resource, &name));
        }
        let meta = obj_mut(&mut obj, "metadata");
        if def.namespaced {
            meta.insert("namespace".into(), ns.into());
        }
        for k in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
            match current["metadata"].get(k) {
                Some(v) => meta.insert(k.into(), v.clone()),
                None => meta.remove(k),
            };
        }
        if current
            .get("metadata")
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some()
        {
            meta.insert(
                "deletionTimestamp".into(),
                current["metadata"]["deletionTimestamp"].clone(),
            );
        }
        if obj == current {
            return Ok(current);
        }
        if obj.get("spec") != current.get("spec") && obj.get("spec").is_some() {
            let generation = current["metadata"]
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            obj_mut(&mut obj, "metadata").insert("generation".into(), (generation + 1).into());
        }
        if dry_run {
            return Ok(obj);
        }
        let rv = self.bump();
        obj_mut(&mut obj, "metadata").insert("resourceVersion".into(), rv.to_string().into());
        self.objects
            .entry(resource.to_string())
            .or_default()
            .insert(key, obj.clone());
        self.emit(EventType::Modified, resource, obj.clone(), Some(current));
        Ok(obj)
    }

    /// Change an object in place with a closure (no conflict check). Returns the new state.
    pub fn modify(
        &mut self,
        resource: &str,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let mut obj = self.get(resource, namespace, name)?.clone();
        f(&mut obj);
        self.update(resource, obj, false).ok()
    }

    /// Create or replace (no conflict check).
    pub fn upsert(&mut self, resource: &str, obj: Value) -> Result<Value, ApiError> {
        let def = self.def(resource)?;
        let mut ns = namespace_of(&obj).to_string();
        if def.namespaced && ns.is_empty() {
            ns = "default".into();
        }
        if !def.namespaced {
            ns.clear();
        }
        if self.get(resource, &ns, name_of(&obj)).is_some() {
            self.update(resource, obj, false)
        } else {
            self.create(resource, obj)
        }
    }

    /// Remove an object right away (emits `DELETED`). Returns the removed object.
    pub fn delete(&mut self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (namespace.to_string(), name.to_string());
        let mut obj = self.objects.get_mut(resource)?.remove(&key)?;
        let rv = self.bump();
        obj_mut(&mut obj, "metadata").insert("resourceVersion".into(), rv.to_string().into());
        if resource == "pods" {
            self.logs.remove(&key);
        }
        self.emit(EventType::Deleted, resource, obj.clone(), None);
        Some(obj)
    }

    /// Delete every namespaced object in `namespace` and then the namespace itself.
    pub fn purge_namespace(&mut self, namespace: &str) {
        let namespaced: Vec<String> = self
            .resources
            .iter()
            .filter(|r| r.namespaced)
            .map(|r| r.plural.clone())
            .collect();
        for res in namespaced {
            let names: Vec<String> = self
                .iter(&res)
                .filter(|o| namespace_of(o) == namespace)
                .map(|o| name_of(o).to_string())
                .collect();
            for n in names {
                self.delete(&res, namespace, &n);
            }
        }
        self.delete("namespaces", "", namespace);
    }

    /// Events after `rv` (for replay) plus a receiver for all later events, atomically.
    pub fn subscribe_from(&self, rv: u64) -> Result<(Vec<Arc<StoreEvent>>, EventReceiver), TooOld> {
        if rv < self.rv {
            let oldest = self.history.front().map(|e| e.rv).unwrap_or(u64::MAX);
            if rv.saturating_add(1) < oldest {
                return Err(TooOld);
            }
        }
        let replay = self.history.iter().filter(|e| e.rv > rv).cloned().collect();
        Ok((replay, self.tx.subscribe()))
    }

    pub fn subscribe(&self) -> EventReceiver {
        self.tx.subscribe()
    }

    /// The log served at `pods/{name}/log`.
    pub fn pod_log(&self, namespace: &str, pod: &str) -> Option<&str> {
        self.logs
            .get(&(namespace.to_string(), pod.to_string()))
            .map(|l| l.text.as_str())
    }

    /// The log's lines (each with its `\n`, except an unterminated last one), with the time
    /// each was written, as the kubelet keeps them (CRI log lines carry their time).
    pub fn pod_log_lines(&self, namespace: &str, pod: &str) -> Vec<(jiff::Timestamp, String)> {
        self.logs
            .get(&(namespace.to_string(), pod.to_string()))
            .map(|l| {
                l.text
                    .split_inclusive('\n')
                    .zip(&l.stamps)
                    .map(|(line, at)| (*at, line.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Replaces the pod's log. Lines that were there before keep their time; new lines get
    /// the current time (never earlier than the line before).
    pub fn set_pod_log(&mut self, namespace: &str, pod: &str, log: impl Into<String>) {
        let text: String = log.into();
        let entry = self
            .logs
            .entry((namespace.to_string(), pod.to_string()))
            .or_default();
        let same = entry
            .text
            .split_inclusive('\n')
            .zip(text.split_inclusive('\n'))
            .take_while(|(a, b)| a == b && a.ends_with('\n'))
            .count();
        entry.stamps.truncate(same);
        let now = jiff::Timestamp::now().max(entry.stamps.last().copied().unwrap_or_default());
        let lines = text.split_inclusive('\n').count();
        entry.stamps.resize(lines, now);
        entry.text = text;
    }

    /// Record a core/v1 Event about `involved` (any stored object).
    pub fn record_event(
        &mut self,
        involved: &Value,
        event_type: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let now = now_rfc3339();
        let mut ev = event_about(involved, event_type, reason, message);
        for (k, v) in [
            ("count", json!(1)),
            ("firstTimestamp", json!(now)),
            ("lastTimestamp", json!(now)),
            ("source", json!({"component": component})),
            ("reportingComponent", json!(component)),
            ("reportingInstance", json!("")),
        ] {
            ev[k] = v;
        }
        let _ = self.create("events", ev);
    }

    /// Record an Event the way an `events.k8s.io/v1` recorder (kube-scheduler, client-go
    /// `tools/events`) writes it, as read through `core/v1`: `eventTime`, `action`,
    /// `reportingController`/`reportingInstance`, and no `firstTimestamp`, `lastTimestamp`
    /// or `count`. The same event again (same object, reason, message) within six minutes
    /// becomes a `series` on the first one (`count`, `lastObservedTime`).
    pub fn record_series_event(
        &mut self,
        involved: &Value,
        event_type: &str,
        reason: &str,
        message: &str,
        controller: &str,
        action: &str,
    ) {
        let uid = str_at(involved, "metadata.uid").to_string();
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let earlier = self
            .iter("events")
            .find(|e| {
                str_at(e, "involvedObject.uid") == uid
                    && str_at(e, "reason") == reason
                    && str_at(e, "message") == message
            })
            .cloned();
        if let Some(e) = earlier {
            let count = e
                .get("series")
                .and_then(|s| s.get("count"))
                .and_then(Value::as_i64)
                .unwrap_or(1)
                + 1;
            self.modify("events", namespace_of(&e), name_of(&e), |o| {
                o["series"] = json!({"count": count, "lastObservedTime": now});
            });
            return;
        }
        let mut ev = event_about(involved, event_type, reason, message);
        for (k, v) in [
            ("eventTime", json!(now)),
            ("action", json!(action)),
            ("reportingComponent", json!(controller)),
            ("reportingInstance", json!(format!("{controller}-sim"))),
            ("source", json!({})),
            ("firstTimestamp", Value::Null),
            ("lastTimestamp", Value::Null),
        ] {
            ev[k] = v;
        }
        let _ = self.create("events", ev);
    }

    /// Events whose involvedObject has this uid.
    pub fn events_for(&self, uid: &str) -> Vec<Value> {
        self.iter("events")
            .filter(|e| str_at(e, "involvedObject.uid") == uid)
            .cloned()
            .collect()
    }
}
