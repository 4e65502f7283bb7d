//! Orchestration of `run`: catalogue selection (the version in force, targets, named ids;
//! the check implementing each testcase id), kubeconfig, preflight, the concurrent
//! libtest-mimic trials (one per implemented testcase), per-check deadlines (a stopped
//! check keeps what it decided, only the undecided rest is ABORT), cleanup on every path
//! (including SIGINT/SIGTERM), the lines SCS's runner reads (verdicts on stdout,
//! `ERROR:`/`WARNING:` reasons and `CRITICAL:` on stderr), reports and the exit code, which
//! only the counted testcases decide (the certificate's, the named ones, or with
//! `--count-all-targets` all). `--in-cluster` hands over to `incluster`.

use crate::catalogue::{Catalogue, Testcase, Validity};
use crate::checks::upstream_e2e;
use crate::checks::upstream_e2e::upstream::{BUILTIN_OK_TO_FAIL, OkToFail};
use crate::checks::{self, CheckContext, CheckLog, DataFiles, Decisions, Options, Subject};
use crate::cluster::config;
use crate::cluster::errors::human_duration;
use crate::cluster::preflight::{self, WriteAccess};
use crate::cluster::{self, Cluster, workload};
use crate::console;
use crate::outcome::{CheckOutcome, EXIT_ABORT, EXIT_OK, EXIT_USAGE, Policy, Verdict, exit_code};
use crate::report::{RunMeta, RunReport, Severity, TestcaseResult};
use crate::settings::RunConfig;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// Everything a run has settled before it touches a cluster.
struct Plan {
    selected: Vec<Testcase>,
    /// Ids of the selected testcases that decide the exit code.
    counted: Vec<String>,
    meta: RunMeta,
    output_dir: PathBuf,
    /// `--sonobuoy-results-dir`: also hand the JUnit file to Sonobuoy.
    sonobuoy_dir: Option<PathBuf>,
    ok_to_fail: OkToFail,
}

impl Plan {
    fn counts(&self, tc: &Testcase) -> bool {
        self.counted.contains(&tc.id)
    }

