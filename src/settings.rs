//! What a run is asked to do, as plain data: the command line fills it (`cli`), the runner
//! and the in-cluster orchestration read it. Nothing here knows clap.

use crate::catalogue::Testcase;
use crate::checks::upstream_e2e;
use crate::checks::{self, Workload};
use crate::cluster::config::ConnectOptions;
use crate::cluster::workload::{DEFAULT_SUITE_IMAGE, with_registry};
use std::path::PathBuf;
use std::time::Duration;

/// Today's date in UTC: the default reference date (of the version policy and of the
/// catalogue's timeline).
pub fn today_utc() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// Which catalogue and scope version the testcases come from.
#[derive(Debug, Clone, Default)]
pub struct CatalogueChoice {
    /// Scope version; `None`: the catalogue's version in force.
    pub scope_version: Option<String>,
    /// Catalogue file; `None`: the built-in one.
    pub catalogue: Option<PathBuf>,
}

/// `--execution-mode`, the SCS spec variable `execution_mode` (values as SCS's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionMode {
    /// Testcases concurrently; the upstream e2e suite in parallel ginkgo processes (which
    /// skips `[Serial]` specs, as SCS's Sonobuoy runs do in this mode).
    Parallel,
    /// One testcase at a time; the upstream e2e suite in one process.
    Serial,
    /// The upstream e2e dry run: specs listed, nothing decided by those testcases.
    Dry,
}

impl ExecutionMode {
    pub const NAMES: [&'static str; 3] = ["parallel", "serial", "dry"];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Parallel => "parallel",
            ExecutionMode::Serial => "serial",
            ExecutionMode::Dry => "dry",
        }
    }
}

impl std::str::FromStr for ExecutionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "parallel" => Ok(ExecutionMode::Parallel),
            "serial" => Ok(ExecutionMode::Serial),
            "dry" => Ok(ExecutionMode::Dry),
            other => Err(format!(
                "unknown execution mode {other:?} (parallel, serial or dry)"
            )),
        }
    }
}

/// Running the suite inside the cluster and handing results over.
#[derive(Debug, Clone)]
pub struct InCluster {
    /// `run --in-cluster`: run the checks in a Job inside the cluster.
    pub in_cluster: bool,
    /// This suite's image.
    pub image: String,
    /// Run id to use instead of a random one (8 lowercase hex digits).
    pub run_id: Option<String>,
    /// Also store the results in this ConfigMap of the service account's namespace.
    pub results_configmap: Option<String>,
    /// Registry prefix replacing the registry of every default image.
    pub image_registry: Option<String>,
    /// Sonobuoy plugin mode: write junit.xml and `done` into this directory.
    pub sonobuoy_results_dir: Option<PathBuf>,
}

impl Default for InCluster {
    fn default() -> Self {
        InCluster {
            in_cluster: false,
            image: DEFAULT_SUITE_IMAGE.into(),
            run_id: None,
            results_configmap: None,
            image_registry: None,
            sonobuoy_results_dir: None,
        }
    }
}

/// Everything `run` (and `gen`) needs. Durations are wall-clock limits.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub cluster: ConnectOptions,
    pub catalogue: CatalogueChoice,
    /// Testcase ids to run, of any target (`--check` and the positional ids; empty: the
    /// testcases of `targets`). Named testcases decide the exit code.
    pub check: Vec<String>,
    /// Targets whose testcases run when no ids are named (empty: `main`, the certificate;
    /// `all`: every target).
    pub targets: Vec<String>,
    /// Testcase ids not to run.
    pub skip: Vec<String>,
    /// Every selected testcase decides the exit code, not only the certificate's and the
    /// named ones.
    pub count_all_targets: bool,
    /// `--execution-mode` (`None`: not given; the other settings as given).
    pub execution_mode: Option<ExecutionMode>,
    /// Directory for the reports; `None`: `reports/<UTC timestamp>-<run id>/`.
    pub output_dir: Option<PathBuf>,
    /// How many testcases run at the same time (`None`: all).
    pub parallel: Option<u16>,
    /// Deadline of each check.
    pub timeout: Duration,
    /// Keep the objects the checks created.
    pub keep: bool,
    /// Count broken recommendations as failures.
    pub strict: bool,
    /// Date the version policy is judged at (`None`: today, UTC).
    pub reference_date: Option<jiff::civil::Date>,
    /// Fetch nothing from the internet.
    pub offline: bool,
    pub eol_data: Option<PathBuf>,
    pub release_data: Option<PathBuf>,
    pub cve_data: Option<PathBuf>,
    /// The clusters given are one KaaS offering.
    pub offering: bool,
    pub workload: Workload,
    /// Registry credentials (a docker config JSON) every namespace of the run gets as its
    /// image pull secret (`--image-pull-secret-file`).
    pub image_pull_secret: Option<PathBuf>,
    pub e2e: upstream_e2e::Settings,
    pub in_cluster: InCluster,
    /// A fixed selection (the `e2e` command) instead of the catalogue's, with its source.
    pub selected: Option<(Vec<Testcase>, String)>,
}

