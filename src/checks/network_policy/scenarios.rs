//! The probe world (two namespaces, one server and two clients in each) and the policy
//! scenarios with the connection matrix each must produce.
//!
//! Ingress policies select only SERVER pods and egress policies only CLIENT pods: the probe
//! request reaches the client through the API server's pod proxy (ingress into the client,
//! from outside the pod network), which no scenario may block.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};
use std::net::IpAddr;

/// TCP ports the server pods listen on (one netexec container each).
pub const SERVER_PORTS: [u16; 2] = [8080, 8081];
/// The port of the client pods' netexec, reached through the API server proxy.
pub const CLIENT_PORT: u16 = 8080;
/// Pod label: `server` or `client`.
pub const ROLE_KEY: &str = "scs-kaas-check/netpol-role";
/// Client pod label: `x` or `y`.
pub const TEAM_KEY: &str = "scs-kaas-check/netpol-team";
/// Namespace label every namespace carries (set by the API server).
pub const NAMESPACE_NAME_KEY: &str = "kubernetes.io/metadata.name";
pub const SERVER: &str = "server";

/// The two scratch namespaces: policies go to A, B is the control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ns {
    A,
    B,
}

impl Ns {
    pub const ALL: [Ns; 2] = [Ns::A, Ns::B];
    pub fn purpose(self) -> &'static str {
        match self {
            Ns::A => "netpol-a",
            Ns::B => "netpol-b",
        }
    }
}

pub const TEAMS: [&str; 2] = ["x", "y"];

/// A client pod: namespace and team label (pod name `client-<team>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Client {
    pub ns: Ns,
    pub team: &'static str,
}

impl Client {
    pub fn all() -> Vec<Client> {
        Ns::ALL
            .iter()
            .flat_map(|&ns| TEAMS.iter().map(move |&team| Client { ns, team }))
            .collect()
    }
    pub fn pod(self) -> String {
        format!("client-{}", self.team)
    }
}

/// One connection of the matrix: client -> server pod of `server` namespace on `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cell {
    pub client: Client,
    pub server: Ns,
    pub port: u16,
}

pub fn cells() -> Vec<Cell> {
    let mut cells = Vec::new();
    for client in Client::all() {
        for server in Ns::ALL {
            for port in SERVER_PORTS {
                cells.push(Cell {
                    client,
                    server,
                    port,
                });
            }
        }
    }
    cells
}

/// What scenario policies may refer to.
pub struct Env {
    pub namespace_b: String,
    pub server_ip_a: IpAddr,
    pub server_ip_b: IpAddr,
}

pub struct Scenario {
    /// Requirement id.
    pub id: &'static str,
    pub what: &'static str,
    /// The upstream e2e test (`It` text in kubernetes `test/e2e/network/netpol/
    /// network_policy.go`, context "NetworkPolicy between server and client") that checks
    /// the same behaviour: the ok-to-fail list is matched against its full name (see
    /// [`upstream_name`]), so one decision of SCS answers both ways of testing.
    pub upstream: &'static str,
    /// Policies (all created in namespace A), as `NetworkPolicy` JSON.
    pub policies: fn(&Env) -> Result<Vec<Value>, String>,
    /// Whether the cell must connect while the policies are in force.
    pub expected: fn(&Cell) -> bool,
}

fn servers() -> Value {
    json!({"matchLabels": {ROLE_KEY: SERVER}})
}

fn clients() -> Value {
    json!({"matchLabels": {ROLE_KEY: "client"}})
}

fn policy(name: &str, spec: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": spec})
}

fn dns() -> Value {
    json!({"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]})
}

fn namespace_b(env: &Env) -> Value {
    json!({"matchLabels": {NAMESPACE_NAME_KEY: env.namespace_b}})
}

/// The smallest CIDR that contains both addresses (same family), e.g. `10.244.0.0/22`.
pub fn covering_cidr(a: IpAddr, b: IpAddr) -> Option<String> {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let (a, b) = (u32::from(a), u32::from(b));
            let len = (a ^ b).leading_zeros();
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some(format!("{}/{len}", std::net::Ipv4Addr::from(a & mask)))
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let (a, b) = (u128::from(a), u128::from(b));
            let len = (a ^ b).leading_zeros();
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            Some(format!("{}/{len}", std::net::Ipv6Addr::from(a & mask)))
        }
        _ => None,
    }
}

