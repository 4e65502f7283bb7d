//! The results sidecar of an upstream e2e run (`e2e-collect`, this suite's image next to
//! the conformance container): it waits for the `done` file the conformance image writes
//! into the shared results directory, then stores `junit_01.xml` and `e2e.log` whole (a
//! conformance `junit_01.xml` is ~2.3 MB) as a bundle of ConfigMaps of the pod's namespace
//! (`cluster::bundle`). Results it cannot store end it with a `CRITICAL:` line and exit code 3.

use super::{DONE_KEY, JUNIT_KEY, LOG_KEY};
use crate::cluster::bundle;
use crate::cluster::config::ConnectOptions;
use crate::cluster::preflight::{self, ConnectError};
use crate::console;
use crate::outcome::{EXIT_ABORT, EXIT_OK, EXIT_USAGE};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

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
        let connect = ConnectOptions {
            kubeconfig: Vec::new(),
            context: Vec::new(),
            request_timeout: args.request_timeout,
        };
        let client = match preflight::connect_one(&connect).await {
            Ok((client, _)) => client,
            Err(e) => {
                console::critical(&e.to_string());
                return match e {
                    ConnectError::Config(_) => EXIT_USAGE,
                    ConnectError::Unreachable(_) => EXIT_ABORT,
                };
            }
        };
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
        let stored = bundle::store(
            &client,
            args.request_timeout,
            &args.configmap,
            data,
            BTreeMap::new(),
        )
        .await;
        match stored {
            Ok(line) => {
                console::note(&line);
                EXIT_OK
            }
            Err(e) => {
                console::critical(&format!("cannot store the e2e results: {e}"));
                EXIT_ABORT
            }
        }
    })
}
