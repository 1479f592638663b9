//! Read-only handlers for what the operator sees and does: status, plan, events.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use ballast_specs::wire::{Event, List, UnitPlan, UnitStatus};
use serde::Deserialize;

use super::error::ApiError;
use super::AppState;

/// `?role=R`: only that role's entries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleFilter {
    pub role: Option<String>,
}

pub async fn status(
    State(state): State<AppState>,
    filter: Result<Query<RoleFilter>, QueryRejection>,
) -> Result<Json<List<UnitStatus>>, ApiError> {
    let role = role_filter(filter)?;
    let mut items = state.store.list_status().await?;
    items.retain(|s| role.as_deref().is_none_or(|r| s.role == r));
    items.sort_by(|a, b| (&a.role, &a.host).cmp(&(&b.role, &b.host)));
    Ok(Json(List { items }))
}

pub async fn plan(
    State(state): State<AppState>,
    filter: Result<Query<RoleFilter>, QueryRejection>,
) -> Result<Json<List<UnitPlan>>, ApiError> {
    let role = role_filter(filter)?;
    let Some(plans) = &state.plans else {
        return Err(ApiError::NotImplemented("this ballastd does not compute plans yet".to_string()));
    };
    let items = plans.plan(role.as_deref()).await?;
    Ok(Json(List { items }))
}

pub async fn events(
    State(state): State<AppState>,
    filter: Result<Query<RoleFilter>, QueryRejection>,
) -> Result<Json<List<Event>>, ApiError> {
    let role = role_filter(filter)?;
    let mut items = state.store.list_events().await?;
    items.retain(|e| role.is_none() || e.role == role);
    Ok(Json(List { items }))
}

fn role_filter(filter: Result<Query<RoleFilter>, QueryRejection>) -> Result<Option<String>, ApiError> {
    match filter {
        Ok(Query(filter)) => Ok(filter.role),
        Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
    }
}
