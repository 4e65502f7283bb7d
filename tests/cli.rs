//! The command-line contract and configuration errors (exit code 2), run as a process.

mod support;

use support::binary::*;

#[test]
fn list_prints_one_line_per_testcase() {
    let out = scs(&["list"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    let expect = [
        ("cncf-k8s-conformance", "scs-0201", "mandatory"),
        ("version-policy-check", "scs-0210-v2", "mandatory"),
        ("node-distribution-check", "scs-0214-v2", "mandatory"),
        ("node-anti-affinity-check", "scs-0213-v1", "mandatory"),
        ("default-storage-class-check", "scs-0211-v1", "mandatory"),
        ("kaas-networking-check", "scs-0219-v1", "mandatory"),
    ];
    for (line, (id, standard, level)) in lines.iter().zip(expect) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&fields[..3], [id, standard, level], "{line}");
        assert!(fields.len() > 4, "description missing: {line}");
    }
}

#[test]
fn draft_v2_lists_scs_0211_v2() {
    let out = scs(&["list", "--scope-version", "v2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("default-storage-class-check "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(line.contains(" scs-0211-v2 "), "{line}");
    assert!(!out.stdout.contains("scs-0211-v1"), "{}", out.stdout);
}

#[test]
fn draft_scope_adds_the_load_balancer_standard() {
    let out = scs(&["list", "--scope-version", "v2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{}", out.stdout);
    for (id, level) in [
        ("lb-service-check", "mandatory"),
        ("lb-ip-preservation-check", "informational"),
    ] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("{id} missing: {}", out.stdout));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&fields[..3], [id, "scs-lb-draft", level], "{line}");
    }
}

