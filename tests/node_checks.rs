//! node-distribution-check and node-anti-affinity-check against simulated clusters whose
//! scheduler honours anti-affinity, spread constraints, taints and cordons.

mod support;

use std::time::Duration;
use support::binary::*;
use support::{ClusterSpec, NodeSpec, SimCluster};

const DIST: &str = "node-distribution-check";
const ANTI: &str = "node-anti-affinity-check";

fn sim(nodes: Vec<NodeSpec>) -> SimCluster {
    SimCluster::start(ClusterSpec {
        nodes,
        ..Default::default()
    })
}

fn labelled(node: NodeSpec, zone: &str) -> NodeSpec {
    node.zone(zone).region("region-1")
}

/// Three control-plane nodes on three hosts in three zones, three workers likewise.
fn compliant_nodes() -> Vec<NodeSpec> {
    (1..=3)
        .flat_map(|i| {
            let zone = format!("zone-{i}");
            [
                labelled(NodeSpec::control_plane(&format!("cp{i}")), &zone)
                    .host(&format!("host-{i}")),
                labelled(NodeSpec::worker(&format!("w{i}")), &zone)
                    .host(&format!("host-{}", i + 3)),
            ]
        })
        .collect()
}

fn run(sim: &SimCluster, checks: &[&str], extra: &[&str]) -> Output {
    let mut args: Vec<&str> = checks.iter().flat_map(|c| ["--check", *c]).collect();
    args.extend_from_slice(extra);
    let out = run_against(sim, &args);
    out.assert_clean_exit();
    out
}

#[test]
fn compliant_cluster_passes_both_and_leaves_nothing_behind() {
    let sim = sim(compliant_nodes());
    let out = run(&sim, &[DIST, ANTI], &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(DIST).as_deref(), Some("PASS"));
    assert_eq!(out.verdict(ANTI).as_deref(), Some("PASS"));
    assert!(
        out.junit_out(&format!("{DIST}/control-plane-hosts"))
            .contains("3 control-plane nodes on 3 hosts")
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
    for node in ["cp1", "cp2", "cp3", "w1", "w2", "w3"] {
        assert!(report.contains(&format!("name: {node}")), "{report}");
    }
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    assert!(
        suite_objects(&sim, "namespaces").is_empty(),
        "left behind: {:?}",
        suite_objects(&sim, "namespaces")
    );
    // The pods the suite started complied with the restricted profile.
    let requests = sim.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/deployments"))
    );
    assert!(
        requests
            .iter()
            .all(|r| r.method != "PUT" && r.method != "PATCH"),
        "the suite modifies nothing"
    );
}

#[test]
fn control_plane_on_one_host_fails() {
    let nodes = compliant_nodes()
        .into_iter()
        .map(|n| {
            if n.name.starts_with("cp") {
                n.host("host-1")
            } else {
                n
            }
        })
        .collect();
    let sim = sim(nodes);
    let out = run(&sim, &[DIST], &[]);
    assert_eq!(out.code, 1);
    let message = out.junit_message(&format!("{DIST}/control-plane-hosts"));
    assert_eq!(
        message,
        "all 3 control-plane nodes (cp1, cp2, cp3) run on one host, host-1 (host label topology.scs.community/host-id)"
    );
}