/// `ip/32` or `ip/128`.
pub fn host_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    }
}

/// The full name of upstream e2e test `it` as the conformance image reports it (without the
/// ginkgo `[It]` prefix); ok-to-fail regexes match anywhere in it.
pub fn upstream_name(it: &str) -> String {
    format!(
        "[sig-network] Netpol NetworkPolicy between server and client {it} [Feature:NetworkPolicy]"
    )
}

pub fn baseline() -> Scenario {
    Scenario {
        id: "baseline",
        what: "no policy: every client reaches every server port",
        upstream: "",
        policies: |_| Ok(vec![]),
        expected: |_| true,
    }
}

/// The scenarios after the baseline, in order.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            id: "default-deny-ingress",
            what: "ingress to the servers of namespace A denied",
            upstream: "should support a 'default-deny-ingress' policy",
            policies: |_| {
                Ok(vec![policy(
                    "deny-ingress",
                    json!({"podSelector": servers(), "policyTypes": ["Ingress"]}),
                )])
            },
            expected: |c| c.server == Ns::B,
        },
        Scenario {
            id: "ingress-pod-selector",
            what: "ingress to server A only from pods labelled team x of namespace A",
            upstream: "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
            policies: |_| {
                Ok(vec![policy(
                    "allow-team-x",
                    json!({"podSelector": servers(), "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {TEAM_KEY: "x"}}}]}]}),
                )])
            },
            expected: |c| c.server == Ns::B || (c.client.ns == Ns::A && c.client.team == "x"),
        },
        Scenario {
            id: "ingress-namespace-selector",
            what: "ingress to server A only from namespace B",
            upstream: "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
            policies: |env| {
                Ok(vec![policy(
                    "allow-namespace-b",
                    json!({"podSelector": servers(), "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"namespaceSelector": namespace_b(env)}]}]}),
                )])
            },
            expected: |c| c.server == Ns::B || c.client.ns == Ns::B,
        },
        Scenario {
            id: "ingress-pod-and-namespace-selector",
            what: "ingress to server A only from team x pods of namespace B (one peer with both selectors)",
            upstream: "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
            policies: |env| {
                Ok(vec![policy(
                    "allow-team-x-of-b",
                    json!({"podSelector": servers(), "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"namespaceSelector": namespace_b(env),
                            "podSelector": {"matchLabels": {TEAM_KEY: "x"}}}]}]}),
                )])
            },
            expected: |c| c.server == Ns::B || (c.client.ns == Ns::B && c.client.team == "x"),
        },
        Scenario {
            id: "ingress-port",
            what: "ingress to server A only on TCP port 8080",
            upstream: "should enforce policy based on Ports",
            policies: |_| {
                Ok(vec![policy(
                    "allow-8080",
                    json!({"podSelector": servers(), "policyTypes": ["Ingress"],
                        "ingress": [{"ports": [{"protocol": "TCP", "port": SERVER_PORTS[0]}]}]}),
                )])
            },
            expected: |c| c.server == Ns::B || c.port == SERVER_PORTS[0],
        },
        Scenario {
            id: "default-deny-egress",
            what: "egress of the clients of namespace A denied (DNS allowed)",
            upstream: "should deny egress from all pods in a namespace",
            policies: |_| {
                Ok(vec![policy(
                    "deny-egress",
                    json!({"podSelector": clients(), "policyTypes": ["Egress"],
                        "egress": [dns()]}),
                )])
            },
            expected: |c| c.client.ns == Ns::B,
        },
        Scenario {
            id: "egress-pod-selector",
            what: "egress of the clients of namespace A only to the server pods of namespace A (and DNS)",
            upstream: "should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
            policies: |_| {
                Ok(vec![policy(
                    "allow-egress-to-servers",
                    json!({"podSelector": clients(), "policyTypes": ["Egress"],
                        "egress": [{"to": [{"podSelector": servers()}]}, dns()]}),
                )])
            },
            expected: |c| c.client.ns == Ns::B || c.server == Ns::A,
        },
        Scenario {
            id: "egress-ipblock-except",
            what: "egress of the clients of namespace A to an ipBlock holding both server IPs, except server B's",
            upstream: "should enforce except clause while egress access to server in CIDR block",
            policies: |env| {
                let cidr = covering_cidr(env.server_ip_a, env.server_ip_b).ok_or_else(|| {
                    format!(
                        "the server pods have addresses of different families ({} and {})",
                        env.server_ip_a, env.server_ip_b
                    )
                })?;
                Ok(vec![policy(
                    "allow-egress-ipblock",
                    json!({"podSelector": clients(), "policyTypes": ["Egress"],
                        "egress": [{"to": [{"ipBlock": {"cidr": cidr,
                            "except": [host_cidr(env.server_ip_b)]}}]}, dns()]}),
                )])
            },
            expected: |c| c.client.ns == Ns::B || c.server == Ns::A,
        },
    ]
}

