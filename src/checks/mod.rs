//! The checks, one module per standard. A check reads (and where it must, creates) cluster
//! state and decides requirements: it publishes each one through its [`CheckContext`] the
//! moment it is decided (so a later deadline or interrupt cannot throw it away) and returns
//! whatever it did not publish as a [`CheckOutcome`]. It knows nothing of report formats nor
//! of the command line: its settings are the plain types here and in its module.
//!
//! This file holds the registry ([`CHECKS`]), which check implements which testcase id
//! ([`IMPLEMENTED`]), what a check gets to work with ([`CheckContext`], [`Decisions`],
//! [`Options`], [`Workload`]) and the check log.

pub mod default_storage_class;
pub mod load_balancer;
pub mod network_policy;
pub mod node_anti_affinity;
pub mod node_distribution;
pub mod upstream_e2e;
pub mod version_policy;

use crate::catalogue::Testcase;
use crate::cluster::Cluster;
use crate::cluster::preflight::ServerInfo;
use crate::console;
use crate::outcome::{CheckOutcome, Level, Partial, Requirement};
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Default image of placeholder pods (they only need to start and stay running).
pub const DEFAULT_PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// Default image of pods that run shell scripts (busybox 1.37.0, the current stable
/// release on Docker Hub's official image; multi-arch, about 2 MB).
pub const DEFAULT_SHELL_IMAGE: &str = "docker.io/library/busybox:1.37.0";
/// Default image of network probe pods (the Kubernetes e2e test image with `netexec`).
pub const DEFAULT_AGNHOST_IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

/// Settings of the workloads that writing checks start (durations are wall-clock limits).
#[derive(Debug, Clone)]
pub struct Workload {
    /// Image of placeholder pods (they only start and keep running).
    pub workload_image: String,
    /// How long pods may take to be scheduled and start.
    pub pod_start_timeout: Duration,
    /// Extra node label naming a node's physical host.
    pub host_label: Option<String>,
    /// The provider's attestation of a control plane the API does not show (YAML, see
    /// [`node_distribution::Attestation`]).
    pub control_plane_attestation: Option<PathBuf>,
    /// Image with a POSIX shell for the pods that write and read a volume.
    pub storage_image: String,
    /// How long a PersistentVolumeClaim may take to bind.
    pub pvc_bind_timeout: Duration,
    /// How long a NetworkPolicy change may take to be in force.
    pub policy_timeout: Duration,
    /// The Kubernetes e2e test image agnhost (netexec, curl).
    pub agnhost_image: String,
    /// Image of the PROXY protocol backend (an unprivileged nginx on 8080).
    pub proxy_protocol_image: String,
    /// How long a LoadBalancer Service may take to get an address, and again to answer.
    pub lb_timeout: Duration,
    /// Where the load balancer probes are sent from.
    pub lb_probe_from: load_balancer::ProbeFrom,
    /// This machine's address as the load balancer sees it (behind NAT).
    pub client_ip: Option<std::net::IpAddr>,
    /// Annotations for extra runs of `lb-ip-preservation-check` with a PROXY backend.
    pub lb_annotations: Vec<(String, String)>,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            workload_image: DEFAULT_PAUSE_IMAGE.into(),
            pod_start_timeout: Duration::from_secs(180),
            host_label: None,
            control_plane_attestation: None,
            storage_image: DEFAULT_SHELL_IMAGE.into(),
            pvc_bind_timeout: Duration::from_secs(300),
            policy_timeout: Duration::from_secs(180),
            agnhost_image: DEFAULT_AGNHOST_IMAGE.into(),
            proxy_protocol_image: load_balancer::DEFAULT_PROXY_PROTOCOL_IMAGE.into(),
            lb_timeout: Duration::from_secs(300),
            lb_probe_from: load_balancer::ProbeFrom::Suite,
            client_ip: None,
            lb_annotations: Vec::new(),
        }
    }
}

pub type RunFn = for<'a> fn(&'a CheckContext) -> BoxFuture<'a, CheckOutcome>;

/// A check the catalogue can name.
pub struct CheckDef {
    /// Name used in the catalogue's `check:` field.
    pub name: &'static str,
    pub summary: &'static str,
    /// Whether it creates objects (and therefore needs a scratch namespace).
    pub writes: bool,
    /// Whether it must run alone: it starts only after the checks before it have finished,
    /// and the others wait for it.
    pub exclusive: bool,
    /// Whether, with these settings, it runs the upstream e2e suite (its deadline is then
    /// `--e2e-timeout`, and it needs the rights to grant the e2e pod every right).
    pub uses_e2e: fn(&upstream_e2e::Settings) -> bool,
    pub run: RunFn,
}

