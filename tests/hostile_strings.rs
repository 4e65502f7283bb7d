//! Strings from the cluster are data: a `/version` gitVersion, an event message, a Status
//! message, a pod log line and a kubeconfig context name carrying characters XML 1.0
//! forbids (C0 controls, U+FFFE, U+FFFF), terminal escapes, a bidi override, a forged
//! `ERROR` line and `]]>`. junit.xml must validate against the JUnit schema (xmllint) and
//! parse in a second, independent reader (roxmltree, a strict XML 1.0 parser), keep the
//! dropped characters visible as escapes, write `time` with three decimals and bound its
//! messages; the terminal must get no raw control character and no forged line.

mod support;

use support::binary::*;
use support::storage::{ProvisionerSpec, default_class_cluster};
use support::{ClusterSpec, Fault, ProgramResult, SimCluster};

/// Everything a hostile cluster could put into a string.
const HOSTILE: &str =
    "A\u{1b}[2J\u{0}B\u{7}C\u{fffe}D\u{ffff}E\u{202e}F]]>G\u{9b}31mH\r\nERROR: injected line";

/// What must never reach stdout or stderr raw.
const RAW: &[char] = &[
    '\u{1b}', '\u{0}', '\u{7}', '\u{fffe}', '\u{ffff}', '\u{202e}', '\u{9b}', '\r',
];

/// Every check on what one run wrote; `marker` is a text the junit must show escaped.
fn assert_data_stays_data(out: &Output) {
    let path = out.out_dir.join("junit.xml");
    assert_valid_junit(&path);
    let xml = out.junit();
    let doc = roxmltree::Document::parse(&xml)
        .unwrap_or_else(|e| panic!("a second XML reader rejects junit.xml: {e}\n{xml}"));
    for node in doc.descendants() {
        if let Some(time) = node.attribute("time") {
            let decimals = time.split_once('.').map(|(_, d)| d.len());
            assert_eq!(decimals, Some(3), "time={time:?}");
        }
    }
    assert!(
        xml.contains("\\u{1b}[2J\\u{0}B\\u{7}C\\u{fffe}D\\u{ffff}E\\u{202e}F"),
        "the dropped characters are marked: {xml}"
    );
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains(RAW),
            "raw control character on the terminal:\n{text:?}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("ERROR: injected")),
            "a forged line reached the terminal:\n{text}"
        );
    }
    let report: serde_json::Value = serde_saphyr::from_str(&out.report())
        .unwrap_or_else(|e| panic!("report.yaml does not parse: {e}"));
    assert!(report["testcases"].is_array());
    out.assert_clean_exit();
}

#[test]
fn git_version() {
    let sim = SimCluster::start(ClusterSpec {
        git_version: format!("v1.34.2-{HOSTILE}"),
        ..Default::default()
    });
    let out = run_against(&sim, &["--check", "node-distribution-check"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_data_stays_data(&out);
    assert!(
        out.stderr
            .lines()
            .next()
            .unwrap_or("")
            .contains("\\u{1b}[2J"),
        "{}",
        out.stderr
    );
}

#[test]
fn status_message_and_its_size() {
    let long = format!("{HOSTILE} {}", "x".repeat(100_000));
    let sim = SimCluster::start(ClusterSpec {
        faults: vec![Fault::StatusMessage {
            path_prefix: "/api/v1/nodes".into(),
            code: 500,
            message: long,
        }],
        ..Default::default()
    });
    let out = run_against(&sim, &["--check", "node-distribution-check"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_data_stays_data(&out);
    let message = out.junit_message("node-distribution-check");
    assert!(
        message.chars().count() < 4200,
        "{} characters",
        message.len()
    );
    assert!(
        message.ends_with(
            "more characters; the whole text is in report.yaml and \
             logs/node-distribution-check.log]"
        ),
        "{}",
        &message[message.len() - 200..]
    );
    assert!(
        out.report().contains(&"x".repeat(50_000)),
        "report.yaml keeps all"
    );
}

#[test]
fn event_message() {
    let sim = SimCluster::start(default_class_cluster(ProvisionerSpec::broken(
        "cinder.csi.openstack.org",
        HOSTILE,
    )));
    let out = run_against(
        &sim,
        &[
            "--check",
            "default-storage-class-check",
            "--pvc-bind-timeout",
            "2s",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_data_stays_data(&out);
    assert!(
        out.junit_message("default-storage-class-check/rwo-binding")
            .contains("ProvisioningFailed")
    );
}

#[test]
fn pod_log_line() {
    let sim = SimCluster::start(default_class_cluster(ProvisionerSpec::csi(
        "cinder.csi.openstack.org",
    )));
    // An image whose every run prints the hostile text instead of the token.
    sim.register_program("hostile.example/shell", |_| {
        ProgramResult::ok(format!("{HOSTILE}\n"))
    });
    let out = run_against(
        &sim,
        &[
            "--check",
            "default-storage-class-check",
            "--storage-image",
            "hostile.example/shell:1",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_data_stays_data(&out);
    assert!(
        out.junit_message("default-storage-class-check/data-persistence")
            .contains("could not read back")
    );
}

#[test]
fn context_name() {
    let sim = SimCluster::start(ClusterSpec::default());
    let kubeconfig = std::fs::read_to_string(sim.kubeconfig_path()).unwrap();
    // YAML double-quoted escapes for the same characters.
    let name =
        "\"ctx\\e[2J\\0B\\aC\\uFFFED\\uFFFFE\\u202EF]]>G\\u009B31mH\\r\\nERROR: injected line\"";
    let text = kubeconfig
        .replace(
            "- name: sim\n  context:",
            &format!("- name: {name}\n  context:"),
        )
        .replace("current-context: sim", &format!("current-context: {name}"));
    let path = sim.dir().join("hostile-context");
    std::fs::write(&path, text).unwrap();
    let out = scs(&[
        "run",
        "-k",
        path.to_str().unwrap(),
        "--offline",
        "--check",
        "node-distribution-check",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_data_stays_data(&out);
    assert!(
        out.junit()
            .contains("name=\"context\" value=\"ctx\\u{1b}[2J")
    );
}
