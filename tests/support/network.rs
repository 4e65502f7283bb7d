//! The simulated network plugin and the agnhost `netexec` server.
//!
//! - Reachability between pods follows the NetworkPolicies the plugin has *programmed*: the
//!   plugin lags the API server by [`NetworkProfile::programming_delay`] (each change of a
//!   NetworkPolicy becomes effective that much later), like a real CNI agent.
//! - Semantics (`networking.k8s.io/v1`): a pod is isolated for a direction when a policy of
//!   its namespace selects it with that direction in `policyTypes` (default `Ingress`, plus
//!   `Egress` when egress rules exist); an isolated pod accepts only what some rule allows
//!   (peers: `podSelector` = same namespace, `namespaceSelector`, both = AND, `ipBlock`
//!   with `except`, applied to pod IPs as most plugins do; `ports` with protocol, number and
//!   `endPort`). A connection needs the source's egress AND the destination's ingress.
//!   Replies of an accepted connection are never blocked.
//! - The [`NetworkProfile`] switches parts of this off to imitate non-compliant plugins, and
//!   injects faults a real data plane cannot be made to show on demand: a flapping agent, a
//!   sidecar answering dials, a server container that dies.
//! - The API server's pod proxy (`pods/{name}:{port}/proxy/...`) connects from outside the
//!   pod network (the API server's address) and is therefore subject to the target pod's
//!   ingress isolation. Behind the proxy, containers running `agnhost netexec` answer
//!   `/hostname` and `/dial?host=&port=&request=&protocol=&tries=` as documented
//!   (`{"responses": [...]}` / `{"errors": [...]}`, 200 if the last try succeeded, 417 if
//!   not, 400 for bad parameters); netexec's HTTP client gives up after 5 seconds.

use super::server::{Body, Shared};
use super::util::{ApiError, labels_of, name_of, namespace_of, str_at};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The address the API server's proxy connections come from.
const APISERVER_SOURCE: &str = "10.0.0.10";
/// netexec's `/dial` HTTP client timeout.
const NETEXEC_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// What a connection blocked by a policy looks like to the client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Blocked {
    /// Packets are dropped: the client times out (after at most this long; netexec's
    /// client gives up after 5 s).
    Drop(Duration),
    /// The plugin answers with a reset: "connection refused" at once.
    Reject,
}

/// Which parts of NetworkPolicy the simulated plugin enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkProfile {
    pub ingress: bool,
    pub egress: bool,
    /// `false`: a `namespaceSelector` matches every namespace.
    pub namespace_selectors: bool,
    /// `false`: `ipBlock.except` is ignored.
    pub ipblock_except: bool,
    pub blocked: Blocked,
    /// A cluster-wide deny outside NetworkPolicy (e.g. a Calico GlobalNetworkPolicy): no pod
    /// reaches another pod, whatever the NetworkPolicies say.
    pub pods_isolated: bool,
    /// The agent misses deletions: a deleted NetworkPolicy stays in force.
    pub keeps_deleted_policies: bool,
    /// How long a NetworkPolicy change takes to be in force.
    pub programming_delay: Duration,
    /// The API server cannot reach the pod network (a firewall between control plane and
    /// nodes, a broken konnectivity tunnel): its pod proxy answers 503 `error trying to
    /// reach service: dial tcp IP:PORT: i/o timeout` after this long (kube-apiserver dials
    /// with Go's default dialer: 30 s).
    pub apiserver_cannot_reach_pods: Option<Duration>,
    /// A flapping agent: it enforces for this many connections, then not for as many, and
    /// so on (a probe round of the matrix is 16 connections).
    pub flaps_every: Option<usize>,
    /// A proxy in every client pod (a service mesh sidecar) that answers each dial itself,
    /// with this hostname, whatever the policies say.
    pub dials_answered_by: Option<String>,
    /// The server container of namespace `*-netpol-a` dies when the first NetworkPolicy is
    /// in force and stays down (restartCount 1, not ready): it refuses every connection.
    pub server_dies: bool,
}

impl Default for NetworkProfile {
    fn default() -> Self {
        NetworkProfile::enforcing()
    }
}

