//! Leader election on a lease: one key, created only if absent and attached to the candidate's lease.
//!
//! The holder renews its lease every TTL/3 in a task of its own and watches the key; the others watch the
//! key and campaign as soon as it is deleted (a resign revokes the lease) or expires with the lease.
//! Leading is a watched value that turns false, once and for good, when a renewal does not succeed before
//! the lease may have expired, the lease is gone, or the key is no longer the one this process created.
//! The key's mod revision at creation is the fence: see [`Election::fenced`](super::Election::fenced).

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::kv::{Compare, Kv, Lease, Op};
use super::layout::LEADER_KEY;
use super::{Changed, StoreError};

/// The wait before a renewal that failed is tried again (never past the point of stepping down).
const RENEW_RETRY: Duration = Duration::from_millis(200);

/// This process holds the leader key. Dropping it stops the renewals (the lease then expires); [`resign`]
/// hands over at once.
///
/// [`resign`]: Leadership::resign
pub struct Leadership {
    identity: String,
    lease: Lease,
    revision: i64,
    leading: watch::Receiver<bool>,
    kv: Arc<dyn Kv>,
    stop: CancellationToken,
    keeper: Option<JoinHandle<()>>,
}

impl Leadership {
    /// Who leads: the value of the leader key.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The mod revision of the leader key this process created: the fence of its writes.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The lease's TTL as the store granted it.
    pub fn ttl(&self) -> Duration {
        self.lease.ttl
    }

    /// True while this process leads; turns false once and stays false.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Resolves once this process no longer leads.
    pub async fn lost(&self) {
        let mut leading = self.leading.clone();
        // An error means the keeper is gone, which also ends leading.
        let _ = leading.wait_for(|leading| !*leading).await;
    }

