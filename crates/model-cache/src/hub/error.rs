//! Errors of the Hub client, mapped from HTTP statuses and the Hub's `X-Error-Code` header.

use std::time::Duration;

use super::retry::{Decision, RetryError, Retryable};
use crate::repo::RepoId;

/// What went wrong talking to the Hub. Messages never contain the token (URLs we build never
/// carry it, and the `Authorization` header is never formatted).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "Repository `{repo}` was not found\nhint: check the id; if it is private, set a token (HF_TOKEN or `mcache login`)"
    )]
    RepoNotFound { repo: String },
    #[error("Revision `{revision}` was not found in `{repo}`")]
    RevisionNotFound { repo: String, revision: String },
    #[error("File `{path}` was not found in `{repo}` at revision `{revision}`")]
    EntryNotFound {
        repo: String,
        revision: String,
        path: String,
        /// The commit the revision resolved to, when the Hub said (`X-Repo-Commit`): lets the
        /// store write a `.no_exist` marker.
        commit: Option<String>,
    },
    #[error("Access to `{repo}` is restricted (gated repository)\n{hint}")]
    Gated { repo: String, hint: String },
    #[error(
        "Access to `{repo}` was refused without credentials: it is private, gated or does not exist\nhint: set a token (HF_TOKEN or `mcache login`)"
    )]
    Unauthorized { repo: String },
    #[error(
        "The Hub rejected the token (invalid or expired credentials)\nhint: create a new token and set it (HF_TOKEN or `mcache login`)"
    )]
    BadToken,
    #[error("Forbidden: {message}\nhint: make sure your token has the required permissions")]
    Forbidden { message: String },
    #[error("Rate limited by the Hub{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("HTTP {status} from `{url}`")]
    Http { status: u16, url: String },
    #[error("Network error reaching `{url}`: {}", error_chain(source))]
    Network {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "Offline mode is on: cannot {what}\nhint: unset HF_HUB_OFFLINE to allow network access"
    )]
    Offline { what: String },
    #[error("Invalid Hub endpoint or mirror `{url}`: {reason}")]
    InvalidEndpoint { url: String, reason: String },
    #[error("Invalid response from `{url}`: {reason}")]
    InvalidResponse { url: String, reason: String },
    #[error("Range not satisfiable at `{url}` (the file has {} bytes)", total.map(|t| t.to_string()).unwrap_or_else(|| "an unknown number of".into()))]
    RangeNotSatisfiable { url: String, total: Option<u64> },
    #[error("Gave up on {what} after {attempts} attempt(s): {last}")]
    RetriesExhausted {
        what: String,
        attempts: u32,
        last: Box<HubError>,
    },
}

/// The error and its causes, `a: b: c`, so "error sending request" comes with its reason
/// ("connection refused", "timed out").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl HubError {
    /// Whether another attempt (or another mirror) could succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.decision(), Decision::Retry { .. })
            || matches!(self, HubError::RetriesExhausted { .. })
    }

    /// A stable snake_case name for the app, the local API and CLI exit codes.
    pub fn kind(&self) -> &'static str {
        match self {
            HubError::RepoNotFound { .. } => "repo_not_found",
            HubError::RevisionNotFound { .. } => "revision_not_found",
            HubError::EntryNotFound { .. } => "entry_not_found",
            HubError::Gated { .. } => "gated",
            HubError::Unauthorized { .. } => "unauthorized",
            HubError::BadToken => "bad_token",
            HubError::Forbidden { .. } => "forbidden",
            HubError::RateLimited { .. } => "rate_limited",
            HubError::Http { .. } => "http",
            HubError::Network { .. } => "network",
            HubError::Offline { .. } => "offline",
            HubError::InvalidEndpoint { .. } => "invalid_endpoint",
            HubError::InvalidResponse { .. } => "invalid_response",
            HubError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            HubError::RetriesExhausted { .. } => "retries_exhausted",
        }
    }

    /// The innermost error (through `RetriesExhausted`).
    pub fn root(&self) -> &HubError {
        match self {
            HubError::RetriesExhausted { last, .. } => last.root(),
            other => other,
        }
    }

    pub(crate) fn gated(repo: &RepoId, endpoint: &str, had_token: bool) -> Self {
        let hint = if had_token {
            format!(
                "hint: request access at {endpoint}/{repo} (your token is not on the authorized list yet)"
            )
        } else {
            format!(
                "hint: request access at {endpoint}/{repo} and set a token (HF_TOKEN or `mcache login`)"
            )
        };
        HubError::Gated {
            repo: repo.to_string(),
            hint,
        }
    }
}

impl Retryable for HubError {
    fn decision(&self) -> Decision {
        match self {
            HubError::Network { .. } => Decision::Retry { after: None },
            HubError::RateLimited { retry_after } => Decision::Retry {
                after: *retry_after,
            },
            HubError::Http { status, .. } if *status == 408 || *status >= 500 => {
                Decision::Retry { after: None }
            }
            _ => Decision::Fatal,
        }
    }
}

impl From<RetryError<HubError>> for HubError {
    fn from(error: RetryError<HubError>) -> Self {
        match error {
            RetryError::Fatal { error, .. } => error,
            RetryError::Exhausted {
                what,
                attempts,
                last,
            } => HubError::RetriesExhausted {
                what,
                attempts,
                last: Box::new(last),
            },
        }
    }
}
