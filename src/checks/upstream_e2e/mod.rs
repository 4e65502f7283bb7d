//! The upstream Kubernetes e2e suite (the conformance image) run inside the cluster, for
//! testcase `cncf-k8s-conformance` (focus `\[Conformance\]`), for `kaas-networking-check`
//! with `--networking e2e|both` (focus `NetworkPolicy`), and for the `e2e` command (any
//! focus). Everything runs through the runner like any other check.
//!
//! Objects (all with the run labels, check = the testcase): a namespace
//! `skc-<run id>-<purpose>`, a ServiceAccount, a ClusterRole and ClusterRoleBinding
//! `scs-kaas-check-<run id>-<purpose>` with every right (the e2e tests create and delete
//! objects of every kind, cluster-wide), and a Job whose pod has two containers sharing an
//! emptyDir mounted AT the results directory `/tmp/results` (the image's go-runner creates
//! `$RESULTS_DIR/e2e.log` without creating the directory, so the directory itself must be
//! the volume, as Sonobuoy mounts it):
//! - `e2e`: the conformance image with the environment its entrypoint (go-runner,
//!   `kubeconformance`) reads: `E2E_FOCUS`, `E2E_SKIP`, `E2E_PARALLEL=true` with
//!   `E2E_EXTRA_GINKGO_ARGS=--procs=N`, `E2E_DRYRUN`, `E2E_PROVIDER=skeleton`,
//!   `RESULTS_DIR=/tmp/results` (and `E2E_USE_GO_RUNNER=true` for older images whose
//!   entrypoint is the bash run_e2e.sh); `KUBECONFIG` stays empty, so the e2e framework uses
//!   the pod's service account. It tees its output to `e2e.log`, ginkgo writes
//!   `junit_01.xml` (`--report-dir`), and at the end (also after a failure) go-runner tars
//!   the directory to `e2e.tar.gz` and writes that tarball's absolute path to `done`;
//! - `results`: this suite's image running `e2e-collect`, which waits for `done` and stores
//!   `junit_01.xml` and `e2e.log` whole as a bundle of ConfigMaps
//!   `scs-kaas-check-e2e-results[-part-N]` of the namespace (`cluster::bundle`).
//!
//! The check follows the `e2e` container's log for progress (ginkgo's `Will run N of M
//! specs` and one `•` line per spec), resuming it when the stream is cut; once the pod's
//! status says the container has terminated, it reads the bundle: no kubectl, no exec.
//! Failures matching the ok-to-fail list are accepted (listed with their reason) and do not
//! fail the testcase. The outcome carries the upstream testcases (the JUnit report lists
//! them in a testsuite of their own) and keeps `e2e.log` and `junit_01.xml` (the files a
//! CNCF conformance submission needs) in `<output>/<testcase>/`.

pub mod collect;
pub mod upstream;

use super::network_policy::Networking;
use super::{CheckContext, CheckDef, Options};
use crate::catalogue::{MAIN_TARGET, Testcase};
use crate::cluster::errors::human_duration;
use crate::cluster::objects::{self, create};
use crate::cluster::{Cluster, bundle, jobs, namespace_name, pods, wait, workload};
use crate::outcome::{CheckOutcome, Requirement};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, Pod, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};
use kube::api::Api;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use upstream::{CaseState, OkToFail, Progress};

