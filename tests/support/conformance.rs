//! The upstream conformance image (`registry.k8s.io/conformance`), as its entrypoint
//! go-runner documents it (kubernetes test/conformance/image/go-runner: main.go, cmd.go,
//! const.go): it reads `RESULTS_DIR` (default `/tmp/results`), `E2E_FOCUS`, `E2E_SKIP`,
//! `E2E_PARALLEL`, `E2E_EXTRA_GINKGO_ARGS`, `E2E_DRYRUN`, `E2E_PROVIDER`; creates
//! `$RESULTS_DIR/e2e.log` (without creating the directory) and tees ginkgo's output to it
//! and to stdout; ginkgo writes `junit_01.xml` to `--report-dir=$RESULTS_DIR`; at the end it
//! tars the directory to `e2e.tar.gz` and writes that tarball's absolute path (no newline)
//! to `$RESULTS_DIR/done`.
//!
//! Here the specs' outcome comes from a fixture directory under `tests/fixtures/e2e/`:
//! `e2e.log` (ginkgo's output, printed line by line) and `junit_01.xml`. A fixture without
//! `junit_01.xml` is a run that never finishes: it prints its log and then stays silent,
//! writing no `done` file (the container still counts as running until the pod ends). The
//! tarball itself is not produced (nothing in the suite reads it), only named in `done`.
//!
//! Which fixture plays is chosen by the pod's effective `E2E_FOCUS` ([`register_focused`]),
//! or is the same for every focus ([`register`]). A focus without a fixture is ginkgo
//! matching no spec: `Will run 0 of 7412 specs`, success, an empty testsuite. With
//! `E2E_DRYRUN` set (go-runner passes `--dryRun=true`) ginkgo walks the specs the fixture
//! would run without running them and reports each as passed; a fixture that never
//! finishes stays hanging in a dry run too.

use super::SimCluster;
use super::incluster::host_path;
use super::spec::{PodContext, ProgramResult};
use super::util::str_at;
use regex::Regex;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub const IMAGE: &str = "registry.k8s.io/conformance";

/// The number of specs in the emulated e2e.test binary.
const SUITE_SPECS: u64 = 7412;

/// Ginkgo's suite header, as in the fixtures.
const HEADER: &str = "Running Suite: Kubernetes e2e suite - /usr/local/bin
====================================================
Random Seed: 1732147200 - will randomize all specs

";

/// The report of a run that ran no spec (ginkgo lists the suite, without testcases).
const EMPTY_JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="0" disabled="0" errors="0" failures="0" time="0.001">
  <testsuite name="Kubernetes e2e suite" package="/usr/local/bin" tests="0" disabled="0" skipped="0" errors="0" failures="0" time="0.001" timestamp="2026-11-21T00:00:00">
    <properties><property name="SuiteSucceeded" value="true"></property></properties>
  </testsuite>
</testsuites>
"#;

pub fn fixture_dir(name: &str) -> PathBuf {
    super::binary::fixture("e2e").join(name)
}

/// Runs the conformance image from fixture `name`, whatever `E2E_FOCUS` the pod sets, for
/// containers of `registry.k8s.io/conformance`.
pub fn register(sim: &SimCluster, name: &str) {
    let dir = fixture_dir(name);
    register_with(sim, move |_| Some(dir.clone()));
}

/// Runs the conformance image with the fixture paired with the pod's exact `E2E_FOCUS`
/// (`(focus, fixture name)` pairs; the image's default focus is `\[Conformance\]`). A focus
/// without a fixture matches no spec.
pub fn register_focused(sim: &SimCluster, fixtures: &[(&str, &str)]) {
    let by_focus: Vec<(String, PathBuf)> = fixtures
        .iter()
        .map(|(focus, name)| (focus.to_string(), fixture_dir(name)))
        .collect();
    register_with(sim, move |focus| {
        by_focus
            .iter()
            .find(|(f, _)| f == focus)
            .map(|(_, dir)| dir.clone())
    });
}

