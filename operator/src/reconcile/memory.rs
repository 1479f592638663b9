//! What the reconciler remembers during one leader's term: the last status of every unit (indexed for the
//! lookups each reconcile makes), the convergence clock of each role, the rollout groups of the newest specs
//! and the replacements under way in each, the pokes that wake a unit waiting for a slot of its group, and the
//! generation each role's secret was last read at.
//!
//! Every lookup is independent of the number of units, so a full resync of N units costs O(N), not O(N²).
//! Nothing here does I/O: the context writes the store, then records here what it wrote.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ballast_specs::wire::{FailedRollout, UnitState, UnitStatus};
use ballast_specs::{Role, RoleControl};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::budget::{Budgets, Slot};
use super::Unit;
use crate::aws::ResolvedSecrets;
use crate::desired;
use crate::plan;
use crate::store::Snapshot;
use crate::tier::{self, Tiers};

/// The reconciler's memory; every part behind its own lock, held only for a lookup or an update.
#[derive(Default)]
pub(super) struct Memory {
    statuses: Mutex<Statuses>,
    /// Per role, the generation its units are converging to, for `ballast_converge_seconds`.
    convergence: Mutex<HashMap<String, Convergence>>,
    /// The rollout groups of the newest specs seen.
    tiers: Mutex<Arc<Tiers>>,
    /// Replacements under way per rollout group: at most its budget at once.
    budgets: Budgets,
    /// Wakes a unit that waits for a slot of its rollout group when something new is seen for it.
    pokes: Mutex<HashMap<Unit, Arc<Notify>>>,
    /// The generation each role with secrets was last resolved at: a new one re-reads its secret.
    secret_generations: Mutex<HashMap<String, u64>>,
}

/// The last status of every unit, indexed for what each reconcile asks: a unit's own status, its role's failed
/// rollouts, how many units are in each state, and how many of a role's units are converged at a generation.
#[derive(Default)]
pub(super) struct Statuses {
    by_unit: HashMap<Unit, UnitStatus>,
    /// Per role, the hosts whose status records a failed rollout (usually none).
    failed: HashMap<String, BTreeSet<String>>,
    /// Units per state, for `ballast_units`.
    counts: HashMap<UnitState, i64>,
    /// Per role, how many of its units are converged, by the generation they converged at.
    converged: HashMap<String, HashMap<u64, usize>>,
}

/// A role's newest generation: when it was first seen, and whether all its units got there.
struct Convergence {
    generation: u64,
    since: Instant,
    done: bool,
}

impl Memory {
    pub fn statuses(&self) -> MutexGuard<'_, Statuses> {
        lock(&self.statuses)
    }

    /// Notes the role's generation; a new one starts the clock of `ballast_converge_seconds` (unless its
    /// units are all converged at it already, as after a leader change).
    pub fn note_generation(&self, role: &Role) {
        let generation = role.metadata.generation;
        let mut convergence = lock(&self.convergence);
        if convergence.get(&role.metadata.name).is_some_and(|c| c.generation == generation) {
            return;
        }
        let done = self.statuses().all_converged(role);
        convergence
            .insert(role.metadata.name.clone(), Convergence { generation, since: Instant::now(), done });
    }

    /// How long the role took to converge at its generation, the first time every unit is converged at it.
    pub fn newly_converged(&self, role: &Role) -> Option<Duration> {
        let mut convergence = lock(&self.convergence);
        let entry = convergence.get_mut(&role.metadata.name)?;
        if entry.done || entry.generation != role.metadata.generation || !self.statuses().all_converged(role)
        {
            return None;
        }
        entry.done = true;
        Some(entry.since.elapsed())
    }

    /// Takes the rollout groups of `snapshot` when it is newer than those known, and lets waiting units look
    /// at their group's budget again (it may have grown).
    pub fn note_specs(&self, snapshot: &Snapshot) {
        {
            let mut tiers = lock(&self.tiers);
            if snapshot.revision <= tiers.revision() {
                return;
            }
            *tiers = Arc::new(tier::tiers(snapshot.revision, &snapshot.roles, &snapshot.controls));
        }
        self.budgets.budgets_changed();
    }

    /// The rollout groups of the newest specs seen.
    pub fn tiers(&self) -> Arc<Tiers> {
        lock(&self.tiers).clone()
    }

    /// Waits until `role`'s rollout group has a replacement fewer under way than its budget, and takes a slot.
    pub async fn rollout_slot(&self, role: &Role) -> Slot {
        let (group, _) = self.tiers().budget(role);
        self.budgets.take(&group, || self.tiers().budget(role).1).await
    }

    /// Wakes `unit` if it waits for a slot of its rollout group.
    pub fn poke(&self, unit: &Unit) {
        lock(&self.pokes).entry(unit.clone()).or_default().notify_one();
    }

    pub fn forget_pokes(&self, unit: &Unit) {
        lock(&self.pokes).remove(unit);
    }

    pub fn pokes_of(&self, unit: &Unit) -> Arc<Notify> {
        lock(&self.pokes).entry(unit.clone()).or_default().clone()
    }

    /// Records that the role's secret is read at `generation`; true when that generation is new.
    pub fn secret_read_at(&self, role: &str, generation: u64) -> bool {
        lock(&self.secret_generations).insert(role.to_string(), generation) != Some(generation)
    }
}

