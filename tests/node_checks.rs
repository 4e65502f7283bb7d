//! node-distribution-check and node-anti-affinity-check on the real control plane
//! (testbed/, see tests/support/testbed.rs): the nodes of scenario `three-zones`, whose
//! labels, taints and cordons a scenario changes through the API like an operator would;
//! the real scheduler places the replicas, real admission (Pod Security `restricted`, a
//! ValidatingAdmissionPolicy) judges the pods, and the suite runs as a ServiceAccount bound
//! to exactly the ClusterRole `gen` prints for its selection, so a right the README lacks
//! fails the scenario. Every run must leave nothing labelled with its run id.
//!
//! One test bed serves the binary: scenarios that change nodes take [`NODES`] exclusively
//! and put the nodes back afterwards; the others share it. `single-node` has its own.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};
use support::binary::*;
use support::testbed::{TestBed, new_run_id};

const DIST: &str = "node-distribution-check";
const ANTI: &str = "node-anti-affinity-check";
const ZONE: &str = "topology.kubernetes.io/zone";
const REGION: &str = "topology.kubernetes.io/region";
const HOST: &str = "topology.scs.community/host-id";
const CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";

/// Scenarios that change the nodes of the shared test bed hold it exclusively.
static NODES: RwLock<()> = RwLock::new(());

/// The shared `three-zones` test bed: control-plane nodes cp-0..2 (tainted) on hosts a-c in
/// zones a-c, workers worker-0..2 on hosts d-f in zones a-c, all in region-1.
fn bed() -> &'static TestBed {
    TestBed::shared("three-zones")
}

/// A run of `checks` with `extra` flags against `tb` ([`TestBed::prepare_run`]).
fn run_on(tb: &TestBed, checks: &[&'static str], extra: &[&str]) -> Output {
    tb.prepare_run(checks).run(extra)
}

/// A run on the shared test bed (the caller holds [`NODES`]: [`shared`] or [`with_nodes`]).
fn run(checks: &[&'static str], extra: &[&str]) -> Output {
    run_on(bed(), checks, extra)
}

/// Holds the shared test bed's nodes unchanged while it lives.
fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    NODES.read().unwrap_or_else(|e| e.into_inner())
}

/// What a scenario sets on one node: labels, taints, cordon.
#[derive(Clone, Debug, PartialEq)]
struct NodeState {
    name: String,
    labels: BTreeMap<String, String>,
    taints: Vec<Value>,
    unschedulable: bool,
}

impl NodeState {
    fn is_control_plane(&self) -> bool {
        self.labels.contains_key(CONTROL_PLANE)
    }
    fn label(&mut self, key: &str, value: &str) {
        self.labels.insert(key.into(), value.into());
    }
}

/// The nodes as the scenario file made them (read before any scenario changed them: the
/// first change happens under the exclusive lock, after this).
fn scenario_nodes(tb: &TestBed) -> &'static [NodeState] {
    static BASE: OnceLock<Vec<NodeState>> = OnceLock::new();
    BASE.get_or_init(|| {
        let api: Api<Node> = Api::all(tb.client());
        let nodes = tb.block_on(api.list(&Default::default())).expect("nodes");
        nodes
            .items
            .into_iter()
            .map(|n| {
                let spec = n.spec.unwrap_or_default();
                NodeState {
                    name: n.metadata.name.unwrap_or_default(),
                    labels: n.metadata.labels.unwrap_or_default(),
                    taints: spec
                        .taints
                        .unwrap_or_default()
                        .iter()
                        .map(|t| json!({"key": t.key, "value": t.value, "effect": t.effect}))
                        .collect(),
                    unschedulable: spec.unschedulable.unwrap_or(false),
                }
            })
            .collect()
    })
}

/// Sets every node of `tb` to `nodes` (a JSON merge patch each, as `kubectl label`,
/// `kubectl taint` and `kubectl cordon` do).
fn set_nodes(tb: &TestBed, nodes: &[NodeState]) {
    let api: Api<Node> = Api::all(tb.client());
    let current = tb.block_on(api.list(&Default::default())).expect("nodes");
    for node in nodes {
        let now = current
            .items
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node.name.as_str()))
            .expect("node exists");
        let mut labels: BTreeMap<String, Value> = now
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, _)| (k.clone(), Value::Null))
            .collect();
        for (k, v) in &node.labels {
            labels.insert(k.clone(), v.clone().into());
        }
        let patch = json!({
            "metadata": {"labels": labels},
            "spec": {"taints": node.taints, "unschedulable": node.unschedulable}
        });
        tb.block_on(api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch)))
            .unwrap_or_else(|e| panic!("patch node {}: {e}", node.name));
    }
}

