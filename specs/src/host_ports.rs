//! The host ports of a set of roles about to be stored: published ports and proxy ports, checked against each
//! other and against the roles already stored, host by host.
//!
//! A host port is taken once per host: by one role's published port, or by the proxy for the roles it serves
//! there. Roles may share a proxy port when the proxy can tell their requests apart: at most one of them takes
//! every host name (no `proxy.hosts`), and no host name is routed to two of them.

use std::collections::{BTreeSet, HashMap};

use crate::model::Role;
use crate::ports::{parse_port, PortMapping, Protocol};
use crate::problem::{index_path, Problem};
use crate::validate::host_port;

/// Checks the host ports of `roles` (the set's roles with their index in the set) against each other and
/// against `stored` (roles of the same name as one in the set are replaced by it). Each clash is reported once,
/// on the later role of the set. The claims taken are kept by host, so a role on every host of a large fleet is
/// checked in time proportional to its claims, not to its claims times every claim of the other roles.
pub(crate) fn check(roles: &[(usize, &Role)], stored: &[Role]) -> Vec<(usize, Problem)> {
    let in_set: BTreeSet<&str> = roles.iter().map(|(_, r)| r.metadata.name.as_str()).collect();
    // Per host, the claims taken there, in the order they were taken.
    let mut taken: HashMap<&str, Vec<Claim<'_>>> = HashMap::new();
    for claim in
        stored.iter().filter(|r| !in_set.contains(r.metadata.name.as_str())).flat_map(|r| claims(r, true))
    {
        taken.entry(claim.host).or_default().push(claim);
    }
    let mut problems = Vec::new();
    for (index, role) in roles {
        let mine = claims(role, false);
        for claim in &mine {
            for other in taken.get(claim.host).into_iter().flatten() {
                if let Some(problem) = clash(claim, other) {
                    problems.push((*index, problem));
                }
            }
        }
        for claim in mine {
            taken.entry(claim.host).or_default().push(claim);
        }
    }
    problems
}

/// One host port a role takes on one host.
struct Claim<'a> {
    host: &'a str,
    role: &'a str,
    stored: bool,
    what: Taken<'a>,
}

enum Taken<'a> {
    /// `spec.ports[i]`.
    Published { i: usize, mapping: PortMapping },
    /// `spec.proxy`: the port and the host names routed on it.
    Proxy { port: u16, names: &'a [String] },
}

fn claims(role: &Role, stored: bool) -> Vec<Claim<'_>> {
    let spec = &role.spec;
    let hosts: BTreeSet<&str> = spec.hosts.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for host in hosts {
        let claim = |what| Claim { host, role: &role.metadata.name, stored, what };
        for (i, port) in spec.ports.iter().enumerate() {
            if let Ok(mapping) = parse_port(port) {
                if mapping.host_port.is_some() {
                    out.push(claim(Taken::Published { i, mapping }));
                }
            }
        }
        if let Some(proxy) = &spec.proxy {
            out.push(claim(Taken::Proxy { port: proxy.port, names: &proxy.hosts }));
        }
    }
    out
}

/// The problem of `claim` when `other` (taken earlier, on the same host) clashes with it.
fn clash(claim: &Claim<'_>, other: &Claim<'_>) -> Option<Problem> {
    if claim.role == other.role {
        return None;
    }
    let (host, by) = (claim.host, other.role);
    let stored = if other.stored { " (stored)" } else { "" };
    match (&claim.what, &other.what) {
        (Taken::Published { i, mapping }, Taken::Published { mapping: theirs, .. }) => {
            mapping.conflicts_with(theirs).then(|| {
                let message = format!(
                    "host port {} on host {host:?} is already published by role {by:?}{stored}",
                    host_port(mapping)
                );
                Problem::new(index_path("spec.ports", *i), message)
            })
        }
        (Taken::Published { i, mapping }, Taken::Proxy { port, .. }) => {
            proxy_takes(mapping, *port).then(|| {
                let message = format!(
                    "host port {} on host {host:?} is served by the proxy of role {by:?}{stored}",
                    host_port(mapping)
                );
                Problem::new(index_path("spec.ports", *i), message)
            })
        }
        (Taken::Proxy { port, .. }, Taken::Published { mapping, .. }) => {
            proxy_takes(mapping, *port).then(|| {
                let message = format!(
                    "port {port} on host {host:?} is already published by role {by:?}{stored} ({})",
                    host_port(mapping)
                );
                Problem::new("spec.proxy.port", message)
            })
        }
        (Taken::Proxy { port, names }, Taken::Proxy { port: theirs, names: their_names }) => {
            if port != theirs {
                return None;
            }
            if names.is_empty() && their_names.is_empty() {
                let message = format!(
                    "role {by:?}{stored} is also served on port {port} of host {host:?} for every host name: \
                     give one of them spec.proxy.hosts to route on"
                );
                return Some(Problem::new("spec.proxy.hosts", message));
            }
            let (j, name) = names.iter().enumerate().find(|(_, n)| their_names.contains(n))?;
            let message =
                format!("{name:?} is also routed to role {by:?}{stored} on port {port} of host {host:?}");
            Some(Problem::new(index_path("spec.proxy.hosts", j), message))
        }
    }
}

/// The proxy listens on TCP `port` on every address: a published TCP port of that number clashes, whatever its
/// address.
fn proxy_takes(mapping: &PortMapping, port: u16) -> bool {
    mapping.protocol == Protocol::Tcp && mapping.host_port == Some(port)
}

#[cfg(test)]
mod tests;
