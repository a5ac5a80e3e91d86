//! Waiting for a condition with a deadline, reporting the last observation when it never holds.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`until`] probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Probes until `probe` returns `Ok`; an `Err` means "not yet" and says why. Fails after
/// `timeout` with the last reason.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        // A probe that hangs (a component that stopped answering) ends at the deadline too.
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(POLL_INTERVAL);
        let last = match tokio::time::timeout(remaining, probe()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(reason)) => reason,
            Err(_) => anyhow::anyhow!("the last probe did not finish"),
        };
        if Instant::now() >= deadline {
            anyhow::bail!(
                "timed out after {timeout:?} waiting for {what}; last observation: {last:#}"
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
