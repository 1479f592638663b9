//! From a role's spec to what one unit should run: the planner's [`Desired`] and the executor's [`ContainerConfig`].
//! Pure: the secret values come in as an argument.

use ballast_specs::wire::FailedRollout;
use ballast_specs::{Role, RoleControl};

use crate::aws::ResolvedSecrets;
use crate::hosts::{ContainerConfig, PortBinding};
use crate::labels::{self, RecreateInputs};
use crate::plan::{Desired, Proxied, Routed};
use crate::proxy;

/// The recreate hash of a role's container (see [`labels::recreate_hash`]).
pub fn hash(role: &Role, control: &RoleControl, secrets: Option<&ResolvedSecrets>) -> String {
    let spec = &role.spec;
    labels::recreate_hash(&RecreateInputs {
        image: &spec.image,
        command: &spec.command,
        env: &spec.env,
        ports: &spec.ports,
        logging: spec.logging.as_ref().map(|l| (l.driver.as_str(), &l.options)),
        secrets_hmac: secrets.map(|s| s.hmac.as_str()).unwrap_or(""),
        restart: control.restart,
        network: spec.proxy.as_ref().map(|_| proxy::NETWORK),
    })
}

/// What the planner compares for the unit (`role` on `host`). `failures` are the role's failed rollouts, from its
/// units' stored statuses (any host): a failure of this very hash, retry count and generation halts the unit.
/// `converged_generation` is the generation the unit last converged at (0 if never).
pub fn desired(
    role: &Role,
    host: &str,
    control: &RoleControl,
    secrets: Option<&ResolvedSecrets>,
    failures: &[FailedRollout],
    converged_generation: u64,
) -> Desired {
    let hash = hash(role, control, secrets);
    let halted = failures.iter().any(|f| halts(f, &hash, control, role.metadata.generation));
    Desired {
        role: role.metadata.name.clone(),
        host: host.to_string(),
        generation: role.metadata.generation,
        image: role.spec.image.clone(),
        hash,
        nano_cpus: role.spec.resources.cpus.map(|c| c.nanos() as i64).unwrap_or(0),
        memory: role.spec.resources.memory.as_ref().map(|m| m.bytes() as i64).unwrap_or(0),
        paused: control.paused,
        halted,
        converged_generation,
        proxy: role.spec.proxy.as_ref().map(|p| Proxied {
            port: p.port,
            drain: p.drain_timeout.as_std(),
            routed: Routed::Unknown,
        }),
    }
}

/// True when `failure` was a rollout of exactly this hash, retry count and generation: it must not be tried again.
pub fn halts(failure: &FailedRollout, hash: &str, control: &RoleControl, generation: u64) -> bool {
    failure.hash == hash && failure.retry == control.retry && failure.generation == generation
}

/// The container to create for the unit. `suffix` makes the name unique on the host.
pub fn container_config(
    role: &Role,
    host: &str,
    control: &RoleControl,
    secrets: Option<&ResolvedSecrets>,
    suffix: &str,
) -> ContainerConfig {
    let spec = &role.spec;
    let hash = hash(role, control, secrets);
    let mut env: Vec<(String, String)> = spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(s) = secrets {
        env.extend(s.env.iter().cloned());
    }
    ContainerConfig {
        name: format!("{}-{}-{}", role.metadata.name.replace('_', "-"), &hash[..8], suffix),
        image: spec.image.clone(),
        command: spec.command.clone(),
        env,
        labels: labels::container_labels(
            &role.metadata.name,
            host,
            role.metadata.generation,
            &hash,
            secrets.map(|s| s.hmac.as_str()).unwrap_or(""),
        ),
        nano_cpus: spec.resources.cpus.map(|c| c.nanos() as i64).unwrap_or(0),
        memory: spec.resources.memory.as_ref().map(|m| m.bytes() as i64).unwrap_or(0),
        ports: spec.ports.iter().filter_map(|p| port_binding(p)).collect(),
        logging: spec.logging.as_ref().map(|l| (l.driver.clone(), l.options.clone())),
        network: spec.proxy.as_ref().map(|_| proxy::NETWORK.to_string()),
    }
}

/// A published port from its (already validated) docker `-p` text.
fn port_binding(text: &str) -> Option<PortBinding> {
    let mapping = ballast_specs::ports::parse_port(text).ok()?;
    let protocol = match mapping.protocol {
        ballast_specs::ports::Protocol::Tcp => "tcp",
        ballast_specs::ports::Protocol::Udp => "udp",
    };
    Some(PortBinding {
        host_ip: mapping.host_ip.map(|ip| ip.to_string()),
        host_port: mapping.host_port.unwrap_or(0),
        container_port: mapping.container_port,
        protocol: protocol.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let p = port_binding("3000:3000").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.protocol.as_str()),
            (None, 3000, 3000, "tcp")
        );
        let p = port_binding("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            (p.host_ip.as_deref(), p.host_port, p.container_port, p.protocol.as_str()),
            (Some("127.0.0.1"), 8080, 80, "udp")
        );
        assert_eq!(port_binding("80").unwrap().host_port, 0);
        assert!(port_binding("x:80").is_none());
    }
}
