//! The objects of an in-cluster run. `run --in-cluster` creates exactly these and `gen`
//! prints exactly these: one set of builders.

use super::{RESULTS_CONFIGMAP, rbac};
use crate::catalogue::Testcase;
use crate::checks;
use crate::cluster::objects::{
    cluster_role_binding, labelled, run_once_job, service_account_subject,
};
use crate::cluster::{RUNNER_CHECK, namespace_object, workload};
use crate::settings::RunConfig;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, EmptyDirVolumeSource, Namespace, ServiceAccount, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef};
use kube::api::ObjectMeta;
use std::collections::BTreeMap;
use std::time::Duration;

/// The runner namespace is `skc-<run id>-runner`.
pub const RUNNER_PURPOSE: &str = "runner";
pub const SERVICE_ACCOUNT: &str = "scs-kaas-check";
pub const JOB: &str = "scs-kaas-check";

/// The runner pod's termination grace period: time for the run inside to delete its
/// scratch namespaces when it is stopped (SIGTERM).
pub const RUNNER_GRACE: std::time::Duration = std::time::Duration::from_secs(150);
pub const DATA_CONFIGMAP: &str = "scs-kaas-check-data";
/// Where the data files are mounted in the pod.
pub const DATA_DIR: &str = "/var/run/scs-kaas-check/data";
/// Where the runner pod sees the run's registry credentials (the pull secret, mounted), so
/// that the run inside creates them in its own scratch namespaces too.
pub const PULL_SECRET_DIR: &str = "/var/run/scs-kaas-check/pull-secret";
/// The pod's writable scratch space (the root filesystem is read-only).
pub const TMP_DIR: &str = "/tmp";
pub const RESULTS_DIR: &str = "/tmp/results";

/// Everything an in-cluster run creates, in creation order.
pub struct Objects {
    pub namespace: Namespace,
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub data: Option<ConfigMap>,
    pub job: Job,
}

impl Objects {
    pub fn namespace_name(&self) -> String {
        self.namespace.metadata.name.clone().unwrap_or_default()
    }

    pub fn job_name(&self) -> String {
        self.job.metadata.name.clone().unwrap_or_default()
    }

    /// Multi-document YAML, in creation order.
    pub fn to_yaml(&self) -> Result<String, String> {
        fn doc<T: serde::Serialize>(o: &T) -> Result<String, String> {
            let value = serde_json::to_value(o).map_err(|e| e.to_string())?;
            serde_saphyr::to_string(&value).map_err(|e| e.to_string())
        }
        let mut docs = vec![
            doc(&self.namespace)?,
            doc(&self.service_account)?,
            doc(&self.role)?,
            doc(&self.role_binding)?,
            doc(&self.cluster_role)?,
            doc(&self.cluster_role_binding)?,
        ];
        if let Some(data) = &self.data {
            docs.push(doc(data)?);
        }
        docs.push(doc(&self.job)?);
        Ok(docs
            .into_iter()
            .map(|d| format!("---\n{}", d.trim_end()))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n")
    }
}

fn meta(name: &str, namespace: Option<&str>, run_id: &str) -> ObjectMeta {
    labelled(name, namespace, run_id, RUNNER_CHECK)
}

fn duration_arg(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The data files the run reads, as `(ConfigMap key, local path, flag)`.
fn data_files(args: &RunConfig) -> Vec<(&'static str, &std::path::Path, &'static str)> {
    [
        ("eol.yaml", args.eol_data.as_deref(), "--eol-data"),
        (
            "releases.json",
            args.release_data.as_deref(),
            "--release-data",
        ),
        ("cves.json", args.cve_data.as_deref(), "--cve-data"),
        (
            "control-plane.yaml",
            args.workload.control_plane_attestation.as_deref(),
            "--control-plane-attestation",
        ),
        (
            "ok-to-fail.yaml",
            args.e2e.ok_to_fail.as_deref(),
            "--ok-to-fail",
        ),
    ]
    .into_iter()
    .filter_map(|(k, p, f)| p.map(|p| (k, p, f)))
    .collect()
}

/// The arguments of the in-cluster `run`: the same selection and settings as `args`.
pub fn container_args(args: &RunConfig, run_id: &str) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "run".into(),
        "--run-id".into(),
        run_id.into(),
        "--output-dir".into(),
        RESULTS_DIR.into(),
        "--results-configmap".into(),
        RESULTS_CONFIGMAP.into(),
        "--request-timeout".into(),
        duration_arg(args.cluster.request_timeout),
        "--timeout".into(),
        duration_arg(args.timeout),
    ];
    let mut flag = |name: &str, value: String| {
        a.push(name.to_string());
        a.push(value);
    };
    if let Some(v) = &args.catalogue.scope_version {
        flag("--scope-version", v.clone());
    }
    for c in &args.check {
        flag("--check", c.clone());
    }
    for t in &args.targets {
        flag("--target", t.clone());
    }
    if let Some(m) = args.execution_mode {
        flag("--execution-mode", m.as_str().into());
    }
    for s in &args.skip {
        flag("--skip", s.clone());
    }
    if let Some(p) = args.parallel {
        flag("--parallel", p.to_string());
    }
    if let Some(d) = args.reference_date {
        flag("--reference-date", d.to_string());
    }
    for (key, _, name) in data_files(args) {
        flag(name, format!("{DATA_DIR}/{key}"));
    }
    if args.image_pull_secret.is_some() {
        flag(
            "--image-pull-secret-file",
            format!("{PULL_SECRET_DIR}/.dockerconfigjson"),
        );
    }
    let w = &args.workload;
    flag("--workload-image", w.workload_image.clone());
    flag("--pod-start-timeout", duration_arg(w.pod_start_timeout));
    if let Some(h) = &w.host_label {
        flag("--host-label", h.clone());
    }
    flag("--storage-image", w.storage_image.clone());
    flag("--pvc-bind-timeout", duration_arg(w.pvc_bind_timeout));
    flag("--policy-timeout", duration_arg(w.policy_timeout));
    flag("--agnhost-image", w.agnhost_image.clone());
    flag("--proxy-protocol-image", w.proxy_protocol_image.clone());
    flag("--lb-timeout", duration_arg(w.lb_timeout));
    flag("--lb-probe-from", w.lb_probe_from.as_str().into());
    if let Some(ip) = w.client_ip {
        flag("--client-ip", ip.to_string());
    }
    for (k, v) in &w.lb_annotations {
        flag("--lb-annotation", format!("{k}={v}"));
    }
    let e = &args.e2e;
    flag("--networking", e.networking.as_str().into());
    if let Some(image) = &e.conformance_image {
        flag("--conformance-image", image.clone());
    }
    if let Some(skip) = &e.e2e_skip {
        flag("--e2e-skip", skip.clone());
    }
    if let Some(n) = e.e2e_parallel {
        flag("--e2e-parallel", n.to_string());
    }
    flag("--e2e-timeout", duration_arg(e.e2e_timeout));
    // The e2e results sidecar runs this image, and images chosen at run time (the
    // conformance image) take the mirror too.
    flag("--image", args.in_cluster.image.clone());
    if let Some(r) = &args.in_cluster.image_registry {
        flag("--image-registry", r.clone());
    }
    if e.e2e_dry_run {
        a.push("--e2e-dry-run".into());
    }
    if args.offline {
        a.push("--offline".into());
    }
    if args.strict {
        a.push("--strict".into());
    }
    if args.count_all_targets {
        a.push("--count-all-targets".into());
    }
    if args.keep {
        a.push("--keep".into());
    }
    a
}

