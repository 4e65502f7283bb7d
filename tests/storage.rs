//! default-storage-class-check on the real control plane (testbed/, scenario `storage`):
//! the upstream DefaultStorageClass admission plugin, PV controller, scheduler (volume
//! binding) and kubelet volume handling, emulated external provisioners (network, zonal,
//! failing, data-losing, local-path). Each scenario creates its StorageClasses through the
//! API and deletes them afterwards; the default class is cluster-wide, so scenarios take
//! turns ([`Classes`]). The suite runs as the ServiceAccount `gen` grants, and every run
//! must leave nothing (no labelled object, no PV of its claims).
//!
//! The in-cluster run stays on the simulator (the suite image in the cluster).

mod support;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::binary::*;
use support::storage::{ProvisionerSpec, storage_class};
use support::testbed::TestBed;
use support::{ClusterSpec, SimCluster};

const TC: &str = "default-storage-class-check";
const CINDER: &str = "cinder.csi.openstack.org";
const ZONAL: &str = "zonal.csi.testbed.scs.community";
const BROKEN: &str = "broken.csi.testbed.scs.community";
const FORGETFUL: &str = "forgetful.csi.testbed.scs.community";
const LOCAL_PATH: &str = "rancher.io/local-path";
const NODE_LOCAL: &str = "disk.csi.testbed.scs.community";
const NO_FS_TYPE: &str = "nofstype.csi.testbed.scs.community";
const OPEN: &str = "open.csi.testbed.scs.community";

fn req(id: &str) -> String {
    format!("{TC}/{id}")
}

fn bed() -> &'static TestBed {
    TestBed::shared("storage")
}

/// Held by the scenario that owns the test bed's StorageClasses.
static CLASSES: Mutex<()> = Mutex::new(());

/// The StorageClasses of one scenario: created on the shared test bed, held exclusively,
/// deleted on drop (also when the scenario panicked).
struct Classes {
    names: Vec<String>,
    _turn: MutexGuard<'static, ()>,
}

impl Classes {
    /// Creates `classes` (in this order, `gap` apart: creation timestamps have one-second
    /// resolution) and returns once the DefaultStorageClass admission plugin gives a claim
    /// without `storageClassName` the class `admitted` (None: no class), as a dry-run claim
    /// shows: admission reads classes from its informer, a moment after they exist.
    fn create(classes: Vec<Value>, gap: Duration, admitted: Option<&str>) -> Classes {
        let turn = CLASSES.lock().unwrap_or_else(|e| e.into_inner());
        let tb = bed();
        let api: Api<StorageClass> = Api::all(tb.client());
        let mut names = Vec::new();
        for (i, class) in classes.into_iter().enumerate() {
            if i > 0 {
                std::thread::sleep(gap);
            }
            let class: StorageClass = serde_json::from_value(class).expect("StorageClass");
            names.push(class.metadata.name.clone().unwrap_or_default());
            tb.block_on(api.create(&PostParams::default(), &class))
                .expect("create StorageClass");
        }
        let created = Classes { names, _turn: turn };
        created.await_admission(admitted);
        created
    }

    fn await_admission(&self, admitted: Option<&str>) {
        let tb = bed();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(tb.client(), "default");
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "admission-probe"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}
        }))
        .expect("claim");
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = tb
                .block_on(claims.create(&dry, &claim))
                .expect("dry-run claim");
            let class = got.spec.and_then(|s| s.storage_class_name);
            if class.as_deref() == admitted {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "admission gives {class:?}, not {admitted:?}, after 30 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Classes {
    fn drop(&mut self) {
        let tb = bed();
        let api: Api<StorageClass> = Api::all(tb.client());
        for name in &self.names {
            let _ = tb.block_on(api.delete(name, &Default::default()));
        }
    }
}

/// The scenario's only StorageClass: `standard`, the default, of `provisioner`.
fn only_default(provisioner: &str) -> Classes {
    Classes::create(
        vec![
            storage_class("standard", provisioner)
                .default_class()
                .build(),
        ],
        Duration::ZERO,
        Some("standard"),
    )
}

/// A run of the check on the shared test bed with `extra` flags ([`TestBed::prepare_run`]).
fn run(extra: &[&str]) -> Output {
    bed().prepare_run(&[TC]).run(extra)
}

