//! scs-0214-v2 / scs-0213: nodes carry topology labels, the control plane is spread over
//! several physical hosts (and should be over zones), workers should span zones.
//! Read-only: decided from the Node objects alone.

use super::{CheckContext, CheckDef};
use crate::outcome::{CheckOutcome, Requirement};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use std::collections::BTreeSet;

pub const CHECK: CheckDef = CheckDef {
    name: "node-distribution",
    summary: "node topology labels and control-plane distribution (scs-0214-v2, scs-0213)",
    writes: false,
    exclusive: false,
    uses_e2e: super::no_e2e,
    run: |ctx| Box::pin(run(ctx)),
};

pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const REGION: &str = "topology.kubernetes.io/region";
pub const HOST_ID: &str = "topology.scs.community/host-id";
const CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";
const MASTER: &str = "node-role.kubernetes.io/master";

async fn run(ctx: &CheckContext) -> CheckOutcome {
    let api: Api<Node> = Api::all(ctx.cluster().client.clone());
    let nodes = match ctx
        .cluster()
        .call("list nodes", api.list(&ListParams::default()))
        .await
    {
        Ok(list) => list.items,
        Err(e) => return CheckOutcome::aborted("", e.to_string()),
    };
    ctx.log.info(format!("{} nodes visible", nodes.len()));
    let host_labels = host_labels(ctx.options.workload.host_label.as_deref());
    evaluate(
        &nodes
            .iter()
            .map(|n| NodeFacts::of(n, &host_labels))
            .collect::<Vec<_>>(),
    )
}

/// The label keys that identify a node's physical host, in order of preference.
pub fn host_labels(extra: Option<&str>) -> Vec<String> {
    let mut keys = vec![HOST_ID.to_string()];
    if let Some(k) = extra.filter(|k| *k != HOST_ID) {
        keys.push(k.to_string());
    }
    keys
}

/// What the check needs to know of one node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeFacts {
    pub name: String,
    pub control_plane: bool,
    pub zone: Option<String>,
    pub region: Option<String>,
    /// `(label key, value)` of the first host label present.
    pub host: Option<(String, String)>,
}

impl NodeFacts {
    pub fn of(node: &Node, host_labels: &[String]) -> Self {
        let labels = node.labels();
        NodeFacts {
            name: node.name_any(),
            control_plane: labels.contains_key(CONTROL_PLANE) || labels.contains_key(MASTER),
            zone: labels.get(ZONE).filter(|v| !v.is_empty()).cloned(),
            region: labels.get(REGION).filter(|v| !v.is_empty()).cloned(),
            host: host_labels.iter().find_map(|k| {
                labels
                    .get(k)
                    .filter(|v| !v.is_empty())
                    .map(|v| (k.clone(), v.clone()))
            }),
        }
    }

    fn role(&self) -> &'static str {
        if self.control_plane {
            "control-plane"
        } else {
            "worker"
        }
    }
}

pub fn evaluate(nodes: &[NodeFacts]) -> CheckOutcome {
    let mut outcome = CheckOutcome::default();
    let table: Vec<String> = nodes
        .iter()
        .map(|n| {
            format!(
                "{}: role {}, zone {}, region {}, host {}",
                n.name,
                n.role(),
                n.zone.as_deref().unwrap_or("(none)"),
                n.region.as_deref().unwrap_or("(none)"),
                n.host
                    .as_ref()
                    .map(|(k, v)| format!("{v} ({k})"))
                    .unwrap_or_else(|| "(no host label)".into())
            )
        })
        .collect();
    outcome.facts.insert(
        "nodes".into(),
        serde_json::to_value(nodes).unwrap_or_default(),
    );

    outcome.push(if nodes.len() <= 1 {
        Requirement::fail(
            "multiple-nodes",
            format!(
                "single-node cluster ({}): a single node cannot survive the failure of its host",
                nodes
                    .first()
                    .map(|n| n.name.as_str())
                    .unwrap_or("no node visible")
            ),
        )
    } else {
        Requirement::pass("multiple-nodes", format!("{} nodes", nodes.len()))
    });

    let missing: Vec<String> = nodes
        .iter()
        .filter_map(|n| {
            let mut labels = Vec::new();
            if n.zone.is_none() {
                labels.push(ZONE);
            }
            if n.region.is_none() {
                labels.push(REGION);
            }
            (!labels.is_empty()).then(|| format!("{} lacks {}", n.name, labels.join(" and ")))
        })
        .collect();
    outcome.push(
        if missing.is_empty() {
            Requirement::pass(
                "topology-labels",
                format!("all {} nodes carry {ZONE} and {REGION}", nodes.len()),
            )
        } else {
            Requirement::fail("topology-labels", missing.join("; "))
        }
        .with_details(table.clone()),
    );

    let control: Vec<&NodeFacts> = nodes.iter().filter(|n| n.control_plane).collect();
    let workers: Vec<&NodeFacts> = nodes.iter().filter(|n| !n.control_plane).collect();
    outcome.push(control_plane_hosts(&control));
    outcome.push(spread(
        "control-plane-zones",
        "control-plane nodes",
        &control,
    ));
    outcome.push(if workers.is_empty() {
        Requirement::warn("worker-zones", "no worker nodes visible")
    } else {
        spread("worker-zones", "worker nodes", &workers)
    });
    outcome
}

