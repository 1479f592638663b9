//! The reconcile of one (role, host) unit: observe the host, ask the planner, execute its actions, report
//! status and events. It never learns why it ran; running it again on a converged unit changes nothing.
//!
//! Leadership is checked right before each action: a process that no longer leads stops at the next step
//! with `NotLeader` (its status and event writes are fenced in the store as well).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_specs::wire::{Event, FailedRollout, UnitPlan, UnitState, UnitStatus};
use ballast_specs::{Host, Role, RoleControl};
use chrono::Utc;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::aws::{AwsError, RegistryCredentials, ResolvedSecrets, SecretSource};
use crate::desired;
use crate::hosts::{Connector, Container, ContainerState, DockerHost, HostError};
use crate::labels;
use crate::metrics::Metrics;
use crate::plan::{self, Action, Plan};
use crate::rollout::{self, RolloutError};
use crate::store::{Snapshot, StatusStore, StoreError};

/// Knobs of the reconciler.
#[derive(Clone, Debug)]
pub struct Config {
    /// SIGTERM-to-SIGKILL grace when stopping a container.
    pub stop_grace: Duration,
    /// A role without a health check is healthy once its container has stayed running this long.
    pub settle: Duration,
    /// The most observe-plan-execute passes one reconcile makes before it gives up until the next trigger.
    pub max_passes: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config { stop_grace: Duration::from_secs(10), settle: Duration::from_secs(2), max_passes: 6 }
    }
}

/// A (role, host) pair: the unit of reconciliation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unit {
    pub role: String,
    pub host: String,
}

/// Why a reconcile did not finish; the caller decides about retries.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("host {host}: {source}")]
    Host {
        host: String,
        #[source]
        source: HostError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("secrets of role {role}: {source}")]
    Secrets {
        role: String,
        #[source]
        source: AwsError,
    },
    #[error("unit did not settle after {0} passes")]
    NotSettled(usize),
    /// This process no longer leads: nothing more is done.
    #[error("this process is no longer the leader")]
    NotLeader,
}

impl ReconcileError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ReconcileError::Host { source, .. } if source.is_unreachable())
    }

    /// A stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Host { source, .. } => source.kind(),
            ReconcileError::Store(e) => e.kind(),
            ReconcileError::Secrets { .. } => "secrets",
            ReconcileError::NotSettled(_) => "not_settled",
            ReconcileError::NotLeader => "not_leader",
        }
    }
}

/// Everything a reconcile needs, shared by all units.
pub struct Context {
    pub store: Arc<dyn StatusStore>,
    pub hosts: HostPool,
    pub secrets: Arc<dyn SecretSource>,
    pub registry: Arc<dyn RegistryCredentials>,
    pub config: Config,
    /// One rollout per role at a time: hosts of a role roll one by one.
    rollout_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Wakes a unit that waits for its role's rollout lock when something new is seen for it (see [`Context::poke`]).
    pokes: Mutex<HashMap<Unit, Arc<tokio::sync::Notify>>>,
    /// The last status written per unit, so a status is written only when it changes.
    statuses: Mutex<Statuses>,
    /// The generation each role with secrets was last resolved at: a new one re-reads its secret.
    secret_generations: Mutex<HashMap<String, u64>>,
    metrics: Arc<Metrics>,
    /// True while this process leads; `None`: always (a single operator, tests).
    leading: Option<watch::Receiver<bool>>,
    /// Per role, the generation its units are converging to, for `ballast_converge_seconds`.
    convergence: Mutex<HashMap<String, Convergence>>,
}

/// The last status of every unit, indexed for what each reconcile asks: a unit's own status, its role's failed
/// rollouts, and how many units are in each state. Every lookup is independent of the number of units, so a
/// full resync of N hosts costs O(N), not O(N²).
#[derive(Default)]
struct Statuses {
    by_unit: HashMap<Unit, UnitStatus>,
    /// Per role, the hosts whose status records a failed rollout (usually none).
    failed: HashMap<String, BTreeSet<String>>,
    /// Units per state, for `ballast_units`.
    counts: HashMap<UnitState, i64>,
}

impl Statuses {
    fn get(&self, unit: &Unit) -> Option<&UnitStatus> {
        self.by_unit.get(unit)
    }

    fn insert(&mut self, unit: Unit, status: UnitStatus) {
        self.remove(&unit);
        if status.failed.is_some() {
            self.failed.entry(unit.role.clone()).or_default().insert(unit.host.clone());
        }
        *self.counts.entry(status.state).or_default() += 1;
        self.by_unit.insert(unit, status);
    }

