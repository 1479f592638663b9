//! The store on a real etcd, through etcd-client.
//!
//! [`EtcdStore`] is the store's shared logic over [`EtcdKv`]. Every request is bounded by a deadline, so an
//! unreachable etcd gives `Unavailable` within seconds instead of a hang. Watches run on a second client
//! without a request timeout (a watch is one long request) and with HTTP/2 keep-alive, so a dead connection
//! is noticed; lease renewals (a stream) use that client too, each bounded by its caller. No etcd-client type
//! leaves this module.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn,
    TxnOp, WatchOptions, WatchStream,
};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::kv::{Compare, Entry, Kv, Lease, Listing, Op};
use super::kv_store::KvStore;
use super::layout::EVENT_TTL;
use super::{Changed, StoreError};

/// The store on etcd: [`SpecStore`](super::SpecStore) and [`StatusStore`](super::StatusStore).
pub type EtcdStore = KvStore<EtcdKv>;

/// Time to open a connection to an endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time for one request, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A new lease for events is granted this often; each lives [`EVENT_TTL`] plus this, so every event is
/// kept at least [`EVENT_TTL`].
const LEASE_REUSE: Duration = Duration::from_secs(600);
/// Watch restarts wait between these bounds, doubling after each failure.
const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(100);
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Pauses between attempts of a request that found its member down (several endpoints only).
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(800);

/// etcd through etcd-client: one client for requests, one for watches.
pub struct EtcdKv {
    client: Client,
    /// More than one endpoint: a request that finds its member down is tried again (on another one).
    several: bool,
    watch_client: Client,
    /// The lease events are attached to, and when it was granted.
    lease: Mutex<Option<(i64, Instant)>>,
}

/// A watch that restarts itself; see [`Kv::watch`].
struct Watcher {
    client: Client,
    prefix: String,
    /// The next revision the watch has to cover.
    next: i64,
    stream: Option<WatchStream>,
    /// The watch broke: report the current revision before watching again.
    resync: bool,
    backoff: Duration,
}

impl EtcdStore {
    /// Connects to etcd and checks that it answers; `Unavailable` within a few seconds when it does not.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore, StoreError> {
        Ok(KvStore::with_kv(EtcdKv::connect(endpoints).await?))
    }
}

impl EtcdKv {
    pub async fn connect(endpoints: &[String]) -> Result<EtcdKv, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Unavailable("no etcd endpoint given".to_string()));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = bounded(Client::connect(endpoints, Some(options))).await?;
        let watch_options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5));
        let watch_client = bounded(Client::connect(endpoints, Some(watch_options))).await?;
        let kv = EtcdKv { client, several: endpoints.len() > 1, watch_client, lease: Mutex::new(None) };
        kv.current_revision().await?;
        Ok(kv)
    }

    /// The store's revision now.
    async fn current_revision(&self) -> Result<i64, StoreError> {
        current_revision(&self.client).await
    }

    /// Runs one request (made anew by `request` for each attempt) within [`REQUEST_TIMEOUT`]. With several
    /// endpoints, an attempt that fails as `Unavailable` (its member is down, or the cluster is electing a
    /// leader) is tried again after a short pause, until the deadline: the client balances the attempts over
    /// the endpoints, so a cluster that lost a member keeps answering. With one endpoint there is nothing else
    /// to try, and the failure is reported at once.
    ///
    /// A write whose answer was lost may be tried twice; every write here is a put of a whole value or a
    /// compare-and-swap, so a second run either does the same or fails its comparison.
    async fn retried<T, F, Fut>(&self, mut request: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let mut pause = RETRY_MIN;
        loop {
            let error = match tokio::time::timeout_at(deadline, request()).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e)) => store_error(e),
                Err(_) => StoreError::Unavailable(format!(
                    "etcd did not answer within {}s",
                    REQUEST_TIMEOUT.as_secs()
                )),
            };
            let retry = self.several
                && matches!(error, StoreError::Unavailable(_))
                && tokio::time::Instant::now() + pause < deadline;
            if !retry {
                return Err(error);
            }
            tracing::debug!(error = %error, "etcd request failed; trying again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// The lease for events: the last one while it is young, else a new one.
    async fn event_lease(&self) -> Result<i64, StoreError> {
        let mut lease = self.lease.lock().await;
        if let Some((id, granted)) = *lease {
            if granted.elapsed() < LEASE_REUSE {
                return Ok(id);
            }
        }
        let ttl = (EVENT_TTL + LEASE_REUSE).as_secs() as i64;
        let granted = self
            .retried(|| {
                let mut client = self.client.clone();
                async move { client.lease_grant(ttl, None).await }
            })
            .await?;
        *lease = Some((granted.id(), Instant::now()));
        Ok(granted.id())
    }

    async fn forget_lease(&self) {
        *self.lease.lock().await = None;
    }

    async fn run_txn(&self, when: &[Compare], then: &[Op]) -> Result<Option<i64>, StoreError> {
        let lease = if then.iter().any(|op| matches!(op, Op::PutExpiring { .. })) {
            Some(self.event_lease().await?)
        } else {
            None
        };
        let compares: Vec<EtcdCompare> = when.iter().map(etcd_compare).collect();
        let ops: Vec<TxnOp> = then.iter().map(|op| etcd_op(op, lease)).collect();
        let txn = Txn::new().when(compares).and_then(ops);
        let response = self
            .retried(|| {
                let (mut client, txn) = (self.client.clone(), txn.clone());
                async move { client.txn(txn).await }
            })
            .await?;
        if !response.succeeded() {
            return Ok(None);
        }
        Ok(Some(response.header().map_or(0, |h| h.revision())))
    }
}

