//! Nothing the suite creates survives: per-check timeouts, SIGINT, `--keep`, `delete`.
//!
//! On the real control plane (`testbed/`, scenario `three-zones`, one test bed shared by
//! this binary; each test works in a run of its own and asserts on that run; `delete` of
//! every run on a `single-node` test bed of its own): runs
//! authenticate as a ServiceAccount bound to exactly the ClusterRole `gen` prints for
//! their selection; `delete` and the set-up of leftovers use the admin credential. Pods
//! that never run are pods a MutatingAdmissionPolicy holds with a scheduling gate; a
//! namespace that stays terminating is one whose ConfigMap carries a finalizer; a
//! namespace that cannot be deleted is one a ValidatingAdmissionPolicy protects. Every test
//! ends with `TestBed::assert_run_left_nothing` (an admin listing of every labelled object of
//! every resource, cluster-scoped ones included).

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use std::time::{Duration, Instant};
use support::binary::{Output, against, interrupted_at_lines, scs};
use support::testbed::{Probe, TestBed, holding_policy, new_run_id, refusing_policy};

const CHECK: &str = "node-anti-affinity-check";

fn bed() -> &'static TestBed {
    TestBed::shared("three-zones")
}

/// The labels of run `run_id`'s objects.
fn run_labels(run_id: &str) -> serde_json::Value {
    serde_json::json!({
        "app.kubernetes.io/managed-by": "scs-kaas-check",
        "scs-kaas-check/run-id": run_id,
    })
}

/// Pods created in the namespaces of run `run_id` never run (a scheduling gate holds them
/// Pending) while the returned guard lives.
fn hold_pods<'a>(tb: &'a TestBed, run_id: &str) -> support::testbed::Applied<'a> {
    tb.apply_policy(
        &holding_policy(&format!("hold-{run_id}"), run_id),
        run_id,
        Probe::HoldsPods,
    )
}

/// The arguments of `run -k <kubeconfig> --offline --check node-anti-affinity-check` in run
/// `run_id`, `kubeconfig` being that of a ServiceAccount bound to the ClusterRole `gen`
/// prints for it; then `extra`.
fn run_args(tb: &TestBed, run_id: &str, extra: &[&str]) -> Vec<String> {
    let selection = ["--check", CHECK, "--run-id", run_id];
    let kubeconfig = tb.gen_kubeconfig(&selection);
    [
        "run",
        "-k",
        kubeconfig.to_str().expect("utf-8 path"),
        "--offline",
    ]
    .into_iter()
    .chain(selection)
    .chain(extra.iter().copied())
    .map(String::from)
    .collect()
}

fn run(tb: &TestBed, run_id: &str, extra: &[&str]) -> Output {
    let args = run_args(tb, run_id, extra);
    let out = scs(&args.iter().map(String::as_str).collect::<Vec<_>>());
    out.assert_clean_exit();
    out
}

