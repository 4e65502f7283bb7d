//! default-storage-class-check against simulated clusters with emulated provisioners
//! (CSI, local-path, broken, none), volumes that keep or lose data, and a busybox-like
//! shell image.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::binary::*;
use support::storage::{ProvisionerSpec, storage_class};
use support::{ClusterSpec, SimCluster};

const TC: &str = "default-storage-class-check";
const CINDER: &str = "cinder.csi.openstack.org";

fn sim(classes: Vec<Value>, provisioners: Vec<ProvisionerSpec>) -> SimCluster {
    sim_with(classes, provisioners, |_| {})
}

fn sim_with(
    classes: Vec<Value>,
    provisioners: Vec<ProvisionerSpec>,
    adjust: impl FnOnce(&mut ClusterSpec),
) -> SimCluster {
    let mut spec = ClusterSpec {
        storage_classes: classes,
        provisioners,
        ..Default::default()
    };
    adjust(&mut spec);
    let sim = SimCluster::start(spec);
    sim.register_shell_image("docker.io/library/busybox");
    sim
}

fn run(sim: &SimCluster, extra: &[&str]) -> Output {
    let mut args = vec!["--check", TC];
    args.extend_from_slice(extra);
    let out = run_against(sim, &args);
    out.assert_clean_exit();
    out
}

fn req(id: &str) -> String {
    format!("{TC}/{id}")
}

/// Nothing of the run is left: no labelled namespace, no claim, no pod, no volume.
fn assert_clean(sim: &SimCluster) {
    let namespaces = suite_objects(sim, "namespaces");
    assert!(namespaces.is_empty(), "left behind: {namespaces:?}");
    assert!(sim.objects("persistentvolumeclaims").is_empty());
    assert!(sim.objects("pods").is_empty());
    let pvs = sim.objects("persistentvolumes");
    assert!(pvs.is_empty(), "PVs left behind: {pvs:?}");
}

fn csi_default() -> Value {
    storage_class("standard", CINDER)
        .default_class()
        .expandable()
        .build()
}

#[test]
fn compliant_csi_immediate_passes_and_cleans_up() {
    let sim = sim(
        vec![
            csi_default(),
            storage_class("fast", "other.csi.example.com").build(),
        ],
        vec![ProvisionerSpec::csi(CINDER)],
    );
    let out = run(&sim, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("PASS"));
    let one = out.junit_out(&req("exactly-one-default"));
    assert!(
        one.contains(
            "standard is the only default StorageClass (provisioner cinder.csi.openstack.org)"
        ),
        "{one}"
    );
    // Classes without annotations are listed, not a crash.
    assert!(
        one.contains("fast: provisioner other.csi.example.com"),
        "{one}"
    );
    assert!(
        out.junit_out(&req("real-provisioner"))
            .contains("uses provisioner cinder.csi.openstack.org")
    );
    let binding = out.junit_out(&req("rwo-binding"));
    assert!(
        binding.contains("without storageClassName was bound to PV pvc-")
            && binding.contains(
                "of the default class standard (ReadWriteOnce, 1Gi, binding mode Immediate)"
            ),
        "{binding}"
    );
    let local = out.junit_out(&req("not-local"));
    assert!(
        local.contains("(CSI driver cinder.csi.openstack.org) is neither local nor hostPath storage and not pinned to a node"),
        "{local}"
    );
    let data = out.junit_out(&req("data-persistence"));
    assert!(
        data.contains("the token pod writer wrote on node worker-")
            && data.contains(
                "was read back after its deletion by pod reader on another node, worker-"
            ),
        "{data}"
    );
    assert!(
        out.junit_out(&req("volume-expansion"))
            .contains("default StorageClass standard allows volume expansion")
    );
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    let log = out.file(&format!("logs/{TC}.log"));
    // Reclaim policy Delete: the provisioner removed the PV with its claim.
    assert!(
        log.contains("PersistentVolume pvc-")
            && (log.contains("was already gone")
                || log.contains("was deleted by its provisioner (reclaim policy Delete)")),
        "{log}"
    );
    assert_clean(&sim);
    // The claim had no storageClassName; the pods were restricted, with fsGroup.
    let posts: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert!(
        posts
            .iter()
            .any(|r| r.path.ends_with("/persistentvolumeclaims"))
    );
    assert!(posts.iter().filter(|r| r.path.ends_with("/pods")).count() == 2);
}

