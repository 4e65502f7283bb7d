//! scs-0219: the network plugin enforces NetworkPolicy, measured with real connections.
//!
//! Two scratch namespaces hold one server pod (agnhost netexec on two TCP ports) and two
//! client pods (labels `team=x|y`) each. For every scenario the check creates its policies
//! in namespace A, probes the full client x server x port matrix until it matches the
//! expectation (or `--policy-timeout` passes), then deletes the policies and probes until
//! everything is reachable again. Probes go through the API server's pod proxy to the
//! client's netexec `/dial` endpoint (see `probe.rs`). Recommendations: the
//! AdminNetworkPolicy API is served, a default IngressClass exists.
//!
//! With `--networking e2e` the upstream e2e tests focused on `NetworkPolicy` (run by the
//! conformance image, see `super::upstream_e2e`) replace the probe matrix; with `both` the two run
//! at once. Everything reports under this testcase; the upstream verdict is requirement
//! `e2e`.

pub mod probe;
pub mod scenarios;

use super::{CheckContext, CheckDef, upstream_e2e};
use crate::cluster::errors::human_duration;
use crate::cluster::workload::{APP_KEY, restricted_container, restricted_pod_spec};
use crate::cluster::{pods, run_labels, wait};
use crate::outcome::{CheckOutcome, Requirement};
use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity, PodSpec,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{IngressClass, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use probe::{Observed, Targets, describe_expected, measure, mismatches};
use scenarios::{Cell, Client, Env, Ns, Scenario, cells};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const CHECK: CheckDef = CheckDef {
    name: "network-policy",
    summary: "NetworkPolicy enforcement probed with real connections (scs-0219)",
    writes: true,
    exclusive: false,
    uses_e2e: |e2e| e2e.networking != Networking::Native,
    run: |ctx| Box::pin(run(ctx)),
};

/// How kaas-networking-check tests NetworkPolicy enforcement (`--networking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Networking {
    /// This suite's probe matrix.
    Native,
    /// The upstream e2e tests focused on NetworkPolicy.
    E2e,
    /// Both, reported together.
    Both,
}

impl Networking {
    /// The names `--networking` accepts, in the order of the variants.
    pub const NAMES: [&'static str; 3] = ["native", "e2e", "both"];

    pub fn as_str(self) -> &'static str {
        match self {
            Networking::Native => "native",
            Networking::E2e => "e2e",
            Networking::Both => "both",
        }
    }
}

impl std::str::FromStr for Networking {
    type Err = String;

    /// One of [`Networking::NAMES`].
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "native" => Ok(Networking::Native),
            "e2e" => Ok(Networking::E2e),
            "both" => Ok(Networking::Both),
            other => Err(format!(
                "unknown networking mode {other:?} (use {})",
                Networking::NAMES.join(", ")
            )),
        }
    }
}

/// Probe rounds of one scenario start at most this often.
const ROUND_INTERVAL: Duration = Duration::from_secs(1);
/// Rounds in a row that must show the expected matrix: one matching round can be a flapping
/// plugin's lucky moment.
const CONSECUTIVE_ROUNDS: usize = 2;
/// Cells named in a failure message; the details list all.
const CELLS_IN_MESSAGE: usize = 4;
const APP: &str = "netpol-probe";
const ANNOTATION_DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
const POLICY_GROUP: &str = "policy.networking.k8s.io";
/// The well-known node label naming the node (the topology of "the same node").
const HOSTNAME_KEY: &str = "kubernetes.io/hostname";

/// The recommendations, then the native probe matrix, the upstream e2e tests focused on
/// NetworkPolicy, or both at once (`--networking`), all in one outcome. Each requirement is
/// published as soon as it is decided.
async fn run(ctx: &CheckContext) -> CheckOutcome {
    let networking = ctx.options.e2e.networking;
    ctx.plan(["admin-network-policy", "default-ingress-class"]);
    if networking != Networking::E2e {
        ctx.plan(
            std::iter::once(scenarios::baseline())
                .chain(scenarios::scenarios())
                .map(|s| s.id),
        );
    }
    if networking != Networking::Native {
        ctx.plan(["e2e"]);
    }
    let recommendations = async {
        futures::join!(
            async { ctx.decide(admin_network_policy(ctx).await) },
            async { ctx.decide(default_ingress_class(ctx).await) }
        );
    };
    let native = async {
        let mut native = CheckOutcome::default();
        if networking != Networking::E2e
            && let Err(abort) = probe_matrix(ctx).await
        {
            native.push(abort);
        }
        native
    };
    let upstream = async {
        match networking {
            Networking::Native => CheckOutcome::default(),
            _ => upstream_e2e::execute(ctx, upstream_e2e::NETWORK_POLICY_FOCUS, "netpol-e2e").await,
        }
    };
    let ((), native, upstream) = futures::join!(recommendations, native, upstream);
    let mut outcome = native;
    outcome.absorb(upstream);
    outcome
}

