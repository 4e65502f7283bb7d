//! `lb-ip-preservation-check`: which source address a backend behind a LoadBalancer sees,
//! per traffic policy (and PROXY protocol annotation), classified against the client's,
//! the nodes' and the load balancer's addresses.

use super::probe::{ProbeError, probe};
use super::*;

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
    /// Not this machine's address, nor a node's or the load balancer's, but the connection
    /// kept our source port: no proxy opened a connection of its own. That is what a NAT in
    /// front of this machine shows (the client's address preserved), but also an SNAT that
    /// keeps ports (Linux MASQUERADE does when it can): undecided without `--client-ip`.
    PreservedBehindNat,
    /// A node's address (`what` it is): SNAT by kube-proxy (externalTrafficPolicy Cluster).
    Node { node: String, what: String },
    /// The load balancer's own address: a proxying load balancer.
    LoadBalancer,
    /// Neither: a proxy or NAT in between.
    Other,
    /// The connections showed different sources: `key` is their common classification
    /// ("mixed" if they differ), `classes` the descriptions.
    Mixed {
        key: &'static str,
        classes: Vec<String>,
    },
}

impl SourceClass {
    /// What the classification means, for messages (one line).
    pub fn describe(&self) -> String {
        match self {
            SourceClass::Preserved => "client address preserved".into(),
            SourceClass::PreservedBehindNat => "not this machine's address, but the \
                 connection kept its source port: this machine's address behind a NAT \
                 (preserved), or an SNAT that keeps ports (not preserved); --client-ip with \
                 the address the load balancer sees from here decides"
                .into(),
            SourceClass::Node { node, what } => {
                format!("node address of {node} ({what}; SNAT by kube-proxy)")
            }
            SourceClass::LoadBalancer => {
                "the load balancer's own address (proxying load balancer)".into()
            }
            SourceClass::Other => "another address (proxying load balancer or NAT)".into(),
            SourceClass::Mixed { key, classes } if *key != "mixed" => classes.join("; "),
            SourceClass::Mixed { classes, .. } => {
                format!("varies by connection: {}", classes.join("; "))
            }
        }
    }
    fn key(&self) -> &'static str {
        match self {
            SourceClass::Preserved => "preserved",
            SourceClass::PreservedBehindNat => "nat-kept-port",
            SourceClass::Node { .. } => "node-snat",
            SourceClass::LoadBalancer => "load-balancer",
            SourceClass::Other => "other",
            SourceClass::Mixed { key, .. } => key,
        }
    }
}

/// An address a node's traffic can leave with, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    /// The node's name.
    pub node: String,
    /// The address kube-proxy's SNAT may show.
    pub ip: IpAddr,
    /// e.g. `InternalIP`, `the gateway of its pod CIDR 10.244.1.0/24`.
    pub what: String,
}

/// Node annotations of common CNI plugins that name an interface address of the node
/// (kube-proxy's MASQUERADE uses the outgoing interface's address; towards a pod that can be
/// a tunnel or bridge device): Calico's tunnel and node addresses, Cilium's `cilium_host`,
/// Flannel's public address. Values may carry a prefix length.
pub const CNI_ADDRESS_ANNOTATIONS: [&str; 9] = [
    "projectcalico.org/IPv4Address",
    "projectcalico.org/IPv4IPIPTunnelAddr",
    "projectcalico.org/IPv4VXLANTunnelAddr",
    "projectcalico.org/IPv6VXLANTunnelAddr",
    "projectcalico.org/IPv4WireguardInterfaceAddr",
    "network.cilium.io/ipv4-cilium-host",
    "network.cilium.io/ipv6-cilium-host",
    "io.cilium.network.ipv4-cilium-host",
    "flannel.alpha.coreos.com/public-ip",
];

