//! `run --in-cluster`, `gen`, `status`, `retrieve`, `delete` of in-cluster runs and the
//! Sonobuoy plugin contract.
//!
//! On the real control plane (`testbed/`, scenario `three-zones-e2e`, one test bed shared
//! by this binary; each test works in a run of its own and asserts on that run): the
//! suite's image runs the real binary in a pod with the ServiceAccount and the ClusterRole
//! that `run --in-cluster` creates from the same builders as `gen`, under real RBAC and Pod
//! Security admission; local runs use a ServiceAccount bound to exactly the ClusterRole
//! `gen` prints for their selection. The outer process of an in-cluster run uses the admin
//! credential (it deploys the runner, as `kubectl apply` of `gen`'s output would); admin
//! credentials also set up faults (admission policies) and check what is left.
//!
//! On the simulator (tests/support/incluster.rs runs the real binary for the suite's image,
//! which needs root) only what a real control plane here cannot be made to do: a registry
//! that answers 429, and a cluster of 5000 nodes.

mod support;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::binary::Target;
use support::binary::{
    Output, against, assert_valid_junit, fixture, gen_docs, interrupted_at_lines, run_against, scs,
    scs_with, status_line, suite_objects,
};
use support::testbed::{Probe, TestBed, holding_policy, new_run_id, refusing_policy};
use support::{ClusterSpec, SimCluster};

/// The suite's image: the test bed (and the simulator) run the binary under test for it.
const IMAGE: &str = "ghcr.io/sovereigncloudstack/scs-kaas-check";

fn bed() -> &'static TestBed {
    TestBed::shared_with_fixtures("three-zones-e2e", &support::conformance::testbed_fixtures)
}

/// node-distribution-check and version-policy-check with release and CVE data for the test
/// bed's v1.37.2 (patch-recency and cve-recency FAIL, naming CVE-2099-0003), in run
/// `run_id`.
fn selection(run_id: &str) -> Vec<String> {
    [
        "--run-id",
        run_id,
        "--check",
        "node-distribution-check",
        "--check",
        "version-policy-check",
        "--reference-date",
        "2026-12-20",
        "--release-data",
        fixture("releases-1.37.json").to_str().expect("utf-8"),
        "--cve-data",
        fixture("cves-1.37.json").to_str().expect("utf-8"),
    ]
    .map(String::from)
    .to_vec()
}

/// `run -k <kubeconfig> --offline <selection of run_id> <extra>`.
fn run(kubeconfig: &Path, run_id: &str, extra: &[&str]) -> Output {
    let mut args: Vec<String> = selection(run_id);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_against(kubeconfig, &refs);
    out.assert_clean_exit();
    out
}

/// `run --in-cluster` with the admin credential (the outer process deploys the runner).
fn run_in_cluster(run_id: &str, args: &[&str]) -> Output {
    let mut all = vec!["--in-cluster", "--run-id", run_id];
    all.extend_from_slice(args);
    let out = run_against(bed(), &all);
    out.assert_clean_exit();
    out
}

/// The kubelet ends a followed log when the container exits and the pod's status says so a
/// moment later: that is the end of the run, not a cut that needs resuming.
fn assert_not_resumed(out: &Output) {
    assert!(
        !out.stderr.contains("following resumes"),
        "a normal end was taken for a cut stream:\n{}",
        out.stderr
    );
}

