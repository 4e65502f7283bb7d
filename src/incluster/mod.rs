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
pub const EXIT_CODE_KEY: &str = "exit-code";

// ------------------------------------------------------------------ the in-cluster side

/// Stores the run's results in ConfigMap `name` of the client's default namespace (the
/// service account's namespace when running in a pod). Returns a line for stderr.
pub async fn export_results(
    client: &kube::Client,
    request_timeout: Duration,
    name: &str,
    output_dir: &Path,
    verdicts: &str,
    exit_code: u8,
) -> Result<String, ApiError> {
    let mut data = BTreeMap::new();
    for file in ["junit.xml", "report.yaml"] {
        if let Ok(text) = std::fs::read_to_string(output_dir.join(file)) {
            data.insert(file.to_string(), text);
        }
    }
    data.insert(VERDICTS_KEY.into(), verdicts.to_string());
    data.insert(EXIT_CODE_KEY.into(), exit_code.to_string());
    let mut logs: Vec<(String, String)> = std::fs::read_dir(output_dir.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some((file, text))
        })
        .collect();
    logs.sort();
    let fixed: usize = data.values().map(String::len).sum();
    let total: usize = fixed + logs.iter().map(|(_, t)| t.len()).sum::<usize>();
    if total > CONFIGMAP_BUDGET && !logs.is_empty() {
        let share = CONFIGMAP_BUDGET.saturating_sub(fixed) / logs.len();
        for (_, text) in &mut logs {
            *text = cut_front(text, share);
        }
    }
    data.extend(logs);
    store_configmap(client, request_timeout, name, data).await
}

/// Sonobuoy plugin contract: the results file in the results directory, then `done`
/// holding its path.
pub fn write_sonobuoy(dir: &Path, output_dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let junit = dir.join("junit.xml");
    std::fs::copy(output_dir.join("junit.xml"), &junit)?;
    std::fs::write(dir.join("done"), junit.display().to_string())?;
    Ok(junit)
}

// ------------------------------------------------------------------ results hand-off

/// The results of an in-cluster run as read from its ConfigMap.
pub struct Results {
    data: BTreeMap<String, String>,
}

impl Results {
    pub fn exit_code(&self) -> u8 {
        self.data
            .get(EXIT_CODE_KEY)
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(EXIT_ABORT)
    }

    /// Writes junit.xml, report.yaml and logs/<testcase>.log into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join("logs"))?;
        for (key, text) in &self.data {
            let path = match key.as_str() {
                "junit.xml" | "report.yaml" => dir.join(key),
                k if k.ends_with(".log") && !k.contains('/') => dir.join("logs").join(k),
                _ => continue,
            };
            std::fs::write(path, text)?;
        }
        Ok(())
    }

    /// The in-cluster run's verdict lines, printed on stdout like a local run's.
    pub fn print_verdicts(&self) {
        for line in self
            .data
            .get(VERDICTS_KEY)
            .into_iter()
            .flat_map(|v| v.lines())
        {
            if let Some((id, verdict)) = line.split_once(": ") {
                console::verdict(id, verdict);
            }
        }
    }

    /// `N testcases: ...` from the verdict lines.
    pub fn summary(&self) -> String {
        let lines: Vec<&str> = self
            .data
            .get(VERDICTS_KEY)
            .map(|v| v.lines().collect())
            .unwrap_or_default();
        let count = |v: &str| lines.iter().filter(|l| l.ends_with(v)).count();
        format!(
            "{} verdicts: {} passed, {} failed, {} aborted",
            lines.len(),
            count(": PASS"),
            count(": FAIL"),
            count(": ABORT")
        )
    }
}

