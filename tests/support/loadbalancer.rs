//! A simulated cloud controller manager (service controller) for Services of
//! `type: LoadBalancer`, and emulations of the images the load balancer checks run.
//!
//! CCM behaviour imitated (k8s.io/cloud-provider service controller): on a new
//! LoadBalancer Service it records `Normal EnsuringLoadBalancer`, builds the load balancer,
//! writes `status.loadBalancer.ingress[{ip, ipMode}]` (`Proxy` for a PROXY protocol pool, as
//! cloud-provider-openstack writes it, `VIP` otherwise) and records
//! `Normal EnsuredLoadBalancer`; when the cloud refuses it records
//! `Warning SyncLoadBalancerFailed` ("Error syncing load balancer: failed to ensure load
//! balancer: ...") and leaves the status empty. When the Service is gone, the load balancer
//! is deleted (the listener closes).
//!
//! The "load balancer" is real: it listens on a loopback address other than 127.0.0.1
//! (127.X.Y.Z; Linux routes all of 127/8 to `lo`) on the Service port, and answers each
//! connection as the selected backend pod would, with the source address the profile
//! ([`LbBehaviour`]) makes the backend see. Only loopback addresses are ever used.
//!
//! Image emulations ([`emulate_agnhost`], [`emulate_nginx`]): agnhost `netexec` answers
//! `/clientip` with `ip:port` of the peer it sees (Go `r.RemoteAddr`), `/` with a timestamp;
//! a PROXY header in front of a request makes Go's HTTP server answer 400. nginx with
//! `listen N proxy_protocol` (from the ConfigMap mounted into the pod) closes connections
//! without a PROXY header and otherwise answers its `return 200 "..."` with `$proxy_protocol_addr`,
//! `$proxy_protocol_port`, `$remote_addr` and `$remote_port` substituted. agnhost's `curl`
//! performs real GETs, to loopback addresses only.

use super::SimCluster;
use super::server::Shared;
use super::spec::{PodContext, ProgramResult};
use super::util::{name_of, namespace_of, now_rfc3339, obj_mut, random_u64, str_at, uid_of};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// The simulated cloud's load balancer service.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudLb {
    pub behaviour: LbBehaviour,
    /// How long building a load balancer takes.
    pub provision_delay: Duration,
}

impl CloudLb {
    pub fn new(behaviour: LbBehaviour) -> Self {
        CloudLb {
            behaviour,
            provision_delay: Duration::from_millis(300),
        }
    }
}

/// What kind of load balancer the cloud builds.
#[derive(Debug, Clone, PartialEq)]
pub enum LbBehaviour {
    /// Forwards packets (L3/DSR, like GCP/Azure or MetalLB): with
    /// `externalTrafficPolicy: Local` the backend sees the client's address; with `Cluster`
    /// kube-proxy SNATs to the node's address.
    PacketForwarding,
    /// A proxy (like Octavia amphorae): with `Local` the backend sees the load balancer's
    /// address, with `Cluster` a node's address. When the Service carries
    /// `<proxy_protocol_annotation>: "true"` it sends a PROXY protocol v1 header with the
    /// client's address in front of each connection.
    Proxying { proxy_protocol_annotation: String },
    /// The cloud refuses: no address, `SyncLoadBalancerFailed` events with this message.
    Failing { message: String },
}

pub const OCTAVIA_PROXY_PROTOCOL: &str = "loadbalancer.openstack.org/proxy-protocol";

const COMPONENT: &str = "service-controller";

