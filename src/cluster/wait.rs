//! Waiting by watching: every wait follows a watch stream with a deadline; nothing polls.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use super::errors::{ApiError, human_duration};

/// A wait that ended without reaching its goal: it ran out of time, or the API refused the
/// watch (`refused`), with the last state seen (for the message).
#[derive(Debug)]
pub struct Timeout<K> {
    pub after: Duration,
    pub last: Vec<K>,
    /// The last watch error, if the watch itself had trouble.
    pub watch_error: Option<String>,
    /// The API refused to list or watch (401/403): waiting longer cannot help, and the
    /// caller must report it as undecided (ABORT) naming the missing right, never as a
    /// failure of the cluster under test.
    pub refused: Option<ApiError>,
}

impl<K> std::fmt::Display for Timeout<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(e) = &self.refused {
            return write!(f, "the wait was refused: {e}");
        }
        write!(f, "not reached within {}", human_duration(self.after))?;
        if let Some(e) = &self.watch_error {
            write!(f, " (watch error: {e})")?;
        }
        Ok(())
    }
}

/// The refusal in a watch error: the API answered 401 or 403 to the list or the watch
/// (RBAC without `list`/`watch`). kube's watcher would retry it forever.
fn refusal<K>(api: &Api<K>, e: &watcher::Error) -> Option<ApiError>
where
    K: Resource,
    K::DynamicType: Default,
{
    let (verb, error) = match e {
        watcher::Error::InitialListFailed(e) => ("list", e),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => ("watch", e),
        watcher::Error::WatchError(status) if matches!(status.code, 401 | 403) => {
            return Some(ApiError {
                code: Some(status.code),
                message: format!(
                    "watch {}: {} {}: {}",
                    K::plural(&Default::default()),
                    status.code,
                    status.reason,
                    status.message
                ),
            });
        }
        _ => return None,
    };
    let kube::Error::Api(status) = error else {
        return None;
    };
    if !matches!(status.code, 401 | 403) {
        return None;
    }
    let what = format!(
        "{verb} {}{}",
        K::plural(&Default::default()),
        api.namespace()
            .map(|ns| format!(" in namespace {ns}"))
            .unwrap_or_default()
    );
    Some(ApiError::from_kube(&what, error))
}

/// Watches the objects `config` selects and returns what `done` extracts from the current
/// set as soon as it returns `Some`, or the last set seen when `deadline` passes. A list or
/// watch the API refuses (401/403) ends the wait at once with `refused` set.
pub async fn until<K, T>(
    api: &Api<K>,
    config: watcher::Config,
    deadline: Duration,
    mut done: impl FnMut(&[K]) -> Option<T>,
) -> Result<T, Timeout<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let mut current: BTreeMap<String, K> = BTreeMap::new();
    let mut pending: BTreeMap<String, K> = BTreeMap::new();
    let mut synced = false;
    let mut watch_error = None;
    let stream = watcher(api.clone(), config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let sleep = tokio::time::sleep(deadline);
    let mut sleep = std::pin::pin!(sleep);
    let key = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
    loop {
        let event = tokio::select! {
            _ = &mut sleep => break,
            event = stream.next() => event,
        };
        match event {
            None => break,
            Some(Err(e)) => {
                if let Some(refused) = refusal(api, &e) {
                    return Err(Timeout {
                        after: deadline,
                        last: current.into_values().collect(),
                        watch_error: Some(e.to_string()),
                        refused: Some(refused),
                    });
                }
                watch_error = Some(e.to_string());
            }
            Some(Ok(event)) => {
                match event {
                    watcher::Event::Init => pending.clear(),
                    watcher::Event::InitApply(o) => {
                        pending.insert(key(&o), o);
                    }
                    watcher::Event::InitDone => {
                        current = std::mem::take(&mut pending);
                        synced = true;
                    }
                    watcher::Event::Apply(o) => {
                        current.insert(key(&o), o);
                    }
                    watcher::Event::Delete(o) => {
                        current.remove(&key(&o));
                    }
                }
                if synced {
                    let objects: Vec<K> = current.values().cloned().collect();
                    if let Some(result) = done(&objects) {
                        return Ok(result);
                    }
                }
            }
        }
    }
    Err(Timeout {
        after: deadline,
        last: current.into_values().collect(),
        watch_error,
        refused: None,
    })
}

