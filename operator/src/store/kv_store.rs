//! The store's logic written once over [`Kv`], so etcd and the in-memory fake behave alike.
//!
//! [`KvStore`] implements [`SpecStore`], [`StatusStore`] and [`Election`] on top of any [`Kv`]: generations,
//! history, validation, optimistic concurrency and the leader fence live here and nowhere else; the keys are
//! in `layout`, the decisions of an apply in `apply`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ballast_specs::wire::{ApplyResult, Event, RoleRevision, UnitStatus};
use ballast_specs::{
    check_image, validate_object, validate_set, Host, Kind, Object, Problem, Role, RoleControl, Selector,
};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::apply::{decide, host_compares, in_document, integrity, port_compares, Change};
use super::election::{self, Leadership};
use super::kv::{Compare, Entry, Kv, Op};
use super::layout::{
    control_key, event_key, history_key, history_prefix, host_key, object_key, role_key, status_key,
    status_prefix, CLUSTER_KEY, CONTROLS, EVENTS, HOSTS, LEADER_KEY, ROLES, SPECS, STATUS,
};
use super::{Actor, Changed, Election, Snapshot, SpecStore, StatusStore, StoreError, HISTORY_LIMIT};

/// How often a write is retried when a concurrent writer changed what it read.
const ATTEMPTS: u32 = 5;

/// [`SpecStore`] and [`StatusStore`] over any [`Kv`]. The logic the two traits share is in inherent methods
/// (`snapshot`, `list_status`, `add_event`), which callers holding a concrete store reach without naming a
/// trait.
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

impl<K: Kv> KvStore<K> {
    pub fn with_kv(kv: K) -> KvStore<K> {
        KvStore { kv: Arc::new(kv), fence: None }
    }

    #[cfg(test)]
    pub(super) fn kv(&self) -> &K {
        &self.kv
    }

    /// All hosts, roles and controls at one revision (both traits' `snapshot`).
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let specs = self.read_specs().await?;
        Ok(Snapshot {
            revision: specs.revision,
            hosts: specs.hosts.into_values().collect(),
            roles: specs.roles.into_values().collect(),
            controls: specs.controls.into_iter().collect(),
        })
    }

    /// Every unit's stored status (both traits' `list_status`).
    pub async fn list_status(&self) -> Result<Vec<UnitStatus>, StoreError> {
        self.kv.list(STATUS).await?.entries.iter().map(decode).collect()
    }

    /// Appends an event, fenced when this view is (both traits' `add_event`).
    pub async fn add_event(&self, event: &Event) -> Result<(), StoreError> {
        let then =
            vec![Op::PutExpiring { key: event_key(event.time, rand::random()), value: encode(event)? }];
        self.fenced_txn(then).await
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
impl<K: Kv> SpecStore for KvStore<K> {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        KvStore::snapshot(self).await
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
            let stored_roles: Vec<Role> = specs.roles.values().cloned().collect();
            let mut problems = object_problems.clone();
            let set_problems = validate_set(&objects, &stored_hosts, &stored_roles);
            problems.extend(set_problems.into_iter().map(|(i, p)| in_document(p, i)));
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
            when.extend(host_compares(&specs.hosts, &objects));
            when.extend(port_compares(&specs.roles, &objects));

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
            let stored_roles: Vec<Role> = specs.roles.values().cloned().collect();
            let mut problems = object_problems.clone();
            let objects = std::slice::from_ref(&object);
            problems.extend(validate_set(objects, &stored_hosts, &stored_roles).into_iter().map(|(_, p)| p));
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
            when.extend(host_compares(&specs.hosts, objects));
            when.extend(port_compares(&specs.roles, objects));
            if let Some(revision) = self.kv.txn(when, write_ops(&change, actor, now)?).await? {
                written.metadata.revision = revision;
                return Ok(written);
            }
        }
        Err(StoreError::Conflict(format!("role {name:?} kept changing while it was being stored")))
    }

    async fn set_image(
        &self,
        selector: &Selector,
        image: &str,
        actor: &Actor,
    ) -> Result<Vec<ApplyResult>, StoreError> {
        if let Err(message) = check_image(image) {
            return Err(StoreError::Invalid(vec![Problem::new("image", message)]));
        }
        for attempt in 0..ATTEMPTS {
            backoff(attempt).await;
            let specs = self.read_specs().await?;
            let matching: Vec<&Role> =
                specs.roles.values().filter(|role| selector.matches(&role.metadata.labels)).collect();
            if matching.is_empty() {
                return Err(StoreError::NotFound { kind: "role with labels", name: selector.to_string() });
            }
            let now = Utc::now();
            let (mut results, mut then) = (Vec::new(), Vec::new());
            // A role written after the read (one that now matches, say) makes the transaction fail and start over.
            let mut when =
                vec![Compare::PrefixUnchangedSince { prefix: ROLES.to_string(), revision: specs.revision }];
            for role in matching {
                let mut changed = role.clone();
                changed.spec.image = image.to_string();
                let change = decide(&Object::Role(changed), Some(&Object::Role(role.clone())), now);
                when.push(Compare::ModRevision {
                    key: role_key(&role.metadata.name),
                    revision: role.metadata.revision,
                });
                results.push(ApplyResult {
                    kind: Kind::Role,
                    name: role.metadata.name.clone(),
                    outcome: change.outcome,
                    generation: change.generation,
                });
                then.extend(write_ops(&change, actor, now)?);
            }
            if then.is_empty() || self.kv.txn(when, then).await?.is_some() {
                return Ok(results);
            }
        }
        Err(StoreError::Conflict(format!(
            "the roles matching {selector} kept changing while their image was being set; nothing was stored"
        )))
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

    async fn list_status(&self) -> Result<Vec<UnitStatus>, StoreError> {
        KvStore::list_status(self).await
    }

    async fn list_events(&self) -> Result<Vec<Event>, StoreError> {
        self.kv.list(EVENTS).await?.entries.iter().map(decode).collect()
    }

    async fn add_event(&self, event: &Event) -> Result<(), StoreError> {
        KvStore::add_event(self, event).await
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
}

#[async_trait]
impl<K: Kv> StatusStore for KvStore<K> {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        KvStore::snapshot(self).await
    }

    async fn watch(&self, from_revision: i64) -> Result<BoxStream<'static, Changed>, StoreError> {
        self.kv.watch(SPECS, from_revision).await
    }

    async fn list_status(&self) -> Result<Vec<UnitStatus>, StoreError> {
        KvStore::list_status(self).await
    }

    async fn put_status(&self, status: &UnitStatus) -> Result<(), StoreError> {
        let then = vec![Op::Put { key: status_key(&status.role, &status.host), value: encode(status)? }];
        self.fenced_txn(then).await
    }

    async fn delete_status(&self, role: &str, host: &str) -> Result<(), StoreError> {
        self.fenced_txn(vec![Op::Delete { key: status_key(role, host) }]).await
    }

    async fn add_event(&self, event: &Event) -> Result<(), StoreError> {
        KvStore::add_event(self, event).await
    }
}

#[async_trait]
impl<K: Kv> Election for KvStore<K> {
    async fn campaign(&self, identity: &str, ttl: Duration) -> Result<Leadership, StoreError> {
        election::campaign(self.kv.clone(), identity, ttl).await
    }

    fn fenced(&self, leadership: &Leadership) -> Arc<dyn StatusStore> {
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

/// Waits a little before a retry (none before the first attempt).
async fn backoff(attempt: u32) {
    if attempt > 0 {
        let jitter = rand::random::<u64>() % 10;
        tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt) + jitter)).await;
    }
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
