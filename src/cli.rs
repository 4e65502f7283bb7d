//! The command-line contract. Certification scripts call these names; keep them stable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  every selected testcase passed or was not applicable
  1  at least one testcase FAILed
  2  usage or configuration error before any check ran (unknown flag or check id,
     unreadable or malformed kubeconfig, unknown context, malformed catalogue)
  3  no FAIL, but at least one testcase ABORTed (could not be decided: API unreachable,
     401/403, timeouts, interrupted run, missing data)";

#[derive(Debug, Parser)]
#[command(
    name = "scs-kaas-check",
    version,
    about = "Conformance checks for the Sovereign Cloud Stack (SCS) KaaS standards",
    long_about = "Runs the SCS-compatible KaaS checks against a Kubernetes cluster and writes \
                  JUnit and YAML reports. `run` prints one `<testcase>: PASS|FAIL|ABORT` line \
                  per decided testcase on stdout (the SCS compliance runner protocol); progress, \
                  warnings and the summary go to stderr.",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the selected testcases against a cluster.
    #[command(after_help = EXIT_CODES_HELP)]
    Run(Box<RunArgs>),
    /// List the testcases of a scope version.
    List(ListArgs),
    /// Delete everything earlier runs left in the cluster (found by the run labels),
    /// in-cluster runs included (their namespace, ClusterRole and ClusterRoleBinding).
    #[command(after_help = EXIT_CODES_HELP)]
    Delete(DeleteArgs),
    /// Print, as YAML, every object `run --in-cluster` would create with the same flags
    /// (to review it, or to apply it by hand: GitOps, air-gapped clusters).
    Gen(Box<RunArgs>),
    /// Show the in-cluster runs of this tool (found by the run labels) and their state.
    Status(StatusArgs),
    /// Copy the results of a finished in-cluster run into a local directory, print its
    /// verdict lines and exit with its exit code.
    #[command(after_help = EXIT_CODES_HELP)]
    Retrieve(RetrieveArgs),
    /// Run the upstream Kubernetes e2e suite (the conformance image matching the server
    /// version) inside the cluster, read its results back, judge failures against the
    /// ok-to-fail list and write junit.xml (with the upstream testcases merged in),
    /// report.yaml and e2e.log. Testcase `cncf-k8s-conformance` (scs-0201).
    #[command(after_help = EXIT_CODES_HELP)]
    E2e(Box<E2eArgs>),
    /// Sidecar of `e2e` (runs in the e2e pod, from this suite's image): waits for the `done`
    /// file the conformance image writes into the shared results directory, then stores
    /// junit_01.xml and e2e.log (cut from the front to fit) in a ConfigMap of the pod's
    /// namespace.
    E2eCollect(E2eCollectArgs),
}

/// `e2e`: the upstream conformance image, run in its own namespace.
#[derive(Debug, Clone, Args)]
pub struct E2eArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Ginkgo focus regex (E2E_FOCUS).
    #[arg(long, value_name = "REGEX", default_value = r"\[Conformance\]")]
    pub focus: String,
    /// Ginkgo skip regex (E2E_SKIP). Default: none beyond the image's own.
    #[arg(long, value_name = "REGEX")]
    pub skip: Option<String>,
    /// Ginkgo processes (N > 1: E2E_PARALLEL=true and E2E_EXTRA_GINKGO_ARGS=--procs=N;
    /// `[Serial]` specs are then skipped, also with an explicit --skip).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,
    /// List the focused tests without running them (E2E_DRYRUN=true).
    #[arg(long)]
    pub dry_run: bool,
    /// Conformance image. Default: registry.k8s.io/conformance:v<server major.minor.patch>
    /// (build suffixes such as +k3s1 stripped).
    #[arg(long, value_name = "REF")]
    pub conformance_image: Option<String>,
    /// Ok-to-fail list (YAML list of `regex` and `reason`). Default: the built-in
    /// standards/e2e-ok-to-fail.yaml.
    #[arg(long, value_name = "FILE")]
    pub ok_to_fail: Option<PathBuf>,
    /// Deadline for the whole e2e run; a run still going then ABORTs with the last
    /// progress seen and everything it created is deleted.
    #[arg(long, value_name = "DURATION", default_value = "3h", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Directory for junit.xml, report.yaml and e2e.log.
    /// Default: reports/<UTC timestamp>-<run id>/
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Image of this suite, for the sidecar that hands the results back (`e2e-collect`).
    #[arg(long, value_name = "REF", default_value = crate::incluster::DEFAULT_SUITE_IMAGE)]
    pub image: String,
    /// Run id to use instead of a random one (8 lowercase hex digits).
    #[arg(long, value_name = "ID", value_parser = parse_run_id)]
    pub run_id: Option<String>,
    /// Pod start deadline (image pulls included).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub pod_start_timeout: Duration,
    /// Keep the namespace and RBAC after the run (for debugging).
    #[arg(long)]
    pub keep: bool,
}

