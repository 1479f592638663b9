//! The pure planner: desired + observed state of one (role, host) unit in, actions out. No I/O, no clock.
//!
//! The plan never depends on why it was asked for: the same inputs give the same plan.

use std::fmt;
use std::time::Duration;

use ballast_specs::format_bytes;
use ballast_specs::wire::UnitState;

use crate::hosts::{Container, ContainerState};
use crate::labels;

/// What one unit should be, reduced to what the planner compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub role: String,
    pub host: String,
    pub generation: u64,
    pub image: String,
    /// [`labels::recreate_hash`] of the desired container.
    pub hash: String,
    /// 0 = unlimited.
    pub nano_cpus: i64,
    /// 0 = unlimited.
    pub memory: i64,
    /// A paused role is observed and reported, never changed.
    pub paused: bool,
    /// A rollout of this exact `hash` failed for this role and no retry was asked for: do not try it again.
    pub halted: bool,
    /// The generation this unit last converged at (from its stored status), 0 if never. Tells drift
    /// (something changed a converged unit: `Degraded`) from progress (the spec changed: `Progressing`).
    pub converged_generation: u64,
    /// Served through the host's proxy: rolled start-first behind it (see [`proxied`]).
    pub proxy: Option<Proxied>,
}

/// How a proxied unit is served, and what the host's proxy was seen doing for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxied {
    /// The host port the proxy serves the role on.
    pub port: u16,
    /// How long requests in flight on an old container may take after a switch.
    pub drain: Duration,
    /// Which container the proxy routes the role to, as last read from it.
    pub routed: Routed,
}

/// What the host's proxy routes a role to, as read from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routed {
    /// The proxy was not read (a host pass does not): the planner assumes it routes where it should.
    Unknown,
    /// The proxy has no container for the role, or cannot be reached.
    Nothing,
    /// This container.
    To(String),
}

/// One step for the executor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Health-gated replacement: pull, create and start a new container, wait until healthy, then remove
    /// `old` (per the role's strategy). With no `old`, a plain create.
    Deploy { old: Option<String>, reason: String },
    /// A new container of the desired hash already exists beside old ones (an interrupted rollout):
    /// make sure it runs and is healthy, then remove the old ones; on failure remove it and restart the best old one.
    Finish { new: String, old: Vec<String> },
    /// Start a stopped container (dead, exited, or never started).
    Start { id: String, reason: String },
    /// Change cpus/memory in place, without a restart.
    UpdateResources { id: String, nano_cpus: i64, memory: i64, reason: String, event: String },
    /// Remove a container: a duplicate, or one whose unit is no longer desired.
    Remove { id: String, reason: String },
    /// Behind the proxy: create, start and health-check a container of the desired spec beside `beside`, which
    /// keeps serving; a new container that does not get healthy is removed (the rollout failed).
    Launch { beside: Option<String>, reason: String },
    /// Behind the proxy: make sure the new container `id` runs and passes its health check (a rollout that was
    /// interrupted); if it does not, it is removed.
    Verify { id: String },
    /// Point the proxy's route of the role at `to` (`None`: the running container of the desired spec, which the
    /// launch before started). `from` is what it routed to.
    Switch { port: u16, from: Option<String>, to: Option<String> },
    /// Wait until no request is in flight on `id` (at most `drain`), then stop and remove it.
    Retire { id: String, drain: Duration },
}

/// The actions for one unit, and the state to report while (or after) they run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub state: UnitState,
    pub message: String,
    /// What the planner saw of the proxy for the unit, for its status.
    pub routing: Routing,
}

/// What a plan says of the proxy's route of its unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routing {
    NotProxied,
    /// Proxied, but the proxy was not read: the status keeps what it last said.
    Unseen,
    /// Proxied on `port`, routed to `to` (`None`: to no container).
    Seen {
        port: u16,
        to: Option<String>,
    },
}

