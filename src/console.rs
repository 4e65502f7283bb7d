//! All terminal output: verdict lines on stdout (the SCS runner protocol), everything else
//! on stderr. Every line passes [`terminal_line`] (the redactor, then control characters
//! escaped), so credentials never reach the terminal and strings from the cluster cannot
//! move the cursor, recolour the screen or start a second line that reads like a verdict or
//! an `ERROR`.

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
    let _ = writeln!(std::io::stderr().lock(), "{}", terminal_line(line));
}

/// A warning on stderr (`WARNING ...`).
pub fn warn(line: &str) {
    note(&format!("WARNING {line}"));
}

/// An error on stderr (`ERROR ...`), counted by the SCS compliance runner.
pub fn error(line: &str) {
    note(&format!("ERROR {line}"));
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
}
