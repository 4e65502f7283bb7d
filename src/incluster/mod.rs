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
//! Progress: the outer process follows the pod's log (`pods/log?follow=true`, resumed when
//! a load balancer or an API server restart cuts it), which holds the in-cluster run's
//! stderr progress and stdout verdict lines, and copies it to stderr. The end of the run
//! is decided from the pod's status, never from the end of the stream; the outer deadline
//! is derived from the checks' own deadlines ([`outer_deadline`]).
//! Results: the in-cluster run stores every file of its output directory (`junit.xml`,
//! `report.yaml`, the check logs, the upstream e2e files), its verdict lines and its exit
//! code in a bundle of ConfigMaps of its own namespace (`run --results-configmap`,
//! `cluster::bundle`: compressed, split, a manifest with a digest written last); the outer
//! process reads it — no kubectl, no exec — and reports incomplete results as such.
//!
//! This orchestration sits beside the runner: it uses the cluster helpers and the check
//! registry (for the RBAC table), never the command line.

pub mod manifests;
pub mod rbac;
mod results;
mod status;

pub use results::{Lines, Results, export_results, write_sonobuoy};
use results::{Stored, read_results};
pub use status::{RetrieveOptions, gen_yaml, retrieve, status};

use crate::catalogue::Testcase;
use crate::cluster::config::ConnectOptions;
use crate::cluster::errors::{ApiError, human_duration};
use crate::cluster::objects::{create, create_cluster_identity};
use crate::cluster::preflight::{self, ConnectError};
use crate::cluster::{self, Cluster, RUNNER_CHECK, jobs};
use crate::console;
use crate::outcome::{EXIT_ABORT, EXIT_OK, EXIT_USAGE};
use crate::settings::RunConfig;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the results ConfigMap in the runner's namespace.
pub const RESULTS_CONFIGMAP: &str = "scs-kaas-check-results";
/// Plain keys of the results manifest (beside the bundle's own).
pub const VERDICTS_KEY: &str = "verdicts";
/// The run's `ERROR:`/`WARNING:` lines, which the outer process prints as they were.
pub const DIAGNOSTICS_KEY: &str = "diagnostics";
pub const EXIT_CODE_KEY: &str = "exit-code";
/// Where the outer process keeps the runner's log (the in-cluster run's output).
pub const RUNNER_LOG: &str = "logs/in-cluster-runner.log";
/// Time beyond the checks' deadlines for the runner to start, run its preflight, write
/// and store its reports.
const RUNNER_GRACE: Duration = Duration::from_secs(300);

/// How long the outer process waits for the in-cluster run, by the rule the runner inside
/// applies: every selected check may take its deadline (`CheckDef::deadline`: `--timeout`,
/// or `--e2e-timeout` plus set-up time for upstream e2e runs) plus its cleanup; checks that
/// run alone follow each other, and with `--parallel` a check may wait for a whole
/// deadline of another before its turn, so the bound is the sum over the selected checks
/// (a run with its checks in parallel ends much earlier, and the outer process ends with
/// it: it decides the end from the pod's status), plus [`RUNNER_GRACE`].
pub fn outer_deadline(
    e2e: &crate::checks::upstream_e2e::Settings,
    timeout: Duration,
    selected: &[Testcase],
) -> Duration {
    selected
        .iter()
        .map(|tc| {
            crate::checks::implementing(&tc.id)
                .map(|i| i.check.deadline(e2e, timeout))
                .unwrap_or(timeout)
                + cluster::CLEANUP_BOUND
        })
        .sum::<Duration>()
        + RUNNER_GRACE
}

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
    let log = std::sync::Mutex::new(String::new());
    let ended = tokio::select! {
        ended = drive(&cluster, args, plan, &objects, &log) => ended,
        _ = cancel.wait_for(|c| *c) => Ended::Abort("the run was interrupted".into()),
    };
    // The runner's own output, whatever happened: the record of a run that failed.
    let log = log.into_inner().unwrap_or_else(|e| e.into_inner());
    if !log.is_empty() {
        let path = plan.output_dir.join(RUNNER_LOG);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, &log));
        if let Err(e) = written {
            console::problem(&format!("cannot write {}: {e}", path.display()));
        }
    }

    // Cleanup on every path: the runner namespace (the pod goes with it), whatever the
    // in-cluster run left under the run id, then the cluster-scoped RBAC. A runner that may
    // still run (interrupted, timed out) is stopped first, its pod deleted and waited for:
    // it deletes what it created, and its namespace then goes at once.
    if !args.keep && matches!(ended, Ended::Abort(_)) {
        let ns = objects.namespace_name();
        let grace = manifests::RUNNER_GRACE + Duration::from_secs(30);
        if let Err(e) = jobs::delete_pods(&cluster, &ns, manifests::JOB, grace).await {
            console::note(&format!("cleanup: {e}"));
        }
    }
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
                "complete results: {} (reports in {})",
                results.summary(),
                plan.output_dir.display()
            ));
            Ok(results.exit_code())
        }
        Ended::Abort(reason) => Err((EXIT_ABORT, reason)),
    }
}

