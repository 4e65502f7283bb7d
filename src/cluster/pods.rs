//! Pods the suite starts: why a pod is not running (container states and Events),
//! image-pull detection, waiting by watch for a pod to run to completion, reading its log.
//! Every writing check uses these, so an unpullable image or a stuck pod is explained the
//! same way everywhere.

use super::Cluster;
use super::errors::{ApiError, human_duration};
use super::wait;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, LogParams};
use std::time::Duration;

/// Container waiting reasons that mean the image cannot be pulled (the kubelet's names).
pub const IMAGE_PULL_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// Waiting reasons no retry of the kubelet can fix: someone must change the pod or the
/// node (a malformed image name, `imagePullPolicy: Never` without the image, a container
/// config referring to a missing ConfigMap/Secret key or running as root under
/// `runAsNonRoot`).
const NEVER_STARTS: &[&str] = &[
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
];

/// Registry and runtime answers that may pass: rate limits (a registry's 429, Docker Hub's
/// `toomanyrequests`), time-outs, refused or reset connections, 5xx answers.
const TRANSIENT_MARKERS: &[&str] = &[
    "429",
    "toomanyrequests",
    "too many requests",
    "rate limit",
    "timeout",
    "timed out",
    "deadline exceeded",
    "connection refused",
    "connection reset",
    "temporary failure",
    "500 internal server error",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway",
    "unexpected eof",
];

/// Registry answers that stay the same on every retry: the image does not exist (gRPC
/// `NotFound` from the runtime, `manifest unknown`, `not found`) or access is refused
/// (`401`/`403`, `denied`, `unauthorized`), or the reference is malformed.
const PERMANENT_MARKERS: &[&str] = &[
    "code = notfound",
    "not found",
    "manifest unknown",
    "name unknown",
    "unauthorized",
    "denied",
    "forbidden",
    "401",
    "403",
    "invalid reference format",
    "no match for platform",
];

/// Whether a container waiting with `reason` and `message` will never start without
/// someone fixing something. The kubelet retries `ErrImagePull` (backing off between
/// attempts, shown as `ImagePullBackOff`, 10 s doubling up to 5 min) and
/// `CreateContainerError`: those are permanent only when the message names an answer no
/// retry changes (see [`PERMANENT_MARKERS`]); a registry's 429 or a time-out is transient
/// and waiting (up to the caller's deadline) is right. Unknown messages count as
/// transient: the deadline still ends the wait, with the message.
pub fn start_failure_is_permanent(reason: &str, message: &str) -> bool {
    if NEVER_STARTS.contains(&reason) {
        return true;
    }
    if !matches!(reason, "ErrImagePull" | "ImagePullBackOff") {
        return false;
    }
    let m = message.to_lowercase();
    !TRANSIENT_MARKERS.iter().any(|t| m.contains(t))
        && PERMANENT_MARKERS.iter().any(|p| m.contains(p))
}

/// Follows the waiting states of a pod's containers across watch events, so that an
/// `ImagePullBackOff` (whose message may not repeat the pull error) is judged by the
/// `ErrImagePull` message that preceded it.
#[derive(Debug, Default)]
pub struct StartTracker {
    /// The last pull error message per container.
    pull_errors: std::collections::BTreeMap<String, String>,
}

impl StartTracker {
    /// `Reason: message` of the first container of `pod` that will never start, if any.
    pub fn permanent_failure(&mut self, pod: &Pod) -> Option<String> {
        let statuses = pod.status.iter().flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        });
        for c in statuses {
            let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let reason = w.reason.clone().unwrap_or_default();
            let mut message = w.message.clone().unwrap_or_default();
            if reason == "ErrImagePull" {
                self.pull_errors.insert(c.name.clone(), message.clone());
            } else if reason == "ImagePullBackOff"
                && let Some(last) = self.pull_errors.get(&c.name)
                && !message.contains(last.as_str())
            {
                message = format!("{message} (last pull error: {last})");
            }
            if start_failure_is_permanent(&reason, &message) {
                return Some(format!("{reason}: {message}"));
            }
        }
        None
    }
}

/// The pod's phase, `Unknown` when it has none yet.
pub fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".into())
}

