//! The real control plane under tests: starts the Go test bed (`testbed/`, a program that
//! runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler from
//! k8s.io/kubernetes, with emulated nodes whose pods run real programs in network
//! namespaces) for a scenario of `testbed/scenarios/`, and stops it on drop.
//!
//! The binary is `$SCS_TESTBED_BIN`, by default `testbed/bin/testbed` (built by
//! `testbed/build.sh`, which also builds `testbed/bin/agnhost` next to it). A missing
//! binary FAILS the test with the build instructions: a test never skips silently.
//! The test bed needs root (network namespaces, mounts); CI runs as root.
//!
//! Every test bed also has a client namespace (`<prefix>-client`, 198.51.100.10) behind the
//! load balancer namespace: [`TestBed::client_run`] runs the suite there, where it reaches
//! the API server on the node network and the load balancers' addresses as a machine
//! outside the cluster does (see testbed/README.md, "Network layout").
//!
//! ```text
//! let tb = TestBed::start("three-zones");
//! let out = scs(&["run", "-k", tb.kubeconfig_str(), "--check", "node-distribution-check"]);
//! let pods = tb.block_on(async { Api::<Pod>::all(tb.client()).list(&Default::default()).await });
//! let out = tb.client_run(&["--check", "lb-service-check"]);
//! ```

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

/// Env var naming the test bed binary.
pub const BIN_ENV: &str = "SCS_TESTBED_BIN";

/// How long a start may take (a cold start is about 10 s on 2 cores).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// The test bed binary: `$SCS_TESTBED_BIN` or `testbed/bin/testbed`. Panics with the
/// build instructions if it is missing.
pub fn binary() -> PathBuf {
    let path = std::env::var_os(BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("testbed/bin/testbed"));
    assert!(
        path.is_file(),
        "test bed binary {} not found: build it with `testbed/build.sh` (Go {}; the first \
         build takes about 10 minutes) or point {BIN_ENV} at it",
        path.display(),
        "1.26"
    );
    path
}

pub fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("testbed/scenarios/{name}.yaml"))
}

/// A running test bed. Dropping it stops it (SIGTERM, then SIGKILL and `testbed cleanup`).
pub struct TestBed {
    child: std::sync::Mutex<Option<Child>>,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    client_netns: String,
    client_kubeconfig: PathBuf,
    prefix: String,
    server: String,
    version: String,
    /// Seconds from start to the ready line, as the test bed measured it.
    pub ready_seconds: f64,
    runtime: tokio::runtime::Runtime,
    client: std::sync::OnceLock<kube::Client>,
}

/// What a stopped test bed left behind (all empty after a clean stop).
#[derive(Debug, Default)]
pub struct Leftovers {
    pub namespaces: Vec<String>,
    pub processes: Vec<String>,
    pub mounts: Vec<String>,
    pub dir_exists: bool,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.processes.is_empty()
            && self.mounts.is_empty()
            && !self.dir_exists
    }
}

fn unique_prefix() -> String {
    let mut b = [0u8; 3];
    getrandom::fill(&mut b).expect("random");
    format!("tb{:02x}{:02x}{:02x}", b[0], b[1], b[2])
}

impl TestBed {
    /// Starts scenario `name` (`testbed/scenarios/<name>.yaml`) and waits for its ready line.
    pub fn start(name: &str) -> TestBed {
        Self::launch(name, None)
    }

    /// Starts scenario `name` with a fixtures directory of its own for the conformance
    /// image emulation: a copy of `tests/fixtures/e2e` to which `extra` adds (e.g. a
    /// generated fixture, or a copy with a `pause`).
    pub fn start_with_fixtures(name: &str, extra: &dyn Fn(&Path)) -> TestBed {
        Self::launch(name, Some(extra))
    }