    fn remove(&mut self, unit: &Unit) -> Option<UnitStatus> {
        let old = self.by_unit.remove(unit)?;
        if let Some(hosts) = self.failed.get_mut(&unit.role) {
            hosts.remove(&unit.host);
            if hosts.is_empty() {
                self.failed.remove(&unit.role);
            }
        }
        *self.counts.entry(old.state).or_default() -= 1;
        Some(old)
    }

    /// The statuses of `role`'s units that record a failed rollout.
    fn failures(&self, role: &str) -> Vec<&UnitStatus> {
        let Some(hosts) = self.failed.get(role) else { return Vec::new() };
        hosts
            .iter()
            .filter_map(|host| self.by_unit.get(&Unit { role: role.to_string(), host: host.clone() }))
            .collect()
    }
}

/// A role's newest generation: when it was first seen, and whether all its units got there.
struct Convergence {
    generation: u64,
    since: Instant,
    done: bool,
}

/// The clients of the hosts, made on first use and replaced when a host's spec changes.
pub struct HostPool {
    connector: Arc<dyn Connector>,
    clients: Mutex<HashMap<String, Client>>,
}

/// A host's client and the spec it was made for.
type Client = (ballast_specs::HostSpec, Arc<dyn DockerHost>);

impl HostPool {
    pub fn new(connector: Arc<dyn Connector>) -> HostPool {
        HostPool { connector, clients: Mutex::default() }
    }

    /// The client of `host`, connected lazily.
    pub fn client(&self, host: &Host) -> Arc<dyn DockerHost> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let name = &host.metadata.name;
        if let Some((spec, client)) = clients.get(name) {
            if *spec == host.spec {
                return client.clone();
            }
        }
        let client = self.connector.connect(name, &host.spec);
        clients.insert(name.clone(), (host.spec.clone(), client.clone()));
        client
    }

    /// Forgets hosts no longer in the spec.
    pub fn retain(&self, names: &[&str]) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|name, _| names.contains(&name.as_str()));
    }
}

