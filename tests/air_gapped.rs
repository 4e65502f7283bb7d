//! Air-gapped and registry-restricted clusters: the registry credentials
//! (`--image-pull-secret-file`) reach every namespace the run creates as a labelled Secret,
//! and every pod the suite starts references it (check pods, the in-cluster runner and the
//! checks it runs, the e2e pod); `images` lists exactly the images a run starts pods with
//! and agrees with `gen`.
//!
//! On the real control plane (`testbed/`, scenario `three-zones`, one test bed shared by
//! this binary; each test works in a run of its own): a site's ValidatingAdmissionPolicy
//! refuses every pod in the run's namespaces that does not reference the pull secret, so
//! a run that passes started no pod without it; local runs authenticate as a ServiceAccount
//! bound to exactly the ClusterRole `gen` prints for their selection (`secrets` create
//! included). Kept namespaces are then read with the admin credential, deleted with
//! `delete`, and `TestBed::assert_run_left_nothing` checks that nothing of the run is left.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use serde_json::Value;
use std::collections::BTreeSet;
use support::binary::*;
use support::testbed::{Applied, Probe, TestBed, new_run_id, refusing_policy};

const SECRET: &str = "scs-kaas-check-pull-secret";

fn bed() -> &'static TestBed {
    TestBed::shared("three-zones")
}

fn docker_config(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("config.json");
    let text = br#"{"auths":{"mirror.example":{"auth":"cm9ib3Q6bWlycm9yLXBhc3N3b3JkLTk5"}}}"#;
    std::fs::write(&path, text).unwrap();
    (path, text.to_vec())
}

const WRITING: [&str; 4] = [
    "--check",
    "node-anti-affinity-check",
    "--check",
    "default-storage-class-check",
];

/// While the guard lives, the API server refuses every pod in the namespaces of run
/// `run_id` that does not reference the pull secret.
fn require_the_secret(run_id: &str) -> Applied<'static> {
    bed().apply_policy(
        &refusing_policy(
            &format!("pull-secret-{run_id}"),
            run_id,
            "CREATE",
            "pods",
            &format!(
                "!(has(object.spec.imagePullSecrets) && \
                 object.spec.imagePullSecrets.exists(s, s.name == '{SECRET}'))"
            ),
            "pods here pull through the mirror: imagePullSecrets must name the pull secret",
        ),
        run_id,
        Probe::Refuses("pods", "probe"),
    )
}

/// `run` in run `run_id` (offline) as a ServiceAccount bound to the ClusterRole `gen`
/// prints for `selection`, then `extra`.
fn run_least(run_id: &str, selection: &[&str], extra: &[&str]) -> Output {
    let mut gen_args = selection.to_vec();
    gen_args.extend(["--run-id", run_id]);
    let kubeconfig = bed().gen_kubeconfig(&gen_args);
    let mut args = gen_args;
    args.extend_from_slice(extra);
    let out = run_against(&kubeconfig, &args);
    out.assert_clean_exit();
    out
}

/// `(namespace, pod spec)` of every pod and pod template (Deployments, Jobs) still in the
/// namespaces of run `run_id`.
fn pod_specs(run_id: &str) -> Vec<(String, Value)> {
    let client = bed().client();
    let mut specs = Vec::new();
    for ns in bed().run_namespaces(run_id) {
        bed().block_on(async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            for p in pods.list(&ListParams::default()).await.expect("pods").items {
                specs.push((ns.clone(), serde_json::to_value(p.spec).expect("json")));
            }
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            for d in deployments
                .list(&ListParams::default())
                .await
                .expect("deployments")
                .items
            {
                let spec = d.spec.map(|s| s.template.spec);
                specs.push((ns.clone(), serde_json::to_value(spec).expect("json")));
            }
            let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
            for j in jobs.list(&ListParams::default()).await.expect("jobs").items {
                let spec = j.spec.map(|s| s.template.spec);
                specs.push((ns.clone(), serde_json::to_value(spec).expect("json")));
            }
        });
    }
    specs
}