pub const JOB: &str = "e2e";
pub const E2E_CONTAINER: &str = "e2e";
pub const SIDECAR: &str = "results";
pub const SERVICE_ACCOUNT: &str = "scs-kaas-check-e2e";
pub const RESULTS_CONFIGMAP: &str = "scs-kaas-check-e2e-results";
pub const RESULTS_DIR: &str = "/tmp/results";
pub const RESULTS_VOLUME: &str = "results";
/// Focus of certified conformance (`cncf-k8s-conformance`).
pub const DEFAULT_FOCUS: &str = r"\[Conformance\]";
/// Focus of the upstream NetworkPolicy tests (`kaas-networking-check`).
pub const NETWORK_POLICY_FOCUS: &str = "NetworkPolicy";
/// Keys of the results ConfigMap.
pub const JUNIT_KEY: &str = "junit_01.xml";
pub const LOG_KEY: &str = "e2e.log";
pub const DONE_KEY: &str = "done";
/// Time the check gets beyond `--e2e-timeout` to set up and clean up.
pub const SETUP_GRACE: Duration = Duration::from_secs(300);
/// How long the results sidecar may take to store the results and exit once the e2e
/// container has terminated: it looks for `done` every 2 s, then writes a few ConfigMaps,
/// trying for [`collect::STORE_PATIENCE`] while the API server cannot be reached (the wait
/// ends as soon as the pod does).
const SIDECAR_GRACE: Duration = Duration::from_secs(collect::STORE_PATIENCE.as_secs() + 60);

/// Settings of the upstream e2e runs (durations are wall-clock limits).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How kaas-networking-check tests NetworkPolicy enforcement.
    pub networking: Networking,
    /// The conformance image; `None`: the one matching the server version.
    pub conformance_image: Option<String>,
    /// Ginkgo skip regex (E2E_SKIP).
    pub e2e_skip: Option<String>,
    /// Ginkgo processes (N > 1 runs in parallel and skips `[Serial]`).
    pub e2e_parallel: Option<u16>,
    /// Parallel processes, as many as ginkgo picks (`--execution-mode parallel` without
    /// `--e2e-parallel`; skips `[Serial]`).
    pub e2e_parallel_auto: bool,
    /// List the specs without running them.
    pub e2e_dry_run: bool,
    /// The ok-to-fail list file; `None`: the built-in list.
    pub ok_to_fail: Option<std::path::PathBuf>,
    /// Deadline of each upstream run.
    pub e2e_timeout: Duration,
    /// The `e2e` command's focus (testcase `upstream-e2e`).
    pub focus: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            networking: Networking::Native,
            conformance_image: None,
            e2e_skip: None,
            e2e_parallel: None,
            e2e_parallel_auto: false,
            e2e_dry_run: false,
            ok_to_fail: None,
            e2e_timeout: Duration::from_secs(3 * 3600),
            focus: None,
        }
    }
}

/// `cncf-k8s-conformance` (scs-0201): the upstream `[Conformance]` specs. It runs alone:
/// `[Serial]` conformance specs taint nodes and fill them, which would disturb (and be
/// disturbed by) the other checks' pods.
pub const CONFORMANCE_CHECK: CheckDef = CheckDef {
    name: "cncf-conformance",
    summary: "upstream e2e conformance tests ([Conformance]) in the conformance image (scs-0201)",
    writes: true,
    exclusive: true,
    uses_e2e: |_| true,
    run: |ctx| Box::pin(execute(ctx, DEFAULT_FOCUS, "e2e")),
};

/// The upstream e2e suite with the focus of the `e2e` command.
pub const UPSTREAM_CHECK: CheckDef = CheckDef {
    name: "upstream-e2e",
    summary: "upstream e2e tests with a custom focus in the conformance image",
    writes: true,
    exclusive: true,
    uses_e2e: |_| true,
    run: |ctx| {
        Box::pin(async move {
            let focus = ctx.options.e2e.focus.as_deref().unwrap_or(DEFAULT_FOCUS);
            execute(ctx, focus, "e2e").await
        })
    },
};

/// `registry.k8s.io/conformance:v<major.minor.patch>` of a server's gitVersion
/// (`v1.31.2+k3s1` -> `v1.31.2`), with `--image-registry` applied.
pub fn default_image(git_version: &str, registry: Option<&str>) -> String {
    let v = git_version.trim().trim_start_matches('v');
    let v = v.split(['+', '-']).next().unwrap_or(v);
    let image = format!("registry.k8s.io/conformance:v{v}");
    match registry {
        Some(prefix) => workload::with_registry(&image, prefix),
        None => image,
    }
}

