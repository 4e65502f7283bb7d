//! Orchestration of `run`: catalogue selection (and the check each testcase names),
//! kubeconfig, preflight, the concurrent libtest-mimic trials (one per testcase),
//! per-check deadlines, cleanup on every path (including SIGINT/SIGTERM), reports and the
//! exit code. `--in-cluster` hands over to `incluster`.

use crate::catalogue::{Catalogue, Testcase};
use crate::checks::upstream_e2e::upstream::{BUILTIN_OK_TO_FAIL, OkToFail};
use crate::checks::{self, CheckContext, CheckLog, DataFiles, Options, Subject};
use crate::cluster::config;
use crate::cluster::errors::human_duration;
use crate::cluster::preflight::{self, WriteAccess};
use crate::cluster::{self, Cluster};
use crate::console;
use crate::outcome::{CheckOutcome, EXIT_ABORT, EXIT_OK, EXIT_USAGE, Verdict, exit_code};
use crate::report::{RunMeta, RunReport, TestcaseResult};
use crate::settings::RunConfig;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// Everything a run has settled before it touches a cluster.
struct Plan {
    selected: Vec<Testcase>,
    meta: RunMeta,
    output_dir: PathBuf,
    /// `--sonobuoy-results-dir`: also hand the JUnit file to Sonobuoy.
    sonobuoy_dir: Option<PathBuf>,
    ok_to_fail: OkToFail,
}

/// The ok-to-fail list of upstream e2e failures: `--ok-to-fail` or the built-in one.
fn ok_to_fail(args: &RunConfig) -> Result<OkToFail, String> {
    match &args.e2e.ok_to_fail {
        None => OkToFail::parse(BUILTIN_OK_TO_FAIL, "standards/e2e-ok-to-fail.yaml"),
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --ok-to-fail {}: {e}", path.display()))
            .and_then(|t| OkToFail::parse(&t, &path.display().to_string())),
    }
}

/// The testcases `args` select, with the catalogue's name and the scope version.
fn selection(args: &RunConfig) -> Result<(String, String, Vec<Testcase>), String> {
    if let Some((selected, source)) = &args.selected {
        return Ok((source.clone(), String::new(), selected.clone()));
    }
    let catalogue =
        Catalogue::load(args.catalogue.catalogue.as_deref()).map_err(|e| e.to_string())?;
    known_checks(&catalogue)?;
    let scope = catalogue.version(args.catalogue.scope_version.as_deref())?;
    match scope.select(&args.check, &args.skip)? {
        s if s.is_empty() => Err("no testcase selected".into()),
        s => Ok((catalogue.name.clone(), scope.version.clone(), s)),
    }
}