/// Sets up the probe pods and runs baseline and scenarios, publishing each requirement.
/// `Err` is a testcase-level abort. After the first scenario that FAILs the rest are not
/// attempted: the testcase fails whatever they show.
async fn probe_matrix(ctx: &CheckContext) -> Result<(), Requirement> {
    let cluster = ctx.cluster();
    let mut names = Vec::new();
    for ns in Ns::ALL {
        let name = cluster
            .scratch_namespace(&ctx.testcase.id, ns.purpose())
            .await
            .map_err(|e| Requirement::abort("", e.to_string()))?;
        names.push(name);
    }
    let namespaces = [names[0].clone(), names[1].clone()];
    ctx.log.info(format!(
        "created namespaces {}; starting probe pods ({})",
        namespaces.join(", "),
        ctx.options.workload.agnhost_image
    ));
    let started =
        futures::future::join_all(Ns::ALL.iter().map(|ns| start_pods(ctx, *ns, &namespaces))).await;
    let mut server_ips = Vec::new();
    let mut server_nodes = Vec::new();
    for result in started {
        let (ip, node) = result?;
        server_ips.push(ip);
        server_nodes.push(node);
    }
    let placed = if server_nodes[0] != server_nodes[1] {
        format!(
            "servers on nodes {} and {}, clients x beside their own namespace's server and \
             clients y beside the other's: every scenario is probed within a node and across \
             nodes",
            server_nodes[0], server_nodes[1]
        )
    } else {
        format!(
            "both servers run on node {} (the scheduler found no other node for them): only \
             connections within a node are probed",
            server_nodes[0]
        )
    };
    ctx.decisions
        .lock()
        .fact("placement", placed.clone().into());
    let targets = Targets {
        namespaces: namespaces.clone(),
        server_ips: [server_ips[0].clone(), server_ips[1].clone()],
    };
    let env = Env {
        namespace_b: targets.namespaces[1].clone(),
        server_ip_a: parse_ip(&targets.server_ips[0])?,
        server_ip_b: parse_ip(&targets.server_ips[1])?,
    };
    ctx.log.info(format!(
        "probe pods running (servers {} and {})",
        targets.server_ips[0], targets.server_ips[1]
    ));

    let facts = std::sync::Mutex::new(serde_json::Map::new());
    let publish_facts = || {
        let facts = facts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ctx.decisions
            .lock()
            .fact("network-policy-scenarios", facts.into());
    };
    let baseline = scenarios::baseline();
    let (requirement, converged) = run_scenario(ctx, &targets, &env, &baseline, &facts).await;
    publish_facts();
    let all = scenarios::scenarios();
    if !converged {
        ctx.decide(Requirement {
            status: crate::outcome::Status::Abort,
            message: format!(
                "{} — the probe setup is broken, no scenario can be judged",
                requirement.message
            ),
            ..requirement
        });
        for s in &all {
            ctx.decide(Requirement::abort(
                s.id,
                "not measured: the baseline probe failed",
            ));
        }
        return Ok(());
    }
    ctx.decide(Requirement {
        message: format!("{}; placement: {placed}", requirement.message),
        ..requirement
    });
    let mut remaining = all.iter();
    while let Some(scenario) = remaining.next() {
        let before = server_state(ctx, &targets).await;
        let (requirement, _) = run_scenario(ctx, &targets, &env, scenario, &facts).await;
        publish_facts();
        // A FAIL stops the run with the policies in place (they go with the namespace);
        // anything else is kept only once connectivity is back without them.
        let restored = if requirement.status == crate::outcome::Status::Fail {
            Ok(())
        } else {
            remove_policies(ctx, &targets, scenario).await
        };
        let after = server_state(ctx, &targets).await;
        let requirement = match (servers_changed(&before, &after), &restored) {
            (Some(why), _) => Requirement::abort(
                scenario.id,
                format!(
                    "not judged: {why}; a dead server refuses every connection, which looks \
                     like a policy's denial (the matrix showed: {})",
                    requirement.message
                ),
            )
            .with_details(requirement.details),
            (None, Err(why)) if requirement.status != crate::outcome::Status::Abort => {
                Requirement::abort(
                    scenario.id,
                    format!(
                        "not judged: {why}; denials that outlive their policies are not the \
                         policies' doing (the matrix showed: {})",
                        requirement.message
                    ),
                )
                .with_details(requirement.details)
            }
            (None, _) => requirement,
        };
        let failed = requirement.status == crate::outcome::Status::Fail;
        ctx.decide(requirement);
        if failed {
            // The policies go with the namespace; nothing after this changes the verdict.
            ctx.log.info(format!(
                "{}: failed; the remaining scenarios are not attempted",
                scenario.id
            ));
            for rest in remaining.by_ref() {
                ctx.decide(Requirement::not_attempted(
                    rest.id,
                    format!("{} already failed", scenario.id),
                ));
            }
            break;
        }
        if let Err(why) = restored {
            for rest in remaining.by_ref() {
                ctx.decide(Requirement::abort(rest.id, format!("not measured: {why}")));
            }
        }
    }
    Ok(())
}

