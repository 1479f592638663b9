//! The planner of a host's proxy: its container (one, running, of the operator's settings), its config (a route
//! for each proxied role) and each role's upstream (the address its requests go to). Pure, like the units' planner.
//!
//! Upstreams are level-triggered from what the host shows: a role keeps the address it is pointed at while that is
//! a running container of its unit, or while its unit has a container that is stopped (its unit starts it again;
//! the proxy holds requests meanwhile). Switching is a rollout's step (see [`super::proxied`]). A role pointed at
//! nothing of its unit (a new proxy, or its container gone) is pointed at the running container its last switch
//! chose, else its only running container, else the oldest running one (during a rollout, the one that served
//! before it).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::{short, sorted};
use crate::hosts::{Container, ContainerState};
use crate::labels;
use crate::proxy::{Observed, Route, Routes};

/// What one host's proxy should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyDesired {
    pub host: String,
    /// The proxy container's recreate hash (its image and admin port).
    pub hash: String,
    pub image: String,
    /// The proxied roles on the host, by name; none: the proxy is removed.
    pub roles: Vec<ProxiedRole>,
}

/// A role the host's proxy serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxiedRole {
    pub role: String,
    pub port: u16,
    pub hosts: Vec<String>,
    /// The container port requests go to.
    pub target_port: u16,
    pub drain: Duration,
}

/// What the proxy was seen doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxySeen {
    pub config: ConfigSeen,
    /// The address in each role's upstream file; `None` when the files were not read (no running proxy).
    pub upstreams: Option<BTreeMap<String, String>>,
}

/// What the proxy's admin API showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ConfigSeen {
    /// Not read: no running proxy container, or its admin API did not answer.
    #[default]
    NotRead,
    /// It answers with no config (a new proxy).
    Fresh,
    Seen(Observed),
}

/// One step for the proxy's executor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyAction {
    /// Pull the image if needed, create the proxy container, give it the config of `routes` and the upstreams of
    /// `points` (role, container, address), and start it: it serves them as soon as it runs.
    Create {
        routes: Routes,
        points: Vec<(String, String, String)>,
        reason: String,
    },
    Start {
        id: String,
        reason: String,
    },
    Remove {
        id: String,
        reason: String,
    },
    /// Wait until the admin API answers, then load these routes (the whole config).
    Load {
        routes: Routes,
        reason: String,
    },
    /// Send the role's requests to this container's `address`.
    Point {
        role: String,
        container: String,
        address: String,
        reason: String,
    },
}

/// The proxy's actions, and what is going on for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyPlan {
    pub actions: Vec<ProxyAction>,
    pub message: String,
}

/// Decides what to do for a host's proxy. `containers` are the host's proxy containers, `listing` every ballast
/// container of the host, `last_switched` the container each role's last switch on this host chose.
pub fn plan_proxy(
    desired: &ProxyDesired,
    containers: &[Container],
    listing: &[Container],
    seen: &ProxySeen,
    last_switched: &BTreeMap<String, String>,
) -> ProxyPlan {
    let live: Vec<&Container> = containers.iter().filter(|c| c.state != ContainerState::Removing).collect();
    let mut actions = Vec::new();
    if desired.roles.is_empty() {
        for c in sorted(live) {
            actions.push(ProxyAction::Remove {
                id: c.id.clone(),
                reason: "no proxied role on this host".into(),
            });
        }
        let message = if actions.is_empty() { "" } else { "removing the proxy: no proxied role is left" };
        return ProxyPlan { actions, message: message.into() };
    }
    let (current, stale): (Vec<&Container>, Vec<&Container>) =
        live.into_iter().partition(|c| c.labels.get(labels::HASH) == Some(&desired.hash));
    // An old proxy holds the ports: it goes before a new one starts.
    for c in sorted(stale) {
        let reason = format!("proxy of other settings ({})", c.image);
        actions.push(ProxyAction::Remove { id: c.id.clone(), reason });
    }
    let routes = routes(desired);
    let current = sorted(current);
    let Some((keep, duplicates)) = current.split_first() else {
        let reason = format!("no proxy container ({})", desired.image);
        let points = points(desired, listing, &BTreeMap::new(), last_switched)
            .into_iter()
            .filter_map(|p| match p {
                ProxyAction::Point { role, container, address, .. } => Some((role, container, address)),
                _ => None,
            })
            .collect();
        actions.push(ProxyAction::Create { routes, points, reason: reason.clone() });
        return ProxyPlan { actions, message: reason };
    };
    for dup in duplicates {
        actions.push(ProxyAction::Remove { id: dup.id.clone(), reason: "duplicate proxy container".into() });
    }
    if keep.state != ContainerState::Running {
        let reason = format!("proxy container {} is {}", short(&keep.id), keep.state);
        actions.push(ProxyAction::Start { id: keep.id.clone(), reason: reason.clone() });
        actions.push(ProxyAction::Load { routes, reason: "routes of a restarted proxy".into() });
        return ProxyPlan { actions, message: reason };
    }
    let mut message = Vec::new();
    let load = match &seen.config {
        ConfigSeen::NotRead => Some("the proxy's admin api does not answer yet".to_string()),
        ConfigSeen::Fresh => Some("the proxy has no config".to_string()),
        ConfigSeen::Seen(observed) if !observed.exact => {
            Some("the proxy's config was changed outside ballast".into())
        }
        ConfigSeen::Seen(observed) if observed.routes != routes => Some(changes(&observed.routes, &routes)),
        ConfigSeen::Seen(_) => None,
    };
    if let Some(reason) = load {
        message.push(reason.clone());
        actions.push(ProxyAction::Load { routes, reason });
    }
    if let Some(upstreams) = &seen.upstreams {
        let pointed = points(desired, listing, upstreams, last_switched);
        if !pointed.is_empty() {
            message.push("pointing roles at their containers".into());
        }
        actions.extend(pointed);
    }
    if message.is_empty() && !actions.is_empty() {
        message.push("removing other proxy containers".into());
    }
    ProxyPlan { actions, message: message.join("; ") }
}

