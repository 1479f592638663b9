//! The host pass: list a host once and pick the units that need a reconcile (a plan with actions, or a stored
//! status that no longer matches what is seen). A converged host costs one list call and no etcd write.
//! Also what the unit loop and the preview share: a unit's containers among a host's listing.

use super::{proxy, Context, ReconcileError, Specs, Unit};
use crate::hosts::Container;
use crate::labels;
use crate::plan::{self, Plan};

/// Lists a host once and returns the units that need a reconcile: a non-empty plan, or a stored status
/// that no longer matches what is observed. Converged units cost nothing more than the one list call.
pub async fn host_pass(ctx: &Context, specs: &Specs, host: &str) -> Result<Vec<Unit>, ReconcileError> {
    let Some(spec) = specs.host(host) else { return Ok(Vec::new()) };
    let listing = ctx
        .hosts
        .client(spec)
        .list()
        .await
        .map_err(|source| ReconcileError::Host { host: host.to_string(), source })?;
    let mut out = Vec::new();
    for unit in units_on_host(specs, host, &listing) {
        if needs_reconcile(ctx, specs, &unit, &listing).await.unwrap_or(true) {
            out.push(unit);
        }
    }
    Ok(out)
}

async fn needs_reconcile(
    ctx: &Context,
    specs: &Specs,
    unit: &Unit,
    listing: &[Container],
) -> Result<bool, ReconcileError> {
    if proxy::is_proxy(unit) {
        // Boxed: the proxy's plan reads the proxy, a large future that every host pass would carry.
        return Ok(Box::pin(proxy::needs_reconcile(ctx, specs, &unit.host, listing)).await);
    }
    let observed = containers_of(listing, unit);
    let Some(role) = specs.desired_role(unit) else {
        let plan = plan::plan(None, &observed);
        return Ok(!plan.actions.is_empty() || ctx.status(unit).is_some());
    };
    let control = specs.control(&role.metadata.name);
    let secrets = ctx.secrets_of(role).await?;
    let desired = ctx.desired(role, unit, &control, secrets.as_ref());
    let plan: Plan = plan::plan(Some(&desired), &observed);
    if !plan.actions.is_empty() {
        return Ok(true);
    }
    let expected = ctx.settled_status(unit, role, &control, &desired.hash, &plan, &observed);
    Ok(ctx.status(unit).is_none_or(|stored| stored != expected))
}

/// The containers of one unit among a host's listing: labelled with the role and this host.
pub fn containers_of(listing: &[Container], unit: &Unit) -> Vec<Container> {
    listing
        .iter()
        .filter(|c| {
            c.labels.get(labels::ROLE) == Some(&unit.role) && c.labels.get(labels::HOST) == Some(&unit.host)
        })
        .cloned()
        .collect()
}

/// Every unit on `host` that is desired, or that has containers there: roles deleted or moved away leave
/// containers behind, and those units must be reconciled (to remove them) too. The host's proxy is a unit too
/// (`ballast.proxy`), desired while a role on the host is proxied.
pub fn units_on_host(specs: &Specs, host: &str, listing: &[Container]) -> Vec<Unit> {
    let mut units: Vec<Unit> = specs
        .roles_on(host)
        .map(|r| Unit { role: r.metadata.name.clone(), host: host.to_string() })
        .collect();
    units.extend(proxy::unit_of(specs, host));
    for c in listing {
        if let (Some(role), Some(h)) = (c.labels.get(labels::ROLE), c.labels.get(labels::HOST)) {
            let unit = Unit { role: role.clone(), host: h.clone() };
            if h == host && !units.contains(&unit) {
                units.push(unit);
            }
        }
    }
    units.sort();
    units
}
