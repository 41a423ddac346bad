//! Errors as the API returns them: `{"error": {"kind", "message", "hint"}}` with a fitting status.
//!
//! The `kind` strings are part of the v1 contract (docs/local-api.md) and never change.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A failed request, rendered as the contract's error body. Serialised on its own (as the
/// desktop app's IPC commands return it) it is the body's inner object: `{kind, message, hint}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// HTTP status of the response.
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable snake_case kind.
    pub kind: String,
    /// What went wrong, for a person.
    pub message: String,
    /// What to do about it, when there is something to do.
    pub hint: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    kind: &'a str,
    message: &'a str,
    hint: Option<&'a str>,
}

impl ApiError {
    /// An error with an explicit status and kind.
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind: kind.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> ApiError {
        self.hint = Some(hint.into());
        self
    }

    /// 400 `invalid_input`.
    pub fn invalid_input(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401 `unauthorized`: the API secret is missing or wrong.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or wrong API secret",
        )
        .with_hint(
            "Send `Authorization: Bearer <secret>` with the secret from the `api-token` file in the app-data folder",
        )
    }

    /// The HTTP status conventionally used for an engine error kind.
    pub fn status_for_kind(kind: &str) -> StatusCode {
        match kind {
            "repo_not_found" | "revision_not_found" | "entry_not_found" | "not_found"
            | "offline_miss" => StatusCode::NOT_FOUND,
            "gated" => StatusCode::FORBIDDEN,
            "unauthorized" | "bad_token" => StatusCode::UNAUTHORIZED,
            "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
            "network" => StatusCode::BAD_GATEWAY,
            "offline" => StatusCode::SERVICE_UNAVAILABLE,
            "disk_full" => StatusCode::INSUFFICIENT_STORAGE,
            "invalid_input" => StatusCode::BAD_REQUEST,
            "conflict" => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                kind: &self.kind,
                message: &self.message,
                hint: self.hint.as_deref(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}
