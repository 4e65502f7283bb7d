//! The catalogue in SCS's format: the built-in file keeps to the rules SCS's loader applies
//! (so SCS's own runner can read it) and states SCS's certificate scope; a catalogue file
//! given with `--catalogue` is read as SCS publishes them, its version in force chosen
//! from the timeline, and a testcase id this binary does not implement is reported as not
//! implemented, never passed.

mod support;

use serde_json::Value;
use support::binary::*;
use support::{ClusterSpec, SimCluster};

const BUILTIN: &str = include_str!("../standards/scs-compatible-kaas.yaml");

/// The keys SCS's loader allows, by the key under which a map appears (scs-0003-v1 and
/// SCS's loader: the file, scripts, versions, modules, testcases, include descriptors);
/// maps under any other key are not checked.
const KEYS: &[(&str, &[&str])] = &[
    (
        "spec",
        &[
            "uuid",
            "name",
            "url",
            "versions",
            "prerequisite",
            "variables",
            "scripts",
            "modules",
            "timeline",
        ],
    ),
    ("scripts", &["executable", "env", "args", "testcases"]),
    (
        "versions",
        &["version", "include", "targets", "stabilized_at"],
    ),
    ("modules", &["id", "targets", "url", "name", "parameters"]),
    (
        "testcases",
        &["lifetime", "section", "id", "description", "url"],
    ),
    ("include", &["ref", "parameters"]),
];

/// The keys a map under `context` uses that SCS's loader rejects, with their paths;
/// lists are checked entry by entry under the same context, maps key by key under the key.
fn unknown_keys(context: &str, value: &Value, path: &str) -> Vec<String> {
    let Some((_, allowed)) = KEYS.iter().find(|(c, _)| *c == context) else {
        return Vec::new();
    };
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .flat_map(|(i, v)| unknown_keys(context, v, &format!("{path}[{i}]")))
            .collect(),
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let here = format!("{path}.{k}");
                let mut found = unknown_keys(k, v, &here);
                if !allowed.contains(&k.as_str()) {
                    found.insert(0, here);
                }
                found
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// What SCS's loader resolves: testcase ids unique over the scripts, every module id
/// unique, every include naming a module, every version the timeline names existing, every
/// testcase of a module's targets listed in a script. Returns the problems found.
fn unresolved(spec: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut testcases = Vec::new();
    for script in spec["scripts"].as_array().unwrap() {
        for tc in script["testcases"].as_array().unwrap() {
            let id = tc["id"].as_str().unwrap();
            if testcases.contains(&id) {
                problems.push(format!("duplicate testcase {id}"));
            }
            testcases.push(id);
        }
    }
    let modules: Vec<&str> = spec["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for (i, m) in modules.iter().enumerate() {
        if modules[..i].contains(m) {
            problems.push(format!("duplicate module {m}"));
        }
    }
    for module in spec["modules"].as_array().unwrap() {
        for ids in module["targets"].as_object().unwrap().values() {
            for id in ids.as_array().unwrap() {
                if !testcases.contains(&id.as_str().unwrap()) {
                    problems.push(format!("testcase {id} in no script"));
                }
            }
        }
    }
    let versions: Vec<&str> = spec["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    for version in spec["versions"].as_array().unwrap() {
        for include in version["include"].as_array().unwrap() {
            let id = include.as_str().or(include["ref"].as_str()).unwrap();
            if !modules.contains(&id) {
                problems.push(format!("unknown module {id}"));
            }
        }
    }
    for entry in spec["timeline"].as_array().unwrap() {
        for v in entry["versions"].as_object().unwrap().keys() {
            if !versions.contains(&v.as_str()) {
                problems.push(format!("timeline names unknown version {v}"));
            }
        }
    }
    problems
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("YAML")
}

#[test]
fn the_builtin_catalogue_keeps_to_the_rules_of_scs_loader() {
    let spec = yaml(BUILTIN);
    assert_eq!(unknown_keys("spec", &spec, "spec"), Vec::<String>::new());
    assert_eq!(unresolved(&spec), Vec::<String>::new());
    // The rules bite: this suite's former keys are rejected.
    let old = BUILTIN
        .replace(
            "  - id: version-policy-check\n",
            "  - id: version-policy-check\n    level: mandatory\n",
        )
        .replace(
            "  - version: v1\n",
            "  - version: v1\n    state: effective\n",
        );
    assert_eq!(
        unknown_keys("spec", &yaml(&old), "spec"),
        [
            "spec.scripts[0].testcases[1].level",
            "spec.versions[0].state"
        ]
    );
    // The fixture that stands for SCS's published files keeps to them as well.
    let fixture = std::fs::read_to_string(fixture("catalogues/two-versions.yaml")).unwrap();
    let fixture = yaml(&fixture);
    assert!(unknown_keys("spec", &fixture, "spec").is_empty());
    assert!(unresolved(&fixture).is_empty());
}

#[test]
fn the_builtin_catalogue_states_the_scs_certificate_scope() {
    let spec = yaml(BUILTIN);
    assert_eq!(spec["name"], "SCS-compatible KaaS");
    assert_eq!(spec["uuid"], "1fffebe6-fd4b-44d3-a36c-fc58b4bb0180");
    assert_eq!(
        spec["timeline"],
        serde_json::json!([
            {"date": "2024-11-26", "versions": {"v1": "effective"}},
            {"date": "2024-02-28", "versions": {"v1": "draft"}},
        ])
    );
    let versions = spec["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["stabilized_at"], "2024-11-26");
    let include: Vec<&str> = versions[0]["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    // SCS's four modules first; then, beside the certificate, SCS's manual module and ours.
    assert_eq!(
        include[..4],
        [
            "cncf-k8s-conformance",
            "scs-0210-v2",
            "scs-0214-v2",
            "scs-0219-v1"
        ]
    );
    let module = |id: &str| {
        spec["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no module {id}"))
            .clone()
    };
    let mut main = Vec::new();
    for id in &include {
        let targets = module(id)["targets"].clone();
        for (target, ids) in targets.as_object().unwrap() {
            if target == "main" {
                main.extend(
                    ids.as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i.as_str().unwrap().to_string()),
                );
                assert!(include[..4].contains(id), "{id} adds to the certificate");
            }
        }
    }
    assert_eq!(
        main,
        [
            "cncf-k8s-conformance",
            "version-policy-check",
            "kaas-networking-check"
        ]
    );
    assert_eq!(module("scs-0214-v2")["targets"], serde_json::json!({}));
    assert_eq!(
        module("scs-0214-v2-manual")["targets"],
        serde_json::json!({"preview": ["node-distribution-check"]})
    );
    // The script entry is the one the README documents.
    assert_eq!(
        spec["scripts"][0]["args"],
        "run -k {kubeconfig} --execution-mode {execution_mode} --output-dir {subject_root}/scs-kaas-check {testcases}"
    );
}

#[test]
fn the_timeline_chooses_the_version_in_force() {
    let catalogue = fixture("catalogues/two-versions.yaml");
    let catalogue = catalogue.to_str().unwrap();
    let list = |date: &str, extra: &[&str]| {
        let out = scs(&[
            &["list", "--catalogue", catalogue, "--reference-date", date][..],
            extra,
        ]
        .concat());
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
    };
    // v2 is a draft on 2026-06-01: v1 is in force.
    let v1 = list("2026-06-01", &[]);
    assert!(
        v1.starts_with("Two versions v1 (effective on 2026-06-01;"),
        "{v1}"
    );
    assert!(v1.contains("node-anti-affinity-check"), "{v1}");
    assert!(!v1.contains("scs-0217-cluster-hardening"), "{v1}");
    // From 2026-09-01 v2 is, and v1 is deprecated.
    let v2 = list("2026-09-01", &[]);
    assert!(
        v2.starts_with("Two versions v2 (effective on 2026-09-01;"),
        "{v2}"
    );
    let row = v2
        .lines()
        .find(|l| l.starts_with("scs-0217-cluster-hardening "))
        .unwrap_or_else(|| panic!("{v2}"));
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        fields[..5],
        [
            "scs-0217-cluster-hardening",
            "scs-0217-v1",
            "main",
            "certificate",
            "not-implemented"
        ]
    );
    // --scope-version overrides the timeline and shows the version's state on the date.
    let old = list("2026-09-01", &["--scope-version", "v1"]);
    assert!(
        old.starts_with("Two versions v1 (deprecated on 2026-09-01;"),
        "{old}"
    );
    // Before the first entry no version is in force.
    let out = scs(&[
        "list",
        "--catalogue",
        catalogue,
        "--reference-date",
        "2024-12-31",
    ]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.critical(),
        "no version of Two versions is in force (effective or warn) on 2024-12-31: the \
         timeline starts after 2024-12-31; choose one with --scope-version (versions: v2, v1)"
    );
}