/// A namespace that exists before `delete` (a leaked run's, or another tool's).
fn leak_namespace(tb: &TestBed, name: &str, labels: serde_json::Value) {
    let api: Api<Namespace> = Api::all(tb.client());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": labels}}))
            .expect("namespace");
    tb.block_on(api.create(&PostParams::default(), &ns))
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

#[test]
fn sigint_during_a_run_deletes_the_scratch_namespace() {
    let tb = bed();
    let run_id = new_run_id();
    let _hold = hold_pods(tb, &run_id);
    let args = run_args(tb, &run_id, &[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    // Interrupt once the check has created its namespace and deployment.
    let out = interrupted_at_lines(
        &refs,
        &[&format!(
            "[{CHECK}] deployment anti-affinity with 3 replicas created"
        )],
        Duration::from_secs(60),
    );
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert_eq!(out.code, 3, "{stdout}\n{stderr}");
    assert_eq!(stdout, &format!("{CHECK}: ABORT\n"));
    assert!(stderr.contains("SIGINT received"), "{stderr}");
    let message = out.junit_message(&format!("{CHECK}/hostname-anti-affinity"));
    assert!(
        message.starts_with("not decided: the run was interrupted; last step: "),
        "{message}"
    );
    tb.assert_run_left_nothing(&run_id);
}

#[test]
fn check_timeout_aborts_and_cleans_up() {
    let tb = bed();
    let run_id = new_run_id();
    let _hold = hold_pods(tb, &run_id);
    let out = run(tb, &run_id, &["--timeout", "3s"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout, format!("{CHECK}: ABORT\n"));
    // Nothing was decided: each requirement is ABORT with the reason and the last step.
    for id in ["hostname-anti-affinity", "zone-spread"] {
        let message = out.junit_message(&format!("{CHECK}/{id}"));
        assert!(
            message.starts_with(
                "not decided: the check did not finish within 3s (--timeout); last step: \
                 deployment "
            ),
            "{message}"
        );
    }
    let log = out.file(&format!("logs/{CHECK}.log"));
    assert!(
        log.contains(&format!("deleted namespace skc-{run_id}-")),
        "{log}"
    );
    tb.assert_run_left_nothing(&run_id);
}

#[test]
fn keep_leaves_objects_and_says_so_then_delete_removes_them() {
    let tb = bed();
    let run_id = new_run_id();
    let out = run(tb, &run_id, &["--keep"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, format!("{CHECK}: PASS\n"), "{}", out.stderr);
    let kept = tb.run_namespaces(&run_id);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        out.stderr.contains(&format!("kept namespace {}", kept[0])),
        "{}",
        out.stderr
    );

    // An object the suite did not create stays untouched by `delete`, even with the run's
    // id on it.
    let foreign = format!("someone-elses-{run_id}");
    leak_namespace(
        tb,
        &foreign,
        serde_json::json!({"app.kubernetes.io/managed-by": "helm", "scs-kaas-check/run-id": run_id}),
    );
    let out = against(tb, "delete", &["--run-id", &run_id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("deleted namespace {}", kept[0])),
        "{}",
        out.stderr
    );
    // Nothing of the suite's is left (the foreign namespace carries the run id too).
    let left = tb.labelled_objects(&format!(
        "app.kubernetes.io/managed-by=scs-kaas-check,scs-kaas-check/run-id={run_id}"
    ));
    assert!(left.is_empty(), "run {run_id} left behind: {left:#?}");
    let namespaces: Api<Namespace> = Api::all(tb.client());
    let still = tb
        .block_on(namespaces.get(&foreign))
        .unwrap_or_else(|e| panic!("{foreign} was deleted: {e}"));
    assert!(still.metadata.deletion_timestamp.is_none(), "{foreign}");
    tb.block_on(namespaces.delete(&foreign, &DeleteParams::default()))
        .expect("delete the foreign namespace");
}

#[test]
fn delete_by_run_id_touches_only_that_run() {
    let tb = bed();
    let (gone, stays) = (new_run_id(), new_run_id());
    for run in [&gone, &stays] {
        leak_namespace(tb, &format!("skc-{run}-leak"), run_labels(run));
    }
    let out = against(tb, "delete", &["--run-id", &gone]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    tb.assert_run_left_nothing(&gone);
    assert_eq!(tb.run_namespaces(&stays), [format!("skc-{stays}-leak")]);
    assert_eq!(against(tb, "delete", &["--run-id", &stays]).code, 0);
    tb.assert_run_left_nothing(&stays);
}

/// A leftover run namespace holding a claim bound to a PersistentVolume (reclaim policy
/// Retain), as a storage check leaves them when it is killed: the real PV controller binds
/// them. Returns the namespace and the volume.
fn leak_bound_volume(tb: &TestBed, run_id: &str) -> (String, String) {
    let ns = format!("skc-{run_id}-default-storage-class");
    leak_namespace(tb, &ns, run_labels(run_id));
    let pv = format!("pvc-{run_id}");
    let volumes: Api<PersistentVolume> = Api::all(tb.client());
    let volume: PersistentVolume = serde_json::from_value(serde_json::json!({
        "metadata": {"name": pv},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
            "csi": {"driver": "csi.testbed.scs.community", "volumeHandle": format!("vol-{run_id}")},
            "claimRef": {"namespace": ns, "name": "data"},
        },
    }))
    .expect("volume");
    tb.block_on(volumes.create(&PostParams::default(), &volume))
        .expect("create the volume");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(tb.client(), &ns);
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": pv, "storageClassName": "",
                 "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .expect("claim");
    tb.block_on(claims.create(&PostParams::default(), &claim))
        .expect("create the claim");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let phase = tb
            .block_on(claims.get("data"))
            .expect("the claim")
            .status
            .and_then(|s| s.phase);
        if phase.as_deref() == Some("Bound") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "claim {ns}/data not bound: {phase:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (ns, pv)
}

/// `delete` meets a run namespace that is already terminating (a ConfigMap's finalizer
/// holds it for 3 s): the API server answers the delete with the namespace (v1.37; older
/// releases answered 409); that is "already going", so `delete` waits for it and removes
/// the volume only once its claim is gone.
#[test]
fn a_terminating_namespace_is_waited_for_and_its_volume_deleted_only_once_released() {
    let tb = bed();
    let run_id = new_run_id();
    let (ns, pv) = leak_bound_volume(tb, &run_id);
    let configmaps: Api<ConfigMap> = Api::namespaced(tb.client(), &ns);
    let held: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "held", "finalizers": ["test.scs.community/hold"]}
    }))
    .expect("configmap");
    tb.block_on(configmaps.create(&PostParams::default(), &held))
        .expect("create the held ConfigMap");
    let namespaces: Api<Namespace> = Api::all(tb.client());
    tb.block_on(namespaces.delete(&ns, &DeleteParams::default()))
        .expect("delete the namespace");
    let volumes: Api<PersistentVolume> = Api::all(tb.client());
    let out = std::thread::scope(|s| {
        let release = s.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            // While the namespace terminates, the volume stays.
            let volume = tb
                .block_on(volumes.get_opt(&pv))
                .expect("get the volume")
                .unwrap_or_else(|| panic!("{pv} deleted while its namespace terminates"));
            assert!(volume.metadata.deletion_timestamp.is_none(), "{pv}");
            let patch = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
            tb.block_on(configmaps.patch("held", &PatchParams::default(), &patch))
                .expect("remove the finalizer");
        });
        let out = against(tb, "delete", &["--run-id", &run_id]);
        release.join().expect("release thread");
        out
    });
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
    tb.assert_run_left_nothing(&run_id);
}

