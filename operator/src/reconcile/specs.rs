//! The desired state of one store snapshot, indexed once for the lookups the reconciler makes per host and per
//! unit: a host, a role or a role's control switches by name, and the roles desired on a host. Each lookup is
//! independent of the fleet's size; the snapshot's lists would make each one a scan of every host or role.

use std::collections::HashMap;

use ballast_specs::{Host, Role, RoleControl};

use super::Unit;
use crate::store::Snapshot;

/// A [`Snapshot`] with its indexes, built once when the snapshot is read.
#[derive(Debug, Default)]
pub struct Specs {
    snapshot: Snapshot,
    /// Host name → its index in `snapshot.hosts`.
    hosts: HashMap<String, usize>,
    /// Role name → its index in `snapshot.roles`.
    roles: HashMap<String, usize>,
    /// Host name → the indexes in `snapshot.roles` of the roles desired on it, in the snapshot's order.
    roles_by_host: HashMap<String, Vec<usize>>,
    /// Role name → its index in `snapshot.controls`.
    controls: HashMap<String, usize>,
}

impl Specs {
    /// Indexes `snapshot`. A name that occurs twice (the store never gives one) is found at its first place, as
    /// a scan would find it.
    pub fn new(snapshot: Snapshot) -> Specs {
        let mut hosts = HashMap::with_capacity(snapshot.hosts.len());
        for (i, host) in snapshot.hosts.iter().enumerate() {
            hosts.entry(host.metadata.name.clone()).or_insert(i);
        }
        let mut roles = HashMap::with_capacity(snapshot.roles.len());
        let mut roles_by_host: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, role) in snapshot.roles.iter().enumerate() {
            roles.entry(role.metadata.name.clone()).or_insert(i);
            for host in &role.spec.hosts {
                let on_host = roles_by_host.entry(host.clone()).or_default();
                // A host named twice in one role (validation refuses it) carries the role once.
                if on_host.last() != Some(&i) {
                    on_host.push(i);
                }
            }
        }
        let mut controls = HashMap::with_capacity(snapshot.controls.len());
        for (i, (role, _)) in snapshot.controls.iter().enumerate() {
            controls.entry(role.clone()).or_insert(i);
        }
        Specs { snapshot, hosts, roles, roles_by_host, controls }
    }

    /// The snapshot as read from the store.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Every host, in the snapshot's order.
    pub fn hosts(&self) -> &[Host] {
        &self.snapshot.hosts
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name).map(|&i| &self.snapshot.hosts[i])
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name).map(|&i| &self.snapshot.roles[i])
    }

    /// The roles desired on `host` (whose `spec.hosts` name it), in the snapshot's order.
    pub fn roles_on<'a>(&'a self, host: &str) -> impl Iterator<Item = &'a Role> + 'a {
        self.roles_by_host.get(host).into_iter().flatten().map(|&i| &self.snapshot.roles[i])
    }

    /// The unit's role, if it is desired on the unit's host: a look at the roles of that one host.
    pub fn desired_role(&self, unit: &Unit) -> Option<&Role> {
        self.roles_on(&unit.host).find(|r| r.metadata.name == unit.role)
    }

    /// The role's control switches; the defaults when it has none stored.
    pub fn control(&self, role: &str) -> RoleControl {
        self.controls.get(role).map(|&i| self.snapshot.controls[i].1.clone()).unwrap_or_default()
    }
}

impl From<Snapshot> for Specs {
    fn from(snapshot: Snapshot) -> Specs {
        Specs::new(snapshot)
    }
}

#[cfg(test)]
mod tests;