/// A built load balancer; dropping it (Service deleted) stops the listener.
struct Built {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Built {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) async fn run(shared: Arc<Shared>) {
    let Some(cloud) = shared.spec.cloud_lb.clone() else {
        return;
    };
    let mut rx = shared.store.lock().subscribe();
    let mut built: HashMap<String, Built> = HashMap::new();
    loop {
        reconcile(&shared, &cloud, &mut built);
        loop {
            match rx.recv().await {
                Ok(ev) if ev.resource == "events" => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = rx.try_recv() {}
    }
}

fn reconcile(shared: &Arc<Shared>, cloud: &CloudLb, built: &mut HashMap<String, Built>) {
    let services: Vec<Value> = shared
        .store
        .lock()
        .iter("services")
        .filter(|s| str_at(s, "spec.type") == "LoadBalancer")
        .cloned()
        .collect();
    let live: std::collections::HashSet<String> =
        services.iter().map(|s| uid_of(s).to_string()).collect();
    // Services gone: delete their load balancers.
    built.retain(|uid, _| live.contains(uid));
    for svc in services {
        let uid = uid_of(&svc).to_string();
        if built.contains_key(&uid) {
            continue;
        }
        let task = tokio::spawn(ensure(shared.clone(), cloud.clone(), svc));
        built.insert(uid, Built { task });
    }
}

/// Allocates a free loopback address (127.X.Y.Z, never 127.0.0.1) and binds every port.
async fn allocate(ports: &[u16]) -> Option<(Ipv4Addr, Vec<tokio::net::TcpListener>)> {
    for _ in 0..50 {
        let r = random_u64();
        let ip = Ipv4Addr::new(
            127,
            10 + (r % 200) as u8,
            ((r >> 8) % 256) as u8,
            1 + ((r >> 16) % 254) as u8,
        );
        let mut listeners = Vec::new();
        for port in ports {
            match tokio::net::TcpListener::bind((ip, *port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() == ports.len() {
            return Some((ip, listeners));
        }
    }
    None
}

/// Whether the Service carries the annotation `key: "true"`.
fn annotation_true(svc: &Value, key: &str) -> bool {
    svc.get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        == Some("true")
}

async fn ensure(shared: Arc<Shared>, cloud: CloudLb, svc: Value) {
    let ns = namespace_of(&svc).to_string();
    let name = name_of(&svc).to_string();
    shared.store.lock().record_event(
        &svc,
        "Normal",
        "EnsuringLoadBalancer",
        "Ensuring load balancer",
        COMPONENT,
    );
    tokio::time::sleep(cloud.provision_delay).await;
    let ports: Vec<u16> = svc
        .get("spec")
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("port").and_then(Value::as_u64))
                .map(|p| p as u16)
                .collect()
        })
        .unwrap_or_default();
    let fail = |message: &str| {
        shared.store.lock().record_event(
            &svc,
            "Warning",
            "SyncLoadBalancerFailed",
            &format!("Error syncing load balancer: failed to ensure load balancer: {message}"),
            COMPONENT,
        );
    };
    let (ip, listeners) = match &cloud.behaviour {
        LbBehaviour::Failing { message } => {
            fail(message);
            return;
        }
        _ => match allocate(&ports).await {
            Some(x) => x,
            None => return fail("no free loopback address"),
        },
    };
    // cloud-provider-openstack writes ipMode Proxy for PROXY protocol pools (kube-proxy must
    // not short-cut them), VIP otherwise.
    let ip_mode = match &cloud.behaviour {
        LbBehaviour::Proxying {
            proxy_protocol_annotation,
        } if annotation_true(&svc, proxy_protocol_annotation) => "Proxy",
        _ => "VIP",
    };
    let updated = {
        let mut store = shared.store.lock();
        let current = store.get("services", &ns, &name).cloned();
        match current {
            Some(cur) if uid_of(&cur) == uid_of(&svc) => {
                let updated = store.modify("services", &ns, &name, |s| {
                    obj_mut(s, "status").insert(
                        "loadBalancer".into(),
                        json!({"ingress": [{"ip": ip.to_string(), "ipMode": ip_mode}]}),
                    );
                });
                if let Some(u) = &updated {
                    store.record_event(
                        u,
                        "Normal",
                        "EnsuredLoadBalancer",
                        "Ensured load balancer",
                        COMPONENT,
                    );
                }
                updated.is_some()
            }
            _ => false,
        }
    };
    if !updated {
        return;
    }
    let mut tasks = Vec::new();
    for listener in listeners {
        let shared = shared.clone();
        let cloud = cloud.clone();
        let (ns, name) = (ns.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                let cloud = cloud.clone();
                let (ns, name) = (ns.clone(), name.clone());
                tokio::spawn(async move {
                    let _ = forward(shared, cloud, ns, name, stream, peer).await;
                });
            }
        }));
    }
    // Live until aborted (Service deleted): then the listeners close with this task.
    struct AbortAll(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortAll {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let _guard = AbortAll(tasks);
    std::future::pending::<()>().await;
}

fn is_ready_pod(p: &Value) -> bool {
    str_at(p, "status.phase") == "Running"
        && p.get("metadata")
            .and_then(|m| m.get("deletionTimestamp"))
            .is_none_or(Value::is_null)
        && p.get("status")
            .and_then(|s| s.get("conditions"))
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| str_at(c, "type") == "Ready" && str_at(c, "status") == "True")
            })
}

