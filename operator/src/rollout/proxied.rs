//! The steps of a rollout behind the proxy: a new container is launched beside the serving one and health-gated
//! (the old one is not touched: it serves until the switch), the proxy is switched to it, and the old one drains.
//! A launch that does not get healthy removes its container and fails: nothing was switched.

use std::time::Duration;

use ballast_specs::Role;
use tokio::time::Instant;

use super::{ensure_image, wait_healthy, Env, RolloutError};
use crate::hosts::{Container, ContainerConfig, DockerHost};
use crate::proxy::{self, Proxy, ProxyError};

/// How often the requests in flight on a draining container are counted.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    pub took: Duration,
    /// Requests still in flight when the drain timeout ended it (0: all finished).
    pub left: u64,
}

/// Creates, starts and health-checks a container made from `config` on the proxied roles' network. Returns it as
/// seen healthy (its address included); on failure it is removed and the rollout fails.
pub async fn launch(
    env: &Env<'_>,
    client: &dyn DockerHost,
    role: &Role,
    config: ContainerConfig,
) -> Result<Container, RolloutError> {
    client.ensure_network(proxy::NETWORK, &proxy::network_labels()).await?;
    ensure_image(env, client, &config.image).await?;
    let new = match client.create(&config).await {
        Ok(id) => id,
        Err(e) if e.is_unreachable() => return Err(e.into()),
        Err(e) => return Err(RolloutError::Failed(format!("create failed: {e}"))),
    };
    verify(env, client, role, &new).await
}

/// Makes sure the container `id` runs and passes its health check; on failure it is removed. Returns it as seen
/// healthy.
pub async fn verify(
    env: &Env<'_>,
    client: &dyn DockerHost,
    role: &Role,
    id: &str,
) -> Result<Container, RolloutError> {
    if let Err(e) = client.start(id).await {
        if e.is_unreachable() {
            return Err(e.into());
        }
        client.remove(id).await?;
        return Err(RolloutError::Failed(format!("start failed: {e}")));
    }
    match wait_healthy(env, client, role, id).await {
        Ok(healthy) => Ok(healthy),
        Err(RolloutError::Failed(reason)) => {
            client.remove(id).await?;
            Err(RolloutError::Failed(reason))
        }
        Err(e) => Err(e),
    }
}

/// Waits until the proxy has no request in flight to `address` (the old container's), at most `limit`. The
/// first count comes a moment after the switch, so that a request the old config accepted just before it is
/// counted.
pub async fn drain(proxy: &dyn Proxy, address: &str, limit: Duration) -> Result<Drained, ProxyError> {
    let started = Instant::now();
    let deadline = started + limit;
    loop {
        tokio::time::sleep(DRAIN_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        let left = proxy.in_flight(address).await?;
        if left == 0 || Instant::now() >= deadline {
            return Ok(Drained { took: started.elapsed(), left });
        }
    }
}