#[test]
fn compliant_csi_wait_for_first_consumer_passes() {
    let sim = sim(
        vec![
            storage_class("csi-wffc", CINDER)
                .beta_default_class()
                .wait_for_first_consumer()
                .build(),
        ],
        vec![ProvisionerSpec::csi(CINDER).zonal()],
    );
    let out = run(&sim, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("PASS"));
    assert!(
        out.junit_out(&req("exactly-one-default"))
            .contains("default (storageclass.beta.kubernetes.io/is-default-class)")
    );
    let binding = out.junit_out(&req("rwo-binding"));
    assert!(
        binding.contains("binding mode WaitForFirstConsumer"),
        "{binding}"
    );
    // Zonal affinity is not node-local.
    assert!(
        out.junit_out(&req("not-local"))
            .contains("is neither local nor hostPath storage")
    );
    // Expansion not allowed is information, not a failure.
    let expansion = out.junit_out(&req("volume-expansion"));
    assert!(
        expansion.contains("does not allow volume expansion"),
        "{expansion}"
    );
    assert_clean(&sim);
}

#[test]
fn no_default_class_fails() {
    let sim = sim(
        vec![
            storage_class("a", CINDER).build(),
            storage_class("b", "rancher.io/local-path").build(),
        ],
        vec![ProvisionerSpec::csi(CINDER)],
    );
    let out = run(&sim, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("FAIL"));
    assert_eq!(
        out.junit_message(&req("exactly-one-default")),
        "no default StorageClass among 2 class(es): a (cinder.csi.openstack.org), \
         b (rancher.io/local-path); annotate one with \
         storageclass.kubernetes.io/is-default-class: \"true\""
    );
    for id in [
        "real-provisioner",
        "not-local",
        "rwo-binding",
        "data-persistence",
        "volume-expansion",
    ] {
        assert_eq!(
            out.junit_message(&req(id)),
            "not attempted: there is no default StorageClass"
        );
        assert_eq!(out.junit_kind(&req(id)), "skipped NOT-ATTEMPTED");
        assert_eq!(out.report_requirement(&req(id)).0, "not-attempted");
    }
    assert_clean(&sim);
}

