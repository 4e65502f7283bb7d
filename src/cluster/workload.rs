//! Pod templates that satisfy the `restricted` Pod Security profile, so the suite also
//! runs on hardened clusters.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

/// This suite's own image (the in-cluster runner, the e2e results sidecar).
pub const DEFAULT_SUITE_IMAGE: &str = concat!(
    "ghcr.io/sovereigncloudstack/scs-kaas-check:v",
    env!("CARGO_PKG_VERSION")
);

/// `reference` with its registry replaced by `prefix` (`--image-registry`):
/// `registry.k8s.io/pause:3.10` -> `<prefix>/pause:3.10`, `docker.io/library/busybox:1` ->
/// `<prefix>/library/busybox:1`, `busybox` -> `<prefix>/library/busybox`.
pub fn with_registry(reference: &str, prefix: &str) -> String {
    let rest = match reference.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest.to_string()
        }
        Some(_) => reference.to_string(),
        None => format!("library/{reference}"),
    };
    format!("{}/{rest}", prefix.trim_end_matches('/'))
}

/// The unprivileged user the suite's containers run as.
pub const RUN_AS_USER: i64 = 65534;

/// The label that names what a pod of the suite is for (and selects a Deployment's pods).
pub const APP_KEY: &str = "app.kubernetes.io/name";

/// Selects the pods labelled `app.kubernetes.io/name=<app>`.
pub fn app_selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(APP_KEY.to_string(), app.to_string())])),
        ..Default::default()
    }
}

/// A Deployment `app` of `replicas` pods running `spec`. It and its pods carry `labels`
/// (give the run labels) plus the app label its selector matches.
pub fn deployment(
    app: &str,
    mut labels: BTreeMap<String, String>,
    replicas: i32,
    spec: PodSpec,
) -> Deployment {
    labels.insert(APP_KEY.into(), app.into());
    Deployment {
        metadata: ObjectMeta {
            name: Some(app.into()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: app_selector(app),
            template: k8s_openapi::api::core::v1::PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(spec),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container running `image` as a non-root user, without privilege escalation or
/// capabilities.
pub fn restricted_container(name: &str, image: &str) -> Container {
    Container {
        name: name.to_string(),
        image: Some(image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod spec around `containers` with the restricted pod-level security context.
/// `fsGroup` is the run user's group, so volumes that support ownership management are
/// writable by the non-root user (the kubelet changes their group on mount).
pub fn restricted_pod_spec(containers: Vec<Container>) -> PodSpec {
    PodSpec {
        containers,
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(5),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            run_as_group: Some(RUN_AS_USER),
            fs_group: Some(RUN_AS_USER),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Mounts PersistentVolumeClaim `claim` as volume `volume` at `mount_path` in every
/// container of `spec` (read-write; the root filesystem stays read-only).
pub fn mount_claim(spec: &mut PodSpec, volume: &str, claim: &str, mount_path: &str) {
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: volume.to_string(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_string(),
            read_only: Some(false),
        }),
        ..Default::default()
    });
    for container in &mut spec.containers {
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: volume.to_string(),
                mount_path: mount_path.to_string(),
                ..Default::default()
            });
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields the restricted profile (Kubernetes Pod Security Standards) demands.
    #[test]
    fn satisfies_restricted_profile() {
        let spec = restricted_pod_spec(vec![restricted_container("c", "img")]);
        let pod_sc = spec.security_context.as_ref().unwrap();
        assert_eq!(pod_sc.run_as_non_root, Some(true));
        assert_eq!(pod_sc.fs_group, Some(RUN_AS_USER));
        assert_eq!(
            pod_sc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        for c in &spec.containers {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop.as_deref(),
                Some(&["ALL".to_string()][..])
            );
            assert_ne!(sc.run_as_user, Some(0));
        }
    }
}
