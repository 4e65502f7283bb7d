//! Running the real `scs-kaas-check` binary as a child process, and reading what it wrote.

#![allow(dead_code)]

use super::SimCluster;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_scs-kaas-check");

/// What one invocation produced.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Where `run` wrote its reports.
    pub out_dir: PathBuf,
    /// Keeps the temporary home and output directory alive as long as this value.
    _dir: tempfile::TempDir,
}

impl Output {
    /// `testcase -> PASS|FAIL|ABORT` from stdout; panics on any other stdout line, since
    /// stdout is reserved for verdict lines.
    pub fn verdicts(&self) -> BTreeMap<String, String> {
        self.stdout
            .lines()
            .map(|line| {
                let (id, verdict) = line.split_once(": ").unwrap_or_else(|| {
                    panic!("stdout line is not a verdict: {line:?}\n{}", self.stderr)
                });
                assert!(
                    ["PASS", "FAIL", "ABORT"].contains(&verdict),
                    "bad verdict line {line:?}"
                );
                (id.to_string(), verdict.to_string())
            })
            .collect()
    }

    pub fn verdict(&self, testcase: &str) -> Option<String> {
        self.verdicts().get(testcase).cloned()
    }

    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.out_dir.join(name))
            .unwrap_or_else(|e| panic!("{name} not written: {e}\nstderr:\n{}", self.stderr))
    }

    pub fn junit(&self) -> String {
        self.file("junit.xml")
    }

    pub fn report(&self) -> String {
        self.file("report.yaml")
    }

    /// The `ERROR: ...` lines of stderr (a requirement failed or could not be decided).
    pub fn errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("ERROR: "))
            .collect()
    }

    /// The `WARNING: ...` lines of stderr.
    pub fn warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("WARNING: "))
            .collect()
    }

    /// The `CRITICAL: ...` lines of stderr (the command could not run).
    pub fn criticals(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("CRITICAL: "))
            .collect()
    }

    /// The one `CRITICAL:` line, without its prefix; panics unless there is exactly one.
    pub fn critical(&self) -> &str {
        match self.criticals()[..] {
            [line] => &line["CRITICAL: ".len()..],
            _ => panic!("expected one CRITICAL line:\n{}", self.stderr),
        }
    }

    /// No panic, no backtrace: bad input must end in a clean message.
    pub fn assert_clean_exit(&self) {
        for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(
                !self.stderr.contains(bad),
                "stderr shows a panic:\n{}",
                self.stderr
            );
        }
    }

    /// The `<testcase>` element of one requirement, up to its end.
    fn junit_case(&self, testcase: &str) -> String {
        let junit = self.junit();
        let start = junit
            .find(&format!("<testcase name=\"{testcase}\""))
            .unwrap_or_else(|| panic!("no testcase {testcase} in junit:\n{junit}"));
        let rest = &junit[start..];
        let head_end = rest.find('>').map_or(rest.len(), |i| i + 1);
        let end = if rest[..head_end].ends_with("/>") {
            head_end
        } else {
            rest.find("</testcase>").unwrap_or(rest.len())
        };
        rest[..end].to_string()
    }

    /// The message of the JUnit element (failure/error/skipped) of one requirement.
    pub fn junit_message(&self, testcase: &str) -> String {
        let case = self.junit_case(testcase);
        match case.find("message=\"") {
            Some(i) => {
                let m = &case[i + 9..];
                unescape(&m[..m.find('"').unwrap_or(m.len())])
            }
            None => String::new(),
        }
    }

    /// How JUnit reports one requirement: `failure FAIL`, `error ABORT`,
    /// `skipped NOT-ATTEMPTED`, `skipped NOT-APPLICABLE`, or `passed`.
    pub fn junit_kind(&self, testcase: &str) -> String {
        let case = self.junit_case(testcase);
        for element in ["failure", "error", "skipped"] {
            if let Some(i) = case.find(&format!("<{element}")) {
                let tag = &case[i..];
                let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
                let kind = tag
                    .split("type=\"")
                    .nth(1)
                    .and_then(|t| t.split('"').next())
                    .unwrap_or("");
                return format!("{element} {kind}");
            }
        }
        "passed".into()
    }

    /// `report.yaml`, parsed.
    pub fn report_value(&self) -> serde_json::Value {
        serde_saphyr::from_str(&self.report())
            .unwrap_or_else(|e| panic!("report.yaml does not parse: {e}"))
    }

    /// The warnings of testcase `id` in `report.yaml`.
    pub fn report_warnings(&self, id: &str) -> Vec<String> {
        self.report_value()["testcases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|tc| tc["id"] == id)
            .flat_map(|tc| tc["warnings"].as_array().cloned().unwrap_or_default())
            .filter_map(|w| w.as_str().map(String::from))
            .collect()
    }

    /// `(status, message)` of one requirement (`<testcase>/<id>`, or the testcase itself
    /// for a testcase-level result) in `report.yaml`.
    pub fn report_requirement(&self, name: &str) -> (String, String) {
        self.report_value()["testcases"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|tc| tc["requirements"].as_array().into_iter().flatten())
            .find(|r| r["name"] == name)
            .map(|r| {
                (
                    r["status"].as_str().unwrap_or_default().to_string(),
                    r["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .unwrap_or_else(|| panic!("no requirement {name} in report.yaml:\n{}", self.report()))
    }

    /// The `<system-out>` text of one requirement's testcase.
    pub fn junit_out(&self, testcase: &str) -> String {
        let case = self.junit_case(testcase);
        match case.find("<system-out><![CDATA[") {
            Some(i) => {
                let s = &case[i + 21..];
                s[..s.find("]]>").unwrap_or(s.len())].to_string()
            }
            None => String::new(),
        }
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A command for the binary with a clean environment: no KUBECONFIG, an empty HOME.
pub fn command(home: &Path) -> Command {
    command_via(home, &[])
}

/// [`command`] started through `wrapper`, a program with arguments that then executes the
/// binary (e.g. `ip netns exec NS`); an empty `wrapper` runs the binary directly.
pub fn command_via(home: &Path, wrapper: &[&str]) -> Command {
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(BIN);
            cmd
        }
        None => Command::new(BIN),
    };
    cmd.env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("GITHUB_TOKEN")
        .env("HOME", home)
        .stdin(Stdio::null());
    cmd
}

/// Runs the binary with `args`; the output directory is a fresh temp dir passed as
/// `--output-dir` when `args` starts with `run` or `e2e`.
pub fn scs(args: &[&str]) -> Output {
    scs_with(args, |_| {})
}

pub fn scs_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Output {
    prepared(args, |mut cmd| {
        adjust(&mut cmd);
        cmd.output().expect("binary runs")
    })
}

/// Runs the binary with `args` like [`scs`], waits (at most `within`) until `ready` holds,
/// then sends it SIGINT and returns what it did.
pub fn interrupted(
    args: &[&str],
    what: &str,
    within: std::time::Duration,
    ready: impl FnMut() -> bool,
) -> Output {
    prepared(args, |mut cmd| {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        eventually(what, within, ready);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .expect("signal");
        child.wait_with_output().expect("wait")
    })
}

/// Runs the binary with `args` like [`scs`] and sends it SIGINT once it has printed, for
/// each of `lines`, a stderr line containing it (at most `within` after the start);
/// returns what it did.
pub fn interrupted_at_lines(args: &[&str], lines: &[&str], within: std::time::Duration) -> Output {
    use std::io::BufRead;
    prepared(args, |mut cmd| {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let mut missing: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            for l in std::io::BufReader::new(stderr).lines() {
                let Ok(l) = l else { break };
                let before = missing.len();
                missing.retain(|needle| !l.contains(needle.as_str()));
                if before > 0 && missing.is_empty() {
                    let _ = seen_tx.send(());
                }
                all.extend_from_slice(l.as_bytes());
                all.push(b'\n');
            }
            all
        });
        let ready = seen.recv_timeout(within).is_ok();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .expect("signal");
        let mut output = child.wait_with_output().expect("wait");
        output.stderr = reader.join().expect("stderr reader");
        assert!(
            ready,
            "no stderr lines with each of {lines:?} within {within:?}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    })
}

/// Waits (at most `within`) for a condition on the simulator's state.
pub fn eventually(what: &str, within: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs the binary with `args` like [`scs`], started through `wrapper` (see [`command_via`]).
pub fn scs_via(wrapper: &[&str], args: &[&str]) -> Output {
    prepared_via(wrapper, args, |mut cmd| cmd.output().expect("binary runs"))
}

/// The binary with `args` in a fresh home (and `--output-dir` for `run`/`e2e`), executed by
/// `execute`.
fn prepared(args: &[&str], execute: impl FnOnce(Command) -> std::process::Output) -> Output {
    prepared_via(&[], args, execute)
}

fn prepared_via(
    wrapper: &[&str],
    args: &[&str],
    execute: impl FnOnce(Command) -> std::process::Output,
) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let out_dir = dir.path().join("out");
    let mut cmd = command_via(&home, wrapper);
    cmd.args(args);
    if matches!(args.first(), Some(&"run" | &"e2e")) {
        cmd.arg("--output-dir").arg(&out_dir);
    }
    let output = execute(cmd);
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        out_dir,
        _dir: dir,
    }
}

/// A cluster the binary can be pointed at: the simulator, a test bed (its admin
/// kubeconfig), or a kubeconfig file (e.g. a ServiceAccount's).
pub trait Target {
    fn kubeconfig_file(&self) -> PathBuf;
}

impl Target for SimCluster {
    fn kubeconfig_file(&self) -> PathBuf {
        self.kubeconfig_path()
    }
}

impl Target for Path {
    fn kubeconfig_file(&self) -> PathBuf {
        self.to_path_buf()
    }
}

impl Target for PathBuf {
    fn kubeconfig_file(&self) -> PathBuf {
        self.clone()
    }
}

/// `run` against `cluster`, offline, with the given extra arguments.
pub fn run_against(cluster: &(impl Target + ?Sized), extra: &[&str]) -> Output {
    let kubeconfig = cluster.kubeconfig_file();
    let mut args = vec![
        "run",
        "-k",
        kubeconfig.to_str().expect("utf-8 path"),
        "--offline",
    ];
    args.extend_from_slice(extra);
    scs(&args)
}

/// A subcommand that takes only a cluster (`delete`, `status`, `retrieve`) against
/// `cluster`, with `extra` arguments.
pub fn against(cluster: &(impl Target + ?Sized), subcommand: &str, extra: &[&str]) -> Output {
    let kubeconfig = cluster.kubeconfig_file();
    let mut args = vec![subcommand, "-k", kubeconfig.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let out = scs(&args);
    out.assert_clean_exit();
    out
}

/// The line `status` prints for in-cluster run `run_id`.
pub fn status_line(cluster: &(impl Target + ?Sized), run_id: &str) -> String {
    let status = against(cluster, "status", &[]);
    status
        .stdout
        .lines()
        .find(|l| l.starts_with(run_id))
        .unwrap_or_else(|| panic!("run {run_id} not listed:\n{}", status.stdout))
        .to_string()
}

/// Names of the `resource` objects in the simulated cluster that carry the suite's
/// `app.kubernetes.io/managed-by` label: what a run must not leave behind.
pub fn suite_objects(sim: &SimCluster, resource: &str) -> Vec<String> {
    sim.objects(resource)
        .into_iter()
        .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "scs-kaas-check")
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Validates JUnit against `../shared/schemas/junit-10.xsd` with xmllint (the nearest
/// `shared/` beside the crate or an ancestor: a git worktree sits one level deeper). The
/// shared copy opens with a comment that itself contains `--` (not well-formed XML), so the
/// schema is validated from a copy with that leading comment removed; its definitions are
/// unchanged.
pub fn assert_valid_junit(xml_path: &Path) {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let xsd = crate_dir
        .ancestors()
        .skip(1)
        .map(|d| d.join("shared/schemas/junit-10.xsd"))
        .find(|p| p.exists())
        .unwrap_or_else(|| crate_dir.join("../shared/schemas/junit-10.xsd"));
    let text = std::fs::read_to_string(&xsd)
        .unwrap_or_else(|e| panic!("schema {} is needed for this test: {e}", xsd.display()));
    let cleaned = strip_comments(&text);
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = dir.path().join("junit-10.xsd");
    std::fs::write(&schema, cleaned).expect("write schema");
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(xml_path)
        .output()
        .expect("xmllint is installed (Debian package libxml2-utils)");
    assert!(
        out.status.success(),
        "junit does not validate:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(xml_path).unwrap_or_default()
    );
}

fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The YAML documents `scs-kaas-check <args>` prints (`gen`), parsed; panics unless it
/// exits 0.
pub fn gen_docs(args: &[&str]) -> Vec<serde_json::Value> {
    let out = scs(args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
        .split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).expect("gen prints YAML"))
        .collect()
}
