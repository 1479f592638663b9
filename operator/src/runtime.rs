//! The operator's closed event loop: every trigger is an [`Event`]; work is coalesced per unit and per host,
//! with one reconcile in flight per unit and one pass in flight per host.
//!
//! Triggers: the store's watch (specs changed), each host's Docker events, a periodic resync, and retries
//! with backoff. A host pass lists the host's containers once and starts unit reconciles only where the plan
//! is not empty or the stored status is out of date, so a converged host costs one list call per resync.
//!
//! Stopping is a designed path: at cancel the loop stops scheduling (triggers, timers and Docker event
//! subscriptions end at once); in-flight reconciles and host passes get a deadline to finish, then are
//! aborted. A process that no longer leads aborts them at once (each would stop at its next action anyway).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ballast_specs::HostSpec;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::labels;
use crate::reconcile::{self, Context, ReconcileError, Specs, Unit};

/// Timing of the loop.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Every host is listed at least this often, whatever else happens.
    pub resync: Duration,
    /// First retry delay after a failed reconcile; doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            resync: Duration::from_secs(30),
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// How long in-flight reconciles may take to finish after a cancel before they are aborted.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Everything that can make the operator work.
#[derive(Debug)]
enum Event {
    /// Specs changed in the store (or the watch started over).
    Specs,
    /// A container of `role` changed on `host` (a Docker event).
    Container {
        host: String,
        role: String,
    },
    /// The host's event stream (re)started: anything may have happened meanwhile.
    HostStream {
        host: String,
    },
    Resync,
    RetryUnit(Unit),
    RetryHost(String),
    UnitDone(Unit, Result<(), ReconcileError>),
    /// A host pass ended: the units that need a reconcile, or why the host could not be listed.
    PassDone(String, Result<Vec<Unit>, ReconcileError>),
}

/// Runs the reconciler until `shutdown` is cancelled; in-flight reconciles then get [`DRAIN`] to finish.
pub async fn run(ctx: Arc<Context>, config: RuntimeConfig, shutdown: CancellationToken) {
    run_draining(ctx, config, shutdown, DRAIN).await;
}

/// Runs the reconciler until `shutdown` is cancelled. Then it stops scheduling, lets in-flight reconciles
/// and host passes finish within `drain` (none when this process no longer leads), aborts the rest, and
/// returns once no task of it runs any more.
pub async fn run_draining(
    ctx: Arc<Context>,
    config: RuntimeConfig,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut state = Loop {
        ctx,
        config,
        tx,
        specs: Arc::new(Specs::default()),
        work: JoinSet::new(),
        background: JoinSet::new(),
        in_flight: HashSet::new(),
        dirty: HashSet::new(),
        passes: HashSet::new(),
        passes_dirty: HashSet::new(),
        unit_attempts: HashMap::new(),
        host_attempts: HashMap::new(),
        host_retries: HashSet::new(),
        watchers: HashMap::new(),
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = state.run(rx) => {}
    }
    state.stop(drain).await;
}

struct Loop {
    ctx: Arc<Context>,
    config: RuntimeConfig,
    tx: mpsc::UnboundedSender<Event>,
    /// The specs last read, indexed by name: every lookup of a host pass or a reconcile is independent of the
    /// fleet's size.
    specs: Arc<Specs>,
    /// Unit reconciles and host passes: they act on hosts, so a stop lets them finish within a deadline.
    work: JoinSet<()>,
    /// The store watch, the resync ticker and retry timers: a stop ends them at once.
    background: JoinSet<()>,
    in_flight: HashSet<Unit>,
    dirty: HashSet<Unit>,
    passes: HashSet<String>,
    passes_dirty: HashSet<String>,
    unit_attempts: HashMap<Unit, u32>,
    host_attempts: HashMap<String, u32>,
    /// Hosts with a retry pass already scheduled: a failing host's units each report it, but it is retried once.
    host_retries: HashSet<String>,
    /// The Docker event subscription of each host, with the spec it was made for.
    watchers: HashMap<String, (HostSpec, tokio::task::JoinHandle<()>)>,
}

impl Loop {
    async fn run(&mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        self.start().await;
        loop {
            tokio::select! {
                Some(event) = rx.recv() => self.handle(event).await,
                Some(_) = self.work.join_next(), if !self.work.is_empty() => {}
                Some(_) = self.background.join_next(), if !self.background.is_empty() => {}
            }
        }
    }

