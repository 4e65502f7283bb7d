//! scs-0211: exactly one default StorageClass, backed by a real provisioner, whose volumes
//! are not node-local and really outlive their pods. The functional part creates a claim
//! WITHOUT `storageClassName` (so the default applies), lets a pod write a random token
//! to it, deletes that pod, and lets a second pod (preferably on another node) read the
//! token back.

use super::node_anti_affinity::candidates;
use super::{CheckContext, CheckDef};
use crate::cluster::errors::human_duration;
use crate::cluster::pods::{self, PodTrouble};
use crate::cluster::workload::{APP_KEY, mount_claim, restricted_container, restricted_pod_spec};
use crate::cluster::{ClusterObject, run_labels, wait};
use crate::outcome::{CheckOutcome, Requirement, Status};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod, PreferredSchedulingTerm,
    VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use std::collections::BTreeMap;

pub const CHECK: CheckDef = CheckDef {
    name: "default-storage-class",
    summary: "one default StorageClass whose volumes outlive their pods (scs-0211)",
    writes: true,
    exclusive: false,
    uses_e2e: super::no_e2e,
    run: |ctx| Box::pin(run(ctx)),
};

/// The default-class annotation, and its beta predecessor (still honoured by Kubernetes).
pub const DEFAULT_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Provisioners known to create node-local or ephemeral volumes (exact names). Besides
/// these, any provisioner named `local.csi.*` or containing `hostpath`, `host-path` or
/// `local-path` counts as local.
pub const LOCAL_PROVISIONERS: &[(&str, &str)] = &[
    (
        "rancher.io/local-path",
        "Rancher local-path-provisioner (k3s default)",
    ),
    ("openebs.io/local", "OpenEBS Local PV hostpath/device"),
    ("local.csi.openebs.io", "OpenEBS LVM Local PV"),
    ("zfs.csi.openebs.io", "OpenEBS ZFS Local PV"),
    ("rawfile.csi.openebs.io", "OpenEBS rawfile Local PV"),
    ("topolvm.io", "TopoLVM (node-local LVM)"),
    ("topolvm.cybozu.com", "TopoLVM (node-local LVM, old name)"),
    ("hostpath.csi.k8s.io", "CSI hostpath driver (testing only)"),
    ("k8s.io/minikube-hostpath", "minikube hostpath provisioner"),
    ("microk8s.io/hostpath", "MicroK8s hostpath provisioner"),
    ("docker.io/hostpath", "Docker Desktop hostpath provisioner"),
    (
        "kubernetes.io/host-path",
        "in-tree hostPath provisioner (testing only)",
    ),
    (
        "kubevirt.io.hostpath-provisioner",
        "KubeVirt hostpath provisioner",
    ),
    (
        "kubevirt.io/hostpath-provisioner",
        "KubeVirt hostpath provisioner",
    ),
];

/// Node label keys whose value names one node; a PV required to match one value of such a
/// key is pinned to that node. Zone and region keys are not among them: zonal block
/// storage is not node-local.
const NODE_KEYS: &[&str] = &["kubernetes.io/hostname"];
/// Last segments of provisioner-specific node keys (`topology.topolvm.io/node`, ...).
const NODE_KEY_NAMES: &[&str] = &["hostname", "node", "nodename", "node-name"];

const CLAIM: &str = "data";
const WRITER: &str = "writer";
const READER: &str = "reader";
const MOUNT: &str = "/data";
const TOKEN_FILE: &str = "/data/scs-kaas-check-token";
/// Size of the test claim; every provisioner supports it.
pub const CLAIM_SIZE: &str = "1Gi";
const HOSTNAME: &str = "kubernetes.io/hostname";

const IDS: [&str; 6] = [
    "exactly-one-default",
    "real-provisioner",
    "not-local",
    "rwo-binding",
    "data-persistence",
    "volume-expansion",
];

