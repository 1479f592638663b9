//! What every reconcile of one leader's term shares: the fenced store, the host pool, AWS, the knobs, the
//! metrics, the leadership to check before each action, and the term's memory. Its methods are the
//! reconciler's few effects besides Docker: writing a status or an event, and reading a role's secret.

use std::sync::Arc;

use ballast_specs::wire::{Event, UnitStatus};
use ballast_specs::{Role, RoleControl};
use chrono::Utc;
use tokio::sync::watch;

use super::memory::Memory;
use super::proxy::Proxies;
use super::status::{self, Outcome};
use super::{Config, ReconcileError, Unit};
use crate::aws::{RegistryCredentials, ResolvedSecrets, SecretSource};
use crate::hosts::{Container, HostPool};
use crate::labels;
use crate::metrics::Metrics;
use crate::plan::{self, Plan};
use crate::rollout;
use crate::store::{Snapshot, StatusStore, StoreError};

/// Everything a reconcile needs, shared by all units of one leader's term.
pub struct Context {
    pub store: Arc<dyn StatusStore>,
    /// The hosts' clients, shared with the API (logs, exec, plan): one connection per host.
    pub hosts: Arc<HostPool>,
    pub secrets: Arc<dyn SecretSource>,
    pub registry: Arc<dyn RegistryCredentials>,
    pub config: Config,
    pub(super) memory: Memory,
    /// The hosts' proxy locks and last switches of this term.
    pub(super) proxies: Proxies,
    metrics: Arc<Metrics>,
    /// True while this process leads; `None`: always (a single operator, tests).
    leading: Option<watch::Receiver<bool>>,
}

impl Context {
    pub fn new(
        store: Arc<dyn StatusStore>,
        hosts: Arc<HostPool>,
        secrets: Arc<dyn SecretSource>,
        registry: Arc<dyn RegistryCredentials>,
        config: Config,
    ) -> Context {
        Context {
            store,
            hosts,
            secrets,
            registry,
            config,
            memory: Memory::default(),
            proxies: Proxies::default(),
            metrics: Arc::new(Metrics::unregistered()),
            leading: None,
        }
    }