/// The testcase the `e2e` command reports under (module and target as in the built-in
/// catalogue; a custom focus is beside the certificate), and how kaas-networking-check must
/// run.
pub fn testcase(focus: &str) -> (Testcase, Networking) {
    let (id, module, name, target, description, networking) = if focus == NETWORK_POLICY_FOCUS {
        (
            "kaas-networking-check",
            "scs-0219-v1",
            "KaaS networking",
            MAIN_TARGET,
            "Upstream e2e tests focused on NetworkPolicy",
            Networking::E2e,
        )
    } else if focus == DEFAULT_FOCUS {
        (
            "cncf-k8s-conformance",
            "cncf-k8s-conformance",
            "scs-0201-v1: CNCF Kubernetes conformance",
            MAIN_TARGET,
            "Upstream e2e conformance tests ([Conformance])",
            Networking::Native,
        )
    } else {
        (
            "upstream-e2e",
            "upstream-e2e",
            "Upstream Kubernetes e2e tests",
            "extension",
            "Upstream e2e tests with a custom focus",
            Networking::Native,
        )
    };
    let tc = Testcase {
        id: id.into(),
        module: module.into(),
        module_name: name.into(),
        target: target.into(),
        description: description.into(),
        url: None,
        section: None,
        lifetime: None,
    };
    (tc, networking)
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// What one e2e run is: its focus and where its objects go.
pub struct Spec<'a> {
    pub run_id: &'a str,
    /// The testcase (the `check` label of the objects).
    pub check: &'a str,
    /// Namespace and RBAC name suffix (several e2e runs can share a run).
    pub purpose: &'a str,
    pub focus: &'a str,
    /// The conformance image.
    pub image: &'a str,
    /// This suite's image (the results sidecar).
    pub suite_image: &'a str,
}

/// The objects of one e2e run (besides its namespace).
pub struct Objects {
    pub service_account: ServiceAccount,
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub job: Job,
}

pub fn objects(spec: &Spec, opts: &Settings) -> Objects {
    let (run_id, check) = (spec.run_id, spec.check);
    let ns = namespace_name(run_id, spec.purpose);
    let rbac_name = format!("scs-kaas-check-{run_id}-{}", spec.purpose);
    let mut e2e_env = vec![
        env("E2E_FOCUS", spec.focus),
        env("E2E_PROVIDER", "skeleton"),
        env("E2E_USE_GO_RUNNER", "true"),
        env("RESULTS_DIR", RESULTS_DIR),
    ];
    let procs = opts.e2e_parallel.filter(|n| *n > 1);
    let parallel = procs.is_some() || opts.e2e_parallel_auto;
    // go-runner skips `[Serial]` in parallel runs only when E2E_SKIP is empty; an explicit
    // skip keeps that protection here.
    match (&opts.e2e_skip, parallel) {
        (Some(skip), true) => e2e_env.push(env("E2E_SKIP", &format!(r"\[Serial\]|{skip}"))),
        (Some(skip), false) => e2e_env.push(env("E2E_SKIP", skip)),
        (None, _) => {}
    }
    if parallel {
        // `--p` (from E2E_PARALLEL) picks the process count itself; ginkgo lets an explicit
        // `--procs` win.
        e2e_env.push(env("E2E_PARALLEL", "true"));
    }
    if let Some(n) = procs {
        e2e_env.push(env("E2E_EXTRA_GINKGO_ARGS", &format!("--procs={n}")));
    }
    if opts.e2e_dry_run {
        e2e_env.push(env("E2E_DRYRUN", "true"));
    }
    let results = VolumeMount {
        name: RESULTS_VOLUME.into(),
        mount_path: RESULTS_DIR.into(),
        ..Default::default()
    };
    let mut e2e = workload::restricted_container(E2E_CONTAINER, spec.image);
    // The e2e binary writes outside /tmp; everything else of the restricted profile stays.
    if let Some(sc) = e2e.security_context.as_mut() {
        sc.read_only_root_filesystem = None;
    }
    e2e.env = Some(e2e_env);
    e2e.volume_mounts = Some(vec![results.clone()]);
    let mut sidecar = workload::restricted_container(SIDECAR, spec.suite_image);
    sidecar.args = Some(vec![
        "e2e-collect".into(),
        "--results-dir".into(),
        RESULTS_DIR.into(),
        "--configmap".into(),
        RESULTS_CONFIGMAP.into(),
    ]);
    sidecar.volume_mounts = Some(vec![results]);
    let mut pod = workload::restricted_pod_spec(vec![e2e, sidecar]);
    pod.automount_service_account_token = Some(true);
    pod.service_account_name = Some(SERVICE_ACCOUNT.into());
    pod.restart_policy = Some("Never".into());
    pod.termination_grace_period_seconds = Some(30);
    pod.volumes = Some(vec![Volume {
        name: RESULTS_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }]);
    Objects {
        service_account: ServiceAccount {
            metadata: objects::labelled(SERVICE_ACCOUNT, Some(&ns), run_id, check),
            ..Default::default()
        },
        cluster_role: ClusterRole {
            metadata: objects::labelled(&rbac_name, None, run_id, check),
            rules: Some(vec![
                PolicyRule {
                    api_groups: Some(vec!["*".into()]),
                    resources: Some(vec!["*".into()]),
                    verbs: vec!["*".into()],
                    ..Default::default()
                },
                PolicyRule {
                    non_resource_urls: Some(vec!["*".into()]),
                    verbs: vec!["get".into()],
                    ..Default::default()
                },
            ]),
            ..Default::default()
        },
        cluster_role_binding: objects::cluster_role_binding(
            &rbac_name,
            run_id,
            check,
            objects::service_account_subject(SERVICE_ACCOUNT, &ns),
        ),
        job: objects::run_once_job(JOB, &ns, run_id, check, pod),
    }
}

