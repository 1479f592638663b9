//! Handlers for a role's rollout: revisions, undo, and the control switches (pause, resume, restart, retry).

use axum::extract::{Path, State};
use axum::{Extension, Json};
use ballast_specs::wire::{Event, List, RoleRevision, RoleView, UndoRequest};
use ballast_specs::RoleControl;

use super::body::OptionalJsonBody;
use super::error::ApiError;
use super::objects::{find_role, role_view};
use super::AppState;
use crate::store::{Actor, SpecStore};

pub async fn revisions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<List<RoleRevision>>, ApiError> {
    find_role(state.store.as_ref(), &name).await?;
    let items = state.store.history(&name).await?;
    Ok(Json(List { items }))
}

/// `POST /api/v1/roles/{name}/undo`: stores an earlier spec as a new generation.
/// Without `toRevision`, the newest revision whose spec differs from the current one.
pub async fn undo(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    OptionalJsonBody(request): OptionalJsonBody<UndoRequest>,
) -> Result<Json<RoleView>, ApiError> {
    let store = state.store.as_ref();
    let mut role = find_role(store, &name).await?;
    let history = store.history(&name).await?;
    let target =
        match request.to_revision {
            Some(wanted) => history.iter().find(|r| r.revision == wanted).ok_or_else(|| {
                let kept: Vec<String> = history.iter().map(|r| r.revision.to_string()).collect();
                ApiError::NotFound(format!(
                    "role {name:?} has no revision {wanted} (kept: {})",
                    if kept.is_empty() { "none".to_string() } else { kept.join(", ") }
                ))
            })?,
            None => history.iter().rev().find(|r| r.spec != role.spec).ok_or_else(|| {
                ApiError::NotFound(format!("role {name:?} has no earlier revision to undo to"))
            })?,
        };
    if target.spec == role.spec {
        // Already the current spec: nothing to store.
        return Ok(Json(role_view(store, role).await?));
    }
    role.spec = target.spec.clone();
    let stored = store.update_role(role, &actor).await?;
    Ok(Json(role_view(store, stored).await?))
}

pub async fn pause(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<RoleView>, ApiError> {
    change_control(state.store.as_ref(), &name, &actor, ControlChange::Pause).await.map(Json)
}

pub async fn resume(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<RoleView>, ApiError> {
    change_control(state.store.as_ref(), &name, &actor, ControlChange::Resume).await.map(Json)
}

pub async fn restart(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<RoleView>, ApiError> {
    change_control(state.store.as_ref(), &name, &actor, ControlChange::Restart).await.map(Json)
}

pub async fn retry(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<RoleView>, ApiError> {
    change_control(state.store.as_ref(), &name, &actor, ControlChange::Retry).await.map(Json)
}

/// A user's change of a role's control switches.
#[derive(Clone, Copy, Debug)]
enum ControlChange {
    Pause,
    Resume,
    Restart,
    Retry,
}

impl ControlChange {
    fn apply(self, control: &mut RoleControl) {
        match self {
            ControlChange::Pause => control.paused = true,
            ControlChange::Resume => control.paused = false,
            ControlChange::Restart => control.restart += 1,
            ControlChange::Retry => control.retry += 1,
        }
    }

    /// The event's `reason`.
    fn reason(self) -> &'static str {
        match self {
            ControlChange::Pause => "Paused",
            ControlChange::Resume => "Resumed",
            ControlChange::Restart => "RestartRequested",
            ControlChange::Retry => "RetryRequested",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ControlChange::Pause => "paused",
            ControlChange::Resume => "resumed",
            ControlChange::Restart => "restart requested",
            ControlChange::Retry => "retry requested",
        }
    }
}

/// Reads, changes and writes a role's control switches, then records an event naming the actor.
/// Not a compare-and-swap: two restarts at the same instant may count as one.
async fn change_control(
    store: &dyn SpecStore,
    name: &str,
    actor: &Actor,
    change: ControlChange,
) -> Result<RoleView, ApiError> {
    let role = find_role(store, name).await?;
    let mut control = store.get_control(name).await?;
    change.apply(&mut control);
    store.put_control(name, &control).await?;
    let event = Event {
        time: chrono::Utc::now(),
        role: Some(name.to_string()),
        host: None,
        reason: change.reason().to_string(),
        message: format!("{} by {}", change.describe(), actor.0),
        actor: Some(actor.0.clone()),
    };
    if let Err(err) = store.add_event(&event).await {
        // The change is made; a lost event must not turn it into an error.
        tracing::warn!(role = name, reason = change.reason(), %err, "cannot record event");
    }
    Ok(RoleView { role, control })
}
