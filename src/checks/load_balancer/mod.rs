//! Load balancers (draft standard): what the two checks share.
//!
//! `lb-service-check` ([`service`]): a Service `type: LoadBalancer` with every optional
//! field unset, in front of an echo backend (agnhost `netexec`), must get an external
//! address within `--lb-timeout` and answer HTTP from where the suite runs (or, with
//! `--lb-probe-from cluster`, from a pod inside the cluster).
//!
//! `lb-ip-preservation-check` (informational, [`ip_preservation`]): for
//! `externalTrafficPolicy: Cluster` and `Local` (and, with `--lb-annotation`, both again with
//! those annotations and a backend that speaks the PROXY protocol) it records which source
//! address the backend sees and classifies it: the client's own address, a node address
//! (SNAT by kube-proxy), or the load balancer's / another address (a proxying load balancer).
//!
//! This file: the check definitions, the backends (Deployment + Service), waiting for an
//! address and for ready backends, and releasing the Services. The HTTP probes are in
//! [`probe`].

pub mod ip_preservation;
pub mod probe;
pub mod service;

use super::{CheckContext, CheckDef};
use crate::cluster::errors::human_duration;
use crate::cluster::wait;
use crate::cluster::workload::{self, APP_KEY, restricted_container, restricted_pod_spec};
use crate::cluster::{admission, pods, run_labels};
use crate::outcome::{CheckOutcome, Requirement};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, ContainerPort, EmptyDirVolumeSource, Node, Pod, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, LogParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const SERVICE_CHECK: CheckDef = CheckDef {
    name: "lb-service",
    summary: "a plain LoadBalancer Service gets an address and answers HTTP (draft)",
    writes: true,
    exclusive: false,
    uses_e2e: super::no_e2e,
    run: |ctx| Box::pin(service::run(ctx)),
};

pub const IP_PRESERVATION_CHECK: CheckDef = CheckDef {
    name: "lb-ip-preservation",
    summary: "which source address backends behind a LoadBalancer see (draft, informational)",
    writes: true,
    exclusive: false,
    uses_e2e: super::no_e2e,
    run: |ctx| Box::pin(ip_preservation::run(ctx)),
};

/// nginx (unprivileged build, listens on 8080, runs as non-root) configured by a ConfigMap
/// to accept the PROXY protocol (`listen ... proxy_protocol`) and answer with
/// `$proxy_protocol_addr`.
pub const DEFAULT_PROXY_PROTOCOL_IMAGE: &str = "docker.io/nginxinc/nginx-unprivileged:1.27-alpine";

/// The port the Services expose (what a browser would use).
pub const SERVICE_PORT: i32 = 80;
/// The port the backends listen on.
pub const BACKEND_PORT: i32 = 8080;
const REPLICAS: i32 = 2;

/// The nginx server block of the PROXY protocol backend. It refuses connections without a
/// PROXY header (nginx closes them) and answers the addresses (and ports) it saw. It listens
/// on IPv6 too where the pods have IPv6 (`ipv6`): nginx cannot bind `[::]` in a pod whose
/// kernel has no IPv6, so the listener is added only when the cluster's pod network has it.
pub fn proxy_protocol_nginx_conf(ipv6: bool) -> String {
    format!(
        "server {{\n    listen 8080 proxy_protocol;\n{}    location / {{\n        default_type text/plain;\n        return 200 \"proxy_protocol_addr=$proxy_protocol_addr proxy_protocol_port=$proxy_protocol_port remote_addr=$remote_addr\\n\";\n    }}\n}}\n",
        if ipv6 {
            "    listen [::]:8080 proxy_protocol;\n"
        } else {
            ""
        }
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackendKind {
    /// agnhost netexec.
    Netexec,
    /// nginx with `listen ... proxy_protocol`; `ipv6`: on `[::]` too (the pods have IPv6).
    ProxyProtocol { ipv6: bool },
}

impl BackendKind {
    fn app(self) -> &'static str {
        match self {
            BackendKind::Netexec => "echo",
            BackendKind::ProxyProtocol { .. } => "proxy-echo",
        }
    }
    fn image(self, ctx: &CheckContext) -> String {
        match self {
            BackendKind::Netexec => ctx.options.workload.agnhost_image.clone(),
            BackendKind::ProxyProtocol { .. } => ctx.options.workload.proxy_protocol_image.clone(),
        }
    }
}

/// The external address of a LoadBalancer Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbAddress {
    /// IP or hostname, as `status.loadBalancer.ingress[0]` has it.
    pub host: String,
    /// `status.loadBalancer.ingress[0].ipMode` (`VIP`, `Proxy`; unset means `VIP`).
    pub ip_mode: Option<String>,
}

