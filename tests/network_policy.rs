//! kaas-networking-check against simulated network plugins that enforce part of
//! NetworkPolicy, or fail in ways a real data plane cannot be made to show on demand (a
//! flapping agent, a sidecar answering dials, a dying server, policies that outlive their
//! deletion, a slow agent with dropped packets, an API server that cannot reach the pods).
//! A plugin that enforces all of it (kube-router) and one that enforces nothing run on the
//! real test bed (`tests/dataplane.rs`). The simulator's plugin evaluates the stored
//! policies itself (see `support/network.rs`); probes reach the client pods' emulated agnhost
//! netexec through the API server's pod proxy.

mod support;

use std::time::Duration;
use support::NETWORK_POLICY_SCENARIOS as POLICY_SCENARIOS;
use support::binary::*;
use support::{ApiGroupSpec, Blocked, ClusterSpec, NetworkProfile, SimCluster};

const NET: &str = "kaas-networking-check";
const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

fn req(id: &str) -> String {
    format!("{NET}/{id}")
}

fn anp_api() -> ApiGroupSpec {
    ApiGroupSpec::new("policy.networking.k8s.io", "v1alpha1")
        .resource("adminnetworkpolicies", "AdminNetworkPolicy", false)
        .resource(
            "baselineadminnetworkpolicies",
            "BaselineAdminNetworkPolicy",
            false,
        )
}

