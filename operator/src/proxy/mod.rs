//! ballast's proxy on a host: the container that serves proxied roles' ports, and the one narrow trait the rest
//! of the operator uses to route through it.
//!
//! The data plane is Caddy, driven through its admin API (`caddy.rs` writes and reads its JSON config, `admin.rs`
//! speaks to the API through the host's connection). Nothing outside this module knows Caddy: callers say which
//! roles the proxy serves on which ports ([`Routes`], a config change), which address each role's requests go to
//! (its upstream, a file in the proxy container that Caddy reads per request: a switch without a config reload),
//! and ask how many requests are in flight to an address. The proxy container runs on the host's network, so it listens on the proxied ports itself and
//! its admin API is on the host's loopback only; app containers of proxied roles join the [`NETWORK`] bridge,
//! which the host (and so the proxy) reaches by their addresses.

mod admin;
mod caddy;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

pub use admin::Admin;
pub use caddy::{build, read, upstream_file, UPSTREAMS};

use crate::hosts::{ContainerConfig, HostError, HOST_NETWORK};
use crate::labels::{self, RecreateInputs};

/// The bridge network ballast makes on each host for the containers of proxied roles.
pub const NETWORK: &str = "ballast";

/// How a role's requests wait while its container cannot be dialled (restarting, or between stop and start).
pub const HOLD: Duration = Duration::from_secs(5);

/// The operator's proxy settings (`ballastd --proxy-image`, `--proxy-admin-port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The Caddy image of every host's proxy.
    pub image: String,
    /// The port of the proxy's admin API on each host's loopback.
    pub admin_port: u16,
}

/// What the proxy of one host serves: one route per proxied role on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    pub routes: Vec<Route>,
    /// How long requests in flight when the routes change may take before their connections are closed: the
    /// longest drain timeout of the routed roles.
    pub grace: Duration,
}

/// The requests of one role: those on `port` whose `Host` is one of `hosts` (any host when empty). They go to the
/// address in the role's upstream (see [`Proxy::point`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub role: String,
    pub port: u16,
    pub hosts: Vec<String>,
}

/// What a proxy's config was seen serving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub routes: Routes,
    /// The proxy's config is exactly the one [`build`] writes for `routes`: nobody changed it by hand.
    pub exact: bool,
}

/// Why the proxy could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The host, or the proxy's admin API on it, cannot be reached (not running yet, or gone).
    #[error("the proxy's admin api cannot be reached: {0}")]
    Unreachable(#[source] HostError),
    /// The admin API answered with an error.
    #[error("the proxy refused {what}: {status} {message}")]
    Refused { what: String, status: u16, message: String },
    /// The admin API answered something that is not what it should say.
    #[error("the proxy's answer to {what} cannot be read: {message}")]
    Garbled { what: String, message: String },
}

/// One host's proxy, as the reconciler and the rollouts use it.
#[async_trait]
pub trait Proxy: Send + Sync {
    /// What the proxy's config serves now; `Ok(None)` when it answers without a config (a new proxy).
    async fn observe(&self) -> Result<Option<Observed>, ProxyError>;
    /// Makes the proxy serve `routes`, all at once (a config reload: requests in flight finish on the old one).
    async fn load(&self, routes: &Routes) -> Result<(), ProxyError>;
    /// The address (`ip:port`) each role's requests go to, by role (roles never pointed anywhere are absent).
    async fn upstreams(&self) -> Result<BTreeMap<String, String>, ProxyError>;
    /// Sends the role's next requests to `address`; requests in flight finish where they are.
    async fn point(&self, role: &str, address: &str) -> Result<(), ProxyError>;
    /// Requests in flight to `address` (`ip:port`), 0 once the proxy forwards none there any more.
    async fn in_flight(&self, address: &str) -> Result<u64, ProxyError>;
}

impl ProxyError {
    /// A stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Unreachable(_) => "proxy_unreachable",
            ProxyError::Refused { .. } => "proxy_refused",
            ProxyError::Garbled { .. } => "proxy_garbled",
        }
    }

    /// The host itself cannot be reached (not only its proxy).
    pub fn host_unreachable(&self) -> bool {
        matches!(self, ProxyError::Unreachable(e) if e.is_unreachable())
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { image: "caddy:2".to_string(), admin_port: 2019 }
    }
}

impl Routes {
    /// The route of `role`, if the proxy has one.
    pub fn of(&self, role: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.role == role)
    }
}

/// The proxy container of `host` (its name made unique by `suffix`): Caddy on the host's network, its admin
/// API on the host's loopback, resuming its last config when it restarts.
pub fn container_config(settings: &Settings, host: &str, suffix: &str) -> ContainerConfig {
    let hash = hash(settings);
    ContainerConfig {
        name: format!("ballast-proxy-{}-{suffix}", &hash[..8]),
        image: settings.image.clone(),
        command: command(),
        env: env(settings).into_iter().collect(),
        labels: labels::container_labels(labels::PROXY_ROLE, host, 0, &hash, ""),
        nano_cpus: 0,
        memory: 0,
        ports: Vec::new(),
        logging: None,
        network: Some(HOST_NETWORK.to_string()),
    }
}

/// The files a new proxy container starts with: the config of `routes` where Caddy resumes from, and the upstream
/// file of each role in `upstreams` (role → address). Written before its first start, they make it serve at once.
pub fn seed_files(
    routes: &Routes,
    upstreams: &BTreeMap<String, String>,
    admin_port: u16,
) -> Vec<(String, Vec<u8>)> {
    let mut files =
        vec![(caddy::AUTOSAVE.to_string(), caddy::build(routes, admin_port).to_string().into_bytes())];
    files.extend(upstreams.iter().map(|(role, address)| (upstream_file(role), address.clone().into_bytes())));
    files
}

/// The recreate hash of the proxy container: a changed image or admin port replaces it.
pub fn hash(settings: &Settings) -> String {
    labels::recreate_hash(&RecreateInputs {
        image: &settings.image,
        command: &command(),
        env: &env(settings),
        ports: &[],
        logging: None,
        secrets_hmac: "",
        restart: 0,
        network: Some(HOST_NETWORK),
    })
}

/// The labels of the [`NETWORK`] ballast makes.
pub fn network_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::SCHEMA.to_string(), labels::SCHEMA_VERSION.to_string()),
        (labels::NETWORK.to_string(), NETWORK.to_string()),
    ])
}

/// `caddy run --resume`: the last config loaded (autosaved by Caddy) is served again after a restart, before
/// the reconciler looks.
fn command() -> Vec<String> {
    ["caddy", "run", "--resume"].map(str::to_string).to_vec()
}

/// The admin API's address before the first config is loaded, and where Caddy keeps its autosave.
fn env(settings: &Settings) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("CADDY_ADMIN".to_string(), format!("127.0.0.1:{}", settings.admin_port)),
        ("XDG_CONFIG_HOME".to_string(), "/config".to_string()),
        ("XDG_DATA_HOME".to_string(), "/data".to_string()),
    ])
}