/// The first address of `cidr` and the one after it (the network address, which Flannel
/// gives its VXLAN device, and the gateway, which bridge plugins give `cni0`/`cbr0`).
fn pod_cidr_gateways(cidr: &str) -> Vec<IpAddr> {
    let Some((net, _)) = cidr.split_once('/') else {
        return Vec::new();
    };
    match net.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let n = u32::from(v4);
            vec![IpAddr::V4(n.into()), IpAddr::V4((n + 1).into())]
        }
        Ok(IpAddr::V6(v6)) => {
            let n = u128::from(v6);
            vec![IpAddr::V6(n.into()), IpAddr::V6((n + 1).into())]
        }
        Err(_) => Vec::new(),
    }
}

/// Every address the nodes' own traffic can carry: `status.addresses` that are IPs, the
/// gateway addresses of `spec.podCIDRs`, and the CNI annotations of
/// [`CNI_ADDRESS_ANNOTATIONS`].
pub fn node_addresses(nodes: &[Node]) -> Vec<NodeAddress> {
    let mut found = Vec::new();
    for n in nodes {
        let node = n.name_any();
        let mut add = |ip: IpAddr, what: String| {
            found.push(NodeAddress {
                node: node.clone(),
                ip,
                what,
            })
        };
        for a in n.status.iter().flat_map(|s| s.addresses.iter().flatten()) {
            if let Ok(ip) = a.address.parse() {
                add(ip, a.type_.clone());
            }
        }
        let spec = n.spec.as_ref();
        let mut cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
        if let Some(c) = spec.and_then(|s| s.pod_cidr.clone())
            && !cidrs.contains(&c)
        {
            cidrs.push(c);
        }
        for cidr in &cidrs {
            let [network, gateway] = pod_cidr_gateways(cidr)[..] else {
                continue;
            };
            add(
                network,
                format!("the network address of its pod CIDR {cidr}"),
            );
            add(gateway, format!("the gateway of its pod CIDR {cidr}"));
        }
        for key in CNI_ADDRESS_ANNOTATIONS {
            let value = n.annotations().get(key).map(String::as_str);
            let ip = value.and_then(|v| v.split('/').next()?.trim().parse().ok());
            if let Some(ip) = ip {
                add(ip, format!("annotation {key}"));
            }
        }
    }
    found
}

/// What is known about the client's address on one connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientEvidence {
    /// `--client-ip`: the client's address as the load balancer sees it.
    pub given: Option<IpAddr>,
    /// The local end of the probe's TCP connection.
    pub local: Option<std::net::SocketAddr>,
}

/// Classifies the source address (and port, where the backend answered it) a backend saw.
pub fn classify(
    observed: IpAddr,
    port: Option<u16>,
    client: ClientEvidence,
    nodes: &[NodeAddress],
    lb: &[IpAddr],
) -> SourceClass {
    if client.given == Some(observed) || client.local.map(|l| l.ip()) == Some(observed) {
        SourceClass::Preserved
    } else if let Some(n) = nodes.iter().find(|n| n.ip == observed) {
        SourceClass::Node {
            node: n.node.clone(),
            what: format!("{} {}", n.what, n.ip),
        }
    } else if lb.contains(&observed) {
        SourceClass::LoadBalancer
    } else if client.given.is_none() && port.is_some() && client.local.map(|l| l.port()) == port {
        SourceClass::PreservedBehindNat
    } else {
        SourceClass::Other
    }
}

/// The address and port of an `ip:port`, `[v6]:port` or bare IP as agnhost `/clientip`
/// answers it.
pub fn parse_source(text: &str) -> Option<(IpAddr, Option<u16>)> {
    let text = text.trim();
    if let Ok(sa) = text.parse::<std::net::SocketAddr>() {
        return Some((sa.ip(), Some(sa.port())));
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
        .map(|ip| (ip, None))
}

/// What the PROXY protocol backend answered (`proxy_protocol_addr=A proxy_protocol_port=P
/// remote_addr=B`): the header's address and port, and the connection's peer.
pub fn parse_proxy_answer(text: &str) -> (Option<(IpAddr, Option<u16>)>, Option<IpAddr>) {
    let mut header = None;
    let mut port = None;
    let mut remote = None;
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("proxy_protocol_addr=") {
            header = v.trim().parse::<IpAddr>().ok();
        } else if let Some(v) = field.strip_prefix("proxy_protocol_port=") {
            port = v.trim().parse::<u16>().ok();
        } else if let Some(v) = field.strip_prefix("remote_addr=") {
            remote = v.trim().parse().ok();
        }
    }
    (header.map(|ip| (ip, port)), remote)
}