/// Waits until the named object satisfies `done` (it receives `None` while absent).
pub async fn object<K, T>(
    api: &Api<K>,
    name: &str,
    deadline: Duration,
    mut done: impl FnMut(Option<&K>) -> Option<T>,
) -> Result<T, Timeout<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    until(api, config, deadline, |objects| done(objects.first())).await
}

/// Waits until the named object no longer exists.
pub async fn until_deleted<K>(
    api: &Api<K>,
    name: &str,
    deadline: Duration,
) -> Result<(), Timeout<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    object(api, name, deadline, |o| o.is_none().then_some(())).await
}

/// When an event last happened. Events written through `events.k8s.io/v1` (kube-scheduler,
/// newer controllers) have no `lastTimestamp`/`firstTimestamp` when read as `core/v1`:
/// they carry `series.lastObservedTime` (when repeated) and `eventTime` instead.
pub fn event_time(e: &Event) -> Option<jiff::Timestamp> {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or(e.last_timestamp.as_ref().map(|t| t.0))
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.first_timestamp.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// How often an event happened: `count` (core/v1 recorders) or `series.count`
/// (`events.k8s.io/v1` recorders; a single occurrence has no series).
pub fn event_count(e: &Event) -> i32 {
    e.series
        .as_ref()
        .and_then(|s| s.count)
        .or(e.count)
        .unwrap_or(1)
}

/// The most recent events about the object of kind `kind` (e.g. `Pod`, `Service`) named
/// `name`, oldest first, as `Type Reason: message (xN)` lines. The kind matters: a
/// Deployment and a Service may share a name.
pub async fn recent_events(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
    request_timeout: Duration,
) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().fields(&format!(
        "involvedObject.kind={kind},involvedObject.name={name}"
    ));
    let Ok(Ok(list)) = tokio::time::timeout(request_timeout, api.list(&params)).await else {
        return vec![format!(
            "(events of {kind} {namespace}/{name} could not be read)"
        )];
    };
    let mut events = list.items;
    events.sort_by_key(event_time);
    events
        .iter()
        .rev()
        .take(10)
        .rev()
        .map(|e| {
            let count = match event_count(e) {
                n if n > 1 => format!(" (x{n})"),
                _ => String::new(),
            };
            format!(
                "{} {}: {}{count}",
                e.type_.as_deref().unwrap_or("Normal"),
                e.reason.as_deref().unwrap_or("-"),
                e.message.as_deref().unwrap_or("").trim()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events as `core/v1` shows them: the kubelet's (core/v1 recorder) and the
    /// scheduler's (events.k8s.io/v1 recorder: eventTime, series, no timestamps or count).
    #[test]
    fn events_of_both_apis_are_ordered_and_counted() {
        let kubelet: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p.1", "namespace": "n", "creationTimestamp": "2026-01-01T10:00:00Z"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "Pulled", "type": "Normal", "message": "pulled",
            "count": 2,
            "firstTimestamp": "2026-01-01T10:00:00Z", "lastTimestamp": "2026-01-01T10:00:05Z",
        }))
        .unwrap();
        let scheduler: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p.2", "namespace": "n", "creationTimestamp": "2026-01-01T09:59:00Z"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "FailedScheduling", "type": "Warning", "message": "0/3 nodes",
            "eventTime": "2026-01-01T09:59:00.000000Z",
            "series": {"count": 4, "lastObservedTime": "2026-01-01T10:01:00.000000Z"},
            "reportingComponent": "default-scheduler", "action": "Scheduling",
            "firstTimestamp": null, "lastTimestamp": null,
        }))
        .unwrap();
        let mut events = [scheduler.clone(), kubelet.clone()];
        events.sort_by_key(event_time);
        assert_eq!(events[0].reason.as_deref(), Some("Pulled"));
        assert_eq!(events[1].reason.as_deref(), Some("FailedScheduling"));
        assert_eq!(event_count(&scheduler), 4);
        assert_eq!(event_count(&kubelet), 2);
        let mut single = scheduler;
        single.series = None;
        assert_eq!(event_count(&single), 1);
        assert_eq!(
            event_time(&single).map(|t| t.to_string()).as_deref(),
            Some("2026-01-01T09:59:00Z")
        );
    }
}
