//! The decisions of scs-0210-v2: supported branch, patch recency, CVE recency, and the
//! offering-level coverage of several clusters.
//!
//! Everything is decided as of a reference date: releases published after it are
//! ignored, so a run with a fixed date and fixed data is reproducible.

use super::data::{Coverage, Cve, EolData, LoadedData, Release, ReleaseData};
use super::version::{Branch, KubeVersion};
use crate::outcome::{CheckOutcome, Requirement, Status};
use jiff::ToSpan;
use jiff::civil::Date;
use serde_json::json;
use std::collections::BTreeSet;

pub const SUPPORTED_BRANCH: &str = "supported-branch";
pub const PATCH_RECENCY: &str = "patch-recency";
pub const CVE_RECENCY: &str = "cve-recency";
pub const OFFERING: &str = "offering";

/// A newer patch out for more than this many days makes the running patch outdated.
pub const PATCH_LIMIT_DAYS: i64 = 31;
/// A fix of a critical CVE out for more than this many days: FAIL.
pub const CVE_FAIL_AFTER_DAYS: i64 = 14;
/// A fix of a critical CVE out for more than this many days (and up to the fail limit):
/// WARN. Up to this many days: PASS with a note.
pub const CVE_WARN_AFTER_DAYS: i64 = 2;
/// CVSS base score from which a CVE counts as critical.
pub const CRITICAL_CVSS: f64 = 8.0;
/// Fewer supported branches than this at the reference date: the EOL data may be stale.
pub const MIN_SUPPORTED_BRANCHES: usize = 3;
/// Fewer supported branches than this: nothing is decided.
pub const MIN_DECIDABLE_BRANCHES: usize = 2;
/// The newest minor must be offered this many calendar months after its release.
pub const OFFERING_GRACE_MONTHS: i32 = 4;

/// Every requirement of the testcase, undecidable for `reason`.
pub fn aborted_requirements(reason: &str) -> Vec<Requirement> {
    [SUPPORTED_BRANCH, PATCH_RECENCY, CVE_RECENCY]
        .into_iter()
        .map(|id| Requirement::abort(id, reason))
        .collect()
}

/// An outcome with every requirement undecidable for `reason`.
pub fn aborted_outcome(reason: &str) -> CheckOutcome {
    CheckOutcome {
        requirements: aborted_requirements(reason),
        ..Default::default()
    }
}

/// The offering requirement of a run over a single cluster.
pub fn offering_not_applicable() -> Requirement {
    Requirement::not_applicable(
        OFFERING,
        "a single cluster cannot show the offering's version coverage; pass several --kubeconfig/--context with --offering",
    )
}

