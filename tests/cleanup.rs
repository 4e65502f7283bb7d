//! Nothing the suite creates survives: per-check timeouts, SIGINT, `--keep`, `delete`.

mod support;

use std::time::Duration;
use support::binary::*;
use support::{ClusterSpec, SimCluster};

fn slow_cluster() -> SimCluster {
    // Pods never become Running during a test: the check waits until stopped.
    SimCluster::start(ClusterSpec {
        pod_start_delay: Duration::from_secs(600),
        ..Default::default()
    })
}

/// A namespace that exists before the run (another tool's, or a leaked run's).
fn leak_namespace(sim: &SimCluster, name: &str, labels: &[(&str, &str)]) {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    sim.with_store(|store| {
        store
            .create(
                "namespaces",
                serde_json::json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels}
                }),
            )
            .expect("namespace created");
    });
}

#[test]
fn sigint_during_a_run_deletes_the_scratch_namespace() {
    let sim = slow_cluster();
    let kubeconfig = sim.kubeconfig_path();
    let args = [
        "run",
        "-k",
        kubeconfig.to_str().unwrap(),
        "--offline",
        "--check",
        "node-anti-affinity-check",
    ];
    // Interrupt once the check has created its namespace and deployment.
    let out = interrupted(&args, "the deployment", Duration::from_secs(30), || {
        let ready = !sim.objects("deployments").is_empty();
        if ready {
            assert_eq!(suite_objects(&sim, "namespaces").len(), 1);
        }
        ready
    });
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert_eq!(out.code, 3, "{stdout}\n{stderr}");
    assert_eq!(stdout, "node-anti-affinity-check: ABORT\n");
    assert!(stderr.contains("SIGINT received"), "{stderr}");
    assert!(
        suite_objects(&sim, "namespaces").is_empty(),
        "left behind: {:?}",
        suite_objects(&sim, "namespaces")
    );
    assert!(sim.objects("pods").is_empty() && sim.objects("deployments").is_empty());
    let message = out.junit_message("node-anti-affinity-check/hostname-anti-affinity");
    assert!(
        message.starts_with("not decided: the run was interrupted; last step: "),
        "{message}"
    );
}

#[test]
fn check_timeout_aborts_and_cleans_up() {
    let sim = slow_cluster();
    let out = run_against(
        &sim,
        &["--check", "node-anti-affinity-check", "--timeout", "3s"],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout, "node-anti-affinity-check: ABORT\n");
    // Nothing was decided: each requirement is ABORT with the reason and the last step.
    for id in ["hostname-anti-affinity", "zone-spread"] {
        let message = out.junit_message(&format!("node-anti-affinity-check/{id}"));
        assert!(
            message.starts_with(
                "not decided: the check did not finish within 3s (--timeout); last step: \
                 deployment "
            ),
            "{message}"
        );
    }
    assert!(suite_objects(&sim, "namespaces").is_empty());
    let log = out.file("logs/node-anti-affinity-check.log");
    assert!(log.contains("deleted namespace skc-"), "{log}");
}

#[test]
fn keep_leaves_objects_and_says_so_then_delete_removes_them() {
    let sim = SimCluster::start(ClusterSpec::default());
    let out = run_against(&sim, &["--check", "node-anti-affinity-check", "--keep"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let kept = suite_objects(&sim, "namespaces");
    assert_eq!(kept.len(), 1);
    assert!(
        out.stderr.contains(&format!("kept namespace {}", kept[0])),
        "{}",
        out.stderr
    );

    // An object the suite did not create stays untouched by `delete`.
    leak_namespace(
        &sim,
        "someone-elses",
        &[("app.kubernetes.io/managed-by", "helm")],
    );
    let kubeconfig = sim.kubeconfig_path();
    let out = scs(&["delete", "-k", kubeconfig.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("deleted namespace {}", kept[0])),
        "{}",
        out.stderr
    );
    assert!(suite_objects(&sim, "namespaces").is_empty());
    assert!(
        sim.objects("namespaces")
            .iter()
            .any(|ns| ns["metadata"]["name"] == "someone-elses")
    );
}

#[test]
fn delete_by_run_id_touches_only_that_run() {
    let sim = SimCluster::start(ClusterSpec::default());
    for (name, run) in [
        ("skc-deadbeef-leak", "deadbeef"),
        ("skc-cafebabe-leak", "cafebabe"),
    ] {
        leak_namespace(
            &sim,
            name,
            &[
                ("app.kubernetes.io/managed-by", "scs-kaas-check"),
                ("scs-kaas-check/run-id", run),
            ],
        );
    }
    let kubeconfig = sim.kubeconfig_path();
    let out = scs(&[
        "delete",
        "-k",
        kubeconfig.to_str().unwrap(),
        "--run-id",
        "deadbeef",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(suite_objects(&sim, "namespaces"), ["skc-cafebabe-leak"]);
}
