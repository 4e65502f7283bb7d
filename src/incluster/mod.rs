//! Running the suite inside the cluster, like Sonobuoy but without it.
//!
//! `run --in-cluster` creates, from the builders in [`manifests`] (which `gen` prints, one
//! source of truth): a namespace `skc-<run id>-runner`, a ServiceAccount, a Role (its own
//! namespace: the results ConfigMap), a ClusterRole and ClusterRoleBinding named
//! `scs-kaas-check-<run id>` with the least rights of the selected checks ([`rbac`]), a
//! ConfigMap with the given data files, and a Job running this suite's image with the same
//! selection. The run id is shared (`--run-id`), so the in-cluster run's scratch
//! namespaces carry the same label as everything else.
//!
//! Progress: the outer process follows the pod's log (`pods/log?follow=true`), which holds
//! the in-cluster run's stderr progress and stdout verdict lines, and copies it to stderr.
//! Results: the in-cluster run stores `junit.xml`, `report.yaml`, the check logs, its
//! verdict lines and its exit code in a ConfigMap of its own namespace
//! (`run --results-configmap`); the outer process reads it — no kubectl, no exec. A
//! ConfigMap holds at most 1 MiB: logs are cut from the front to fit (the reports never
//! are; they are small).
//!
//! This orchestration sits beside the runner: it uses the cluster helpers and the check
//! registry (for the RBAC table), never the command line.

pub mod manifests;
pub mod rbac;
mod results;
mod status;

use results::read_results;
pub use results::{Lines, Results, export_results, write_sonobuoy};
pub use status::{RetrieveOptions, gen_yaml, retrieve, status};

use crate::catalogue::Testcase;
use crate::cluster::config::ConnectOptions;
use crate::cluster::errors::{ApiError, human_duration};
use crate::cluster::objects::{CONFIGMAP_BUDGET, create, cut_front, store_configmap};
use crate::cluster::preflight::{self, ConnectError};
use crate::cluster::{self, Cluster, ClusterObject, RUNNER_CHECK, jobs, pods, wait};
use crate::console;
use crate::outcome::{EXIT_ABORT, EXIT_OK, EXIT_USAGE};
use crate::settings::RunConfig;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the results ConfigMap in the runner's namespace.
pub const RESULTS_CONFIGMAP: &str = "scs-kaas-check-results";
/// Keys of the results ConfigMap besides the reports and `<testcase>.log`.
pub const VERDICTS_KEY: &str = "verdicts";
/// The run's `ERROR:`/`WARNING:` lines, which the outer process prints as they were.
pub const DIAGNOSTICS_KEY: &str = "diagnostics";
pub const EXIT_CODE_KEY: &str = "exit-code";

// ------------------------------------------------------------------ run --in-cluster

/// What `runner::run` settled before handing over: the selection and where reports go.
pub struct Handover {
    pub run_id: String,
    pub selected: Vec<Testcase>,
    pub output_dir: PathBuf,
}

/// Validates what cannot work inside the cluster. `Err` is a usage error.
pub fn check_args(args: &RunConfig) -> Result<(), String> {
    if args.offering {
        return Err(
            "--offering cannot be combined with --in-cluster (one cluster at a time)".into(),
        );
    }
    if args.catalogue.catalogue.is_some() {
        return Err(
            "--catalogue cannot be combined with --in-cluster (the image has the built-in catalogue)"
                .into(),
        );
    }
    if args.in_cluster.results_configmap.is_some() {
        return Err("--results-configmap is set by --in-cluster itself".into());
    }
    Ok(())
}

/// Connects to the one cluster `options` name; `Err` carries the exit code and reason.
async fn connect(
    options: &ConnectOptions,
) -> Result<(kube::Client, preflight::ServerInfo), (u8, String)> {
    preflight::connect_one(options).await.map_err(|e| match e {
        ConnectError::Config(m) => (EXIT_USAGE, m),
        ConnectError::Unreachable(m) => (EXIT_ABORT, m),
    })
}

/// How the in-cluster run ended, before cleanup.
enum Ended {
    Results(Results),
    /// Nothing to retrieve: ABORT everything with this reason.
    Abort(String),
}