/// Resolves a load balancer's hostname (after it answered: a new name may not resolve
/// before); an IP is itself.
async fn resolve(host: &str) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    match tokio::net::lookup_host((host, SERVICE_PORT as u16)).await {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(_) => Vec::new(),
    }
}

pub(super) async fn run(ctx: &CheckContext) -> CheckOutcome {
    let cluster = ctx.cluster();
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let nodes = match cluster
        .call("list nodes", nodes.list(&ListParams::default()))
        .await
    {
        Ok(list) => list.items,
        Err(e) => return CheckOutcome::aborted("", e.to_string()),
    };
    let node_addresses = node_addresses(&nodes);
    // nginx listens on [::] only where pods have IPv6 (an IPv6 pod CIDR or node address).
    let ipv6 = node_addresses.iter().any(|n| n.ip.is_ipv6());
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
    ctx.plan(services.iter().cloned().chain([PRESERVATION.to_string()]));
    if let Err(abort) = ip_body(ctx, &namespace, &modes, &node_addresses, ipv6).await {
        outcome.push(abort);
    }
    release_services(ctx, &namespace, &services, &mut outcome).await;
    outcome
}

const PRESERVATION: &str = "preservation";

/// One answered connection of a mode.
#[derive(Debug, Clone)]
struct Sample {
    source: IpAddr,
    class: SourceClass,
}

/// What one mode showed.
#[derive(Debug, Clone)]
struct Row {
    mode: Mode,
    address: Option<String>,
    /// At least one connection answered.
    reachable: bool,
    /// Connections tried once the first answered, and the answers classified.
    sampled: u32,
    samples: Vec<Sample>,
    /// The class of every sample, or [`SourceClass::Mixed`].
    class: Option<SourceClass>,
    note: String,
    /// Why nothing could be measured (no address, the probe itself could not run).
    unmeasured: bool,
}

impl Row {
    /// The source every sample showed, or the first.
    fn observed(&self) -> Option<IpAddr> {
        self.samples.first().map(|s| s.source)
    }

    /// "10.244.1.1 ×5 (node-snat)" per distinct source.
    fn sources(&self) -> Vec<String> {
        let mut seen: Vec<(IpAddr, &SourceClass, usize)> = Vec::new();
        for s in &self.samples {
            match seen.iter_mut().find(|(ip, _, _)| *ip == s.source) {
                Some(entry) => entry.2 += 1,
                None => seen.push((s.source, &s.class, 1)),
            }
        }
        seen.iter()
            .map(|(ip, class, n)| format!("{ip} \u{d7}{n} ({})", class.key()))
            .collect()
    }

    /// "5 of 5 connections answered".
    fn ratio(&self) -> String {
        format!(
            "{} of {} connections answered",
            self.samples.len(),
            self.sampled
        )
    }
}