/// The last `CRITICAL:` and `PROBLEM:` lines of a runner's log (the tool's own trouble,
/// not findings): why it could not finish or store its results.
fn error_lines(log: &str) -> Vec<String> {
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("CRITICAL: ") || l.starts_with("PROBLEM: "))
        .collect();
    errors
        .iter()
        .skip(errors.len().saturating_sub(3))
        .map(|l| l.to_string())
        .collect()
}

async fn drive(
    cluster: &Cluster,
    args: &RunConfig,
    plan: &Handover,
    objects: &manifests::Objects,
    log: &std::sync::Mutex<String>,
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
    let deadline = outer_deadline(&args.e2e, args.timeout, &plan.selected);
    console::note(&format!(
        "pod {ns}/{pod} started; following its log (the run may take up to {}: the selected \
         checks' deadlines and cleanup)",
        human_duration(deadline)
    ));
    let followed = tokio::time::timeout(
        deadline,
        jobs::follow(cluster, &ns, &pod, None, |event| match event {
            jobs::LogEvent::Line(line) => {
                console::note(&format!("[in-cluster] {line}"));
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(line);
                log.push('\n');
            }
            jobs::LogEvent::Note(note) => console::note(&note),
        }),
    )
    .await;
    let state = match followed {
        Err(_) => {
            return Ended::Abort(format!(
                "the in-cluster run did not finish within {} (the selected checks' deadlines \
                 and cleanup)",
                human_duration(deadline)
            ));
        }
        Ok(Err(e)) => return Ended::Abort(format!("cannot follow the in-cluster run: {e}")),
        Ok(Ok(jobs::Followed::Gone)) => {
            return Ended::Abort(format!(
                "the pod {ns}/{pod} of the in-cluster run was deleted before it finished"
            ));
        }
        Ok(Ok(jobs::Followed::Terminated { pod, resumed })) => {
            if resumed > 0 {
                console::note(&format!(
                    "the log stream was resumed {resumed} time(s); every line was shown once"
                ));
            }
            crate::cluster::pods::describe(&pod, &|_| String::new())
        }
    };
    // The container has terminated: its results are stored, or they never will be.
    let errors = || {
        let log = log.lock().unwrap_or_else(|e| e.into_inner());
        match error_lines(&log) {
            e if e.is_empty() => String::new(),
            e => format!("; the run said: {}", e.join(" | ")),
        }
    };
    match read_results(cluster, &ns).await {
        Ok(Stored::Complete(results)) => Ended::Results(results),
        Ok(Stored::Incomplete { why, verdicts }) => Ended::Abort(format!(
            "the results of the in-cluster run are incomplete ({why}); its own verdicts were: \
             {}{}",
            results::verdict_summary(&verdicts),
            errors()
        )),
        Ok(Stored::Nothing) => Ended::Abort(format!(
            "the in-cluster run ended without storing results ({state}){}; its log is in {}",
            errors(),
            RUNNER_LOG
        )),
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
    create_cluster_identity(
        cluster,
        RUNNER_CHECK,
        &ns,
        &o.service_account,
        &o.cluster_role,
        &o.cluster_role_binding,
    )
    .await?;
    create(cluster, Api::<Role>::namespaced(c.clone(), &ns), &o.role).await?;
    create(
        cluster,
        Api::<RoleBinding>::namespaced(c.clone(), &ns),
        &o.role_binding,
    )
    .await?;
    if let Some(data) = &o.data {
        create(cluster, Api::<ConfigMap>::namespaced(c.clone(), &ns), data).await?;
    }
    create(cluster, Api::<Job>::namespaced(c, &ns), &o.job).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::upstream_e2e::Settings;

    fn testcase(id: &str) -> Testcase {
        Testcase {
            id: id.into(),
            module: String::new(),
            module_name: String::new(),
            target: crate::catalogue::MAIN_TARGET.into(),
            description: String::new(),
            url: None,
            section: None,
            lifetime: None,
        }
    }

    /// The default scope holds the conformance run (3 h `--e2e-timeout` inside the pod): the
    /// outer process must wait at least that long, not `--timeout` per round (25 min).
    #[test]
    fn the_outer_deadline_covers_the_checks_own_deadlines() {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        let selected: Vec<Testcase> = [
            "cncf-k8s-conformance",
            "version-policy-check",
            "kaas-networking-check",
        ]
        .into_iter()
        .map(testcase)
        .collect();
        let e2e = Settings::default();
        let deadline = outer_deadline(&e2e, minutes(20), &selected);
        let inner = e2e.e2e_timeout + crate::checks::upstream_e2e::SETUP_GRACE + minutes(40);
        assert!(deadline >= inner, "{deadline:?} < {inner:?}");
        let longer = Settings {
            e2e_timeout: minutes(600),
            ..Settings::default()
        };
        assert!(outer_deadline(&longer, minutes(20), &selected) >= minutes(640));
        // Without an upstream run, `--timeout` per check and its cleanup.
        let quick = outer_deadline(&e2e, minutes(1), &selected[1..]);
        assert_eq!(
            quick,
            minutes(2) + 2 * cluster::CLEANUP_BOUND + RUNNER_GRACE
        );
    }
}
