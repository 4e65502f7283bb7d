//! Run-once Jobs: waiting until a Job's pod has started (or cannot), and following a
//! container's log until the container has really terminated.
//!
//! A followed log (`pods/log?follow=true`) is one long HTTP response. Load balancers in
//! front of the API server cut idle connections (OpenStack Octavia after 50 s by default),
//! and API server restarts end it too: the end of the stream says nothing about the
//! container. [`follow`] therefore decides the end from the pod's status only and, while
//! the container runs, resumes the stream from the last line seen. Design: lines are
//! requested with `timestamps=true`; a resumed request asks `sinceTime` = the last line's
//! timestamp rounded down to the second (the parameter's resolution; the kubelet returns
//! every line at or after it) and drops what was already delivered: lines older than the
//! last one seen, and as many lines carrying exactly its timestamp as were delivered.
//! Chosen over `tailLines` (which cannot know how much was written during the cut, so it
//! loses or repeats lines) and `limitBytes` (which only bounds a response).

use super::errors::{ApiError, human_duration};
use super::{Cluster, admission, pods, wait};
use futures::AsyncBufReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use kube::runtime::watcher;
use std::time::Duration;

/// Waits until the pod of Job `job` in `ns` runs (or already finished) and returns its
/// name. A pod that will never start (see [`pods::start_failure_is_permanent`]; a transient
/// pull error such as a registry's 429 is waited out while the kubelet retries), a pod that
/// admission refuses (the Job's `FailedCreate` event, see [`admission::job_refused`]), a
/// refused watch, or no running pod within `deadline` (a pull that keeps failing, a pod
/// nothing schedules) is an error explained with the pod's state and the Events of the pod
/// and the Job.
pub async fn wait_started(
    cluster: &Cluster,
    ns: &str,
    job: &str,
    deadline: Duration,
) -> Result<String, String> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let config = watcher::Config::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let mut tracker = pods::StartTracker::default();
    let started = wait::until(&api, config, deadline, |pods| {
        pods.iter().find_map(|p| {
            if matches!(pods::phase(p).as_str(), "Running" | "Succeeded" | "Failed") {
                return Some(Ok(p.clone()));
            }
            tracker
                .permanent_failure(p)
                .map(|problem| Err((Box::new(p.clone()), problem)))
        })
    });
    // Without the right to watch Events the refusal is not seen early; the deadline still
    // ends the wait, with the Job's Events in the message.
    let refused = async {
        match admission::job_refused(cluster, ns, job, deadline).await {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    };
    let waited = tokio::select! {
        waited = started => waited,
        reason = refused => {
            return Err(admission::describe(&format!("job {ns}/{job}"), &reason));
        }
    };
    let the_pod = format!("the pod of job {ns}/{job}");
    let (pod, subject) = match waited {
        Ok(Ok(pod)) => return Ok(kube::ResourceExt::name_any(&pod)),
        Ok(Err((pod, problem))) => (Some(*pod), format!("{the_pod} cannot start ({problem})")),
        Err(wait::Timeout {
            refused: Some(e), ..
        }) => return Err(format!("cannot follow {the_pod}: {e}")),
        Err(t) => {
            let within = format!("within {} (--pod-start-timeout)", human_duration(deadline));
            match t.last.first().cloned() {
                Some(p) => (Some(p), format!("{the_pod} did not start {within}")),
                None => (None, format!("job {ns}/{job} created no pod {within}")),
            }
        }
    };
    let mut details = Vec::new();
    if let Some(p) = &pod {
        let name = kube::ResourceExt::name_any(p);
        details.push(pods::describe(p, &|_| String::new()));
        details.extend(
            wait::recent_events(&cluster.client, ns, "Pod", &name, cluster.request_timeout).await,
        );
    }
    details.extend(
        wait::recent_events(&cluster.client, ns, "Job", job, cluster.request_timeout)
            .await
            .into_iter()
            .map(|e| format!("job: {e}")),
    );
    Err(format!("{subject}: {}", details.join("; ")))
}

/// Deletes the pods of Job `job` in `ns` (each gets SIGTERM and its termination grace
/// period to clean up after itself) and waits, by watching, at most `deadline` until they
/// are gone; the caller then deletes their namespace. Deleting the namespace at once takes
/// longer: the namespace controller estimates the pods' remaining grace period and waits
/// it out before it looks again, however soon the pods exit (upstream
/// `estimateGracefulTermination`: e.g. 80 s for a runner that cleaned up in 6 s). Pods
/// that cannot be deleted (a missing right) or do not go in time are left to the namespace
/// deletion: the error says why.
pub async fn delete_pods(
    cluster: &Cluster,
    ns: &str,
    job: &str,
    deadline: Duration,
) -> Result<(), String> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let selector = format!("batch.kubernetes.io/job-name={job}");
    cluster
        .call(
            &format!("delete the pods of job {ns}/{job}"),
            api.delete_collection(
                &kube::api::DeleteParams::background(),
                &kube::api::ListParams::default().labels(&selector),
            ),
        )
        .await
        .map_err(|e| e.to_string())?;
    wait::until(
        &api,
        watcher::Config::default().labels(&selector),
        deadline,
        |pods| pods.is_empty().then_some(()),
    )
    .await
    .map_err(|t| match t.refused {
        Some(e) => format!("cannot watch the pods of job {ns}/{job}: {e}"),
        None => format!(
            "the pods of job {ns}/{job} were not gone within {}",
            human_duration(deadline)
        ),
    })
}

