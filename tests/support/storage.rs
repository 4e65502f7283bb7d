//! Storage: the DefaultStorageClass admission plugin, the PersistentVolume controller with
//! emulated external provisioners, the scheduler's volume binding, and a POSIX shell image
//! whose `sh -c` scripts read and write volume contents.
//!
//! Documented behaviour emulated here:
//! - Admission: a claim created without `storageClassName` gets the default class (the one
//!   annotated `storageclass.kubernetes.io/is-default-class: "true"` exactly, or the beta
//!   annotation; with several, the newest by `creationTimestamp`, ties by name, as since
//!   Kubernetes 1.26). Without a default the field stays unset.
//! - PV controller: for a claim of a class with an external provisioner it records Normal
//!   `ExternalProvisioning` ("Waiting for a volume to be created either by the external
//!   provisioner '...' or manually by the system administrator. ..."). `Immediate` classes
//!   provision at once; `WaitForFirstConsumer` classes record Normal `WaitForFirstConsumer`
//!   and wait for the scheduler's `volume.kubernetes.io/selected-node` annotation.
//!   A provisioner nobody runs (e.g. `kubernetes.io/no-provisioner`, or one not in
//!   [`super::ClusterSpec::provisioners`]) never provisions. When a claim is gone, a bound
//!   PV becomes `Released`; dynamically provisioned PVs with reclaim policy `Delete` are
//!   deleted by their provisioner, `Retain` ones stay.
//! - Provisioners ([`ProvisionerKind`]): CSI (external-provisioner + driver: a PV with a
//!   `csi` source, optionally zone affinity), local-path (Rancher local-path-provisioner:
//!   a `hostPath` PV with node affinity `kubernetes.io/hostname` to the selected node; it
//!   refuses Immediate classes like the real one, which needs a selected node), broken
//!   (Warning `ProvisioningFailed` with the given error).
//! - Scheduler (VolumeBinding plugin): a pod whose claim is an unbound Immediate claim is
//!   unschedulable ("pod has unbound immediate PersistentVolumeClaims"); for an unbound
//!   WaitForFirstConsumer claim the scheduler picks a node, annotates the claim with it and
//!   binds the pod only after the claim is bound; a bound PV's node affinity restricts the
//!   nodes ("node(s) had volume node affinity conflict").
//! - Shell image ([`super::SimCluster::register_shell_image`]): `set -e`, `echo WORDS > FILE`,
//!   `sync`, `cat FILE`, `ls -ldn MOUNT`, `exit N`, `if ! COMMAND; then ...; fi`, separated
//!   by `;` or `&&`, on a read-only root filesystem. Files on
//!   a PV persist across pods (a per-PV file map), unless its provisioner has `lose_data`
//!   (each pod then sees an empty volume, like node-local scratch space). CSI volumes are
//!   writable by a non-root user only with `fsGroup` (the kubelet changes the group on
//!   mount); local-path directories are world-writable (mode 0777), as the real ones.

use super::store::{SharedStore, Store};
use super::util::{name_of, namespace_of, now_rfc3339, obj_mut, random_uuid, str_at, uid_of};
use super::{PodContext, ProgramResult, SimCluster};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const DEFAULT_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
pub const BETA_DEFAULT_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// How an emulated provisioner behaves.
#[derive(Debug, Clone, PartialEq)]
pub enum ProvisionerKind {
    /// external-provisioner + CSI driver; `zone_affinity` adds a zone node affinity (taken
    /// from the selected node, if any), like zonal block storage.
    Csi { zone_affinity: bool },
    /// Rancher local-path-provisioner.
    LocalPath,
    /// Every attempt fails with this error.
    Broken(String),
}

/// An external provisioner running in the simulated cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionerSpec {
    pub name: String,
    pub kind: ProvisionerKind,
    /// Each pod sees an empty volume (data does not outlive the pod).
    pub lose_data: bool,
    /// How long the backend takes to create a volume (a cloud's API is not instant).
    pub provision_delay: std::time::Duration,
}

