//! The unit loop: the reconcile of one (role, host) unit. Observe (one list), plan, report the status if it
//! changed, execute, and again until the plan is empty, at most `max_passes` times.
//!
//! Replacing a container holds a slot of the role's rollout group, so at most the group's budget of its units
//! (`maxUnavailable`, one by default) are replaced at once; creating a missing container does not wait for one.

use ballast_specs::wire::{FailedRollout, UnitState};
use ballast_specs::Role;

use super::execute::execute;
use super::host_pass::containers_of;
use super::status::Outcome;
use super::{proxy, switch, Context, ExecError, ReconcileError, Specs, Unit};
use crate::hosts::HostError;
use crate::plan::{self, drift_kind, Action};
use crate::store::StoreError;

/// Reconciles one unit until its plan is empty (or it fails, halts, or runs out of passes).
pub async fn reconcile(ctx: &Context, specs: &Specs, unit: &Unit) -> Result<UnitState, ReconcileError> {
    if proxy::is_proxy(unit) {
        // Boxed, as the executor below: a unit's future is as large as its largest step.
        return Box::pin(proxy::reconcile(ctx, specs, &unit.host)).await;
    }
    let Some(host) = specs.host(&unit.host) else {
        // The host is gone from the spec: it cannot be reached any more; forget the unit.
        ctx.forget(unit).await?;
        return Ok(UnitState::Converged);
    };
    let client = ctx.hosts.client(host);
    ctx.note_specs(specs.snapshot());
    let role = specs.desired_role(unit);
    if let Some(role) = role {
        ctx.note_generation(role);
    }
    let control = role.map(|r| specs.control(&r.metadata.name)).unwrap_or_default();
    let secrets = match role {
        Some(role) => match ctx.secrets_of(role).await {
            Ok(s) => s,
            Err(e) => {
                report_error(ctx, unit, role, &e.to_string()).await?;
                return Err(e);
            }
        },
        None => None,
    };
    let mut rollout_slot = None;

    let mut passes = 0;
    while passes < ctx.config.max_passes {
        passes += 1;
        let listing = match client.list().await {
            Ok(listing) => listing,
            Err(e) => return Err(unreachable(ctx, unit, role, e).await),
        };
        let observed = containers_of(&listing, unit);
        let Some(role) = role else {
            let plan = plan::plan(None, &observed);
            if plan.actions.is_empty() {
                ctx.forget(unit).await?;
                return Ok(UnitState::Converged);
            }
            for action in &plan.actions {
                ctx.ensure_leading()?;
                // Boxed: a unit's future is as large as its largest step, and a rollout's is large, while every
                // unit of a group may be waiting for a slot at once.
                match Box::pin(execute(ctx, &*client, unit, None, &control, None, action)).await {
                    Ok(()) => count_drift(ctx, action, plan.state),
                    Err(ExecError::Failed(_)) => {}
                    Err(ExecError::Reconcile(e)) => return Err(e),
                }
            }
            continue;
        };
        let mut desired = ctx.desired(role, unit, &control, secrets.as_ref());
        if let Some(proxied) = &mut desired.proxy {
            proxied.routed =
                Box::pin(switch::routed(&*client, &ctx.config.proxy, &listing, &unit.host, role, &observed))
                    .await;
        }
        let plan = plan::plan(Some(&desired), &observed);
        if plan.actions.is_empty() {
            let status = ctx.settled_status(unit, role, &control, &desired.hash, &plan, &observed);
            ctx.report(unit, status).await?;
            ctx.check_converged(role);
            return Ok(plan.state);
        }
        // Replacing a container holds a slot of the role's rollout group: at most the group's budget of units
        // are replaced at once. Creating a missing one does not: nothing there is serving to protect, and a
        // container removed on one host must not wait for another host's rollout (up to its deployTimeout).
        let rolls = plan.actions.iter().any(|a| {
            matches!(
                a,
                Action::Deploy { old: Some(_), .. }
                    | Action::Finish { .. }
                    | Action::Launch { beside: Some(_), .. }
                    | Action::Verify { .. }
                    | Action::Retire { .. }
            )
        });
        if rolls && rollout_slot.is_none() {
            // A unit of the group may have failed its rollout while we waited: look again holding the slot. A
            // poke (something new seen for this unit) looks again without it. Waiting is not a pass, and keeps
            // nothing of this one: every unit of a group may be waiting at once.
            drop((listing, observed, desired, plan));
            let poked = ctx.memory.pokes_of(unit);
            tokio::select! {
                slot = ctx.memory.rollout_slot(role) => rollout_slot = Some(slot),
                () = poked.notified() => {}
            }
            passes -= 1;
            continue;
        }
        ctx.report(unit, ctx.next_status(unit, role, Outcome::Acting { plan: &plan })).await?;
        for action in &plan.actions {
            ctx.ensure_leading()?;
            // Boxed, as above: a unit's future is as large as its largest step, and a rollout's is large.
            match Box::pin(execute(ctx, &*client, unit, Some(role), &control, secrets.as_ref(), action)).await
            {
                Ok(()) => count_drift(ctx, action, plan.state),
                Err(ExecError::Failed(reason)) => {
                    let failed = FailedRollout {
                        hash: desired.hash.clone(),
                        retry: control.retry,
                        generation: role.metadata.generation,
                    };
                    let outcome = Outcome::RolloutFailed { reason: &reason, failed: &failed };
                    ctx.report(unit, ctx.next_status(unit, role, outcome)).await?;
                    ctx.event(
                        unit,
                        "RolloutFailed",
                        format!("rollout of {} on {} stopped: {reason}", unit.role, unit.host),
                    )
                    .await;
                    return Ok(UnitState::Failed);
                }
                Err(ExecError::Reconcile(e)) => {
                    if e.is_unreachable() {
                        let ReconcileError::Host { source, .. } = e else { unreachable!() };
                        return Err(unreachable(ctx, unit, Some(role), source).await);
                    }
                    report_error(ctx, unit, role, &e.to_string()).await?;
                    return Err(e);
                }
            }
        }
    }
    Err(ReconcileError::NotSettled(ctx.config.max_passes))
}