    fn launch(name: &str, extra_fixtures: Option<&dyn Fn(&Path)>) -> TestBed {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bin = binary();
        let scenario = scenario_path(name);
        assert!(
            scenario.is_file(),
            "scenario {} not found",
            scenario.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("testbed-")
            .tempdir()
            .expect("temp dir");
        let work = dir.path().join("bed");
        let prefix = unique_prefix();
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let mut fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/e2e");
        if let Some(extra) = extra_fixtures {
            let own = dir.path().join("fixtures");
            copy_dir(&fixtures, &own);
            extra(&own);
            fixtures = own;
        }
        let mut child = Command::new(&bin)
            .arg("run")
            .arg("--scenario")
            .arg(&scenario)
            .arg("--dir")
            .arg(&work)
            .arg("--prefix")
            .arg(&prefix)
            .arg("--suite-binary")
            .arg(super::binary::BIN)
            .arg("--fixtures")
            .arg(&fixtures)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let ready = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with("testbed ready:") => break line,
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = Command::new(&bin)
                        .args(["cleanup", "--prefix", &prefix])
                        .status();
                    panic!(
                        "test bed {name} did not print its ready line within {START_TIMEOUT:?}\n\
                         stderr:\n{}\ncontrol-plane.log (tail):\n{}",
                        std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default(),
                        tail(&work.join("control-plane.log"), 40)
                    );
                }
            }
        };
        let field = |key: &str| -> String {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("ready line without {key}: {ready}"))
                .to_string()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        TestBed {
            kubeconfig: PathBuf::from(field("kubeconfig")),
            client_netns: field("client-netns"),
            client_kubeconfig: PathBuf::from(field("client-kubeconfig")),
            server: field("server"),
            version: field("version"),
            ready_seconds: field("seconds").parse().unwrap_or(0.0),
            prefix,
            child: std::sync::Mutex::new(Some(child)),
            dir,
            runtime,
            client: std::sync::OnceLock::new(),
        }
    }

    /// The admin kubeconfig (client certificate in group system:masters).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn kubeconfig_str(&self) -> &str {
        self.kubeconfig.to_str().expect("utf-8 path")
    }

    /// The admin kubeconfig for the client namespace (server `https://172.30.0.1:6443`, the
    /// API server's address on the node network).
    pub fn client_kubeconfig_str(&self) -> &str {
        self.client_kubeconfig.to_str().expect("utf-8 path")
    }

    /// What starts a program inside the client namespace: `ip netns exec <prefix>-client`.
    pub fn client_wrapper(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.client_netns]
    }

    /// The suite binary inside the client namespace, with the clean environment of
    /// [`super::binary::command`] (`home` is its HOME); add arguments and run it.
    pub fn suite_command(&self, home: &Path) -> Command {
        super::binary::command_via(home, &self.client_wrapper())
    }

    /// `run -k <client kubeconfig> --offline <extra>` inside the client namespace, with a
    /// fresh output directory (see [`super::binary::scs`]).
    pub fn client_run(&self, extra: &[&str]) -> super::binary::Output {
        let mut args = vec!["run", "-k", self.client_kubeconfig_str(), "--offline"];
        args.extend_from_slice(extra);
        super::binary::scs_via(&self.client_wrapper(), &args)
    }

    /// Runs `argv` inside the test bed's network namespace `<prefix>-<name>` (`world`,
    /// `lb`, `client`, `n0`, ...) and returns what it printed.
    pub fn run_in(&self, name: &str, argv: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-{name}", self.prefix)])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {}-{name}: {e}", self.prefix))
    }

    /// `https://127.0.0.1:PORT` (a forwarder in the host's namespace).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The version the API server reports (`v1.37.2`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Name prefix of the test bed's network namespaces.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The test bed's working directory (logs, pods, volumes).
    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("bed")
    }

    /// Runs a future on the test bed's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// An admin client.
    pub fn client(&self) -> kube::Client {
        self.client
            .get_or_init(|| {
                self.runtime.block_on(async {
                    let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)
                        .expect("read kubeconfig");
                    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                        .await
                        .expect("kubeconfig");
                    kube::Client::try_from(config).expect("client")
                })
            })
            .clone()
    }

    /// Creates ClusterRole `name` with exactly `rules`.
    pub fn create_cluster_role(&self, name: &str, rules: Vec<PolicyRule>) {
        let api: Api<ClusterRole> = Api::all(self.client());
        let role = ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            rules: Some(rules),
            ..Default::default()
        };
        self.block_on(api.create(&PostParams::default(), &role))
            .unwrap_or_else(|e| panic!("create ClusterRole {name}: {e}"));
    }

    /// A kubeconfig for a new ServiceAccount `testbed-users/<cluster_role>` bound (by a
    /// ClusterRoleBinding of the same name) to exactly ClusterRole `cluster_role`, with a
    /// token from the TokenRequest API (valid 2 h). Least-privilege runs use it.
    pub fn service_account_kubeconfig(&self, cluster_role: &str) -> PathBuf {
        const NS: &str = "testbed-users";
        let client = self.client();
        let token = self.block_on(async {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(NS.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match namespaces.create(&PostParams::default(), &ns).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => panic!("create namespace {NS}: {e}"),
            }
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(cluster_role.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            accounts
                .create(&PostParams::default(), &sa)
                .await
                .unwrap_or_else(|e| panic!("create ServiceAccount {cluster_role}: {e}"));
            let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
            let binding = ClusterRoleBinding {
                metadata: ObjectMeta {
                    name: Some(cluster_role.into()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: cluster_role.into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: cluster_role.into(),
                    namespace: Some(NS.into()),
                    ..Default::default()
                }]),
            };
            bindings
                .create(&PostParams::default(), &binding)
                .await
                .unwrap_or_else(|e| panic!("create ClusterRoleBinding {cluster_role}: {e}"));
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    expiration_seconds: Some(7200),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer: TokenRequest = accounts
                .create_subresource("token", cluster_role, &PostParams::default(), &request)
                .await
                .unwrap_or_else(|e| panic!("TokenRequest for {cluster_role}: {e}"));
            answer.status.expect("token status").token
        });
        let admin = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let ca = admin
            .lines()
            .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
            .expect("CA in kubeconfig");
        let path = self
            .dir
            .path()
            .join(format!("sa-{cluster_role}.kubeconfig"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: {cluster_role}\n  user:\n    token: {token}\ncontexts:\n- name: {cluster_role}\n  context:\n    cluster: testbed\n    user: {cluster_role}\ncurrent-context: {cluster_role}\n",
                self.server
            ),
        )
        .expect("write kubeconfig");
        path
    }

    /// Stops the test bed and reports what it left behind.
    pub fn stop(self) -> Leftovers {
        self.shutdown();
        leftovers(&self.prefix, &self.work_dir())
    }

    fn shutdown(&self) {
        let taken = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut child) = taken else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        // Whatever a killed test bed could not remove.
        if !leftovers(&self.prefix, &self.work_dir()).is_empty() {
            let _ = Command::new(binary())
                .args(["cleanup", "--prefix", &self.prefix, "--dir"])
                .arg(self.work_dir())
                .status();
        }
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Network namespaces named `<prefix>-*`, processes whose command line names `dir`, and
/// mounts below `dir`.
pub fn leftovers(prefix: &str, dir: &Path) -> Leftovers {
    let mut out = Leftovers::default();
    if let Ok(o) = Command::new("ip").args(["netns", "list"]).output() {
        out.namespaces = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{prefix}-")))
            .map(String::from)
            .collect();
    }
    let needle = dir.to_string_lossy().to_string();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // Container processes are chrooted into a root below the test bed's directory.
            let root = std::fs::read_link(e.path().join("root")).unwrap_or_default();
            if cmdline.contains(&needle) || root.to_string_lossy().contains(&needle) {
                out.processes.push(format!("{name}: {cmdline}"));
            }
        }
    }
    if let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") {
        out.mounts = mi
            .lines()
            .filter(|l| l.contains(&needle))
            .map(String::from)
            .collect();
    }
    out.dir_exists = dir.join("nodes").exists() || dir.join("etcd").exists();
    out
}