/// Why a provisioner counts as local, if it does.
pub fn known_local(provisioner: &str) -> Option<String> {
    if let Some((_, what)) = LOCAL_PROVISIONERS.iter().find(|(p, _)| *p == provisioner) {
        return Some(format!(
            "provisioner {provisioner} is node-local storage ({what})"
        ));
    }
    let lower = provisioner.to_ascii_lowercase();
    if lower.starts_with("local.csi.")
        || ["hostpath", "host-path", "local-path"]
            .iter()
            .any(|s| lower.contains(s))
    {
        return Some(format!(
            "provisioner {provisioner} is node-local storage (by its name)"
        ));
    }
    None
}

/// Signs that a provisioned PV is local storage: a `local`/`hostPath` source, or a node
/// affinity that pins it to one node.
pub fn local_signs(pv: &PersistentVolume) -> Vec<String> {
    let name = pv.name_any();
    let mut signs = Vec::new();
    let Some(spec) = pv.spec.as_ref() else {
        return signs;
    };
    if let Some(local) = &spec.local {
        signs.push(format!("PV {name} has a local source ({})", local.path));
    }
    if let Some(host) = &spec.host_path {
        signs.push(format!("PV {name} has a hostPath source ({})", host.path));
    }
    let terms = spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.clone())
        .unwrap_or_default();
    for term in &terms {
        let expressions = term.match_expressions.iter().flatten().map(|e| (e, false));
        let fields = term.match_fields.iter().flatten().map(|e| (e, true));
        for (e, field) in expressions.chain(fields) {
            let values = e.values.clone().unwrap_or_default();
            let node_key = if field {
                e.key == "metadata.name"
            } else {
                NODE_KEYS.contains(&e.key.as_str())
                    || e.key
                        .rsplit('/')
                        .next()
                        .is_some_and(|last| NODE_KEY_NAMES.contains(&last))
            };
            if node_key && e.operator == "In" && values.len() == 1 {
                signs.push(format!(
                    "PV {name} has a node affinity pinning it to node {} ({})",
                    values[0], e.key
                ));
            }
        }
    }
    signs
}

/// scs-0211-v1 requires volumes that are not local; from v2 on it is a recommendation.
pub fn local_status(standard: &str) -> Status {
    let version = standard
        .rsplit_once("-v")
        .and_then(|(_, v)| v.parse::<u32>().ok())
        .unwrap_or(1);
    if version >= 2 {
        Status::Warn
    } else {
        Status::Fail
    }
}

fn is_default(sc: &StorageClass) -> Option<&'static str> {
    DEFAULT_ANNOTATIONS
        .iter()
        .find(|a| sc.annotations().get(**a).map(String::as_str) == Some("true"))
        .copied()
}

fn binding_mode(sc: &StorageClass) -> &str {
    sc.volume_binding_mode.as_deref().unwrap_or("Immediate")
}

fn describe_class(sc: &StorageClass) -> String {
    format!(
        "{}: provisioner {}, binding mode {}, reclaim policy {}, expansion {}{}",
        sc.name_any(),
        sc.provisioner,
        binding_mode(sc),
        sc.reclaim_policy.as_deref().unwrap_or("Delete"),
        if sc.allow_volume_expansion == Some(true) {
            "allowed"
        } else {
            "not allowed"
        },
        is_default(sc)
            .map(|a| format!(", default ({a})"))
            .unwrap_or_default()
    )
}

