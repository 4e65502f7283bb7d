//! All terminal output: verdict lines on stdout (the SCS runner protocol), everything else
//! on stderr. Every line passes [`terminal_line`] (the redactor, then control characters
//! escaped), so credentials never reach the terminal and strings from the cluster cannot
//! move the cursor, recolour the screen or start a second line that reads like a verdict or
//! an `ERROR`.
//!
//! SCS's compliance runner counts every line beginning (case-insensitively) with `error`
//! or `critical` as an error, and its compliance monitor shows only verdict lines and
//! stderr lines beginning with `WARNIN` or `ERROR:`. So only these begin that way:
//! [`error`] (`ERROR: <testcase>/<requirement>: <message>`: a requirement failed or could
//! not be decided), [`warning`] (`WARNING: ...`: a broken recommendation) and [`critical`]
//! (`CRITICAL: ...`: the command cannot run). The tool's own problems that decide no
//! testcase are [`problem`] (`PROBLEM: ...`) and [`caution`] (`CAUTION: ...`); [`note`]
//! indents any other line that would begin with one of the counted words.

use std::io::Write;
use std::sync::{Mutex, OnceLock, RwLock};

static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
static STDOUT: Mutex<()> = Mutex::new(());

fn secrets() -> &'static RwLock<Vec<String>> {
    SECRETS.get_or_init(|| RwLock::new(Vec::new()))
}

/// Adds credential material that must never be printed or written.
pub fn register_secrets(new: impl IntoIterator<Item = String>) {
    let mut guard = secrets().write().unwrap_or_else(|e| e.into_inner());
    guard.extend(new.into_iter().filter(|s| !s.is_empty()));
    // Longest first, so a secret containing another is replaced whole.
    guard.sort_by_key(|s| std::cmp::Reverse(s.len()));
    guard.dedup();
}

/// `text` with every registered secret replaced.
pub fn redact(text: &str) -> String {
    let guard = secrets().read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for secret in guard.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "[REDACTED]");
        }
    }
    out
}

/// One verdict line on stdout, flushed at once so a runner reading the pipe sees it.
pub fn verdict(testcase: &str, verdict: &str) {
    let _lock = STDOUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}: {verdict}", terminal_line(testcase));
    let _ = out.flush();
}

/// A line for humans on stderr.
pub fn note(line: &str) {
    emit(&uncounted(&terminal_line(line)));
}