// ------------------------------------------------------------------ the check

/// How the run's pod ended.
enum Ended {
    Results(BTreeMap<String, String>),
    Abort(String),
}

/// Runs the conformance image with `focus` as testcase `ctx.testcase` and judges its
/// results. The objects are registered with the run's cleanup under the testcase.
pub async fn execute(ctx: &CheckContext, focus: &str, purpose: &str) -> CheckOutcome {
    let options: &Options = &ctx.options;
    let opts = &options.e2e;
    let image = opts.conformance_image.clone().unwrap_or_else(|| {
        default_image(
            &ctx.subject.info.git_version,
            options.image_registry.as_deref(),
        )
    });
    let spec = Spec {
        run_id: &ctx.cluster().run_id,
        check: &ctx.testcase.id,
        purpose,
        focus,
        image: &image,
        suite_image: &options.suite_image,
    };
    ctx.log.info(format!(
        "conformance image {image}, focus {focus:?}{}",
        if opts.e2e_dry_run { " (dry run)" } else { "" }
    ));
    let objects = objects(&spec, opts);
    let progress = Arc::new(Mutex::new(Progress::default()));
    let ended = match tokio::time::timeout(
        opts.e2e_timeout,
        drive(ctx, &spec, &objects, progress.clone()),
    )
    .await
    {
        Ok(ended) => ended,
        Err(_) => Ended::Abort(format!(
            "the e2e run did not finish within {} (e2e timeout); last progress: {}",
            human_duration(opts.e2e_timeout),
            progress.lock().unwrap_or_else(|e| e.into_inner()).summary()
        )),
    };
    let data = match ended {
        Ended::Results(data) => data,
        Ended::Abort(reason) => return CheckOutcome::aborted("e2e", reason),
    };
    let mut outcome = judge(&data, &options.ok_to_fail, opts.e2e_dry_run);
    outcome.files = [LOG_KEY, JUNIT_KEY]
        .into_iter()
        .filter_map(|k| data.get(k).map(|v| (k.to_string(), v.clone())))
        .collect();
    outcome
}

