//! The command-line contract and configuration errors (exit code 2), run as a process.

mod support;

use support::binary::*;

/// Every testcase of the built-in v1: (id, module, target, counts, check).
const BUILTIN: [(&str, &str, &str, &str, &str); 8] = [
    (
        "cncf-k8s-conformance",
        "cncf-k8s-conformance",
        "main",
        "certificate",
        "cncf-conformance",
    ),
    (
        "version-policy-check",
        "scs-0210-v2",
        "main",
        "certificate",
        "version-policy",
    ),
    (
        "node-distribution-check",
        "scs-0214-v2-manual",
        "preview",
        "beside",
        "node-distribution",
    ),
    (
        "kaas-networking-check",
        "scs-0219-v1",
        "main",
        "certificate",
        "network-policy",
    ),
    (
        "node-anti-affinity-check",
        "scs-0213-v1",
        "extension",
        "beside",
        "node-anti-affinity",
    ),
    (
        "default-storage-class-check",
        "scs-0211-v1",
        "extension",
        "beside",
        "default-storage-class",
    ),
    (
        "lb-service-check",
        "scs-lb-draft",
        "extension",
        "beside",
        "lb-service",
    ),
    (
        "lb-ip-preservation-check",
        "scs-lb-draft",
        "extension",
        "beside",
        "lb-ip-preservation",
    ),
];

#[test]
fn list_shows_module_target_and_certificate_of_every_testcase() {
    let out = scs(&["list", "--reference-date", "2026-08-01"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "SCS-compatible KaaS v1 (effective on 2026-08-01; target main is the certificate)"
    );
    assert!(lines[1].starts_with("TESTCASE "), "{}", lines[1]);
    assert_eq!(lines.len(), 2 + BUILTIN.len(), "{}", out.stdout);
    for (line, (id, module, target, counts, check)) in lines[2..].iter().zip(BUILTIN) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&fields[..5], [id, module, target, counts, check], "{line}");
        assert!(fields.len() > 5, "description missing: {line}");
    }
    assert!(
        out.stdout.contains("lb-ip-preservation (informational)"),
        "{}",
        out.stdout
    );
}

#[test]
fn list_as_json() {
    let out = scs(&["list", "--format", "json"]);
    assert_eq!(out.code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(doc["scope_version"], "v1");
    assert_eq!(doc["validity"], "effective");
    let testcases = doc["testcases"].as_array().expect("testcases");
    assert_eq!(testcases.len(), BUILTIN.len());
    for (t, (id, module, target, counts, check)) in testcases.iter().zip(BUILTIN) {
        assert_eq!(t["id"], id);
        assert_eq!(t["module"], module);
        assert_eq!(t["target"], target);
        assert_eq!(t["certificate"], counts == "certificate", "{id}");
        assert_eq!(t["check"], check);
        assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
    assert_eq!(testcases[0]["lifetime"], "year");
    assert_eq!(testcases[0]["section"], "heavy");
    assert_eq!(testcases[1]["level"], "mandatory");
    assert_eq!(testcases[7]["level"], "informational");
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
    // clap's message, its first line marked as SCS marks a script that cannot run.
    assert_eq!(
        out.critical(),
        "unexpected argument '--frobnicate' found",
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.to_lowercase().contains("\nerror"),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_check_id_is_named() {
    for args in [
        &["run", "--check", "no-such-check"][..],
        &["run", "no-such-check"],
    ] {
        let out = scs(args);
        assert_eq!(out.code, 2);
        assert!(
            out.stdout.is_empty(),
            "no verdicts for an invalid selection: {}",
            out.stdout
        );
        assert!(
            out.critical().starts_with(
                "unknown testcase id \"no-such-check\" in scope version v1 (known: \
                 cncf-k8s-conformance, version-policy-check, "
            ),
            "{}",
            out.stderr
        );
        assert!(out.errors().is_empty(), "{}", out.stderr);
        out.assert_clean_exit();
    }
}

#[test]
fn target_and_ids_do_not_combine() {
    let out = scs(&["run", "--target", "all", "version-policy-check"]);
    assert_eq!(out.code, 2);
    assert!(
        out.critical()
            .contains("'--target <TARGET>' cannot be used with"),
        "{}",
        out.stderr
    );
    let out = scs(&["run", "--target", "beta"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.critical(),
        "unknown target \"beta\" in scope version v1 (targets: main, extension, preview, or all)"
    );
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[test]
fn malformed_catalogue_names_file_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let head = "name: t\nuuid: u\nurl: https://example.com/t.yaml\nscripts:\n- testcases:\n  \
                - id: version-policy-check\n";
    let tail = "modules:\n- id: scs-0210-v2\n  targets: {main: [version-policy-check]}\n\
                timeline: []\nversions:\n- version: v1\n  include: [scs-0210-v2]\n";
    let duplicate = write(
        &dir,
        "dup.yaml",
        &format!("{head}  - id: version-policy-check\n{tail}"),
    );
    let out = scs(&["list", "--catalogue", &duplicate, "--scope-version", "v1"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.critical(),
        format!(
            "catalogue {duplicate}: scripts[0].testcases[1] (id version-policy-check): \
             duplicate testcase id (also in scripts[0])"
        )
    );

    // A key SCS's loader does not know: rejected, whatever it says.
    let unknown = write(
        &dir,
        "unknown.yaml",
        &format!("{head}    check: version-policy\n{tail}"),
    );
    let out = scs(&["run", "--catalogue", &unknown, "--scope-version", "v1"]);
    assert_eq!(out.code, 2);
    let critical = out.critical();
    assert!(
        critical.starts_with(&format!("catalogue {unknown}: malformed: "))
            && critical.contains("check"),
        "{}",
        out.stderr
    );

    let broken = write(&dir, "broken.yaml", "name: [unclosed\n");
    let out = scs(&["run", "--catalogue", &broken]);
    assert_eq!(out.code, 2);
    assert!(out.critical().contains("malformed"), "{}", out.stderr);
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
        out.criticals(),
        ["CRITICAL: kubeconfig /nonexistent/kubeconfig.yaml does not exist"]
    );
    assert_eq!(
        out.errors(),
        ["ERROR: version-policy-check: kubeconfig /nonexistent/kubeconfig.yaml does not exist"]
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
    assert!(
        out.critical()
            .starts_with(&format!("kubeconfig {path} is malformed")),
        "{}",
        out.stderr
    );
    // Every selected testcase (a default run: the certificate's) gets its ABORT line.
    let verdicts = out.verdicts();
    assert_eq!(
        verdicts.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "cncf-k8s-conformance",
            "kaas-networking-check",
            "version-policy-check"
        ]
    );
    assert!(verdicts.values().all(|v| v == "ABORT"));
    assert_eq!(out.errors().len(), 3, "{}", out.stderr);
    out.assert_clean_exit();
}

#[test]
fn no_kubeconfig_anywhere() {
    let out = scs(&["run", "--check", "node-distribution-check"]);
    assert_eq!(out.code, 2);
    assert!(out.critical().contains("no kubeconfig"), "{}", out.stderr);
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
        out.critical()
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
    assert!(
        out.critical()
            .starts_with(&format!("ok-to-fail list {path}:"))
            && out.critical().contains("until"),
        "{}",
        out.stderr
    );
    out.assert_clean_exit();
}
