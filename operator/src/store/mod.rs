//! The desired-state store: specs, history, control switches, status and events, behind two narrow traits.
//!
//! Each user holds only what it may do: the API a [`SpecStore`] (specs read and written, status and events
//! read, events added), the reconciler a [`StatusStore`] (specs read and watched, status and events written),
//! fenced on its leadership by [`Election::fenced`], so a deposed leader's writes fail. `KvStore` implements
//! both (and `Election`) once, over the small key-value trait `Kv`, whose key layout is in `layout`;
//! `etcd` puts it on etcd ([`EtcdStore`](etcd::EtcdStore)), `memory` in process for fast tests
//! ([`MemoryStore`](memory::MemoryStore)); `election` is the leader election on a lease.
//! No etcd-client type crosses this module's boundary.

mod apply;
mod election;
pub mod etcd;
mod kv;
mod kv_store;
mod layout;
pub mod memory;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ballast_specs::wire::{ApplyResult, Event, RoleRevision, UnitStatus};
use ballast_specs::{Host, Object, Problem, Role, RoleControl, Selector};
use futures::stream::BoxStream;

pub use election::Leadership;
pub use layout::LEADER_KEY;

/// How many revisions of each role's spec are kept.
pub const HISTORY_LIMIT: usize = 20;

/// Everything desired, read at one store revision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The store revision the snapshot was read at.
    pub revision: i64,
    pub hosts: Vec<Host>,
    pub roles: Vec<Role>,
    /// Control switches by role name; a role without an entry has the defaults.
    pub controls: Vec<(String, RoleControl)>,
}

/// Something under the spec prefix changed at `revision` (or the watch had to start over): relist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Changed {
    pub revision: i64,
}

/// Who asked for a change; recorded in history and events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(pub String);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-swap failed: someone else changed the object since it was read.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    /// The input is wrong; nothing was stored.
    #[error("invalid input")]
    Invalid(Vec<Problem>),
    /// etcd cannot be reached or did not answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Internal(String),
    /// A fenced write failed: the leader key is no longer the one this process created.
    #[error("not the leader: {0}")]
    NotLeader(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict(_))
    }

    /// A stable name for metrics and API error codes.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Conflict(_) => "conflict",
            StoreError::NotFound { .. } => "not_found",
            StoreError::Invalid(_) => "invalid",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Internal(_) => "internal",
            StoreError::NotLeader(_) => "not_leader",
        }
    }
}

/// The store as the API uses it: desired state (specs, history, control switches) read and written, status
/// and events read, events of people's actions added. Its writes are never fenced: any `ballastd` serves them.
#[async_trait]
pub trait SpecStore: Send + Sync + 'static {
    /// All hosts, roles and controls at one revision.
    async fn snapshot(&self) -> Result<Snapshot, StoreError>;

    async fn get_host(&self, name: &str) -> Result<Option<Host>, StoreError>;
    async fn get_role(&self, name: &str) -> Result<Option<Role>, StoreError>;

    /// Stores all objects in one transaction, or none. Each object whose spec differs from the stored one gets
    /// `generation + 1` (1 when new) and, for roles, a history entry. Validates the set (duplicates,
    /// host references against stored hosts) and fails with `Invalid` before writing anything.
    /// With `dry_run`, computes the results and writes nothing.
    async fn apply(
        &self,
        objects: Vec<Object>,
        dry_run: bool,
        actor: &Actor,
    ) -> Result<Vec<ApplyResult>, StoreError>;

    /// Replaces a role's spec if its stored `metadata.revision` still equals `role.metadata.revision`
    /// (compare-and-swap); else `Conflict`. Returns the stored role.
    async fn update_role(&self, role: Role, actor: &Actor) -> Result<Role, StoreError>;

    /// Sets the image of every role whose `metadata.labels` match `selector`, in one transaction: each role's
    /// write compares its mod revision, and no role may be written between the read and the write, so it changes
    /// all of them or none. One result a matching role, by name (`unchanged` when it has that image already).
    /// No role matching: `NotFound`; an invalid image: `Invalid` (path `image`); nothing is stored then.
    async fn set_image(
        &self,
        selector: &Selector,
        image: &str,
        actor: &Actor,
    ) -> Result<Vec<ApplyResult>, StoreError>;

    /// Deletes a role (its control switches, history and status go with it). Missing: `NotFound`.
    async fn delete_role(&self, name: &str, actor: &Actor) -> Result<(), StoreError>;

    /// Deletes a host. A host still named by a role: `Conflict` naming those roles.
    async fn delete_host(&self, name: &str, actor: &Actor) -> Result<(), StoreError>;

    /// The stored revisions of a role's spec, oldest first (at most [`HISTORY_LIMIT`]).
    async fn history(&self, role: &str) -> Result<Vec<RoleRevision>, StoreError>;

    async fn get_control(&self, role: &str) -> Result<RoleControl, StoreError>;
    /// Replaces the control switches of an existing role (`NotFound` otherwise). Never bumps `generation`.
    async fn put_control(&self, role: &str, control: &RoleControl) -> Result<(), StoreError>;

    async fn list_status(&self) -> Result<Vec<UnitStatus>, StoreError>;

    /// Stored events, oldest first.
    async fn list_events(&self) -> Result<Vec<Event>, StoreError>;
    /// Appends an event; events expire after a while (a TTL).
    async fn add_event(&self, event: &Event) -> Result<(), StoreError>;

    /// The cluster's key for HMACs of secret values: random, made on first use, the same for every operator.
    async fn cluster_key(&self) -> Result<Vec<u8>, StoreError>;
}

/// The store as the reconciler uses it: the desired state read and watched, each unit's status and the
/// events written. The leader's view is fenced ([`Election::fenced`]).
#[async_trait]
pub trait StatusStore: Send + Sync + 'static {
    /// All hosts, roles and controls at one revision.
    async fn snapshot(&self) -> Result<Snapshot, StoreError>;

    /// Changes to hosts, roles and controls after `from_revision`. The stream starts over by itself when the
    /// watch breaks or is compacted (yielding a `Changed` so the caller relists); it ends only when dropped.
    async fn watch(&self, from_revision: i64) -> Result<BoxStream<'static, Changed>, StoreError>;

    async fn list_status(&self) -> Result<Vec<UnitStatus>, StoreError>;
    async fn put_status(&self, status: &UnitStatus) -> Result<(), StoreError>;
    async fn delete_status(&self, role: &str, host: &str) -> Result<(), StoreError>;

    /// Appends an event; events expire after a while (a TTL).
    async fn add_event(&self, event: &Event) -> Result<(), StoreError>;
}

/// Leader election among the operators that share a store, and writes fenced on the outcome.
#[async_trait]
pub trait Election: Send + Sync + 'static {
    /// Waits until this process holds the leader key ([`LEADER_KEY`], value `identity`), attached to a lease
    /// of `ttl` that a task of the returned [`Leadership`] keeps alive. Fails only when the store fails.
    async fn campaign(&self, identity: &str, ttl: Duration) -> Result<Leadership, StoreError>;

    /// The reconciler's view of this store, with its status and event writes fenced on `leadership`: each
    /// write also requires the leader key to be the one `leadership` created, else it fails with `NotLeader`
    /// and writes nothing.
    fn fenced(&self, leadership: &Leadership) -> Arc<dyn StatusStore>;
}
