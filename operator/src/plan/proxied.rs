//! The plan of a unit served through the host's proxy: every replacement is start-first behind it. A new
//! container is launched beside the one serving, health-checked, switched to (a step of its own), and only then is
//! the old one drained and retired; a launch that fails never switches, so the old container serves throughout.
//!
//! Which container the proxy routes to is an observation ([`Routed`]): a rollout cut short between its steps is
//! finished from what the host and the proxy show.
//!
//! A container from before the role was proxied publishes the port the proxy is to take: it is retired as soon as
//! its successor is healthy, without a drain (the proxy cannot start before), and the proxy then points at the new
//! one. Moving a role behind the proxy costs that one short gap; every rollout after it costs none.

use std::time::Duration;

use ballast_specs::wire::UnitState;

use super::{
    lifts_a_limit, replace_reason, replacement, resources_change, short, sorted, update_in_place, Action,
    Desired, Plan, Proxied, Routed, Routing,
};
use crate::hosts::{Container, ContainerState};
use crate::labels;
use crate::proxy;

/// Decides what to do for a proxied unit that is not paused. `observed` holds no container being removed.
pub(super) fn plan(desired: &Desired, proxy: &Proxied, observed: &[Container]) -> Plan {
    let (current, stale): (Vec<&Container>, Vec<&Container>) =
        observed.iter().partition(|c| c.labels.get(labels::HASH) == Some(&desired.hash));
    // Containers from before the role was proxied: they hold the port the proxy needs.
    let (stale, published): (Vec<&Container>, Vec<&Container>) =
        stale.into_iter().partition(|c| c.network.as_deref() == Some(proxy::NETWORK));
    let published = sorted(published);
    let routed_id = match &proxy.routed {
        Routed::To(id) => Some(id.as_str()),
        Routed::Unknown | Routed::Nothing => None,
    };
    let (current, stale) = (routed_first(current, routed_id), routed_first(stale, routed_id));
    let drift = desired.converged_generation == desired.generation;
    let routing = routing(proxy);
    let done = |actions, state, message: String| Plan { actions, state, message, routing: routing.clone() };
    let mut actions = Vec::new();

    if desired.halted {
        // The failed rollout never switched: the old container keeps serving. Undo what is left of it.
        for c in &current {
            actions.push(Action::Remove { id: c.id.clone(), reason: "rollout failed".into() });
        }
        if let Some(old) = stale.first() {
            if old.state != ContainerState::Running {
                actions
                    .push(Action::Start { id: old.id.clone(), reason: "restore previous container".into() });
            }
            if !routes_to(proxy, &old.id) {
                actions.push(switch(proxy, Some(old.id.clone())));
            }
        }
        return done(actions, UnitState::Failed, String::new());
    }

    let Some((keep, duplicates)) = current.split_first() else {
        if let Some(old) = published.first() {
            // Moving behind the proxy: the new container first, then the port goes from the old one to the proxy.
            let reason = format!("moving behind the proxy ({})", replace_reason(old, desired));
            actions.push(Action::Launch { beside: Some(old.id.clone()), reason: reason.clone() });
            for c in published.iter().chain(&stale) {
                actions.push(Action::Retire { id: c.id.clone(), drain: Duration::ZERO });
            }
            return done(actions, UnitState::Progressing, reason);
        }
        // No container of the desired spec: launch one beside the serving one, switch, retire the old one.
        let (old, reason, state) = replacement(&stale, desired, drift, &mut actions);
        let old_id = old.map(|c| c.id.clone());
        actions.push(Action::Launch { beside: old_id.clone(), reason: reason.clone() });
        actions.push(Action::Switch { port: proxy.port, from: routed_id.map(str::to_string), to: None });
        if let Some(old) = old_id {
            actions.push(Action::Retire { id: old, drain: proxy.drain });
        }
        return done(actions, state, reason);
    };

    for dup in duplicates {
        actions.push(Action::Remove { id: dup.id.clone(), reason: "duplicate container".into() });
    }
    for c in &published {
        actions.push(Action::Retire { id: c.id.clone(), drain: Duration::ZERO });
    }
    if !published.is_empty() && stale.is_empty() {
        if !routes_to(proxy, &keep.id) {
            actions.push(switch(proxy, Some(keep.id.clone())));
        }
        return done(actions, UnitState::Progressing, "moving behind the proxy".into());
    }
    if !stale.is_empty() {
        // A rollout under way or cut short: the new container exists beside the old ones.
        let message = if routes_to(proxy, &keep.id) {
            "draining the old container"
        } else {
            actions.push(Action::Verify { id: keep.id.clone() });
            actions.push(switch(proxy, Some(keep.id.clone())));
            "finishing rollout"
        };
        for old in &stale {
            actions.push(Action::Retire { id: old.id.clone(), drain: proxy.drain });
        }
        return done(actions, UnitState::Progressing, message.into());
    }
    if keep.state != ContainerState::Running {
        let reason = format!("container {} is {}", short(&keep.id), keep.state);
        actions.push(Action::Start { id: keep.id.clone(), reason: reason.clone() });
        if !routes_to(proxy, &keep.id) {
            actions.push(switch(proxy, Some(keep.id.clone())));
        }
        return done(actions, UnitState::Degraded, reason);
    }
    if !routes_to(proxy, &keep.id) {
        let reason = format!("the proxy does not route to {}", short(&keep.id));
        actions.push(switch(proxy, Some(keep.id.clone())));
        return done(actions, UnitState::Degraded, reason);
    }
    if lifts_a_limit(keep, desired) {
        // Docker's update cannot remove a limit: a new container of the same spec replaces it, behind the proxy.
        let reason =
            format!("{}; docker cannot lift a limit in place", resources_change(keep, desired, drift));
        actions.push(Action::Launch { beside: Some(keep.id.clone()), reason: reason.clone() });
        actions.push(Action::Switch { port: proxy.port, from: Some(keep.id.clone()), to: None });
        actions.push(Action::Retire { id: keep.id.clone(), drain: proxy.drain });
        let state = if drift { UnitState::Degraded } else { UnitState::Progressing };
        return done(actions, state, reason);
    }
    if let Some((update, reason)) = update_in_place(keep, desired, drift) {
        actions.push(update);
        let state = if drift { UnitState::Degraded } else { UnitState::Progressing };
        return done(actions, state, reason);
    }
    let message = if actions.is_empty() { String::new() } else { "removing duplicates".into() };
    done(actions, UnitState::Converged, message)
}