/// Measures every mode, publishing each as it is decided, then the summary. The Services
/// are provisioned one after another, each timed from its own creation: cloud controllers
/// provision one Service at a time (the upstream service controller's
/// `--concurrent-service-syncs` defaults to 1), so Services created together would share
/// one `--lb-timeout`. `Err` is a testcase-level abort (nothing could be set up).
async fn ip_body(
    ctx: &CheckContext,
    namespace: &str,
    modes: &[Mode],
    nodes: &[NodeAddress],
    ipv6: bool,
) -> Result<(), Requirement> {
    let annotations = &ctx.options.workload.lb_annotations;
    let mut kinds = vec![BackendKind::Netexec];
    if !annotations.is_empty() {
        kinds.push(BackendKind::ProxyProtocol { ipv6 });
    }
    for kind in &kinds {
        create_backend(ctx, namespace, *kind)
            .await
            .map_err(|e| Requirement::abort("", e))?;
    }
    let provision = async {
        let mut addresses: Vec<Result<LbAddress, Requirement>> = Vec::new();
        let mut silent: Option<String> = None;
        for mode in modes {
            if let Some(first) = &silent {
                // Nothing answered the first Service at all (no address, no event): the
                // others would wait the same --lb-timeout each for the same silence.
                addresses.push(Err(Requirement::abort(
                    &mode.id,
                    format!(
                        "{first}; Service {} was not created, as cloud controllers provision \
                         one Service at a time",
                        mode.id
                    ),
                )));
                continue;
            }
            let kind = if mode.annotated {
                kinds[kinds.len() - 1]
            } else {
                kinds[0]
            };
            let notes: &[(String, String)] = if mode.annotated { annotations } else { &[] };
            create_service(ctx, namespace, &mode.id, kind, Some(mode.policy), notes)
                .await
                .map_err(|e| Requirement::abort("", e))?;
            ctx.log.info(format!(
                "LoadBalancer Service {} created; waiting up to {} for its address",
                mode.id,
                human_duration(ctx.options.workload.lb_timeout)
            ));
            let address = wait_address(ctx, namespace, &mode.id).await.map(|(a, _)| a);
            if let Err(r) = &address
                && !refused_by_the_cloud(r)
            {
                silent = Some(r.message.clone());
            }
            addresses.push(address);
        }
        Ok::<_, Requirement>(addresses)
    };
    let backends =
        futures::future::join_all(kinds.iter().map(|k| wait_backends(ctx, namespace, *k)));
    let (addresses, backends) = futures::join!(provision, backends);
    let addresses = addresses?;
    if let Some(Err(r)) = backends.into_iter().find(|r| r.is_err()) {
        return Err(r);
    }
    let rows = futures::future::join_all(modes.iter().zip(addresses).map(|(m, a)| async move {
        let row = measure(ctx, namespace, m, a, nodes).await;
        ctx.decide(mode_requirement(&row));
        row
    }))
    .await;

    let mut table = vec![format!(
        "{:<18} {:<10} {:<40} classification",
        "mode", "answered", "observed sources"
    )];
    let mut facts = Vec::new();
    for row in &rows {
        let class = row
            .class
            .as_ref()
            .map(SourceClass::describe)
            .unwrap_or_else(|| row.note.clone());
        table.push(format!(
            "{:<18} {:<10} {:<40} {class}",
            row.mode.id,
            format!("{}/{}", row.samples.len(), row.sampled),
            if row.samples.is_empty() {
                "-".to_string()
            } else {
                row.sources().join(", ")
            }
        ));
        facts.push(json!({
            "mode": row.mode.id,
            "external_traffic_policy": row.mode.policy,
            "annotations": if row.mode.annotated { annotations.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>() } else { vec![] },
            "address": row.address,
            "reachable": row.reachable,
            "answered": row.samples.len(),
            "sampled": row.sampled,
            "observed_source": row.observed().map(|ip| ip.to_string()),
            "sources": row.sources(),
            "classification": row.class.as_ref().map(SourceClass::key),
            "note": row.note,
        }));
    }
    {
        let mut decisions = ctx.decisions.lock();
        decisions.fact("modes", json!(facts));
        decisions.fact(
            "node_addresses",
            json!(
                nodes
                    .iter()
                    .map(|n| format!("{}={} ({})", n.node, n.ip, n.what))
                    .collect::<Vec<_>>()
            ),
        );
    }
    ctx.decide(summary(&rows, annotations).with_details(table));
    Ok(())
}

