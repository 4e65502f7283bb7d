//! Pod templates that satisfy the `restricted` Pod Security profile, so the suite also
//! runs on hardened clusters, and the image pull secret every pod of the suite references
//! when the user gives registry credentials (private mirrors, air-gapped clusters).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, LocalObjectReference, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Name of the Secret (type `kubernetes.io/dockerconfigjson`) that holds the registry
/// credentials in every namespace the run creates.
pub const PULL_SECRET_NAME: &str = "scs-kaas-check-pull-secret";

/// The registry credentials of this process (`--image-pull-secret-file`): a docker config
/// JSON (`{"auths": {...}}`). Set once at start; read by every pod spec and namespace.
static PULL_SECRET: OnceLock<Vec<u8>> = OnceLock::new();

/// Makes every pod spec built from now on reference [`PULL_SECRET_NAME`] and every scratch
/// namespace hold it with `dockerconfigjson` as its `.dockerconfigjson`. Set once per
/// process (the run's settings); a second call is ignored.
pub fn use_pull_secret(dockerconfigjson: Vec<u8>) {
    let _ = PULL_SECRET.set(dockerconfigjson);
}

/// The registry credentials set by [`use_pull_secret`].
pub fn pull_secret() -> Option<&'static [u8]> {
    PULL_SECRET.get().map(Vec::as_slice)
}

/// `spec` referencing the pull secret when one is set.
fn with_pull_secret(mut spec: PodSpec, set: bool) -> PodSpec {
    if set {
        spec.image_pull_secrets = Some(vec![LocalObjectReference {
            name: PULL_SECRET_NAME.into(),
        }]);
    }
    spec
}

/// Checks a docker config JSON (the `.dockerconfigjson` of a Secret of type
/// `kubernetes.io/dockerconfigjson`, e.g. `~/.docker/config.json` after `docker login`)
/// and returns the credentials in it, for the redactor: each `auth` (and the password it
/// encodes), `password`, `identitytoken`, `registrytoken`, and the file as base64 (as it
/// appears in the Secret). `Err` says what is wrong, without quoting the file.
pub fn docker_config_secrets(text: &[u8]) -> Result<Vec<String>, String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let doc: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("not JSON (line {})", e.line()))?;
    let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
        return Err(
            "no \"auths\" object (expected a docker config JSON such as \
                    ~/.docker/config.json)"
                .into(),
        );
    };
    let mut secrets = vec![b64.encode(text)];
    for entry in auths.values() {
        for key in ["auth", "password", "identitytoken", "registrytoken"] {
            if let Some(value) = entry.get(key).and_then(|v| v.as_str()) {
                secrets.push(value.to_string());
            }
        }
        if let Some(auth) = entry.get("auth").and_then(|v| v.as_str())
            && let Ok(plain) = b64.decode(auth)
            && let Some((_, password)) = String::from_utf8_lossy(&plain).split_once(':')
        {
            secrets.push(password.to_string());
        }
    }
    Ok(secrets)
}

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
/// writable by the non-root user (the kubelet changes their group on mount). References
/// the image pull secret when the run has one ([`use_pull_secret`]): every pod the suite
/// starts is built here.
pub fn restricted_pod_spec(containers: Vec<Container>) -> PodSpec {
    with_pull_secret(
        restricted_pod_spec_without_secret(containers),
        pull_secret().is_some(),
    )
}

fn restricted_pod_spec_without_secret(containers: Vec<Container>) -> PodSpec {
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

    #[test]
    fn pull_secret_is_referenced_when_set() {
        let spec = restricted_pod_spec_without_secret(vec![restricted_container("c", "img")]);
        assert!(
            with_pull_secret(spec.clone(), false)
                .image_pull_secrets
                .is_none()
        );
        assert_eq!(
            with_pull_secret(spec, true).image_pull_secrets,
            Some(vec![LocalObjectReference {
                name: PULL_SECRET_NAME.into()
            }])
        );
    }

    #[test]
    fn docker_configs_are_checked_and_their_credentials_collected() {
        let file = br#"{"auths":{"mirror.example":{"auth":"dXNlcjpzM2NyM3QtcGFzcw==","identitytoken":"id-tok-123"}}}"#;
        let secrets = docker_config_secrets(file).unwrap();
        for s in ["dXNlcjpzM2NyM3QtcGFzcw==", "s3cr3t-pass", "id-tok-123"] {
            assert!(secrets.iter().any(|x| x == s), "{s} missing: {secrets:?}");
        }
        assert!(docker_config_secrets(b"{}").unwrap_err().contains("auths"));
        assert!(
            docker_config_secrets(b"auths: x")
                .unwrap_err()
                .contains("not JSON")
        );
    }

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
