//! Pods that admission refuses (Pod Security, a ResourceQuota, a LimitRange, a validating
//! webhook or admission policy): a Deployment's ReplicaSet cannot create them, records a
//! `Warning FailedCreate` event (`Error creating: pods "..." is forbidden: ...`), and the
//! Deployment reports the condition `ReplicaFailure` with the same message; a Job records
//! the same event (and has no such condition). Pods that never exist say nothing about the
//! property a check measures: callers ABORT with that message.

use super::Cluster;
use super::wait;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use std::time::Duration;

/// The Deployment condition the deployment controller copies from a ReplicaSet whose pods
/// cannot be created.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
/// The reason of the ReplicaSet's event (and condition) when a pod create is refused.
pub const FAILED_CREATE: &str = "FailedCreate";

/// Watches Deployment `deployment` until it reports `ReplicaFailure` and returns why its
/// pods are not created: the message of the newest `FailedCreate` event of its ReplicaSets,
/// or the condition's message when no such event can be read. `None` when `deadline`
/// passes first (the pods were created, or are still being created).
pub async fn refused(
    cluster: &Cluster,
    namespace: &str,
    deployment: &str,
    deadline: Duration,
) -> Option<String> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    let condition = wait::object(&api, deployment, deadline, |d| {
        d?.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
            .map(|c| c.message.clone().unwrap_or_default())
    })
    .await
    .ok()?;
    Some(
        failed_create_event(cluster, namespace, deployment)
            .await
            .unwrap_or(condition),
    )
}

/// The message of the newest `FailedCreate` event of a ReplicaSet owned by `deployment`.
async fn failed_create_event(
    cluster: &Cluster,
    namespace: &str,
    deployment: &str,
) -> Option<String> {
    let sets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), namespace);
    let sets = cluster
        .call("list replicasets", sets.list(&ListParams::default()))
        .await
        .ok()?;
    let owned =
        sets.items.into_iter().filter(|rs| {
            rs.metadata.owner_references.iter().flatten().any(|o| {
                o.kind == "Deployment" && o.name == deployment && o.controller == Some(true)
            })
        });
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), namespace);
    let mut found: Vec<Event> = Vec::new();
    for rs in owned {
        let Some(name) = rs.metadata.name else {
            continue;
        };
        let params = ListParams::default().fields(&format!(
            "involvedObject.kind=ReplicaSet,involvedObject.name={name},reason={FAILED_CREATE}"
        ));
        if let Ok(list) = cluster.call("list events", events.list(&params)).await {
            found.extend(list.items);
        }
    }
    found
        .into_iter()
        .max_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .or(e.first_timestamp.as_ref())
                .map(|t| t.0)
        })
        .and_then(|e| e.message)
        .map(|m| m.trim().to_string())
}

/// Watches the Events of Job `job` until one says that admission refused its pod (a
/// `FailedCreate` event `Error creating: pods "..." is forbidden: ...`; the Job controller
/// keeps retrying, but the same admission gives the same answer) and returns the newest
/// such message. `None` when `deadline` passes first or Events cannot be watched. A
/// refusal by the ServiceAccount admission plugin that has not yet seen a ServiceAccount
/// created just before the Job (`error looking up service account`) passes with the next
/// retry and does not count.
pub async fn job_refused(
    cluster: &Cluster,
    namespace: &str,
    job: &str,
    deadline: Duration,
) -> Option<String> {
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), namespace);
    let config = kube::runtime::watcher::Config::default().fields(&format!(
        "involvedObject.kind=Job,involvedObject.name={job},reason={FAILED_CREATE}"
    ));
    wait::until(&api, config, deadline, |events| {
        events
            .iter()
            .filter(|e| {
                e.message.as_deref().is_some_and(|m| {
                    m.contains(" is forbidden: ") && !m.contains("error looking up service account")
                })
            })
            .max_by_key(|e| wait::event_time(e))
            .and_then(|e| e.message.as_deref())
            .map(|m| m.trim().to_string())
    })
    .await
    .ok()
}

/// The ABORT message for pods of `what` that were never created: `reason` is the
/// `FailedCreate` message.
pub fn describe(what: &str, reason: &str) -> String {
    format!(
        "the pods of {what} were never created: {reason}; admission (Pod Security, a \
         ResourceQuota or LimitRange, a webhook) refuses them, an environment problem that \
         leaves nothing to judge"
    )
}