/// Builds the objects of in-cluster run `run_id` of `selected` with `args`. Reads the data
/// files given (they go into a ConfigMap); `Err` names the one it cannot read.
pub fn build(args: &RunConfig, run_id: &str, selected: &[Testcase]) -> Result<Objects, String> {
    let namespace = namespace_object(run_id, RUNNER_CHECK, RUNNER_PURPOSE);
    let ns = namespace.metadata.name.clone().unwrap_or_default();
    let cluster_name = format!("scs-kaas-check-{run_id}");
    let subject = service_account_subject(SERVICE_ACCOUNT, &ns);
    let mut checks: Vec<&str> = selected
        .iter()
        .filter_map(|t| checks::implementing(&t.id).map(|i| i.check.name))
        .collect();
    checks.sort();
    checks.dedup();

    let mut cluster_rules = rbac::cluster_rules(&checks, &args.e2e);
    if args.image_pull_secret.is_some() {
        // The run inside puts the registry credentials into each scratch namespace.
        cluster_rules.extend(rbac::pull_secret_rules());
    }
    let mut data = BTreeMap::new();
    for (key, path, name) in data_files(args) {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {name} {}: {e}", path.display()))?;
        data.insert(key.to_string(), text);
    }
    let data = (!data.is_empty()).then(|| ConfigMap {
        metadata: meta(DATA_CONFIGMAP, Some(&ns), run_id),
        data: Some(data),
        ..Default::default()
    });

    let mut container = workload::restricted_container("scs-kaas-check", &args.in_cluster.image);
    container.args = Some(container_args(args, run_id));
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: TMP_DIR.into(),
        ..Default::default()
    }];
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }];
    if data.is_some() {
        mounts.push(VolumeMount {
            name: "data".into(),
            mount_path: DATA_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "data".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: DATA_CONFIGMAP.into(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if args.image_pull_secret.is_some() {
        mounts.push(VolumeMount {
            name: "pull-secret".into(),
            mount_path: PULL_SECRET_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "pull-secret".into(),
            secret: Some(k8s_openapi::api::core::v1::SecretVolumeSource {
                secret_name: Some(workload::PULL_SECRET_NAME.into()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    container.volume_mounts = Some(mounts);
    let mut pod = workload::restricted_pod_spec(vec![container]);
    pod.automount_service_account_token = Some(true);
    pod.service_account_name = Some(SERVICE_ACCOUNT.into());
    pod.restart_policy = Some("Never".into());
    // Time for the run to delete its scratch namespaces when it is stopped.
    pod.termination_grace_period_seconds = Some(RUNNER_GRACE.as_secs() as i64);
    pod.volumes = Some(volumes);

    Ok(Objects {
        service_account: ServiceAccount {
            metadata: meta(SERVICE_ACCOUNT, Some(&ns), run_id),
            ..Default::default()
        },
        role: Role {
            metadata: meta("scs-kaas-check-results", Some(&ns), run_id),
            rules: Some(rbac::namespace_rules()),
        },
        role_binding: RoleBinding {
            metadata: meta("scs-kaas-check-results", Some(&ns), run_id),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: "scs-kaas-check-results".into(),
            },
            subjects: Some(vec![subject.clone()]),
        },
        cluster_role: ClusterRole {
            metadata: meta(&cluster_name, None, run_id),
            rules: Some(cluster_rules),
            ..Default::default()
        },
        cluster_role_binding: cluster_role_binding(&cluster_name, run_id, RUNNER_CHECK, subject),
        data,
        job: run_once_job(JOB, &ns, run_id, RUNNER_CHECK, pod),
        namespace,
    })
}