impl LbAddress {
    fn url(&self, path: &str) -> String {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => self.host.clone(),
        };
        format!("http://{host}:{SERVICE_PORT}{path}")
    }

    /// Whether traffic from inside the cluster to this address never reaches the load
    /// balancer: kube-proxy (and Cilium's replacement) route an ingress IP of `ipMode: VIP`
    /// (the default when unset) from pods and nodes straight to the endpoints
    /// (KEP-1860). A hostname, or `ipMode: Proxy`, goes through the load balancer.
    pub fn bypassed_in_cluster(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok() && self.ip_mode.as_deref() != Some("Proxy")
    }
}

/// The external address of a Service, if the cloud controller assigned one.
pub fn address_of(svc: &Service) -> Option<LbAddress> {
    svc.status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .iter()
        .find_map(|i| {
            let host =
                i.ip.clone()
                    .filter(|s| !s.is_empty())
                    .or_else(|| i.hostname.clone().filter(|s| !s.is_empty()))?;
            Some(LbAddress {
                host,
                ip_mode: i.ip_mode.clone(),
            })
        })
}

/// Where the load balancer probes are sent from (`--lb-probe-from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFrom {
    /// The machine running the suite.
    Suite,
    /// A pod inside the cluster.
    Cluster,
}

impl ProbeFrom {
    /// The names `--lb-probe-from` accepts, in the order of the variants.
    pub const NAMES: [&'static str; 2] = ["suite", "cluster"];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeFrom::Suite => "suite",
            ProbeFrom::Cluster => "cluster",
        }
    }
}

impl std::str::FromStr for ProbeFrom {
    type Err = String;

    /// One of [`ProbeFrom::NAMES`].
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "suite" => Ok(ProbeFrom::Suite),
            "cluster" => Ok(ProbeFrom::Cluster),
            other => Err(format!(
                "unknown probe vantage point {other:?} (use {})",
                ProbeFrom::NAMES.join(", ")
            )),
        }
    }
}

fn app_labels(ctx: &CheckContext, app: &str) -> BTreeMap<String, String> {
    let mut labels = run_labels(&ctx.cluster().run_id, &ctx.testcase.id);
    labels.insert(APP_KEY.into(), app.into());
    labels
}

