//! scs-0211: exactly one default StorageClass, backed by a real provisioner, whose volumes
//! are not node-local and really outlive their pods. The functional part creates a claim
//! WITHOUT `storageClassName` (so the default applies), lets a pod write a random token
//! to it, deletes that pod, and lets a second pod (preferably on another node) read the
//! token back.
//!
//! This file: the StorageClass requirements (one default, real provisioner, not local) and
//! the check's flow. The functional test (claim, writer and reader pods) is in
//! [`functional`], what a writer that cannot write tells in [`fs_group`].

mod fs_group;
mod functional;

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

/// Default-class annotations whose value the API server ignores: it honours only the exact
/// value `"true"` (`storageutil.IsDefaultAnnotation` of `k8s.io/component-helpers`), so
/// `"True"`, `"yes"` or `" true"` do not make a class the default. One line each.
pub fn ignored_default_annotations(classes: &[StorageClass]) -> Vec<String> {
    let mut lines = Vec::new();
    for sc in classes {
        for key in DEFAULT_ANNOTATIONS {
            if let Some(value) = sc.annotations().get(key)
                && value != "true"
                && value != "false"
            {
                lines.push(format!(
                    "StorageClass {} is annotated {key}: {value:?}, which the API server \
                     ignores (only the exact value \"true\" marks a default class)",
                    sc.name_any()
                ));
            }
        }
    }
    lines
}