async fn run(ctx: &CheckContext) -> CheckOutcome {
    let cluster = ctx.cluster();
    let api: Api<StorageClass> = Api::all(cluster.client.clone());
    let classes = match cluster
        .call("list storageclasses", api.list(&ListParams::default()))
        .await
    {
        Ok(list) => list.items,
        Err(e) => return CheckOutcome::aborted("", e.to_string()),
    };
    let mut outcome = CheckOutcome::default();
    let listing: Vec<String> = classes.iter().map(describe_class).collect();
    let defaults: Vec<&StorageClass> = classes.iter().filter(|c| is_default(c).is_some()).collect();
    let names = |list: &[&StorageClass]| {
        list.iter()
            .map(|c| format!("{} ({})", c.name_any(), c.provisioner))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let default = match defaults.as_slice() {
        [one] => {
            outcome.push(
                Requirement::pass(
                    IDS[0],
                    format!(
                        "{} is the only default StorageClass (provisioner {})",
                        one.name_any(),
                        one.provisioner
                    ),
                )
                .with_details(listing),
            );
            *one
        }
        [] => {
            let all: Vec<&StorageClass> = classes.iter().collect();
            outcome.push(
                Requirement::fail(
                    IDS[0],
                    if classes.is_empty() {
                        "no default StorageClass: the cluster has no StorageClass at all".into()
                    } else {
                        format!(
                            "no default StorageClass among {} class(es): {}; annotate one with \
                             storageclass.kubernetes.io/is-default-class: \"true\"",
                            classes.len(),
                            names(&all)
                        )
                    },
                )
                .with_details(listing),
            );
            return not_tested(outcome, "there is no default StorageClass");
        }
        several => {
            outcome.push(
                Requirement::fail(
                    IDS[0],
                    format!(
                        "{} StorageClasses are annotated as default: {}; exactly one must be",
                        several.len(),
                        names(several)
                    ),
                )
                .with_details(listing),
            );
            return not_tested(outcome, "there is more than one default StorageClass");
        }
    };
    let class = default.name_any();
    let provisioner = default.provisioner.clone();
    ctx.log
        .info(format!("default StorageClass {}", describe_class(default)));

    outcome.push(if provisioner == NO_PROVISIONER {
        Requirement::fail(
            IDS[1],
            format!(
                "default StorageClass {class} uses {NO_PROVISIONER}: no volume is ever \
                 provisioned for a claim, an administrator must create each PV by hand"
            ),
        )
    } else {
        Requirement::pass(
            IDS[1],
            format!("default StorageClass {class} uses provisioner {provisioner}"),
        )
    });

    let functional = functional_test(ctx, default).await;
    let mut local: Vec<String> = known_local(&provisioner).into_iter().collect();
    if let Some(pv) = &functional.volume {
        local.extend(local_signs(pv));
    }
    let standard = ctx.testcase.standard.clone();
    outcome.push(if !local.is_empty() {
        let status = local_status(&standard);
        let verb = if status == Status::Warn {
            "recommends"
        } else {
            "requires"
        };
        Requirement::new(
            IDS[2],
            status,
            format!(
                "default StorageClass {class} provides node-local storage: {}; {standard} {verb} \
                 volumes that are not bound to a node's lifecycle",
                local.join("; ")
            ),
        )
    } else if let Some(pv) = &functional.volume {
        let source = pv
            .spec
            .as_ref()
            .and_then(|s| s.csi.as_ref())
            .map(|c| format!("CSI driver {}", c.driver))
            .unwrap_or_else(|| format!("provisioner {provisioner}"));
        Requirement::pass(
            IDS[2],
            format!(
                "PV {} ({source}) is neither local nor hostPath storage and not pinned to a node",
                pv.name_any()
            ),
        )
    } else {
        Requirement::abort(
            IDS[2],
            format!(
                "provisioner {provisioner} is not a known local provisioner, but no volume was \
                 provisioned to inspect (see rwo-binding)"
            ),
        )
    });
    outcome.push(functional.binding);
    outcome.push(functional.persistence);
    outcome.push(Requirement::info(
        IDS[5],
        if default.allow_volume_expansion == Some(true) {
            format!("default StorageClass {class} allows volume expansion")
        } else {
            format!(
                "default StorageClass {class} does not allow volume expansion \
                 (allowVolumeExpansion is not true); this is optional"
            )
        },
    ));
    outcome
}

/// Without exactly one default class nothing else can be tested.
fn not_tested(mut outcome: CheckOutcome, why: &str) -> CheckOutcome {
    for id in &IDS[1..] {
        outcome.push(Requirement::not_applicable(
            *id,
            format!("not tested: {why}"),
        ));
    }
    outcome
}

struct Functional {
    binding: Requirement,
    persistence: Requirement,
    /// The PV the claim was bound to.
    volume: Option<PersistentVolume>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = nanos.to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn claim(ctx: &CheckContext) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(CLAIM.into()),
            labels: Some(run_labels(&ctx.cluster().run_id, &ctx.testcase.id)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            // No storage_class_name: the default class applies.
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(CLAIM_SIZE.into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod that runs `script` once with the claim mounted at `/data`.
fn shell_pod(ctx: &CheckContext, name: &str, script: &str, affinity: Option<Affinity>) -> Pod {
    let mut labels = run_labels(&ctx.cluster().run_id, &ctx.testcase.id);
    labels.insert(APP_KEY.into(), name.into());
    let mut container = restricted_container(name, &ctx.options.workload.storage_image);
    container.command = Some(vec!["sh".into(), "-c".into(), script.into()]);
    let mut spec = restricted_pod_spec(vec![container]);
    spec.restart_policy = Some("Never".into());
    spec.affinity = affinity;
    mount_claim(&mut spec, "data", CLAIM, MOUNT);
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(spec),
        ..Default::default()
    }
}

/// Prefer every node but `node` (by its hostname label).
fn avoid_node(hostname: &str) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                PreferredSchedulingTerm {
                    weight: 100,
                    preference: NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME.into(),
                            operator: "NotIn".into(),
                            values: Some(vec![hostname.into()]),
                        }]),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn functional_test(ctx: &CheckContext, class: &StorageClass) -> Functional {
    let abort_both = |message: String| Functional {
        binding: Requirement::abort(IDS[3], message.clone()),
        persistence: Requirement::abort(IDS[4], message),
        volume: None,
    };
    let cluster = ctx.cluster();
    let namespace = match cluster.scratch_namespace(&ctx.testcase.id, "storage").await {
        Ok(ns) => ns,
        Err(e) => return abort_both(e.to_string()),
    };
    ctx.log.info(format!("created namespace {namespace}"));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), &namespace);
    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
    if let Err(e) = cluster
        .call(
            &format!("create persistentvolumeclaim {CLAIM}"),
            claims.create(&PostParams::default(), &claim(ctx)),
        )
        .await
    {
        return abort_both(e.to_string());
    }
    let mode = binding_mode(class).to_string();
    let token = random_token();
    let writer = shell_pod(
        ctx,
        WRITER,
        &format!("set -e; echo {token} > {TOKEN_FILE}; sync; cat {TOKEN_FILE}"),
        None,
    );
    let create_writer = || async {
        cluster
            .call(
                &format!("create pod {WRITER}"),
                pods_api.create(&PostParams::default(), &writer),
            )
            .await
            .map(|_| ())
    };
    // WaitForFirstConsumer: the claim binds only once a pod using it is scheduled.
    let wait_first = mode == "WaitForFirstConsumer";
    if wait_first {
        if let Err(e) = create_writer().await {
            return abort_both(e.to_string());
        }
        ctx.log.info(format!(
            "claim {CLAIM} and pod {WRITER} created; waiting for the claim to bind \
             (binding mode {mode})"
        ));
    } else {
        ctx.log.info(format!(
            "claim {CLAIM} created; waiting for it to bind (binding mode {mode})"
        ));
    }
    let bound = wait_bound(ctx, &namespace, class).await;
    let (binding, volume) = match bound {
        Ok((req, pv)) => (req, pv),
        Err(req) => {
            return Functional {
                binding: req,
                persistence: Requirement::abort(
                    IDS[4],
                    "not tested: the claim was not bound (see rwo-binding)",
                ),
                volume: None,
            };
        }
    };
    if !wait_first && let Err(e) = create_writer().await {
        return Functional {
            binding,
            persistence: Requirement::abort(IDS[4], e.to_string()),
            volume,
        };
    }
    let persistence = persistence_test(ctx, &namespace, &token)
        .await
        .unwrap_or_else(|r| r);
    Functional {
        binding,
        persistence,
        volume,
    }
}

