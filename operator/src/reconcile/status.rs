//! What a unit's status is, as a pure function of its previous status, what happened, and the time.
//!
//! Every status the reconciler writes is made here: a settled plan (converged, paused, failed here or halted by
//! another host), a plan about to act, a failed rollout, an unreachable host, an error. The rules that carry
//! over from the previous status live in one place: `observedGeneration` (raised only on convergence), the
//! failed rollout (kept until the unit converges), the last container seen (kept while nothing new is
//! observed), the proxy's route (kept while the proxy is not read) and `since` (kept while the state stays the
//! same). Snapshot tests in `status/tests.rs`.

use ballast_specs::wire::{FailedRollout, UnitProxy, UnitState, UnitStatus};
use chrono::{DateTime, Utc};

use super::{short, Unit};
use crate::hosts::Container;
use crate::plan::{self, Plan, Routing};

/// What happened to the unit, as far as its status is concerned.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// The plan is empty: the unit rests in `plan.state`. `current` is the container of the desired hash, if
    /// any; `halted_by` the status of the unit (of the same role, or another of its rollout group) whose failed
    /// rollout halts this one.
    Settled { plan: &'a Plan, current: Option<&'a Container>, halted_by: Option<&'a UnitStatus> },
    /// The plan has actions that are about to run.
    Acting { plan: &'a Plan },
    /// A rollout failed here: the unit is halted at `failed` until a new generation or a retry.
    RolloutFailed { reason: &'a str, failed: &'a FailedRollout },
    /// The host cannot be reached.
    Unreachable { message: &'a str },
    /// The reconcile failed (Docker, secrets): the unit is `Degraded`.
    Error { message: &'a str },
}

/// The status of `unit` of a role at `generation` after `outcome`, given its `previous` status.
pub fn status(
    unit: &Unit,
    generation: u64,
    previous: Option<&UnitStatus>,
    outcome: Outcome<'_>,
    now: DateTime<Utc>,
) -> UnitStatus {
    let mut status = UnitStatus {
        role: unit.role.clone(),
        host: unit.host.clone(),
        generation,
        observed_generation: previous.map(|p| p.observed_generation).unwrap_or(0),
        state: UnitState::Progressing,
        image: String::new(),
        container_id: String::new(),
        cpus: None,
        memory: None,
        message: String::new(),
        since: now,
        failed: previous.and_then(|p| p.failed.clone()),
        proxy: previous.and_then(|p| p.proxy.clone()),
    };
    match outcome {
        Outcome::Settled { plan, current, halted_by } => {
            status.proxy = routing(&plan.routing, status.proxy.take());
            status.state = plan.state;
            status.message = match plan.state {
                UnitState::Failed => failed_message(unit, previous, halted_by),
                _ => plan.message.clone(),
            };
            if let Some(c) = current {
                show(&mut status, c);
            }
            if plan.state == UnitState::Converged {
                status.observed_generation = generation;
                status.failed = None;
            }
        }
        Outcome::Acting { plan } => {
            status.proxy = routing(&plan.routing, status.proxy.take());
            status.state = plan.state;
            status.message = plan.message.clone();
            keep_container(&mut status, previous);
        }
        Outcome::RolloutFailed { reason, failed } => {
            status.state = UnitState::Failed;
            status.message = reason.to_string();
            status.failed = Some(failed.clone());
        }
        Outcome::Unreachable { message } => {
            status.state = UnitState::Unreachable;
            status.message = message.to_string();
            keep_container(&mut status, previous);
        }
        Outcome::Error { message } => {
            status.state = UnitState::Degraded;
            status.message = message.to_string();
            keep_container(&mut status, previous);
        }
    }
    if let Some(p) = previous.filter(|p| p.state == status.state) {
        status.since = p.since;
    }
    status
}

/// The message of a unit whose plan is halted: its own failure's reason if the rollout failed here, else
/// where and why it failed on another host of the role, or of another role of its rollout group (and so which
/// role a retry is for).
fn failed_message(unit: &Unit, previous: Option<&UnitStatus>, halted_by: Option<&UnitStatus>) -> String {
    match (previous, halted_by) {
        (Some(prev), _) if prev.failed.is_some() => prev.message.clone(),
        (_, Some(other)) if other.role != unit.role => format!(
            "halted: the rollout of {} failed on {}: {}; `ballast rollout retry {}` tries it again",
            other.role, other.host, other.message, other.role
        ),
        (_, Some(other)) => format!(
            "halted: the rollout failed on {}: {}; `ballast rollout retry {}` tries it again",
            other.host, other.message, unit.role
        ),
        _ => String::new(),
    }
}

/// What the status says of the proxy after a plan: what the planner saw, or what it said before when the proxy
/// was not read (a host pass); nothing for a unit that is not proxied.
fn routing(routing: &Routing, previous: Option<UnitProxy>) -> Option<UnitProxy> {
    match routing {
        Routing::NotProxied => None,
        Routing::Unseen => previous,
        Routing::Seen { port, to } => Some(UnitProxy {
            port: *port,
            routes_to: to.as_deref().map(short).unwrap_or_default().to_string(),
        }),
    }
}

/// Shows `container` in the status.
fn show(status: &mut UnitStatus, container: &Container) {
    status.image = container.image.clone();
    status.container_id = short(&container.id).to_string();
    status.cpus = (container.nano_cpus > 0).then(|| container.nano_cpus as f64 / 1e9);
    status.memory = (container.memory > 0).then(|| plan::memory(container.memory));
}

/// Keeps what was last seen of the container: nothing new was observed.
fn keep_container(status: &mut UnitStatus, previous: Option<&UnitStatus>) {
    if let Some(prev) = previous {
        status.image = prev.image.clone();
        status.container_id = prev.container_id.clone();
        status.cpus = prev.cpus;
        status.memory = prev.memory.clone();
    }
}

#[cfg(test)]
mod tests;
