//! scs-0213: workloads can really be spread. A Deployment with required pod anti-affinity on
//! `kubernetes.io/hostname` must get every replica Running on its own node; where several
//! zones exist, a zone topology spread constraint must spread replicas over them.

use super::node_distribution::ZONE;
use super::{CheckContext, CheckDef};
use crate::cluster::errors::human_duration;
use crate::cluster::run_labels;
use crate::cluster::wait;
use crate::cluster::workload::{
    self, APP_KEY, app_selector, restricted_container, restricted_pod_spec,
};
use crate::cluster::{admission, pods};
use crate::outcome::{CheckOutcome, Requirement};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Affinity, Node, Pod, PodAffinityTerm, PodAntiAffinity, TopologySpreadConstraint,
};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use std::collections::{BTreeMap, BTreeSet};

pub const CHECK: CheckDef = CheckDef {
    name: "node-anti-affinity",
    summary: "replicas spread over nodes and zones (scs-0213)",
    writes: true,
    exclusive: false,
    uses_e2e: super::no_e2e,
    run: |ctx| Box::pin(run(ctx)),
};

const HOSTNAME: &str = "kubernetes.io/hostname";

/// A node the scheduler may place the test pods on.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub zone: Option<String>,
}

/// Splits nodes into candidates and the reasons the others are not.
pub fn candidates(nodes: &[Node]) -> (Vec<Candidate>, Vec<String>) {
    let mut ok = Vec::new();
    let mut excluded = Vec::new();
    for node in nodes {
        let name = node.name_any();
        let spec = node.spec.clone().unwrap_or_default();
        if spec.unschedulable == Some(true) {
            excluded.push(format!("{name} is cordoned"));
            continue;
        }
        let taints: Vec<String> = spec
            .taints
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect();
        if !taints.is_empty() {
            excluded.push(format!("{name} is tainted {}", taints.join(", ")));
            continue;
        }
        ok.push(Candidate {
            zone: node.labels().get(ZONE).cloned(),
            name,
        });
    }
    (ok, excluded)
}

const IDS: [&str; 2] = ["hostname-anti-affinity", "zone-spread"];

async fn run(ctx: &CheckContext) -> CheckOutcome {
    ctx.plan(IDS);
    let cluster = ctx.cluster();
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let nodes = match cluster
        .call("list nodes", nodes.list(&ListParams::default()))
        .await
    {
        Ok(list) => list.items,
        Err(e) => return CheckOutcome::aborted("", e.to_string()),
    };
    let (candidates, excluded) = candidates(&nodes);
    if candidates.len() < 2 {
        // Nothing can be spread: no workload is started.
        ctx.decide(Requirement::fail(
            IDS[0],
            format!(
                "only {} schedulable node(s) ({}); replicas with required anti-affinity \
                     need at least two{}",
                candidates.len(),
                candidates
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if excluded.is_empty() {
                    String::new()
                } else {
                    format!("; not schedulable: {}", excluded.join("; "))
                }
            ),
        ));
        ctx.not_attempted(
            &IDS[1..],
            "fewer than two schedulable nodes (hostname-anti-affinity failed)",
        );
        return CheckOutcome::default();
    }
    ctx.log.info(format!(
        "{} schedulable nodes{}",
        candidates.len(),
        if excluded.is_empty() {
            String::new()
        } else {
            format!(" (not counted: {})", excluded.join("; "))
        }
    ));
    let namespace = match cluster
        .scratch_namespace(&ctx.testcase.id, "anti-affinity")
        .await
    {
        Ok(ns) => ns,
        Err(e) => return CheckOutcome::aborted("", e.to_string()),
    };
    ctx.log.info(format!("created namespace {namespace}"));

    // Both layouts are tried at the same time; their pods have distinct labels. Each
    // result is published as soon as it is decided.
    let zones: BTreeSet<&str> = candidates
        .iter()
        .filter_map(|c| c.zone.as_deref())
        .collect();
    let hostname = async {
        let r = spread_test(ctx, &namespace, Layout::Hostname, candidates.len().min(3))
            .await
            .unwrap_or_else(|r| r);
        ctx.decide(r);
    };
    let unlabelled: Vec<&str> = candidates
        .iter()
        .filter(|c| c.zone.is_none())
        .map(|c| c.name.as_str())
        .collect();
    let zone = async {
        if zones.len() < 2 && !unlabelled.is_empty() {
            // Whether several zones exist cannot be told from nodes without zone labels.
            ctx.decide(Requirement::abort(
                IDS[1],
                format!(
                    "cannot tell whether the schedulable nodes span several zones: nodes \
                     without a {ZONE} label: {} (see node-distribution-check/topology-labels)",
                    unlabelled.join(", ")
                ),
            ));
            return;
        }
        if zones.len() < 2 {
            ctx.decide(Requirement::not_applicable(
                IDS[1],
                format!(
                    "all schedulable nodes are in one zone ({}): there are no zones to spread over",
                    zones.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ));
            return;
        }
        let r = spread_test(ctx, &namespace, Layout::Zone, zones.len().min(3))
            .await
            .unwrap_or_else(|r| r);
        ctx.decide(r);
    };
    futures::join!(hostname, zone);
    CheckOutcome::default()
}

#[derive(Clone, Copy)]
enum Layout {
    Hostname,
    Zone,
}

impl Layout {
    fn requirement(self) -> &'static str {
        match self {
            Layout::Hostname => IDS[0],
            Layout::Zone => IDS[1],
        }
    }
    fn name(self) -> &'static str {
        match self {
            Layout::Hostname => "anti-affinity",
            Layout::Zone => "zone-spread",
        }
    }
}

