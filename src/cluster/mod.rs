//! The bottom layer: everything checks and orchestration use to talk to the cluster: the
//! connection (`config`, `preflight`), the run labels, scratch namespaces and the cleanup
//! registry (here), labelled object builders (`objects`), Jobs and pod logs (`jobs`),
//! watch-based waits (`wait`), pod state (`pods`), pods admission refuses (`admission`),
//! restricted pod templates (`workload`) and API error descriptions (`errors`). It knows
//! no check and no orchestration.

pub mod admission;
pub mod bundle;
pub mod config;
pub mod errors;
pub mod exec;
pub mod jobs;
pub mod objects;
pub mod pods;
pub mod preflight;
pub mod wait;
pub mod workload;

use errors::{ApiError, call};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "scs-kaas-check";
pub const RUN_ID_KEY: &str = "scs-kaas-check/run-id";
pub const CHECK_KEY: &str = "scs-kaas-check/check";
/// The value of [`CHECK_KEY`] on the objects of the in-cluster runner (its namespace, Job,
/// ServiceAccount and RBAC), which a run inside the cluster must not delete under itself.
pub const RUNNER_CHECK: &str = "in-cluster";

/// How long cleanup waits for a deleted namespace to disappear before moving on.
const NAMESPACE_GONE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long cleanup lets a provisioner delete a released volume (reclaim policy `Delete`)
/// before it deletes the PersistentVolume object itself.
const VOLUME_GONE_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest cleanup of one check takes: its namespaces, then its volumes.
pub const CLEANUP_BOUND: Duration =
    Duration::from_secs(NAMESPACE_GONE_TIMEOUT.as_secs() + VOLUME_GONE_TIMEOUT.as_secs());

/// A cluster-scoped object the run is responsible for. Namespaced objects need no entry:
/// they go with their scratch namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterObject {
    /// A PersistentVolume provisioned for a claim in a scratch namespace. It outlives the
    /// namespace when its reclaim policy is `Retain`.
    PersistentVolume(String),
    /// A ClusterRole of an in-cluster run (named after the run, carrying the run labels).
    ClusterRole(String),
    /// A ClusterRoleBinding of an in-cluster run.
    ClusterRoleBinding(String),
}

impl std::fmt::Display for ClusterObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterObject::PersistentVolume(name) => write!(f, "PersistentVolume {name}"),
            ClusterObject::ClusterRole(name) => write!(f, "ClusterRole {name}"),
            ClusterObject::ClusterRoleBinding(name) => write!(f, "ClusterRoleBinding {name}"),
        }
    }
}

/// What the run created (or caused to be created) and must remove.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tracked {
    Namespace(String),
    Cluster(ClusterObject),
}

/// The labels every object of this run carries.
pub fn run_labels(run_id: &str, check: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_KEY.to_string(), MANAGED_BY.to_string()),
        (RUN_ID_KEY.to_string(), run_id.to_string()),
        (CHECK_KEY.to_string(), check.to_string()),
    ])
}

/// Label selector for everything of one run, or of every run.
pub fn run_selector(run_id: Option<&str>) -> String {
    match run_id {
        Some(id) => format!("{MANAGED_BY_KEY}={MANAGED_BY},{RUN_ID_KEY}={id}"),
        None => format!("{MANAGED_BY_KEY}={MANAGED_BY}"),
    }
}

/// A connected cluster and the run's bookkeeping of what it created there.
pub struct Cluster {
    pub client: Client,
    /// The client for requests whose error answers are data (see
    /// [`preflight::Connection::no_retry`]); `client` unless set by
    /// [`Cluster::with_no_retry`].
    pub no_retry: Client,
    pub run_id: String,
    pub request_timeout: Duration,
    /// `--keep`: leave created objects in place.
    pub keep: bool,
    /// `(owning check, object)`, in creation order.
    created: Mutex<Vec<(String, Tracked)>>,
}

impl Cluster {
    pub fn new(client: Client, run_id: String, request_timeout: Duration, keep: bool) -> Self {
        Cluster {
            no_retry: client.clone(),
            client,
            run_id,
            request_timeout,
            keep,
            created: Mutex::new(Vec::new()),
        }
    }

