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

pub(super) async fn run(ctx: &CheckContext) -> CheckOutcome {
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
    ctx.plan(services.iter().cloned().chain([PRESERVATION.to_string()]));
    if let Err(abort) = ip_body(ctx, &namespace, &modes, &node_addresses).await {
        outcome.push(abort);
    }
    release_services(ctx, &namespace, &services, &mut outcome).await;
    outcome
}

const PRESERVATION: &str = "preservation";

/// What one mode showed.
#[derive(Debug, Clone)]
struct Row {
    mode: Mode,
    address: Option<String>,
    reachable: bool,
    observed: Option<IpAddr>,
    class: Option<SourceClass>,
    note: String,
    /// Why nothing could be measured (no address, the probe itself could not run).
    unmeasured: bool,
}

/// Measures every mode, publishing each as it is decided, then the summary. `Err` is a
/// testcase-level abort (nothing could be set up).
async fn ip_body(
    ctx: &CheckContext,
    namespace: &str,
    modes: &[Mode],
    nodes: &[(String, IpAddr)],
) -> Result<(), Requirement> {
    let annotations = &ctx.options.workload.lb_annotations;
    let mut kinds = vec![BackendKind::Netexec];
    if !annotations.is_empty() {
        kinds.push(BackendKind::ProxyProtocol);
    }
    for kind in &kinds {
        create_backend(ctx, namespace, *kind)
            .await
            .map_err(|e| Requirement::abort("", e))?;
    }
    for mode in modes {
        let kind = if mode.annotated {
            BackendKind::ProxyProtocol
        } else {
            BackendKind::Netexec
        };
        let notes: &[(String, String)] = if mode.annotated { annotations } else { &[] };
        create_service(ctx, namespace, &mode.id, kind, Some(mode.policy), notes)
            .await
            .map_err(|e| Requirement::abort("", e))?;
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
        return Err(r);
    }
    let rows = futures::future::join_all(modes.iter().map(|m| async move {
        let row = measure(ctx, namespace, m, nodes).await;
        ctx.decide(mode_requirement(&row));
        row
    }))
    .await;

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
    }
    {
        let mut decisions = ctx.decisions.lock();
        decisions.fact("modes", json!(facts));
        decisions.fact(
            "node_addresses",
            json!(
                nodes
                    .iter()
                    .map(|(n, ip)| format!("{n}={ip}"))
                    .collect::<Vec<_>>()
            ),
        );
    }
    ctx.decide(summary(&rows, annotations).with_details(table));
    Ok(())
}

/// The requirement of one mode: information on what the backend saw; FAIL (a warning, the
/// testcase being informational) when the address did not answer; ABORT when nothing could
/// be measured.
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
    let observed = row
        .observed
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "-".into());
    match (&row.class, row.reachable) {
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

/// `preservation`: which measured modes show the client address. Nothing measured decides
/// nothing: ABORT, never a pass.
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
        .filter(|r| r.class == Some(SourceClass::Preserved))
        .map(|r| r.mode.id.as_str())
        .collect();
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
    nodes: &[(String, IpAddr)],
) -> Row {
    let mut row = Row {
        mode: mode.clone(),
        address: None,
        reachable: false,
        observed: None,
        class: None,
        note: String::new(),
        unmeasured: false,
    };
    let address = match wait_address(ctx, namespace, &mode.id).await {
        Ok((a, _)) => a,
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
}