impl NetworkProfile {
    /// Enforces all of NetworkPolicy (Calico, Cilium, ...).
    pub fn enforcing() -> Self {
        NetworkProfile {
            ingress: true,
            egress: true,
            namespace_selectors: true,
            ipblock_except: true,
            blocked: Blocked::Reject,
            pods_isolated: false,
            keeps_deleted_policies: false,
            programming_delay: Duration::from_millis(300),
            apiserver_cannot_reach_pods: None,
            flaps_every: None,
            dials_answered_by: None,
            server_dies: false,
        }
    }

    /// Stores policies but enforces nothing (plain Flannel).
    pub fn none() -> Self {
        NetworkProfile {
            ingress: false,
            egress: false,
            ..Self::enforcing()
        }
    }

    pub fn ingress_only() -> Self {
        NetworkProfile {
            egress: false,
            ..Self::enforcing()
        }
    }
}

/// The plugin's programmed view of the NetworkPolicies.
#[derive(Default)]
pub struct Plugin {
    programmed: Mutex<(u64, Vec<Value>)>,
    /// Connections dialled so far (for [`NetworkProfile::flaps_every`]).
    dials: std::sync::atomic::AtomicUsize,
}

impl Plugin {
    fn policies(&self) -> Vec<Value> {
        self.programmed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    fn program(&self, seq: u64, mut policies: Vec<Value>, keep_deleted: bool) {
        let mut p = self.programmed.lock().unwrap_or_else(|e| e.into_inner());
        if seq > p.0 {
            if keep_deleted {
                let key = |v: &Value| (namespace_of(v).to_string(), name_of(v).to_string());
                let old: Vec<Value> =
                    p.1.iter()
                        .filter(|o| !policies.iter().any(|n| key(n) == key(o)))
                        .cloned()
                        .collect();
                policies.extend(old);
            }
            *p = (seq, policies);
        }
    }
}

/// Follows NetworkPolicy changes and programs each snapshot after the profile's delay.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut rx = shared.store.lock().subscribe();
    let mut seq = 0u64;
    loop {
        match rx.recv().await {
            Ok(ev) if ev.resource != "networkpolicies" => continue,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
        seq += 1;
        let snapshot: Vec<Value> = shared
            .store
            .lock()
            .iter("networkpolicies")
            .cloned()
            .collect();
        let shared = shared.clone();
        let this = seq;
        tokio::spawn(async move {
            tokio::time::sleep(shared.spec.network.programming_delay).await;
            let keep = shared.spec.network.keeps_deleted_policies;
            let any = !snapshot.is_empty();
            shared.network.program(this, snapshot, keep);
            if any && shared.spec.network.server_dies {
                kill_server(&shared);
            }
        });
    }
}

/// A network endpoint: a pod (namespace, labels) or an address outside the pod network.
struct Endpoint {
    ip: Option<IpAddr>,
    pod: Option<(String, Map<String, Value>)>,
}

fn parse_cidr(cidr: &str) -> Option<(IpAddr, u32)> {
    let (ip, len) = cidr.split_once('/')?;
    Some((ip.parse().ok()?, len.parse().ok()?))
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, len)) = parse_cidr(cidr) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn selects(sel: Option<&Value>, labels: &Map<String, Value>) -> bool {
    super::selectors::label_selector_json_matches(sel, labels)
}

struct Eval<'a> {
    profile: &'a NetworkProfile,
    namespaces: HashMap<String, Map<String, Value>>,
    policies: Vec<Value>,
}

