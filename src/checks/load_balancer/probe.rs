//! The HTTP probes of the load balancer checks: from the machine running the suite (HTTP/1.1
//! over a TCP connection of our own, so that its local address is known; retried with
//! backoff until the first answer) or from a pod inside the cluster (agnhost's curl). After
//! the first answer [`SAMPLES`] connections in all are made: one sample never decides.

use super::*;
use crate::cluster::config::IN_CLUSTER_SUBJECT;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

/// Connections sampled per address once it has answered (the first answer included).
pub const SAMPLES: u32 = 5;
/// Largest answer read from a backend, bytes.
const MAX_BODY: usize = 64 * 1024;
/// Marks the end of one curl transfer in the probe pod's log (curl's `-w`).
const MARKER: &str = "@@scs-kaas-check-probe";

/// Where probes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Vantage {
    /// The machine running the suite, outside the cluster.
    Suite,
    /// The suite itself runs in a pod of the cluster under test (in-cluster configuration).
    SuiteInPod,
    /// A probe pod (`--lb-probe-from cluster`).
    Cluster,
}

impl Vantage {
    pub(super) fn of(ctx: &CheckContext) -> Vantage {
        match ctx.options.workload.lb_probe_from {
            ProbeFrom::Cluster => Vantage::Cluster,
            ProbeFrom::Suite if ctx.subject.info.subject == IN_CLUSTER_SUBJECT => {
                Vantage::SuiteInPod
            }
            ProbeFrom::Suite => Vantage::Suite,
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Vantage::Suite => "the machine running the suite",
            Vantage::SuiteInPod => "the suite's own pod inside the cluster",
            Vantage::Cluster => "a pod inside the cluster (--lb-probe-from cluster)",
        }
    }

    fn inside_the_cluster(self) -> bool {
        self != Vantage::Suite
    }
}

#[derive(Debug)]
pub(super) enum ProbeError {
    /// The load balancer did not answer (a finding).
    Unreachable(String),
    /// The probe itself could not run (e.g. the probe pod did not start).
    Environment(String),
    /// The vantage point cannot reach the load balancer at all: an `ipMode: VIP` address
    /// probed from inside the cluster goes straight to the endpoints. Nothing was sent.
    Bypassed(String),
}

/// One answered connection.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    /// The body of the HTTP 200 answer.
    pub(super) body: String,
    /// The local address of the connection (ours, or the probe pod's as curl saw it).
    pub(super) local: Option<SocketAddr>,
    /// The address connected to (the load balancer's, a hostname resolved).
    pub(super) peer: Option<IpAddr>,
}

pub(super) struct Probe {
    pub(super) vantage: Vantage,
    /// Attempts until the first answer.
    pub(super) attempts: u32,
    /// Every answered connection: the first, then the samples.
    pub(super) answers: Vec<Answer>,
    /// Connections sampled once the first answer came (the first included).
    pub(super) sampled: u32,
    /// `Ok` once an answer came.
    pub(super) result: Result<(), ProbeError>,
    pub(super) details: Vec<String>,
}

impl Probe {
    fn failed(vantage: Vantage, error: ProbeError) -> Probe {
        Probe {
            vantage,
            attempts: 0,
            answers: Vec::new(),
            sampled: 0,
            result: Err(error),
            details: Vec::new(),
        }
    }

    /// "`answered` of `sampled` connections".
    pub(super) fn ratio(&self) -> String {
        format!(
            "{} of {} connections answered",
            self.answers.len(),
            self.sampled
        )
    }
}

/// Probes `path` on `address` from the vantage point of this run: until the first answer
/// (at most `--lb-timeout`), then [`SAMPLES`] connections in all.
pub(super) async fn probe(
    ctx: &CheckContext,
    namespace: &str,
    pod_name: &str,
    address: &LbAddress,
    path: &str,
) -> Probe {
    let vantage = Vantage::of(ctx);
    if vantage.inside_the_cluster() && address.bypassed_in_cluster() {
        return Probe::failed(
            vantage,
            ProbeError::Bypassed(format!(
                "not probed from {}: the address {} has ipMode {} (status.loadBalancer.ingress), \
                 so kube-proxy routes traffic from inside the cluster straight to the \
                 endpoints and the load balancer is never used; probe from a machine outside \
                 the cluster (run the suite there, --lb-probe-from suite)",
                vantage.describe(),
                address.host,
                address.ip_mode.as_deref().unwrap_or("VIP (unset)"),
            )),
        );
    }
    match vantage {
        Vantage::Suite | Vantage::SuiteInPod => probe_from_suite(ctx, vantage, address, path).await,
        Vantage::Cluster => probe_from_cluster(ctx, namespace, pod_name, &address.url(path)).await,
    }
}

