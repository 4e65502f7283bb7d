//! In-cluster runs of the suite in the simulator:
//! - Service account tokens, the legacy way the API server authenticates them: a Secret of
//!   type `kubernetes.io/service-account-token` (annotation
//!   `kubernetes.io/service-account.name`) whose `data.token` is the token. Requests with such
//!   a token are made by `system:serviceaccount:<namespace>:<name>` (recorded per request).
//! - Reading a pod's log (`pods/{name}/log`) with the kubelet's `timestamps` (each line
//!   prefixed with its RFC 3339 time with nanoseconds and a space) and `sinceTime` (RFC 3339,
//!   seconds; lines written at or after it) parameters; following it (`follow=true`): the
//!   stream ends when the container has terminated (or the pod is gone).
//! - [`register_suite_image`]: the kubelet runs the REAL binary for containers of the suite's
//!   image, as a pod gets it: `KUBERNETES_SERVICE_HOST`/`_PORT` pointing at the simulator,
//!   the service account token, `ca.crt` and `namespace` at
//!   `/var/run/secrets/kubernetes.io/serviceaccount/`, configMap and secret volumes at their mount
//!   paths under `/var/run`, emptyDirs at `/tmp` or under it (one directory per pod and
//!   volume, shared by the pod's containers: [`empty_dir`]). The paths are provided in a private
//!   mount namespace (bind mounts over `/var/run` and `/tmp` that only the child sees;
//!   needs root). Deleting the pod sends SIGTERM (then SIGKILL after the grace period).

use super::SimCluster;
use super::server::{Body, Shared};
use super::spec::{PodContext, ProgramResult};
use super::store::SharedStore;
use super::util::{ApiError, random_suffix, str_at};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const SA_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The service account a bearer token belongs to, if any.
pub(super) fn service_account_of(shared: &Shared, token: &str) -> Option<String> {
    let encoded = base64(token.as_bytes());
    let store = shared.store.lock();
    store
        .iter("secrets")
        .find(|s| str_at(s, "type") == SA_TOKEN_TYPE && str_at(s, "data.token") == encoded)
        .map(|s| {
            let sa = s
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .unwrap_or("default");
            format!(
                "system:serviceaccount:{}:{sa}",
                str_at(s, "metadata.namespace")
            )
        })
}

fn container_done(store: &SharedStore, ns: &str, name: &str) -> bool {
    let store = store.lock();
    match store.get("pods", ns, name) {
        None => true,
        Some(p) => {
            matches!(str_at(p, "status.phase"), "Succeeded" | "Failed")
                || p.get("status")
                    .and_then(|s| s.get("containerStatuses"))
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter()
                            .all(|c| c.get("state").and_then(|s| s.get("terminated")).is_some())
                    })
        }
    }
}

/// The kubelet's log parameters the simulator honours.
#[derive(Debug, Default, Clone)]
pub(super) struct LogOptions {
    timestamps: bool,
    since: Option<jiff::Timestamp>,
}

impl LogOptions {
    pub(super) fn parse(query: &HashMap<String, String>) -> Result<LogOptions, ApiError> {
        let since = match query.get("sinceTime") {
            None => None,
            Some(t) => Some(t.parse::<jiff::Timestamp>().map_err(|e| {
                ApiError::bad_request(format!("sinceTime: parsing time {t:?} as RFC3339: {e}"))
            })?),
        };
        Ok(LogOptions {
            timestamps: matches!(
                query.get("timestamps").map(String::as_str),
                Some("true" | "1")
            ),
            since,
        })
    }

    /// The lines at or after `since`, with their time in front when asked for.
    pub(super) fn render(&self, lines: &[(jiff::Timestamp, String)]) -> String {
        lines
            .iter()
            .filter(|(at, _)| self.since.is_none_or(|s| *at >= s))
            .map(|(at, line)| {
                if self.timestamps {
                    format!("{at} {line}")
                } else {
                    line.clone()
                }
            })
            .collect()
    }
}

/// `GET pods/{name}/log?follow=true`: the log so far, then what is appended, until the
/// container has terminated. Complete lines go out as they are written; an unterminated
/// last line only at the end.
pub(super) fn follow_log(
    shared: &Arc<Shared>,
    ns: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let options = LogOptions::parse(query)?;
    let store = shared.store.clone();
    let (ns, name) = (ns.to_string(), name.to_string());
    let stream = futures::stream::unfold((0usize, false), move |(sent, ended)| {
        let store = store.clone();
        let (ns, name) = (ns.clone(), name.clone());
        let options = options.clone();
        async move {
            if ended {
                return None;
            }
            loop {
                // Decide "done" before reading, so nothing written before the end is lost.
                let done = container_done(&store, &ns, &name);
                let mut lines = store.lock().pod_log_lines(&ns, &name);
                if !done && lines.last().is_some_and(|(_, l)| !l.ends_with('\n')) {
                    lines.pop();
                }
                if lines.len() > sent {
                    let chunk = Bytes::from(options.render(&lines[sent..]));
                    return Some((Ok::<_, Infallible>(Frame::data(chunk)), (lines.len(), done)));
                }
                if done {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
    });
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(StreamBody::new(stream).boxed())
        .unwrap_or_else(|_| Response::new(http_body_util::Full::new(Bytes::new()).boxed())))
}

/// Runs the real binary for containers whose image starts with `image_prefix`.
pub fn register_suite_image(sim: &SimCluster, image_prefix: &str) {
    let port = sim.url().rsplit(':').next().unwrap_or_default().to_string();
    let ca = sim.ca_pem();
    sim.register_program(image_prefix, move |ctx| run_container(ctx, &port, &ca));
}

fn volume_mounts(ctx: &PodContext) -> Vec<(String, Value)> {
    let container = ctx
        .pod
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| str_at(c, "name") == ctx.container_name))
        .cloned()
        .unwrap_or_default();
    let volumes: Vec<Value> = ctx
        .pod
        .get("spec")
        .and_then(|s| s.get("volumes"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let v = volumes
                .iter()
                .find(|v| str_at(v, "name") == str_at(m, "name"))?;
            Some((str_at(m, "mountPath").to_string(), v.clone()))
        })
        .collect()
}

