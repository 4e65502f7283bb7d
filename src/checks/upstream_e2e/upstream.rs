//! What the upstream conformance image hands back: its `junit_01.xml` (read here, merged
//! into our junit.xml), its progress on stdout (ginkgo), and the ok-to-fail list that
//! turns known failures into accepted ones.

use quick_xml::Reader;
use quick_xml::events::Event;
use regex::Regex;
use serde::Deserialize;

/// The built-in ok-to-fail list.
pub const BUILTIN_OK_TO_FAIL: &str = include_str!("../../../standards/e2e-ok-to-fail.yaml");

pub use crate::outcome::{UpstreamCase as Case, UpstreamState as CaseState};

/// The testcases of a JUnit file. `Err` is a one-line reason.
pub fn parse_junit(xml: &str) -> Result<Vec<Case>, String> {
    let mut reader = Reader::from_str(xml);
    let mut cases = Vec::new();
    let mut current: Option<Case> = None;
    let mut in_failure = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed JUnit at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let attr = |key: &str| -> String {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == key.as_bytes())
                        .and_then(|a| {
                            a.decoded_and_normalized_value(
                                quick_xml::XmlVersion::Implicit1_0,
                                reader.decoder(),
                            )
                            .ok()
                        })
                        .map(|v| v.into_owned())
                        .unwrap_or_default()
                };
                match e.name().as_ref() {
                    b"testcase" => {
                        if let Some(c) = current.take() {
                            cases.push(c);
                        }
                        current = Some(Case {
                            name: attr("name"),
                            classname: attr("classname"),
                            time: attr("time").parse().unwrap_or(0.0),
                            state: CaseState::Passed,
                            message: String::new(),
                            text: String::new(),
                            accepted: None,
                        });
                    }
                    b"failure" | b"error" => {
                        if let Some(c) = current.as_mut() {
                            c.state = CaseState::Failed;
                            c.message = attr("message");
                            in_failure = true;
                        }
                    }
                    b"skipped" => {
                        if let Some(c) = current.as_mut() {
                            c.state = CaseState::Skipped;
                            c.message = attr("message");
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) if in_failure => {
                if let (Some(c), Ok(text)) = (current.as_mut(), t.decode()) {
                    c.text.push_str(&text);
                }
            }
            Event::CData(t) if in_failure => {
                if let Some(c) = current.as_mut() {
                    c.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) if in_failure => {
                if let (Some(c), Ok(name)) = (current.as_mut(), r.decode()) {
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => c.text.push_str(s),
                        None => {
                            if let Ok(Some(ch)) = r.resolve_char_ref() {
                                c.text.push(ch);
                            }
                        }
                    }
                }
            }
            Event::End(e) => match e.name().as_ref() {
                b"failure" | b"error" => in_failure = false,
                b"testcase" => {
                    if let Some(c) = current.take() {
                        cases.push(c);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    if let Some(c) = current.take() {
        cases.push(c);
    }
    Ok(cases)
}

/// One entry of the ok-to-fail list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    regex: String,
    reason: String,
}

#[derive(Debug, Clone)]
pub struct OkToFail {
    entries: Vec<(Regex, String)>,
}

impl OkToFail {
    /// Parses the list (a YAML sequence of `regex` + `reason`, both required, nothing
    /// else). `Err` is a one-line reason naming `file`.
    pub fn parse(text: &str, file: &str) -> Result<OkToFail, String> {
        let raw: Vec<EntryFile> = serde_saphyr::from_str(text)
            .map_err(|e| format!("ok-to-fail list {file}: {}", one_line(&e.to_string())))?;
        let mut entries = Vec::new();
        for (i, e) in raw.into_iter().enumerate() {
            if e.reason.trim().is_empty() {
                return Err(format!(
                    "ok-to-fail list {file}: entry {} has an empty reason",
                    i + 1
                ));
            }
            let re = Regex::new(&e.regex).map_err(|err| {
                format!(
                    "ok-to-fail list {file}: entry {}: bad regex: {}",
                    i + 1,
                    one_line(&err.to_string())
                )
            })?;
            entries.push((re, e.reason));
        }
        Ok(OkToFail { entries })
    }

    /// The reason a failure of test `name` is accepted, if it is.
    pub fn reason(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(re, _)| re.is_match(name))
            .map(|(_, r)| r.as_str())
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Progress as read from the conformance container's output (ginkgo v2).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// `Will run N of M specs`.
    pub total: Option<u64>,
    /// Specs reported done (`•` lines).
    pub done: u64,
    /// Names of the specs reported failed so far.
    pub failed: Vec<String>,
}

impl Progress {
    /// Reads one output line; true if it changed the progress.
    pub fn line(&mut self, line: &str) -> bool {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Will run ") {
            self.total = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            return self.total.is_some();
        }
        if let Some(rest) = t.strip_prefix('•') {
            self.done += 1;
            let rest = rest.trim_start();
            if let Some(name) = rest
                .strip_prefix("[FAILED]")
                .or_else(|| rest.strip_prefix("[PANICKED]"))
                .or_else(|| rest.strip_prefix("[TIMEDOUT]"))
            {
                // `[FAILED] [12.3 seconds] <name, if on this line>`
                let name = name.trim_start();
                let name = match name.strip_prefix('[') {
                    Some(r) if r.contains(" seconds]") => {
                        r.split_once(" seconds]").map(|(_, n)| n).unwrap_or(r)
                    }
                    _ => name,
                };
                self.failed
                    .push(name.trim().trim_end_matches("[It]").trim().to_string());
            }
            return true;
        }
        false
    }

    pub fn summary(&self) -> String {
        let total = self
            .total
            .map(|t| t.to_string())
            .unwrap_or_else(|| "?".into());
        format!(
            "{}/{} specs done, {} failed so far",
            self.done,
            total,
            self.failed.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ginkgo_junit() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3" disabled="0" errors="0" failures="1" time="1.5">
  <testsuite name="Kubernetes e2e suite" package="/" tests="3" failures="1" skipped="1">
    <properties><property name="SuiteSucceeded" value="false"></property></properties>
    <testcase name="[It] a passes" classname="Kubernetes e2e suite" status="passed" time="0.5"></testcase>
    <testcase name="[It] b &amp; fails" classname="Kubernetes e2e suite" status="failed" time="1">
      <failure message="boom &lt;x&gt;" type="failed">line 1 &amp; more</failure>
    </testcase>
    <testcase name="[It] c skipped" classname="Kubernetes e2e suite" status="skipped" time="0"><skipped message="skipped"></skipped></testcase>
  </testsuite>
</testsuites>"#;
        let cases = parse_junit(xml).unwrap();
        assert_eq!(cases.len(), 3);
        assert_eq!(cases[0].state, CaseState::Passed);
        assert_eq!(cases[1].name, "[It] b & fails");
        assert_eq!(cases[1].state, CaseState::Failed);
        assert_eq!(cases[1].message, "boom <x>");
        assert_eq!(cases[1].text, "line 1 & more");
        assert_eq!(cases[2].state, CaseState::Skipped);
        assert!(parse_junit("<testsuites><testcase").is_err());
    }

    #[test]
    fn ok_to_fail_requires_both_keys() {
        assert!(OkToFail::parse("- regex: a\n", "f").is_err());
        assert!(OkToFail::parse("- reason: a\n", "f").is_err());
        assert!(OkToFail::parse("- regex: a\n  reason: b\n  extra: c\n", "f").is_err());
        assert!(OkToFail::parse("- regex: '('\n  reason: b\n", "f").is_err());
        let l = OkToFail::parse("- regex: SCTP\n  reason: no SCTP\n", "f").unwrap();
        assert_eq!(l.reason("should allow SCTP traffic"), Some("no SCTP"));
        assert_eq!(l.reason("TCP"), None);
        OkToFail::parse(BUILTIN_OK_TO_FAIL, "builtin").unwrap();
    }

    #[test]
    fn progress_from_ginkgo_lines() {
        let mut p = Progress::default();
        assert!(p.line("Will run 3 of 7000 specs"));
        assert!(p.line("• [0.5 seconds]"));
        assert!(p.line("• [FAILED] [12.0 seconds] [sig-network] NetworkPolicy should x [It]"));
        assert!(!p.line("STEP: creating"));
        assert_eq!(p.total, Some(3));
        assert_eq!(p.done, 2);
        assert_eq!(p.failed, vec!["[sig-network] NetworkPolicy should x"]);
        assert_eq!(p.summary(), "2/3 specs done, 1 failed so far");
    }
}
