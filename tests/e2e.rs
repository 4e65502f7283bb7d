//! The upstream conformance image in the cluster with the `e2e-collect` sidecar: the `e2e`
//! command, testcase `cncf-k8s-conformance` and `kaas-networking-check --networking
//! e2e|both` through `run`.
//!
//! On the real control plane (`testbed/`, scenario `three-zones-e2e`, one test bed shared
//! by this binary; each test works in a run of its own and asserts on that run): the test
//! bed's kubelet runs an emulation of the conformance image's go-runner (testbed
//! `gorunner/`) that plays the fixtures of tests/fixtures/e2e/ chosen by the image's tag
//! (`--conformance-image registry.k8s.io/conformance:<fixture>`) or by E2E_FOCUS, and the
//! REAL binary as the sidecar. The suite authenticates as a ServiceAccount bound to exactly
//! the ClusterRole `gen` prints for the selection (`escalate`/`bind` included: the e2e pod
//! gets every right), under real RBAC and Pod Security admission; every test ends with
//! `TestBed::assert_run_left_nothing` (an admin listing of every labelled object, cluster-scoped
//! ones included).
//!
//! `--networking both` runs on test beds of their own with a data plane: kube-router
//! enforcing NetworkPolicy while the conformance image fails the NetworkPolicy focus
//! (`netpol-kube-router-e2e`), and no NetworkPolicy implementation while that focus never
//! finishes (`netpol-none-e2e`). No scenario of this file uses the simulator.

mod support;

use std::time::{Duration, Instant};
use support::binary::{Output, assert_valid_junit, interrupted_at_lines, scs};
use support::testbed::{Probe, TestBed, new_run_id, refusing_policy};

const IMAGE: &str = "ghcr.io/sovereigncloudstack/scs-kaas-check";
const TC: &str = "cncf-k8s-conformance";

fn bed() -> &'static TestBed {
    TestBed::shared_with_fixtures("three-zones-e2e", &support::conformance::testbed_fixtures)
}

/// A run of the test bed: its id and the kubeconfig of a ServiceAccount bound to exactly
/// the ClusterRole `gen` prints for `selection` (`--check ...`) in that run.
struct Run {
    id: String,
    kubeconfig: std::path::PathBuf,
}

impl Run {
    fn new(selection: &[&str]) -> Run {
        let id = new_run_id();
        let mut args = selection.to_vec();
        args.extend(["--run-id", &id]);
        let kubeconfig = bed().gen_kubeconfig(&args);
        Run { id, kubeconfig }
    }

    fn kubeconfig(&self) -> &str {
        self.kubeconfig.to_str().expect("utf-8 path")
    }

    /// `e2e` in this run, the conformance image playing fixture `fixture` (a tag of
    /// `three-zones-e2e`; `pass` is the image of the server's version).
    fn e2e(&self, fixture: &str, extra: &[&str]) -> Output {
        let tag = if fixture == "pass" {
            "v1.37.2"
        } else {
            fixture
        };
        let image = format!("registry.k8s.io/conformance:{tag}");
        let mut args = vec![
            "e2e",
            "-k",
            self.kubeconfig(),
            "--run-id",
            &self.id,
            "--conformance-image",
            &image,
        ];
        args.extend_from_slice(extra);
        let out = scs(&args);
        out.assert_clean_exit();
        out
    }

    /// The arguments of `run` in this run, offline.
    fn run_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "run",
            "-k",
            self.kubeconfig(),
            "--offline",
            "--run-id",
            &self.id,
        ];
        args.extend_from_slice(extra);
        args
    }

    fn assert_run_left_nothing(&self) {
        bed().assert_run_left_nothing(&self.id);
    }
}

/// `e2e` in a run of its own (see [`Run::e2e`]).
fn e2e(fixture: &str, extra: &[&str]) -> Output {
    let run = Run::new(&["--check", TC]);
    let out = run.e2e(fixture, extra);
    run.assert_run_left_nothing();
    out
}

