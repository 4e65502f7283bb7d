//! The networking and load balancer checks against a real data plane (testbed/, see
//! testbed/README.md "Data plane"): NetworkPolicy enforced by kube-router's network policy
//! controller or by nothing at all (Flannel alone), Services by kube-proxy (iptables mode)
//! in every node namespace, and load balancers between a client namespace, where the suite
//! runs, and the nodes: `proxy` (HAProxy like an Octavia amphora), `l3` (destination NAT
//! like OVN's), `unreachable` and none.
//!
//! The load balancer scenarios have one member node (`worker-0`, which runs every backend;
//! the control-plane node carries kubeadm's exclude-from-external-load-balancers label), so
//! each mode takes one packet path and the observed source is deterministic:
//!
//! | scenario | mode | backend sees | what it is | the suite says |
//! |---|---|---|---|---|
//! | lb-proxy | Cluster | 10.244.1.1 | kube-proxy's MASQUERADE to worker-0's bridge | node SNAT (the gateway of worker-0's pod CIDR) |
//! | lb-proxy | Local | 172.30.0.2 | the load balancer's address on the node network | another address (proxying load balancer) |
//! | lb-proxy | Cluster/Local + PROXY annotation | 198.51.100.10 in the PROXY header | the client | preserved |
//! | lb-l3 | Cluster | 10.244.1.1 | kube-proxy's MASQUERADE | node SNAT |
//! | lb-l3 | Local | 198.51.100.10 | the client | preserved |
//! | lb-l3 | + PROXY annotation | - | OVN's provider refuses PROXY pools | no address (SyncLoadBalancerFailed) |
//! | lb-l3-nat | Local | 198.51.100.10 | the client's public address (socket: 192.168.77.10) | nat-kept-port: preservation ABORT naming --client-ip; preserved with --client-ip |
//! | lb-unreachable | all | nothing: packets dropped | a dead load balancer | unreachable (warnings); lb-service-check FAILs `reachable` |
//! | single-node (no cloud controller) | all | nothing: no address | - | no address (warnings); lb-service-check FAILs `address-assigned` |
//! | managed-workers (cloud refuses) | all | nothing: no address | - | SyncLoadBalancerFailed named; lb-service-check FAILs `address-assigned` |
//! | lb-unreachable, lb-proxy | ipMode VIP, `--lb-probe-from cluster` | nothing: kube-proxy would bypass the load balancer | - | not probed: ABORT |
//! | lb-proxy | ipMode Proxy (PROXY annotation), `--lb-probe-from cluster` | the probe pod in the PROXY header | the client | preserved |
//!
//! Every row is decided from 5 connections (the first retried until it answers). The suite
//! runs as a ServiceAccount bound to exactly the ClusterRole `gen` prints for the same
//! arguments, and every run is asserted to leave nothing labelled behind.
//! Needs root, `testbed/build.sh`, and the Debian packages ipset, haproxy, nftables.

mod support;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::NETWORK_POLICY_SCENARIOS;
use support::binary::{Output, assert_valid_junit, scs};
use support::testbed::TestBed;

const NETPOL: &str = "kaas-networking-check";
const LB_SERVICE: &str = "lb-service-check";
const LB_IP: &str = "lb-ip-preservation-check";
const PROXY_PROTOCOL: &str = "loadbalancer.openstack.org/proxy-protocol=true";
/// The client namespace's address, as the load balancers see it.
const CLIENT_IP: &str = "198.51.100.10";
/// The load balancer namespace's address on the node network.
const LB_NODE_IP: &str = "172.30.0.2";
/// worker-0's pod bridge (cbr0): kube-proxy's MASQUERADE source towards its own pods.
const WORKER_BRIDGE_IP: &str = "10.244.1.1";
/// agnhost from a mirror (`--agnhost-image`).
const MIRRORED_AGNHOST: &str = "mirror.example/m/registry.k8s.io/e2e-test-images/agnhost:2.53";

fn report(out: &Output) -> Value {
    report_of(out)
}

/// report.yaml of a run.
fn report_of(out: &Output) -> Value {
    serde_saphyr::from_str(&out.report()).expect("report.yaml is YAML")
}

fn testcase<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["testcases"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == id))
        .unwrap_or_else(|| panic!("no testcase {id} in the report: {report}"))
}

