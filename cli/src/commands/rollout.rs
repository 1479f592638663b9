//! `rollout history|undo|restart|retry`, `pause` and `resume`.

use ballast_specs::wire::{List, RoleRevision, RoleView, UndoRequest};

use super::{fetch_role, role_path, Context};
use crate::error::Result;
use crate::render::{or_dash, print_data, table, timestamp};

/// A change of a role's control switches.
#[derive(Clone, Copy, Debug)]
pub enum Control {
    Pause,
    Resume,
    Restart,
    Retry,
}

pub async fn history(cx: &Context, role: &str) -> Result<()> {
    let view = fetch_role(cx, role).await?;
    let list: List<RoleRevision> = cx.client.get(&format!("{}/revisions", role_path(role))).await?;
    if print_data(cx.output, &list)? {
        return Ok(());
    }
    let current = view.role.metadata.generation;
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|r| {
            let revision = if r.revision == current {
                format!("{} (current)", r.revision)
            } else {
                r.revision.to_string()
            };
            vec![
                revision,
                timestamp(r.created),
                or_dash(r.actor.clone()),
                r.spec.image.clone(),
                r.spec.resources.cpus.map(|c| c.to_string()).unwrap_or_else(|| "-".to_string()),
                r.spec.resources.memory.as_ref().map(|m| m.to_string()).unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    print!("{}", table(&["REVISION", "CREATED", "ACTOR", "IMAGE", "CPUS", "MEMORY"], &rows));
    Ok(())
}

pub async fn undo(cx: &Context, role: &str, to_revision: Option<u64>) -> Result<()> {
    let before = fetch_role(cx, role).await?;
    let request = UndoRequest { to_revision };
    let after: RoleView = cx.client.post(&format!("{}/undo", role_path(role)), &request).await?;
    if print_data(cx.output, &after)? {
        return Ok(());
    }
    let generation = after.role.metadata.generation;
    match to_revision {
        _ if generation == before.role.metadata.generation => {
            println!("role/{role} unchanged: that revision is already the current spec")
        }
        Some(revision) => {
            println!("role/{role} rolled back to revision {revision} (generation {generation})")
        }
        None => println!("role/{role} rolled back (generation {generation})"),
    }
    Ok(())
}

pub async fn control(cx: &Context, role: &str, control: Control) -> Result<()> {
    let (action, done) = match control {
        Control::Pause => ("pause", "paused"),
        Control::Resume => ("resume", "resumed"),
        Control::Restart => ("restart", "restart requested"),
        Control::Retry => ("retry", "retry requested"),
    };
    let view: RoleView =
        cx.client.post(&format!("{}/{action}", role_path(role)), &serde_json::json!({})).await?;
    if !print_data(cx.output, &view)? {
        println!("role/{role} {done}");
    }
    Ok(())
}
