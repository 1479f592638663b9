//! The store's logic written once over a small key-value interface, so etcd and the in-memory fake behave alike.
//!
//! [`Kv`] is the part of etcd the store needs: prefix reads, a transaction of compares and writes, a
//! watch, and leases. [`KvStore`] implements [`Store`] on top of it: key layout, generations, history,
//! validation, optimistic concurrency and the leader fence live here and nowhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ballast_specs::wire::{ApplyOutcome, ApplyResult, Event, RoleRevision, UnitStatus};
use ballast_specs::{validate_object, validate_set, Host, Kind, Object, Problem, Role, RoleControl};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::election::{self, Leadership, LEADER_KEY};
use super::{Actor, Changed, Election, Snapshot, Store, StoreError, HISTORY_LIMIT};

/// The watched part: hosts, roles and controls.
pub const SPECS: &str = "/ballast/v1/specs/";
const HOSTS: &str = "/ballast/v1/specs/hosts/";
const ROLES: &str = "/ballast/v1/specs/roles/";
const CONTROLS: &str = "/ballast/v1/specs/controls/";
const HISTORY: &str = "/ballast/v1/history/";
const STATUS: &str = "/ballast/v1/status/";
const EVENTS: &str = "/ballast/v1/events/";
/// The cluster's secret key for HMACs of secret values (32 random bytes, made once).
const CLUSTER_KEY: &str = "/ballast/v1/cluster/secrets-key";

/// How long an event is kept at least.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);

/// How often a write is retried when a concurrent writer changed what it read.
const ATTEMPTS: u32 = 5;

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
    /// A put that disappears by itself after about [`EVENT_TTL`].
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

/// [`Store`] over any [`Kv`].
pub struct KvStore<K> {
    kv: Arc<K>,
    /// The mod revision of the leader key this view's owner created: status and event writes require it.
    fence: Option<i64>,
}

/// The desired state as read at one revision, keyed by name; objects carry their mod revision.
struct Specs {
    revision: i64,
    hosts: BTreeMap<String, Host>,
    roles: BTreeMap<String, Role>,
    controls: BTreeMap<String, RoleControl>,
}

/// What storing one object means, given what is stored.
struct Change {
    outcome: ApplyOutcome,
    generation: u64,
    /// The object to write (metadata complete except `revision`), or nothing when unchanged.
    write: Option<Object>,
    /// The spec differs from the stored one (or the object is new): a role gets a history entry.
    spec_changed: bool,
}

impl<K: Kv> KvStore<K> {
    pub fn with_kv(kv: K) -> KvStore<K> {
        KvStore { kv: Arc::new(kv), fence: None }
    }

    #[cfg(test)]
    pub(super) fn kv(&self) -> &K {
        &self.kv
    }

    /// Runs a status or event write, with the leader fence when this view has one.
    async fn fenced_txn(&self, then: Vec<Op>) -> Result<(), StoreError> {
        let when = match self.fence {
            Some(revision) => vec![Compare::ModRevision { key: LEADER_KEY.to_string(), revision }],
            None => Vec::new(),
        };
        match self.kv.txn(when, then).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotLeader(format!(
                "the leader key {LEADER_KEY} is no longer the one this process created; nothing was written"
            ))),
        }
    }

    async fn read_specs(&self) -> Result<Specs, StoreError> {
        let listing = self.kv.list(SPECS).await?;
        let mut specs = Specs {
            revision: listing.revision,
            hosts: BTreeMap::new(),
            roles: BTreeMap::new(),
            controls: BTreeMap::new(),
        };
        for entry in &listing.entries {
            if let Some(name) = entry.key.strip_prefix(HOSTS) {
                if let Object::Host(host) = decode_object(entry)? {
                    specs.hosts.insert(name.to_string(), host);
                }
            } else if let Some(name) = entry.key.strip_prefix(ROLES) {
                if let Object::Role(role) = decode_object(entry)? {
                    specs.roles.insert(name.to_string(), role);
                }
            } else if let Some(name) = entry.key.strip_prefix(CONTROLS) {
                specs.controls.insert(name.to_string(), decode(entry)?);
            }
        }
        Ok(specs)
    }

    async fn role_exists(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.kv.get(&role_key(name)).await?.is_some())
    }
}