/// `namespace/server` → (restarts of its containers, ready), for both server pods; `Err`
/// says why they could not be read.
type ServerState = Result<BTreeMap<String, (i32, bool)>, String>;

/// The server pods' restart counts and readiness (a container that died and came back, or
/// is down, refuses connections: that must not pass for a policy's denial).
async fn server_state(ctx: &CheckContext, targets: &Targets) -> ServerState {
    let cluster = ctx.cluster();
    let mut state = BTreeMap::new();
    for namespace in &targets.namespaces {
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
        // Listed (the rights the check has), not read one by one.
        let list = cluster
            .call(
                &format!("list the server pod of {namespace}"),
                api.list(&ListParams::default().labels(&format!(
                    "{}={}",
                    scenarios::ROLE_KEY,
                    scenarios::SERVER
                ))),
            )
            .await
            .map_err(|e| e.to_string())?;
        let Some(pod) = list.items.first() else {
            return Err(format!("the server pod of {namespace} is gone"));
        };
        let status = pod.status.as_ref();
        let restarts = status
            .and_then(|s| s.container_statuses.as_ref())
            .map(|c| c.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0);
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        state.insert(
            format!("{namespace}/{}", scenarios::SERVER),
            (restarts, ready),
        );
    }
    Ok(state)
}

/// Why the servers' state before and after a scenario does not let it be judged, if so.
fn servers_changed(before: &ServerState, after: &ServerState) -> Option<String> {
    let (before, after) = match (before, after) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(e), _) | (_, Err(e)) => {
            return Some(format!("the server pods' state could not be read ({e})"));
        }
    };
    let mut why = Vec::new();
    for (pod, (restarts, ready)) in after {
        let (restarts_before, ready_before) = before.get(pod).copied().unwrap_or((0, false));
        if *restarts != restarts_before {
            why.push(format!(
                "server pod {pod} restarted during the scenario (restartCount \
                 {restarts_before} -> {restarts}, summed over its containers)"
            ));
        }
        if !ready || !ready_before {
            why.push(format!(
                "server pod {pod} was not ready {}",
                if ready_before {
                    "after the scenario"
                } else {
                    "before the scenario"
                }
            ));
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

fn parse_ip(ip: &str) -> Result<std::net::IpAddr, Requirement> {
    ip.parse()
        .map_err(|_| Requirement::abort("", format!("server pod IP {ip:?} is not an IP address")))
}

fn netexec_container(ctx: &CheckContext, port: u16) -> k8s_openapi::api::core::v1::Container {
    let mut c = restricted_container(
        &format!("netexec-{port}"),
        &ctx.options.workload.agnhost_image,
    );
    c.args = Some(vec![
        "netexec".into(),
        format!("--http-port={port}"),
        "--udp-port=-1".into(),
    ]);
    c.ports = Some(vec![ContainerPort {
        container_port: port.into(),
        protocol: Some("TCP".into()),
        ..Default::default()
    }]);
    c
}

/// Where a probe pod goes: the two servers on different nodes where possible (preferred
/// anti-affinity), client `x` on its own namespace's server's node and client `y` on the
/// other namespace's server's node (required affinity). So every scenario probes its
/// policies both within a node and across nodes, paths that several plugins enforce with
/// different code (bridge vs. routed/tunnelled traffic).
fn placement(ns: Ns, team: Option<&str>, namespaces: &[String; 2]) -> Affinity {
    let servers_in = |namespaces: Vec<String>| PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([
                (APP_KEY.to_string(), APP.to_string()),
                (
                    scenarios::ROLE_KEY.to_string(),
                    scenarios::SERVER.to_string(),
                ),
            ])),
            ..Default::default()
        }),
        namespaces: Some(namespaces),
        topology_key: HOSTNAME_KEY.into(),
        ..Default::default()
    };
    let own = namespaces[usize::from(ns == Ns::B)].clone();
    let other = namespaces[usize::from(ns == Ns::A)].clone();
    match team {
        None => Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: servers_in(vec![other]),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        },
        Some(team) => Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![servers_in(vec![
                    if team == scenarios::TEAMS[0] {
                        own
                    } else {
                        other
                    },
                ])]),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

