//! API errors: each maps to one status code and an `ErrorBody`; internals are logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ballast_specs::wire::{ApiError as WireError, ErrorBody};
use ballast_specs::Problem;

use crate::store::StoreError;

/// The largest request body the API reads.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Everything a handler can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or a query parameter is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or one the server does not know.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a read-only token on a mutating call, or a request sent by a web page.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 421: the `Host` names something else than this API (a DNS-rebinding page, a misrouted request).
    #[error("{0}")]
    Misdirected(String),
    /// 409: a stale revision, or a host still in use.
    #[error("{0}")]
    Conflict(String),
    /// 413: more than [`BODY_LIMIT`] bytes.
    #[error("request body is larger than the limit of {} MiB", BODY_LIMIT / (1024 * 1024))]
    TooLarge,
    /// 415: a write whose body is not declared `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: every problem found; nothing was stored.
    #[error("{message}")]
    Invalid { message: String, problems: Vec<Problem> },
    /// 502: a host's Docker engine answered with an error (the message names the host).
    #[error("{0}")]
    HostFailed(String),
    /// 503: a host cannot be reached, refused its key or did not answer in time (the message names the host).
    #[error("{0}")]
    HostUnavailable(String),
    /// 501: the operator does not offer this yet.
    #[error("{0}")]
    NotImplemented(String),
    /// 503: too many heavy requests (plan, logs, exec) at once, or too many connections.
    #[error("{0}")]
    Busy(String),
    /// 503: the request did not finish within the request timeout.
    #[error("{0}")]
    Timeout(String),
    /// 503: etcd is down. The cause is logged, not sent.
    #[error("the store is unavailable: etcd cannot be reached or did not answer in time")]
    Unavailable,
    /// 500. The cause is logged, not sent.
    #[error("internal error (see the ballastd log)")]
    Internal,
}

impl ApiError {
    /// 422 with the given problems.
    pub fn invalid(problems: Vec<Problem>) -> ApiError {
        let message = match problems.len() {
            1 => "1 problem found, nothing was stored".to_string(),
            n => format!("{n} problems found, nothing was stored"),
        };
        ApiError::Invalid { message, problems }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::HostFailed(_) => StatusCode::BAD_GATEWAY,
            ApiError::HostUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Busy(_) | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `error.code` of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Misdirected(_) => "misdirected",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Invalid { .. } => "invalid",
            ApiError::HostFailed(_) => "host_failed",
            ApiError::HostUnavailable(_) => "host_unavailable",
            ApiError::NotImplemented(_) => "not_implemented",
            ApiError::Busy(_) => "busy",
            ApiError::Timeout(_) => "timeout",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::NotFound { kind, name } => ApiError::NotFound(format!("{kind} {name:?} not found")),
            StoreError::Invalid(problems) => ApiError::invalid(problems),
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "store unavailable");
                ApiError::Unavailable
            }
            StoreError::Internal(cause) | StoreError::NotLeader(cause) => {
                tracing::error!(%cause, "store error");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code().to_string();
        let message = self.to_string();
        let problems = match self {
            ApiError::Invalid { problems, .. } => problems,
            _ => Vec::new(),
        };
        let body = ErrorBody { error: WireError { code, message, problems } };
        (status, Json(body)).into_response()
    }
}