/// `report.yaml` without the lines that differ between any two runs.
fn requirement_results(report: &str) -> Vec<String> {
    report
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            // The context (kubeconfig vs. in-cluster) and where the data files were read
            // differ by design.
            ![
                "run_id:",
                "started:",
                "finished:",
                "duration",
                "tool_version:",
                "context:",
                // In the cluster the API server is the `kubernetes` Service.
                "api_server:",
            ]
            .iter()
            .any(|p| t.starts_with(p))
                && !t.contains(" data: file ")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn in_cluster_run_equals_local_run_and_cleans_up() {
    let tb = bed();
    let (local_id, remote_id) = (new_run_id(), new_run_id());
    let mut gen_args: Vec<String> = selection(&local_id);
    gen_args.push("--offline".into());
    let gen_refs: Vec<&str> = gen_args.iter().map(String::as_str).collect();
    let least = tb.gen_kubeconfig(&gen_refs);
    let local = run(&least, &local_id, &[]);
    let remote = run(&tb.kubeconfig_file(), &remote_id, &["--in-cluster"]);
    assert_eq!(remote.code, local.code, "stderr:\n{}", remote.stderr);
    assert_eq!(remote.verdicts(), local.verdicts());
    assert_eq!(
        remote.verdict("version-policy-check").as_deref(),
        Some("FAIL")
    );
    assert_eq!(
        remote.verdict("node-distribution-check").as_deref(),
        Some("PASS"),
        "{}",
        remote.stderr
    );
    // The reasons reach SCS's runner from inside the cluster too: the outer process prints
    // the in-cluster run's ERROR:/WARNING: lines (in report order; a local run prints them
    // as testcases finish).
    fn sorted(mut lines: Vec<&str>) -> Vec<&str> {
        lines.sort();
        lines
    }
    assert!(!local.errors().is_empty(), "{}", local.stderr);
    assert_eq!(sorted(remote.errors()), sorted(local.errors()));
    assert_eq!(sorted(remote.warnings()), sorted(local.warnings()));
    assert_valid_junit(&remote.out_dir.join("junit.xml"));
    assert_eq!(
        requirement_results(&remote.report()),
        requirement_results(&local.report())
    );
    for req in [
        "version-policy-check/cve-recency",
        "node-distribution-check/worker-zones",
    ] {
        assert_eq!(remote.junit_message(req), local.junit_message(req));
        assert_eq!(remote.junit_out(req), local.junit_out(req));
    }
    assert!(
        remote
            .junit_message("version-policy-check/cve-recency")
            .contains("CVE-2099-0003")
    );
    for tc in ["node-distribution-check", "version-policy-check"] {
        assert!(
            remote
                .out_dir
                .join("logs")
                .join(format!("{tc}.log"))
                .exists(),
            "log of {tc} not retrieved"
        );
    }
    // Progress came from the pod's log, with the in-cluster verdict lines; the run inside
    // connected as a pod does (the `kubernetes` Service, its ServiceAccount's token), and
    // real RBAC refused none of its calls.
    for line in [
        &format!(
            "[in-cluster] scs-kaas-check {} run {remote_id}: in-cluster (v1.37.2) at 10.96.0.1",
            env!("CARGO_PKG_VERSION")
        ),
        "[in-cluster] [node-distribution-check] started",
        "[in-cluster] version-policy-check: FAIL",
    ] {
        assert!(remote.stderr.contains(line), "{line}:\n{}", remote.stderr);
    }
    let runner_log = remote.file("logs/in-cluster-runner.log");
    assert!(!runner_log.contains("forbidden"), "{runner_log}");
    assert_not_resumed(&remote);
    tb.assert_run_left_nothing(&local_id);
    tb.assert_run_left_nothing(&remote_id);
}

fn doc<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("gen printed no {kind}"))
}

/// An object as the API server returns it, as JSON.
fn json<K: serde::Serialize>(object: K) -> Value {
    serde_json::to_value(object).expect("serializable")
}