impl Eval<'_> {
    fn peer_matches(&self, policy_ns: &str, peer: &Value, other: &Endpoint) -> bool {
        if let Some(block) = peer.get("ipBlock") {
            let Some(ip) = other.ip else { return false };
            if !in_cidr(ip, str_at(block, "cidr")) {
                return false;
            }
            let except = block
                .get("except")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if self.profile.ipblock_except
                && except
                    .iter()
                    .any(|e| e.as_str().is_some_and(|c| in_cidr(ip, c)))
            {
                return false;
            }
            return true;
        }
        let Some((ns, labels)) = &other.pod else {
            return false;
        };
        let ns_ok = match peer.get("namespaceSelector") {
            None => ns == policy_ns,
            Some(_) if !self.profile.namespace_selectors => true,
            Some(sel) => {
                let empty = Map::new();
                selects(Some(sel), self.namespaces.get(ns).unwrap_or(&empty))
            }
        };
        let pod_ok = match peer.get("podSelector") {
            None => true,
            Some(sel) => selects(Some(sel), labels),
        };
        ns_ok && pod_ok
    }

    fn port_matches(rule: &Value, port: u16) -> bool {
        let Some(ports) = rule.get("ports").and_then(Value::as_array) else {
            return true;
        };
        if ports.is_empty() {
            return true;
        }
        ports.iter().any(|p| {
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            if proto != "TCP" {
                return false;
            }
            match p.get("port") {
                None => true,
                Some(Value::Number(n)) => {
                    let start = n.as_u64().unwrap_or(0);
                    let end = p.get("endPort").and_then(Value::as_u64).unwrap_or(start);
                    (start..=end).contains(&u64::from(port))
                }
                // Named ports are not emulated.
                Some(_) => false,
            }
        })
    }

    fn policy_types(policy: &Value) -> Vec<String> {
        match policy
            .get("spec")
            .and_then(|s| s.get("policyTypes"))
            .and_then(Value::as_array)
        {
            Some(t) => t
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            None => {
                let mut t = vec!["Ingress".to_string()];
                if policy.get("spec").and_then(|s| s.get("egress")).is_some() {
                    t.push("Egress".into());
                }
                t
            }
        }
    }

    /// Whether `pod` (the policy side) lets a connection from/to `other` through on `port`.
    fn allows(&self, direction: &str, pod: &Endpoint, other: &Endpoint, port: u16) -> bool {
        let enforced = match direction {
            "Ingress" => self.profile.ingress,
            _ => self.profile.egress,
        };
        let Some((ns, labels)) = &pod.pod else {
            return true;
        };
        if !enforced {
            return true;
        }
        let (rules_key, peers_key) = match direction {
            "Ingress" => ("ingress", "from"),
            _ => ("egress", "to"),
        };
        let mut isolated = false;
        for policy in self.policies.iter().filter(|p| namespace_of(p) == ns) {
            let spec = policy.get("spec").cloned().unwrap_or(json!({}));
            let pod_selector = spec.get("podSelector").cloned().unwrap_or(json!({}));
            if !selects(Some(&pod_selector), labels)
                || !Self::policy_types(policy).iter().any(|t| t == direction)
            {
                continue;
            }
            isolated = true;
            let rules = spec
                .get(rules_key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for rule in &rules {
                let peers = rule.get(peers_key).and_then(Value::as_array);
                let peer_ok = match peers {
                    None => true,
                    Some(p) if p.is_empty() => true,
                    Some(p) => p.iter().any(|peer| self.peer_matches(ns, peer, other)),
                };
                if peer_ok && Self::port_matches(rule, port) {
                    return true;
                }
            }
        }
        !isolated
    }
}

fn evaluator<'a>(shared: &'a Shared) -> Eval<'a> {
    let namespaces = shared
        .store
        .lock()
        .iter("namespaces")
        .map(|n| (name_of(n).to_string(), labels_of(n)))
        .collect();
    Eval {
        profile: &shared.spec.network,
        namespaces,
        policies: shared.network.policies(),
    }
}

fn pod_endpoint(pod: &Value) -> Endpoint {
    Endpoint {
        ip: str_at(pod, "status.podIP").parse().ok(),
        pod: Some((namespace_of(pod).to_string(), labels_of(pod))),
    }
}

/// Whether a TCP connection from `src` to `dst:port` gets through.
fn connects(shared: &Shared, src: &Endpoint, dst: &Endpoint, port: u16) -> bool {
    if shared.spec.network.pods_isolated && src.pod.is_some() && dst.pod.is_some() {
        return false;
    }
    let eval = evaluator(shared);
    eval.allows("Egress", src, dst, port) && eval.allows("Ingress", dst, src, port)
}