fn emit(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// `text` with every line that SCS's runner would count (beginning with `error`,
/// `critical` or `warnin`, in any case) indented, so that only the functions below make
/// such lines.
fn uncounted(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            let lower = line.to_ascii_lowercase();
            if ["error", "critical", "warnin"]
                .iter()
                .any(|w| lower.starts_with(w))
            {
                format!("  {line}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `<prefix>: <subject>: <message>` (or `<prefix>: <message>`) as one line: the message's
/// line breaks become ` / `. Not redacted.
pub fn one_line(prefix: &str, subject: &str, message: &str) -> String {
    let message: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let message = message.join(" / ");
    if subject.is_empty() {
        format!("{prefix}: {message}")
    } else {
        format!("{prefix}: {subject}: {message}")
    }
}

/// `ERROR: <subject>: <message>`: a requirement (`<testcase>/<requirement>`) failed or
/// could not be decided. Counted by SCS's runner, shown by its compliance monitor.
pub fn error(subject: &str, message: &str) {
    emit(&terminal_line(&one_line("ERROR", subject, message)));
}

/// `WARNING: <subject>: <message>`: a broken recommendation. Shown by SCS's compliance
/// monitor, not counted as an error.
pub fn warning(subject: &str, message: &str) {
    emit(&terminal_line(&one_line("WARNING", subject, message)));
}

/// `CRITICAL: <reason>`: the command cannot run (to completion). SCS's runner counts it.
pub fn critical(reason: &str) {
    emit(&terminal_line(&one_line("CRITICAL", "", reason)));
}

/// `PROBLEM: <line>`: something of the tool's own went wrong (reports or a log not written)
/// without deciding any testcase; not counted by SCS's runner. Results an in-cluster run
/// cannot hand back are [`critical`]: the run cannot complete.
pub fn problem(line: &str) {
    note(&format!("PROBLEM: {line}"));
}

/// `CAUTION: <line>`: something the user should know (a fallback, a cleanup that did not
/// finish, a signal received); not counted by SCS's runner.
pub fn caution(line: &str) {
    note(&format!("CAUTION: {line}"));
}

/// Relays one diagnostic line another run of this tool printed (an in-cluster run's
/// `ERROR:` or `WARNING:` line) as it was; other lines are ignored.
pub fn relay_diagnostic(line: &str) {
    let line = line.trim_end();
    if !line.contains('\n') && (line.starts_with("ERROR: ") || line.starts_with("WARNING: ")) {
        emit(&terminal_line(line));
    }
}

/// What every line printed to a terminal goes through: [`redact`], then [`escape_controls`]
/// with line breaks escaped too, so one call prints exactly one line.
pub fn terminal_line(line: &str) -> String {
    escape_controls(&redact(line), false)
}

/// Whether `c` must not be shown raw: C0 and C1 control characters and DEL (terminal
/// escape sequences, carriage returns, NUL), the Unicode non-characters U+FFFE and U+FFFF
/// (not allowed in XML 1.0, §2.2 `Char`), and the bidirectional formatting characters that
/// make text display in another order than it is stored (U+200E, U+200F, U+202A–U+202E,
/// U+2066–U+2069; CVE-2021-42574). Tabs are kept; line breaks only when `keep_lines`.
fn must_escape(c: char, keep_lines: bool) -> bool {
    match c {
        '\t' => false,
        '\n' => !keep_lines,
        c if c.is_control() => true,
        '\u{FFFE}' | '\u{FFFF}' => true,
        '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// `text` with every character [`must_escape`] names written as its Rust escape (`\u{1b}`,
/// `\n`, `\r`), so what was dropped stays visible and nothing raw gets through. Other text
/// is unchanged. Used for the terminal (`keep_lines == false`) and for XML text and
/// attributes (`keep_lines == true`: every character left is legal XML 1.0).
pub fn escape_controls(text: &str, keep_lines: bool) -> String {
    if !text.chars().any(|c| must_escape(c, keep_lines)) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if must_escape(c, keep_lines) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_visibly() {
        assert_eq!(
            terminal_line("red \u{1b}[31mX\u{7}\r\nERROR: fake\u{9b}2J"),
            "red \\u{1b}[31mX\\u{7}\\r\\nERROR: fake\\u{9b}2J"
        );
        assert_eq!(escape_controls("a\nb\tc\u{0}", true), "a\nb\tc\\u{0}");
        assert_eq!(
            escape_controls("\u{fffe}\u{ffff}\u{202e}abc", true),
            "\\u{fffe}\\u{ffff}\\u{202e}abc"
        );
        assert_eq!(escape_controls("plain ünïcode ✓", false), "plain ünïcode ✓");
    }

    #[test]
    fn secrets_are_replaced() {
        register_secrets(["s3cr3t-token-value".to_string()]);
        assert_eq!(
            redact("Bearer s3cr3t-token-value was rejected"),
            "Bearer [REDACTED] was rejected"
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn only_diagnostics_begin_with_counted_words() {
        assert_eq!(
            uncounted("Error from server\nok\nwarning: x\nCRITICAL y"),
            "  Error from server\nok\n  warning: x\n  CRITICAL y"
        );
        assert_eq!(
            one_line("ERROR", "tc/req", "first\n\n  error: second\n"),
            "ERROR: tc/req: first / error: second"
        );
        assert_eq!(
            one_line("CRITICAL", "", "no kubeconfig"),
            "CRITICAL: no kubeconfig"
        );
    }
}
