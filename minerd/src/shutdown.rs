//! Shutdown: one future that resolves on SIGINT or SIGTERM, fanned out to every task through
//! a [`CancellationToken`], and a bounded drain.
//!
//! `minerd::run` takes the token, so tests (and the `Shutdown` RPC) trigger the same path as a
//! signal does.

use std::future::Future;
use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

/// How long the daemon waits for tasks to finish after shutdown begins.
pub const GRACE: Duration = Duration::from_secs(10);

/// Which signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (systemd stop, `kill`).
    Terminate,
}

/// Resolves when SIGINT or SIGTERM arrives. Installing the handlers fails only when the
/// runtime has no signal driver, which `main` always enables.
pub async fn signal() -> std::io::Result<Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => Ok(Signal::Terminate),
        _ = int.recv() => Ok(Signal::Interrupt),
    }
}

/// Cancels `token` when the first signal arrives (returns after that, or when the token is
/// cancelled by someone else first).
pub async fn cancel_on_signal(token: CancellationToken) {
    tokio::select! {
        res = signal() => {
            match res {
                Ok(sig) => tracing::info!(signal = ?sig, "shutdown requested by signal"),
                Err(e) => tracing::error!(error = %e, "cannot listen for signals; shutting down"),
            }
            token.cancel();
        }
        () = token.cancelled() => {}
    }
}

/// Awaits `fut` for at most `grace`; logs and gives up after that. Returns whether `fut`
/// completed in time.
pub async fn drain<F: Future<Output = ()>>(what: &str, grace: Duration, fut: F) -> bool {
    match tokio::time::timeout(grace, fut).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(task = what, ?grace, "did not stop within the grace period");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_reports_timeouts() {
        assert!(drain("quick", Duration::from_secs(1), async {}).await);
        assert!(!drain("stuck", Duration::from_millis(10), std::future::pending()).await);
    }

    #[tokio::test]
    async fn cancel_on_signal_returns_when_cancelled_elsewhere() {
        let token = CancellationToken::new();
        let task = tokio::spawn(cancel_on_signal(token.clone()));
        token.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .unwrap()
            .unwrap();
    }
}