/// Counts a drift correction when `action` (done) corrected one; see [`drift_kind`].
fn count_drift(ctx: &Context, action: &Action, state: UnitState) {
    if let Some(kind) = drift_kind(action, state) {
        ctx.metrics().drift_corrected(kind);
    }
}

/// Records that the unit's host is unreachable, and returns the error.
async fn unreachable(ctx: &Context, unit: &Unit, role: Option<&Role>, e: HostError) -> ReconcileError {
    ctx.metrics().host_seen(&unit.host, false);
    if let Some(role) = role {
        let message = e.to_string();
        if ctx.status(unit).map(|s| s.state) != Some(UnitState::Unreachable) {
            ctx.event(unit, "HostUnreachable", format!("{} unreachable: {message}", unit.host)).await;
        }
        let status = ctx.next_status(unit, role, Outcome::Unreachable { message: &message });
        if let Err(store) = ctx.report(unit, status).await {
            tracing::warn!(error = %store, "could not store status");
        }
    }
    ReconcileError::Host { host: unit.host.clone(), source: e }
}

/// Records that the reconcile failed (`Degraded`, with the reason), with an event when the reason is new.
async fn report_error(ctx: &Context, unit: &Unit, role: &Role, message: &str) -> Result<(), StoreError> {
    let was = ctx.status(unit).map(|s| (s.state, s.message));
    if was.as_ref().map(|(s, m)| (*s, m.as_str())) != Some((UnitState::Degraded, message)) {
        ctx.event(unit, "ReconcileError", format!("{} on {}: {message}", unit.role, unit.host)).await;
    }
    ctx.report(unit, ctx.next_status(unit, role, Outcome::Error { message })).await
}