fn node_ip(store: &super::store::Store, node: &str) -> String {
    store
        .get("nodes", "", node)
        .and_then(|n| n.get("status"))
        .and_then(|s| s.get("addresses"))
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| str_at(x, "type") == "InternalIP"))
        .map(|x| str_at(x, "address").to_string())
        .unwrap_or_default()
}

/// What a backend pod is, as far as the emulation cares.
enum BackendImage {
    Netexec,
    /// nginx with the server block from its mounted ConfigMap.
    Nginx {
        conf: String,
    },
    Unknown,
}

fn backend_image(store: &super::store::Store, pod: &Value) -> BackendImage {
    let Some(c) = pod
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.first())
    else {
        return BackendImage::Unknown;
    };
    let image = str_at(c, "image");
    let args: Vec<&str> = c
        .get("args")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if image.contains("agnhost") && args.first() == Some(&"netexec") {
        return BackendImage::Netexec;
    }
    if image.contains("nginx") {
        // The ConfigMap mounted at /etc/nginx/conf.d.
        let mounts = c
            .get("volumeMounts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let volume = mounts
            .iter()
            .find(|m| str_at(m, "mountPath") == "/etc/nginx/conf.d")
            .map(|m| str_at(m, "name").to_string());
        let cm = volume.and_then(|v| {
            pod.get("spec")?
                .get("volumes")?
                .as_array()?
                .iter()
                .find(|x| str_at(x, "name") == v)
                .map(|x| str_at(x, "configMap.name").to_string())
        });
        let conf = cm
            .and_then(|cm| store.get("configmaps", namespace_of(pod), &cm).cloned())
            .and_then(|cm| {
                cm.get("data")?
                    .as_object()?
                    .values()
                    .filter_map(Value::as_str)
                    .next()
                    .map(String::from)
            })
            .unwrap_or_default();
        return BackendImage::Nginx { conf };
    }
    BackendImage::Unknown
}

async fn read_head(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    buf
}