async fn create_backend(
    ctx: &CheckContext,
    namespace: &str,
    kind: BackendKind,
) -> Result<(), String> {
    let cluster = ctx.cluster();
    let app = kind.app();
    let labels = app_labels(ctx, app);
    let mut container = restricted_container(app, &kind.image(ctx));
    container.ports = Some(vec![ContainerPort {
        container_port: BACKEND_PORT,
        name: Some("http".into()),
        ..Default::default()
    }]);
    let mut volumes = Vec::new();
    match kind {
        BackendKind::Netexec => {
            container.command = Some(vec!["/agnhost".into()]);
            container.args = Some(vec![
                "netexec".into(),
                format!("--http-port={BACKEND_PORT}"),
            ]);
        }
        BackendKind::ProxyProtocol { ipv6 } => {
            let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), namespace);
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(app.into()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(
                    "default.conf".to_string(),
                    proxy_protocol_nginx_conf(ipv6),
                )])),
                ..Default::default()
            };
            cluster
                .call(
                    &format!("create configmap {app}"),
                    configmaps.create(&PostParams::default(), &cm),
                )
                .await
                .map_err(|e| e.to_string())?;
            container.volume_mounts = Some(vec![
                VolumeMount {
                    name: "conf".into(),
                    mount_path: "/etc/nginx/conf.d".into(),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount {
                    name: "tmp".into(),
                    mount_path: "/tmp".into(),
                    ..Default::default()
                },
            ]);
            volumes = vec![
                Volume {
                    name: "conf".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: app.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "tmp".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                },
            ];
        }
    }
    let mut spec = restricted_pod_spec(vec![container]);
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    let deploy = workload::deployment(app, labels, REPLICAS, spec);
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    cluster
        .call(
            &format!("create deployment {app}"),
            deployments.create(&PostParams::default(), &deploy),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn create_service(
    ctx: &CheckContext,
    namespace: &str,
    name: &str,
    kind: BackendKind,
    policy: Option<&str>,
    annotations: &[(String, String)],
) -> Result<(), String> {
    let cluster = ctx.cluster();
    let svc = Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(run_labels(&cluster.run_id, &ctx.testcase.id)),
            annotations: (!annotations.is_empty()).then(|| annotations.iter().cloned().collect()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some(BTreeMap::from([(
                APP_KEY.to_string(),
                kind.app().to_string(),
            )])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::Int(BACKEND_PORT)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            external_traffic_policy: policy.map(String::from),
            ..Default::default()
        }),
        ..Default::default()
    };
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), namespace);
    cluster
        .call(
            &format!("create service {name}"),
            services.create(&PostParams::default(), &svc),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Watches the Service until it has an external address. The failure names the Service's
/// events (the cloud controller's errors).
async fn wait_address(
    ctx: &CheckContext,
    namespace: &str,
    name: &str,
) -> Result<(LbAddress, Duration), Requirement> {
    let cluster = ctx.cluster();
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), namespace);
    let deadline = ctx.options.workload.lb_timeout;
    let started = Instant::now();
    match wait::object(&services, name, deadline, |svc| svc.and_then(address_of)).await {
        Ok(address) => Ok((address, started.elapsed())),
        Err(wait::Timeout {
            refused: Some(e), ..
        }) => Err(Requirement::abort(
            "address-assigned",
            format!("cannot watch Service {name}: {e}"),
        )),
        Err(timeout) => {
            let events = wait::recent_events(
                &cluster.client,
                namespace,
                "Service",
                name,
                cluster.request_timeout,
            )
            .await;
            Err(Requirement::fail(
                "address-assigned",
                format!(
                    "Service {name} (type LoadBalancer) got no external address within {} ({timeout}); {}",
                    human_duration(deadline),
                    if events.is_empty() {
                        "no events about the Service (is a cloud controller or load balancer \
                         implementation installed?)"
                            .to_string()
                    } else {
                        format!("events: {}", events.join("; "))
                    }
                ),
            )
            .with_details(events))
        }
    }
}