/// Turns scenario JSON into a typed NetworkPolicy.
pub fn typed(policy: Value) -> Result<NetworkPolicy, String> {
    serde_json::from_value(policy).map_err(|e| format!("invalid NetworkPolicy: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            namespace_b: "skc-1-netpol-b".into(),
            server_ip_a: "10.244.1.7".parse().unwrap(),
            server_ip_b: "10.244.2.9".parse().unwrap(),
        }
    }

    #[test]
    fn every_policy_is_a_valid_network_policy() {
        for s in scenarios() {
            let policies = (s.policies)(&env()).unwrap();
            assert!(!policies.is_empty(), "{}", s.id);
            for p in policies {
                let np = typed(p).unwrap();
                let spec = np.spec.unwrap();
                // Ingress policies select servers, egress policies clients.
                let types = spec.policy_types.unwrap();
                let role = spec.pod_selector.unwrap().match_labels.unwrap()[ROLE_KEY].clone();
                if types.contains(&"Ingress".to_string()) {
                    assert_eq!(role, SERVER, "{}", s.id);
                } else {
                    assert_eq!(role, "client", "{}", s.id);
                }
            }
        }
    }

    #[test]
    fn every_scenario_denies_something_and_allows_something() {
        for s in scenarios() {
            let allowed = cells().iter().filter(|c| (s.expected)(c)).count();
            assert!(allowed > 0 && allowed < cells().len(), "{}", s.id);
        }
        assert_eq!(cells().len(), 16);
    }

    #[test]
    fn the_built_in_ok_to_fail_list_accepts_only_the_ipblock_scenario() {
        use crate::checks::upstream_e2e::upstream::{BUILTIN_OK_TO_FAIL, OkToFail};
        let list = OkToFail::parse(BUILTIN_OK_TO_FAIL, "built-in").unwrap();
        let accepted: Vec<&str> = scenarios()
            .iter()
            .filter(|s| list.reason(&upstream_name(s.upstream)).is_some())
            .map(|s| s.id)
            .collect();
        assert_eq!(accepted, ["egress-ipblock-except"]);
        assert!(scenarios().iter().all(|s| !s.upstream.is_empty()));
    }

    #[test]
    fn covering_cidrs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            covering_cidr(ip("10.244.1.7"), ip("10.244.2.9")).unwrap(),
            "10.244.0.0/22"
        );
        assert_eq!(
            covering_cidr(ip("10.0.0.1"), ip("10.0.0.0")).unwrap(),
            "10.0.0.0/31"
        );
        assert_eq!(
            covering_cidr(ip("fd00::1"), ip("fd00::1:2")).unwrap(),
            "fd00::/111"
        );
        assert!(covering_cidr(ip("10.0.0.1"), ip("fd00::1")).is_none());
        assert_eq!(host_cidr(ip("fd00::1")), "fd00::1/128");
    }
}