#[async_trait]
impl<K: Kv> Store for KvStore<K> {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let specs = self.read_specs().await?;
        Ok(Snapshot {
            revision: specs.revision,
            hosts: specs.hosts.into_values().collect(),
            roles: specs.roles.into_values().collect(),
            controls: specs.controls.into_iter().collect(),
        })
    }

    async fn get_host(&self, name: &str) -> Result<Option<Host>, StoreError> {
        match self.kv.get(&host_key(name)).await? {
            Some(entry) => match decode_object(&entry)? {
                Object::Host(host) => Ok(Some(host)),
                Object::Role(_) => Err(wrong_kind(&entry.key)),
            },
            None => Ok(None),
        }
    }

    async fn get_role(&self, name: &str) -> Result<Option<Role>, StoreError> {
        match self.kv.get(&role_key(name)).await? {
            Some(entry) => match decode_object(&entry)? {
                Object::Role(role) => Ok(Some(role)),
                Object::Host(_) => Err(wrong_kind(&entry.key)),
            },
            None => Ok(None),
        }
    }

    async fn apply(
        &self,
        objects: Vec<Object>,
        dry_run: bool,
        actor: &Actor,
    ) -> Result<Vec<ApplyResult>, StoreError> {
        let object_problems: Vec<Problem> = objects
            .iter()
            .enumerate()
            .flat_map(|(i, object)| validate_object(object).into_iter().map(move |p| in_document(p, i)))
            .collect();
        for attempt in 0..ATTEMPTS {
            backoff(attempt).await;
            let specs = self.read_specs().await?;
            let stored_hosts: Vec<String> = specs.hosts.keys().cloned().collect();
            let mut problems = object_problems.clone();
            problems
                .extend(validate_set(&objects, &stored_hosts).into_iter().map(|(i, p)| in_document(p, i)));
            if problems.is_empty() {
                problems = integrity(&objects, &stored_hosts, true);
            }
            if !problems.is_empty() {
                return Err(StoreError::Invalid(problems));
            }

            let now = Utc::now();
            let mut results = Vec::with_capacity(objects.len());
            let mut when = Vec::new();
            let mut then = Vec::new();
            for object in &objects {
                let stored = specs.get(object.kind(), object.name());
                when.push(Compare::ModRevision {
                    key: object_key(object.kind(), object.name()),
                    revision: stored.as_ref().map_or(0, |s| s.metadata().revision),
                });
                let change = decide(object, stored.as_ref(), now);
                results.push(ApplyResult {
                    kind: object.kind(),
                    name: object.name().to_string(),
                    outcome: change.outcome,
                    generation: change.generation,
                });
                then.extend(write_ops(&change, actor, now)?);
            }
            when.extend(host_compares(&specs, &objects));

            if dry_run || then.is_empty() {
                return Ok(results);
            }
            if self.kv.txn(when, then).await?.is_some() {
                return Ok(results);
            }
        }
        Err(StoreError::Conflict(
            "the stored objects kept changing while the apply was being stored; nothing was stored"
                .to_string(),
        ))
    }

    async fn update_role(&self, role: Role, actor: &Actor) -> Result<Role, StoreError> {
        let name = role.metadata.name.clone();
        let precondition = role.metadata.revision;
        let object = Object::Role(role);
        let mut object_problems = validate_object(&object);
        if precondition <= 0 {
            object_problems.push(Problem::new(
                "metadata.revision",
                "required: the revision the role was read at (compare-and-swap)",
            ));
        }
        for attempt in 0..ATTEMPTS {
            backoff(attempt).await;
            let specs = self.read_specs().await?;
            let stored_hosts: Vec<String> = specs.hosts.keys().cloned().collect();
            let mut problems = object_problems.clone();
            let objects = std::slice::from_ref(&object);
            problems.extend(validate_set(objects, &stored_hosts).into_iter().map(|(_, p)| p));
            if problems.is_empty() {
                problems = integrity(objects, &stored_hosts, false);
            }
            if !problems.is_empty() {
                return Err(StoreError::Invalid(problems));
            }

            let Some(stored) = specs.roles.get(&name) else {
                return Err(StoreError::NotFound { kind: "role", name });
            };
            if stored.metadata.revision != precondition {
                return Err(StoreError::Conflict(format!(
                    "role {name:?} changed since it was read (revision {precondition}, now {})",
                    stored.metadata.revision
                )));
            }
            let stored = stored.clone();
            let now = Utc::now();
            let change = decide(&object, Some(&Object::Role(stored.clone())), now);
            let Some(Object::Role(mut written)) = change.write.clone() else {
                return Ok(stored);
            };
            let mut when = vec![Compare::ModRevision { key: role_key(&name), revision: precondition }];
            when.extend(host_compares(&specs, objects));
            if let Some(revision) = self.kv.txn(when, write_ops(&change, actor, now)?).await? {
                written.metadata.revision = revision;
                return Ok(written);
            }
        }
        Err(StoreError::Conflict(format!("role {name:?} kept changing while it was being stored")))
    }

    async fn delete_role(&self, name: &str, _actor: &Actor) -> Result<(), StoreError> {
        for attempt in 0..ATTEMPTS {
            backoff(attempt).await;
            let Some(entry) = self.kv.get(&role_key(name)).await? else {
                return Err(StoreError::NotFound { kind: "role", name: name.to_string() });
            };
            let when = vec![Compare::ModRevision { key: entry.key.clone(), revision: entry.mod_revision }];
            let then = vec![
                Op::Delete { key: entry.key },
                Op::Delete { key: control_key(name) },
                Op::DeletePrefix { prefix: history_prefix(name) },
                Op::DeletePrefix { prefix: status_prefix(name) },
            ];
            if self.kv.txn(when, then).await?.is_some() {
                return Ok(());
            }
        }
        Err(StoreError::Conflict(format!("role {name:?} kept changing while it was being deleted")))
    }

    async fn delete_host(&self, name: &str, _actor: &Actor) -> Result<(), StoreError> {
        for attempt in 0..ATTEMPTS {
            backoff(attempt).await;
            let specs = self.read_specs().await?;
            let Some(host) = specs.hosts.get(name) else {
                return Err(StoreError::NotFound { kind: "host", name: name.to_string() });
            };
            let users: Vec<&str> = specs
                .roles
                .values()
                .filter(|role| role.spec.hosts.iter().any(|h| h == name))
                .map(|role| role.metadata.name.as_str())
                .collect();
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "host {name:?} is still used by role{} {}",
                    if users.len() == 1 { "" } else { "s" },
                    users.join(", ")
                )));
            }
            // A role written after the read may name the host: the prefix compare catches it.
            let when = vec![
                Compare::ModRevision { key: host_key(name), revision: host.metadata.revision },
                Compare::PrefixUnchangedSince { prefix: ROLES.to_string(), revision: specs.revision },
            ];
            if self.kv.txn(when, vec![Op::Delete { key: host_key(name) }]).await?.is_some() {
                return Ok(());
            }
        }
        Err(StoreError::Conflict(format!(
            "host {name:?} or its roles kept changing while it was being deleted"
        )))
    }

    async fn history(&self, role: &str) -> Result<Vec<RoleRevision>, StoreError> {
        let listing = self.kv.list(&history_prefix(role)).await?;
        if listing.entries.is_empty() && !self.role_exists(role).await? {
            return Err(StoreError::NotFound { kind: "role", name: role.to_string() });
        }
        listing.entries.iter().map(decode).collect()
    }

    async fn get_control(&self, role: &str) -> Result<RoleControl, StoreError> {
        match self.kv.get(&control_key(role)).await? {
            Some(entry) => decode(&entry),
            None if self.role_exists(role).await? => Ok(RoleControl::default()),
            None => Err(StoreError::NotFound { kind: "role", name: role.to_string() }),
        }
    }

    async fn put_control(&self, role: &str, control: &RoleControl) -> Result<(), StoreError> {
        let when = vec![Compare::Exists { key: role_key(role) }];
        let then = vec![Op::Put { key: control_key(role), value: encode(control)? }];
        match self.kv.txn(when, then).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound { kind: "role", name: role.to_string() }),
        }
    }

    async fn put_status(&self, status: &UnitStatus) -> Result<(), StoreError> {
        let then = vec![Op::Put { key: status_key(&status.role, &status.host), value: encode(status)? }];
        self.fenced_txn(then).await
    }

    async fn delete_status(&self, role: &str, host: &str) -> Result<(), StoreError> {
        self.fenced_txn(vec![Op::Delete { key: status_key(role, host) }]).await
    }

    async fn list_status(&self) -> Result<Vec<UnitStatus>, StoreError> {
        self.kv.list(STATUS).await?.entries.iter().map(decode).collect()
    }

    async fn add_event(&self, event: &Event) -> Result<(), StoreError> {
        let then =
            vec![Op::PutExpiring { key: event_key(event.time, rand::random()), value: encode(event)? }];
        self.fenced_txn(then).await
    }

    async fn list_events(&self) -> Result<Vec<Event>, StoreError> {
        self.kv.list(EVENTS).await?.entries.iter().map(decode).collect()
    }

    async fn cluster_key(&self) -> Result<Vec<u8>, StoreError> {
        for _ in 0..ATTEMPTS {
            if let Some(entry) = self.kv.get(CLUSTER_KEY).await? {
                return Ok(entry.value);
            }
            let key: [u8; 32] = rand::random();
            // Create only if absent: of two operators starting at once, one key wins and both read it.
            let when = vec![Compare::ModRevision { key: CLUSTER_KEY.to_string(), revision: 0 }];
            let then = vec![Op::Put { key: CLUSTER_KEY.to_string(), value: key.to_vec() }];
            if self.kv.txn(when, then).await?.is_some() {
                return Ok(key.to_vec());
            }
        }
        Err(StoreError::Conflict("the cluster key kept changing while it was created".into()))
    }

    async fn watch(&self, from_revision: i64) -> Result<BoxStream<'static, Changed>, StoreError> {
        self.kv.watch(SPECS, from_revision).await
    }
}