fn deployment(ctx: &CheckContext, layout: Layout, replicas: usize) -> Deployment {
    let selector = app_selector(layout.name());
    let mut spec = restricted_pod_spec(vec![restricted_container(
        "pause",
        &ctx.options.workload.workload_image,
    )]);
    match layout {
        Layout::Hostname => {
            spec.affinity = Some(Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![
                        PodAffinityTerm {
                            label_selector: Some(selector),
                            topology_key: HOSTNAME.into(),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            })
        }
        Layout::Zone => {
            spec.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: ZONE.into(),
                when_unsatisfiable: "DoNotSchedule".into(),
                label_selector: Some(selector),
                ..Default::default()
            }])
        }
    }
    let labels = run_labels(&ctx.cluster().run_id, &ctx.testcase.id);
    workload::deployment(layout.name(), labels, replicas as i32, spec)
}

/// Where the Running replicas of a layout landed.
fn placement(pods: &[Pod]) -> Vec<(String, String)> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| Some((p.name_any(), p.spec.as_ref()?.node_name.clone()?)))
        .collect()
}

/// Creates the layout's Deployment and waits until its replicas run spread as required.
/// `Err` carries an already decided requirement (failure or abort).
async fn spread_test(
    ctx: &CheckContext,
    namespace: &str,
    layout: Layout,
    replicas: usize,
) -> Result<Requirement, Requirement> {
    let id = layout.requirement();
    let cluster = ctx.cluster();
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    let deploy = deployment(ctx, layout, replicas);
    cluster
        .call(
            &format!("create deployment {}", layout.name()),
            deployments.create(&PostParams::default(), &deploy),
        )
        .await
        .map_err(|e| Requirement::abort(id, e.to_string()))?;
    ctx.log.info(format!(
        "deployment {} with {replicas} replicas created; waiting for them to run",
        layout.name()
    ));

    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let zones: BTreeMap<String, String> = cluster
        .call("list nodes", nodes.list(&ListParams::default()))
        .await
        .map_err(|e| Requirement::abort(id, e.to_string()))?
        .items
        .iter()
        .filter_map(|n| Some((n.name_any(), n.labels().get(ZONE)?.clone())))
        .collect();
    let domain = |node: &str| -> String {
        match layout {
            Layout::Hostname => node.to_string(),
            Layout::Zone => zones
                .get(node)
                .cloned()
                .unwrap_or_else(|| "(no zone)".into()),
        }
    };

    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let selector = format!("{APP_KEY}={}", layout.name());
    let deadline = ctx.options.workload.pod_start_timeout;
    let running = wait::until(
        &pods,
        watcher::Config::default().labels(&selector),
        deadline,
        |pods| {
            let running = placement(pods);
            let domains: BTreeSet<String> = running.iter().map(|(_, n)| domain(n)).collect();
            (running.len() >= replicas && domains.len() >= replicas).then_some(running)
        },
    );
    // Pods that admission refuses never exist: the ReplicaSet's FailedCreate says why.
    let waited = tokio::select! {
        waited = running => waited,
        Some(reason) = admission::refused(cluster, namespace, layout.name(), deadline) => {
            return Err(Requirement::abort(
                id,
                admission::describe(&format!("deployment {}", layout.name()), &reason),
            ));
        }
    };
    match waited {
        Ok(running) => {
            let spread: Vec<String> = running
                .iter()
                .map(|(p, n)| format!("{p} on {n} ({})", domain(n)))
                .collect();
            Ok(Requirement::pass(
                id,
                match layout {
                    Layout::Hostname => {
                        format!("{replicas} replicas run on {replicas} distinct nodes")
                    }
                    Layout::Zone => format!("{replicas} replicas run in {replicas} distinct zones"),
                },
            )
            .with_details(spread))
        }
        Err(wait::Timeout {
            refused: Some(e), ..
        }) => Err(Requirement::abort(
            id,
            format!("cannot watch the replicas' pods: {e}"),
        )),
        Err(timeout) => Err(explain_timeout(
            ctx,
            namespace,
            layout,
            replicas,
            &timeout.last,
            &domain,
            &timeout.to_string(),
        )
        .await),
    }
}

