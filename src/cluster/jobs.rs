//! Run-once Jobs: waiting until a Job's pod has started (or cannot), and following a
//! pod's log line by line.

use super::config::one_line;
use super::errors::human_duration;
use super::{Cluster, pods, wait};
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use kube::runtime::watcher;
use std::time::Duration;

/// Waiting reasons that mean the container will not start without someone fixing something.
const START_FAILURES: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Waits until the pod of Job `job` in `ns` runs (or already finished) and returns its
/// name. A pod that cannot start, or no pod at all within `deadline` (quota, admission),
/// is an error explained with the pod's state and the Events of the pod and the Job.
pub async fn wait_started(
    cluster: &Cluster,
    ns: &str,
    job: &str,
    deadline: Duration,
) -> Result<String, String> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let config = watcher::Config::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let waited = wait::until(&api, config, deadline, |pods| {
        pods.iter().find_map(|p| {
            let blocked = pods::waiting(p)
                .iter()
                .any(|(r, _)| START_FAILURES.contains(&r.as_str()));
            let going = matches!(pods::phase(p).as_str(), "Running" | "Succeeded" | "Failed");
            (blocked || going).then(|| p.clone())
        })
    })
    .await;
    let (pod, why) = match waited {
        Ok(pod)
            if pods::waiting(&pod)
                .iter()
                .all(|(r, _)| !START_FAILURES.contains(&r.as_str())) =>
        {
            return Ok(kube::ResourceExt::name_any(&pod));
        }
        Ok(pod) => (Some(pod), "cannot start".to_string()),
        Err(t) => (
            t.last.first().cloned(),
            format!(
                "did not start within {} (--pod-start-timeout)",
                human_duration(deadline)
            ),
        ),
    };
    let mut details = Vec::new();
    let subject = match &pod {
        Some(p) => {
            let name = kube::ResourceExt::name_any(p);
            details.push(pods::describe(p, &|_| String::new()));
            details.extend(
                wait::recent_events(&cluster.client, ns, &name, cluster.request_timeout).await,
            );
            format!("the pod of job {ns}/{job}")
        }
        None => format!("job {ns}/{job} has no pod"),
    };
    details.extend(
        wait::recent_events(&cluster.client, ns, job, cluster.request_timeout)
            .await
            .into_iter()
            .map(|e| format!("job: {e}")),
    );
    Err(format!("{subject} {why}: {}", details.join("; ")))
}

/// Hands the log of pod `ns/pod` (of `container`, default the only one) to `on_line`,
/// line by line, until the stream ends. Returns a warning when the log could not be
/// followed or broke off.
pub async fn follow(
    cluster: &Cluster,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    mut on_line: impl FnMut(&str),
) -> Option<String> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let params = LogParams {
        follow: true,
        container: container.map(str::to_string),
        ..Default::default()
    };
    let stream = match api.log_stream(pod, &params).await {
        Ok(s) => s,
        Err(e) => {
            return Some(format!(
                "cannot follow the log of pod {ns}/{pod}: {}",
                one_line(&e)
            ));
        }
    };
    let mut lines = stream.lines();
    while let Some(line) = lines.next().await {
        match line {
            Ok(line) => on_line(&line),
            Err(e) => return Some(format!("the log of pod {ns}/{pod} broke off: {e}")),
        }
    }
    None
}