#[async_trait]
impl<K: Kv> Election for KvStore<K> {
    async fn campaign(&self, identity: &str, ttl: Duration) -> Result<Leadership, StoreError> {
        election::campaign(self.kv.clone(), identity, ttl).await
    }

    fn fenced(&self, leadership: &Leadership) -> Arc<dyn Store> {
        Arc::new(KvStore { kv: self.kv.clone(), fence: Some(leadership.revision()) })
    }
}

impl Specs {
    fn get(&self, kind: Kind, name: &str) -> Option<Object> {
        match kind {
            Kind::Host => self.hosts.get(name).cloned().map(Object::Host),
            Kind::Role => self.roles.get(name).cloned().map(Object::Role),
        }
    }
}

/// What storing `new` over `stored` does: a new object starts at generation 1; a changed spec bumps the
/// generation; changed labels alone rewrite the object at the same generation.
fn decide(new: &Object, stored: Option<&Object>, now: DateTime<Utc>) -> Change {
    let Some(stored) = stored else {
        let mut write = new.clone();
        let metadata = write.metadata_mut();
        metadata.generation = 1;
        metadata.revision = 0;
        metadata.creation_timestamp = Some(now);
        return Change {
            outcome: ApplyOutcome::Created,
            generation: 1,
            write: Some(write),
            spec_changed: true,
        };
    };
    let old = stored.metadata();
    if !new.same_spec(stored) {
        let mut write = new.clone();
        let metadata = write.metadata_mut();
        metadata.generation = old.generation + 1;
        metadata.revision = 0;
        metadata.creation_timestamp = old.creation_timestamp.or(Some(now));
        let generation = metadata.generation;
        return Change {
            outcome: ApplyOutcome::Configured,
            generation,
            write: Some(write),
            spec_changed: true,
        };
    }
    if new.metadata().labels != old.labels {
        let mut write = stored.clone();
        let metadata = write.metadata_mut();
        metadata.labels = new.metadata().labels.clone();
        metadata.revision = 0;
        return Change {
            outcome: ApplyOutcome::Configured,
            generation: old.generation,
            write: Some(write),
            spec_changed: false,
        };
    }
    Change { outcome: ApplyOutcome::Unchanged, generation: old.generation, write: None, spec_changed: false }
}

