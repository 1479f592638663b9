//! The executor's steps of a rollout behind the proxy, and what the proxy routes a unit to (the planner's
//! [`Routed`]). A switch and a retire read the host's proxy config under its lock, so a proxy reconcile never loads
//! routes made before the switch.

use ballast_specs::{Role, RoleControl};
use tokio::time::Instant;

use super::proxy::{host_error, proxy_error};
use super::{short, Context, ExecError, ReconcileError, Unit};
use crate::aws::ResolvedSecrets;
use crate::desired;
use crate::hosts::{Container, ContainerState, DockerHost};
use crate::labels;
use crate::plan::proxy::address;
use crate::plan::Routed;
use crate::proxy::{Admin, Proxy, Route, Upstream};
use crate::rollout::{self, RolloutError};

/// Which of `observed` (the unit's containers) the host's proxy routes `role` to. A route whose address is not
/// its container's (the container got another address) counts as none, and so does a proxy that cannot be read.
pub async fn routed(admin: &Admin<'_>, role: &Role, observed: &[Container]) -> Routed {
    let Ok(Some(seen)) = admin.observe().await else { return Routed::Nothing };
    let Some(upstream) = seen.routes.of(&role.metadata.name).and_then(|r| r.upstream.as_ref()) else {
        return Routed::Nothing;
    };
    let port = role.spec.proxy_target_port().unwrap_or(0);
    let current = observed.iter().find(|c| c.id == upstream.container);
    match current.and_then(|c| c.ip.as_deref()) {
        Some(ip) if address(ip, port) == upstream.address => Routed::To(upstream.container.clone()),
        Some(_) => Routed::Nothing,
        // Not running, or not the unit's: still what the proxy routes to (the planner starts or replaces it).
        None => Routed::To(upstream.container.clone()),
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
    let id = rollout::launch(&ctx.rollout_env(), client, role, config)
        .await
        .map_err(|e| rollout_error(unit, e))?;
    let ms = started.elapsed().as_millis();
    let message = format!(
        "started {} on {} beside the serving one ({reason}); healthy after {ms} ms",
        short(&id),
        unit.host
    );
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
    rollout::verify(&ctx.rollout_env(), client, role, id).await.map_err(|e| rollout_error(unit, e))
}

/// The container a switch goes to: `to`, or else the unit's running container of the desired spec that is not
/// `from` (the one the launch before it started; the old one may have the same spec when a limit is lifted).
pub(super) struct Target<'a> {
    pub to: Option<&'a str>,
    pub from: Option<&'a str>,
}

/// Points the proxy's route of the role at the [`Target`] (`Action::Switch`), and records the event with how long
/// the switch took.
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
    let fail = |e: ReconcileError| ExecError::Reconcile(e);
    let started = Instant::now();
    let target = match target.to {
        Some(id) => client.inspect(id).await.map_err(|e| fail(host_error(host, e)))?,
        None => {
            let from = target.from;
            let hash = desired::hash(role, control, secrets);
            let listing = client.list().await.map_err(|e| fail(host_error(host, e)))?;
            listing.into_iter().find(|c| {
                c.labels.get(labels::ROLE) == Some(&unit.role)
                    && c.labels.get(labels::HOST) == Some(host)
                    && c.labels.get(labels::HASH) == Some(&hash)
                    && c.state == ContainerState::Running
                    && Some(c.id.as_str()) != from
            })
        }
    };
    let Some((target, ip)) = target.and_then(|c| {
        let ip = c.ip.clone()?;
        Some((c, ip))
    }) else {
        let message = "the container to switch to is not running".to_string();
        return Err(fail(ReconcileError::Switch { host: host.clone(), message }));
    };
    let (Some(proxy), Some(port)) = (&role.spec.proxy, role.spec.proxy_target_port()) else { return Ok(()) };
    let upstream = Upstream { container: target.id.clone(), address: address(&ip, port) };
    let admin = admin(ctx, client);
    let lock = ctx.proxies.lock(host);
    let held = lock.lock().await;
    let seen = admin.observe().await.map_err(|e| fail(proxy_error(host, e)))?;
    let mut routes = seen.map(|s| s.routes).unwrap_or_default();
    let from = routes.of(&unit.role).and_then(|r| r.upstream.clone());
    match routes.routes.iter_mut().find(|r| r.role == unit.role) {
        Some(route) => route.upstream = Some(upstream),
        None => {
            routes.routes.push(Route {
                role: unit.role.clone(),
                port: proxy.port,
                hosts: proxy.hosts.clone(),
                upstream: Some(upstream),
            });
            routes.grace = routes.grace.max(proxy.drain_timeout.as_std());
        }
    }
    admin.load(&routes).await.map_err(|e| fail(proxy_error(host, e)))?;
    ctx.proxies.note_switch(host, &unit.role, &target.id);
    drop(held);
    let ms = started.elapsed().as_millis();
    let from = from.map_or("nothing".to_string(), |u| short(&u.container).to_string());
    let message = format!(
        "switched the proxy's :{} on {host} from {from} to {} in {ms} ms",
        proxy.port,
        short(&target.id)
    );
    ctx.event(unit, "Switched", message).await;
    Ok(())
}

/// Lets the requests in flight on `id` finish (at most the role's drain timeout), then stops and removes it
/// (`Action::Retire`). The proxy must not route to it any more.
pub(super) async fn retire(
    ctx: &Context,
    client: &dyn DockerHost,
    unit: &Unit,
    role: &Role,
    id: &str,
    drain: std::time::Duration,
) -> Result<(), ExecError> {
    let host = &unit.host;
    let fail = |e: ReconcileError| ExecError::Reconcile(e);
    let Some(old) = client.inspect(id).await.map_err(|e| fail(host_error(host, e)))? else { return Ok(()) };
    let admin = admin(ctx, client);
    let seen = admin.observe().await.map_err(|e| fail(proxy_error(host, e)))?;
    let routed = seen.as_ref().and_then(|s| s.routes.of(&unit.role)).and_then(|r| r.upstream.as_ref());
    if routed.is_some_and(|u| u.container == old.id) {
        let message = format!("the proxy still routes to {}", short(id));
        return Err(fail(ReconcileError::Switch { host: host.clone(), message }));
    }
    let port = role.spec.proxy_target_port().unwrap_or(0);
    let drained = match &old.ip {
        Some(ip) => Some(
            rollout::drain(&admin, &address(ip, port), drain)
                .await
                .map_err(|e| fail(proxy_error(host, e)))?,
        ),
        None => None,
    };
    client.stop(id, ctx.config.stop_grace).await.map_err(|e| fail(host_error(host, e)))?;
    client.remove(id).await.map_err(|e| fail(host_error(host, e)))?;
    let how = match drained {
        Some(d) if d.left == 0 => format!("drained in {} ms", d.took.as_millis()),
        Some(d) => {
            format!("drain timeout {} ms reached with {} requests in flight", d.took.as_millis(), d.left)
        }
        None => "not running, nothing to drain".to_string(),
    };
    ctx.event(unit, "Retired", format!("retired {} on {host}: {how}", short(id))).await;
    Ok(())
}

pub(super) fn admin<'a>(ctx: &Context, client: &'a dyn DockerHost) -> Admin<'a> {
    Admin::new(client, ctx.config.proxy.admin_port)
}

fn rollout_error(unit: &Unit, e: RolloutError) -> ExecError {
    match e {
        RolloutError::Failed(reason) => ExecError::Failed(reason),
        RolloutError::Host(e) => ExecError::Reconcile(host_error(&unit.host, e)),
    }
}
