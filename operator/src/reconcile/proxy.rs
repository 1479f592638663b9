//! The reconcile of a host's proxy: the unit `(ballast.proxy, HOST)`, reconciled like a role's unit (triggered by
//! the proxy container's Docker events, the host pass and the resync) but with its own planner
//! ([`plan::proxy`]) and no status of its own: proxied units show the proxy's state in theirs.
//!
//! Also the proxy's state of a leader's term, shared by every reconcile: one lock per host, held around each
//! read-modify-load of the host's proxy config (the proxy's reconcile and a rollout's switch), and the container
//! each role's last switch chose on each host.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ballast_specs::wire::UnitState;
use tokio::time::Instant;

use super::{short, Context, ReconcileError, Specs, Unit};
use crate::hosts::{Container, ContainerState, DockerHost, HostError};
use crate::labels;
use crate::plan::proxy::{
    plan_proxy, ConfigSeen, ProxiedRole, ProxyAction, ProxyDesired, ProxyPlan, ProxySeen,
};
use crate::proxy::{self, Admin, Proxy, ProxyError, Settings};
use crate::rollout;

/// How long a new or restarted proxy may take to answer on its admin API.
const ADMIN_UP: Duration = Duration::from_secs(10);
/// How often a starting proxy's admin API is tried.
const ADMIN_POLL: Duration = Duration::from_millis(10);

/// The proxies' state of one leader's term.
#[derive(Default)]
pub struct Proxies {
    /// Per host: held around each read-modify-load of its proxy config.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Per host, per role: the container its last switch chose.
    switched: Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// Per unit: the container its last launch or health check found healthy, for the switch that follows.
    healthy: Mutex<HashMap<Unit, Container>>,
    /// Per host: the running proxy container last seen.
    proxies: Mutex<HashMap<String, String>>,
}

impl Proxies {
    /// The lock of `host`'s proxy config.
    pub(super) fn lock(&self, host: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks).entry(host.to_string()).or_default().clone()
    }

    /// The container each role's last switch on `host` chose.
    pub(super) fn switched(&self, host: &str) -> BTreeMap<String, String> {
        lock(&self.switched).get(host).cloned().unwrap_or_default()
    }

    pub(super) fn note_switch(&self, host: &str, role: &str, container: &str) {
        lock(&self.switched)
            .entry(host.to_string())
            .or_default()
            .insert(role.to_string(), container.to_string());
    }

    pub(super) fn note_healthy(&self, unit: &Unit, container: Container) {
        lock(&self.healthy).insert(unit.clone(), container);
    }

    /// The container the unit's last launch or health check found healthy (taken: a switch uses it once).
    pub(super) fn healthy(&self, unit: &Unit) -> Option<Container> {
        lock(&self.healthy).remove(unit)
    }

    /// Notes the running proxy container of `host` (or that there is none).
    pub(super) fn note_proxy(&self, host: &str, id: Option<&str>) {
        match id {
            Some(id) => lock(&self.proxies).insert(host.to_string(), id.to_string()),
            None => lock(&self.proxies).remove(host),
        };
    }

    /// The running proxy container of `host` last seen.
    pub(super) fn proxy_of(&self, host: &str) -> Option<String> {
        lock(&self.proxies).get(host).cloned()
    }

    pub(super) fn forget_proxy(&self, host: &str) {
        lock(&self.proxies).remove(host);
    }
}

/// The proxy's unit on `host`, when a role on it is proxied.
pub fn unit_of(specs: &Specs, host: &str) -> Option<Unit> {
    let proxied = specs.roles_on(host).any(|r| r.spec.proxy.is_some());
    proxied.then(|| Unit { role: labels::PROXY_ROLE.to_string(), host: host.to_string() })
}

/// True for the proxy's unit.
pub fn is_proxy(unit: &Unit) -> bool {
    unit.role == labels::PROXY_ROLE
}

/// What `host`'s proxy should be: the settings' container, serving every proxied role on the host.
pub fn desired_of(settings: &Settings, specs: &Specs, host: &str) -> ProxyDesired {
    let mut roles: Vec<ProxiedRole> = specs
        .roles_on(host)
        .filter_map(|r| {
            let proxy = r.spec.proxy.as_ref()?;
            Some(ProxiedRole {
                role: r.metadata.name.clone(),
                port: proxy.port,
                hosts: proxy.hosts.clone(),
                target_port: r.spec.proxy_target_port()?,
                drain: proxy.drain_timeout.as_std(),
            })
        })
        .collect();
    roles.sort_by(|a, b| a.role.cmp(&b.role));
    ProxyDesired { host: host.to_string(), hash: proxy::hash(settings), image: settings.image.clone(), roles }
}