/// The writes of one change: the object, and for a role whose spec changed its history entry, dropping
/// entries older than the last [`HISTORY_LIMIT`].
fn write_ops(change: &Change, actor: &Actor, now: DateTime<Utc>) -> Result<Vec<Op>, StoreError> {
    let Some(object) = &change.write else { return Ok(Vec::new()) };
    let mut ops = vec![Op::Put { key: object_key(object.kind(), object.name()), value: encode(object)? }];
    if let (Object::Role(role), true) = (object, change.spec_changed) {
        let name = &role.metadata.name;
        let generation = role.metadata.generation;
        let revision = RoleRevision {
            revision: generation,
            spec: role.spec.clone(),
            created: now,
            actor: actor.0.clone(),
        };
        ops.push(Op::Put { key: history_key(name, generation), value: encode(&revision)? });
        let keep_from = (generation + 1).saturating_sub(HISTORY_LIMIT as u64);
        if keep_from > 0 {
            ops.push(Op::DeleteRange { from: history_key(name, 0), to: history_key(name, keep_from) });
        }
    }
    Ok(ops)
}

/// Compares that keep the stored hosts named by `objects` (and not among them) in place until the write.
fn host_compares(specs: &Specs, objects: &[Object]) -> Vec<Compare> {
    let in_set: BTreeSet<&str> =
        objects.iter().filter(|o| o.kind() == Kind::Host).map(|o| o.name()).collect();
    let named: BTreeSet<&str> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Role(role) => Some(role.spec.hosts.iter().map(String::as_str)),
            Object::Host(_) => None,
        })
        .flatten()
        .filter(|h| !in_set.contains(h))
        .collect();
    named
        .into_iter()
        .filter_map(|h| specs.hosts.get(h))
        .map(|host| Compare::ModRevision {
            key: host_key(&host.metadata.name),
            revision: host.metadata.revision,
        })
        .collect()
}