/// The outcome of the upstream results, with the upstream testcases.
fn judge(data: &BTreeMap<String, String>, ok: &OkToFail, dry_run: bool) -> CheckOutcome {
    let Some(junit) = data.get(JUNIT_KEY) else {
        return CheckOutcome::aborted(
            "e2e",
            format!(
                "the conformance container finished without {JUNIT_KEY} (done: {:?})",
                data.get(DONE_KEY).map(|d| d.trim()).unwrap_or("")
            ),
        );
    };
    let mut cases = match upstream::parse_junit(junit) {
        Ok(c) => c,
        Err(e) => return CheckOutcome::aborted("e2e", format!("{JUNIT_KEY}: {e}")),
    };
    let mut outcome = CheckOutcome::default();
    if dry_run {
        // ginkgo reports the specs a dry run walks as passed; none of them ran.
        let listed = cases
            .iter()
            .filter(|c| c.state != CaseState::Skipped)
            .count();
        for c in cases.iter_mut().filter(|c| c.state != CaseState::Skipped) {
            c.state = CaseState::Skipped;
            c.message = "dry run: not executed".into();
        }
        outcome.push(Requirement::not_applicable(
            "e2e",
            format!(
                "dry run: {listed} specs match the focus and skip (listed in junit.xml); none was executed"
            ),
        ));
        outcome.upstream = cases;
        return outcome;
    }
    let mut failed = Vec::new();
    let mut accepted = Vec::new();
    for case in cases.iter_mut().filter(|c| c.state == CaseState::Failed) {
        case.accepted = ok.reason(&case.name).map(str::to_string);
        match &case.accepted {
            Some(r) => accepted.push(format!("{} (accepted: {r})", case.name)),
            None => failed.push(format!(
                "{}: {}",
                case.name,
                case.message.lines().next().unwrap_or("")
            )),
        }
    }
    let count = |s: CaseState| cases.iter().filter(|c| c.state == s).count();
    let (passed, skipped) = (count(CaseState::Passed), count(CaseState::Skipped));
    let summary = format!(
        "{} specs: {passed} passed, {} failed, {} accepted failures (ok-to-fail), {skipped} skipped",
        cases.len(),
        failed.len(),
        accepted.len()
    );
    if passed + failed.len() + accepted.len() == 0 {
        outcome.push(Requirement::abort(
            "e2e",
            format!("no spec ran ({summary}); check the focus and skip regexes"),
        ));
    } else if failed.is_empty() {
        outcome.push(Requirement::pass("e2e", summary));
    } else {
        outcome.push(
            Requirement::fail("e2e", format!("{summary}; first failure: {}", failed[0]))
                .with_details(failed.iter().map(|f| format!("FAILED {f}"))),
        );
    }
    if !accepted.is_empty() {
        outcome.push(
            Requirement::info(
                "ok-to-fail",
                format!(
                    "{} failures accepted by the ok-to-fail list",
                    accepted.len()
                ),
            )
            .with_details(accepted),
        );
    }
    outcome.upstream = cases;
    outcome
}