/// `run --in-cluster`. Returns the exit code, or `Err((code, reason))` when every selected
/// testcase must ABORT with `reason` (the caller writes the reports).
pub async fn run(args: &RunConfig, plan: &Handover) -> Result<u8, (u8, String)> {
    let (client, info) = connect(&args.cluster).await?;
    console::note(&format!(
        "scs-kaas-check {} run {} in the cluster: {} ({}) at {}, image {}",
        env!("CARGO_PKG_VERSION"),
        plan.run_id,
        info.subject,
        info.git_version,
        info.host,
        args.in_cluster.image
    ));
    let objects =
        manifests::build(args, &plan.run_id, &plan.selected).map_err(|e| (EXIT_USAGE, e))?;
    let cluster = Cluster::new(
        client,
        plan.run_id.clone(),
        args.cluster.request_timeout,
        args.keep,
    );

    let (cancel_tx, mut cancel) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(crate::signals::watch(cancel_tx, plan.run_id.clone()));
    let ended = tokio::select! {
        ended = drive(&cluster, args, plan, &objects) => ended,
        _ = cancel.wait_for(|c| *c) => Ended::Abort("the run was interrupted".into()),
    };

    // Cleanup on every path: the runner namespace (the pod goes with it), whatever the
    // in-cluster run left under the run id, then the cluster-scoped RBAC.
    for line in cluster.release(None).await {
        console::note(&format!("cleanup: {line}"));
    }
    if !args.keep {
        let lines = match cluster.sweep(Some(&plan.run_id), true).await {
            Ok(lines) => lines,
            Err(e) => vec![format!("CAUTION: {e}")],
        };
        let rbac = match cluster.sweep_rbac(Some(&plan.run_id), true).await {
            Ok(lines) => lines,
            Err(e) => vec![format!("CAUTION: {e}")],
        };
        lines
            .iter()
            .chain(&rbac)
            .for_each(|l| console::note(&format!("cleanup: {l}")));
    }
    signals.abort();

    match ended {
        Ended::Results(results) => {
            if let Err(e) = results.write(&plan.output_dir) {
                console::problem(&format!(
                    "cannot write the reports to {}: {e}",
                    plan.output_dir.display()
                ));
            }
            results.print_verdicts();
            console::note(&format!(
                "{} (reports in {})",
                results.summary(),
                plan.output_dir.display()
            ));
            Ok(results.exit_code())
        }
        Ended::Abort(reason) => Err((EXIT_ABORT, reason)),
    }
}

async fn drive(
    cluster: &Cluster,
    args: &RunConfig,
    plan: &Handover,
    objects: &manifests::Objects,
) -> Ended {
    match start(cluster, objects).await {
        Ok(()) => {}
        Err(e) => return Ended::Abort(format!("cannot set up the in-cluster run: {e}")),
    }
    let ns = objects.namespace_name();
    let job_name = objects.job_name();
    console::note(&format!(
        "created namespace {ns} and job {job_name}; waiting for its pod"
    ));
    let pod =
        match jobs::wait_started(cluster, &ns, &job_name, args.workload.pod_start_timeout).await {
            Ok(pod) => pod,
            Err(reason) => return Ended::Abort(reason),
        };
    console::note(&format!("pod {ns}/{pod} started; following its log"));
    let rounds = plan.selected.len().div_ceil(
        args.parallel
            .map(usize::from)
            .unwrap_or(plan.selected.len())
            .max(1),
    );
    let deadline = args.timeout * rounds.max(1) as u32 + Duration::from_secs(300);
    if tokio::time::timeout(
        deadline,
        jobs::follow(cluster, &ns, &pod, None, |line| {
            console::note(&format!("[in-cluster] {line}"))
        }),
    )
    .await
    .map(|broke| broke.map(|w| console::caution(&w)))
    .is_err()
    {
        return Ended::Abort(format!(
            "the in-cluster run did not finish within {}",
            human_duration(deadline)
        ));
    }
    // The log ends when the container does; the results were stored before that.
    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    let finished = wait::object(&pods_api, &pod, Duration::from_secs(60), |p| match p {
        None => Some(None),
        Some(p) => {
            matches!(pods::phase(p).as_str(), "Succeeded" | "Failed").then(|| Some(p.clone()))
        }
    })
    .await;
    match read_results(cluster, &ns).await {
        Ok(Some(results)) => Ended::Results(results),
        Ok(None) => {
            let state = match finished {
                Ok(Some(p)) => pods::describe(&p, &|_| String::new()),
                Ok(None) => format!("pod {pod} is gone"),
                Err(t) => t
                    .last
                    .first()
                    .map(|p| pods::describe(p, &|_| String::new()))
                    .unwrap_or_else(|| format!("pod {pod} is gone")),
            };
            Ended::Abort(format!(
                "the in-cluster run ended without storing results ({state}); its log is above"
            ))
        }
        Err(e) => Ended::Abort(format!(
            "cannot read the results of the in-cluster run: {e}"
        )),
    }
}

async fn start(cluster: &Cluster, o: &manifests::Objects) -> Result<(), ApiError> {
    let c = cluster.client.clone();
    cluster
        .scratch_namespace(RUNNER_CHECK, manifests::RUNNER_PURPOSE)
        .await?;
    let ns = o.namespace_name();
    cluster.track(
        RUNNER_CHECK,
        ClusterObject::ClusterRoleBinding(
            o.cluster_role_binding
                .metadata
                .name
                .clone()
                .unwrap_or_default(),
        ),
    );
    cluster.track(
        RUNNER_CHECK,
        ClusterObject::ClusterRole(o.cluster_role.metadata.name.clone().unwrap_or_default()),
    );
    create(
        cluster,
        Api::<ServiceAccount>::namespaced(c.clone(), &ns),
        &o.service_account,
    )
    .await?;
    create(cluster, Api::<Role>::namespaced(c.clone(), &ns), &o.role).await?;
    create(
        cluster,
        Api::<RoleBinding>::namespaced(c.clone(), &ns),
        &o.role_binding,
    )
    .await?;
    create(cluster, Api::<ClusterRole>::all(c.clone()), &o.cluster_role).await?;
    create(
        cluster,
        Api::<ClusterRoleBinding>::all(c.clone()),
        &o.cluster_role_binding,
    )
    .await?;
    if let Some(data) = &o.data {
        create(cluster, Api::<ConfigMap>::namespaced(c.clone(), &ns), data).await?;
    }
    create(cluster, Api::<Job>::namespaced(c, &ns), &o.job).await
}
