//! Controllers running inside the simulator: namespace defaults, garbage collection,
//! deployments, jobs, the scheduler and the kubelet. They run as one task that reconciles
//! the whole store after every batch of changes (events excepted) and never polls.

use super::selectors::label_selector_json_matches;
use super::server::Shared;
use super::spec::{PodContext, Program, ProgramResult};
use super::store::{SharedStore, Store};
use super::util::{
    labels_of, name_of, namespace_of, now_rfc3339, obj_mut, random_suffix, str_at, uid_of,
};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

#[derive(Default)]
struct State {
    /// Pods (by uid) the kubelet has started handling.
    started: HashSet<String>,
    next_ip: u32,
}

pub(super) async fn run(shared: Arc<Shared>) {
    let mut rx = shared.store.lock().subscribe();
    let mut state = State::default();
    loop {
        reconcile(&shared, &mut state);
        loop {
            match rx.recv().await {
                Ok(ev) if ev.resource == "events" => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
        // Coalesce a burst of changes into one reconcile pass.
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = rx.try_recv() {}
    }
}

fn reconcile(shared: &Arc<Shared>, state: &mut State) {
    let mut store = shared.store.lock();
    namespace_defaults(shared, &mut store);
    garbage_collect(&mut store);
    deployments(&mut store, shared.spec.pod_admission.as_deref());
    daemonsets(&mut store);
    jobs(&mut store);
    super::storage::reconcile(&shared.spec.provisioners, &shared.store, &mut store);
    schedule(&mut store);
    kubelet(shared, &mut store, state);
}

fn is_terminal(pod: &Value) -> bool {
    matches!(str_at(pod, "status.phase"), "Succeeded" | "Failed")
}

fn is_deleting(o: &Value) -> bool {
    o.get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|v| !v.is_null())
}

fn is_ready(pod: &Value) -> bool {
    pod.get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| str_at(c, "type") == "Ready" && str_at(c, "status") == "True")
        })
}

fn owned_by<'a>(store: &'a Store, resource: &str, owner: &Value) -> Vec<&'a Value> {
    let uid = uid_of(owner);
    let ns = namespace_of(owner);
    store
        .iter(resource)
        .filter(|o| namespace_of(o) == ns)
        .filter(|o| {
            o.get("metadata")
                .and_then(|m| m.get("ownerReferences"))
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| str_at(r, "uid") == uid))
        })
        .collect()
}