fn pod(
    ctx: &CheckContext,
    name: &str,
    role: &str,
    team: Option<&str>,
    ports: &[u16],
    affinity: Affinity,
) -> Pod {
    let mut labels = run_labels(&ctx.cluster().run_id, &ctx.testcase.id);
    labels.insert(APP_KEY.into(), APP.into());
    labels.insert(scenarios::ROLE_KEY.into(), role.into());
    if let Some(team) = team {
        labels.insert(scenarios::TEAM_KEY.into(), team.into());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            affinity: Some(affinity),
            ..restricted_pod_spec(ports.iter().map(|p| netexec_container(ctx, *p)).collect())
        }),
        ..Default::default()
    }
}

fn pod_ip(p: &Pod) -> Option<String> {
    let status = p.status.as_ref()?;
    (status.phase.as_deref() == Some("Running") && p.metadata.deletion_timestamp.is_none())
        .then(|| status.pod_ip.clone())
        .flatten()
        .filter(|ip| !ip.is_empty())
}

/// Creates the server and client pods of one namespace (placed by [`placement`]) and waits
/// until they run; returns the server's IP and node.
async fn start_pods(
    ctx: &CheckContext,
    ns: Ns,
    namespaces: &[String; 2],
) -> Result<(String, String), Requirement> {
    let cluster = ctx.cluster();
    let namespace = namespaces[usize::from(ns == Ns::B)].as_str();
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let mut pods = vec![pod(
        ctx,
        scenarios::SERVER,
        scenarios::SERVER,
        None,
        &scenarios::SERVER_PORTS,
        placement(ns, None, namespaces),
    )];
    for client in Client::all().into_iter().filter(|c| c.ns == ns) {
        pods.push(pod(
            ctx,
            &client.pod(),
            "client",
            Some(client.team),
            &[scenarios::CLIENT_PORT],
            placement(ns, Some(client.team), namespaces),
        ));
    }
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    for p in &pods {
        cluster
            .call(
                &format!("create pod {namespace}/{}", p.name_any()),
                api.create(&PostParams::default(), p),
            )
            .await
            .map_err(|e| Requirement::abort("", e.to_string()))?;
    }
    let deadline = ctx.options.workload.pod_start_timeout;
    let waited = wait::until(
        &api,
        watcher::Config::default().labels(&format!("{APP_KEY}={APP}")),
        deadline,
        |pods| {
            let ips: BTreeMap<String, String> = pods
                .iter()
                .filter_map(|p| Some((p.name_any(), pod_ip(p)?)))
                .collect();
            let node = pods
                .iter()
                .find(|p| p.name_any() == scenarios::SERVER)
                .and_then(|p| p.spec.as_ref()?.node_name.clone())
                .unwrap_or_else(|| "(unknown)".into());
            names
                .iter()
                .all(|n| ips.contains_key(n))
                .then(|| Some((ips.get(scenarios::SERVER).cloned()?, node)))
                .flatten()
        },
    )
    .await;
    match waited {
        Ok(ip) => Ok(ip),
        Err(timeout) => {
            Err(explain_pods(ctx, namespace, &timeout.last, &timeout.to_string()).await)
        }
    }
}