/// Decides what to do for one unit. `desired` is `None` when the unit is no longer wanted (role deleted,
/// or host dropped from the role): every container of it is removed. `observed` holds the containers of this
/// (role, host) as listed on the host.
pub fn plan(desired: Option<&Desired>, observed: &[Container]) -> Plan {
    // A container Docker is already removing is as good as gone.
    let observed: Vec<Container> =
        observed.iter().filter(|c| c.state != ContainerState::Removing).cloned().collect();
    match desired.and_then(|d| Some((d, d.proxy.as_ref()?))) {
        Some((desired, proxy)) if !desired.paused => proxied::plan(desired, proxy, &observed),
        Some((desired, proxy)) => {
            Plan { routing: proxied::routing(proxy), ..plan_direct(Some(desired), &observed) }
        }
        None => plan_direct(desired, &observed),
    }
}

/// The plan of a unit that is not behind the proxy (or is paused).
fn plan_direct(desired: Option<&Desired>, observed: &[Container]) -> Plan {
    let Some(desired) = desired else {
        let actions: Vec<Action> = sorted(observed.iter().collect())
            .into_iter()
            .map(|c| Action::Remove { id: c.id.clone(), reason: "no longer desired".into() })
            .collect();
        let message = if actions.is_empty() { "" } else { "removing containers of a unit no longer desired" };
        return Plan {
            routing: Routing::NotProxied,
            actions,
            state: UnitState::Converged,
            message: message.into(),
        };
    };

    if desired.paused {
        let message = match observed.iter().find(|c| c.labels.get(labels::HASH) == Some(&desired.hash)) {
            Some(_) => "paused: observed only".to_string(),
            None => "paused: observed only; not at the desired spec".to_string(),
        };
        return Plan { routing: Routing::NotProxied, actions: Vec::new(), state: UnitState::Paused, message };
    }

    let (current, stale): (Vec<&Container>, Vec<&Container>) =
        observed.iter().partition(|c| c.labels.get(labels::HASH) == Some(&desired.hash));
    let current = sorted(current);
    let stale = sorted(stale);
    let drift = desired.converged_generation == desired.generation;
    let mut actions = Vec::new();

    if let Some((keep, duplicates)) = current.split_first() {
        for dup in duplicates {
            actions.push(Action::Remove { id: dup.id.clone(), reason: "duplicate container".into() });
        }
        if desired.halted && !stale.is_empty() {
            // The failed rollout's container survived beside the old one (the executor was interrupted): undo
            // it. Alone, it is a rollout of that hash that succeeded here before another host failed it: keep it.
            actions.push(Action::Remove { id: keep.id.clone(), reason: "rollout failed".into() });
            if let Some(old) = stale.first() {
                if old.state != ContainerState::Running {
                    actions.push(Action::Start {
                        id: old.id.clone(),
                        reason: "restore previous container".into(),
                    });
                }
            }
            return Plan {
                routing: Routing::NotProxied,
                actions,
                state: UnitState::Failed,
                message: String::new(),
            };
        }
        if !stale.is_empty() {
            actions.push(Action::Finish {
                new: keep.id.clone(),
                old: stale.iter().map(|c| c.id.clone()).collect(),
            });
            return Plan {
                routing: Routing::NotProxied,
                actions,
                state: UnitState::Progressing,
                message: "finishing rollout".into(),
            };
        }
        if keep.state != ContainerState::Running {
            let reason = format!("container {} is {}", short(&keep.id), keep.state);
            actions.push(Action::Start { id: keep.id.clone(), reason: reason.clone() });
            return Plan {
                routing: Routing::NotProxied,
                actions,
                state: UnitState::Degraded,
                message: reason,
            };
        }
        if lifts_a_limit(keep, desired) {
            // Docker's update cannot remove a limit (0 means "unchanged" there): replace the container.
            let reason =
                format!("{}; docker cannot lift a limit in place", resources_change(keep, desired, drift));
            actions.push(Action::Deploy { old: Some(keep.id.clone()), reason: reason.clone() });
            let state = if drift { UnitState::Degraded } else { UnitState::Progressing };
            return Plan { routing: Routing::NotProxied, actions, state, message: reason };
        }
        if let Some((update, reason)) = update_in_place(keep, desired, drift) {
            actions.push(update);
            let state = if drift { UnitState::Degraded } else { UnitState::Progressing };
            return Plan { routing: Routing::NotProxied, actions, state, message: reason };
        }
        let state = UnitState::Converged;
        let message = if actions.is_empty() { String::new() } else { "removing duplicates".into() };
        return Plan { routing: Routing::NotProxied, actions, state, message };
    }

    // No container of the desired spec.
    if desired.halted {
        if let Some(old) = stale.first() {
            if old.state != ContainerState::Running {
                actions
                    .push(Action::Start { id: old.id.clone(), reason: "restore previous container".into() });
            }
        }
        return Plan {
            routing: Routing::NotProxied,
            actions,
            state: UnitState::Failed,
            message: String::new(),
        };
    }
    let (old, reason, state) = replacement(&stale, desired, drift, &mut actions);
    actions.push(Action::Deploy { old: old.map(|c| c.id.clone()), reason: reason.clone() });
    Plan { routing: Routing::NotProxied, actions, state, message: reason }
}

