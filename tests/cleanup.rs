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
    let out = against(&sim, "delete", &["--run-id", "deadbeef"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(suite_objects(&sim, "namespaces"), ["skc-cafebabe-leak"]);
}

/// A leftover run namespace holding a claim bound to a PersistentVolume (reclaim policy
/// Retain), as a storage check leaves them when it is killed.
fn leak_bound_volume(sim: &SimCluster, run: &str) -> (String, String) {
    let ns = format!("skc-{run}-default-storage-class");
    leak_namespace(
        sim,
        &ns,
        &[
            ("app.kubernetes.io/managed-by", "scs-kaas-check"),
            ("scs-kaas-check/run-id", run),
        ],
    );
    let pv = format!("pvc-{run}");
    sim.with_store(|s| {
        let claim = s
            .create(
                "persistentvolumeclaims",
                serde_json::json!({
                    "metadata": {"name": "data", "namespace": ns},
                    "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": pv,
                             "resources": {"requests": {"storage": "1Gi"}}},
                    "status": {"phase": "Bound"},
                }),
            )
            .expect("claim");
        s.create(
            "persistentvolumes",
            serde_json::json!({
                "metadata": {"name": pv},
                "spec": {
                    "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "csi": {"driver": "cinder.csi.openstack.org", "volumeHandle": "vol-1"},
                    "claimRef": {"kind": "PersistentVolumeClaim", "namespace": ns, "name": "data",
                                 "uid": claim["metadata"]["uid"]},
                },
                "status": {"phase": "Bound"},
            }),
        )
        .expect("volume");
    });
    (ns, pv)
}

/// `delete` meets a run namespace that is already terminating: the API server answers
/// 409; that is "already going", so `delete` waits for it and removes the volume only once
/// its claim is gone.
#[test]
fn a_terminating_namespace_is_waited_for_and_its_volume_deleted_only_once_released() {
    let sim = SimCluster::start(ClusterSpec::default());
    let (ns, pv) = leak_bound_volume(&sim, "0d0e0f10");
    let started = std::time::Instant::now();
    sim.terminate_namespace(&ns, Duration::from_secs(3));
    let out = against(&sim, "delete", &["--run-id", "0d0e0f10"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stderr.contains("WARNING") && !out.stderr.contains("CAUTION"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "namespace {ns} was already being deleted; it is gone now"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "deleted PersistentVolume {pv} (reclaim policy Retain"
        )),
        "{}",
        out.stderr
    );
    let deleted_at = sim
        .requests()
        .iter()
        .find(|r| r.resource == "persistentvolumes" && r.verb == "delete")
        .map(|r| r.at)
        .expect("the volume was deleted");
    assert!(
        deleted_at.duration_since(started) >= Duration::from_secs(3),
        "the volume was deleted while its claim was bound"
    );
    assert!(sim.objects("persistentvolumes").is_empty());
    assert!(suite_objects(&sim, "namespaces").is_empty());
}

/// A volume whose claim still exists (here its namespace cannot be deleted) is never
/// deleted; `delete` says so.
#[test]
fn a_bound_volume_is_never_deleted() {
    let sim = SimCluster::start(ClusterSpec {
        deny: vec![("delete".into(), "namespaces".into())],
        ..Default::default()
    });
    let (ns, pv) = leak_bound_volume(&sim, "0e0f1011");
    let out = against(&sim, "delete", &["--run-id", "0e0f1011"]);
    assert!(
        out.stderr.contains(&format!(
            "CAUTION: PersistentVolume {pv} is still bound to claim {ns}/data; not deleted"
        )),
        "{}",
        out.stderr
    );
    assert!(sim.object("persistentvolumes", "", &pv).is_some());
}