    /// Counts into `metrics` (the registered ones) instead of private ones.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Context {
        self.metrics = metrics;
        self
    }

    /// Acts only while `leading` is true.
    pub fn with_leading(mut self, leading: watch::Receiver<bool>) -> Context {
        self.leading = Some(leading);
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// True unless leadership was given and is lost.
    pub fn is_leading(&self) -> bool {
        self.leading.as_ref().is_none_or(|leading| *leading.borrow())
    }

    /// `Err(NotLeader)` once this process no longer leads: checked right before each action.
    pub(super) fn ensure_leading(&self) -> Result<(), ReconcileError> {
        if self.is_leading() {
            Ok(())
        } else {
            Err(ReconcileError::NotLeader)
        }
    }

    /// Loads the stored statuses (once, at start), so an operator restart keeps failure and convergence memory.
    pub async fn load_statuses(&self) -> Result<(), StoreError> {
        let stored = self.store.list_status().await?;
        let mut statuses = self.memory.statuses();
        for s in stored {
            statuses.insert(Unit { role: s.role.clone(), host: s.host.clone() }, s);
        }
        self.metrics.set_units(statuses.counts());
        Ok(())
    }

    /// The last status known for a unit.
    pub fn status(&self, unit: &Unit) -> Option<UnitStatus> {
        self.memory.statuses().get(unit).cloned()
    }

    /// A Docker event of `unit` came while its reconcile runs: if it waits for a slot of its rollout group, it looks
    /// at its host again, so that a container removed meanwhile is created at once instead of after another
    /// host's rollout.
    pub fn poke(&self, unit: &Unit) {
        self.memory.poke(unit);
    }

    /// The specs changed: their rollout groups (which roles roll together, and how many units at once) are taken
    /// when `snapshot` is newer than those known.
    pub fn note_specs(&self, snapshot: &Snapshot) {
        self.memory.note_specs(snapshot);
    }

    /// Forgets the pokes of a unit whose reconcile ended.
    pub fn forget_pokes(&self, unit: &Unit) {
        self.memory.forget_pokes(unit);
    }

    /// What the planner compares for `unit`.
    pub(super) fn desired(
        &self,
        role: &Role,
        unit: &Unit,
        control: &RoleControl,
        secrets: Option<&ResolvedSecrets>,
    ) -> plan::Desired {
        let tiers = self.memory.tiers();
        self.memory.statuses().desired(role, unit, control, secrets, &tiers)
    }

    /// What a rollout needs of the reconciler.
    pub(super) fn rollout_env(&self) -> rollout::Env<'_> {
        rollout::Env {
            stop_grace: self.config.stop_grace,
            settle: self.config.settle,
            registry: self.registry.as_ref(),
        }
    }

    /// The role's secret values, when it has secrets. A role seen at a new generation reads its secret anew
    /// rather than from the cache: a spec change is when a new key or a just-rotated value is expected.
    pub(super) async fn secrets_of(&self, role: &Role) -> Result<Option<ResolvedSecrets>, ReconcileError> {
        let Some(secrets) = &role.spec.secrets else { return Ok(None) };
        if self.memory.secret_read_at(&role.metadata.name, role.metadata.generation) {
            self.secrets.invalidate(&secrets.source);
        }
        self.secrets
            .resolve(&secrets.source, &secrets.keys)
            .await
            .map(Some)
            .map_err(|source| ReconcileError::Secrets { role: role.metadata.name.clone(), source })
    }

    /// The status of a unit whose plan is empty: `hash` is the desired container's; a `Failed` plan names the
    /// host (and role, when it is another of its rollout group) whose failed rollout halts it.
    pub(super) fn settled_status(
        &self,
        unit: &Unit,
        role: &Role,
        control: &RoleControl,
        hash: &str,
        plan: &Plan,
        observed: &[Container],
    ) -> UnitStatus {
        let current = observed.iter().find(|c| c.labels.get(labels::HASH).map(String::as_str) == Some(hash));
        let tiers = self.memory.tiers();
        let statuses = self.memory.statuses();
        let halted_by = statuses.halted_by(role, hash, control, &tiers);
        let outcome = Outcome::Settled { plan, current, halted_by };
        status::status(unit, role.metadata.generation, statuses.get(unit), outcome, Utc::now())
    }

    /// The unit's status after `outcome`, from its last status.
    pub(super) fn next_status(&self, unit: &Unit, role: &Role, outcome: Outcome<'_>) -> UnitStatus {
        let previous = self.status(unit);
        status::status(unit, role.metadata.generation, previous.as_ref(), outcome, Utc::now())
    }

    /// Writes a unit's status if it differs from the last one written.
    pub(super) async fn report(&self, unit: &Unit, status: UnitStatus) -> Result<(), StoreError> {
        if self.memory.statuses().get(unit) == Some(&status) {
            return Ok(());
        }
        self.store.put_status(&status).await?;
        let mut statuses = self.memory.statuses();
        statuses.insert(unit.clone(), status);
        self.metrics.set_units(statuses.counts());
        Ok(())
    }

    /// Forgets a unit that is no longer desired and has no container left.
    pub(super) async fn forget(&self, unit: &Unit) -> Result<(), StoreError> {
        if self.memory.statuses().remove(unit).is_some() {
            self.store.delete_status(&unit.role, &unit.host).await?;
            self.metrics.set_units(self.memory.statuses().counts());
        }
        Ok(())
    }

    /// Notes the role's generation, for `ballast_converge_seconds`.
    pub(super) fn note_generation(&self, role: &Role) {
        self.memory.note_generation(role);
    }

    /// Observes `ballast_converge_seconds` once every unit of the role is converged at its generation.
    pub(super) fn check_converged(&self, role: &Role) {
        if let Some(elapsed) = self.memory.newly_converged(role) {
            self.metrics.converged(elapsed);
        }
    }

    /// Records an event of `unit` (a failure to store it is logged, never fatal).
    pub(super) async fn event(&self, unit: &Unit, reason: &str, message: String) {
        let event = Event {
            time: Utc::now(),
            role: Some(unit.role.clone()),
            host: Some(unit.host.clone()),
            reason: reason.to_string(),
            message,
            actor: None,
        };
        tracing::info!(role = %unit.role, host = %unit.host, reason, "{}", event.message);
        if let Err(e) = self.store.add_event(&event).await {
            tracing::warn!(error = %e, "could not store event");
        }
    }
}
