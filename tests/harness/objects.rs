//! Sample hosts and roles for tests: valid objects with as little as possible set.

use std::collections::BTreeMap;

use ballast_specs::{
    Duration, Host, HostSpec, Memory, Metadata, Object, Resources, Role, RoleSpec, API_VERSION,
};

/// A host reached over SSH at a documentation address (nothing is ever dialled by store tests).
pub fn host(name: &str) -> Host {
    Host {
        api_version: API_VERSION.to_string(),
        metadata: Metadata { name: name.to_string(), ..Metadata::default() },
        spec: HostSpec {
            address: "192.0.2.10".to_string(),
            user: "root".to_string(),
            port: 22,
            docker_socket: "/var/run/docker.sock".to_string(),
        },
    }
}

/// A role running `image` on `hosts`, everything else defaulted.
pub fn role(name: &str, hosts: &[&str], image: &str) -> Role {
    Role {
        api_version: API_VERSION.to_string(),
        metadata: Metadata { name: name.to_string(), ..Metadata::default() },
        spec: RoleSpec {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            image: image.to_string(),
            command: Vec::new(),
            resources: Resources::default(),
            env: BTreeMap::new(),
            secrets: None,
            ports: Vec::new(),
            health: None,
            deploy_timeout: Duration::from_secs(600),
            strategy: Default::default(),
            logging: None,
            rollout: Default::default(),
            proxy: None,
        },
    }
}

/// The role with a memory limit written as `text` (`1.75g`, `1792m`).
pub fn with_memory(mut role: Role, text: &str) -> Role {
    role.spec.resources.memory = Some(Memory::parse(text).unwrap_or_else(|e| panic!("bad test memory: {e}")));
    role
}

/// The role with one more label.
pub fn with_label(mut role: Role, key: &str, value: &str) -> Role {
    role.metadata.labels.insert(key.to_string(), value.to_string());
    role
}

pub fn host_object(name: &str) -> Object {
    Object::Host(host(name))
}

pub fn role_object(name: &str, hosts: &[&str], image: &str) -> Object {
    Object::Role(role(name, hosts, image))
}

/// An event at `time` (RFC 3339), built from its JSON form.
pub fn event(time: &str, role: &str, reason: &str) -> ballast_specs::wire::Event {
    serde_json::from_value(serde_json::json!({
        "time": time, "role": role, "reason": reason, "message": format!("{reason} at {time}"),
    }))
    .unwrap_or_else(|e| panic!("bad test event: {e}"))
}

/// A `Converged` status of `role` on `host` at generation 1, built from its JSON form.
pub fn status(role: &str, host: &str) -> ballast_specs::wire::UnitStatus {
    serde_json::from_value(serde_json::json!({
        "role": role, "host": host, "generation": 1, "observedGeneration": 1, "state": "Converged",
        "since": "2024-05-01T10:00:00Z",
    }))
    .unwrap_or_else(|e| panic!("bad test status: {e}"))
}