/// [`sorted`], with the routed container first: it is the one to keep.
fn routed_first<'a>(list: Vec<&'a Container>, routed: Option<&str>) -> Vec<&'a Container> {
    let mut list = sorted(list);
    if let Some(at) = list.iter().position(|c| Some(c.id.as_str()) == routed) {
        let routed = list.remove(at);
        list.insert(0, routed);
    }
    list
}

/// What the plan's status says of the proxy's route.
pub(super) fn routing(proxy: &Proxied) -> Routing {
    match &proxy.routed {
        Routed::Unknown => Routing::Unseen,
        Routed::Nothing => Routing::Seen { port: proxy.port, to: None },
        Routed::To(id) => Routing::Seen { port: proxy.port, to: Some(id.clone()) },
    }
}

/// True when the proxy routes to `id`, or was not read (then it is assumed to route where it should: the proxy's
/// own reconcile keeps every route pointing at a running container).
fn routes_to(proxy: &Proxied, id: &str) -> bool {
    match &proxy.routed {
        Routed::Unknown => true,
        Routed::Nothing => false,
        Routed::To(routed) => routed == id,
    }
}

fn switch(proxy: &Proxied, to: Option<String>) -> Action {
    let from = match &proxy.routed {
        Routed::To(id) => Some(id.clone()),
        Routed::Unknown | Routed::Nothing => None,
    };
    Action::Switch { port: proxy.port, from, to }
}