/// The default class the API server gives a claim without `storageClassName` when several
/// are annotated: the DefaultStorageClass admission plugin (`GetDefaultClass` of
/// `k8s.io/component-helpers/storage/volume`, Kubernetes 1.26+) takes the newest by
/// `creationTimestamp`, ties broken by name in ascending order.
pub fn effective_default<'a>(defaults: &[&'a StorageClass]) -> Option<&'a StorageClass> {
    defaults.iter().copied().min_by(|a, b| {
        let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(b)
            .cmp(&created(a))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    })
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
    ctx.plan(IDS);
    let cluster = ctx.cluster();
    let api: Api<StorageClass> = Api::all(cluster.client.clone());
    let classes = match cluster
        .call("list storageclasses", api.list(&ListParams::default()))
        .await
    {
        Ok(list) => list.items,
        Err(e) => return CheckOutcome::aborted("", e.to_string()),
    };
    let ignored = ignored_default_annotations(&classes);
    for line in &ignored {
        ctx.decisions.lock().warn(line.clone());
    }
    let Some(default) = exactly_one_default(ctx, &classes, &ignored) else {
        return CheckOutcome::default();
    };
    let class = default.name_any();
    let provisioner = default.provisioner.clone();
    ctx.log
        .info(format!("default StorageClass {}", describe_class(default)));
    ctx.decide(Requirement::info(
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

    if provisioner == NO_PROVISIONER {
        ctx.decide(Requirement::fail(
            IDS[1],
            format!(
                "default StorageClass {class} uses {NO_PROVISIONER}: no volume is ever \
                 provisioned for a claim, an administrator must create each PV by hand"
            ),
        ));
        ctx.not_attempted(
            &IDS[2..5],
            &format!(
                "default StorageClass {class} uses {NO_PROVISIONER}, so no volume is \
                 provisioned for a claim (see real-provisioner)"
            ),
        );
        return CheckOutcome::default();
    }
    ctx.decide(Requirement::pass(
        IDS[1],
        format!("default StorageClass {class} uses provisioner {provisioner}"),
    ));

    // A known local provisioner decides not-local from its name; where that is a FAIL
    // (scs-0211-v1) the functional test cannot change the verdict any more.
    let named_local = known_local(&provisioner);
    let standard = ctx.testcase.module.clone();
    if let Some(reason) = &named_local
        && local_status(&standard) == Status::Fail
    {
        ctx.decide(not_local(&class, &standard, std::slice::from_ref(reason)));
        ctx.not_attempted(&IDS[3..5], "not-local already failed");
        return CheckOutcome::default();
    }

    let binding = functional::binding(ctx, default).await;
    let failed = binding.requirement.status == Status::Fail;
    let setup_aborted = binding.requirement.status == Status::Abort;
    let abort_message = binding.requirement.message.clone();
    ctx.decide(binding.requirement);
    let mut local: Vec<String> = named_local.into_iter().collect();
    if let Some(pv) = &binding.volume {
        local.extend(local_signs(pv));
    }
    let not_local_requirement = if !local.is_empty() {
        not_local(&class, &standard, &local)
    } else if let Some(pv) = &binding.volume {
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
    } else if failed {
        Requirement::not_attempted(
            IDS[2],
            format!(
                "provisioner {provisioner} is not a known local provisioner, and no volume \
                 was provisioned to inspect (rwo-binding failed)"
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
    };
    let local_failed = not_local_requirement.status == Status::Fail;
    ctx.decide(not_local_requirement);
    match binding.bound {
        _ if failed => ctx.not_attempted(&IDS[4..5], "rwo-binding already failed"),
        _ if local_failed => ctx.not_attempted(&IDS[4..5], "not-local already failed"),
        Some(bound) => ctx.decide(functional::persistence(ctx, bound).await),
        None if setup_aborted => ctx.decide(Requirement::abort(
            IDS[4],
            format!("not tested: the claim could not be set up ({abort_message})"),
        )),
        None => ctx.decide(Requirement::abort(
            IDS[4],
            "not tested: the claim was not bound (see rwo-binding)",
        )),
    }
    CheckOutcome::default()
}

/// `exactly-one-default`, decided and published; the default class when there is exactly
/// one. Without exactly one the rest is not attempted (there is no class to test).
fn exactly_one_default<'a>(
    ctx: &CheckContext,
    classes: &'a [StorageClass],
    ignored: &[String],
) -> Option<&'a StorageClass> {
    let listing: Vec<String> = classes
        .iter()
        .map(describe_class)
        .chain(ignored.iter().cloned())
        .collect();
    let defaults: Vec<&StorageClass> = classes.iter().filter(|c| is_default(c).is_some()).collect();
    let names = |list: &[&StorageClass]| {
        list.iter()
            .map(|c| format!("{} ({})", c.name_any(), c.provisioner))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (message, why) = match defaults.as_slice() {
        [one] => {
            ctx.decide(
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
            return Some(*one);
        }
        [] => {
            let all: Vec<&StorageClass> = classes.iter().collect();
            let mut message = if classes.is_empty() {
                "no default StorageClass: the cluster has no StorageClass at all".to_string()
            } else {
                format!(
                    "no default StorageClass among {} class(es): {}; annotate one with \
                     storageclass.kubernetes.io/is-default-class: \"true\"",
                    classes.len(),
                    names(&all)
                )
            };
            for line in ignored {
                message.push_str("; ");
                message.push_str(line);
            }
            (message, "there is no default StorageClass".to_string())
        }
        several => {
            let chosen = effective_default(several)
                .map(|c| {
                    format!(
                        "; a claim without storageClassName gets {} (the API server picks the \
                         newest default{}, ties by name)",
                        c.name_any(),
                        c.metadata
                            .creation_timestamp
                            .as_ref()
                            .map(|t| format!(": created {}", t.0))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            (
                format!(
                    "{} StorageClasses are annotated as default: {}; exactly one must be{chosen}",
                    several.len(),
                    names(several)
                ),
                format!("{} StorageClasses are annotated as default", several.len()),
            )
        }
    };
    ctx.decide(Requirement::fail(IDS[0], message).with_details(listing));
    ctx.not_attempted(&IDS[1..], &why);
    None
}

/// `not-local` for a class whose storage is node-local (`signs` say why): FAIL under
/// scs-0211-v1, a warning from v2 on.
fn not_local(class: &str, standard: &str, signs: &[String]) -> Requirement {
    let status = local_status(standard);
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
            signs.join("; ")
        ),
    )
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
