//! scs-0214-v2 / scs-0213: nodes carry topology labels, the control plane is spread over
//! several physical hosts (and should be over zones), workers should span zones.
//! Read-only: decided from the Node objects, and for a control plane the API does not show
//! (managed offerings) from the provider's attestation (`--control-plane-attestation`).

use super::{CheckContext, CheckDef};
use crate::outcome::{CheckOutcome, Requirement};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;

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
/// The deprecated beta topology labels (replaced by the `topology.kubernetes.io/*` labels in
/// Kubernetes 1.17); scs-0214-v2 requires the GA labels.
pub const LEGACY_ZONE: &str = "failure-domain.beta.kubernetes.io/zone";
pub const LEGACY_REGION: &str = "failure-domain.beta.kubernetes.io/region";

pub const IDS: [&str; 5] = [
    "multiple-nodes",
    "topology-labels",
    "control-plane-hosts",
    "control-plane-zones",
    "worker-zones",
];

/// A provider's attestation of where a control plane runs that the API does not show
/// (`--control-plane-attestation FILE`, YAML). Example:
///
/// ```yaml
/// attested-by: ACME Cloud KaaS operations <kaas-ops@acme.example>
/// date: 2026-11-01
/// control-plane:        # one entry per control-plane instance (API server / etcd member)
///   - host: hv-17       # the physical machine it runs on
///     zone: zone-a      # its failure zone (optional)
///   - host: hv-42
///     zone: zone-b
/// ```
///
/// It is the provider's claim, not something the suite measured: every message based on it
/// says so and names who attested it and when.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Attestation {
    /// Who attests (organisation and contact).
    pub attested_by: String,
    /// When (YYYY-MM-DD).
    pub date: jiff::civil::Date,
    /// One entry per control-plane instance.
    pub control_plane: Vec<AttestedInstance>,
}

/// One control-plane instance of an [`Attestation`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestedInstance {
    /// The physical machine it runs on.
    pub host: String,
    /// Its failure zone.
    #[serde(default)]
    pub zone: Option<String>,
}