/// `e2e-collect`: the results hand-off sidecar of `e2e`.
#[derive(Debug, Clone, Args)]
pub struct E2eCollectArgs {
    /// The results directory shared with the conformance container.
    #[arg(long, value_name = "DIR", default_value = "/tmp/results")]
    pub results_dir: PathBuf,
    /// ConfigMap (in the pod's namespace) to store the results in.
    #[arg(long, value_name = "NAME")]
    pub configmap: String,
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Kubeconfig file. Default: $KUBECONFIG (colon-separated files are merged), else
    /// ~/.kube/config, else the in-cluster service account. Repeat (with --offering) to
    /// check several clusters of one offering.
    #[arg(short = 'k', long = "kubeconfig", value_name = "PATH")]
    pub kubeconfig: Vec<PathBuf>,
    /// Context to use. Default: the kubeconfig's current context. Repeat (with --offering)
    /// to check several clusters of one offering.
    #[arg(long = "context", value_name = "NAME")]
    pub context: Vec<String>,
    /// How long a single API request may take before the API counts as not answering.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct CatalogueArgs {
    /// Certificate scope version to run (default: the catalogue's current effective version).
    #[arg(long, value_name = "VERSION")]
    pub scope_version: Option<String>,
    /// Catalogue file to use instead of the built-in `standards/scs-compatible-kaas.yaml`.
    #[arg(long, value_name = "FILE")]
    pub catalogue: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub catalogue: CatalogueArgs,
    /// Run only this testcase (repeatable). Default: every testcase of the scope version.
    #[arg(long = "check", value_name = "ID")]
    pub check: Vec<String>,
    /// Do not run this testcase (repeatable).
    #[arg(long = "skip", value_name = "ID")]
    pub skip: Vec<String>,
    /// Directory for junit.xml, report.yaml and the check logs.
    /// Default: reports/<UTC timestamp>-<run id>/
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// How many testcases run at the same time (default: all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,
    /// Deadline for each check; a check still running then ABORTs and its objects are deleted.
    #[arg(long, value_name = "DURATION", default_value = "20m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Keep the objects the checks created (for debugging); the run says what it kept.
    #[arg(long)]
    pub keep: bool,
    /// Count broken recommendations (warnings) as failures.
    #[arg(long)]
    pub strict: bool,
    /// Date the version policy is judged at (default: today, UTC). Makes results reproducible.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub reference_date: Option<jiff::civil::Date>,
    /// Use only bundled or given data files; fetch nothing from the internet.
    #[arg(long)]
    pub offline: bool,
    /// Branch end-of-life data (YAML list of `branch` and `end-of-life`).
    #[arg(long, value_name = "FILE")]
    pub eol_data: Option<PathBuf>,
    /// Kubernetes release data (JSON array shaped like the GitHub releases API).
    #[arg(long, value_name = "FILE")]
    pub release_data: Option<PathBuf>,
    /// CVE data (JSON array of CVE JSON 5.x records).
    #[arg(long, value_name = "FILE")]
    pub cve_data: Option<PathBuf>,
    /// The given clusters (several --kubeconfig/--context) are one KaaS offering: also check
    /// the offering's version coverage (`version-policy-check/offering`).
    #[arg(long)]
    pub offering: bool,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub e2e: E2eRunArgs,
    #[command(flatten)]
    pub in_cluster: InClusterArgs,
    /// Testcases chosen by another command (`e2e`) instead of the catalogue, with the name
    /// the reports give their source.
    #[arg(skip)]
    pub selected: Option<(Vec<crate::catalogue::Testcase>, String)>,
}