/// Running containers first, then the newest generation, then by name: a stable order.
pub(crate) fn sorted(mut containers: Vec<&Container>) -> Vec<&Container> {
    containers.sort_by(|a, b| {
        let running = |c: &Container| c.state != ContainerState::Running;
        running(a)
            .cmp(&running(b))
            .then(labels::generation_of(&b.labels).cmp(&labels::generation_of(&a.labels)))
            .then(a.name.cmp(&b.name))
    });
    containers
}

/// The container has a cpu or memory limit the desired spec does not have.
/// A unit with no container of the desired spec: the stale container to replace (the first; the others are
/// removed as duplicates), why, and the state to report while it is replaced.
pub(crate) fn replacement<'c>(
    stale: &[&'c Container],
    desired: &Desired,
    drift: bool,
    actions: &mut Vec<Action>,
) -> (Option<&'c Container>, String, UnitState) {
    let (old, extra) = match stale.split_first() {
        Some((old, extra)) => (Some(*old), extra),
        None => (None, &[][..]),
    };
    for c in extra {
        actions.push(Action::Remove { id: c.id.clone(), reason: "duplicate container".into() });
    }
    let (reason, state) = match old {
        Some(old) => (replace_reason(old, desired), UnitState::Progressing),
        None if drift => ("container missing, recreating".to_string(), UnitState::Degraded),
        None => ("creating container".to_string(), UnitState::Progressing),
    };
    (old, reason, state)
}

/// The in-place update of cpus and memory when they differ from the spec (and no limit is lifted), and why.
pub(crate) fn update_in_place(keep: &Container, desired: &Desired, drift: bool) -> Option<(Action, String)> {
    if keep.nano_cpus == desired.nano_cpus && keep.memory == desired.memory {
        return None;
    }
    let reason = resources_change(keep, desired, drift);
    let update = Action::UpdateResources {
        id: keep.id.clone(),
        nano_cpus: desired.nano_cpus,
        memory: desired.memory,
        reason: reason.clone(),
        event: resources_event(keep, desired, drift),
    };
    Some((update, reason))
}

pub(crate) fn lifts_a_limit(c: &Container, desired: &Desired) -> bool {
    (desired.nano_cpus == 0 && c.nano_cpus != 0) || (desired.memory == 0 && c.memory != 0)
}

pub(crate) fn replace_reason(old: &Container, desired: &Desired) -> String {
    if old.image != desired.image {
        return format!("image {} → {}", old.image, desired.image);
    }
    let old_generation = labels::generation_of(&old.labels);
    if old_generation == desired.generation {
        // Same generation, other hash: a secret rotation or a restart request.
        return "secret values changed or restart requested".into();
    }
    format!("spec changed (generation {old_generation} → {})", desired.generation)
}

pub(crate) fn resources_change(c: &Container, desired: &Desired, drift: bool) -> String {
    let (what, was) = resources_diff(c, desired);
    if drift {
        format!("restore {what} (was {was}, changed outside ballast)")
    } else {
        format!("update {what} (was {was})")
    }
}

