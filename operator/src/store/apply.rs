//! What an apply or a role update means, decided in pure code from what is stored: the new generation and
//! metadata of each object, the compares that keep the hosts it names in place, and the store's own
//! integrity guard.

use std::collections::{BTreeMap, BTreeSet};

use ballast_specs::wire::ApplyOutcome;
use ballast_specs::{Host, Kind, Object, Problem, Role};
use chrono::{DateTime, Utc};

use super::kv::Compare;
use super::layout::{host_key, role_key};

/// What storing one object means, given what is stored.
pub(super) struct Change {
    pub(super) outcome: ApplyOutcome,
    pub(super) generation: u64,
    /// The object to write (metadata complete except `revision`), or nothing when unchanged.
    pub(super) write: Option<Object>,
    /// The spec differs from the stored one (or the object is new): a role gets a history entry.
    pub(super) spec_changed: bool,
}

/// What storing `new` over `stored` does: a new object starts at generation 1; a changed spec bumps the
/// generation; changed labels alone rewrite the object at the same generation.
pub(super) fn decide(new: &Object, stored: Option<&Object>, now: DateTime<Utc>) -> Change {
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

/// Compares that keep the stored hosts named by `objects` (and not among them) in place until the write.
pub(super) fn host_compares(hosts: &BTreeMap<String, Host>, objects: &[Object]) -> Vec<Compare> {
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
        .filter_map(|h| hosts.get(h))
        .map(|host| Compare::ModRevision {
            key: host_key(&host.metadata.name),
            revision: host.metadata.revision,
        })
        .collect()
}

/// Compares that keep in place, until the write, the stored roles whose host ports the set's roles were checked
/// against: those not in the set that share a host with a role of the set, when both take host ports (published
/// or proxied). A concurrent change of such a role could make a clash the check did not see.
pub(super) fn port_compares(roles: &BTreeMap<String, Role>, objects: &[Object]) -> Vec<Compare> {
    let set_roles: Vec<&Role> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Role(role) => Some(role),
            Object::Host(_) => None,
        })
        .collect();
    let hosts: BTreeSet<&str> = set_roles
        .iter()
        .filter(|r| takes_host_ports(r))
        .flat_map(|r| r.spec.hosts.iter().map(String::as_str))
        .collect();
    roles
        .values()
        .filter(|r| !set_roles.iter().any(|s| s.metadata.name == r.metadata.name))
        .filter(|r| takes_host_ports(r) && r.spec.hosts.iter().any(|h| hosts.contains(h.as_str())))
        .map(|r| Compare::ModRevision { key: role_key(&r.metadata.name), revision: r.metadata.revision })
        .collect()
}

fn takes_host_ports(role: &Role) -> bool {
    role.spec.proxy.is_some() || !role.spec.ports.is_empty()
}

/// The store's own guard, consulted only when validation found nothing: a name that would break the key
/// layout, a duplicate (one key written twice), or a role naming a host that does not exist would corrupt
/// the stored state, whatever the validators say.
pub(super) fn integrity(objects: &[Object], stored_hosts: &[String], locate: bool) -> Vec<Problem> {
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
pub(super) fn in_document(problem: Problem, index: usize) -> Problem {
    problem.located(None, Some(index + 1))
}