/// The upstream e2e suite, run by the conformance image inside the cluster, for
/// `cncf-k8s-conformance` and `kaas-networking-check --networking e2e|both`.
#[derive(Debug, Clone, Args)]
pub struct E2eRunArgs {
    /// How kaas-networking-check tests NetworkPolicy enforcement: `native` (this suite's
    /// probe matrix), `e2e` (the upstream e2e tests focused on `NetworkPolicy`, in the
    /// conformance image) or `both`. Either way the results report under
    /// kaas-networking-check.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = Networking::Native)]
    pub networking: Networking,
    /// Conformance image. Default: registry.k8s.io/conformance:v<server major.minor.patch>
    /// (build suffixes such as +k3s1 stripped; --image-registry applies).
    #[arg(long, value_name = "REF")]
    pub conformance_image: Option<String>,
    /// Ginkgo skip regex of the upstream e2e runs (E2E_SKIP).
    #[arg(long, value_name = "REGEX")]
    pub e2e_skip: Option<String>,
    /// Ginkgo processes of the upstream e2e runs (N > 1: E2E_PARALLEL=true and
    /// E2E_EXTRA_GINKGO_ARGS=--procs=N; `[Serial]` specs are then skipped).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub e2e_parallel: Option<u16>,
    /// List the upstream specs that would run without running them (E2E_DRYRUN=true); the
    /// testcases are then reported as not applicable.
    #[arg(long)]
    pub e2e_dry_run: bool,
    /// Ok-to-fail list for upstream e2e failures (YAML list of `regex` and `reason`).
    /// Default: the built-in standards/e2e-ok-to-fail.yaml.
    #[arg(long, value_name = "FILE")]
    pub ok_to_fail: Option<PathBuf>,
    /// Deadline of each upstream e2e run (replaces --timeout for the testcases that run
    /// one); a run still going then ABORTs with the last progress seen.
    #[arg(long, value_name = "DURATION", default_value = "3h", value_parser = parse_duration)]
    pub e2e_timeout: Duration,
    /// The `e2e` command's focus (for testcase `upstream-e2e`).
    #[arg(skip)]
    pub focus: Option<String>,
}

/// How kaas-networking-check tests NetworkPolicy enforcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Networking {
    /// This suite's probe matrix.
    Native,
    /// The upstream e2e tests focused on NetworkPolicy.
    E2e,
    /// Both, reported together.
    Both,
}

/// Running the suite inside the cluster (`run --in-cluster`, `gen`) and the result hand-off
/// of such runs.
#[derive(Debug, Clone, Args)]
pub struct InClusterArgs {
    /// Run the checks inside the cluster: create a namespace, a ServiceAccount with the
    /// least RBAC the selected checks need and a Job running this suite's image with the
    /// same selection; follow it, retrieve its results into --output-dir and delete what
    /// was created (unless --keep).
    #[arg(long)]
    pub in_cluster: bool,
    /// Image of this suite for --in-cluster and `gen`.
    #[arg(long, value_name = "REF", default_value = crate::incluster::DEFAULT_SUITE_IMAGE)]
    pub image: String,
    /// Run id to use instead of a random one (8 lowercase hex digits); every object of the
    /// run carries it in the `scs-kaas-check/run-id` label.
    #[arg(long, value_name = "ID", value_parser = parse_run_id)]
    pub run_id: Option<String>,
    /// After the run, also store junit.xml, report.yaml, the check logs, the verdict lines
    /// and the exit code in this ConfigMap in the namespace of the in-cluster service
    /// account (how `run --in-cluster` and `retrieve` get the results without exec).
    #[arg(long, value_name = "NAME")]
    pub results_configmap: Option<String>,
    /// Registry (with optional path) replacing the registry of every DEFAULT image: the
    /// suite's own (--image) and the workload images (--workload-image, --storage-image,
    /// --agnhost-image, --proxy-protocol-image), for air-gapped mirrors, e.g.
    /// `registry.example.com/mirror` turns `registry.k8s.io/pause:3.10` into
    /// `registry.example.com/mirror/pause:3.10`. An image flag given explicitly wins.
    #[arg(long, value_name = "PREFIX")]
    pub image_registry: Option<String>,
    /// Sonobuoy plugin mode: write junit.xml into this directory, then the file `done`
    /// there containing the path of junit.xml (Sonobuoy's plugin contract).
    #[arg(long, value_name = "DIR", env = "SONOBUOY_RESULTS_DIR")]
    pub sonobuoy_results_dir: Option<PathBuf>,
}