/// The past-tense sentence of an in-place update, for the event.
pub(crate) fn resources_event(c: &Container, desired: &Desired, drift: bool) -> String {
    let (what, was) = resources_diff(c, desired);
    let host = &desired.host;
    if drift {
        format!("restored {what} on {host} (was {was}, changed outside ballast)")
    } else {
        format!("updated {what} on {host} (was {was})")
    }
}

/// `("cpus 1.5, memory 1.75g", "cpus 1, memory 1g")`: the desired and observed values that differ.
fn resources_diff(c: &Container, desired: &Desired) -> (String, String) {
    let mut what = Vec::new();
    let mut was = Vec::new();
    let both = c.nano_cpus != desired.nano_cpus && c.memory != desired.memory;
    if c.nano_cpus != desired.nano_cpus {
        what.push(format!("cpus {}", cpus(desired.nano_cpus)));
        was.push(if both { format!("cpus {}", cpus(c.nano_cpus)) } else { cpus(c.nano_cpus) });
    }
    if c.memory != desired.memory {
        what.push(format!("memory {}", memory(desired.memory)));
        was.push(if both { format!("memory {}", memory(c.memory)) } else { memory(c.memory) });
    }
    (what.join(", "), was.join(", "))
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
        Action::Launch { beside: None, .. } => Some("recreate_missing"),
        Action::Launch { beside: Some(_), .. } => Some("resources_restored"),
        Action::Switch { .. } => Some("route_restored"),
        Action::Remove { .. } | Action::Finish { .. } | Action::Verify { .. } | Action::Retire { .. } => None,
    }
}

/// cpus as `1.5`, or `unlimited`.
pub fn cpus(nano: i64) -> String {
    if nano <= 0 {
        "unlimited".into()
    } else {
        format!("{}", nano as f64 / 1e9)
    }
}

/// memory as `1.75g`, or `unlimited`.
pub fn memory(bytes: i64) -> String {
    if bytes <= 0 {
        "unlimited".into()
    } else {
        format_bytes(bytes as u64)
    }
}

pub(crate) fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
            ContainerState::Removing => "removing",
        };
        f.write_str(s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Deploy { old: Some(old), reason } => write!(f, "replace {} ({reason})", short(old)),
            Action::Deploy { old: None, reason } => write!(f, "create ({reason})"),
            Action::Finish { new, old } => {
                let old: Vec<&str> = old.iter().map(|o| short(o)).collect();
                write!(f, "finish rollout: health-check {}, then remove {}", short(new), old.join(", "))
            }
            Action::Start { id, reason } => write!(f, "start {} ({reason})", short(id)),
            Action::UpdateResources { id, reason, .. } => {
                write!(f, "update {} in place: {reason}", short(id))
            }
            Action::Remove { id, reason } => write!(f, "remove {} ({reason})", short(id)),
            Action::Launch { beside: Some(old), reason } => {
                write!(f, "start a new container beside {} and health-check it ({reason})", short(old))
            }
            Action::Launch { beside: None, reason } => {
                write!(f, "start a new container and health-check it ({reason})")
            }
            Action::Verify { id } => write!(f, "health-check {}", short(id)),
            Action::Switch { port, from, to } => {
                let to = to.as_deref().map_or("the new container", short);
                match from {
                    Some(from) => write!(f, "switch the proxy's :{port} from {} to {to}", short(from)),
                    None => write!(f, "route the proxy's :{port} to {to}"),
                }
            }
            Action::Retire { id, drain } if drain.is_zero() => {
                write!(f, "stop and remove {} (no drain)", short(id))
            }
            Action::Retire { id, drain } => write!(
                f,
                "drain {} (requests in flight, at most {}), then stop and remove it",
                short(id),
                ballast_specs::Duration::from_millis(drain.as_millis() as u64)
            ),
        }
    }
}

pub mod proxied;
pub mod proxy;

#[cfg(test)]
mod tests;
