//! A role's containers for people (`ballast logs`, `ballast exec`): the API's [`Containers`] over the
//! reconciler's host clients, so the API reaches hosts through the same connection as the reconciles.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::api::{ContainerError, Containers};
use crate::hosts::{Container, DockerHost, ExecOutput, HostError, LogLine};
use crate::labels;
use crate::reconcile::{containers_of, is_running, Context, Unit};
use crate::store::SpecStore;

/// Finds a unit's container on its host and reads its log or runs a command in it.
pub struct ContainerAccess {
    ctx: Arc<Context>,
    /// Where the hosts are looked up (the reconciler's store has no host reads).
    store: Arc<dyn SpecStore>,
    /// Cancelled at shutdown: followed logs end, so the HTTP server can drain.
    stop: CancellationToken,
}

impl ContainerAccess {
    pub fn new(ctx: Arc<Context>, store: Arc<dyn SpecStore>, stop: CancellationToken) -> ContainerAccess {
        ContainerAccess { ctx, store, stop }
    }

    /// The host's client and the unit's container: a running one if any, else (unless `running` is asked
    /// for) the one of the newest generation.
    async fn container(
        &self,
        role: &str,
        host: &str,
        running: bool,
    ) -> Result<(Arc<dyn DockerHost>, Container), ContainerError> {
        let spec =
            self.store.get_host(host).await?.ok_or_else(|| ContainerError::UnknownHost(host.into()))?;
        let client = self.ctx.hosts.client(&spec);
        let listing = client.list().await.map_err(|error| host_error(host, error))?;
        let unit = Unit { role: role.to_string(), host: host.to_string() };
        let mut found = containers_of(&listing, &unit);
        found.sort_by_key(|c| (is_running(c), generation(c)));
        match found.pop() {
            Some(c) if is_running(&c) || !running => Ok((client, c)),
            Some(c) => Err(ContainerError::NoContainer(format!(
                "role {role:?} has no running container on host {host:?} (container {} is {})",
                c.name,
                format!("{:?}", c.state).to_lowercase()
            ))),
            None => {
                Err(ContainerError::NoContainer(format!("role {role:?} has no container on host {host:?}")))
            }
        }
    }
}

#[async_trait]
impl Containers for ContainerAccess {
    async fn logs(
        &self,
        role: &str,
        host: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> Result<BoxStream<'static, Result<LogLine, HostError>>, ContainerError> {
        let (client, container) = self.container(role, host, false).await?;
        let lines =
            client.logs(&container.id, follow, tail).await.map_err(|error| host_error(host, error))?;
        Ok(lines.take_until(self.stop.clone().cancelled_owned()).boxed())
    }

    async fn exec(&self, role: &str, host: &str, command: &[String]) -> Result<ExecOutput, ContainerError> {
        let (client, container) = self.container(role, host, true).await?;
        client.exec(&container.id, command).await.map_err(|error| host_error(host, error))
    }
}

fn host_error(host: &str, error: HostError) -> ContainerError {
    ContainerError::Host { host: host.to_string(), error }
}

/// The generation a container was created from (0 when its label is missing or bad).
fn generation(c: &Container) -> u64 {
    c.labels.get(labels::GENERATION).and_then(|g| g.parse().ok()).unwrap_or(0)
}
