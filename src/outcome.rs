//! What checks produce: per-requirement results, folded into one verdict per testcase.
//!
//! Checks know nothing of report formats; `crate::report` renders these types.

use serde::Serialize;
use std::collections::BTreeMap;

/// The result of one requirement of a testcase (one JUnit `<testcase>` each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The requirement holds.
    Pass,
    /// The requirement holds, but a recommendation (SHOULD) is broken or something is
    /// close to a limit. Becomes a failure under `--strict`.
    Warn,
    /// A mandatory requirement (MUST) is broken.
    Fail,
    /// The requirement could not be decided (environment problem, missing data).
    Abort,
    /// The requirement does not apply to this cluster (e.g. a hidden control plane).
    NotApplicable,
    /// Information only; never fails, not even under `--strict`.
    Info,
}

/// One decided (or undecidable) requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    /// Short id, e.g. `patch-recency`; rendered as `<testcase>/<id>`.
    pub id: String,
    pub status: Status,
    /// One line saying why, naming the values involved.
    pub message: String,
    /// Supporting lines (evidence, events, tables); rendered in `<system-out>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl Requirement {
    pub fn new(id: impl Into<String>, status: Status, message: impl Into<String>) -> Self {
        Requirement {
            id: id.into(),
            status,
            message: message.into(),
            details: Vec::new(),
        }
    }
    pub fn pass(id: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(id, Status::Pass, message)
    }
    pub fn warn(id: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(id, Status::Warn, message)
    }
    pub fn fail(id: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(id, Status::Fail, message)
    }
    pub fn abort(id: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(id, Status::Abort, message)
    }
    pub fn not_applicable(id: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(id, Status::NotApplicable, message)
    }
    pub fn info(id: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(id, Status::Info, message)
    }
    pub fn with_details(mut self, details: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.details.extend(details.into_iter().map(Into::into));
        self
    }
}

/// Everything one check reports for its testcase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckOutcome {
    pub requirements: Vec<Requirement>,
    /// Warnings that belong to no single requirement (e.g. stale bundled data).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Structured facts for `report.yaml` (e.g. a per-node table).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, serde_json::Value>,
    /// Testcases of an upstream suite the check ran (the e2e image's `junit_01.xml`), as
    /// they came; the JUnit report lists them under a testsuite of their own.
    #[serde(skip)]
    pub upstream: Vec<UpstreamCase>,
    /// Files to keep in the output directory under `<testcase>/` (name, content), e.g. the
    /// upstream `e2e.log`.
    #[serde(skip)]
    pub files: Vec<(String, String)>,
}

/// How an upstream testcase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamState {
    Passed,
    Failed,
    Skipped,
}

/// One testcase of an upstream suite.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamCase {
    pub name: String,
    pub classname: String,
    /// Seconds.
    pub time: f64,
    pub state: UpstreamState,
    /// The failure message (or skip reason).
    pub message: String,
    /// The failure's text.
    pub text: String,
    /// For an accepted failure: the ok-to-fail reason.
    pub accepted: Option<String>,
}

impl CheckOutcome {
    pub fn push(&mut self, requirement: Requirement) {
        self.requirements.push(requirement);
    }

    /// Adds everything `other` reports (a part of the same testcase) to this outcome.
    pub fn absorb(&mut self, other: CheckOutcome) {
        self.requirements.extend(other.requirements);
        self.warnings.extend(other.warnings);
        self.facts.extend(other.facts);
        self.upstream.extend(other.upstream);
        self.files.extend(other.files);
    }

    /// An outcome with one undecidable requirement, for checks that cannot start.
    pub fn aborted(id: impl Into<String>, message: impl Into<String>) -> Self {
        CheckOutcome {
            requirements: vec![Requirement::abort(id, message)],
            ..Default::default()
        }
    }
}

/// The testcase verdict printed on stdout (`<id>: PASS|FAIL|ABORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Abort,
    Fail,
    /// Nothing could be decided: no verdict line, reported as skipped.
    Skipped,
    /// The catalogue names a testcase id this binary has no check for: no verdict line,
    /// reported as skipped with that reason; never a PASS.
    #[serde(rename = "NOT-IMPLEMENTED")]
    NotImplemented,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Abort => "ABORT",
            Verdict::Skipped => "SKIPPED",
            Verdict::NotImplemented => "NOT-IMPLEMENTED",
        }
    }

    /// Whether the verdict is printed as a line on stdout (the SCS runner protocol).
    pub fn printed(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Fail | Verdict::Abort)
    }
}

/// Exit code: every selected testcase passed or was not applicable.
pub const EXIT_OK: u8 = 0;
/// Exit code: at least one testcase FAILed.
pub const EXIT_FAIL: u8 = 1;
/// Exit code: usage or configuration error before any check ran.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: no FAIL, but at least one testcase ABORTed or is not implemented (undecided).
pub const EXIT_ABORT: u8 = 3;

/// The exit code of a run with these (counted) verdicts: FAIL wins over ABORT (or not
/// implemented), that over PASS.
pub fn exit_code(verdicts: impl IntoIterator<Item = Verdict>) -> u8 {
    let verdicts: Vec<Verdict> = verdicts.into_iter().collect();
    if verdicts.contains(&Verdict::Fail) {
        EXIT_FAIL
    } else if verdicts
        .iter()
        .any(|v| matches!(v, Verdict::Abort | Verdict::NotImplemented))
    {
        EXIT_ABORT
    } else {
        EXIT_OK
    }
}