    /// Uses `client` (without retries) for requests whose error answers are data.
    pub fn with_no_retry(mut self, client: Client) -> Self {
        self.no_retry = client;
        self
    }

    /// Runs one API call with the request timeout.
    pub async fn call<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ApiError> {
        call(what, self.request_timeout, fut).await
    }

    /// Creates a namespace for `check`, labelled with the run labels and enforcing the
    /// `restricted` Pod Security profile. It is registered for cleanup before it exists, so
    /// even a create whose answer was lost gets deleted. When the run has registry
    /// credentials ([`workload::use_pull_secret`]) the namespace gets them as the Secret
    /// [`workload::PULL_SECRET_NAME`] (with the run labels), which every pod spec references.
    pub async fn scratch_namespace(&self, check: &str, purpose: &str) -> Result<String, ApiError> {
        let namespace = namespace_object(&self.run_id, check, purpose);
        let name = namespace.metadata.name.clone().unwrap_or_default();
        self.created_lock()
            .push((check.to_string(), Tracked::Namespace(name.clone())));
        let api: Api<Namespace> = Api::all(self.client.clone());
        self.call(
            &format!("create namespace {name}"),
            api.create(&PostParams::default(), &namespace),
        )
        .await?;
        if let Some(config) = workload::pull_secret() {
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &name);
            self.call(
                &format!("create secret {name}/{}", workload::PULL_SECRET_NAME),
                secrets.create(
                    &PostParams::default(),
                    &pull_secret_object(&self.run_id, check, &name, config),
                ),
            )
            .await?;
        }
        Ok(name)
    }

    fn created_lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Tracked)>> {
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a cluster-scoped object `check` is responsible for; [`Cluster::release`]
    /// deletes it after the check's namespaces. Registering twice is harmless.
    pub fn track(&self, check: &str, object: ClusterObject) {
        let entry = (check.to_string(), Tracked::Cluster(object));
        let mut created = self.created_lock();
        if !created.contains(&entry) {
            created.push(entry);
        }
    }

    /// Deletes what `check` created (everything for `None`): first its namespaces (waiting
    /// until they are gone), then the cluster-scoped objects it registered and the
    /// PersistentVolumes still claimed from its namespaces. Returns lines saying what was
    /// done, for the check's log.
    pub async fn release(&self, check: Option<&str>) -> Vec<String> {
        let mine: Vec<Tracked> = {
            let mut created = self.created_lock();
            let (mine, rest): (Vec<_>, Vec<_>) = created
                .drain(..)
                .partition(|(owner, _)| check.is_none_or(|c| c == owner));
            *created = rest;
            mine.into_iter().map(|(_, t)| t).collect()
        };
        let namespaces: Vec<String> = mine
            .iter()
            .filter_map(|t| match t {
                Tracked::Namespace(ns) => Some(ns.clone()),
                Tracked::Cluster(_) => None,
            })
            .collect();
        let mut objects: Vec<ClusterObject> = mine
            .into_iter()
            .filter_map(|t| match t {
                Tracked::Cluster(o) => Some(o),
                Tracked::Namespace(_) => None,
            })
            .collect();
        if self.keep {
            let delete = format!("`scs-kaas-check delete --run-id {}`", self.run_id);
            return namespaces
                .iter()
                .map(|ns| format!("kept namespace {ns} (--keep); delete it with {delete}"))
                .chain(
                    objects
                        .iter()
                        .map(|o| format!("kept {o} (--keep); delete it with {delete}")),
                )
                .collect();
        }
        let mut lines: Vec<String> =
            futures::future::join_all(namespaces.iter().map(|ns| self.delete_namespace(ns, false)))
                .await
                .into_iter()
                .flatten()
                .collect();
        // Volumes whose names the check never learned (it stopped before the claim bound).
        if !namespaces.is_empty() {
            match self
                .claimed_volumes(|ns| namespaces.iter().any(|n| n == ns))
                .await
            {
                Ok(found) => {
                    for pv in found {
                        let object = ClusterObject::PersistentVolume(pv);
                        if !objects.contains(&object) {
                            objects.push(object);
                        }
                    }
                }
                Err(e) => lines.push(format!("CAUTION: {e}")),
            }
        }
        let results =
            futures::future::join_all(objects.iter().map(|o| self.delete_object(o))).await;
        lines.extend(results);
        lines
    }

    /// PersistentVolumes whose claim lives (or lived) in a namespace `ours` accepts.
    async fn claimed_volumes(&self, ours: impl Fn(&str) -> bool) -> Result<Vec<String>, ApiError> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let list = self
            .call("list persistentvolumes", api.list(&ListParams::default()))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter(|pv| {
                pv.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .and_then(|c| c.namespace.as_deref())
                    .is_some_and(&ours)
            })
            .filter_map(|pv| pv.metadata.name)
            .collect())
    }

    async fn delete_object(&self, object: &ClusterObject) -> String {
        match object {
            ClusterObject::PersistentVolume(name) => self.delete_volume(name).await,
            ClusterObject::ClusterRole(name) => {
                self.delete_plain::<ClusterRole>(name, "ClusterRole").await
            }
            ClusterObject::ClusterRoleBinding(name) => {
                self.delete_plain::<ClusterRoleBinding>(name, "ClusterRoleBinding")
                    .await
            }
        }
    }

    /// Deletes a cluster-scoped object that needs no waiting (RBAC).
    async fn delete_plain<K>(&self, name: &str, kind: &str) -> String
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(self.client.clone());
        match self
            .call(
                &format!("delete {} {name}", kind.to_lowercase()),
                api.delete(name, &DeleteParams::background()),
            )
            .await
        {
            Ok(_) => format!("deleted {kind} {name}"),
            Err(e) if e.is_not_found() => format!("{kind} {name} was already gone"),
            Err(e) => format!("CAUTION: {e}"),
        }
    }

    /// Deletes the ClusterRoles and ClusterRoleBindings of in-cluster runs (of one run, or
    /// of every run), found by the run labels. Part of `scs-kaas-check delete`, of the
    /// cleanup of `run --in-cluster`, and of the safety net of runs with upstream e2e
    /// runs. `with_runner`: also the in-cluster runner's own ClusterRole/Binding (label
    /// `scs-kaas-check/check=in-cluster`); a run inside the cluster must spare them.
    pub async fn sweep_rbac(
        &self,
        run_id: Option<&str>,
        with_runner: bool,
    ) -> Result<Vec<String>, ApiError> {
        let mut selector = run_selector(run_id);
        if !with_runner {
            // The in-cluster runner's own rights stay until its outer process ends.
            selector.push_str(&format!(",{CHECK_KEY}!={RUNNER_CHECK}"));
        }
        let params = ListParams::default().labels(&selector);
        let bindings: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        let roles: Api<ClusterRole> = Api::all(self.client.clone());
        let mut objects: Vec<ClusterObject> = self
            .call("list clusterrolebindings of runs", bindings.list(&params))
            .await?
            .items
            .into_iter()
            .filter_map(|b| b.metadata.name)
            .map(ClusterObject::ClusterRoleBinding)
            .collect();
        objects.extend(
            self.call("list clusterroles of runs", roles.list(&params))
                .await?
                .items
                .into_iter()
                .filter_map(|r| r.metadata.name)
                .map(ClusterObject::ClusterRole),
        );
        let mut lines = Vec::new();
        for object in &objects {
            lines.push(self.delete_object(object).await);
        }
        Ok(lines)
    }

    /// Removes a PersistentVolume whose claim is gone (one whose claim still exists is left
    /// alone, with a warning). With reclaim policy `Delete` its
    /// provisioner deletes it (and the backing volume); this waits for that and deletes the
    /// object itself only when the provisioner does not. With `Retain` nothing would ever
    /// delete it: the object is deleted here, and the line says that the backing volume
    /// stays in the storage backend.
    async fn delete_volume(&self, name: &str) -> String {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let pv = match self
            .call(&format!("read persistentvolume {name}"), api.get_opt(name))
            .await
        {
            Ok(Some(pv)) => pv,
            Ok(None) => return format!("PersistentVolume {name} was already gone"),
            Err(e) => return format!("CAUTION: {e}"),
        };
        let spec = pv.spec.clone().unwrap_or_default();
        // A volume whose claim still exists is bound: deleting it would pull the storage
        // from under the claim (and skip the provisioner's cleanup). Never.
        if let Some(claim) = &spec.claim_ref
            && let (Some(ns), Some(claim_name)) = (&claim.namespace, &claim.name)
        {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
            match self
                .call(
                    &format!("read persistentvolumeclaim {ns}/{claim_name}"),
                    claims.get_opt(claim_name),
                )
                .await
            {
                Ok(Some(pvc)) if claim.uid.is_none() || pvc.metadata.uid == claim.uid => {
                    return format!(
                        "CAUTION: PersistentVolume {name} is still bound to claim \
                         {ns}/{claim_name}; not deleted (a bound volume is never deleted): once \
                         namespace {ns} is gone, run `scs-kaas-check delete`"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    return format!(
                        "CAUTION: PersistentVolume {name} not deleted: cannot tell whether its \
                         claim still exists ({e})"
                    );
                }
            }
        }
        let policy = spec
            .persistent_volume_reclaim_policy
            .clone()
            .unwrap_or_else(|| "Delete".into());
        if policy == "Delete"
            && wait::until_deleted(&api, name, VOLUME_GONE_TIMEOUT)
                .await
                .is_ok()
        {
            return format!(
                "PersistentVolume {name} was deleted by its provisioner (reclaim policy Delete)"
            );
        }
        let handle = spec
            .csi
            .as_ref()
            .map(|c| format!("{} volume {}", c.driver, c.volume_handle))
            .or_else(|| {
                spec.host_path
                    .as_ref()
                    .map(|h| format!("host path {}", h.path))
            })
            .or_else(|| {
                spec.local
                    .as_ref()
                    .map(|l| format!("local path {}", l.path))
            })
            .unwrap_or_else(|| "backing volume".into());
        match self
            .call(
                &format!("delete persistentvolume {name}"),
                api.delete(name, &DeleteParams::background()),
            )
            .await
        {
            Ok(_) if policy == "Retain" => format!(
                "deleted PersistentVolume {name} (reclaim policy Retain: Kubernetes does not \
                 delete the {handle} in the storage backend; remove it there)"
            ),
            Ok(_) => format!(
                "CAUTION: PersistentVolume {name} (reclaim policy {policy}) was not removed by \
                 its provisioner within {}; deleted the object, the {handle} may remain",
                errors::human_duration(VOLUME_GONE_TIMEOUT)
            ),
            Err(e) if e.is_not_found() => format!("PersistentVolume {name} was already gone"),
            Err(e) => format!("CAUTION: {e}"),
        }
    }

    /// Deletes namespace `name` and waits until it is gone. `terminating`: it was already
    /// being deleted when it was listed. The API server answers the delete of a
    /// terminating namespace with the namespace (v1.37: its finalizers are still removing
    /// the content) or, in older releases, with 409 Conflict; either is "already going",
    /// and the wait is the same.
    async fn delete_namespace(&self, name: &str, terminating: bool) -> Option<String> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let mut already = terminating;
        match self
            .call(
                &format!("delete namespace {name}"),
                api.delete(name, &DeleteParams::background()),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                return Some(format!("namespace {name} was already gone"));
            }
            Err(e) if e.code == Some(409) => already = true,
            Err(e) => return Some(format!("CAUTION: {e}")),
        }
        match wait::until_deleted(&api, name, NAMESPACE_GONE_TIMEOUT).await {
            Ok(()) if already => Some(format!(
                "namespace {name} was already being deleted; it is gone now"
            )),
            Ok(()) => Some(format!("deleted namespace {name}")),
            Err(e) => Some(format!(
                "CAUTION: namespace {name} is still terminating ({e}); the cluster will finish removing it"
            )),
        }
    }

    /// Deletes every namespace carrying the run labels (of one run, or of all runs).
    /// The safety net at the end of a run and the body of `scs-kaas-check delete`.
    /// `with_runner`: also the namespace of an in-cluster run's Job (label
    /// `scs-kaas-check/check=in-cluster`); a run inside that namespace must spare it.
    pub async fn sweep(
        &self,
        run_id: Option<&str>,
        with_runner: bool,
    ) -> Result<Vec<String>, ApiError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let mut selector = run_selector(run_id);
        if !with_runner {
            selector.push_str(&format!(",{CHECK_KEY}!={RUNNER_CHECK}"));
        }
        let list = self
            .call(
                "list namespaces of earlier runs",
                api.list(&ListParams::default().labels(&selector)),
            )
            .await?;
        let names: Vec<(String, bool)> = list
            .items
            .into_iter()
            .filter_map(|ns| {
                let terminating = ns.metadata.deletion_timestamp.is_some();
                ns.metadata.name.map(|name| (name, terminating))
            })
            .collect();
        let results = futures::future::join_all(
            names
                .iter()
                .map(|(ns, terminating)| self.delete_namespace(ns, *terminating)),
        )
        .await;
        let mut lines: Vec<String> = results.into_iter().flatten().collect();
        // Volumes claimed from a run's namespace (e.g. reclaim policy Retain) outlive it.
        let prefix = run_id.map(|id| format!("skc-{id}-"));
        let ours = |ns: &str| match &prefix {
            Some(p) => ns.starts_with(p.as_str()),
            None => is_run_namespace(ns),
        };
        match self.claimed_volumes(ours).await {
            Ok(volumes) => {
                let objects: Vec<ClusterObject> = volumes
                    .into_iter()
                    .map(ClusterObject::PersistentVolume)
                    .collect();
                let results =
                    futures::future::join_all(objects.iter().map(|o| self.delete_object(o))).await;
                lines.extend(results);
            }
            Err(e) => lines.push(format!(
                "CAUTION: cannot look for PersistentVolumes left by runs ({e})"
            )),
        }
        Ok(lines)
    }
}