impl ProvisionerSpec {
    pub fn csi(name: &str) -> Self {
        ProvisionerSpec {
            name: name.into(),
            kind: ProvisionerKind::Csi {
                zone_affinity: false,
            },
            lose_data: false,
            provision_delay: std::time::Duration::ZERO,
        }
    }
    pub fn local_path() -> Self {
        ProvisionerSpec {
            name: "rancher.io/local-path".into(),
            kind: ProvisionerKind::LocalPath,
            lose_data: false,
            provision_delay: std::time::Duration::ZERO,
        }
    }
    pub fn broken(name: &str, error: &str) -> Self {
        ProvisionerSpec {
            name: name.into(),
            kind: ProvisionerKind::Broken(error.into()),
            lose_data: false,
            provision_delay: std::time::Duration::ZERO,
        }
    }
    pub fn zonal(mut self) -> Self {
        self.kind = ProvisionerKind::Csi {
            zone_affinity: true,
        };
        self
    }
    pub fn losing_data(mut self) -> Self {
        self.lose_data = true;
        self
    }
    pub fn taking(mut self, delay: std::time::Duration) -> Self {
        self.provision_delay = delay;
        self
    }
}

/// A StorageClass object.
/// A cluster whose only (and default) StorageClass `standard` is served by `provisioner`.
pub fn default_class_cluster(provisioner: ProvisionerSpec) -> super::ClusterSpec {
    super::ClusterSpec {
        storage_classes: vec![
            storage_class("standard", &provisioner.name)
                .default_class()
                .build(),
        ],
        provisioners: vec![provisioner],
        ..Default::default()
    }
}

pub fn storage_class(name: &str, provisioner: &str) -> StorageClassBuilder {
    StorageClassBuilder(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": provisioner,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }))
}

pub struct StorageClassBuilder(Value);

impl StorageClassBuilder {
    pub fn default_class(mut self) -> Self {
        self.0["metadata"]["annotations"] = json!({DEFAULT_ANNOTATION: "true"});
        self
    }
    pub fn beta_default_class(mut self) -> Self {
        self.0["metadata"]["annotations"] = json!({BETA_DEFAULT_ANNOTATION: "true"});
        self
    }
    pub fn wait_for_first_consumer(mut self) -> Self {
        self.0["volumeBindingMode"] = "WaitForFirstConsumer".into();
        self
    }
    pub fn retain(mut self) -> Self {
        self.0["reclaimPolicy"] = "Retain".into();
        self
    }
    pub fn expandable(mut self) -> Self {
        self.0["allowVolumeExpansion"] = true.into();
        self
    }
    /// Any annotation (e.g. a default-class annotation with a value the API server ignores).
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["annotations"][key] = value.into();
        self
    }
    /// Created at `at` (RFC 3339), before the cluster started.
    pub fn created(mut self, at: &str) -> Self {
        self.0["metadata"]["creationTimestamp"] = at.into();
        self
    }
    pub fn build(self) -> Value {
        self.0
    }
}

fn is_default_class(sc: &Value) -> bool {
    [DEFAULT_ANNOTATION, BETA_DEFAULT_ANNOTATION]
        .iter()
        .any(|a| {
            sc.get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|x| x.get(*a))
                .and_then(Value::as_str)
                == Some("true")
        })
}

/// DefaultStorageClass admission: fills `spec.storageClassName` of a new claim.
pub(super) fn admit_claim(store: &Store, claim: &mut Value) {
    let has_class = claim
        .get("spec")
        .and_then(|s| s.get("storageClassName"))
        .is_some_and(|v| !v.is_null());
    if has_class {
        return;
    }
    // GetDefaultClass (k8s.io/component-helpers/storage/volume): the newest by
    // creationTimestamp (second resolution, as stored), ties by name ascending.
    let newest = store
        .iter("storageclasses")
        .filter(|sc| is_default_class(sc))
        .min_by(|a, b| {
            let created = |sc: &Value| str_at(sc, "metadata.creationTimestamp").to_string();
            created(b)
                .cmp(&created(a))
                .then_with(|| name_of(a).cmp(name_of(b)))
        })
        .map(|sc| name_of(sc).to_string());
    if let Some(class) = newest {
        obj_mut(claim, "spec").insert("storageClassName".into(), class.into());
    }
}