/// The default class of network storage, Immediate binding, expandable.
fn cinder_default() -> Value {
    storage_class("standard", CINDER)
        .default_class()
        .expandable()
        .build()
}

#[test]
fn compliant_csi_immediate_passes_and_cleans_up() {
    let _classes = Classes::create(
        vec![
            cinder_default(),
            storage_class("fast", "other.csi.example.com").build(),
        ],
        Duration::ZERO,
        Some("standard"),
    );
    let tb = bed();
    let prepared = tb.prepare_run(&[TC]);
    let pods = tb.witness::<Pod>(&prepared.run_id);
    let claims = tb.witness::<PersistentVolumeClaim>(&prepared.run_id);
    let out = prepared.run(&[]);
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
    // One claim, two pods (admitted by Pod Security `restricted` in the run's namespace).
    assert_eq!(claims.names().len(), 1, "{:?}", claims.names());
    let pods: Vec<String> = pods
        .names()
        .iter()
        .map(|n| n.split('/').nth(1).unwrap_or_default().to_string())
        .collect();
    assert_eq!(pods, ["reader", "writer"]);
}

#[test]
fn compliant_csi_wait_for_first_consumer_passes() {
    let _classes = Classes::create(
        vec![
            storage_class("csi-wffc", ZONAL)
                .beta_default_class()
                .wait_for_first_consumer()
                .build(),
        ],
        Duration::ZERO,
        Some("csi-wffc"),
    );
    let out = run(&[]);
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
    // The zonal volume keeps the reader in the writer's zone, on the same node here (one
    // worker per zone): still persistence across pods.
    let data = out.junit_out(&req("data-persistence"));
    assert!(
        data.contains("the token pod writer wrote on node worker-"),
        "{data}"
    );
    // Expansion not allowed is information, not a failure.
    let expansion = out.junit_out(&req("volume-expansion"));
    assert!(
        expansion.contains("does not allow volume expansion"),
        "{expansion}"
    );
}

#[test]
fn no_default_class_fails() {
    let _classes = Classes::create(
        vec![
            storage_class("a", CINDER).build(),
            storage_class("b", LOCAL_PATH).build(),
        ],
        Duration::ZERO,
        None,
    );
    let out = run(&[]);
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
}

#[test]
fn annotation_value_the_api_server_ignores_is_named() {
    // "True" is not "true": the DefaultStorageClass admission plugin ignores the class.
    let _classes = Classes::create(
        vec![
            storage_class("standard", CINDER)
                .annotation("storageclass.kubernetes.io/is-default-class", "True")
                .build(),
        ],
        Duration::ZERO,
        None,
    );
    let out = run(&[]);
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
}

/// The creation timestamp of StorageClass `name`, as the API server stored it.
fn created(name: &str) -> String {
    let api: Api<StorageClass> = Api::all(bed().client());
    let class = bed().block_on(api.get(name)).expect("StorageClass");
    class
        .metadata
        .creation_timestamp
        .expect("creationTimestamp")
        .0
        .to_string()
}