fn namespace_defaults(shared: &Shared, store: &mut Store) {
    let active: Vec<String> = store
        .iter("namespaces")
        .filter(|n| str_at(n, "status.phase") == "Active")
        .map(|n| name_of(n).to_string())
        .collect();
    for ns in active {
        if store.get("serviceaccounts", &ns, "default").is_none() {
            let _ = store.create(
                "serviceaccounts",
                json!({"metadata": {"name": "default", "namespace": ns}}),
            );
        }
        if store.get("configmaps", &ns, "kube-root-ca.crt").is_none() {
            let _ = store.create(
                "configmaps",
                json!({
                    "metadata": {"name": "kube-root-ca.crt", "namespace": ns,
                        "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                    "data": {"ca.crt": shared.ca_pem},
                }),
            );
        }
    }
}

/// Delete objects whose owners (by uid) are all gone.
fn garbage_collect(store: &mut Store) {
    let resources: Vec<String> = store.resources().iter().map(|r| r.plural.clone()).collect();
    let mut uids = HashSet::new();
    for r in &resources {
        uids.extend(store.iter(r).map(|o| uid_of(o).to_string()));
    }
    let mut victims = Vec::new();
    for r in &resources {
        for o in store.iter(r) {
            let refs = o
                .get("metadata")
                .and_then(|m| m.get("ownerReferences"))
                .and_then(Value::as_array);
            if let Some(refs) = refs
                && !refs.is_empty()
                && refs.iter().all(|x| !uids.contains(str_at(x, "uid")))
            {
                victims.push((
                    r.clone(),
                    namespace_of(o).to_string(),
                    name_of(o).to_string(),
                ));
            }
        }
    }
    for (r, ns, n) in victims {
        store.delete(&r, &ns, &n);
    }
}

fn pod_from_template(owner: &Value, name: String, extra_labels: &[(&str, String)]) -> Value {
    let template = owner
        .get("spec")
        .and_then(|s| s.get("template"))
        .cloned()
        .unwrap_or(json!({}));
    let mut labels = template
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in extra_labels {
        labels.insert((*k).to_string(), v.clone().into());
    }
    let mut meta = json!({
        "name": name,
        "namespace": namespace_of(owner),
        "labels": labels,
        "ownerReferences": [{
            "apiVersion": str_at(owner, "apiVersion"),
            "kind": str_at(owner, "kind"),
            "name": name_of(owner),
            "uid": uid_of(owner),
            "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    if let Some(a) = template.get("metadata").and_then(|m| m.get("annotations")) {
        meta["annotations"] = a.clone();
    }
    json!({
        "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

/// Keep old lastTransitionTime for conditions whose status did not change.
fn merge_conditions(old: Option<&Value>, new: Vec<Value>) -> Vec<Value> {
    let old = old.and_then(Value::as_array);
    new.into_iter()
        .map(|mut c| {
            if let Some(prev) = old.and_then(|o| {
                o.iter()
                    .find(|p| p.get("type") == c.get("type") && p.get("status") == c.get("status"))
            }) {
                for k in ["lastTransitionTime", "lastUpdateTime", "lastProbeTime"] {
                    if let Some(v) = prev.get(k) {
                        c[k] = v.clone();
                    }
                }
            }
            c
        })
        .collect()
}

/// The name of a Deployment's ReplicaSet and its `pod-template-hash` (derived from the
/// Deployment's uid: stable, so a refused pod's name in messages does not change).
fn replica_set_name(d: &Value) -> (String, String) {
    let hash: String = uid_of(d)
        .bytes()
        .filter(u8::is_ascii_alphanumeric)
        .take(10)
        .map(|b| b"bcdfghjklmnpqrstvwxz2456789"[b as usize % 27] as char)
        .collect();
    (format!("{}-{hash}", name_of(d)), hash)
}

/// The ReplicaSet controller's side of a pod that admission refused: a ReplicaSet owned by
/// the Deployment (created once) with a `Warning FailedCreate` event (recorded once).
fn replica_failure(store: &mut Store, d: &Value, message: &str) {
    let ns = namespace_of(d).to_string();
    let (name, hash) = replica_set_name(d);
    if store.get("replicasets", &ns, &name).is_none() {
        let mut labels = d["spec"]["template"]["metadata"]["labels"].clone();
        labels["pod-template-hash"] = hash.clone().into();
        let rs = json!({
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": labels,
                "ownerReferences": [{
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": name_of(d),
                    "uid": uid_of(d),
                    "controller": true,
                    "blockOwnerDeletion": true,
                }],
            },
            "spec": {
                "replicas": d["spec"]["replicas"].clone(),
                "selector": d["spec"]["selector"].clone(),
                "template": d["spec"]["template"].clone(),
            },
            "status": {"replicas": 0, "conditions": [{
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": message, "lastTransitionTime": now_rfc3339(),
            }]},
        });
        if store.create("replicasets", rs).is_err() {
            return;
        }
    }
    let Some(rs) = store.get("replicasets", &ns, &name).cloned() else {
        return;
    };
    let recorded = store
        .events_for(uid_of(&rs))
        .iter()
        .any(|e| str_at(e, "reason") == "FailedCreate");
    if !recorded {
        store.record_event(
            &rs,
            "Warning",
            "FailedCreate",
            &format!("Error creating: {message}"),
            "replicaset-controller",
        );
    }
}

fn deployments(store: &mut Store, pod_admission: Option<&str>) {
    let deps: Vec<Value> = store
        .iter("deployments")
        .filter(|d| !is_deleting(d))
        .cloned()
        .collect();
    for d in deps {
        let ns = namespace_of(&d).to_string();
        let want = d
            .get("spec")
            .and_then(|s| s.get("replicas"))
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .clamp(0, 1000) as usize;
        let owned: Vec<Value> = owned_by(store, "pods", &d).into_iter().cloned().collect();
        for p in owned.iter().filter(|p| is_terminal(p)) {
            store.delete("pods", &ns, name_of(p));
        }
        let mut active: Vec<Value> = owned
            .into_iter()
            .filter(|p| !is_terminal(p) && !is_deleting(p))
            .collect();
        if d.get("status").is_none() {
            // The deployment controller's event (on the Deployment; its ReplicaSet is named
            // after the pod template's hash).
            let (rs, _) = replica_set_name(&d);
            store.record_event(
                &d,
                "Normal",
                "ScalingReplicaSet",
                &format!("Scaled up replica set {rs} from 0 to {want}"),
                "deployment-controller",
            );
        }
        let mut refused = None;
        while active.len() < want {
            if let Some(reason) = pod_admission {
                let (rs, hash) = replica_set_name(&d);
                let pod = format!("{rs}-{}", &hash[..5]);
                refused = Some(format!("pods \"{pod}\" is forbidden: {reason}"));
                break;
            }
            let name = format!("{}-{}", name_of(&d), random_suffix(5));
            let pod = pod_from_template(&d, name, &[]);
            match store.create("pods", pod) {
                Ok(p) => active.push(p),
                Err(_) => break,
            }
        }
        if let Some(message) = &refused {
            replica_failure(store, &d, message);
        }
        if active.len() > want {
            // Remove unready pods first, then the newest.
            active.sort_by_key(|p| {
                (
                    is_ready(p),
                    std::cmp::Reverse(
                        str_at(p, "metadata.resourceVersion")
                            .parse::<u64>()
                            .unwrap_or(0),
                    ),
                )
            });
            let extra = active.len() - want;
            for p in active.drain(..extra) {
                store.delete("pods", &ns, name_of(&p));
            }
        }
        let ready = active.iter().filter(|p| is_ready(p)).count();
        let n = active.len();
        let now = now_rfc3339();
        let available = ready >= want;
        let mut wanted = vec![
            json!({
                "type": "Available",
                "status": if available { "True" } else { "False" },
                "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                "message": if available { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." },
                "lastTransitionTime": now, "lastUpdateTime": now,
            }),
            json!({
                "type": "Progressing",
                "status": "True",
                "reason": if available { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                "message": format!("ReplicaSet \"{}\" has {}.", name_of(&d), if available { "successfully progressed" } else { "is progressing" }),
                "lastTransitionTime": now, "lastUpdateTime": now,
            }),
        ];
        if let Some(message) = &refused {
            // Copied from the ReplicaSet's condition by the deployment controller.
            wanted.push(json!({
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": message, "lastTransitionTime": now, "lastUpdateTime": now,
            }));
        }
        let conditions =
            merge_conditions(d.get("status").and_then(|s| s.get("conditions")), wanted);
        let mut status = json!({
            "observedGeneration": d["metadata"].get("generation").cloned().unwrap_or(json!(1)),
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": conditions,
        });
        if n > ready {
            status["unavailableReplicas"] = (n - ready).into();
        }
        if d.get("status") != Some(&status) {
            store.modify("deployments", &ns, name_of(&d), |o| o["status"] = status);
        }
    }
}

/// Tolerations the real DaemonSet controller adds to every daemon pod.
fn daemon_tolerations() -> Vec<Value> {
    let mut t: Vec<Value> = [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]
    .iter()
    .map(|k| json!({"key": k, "operator": "Exists", "effect": "NoExecute"}))
    .collect();
    for k in [
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        t.push(json!({"key": k, "operator": "Exists", "effect": "NoSchedule"}));
    }
    t
}

/// One pod per eligible node, bound directly (`spec.nodeName`), like the DaemonSet controller.
fn daemonsets(store: &mut Store) {
    let dss: Vec<Value> = store
        .iter("daemonsets")
        .filter(|d| !is_deleting(d))
        .cloned()
        .collect();
    let nodes: Vec<Value> = store.iter("nodes").cloned().collect();
    for ds in dss {
        let ns = namespace_of(&ds).to_string();
        let mut template_pod = pod_from_template(&ds, String::new(), &[]);
        let tolerations = obj_mut(&mut template_pod, "spec")
            .entry("tolerations")
            .or_insert_with(|| json!([]));
        if let Some(a) = tolerations.as_array_mut() {
            a.extend(daemon_tolerations());
        }
        let eligible: Vec<String> = nodes
            .iter()
            .filter(|n| {
                matches_node_affinity(&template_pod, n)
                    && has_untolerated_taint(&template_pod, n).is_none()
            })
            .map(|n| name_of(n).to_string())
            .collect();
        let owned: Vec<Value> = owned_by(store, "pods", &ds).into_iter().cloned().collect();
        let mut covered = HashSet::new();
        for p in &owned {
            let node = str_at(p, "spec.nodeName");
            if is_terminal(p) || !eligible.iter().any(|n| n == node) || !covered.insert(node) {
                store.delete("pods", &ns, name_of(p));
            }
        }
        for node in &eligible {
            if covered.contains(node.as_str()) {
                continue;
            }
            let mut pod = template_pod.clone();
            pod["metadata"]["name"] = format!("{}-{}", name_of(&ds), random_suffix(5)).into();
            pod["spec"]["nodeName"] = node.clone().into();
            let _ = store.create("pods", pod);
        }
        let pods: Vec<Value> = owned_by(store, "pods", &ds)
            .into_iter()
            .filter(|p| !is_terminal(p))
            .cloned()
            .collect();
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        let mut status = json!({
            "currentNumberScheduled": pods.len(),
            "desiredNumberScheduled": eligible.len(),
            "numberMisscheduled": 0,
            "numberReady": ready,
            "numberAvailable": ready,
            "updatedNumberScheduled": pods.len(),
            "observedGeneration": ds["metadata"].get("generation").cloned().unwrap_or(json!(1)),
        });
        if eligible.len() > ready {
            status["numberUnavailable"] = (eligible.len() - ready).into();
        }
        if ds.get("status") != Some(&status) {
            store.modify("daemonsets", &ns, name_of(&ds), |o| o["status"] = status);
        }
    }
}

fn has_condition(o: &Value, ty: &str) -> bool {
    o.get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| str_at(c, "type") == ty && str_at(c, "status") == "True")
        })
}

fn jobs(store: &mut Store) {
    let jobs: Vec<Value> = store
        .iter("jobs")
        .filter(|j| !is_deleting(j) && !has_condition(j, "Complete") && !has_condition(j, "Failed"))
        .cloned()
        .collect();
    for j in jobs {
        let ns = namespace_of(&j).to_string();
        let name = name_of(&j).to_string();
        let spec_i = |k: &str, d: i64| {
            j.get("spec")
                .and_then(|s| s.get(k))
                .and_then(Value::as_i64)
                .unwrap_or(d)
        };
        let completions = spec_i("completions", 1).max(1) as usize;
        let backoff = spec_i("backoffLimit", 6).max(0) as usize;
        let owned: Vec<Value> = owned_by(store, "pods", &j).into_iter().cloned().collect();
        let succeeded = owned
            .iter()
            .filter(|p| str_at(p, "status.phase") == "Succeeded")
            .count();
        let failed = owned
            .iter()
            .filter(|p| str_at(p, "status.phase") == "Failed")
            .count();
        let mut active = owned.iter().filter(|p| !is_terminal(p)).count();
        let now = now_rfc3339();
        let mut conditions = vec![];
        let mut finished = false;
        if succeeded >= completions {
            finished = true;
            conditions.push(json!({"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now}));
            conditions.push(json!({"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now}));
            store.record_event(&j, "Normal", "Completed", "Job completed", "job-controller");
        } else if failed > backoff {
            finished = true;
            conditions.push(json!({"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": now, "lastTransitionTime": now}));
            conditions.push(json!({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": now, "lastTransitionTime": now}));
            store.record_event(
                &j,
                "Warning",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                "job-controller",
            );
        } else if active == 0 {
            let uid = uid_of(&j).to_string();
            let pod = pod_from_template(
                &j,
                format!("{name}-{}", random_suffix(5)),
                &[
                    ("job-name", name.clone()),
                    ("batch.kubernetes.io/job-name", name.clone()),
                    ("controller-uid", uid.clone()),
                    ("batch.kubernetes.io/controller-uid", uid),
                ],
            );
            if let Ok(p) = store.create("pods", pod) {
                active += 1;
                store.record_event(
                    &j,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {}", name_of(&p)),
                    "job-controller",
                );
            }
        }
        let old = j.get("status").cloned().unwrap_or(json!({}));
        let mut status = json!({
            "startTime": old.get("startTime").cloned().unwrap_or(now.clone().into()),
            "active": active,
            "succeeded": succeeded,
            "failed": failed,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
        });
        if finished {
            status["conditions"] = conditions.into();
            status["active"] = 0.into();
            if succeeded >= completions {
                status["completionTime"] = now.into();
            }
        }
        let mut cmp = old.clone();
        if cmp.get("startTime").is_none() {
            cmp["startTime"] = status["startTime"].clone();
        }
        if cmp != status {
            store.modify("jobs", &ns, &name, |o| o["status"] = status);
        }
    }
}

// ---------------------------------------------------------------- scheduler

fn tolerates(pod: &Value, key: &str, value: &str, effect: &str) -> bool {
    pod.get("spec")
        .and_then(|s| s.get("tolerations"))
        .and_then(Value::as_array)
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                let t_eff = str_at(t, "effect");
                let t_key = str_at(t, "key");
                let exists = str_at(t, "operator") == "Exists";
                (t_eff.is_empty() || t_eff == effect)
                    && ((t_key.is_empty() && exists) || t_key == key)
                    && (exists || str_at(t, "value") == value)
            })
        })
}

fn node_labels(node: &Value) -> Map<String, Value> {
    labels_of(node)
}

fn match_node_selector_term(term: &Value, labels: &Map<String, Value>) -> bool {
    term.get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let v = labels.get(str_at(e, "key")).and_then(Value::as_str);
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match str_at(e, "operator") {
                    "In" => v.is_some_and(|v| values.contains(&v)),
                    "NotIn" => !v.is_some_and(|v| values.contains(&v)),
                    "Exists" => v.is_some(),
                    "DoesNotExist" => v.is_none(),
                    "Gt" | "Lt" => {
                        let (Some(have), Some(want)) = (
                            v.and_then(|v| v.parse::<i64>().ok()),
                            values.first().and_then(|w| w.parse::<i64>().ok()),
                        ) else {
                            return false;
                        };
                        if str_at(e, "operator") == "Gt" {
                            have > want
                        } else {
                            have < want
                        }
                    }
                    _ => false,
                }
            })
        })
}

fn matches_node_affinity(pod: &Value, node: &Value) -> bool {
    let labels = node_labels(node);
    let selector_ok = pod
        .get("spec")
        .and_then(|s| s.get("nodeSelector"))
        .and_then(Value::as_object)
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let terms = pod
        .get("spec")
        .and_then(|s| s.get("affinity"))
        .and_then(|a| a.get("nodeAffinity"))
        .and_then(|a| a.get("requiredDuringSchedulingIgnoredDuringExecution"))
        .and_then(|r| r.get("nodeSelectorTerms"))
        .and_then(Value::as_array);
    selector_ok && terms.is_none_or(|ts| ts.iter().any(|t| match_node_selector_term(t, &labels)))
}

fn has_untolerated_taint(pod: &Value, node: &Value) -> Option<String> {
    let taints = node
        .get("spec")
        .and_then(|s| s.get("taints"))
        .and_then(Value::as_array)?;
    taints.iter().find_map(|t| {
        let (k, v, e) = (str_at(t, "key"), str_at(t, "value"), str_at(t, "effect"));
        (matches!(e, "NoSchedule" | "NoExecute") && !tolerates(pod, k, v, e))
            .then(|| format!("{{{k}: {v}}}"))
    })
}

/// A snapshot used for scheduling decisions.
struct Cluster<'a> {
    nodes: &'a [Value],
    node_by_name: HashMap<String, &'a Value>,
    /// Pods bound to a node and not terminal.
    assigned: Vec<Value>,
    ns_labels: HashMap<String, Map<String, Value>>,
}

impl Cluster<'_> {
    fn topo_value(&self, node_name: &str, key: &str) -> Option<String> {
        self.node_by_name.get(node_name).and_then(|n| {
            node_labels(n)
                .get(key)
                .and_then(Value::as_str)
                .map(String::from)
        })
    }

    /// Namespaces an affinity term applies to.
    fn term_namespaces(&self, term: &Value, pod_ns: &str) -> Option<HashSet<String>> {
        let mut set: HashSet<String> = term
            .get("namespaces")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        match term.get("namespaceSelector") {
            Some(sel) if sel.is_object() => {
                if sel.as_object().is_some_and(Map::is_empty) {
                    return None; // all namespaces
                }
                for (ns, labels) in &self.ns_labels {
                    if label_selector_json_matches(Some(sel), labels) {
                        set.insert(ns.clone());
                    }
                }
            }
            _ => {
                if set.is_empty() {
                    set.insert(pod_ns.to_string());
                }
            }
        }
        Some(set)
    }

    /// Number of assigned pods matching the term in the same topology domain as `node`.
    fn term_matches_in_domain(&self, term: &Value, pod_ns: &str, node: &Value) -> usize {
        let key = str_at(term, "topologyKey");
        let Some(domain) = node_labels(node)
            .get(key)
            .and_then(Value::as_str)
            .map(String::from)
        else {
            return 0;
        };
        let nss = self.term_namespaces(term, pod_ns);
        self.assigned
            .iter()
            .filter(|p| nss.as_ref().is_none_or(|s| s.contains(namespace_of(p))))
            .filter(|p| label_selector_json_matches(term.get("labelSelector"), &labels_of(p)))
            .filter(|p| {
                self.topo_value(str_at(p, "spec.nodeName"), key).as_deref() == Some(&domain)
            })
            .count()
    }
}

fn affinity_terms<'a>(pod: &'a Value, kind: &str, mode: &str) -> Vec<&'a Value> {
    pod.get("spec")
        .and_then(|s| s.get("affinity"))
        .and_then(|a| a.get(kind))
        .and_then(|a| a.get(mode))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn spread_constraints(pod: &Value) -> Vec<&Value> {
    pod.get("spec")
        .and_then(|s| s.get("topologySpreadConstraints"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// Skew that placing `pod` on `node` would produce for a constraint (None: node lacks the key).
fn spread_skew(c: &Value, pod: &Value, node: &Value, cl: &Cluster<'_>) -> Option<i64> {
    let key = str_at(c, "topologyKey");
    let honor_taints = str_at(c, "nodeTaintsPolicy") == "Honor";
    let honor_affinity = str_at(c, "nodeAffinityPolicy") != "Ignore";
    let node_domain = node_labels(node)
        .get(key)
        .and_then(Value::as_str)?
        .to_string();
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for n in cl.nodes {
        if (honor_affinity && !matches_node_affinity(pod, n))
            || (honor_taints && has_untolerated_taint(pod, n).is_some())
        {
            continue;
        }
        if let Some(d) = node_labels(n).get(key).and_then(Value::as_str) {
            counts.entry(d.to_string()).or_insert(0);
        }
    }
    counts.entry(node_domain.clone()).or_insert(0);
    let sel = c.get("labelSelector");
    for p in cl
        .assigned
        .iter()
        .filter(|p| namespace_of(p) == namespace_of(pod))
        .filter(|p| label_selector_json_matches(sel, &labels_of(p)))
    {
        if let Some(d) = cl.topo_value(str_at(p, "spec.nodeName"), key)
            && let Some(cnt) = counts.get_mut(&d)
        {
            *cnt += 1;
        }
    }
    let min = counts.values().copied().min().unwrap_or(0);
    let self_match = i64::from(label_selector_json_matches(sel, &labels_of(pod)));
    Some(counts.get(&node_domain).copied().unwrap_or(0) + self_match - min)
}

/// Filter one node; Err(reason) as used in the FailedScheduling message.
fn filter_node(pod: &Value, node: &Value, cl: &Cluster<'_>) -> Result<(), String> {
    let pod_ns = namespace_of(pod);
    let unschedulable = node
        .get("spec")
        .and_then(|s| s.get("unschedulable"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if unschedulable && !tolerates(pod, "node.kubernetes.io/unschedulable", "", "NoSchedule") {
        return Err("node(s) were unschedulable".into());
    }
    if let Some(t) = has_untolerated_taint(pod, node) {
        return Err(format!("node(s) had untolerated taint {t}"));
    }
    if !matches_node_affinity(pod, node) {
        return Err("node(s) didn't match Pod's node affinity/selector".into());
    }
    for c in spread_constraints(pod) {
        if str_at(c, "whenUnsatisfiable") != "DoNotSchedule" {
            continue;
        }
        let max_skew = c.get("maxSkew").and_then(Value::as_i64).unwrap_or(1);
        match spread_skew(c, pod, node, cl) {
            Some(skew) if skew <= max_skew => {}
            _ => return Err("node(s) didn't match pod topology spread constraints".into()),
        }
    }
    let pod_labels = labels_of(pod);
    for term in affinity_terms(
        pod,
        "podAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
    ) {
        if cl.term_matches_in_domain(term, pod_ns, node) == 0 {
            // Special case: no matching pod anywhere and the pod matches its own term.
            let nss = cl.term_namespaces(term, pod_ns);
            let any = cl.assigned.iter().any(|p| {
                nss.as_ref().is_none_or(|s| s.contains(namespace_of(p)))
                    && label_selector_json_matches(term.get("labelSelector"), &labels_of(p))
            });
            let self_match = label_selector_json_matches(term.get("labelSelector"), &pod_labels);
            if any || !self_match {
                return Err("node(s) didn't match pod affinity rules".into());
            }
        }
    }
    for term in affinity_terms(
        pod,
        "podAntiAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
    ) {
        if cl.term_matches_in_domain(term, pod_ns, node) > 0 {
            return Err("node(s) didn't match pod anti-affinity rules".into());
        }
    }
    // Existing pods' required anti-affinity against this pod.
    for other in &cl.assigned {
        for term in affinity_terms(
            other,
            "podAntiAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
        ) {
            let nss = cl.term_namespaces(term, namespace_of(other));
            if nss.as_ref().is_none_or(|s| s.contains(pod_ns))
                && label_selector_json_matches(term.get("labelSelector"), &pod_labels)
            {
                let key = str_at(term, "topologyKey");
                let here = node_labels(node)
                    .get(key)
                    .and_then(Value::as_str)
                    .map(String::from);
                if here.is_some() && here == cl.topo_value(str_at(other, "spec.nodeName"), key) {
                    return Err("node(s) didn't satisfy existing pods anti-affinity rules".into());
                }
            }
        }
    }
    Ok(())
}

fn score_node(pod: &Value, node: &Value, cl: &Cluster<'_>) -> i64 {
    let pod_ns = namespace_of(pod);
    let mut penalty = 0i64;
    for w in affinity_terms(
        pod,
        "podAntiAffinity",
        "preferredDuringSchedulingIgnoredDuringExecution",
    ) {
        let weight = w.get("weight").and_then(Value::as_i64).unwrap_or(1);
        if let Some(term) = w.get("podAffinityTerm") {
            penalty += weight * cl.term_matches_in_domain(term, pod_ns, node) as i64 * 1000;
        }
    }
    for w in affinity_terms(
        pod,
        "podAffinity",
        "preferredDuringSchedulingIgnoredDuringExecution",
    ) {
        let weight = w.get("weight").and_then(Value::as_i64).unwrap_or(1);
        if let Some(term) = w.get("podAffinityTerm") {
            penalty -= weight * cl.term_matches_in_domain(term, pod_ns, node) as i64 * 1000;
        }
    }
    let labels = node_labels(node);
    for w in affinity_terms(
        pod,
        "nodeAffinity",
        "preferredDuringSchedulingIgnoredDuringExecution",
    ) {
        let weight = w.get("weight").and_then(Value::as_i64).unwrap_or(1);
        if w.get("preference")
            .is_some_and(|t| match_node_selector_term(t, &labels))
        {
            penalty -= weight * 1000;
        }
    }
    for c in spread_constraints(pod) {
        if str_at(c, "whenUnsatisfiable") == "ScheduleAnyway" {
            penalty += spread_skew(c, pod, node, cl).unwrap_or(0) * 100;
        }
    }
    // Default spreading: prefer emptier nodes.
    let name = name_of(node);
    penalty += cl
        .assigned
        .iter()
        .filter(|p| str_at(p, "spec.nodeName") == name)
        .count() as i64;
    penalty
}

fn pick_node(
    pod: &Value,
    cl: &Cluster<'_>,
    volumes: &super::storage::VolumeGate,
) -> Result<String, String> {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<(i64, &Value)> = None;
    let term_matches = |t: &Value, n: &Value| match_node_selector_term(t, &node_labels(n));
    // A pod whose volumes cannot be bound is not placed at all.
    let nodes = if volumes.wait.is_some() {
        &[][..]
    } else {
        cl.nodes
    };
    for node in nodes {
        match filter_node(pod, node, cl).and_then(|()| volumes.allows(node, &term_matches)) {
            Ok(()) => {
                let s = score_node(pod, node, cl);
                if best.is_none_or(|(b, _)| s < b) {
                    best = Some((s, node));
                }
            }
            Err(r) => *reasons.entry(r).or_insert(0) += 1,
        }
    }
    if let Some((_, n)) = best {
        return Ok(name_of(n).to_string());
    }
    let total = cl.nodes.len();
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    let detail = if let Some(wait) = &volumes.wait {
        wait.clone()
    } else if parts.is_empty() {
        String::from("no nodes available to schedule pods")
    } else {
        parts.join(", ")
    };
    Err(format!(
        "0/{total} nodes are available: {detail}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
    ))
}

fn schedule(store: &mut Store) {
    let nodes: Vec<Value> = store.iter("nodes").cloned().collect();
    let mut pending: Vec<Value> = store
        .iter("pods")
        .filter(|p| {
            str_at(p, "spec.nodeName").is_empty()
                && str_at(p, "status.phase") == "Pending"
                && !is_deleting(p)
                && matches!(str_at(p, "spec.schedulerName"), "" | "default-scheduler")
        })
        .cloned()
        .collect();
    if pending.is_empty() {
        return;
    }
    pending.sort_by_key(|p| {
        str_at(p, "metadata.resourceVersion")
            .parse::<u64>()
            .unwrap_or(0)
    });
    let assigned: Vec<Value> = store
        .iter("pods")
        .filter(|p| !str_at(p, "spec.nodeName").is_empty() && !is_terminal(p))
        .cloned()
        .collect();
    let ns_labels = store
        .iter("namespaces")
        .map(|n| (name_of(n).to_string(), labels_of(n)))
        .collect();
    let mut cl = Cluster {
        nodes: &nodes,
        node_by_name: nodes.iter().map(|n| (name_of(n).to_string(), n)).collect(),
        assigned,
        ns_labels,
    };
    for pod in pending {
        let ns = namespace_of(&pod).to_string();
        let name = name_of(&pod).to_string();
        let volumes = super::storage::volume_gate(store, &pod);
        match pick_node(&pod, &cl, &volumes) {
            Ok(node) if !volumes.unbound_wffc.is_empty() => {
                // Bound only once its claims are (the VolumeBinding plugin's PreBind).
                volumes.select_node(store, &ns, &node);
            }
            Ok(node) => {
                let now = now_rfc3339();
                let updated = store.modify("pods", &ns, &name, |p| {
                    obj_mut(p, "spec").insert("nodeName".into(), node.clone().into());
                    set_condition(p, json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
                });
                if let Some(p) = updated {
                    store.record_series_event(
                        &p,
                        "Normal",
                        "Scheduled",
                        &format!("Successfully assigned {ns}/{name} to {node}"),
                        "default-scheduler",
                        "Binding",
                    );
                    cl.assigned.push(p);
                }
            }
            Err(msg) => {
                let current = pod
                    .get("status")
                    .and_then(|s| s.get("conditions"))
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| str_at(c, "type") == "PodScheduled"))
                    .map(|c| str_at(c, "message").to_string());
                if current.as_deref() != Some(msg.as_str()) {
                    let now = now_rfc3339();
                    let updated = store.modify("pods", &ns, &name, |p| {
                        set_condition(p, json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg, "lastProbeTime": null, "lastTransitionTime": now}));
                    });
                    if let Some(p) = updated {
                        store.record_series_event(
                            &p,
                            "Warning",
                            "FailedScheduling",
                            &msg,
                            "default-scheduler",
                            "Scheduling",
                        );
                    }
                }
            }
        }
    }
}

fn set_condition(pod: &mut Value, cond: Value) {
    let status = obj_mut(pod, "status");
    let conds = status
        .entry("conditions")
        .or_insert_with(|| Value::Array(vec![]));
    if !conds.is_array() {
        *conds = Value::Array(vec![]);
    }
    if let Value::Array(a) = conds {
        match a.iter_mut().find(|c| c.get("type") == cond.get("type")) {
            Some(c) => *c = cond,
            None => a.push(cond),
        }
    }
}

// ---------------------------------------------------------------- kubelet

fn containers(pod: &Value) -> Vec<Value> {
    pod.get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn find_program(shared: &Shared, image: &str) -> Option<Program> {
    shared
        .programs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(prefix, _)| image.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, p)| p.clone())
}

fn kubelet(shared: &Arc<Shared>, store: &mut Store, state: &mut State) {
    let todo: Vec<Value> = store
        .iter("pods")
        .filter(|p| {
            !str_at(p, "spec.nodeName").is_empty()
                && str_at(p, "status.phase") == "Pending"
                && !is_deleting(p)
                && !state.started.contains(uid_of(p))
        })
        .cloned()
        .collect();
    // Forget pods that no longer exist.
    if state.started.len() > 1000 {
        let live: HashSet<String> = store.iter("pods").map(|p| uid_of(p).to_string()).collect();
        state.started.retain(|u| live.contains(u));
    }
    for pod in todo {
        state.started.insert(uid_of(&pod).to_string());
        let bad_image = containers(&pod)
            .iter()
            .map(|c| str_at(c, "image").to_string())
            .find(|img| shared.spec.unpullable_images.contains(img));
        let ns = namespace_of(&pod).to_string();
        let name = name_of(&pod).to_string();
        let uid = uid_of(&pod).to_string();
        if let Some(img) = bad_image {
            let cause = format!(
                "rpc error: code = NotFound desc = failed to pull and unpack image \"{img}\": failed to resolve reference \"{img}\": {img}: not found"
            );
            image_pull_failure(store, &pod, &img, "ErrImagePull", &cause);
            let shared = shared.clone();
            let delay = shared.spec.pod_start_delay.max(Duration::from_millis(100));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let mut store = shared.store.lock();
                if let Some(pod) = store.get("pods", &ns, &name).cloned()
                    && uid_of(&pod) == uid
                {
                    image_pull_failure(&mut store, &pod, &img, "ImagePullBackOff", &cause);
                }
            });
            continue;
        }
        // Images a registry rate-limits: the first pulls fail with 429, the kubelet backs
        // off and retries, and a later pull succeeds.
        let flaky: Option<(String, u32)> = containers(&pod).iter().find_map(|c| {
            let img = str_at(c, "image");
            shared
                .spec
                .flaky_images
                .iter()
                .find(|(i, n)| i == img && *n > 0)
                .cloned()
        });
        state.next_ip += 1;
        let ip = format!("10.244.{}.{}", state.next_ip / 250, state.next_ip % 250 + 1);
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Some((img, failures)) = flaky {
                let cause = format!(
                    "rpc error: code = Unknown desc = failed to pull and unpack image \"{img}\": failed to resolve reference \"{img}\": unexpected status from HEAD request to https://registry.example/v2/manifests/latest: 429 Too Many Requests"
                );
                let delay = shared.spec.pod_start_delay.max(Duration::from_millis(100));
                for _ in 0..failures {
                    for reason in ["ErrImagePull", "ImagePullBackOff"] {
                        {
                            let mut store = shared.store.lock();
                            match store.get("pods", &ns, &name).cloned() {
                                Some(pod) if uid_of(&pod) == uid => {
                                    image_pull_failure(&mut store, &pod, &img, reason, &cause)
                                }
                                _ => return,
                            }
                        }
                        tokio::time::sleep(delay).await;
                    }
                }
            }
            tokio::time::sleep(shared.spec.pod_start_delay).await;
            start_pod(shared, ns, name, uid, ip).await;
        });
    }
}

