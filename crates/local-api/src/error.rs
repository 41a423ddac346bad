//! Errors as the API returns them: `{"error": {"kind", "message", "hint"}}` with a fitting status.
//!
//! The `kind` strings are part of the v1 contract (docs/local-api.md) and never change. Engine
//! errors are mapped by their [`ErrorKind`] (every kind has a deliberate status and contract
//! kind, checked by a test over [`ErrorKind::ALL`]); their hints are worded for the app's
//! window here ("Add a token in Settings"), not for a terminal.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use model_cache::engine::EngineError;
use model_cache::error::{ErrorKind, Hint};
use model_cache::units::format_size;
use serde::{Deserialize, Serialize};

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
    /// The fields of a settings change that were refused, each with its reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<model_cache::engine::FieldError>,
}

/// The error object of the contract: `{kind, message, hint}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub kind: String,
    pub message: String,
    pub hint: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a ApiError,
}

impl ApiError {
    /// An error with an explicit status and kind.
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind: kind.to_string(),
            message: message.into(),
            hint: None,
            fields: Vec::new(),
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

    /// 503 `too_many_connections`: the server is at one of its limits on open connections or
    /// event streams (`crate::Limits`).
    pub fn too_many_connections(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            message,
        )
        .with_hint("Close other pages or tools that use the local API, then try again")
    }

    /// 403 `forbidden_setting`: a change of where requests and the Hub token go, which only the
    /// app makes, after the person confirms it. `fields` names each refused setting.
    pub fn forbidden_setting(changes: &[model_cache::engine::TrustChange]) -> ApiError {
        let names: Vec<&str> = changes.iter().map(|c| c.setting.as_str()).collect();
        let mut error = ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_setting",
            format!(
                "The local API cannot change {}: it decides where requests and the Hub token go, or what they trust",
                names.join(", ")
            ),
        )
        .with_hint(
            "Change it in the app's Settings, which asks you to confirm",
        );
        error.fields = changes
            .iter()
            .map(|c| model_cache::engine::FieldError {
                field: c.setting.clone(),
                message: format!("`{}` is changed only in the app", c.setting),
            })
            .collect();
        error
    }

    /// 409 `cancelled`: the person did not confirm a change the app asked them about.
    pub fn cancelled(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "cancelled", message)
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

/// The contract kind and HTTP status of an engine error kind. Kinds outside the contract's list
/// are folded into the nearest contract kind. HTTP 401 is reserved for a missing or wrong API
/// secret, so a Hub that refused the engine is a 403: a client can tell the two apart.
/// `None` only for a kind added to the engine after this list was written (a test fails then).
pub fn contract_kind(kind: ErrorKind) -> Option<(&'static str, StatusCode)> {
    use ErrorKind as K;
    Some(match kind {
        K::RepoNotFound | K::RevisionNotFound | K::EntryNotFound | K::OfflineMiss => {
            (kind.as_str(), StatusCode::NOT_FOUND)
        }
        K::NotCached | K::NoSuchVariant | K::NoSuchJob => ("not_found", StatusCode::NOT_FOUND),
        K::Gated | K::Unauthorized | K::BadToken | K::Forbidden => {
            (kind.as_str(), StatusCode::FORBIDDEN)
        }
        K::RateLimited => (kind.as_str(), StatusCode::TOO_MANY_REQUESTS),
        K::Network
        | K::Http
        | K::RetriesExhausted
        | K::InvalidResponse
        | K::Protocol
        | K::RangeNotSatisfiable
        | K::UpstreamChanged
        | K::UntrustedCertificate
        | K::Integrity => (kind.as_str(), StatusCode::BAD_GATEWAY),
        K::CacheUnavailable => (kind.as_str(), StatusCode::SERVICE_UNAVAILABLE),
        K::Offline => (kind.as_str(), StatusCode::SERVICE_UNAVAILABLE),
        K::DiskFull => (kind.as_str(), StatusCode::INSUFFICIENT_STORAGE),
        K::InvalidInput | K::InvalidEndpoint | K::InvalidFormat | K::Unsupported => {
            ("invalid_input", StatusCode::BAD_REQUEST)
        }
        K::NothingSelected
        | K::BadPattern
        | K::InvalidJob
        | K::UnsafePath
        | K::PathEscape
        | K::InvalidName => ("invalid_input", StatusCode::BAD_REQUEST),
        K::JobFinished | K::Pinned | K::InUse | K::LockTimeout | K::Cancelled => {
            ("conflict", StatusCode::CONFLICT)
        }
        K::Io
        | K::BlobMissing
        | K::Store
        | K::Index
        | K::IndexTooNew
        | K::Preferences
        | K::Policy => (kind.as_str(), StatusCode::INTERNAL_SERVER_ERROR),
        _ => return None,
    })
}

