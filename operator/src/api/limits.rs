//! The API's limits on requests: a deadline for each request ([`deadline`]), and a cap on the heavy ones, `/plan`,
//! logs and exec, that reach hosts ([`heavy`]).
//!
//! - A request must be answered (its status and headers) within `--request-timeout`, reading its body included,
//!   else 503 `timeout`. A streamed answer (`logs -f`) is not limited once it has begun. `exec` waits for a
//!   command of up to 10 minutes (the hosts' own bound), so it gets that much more ([`exec_deadline`]).
//! - At most `--max-heavy-requests` heavy requests run at once; past it they are answered 503 `busy` at once.
//!   A streamed answer keeps its place until it ends.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::AppState;

/// How long `exec` may wait for its command beyond the request timeout: the hosts' bound on a command.
pub const EXEC_ALLOWANCE: Duration = Duration::from_secs(10 * 60);

/// The request timeout and the cap on heavy requests.
#[derive(Debug)]
pub struct Limits {
    request_timeout: Duration,
    heavy: Arc<Semaphore>,
    max_heavy: usize,
}

impl Limits {
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_HEAVY: usize = 32;

    pub fn new(request_timeout: Duration, max_heavy: usize) -> Limits {
        Limits { request_timeout, heavy: Arc::new(Semaphore::new(max_heavy)), max_heavy }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new(Limits::DEFAULT_REQUEST_TIMEOUT, Limits::DEFAULT_MAX_HEAVY)
    }
}

/// Middleware: the request timeout.
pub async fn deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.limits.request_timeout;
    within(limit, limit, request, next).await
}

/// Middleware: the request timeout plus [`EXEC_ALLOWANCE`], for `exec`.
pub async fn exec_deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.limits.request_timeout;
    within(limit + EXEC_ALLOWANCE, limit, request, next).await
}

/// Middleware: a place among the heavy requests, held until the answer's body ends; 503 `busy` when none is free.
pub async fn heavy(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limits = &state.limits;
    let Ok(permit) = limits.heavy.clone().try_acquire_owned() else {
        let path = request.uri().path().to_string();
        tracing::warn!(%path, max = limits.max_heavy, "heavy request refused: too many at once");
        return ApiError::Busy(format!(
            "ballastd is busy: {} heavy requests (plan, logs, exec) run already (--max-heavy-requests); \
             try again shortly",
            limits.max_heavy
        ))
        .into_response();
    };
    let response = next.run(request).await;
    if response.body().size_hint().exact().is_some() {
        // Answered in full: the place is free again.
        return response;
    }
    // A stream (logs): the place is held until its end, or until the client leaves.
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &permit;
            chunk
        }))
    })
}

async fn within(limit: Duration, shown: Duration, request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%method, %path, after = ?limit, "request timed out");
            ApiError::Timeout(format!(
                "the request did not finish within {shown:?} (ballastd --request-timeout{}); a change it asked for \
                 may or may not have been made",
                if limit == shown { "" } else { ", plus 10 minutes for exec" }
            ))
            .into_response()
        }
    }
}