/// The kubelet's state and events for a failed pull of `img` whose runtime error is
/// `cause`: `ErrImagePull` with the cause, then during the back-off `ImagePullBackOff`,
/// whose message newer kubelets (1.30+) follow with the previous pull's error.
fn image_pull_failure(store: &mut Store, pod: &Value, img: &str, reason: &str, cause: &str) {
    let ns = namespace_of(pod).to_string();
    let name = name_of(pod).to_string();
    let now = now_rfc3339();
    let statuses: Vec<Value> = containers(pod)
        .iter()
        .map(|c| {
            let cimg = str_at(c, "image");
            let waiting = if cimg == img {
                let msg = if reason == "ErrImagePull" {
                    cause.to_string()
                } else {
                    format!("Back-off pulling image \"{img}\": ErrImagePull: {cause}")
                };
                json!({"reason": reason, "message": msg})
            } else {
                json!({"reason": "ContainerCreating"})
            };
            json!({
                "name": str_at(c, "name"), "image": cimg, "imageID": "",
                "ready": false, "started": false, "restartCount": 0,
                "state": {"waiting": waiting}, "lastState": {},
            })
        })
        .collect();
    let updated = store.modify("pods", &ns, &name, |p| {
        let st = obj_mut(p, "status");
        st.insert("containerStatuses".into(), statuses.into());
        st.entry("startTime").or_insert(now.clone().into());
        for (ty, status) in [("PodReadyToStartContainers", "True"), ("Initialized", "True"), ("Ready", "False"), ("ContainersReady", "False")] {
            let mut c = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
            if status == "False" {
                c["reason"] = "ContainersNotReady".into();
                c["message"] = "containers with unready status: [...]".into();
            }
            set_condition(p, c);
        }
    });
    let Some(p) = updated else { return };
    if reason == "ErrImagePull" {
        store.record_event(
            &p,
            "Normal",
            "Pulling",
            &format!("Pulling image \"{img}\""),
            "kubelet",
        );
        store.record_event(
            &p,
            "Warning",
            "Failed",
            &format!("Failed to pull image \"{img}\": {cause}"),
            "kubelet",
        );
        store.record_event(&p, "Warning", "Failed", "Error: ErrImagePull", "kubelet");
    } else {
        store.record_event(
            &p,
            "Normal",
            "BackOff",
            &format!("Back-off pulling image \"{img}\""),
            "kubelet",
        );
        store.record_event(
            &p,
            "Warning",
            "Failed",
            "Error: ImagePullBackOff",
            "kubelet",
        );
    }
}

