//! Bad input against the simulated cluster: each gets one clear `CRITICAL:` line, the
//! documented exit code, ABORT lines for the selected testcases each with its reason as an
//! `ERROR:` line, and no panic.

mod support;

use support::binary::*;
use support::{ClusterSpec, Fault, SimCluster};

const RO: [&str; 4] = [
    "--check",
    "version-policy-check",
    "--check",
    "node-distribution-check",
];

fn run_with_kubeconfig(path: &std::path::Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "-k", path.to_str().unwrap(), "--offline"];
    args.extend_from_slice(extra);
    scs(&args)
}

fn assert_all_abort(out: &Output, testcases: &[&str]) {
    let verdicts = out.verdicts();
    for tc in testcases {
        assert_eq!(
            verdicts.get(*tc).map(String::as_str),
            Some("ABORT"),
            "{tc}: {}",
            out.stdout
        );
    }
    assert_eq!(verdicts.len(), testcases.len(), "{}", out.stdout);
    // Every ABORT carries the reason where SCS's compliance monitor shows it.
    let reason = out.critical();
    let errors = out.errors();
    for tc in testcases {
        assert!(
            errors.contains(&format!("ERROR: {tc}: {reason}").as_str()),
            "{tc}: {}",
            out.stderr
        );
    }
    assert_eq!(errors.len(), testcases.len(), "{}", out.stderr);
}

#[test]
fn unknown_context() {
    let sim = SimCluster::start(ClusterSpec::default());
    let out = run_with_kubeconfig(
        &sim.kubeconfig_path(),
        &["--context", "nope", "--check", "version-policy-check"],
    );
    assert_eq!(out.code, 2);
    assert_eq!(out.criticals().len(), 1, "{}", out.stderr);
    assert!(
        out.criticals()[0].contains("context \"nope\" not found"),
        "{}",
        out.stderr
    );
    assert!(
        out.criticals()[0].contains("(contexts: sim)"),
        "{}",
        out.stderr
    );
    assert_all_abort(&out, &["version-policy-check"]);
    out.assert_clean_exit();
}

#[test]
fn connection_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    {
        let sim = SimCluster::start(ClusterSpec::default());
        std::fs::copy(sim.kubeconfig_path(), &path).unwrap();
    } // the simulator is gone; its port refuses connections
    let out = run_with_kubeconfig(&path, &RO);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.criticals().len(), 1, "{}", out.stderr);
    assert!(
        out.criticals()[0].contains("connection refused"),
        "{}",
        out.stderr
    );
    assert_all_abort(&out, &["version-policy-check", "node-distribution-check"]);
    assert!(
        out.junit_message("version-policy-check")
            .contains("connection refused")
    );
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    out.assert_clean_exit();
}

#[test]
fn untrusted_server_certificate() {
    let sim = SimCluster::start(ClusterSpec::default());
    let path = sim.write_kubeconfig(
        "foreign-ca",
        &sim.token(),
        Some(&SimCluster::foreign_ca_pem()),
    );
    let out = run_with_kubeconfig(&path, &RO);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.criticals().len(), 1, "{}", out.stderr);
    assert!(
        out.criticals()[0].contains("TLS handshake failed"),
        "{}",
        out.stderr
    );
    assert_all_abort(&out, &["version-policy-check", "node-distribution-check"]);
    out.assert_clean_exit();
}

#[test]
fn wrong_token_is_401_and_never_printed() {
    let sim = SimCluster::start(ClusterSpec::default());
    let secret = "wrong-token-4f9c2d7e1b";
    let path = sim.write_kubeconfig("bad-token", secret, None);
    let out = run_with_kubeconfig(&path, &RO);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.criticals().len(), 1, "{}", out.stderr);
    assert!(
        out.criticals()[0].contains("401 Unauthorized"),
        "{}",
        out.stderr
    );
    assert_all_abort(&out, &["version-policy-check", "node-distribution-check"]);
    for text in [&out.stdout, &out.stderr, &out.junit(), &out.report()] {
        assert!(!text.contains(secret), "the token leaked:\n{text}");
    }
    out.assert_clean_exit();
}

#[test]
fn server_error_500() {
    let sim = SimCluster::start(ClusterSpec {
        faults: vec![Fault::Status {
            path_prefix: "/version".into(),
            code: 500,
        }],
        ..Default::default()
    });
    let out = run_with_kubeconfig(&sim.kubeconfig_path(), &RO);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.criticals().len(), 1, "{}", out.stderr);
    assert!(
        out.criticals()[0].contains("answered 500"),
        "{}",
        out.stderr
    );
    assert_all_abort(&out, &["version-policy-check", "node-distribution-check"]);
    out.assert_clean_exit();
}

#[test]
fn api_not_answering_within_the_timeout() {
    let sim = SimCluster::start(ClusterSpec {
        faults: vec![Fault::Hang {
            path_prefix: "/version".into(),
        }],
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let mut extra = vec!["--request-timeout", "2s"];
    extra.extend_from_slice(&RO);
    let out = run_with_kubeconfig(&sim.kubeconfig_path(), &extra);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.criticals().len(), 1, "{}", out.stderr);
    assert!(
        out.criticals()[0].contains("did not answer within 2s"),
        "{}",
        out.stderr
    );
    assert_all_abort(&out, &["version-policy-check", "node-distribution-check"]);
    out.assert_clean_exit();
}

#[test]
fn forbidden_namespace_creation_aborts_only_writing_checks() {
    let sim = SimCluster::start(ClusterSpec {
        deny: vec![("create".into(), "namespaces".into())],
        ..Default::default()
    });
    let out = run_against(
        &sim,
        &[
            "--target",
            "all",
            "--reference-date",
            "2026-05-25",
            "--release-data",
            fixture("releases.json").to_str().unwrap(),
            "--cve-data",
            fixture("cves.json").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let verdicts = out.verdicts();
    assert_eq!(verdicts["node-anti-affinity-check"], "ABORT");
    assert_eq!(verdicts["kaas-networking-check"], "ABORT");
    assert_eq!(verdicts["cncf-k8s-conformance"], "ABORT");
    assert_eq!(verdicts["node-distribution-check"], "PASS");
    assert_eq!(verdicts["version-policy-check"], "PASS", "{}", out.stderr);
    let message = out.junit_message("node-anti-affinity-check");
    assert!(message.contains("may not create namespaces"), "{message}");
    assert!(
        sim.objects("namespaces")
            .iter()
            .all(|ns| ns["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null())
    );
    out.assert_clean_exit();
}

#[test]
fn forbidden_despite_a_positive_access_review() {
    // Admission can refuse what RBAC allows: the check ABORTs with the API's 403 message.
    let sim = SimCluster::start(ClusterSpec::default());
    sim.set_faults(vec![Fault::Status {
        path_prefix: "/api/v1/namespaces".into(),
        code: 403,
    }]);
    let out = run_against(&sim, &["--check", "node-anti-affinity-check"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(
        out.verdict("node-anti-affinity-check").as_deref(),
        Some("ABORT")
    );
    let message = out.junit_message("node-anti-affinity-check");
    assert!(message.contains("create namespace skc-"), "{message}");
    assert!(message.contains("403 Forbidden"), "{message}");
    out.assert_clean_exit();
}
