//! The container label schema (a persisted format, see ARCHITECTURE.md) and the hash of everything that forces a recreate.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Version of the label schema.
pub const SCHEMA: &str = "ballast.schema";
pub const SCHEMA_VERSION: &str = "v1";
/// The role a container belongs to. Containers without it are never touched.
pub const ROLE: &str = "ballast.role";
/// The host (as named in the spec) the container was created for.
pub const HOST: &str = "ballast.host";
/// The role generation the container was created from.
pub const GENERATION: &str = "ballast.generation";
/// Hash of everything that forces a recreate (see [`recreate_hash`]).
pub const HASH: &str = "ballast.hash";
/// Keyed HMAC of the secret values the container was given; present only for roles with secrets.
pub const SECRETS: &str = "ballast.secrets";
/// The `ballast.role` of a host's proxy container. Not a valid role name (it has a `.`), so no role owns it.
pub const PROXY_ROLE: &str = "ballast.proxy";
/// On a network ballast made: its purpose (`ballast`: the bridge of proxied roles' containers).
pub const NETWORK: &str = "ballast.network";

/// Everything that, when changed, means the container must be recreated. cpus and memory are absent on
/// purpose: they are updated in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecreateInputs<'a> {
    pub image: &'a str,
    pub command: &'a [String],
    /// Plain (non-secret) env, sorted by name.
    pub env: &'a BTreeMap<String, String>,
    pub ports: &'a [String],
    pub logging: Option<(&'a str, &'a BTreeMap<String, String>)>,
    /// HMAC of the secret values (never the values themselves); empty without secrets.
    pub secrets_hmac: &'a str,
    /// The role's restart counter (`ballast rollout restart`).
    pub restart: u64,
    /// The network the container joins instead of Docker's default bridge (hashed only when set, so the
    /// hashes of containers on the default bridge are those of schema v1's first days).
    pub network: Option<&'a str>,
}

/// The first 16 hex digits of SHA-256 over a canonical encoding of `inputs`.
pub fn recreate_hash(inputs: &RecreateInputs<'_>) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &str| {
        // Length-prefixed, so no two different inputs encode the same.
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value.as_bytes());
    };
    field("image", inputs.image);
    for arg in inputs.command {
        field("command", arg);
    }
    for (k, v) in inputs.env {
        field("env.key", k);
        field("env.value", v);
    }
    for p in inputs.ports {
        field("port", p);
    }
    if let Some((driver, options)) = inputs.logging {
        field("logging.driver", driver);
        for (k, v) in options {
            field("logging.key", k);
            field("logging.value", v);
        }
    }
    field("secrets", inputs.secrets_hmac);
    field("restart", &inputs.restart.to_string());
    if let Some(network) = inputs.network {
        field("network", network);
    }
    let digest = h.finalize();
    hex::encode(&digest[..8])
}

/// The labels of a new container for a unit.
pub fn container_labels(
    role: &str,
    host: &str,
    generation: u64,
    hash: &str,
    secrets_hmac: &str,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (SCHEMA.to_string(), SCHEMA_VERSION.to_string()),
        (ROLE.to_string(), role.to_string()),
        (HOST.to_string(), host.to_string()),
        (GENERATION.to_string(), generation.to_string()),
        (HASH.to_string(), hash.to_string()),
    ]);
    if !secrets_hmac.is_empty() {
        labels.insert(SECRETS.to_string(), secrets_hmac.to_string());
    }
    labels
}

/// The generation label of a container, 0 when absent or malformed.
pub fn generation_of(labels: &BTreeMap<String, String>) -> u64 {
    labels.get(GENERATION).and_then(|g| g.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(image: &'a str, env: &'a BTreeMap<String, String>) -> RecreateInputs<'a> {
        RecreateInputs {
            image,
            command: &[],
            env,
            ports: &[],
            logging: None,
            secrets_hmac: "",
            restart: 0,
            network: None,
        }
    }

    #[test]
    fn hash_changes_with_each_input_and_is_stable() {
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let base = recreate_hash(&inputs("app:v1", &env));
        assert_eq!(base, recreate_hash(&inputs("app:v1", &env)));
        assert_eq!(base.len(), 16);
        assert_ne!(base, recreate_hash(&inputs("app:v2", &env)));
        let env2 = BTreeMap::from([("A".to_string(), "2".to_string())]);
        assert_ne!(base, recreate_hash(&inputs("app:v1", &env2)));
        let cmd = vec!["sh".to_string()];
        assert_ne!(base, recreate_hash(&RecreateInputs { command: &cmd, ..inputs("app:v1", &env) }));
        assert_ne!(base, recreate_hash(&RecreateInputs { restart: 1, ..inputs("app:v1", &env) }));
        assert_ne!(base, recreate_hash(&RecreateInputs { secrets_hmac: "ab", ..inputs("app:v1", &env) }));
        let ports = vec!["3000:3000".to_string()];
        assert_ne!(base, recreate_hash(&RecreateInputs { ports: &ports, ..inputs("app:v1", &env) }));
        assert_ne!(
            base,
            recreate_hash(&RecreateInputs { network: Some("ballast"), ..inputs("app:v1", &env) })
        );
        // The recipe of schema v1: a change of it would replace every container at an upgrade.
        assert_eq!(base, "73d1af17fb058c8f");
    }
}