/// The store's own guard, consulted only when validation found nothing: a name that would break the key
/// layout, a duplicate (one key written twice), or a role naming a host that does not exist would corrupt
/// the stored state, whatever the validators say.
fn integrity(objects: &[Object], stored_hosts: &[String], locate: bool) -> Vec<Problem> {
    let hosts: BTreeSet<&str> = stored_hosts
        .iter()
        .map(String::as_str)
        .chain(objects.iter().filter(|o| o.kind() == Kind::Host).map(|o| o.name()))
        .collect();
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        let mut push = |p: Problem| problems.push(if locate { in_document(p, i) } else { p });
        let name = object.name();
        if name.is_empty() || name.contains('/') {
            push(Problem::new("metadata.name", format!("{name:?} is not a valid name")));
        }
        if !seen.insert((object.kind(), name)) {
            push(Problem::new("metadata.name", format!("{} {name:?} appears more than once", object.kind())));
        }
        if let Object::Role(role) = object {
            for (j, host) in role.spec.hosts.iter().enumerate() {
                if !hosts.contains(host.as_str()) {
                    push(Problem::new(format!("spec.hosts[{j}]"), format!("host {host:?} does not exist")));
                }
            }
        }
    }
    problems
}

/// A problem of the `index`-th object of an apply: its document is the object's 1-based position.
fn in_document(problem: Problem, index: usize) -> Problem {
    problem.located(None, Some(index + 1))
}

/// Waits a little before a retry (none before the first attempt).
async fn backoff(attempt: u32) {
    if attempt > 0 {
        let jitter = rand::random::<u64>() % 10;
        tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt) + jitter)).await;
    }
}

fn object_key(kind: Kind, name: &str) -> String {
    format!("{SPECS}{}/{name}", kind.plural())
}

fn host_key(name: &str) -> String {
    format!("{HOSTS}{name}")
}

fn role_key(name: &str) -> String {
    format!("{ROLES}{name}")
}

fn control_key(role: &str) -> String {
    format!("{CONTROLS}{role}")
}

fn history_prefix(role: &str) -> String {
    format!("{HISTORY}{role}/")
}

fn history_key(role: &str, generation: u64) -> String {
    format!("{HISTORY}{role}/{generation:020}")
}

fn status_prefix(role: &str) -> String {
    format!("{STATUS}{role}/")
}

fn status_key(role: &str, host: &str) -> String {
    format!("{STATUS}{role}/{host}")
}

/// Events sort by time (then by a random suffix, so two events of one instant both stay).
fn event_key(time: DateTime<Utc>, suffix: u32) -> String {
    let nanos = time.timestamp_nanos_opt().unwrap_or(0).max(0);
    format!("{EVENTS}{nanos:020}-{suffix:08x}")
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Internal(format!("cannot encode a stored value: {e}")))
}

fn decode<T: DeserializeOwned>(entry: &Entry) -> Result<T, StoreError> {
    serde_json::from_slice(&entry.value)
        .map_err(|e| StoreError::Internal(format!("stored value at {} is not readable: {e}", entry.key)))
}

/// An object as stored, with `metadata.revision` set to the key's mod revision.
fn decode_object(entry: &Entry) -> Result<Object, StoreError> {
    let mut object: Object = decode(entry)?;
    object.metadata_mut().revision = entry.mod_revision;
    Ok(object)
}

fn wrong_kind(key: &str) -> StoreError {
    StoreError::Internal(format!("stored value at {key} has the wrong kind"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keys_sort_by_generation() {
        assert!(history_key("web", 9) < history_key("web", 10));
        assert_eq!(history_key("web", 3), "/ballast/v1/history/web/00000000000000000003");
        assert!(history_key("web", 3).starts_with(&history_prefix("web")));
        assert!(!history_key("web2", 3).starts_with(&history_prefix("web")));
    }

    #[test]
    fn event_keys_sort_by_time() {
        let early = DateTime::from_timestamp(1_000, 0).unwrap_or_default();
        let late = DateTime::from_timestamp(1_000_000_000, 5).unwrap_or_default();
        assert!(event_key(early, u32::MAX) < event_key(late, 0));
    }
}