/// A volume whose claim still exists (its namespace cannot be deleted: a site's admission
/// policy protects it) is never deleted; `delete` says so.
#[test]
fn a_bound_volume_is_never_deleted() {
    let tb = bed();
    let run_id = new_run_id();
    let (ns, pv) = leak_bound_volume(tb, &run_id);
    let policy = tb.apply_policy(
        &refusing_policy(
            &format!("keep-namespaces-{run_id}"),
            &run_id,
            "DELETE",
            "namespaces",
            "true",
            "namespaces of this run stay (site policy)",
        ),
        &run_id,
        Probe::RefusesNamespaceDeletion,
    );
    let out = against(tb, "delete", &["--run-id", &run_id]);
    assert!(
        out.stderr.contains(&format!(
            "CAUTION: PersistentVolume {pv} is still bound to claim {ns}/data; not deleted"
        )),
        "{}",
        out.stderr
    );
    let volumes: Api<PersistentVolume> = Api::all(tb.client());
    assert!(tb.block_on(volumes.get_opt(&pv)).expect("get").is_some());
    drop(policy);
    // Without the policy the next `delete` removes both.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = against(tb, "delete", &["--run-id", &run_id]);
        if !out.stderr.contains("CAUTION") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", out.stderr);
        std::thread::sleep(Duration::from_millis(500));
    }
    tb.assert_run_left_nothing(&run_id);
}

/// `delete` without a run id removes what every run left, and nothing the suite did not
/// create. On a test bed of its own (`delete` of every run would disturb the runs of the
/// other tests on the shared one).
#[test]
fn delete_without_a_run_id_removes_every_run_and_nothing_else() {
    let tb = TestBed::start("single-node");
    let runs = [new_run_id(), new_run_id()];
    for run in &runs {
        leak_namespace(&tb, &format!("skc-{run}-leak"), run_labels(run));
    }
    // An object the suite did not create stays untouched, even with a run id on it.
    leak_namespace(
        &tb,
        "someone-elses",
        serde_json::json!({"app.kubernetes.io/managed-by": "helm", "scs-kaas-check/run-id": runs[0]}),
    );
    let out = against(&tb, "delete", &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for run in &runs {
        assert!(
            out.stderr
                .contains(&format!("deleted namespace skc-{run}-leak")),
            "{}",
            out.stderr
        );
    }
    tb.assert_no_run_left();
    let namespaces: Api<Namespace> = Api::all(tb.client());
    let foreign = tb
        .block_on(namespaces.get("someone-elses"))
        .expect("someone-elses was deleted");
    assert!(foreign.metadata.deletion_timestamp.is_none());
    let leftovers = tb.stop();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
