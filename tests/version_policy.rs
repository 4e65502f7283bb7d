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
    check_with(sim, date, &fixture("releases.json"), extra)
}

fn check_with(sim: &SimCluster, date: &str, releases: &std::path::Path, extra: &[&str]) -> Output {
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
fn stale_bundled_data_cannot_pass_and_says_how_to_get_fresher_data() {
    // The bundled snapshot ends on 2026-04-15; on 2026-11-20 a patch published between
    // 2026-04-16 and 2026-10-19 would make v1.35.4 outdated, and the snapshot cannot tell.
    let sim = cluster("v1.35.4");
    let out = run_against(&sim, &["--check", TC, "--reference-date", "2026-11-20"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.verdict(TC).as_deref(), Some("ABORT"), "{}", out.stderr);
    assert_eq!(
        out.junit_message(&format!("{TC}/patch-recency")),
        "v1.35.4 cannot be judged: a newer patch of branch 1.35 published by 2026-10-19 (more \
         than 31 days before the reference date 2026-11-20) would make it outdated, but the \
         bundled snapshot standards/data/k8s-releases.json ends on 2026-04-15, before \
         2026-10-19; to decide, run online (set GITHUB_TOKEN against GitHub's rate limit) or \
         pass a current --release-data file"
    );
    assert_eq!(
        out.junit_message(&format!("{TC}/cve-recency")),
        "v1.35.4 cannot be judged: a critical CVE whose fix was published by 2026-11-05 (more \
         than 14 days before the reference date 2026-11-20) would fail it, but the bundled CVE \
         data standards/data/k8s-cves.json ends on 2024-11-22, before 2026-11-05; to decide, \
         run online or pass a current --cve-data file"
    );
    // The branch itself is decided from the end-of-life data.
    assert_eq!(out.junit_kind(&format!("{TC}/supported-branch")), "passed");
}

#[test]
fn a_users_year_old_release_file_cannot_pass() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("releases.json");
    std::fs::write(
        &file,
        r#"[{"tag_name": "v1.34.3", "published_at": "2025-10-01T12:00:00Z", "draft": false, "prerelease": false}]"#,
    )
    .unwrap();
    let sim = cluster("v1.34.3");
    let out = check_with(&sim, "2026-10-01", &file, &[]);
    assert_eq!(out.verdict(TC).as_deref(), Some("ABORT"), "{}", out.stderr);
    let message = out.junit_message(&format!("{TC}/patch-recency"));
    assert!(
        message.contains(&format!(
            "but the release file {} ends on 2025-10-01, before 2026-08-30",
            file.display()
        )),
        "{message}"
    );
}

#[test]
fn a_prerelease_is_not_a_supported_release() {
    let sim = cluster("v1.34.8-rc.0");
    let out = check(&sim, "2026-06-01", &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stdout, "version-policy-check: FAIL\n");
    assert_eq!(
        out.junit_message(&format!("{TC}/supported-branch")),
        "v1.34.8-rc.0 is an upstream pre-release (rc.0 of v1.34.8), not a release: the \
         Kubernetes project supports only its releases, so a cluster must run one"
    );
    // Vendor suffixes are not pre-releases.
    for version in ["v1.34.3-gke.1200", "v1.34.3+rke2r1"] {
        let sim = cluster(version);
        let out = check(&sim, "2026-06-01", &[]);
        assert_eq!(out.code, 0, "{version}: {}", out.stderr);
    }
}

#[test]
fn a_branch_the_data_does_not_know_is_undecided() {
    let sim = cluster("v1.38.1");
    let out = check(&sim, "2026-06-01", &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(
        out.junit_message(&format!("{TC}/supported-branch")),
        "branch 1.38 of v1.38.1 is not in the EOL data (it knows 1.25 to 1.37), so whether it \
         is supported cannot be decided; pass --eol-data with the branch's end of life \
         (https://kubernetes.io/releases/)"
    );
    assert_eq!(
        out.junit_message(&format!("{TC}/patch-recency")),
        format!(
            "the release data (the release file {}) knows no release of branch 1.38 \
             published by 2026-06-01 (newest branch 1.36), so whether v1.38.1 is the newest \
             patch cannot be decided",
            fixture("releases.json").display()
        )
    );
}

/// A proxy for the suite's HTTPS requests that answers CONNECT with 403 (`refuse`) or
/// accepts and never answers. Returns `http://127.0.0.1:PORT`, for `ALL_PROXY` (which the
/// release and CVE fetches honour and the Kubernetes client ignores).
fn proxy(refuse: bool) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if refuse {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
            } else {
                held.push(stream);
            }
        }
    });
    format!("http://{address}")
}

/// The check at 2026-06-01 with online data, fetched through `proxy`.
fn online(sim: &SimCluster, proxy: &str, extra: &[&str]) -> Output {
    let kubeconfig = sim.kubeconfig_path();
    let mut args = vec![
        "run",
        "-k",
        kubeconfig.to_str().unwrap(),
        "--check",
        TC,
        "--reference-date",
        "2026-06-01",
    ];
    args.extend_from_slice(extra);
    let out = scs_with(&args, |cmd| {
        cmd.env("ALL_PROXY", proxy);
    });
    out.assert_clean_exit();
    out
}

#[test]
fn a_failed_online_fetch_decides_nothing_instead_of_falling_back() {
    let sim = cluster("v1.34.3");
    let out = online(&sim, &proxy(true), &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout, "version-policy-check: ABORT\n");
    let message = out.junit_message(&format!("{TC}/patch-recency"));
    assert!(
        message.starts_with(
            "no release data: release data could not be fetched: GET \
             https://api.github.com/repos/kubernetes/kubernetes/releases?per_page=100&page=1: "
        ) && message
            .ends_with("; pass --release-data FILE, or --offline to judge by the bundled snapshot"),
        "{message}"
    );
    let message = out.junit_message(&format!("{TC}/cve-recency"));
    assert!(message.starts_with("no release data: "), "{message}");
    assert!(
        !out.report()
            .contains("bundled standards/data/k8s-releases.json")
    );
}

#[test]
fn a_decided_failure_survives_a_hanging_fetch() {
    // The branch is past its end of life (decided from local data at once); then the
    // release fetch hangs until --timeout stops the check.
    let sim = cluster("v1.31.14");
    let started = std::time::Instant::now();
    let out = online(&sim, &proxy(false), &["--timeout", "3s"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stdout, "version-policy-check: FAIL\n");
    let name = format!("{TC}/supported-branch");
    assert_eq!(out.junit_kind(&name), "failure FAIL");
    assert!(
        out.junit_message(&name)
            .starts_with("branch 1.31 of v1.31.14 reached its end of life on 2025-10-28"),
        "{}",
        out.junit()
    );
    assert_eq!(
        out.report_requirement(&format!("{TC}/offering")).0,
        "not-applicable"
    );
    for id in ["patch-recency", "cve-recency"] {
        let (status, message) = out.report_requirement(&format!("{TC}/{id}"));
        assert_eq!(status, "abort", "{id}");
        assert_eq!(
            message,
            "not decided: the check did not finish within 3s (--timeout); last step: loading \
             release and CVE data",
            "{id}"
        );
    }
    assert_valid_junit(&out.out_dir.join("junit.xml"));
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
