//! Docker hosts: what the reconciler can see and do on one host, behind one narrow trait.
//!
//! `engine` implements the trait once, over a `tunnel`: `ssh` reaches a host's Docker socket through
//! `direct-streamlocal` channels of one russh connection; `local` uses a local socket (`unix://` hosts).
//! `docker` makes the bollard calls, `convert` turns bollard's types into ours, `inspect_cache` spares
//! inspects while a host's events stream is open. `fake` is an in-memory host for tests.
//! No bollard or russh type crosses this module's boundary.

mod convert;
mod docker;
mod engine;
pub mod fake;
mod inspect_cache;
pub mod known_hosts;
pub mod local;
mod pool;
pub mod ssh;
mod tar;
mod tunnel;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ballast_specs::HostSpec;
use futures::stream::BoxStream;
pub use pool::HostPool;

/// A container as observed on a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    /// The image reference the container was created from (as given at create).
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    /// `HostConfig.NanoCpus`; 0 = unlimited.
    pub nano_cpus: i64,
    /// `HostConfig.Memory` in bytes; 0 = unlimited.
    pub memory: i64,
    /// The container's IP address on its network, when running.
    pub ip: Option<String>,
    /// The network it joined at create (`HostConfig.NetworkMode`: `bridge`, `host`, a network's name), if known.
    pub network: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
    Removing,
}

/// Everything needed to create a container. `env` may hold secret values: `Debug` redacts them.
#[derive(Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    pub name: String,
    pub image: String,
    /// Empty: the image's default command.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    /// 0 = unlimited.
    pub nano_cpus: i64,
    /// 0 = unlimited.
    pub memory: i64,
    pub ports: Vec<PortBinding>,
    pub logging: Option<(String, BTreeMap<String, String>)>,
    /// The network the container joins instead of Docker's default bridge: [`HOST_NETWORK`] shares the host's
    /// network (nothing is published then), any other name is a bridge network of the host.
    pub network: Option<String>,
}

/// The network name of a container that shares its host's network.
pub const HOST_NETWORK: &str = "host";

/// An HTTP/1.1 request made from a host to an address it reaches (see [`DockerHost::http`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// Path and query: `/config/`.
    pub path: String,
    /// A JSON body, sent with `Content-Type: application/json`.
    pub json: Option<Vec<u8>>,
}

/// The answer to an [`HttpRequest`]: its status code and body (at most [`HTTP_BODY_LIMIT`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The largest answer [`DockerHost::http`] reads.
pub const HTTP_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A published port: `host_ip:host_port -> container_port/protocol`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortBinding {
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// Registry credentials for a pull. `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    pub server: String,
}

/// One line of a container's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    /// The line without its newline, as UTF-8 (invalid bytes replaced). A line Docker split (over 16 KiB)
    /// comes as several.
    pub text: String,
    /// When Docker received it, if known.
    pub time: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// What a command run in a container printed, and how it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i64,
    /// True when the output went over [`EXEC_OUTPUT_LIMIT`]: the rest was read and dropped.
    pub truncated: bool,
}

/// The most output (stdout and stderr together) an exec keeps.
pub const EXEC_OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

/// A change on a host that may need a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEvent {
    pub container_id: String,
    /// Docker's action: `die`, `destroy`, `oom`, `update`, `start`, `stop`, `rename`, `create`.
    pub action: String,
    /// The container's labels at the time of the event.
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum HostError {
    /// The host cannot be reached (TCP, SSH handshake, auth, channel, socket).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The host's key is not in known_hosts, or differs from it. Nothing is done on such a host.
    #[error("host key rejected: {0}")]
    HostKey(String),
    #[error("no such container or image: {0}")]
    NotFound(String),
    /// The image could not be pulled (bad tag, auth, registry down).
    #[error("pull of {image} failed: {message}")]
    Pull { image: String, message: String },
    /// Docker answered with an error.
    #[error("docker error {status}: {message}")]
    Docker { status: u16, message: String },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// An `http_get` target did not answer HTTP (connection refused, reset, not HTTP); the host itself is fine.
    #[error("http check failed: {0}")]
    Http(String),
}

impl HostError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HostError::Unreachable(_) | HostError::HostKey(_))
    }

    /// A stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            HostError::Unreachable(_) => "unreachable",
            HostError::HostKey(_) => "host_key",
            HostError::NotFound(_) => "not_found",
            HostError::Pull { .. } => "pull",
            HostError::Docker { .. } => "docker",
            HostError::Timeout(_) => "timeout",
            HostError::Http(_) => "http",
        }
    }
}