/// Every testcase of every scope version names a check this binary has; the error names
/// the first that does not.
fn known_checks(catalogue: &Catalogue) -> Result<(), String> {
    for version in &catalogue.versions {
        for tc in version.testcases() {
            if checks::find(&tc.check).is_none() {
                return Err(format!(
                    "catalogue {}: testcase {} (scope version {}, standard {}) names an \
                     unknown check {:?} (known checks: {})",
                    catalogue.source,
                    tc.id,
                    version.version,
                    tc.standard,
                    tc.check,
                    checks::names().join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// `gen`: the objects `run --in-cluster` would create with these settings, as YAML on
/// stdout. Returns the exit code.
pub fn gen_manifests(mut args: RunConfig) -> u8 {
    args.apply_image_registry();
    let (_, _, selected) = match selection(&args) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    if let Err(e) = crate::incluster::check_args(&args) {
        return usage_error(&e);
    }
    let run_id = args
        .in_cluster
        .run_id
        .clone()
        .unwrap_or_else(cluster::new_run_id);
    match crate::incluster::gen_yaml(&args, &run_id, &selected) {
        Ok(text) => {
            print!("{text}");
            EXIT_OK
        }
        Err(e) => usage_error(&e),
    }
}

/// `run`: the selected testcases against the cluster (or, with `--in-cluster`, inside it).
/// Prints the verdict lines, writes the reports and returns the exit code.
pub fn run(mut args: RunConfig) -> u8 {
    args.apply_image_registry();
    let started = jiff::Timestamp::now();
    let (catalogue_name, scope_version, selected) = match selection(&args) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    if args.in_cluster.in_cluster
        && let Err(e) = crate::incluster::check_args(&args)
    {
        return usage_error(&e);
    }
    let ok_to_fail = match ok_to_fail(&args) {
        Ok(list) => list,
        Err(e) => return usage_error(&e),
    };
    let run_id = args
        .in_cluster
        .run_id
        .clone()
        .unwrap_or_else(cluster::new_run_id);
    let output_dir = args.output_dir.clone().unwrap_or_else(|| {
        PathBuf::from("reports").join(format!("{}-{run_id}", started.strftime("%Y%m%dT%H%M%SZ")))
    });
    if let Err(e) = std::fs::create_dir_all(&output_dir) {
        return usage_error(&format!(
            "cannot create the output directory {}: {e}",
            output_dir.display()
        ));
    }
    let reference_date = args.reference_date.unwrap_or_else(|| {
        jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
    });
    let plan = Plan {
        selected,
        meta: RunMeta {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id,
            started,
            finished: started,
            catalogue: catalogue_name,
            scope_version,
            reference_date,
            strict: args.strict,
            context: None,
            api_server: None,
            server_version: None,
            aborted: None,
        },
        output_dir,
        sonobuoy_dir: args.in_cluster.sonobuoy_results_dir.clone(),
        ok_to_fail,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return plan.abort_all(EXIT_ABORT, &format!("cannot start the async runtime: {e}"));
        }
    };
    if args.in_cluster.in_cluster {
        let handover = crate::incluster::Handover {
            run_id: plan.meta.run_id.clone(),
            selected: plan.selected.clone(),
            output_dir: plan.output_dir.clone(),
        };
        return match runtime.block_on(crate::incluster::run(&args, &handover)) {
            Ok(code) => code,
            Err((code, reason)) => plan.abort_all(code, &reason),
        };
    }
    runtime.block_on(run_checks(plan, args))
}

fn usage_error(message: &str) -> u8 {
    console::error(message);
    EXIT_USAGE
}

impl Plan {
    /// Nothing can be checked: one error line, ABORT for every selected testcase, reports.
    fn abort_all(mut self, code: u8, reason: &str) -> u8 {
        console::error(reason);
        self.meta.aborted = Some(reason.to_string());
        self.meta.finished = jiff::Timestamp::now();
        let results = self
            .selected
            .iter()
            .map(|tc| {
                console::verdict(&tc.id, Verdict::Abort.as_str());
                TestcaseResult::new(
                    tc.clone(),
                    CheckOutcome::aborted("", reason),
                    self.meta.strict,
                    std::time::Duration::ZERO,
                    Vec::new(),
                )
            })
            .collect();
        let report = RunReport {
            meta: self.meta,
            results,
        };
        write_report(&report, &self.output_dir, self.sonobuoy_dir.as_deref());
        code
    }
}

async fn run_checks(mut plan: Plan, args: RunConfig) -> u8 {
    let subjects = match config::resolve(&args.cluster).await {
        Ok(s) => s,
        Err(e) => return plan.abort_all(EXIT_USAGE, &e.to_string()),
    };
    for subject in &subjects {
        console::register_secrets(subject.secrets.iter().cloned());
    }
    if subjects.len() > 1 && !args.offering {
        return plan.abort_all(
            EXIT_USAGE,
            "several clusters given; pass --offering to check them as one KaaS offering",
        );
    }

    // Connect and preflight every subject; the first is the cluster under test.
    let timeout = args.cluster.request_timeout;
    let mut connected = Vec::new();
    for subject in subjects {
        let connection = match preflight::connect(subject, timeout) {
            Ok(c) => c,
            Err(reason) => return plan.abort_all(EXIT_USAGE, &reason),
        };
        let info = connection
            .server_info(timeout)
            .await
            .map_err(|e| e.to_string());
        connected.push((connection.client, info));
    }
    let mut connected = connected.into_iter();
    let Some((client, primary)) = connected.next() else {
        return plan.abort_all(EXIT_USAGE, "no cluster to check");
    };
    let primary = match primary {
        Ok(info) => info,
        Err(reason) => return plan.abort_all(EXIT_ABORT, &reason),
    };
    let offering: Vec<_> = connected.map(|(_, info)| info).collect();
    plan.meta.context = Some(primary.subject.clone());
    plan.meta.api_server = Some(primary.host.clone());
    plan.meta.server_version = Some(primary.git_version.clone());
    console::note(&format!(
        "scs-kaas-check {} run {}: {} ({}) at {}, scope {} {}, reference date {}",
        plan.meta.tool_version,
        plan.meta.run_id,
        primary.subject,
        primary.git_version,
        primary.host,
        plan.meta.catalogue,
        plan.meta.scope_version,
        plan.meta.reference_date
    ));

    let writes = plan
        .selected
        .iter()
        .any(|tc| checks::find(&tc.check).is_some_and(|c| c.writes));
    let write_access = if writes {
        preflight::write_access(&client, timeout).await
    } else {
        WriteAccess::Allowed
    };
    match &write_access {
        WriteAccess::Denied(reason) => {
            console::warn(&format!("{reason}; read-only checks still run"))
        }
        WriteAccess::Unknown(reason) => console::warn(reason),
        WriteAccess::Allowed => {}
    }

    let cluster = Arc::new(Cluster::new(
        client,
        plan.meta.run_id.clone(),
        timeout,
        args.keep,
    ));
    let http = match reqwest::Client::builder()
        .user_agent(concat!("scs-kaas-check/", env!("CARGO_PKG_VERSION")))
        .timeout(std::time::Duration::from_secs(30))
        .build()
    {
        Ok(h) => h,
        Err(e) => return plan.abort_all(EXIT_ABORT, &format!("cannot set up HTTPS: {e}")),
    };
    let options = Arc::new(Options {
        reference_date: plan.meta.reference_date,
        data: DataFiles {
            offline: args.offline,
            eol: args.eol_data.clone(),
            releases: args.release_data.clone(),
            cves: args.cve_data.clone(),
        },
        offering: args.offering,
        workload: args.workload.clone(),
        e2e: args.e2e.clone(),
        ok_to_fail: plan.ok_to_fail.clone(),
        suite_image: args.in_cluster.image.clone(),
        image_registry: args.in_cluster.image_registry.clone(),
        http,
    });
    let subject = Subject {
        info: primary,
        cluster: cluster.clone(),
    };

    let (cancel_tx, cancel_rx) = watch::channel(false);
    let signals = tokio::spawn(crate::signals::watch(cancel_tx, plan.meta.run_id.clone()));

    let shared = Arc::new(Shared {
        handle: tokio::runtime::Handle::current(),
        subject,
        offering,
        options,
        write_access,
        timeout: args.timeout,
        strict: args.strict,
        cancel: cancel_rx,
        gate: tokio::sync::RwLock::new(()),
        results: Mutex::new(Vec::new()),
    });
    let trials: Vec<libtest_mimic::Trial> = plan
        .selected
        .iter()
        .map(|tc| {
            let shared = shared.clone();
            let tc = tc.clone();
            libtest_mimic::Trial::test(tc.id.clone(), move || shared.trial(tc))
        })
        .collect();
    let mut trial_args = libtest_mimic::Arguments {
        test_threads: Some(
            args.parallel
                .map(usize::from)
                .unwrap_or(plan.selected.len())
                .max(1),
        ),
        logfile: Some(plan.output_dir.join("trials.log").display().to_string()),
        ..Default::default()
    };
    trial_args.color = Some(libtest_mimic::ColorSetting::Never);
    // The trials block on the runtime from their own threads; keep this one free.
    let _ = tokio::task::spawn_blocking(move || libtest_mimic::run(&trial_args, trials)).await;

    // Safety net: whatever still carries this run's labels goes now (RBAC too when an
    // upstream e2e run created some).
    if !args.keep {
        let with_rbac = plan
            .selected
            .iter()
            .any(|tc| checks::find(&tc.check).is_some_and(|c| (c.uses_e2e)(&args.e2e)));
        let swept = async {
            let mut lines = cluster.sweep(Some(&plan.meta.run_id), false).await?;
            if with_rbac {
                lines.extend(cluster.sweep_rbac(Some(&plan.meta.run_id), false).await?);
            }
            Ok::<_, crate::cluster::errors::ApiError>(lines)
        };
        match swept.await {
            Ok(lines) => lines
                .iter()
                .for_each(|l| console::note(&format!("cleanup: {l}"))),
            Err(e) => console::warn(&format!(
                "final cleanup failed: {e}; run `scs-kaas-check delete --run-id {}`",
                plan.meta.run_id
            )),
        }
    }
    signals.abort();

    let mut results =
        std::mem::take(&mut *shared.results.lock().unwrap_or_else(|e| e.into_inner()));
    results.sort_by_key(|r| plan.selected.iter().position(|t| t.id == r.testcase.id));
    plan.meta.finished = jiff::Timestamp::now();
    let report = RunReport {
        meta: plan.meta,
        results,
    };
    write_report(&report, &plan.output_dir, plan.sonobuoy_dir.as_deref());
    let mut code = exit_code(report.results.iter().map(|r| r.verdict));
    if let Some(name) = &args.in_cluster.results_configmap {
        let verdicts: String = report
            .results
            .iter()
            .filter(|r| r.verdict != Verdict::Skipped)
            .map(|r| format!("{}: {}\n", r.testcase.id, r.verdict.as_str()))
            .collect();
        match crate::incluster::export_results(
            &cluster.client,
            timeout,
            name,
            &plan.output_dir,
            &verdicts,
            code,
        )
        .await
        {
            Ok(line) => console::note(&line),
            Err(e) => {
                // Lost results are never silent: the run fails, and says why.
                console::error(&format!("cannot store the results: {e}"));
                code = EXIT_ABORT;
            }
        }
    }
    console::note(&format!(
        "{} (reports in {})",
        report.summary(),
        plan.output_dir.display()
    ));
    code
}

fn write_report(report: &RunReport, dir: &std::path::Path, sonobuoy: Option<&std::path::Path>) {
    if let Err(e) = report.write(dir) {
        console::error(&format!(
            "cannot write the reports to {}: {e}",
            dir.display()
        ));
        return;
    }
    if let Some(results) = sonobuoy {
        match crate::incluster::write_sonobuoy(results, dir) {
            Ok(path) => console::note(&format!("Sonobuoy results: {}", path.display())),
            Err(e) => console::error(&format!(
                "cannot hand the results to Sonobuoy in {}: {e}",
                results.display()
            )),
        }
    }
}

/// State the trial threads share.
struct Shared {
    handle: tokio::runtime::Handle,
    subject: Subject,
    offering: Vec<Result<preflight::ServerInfo, String>>,
    options: Arc<Options>,
    write_access: WriteAccess,
    timeout: std::time::Duration,
    strict: bool,
    cancel: watch::Receiver<bool>,
    /// Writing checks hold it shared while they run; exclusive checks alone.
    gate: tokio::sync::RwLock<()>,
    results: Mutex<Vec<TestcaseResult>>,
}

/// A check's turn at the cluster (see [`CheckDef::exclusive`]).
#[allow(dead_code)] // held for its drop only
enum Turn<'a> {
    Free,
    Shared(tokio::sync::RwLockReadGuard<'a, ()>),
    Alone(tokio::sync::RwLockWriteGuard<'a, ()>),
}

impl Shared {
    /// One testcase, from start to cleanup. Runs on a libtest-mimic worker thread.
    fn trial(&self, tc: Testcase) -> Result<(), libtest_mimic::Failed> {
        let log = CheckLog::new(&tc.id);
        let started = Instant::now();
        let outcome = self.handle.block_on(self.execute(&tc, &log));
        let result = TestcaseResult::new(
            tc.clone(),
            outcome,
            self.strict,
            started.elapsed(),
            log.lines(),
        );
        let verdict = result.verdict;
        if verdict != Verdict::Skipped {
            console::verdict(&tc.id, verdict.as_str());
        } else {
            let why = result
                .outcome
                .requirements
                .first()
                .map(|r| r.message.clone())
                .unwrap_or_default();
            console::note(&format!("[{}] not applicable: {why}", tc.id));
        }
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(result);
        match verdict {
            Verdict::Pass | Verdict::Skipped => Ok(()),
            other => Err(other.as_str().into()),
        }
    }

    async fn execute(&self, tc: &Testcase, log: &CheckLog) -> CheckOutcome {
        let Some(def) = checks::find(&tc.check) else {
            return CheckOutcome::aborted("", format!("no check named {:?}", tc.check));
        };
        if *self.cancel.borrow() {
            return CheckOutcome::aborted("", "the run was interrupted before this check started");
        }
        if def.writes
            && let WriteAccess::Denied(reason) = &self.write_access
        {
            return CheckOutcome::aborted("", reason.clone());
        }
        let mut cancel = self.cancel.clone();
        let turn = async {
            if def.exclusive {
                if self.gate.try_write().is_err() {
                    log.info(
                        "waiting for the other writing checks to finish (this check runs alone)",
                    );
                }
                Turn::Alone(self.gate.write().await)
            } else if def.writes {
                if self.gate.try_read().is_err() {
                    log.info("waiting for a check that runs alone to finish");
                }
                Turn::Shared(self.gate.read().await)
            } else {
                Turn::Free
            }
        };
        let _turn = tokio::select! {
            turn = turn => turn,
            _ = cancel.wait_for(|c| *c) => {
                return CheckOutcome::aborted("", "the run was interrupted before this check started");
            }
        };
        let ctx = CheckContext {
            testcase: tc.clone(),
            subject: self.subject.clone(),
            offering: self.offering.clone(),
            options: self.options.clone(),
            log: log.clone(),
        };
        log.info(format!("started ({})", def.summary));
        let deadline = def.deadline(&self.options.e2e, self.timeout);
        let last_step = || {
            log.last()
                .map(|l| format!("; last step: {l}"))
                .unwrap_or_default()
        };
        let outcome = tokio::select! {
            result = tokio::time::timeout(deadline, (def.run)(&ctx)) => match result {
                Ok(outcome) => outcome,
                Err(_) => CheckOutcome::aborted("", format!(
                    "the check did not finish within {} (--timeout){}",
                    human_duration(deadline), last_step()
                )),
            },
            _ = cancel.wait_for(|c| *c) => CheckOutcome::aborted("", format!(
                "the run was interrupted{}", last_step()
            )),
        };
        for line in self.subject.cluster.release(Some(&tc.id)).await {
            log.info(line);
        }
        outcome
    }
}
