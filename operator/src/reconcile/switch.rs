//! The executor's steps of a rollout behind the proxy, and what the proxy routes a unit to (the planner's
//! [`Routed`]). A switch and a retire read the host's proxy config under its lock, so a proxy reconcile never loads
//! routes made before the switch.

use ballast_specs::{Role, RoleControl};
use tokio::time::Instant;

use super::proxy::{host_error, proxy_containers, proxy_error, running_proxy};
use super::{short, Context, ExecError, ReconcileError, Unit};
use crate::aws::ResolvedSecrets;
use crate::desired;
use crate::hosts::{Container, ContainerState, DockerHost};
use crate::labels;
use crate::plan::proxy::address;
use crate::plan::Routed;
use crate::proxy::{self, Admin, Proxy, Settings};
use crate::rollout::{self, RolloutError};

/// Which of `observed` (the unit's containers) the host's proxy sends `role`'s requests to: the one whose address
/// is in the role's upstream file. None when the proxy cannot be read, or the address is none of them (not
/// running, or the container got another address).
pub async fn routed(
    client: &dyn DockerHost,
    settings: &Settings,
    listing: &[Container],
    host: &str,
    role: &Role,
    observed: &[Container],
) -> Routed {
    let Some(proxy) = running_proxy(&proxy_containers(listing, host), &proxy::hash(settings)) else {
        return Routed::Nothing;
    };
    let Ok(upstreams) = Admin::new(client, settings.admin_port, &proxy).upstreams().await else {
        return Routed::Nothing;
    };
    let Some(pointed) = upstreams.get(&role.metadata.name) else { return Routed::Nothing };
    let port = role.spec.proxy_target_port().unwrap_or(0);
    match observed.iter().find(|c| c.ip.as_deref().map(|ip| address(ip, port)).as_ref() == Some(pointed)) {
        Some(c) => Routed::To(c.id.clone()),
        None => Routed::Nothing,
    }
}

/// Launches the new container beside the serving one (`Action::Launch`).
pub(super) async fn launch(
    ctx: &Context,
    client: &dyn DockerHost,
    unit: &Unit,
    role: &Role,
    control: &RoleControl,
    secrets: Option<&ResolvedSecrets>,
    reason: &str,
) -> Result<(), ExecError> {
    let suffix = hex::encode(rand::random::<[u8; 3]>());
    let config = desired::container_config(role, &unit.host, control, secrets, &suffix);
    let started = Instant::now();
    let healthy = rollout::launch(&ctx.rollout_env(), client, role, config)
        .await
        .map_err(|e| rollout_error(unit, e))?;
    let ms = started.elapsed().as_millis();
    let message =
        format!("started {} on {} ({reason}); healthy after {ms} ms", short(&healthy.id), unit.host);
    ctx.proxies.note_healthy(unit, healthy);
    ctx.event(unit, "Launched", message).await;
    Ok(())
}

/// Health-checks the new container of a rollout that was cut short (`Action::Verify`).
pub(super) async fn verify(
    ctx: &Context,
    client: &dyn DockerHost,
    unit: &Unit,
    role: &Role,
    id: &str,
) -> Result<(), ExecError> {
    let healthy =
        rollout::verify(&ctx.rollout_env(), client, role, id).await.map_err(|e| rollout_error(unit, e))?;
    ctx.proxies.note_healthy(unit, healthy);
    Ok(())
}

/// How long a switch waits for the host's proxy to run.
const PROXY_UP: std::time::Duration = std::time::Duration::from_secs(10);
/// How often it looks.
const PROXY_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// The container a switch goes to: `to`, or else the unit's running container of the desired spec that is not
/// `from` (the one the launch before it started; the old one may have the same spec when a limit is lifted).
pub(super) struct Target<'a> {
    pub to: Option<&'a str>,
    pub from: Option<&'a str>,
}

/// Points the role's upstream at the [`Target`] (`Action::Switch`): its next requests go there, those in flight
/// finish where they are. Records the event with how long the switch took.
pub(super) async fn switch(
    ctx: &Context,
    client: &dyn DockerHost,
    unit: &Unit,
    role: &Role,
    control: &RoleControl,
    secrets: Option<&ResolvedSecrets>,
    target: Target<'_>,
) -> Result<(), ExecError> {
    let host = &unit.host;
    let fail = ExecError::Reconcile;
    let started = Instant::now();
    let Some(port) = role.spec.proxy_target_port() else { return Ok(()) };
    let settings = &ctx.config.proxy;
    if ctx.proxies.proxy_of(host).is_none() {
        wait_for_proxy(ctx, client, host).await.map_err(fail)?;
    }
    let lock = ctx.proxies.lock(host);
    let held = lock.lock().await;
    // The container just made healthy and the proxy last seen spare a listing: the switch is one call.
    let wanted = |c: &Container| match target.to {
        Some(id) => c.id == id,
        None => Some(c.id.as_str()) != target.from,
    };
    let remembered = ctx.proxies.healthy(unit).filter(|c| wanted(c) && c.ip.is_some());
    let (chosen, proxy) = match (remembered, ctx.proxies.proxy_of(host)) {
        (Some(chosen), Some(proxy)) => (chosen, proxy),
        _ => {
            let listing = client.list().await.map_err(|e| fail(host_error(host, e)))?;
            let proxy = running_proxy(&proxy_containers(&listing, host), &proxy::hash(settings));
            ctx.proxies.note_proxy(host, proxy.as_deref());
            let hash = desired::hash(role, control, secrets);
            let chosen = listing.into_iter().find(|c| {
                c.labels.get(labels::ROLE) == Some(&unit.role)
                    && c.labels.get(labels::HOST) == Some(host)
                    && c.state == ContainerState::Running
                    && c.ip.is_some()
                    && wanted(c)
                    && (target.to.is_some() || c.labels.get(labels::HASH) == Some(&hash))
            });
            let Some(chosen) = chosen else {
                let message = "the container to switch to is not running".to_string();
                return Err(fail(ReconcileError::Switch { host: host.clone(), message }));
            };
            let Some(proxy) = proxy else {
                let message = "the host's proxy is not running yet".to_string();
                return Err(fail(ReconcileError::Switch { host: host.clone(), message }));
            };
            (chosen, proxy)
        }
    };
    let ip = chosen.ip.clone().unwrap_or_default();
    let admin = Admin::new(client, settings.admin_port, &proxy);
    if let Err(e) = admin.point(&unit.role, &address(&ip, port)).await {
        // The proxy was replaced since it was last seen: the next pass lists the host again.
        ctx.proxies.forget_proxy(host);
        return Err(fail(proxy_error(host, e)));
    }
    ctx.proxies.note_switch(host, &unit.role, &chosen.id);
    drop(held);
    let ms = started.elapsed().as_millis();
    let from = target.from.map_or("nothing", short);
    let port = role.spec.proxy.as_ref().map_or(0, |p| p.port);
    let message =
        format!("switched the proxy's :{port} on {host} from {from} to {} in {ms} ms", short(&chosen.id));
    ctx.event(unit, "Switched", message).await;
    Ok(())
}