fn sim(network: NetworkProfile, recommendations: bool) -> SimCluster {
    let sim = SimCluster::start(ClusterSpec {
        network,
        extra_api_groups: if recommendations {
            vec![anp_api()]
        } else {
            vec![]
        },
        ..Default::default()
    });
    if recommendations {
        sim.with_store(|s| {
            s.create(
                "ingressclasses",
                serde_json::json!({
                    "metadata": {"name": "nginx", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
                    "spec": {"controller": "k8s.io/ingress-nginx"},
                }),
            )
            .expect("seed ingress class");
        });
    }
    sim
}

/// A run against a simulator with the recommendations in place and this network plugin.
fn run_profile(network: NetworkProfile, policy_timeout: &str) -> (SimCluster, Output) {
    let sim = sim(network, true);
    let out = run(&sim, &["--policy-timeout", policy_timeout]);
    (sim, out)
}

fn run(sim: &SimCluster, extra: &[&str]) -> Output {
    let mut args = vec!["--check", NET];
    args.extend_from_slice(extra);
    let out = run_against(sim, &args);
    out.assert_clean_exit();
    out
}

/// Nothing of the run is left: no labelled namespace, no NetworkPolicy, no pod.
fn assert_cleaned_up(sim: &SimCluster) {
    let managed = suite_objects(sim, "namespaces");
    assert!(managed.is_empty(), "left behind: {managed:?}");
    assert!(sim.objects("networkpolicies").is_empty());
    assert!(
        sim.objects("pods").is_empty(),
        "pods left: {:?}",
        sim.objects("pods")
    );
}

/// `skc-<run id>-netpol-a` as it appears in the check's messages.
fn namespace(out: &Output, suffix: &str) -> String {
    let re = regex::Regex::new(&format!(r"skc-[0-9a-f]{{8}}-{suffix}")).unwrap();
    re.find(&out.junit())
        .unwrap_or_else(|| panic!("no namespace {suffix} in junit:\n{}", out.junit()))
        .as_str()
        .to_string()
}

/// The message line of one cell.
fn cell(
    out: &Output,
    from: (&str, &str),
    to: (&str, u16),
    expected: &str,
    observed: &str,
) -> String {
    format!(
        "{}/{} -> {}/server:{}: expected {expected}, observed {observed}",
        namespace(out, from.0),
        from.1,
        namespace(out, to.0),
        to.1
    )
}

#[test]
fn ingress_only_plugin_fails_the_egress_scenarios() {
    let sim = sim(NetworkProfile::ingress_only(), true);
    let out = run(&sim, &["--policy-timeout", "2s"]);
    assert_eq!(out.verdict(NET).as_deref(), Some("FAIL"), "{}", out.stderr);
    for id in &POLICY_SCENARIOS[..5] {
        assert!(
            out.junit_out(&req(id)).contains("as expected"),
            "{id}: {}",
            out.junit()
        );
    }
    let message = out.junit_message(&req("default-deny-egress"));
    assert!(message.contains("8 of 16 connections differ"), "{message}");
    assert!(
        message.contains(&cell(
            &out,
            ("netpol-a", "client-x"),
            ("netpol-a", 8080),
            "denied",
            "allowed"
        )),
        "{message}"
    );
    for id in ["egress-pod-selector", "egress-ipblock-except"] {
        assert_eq!(
            out.junit_message(&req(id)),
            "not attempted: default-deny-egress already failed",
            "{id}"
        );
    }
    // Recommendations are met here.
    assert!(
        !out.junit_out(&req("admin-network-policy"))
            .contains("WARNING")
    );
    assert!(
        !out.junit_out(&req("default-ingress-class"))
            .contains("WARNING")
    );
    assert_cleaned_up(&sim);
}

#[test]
fn plugin_ignoring_namespace_selectors_fails_those_scenarios() {
    let (sim, out) = run_profile(
        NetworkProfile {
            namespace_selectors: false,
            ..NetworkProfile::enforcing()
        },
        "2s",
    );
    assert_eq!(out.verdict(NET).as_deref(), Some("FAIL"), "{}", out.stderr);
    let message = out.junit_message(&req("ingress-namespace-selector"));
    assert!(message.contains("4 of 16 connections differ"), "{message}");
    assert!(
        message.contains(&cell(
            &out,
            ("netpol-a", "client-x"),
            ("netpol-a", 8080),
            "denied",
            "allowed"
        )),
        "{message}"
    );
    for id in ["default-deny-ingress", "ingress-pod-selector"] {
        assert!(out.junit_out(&req(id)).contains("as expected"), "{id}");
    }
    for id in &POLICY_SCENARIOS[3..] {
        assert_eq!(
            out.junit_message(&req(id)),
            "not attempted: ingress-namespace-selector already failed",
            "{id}"
        );
    }
    assert_cleaned_up(&sim);
}

fn cilium_like() -> SimCluster {
    sim(
        NetworkProfile {
            ipblock_except: false,
            ..NetworkProfile::enforcing()
        },
        true,
    )
}

#[test]
fn ipblock_limitation_scs_accepts_is_reported_as_accepted() {
    // Cilium does not apply ipBlock to pod addresses; SCS's ok-to-fail list accepts the
    // upstream case that tests it, and the probe matrix honours the same decision.
    let sim = cilium_like();
    let out = run(&sim, &["--policy-timeout", "2s"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(NET).as_deref(), Some("PASS"), "{}", out.stderr);
    let name = req("egress-ipblock-except");
    let (status, message) = out.report_requirement(&name);
    assert_eq!(status, "accepted");
    assert!(
        message.starts_with(
            "accepted by the ok-to-fail list (Cilium does not apply ipBlock CIDRs to pod \
             addresses (cilium/cilium#9209); upstream e2e case \"should enforce except clause \
             while egress access to server in CIDR block\"): egress of the clients of \
             namespace A to an ipBlock holding both server IPs, except server B's: 4 of 16 \
             connections differ"
        ),
        "{message}"
    );
    assert!(
        message.contains(&cell(
            &out,
            ("netpol-a", "client-x"),
            ("netpol-b", 8080),
            "denied",
            "allowed"
        )),
        "{message}"
    );
    // Visible in JUnit and on stderr too.
    assert!(
        out.junit_out(&name)
            .starts_with("ACCEPTED accepted by the ok-to-fail list"),
        "{}",
        out.junit_out(&name)
    );
    assert!(
        out.stderr.contains(
            "[kaas-networking-check] egress-ipblock-except: failed, accepted by the ok-to-fail \
             list (Cilium does not apply ipBlock CIDRs"
        ),
        "{}",
        out.stderr
    );
    for id in &POLICY_SCENARIOS[..7] {
        assert!(out.junit_out(&req(id)).contains("as expected"), "{id}");
    }
    assert_cleaned_up(&sim);
}

#[test]
fn ipblock_failure_without_the_ok_to_fail_entry_fails() {
    let sim = cilium_like();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("ok-to-fail.yaml");
    std::fs::write(
        &list,
        "- regex: 'Feature:SCTPConnectivity'\n  reason: SCTP is optional\n",
    )
    .unwrap();
    let out = run(
        &sim,
        &[
            "--policy-timeout",
            "2s",
            "--ok-to-fail",
            list.to_str().unwrap(),
        ],
    );
    assert_eq!(out.verdict(NET).as_deref(), Some("FAIL"), "{}", out.stderr);
    let message = out.junit_message(&req("egress-ipblock-except"));
    assert!(
        message.starts_with("egress of the clients of namespace A"),
        "{message}"
    );
    assert!(message.contains("4 of 16 connections differ"), "{message}");
    assert_cleaned_up(&sim);
}

#[test]
fn slow_plugin_is_waited_for_by_probing() {
    // Policies take 1.2 s to be programmed and blocked packets are dropped (the client times
    // out): a single measurement right after creating the policies would be wrong.
    let (sim, out) = run_profile(
        NetworkProfile {
            programming_delay: Duration::from_millis(1200),
            blocked: Blocked::Drop(Duration::from_millis(300)),
            ..NetworkProfile::enforcing()
        },
        "30s",
    );
    assert_eq!(out.verdict(NET).as_deref(), Some("PASS"), "{}", out.stderr);
    let report = out.report();
    // Every policy scenario needed more than one probe round.
    let rounds = regex::Regex::new(r"probe_rounds: (\d+)").unwrap();
    let counts: Vec<u32> = rounds
        .captures_iter(&report)
        .map(|c| c[1].parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 9, "{report}");
    assert!(counts[1..].iter().all(|n| *n > 1), "{counts:?}\n{report}");
    assert_cleaned_up(&sim);
}

#[test]
fn isolated_pods_abort_at_the_baseline() {
    let (sim, out) = run_profile(
        NetworkProfile {
            pods_isolated: true,
            ..NetworkProfile::enforcing()
        },
        "2s",
    );
    assert_eq!(out.verdict(NET).as_deref(), Some("ABORT"), "{}", out.stderr);
    let message = out.junit_message(&req("baseline"));
    assert!(message.contains("the probe setup is broken"), "{message}");
    assert!(
        message.contains(&cell(
            &out,
            ("netpol-a", "client-x"),
            ("netpol-a", 8080),
            "allowed",
            "denied"
        )),
        "{message}"
    );
    for id in POLICY_SCENARIOS {
        assert!(
            out.junit_message(&req(id))
                .contains("not measured: the baseline probe failed")
        );
    }
    assert_cleaned_up(&sim);
}

#[test]
fn unpullable_agnhost_image_aborts_and_cleans_up() {
    let sim = SimCluster::start(ClusterSpec {
        unpullable_images: vec![AGNHOST.into()],
        ..Default::default()
    });
    let out = run(&sim, &["--pod-start-timeout", "2s"]);
    assert_eq!(out.verdict(NET).as_deref(), Some("ABORT"), "{}", out.stderr);
    let message = out.junit_message(NET);
    assert!(
        message.contains(&format!("image {AGNHOST} cannot be pulled"))
            && message.contains("--agnhost-image"),
        "{message}"
    );
    assert_cleaned_up(&sim);
}

#[test]
fn policies_that_stay_in_force_after_deletion_abort_the_rest() {
    let (sim, out) = run_profile(
        NetworkProfile {
            keeps_deleted_policies: true,
            ..NetworkProfile::enforcing()
        },
        "2s",
    );
    assert_eq!(out.verdict(NET).as_deref(), Some("ABORT"), "{}", out.stderr);
    // The first scenario showed the expected denials, but they outlived their policy: not
    // the policy's doing, so not a pass ...
    let message = out.junit_message(&req("default-deny-ingress"));
    assert!(
        message.starts_with(
            "not judged: the policies of default-deny-ingress were deleted but connections \
             were still not restored after 2.0s"
        ) && message.contains(
            "denials that outlive their policies are not the policies' doing (the matrix \
             showed: ingress to the servers of namespace A denied: 8 of 16 connections \
             allowed, as expected"
        ),
        "{message}"
    );
    // ... and nothing after it can be judged.
    for id in &POLICY_SCENARIOS[1..] {
        let message = out.junit_message(&req(id));
        assert!(
            message.contains(
                "not measured: the policies of default-deny-ingress were deleted but connections were still not restored"
            ),
            "{id}: {message}"
        );
    }
    assert_cleaned_up(&sim);
}

#[test]
fn denied_pod_proxy_makes_cells_unknown_and_aborts() {
    let sim = SimCluster::start(ClusterSpec {
        deny: vec![("get".into(), "pods/proxy".into())],
        ..Default::default()
    });
    let out = run(&sim, &["--policy-timeout", "2s"]);
    assert_eq!(out.verdict(NET).as_deref(), Some("ABORT"), "{}", out.stderr);
    let message = out.junit_message(&req("baseline"));
    assert!(
        message.contains("could not measure")
            && message
                .contains("expected allowed, observed unknown (API server proxy answered 403")
            && message.contains("pods/proxy"),
        "{message}"
    );
    assert_cleaned_up(&sim);
}

#[test]
fn a_proxy_error_keeps_its_message() {
    // The API server cannot reach the pods: after its 30 s dial timeout it answers 503. The
    // probe waits longer than that, so the cell says why instead of "no answer".
    let (sim, out) = run_profile(
        NetworkProfile {
            apiserver_cannot_reach_pods: Some(Duration::from_secs(30)),
            ..NetworkProfile::enforcing()
        },
        "2s",
    );
    assert_eq!(out.verdict(NET).as_deref(), Some("ABORT"), "{}", out.stderr);
    let message = out.junit_message(&req("baseline"));
    assert!(
        message.contains(
            "expected allowed, observed unknown (API server proxy answered 503 \
             ServiceUnavailable: error trying to reach service: dial tcp 10.244."
        ) && message.contains(":8080: i/o timeout)"),
        "{message}"
    );
    assert!(!message.contains("no answer"), "{message}");
    assert_cleaned_up(&sim);
}

#[test]
fn probe_pods_refused_by_admission_abort_with_the_refusal() {
    let webhook = "admission webhook \"deny.example.com\" denied the request: no agnhost here";
    let sim = SimCluster::start(ClusterSpec {
        pod_admission: Some(webhook.into()),
        ..Default::default()
    });
    let out = run(&sim, &[]);
    assert_eq!(out.verdict(NET).as_deref(), Some("ABORT"), "{}", out.stderr);
    let message = out.junit_message(NET);
    assert!(
        message.contains(&format!("pods \"server\" is forbidden: {webhook}")),
        "{message}"
    );
    assert_cleaned_up(&sim);
}

/// Run inside the cluster with the ClusterRole `gen` prints (the simulator enforces RBAC
/// for service accounts): the same verdict, and no call of the check is refused.
#[test]
fn in_cluster_the_rbac_table_grants_every_call() {
    let sim = sim(NetworkProfile::default(), true);
    support::incluster::register_suite_image(&sim, "ghcr.io/sovereigncloudstack/scs-kaas-check");
    let out = run(&sim, &["--in-cluster"]);
    assert_eq!(out.verdict(NET).as_deref(), Some("PASS"), "{}", out.stderr);
    assert!(support::incluster::assert_runner_granted(&sim) > 10);
    assert_cleaned_up(&sim);
}

#[test]
fn a_flapping_plugin_never_passes_a_scenario() {
    // The agent enforces for one probe round (16 connections), then not for the next: the
    // expected matrix shows up every other round but never twice in a row.
    let (sim, out) = run_profile(
        NetworkProfile {
            flaps_every: Some(16),
            ..NetworkProfile::enforcing()
        },
        "4s",
    );
    assert_eq!(out.verdict(NET).as_deref(), Some("FAIL"), "{}", out.stderr);
    let message = out.junit_message(&req("default-deny-ingress"));
    assert!(
        message.contains("never in 2 consecutive ones: the enforcement flaps)")
            && message.contains("expected denied, observed allowed"),
        "{message}"
    );
    assert_cleaned_up(&sim);
}

#[test]
fn dials_answered_by_a_sidecar_are_not_connections() {
    let (sim, out) = run_profile(
        NetworkProfile {
            dials_answered_by: Some("envoy-7f9c".into()),
            ..NetworkProfile::enforcing()
        },
        "2s",
    );
    assert_eq!(out.verdict(NET).as_deref(), Some("ABORT"), "{}", out.stderr);
    let message = out.junit_message(&req("baseline"));
    assert!(
        message.contains(
            "expected allowed, observed unknown (the dial was answered by \"envoy-7f9c\", not \
             by the server pod (hostname \"server\")"
        ) && message.contains("the probe setup is broken, no scenario can be judged"),
        "{message}"
    );
    assert_cleaned_up(&sim);
}

#[test]
fn a_dead_server_is_not_a_denial() {
    // The server of namespace A dies as the first policy comes into force: every dial to
    // it is refused, which is exactly what default-deny-ingress expects.
    let (sim, out) = run_profile(
        NetworkProfile {
            server_dies: true,
            ..NetworkProfile::enforcing()
        },
        "2s",
    );
    assert_eq!(out.verdict(NET).as_deref(), Some("ABORT"), "{}", out.stderr);
    let message = out.junit_message(&req("default-deny-ingress"));
    let a = namespace(&out, "netpol-a");
    assert!(
        message.starts_with(&format!(
            "not judged: server pod {a}/server restarted during the scenario (restartCount 0 -> \
             2, summed over its containers); server pod {a}/server was not ready after the scenario; a dead server refuses \
             every connection, which looks like a policy's denial"
        )),
        "{message}"
    );
    for id in &POLICY_SCENARIOS[1..] {
        let message = out.junit_message(&req(id));
        assert!(
            message.contains("not measured: the policies of default-deny-ingress were deleted but connections were still not restored"),
            "{id}: {message}"
        );
    }
    assert_cleaned_up(&sim);
}