#[test]
fn list_as_json() {
    let out = scs(&["list", "--format", "json"]);
    assert_eq!(out.code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let testcases = doc["testcases"].as_array().expect("testcases");
    assert_eq!(testcases.len(), 6);
    assert_eq!(testcases[4]["id"], "default-storage-class-check");
    assert_eq!(testcases[4]["standard"], "scs-0211-v1");
    assert_eq!(testcases[0]["id"], "cncf-k8s-conformance");
    assert_eq!(testcases[0]["standard"], "scs-0201");
    assert_eq!(testcases[1]["id"], "version-policy-check");
    assert_eq!(testcases[1]["level"], "mandatory");
    assert_eq!(testcases[1]["check"], "version-policy");
    assert!(
        testcases[0]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    assert_eq!(doc["scope_version"], "v1");
}

#[test]
fn version_and_help() {
    let out = scs(&["--version"]);
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stdout.trim(),
        format!("scs-kaas-check {}", env!("CARGO_PKG_VERSION"))
    );
    let out = scs(&["run", "--help"]);
    assert_eq!(out.code, 0);
    for needle in [
        "--kubeconfig",
        "--check",
        "--reference-date",
        "Exit codes",
        "3  no FAIL",
    ] {
        assert!(
            out.stdout.contains(needle),
            "help lacks {needle}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let out = scs(&["run", "--frobnicate"]);
    assert_eq!(out.code, 2);
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("--frobnicate"), "{}", out.stderr);
}

#[test]
fn unknown_check_id_is_named() {
    let out = scs(&["run", "--check", "no-such-check"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stdout.is_empty(),
        "no verdicts for an invalid selection: {}",
        out.stdout
    );
    assert_eq!(out.errors().len(), 1, "{}", out.stderr);
    assert!(
        out.errors()[0].contains("unknown check id \"no-such-check\""),
        "{}",
        out.stderr
    );
    out.assert_clean_exit();
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[test]
fn malformed_catalogue_names_file_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let tc = "          - id: version-policy-check\n            level: mandatory\n            \
              check: version-policy\n            description: d\n";
    let head = "name: t\nversions:\n  - version: v1\n    state: effective\n    standards:\n      \
                - id: scs-0210-v2\n        name: n\n        url: u\n        testcases:\n";
    let duplicate = write(&dir, "dup.yaml", &format!("{head}{tc}{tc}"));
    let out = scs(&["list", "--catalogue", &duplicate]);
    assert_eq!(out.code, 2);
    let error = out.errors().join("\n");
    assert!(error.contains(&format!("catalogue {duplicate}")), "{error}");
    assert!(
        error.contains("testcases[1] (id version-policy-check): duplicate testcase id"),
        "{error}"
    );

    let unknown = write(
        &dir,
        "unknown.yaml",
        &format!("{head}{}", tc.replace("version-policy\n", "teleport\n")),
    );
    let out = scs(&["run", "--catalogue", &unknown]);
    assert_eq!(out.code, 2);
    assert!(
        out.errors()[0].contains("unknown check \"teleport\""),
        "{}",
        out.stderr
    );

    let broken = write(&dir, "broken.yaml", "name: [unclosed\n");
    let out = scs(&["run", "--catalogue", &broken]);
    assert_eq!(out.code, 2);
    assert_eq!(out.errors().len(), 1, "{}", out.stderr);
    assert!(out.errors()[0].contains("malformed"), "{}", out.stderr);
    out.assert_clean_exit();
}

#[test]
fn missing_kubeconfig_file() {
    let out = scs(&[
        "run",
        "-k",
        "/nonexistent/kubeconfig.yaml",
        "--check",
        "version-policy-check",
    ]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.errors(),
        ["ERROR kubeconfig /nonexistent/kubeconfig.yaml does not exist"]
    );
    assert_eq!(out.stdout, "version-policy-check: ABORT\n");
    assert!(
        out.junit_message("version-policy-check")
            .contains("does not exist")
    );
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    out.assert_clean_exit();
}

#[test]
fn malformed_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "kubeconfig", "apiVersion: v1\nclusters: [ {name: x\n");
    let out = scs(&["run", "-k", &path]);
    assert_eq!(out.code, 2);
    assert_eq!(out.errors().len(), 1, "{}", out.stderr);
    assert!(
        out.errors()[0].starts_with(&format!("ERROR kubeconfig {path} is malformed")),
        "{}",
        out.stderr
    );
    // Every selected testcase gets its ABORT line.
    let verdicts = out.verdicts();
    assert_eq!(verdicts.len(), 6);
    assert!(verdicts.values().all(|v| v == "ABORT"));
    out.assert_clean_exit();
}

#[test]
fn no_kubeconfig_anywhere() {
    let out = scs(&["run", "--check", "node-distribution-check"]);
    assert_eq!(out.code, 2);
    assert!(out.errors()[0].contains("no kubeconfig"), "{}", out.stderr);
    assert_eq!(out.stdout, "node-distribution-check: ABORT\n");
}

#[test]
fn kubeconfig_from_environment_with_missing_entries() {
    // KUBECONFIG lists only missing files: a clear error, like kubectl's.
    let out = scs_with(&["run", "--check", "version-policy-check"], |cmd| {
        cmd.env("KUBECONFIG", "/nonexistent/a:/nonexistent/b");
    });
    assert_eq!(out.code, 2);
    assert!(
        out.errors()[0]
            .contains("none of the files in KUBECONFIG exist: /nonexistent/a, /nonexistent/b"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_malformed_ok_to_fail_list_is_a_usage_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "ok.yaml",
        "- regex: SCTP\n  reason: optional\n  until: 2027\n",
    );
    let out = scs(&[
        "run",
        "--check",
        "cncf-k8s-conformance",
        "--ok-to-fail",
        &path,
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.errors().len(), 1, "{}", out.stderr);
    assert!(
        out.errors()[0].starts_with(&format!("ERROR ok-to-fail list {path}:"))
            && out.errors()[0].contains("until"),
        "{}",
        out.stderr
    );
    out.assert_clean_exit();
}
