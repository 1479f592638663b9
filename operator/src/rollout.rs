//! Health-gated replacement of a unit's container: pull, create, start, wait until healthy, remove the old one;
//! on failure bring the old one back. The order of old and new follows the role's strategy; behind the proxy the
//! steps are separate (`proxied.rs`): launch beside, switch, drain.

use std::time::Duration;

use ballast_specs::{Role, Strategy};
use tokio::time::Instant;

use crate::aws::RegistryCredentials;
use crate::hosts::{Container, ContainerConfig, ContainerState, DockerHost, HostError};

/// What a rollout needs from the reconciler: its knobs and the registry's credentials.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    /// SIGTERM-to-SIGKILL grace when stopping a container.
    pub stop_grace: Duration,
    /// A role without a health check is healthy once its container has stayed running this long.
    pub settle: Duration,
    pub registry: &'a dyn RegistryCredentials,
}

/// Why a rollout step did not complete.
#[derive(Debug)]
pub enum RolloutError {
    /// The new container cannot be made healthy (pull, create, start or health failed): the unit is halted
    /// at this spec; the previous container is running again.
    Failed(String),
    /// The host failed under us (unreachable, docker error): retry later.
    Host(HostError),
}

impl From<HostError> for RolloutError {
    fn from(e: HostError) -> RolloutError {
        RolloutError::Host(e)
    }
}

/// The first health probes come quickly, then every `interval`: a container that is up in 200 ms is seen in 200 ms.
const FIRST_PROBE: Duration = Duration::from_millis(25);

/// Replaces `old` (if any) by a new container made from `config`. Returns the new container's id.
pub async fn deploy(
    env: &Env<'_>,
    client: &dyn DockerHost,
    role: &Role,
    config: ContainerConfig,
    old: Option<&str>,
) -> Result<String, RolloutError> {
    ensure_image(env, client, &config.image).await?;
    let stop_first = role.spec.strategy == Strategy::StopFirst;
    if stop_first {
        if let Some(old) = old {
            client.stop(old, env.stop_grace).await?;
        }
    }
    let new = match client.create(&config).await {
        Ok(id) => id,
        Err(e) if e.is_unreachable() => return Err(e.into()),
        Err(e) => {
            restore(client, old).await?;
            return Err(RolloutError::Failed(format!("create failed: {e}")));
        }
    };
    if let Err(e) = client.start(&new).await {
        if e.is_unreachable() {
            return Err(e.into());
        }
        client.remove(&new).await?;
        restore(client, old).await?;
        return Err(RolloutError::Failed(format!("start failed: {e}")));
    }
    match wait_healthy(env, client, role, &new).await {
        Ok(_) => {
            if let Some(old) = old {
                if !stop_first {
                    client.stop(old, env.stop_grace).await?;
                }
                client.remove(old).await?;
            }
            Ok(new)
        }
        Err(RolloutError::Failed(reason)) => {
            client.remove(&new).await?;
            restore(client, old).await?;
            Err(RolloutError::Failed(reason))
        }
        Err(e) => Err(e),
    }
}

/// Completes an interrupted rollout: `new` exists beside `old`. Health-gates `new`, then removes `old`;
/// on failure removes `new` and starts the first of `old` again.
pub async fn finish(
    env: &Env<'_>,
    client: &dyn DockerHost,
    role: &Role,
    new: &str,
    old: &[String],
) -> Result<(), RolloutError> {
    if role.spec.strategy == Strategy::StopFirst {
        for o in old {
            client.stop(o, env.stop_grace).await?;
        }
    }
    if let Err(e) = client.start(new).await {
        if e.is_unreachable() {
            return Err(e.into());
        }
    }
    match wait_healthy(env, client, role, new).await {
        Ok(_) => {
            for o in old {
                client.remove(o).await?;
            }
            Ok(())
        }
        Err(RolloutError::Failed(reason)) => {
            client.remove(new).await?;
            restore(client, old.first().map(String::as_str)).await?;
            Err(RolloutError::Failed(reason))
        }
        Err(e) => Err(e),
    }
}

