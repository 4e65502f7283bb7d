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
use std::sync::mpsc;
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
    child: Option<Child>,
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
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
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
            .arg(manifest.join("tests/fixtures/e2e"))
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
            child: Some(child),
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
    pub fn stop(mut self) -> Leftovers {
        self.shutdown();
        leftovers(&self.prefix, &self.work_dir())
    }

    fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
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

impl TestBed {
    /// A kubeconfig of a ServiceAccount bound to exactly the rules of the ClusterRole that
    /// `scs-kaas-check gen` prints for `selection` (e.g. `["--check", "lb-service-check"]`),
    /// created as ClusterRole `name`: a run with it proves the README's rights suffice.
    pub fn gen_role_kubeconfig(&self, name: &str, selection: &[&str]) -> PathBuf {
        let mut args = vec!["gen"];
        args.extend_from_slice(selection);
        let out = super::binary::scs(&args);
        assert_eq!(out.code, 0, "gen: {}", out.stderr);
        let role = out
            .stdout
            .split("\n---")
            .filter_map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).ok())
            .find(|doc| doc["kind"] == "ClusterRole")
            .unwrap_or_else(|| panic!("no ClusterRole in gen's output:\n{}", out.stdout));
        let rules: Vec<PolicyRule> =
            serde_json::from_value(role["rules"].clone()).expect("ClusterRole rules");
        self.create_cluster_role(name, rules);
        self.service_account_kubeconfig(name)
    }

    /// `kubeconfig` for the client namespace: the same credential, the API server at its
    /// address on the node network (as in the client kubeconfig).
    pub fn for_client_namespace(&self, kubeconfig: &Path) -> PathBuf {
        let server_of = |path: &Path| {
            std::fs::read_to_string(path)
                .expect("kubeconfig")
                .lines()
                .find_map(|l| Some(l.trim().strip_prefix("server: ")?.to_string()))
                .expect("server in kubeconfig")
        };
        let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
        let text = text.replace(&server_of(kubeconfig), &server_of(&self.client_kubeconfig));
        let path = kubeconfig.with_extension("client.kubeconfig");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// `run -k <kubeconfig> --offline <extra>` inside the client namespace (`kubeconfig`
    /// from [`TestBed::for_client_namespace`]), with a fresh output directory.
    pub fn client_run_as(&self, kubeconfig: &Path, extra: &[&str]) -> super::binary::Output {
        let mut args = vec!["run", "-k", kubeconfig.to_str().expect("path"), "--offline"];
        args.extend_from_slice(extra);
        super::binary::scs_via(&self.client_wrapper(), &args)
    }

    /// Every object carrying run `run_id`'s label, cluster-scoped ones included, as
    /// `kind namespace/name` (listed with the admin credential; empty: nothing left).
    pub fn labelled_leftovers(&self, run_id: &str) -> Vec<String> {
        use k8s_openapi::api::apps::v1::Deployment;
        use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, Pod, Secret, Service};
        use k8s_openapi::api::networking::v1::NetworkPolicy;
        use kube::api::ListParams;
        let client = self.client();
        let params = ListParams::default().labels(&format!("scs-kaas-check/run-id={run_id}"));
        self.block_on(async {
            let mut left = Vec::new();
            macro_rules! list {
                ($kind:ty, $name:expr) => {
                    let api: Api<$kind> = Api::all(client.clone());
                    for o in api.list(&params).await.expect($name).items {
                        left.push(format!(
                            "{} {}/{}",
                            $name,
                            o.metadata.namespace.unwrap_or_default(),
                            o.metadata.name.unwrap_or_default()
                        ));
                    }
                };
            }
            list!(Namespace, "Namespace");
            list!(Pod, "Pod");
            list!(Service, "Service");
            list!(Deployment, "Deployment");
            list!(ConfigMap, "ConfigMap");
            list!(Secret, "Secret");
            list!(NetworkPolicy, "NetworkPolicy");
            list!(ServiceAccount, "ServiceAccount");
            list!(PersistentVolume, "PersistentVolume");
            list!(ClusterRole, "ClusterRole");
            list!(ClusterRoleBinding, "ClusterRoleBinding");
            left
        })
    }
}
