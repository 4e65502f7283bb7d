//! lb-service-check and lb-ip-preservation-check against a simulated cloud controller whose
//! load balancers really listen on loopback addresses (127.X.Y.Z) and answer as the backend
//! pods would, with the source address the cloud's profile makes them see: only what a real
//! data plane cannot be made to show here (a Service deletion that hangs, the in-cluster
//! run's RBAC table, which the in-cluster tests own). The load balancer modes themselves run on the real test bed
//! (`tests/dataplane.rs`: Octavia-like, OVN-like, unreachable, refusing, none).

mod support;

use std::time::Duration;
use support::binary::*;
use support::loadbalancer::{
    CloudLb, LbBehaviour, OCTAVIA_PROXY_PROTOCOL, emulate_agnhost, emulate_nginx,
};
use support::{ClusterSpec, SimCluster};

const SVC: &str = "lb-service-check";
const IP: &str = "lb-ip-preservation-check";
const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost";
const NGINX: &str = "docker.io/nginxinc/nginx-unprivileged";

fn sim(cloud: Option<LbBehaviour>) -> SimCluster {
    let sim = SimCluster::start(ClusterSpec {
        cloud_lb: cloud.map(CloudLb::new),
        ..Default::default()
    });
    emulate_agnhost(&sim, AGNHOST);
    emulate_nginx(&sim, NGINX);
    sim
}

fn run(sim: &SimCluster, checks: &[&str], extra: &[&str]) -> Output {
    let mut args: Vec<&str> = checks.iter().flat_map(|c| ["--check", *c]).collect();
    args.extend_from_slice(extra);
    let out = run_against(sim, &args);
    out.assert_clean_exit();
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    out
}

#[test]
fn decided_failure_survives_a_deadline_during_the_release_of_the_service() {
    // The address never comes (FAIL decided); then deleting the Service hangs, as when the
    // cloud never releases the load balancer, until --timeout stops the check.
    let sim = sim(Some(LbBehaviour::Failing {
        message: "Quota exceeded for resources: ['loadbalancer']".into(),
    }));
    let kubeconfig = sim.kubeconfig_path();
    let out = std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            scs(&[
                "run",
                "-k",
                kubeconfig.to_str().unwrap(),
                "--offline",
                "--check",
                SVC,
                "--lb-timeout",
                "2s",
                "--timeout",
                "6s",
            ])
        });
        eventually("the Service", Duration::from_secs(30), || {
            sim.objects("services")
                .iter()
                .any(|s| s["spec"]["type"] == "LoadBalancer")
        });
        let service = sim
            .objects("services")
            .into_iter()
            .find(|s| s["spec"]["type"] == "LoadBalancer")
            .unwrap();
        let namespace = service["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_string();
        sim.set_faults(vec![support::Fault::Hang {
            path_prefix: format!("/api/v1/namespaces/{namespace}/services/echo"),
        }]);
        run.join().unwrap()
    });
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, format!("{SVC}: FAIL\n"));
    assert!(
        out.stderr.contains(
            "stopped after every requirement was decided: the check did not \
             finish within 6s (--timeout); last step: "
        ),
        "{}",
        out.stderr
    );
    let name = format!("{SVC}/address-assigned");
    assert_eq!(out.junit_kind(&name), "failure FAIL");
    assert!(
        out.junit_message(&name)
            .contains("got no external address within 2s")
    );
    assert_eq!(out.report_requirement(&name).0, "fail");
    assert_eq!(
        out.report_requirement(&format!("{SVC}/reachable")),
        (
            "not-attempted".to_string(),
            "not attempted: the Service got no external address".to_string()
        )
    );
    sim.set_faults(vec![]);
    assert!(suite_objects(&sim, "namespaces").is_empty());
    assert!(
        sim.objects("services")
            .iter()
            .all(|s| s["spec"]["type"] != "LoadBalancer")
    );
}

#[test]
fn bad_annotation_is_a_usage_error() {
    let out = scs(&["run", "--lb-annotation", "no-equals-sign"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("expected KEY=VALUE"), "{}", out.stderr);
}

/// Run inside the cluster with the ClusterRole `gen` prints (the simulator enforces RBAC
/// for service accounts), with the options that need more rights (`--lb-probe-from
/// cluster`: a probe pod and its log; `--lb-annotation`: the nginx ConfigMap): the same
/// verdicts, and no call of the checks is refused. From inside the cluster (the suite's own
/// pod, or a probe pod) only the PROXY protocol Services (ipMode Proxy) are measured; the
/// ipMode VIP ones are not probed (kube-proxy would bypass the load balancer).
#[test]
fn in_cluster_the_rbac_table_grants_every_call() {
    let image = "ghcr.io/sovereigncloudstack/scs-kaas-check";
    let annotation = format!("{OCTAVIA_PROXY_PROTOCOL}=true");
    for probe_from in ["cluster", "suite"] {
        let sim = sim_proxying();
        support::incluster::register_suite_image(&sim, image);
        let out = run(
            &sim,
            &[SVC, IP],
            &[
                "--in-cluster",
                "--lb-probe-from",
                probe_from,
                "--lb-annotation",
                &annotation,
            ],
        );
        assert_eq!(out.verdict(SVC).as_deref(), Some("ABORT"), "{}", out.stderr);
        let message = out.junit_message(&format!("{SVC}/reachable"));
        assert!(
            message.contains("has ipMode VIP (status.loadBalancer.ingress), so kube-proxy routes"),
            "{message}"
        );
        let vantage = if probe_from == "cluster" {
            "a pod inside the cluster (--lb-probe-from cluster)"
        } else {
            "the suite's own pod inside the cluster"
        };
        assert!(
            message.contains(&format!("not probed from {vantage}")),
            "{message}"
        );
        // Two modes not measured: undecided, whatever the others show.
        assert_eq!(out.verdict(IP).as_deref(), Some("ABORT"), "{}", out.stderr);
        let summary = out.junit_out(&format!("{IP}/preservation"));
        assert!(
            summary.contains(
                "the backend sees the client address with: cluster-annotated, local-annotated"
            ),
            "{summary}"
        );
        for mode in ["cluster-annotated", "local-annotated"] {
            let row = out.junit_out(&format!("{IP}/{mode}"));
            assert!(
                row.contains(
                    "in the PROXY header: client address preserved; 5 of 5 connections answered"
                ),
                "{mode}: {row}"
            );
        }
        assert!(support::incluster::assert_runner_granted(&sim) > 10);
    }
}

fn sim_proxying() -> SimCluster {
    sim(Some(LbBehaviour::Proxying {
        proxy_protocol_annotation: OCTAVIA_PROXY_PROTOCOL.into(),
    }))
}