/// The TCP ports the pod's agnhost netexec containers listen on.
fn netexec_ports(pod: &Value) -> Vec<u16> {
    let containers = pod
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut ports = Vec::new();
    for c in containers {
        if !str_at(&c, "image").contains("agnhost") {
            continue;
        }
        let argv: Vec<String> = ["command", "args"]
            .iter()
            .filter_map(|k| c.get(*k).and_then(Value::as_array))
            .flatten()
            .filter_map(|x| x.as_str().map(String::from))
            .collect();
        if !argv.iter().any(|a| a == "netexec") {
            continue;
        }
        let mut port = 8080u16;
        for (i, a) in argv.iter().enumerate() {
            if let Some(v) = a.strip_prefix("--http-port=") {
                port = v.parse().unwrap_or(port);
            } else if a == "--http-port"
                && let Some(v) = argv.get(i + 1)
            {
                port = v.parse().unwrap_or(port);
            }
        }
        ports.push(port);
    }
    ports
}

/// [`NetworkProfile::server_dies`]: the server of namespace `*-netpol-a` goes down, as the
/// kubelet reports a container that exited and waits in CrashLoopBackOff.
fn kill_server(shared: &Shared) {
    let mut store = shared.store.lock();
    let Some(ns) = store
        .iter("pods")
        .find(|p| name_of(p) == "server" && namespace_of(p).ends_with("-netpol-a"))
        .map(|p| namespace_of(p).to_string())
    else {
        return;
    };
    store.modify("pods", &ns, "server", |p| {
        let status = &mut p["status"];
        if let Some(containers) = status["containerStatuses"].as_array_mut() {
            for c in containers {
                c["restartCount"] = 1.into();
                c["ready"] = false.into();
                c["state"] = json!({"waiting": {"reason": "CrashLoopBackOff"}});
            }
        }
        if let Some(conditions) = status["conditions"].as_array_mut() {
            for c in conditions {
                if matches!(c["type"].as_str(), Some("Ready" | "ContainersReady")) {
                    c["status"] = "False".into();
                }
            }
        }
    });
}

/// Whether the pod's containers are down ([`kill_server`]).
fn containers_down(pod: &Value) -> bool {
    pod["status"]["containerStatuses"]
        .as_array()
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["ready"] == false && c["restartCount"] != 0)
        })
}

fn running_pod_by_ip(shared: &Shared, ip: &str) -> Option<Value> {
    shared
        .store
        .lock()
        .iter("pods")
        .find(|p| str_at(p, "status.phase") == "Running" && str_at(p, "status.podIP") == ip)
        .cloned()
}

