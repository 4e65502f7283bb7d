//! The flags of `run` and `gen`, grouped under the headings `run --help` shows, and their
//! conversion into [`RunConfig`]. `-h` shows the everyday flags; `--help` shows all.

use super::{ClusterArgs, parse_annotation, parse_duration, parse_run_id};
use crate::checks::load_balancer::{DEFAULT_PROXY_PROTOCOL_IMAGE, ProbeFrom};
use crate::checks::network_policy::Networking;
use crate::checks::{self, DEFAULT_AGNHOST_IMAGE, DEFAULT_PAUSE_IMAGE, DEFAULT_SHELL_IMAGE};
use crate::cluster::workload::DEFAULT_SUITE_IMAGE;
use crate::settings::{CatalogueChoice, ExecutionMode, InCluster, RunConfig};
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use std::path::PathBuf;
use std::time::Duration;

const SELECTION: &str = "Selection";
const OUTPUTS: &str = "Outputs and run control";
const VERSION_DATA: &str = "Version-policy data (version-policy-check)";
const WORKLOADS: &str = "Workloads and images";
const STORAGE: &str = "Storage (default-storage-class-check)";
const NETWORKING: &str = "Networking (kaas-networking-check)";
const LOAD_BALANCERS: &str = "Load balancers (lb-service-check, lb-ip-preservation-check)";
const IN_CLUSTER: &str = "In-cluster runs (Sonobuoy-style)";
const UPSTREAM_E2E: &str = "Upstream e2e (cncf-k8s-conformance, --networking e2e|both)";

/// The flags of `run` and `gen`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub outputs: OutputArgs,
    #[command(flatten)]
    pub data: VersionDataArgs,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub networking: NetworkingArgs,
    #[command(flatten)]
    pub lb: LoadBalancerArgs,
    #[command(flatten)]
    pub in_cluster: InClusterArgs,
    #[command(flatten)]
    pub e2e: E2eRunArgs,
}

/// Which testcases run.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = SELECTION)]
pub struct SelectionArgs {
    /// Testcase ids to run, of any target (the SCS runner's `{testcases}`; same as --check).
    ///
    /// Named testcases decide the exit code. Default: the testcases of --target.
    #[arg(value_name = "TESTCASE", conflicts_with = "target")]
    pub testcases: Vec<String>,
    /// Run only this testcase (repeatable; same as a positional id).
    #[arg(long = "check", value_name = "ID", conflicts_with = "target")]
    pub check: Vec<String>,
    /// Run the testcases of this target of the scope version (repeatable): `main` (the
    /// certificate, the default), `preview`, `extension` or `all`.
    ///
    /// Only target main decides the certificate and, unless --count-all-targets, the exit
    /// code; the others are reported beside it. `scs-kaas-check list` shows the targets.
    #[arg(long = "target", value_name = "TARGET")]
    pub target: Vec<String>,
    /// Do not run this testcase (repeatable).
    #[arg(long = "skip", value_name = "ID")]
    pub skip: Vec<String>,
    /// Let every selected testcase decide the exit code, also those beside the certificate
    /// that --target selected.
    #[arg(long)]
    pub count_all_targets: bool,
    /// Certificate scope version (default: the version in force on the reference date).
    ///
    /// Default: the version the catalogue's timeline lists as effective on --reference-date
    /// (today).
    #[arg(long, value_name = "VERSION")]
    pub scope_version: Option<String>,
    /// Catalogue file to use instead of the built-in `standards/scs-compatible-kaas.yaml`.
    #[arg(long, value_name = "FILE", hide_short_help = true)]
    pub catalogue: Option<PathBuf>,
}

/// Where results go and how the run behaves.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = OUTPUTS)]
pub struct OutputArgs {
    /// Directory for junit.xml, report.yaml and the check logs.
    ///
    /// Default: reports/<UTC timestamp>-<run id>/
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// How many testcases run at the same time (default: all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,
    /// Deadline for each check.
    ///
    /// A check still running then ABORTs and its objects are deleted.
    #[arg(long, value_name = "DURATION", default_value = "20m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Keep the objects the checks created (for debugging).
    ///
    /// The run says what it kept; `delete --run-id` removes it later.
    #[arg(long)]
    pub keep: bool,
    /// Count broken recommendations (warnings) as failures.
    #[arg(long)]
    pub strict: bool,
    /// SCS's execution mode: `parallel` (testcases concurrently, upstream e2e in parallel
    /// processes, which skips [Serial] specs), `serial` (one testcase at a time, upstream e2e
    /// in one process) or `dry` (upstream e2e dry run: those testcases decide nothing).
    ///
    /// Default: testcases concurrently, upstream e2e as --e2e-parallel says (one process).
    #[arg(
        long,
        value_name = "MODE",
        value_parser = PossibleValuesParser::new(ExecutionMode::NAMES)
            .try_map(|s| s.parse::<ExecutionMode>())
    )]
    pub execution_mode: Option<ExecutionMode>,
}

