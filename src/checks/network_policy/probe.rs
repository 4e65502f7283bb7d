//! Probing: a client pod's agnhost `netexec` dials a server through its `/dial` endpoint,
//! reached through the API server's pod proxy subresource
//! (`GET /api/v1/namespaces/{ns}/pods/{client}:8080/proxy/dial?host=..&port=..`).
//! netexec answers `{"responses": [...]}` when the connection worked and `{"errors": [...]}`
//! when it did not (its HTTP client gives up after 5 s); newer versions answer 417 for the
//! latter, older ones 200, so the body decides. The dial asks the server for its hostname
//! (`request=hostname`): a connection counts only if the answer is the server pod's own
//! name, so a proxy or sidecar answering in its place cannot turn a block into a pass.

use super::scenarios::{CLIENT_PORT, Cell, SERVER};
use crate::cluster::Cluster;
use std::collections::BTreeMap;
use std::time::Duration;

/// Longer than the API server's own limit, so that its answer (e.g. `503 error trying to
/// reach service: dial tcp ...: i/o timeout`) arrives and is kept: kube-apiserver dials pods
/// with Go's default transport dialer (30 s connect timeout, `utilnet.SetTransportDefaults`),
/// behind which netexec's HTTP client gives up after 5 s. The request goes out without
/// kube's retries ([`Cluster::no_retry`]), which would repeat a 503 until this passes.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(40);

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Connected,
    /// The client's connection failed (the error netexec reported).
    Refused(String),
    /// The probe itself failed (API server proxy error, timeout, unexpected answer).
    Unknown(String),
}

impl Observed {
    pub fn describe(&self) -> String {
        match self {
            Observed::Connected => "allowed".into(),
            Observed::Refused(_) => "denied".into(),
            Observed::Unknown(why) => format!("unknown ({why})"),
        }
    }
}

pub fn describe_expected(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "denied" }
}

/// Where the probe pods are.
pub struct Targets {
    /// Namespace name per `Ns` (A, B).
    pub namespaces: [String; 2],
    /// Server pod IP per `Ns` (A, B).
    pub server_ips: [String; 2],
}

fn idx(ns: super::scenarios::Ns) -> usize {
    match ns {
        super::scenarios::Ns::A => 0,
        super::scenarios::Ns::B => 1,
    }
}

impl Targets {
    pub fn namespace(&self, ns: super::scenarios::Ns) -> &str {
        &self.namespaces[idx(ns)]
    }
    pub fn server_ip(&self, ns: super::scenarios::Ns) -> &str {
        &self.server_ips[idx(ns)]
    }
    /// `namespace/pod` of the cell's client.
    pub fn from(&self, cell: &Cell) -> String {
        format!("{}/{}", self.namespace(cell.client.ns), cell.client.pod())
    }
    /// `namespace/server:port` of the cell's server.
    pub fn to(&self, cell: &Cell) -> String {
        format!(
            "{}/{}:{}",
            self.namespace(cell.server),
            super::scenarios::SERVER,
            cell.port
        )
    }
}

/// Interprets netexec's `/dial` answer to `request=hostname`: connected only if the
/// answer is the server pod's hostname ([`SERVER`], the pod's name).
pub fn parse_dial(status: u16, body: &str) -> Observed {
    #[derive(serde::Deserialize)]
    struct Dial {
        #[serde(default)]
        responses: Vec<String>,
        #[serde(default)]
        errors: Vec<String>,
    }
    let short = |s: &str| s.trim().chars().take(200).collect::<String>();
    if status != 200 && status != 417 {
        // The API server's own errors come as a Status object: keep its reason and message.
        #[derive(serde::Deserialize)]
        struct ApiStatus {
            #[serde(default)]
            reason: String,
            message: String,
        }
        return Observed::Unknown(match serde_json::from_str::<ApiStatus>(body) {
            Ok(s) if !s.reason.is_empty() => format!(
                "API server proxy answered {status} {}: {}",
                s.reason,
                short(&s.message)
            ),
            Ok(s) => format!("API server proxy answered {status}: {}", short(&s.message)),
            Err(_) => format!("API server proxy answered {status}: {}", short(body)),
        });
    }
    match serde_json::from_str::<Dial>(body) {
        Ok(d) if d.responses.iter().any(|r| r.trim() == SERVER) => Observed::Connected,
        Ok(d) if d.responses.iter().any(|r| !r.is_empty()) => Observed::Unknown(format!(
            "the dial was answered by {:?}, not by the server pod (hostname {SERVER:?}): \
             something in between (a proxy, a sidecar) answers in its place",
            short(&d.responses[0])
        )),
        Ok(d) if !d.errors.is_empty() => Observed::Refused(short(&d.errors[0])),
        _ => Observed::Unknown(format!(
            "unexpected netexec answer {status}: {}",
            short(body)
        )),
    }
}

