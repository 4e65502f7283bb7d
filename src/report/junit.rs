//! JUnit XML: one `<testsuite>` per module (SCS's term; usually a standard version) and
//! target, one `<testcase>` per requirement (`version-policy-check/patch-recency`). Suites
//! beside the certificate are named `<module> [<target>: not part of the certificate]`.
//! FAIL is `<failure>`, ABORT `<error>`, not applicable, not attempted and not implemented
//! `<skipped>` (types `NOT-APPLICABLE`, `NOT-ATTEMPTED`, `NOT-IMPLEMENTED`), warnings are
//! `WARNING` lines and accepted failures `ACCEPTED` lines in `<system-out>`. Validates
//! against the Jenkins xUnit `junit-10.xsd`. Testcases of an upstream suite a check ran
//! (the e2e image's `junit_01.xml`) follow in a testsuite of their own per testcase.
//!
//! Strings from the cluster are data: the last pass over the document ([`finish`]) writes
//! every attribute value and every text through [`sanitize`], so only characters XML 1.0
//! allows remain (the others become visible escapes such as `\u{1b}`), and every `time`
//! with three decimals. A failure message holds at most [`MESSAGE_LIMIT`] characters and
//! a `system-out` at most [`OUTPUT_LIMIT`]; a cut says where the whole text is.

