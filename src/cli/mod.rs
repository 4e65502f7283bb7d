//! The command-line contract. Certification scripts call these names; keep them stable.
//!
//! The only module that knows clap: it parses the flags and converts them into the plain
//! settings of the layers below (`settings::RunConfig`, `cluster::config::ConnectOptions`,
//! the checks' settings). The flags of `run` are in [`run`].

pub mod run;

use crate::catalogue::Testcase;
use crate::checks::network_policy::Networking;
use crate::checks::upstream_e2e::collect::CollectOptions;
use crate::checks::upstream_e2e::{self, DEFAULT_FOCUS};
use crate::cluster::config::ConnectOptions;
use crate::cluster::workload::DEFAULT_SUITE_IMAGE;
use crate::incluster::RetrieveOptions;
use crate::settings::RunConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};
pub use run::RunArgs;
use std::path::PathBuf;
use std::time::Duration;

pub const EXIT_CODES_HELP: &str = "\
Exit codes (of the testcases that count: the certificate's (target main), those named by
id, with --count-all-targets every selected one):
  0  every counted testcase passed or was not applicable
  1  at least one counted testcase FAILed
  2  usage or configuration error before any check ran (unknown flag or testcase id,
     unreadable or malformed kubeconfig, unknown context, malformed catalogue)
  3  no FAIL, but at least one counted testcase ABORTed (could not be decided: API
     unreachable, 401/403, timeouts, interrupted run, missing data) or is not implemented";

/// The command line of this process. A usage error prints clap's message with its first
/// line beginning `CRITICAL:` (the command cannot run; SCS's runner counts it as such) and
/// returns the exit code; help and version requests print and exit 0.
pub fn parse() -> Result<Cli, u8> {
    Cli::try_parse().map_err(|e| {
        use clap::error::ErrorKind;
        if matches!(
            e.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(crate::outcome::EXIT_USAGE);
        }
        let text = e.render().to_string();
        let text = text.strip_prefix("error: ").unwrap_or(&text);
        let mut lines = text.lines();
        crate::console::critical(lines.next().unwrap_or_default());
        for line in lines {
            crate::console::note(line);
        }
        crate::outcome::EXIT_USAGE
    })
}

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
    /// Print every image a run with the same flags would start pods with (one per line,
    /// sorted), so a private mirror can be filled in advance. The conformance image
    /// follows the server version: --kubernetes-version, else the cluster's.
    #[command(after_help = EXIT_CODES_HELP)]
    Images(Box<ImagesArgs>),
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
    /// junit_01.xml and e2e.log whole in ConfigMaps of the pod's namespace (compressed,
    /// split, a manifest with a digest written last).
    E2eCollect(E2eCollectArgs),
}

/// `e2e`: the upstream conformance image, run in its own namespace.
#[derive(Debug, Clone, Args)]
pub struct E2eArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Ginkgo focus regex (E2E_FOCUS).
    #[arg(long, value_name = "REGEX", default_value = DEFAULT_FOCUS)]
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
    #[arg(long, value_name = "REF", default_value = DEFAULT_SUITE_IMAGE)]
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
    /// Registry credentials for private mirrors (a docker config JSON, as for `run`): the
    /// e2e namespace gets them as its image pull secret.
    #[arg(long, value_name = "FILE")]
    pub image_pull_secret_file: Option<PathBuf>,
}

/// `images`: the flags of `run`, and the server version when no cluster should be asked.
#[derive(Debug, Clone, Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Server version for the conformance image (e.g. v1.34.2) instead of asking the
    /// cluster's /version.
    #[arg(long, value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
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

/// Which cluster to connect to.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cluster connection")]
pub struct ClusterArgs {
    /// Kubeconfig file.
    ///
    /// Default: $KUBECONFIG (colon-separated files are merged), else ~/.kube/config, else
    /// the in-cluster service account. Repeat (with --offering) to check several clusters
    /// of one offering.
    #[arg(short = 'k', long = "kubeconfig", value_name = "PATH")]
    pub kubeconfig: Vec<PathBuf>,
    /// Context to use (default: the current context).
    ///
    /// Repeat (with --offering) to check several clusters of one offering.
    #[arg(long = "context", value_name = "NAME")]
    pub context: Vec<String>,
    /// How long a single API request may take before the API counts as not answering.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, hide_short_help = true)]
    pub request_timeout: Duration,
}

impl ClusterArgs {
    /// The plain connection options.
    pub fn into_options(self) -> ConnectOptions {
        ConnectOptions {
            kubeconfig: self.kubeconfig,
            context: self.context,
            request_timeout: self.request_timeout,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CatalogueArgs {
    /// Certificate scope version (default: the version in force on the reference date).
    #[arg(long, value_name = "VERSION")]
    pub scope_version: Option<String>,
    /// Date whose timeline entry decides the version in force (default: today, UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub reference_date: Option<jiff::civil::Date>,
    /// Catalogue file to use instead of the built-in `standards/scs-compatible-kaas.yaml`.
    #[arg(long, value_name = "FILE")]
    pub catalogue: Option<PathBuf>,
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

impl E2eArgs {
    /// The `e2e` command as a run of the one testcase its focus names, with `run`'s
    /// defaults for everything else.
    pub fn into_config(self) -> RunConfig {
        let (tc, networking): (Testcase, Networking) = upstream_e2e::testcase(&self.focus);
        let mut run = RunConfig::new(self.cluster.into_options());
        run.output_dir = self.output_dir;
        run.keep = self.keep;
        run.in_cluster.run_id = self.run_id;
        run.in_cluster.image = self.image;
        run.workload.pod_start_timeout = self.pod_start_timeout;
        run.image_pull_secret = self.image_pull_secret_file;
        let e2e = &mut run.e2e;
        e2e.networking = networking;
        e2e.focus = Some(self.focus);
        e2e.e2e_skip = self.skip;
        e2e.e2e_parallel = self.parallel;
        e2e.e2e_dry_run = self.dry_run;
        e2e.conformance_image = self.conformance_image;
        e2e.ok_to_fail = self.ok_to_fail;
        e2e.e2e_timeout = self.timeout;
        run.selected = Some((vec![tc], "upstream e2e".into()));
        run
    }
}

impl E2eCollectArgs {
    /// The sidecar's plain options.
    pub fn into_options(self) -> CollectOptions {
        CollectOptions {
            results_dir: self.results_dir,
            configmap: self.configmap,
            request_timeout: self.request_timeout,
        }
    }
}

impl RetrieveArgs {
    /// The plain options of `retrieve`.
    pub fn into_options(self) -> RetrieveOptions {
        RetrieveOptions {
            cluster: self.cluster.into_options(),
            run_id: self.run_id,
            output_dir: self.output_dir,
        }
    }
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
    fn run_defaults_are_the_settings_defaults() {
        let Command::Run(args) = Cli::parse_from(["scs-kaas-check", "run"]).command else {
            unreachable!()
        };
        let from_cli = args.into_config();
        let plain = RunConfig::new(from_cli.cluster.clone());
        assert_eq!(format!("{from_cli:?}"), format!("{plain:?}"));
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