/// `reference` with its registry replaced by `prefix`: `registry.k8s.io/pause:3.10` ->
/// `<prefix>/pause:3.10`, `docker.io/library/busybox:1` -> `<prefix>/library/busybox:1`.
pub fn with_registry(reference: &str, prefix: &str) -> String {
    let rest = match reference.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest.to_string()
        }
        Some(_) => reference.to_string(),
        None => format!("library/{reference}"),
    };
    format!("{}/{rest}", prefix.trim_end_matches('/'))
}

impl RunArgs {
    /// Applies `--image-registry` to every image still at its default.
    pub fn apply_image_registry(&mut self) {
        let Some(prefix) = self.in_cluster.image_registry.clone() else {
            return;
        };
        let w = &mut self.workload;
        for (image, default) in [
            (
                &mut self.in_cluster.image,
                crate::incluster::DEFAULT_SUITE_IMAGE,
            ),
            (&mut w.workload_image, crate::checks::DEFAULT_PAUSE_IMAGE),
            (&mut w.storage_image, crate::checks::DEFAULT_SHELL_IMAGE),
            (&mut w.agnhost_image, crate::checks::DEFAULT_AGNHOST_IMAGE),
            (
                &mut w.proxy_protocol_image,
                crate::checks::load_balancer::DEFAULT_PROXY_PROTOCOL_IMAGE,
            ),
        ] {
            if image == default {
                *image = with_registry(default, &prefix);
            }
        }
    }
}

