//! The stored objects of spec format v1: `Host` and `Role`, their metadata, and the role's control switches.
//!
//! These are the trusted shapes: what etcd stores (as JSON), what the API sends, and what
//! [`crate::parse`] produces from YAML after every problem has been collected.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::quantity::{Cpus, Duration, Memory};
use crate::rollout::MaxUnavailable;

/// The only `apiVersion` of spec format v1.
pub const API_VERSION: &str = "ballast/v1";

/// A stored object of any kind; `kind` is the tag.
// Objects are few and rarely moved: boxing `Role` would only make every match and constructor noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind")]
pub enum Object {
    Host(Host),
    Role(Role),
}

/// Which kind an object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Kind {
    Host,
    Role,
}

/// A machine running Docker, reached over SSH (or the local socket for `unix://` addresses).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Host {
    pub api_version: String,
    pub metadata: Metadata,
    pub spec: HostSpec,
}

/// A container role: one container of the same shape on each of its hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Role {
    pub api_version: String,
    pub metadata: Metadata,
    pub spec: RoleSpec,
}

/// Name, labels and the store's bookkeeping. `generation` and `revision` are set by the store only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Bumped by the store each time `spec` changes; 1 for a new object.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub generation: u64,
    /// etcd's mod revision of the stored object: the precondition of a compare-and-swap update.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub revision: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<DateTime<Utc>>,
}

/// How to reach a host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSpec {
    /// SSH address (name or IP), or `unix:///path/to/docker.sock` for the local engine.
    pub address: String,
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_docker_socket")]
    pub docker_socket: String,
}

/// The desired container of a role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    pub hosts: Vec<String>,
    pub image: String,
    /// Empty: the image's default command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Secrets>,
    /// Docker `-p` syntax: `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default = "default_deploy_timeout")]
    pub deploy_timeout: Duration,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// How the role's units roll: with which other roles, how many at once. Absent in objects stored before it.
    #[serde(default, skip_serializing_if = "Rollout::is_default")]
    pub rollout: Rollout,
    /// Served through ballast's proxy on each host: rolled start-first, switched once the new container is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Proxy>,
}

/// CPU and memory limits; absent means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
}

/// Where secret values come from. Only key names are stored; values are fetched by the operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secrets {
    /// `aws-secretsmanager:NAME`
    pub source: String,
    pub keys: Vec<String>,
}

/// The health check a new container must pass before a rollout moves on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    pub http: HttpCheck,
    #[serde(default = "default_interval")]
    pub interval: Duration,
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

/// `GET path` on the container's `port` must answer 2xx.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCheck {
    pub path: String,
    pub port: u16,
}

/// Order of old and new container during a replacement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Stop the old container, start the new one; the old one is kept until the new one is healthy.
    #[default]
    StopFirst,
    /// Start the new container next to the old one; remove the old one once the new one is healthy.
    StartFirst,
}

/// How a role's units roll. Roles that name the same `group` roll as one tier: their units count against one
/// budget of `maxUnavailable` units being replaced at once. A role without a group is a group of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// The rollout group's name (a name like an object's); absent: the role is a group of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Units of the group replaced at once: a count or a percentage of the group's units; absent: 1. When the
    /// roles of a group disagree, the smallest budget wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<MaxUnavailable>,
}

/// How ballast's proxy serves a role on each of its hosts. The role's containers publish nothing: the proxy
/// listens on `port` and forwards to the one container it routes to, which a rollout switches without a gap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Proxy {
    /// The host port the proxy serves for this role (TCP, every address).
    pub port: u16,
    /// The container's port the proxy forwards to; absent: the health check's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u16>,
    /// After a switch, how long requests in flight on the old container may take before it is stopped.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Duration,
    /// Host names (`Host` header) routed to this role; needed when several roles share `port` on a host.
    /// Empty: every request on `port` that no other role's host names claim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// Docker logging driver and its options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// Operational switches of a role, kept beside the spec: changing them never bumps `generation`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleControl {
    /// A paused role is observed and reported, never changed.
    #[serde(default)]
    pub paused: bool,
    /// Bumped by `rollout retry`: a `Failed` unit tries again.
    #[serde(default)]
    pub retry: u64,
    /// Bumped by `rollout restart`: part of the container hash, so every container is replaced.
    #[serde(default)]
    pub restart: u64,
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Host(_) => Kind::Host,
            Object::Role(_) => Kind::Role,
        }
    }

    pub fn metadata(&self) -> &Metadata {
        match self {
            Object::Host(h) => &h.metadata,
            Object::Role(r) => &r.metadata,
        }
    }

    pub fn metadata_mut(&mut self) -> &mut Metadata {
        match self {
            Object::Host(h) => &mut h.metadata,
            Object::Role(r) => &mut r.metadata,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// True when both objects have the same kind and the same `spec` (metadata ignored).
    pub fn same_spec(&self, other: &Object) -> bool {
        match (self, other) {
            (Object::Host(a), Object::Host(b)) => a.spec == b.spec,
            (Object::Role(a), Object::Role(b)) => a.spec == b.spec,
            _ => false,
        }
    }
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Host => "Host",
            Kind::Role => "Role",
        }
    }

    /// The plural, lowercase name used in URLs and CLI verbs (`hosts`, `roles`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Host => "hosts",
            Kind::Role => "roles",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl HostSpec {
    /// The local Docker socket path when the address is `unix://...`.
    pub fn local_socket(&self) -> Option<&str> {
        self.address.strip_prefix("unix://")
    }
}

impl Rollout {
    pub fn is_default(&self) -> bool {
        *self == Rollout::default()
    }

    /// `maxUnavailable`, or its default: one unit at a time.
    pub fn max_unavailable(&self) -> MaxUnavailable {
        self.max_unavailable.unwrap_or_default()
    }
}

impl RoleSpec {
    /// The container port the proxy forwards to: `proxy.containerPort`, else the health check's port.
    pub fn proxy_target_port(&self) -> Option<u16> {
        let proxy = self.proxy.as_ref()?;
        proxy.container_port.or(self.health.as_ref().map(|h| h.http.port))
    }
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.cpus.is_none() && self.memory.is_none()
    }
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

pub(crate) fn default_user() -> String {
    "root".to_string()
}

pub(crate) fn default_port() -> u16 {
    22
}

pub(crate) fn default_docker_socket() -> String {
    "/var/run/docker.sock".to_string()
}

pub(crate) fn default_deploy_timeout() -> Duration {
    Duration::from_secs(600)
}

pub(crate) fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

pub(crate) fn default_interval() -> Duration {
    Duration::from_secs(1)
}

pub(crate) fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