/// The node the pod was scheduled to.
pub fn node(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// `(reason, message)` of every (init) container that is waiting.
pub fn waiting(pod: &Pod) -> Vec<(String, String)> {
    pod.status
        .iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .map(|w| {
            (
                w.reason.clone().unwrap_or_else(|| "Waiting".into()),
                w.message.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// `Reason: message` of the first container that cannot pull its image.
pub fn image_pull_problem(pod: &Pod) -> Option<String> {
    waiting(pod)
        .into_iter()
        .find(|(reason, _)| IMAGE_PULL_REASONS.contains(&reason.as_str()))
        .map(|(reason, message)| format!("{reason}: {message}"))
}

/// One line about a pod: `pod NAME: PHASE on NODE (NOTE) [waiting reasons]`; `node_note`
/// adds context about the node (e.g. its zone), or nothing when it returns "".
pub fn describe(pod: &Pod, node_note: &(dyn Fn(&str) -> String + Sync)) -> String {
    let waiting: Vec<String> = waiting(pod)
        .into_iter()
        .map(|(r, m)| format!("{r}: {m}"))
        .collect();
    format!(
        "pod {}: {}{}{}",
        pod.name_any(),
        phase(pod),
        node(pod)
            .map(|n| {
                let note = node_note(&n);
                if note.is_empty() {
                    format!(" on {n}")
                } else {
                    format!(" on {n} ({note})")
                }
            })
            .unwrap_or_default(),
        if waiting.is_empty() {
            String::new()
        } else {
            format!(" [{}]", waiting.join("; "))
        }
    )
}

/// Why pods are not where they should be: one line per pod, followed (for pods that are
/// not Running) by their recent Events, indented.
#[derive(Debug, Default)]
pub struct Explanation {
    pub details: Vec<String>,
    /// Pods whose image cannot be pulled.
    pub pull_errors: Vec<String>,
    /// The latest `FailedScheduling` event line, if any.
    pub scheduling: Option<String>,
}

pub async fn explain(
    cluster: &Cluster,
    namespace: &str,
    pods: &[Pod],
    node_note: &(dyn Fn(&str) -> String + Sync),
) -> Explanation {
    let mut out = Explanation::default();
    for pod in pods {
        let name = pod.name_any();
        if image_pull_problem(pod).is_some() {
            out.pull_errors.push(name.clone());
        }
        out.details.push(describe(pod, node_note));
        if phase(pod) != "Running" {
            for event in wait::recent_events(
                &cluster.client,
                namespace,
                "Pod",
                &name,
                cluster.request_timeout,
            )
            .await
            {
                if event.contains("FailedScheduling") {
                    out.scheduling = Some(event.clone());
                }
                out.details.push(format!("  {event}"));
            }
        }
    }
    out
}

/// Why a pod did not run to completion.
#[derive(Debug)]
pub enum PodTrouble {
    /// Its image cannot be pulled: an environment problem. Carries the kubelet's reason.
    ImagePull(String),
    /// It did not finish in time; carries what it was doing.
    Timeout(String),
    /// The API failed us.
    Api(ApiError),
}

/// A pod that did not finish, explained: `details` has its state and Events.
#[derive(Debug)]
pub struct NotFinished {
    pub trouble: PodTrouble,
    pub details: Vec<String>,
    /// The scheduler's latest complaint, if the pod was never placed.
    pub scheduling: Option<String>,
}

impl NotFinished {
    /// One line, e.g. `pod writer did not finish within 3m: Pending [...]`.
    pub fn summary(&self, pod: &str) -> String {
        match &self.trouble {
            PodTrouble::ImagePull(problem) => {
                format!("the image of pod {pod} cannot be pulled ({problem})")
            }
            PodTrouble::Timeout(state) => format!(
                "pod {pod} did not finish: {state}{}",
                self.scheduling
                    .as_ref()
                    .map(|s| format!("; scheduler: {s}"))
                    .unwrap_or_default()
            ),
            PodTrouble::Api(e) => e.to_string(),
        }
    }
}

/// Watches pod `name` until it has Succeeded or Failed (returned), a container will never
/// start (see [`start_failure_is_permanent`]; transient pull errors are waited out), the
/// watch is refused (403: [`PodTrouble::Api`]) or `deadline` passes. The failures are
/// explained with the pod's Events.
pub async fn wait_finished(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    deadline: Duration,
) -> Result<Pod, NotFinished> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let mut tracker = StartTracker::default();
    let waited = wait::object(&api, name, deadline, |pod| {
        let pod = pod?;
        if matches!(phase(pod).as_str(), "Succeeded" | "Failed") {
            return Some(Ok(pod.clone()));
        }
        tracker
            .permanent_failure(pod)
            .map(|problem| Err((Box::new(pod.clone()), problem)))
    })
    .await;
    let (pod, trouble) = match waited {
        Ok(Ok(pod)) => return Ok(pod),
        Ok(Err((pod, problem))) if image_pull_problem(&pod).is_some() => {
            (Some(*pod), PodTrouble::ImagePull(problem))
        }
        Ok(Err((pod, problem))) => (Some(*pod), PodTrouble::Timeout(problem)),
        Err(wait::Timeout {
            last,
            refused: Some(e),
            ..
        }) => (last.first().cloned(), PodTrouble::Api(e)),
        Err(timeout) => {
            let pod = timeout.last.first().cloned();
            let trouble = match pod.as_ref().and_then(image_pull_problem) {
                Some(problem) => PodTrouble::ImagePull(problem),
                None => PodTrouble::Timeout(format!(
                    "{} after {}{}",
                    pod.as_ref()
                        .map(|p| describe(p, &|_| String::new()))
                        .map(|d| d.split_once(": ").map(|(_, s)| s.to_string()).unwrap_or(d))
                        .unwrap_or_else(|| "it does not exist".into()),
                    human_duration(deadline),
                    timeout
                        .watch_error
                        .map(|e| format!(" (watch error: {e})"))
                        .unwrap_or_default()
                )),
            };
            (pod, trouble)
        }
    };
    let explanation = match &pod {
        Some(pod) => {
            explain(cluster, namespace, std::slice::from_ref(pod), &|_| {
                String::new()
            })
            .await
        }
        None => Explanation::default(),
    };
    Err(NotFinished {
        trouble,
        details: explanation.details,
        scheduling: explanation.scheduling,
    })
}

/// The log of a pod's (only) container.
pub async fn log(cluster: &Cluster, namespace: &str, name: &str) -> Result<String, ApiError> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    cluster
        .call(
            &format!("read the log of pod {namespace}/{name}"),
            api.logs(name, &LogParams::default()),
        )
        .await
}