/// The proxy containers among a host's listing.
pub fn proxy_containers(listing: &[Container], host: &str) -> Vec<Container> {
    listing
        .iter()
        .filter(|c| {
            c.labels.get(labels::ROLE).map(String::as_str) == Some(labels::PROXY_ROLE)
                && c.labels.get(labels::HOST).map(String::as_str) == Some(host)
        })
        .cloned()
        .collect()
}

/// The running proxy container of the desired settings among the host's proxy containers.
pub fn running_proxy(containers: &[Container], hash: &str) -> Option<String> {
    containers
        .iter()
        .find(|c| {
            c.state == ContainerState::Running && c.labels.get(labels::HASH).map(String::as_str) == Some(hash)
        })
        .map(|c| c.id.clone())
}

/// The proxy's plan on `host` against its listing; the proxy is read when one of the desired settings runs.
pub async fn plan_on(
    settings: &Settings,
    specs: &Specs,
    host: &str,
    client: &dyn DockerHost,
    listing: &[Container],
    switched: &BTreeMap<String, String>,
) -> ProxyPlan {
    let desired = desired_of(settings, specs, host);
    let containers = proxy_containers(listing, host);
    let seen = match running_proxy(&containers, &desired.hash) {
        Some(id) if !desired.roles.is_empty() => seen(&Admin::new(client, settings.admin_port, &id)).await,
        _ => ProxySeen::default(),
    };
    plan_proxy(&desired, &containers, listing, &seen, switched)
}

/// Reconciles `host`'s proxy until its plan is empty, holding the host's proxy lock.
pub async fn reconcile(ctx: &Context, specs: &Specs, host: &str) -> Result<UnitState, ReconcileError> {
    let Some(spec) = specs.host(host) else {
        return Ok(UnitState::Converged);
    };
    let client = ctx.hosts.client(spec);
    let settings = &ctx.config.proxy;
    let unit = Unit { role: labels::PROXY_ROLE.to_string(), host: host.to_string() };
    let hash = proxy::hash(settings);
    let lock = ctx.proxies.lock(host);
    let _held = lock.lock().await;
    for _ in 0..ctx.config.max_passes {
        let listing = client.list().await.map_err(|e| host_error(host, e))?;
        let switched = ctx.proxies.switched(host);
        let plan = plan_on(settings, specs, host, &*client, &listing, &switched).await;
        if plan.actions.is_empty() {
            ctx.proxies.note_proxy(host, running_proxy(&proxy_containers(&listing, host), &hash).as_deref());
            return Ok(UnitState::Converged);
        }
        let mut proxy = running_proxy(&proxy_containers(&listing, host), &hash);
        ctx.proxies.note_proxy(host, proxy.as_deref());
        for action in &plan.actions {
            ctx.ensure_leading()?;
            execute(ctx, &*client, &unit, &mut proxy, action).await?;
            ctx.proxies.note_proxy(host, proxy.as_deref());
        }
    }
    Err(ReconcileError::NotSettled(ctx.config.max_passes))
}

/// Whether the host pass should reconcile `host`'s proxy: its plan against the pass's listing has actions.
pub async fn needs_reconcile(ctx: &Context, specs: &Specs, host: &str, listing: &[Container]) -> bool {
    let Some(spec) = specs.host(host) else { return false };
    let client = ctx.hosts.client(spec);
    let switched = ctx.proxies.switched(host);
    !plan_on(&ctx.config.proxy, specs, host, &*client, listing, &switched).await.actions.is_empty()
}

/// What the proxy shows: its config (admin API) and its upstream files.
pub(super) async fn seen(admin: &Admin<'_>) -> ProxySeen {
    let config = match admin.observe().await {
        Ok(Some(observed)) => ConfigSeen::Seen(observed),
        Ok(None) => ConfigSeen::Fresh,
        Err(_) => ConfigSeen::NotRead,
    };
    ProxySeen { config, upstreams: admin.upstreams().await.ok() }
}