/// Lets the requests in flight on `id` finish (at most the role's drain timeout), then stops and removes it
/// (`Action::Retire`). The proxy must not send the role's requests to it any more.
pub(super) async fn retire(
    ctx: &Context,
    client: &dyn DockerHost,
    unit: &Unit,
    role: &Role,
    id: &str,
    drain: std::time::Duration,
) -> Result<(), ExecError> {
    let host = &unit.host;
    let fail = ExecError::Reconcile;
    let settings = &ctx.config.proxy;
    let listing = client.list().await.map_err(|e| fail(host_error(host, e)))?;
    let Some(old) = listing.iter().find(|c| c.id == id) else { return Ok(()) };
    let port = role.spec.proxy_target_port().unwrap_or(0);
    // One from before the role was proxied holds the port the proxy needs, and no request of the proxy's.
    let behind_proxy = old.network.as_deref() == Some(proxy::NETWORK);
    let old_address = old.ip.as_deref().filter(|_| behind_proxy).map(|ip| address(ip, port));
    let drained =
        match (&old_address, running_proxy(&proxy_containers(&listing, host), &proxy::hash(settings))) {
            (Some(old_address), Some(proxy)) => {
                let admin = Admin::new(client, settings.admin_port, &proxy);
                let upstreams = admin.upstreams().await.map_err(|e| fail(proxy_error(host, e)))?;
                if upstreams.get(&unit.role) == Some(old_address) {
                    let message = format!("the proxy still sends {} to {}", unit.role, short(id));
                    return Err(fail(ReconcileError::Switch { host: host.clone(), message }));
                }
                Some(
                    rollout::drain(&admin, old_address, drain)
                        .await
                        .map_err(|e| fail(proxy_error(host, e)))?,
                )
            }
            (Some(_), None) => {
                // A new proxy would point the role at its oldest running container: this one. Wait for it.
                let message = "the host's proxy is not running: nothing can be drained".to_string();
                return Err(fail(ReconcileError::Switch { host: host.clone(), message }));
            }
            (None, _) => None,
        };
    client.stop(id, ctx.config.stop_grace).await.map_err(|e| fail(host_error(host, e)))?;
    client.remove(id).await.map_err(|e| fail(host_error(host, e)))?;
    let how = match drained {
        Some(d) if d.left == 0 => format!("drained in {} ms", d.took.as_millis()),
        Some(d) => {
            format!("drain timeout {} ms reached with {} requests in flight", d.took.as_millis(), d.left)
        }
        None if !behind_proxy => "its port goes to the proxy".to_string(),
        None => "not running, nothing to drain".to_string(),
    };
    ctx.event(unit, "Retired", format!("retired {} on {host}: {how}", short(id))).await;
    Ok(())
}

/// Waits (without the host's proxy lock: the proxy's reconcile takes it to make the proxy) until a proxy of the
/// operator's settings runs on `host`, as on a host's first proxied role, where the proxy and the role's first
/// container are made at the same time.
async fn wait_for_proxy(ctx: &Context, client: &dyn DockerHost, host: &str) -> Result<(), ReconcileError> {
    let hash = proxy::hash(&ctx.config.proxy);
    let deadline = Instant::now() + PROXY_UP;
    loop {
        let listing = client.list().await.map_err(|e| host_error(host, e))?;
        if let Some(id) = running_proxy(&proxy_containers(&listing, host), &hash) {
            ctx.proxies.note_proxy(host, Some(&id));
            return Ok(());
        }
        if Instant::now() >= deadline {
            let message = "the host's proxy is not running yet".to_string();
            return Err(ReconcileError::Switch { host: host.to_string(), message });
        }
        tokio::time::sleep(PROXY_POLL).await;
    }
}

fn rollout_error(unit: &Unit, e: RolloutError) -> ExecError {
    match e {
        RolloutError::Failed(reason) => ExecError::Failed(reason),
        RolloutError::Host(e) => ExecError::Reconcile(host_error(&unit.host, e)),
    }
}