/// Waits for the claim to be bound, checks it got the default class and ReadWriteOnce, and
/// registers its PV for cleanup. `Err` is the failed requirement, with the claim's Events.
async fn wait_bound(
    ctx: &CheckContext,
    namespace: &str,
    class: &StorageClass,
) -> Result<(Requirement, Option<PersistentVolume>), Requirement> {
    let cluster = ctx.cluster();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), namespace);
    let deadline = ctx.options.workload.pvc_bind_timeout;
    let waited = wait::object(&claims, CLAIM, deadline, |pvc| {
        let pvc = pvc?;
        let phase = pvc.status.as_ref()?.phase.as_deref()?;
        let volume = pvc.spec.as_ref()?.volume_name.clone()?;
        (phase == "Bound").then(|| (pvc.clone(), volume))
    })
    .await;
    let name = class.name_any();
    let (pvc, volume_name) = match waited {
        Ok(found) => found,
        Err(timeout) => {
            let phase = timeout
                .last
                .first()
                .and_then(|p| p.status.as_ref()?.phase.clone())
                .unwrap_or_else(|| "missing".into());
            let events =
                wait::recent_events(&cluster.client, namespace, CLAIM, cluster.request_timeout)
                    .await;
            let mut details: Vec<String> = events.iter().map(|e| format!("  {e}")).collect();
            details.insert(0, format!("claim {CLAIM}: {phase}"));
            if binding_mode(class) == "WaitForFirstConsumer" {
                let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
                if let Ok(Some(pod)) = cluster
                    .call(&format!("read pod {WRITER}"), pods_api.get_opt(WRITER))
                    .await
                {
                    details.extend(
                        pods::explain(cluster, namespace, &[pod], &|_| String::new())
                            .await
                            .details,
                    );
                }
            }
            let shown: Vec<&String> = events.iter().rev().take(3).collect::<Vec<_>>();
            let shown: Vec<&str> = shown.iter().rev().map(|s| s.as_str()).collect();
            return Err(Requirement::fail(
                IDS[3],
                format!(
                    "claim {CLAIM} (ReadWriteOnce, {CLAIM_SIZE}, no storageClassName) was not \
                     bound within {} ({timeout}; still {phase}; default class {name}, \
                     provisioner {}, binding mode {}); {}",
                    human_duration(deadline),
                    class.provisioner,
                    binding_mode(class),
                    if shown.is_empty() {
                        "no events about the claim".to_string()
                    } else {
                        format!("events: {}", shown.join(" | "))
                    }
                ),
            )
            .with_details(details));
        }
    };
    cluster.track(
        &ctx.testcase.id,
        ClusterObject::PersistentVolume(volume_name.clone()),
    );
    let pvs: Api<PersistentVolume> = Api::all(cluster.client.clone());
    let pv = cluster
        .call(
            &format!("read persistentvolume {volume_name}"),
            pvs.get_opt(&volume_name),
        )
        .await
        .ok()
        .flatten();
    let claim_class = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default();
    let modes = pvc
        .status
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .or_else(|| {
            pv.as_ref()
                .and_then(|p| p.spec.as_ref()?.access_modes.clone())
        })
        .unwrap_or_default();
    let capacity = pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref()?.get("storage").map(|q| q.0.clone()))
        .unwrap_or_else(|| "?".into());
    let reclaim = pv
        .as_ref()
        .and_then(|p| p.spec.as_ref()?.persistent_volume_reclaim_policy.clone())
        .unwrap_or_else(|| "Delete".into());
    ctx.log.info(format!(
        "claim {CLAIM} bound to PV {volume_name} (class {claim_class}, reclaim policy {reclaim})"
    ));
    let requirement = if claim_class != name {
        Requirement::fail(
            IDS[3],
            format!(
                "claim {CLAIM} without storageClassName was bound with class {:?}, not the \
                 default {name} (is the DefaultStorageClass admission plugin enabled?)",
                claim_class
            ),
        )
    } else if !modes.iter().any(|m| m == "ReadWriteOnce") {
        Requirement::fail(
            IDS[3],
            format!(
                "claim {CLAIM} was bound to PV {volume_name} without ReadWriteOnce (access \
                 modes: {})",
                modes.join(", ")
            ),
        )
    } else {
        Requirement::pass(
            IDS[3],
            format!(
                "claim {CLAIM} without storageClassName was bound to PV {volume_name} of the \
                 default class {name} (ReadWriteOnce, {capacity}, binding mode {})",
                binding_mode(class)
            ),
        )
    };
    Ok((requirement, pv))
}