fn provisioner<'a>(specs: &'a [ProvisionerSpec], name: &str) -> Option<&'a ProvisionerSpec> {
    specs.iter().find(|p| p.name == name)
}

fn has_event(store: &Store, obj: &Value, reason: &str) -> bool {
    store
        .events_for(uid_of(obj))
        .iter()
        .any(|e| str_at(e, "reason") == reason)
}

fn event_once(store: &mut Store, obj: &Value, kind: &str, reason: &str, message: &str, from: &str) {
    if !has_event(store, obj, reason) {
        store.record_event(obj, kind, reason, message, from);
    }
}

/// The PV controller and the external provisioners: one reconcile pass.
/// When each claim's provisioning started (claim uid -> instant), for `provision_delay`.
fn provisioning_started() -> &'static Mutex<HashMap<String, std::time::Instant>> {
    static STARTED: std::sync::OnceLock<Mutex<HashMap<String, std::time::Instant>>> =
        std::sync::OnceLock::new();
    STARTED.get_or_init(Default::default)
}

/// Whether the backend has finished creating the claim's volume. The first call starts the
/// clock and arranges a wake-up: once the delay has passed, the claim gets the
/// `volume.kubernetes.io/storage-provisioner` annotation (as the PV controller sets it),
/// which is a change the controllers react to.
fn provisioned_yet(
    shared: &SharedStore,
    claim: &Value,
    provisioner: &str,
    delay: std::time::Duration,
) -> bool {
    if delay.is_zero() {
        return true;
    }
    let mut started = provisioning_started()
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let since = *started.entry(uid_of(claim).to_string()).or_insert_with(|| {
        let (store, ns, name) = (
            shared.clone(),
            namespace_of(claim).to_string(),
            name_of(claim).to_string(),
        );
        let provisioner = provisioner.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            store.with(|s| {
                s.modify("persistentvolumeclaims", &ns, &name, |c| {
                    c["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] =
                        json!(provisioner);
                })
            });
        });
        std::time::Instant::now()
    });
    since.elapsed() >= delay
}

