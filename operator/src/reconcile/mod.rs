//! The reconciler: keeps every (role, host) unit equal to its desired state, one file a job.
//!
//! A host pass ([`host_pass`]) lists a host once and picks the units whose plan has actions or whose status is
//! stale; the unit loop ([`reconcile`]) observes, plans, reports and executes until the plan is empty; the
//! executor performs one action and records its event; [`status`] is the pure function that says what a unit's
//! status is; the memory keeps the last statuses, convergence clocks, rollout groups and pokes of this leader's
//! term, [`budget`] the replacements under way in each rollout group; [`Preview`] answers `ballast plan` from the
//! store without touching that memory. A host's proxy is the unit `(ballast.proxy, HOST)` with a reconcile of its
//! own ([`proxy`]); the steps of a rollout behind it are in `switch.rs`.
//!
//! A reconcile never learns why it ran; running it again on a converged unit changes nothing. Leadership is
//! checked right before each action: a process that no longer leads stops at the next step with `NotLeader`
//! (its status and event writes are fenced in the store as well).

mod budget;
mod context;
mod execute;
mod host_pass;
mod memory;
mod preview;
pub mod proxy;
mod specs;
pub mod status;
mod switch;
mod unit;

use std::time::Duration;

pub use context::Context;
pub use host_pass::{containers_of, host_pass, units_on_host};
pub use preview::Preview;
pub use specs::Specs;
pub use unit::reconcile;

use crate::aws::AwsError;
use crate::hosts::{Container, ContainerState, HostError};
use crate::proxy::{ProxyError, Settings};
use crate::store::StoreError;

/// Knobs of the reconciler.
#[derive(Clone, Debug)]
pub struct Config {
    /// SIGTERM-to-SIGKILL grace when stopping a container.
    pub stop_grace: Duration,
    /// A role without a health check is healthy once its container has stayed running this long.
    pub settle: Duration,
    /// The most observe-plan-execute passes one reconcile makes before it gives up until the next trigger.
    pub max_passes: usize,
    /// The image and admin port of every host's proxy.
    pub proxy: Settings,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            stop_grace: Duration::from_secs(10),
            settle: Duration::from_secs(2),
            max_passes: 6,
            proxy: Settings::default(),
        }
    }
}

/// A (role, host) pair: the unit of reconciliation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unit {
    pub role: String,
    pub host: String,
}

/// Why a reconcile did not finish; the caller decides about retries.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("host {host}: {source}")]
    Host {
        host: String,
        #[source]
        source: HostError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("secrets of role {role}: {source}")]
    Secrets {
        role: String,
        #[source]
        source: AwsError,
    },
    #[error("host {host}: {source}")]
    Proxy {
        host: String,
        #[source]
        source: ProxyError,
    },
    /// A switch of the proxy could not be made: the container to switch to, or away from, is not as planned.
    #[error("host {host}: {message}")]
    Switch { host: String, message: String },
    #[error("unit did not settle after {0} passes")]
    NotSettled(usize),
    /// This process no longer leads: nothing more is done.
    #[error("this process is no longer the leader")]
    NotLeader,
}

impl ReconcileError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ReconcileError::Host { source, .. } if source.is_unreachable())
    }

    /// A stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Host { source, .. } => source.kind(),
            ReconcileError::Store(e) => e.kind(),
            ReconcileError::Secrets { .. } => "secrets",
            ReconcileError::Proxy { source, .. } => source.kind(),
            ReconcileError::Switch { .. } => "switch",
            ReconcileError::NotSettled(_) => "not_settled",
            ReconcileError::NotLeader => "not_leader",
        }
    }
}

/// Why an action of the executor did not complete.
enum ExecError {
    /// The rollout failed (pull, health, start): the unit is halted at this spec.
    Failed(String),
    Reconcile(ReconcileError),
}

/// True when a container is running.
pub fn is_running(c: &Container) -> bool {
    c.state == ContainerState::Running
}

/// The first 12 characters of a container id, as Docker shows them.
fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