/// Pulls the image when it is not on the host. Floating tags (`latest` or none) are pulled every time,
/// falling back to the host's copy when the registry cannot be reached.
pub(crate) async fn ensure_image(
    env: &Env<'_>,
    client: &dyn DockerHost,
    image: &str,
) -> Result<(), RolloutError> {
    let present = client.image_present(image).await?;
    if present && !is_floating(image) {
        return Ok(());
    }
    let auth = env
        .registry
        .auth_for(image)
        .await
        .map_err(|e| RolloutError::Failed(format!("registry credentials for {image}: {e}")))?;
    let mut result = client.pull(image, auth.as_ref()).await;
    if auth.is_some() && matches!(&result, Err(HostError::Pull { message, .. }) if is_auth_error(message)) {
        // The cached token may have been revoked or expired early: fetch a new one once.
        env.registry.invalidate(image).await;
        let auth = env
            .registry
            .auth_for(image)
            .await
            .map_err(|e| RolloutError::Failed(format!("registry credentials for {image}: {e}")))?;
        result = client.pull(image, auth.as_ref()).await;
    }
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.is_unreachable() => Err(e.into()),
        Err(e) if present => {
            tracing::warn!(image, error = %e, "pull failed; using the image already on the host");
            Ok(())
        }
        Err(HostError::Pull { message, .. }) => {
            Err(RolloutError::Failed(format!("pull of {image} failed: {message}")))
        }
        Err(e) => Err(RolloutError::Failed(format!("pull of {image} failed: {e}"))),
    }
}

fn is_floating(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

fn is_auth_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("unauthorized") || m.contains("denied") || m.contains("401") || m.contains("403")
}

/// Waits until the container is healthy: its HTTP check answers 2xx, or (without a check) it has stayed
/// running for `settle`. Fails when it exits, disappears, or `deployTimeout` passes. Returns the container as
/// last inspected (its address included).
async fn wait_healthy(
    env: &Env<'_>,
    client: &dyn DockerHost,
    role: &Role,
    id: &str,
) -> Result<Container, RolloutError> {
    let spec = &role.spec;
    let started = Instant::now();
    let deadline = started + spec.deploy_timeout.as_std();
    let interval = spec.health.as_ref().map(|h| h.interval.as_std()).unwrap_or(Duration::from_millis(500));
    let mut pause = FIRST_PROBE.min(interval);
    let mut running_since: Option<Instant> = None;
    let mut last = String::from("no answer yet");
    loop {
        let Some(c) = client.inspect(id).await? else {
            return Err(RolloutError::Failed("the new container disappeared during its health check".into()));
        };
        match c.state {
            ContainerState::Running => {
                running_since.get_or_insert_with(Instant::now);
            }
            ContainerState::Created | ContainerState::Restarting => {}
            state => {
                return Err(RolloutError::Failed(format!(
                    "the new container is {state} during its health check"
                )));
            }
        }
        match (&spec.health, running_since) {
            (Some(health), Some(_)) => match &c.ip {
                Some(ip) => {
                    let timeout = health.timeout.as_std();
                    match client.http_get(ip, health.http.port, &health.http.path, timeout).await {
                        Ok(code) if (200..300).contains(&code) => return Ok(c),
                        Ok(code) => last = format!("GET {} answered {code}", health.http.path),
                        Err(e) if matches!(e, HostError::HostKey(_)) => return Err(e.into()),
                        Err(e) => last = format!("GET {}: {e}", health.http.path),
                    }
                }
                None => last = "the container has no IP address".into(),
            },
            (None, Some(since)) if since.elapsed() >= env.settle => return Ok(c),
            _ => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(RolloutError::Failed(format!(
                "not healthy within deployTimeout {}: {last}",
                spec.deploy_timeout
            )));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(interval);
    }
}

/// Starts the previous container again after a failed replacement.
async fn restore(client: &dyn DockerHost, old: Option<&str>) -> Result<(), HostError> {
    if let Some(old) = old {
        client.start(old).await?;
    }
    Ok(())
}

mod proxied;

pub use proxied::{drain, launch, verify, Drained};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floating_tags() {
        assert!(is_floating("app"));
        assert!(is_floating("app:latest"));
        assert!(is_floating("localhost:5000/app"));
        assert!(!is_floating("localhost:5000/app:v1"));
        assert!(!is_floating("app@sha256:abc"));
    }
}
