//! Load balancers (draft standard).
//!
//! `lb-service-check`: a Service `type: LoadBalancer` with every optional field unset, in
//! front of an echo backend (agnhost `netexec`), must get an external address within
//! `--lb-timeout` and answer HTTP from where the suite runs (or, with
//! `--lb-probe-from cluster`, from a pod inside the cluster).
//!
//! `lb-ip-preservation-check` (informational): for `externalTrafficPolicy: Cluster` and
//! `Local` (and, with `--lb-annotation`, both again with those annotations and a backend that
//! speaks the PROXY protocol) it records which source address the backend sees and
//! classifies it: the client's own address, a node address (SNAT by kube-proxy), or the load
//! balancer's / another address (a proxying load balancer).

use super::{CheckContext, CheckDef};
use crate::cli::ProbeFrom;
use crate::cluster::errors::human_duration;
use crate::cluster::wait;
use crate::cluster::workload::{self, APP_KEY, restricted_container, restricted_pod_spec};
use crate::cluster::{pods, run_labels};
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
    run: |ctx| Box::pin(run_service_check(ctx)),
};

pub const IP_PRESERVATION_CHECK: CheckDef = CheckDef {
    name: "lb-ip-preservation",
    summary: "which source address backends behind a LoadBalancer see (draft, informational)",
    writes: true,
    exclusive: false,
    uses_e2e: super::no_e2e,
    run: |ctx| Box::pin(run_ip_preservation_check(ctx)),
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
/// PROXY header (nginx closes them) and answers the addresses it saw.
pub const PROXY_PROTOCOL_NGINX_CONF: &str = "server {\n    listen 8080 proxy_protocol;\n    location / {\n        default_type text/plain;\n        return 200 \"proxy_protocol_addr=$proxy_protocol_addr remote_addr=$remote_addr\\n\";\n    }\n}\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackendKind {
    /// agnhost netexec.
    Netexec,
    /// nginx with `listen ... proxy_protocol`.
    ProxyProtocol,
}

impl BackendKind {
    fn app(self) -> &'static str {
        match self {
            BackendKind::Netexec => "echo",
            BackendKind::ProxyProtocol => "proxy-echo",
        }
    }
    fn image(self, ctx: &CheckContext) -> String {
        match self {
            BackendKind::Netexec => ctx.options.workload.agnhost_image.clone(),
            BackendKind::ProxyProtocol => ctx.options.workload.proxy_protocol_image.clone(),
        }
    }
}

/// The external address of a LoadBalancer Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbAddress {
    /// IP or hostname, as `status.loadBalancer.ingress[0]` has it.
    pub host: String,
}

impl LbAddress {
    fn url(&self, path: &str) -> String {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => self.host.clone(),
        };
        format!("http://{host}:{SERVICE_PORT}{path}")
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
            i.ip.clone()
                .filter(|s| !s.is_empty())
                .or_else(|| i.hostname.clone().filter(|s| !s.is_empty()))
        })
        .map(|host| LbAddress { host })
}

// ------------------------------------------------------------------ lb-service-check

async fn run_service_check(ctx: &CheckContext) -> CheckOutcome {
    let cluster = ctx.cluster();
    let namespace = match cluster
        .scratch_namespace(&ctx.testcase.id, "lb-service")
        .await
    {
        Ok(ns) => ns,
        Err(e) => return CheckOutcome::aborted("", e.to_string()),
    };
    ctx.log.info(format!("created namespace {namespace}"));
    let mut outcome = CheckOutcome::default();
    let service = "echo";
    let result = service_check_body(ctx, &namespace, service, &mut outcome).await;
    outcome.requirements.extend(result);
    release_services(ctx, &namespace, &[service.to_string()], &mut outcome).await;
    outcome
}

