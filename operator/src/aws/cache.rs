//! Shared plumbing of the AWS caches: one async-locked slot per key, and a bounded retry with backoff.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::AwsError;

/// How many times one AWS call is tried when it fails transiently (throttling, connection errors, 5xx).
pub(crate) const ATTEMPTS: u32 = 3;
/// The pause before the second try; it doubles before each further try.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// A failed AWS call: the error to report, and whether trying again soon may help.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: AwsError,
    pub transient: bool,
}

/// Cache entries by key (a secret name, a registry host). Each key has its own async lock, held across the AWS call,
/// so concurrent callers for one key make one call and callers for different keys never wait for each other.
pub(crate) struct Slots<T> {
    map: Mutex<HashMap<String, Arc<Slot<T>>>>,
}

pub(crate) struct Slot<T> {
    pub state: tokio::sync::Mutex<Option<T>>,
    /// Set by `invalidate`: the next reader fetches even if the entry is still fresh.
    stale: AtomicBool,
}

/// Calls `call` until it succeeds, fails for good, or [`ATTEMPTS`] tries are spent, sleeping
/// [`FIRST_BACKOFF`] (doubling) between tries. Never a hot loop: every retry waits.
pub(crate) async fn with_retries<T, F, Fut>(what: &str, mut call: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(failure) if failure.transient && attempt < ATTEMPTS => {
                tracing::debug!(what, attempt, error = %failure.error, "aws call failed; trying again");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(failure) => return Err(failure.error),
        }
    }
}

impl<T> Slots<T> {
    pub fn new() -> Self {
        Slots { map: Mutex::new(HashMap::new()) }
    }

    /// The slot of `key`, created empty on first use.
    pub fn get(&self, key: &str) -> Arc<Slot<T>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Slot { state: tokio::sync::Mutex::new(None), stale: AtomicBool::new(false) })
            })
            .clone()
    }

    /// Makes the next reader of `key` fetch again; the entry stays as a fallback.
    pub fn mark_stale(&self, key: &str) {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = map.get(key) {
            slot.stale.store(true, Ordering::SeqCst);
        }
    }

    /// [`Slots::mark_stale`] for every key.
    pub fn mark_all_stale(&self) {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in map.values() {
            slot.stale.store(true, Ordering::SeqCst);
        }
    }

    /// The keys seen so far, sorted (for `Debug`).
    pub fn keys(&self) -> Vec<String> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut keys: Vec<String> = map.keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl<T> Slot<T> {
    /// Whether `invalidate` was called since the last read; clears the mark.
    pub fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::SeqCst)
    }
}