async fn drive(
    ctx: &CheckContext,
    spec: &Spec<'_>,
    o: &Objects,
    progress: Arc<Mutex<Progress>>,
) -> Ended {
    let cluster: &Cluster = ctx.cluster();
    let c = cluster.client.clone();
    let ns = match cluster.scratch_namespace(spec.check, spec.purpose).await {
        Ok(ns) => ns,
        Err(e) => return Ended::Abort(format!("cannot set up the e2e run: {e}")),
    };
    let created = async {
        objects::create_cluster_identity(
            cluster,
            spec.check,
            &ns,
            &o.service_account,
            &o.cluster_role,
            &o.cluster_role_binding,
        )
        .await?;
        create(cluster, Api::<Job>::namespaced(c.clone(), &ns), &o.job).await
    }
    .await;
    if let Err(e) = created {
        return Ended::Abort(format!("cannot set up the e2e run: {e}"));
    }
    ctx.log.info(format!(
        "created namespace {ns} and job {JOB}; waiting for its pod"
    ));
    let start_deadline = ctx.options.workload.pod_start_timeout;
    let pod = match jobs::wait_started(cluster, &ns, JOB, start_deadline).await {
        Ok(pod) => pod,
        Err(reason) => return Ended::Abort(reason),
    };
    ctx.log.info(format!(
        "pod {ns}/{pod} started; following the e2e container"
    ));
    let followed = jobs::follow(
        cluster,
        &ns,
        &pod,
        Some(E2E_CONTAINER),
        |event| match event {
            jobs::LogEvent::Line(line) => {
                let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                if p.line(line) {
                    ctx.log.info(format!("[e2e] {}", p.summary()));
                }
            }
            jobs::LogEvent::Note(note) => ctx.log.info(note),
        },
    )
    .await;
    let last = || progress.lock().unwrap_or_else(|e| e.into_inner()).summary();
    match followed {
        Ok(jobs::Followed::Terminated { resumed, .. }) if resumed > 0 => ctx.log.info(format!(
            "the e2e container has terminated; its log stream was resumed {resumed} time(s)"
        )),
        Ok(jobs::Followed::Terminated { .. }) => {}
        Ok(jobs::Followed::Gone) => {
            return Ended::Abort(format!(
                "the e2e pod {ns}/{pod} was deleted before the e2e container finished; last \
                 progress: {}",
                last()
            ));
        }
        Err(e) => {
            return Ended::Abort(format!(
                "cannot follow the e2e run: {e}; last progress: {}",
                last()
            ));
        }
    }
    // The e2e container has terminated (per the pod's status); the sidecar stores the
    // results right after (the manifest last) and exits, which ends the pod.
    let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
    let _ = wait::object(&pods, &pod, SIDECAR_GRACE, |p| {
        p.is_none_or(|p| matches!(pods::phase(p).as_str(), "Succeeded" | "Failed"))
            .then_some(())
    })
    .await;
    let why = match bundle::read(&c, cluster.request_timeout, &ns, RESULTS_CONFIGMAP).await {
        Ok(bundle::Found::Complete(b)) => return Ended::Results(b.files),
        Ok(bundle::Found::Incomplete { why, .. }) => format!("its results are incomplete: {why}"),
        Ok(bundle::Found::Nothing) => "it handed back no results".to_string(),
        Err(e) => e.to_string(),
    };
    let state = match cluster.call("read the e2e pod", pods.get_opt(&pod)).await {
        Ok(Some(p)) => pods::describe(&p, &|_| String::new()),
        Ok(None) => format!("pod {pod} is gone"),
        Err(e) => e.to_string(),
    };
    // The sidecar says why it could not store them.
    let sidecar = match jobs::read_log(cluster, &ns, &pod, Some(SIDECAR)).await {
        Ok(log) => log
            .lines()
            .rfind(|l| l.starts_with("CRITICAL"))
            .map(|l| format!("; the results sidecar said: {l}"))
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    Ended::Abort(format!(
        "the e2e run ended, but {why} ({state}){sidecar}; last progress: {}",
        last()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(args: &[&str]) -> BTreeMap<String, String> {
        let mut settings = Settings::default();
        for pair in args.chunks(2) {
            match pair {
                ["--e2e-parallel", n] => settings.e2e_parallel = Some(n.parse().unwrap()),
                ["--execution-mode", "parallel"] => settings.e2e_parallel_auto = true,
                ["--e2e-skip", s] => settings.e2e_skip = Some(s.to_string()),
                other => panic!("unexpected {other:?}"),
            }
        }
        let spec = Spec {
            run_id: "0a1b2c3d",
            check: "cncf-k8s-conformance",
            purpose: "e2e",
            focus: DEFAULT_FOCUS,
            image: "img",
            suite_image: "suite",
        };
        let o = objects(&spec, &settings);
        let pod = o.job.spec.unwrap().template.spec.unwrap();
        assert_eq!(
            pod.containers[0].volume_mounts.as_ref().unwrap()[0].mount_path,
            RESULTS_DIR
        );
        pod.containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn parallel_runs_keep_serial_specs_out() {
        let env = env_of(&[]);
        assert_eq!(env["E2E_FOCUS"], DEFAULT_FOCUS);
        assert_eq!(env["RESULTS_DIR"], RESULTS_DIR);
        assert!(!env.contains_key("E2E_PARALLEL") && !env.contains_key("E2E_SKIP"));
        let env = env_of(&["--e2e-parallel", "4"]);
        assert_eq!(env["E2E_PARALLEL"], "true");
        assert_eq!(env["E2E_EXTRA_GINKGO_ARGS"], "--procs=4");
        assert!(!env.contains_key("E2E_SKIP"));
        let env = env_of(&["--e2e-parallel", "4", "--e2e-skip", "SCTP"]);
        assert_eq!(env["E2E_SKIP"], r"\[Serial\]|SCTP");
        let env = env_of(&["--e2e-parallel", "1", "--e2e-skip", "SCTP"]);
        assert_eq!(env["E2E_SKIP"], "SCTP");
        assert!(!env.contains_key("E2E_PARALLEL"));
        // SCS's parallel mode: go-runner's `--p` picks the count and skips `[Serial]`.
        let env = env_of(&["--execution-mode", "parallel"]);
        assert_eq!(env["E2E_PARALLEL"], "true");
        assert!(!env.contains_key("E2E_EXTRA_GINKGO_ARGS") && !env.contains_key("E2E_SKIP"));
        let env = env_of(&["--execution-mode", "parallel", "--e2e-skip", "SCTP"]);
        assert_eq!(env["E2E_SKIP"], r"\[Serial\]|SCTP");
    }

    #[test]
    fn default_image_strips_build_suffix() {
        assert_eq!(
            default_image("v1.31.2+k3s1", None),
            "registry.k8s.io/conformance:v1.31.2"
        );
        assert_eq!(
            default_image("v1.30.0-eks-1", Some("mirror.example/k8s")),
            "mirror.example/k8s/conformance:v1.30.0"
        );
    }

    #[test]
    fn judge_accepts_listed_failures_and_keeps_the_cases() {
        let junit = r#"<testsuites><testsuite name="s" tests="3">
<testcase name="[It] a" classname="s" time="1"></testcase>
<testcase name="[It] SCTP b" classname="s" time="1"><failure message="m1">t1</failure></testcase>
<testcase name="[It] c" classname="s" time="1"><failure message="m2">t2</failure></testcase>
</testsuite></testsuites>"#;
        let ok = OkToFail::parse("- regex: SCTP\n  reason: no sctp\n", "t").unwrap();
        let data = BTreeMap::from([(JUNIT_KEY.to_string(), junit.to_string())]);
        let outcome = judge(&data, &ok, false);
        assert_eq!(outcome.requirements[0].status, crate::outcome::Status::Fail);
        assert!(
            outcome.requirements[0]
                .message
                .contains("1 failed, 1 accepted")
        );
        assert!(outcome.requirements[0].message.contains("[It] c: m2"));
        assert!(outcome.requirements[1].details[0].contains("no sctp"));
        assert_eq!(outcome.upstream.len(), 3);
        assert_eq!(outcome.upstream[1].accepted.as_deref(), Some("no sctp"));
        assert_eq!(outcome.upstream[2].accepted, None);
        // A dry run lists the specs and decides nothing.
        let dry = judge(&data, &ok, true);
        assert_eq!(
            dry.requirements[0].status,
            crate::outcome::Status::NotApplicable
        );
        assert!(dry.requirements[0].message.contains("dry run: 3 specs"));
        assert!(dry.upstream.iter().all(|c| c.state == CaseState::Skipped));
        let data = BTreeMap::new();
        assert_eq!(
            judge(&data, &ok, false).requirements[0].status,
            crate::outcome::Status::Abort
        );
    }
}