/// Probe pods that did not come up: the environment's problem, never a verdict on policy.
async fn explain_pods(ctx: &CheckContext, namespace: &str, pods: &[Pod], why: &str) -> Requirement {
    let explanation = pods::explain(ctx.cluster(), namespace, pods, &|_| String::new()).await;
    let (details, pull_errors) = (explanation.details, explanation.pull_errors);
    let message = if pull_errors.is_empty() {
        format!(
            "the probe pods in {namespace} did not all run within {} ({why}); the network policy \
             matrix cannot be measured",
            human_duration(ctx.options.workload.pod_start_timeout)
        )
    } else {
        format!(
            "image {} cannot be pulled (pods {}); this is an environment problem, set \
             --agnhost-image to a reachable mirror",
            ctx.options.workload.agnhost_image,
            pull_errors.join(", ")
        )
    };
    Requirement::abort("", message).with_details(details)
}

/// What probing until a matrix holds showed.
struct Converged {
    /// The matrix that decided: the last matching one, or the last one that differed.
    observed: BTreeMap<Cell, Observed>,
    /// The expected matrix held in [`CONSECUTIVE_ROUNDS`] rounds in a row.
    ok: bool,
    rounds: usize,
    /// Rounds that matched, in a row or not.
    matching: usize,
}

impl Converged {
    /// Why a matrix that matched now and then is not in force.
    fn flapping(&self) -> String {
        if self.ok || self.matching == 0 {
            return String::new();
        }
        format!(
            " (the expected matrix held in {} of {} rounds, never in {CONSECUTIVE_ROUNDS} \
             consecutive ones: the enforcement flaps)",
            self.matching, self.rounds
        )
    }
}

/// Probes until the matrix matches `expected` in [`CONSECUTIVE_ROUNDS`] rounds in a row, or
/// the policy timeout passes.
async fn converge(ctx: &CheckContext, targets: &Targets, expected: fn(&Cell) -> bool) -> Converged {
    let cluster = ctx.cluster();
    let cells = cells();
    let start = Instant::now();
    let mut ticks = tokio::time::interval(ROUND_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut rounds, mut matching, mut streak) = (0, 0, 0);
    let mut differed = None;
    loop {
        ticks.tick().await;
        rounds += 1;
        let observed = measure(cluster, targets, &cells).await;
        if mismatches(&observed, expected).is_empty() {
            matching += 1;
            streak += 1;
            if streak >= CONSECUTIVE_ROUNDS {
                return Converged {
                    observed,
                    ok: true,
                    rounds,
                    matching,
                };
            }
        } else {
            streak = 0;
            differed = Some(observed.clone());
        }
        if start.elapsed() >= ctx.options.workload.policy_timeout {
            return Converged {
                observed: differed.unwrap_or(observed),
                ok: false,
                rounds,
                matching,
            };
        }
    }
}

fn cell_line(targets: &Targets, cell: &Cell, expected: bool, observed: &Observed) -> String {
    format!(
        "{} -> {}: expected {}, observed {}",
        targets.from(cell),
        targets.to(cell),
        describe_expected(expected),
        observed.describe()
    )
}