fn pod_failure(ctx: &CheckContext, pod: &str, not: pods::NotFinished) -> Requirement {
    let image = &ctx.options.workload.storage_image;
    match &not.trouble {
        PodTrouble::ImagePull(_) => Requirement::abort(
            IDS[4],
            format!(
                "{}; image {image} cannot be pulled, this is an environment problem: set \
                 --storage-image to a reachable mirror",
                not.summary(pod)
            ),
        ),
        PodTrouble::Api(_) => Requirement::abort(IDS[4], not.summary(pod)),
        PodTrouble::Timeout(_) => Requirement::fail(
            IDS[4],
            format!(
                "{} (a pod using the volume must start within --pod-start-timeout)",
                not.summary(pod)
            ),
        ),
    }
    .with_details(not.details)
}

/// A pod that ran to completion.
struct Finished {
    node: String,
    log: String,
    /// `None` when it Succeeded, else its exit code.
    failed: Option<i32>,
}

/// Runs a pod to completion (by watch, within --pod-start-timeout) and reads its log.
async fn run_pod(ctx: &CheckContext, namespace: &str, name: &str) -> Result<Finished, Requirement> {
    let cluster = ctx.cluster();
    let deadline = ctx.options.workload.pod_start_timeout;
    let pod = pods::wait_finished(cluster, namespace, name, deadline)
        .await
        .map_err(|not| pod_failure(ctx, name, not))?;
    let node = pods::node(&pod).unwrap_or_else(|| "?".into());
    let log = pods::log(cluster, namespace, name)
        .await
        .map_err(|e| Requirement::abort(IDS[4], e.to_string()))?;
    let failed = (pods::phase(&pod) != "Succeeded").then(|| {
        pod.status
            .as_ref()
            .and_then(|s| {
                s.container_statuses
                    .as_ref()?
                    .first()?
                    .state
                    .as_ref()?
                    .terminated
                    .as_ref()
            })
            .map(|t| t.exit_code)
            .unwrap_or(-1)
    });
    Ok(Finished { node, log, failed })
}