/// What [`follow`] hands over.
pub enum LogEvent<'a> {
    /// One line of the container's output, in order, each exactly once.
    Line(&'a str),
    /// Something about the following itself (a stream that was cut and resumed).
    Note(String),
}

/// How following ended.
#[derive(Debug)]
pub enum Followed {
    /// The container has terminated (per the pod's status); the pod as last read, and how
    /// often the stream had to be resumed.
    Terminated { pod: Box<Pod>, resumed: usize },
    /// The pod was deleted before its container terminated.
    Gone,
}

/// Whether `container` (default: the first) of `pod` has terminated for good: the pod is
/// Succeeded/Failed, or it never restarts and the container's state is `terminated`.
pub fn container_finished(pod: &Pod, container: Option<&str>) -> bool {
    if matches!(pods::phase(pod).as_str(), "Succeeded" | "Failed") {
        return true;
    }
    let never_restarts =
        pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never");
    never_restarts
        && pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .find(|c| container.is_none_or(|n| c.name == n))
            .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
}

/// Where a resumed stream picks up: the last delivered line's timestamp and how many lines
/// with exactly that timestamp were delivered.
#[derive(Debug, Default)]
struct Resume {
    last: Option<jiff::Timestamp>,
    at_last: usize,
    /// Lines at `last` still to drop in the current stream.
    skip: usize,
}

impl Resume {
    /// `sinceTime` of the next request: the last timestamp rounded down to the second.
    fn since(&self) -> Option<jiff::Timestamp> {
        self.last
            .and_then(|t| jiff::Timestamp::from_second(t.as_second()).ok())
    }

    fn start_stream(&mut self) {
        self.skip = self.at_last;
    }

    /// Whether a line stamped `at` is new (and, if so, remember it).
    fn accept(&mut self, at: jiff::Timestamp) -> bool {
        match self.last {
            Some(last) if at < last => false,
            Some(last) if at == last && self.skip > 0 => {
                self.skip -= 1;
                false
            }
            Some(last) if at == last => {
                self.at_last += 1;
                true
            }
            _ => {
                self.last = Some(at);
                self.at_last = 1;
                self.skip = 0;
                true
            }
        }
    }
}

/// Splits `<RFC3339Nano timestamp> <text>`.
fn stamped(line: &str) -> Option<(jiff::Timestamp, &str)> {
    let (at, text) = line.split_once(' ').unwrap_or((line, ""));
    Some((at.parse().ok()?, text))
}