async fn service_check_body(
    ctx: &CheckContext,
    namespace: &str,
    service: &str,
    outcome: &mut CheckOutcome,
) -> Vec<Requirement> {
    if let Err(e) = create_backend(ctx, namespace, BackendKind::Netexec).await {
        return vec![Requirement::abort("", e)];
    }
    if let Err(e) = create_service(ctx, namespace, service, BackendKind::Netexec, None, &[]).await {
        return vec![Requirement::abort("", e)];
    }
    ctx.log.info(format!(
        "Service {service} (type LoadBalancer, no optional fields) created; waiting up to {} for an address",
        human_duration(ctx.options.workload.lb_timeout)
    ));
    let (address, backends) = futures::join!(
        wait_address(ctx, namespace, service),
        wait_backends(ctx, namespace, BackendKind::Netexec)
    );
    let address = match address {
        Ok((address, took)) => {
            outcome
                .facts
                .insert("address".into(), json!(address.host.clone()));
            ctx.log
                .info(format!("Service {service} got address {}", address.host));
            let assigned = Requirement::pass(
                "address-assigned",
                format!(
                    "Service {service} got the external address {} after {}",
                    address.host,
                    human_duration(took)
                ),
            );
            (assigned, address)
        }
        Err(failed) => {
            return vec![
                failed,
                Requirement::not_applicable("reachable", "the Service got no external address"),
            ];
        }
    };
    let (assigned, address) = address;
    if let Err(r) = backends {
        return vec![assigned, r.with_id("reachable")];
    }
    let probe = probe(ctx, namespace, "probe", &address, "/clientip").await;
    outcome
        .facts
        .insert("vantage".into(), json!(probe.vantage.describe()));
    let reachable = match &probe.result {
        Ok(body) => Requirement::pass(
            "reachable",
            format!(
                "GET {} answered HTTP 200 from {} after {} attempt(s) (the backend saw {})",
                address.url("/clientip"),
                probe.vantage.describe(),
                probe.attempts,
                body.trim()
            ),
        ),
        Err(ProbeError::Environment(e)) => Requirement::abort("reachable", e.clone()),
        Err(ProbeError::Unreachable(e)) => Requirement::fail(
            "reachable",
            format!(
                "GET {} did not answer from {} within {} ({} attempt(s)); last error: {e}{}",
                address.url("/clientip"),
                probe.vantage.describe(),
                human_duration(ctx.options.workload.lb_timeout),
                probe.attempts,
                match probe.vantage {
                    Vantage::Suite => {
                        "; if the address is only reachable from a private network, run with \
                         --lb-probe-from cluster"
                    }
                    Vantage::Cluster => "",
                }
            ),
        )
        .with_details(probe.details.clone()),
    };
    vec![assigned, reachable]
}

trait WithId {
    fn with_id(self, id: &str) -> Self;
}

impl WithId for Requirement {
    fn with_id(mut self, id: &str) -> Self {
        self.id = id.to_string();
        self
    }
}

// ------------------------------------------------------------------ lb-ip-preservation-check

/// One measured combination of traffic policy and annotations.
#[derive(Debug, Clone)]
struct Mode {
    /// Requirement id and Service name.
    id: String,
    policy: &'static str,
    annotated: bool,
}

/// How a source address relates to the parties of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceClass {
    /// The client's own address: preserved.
    Preserved,
    /// A node's address: kube-proxy SNAT (externalTrafficPolicy Cluster).
    Node(String),
    /// The load balancer's own address: a proxying load balancer.
    LoadBalancer,
    /// Neither: a proxy or NAT in between.
    Other,
}

impl SourceClass {
    pub fn describe(&self) -> String {
        match self {
            SourceClass::Preserved => "client address preserved".into(),
            SourceClass::Node(n) => format!("node address of {n} (SNAT by kube-proxy)"),
            SourceClass::LoadBalancer => {
                "the load balancer's own address (proxying load balancer)".into()
            }
            SourceClass::Other => "another address (proxying load balancer or NAT)".into(),
        }
    }
    fn key(&self) -> &'static str {
        match self {
            SourceClass::Preserved => "preserved",
            SourceClass::Node(_) => "node-snat",
            SourceClass::LoadBalancer => "load-balancer",
            SourceClass::Other => "other",
        }
    }
}

