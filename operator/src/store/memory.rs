//! An in-memory store with the same semantics as the etcd one, for fast tests.
//!
//! [`MemoryStore`] is the store's shared logic over [`MemoryKv`]: a map of keys with mod revisions and one
//! revision counter behind a mutex, a log of recent changes for watches, and a `tokio::sync::watch` that
//! wakes them. Expiring keys (events) use `tokio::time`, so paused-time tests see them expire.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::kv::{Compare, Entry, Kv, KvStore, Listing, Op, EVENT_TTL};
use super::{Changed, StoreError};

/// The in-memory [`Store`](super::Store).
pub type MemoryStore = KvStore<MemoryKv>;

/// How many changed keys the watch log remembers; a watch that falls further behind starts over.
const LOG_LIMIT: usize = 10_000;

/// Keys and revisions in memory, shared by clones.
#[derive(Clone)]
pub struct MemoryKv {
    state: Arc<Mutex<State>>,
    /// The store revision after every write, to wake watches.
    revision: Arc<watch::Sender<i64>>,
}

struct State {
    revision: i64,
    entries: BTreeMap<String, Stored>,
    /// `(revision, key)` of recent writes, oldest first.
    log: VecDeque<(i64, String)>,
    /// Changes at or below this revision are no longer in the log.
    log_floor: i64,
}

struct Stored {
    value: Vec<u8>,
    mod_revision: i64,
    expires: Option<Instant>,
}

/// A watch's position: everything up to `seen` has been reported.
struct Watcher {
    state: Arc<Mutex<State>>,
    revision: Arc<watch::Sender<i64>>,
    wake: watch::Receiver<i64>,
    prefix: String,
    seen: i64,
}

impl MemoryStore {
    /// An empty store at revision 1, like a fresh etcd.
    pub fn new() -> MemoryStore {
        KvStore::with_kv(MemoryKv::new())
    }
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl MemoryKv {
    pub fn new() -> MemoryKv {
        let state = State { revision: 1, entries: BTreeMap::new(), log: VecDeque::new(), log_floor: 0 };
        MemoryKv { state: Arc::new(Mutex::new(state)), revision: Arc::new(watch::Sender::new(1)) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Default for MemoryKv {
    fn default() -> MemoryKv {
        MemoryKv::new()
    }
}

#[async_trait]
impl Kv for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let state = self.lock();
        let now = Instant::now();
        Ok(state.entries.get(key).filter(|s| s.live(now)).map(|s| s.entry(key)))
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let state = self.lock();
        let now = Instant::now();
        let entries = state
            .entries
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, stored)| stored.live(now))
            .map(|(key, stored)| stored.entry(key))
            .collect();
        Ok(Listing { revision: state.revision, entries })
    }

    async fn txn(&self, when: Vec<Compare>, then: Vec<Op>) -> Result<Option<i64>, StoreError> {
        let mut state = self.lock();
        let now = Instant::now();
        state.entries.retain(|_, stored| stored.live(now));
        if !when.iter().all(|compare| state.holds(compare)) {
            return Ok(None);
        }
        let revision = state.revision + 1;
        let mut touched = Vec::new();
        for op in then {
            match op {
                Op::Put { key, value } => {
                    state
                        .entries
                        .insert(key.clone(), Stored { value, mod_revision: revision, expires: None });
                    touched.push(key);
                }
                Op::PutExpiring { key, value } => {
                    let expires = Some(now + EVENT_TTL);
                    state.entries.insert(key.clone(), Stored { value, mod_revision: revision, expires });
                    touched.push(key);
                }
                Op::Delete { key } => {
                    if state.entries.remove(&key).is_some() {
                        touched.push(key);
                    }
                }
                Op::DeletePrefix { prefix } => {
                    let keys: Vec<String> =
                        state.entries.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
                    for key in keys {
                        state.entries.remove(&key);
                        touched.push(key);
                    }
                }
                Op::DeleteRange { from, to } => {
                    let keys: Vec<String> = state.entries.range(from..to).map(|(k, _)| k.clone()).collect();
                    for key in keys {
                        state.entries.remove(&key);
                        touched.push(key);
                    }
                }
            }
        }
        if touched.is_empty() {
            return Ok(Some(state.revision));
        }
        state.revision = revision;
        for key in touched {
            state.log.push_back((revision, key));
        }
        while state.log.len() > LOG_LIMIT {
            if let Some((dropped, _)) = state.log.pop_front() {
                state.log_floor = dropped;
            }
        }
        drop(state);
        self.revision.send_replace(revision);
        Ok(Some(revision))
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> Result<BoxStream<'static, Changed>, StoreError> {
        let watcher = Watcher {
            state: self.state.clone(),
            revision: self.revision.clone(),
            wake: self.revision.subscribe(),
            prefix: prefix.to_string(),
            seen: from_revision,
        };
        Ok(futures::stream::unfold(watcher, |mut w| async move {
            loop {
                w.wake.borrow_and_update();
                if let Some(revision) = w.next_change() {
                    return Some((Changed { revision }, w));
                }
                // The sender lives in `w.revision`, so this only returns on a new revision.
                if w.wake.changed().await.is_err() {
                    return None;
                }
            }
        })
        .boxed())
    }
}

impl State {
    fn holds(&self, compare: &Compare) -> bool {
        match compare {
            Compare::ModRevision { key, revision } => {
                self.entries.get(key).map_or(0, |s| s.mod_revision) == *revision
            }
            Compare::Exists { key } => self.entries.contains_key(key),
            Compare::PrefixUnchangedSince { prefix, revision } => self
                .entries
                .range(prefix.clone()..)
                .take_while(|(key, _)| key.starts_with(prefix.as_str()))
                .all(|(_, stored)| stored.mod_revision <= *revision),
        }
    }
}

impl Stored {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| now < at)
    }

    fn entry(&self, key: &str) -> Entry {
        Entry { key: key.to_string(), value: self.value.clone(), mod_revision: self.mod_revision }
    }
}

impl Watcher {
    /// The latest revision that changed a key under the prefix since the last call, if any; a watch
    /// that fell behind the log reports the current revision.
    fn next_change(&mut self) -> Option<i64> {
        let _keep_sender = &self.revision;
        let state = lock(&self.state);
        let found = if self.seen < state.log_floor {
            Some(state.revision)
        } else {
            state
                .log
                .iter()
                .rev()
                .take_while(|(revision, _)| *revision > self.seen)
                .find(|(_, key)| key.starts_with(&self.prefix))
                .map(|(revision, _)| *revision)
        };
        self.seen = self.seen.max(state.revision);
        found
    }
}

/// A poisoned lock only means another thread panicked while holding it; the locked sections do nothing
/// that panics, so the maps are still whole.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
