//! `report.yaml`: the run's facts and every requirement's result, for people and scripts.

use super::{RunMeta, RunReport, TargetResult, requirement_name};
use crate::outcome::{Status, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct Document<'a> {
    run: &'a RunMeta,
    summary: String,
    /// Per target; `main` (the certificate) first.
    targets: Vec<TargetResult>,
    testcases: Vec<TestcaseDoc<'a>>,
}

#[derive(Serialize)]
struct TestcaseDoc<'a> {
    id: &'a str,
    module: &'a str,
    target: &'a str,
    /// In target `main`: part of the certificate.
    certificate: bool,
    /// Decides the exit code.
    counted: bool,
    level: &'static str,
    verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    duration_seconds: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    requirements: Vec<RequirementDoc<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    facts: &'a BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize)]
struct RequirementDoc<'a> {
    name: String,
    status: Status,
    /// Differs from `status` where the run's policy re-counts it (`--strict`, or a
    /// failure of a non-mandatory testcase counted as a warning).
    #[serde(skip_serializing_if = "Option::is_none")]
    counted_as: Option<Status>,
    message: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    details: &'a [String],
}

pub fn render(report: &RunReport) -> String {
    let doc = Document {
        run: &report.meta,
        summary: report.summary(),
        targets: report.targets(),
        testcases: report
            .results
            .iter()
            .map(|r| {
                let p = r.policy;
                TestcaseDoc {
                    id: &r.testcase.id,
                    module: &r.testcase.module,
                    target: &r.testcase.target,
                    certificate: r.testcase.certificate(),
                    counted: r.counted,
                    level: p.level().as_str(),
                    verdict: r.verdict,
                    reason: (r.verdict == Verdict::NotImplemented).then(|| r.log.join(" ")),
                    duration_seconds: (r.duration.as_secs_f64() * 1000.0).round() / 1000.0,
                    requirements: r
                        .outcome
                        .requirements
                        .iter()
                        .map(|q| {
                            let effective = p.effective(q.status);
                            RequirementDoc {
                                name: requirement_name(&r.testcase.id, &q.id),
                                status: q.status,
                                counted_as: (effective != q.status).then_some(effective),
                                message: &q.message,
                                details: &q.details,
                            }
                        })
                        .collect(),
                    warnings: &r.outcome.warnings,
                    facts: &r.outcome.facts,
                }
            })
            .collect(),
    };
    let text = serde_saphyr::to_string(&doc)
        .unwrap_or_else(|e| format!("# report could not be rendered: {e}\n"));
    crate::console::redact(&text)
}