/// Classifies the source address a backend saw.
pub fn classify(
    observed: IpAddr,
    client: Option<IpAddr>,
    nodes: &[(String, IpAddr)],
    lb: &[IpAddr],
) -> SourceClass {
    if client == Some(observed) {
        SourceClass::Preserved
    } else if let Some((node, _)) = nodes.iter().find(|(_, ip)| *ip == observed) {
        SourceClass::Node(node.clone())
    } else if lb.contains(&observed) {
        SourceClass::LoadBalancer
    } else {
        SourceClass::Other
    }
}

/// The IP of an `ip:port`, `[v6]:port` or bare IP as agnhost `/clientip` answers it.
pub fn parse_source(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(sa) = text.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// `proxy_protocol_addr=A remote_addr=B` (the PROXY backend's answer) into (A, B).
pub fn parse_proxy_answer(text: &str) -> (Option<IpAddr>, Option<IpAddr>) {
    let mut header = None;
    let mut remote = None;
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("proxy_protocol_addr=") {
            header = parse_source(v);
        } else if let Some(v) = field.strip_prefix("remote_addr=") {
            remote = parse_source(v);
        }
    }
    (header, remote)
}

/// The address this machine uses towards `target` (the local address of a UDP socket
/// connected to it; nothing is sent).
pub fn outbound_ip(target: IpAddr) -> Option<IpAddr> {
    let bind: std::net::SocketAddr = match target {
        IpAddr::V4(_) => "0.0.0.0:0".parse().ok()?,
        IpAddr::V6(_) => "[::]:0".parse().ok()?,
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect((target, SERVICE_PORT as u16)).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

async fn resolve(host: &str) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    match tokio::net::lookup_host((host, SERVICE_PORT as u16)).await {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(_) => Vec::new(),
    }
}

async fn run_ip_preservation_check(ctx: &CheckContext) -> CheckOutcome {
    let cluster = ctx.cluster();
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let node_addresses: Vec<(String, IpAddr)> = match cluster
        .call("list nodes", nodes.list(&ListParams::default()))
        .await
    {
        Ok(list) => list
            .items
            .iter()
            .flat_map(|n| {
                let name = n.name_any();
                n.status
                    .iter()
                    .flat_map(|s| s.addresses.iter().flatten())
                    .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
                    .filter_map(move |a| Some((name.clone(), a.address.parse().ok()?)))
            })
            .collect(),
        Err(e) => return CheckOutcome::aborted("", e.to_string()),
    };
    let namespace = match cluster.scratch_namespace(&ctx.testcase.id, "lb-ip").await {
        Ok(ns) => ns,
        Err(e) => return CheckOutcome::aborted("", e.to_string()),
    };
    ctx.log.info(format!("created namespace {namespace}"));
    let annotations = &ctx.options.workload.lb_annotations;
    let mut modes = vec![
        Mode {
            id: "cluster".into(),
            policy: "Cluster",
            annotated: false,
        },
        Mode {
            id: "local".into(),
            policy: "Local",
            annotated: false,
        },
    ];
    if !annotations.is_empty() {
        modes.push(Mode {
            id: "cluster-annotated".into(),
            policy: "Cluster",
            annotated: true,
        });
        modes.push(Mode {
            id: "local-annotated".into(),
            policy: "Local",
            annotated: true,
        });
    }
    let mut outcome = CheckOutcome::default();
    let services: Vec<String> = modes.iter().map(|m| m.id.clone()).collect();
    let body = ip_body(ctx, &namespace, &modes, &node_addresses, &mut outcome).await;
    outcome.requirements.extend(body);
    release_services(ctx, &namespace, &services, &mut outcome).await;
    outcome
}

/// What one mode showed.
#[derive(Debug, Clone)]
struct Row {
    mode: Mode,
    address: Option<String>,
    reachable: bool,
    observed: Option<IpAddr>,
    class: Option<SourceClass>,
    note: String,
}

async fn ip_body(
    ctx: &CheckContext,
    namespace: &str,
    modes: &[Mode],
    nodes: &[(String, IpAddr)],
    outcome: &mut CheckOutcome,
) -> Vec<Requirement> {
    let annotations = &ctx.options.workload.lb_annotations;
    let mut kinds = vec![BackendKind::Netexec];
    if !annotations.is_empty() {
        kinds.push(BackendKind::ProxyProtocol);
    }
    for kind in &kinds {
        if let Err(e) = create_backend(ctx, namespace, *kind).await {
            return vec![Requirement::abort("", e)];
        }
    }
    for mode in modes {
        let kind = if mode.annotated {
            BackendKind::ProxyProtocol
        } else {
            BackendKind::Netexec
        };
        let notes: &[(String, String)] = if mode.annotated { annotations } else { &[] };
        if let Err(e) =
            create_service(ctx, namespace, &mode.id, kind, Some(mode.policy), notes).await
        {
            return vec![Requirement::abort("", e)];
        }
    }
    ctx.log.info(format!(
        "{} LoadBalancer Services created ({}); waiting up to {} for addresses",
        modes.len(),
        modes
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        human_duration(ctx.options.workload.lb_timeout)
    ));
    let backends =
        futures::future::join_all(kinds.iter().map(|k| wait_backends(ctx, namespace, *k))).await;
    if let Some(Err(r)) = backends.into_iter().find(|r| r.is_err()) {
        return vec![r];
    }
    let rows =
        futures::future::join_all(modes.iter().map(|m| measure(ctx, namespace, m, nodes))).await;

    let mut requirements = Vec::new();
    let mut table = vec![format!(
        "{:<18} {:<10} {:<40} classification",
        "mode", "reachable", "observed source"
    )];
    let mut facts = Vec::new();
    for row in &rows {
        let observed = row
            .observed
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "-".into());
        let class = row
            .class
            .as_ref()
            .map(SourceClass::describe)
            .unwrap_or_else(|| row.note.clone());
        table.push(format!(
            "{:<18} {:<10} {:<40} {class}",
            row.mode.id,
            if row.reachable { "yes" } else { "no" },
            observed
        ));
        facts.push(json!({
            "mode": row.mode.id,
            "external_traffic_policy": row.mode.policy,
            "annotations": if row.mode.annotated { annotations.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>() } else { vec![] },
            "address": row.address,
            "reachable": row.reachable,
            "observed_source": row.observed.map(|ip| ip.to_string()),
            "classification": row.class.as_ref().map(SourceClass::key),
            "note": row.note,
        }));
        let what = format!(
            "externalTrafficPolicy {}{}",
            row.mode.policy,
            if row.mode.annotated {
                " with the given annotations (PROXY protocol backend)"
            } else {
                ""
            }
        );
        let requirement = match (&row.class, row.reachable) {
            (Some(class), true) => Requirement::info(
                &row.mode.id,
                format!(
                    "{what}: the backend saw {}{}: {}",
                    observed,
                    if row.mode.annotated {
                        " in the PROXY header"
                    } else {
                        ""
                    },
                    class.describe()
                ),
            ),
            (_, true) => Requirement::info(&row.mode.id, format!("{what}: {}", row.note)),
            (_, false) => Requirement::fail(&row.mode.id, format!("{what}: {}", row.note)),
        };
        requirements.push(requirement);
    }
    outcome.facts.insert("modes".into(), json!(facts));
    outcome.facts.insert(
        "node_addresses".into(),
        json!(
            nodes
                .iter()
                .map(|(n, ip)| format!("{n}={ip}"))
                .collect::<Vec<_>>()
        ),
    );
    let preserving: Vec<&str> = rows
        .iter()
        .filter(|r| r.class == Some(SourceClass::Preserved))
        .map(|r| r.mode.id.as_str())
        .collect();
    let summary = if preserving.is_empty() {
        Requirement::warn(
            "preservation",
            format!(
                "no measured mode shows the client address to the backend ({}){}",
                rows.iter()
                    .map(|r| r.mode.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if annotations.is_empty() {
                    "; a proxying load balancer may offer the PROXY protocol, try e.g. \
                     --lb-annotation loadbalancer.openstack.org/proxy-protocol=true"
                } else {
                    ""
                }
            ),
        )
    } else {
        Requirement::pass(
            "preservation",
            format!(
                "the backend sees the client address with: {}",
                preserving.join(", ")
            ),
        )
    };
    requirements.push(summary.with_details(table));
    requirements
}

async fn measure(
    ctx: &CheckContext,
    namespace: &str,
    mode: &Mode,
    nodes: &[(String, IpAddr)],
) -> Row {
    let mut row = Row {
        mode: mode.clone(),
        address: None,
        reachable: false,
        observed: None,
        class: None,
        note: String::new(),
    };
    let address = match wait_address(ctx, namespace, &mode.id).await {
        Ok((a, _)) => a,
        Err(r) => {
            row.note = r.message;
            return row;
        }
    };
    row.address = Some(address.host.clone());
    let lb_ips = resolve(&address.host).await;
    let probe = probe(
        ctx,
        namespace,
        &format!("probe-{}", mode.id),
        &address,
        "/clientip",
    )
    .await;
    let body = match probe.result {
        Ok(body) => body,
        Err(ProbeError::Environment(e)) => {
            row.note = e;
            return row;
        }
        Err(ProbeError::Unreachable(e)) => {
            row.note = if mode.annotated {
                format!(
                    "no answer from {} ({e}); the PROXY protocol backend closes connections \
                     that carry no PROXY header, so the annotations probably did not enable it",
                    address.url("/clientip")
                )
            } else {
                format!("no answer from {} ({e})", address.url("/clientip"))
            };
            return row;
        }
    };
    row.reachable = true;
    let client = ctx
        .options
        .workload
        .client_ip
        .or(probe.client_ip)
        .or_else(|| lb_ips.first().and_then(|ip| outbound_ip(*ip)));
    let observed = if mode.annotated {
        let (header, remote) = parse_proxy_answer(&body);
        if header.is_none() {
            row.note = format!("the backend got no PROXY header (answer: {})", body.trim());
            row.observed = remote;
            return row;
        }
        header
    } else {
        parse_source(&body)
    };
    let Some(observed) = observed else {
        row.note = format!("unexpected answer from the backend: {:?}", body.trim());
        return row;
    };
    row.observed = Some(observed);
    row.class = Some(classify(observed, client, nodes, &lb_ips));
    row.note = format!(
        "client address {} ({})",
        client
            .map(|c| c.to_string())
            .unwrap_or_else(|| "unknown".into()),
        probe.vantage.describe()
    );
    row
}

// ------------------------------------------------------------------ shared pieces

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
        BackendKind::ProxyProtocol => {
            let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), namespace);
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(app.into()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(
                    "default.conf".to_string(),
                    PROXY_PROTOCOL_NGINX_CONF.to_string(),
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
        Err(timeout) => {
            let events =
                wait::recent_events(&cluster.client, namespace, name, cluster.request_timeout)
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
    let waited = wait::until(
        &pods,
        watcher::Config::default().labels(&format!("{APP_KEY}={}", kind.app())),
        deadline,
        |pods| (pods.iter().filter(|p| is_ready(p)).count() >= REPLICAS as usize).then_some(()),
    )
    .await;
    let Err(timeout) = waited else {
        return Ok(());
    };
    let explanation = pods::explain(cluster, namespace, &timeout.last, &|_| String::new()).await;
    let pull_error = !explanation.pull_errors.is_empty();
    let details = explanation.details;
    let flag = match kind {
        BackendKind::Netexec => "--agnhost-image",
        BackendKind::ProxyProtocol => "--proxy-protocol-image",
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

/// Where probes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vantage {
    Suite,
    Cluster,
}

impl Vantage {
    fn describe(self) -> &'static str {
        match self {
            Vantage::Suite => "the machine running the suite",
            Vantage::Cluster => "a pod inside the cluster (--lb-probe-from cluster)",
        }
    }
}

#[derive(Debug)]
enum ProbeError {
    /// The load balancer did not answer (a finding).
    Unreachable(String),
    /// The probe itself could not run (e.g. the probe pod did not start).
    Environment(String),
}

struct Probe {
    vantage: Vantage,
    attempts: u32,
    /// The body of the first successful answer.
    result: Result<String, ProbeError>,
    /// The probing client's own address where known (the probe pod's IP).
    client_ip: Option<IpAddr>,
    details: Vec<String>,
}

async fn probe(
    ctx: &CheckContext,
    namespace: &str,
    pod_name: &str,
    address: &LbAddress,
    path: &str,
) -> Probe {
    match ctx.options.workload.lb_probe_from {
        ProbeFrom::Suite => probe_from_suite(ctx, &address.url(path)).await,
        ProbeFrom::Cluster => {
            probe_from_cluster(ctx, namespace, pod_name, &address.url(path)).await
        }
    }
}

/// `reqwest` error with its causes, on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// GETs `url` from here with short timeouts; after a failure it tries again with a growing
/// backoff until `--lb-timeout` has passed (a new load balancer may take a moment to forward).
async fn probe_from_suite(ctx: &CheckContext, url: &str) -> Probe {
    let deadline = ctx.options.workload.lb_timeout;
    let client = match reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return Probe {
                vantage: Vantage::Suite,
                attempts: 0,
                result: Err(ProbeError::Environment(format!(
                    "cannot build an HTTP client: {e}"
                ))),
                client_ip: None,
                details: vec![],
            };
        }
    };
    let started = Instant::now();
    let mut backoff = Duration::from_millis(500);
    let mut attempts = 0;
    let mut details = Vec::new();
    loop {
        attempts += 1;
        let error = match client.get(url).send().await {
            Ok(resp) if resp.status().is_success() => match resp.text().await {
                Ok(body) => {
                    return Probe {
                        vantage: Vantage::Suite,
                        attempts,
                        result: Ok(body),
                        client_ip: None,
                        details,
                    };
                }
                Err(e) => error_chain(&e),
            },
            Ok(resp) => format!("HTTP {}", resp.status()),
            Err(e) => error_chain(&e),
        };
        ctx.log
            .info(format!("GET {url} attempt {attempts} failed: {error}"));
        details.push(format!("attempt {attempts}: {error}"));
        if details.len() > 10 {
            details.remove(0);
        }
        if started.elapsed() + backoff >= deadline {
            return Probe {
                vantage: Vantage::Suite,
                attempts,
                result: Err(ProbeError::Unreachable(error)),
                client_ip: None,
                details,
            };
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(15));
    }
}