fn node_ip(store: &Store, node: &str) -> String {
    store
        .get("nodes", "", node)
        .and_then(|n| n.get("status"))
        .and_then(|s| s.get("addresses"))
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| str_at(x, "type") == "InternalIP"))
        .map(|x| str_at(x, "address").to_string())
        .unwrap_or_else(|| "10.0.0.1".into())
}

fn container_id() -> String {
    format!(
        "containerd://{:016x}{:016x}",
        super::util::random_u64(),
        super::util::random_u64()
    )
}

async fn start_pod(shared: Arc<Shared>, ns: String, name: String, uid: String, ip: String) {
    let mut runs: Vec<(usize, Program, PodContext)> = Vec::new();
    let total;
    {
        let mut store = shared.store.lock();
        let Some(pod) = store.get("pods", &ns, &name).cloned() else {
            return;
        };
        if uid_of(&pod) != uid || str_at(&pod, "status.phase") != "Pending" {
            return;
        }
        let node = str_at(&pod, "spec.nodeName").to_string();
        let host_ip = node_ip(&store, &node);
        let now = now_rfc3339();
        let cs = containers(&pod);
        let statuses: Vec<Value> = cs
            .iter()
            .map(|c| {
                json!({
                    "name": str_at(c, "name"), "image": str_at(c, "image"),
                    "imageID": format!("{}@sha256:{:016x}", str_at(c, "image"), super::util::random_u64()),
                    "containerID": container_id(),
                    "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": now}}, "lastState": {},
                })
            })
            .collect();
        let updated = store.modify("pods", &ns, &name, |p| {
            let st = obj_mut(p, "status");
            st.insert("phase".into(), "Running".into());
            st.insert("hostIP".into(), host_ip.clone().into());
            st.insert("hostIPs".into(), json!([{"ip": host_ip}]));
            st.insert("podIP".into(), ip.clone().into());
            st.insert("podIPs".into(), json!([{"ip": ip}]));
            st.insert("startTime".into(), now.clone().into());
            st.insert("containerStatuses".into(), statuses.into());
            for ty in ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"] {
                set_condition(p, json!({"type": ty, "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
            }
        });
        let Some(p) = updated else { return };
        for c in &cs {
            let img = str_at(c, "image");
            let cname = str_at(c, "name");
            store.record_event(
                &p,
                "Normal",
                "Pulled",
                &format!("Container image \"{img}\" already present on machine"),
                "kubelet",
            );
            store.record_event(
                &p,
                "Normal",
                "Created",
                &format!("Created container: {cname}"),
                "kubelet",
            );
            store.record_event(
                &p,
                "Normal",
                "Started",
                &format!("Started container {cname}"),
                "kubelet",
            );
        }
        for (i, c) in cs.iter().enumerate() {
            if let Some(prog) = find_program(&shared, str_at(c, "image")) {
                let strings = |k: &str| -> Vec<String> {
                    c.get(k)
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let ctx = PodContext {
                    namespace: ns.clone(),
                    pod_name: name.clone(),
                    node_name: node.clone(),
                    container_name: str_at(c, "name").to_string(),
                    image: str_at(c, "image").to_string(),
                    command: strings("command"),
                    args: strings("args"),
                    pod: p.clone(),
                    store: shared.store.clone(),
                };
                runs.push((i, prog, ctx));
            }
        }
        if runs.is_empty() {
            return;
        }
        total = cs.len();
    }
    let mut results: Vec<(usize, ProgramResult)> = Vec::new();
    for (i, prog, ctx) in runs {
        let res = tokio::task::spawn_blocking(move || prog(&ctx))
            .await
            .unwrap_or_else(|e| ProgramResult::fail(137, format!("program panicked: {e}")));
        results.push((i, res));
    }
    finish_pod(&shared.store, &ns, &name, &uid, total, results);
}

fn finish_pod(
    store: &SharedStore,
    ns: &str,
    name: &str,
    uid: &str,
    total: usize,
    results: Vec<(usize, ProgramResult)>,
) {
    let mut store = store.lock();
    let Some(pod) = store.get("pods", ns, name).cloned() else {
        return;
    };
    if uid_of(&pod) != uid {
        return;
    }
    let now = now_rfc3339();
    // restartPolicy Always (and OnFailure after a failure) would restart the container;
    // the simulator does not re-run programs but reports CrashLoopBackOff like a real node.
    let policy = str_at(&pod, "spec.restartPolicy").to_string();
    let restarts = |code: i32| match policy.as_str() {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    };
    let any_restart = results.iter().any(|(_, r)| restarts(r.exit_code));
    let all_done = results.len() == total && !any_restart;
    let all_ok = results.iter().all(|(_, r)| r.exit_code == 0);
    let log: String = results.iter().map(|(_, r)| r.log.as_str()).collect();
    // The log is in place before anyone can observe the terminal phase.
    store.set_pod_log(ns, name, log);
    let mut backoff: Vec<(String, i32)> = Vec::new();
    store.modify("pods", ns, name, |p| {
        if let Some(cs) = p
            .get_mut("status")
            .and_then(|s| s.get_mut("containerStatuses"))
            .and_then(Value::as_array_mut)
        {
            for (i, r) in &results {
                if let Some(c) = cs.get_mut(*i) {
                    let started = c
                        .get("state")
                        .and_then(|s| s.get("running"))
                        .and_then(|r| r.get("startedAt"))
                        .cloned()
                        .unwrap_or(now.clone().into());
                    c["ready"] = false.into();
                    c["started"] = false.into();
                    let terminated = json!({"terminated": {
                        "exitCode": r.exit_code,
                        "reason": if r.exit_code == 0 { "Completed" } else { "Error" },
                        "startedAt": started,
                        "finishedAt": now,
                        "containerID": c.get("containerID").cloned().unwrap_or(Value::Null),
                    }});
                    if restarts(r.exit_code) {
                        let cname = str_at(c, "name").to_string();
                        c["lastState"] = terminated;
                        c["restartCount"] = 1.into();
                        c["state"] = json!({"waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": format!("back-off 10s restarting failed container={cname} pod={name}_{ns}({uid})"),
                        }});
                        backoff.push((cname, r.exit_code));
                    } else {
                        c["state"] = terminated;
                    }
                }
            }
        }
        for ty in ["Ready", "ContainersReady"] {
            set_condition(p, json!({"type": ty, "status": "False", "reason": if all_done { "PodCompleted" } else { "ContainersNotReady" }, "lastProbeTime": null, "lastTransitionTime": now}));
        }
        if all_done {
            obj_mut(p, "status").insert(
                "phase".into(),
                if all_ok { "Succeeded" } else { "Failed" }.into(),
            );
        }
    });
    if let Some(p) = store.get("pods", ns, name).cloned() {
        for (cname, _) in backoff {
            store.record_event(
                &p,
                "Warning",
                "BackOff",
                &format!("Back-off restarting failed container {cname} in pod {name}_{ns}({uid})"),
                "kubelet",
            );
        }
    }
}
