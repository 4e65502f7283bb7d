//! lb-service-check and lb-ip-preservation-check against a simulated cloud controller whose
//! load balancers really listen on loopback addresses (127.X.Y.Z) and answer as the backend
//! pods would, with the source address the cloud's profile makes them see.

mod support;

use std::net::{SocketAddr, TcpStream};
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

/// Nothing the run created is left: no labelled namespace, no LoadBalancer Service, and
/// the load balancer addresses no longer accept connections.
fn assert_cleaned_up(sim: &SimCluster, out: &Output, addresses: &[String]) {
    let namespaces = suite_objects(sim, "namespaces");
    assert!(namespaces.is_empty(), "left behind: {namespaces:?}");
    let services: Vec<_> = sim
        .objects("services")
        .into_iter()
        .filter(|s| s["spec"]["type"] == "LoadBalancer")
        .collect();
    assert!(
        services.is_empty(),
        "LoadBalancer Services left: {services:?}"
    );
    for address in addresses {
        let sa: SocketAddr = format!("{address}:80").parse().unwrap();
        assert!(sa.ip().is_loopback());
        assert!(
            TcpStream::connect_timeout(&sa, Duration::from_secs(1)).is_err(),
            "load balancer {address} still answers after the run"
        );
    }
    assert!(
        out.stderr.contains("its load balancer is released"),
        "{}",
        out.stderr
    );
}