/// Whole days from `earlier` to `later` (negative if `later` is before).
fn days_between(earlier: Date, later: Date) -> i64 {
    earlier
        .until(later)
        .map(|span| i64::from(span.get_days()))
        .unwrap_or(0)
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn release_line(release: &Release) -> String {
    format!("{} published {}", release.version, release.published())
}

/// The message when the EOL data knows too few supported branches, if it does.
fn staleness(eol: &EolData, reference_date: Date) -> Option<(usize, String)> {
    let supported = eol.supported_at(reference_date).len();
    (supported < MIN_SUPPORTED_BRANCHES).then(|| {
        (
            supported,
            format!(
                "the EOL data knows only {supported} supported branches at {reference_date}; it may be stale"
            ),
        )
    })
}

/// The last publication day of a newer patch (or fix) that makes a requirement with a
/// limit of `limit_days` FAIL at `reference_date`: data that covers this day rules a FAIL out.
pub fn fail_cutoff(reference_date: Date, limit_days: i64) -> Date {
    reference_date
        .checked_sub((limit_days + 1).days())
        .unwrap_or(reference_date)
}

/// Decides the three requirements for the cluster version `version_string`.
pub fn evaluate(version_string: &str, reference_date: Date, data: &LoadedData) -> CheckOutcome {
    let (mut outcome, version) = evaluate_branch(version_string, reference_date, &data.eol);
    outcome.warnings.extend(data.warnings.iter().cloned());
    outcome
        .facts
        .insert("data-sources".into(), json!(data.sources));
    if let Some(version) = version {
        outcome.absorb(evaluate_releases(version, reference_date, data));
    }
    outcome
}

/// The first stage, on local data only: the version is parsed and `supported-branch` is
/// decided from the end-of-life data. The version is `None` when nothing more can be
/// decided (unparseable version, EOL data too stale); every requirement is then ABORT.
pub fn evaluate_branch(
    version_string: &str,
    reference_date: Date,
    eol: &Result<EolData, String>,
) -> (CheckOutcome, Option<KubeVersion>) {
    let mut outcome = CheckOutcome::default();
    outcome
        .facts
        .insert("reference-date".into(), json!(reference_date.to_string()));
    outcome
        .facts
        .insert("version-string".into(), json!(version_string));

    let version = match KubeVersion::parse(version_string) {
        Ok(version) => version,
        Err(e) => {
            outcome.requirements = aborted_requirements(&e.to_string());
            return (outcome, None);
        }
    };
    let branch = version.branch();
    outcome
        .facts
        .insert("running-version".into(), json!(version.to_string()));
    outcome
        .facts
        .insert("branch".into(), json!(branch.to_string()));

    match eol {
        Ok(eol) => {
            if let Some(end) = eol.end_of_life(branch) {
                outcome
                    .facts
                    .insert("end-of-life".into(), json!(end.to_string()));
            }
            outcome.facts.insert(
                "supported-branches".into(),
                json!(join(eol.supported_at(reference_date))),
            );
            if let Some((count, message)) = staleness(eol, reference_date) {
                if count < MIN_DECIDABLE_BRANCHES {
                    outcome.requirements = aborted_requirements(&message);
                    return (outcome, None);
                }
                outcome.warnings.push(message);
            }
            outcome.push(check_supported_branch(version, reference_date, eol));
        }
        Err(reason) => outcome.push(Requirement::abort(
            SUPPORTED_BRANCH,
            format!("no end-of-life data: {reason}"),
        )),
    }
    (outcome, Some(version))
}

/// The second stage: `patch-recency` and `cve-recency` from the release and CVE data.
pub fn evaluate_releases(
    version: KubeVersion,
    reference_date: Date,
    data: &LoadedData,
) -> CheckOutcome {
    let mut outcome = CheckOutcome::default();
    let branch = version.branch();
    match &data.releases {
        Ok(releases) => {
            if let Some(newest) = releases.branch_as_of(branch, reference_date).last() {
                outcome
                    .facts
                    .insert("newest-patch".into(), json!(newest.version.to_string()));
                outcome.facts.insert(
                    "newest-patch-published".into(),
                    json!(newest.published().to_string()),
                );
            }
            if let Some(until) = data.release_coverage.until {
                outcome
                    .facts
                    .insert("release-data-until".into(), json!(until.to_string()));
            }
            outcome.push(check_patch_recency(
                version,
                reference_date,
                releases,
                &data.release_coverage,
            ));
            match &data.cves {
                Ok(cves) => outcome.push(check_cve_recency(
                    version,
                    reference_date,
                    releases,
                    cves,
                    &Coverages {
                        releases: &data.release_coverage,
                        cves: &data.cve_coverage,
                    },
                )),
                Err(reason) => outcome.push(Requirement::abort(
                    CVE_RECENCY,
                    format!("no CVE data: {reason}"),
                )),
            }
        }
        Err(reason) => {
            let message = format!("no release data: {reason}");
            outcome.push(Requirement::abort(PATCH_RECENCY, message.clone()));
            outcome.push(Requirement::abort(CVE_RECENCY, message));
        }
    }
    outcome
}

/// The branch has not passed its end of life (the EOL day itself is still supported), and
/// the version is a release: an upstream pre-release is not a supported release.
pub fn check_supported_branch(
    version: KubeVersion,
    reference_date: Date,
    eol: &EolData,
) -> Requirement {
    let branch = version.branch();
    if version.is_prerelease() {
        return Requirement::fail(
            SUPPORTED_BRANCH,
            format!(
                "{version} is an upstream pre-release ({} of {}), not a release: the \
                 Kubernetes project supports only its releases, so a cluster must run one",
                version.stage,
                version.release()
            ),
        );
    }
    if let Some(end) = eol.end_of_life(branch) {
        return if reference_date <= end {
            Requirement::pass(
                SUPPORTED_BRANCH,
                format!(
                    "branch {branch} of {version} is supported until {end} ({} days after the reference date {reference_date})",
                    days_between(reference_date, end)
                ),
            )
        } else {
            Requirement::fail(
                SUPPORTED_BRANCH,
                format!(
                    "branch {branch} of {version} reached its end of life on {end}, {} days before the reference date {reference_date}",
                    days_between(end, reference_date)
                ),
            )
        };
    }
    let (Some(oldest), Some(newest)) = (eol.oldest(), eol.newest()) else {
        return Requirement::abort(SUPPORTED_BRANCH, "the EOL data lists no branches");
    };
    let oldest_end = eol.end_of_life(oldest);
    match oldest_end {
        // Branches reach their end of life in order: one older than a branch already past
        // its end of life is past it too.
        Some(end) if branch < oldest && end < reference_date => Requirement::fail(
            SUPPORTED_BRANCH,
            format!(
                "branch {branch} of {version} is older than every branch the EOL data knows; \
                 the oldest, {oldest}, reached its end of life on {end}, and older branches \
                 reach theirs earlier"
            ),
        ),
        _ => Requirement::abort(
            SUPPORTED_BRANCH,
            format!(
                "branch {branch} of {version} is not in the EOL data (it knows {oldest} to \
                 {newest}), so whether it is supported cannot be decided; pass --eol-data with \
                 the branch's end of life (https://kubernetes.io/releases/)"
            ),
        ),
    }
}

/// No newer patch of the branch has been out for more than [`PATCH_LIMIT_DAYS`].
///
/// Among the newer patches, the one published first has been out longest; it decides, and
/// the message names it and the newest patch. A pass needs release data that covers the
/// last day such a patch could have been published ([`fail_cutoff`]); otherwise ABORT.
pub fn check_patch_recency(
    version: KubeVersion,
    reference_date: Date,
    releases: &ReleaseData,
    coverage: &Coverage,
) -> Requirement {
    let branch = version.branch();
    let cutoff = fail_cutoff(reference_date, PATCH_LIMIT_DAYS);
    let known = releases.branch_as_of(branch, reference_date);
    let Some(newest) = known.last().copied() else {
        let newest_branch = releases
            .as_of(reference_date)
            .map(|r| r.version.branch())
            .max();
        return Requirement::abort(
            PATCH_RECENCY,
            format!(
                "the release data ({}) knows no release of branch {branch} published by \
                 {reference_date}{}, so whether {version} is the newest patch cannot be decided",
                coverage.what,
                newest_branch
                    .map(|b| format!(" (newest branch {b})"))
                    .unwrap_or_default()
            ),
        );
    };
    let newer: Vec<&Release> = known
        .iter()
        .copied()
        .filter(|r| r.version > version)
        .collect();
    let details: Vec<String> = newer.iter().map(|r| release_line(r)).collect();
    let first = newer
        .iter()
        .copied()
        .min_by_key(|r| (r.published_at, r.version));
    let newest_note = |first: &Release| {
        if newest.version == first.version {
            String::new()
        } else {
            format!(
                "; the newest patch is {} (published {})",
                newest.version,
                newest.published()
            )
        }
    };
    if let Some(first) = first {
        let days = days_between(first.published(), reference_date);
        if days > PATCH_LIMIT_DAYS {
            return Requirement::fail(
                PATCH_RECENCY,
                format!(
                    "{version} is outdated: {} was published on {}, {days} days before the reference date {reference_date} (limit {PATCH_LIMIT_DAYS} days){}",
                    first.version,
                    first.published(),
                    newest_note(first)
                ),
            )
            .with_details(details);
        }
    }
    if !coverage.covers(cutoff) {
        return Requirement::abort(
            PATCH_RECENCY,
            format!(
                "{version} cannot be judged: a newer patch of branch {branch} published by \
                 {cutoff} (more than {PATCH_LIMIT_DAYS} days before the reference date {reference_date}) \
                 would make it outdated, but {}",
                coverage.shortfall(cutoff)
            ),
        )
        .with_details(details);
    }
    let Some(first) = first else {
        let message = if version == newest.version {
            format!(
                "{version} is the newest patch of branch {branch} known at {reference_date} (published {})",
                newest.published()
            )
        } else {
            format!(
                "{version} is not older than the newest patch of branch {branch} known at {reference_date}, {} (published {})",
                newest.version,
                newest.published()
            )
        };
        return Requirement::pass(PATCH_RECENCY, message);
    };
    let days = days_between(first.published(), reference_date);
    Requirement::pass(
        PATCH_RECENCY,
        format!(
            "{version} is recent enough: the newer {} was published on {}, {days} days before the reference date {reference_date} (limit {PATCH_LIMIT_DAYS} days){}",
            first.version,
            first.published(),
            newest_note(first)
        ),
    )
    .with_details(details)
}

/// How one critical CVE that affects the running version stands.
struct CveFinding<'a> {
    cve: &'a Cve,
    status: Status,
    message: String,
}

