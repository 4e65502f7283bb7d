//! Configuration types: [`ClusterSpec`], [`NodeSpec`], [`Fault`], [`ApiGroupSpec`] and the
//! program hook types ([`PodContext`], [`ProgramResult`]).

use super::store::SharedStore;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the simulated cluster looks like at start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Served at `/version` as `gitVersion`; `major`/`minor` are derived.
    pub git_version: String,
    /// The only accepted bearer token.
    pub token: String,
    /// Created as Node objects at start.
    pub nodes: Vec<NodeSpec>,
    /// Full StorageClass JSON objects created at start.
    pub storage_classes: Vec<Value>,
    /// `(verb, resource)` pairs answered with 403; `"*"` matches any verb/resource and a
    /// resource may name a subresource (`"pods/log"`).
    pub deny: Vec<(String, String)>,
    pub faults: Vec<Fault>,
    /// A scheduled pod becomes Running after this.
    pub pod_start_delay: Duration,
    /// Pods using these images never start (ErrImagePull / ImagePullBackOff).
    pub unpullable_images: Vec<String>,
    /// `(image, n)`: the first `n` pulls of the image for each pod fail with a registry's
    /// `429 Too Many Requests` (ErrImagePull, then ImagePullBackOff while the kubelet backs
    /// off); the next pull succeeds.
    pub flaky_images: Vec<(String, u32)>,
    /// A deleted namespace stays `Terminating` this long (0 = vanishes immediately).
    pub namespace_termination: Duration,
    /// Extra API groups (served in discovery and with generic storage).
    pub extra_api_groups: Vec<ApiGroupSpec>,
    /// External volume provisioners running in the cluster (see `storage.rs`); claims of
    /// classes whose provisioner is not listed are never provisioned.
    pub provisioners: Vec<super::storage::ProvisionerSpec>,
    /// What the network plugin enforces (default: all of NetworkPolicy).
    pub network: super::network::NetworkProfile,
    /// The cloud controller's load balancers for `type: LoadBalancer` Services
    /// (see `loadbalancer.rs`); `None`: no cloud controller, such Services stay pending.
    pub cloud_lb: Option<super::loadbalancer::CloudLb>,
    /// A path prefix the API is served under, as behind Rancher's proxy
    /// (`/k8s/clusters/c-xxxxx`); requests without it get 404. Empty: none.
    pub path_prefix: String,
    /// Admission refuses every pod with this reason (what a ResourceQuota, Pod Security or
    /// a validating webhook would say, e.g. `exceeded quota: pods, requested: pods=1, used:
    /// pods=0, limited: pods=0`): a `POST` of a pod gets 403 `pods "NAME" is forbidden:
    /// <reason>`; a Deployment's ReplicaSet records `Warning FailedCreate` (`Error creating:
    /// ...`) and the Deployment gets the condition `ReplicaFailure`, as upstream.
    pub pod_admission: Option<String>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        let zones = ["zone-1", "zone-2", "zone-3"];
        let mut nodes = Vec::new();
        for (i, z) in zones.iter().enumerate() {
            nodes.push(
                NodeSpec::control_plane(&format!("control-plane-{}", i + 1))
                    .zone(z)
                    .region("region-1"),
            );
        }
        for (i, z) in zones.iter().enumerate() {
            nodes.push(
                NodeSpec::worker(&format!("worker-{}", i + 1))
                    .zone(z)
                    .region("region-1"),
            );
        }
        ClusterSpec {
            git_version: "v1.34.2".into(),
            token: "sim-token".into(),
            nodes,
            storage_classes: vec![],
            deny: vec![],
            faults: vec![],
            pod_start_delay: Duration::from_millis(200),
            unpullable_images: vec![],
            flaky_images: vec![],
            namespace_termination: Duration::ZERO,
            extra_api_groups: vec![],
            provisioners: vec![],
            network: Default::default(),
            cloud_lb: None,
            path_prefix: String::new(),
            pod_admission: None,
        }
    }
}

/// An injected failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Every request whose path starts with the prefix gets a `Status` error with that code.
    Status { path_prefix: String, code: u16 },
    /// Accept the request and never answer.
    Hang { path_prefix: String },
    /// Like `Status`, with this `message` in the Status object.
    StatusMessage {
        path_prefix: String,
        code: u16,
        message: String,
    },
}