impl RunConfig {
    /// A run of the whole default scope against `cluster` with every default.
    pub fn new(cluster: ConnectOptions) -> Self {
        RunConfig {
            cluster,
            catalogue: CatalogueChoice::default(),
            check: Vec::new(),
            targets: Vec::new(),
            skip: Vec::new(),
            count_all_targets: false,
            execution_mode: None,
            output_dir: None,
            parallel: None,
            timeout: Duration::from_secs(20 * 60),
            keep: false,
            strict: false,
            reference_date: None,
            offline: false,
            eol_data: None,
            release_data: None,
            cve_data: None,
            offering: false,
            workload: Workload::default(),
            image_pull_secret: None,
            e2e: upstream_e2e::Settings::default(),
            in_cluster: InCluster::default(),
            selected: None,
        }
    }

    /// Applies `--execution-mode` to the concurrency settings; `Err` names a flag that
    /// contradicts it. Applying it twice changes nothing.
    pub fn apply_execution_mode(&mut self) -> Result<(), String> {
        let Some(mode) = self.execution_mode else {
            return Ok(());
        };
        let e2e = &mut self.e2e;
        match mode {
            ExecutionMode::Parallel => {
                if e2e.e2e_parallel.is_none() {
                    e2e.e2e_parallel_auto = true;
                }
            }
            ExecutionMode::Serial => {
                if let Some(n) = self.parallel.filter(|n| *n > 1) {
                    return Err(format!(
                        "--execution-mode serial runs one testcase at a time; --parallel {n} \
                         contradicts it"
                    ));
                }
                if let Some(n) = e2e.e2e_parallel.filter(|n| *n > 1) {
                    return Err(format!(
                        "--execution-mode serial runs the upstream e2e suite in one process; \
                         --e2e-parallel {n} contradicts it"
                    ));
                }
                self.parallel = Some(1);
            }
            ExecutionMode::Dry => e2e.e2e_dry_run = true,
        }
        Ok(())
    }

    /// Applies `--image-registry` to every image still at its default; an image given
    /// explicitly wins.
    pub fn apply_image_registry(&mut self) {
        let Some(prefix) = self.in_cluster.image_registry.clone() else {
            return;
        };
        let w = &mut self.workload;
        for (image, default) in [
            (&mut self.in_cluster.image, DEFAULT_SUITE_IMAGE),
            (&mut w.workload_image, checks::DEFAULT_PAUSE_IMAGE),
            (&mut w.storage_image, checks::DEFAULT_SHELL_IMAGE),
            (&mut w.agnhost_image, checks::DEFAULT_AGNHOST_IMAGE),
            (
                &mut w.proxy_protocol_image,
                checks::load_balancer::DEFAULT_PROXY_PROTOCOL_IMAGE,
            ),
        ] {
            if image == default {
                *image = with_registry(default, &prefix);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RunConfig {
        RunConfig::new(ConnectOptions {
            kubeconfig: Vec::new(),
            context: Vec::new(),
            request_timeout: Duration::from_secs(30),
        })
    }

    #[test]
    fn execution_modes() {
        let mut c = config();
        c.apply_execution_mode().unwrap();
        assert_eq!(
            format!("{c:?}"),
            format!("{:?}", config()),
            "not given: unchanged"
        );

        c.execution_mode = Some(ExecutionMode::Serial);
        c.apply_execution_mode().unwrap();
        assert_eq!(c.parallel, Some(1));
        assert!(!c.e2e.e2e_parallel_auto && c.e2e.e2e_parallel.is_none());
        c.apply_execution_mode().unwrap();
        c.e2e.e2e_parallel = Some(4);
        let err = c.apply_execution_mode().unwrap_err();
        assert!(err.contains("--e2e-parallel 4 contradicts it"), "{err}");
        let mut c = config();
        c.execution_mode = Some(ExecutionMode::Serial);
        c.parallel = Some(3);
        assert!(
            c.apply_execution_mode()
                .unwrap_err()
                .contains("--parallel 3")
        );

        let mut c = config();
        c.execution_mode = Some(ExecutionMode::Parallel);
        c.apply_execution_mode().unwrap();
        assert!(c.e2e.e2e_parallel_auto && c.parallel.is_none());
        let mut c = config();
        c.execution_mode = Some(ExecutionMode::Parallel);
        c.e2e.e2e_parallel = Some(6);
        c.apply_execution_mode().unwrap();
        assert!(!c.e2e.e2e_parallel_auto, "an explicit count wins");

        let mut c = config();
        c.execution_mode = Some(ExecutionMode::Dry);
        c.apply_execution_mode().unwrap();
        assert!(c.e2e.e2e_dry_run && c.parallel.is_none());
        assert_eq!("dry".parse::<ExecutionMode>(), Ok(ExecutionMode::Dry));
        assert!("fast".parse::<ExecutionMode>().is_err());
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
        let mut config = config();
        config.in_cluster.image_registry = Some("m.example".into());
        config.workload.storage_image = "mine.example/busybox:1".into();
        config.apply_image_registry();
        assert_eq!(config.workload.workload_image, "m.example/pause:3.10");
        assert_eq!(config.workload.storage_image, "mine.example/busybox:1");
        assert!(
            config
                .in_cluster
                .image
                .starts_with("m.example/sovereigncloudstack/scs-kaas-check:v")
        );
    }
}