/// A namespace of run `run_id` for `check`: `skc-<run id>-<purpose>`, with the run labels
/// and enforcing the `restricted` Pod Security profile.
pub fn namespace_object(run_id: &str, check: &str, purpose: &str) -> Namespace {
    let name = namespace_name(run_id, purpose);
    let mut labels = run_labels(run_id, check);
    labels.insert("kubernetes.io/metadata.name".into(), name.clone());
    for mode in ["enforce", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".into(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The Secret holding the run's registry credentials in `namespace` (type
/// `kubernetes.io/dockerconfigjson`, named [`workload::PULL_SECRET_NAME`], run labels).
pub fn pull_secret_object(run_id: &str, check: &str, namespace: &str, config: &[u8]) -> Secret {
    Secret {
        metadata: objects::labelled(workload::PULL_SECRET_NAME, Some(namespace), run_id, check),
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            k8s_openapi::ByteString(config.to_vec()),
        )])),
        ..Default::default()
    }
}

/// Whether `name` has the shape of a scratch namespace: `skc-<8 hex digits>-...`.
pub fn is_run_namespace(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("skc-") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() > 9
        && b[..8]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        && b[8] == b'-'
}

/// `skc-<run id>-<purpose>`, a valid DNS label of at most 63 characters.
pub fn namespace_name(run_id: &str, purpose: &str) -> String {
    let clean: String = purpose
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("skc-{run_id}-{clean}");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// A fresh run id: 8 lowercase hex digits.
pub fn new_run_id() -> String {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = (nanos ^ std::process::id()).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_dns_labels() {
        assert_eq!(
            namespace_name("0a1b2c3d", "node-anti-affinity"),
            "skc-0a1b2c3d-node-anti-affinity"
        );
        let long = namespace_name("0a1b2c3d", &"x_".repeat(60));
        assert!(long.len() <= 63);
        assert!(!long.ends_with('-'));
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn run_namespaces_are_recognised() {
        assert!(is_run_namespace("skc-0a1b2c3d-storage"));
        assert!(is_run_namespace(&namespace_name(&new_run_id(), "x")));
        assert!(!is_run_namespace("skc-0A1B2C3D-storage"));
        assert!(!is_run_namespace("skc-0a1b2c3-storage"));
        assert!(!is_run_namespace("skc-0a1b2c3d-"));
        assert!(!is_run_namespace("default"));
    }

    #[test]
    fn run_ids_are_hex() {
        let id = new_run_id();
        assert_eq!(id.len(), 8);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn selectors() {
        assert_eq!(
            run_selector(Some("ab")),
            "app.kubernetes.io/managed-by=scs-kaas-check,scs-kaas-check/run-id=ab"
        );
        assert_eq!(
            run_selector(None),
            "app.kubernetes.io/managed-by=scs-kaas-check"
        );
    }
}