impl CheckDef {
    /// How long the check may take: `--timeout`, or for an upstream e2e run
    /// `--e2e-timeout` plus time to set up and clean up. The runner enforces it, and the
    /// outer process of an in-cluster run derives its own deadline from it.
    pub fn deadline(&self, e2e: &upstream_e2e::Settings, timeout: Duration) -> Duration {
        if (self.uses_e2e)(e2e) {
            timeout.max(e2e.e2e_timeout + upstream_e2e::SETUP_GRACE)
        } else {
            timeout
        }
    }
}

/// `uses_e2e` of the checks that never run the upstream suite.
pub fn no_e2e(_: &upstream_e2e::Settings) -> bool {
    false
}

pub static CHECKS: &[CheckDef] = &[
    version_policy::CHECK,
    node_distribution::CHECK,
    node_anti_affinity::CHECK,
    default_storage_class::CHECK,
    network_policy::CHECK,
    load_balancer::SERVICE_CHECK,
    load_balancer::IP_PRESERVATION_CHECK,
    upstream_e2e::CONFORMANCE_CHECK,
    upstream_e2e::UPSTREAM_CHECK,
];

/// Every image check `name` starts pods with under these settings (`None` for a name no
/// check has). `suite_image` is this suite's image (the e2e results sidecar), `conformance`
/// the conformance image the upstream e2e runs use (it depends on the server version).
/// This is what `images` lists; a test compares it with the pods a run starts.
pub fn images(
    name: &str,
    workload: &Workload,
    e2e: &upstream_e2e::Settings,
    suite_image: &str,
    conformance: &str,
) -> Option<Vec<String>> {
    use network_policy::Networking;
    let agnhost = workload.agnhost_image.clone();
    let mut images = match name {
        "version-policy" | "node-distribution" | "cncf-conformance" | "upstream-e2e" => vec![],
        "node-anti-affinity" => vec![workload.workload_image.clone()],
        "default-storage-class" => vec![workload.storage_image.clone()],
        "network-policy" if e2e.networking == Networking::E2e => vec![],
        "network-policy" | "lb-service" => vec![agnhost],
        "lb-ip-preservation" if workload.lb_annotations.is_empty() => vec![agnhost],
        "lb-ip-preservation" => vec![agnhost, workload.proxy_protocol_image.clone()],
        _ => return None,
    };
    if find(name).is_some_and(|def| (def.uses_e2e)(e2e)) {
        images.extend([conformance.to_string(), suite_image.to_string()]);
    }
    Some(images)
}

pub fn find(name: &str) -> Option<&'static CheckDef> {
    CHECKS.iter().find(|c| c.name == name)
}

pub fn names() -> Vec<&'static str> {
    CHECKS.iter().map(|c| c.name).collect()
}

/// A testcase id this binary implements: the check that decides it and its level. SCS's
/// catalogue format names testcases only; this table is what the binary adds.
pub struct Implementation {
    pub testcase: &'static str,
    pub check: &'static CheckDef,
    pub level: Level,
}

const fn implements(testcase: &'static str, check: &'static CheckDef) -> Implementation {
    Implementation {
        testcase,
        check,
        level: Level::Mandatory,
    }
}

/// Every testcase id this binary implements (SCS's ids kept exactly; `upstream-e2e` is the
/// `e2e` command's custom focus).
pub static IMPLEMENTED: &[Implementation] = &[
    implements("cncf-k8s-conformance", &upstream_e2e::CONFORMANCE_CHECK),
    implements("version-policy-check", &version_policy::CHECK),
    implements("node-distribution-check", &node_distribution::CHECK),
    implements("kaas-networking-check", &network_policy::CHECK),
    implements("node-anti-affinity-check", &node_anti_affinity::CHECK),
    implements("default-storage-class-check", &default_storage_class::CHECK),
    implements("lb-service-check", &load_balancer::SERVICE_CHECK),
    Implementation {
        testcase: "lb-ip-preservation-check",
        check: &load_balancer::IP_PRESERVATION_CHECK,
        level: Level::Informational,
    },
    implements("upstream-e2e", &upstream_e2e::UPSTREAM_CHECK),
];

