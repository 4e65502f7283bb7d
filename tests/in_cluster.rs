//! `run --in-cluster`, `gen`, `status`, `retrieve`, `delete` of in-cluster runs and the
//! Sonobuoy plugin contract. The simulator's kubelet runs the real binary for the suite's
//! image (tests/support/incluster.rs), with the pod's service account token; this needs
//! root (private mount namespace).

mod support;

use serde_json::Value;
use std::time::Duration;
use support::binary::{
    Output, against, assert_valid_junit, fixture, interrupted, run_against, scs, scs_with,
    status_line, suite_objects,
};
use support::{ClusterSpec, SimCluster};

const IMAGE: &str = "ghcr.io/sovereigncloudstack/scs-kaas-check";

fn sim(spec: ClusterSpec) -> SimCluster {
    let sim = SimCluster::start(spec);
    support::incluster::register_suite_image(&sim, IMAGE);
    sim
}

fn selection() -> Vec<String> {
    vec![
        "--check".into(),
        "node-distribution-check".into(),
        "--check".into(),
        "version-policy-check".into(),
        "--reference-date".into(),
        "2026-06-01".into(),
        "--release-data".into(),
        fixture("releases.json").display().to_string(),
        "--cve-data".into(),
        fixture("cves.json").display().to_string(),
    ]
}

fn run(sim: &SimCluster, extra: &[&str]) -> Output {
    let mut args: Vec<String> = selection();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_against(sim, &refs);
    out.assert_clean_exit();
    out
}

fn assert_nothing_left(sim: &SimCluster) {
    for resource in ["namespaces", "clusterroles", "clusterrolebindings"] {
        let left = suite_objects(sim, resource);
        assert!(left.is_empty(), "{resource} left behind: {left:?}");
    }
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
    let sim = sim(ClusterSpec::default());
    let local = run(&sim, &[]);
    let remote = run(&sim, &["--in-cluster"]);
    assert_eq!(remote.code, local.code, "stderr:\n{}", remote.stderr);
    assert_eq!(remote.verdicts(), local.verdicts());
    assert_eq!(remote.verdicts().len(), 2, "{}", remote.stderr);
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
            .contains("CVE-2099-0001")
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
    // Progress came from the pod's log, with the in-cluster verdict lines.
    assert!(
        remote
            .stderr
            .contains("[in-cluster] [node-distribution-check] started"),
        "{}",
        remote.stderr
    );
    assert!(
        remote
            .stderr
            .contains("[in-cluster] version-policy-check: ")
    );
    // The in-cluster process used its service account's token, not the kubeconfig's.
    let requests = sim.requests();
    let sa_requests: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.user.starts_with("system:serviceaccount:skc-")
                && r.user.ends_with("-runner:scs-kaas-check")
        })
        .collect();
    assert!(
        sa_requests.iter().any(|r| r.resource == "nodes"),
        "the in-cluster run did not read nodes with its service account"
    );
    assert!(
        sa_requests
            .iter()
            .any(|r| r.resource == "configmaps" && r.verb == "create"),
        "the in-cluster run did not store its results"
    );
    assert!(support::incluster::assert_runner_granted(&sim) > 5);
    assert_nothing_left(&sim);
}

fn gen_docs(extra: &[&str]) -> Vec<Value> {
    let mut args: Vec<String> = vec!["gen".into()];
    args.extend(selection());
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = scs(&refs);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
        .split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str::<Value>(d).expect("gen prints YAML"))
        .collect()
}

fn doc<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("gen printed no {kind}"))
}