/// The test beds shared by the tests of this test binary, by scenario.
static SHARED: std::sync::Mutex<std::collections::BTreeMap<String, &'static OnceLock<TestBed>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// A random run id (`--run-id`): 8 lowercase hex digits.
pub fn new_run_id() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl TestBed {
    /// The test bed of scenario `name` shared by every test of this test binary that asks
    /// for it: started on first use, stopped when the binary exits (what it left behind is
    /// printed on stderr). Share one only between scenarios that do not change its
    /// cluster-scoped state (nodes, StorageClasses), or that take turns doing so.
    pub fn shared(name: &str) -> &'static TestBed {
        let cell = {
            let mut map = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            if map.is_empty() {
                // SAFETY: registers a plain `extern "C"` function without arguments.
                unsafe { libc::atexit(stop_shared) };
            }
            *map.entry(name.to_string())
                .or_insert_with(|| Box::leak(Box::new(OnceLock::new())))
        };
        cell.get_or_init(|| TestBed::start(name))
    }

    /// [`TestBed::shared`] with a fixtures directory of its own (see
    /// [`TestBed::start_with_fixtures`]); `extra` runs for the first test only.
    pub fn shared_with_fixtures(name: &str, extra: &dyn Fn(&Path)) -> &'static TestBed {
        let cell = {
            let mut map = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            if map.is_empty() {
                // SAFETY: registers a plain `extern "C"` function without arguments.
                unsafe { libc::atexit(stop_shared) };
            }
            *map.entry(name.to_string())
                .or_insert_with(|| Box::leak(Box::new(OnceLock::new())))
        };
        cell.get_or_init(|| TestBed::start_with_fixtures(name, extra))
    }

    /// The rules of the ClusterRole that `scs-kaas-check gen <selection>` prints: the
    /// README's RBAC table for those testcases and flags.
    pub fn gen_rules(&self, selection: &[&str]) -> Vec<PolicyRule> {
        let mut args = vec!["gen"];
        args.extend_from_slice(selection);
        let out = super::binary::scs(&args);
        assert_eq!(out.code, 0, "gen {selection:?}: {}", out.stderr);
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&out.stdout).expect("gen prints YAML documents");
        let role = docs
            .iter()
            .find(|d| d["kind"] == "ClusterRole")
            .unwrap_or_else(|| panic!("gen printed no ClusterRole:\n{}", out.stdout));
        serde_json::from_value(role["rules"].clone()).expect("ClusterRole rules")
    }

    /// A kubeconfig for a new ServiceAccount bound to exactly the ClusterRole that
    /// `scs-kaas-check gen <selection>` prints ([`TestBed::gen_rules`]): a run with it
    /// fails on any right the README's table lacks.
    pub fn gen_kubeconfig(&self, selection: &[&str]) -> PathBuf {
        let name = format!("gen-{}", new_run_id());
        self.create_cluster_role(&name, self.gen_rules(selection));
        self.service_account_kubeconfig(&name)
    }

    /// A run of `checks` prepared before it starts: as a new ServiceAccount bound to
    /// exactly the ClusterRole `gen` prints for them ([`TestBed::gen_kubeconfig`]), with a
    /// run id known in advance (for a [`TestBed::witness`] or [`TestBed::refuse_pods`]).
    pub fn prepare_run(&self, checks: &[&'static str]) -> PreparedRun<'_> {
        let selection: Vec<&str> = checks.iter().flat_map(|c| ["--check", *c]).collect();
        self.prepare_run_as(self.gen_kubeconfig(&selection), checks)
    }

    /// [`TestBed::prepare_run`] with another identity's kubeconfig.
    pub fn prepare_run_as(&self, kubeconfig: PathBuf, checks: &[&'static str]) -> PreparedRun<'_> {
        PreparedRun {
            bed: self,
            kubeconfig,
            selection: checks.iter().flat_map(|c| ["--check", *c]).collect(),
            run_id: new_run_id(),
        }
    }

    /// Everything run `run_id` left in the cluster: every object of every resource the API
    /// serves (cluster-scoped ones included) labelled `scs-kaas-check/run-id=<run_id>`, and
    /// PersistentVolumes claimed from the run's namespaces (`skc-<run_id>-...`), which
    /// carry no label. `kind namespace/name` each.
    pub fn run_objects(&self, run_id: &str) -> Vec<String> {
        let mut found = self.labelled_objects(&format!("scs-kaas-check/run-id={run_id}"));
        found.extend(self.volumes_claimed_from(&format!("skc-{run_id}-")));
        found
    }

    /// Asserts that run `run_id` left nothing behind ([`TestBed::run_objects`]).
    pub fn assert_run_left_nothing(&self, run_id: &str) {
        let left = self.run_objects(run_id);
        assert!(left.is_empty(), "run {run_id} left behind: {left:#?}");
    }

    /// Starts watching the objects of kind `K` labelled with run `run_id` (all namespaces)
    /// and returns once the watch runs: what the simulator's request log told, a real API
    /// server tells by watch events.
    pub fn witness<K>(&self, run_id: &str) -> Witness
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        use futures::StreamExt;
        use kube::runtime::watcher;
        let api: Api<K> = Api::all(self.client());
        let config = watcher::Config::default().labels(&format!("scs-kaas-check/run-id={run_id}"));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let (ready, started) = mpsc::channel();
        let record = seen.clone();
        let task = self.runtime.spawn(async move {
            let mut events = watcher(api, config).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        let _ = ready.send(());
                    }
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        let name = format!(
                            "{}/{}",
                            o.meta().namespace.clone().unwrap_or_default(),
                            o.meta().name.clone().unwrap_or_default()
                        );
                        record
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(name);
                    }
                    _ => {}
                }
            }
        });
        started
            .recv_timeout(Duration::from_secs(30))
            .expect("the witness's watch starts within 30 s");
        Witness { seen, task }
    }

    /// Makes admission refuse every pod created in the namespaces of run `run_id` with
    /// `message`, as a cluster's own policy would: a ValidatingAdmissionPolicy (upstream
    /// admission, a CEL rule) whose binding selects namespaces labelled with the run id
    /// (`reason: Forbidden`, so the API answers 403 like a quota). Returns once admission
    /// applies it; removed when the guard is dropped.
    pub fn refuse_pods(&self, run_id: &str, message: &str) -> Applied<'_> {
        let name = format!("refuse-pods-{run_id}");
        let policy = refusing_policy(&name, run_id, "CREATE", "pods", "true", message);
        self.apply_policy(&policy, run_id, Probe::Refuses("pods", "probe"))
    }
}