/// Performs one of the proxy's actions and records its event. `proxy` is the running proxy container (a create
/// makes a new one).
async fn execute(
    ctx: &Context,
    client: &dyn DockerHost,
    unit: &Unit,
    proxy: &mut Option<String>,
    action: &ProxyAction,
) -> Result<(), ReconcileError> {
    let host = &unit.host;
    let settings = &ctx.config.proxy;
    let host_err = |e: HostError| host_error(host, e);
    let no_proxy =
        || ReconcileError::Switch { host: host.clone(), message: "no running proxy container".into() };
    match action {
        ProxyAction::Create { routes, points, reason } => {
            rollout::ensure_image(&ctx.rollout_env(), client, &settings.image).await.map_err(
                |e| match e {
                    rollout::RolloutError::Host(e) => host_err(e),
                    rollout::RolloutError::Failed(message) => {
                        host_err(HostError::Pull { image: settings.image.clone(), message })
                    }
                },
            )?;
            let suffix = hex::encode(rand::random::<[u8; 3]>());
            let config = proxy::container_config(settings, host, &suffix);
            let id = client.create(&config).await.map_err(host_err)?;
            // Its config and upstreams are in place before it starts: it serves as soon as Caddy runs.
            let upstreams = points.iter().map(|(role, _, address)| (role.clone(), address.clone())).collect();
            let files = proxy::seed_files(routes, &upstreams, settings.admin_port);
            let files: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (p.as_str(), c.as_slice())).collect();
            client.put_files(&id, &files).await.map_err(host_err)?;
            client.start(&id).await.map_err(host_err)?;
            for (role, container, _) in points {
                ctx.proxies.note_switch(host, role, container);
            }
            let served: Vec<String> =
                routes.routes.iter().map(|r| format!("{} on :{}", r.role, r.port)).collect();
            let pointed: Vec<String> =
                points.iter().map(|(role, c, _)| format!("{role} → {}", short(c))).collect();
            let message = format!(
                "created the proxy {} on {host} serving {} ({}): {reason}",
                short(&id),
                served.join(", "),
                pointed.join(", ")
            );
            *proxy = Some(id);
            ctx.event(unit, "ProxyCreated", message).await;
        }
        ProxyAction::Start { id, reason } => {
            match client.start(id).await {
                Ok(()) | Err(HostError::NotFound(_)) => {}
                Err(e) => return Err(host_err(e)),
            }
            *proxy = Some(id.clone());
            ctx.event(unit, "ProxyStarted", format!("started the proxy {} on {host}: {reason}", short(id)))
                .await;
        }
        ProxyAction::Remove { id, reason } => {
            client.remove(id).await.map_err(host_err)?;
            ctx.event(unit, "ProxyRemoved", format!("removed the proxy {} on {host}: {reason}", short(id)))
                .await;
        }
        ProxyAction::Load { routes, .. } => {
            let id = proxy.as_deref().ok_or_else(no_proxy)?;
            let admin = Admin::new(client, settings.admin_port, id);
            let started = Instant::now();
            wait_for_admin(&admin).await.map_err(|e| proxy_error(host, e))?;
            admin.load(routes).await.map_err(|e| proxy_error(host, e))?;
            let ms = started.elapsed().as_millis();
            ctx.event(unit, "ProxyLoaded", format!("on {host} in {ms} ms: {action}")).await;
        }
        ProxyAction::Point { role, container, address, .. } => {
            let id = proxy.as_deref().ok_or_else(no_proxy)?;
            let admin = Admin::new(client, settings.admin_port, id);
            admin.point(role, address).await.map_err(|e| proxy_error(host, e))?;
            ctx.proxies.note_switch(host, role, container);
            ctx.event(unit, "ProxyPointed", format!("on {host}: {action}")).await;
        }
    }
    Ok(())
}

/// Waits until the admin API answers (a proxy just started takes a moment).
async fn wait_for_admin(admin: &Admin<'_>) -> Result<(), ProxyError> {
    let deadline = Instant::now() + ADMIN_UP;
    loop {
        match admin.observe().await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(ProxyError::Unreachable(e)) if e.is_unreachable() => return Err(ProxyError::Unreachable(e)),
            Err(_) => tokio::time::sleep(ADMIN_POLL).await,
        }
    }
}

pub(super) fn host_error(host: &str, source: HostError) -> ReconcileError {
    ReconcileError::Host { host: host.to_string(), source }
}

pub(super) fn proxy_error(host: &str, source: ProxyError) -> ReconcileError {
    match source {
        ProxyError::Unreachable(e) if e.is_unreachable() => host_error(host, e),
        source => ReconcileError::Proxy { host: host.to_string(), source },
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