#[test]
fn created_objects_equal_gen_then_status_retrieve_and_delete_clean_a_kept_run() {
    let sim = sim(ClusterSpec::default());
    let run_id = "0a1b2c3d";
    let remote = run(&sim, &["--in-cluster", "--keep", "--run-id", run_id]);
    assert!(
        remote.stderr.contains("kept namespace skc-0a1b2c3d-runner"),
        "{}",
        remote.stderr
    );
    let docs = gen_docs(&["--run-id", run_id, "--offline", "--keep"]);
    let ns = "skc-0a1b2c3d-runner";
    let name = format!("scs-kaas-check-{run_id}");
    let cr = sim
        .object("clusterroles", "", &name)
        .expect("ClusterRole kept");
    assert_eq!(cr["rules"], doc(&docs, "ClusterRole")["rules"]);
    assert_eq!(
        cr["metadata"]["labels"],
        doc(&docs, "ClusterRole")["metadata"]["labels"]
    );
    let crb = sim
        .object("clusterrolebindings", "", &name)
        .expect("ClusterRoleBinding kept");
    assert_eq!(
        crb["subjects"],
        doc(&docs, "ClusterRoleBinding")["subjects"]
    );
    assert_eq!(crb["roleRef"], doc(&docs, "ClusterRoleBinding")["roleRef"]);
    let role = sim
        .object("roles", ns, "scs-kaas-check-results")
        .expect("Role");
    assert_eq!(role["rules"], doc(&docs, "Role")["rules"]);
    let rb = sim
        .object("rolebindings", ns, "scs-kaas-check-results")
        .expect("RoleBinding");
    assert_eq!(rb["subjects"], doc(&docs, "RoleBinding")["subjects"]);
    let job = sim.object("jobs", ns, "scs-kaas-check").expect("Job");
    let gen_job = doc(&docs, "Job");
    let container = |j: &Value| j["spec"]["template"]["spec"]["containers"][0].clone();
    // The data files' paths differ only by where they are read: the gen'd args are equal.
    assert_eq!(container(&job)["args"], container(gen_job)["args"]);
    assert_eq!(container(&job)["image"], container(gen_job)["image"]);
    assert_eq!(
        job["spec"]["template"]["spec"]["serviceAccountName"],
        "scs-kaas-check"
    );
    assert!(sim.object("namespaces", "", ns).is_some());
    assert!(
        sim.object("configmaps", ns, "scs-kaas-check-data")
            .is_some()
    );
    // The ClusterRole grants what the checks used: nodes for node-distribution-check.
    assert!(cr["rules"].as_array().unwrap().iter().any(|r| {
        r["resources"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(|x| x == "nodes"))
    }));

    // status lists the run; retrieve copies its results and exits like the run.
    let kubeconfig = sim.kubeconfig_path();
    let k = kubeconfig.to_str().unwrap();
    let status = scs(&["status", "-k", k]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let line = status
        .stdout
        .lines()
        .find(|l| l.starts_with(run_id))
        .unwrap_or_else(|| panic!("run not listed:\n{}", status.stdout));
    // The run FAILed a testcase (exit code 1), so its Job failed; the results are there.
    assert!(line.contains(ns) && line.contains("Finished"), "{line}");
    assert!(
        line.contains("2 verdicts: 1 passed, 1 failed, 0 aborted"),
        "{line}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("retrieved");
    let retrieved = scs(&[
        "retrieve",
        "-k",
        k,
        "--run-id",
        run_id,
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(retrieved.code, remote.code, "{}", retrieved.stderr);
    assert_eq!(retrieved.stdout, remote.stdout);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("junit.xml")).unwrap(),
        remote.junit()
    );
    let none = scs(&["retrieve", "-k", k, "--run-id", "ffffffff"]);
    assert_eq!(none.code, 2);
    assert!(
        none.stderr.contains("no in-cluster run ffffffff"),
        "{}",
        none.stderr
    );

    // delete removes the leaked run: namespace, ClusterRole, ClusterRoleBinding.
    let deleted = scs(&["delete", "-k", k]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert!(
        deleted
            .stderr
            .contains(&format!("deleted ClusterRole {name}")),
        "{}",
        deleted.stderr
    );
    assert!(
        deleted
            .stderr
            .contains(&format!("deleted ClusterRoleBinding {name}"))
    );
    assert!(deleted.stderr.contains(&format!("deleted namespace {ns}")));
    assert_nothing_left(&sim);
}

#[test]
fn unpullable_suite_image_aborts_with_the_pods_events() {
    let image = format!("{IMAGE}:missing");
    let sim = sim(ClusterSpec {
        unpullable_images: vec![image.clone()],
        ..Default::default()
    });
    let out = run(&sim, &["--in-cluster", "--image", &image]);
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
    assert_nothing_left(&sim);
}

#[test]
fn sigint_during_an_in_cluster_run_deletes_what_it_created() {
    // The pod takes long to start: the run is interrupted while it waits for it.
    let sim = sim(ClusterSpec {
        pod_start_delay: Duration::from_secs(30),
        ..Default::default()
    });
    let kubeconfig = sim.kubeconfig_path();
    let mut args: Vec<String> = vec![
        "run".into(),
        "-k".into(),
        kubeconfig.display().to_string(),
        "--offline".into(),
        "--in-cluster".into(),
    ];
    args.extend(selection());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = interrupted(&args, "the run's objects", Duration::from_secs(20), || {
        let ready = !suite_objects(&sim, "clusterrolebindings").is_empty()
            && !sim.objects("jobs").is_empty();
        if ready {
            assert_eq!(suite_objects(&sim, "clusterroles").len(), 1);
        }
        ready
    });
    let stderr = &out.stderr;
    assert_eq!(out.code, 3, "{stderr}");
    assert!(stderr.contains("SIGINT received"), "{stderr}");
    let junit = out.junit();
    assert!(junit.contains("the run was interrupted"), "{junit}");
    assert_nothing_left(&sim);
}

#[test]
fn sonobuoy_mode_writes_the_done_file_naming_the_junit_file() {
    let sim = SimCluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("sonobuoy/results");
    let kubeconfig = sim.kubeconfig_path();
    let out = scs_with(
        &[
            "run",
            "-k",
            kubeconfig.to_str().unwrap(),
            "--check",
            "node-distribution-check",
        ],
        |cmd| {
            cmd.env("SONOBUOY_RESULTS_DIR", &results);
        },
    );
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

/// `run --in-cluster` with `--kubeconfig` `kubeconfig` and `args` (offline).
fn run_with(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let mut all = vec![
        "run",
        "-k",
        kubeconfig.to_str().expect("utf-8 path"),
        "--offline",
        "--in-cluster",
    ];
    all.extend_from_slice(args);
    let out = scs(&all);
    out.assert_clean_exit();
    out
}

/// A load balancer in front of the API server cuts the followed log of the runner while
/// the run inside is silent (its pods take 2.5 s to start; the proxy closes connections
/// idle for 1 s): the outer process resumes following, shows every line once, and learns
/// the end of the run from the pod's status.
#[test]
fn a_cut_log_stream_is_resumed_and_every_line_shown_once() {
    let sim = sim(ClusterSpec {
        pod_start_delay: Duration::from_millis(2500),
        ..Default::default()
    });
    let proxy = support::idle_proxy::IdleProxy::start(&sim, Duration::from_secs(1));
    let out = run_with(
        &proxy.kubeconfig(&sim),
        &[
            "--check",
            "node-anti-affinity-check",
            "--pod-start-timeout",
            "30s",
        ],
    );
    assert!(proxy.cuts() >= 1, "the proxy cut nothing:\n{}", out.stderr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.verdict("node-anti-affinity-check").as_deref(),
        Some("PASS")
    );
    assert!(
        out.stderr
            .contains("following resumes from the last line seen"),
        "{}",
        out.stderr
    );
    // Lines written after the cut arrive, each once.
    for line in [
        "[in-cluster] [node-anti-affinity-check] started",
        "[in-cluster] node-anti-affinity-check: PASS",
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
        runner_log.contains("node-anti-affinity-check: PASS"),
        "{runner_log}"
    );
    // The check's rights (its Deployment created and watched for `ReplicaFailure`) cover
    // every call it made.
    assert!(support::incluster::assert_runner_granted(&sim) > 5);
    assert_nothing_left(&sim);
}

/// The kubelet retries a pull that a registry answered with 429 (ErrImagePull, then
/// ImagePullBackOff): the run waits and goes on once the image is pulled.
#[test]
fn a_rate_limited_image_pull_is_waited_out() {
    let image = format!("{IMAGE}:rate-limited");
    let sim = sim(ClusterSpec {
        flaky_images: vec![(image.clone(), 2)],
        ..Default::default()
    });
    let out = run(&sim, &["--in-cluster", "--image", &image, "--keep"]);
    assert_eq!(out.verdicts().len(), 2, "{}", out.stderr);
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
    assert_nothing_left(&sim);
}

/// The in-cluster run's results exceed a ConfigMap's 1 MiB (the simulator answers 422 like
/// the API server): the conformance run's 6600-testcase JUnit inside them comes back
/// whole, and `status` says the results are complete.
#[test]
fn in_cluster_results_over_one_mebibyte_come_back_complete() {
    let fixture = tempfile::tempdir().expect("temp dir");
    support::conformance::realistic_fixture(fixture.path(), 400, 6600);
    let sim = sim(ClusterSpec::default());
    support::conformance::register_dir(&sim, fixture.path().to_path_buf(), Duration::ZERO);
    let kubeconfig = sim.kubeconfig_path();
    let out = run_with(
        &kubeconfig,
        &[
            "--check",
            "cncf-k8s-conformance",
            "--image",
            IMAGE,
            "--conformance-image",
            "registry.k8s.io/conformance:v1.31.2",
            "--keep",
            "--run-id",
            "0b1c2d3e",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdict("cncf-k8s-conformance").as_deref(), Some("PASS"));
    let junit = out.junit();
    assert!(junit.len() > 1024 * 1024, "{}", junit.len());
    // Our requirement and the 6600 upstream testcases.
    assert_eq!(junit.matches("<testcase ").count(), 1 + 6600);
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    let original = std::fs::read_to_string(fixture.path().join("junit_01.xml")).unwrap();
    assert!(out.file("cncf-k8s-conformance/junit_01.xml") == original);
    assert!(support::incluster::assert_runner_granted(&sim) > 5);
    let line = status_line(&sim, "0b1c2d3e");
    assert!(line.contains("complete: 1 verdicts: 1 passed"), "{line}");
    // A part lost afterwards: status and retrieve say the results are incomplete.
    let ns = "skc-0b1c2d3e-runner";
    sim.with_store(|s| s.delete("configmaps", ns, "scs-kaas-check-results-part-1"))
        .expect("a part ConfigMap");
    let line = status_line(&sim, "0b1c2d3e");
    assert!(line.contains("INCOMPLETE: part 1 of"), "{line}");
    let retrieved = against(&sim, "retrieve", &["--run-id", "0b1c2d3e"]);
    assert_eq!(retrieved.code, 3, "{}", retrieved.stderr);
    assert!(
        retrieved.stderr.contains(
            "the results of run 0b1c2d3e (skc-0b1c2d3e-runner) are incomplete: part 1 of"
        ),
        "{}",
        retrieved.stderr
    );
    assert!(
        retrieved.stderr.contains("1 verdicts: 1 passed"),
        "{}",
        retrieved.stderr
    );
    let deleted = against(&sim, "delete", &[]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_nothing_left(&sim);
}

/// Results that cannot be stored are never lost silently: the run inside fails and says
/// why, the outer process ABORTs with that reason, `status` says there are none, and
/// `retrieve` fetches the runner's log.
#[test]
fn results_that_cannot_be_stored_fail_loudly_and_retrieve_fetches_the_log() {
    let sim = sim(ClusterSpec {
        deny: vec![("create".into(), "configmaps".into())],
        ..Default::default()
    });
    let kubeconfig = sim.kubeconfig_path();
    let k = kubeconfig.to_str().unwrap();
    let out = run_with(
        &kubeconfig,
        &[
            "--check",
            "node-distribution-check",
            "--keep",
            "--run-id",
            "0c1d2e3f",
        ],
    );
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
        message.contains("CRITICAL: cannot store the results: store configmap scs-kaas-check-results-part-1: 403 Forbidden"),
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
    let line = status_line(&sim, "0c1d2e3f");
    assert!(line.contains("Failed"), "{line}");
    assert!(
        line.contains("none: the run ended without storing results"),
        "{line}"
    );
    let dir = tempfile::tempdir().unwrap();
    let retrieved = scs(&[
        "retrieve",
        "-k",
        k,
        "--run-id",
        "0c1d2e3f",
        "--output-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(retrieved.code, 3, "{}", retrieved.stderr);
    assert!(
        retrieved
            .stderr
            .lines()
            .any(|l| l.starts_with("CRITICAL: run 0c1d2e3f")
                && l.contains("ended without storing results")),
        "{}",
        retrieved.stderr
    );
    let log = std::fs::read_to_string(dir.path().join("logs/in-cluster-runner.log"))
        .unwrap_or_else(|e| panic!("runner log not fetched: {e}\n{}", retrieved.stderr));
    assert!(log.contains("cannot store the results"), "{log}");
    assert_eq!(against(&sim, "delete", &[]).code, 0);
    assert_nothing_left(&sim);
}

/// A large cluster's report (5000 nodes, each a row of node-distribution-check's evidence)
/// is more than a ConfigMap holds: it comes back whole (issue 18's case).
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
    let sim = sim(ClusterSpec {
        nodes,
        ..Default::default()
    });
    let local = run(&sim, &["--check", "node-distribution-check"]);
    let remote = run(
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
    assert_nothing_left(&sim);
}
