//! Waiting for a condition with a deadline, polling it: tests never sleep to synchronise.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it gives `Some`, or fails after `timeout` saying what was awaited.
pub async fn until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}