async fn read_results(cluster: &Cluster, namespace: &str) -> Result<Option<Results>, ApiError> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), namespace);
    let cm = cluster
        .call(
            &format!("read configmap {namespace}/{RESULTS_CONFIGMAP}"),
            api.get_opt(RESULTS_CONFIGMAP),
        )
        .await?;
    Ok(cm.map(|cm| Results {
        data: cm.data.unwrap_or_default(),
    }))
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
            Err(e) => vec![format!("WARNING: {e}")],
        };
        let rbac = match cluster.sweep_rbac(Some(&plan.run_id), true).await {
            Ok(lines) => lines,
            Err(e) => vec![format!("WARNING: {e}")],
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
                console::error(&format!(
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
    .map(|broke| broke.map(|w| console::warn(&w)))
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

// ------------------------------------------------------------------ gen, status, retrieve

/// `gen`: the objects of `run --in-cluster` with the same flags, as YAML documents.
pub fn gen_yaml(args: &RunConfig, run_id: &str, selected: &[Testcase]) -> Result<String, String> {
    manifests::build(args, run_id, selected)?.to_yaml()
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Runtime::new().map_err(|e| {
        console::error(&format!("cannot start the async runtime: {e}"));
        EXIT_ABORT
    })
}

/// An in-cluster run found in the cluster.
struct Found {
    run_id: String,
    namespace: String,
    state: String,
    started: Option<jiff::Timestamp>,
    finished: bool,
}

async fn find_runs(cluster: &Cluster) -> Result<Vec<Found>, ApiError> {
    let api: Api<Job> = Api::all(cluster.client.clone());
    let selector = format!(
        "{},{}={RUNNER_CHECK}",
        cluster::run_selector(None),
        cluster::CHECK_KEY
    );
    let jobs = cluster
        .call(
            "list jobs of in-cluster runs",
            api.list(&ListParams::default().labels(&selector)),
        )
        .await?;
    let mut found: Vec<Found> =
        jobs.items
            .into_iter()
            .map(|job| {
                let labels = job.metadata.labels.clone().unwrap_or_default();
                let status = job.status.clone().unwrap_or_default();
                let condition =
                    status.conditions.iter().flatten().find(|c| {
                        c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed")
                    });
                let (state, finished) = match condition {
                    Some(c) if c.type_ == "Complete" => ("Complete".to_string(), true),
                    Some(c) => (
                        format!("Failed ({})", c.reason.clone().unwrap_or_default()),
                        true,
                    ),
                    None if status.active.unwrap_or(0) > 0 => ("Running".into(), false),
                    None => ("Pending".into(), false),
                };
                Found {
                    run_id: labels.get(cluster::RUN_ID_KEY).cloned().unwrap_or_default(),
                    namespace: job.metadata.namespace.clone().unwrap_or_default(),
                    state,
                    started: status
                        .start_time
                        .map(|t| t.0)
                        .or(job.metadata.creation_timestamp.map(|t| t.0)),
                    finished,
                }
            })
            .collect();
    found.sort_by_key(|f| f.started);
    Ok(found)
}

/// The cluster (read-only use: `keep` is set) and the in-cluster runs found in it, or the
/// exit code after printing why not.
async fn connect_and_find_runs(args: &ConnectOptions) -> Result<(Cluster, Vec<Found>), u8> {
    let cluster = match connect(args).await {
        Ok((client, _)) => Cluster::new(client, String::new(), args.request_timeout, true),
        Err((code, reason)) => {
            console::error(&reason);
            return Err(code);
        }
    };
    match find_runs(&cluster).await {
        Ok(runs) => Ok((cluster, runs)),
        Err(e) => {
            console::error(&e.to_string());
            Err(EXIT_ABORT)
        }
    }
}

/// `status`: one line per in-cluster run on stdout. Returns the exit code.
pub fn status(connect: &ConnectOptions) -> u8 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let (cluster, runs) = match connect_and_find_runs(connect).await {
            Ok(found) => found,
            Err(code) => return code,
        };
        if runs.is_empty() {
            console::note("no in-cluster runs of scs-kaas-check in this cluster");
            return EXIT_OK;
        }
        println!(
            "{:8}  {:32}  {:24}  {:20}  RESULTS",
            "RUN", "NAMESPACE", "STATE", "STARTED"
        );
        for run in runs {
            // A run that FAILed a testcase exits 1, so its Job fails: with results stored,
            // the run itself finished.
            let (state, results) = match read_results(&cluster, &run.namespace).await {
                Ok(Some(r)) => (format!("Finished (exit {})", r.exit_code()), r.summary()),
                Ok(None) => (run.state.clone(), "-".into()),
                Err(e) => (run.state.clone(), format!("({e})")),
            };
            println!(
                "{:8}  {:32}  {:24}  {:20}  {results}",
                run.run_id,
                run.namespace,
                state,
                run.started
                    .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default(),
            );
        }
        EXIT_OK
    })
}

/// What `retrieve` fetches and where it puts it.
#[derive(Debug, Clone)]
pub struct RetrieveOptions {
    pub cluster: ConnectOptions,
    /// The run (default: the most recent finished one).
    pub run_id: Option<String>,
    /// Directory for the reports; `None`: `reports/<UTC timestamp>-<run id>/`.
    pub output_dir: Option<PathBuf>,
}

/// `retrieve`: copies the results of a finished in-cluster run. Returns its exit code.
pub fn retrieve(args: &RetrieveOptions) -> u8 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let (cluster, runs) = match connect_and_find_runs(&args.cluster).await {
            Ok(found) => found,
            Err(code) => return code,
        };
        let candidates: Vec<&Found> = runs
            .iter()
            .filter(|r| args.run_id.as_ref().is_none_or(|id| &r.run_id == id))
            .collect();
        let Some(run) = candidates
            .iter()
            .rev()
            .find(|r| r.finished)
            .or(candidates.last())
        else {
            console::error(&match &args.run_id {
                Some(id) => format!("no in-cluster run {id} in this cluster"),
                None => "no in-cluster runs in this cluster".to_string(),
            });
            return EXIT_USAGE;
        };
        let results = match read_results(&cluster, &run.namespace).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                console::error(&format!(
                    "run {} ({}) has no results yet: {}",
                    run.run_id, run.namespace, run.state
                ));
                return EXIT_ABORT;
            }
            Err(e) => {
                console::error(&e.to_string());
                return EXIT_ABORT;
            }
        };
        let dir = args.output_dir.clone().unwrap_or_else(|| {
            PathBuf::from("reports").join(format!(
                "{}-{}",
                jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ"),
                run.run_id
            ))
        });
        if let Err(e) = results.write(&dir) {
            console::error(&format!(
                "cannot write the reports to {}: {e}",
                dir.display()
            ));
            return EXIT_USAGE;
        }
        results.print_verdicts();
        console::note(&format!(
            "run {}: {} (reports in {})",
            run.run_id,
            results.summary(),
            dir.display()
        ));
        results.exit_code()
    })
}