/// The requirement of one mode: information on what the backend saw (a warning when some
/// connections did not answer); FAIL (a warning, the testcase being informational) when
/// the address did not answer; ABORT when nothing could be measured.
fn mode_requirement(row: &Row) -> Requirement {
    let what = format!(
        "externalTrafficPolicy {}{}",
        row.mode.policy,
        if row.mode.annotated {
            " with the given annotations (PROXY protocol backend)"
        } else {
            ""
        }
    );
    match (&row.class, row.reachable) {
        (Some(class), true) => {
            let message = format!(
                "{what}: the backend saw {}{}: {}; {}",
                row.sources().join(", "),
                if row.mode.annotated {
                    " in the PROXY header"
                } else {
                    ""
                },
                class.describe(),
                row.ratio(),
            );
            if row.samples.len() as u32 == row.sampled {
                Requirement::info(&row.mode.id, message)
            } else {
                Requirement::warn(
                    &row.mode.id,
                    format!(
                        "{message}: some connections through the load balancer did not reach \
                         a backend (with Local and no health monitor the load balancer also \
                         sends traffic to nodes without an endpoint)"
                    ),
                )
            }
        }
        (_, true) => Requirement::info(&row.mode.id, format!("{what}: {}", row.note)),
        (_, false) if row.unmeasured => {
            Requirement::abort(&row.mode.id, format!("{what}: not measured: {}", row.note))
        }
        (_, false) => Requirement::fail(&row.mode.id, format!("{what}: {}", row.note)),
    }
}

/// Whether the Service got no address because the cloud controller refused it (a `Warning`
/// event about the Service), as opposed to nobody answering at all.
fn refused_by_the_cloud(no_address: &Requirement) -> bool {
    no_address.status == crate::outcome::Status::Fail
        && no_address.details.iter().any(|e| e.starts_with("Warning "))
}