/// `error` with its causes, on one line.
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

/// One GET on a new TCP connection (connect within 5 s, answer within 10 s). `Err` says why
/// there was no HTTP 200 answer.
async fn get_once(address: &LbAddress, path: &str) -> Result<Answer, String> {
    let exchange = async {
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect((address.host.as_str(), SERVICE_PORT as u16)),
        )
        .await
        .map_err(|_| "connect: no answer within 5s".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
        let local = stream.local_addr().ok();
        let peer = stream.peer_addr().ok().map(|a| a.ip());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| error_chain(&e))?;
        let connection = tokio::spawn(connection);
        let authority = address
            .url("")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let request = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        connection.abort();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        Ok(Answer {
            body: String::from_utf8_lossy(&body).into_owned(),
            local,
            peer,
        })
    };
    tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .map_err(|_| "no answer within 15s".to_string())?
}

/// GETs from here; after a failure tries again with a growing backoff until `--lb-timeout`
/// has passed (a new load balancer may take a moment to forward), then samples.
async fn probe_from_suite(
    ctx: &CheckContext,
    vantage: Vantage,
    address: &LbAddress,
    path: &str,
) -> Probe {
    let url = address.url(path);
    let deadline = ctx.options.workload.lb_timeout;
    let started = Instant::now();
    let mut backoff = Duration::from_millis(500);
    let mut probe = Probe::failed(vantage, ProbeError::Unreachable(String::new()));
    let first = loop {
        probe.attempts += 1;
        let error = match get_once(address, path).await {
            Ok(answer) => break answer,
            Err(e) => e,
        };
        ctx.log.info(format!(
            "GET {url} attempt {} failed: {error}",
            probe.attempts
        ));
        probe
            .details
            .push(format!("attempt {}: {error}", probe.attempts));
        if probe.details.len() > 10 {
            probe.details.remove(0);
        }
        if started.elapsed() + backoff >= deadline {
            probe.result = Err(ProbeError::Unreachable(error));
            return probe;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(15));
    };
    probe.answers.push(first);
    probe.sampled = 1;
    for sample in 2..=SAMPLES {
        probe.sampled += 1;
        match get_once(address, path).await {
            Ok(answer) => probe.answers.push(answer),
            Err(e) => {
                ctx.log.info(format!(
                    "GET {url} sample {sample} of {SAMPLES} failed: {e}"
                ));
                probe.details.push(format!("sample {sample}: {e}"));
            }
        }
    }
    probe.result = Ok(());
    probe
}

/// curl's arguments: the first transfer retried until `retry_secs`, then the samples
/// (`--next`: options per transfer), each failing on HTTP errors (`--fail`: a proxy's 503
/// page is no answer) and ending with a [`MARKER`] line.
fn curl_args(url: &str, retry_secs: u64) -> Vec<String> {
    let transfer = |retry: bool| {
        let mut args: Vec<String> = [
            "-sS",
            "--fail",
            "--connect-timeout",
            "5",
            "--max-time",
            "10",
        ]
        .map(String::from)
        .to_vec();
        if retry {
            args.extend(
                [
                    "--retry",
                    "1000",
                    "--retry-all-errors",
                    "--retry-max-time",
                    &retry_secs.max(1).to_string(),
                ]
                .map(String::from),
            );
        }
        args.extend([
            "-w".to_string(),
            format!("\n{MARKER} local=%{{local_ip}} port=%{{local_port}} code=%{{http_code}}\n"),
            url.to_string(),
        ]);
        args
    };
    let mut args = transfer(true);
    for _ in 1..SAMPLES {
        args.push("--next".into());
        args.extend(transfer(false));
    }
    args
}