    /// Stops scheduling, drains in-flight work within `drain`, aborts what is left, and waits for every
    /// task to end.
    async fn stop(mut self, drain: Duration) {
        self.background.abort_all();
        for (_, (_, handle)) in self.watchers.drain() {
            handle.abort();
        }
        if !self.work.is_empty() {
            if self.ctx.is_leading() {
                let in_flight = self.work.len();
                tracing::info!(in_flight, ?drain, "waiting for in-flight reconciles");
                let started = Instant::now();
                let work = &mut self.work;
                let drained =
                    tokio::time::timeout(drain, async { while work.join_next().await.is_some() {} });
                match drained.await {
                    Ok(()) => tracing::info!(took = ?started.elapsed(), "in-flight reconciles finished"),
                    Err(_) => tracing::warn!(
                        left = self.work.len(),
                        "aborting in-flight reconciles at the deadline"
                    ),
                }
            } else {
                tracing::info!(in_flight = self.work.len(), "not leading: aborting in-flight reconciles");
            }
        }
        self.work.shutdown().await;
        self.background.shutdown().await;
    }

    /// Loads statuses and specs (retrying until the store answers), then starts the watch and the resync timer.
    async fn start(&mut self) {
        let mut delay = self.config.retry_min;
        loop {
            match self.ctx.load_statuses().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot load statuses; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.config.retry_max);
                }
            }
        }
        while !self.reload().await {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.config.retry_max);
        }
        let store = self.ctx.store.clone();
        let tx = self.tx.clone();
        let from = self.specs.snapshot().revision;
        self.background.spawn(async move {
            let mut delay = Duration::from_millis(200);
            let mut stream = loop {
                match store.watch(from).await {
                    Ok(stream) => break stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch the store; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
            };
            while stream.next().await.is_some() {
                if tx.send(Event::Specs).is_err() {
                    return;
                }
            }
        });
        let tx = self.tx.clone();
        let resync = self.config.resync;
        self.background.spawn(async move {
            let mut ticker = tokio::time::interval(resync);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if tx.send(Event::Resync).is_err() {
                    return;
                }
            }
        });
        self.sync_watchers();
        self.pass_all();
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Specs => {
                if self.reload().await {
                    self.sync_watchers();
                    self.pass_all();
                } else {
                    self.later(Event::Specs, self.config.retry_min);
                }
            }
            Event::Resync => {
                if self.reload().await {
                    self.sync_watchers();
                }
                self.pass_all();
            }
            Event::Container { host, role } => {
                let unit = Unit { role, host };
                // A unit waiting for its role's rollout looks at its host again on a Docker event of its own
                // (not on every resync: those find nothing the events did not already say).
                if self.in_flight.contains(&unit) {
                    self.ctx.poke(&unit);
                }
                self.schedule_unit(unit);
            }
            Event::HostStream { host } => self.schedule_pass(&host),
            Event::RetryHost(host) => {
                self.host_retries.remove(&host);
                self.schedule_pass(&host);
            }
            Event::RetryUnit(unit) => self.schedule_unit(unit),
            Event::UnitDone(unit, result) => {
                self.in_flight.remove(&unit);
                self.ctx.forget_pokes(&unit);
                match result {
                    Ok(()) => {
                        self.unit_attempts.remove(&unit);
                    }
                    // The host pass retries unreachable hosts and then wakes their units.
                    Err(e) if e.is_unreachable() => self.retry_host(&unit.host),
                    Err(e) => {
                        tracing::warn!(role = %unit.role, host = %unit.host, error = %e, "reconcile failed");
                        let delay =
                            backoff(&self.config, self.unit_attempts.entry(unit.clone()).or_default());
                        self.later(Event::RetryUnit(unit.clone()), delay);
                    }
                }
                if self.dirty.remove(&unit) {
                    self.schedule_unit(unit);
                }
            }
            Event::PassDone(host, result) => {
                self.passes.remove(&host);
                match result {
                    Ok(units) => {
                        self.ctx.metrics().host_seen(&host, true);
                        self.host_attempts.remove(&host);
                        for unit in units {
                            self.schedule_unit(unit);
                        }
                    }
                    Err(e) => {
                        if e.is_unreachable() {
                            self.ctx.metrics().host_seen(&host, false);
                        }
                        tracing::warn!(host = %host, error = %e, "host pass failed");
                        // Let each unit record why (Unreachable), then retry the host with backoff.
                        for unit in reconcile::units_on_host(&self.specs, &host, &[]) {
                            self.schedule_unit(unit);
                        }
                        self.retry_host(&host);
                    }
                }
                if self.passes_dirty.remove(&host) {
                    self.schedule_pass(&host);
                }
            }
        }
    }

    /// Reads the specs again; false when the store cannot be read.
    async fn reload(&mut self) -> bool {
        match self.ctx.store.snapshot().await {
            Ok(snapshot) => {
                let specs = Specs::new(snapshot);
                self.ctx.hosts.retain(|name| specs.host(name).is_some());
                self.ctx.metrics().retain_hosts(|name| specs.host(name).is_some());
                self.ctx.note_specs(specs.snapshot());
                self.specs = Arc::new(specs);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read specs");
                false
            }
        }
    }

    fn pass_all(&mut self) {
        let specs = self.specs.clone();
        for host in specs.hosts() {
            self.schedule_pass(&host.metadata.name);
        }
    }

    fn schedule_unit(&mut self, unit: Unit) {
        if self.in_flight.contains(&unit) {
            self.dirty.insert(unit);
            return;
        }
        self.in_flight.insert(unit.clone());
        let (ctx, specs, tx) = (self.ctx.clone(), self.specs.clone(), self.tx.clone());
        self.work.spawn(async move {
            let started = Instant::now();
            let result = reconcile::reconcile(&ctx, &specs, &unit).await.map(|_| ());
            let kind = result.as_ref().err().map_or("ok", ReconcileError::kind);
            ctx.metrics().reconciled(kind, started.elapsed());
            let _ = tx.send(Event::UnitDone(unit, result));
        });
    }

    fn schedule_pass(&mut self, host: &str) {
        if self.passes.contains(host) {
            self.passes_dirty.insert(host.to_string());
            return;
        }
        self.passes.insert(host.to_string());
        let (ctx, specs, tx) = (self.ctx.clone(), self.specs.clone(), self.tx.clone());
        let host = host.to_string();
        self.work.spawn(async move {
            let result = reconcile::host_pass(&ctx, &specs, &host).await;
            let _ = tx.send(Event::PassDone(host, result));
        });
    }

    fn retry_host(&mut self, host: &str) {
        if self.host_retries.contains(host) {
            return;
        }
        let attempts = self.host_attempts.entry(host.to_string()).or_default();
        if *attempts > 0 && self.passes.contains(host) {
            return;
        }
        self.host_retries.insert(host.to_string());
        let delay = backoff(&self.config, attempts);
        self.later(Event::RetryHost(host.to_string()), delay);
    }

    fn later(&mut self, event: Event, delay: Duration) {
        let tx = self.tx.clone();
        self.background.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(event);
        });
    }

    /// One Docker event subscription per host in the spec; a changed host spec gets a new one.
    fn sync_watchers(&mut self) {
        let specs = self.specs.clone();
        self.watchers.retain(|name, (spec, handle)| {
            let keep = specs.host(name).is_some_and(|h| h.spec == *spec);
            if !keep {
                handle.abort();
            }
            keep
        });
        for host in specs.hosts() {
            let name = host.metadata.name.clone();
            if self.watchers.contains_key(&name) {
                continue;
            }
            let client = self.ctx.hosts.client(host);
            let tx = self.tx.clone();
            let task_name = name.clone();
            let handle = tokio::spawn(async move {
                let mut delay = Duration::from_millis(200);
                loop {
                    if let Ok(mut stream) = client.events().await {
                        delay = Duration::from_millis(200);
                        if tx.send(Event::HostStream { host: task_name.clone() }).is_err() {
                            return;
                        }
                        while let Some(event) = stream.next().await {
                            if let Some(role) = event.labels.get(labels::ROLE) {
                                let on = event
                                    .labels
                                    .get(labels::HOST)
                                    .cloned()
                                    .unwrap_or_else(|| task_name.clone());
                                if tx.send(Event::Container { host: on, role: role.clone() }).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            });
            self.watchers.insert(name, (host.spec.clone(), handle));
        }
    }
}

/// A loop dropped without [`Loop::stop`] (its task was aborted) still ends its Docker event subscriptions;
/// the join sets abort their tasks by themselves.
impl Drop for Loop {
    fn drop(&mut self) {
        for (_, (_, handle)) in self.watchers.drain() {
            handle.abort();
        }
    }
}

/// `retry_min * 2^attempts`, capped at `retry_max`; counts the attempt.
fn backoff(config: &RuntimeConfig, attempts: &mut u32) -> Duration {
    let delay = config.retry_min.saturating_mul(1u32 << (*attempts).min(16)).min(config.retry_max);
    *attempts += 1;
    delay
}