#[async_trait]
impl Kv for EtcdKv {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let mut response = self
            .retried(|| {
                let mut client = self.client.clone();
                async move { client.get(key, None).await }
            })
            .await?;
        response.take_kvs().into_iter().next().map(entry).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let mut response = self
            .retried(|| {
                let mut client = self.client.clone();
                async move { client.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let entries = response.take_kvs().into_iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        Ok(Listing { revision, entries })
    }

    async fn txn(&self, when: Vec<Compare>, then: Vec<Op>) -> Result<Option<i64>, StoreError> {
        match self.run_txn(&when, &then).await {
            // The events lease may have gone (expired, or etcd restored from a backup): take a new one.
            Err(StoreError::Internal(message)) if message.contains("lease not found") => {
                self.forget_lease().await;
                self.run_txn(&when, &then).await
            }
            result => result,
        }
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> Result<BoxStream<'static, Changed>, StoreError> {
        let mut watcher = Watcher {
            client: self.watch_client.clone(),
            prefix: prefix.to_string(),
            next: from_revision.max(0) + 1,
            stream: None,
            resync: false,
            backoff: WATCH_BACKOFF_MIN,
        };
        // The first watch is made here, so an unreachable etcd is an error now rather than a silent retry.
        watcher.stream = Some(watcher.open().await?);
        Ok(futures::stream::unfold(watcher, |mut w| async move {
            let changed = w.next_change().await;
            Some((changed, w))
        })
        .boxed())
    }

    async fn grant(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let seconds = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let granted = self
            .retried(|| {
                let mut client = self.client.clone();
                async move { client.lease_grant(seconds, None).await }
            })
            .await?;
        // etcd raises a TTL below its minimum (about 1.5 election timeouts) and says so in the answer.
        let ttl = Duration::from_secs(granted.ttl().max(1) as u64);
        Ok(Lease { id: granted.id(), ttl })
    }

    /// One renewal: opens a keep-alive stream, sends one request, reads its answer and closes the stream.
    async fn keep_alive(&self, lease: i64) -> Result<bool, StoreError> {
        let mut client = self.watch_client.clone();
        match tokio::time::timeout(REQUEST_TIMEOUT, client.lease_keep_alive(lease)).await {
            Ok(Ok(_)) => Ok(true),
            // etcd answers a renewal of an unknown lease with a TTL of 0, which etcd-client reports so.
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(message))) if message.contains("not found") => {
                Ok(false)
            }
            Ok(Err(e)) => Err(store_error(e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "etcd did not renew the lease within {}s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn revoke(&self, lease: i64) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        match tokio::time::timeout(REQUEST_TIMEOUT, client.lease_revoke(lease)).await {
            Ok(Ok(_)) => Ok(()),
            // gRPC code 5, not found: the lease is already gone.
            Ok(Err(etcd_client::Error::GRpcStatus(status))) if i32::from(status.code()) == 5 => Ok(()),
            Ok(Err(e)) => Err(store_error(e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "etcd did not revoke the lease within {}s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }
}

impl Watcher {
    async fn open(&mut self) -> Result<WatchStream, StoreError> {
        let options = WatchOptions::new().with_prefix().with_start_revision(self.next);
        bounded(self.client.watch(self.prefix.as_str(), Some(options))).await
    }

    /// Waits for the next change; never gives up.
    async fn next_change(&mut self) -> Changed {
        loop {
            if self.resync || self.stream.is_none() {
                match self.restart().await {
                    Ok(Some(changed)) => return changed,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "etcd watch cannot restart; retrying");
                        self.pause().await;
                        continue;
                    }
                }
            }
            let Some(stream) = self.stream.as_mut() else { continue };
            // A watch may be quiet for long: no deadline here; the watch client's HTTP/2 keep-alive
            // notices a dead connection.
            match stream.message().await.map_err(store_error) {
                Ok(Some(response)) => {
                    if response.canceled() {
                        if response.compact_revision() > 0 {
                            tracing::info!(
                                from = self.next,
                                compacted = response.compact_revision(),
                                "etcd watch start was compacted; starting over"
                            );
                        } else {
                            tracing::warn!(reason = response.cancel_reason(), "etcd canceled the watch");
                            self.pause().await;
                        }
                        self.resync = true;
                        continue;
                    }
                    self.backoff = WATCH_BACKOFF_MIN;
                    let latest =
                        response.events().iter().filter_map(|e| e.kv()).map(|kv| kv.mod_revision()).max();
                    if let Some(revision) = latest {
                        self.next = revision + 1;
                        return Changed { revision };
                    }
                }
                Ok(None) => {
                    tracing::warn!("etcd watch ended; starting over");
                    self.resync = true;
                    self.pause().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "etcd watch broke; starting over");
                    self.resync = true;
                    self.pause().await;
                }
            }
        }
    }

    /// Opens a new watch. After a break the changes in between are unknown: the current revision is
    /// reported (the caller relists) and the watch goes on from there.
    async fn restart(&mut self) -> Result<Option<Changed>, StoreError> {
        self.stream = None;
        let report = if self.resync {
            let revision = current_revision(&self.client).await?;
            self.next = revision + 1;
            Some(Changed { revision })
        } else {
            None
        };
        self.stream = Some(self.open().await?);
        self.resync = false;
        Ok(report)
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(WATCH_BACKOFF_MAX);
    }
}

async fn current_revision(client: &Client) -> Result<i64, StoreError> {
    let mut client = client.clone();
    let options = GetOptions::new().with_count_only();
    let response = bounded(client.get("/ballast/", Some(options))).await?;
    Ok(response.header().map_or(0, |h| h.revision()))
}

/// Runs one etcd request with a deadline: the client's own timeout does not cover waiting for a
/// connection that never comes.
async fn bounded<T>(
    request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(result) => result.map_err(store_error),
        Err(_) => {
            Err(StoreError::Unavailable(format!("etcd did not answer within {}s", REQUEST_TIMEOUT.as_secs())))
        }
    }
}

/// Connection trouble and timeouts are `Unavailable`, the rest `Internal`. Messages name the failure,
/// never credentials (none are used) or request contents.
fn store_error(error: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    match error {
        E::TransportError(e) => StoreError::Unavailable(format!("cannot reach etcd: {}", root_cause(&e))),
        E::IoError(e) => StoreError::Unavailable(format!("cannot reach etcd: {e}")),
        E::GRpcStatus(status) => {
            // gRPC codes: 1 cancelled, 2 unknown, 4 deadline exceeded, 14 unavailable. A status with a
            // source was made on this side from a failure to reach etcd (etcd's own answers have none).
            let code = i32::from(status.code());
            let local = std::error::Error::source(&status).is_some();
            if matches!(code, 1 | 4 | 14) || (code == 2 && local) {
                StoreError::Unavailable(format!("cannot reach etcd: {}", root_cause(&status)))
            } else {
                StoreError::Internal(format!("etcd: {}", status.message()))
            }
        }
        other => StoreError::Internal(format!("etcd: {other}")),
    }
}

/// The innermost error of a chain: the one that says what actually failed (`connection refused`).
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn entry(kv: etcd_client::KeyValue) -> Result<Entry, StoreError> {
    let mod_revision = kv.mod_revision();
    let (key, value) = kv.into_key_value();
    let key =
        String::from_utf8(key).map_err(|_| StoreError::Internal("etcd key is not utf-8".to_string()))?;
    Ok(Entry { key, value, mod_revision })
}

fn etcd_compare(compare: &Compare) -> EtcdCompare {
    match compare {
        Compare::ModRevision { key, revision } => {
            EtcdCompare::mod_revision(key.as_str(), CompareOp::Equal, *revision)
        }
        Compare::Exists { key } => EtcdCompare::create_revision(key.as_str(), CompareOp::Greater, 0),
        Compare::PrefixUnchangedSince { prefix, revision } => {
            EtcdCompare::mod_revision(prefix.as_str(), CompareOp::Less, revision + 1).with_prefix()
        }
    }
}

fn etcd_op(op: &Op, lease: Option<i64>) -> TxnOp {
    match op {
        Op::Put { key, value } => TxnOp::put(key.as_str(), value.clone(), None),
        Op::PutExpiring { key, value } => {
            TxnOp::put(key.as_str(), value.clone(), lease.map(|id| PutOptions::new().with_lease(id)))
        }
        Op::PutLeased { key, value, lease } => {
            TxnOp::put(key.as_str(), value.clone(), Some(PutOptions::new().with_lease(*lease)))
        }
        Op::Delete { key } => TxnOp::delete(key.as_str(), None),
        Op::DeletePrefix { prefix } => {
            TxnOp::delete(prefix.as_str(), Some(DeleteOptions::new().with_prefix()))
        }
        Op::DeleteRange { from, to } => {
            TxnOp::delete(from.as_str(), Some(DeleteOptions::new().with_range(to.as_str())))
        }
    }
}