/// `8 lowercase hex digits`.
pub fn parse_run_id(text: &str) -> Result<String, String> {
    if text.len() == 8
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(text.to_string())
    } else {
        Err(format!("expected 8 lowercase hex digits, got {text:?}"))
    }
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RetrieveArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The run to retrieve (default: the only, else the most recent finished in-cluster run).
    #[arg(long, value_name = "ID", value_parser = parse_run_id)]
    pub run_id: Option<String>,
    /// Directory for junit.xml, report.yaml and the check logs.
    /// Default: reports/<UTC timestamp>-<run id>/
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// Settings of the workloads that writing checks start.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Image for the suite's placeholder pods, which only need to start and keep running
    /// (default: the Kubernetes pause image; point it at your mirror when air-gapped).
    #[arg(long, value_name = "REF", default_value = crate::checks::DEFAULT_PAUSE_IMAGE)]
    pub workload_image: String,
    /// How long pods may take to be scheduled and start.
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_duration)]
    pub pod_start_timeout: Duration,
    /// Extra node label that identifies the physical host of a node (besides
    /// `topology.scs.community/host-id`).
    #[arg(long, value_name = "KEY")]
    pub host_label: Option<String>,
    /// Image with a POSIX shell (`sh`, `echo`, `cat`, `sync`) for the pods that write and
    /// read a volume (default: busybox; point it at your mirror when air-gapped).
    #[arg(long, value_name = "REF", default_value = crate::checks::DEFAULT_SHELL_IMAGE)]
    pub storage_image: String,
    /// How long a PersistentVolumeClaim may take to be bound (for WaitForFirstConsumer
    /// classes: after the pod using it was created).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub pvc_bind_timeout: Duration,
    /// How long a NetworkPolicy change may take to be in force: the network check probes
    /// until the expected connections hold or this passes.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub policy_timeout: Duration,
    /// The Kubernetes e2e test image agnhost: its `netexec` serves the network probes and
    /// the load balancer checks' echo backend, its `curl` probes with --lb-probe-from
    /// cluster (point it at your mirror when air-gapped).
    #[arg(long, value_name = "REF", default_value = crate::checks::DEFAULT_AGNHOST_IMAGE)]
    pub agnhost_image: String,
    /// Image of the PROXY protocol backend used with --lb-annotation (an unprivileged nginx
    /// listening on 8080; the suite supplies its configuration as a ConfigMap).
    #[arg(long, value_name = "REF", default_value = crate::checks::load_balancer::DEFAULT_PROXY_PROTOCOL_IMAGE)]
    pub proxy_protocol_image: String,
    /// How long a LoadBalancer Service may take to get its external address, and then again
    /// to answer HTTP (cloud load balancers are slow to build).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub lb_timeout: Duration,
    /// Where the load balancer checks send their HTTP probes from: `suite` (this machine) or
    /// `cluster` (a pod inside the cluster, for addresses only reachable from a private
    /// network).
    #[arg(long, value_enum, value_name = "WHERE", default_value_t = ProbeFrom::Suite)]
    pub lb_probe_from: ProbeFrom,
    /// This machine's address as the load balancer sees it, when it runs behind NAT
    /// (default: the local address of the route towards the load balancer).
    #[arg(long, value_name = "IP")]
    pub client_ip: Option<std::net::IpAddr>,
    /// Annotation for extra load balancer runs of `lb-ip-preservation-check` with a PROXY
    /// protocol backend (repeatable), e.g. `loadbalancer.openstack.org/proxy-protocol=true`.
    #[arg(long = "lb-annotation", value_name = "KEY=VALUE", value_parser = parse_annotation)]
    pub lb_annotations: Vec<(String, String)>,
}

/// Vantage point of the load balancer probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeFrom {
    /// The machine running the suite.
    Suite,
    /// A pod inside the cluster.
    Cluster,
}

/// Parses `KEY=VALUE` (an annotation).
pub fn parse_annotation(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    #[command(flatten)]
    pub catalogue: CatalogueArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Delete only what the run with this id left behind (default: every run's leftovers).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
}

/// Parses `90`, `90s`, `5m`, `1h30m`, `1500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?} (examples: 90s, 5m, 1h30m)"
            ));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value * 60),
            "h" => Duration::from_secs(value * 3600),
            other => {
                return Err(format!(
                    "invalid duration unit {other:?} in {text:?} (use ms, s, m or h)"
                ));
            }
        };
        total += unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").unwrap_err().contains("unit"));
        assert!(parse_duration("m5").is_err());
    }

    #[test]
    fn registries_are_rewritten() {
        assert_eq!(
            with_registry("registry.k8s.io/pause:3.10", "mirror.example.com/m/"),
            "mirror.example.com/m/pause:3.10"
        );
        assert_eq!(
            with_registry("docker.io/library/busybox:1.37.0", "m.example"),
            "m.example/library/busybox:1.37.0"
        );
        assert_eq!(
            with_registry("nginxinc/nginx:1", "m.example"),
            "m.example/nginxinc/nginx:1"
        );
        let mut args = match Cli::parse_from([
            "scs-kaas-check",
            "run",
            "--image-registry",
            "m.example",
            "--storage-image",
            "mine.example/busybox:1",
        ])
        .command
        {
            Command::Run(a) => a,
            _ => unreachable!(),
        };
        args.apply_image_registry();
        assert_eq!(args.workload.workload_image, "m.example/pause:3.10");
        assert_eq!(args.workload.storage_image, "mine.example/busybox:1");
        assert!(
            args.in_cluster
                .image
                .starts_with("m.example/sovereigncloudstack/scs-kaas-check:v")
        );
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
