//! Handlers for specs: apply, hosts and roles (get, list, replace, delete), the image of roles by selector.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use ballast_specs::wire::{ApplyRequest, ApplyResponse, List, RoleView, SetImageRequest};
use ballast_specs::{check_image, validate_object, validate_set, Object, Problem, Role, Selector};

use super::body::JsonBody;
use super::error::ApiError;
use super::AppState;
use crate::store::{Actor, SpecStore, StoreError};

/// `POST /api/v1/apply`: validates the whole set, then stores it in one transaction (or computes a dry run).
/// A problem's path starts with `objects[i]`, the index of its object in the request.
pub async fn apply(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    JsonBody(request): JsonBody<ApplyRequest>,
) -> Result<Json<ApplyResponse>, ApiError> {
    let (stored_hosts, stored_roles) = stored(state.store.as_ref()).await?;
    let mut problems = Vec::new();
    for (index, object) in request.objects.iter().enumerate() {
        problems.extend(validate_object(object).into_iter().map(|p| at_object(index, p)));
    }
    let set_problems = validate_set(&request.objects, &stored_hosts, &stored_roles);
    problems.extend(set_problems.into_iter().map(|(index, p)| at_object(index, p)));
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let objects = request.objects.into_iter().map(without_bookkeeping).collect();
    match state.store.apply(objects, request.dry_run, &actor).await {
        Ok(results) => Ok(Json(ApplyResponse { results })),
        // The store locates its problems by document = 1-based object index; the API says `objects[i]`.
        Err(StoreError::Invalid(problems)) => Err(ApiError::invalid(
            problems
                .into_iter()
                .map(|mut p| match p.document.take() {
                    Some(number) if p.file.is_none() && number > 0 => at_object(number - 1, p),
                    document => {
                        p.document = document;
                        p
                    }
                })
                .collect(),
        )),
        Err(err) => Err(err.into()),
    }
}

pub async fn list_hosts(State(state): State<AppState>) -> Result<Json<List<Object>>, ApiError> {
    let mut hosts = state.store.snapshot().await?.hosts;
    hosts.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(Json(List { items: hosts.into_iter().map(Object::Host).collect() }))
}

pub async fn get_host(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Object>, ApiError> {
    match state.store.get_host(&name).await? {
        Some(host) => Ok(Json(Object::Host(host))),
        None => Err(ApiError::NotFound(format!("host {name:?} not found"))),
    }
}

pub async fn delete_host(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_host(&name, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_roles(State(state): State<AppState>) -> Result<Json<List<RoleView>>, ApiError> {
    let snapshot = state.store.snapshot().await?;
    let mut items: Vec<RoleView> = snapshot
        .roles
        .into_iter()
        .map(|role| {
            let control = snapshot
                .controls
                .iter()
                .find(|(name, _)| *name == role.metadata.name)
                .map(|(_, control)| control.clone())
                .unwrap_or_default();
            RoleView { role, control }
        })
        .collect();
    items.sort_by(|a, b| a.role.metadata.name.cmp(&b.role.metadata.name));
    Ok(Json(List { items }))
}

pub async fn get_role(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<RoleView>, ApiError> {
    let role = find_role(state.store.as_ref(), &name).await?;
    Ok(Json(role_view(state.store.as_ref(), role).await?))
}

/// `PUT /api/v1/roles/{name}`: a compare-and-swap replace; `metadata.revision` must be the stored one.
pub async fn put_role(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    JsonBody(object): JsonBody<Object>,
) -> Result<Json<RoleView>, ApiError> {
    let mut problems = validate_object(&object);
    if object.name() != name {
        problems.push(Problem::new(
            "metadata.name",
            format!("{:?} does not match the role named in the URL, {name:?}", object.name()),
        ));
    }
    if object.metadata().revision == 0 {
        problems.push(Problem::new(
            "metadata.revision",
            "is required: the revision the change was based on (compare-and-swap)",
        ));
    }
    let role = match object {
        Object::Role(role) => Some(role),
        Object::Host(_) => {
            problems.push(Problem::new("kind", "must be Role"));
            None
        }
    };
    if let Some(role) = &role {
        let (stored_hosts, stored_roles) = stored(state.store.as_ref()).await?;
        let single = [Object::Role(role.clone())];
        problems.extend(validate_set(&single, &stored_hosts, &stored_roles).into_iter().map(|(_, p)| p));
    }
    let Some(mut role) = role.filter(|_| problems.is_empty()) else {
        return Err(ApiError::invalid(problems));
    };
    role.metadata.generation = 0;
    role.metadata.creation_timestamp = None;
    let stored = state.store.update_role(role, &actor).await?;
    Ok(Json(role_view(state.store.as_ref(), stored).await?))
}

/// `POST /api/v1/set-image`: the image of every role whose labels match the selector, in one transaction; 404
/// when no role matches, 422 for a bad selector or image. Nothing is stored unless every role is.
pub async fn set_image(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    JsonBody(request): JsonBody<SetImageRequest>,
) -> Result<Json<ApplyResponse>, ApiError> {
    let mut problems = Vec::new();
    let selector = Selector::parse(&request.selector)
        .map_err(|message| problems.push(Problem::new("selector", message)))
        .ok();
    if let Err(message) = check_image(&request.image) {
        problems.push(Problem::new("image", message));
    }
    let Some(selector) = selector.filter(|_| problems.is_empty()) else {
        return Err(ApiError::invalid(problems));
    };
    let results = state.store.set_image(&selector, &request.image, &actor).await?;
    Ok(Json(ApplyResponse { results }))
}

pub async fn delete_role(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_role(&name, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The stored role, or 404.
pub(super) async fn find_role(store: &dyn SpecStore, name: &str) -> Result<Role, ApiError> {
    store.get_role(name).await?.ok_or_else(|| ApiError::NotFound(format!("role {name:?} not found")))
}

/// The role with its control switches.
pub(super) async fn role_view(store: &dyn SpecStore, role: Role) -> Result<RoleView, ApiError> {
    let control = store.get_control(&role.metadata.name).await?;
    Ok(RoleView { role, control })
}

/// The names of the stored hosts, and the stored roles: what a set is validated against.
async fn stored(store: &dyn SpecStore) -> Result<(Vec<String>, Vec<Role>), ApiError> {
    let snapshot = store.snapshot().await?;
    Ok((snapshot.hosts.into_iter().map(|h| h.metadata.name).collect(), snapshot.roles))
}

/// A problem of the request's object `index`, its path prefixed with `objects[index]`.
fn at_object(index: usize, mut problem: Problem) -> Problem {
    problem.path = if problem.path.is_empty() {
        format!("objects[{index}]")
    } else {
        format!("objects[{index}].{}", problem.path)
    };
    problem
}

/// Generation, revision and creation time are the store's to set.
fn without_bookkeeping(mut object: Object) -> Object {
    let metadata = object.metadata_mut();
    metadata.generation = 0;
    metadata.revision = 0;
    metadata.creation_timestamp = None;
    object
}