/// A run of the suite against a test bed ([`TestBed::prepare_run`]).
pub struct PreparedRun<'a> {
    bed: &'a TestBed,
    pub kubeconfig: PathBuf,
    selection: Vec<&'static str>,
    pub run_id: String,
}

impl PreparedRun<'_> {
    /// Runs `scs-kaas-check run --offline` with `extra` flags; asserts a clean exit and
    /// that the run left nothing in the cluster ([`TestBed::assert_run_left_nothing`]).
    pub fn run(&self, extra: &[&str]) -> super::binary::Output {
        let kubeconfig = self.kubeconfig.to_str().expect("UTF-8 path");
        let mut args = vec![
            "run",
            "-k",
            kubeconfig,
            "--offline",
            "--run-id",
            &self.run_id,
        ];
        args.extend_from_slice(&self.selection);
        args.extend_from_slice(extra);
        let out = super::binary::scs(&args);
        out.assert_clean_exit();
        self.bed.assert_run_left_nothing(&self.run_id);
        out
    }
}

/// What [`TestBed::witness`] saw: `namespace/name` of every object that appeared.
pub struct Witness {
    seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Witness {
    pub fn names(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Stops the shared test beds when the test binary exits.
extern "C" fn stop_shared() {
    let beds: Vec<&'static TestBed> = SHARED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter_map(|cell| cell.get())
        .collect();
    for bed in beds {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            bed.shutdown();
            let left = leftovers(&bed.prefix, &bed.work_dir());
            if !left.is_empty() {
                eprintln!("shared test bed {} left behind: {left:#?}", bed.prefix);
            }
            let _ = std::fs::remove_dir_all(bed.dir.path());
        }));
    }
}

