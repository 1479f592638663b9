//! The planner of a host's proxy: its container (one, running, of the operator's settings) and its routes (each
//! proxied role to a running container of its unit). Pure, like the units' planner.
//!
//! Routes are level-triggered from what the host shows: a role keeps the container the proxy routes it to while
//! that container is its unit's, running or not (switching is a rollout's step, see [`super::proxied`], and a
//! stopped container is started by its unit while the proxy holds its requests); a role without one (a new
//! proxy, or its container gone) gets the running container its last switch chose, else its only running
//! container, else the oldest running one (during a rollout, the one that served before it).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::{short, sorted};
use crate::hosts::{Container, ContainerState};
use crate::labels;
use crate::proxy::{Observed, Route, Routes, Upstream};

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

/// What the proxy's admin API showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSeen {
    /// Not read: no running proxy container, or its admin API did not answer.
    NotRead,
    /// It answers with no config (a new proxy).
    Fresh,
    Seen(Observed),
}

/// One step for the proxy's executor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyAction {
    /// Pull the image if needed, create and start the proxy container.
    Create {
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
    seen: &ConfigSeen,
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
    let observed = match seen {
        ConfigSeen::Seen(observed) => Some(&observed.routes),
        ConfigSeen::NotRead | ConfigSeen::Fresh => None,
    };
    let routes = routes(desired, listing, observed, last_switched);
    let current = sorted(current);
    let Some((keep, duplicates)) = current.split_first() else {
        let reason = format!("no proxy container ({})", desired.image);
        actions.push(ProxyAction::Create { reason: reason.clone() });
        actions.push(ProxyAction::Load { routes, reason: "routes of a new proxy".into() });
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
    let reason = match seen {
        ConfigSeen::NotRead => Some("the proxy's admin api does not answer yet".to_string()),
        ConfigSeen::Fresh => Some("the proxy has no config".to_string()),
        ConfigSeen::Seen(observed) if !observed.exact => {
            Some("the proxy's config was changed outside ballast".into())
        }
        ConfigSeen::Seen(observed) if observed.routes != routes => Some(changes(&observed.routes, &routes)),
        ConfigSeen::Seen(_) => None,
    };
    if let Some(reason) = reason {
        actions.push(ProxyAction::Load { routes, reason: reason.clone() });
        return ProxyPlan { actions, message: reason };
    }
    let message = if actions.is_empty() { String::new() } else { "removing other proxy containers".into() };
    ProxyPlan { actions, message }
}

/// The routes the proxy should have: each proxied role to a running container of its unit (see the module's
/// notes), the grace of a config change the longest drain (at least a second).
pub fn routes(
    desired: &ProxyDesired,
    listing: &[Container],
    observed: Option<&Routes>,
    last_switched: &BTreeMap<String, String>,
) -> Routes {
    let mut routes = Vec::new();
    for role in &desired.roles {
        let of_unit: Vec<&Container> = listing
            .iter()
            .filter(|c| {
                c.labels.get(labels::ROLE) == Some(&role.role)
                    && c.labels.get(labels::HOST) == Some(&desired.host)
                    && c.state != ContainerState::Removing
            })
            .collect();
        let running: Vec<&Container> = of_unit
            .iter()
            .filter(|c| c.state == ContainerState::Running && c.ip.is_some())
            .copied()
            .collect();
        let upstream_of = |c: &Container, known: Option<&str>| {
            let address = match (&c.ip, known) {
                (Some(ip), _) => address(ip, role.target_port),
                (None, Some(known)) => known.to_string(),
                (None, None) => return None,
            };
            Some(Upstream { container: c.id.clone(), address })
        };
        // The routed container stays while it is the unit's, even stopped: its unit starts it again, and the
        // proxy holds requests for it meanwhile.
        let routed = observed.and_then(|o| o.of(&role.role)).and_then(|r| r.upstream.as_ref());
        let kept = routed.and_then(|u| {
            let c = of_unit.iter().find(|c| c.id == u.container)?;
            upstream_of(c, Some(&u.address))
        });
        let last = last_switched.get(&role.role).and_then(|id| running.iter().find(|c| &c.id == id)).copied();
        let oldest =
            running.iter().min_by_key(|c| (labels::generation_of(&c.labels), c.name.clone())).copied();
        let upstream = kept.or_else(|| last.or(oldest).and_then(|c| upstream_of(c, None)));
        routes.push(Route { role: role.role.clone(), port: role.port, hosts: role.hosts.clone(), upstream });
    }
    routes.sort_by(|a, b| (a.port, a.hosts.is_empty(), &a.role).cmp(&(b.port, b.hosts.is_empty(), &b.role)));
    let longest = desired.roles.iter().map(|r| r.drain).max().unwrap_or_default();
    Routes { routes, grace: longest.max(Duration::from_secs(1)) }
}

/// `ip:port`, with brackets around an IPv6 address.
pub fn address(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// `web → c2 (was c1); api → none`: what a load changes.
fn changes(from: &Routes, to: &Routes) -> String {
    let target = |route: Option<&Route>| match route.and_then(|r| r.upstream.as_ref()) {
        Some(u) => short(&u.container).to_string(),
        None => "none".to_string(),
    };
    let mut out = Vec::new();
    for route in &to.routes {
        let was = from.of(&route.role);
        if was == Some(route) {
            continue;
        }
        let now = target(Some(route));
        match was {
            Some(was) if was.upstream == route.upstream => {
                out.push(format!("{} on :{} (route changed)", route.role, route.port))
            }
            Some(_) => out.push(format!("{} → {now} (was {})", route.role, target(was))),
            None => out.push(format!("{} → {now} on :{}", route.role, route.port)),
        }
    }
    for route in &from.routes {
        if to.of(&route.role).is_none() {
            out.push(format!("{} no longer routed", route.role));
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
            ProxyAction::Create { reason } => write!(f, "create the proxy ({reason})"),
            ProxyAction::Start { id, reason } => write!(f, "start the proxy {} ({reason})", short(id)),
            ProxyAction::Remove { id, reason } => write!(f, "remove the proxy {} ({reason})", short(id)),
            ProxyAction::Load { routes, reason } => {
                let shown: Vec<String> = routes
                    .routes
                    .iter()
                    .map(|r| {
                        let to = r
                            .upstream
                            .as_ref()
                            .map_or("none".to_string(), |u| short(&u.container).to_string());
                        format!(":{} {} → {to}", r.port, r.role)
                    })
                    .collect();
                write!(f, "load routes {} ({reason})", shown.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests;
