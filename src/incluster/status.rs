//! `gen`, `status` and `retrieve`: the in-cluster runs seen from outside.

use super::*;
use k8s_openapi::api::core::v1::Pod;

/// `gen`: the objects of `run --in-cluster` with the same flags, as YAML documents.
pub fn gen_yaml(args: &RunConfig, run_id: &str, selected: &[Testcase]) -> Result<String, String> {
    manifests::build(args, run_id, selected)?.to_yaml()
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Runtime::new().map_err(|e| {
        console::critical(&format!("cannot start the async runtime: {e}"));
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
    // The Job controller records the end of a Job a moment after its pod's container has
    // terminated: a run whose runner has exited has ended, whatever its Job says yet.
    for run in found.iter_mut().filter(|r| !r.finished) {
        if let Some(code) = runner_exit_code(cluster, &run.namespace).await {
            run.state = format!("Ended (exit {code})");
            run.finished = true;
        }
    }
    found.sort_by_key(|f| f.started);
    Ok(found)
}

/// The exit code of the runner's container in `namespace`, once it has terminated for
/// good (see [`jobs::container_finished`]); `None` while it runs or cannot be read.
async fn runner_exit_code(cluster: &Cluster, namespace: &str) -> Option<i32> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let selector = format!("batch.kubernetes.io/job-name={}", manifests::JOB);
    let list = cluster
        .call(
            &format!("list the pods of job {namespace}/{}", manifests::JOB),
            pods.list(&ListParams::default().labels(&selector)),
        )
        .await
        .ok()?;
    list.items
        .iter()
        .filter(|p| jobs::container_finished(p, None))
        .find_map(|p| {
            p.status
                .as_ref()?
                .container_statuses
                .iter()
                .flatten()
                .find_map(|c| c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code))
        })
}

/// The cluster (read-only use: `keep` is set) and the in-cluster runs found in it, or the
/// exit code after printing why not.
async fn connect_and_find_runs(args: &ConnectOptions) -> Result<(Cluster, Vec<Found>), u8> {
    let cluster = match connect(args).await {
        Ok((client, _)) => Cluster::new(client, String::new(), args.request_timeout, true),
        Err((code, reason)) => {
            console::critical(&reason);
            return Err(code);
        }
    };
    match find_runs(&cluster).await {
        Ok(runs) => Ok((cluster, runs)),
        Err(e) => {
            console::critical(&e.to_string());
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
                Ok(Stored::Complete(r)) => (
                    format!("Finished (exit {})", r.exit_code()),
                    format!("complete: {}", r.summary()),
                ),
                Ok(Stored::Incomplete { why, .. }) => {
                    (run.state.clone(), format!("INCOMPLETE: {why}"))
                }
                Ok(Stored::Nothing) if run.finished => (
                    run.state.clone(),
                    format!(
                        "none: the run ended without storing results; `scs-kaas-check \
                         retrieve --run-id {}` fetches its log",
                        run.run_id
                    ),
                ),
                Ok(Stored::Nothing) => (run.state.clone(), "- (not finished)".into()),
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
            console::critical(&match &args.run_id {
                Some(id) => format!("no in-cluster run {id} in this cluster"),
                None => "no in-cluster runs in this cluster".to_string(),
            });
            return EXIT_USAGE;
        };
        let dir = args.output_dir.clone().unwrap_or_else(|| {
            PathBuf::from("reports").join(format!(
                "{}-{}",
                jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ"),
                run.run_id
            ))
        });
        let results = match read_results(&cluster, &run.namespace).await {
            Ok(Stored::Complete(r)) => r,
            Ok(Stored::Incomplete { why, verdicts }) => {
                console::critical(&format!(
                    "the results of run {} ({}) are incomplete: {why}; its own verdicts were: {}",
                    run.run_id,
                    run.namespace,
                    results::verdict_summary(&verdicts)
                ));
                save_runner_log(&cluster, run, &dir).await;
                return EXIT_ABORT;
            }
            Ok(Stored::Nothing) if run.finished => {
                console::critical(&format!(
                    "run {} ({}) ended without storing results: {}",
                    run.run_id, run.namespace, run.state
                ));
                save_runner_log(&cluster, run, &dir).await;
                return EXIT_ABORT;
            }
            Ok(Stored::Nothing) => {
                console::critical(&format!(
                    "run {} ({}) has no results yet: {}",
                    run.run_id, run.namespace, run.state
                ));
                return EXIT_ABORT;
            }
            Err(e) => {
                console::critical(&e.to_string());
                return EXIT_ABORT;
            }
        };
        if let Err(e) = results.write(&dir) {
            console::critical(&format!(
                "cannot write the reports to {}: {e}",
                dir.display()
            ));
            return EXIT_USAGE;
        }
        results.print_verdicts();
        console::note(&format!(
            "run {}: complete results, {} (reports in {})",
            run.run_id,
            results.summary(),
            dir.display()
        ));
        results.exit_code()
    })
}

/// Fetches the log of the runner pod of a run that ended without (complete) results into
/// `dir` and prints its last lines: why the run failed.
async fn save_runner_log(cluster: &Cluster, run: &Found, dir: &Path) {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &run.namespace);
    let selector = format!("batch.kubernetes.io/job-name={}", manifests::JOB);
    let pod = match cluster
        .call(
            &format!("list the pods of job {}/{}", run.namespace, manifests::JOB),
            pods.list(&ListParams::default().labels(&selector)),
        )
        .await
    {
        Ok(list) => list.items.into_iter().next_back(),
        Err(e) => {
            console::problem(&format!("cannot find the runner's pod: {e}"));
            return;
        }
    };
    let Some(name) = pod.and_then(|p| p.metadata.name) else {
        console::problem(&format!(
            "the runner's pod of run {} is gone; its log cannot be fetched",
            run.run_id
        ));
        return;
    };
    match jobs::read_log(cluster, &run.namespace, &name, None).await {
        Ok(log) => {
            let path = dir.join(RUNNER_LOG);
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, &log));
            match written {
                Ok(()) => {
                    let lines: Vec<&str> = log.lines().collect();
                    for line in &lines[lines.len().saturating_sub(10)..] {
                        console::note(&format!("[in-cluster] {line}"));
                    }
                    console::note(&format!("the runner's log is in {}", path.display()));
                }
                Err(e) => console::problem(&format!("cannot write {}: {e}", path.display())),
            }
        }
        Err(e) => console::problem(&format!("cannot fetch the runner's log: {e}")),
    }
}