use super::{RunReport, TestcaseResult, bounded, requirement_name, sanitize};
use crate::outcome::{Status, UpstreamState, Verdict};
use junit_report::{Report, TestCase, TestSuite};
use quick_xml::events::{BytesCData, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

/// Most characters of a `message` attribute (JUnit readers show it as one line).
pub const MESSAGE_LIMIT: usize = 4096;
/// Most characters of one `<system-out>`.
pub const OUTPUT_LIMIT: usize = 65536;

/// Where the whole text of `testcase`'s messages and output is.
fn whole_text(testcase: &str) -> String {
    format!("report.yaml and logs/{testcase}.log")
}

pub fn render(report: &RunReport) -> String {
    let mut suites: Vec<(String, Vec<&TestcaseResult>)> = Vec::new();
    for result in &report.results {
        let name = suite_name(result);
        match suites.iter_mut().find(|(s, _)| *s == name) {
            Some((_, results)) => results.push(result),
            None => suites.push((name, vec![result])),
        }
    }
    let mut junit = Report::new();
    let mut skipped_counts = Vec::new();
    for (name, results) in &suites {
        let mut suite = TestSuite::new(name);
        suite.set_timestamp(to_time(report.meta.started));
        let mut out = Vec::new();
        for result in results {
            let cases = testcases(result);
            suite.add_testcases(cases);
            out.extend(
                result
                    .outcome
                    .warnings
                    .iter()
                    .map(|w| format!("WARNING [{}] {w}", result.testcase.id)),
            );
        }
        if !out.is_empty() {
            suite.set_system_out(&bounded(
                &sanitize(&out.join("\n")),
                OUTPUT_LIMIT,
                "report.yaml",
            ));
        }
        skipped_counts.push(suite.skipped());
        junit.add_testsuite(suite);
    }
    // Upstream suites a check ran follow, one testsuite each, their testcases as they came.
    for result in report
        .results
        .iter()
        .filter(|r| !r.outcome.upstream.is_empty())
    {
        let suite = upstream_suite(result);
        skipped_counts.push(suite.skipped());
        junit.add_testsuite(suite);
    }
    let mut xml = Vec::new();
    if junit.write_xml(&mut xml).is_err() {
        // Writing into memory cannot fail short of allocation failure.
        return String::new();
    }
    finish(&xml, &properties(report), &skipped_counts)
        .unwrap_or_else(|| String::from_utf8_lossy(&xml).into_owned())
}

/// The testsuite of a testcase: its module, marked when beside the certificate.
pub fn suite_name(result: &TestcaseResult) -> String {
    let tc = &result.testcase;
    if tc.certificate() {
        tc.module.clone()
    } else {
        format!("{} [{}: not part of the certificate]", tc.module, tc.target)
    }
}

fn testcases(result: &TestcaseResult) -> Vec<TestCase> {
    let tc = &result.testcase;
    let time = junit_report::Duration::seconds_f64(result.duration.as_secs_f64());
    if result.verdict == Verdict::NotImplemented {
        let reason = sanitize(&result.log.join(" "));
        let mut case = TestCase::skipped_with_cause(&tc.id, "NOT-IMPLEMENTED", &reason);
        case.set_classname(&tc.id);
        return vec![case];
    }
    if result.verdict == Verdict::Skipped && result.outcome.requirements.is_empty() {
        let mut case = TestCase::skipped(&tc.id);
        case.set_classname(&tc.id);
        return vec![case];
    }
    let p = result.policy;
    // The testcase's time is spread evenly; requirements are decided together.
    let share = time / result.outcome.requirements.len().max(1) as f64;
    result
        .outcome
        .requirements
        .iter()
        .map(|req| {
            let name = requirement_name(&tc.id, &req.id);
            let whole = whole_text(&tc.id);
            let message = bounded(&sanitize(&req.message), MESSAGE_LIMIT, &whole);
            let details = sanitize(&req.details.join("\n"));
            let effective = p.effective(req.status);
            let mut case = match effective {
                Status::Fail => TestCase::failure(&name, share, "FAIL", &message),
                Status::Abort => TestCase::error(&name, share, "ABORT", &message),
                Status::NotApplicable => {
                    TestCase::skipped_with_cause(&name, "NOT-APPLICABLE", &message)
                }
                Status::NotAttempted => {
                    TestCase::skipped_with_cause(&name, "NOT-ATTEMPTED", &message)
                }
                Status::Pass | Status::Warn | Status::Info | Status::Accepted => {
                    TestCase::success(&name, share)
                }
            };
            case.set_classname(&tc.id);
            let mut out = Vec::new();
            match effective {
                Status::Warn => out.push(format!("WARNING {message}")),
                Status::Info => out.push(format!("INFO {message}")),
                Status::Accepted => out.push(format!("ACCEPTED {message}")),
                Status::Pass => out.push(message.clone()),
                _ => {}
            }
            if req.status != effective {
                out.push(format!(
                    "(reported as {:?}, counted as {effective:?} under this run's policy)",
                    req.status
                ));
            }
            if !details.is_empty() {
                out.push(details);
            }
            if !out.is_empty() {
                case.set_system_out(&bounded(&out.join("\n"), OUTPUT_LIMIT, &whole));
            }
            case
        })
        .collect()
}

/// The name of the testsuite holding the upstream testcases of `testcase`.
pub fn upstream_suite_name(testcase: &str) -> String {
    format!("{testcase}: upstream e2e (junit_01.xml)")
}

/// The upstream testcases of one result. An accepted failure stays a `<failure>` (type
/// `ACCEPTED`, with the ok-to-fail reason) so nothing is hidden from JUnit readers.
fn upstream_suite(result: &TestcaseResult) -> TestSuite {
    let mut suite = TestSuite::new(&upstream_suite_name(&result.testcase.id));
    let whole = format!("{}/e2e.log", result.testcase.id);
    for c in &result.outcome.upstream {
        let name = sanitize(&c.name);
        let time = junit_report::Duration::seconds_f64(c.time);
        let message = bounded(&sanitize(&c.message), MESSAGE_LIMIT, &whole);
        let mut case = match (c.state, &c.accepted) {
            (UpstreamState::Passed, _) => TestCase::success(&name, time),
            (UpstreamState::Skipped, _) => TestCase::skipped_with_cause(&name, "skipped", &message),
            (UpstreamState::Failed, None) => TestCase::failure(&name, time, "FAIL", &message),
            (UpstreamState::Failed, Some(reason)) => TestCase::failure(
                &name,
                time,
                "ACCEPTED",
                &bounded(
                    &sanitize(&format!(
                        "accepted by the ok-to-fail list ({reason}): {}",
                        c.message
                    )),
                    MESSAGE_LIMIT,
                    &whole,
                ),
            ),
        };
        case.set_classname(&sanitize(&c.classname));
        if !c.text.is_empty() {
            case.set_system_out(&bounded(&sanitize(&c.text), OUTPUT_LIMIT, &whole));
        }
        suite.add_testcase(case);
    }
    suite
}

fn properties(report: &RunReport) -> Vec<(&'static str, String)> {
    let m = &report.meta;
    let mut props = vec![
        ("tool-version", format!("scs-kaas-check {}", m.tool_version)),
        ("run-id", m.run_id.clone()),
        (
            "scope",
            format!("{} {}", m.catalogue, m.scope_version)
                .trim_end()
                .to_string(),
        ),
        ("reference-date", m.reference_date.to_string()),
        ("strict", m.strict.to_string()),
    ];
    if let Some(v) = m.scope_validity {
        props.push(("scope-validity", v.as_str().to_string()));
    }
    if let Some(mode) = &m.execution_mode {
        props.push(("execution-mode", mode.clone()));
    }
    for target in report.targets() {
        props.push(("target", target.line()));
    }
    if let Some(host) = &m.api_server {
        props.push(("api-server", host.clone()));
    }
    if let Some(v) = &m.server_version {
        props.push(("server-version", v.clone()));
    }
    if let Some(c) = &m.context {
        props.push(("context", c.clone()));
    }
    if let Some(a) = &m.aborted {
        props.push(("aborted", a.clone()));
    }
    props
}

/// The last pass over junit-report's document: adds `<properties>` and the `skipped` count
/// to each `<testsuite>` (junit-report writes neither), writes every attribute value and
/// text through [`sanitize`] and every `time` with at most three decimals.
fn finish(xml: &[u8], props: &[(&'static str, String)], skipped: &[usize]) -> Option<String> {
    let mut reader = Reader::from_reader(xml);
    let mut writer = Writer::new(Vec::new());
    let mut buf = Vec::new();
    let mut suite_index = 0;
    loop {
        let event = reader.read_event_into(&mut buf).ok()?;
        match event {
            Event::Eof => break,
            Event::Start(start) if start.name().as_ref() == b"testsuite" => {
                let start = with_skipped(&clean_start(&start)?, skipped.get(suite_index).copied());
                suite_index += 1;
                writer.write_event(Event::Start(start)).ok()?;
                write_properties(&mut writer, props)?;
            }
            Event::Empty(start) if start.name().as_ref() == b"testsuite" => {
                let start = with_skipped(&clean_start(&start)?, skipped.get(suite_index).copied());
                suite_index += 1;
                let end = start.to_end().into_owned();
                writer.write_event(Event::Start(start)).ok()?;
                write_properties(&mut writer, props)?;
                writer.write_event(Event::End(end)).ok()?;
            }
            Event::Start(start) => writer
                .write_event(Event::Start(clean_start(&start)?))
                .ok()?,
            Event::Empty(start) => writer
                .write_event(Event::Empty(clean_start(&start)?))
                .ok()?,
            Event::Text(text) => {
                let raw = String::from_utf8_lossy(&text).into_owned();
                let value = quick_xml::escape::unescape(&raw).ok()?;
                writer
                    .write_event(Event::Text(BytesText::new(&sanitize(&value))))
                    .ok()?
            }
            Event::CData(data) => {
                let value = String::from_utf8_lossy(&data).into_owned();
                writer
                    .write_event(Event::CData(BytesCData::new(sanitize(&value))))
                    .ok()?
            }
            other => writer.write_event(other).ok()?,
        }
        buf.clear();
    }
    String::from_utf8(writer.into_inner()).ok()
}

/// `start` with every attribute value sanitized and `time` rounded to milliseconds.
fn clean_start(start: &BytesStart<'_>) -> Option<BytesStart<'static>> {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut clean = BytesStart::new(name);
    for attribute in start.attributes() {
        let attribute = attribute.ok()?;
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::Explicit1_0)
            .ok()?;
        let value = match key.as_str() {
            "time" => format!("{:.3}", value.parse::<f64>().unwrap_or(0.0).max(0.0)),
            _ => sanitize(&value),
        };
        clean.push_attribute((key.as_str(), value.as_str()));
    }
    Some(clean)
}

fn with_skipped(start: &BytesStart<'_>, skipped: Option<usize>) -> BytesStart<'static> {
    let mut owned = start.clone().into_owned();
    if let Some(n) = skipped {
        owned.push_attribute(("skipped", n.to_string().as_str()));
    }
    owned
}

fn write_properties(writer: &mut Writer<Vec<u8>>, props: &[(&'static str, String)]) -> Option<()> {
    writer
        .create_element("properties")
        .write_inner_content(|w| {
            for (name, value) in props {
                w.create_element("property")
                    .with_attribute(("name", *name))
                    .with_attribute(("value", sanitize(value).as_str()))
                    .write_empty()?;
            }
            Ok(())
        })
        .ok()
        .map(drop)
}

fn to_time(ts: jiff::Timestamp) -> junit_report::OffsetDateTime {
    junit_report::OffsetDateTime::from_unix_timestamp(ts.as_second())
        .unwrap_or(junit_report::OffsetDateTime::UNIX_EPOCH)
}