/// The config the proxy should have: a route for each proxied role, the grace of a config change the longest
/// drain (at least a second).
pub fn routes(desired: &ProxyDesired) -> Routes {
    let mut routes: Vec<Route> = desired
        .roles
        .iter()
        .map(|r| Route { role: r.role.clone(), port: r.port, hosts: r.hosts.clone() })
        .collect();
    routes.sort_by(|a, b| (a.port, a.hosts.is_empty(), &a.role).cmp(&(b.port, b.hosts.is_empty(), &b.role)));
    let longest = desired.roles.iter().map(|r| r.drain).max().unwrap_or_default();
    Routes { routes, grace: longest.max(Duration::from_secs(1)) }
}

/// The roles to point somewhere else: those whose upstream is no running (or restarting) container of their unit,
/// when one of their unit runs (see the module's notes).
fn points(
    desired: &ProxyDesired,
    listing: &[Container],
    upstreams: &BTreeMap<String, String>,
    last_switched: &BTreeMap<String, String>,
) -> Vec<ProxyAction> {
    let mut out = Vec::new();
    for role in &desired.roles {
        let of_unit: Vec<&Container> = listing
            .iter()
            .filter(|c| {
                c.labels.get(labels::ROLE) == Some(&role.role)
                    && c.labels.get(labels::HOST) == Some(&desired.host)
                    && c.state != ContainerState::Removing
            })
            .collect();
        let address_of = |c: &Container| c.ip.as_deref().map(|ip| address(ip, role.target_port));
        let running: Vec<&Container> = of_unit
            .iter()
            .filter(|c| c.state == ContainerState::Running && c.ip.is_some())
            .copied()
            .collect();
        let pointed = upstreams.get(&role.role).filter(|a| !a.is_empty());
        if let Some(pointed) = pointed {
            let at_running = running.iter().any(|c| address_of(c).as_ref() == Some(pointed));
            let restarting = of_unit.iter().any(|c| c.state != ContainerState::Running);
            if at_running || restarting {
                continue;
            }
        }
        let last = last_switched.get(&role.role).and_then(|id| running.iter().find(|c| &c.id == id)).copied();
        let oldest =
            running.iter().min_by_key(|c| (labels::generation_of(&c.labels), c.name.clone())).copied();
        let Some((chosen, address)) = last.or(oldest).and_then(|c| Some((c, address_of(c)?))) else {
            continue;
        };
        let reason = match pointed {
            Some(was) => format!("{was} is no running container of {}", role.role),
            None => format!("{} is pointed nowhere", role.role),
        };
        out.push(ProxyAction::Point {
            role: role.role.clone(),
            container: chosen.id.clone(),
            address,
            reason,
        });
    }
    out
}

/// `ip:port`, with brackets around an IPv6 address.
pub fn address(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// `routes: web on :80 added; api no longer served`: what a load changes.
fn changes(from: &Routes, to: &Routes) -> String {
    let mut out = Vec::new();
    for route in &to.routes {
        match from.of(&route.role) {
            Some(was) if was == route => {}
            Some(_) => out.push(format!("{} on :{} changed", route.role, route.port)),
            None => out.push(format!("{} on :{} added", route.role, route.port)),
        }
    }
    for route in &from.routes {
        if to.of(&route.role).is_none() {
            out.push(format!("{} no longer served", route.role));
        }
    }
    if from.grace != to.grace {
        out.push(format!("grace {} ms (was {} ms)", to.grace.as_millis(), from.grace.as_millis()));
    }
    format!("routes: {}", out.join("; "))
}

impl fmt::Display for ProxyAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyAction::Create { routes, points, reason } => {
                let served: Vec<String> =
                    routes.routes.iter().map(|r| format!("{} on :{}", r.role, r.port)).collect();
                let pointed: Vec<String> =
                    points.iter().map(|(role, c, _)| format!("{role} → {}", short(c))).collect();
                write!(f, "create the proxy serving {} ({}): {reason}", served.join(", "), pointed.join(", "))
            }
            ProxyAction::Start { id, reason } => write!(f, "start the proxy {} ({reason})", short(id)),
            ProxyAction::Remove { id, reason } => write!(f, "remove the proxy {} ({reason})", short(id)),
            ProxyAction::Load { routes, reason } => {
                let shown: Vec<String> =
                    routes.routes.iter().map(|r| format!("{} on :{}", r.role, r.port)).collect();
                write!(f, "load the proxy's config: {} ({reason})", shown.join(", "))
            }
            ProxyAction::Point { role, container, address, reason } => {
                write!(f, "point {role} at {} ({address}; {reason})", short(container))
            }
        }
    }
}

#[cfg(test)]
mod tests;
