//! An in-memory store with the same semantics as the etcd one, for fast tests.
//!
//! [`MemoryStore`] is the store's shared logic over [`MemoryKv`]: a map of keys with mod revisions and one
//! revision counter behind a mutex, a log of recent changes for watches, and a `tokio::sync::watch` that
//! wakes them. Expiring keys (events) and leases use `tokio::time`, so tests can run with paused time: an
//! expired lease deletes its keys (a change watches see) as etcd does.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::kv::{Compare, Entry, Kv, Lease, Listing, Op};
use super::kv_store::KvStore;
use super::layout::EVENT_TTL;
use super::{Changed, StoreError};

/// The store in memory: [`SpecStore`](super::SpecStore) and [`StatusStore`](super::StatusStore).
pub type MemoryStore = KvStore<MemoryKv>;

/// How many changed keys the watch log remembers; a watch that falls further behind starts over.
const LOG_LIMIT: usize = 10_000;

/// Keys and revisions in memory, shared by clones.
#[derive(Clone)]
pub struct MemoryKv {
    state: Arc<Mutex<State>>,
    /// The store revision after every write, to wake watches.
    revision: Arc<watch::Sender<i64>>,
    /// How long expiring keys live: [`EVENT_TTL`], shorter in unit tests.
    event_ttl: Duration,
}

struct State {
    revision: i64,
    entries: BTreeMap<String, Stored>,
    /// `(revision, key)` of recent writes, oldest first.
    log: VecDeque<(i64, String)>,
    /// Changes at or below this revision are no longer in the log.
    log_floor: i64,
    /// Live leases by id.
    leases: BTreeMap<i64, Leased>,
    next_lease: i64,
    /// `(expires, key)` of each expiring write, oldest first (one TTL for all, so also soonest to expire first):
    /// expired keys go without a look at every key.
    expiring: VecDeque<(Instant, String)>,
}

struct Stored {
    value: Vec<u8>,
    mod_revision: i64,
    expires: Option<Instant>,
    lease: Option<i64>,
}

