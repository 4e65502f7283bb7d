//! The functional part of the storage check: a claim without `storageClassName` binds
//! (WaitForFirstConsumer handled), a pod writes a random token, the pod is deleted, and a
//! second pod (preferably on another node) reads it back.

use super::*;

/// The outcome of the binding stage: `rwo-binding` decided, the PV the claim was bound to,
/// and what the persistence test needs when the claim is bound as required.
pub(super) struct Binding {
    pub(super) requirement: Requirement,
    pub(super) volume: Option<PersistentVolume>,
    pub(super) bound: Option<Bound>,
}

/// A claim bound as required: where it is, its PV and the token the writer will write.
pub(super) struct Bound {
    namespace: String,
    volume: Option<PersistentVolume>,
    token: String,
    /// Whether pod `writer` already exists (created before binding for WaitForFirstConsumer).
    writer_created: bool,
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

/// Creates the claim (and, for WaitForFirstConsumer classes, the writer pod that makes it
/// bind) and waits for it to be bound with the default class and ReadWriteOnce.
pub(super) async fn binding(ctx: &CheckContext, class: &StorageClass) -> Binding {
    let abort = |message: String| Binding {
        requirement: Requirement::abort(IDS[3], message),
        volume: None,
        bound: None,
    };
    let cluster = ctx.cluster();
    let namespace = match cluster.scratch_namespace(&ctx.testcase.id, "storage").await {
        Ok(ns) => ns,
        Err(e) => return abort(e.to_string()),
    };
    ctx.log.info(format!("created namespace {namespace}"));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), &namespace);
    if let Err(e) = cluster
        .call(
            &format!("create persistentvolumeclaim {CLAIM}"),
            claims.create(&PostParams::default(), &claim(ctx)),
        )
        .await
    {
        return abort(e.to_string());
    }
    let mode = binding_mode(class).to_string();
    let token = random_token();
    // WaitForFirstConsumer: the claim binds only once a pod using it is scheduled.
    let wait_first = mode == "WaitForFirstConsumer";
    if wait_first {
        if let Err(e) = create_writer(ctx, &namespace, &token).await {
            return abort(e);
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
    match wait_bound(ctx, &namespace, class).await {
        Ok((requirement, volume)) => {
            let bound = (requirement.status == Status::Pass).then(|| Bound {
                namespace,
                volume: volume.clone(),
                token,
                writer_created: wait_first,
            });
            Binding {
                requirement,
                volume,
                bound,
            }
        }
        Err(requirement) => Binding {
            requirement,
            volume: None,
            bound: None,
        },
    }
}

/// Pod `writer`, which writes `token` to the volume and reads it back.
async fn create_writer(ctx: &CheckContext, namespace: &str, token: &str) -> Result<(), String> {
    let cluster = ctx.cluster();
    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let writer = shell_pod(ctx, WRITER, &fs_group::writer_script(token), None);
    cluster
        .call(
            &format!("create pod {WRITER}"),
            pods_api.create(&PostParams::default(), &writer),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `data-persistence` on a bound claim: the writer writes, is deleted, the reader reads.
pub(super) async fn persistence(ctx: &CheckContext, bound: Bound) -> Requirement {
    if !bound.writer_created
        && let Err(e) = create_writer(ctx, &bound.namespace, &bound.token).await
    {
        return Requirement::abort(IDS[4], e);
    }
    persistence_test(ctx, &bound.namespace, bound.volume.as_ref(), &bound.token)
        .await
        .unwrap_or_else(|r| r)
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
        Err(wait::Timeout {
            refused: Some(e), ..
        }) => {
            return Err(Requirement::abort(
                IDS[3],
                format!("cannot watch claim {CLAIM}: {e}"),
            ));
        }
        Err(timeout) => {
            let phase = timeout
                .last
                .first()
                .and_then(|p| p.status.as_ref()?.phase.clone())
                .unwrap_or_else(|| "missing".into());
            let events = wait::recent_events(
                &cluster.client,
                namespace,
                "PersistentVolumeClaim",
                CLAIM,
                cluster.request_timeout,
            )
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

/// `log` on one line, at most 300 characters.
pub(super) fn one_line(log: &str) -> String {
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
    volume: Option<&PersistentVolume>,
    token: &str,
) -> Result<Requirement, Requirement> {
    let cluster = ctx.cluster();
    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    ctx.log
        .info(format!("waiting for pod {WRITER} to write the token"));
    let written = run_pod(ctx, namespace, WRITER).await?;
    let writer_node = written.node.clone();
    if written.failed == Some(fs_group::CANNOT_CREATE) {
        return Err(fs_group::unwritable(ctx, volume, &writer_node, &written.log).await);
    }
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