/// Runs the conformance image from the fixture in `dir` (e.g. one a test generated),
/// whatever `E2E_FOCUS` the pod sets, silent for `pause` after ginkgo's `Will run N of M
/// specs` line: a long first spec (ginkgo's default reporter prints a spec only when it
/// ends, so a real run is silent for minutes at a time).
pub fn register_dir(sim: &SimCluster, dir: PathBuf, pause: std::time::Duration) {
    sim.register_program(IMAGE, move |ctx| run(ctx, &|_| Some(dir.clone()), pause));
}

/// `select` maps the effective focus to a fixture directory (`None`: no spec matches).
fn register_with(
    sim: &SimCluster,
    select: impl Fn(&str) -> Option<PathBuf> + Send + Sync + 'static,
) {
    sim.register_program(IMAGE, move |ctx| {
        run(ctx, &select, std::time::Duration::ZERO)
    });
}

fn container_env(ctx: &PodContext) -> Vec<(String, String)> {
    ctx.pod
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| str_at(c, "name") == ctx.container_name))
        .and_then(|c| c.get("env"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            (
                str_at(e, "name").to_string(),
                str_at(e, "value").to_string(),
            )
        })
        .collect()
}

/// What ginkgo prints (`output`) and reports (`junit`, `None`: it never finishes).
struct Ginkgo {
    output: String,
    junit: Option<String>,
}

impl Ginkgo {
    fn fixture(dir: &Path) -> Ginkgo {
        Ginkgo {
            output: std::fs::read_to_string(dir.join("e2e.log")).expect("fixture e2e.log"),
            junit: std::fs::read_to_string(dir.join("junit_01.xml")).ok(),
        }
    }

    /// A focus matching none of the suite's specs.
    fn no_spec() -> Ginkgo {
        Ginkgo {
            output: passed_output(HEADER, 0, SUITE_SPECS, "0.001"),
            junit: Some(EMPTY_JUNIT.to_string()),
        }
    }

    /// The same specs walked with `--dryRun`: every spec that would run is reported passed.
    fn dry_run(self) -> Ginkgo {
        let Some(junit) = &self.junit else {
            return self;
        };
        let at = self
            .output
            .find("Will run ")
            .expect("fixture e2e.log has `Will run N of M specs`");
        let (header, rest) = self.output.split_at(at);
        let counts = |line: &str| -> Option<(u64, u64)> {
            let mut words = line.strip_prefix("Will run ")?.split_whitespace();
            let run = words.next()?.parse().ok()?;
            let total = words.nth(1)?.parse().ok()?;
            Some((run, total))
        };
        let (run, total) = counts(rest.lines().next().unwrap_or_default())
            .expect("fixture e2e.log: `Will run N of M specs`");
        Ginkgo {
            output: passed_output(header, run, total, "0.010"),
            junit: Some(all_passed(junit)),
        }
    }

    fn failed(&self) -> bool {
        self.output.contains("[FAILED]")
    }
}

/// Ginkgo's output for `run` of `total` specs, all passed.
fn passed_output(header: &str, run: u64, total: u64, seconds: &str) -> String {
    format!(
        "{header}Will run {run} of {total} specs\n{}\nRan {run} of {total} Specs in {seconds} seconds\nSUCCESS! -- {run} Passed | 0 Failed | 0 Pending | {} Skipped\n",
        "•\n".repeat(run as usize),
        total.saturating_sub(run),
    )
}