pub(super) fn reconcile(specs: &[ProvisionerSpec], shared: &SharedStore, store: &mut Store) {
    let claims: Vec<Value> = store
        .iter("persistentvolumeclaims")
        .filter(|c| {
            str_at(c, "status.phase") == "Pending" && str_at(c, "spec.volumeName").is_empty()
        })
        .cloned()
        .collect();
    for claim in claims {
        let class_name = str_at(&claim, "spec.storageClassName").to_string();
        let Some(class) = store.get("storageclasses", "", &class_name).cloned() else {
            continue;
        };
        let prov_name = str_at(&class, "provisioner").to_string();
        let wait_first = str_at(&class, "volumeBindingMode") == "WaitForFirstConsumer";
        let selected = claim
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(SELECTED_NODE))
            .and_then(Value::as_str)
            .map(String::from);
        if wait_first && selected.is_none() {
            event_once(
                store,
                &claim,
                "Normal",
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
                "persistentvolume-controller",
            );
            continue;
        }
        event_once(
            store,
            &claim,
            "Normal",
            "ExternalProvisioning",
            &format!(
                "Waiting for a volume to be created either by the external provisioner '{prov_name}' \
                 or manually by the system administrator. If volume creation is delayed, please \
                 verify that the provisioner is running and correctly registered."
            ),
            "persistentvolume-controller",
        );
        let Some(spec) = provisioner(specs, &prov_name) else {
            continue; // nobody provisions (kubernetes.io/no-provisioner, or not running)
        };
        let from = format!(
            "{prov_name}_provisioner-0_{}",
            &uid_of(&class)[..8.min(uid_of(&class).len())]
        );
        let fail = |store: &mut Store, error: &str| {
            event_once(
                store,
                &claim,
                "Warning",
                "ProvisioningFailed",
                &format!("failed to provision volume with StorageClass \"{class_name}\": {error}"),
                &from,
            );
        };
        let ns = namespace_of(&claim).to_string();
        let name = name_of(&claim).to_string();
        event_once(
            store,
            &claim,
            "Normal",
            "Provisioning",
            &format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
            &from,
        );
        if !provisioned_yet(shared, &claim, &prov_name, spec.provision_delay) {
            continue;
        }
        let pv_name = format!("pvc-{}", uid_of(&claim));
        let source = match &spec.kind {
            ProvisionerKind::Broken(error) => {
                fail(store, error);
                continue;
            }
            ProvisionerKind::LocalPath => {
                let Some(node) = &selected else {
                    fail(store, "configuration error, no node was specified");
                    continue;
                };
                json!({
                    "hostPath": {"path": format!("/opt/local-path-provisioner/{pv_name}_{ns}_{name}"), "type": "DirectoryOrCreate"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                    ]}]}},
                })
            }
            ProvisionerKind::Csi { zone_affinity } => {
                let mut s = json!({"csi": {
                    "driver": prov_name,
                    "volumeHandle": random_uuid(),
                    "fsType": "ext4",
                    "volumeAttributes": {"storage.kubernetes.io/csiProvisionerIdentity": "1700000000000-1234-sim"},
                }});
                let zone = selected
                    .as_ref()
                    .and_then(|n| store.get("nodes", "", n))
                    .and_then(|node| {
                        node.get("metadata")?
                            .get("labels")?
                            .get("topology.kubernetes.io/zone")?
                            .as_str()
                    })
                    .map(String::from);
                if *zone_affinity && let Some(zone) = zone {
                    s["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}
                    ]}]}});
                }
                s
            }
        };
        let size = claim
            .get("spec")
            .and_then(|s| s.get("resources"))
            .and_then(|r| r.get("requests"))
            .and_then(|r| r.get("storage"))
            .cloned()
            .unwrap_or(json!("1Gi"));
        let modes = claim
            .get("spec")
            .and_then(|s| s.get("accessModes"))
            .cloned()
            .unwrap_or(json!(["ReadWriteOnce"]));
        let mut pv = json!({
            "metadata": {"name": pv_name, "annotations": {PROVISIONED_BY: prov_name, "volume.kubernetes.io/provisioner-deletion-secret-name": "", "volume.kubernetes.io/provisioner-deletion-secret-namespace": ""}},
            "spec": {
                "accessModes": modes,
                "capacity": {"storage": size},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": name, "uid": uid_of(&claim), "resourceVersion": str_at(&claim, "metadata.resourceVersion")},
                "persistentVolumeReclaimPolicy": class.get("reclaimPolicy").cloned().unwrap_or(json!("Delete")),
                "storageClassName": class_name,
                "volumeMode": "Filesystem",
            },
            "status": {"phase": "Bound", "lastPhaseTransitionTime": now_rfc3339()},
        });
        if let Some(src) = source.as_object() {
            for (k, v) in src {
                pv["spec"][k] = v.clone();
            }
        }
        if store.create("persistentvolumes", pv).is_err() {
            continue;
        }
        event_once(
            store,
            &claim,
            "Normal",
            "ProvisioningSucceeded",
            &format!("Successfully provisioned volume {pv_name}"),
            &from,
        );
        store.modify("persistentvolumeclaims", &ns, &name, |c| {
            let meta = obj_mut(c, "metadata");
            let ann = meta.entry("annotations").or_insert_with(|| json!({}));
            ann["pv.kubernetes.io/bind-completed"] = "yes".into();
            ann["pv.kubernetes.io/bound-by-controller"] = "yes".into();
            ann["volume.kubernetes.io/storage-provisioner"] = prov_name.clone().into();
            ann["volume.beta.kubernetes.io/storage-provisioner"] = prov_name.clone().into();
            obj_mut(c, "spec").insert("volumeName".into(), pv_name.clone().into());
            let st = obj_mut(c, "status");
            st.insert("phase".into(), "Bound".into());
            st.insert("accessModes".into(), modes.clone());
            st.insert("capacity".into(), json!({"storage": size}));
        });
    }

    // Claims that are gone release their volumes.
    let volumes: Vec<Value> = store
        .iter("persistentvolumes")
        .filter(|pv| str_at(pv, "status.phase") == "Bound")
        .cloned()
        .collect();
    for pv in volumes {
        let claim_ns = str_at(&pv, "spec.claimRef.namespace");
        let claim_name = str_at(&pv, "spec.claimRef.name");
        let claim_uid = str_at(&pv, "spec.claimRef.uid");
        let present = store
            .get("persistentvolumeclaims", claim_ns, claim_name)
            .is_some_and(|c| uid_of(c) == claim_uid);
        if present {
            continue;
        }
        let dynamic = pv
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(PROVISIONED_BY))
            .and_then(Value::as_str)
            .and_then(|p| provisioner(specs, p))
            .is_some();
        let pv_name = name_of(&pv).to_string();
        if dynamic && str_at(&pv, "spec.persistentVolumeReclaimPolicy") == "Delete" {
            store.delete("persistentvolumes", "", &pv_name);
        } else {
            store.modify("persistentvolumes", "", &pv_name, |p| {
                obj_mut(p, "status").insert("phase".into(), "Released".into());
            });
        }
    }
}

