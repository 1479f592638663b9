//! The JSON request body extractor: size-limited, and its rejections answered as `ErrorBody`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use ballast_specs::Problem;

/// A JSON body. Malformed JSON is 400; JSON of the wrong shape (unknown field, bad quantity) is 422 `invalid`;
/// more than [`super::error::BODY_LIMIT`] bytes is 413. The content type is not checked.
pub struct JsonBody<T>(pub T);

/// Like [`JsonBody`], but an empty body gives `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read(request, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::BadRequest("a JSON body is required".to_string()));
        }
        decode(&bytes).map(JsonBody)
    }
}

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        decode(&bytes).map(OptionalJsonBody)
    }
}

async fn read<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {}", rejection.body_text()))
        }
    })
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|err| match err.classify() {
        serde_json::error::Category::Data => ApiError::invalid(vec![Problem::new("", err.to_string())]),
        _ => ApiError::BadRequest(format!("the body is not valid JSON: {err}")),
    })
}
