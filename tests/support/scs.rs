//! How SCS's compliance runner and compliance monitor read a script's output, written from
//! the description in `STANDARDS.md` ("How SCS's runner reads a script"), not from SCS's
//! code: the verdict lines it takes from stdout, the lines it counts as errors, its exit
//! code, and the lines the monitor's public view keeps.

#![allow(dead_code)]

use std::collections::BTreeMap;

/// What the runner makes of one invocation of a script.
#[derive(Debug)]
pub struct RunnerView {
    /// Testcase id -> PASS/FAIL/ABORT, for the ids the runner selected.
    pub results: BTreeMap<String, String>,
    /// Lines on stdout or stderr beginning (case-insensitively) with `error`.
    pub errors: usize,
    /// Lines on stdout or stderr beginning (case-insensitively) with `critical`.
    pub criticals: usize,
    /// The runner's exit code: errors and criticals plus FAILs, capped.
    pub exit_code: usize,
    /// The compliance monitor's public view: verdict lines, then the stderr lines beginning
    /// with `WARNIN` or `ERROR:`.
    pub monitor: Vec<String>,
}

/// Reads `stdout` and `stderr` of a script as the runner does, for the `selected` ids.
pub fn read(stdout: &str, stderr: &str, selected: &[&str]) -> RunnerView {
    let mut results = BTreeMap::new();
    let mut verdict_lines = Vec::new();
    for line in stdout.lines() {
        // Split at the last colon; the verdict is case-insensitive.
        let Some((id, verdict)) = line.rsplit_once(':') else {
            continue;
        };
        let verdict = verdict.trim().to_uppercase();
        if !["PASS", "FAIL", "ABORT"].contains(&verdict.as_str()) {
            continue;
        }
        let id = id.trim();
        if !selected.contains(&id) {
            continue; // ids it did not select for this script are ignored
        }
        results.insert(id.to_string(), verdict);
        verdict_lines.push(line.to_string());
    }
    let counted = |word: &str| {
        stdout
            .lines()
            .chain(stderr.lines())
            .filter(|l| l.to_lowercase().starts_with(word))
            .count()
    };
    let (errors, criticals) = (counted("error"), counted("critical"));
    let fails = results.values().filter(|v| *v == "FAIL").count();
    let monitor = verdict_lines
        .into_iter()
        .chain(
            stderr
                .lines()
                .filter(|l| l.starts_with("WARNIN") || l.starts_with("ERROR:"))
                .map(str::to_string),
        )
        .collect();
    RunnerView {
        results,
        errors,
        criticals,
        exit_code: (errors + criticals + fails).min(127),
        monitor,
    }
}
