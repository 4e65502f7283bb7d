//! Air-gapped and registry-restricted clusters: the registry credentials
//! (`--image-pull-secret-file`) reach every namespace the run creates as a labelled Secret,
//! and every pod the suite starts references it (check pods, the in-cluster runner and the
//! checks it runs, the e2e pod); `images` lists exactly the images a run starts pods with
//! and agrees with `gen`.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use support::binary::*;
use support::storage::{ProvisionerSpec, default_class_cluster};
use support::{ClusterSpec, SimCluster};

const SECRET: &str = "scs-kaas-check-pull-secret";
const SUITE_IMAGE: &str = "ghcr.io/sovereigncloudstack/scs-kaas-check";

fn docker_config(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("config.json");
    let text = br#"{"auths":{"mirror.example":{"auth":"cm9ib3Q6bWlycm9yLXBhc3N3b3JkLTk5"}}}"#;
    std::fs::write(&path, text).unwrap();
    (path, text.to_vec())
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn writing_sim() -> SimCluster {
    let sim = SimCluster::start(default_class_cluster(ProvisionerSpec::csi(
        "cinder.csi.openstack.org",
    )));
    sim.register_shell_image("docker.io/library/busybox");
    sim
}

const WRITING: [&str; 4] = [
    "--check",
    "node-anti-affinity-check",
    "--check",
    "default-storage-class-check",
];

/// `(namespace, pod spec)` of every pod and pod template of the run still in the cluster.
fn pod_specs(sim: &SimCluster) -> Vec<(String, Value)> {
    let mut specs = Vec::new();
    for pod in sim.objects("pods") {
        specs.push((
            pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            pod["spec"].clone(),
        ));
    }
    for resource in ["deployments", "jobs"] {
        for o in sim.objects(resource) {
            specs.push((
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                o["spec"]["template"]["spec"].clone(),
            ));
        }
    }
    specs
        .into_iter()
        .filter(|(ns, _)| ns.starts_with("skc-"))
        .collect()
}

fn images_of(specs: &[(String, Value)]) -> BTreeSet<String> {
    specs
        .iter()
        .flat_map(|(_, s)| s["containers"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["image"].as_str().map(str::to_string))
        .collect()
}

fn assert_every_pod_and_namespace_has_the_secret(sim: &SimCluster, config: &[u8]) {
    let namespaces = suite_objects(sim, "namespaces");
    assert!(!namespaces.is_empty(), "kept namespaces expected");
    for ns in &namespaces {
        let secret = sim
            .object("secrets", ns, SECRET)
            .unwrap_or_else(|| panic!("no pull secret in {ns}"));
        assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
        assert_eq!(secret["data"][".dockerconfigjson"], b64(config));
        assert_eq!(
            secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "scs-kaas-check"
        );
    }
    let specs = pod_specs(sim);
    assert!(!specs.is_empty());
    for (ns, spec) in &specs {
        assert_eq!(
            spec["imagePullSecrets"],
            serde_json::json!([{"name": SECRET}]),
            "pod in {ns}: {spec}"
        );
    }
}

#[test]
fn check_pods_reference_the_pull_secret_of_their_namespace() {
    let sim = writing_sim();
    let dir = tempfile::tempdir().unwrap();
    let (file, config) = docker_config(dir.path());
    let mut args = vec!["--keep", "--image-pull-secret-file", file.to_str().unwrap()];
    args.extend_from_slice(&WRITING);
    let out = run_against(&sim, &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_every_pod_and_namespace_has_the_secret(&sim, &config);
    for text in [&out.stdout, &out.stderr, &out.junit(), &out.report()] {
        assert!(!text.contains("cm9ib3Q6bWlycm9yLXBhc3N3b3JkLTk5"));
        assert!(!text.contains("mirror-password-99"));
    }
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
    let sim = writing_sim();
    support::incluster::register_suite_image(&sim, SUITE_IMAGE);
    let dir = tempfile::tempdir().unwrap();
    let (file, config) = docker_config(dir.path());
    let mut args = vec![
        "--in-cluster",
        "--keep",
        "--image-pull-secret-file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(&WRITING);
    let out = run_against(&sim, &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The runner's namespace and the scratch namespaces of the run inside all hold it.
    let namespaces = suite_objects(&sim, "namespaces");
    assert!(
        namespaces.iter().any(|n| n.ends_with("-runner"))
            && namespaces.iter().any(|n| n.ends_with("-storage")),
        "{namespaces:?}"
    );
    assert_every_pod_and_namespace_has_the_secret(&sim, &config);
    let role = sim
        .objects("clusterroles")
        .into_iter()
        .find(|r| r["metadata"]["labels"]["scs-kaas-check/check"] == "in-cluster")
        .unwrap();
    assert!(
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"] == serde_json::json!(["secrets"])
                && r["verbs"] == serde_json::json!(["create"])),
        "{role}"
    );
    // The simulator authorizes the runner's service account by that role: nothing the run
    // inside did (the Secrets included) was refused.
    assert!(support::incluster::assert_runner_granted(&sim) > 10);
}

#[test]
fn the_e2e_pod_uses_the_pull_secret() {
    let sim = SimCluster::start(ClusterSpec {
        unpullable_images: vec!["mirror.example/conformance:v1.34.2".into()],
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (file, config) = docker_config(dir.path());
    let kubeconfig = sim.kubeconfig_path();
    let out = scs(&[
        "e2e",
        "-k",
        kubeconfig.to_str().unwrap(),
        "--conformance-image",
        "mirror.example/conformance:v1.34.2",
        "--pod-start-timeout",
        "3s",
        "--keep",
        "--image-pull-secret-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_every_pod_and_namespace_has_the_secret(&sim, &config);
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_string).collect()
}

#[test]
fn images_lists_exactly_the_images_of_the_pods_a_run_starts() {
    let sim = writing_sim();
    let mut args = vec!["--keep"];
    args.extend_from_slice(&WRITING);
    let out = run_against(&sim, &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let started = images_of(&pod_specs(&sim));
    let mut images = vec!["images"];
    images.extend_from_slice(&WRITING);
    let listed = scs(&images);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(lines(&listed.stdout), started);
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