impl Statuses {
    pub fn get(&self, unit: &Unit) -> Option<&UnitStatus> {
        self.by_unit.get(unit)
    }

    pub fn insert(&mut self, unit: Unit, status: UnitStatus) {
        self.remove(&unit);
        if status.failed.is_some() {
            self.failed.entry(unit.role.clone()).or_default().insert(unit.host.clone());
        }
        *self.counts.entry(status.state).or_default() += 1;
        if status.state == UnitState::Converged {
            *self
                .converged
                .entry(unit.role.clone())
                .or_default()
                .entry(status.observed_generation)
                .or_default() += 1;
        }
        self.by_unit.insert(unit, status);
    }

    pub fn remove(&mut self, unit: &Unit) -> Option<UnitStatus> {
        let old = self.by_unit.remove(unit)?;
        if let Some(hosts) = self.failed.get_mut(&unit.role) {
            hosts.remove(&unit.host);
            if hosts.is_empty() {
                self.failed.remove(&unit.role);
            }
        }
        *self.counts.entry(old.state).or_default() -= 1;
        if old.state == UnitState::Converged {
            if let Some(generations) = self.converged.get_mut(&unit.role) {
                if let Some(n) = generations.get_mut(&old.observed_generation) {
                    *n -= 1;
                    if *n == 0 {
                        generations.remove(&old.observed_generation);
                    }
                }
                if generations.is_empty() {
                    self.converged.remove(&unit.role);
                }
            }
        }
        Some(old)
    }

    /// Units per state.
    pub fn counts(&self) -> &HashMap<UnitState, i64> {
        &self.counts
    }

    /// The statuses of `role`'s units that record a failed rollout.
    fn failures<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a UnitStatus> + 'a {
        self.failed
            .get(role)
            .into_iter()
            .flatten()
            .filter_map(move |host| self.by_unit.get(&Unit { role: role.to_string(), host: host.clone() }))
    }

    /// What the planner compares for `unit` of `role`: the spec, plus what these statuses say (the failed
    /// rollouts of the role and of the other roles of its rollout group, for the halt check, and the generation
    /// the unit last converged at).
    pub fn desired(
        &self,
        role: &Role,
        unit: &Unit,
        control: &RoleControl,
        secrets: Option<&ResolvedSecrets>,
        tiers: &Tiers,
    ) -> plan::Desired {
        let converged = self.get(unit).map(|s| s.observed_generation).unwrap_or(0);
        let failures: Vec<FailedRollout> =
            self.failures(&unit.role).filter_map(|s| s.failed.clone()).collect();
        let mut desired = desired::desired(role, &unit.host, control, secrets, &failures, converged);
        desired.halted |= self.tier_failure(tiers, &unit.role).is_some();
        desired
    }

    /// The status of the unit whose failed rollout halts the role at `hash`, if any: one of the role's own, else
    /// one of another role of its rollout group. For the halt message.
    pub fn halted_by<'a>(
        &'a self,
        role: &'a Role,
        hash: &str,
        control: &RoleControl,
        tiers: &'a Tiers,
    ) -> Option<&'a UnitStatus> {
        let generation = role.metadata.generation;
        self.failures(&role.metadata.name)
            .find(|s| s.failed.as_ref().is_some_and(|f| desired::halts(f, hash, control, generation)))
            .or_else(|| self.tier_failure(tiers, &role.metadata.name))
    }

    /// The status of a unit of another role of `role`'s rollout group whose failed rollout halts the group: a
    /// failure recorded at that role's current generation and retry counter. Costs the group's roles and their
    /// failures, never the units.
    fn tier_failure<'a>(&'a self, tiers: &'a Tiers, role: &'a str) -> Option<&'a UnitStatus> {
        tiers.peers(role).find_map(|peer| {
            self.failures(&peer.role).find(|s| {
                s.failed.as_ref().is_some_and(|f| f.generation == peer.generation && f.retry == peer.retry)
            })
        })
    }

    /// Every unit of the role converged at its generation. Counted first: the units are looked at one by one
    /// only once enough of them are converged at that generation, so a rollout that asks after each unit costs
    /// O(units) in all, not O(units²).
    fn all_converged(&self, role: &Role) -> bool {
        let generation = role.metadata.generation;
        let counted = self.converged.get(&role.metadata.name).and_then(|g| g.get(&generation)).copied();
        if counted.unwrap_or(0) < role.spec.hosts.len() {
            return false;
        }
        role.spec.hosts.iter().all(|host| {
            let unit = Unit { role: role.metadata.name.clone(), host: host.clone() };
            self.get(&unit).is_some_and(|s| {
                s.state == UnitState::Converged && s.observed_generation == role.metadata.generation
            })
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
