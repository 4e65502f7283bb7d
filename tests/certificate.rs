//! `run` as SCS's compliance runner uses it: a default run decides the certificate (target
//! main of the built-in v1) and nothing else; testcases beside it (targets preview and
//! extension) run when asked for, are marked in every output and count for the exit code
//! only when named or with `--count-all-targets`; the script entry
//! `run -k {kubeconfig} --execution-mode {execution_mode} {testcases}`; and the reasons,
//! read through the parsing rules of STANDARDS.md (`support::scs`), as the compliance
//! monitor shows them.
//!
//! On the real control plane (`testbed/`; one test bed per scenario, shared by this
//! binary, each test in runs of its own; runs authenticate as a ServiceAccount bound to
//! exactly the ClusterRole `gen` prints): the monitor's view of a failing run (scenario
//! `one-zone`) and the script entry in each execution mode (scenario `three-zones-e2e`).
//! On the simulator: the two runs of the whole scope, which need a cluster that passes the
//! certificate (an enforcing network policy data plane next to three zones of nodes and
//! the conformance image); no test bed scenario combines those yet.

mod support;

use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use serde_json::Value;
use support::binary::*;
use support::testbed::{TestBed, new_run_id};
use support::{ClusterSpec, SimCluster};

const IMAGE: &str = "ghcr.io/sovereigncloudstack/scs-kaas-check";
const CERTIFICATE: [&str; 3] = [
    "cncf-k8s-conformance",
    "version-policy-check",
    "kaas-networking-check",
];
const BESIDE: [&str; 5] = [
    "node-distribution-check",
    "node-anti-affinity-check",
    "default-storage-class-check",
    "lb-service-check",
    "lb-ip-preservation-check",
];

/// A cluster that passes the certificate (the emulated conformance image passes, the
/// version is the newest patch of the fixture data, the network plugin enforces
/// NetworkPolicy) but has no default StorageClass and no cloud controller: the storage and
/// load balancer checks beside the certificate fail.
fn certified_cluster() -> SimCluster {
    let sim = SimCluster::start(ClusterSpec {
        git_version: "v1.34.3".into(),
        ..Default::default()
    });
    support::incluster::register_suite_image(&sim, IMAGE);
    support::conformance::register(&sim, "pass");
    sim
}

/// `run` with the sidecar image and the pinned version-policy data.
fn run(sim: &SimCluster, extra: &[&str]) -> Output {
    let (releases, cves) = (fixture("releases.json"), fixture("cves.json"));
    let mut args = vec![
        "--image",
        IMAGE,
        "--reference-date",
        "2026-06-01",
        "--release-data",
        releases.to_str().unwrap(),
        "--cve-data",
        cves.to_str().unwrap(),
        "--lb-timeout",
        "1s",
    ];
    args.extend_from_slice(extra);
    let out = run_against(sim, &args);
    out.assert_clean_exit();
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    out
}

/// `run` in a run of its own on test bed `tb` (offline), as a ServiceAccount bound to
/// exactly the ClusterRole `gen` prints for the selection, with version-policy data for
/// the test bed's v1.37.2 (patch-recency and cve-recency FAIL); asserts that nothing of the
/// run is left.
fn bed_run(tb: &TestBed, selection: &[&str]) -> Output {
    let run_id = new_run_id();
    let (releases, cves) = (fixture("releases-1.37.json"), fixture("cves-1.37.json"));
    let mut args = selection.to_vec();
    args.extend([
        "--run-id",
        &run_id,
        "--reference-date",
        "2026-12-20",
        "--release-data",
        releases.to_str().unwrap(),
        "--cve-data",
        cves.to_str().unwrap(),
    ]);
    let kubeconfig = tb.gen_kubeconfig(&args);
    let out = run_against(&kubeconfig, &args);
    out.assert_clean_exit();
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    tb.assert_run_left_nothing(&run_id);
    out
}

fn report(out: &Output) -> Value {
    serde_saphyr::from_str(&out.report()).expect("report.yaml is YAML")
}

fn line_with<'a>(out: &'a Output, start: &str) -> &'a str {
    out.stderr
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?}:\n{}", out.stderr))
}