impl Fault {
    pub fn path_prefix(&self) -> &str {
        match self {
            Fault::Status { path_prefix, .. }
            | Fault::Hang { path_prefix }
            | Fault::StatusMessage { path_prefix, .. } => path_prefix,
        }
    }
}

/// A node created at start.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `(key, effect)`; the taint value is empty.
    pub taints: Vec<(String, String)>,
    pub unschedulable: bool,
}

impl NodeSpec {
    /// Labels `kubernetes.io/hostname=<name>`, `kubernetes.io/os=linux`, `kubernetes.io/arch=amd64`.
    pub fn worker(name: &str) -> Self {
        let mut labels = BTreeMap::new();
        labels.insert("kubernetes.io/hostname".into(), name.into());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("kubernetes.io/arch".into(), "amd64".into());
        NodeSpec {
            name: name.into(),
            labels,
            taints: vec![],
            unschedulable: false,
        }
    }

    /// A worker plus `node-role.kubernetes.io/control-plane=""` and the matching NoSchedule taint.
    pub fn control_plane(name: &str) -> Self {
        NodeSpec::worker(name)
            .label("node-role.kubernetes.io/control-plane", "")
            .taint("node-role.kubernetes.io/control-plane", "NoSchedule")
    }

    /// `topology.kubernetes.io/zone`.
    pub fn zone(self, zone: &str) -> Self {
        self.label("topology.kubernetes.io/zone", zone)
    }

    /// `topology.kubernetes.io/region`.
    pub fn region(self, region: &str) -> Self {
        self.label("topology.kubernetes.io/region", region)
    }

    /// `topology.scs.community/host-id`.
    pub fn host(self, host_id: &str) -> Self {
        self.label("topology.scs.community/host-id", host_id)
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// `spec.unschedulable: true` (plus the `node.kubernetes.io/unschedulable` taint, as real clusters do).
    pub fn cordoned(mut self) -> Self {
        self.unschedulable = true;
        self
    }

    pub fn taint(mut self, key: &str, effect: &str) -> Self {
        self.taints.push((key.into(), effect.into()));
        self
    }
}

/// A resource in an extra API group.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResourceSpec {
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
}

/// An extra API group/version for discovery (its resources also get generic storage).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiGroupSpec {
    pub group: String,
    pub version: String,
    pub resources: Vec<ApiResourceSpec>,
}

impl ApiGroupSpec {
    pub fn new(group: &str, version: &str) -> Self {
        ApiGroupSpec {
            group: group.into(),
            version: version.into(),
            resources: vec![],
        }
    }

    pub fn resource(mut self, plural: &str, kind: &str, namespaced: bool) -> Self {
        self.resources.push(ApiResourceSpec {
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
        });
        self
    }
}

/// What a registered program sees when a container with a matching image starts.
#[derive(Clone)]
pub struct PodContext {
    pub namespace: String,
    pub pod_name: String,
    pub node_name: String,
    pub container_name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// The full pod object at start time.
    pub pod: Value,
    /// Access to the cluster state (e.g. to look up services); do not hold it long.
    pub store: SharedStore,
}

impl PodContext {
    /// `command` followed by `args` (what would be exec'd).
    pub fn argv(&self) -> Vec<String> {
        self.command
            .iter()
            .chain(self.args.iter())
            .cloned()
            .collect()
    }

    /// The script of a `sh -c <script>` invocation, if that is what the container runs.
    pub fn shell_script(&self) -> Option<String> {
        let argv = self.argv();
        let pos = argv.iter().position(|a| a == "-c")?;
        let shell = argv.first()?;
        (shell.ends_with("sh") && pos >= 1)
            .then(|| argv.get(pos + 1).cloned())
            .flatten()
    }
}

/// The outcome of a program run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProgramResult {
    pub exit_code: i32,
    pub log: String,
}

impl ProgramResult {
    pub fn ok(log: impl Into<String>) -> Self {
        ProgramResult {
            exit_code: 0,
            log: log.into(),
        }
    }

    pub fn fail(exit_code: i32, log: impl Into<String>) -> Self {
        ProgramResult {
            exit_code,
            log: log.into(),
        }
    }
}

/// A registered program, see [`super::SimCluster::register_program`].
pub type Program = std::sync::Arc<dyn Fn(&PodContext) -> ProgramResult + Send + Sync>;
