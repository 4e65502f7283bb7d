//! A simulated Kubernetes API server for integration tests.
//!
//! [`SimCluster::start`] runs an HTTPS server on `127.0.0.1` (random port) with its own CA,
//! on its own thread and tokio runtime, plus in-process controllers (scheduler, kubelet,
//! deployment and job controllers, garbage collection). Dropping the `SimCluster` stops it.
//!
//! This crate root is meant to be copied to `tests/support/mod.rs`; every test binary uses
//! only part of the API, hence the blanket `dead_code` allowance.
//!
//! ```text
//! #[test]
//! fn reports_version() {
//!     let sim = SimCluster::start(ClusterSpec::default());
//!     let out = std::process::Command::new(env!("CARGO_BIN_EXE_scs-kaas-check"))
//!         .env("KUBECONFIG", sim.kubeconfig_path())
//!         .output()
//!         .unwrap();
//!     assert!(out.status.success());
//!     assert!(sim.requests().iter().any(|r| r.path == "/version"));
//! }
//! ```
//!
//! Semantics and deliberate simplifications (see the individual modules for details):
//! - Only JSON bodies; protobuf/CBOR requests get 415 (kube-rs is fine; `kubectl create`
//!   sends protobuf for built-in types and therefore fails). No server-side Table output.
//! - Faults are checked before authentication; every request is recorded in the log.
//! - Service accounts (the in-cluster runs) are authorized by RBAC like on a real server
//!   (`rbac.rs`); the kubeconfig's user is an administrator, limited only by `deny`.
//! - Forbidden messages follow the real server: on `create` the name is unknown to the
//!   authorizer, so the message is `namespaces is forbidden: User "sim-user" cannot create ...`.
//! - Creating in a Terminating namespace gives 403 Forbidden (like the real server);
//!   creating in a missing namespace gives 404.
//! - Strategic merge patch and apply patch are treated as JSON merge patch; JSON patch
//!   (RFC 6902) is supported; `dryRun=All` is honoured; `limit`/`continue` are ignored.
//! - Deletion is immediate (no graceful termination, no finalizers) except for namespaces,
//!   which stay `Terminating` for `namespace_termination` (deleting one again meanwhile
//!   answers 409 Conflict, like the namespace registry); dependents are garbage-collected
//!   through `ownerReferences`.
//! - ConfigMaps and Secrets over 1 MiB of data are refused with 422 (the API server's
//!   `core.MaxSecretSize` validation).
//! - Deployments own their pods directly (no ReplicaSets, no rolling updates on template
//!   change; a ReplicaSet object appears only to carry `FailedCreate` when admission refuses
//!   pods, see `ClusterSpec::pod_admission`); jobs run one pod at a time until
//!   `completions` succeed or `backoffLimit` fails.
#![allow(dead_code)]

pub mod binary;
pub mod conformance;
mod controllers;
pub mod idle_proxy;
pub mod incluster;
pub mod loadbalancer;
mod network;
pub mod proxy;
mod rbac;
mod resources;
pub mod scs;
mod selectors;
mod server;
mod spec;
pub mod storage;
mod store;
pub mod testbed;
mod tls;
mod util;

// Re-exports: a test binary including this as `mod support;` may not use all of them.
#[allow(unused_imports)]
pub use network::{Blocked, NetworkProfile};
#[allow(unused_imports)]
pub use resources::ResourceDef;
#[allow(unused_imports)]
pub use selectors::{FieldSelector, LabelSelector};
#[allow(unused_imports)]
pub use server::RequestRecord;
#[allow(unused_imports)]
pub use spec::{
    ApiGroupSpec, ApiResourceSpec, ClusterSpec, Fault, NodeSpec, PodContext, Program, ProgramResult,
};
#[allow(unused_imports)]
pub use store::{EventReceiver, EventType, SharedStore, Store, StoreEvent};
#[allow(unused_imports)]
pub use util::ApiError;

/// kaas-networking-check's policy scenarios after the baseline, in the order it runs them
/// (their requirement ids).
pub const NETWORK_POLICY_SCENARIOS: [&str; 8] = [
    "default-deny-ingress",
    "ingress-pod-selector",
    "ingress-namespace-selector",
    "ingress-pod-and-namespace-selector",
    "ingress-port",
    "default-deny-egress",
    "egress-pod-selector",
    "egress-ipblock-except",
];