#[test]
fn a_default_run_is_exactly_the_certificate() {
    let sim = certified_cluster();
    let out = run(&sim, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let verdicts = out.verdicts();
    assert_eq!(verdicts.len(), 3, "{}", out.stdout);
    for tc in CERTIFICATE {
        assert_eq!(verdicts[tc], "PASS", "{tc}: {}", out.stderr);
    }
    assert_eq!(
        line_with(&out, "target main"),
        "target main (the certificate): PASS: 3 passed"
    );
    let report = report(&out);
    assert_eq!(report["run"]["scope_version"], "v1");
    assert_eq!(report["run"]["scope_validity"], "effective");
    assert_eq!(report["targets"].as_array().unwrap().len(), 1);
    assert_eq!(report["targets"][0]["target"], "main");
    assert_eq!(report["targets"][0]["verdict"], "PASS");
    assert!(
        out.junit()
            .contains(r#"name="target" value="target main (the certificate): PASS: 3 passed""#)
    );
}

#[test]
fn failures_beside_the_certificate_are_shown_but_do_not_fail_it() {
    let sim = certified_cluster();
    let out = run(&sim, &["--target", "all"]);
    // The certificate passes: exit 0, and the run says so.
    assert_eq!(out.code, 0, "{}", out.stderr);
    let verdicts = out.verdicts();
    assert_eq!(verdicts.len(), 8, "{}", out.stdout);
    for tc in CERTIFICATE {
        assert_eq!(verdicts[tc], "PASS", "{tc}: {}", out.stderr);
    }
    assert_eq!(verdicts["default-storage-class-check"], "FAIL");
    assert_eq!(verdicts["lb-service-check"], "FAIL");
    // No load balancer address, so nothing was measured: undecided, never a pass.
    assert_eq!(verdicts["lb-ip-preservation-check"], "ABORT");
    assert_eq!(
        line_with(&out, "target main"),
        "target main (the certificate): PASS: 3 passed"
    );
    assert_eq!(
        line_with(&out, "target extension"),
        "target extension (beside the certificate, not counted in the exit code): FAIL: \
         1 passed, 2 failed (default-storage-class-check, lb-service-check), 1 aborted \
         (lb-ip-preservation-check)"
    );
    // The run says so from its start, too.
    assert_eq!(
        line_with(&out, "selected: "),
        "selected: the certificate (target main): cncf-k8s-conformance, \
         version-policy-check, kaas-networking-check; beside the certificate: \
         node-distribution-check (preview), node-anti-affinity-check (extension), \
         default-storage-class-check (extension), lb-service-check (extension), \
         lb-ip-preservation-check (extension)"
    );
    assert_eq!(
        line_with(&out, "target preview"),
        "target preview (beside the certificate, not counted in the exit code): PASS: 1 passed"
    );

    // report.yaml marks every testcase.
    let report = report(&out);
    for tc in report["testcases"].as_array().unwrap() {
        let id = tc["id"].as_str().unwrap();
        let certificate = CERTIFICATE.contains(&id);
        assert!(certificate || BESIDE.contains(&id), "{id}");
        assert_eq!(tc["certificate"], certificate, "{id}");
        assert_eq!(tc["counted"], certificate, "{id}");
        let target = if certificate {
            "main"
        } else if id == "node-distribution-check" {
            "preview"
        } else {
            "extension"
        };
        assert_eq!(tc["target"], target, "{id}");
    }
    assert_eq!(report["targets"][0]["target"], "main");
    assert_eq!(report["targets"][0]["verdict"], "PASS");
    assert_eq!(report["targets"][1]["target"], "extension");
    assert_eq!(report["targets"][1]["counted"], false);
    assert_eq!(
        report["targets"][1]["failed"],
        serde_json::json!(["default-storage-class-check", "lb-service-check"])
    );

    // JUnit: suites beside the certificate say so in their name.
    let junit = out.junit();
    assert!(
        junit.contains(r#" name="scs-0211-v1 [extension: not part of the certificate]""#),
        "{junit}"
    );
    assert!(
        junit.contains(r#" name="scs-0214-v2-manual [preview: not part of the certificate]""#),
        "{junit}"
    );
    assert!(junit.contains(r#" name="scs-0210-v2""#), "{junit}");

    // Asked for: the same cluster fails when every selected testcase counts...
    let counted = run(&sim, &["--target", "extension", "--count-all-targets"]);
    assert_eq!(counted.code, 1, "{}", counted.stderr);
    assert!(
        line_with(&counted, "target extension").starts_with(
            "target extension (beside the certificate, counted in the exit code): FAIL"
        ),
        "{}",
        counted.stderr
    );
    // ... and when the failing testcase is named.
    let named = run(&sim, &["default-storage-class-check"]);
    assert_eq!(named.code, 1, "{}", named.stderr);
    assert_eq!(
        line_with(&named, "selected: "),
        "selected: beside the certificate: default-storage-class-check (extension, counted)"
    );
    assert_eq!(named.stdout, "default-storage-class-check: FAIL\n");
}

/// The output of a failing run through SCS's runner and monitor (STANDARDS.md): every
/// failed, aborted and warned requirement is one line the monitor keeps, and nothing else
/// of ours counts as an error.
#[test]
fn reasons_are_where_the_compliance_monitor_looks() {
    // Everything in one zone without host labels (test bed scenario `one-zone`): whether
    // the control plane runs on several machines cannot be decided (ABORT), the zone
    // spreads are warnings. The test bed's v1.37.2 is an old patch with a critical CVE in
    // the pinned data: version-policy-check fails two requirements. No StorageClass.
    let tb = TestBed::shared("one-zone");
    // The script entry of the built-in catalogue, filled in as SCS's runner does.
    let ids = [
        "version-policy-check",
        "node-distribution-check",
        "default-storage-class-check",
    ];
    let out = bed_run(tb, &[&["--execution-mode", "parallel"][..], &ids].concat());
    assert_eq!(out.code, 1, "{}", out.stderr);
    let view = support::scs::read(&out.stdout, &out.stderr, &ids);
    println!("compliance monitor view:\n{}", view.monitor.join("\n"));

    // The runner's results are our verdicts.
    assert_eq!(view.results, out.verdicts());
    assert_eq!(view.results["version-policy-check"], "FAIL");
    assert_eq!(view.results["default-storage-class-check"], "FAIL");

    // Every requirement that failed or could not be decided is one ERROR: line, every
    // warning one WARNING: line, with the message of report.yaml.
    let report = report(&out);
    let mut expected_errors = 0;
    let mut expected_warnings = 0;
    for tc in report["testcases"].as_array().unwrap() {
        for req in tc["requirements"].as_array().into_iter().flatten() {
            let status = req["counted_as"]
                .as_str()
                .or(req["status"].as_str())
                .unwrap();
            let prefix = match status {
                "fail" | "abort" => "ERROR",
                "warn" => "WARNING",
                _ => continue,
            };
            let line = format!(
                "{prefix}: {}: {}",
                req["name"].as_str().unwrap(),
                req["message"].as_str().unwrap()
            );
            assert!(
                view.monitor.contains(&line),
                "{line} not shown:\n{}",
                out.stderr
            );
            if prefix == "ERROR" {
                expected_errors += 1;
            } else {
                expected_warnings += 1;
            }
        }
        for warning in tc["warnings"].as_array().into_iter().flatten() {
            let line = format!(
                "WARNING: {}: {}",
                tc["id"].as_str().unwrap(),
                warning.as_str().unwrap()
            );
            assert!(
                view.monitor.contains(&line),
                "{line} not shown:\n{}",
                out.stderr
            );
            expected_warnings += 1;
        }
    }
    assert_eq!(view.results["node-distribution-check"], "ABORT");
    assert!(expected_errors >= 4, "{}", out.stderr);
    assert!(expected_warnings >= 2, "{}", out.stderr);
    // What the runner counts is exactly those lines: no progress line of ours counts.
    assert_eq!(view.errors, expected_errors, "{}", out.stderr);
    assert_eq!(view.criticals, 0, "{}", out.stderr);
    assert_eq!(view.exit_code, expected_errors + 2, "two FAIL verdicts");
    assert_eq!(out.warnings().len(), expected_warnings, "{}", out.stderr);
    assert_eq!(
        view.monitor.len(),
        ids.len() + expected_errors + expected_warnings,
        "{:#?}",
        view.monitor
    );
    for line in out.stderr.lines() {
        let lower = line.to_lowercase();
        if ["error", "critical", "warnin"]
            .iter()
            .any(|w| lower.starts_with(w))
        {
            assert!(
                line.starts_with("ERROR: ") || line.starts_with("WARNING: "),
                "{line}"
            );
        }
    }

    // A run that cannot start: CRITICAL once, and each ABORT's reason visible.
    let out = scs(&[
        "run",
        "-k",
        "/nonexistent/kubeconfig",
        "version-policy-check",
    ]);
    let view = support::scs::read(&out.stdout, &out.stderr, &["version-policy-check"]);
    assert_eq!((view.criticals, view.errors), (1, 1), "{}", out.stderr);
    assert_eq!(
        view.monitor,
        [
            "version-policy-check: ABORT",
            "ERROR: version-policy-check: kubeconfig /nonexistent/kubeconfig does not exist"
        ]
    );
}

/// `run -k {kubeconfig} --execution-mode {execution_mode} {testcases}`, split as SCS's
/// runner splits it, on the test bed of scenario `three-zones-e2e` (its conformance image
/// of the server's version passes) in a run of its own, kept (`--keep`), as a
/// ServiceAccount bound to exactly the ClusterRole `gen` prints for the testcases. Returns
/// the output and the run id.
fn script_entry(mode: &str, testcases: &[&str]) -> (Output, String) {
    let tb = e2e_bed();
    let run_id = new_run_id();
    let mut selection = testcases.to_vec();
    selection.extend(["--run-id", &run_id]);
    let kubeconfig = tb.gen_kubeconfig(&selection);
    let line = format!(
        "run -k {} --execution-mode {mode} {} --offline --image {IMAGE} --keep --run-id {run_id}",
        kubeconfig.display(),
        testcases.join(" ")
    );
    let args: Vec<&str> = line.split_whitespace().collect();
    let out = scs(&args);
    out.assert_clean_exit();
    (out, run_id)
}

fn e2e_bed() -> &'static TestBed {
    TestBed::shared_with_fixtures("three-zones-e2e", &support::conformance::testbed_fixtures)
}

/// The env of the kept e2e Job of run `run_id` (read with the admin credential); then
/// `delete` removes the run, and nothing of it is left.
fn e2e_env(run_id: &str) -> Vec<(String, String)> {
    let tb = e2e_bed();
    let job = tb
        .run_namespaces(run_id)
        .into_iter()
        .find_map(|ns| {
            let jobs: Api<Job> = Api::namespaced(tb.client(), &ns);
            tb.block_on(jobs.get_opt("e2e")).expect("get job")
        })
        .expect("the e2e Job is kept");
    let env = job
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.env)
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    let deleted = against(tb, "delete", &["--run-id", run_id]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    tb.assert_run_left_nothing(run_id);
    env
}

#[test]
fn the_script_entry_with_positional_ids_and_each_execution_mode() {
    // serial: one testcase at a time (each testcase's progress lines are not interleaved
    // with another's), the upstream suite in one process.
    let ids = ["cncf-k8s-conformance", "node-distribution-check"];
    let (out, run_id) = script_entry("serial", &ids);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdicts().len(), 2, "{}", out.stderr);
    let order: Vec<&str> = out
        .stderr
        .lines()
        .filter_map(|l| {
            ids.iter()
                .find(|id| l.starts_with(&format!("[{id}]")))
                .copied()
        })
        .collect();
    let switches = order.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(
        switches, 1,
        "testcases ran at the same time:\n{}",
        out.stderr
    );
    let env = e2e_env(&run_id);
    assert!(!env.iter().any(|(k, _)| k == "E2E_PARALLEL"), "{env:?}");
    assert_eq!(report(&out)["run"]["execution_mode"], "serial");
    // Named by position, a testcase beside the certificate counts.
    let counted: Vec<bool> = report(&out)["testcases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["counted"].as_bool().unwrap())
        .collect();
    assert_eq!(counted, [true, true]);

    // parallel (SCS's default): the upstream suite in parallel processes, count by ginkgo.
    let (out, run_id) = script_entry("parallel", &["cncf-k8s-conformance"]);
    assert_eq!(out.stdout, "cncf-k8s-conformance: PASS\n", "{}", out.stderr);
    let env = e2e_env(&run_id);
    assert!(
        env.contains(&("E2E_PARALLEL".into(), "true".into())),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|(k, _)| k == "E2E_EXTRA_GINKGO_ARGS"),
        "{env:?}"
    );

    // dry: the upstream dry run decides nothing; no verdict line.
    let (out, run_id) = script_entry("dry", &["cncf-k8s-conformance"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "", "{}", out.stderr);
    assert!(
        out.stderr
            .contains("[cncf-k8s-conformance] not applicable: dry run: "),
        "{}",
        out.stderr
    );
    assert!(e2e_env(&run_id).contains(&("E2E_DRYRUN".into(), "true".into())));

    // serial contradicts more than one testcase at a time.
    let out = scs(&["run", "--execution-mode", "serial", "--parallel", "2"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.critical(),
        "--execution-mode serial runs one testcase at a time; --parallel 2 contradicts it"
    );
    let out = scs(&["run", "--execution-mode", "fast"]);
    assert_eq!(out.code, 2);
    assert!(out.critical().contains("'fast'"), "{}", out.stderr);
}
