//! version-policy-check through the binary against the simulated cluster, with fixture
//! release and CVE data (tests/fixtures) and a pinned reference date.

mod support;

use support::binary::*;
use support::{ClusterSpec, SimCluster};

fn cluster(version: &str) -> SimCluster {
    SimCluster::start(ClusterSpec {
        git_version: version.into(),
        ..Default::default()
    })
}

fn check(sim: &SimCluster, date: &str, extra: &[&str]) -> Output {
    let releases = fixture("releases.json");
    let cves = fixture("cves.json");
    let mut args = vec![
        "--check",
        "version-policy-check",
        "--reference-date",
        date,
        "--release-data",
        releases.to_str().unwrap(),
        "--cve-data",
        cves.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run_against(sim, &args);
    out.assert_clean_exit();
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    out
}

const TC: &str = "version-policy-check";

#[test]
fn current_patch_passes() {
    for version in [
        "v1.34.3",
        "v1.34.3+k3s1",
        "v1.34.3-gke.1200",
        "v1.34.3-eks-abcdef",
    ] {
        let sim = cluster(version);
        let out = check(&sim, "2026-06-01", &[]);
        assert_eq!(out.code, 0, "{version}: {}", out.stderr);
        assert_eq!(out.stdout, "version-policy-check: PASS\n");
        let junit = out.junit();
        for req in ["supported-branch", "patch-recency", "cve-recency"] {
            let name = format!("{TC}/{req}");
            assert!(
                junit.contains(&format!("<testcase name=\"{name}\"")),
                "{junit}"
            );
            assert_eq!(out.junit_message(&name), "", "{req} should pass");
        }
        // A single cluster cannot show the offering: reported as skipped, with the reason.
        assert!(
            out.junit_message(&format!("{TC}/offering"))
                .contains("single cluster")
        );
        assert!(
            junit.contains(&format!(
                "<property name=\"server-version\" value=\"{version}\"/>"
            )),
            "{junit}"
        );
        assert!(junit.contains("<property name=\"reference-date\" value=\"2026-06-01\"/>"));
    }
}

#[test]
fn outdated_patch_fails_naming_versions_and_dates() {
    let sim = cluster("v1.34.1");
    let out = check(&sim, "2026-06-01", &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stdout, "version-policy-check: FAIL\n");
    let message = out.junit_message(&format!("{TC}/patch-recency"));
    assert!(
        message.starts_with(
            "v1.34.1 is outdated: v1.34.2 was published on 2026-04-20, 42 days before the \
             reference date 2026-06-01 (limit 31 days)"
        ),
        "{message}"
    );
    assert!(
        message.contains("v1.34.3"),
        "the newest patch is named too: {message}"
    );
}

#[test]
fn patch_limit_is_31_days() {
    // v1.34.2 came out 2026-04-20: 31 days later still passes, 32 days later fails.
    let sim = cluster("v1.34.1");
    assert_eq!(check(&sim, "2026-05-21", &[]).code, 0);
    let out = check(&sim, "2026-05-22", &[]);
    assert_eq!(out.code, 1);
    assert!(
        out.junit_message(&format!("{TC}/patch-recency"))
            .contains("32 days")
    );
}

#[test]
fn end_of_life_branch_fails() {
    let sim = cluster("v1.31.14");
    let out = check(&sim, "2026-06-01", &[]);
    assert_eq!(out.code, 1);
    let message = out.junit_message(&format!("{TC}/supported-branch"));
    assert!(
        message.contains("1.31") && message.contains("2025-10-28"),
        "{message}"
    );
}

#[test]
fn critical_cve_fixed_long_ago_fails() {
    // CVE-2099-0001 (9.1) affects < 1.34.3; v1.34.3 came out 2026-05-15.
    let sim = cluster("v1.34.2");
    let out = check(&sim, "2026-06-01", &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let message = out.junit_message(&format!("{TC}/cve-recency"));
    for needle in ["CVE-2099-0001", "9.1", "v1.34.3", "2026-05-15", "17 days"] {
        assert!(message.contains(needle), "{needle} missing: {message}");
    }
    // The patch itself is recent enough.
    assert_eq!(out.junit_message(&format!("{TC}/patch-recency")), "");
}

#[test]
fn critical_cve_with_recent_fix_is_a_warning_unless_strict() {
    let sim = cluster("v1.34.2");
    let out = check(&sim, "2026-05-25", &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "version-policy-check: PASS\n");
    let text = out.junit_out(&format!("{TC}/cve-recency"));
    assert!(
        text.starts_with("WARNING ") && text.contains("CVE-2099-0001"),
        "{text}"
    );
    assert!(out.report().contains("status: warn"), "{}", out.report());

    let strict = check(&sim, "2026-05-25", &["--strict"]);
    assert_eq!(strict.code, 1);
    assert_eq!(strict.stdout, "version-policy-check: FAIL\n");
    assert!(
        strict
            .junit_message(&format!("{TC}/cve-recency"))
            .contains("CVE-2099-0001")
    );
}

#[test]
fn unparseable_version_aborts_quoting_it() {
    let sim = cluster("v1.x-weird");
    let out = check(&sim, "2026-06-01", &[]);
    assert_eq!(out.code, 3);
    assert_eq!(out.stdout, "version-policy-check: ABORT\n");
    let message = out.junit_message(&format!("{TC}/supported-branch"));
    assert!(
        message.contains("cannot parse Kubernetes version \"v1.x-weird\""),
        "{message}"
    );
}

#[test]
fn missing_release_data_aborts_with_the_reason() {
    let sim = cluster("v1.34.3");
    let out = run_against(
        &sim,
        &[
            "--check",
            TC,
            "--reference-date",
            "2026-06-01",
            "--release-data",
            "/nonexistent/releases.json",
        ],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout, "version-policy-check: ABORT\n");
    let message = out.junit_message(&format!("{TC}/patch-recency"));
    assert!(message.contains("/nonexistent/releases.json"), "{message}");
    // The branch is still decided from the bundled end-of-life data.
    assert_eq!(out.junit_message(&format!("{TC}/supported-branch")), "");
}

#[test]
fn bundled_offline_data_warns_when_stale() {
    let sim = cluster("v1.35.4");
    let out = run_against(&sim, &["--check", TC, "--reference-date", "2026-11-20"]);
    assert_eq!(out.verdict(TC).as_deref(), Some("PASS"), "{}", out.stderr);
    assert!(
        out.junit()
            .contains("WARNING [version-policy-check] release data: the bundled snapshot ends on")
    );
}

#[test]
fn offering_must_cover_every_supported_branch() {
    let a = cluster("v1.34.3");
    let b = cluster("v1.36.1");
    let (ka, kb) = (a.kubeconfig_path(), b.kubeconfig_path());
    let releases = fixture("releases.json");
    let out = scs(&[
        "run",
        "--offline",
        "--offering",
        "-k",
        ka.to_str().unwrap(),
        "-k",
        kb.to_str().unwrap(),
        "--check",
        TC,
        "--reference-date",
        "2026-06-01",
        "--release-data",
        releases.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let message = out.junit_message(&format!("{TC}/offering"));
    assert!(
        message.contains("1.33") && message.contains("1.35"),
        "{message}"
    );
    // Several clusters without --offering is a usage error.
    let out = scs(&[
        "run",
        "--offline",
        "-k",
        ka.to_str().unwrap(),
        "-k",
        kb.to_str().unwrap(),
        "--check",
        TC,
    ]);
    assert_eq!(out.code, 2);
    assert!(out.criticals()[0].contains("--offering"), "{}", out.stderr);
}