/// The directory of emptyDir `volume` of the pod with `uid`: one per pod and volume, shared
/// by the pod's containers (as a kubelet does), alive as long as the test process.
pub fn empty_dir(uid: &str, volume: &str) -> PathBuf {
    static DIRS: OnceLock<Mutex<BTreeMap<(String, String), tempfile::TempDir>>> = OnceLock::new();
    let mut dirs = DIRS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    dirs.entry((uid.to_string(), volume.to_string()))
        .or_insert_with(|| tempfile::tempdir().expect("emptyDir"))
        .path()
        .to_path_buf()
}

/// Where a container's path lies on the host if it is inside an emptyDir of the pod.
pub fn host_path(ctx: &PodContext, path: &str) -> Option<PathBuf> {
    let uid = str_at(&ctx.pod, "metadata.uid");
    volume_mounts(ctx)
        .into_iter()
        .filter(|(_, v)| v.get("emptyDir").is_some())
        .find_map(|(mount, v)| {
            let rel = Path::new(path).strip_prefix(&mount).ok()?;
            Some(empty_dir(uid, str_at(&v, "name")).join(rel))
        })
}

fn run_container(ctx: &PodContext, port: &str, ca: &str) -> ProgramResult {
    let dir = tempfile::tempdir().expect("pod dir");
    let run = dir.path().join("run");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let sa_dir = run.join("secrets/kubernetes.io/serviceaccount");
    std::fs::create_dir_all(&sa_dir).expect("sa dir");
    let automount = ctx
        .pod
        .get("spec")
        .and_then(|s| s.get("automountServiceAccountToken"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if automount {
        let sa = str_at(&ctx.pod, "spec.serviceAccountName");
        let sa = if sa.is_empty() { "default" } else { sa };
        let token = format!("sa-{}-{}", random_suffix(16), random_suffix(16));
        let secret = json!({
            "metadata": {
                "name": format!("{sa}-token-{}", random_suffix(5)),
                "namespace": ctx.namespace,
                "annotations": {"kubernetes.io/service-account.name": sa},
            },
            "type": SA_TOKEN_TYPE,
            "data": {"token": base64(token.as_bytes())},
        });
        if ctx.store.lock().create("secrets", secret).is_err() {
            return ProgramResult::fail(128, "cannot create the service account token");
        }
        std::fs::write(sa_dir.join("token"), &token).expect("token");
        std::fs::write(sa_dir.join("ca.crt"), ca).expect("ca");
        std::fs::write(sa_dir.join("namespace"), &ctx.namespace).expect("namespace");
    }
    let uid = str_at(&ctx.pod, "metadata.uid").to_string();
    // Bind mounts in order: an emptyDir under /tmp goes onto its mount point in the
    // container's own /tmp (host paths, still visible), then that /tmp (recursively) over
    // /tmp: mounting over /tmp first would hide the emptyDir's host directory.
    let mut binds: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (path, volume) in volume_mounts(ctx) {
        if let Some(ed) = volume
            .get("emptyDir")
            .map(|_| empty_dir(&uid, str_at(&volume, "name")))
        {
            if path == "/tmp" {
                binds.push((ed, PathBuf::from("/tmp")));
            } else if let Some(rel) = path.strip_prefix("/tmp/") {
                std::fs::create_dir_all(tmp.join(rel)).expect("mount point");
                binds.insert(0, (ed, tmp.join(rel)));
                if !binds.iter().any(|(_, t)| t == Path::new("/tmp")) {
                    binds.push((tmp.clone(), PathBuf::from("/tmp")));
                }
            } else {
                return ProgramResult::fail(128, format!("unsupported volume mount {path}"));
            }
        } else if let Some(rel) = path.strip_prefix("/var/run/")
            && let Some((resource, source, name_key)) = [
                ("configmaps", "configMap", "name"),
                ("secrets", "secret", "secretName"),
            ]
            .into_iter()
            .find_map(|(r, key, name)| volume.get(key).map(|v| (r, v, name)))
        {
            let target = run.join(rel);
            std::fs::create_dir_all(&target).expect("volume dir");
            let store = ctx.store.lock();
            let Some(obj) = store.get(resource, &ctx.namespace, str_at(source, name_key)) else {
                return ProgramResult::fail(128, format!("{resource} volume not found"));
            };
            for (k, v) in obj
                .get("data")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let text = v.as_str().unwrap_or_default();
                // Secret data is base64; ConfigMap data is text.
                let bytes = if resource == "secrets" {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .unwrap_or_default()
                } else {
                    text.as_bytes().to_vec()
                };
                std::fs::write(target.join(k), bytes).expect("file");
            }
        } else {
            return ProgramResult::fail(128, format!("unsupported volume mount {path}"));
        }
    }

    let cstr = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    let run_src = cstr(&run);
    let binds: Vec<(std::ffi::CString, std::ffi::CString)> =
        binds.iter().map(|(s, t)| (cstr(s), cstr(t))).collect();
    // The pod's volumes are mounted over /var/run and /tmp, which may hide the binary (a
    // checkout under /tmp). Open it first and exec it through its descriptor.
    let binary = match std::fs::File::open(super::binary::BIN) {
        Ok(f) => f,
        Err(e) => return ProgramResult::fail(128, format!("cannot open the suite binary: {e}")),
    };
    let binary_fd = std::os::fd::AsRawFd::as_raw_fd(&binary);
    let mut cmd = Command::new(format!("/proc/self/fd/{binary_fd}"));
    std::os::unix::process::CommandExt::arg0(&mut cmd, "scs-kaas-check");
    cmd.env_clear()
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", port)
        .env("PATH", "/usr/bin:/bin")
        .args(ctx.command.iter().skip(1).chain(ctx.args.iter()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe syscalls between fork and exec, on pre-built strings.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            // Keep the binary's descriptor open across exec (std opens files close-on-exec).
            if libc::fcntl(binary_fd, libc::F_SETFD, 0) != 0 {
                return fail();
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            let root = c"/";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return fail();
            }
            let var_run = c"/var/run";
            if libc::mount(
                run_src.as_ptr(),
                var_run.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                return fail();
            }
            for (src, target) in &binds {
                if libc::mount(
                    src.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                {
                    return fail();
                }
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    drop(binary);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return ProgramResult::fail(128, format!("cannot start the container: {e}")),
    };
    let log = Arc::new(Mutex::new(String::new()));
    // The pod's log so far (containers before this one ran first) stays in front.
    let prefix = ctx
        .store
        .lock()
        .pod_log(&ctx.namespace, &ctx.pod_name)
        .unwrap_or_default()
        .to_string();
    let pump = |stream: Box<dyn std::io::Read + Send>| {
        let log = log.clone();
        let prefix = prefix.clone();
        let store = ctx.store.clone();
        let (ns, name) = (ctx.namespace.clone(), ctx.pod_name.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(&line);
                l.push('\n');
                store.lock().set_pod_log(&ns, &name, format!("{prefix}{l}"));
            }
        })
    };
    let out = pump(Box::new(child.stdout.take().expect("stdout")));
    let err = pump(Box::new(child.stderr.take().expect("stderr")));
    let grace = ctx
        .pod
        .get("spec")
        .and_then(|s| s.get("terminationGracePeriodSeconds"))
        .and_then(Value::as_u64)
        .unwrap_or(30);
    let mut term_sent: Option<Instant> = None;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        let gone = {
            let store = ctx.store.lock();
            store
                .get("pods", &ctx.namespace, &ctx.pod_name)
                .is_none_or(|p| str_at(p, "metadata.uid") != uid)
        };
        match term_sent {
            None if gone => {
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                term_sent = Some(Instant::now());
            }
            Some(at) if at.elapsed() > Duration::from_secs(grace) => {
                let _ = child.kill();
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = out.join();
    let _ = err.join();
    let text = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    ProgramResult {
        exit_code: status.code().unwrap_or(137),
        log: text,
    }
}

/// The service account of in-cluster runners (`system:serviceaccount:<ns>:scs-kaas-check`).
const RUNNER_ACCOUNT: &str = ":scs-kaas-check";

/// Every request the in-cluster runner made with its service account was granted by its
/// RBAC (the simulator authorizes service accounts like an API server): the ClusterRole
/// `gen` prints covers every call, including calls whose refusal the code would survive.
/// Returns how many requests the runner made.
pub fn assert_runner_granted(sim: &SimCluster) -> usize {
    let mine: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| {
            r.user.starts_with("system:serviceaccount:") && r.user.ends_with(RUNNER_ACCOUNT)
        })
        .collect();
    let refused: Vec<String> = mine
        .iter()
        .filter(|r| r.status == 403)
        .map(|r| {
            format!(
                "{} {}?{} ({} {}/{})",
                r.method, r.path, r.query, r.verb, r.resource, r.subresource
            )
        })
        .collect();
    assert!(
        refused.is_empty(),
        "the runner's RBAC does not grant:\n{}",
        refused.join("\n")
    );
    mine.len()
}
