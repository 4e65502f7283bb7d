//! Renders a run's outcomes: JUnit XML, the YAML report, and the log files. Nothing here
//! talks to a cluster.

pub mod junit;
pub mod yaml;

use crate::catalogue::{MAIN_TARGET, Testcase, Validity};
use crate::outcome::{CheckOutcome, Policy, Status, Verdict};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// Facts about the run, shown as JUnit properties and at the top of `report.yaml`.
#[derive(Debug, Clone, Serialize)]
pub struct RunMeta {
    pub tool_version: String,
    pub run_id: String,
    pub started: jiff::Timestamp,
    pub finished: jiff::Timestamp,
    pub catalogue: String,
    pub scope_version: String,
    /// The scope version's state on the reference date (`None`: a fixed selection, the
    /// `e2e` command).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_validity: Option<Validity>,
    /// `--execution-mode`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_mode: Option<String>,
    pub reference_date: jiff::civil::Date,
    pub strict: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// Why the run could not check anything (configuration or preflight failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
}

/// One testcase's result.
#[derive(Debug, Clone)]
pub struct TestcaseResult {
    pub testcase: Testcase,
    pub outcome: CheckOutcome,
    /// How its requirements count (level, `--strict`).
    pub policy: Policy,
    pub verdict: Verdict,
    /// Whether it decides the exit code (the certificate's, those named, or every one with
    /// `--count-all-targets`).
    pub counted: bool,
    pub duration: Duration,
    pub log: Vec<String>,
}

impl TestcaseResult {
    pub fn new(
        testcase: Testcase,
        outcome: CheckOutcome,
        policy: Policy,
        counted: bool,
        duration: Duration,
        log: Vec<String>,
    ) -> Self {
        let verdict = outcome.verdict(policy);
        TestcaseResult {
            testcase,
            outcome,
            policy,
            verdict,
            counted,
            duration,
            log,
        }
    }

    /// A testcase this binary has no check for: skipped with `reason`, never passed.
    pub fn not_implemented(testcase: Testcase, counted: bool, reason: &str) -> Self {
        let mut result = Self::new(
            testcase,
            CheckOutcome::default(),
            Policy::new(crate::outcome::Level::Mandatory, false),
            counted,
            Duration::ZERO,
            vec![reason.to_string()],
        );
        result.verdict = Verdict::NotImplemented;
        result
    }

    /// What the SCS compliance runner and monitor are shown on stderr: `ERROR:` for every
    /// requirement that failed or could not be decided, `WARNING:` for every warning (each
    /// as counted under this run's policy), named `<testcase>/<requirement>`.
    pub fn diagnostics(&self) -> Vec<(Severity, String, &str)> {
        let id = &self.testcase.id;
        let mut lines: Vec<(Severity, String, &str)> = self
            .outcome
            .requirements
            .iter()
            .filter_map(|r| {
                let severity = match self.policy.effective(r.status) {
                    Status::Fail | Status::Abort => Severity::Error,
                    Status::Warn => Severity::Warning,
                    _ => return None,
                };
                Some((severity, requirement_name(id, &r.id), r.message.as_str()))
            })
            .collect();
        let general = if self.policy.strict {
            Severity::Error
        } else {
            Severity::Warning
        };
        lines.extend(
            self.outcome
                .warnings
                .iter()
                .map(|w| (general, id.clone(), w.as_str())),
        );
        lines
    }
}

/// How a diagnostic line counts for the SCS compliance runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `ERROR:` (counted as an error; shown by the compliance monitor).
    Error,
    /// `WARNING:` (shown by the compliance monitor).
    Warning,
}

impl Severity {
    /// The line's prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
        }
    }
}

pub struct RunReport {
    pub meta: RunMeta,
    pub results: Vec<TestcaseResult>,
}

