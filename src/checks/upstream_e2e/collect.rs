//! The results sidecar of an upstream e2e run (`e2e-collect`, this suite's image next to
//! the conformance container): it waits for the `done` file the conformance image writes
//! into the shared results directory, then stores `junit_01.xml` and `e2e.log` whole (a
//! conformance `junit_01.xml` is ~2.3 MB) as a bundle of ConfigMaps of the pod's namespace
//! (`cluster::bundle`). It connects only once the results exist, and keeps trying for
//! [`STORE_PATIENCE`] when the API server cannot be reached or answers with a transient
//! error (a restart, a network blip, 429, 5xx): results of hours are not thrown away for a
//! moment's outage. Results it cannot store end it with a `CRITICAL:` line and exit code 3.

use super::{DONE_KEY, JUNIT_KEY, LOG_KEY};
use crate::cluster::bundle;
use crate::cluster::config::ConnectOptions;
use crate::cluster::errors::ApiError;
use crate::cluster::preflight::{self, ConnectError};
use crate::console;
use crate::outcome::{EXIT_ABORT, EXIT_OK, EXIT_USAGE};
use backon::{ExponentialBuilder, Retryable};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long the sidecar keeps trying to store the results while the API server cannot be
/// reached or answers with a transient error (10 minutes; retries back off from 1 s to 30 s).
pub const STORE_PATIENCE: Duration = Duration::from_secs(600);

/// Why one attempt to store the results failed.
#[derive(Debug)]
enum StoreError {
    /// The kubeconfig or in-cluster configuration cannot be used: retrying cannot help.
    Config(String),
    /// The API server could not be reached, or refused the results.
    Api(String, Transient),
}

/// Whether another attempt may succeed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transient {
    Yes,
    No,
}

impl StoreError {
    fn transient(&self) -> bool {
        matches!(self, StoreError::Api(_, Transient::Yes))
    }
}

/// No answer at all (refused, reset, timed out), 429 or a 5xx may pass; any other answer
/// (403, 422: results too large) will not.
fn transient(e: &ApiError) -> Transient {
    match e.code {
        None | Some(429) | Some(500..=599) => Transient::Yes,
        Some(_) => Transient::No,
    }
}

/// One attempt: connect (reading `/version`), then store the bundle.
async fn store_once(
    args: &CollectOptions,
    data: &BTreeMap<String, String>,
) -> Result<String, StoreError> {
    let connect = ConnectOptions {
        kubeconfig: Vec::new(),
        context: Vec::new(),
        request_timeout: args.request_timeout,
    };
    // An exec credential plugin that fails, or an unusable configuration, will not pass.
    let connection = preflight::connection_to_one(&connect)
        .await
        .map_err(|e| match e {
            ConnectError::Config(e) => StoreError::Config(e),
            ConnectError::Unreachable(e) => StoreError::Api(e, Transient::No),
        })?;
    connection
        .server_info(args.request_timeout)
        .await
        .map_err(|e| StoreError::Api(e.to_string(), transient(&e)))?;
    bundle::store(
        &connection.client,
        args.request_timeout,
        &args.configmap,
        data.clone(),
        BTreeMap::new(),
    )
    .await
    .map_err(|e| {
        let kind = transient(&e);
        StoreError::Api(format!("cannot store the e2e results: {e}"), kind)
    })
}

/// Where the sidecar finds the results and where it stores them.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// The results directory shared with the conformance container.
    pub results_dir: PathBuf,
    /// ConfigMap (in the pod's namespace) to store the results in.
    pub configmap: String,
    /// How long one API request may take.
    pub request_timeout: Duration,
}

/// `e2e-collect`: waits for `done`, then stores the results in the ConfigMap. Returns the
/// exit code.
pub fn collect(args: &CollectOptions) -> u8 {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            console::critical(&format!("cannot start the async runtime: {e}"));
            return EXIT_ABORT;
        }
    };
    rt.block_on(async {
        let done = args.results_dir.join("done");
        console::note(&format!("waiting for {}", done.display()));
        // A file in a shared emptyDir has no watch API; look every two seconds.
        while !done.exists() {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let mut data = BTreeMap::new();
        data.insert(
            DONE_KEY.to_string(),
            std::fs::read_to_string(&done).unwrap_or_default(),
        );
        match std::fs::read(args.results_dir.join(JUNIT_KEY)) {
            Ok(bytes) => {
                data.insert(
                    JUNIT_KEY.to_string(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                );
            }
            Err(e) => console::caution(&format!("no {JUNIT_KEY}: {e}")),
        }
        if let Ok(log) = std::fs::read(args.results_dir.join(LOG_KEY)) {
            data.insert(
                LOG_KEY.to_string(),
                String::from_utf8_lossy(&log).into_owned(),
            );
        }
        // Whether the results fit is decided here, once: retrying cannot change it, and a
        // failed attempt below is then one of the connection or the API server.
        if let Err(e) = bundle::pack(data.clone(), bundle::PART_BYTES, bundle::MAX_PARTS) {
            console::critical(&format!("cannot store the e2e results: {e}"));
            return EXIT_ABORT;
        }
        let stored = (|| store_once(args, &data))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_secs(1))
                    .with_max_delay(Duration::from_secs(30))
                    .with_total_delay(Some(STORE_PATIENCE))
                    .without_max_times(),
            )
            .when(StoreError::transient)
            .notify(|e, after| {
                if let StoreError::Api(e, _) = e {
                    console::caution(&format!("{e}; trying again in {after:?}"));
                }
            })
            .await;
        match stored {
            Ok(line) => {
                console::note(&line);
                EXIT_OK
            }
            Err(StoreError::Config(e)) => {
                console::critical(&e);
                EXIT_USAGE
            }
            Err(StoreError::Api(e, _)) => {
                console::critical(&e);
                EXIT_ABORT
            }
        }
    })
}