/// Runs `curl` (from the agnhost image) in a pod: it retries by itself until `--lb-timeout`.
/// The pod is watched until it ends; its log holds the answer.
async fn probe_from_cluster(
    ctx: &CheckContext,
    namespace: &str,
    pod_name: &str,
    url: &str,
) -> Probe {
    let cluster = ctx.cluster();
    let lb_timeout = ctx.options.workload.lb_timeout;
    let fail = |e: String| Probe {
        vantage: Vantage::Cluster,
        attempts: 0,
        result: Err(ProbeError::Environment(e)),
        client_ip: None,
        details: vec![],
    };
    let mut container = restricted_container("curl", &ctx.options.workload.agnhost_image);
    container.command = Some(vec!["curl".into()]);
    container.args = Some(vec![
        "-sS".into(),
        "--connect-timeout".into(),
        "5".into(),
        "--max-time".into(),
        "10".into(),
        "--retry".into(),
        "1000".into(),
        "--retry-all-errors".into(),
        "--retry-max-time".into(),
        lb_timeout.as_secs().max(1).to_string(),
        "-w".into(),
        "\nHTTP %{http_code}\n".into(),
        url.into(),
    ]);
    let mut spec = restricted_pod_spec(vec![container]);
    spec.restart_policy = Some("Never".into());
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(pod_name.into()),
            labels: Some(app_labels(ctx, "probe")),
            ..Default::default()
        },
        spec: Some(spec),
        ..Default::default()
    };
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    if let Err(e) = cluster
        .call(
            &format!("create pod {pod_name}"),
            pods.create(&PostParams::default(), &pod),
        )
        .await
    {
        return fail(e.to_string());
    }
    ctx.log.info(format!(
        "probe pod {pod_name} runs curl {url} inside the cluster"
    ));
    let deadline = lb_timeout + ctx.options.workload.pod_start_timeout + Duration::from_secs(15);
    let ended = wait::object(&pods, pod_name, deadline, |p| {
        let p = p?;
        let phase = p.status.as_ref()?.phase.as_deref()?;
        matches!(phase, "Succeeded" | "Failed").then(|| {
            (
                phase.to_string(),
                p.status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_deref())
                    .and_then(|ip| ip.parse().ok()),
            )
        })
    })
    .await;
    let (phase, pod_ip) = match ended {
        Ok(x) => x,
        Err(timeout) => {
            let state = timeout
                .last
                .first()
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into());
            return fail(format!(
                "the probe pod {pod_name} did not finish within {} (phase {state}); check \
                 --agnhost-image and --pod-start-timeout",
                human_duration(deadline)
            ));
        }
    };
    let log = match cluster
        .call(
            &format!("read the log of pod {pod_name}"),
            pods.logs(pod_name, &LogParams::default()),
        )
        .await
    {
        Ok(log) => log,
        Err(e) => return fail(e.to_string()),
    };
    let (body, status) = match log.trim_end().rsplit_once("HTTP ") {
        Some((body, code)) => (body.trim_end().to_string(), code.trim().to_string()),
        None => (String::new(), log.trim().to_string()),
    };
    let details: Vec<String> = log.lines().map(String::from).take(20).collect();
    let result = if phase == "Succeeded" && status == "200" {
        Ok(body)
    } else {
        let last = log
            .lines()
            .rev()
            .find(|l| l.starts_with("curl:"))
            .map(String::from)
            .unwrap_or_else(|| format!("HTTP {status}"));
        Err(ProbeError::Unreachable(last))
    };
    Probe {
        vantage: Vantage::Cluster,
        attempts: 1,
        result,
        client_ip: pod_ip,
        details,
    }
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classification() {
        let nodes = vec![("w1".to_string(), ip("10.0.0.11"))];
        let lb = vec![ip("203.0.113.7")];
        let client = Some(ip("198.51.100.2"));
        assert_eq!(
            classify(ip("198.51.100.2"), client, &nodes, &lb),
            SourceClass::Preserved
        );
        assert_eq!(
            classify(ip("10.0.0.11"), client, &nodes, &lb),
            SourceClass::Node("w1".into())
        );
        assert_eq!(
            classify(ip("203.0.113.7"), client, &nodes, &lb),
            SourceClass::LoadBalancer
        );
        assert_eq!(
            classify(ip("10.1.2.3"), client, &nodes, &lb),
            SourceClass::Other
        );
    }

    #[test]
    fn agnhost_answers() {
        assert_eq!(parse_source("10.0.0.1:43210"), Some(ip("10.0.0.1")));
        assert_eq!(parse_source("[2001:db8::1]:80\n"), Some(ip("2001:db8::1")));
        assert_eq!(parse_source("10.0.0.1"), Some(ip("10.0.0.1")));
        assert_eq!(parse_source("garbage"), None);
        assert_eq!(
            parse_proxy_answer("proxy_protocol_addr=1.2.3.4 remote_addr=10.0.0.5\n"),
            (Some(ip("1.2.3.4")), Some(ip("10.0.0.5")))
        );
        assert_eq!(
            parse_proxy_answer("proxy_protocol_addr= remote_addr=10.0.0.5"),
            (None, Some(ip("10.0.0.5")))
        );
    }

    #[test]
    fn urls_bracket_ipv6() {
        let a = LbAddress {
            host: "2001:db8::5".into(),
        };
        assert_eq!(a.url("/clientip"), "http://[2001:db8::5]:80/clientip");
        let a = LbAddress {
            host: "lb.example.com".into(),
        };
        assert_eq!(a.url("/"), "http://lb.example.com:80/");
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