/// Waits until the backend's replicas run and are ready. `Err` is an ABORT (an unpullable
/// image is the environment's problem) or a FAIL with the pods' states.
async fn wait_backends(
    ctx: &CheckContext,
    namespace: &str,
    kind: BackendKind,
) -> Result<(), Requirement> {
    let cluster = ctx.cluster();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let deadline = ctx.options.workload.pod_start_timeout;
    let ready = wait::until(
        &pods,
        watcher::Config::default().labels(&format!("{APP_KEY}={}", kind.app())),
        deadline,
        |pods| (pods.iter().filter(|p| is_ready(p)).count() >= REPLICAS as usize).then_some(()),
    );
    // Pods that admission refuses never exist: the ReplicaSet's FailedCreate says why.
    let waited = tokio::select! {
        waited = ready => waited,
        Some(reason) = admission::refused(cluster, namespace, kind.app(), deadline) => {
            return Err(Requirement::abort(
                "",
                format!(
                    "{}; the load balancer cannot be judged",
                    admission::describe(&format!("the {} backend (deployment {})", kind.app(), kind.app()), &reason)
                ),
            ));
        }
    };
    let Err(timeout) = waited else {
        return Ok(());
    };
    let explanation = pods::explain(cluster, namespace, &timeout.last, &|_| String::new()).await;
    let pull_error = !explanation.pull_errors.is_empty();
    let details = explanation.details;
    let flag = match kind {
        BackendKind::Netexec => "--agnhost-image",
        BackendKind::ProxyProtocol { .. } => "--proxy-protocol-image",
    };
    let message = format!(
        "the {} backend ({}) did not get {REPLICAS} ready replicas within {} ({timeout}){}",
        kind.app(),
        kind.image(ctx),
        human_duration(deadline),
        if pull_error {
            format!("; the image cannot be pulled, set {flag} to a reachable mirror")
        } else {
            String::new()
        }
    );
    Err(if pull_error {
        Requirement::abort("", message)
    } else {
        Requirement::abort("", format!("{message}; the load balancer cannot be judged"))
    }
    .with_details(details))
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Deletes the Services (releasing the cloud load balancers, which cost money) and waits
/// until they are gone; with a cloud controller they disappear only once the load balancer
/// has been deleted (its cleanup finalizer). The namespace goes afterwards, by the runner.
async fn release_services(
    ctx: &CheckContext,
    namespace: &str,
    names: &[String],
    outcome: &mut CheckOutcome,
) {
    let cluster = ctx.cluster();
    if cluster.keep {
        return;
    }
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), namespace);
    for name in names {
        match cluster
            .call(
                &format!("delete service {name}"),
                services.delete(name, &DeleteParams::background()),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                outcome.warnings.push(format!(
                    "Service {namespace}/{name} could not be deleted ({e}); its load balancer \
                     may be left behind"
                ));
                continue;
            }
        }
        match wait::until_deleted(&services, name, ctx.options.workload.lb_timeout).await {
            Ok(()) => ctx.log.info(format!(
                "deleted Service {name}; its load balancer is released"
            )),
            Err(e) => outcome.warnings.push(format!(
                "Service {namespace}/{name} is still being deleted ({e}); check that its \
                 load balancer is released"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_bracket_ipv6() {
        let a = LbAddress {
            host: "2001:db8::5".into(),
            ip_mode: None,
        };
        assert_eq!(a.url("/clientip"), "http://[2001:db8::5]:80/clientip");
        let a = LbAddress {
            host: "lb.example.com".into(),
            ip_mode: None,
        };
        assert_eq!(a.url("/"), "http://lb.example.com:80/");
    }

    #[test]
    fn vip_addresses_are_bypassed_inside_the_cluster() {
        let at = |host: &str, mode: Option<&str>| LbAddress {
            host: host.into(),
            ip_mode: mode.map(String::from),
        };
        assert!(at("203.0.113.5", None).bypassed_in_cluster());
        assert!(at("203.0.113.5", Some("VIP")).bypassed_in_cluster());
        assert!(!at("203.0.113.5", Some("Proxy")).bypassed_in_cluster());
        assert!(!at("lb.example.com", None).bypassed_in_cluster());
    }

    #[test]
    fn address_from_status() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "x"},
            "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}}
        }))
        .unwrap();
        assert_eq!(address_of(&svc).unwrap().host, "lb.example.com");
        let pending: Service = serde_json::from_value(
            json!({"metadata": {"name": "x"}, "status": {"loadBalancer": {}}}),
        )
        .unwrap();
        assert_eq!(address_of(&pending), None);
    }
}