/// Data the version policy is judged with.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = VERSION_DATA)]
pub struct VersionDataArgs {
    /// Date the version policy is judged at, and whose catalogue timeline entry picks the
    /// scope version in force (default: today, UTC).
    ///
    /// Makes results reproducible.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub reference_date: Option<jiff::civil::Date>,
    /// Use only bundled or given data files; fetch nothing from the internet.
    #[arg(long)]
    pub offline: bool,
    /// Branch end-of-life data (YAML list of `branch` and `end-of-life`).
    #[arg(long, value_name = "FILE", hide_short_help = true)]
    pub eol_data: Option<PathBuf>,
    /// Kubernetes release data (JSON array shaped like the GitHub releases API).
    #[arg(long, value_name = "FILE", hide_short_help = true)]
    pub release_data: Option<PathBuf>,
    /// CVE data (JSON array of CVE JSON 5.x records).
    #[arg(long, value_name = "FILE", hide_short_help = true)]
    pub cve_data: Option<PathBuf>,
    /// The given clusters (several --kubeconfig/--context) are one KaaS offering: also check
    /// the offering's version coverage (`version-policy-check/offering`).
    #[arg(long, hide_short_help = true)]
    pub offering: bool,
}

/// The pods writing checks start, and their images.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = WORKLOADS)]
pub struct WorkloadArgs {
    /// Image for the suite's placeholder pods, which only need to start and keep running
    /// (default: the Kubernetes pause image; point it at your mirror when air-gapped).
    #[arg(long, value_name = "REF", default_value = DEFAULT_PAUSE_IMAGE, hide_short_help = true)]
    pub workload_image: String,
    /// The Kubernetes e2e test image agnhost: its `netexec` serves the network probes and
    /// the load balancer checks' echo backend, its `curl` probes with --lb-probe-from
    /// cluster (point it at your mirror when air-gapped).
    #[arg(long, value_name = "REF", default_value = DEFAULT_AGNHOST_IMAGE, hide_short_help = true)]
    pub agnhost_image: String,
    /// Mirror registry for every default image (air-gapped clusters).
    ///
    /// Registry (with optional path) replacing the registry of every DEFAULT image: the
    /// suite's own (--image) and the workload images (--workload-image, --storage-image,
    /// --agnhost-image, --proxy-protocol-image), for air-gapped mirrors, e.g.
    /// `registry.example.com/mirror` turns `registry.k8s.io/pause:3.10` into
    /// `registry.example.com/mirror/pause:3.10`. An image flag given explicitly wins.
    #[arg(long, value_name = "PREFIX")]
    pub image_registry: Option<String>,
    /// Registry credentials for private mirrors: a docker config JSON.
    ///
    /// The file `docker login` writes (~/.docker/config.json, `{"auths": {...}}`). Every
    /// namespace the run creates gets it as Secret `scs-kaas-check-pull-secret` (type
    /// kubernetes.io/dockerconfigjson, run labels), and every pod of the suite (checks, the
    /// in-cluster runner, the e2e pod) references it in `imagePullSecrets`. Its credentials
    /// are never printed (`gen` prints the command that creates the Secret instead).
    #[arg(long, value_name = "FILE")]
    pub image_pull_secret_file: Option<PathBuf>,
    /// How long pods may take to be scheduled and start.
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_duration, hide_short_help = true)]
    pub pod_start_timeout: Duration,
    /// Extra node label that identifies the physical host of a node (besides
    /// `topology.scs.community/host-id`).
    #[arg(long, value_name = "KEY", hide_short_help = true)]
    pub host_label: Option<String>,
    /// The provider's attestation of where a control plane runs that the API does not show
    /// (managed offerings): YAML with `attested-by`, `date` and `control-plane` (a list of
    /// `host`, optional `zone`); see the README, "node checks".
    #[arg(long, value_name = "FILE", hide_short_help = true)]
    pub control_plane_attestation: Option<PathBuf>,
}

/// The storage check's pods and claims.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = STORAGE)]
pub struct StorageArgs {
    /// Image with a POSIX shell (`sh`, `echo`, `cat`, `sync`) for the pods that write and
    /// read a volume (default: busybox; point it at your mirror when air-gapped).
    #[arg(long, value_name = "REF", default_value = DEFAULT_SHELL_IMAGE, hide_short_help = true)]
    pub storage_image: String,
    /// How long a PersistentVolumeClaim may take to be bound (for WaitForFirstConsumer
    /// classes: after the pod using it was created).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, hide_short_help = true)]
    pub pvc_bind_timeout: Duration,
}