    /// Stops leading and revokes the lease, which deletes the leader key: a standby takes over at once.
    pub async fn resign(mut self) -> Result<(), StoreError> {
        self.stop.cancel();
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.await;
        }
        self.kv.revoke(self.lease.id).await
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Waits until this process holds the leader key; see [`Election::campaign`](super::Election::campaign).
pub(super) async fn campaign(
    kv: Arc<dyn Kv>,
    identity: &str,
    ttl: Duration,
) -> Result<Leadership, StoreError> {
    loop {
        let listing = kv.list(LEADER_KEY).await?;
        if let Some(holder) = listing.entries.iter().find(|e| e.key == LEADER_KEY) {
            tracing::debug!(leader = %String::from_utf8_lossy(&holder.value), "another process leads; standing by");
            let mut changes = kv.watch(LEADER_KEY, listing.revision).await?;
            // The watch says when the key goes; looking again every TTL only guards against a lost change.
            let _ = tokio::time::timeout(ttl, changes.next()).await;
            continue;
        }
        // The lease counts from a moment after this one: a safe start for the renewal deadline.
        let asked = Instant::now();
        let lease = kv.grant(ttl).await?;
        let when = vec![Compare::ModRevision { key: LEADER_KEY.to_string(), revision: 0 }];
        let then = vec![Op::PutLeased {
            key: LEADER_KEY.to_string(),
            value: identity.as_bytes().to_vec(),
            lease: lease.id,
        }];
        match kv.txn(when, then).await {
            Ok(Some(revision)) => return Ok(Leadership::start(kv, identity, lease, revision, asked)),
            // Another candidate was faster.
            Ok(None) => revoke_quietly(kv.as_ref(), lease.id).await,
            Err(e) => {
                revoke_quietly(kv.as_ref(), lease.id).await;
                return Err(e);
            }
        }
    }
}

impl Leadership {
    fn start(kv: Arc<dyn Kv>, identity: &str, lease: Lease, revision: i64, renewed: Instant) -> Leadership {
        let (sender, leading) = watch::channel(true);
        let stop = CancellationToken::new();
        let keeper = Keeper { kv: kv.clone(), lease, revision, renewed, leading: sender };
        let keeper = tokio::spawn(keeper.run(stop.clone()));
        tracing::info!(identity, revision, ttl = ?lease.ttl, "leading");
        Leadership {
            identity: identity.to_string(),
            lease,
            revision,
            leading,
            kv,
            stop,
            keeper: Some(keeper),
        }
    }
}

/// The task that keeps a leader's lease alive and says when leading ends.
struct Keeper {
    kv: Arc<dyn Kv>,
    lease: Lease,
    revision: i64,
    /// A moment before the last successful renewal reached the store.
    renewed: Instant,
    leading: watch::Sender<bool>,
}

impl Keeper {
    async fn run(mut self, stop: CancellationToken) {
        let period = self.lease.ttl / 3;
        // The store counts the TTL from a renewal it received after `renewed`, so the lease cannot expire
        // before `renewed + ttl`; stepping down a little earlier leaves room for the last in-flight step.
        let margin = (self.lease.ttl / 10).min(Duration::from_secs(1));
        let mut changes = self.kv.watch(LEADER_KEY, self.revision).await.ok();
        let mut next = self.renewed + period;
        let reason = loop {
            let deadline = self.renewed + self.lease.ttl - margin;
            tokio::select! {
                () = stop.cancelled() => break None,
                () = tokio::time::sleep_until(next.min(deadline)) => {
                    let sent = Instant::now();
                    match tokio::time::timeout_at(deadline, self.kv.keep_alive(self.lease.id)).await {
                        Ok(Ok(true)) => {
                            self.renewed = sent;
                            next = sent + period;
                        }
                        Ok(Ok(false)) => break Some("the lease expired or was revoked".to_string()),
                        Ok(Err(e)) if Instant::now() < deadline => {
                            tracing::warn!(error = %e, "cannot renew the leader lease; retrying");
                            next = Instant::now() + RENEW_RETRY;
                        }
                        Ok(Err(e)) => break Some(format!("the lease could not be renewed in time: {e}")),
                        Err(_) => break Some("the lease could not be renewed in time".to_string()),
                    }
                }
                () = next_change(&mut changes) => {
                    match self.kv.get(LEADER_KEY).await {
                        Ok(Some(entry)) if entry.mod_revision == self.revision => {}
                        Ok(_) => break Some("the leader key changed or was deleted".to_string()),
                        // The renewals decide when the store cannot be read.
                        Err(_) => {}
                    }
                }
            }
        };
        self.leading.send_replace(false);
        match reason {
            Some(reason) => tracing::warn!(%reason, "leadership lost"),
            None => tracing::info!("leadership ended"),
        }
    }
}

/// The next change of the leader key; never, without a watch.
async fn next_change(changes: &mut Option<BoxStream<'static, Changed>>) {
    if let Some(stream) = changes {
        if stream.next().await.is_some() {
            return;
        }
    }
    std::future::pending().await
}

async fn revoke_quietly(kv: &dyn Kv, lease: i64) {
    if let Err(e) = kv.revoke(lease).await {
        tracing::debug!(error = %e, "cannot revoke an unused lease; it will expire");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use ballast_specs::wire::{UnitState, UnitStatus};
    use chrono::Utc;

    use super::*;
    use crate::store::kv::{Entry, Listing};
    use crate::store::memory::{MemoryKv, MemoryStore};
    use crate::store::{Election, SpecStore};

    const TTL: Duration = Duration::from_secs(3);

    /// A memory store whose lease renewals can be made to fail, as with an etcd that cannot be reached.
    #[derive(Clone, Default)]
    struct Flaky {
        kv: MemoryKv,
        renewals_fail: Arc<AtomicBool>,
    }

    #[async_trait]
    impl Kv for Flaky {
        async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
            self.kv.get(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
            self.kv.list(prefix).await
        }
        async fn txn(&self, when: Vec<Compare>, then: Vec<Op>) -> Result<Option<i64>, StoreError> {
            self.kv.txn(when, then).await
        }
        async fn watch(&self, prefix: &str, from: i64) -> Result<BoxStream<'static, Changed>, StoreError> {
            self.kv.watch(prefix, from).await
        }
        async fn grant(&self, ttl: Duration) -> Result<Lease, StoreError> {
            self.kv.grant(ttl).await
        }
        async fn keep_alive(&self, lease: i64) -> Result<bool, StoreError> {
            if self.renewals_fail.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("cannot reach etcd: connection refused".to_string()));
            }
            self.kv.keep_alive(lease).await
        }
        async fn revoke(&self, lease: i64) -> Result<(), StoreError> {
            self.kv.revoke(lease).await
        }
    }

    fn status() -> UnitStatus {
        UnitStatus {
            role: "web".to_string(),
            host: "web-1".to_string(),
            generation: 1,
            observed_generation: 1,
            state: UnitState::Converged,
            image: String::new(),
            container_id: String::new(),
            cpus: None,
            memory: None,
            message: String::new(),
            since: Utc::now(),
            failed: None,
            proxy: None,
        }
    }

    async fn leader_value(store: &MemoryStore) -> Option<String> {
        let kv: &MemoryKv = store.kv();
        kv.get(LEADER_KEY).await.unwrap().map(|e| String::from_utf8_lossy(&e.value).into_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn one_of_two_candidates_leads_and_keeps_leading() {
        let store = Arc::new(MemoryStore::new());
        let a = store.campaign("a", TTL).await.unwrap();
        let other = store.clone();
        let b = tokio::spawn(async move { other.campaign("b", TTL).await });
        // Many TTLs pass: the leader renews its lease, the other candidate keeps waiting.
        tokio::time::sleep(TTL * 20).await;
        assert!(a.is_leading());
        assert!(!b.is_finished());
        assert_eq!(leader_value(&store).await.as_deref(), Some("a"));
        b.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_resign_hands_over_at_once() {
        let store = Arc::new(MemoryStore::new());
        let a = store.campaign("a", TTL).await.unwrap();
        let mut a_leading = a.leading();
        let other = store.clone();
        let b = tokio::spawn(async move { other.campaign("b", TTL).await });
        tokio::time::sleep(TTL).await;
        let resigned = Instant::now();
        a.resign().await.unwrap();
        assert!(!*a_leading.borrow_and_update());
        let b = b.await.unwrap().unwrap();
        assert_eq!(resigned.elapsed(), Duration::ZERO, "the standby waited for a timer");
        assert!(b.is_leading());
        assert_eq!(leader_value(&store).await.as_deref(), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_vanished_leader_is_replaced_once_its_lease_expires() {
        let store = Arc::new(MemoryStore::new());
        let a = store.campaign("a", TTL).await.unwrap();
        let other = store.clone();
        let b = tokio::spawn(async move { other.campaign("b", TTL).await });
        tokio::time::sleep(TTL * 2).await;
        // Like `kill -9`: no more renewals, no resign.
        drop(a);
        let vanished = Instant::now();
        let b = b.await.unwrap().unwrap();
        let waited = vanished.elapsed();
        // The lease was last renewed at most TTL/3 before the crash.
        assert!(waited >= TTL - TTL / 3 && waited <= TTL, "took over after {waited:?}");
        assert!(b.is_leading());
    }

    #[tokio::test(start_paused = true)]
    async fn a_deposed_leaders_fenced_writes_fail() {
        let store = Arc::new(MemoryStore::new());
        let a = store.campaign("a", TTL).await.unwrap();
        let a_store = store.fenced(&a);
        a_store.put_status(&status()).await.unwrap();
        drop(a);
        let b = store.campaign("b", TTL).await.unwrap();
        let b_store = store.fenced(&b);

        let err = a_store.put_status(&status()).await.unwrap_err();
        assert!(matches!(err, StoreError::NotLeader(_)), "{err}");
        assert_eq!(err.kind(), "not_leader");
        let event = ballast_specs::wire::Event {
            time: Utc::now(),
            role: None,
            host: None,
            reason: "Test".to_string(),
            message: String::new(),
            actor: None,
        };
        assert!(matches!(a_store.add_event(&event).await, Err(StoreError::NotLeader(_))));
        assert!(matches!(a_store.delete_status("web", "web-1").await, Err(StoreError::NotLeader(_))));
        assert_eq!(store.list_events().await.unwrap().len(), 0);

        b_store.put_status(&status()).await.unwrap();
        b_store.add_event(&event).await.unwrap();
        // Unfenced writes (the API's) do not depend on leading.
        store.add_event(&event).await.unwrap();
        assert_eq!(store.list_events().await.unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn leading_ends_when_the_key_goes() {
        let kv = MemoryKv::new();
        let a = campaign(Arc::new(kv.clone()), "a", TTL).await.unwrap();
        kv.txn(Vec::new(), vec![Op::Delete { key: LEADER_KEY.to_string() }]).await.unwrap();
        let started = Instant::now();
        a.lost().await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn leading_ends_when_the_lease_is_revoked_elsewhere() {
        let kv = MemoryKv::new();
        let a = campaign(Arc::new(kv.clone()), "a", TTL).await.unwrap();
        kv.revoke(a.lease.id).await.unwrap();
        let started = Instant::now();
        a.lost().await;
        assert!(started.elapsed() <= TTL / 3, "noticed after {:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_steps_down_before_anyone_else_leads() {
        let flaky = Flaky::default();
        let a = campaign(Arc::new(flaky.clone()), "a", TTL).await.unwrap();
        let a_leading = a.leading();
        tokio::time::sleep(TTL * 2).await;
        flaky.renewals_fail.store(true, Ordering::SeqCst);
        let cut = Instant::now();
        let kv: Arc<dyn Kv> = Arc::new(flaky.kv.clone());
        let b = campaign(kv, "b", TTL).await.unwrap();
        assert!(!*a_leading.borrow(), "two leaders at once");
        assert!(b.is_leading());
        // Nobody revoked the lease: the store expired it, at most TTL after the last renewal.
        let waited = cut.elapsed();
        assert!(waited >= TTL - TTL / 3 && waited <= TTL, "took over after {waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fenced_view_shares_the_store() {
        let store = MemoryStore::new();
        let a = store.campaign("a", TTL).await.unwrap();
        let fenced = store.fenced(&a);
        fenced.put_status(&status()).await.unwrap();
        assert_eq!(store.list_status().await.unwrap().len(), 1);
    }
}
