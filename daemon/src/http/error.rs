//! Errors as the reference's `Error` body (`error_code`, `message`,
//! `request_id`) with a 4xx/5xx status, and the extractors whose
//! rejections answer in that shape rather than axum's plain text.

use crate::api::ErrorCode;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// An error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Error {
    /// Stable, machine-readable (`UnknownSp`, `UpdateConflict`,
    /// `NotImplemented`, ...; docs/http-api.md lists them).
    #[serde(default)]
    pub error_code: String,
    pub message: String,
    /// This request's id, as in the daemon's log.
    pub request_id: String,
}

/// A failed request: its status, code and message. The request id is
/// filled in by the layer that numbers requests.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// From a socket handler's failure: the same code, spelt as HTTP
    /// clients expect, with the status it implies.
    pub fn from_failed((code, message): (ErrorCode, String)) -> Self {
        use ErrorCode as E;
        let status = match code {
            E::BadRequest | E::BadComponent | E::BadSlot | E::BadImage | E::BadPlan => {
                StatusCode::BAD_REQUEST
            }
            E::UnsupportedVersion => StatusCode::BAD_REQUEST,
            E::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            E::UnknownSp | E::UnknownUpdate | E::UnknownRollout | E::UnknownImage => {
                StatusCode::NOT_FOUND
            }
            E::ConsoleUnavailable => StatusCode::BAD_REQUEST,
            E::ConsoleHeld => StatusCode::CONFLICT,
            E::ImageUnreadable => StatusCode::BAD_REQUEST,
            E::UpdateConflict | E::UpdateRunning | E::AbortRefused | E::RolloutState => {
                StatusCode::CONFLICT
            }
            E::PermissionDenied => StatusCode::FORBIDDEN,
            E::SpError => StatusCode::BAD_GATEWAY,
            E::SpUnreachable => StatusCode::SERVICE_UNAVAILABLE,
            E::ShuttingDown | E::Busy => StatusCode::SERVICE_UNAVAILABLE,
            E::StateUnwritable | E::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
            code: pascal(code),
            message,
        }
    }
}

/// `update_conflict` → `UpdateConflict`.
fn pascal(code: ErrorCode) -> String {
    let snake = serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

impl From<(ErrorCode, String)> for ApiError {
    fn from(f: (ErrorCode, String)) -> Self {
        Self::from_failed(f)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The body is written with the request id by `super::serve`'s
        // numbering layer; carry the parts as an extension until then.
        let status = self.status;
        let mut r = status.into_response();
        r.extensions_mut().insert(self);
        r
    }
}

/// A path extractor whose rejection is an [`ApiError`] (400).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
    }
}

/// A query extractor whose rejection is an [`ApiError`].
pub struct Query<T>(pub T);

impl<S: Send + Sync, T> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))
    }
}

/// A JSON body extractor whose rejection is an [`ApiError`] (400, also
/// for JSON of the wrong shape; 413 past `http.max_json_body_bytes`; 415
/// for another content type).
pub struct Json<T>(pub T);

impl<S: Send + Sync, T> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|j| Json(j.0))
            .map_err(|e| {
                // JSON of the wrong shape is a bad request too (not 422).
                let status = match e.status() {
                    StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
                    s => s,
                };
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "RequestTooLarge",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
                    _ => "BadRequest",
                };
                ApiError::new(status, code, format!("bad body: {}", e.body_text()))
            })
    }
}