/// How NetworkPolicy enforcement is tested.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = NETWORKING)]
pub struct NetworkingArgs {
    /// How kaas-networking-check tests NetworkPolicy enforcement: `native` (this suite's
    /// probe matrix), `e2e` (the upstream e2e tests focused on `NetworkPolicy`, in the
    /// conformance image) or `both`. Either way the results report under
    /// kaas-networking-check.
    #[arg(
        long,
        value_name = "HOW",
        default_value = "native",
        value_parser = PossibleValuesParser::new(Networking::NAMES)
            .try_map(|s| s.parse::<Networking>()),
        hide_short_help = true
    )]
    pub networking: Networking,
    /// How long a NetworkPolicy change may take to be in force: the network check probes
    /// until the expected connections hold in two rounds in a row, or this passes (large
    /// clusters take longer than a minute; a round with dropped packets takes 5 s).
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_duration, hide_short_help = true)]
    pub policy_timeout: Duration,
}

/// The load balancer checks.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = LOAD_BALANCERS)]
pub struct LoadBalancerArgs {
    /// Image of the PROXY protocol backend used with --lb-annotation (an unprivileged nginx
    /// listening on 8080; the suite supplies its configuration as a ConfigMap).
    #[arg(long, value_name = "REF", default_value = DEFAULT_PROXY_PROTOCOL_IMAGE, hide_short_help = true)]
    pub proxy_protocol_image: String,
    /// How long each LoadBalancer Service may take to get its external address (the Services
    /// are provisioned one after another), and then again to answer HTTP (cloud load
    /// balancers are slow to build).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, hide_short_help = true)]
    pub lb_timeout: Duration,
    /// Where the load balancer checks send their HTTP probes from: `suite` (this machine) or
    /// `cluster` (a pod inside the cluster, for addresses only reachable from a private
    /// network; only hostnames and `ipMode: Proxy` addresses are probed from there, since
    /// kube-proxy sends in-cluster traffic for an `ipMode: VIP` address past the load balancer).
    #[arg(
        long,
        value_name = "WHERE",
        default_value = "suite",
        value_parser = PossibleValuesParser::new(ProbeFrom::NAMES)
            .try_map(|s| s.parse::<ProbeFrom>()),
        hide_short_help = true
    )]
    pub lb_probe_from: ProbeFrom,
    /// This machine's address as the load balancer sees it, when it runs behind NAT
    /// (default: the local address of each probe's TCP connection; a source that only kept
    /// that connection's port leaves `preservation` undecided).
    #[arg(long, value_name = "IP", hide_short_help = true)]
    pub client_ip: Option<std::net::IpAddr>,
    /// Annotation for extra load balancer runs of `lb-ip-preservation-check` with a PROXY
    /// protocol backend (repeatable), e.g. `loadbalancer.openstack.org/proxy-protocol=true`.
    #[arg(long = "lb-annotation", value_name = "KEY=VALUE", value_parser = parse_annotation, hide_short_help = true)]
    pub lb_annotations: Vec<(String, String)>,
}

/// Running the suite inside the cluster (`run --in-cluster`, `gen`) and the result hand-off
/// of such runs.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = IN_CLUSTER)]
pub struct InClusterArgs {
    /// Run the checks inside the cluster, in a Job.
    ///
    /// Creates a namespace, a ServiceAccount with the least RBAC the selected checks need
    /// and a Job running this suite's image with the same selection; follows it, retrieves
    /// its results into --output-dir and deletes what was created (unless --keep).
    #[arg(long)]
    pub in_cluster: bool,
    /// Image of this suite for --in-cluster and `gen`.
    #[arg(long, value_name = "REF", default_value = DEFAULT_SUITE_IMAGE, hide_short_help = true)]
    pub image: String,
    /// Run id to use instead of a random one (8 lowercase hex digits); every object of the
    /// run carries it in the `scs-kaas-check/run-id` label.
    #[arg(long, value_name = "ID", value_parser = parse_run_id, hide_short_help = true)]
    pub run_id: Option<String>,
    /// After the run, also store every report file, the verdict lines and the exit code in
    /// ConfigMaps NAME-part-N and NAME (manifest, written last) in the namespace of the
    /// in-cluster service account (how `run --in-cluster` and `retrieve` get the results
    /// without exec); results that cannot be stored are an error and exit code 3.
    #[arg(long, value_name = "NAME", hide_short_help = true)]
    pub results_configmap: Option<String>,
    /// Sonobuoy plugin mode: write junit.xml into this directory, then the file `done`
    /// there containing the path of junit.xml (Sonobuoy's plugin contract).
    #[arg(
        long,
        value_name = "DIR",
        env = "SONOBUOY_RESULTS_DIR",
        hide_short_help = true
    )]
    pub sonobuoy_results_dir: Option<PathBuf>,
}