impl Attestation {
    /// Reads and checks an attestation file. `Err` is one line naming the file.
    pub fn load(path: &Path) -> Result<Attestation, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the YAML; every field is required but `zone`, nothing else is allowed.
    pub fn parse(text: &str) -> Result<Attestation, String> {
        let a: Attestation = serde_saphyr::from_str(text).map_err(|e| {
            format!(
                "invalid control-plane attestation: {}",
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })?;
        if a.attested_by.trim().is_empty() {
            return Err("invalid control-plane attestation: attested-by is empty".into());
        }
        if a.control_plane.is_empty() {
            return Err(
                "invalid control-plane attestation: control-plane lists no instance".into(),
            );
        }
        if a.control_plane.iter().any(|i| i.host.trim().is_empty()) {
            return Err("invalid control-plane attestation: an instance has an empty host".into());
        }
        Ok(a)
    }

    fn source(&self) -> String {
        format!(
            "attested by {} on {}, not visible in the API",
            self.attested_by.trim(),
            self.date
        )
    }
}

/// The attestation given for this run, if any: where it comes from and what it holds.
pub type Attested = Option<(String, Result<Attestation, String>)>;

async fn run(ctx: &CheckContext) -> CheckOutcome {
    ctx.plan(IDS);
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
    let attested: Attested = ctx
        .options
        .workload
        .control_plane_attestation
        .as_deref()
        .map(|path| (path.display().to_string(), Attestation::load(path)));
    evaluate(
        &nodes
            .iter()
            .map(|n| NodeFacts::of(n, &host_labels))
            .collect::<Vec<_>>(),
        &attested,
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
    /// Values of the deprecated `failure-domain.beta.kubernetes.io/zone` / `region` labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_region: Option<String>,
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
            legacy_zone: labels.get(LEGACY_ZONE).filter(|v| !v.is_empty()).cloned(),
            legacy_region: labels.get(LEGACY_REGION).filter(|v| !v.is_empty()).cloned(),
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

/// Decides every requirement from the nodes (and, for a hidden control plane, the
/// attestation).
pub fn evaluate(nodes: &[NodeFacts], attested: &Attested) -> CheckOutcome {
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
            let mut legacy = Vec::new();
            if n.zone.is_none() {
                labels.push(ZONE);
                if let Some(v) = &n.legacy_zone {
                    legacy.push(format!("{LEGACY_ZONE}={v}"));
                }
            }
            if n.region.is_none() {
                labels.push(REGION);
                if let Some(v) = &n.legacy_region {
                    legacy.push(format!("{LEGACY_REGION}={v}"));
                }
            }
            (!labels.is_empty()).then(|| {
                format!(
                    "{} lacks {}{}",
                    n.name,
                    labels.join(" and "),
                    if legacy.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (it carries only the legacy {}, deprecated since Kubernetes \
                             1.17; scs-0214-v2 requires the topology.kubernetes.io labels)",
                            legacy.join(" and ")
                        )
                    }
                )
            })
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
    if control.is_empty() {
        let (hosts, zones) = hidden_control_plane(attested);
        outcome.push(hosts);
        outcome.push(zones);
    } else {
        if let Some((source, _)) = attested {
            outcome.warnings.push(format!(
                "the control-plane attestation {source} is not used: control-plane nodes are \
                 visible in the API, which decides"
            ));
        }
        outcome.push(control_plane_hosts(&control));
        outcome.push(spread(
            "control-plane-zones",
            "control-plane nodes",
            &control,
        ));
    }
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

/// What would decide the control-plane requirements of a hidden control plane.
fn evidence_hint() -> String {
    format!(
        "evidence that decides it: control-plane nodes visible in the API (labelled \
         {CONTROL_PLANE}) carrying the host label {HOST_ID} (or a key given with \
         --host-label), or the provider's attestation given with \
         --control-plane-attestation FILE (README, \"node checks\")"
    )
}

/// `control-plane-hosts` and `control-plane-zones` when no control-plane node is visible:
/// decided by the attestation, else undecidable (they still apply).
fn hidden_control_plane(attested: &Attested) -> (Requirement, Requirement) {
    const HOSTS: &str = "control-plane-hosts";
    const ZONES: &str = "control-plane-zones";
    let hidden = format!(
        "no control-plane node is visible (no node labelled {CONTROL_PLANE} or {MASTER}): \
         the requirement applies, but the API of a managed offering does not show where its \
         control plane runs"
    );
    let attestation = match attested {
        None => {
            let why = format!("{hidden}; {}", evidence_hint());
            return (
                Requirement::abort(HOSTS, why.clone()),
                Requirement::abort(ZONES, why),
            );
        }
        Some((_, Err(e))) => {
            let why = format!("{hidden}, and the attestation cannot be used: {e}");
            return (
                Requirement::abort(HOSTS, why.clone()),
                Requirement::abort(ZONES, why),
            );
        }
        Some((_, Ok(a))) => a,
    };
    let source = attestation.source();
    let instances = attestation.control_plane.len();
    let hosts: BTreeSet<&str> = attestation
        .control_plane
        .iter()
        .map(|i| i.host.trim())
        .collect();
    let listed = |set: &BTreeSet<&str>| set.iter().copied().collect::<Vec<_>>().join(", ");
    let host_requirement = if hosts.len() >= 2 {
        Requirement::pass(
            HOSTS,
            format!(
                "{instances} control-plane instances on {} hosts ({}) ({source})",
                hosts.len(),
                listed(&hosts)
            ),
        )
    } else {
        Requirement::fail(
            HOSTS,
            format!(
                "all {instances} control-plane instance(s) run on one host, {} ({source}); at \
                 least two machines are required",
                listed(&hosts)
            ),
        )
    };
    let zones: BTreeSet<&str> = attestation
        .control_plane
        .iter()
        .filter_map(|i| i.zone.as_deref().map(str::trim))
        .filter(|z| !z.is_empty())
        .collect();
    let zone_requirement = if zones.len() >= 2 {
        Requirement::pass(
            ZONES,
            format!(
                "{instances} control-plane instances span {} zones ({}) ({source})",
                zones.len(),
                listed(&zones)
            ),
        )
    } else {
        Requirement::warn(
            ZONES,
            format!(
                "the {instances} control-plane instance(s) are not spread over several zones \
                 (zones: {}) ({source}); a zone outage takes them all",
                if zones.is_empty() {
                    "none attested".to_string()
                } else {
                    listed(&zones)
                }
            ),
        )
    };
    (host_requirement, zone_requirement)
}

fn control_plane_hosts(control: &[&NodeFacts]) -> Requirement {
    const ID: &str = "control-plane-hosts";
    if let [only] = control {
        return Requirement::fail(
            ID,
            format!(
                "only one control-plane node ({}); at least two on different machines are required",
                only.name
            ),
        );
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
            legacy_zone: None,
            legacy_region: None,
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
        let o = evaluate(&[n, node("w2", false, None, None)], &None);
        let (s, m) = status(&o, "topology-labels");
        assert_eq!(s, Status::Fail);
        assert_eq!(m, format!("w1 lacks {REGION}; w2 lacks {ZONE}"));
    }

    #[test]
    fn host_label_wins_over_zones() {
        let o = evaluate(
            &[
                node("cp1", true, Some("a"), Some("h1")),
                node("cp2", true, Some("b"), Some("h1")),
            ],
            &None,
        );
        let (s, m) = status(&o, "control-plane-hosts");
        assert_eq!(s, Status::Fail);
        assert!(m.contains("run on one host, h1"), "{m}");
    }

    #[test]
    fn no_evidence_is_undecided() {
        let o = evaluate(
            &[
                node("cp1", true, Some("a"), None),
                node("cp2", true, Some("a"), None),
            ],
            &None,
        );
        assert_eq!(status(&o, "control-plane-hosts").0, Status::Abort);
        assert_eq!(status(&o, "control-plane-zones").0, Status::Warn);
    }

    const ATTESTATION: &str = "attested-by: ACME Cloud <ops@acme.example>\ndate: 2026-11-01\ncontrol-plane:\n  - host: hv-17\n    zone: zone-a\n  - host: hv-42\n    zone: zone-b\n";

    fn workers() -> Vec<NodeFacts> {
        vec![
            node("w1", false, Some("a"), None),
            node("w2", false, Some("b"), None),
        ]
    }

    #[test]
    fn hidden_control_plane_is_undecided_and_says_what_would_decide() {
        let o = evaluate(&workers(), &None);
        for id in ["control-plane-hosts", "control-plane-zones"] {
            let (s, m) = status(&o, id);
            assert_eq!(s, Status::Abort, "{id}");
            assert!(
                m.contains("no control-plane node is visible")
                    && m.contains("the requirement applies")
                    && m.contains(HOST_ID)
                    && m.contains("--control-plane-attestation"),
                "{m}"
            );
        }
        assert_eq!(
            o.verdict(crate::outcome::Policy {
                strict: false,
                mandatory: true
            }),
            crate::outcome::Verdict::Abort
        );
    }

    #[test]
    fn attestation_decides_a_hidden_control_plane() {
        let a = Attestation::parse(ATTESTATION).unwrap();
        let o = evaluate(&workers(), &Some(("cp.yaml".into(), Ok(a.clone()))));
        let (s, m) = status(&o, "control-plane-hosts");
        assert_eq!(s, Status::Pass, "{m}");
        assert_eq!(
            m,
            "2 control-plane instances on 2 hosts (hv-17, hv-42) (attested by ACME Cloud \
             <ops@acme.example> on 2026-11-01, not visible in the API)"
        );
        assert_eq!(status(&o, "control-plane-zones").0, Status::Pass);

        let mut one = a;
        one.control_plane[1].host = "hv-17".into();
        one.control_plane[1].zone = None;
        let o = evaluate(&workers(), &Some(("cp.yaml".into(), Ok(one))));
        let (s, m) = status(&o, "control-plane-hosts");
        assert_eq!(s, Status::Fail);
        assert!(
            m.contains("run on one host, hv-17 (attested by ACME Cloud"),
            "{m}"
        );
        let (s, m) = status(&o, "control-plane-zones");
        assert_eq!(s, Status::Warn);
        assert!(m.contains("(zones: zone-a)"), "{m}");

        let o = evaluate(
            &workers(),
            &Some(("cp.yaml".into(), Err("cp.yaml: invalid".into()))),
        );
        let (s, m) = status(&o, "control-plane-hosts");
        assert_eq!(s, Status::Abort);
        assert!(
            m.ends_with("the attestation cannot be used: cp.yaml: invalid"),
            "{m}"
        );
    }

    #[test]
    fn visible_control_plane_wins_over_an_attestation() {
        let a = Attestation::parse(ATTESTATION).unwrap();
        let o = evaluate(
            &[
                node("cp1", true, Some("a"), Some("h1")),
                node("cp2", true, Some("b"), Some("h1")),
            ],
            &Some(("cp.yaml".into(), Ok(a))),
        );
        assert_eq!(status(&o, "control-plane-hosts").0, Status::Fail);
        assert!(
            o.warnings[0].contains("cp.yaml is not used"),
            "{:?}",
            o.warnings
        );
    }

    #[test]
    fn attestation_errors_are_one_line() {
        for (text, needle) in [
            (
                "attested-by: x\ndate: 2026-11-01\ncontrol-plane: []\n",
                "lists no instance",
            ),
            (
                "attested-by: \" \"\ndate: 2026-11-01\ncontrol-plane: [{host: a}]\n",
                "attested-by is empty",
            ),
            (
                "attested-by: x\ndate: 2026-13-01\ncontrol-plane: [{host: a}]\n",
                "invalid control-plane attestation",
            ),
            (
                "attested-by: x\ndate: 2026-11-01\ncontrol-plane: [{host: a, rack: 3}]\n",
                "rack",
            ),
            ("attested-by: x\ncontrol-plane: [{host: a}]\n", "date"),
        ] {
            let e = Attestation::parse(text).unwrap_err();
            assert!(e.contains(needle) && !e.contains('\n'), "{text}: {e}");
        }
    }

    #[test]
    fn legacy_topology_labels_are_named() {
        let mut node = Node::default();
        node.metadata.name = Some("w1".into());
        node.metadata.labels = Some(
            [
                (LEGACY_ZONE.to_string(), "eu-1a".to_string()),
                (LEGACY_REGION.to_string(), "eu-1".to_string()),
            ]
            .into(),
        );
        let facts = NodeFacts::of(&node, &host_labels(None));
        let o = evaluate(&[facts], &None);
        let (s, m) = status(&o, "topology-labels");
        assert_eq!(s, Status::Fail);
        assert_eq!(
            m,
            format!(
                "w1 lacks {ZONE} and {REGION} (it carries only the legacy {LEGACY_ZONE}=eu-1a \
                 and {LEGACY_REGION}=eu-1, deprecated since Kubernetes 1.17; scs-0214-v2 \
                 requires the topology.kubernetes.io labels)"
            )
        );
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