#[test]
fn created_objects_equal_gen_then_status_retrieve_and_delete_clean_a_kept_run() {
    let tb = bed();
    let run_id = new_run_id();
    let kubeconfig = tb.kubeconfig_file();
    let remote = run(&kubeconfig, &run_id, &["--in-cluster", "--keep"]);
    let ns = format!("skc-{run_id}-runner");
    assert!(
        remote.stderr.contains(&format!("kept namespace {ns}")),
        "{}",
        remote.stderr
    );
    let mut args: Vec<String> = vec!["gen".into()];
    args.extend(selection(&run_id));
    args.extend(["--offline".into(), "--keep".into()]);
    let docs = gen_docs(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let name = format!("scs-kaas-check-{run_id}");
    let client = tb.client();
    let get = |what: &str| -> Value {
        tb.block_on(async {
            let found = match what {
                "ClusterRole" => Api::<ClusterRole>::all(client.clone())
                    .get(&name)
                    .await
                    .map(json),
                "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(client.clone())
                    .get(&name)
                    .await
                    .map(json),
                "Role" => Api::<Role>::namespaced(client.clone(), &ns)
                    .get("scs-kaas-check-results")
                    .await
                    .map(json),
                "RoleBinding" => Api::<RoleBinding>::namespaced(client.clone(), &ns)
                    .get("scs-kaas-check-results")
                    .await
                    .map(json),
                "Job" => Api::<Job>::namespaced(client.clone(), &ns)
                    .get("scs-kaas-check")
                    .await
                    .map(json),
                "Namespace" => Api::<Namespace>::all(client.clone())
                    .get(&ns)
                    .await
                    .map(json),
                "ConfigMap" => Api::<ConfigMap>::namespaced(client.clone(), &ns)
                    .get("scs-kaas-check-data")
                    .await
                    .map(json),
                other => panic!("{other}"),
            };
            found.unwrap_or_else(|e| panic!("{what} of run {run_id} not kept: {e}"))
        })
    };
    let cr = get("ClusterRole");
    assert_eq!(cr["rules"], doc(&docs, "ClusterRole")["rules"]);
    assert_eq!(
        cr["metadata"]["labels"],
        doc(&docs, "ClusterRole")["metadata"]["labels"]
    );
    let crb = get("ClusterRoleBinding");
    assert_eq!(
        crb["subjects"],
        doc(&docs, "ClusterRoleBinding")["subjects"]
    );
    assert_eq!(crb["roleRef"], doc(&docs, "ClusterRoleBinding")["roleRef"]);
    assert_eq!(get("Role")["rules"], doc(&docs, "Role")["rules"]);
    assert_eq!(
        get("RoleBinding")["subjects"],
        doc(&docs, "RoleBinding")["subjects"]
    );
    let job = get("Job");
    let gen_job = doc(&docs, "Job");
    let container = |j: &Value| j["spec"]["template"]["spec"]["containers"][0].clone();
    // The data files' paths differ only by where they are read: the gen'd args are equal.
    assert_eq!(container(&job)["args"], container(gen_job)["args"]);
    assert_eq!(container(&job)["image"], container(gen_job)["image"]);
    assert_eq!(
        job["spec"]["template"]["spec"]["serviceAccountName"],
        "scs-kaas-check"
    );
    // The runner's namespace enforces the restricted profile, which the runner's pod met.
    assert_eq!(
        get("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    get("ConfigMap");
    // The ClusterRole grants what the checks used: nodes for node-distribution-check.
    assert!(cr["rules"].as_array().unwrap().iter().any(|r| {
        r["resources"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(|x| x == "nodes"))
    }));

    // status lists the run; retrieve copies its results and exits like the run.
    let line = status_line(tb, &run_id);
    // The run FAILed a testcase (exit code 1), so its Job failed; the results are there.
    assert!(line.contains(&ns) && line.contains("Finished"), "{line}");
    assert!(
        line.contains("2 verdicts: 1 passed, 1 failed, 0 aborted"),
        "{line}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("retrieved");
    let retrieved = against(
        tb,
        "retrieve",
        &[
            "--run-id",
            &run_id,
            "--output-dir",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(retrieved.code, remote.code, "{}", retrieved.stderr);
    assert_eq!(retrieved.stdout, remote.stdout);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("junit.xml")).unwrap(),
        remote.junit()
    );
    let none = against(tb, "retrieve", &["--run-id", "ffffffff"]);
    assert_eq!(none.code, 2);
    assert!(
        none.stderr.contains("no in-cluster run ffffffff"),
        "{}",
        none.stderr
    );

    // delete removes the kept run: namespace, ClusterRole, ClusterRoleBinding (`delete`
    // without a run id, every run's, is in tests/cleanup.rs: here other tests' runs go on).
    let deleted = against(tb, "delete", &["--run-id", &run_id]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    for what in [
        format!("deleted ClusterRole {name}"),
        format!("deleted ClusterRoleBinding {name}"),
        format!("deleted namespace {ns}"),
    ] {
        assert!(
            deleted.stderr.contains(&what),
            "{what}:\n{}",
            deleted.stderr
        );
    }
    tb.assert_run_left_nothing(&run_id);
}

#[test]
fn unpullable_suite_image_aborts_with_the_pods_events() {
    let tb = bed();
    let run_id = new_run_id();
    // A repository the registry does not have (the test bed's kubelet: `not found`).
    let image = "ghcr.io/sovereigncloudstack/scs-kaas-check-unpublished:v0.0.0";
    let started = Instant::now();
    let out = run(
        &tb.kubeconfig_file(),
        &run_id,
        &["--in-cluster", "--image", image],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(
        out.verdict("node-distribution-check").as_deref(),
        Some("ABORT")
    );
    assert_eq!(
        out.verdict("version-policy-check").as_deref(),
        Some("ABORT")
    );
    let message = out.junit_message("node-distribution-check");
    assert!(message.contains("cannot start"), "{message}");
    assert!(message.contains("ErrImagePull"), "{message}");
    assert!(
        message.contains(&format!("Failed to pull image \"{image}\"")),
        "{message}"
    );
    // No retry finds an image that does not exist: no waiting for --pod-start-timeout.
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
    tb.assert_run_left_nothing(&run_id);
}

/// A site's admission policy refuses the runner's pod: the Job controller cannot create
/// it and says why in a `FailedCreate` event; the run ABORTs at once quoting the real API
/// server's refusal, instead of waiting for a pod that never comes.
#[test]
fn a_runner_pod_refused_by_admission_aborts_at_once_naming_the_policy() {
    let tb = bed();
    let run_id = new_run_id();
    let policy = format!("deny-pods-{run_id}");
    let _policy = tb.apply_policy(
        &refusing_policy(
            &policy,
            &run_id,
            "CREATE",
            "pods",
            "true",
            "pods of scs-kaas-check are not allowed in this cluster (site policy)",
        ),
        &run_id,
        Probe::Refuses("pods", "probe"),
    );
    let started = Instant::now();
    let out = run(
        &tb.kubeconfig_file(),
        &run_id,
        &["--in-cluster", "--pod-start-timeout", "2m"],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    for tc in ["node-distribution-check", "version-policy-check"] {
        assert_eq!(out.verdict(tc).as_deref(), Some("ABORT"), "{}", out.stderr);
        let message = out.junit_message(tc);
        assert!(
            message.starts_with(&format!(
                "the pods of job skc-{run_id}-runner/scs-kaas-check were never created: \
                 Error creating: pods \"scs-kaas-check-"
            )),
            "{message}"
        );
        assert!(
            message.contains(&format!(
                "is forbidden: ValidatingAdmissionPolicy '{policy}' with binding '{policy}' \
                 denied request: pods of scs-kaas-check are not allowed in this cluster \
                 (site policy); admission"
            )),
            "{message}"
        );
    }
    tb.assert_run_left_nothing(&run_id);
}

/// SIGINT while the run inside waits for the pods of its check (held Pending by a
/// scheduling gate): the outer process deletes the runner's namespace (the run inside
/// gets SIGTERM and removes its own namespace), then sweeps the run's labels: nothing of
/// either is left.
#[test]
fn sigint_during_an_in_cluster_run_deletes_what_it_and_the_run_inside_created() {
    let tb = bed();
    let run_id = new_run_id();
    let _hold = tb.apply_policy(
        &holding_policy(&format!("hold-{run_id}"), &run_id),
        &run_id,
        Probe::HoldsPods,
    );
    let kubeconfig = tb.kubeconfig_file();
    let args = [
        "run",
        "-k",
        kubeconfig.to_str().unwrap(),
        "--offline",
        "--in-cluster",
        "--run-id",
        &run_id,
        "--check",
        "node-anti-affinity-check",
    ];
    let started = Instant::now();
    let out = interrupted_at_lines(
        &args,
        &[
            "[in-cluster] [node-anti-affinity-check] deployment anti-affinity with 3 replicas created",
        ],
        Duration::from_secs(90),
    );
    let stderr = &out.stderr;
    assert_eq!(out.code, 3, "{stderr}");
    // The runner's pod is deleted and waited for before its namespace: the run inside
    // cleans up in seconds, and the namespace then goes at once. (Deleting the namespace
    // first, the namespace controller waited out the pod's grace period: about 90 s.)
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{:?}:\n{stderr}",
        started.elapsed()
    );
    assert!(!stderr.contains("cleanup: the pods of job"), "{stderr}");
    assert!(stderr.contains("SIGINT received"), "{stderr}");
    assert_eq!(out.stdout, "node-anti-affinity-check: ABORT\n", "{stderr}");
    let junit = out.junit();
    assert!(junit.contains("the run was interrupted"), "{junit}");
    tb.assert_run_left_nothing(&run_id);
}

#[test]
fn sonobuoy_mode_writes_the_done_file_naming_the_junit_file() {
    let tb = bed();
    let run_id = new_run_id();
    let selection = ["--check", "node-distribution-check", "--run-id", &run_id];
    let kubeconfig = tb.gen_kubeconfig(&selection);
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("sonobuoy/results");
    let mut args = vec!["run", "-k", kubeconfig.to_str().unwrap()];
    args.extend_from_slice(&selection);
    let out = scs_with(&args, |cmd| {
        cmd.env("SONOBUOY_RESULTS_DIR", &results);
    });
    assert_eq!(out.code, 0, "{}", out.stderr);
    let done = std::fs::read_to_string(results.join("done")).expect("done file");
    assert_eq!(done, results.join("junit.xml").display().to_string());
    let junit = std::fs::read_to_string(&done).expect("the done file names the results");
    assert_eq!(junit, out.junit());
    assert!(junit.contains("<testcase name=\"node-distribution-check"));
    assert_valid_junit(std::path::Path::new(&done));
}

#[test]
fn in_cluster_refuses_what_cannot_run_in_the_cluster() {
    let out = scs(&["gen", "--offering", "--check", "node-distribution-check"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--offering cannot be combined"),
        "{}",
        out.stderr
    );
    let out = scs(&[
        "gen",
        "--check",
        "node-distribution-check",
        "--release-data",
        "/nonexistent/r.json",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("cannot read --release-data /nonexistent/r.json"),
        "{}",
        out.stderr
    );
    out.assert_clean_exit();
}

#[test]
fn image_registry_rewrites_default_images_in_the_job() {
    let docs = gen_docs(&[
        "gen",
        "--check",
        "node-distribution-check",
        "--image-registry",
        "mirror.example.com/scs",
        "--agnhost-image",
        "own.example/agnhost:1",
    ]);
    let container = &doc(&docs, "Job")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        container["image"]
            .as_str()
            .unwrap()
            .starts_with("mirror.example.com/scs/sovereigncloudstack/scs-kaas-check:v"),
        "{container}"
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(
        after("--workload-image"),
        "mirror.example.com/scs/pause:3.10"
    );
    assert_eq!(
        after("--storage-image"),
        "mirror.example.com/scs/library/busybox:1.37.0"
    );
    assert_eq!(after("--agnhost-image"), "own.example/agnhost:1");
}

/// A load balancer in front of the API server (here a proxy closing connections idle for
/// 1 s) cuts the followed log of the runner while the run inside is silent (its upstream
/// e2e run's first spec runs 3 s without output): the outer process resumes following,
/// shows every line once, and learns the end of the run from the pod's status. The runner
/// ran the upstream e2e suite with the ClusterRole it generated, `escalate`/`bind`
/// included, under real RBAC.
#[test]
fn a_cut_log_stream_is_resumed_and_every_line_shown_once() {
    let tb = bed();
    let run_id = new_run_id();
    let (proxy, via_proxy) = tb.behind_idle_proxy(&tb.kubeconfig_file(), Duration::from_secs(1));
    let out = run_against(
        &via_proxy,
        &[
            "--in-cluster",
            "--run-id",
            &run_id,
            "--check",
            "cncf-k8s-conformance",
            "--conformance-image",
            "registry.k8s.io/conformance:slow",
        ],
    );
    out.assert_clean_exit();
    assert!(proxy.cuts() >= 1, "the proxy cut nothing:\n{}", out.stderr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdict("cncf-k8s-conformance").as_deref(), Some("PASS"));
    assert!(
        out.stderr
            .contains("following resumes from the last line seen"),
        "{}",
        out.stderr
    );
    // Lines written after the cut arrive, each once.
    for line in [
        "[in-cluster] [cncf-k8s-conformance] started",
        "[in-cluster] [cncf-k8s-conformance] [e2e] 3/3 specs done, 0 failed so far",
        "[in-cluster] cncf-k8s-conformance: PASS",
    ] {
        assert_eq!(
            out.stderr.matches(line).count(),
            1,
            "{line}:\n{}",
            out.stderr
        );
    }
    let runner_log = out.file("logs/in-cluster-runner.log");
    assert!(
        runner_log.contains("cncf-k8s-conformance: PASS"),
        "{runner_log}"
    );
    tb.assert_run_left_nothing(&run_id);
}

/// The kubelet retries a pull that a registry answered with 429 (ErrImagePull, then
/// ImagePullBackOff): the run waits and goes on once the image is pulled. (Simulator: the
/// test bed's registry does not rate-limit.)
#[test]
fn a_rate_limited_image_pull_is_waited_out() {
    let image = format!("{IMAGE}:rate-limited");
    let sim = SimCluster::start(ClusterSpec {
        flaky_images: vec![(image.clone(), 2)],
        ..Default::default()
    });
    support::incluster::register_suite_image(&sim, IMAGE);
    let out = run_against(
        &sim,
        &[
            "--check",
            "node-distribution-check",
            "--in-cluster",
            "--image",
            &image,
            "--keep",
        ],
    );
    assert_eq!(out.verdicts().len(), 1, "{}", out.stderr);
    assert!(
        !out.verdicts().values().any(|v| v == "ABORT"),
        "{}",
        out.stderr
    );
    let pod_events: Vec<String> = sim
        .objects("events")
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect();
    assert!(
        pod_events
            .iter()
            .any(|m| m.contains("429 Too Many Requests")),
        "{pod_events:?}"
    );
    assert_eq!(against(&sim, "delete", &[]).code, 0);
    assert_nothing_left_in(&sim);
}

fn assert_nothing_left_in(sim: &SimCluster) {
    for resource in ["namespaces", "clusterroles", "clusterrolebindings"] {
        let left = suite_objects(sim, resource);
        assert!(left.is_empty(), "{resource} left behind: {left:?}");
    }
}

/// The in-cluster run's results exceed a ConfigMap's 1 MiB (the real API server answers
/// 422 above it): the conformance run's 6600-testcase JUnit inside them comes back whole,
/// and `status` says the results are complete; a part lost afterwards makes them
/// INCOMPLETE for `status` and `retrieve`.
#[test]
fn in_cluster_results_over_one_mebibyte_come_back_complete() {
    let tb = bed();
    let run_id = new_run_id();
    let ns = format!("skc-{run_id}-runner");
    let out = run_in_cluster(
        &run_id,
        &[
            "--check",
            "cncf-k8s-conformance",
            "--conformance-image",
            "registry.k8s.io/conformance:realistic",
            "--keep",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdict("cncf-k8s-conformance").as_deref(), Some("PASS"));
    let junit = out.junit();
    assert!(junit.len() > 1024 * 1024, "{}", junit.len());
    // Our requirement and the 6600 upstream testcases.
    assert_eq!(junit.matches("<testcase ").count(), 1 + 6600);
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    let dir = tempfile::tempdir().unwrap();
    support::conformance::realistic_fixture(dir.path(), 400, 6600);
    let original = std::fs::read_to_string(dir.path().join("junit_01.xml")).unwrap();
    assert!(out.file("cncf-k8s-conformance/junit_01.xml") == original);
    let line = status_line(tb, &run_id);
    assert!(line.contains("complete: 1 verdicts: 1 passed"), "{line}");
    // The limit the bundle splits for is real: one byte over 1 MiB is refused.
    let configmaps: Api<ConfigMap> = Api::namespaced(tb.client(), &ns);
    let over: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "over-the-limit"},
        "data": {"x": "x".repeat(1024 * 1024 + 1)}
    }))
    .unwrap();
    match tb.block_on(configmaps.create(&PostParams::default(), &over)) {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{e}"),
        other => panic!("a ConfigMap over 1 MiB was not refused: {other:?}"),
    }
    // A part lost afterwards: status and retrieve say the results are incomplete.
    tb.block_on(configmaps.delete("scs-kaas-check-results-part-1", &DeleteParams::default()))
        .expect("a part ConfigMap");
    let line = status_line(tb, &run_id);
    assert!(line.contains("INCOMPLETE: part 1 of"), "{line}");
    let retrieved = against(tb, "retrieve", &["--run-id", &run_id]);
    assert_eq!(retrieved.code, 3, "{}", retrieved.stderr);
    assert!(
        retrieved.stderr.contains(&format!(
            "the results of run {run_id} ({ns}) are incomplete: part 1 of"
        )),
        "{}",
        retrieved.stderr
    );
    assert!(
        retrieved.stderr.contains("1 verdicts: 1 passed"),
        "{}",
        retrieved.stderr
    );
    let deleted = against(tb, "delete", &["--run-id", &run_id]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    tb.assert_run_left_nothing(&run_id);
}

/// Results that cannot be stored (a site's admission policy refuses the results
/// ConfigMaps) are never lost silently: the run inside fails and says why, the outer
/// process ABORTs with that reason, `status` says there are none, and `retrieve` fetches
/// the runner's log.
#[test]
fn results_that_cannot_be_stored_fail_loudly_and_retrieve_fetches_the_log() {
    let tb = bed();
    let run_id = new_run_id();
    let policy = format!("deny-results-{run_id}");
    let _policy = tb.apply_policy(
        &refusing_policy(
            &policy,
            &run_id,
            "CREATE",
            "configmaps",
            "object.metadata.name.startsWith('scs-kaas-check-results')",
            "no result ConfigMaps here (site policy)",
        ),
        &run_id,
        Probe::Refuses("configmaps", "scs-kaas-check-results-part-1"),
    );
    let out = run_in_cluster(&run_id, &["--check", "node-distribution-check", "--keep"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(
        out.verdict("node-distribution-check").as_deref(),
        Some("ABORT")
    );
    let message = out.junit_message("node-distribution-check");
    assert!(
        message.contains("the in-cluster run ended without storing results"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "CRITICAL: cannot store the results: store configmap \
             scs-kaas-check-results-part-1: 403 Forbidden: configmaps \
             \"scs-kaas-check-results-part-1\" is forbidden: ValidatingAdmissionPolicy \
             '{policy}' with binding '{policy}' denied request: no result ConfigMaps here \
             (site policy)"
        )),
        "{message}"
    );
    // As SCS's runner reads it: the run inside could not complete (its `CRITICAL:` line is
    // relayed as `[in-cluster] ...`, not counted twice); the outer run cannot either: one
    // `CRITICAL:` line, and the ABORT's reason as one `ERROR:` line per testcase, which the
    // compliance monitor shows.
    let view = support::scs::read(&out.stdout, &out.stderr, &["node-distribution-check"]);
    assert_eq!(
        view.results
            .get("node-distribution-check")
            .map(String::as_str),
        Some("ABORT")
    );
    assert_eq!((view.errors, view.criticals), (1, 1), "{}", out.stderr);
    assert!(
        view.monitor
            .iter()
            .any(|l| l.starts_with("ERROR: node-distribution-check")
                && l.contains("CRITICAL: cannot store the results")),
        "{:?}",
        view.monitor
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("[in-cluster] CRITICAL: cannot store the results")),
        "{}",
        out.stderr
    );
    // The runner exited 3: the Job controller records `Failed` a moment after the pod's
    // status says so; until then `status` reads the exit from the pod.
    let line = status_line(tb, &run_id);
    assert!(
        line.contains("Failed (BackoffLimitExceeded)") || line.contains("Ended (exit 3)"),
        "{line}"
    );
    assert!(
        line.contains("none: the run ended without storing results"),
        "{line}"
    );
    let dir = tempfile::tempdir().unwrap();
    let retrieved = against(
        tb,
        "retrieve",
        &[
            "--run-id",
            &run_id,
            "--output-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(retrieved.code, 3, "{}", retrieved.stderr);
    assert!(
        retrieved
            .stderr
            .lines()
            .any(|l| l.starts_with(&format!("CRITICAL: run {run_id}"))
                && l.contains("ended without storing results")),
        "{}",
        retrieved.stderr
    );
    let log = std::fs::read_to_string(dir.path().join("logs/in-cluster-runner.log"))
        .unwrap_or_else(|e| panic!("runner log not fetched: {e}\n{}", retrieved.stderr));
    assert!(log.contains("cannot store the results"), "{log}");
    assert_eq!(against(tb, "delete", &["--run-id", &run_id]).code, 0);
    tb.assert_run_left_nothing(&run_id);
}

/// A large cluster's report (5000 nodes, each a row of node-distribution-check's evidence)
/// is more than a ConfigMap holds: it comes back whole (issue 18's case). (Simulator: the
/// test bed runs at most 200 nodes.)
#[test]
fn the_report_of_a_5000_node_cluster_comes_back_whole() {
    let nodes = (0..5000)
        .map(|i| {
            support::NodeSpec::worker(&format!("worker-{i:04}.region-1.cloud.example"))
                .zone(&format!("zone-{}", i % 3 + 1))
                .region("region-1")
                .host(&format!("hypervisor-{:03}", i / 20))
        })
        .chain((1..=3).map(|i| {
            support::NodeSpec::control_plane(&format!("control-plane-{i}"))
                .zone(&format!("zone-{i}"))
                .region("region-1")
                .host(&format!("cp-host-{i}"))
        }))
        .collect();
    let sim = SimCluster::start(ClusterSpec {
        nodes,
        ..Default::default()
    });
    support::incluster::register_suite_image(&sim, IMAGE);
    let local = run_against(&sim, &["--check", "node-distribution-check"]);
    let remote = run_against(
        &sim,
        &["--check", "node-distribution-check", "--in-cluster"],
    );
    let report = remote.report();
    assert!(report.len() > 1024 * 1024, "{} bytes", report.len());
    assert_eq!(remote.verdicts(), local.verdicts(), "{}", remote.stderr);
    assert_eq!(
        requirement_results(&report),
        requirement_results(&local.report())
    );
    assert!(report.contains("worker-4999.region-1.cloud.example"));
    assert!(support::incluster::assert_runner_granted(&sim) > 3);
    assert_nothing_left_in(&sim);
}