    /// Which selected testcases are the certificate's and which are beside it (with their
    /// target, and whether they count all the same), for the top of the run.
    fn selection_line(&self) -> String {
        let (certificate, beside): (Vec<&Testcase>, Vec<&Testcase>) =
            self.selected.iter().partition(|t| t.certificate());
        let mut parts = Vec::new();
        if !certificate.is_empty() {
            let ids: Vec<&str> = certificate.iter().map(|t| t.id.as_str()).collect();
            parts.push(format!("the certificate (target main): {}", ids.join(", ")));
        }
        if !beside.is_empty() {
            let ids: Vec<String> = beside
                .iter()
                .map(|t| {
                    let counted = if self.counts(t) { ", counted" } else { "" };
                    format!("{} ({}{counted})", t.id, t.target)
                })
                .collect();
            parts.push(format!("beside the certificate: {}", ids.join(", ")));
        }
        format!("selected: {}", parts.join("; "))
    }
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

/// What a run selected from the catalogue.
struct Selection {
    catalogue: String,
    version: String,
    /// The version's state on the reference date (`None` for a fixed selection).
    validity: Option<Validity>,
    testcases: Vec<Testcase>,
    /// Ids that decide the exit code.
    counted: Vec<String>,
}

/// The testcases `args` select from the scope version in force on `date` (or
/// `--scope-version`), and which of them count for the exit code.
fn selection(args: &RunConfig, date: jiff::civil::Date) -> Result<Selection, String> {
    if let Some((selected, source)) = &args.selected {
        return Ok(Selection {
            catalogue: source.clone(),
            version: String::new(),
            validity: None,
            counted: selected.iter().map(|t| t.id.clone()).collect(),
            testcases: selected.clone(),
        });
    }
    let catalogue =
        Catalogue::load(args.catalogue.catalogue.as_deref()).map_err(|e| e.to_string())?;
    let scope = catalogue.scope(args.catalogue.scope_version.as_deref(), date)?;
    let testcases = scope.select(&args.check, &args.targets, &args.skip)?;
    if testcases.is_empty() {
        return Err("no testcase selected".into());
    }
    let counted = testcases
        .iter()
        .filter(|t| args.count_all_targets || t.certificate() || args.check.contains(&t.id))
        .map(|t| t.id.clone())
        .collect();
    Ok(Selection {
        catalogue: catalogue.name.clone(),
        version: scope.version,
        validity: Some(scope.validity),
        testcases,
        counted,
    })
}

/// Why `tc` is not run: no check of this binary implements its id.
fn not_implemented(tc: &Testcase) -> String {
    format!(
        "testcase {} is not implemented by scs-kaas-check {} (it implements: {})",
        tc.id,
        env!("CARGO_PKG_VERSION"),
        checks::implemented_ids().join(", ")
    )
}

/// The policy of `tc` in this run (its level from the binary's table, `--strict`).
fn policy(tc: &Testcase, strict: bool) -> Policy {
    let level = checks::implementing(&tc.id)
        .map(|i| i.level)
        .unwrap_or(crate::outcome::Level::Mandatory);
    Policy::new(level, strict)
}

/// The reference date: `--reference-date`, else today (UTC).
fn reference_date(args: &RunConfig) -> jiff::civil::Date {
    args.reference_date
        .unwrap_or_else(crate::settings::today_utc)
}

/// `--image-pull-secret-file`: read, checked, its credentials registered with the
/// redactor, and set for every namespace and pod of this process.
fn load_pull_secret(args: &RunConfig) -> Result<(), String> {
    let Some(path) = &args.image_pull_secret else {
        return Ok(());
    };
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read --image-pull-secret-file {}: {e}",
            path.display()
        )
    })?;
    let secrets = workload::docker_config_secrets(&bytes).map_err(|why| {
        format!(
            "--image-pull-secret-file {} is not a docker config JSON: {why}",
            path.display()
        )
    })?;
    console::register_secrets(secrets);
    workload::use_pull_secret(bytes);
    Ok(())
}

/// `images`: every image a run with these settings would start pods with (the in-cluster
/// runner's with `--in-cluster`), sorted, one per line on stdout, so a mirror can be filled
/// in advance. The conformance image follows the server version: `kubernetes_version`,
/// else the cluster's (read from `/version`). Returns the exit code.
pub fn images(mut args: RunConfig, kubernetes_version: Option<String>) -> u8 {
    args.apply_image_registry();
    if let Err(e) = args.apply_execution_mode() {
        return usage_error(&e);
    }
    let selected: Vec<&'static checks::CheckDef> = match selection(&args, reference_date(&args)) {
        Ok(s) => s
            .testcases
            .iter()
            .filter_map(|tc| checks::implementing(&tc.id).map(|i| i.check))
            .collect(),
        Err(e) => return usage_error(&e),
    };
    if args.in_cluster.in_cluster
        && let Err(e) = crate::incluster::check_args(&args)
    {
        return usage_error(&e);
    }
    let needs_version = args.e2e.conformance_image.is_none()
        && selected.iter().any(|check| (check.uses_e2e)(&args.e2e));
    let registry = args.in_cluster.image_registry.as_deref();
    let conformance = match (&args.e2e.conformance_image, kubernetes_version) {
        (Some(image), _) => image.clone(),
        (None, _) if !needs_version => String::new(),
        (None, Some(v)) => match version_arg(&v) {
            Some(v) => upstream_e2e::default_image(&v, registry),
            None => {
                return usage_error(&format!(
                    "--kubernetes-version {v:?} is not a Kubernetes version (e.g. v1.34.2)"
                ));
            }
        },
        (None, None) => {
            let connected = tokio::runtime::Runtime::new()
                .map_err(|e| preflight::ConnectError::Unreachable(e.to_string()))
                .and_then(|rt| rt.block_on(preflight::connect_one(&args.cluster)));
            match connected {
                Ok((_, info)) => upstream_e2e::default_image(&info.git_version, registry),
                Err(preflight::ConnectError::Config(e)) => return usage_error(&e),
                Err(preflight::ConnectError::Unreachable(e)) => {
                    console::critical(&format!(
                        "{e} (the conformance image follows the server version; give \
                         --kubernetes-version or --conformance-image to list without the cluster)"
                    ));
                    return EXIT_ABORT;
                }
            }
        }
    };
    let mut list = std::collections::BTreeSet::new();
    for check in &selected {
        let images = checks::images(
            check.name,
            &args.workload,
            &args.e2e,
            &args.in_cluster.image,
            &conformance,
        );
        list.extend(images.into_iter().flatten());
    }
    if args.in_cluster.in_cluster {
        list.insert(args.in_cluster.image.clone());
    }
    for image in list {
        println!("{}", console::terminal_line(&image));
    }
    EXIT_OK
}