fn one_line(log: &str) -> String {
    let text = log.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "(no output)".into()
    } else if text.chars().count() > 300 {
        format!("{}...", text.chars().take(300).collect::<String>())
    } else {
        text
    }
}

/// Writer writes the token and exits; it is deleted; the reader (preferably elsewhere)
/// must read the token back.
async fn persistence_test(
    ctx: &CheckContext,
    namespace: &str,
    token: &str,
) -> Result<Requirement, Requirement> {
    let cluster = ctx.cluster();
    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    ctx.log
        .info(format!("waiting for pod {WRITER} to write the token"));
    let written = run_pod(ctx, namespace, WRITER).await?;
    let writer_node = written.node.clone();
    if let Some(code) = written.failed {
        return Err(Requirement::fail(
            IDS[4],
            format!(
                "pod {WRITER} on node {writer_node} could not write to the volume (exit code \
                 {code}): {}",
                one_line(&written.log)
            ),
        ));
    }
    if written.log.trim() != token {
        return Err(Requirement::fail(
            IDS[4],
            format!(
                "pod {WRITER} on node {writer_node} could not read back what it had just \
                 written: {}",
                one_line(&written.log)
            ),
        ));
    }
    ctx.log.info(format!(
        "pod {WRITER} wrote the token on node {writer_node}; deleting it"
    ));
    cluster
        .call(
            &format!("delete pod {WRITER}"),
            pods_api.delete(WRITER, &DeleteParams::default()),
        )
        .await
        .map_err(|e| Requirement::abort(IDS[4], e.to_string()))?;
    let deadline = ctx.options.workload.pod_start_timeout;
    wait::until_deleted(&pods_api, WRITER, deadline)
        .await
        .map_err(|t| Requirement::abort(IDS[4], format!("pod {WRITER} was not deleted: {t}")))?;

    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let nodes = cluster
        .call("list nodes", nodes.list(&ListParams::default()))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let others: Vec<String> = candidates(&nodes)
        .0
        .into_iter()
        .map(|c| c.name)
        .filter(|n| *n != writer_node)
        .collect();
    let hostname = nodes
        .iter()
        .find(|n| n.name_any() == writer_node)
        .and_then(|n| n.labels().get(HOSTNAME).cloned())
        .unwrap_or_else(|| writer_node.clone());
    let reader = shell_pod(
        ctx,
        READER,
        &format!("cat {TOKEN_FILE}"),
        Some(avoid_node(&hostname)),
    );
    cluster
        .call(
            &format!("create pod {READER}"),
            pods_api.create(&PostParams::default(), &reader),
        )
        .await
        .map_err(|e| Requirement::abort(IDS[4], e.to_string()))?;
    ctx.log.info(format!(
        "pod {READER} created (preferring a node other than {writer_node}); waiting for it"
    ));
    let read = run_pod(ctx, namespace, READER).await?;
    let reader_node = read.node.clone();
    if read.failed.is_some() || read.log.trim() != token {
        return Err(Requirement::fail(
            IDS[4],
            format!(
                "data did not outlive its pod: pod {READER} on node {reader_node} did not find \
                 the token pod {WRITER} had written on node {writer_node}{}: {}",
                read.failed
                    .map(|c| format!(" (exit code {c})"))
                    .unwrap_or_default(),
                one_line(&read.log)
            ),
        ));
    }
    let place = if reader_node != writer_node {
        format!("on another node, {reader_node}")
    } else if others.is_empty() {
        format!("on the same node {reader_node} (no other schedulable node)")
    } else {
        format!(
            "on the same node {reader_node} (the scheduler kept it there although other nodes \
             were schedulable: {})",
            others.join(", ")
        )
    };
    Ok(Requirement::pass(
        IDS[4],
        format!(
            "the token pod {WRITER} wrote on node {writer_node} was read back after its deletion \
             by pod {READER} {place}"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, HostPathVolumeSource, NodeSelector, PersistentVolumeSpec,
        VolumeNodeAffinity,
    };

    fn pv(spec: PersistentVolumeSpec) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pv1".into()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn affinity(key: &str, values: &[&str]) -> Option<VolumeNodeAffinity> {
        Some(VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: key.into(),
                        operator: "In".into(),
                        values: Some(values.iter().map(|v| v.to_string()).collect()),
                    }]),
                    ..Default::default()
                }],
            }),
        })
    }

    #[test]
    fn known_local_provisioners() {
        assert!(known_local("rancher.io/local-path").is_some());
        assert!(known_local("topolvm.io").is_some());
        assert!(known_local("local.csi.aliyun.com").is_some());
        assert!(known_local("example.com/my-hostpath").is_some());
        assert!(known_local("cinder.csi.openstack.org").is_none());
        assert!(known_local("driver.longhorn.io").is_none());
    }

    #[test]
    fn zonal_affinity_is_not_local_but_hostname_is() {
        let zonal = pv(PersistentVolumeSpec {
            csi: Some(CSIPersistentVolumeSource {
                driver: "cinder.csi.openstack.org".into(),
                volume_handle: "v".into(),
                ..Default::default()
            }),
            node_affinity: affinity("topology.cinder.csi.openstack.org/zone", &["nova"]),
            ..Default::default()
        });
        assert!(local_signs(&zonal).is_empty());
        let pinned = pv(PersistentVolumeSpec {
            host_path: Some(HostPathVolumeSource {
                path: "/opt/local-path/pv1".into(),
                ..Default::default()
            }),
            node_affinity: affinity("kubernetes.io/hostname", &["w1"]),
            ..Default::default()
        });
        assert_eq!(
            local_signs(&pinned),
            [
                "PV pv1 has a hostPath source (/opt/local-path/pv1)",
                "PV pv1 has a node affinity pinning it to node w1 (kubernetes.io/hostname)"
            ]
        );
        let topolvm = pv(PersistentVolumeSpec {
            node_affinity: affinity("topology.topolvm.io/node", &["w2"]),
            ..Default::default()
        });
        assert_eq!(local_signs(&topolvm).len(), 1);
    }

    #[test]
    fn version_decides_severity() {
        assert_eq!(local_status("scs-0211-v1"), Status::Fail);
        assert_eq!(local_status("scs-0211-v2"), Status::Warn);
        assert_eq!(local_status("scs-0211"), Status::Fail);
    }
}
