//! Renders a run's outcomes: JUnit XML, the YAML report, and the log files. Nothing here
//! talks to a cluster.

pub mod junit;
pub mod yaml;

use crate::catalogue::{Level, Testcase};
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
    pub verdict: Verdict,
    pub duration: Duration,
    pub log: Vec<String>,
}

impl TestcaseResult {
    pub fn new(
        testcase: Testcase,
        outcome: CheckOutcome,
        strict: bool,
        duration: Duration,
        log: Vec<String>,
    ) -> Self {
        let verdict = outcome.verdict(policy(&testcase, strict));
        TestcaseResult {
            testcase,
            outcome,
            verdict,
            duration,
            log,
        }
    }
}

pub fn policy(testcase: &Testcase, strict: bool) -> Policy {
    Policy {
        strict,
        mandatory: testcase.level == Level::Mandatory,
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
                let p = policy(&r.testcase, self.meta.strict);
                r.outcome.warnings.len()
                    + r.outcome
                        .requirements
                        .iter()
                        .filter(|q| p.effective(q.status) == Status::Warn)
                        .count()
            })
            .sum();
        format!(
            "{} testcases: {} passed, {} failed, {} aborted, {} not applicable; {} warnings",
            self.results.len(),
            count(Verdict::Pass),
            count(Verdict::Fail),
            count(Verdict::Abort),
            count(Verdict::Skipped),
            warnings
        )
    }
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