impl TestBed {
    /// `kubeconfig` for the client namespace: the same credential, the API server at its
    /// address on the node network (as in the client kubeconfig).
    pub fn for_client_namespace(&self, kubeconfig: &Path) -> PathBuf {
        let client = std::fs::read_to_string(&self.client_kubeconfig).expect("client kubeconfig");
        let server = client
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .expect("server in the client kubeconfig");
        self.kubeconfig_for(kubeconfig, server)
    }

    /// `run -k <kubeconfig> --offline <extra>` inside the client namespace (`kubeconfig`
    /// from [`TestBed::for_client_namespace`]), with a fresh output directory.
    pub fn client_run_as(&self, kubeconfig: &Path, extra: &[&str]) -> super::binary::Output {
        let mut args = vec!["run", "-k", kubeconfig.to_str().expect("path"), "--offline"];
        args.extend_from_slice(extra);
        super::binary::scs_via(&self.client_wrapper(), &args)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

impl TestBed {
    /// A copy of `kubeconfig` (the admin's, or one of [`TestBed::gen_kubeconfig`]) for
    /// another server URL (e.g. a proxy in front of the API server on 127.0.0.1, which the
    /// server certificate covers).
    pub fn kubeconfig_for(&self, kubeconfig: &Path, server: &str) -> PathBuf {
        let original = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
        let changed = original.replace(
            &format!("server: {}", self.server),
            &format!("server: {server}"),
        );
        assert_ne!(
            changed,
            original,
            "no server line in {}",
            kubeconfig.display()
        );
        let stem = kubeconfig
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("kubeconfig");
        let path = self.dir.path().join(format!(
            "{stem}-via-{}.kubeconfig",
            server.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        ));
        std::fs::write(&path, changed).expect("write kubeconfig");
        path
    }

    /// The API server's address in the host's namespace (`127.0.0.1:<port>`).
    pub fn server_addr(&self) -> std::net::SocketAddr {
        self.server
            .trim_start_matches("https://")
            .parse()
            .expect("server address")
    }

    /// An idle-timeout proxy in front of the API server (see [`super::idle_proxy`]) closing
    /// connections idle for `idle`, and a copy of `kubeconfig` that reaches the server
    /// through it.
    pub fn behind_idle_proxy(
        &self,
        kubeconfig: &Path,
        idle: Duration,
    ) -> (super::idle_proxy::IdleProxy, PathBuf) {
        let proxy = super::idle_proxy::IdleProxy::start(self.server_addr(), idle);
        let via = self.kubeconfig_for(kubeconfig, &proxy.url());
        (proxy, via)
    }

    /// Creates the objects of the YAML documents `yaml` (any kind the API server serves,
    /// e.g. admission policies) with the admin credential; they are deleted when the
    /// returned guard is dropped.
    pub fn apply(&self, yaml: &str) -> Applied<'_> {
        let client = self.client();
        let objects = self.block_on(async {
            let mut created = Vec::new();
            for doc in yaml.split("\n---\n").filter(|d| !d.trim().is_empty()) {
                let value: serde_json::Value =
                    serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}:\n{doc}"));
                let object: kube::api::DynamicObject =
                    serde_json::from_value(value.clone()).expect("an object");
                let (group, version) = match value["apiVersion"].as_str().expect("apiVersion") {
                    v if v.contains('/') => v.split_once('/').expect("group/version"),
                    v => ("", v),
                };
                let gvk = kube::api::GroupVersionKind::gvk(
                    group,
                    version,
                    value["kind"].as_str().expect("kind"),
                );
                let (resource, _) = kube::discovery::pinned_kind(&client, &gvk)
                    .await
                    .unwrap_or_else(|e| panic!("{gvk:?} is not served: {e}"));
                let namespace = object.metadata.namespace.clone();
                let api: Api<kube::api::DynamicObject> = match &namespace {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                    None => Api::all_with(client.clone(), &resource),
                };
                api.create(&PostParams::default(), &object)
                    .await
                    .unwrap_or_else(|e| panic!("create {doc}: {e}"));
                created.push((resource, namespace, object.metadata.name.expect("a name")));
            }
            created
        });
        Applied { bed: self, objects }
    }