/// Why the replicas did not spread: an unpullable image is the environment's fault (ABORT);
/// replicas left Pending by the scheduler are a failure, with its events.
async fn explain_timeout(
    ctx: &CheckContext,
    namespace: &str,
    layout: Layout,
    replicas: usize,
    pods: &[Pod],
    domain: &(dyn Fn(&str) -> String + Sync),
    why: &str,
) -> Requirement {
    let id = layout.requirement();
    let running = placement(pods);
    let explanation = pods::explain(ctx.cluster(), namespace, pods, domain).await;
    let (details, pull_errors) = (explanation.details, explanation.pull_errors);
    let deadline = human_duration(ctx.options.workload.pod_start_timeout);
    if !pull_errors.is_empty() {
        return Requirement::abort(
            id,
            format!(
                "image {} cannot be pulled (pods {}); this is an environment problem, set \
                 --workload-image to a reachable mirror",
                ctx.options.workload.workload_image,
                pull_errors.join(", ")
            ),
        )
        .with_details(details);
    }
    let domains: BTreeSet<String> = running.iter().map(|(_, n)| domain(n)).collect();
    let unit = match layout {
        Layout::Hostname => "distinct nodes",
        Layout::Zone => "distinct zones",
    };
    Requirement::fail(
        id,
        format!(
            "only {} of {replicas} replicas running in {} {unit} after {deadline} ({why}){}",
            running.len(),
            domains.len(),
            explanation
                .scheduling
                .map(|s| format!("; scheduler: {s}"))
                .unwrap_or_default()
        ),
    )
    .with_details(details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    use kube::api::ObjectMeta;

    fn node(name: &str, spec: NodeSpec) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        }
    }

    #[test]
    fn tainted_and_cordoned_nodes_are_not_candidates() {
        let nodes = vec![
            node("w1", NodeSpec::default()),
            node(
                "w2",
                NodeSpec {
                    unschedulable: Some(true),
                    ..Default::default()
                },
            ),
            node(
                "cp1",
                NodeSpec {
                    taints: Some(vec![Taint {
                        key: "node-role.kubernetes.io/control-plane".into(),
                        effect: "NoSchedule".into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
            ),
            node(
                "w3",
                NodeSpec {
                    taints: Some(vec![Taint {
                        key: "soft".into(),
                        effect: "PreferNoSchedule".into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
            ),
        ];
        let (ok, excluded) = candidates(&nodes);
        assert_eq!(
            ok.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["w1", "w3"]
        );
        assert_eq!(
            excluded,
            [
                "w2 is cordoned",
                "cp1 is tainted node-role.kubernetes.io/control-plane:NoSchedule"
            ]
        );
    }
}
