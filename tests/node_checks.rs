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

/// The compliant nodes with node `name` changed by `change`.
fn with_changed(name: &str, change: impl Fn(NodeSpec) -> NodeSpec) -> Vec<NodeSpec> {
    compliant_nodes()
        .into_iter()
        .map(|n| if n.name == name { change(n) } else { n })
        .collect()
}

#[test]
fn missing_zone_label_is_named() {
    let sim = sim(with_changed("w2", |mut n| {
        n.labels.remove("topology.kubernetes.io/zone");
        n
    }));
    let out = run(&sim, &[DIST], &[]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.junit_message(&format!("{DIST}/topology-labels")),
        "w2 lacks topology.kubernetes.io/zone"
    );
}

fn workers_only() -> Vec<NodeSpec> {
    compliant_nodes()
        .into_iter()
        .filter(|n| n.name.starts_with('w'))
        .collect()
}

#[test]
fn hidden_control_plane_is_undecided_not_a_pass() {
    let sim = sim(workers_only());
    let out = run(&sim, &[DIST], &[]);
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
    let sim = sim(workers_only());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("control-plane.yaml");
    std::fs::write(
        &file,
        "attested-by: ACME Cloud KaaS operations <kaas-ops@acme.example>\n\
         date: 2026-11-01\n\
         control-plane:\n  - host: hv-17\n    zone: zone-1\n  - host: hv-42\n    zone: zone-2\n\
         \x20 - host: hv-57\n    zone: zone-3\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let out = run(&sim, &[DIST], &["--control-plane-attestation", path]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdict(DIST).as_deref(), Some("PASS"));
    assert!(
        out.junit_out(&format!("{DIST}/control-plane-hosts"))
            .contains(
                "3 control-plane instances on 3 hosts (hv-17, hv-42, hv-57) (attested by ACME \
             Cloud KaaS operations <kaas-ops@acme.example> on 2026-11-01, not visible in the API)"
            ),
        "{}",
        out.junit()
    );
    // One host for all: FAIL, still naming the attestation.
    std::fs::write(
        &file,
        "attested-by: ACME\ndate: 2026-11-01\ncontrol-plane:\n  - host: hv-17\n  - host: hv-17\n",
    )
    .unwrap();
    let out = run(&sim, &[DIST], &["--control-plane-attestation", path]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.junit_message(&format!("{DIST}/control-plane-hosts")),
        "all 2 control-plane instance(s) run on one host, hv-17 (attested by ACME on \
         2026-11-01, not visible in the API); at least two machines are required"
    );
    // A broken attestation decides nothing.
    std::fs::write(&file, "attested-by: ACME\ncontrol-plane: []\n").unwrap();
    let out = run(&sim, &[DIST], &["--control-plane-attestation", path]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let message = out.junit_message(&format!("{DIST}/control-plane-hosts"));
    assert!(
        message.contains(&format!(
            "the attestation cannot be used: {path}: invalid control-plane attestation"
        )),
        "{message}"
    );
}

#[test]
fn legacy_topology_labels_fail_naming_them() {
    let sim = sim(with_changed("w2", |mut n| {
        n.labels.remove("topology.kubernetes.io/zone");
        n.labels.remove("topology.kubernetes.io/region");
        n.label("failure-domain.beta.kubernetes.io/zone", "zone-2")
            .label("failure-domain.beta.kubernetes.io/region", "region-1")
    }));
    let out = run(&sim, &[DIST], &[]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.junit_message(&format!("{DIST}/topology-labels")),
        "w2 lacks topology.kubernetes.io/zone and topology.kubernetes.io/region (it carries \
         only the legacy failure-domain.beta.kubernetes.io/zone=zone-2 and \
         failure-domain.beta.kubernetes.io/region=region-1, deprecated since Kubernetes 1.17; \
         scs-0214-v2 requires the topology.kubernetes.io labels)"
    );
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
    // Nothing can be spread: no workload was started, zone-spread was not attempted.
    assert_eq!(
        out.junit_message(&format!("{ANTI}/zone-spread")),
        "not attempted: fewer than two schedulable nodes (hostname-anti-affinity failed)"
    );
    assert_eq!(
        out.report_requirement(&format!("{ANTI}/zone-spread")).0,
        "not-attempted"
    );
    assert!(sim.objects("deployments").is_empty());
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
fn zone_spread_applies_only_where_zones_are_known() {
    // One labelled zone: nothing to spread over.
    let one_zone: Vec<NodeSpec> = compliant_nodes()
        .into_iter()
        .map(|n| n.zone("zone-1"))
        .collect();
    let out = run(&sim(one_zone), &[ANTI], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.junit_kind(&format!("{ANTI}/zone-spread")),
        "skipped NOT-APPLICABLE"
    );
    assert_eq!(
        out.junit_message(&format!("{ANTI}/zone-spread")),
        "all schedulable nodes are in one zone (zone-1): there are no zones to spread over"
    );
    // Workers without zone labels: whether zones exist cannot be told.
    let out = run(
        &sim(with_changed("w3", |mut n| {
            n.labels.remove("topology.kubernetes.io/zone");
            n
        })
        .into_iter()
        .map(|n| if n.name == "w2" { n.zone("zone-1") } else { n })
        .collect()),
        &[ANTI],
        &[],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(
        out.junit_message(&format!("{ANTI}/zone-spread")),
        "cannot tell whether the schedulable nodes span several zones: nodes without a \
         topology.kubernetes.io/zone label: w3 (see node-distribution-check/topology-labels)"
    );
}

#[test]
fn pods_refused_by_admission_abort_with_the_replica_set_event() {
    let quota = "exceeded quota: pods, requested: pods=1, used: pods=0, limited: pods=0";
    let sim = SimCluster::start(ClusterSpec {
        nodes: compliant_nodes(),
        pod_admission: Some(quota.into()),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let out = run(&sim, &[ANTI], &[]);
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
                "is forbidden: {quota}; admission (Pod Security, a ResourceQuota or LimitRange, \
                 a webhook) refuses them, an environment problem that leaves nothing to judge"
            )),
            "{message}"
        );
    }
    assert!(suite_objects(&sim, "namespaces").is_empty());
    assert!(sim.objects("replicasets").is_empty());
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