    /// Every object carrying the labels `selector` (a label selector), of every resource
    /// the API server lists, cluster-scoped ones included: `Kind namespace/name`.
    pub fn labelled_objects(&self, selector: &str) -> Vec<String> {
        let client = self.client();
        self.block_on(async {
            let discovery = kube::discovery::Discovery::new(client.clone())
                .run()
                .await
                .expect("discovery");
            let mut found = Vec::new();
            for group in discovery.groups() {
                for (resource, caps) in group.recommended_resources() {
                    if !caps.supports_operation(kube::discovery::verbs::LIST) {
                        continue;
                    }
                    let api: Api<kube::api::DynamicObject> =
                        Api::all_with(client.clone(), &resource);
                    let params = kube::api::ListParams::default().labels(selector);
                    match api.list(&params).await {
                        Ok(list) => found.extend(list.items.into_iter().map(|o| {
                            let ns = o.metadata.namespace.map(|n| format!("{n}/"));
                            format!(
                                "{} {}{}",
                                resource.kind,
                                ns.unwrap_or_default(),
                                o.metadata.name.unwrap_or_default()
                            )
                        })),
                        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 405) => {}
                        Err(e) => panic!("list {}: {e}", resource.plural),
                    }
                }
            }
            found
        })
    }

    /// The names of the namespaces of run `run_id` (the suite's labels), listed with the
    /// admin credential.
    pub fn run_namespaces(&self, run_id: &str) -> Vec<String> {
        let api: Api<Namespace> = Api::all(self.client());
        let params = kube::api::ListParams::default().labels(&format!(
            "app.kubernetes.io/managed-by=scs-kaas-check,scs-kaas-check/run-id={run_id}"
        ));
        self.block_on(api.list(&params))
            .expect("list namespaces")
            .items
            .into_iter()
            .filter_map(|ns| ns.metadata.name)
            .collect()
    }

    /// Asserts that no object of any run is left (see [`TestBed::assert_run_left_nothing`]).
    pub fn assert_no_run_left(&self) {
        let mut left = self.labelled_objects("app.kubernetes.io/managed-by=scs-kaas-check");
        left.extend(self.volumes_claimed_from("skc-"));
        assert!(left.is_empty(), "runs left behind: {left:#?}");
    }

    /// `PersistentVolume name` of the volumes whose claim is (or was) in a namespace whose
    /// name starts with `prefix`.
    fn volumes_claimed_from(&self, prefix: &str) -> Vec<String> {
        let api: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(self.client());
        let volumes = self
            .block_on(api.list(&Default::default()))
            .expect("list persistentvolumes");
        volumes
            .items
            .into_iter()
            .filter(|pv| {
                pv.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .and_then(|c| c.namespace.as_deref())
                    .is_some_and(|ns| ns.starts_with(prefix))
            })
            .map(|pv| format!("PersistentVolume {}", pv.metadata.name.unwrap_or_default()))
            .collect()
    }
}