#[test]
fn annotation_value_the_api_server_ignores_is_named() {
    // "True" is not "true": the DefaultStorageClass admission plugin ignores the class.
    let sim = sim(
        vec![
            storage_class("standard", CINDER)
                .annotation("storageclass.kubernetes.io/is-default-class", "True")
                .build(),
        ],
        vec![ProvisionerSpec::csi(CINDER)],
    );
    let out = run(&sim, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let ignored = "StorageClass standard is annotated \
                   storageclass.kubernetes.io/is-default-class: \"True\", which the API server \
                   ignores (only the exact value \"true\" marks a default class)";
    assert_eq!(
        out.junit_message(&req("exactly-one-default")),
        format!(
            "no default StorageClass among 1 class(es): standard (cinder.csi.openstack.org); \
             annotate one with storageclass.kubernetes.io/is-default-class: \"true\"; {ignored}"
        )
    );
    assert_eq!(out.report_warnings(TC), [ignored]);
    assert!(
        out.junit().contains(&format!("WARNING [{TC}] {ignored}")),
        "{}",
        out.junit()
    );
    assert_clean(&sim);
}

#[test]
fn two_defaults_fail_and_are_both_named() {
    // Seeded in the same second: the API server breaks the tie by name.
    let sim = sim(
        vec![
            csi_default(),
            storage_class("legacy", "cinder.csi.openstack.org")
                .beta_default_class()
                .build(),
        ],
        vec![ProvisionerSpec::csi(CINDER)],
    );
    let out = run(&sim, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let message = out.junit_message(&req("exactly-one-default"));
    assert!(
        message.starts_with(
            "2 StorageClasses are annotated as default: legacy (cinder.csi.openstack.org), \
             standard (cinder.csi.openstack.org); exactly one must be; a claim without \
             storageClassName gets legacy (the API server picks the newest default: created "
        ) && message.ends_with(", ties by name)"),
        "{message}"
    );
    assert_eq!(
        out.junit_message(&req("rwo-binding")),
        "not attempted: 2 StorageClasses are annotated as default"
    );
    assert_clean(&sim);
}

#[test]
fn of_several_defaults_the_newest_is_named() {
    let sim = sim(
        vec![
            storage_class("old", CINDER)
                .default_class()
                .created("2025-01-10T08:00:00Z")
                .build(),
            storage_class("new", CINDER)
                .default_class()
                .created("2026-02-01T09:30:00Z")
                .build(),
        ],
        vec![ProvisionerSpec::csi(CINDER)],
    );
    let out = run(&sim, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.junit_message(&req("exactly-one-default")),
        "2 StorageClasses are annotated as default: new (cinder.csi.openstack.org), old \
         (cinder.csi.openstack.org); exactly one must be; a claim without storageClassName \
         gets new (the API server picks the newest default: created 2026-02-01T09:30:00Z, ties \
         by name)"
    );
    assert_clean(&sim);
}

#[test]
fn no_provisioner_default_fails_in_seconds_without_a_claim() {
    let sim = sim(
        vec![
            storage_class("manual", "kubernetes.io/no-provisioner")
                .default_class()
                .build(),
        ],
        vec![],
    );
    // The defaults: --pvc-bind-timeout 5m.
    let started = std::time::Instant::now();
    let out = run(&sim, &[]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stdout, format!("{TC}: FAIL\n"));
    assert_eq!(
        out.junit_message(&req("real-provisioner")),
        "default StorageClass manual uses kubernetes.io/no-provisioner: no volume is ever \
         provisioned for a claim, an administrator must create each PV by hand"
    );
    for id in ["not-local", "rwo-binding", "data-persistence"] {
        assert_eq!(
            out.junit_message(&req(id)),
            "not attempted: default StorageClass manual uses kubernetes.io/no-provisioner, so \
             no volume is provisioned for a claim (see real-provisioner)"
        );
        assert_eq!(out.junit_kind(&req(id)), "skipped NOT-ATTEMPTED");
    }
    assert_eq!(out.junit_kind(&req("exactly-one-default")), "passed");
    assert_eq!(out.report_requirement(&req("real-provisioner")).0, "fail");
    // Nothing was created: no claim waits for a provisioner that does not exist.
    assert!(
        !sim.requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/persistentvolumeclaims")),
        "a claim was created"
    );
    assert_clean(&sim);
}

fn local_path_cluster() -> SimCluster {
    sim(
        vec![
            storage_class("local-path", "rancher.io/local-path")
                .default_class()
                .wait_for_first_consumer()
                .build(),
        ],
        vec![ProvisionerSpec::local_path()],
    )
}

#[test]
fn local_path_fails_under_v1() {
    let sim = local_path_cluster();
    let out = run(&sim, &["--scope-version", "v1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("FAIL"));
    assert_eq!(
        out.junit_message(&req("not-local")),
        "default StorageClass local-path provides node-local storage: provisioner \
         rancher.io/local-path is node-local storage (Rancher local-path-provisioner (k3s \
         default)); scs-0211-v1 requires volumes that are not bound to a node's lifecycle"
    );
    // The provisioner's name decides a FAIL: the functional test cannot change the verdict.
    for id in ["rwo-binding", "data-persistence"] {
        assert_eq!(
            out.junit_message(&req(id)),
            "not attempted: not-local already failed"
        );
    }
    assert!(sim.objects("persistentvolumes").is_empty());
    assert_clean(&sim);
}

#[test]
fn local_path_is_a_warning_under_v2() {
    // The draft scs-0211-v2 comes from a catalogue in SCS's format whose module is named so.
    let catalogue = fixture("catalogues/scs-0211-v2-draft.yaml");
    let catalogue = catalogue.to_str().unwrap();
    let sim = local_path_cluster();
    let draft = ["--catalogue", catalogue, "--scope-version", "next"];
    let out = run(&sim, &draft);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("PASS"));
    let text = out.junit_out(&req("not-local"));
    assert!(text.contains("WARNING"), "{text}");
    assert!(
        text.contains(
            "default StorageClass local-path provides node-local storage: provisioner \
             rancher.io/local-path is node-local storage (Rancher local-path-provisioner (k3s \
             default)); PV pvc-"
        ),
        "{text}"
    );
    assert!(
        text.contains("has a hostPath source (/opt/local-path-provisioner/pvc-"),
        "{text}"
    );
    assert!(
        text.contains("has a node affinity pinning it to node worker-"),
        "{text}"
    );
    assert!(
        text.contains("scs-0211-v2 recommends volumes that are not bound to a node's lifecycle"),
        "{text}"
    );
    assert!(
        out.stderr
            .contains("CAUTION: scope version next is draft on "),
        "{}",
        out.stderr
    );
    // The data survives, but on the same node only: the reader is pinned there.
    let data = out.junit_out(&req("data-persistence"));
    assert!(
        data.contains("on the same node worker-")
            && data.contains("the scheduler kept it there although other nodes were schedulable"),
        "{data}"
    );
    assert_clean(&sim);
    // --strict turns the warning into a failure.
    let out = run(&sim, &[&draft[..], &["--strict"]].concat());
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_clean(&sim);
}

#[test]
fn claim_that_never_binds_fails_with_provisioner_events() {
    let sim = sim(
        vec![csi_default()],
        vec![ProvisionerSpec::broken(
            CINDER,
            "rpc error: code = Internal desc = CreateVolume failed with error Expected HTTP response code [202] when accessing [POST https://cinder.example.com/v3/volumes], but got 413 instead: VolumeLimitExceeded",
        )],
    );
    let out = run(&sim, &["--pvc-bind-timeout", "2s"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let message = out.junit_message(&req("rwo-binding"));
    assert!(message.contains("was not bound within 2s"), "{message}");
    assert!(
        message.contains(
            "Warning ProvisioningFailed: failed to provision volume with StorageClass \"standard\": rpc error"
        ) && message.contains("VolumeLimitExceeded"),
        "{message}"
    );
    // The PV was never provisioned: not-local cannot be decided; with rwo-binding failed
    // neither it nor the persistence test is attempted.
    assert_eq!(
        out.junit_message(&req("not-local")),
        "not attempted: provisioner cinder.csi.openstack.org is not a known local \
         provisioner, and no volume was provisioned to inspect (rwo-binding failed)"
    );
    assert_eq!(
        out.junit_message(&req("data-persistence")),
        "not attempted: rwo-binding already failed"
    );
    assert_clean(&sim);
}

#[test]
fn data_lost_between_pods_fails() {
    let sim = sim(
        vec![csi_default()],
        vec![ProvisionerSpec::csi(CINDER).losing_data()],
    );
    let out = run(&sim, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let message = out.junit_message(&req("data-persistence"));
    assert!(
        message.starts_with("data did not outlive its pod: pod reader on node worker-")
            && message.contains("did not find the token pod writer had written on node worker-")
            && message.ends_with(
                "(exit code 1): cat: can't open '/data/scs-kaas-check-token': No such file or directory"
            ),
        "{message}"
    );
    // Binding itself worked.
    assert!(
        out.junit_message(&req("rwo-binding")).is_empty(),
        "rwo-binding passed"
    );
    assert_clean(&sim);
}

#[test]
fn unpullable_image_aborts() {
    let image = "registry.invalid/busybox:none";
    let sim = sim_with(
        vec![csi_default()],
        vec![ProvisionerSpec::csi(CINDER)],
        |spec| spec.unpullable_images = vec![image.into()],
    );
    let out = run(&sim, &["--storage-image", image]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("ABORT"));
    let message = out.junit_message(&req("data-persistence"));
    assert!(
        message.starts_with(&format!(
            "the image of pod writer cannot be pulled (ErrImagePull: rpc error: code = NotFound \
             desc = failed to pull and unpack image \"{image}\""
        )),
        "{message}"
    );
    assert!(
        message.ends_with(&format!(
            "image {image} cannot be pulled, this is an environment problem: set \
             --storage-image to a reachable mirror"
        )),
        "{message}"
    );
    let text = out.junit_out(&req("data-persistence"));
    assert!(
        text.contains("Warning Failed: Failed to pull image"),
        "{text}"
    );
    assert_clean(&sim);
}

#[test]
fn retain_policy_volume_is_deleted_and_logged() {
    let sim = sim(
        vec![
            storage_class("standard", CINDER)
                .default_class()
                .retain()
                .build(),
        ],
        vec![ProvisionerSpec::csi(CINDER)],
    );
    let out = run(&sim, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = out.file(&format!("logs/{TC}.log"));
    assert!(
        log.contains("deleted PersistentVolume pvc-")
            && log.contains("(reclaim policy Retain: Kubernetes does not delete the cinder.csi.openstack.org volume"),
        "{log}"
    );
    assert_clean(&sim);
}

#[test]
fn timeout_with_retained_volume_cleans_up() {
    // Pods never start: the check waits for the writer until --timeout stops it, after the
    // claim was bound to a Retain volume.
    let sim = sim_with(
        vec![
            storage_class("standard", CINDER)
                .default_class()
                .retain()
                .build(),
        ],
        vec![ProvisionerSpec::csi(CINDER)],
        |spec| spec.pod_start_delay = Duration::from_secs(600),
    );
    let out = run(&sim, &["--timeout", "3s"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout, format!("{TC}: ABORT\n"));
    // What was decided before the deadline stays; only the persistence test is undecided.
    for id in [
        "exactly-one-default",
        "real-provisioner",
        "not-local",
        "rwo-binding",
        "volume-expansion",
    ] {
        assert_eq!(out.junit_kind(&req(id)), "passed", "{id}");
    }
    assert!(
        out.junit_out(&req("rwo-binding"))
            .contains("without storageClassName was bound to PV pvc-")
    );
    let (status, message) = out.report_requirement(&req("data-persistence"));
    assert_eq!(status, "abort");
    assert_eq!(
        message,
        "not decided: the check did not finish within 3s (--timeout); last step: waiting \
         for pod writer to write the token"
    );
    assert_eq!(out.junit_kind(&req("data-persistence")), "error ABORT");
    let log = out.file(&format!("logs/{TC}.log"));
    assert!(log.contains("deleted PersistentVolume pvc-"), "{log}");
    assert_clean(&sim);
}

#[test]
fn kept_volume_is_found_and_deleted_by_delete() {
    let sim = sim(
        vec![
            storage_class("standard", CINDER)
                .default_class()
                .retain()
                .build(),
        ],
        vec![ProvisionerSpec::csi(CINDER)],
    );
    let out = run(&sim, &["--keep"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("kept PersistentVolume pvc-"),
        "{}",
        out.stderr
    );
    assert_eq!(sim.objects("persistentvolumes").len(), 1);
    let kubeconfig = sim.kubeconfig_path();
    let out = scs(&["delete", "-k", kubeconfig.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("deleted PersistentVolume pvc-"),
        "{}",
        out.stderr
    );
    assert_clean(&sim);
}

#[test]
fn pods_refused_by_admission_abort_with_the_refusal() {
    let quota = "exceeded quota: pods, requested: pods=1, used: pods=0, limited: pods=0";
    let sim = sim_with(
        vec![csi_default()],
        vec![ProvisionerSpec::csi(CINDER)],
        |spec| spec.pod_admission = Some(quota.into()),
    );
    let out = run(&sim, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("ABORT"));
    let message = out.junit_message(&req("data-persistence"));
    assert!(
        message.contains(&format!("pods \"writer\" is forbidden: {quota}")),
        "{message}"
    );
    assert_eq!(out.junit_kind(&req("data-persistence")), "error ABORT");
    // The claim was bound before: that part is decided.
    assert_eq!(out.junit_kind(&req("rwo-binding")), "passed");
    assert_clean(&sim);
}

/// Run inside the cluster with the ClusterRole `gen` prints (the simulator enforces RBAC
/// for service accounts): the same verdict, and no call of the check is refused.
#[test]
fn in_cluster_the_rbac_table_grants_every_call() {
    // Namespaces take a moment to go: the cleanup watches them, and the volume.
    let sim = sim_with(
        vec![csi_default()],
        vec![ProvisionerSpec::csi(CINDER)],
        |spec| spec.namespace_termination = Duration::from_millis(500),
    );
    support::incluster::register_suite_image(&sim, "ghcr.io/sovereigncloudstack/scs-kaas-check");
    let out = run(&sim, &["--in-cluster"]);
    assert_eq!(out.verdict(TC).as_deref(), Some("PASS"), "{}", out.stderr);
    assert!(support::incluster::assert_runner_granted(&sim) > 10);
    assert_clean(&sim);
}