/// A ginkgo JUnit report with every testcase that was not skipped passed in no time.
fn all_passed(junit: &str) -> String {
    let rewrites = [
        // Failure (and error) elements, with the whitespace before them.
        (
            r#"(?s)\s*<(failure|error)\b[^>]*/>|\s*<(failure|error)\b[^>]*>.*?</(failure|error)>"#,
            "",
        ),
        (
            r#"\bstatus="(failed|panicked|timedout|interrupted|aborted)""#,
            r#"status="passed""#,
        ),
        (r#"(<testcase\b[^>]*?\btime=)"[^"]*""#, r#"${1}"0""#),
        (r#"(<testsuites?\b[^>]*?\btime=)"[^"]*""#, r#"${1}"0.01""#),
        (r#"\b(failures|errors)="\d+""#, r#"${1}="0""#),
        (r#"(name="SuiteSucceeded" value=)"false""#, r#"${1}"true""#),
    ];
    rewrites
        .iter()
        .fold(junit.to_string(), |xml, (pattern, with)| {
            Regex::new(pattern)
                .expect("valid regex")
                .replace_all(&xml, *with)
                .into_owned()
        })
}

fn run(
    ctx: &PodContext,
    select: &dyn Fn(&str) -> Option<PathBuf>,
    pause: std::time::Duration,
) -> ProgramResult {
    let env = container_env(ctx);
    let get = |k: &str, default: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| default.to_string())
    };
    // The image's ENV defaults (Dockerfile) where the pod sets nothing.
    let results_dir = get("RESULTS_DIR", "/tmp/results");
    let focus = get("E2E_FOCUS", r"\[Conformance\]");
    let dry_run = !get("E2E_DRYRUN", "").is_empty();
    let mut skip = get("E2E_SKIP", "");
    let mut ginkgo = Vec::new();
    if matches!(get("E2E_PARALLEL", "1").as_str(), "y" | "Y" | "true") {
        ginkgo.push("--p".to_string());
        if skip.is_empty() {
            skip = r"\[Serial\]".into();
        }
    }
    ginkgo.push(format!("--focus={focus}"));
    ginkgo.push(format!("--skip={skip}"));
    ginkgo.push("--noColor=true".into());
    let extra = get("E2E_EXTRA_GINKGO_ARGS", "");
    ginkgo.extend(extra.split(' ').filter(|a| !a.is_empty()).map(String::from));
    if dry_run {
        ginkgo.push("--dryRun=true".into());
    }
    ginkgo.push("--timeout=24h".into());
    let provider = get("E2E_PROVIDER", "local");
    let mut log = format!(
        "Running command:\nArgs (comma-delimited): /usr/local/bin/ginkgo,{},/usr/local/bin/e2e.test,--,--disable-log-dump,--repo-root=/kubernetes,--provider={provider},--report-dir={results_dir},--kubeconfig=\n",
        ginkgo.join(",")
    );
    let print = |log: &mut String, line: &str| {
        log.push_str(line);
        log.push('\n');
        ctx.store
            .lock()
            .set_pod_log(&ctx.namespace, &ctx.pod_name, log.clone());
    };
    print(&mut log, "Now listening for interrupts");
    // Outside an emptyDir the directory does not exist in the image: go-runner fails to
    // create its log file, and its deferred tar of the missing directory fails too (no done).
    let Some(dir) = host_path(ctx, &results_dir).filter(|d| d.is_dir()) else {
        print(
            &mut log,
            &format!(
                "failed to create log file {results_dir}/e2e.log: open {results_dir}/e2e.log: no such file or directory"
            ),
        );
        return ProgramResult::fail(1, log);
    };
    let mut outcome = select(&focus).map_or_else(Ginkgo::no_spec, |d| Ginkgo::fixture(&d));
    if dry_run {
        outcome = outcome.dry_run();
    }
    let mut e2e_log = String::new();
    for line in outcome.output.lines() {
        e2e_log.push_str(line);
        e2e_log.push('\n');
        std::fs::write(dir.join("e2e.log"), &e2e_log).expect("write e2e.log");
        print(&mut log, line);
        if line.starts_with("Will run ") {
            std::thread::sleep(pause);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let Some(junit) = &outcome.junit else {
        // Never finishes: no junit, no done.
        return ProgramResult::ok(log);
    };
    std::fs::write(dir.join("junit_01.xml"), junit).expect("write junit");
    print(&mut log, &format!("Saving results at {results_dir}"));
    std::fs::write(dir.join("done"), format!("{results_dir}/e2e.tar.gz")).expect("write done");
    if outcome.failed() {
        ProgramResult::fail(1, log)
    } else {
        ProgramResult::ok(log)
    }
}

/// Writes a fixture of realistic size into `dir`: a ginkgo v2 `junit_01.xml` listing
/// `total` specs of which the first `run` passed (the rest skipped, as a `[Conformance]`
/// focus leaves them), with names, timelines (`<system-err>`) and time stamps shaped like
/// the upstream suite's, and the matching `e2e.log`. Public certification submissions
/// hold about 6600 testcases in about 2.3 MB: `realistic_fixture(dir, 400, 6600)` writes
/// that much. Returns the size of `junit_01.xml` in bytes.
pub fn realistic_fixture(dir: &Path, run: usize, total: usize) -> usize {
    const SIGS: [&str; 8] = [
        "apps",
        "node",
        "network",
        "storage",
        "api-machinery",
        "cli",
        "auth",
        "scheduling",
    ];
    const DRIVERS: [&str; 6] = [
        "csi-hostpath",
        "local][LocalVolumeType: dir-link-bindmounted",
        "nfs",
        "emptydir",
        "hostPathSymlink",
        "aws",
    ];
    const PATTERNS: [&str; 5] = [
        "Dynamic PV (default fs)",
        "Pre-provisioned PV (ext4)",
        "Inline-volume (default fs)",
        "Generic Ephemeral-volume (block volmode) (late-binding)",
        "Dynamic PV (filesystem volmode)",
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut cases = String::new();
    for i in 0..total {
        let r = next();
        let sig = SIGS[(r % 8) as usize];
        if i < run {
            let secs = (r % 90_000) as f64 / 1000.0;
            let name = format!(
                "[It] [sig-{sig}] Feature{i} should behave as specified in case {:x} [NodeConformance] [Conformance]",
                r >> 20
            );
            let ms = |k: u64| {
                format!(
                    "11/21/25 00:{:02}:{:02}.{:03}",
                    (i / 60) % 60,
                    i % 60,
                    (r >> k) % 1000
                )
            };
            cases.push_str(&format!(
                "    <testcase name=\"{name}\" classname=\"Kubernetes e2e suite\" status=\"passed\" time=\"{secs}\">\n      <system-err>&gt; Enter [BeforeEach] [sig-{sig}] Feature{i} - set up framework | framework.go:200 @ {}&#xA;STEP: Creating a kubernetes client - k8s.io/kubernetes/test/e2e/framework/framework.go:220 @ {}&#xA;STEP: Building a namespace api object, basename feature{i} - k8s.io/kubernetes/test/e2e/framework/framework.go:259 @ {}&#xA;STEP: Waiting for a default service account to be provisioned in namespace - k8s.io/kubernetes/test/e2e/framework/framework.go:268 @ {}&#xA;&lt; Exit [BeforeEach] [sig-{sig}] Feature{i} - set up framework | framework.go:200 @ {} ({}ms)&#xA;&gt; Enter [It] should behave as specified - k8s.io/kubernetes/test/e2e/{sig}/feature{i}.go:{} @ {}&#xA;&lt; Exit [It] should behave as specified - k8s.io/kubernetes/test/e2e/{sig}/feature{i}.go:{} @ {} ({}s)&#xA;&gt; Enter [DeferCleanup (Each)] [sig-{sig}] Feature{i} - tear down framework | framework.go:203 @ {}&#xA;STEP: Destroying namespace \"feature{i}-{:04x}\" for this suite. - k8s.io/kubernetes/test/e2e/framework/framework.go:454 @ {}&#xA;&lt; Exit [DeferCleanup (Each)] [sig-{sig}] Feature{i} - tear down framework | framework.go:203 @ {} ({}ms)&#xA;</system-err>\n    </testcase>\n",
                ms(1), ms(5), ms(9), ms(13), ms(17), (r >> 21) % 400,
                (r >> 23) % 900, ms(25), (r >> 27) % 900, ms(29), secs,
                ms(33), (r >> 35) & 0xffff, ms(37), ms(41), (r >> 43) % 400,
            ));
        } else {
            let name = if r % 3 == 0 {
                format!(
                    "[It] [sig-storage] In-tree Volumes [Driver: {}] [Testpattern: {}] subPath should support file as subpath {i}",
                    DRIVERS[((r >> 8) % 6) as usize],
                    PATTERNS[((r >> 16) % 5) as usize]
                )
            } else {
                format!(
                    "[It] [sig-{sig}] [Feature:Example{}] Component {:x} should handle the documented case {i} [Serial]",
                    (r >> 12) % 97,
                    r >> 40
                )
            };
            cases.push_str(&format!(
                "    <testcase name=\"{name}\" classname=\"Kubernetes e2e suite\" status=\"skipped\" time=\"0\">\n      <skipped message=\"skipped\"></skipped>\n    </testcase>\n"
            ));
        }
    }
    let skipped = total - run;
    let junit = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"{total}\" disabled=\"{skipped}\" errors=\"0\" failures=\"0\" time=\"5400.1\">\n  <testsuite name=\"Kubernetes e2e suite\" package=\"/usr/local/bin\" tests=\"{total}\" disabled=\"0\" skipped=\"{skipped}\" errors=\"0\" failures=\"0\" time=\"5400.1\" timestamp=\"2025-11-21T00:00:00\">\n    <properties><property name=\"SuiteSucceeded\" value=\"true\"></property></properties>\n{cases}  </testsuite>\n</testsuites>\n"
    );
    let log = format!(
        "{HEADER}Will run {run} of {total} specs\n{}\nRan {run} of {total} Specs in 5400.100 seconds\nSUCCESS! -- {run} Passed | 0 Failed | 0 Pending | {skipped} Skipped\n",
        "•\n".repeat(run)
    );
    std::fs::write(dir.join("junit_01.xml"), &junit).expect("write junit_01.xml");
    std::fs::write(dir.join("e2e.log"), log).expect("write e2e.log");
    junit.len()
}

/// The fixtures that the test bed's scenario `three-zones-e2e` names beyond
/// `tests/fixtures/e2e`, written into its fixtures directory `dir` (see
/// `TestBed::start_with_fixtures`): `realistic` ([`realistic_fixture`]: 400 of 6600 specs
/// run, a `junit_01.xml` over 2 MB) and `slow` (`pass` whose first spec runs silently for
/// 3 s: the test bed's conformance emulation reads the duration from the file `pause`, as
/// [`register_dir`]'s `pause` here).
pub fn testbed_fixtures(dir: &Path) {
    let realistic = dir.join("realistic");
    std::fs::create_dir_all(&realistic).expect("create the realistic fixture");
    realistic_fixture(&realistic, 400, 6600);
    let slow = dir.join("slow");
    std::fs::create_dir_all(&slow).expect("create the slow fixture");
    for file in ["e2e.log", "junit_01.xml"] {
        std::fs::copy(dir.join("pass").join(file), slow.join(file)).expect("copy pass");
    }
    std::fs::write(slow.join("pause"), "3s").expect("write pause");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &str, pattern: &str) -> usize {
        Regex::new(pattern).expect("regex").find_iter(text).count()
    }

    fn number(text: &str, pattern: &str) -> u64 {
        let caps = Regex::new(pattern)
            .expect("regex")
            .captures(text)
            .unwrap_or_else(|| panic!("no {pattern} in\n{text}"));
        caps[1].parse().expect("number")
    }

    /// The counts of ginkgo's output agree with each other and with its JUnit report.
    fn assert_consistent(what: &str, g: &Ginkgo) {
        let out = &g.output;
        let junit = g.junit.as_deref().expect("finished run");
        let run = number(out, r"Will run (\d+) of \d+ specs");
        let total = number(out, r"Will run \d+ of (\d+) specs");
        assert_eq!(run, number(out, r"Ran (\d+) of \d+ Specs"), "{what}");
        let passed = number(out, r"(\d+) Passed \|");
        let failed = number(out, r"\| (\d+) Failed \|");
        assert_eq!(passed + failed, run, "{what}");
        assert_eq!(number(out, r"\| (\d+) Skipped"), total - run, "{what}");
        assert_eq!(count(out, "(?m)^•") as u64, run, "{what}");
        assert_eq!(count(out, r"(?m)^• \[FAILED\]") as u64, failed, "{what}");
        assert_eq!(out.contains("SUCCESS!"), failed == 0, "{what}");
        let passed_cases = count(junit, r#"<testcase [^>]*status="passed""#) as u64;
        let failed_cases = count(junit, r#"<testcase [^>]*status="failed""#) as u64;
        let skipped_cases = count(junit, r#"<testcase [^>]*status="skipped""#) as u64;
        assert_eq!((passed_cases, failed_cases), (passed, failed), "{what}");
        assert_eq!(count(junit, "<failure ") as u64, failed, "{what}");
        let tests = passed_cases + failed_cases + skipped_cases;
        assert_eq!(count(junit, "<testcase ") as u64, tests, "{what}");
        for attrs in [
            format!(
                r#"<testsuites tests="{tests}" disabled="{skipped_cases}" errors="0" failures="{failed}""#
            ),
            format!(
                r#" tests="{tests}" disabled="0" skipped="{skipped_cases}" errors="0" failures="{failed}""#
            ),
            format!(r#"name="SuiteSucceeded" value="{}""#, failed == 0),
        ] {
            assert!(junit.contains(&attrs), "{what}: no {attrs} in\n{junit}");
        }
    }

    const FINISHED: [&str; 6] = [
        "pass",
        "fail",
        "accepted",
        "netpol-pass",
        "netpol-accepted",
        "netpol-fail",
    ];

    #[test]
    fn the_realistic_fixture_is_consistent_and_of_real_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let size = realistic_fixture(dir.path(), 400, 6600);
        assert!((2_000_000..3_000_000).contains(&size), "{size} bytes");
        assert_consistent("realistic", &Ginkgo::fixture(dir.path()));
    }

    #[test]
    fn fixtures_agree_with_their_junit() {
        for name in FINISHED {
            assert_consistent(name, &Ginkgo::fixture(&fixture_dir(name)));
        }
        assert_consistent("no spec", &Ginkgo::no_spec());
        assert!(Ginkgo::no_spec().output.contains(
            "Will run 0 of 7412 specs\n\nRan 0 of 7412 Specs in 0.001 seconds\nSUCCESS! -- 0 Passed | 0 Failed | 0 Pending | 7412 Skipped\n"
        ));
    }

    #[test]
    fn a_dry_run_reports_every_spec_that_would_run_as_passed() {
        let case = Regex::new(r#"<testcase name="([^"]*)"[^>]*status="(\w+)""#).unwrap();
        let names = |g: &Ginkgo| {
            case.captures_iter(g.junit.as_deref().unwrap())
                .map(|c| (c[1].to_string(), &c[2] == "skipped"))
                .collect::<Vec<_>>()
        };
        for name in FINISHED {
            let fixture = Ginkgo::fixture(&fixture_dir(name));
            let dry = Ginkgo::fixture(&fixture_dir(name)).dry_run();
            assert_consistent(&format!("{name} (dry run)"), &dry);
            assert!(!dry.failed(), "{}", dry.output);
            assert!(dry.output.contains(" Specs in 0.010 seconds\nSUCCESS! -- "));
            assert_eq!(names(&dry), names(&fixture), "{name}");
            let junit = dry.junit.as_deref().unwrap();
            assert_eq!(
                count(junit, r#"<testcase [^>]*time="0""#),
                count(junit, "<testcase ")
            );
        }
        // A run that never finishes stays so.
        let hang = Ginkgo::fixture(&fixture_dir("hang")).dry_run();
        assert!(hang.junit.is_none());
    }
}