#[test]
fn a_testcase_this_binary_does_not_implement_is_reported_never_passed() {
    let catalogue = fixture("catalogues/two-versions.yaml");
    let sim = SimCluster::start(ClusterSpec::default());
    let out = run_against(
        &sim,
        &[
            "--catalogue",
            catalogue.to_str().unwrap(),
            "--reference-date",
            "2026-10-01",
        ],
    );
    out.assert_clean_exit();
    // The implemented testcase ran; the other has no verdict line and leaves the
    // certificate undecided: exit 3.
    assert_eq!(
        out.stdout, "node-distribution-check: PASS\n",
        "{}",
        out.stderr
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    let reason = format!(
        "testcase scs-0217-cluster-hardening is not implemented by scs-kaas-check {}",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        out.stderr
            .contains(&format!("CAUTION: {reason} (it implements: ")),
        "{}",
        out.stderr
    );
    assert!(
        out.errors().is_empty() && out.criticals().is_empty(),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "target main (the certificate): INCOMPLETE: 1 passed, 1 not implemented \
             (scs-0217-cluster-hardening)"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.junit_message("scs-0217-cluster-hardening")
            .starts_with(&reason)
    );
    assert!(
        out.junit().contains(r#"<skipped type="NOT-IMPLEMENTED""#),
        "{}",
        out.junit()
    );
    assert_valid_junit(&out.out_dir.join("junit.xml"));
    let report: Value = serde_saphyr::from_str(&out.report()).unwrap();
    let tc = report["testcases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "scs-0217-cluster-hardening")
        .unwrap();
    assert_eq!(tc["verdict"], "NOT-IMPLEMENTED");
    assert!(tc["reason"].as_str().unwrap().starts_with(&reason));
    assert_eq!(report["run"]["scope_version"], "v2");
    assert_eq!(report["targets"][0]["verdict"], "NOT-IMPLEMENTED");
}