/// One probe through the API server's pod proxy.
pub async fn probe(cluster: &Cluster, targets: &Targets, cell: &Cell) -> Observed {
    let path = format!(
        "/api/v1/namespaces/{}/pods/{}:{CLIENT_PORT}/proxy/dial?host={}&port={}&request=hostname&protocol=http&tries=1",
        targets.namespace(cell.client.ns),
        cell.client.pod(),
        targets.server_ip(cell.server),
        cell.port
    );
    let request = match http::Request::get(path).body(kube::client::Body::from(Vec::new())) {
        Ok(r) => r,
        Err(e) => return Observed::Unknown(format!("cannot build the probe request: {e}")),
    };
    let answer = async {
        // Without retries: a 503 from the proxy is the answer, not a reason to ask again.
        let response = cluster.no_retry.send(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect_bytes().await?;
        Ok::<_, kube::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match tokio::time::timeout(PROBE_TIMEOUT, answer).await {
        Err(_) => Observed::Unknown(format!(
            "no answer through the API server proxy within {}s",
            PROBE_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Observed::Unknown(format!("API server proxy request failed: {e}")),
        Ok(Ok((status, body))) => parse_dial(status, &body),
    }
}

/// Probes every cell at once.
pub async fn measure(
    cluster: &Cluster,
    targets: &Targets,
    cells: &[Cell],
) -> BTreeMap<Cell, Observed> {
    let results = futures::future::join_all(cells.iter().map(|c| probe(cluster, targets, c))).await;
    cells.iter().copied().zip(results).collect()
}

/// Cells whose observation differs from the expectation (unknown ones always differ).
pub fn mismatches(
    observed: &BTreeMap<Cell, Observed>,
    expected: impl Fn(&Cell) -> bool,
) -> Vec<(Cell, bool, Observed)> {
    observed
        .iter()
        .filter(|(cell, o)| match o {
            Observed::Connected => !expected(cell),
            Observed::Refused(_) => expected(cell),
            Observed::Unknown(_) => true,
        })
        .map(|(cell, o)| (*cell, expected(cell), o.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_answers() {
        assert_eq!(
            parse_dial(200, r#"{"responses":["server"]}"#),
            Observed::Connected
        );
        assert_eq!(
            parse_dial(
                417,
                r#"{"errors":["Get \"http://10.0.0.1:8080/hostname\": timeout"]}"#
            ),
            Observed::Refused("Get \"http://10.0.0.1:8080/hostname\": timeout".into())
        );
        // Older netexec answers 200 for failed dials.
        assert!(matches!(
            parse_dial(200, r#"{"errors":["connection refused"]}"#),
            Observed::Refused(_)
        ));
        assert_eq!(
            parse_dial(
                503,
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"error trying to reach service: dial tcp 10.244.1.5:8080: i/o timeout","reason":"ServiceUnavailable","code":503}"#
            ),
            Observed::Unknown(
                "API server proxy answered 503 ServiceUnavailable: error trying to reach \
                 service: dial tcp 10.244.1.5:8080: i/o timeout"
                    .into()
            )
        );
        assert!(matches!(
            parse_dial(502, "Bad Gateway"),
            Observed::Unknown(m) if m == "API server proxy answered 502: Bad Gateway"
        ));
        assert!(matches!(parse_dial(200, "NOW: 2025"), Observed::Unknown(_)));
        // Any other answer is not the server's: a proxy or sidecar answered.
        assert_eq!(
            parse_dial(200, r#"{"responses":["envoy-7f9c"]}"#),
            Observed::Unknown(
                "the dial was answered by \"envoy-7f9c\", not by the server pod (hostname \
                 \"server\"): something in between (a proxy, a sidecar) answers in its place"
                    .into()
            )
        );
        assert!(matches!(parse_dial(200, "{}"), Observed::Unknown(_)));
    }
}