use serde_json::{Value, json};
use server::{Dynamic, Shared};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use util::Background;

/// A running simulated cluster. Dropping it shuts the server down.
pub struct SimCluster {
    /// Stops the server first when dropped.
    _server: Background,
    shared: Arc<Shared>,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

fn node_object(spec: &NodeSpec, index: usize, kubelet_version: &str) -> Value {
    let mut taints: Vec<Value> = spec
        .taints
        .iter()
        .map(|(k, e)| json!({"key": k, "effect": e}))
        .collect();
    if spec.unschedulable {
        taints.push(json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": util::now_rfc3339()}));
    }
    let mut node_spec = json!({"podCIDR": format!("10.244.{index}.0/24"), "podCIDRs": [format!("10.244.{index}.0/24")]});
    if !taints.is_empty() {
        node_spec["taints"] = taints.into();
    }
    if spec.unschedulable {
        node_spec["unschedulable"] = true.into();
    }
    let now = util::now_rfc3339();
    let capacity = json!({"cpu": "4", "memory": "16393216Ki", "pods": "110", "ephemeral-storage": "102687672Ki"});
    json!({
        "metadata": {"name": spec.name, "labels": spec.labels},
        "spec": node_spec,
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now},
            ],
            "addresses": [
                {"type": "InternalIP", "address": format!("10.0.0.{}", 10 + index)},
                {"type": "Hostname", "address": spec.name},
            ],
            "nodeInfo": {
                "machineID": format!("{:032x}", index + 1),
                "systemUUID": util::random_uuid(),
                "bootID": util::random_uuid(),
                "kernelVersion": "6.8.0-sim",
                "osImage": "Ubuntu 24.04 LTS",
                "containerRuntimeVersion": "containerd://1.7.27",
                "kubeletVersion": kubelet_version,
                "kubeProxyVersion": kubelet_version,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        },
    })
}

fn seed(store: &mut Store, spec: &ClusterSpec, addr: &std::net::SocketAddr) {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        store
            .create("namespaces", json!({"metadata": {"name": ns}}))
            .expect("seed namespace");
    }
    for (i, n) in spec.nodes.iter().enumerate() {
        store
            .create("nodes", node_object(n, i, &spec.git_version))
            .expect("seed node");
    }
    for sc in &spec.storage_classes {
        store
            .create("storageclasses", sc.clone())
            .expect("seed storage class");
        // A class may be older than the cluster's start (e.g. to order several defaults).
        if let Some(at) = sc["metadata"]["creationTimestamp"].as_str() {
            store.set_created("storageclasses", "", util::name_of(sc), at);
        }
    }
    store
        .create(
            "services",
            json!({
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": addr.port()}]},
            }),
        )
        .expect("seed kubernetes service");
}