/// The upstream e2e suite, run by the conformance image inside the cluster, for
/// `cncf-k8s-conformance` and `kaas-networking-check --networking e2e|both`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = UPSTREAM_E2E)]
pub struct E2eRunArgs {
    /// Conformance image. Default: registry.k8s.io/conformance:v<server major.minor.patch>
    /// (build suffixes such as +k3s1 stripped; --image-registry applies).
    #[arg(long, value_name = "REF", hide_short_help = true)]
    pub conformance_image: Option<String>,
    /// Ginkgo skip regex of the upstream e2e runs (E2E_SKIP).
    #[arg(long, value_name = "REGEX", hide_short_help = true)]
    pub e2e_skip: Option<String>,
    /// Ginkgo processes of the upstream e2e runs (N > 1: E2E_PARALLEL=true and
    /// E2E_EXTRA_GINKGO_ARGS=--procs=N; `[Serial]` specs are then skipped).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..), hide_short_help = true)]
    pub e2e_parallel: Option<u16>,
    /// List the upstream specs that would run without running them (E2E_DRYRUN=true); the
    /// testcases are then reported as not applicable.
    #[arg(long, hide_short_help = true)]
    pub e2e_dry_run: bool,
    /// Ok-to-fail list for upstream e2e failures (YAML list of `regex` and `reason`).
    /// Default: the built-in standards/e2e-ok-to-fail.yaml.
    #[arg(long, value_name = "FILE", hide_short_help = true)]
    pub ok_to_fail: Option<PathBuf>,
    /// Deadline of each upstream e2e run (replaces --timeout for the testcases that run
    /// one); a run still going then ABORTs with the last progress seen.
    #[arg(long, value_name = "DURATION", default_value = "3h", value_parser = parse_duration, hide_short_help = true)]
    pub e2e_timeout: Duration,
}

impl RunArgs {
    /// The plain settings of this run.
    pub fn into_config(self) -> RunConfig {
        let RunArgs {
            cluster,
            selection,
            outputs,
            data,
            workload,
            storage,
            networking,
            lb,
            in_cluster,
            e2e,
        } = self;
        RunConfig {
            cluster: cluster.into_options(),
            catalogue: CatalogueChoice {
                scope_version: selection.scope_version,
                catalogue: selection.catalogue,
            },
            check: selection
                .testcases
                .into_iter()
                .chain(selection.check)
                .collect(),
            targets: selection.target,
            skip: selection.skip,
            count_all_targets: selection.count_all_targets,
            execution_mode: outputs.execution_mode,
            output_dir: outputs.output_dir,
            parallel: outputs.parallel,
            timeout: outputs.timeout,
            keep: outputs.keep,
            strict: outputs.strict,
            reference_date: data.reference_date,
            offline: data.offline,
            eol_data: data.eol_data,
            release_data: data.release_data,
            cve_data: data.cve_data,
            offering: data.offering,
            workload: checks::Workload {
                workload_image: workload.workload_image,
                pod_start_timeout: workload.pod_start_timeout,
                host_label: workload.host_label,
                control_plane_attestation: workload.control_plane_attestation,
                storage_image: storage.storage_image,
                pvc_bind_timeout: storage.pvc_bind_timeout,
                policy_timeout: networking.policy_timeout,
                agnhost_image: workload.agnhost_image,
                proxy_protocol_image: lb.proxy_protocol_image,
                lb_timeout: lb.lb_timeout,
                lb_probe_from: lb.lb_probe_from,
                client_ip: lb.client_ip,
                lb_annotations: lb.lb_annotations,
            },
            image_pull_secret: workload.image_pull_secret_file,
            e2e: checks::upstream_e2e::Settings {
                networking: networking.networking,
                conformance_image: e2e.conformance_image,
                e2e_skip: e2e.e2e_skip,
                e2e_parallel: e2e.e2e_parallel,
                e2e_parallel_auto: false,
                e2e_dry_run: e2e.e2e_dry_run,
                ok_to_fail: e2e.ok_to_fail,
                e2e_timeout: e2e.e2e_timeout,
                focus: None,
            },
            in_cluster: InCluster {
                in_cluster: in_cluster.in_cluster,
                image: in_cluster.image,
                run_id: in_cluster.run_id,
                results_configmap: in_cluster.results_configmap,
                image_registry: workload.image_registry,
                sonobuoy_results_dir: in_cluster.sonobuoy_results_dir,
            },
            selected: None,
        }
    }
}
