//! SIGINT and SIGTERM: the first asks the run to stop and clean up, the second exits at
//! once (naming the `delete` command that removes what is left).

use crate::console;
use tokio::sync::watch;

/// Waits for SIGINT/SIGTERM. First signal: sets `cancel` to `true`. Second: exits the
/// process with status 130 without cleanup, after printing the `delete` command for
/// `run_id`.
pub async fn watch(cancel: watch::Sender<bool>, run_id: String) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        console::caution(
            "cannot install signal handlers; an interrupted run may leave objects behind",
        );
        return;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    console::caution(&format!(
        "{name} received: stopping the checks and deleting what this run created \
         (interrupt again to exit at once)"
    ));
    let _ = cancel.send(true);
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
    console::critical(&format!(
        "interrupted again: exiting without cleanup; run `scs-kaas-check delete --run-id {run_id}`"
    ));
    std::process::exit(130);
}