/// Puts the scenario's nodes back, also when the scenario panicked.
struct Restore(&'static TestBed);

impl Drop for Restore {
    fn drop(&mut self) {
        set_nodes(self.0, scenario_nodes(self.0));
    }
}

/// Runs `scenario` on the shared test bed with its nodes changed by `change` (applied to
/// each node of the scenario file), exclusively, and puts the nodes back afterwards.
fn with_nodes<R>(change: impl Fn(&mut NodeState), scenario: impl FnOnce() -> R) -> R {
    let _exclusive = NODES.write().unwrap_or_else(|e| e.into_inner());
    let tb = bed();
    let mut nodes = scenario_nodes(tb).to_vec();
    nodes.iter_mut().for_each(change);
    let _restore = Restore(tb);
    set_nodes(tb, &nodes);
    scenario()
}

#[test]
fn compliant_cluster_passes_both_and_leaves_nothing_behind() {
    let _shared = shared();
    let tb = bed();
    let prepared = tb.prepare_run(&[DIST, ANTI]);
    let deployments = tb.witness::<Deployment>(&prepared.run_id);
    let out = prepared.run(&[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(DIST).as_deref(), Some("PASS"));
    assert_eq!(out.verdict(ANTI).as_deref(), Some("PASS"));
    let hosts = out.junit_out(&format!("{DIST}/control-plane-hosts"));
    assert!(
        hosts.contains("3 control-plane nodes on 3 hosts"),
        "{hosts}"
    );
    assert!(
        out.junit_out(&format!("{ANTI}/hostname-anti-affinity"))
            .contains("3 replicas run on 3 distinct nodes")
    );
    assert!(
        out.junit_out(&format!("{ANTI}/zone-spread"))
            .contains("3 replicas run in 3 distinct zones")
    );
    // The per-node table is in the report.
    let report = out.report();
    for node in ["cp-0", "cp-1", "cp-2", "worker-0", "worker-1", "worker-2"] {
        assert!(report.contains(&format!("name: {node}")), "{report}");
    }
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    // Both layouts ran as Deployments, admitted by Pod Security `restricted`, scheduled by
    // the real scheduler; the ServiceAccount may create but neither update nor patch
    // anything, and no call was refused.
    let mut names = deployments.names();
    names
        .iter_mut()
        .for_each(|n| *n = n.split('/').nth(1).unwrap().into());
    assert_eq!(names, ["anti-affinity", "zone-spread"]);
    assert!(!out.stderr.contains("forbidden"), "{}", out.stderr);
}

#[test]
fn control_plane_on_one_host_fails() {
    let out = with_nodes(
        |n| {
            if n.is_control_plane() {
                n.label(HOST, "host-a")
            }
        },
        || run(&[DIST], &[]),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.junit_message(&format!("{DIST}/control-plane-hosts")),
        "all 3 control-plane nodes (cp-0, cp-1, cp-2) run on one host, host-a (host label topology.scs.community/host-id)"
    );
}

#[test]
fn distinct_zones_are_host_evidence_without_a_host_label() {
    let out = with_nodes(
        |n| {
            n.labels.remove(HOST);
        },
        || run(&[DIST], &[]),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = out.junit_out(&format!("{DIST}/control-plane-hosts"));
    assert!(
        text.contains(
            "evidence: distinct topology.kubernetes.io/zone values zone-a, zone-b, zone-c"
        ),
        "{text}"
    );
}

#[test]
fn custom_host_label() {
    let out = with_nodes(
        |n| {
            let host = n.labels.remove(HOST).unwrap();
            n.label("example.com/hypervisor", &host);
            n.label(ZONE, "zone-a");
        },
        || run(&[DIST], &["--host-label", "example.com/hypervisor"]),
    );
    let text = out.junit_out(&format!("{DIST}/control-plane-hosts"));
    assert!(text.contains("host label example.com/hypervisor"), "{text}");
}

#[test]
fn missing_zone_label_is_named() {
    let out = with_nodes(
        |n| {
            if n.name == "worker-1" {
                n.labels.remove(ZONE);
            }
        },
        || run(&[DIST], &[]),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.junit_message(&format!("{DIST}/topology-labels")),
        "worker-1 lacks topology.kubernetes.io/zone"
    );
}

/// A managed offering: no node is labelled control-plane (the control-plane nodes of the
/// scenario become plain workers).
fn hide_control_plane(n: &mut NodeState) {
    if n.is_control_plane() {
        n.labels.remove(CONTROL_PLANE);
        n.taints.clear();
    }
}

#[test]
fn hidden_control_plane_is_undecided_not_a_pass() {
    let out = with_nodes(hide_control_plane, || run(&[DIST], &[]));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.verdict(DIST).as_deref(), Some("ABORT"));
    for id in ["control-plane-hosts", "control-plane-zones"] {
        let name = format!("{DIST}/{id}");
        assert_eq!(out.junit_kind(&name), "error ABORT");
        assert_eq!(
            out.junit_message(&name),
            "no control-plane node is visible (no node labelled \
             node-role.kubernetes.io/control-plane or node-role.kubernetes.io/master): the \
             requirement applies, but the API of a managed offering does not show where its \
             control plane runs; evidence that decides it: control-plane nodes visible in the \
             API (labelled node-role.kubernetes.io/control-plane) carrying the host label \
             topology.scs.community/host-id (or a key given with --host-label), or the \
             provider's attestation given with --control-plane-attestation FILE (README, \
             \"node checks\")"
        );
    }
    // The rest is decided as usual.
    assert_eq!(out.junit_kind(&format!("{DIST}/topology-labels")), "passed");
}

#[test]
fn attested_control_plane_is_judged_by_the_attestation() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("control-plane.yaml");
    let path = file.to_str().unwrap();
    let (spread, one_host, broken) = with_nodes(hide_control_plane, || {
        std::fs::write(
            &file,
            "attested-by: ACME Cloud KaaS operations <kaas-ops@acme.example>\n\
             date: 2026-11-01\n\
             control-plane:\n  - host: hv-17\n    zone: zone-1\n  - host: hv-42\n    zone: zone-2\n\
             \x20 - host: hv-57\n    zone: zone-3\n",
        )
        .unwrap();
        let spread = run(&[DIST], &["--control-plane-attestation", path]);
        // One host for all: FAIL, still naming the attestation.
        std::fs::write(
            &file,
            "attested-by: ACME\ndate: 2026-11-01\ncontrol-plane:\n  - host: hv-17\n  - host: hv-17\n",
        )
        .unwrap();
        let one_host = run(&[DIST], &["--control-plane-attestation", path]);
        // A broken attestation decides nothing.
        std::fs::write(&file, "attested-by: ACME\ncontrol-plane: []\n").unwrap();
        let broken = run(&[DIST], &["--control-plane-attestation", path]);
        (spread, one_host, broken)
    });
    assert_eq!(spread.code, 0, "{}", spread.stderr);
    assert_eq!(spread.verdict(DIST).as_deref(), Some("PASS"));
    assert!(
        spread
            .junit_out(&format!("{DIST}/control-plane-hosts"))
            .contains(
                "3 control-plane instances on 3 hosts (hv-17, hv-42, hv-57) (attested by ACME \
             Cloud KaaS operations <kaas-ops@acme.example> on 2026-11-01, not visible in the API)"
            ),
        "{}",
        spread.junit()
    );
    assert_eq!(one_host.code, 1, "{}", one_host.stderr);
    assert_eq!(
        one_host.junit_message(&format!("{DIST}/control-plane-hosts")),
        "all 2 control-plane instance(s) run on one host, hv-17 (attested by ACME on \
         2026-11-01, not visible in the API); at least two machines are required"
    );
    assert_eq!(broken.code, 3, "{}", broken.stderr);
    let message = broken.junit_message(&format!("{DIST}/control-plane-hosts"));
    assert!(
        message.contains(&format!(
            "the attestation cannot be used: {path}: invalid control-plane attestation"
        )),
        "{message}"
    );
}

#[test]
fn legacy_topology_labels_fail_naming_them() {
    let out = with_nodes(
        |n| {
            if n.name == "worker-1" {
                n.labels.remove(ZONE);
                n.labels.remove(REGION);
                n.label("failure-domain.beta.kubernetes.io/zone", "zone-b");
                n.label("failure-domain.beta.kubernetes.io/region", "region-1");
            }
        },
        || run(&[DIST], &[]),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.junit_message(&format!("{DIST}/topology-labels")),
        "worker-1 lacks topology.kubernetes.io/zone and topology.kubernetes.io/region (it \
         carries only the legacy failure-domain.beta.kubernetes.io/zone=zone-b and \
         failure-domain.beta.kubernetes.io/region=region-1, deprecated since Kubernetes 1.17; \
         scs-0214-v2 requires the topology.kubernetes.io labels)"
    );
}

#[test]
fn single_node_cluster_fails() {
    // One node that is control plane and worker at once (its own test bed).
    let tb = TestBed::shared("single-node");
    let prepared = tb.prepare_run(&[DIST, ANTI]);
    let deployments = tb.witness::<Deployment>(&prepared.run_id);
    let out = prepared.run(&[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.verdict(DIST).as_deref(), Some("FAIL"));
    let single = out.junit_message(&format!("{DIST}/multiple-nodes"));
    assert!(single.starts_with("single-node cluster (solo)"), "{single}");
    assert_eq!(out.verdict(ANTI).as_deref(), Some("FAIL"));
    assert_eq!(
        out.junit_message(&format!("{ANTI}/hostname-anti-affinity")),
        "only 1 schedulable node(s) (solo); replicas with required anti-affinity need at \
         least two"
    );
    // Nothing can be spread: no workload was started, zone-spread was not attempted.
    assert_eq!(
        out.junit_message(&format!("{ANTI}/zone-spread")),
        "not attempted: fewer than two schedulable nodes (hostname-anti-affinity failed)"
    );
    assert_eq!(
        out.report_requirement(&format!("{ANTI}/zone-spread")).0,
        "not-attempted"
    );
    assert!(deployments.names().is_empty(), "{:?}", deployments.names());
}

#[test]
fn workers_in_one_zone_only_warn() {
    let (out, strict) = with_nodes(
        |n| {
            if !n.is_control_plane() {
                n.label(ZONE, "zone-a")
            }
        },
        || (run(&[DIST], &[]), run(&[DIST], &["--strict"])),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = out.junit_out(&format!("{DIST}/worker-zones"));
    assert!(
        text.starts_with(
            "WARNING the 3 worker nodes (worker-0, worker-1, worker-2) are not spread over \
             several zones"
        ),
        "{text}"
    );
    assert_eq!(strict.code, 1, "{}", strict.stderr);
}

#[test]
fn one_schedulable_node_plus_cordoned_ones_fails() {
    let out = with_nodes(
        |n| {
            if n.name == "worker-1" || n.name == "worker-2" {
                n.unschedulable = true
            }
        },
        || run(&[ANTI], &[]),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let message = out.junit_message(&format!("{ANTI}/hostname-anti-affinity"));
    assert!(
        message.starts_with("only 1 schedulable node(s) (worker-0)"),
        "{message}"
    );
    assert!(message.contains("worker-1 is cordoned"), "{message}");
    assert!(
        message.contains("cp-0 is tainted node-role.kubernetes.io/control-plane:NoSchedule"),
        "{message}"
    );
}

/// The image comes from a registry that takes ten minutes per pull (scenario
/// `registries`): the replicas wait in ContainerCreating past --pod-start-timeout.
#[test]
fn replicas_that_never_start_fail_with_their_state_and_are_cleaned_up() {
    let _shared = shared();
    let slow = "slow.registry.example/registry.k8s.io/pause:3.10";
    let out = run(
        &[ANTI],
        &["--workload-image", slow, "--pod-start-timeout", "5s"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let message = out.junit_message(&format!("{ANTI}/hostname-anti-affinity"));
    assert!(
        message.starts_with("only 0 of 3 replicas running in 0 distinct nodes after 5s"),
        "{message}"
    );
    let junit = out.junit();
    assert!(junit.contains("ContainerCreating"), "{junit}");
    assert!(
        junit.contains(&format!("Normal Pulling: Pulling image \"{slow}\"")),
        "{junit}"
    );
}

#[test]
fn unpullable_image_aborts_with_events() {
    let _shared = shared();
    // A registry the test bed's nodes do not know: ErrImagePull, then ImagePullBackOff.
    let image = "registry.invalid/pause:none";
    let out = run(
        &[ANTI],
        &["--workload-image", image, "--pod-start-timeout", "10s"],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    let name = format!("{ANTI}/hostname-anti-affinity");
    let message = out.junit_message(&name);
    assert!(
        message.starts_with(&format!("image {image} cannot be pulled")),
        "{message}"
    );
    let junit = out.junit();
    assert!(
        junit.contains("ErrImagePull") || junit.contains("ImagePullBackOff"),
        "{junit}"
    );
    assert!(
        junit.contains("Warning Failed: Failed to pull image"),
        "{junit}"
    );
}

#[test]
fn zone_spread_applies_only_where_zones_are_known() {
    // One labelled zone: nothing to spread over.
    let out = with_nodes(|n| n.label(ZONE, "zone-a"), || run(&[ANTI], &[]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.junit_kind(&format!("{ANTI}/zone-spread")),
        "skipped NOT-APPLICABLE"
    );
    assert_eq!(
        out.junit_message(&format!("{ANTI}/zone-spread")),
        "all schedulable nodes are in one zone (zone-a): there are no zones to spread over"
    );
    // Workers without zone labels: whether zones exist cannot be told.
    let out = with_nodes(
        |n| match n.name.as_str() {
            "worker-2" => {
                n.labels.remove(ZONE);
            }
            "worker-1" => n.label(ZONE, "zone-a"),
            _ => {}
        },
        || run(&[ANTI], &[]),
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(
        out.junit_message(&format!("{ANTI}/zone-spread")),
        "cannot tell whether the schedulable nodes span several zones: nodes without a \
         topology.kubernetes.io/zone label: worker-2 (see node-distribution-check/topology-labels)"
    );
}

/// A cluster policy refuses the pods in the run's namespaces (a ValidatingAdmissionPolicy:
/// upstream admission): the ReplicaSet controller's FailedCreate says why, at once.
#[test]
fn pods_refused_by_admission_abort_with_the_replica_set_event() {
    let _shared = shared();
    let tb = bed();
    let policy = "pods need the label cost-center (ACME cluster policy)";
    let prepared = tb.prepare_run(&[ANTI]);
    let run_id = &prepared.run_id;
    let _refused = tb.refuse_pods(run_id, policy);
    let started = Instant::now();
    let out = prepared.run(&[]);
    // Not a wait for --pod-start-timeout (3m): the refusal is seen at once.
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.verdict(ANTI).as_deref(), Some("ABORT"));
    for (id, deployment) in [
        ("hostname-anti-affinity", "anti-affinity"),
        ("zone-spread", "zone-spread"),
    ] {
        let message = out.junit_message(&format!("{ANTI}/{id}"));
        let prefix = format!(
            "the pods of deployment {deployment} were never created: Error creating: pods \
             \"{deployment}-"
        );
        assert!(message.starts_with(&prefix), "{message}");
        assert!(
            message.contains(&format!(
                "is forbidden: ValidatingAdmissionPolicy 'refuse-pods-{run_id}' with binding \
                 'refuse-pods-{run_id}' denied request: {policy}; admission (Pod Security, a \
                 ResourceQuota or LimitRange, a webhook) refuses them, an environment problem \
                 that leaves nothing to judge"
            )),
            "{message}"
        );
    }
}

#[test]
fn testcases_also_run_one_at_a_time() {
    let _shared = shared();
    let out = run(&[DIST, ANTI], &["--parallel", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdicts().len(), 2);
    assert!(out.verdicts().values().all(|v| v == "PASS"));
    let out = scs(&["run", "--check", DIST, "--parallel", "0"]);
    assert_eq!(out.code, 2, "--parallel 0 is a usage error");
}

/// The identity may list pods but not watch them (the ClusterRole `gen` prints, without
/// `watch` on pods): the wait for the replicas cannot be decided, an ABORT naming the
/// missing right as the API server words it, never a FAIL after the deadline.
#[test]
fn a_refused_watch_aborts_naming_the_missing_right() {
    let _shared = shared();
    let tb = bed();
    let selection = ["--check", ANTI];
    let mut rules = tb.gen_rules(&selection);
    for rule in &mut rules {
        if rule.resources.as_deref() == Some(&["pods".to_string()][..]) {
            rule.verbs.retain(|v| v != "watch");
        }
    }
    let role = format!("no-pod-watch-{}", new_run_id());
    tb.create_cluster_role(&role, rules);
    let prepared = tb.prepare_run_as(tb.service_account_kubeconfig(&role), &[ANTI]);
    let started = Instant::now();
    let out = prepared.run(&["--pod-start-timeout", "20s"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.verdict(ANTI).as_deref(), Some("ABORT"));
    let message = out.junit_message(&format!("{ANTI}/hostname-anti-affinity"));
    assert!(
        message.contains("cannot watch the replicas' pods: watch pods in namespace skc-"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "pods is forbidden: User \"system:serviceaccount:testbed-users:{role}\" cannot \
             watch resource \"pods\" in API group \"\" in the namespace \"skc-"
        )),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}
