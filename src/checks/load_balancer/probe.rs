//! The HTTP probes of the load balancer checks: from the machine running the suite
//! (reqwest, retried with backoff) or from a pod inside the cluster (agnhost's curl).

use super::*;

/// Where probes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Vantage {
    Suite,
    Cluster,
}

impl Vantage {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Vantage::Suite => "the machine running the suite",
            Vantage::Cluster => "a pod inside the cluster (--lb-probe-from cluster)",
        }
    }
}

#[derive(Debug)]
pub(super) enum ProbeError {
    /// The load balancer did not answer (a finding).
    Unreachable(String),
    /// The probe itself could not run (e.g. the probe pod did not start).
    Environment(String),
}

pub(super) struct Probe {
    pub(super) vantage: Vantage,
    pub(super) attempts: u32,
    /// The body of the first successful answer.
    pub(super) result: Result<String, ProbeError>,
    /// The probing client's own address where known (the probe pod's IP).
    pub(super) client_ip: Option<IpAddr>,
    pub(super) details: Vec<String>,
}

pub(super) async fn probe(
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
