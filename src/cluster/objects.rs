//! Building and creating labelled objects: metadata with the run labels, ServiceAccount
//! bindings, run-once Jobs; shortening text to fit (see `bundle` for handing data back).

use super::errors::ApiError;
use super::{Cluster, ClusterObject, run_labels};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};

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

/// Creates the ServiceAccount `account` in `namespace` with cluster-wide rights: the
/// ClusterRole `role` and the ClusterRoleBinding `binding` that grants it. Both
/// cluster-scoped objects are tracked for `check` before anything is created (binding
/// first: it is deleted before the role it grants), so that cleanup removes them whatever
/// fails next. Used by the in-cluster runner and by upstream e2e runs.
///
/// # Errors
/// The first create the API refuses (or that times out), naming its kind and name.
pub async fn create_cluster_identity(
    cluster: &Cluster,
    check: &str,
    namespace: &str,
    account: &ServiceAccount,
    role: &ClusterRole,
    binding: &ClusterRoleBinding,
) -> Result<(), ApiError> {
    let name = |meta: &ObjectMeta| meta.name.clone().unwrap_or_default();
    cluster.track(
        check,
        ClusterObject::ClusterRoleBinding(name(&binding.metadata)),
    );
    cluster.track(check, ClusterObject::ClusterRole(name(&role.metadata)));
    let c = cluster.client.clone();
    create(
        cluster,
        Api::<ServiceAccount>::namespaced(c.clone(), namespace),
        account,
    )
    .await?;
    create(cluster, Api::<ClusterRole>::all(c.clone()), role).await?;
    create(cluster, Api::<ClusterRoleBinding>::all(c), binding).await
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
        "[... first {cut} bytes cut to fit the results ConfigMaps ...]\n{}",
        &text[cut..]
    )
}