fn http_response(code: u16, reason: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// One connection through the load balancer to a backend pod.
async fn forward(
    shared: Arc<Shared>,
    cloud: CloudLb,
    ns: String,
    name: String,
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
) -> std::io::Result<()> {
    let lb = stream.local_addr()?;
    let (svc, pod, node_address, backend) = {
        let store = shared.store.lock();
        let Some(svc) = store.get("services", &ns, &name).cloned() else {
            return Ok(());
        };
        let selector = svc
            .get("spec")
            .and_then(|s| s.get("selector"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let pods: Vec<Value> = store
            .iter("pods")
            .filter(|p| namespace_of(p) == ns && is_ready_pod(p))
            .filter(|p| {
                !selector.is_empty()
                    && selector.iter().all(|(k, v)| {
                        p.get("metadata")
                            .and_then(|m| m.get("labels"))
                            .and_then(|l| l.get(k))
                            == Some(v)
                    })
            })
            .cloned()
            .collect();
        if pods.is_empty() {
            // No healthy member: the load balancer resets the connection.
            return Ok(());
        }
        let pod = pods[(random_u64() % pods.len() as u64) as usize].clone();
        let node_address = node_ip(&store, str_at(&pod, "spec.nodeName"));
        let backend = backend_image(&store, &pod);
        (svc, pod, node_address, backend)
    };
    let _ = pod;
    let local = str_at(&svc, "spec.externalTrafficPolicy") == "Local";
    let lb_ip = lb.ip().to_string();
    let ephemeral = 30000 + (random_u64() % 30000) as u16;
    let (source, header) = match &cloud.behaviour {
        LbBehaviour::PacketForwarding if local => (peer.ip().to_string(), None),
        LbBehaviour::Proxying {
            proxy_protocol_annotation,
        } => {
            let header = annotation_true(&svc, proxy_protocol_annotation).then(|| {
                format!(
                    "PROXY TCP4 {} {} {} {}\r\n",
                    peer.ip(),
                    lb.ip(),
                    peer.port(),
                    lb.port()
                )
            });
            let source = if local { lb_ip.clone() } else { node_address };
            (source, header)
        }
        _ => (node_address, None),
    };
    let head = read_head(&mut stream).await;
    let request = String::from_utf8_lossy(&head).to_string();
    let path = request
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let response = match backend {
        BackendImage::Netexec => {
            if header.is_some() {
                // Go's net/http sees "PROXY TCP4 ..." as a malformed request line.
                Some(http_response(400, "Bad Request", "400 Bad Request"))
            } else if path == "/clientip" {
                Some(http_response(200, "OK", &format!("{source}:{ephemeral}")))
            } else if path == "/" {
                Some(http_response(200, "OK", &now_rfc3339()))
            } else {
                Some(http_response(404, "Not Found", "404 page not found\n"))
            }
        }
        BackendImage::Nginx { conf } => {
            let wants_proxy = conf.lines().any(|l| {
                let l = l.trim();
                l.starts_with("listen") && l.contains("proxy_protocol")
            });
            let template = conf
                .lines()
                .find_map(|l| {
                    let l = l.trim();
                    let rest = l.strip_prefix("return 200 \"")?;
                    Some(rest.strip_suffix("\";")?.replace("\\n", "\n"))
                })
                .unwrap_or_default();
            match (&header, wants_proxy) {
                // nginx: "broken header" -> connection closed without an answer.
                (None, true) => None,
                // A PROXY line where nginx expects HTTP: 400.
                (Some(_), false) => Some(http_response(400, "Bad Request", "400 Bad Request")),
                (h, _) => {
                    let (paddr, pport) = h
                        .as_ref()
                        .and_then(|h| {
                            let f: Vec<&str> = h.split_whitespace().collect();
                            Some((f.get(2)?.to_string(), f.get(4)?.to_string()))
                        })
                        .unwrap_or_default();
                    let body = template
                        .replace("$proxy_protocol_addr", &paddr)
                        .replace("$proxy_protocol_port", &pport)
                        .replace("$remote_addr", &source)
                        .replace("$remote_port", &ephemeral.to_string());
                    Some(http_response(200, "OK", &body))
                }
            }
        }
        BackendImage::Unknown => None,
    };
    if let Some(response) = response {
        stream.write_all(response.as_bytes()).await?;
    }
    stream.shutdown().await
}

// ------------------------------------------------------------------ image emulations

fn pod_alive(ctx: &PodContext) -> bool {
    let uid = uid_of(&ctx.pod).to_string();
    ctx.store
        .lock()
        .get("pods", &ctx.namespace, &ctx.pod_name)
        .is_some_and(|p| {
            uid_of(p) == uid
                && p.get("metadata")
                    .and_then(|m| m.get("deletionTimestamp"))
                    .is_none_or(Value::is_null)
        })
}

/// Registers the agnhost emulation for images starting with `prefix`: `netexec` keeps
/// running until its pod is deleted (the load balancer answers for it); `curl` really GETs
/// its URL (loopback targets only), retrying like `--retry-all-errors --retry-max-time`.
pub fn emulate_agnhost(sim: &SimCluster, prefix: &str) {
    sim.register_program(prefix, |ctx| {
        let argv = ctx.argv();
        if argv.first().is_some_and(|a| a.ends_with("curl")) {
            return curl(&argv);
        }
        // A server: runs until the pod goes away.
        while pod_alive(ctx) {
            std::thread::sleep(Duration::from_millis(100));
        }
        ProgramResult::ok("")
    });
}

/// Registers the nginx emulation: a server that runs until its pod is deleted.
pub fn emulate_nginx(sim: &SimCluster, prefix: &str) {
    sim.register_program(prefix, |ctx| {
        while pod_alive(ctx) {
            std::thread::sleep(Duration::from_millis(100));
        }
        ProgramResult::ok("")
    });
}

/// curl with one transfer per `--next` section, each with its own options (`--fail`,
/// `--retry-max-time`, `-w` with `%{http_code}`, `%{local_ip}`, `%{local_port}`); the exit
/// code is the last transfer's, as curl's.
fn curl(argv: &[String]) -> ProgramResult {
    let mut output = String::new();
    let mut code = 0;
    for section in argv[1..].split(|a| a == "--next") {
        let (out, exit) = curl_transfer(section);
        output.push_str(&out);
        code = exit;
    }
    if code == 0 {
        ProgramResult::ok(output)
    } else {
        ProgramResult::fail(code, output)
    }
}

fn curl_transfer(argv: &[String]) -> (String, i32) {
    let value = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let max_time: u64 = value("--retry-max-time")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fail_on_error = argv.iter().any(|a| a == "--fail");
    let write_out = value("-w").unwrap_or_default();
    let Some(url) = argv.iter().rev().find(|a| a.starts_with("http://")) else {
        return ("curl: no URL specified\n".into(), 2);
    };
    let rest = &url["http://".len()..];
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Ok(addr) = hostport.parse::<SocketAddr>() else {
        return (format!("curl: (6) Could not resolve host: {hostport}\n"), 6);
    };
    if !matches!(addr.ip(), IpAddr::V4(v4) if v4.is_loopback()) {
        // The simulator only ever targets loopback addresses.
        return (
            format!("curl: (7) Failed to connect to {hostport}: simulator allows loopback only\n"),
            7,
        );
    }
    let write = |code: &str, local: Option<SocketAddr>| {
        write_out
            .replace("%{http_code}", code)
            .replace(
                "%{local_ip}",
                &local.map(|l| l.ip().to_string()).unwrap_or_default(),
            )
            .replace(
                "%{local_port}",
                &local.map(|l| l.port().to_string()).unwrap_or_default(),
            )
    };
    let started = Instant::now();
    let mut error;
    loop {
        match get(addr, hostport, path) {
            Ok((code, _, local)) if fail_on_error && code >= 400 => {
                error = format!("curl: (22) The requested URL returned error: {code}");
                if started.elapsed() >= Duration::from_secs(max_time) {
                    return (
                        format!("{error}\n{}", write(&code.to_string(), Some(local))),
                        22,
                    );
                }
            }
            Ok((code, body, local)) => {
                return (
                    format!("{body}{}", write(&code.to_string(), Some(local))),
                    0,
                );
            }
            Err(e) => error = e,
        }
        if started.elapsed() >= Duration::from_secs(max_time) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    (format!("{error}\n{}", write("000", None)), 7)
}

/// One GET: (HTTP code, body, the connection's local address).
fn get(addr: SocketAddr, host: &str, path: &str) -> Result<(u16, String, SocketAddr), String> {
    let fail = |e: std::io::Error| {
        format!(
            "curl: (7) Failed to connect to {} port {} after 0 ms: {e}",
            addr.ip(),
            addr.port()
        )
    };
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(fail)?;
    let local = s.local_addr().map_err(fail)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
    )
    .map_err(fail)?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .map_err(|e| format!("curl: (56) Recv failure: {e}"))?;
    if raw.is_empty() {
        return Err("curl: (52) Empty reply from server".into());
    }
    let code = raw
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("curl: (1) Received HTTP/0.9 when not allowed")?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((code, body.to_string(), local))
}