#[test]
fn two_defaults_fail_and_are_both_named() {
    // legacy is created last or in the same second (then the tie goes by name): a claim
    // gets legacy either way.
    let _classes = Classes::create(
        vec![
            cinder_default(),
            storage_class("legacy", CINDER).beta_default_class().build(),
        ],
        Duration::ZERO,
        Some("legacy"),
    );
    let out = run(&[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.junit_message(&req("exactly-one-default")),
        format!(
            "2 StorageClasses are annotated as default: legacy (cinder.csi.openstack.org), \
             standard (cinder.csi.openstack.org); exactly one must be; a claim without \
             storageClassName gets legacy (the API server picks the newest default: created \
             {}, ties by name)",
            created("legacy")
        )
    );
    assert_eq!(
        out.junit_message(&req("rwo-binding")),
        "not attempted: 2 StorageClasses are annotated as default"
    );
}

#[test]
fn of_several_defaults_the_newest_is_named() {
    // "new" is created a second after "old", sorts before it by name, and still wins.
    let _classes = Classes::create(
        vec![
            storage_class("old", CINDER).default_class().build(),
            storage_class("new", CINDER).default_class().build(),
        ],
        Duration::from_millis(1100),
        Some("new"),
    );
    let out = run(&[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.junit_message(&req("exactly-one-default")),
        format!(
            "2 StorageClasses are annotated as default: new (cinder.csi.openstack.org), old \
             (cinder.csi.openstack.org); exactly one must be; a claim without storageClassName \
             gets new (the API server picks the newest default: created {}, ties by name)",
            created("new")
        )
    );
}

#[test]
fn no_provisioner_default_fails_in_seconds_without_a_claim() {
    let _classes = Classes::create(
        vec![
            storage_class("manual", "kubernetes.io/no-provisioner")
                .default_class()
                .build(),
        ],
        Duration::ZERO,
        Some("manual"),
    );
    let tb = bed();
    let prepared = tb.prepare_run(&[TC]);
    let claims = tb.witness::<PersistentVolumeClaim>(&prepared.run_id);
    // The defaults: --pvc-bind-timeout 5m.
    let started = Instant::now();
    let out = prepared.run(&[]);
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
    assert!(claims.names().is_empty(), "{:?}", claims.names());
}

fn local_path_classes() -> Classes {
    Classes::create(
        vec![
            storage_class("local-path", LOCAL_PATH)
                .default_class()
                .wait_for_first_consumer()
                .build(),
        ],
        Duration::ZERO,
        Some("local-path"),
    )
}

#[test]
fn local_path_fails_under_v1() {
    let _classes = local_path_classes();
    let tb = bed();
    let prepared = tb.prepare_run(&[TC]);
    let claims = tb.witness::<PersistentVolumeClaim>(&prepared.run_id);
    let out = prepared.run(&["--scope-version", "v1"]);
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
    assert!(claims.names().is_empty(), "{:?}", claims.names());
}

#[test]
fn local_path_is_a_warning_under_v2() {
    // The draft scs-0211-v2 comes from a catalogue in SCS's format whose module is named so.
    let catalogue = fixture("catalogues/scs-0211-v2-draft.yaml");
    let catalogue = catalogue.to_str().unwrap();
    let _classes = local_path_classes();
    let draft = ["--catalogue", catalogue, "--scope-version", "next"];
    let out = run(&draft);
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
    assert!(text.contains("has a hostPath source ("), "{text}");
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
    // --strict turns the warning into a failure.
    let out = run(&[&draft[..], &["--strict"]].concat());
    assert_eq!(out.code, 1, "{}", out.stderr);
}

/// A CSI driver whose name does not tell, but whose PVs are pinned to one node: only a
/// provisioned volume shows it. The real PV binder binds the claim once the real scheduler
/// picked the writer's node (WaitForFirstConsumer); after the FAIL the rest is not
/// attempted.
#[test]
fn node_local_default_storage_fails_not_local_with_the_real_binder_and_scheduler() {
    let _classes = Classes::create(
        vec![
            storage_class("local-disk", NODE_LOCAL)
                .default_class()
                .wait_for_first_consumer()
                .build(),
        ],
        Duration::ZERO,
        Some("local-disk"),
    );
    let out = run(&[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("FAIL"));
    let not_local = out.junit_message(&req("not-local"));
    assert!(
        not_local
            .starts_with("default StorageClass local-disk provides node-local storage: PV pvc-")
            && not_local.contains("has a node affinity pinning it to node worker-"),
        "{not_local}"
    );
    let binding = out.junit_out(&req("rwo-binding"));
    assert!(
        binding.contains("binding mode WaitForFirstConsumer"),
        "{binding}"
    );
    assert_eq!(
        out.junit_message(&req("data-persistence")),
        "not attempted: not-local already failed"
    );
}

#[test]
fn claim_that_never_binds_fails_with_provisioner_events() {
    let _classes = only_default(BROKEN);
    let out = run(&["--pvc-bind-timeout", "5s"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let message = out.junit_message(&req("rwo-binding"));
    assert!(message.contains("was not bound within 5s"), "{message}");
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
        format!(
            "not attempted: provisioner {BROKEN} is not a known local provisioner, and no \
             volume was provisioned to inspect (rwo-binding failed)"
        )
    );
    assert_eq!(
        out.junit_message(&req("data-persistence")),
        "not attempted: rwo-binding already failed"
    );
}

#[test]
fn data_lost_between_pods_fails() {
    let _classes = only_default(FORGETFUL);
    let out = run(&[]);
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
    assert_eq!(out.junit_kind(&req("rwo-binding")), "passed");
}

#[test]
fn unpullable_image_aborts() {
    let _classes = Classes::create(vec![cinder_default()], Duration::ZERO, Some("standard"));
    // An image no registry of the test bed has (a repository it does not know).
    let image = "registry.invalid/missing/shell:none";
    let out = run(&["--storage-image", image, "--pod-start-timeout", "60s"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("ABORT"));
    let message = out.junit_message(&req("data-persistence"));
    // The kubelet's ErrImagePull as containerd words it, and what to do about it.
    assert_eq!(
        message,
        format!(
            "the image of pod writer cannot be pulled (ErrImagePull: failed to pull and unpack \
             image \"{image}\": failed to resolve reference \"{image}\": \
             registry.invalid/missing/shell: not found (the test bed knows no such image)); \
             image {image} cannot be pulled, this is an environment problem: set \
             --storage-image to a reachable mirror"
        )
    );
    let text = out.junit_out(&req("data-persistence"));
    assert!(
        text.contains("Warning Failed: Failed to pull image"),
        "{text}"
    );
}

/// Under the default fsGroupPolicy (the driver has no CSIDriver object) the kubelet
/// applies fsGroup only to PVs with an fsType; these have none, so the volume root stays
/// `root:root 0755` and the restricted writer cannot write: ABORT naming the default
/// policy and the PV without fsType, never a FAIL against the storage.
#[test]
fn volume_without_fs_type_under_the_default_policy_aborts_naming_it() {
    let _classes = only_default(NO_FS_TYPE);
    let out = run(&[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("ABORT"));
    assert_eq!(out.junit_kind(&req("data-persistence")), "error ABORT");
    assert_eq!(out.junit_kind(&req("rwo-binding")), "passed");
    let message = out.junit_message(&req("data-persistence"));
    assert!(
        message.starts_with("pod writer on node worker-")
            && message.contains(
                "(user 65534, fsGroup 65534) cannot write to the volume: its root directory \
                 has uid 0, gid 0, mode drwxr-xr-x and the kubelet did not give it to the \
                 pod's fsGroup (driver nofstype.csi.testbed.scs.community has no CSIDriver \
                 object, so the default fsGroupPolicy ReadWriteOnceWithFSType applies: the \
                 kubelet does so only for PVs with an fsType, and PV pvc-"
            )
            && message.contains(
                " has none); a pod under the restricted Pod Security profile runs as a \
                 non-root user without capabilities and cannot write there"
            ),
        "{message}"
    );
}

/// fsGroupPolicy None, but the driver makes volume roots writable for every user: the
/// writer needs no fsGroup, and the data outlives its pod: PASS.
#[test]
fn world_writable_volumes_pass_without_fs_group() {
    let _classes = only_default(OPEN);
    let out = run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("PASS"));
    let data = out.junit_out(&req("data-persistence"));
    assert!(
        data.contains("was read back after its deletion by pod reader on another node, worker-"),
        "{data}"
    );
}

fn retain_classes() -> Classes {
    Classes::create(
        vec![
            storage_class("standard", CINDER)
                .default_class()
                .retain()
                .build(),
        ],
        Duration::ZERO,
        Some("standard"),
    )
}

#[test]
fn retain_policy_volume_is_deleted_and_logged() {
    let _classes = retain_classes();
    let out = run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = out.file(&format!("logs/{TC}.log"));
    assert!(
        log.contains("deleted PersistentVolume pvc-")
            && log.contains("(reclaim policy Retain: Kubernetes does not delete the cinder.csi.openstack.org volume"),
        "{log}"
    );
}

#[test]
fn timeout_with_retained_volume_cleans_up() {
    // The writer's image comes from a registry that takes ten minutes per pull: the check
    // waits for the writer until --timeout stops it, after the claim was bound to a Retain
    // volume.
    let _classes = retain_classes();
    let slow = "slow.registry.example/docker.io/library/busybox:1.37.0";
    let out = run(&["--storage-image", slow, "--timeout", "8s"]);
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
        "not decided: the check did not finish within 8s (--timeout); last step: waiting \
         for pod writer to write the token"
    );
    assert_eq!(out.junit_kind(&req("data-persistence")), "error ABORT");
    let log = out.file(&format!("logs/{TC}.log"));
    assert!(log.contains("deleted PersistentVolume pvc-"), "{log}");
}

#[test]
fn kept_volume_is_found_and_deleted_by_delete() {
    let _classes = retain_classes();
    let tb = bed();
    let prepared = tb.prepare_run(&[TC]);
    let kubeconfig = prepared.kubeconfig.to_str().unwrap();
    let out = scs(&[
        "run",
        "-k",
        kubeconfig,
        "--offline",
        "--run-id",
        &prepared.run_id,
        "--check",
        TC,
        "--keep",
    ]);
    out.assert_clean_exit();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("kept PersistentVolume pvc-"),
        "{}",
        out.stderr
    );
    let pvs: Api<PersistentVolume> = Api::all(tb.client());
    let kept: Vec<String> = tb
        .block_on(pvs.list(&ListParams::default()))
        .expect("PVs")
        .items
        .into_iter()
        .filter(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref()?.namespace.clone())
                .is_some_and(|ns| ns.starts_with(&format!("skc-{}-", prepared.run_id)))
        })
        .filter_map(|pv| pv.metadata.name)
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    // `delete` as the operator (admin): besides the run's objects it looks for in-cluster
    // runs' ClusterRoles and ClusterRoleBindings, rights no check needs.
    let out = scs(&["delete", "-k", tb.kubeconfig_str()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("deleted PersistentVolume {}", kept[0])),
        "{}",
        out.stderr
    );
    tb.assert_run_left_nothing(&prepared.run_id);
}

/// A cluster policy refuses the pods in the run's namespaces (a ValidatingAdmissionPolicy:
/// upstream admission): the claim was bound before, the persistence test is ABORT with
/// the refusal.
#[test]
fn pods_refused_by_admission_abort_with_the_refusal() {
    let _classes = Classes::create(vec![cinder_default()], Duration::ZERO, Some("standard"));
    let tb = bed();
    let policy = "pods need the label cost-center (ACME cluster policy)";
    let prepared = tb.prepare_run(&[TC]);
    let _refused = tb.refuse_pods(&prepared.run_id, policy);
    let out = prepared.run(&[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("ABORT"));
    let message = out.junit_message(&req("data-persistence"));
    let run_id = &prepared.run_id;
    assert!(
        message.contains(&format!(
            "pods \"writer\" is forbidden: ValidatingAdmissionPolicy 'refuse-pods-{run_id}' \
             with binding 'refuse-pods-{run_id}' denied request: {policy}"
        )),
        "{message}"
    );
    assert_eq!(out.junit_kind(&req("data-persistence")), "error ABORT");
    // The claim was bound before: that part is decided.
    assert_eq!(out.junit_kind(&req("rwo-binding")), "passed");
}

/// Run inside the cluster with the ClusterRole `gen` prints (the simulator enforces RBAC
/// for service accounts): the same verdict, and no call of the check is refused.
#[test]
fn in_cluster_the_rbac_table_grants_every_call() {
    // Namespaces take a moment to go: the cleanup watches them, and the volume.
    let sim = SimCluster::start(ClusterSpec {
        storage_classes: vec![cinder_default()],
        provisioners: vec![ProvisionerSpec::csi(CINDER)],
        namespace_termination: Duration::from_millis(500),
        ..Default::default()
    });
    sim.register_shell_image("docker.io/library/busybox");
    support::incluster::register_suite_image(&sim, "ghcr.io/sovereigncloudstack/scs-kaas-check");
    let out = run_against(&sim, &["--check", TC, "--in-cluster"]);
    out.assert_clean_exit();
    assert_eq!(out.verdict(TC).as_deref(), Some("PASS"), "{}", out.stderr);
    assert!(support::incluster::assert_runner_granted(&sim) > 10);
    let namespaces = suite_objects(&sim, "namespaces");
    assert!(namespaces.is_empty(), "left behind: {namespaces:?}");
    for kind in ["persistentvolumeclaims", "pods", "persistentvolumes"] {
        assert!(sim.objects(kind).is_empty(), "{kind} left behind");
    }
}