fn names(nodes: &[&NodeFacts]) -> String {
    nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn control_plane_hosts(control: &[&NodeFacts]) -> Requirement {
    const ID: &str = "control-plane-hosts";
    match control.len() {
        0 => {
            return Requirement::not_applicable(
                ID,
                format!(
                    "no control-plane nodes visible (no node labelled {CONTROL_PLANE} or \
                     {MASTER}); a managed offering hides its control plane, so its distribution \
                     cannot be decided from the API"
                ),
            );
        }
        1 => {
            return Requirement::fail(
                ID,
                format!(
                    "only one control-plane node ({}); at least two on different machines are required",
                    control[0].name
                ),
            );
        }
        _ => {}
    }
    if control.iter().all(|n| n.host.is_some()) {
        let hosts: BTreeSet<&str> = control
            .iter()
            .filter_map(|n| n.host.as_ref().map(|(_, v)| v.as_str()))
            .collect();
        let key = control[0]
            .host
            .as_ref()
            .map(|(k, _)| k.as_str())
            .unwrap_or(HOST_ID);
        return if hosts.len() >= 2 {
            Requirement::pass(
                ID,
                format!(
                    "{} control-plane nodes on {} hosts (evidence: host label {key}: {})",
                    control.len(),
                    hosts.len(),
                    hosts.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            )
        } else {
            Requirement::fail(
                ID,
                format!(
                    "all {} control-plane nodes ({}) run on one host, {} (host label {key})",
                    control.len(),
                    names(control),
                    hosts.iter().next().copied().unwrap_or("?")
                ),
            )
        };
    }
    let zones: BTreeSet<&str> = control.iter().filter_map(|n| n.zone.as_deref()).collect();
    if zones.len() >= 2 && control.iter().all(|n| n.zone.is_some()) {
        Requirement::pass(
            ID,
            format!(
                "{} control-plane nodes in {} zones, hence on different machines (evidence: \
                 distinct {ZONE} values {}; no host label {HOST_ID})",
                control.len(),
                zones.len(),
                zones.iter().copied().collect::<Vec<_>>().join(", ")
            ),
        )
    } else {
        Requirement::abort(
            ID,
            format!(
                "cannot tell whether the control-plane nodes ({}) run on different machines: \
                 they carry no host label ({HOST_ID}, or the key given with --host-label) and \
                 are not in distinct zones",
                names(control)
            ),
        )
    }
}

/// A recommendation: the nodes span at least two zones.
fn spread(id: &str, what: &str, nodes: &[&NodeFacts]) -> Requirement {
    if nodes.is_empty() {
        return Requirement::not_applicable(id, format!("no {what} visible"));
    }
    let zones: BTreeSet<&str> = nodes.iter().filter_map(|n| n.zone.as_deref()).collect();
    let listed = zones.iter().copied().collect::<Vec<_>>().join(", ");
    if zones.len() >= 2 {
        Requirement::pass(
            id,
            format!(
                "{} {what} span {} zones ({listed})",
                nodes.len(),
                zones.len()
            ),
        )
    } else {
        Requirement::warn(
            id,
            format!(
                "the {} {what} ({}) are not spread over several zones (zones: {}); a zone \
                 outage takes them all",
                nodes.len(),
                names(nodes),
                if listed.is_empty() {
                    "none labelled".to_string()
                } else {
                    listed
                }
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Status;

    fn node(name: &str, cp: bool, zone: Option<&str>, host: Option<&str>) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            control_plane: cp,
            zone: zone.map(Into::into),
            region: Some("r1".into()),
            host: host.map(|h| (HOST_ID.to_string(), h.to_string())),
        }
    }

    fn status(outcome: &CheckOutcome, id: &str) -> (Status, String) {
        let r = outcome.requirements.iter().find(|r| r.id == id).unwrap();
        (r.status, r.message.clone())
    }

    #[test]
    fn unlabelled_region_is_named() {
        let mut n = node("w1", false, Some("a"), None);
        n.region = None;
        let o = evaluate(&[n, node("w2", false, None, None)]);
        let (s, m) = status(&o, "topology-labels");
        assert_eq!(s, Status::Fail);
        assert_eq!(m, format!("w1 lacks {REGION}; w2 lacks {ZONE}"));
    }

    #[test]
    fn host_label_wins_over_zones() {
        let o = evaluate(&[
            node("cp1", true, Some("a"), Some("h1")),
            node("cp2", true, Some("b"), Some("h1")),
        ]);
        let (s, m) = status(&o, "control-plane-hosts");
        assert_eq!(s, Status::Fail);
        assert!(m.contains("run on one host, h1"), "{m}");
    }

    #[test]
    fn no_evidence_is_undecided() {
        let o = evaluate(&[
            node("cp1", true, Some("a"), None),
            node("cp2", true, Some("a"), None),
        ]);
        assert_eq!(status(&o, "control-plane-hosts").0, Status::Abort);
        assert_eq!(status(&o, "control-plane-zones").0, Status::Warn);
    }

    #[test]
    fn host_label_key_is_configurable() {
        let mut node = Node::default();
        node.metadata.name = Some("cp1".into());
        node.metadata.labels =
            Some([("example.com/rack-host".to_string(), "h7".to_string())].into());
        let facts = NodeFacts::of(&node, &host_labels(Some("example.com/rack-host")));
        assert_eq!(
            facts.host,
            Some(("example.com/rack-host".into(), "h7".into()))
        );
    }
}
