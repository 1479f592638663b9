//! The HTTP API: `/up`, `/metrics` and the JSON API under `/api/v1/`. Handlers only translate.
//!
//! [`router`] is the one entry point, used by `ballastd` and by the tests; [`serve::serve`] serves it (TLS, the
//! connection cap, the header timeout). Routes, bodies and status codes are listed in docs/reference.md
//! ("HTTP API"); every error answer is an `ErrorBody`.
//!
//! In this order: the browser checks (`browser`: Host, Origin, fetch metadata, content type) on every request
//! (unknown routes included), then on every route the token (`auth`), the request timeout (`limits`), and for
//! `/plan`, logs and exec the cap on heavy requests. `GET /up` has none of them.

pub mod auth;
mod body;
pub mod browser;
mod containers;
pub mod error;
pub mod limits;
mod objects;
mod observe;
mod rollout;
pub mod serve;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ballast_specs::wire::UnitPlan;
use futures::stream::BoxStream;
use prometheus_client::registry::Registry;

pub use auth::{Access, Auth, TokenFileError};
pub use browser::{ApiName, ApiNames};
pub use error::{ApiError, BODY_LIMIT};
pub use limits::Limits;

use crate::hosts::{ExecOutput, HostError, LogLine};
use crate::store::{SpecStore, StoreError};

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn SpecStore>,
    pub auth: Arc<Auth>,
    /// Answers `GET /api/v1/plan`; `None` until the operator provides a planner (the route then answers 501).
    pub plans: Option<Arc<dyn Plans>>,
    /// Rendered by `GET /metrics`.
    pub metrics: Arc<Registry>,
    /// Serves `logs` and `exec` of a role's containers; `None` until the operator provides its host clients
    /// (the routes then answer 501).
    pub hosts: Option<Arc<dyn Containers>>,
    /// The names the API answers to (the `Host` check).
    pub names: Arc<ApiNames>,
    /// The request timeout and the cap on heavy requests.
    pub limits: Arc<Limits>,
}

/// What the operator would do right now, for every unit or for one role's units.
#[async_trait]
pub trait Plans: Send + Sync + 'static {
    /// `role: None` means every role. An unknown role gives `NotFound`.
    async fn plan(&self, role: Option<&str>) -> Result<Vec<UnitPlan>, StoreError>;
}

/// A role's containers on its hosts, for people: their logs, and commands run in them.
#[async_trait]
pub trait Containers: Send + Sync + 'static {
    /// The log of the role's container on `host` (see [`crate::hosts::DockerHost::logs`]): the running one,
    /// else the newest one there is.
    async fn logs(
        &self,
        role: &str,
        host: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> Result<BoxStream<'static, Result<LogLine, HostError>>, ContainerError>;

    /// Runs `command` in the role's running container on `host` (see [`crate::hosts::DockerHost::exec`]).
    async fn exec(&self, role: &str, host: &str, command: &[String]) -> Result<ExecOutput, ContainerError>;
}

/// Why a role's container cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The role has no container (or none running, for exec) on the host: 409.
    #[error("{0}")]
    NoContainer(String),
    /// The host is not (any more) in the spec: 404.
    #[error("host {0:?} not found")]
    UnknownHost(String),
    /// The host failed: 503 when it cannot be reached, 409 when the container went away, else 502.
    #[error("host {host}: {error}")]
    Host { host: String, error: HostError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppState {
    /// A state with no planner, no host access, an empty metrics registry, the default limits, and the names
    /// of an API listening on 127.0.0.1:7373.
    pub fn new(store: Arc<dyn SpecStore>, auth: Auth) -> AppState {
        AppState {
            store,
            auth: Arc::new(auth),
            plans: None,
            metrics: Arc::new(Registry::default()),
            hosts: None,
            names: Arc::new(ApiNames::new(SocketAddr::from(([127, 0, 0, 1], 7373)), Vec::new())),
            limits: Arc::new(Limits::default()),
        }
    }
}

/// The whole HTTP surface of `ballastd`.
pub fn router(state: AppState) -> Router {
    let heavy = || middleware::from_fn_with_state(state.clone(), limits::heavy);
    let guarded = Router::new()
        .route("/api/v1/apply", post(objects::apply))
        .route("/api/v1/set-image", post(objects::set_image))
        .route("/api/v1/hosts", get(objects::list_hosts))
        .route("/api/v1/hosts/{name}", get(objects::get_host).delete(objects::delete_host))
        .route("/api/v1/roles", get(objects::list_roles))
        .route(
            "/api/v1/roles/{name}",
            get(objects::get_role).put(objects::put_role).delete(objects::delete_role),
        )
        .route("/api/v1/roles/{name}/revisions", get(rollout::revisions))
        .route("/api/v1/roles/{name}/undo", post(rollout::undo))
        .route("/api/v1/roles/{name}/pause", post(rollout::pause))
        .route("/api/v1/roles/{name}/resume", post(rollout::resume))
        .route("/api/v1/roles/{name}/restart", post(rollout::restart))
        .route("/api/v1/roles/{name}/retry", post(rollout::retry))
        .route("/api/v1/status", get(observe::status))
        .route("/api/v1/plan", get(observe::plan).route_layer(heavy()))
        .route("/api/v1/events", get(observe::events))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), limits::deadline))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    // Container output may hold secrets: a write token even for the GET.
    let sensitive = Router::new()
        .route(
            "/api/v1/roles/{name}/logs",
            get(containers::logs)
                .route_layer(heavy())
                .route_layer(middleware::from_fn_with_state(state.clone(), limits::deadline)),
        )
        .route(
            "/api/v1/roles/{name}/exec",
            post(containers::exec)
                .route_layer(heavy())
                .route_layer(middleware::from_fn_with_state(state.clone(), limits::exec_deadline)),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_write_token));
    Router::new()
        .route("/up", get(up))
        .merge(guarded)
        .merge(sensitive)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Around everything, unknown routes and methods included (a CORS preflight's OPTIONS); not `/up`.
        .layer(middleware::from_fn_with_state(state.clone(), browser::refuse_browsers))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn up() -> &'static str {
    "ok"
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.metrics).map_err(|err| {
        tracing::error!(%err, "cannot encode metrics");
        ApiError::Internal
    })?;
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such API route".to_string())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, %path, status, millis, "request failed");
    } else {
        tracing::debug!(%method, %path, status, millis, "request");
    }
    response
}

#[cfg(test)]
mod tests;