/// Reads one stream to its end, delivering new complete lines (and, in the final stream,
/// an unterminated last line). Returns how many lines it delivered and, if the stream
/// broke, why.
async fn read_stream(
    stream: impl futures::AsyncBufRead,
    resume: &mut Resume,
    last_stream: bool,
    on: &mut impl FnMut(LogEvent<'_>),
) -> (usize, Option<String>) {
    let mut stream = std::pin::pin!(stream);
    let mut delivered = 0;
    let mut buf = Vec::new();
    resume.start_stream();
    loop {
        buf.clear();
        let broke = match stream.read_until(b'\n', &mut buf).await {
            Ok(0) => return (delivered, None),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        let complete = buf.last() == Some(&b'\n');
        if complete || (last_stream && broke.is_none()) {
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim_end_matches('\n').trim_end_matches('\r');
            match stamped(text) {
                Some((at, line)) if resume.accept(at) => {
                    on(LogEvent::Line(line));
                    delivered += 1;
                }
                Some(_) => {}
                None => {
                    on(LogEvent::Line(text));
                    delivered += 1;
                }
            }
        }
        if broke.is_some() {
            return (delivered, broke);
        }
        if !complete {
            // An unterminated line ends the stream.
            return (delivered, None);
        }
    }
}

/// How long the pod's status may lag behind the end of a container's log stream: the
/// kubelet's pod lifecycle relist runs every second, then the status is written.
const STATUS_LAG: Duration = Duration::from_secs(5);

/// Shortest and longest pause before resuming a stream that brought nothing new; the pause
/// is a watch on the pod, so a container that terminates ends it at once.
const RESUME_PAUSE: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(10));

/// Hands the log of `container` (default: the only one) of pod `ns/pod` to `on`, line by
/// line and each line once, until the pod's status says the container has terminated
/// (or the pod is gone). A stream that ends while the container runs (once the status has
/// had [`STATUS_LAG`] to catch up with a stream the server ended) is resumed; transient
/// API errors are retried. `Err` only for an answer no retry can change: 401/403 (a
/// missing right, named in the message).
pub async fn follow(
    cluster: &Cluster,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    mut on: impl FnMut(LogEvent<'_>),
) -> Result<Followed, ApiError> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let mut resume = Resume::default();
    let mut pause = RESUME_PAUSE.0;
    let mut resumed = 0usize;
    let refused = |e: &ApiError| matches!(e.code, Some(401 | 403));
    loop {
        let current = match cluster
            .call(&format!("read pod {ns}/{pod}"), api.get_opt(pod))
            .await
        {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(Followed::Gone),
            Err(e) if refused(&e) => return Err(e),
            Err(e) => {
                on(LogEvent::Note(format!("{e}; retrying")));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RESUME_PAUSE.1);
                continue;
            }
        };
        // Decided before the stream starts: a stream that begins after the container has
        // terminated holds everything that is left.
        let finished = container_finished(&current, container);
        let params = LogParams {
            follow: true,
            timestamps: true,
            container: container.map(str::to_string),
            since_time: resume.since(),
            ..Default::default()
        };
        let what = format!("follow the log of pod {ns}/{pod}");
        let (delivered, broke) = match api.log_stream(pod, &params).await {
            Ok(stream) => read_stream(stream, &mut resume, finished, &mut on).await,
            Err(e) => {
                let e = ApiError::from_kube(&what, &e);
                if refused(&e) {
                    return Err(e);
                }
                (0, Some(e.to_string()))
            }
        };
        if finished {
            return Ok(Followed::Terminated {
                pod: Box::new(current),
                resumed,
            });
        }
        // The kubelet ends a followed log when the container exits, and reports the exit in
        // the pod's status only afterwards (its pod lifecycle relist, then the status
        // update): a stream the server closed in order is most likely that end. Wait (by
        // watching) for the status to say so before taking it for a cut; then the next
        // round reads what is left and returns.
        if broke.is_none()
            && wait::object(&api, pod, STATUS_LAG, |p| {
                p.is_none_or(|p| container_finished(p, container))
                    .then_some(())
            })
            .await
            .is_ok()
        {
            continue;
        }
        if resumed == 0 {
            on(LogEvent::Note(format!(
                "the log stream of pod {ns}/{pod} ended while its container runs ({}); \
                 following resumes from the last line seen (an idle timeout of a load \
                 balancer in front of the API server, or an API server restart)",
                broke
                    .as_deref()
                    .map(one_line_text)
                    .unwrap_or_else(|| "closed by the server".into())
            )));
        }
        resumed += 1;
        if delivered > 0 {
            pause = RESUME_PAUSE.0;
        }
        // Wait (by watching) until the container terminates, at most `pause`.
        let _ = wait::object(&api, pod, pause, |p| {
            p.is_none_or(|p| container_finished(p, container))
                .then_some(())
        })
        .await;
        if delivered == 0 {
            pause = (pause * 2).min(RESUME_PAUSE.1);
        }
    }
}

fn one_line_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The log of pod `ns/pod` (of `container`, default the only one), whole, for a record of
/// a run that ended (e.g. a runner Job that failed).
pub async fn read_log(
    cluster: &Cluster,
    ns: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<String, ApiError> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let params = LogParams {
        container: container.map(str::to_string),
        ..Default::default()
    };
    cluster
        .call(
            &format!("read the log of pod {ns}/{pod}"),
            api.logs(pod, &params),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_resumed_stream_delivers_each_line_once() {
        let mut r = Resume::default();
        r.start_stream();
        assert!(r.accept(at("2026-01-01T10:00:00.100Z")));
        assert!(r.accept(at("2026-01-01T10:00:01.200Z")));
        assert!(r.accept(at("2026-01-01T10:00:01.200Z")));
        // Cut. The next request starts at the second of the last line.
        assert_eq!(r.since(), Some(at("2026-01-01T10:00:01Z")));
        r.start_stream();
        assert!(!r.accept(at("2026-01-01T10:00:01.000Z")));
        assert!(!r.accept(at("2026-01-01T10:00:01.200Z")));
        assert!(!r.accept(at("2026-01-01T10:00:01.200Z")));
        // A third line with the same stamp was not seen before.
        assert!(r.accept(at("2026-01-01T10:00:01.200Z")));
        assert!(r.accept(at("2026-01-01T10:00:02Z")));
        assert_eq!(
            stamped("2026-01-01T10:00:02.123456789Z hello world"),
            Some((at("2026-01-01T10:00:02.123456789Z"), "hello world"))
        );
        assert_eq!(stamped("no stamp"), None);
    }
}