fn images_of(specs: &[(String, Value)]) -> BTreeSet<String> {
    specs
        .iter()
        .flat_map(|(_, s)| s["containers"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["image"].as_str().map(str::to_string))
        .collect()
}

/// Every kept namespace of run `run_id` holds the pull secret (labelled, the docker
/// config `config`), and every pod and pod template references it.
fn assert_every_pod_and_namespace_has_the_secret(run_id: &str, config: &[u8]) {
    let namespaces = bed().run_namespaces(run_id);
    assert!(!namespaces.is_empty(), "kept namespaces expected");
    for ns in &namespaces {
        let secrets: Api<Secret> = Api::namespaced(bed().client(), ns);
        let secret = bed()
            .block_on(secrets.get(SECRET))
            .unwrap_or_else(|e| panic!("no pull secret in {ns}: {e}"));
        assert_eq!(
            secret.type_.as_deref(),
            Some("kubernetes.io/dockerconfigjson")
        );
        let data = secret.data.unwrap_or_default();
        assert_eq!(
            data.get(".dockerconfigjson").map(|b| b.0.as_slice()),
            Some(config)
        );
        assert_eq!(
            secret
                .metadata
                .labels
                .unwrap_or_default()
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("scs-kaas-check")
        );
    }
    let specs = pod_specs(run_id);
    assert!(!specs.is_empty());
    for (ns, spec) in &specs {
        assert_eq!(
            spec["imagePullSecrets"],
            serde_json::json!([{"name": SECRET}]),
            "pod in {ns}: {spec}"
        );
    }
}

/// `delete` the kept run `run_id`; nothing of it is left.
fn delete(run_id: &str) {
    let out = against(bed(), "delete", &["--run-id", run_id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    bed().assert_run_left_nothing(run_id);
}

#[test]
fn check_pods_reference_the_pull_secret_of_their_namespace() {
    let run_id = new_run_id();
    let _policy = require_the_secret(&run_id);
    let dir = tempfile::tempdir().unwrap();
    let (file, config) = docker_config(dir.path());
    let mut selection = WRITING.to_vec();
    selection.extend(["--image-pull-secret-file", file.to_str().unwrap()]);
    let out = run_least(&run_id, &selection, &["--keep"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_every_pod_and_namespace_has_the_secret(&run_id, &config);
    for text in [&out.stdout, &out.stderr, &out.junit(), &out.report()] {
        assert!(!text.contains("cm9ib3Q6bWlycm9yLXBhc3N3b3JkLTk5"));
        assert!(!text.contains("mirror-password-99"));
    }
    delete(&run_id);
}

#[test]
fn a_file_that_is_not_a_docker_config_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(&file, "password: hunter2-not-json").unwrap();
    let out = scs(&["run", "--image-pull-secret-file", file.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.critical()
            .ends_with("is not a docker config JSON: not JSON (line 1)"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("hunter2"));
}

#[test]
fn the_in_cluster_runner_and_the_checks_it_runs_use_the_pull_secret() {
    let run_id = new_run_id();
    let _policy = require_the_secret(&run_id);
    let dir = tempfile::tempdir().unwrap();
    let (file, config) = docker_config(dir.path());
    let mut args = vec![
        "--in-cluster",
        "--keep",
        "--run-id",
        &run_id,
        "--image-pull-secret-file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(&WRITING);
    // The outer process deploys the runner with the admin credential; the runner runs
    // under the ClusterRole it creates (`secrets` create included), under real RBAC.
    let out = run_against(bed(), &args);
    out.assert_clean_exit();
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The runner's namespace and the scratch namespaces of the run inside all hold it.
    let namespaces = bed().run_namespaces(&run_id);
    assert!(
        namespaces.iter().any(|n| n.ends_with("-runner"))
            && namespaces.iter().any(|n| n.ends_with("-storage")),
        "{namespaces:?}"
    );
    assert_every_pod_and_namespace_has_the_secret(&run_id, &config);
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(bed().client());
    let role = bed()
        .block_on(roles.get(&format!("scs-kaas-check-{run_id}")))
        .expect("the runner's ClusterRole is kept");
    assert!(
        role.rules
            .unwrap_or_default()
            .iter()
            .any(|r| r.resources == Some(vec!["secrets".to_string()]) && r.verbs == ["create"]),
        "the runner's ClusterRole does not grant creating secrets"
    );
    delete(&run_id);
}

#[test]
fn the_e2e_pod_uses_the_pull_secret() {
    let run_id = new_run_id();
    let _policy = require_the_secret(&run_id);
    let dir = tempfile::tempdir().unwrap();
    let (file, config) = docker_config(dir.path());
    let out = run_least(
        &run_id,
        &[
            "--check",
            "cncf-k8s-conformance",
            "--image-pull-secret-file",
            file.to_str().unwrap(),
        ],
        &["--keep"],
    );
    // The test bed's conformance image passes: its pod was admitted with the secret.
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.verdict("cncf-k8s-conformance").as_deref(), Some("PASS"));
    assert_every_pod_and_namespace_has_the_secret(&run_id, &config);
    delete(&run_id);
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_string).collect()
}

#[test]
fn images_lists_exactly_the_images_of_the_pods_a_run_starts() {
    let run_id = new_run_id();
    let out = run_least(&run_id, &WRITING, &["--keep"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let started = images_of(&pod_specs(&run_id));
    let mut images = vec!["images"];
    images.extend_from_slice(&WRITING);
    let listed = scs(&images);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(lines(&listed.stdout), started);
    delete(&run_id);
}

#[test]
fn images_and_gen_agree() {
    let flags = [
        "--target",
        "all",
        "--image-registry",
        "mirror.example/m",
        "--networking",
        "both",
        "--lb-annotation",
        "loadbalancer.openstack.org/proxy-protocol=true",
        "--run-id",
        "0a1b2c3d",
    ];
    let mut args = vec![
        "images",
        "--in-cluster",
        "--kubernetes-version",
        "v1.34.2+k3s1",
    ];
    args.extend_from_slice(&flags);
    let listed = scs(&args);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let listed = lines(&listed.stdout);
    let expected: BTreeSet<String> = [
        "mirror.example/m/conformance:v1.34.2",
        "mirror.example/m/e2e-test-images/agnhost:2.53",
        "mirror.example/m/library/busybox:1.37.0",
        "mirror.example/m/nginxinc/nginx-unprivileged:1.27-alpine",
        "mirror.example/m/pause:3.10",
        &format!(
            "mirror.example/m/sovereigncloudstack/scs-kaas-check:v{}",
            env!("CARGO_PKG_VERSION")
        ),
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(listed, expected);
    // gen: the Job's image and the images it hands the run inside.
    let mut args = vec!["gen"];
    args.extend_from_slice(&flags);
    let generated = scs(&args);
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    let docs: Vec<Value> = generated
        .stdout
        .split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d.trim_start_matches("---\n")).unwrap())
        .collect();
    let job = docs.iter().find(|d| d["kind"] == "Job").unwrap();
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let mut in_gen: BTreeSet<String> =
        BTreeSet::from([container["image"].as_str().unwrap().to_string()]);
    let job_args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for pair in job_args.windows(2) {
        if pair[0] == "--image" || pair[0].ends_with("-image") {
            in_gen.insert(pair[1].to_string());
        }
    }
    // The conformance image follows the server version at run time; every other image
    // the listing names is in the Job, and the Job names no image the listing lacks.
    let without_conformance: BTreeSet<String> = listed
        .iter()
        .filter(|i| !i.contains("/conformance:"))
        .cloned()
        .collect();
    assert_eq!(in_gen, without_conformance);
}