fn text(code: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn unreachable(ip: &str, port: u16) -> ApiError {
    ApiError::new(
        503,
        "ServiceUnavailable",
        format!("error trying to reach service: dial tcp {ip}:{port}: connect: connection refused"),
    )
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}[:port]/proxy/{path}`: the API server connects
/// to the pod and forwards the request.
pub(super) async fn pod_proxy(
    shared: &Shared,
    namespace: &str,
    target: &str,
    path: &str,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let parts: Vec<&str> = target.split(':').collect();
    let (name, port) = match parts.as_slice() {
        [name] => (*name, "80"),
        [name, port] | ["http", name, port] => (*name, *port),
        _ => return Err(ApiError::bad_request(format!("invalid pod name {target}"))),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid port in {target}")))?;
    let pod = shared
        .store
        .lock()
        .get("pods", namespace, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let ip = str_at(&pod, "status.podIP").to_string();
    if ip.is_empty() {
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("pod {name} has no IP address yet"),
        ));
    }
    if let Some(dial_timeout) = shared.spec.network.apiserver_cannot_reach_pods {
        tokio::time::sleep(dial_timeout).await;
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("error trying to reach service: dial tcp {ip}:{port}: i/o timeout"),
        ));
    }
    let apiserver = Endpoint {
        ip: APISERVER_SOURCE.parse().ok(),
        pod: None,
    };
    if !connects(shared, &apiserver, &pod_endpoint(&pod), port) {
        return Err(match shared.spec.network.blocked {
            Blocked::Reject => unreachable(&ip, port),
            Blocked::Drop(after) => {
                tokio::time::sleep(after).await;
                ApiError::new(
                    503,
                    "ServiceUnavailable",
                    format!("error trying to reach service: dial tcp {ip}:{port}: i/o timeout"),
                )
            }
        });
    }
    if !netexec_ports(&pod).contains(&port) {
        return Err(unreachable(&ip, port));
    }
    Ok(netexec(shared, &pod, path, query).await)
}

/// agnhost netexec's HTTP endpoints (those the suite uses).
async fn netexec(
    shared: &Shared,
    pod: &Value,
    path: &str,
    query: &HashMap<String, String>,
) -> Response<Body> {
    match path.trim_matches('/') {
        "hostname" | "hostName" => text(200, name_of(pod).to_string()),
        "dial" => dial(shared, pod, query).await,
        "" => text(200, format!("NOW: {}", super::util::now_rfc3339())),
        _ => text(404, "404 page not found\n".into()),
    }
}

async fn dial(shared: &Shared, client: &Value, query: &HashMap<String, String>) -> Response<Body> {
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    let (host, port, request) = (get("host"), get("port"), get("request"));
    let tries: usize = match get("tries").as_str() {
        "" => 1,
        t => match t.parse() {
            Ok(n) => n,
            Err(e) => return text(400, format!("tries parameter is invalid. {e}\n")),
        },
    };
    if request.is_empty() {
        return text(400, "request parameter not specified. <nil>\n".into());
    }
    if !matches!(get("protocol").to_lowercase().as_str(), "" | "http") {
        return text(400, format!("unsupported protocol. {}\n", get("protocol")));
    }
    let (Ok(ip), Ok(port)) = (host.parse::<IpAddr>(), port.parse::<u16>()) else {
        return text(
            400,
            format!("host and/or port param are invalid. address {host}:{port}: invalid\n"),
        );
    };
    let addr = if ip.is_ipv6() {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    let url = format!("http://{addr}/{request}");
    let mut responses = Vec::new();
    let mut errors = Vec::new();
    let mut last_ok = false;
    let network = &shared.spec.network;
    for _ in 0..tries {
        let server = running_pod_by_ip(shared, &ip.to_string());
        let dial = shared
            .network
            .dials
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let enforcing = network
            .flaps_every
            .is_none_or(|n| (dial / n).is_multiple_of(2));
        let reachable = server.as_ref().is_some_and(|s| {
            !enforcing || connects(shared, &pod_endpoint(client), &pod_endpoint(s), port)
        });
        let outcome = match (&server, reachable) {
            _ if network.dials_answered_by.is_some() => {
                Ok(network.dials_answered_by.clone().unwrap_or_default())
            }
            (Some(s), true) if containers_down(s) => Err(format!(
                "Get \"{url}\": dial tcp {addr}: connect: connection refused"
            )),
            (Some(s), true) if netexec_ports(s).contains(&port) => Ok(name_of(s).to_string()),
            (Some(_), true) => Err(format!(
                "Get \"{url}\": dial tcp {addr}: connect: connection refused"
            )),
            (Some(_), false) if shared.spec.network.blocked == Blocked::Reject => Err(format!(
                "Get \"{url}\": dial tcp {addr}: connect: connection refused"
            )),
            _ => {
                let wait = match shared.spec.network.blocked {
                    Blocked::Drop(d) => d.min(NETEXEC_DIAL_TIMEOUT),
                    Blocked::Reject => Duration::ZERO,
                };
                tokio::time::sleep(wait).await;
                Err(format!(
                    "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                ))
            }
        };
        last_ok = outcome.is_ok();
        match outcome {
            Ok(r) => responses.push(r),
            Err(e) => errors.push(e),
        }
    }
    let mut out = Map::new();
    if last_ok {
        out.insert("responses".into(), json!(responses));
    }
    if !errors.is_empty() {
        out.insert("errors".into(), json!(errors));
    }
    text(
        if last_ok { 200 } else { 417 },
        Value::Object(out).to_string(),
    )
}