/// The upstream testsuite of `testcase` in junit.xml (its text from `<testsuite` to its end).
fn upstream_suite(out: &Output, testcase: &str) -> String {
    let junit = out.junit();
    let name = format!(r#"name="{testcase}: upstream e2e (junit_01.xml)""#);
    let at = junit
        .find(&name)
        .unwrap_or_else(|| panic!("no upstream testsuite of {testcase} in junit.xml:\n{junit}"));
    let start = junit[..at].rfind("<testsuite ").expect("testsuite element");
    let end = start + junit[start..].find("</testsuite>").expect("suite end");
    junit[start..end].to_string()
}

#[test]
fn all_specs_pass() {
    let out = e2e("pass", &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("PASS"), "{}", out.stderr);
    assert!(
        out.junit_out(&format!("{TC}/e2e"))
            .contains("4 specs: 3 passed, 0 failed, 0 accepted failures (ok-to-fail), 1 skipped"),
        "{}",
        out.junit()
    );
    // Progress came from the conformance container's log.
    assert!(
        out.stderr.contains("[e2e] 3/3 specs done, 0 failed so far"),
        "{}",
        out.stderr
    );
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    let suite = upstream_suite(&out, TC);
    // Its own suite, numbered after ours.
    assert!(suite.contains(r#"id="1""#), "{suite}");
    assert!(suite.contains("Services should serve a basic endpoint from pods"));
    assert!(suite.contains(r#"name="[It] [sig-node] Pods should be submitted and removed"#));
    // Our own testcase stays in our testsuite, before the upstream one.
    let junit = out.junit();
    assert!(
        junit.find(&format!("{TC}/e2e")).unwrap()
            < junit.find(": upstream e2e (junit_01.xml)").unwrap()
    );
    // e2e.log (ginkgo's output, as the image tees it) and junit_01.xml are kept: what a
    // CNCF conformance submission needs.
    let log = out.file(&format!("{TC}/e2e.log"));
    assert!(log.contains("SUCCESS! -- 3 Passed"), "{log}");
    assert!(
        out.file(&format!("{TC}/junit_01.xml"))
            .contains("<testsuites")
    );
}

#[test]
fn a_failed_spec_fails_naming_it() {
    let out = e2e("fail", &["--parallel", "2", "--skip", "Disruptive"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("FAIL"), "{}", out.stderr);
    let msg = out.junit_message(&format!("{TC}/e2e"));
    assert!(msg.contains("1 failed, 1 accepted failures"), "{msg}");
    assert!(
        msg.contains(
            "first failure: [It] [sig-network] Services should be able to change the type from ExternalName to ClusterIP [Conformance]: failed to connect to service"
        ),
        "{msg}"
    );
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    let suite = upstream_suite(&out, TC);
    assert!(suite.contains(r#"type="FAIL""#), "{suite}");
    assert!(suite.contains(r#"type="ACCEPTED""#), "{suite}");
    let log = out.file(&format!("{TC}/e2e.log"));
    assert!(log.contains("FAIL! -- 3 Passed | 2 Failed"), "{log}");
}

#[test]
fn failures_on_the_ok_to_fail_list_are_accepted_with_their_reason() {
    let out = e2e("accepted", &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("PASS"), "{}", out.stderr);
    assert!(
        out.junit_out(&format!("{TC}/e2e"))
            .contains("3 passed, 0 failed, 1 accepted failures"),
        "{}",
        out.junit()
    );
    let report = out.report();
    assert!(
        report.contains("should support a 'default-deny-ingress' policy [Feature:NetworkPolicy] (accepted: SCTP connectivity is optional (Cilium does not enable it by default))"),
        "{report}"
    );
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    let suite = upstream_suite(&out, TC);
    assert!(
        suite.contains("accepted by the ok-to-fail list (SCTP connectivity is optional"),
        "{suite}"
    );
    // Without the entry the same run fails.
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("ok.yaml");
    std::fs::write(&list, "- regex: 'CIDR block'\n  reason: not this one\n").expect("list");
    let out = e2e("accepted", &["--ok-to-fail", list.to_str().expect("utf-8")]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.junit_message(&format!("{TC}/e2e")).contains(
        "'default-deny-ingress' policy [Feature:NetworkPolicy]: SCTP connection refused"
    ));
}

#[test]
fn a_run_that_never_finishes_aborts_with_its_last_progress_and_cleans_up() {
    let started = Instant::now();
    let out = e2e("hang", &["--timeout", "8s"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("ABORT"), "{}", out.stderr);
    let msg = out.junit_message(&format!("{TC}/e2e"));
    assert!(
        msg.contains(
            "did not finish within 8s (e2e timeout); last progress: 3/5 specs done, 1 failed so far"
        ),
        "{msg}"
    );
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_dry_run_lists_the_specs_and_decides_nothing() {
    let out = e2e("fail", &["--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Nothing was decided: no verdict line, the testcase is skipped.
    assert_eq!(out.verdict(TC), None, "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "[{TC}] not applicable: dry run: 5 specs match the focus and skip (listed in junit.xml); none was executed"
        )),
        "{}",
        out.stderr
    );
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    let suite = upstream_suite(&out, TC);
    assert!(!suite.contains("<failure"), "{suite}");
    assert_eq!(suite.matches("dry run: not executed").count(), 5, "{suite}");
}

#[test]
fn run_selects_cncf_conformance_and_the_networking_e2e_focus_like_any_testcase() {
    // The server's conformance image plays `pass`, and `netpol-accepted` for the focus
    // NetworkPolicy (scenario three-zones-e2e).
    let selection = [
        "--check",
        TC,
        "--check",
        "kaas-networking-check",
        "--check",
        "node-distribution-check",
        "--networking",
        "e2e",
    ];
    let run = Run::new(&selection);
    let out = scs(&run.run_args(&selection));
    out.assert_clean_exit();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("PASS"), "{}", out.stderr);
    assert_eq!(
        out.verdict("kaas-networking-check").as_deref(),
        Some("PASS"),
        "{}",
        out.stderr
    );
    // The default image follows the server version.
    assert!(
        out.stderr
            .contains("conformance image registry.k8s.io/conformance:v1."),
        "{}",
        out.stderr
    );
    // Conformance runs alone: one of the two e2e runs waited for the other.
    assert!(
        out.stderr.contains("(this check runs alone)")
            || out
                .stderr
                .contains("waiting for a check that runs alone to finish"),
        "{}",
        out.stderr
    );
    // The networking testcase ran the upstream NetworkPolicy focus, not the probe matrix.
    let msg = out.junit_out("kaas-networking-check/e2e");
    assert!(msg.contains("0 failed, 5 accepted failures"), "{msg}");
    assert!(!out.junit().contains("kaas-networking-check/baseline"));
    let accepted = out.junit_out("kaas-networking-check/ok-to-fail");
    for reason in [
        "should allow egress access to server in CIDR block [Feature:NetworkPolicy] (accepted: Cilium does not apply ipBlock CIDRs",
        "should allow ingress access from updated namespace [Feature:NetworkPolicy] (accepted: flaky upstream case",
        "(accepted: SCTP connectivity is optional",
    ] {
        assert!(accepted.contains(reason), "{reason}: {accepted}");
    }
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    assert!(upstream_suite(&out, TC).contains("[Conformance]"));
    let netpol = upstream_suite(&out, "kaas-networking-check");
    assert!(netpol.contains(r#"type="ACCEPTED""#), "{netpol}");
    assert!(!netpol.contains("[Conformance]"), "{netpol}");
    for tc in [TC, "kaas-networking-check"] {
        assert!(out.file(&format!("{tc}/e2e.log")).contains("Ran "));
    }
    run.assert_run_left_nothing();
}

/// The arguments of `run --check kaas-networking-check --networking both` (offline) in a
/// run of its own on `tb`, as a ServiceAccount bound to exactly the ClusterRole `gen`
/// prints for it; and the run id.
fn networking_both(tb: &TestBed) -> (String, Vec<String>) {
    let run_id = new_run_id();
    let selection = [
        "--check",
        "kaas-networking-check",
        "--networking",
        "both",
        "--run-id",
        &run_id,
    ];
    let kubeconfig = tb.gen_kubeconfig(&selection);
    let args = [
        "run",
        "-k",
        kubeconfig.to_str().expect("utf-8"),
        "--offline",
    ]
    .into_iter()
    .chain(selection)
    .map(String::from)
    .collect();
    (run_id, args)
}

#[test]
fn networking_both_fails_on_an_upstream_failure_even_when_the_probe_matrix_passes() {
    // kube-router enforces NetworkPolicy; the conformance image fails the NetworkPolicy
    // focus. A test bed of its own: the nodes and the data plane differ.
    let tb = TestBed::start("netpol-kube-router-e2e");
    let (run_id, args) = networking_both(&tb);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = scs(&args);
    out.assert_clean_exit();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.verdict("kaas-networking-check").as_deref(),
        Some("FAIL"),
        "{}",
        out.stderr
    );
    // The native matrix ran and passed, under the same testcase.
    assert!(
        out.junit_out("kaas-networking-check/baseline")
            .contains("16 of 16"),
        "{}",
        out.junit()
    );
    let msg = out.junit_message("kaas-networking-check/e2e");
    assert!(
        msg.contains("1 failed, 1 accepted failures")
            && msg.contains("should deny ingress access to updated pod"),
        "{msg}"
    );
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    tb.assert_run_left_nothing(&run_id);
    let leftovers = tb.stop();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn sigint_during_an_upstream_run_deletes_its_pod_namespace_and_rbac() {
    let run = Run::new(&["--check", TC]);
    let args = run.run_args(&[
        "--check",
        TC,
        "--conformance-image",
        "registry.k8s.io/conformance:hang",
    ]);
    // Interrupt once the e2e pod runs (its progress arrives) and its RBAC exists.
    let out = interrupted_at_lines(&args, &["[e2e] 1/5 specs done"], Duration::from_secs(90));
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert_eq!(out.code, 3, "{stdout}\n{stderr}");
    assert_eq!(*stdout, format!("{TC}: ABORT\n"));
    let junit = out.junit();
    assert!(junit.contains("the run was interrupted"), "{junit}");
    run.assert_run_left_nothing();
}

#[test]
fn sigint_after_a_native_failure_keeps_it_while_the_upstream_run_is_undecided() {
    // A data plane that enforces nothing (test bed `netpol-none-e2e`: kube-proxy, no
    // NetworkPolicy implementation) fails the first native scenario within seconds; the
    // upstream NetworkPolicy run (its image plays `hang`: never finishing) is still going
    // when the run is interrupted. A test bed of its own: the nodes and data plane differ.
    let tb = TestBed::start("netpol-none-e2e");
    let (run_id, args) = networking_both(&tb);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--policy-timeout", "2s"]);
    let out = interrupted_at_lines(
        &args,
        &[
            "[kaas-networking-check] default-deny-ingress: failed; the remaining scenarios \
             are not attempted",
            "[e2e] 3/5 specs done",
        ],
        Duration::from_secs(120),
    );
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert_eq!(out.code, 1, "{stdout}\n{stderr}");
    assert_eq!(*stdout, "kaas-networking-check: FAIL\n");
    let net = |id: &str| format!("kaas-networking-check/{id}");
    assert_eq!(out.junit_kind(&net("default-deny-ingress")), "failure FAIL");
    assert!(
        out.junit_message(&net("default-deny-ingress"))
            .contains("8 of 16 connections differ"),
        "{}",
        out.junit()
    );
    assert_eq!(
        out.report_requirement(&net("ingress-port")),
        (
            "not-attempted".to_string(),
            "not attempted: default-deny-ingress already failed".to_string()
        )
    );
    let (status, message) = out.report_requirement(&net("e2e"));
    assert_eq!(status, "abort");
    assert!(
        message.starts_with("not decided: the run was interrupted; last step: "),
        "{message}"
    );
    assert_eq!(out.junit_kind(&net("e2e")), "error ABORT");
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    tb.assert_run_left_nothing(&run_id);
    let leftovers = tb.stop();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A conformance `junit_01.xml` of real size (6600 testcases, over 2 MB: more than a
/// ConfigMap holds; the real API server answers 422 above 1 MiB) comes back whole, and the
/// verdict is taken from all of its testcases.
#[test]
fn a_junit_of_realistic_size_is_handed_back_whole() {
    let fixture = tempfile::tempdir().expect("temp dir");
    let size = support::conformance::realistic_fixture(fixture.path(), 400, 6600);
    assert!(size > 2_000_000, "{size}");
    // The same fixture as the test bed's `realistic` (support::conformance::testbed_fixtures).
    let out = e2e("realistic", &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("PASS"), "{}", out.stderr);
    assert!(
        out.junit_out(&format!("{TC}/e2e")).contains(
            "6600 specs: 400 passed, 0 failed, 0 accepted failures (ok-to-fail), 6200 skipped"
        ),
        "{}",
        out.junit_out(&format!("{TC}/e2e"))
    );
    let original = std::fs::read_to_string(fixture.path().join("junit_01.xml")).unwrap();
    assert!(
        out.file(&format!("{TC}/junit_01.xml")) == original,
        "junit_01.xml did not come back byte for byte"
    );
    assert_eq!(upstream_suite(&out, TC).matches("<testcase ").count(), 6600);
}

/// A load balancer in front of the API server closes connections idle for a while (here
/// 1 s; Octavia's default is 50 s) while a long spec runs silently (3 s): following the e2e
/// container's log resumes, every progress line is seen once, and the run ends by the
/// pod's status. On the real control plane (test bed scenario `three-zones-e2e`, whose
/// conformance image plays the fixture `slow` for the tag `slow`) behind the proxy, the
/// suite authenticating with exactly the ClusterRole `gen` prints for this testcase
/// (`escalate`/`bind` included: it grants the e2e pod every right).
#[test]
fn a_log_stream_cut_by_an_idle_timeout_is_resumed() {
    let run = Run::new(&["--check", TC]);
    let (proxy, via_proxy) = bed().behind_idle_proxy(&run.kubeconfig, Duration::from_secs(1));
    let out = scs(&[
        "e2e",
        "-k",
        via_proxy.to_str().expect("utf-8 path"),
        "--image",
        IMAGE,
        "--conformance-image",
        "registry.k8s.io/conformance:slow",
        "--run-id",
        &run.id,
    ]);
    out.assert_clean_exit();
    assert!(proxy.cuts() >= 1, "the proxy cut nothing:\n{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("PASS"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("following resumes from the last line seen"),
        "{}",
        out.stderr
    );
    for progress in [
        "1/3 specs done",
        "2/3 specs done",
        "3/3 specs done, 0 failed so far",
    ] {
        assert_eq!(
            out.stderr.matches(&format!("[e2e] {progress}")).count(),
            1,
            "{progress}:\n{}",
            out.stderr
        );
    }
    run.assert_run_left_nothing();
}

/// The sidecar cannot store the results (a site's ValidatingAdmissionPolicy refuses its
/// ConfigMaps): it says why in a `CRITICAL:` line and exits 3, and the testcase ABORTs
/// quoting that line, never passes.
#[test]
fn results_the_sidecar_cannot_store_abort_with_its_reason() {
    let run = Run::new(&["--check", TC]);
    let policy = format!("deny-e2e-results-{}", run.id);
    let _policy = bed().apply_policy(
        &refusing_policy(
            &policy,
            &run.id,
            "CREATE",
            "configmaps",
            "object.metadata.name.startsWith('scs-kaas-check-e2e-results')",
            "no result ConfigMaps here (site policy)",
        ),
        &run.id,
        Probe::Refuses("configmaps", "scs-kaas-check-e2e-results-part-1"),
    );
    let out = run.e2e("pass", &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("ABORT"), "{}", out.stderr);
    let msg = out.junit_message(&format!("{TC}/e2e"));
    assert!(
        msg.contains("the e2e run ended, but it handed back no results"),
        "{msg}"
    );
    assert!(
        msg.contains(
            "the results sidecar said: CRITICAL: cannot store the e2e results: store configmap \
             scs-kaas-check-e2e-results-part-1: 403 Forbidden"
        ),
        "{msg}"
    );
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    run.assert_run_left_nothing();
}

/// The results sidecar finds the results ready while the API server cannot be reached (a
/// restart, a network blip; here: nothing listens at its address yet). It keeps trying,
/// naming the failure, and stores the results whole once the server answers again, instead
/// of throwing away a run of hours.
#[test]
fn the_sidecar_stores_results_once_the_api_server_is_back() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::Api;
    use std::io::Read;
    let tb = bed();
    let id = new_run_id();
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("address");
    drop(free);
    let kubeconfig = tb.kubeconfig_for(tb.kubeconfig_path(), &format!("https://{addr}"));
    let results = tempfile::tempdir().expect("tempdir");
    std::fs::write(results.path().join("junit_01.xml"), "<testsuites/>").expect("junit");
    std::fs::write(results.path().join("e2e.log"), "Ran 1 of 1 Specs\n").expect("log");
    std::fs::write(results.path().join("done"), "/tmp/results/junit_01.xml").expect("done");
    let home = tempfile::tempdir().expect("home");
    let configmap = format!("results-{id}");
    let mut child = support::binary::command(home.path())
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "e2e-collect",
            "--configmap",
            &configmap,
            "--request-timeout",
            "2s",
        ])
        .arg("--results-dir")
        .arg(results.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn e2e-collect");
    // The outage: a few refused attempts, then the server is reachable at that address.
    std::thread::sleep(Duration::from_secs(4));
    let _back =
        support::idle_proxy::IdleProxy::start_at(addr, tb.server_addr(), Duration::from_secs(60));
    let mut ended = None;
    support::binary::eventually(
        "e2e-collect to end after the API server came back",
        Duration::from_secs(90),
        || {
            ended = child.try_wait().expect("wait");
            ended.is_some()
        },
    );
    let status = ended.expect("ended");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "CAUTION: read the server version from 127.0.0.1:{}",
            addr.port()
        )) && stderr.contains("; trying again in"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "results stored in configmaps default/{configmap} and 1 part(s)"
        )),
        "{stderr}"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(tb.client(), "default");
    for name in [configmap.clone(), format!("{configmap}-part-1")] {
        tb.block_on(configmaps.get(&name))
            .unwrap_or_else(|e| panic!("configmap {name}: {e}"));
        tb.block_on(configmaps.delete(&name, &Default::default()))
            .unwrap_or_else(|e| panic!("delete configmap {name}: {e}"));
    }
}