impl Context {
    pub fn new(
        store: Arc<dyn StatusStore>,
        connector: Arc<dyn Connector>,
        secrets: Arc<dyn SecretSource>,
        registry: Arc<dyn RegistryCredentials>,
        config: Config,
    ) -> Context {
        Context {
            store,
            hosts: HostPool::new(connector),
            secrets,
            registry,
            config,
            rollout_locks: Mutex::default(),
            pokes: Mutex::default(),
            statuses: Mutex::default(),
            secret_generations: Mutex::default(),
            metrics: Arc::new(Metrics::unregistered()),
            leading: None,
            convergence: Mutex::default(),
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
    fn ensure_leading(&self) -> Result<(), ReconcileError> {
        if self.is_leading() {
            Ok(())
        } else {
            Err(ReconcileError::NotLeader)
        }
    }

    /// Loads the stored statuses (once, at start), so an operator restart keeps failure and convergence memory.
    pub async fn load_statuses(&self) -> Result<(), StoreError> {
        let stored = self.store.list_status().await?;
        let mut statuses = self.lock_statuses();
        for s in stored {
            statuses.insert(Unit { role: s.role.clone(), host: s.host.clone() }, s);
        }
        self.metrics.set_units(&statuses.counts);
        Ok(())
    }

    /// The last status known for a unit.
    pub fn status(&self, unit: &Unit) -> Option<UnitStatus> {
        self.lock_statuses().get(unit).cloned()
    }

    /// The role's failed rollouts (from its units' statuses, on any host), for the planner's halt check.
    fn failures(&self, role: &str) -> Vec<FailedRollout> {
        self.lock_statuses().failures(role).into_iter().filter_map(|s| s.failed.clone()).collect()
    }

    /// What the planner compares for `unit`.
    fn desired(
        &self,
        role: &Role,
        unit: &Unit,
        control: &RoleControl,
        secrets: Option<&ResolvedSecrets>,
    ) -> plan::Desired {
        let converged = self.status(unit).map(|s| s.observed_generation).unwrap_or(0);
        desired::desired(role, &unit.host, control, secrets, &self.failures(&unit.role), converged)
    }

    /// Why a unit with no failure of its own is halted: the host where its role's rollout failed, and why.
    fn halted_by(&self, role: &Role, hash: &str, control: &RoleControl) -> Option<String> {
        let statuses = self.lock_statuses();
        let generation = role.metadata.generation;
        let failed = statuses
            .failures(&role.metadata.name)
            .into_iter()
            .find(|s| s.failed.as_ref().is_some_and(|f| desired::halts(f, hash, control, generation)))?;
        Some(format!(
            "halted: the rollout failed on {}: {}; `ballast rollout retry {}` tries it again",
            failed.host, failed.message, role.metadata.name
        ))
    }

    fn lock_statuses(&self) -> std::sync::MutexGuard<'_, Statuses> {
        self.statuses.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A Docker event of `unit` came while its reconcile runs: if it waits for its role's rollout lock, it looks at
    /// its host again, so that a container removed meanwhile is created at once instead of after another host's
    /// rollout.
    pub fn poke(&self, unit: &Unit) {
        self.lock_pokes().entry(unit.clone()).or_default().notify_one();
    }

    /// Forgets the pokes of a unit whose reconcile ended.
    pub fn forget_pokes(&self, unit: &Unit) {
        self.lock_pokes().remove(unit);
    }

    fn pokes_of(&self, unit: &Unit) -> Arc<tokio::sync::Notify> {
        self.lock_pokes().entry(unit.clone()).or_default().clone()
    }

    fn lock_pokes(&self) -> std::sync::MutexGuard<'_, HashMap<Unit, Arc<tokio::sync::Notify>>> {
        self.pokes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rollout_lock(&self, role: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.rollout_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(role.to_string()).or_default().clone()
    }

    /// The role's secret values, when it has secrets. A role seen at a new generation reads its secret anew
    /// rather than from the cache: a spec change is when a new key or a just-rotated value is expected.
    async fn secrets_of(&self, role: &Role) -> Result<Option<ResolvedSecrets>, ReconcileError> {
        let Some(secrets) = &role.spec.secrets else { return Ok(None) };
        let generation = role.metadata.generation;
        let seen = {
            let mut generations = self.secret_generations.lock().unwrap_or_else(|e| e.into_inner());
            generations.insert(role.metadata.name.clone(), generation)
        };
        if seen != Some(generation) {
            self.secrets.invalidate(&secrets.source);
        }
        self.secrets
            .resolve(&secrets.source, &secrets.keys)
            .await
            .map(Some)
            .map_err(|source| ReconcileError::Secrets { role: role.metadata.name.clone(), source })
    }

    /// Writes a unit's status if it differs from the last one written (ignoring `since`).
    async fn report(&self, unit: &Unit, mut status: UnitStatus) -> Result<(), StoreError> {
        let previous = self.status(unit);
        if let Some(prev) = &previous {
            if prev.state == status.state {
                status.since = prev.since;
            }
            if *prev == status {
                return Ok(());
            }
        }
        self.store.put_status(&status).await?;
        let mut statuses = self.lock_statuses();
        statuses.insert(unit.clone(), status);
        self.metrics.set_units(&statuses.counts);
        Ok(())
    }

    async fn forget(&self, unit: &Unit) -> Result<(), StoreError> {
        if self.lock_statuses().remove(unit).is_some() {
            self.store.delete_status(&unit.role, &unit.host).await?;
            self.metrics.set_units(&self.lock_statuses().counts);
        }
        Ok(())
    }

    /// Notes the role's generation; a new one starts the clock of `ballast_converge_seconds` (unless its
    /// units are all converged at it already, as after a leader change).
    fn note_generation(&self, role: &Role) {
        let generation = role.metadata.generation;
        let mut convergence = self.lock_convergence();
        if convergence.get(&role.metadata.name).is_some_and(|c| c.generation == generation) {
            return;
        }
        let done = self.all_converged(role);
        convergence
            .insert(role.metadata.name.clone(), Convergence { generation, since: Instant::now(), done });
    }

    /// Observes `ballast_converge_seconds` once every unit of the role is converged at its generation.
    fn check_converged(&self, role: &Role) {
        let mut convergence = self.lock_convergence();
        let Some(entry) = convergence.get_mut(&role.metadata.name) else { return };
        if entry.done || entry.generation != role.metadata.generation || !self.all_converged(role) {
            return;
        }
        entry.done = true;
        self.metrics.converged(entry.since.elapsed());
    }

    fn all_converged(&self, role: &Role) -> bool {
        let statuses = self.lock_statuses();
        role.spec.hosts.iter().all(|host| {
            let unit = Unit { role: role.metadata.name.clone(), host: host.clone() };
            statuses.get(&unit).is_some_and(|s| {
                s.state == UnitState::Converged && s.observed_generation == role.metadata.generation
            })
        })
    }

    fn lock_convergence(&self) -> std::sync::MutexGuard<'_, HashMap<String, Convergence>> {
        self.convergence.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn event(&self, unit: &Unit, reason: &str, message: String) {
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

/// The containers of one unit among a host's listing: labelled with the role and this host.
pub fn containers_of(listing: &[Container], unit: &Unit) -> Vec<Container> {
    listing
        .iter()
        .filter(|c| {
            c.labels.get(labels::ROLE) == Some(&unit.role) && c.labels.get(labels::HOST) == Some(&unit.host)
        })
        .cloned()
        .collect()
}

/// Every unit on `host` that is desired, or that has containers there: roles deleted or moved away leave
/// containers behind, and those units must be reconciled (to remove them) too.
pub fn units_on_host(snapshot: &Snapshot, host: &str, listing: &[Container]) -> Vec<Unit> {
    let mut units: Vec<Unit> = snapshot
        .roles
        .iter()
        .filter(|r| r.spec.hosts.iter().any(|h| h == host))
        .map(|r| Unit { role: r.metadata.name.clone(), host: host.to_string() })
        .collect();
    for c in listing {
        if let (Some(role), Some(h)) = (c.labels.get(labels::ROLE), c.labels.get(labels::HOST)) {
            let unit = Unit { role: role.clone(), host: h.clone() };
            if h == host && !units.contains(&unit) {
                units.push(unit);
            }
        }
    }
    units.sort();
    units
}

/// Plans a unit against a given listing, without acting: used by the host pass and `ballast plan`.
pub async fn plan_unit(
    ctx: &Context,
    snapshot: &Snapshot,
    unit: &Unit,
    listing: &[Container],
) -> Result<Plan, ReconcileError> {
    let observed = containers_of(listing, unit);
    let desired = match desired_role(snapshot, unit) {
        Some(role) => {
            let control = control_of(snapshot, &role.metadata.name);
            let secrets = ctx.secrets_of(role).await?;
            Some(ctx.desired(role, unit, &control, secrets.as_ref()))
        }
        None => None,
    };
    Ok(plan::plan(desired.as_ref(), &observed))
}

/// What would be done right now for every unit (of `role`, if given): `ballast plan`.
pub async fn preview(ctx: &Context, snapshot: &Snapshot, role: Option<&str>) -> Vec<UnitPlan> {
    let mut out = Vec::new();
    for host in &snapshot.hosts {
        let name = &host.metadata.name;
        let listing = ctx.hosts.client(host).list().await;
        let listing = match listing {
            Ok(listing) => listing,
            Err(e) => {
                for unit in units_on_host(snapshot, name, &[]) {
                    if role.is_none_or(|r| r == unit.role) {
                        let message = format!("host unreachable: {e}");
                        out.push(UnitPlan { role: unit.role, host: unit.host, actions: Vec::new(), message });
                    }
                }
                continue;
            }
        };
        for unit in units_on_host(snapshot, name, &listing) {
            if role.is_some_and(|r| r != unit.role) {
                continue;
            }
            let (actions, message) = match plan_unit(ctx, snapshot, &unit, &listing).await {
                Ok(plan) => (plan.actions.iter().map(ToString::to_string).collect(), plan.message),
                Err(e) => (Vec::new(), e.to_string()),
            };
            out.push(UnitPlan { role: unit.role, host: unit.host, actions, message });
        }
    }
    out
}

/// Reconciles one unit until its plan is empty (or it fails, halts, or runs out of passes).
pub async fn reconcile(ctx: &Context, snapshot: &Snapshot, unit: &Unit) -> Result<UnitState, ReconcileError> {
    let Some(host) = snapshot.hosts.iter().find(|h| h.metadata.name == unit.host) else {
        // The host is gone from the spec: it cannot be reached any more; forget the unit.
        ctx.forget(unit).await?;
        return Ok(UnitState::Converged);
    };
    let client = ctx.hosts.client(host);
    let role = desired_role(snapshot, unit);
    if let Some(role) = role {
        ctx.note_generation(role);
    }
    let control = role.map(|r| control_of(snapshot, &r.metadata.name)).unwrap_or_default();
    let secrets = match role {
        Some(role) => match ctx.secrets_of(role).await {
            Ok(s) => s,
            Err(e) => {
                let message = e.to_string();
                report_error(ctx, unit, role, UnitState::Degraded, &message).await?;
                return Err(e);
            }
        },
        None => None,
    };
    let mut rollout_guard = None;

    let mut passes = 0;
    while passes < ctx.config.max_passes {
        passes += 1;
        let listing = match client.list().await {
            Ok(listing) => listing,
            Err(e) => return Err(unreachable(ctx, unit, role, e).await),
        };
        let observed = containers_of(&listing, unit);
        let Some(role) = role else {
            let plan = plan::plan(None, &observed);
            if plan.actions.is_empty() {
                ctx.forget(unit).await?;
                return Ok(UnitState::Converged);
            }
            for action in &plan.actions {
                ctx.ensure_leading()?;
                match execute(ctx, &*client, unit, None, &control, None, action).await {
                    Ok(()) => count_drift(ctx, action, plan.state),
                    Err(ExecError::Failed(_)) => {}
                    Err(ExecError::Reconcile(e)) => return Err(e),
                }
            }
            continue;
        };
        let desired = ctx.desired(role, unit, &control, secrets.as_ref());
        let plan = plan::plan(Some(&desired), &observed);
        let current = observed.iter().find(|c| c.labels.get(labels::HASH) == Some(&desired.hash));
        if plan.actions.is_empty() {
            let status = settled_status(ctx, unit, role, &control, &desired.hash, &plan, current);
            ctx.report(unit, status).await?;
            ctx.check_converged(role);
            return Ok(plan.state);
        }
        // Replacing a container holds the role's rollout lock: hosts of a role roll one at a time. Creating a
        // missing one does not: nothing there is serving to protect, and a container removed on one host must
        // not wait for another host's rollout (up to its deployTimeout) to come back.
        let rolls = plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Deploy { old: Some(_), .. } | Action::Finish { .. }));
        if rolls && rollout_guard.is_none() {
            // Another host may have failed this very rollout while we waited: look again under the lock. A poke
            // (something new seen for this unit) looks again without it. Waiting is not a pass.
            let (lock, poked) = (ctx.rollout_lock(&unit.role), ctx.pokes_of(unit));
            tokio::select! {
                guard = lock.lock_owned() => rollout_guard = Some(guard),
                () = poked.notified() => {}
            }
            passes -= 1;
            continue;
        }
        let status = progress_status(ctx, unit, role, &plan);
        ctx.report(unit, status).await?;
        for action in &plan.actions {
            ctx.ensure_leading()?;
            match execute(ctx, &*client, unit, Some(role), &control, secrets.as_ref(), action).await {
                Ok(()) => count_drift(ctx, action, plan.state),
                Err(ExecError::Failed(reason)) => {
                    let failed = FailedRollout {
                        hash: desired.hash.clone(),
                        retry: control.retry,
                        generation: role.metadata.generation,
                    };
                    let mut status = status_for(ctx, unit, role, UnitState::Failed, reason.clone(), None);
                    status.failed = Some(failed);
                    ctx.report(unit, status).await?;
                    ctx.event(
                        unit,
                        "RolloutFailed",
                        format!("rollout of {} on {} stopped: {reason}", unit.role, unit.host),
                    )
                    .await;
                    return Ok(UnitState::Failed);
                }
                Err(ExecError::Reconcile(e)) => {
                    if e.is_unreachable() {
                        let ReconcileError::Host { source, .. } = e else { unreachable!() };
                        return Err(unreachable(ctx, unit, Some(role), source).await);
                    }
                    report_error(ctx, unit, role, UnitState::Degraded, &e.to_string()).await?;
                    return Err(e);
                }
            }
        }
    }
    Err(ReconcileError::NotSettled(ctx.config.max_passes))
}

/// Counts a drift correction when `action` (done) corrected one; see [`drift_kind`].
fn count_drift(ctx: &Context, action: &Action, state: UnitState) {
    if let Some(kind) = drift_kind(action, state) {
        ctx.metrics.drift_corrected(kind);
    }
}

/// The kind of drift `action` corrects in a plan of `state`, for `ballast_drift_corrections_total`:
/// something changed a converged unit (`Degraded`), or a duplicate appeared. `None` for progress (a spec
/// change), a failed rollout's undo, and the removal of a unit no longer desired.
pub fn drift_kind(action: &Action, state: UnitState) -> Option<&'static str> {
    match action {
        // The planner's reason for a second container of one unit.
        Action::Remove { reason, .. } if reason == "duplicate container" => Some("duplicate_removed"),
        _ if state != UnitState::Degraded => None,
        Action::Deploy { old: None, .. } => Some("recreate_missing"),
        Action::Start { .. } => Some("restart_stopped"),
        // In place, or by a replacement when a limit was lifted out of band.
        Action::UpdateResources { .. } | Action::Deploy { old: Some(_), .. } => Some("resources_restored"),
        Action::Remove { .. } | Action::Finish { .. } => None,
    }
}

/// Records that the unit's host is unreachable, and returns the error.
async fn unreachable(ctx: &Context, unit: &Unit, role: Option<&Role>, e: HostError) -> ReconcileError {
    ctx.metrics.host_seen(&unit.host, false);
    if let Some(role) = role {
        let was = ctx.status(unit).map(|s| s.state);
        let message = e.to_string();
        if was != Some(UnitState::Unreachable) {
            ctx.event(unit, "HostUnreachable", format!("{} unreachable: {message}", unit.host)).await;
        }
        let mut status = status_for(ctx, unit, role, UnitState::Unreachable, message, None);
        // Keep what was last seen of the container.
        if let Some(prev) = ctx.status(unit) {
            status.image = prev.image;
            status.container_id = prev.container_id;
            status.cpus = prev.cpus;
            status.memory = prev.memory;
        }
        if let Err(store) = ctx.report(unit, status).await {
            tracing::warn!(error = %store, "could not store status");
        }
    }
    ReconcileError::Host { host: unit.host.clone(), source: e }
}

async fn report_error(
    ctx: &Context,
    unit: &Unit,
    role: &Role,
    state: UnitState,
    message: &str,
) -> Result<(), StoreError> {
    let was = ctx.status(unit).map(|s| (s.state, s.message));
    if was.as_ref().map(|(s, m)| (*s, m.as_str())) != Some((state, message)) {
        ctx.event(unit, "ReconcileError", format!("{} on {}: {message}", unit.role, unit.host)).await;
    }
    let mut status = status_for(ctx, unit, role, state, message.to_string(), None);
    if let Some(prev) = ctx.status(unit) {
        status.image = prev.image;
        status.container_id = prev.container_id;
        status.cpus = prev.cpus;
        status.memory = prev.memory;
    }
    ctx.report(unit, status).await
}

enum ExecError {
    /// The rollout failed (pull, health, start): the unit is halted at this spec.
    Failed(String),
    Reconcile(ReconcileError),
}

/// Performs one planned action and records its event.
async fn execute(
    ctx: &Context,
    client: &dyn DockerHost,
    unit: &Unit,
    role: Option<&Role>,
    control: &RoleControl,
    secrets: Option<&ResolvedSecrets>,
    action: &Action,
) -> Result<(), ExecError> {
    let host_err =
        |source: HostError| ExecError::Reconcile(ReconcileError::Host { host: unit.host.clone(), source });
    let (u, h) = (&unit.role, &unit.host);
    match action {
        Action::Remove { id, reason } => {
            client.remove(id).await.map_err(host_err)?;
            ctx.event(unit, "Removed", format!("removed {u} container {} on {h}: {reason}", short(id))).await;
        }
        Action::Start { id, reason } => {
            match client.start(id).await {
                Ok(()) => {}
                // Removed under our feet (`docker rm -f` races with its own die event): the next pass recreates it.
                Err(HostError::NotFound(_)) => return Ok(()),
                Err(HostError::Docker { status: 409, message }) if message.contains("marked for removal") => {
                    return Ok(())
                }
                Err(e) => return Err(host_err(e)),
            }
            ctx.event(unit, "Started", format!("started {u} on {h}: {reason}")).await;
        }
        Action::UpdateResources { id, nano_cpus, memory, reason, event } => {
            client.update_resources(id, *nano_cpus, *memory).await.map_err(host_err)?;
            let what = if reason.starts_with("restore") { "ResourcesRestored" } else { "ResourcesUpdated" };
            ctx.event(unit, what, format!("{event}, in place: same container, no restart")).await;
        }
        Action::Deploy { old, reason } => {
            let Some(role) = role else { return Ok(()) };
            let suffix = hex::encode(rand::random::<[u8; 3]>());
            let config = desired::container_config(role, h, control, secrets, &suffix);
            let started = Instant::now();
            match rollout::deploy(ctx, client, role, config, old.as_deref()).await {
                Ok(id) => {
                    let (what, msg) = match old {
                        Some(_) => ("Replaced", format!("recreated {u} on {h}: {reason}")),
                        None => ("Created", format!("created {u} on {h} ({})", role.spec.image)),
                    };
                    let ms = started.elapsed().as_millis();
                    ctx.event(unit, what, format!("{msg}; container {} healthy after {ms} ms", short(&id)))
                        .await;
                }
                Err(RolloutError::Failed(reason)) => return Err(ExecError::Failed(reason)),
                Err(RolloutError::Host(e)) => return Err(host_err(e)),
            }
        }
        Action::Finish { new, old } => {
            let Some(role) = role else { return Ok(()) };
            match rollout::finish(ctx, client, role, new, old).await {
                Ok(()) => {
                    ctx.event(unit, "Replaced", format!("finished the interrupted rollout of {u} on {h}"))
                        .await
                }
                Err(RolloutError::Failed(reason)) => return Err(ExecError::Failed(reason)),
                Err(RolloutError::Host(e)) => return Err(host_err(e)),
            }
        }
    }
    Ok(())
}

/// The status of a unit whose plan is empty. `hash` is the desired container's.
fn settled_status(
    ctx: &Context,
    unit: &Unit,
    role: &Role,
    control: &RoleControl,
    hash: &str,
    plan: &Plan,
    current: Option<&Container>,
) -> UnitStatus {
    let mut message = plan.message.clone();
    if plan.state == UnitState::Failed {
        message = match ctx.status(unit) {
            // The rollout failed here: keep the reason it stopped.
            Some(prev) if prev.failed.is_some() => prev.message,
            // It failed on another host of the role: say where and why.
            _ => ctx.halted_by(role, hash, control).unwrap_or_default(),
        };
    }
    let mut status = status_for(ctx, unit, role, plan.state, message, current);
    match plan.state {
        UnitState::Converged => {
            status.observed_generation = role.metadata.generation;
            status.failed = None;
        }
        UnitState::Failed => status.failed = ctx.status(unit).and_then(|s| s.failed),
        _ => {}
    }
    status
}

fn progress_status(ctx: &Context, unit: &Unit, role: &Role, plan: &Plan) -> UnitStatus {
    let mut status = status_for(ctx, unit, role, plan.state, plan.message.clone(), None);
    if let Some(prev) = ctx.status(unit) {
        status.image = prev.image;
        status.container_id = prev.container_id;
        status.cpus = prev.cpus;
        status.memory = prev.memory;
    }
    status
}

/// A status for the unit; `observed_generation` carries over from the last one.
fn status_for(
    ctx: &Context,
    unit: &Unit,
    role: &Role,
    state: UnitState,
    message: String,
    container: Option<&Container>,
) -> UnitStatus {
    let previous = ctx.status(unit);
    UnitStatus {
        role: unit.role.clone(),
        host: unit.host.clone(),
        generation: role.metadata.generation,
        observed_generation: previous.as_ref().map(|p| p.observed_generation).unwrap_or(0),
        state,
        image: container.map(|c| c.image.clone()).unwrap_or_default(),
        container_id: container.map(|c| short(&c.id).to_string()).unwrap_or_default(),
        cpus: container.filter(|c| c.nano_cpus > 0).map(|c| c.nano_cpus as f64 / 1e9),
        memory: container.filter(|c| c.memory > 0).map(|c| plan::memory(c.memory)),
        message,
        since: Utc::now(),
        failed: previous.and_then(|p| p.failed),
    }
}

/// The role, if it is desired on the unit's host.
fn desired_role<'a>(snapshot: &'a Snapshot, unit: &Unit) -> Option<&'a Role> {
    snapshot.roles.iter().find(|r| r.metadata.name == unit.role && r.spec.hosts.contains(&unit.host))
}