/// A testcase's requirement level (RFC 2119). SCS's catalogue format has no place for it:
/// it is the binary's knowledge, per testcase id (`checks::IMPLEMENTED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Its failures fail the testcase.
    Mandatory,
    /// A measurement: its failures count as warnings unless `--strict`.
    Informational,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Mandatory => "mandatory",
            Level::Informational => "informational",
        }
    }
}

/// How strictly broken recommendations count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// `--strict`: warnings fail.
    pub strict: bool,
    /// Failures of a non-mandatory testcase are warnings unless strict.
    pub mandatory: bool,
}

impl Policy {
    /// The policy of a testcase of `level` in a run with or without `--strict`.
    pub fn new(level: Level, strict: bool) -> Self {
        Policy {
            strict,
            mandatory: level == Level::Mandatory,
        }
    }

    /// The level this policy was made for.
    pub fn level(self) -> Level {
        if self.mandatory {
            Level::Mandatory
        } else {
            Level::Informational
        }
    }

    /// The status a requirement counts as under this policy.
    pub fn effective(self, status: Status) -> Status {
        match status {
            Status::Warn if self.strict => Status::Fail,
            Status::Fail if !self.mandatory && !self.strict => Status::Warn,
            other => other,
        }
    }
}

impl CheckOutcome {
    /// FAIL if any requirement failed, else ABORT if one could not be decided, else PASS
    /// if anything was decided, else skipped.
    pub fn verdict(&self, policy: Policy) -> Verdict {
        let statuses: Vec<Status> = self
            .requirements
            .iter()
            .map(|r| policy.effective(r.status))
            .collect();
        if statuses.contains(&Status::Fail) || (policy.strict && !self.warnings.is_empty()) {
            Verdict::Fail
        } else if statuses.contains(&Status::Abort) {
            Verdict::Abort
        } else if statuses
            .iter()
            .any(|s| matches!(s, Status::Pass | Status::Warn | Status::Info))
        {
            Verdict::Pass
        } else {
            Verdict::Skipped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANDATORY: Policy = Policy {
        strict: false,
        mandatory: true,
    };

    fn outcome(statuses: &[Status]) -> CheckOutcome {
        CheckOutcome {
            requirements: statuses
                .iter()
                .enumerate()
                .map(|(i, s)| Requirement::new(format!("r{i}"), *s, "m"))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn exit_codes() {
        use Verdict::*;
        assert_eq!(exit_code([Pass, Skipped]), EXIT_OK);
        assert_eq!(exit_code([]), EXIT_OK);
        assert_eq!(
            exit_code([Pass, NotImplemented]),
            EXIT_ABORT,
            "never a pass"
        );
        assert_eq!(exit_code([Abort, Pass]), EXIT_ABORT);
        assert_eq!(exit_code([NotImplemented, Abort, Fail]), EXIT_FAIL);
        assert!(!NotImplemented.printed() && !Skipped.printed() && Abort.printed());
    }

    #[test]
    fn fail_wins_over_abort() {
        let o = outcome(&[Status::Pass, Status::Abort, Status::Fail]);
        assert_eq!(o.verdict(MANDATORY), Verdict::Fail);
    }

    #[test]
    fn abort_wins_over_pass() {
        let o = outcome(&[Status::Pass, Status::Abort, Status::NotApplicable]);
        assert_eq!(o.verdict(MANDATORY), Verdict::Abort);
    }

    #[test]
    fn not_applicable_parts_still_pass() {
        let o = outcome(&[Status::Pass, Status::NotApplicable, Status::Warn]);
        assert_eq!(o.verdict(MANDATORY), Verdict::Pass);
    }

    #[test]
    fn nothing_decided_is_skipped() {
        let o = outcome(&[Status::NotApplicable]);
        assert_eq!(o.verdict(MANDATORY), Verdict::Skipped);
        assert_eq!(outcome(&[]).verdict(MANDATORY), Verdict::Skipped);
    }

    #[test]
    fn strict_turns_warnings_into_failures() {
        let strict = Policy {
            strict: true,
            mandatory: true,
        };
        assert_eq!(outcome(&[Status::Warn]).verdict(strict), Verdict::Fail);
        assert_eq!(outcome(&[Status::Info]).verdict(strict), Verdict::Pass);
        let mut o = outcome(&[Status::Pass]);
        o.warnings.push("stale data".into());
        assert_eq!(o.verdict(strict), Verdict::Fail);
        assert_eq!(o.verdict(MANDATORY), Verdict::Pass);
    }

    #[test]
    fn informational_failures_are_warnings_unless_strict() {
        let informational = Policy {
            strict: false,
            mandatory: false,
        };
        assert_eq!(
            outcome(&[Status::Fail]).verdict(informational),
            Verdict::Pass
        );
        let strict = Policy {
            strict: true,
            mandatory: false,
        };
        assert_eq!(outcome(&[Status::Fail]).verdict(strict), Verdict::Fail);
    }
}
