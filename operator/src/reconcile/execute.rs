//! The executor: performs one planned action on a host and records its event. It decides nothing; a
//! rollout that cannot be made healthy comes back as `Failed`, anything else the host did as an error.

use ballast_specs::{Role, RoleControl};
use tokio::time::Instant;

use super::{short, switch, Context, ExecError, ReconcileError, Unit};
use crate::aws::ResolvedSecrets;
use crate::desired;
use crate::hosts::{DockerHost, HostError};
use crate::plan::Action;
use crate::rollout::{self, RolloutError};

/// Performs one planned action and records its event.
pub(super) async fn execute(
    ctx: &Context,
    client: &dyn DockerHost,
    unit: &Unit,
    role: Option<&Role>,
    control: &RoleControl,
    secrets: Option<&ResolvedSecrets>,
    action: &Action,
) -> Result<(), ExecError> {
    let host_err =
        |source: HostError| ExecError::Reconcile(ReconcileError::Host { host: unit.host.clone(), source });
    let (u, h) = (&unit.role, &unit.host);
    match action {
        Action::Remove { id, reason } => {
            client.remove(id).await.map_err(host_err)?;
            ctx.event(unit, "Removed", format!("removed {u} container {} on {h}: {reason}", short(id))).await;
        }
        Action::Start { id, reason } => {
            match client.start(id).await {
                Ok(()) => {}
                // Removed under our feet (`docker rm -f` races with its own die event): the next pass recreates it.
                Err(HostError::NotFound(_)) => return Ok(()),
                Err(HostError::Docker { status: 409, message }) if message.contains("marked for removal") => {
                    return Ok(())
                }
                Err(e) => return Err(host_err(e)),
            }
            ctx.event(unit, "Started", format!("started {u} on {h}: {reason}")).await;
        }
        Action::UpdateResources { id, nano_cpus, memory, reason, event } => {
            client.update_resources(id, *nano_cpus, *memory).await.map_err(host_err)?;
            let what = if reason.starts_with("restore") { "ResourcesRestored" } else { "ResourcesUpdated" };
            ctx.event(unit, what, format!("{event}, in place: same container, no restart")).await;
        }
        Action::Deploy { old, reason } => {
            let Some(role) = role else { return Ok(()) };
            let suffix = hex::encode(rand::random::<[u8; 3]>());
            let config = desired::container_config(role, h, control, secrets, &suffix);
            let started = Instant::now();
            match rollout::deploy(&ctx.rollout_env(), client, role, config, old.as_deref()).await {
                Ok(id) => {
                    let (what, msg) = match old {
                        Some(_) => ("Replaced", format!("recreated {u} on {h}: {reason}")),
                        None => ("Created", format!("created {u} on {h} ({})", role.spec.image)),
                    };
                    let ms = started.elapsed().as_millis();
                    ctx.event(unit, what, format!("{msg}; container {} healthy after {ms} ms", short(&id)))
                        .await;
                }
                Err(RolloutError::Failed(reason)) => return Err(ExecError::Failed(reason)),
                Err(RolloutError::Host(e)) => return Err(host_err(e)),
            }
        }
        Action::Launch { reason, .. } => {
            let Some(role) = role else { return Ok(()) };
            switch::launch(ctx, client, unit, role, control, secrets, reason).await?;
        }
        Action::Verify { id } => {
            let Some(role) = role else { return Ok(()) };
            switch::verify(ctx, client, unit, role, id).await?;
        }
        Action::Switch { from, to, .. } => {
            let Some(role) = role else { return Ok(()) };
            let target = switch::Target { to: to.as_deref(), from: from.as_deref() };
            switch::switch(ctx, client, unit, role, control, secrets, target).await?;
        }
        Action::Retire { id, drain } => {
            let Some(role) = role else { return Ok(()) };
            switch::retire(ctx, client, unit, role, id, *drain).await?;
        }
        Action::Finish { new, old } => {
            let Some(role) = role else { return Ok(()) };
            match rollout::finish(&ctx.rollout_env(), client, role, new, old).await {
                Ok(()) => {
                    ctx.event(unit, "Replaced", format!("finished the interrupted rollout of {u} on {h}"))
                        .await
                }
                Err(RolloutError::Failed(reason)) => return Err(ExecError::Failed(reason)),
                Err(RolloutError::Host(e)) => return Err(host_err(e)),
            }
        }
    }
    Ok(())
}