impl RunReport {
    /// Writes `junit.xml`, `report.yaml`, `logs/<testcase>.log` and the files the checks
    /// keep (`<testcase>/<name>`, e.g. the upstream `e2e.log`) into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join("logs"))?;
        std::fs::write(dir.join("junit.xml"), junit::render(self))?;
        std::fs::write(dir.join("report.yaml"), yaml::render(self))?;
        for result in &self.results {
            if result.log.is_empty() {
                continue;
            }
            let mut text = result.log.join("\n");
            text.push('\n');
            std::fs::write(
                dir.join("logs").join(format!("{}.log", result.testcase.id)),
                crate::console::redact(&text),
            )?;
        }
        for result in &self.results {
            for (name, content) in &result.outcome.files {
                let sub = dir.join(&result.testcase.id);
                std::fs::create_dir_all(&sub)?;
                std::fs::write(sub.join(name), crate::console::redact(content))?;
            }
        }
        Ok(())
    }

    /// Counts of verdicts, for the summary line.
    pub fn summary(&self) -> String {
        let count = |v: Verdict| self.results.iter().filter(|r| r.verdict == v).count();
        let warnings: usize = self
            .results
            .iter()
            .map(|r| {
                r.outcome.warnings.len()
                    + r.outcome
                        .requirements
                        .iter()
                        .filter(|q| r.policy.effective(q.status) == Status::Warn)
                        .count()
            })
            .sum();
        let not_implemented = match count(Verdict::NotImplemented) {
            0 => String::new(),
            n => format!(", {n} not implemented"),
        };
        format!(
            "{} testcases: {} passed, {} failed, {} aborted, {} not applicable{not_implemented}; \
             {} warnings",
            self.results.len(),
            count(Verdict::Pass),
            count(Verdict::Fail),
            count(Verdict::Abort),
            count(Verdict::Skipped),
            warnings
        )
    }

    /// The result per target, the certificate (target `main`) first, as SCS's runner
    /// reports it: what counts for the exit code and what does not.
    pub fn targets(&self) -> Vec<TargetResult> {
        let mut names: Vec<&str> = self
            .results
            .iter()
            .map(|r| r.testcase.target.as_str())
            .collect();
        names.sort_by_key(|t| (*t != MAIN_TARGET, *t));
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let of: Vec<&TestcaseResult> = self
                    .results
                    .iter()
                    .filter(|r| r.testcase.target == name)
                    .collect();
                let ids = |v: Verdict| -> Vec<String> {
                    of.iter()
                        .filter(|r| r.verdict == v)
                        .map(|r| r.testcase.id.clone())
                        .collect()
                };
                TargetResult {
                    target: name.to_string(),
                    certificate: name == MAIN_TARGET,
                    verdict: fold(of.iter().map(|r| r.verdict)),
                    counted: of.iter().all(|r| r.counted),
                    passed: ids(Verdict::Pass),
                    failed: ids(Verdict::Fail),
                    aborted: ids(Verdict::Abort),
                    not_applicable: ids(Verdict::Skipped),
                    not_implemented: ids(Verdict::NotImplemented),
                }
            })
            .collect()
    }
}

/// One target's result (`main` is the certificate).
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub target: String,
    /// Whether this is the certificate's target.
    pub certificate: bool,
    /// FAIL, ABORT (also when a testcase is not implemented), PASS; SKIPPED when nothing
    /// was decided.
    pub verdict: Verdict,
    /// Whether its testcases decide the exit code.
    pub counted: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aborted: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_applicable: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_implemented: Vec<String>,
}

impl TargetResult {
    /// One line for stderr, e.g. `target main (the certificate): FAIL: 2 passed, 1 failed
    /// (version-policy-check)`.
    pub fn line(&self) -> String {
        let role = if self.certificate {
            "the certificate".to_string()
        } else if self.counted {
            "beside the certificate, counted in the exit code".to_string()
        } else {
            "beside the certificate, not counted in the exit code".to_string()
        };
        let mut parts = vec![format!("{} passed", self.passed.len())];
        for (what, ids) in [
            ("failed", &self.failed),
            ("aborted", &self.aborted),
            ("not applicable", &self.not_applicable),
            ("not implemented", &self.not_implemented),
        ] {
            if !ids.is_empty() {
                parts.push(format!("{} {what} ({})", ids.len(), ids.join(", ")));
            }
        }
        let verdict = match self.verdict {
            Verdict::NotImplemented => "INCOMPLETE",
            Verdict::Skipped => "NOTHING DECIDED",
            v => v.as_str(),
        };
        format!(
            "target {} ({role}): {verdict}: {}",
            self.target,
            parts.join(", ")
        )
    }
}

/// FAIL over ABORT over not implemented over PASS; SKIPPED when nothing was decided.
fn fold(verdicts: impl Iterator<Item = Verdict>) -> Verdict {
    let all: Vec<Verdict> = verdicts.collect();
    [
        Verdict::Fail,
        Verdict::Abort,
        Verdict::NotImplemented,
        Verdict::Pass,
    ]
    .into_iter()
    .find(|v| all.contains(v))
    .unwrap_or(Verdict::Skipped)
}

/// The JUnit / report name of a requirement: `<testcase>/<requirement>`, or the testcase
/// itself for whole-testcase results.
pub fn requirement_name(testcase: &str, requirement: &str) -> String {
    if requirement.is_empty() {
        testcase.to_string()
    } else {
        format!("{testcase}/{requirement}")
    }
}

/// Text safe inside XML CDATA and attribute values: redacted, every character XML 1.0
/// forbids (C0 controls but tab and line feed, U+FFFE, U+FFFF) and every terminal control
/// character written as a visible escape (`\u{1b}`), and no `]]>`.
pub fn sanitize(text: &str) -> String {
    crate::console::escape_controls(&crate::console::redact(text), true).replace("]]>", "]] >")
}

/// `text` cut to at most `limit` characters; a cut ends with a line saying how much was
/// left out and where the whole text is (`rest`, e.g. `logs/<testcase>.log`).
pub fn bounded(text: &str, limit: usize, rest: &str) -> String {
    let total = text.chars().count();
    if total <= limit {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(limit).collect();
    cut.push_str(&format!(
        "\n[... {} more characters; the whole text is in {rest}]",
        total - limit
    ));
    cut
}