/// Addresses named in the run's messages ("got the external address X after").
fn addresses(out: &Output) -> Vec<String> {
    let re = regex::Regex::new(r#"address:? "?(127\.\d+\.\d+\.\d+)"#).unwrap();
    let mut found: Vec<String> = re
        .captures_iter(&format!("{}{}", out.junit(), out.report()))
        .map(|c| c[1].to_string())
        .filter(|a| a != "127.0.0.1")
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn packet_forwarding_lb_works_and_local_preserves_the_client() {
    let sim = sim(Some(LbBehaviour::PacketForwarding));
    let out = run(&sim, &[SVC, IP], &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(SVC).as_deref(), Some("PASS"));
    assert_eq!(out.verdict(IP).as_deref(), Some("PASS"));
    let assigned = out.junit_out(&format!("{SVC}/address-assigned"));
    assert!(
        assigned.contains("Service echo got the external address 127."),
        "{assigned}"
    );
    let reachable = out.junit_out(&format!("{SVC}/reachable"));
    assert!(
        reachable.contains("answered HTTP 200 from the machine running the suite"),
        "{reachable}"
    );
    // The suite's own address towards a 127.X address is 127.0.0.1; the echo saw it.
    assert!(reachable.contains("the backend saw 10.0.0."), "{reachable}");
    let local = out.junit_out(&format!("{IP}/local"));
    assert!(
        local.contains("the backend saw 127.0.0.1 \u{d7}5 (preserved): client address preserved"),
        "{local}"
    );
    let cluster = out.junit_out(&format!("{IP}/cluster"));
    assert!(
        cluster.contains("; SNAT by kube-proxy)") && cluster.contains("node address of worker-"),
        "{cluster}"
    );
    let summary = out.junit_out(&format!("{IP}/preservation"));
    assert!(
        summary.contains("the backend sees the client address with: local"),
        "{summary}"
    );
    // The table and the facts are in the report.
    let report = out.report();
    assert!(report.contains("classification: preserved"), "{report}");
    assert!(report.contains("classification: node-snat"), "{report}");
    assert!(
        report.contains("vantage: the machine running the suite"),
        "{report}"
    );
    let addrs = addresses(&out);
    assert_eq!(addrs.len(), 3, "{addrs:?}");
    assert_cleaned_up(&sim, &out, &addrs);
}

#[test]
fn proxying_lb_shows_its_own_address_and_the_proxy_header_carries_the_client() {
    let sim = sim(Some(LbBehaviour::Proxying {
        proxy_protocol_annotation: OCTAVIA_PROXY_PROTOCOL.into(),
    }));
    let annotation = format!("{OCTAVIA_PROXY_PROTOCOL}=true");
    let out = run(&sim, &[IP], &["--lb-annotation", &annotation]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(IP).as_deref(), Some("PASS"));
    let local = out.junit_out(&format!("{IP}/local"));
    assert!(
        local.contains("the load balancer's own address (proxying load balancer)"),
        "{local}"
    );
    let cluster = out.junit_out(&format!("{IP}/cluster"));
    assert!(cluster.contains("node address of worker-"), "{cluster}");
    for mode in ["cluster-annotated", "local-annotated"] {
        let row = out.junit_out(&format!("{IP}/{mode}"));
        assert!(
            row.contains("the backend saw 127.0.0.1 \u{d7}5 (preserved) in the PROXY header: client address preserved"),
            "{mode}: {row}"
        );
    }
    let summary = out.junit_out(&format!("{IP}/preservation"));
    assert!(
        summary.contains("cluster-annotated, local-annotated"),
        "{summary}"
    );
    // The services carried the annotation (the PROXY backend got the header).
    assert!(
        out.report()
            .contains("loadbalancer.openstack.org/proxy-protocol=true")
    );
    let addrs = addresses(&out);
    assert_eq!(addrs.len(), 4, "{addrs:?}");
    assert_cleaned_up(&sim, &out, &addrs);
}

#[test]
fn no_preservation_is_a_warning_and_fails_only_under_strict() {
    let sim = sim(Some(LbBehaviour::Proxying {
        proxy_protocol_annotation: OCTAVIA_PROXY_PROTOCOL.into(),
    }));
    let out = run(&sim, &[IP], &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(IP).as_deref(), Some("PASS"));
    let summary = out.junit_out(&format!("{IP}/preservation"));
    let message = out.junit_message(&format!("{IP}/preservation"));
    assert!(
        format!("{message}{summary}").contains("no measured mode shows the client address"),
        "{message} / {summary}"
    );
    assert!(
        format!("{message}{summary}")
            .contains("--lb-annotation loadbalancer.openstack.org/proxy-protocol=true"),
    );
    assert_cleaned_up(&sim, &out, &addresses(&out));

    let strict = run(&sim, &[IP], &["--strict"]);
    assert_eq!(strict.verdict(IP).as_deref(), Some("FAIL"));
    assert_eq!(strict.code, 1);
    assert_cleaned_up(&sim, &strict, &addresses(&strict));
}

#[test]
fn annotations_that_do_not_enable_the_proxy_protocol_are_reported() {
    // The cloud understands the Octavia annotation only; the user passed another one.
    let sim = sim(Some(LbBehaviour::Proxying {
        proxy_protocol_annotation: OCTAVIA_PROXY_PROTOCOL.into(),
    }));
    let out = run(
        &sim,
        &[IP],
        &[
            "--lb-annotation",
            "example.com/proxy-protocol=v2",
            "--lb-timeout",
            "4s",
        ],
    );
    // Informational: not reachable modes are warnings, not failures.
    assert_eq!(out.verdict(IP).as_deref(), Some("PASS"), "{}", out.stderr);
    let row = out.junit_out(&format!("{IP}/local-annotated"));
    assert!(
        row.contains("closes connections that carry no PROXY header")
            && row.contains("counted as Warn"),
        "{row}"
    );
    assert!(out.report().contains("reachable: false"));
    assert_cleaned_up(&sim, &out, &addresses(&out));
}

#[test]
fn cloud_refusing_the_load_balancer_fails_with_its_events() {
    let sim = sim(Some(LbBehaviour::Failing {
        message: "Quota exceeded for resources: ['loadbalancer']".into(),
    }));
    let out = run(&sim, &[SVC], &["--lb-timeout", "3s"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(SVC).as_deref(), Some("FAIL"));
    let message = out.junit_message(&format!("{SVC}/address-assigned"));
    assert!(
        message.contains("Service echo (type LoadBalancer) got no external address within 3s"),
        "{message}"
    );
    assert!(
        message.contains("Warning SyncLoadBalancerFailed: Error syncing load balancer: failed to ensure load balancer: Quota exceeded"),
        "{message}"
    );
    assert!(message.contains("Normal EnsuringLoadBalancer"), "{message}");
    // A load balancer without an address cannot be probed.
    assert_eq!(
        out.junit_message(&format!("{SVC}/reachable")),
        "not attempted: the Service got no external address"
    );
    assert_eq!(
        out.junit_kind(&format!("{SVC}/reachable")),
        "skipped NOT-ATTEMPTED"
    );
    assert_cleaned_up(&sim, &out, &[]);
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
fn ip_preservation_without_any_address_measured_nothing_and_does_not_pass() {
    let sim = sim(Some(LbBehaviour::Failing {
        message: "Quota exceeded for resources: ['loadbalancer']".into(),
    }));
    let out = run(&sim, &[IP], &["--lb-timeout", "2s"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(IP).as_deref(), Some("ABORT"));
    // The cloud controller refused both Services with a Warning event: each mode is
    // decided (the optional requirement fails, a warning under the default policy), while
    // preservation, which needs a measured source address, cannot be decided.
    for (mode, policy) in [("cluster", "Cluster"), ("local", "Local")] {
        let summary = out.junit_out(&format!("{IP}/{mode}"));
        assert!(
            summary.starts_with(&format!(
                "WARNING externalTrafficPolicy {policy}: Service {mode} (type LoadBalancer) \
                 got no external address within 2s"
            )) && summary.contains("Quota exceeded for resources"),
            "{summary}"
        );
        assert_eq!(out.report_requirement(&format!("{IP}/{mode}")).0, "fail");
    }
    let message = out.junit_message(&format!("{IP}/preservation"));
    assert!(
        message.starts_with(
            "nothing was measured: no mode got a source address to classify (cluster: \
             Service cluster (type LoadBalancer) got no external address within 2s"
        ),
        "{message}"
    );
    assert_eq!(
        out.report_requirement(&format!("{IP}/preservation")).0,
        "abort"
    );
    assert_cleaned_up(&sim, &out, &[]);
}

#[test]
fn backends_refused_by_admission_abort_with_the_replica_set_event() {
    let webhook = "admission webhook \"policy.example.com\" denied the request: images from \
                   registry.k8s.io are not allowed";
    let sim = SimCluster::start(ClusterSpec {
        cloud_lb: Some(CloudLb::new(LbBehaviour::PacketForwarding)),
        pod_admission: Some(webhook.into()),
        ..Default::default()
    });
    let out = run(&sim, &[SVC], &[]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(SVC).as_deref(), Some("ABORT"));
    let message = out.junit_message(&format!("{SVC}/reachable"));
    assert!(
        message.starts_with(
            "the pods of the echo backend (deployment echo) were never created: Error \
             creating: pods \"echo-"
        ) && message.contains(&format!("is forbidden: {webhook}; admission"))
            && message.ends_with("; the load balancer cannot be judged"),
        "{message}"
    );
    // The address itself was assigned: that part is decided.
    assert_eq!(out.junit_kind(&format!("{SVC}/address-assigned")), "passed");
    assert_cleaned_up(&sim, &out, &addresses(&out));
}

#[test]
fn without_a_cloud_controller_the_service_stays_pending() {
    let sim = sim(None);
    let out = run(&sim, &[SVC], &["--lb-timeout", "2s"]);
    assert_eq!(out.verdict(SVC).as_deref(), Some("FAIL"));
    let message = out.junit_message(&format!("{SVC}/address-assigned"));
    assert!(
        message.contains("no events about the Service (is a cloud controller"),
        "{message}"
    );
    // The Deployment of the backend is named like the Service and has events of its own
    // (the deployment controller's ScalingReplicaSet): they are not the Service's.
    assert!(!message.contains("ScalingReplicaSet"), "{message}");
    assert_cleaned_up(&sim, &out, &[]);
}

#[test]
fn address_that_does_not_answer_fails_reachable() {
    let sim = sim(Some(LbBehaviour::Blackhole));
    let out = run(&sim, &[SVC], &["--lb-timeout", "3s"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(SVC).as_deref(), Some("FAIL"));
    assert!(
        out.junit_out(&format!("{SVC}/address-assigned"))
            .contains("got the external address 127.")
    );
    let message = out.junit_message(&format!("{SVC}/reachable"));
    assert!(
        message.contains("did not answer from the machine running the suite within 3s"),
        "{message}"
    );
    assert!(
        message.contains("Connection refused") || message.contains("connection refused"),
        "{message}"
    );
    assert!(message.contains("--lb-probe-from cluster"), "{message}");
    // Retried with backoff, not once.
    assert!(out.stderr.contains("attempt 2 failed"), "{}", out.stderr);
    assert_cleaned_up(&sim, &out, &addresses(&out));
}

#[test]
fn unpullable_echo_image_aborts() {
    let image = "registry.example.invalid/agnhost:0.0";
    let sim = SimCluster::start(ClusterSpec {
        cloud_lb: Some(CloudLb::new(LbBehaviour::PacketForwarding)),
        unpullable_images: vec![image.into()],
        ..Default::default()
    });
    let out = run(
        &sim,
        &[SVC],
        &["--agnhost-image", image, "--pod-start-timeout", "2s"],
    );
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(SVC).as_deref(), Some("ABORT"));
    let message = out.junit_message(&format!("{SVC}/reachable"));
    assert!(
        message.contains("the image cannot be pulled, set --agnhost-image to a reachable mirror"),
        "{message}"
    );
    assert_cleaned_up(&sim, &out, &addresses(&out));
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