fn control_of(snapshot: &Snapshot, role: &str) -> RoleControl {
    snapshot.controls.iter().find(|(r, _)| r == role).map(|(_, c)| c.clone()).unwrap_or_default()
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// True when a container is running.
pub fn is_running(c: &Container) -> bool {
    c.state == ContainerState::Running
}

/// Lists a host once and returns the units that need a reconcile: a non-empty plan, or a stored status
/// that no longer matches what is observed. Converged units cost nothing more than the one list call.
pub async fn host_pass(ctx: &Context, snapshot: &Snapshot, host: &str) -> Result<Vec<Unit>, ReconcileError> {
    let Some(spec) = snapshot.hosts.iter().find(|h| h.metadata.name == host) else { return Ok(Vec::new()) };
    let listing = ctx
        .hosts
        .client(spec)
        .list()
        .await
        .map_err(|source| ReconcileError::Host { host: host.to_string(), source })?;
    let mut out = Vec::new();
    for unit in units_on_host(snapshot, host, &listing) {
        if needs_reconcile(ctx, snapshot, &unit, &listing).await.unwrap_or(true) {
            out.push(unit);
        }
    }
    Ok(out)
}

async fn needs_reconcile(
    ctx: &Context,
    snapshot: &Snapshot,
    unit: &Unit,
    listing: &[Container],
) -> Result<bool, ReconcileError> {
    let plan = plan_unit(ctx, snapshot, unit, listing).await?;
    if !plan.actions.is_empty() {
        return Ok(true);
    }
    let Some(role) = desired_role(snapshot, unit) else { return Ok(ctx.status(unit).is_some()) };
    let observed = containers_of(listing, unit);
    let control = control_of(snapshot, &role.metadata.name);
    let secrets = ctx.secrets_of(role).await?;
    let hash = desired::hash(role, &control, secrets.as_ref());
    let current = observed.iter().find(|c| c.labels.get(labels::HASH) == Some(&hash));
    let mut expected = settled_status(ctx, unit, role, &control, &hash, &plan, current);
    Ok(match ctx.status(unit) {
        Some(stored) => {
            expected.since = stored.since;
            expected != stored
        }
        None => true,
    })
}

/// `GET /api/v1/plan`: the plans of every unit (or one role's) against what the hosts run right now.
#[async_trait::async_trait]
impl crate::api::Plans for Context {
    async fn plan(&self, role: Option<&str>) -> Result<Vec<UnitPlan>, StoreError> {
        let snapshot = self.store.snapshot().await?;
        if let Some(role) = role {
            if !snapshot.roles.iter().any(|r| r.metadata.name == role) {
                return Err(StoreError::NotFound { kind: "role", name: role.to_string() });
            }
        }
        // A standby has no statuses in memory: read them, so halted rollouts show as such.
        self.load_statuses().await?;
        Ok(preview(self, &snapshot, role).await)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::plan::Desired;

    fn desired(converged_generation: u64) -> Desired {
        Desired {
            role: "web".to_string(),
            host: "h1".to_string(),
            generation: 1,
            image: "app:v1".to_string(),
            hash: "h".to_string(),
            nano_cpus: 0,
            memory: 256 << 20,
            paused: false,
            halted: false,
            converged_generation,
        }
    }

    fn container(id: &str, state: ContainerState, memory: i64) -> Container {
        Container {
            id: id.to_string(),
            name: id.to_string(),
            image: "app:v1".to_string(),
            labels: BTreeMap::from([
                (labels::ROLE.to_string(), "web".to_string()),
                (labels::HOST.to_string(), "h1".to_string()),
                (labels::GENERATION.to_string(), "1".to_string()),
                (labels::HASH.to_string(), "h".to_string()),
            ]),
            state,
            nano_cpus: 0,
            memory,
            ip: None,
        }
    }

    /// The drift kinds of the planner's actions for `observed`.
    fn kinds(desired: Option<&Desired>, observed: &[Container]) -> Vec<Option<&'static str>> {
        let plan = plan::plan(desired, observed);
        plan.actions.iter().map(|a| drift_kind(a, plan.state)).collect()
    }

    #[test]
    fn drift_kinds_follow_the_planners_actions() {
        let converged = desired(1);
        let running = container("a", ContainerState::Running, 256 << 20);
        assert_eq!(kinds(Some(&converged), &[]), [Some("recreate_missing")]);
        let exited = container("a", ContainerState::Exited, 256 << 20);
        assert_eq!(kinds(Some(&converged), &[exited]), [Some("restart_stopped")]);
        let shrunk = container("a", ContainerState::Running, 128 << 20);
        assert_eq!(kinds(Some(&converged), &[shrunk]), [Some("resources_restored")]);
        let twin = container("b", ContainerState::Running, 256 << 20);
        assert_eq!(kinds(Some(&converged), &[running.clone(), twin]), [Some("duplicate_removed")]);
        // Progress and removals of a unit no longer desired are not drift.
        assert_eq!(kinds(Some(&desired(0)), &[]), [None]);
        assert_eq!(kinds(None, &[running]), [None]);
    }
}