/// Objects [`TestBed::apply`] created; deleted on drop.
pub struct Applied<'a> {
    bed: &'a TestBed,
    objects: Vec<(kube::api::ApiResource, Option<String>, String)>,
}

impl Drop for Applied<'_> {
    fn drop(&mut self) {
        let client = self.bed.client();
        for (resource, namespace, name) in self.objects.drain(..).rev() {
            let api: Api<kube::api::DynamicObject> = match &namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            let _ = self
                .bed
                .block_on(api.delete(&name, &kube::api::DeleteParams::default()));
        }
    }
}

/// YAML for [`TestBed::apply`]: a ValidatingAdmissionPolicy and its binding (both named
/// `name`) that refuse `operation` (`CREATE`, `DELETE`, ...) of the core resource
/// `resource` in the namespaces of run `run_id` (for `namespaces`: the run's namespaces
/// themselves) where the CEL expression `refuse_when` holds, with 403 Forbidden and
/// `message`: a site's admission policy, enforced by the real API server. The namespaces
/// of other runs are not affected.
pub fn refusing_policy(
    name: &str,
    run_id: &str,
    operation: &str,
    resource: &str,
    refuse_when: &str,
    message: &str,
) -> String {
    let expression = serde_json::to_string(&format!("!({refuse_when})")).expect("json");
    let message = serde_json::to_string(message).expect("json");
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {{apiGroups: [\"\"], apiVersions: [v1], operations: [{operation}], resources: [{resource}]}}
  validations:
  - {{expression: {expression}, message: {message}, reason: Forbidden}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{scs-kaas-check/run-id: \"{run_id}\"}}
"
    )
}

/// YAML for [`TestBed::apply`]: a MutatingAdmissionPolicy and its binding (both named
/// `name`) that give every pod created in a namespace of run `run_id` (other than the
/// in-cluster runner's) a scheduling gate: the real scheduler leaves such pods Pending
/// (`SchedulingGated`), as pods that wait for nodes that do not come.
pub fn holding_policy(name: &str, run_id: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  reinvocationPolicy: Never
  matchConstraints:
    resourceRules:
    - {{apiGroups: [\"\"], apiVersions: [v1], operations: [CREATE], resources: [pods]}}
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >
        Object{{spec: Object.spec{{schedulingGates: [Object.spec.schedulingGates{{name: \"test.scs.community/hold\"}}]}}}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  matchResources:
    namespaceSelector:
      matchLabels: {{scs-kaas-check/run-id: \"{run_id}\"}}
      matchExpressions:
      - {{key: scs-kaas-check/check, operator: NotIn, values: [in-cluster]}}
"
    )
}

impl super::binary::Target for TestBed {
    /// The admin kubeconfig.
    fn kubeconfig_file(&self) -> PathBuf {
        self.kubeconfig.clone()
    }
}

/// How [`TestBed::apply_policy`] sees that the API server enforces a policy, by a dry-run
/// request in a namespace of the run (nothing is created).
pub enum Probe<'a> {
    /// Creating the core object of this kind (`pods`, `configmaps`) with this name is
    /// refused.
    Refuses(&'a str, &'a str),
    /// Deleting a namespace of the run is refused.
    RefusesNamespaceDeletion,
    /// A pod created gets a scheduling gate ([`holding_policy`]).
    HoldsPods,
}

impl TestBed {
    /// Creates the admission policies of `yaml` ([`refusing_policy`], [`holding_policy`])
    /// and waits (at most 60 s) until the API server enforces them for run `run_id`:
    /// admission plugins learn of new policies from informers, a moment after they exist.
    /// Probes go to a namespace labelled with the run id only (not managed by the suite),
    /// deleted afterwards.
    pub fn apply_policy(&self, yaml: &str, run_id: &str, probe: Probe) -> Applied<'_> {
        let applied = self.apply(yaml);
        let client = self.client();
        let ns_name = format!("probe-{run_id}");
        let probe_ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": ns_name, "labels": {
                "scs-kaas-check/check": "probe", "scs-kaas-check/run-id": run_id}}
        }))
        .expect("namespace");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        self.block_on(namespaces.create(&PostParams::default(), &probe_ns))
            .unwrap_or_else(|e| panic!("create namespace {ns_name}: {e}"));
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "probe"},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
        }))
        .expect("pod");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let enforced = self.block_on(async {
                let refused = |r: Result<(), kube::Error>| {
                    matches!(r, Err(kube::Error::Api(e)) if e.code == 403)
                };
                match probe {
                    Probe::Refuses("pods", _) => {
                        let api: Api<k8s_openapi::api::core::v1::Pod> =
                            Api::namespaced(client.clone(), &ns_name);
                        refused(api.create(&dry, &pod).await.map(drop))
                    }
                    Probe::Refuses(kind, name) => {
                        assert_eq!(kind, "configmaps", "probe of {kind}");
                        let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
                            Api::namespaced(client.clone(), &ns_name);
                        let cm = serde_json::from_value(
                            serde_json::json!({"metadata": {"name": name}}),
                        )
                        .expect("configmap");
                        refused(api.create(&dry, &cm).await.map(drop))
                    }
                    Probe::RefusesNamespaceDeletion => {
                        let params = kube::api::DeleteParams {
                            dry_run: true,
                            ..Default::default()
                        };
                        refused(namespaces.delete(&ns_name, &params).await.map(drop))
                    }
                    Probe::HoldsPods => {
                        let api: Api<k8s_openapi::api::core::v1::Pod> =
                            Api::namespaced(client.clone(), &ns_name);
                        api.create(&dry, &pod).await.is_ok_and(|p| {
                            p.spec
                                .and_then(|s| s.scheduling_gates)
                                .is_some_and(|g| !g.is_empty())
                        })
                    }
                }
            });
            if enforced {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the API server does not enforce the policy within 60 s:\n{yaml}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // Without the run's label no policy of the run refuses deleting it.
        self.block_on(async {
            let patch = kube::api::Patch::Merge(serde_json::json!({
                "metadata": {"labels": {"scs-kaas-check/run-id": null}}
            }));
            namespaces
                .patch(&ns_name, &Default::default(), &patch)
                .await
                .unwrap_or_else(|e| panic!("unlabel {ns_name}: {e}"));
            namespaces
                .delete(&ns_name, &Default::default())
                .await
                .unwrap_or_else(|e| panic!("delete {ns_name}: {e}"));
        });
        applied
    }
}
