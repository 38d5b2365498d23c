//! The shutdown signal, as a value passed into everything that runs.
//!
//! The order of a graceful stop, written once:
//! 1. the token is cancelled (SIGTERM or SIGINT), so `/readyz` turns 503 at once;
//! 2. consume loops stop taking records, finish the records in flight (within
//!    `KAFKA_DRAIN_TIMEOUT_MS`) and commit the stored offsets;
//! 3. HTTP APIs stop accepting and finish in-flight requests;
//! 4. producers flush what they still hold;
//! 5. the ops server stops;
//! 6. the telemetry guard is dropped, flushing spans.
//!
//! The whole stop stays under `SHUTDOWN_TIMEOUT_MS` ([`crate::ServiceConfig::shutdown_timeout`]),
//! which the Helm chart sets below the pod's `terminationGracePeriodSeconds`.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT. A second signal exits at once, and so does a
/// stop that overruns `budget`.
pub fn on_signal(budget: Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(
            budget_s = budget.as_secs(),
            "shutdown signal received; draining"
        );
        cancel.cancel();
        watchdog(budget);
        wait_for_signal().await;
        tracing::warn!("second signal received; exiting without draining");
        std::process::exit(130);
    });
    token
}

/// Ends the process if it is still running after `budget`. A plain thread, so that it fires even
/// when every runtime worker is stuck in a blocking call.
fn watchdog(budget: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        tracing::error!(
            budget_s = budget.as_secs(),
            "drain overran its budget; exiting"
        );
        std::process::exit(1);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