/// Hints in the words of the app's window (the same UI runs in a browser against this API).
pub fn hint_text(hints: &[Hint]) -> Option<String> {
    let lines: Vec<String> = hints
        .iter()
        .filter_map(|hint| {
            Some(match hint {
                Hint::LogIn => "Add a Hugging Face token in Settings".to_string(),
                Hint::RenewToken => {
                    "Create a new token on the Hub and add it in Settings".to_string()
                }
                Hint::CheckTokenPermissions => {
                    "Check that your token has the permissions this needs".to_string()
                }
                Hint::RequestAccess { url } => format!("Request access on the model's page: {url}"),
                Hint::CheckRepoId => "Check the model id".to_string(),
                Hint::GoOnline => "Turn off offline mode in Settings".to_string(),
                Hint::PullWhileOnline { repo } => {
                    format!("Download {repo} once while online")
                }
                Hint::PullFirst { repo } => format!("Download {repo} first"),
                Hint::InstallLlamaCppConverter => {
                    "Install llama.cpp and put its convert_hf_to_gguf.py on PATH (or set MODEL_CACHE_CONVERT_HF_TO_GGUF), then try again".to_string()
                }
                Hint::ListVariants { repo } => format!("Open {repo} to see its variants"),
                Hint::ListCached => "The Cache tab lists what is stored".to_string(),
                Hint::CheckSelection => "Check the file names or patterns".to_string(),
                Hint::UseGlobPatterns => "Use patterns such as *.gguf or *Q4_K_M*".to_string(),
                Hint::Unpin { repo } => format!("Unpin {repo} in the Cache tab first"),
                Hint::CancelDownload { repo } => {
                    format!("Cancel the download of {repo} in the Downloads tab first")
                }
                Hint::ListJobs => "The Downloads tab lists the jobs".to_string(),
                Hint::FreeSpace { bytes } => format!(
                    "Free {} on the cache's disk, or choose another cache folder in Settings",
                    format_size(*bytes)
                ),
                Hint::RetryLater => "Try again later".to_string(),
                Hint::WaitForLock { .. } => {
                    "Another program is downloading the same file; wait for it to finish"
                        .to_string()
                }
                Hint::UpgradeOrRebuildIndex { .. } => {
                    "Update Model Cache to the newest version".to_string()
                }
                Hint::FixPreferences { path } => format!(
                    "Fix or delete {}; defaults are used without it",
                    path.display()
                ),
                Hint::CheckProxy => {
                    "Check the proxy in Settings (or HTTPS_PROXY and NO_PROXY) and that it is reachable".to_string()
                }
                Hint::TrustCertificateAuthority => {
                    "Add your organisation's CA certificates in Settings (CA bundle)".to_string()
                }
                Hint::ConnectCacheDrive { path } => format!(
                    "Connect the drive that holds {}, or choose another cache folder in Settings",
                    path.display()
                ),
                _ => return None,
            })
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> ApiError {
        let (kind, status) =
            contract_kind(err.kind()).unwrap_or(("internal", StatusCode::INTERNAL_SERVER_ERROR));
        let mut api = ApiError::new(status, kind, err.to_string());
        api.hint = hint_text(&err.hints());
        if let EngineError::Settings(settings) = &err {
            api.fields = settings.errors.clone();
        }
        if api.status.is_server_error() {
            tracing::warn!(kind, error = %api.message, "An API request failed");
        }
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(Body { error: &self })).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_kind_has_a_deliberate_status() {
        for kind in ErrorKind::ALL {
            let (contract, status) =
                contract_kind(*kind).unwrap_or_else(|| panic!("`{kind}` is not mapped"));
            assert_ne!(status, StatusCode::UNAUTHORIZED, "401 is the API secret's");
            assert!(!contract.is_empty());
        }
    }

    #[test]
    fn hints_read_as_the_window_says_them() {
        assert_eq!(
            hint_text(&[Hint::CheckRepoId, Hint::LogIn]).as_deref(),
            Some("Check the model id\nAdd a Hugging Face token in Settings")
        );
        assert_eq!(hint_text(&[]), None);
    }
}