/// status and message of requirement `<testcase>/<name>`.
fn requirement(report: &Value, testcase_id: &str, name: &str) -> (String, String) {
    let full = format!("{testcase_id}/{name}");
    let r = testcase(report, testcase_id)["requirements"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == full.as_str()))
        .unwrap_or_else(|| panic!("no requirement {full} in the report: {report}"));
    (
        r["status"].as_str().unwrap_or_default().to_string(),
        r["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// lb-ip-preservation-check's table (`facts.modes`) by mode.
fn modes(out: &Output) -> BTreeMap<String, Value> {
    let report = report(out);
    testcase(&report, LB_IP)["facts"]["modes"]
        .as_array()
        .unwrap_or_else(|| panic!("no modes in the report: {}", out.report()))
        .iter()
        .map(|m| {
            (
                m["mode"].as_str().unwrap_or_default().to_string(),
                m.clone(),
            )
        })
        .collect()
}

/// (observed source, classification) of one mode.
fn row(modes: &BTreeMap<String, Value>, mode: &str) -> (String, String) {
    let m = modes
        .get(mode)
        .unwrap_or_else(|| panic!("no mode {mode}: {modes:?}"));
    (
        m["observed_source"].as_str().unwrap_or("-").to_string(),
        m["classification"].as_str().unwrap_or("-").to_string(),
    )
}

/// lb-ip-preservation-check's table from the client namespace of a fresh `scenario`.
fn preservation_table(scenario: &str, extra: &[&str]) -> BTreeMap<String, Value> {
    let tb = TestBed::start(scenario);
    let mut args = vec!["--check", LB_IP, "--lb-timeout", "30s"];
    args.extend_from_slice(extra);
    let out = least(&tb, &args);
    verdict(&out, LB_IP);
    let table = modes(&out);
    assert_stopped(tb);
    table
}

/// Asserts the rows of lb-ip-preservation-check's table: mode, the source the backend saw
/// (the real packet path's), and the suite's classification.
fn assert_table(modes: &BTreeMap<String, Value>, expected: &[(&str, &str, &str)]) {
    for (mode, observed, class) in expected {
        assert_eq!(
            row(modes, mode),
            (observed.to_string(), class.to_string()),
            "{mode}: {modes:?}"
        );
    }
}

/// Asserts one row of [`preservation_table`]: (observed source, classification).
fn assert_row(scenario: &str, extra: &[&str], mode: &str, observed: &str, class: &str) {
    let modes = preservation_table(scenario, extra);
    assert_eq!(
        row(&modes, mode),
        (observed.into(), class.into()),
        "{modes:?}"
    );
}

/// Creates the object `value` describes.
async fn create<K>(api: &Api<K>, value: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("a valid object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("created")
}

/// The suite in the client namespace (`run ... args`) as a ServiceAccount bound to exactly
/// the ClusterRole `gen` prints for the same arguments; asserts that the run left nothing
/// labelled behind.
fn least(tb: &TestBed, args: &[&str]) -> Output {
    let account = tb.gen_kubeconfig(args);
    let out = tb.client_run_as(&tb.for_client_namespace(&account), args);
    let run_id = report(&out)["run"]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run id:\n{}", out.stderr))
        .to_string();
    tb.assert_run_left_nothing(&run_id);
    out
}

/// Both load balancer checks in the client namespace, the PROXY protocol annotation given.
fn lb_checks(tb: &TestBed, lb_timeout: &str) -> Output {
    least(
        tb,
        &[
            "--check",
            LB_SERVICE,
            "--check",
            LB_IP,
            "--lb-annotation",
            PROXY_PROTOCOL,
            "--lb-timeout",
            lb_timeout,
        ],
    )
}

fn assert_stopped(tb: TestBed) {
    let prefix = tb.prefix().to_string();
    let left = tb.stop();
    assert!(left.is_empty(), "test bed {prefix} left behind: {left:#?}");
}

fn verdict(out: &Output, testcase: &str) -> String {
    out.assert_clean_exit();
    out.verdict(testcase)
        .unwrap_or_else(|| panic!("no verdict for {testcase}:\n{}", out.stderr))
}

/// Requests of `verb` ("" for any) on `resource` (and `subresource`, "" for none) the API
/// server has served so far (kube-apiserver's own apiserver_request_total, summed over
/// codes).
fn requests_served(tb: &TestBed, verb: &str, resource: &str, subresource: &str) -> u64 {
    let client = tb.client();
    let text = tb.block_on(async {
        let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
        client.request_text(req).await.expect("GET /metrics")
    });
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains(&format!("resource=\"{resource}\""))
                && l.contains(&format!("subresource=\"{subresource}\""))
                && (verb.is_empty() || l.contains(&format!("verb=\"{verb}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Requests through the API server's pod proxy so far.
fn pod_proxy_requests(tb: &TestBed) -> u64 {
    requests_served(tb, "", "pods", "proxy")
}

/// The AdminNetworkPolicy and BaselineAdminNetworkPolicy CRDs (what a plugin that
/// implements them installs) and a default IngressClass: both recommendations hold.
fn install_recommendations(tb: &TestBed) {
    use k8s_openapi::api::networking::v1::IngressClass;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let client = tb.client();
    tb.block_on(async {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for (plural, kind) in [
            ("adminnetworkpolicies", "AdminNetworkPolicy"),
            ("baselineadminnetworkpolicies", "BaselineAdminNetworkPolicy"),
        ] {
            create(
                &crds,
                json!({
                    // As the network-policy-api project's CRDs carry it (a protected group).
                    "metadata": {"name": format!("{plural}.policy.networking.k8s.io"),
                        "annotations": {"api-approved.kubernetes.io":
                            "https://github.com/kubernetes-sigs/network-policy-api/pull/30"}},
                    "spec": {"group": "policy.networking.k8s.io", "scope": "Cluster",
                        "names": {"plural": plural, "kind": kind},
                        "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                            "schema": {"openAPIV3Schema": {"type": "object",
                                "x-kubernetes-preserve-unknown-fields": true}}}]}
                }),
            )
            .await;
            let name = format!("{plural}.policy.networking.k8s.io");
            tokio::time::timeout(
                Duration::from_secs(30),
                await_condition(crds.clone(), &name, conditions::is_crd_established()),
            )
            .await
            .expect("CRD established within 30 s")
            .expect("watch CRD");
        }
        let classes: Api<IngressClass> = Api::all(client.clone());
        create(
            &classes,
            json!({
                "metadata": {"name": "nginx",
                    "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
                "spec": {"controller": "k8s.io/ingress-nginx"}
            }),
        )
        .await;
    });
}

/// The nodes the probe pods of a kept run were scheduled to, by pod.
fn probe_pod_nodes(tb: &TestBed, run_id: &str) -> BTreeMap<String, String> {
    let client = tb.client();
    tb.block_on(async {
        let pods: Api<Pod> = Api::all(client);
        let list = pods
            .list(
                &kube::api::ListParams::default()
                    .labels(&format!("scs-kaas-check/run-id={run_id}")),
            )
            .await
            .expect("list pods");
        list.items
            .iter()
            .map(|p| {
                (
                    format!(
                        "{}/{}",
                        p.metadata.namespace.clone().unwrap_or_default(),
                        p.metadata.name.clone().unwrap_or_default()
                    ),
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_default(),
                )
            })
            .collect()
    })
}

#[test]
fn kube_router_enforces_every_scenario_of_the_probe_matrix() {
    let tb = TestBed::start("netpol-kube-router");
    install_recommendations(&tb);
    // The rights `gen` prints for this check, and nothing more.
    let sa = tb.gen_kubeconfig(&["--check", NETPOL]);
    let before = pod_proxy_requests(&tb);
    let started = Instant::now();
    // --keep: the probe pods stay, so that their placement can be checked afterwards. The
    // agnhost image from a mirror (the test bed matches images by repository path).
    let out = scs(&[
        "run",
        "-k",
        sa.to_str().expect("path"),
        "--offline",
        "--check",
        NETPOL,
        "--keep",
        "--agnhost-image",
        MIRRORED_AGNHOST,
    ]);
    let wall = started.elapsed();
    let probes = pod_proxy_requests(&tb) - before;
    assert_eq!(verdict(&out, NETPOL), "PASS", "{}", out.stderr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    assert_eq!(
        requests_served(&tb, "PUT", "pods", "") + requests_served(&tb, "PATCH", "pods", ""),
        0
    );
    let report = report(&out);
    let (status, message) = requirement(&report, NETPOL, "admin-network-policy");
    assert_eq!(status, "pass", "{message}");
    assert!(
        message.contains("policy.networking.k8s.io/v1alpha1/adminnetworkpolicies"),
        "{message}"
    );
    let (status, message) = requirement(&report, NETPOL, "default-ingress-class");
    assert_eq!(status, "pass", "{message}");
    assert!(
        message.contains("default IngressClass: nginx (k8s.io/ingress-nginx)"),
        "{message}"
    );
    // Denied cells are measured: the whole matrix is in the details.
    let run_id = report["run"]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    let (a, b) = (
        format!("skc-{run_id}-netpol-a"),
        format!("skc-{run_id}-netpol-b"),
    );
    let text = out.junit_out(&format!("{NETPOL}/default-deny-ingress"));
    assert!(text.contains("8 of 16 connections allowed"), "{text}");
    assert!(
        text.contains(&format!(
            "{b}/client-y -> {a}/server:8081: expected denied, observed denied"
        )),
        "{text}"
    );
    let (_, message) = requirement(&report, NETPOL, "ingress-pod-and-namespace-selector");
    assert!(
        message.contains("10 of 16 connections allowed"),
        "{message}"
    );
    for id in NETWORK_POLICY_SCENARIOS {
        assert!(
            out.stderr.contains(&format!("{id}: as expected after")),
            "{}",
            out.stderr
        );
    }
    // The probe pods passed the real restricted PodSecurity admission, with the image given;
    // --keep keeps them, but every scenario's policies were removed.
    let client = tb.client();
    let selector = format!("scs-kaas-check/run-id={run_id}");
    let (pods, policies) = tb.block_on(async {
        let pods: Api<Pod> = Api::all(client.clone());
        let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
            Api::all(client.clone());
        let params = kube::api::ListParams::default().labels(&selector);
        (
            pods.list(&params).await.expect("pods").items,
            policies.list(&params).await.expect("policies").items,
        )
    });
    assert_eq!(pods.len(), 6);
    assert!(policies.is_empty(), "{policies:?}");
    for p in &pods {
        let spec = p.spec.as_ref().expect("spec");
        let pod_context = spec.security_context.as_ref().expect("pod securityContext");
        assert_eq!(pod_context.run_as_non_root, Some(true));
        for c in &spec.containers {
            assert_eq!(c.image.as_deref(), Some(MIRRORED_AGNHOST));
            let context = c.security_context.as_ref().expect("securityContext");
            assert_eq!(context.allow_privilege_escalation, Some(false));
            assert_eq!(
                context.capabilities.as_ref().and_then(|c| c.drop.clone()),
                Some(vec!["ALL".to_string()])
            );
            let args = c.args.clone().unwrap_or_default();
            assert_eq!(args[0], "netexec");
            assert!(args.iter().any(|a| a == "--udp-port=-1"), "{args:?}");
        }
    }
    let (status, message) = requirement(&report, NETPOL, "baseline");
    assert_eq!(status, "pass", "{message}");
    assert!(
        message.contains("16 of 16 connections allowed"),
        "{message}"
    );
    let facts = &testcase(&report, NETPOL)["facts"]["network-policy-scenarios"];
    let mut total = 0.0;
    let mut rounds = 0;
    for id in NETWORK_POLICY_SCENARIOS {
        let (status, message) = requirement(&report, NETPOL, id);
        assert_eq!(status, "pass", "{id}: {message}");
        assert!(
            message.contains("as expected (in force after"),
            "{id}: {message}"
        );
        let timing = &facts[id];
        assert_eq!(timing["in_force"], json!(true), "{id}: {timing}");
        let seconds = timing["seconds"].as_f64().expect("seconds in the report");
        let r = timing["probe_rounds"]
            .as_u64()
            .expect("probe_rounds in the report");
        // A change takes at least one round that still sees the old matrix: kube-router
        // programs a policy after it was created, never before.
        assert!(r >= 1 && seconds < 60.0, "{id}: {timing}");
        total += seconds;
        rounds += r;
        eprintln!("{id}: {seconds} s, {r} probe rounds");
    }
    // Every round probes all 16 cells through the pod proxy (plus the rounds that wait for
    // the policies to be gone after each scenario).
    assert!(
        probes >= 16 * (rounds + 1),
        "{probes} probes for {rounds} rounds"
    );
    eprintln!(
        "kaas-networking-check on kube-router: {:.1} s wall, {total:.1} s in the 8 scenarios, \
         {probes} probe requests through the pod proxy",
        wall.as_secs_f64()
    );

    // Same-node (bridged) and cross-node (routed) paths were both probed.
    let placement = probe_pod_nodes(&tb, &run_id);
    assert_eq!(placement.len(), 6, "{placement:?}");
    // The servers on different nodes, client x beside its own namespace's server, client
    // y beside the other one: each policy's cells cross both paths.
    let node = |ns: &str, pod: &str| placement[&format!("skc-{run_id}-netpol-{ns}/{pod}")].clone();
    let (server_a, server_b) = (node("a", "server"), node("b", "server"));
    assert_ne!(server_a, server_b, "{placement:?}");
    assert_eq!(node("a", "client-x"), server_a, "{placement:?}");
    assert_eq!(node("a", "client-y"), server_b, "{placement:?}");
    assert_eq!(node("b", "client-x"), server_b, "{placement:?}");
    assert_eq!(node("b", "client-y"), server_a, "{placement:?}");
    assert!(
        message.contains(&format!(
            "placement: servers on nodes {server_a} and {server_b}, clients x beside their own \
             namespace's server and clients y beside the other's: every scenario is probed \
             within a node and across nodes"
        )),
        "{message}"
    );
    let deleted = scs(&["delete", "-k", tb.kubeconfig_str(), "--run-id", &run_id]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    tb.assert_run_left_nothing(&run_id);
    assert_stopped(tb);
}

#[test]
fn without_a_policy_implementation_default_deny_fails_naming_its_cells() {
    let tb = TestBed::start("netpol-none");
    let sa = tb.gen_kubeconfig(&["--check", NETPOL]);
    let policies_before = requests_served(&tb, "POST", "networkpolicies", "");
    let out = scs(&[
        "run",
        "-k",
        sa.to_str().expect("path"),
        "--offline",
        "--check",
        NETPOL,
        "--policy-timeout",
        "3s",
    ]);
    assert_eq!(verdict(&out, NETPOL), "FAIL", "{}", out.stderr);
    assert_eq!(out.code, 1, "{}", out.stderr);
    // The testcase fails whatever the rest would show: only the first policy was created.
    assert_eq!(
        requests_served(&tb, "POST", "networkpolicies", "") - policies_before,
        1
    );
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    let report = report(&out);
    let run_id = report["run"]["run_id"].as_str().expect("run id");
    assert!(
        !out.junit_message(&format!("{NETPOL}/baseline"))
            .contains("expected")
    );
    // Missing recommendations are warnings.
    let (status, message) = requirement(&report, NETPOL, "admin-network-policy");
    assert_eq!(status, "warn", "{message}");
    assert!(
        message.contains("the policy.networking.k8s.io API (AdminNetworkPolicy / BaselineAdminNetworkPolicy) is not served"),
        "{message}"
    );
    let (status, message) = requirement(&report, NETPOL, "default-ingress-class");
    assert_eq!(status, "warn", "{message}");
    assert!(message.contains("no IngressClass exists"), "{message}");
    assert_eq!(
        out.junit_kind(&format!("{NETPOL}/default-deny-ingress")),
        "failure FAIL"
    );
    assert!(
        out.junit_message(&format!("{NETPOL}/default-deny-ingress"))
            .contains("and 4 more"),
        "{}",
        out.junit()
    );
    tb.assert_run_left_nothing(run_id);
    let a = format!("skc-{run_id}-netpol-a");
    let b = format!("skc-{run_id}-netpol-b");
    let (status, _) = requirement(&report, NETPOL, "baseline");
    assert_eq!(status, "pass");
    // Per scenario: how many of the 16 cells differ, and the first one the message names.
    let expected = [
        (
            "default-deny-ingress",
            8,
            format!("{a}/client-x -> {a}/server:8080"),
        ),
        (
            "ingress-pod-selector",
            6,
            format!("{a}/client-y -> {a}/server:8080"),
        ),
        (
            "ingress-namespace-selector",
            4,
            format!("{a}/client-x -> {a}/server:8080"),
        ),
        (
            "ingress-pod-and-namespace-selector",
            6,
            format!("{a}/client-x -> {a}/server:8080"),
        ),
        (
            "ingress-port",
            4,
            format!("{a}/client-x -> {a}/server:8081"),
        ),
        (
            "default-deny-egress",
            8,
            format!("{a}/client-x -> {a}/server:8080"),
        ),
        (
            "egress-pod-selector",
            4,
            format!("{a}/client-x -> {b}/server:8080"),
        ),
        (
            "egress-ipblock-except",
            4,
            format!("{a}/client-x -> {b}/server:8080"),
        ),
    ];
    let facts = &testcase(&report, NETPOL)["facts"]["network-policy-scenarios"];
    // The first scenario decides the mandatory FAIL; the check stops there (issue 20) and
    // reports the rest as not attempted. Each later row documents what the none profile
    // would show, should the early stop ever go.
    let (expected, rest) = expected.split_at(1);
    for (id, _, _) in rest {
        let (status, message) = requirement(&report, NETPOL, id);
        assert_eq!(status, "not-attempted", "{id}: {message}");
        assert_eq!(
            message, "not attempted: default-deny-ingress already failed",
            "{id}"
        );
        assert_eq!(
            out.junit_kind(&format!("{NETPOL}/{id}")),
            "skipped NOT-ATTEMPTED"
        );
    }
    for (id, differ, first) in expected {
        let (status, message) = requirement(&report, NETPOL, id);
        assert_eq!(status, "fail", "{id}: {message}");
        assert!(
            message.contains(&format!(
                "{differ} of 16 connections differ from the expected matrix"
            )),
            "{id}: {message}"
        );
        assert!(
            message.contains(&format!("{first}: expected denied, observed allowed")),
            "{id}: {message}"
        );
        assert!(!message.contains("expected allowed"), "{id}: {message}");
        assert_eq!(facts[*id]["in_force"], json!(false), "{id}");
        assert_eq!(facts[*id]["allowed"], json!(16), "{id}");
        assert!(facts[*id]["seconds"].as_f64().unwrap_or(0.0) >= 3.0, "{id}");
        let line = format!("ERROR: {NETPOL}/{id}: ");
        assert!(out.stderr.contains(&line), "{}", out.stderr);
    }
    assert_stopped(tb);
}

#[test]
fn octavia_like_proxy_load_balancer_shows_its_address_and_the_proxy_header() {
    let tb = TestBed::start("lb-proxy");
    let out = lb_checks(&tb, "60s");
    assert_eq!(verdict(&out, LB_SERVICE), "PASS", "{}", out.stderr);
    let report = report(&out);
    let (_, assigned) = requirement(&report, LB_SERVICE, "address-assigned");
    assert!(
        assigned.contains("got the external address 203.0.113."),
        "{assigned}"
    );
    let (_, reachable) = requirement(&report, LB_SERVICE, "reachable");
    assert!(
        reachable.contains("answered HTTP 200 from the machine running the suite")
            && reachable.contains(&format!("(the backend saw {WORKER_BRIDGE_IP}:")),
        "{reachable}"
    );

    assert_eq!(verdict(&out, LB_IP), "PASS", "{}", out.stderr);
    assert_table(
        &modes(&out),
        &[
            // HAProxy -> worker-0's node port -> kube-proxy's DNAT to a local pod and
            // MASQUERADE out of the pod bridge (node SNAT).
            ("cluster", WORKER_BRIDGE_IP, "node-snat"),
            // No SNAT on the node: the backend sees the amphora's own connection.
            ("local", LB_NODE_IP, "other"),
            // The PROXY protocol header carries the client, whatever the policy.
            ("cluster-annotated", CLIENT_IP, "preserved"),
            ("local-annotated", CLIENT_IP, "preserved"),
        ],
    );
    let (_, local) = requirement(&report, LB_IP, "local");
    assert!(
        local.contains("another address (proxying load balancer or NAT)"),
        "{local}"
    );
    for mode in ["cluster-annotated", "local-annotated"] {
        let (_, message) = requirement(&report, LB_IP, mode);
        assert!(
            message.contains("in the PROXY header: client address preserved"),
            "{message}"
        );
    }
    let (status, message) = requirement(&report, LB_IP, "preservation");
    assert_eq!(status, "pass", "{message}");
    assert!(
        message.contains("cluster-annotated, local-annotated"),
        "{message}"
    );
    assert!(
        out.stderr.contains("its load balancer is released"),
        "{}",
        out.stderr
    );

    // No annotation: no mode shows the client; a warning (with the hint), a failure only
    // under --strict.
    let strict = least(&tb, &["--check", LB_IP, "--lb-timeout", "30s", "--strict"]);
    assert_eq!(verdict(&strict, LB_IP), "FAIL", "{}", strict.stderr);
    assert_eq!(strict.code, 1, "{}", strict.stderr);
    let (status, message) = requirement(&report_of(&strict), LB_IP, "preservation");
    assert_eq!(status, "warn", "{message}");
    assert!(
        message.starts_with(
            "no measured mode shows the client address to the backend (cluster, local)"
        ) && message.contains("--lb-annotation loadbalancer.openstack.org/proxy-protocol=true"),
        "{message}"
    );
    // An annotation the cloud does not know: HAProxy sends no PROXY header, nginx closes
    // the connections; reported (a warning), the testcase being informational.
    let wrong = least(
        &tb,
        &[
            "--check",
            LB_IP,
            "--lb-annotation",
            "example.com/proxy-protocol=v2",
            "--lb-timeout",
            "6s",
        ],
    );
    assert_eq!(verdict(&wrong, LB_IP), "PASS", "{}", wrong.stderr);
    let row = wrong.junit_out(&format!("{LB_IP}/local-annotated"));
    assert!(
        row.contains("closes connections that carry no PROXY header")
            && row.contains("counted as Warn"),
        "{row}"
    );
    assert_eq!(modes(&wrong)["local-annotated"]["reachable"], json!(false));

    // The cloud controller's ipMode: Proxy with the PROXY protocol (no kube-proxy
    // shortcut), VIP otherwise, as cloud-provider-openstack writes it.
    let client = tb.client();
    let modes_written = tb.block_on(async {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        create(&namespaces, json!({"metadata": {"name": "ipmode"}})).await;
        let services: Api<Service> = Api::namespaced(client.clone(), "ipmode");
        let mut written = Vec::new();
        for (name, annotations) in [
            ("plain", json!({})),
            (
                "proxied",
                json!({"loadbalancer.openstack.org/proxy-protocol": "true"}),
            ),
        ] {
            create(
                &services,
                json!({
                    "metadata": {"name": name, "annotations": annotations},
                    "spec": {"type": "LoadBalancer", "selector": {"app": "none"},
                        "ports": [{"port": 80, "targetPort": 8080}]}
                }),
            )
            .await;
            let has_ingress = |s: Option<&Service>| {
                s.and_then(|s| s.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref())
                    .is_some_and(|i| !i.is_empty())
            };
            let svc = tokio::time::timeout(
                Duration::from_secs(30),
                await_condition(services.clone(), name, has_ingress),
            )
            .await
            .expect("an address within 30 s")
            .unwrap()
            .unwrap();
            let ingress = &svc.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0];
            written.push((name, ingress.ip_mode.clone().unwrap_or_default()));
        }
        namespaces
            .delete("ipmode", &DeleteParams::default())
            .await
            .unwrap();
        written
    });
    assert_eq!(
        modes_written,
        vec![
            ("plain", "VIP".to_string()),
            ("proxied", "Proxy".to_string())
        ]
    );
    assert_stopped(tb);
}

#[test]
fn ovn_like_l3_load_balancer_preserves_the_client_with_local() {
    let tb = TestBed::start("lb-l3");
    let out = lb_checks(&tb, "20s");
    assert_eq!(verdict(&out, LB_SERVICE), "PASS", "{}", out.stderr);
    assert_eq!(verdict(&out, LB_IP), "PASS", "{}", out.stderr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    let report = report(&out);
    let (_, assigned) = requirement(&report, LB_SERVICE, "address-assigned");
    assert!(
        assigned.contains("Service echo got the external address 203.0.113."),
        "{assigned}"
    );
    let (_, reachable) = requirement(&report, LB_SERVICE, "reachable");
    assert!(
        reachable.contains("answered HTTP 200 from the machine running the suite")
            && reachable.contains("5 of 5 connections answered"),
        "{reachable}"
    );
    assert_eq!(
        testcase(&report, LB_SERVICE)["facts"]["vantage"],
        json!("the machine running the suite")
    );
    assert_table(
        &modes(&out),
        &[
            // The DNAT keeps the client's address; kube-proxy masquerades it for Cluster.
            ("cluster", WORKER_BRIDGE_IP, "node-snat"),
            ("local", CLIENT_IP, "preserved"),
        ],
    );
    let (status, message) = requirement(&report, LB_IP, "preservation");
    assert_eq!(status, "pass", "{message}");
    assert!(message.contains("with: local"), "{message}");
    // OVN's Octavia provider cannot do PROXY pools: the annotated Services get no address,
    // and the message carries the cloud controller's event.
    for mode in ["cluster-annotated", "local-annotated"] {
        let (status, message) = requirement(&report, LB_IP, mode);
        assert_eq!(status, "fail", "{mode}: {message}");
        assert!(
            message.contains("got no external address within 20s"),
            "{message}"
        );
        assert!(
            message.contains("Warning SyncLoadBalancerFailed: Error syncing load balancer: failed to ensure load balancer")
                && message.contains("OVN provider does not support PROXY protocol"),
            "{message}"
        );
    }
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.starts_with(&format!("WARNING: {LB_IP}/cluster-annotated:"))),
        "{}",
        out.stderr
    );
    health_check_node_port_follows_local_endpoints(&tb);
    assert_stopped(tb);
}

/// kube-proxy's health check node port of an externalTrafficPolicy Local Service answers
/// 200 on the node with a ready endpoint and 503 on the node without, which is what a load
/// balancer's HTTP health monitor reads.
fn health_check_node_port_follows_local_endpoints(tb: &TestBed) {
    let client = tb.client();
    let port = tb.block_on(async {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        create(&namespaces, json!({"metadata": {"name": "hcnp"}})).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "hcnp");
        create(
            &pods,
            json!({
                "metadata": {"name": "echo", "labels": {"app": "echo"}},
                "spec": {"containers": [{"name": "echo",
                    "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                    "args": ["netexec", "--http-port=8080", "--udp-port=-1"]}]}
            }),
        )
        .await;
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(pods.clone(), "echo", conditions::is_pod_running()),
        )
        .await
        .expect("echo runs within 60 s")
        .unwrap();
        let services: Api<Service> = Api::namespaced(client.clone(), "hcnp");
        let svc = create(
            &services,
            json!({
                "metadata": {"name": "local"},
                "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                    "selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]}
            }),
        )
        .await;
        svc.spec
            .unwrap()
            .health_check_node_port
            .expect("a health check node port")
    });
    // kube-proxy serves the port once it has synced the Service, and counts the endpoint
    // once the EndpointSlice names it: wait (at most 30 s) for the expected answer.
    let healthz = |node_ip: &str, expected: &str| -> (String, String) {
        let url = format!("http://{node_ip}:{port}/healthz");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = tb.run_in(
                "world",
                &["curl", "-s", "-m", "2", "-w", "\n%{http_code}", &url],
            );
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
            if code == expected || Instant::now() > deadline {
                return (code.to_string(), body.to_string());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let (code, body) = healthz("172.30.0.11", "200");
    assert_eq!(code, "200", "worker-0 runs the endpoint: {body}");
    assert!(body.contains("\"localEndpoints\": 1"), "{body}");
    let (code, body) = healthz("172.30.0.10", "503");
    assert_eq!(code, "503", "cp-0 has no endpoint: {body}");
    assert!(body.contains("\"localEndpoints\": 0"), "{body}");
    // The namespace controller deletes the Service, the service controller its load balancer.
    let namespaces: Api<Namespace> = Api::all(tb.client());
    tb.block_on(namespaces.delete("hcnp", &DeleteParams::default()))
        .expect("delete namespace hcnp");
}

#[test]
fn client_behind_nat_is_preserved_when_its_address_is_given() {
    assert_row(
        "lb-l3-nat",
        &["--client-ip", CLIENT_IP],
        "local",
        CLIENT_IP,
        "preserved",
    );
}

#[test]
fn dead_load_balancer_fails_reachable_from_outside() {
    let tb = TestBed::start("lb-unreachable");
    let out = lb_checks(&tb, "10s");
    assert_eq!(verdict(&out, LB_SERVICE), "FAIL", "{}", out.stderr);
    let report = report(&out);
    let (status, message) = requirement(&report, LB_SERVICE, "address-assigned");
    assert_eq!(status, "pass", "{message}");
    let (status, message) = requirement(&report, LB_SERVICE, "reachable");
    assert_eq!(status, "fail", "{message}");
    assert!(
        message.contains(" did not answer from the machine running the suite within 10s")
            && message.contains("last error: connect: no answer within 5s")
            && message.contains("--lb-probe-from cluster cannot help"),
        "{message}"
    );
    // Retried with backoff, not once.
    assert!(out.stderr.contains("attempt 2 failed"), "{}", out.stderr);
    // Every mode unreachable is decided (a warning, the testcase being informational), but
    // nothing was measured: which modes preserve the client is undecided, never a pass.
    assert_eq!(verdict(&out, LB_IP), "ABORT", "{}", out.stderr);
    for mode in ["cluster", "local", "cluster-annotated", "local-annotated"] {
        let (status, message) = requirement(&report, LB_IP, mode);
        assert_eq!(status, "fail", "{mode}: {message}");
        assert!(
            message.contains(": no answer from http://203.0.113."),
            "{message}"
        );
        assert!(
            out.warnings()
                .iter()
                .any(|w| w.starts_with(&format!("WARNING: {LB_IP}/{mode}: "))),
            "{}",
            out.stderr
        );
    }
    let (status, message) = requirement(&report, LB_IP, "preservation");
    assert_eq!(status, "abort", "{message}");
    assert!(
        message.contains("nothing was measured: no mode got a source address to classify"),
        "{message}"
    );
    // An echo image that cannot be pulled (the kubelet's ErrImagePull): the environment's
    // problem, ABORT naming the flag; the address itself was assigned.
    let image = "registry.example.invalid/agnhost:0.0";
    let out = least(
        &tb,
        &[
            "--check",
            LB_SERVICE,
            "--agnhost-image",
            image,
            "--pod-start-timeout",
            "5s",
            "--lb-timeout",
            "10s",
        ],
    );
    assert_eq!(verdict(&out, LB_SERVICE), "ABORT", "{}", out.stderr);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let (status, message) = requirement(&report_of(&out), LB_SERVICE, "reachable");
    assert_eq!(status, "abort", "{message}");
    assert!(
        message.contains("the image cannot be pulled, set --agnhost-image to a reachable mirror"),
        "{message}"
    );
    assert_eq!(
        requirement(&report_of(&out), LB_SERVICE, "address-assigned").0,
        "pass"
    );

    // Admission refuses the backends (a real ValidatingAdmissionPolicy of the API server,
    // for the suite's namespaces): the ReplicaSet's FailedCreate says why; ABORT.
    deny_upstream_images(&tb);
    let out = least(&tb, &["--check", LB_SERVICE, "--lb-timeout", "10s"]);
    assert_eq!(verdict(&out, LB_SERVICE), "ABORT", "{}", out.stderr);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let message = out.junit_message(&format!("{LB_SERVICE}/reachable"));
    assert!(
        message.starts_with(
            "the pods of the echo backend (deployment echo) were never created: Error \
             creating: pods \"echo-"
        ) && message.contains(&format!(
            "is forbidden: ValidatingAdmissionPolicy '{DENY_POLICY}' with binding \
             '{DENY_POLICY}' denied request: {DENY_MESSAGE}; admission"
        )) && message.ends_with("; the load balancer cannot be judged"),
        "{message}"
    );
    assert_eq!(
        out.junit_kind(&format!("{LB_SERVICE}/address-assigned")),
        "passed"
    );
    assert_stopped(tb);
}

const DENY_POLICY: &str = "no-upstream-images";
const DENY_MESSAGE: &str = "images from registry.k8s.io are not allowed";

/// A ValidatingAdmissionPolicy (and its binding) that refuses pods with images from
/// registry.k8s.io in the suite's namespaces, as a cluster's image policy would.
fn deny_upstream_images(tb: &TestBed) {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    let client = tb.client();
    tb.block_on(async {
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
        create(
            &policies,
            json!({
                "metadata": {"name": DENY_POLICY},
                "spec": {"failurePolicy": "Fail",
                    "matchConstraints": {"resourceRules": [{"apiGroups": [""],
                        "apiVersions": ["v1"], "operations": ["CREATE"],
                        "resources": ["pods"]}]},
                    "validations": [{
                        "expression": "object.spec.containers.all(c, !c.image.startsWith('registry.k8s.io/'))",
                        "message": DENY_MESSAGE}]}
            }),
        )
        .await;
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
        create(
            &bindings,
            json!({
                "metadata": {"name": DENY_POLICY},
                "spec": {"policyName": DENY_POLICY, "validationActions": ["Deny"],
                    "matchResources": {"namespaceSelector": {"matchLabels":
                        {"app.kubernetes.io/managed-by": "scs-kaas-check"}}}}
            }),
        )
        .await;
    });
    // The API server loads policies asynchronously (about a second): wait until a dry-run
    // pod in a labelled namespace is refused.
    let namespaces: Api<Namespace> = Api::all(tb.client());
    tb.block_on(create(
        &namespaces,
        json!({"metadata": {"name": "vap-probe",
            "labels": {"app.kubernetes.io/managed-by": "scs-kaas-check"}}}),
    ));
    let pods: Api<Pod> = Api::namespaced(tb.client(), "vap-probe");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .expect("pod");
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while tb.block_on(pods.create(&dry_run, &pod)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the policy is not in force after 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    tb.block_on(namespaces.delete("vap-probe", &DeleteParams::default()))
        .expect("delete namespace vap-probe");
}

#[test]
fn cloud_refusing_the_load_balancer_fails_with_its_events() {
    // managed-workers: the cloud controller refuses every load balancer (quota).
    let tb = TestBed::start("managed-workers");
    let out = least(
        &tb,
        &[
            "--check",
            LB_SERVICE,
            "--check",
            LB_IP,
            "--lb-timeout",
            "3s",
        ],
    );
    assert_eq!(verdict(&out, LB_SERVICE), "FAIL", "{}", out.stderr);
    let report = report(&out);
    let (status, message) = requirement(&report, LB_SERVICE, "address-assigned");
    assert_eq!(status, "fail", "{message}");
    assert!(
        message.contains("Service echo (type LoadBalancer) got no external address within 3s")
            && message.contains("Warning SyncLoadBalancerFailed: Error syncing load balancer: failed to ensure load balancer: Quota exceeded for resources: ['loadbalancer']")
            && message.contains("Normal EnsuringLoadBalancer"),
        "{message}"
    );
    assert_eq!(
        out.junit_message(&format!("{LB_SERVICE}/reachable")),
        "not attempted: the Service got no external address"
    );
    assert_eq!(
        out.junit_kind(&format!("{LB_SERVICE}/reachable")),
        "skipped NOT-ATTEMPTED"
    );
    // Each mode refused with a Warning event is decided (a warning); preservation, which
    // needs a measured source, is not: ABORT.
    assert_eq!(verdict(&out, LB_IP), "ABORT", "{}", out.stderr);
    for (mode, policy) in [("cluster", "Cluster"), ("local", "Local")] {
        let summary = out.junit_out(&format!("{LB_IP}/{mode}"));
        assert!(
            summary.starts_with(&format!(
                "WARNING externalTrafficPolicy {policy}: Service {mode} (type LoadBalancer) \
                 got no external address within 3s"
            )) && summary.contains("Quota exceeded for resources"),
            "{summary}"
        );
        assert_eq!(requirement(&report, LB_IP, mode).0, "fail");
    }
    let (status, message) = requirement(&report, LB_IP, "preservation");
    assert_eq!(status, "abort", "{message}");
    assert!(
        message.starts_with(
            "nothing was measured: no mode got a source address to classify (cluster: \
             Service cluster (type LoadBalancer) got no external address within 3s"
        ),
        "{message}"
    );
    assert_stopped(tb);
}

#[test]
fn without_a_cloud_controller_no_address_is_ever_assigned() {
    let tb = TestBed::start("single-node");
    let out = lb_checks(&tb, "5s");
    assert_eq!(verdict(&out, LB_SERVICE), "FAIL", "{}", out.stderr);
    let report = report(&out);
    let (status, message) = requirement(&report, LB_SERVICE, "address-assigned");
    assert_eq!(status, "fail", "{message}");
    assert!(
        message.contains("got no external address within 5s"),
        "{message}"
    );
    let (status, message) = requirement(&report, LB_SERVICE, "reachable");
    assert_eq!(status, "not-attempted", "{message}");
    // No address and no event from any cloud controller: nothing measured, undecided.
    assert_eq!(verdict(&out, LB_IP), "ABORT", "{}", out.stderr);
    for mode in ["cluster", "local", "cluster-annotated", "local-annotated"] {
        let (status, message) = requirement(&report, LB_IP, mode);
        assert_eq!(status, "abort", "{mode}: {message}");
        assert!(
            message.contains("not measured: Service")
                && message.contains("got no external address within 5s"),
            "{message}"
        );
        assert_eq!(row(&modes(&out), mode), ("-".into(), "-".into()));
    }
    let (status, _) = requirement(&report, LB_IP, "preservation");
    assert_eq!(status, "abort");
    assert_stopped(tb);
}

// Issue 21: what the suite once misread on the real packet path.

#[test]
fn kube_proxy_masquerade_behind_a_load_balancer_is_node_snat() {
    let tb = TestBed::start("lb-l3");
    let out = least(&tb, &["--check", LB_IP, "--lb-timeout", "30s"]);
    verdict(&out, LB_IP);
    assert_eq!(
        row(&modes(&out), "cluster"),
        (WORKER_BRIDGE_IP.into(), "node-snat".into())
    );
    let (status, message) = requirement(&report(&out), LB_IP, "cluster");
    assert_eq!(status, "info", "{message}");
    // kube-proxy masquerades out of the interface towards the pod: worker-0's bridge, the
    // gateway of its pod CIDR, not its InternalIP; every sampled connection shows it.
    assert!(
        message.contains(&format!(
            "the backend saw {WORKER_BRIDGE_IP} \u{d7}5 (node-snat): node address of worker-0 \
             (the gateway of its pod CIDR 10.244.1.0/24 {WORKER_BRIDGE_IP}; SNAT by kube-proxy); \
             5 of 5 connections answered"
        )),
        "{message}"
    );
    assert_stopped(tb);
}

#[test]
fn without_a_cloud_controller_the_message_says_no_event_concerns_the_service() {
    let tb = TestBed::start("single-node");
    let out = least(&tb, &["--check", LB_SERVICE, "--lb-timeout", "5s"]);
    let (_, message) = requirement(&report(&out), LB_SERVICE, "address-assigned");
    assert!(
        message.contains("no events about the Service (is a cloud controller"),
        "{message}"
    );
    // The Deployment of the backend is named like the Service and has events of its own
    // (the deployment controller's ScalingReplicaSet): they are not the Service's.
    assert!(!message.contains("ScalingReplicaSet"), "{message}");
}

#[test]
fn client_behind_nat_is_undecided_without_client_ip() {
    let tb = TestBed::start("lb-l3-nat");
    let out = least(&tb, &["--check", LB_IP, "--lb-timeout", "30s"]);
    verdict(&out, LB_IP);
    // The suite's socket has 192.168.77.10; the NAT gateway keeps the source port, the
    // DNAT of the load balancer too: the backend sees our connection's port from
    // 198.51.100.10, which no node and no load balancer has. An SNAT that keeps ports
    // would show the same: without --client-ip that decides nothing.
    assert_eq!(
        row(&modes(&out), "local"),
        (CLIENT_IP.into(), "nat-kept-port".into())
    );
    let (_, message) = requirement(&report(&out), LB_IP, "local");
    assert!(
        message.contains(&format!(
            "the backend saw {CLIENT_IP} \u{d7}5 (nat-kept-port): not this machine's address, \
             but the connection kept its source port"
        )),
        "{message}"
    );
    let (status, message) = requirement(&report(&out), LB_IP, "preservation");
    assert_eq!(status, "abort", "{message}");
    assert!(
        message.starts_with(&format!(
            "not decided: with local the backend saw {CLIENT_IP} \u{d7}5 (nat-kept-port), not \
             this machine's address"
        )) && message.contains("run with --client-ip"),
        "{message}"
    );
    assert_stopped(tb);
}

#[test]
fn dead_load_balancer_is_not_judged_from_inside_the_cluster() {
    let tb = TestBed::start("lb-unreachable");
    let out = least(
        &tb,
        &[
            "--check",
            LB_SERVICE,
            "--lb-timeout",
            "10s",
            "--lb-probe-from",
            "cluster",
        ],
    );
    // kube-proxy would send a pod's packets for this ipMode VIP address straight to the
    // backends (a probe answers although the load balancer drops everything): the vantage
    // point cannot decide, nothing is sent.
    assert_eq!(verdict(&out, LB_SERVICE), "ABORT", "{}", out.stderr);
    let (status, message) = requirement(&report(&out), LB_SERVICE, "reachable");
    assert_eq!(status, "abort", "{message}");
    assert!(
        message.starts_with(
            "not probed from a pod inside the cluster (--lb-probe-from cluster): the address \
             203.0.113."
        ) && message.contains(
            "has ipMode VIP (status.loadBalancer.ingress), so kube-proxy routes traffic from \
             inside the cluster straight to the endpoints and the load balancer is never used"
        ),
        "{message}"
    );
    assert_stopped(tb);
}

#[test]
fn in_cluster_probe_of_a_vip_address_is_not_preservation() {
    let tb = TestBed::start("lb-proxy");
    let out = least(
        &tb,
        &[
            "--check",
            LB_IP,
            "--lb-timeout",
            "30s",
            "--lb-probe-from",
            "cluster",
            "--lb-annotation",
            PROXY_PROTOCOL,
        ],
    );
    verdict(&out, LB_IP);
    let report = report(&out);
    // ipMode VIP: not measured from a pod (kube-proxy's shortcut would show the probe pod's
    // own address as "preserved").
    for mode in ["cluster", "local"] {
        let (status, message) = requirement(&report, LB_IP, mode);
        assert_eq!(status, "abort", "{mode}: {message}");
        assert!(
            message.contains("not measured: not probed from a pod inside the cluster")
                && message.contains("has ipMode VIP"),
            "{message}"
        );
        assert_eq!(row(&modes(&out), mode), ("-".into(), "-".into()));
    }
    // ipMode Proxy (the PROXY protocol): the probe pod's connection goes through HAProxy,
    // which names the pod in the PROXY header.
    for mode in ["cluster-annotated", "local-annotated"] {
        let (status, message) = requirement(&report, LB_IP, mode);
        assert_eq!(status, "info", "{mode}: {message}");
        assert!(
            message.contains(
                "in the PROXY header: client address preserved; 5 of 5 connections answered"
            ),
            "{message}"
        );
        let (seen, class) = row(&modes(&out), mode);
        assert!(seen.starts_with("10.244.1."), "{mode}: {seen}");
        assert_eq!(class, "preserved");
    }
    assert_stopped(tb);
}