/// The implementation of testcase `id`, if this binary has one.
pub fn implementing(id: &str) -> Option<&'static Implementation> {
    IMPLEMENTED.iter().find(|i| i.testcase == id)
}

/// The testcase ids this binary implements, for messages.
pub fn implemented_ids() -> Vec<&'static str> {
    IMPLEMENTED.iter().map(|i| i.testcase).collect()
}

/// Data files and network use of checks that need release or CVE data.
#[derive(Debug, Clone, Default)]
pub struct DataFiles {
    pub offline: bool,
    pub eol: Option<PathBuf>,
    pub releases: Option<PathBuf>,
    pub cves: Option<PathBuf>,
}

/// Options of the whole run that checks read.
pub struct Options {
    pub reference_date: jiff::civil::Date,
    pub data: DataFiles,
    pub offering: bool,
    pub workload: Workload,
    /// The upstream e2e runs.
    pub e2e: upstream_e2e::Settings,
    pub ok_to_fail: upstream_e2e::upstream::OkToFail,
    /// This suite's image (the e2e results sidecar).
    pub suite_image: String,
    /// `--image-registry`, for images chosen at run time (the conformance image).
    pub image_registry: Option<String>,
    /// HTTP client for public release/CVE data.
    pub http: reqwest::Client,
}

/// A cluster of the run, as the preflight found it.
#[derive(Clone)]
pub struct Subject {
    pub info: ServerInfo,
    pub cluster: Arc<Cluster>,
}

/// What a check gets to work with.
pub struct CheckContext {
    pub testcase: Testcase,
    /// The cluster under test.
    pub subject: Subject,
    /// Further clusters of the same offering (`--offering`), with their preflight result.
    pub offering: Vec<Result<ServerInfo, String>>,
    pub options: Arc<Options>,
    pub log: CheckLog,
    /// What the check has decided so far; the runner keeps it if the check is stopped.
    pub decisions: Decisions,
}

impl CheckContext {
    pub fn cluster(&self) -> &Cluster {
        &self.subject.cluster
    }

    /// Declares the requirements the check will decide, in report order. Those still
    /// undecided when the check is stopped (deadline, interrupt) are reported ABORT.
    pub fn plan(&self, ids: impl IntoIterator<Item = impl Into<String>>) {
        self.decisions.lock().plan(ids);
    }

    /// Publishes a decided requirement at once (it survives a later stop of the check).
    pub fn decide(&self, requirement: Requirement) {
        self.decisions.lock().decide(requirement);
    }

    /// Publishes the requirements `ids` as not attempted because of `why`: a mandatory
    /// requirement already failed, so the testcase fails whatever they would show.
    pub fn not_attempted(&self, ids: &[&str], why: &str) {
        let mut decisions = self.decisions.lock();
        for id in ids {
            decisions.decide(Requirement::not_attempted(*id, why));
        }
    }
}

/// A check's decisions as it makes them, shared with the runner (see [`Partial`]).
#[derive(Clone, Default)]
pub struct Decisions(Arc<Mutex<Partial>>);

impl Decisions {
    /// Exclusive access to what has been decided.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Partial> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything decided so far; the handle is empty afterwards.
    pub fn take(&self) -> Partial {
        std::mem::take(&mut *self.lock())
    }
}

/// A check's log: each line goes to stderr (prefixed with the testcase) and into the
/// check's log file (prefixed with the time, `HH:MM:SS`).
#[derive(Clone)]
pub struct CheckLog {
    testcase: String,
    /// `(time, line)`.
    lines: Arc<Mutex<Vec<(String, String)>>>,
}

impl CheckLog {
    pub fn new(testcase: &str) -> Self {
        CheckLog {
            testcase: testcase.to_string(),
            lines: Arc::default(),
        }
    }

    pub fn info(&self, line: impl AsRef<str>) {
        let line = console::terminal_line(line.as_ref());
        console::note(&format!("[{}] {line}", self.testcase));
        let stamp = jiff::Timestamp::now().strftime("%H:%M:%S").to_string();
        self.lock().push((stamp, line));
    }

    /// The lines with their times, for the log file.
    pub fn lines(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|(stamp, line)| format!("{stamp} {line}"))
            .collect()
    }

    /// The last thing the check said it was doing (without its time).
    pub fn last(&self) -> Option<String> {
        self.lock().last().map(|(_, line)| line.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, String)>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }
}