struct Leased {
    ttl: Duration,
    expires: Instant,
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
        let state = State {
            revision: 1,
            entries: BTreeMap::new(),
            log: VecDeque::new(),
            log_floor: 0,
            leases: BTreeMap::new(),
            next_lease: 1,
            expiring: VecDeque::new(),
        };
        MemoryKv {
            state: Arc::new(Mutex::new(state)),
            revision: Arc::new(watch::Sender::new(1)),
            event_ttl: EVENT_TTL,
        }
    }

    /// The state, with expired leases (and their keys) gone.
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = lock(&self.state);
        if let Some(revision) = state.expire_leases(Instant::now()) {
            self.revision.send_replace(revision);
        }
        state
    }

    /// Ends `lease` (and deletes its keys) when it expires, unless it was renewed meanwhile.
    fn expire_later(&self, lease: i64) {
        let (state, revision) = (Arc::downgrade(&self.state), Arc::downgrade(&self.revision));
        tokio::spawn(async move {
            loop {
                // Only weak references across the sleep: a dropped store ends the task.
                let expires = {
                    let (Some(state), Some(revision)) = (state.upgrade(), revision.upgrade()) else { return };
                    let mut state = lock(&state);
                    if let Some(changed) = state.expire_leases(Instant::now()) {
                        revision.send_replace(changed);
                    }
                    match state.leases.get(&lease) {
                        Some(leased) => leased.expires,
                        None => return,
                    }
                };
                tokio::time::sleep_until(expires).await;
            }
        });
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
        if then.iter().any(|op| matches!(op, Op::PutExpiring { .. })) {
            state.drop_expired(now);
        }
        for op in &then {
            if let Op::PutLeased { lease, .. } = op {
                if !state.leases.contains_key(lease) {
                    return Err(StoreError::Internal(format!("lease {lease:x} not found")));
                }
            }
        }
        if !when.iter().all(|compare| state.holds(compare, now)) {
            return Ok(None);
        }
        let revision = state.revision + 1;
        let mut touched = Vec::new();
        for op in then {
            match op {
                Op::Put { key, value } => {
                    let stored = Stored { value, mod_revision: revision, expires: None, lease: None };
                    state.entries.insert(key.clone(), stored);
                    touched.push(key);
                }
                Op::PutExpiring { key, value } => {
                    let expires = now + self.event_ttl;
                    let stored =
                        Stored { value, mod_revision: revision, expires: Some(expires), lease: None };
                    state.entries.insert(key.clone(), stored);
                    state.expiring.push_back((expires, key.clone()));
                    touched.push(key);
                }
                Op::PutLeased { key, value, lease } => {
                    let stored = Stored { value, mod_revision: revision, expires: None, lease: Some(lease) };
                    state.entries.insert(key.clone(), stored);
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
        state.record(revision, touched);
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

    /// Like etcd, a TTL is whole seconds, at least one.
    async fn grant(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let ttl = Duration::from_secs(ttl.as_secs_f64().ceil().max(1.0) as u64);
        let id = {
            let mut state = self.lock();
            let id = state.next_lease;
            state.next_lease += 1;
            state.leases.insert(id, Leased { ttl, expires: Instant::now() + ttl });
            id
        };
        self.expire_later(id);
        Ok(Lease { id, ttl })
    }

    async fn keep_alive(&self, lease: i64) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let now = Instant::now();
        match state.leases.get_mut(&lease) {
            Some(leased) => {
                leased.expires = now + leased.ttl;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn revoke(&self, lease: i64) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.leases.remove(&lease).is_some() {
            if let Some(revision) = state.drop_orphans() {
                self.revision.send_replace(revision);
            }
        }
        Ok(())
    }
}

impl State {
    /// Ends the leases expired at `now` and deletes their keys; the new revision when keys went.
    fn expire_leases(&mut self, now: Instant) -> Option<i64> {
        let before = self.leases.len();
        self.leases.retain(|_, leased| now < leased.expires);
        if self.leases.len() == before {
            return None;
        }
        self.drop_orphans()
    }

    /// Deletes the keys whose lease no longer exists, as one change; its revision, if any key went.
    fn drop_orphans(&mut self) -> Option<i64> {
        let orphans: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, stored)| stored.lease.is_some_and(|id| !self.leases.contains_key(&id)))
            .map(|(key, _)| key.clone())
            .collect();
        if orphans.is_empty() {
            return None;
        }
        for key in &orphans {
            self.entries.remove(key);
        }
        let revision = self.revision + 1;
        self.record(revision, orphans);
        Some(revision)
    }

    /// Deletes the expiring keys whose time is up at `now` (they are already invisible to reads). A key written
    /// again since keeps its newer expiry, or none.
    fn drop_expired(&mut self, now: Instant) {
        while let Some((expires, key)) = self.expiring.front() {
            if now < *expires {
                break;
            }
            if self.entries.get(key).is_some_and(|stored| stored.expires == Some(*expires)) {
                self.entries.remove(key);
            }
            self.expiring.pop_front();
        }
    }

    /// Moves to `revision`, which touched `keys`, and logs them for watches.
    fn record(&mut self, revision: i64, keys: Vec<String>) {
        self.revision = revision;
        for key in keys {
            self.log.push_back((revision, key));
        }
        while self.log.len() > LOG_LIMIT {
            if let Some((dropped, _)) = self.log.pop_front() {
                self.log_floor = dropped;
            }
        }
    }

    fn holds(&self, compare: &Compare, now: Instant) -> bool {
        let live = |key: &String| self.entries.get(key).filter(|s| s.live(now));
        match compare {
            Compare::ModRevision { key, revision } => live(key).map_or(0, |s| s.mod_revision) == *revision,
            Compare::Exists { key } => live(key).is_some(),
            Compare::PrefixUnchangedSince { prefix, revision } => self
                .entries
                .range(prefix.clone()..)
                .take_while(|(key, _)| key.starts_with(prefix.as_str()))
                .filter(|(_, stored)| stored.live(now))
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

#[cfg(test)]
mod tests {
    use ballast_specs::wire::Event;
    use futures::StreamExt;

    use super::*;
    use crate::store::SpecStore;

    fn event(reason: &str) -> Event {
        Event {
            time: chrono::DateTime::from_timestamp(1_714_557_600, 0).unwrap_or_default(),
            role: None,
            host: None,
            reason: reason.to_string(),
            message: String::new(),
            actor: None,
        }
    }

    #[tokio::test]
    async fn events_expire() {
        let kv = MemoryKv { event_ttl: Duration::from_millis(300), ..MemoryKv::new() };
        let store = KvStore::with_kv(kv);
        store.add_event(&event("Gone")).await.unwrap();
        assert_eq!(store.list_events().await.unwrap().len(), 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !store.list_events().await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the event did not expire");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Expired keys leave the map at the next expiring write, each looked at once; a key written again without
    /// an expiry stays.
    #[tokio::test(start_paused = true)]
    async fn expired_keys_go_at_the_next_expiring_write() {
        let kv = MemoryKv { event_ttl: Duration::from_secs(10), ..MemoryKv::new() };
        let expiring = |key: &str| Op::PutExpiring { key: key.to_string(), value: b"{}".to_vec() };
        kv.txn(Vec::new(), vec![expiring("/e/1"), expiring("/e/2")]).await.unwrap();
        kv.txn(Vec::new(), vec![Op::Put { key: "/e/2".to_string(), value: b"{}".to_vec() }]).await.unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        kv.txn(Vec::new(), vec![expiring("/e/3")]).await.unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        // /e/1 expired at 10 s; /e/3 lives until 15 s.
        kv.txn(Vec::new(), vec![expiring("/e/4")]).await.unwrap();
        let state = lock(&kv.state);
        let keys: Vec<&str> = state.entries.keys().map(String::as_str).collect();
        assert_eq!(keys, ["/e/2", "/e/3", "/e/4"]);
        assert_eq!(state.expiring.len(), 2);
    }

    #[tokio::test]
    async fn a_watch_behind_the_log_starts_over() {
        let kv = MemoryKv::new();
        let put = |key: &str| Op::Put { key: key.to_string(), value: b"{}".to_vec() };
        for i in 0..LOG_LIMIT + 5 {
            kv.txn(Vec::new(), vec![put(&format!("/other/{i}"))]).await.unwrap();
        }
        let now = kv.list("/").await.unwrap().revision;
        // Nothing under the prefix changed, but the log no longer reaches back to revision 1.
        let mut changes = kv.watch("/ballast/v1/specs/", 1).await.unwrap();
        assert_eq!(changes.next().await, Some(Changed { revision: now }));
        // Writes elsewhere do not wake it; a write under the prefix does.
        kv.txn(Vec::new(), vec![put("/other/x")]).await.unwrap();
        let written = kv.txn(Vec::new(), vec![put("/ballast/v1/specs/roles/web")]).await.unwrap();
        assert_eq!(changes.next().await.map(|c| c.revision), written);
    }

    #[tokio::test]
    async fn a_failed_compare_writes_nothing() {
        let kv = MemoryKv::new();
        let put = Op::Put { key: "/k".to_string(), value: b"1".to_vec() };
        let first =
            kv.txn(vec![Compare::ModRevision { key: "/k".into(), revision: 0 }], vec![put.clone()]).await;
        assert_eq!(first.unwrap(), Some(2));
        let again = kv.txn(vec![Compare::ModRevision { key: "/k".into(), revision: 0 }], vec![put]).await;
        assert_eq!(again.unwrap(), None);
        assert_eq!(kv.list("/").await.unwrap().revision, 2);
    }
}