#[test]
fn distinct_zones_are_host_evidence_without_a_host_label() {
    let nodes = compliant_nodes()
        .into_iter()
        .map(|mut n| {
            n.labels.remove("topology.scs.community/host-id");
            n
        })
        .collect();
    let sim = sim(nodes);
    let out = run(&sim, &[DIST], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = out.junit_out(&format!("{DIST}/control-plane-hosts"));
    assert!(
        text.contains(
            "evidence: distinct topology.kubernetes.io/zone values zone-1, zone-2, zone-3"
        ),
        "{text}"
    );
}

#[test]
fn custom_host_label() {
    let nodes = compliant_nodes()
        .into_iter()
        .map(|mut n| {
            let host = n.labels.remove("topology.scs.community/host-id").unwrap();
            n.label("example.com/hypervisor", &host).zone("zone-1")
        })
        .collect();
    let sim = sim(nodes);
    let out = run(&sim, &[DIST], &["--host-label", "example.com/hypervisor"]);
    assert!(
        out.junit_out(&format!("{DIST}/control-plane-hosts"))
            .contains("host label example.com/hypervisor")
    );
}

#[test]
fn missing_zone_label_is_named() {
    let nodes = compliant_nodes()
        .into_iter()
        .map(|mut n| {
            if n.name == "w2" {
                n.labels.remove("topology.kubernetes.io/zone");
            }
            n
        })
        .collect();
    let sim = sim(nodes);
    let out = run(&sim, &[DIST], &[]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.junit_message(&format!("{DIST}/topology-labels")),
        "w2 lacks topology.kubernetes.io/zone"
    );
}

#[test]
fn hidden_control_plane_is_not_applicable() {
    let nodes = compliant_nodes()
        .into_iter()
        .filter(|n| n.name.starts_with('w'))
        .collect();
    let sim = sim(nodes);
    let out = run(&sim, &[DIST], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdict(DIST).as_deref(), Some("PASS"));
    let junit = out.junit();
    let name = format!("{DIST}/control-plane-hosts");
    assert!(
        junit.contains(&format!("<testcase name=\"{name}\"")),
        "{junit}"
    );
    assert!(
        out.junit_message(&name)
            .contains("no control-plane nodes visible")
    );
    assert!(junit.contains("type=\"NOT-APPLICABLE\""));
}

#[test]
fn single_node_cluster_fails() {
    let sim = sim(vec![labelled(NodeSpec::control_plane("solo"), "zone-1")]);
    let out = run(&sim, &[DIST, ANTI], &[]);
    assert_eq!(out.code, 1);
    assert_eq!(out.verdict(DIST).as_deref(), Some("FAIL"));
    assert!(
        out.junit_message(&format!("{DIST}/multiple-nodes"))
            .starts_with("single-node cluster (solo)")
    );
    assert_eq!(out.verdict(ANTI).as_deref(), Some("FAIL"));
    assert!(suite_objects(&sim, "namespaces").is_empty());
}

#[test]
fn workers_in_one_zone_only_warn() {
    let nodes = compliant_nodes()
        .into_iter()
        .map(|n| {
            if n.name.starts_with('w') {
                n.zone("zone-1")
            } else {
                n
            }
        })
        .collect();
    let sim = sim(nodes);
    let out = run(&sim, &[DIST], &[]);
    assert_eq!(out.code, 0);
    let text = out.junit_out(&format!("{DIST}/worker-zones"));
    assert!(
        text.starts_with(
            "WARNING the 3 worker nodes (w1, w2, w3) are not spread over several zones"
        ),
        "{text}"
    );
    assert_eq!(run(&sim, &[DIST], &["--strict"]).code, 1);
}

#[test]
fn one_schedulable_node_plus_a_cordoned_one_fails() {
    let sim = sim(vec![
        labelled(NodeSpec::control_plane("cp1"), "zone-1"),
        labelled(NodeSpec::worker("w1"), "zone-1"),
        labelled(NodeSpec::worker("w2"), "zone-2").cordoned(),
    ]);
    let out = run(&sim, &[ANTI], &[]);
    assert_eq!(out.code, 1);
    let message = out.junit_message(&format!("{ANTI}/hostname-anti-affinity"));
    assert!(
        message.starts_with("only 1 schedulable node(s) (w1)"),
        "{message}"
    );
    assert!(message.contains("w2 is cordoned"), "{message}");
    assert!(
        message.contains("cp1 is tainted node-role.kubernetes.io/control-plane:NoSchedule"),
        "{message}"
    );
}

#[test]
fn replicas_that_never_start_fail_with_their_state_and_are_cleaned_up() {
    let sim = SimCluster::start(ClusterSpec {
        nodes: compliant_nodes(),
        pod_start_delay: Duration::from_secs(600),
        ..Default::default()
    });
    let out = run(&sim, &[ANTI], &["--pod-start-timeout", "2s"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let message = out.junit_message(&format!("{ANTI}/hostname-anti-affinity"));
    assert!(
        message.starts_with("only 0 of 3 replicas running in 0 distinct nodes after 2s"),
        "{message}"
    );
    assert!(suite_objects(&sim, "namespaces").is_empty());
}

#[test]
fn unpullable_image_aborts_with_events() {
    let image = "registry.invalid/pause:none";
    let sim = SimCluster::start(ClusterSpec {
        nodes: compliant_nodes(),
        unpullable_images: vec![image.into()],
        ..Default::default()
    });
    let out = run(
        &sim,
        &[ANTI],
        &["--workload-image", image, "--pod-start-timeout", "3s"],
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
    assert!(suite_objects(&sim, "namespaces").is_empty());
}

#[test]
fn testcases_also_run_one_at_a_time() {
    let sim = sim(compliant_nodes());
    let out = run(&sim, &[DIST, ANTI], &["--parallel", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdicts().len(), 2);
    assert!(out.verdicts().values().all(|v| v == "PASS"));
    let out = run(&sim, &[DIST], &["--parallel", "0"]);
    assert_eq!(out.code, 2, "--parallel 0 is a usage error");
}

/// The identity may list pods but not watch them (RBAC without `watch`): the wait for the
/// replicas cannot be decided, an ABORT naming the missing right, never a FAIL after the
/// deadline nor a PASS from re-listing.
#[test]
fn a_refused_watch_aborts_naming_the_missing_right() {
    let sim = SimCluster::start(ClusterSpec {
        nodes: compliant_nodes(),
        deny: vec![("watch".into(), "pods".into())],
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let out = run(&sim, &[ANTI], &["--pod-start-timeout", "20s"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.verdict(ANTI).as_deref(), Some("ABORT"));
    let message = out.junit_message(&format!("{ANTI}/hostname-anti-affinity"));
    assert!(
        message.contains("cannot watch the replicas' pods: watch pods in namespace skc-"),
        "{message}"
    );
    assert!(
        message.contains(
            "403 Forbidden: pods is forbidden: User \"sim-user\" cannot watch resource \"pods\""
        ),
        "{message}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