impl SimCluster {
    /// Start the simulator. Panics if setup fails.
    pub fn start(spec: ClusterSpec) -> SimCluster {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pki = tls::generate();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("sim-apiserver")
            .build()
            .expect("build tokio runtime");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        std_listener.set_nonblocking(true).expect("set_nonblocking");
        let addr = std_listener.local_addr().expect("local_addr");

        let resources = Arc::new(resources::all(&spec.extra_api_groups));
        let mut store = Store::new(resources);
        seed(&mut store, &spec, &addr);
        let shared = Arc::new(Shared {
            store: SharedStore::new(store),
            dynamic: Mutex::new(Dynamic {
                faults: spec.faults.clone(),
                git_version: spec.git_version.clone(),
            }),
            spec,
            requests: Mutex::new(Vec::new()),
            programs: Mutex::new(Vec::new()),
            addr,
            ca_pem: pki.ca_pem.clone(),
            network: network::Plugin::default(),
        });

        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(pki.server_cert_der)],
            rustls::pki_types::PrivateKeyDer::Pkcs8(pki.server_key_der.into()),
        )
        .expect("TLS server config");
        let mut server_config = server_config;
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));

        let (tx, rx) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sim-cluster".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    tokio::spawn(controllers::run(thread_shared.clone()));
                    tokio::spawn(network::run(thread_shared.clone()));
                    tokio::spawn(loadbalancer::run(thread_shared.clone()));
                    let _ = ready_tx.send(Ok(()));
                    serve(listener, acceptor, thread_shared, rx).await;
                });
                rt.shutdown_background();
            })
            .expect("spawn simulator thread");
        ready_rx
            .recv()
            .expect("simulator thread died")
            .expect("simulator listener");

        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            tls::kubeconfig_yaml(
                &format!("https://{addr}"),
                &shared.ca_pem,
                &shared.spec.token,
            ),
        )
        .expect("write kubeconfig");
        SimCluster {
            shared,
            dir,
            kubeconfig,
            _server: Background::new(tx, thread),
        }
    }

    /// The kubeconfig for the default user (valid token, correct CA).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    /// Write another kubeconfig into the simulator's tempdir (e.g. wrong token, foreign CA).
    pub fn write_kubeconfig(&self, name: &str, token: &str, ca_pem: Option<&str>) -> PathBuf {
        let path = self.dir.path().join(name);
        let ca = ca_pem.unwrap_or(&self.shared.ca_pem);
        std::fs::write(&path, tls::kubeconfig_yaml(&self.url(), ca, token))
            .expect("write kubeconfig");
        path
    }

    /// A kubeconfig for the default user that reaches the API server at `server` (e.g. a
    /// proxy in front of the simulator).
    pub fn write_kubeconfig_for(&self, name: &str, server: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(
            &path,
            tls::kubeconfig_yaml(server, &self.shared.ca_pem, &self.shared.spec.token),
        )
        .expect("write kubeconfig");
        path
    }

    /// A CA certificate (PEM) that did not sign the server certificate.
    pub fn foreign_ca_pem() -> String {
        tls::foreign_ca_pem()
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.shared.addr)
    }

    pub fn ca_pem(&self) -> String {
        self.shared.ca_pem.clone()
    }

    pub fn token(&self) -> String {
        self.shared.spec.token.clone()
    }

    /// The tempdir owned by the simulator (kubeconfigs live here).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Current objects of a resource (plural) over all namespaces.
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        self.shared.store.lock().list(resource, None)
    }

    /// One object (namespace `""` for cluster-scoped resources).
    pub fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .store
            .lock()
            .get(resource, namespace, name)
            .cloned()
    }

    /// Starts deleting namespace `name` as an earlier `DELETE` would have (it is
    /// `Terminating` at once, its finalizers still at work) and removes it with its content
    /// `after` that long.
    pub fn terminate_namespace(&self, name: &str, after: std::time::Duration) {
        self.shared.store.with(|s| {
            s.modify("namespaces", "", name, |o| {
                util::obj_mut(o, "metadata")
                    .insert("deletionTimestamp".into(), util::now_rfc3339().into());
                util::obj_mut(o, "status").insert("phase".into(), "Terminating".into());
            })
        });
        let store = self.shared.store.clone();
        let name = name.to_string();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            store.lock().purge_namespace(&name);
        });
    }

    /// Events (core/v1) about the object with this name in this namespace.
    pub fn events_for(&self, namespace: &str, name: &str) -> Vec<Value> {
        self.shared
            .store
            .lock()
            .iter("events")
            .filter(|e| {
                util::str_at(e, "involvedObject.name") == name
                    && util::str_at(e, "involvedObject.namespace") == namespace
            })
            .cloned()
            .collect()
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn clear_requests(&self) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn set_faults(&self, faults: Vec<Fault>) {
        self.shared.dynamic().faults = faults;
    }

    pub fn set_git_version(&self, v: &str) {
        self.shared.dynamic().git_version = v.to_string();
    }

    /// Direct access to the store; changes are seen by watchers and controllers.
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        self.shared.store.with(f)
    }

    /// A cloneable handle to the store (e.g. for use from other threads).
    pub fn store(&self) -> SharedStore {
        self.shared.store.clone()
    }

    /// Register a program for containers whose image starts with `image_prefix` (the longest
    /// matching prefix wins). When such a container starts, the program runs (on a blocking
    /// thread); its exit code decides the container's terminated state and, when every
    /// container of the pod has a program, the pod phase (Succeeded/Failed). The
    /// concatenated logs are served at `pods/{name}/log`.
    pub fn register_program(
        &self,
        image_prefix: &str,
        program: impl Fn(&PodContext) -> ProgramResult + Send + Sync + 'static,
    ) {
        self.shared
            .programs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((image_prefix.to_string(), Arc::new(program)));
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper::service::service_fn(move |req| server::handle(shared.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
                });
            }
        }
    }
}