/// One Docker host. Implementations reconnect by themselves: a call on a broken connection re-dials
/// (with backoff between failed dials) or fails with `Unreachable`.
#[async_trait]
pub trait DockerHost: Send + Sync + 'static {
    /// Containers that carry the label `ballast.role` (running or not).
    async fn list(&self) -> Result<Vec<Container>, HostError>;
    /// One container by id or name, with its resource limits; `None` if it does not exist.
    async fn inspect(&self, id: &str) -> Result<Option<Container>, HostError>;
    async fn image_present(&self, image: &str) -> Result<bool, HostError>;
    async fn pull(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<(), HostError>;
    /// Creates (does not start) a container; returns its id.
    async fn create(&self, config: &ContainerConfig) -> Result<String, HostError>;
    async fn start(&self, id: &str) -> Result<(), HostError>;
    /// Stops with SIGTERM, then SIGKILL after `grace`. Already stopped is success.
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), HostError>;
    /// Force-removes. Already gone is success.
    async fn remove(&self, id: &str) -> Result<(), HostError>;
    /// Changes cpus/memory in place, without a restart (memory and memory-swap together). 0 = unlimited.
    async fn update_resources(&self, id: &str, nano_cpus: i64, memory: i64) -> Result<(), HostError>;
    /// `GET path` on `ip:port` as seen from the host (through the SSH connection for remote hosts);
    /// returns the HTTP status code. Bounded by `timeout`.
    async fn http_get(&self, ip: &str, port: u16, path: &str, timeout: Duration) -> Result<u16, HostError>;
    /// An HTTP/1.1 exchange with `ip:port` as seen from the host (through the SSH connection for remote hosts,
    /// so `127.0.0.1` is the host's own loopback). Bounded by `timeout`; `HostError::Http` when the target
    /// refuses or does not answer HTTP.
    async fn http(
        &self,
        ip: &str,
        port: u16,
        request: &HttpRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, HostError>;
    /// Creates the bridge network `name` with `labels` unless the host has one of that name.
    async fn ensure_network(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<(), HostError>;
    /// Writes files (absolute paths and their content; folders are made) into the container `id` at once, as
    /// `docker cp` does; the container need not run.
    async fn put_files(&self, id: &str, files: &[(&str, &[u8])]) -> Result<(), HostError>;
    /// The files in the folder `dir` of the container `id`, by name (subfolders are not read); none when the
    /// folder does not exist.
    async fn files(&self, id: &str, dir: &str) -> Result<BTreeMap<String, Vec<u8>>, HostError>;
    /// The host's container events (die, destroy, oom, update, start, stop, ...), ballast-labelled containers only.
    /// The stream ends when the connection breaks; the caller relists and subscribes again.
    async fn events(&self) -> Result<BoxStream<'static, HostEvent>, HostError>;
    /// A container's log (stdout and stderr), the last `tail` lines (all without it); with `follow`, the
    /// stream goes on with new lines until the container stops or the stream is dropped.
    async fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> Result<BoxStream<'static, Result<LogLine, HostError>>, HostError>;
    /// Runs `cmd` (not through a shell) in a running container, without a TTY or stdin, and waits for it.
    /// Output beyond [`EXEC_OUTPUT_LIMIT`] is dropped (`truncated`). Bounded in time: a command still running
    /// after the limit gives `Timeout` (Docker cannot kill an exec: it goes on in the container).
    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, HostError>;
}

/// Settings shared by every SSH host.
#[derive(Clone, Debug, Default)]
pub struct SshConfig {
    /// Private key for public-key auth.
    pub key_path: Option<std::path::PathBuf>,
    /// OpenSSH `known_hosts` file; hosts not in it are refused.
    pub known_hosts: Option<std::path::PathBuf>,
}

/// Makes the client of a host from its spec. The real one dials SSH or a local socket; tests give fakes.
pub trait Connector: Send + Sync + 'static {
    fn connect(&self, name: &str, spec: &HostSpec) -> Arc<dyn DockerHost>;
}

/// The real connector: `unix://` addresses are local engines, everything else is reached over SSH.
#[derive(Clone, Debug, Default)]
pub struct RealConnector {
    pub ssh: SshConfig,
}

impl Connector for RealConnector {
    fn connect(&self, name: &str, spec: &HostSpec) -> Arc<dyn DockerHost> {
        match spec.address.strip_prefix("unix://") {
            Some(path) => Arc::new(local::LocalHost::new(path)),
            None => Arc::new(ssh::SshHost::new(name, spec, self.ssh.clone())),
        }
    }
}

impl fmt::Debug for ContainerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<String> = self.env.iter().map(|(k, _)| format!("{k}=[redacted]")).collect();
        f.debug_struct("ContainerConfig")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("command", &self.command)
            .field("env", &env)
            .field("labels", &self.labels)
            .field("nano_cpus", &self.nano_cpus)
            .field("memory", &self.memory)
            .field("ports", &self.ports)
            .field("logging", &self.logging)
            .field("network", &self.network)
            .finish()
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("server", &self.server)
            .finish()
    }
}