/// The coverage of both data sets `cve-recency` is decided on.
pub struct Coverages<'a> {
    pub releases: &'a Coverage,
    pub cves: &'a Coverage,
}

fn cve_finding<'a>(
    version: KubeVersion,
    reference_date: Date,
    branch_releases: &[&Release],
    release_coverage: &Coverage,
    cve: &'a Cve,
) -> CveFinding<'a> {
    let score = cve.score.unwrap_or_default();
    let head = format!("{version} is affected by {} (CVSS {score:.1})", cve.id);
    let branch = version.branch();
    let fix = branch_releases
        .iter()
        .copied()
        .filter(|r| r.version > version && !cve.affects(r.version))
        .min_by_key(|r| (r.published_at, r.version));
    let Some(fix) = fix else {
        let cutoff = fail_cutoff(reference_date, CVE_FAIL_AFTER_DAYS);
        let (status, message) = if branch_releases.is_empty() {
            (
                Status::Abort,
                format!(
                    "{head}: the release data knows no release of branch {branch}, so whether \
                     a fix has been out for more than {CVE_FAIL_AFTER_DAYS} days is unknown"
                ),
            )
        } else if !release_coverage.covers(cutoff) {
            (
                Status::Abort,
                format!(
                    "{head}: no fixed patch of branch {branch} is in the release data, but a fix \
                     published by {cutoff} would decide; {}",
                    release_coverage.shortfall(cutoff)
                ),
            )
        } else {
            (
                Status::Warn,
                format!(
                    "{head}: no fixed patch of branch {branch} was released by the reference \
                     date {reference_date} (newest patch {})",
                    branch_releases
                        .last()
                        .map(|r| r.version.to_string())
                        .unwrap_or_default()
                ),
            )
        };
        return CveFinding {
            cve,
            status,
            message,
        };
    };
    let days = days_between(fix.published(), reference_date);
    let said = format!(
        "the fix {} was published on {}, {days} days before the reference date {reference_date}",
        fix.version,
        fix.published()
    );
    let (status, message) = if days > CVE_FAIL_AFTER_DAYS {
        (
            Status::Fail,
            format!("{head}: {said} (limit {CVE_FAIL_AFTER_DAYS} days)"),
        )
    } else if days > CVE_WARN_AFTER_DAYS {
        (
            Status::Warn,
            format!("{head}: {said}; update within {CVE_FAIL_AFTER_DAYS} days of the fix"),
        )
    } else {
        (
            Status::Pass,
            format!("{head}: {said}, within the {CVE_WARN_AFTER_DAYS}-day grace period"),
        )
    };
    CveFinding {
        cve,
        status,
        message,
    }
}

fn severity(status: Status) -> u8 {
    match status {
        Status::Fail => 4,
        Status::Abort => 3,
        Status::Warn => 2,
        _ => 1,
    }
}