/// `preservation`: which measured modes show the client address on every connection.
/// Nothing measured decides nothing: ABORT, never a pass.
fn summary(rows: &[Row], annotations: &[(String, String)]) -> Requirement {
    let measured: Vec<&Row> = rows.iter().filter(|r| r.class.is_some()).collect();
    if measured.is_empty() {
        return Requirement::abort(
            PRESERVATION,
            format!(
                "nothing was measured: no mode got a source address to classify ({})",
                rows.iter()
                    .map(|r| format!("{}: {}", r.mode.id, r.note))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        );
    }
    let preserving: Vec<&str> = measured
        .iter()
        .filter(|r| r.class.as_ref().is_some_and(|c| c.key() == "preserved"))
        .map(|r| r.mode.id.as_str())
        .collect();
    let undecided: Vec<&Row> = measured
        .iter()
        .copied()
        .filter(|r| r.class.as_ref().is_some_and(|c| c.key() == "nat-kept-port"))
        .collect();
    if preserving.is_empty() && !undecided.is_empty() {
        return Requirement::abort(
            PRESERVATION,
            format!(
                "not decided: with {} the backend saw {}, not this machine's address, with the \
                 source port of our connection kept: this machine's address behind a NAT, or \
                 an SNAT that keeps ports; run with --client-ip <the address the load \
                 balancer sees from this machine> to decide",
                undecided
                    .iter()
                    .map(|r| r.mode.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                undecided
                    .iter()
                    .flat_map(|r| r.sources())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        );
    }
    if preserving.is_empty() {
        Requirement::warn(
            PRESERVATION,
            format!(
                "no measured mode shows the client address to the backend ({}){}",
                measured
                    .iter()
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
            PRESERVATION,
            format!(
                "the backend sees the client address with: {}",
                preserving.join(", ")
            ),
        )
    }
}

async fn measure(
    ctx: &CheckContext,
    namespace: &str,
    mode: &Mode,
    address: Result<LbAddress, Requirement>,
    nodes: &[NodeAddress],
) -> Row {
    let mut row = Row {
        mode: mode.clone(),
        address: None,
        reachable: false,
        sampled: 0,
        samples: Vec::new(),
        class: None,
        note: String::new(),
        unmeasured: false,
    };
    let address = match address {
        Ok(a) => a,
        Err(r) => {
            // A cloud controller that refused the Service (a Warning event such as
            // SyncLoadBalancerFailed: e.g. an OVN load balancer refusing the PROXY protocol
            // annotation) has decided this mode; silence decides nothing.
            row.unmeasured = !refused_by_the_cloud(&r);
            row.note = r.message;
            return row;
        }
    };
    row.address = Some(address.host.clone());
    let probe = probe(
        ctx,
        namespace,
        &format!("probe-{}", mode.id),
        &address,
        "/clientip",
    )
    .await;
    match probe.result {
        Ok(()) => {}
        Err(ProbeError::Environment(e)) | Err(ProbeError::Bypassed(e)) => {
            row.note = e;
            row.unmeasured = true;
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
    row.sampled = probe.sampled;
    // The load balancer's addresses: what the connections reached, and the name resolved
    // now that it answers.
    let mut lb_ips = resolve(&address.host).await;
    lb_ips.extend(probe.answers.iter().filter_map(|a| a.peer));
    let given = ctx.options.workload.client_ip;
    let mut unexpected = Vec::new();
    for answer in &probe.answers {
        let observed = if mode.annotated {
            match parse_proxy_answer(&answer.body) {
                (Some(header), _) => Some(header),
                (None, remote) => {
                    row.note = format!(
                        "the backend got no PROXY header (answer: {})",
                        answer.body.trim()
                    );
                    if let Some(remote) = remote {
                        row.samples.push(Sample {
                            source: remote,
                            class: SourceClass::Other,
                        });
                    }
                    return row;
                }
            }
        } else {
            parse_source(&answer.body)
        };
        let Some((source, port)) = observed else {
            unexpected.push(answer.body.trim().to_string());
            continue;
        };
        let client = ClientEvidence {
            given,
            local: answer.local,
        };
        row.samples.push(Sample {
            source,
            class: classify(source, port, client, nodes, &lb_ips),
        });
    }
    if let Some(body) = unexpected.first() {
        row.note = format!("unexpected answer from the backend: {body:?}");
        return row;
    }
    let mut classes: Vec<String> = Vec::new();
    for s in &row.samples {
        let d = s.class.describe();
        if !classes.contains(&d) {
            classes.push(d);
        }
    }
    let key = row.samples.first().map(|s| s.class.key());
    row.class = match classes.len() {
        0 => None,
        1 => row.samples.first().map(|s| s.class.clone()),
        _ => Some(SourceClass::Mixed {
            key: if row.samples.iter().all(|s| Some(s.class.key()) == key) {
                key.unwrap_or("mixed")
            } else {
                "mixed"
            },
            classes,
        }),
    };
    let client = given
        .map(|ip| format!("{ip} (--client-ip)"))
        .or_else(|| {
            probe
                .answers
                .first()
                .and_then(|a| a.local)
                .map(|l| l.ip().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    row.note = format!("client address {client} ({})", probe.vantage.describe());
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn node_at(what: &str, addr: &str) -> NodeAddress {
        NodeAddress {
            node: "w1".into(),
            ip: ip(addr),
            what: what.into(),
        }
    }

    #[test]
    fn classification() {
        let nodes = vec![
            node_at("InternalIP", "10.0.0.11"),
            node_at("the gateway of its pod CIDR 10.244.1.0/24", "10.244.1.1"),
        ];
        let lb = vec![ip("203.0.113.7")];
        let client = ClientEvidence {
            given: None,
            local: Some("198.51.100.2:40000".parse().unwrap()),
        };
        let class = |src: &str, port: Option<u16>| classify(ip(src), port, client, &nodes, &lb);
        assert_eq!(class("198.51.100.2", Some(40000)), SourceClass::Preserved);
        assert_eq!(
            class("10.0.0.11", Some(40000)),
            SourceClass::Node {
                node: "w1".into(),
                what: "InternalIP 10.0.0.11".into()
            }
        );
        // kube-proxy's MASQUERADE out of the pod bridge keeps the port: still the node.
        assert_eq!(class("10.244.1.1", Some(40000)).key(), "node-snat");
        assert_eq!(class("203.0.113.7", Some(1234)), SourceClass::LoadBalancer);
        // A proxy opens a connection of its own (another port); a NAT in front of the
        // client keeps the port of our connection.
        assert_eq!(class("10.1.2.3", Some(55555)), SourceClass::Other);
        assert_eq!(class("10.1.2.3", None), SourceClass::Other);
        assert_eq!(
            class("192.0.2.99", Some(40000)),
            SourceClass::PreservedBehindNat
        );
        // --client-ip decides: the port rule is not needed then.
        let given = ClientEvidence {
            given: Some(ip("192.0.2.99")),
            ..client
        };
        assert_eq!(
            classify(ip("192.0.2.99"), None, given, &nodes, &lb),
            SourceClass::Preserved
        );
        assert_eq!(
            classify(ip("10.1.2.3"), Some(40000), given, &nodes, &lb),
            SourceClass::Other
        );
    }

    #[test]
    fn node_evidence_covers_pod_network_gateways_and_cni_annotations() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "w1", "annotations": {
                "projectcalico.org/IPv4IPIPTunnelAddr": "192.168.5.1",
                "network.cilium.io/ipv4-cilium-host": "10.0.1.77",
                "projectcalico.org/IPv4Address": "10.0.0.11/24"}},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]},
            "status": {"addresses": [
                {"type": "InternalIP", "address": "10.0.0.11"},
                {"type": "Hostname", "address": "w1"}]}
        }))
        .unwrap();
        let found: Vec<String> = node_addresses(&[node])
            .iter()
            .map(|n| n.ip.to_string())
            .collect();
        for expected in [
            "10.0.0.11",
            "10.244.1.0",
            "10.244.1.1",
            "fd00:10:244:1::",
            "fd00:10:244:1::1",
            "192.168.5.1",
            "10.0.1.77",
        ] {
            assert!(
                found.contains(&expected.to_string()),
                "{expected}: {found:?}"
            );
        }
        assert_eq!(found.len(), 8, "{found:?}");
    }

    #[test]
    fn agnhost_answers() {
        assert_eq!(
            parse_source("10.0.0.1:43210"),
            Some((ip("10.0.0.1"), Some(43210)))
        );
        assert_eq!(
            parse_source("[2001:db8::1]:80\n"),
            Some((ip("2001:db8::1"), Some(80)))
        );
        assert_eq!(parse_source("10.0.0.1"), Some((ip("10.0.0.1"), None)));
        assert_eq!(parse_source("garbage"), None);
        assert_eq!(
            parse_proxy_answer(
                "proxy_protocol_addr=1.2.3.4 proxy_protocol_port=5555 remote_addr=10.0.0.5\n"
            ),
            (Some((ip("1.2.3.4"), Some(5555))), Some(ip("10.0.0.5")))
        );
        assert_eq!(
            parse_proxy_answer("proxy_protocol_addr= remote_addr=10.0.0.5"),
            (None, Some(ip("10.0.0.5")))
        );
    }

    #[test]
    fn nginx_listens_on_ipv6_only_where_pods_have_it() {
        let v4 = proxy_protocol_nginx_conf(false);
        assert!(v4.contains("listen 8080 proxy_protocol;"), "{v4}");
        assert!(!v4.contains("[::]"), "{v4}");
        let v6 = proxy_protocol_nginx_conf(true);
        assert!(v6.contains("listen [::]:8080 proxy_protocol;"), "{v6}");
        assert!(v6.contains("$proxy_protocol_port"), "{v6}");
    }
}