/// A `--kubernetes-version` (`v1.34.2`, `1.34.2+k3s1`) with its `v`, when it starts with
/// major.minor.patch.
fn version_arg(text: &str) -> Option<String> {
    let v = text.trim().trim_start_matches('v');
    let core = v.split(['+', '-']).next().unwrap_or(v);
    let parts: Vec<&str> = core.split('.').collect();
    (parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    .then(|| format!("v{v}"))
}

/// `gen`: the objects `run --in-cluster` would create with these settings, as YAML on
/// stdout. Returns the exit code.
pub fn gen_manifests(mut args: RunConfig) -> u8 {
    args.apply_image_registry();
    if let Err(e) = load_pull_secret(&args) {
        return usage_error(&e);
    }
    if let Err(e) = args.apply_execution_mode() {
        return usage_error(&e);
    }
    let selected = match selection(&args, reference_date(&args)) {
        Ok(s) => s.testcases,
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
            if let Some(path) = &args.image_pull_secret {
                // The credentials are never printed: the Secret is created from the file.
                println!(
                    "# The pods reference the image pull secret {}; create it (its \
                     credentials are not printed here) once the namespace exists:\n\
                     #   kubectl create secret generic {} --namespace {} \
                     --type=kubernetes.io/dockerconfigjson --from-file=.dockerconfigjson={}",
                    workload::PULL_SECRET_NAME,
                    workload::PULL_SECRET_NAME,
                    cluster::namespace_name(&run_id, crate::incluster::manifests::RUNNER_PURPOSE),
                    path.display()
                );
            }
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
    if let Err(e) = load_pull_secret(&args) {
        return usage_error(&e);
    }
    if let Err(e) = args.apply_execution_mode() {
        return usage_error(&e);
    }
    let started = jiff::Timestamp::now();
    let reference_date = reference_date(&args);
    let selection = match selection(&args, reference_date) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    match selection.validity {
        Some(v) if !v.certifiable() => console::caution(&format!(
            "scope version {} is {} on {reference_date}: its results do not certify",
            selection.version,
            v.as_str()
        )),
        Some(Validity::Warn) => console::caution(&format!(
            "scope version {} is about to expire (state warn on {reference_date})",
            selection.version
        )),
        _ => {}
    }
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
    let plan = Plan {
        selected: selection.testcases,
        counted: selection.counted,
        meta: RunMeta {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id,
            started,
            finished: started,
            catalogue: selection.catalogue,
            scope_version: selection.version,
            scope_validity: selection.validity,
            execution_mode: args.execution_mode.map(|m| m.as_str().to_string()),
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
    console::critical(message);
    EXIT_USAGE
}

/// Prints what SCS's runner reads of one result: the verdict line (if it has one), then an
/// `ERROR:` or `WARNING:` line per reason; a testcase that decided nothing gets a note.
fn announce(result: &TestcaseResult) {
    let id = &result.testcase.id;
    if result.verdict.printed() {
        console::verdict(id, result.verdict.as_str());
    }
    for (severity, name, message) in result.diagnostics() {
        match severity {
            Severity::Error => console::error(&name, message),
            Severity::Warning => console::warning(&name, message),
        }
    }
    match result.verdict {
        Verdict::Skipped => {
            let why = result
                .outcome
                .requirements
                .first()
                .map(|r| r.message.clone())
                .unwrap_or_default();
            console::note(&format!("[{id}] not applicable: {why}"));
        }
        Verdict::NotImplemented => console::caution(&result.log.join(" ")),
        _ => {}
    }
}

impl Plan {
    /// The result of a selected testcase that names no check of this binary.
    fn not_implemented(&self, tc: &Testcase) -> TestcaseResult {
        TestcaseResult::not_implemented(tc.clone(), self.counts(tc), &not_implemented(tc))
    }

    /// Nothing can be checked: one `CRITICAL:` line, then ABORT and the reason for every
    /// selected testcase, reports.
    fn abort_all(mut self, code: u8, reason: &str) -> u8 {
        console::critical(reason);
        self.meta.aborted = Some(reason.to_string());
        self.meta.finished = jiff::Timestamp::now();
        let results = self
            .selected
            .iter()
            .map(|tc| {
                let result = if checks::implementing(&tc.id).is_none() {
                    self.not_implemented(tc)
                } else {
                    TestcaseResult::new(
                        tc.clone(),
                        CheckOutcome::aborted("", reason),
                        policy(tc, self.meta.strict),
                        self.counts(tc),
                        std::time::Duration::ZERO,
                        Vec::new(),
                    )
                };
                announce(&result);
                result
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
            Err(preflight::ConnectError::Config(reason)) => {
                return plan.abort_all(EXIT_USAGE, &reason);
            }
            Err(preflight::ConnectError::Unreachable(reason)) => {
                return plan.abort_all(EXIT_ABORT, &reason);
            }
        };
        let info = connection
            .server_info(timeout)
            .await
            .map_err(|e| e.to_string());
        connected.push(((connection.client, connection.no_retry), info));
    }
    let mut connected = connected.into_iter();
    let Some(((client, no_retry), primary)) = connected.next() else {
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
    console::note(&plan.selection_line());

    let writes = plan
        .selected
        .iter()
        .any(|tc| checks::implementing(&tc.id).is_some_and(|i| i.check.writes));
    let write_access = if writes {
        preflight::write_access(&client, timeout).await
    } else {
        WriteAccess::Allowed
    };
    match &write_access {
        WriteAccess::Denied(reason) => {
            console::caution(&format!("{reason}; read-only checks still run"))
        }
        WriteAccess::Unknown(reason) => console::caution(reason),
        WriteAccess::Allowed => {}
    }

    let cluster = Arc::new(
        Cluster::new(client, plan.meta.run_id.clone(), timeout, args.keep).with_no_retry(no_retry),
    );
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
    // Testcases this binary does not implement are reported at once, without a trial.
    for tc in &plan.selected {
        if checks::implementing(&tc.id).is_none() {
            let result = plan.not_implemented(tc);
            announce(&result);
            shared
                .results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(result);
        }
    }
    let trials: Vec<libtest_mimic::Trial> = plan
        .selected
        .iter()
        .filter(|tc| checks::implementing(&tc.id).is_some())
        .map(|tc| {
            let shared = shared.clone();
            let tc = tc.clone();
            let counted = plan.counts(&tc);
            libtest_mimic::Trial::test(tc.id.clone(), move || shared.trial(tc, counted))
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
            .any(|tc| checks::implementing(&tc.id).is_some_and(|i| (i.check.uses_e2e)(&args.e2e)));
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
            Err(e) => console::caution(&format!(
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
    let mut code = exit_code(
        report
            .results
            .iter()
            .filter(|r| r.counted)
            .map(|r| r.verdict),
    );
    if let Some(name) = &args.in_cluster.results_configmap {
        let verdicts: String = report
            .results
            .iter()
            .filter(|r| r.verdict.printed())
            .map(|r| format!("{}: {}\n", r.testcase.id, r.verdict.as_str()))
            .collect();
        let diagnostics: String = report
            .results
            .iter()
            .flat_map(|r| r.diagnostics())
            .map(|(severity, name, message)| {
                let line = console::one_line(severity.prefix(), &name, message);
                console::redact(&line) + "\n"
            })
            .collect();
        match crate::incluster::export_results(
            &cluster.client,
            timeout,
            name,
            &plan.output_dir,
            &crate::incluster::Lines {
                verdicts,
                diagnostics,
            },
            code,
        )
        .await
        {
            Ok(line) => console::note(&line),
            Err(e) => {
                // Lost results are never silent: the run cannot complete (the outer
                // process ABORTs every testcase), and says why.
                console::critical(&format!("cannot store the results: {e}"));
                code = EXIT_ABORT;
            }
        }
    }
    console::note(&format!(
        "{} (reports in {})",
        report.summary(),
        plan.output_dir.display()
    ));
    for target in report.targets() {
        console::note(&target.line());
    }
    code
}

fn write_report(report: &RunReport, dir: &std::path::Path, sonobuoy: Option<&std::path::Path>) {
    if let Err(e) = report.write(dir) {
        console::problem(&format!(
            "cannot write the reports to {}: {e}",
            dir.display()
        ));
        return;
    }
    if let Some(results) = sonobuoy {
        match crate::incluster::write_sonobuoy(results, dir) {
            Ok(path) => console::note(&format!("Sonobuoy results: {}", path.display())),
            Err(e) => console::problem(&format!(
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
    fn trial(&self, tc: Testcase, counted: bool) -> Result<(), libtest_mimic::Failed> {
        let log = CheckLog::new(&tc.id);
        let started = Instant::now();
        let outcome = self.handle.block_on(self.execute(&tc, &log));
        let result = TestcaseResult::new(
            tc.clone(),
            outcome,
            policy(&tc, self.strict),
            counted,
            started.elapsed(),
            log.lines(),
        );
        let verdict = result.verdict;
        announce(&result);
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
        let Some(def) = checks::implementing(&tc.id).map(|i| i.check) else {
            return CheckOutcome::aborted("", not_implemented(tc));
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
        let decisions = Decisions::default();
        let ctx = CheckContext {
            testcase: tc.clone(),
            subject: self.subject.clone(),
            offering: self.offering.clone(),
            options: self.options.clone(),
            log: log.clone(),
            decisions: decisions.clone(),
        };
        log.info(format!("started ({})", def.summary));
        let deadline = def.deadline(&self.options.e2e, self.timeout);
        let last_step = || {
            log.last()
                .map(|l| format!("; last step: {l}"))
                .unwrap_or_default()
        };
        // What the check decided before a stop stays; only the undecided rest is ABORT.
        let stopped = |reason: String| {
            let partial = decisions.take();
            if !partial.undecided().is_empty() || partial.is_decided("") {
                log.info(format!("stopped: {reason}"));
            } else {
                log.info(format!(
                    "stopped after every requirement was decided: {reason}"
                ));
            }
            partial.stopped(&reason)
        };
        let outcome = tokio::select! {
            result = tokio::time::timeout(deadline, (def.run)(&ctx)) => match result {
                Ok(rest) => decisions.take().finish(rest),
                Err(_) => stopped(format!(
                    "the check did not finish within {} (--timeout){}",
                    human_duration(deadline), last_step()
                )),
            },
            _ = cancel.wait_for(|c| *c) => stopped(format!(
                "the run was interrupted{}", last_step()
            )),
        };
        for line in self.subject.cluster.release(Some(&tc.id)).await {
            log.info(line);
        }
        outcome
    }
}