/// The running version is not affected by a critical CVE whose fix has been out too long.
/// A FAIL needs a fix published more than [`CVE_FAIL_AFTER_DAYS`] days before the reference
/// date; anything else needs CVE and release data that cover that day ([`fail_cutoff`]).
pub fn check_cve_recency(
    version: KubeVersion,
    reference_date: Date,
    releases: &ReleaseData,
    cves: &[Cve],
    coverage: &Coverages<'_>,
) -> Requirement {
    let critical: Vec<&Cve> = cves
        .iter()
        .filter(|c| c.is_critical(CRITICAL_CVSS))
        .collect();
    let branch_releases = releases.branch_as_of(version.branch(), reference_date);
    let findings: Vec<CveFinding> = critical
        .iter()
        .copied()
        .filter(|c| c.affects(version))
        .map(|c| {
            cve_finding(
                version,
                reference_date,
                &branch_releases,
                coverage.releases,
                c,
            )
        })
        .collect();
    let details: Vec<String> = findings
        .iter()
        .map(|f| format!("{}: {}", f.cve.id, f.message))
        .collect();
    let worst = findings
        .iter()
        .map(|f| f.status)
        .max_by_key(|s| severity(*s));
    let cutoff = fail_cutoff(reference_date, CVE_FAIL_AFTER_DAYS);
    if worst != Some(Status::Fail) && !coverage.cves.covers(cutoff) {
        return Requirement::abort(
            CVE_RECENCY,
            format!(
                "{version} cannot be judged: a critical CVE whose fix was published by {cutoff} \
                 (more than {CVE_FAIL_AFTER_DAYS} days before the reference date {reference_date}) would \
                 fail it, but {}",
                coverage.cves.shortfall(cutoff)
            ),
        )
        .with_details(details);
    }
    let Some(worst) = worst else {
        return Requirement::pass(
            CVE_RECENCY,
            format!(
                "{version} is not affected by any of the {} critical CVEs known (CVSS >= {CRITICAL_CVSS:.1})",
                critical.len()
            ),
        );
    };
    let message = findings
        .iter()
        .filter(|f| f.status == worst)
        .map(|f| f.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Requirement::new(CVE_RECENCY, worst, message).with_details(details)
}

/// Offering level: every branch supported at `reference_date` is offered by some cluster,
/// and the newest minor (the branch whose `x.y.0` was published last) is offered no later
/// than [`OFFERING_GRACE_MONTHS`] calendar months after that release.
pub fn evaluate_offering(
    versions: &[KubeVersion],
    reference_date: Date,
    eol: &EolData,
    releases: &ReleaseData,
) -> Requirement {
    if versions.is_empty() {
        return Requirement::abort(OFFERING, "no cluster versions to judge the offering by");
    }
    let offered: BTreeSet<Branch> = versions.iter().map(|v| v.branch()).collect();
    let newest = releases.newest_minor_as_of(reference_date);
    let newest_branch = newest.map(|r| r.version.branch());
    // A branch in the EOL data that has not been released yet is not required.
    let mut required: BTreeSet<Branch> = eol
        .supported_at(reference_date)
        .into_iter()
        .filter(|b| newest_branch.is_none_or(|n| *b <= n))
        .collect();
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    if let Some(newest) = newest {
        let branch = newest.version.branch();
        let released = newest.published();
        match released.checked_add(OFFERING_GRACE_MONTHS.months()) {
            Ok(due) if reference_date > due => {
                required.insert(branch);
                if !offered.contains(&branch) {
                    problems.push(format!(
                        "the newest minor {branch} (released {released}) is not offered, though it was due by {due}, {OFFERING_GRACE_MONTHS} months after its release"
                    ));
                }
            }
            Ok(due) => {
                required.remove(&branch);
                if !offered.contains(&branch) {
                    notes.push(format!(
                        "the newest minor {branch} (released {released}) is due by {due}"
                    ));
                }
            }
            Err(e) => notes.push(format!("cannot compute the due date of {branch}: {e}")),
        }
    }
    let missing: Vec<Branch> = required
        .iter()
        .copied()
        .filter(|b| !offered.contains(b) && Some(*b) != newest_branch)
        .collect();
    if !missing.is_empty() {
        problems.insert(
            0,
            format!(
                "supported branches not offered by any cluster: {}",
                join(&missing)
            ),
        );
    }
    let details = vec![
        format!("offered branches: {}", join(&offered)),
        format!("branches required at {reference_date}: {}", join(&required)),
    ];
    let requirement = if problems.is_empty() {
        let mut message = format!(
            "every required branch ({}) is offered; offered: {}",
            join(&required),
            join(&offered)
        );
        for note in notes {
            message.push_str("; ");
            message.push_str(&note);
        }
        Requirement::pass(OFFERING, message)
    } else {
        Requirement::fail(OFFERING, problems.join("; "))
    };
    requirement.with_details(details)
}

#[cfg(test)]
mod tests {
    use super::super::data::{AffectedRange, EolEntry, Upper, bundled_cves};
    use super::*;

    fn date(s: &str) -> Date {
        s.parse().expect("test date")
    }

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).expect("test version")
    }

    fn release(version: &str, published: &str) -> Release {
        Release {
            version: v(version),
            published_at: date(published)
                .at(12, 0, 0, 0)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .expect("zoned")
                .timestamp(),
        }
    }

    fn releases(list: &[(&str, &str)]) -> ReleaseData {
        let mut releases: Vec<Release> = list.iter().map(|(v, d)| release(v, d)).collect();
        releases.sort_by_key(|r| r.version);
        ReleaseData { releases }
    }

    fn eol_data(list: &[(u64, &str)]) -> EolData {
        EolData {
            entries: list
                .iter()
                .map(|(minor, end)| EolEntry {
                    branch: Branch::new(1, *minor),
                    end_of_life: date(end),
                })
                .collect(),
        }
    }

    fn standard_eol() -> EolData {
        eol_data(&[
            (30, "2025-06-28"),
            (31, "2025-10-28"),
            (32, "2026-02-28"),
            (33, "2026-06-28"),
            (34, "2026-10-27"),
            (35, "2027-02-28"),
        ])
    }

    fn cve(id: &str, score: f64, lower: &str, upper: Upper) -> Cve {
        Cve {
            id: id.into(),
            score: Some(score),
            affected: vec![AffectedRange {
                lower: Some(v(lower)),
                upper,
            }],
            updated: Some(date("2026-01-01")),
        }
    }

    /// Data complete until long after every reference date of these tests.
    fn covered() -> Coverage {
        coverage(Some("2099-12-31"))
    }

    fn coverage(until: Option<&str>) -> Coverage {
        Coverage {
            until: until.map(date),
            what: "the test data".into(),
            gaps: None,
            fresher: "get better test data",
        }
    }

    static COVERED: std::sync::LazyLock<Coverage> = std::sync::LazyLock::new(covered);

    /// Release and CVE data both complete.
    fn both() -> Coverages<'static> {
        Coverages {
            releases: &COVERED,
            cves: &COVERED,
        }
    }

    fn add_days(d: &str, days: i64) -> Date {
        date(d).checked_add(days.days()).expect("date")
    }

    #[test]
    fn supported_branch_boundaries() {
        let eol = standard_eol();
        let cases = [
            (
                "v1.33.2",
                "2026-06-28",
                Status::Pass,
                "supported until 2026-06-28",
            ),
            (
                "v1.33.2",
                "2026-06-29",
                Status::Fail,
                "reached its end of life on 2026-06-28, 1 days before",
            ),
            (
                "v1.36.0",
                "2026-06-29",
                Status::Abort,
                "branch 1.36 of v1.36.0 is not in the EOL data (it knows 1.30 to 1.35), so \
                 whether it is supported cannot be decided; pass --eol-data",
            ),
            // 1.29 reached its end of life on 2025-02-28: on 2025-01-01 nothing says it had.
            (
                "v1.29.4",
                "2025-01-01",
                Status::Abort,
                "branch 1.29 of v1.29.4 is not in the EOL data",
            ),
            // Once the oldest known branch is past its end of life, every older one is.
            (
                "v1.29.4",
                "2025-07-01",
                Status::Fail,
                "older than every branch the EOL data knows; the oldest, 1.30, reached its \
                 end of life on 2025-06-28",
            ),
            (
                "v1.34.8-rc.0",
                "2026-06-01",
                Status::Fail,
                "v1.34.8-rc.0 is an upstream pre-release (rc.0 of v1.34.8), not a release",
            ),
        ];
        for (version, reference, status, needle) in cases {
            let r = check_supported_branch(v(version), date(reference), &eol);
            assert_eq!(r.status, status, "{version} at {reference}: {}", r.message);
            assert!(r.message.contains(needle), "{}", r.message);
        }
        let gap = eol_data(&[(30, "2025-06-28"), (32, "2026-02-28")]);
        let r = check_supported_branch(v("v1.31.1"), date("2025-01-01"), &gap);
        assert_eq!(r.status, Status::Abort);
        assert!(
            r.message.contains("1.31") && r.message.contains("not in the EOL data"),
            "{}",
            r.message
        );
    }

    #[test]
    fn patch_recency_boundaries() {
        let data = releases(&[
            ("v1.33.2", "2025-06-17"),
            ("v1.33.3", "2026-03-01"),
            ("v1.33.4", "2026-03-20"),
            ("v1.34.1", "2026-01-01"),
        ]);
        for (days, status) in [(30, Status::Pass), (31, Status::Pass), (32, Status::Fail)] {
            let reference = add_days("2026-03-01", days);
            let r = check_patch_recency(v("v1.33.2"), reference, &data, &covered());
            assert_eq!(r.status, status, "{days} days: {}", r.message);
            assert!(
                r.message.contains(&format!("{days} days before")),
                "{}",
                r.message
            );
            assert!(
                r.message.contains("v1.33.3 was published on 2026-03-01")
                    || r.message.contains("newer v1.33.3"),
                "{}",
                r.message
            );
            assert!(
                r.message.contains("newest patch is v1.33.4"),
                "{}",
                r.message
            );
        }
    }

    #[test]
    fn patch_recency_message_and_special_cases() {
        let data = releases(&[
            ("v1.33.2", "2025-06-17"),
            ("v1.33.5", "2026-03-02"),
            ("v1.33.6", "2026-05-01"),
            ("v1.34.0", "2025-08-27"),
        ]);
        let r = check_patch_recency(v("v1.33.2"), date("2026-04-18"), &data, &covered());
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.message,
            "v1.33.2 is outdated: v1.33.5 was published on 2026-03-02, 47 days before the reference date 2026-04-18 (limit 31 days)"
        );
        assert_eq!(
            r.details,
            ["v1.33.5 published 2026-03-02"],
            "v1.33.6 is after the date"
        );

        let r = check_patch_recency(v("v1.33.5+k3s1"), date("2026-04-18"), &data, &covered());
        assert_eq!(r.status, Status::Pass);
        assert!(
            r.message
                .contains("v1.33.5 is the newest patch of branch 1.33"),
            "{}",
            r.message
        );

        let r = check_patch_recency(v("v1.33.9"), date("2026-04-18"), &data, &covered());
        assert_eq!(r.status, Status::Pass);
        assert!(r.message.contains("v1.33.5"), "{}", r.message);

        // A branch the release data does not know is undecidable, never recent by default.
        let r = check_patch_recency(v("v1.36.0"), date("2026-04-18"), &data, &covered());
        assert_eq!(r.status, Status::Abort);
        assert_eq!(
            r.message,
            "the release data (the test data) knows no release of branch 1.36 published by \
             2026-04-18 (newest branch 1.34), so whether v1.36.0 is the newest patch cannot be \
             decided"
        );

        let r = check_patch_recency(v("v1.20.0"), date("2026-04-18"), &data, &covered());
        assert_eq!(r.status, Status::Abort);
    }

    #[test]
    fn stale_release_data_cannot_pass_but_can_fail() {
        let data = releases(&[
            ("v1.33.2", "2025-06-17"),
            ("v1.33.3", "2026-03-01"),
            ("v1.34.1", "2026-03-01"),
        ]);
        // Data up to 2026-03-01; reference 2026-05-01: a patch published between 2026-03-02
        // and 2026-03-31 would make v1.33.3 outdated and is not in the data.
        let stale = coverage(Some("2026-03-01"));
        let r = check_patch_recency(v("v1.33.3"), date("2026-05-01"), &data, &stale);
        assert_eq!(r.status, Status::Abort);
        assert_eq!(
            r.message,
            "v1.33.3 cannot be judged: a newer patch of branch 1.33 published by 2026-03-30 \
             (more than 31 days before the reference date 2026-05-01) would make it outdated, \
             but the test data ends on 2026-03-01, before 2026-03-30; to decide, get better \
             test data"
        );
        // The same data is enough when it reaches the last day that could fail ...
        let r = check_patch_recency(v("v1.33.3"), date("2026-04-01"), &data, &stale);
        assert_eq!(r.status, Status::Pass, "{}", r.message);
        // ... and evidence of a FAIL decides whatever the data misses.
        let r = check_patch_recency(v("v1.33.2"), date("2026-05-01"), &data, &stale);
        assert_eq!(r.status, Status::Fail, "{}", r.message);
        // Nothing dated at all.
        let r = check_patch_recency(v("v1.33.3"), date("2026-05-01"), &data, &coverage(None));
        assert!(
            r.message.ends_with(
                "but the test data holds nothing dated; to decide, get better test data"
            ),
            "{}",
            r.message
        );
    }

    #[test]
    fn stale_or_incomplete_cve_data_cannot_pass() {
        let data = releases(&[("v1.33.2", "2025-06-17"), ("v1.33.3", "2026-03-01")]);
        let fixed = [cve(
            "CVE-2099-1010",
            9.0,
            "v1.33.0",
            Upper::Below(v("v1.33.3")),
        )];
        let stale = coverage(Some("2026-02-01"));
        let stale_cves = Coverages {
            releases: &COVERED,
            cves: &stale,
        };
        // Not affected by anything known, but the CVE data ends too early.
        let r = check_cve_recency(v("v1.33.3"), date("2026-04-01"), &data, &fixed, &stale_cves);
        assert_eq!(r.status, Status::Abort);
        assert!(
            r.message.starts_with(
                "v1.33.3 cannot be judged: a critical CVE whose fix was published by \
                 2026-03-17 (more than 14 days before the reference date 2026-04-01) would fail \
                 it, but the test data ends on 2026-02-01"
            ),
            "{}",
            r.message
        );
        // A FAIL on known data still decides.
        let r = check_cve_recency(v("v1.33.2"), date("2026-04-01"), &data, &fixed, &stale_cves);
        assert_eq!(r.status, Status::Fail, "{}", r.message);
        // Records that could not be fetched: nothing is ruled out.
        let mut gaps = covered();
        gaps.gaps = Some("1 of 3 records could not be fetched: CVE-2099-1011".into());
        let r = check_cve_recency(
            v("v1.33.3"),
            date("2026-04-01"),
            &data,
            &fixed,
            &Coverages {
                releases: &COVERED,
                cves: &gaps,
            },
        );
        assert_eq!(r.status, Status::Abort);
        assert!(
            r.message.contains(
                "the test data is incomplete (1 of 3 records could not be fetched: CVE-2099-1011)"
            ),
            "{}",
            r.message
        );
        // No fix known and release data too old to rule one out: undecided, not a warning.
        let unfixed = [cve("CVE-2099-1012", 9.0, "v1.33.0", Upper::Unbounded)];
        let old_releases = coverage(Some("2026-03-01"));
        let r = check_cve_recency(
            v("v1.33.3"),
            date("2026-04-01"),
            &data,
            &unfixed,
            &Coverages {
                releases: &old_releases,
                cves: &COVERED,
            },
        );
        assert_eq!(r.status, Status::Abort, "{}", r.message);
        assert!(r.message.contains("no fixed patch of branch 1.33 is in the release data, but a fix published by 2026-03-17 would decide"), "{}", r.message);
    }

    #[test]
    fn a_prerelease_is_judged_before_its_release() {
        let data = releases(&[("v1.34.7", "2026-03-01"), ("v1.34.8", "2026-04-01")]);
        // v1.34.8 is out for 61 days: a cluster still on its release candidate is outdated.
        let r = check_patch_recency(v("v1.34.8-rc.0"), date("2026-06-01"), &data, &covered());
        assert_eq!(r.status, Status::Fail, "{}", r.message);
        assert!(
            r.message.starts_with(
                "v1.34.8-rc.0 is outdated: v1.34.8 was published on 2026-04-01, 61 days"
            ),
            "{}",
            r.message
        );
        let eol = standard_eol();
        let outcome = evaluate(
            "v1.34.8-rc.0",
            date("2026-06-01"),
            &loaded(eol, data, vec![]),
        );
        assert_eq!(outcome.requirements[0].status, Status::Fail);
        assert_eq!(outcome.facts["running-version"], "v1.34.8-rc.0");
    }

    #[test]
    fn several_branches_interleaved() {
        // Published in an order that interleaves branches; only 1.32 counts for v1.32.1.
        let data = releases(&[
            ("v1.33.1", "2025-05-15"),
            ("v1.32.1", "2025-01-15"),
            ("v1.33.2", "2025-06-17"),
            ("v1.32.2", "2025-06-10"),
            ("v1.31.9", "2025-01-01"),
            ("v1.32.3", "2025-06-17"),
        ]);
        let r = check_patch_recency(v("v1.32.1"), date("2025-07-20"), &data, &covered());
        assert_eq!(r.status, Status::Fail, "{}", r.message);
        assert!(
            r.message
                .contains("v1.32.2 was published on 2025-06-10, 40 days"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("newest patch is v1.32.3"),
            "{}",
            r.message
        );
        let r = check_patch_recency(v("v1.33.1"), date("2025-07-18"), &data, &covered());
        assert_eq!(r.status, Status::Pass, "{}", r.message);
    }

    #[test]
    fn cve_recency_boundaries() {
        let fixed_on = "2026-03-10";
        let data = releases(&[
            ("v1.33.2", "2025-06-17"),
            ("v1.33.3", fixed_on),
            ("v1.33.4", "2026-03-20"),
        ]);
        let cves = [cve(
            "CVE-2099-1000",
            8.8,
            "v1.33.0",
            Upper::Below(v("v1.33.3")),
        )];
        let cases = [
            (1, Status::Pass),
            (2, Status::Pass),
            (3, Status::Warn),
            (14, Status::Warn),
            (15, Status::Fail),
        ];
        for (days, status) in cases {
            let r = check_cve_recency(
                v("v1.33.2"),
                add_days(fixed_on, days),
                &data,
                &cves,
                &both(),
            );
            assert_eq!(r.status, status, "{days} days: {}", r.message);
            assert!(
                r.message.contains("CVE-2099-1000 (CVSS 8.8)"),
                "{}",
                r.message
            );
            assert!(
                r.message
                    .contains("the fix v1.33.3 was published on 2026-03-10"),
                "{}",
                r.message
            );
            assert!(
                r.message.contains(&format!("{days} days before")),
                "{}",
                r.message
            );
        }
    }

    #[test]
    fn cve_fix_is_the_first_unaffected_newer_patch() {
        // v1.33.3 is still affected (inclusive bound), v1.33.4 fixes it.
        let data = releases(&[
            ("v1.33.2", "2025-06-17"),
            ("v1.33.3", "2026-01-10"),
            ("v1.33.4", "2026-03-01"),
        ]);
        let cves = [cve(
            "CVE-2099-1001",
            9.1,
            "v1.33.0",
            Upper::UpTo(v("v1.33.3")),
        )];
        let r = check_cve_recency(v("v1.33.2"), date("2026-03-05"), &data, &cves, &both());
        assert_eq!(r.status, Status::Warn, "{}", r.message);
        assert!(
            r.message.contains("fix v1.33.4") && r.message.contains("4 days"),
            "{}",
            r.message
        );
    }

    #[test]
    fn cve_without_fix_or_not_critical_or_not_affected() {
        let data = releases(&[("v1.33.2", "2025-06-17"), ("v1.33.3", "2026-01-10")]);
        let no_fix = [cve("CVE-2099-1002", 8.0, "v1.33.0", Upper::Unbounded)];
        let r = check_cve_recency(v("v1.33.2"), date("2026-03-05"), &data, &no_fix, &both());
        assert_eq!(r.status, Status::Warn);
        assert_eq!(
            r.message,
            "v1.33.2 is affected by CVE-2099-1002 (CVSS 8.0): no fixed patch of branch 1.33 \
             was released by the reference date 2026-03-05 (newest patch v1.33.3)"
        );
        // A branch without any release data: what is known, not "no fix released yet".
        let r = check_cve_recency(
            v("v1.36.1"),
            date("2026-03-05"),
            &data,
            &[cve("CVE-2099-1009", 9.0, "v1.36.0", Upper::Unbounded)],
            &both(),
        );
        assert_eq!(r.status, Status::Abort);
        assert_eq!(
            r.message,
            "v1.36.1 is affected by CVE-2099-1009 (CVSS 9.0): the release data knows no \
             release of branch 1.36, so whether a fix has been out for more than 14 days is \
             unknown"
        );

        let low = [cve(
            "CVE-2099-1003",
            7.9,
            "v1.33.0",
            Upper::Below(v("v1.33.3")),
        )];
        let r = check_cve_recency(v("v1.33.2"), date("2026-03-05"), &data, &low, &both());
        assert_eq!(r.status, Status::Pass);
        assert!(
            r.message.contains("any of the 0 critical CVEs"),
            "{}",
            r.message
        );

        let other = [cve(
            "CVE-2099-1004",
            9.8,
            "v1.32.0",
            Upper::Below(v("v1.32.5")),
        )];
        let r = check_cve_recency(v("v1.33.2"), date("2026-03-05"), &data, &other, &both());
        assert_eq!(r.status, Status::Pass);
        assert!(
            r.message
                .contains("not affected by any of the 1 critical CVEs"),
            "{}",
            r.message
        );
    }

    #[test]
    fn worst_cve_decides_and_all_are_detailed() {
        let data = releases(&[
            ("v1.33.2", "2025-06-17"),
            ("v1.33.3", "2026-01-10"),
            ("v1.33.4", "2026-03-04"),
        ]);
        let cves = [
            cve("CVE-2099-1005", 8.1, "v1.33.0", Upper::Below(v("v1.33.4"))),
            cve("CVE-2099-1006", 8.8, "v1.33.0", Upper::Below(v("v1.33.3"))),
        ];
        let r = check_cve_recency(v("v1.33.2"), date("2026-03-05"), &data, &cves, &both());
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.message.contains("CVE-2099-1006") && !r.message.contains("CVE-2099-1005"),
            "{}",
            r.message
        );
        assert_eq!(r.details.len(), 2);
    }

    fn loaded(eol: EolData, releases: ReleaseData, cves: Vec<Cve>) -> LoadedData {
        LoadedData {
            eol: Ok(eol),
            releases: Ok(releases),
            cves: Ok(cves),
            release_coverage: covered(),
            cve_coverage: covered(),
            warnings: vec!["a data warning".into()],
            sources: vec!["test data".into()],
        }
    }

    #[test]
    fn unparseable_version_aborts_everything() {
        let data = loaded(standard_eol(), releases(&[]), vec![]);
        let outcome = evaluate("foo", date("2026-04-18"), &data);
        assert_eq!(outcome.requirements.len(), 3);
        for r in &outcome.requirements {
            assert_eq!(r.status, Status::Abort);
            assert_eq!(r.message, r#"cannot parse Kubernetes version "foo""#);
        }
        let ids: Vec<&str> = outcome.requirements.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, [SUPPORTED_BRANCH, PATCH_RECENCY, CVE_RECENCY]);
    }

    #[test]
    fn stale_eol_data_warns_then_aborts() {
        let data = releases(&[("v1.34.1", "2025-09-09")]);
        // At 2026-11-01 only 1.35 (and 1.36 below) are supported.
        let two = loaded(
            eol_data(&[(34, "2026-10-27"), (35, "2027-02-28"), (36, "2027-06-28")]),
            data.clone(),
            vec![],
        );
        let outcome = evaluate("v1.35.0", date("2026-11-01"), &two);
        assert!(
            outcome.warnings.contains(
                &"the EOL data knows only 2 supported branches at 2026-11-01; it may be stale"
                    .to_string()
            )
        );
        assert_eq!(outcome.requirements.len(), 3);
        assert_eq!(outcome.requirements[0].status, Status::Pass);

        let one = loaded(
            eol_data(&[(34, "2026-10-27"), (35, "2027-02-28")]),
            data,
            vec![],
        );
        let outcome = evaluate("v1.35.0", date("2026-11-01"), &one);
        assert_eq!(outcome.requirements.len(), 3);
        for r in &outcome.requirements {
            assert_eq!(r.status, Status::Abort);
            assert_eq!(
                r.message,
                "the EOL data knows only 1 supported branches at 2026-11-01; it may be stale"
            );
        }
    }

    #[test]
    fn missing_data_aborts_the_requirements_that_need_it() {
        let mut data = loaded(
            standard_eol(),
            releases(&[("v1.33.2", "2025-06-17")]),
            vec![],
        );
        data.cves = Err("cannot read x.json".into());
        let outcome = evaluate("v1.33.2", date("2026-04-18"), &data);
        let statuses: Vec<Status> = outcome.requirements.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Pass, Status::Pass, Status::Abort]);
        assert!(
            outcome.requirements[2]
                .message
                .contains("cannot read x.json")
        );

        data.releases = Err("GET https://example/: timeout".into());
        let outcome = evaluate("v1.33.2", date("2026-04-18"), &data);
        let statuses: Vec<Status> = outcome.requirements.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Pass, Status::Abort, Status::Abort]);
        assert!(
            outcome.requirements[1]
                .message
                .contains("no release data: GET")
        );
    }

    #[test]
    fn evaluate_reports_facts_and_warnings() {
        let data = loaded(
            standard_eol(),
            releases(&[("v1.33.2", "2025-06-17"), ("v1.33.3", "2025-07-15")]),
            vec![],
        );
        let outcome = evaluate("v1.33.2-gke.100", date("2026-04-18"), &data);
        assert_eq!(outcome.facts["running-version"], "v1.33.2");
        assert_eq!(outcome.facts["branch"], "1.33");
        assert_eq!(outcome.facts["end-of-life"], "2026-06-28");
        assert_eq!(outcome.facts["newest-patch"], "v1.33.3");
        assert_eq!(outcome.facts["data-sources"][0], "test data");
        assert_eq!(outcome.warnings, ["a data warning"]);
        assert_eq!(outcome.requirements[1].status, Status::Fail);
    }

    #[test]
    fn bundled_data_end_to_end() {
        let (releases, _) = ReleaseData::bundled().unwrap();
        let (cves, _) = bundled_cves().unwrap();
        let data = loaded(EolData::bundled().unwrap(), releases, cves);
        let outcome = evaluate("v1.33.11", date("2026-04-18"), &data);
        let statuses: Vec<Status> = outcome.requirements.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [Status::Pass, Status::Pass, Status::Pass],
            "{:#?}",
            outcome.requirements
        );
        // v1.30.2 is affected by CVE-2024-10220 (8.1), fixed by v1.30.3 on 2024-07-16.
        let outcome = evaluate("v1.30.2", date("2024-08-01"), &data);
        let cve = &outcome.requirements[2];
        assert_eq!(cve.status, Status::Fail, "{}", cve.message);
        assert!(
            cve.message.contains(
                "CVE-2024-10220 (CVSS 8.1): the fix v1.30.3 was published on 2024-07-16, 16 days"
            ),
            "{}",
            cve.message
        );
    }

    #[test]
    fn offering() {
        let eol = standard_eol();
        let data = releases(&[
            ("v1.33.0", "2025-04-23"),
            ("v1.34.0", "2025-08-27"),
            ("v1.35.0", "2025-12-17"),
            ("v1.36.0", "2026-04-22"),
        ]);
        // 2026-04-18: supported 1.33, 1.34, 1.35 (1.36 not released yet); 1.35 due 2026-04-17.
        let reference = date("2026-04-18");
        let compliant = [v("v1.33.5"), v("v1.34.2"), v("v1.35.1")];
        let r = evaluate_offering(&compliant, reference, &eol, &data);
        assert_eq!(r.status, Status::Pass, "{}", r.message);

        let missing = [v("v1.34.2"), v("v1.35.1")];
        let r = evaluate_offering(&missing, reference, &eol, &data);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.message,
            "supported branches not offered by any cluster: 1.33"
        );

        let late = [v("v1.33.5"), v("v1.34.2")];
        let r = evaluate_offering(&late, reference, &eol, &data);
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.message
                .contains("newest minor 1.35 (released 2025-12-17) is not offered")
                && r.message.contains("due by 2026-04-17"),
            "{}",
            r.message
        );

        // On the due day itself it is not late yet.
        let r = evaluate_offering(&late, date("2026-04-17"), &eol, &data);
        assert_eq!(r.status, Status::Pass, "{}", r.message);
        assert!(
            r.message
                .contains("1.35 (released 2025-12-17) is due by 2026-04-17"),
            "{}",
            r.message
        );

        // After 1.36.0 the newest minor is within its grace period; 1.33 is still required.
        let r = evaluate_offering(&compliant, date("2026-05-01"), &eol, &data);
        assert_eq!(r.status, Status::Pass, "{}", r.message);

        assert_eq!(
            evaluate_offering(&[], reference, &eol, &data).status,
            Status::Abort
        );
        assert_eq!(offering_not_applicable().status, Status::NotApplicable);
    }
}
