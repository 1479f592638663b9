//! The part of etcd the store needs, as a small key-value trait: prefix reads, a transaction of compares
//! and writes, a watch, and leases; with the values it takes and gives.
//!
//! `etcd` and `memory` implement it; `kv_store` writes the store's logic once on top of it.

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::{Changed, StoreError};

/// The part of etcd the store uses.
#[async_trait]
pub trait Kv: Send + Sync + 'static {
    /// One key, if it exists.
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;

    /// Every key under `prefix`, sorted by key, read at one revision.
    async fn list(&self, prefix: &str) -> Result<Listing, StoreError>;

    /// Performs `then` if every compare of `when` holds, atomically. `Some(revision)` of the store after the
    /// transaction when it ran, `None` when a compare failed (nothing written).
    async fn txn(&self, when: Vec<Compare>, then: Vec<Op>) -> Result<Option<i64>, StoreError>;

    /// A `Changed` for every change under `prefix` after `from_revision`; restarts by itself (yielding the
    /// current revision) when it cannot continue. Ends only when dropped.
    async fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> Result<BoxStream<'static, Changed>, StoreError>;

    /// A new lease of about `ttl` (the store may round it up); keys put with it ([`Op::PutLeased`]) are
    /// deleted when it expires or is revoked.
    async fn grant(&self, ttl: Duration) -> Result<Lease, StoreError>;

    /// Renews a lease for its whole TTL. `false` when it no longer exists (expired or revoked).
    async fn keep_alive(&self, lease: i64) -> Result<bool, StoreError>;

    /// Ends a lease now, deleting its keys. A lease already gone is success.
    async fn revoke(&self, lease: i64) -> Result<(), StoreError>;
}

/// A granted lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// The TTL the store granted.
    pub ttl: Duration,
}

/// A stored key, its value and the revision that last wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// The entries under a prefix and the store revision they were read at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub revision: i64,
    pub entries: Vec<Entry>,
}

/// A condition of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key was last written at `revision`; 0 means the key does not exist.
    ModRevision { key: String, revision: i64 },
    /// The key exists.
    Exists { key: String },
    /// No key under `prefix` was written after `revision` (deletions are not seen).
    PrefixUnchangedSince { prefix: String, revision: i64 },
}

/// A write of a transaction. No two ops of one transaction may touch the same key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
    },
    /// A put that disappears by itself after about [`EVENT_TTL`](super::layout::EVENT_TTL).
    PutExpiring {
        key: String,
        value: Vec<u8>,
    },
    /// A put attached to a lease: the key goes when the lease does.
    PutLeased {
        key: String,
        value: Vec<u8>,
        lease: i64,
    },
    Delete {
        key: String,
    },
    DeletePrefix {
        prefix: String,
    },
    /// Deletes the keys in `from..to`.
    DeleteRange {
        from: String,
        to: String,
    },
}