/// The transfers in a probe pod's log: (answer body, local address, HTTP code) each.
fn parse_curl_log(log: &str) -> Vec<(String, Option<SocketAddr>, String)> {
    let mut transfers = Vec::new();
    let mut body: Vec<&str> = Vec::new();
    for line in log.lines() {
        let Some(marker) = line.strip_prefix(MARKER) else {
            if !line.starts_with("curl: (") {
                body.push(line);
            }
            continue;
        };
        let field = |key: &str| {
            marker
                .split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .unwrap_or_default()
        };
        let local = field("local=")
            .parse::<IpAddr>()
            .ok()
            .zip(field("port=").parse::<u16>().ok())
            .map(SocketAddr::from);
        transfers.push((body.join("\n"), local, field("code=").to_string()));
        body.clear();
    }
    transfers
}

/// Runs `curl` (from the agnhost image) in a pod: it retries the first transfer by itself
/// until `--lb-timeout`, then samples. The pod is watched until it ends; its log holds the
/// answers.
async fn probe_from_cluster(
    ctx: &CheckContext,
    namespace: &str,
    pod_name: &str,
    url: &str,
) -> Probe {
    let cluster = ctx.cluster();
    let lb_timeout = ctx.options.workload.lb_timeout;
    let fail = |e: String| Probe::failed(Vantage::Cluster, ProbeError::Environment(e));
    let mut container = restricted_container("curl", &ctx.options.workload.agnhost_image);
    container.command = Some(vec!["curl".into()]);
    container.args = Some(curl_args(url, lb_timeout.as_secs()));
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
    let deadline = lb_timeout
        + ctx.options.workload.pod_start_timeout
        + Duration::from_secs(15 * SAMPLES as u64);
    let ended = wait::object(&pods, pod_name, deadline, |p| {
        let phase = p?.status.as_ref()?.phase.as_deref()?;
        matches!(phase, "Succeeded" | "Failed").then_some(())
    })
    .await;
    match ended {
        Ok(()) => {}
        Err(wait::Timeout {
            refused: Some(e), ..
        }) => return fail(format!("cannot watch the probe pod {pod_name}: {e}")),
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
    let mut probe = Probe::failed(Vantage::Cluster, ProbeError::Unreachable(String::new()));
    probe.attempts = 1;
    probe.details = log.lines().map(String::from).take(20).collect();
    let transfers = parse_curl_log(&log);
    let Some((_, _, first_code)) = transfers.first() else {
        return fail(format!(
            "the probe pod {pod_name} wrote no result: {}",
            log.lines().last().unwrap_or("empty log")
        ));
    };
    if first_code != "200" {
        let last = log
            .lines()
            .rev()
            .find(|l| l.starts_with("curl:"))
            .map(String::from)
            .unwrap_or_else(|| format!("HTTP {first_code}"));
        probe.result = Err(ProbeError::Unreachable(last));
        return probe;
    }
    probe.sampled = transfers.len() as u32;
    probe.answers = transfers
        .into_iter()
        .filter(|(_, _, code)| code == "200")
        .map(|(body, local, _)| Answer {
            body,
            local,
            peer: None,
        })
        .collect();
    probe.result = Ok(());
    probe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_fails_on_http_errors_and_samples_without_retries() {
        let args = curl_args("http://203.0.113.5:80/clientip", 30);
        assert_eq!(
            args.iter().filter(|a| *a == "--fail").count(),
            SAMPLES as usize
        );
        assert_eq!(args.iter().filter(|a| *a == "--retry").count(), 1);
        assert_eq!(
            args.iter().filter(|a| *a == "--next").count(),
            SAMPLES as usize - 1
        );
    }

    #[test]
    fn curl_log_yields_each_transfer() {
        let log = format!(
            "10.0.0.7:41000\n{MARKER} local=10.244.1.5 port=41000 code=200\n\
             curl: (22) The requested URL returned error: 503\n\n{MARKER} local=10.244.1.5 port=41002 code=503\n"
        );
        let t = parse_curl_log(&log);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].0, "10.0.0.7:41000");
        assert_eq!(t[0].1, Some("10.244.1.5:41000".parse().unwrap()));
        assert_eq!(t[1].2, "503");
    }
}