/// Applies the scenario's policies, waits (by probing) for the expected matrix and judges.
/// Returns the requirement and whether the expected matrix was reached.
async fn run_scenario(
    ctx: &CheckContext,
    targets: &Targets,
    env: &Env,
    scenario: &Scenario,
    facts: &std::sync::Mutex<serde_json::Map<String, serde_json::Value>>,
) -> (Requirement, bool) {
    let id = scenario.id;
    let cluster = ctx.cluster();
    let policies = match (scenario.policies)(env) {
        Ok(p) => p,
        Err(e) => return (Requirement::abort(id, e), false),
    };
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client.clone(), targets.namespace(Ns::A));
    for policy in policies {
        let mut policy = match scenarios::typed(policy) {
            Ok(p) => p,
            Err(e) => return (Requirement::abort(id, e), false),
        };
        policy.metadata.labels = Some(run_labels(&cluster.run_id, &ctx.testcase.id));
        let name = policy.name_any();
        if let Err(e) = cluster
            .call(
                &format!("create NetworkPolicy {name}"),
                api.create(&PostParams::default(), &policy),
            )
            .await
        {
            return (Requirement::abort(id, e.to_string()), false);
        }
    }
    ctx.log.info(format!("{id}: {}; probing", scenario.what));
    let start = Instant::now();
    let converged = converge(ctx, targets, scenario.expected).await;
    let flapping = converged.flapping();
    let Converged {
        observed,
        ok: converged,
        rounds,
        ..
    } = converged;
    let took = start.elapsed();
    let expected = scenario.expected;
    let allowed = observed
        .iter()
        .filter(|(_, o)| **o == Observed::Connected)
        .count();
    let details: Vec<String> = observed
        .iter()
        .map(|(c, o)| cell_line(targets, c, expected(c), o))
        .collect();
    facts.lock().unwrap_or_else(|e| e.into_inner()).insert(
        id.into(),
        serde_json::json!({
            "in_force": converged,
            "seconds": (took.as_secs_f64() * 10.0).round() / 10.0,
            "probe_rounds": rounds,
            "allowed": allowed,
            "connections": observed.len(),
        }),
    );
    let wrong = mismatches(&observed, expected);
    if converged {
        ctx.log.info(format!(
            "{id}: as expected after {} ({rounds} probe round(s))",
            human_duration(took)
        ));
        let requirement = Requirement::pass(
            id,
            format!(
                "{}: {allowed} of {} connections allowed, as expected (in force after {})",
                scenario.what,
                observed.len(),
                human_duration(took)
            ),
        )
        .with_details(details);
        return (requirement, true);
    }
    ctx.log.info(format!(
        "{id}: {} of {} connections still differ after {}",
        wrong.len(),
        observed.len(),
        human_duration(took)
    ));
    let definite: Vec<&(Cell, bool, Observed)> = wrong
        .iter()
        .filter(|(_, _, o)| !matches!(o, Observed::Unknown(_)))
        .collect();
    let shown: Vec<&(Cell, bool, Observed)> = if definite.is_empty() {
        wrong.iter().collect()
    } else {
        definite.clone()
    };
    let mut listed: Vec<String> = shown
        .iter()
        .take(CELLS_IN_MESSAGE)
        .map(|(c, e, o)| cell_line(targets, c, *e, o))
        .collect();
    if shown.len() > CELLS_IN_MESSAGE {
        listed.push(format!("and {} more", shown.len() - CELLS_IN_MESSAGE));
    }
    let summary = format!(
        "{}: {} of {} connections differ from the expected matrix after {} ({rounds} probe \
         round(s)){flapping}: {}",
        scenario.what,
        shown.len(),
        observed.len(),
        human_duration(took),
        listed.join("; ")
    );
    let requirement = if definite.is_empty() {
        Requirement::abort(id, format!("could not measure — {summary}"))
    } else {
        accepted(ctx, scenario, summary)
    };
    (requirement.with_details(details), false)
}

/// A scenario that failed: FAIL, unless SCS accepts the failure of the upstream e2e test
/// that checks the same behaviour (the run's ok-to-fail list, the same decision the
/// upstream e2e focus honours).
fn accepted(ctx: &CheckContext, scenario: &Scenario, summary: String) -> Requirement {
    let name = scenarios::upstream_name(scenario.upstream);
    match (!scenario.upstream.is_empty())
        .then(|| ctx.options.ok_to_fail.reason(&name))
        .flatten()
    {
        Some(reason) => {
            ctx.log.info(format!(
                "{}: failed, accepted by the ok-to-fail list ({reason})",
                scenario.id
            ));
            Requirement::new(
                scenario.id,
                crate::outcome::Status::Accepted,
                format!(
                    "accepted by the ok-to-fail list ({reason}; upstream e2e case \"{}\"): \
                     {summary}",
                    scenario.upstream
                ),
            )
        }
        None => Requirement::fail(scenario.id, summary),
    }
}