/// What a pod's volumes demand of scheduling.
#[derive(Debug, Default)]
pub(super) struct VolumeGate {
    /// The pod cannot be scheduled at all (the reason for FailedScheduling).
    pub wait: Option<String>,
    /// Node affinities (`nodeSelectorTerms` arrays) of bound PVs, all of which must match.
    pub node_terms: Vec<Value>,
    /// Unbound WaitForFirstConsumer claims: the chosen node is recorded on them and the
    /// pod stays Pending until they are bound.
    pub unbound_wffc: Vec<String>,
}

pub(super) fn volume_gate(store: &Store, pod: &Value) -> VolumeGate {
    let mut gate = VolumeGate::default();
    let ns = namespace_of(pod);
    let volumes = pod
        .get("spec")
        .and_then(|s| s.get("volumes"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in volumes {
        let claim_name = str_at(&v, "persistentVolumeClaim.claimName");
        if claim_name.is_empty() {
            continue;
        }
        let Some(claim) = store.get("persistentvolumeclaims", ns, claim_name) else {
            gate.wait = Some(format!("persistentvolumeclaim \"{claim_name}\" not found"));
            continue;
        };
        let volume = str_at(claim, "spec.volumeName");
        if !volume.is_empty() && str_at(claim, "status.phase") == "Bound" {
            if let Some(terms) = store.get("persistentvolumes", "", volume).and_then(|pv| {
                pv.get("spec")?
                    .get("nodeAffinity")?
                    .get("required")?
                    .get("nodeSelectorTerms")
            }) {
                gate.node_terms.push(terms.clone());
            }
            continue;
        }
        let wffc = store
            .get("storageclasses", "", str_at(claim, "spec.storageClassName"))
            .is_some_and(|sc| str_at(sc, "volumeBindingMode") == "WaitForFirstConsumer");
        if wffc {
            gate.unbound_wffc.push(claim_name.to_string());
        } else {
            gate.wait = Some("pod has unbound immediate PersistentVolumeClaims".into());
        }
    }
    gate
}

impl VolumeGate {
    /// Whether `node` satisfies every bound volume's node affinity.
    pub fn allows(
        &self,
        node: &Value,
        term_matches: &dyn Fn(&Value, &Value) -> bool,
    ) -> Result<(), String> {
        let ok = self.node_terms.iter().all(|terms| {
            terms
                .as_array()
                .is_some_and(|ts| ts.iter().any(|t| term_matches(t, node)))
        });
        if ok {
            Ok(())
        } else {
            Err("node(s) had volume node affinity conflict".into())
        }
    }

    /// Records the chosen node on the unbound WaitForFirstConsumer claims.
    pub fn select_node(&self, store: &mut Store, namespace: &str, node: &str) {
        for claim in &self.unbound_wffc {
            let current = store
                .get("persistentvolumeclaims", namespace, claim)
                .and_then(|c| c.get("metadata")?.get("annotations")?.get(SELECTED_NODE))
                .and_then(Value::as_str)
                .map(String::from);
            if current.is_none() {
                store.modify("persistentvolumeclaims", namespace, claim, |c| {
                    let meta = obj_mut(c, "metadata");
                    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
                    ann[SELECTED_NODE] = node.into();
                });
            }
        }
    }
}

// ---------------------------------------------------------------- shell image

/// Volume contents: volume key -> path inside the volume -> contents.
type Files = Arc<Mutex<HashMap<String, HashMap<String, String>>>>;

struct Mount {
    path: String,
    /// Key of the volume's data in [`Files`].
    key: String,
    writable: bool,
    /// The volume root as `ls -ldn` prints it (mode, links, uid, gid).
    root: String,
}

fn mounts(ctx: &PodContext, specs: &[ProvisionerSpec]) -> Vec<Mount> {
    let pod = &ctx.pod;
    let store = ctx.store.lock();
    let run_as = pod
        .get("spec")
        .and_then(|s| s.get("securityContext"))
        .and_then(|s| s.get("runAsUser"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let fs_group = pod
        .get("spec")
        .and_then(|s| s.get("securityContext"))
        .and_then(|s| s.get("fsGroup"))
        .and_then(Value::as_i64);
    let volumes = pod
        .get("spec")
        .and_then(|s| s.get("volumes"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let container = pod
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| str_at(c, "name") == ctx.container_name))
        .cloned()
        .unwrap_or(json!({}));
    let mut out = Vec::new();
    for m in container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let Some(v) = volumes
            .iter()
            .find(|v| str_at(v, "name") == str_at(&m, "name"))
        else {
            continue;
        };
        let claim = str_at(v, "persistentVolumeClaim.claimName");
        let Some(pv_name) = store
            .get("persistentvolumeclaims", &ctx.namespace, claim)
            .map(|c| str_at(c, "spec.volumeName").to_string())
        else {
            continue;
        };
        let pv = store
            .get("persistentvolumes", "", &pv_name)
            .cloned()
            .unwrap_or(json!({}));
        let prov = pv
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(PROVISIONED_BY))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let lose = provisioner(specs, prov).is_some_and(|p| p.lose_data);
        let key = if lose {
            format!("{pv_name}@{}", uid_of(pod))
        } else {
            pv_name.clone()
        };
        let host_path = pv.get("spec").and_then(|s| s.get("hostPath")).is_some();
        // local-path directories are 0777; the kubelet gives CSI volumes to the fsGroup
        // (setgid, group-writable); otherwise the driver's root-owned 0755 stays.
        let root = match (host_path, fs_group) {
            (true, _) => "drwxrwxrwx    2 0        0".to_string(),
            (false, Some(gid)) => format!("drwxrwsr-x    2 0        {gid}"),
            (false, None) => "drwxr-xr-x    2 0        0".to_string(),
        };
        out.push(Mount {
            path: str_at(&m, "mountPath").trim_end_matches('/').to_string(),
            key,
            writable: run_as == 0 || fs_group.is_some() || host_path,
            root,
        });
    }
    out
}

fn run_script(script: &str, mounts: &[Mount], files: &Files) -> ProgramResult {
    let mut log = String::new();
    let mut errexit = false;
    let mut files = files.lock().unwrap_or_else(|e| e.into_inner());
    let locate = |path: &str| -> Option<(usize, String)> {
        mounts.iter().enumerate().find_map(|(i, m)| {
            path.strip_prefix(&format!("{}/", m.path))
                .map(|rel| (i, rel.to_string()))
        })
    };
    let statements: Vec<(String, bool)> = {
        let mut out = Vec::new();
        for part in script.split(';') {
            let pieces: Vec<&str> = part.split("&&").collect();
            let n = pieces.len();
            for (i, p) in pieces.into_iter().enumerate() {
                out.push((p.trim().to_string(), i + 1 < n));
            }
        }
        out
    };
    let mut status = 0;
    // `if ! COMMAND; then ...; fi`: whether the statements up to `fi` are skipped.
    let mut skipping = false;
    for (stmt, and_then) in statements {
        let (stmt, condition) = match stmt.strip_prefix("if ! ") {
            Some(c) => (c, true),
            None => (stmt.strip_prefix("then ").unwrap_or(&stmt), false),
        };
        if stmt == "fi" {
            skipping = false;
            continue;
        }
        if stmt.is_empty() || skipping {
            continue;
        }
        let words: Vec<&str> = stmt.split_whitespace().collect();
        if let ["exit", code] = words.as_slice() {
            return ProgramResult {
                exit_code: code.parse().unwrap_or(2),
                log,
            };
        }
        status = match words.as_slice() {
            ["set", "-e"] => {
                errexit = true;
                0
            }
            ["sync"] => 0,
            ["ls", "-ldn", path] => match mounts.iter().find(|m| m.path == *path) {
                Some(m) => {
                    log.push_str(&format!(
                        "{}             4096 Nov 29 16:06 {path}\n",
                        m.root
                    ));
                    0
                }
                None => {
                    log.push_str(&format!("ls: {path}: No such file or directory\n"));
                    1
                }
            },
            ["echo", rest @ .., ">", path] => match locate(path) {
                Some((i, rel)) if mounts[i].writable => {
                    files
                        .entry(mounts[i].key.clone())
                        .or_default()
                        .insert(rel, format!("{}\n", rest.join(" ")));
                    0
                }
                Some(_) => {
                    log.push_str(&format!("sh: can't create {path}: Permission denied\n"));
                    1
                }
                None => {
                    log.push_str(&format!("sh: can't create {path}: Read-only file system\n"));
                    1
                }
            },
            ["cat", path] => {
                let content = locate(path).and_then(|(i, rel)| {
                    files.get(&mounts[i].key).and_then(|f| f.get(&rel)).cloned()
                });
                match content {
                    Some(c) => {
                        log.push_str(&c);
                        0
                    }
                    None => {
                        log.push_str(&format!(
                            "cat: can't open '{path}': No such file or directory\n"
                        ));
                        1
                    }
                }
            }
            [cmd, ..] => {
                log.push_str(&format!("sh: {cmd}: not found\n"));
                127
            }
            [] => 0,
        };
        if condition {
            // A failed condition runs the body; errexit does not apply to it.
            skipping = status == 0;
            status = 0;
            continue;
        }
        if status != 0 && (errexit || and_then) {
            break;
        }
    }
    ProgramResult {
        exit_code: status,
        log,
    }
}

impl SimCluster {
    /// Emulates an image with a POSIX shell (e.g. busybox) for containers whose image
    /// starts with `image_prefix`: see the module documentation for what scripts can do.
    pub fn register_shell_image(&self, image_prefix: &str) {
        let files: Files = Arc::default();
        let specs = self.shared.spec.provisioners.clone();
        self.register_program(image_prefix, move |ctx| {
            let Some(script) = ctx.shell_script() else {
                return ProgramResult::fail(127, "exec: not a shell invocation\n");
            };
            let mounts = mounts(ctx, &specs);
            run_script(&script, &mounts, &files)
        });
    }
}
