//! Errors of the Hub client, mapped from HTTP statuses and the Hub's `X-Error-Code` header.

use std::time::Duration;

use super::retry::{Decision, RetryError, Retryable};
use crate::error::{Diagnostic, ErrorKind, Hint};
use crate::repo::RepoId;

/// What went wrong talking to the Hub. Messages never contain the token (URLs we build never
/// carry it, and the `Authorization` header is never formatted).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The Hub answers `RepoNotFound` for a repository that does not exist and, to anyone
    /// without a token, for a private one; `token_sent` tells the two hints apart.
    #[error("Repository `{repo}` was not found")]
    RepoNotFound { repo: String, token_sent: bool },
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
    #[error("Access to `{repo}` is restricted (gated repository){}", if *token_sent { ": your token is not on the authorized list yet" } else { "" })]
    Gated {
        repo: String,
        /// The repository's page, where access is requested.
        page: String,
        token_sent: bool,
    },
    #[error(
        "Access to `{repo}` was refused without credentials: it is private, gated or does not exist"
    )]
    Unauthorized { repo: String },
    #[error("The Hub rejected the token (invalid or expired credentials)")]
    BadToken,
    #[error("Forbidden: {message}")]
    Forbidden { message: String },
    /// The download host (a CDN the Hub redirected to) refused the signed URL: it expired or
    /// was revoked. The URL itself is not shown (its signature is a credential); a fresh one
    /// comes from the Hub.
    #[error(
        "The download server `{host}` refused the download link (HTTP {status}); it has expired"
    )]
    DownloadUrlRefused { status: u16, host: String },
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
    #[error("Offline mode is on: cannot {what}")]
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

    /// The stable kind of the innermost error (through `RetriesExhausted`, whose cause is what
    /// the user needs to know about).
    pub fn kind(&self) -> ErrorKind {
        match self.root() {
            HubError::RepoNotFound { .. } => ErrorKind::RepoNotFound,
            HubError::RevisionNotFound { .. } => ErrorKind::RevisionNotFound,
            HubError::EntryNotFound { .. } => ErrorKind::EntryNotFound,
            HubError::Gated { .. } => ErrorKind::Gated,
            HubError::Unauthorized { .. } => ErrorKind::Unauthorized,
            HubError::BadToken => ErrorKind::BadToken,
            HubError::Forbidden { .. } | HubError::DownloadUrlRefused { .. } => {
                ErrorKind::Forbidden
            }
            HubError::RateLimited { .. } => ErrorKind::RateLimited,
            HubError::Http { .. } => ErrorKind::Http,
            HubError::Network { .. } => ErrorKind::Network,
            HubError::Offline { .. } => ErrorKind::Offline,
            HubError::InvalidEndpoint { .. } => ErrorKind::InvalidEndpoint,
            HubError::InvalidResponse { .. } => ErrorKind::InvalidResponse,
            HubError::RangeNotSatisfiable { .. } => ErrorKind::RangeNotSatisfiable,
            HubError::RetriesExhausted { .. } => ErrorKind::RetriesExhausted,
        }
    }

    /// What the user can do about it.
    pub fn hints(&self) -> Vec<Hint> {
        match self.root() {
            HubError::RepoNotFound { token_sent, .. } => {
                let mut hints = vec![Hint::CheckRepoId];
                if !token_sent {
                    hints.push(Hint::LogIn);
                }
                hints
            }
            HubError::Gated {
                page, token_sent, ..
            } => {
                let mut hints = vec![Hint::RequestAccess { url: page.clone() }];
                if !token_sent {
                    hints.push(Hint::LogIn);
                }
                hints
            }
            HubError::Unauthorized { .. } => vec![Hint::LogIn],
            HubError::BadToken => vec![Hint::RenewToken],
            HubError::Forbidden { .. } => vec![Hint::CheckTokenPermissions],
            HubError::Offline { .. } => vec![Hint::GoOnline],
            HubError::RateLimited { .. }
            | HubError::RetriesExhausted { .. }
            | HubError::DownloadUrlRefused { .. } => vec![Hint::RetryLater],
            _ => Vec::new(),
        }
    }

    /// The innermost error (through `RetriesExhausted`).
    pub fn root(&self) -> &HubError {
        match self {
            HubError::RetriesExhausted { last, .. } => last.root(),
            other => other,
        }
    }

    pub(crate) fn gated(repo: &RepoId, endpoint: &str, token_sent: bool) -> Self {
        HubError::Gated {
            repo: repo.to_string(),
            page: format!("{endpoint}/{repo}"),
            token_sent,
        }
    }
}

impl Diagnostic for HubError {
    fn kind(&self) -> ErrorKind {
        HubError::kind(self)
    }

    fn hints(&self) -> Vec<Hint> {
        HubError::hints(self)
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