/// Deletes the scenario's policies and probes until everything is reachable again.
async fn remove_policies(
    ctx: &CheckContext,
    targets: &Targets,
    scenario: &Scenario,
) -> Result<(), String> {
    let cluster = ctx.cluster();
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client.clone(), targets.namespace(Ns::A));
    let list = cluster
        .call("list NetworkPolicies", api.list(&ListParams::default()))
        .await
        .map_err(|e| e.to_string())?;
    for policy in list.items {
        let name = policy.name_any();
        match cluster
            .call(
                &format!("delete NetworkPolicy {name}"),
                api.delete(&name, &DeleteParams::default()),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let start = Instant::now();
    let Converged {
        observed,
        ok: converged,
        ..
    } = converge(ctx, targets, scenarios::baseline().expected).await;
    if converged {
        ctx.log.info(format!(
            "{}: policies removed, everything reachable again after {}",
            scenario.id,
            human_duration(start.elapsed())
        ));
        return Ok(());
    }
    let still: Vec<String> = mismatches(&observed, |_| true)
        .iter()
        .take(CELLS_IN_MESSAGE)
        .map(|(c, e, o)| cell_line(targets, c, *e, o))
        .collect();
    Err(format!(
        "the policies of {} were deleted but connections were still not restored after {}: {}",
        scenario.id,
        human_duration(start.elapsed()),
        still.join("; ")
    ))
}

/// SHOULD: the AdminNetworkPolicy / BaselineAdminNetworkPolicy API is served.
async fn admin_network_policy(ctx: &CheckContext) -> Requirement {
    const ID: &str = "admin-network-policy";
    let cluster = ctx.cluster();
    let groups = match cluster
        .call("list API groups", cluster.client.list_api_groups())
        .await
    {
        Ok(g) => g,
        Err(e) => return Requirement::abort(ID, e.to_string()),
    };
    let Some(group) = groups.groups.iter().find(|g| g.name == POLICY_GROUP) else {
        return Requirement::warn(
            ID,
            format!(
                "the {POLICY_GROUP} API (AdminNetworkPolicy / BaselineAdminNetworkPolicy) is not \
                 served; cluster administrators cannot set policies tenants cannot override"
            ),
        );
    };
    let mut served: Vec<String> = Vec::new();
    for version in &group.versions {
        let resources = match cluster
            .call(
                &format!("list resources of {}", version.group_version),
                cluster
                    .client
                    .list_api_group_resources(&version.group_version),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return Requirement::abort(ID, e.to_string()),
        };
        for r in resources.resources {
            if matches!(
                r.name.as_str(),
                "adminnetworkpolicies" | "baselineadminnetworkpolicies" | "clusternetworkpolicies"
            ) {
                served.push(format!("{}/{}", version.group_version, r.name));
            }
        }
    }
    let has = |name: &str| served.iter().any(|s| s.ends_with(&format!("/{name}")));
    if (has("adminnetworkpolicies") && has("baselineadminnetworkpolicies"))
        || has("clusternetworkpolicies")
    {
        Requirement::pass(ID, format!("served: {}", served.join(", ")))
    } else {
        Requirement::warn(
            ID,
            format!(
                "the {POLICY_GROUP} group is served but not both AdminNetworkPolicy and \
                 BaselineAdminNetworkPolicy (found: {})",
                if served.is_empty() {
                    "neither".to_string()
                } else {
                    served.join(", ")
                }
            ),
        )
    }
}

/// SHOULD: a managed Ingress controller with a default IngressClass.
async fn default_ingress_class(ctx: &CheckContext) -> Requirement {
    const ID: &str = "default-ingress-class";
    let cluster = ctx.cluster();
    let api: Api<IngressClass> = Api::all(cluster.client.clone());
    let classes = match cluster
        .call("list IngressClasses", api.list(&ListParams::default()))
        .await
    {
        Ok(l) => l.items,
        Err(e) => return Requirement::abort(ID, e.to_string()),
    };
    let controller = |c: &IngressClass| {
        c.spec
            .as_ref()
            .and_then(|s| s.controller.clone())
            .unwrap_or_else(|| "no controller".into())
    };
    let defaults: Vec<String> = classes
        .iter()
        .filter(|c| {
            c.annotations()
                .get(ANNOTATION_DEFAULT_CLASS)
                .is_some_and(|v| v == "true")
        })
        .map(|c| format!("{} ({})", c.name_any(), controller(c)))
        .collect();
    if !defaults.is_empty() {
        return Requirement::pass(ID, format!("default IngressClass: {}", defaults.join(", ")));
    }
    Requirement::warn(
        ID,
        if classes.is_empty() {
            "no IngressClass exists; a managed Ingress controller with a default IngressClass \
             is recommended"
                .to_string()
        } else {
            format!(
                "none of the IngressClasses ({}) is annotated {ANNOTATION_DEFAULT_CLASS}=\"true\"",
                classes
                    .iter()
                    .map(|c| format!("{} ({})", c.name_any(), controller(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    )
}
