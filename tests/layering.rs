//! The crate's layers import only downwards (see `src/lib.rs`): this test reads the sources
//! and fails when a module names a layer above it, or when clap appears outside the CLI.

use std::path::{Path, PathBuf};

/// `(files under this path, module paths they must not name)`.
const RULES: &[(&str, &[&str])] = &[
    (
        "src/checks",
        &[
            "crate::cli",
            "crate::runner",
            "crate::app",
            "crate::incluster",
            "crate::settings",
        ],
    ),
    (
        "src/report",
        &[
            "crate::cli",
            "crate::runner",
            "crate::app",
            "crate::incluster",
            "crate::settings",
            "crate::checks",
        ],
    ),
    ("src/outcome.rs", &["crate::"]),
    ("src/catalogue.rs", &["crate::"]),
    (
        "src/cluster",
        &[
            "crate::cli",
            "crate::runner",
            "crate::app",
            "crate::incluster",
            "crate::settings",
            "crate::checks",
            "crate::report",
            "crate::catalogue",
            "crate::outcome",
        ],
    ),
    ("src/console.rs", &["crate::"]),
    (
        "src/signals.rs",
        &[
            "crate::cli",
            "crate::runner",
            "crate::app",
            "crate::incluster",
            "crate::checks",
            "crate::cluster",
        ],
    ),
    (
        "src/settings.rs",
        &[
            "crate::cli",
            "crate::runner",
            "crate::app",
            "crate::incluster",
        ],
    ),
    (
        "src/incluster",
        &["crate::cli", "crate::runner", "crate::app"],
    ),
    ("src/runner.rs", &["crate::cli", "crate::app"]),
];

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            files.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            files.push(p);
        }
    }
    files
}

/// The file's code lines (comments dropped), with their line numbers.
fn code(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("").to_string()))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect()
}

#[test]
fn lower_layers_do_not_import_higher_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offences = Vec::new();
    for (path, forbidden) in RULES {
        let files = rust_files(&root.join(path));
        assert!(!files.is_empty(), "no sources under {path}");
        for file in files {
            for (n, line) in code(&file) {
                for f in *forbidden {
                    if line.contains(f) {
                        offences.push(format!(
                            "{}:{n}: names {f}: {}",
                            file.display(),
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "layering broken:\n{}",
        offences.join("\n")
    );
}

#[test]
fn only_the_cli_knows_clap() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offences = Vec::new();
    for file in rust_files(&root.join("src")) {
        let rel = file.strip_prefix(root).unwrap().to_path_buf();
        if rel.starts_with("src/cli") || rel == Path::new("src/main.rs") {
            continue;
        }
        for (n, line) in code(&file) {
            if line.contains("clap") {
                offences.push(format!("{}:{n}: {}", rel.display(), line.trim()));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "clap outside src/cli:\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_rules_catch_an_offence() {
    // A rule that matches nothing would pass forever: make sure the matcher sees imports.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.rs");
    std::fs::write(
        &file,
        "//! mentions crate::cli in a comment\nuse crate::cli::RunArgs;\n",
    )
    .unwrap();
    let lines = code(&file);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].1.contains("crate::cli"));
}
