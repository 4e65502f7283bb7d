//! Building and creating labelled objects: metadata with the run labels, ServiceAccount
//! bindings, run-once Jobs, and ConfigMaps that hand data back (the in-cluster runner's
//! results, the upstream e2e results).

use super::errors::{ApiError, call};
use super::{Cluster, run_labels};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, PodTemplateSpec};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::time::Duration;

/// What fits into one ConfigMap with room to spare, in bytes (the API server refuses
/// objects over 1 MiB).
pub const CONFIGMAP_BUDGET: usize = 900 * 1024;

/// Metadata of an object of run `run_id`, created on behalf of `check` (a testcase, or
/// [`super::RUNNER_CHECK`] for the in-cluster runner).
pub fn labelled(name: &str, namespace: Option<&str>, run_id: &str, check: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(run_labels(run_id, check)),
        ..Default::default()
    }
}

/// Binds the ClusterRole `name` to a ServiceAccount; the binding is named like the role.
pub fn cluster_role_binding(
    name: &str,
    run_id: &str,
    check: &str,
    subject: Subject,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: labelled(name, None, run_id, check),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: name.into(),
        },
        subjects: Some(vec![subject]),
    }
}

/// The ServiceAccount `name` in `namespace` as a binding subject.
pub fn service_account_subject(name: &str, namespace: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

/// A Job that runs `pod` once (no retries); it and its pod carry the run labels.
pub fn run_once_job(name: &str, namespace: &str, run_id: &str, check: &str, pod: PodSpec) -> Job {
    Job {
        metadata: labelled(name, Some(namespace), run_id, check),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(run_labels(run_id, check)),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates `object` through `api` with the request timeout. Errors name the kind and name.
pub async fn create<K>(cluster: &Cluster, api: Api<K>, object: &K) -> Result<(), ApiError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let what = format!(
        "create {} {}",
        K::kind(&Default::default()).to_lowercase(),
        object.meta().name.clone().unwrap_or_default()
    );
    cluster
        .call(&what, api.create(&PostParams::default(), object))
        .await
        .map(|_| ())
}

/// `text` cut from the front to at most about `budget` bytes, saying what was cut.
pub fn cut_front(text: &str, budget: usize) -> String {
    if text.len() <= budget {
        return text.to_string();
    }
    let mut cut = text.len() - budget.saturating_sub(80);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    format!(
        "[... first {cut} bytes cut to fit the results ConfigMap ...]\n{}",
        &text[cut..]
    )
}

/// Creates (or replaces) ConfigMap `name` holding `data` in the client's default namespace
/// (the service account's namespace when running in a pod). Returns a line for stderr.
pub async fn store_configmap(
    client: &kube::Client,
    request_timeout: Duration,
    name: &str,
    data: BTreeMap<String, String>,
) -> Result<String, ApiError> {
    let namespace = client.default_namespace().to_string();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mut cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    let what = format!("store the results in configmap {namespace}/{name}");
    match call(
        &what,
        request_timeout,
        api.create(&PostParams::default(), &cm),
    )
    .await
    {
        Ok(_) => {}
        Err(e) if e.message.contains("AlreadyExists") || e.message.contains("already exists") => {
            let current = call(&what, request_timeout, api.get(name)).await?;
            cm.metadata.resource_version = current.metadata.resource_version;
            call(
                &what,
                request_timeout,
                api.replace(name, &PostParams::default(), &cm),
            )
            .await?;
        }
        Err(e) => return Err(e),
    }
    Ok(format!("results stored in configmap {namespace}/{name}"))
}
