//! Errors of the Hub client, mapped from HTTP statuses and the Hub's `X-Error-Code` header.

use std::time::Duration;

use super::retry::{Decision, RetryError, Retryable};
use crate::error::{Diagnostic, ErrorKind, Hint};
use crate::repo::RepoId;

/// What went wrong talking to the Hub. Messages never contain the token (URLs we build never
/// carry it, and the `Authorization` header is never formatted), nor any URL's query string or
/// user info: every URL put into a variant goes through [`redact_url`] first (a signed CDN link
/// carries its signature in the query, and messages reach the index, events and notifications).
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
    #[error("Network error reaching `{url}`{}: {}", proxy.as_ref().map(|p| format!(" through the proxy `{p}`")).unwrap_or_default(), error_chain(source))]
    Network {
        url: String,
        /// The proxy the request went through, shown without its user info.
        proxy: Option<String>,
        #[source]
        source: reqwest::Error,
    },
    /// The server's certificate is not signed by an authority this machine trusts (a company
    /// proxy or mirror with its own CA), or is otherwise invalid.
    #[error("The certificate of `{url}` is not trusted: {reason}")]
    UntrustedCertificate { url: String, reason: String },
    /// The CA bundle the settings name cannot be used.
    #[error("Cannot use the CA bundle `{}`: {reason}", path.display())]
    InvalidCaBundle {
        path: std::path::PathBuf,
        reason: String,
    },
    /// A proxy setting (`HTTPS_PROXY`, the `proxy` preference, …) that cannot be used.
    #[error("Invalid proxy `{proxy}`: {reason}")]
    InvalidProxy { proxy: String, reason: String },
    #[error("Offline mode is on: cannot {what}")]
    Offline { what: String },
    #[error("Invalid Hub endpoint or mirror `{url}`: {reason}")]
    InvalidEndpoint { url: String, reason: String },
    #[error("Invalid response from `{url}`: {reason}")]
    InvalidResponse { url: String, reason: String },
    /// A redirect the client never follows: a downgrade to `http`, or into this machine or its
    /// cloud's metadata service ([`super::redirect`]).
    #[error("Refused a redirect from `{url}` to `{target}`: {reason}")]
    RedirectRefused {
        url: String,
        target: String,
        reason: String,
    },
    #[error("Range not satisfiable at `{url}` (the file has {} bytes)", total.map(|t| t.to_string()).unwrap_or_else(|| "an unknown number of".into()))]
    RangeNotSatisfiable { url: String, total: Option<u64> },
    #[error("Gave up on {what} after {attempts} attempt(s): {last}")]
    RetriesExhausted {
        what: String,
        attempts: u32,
        last: Box<HubError>,
    },
}

/// `url` as it may be shown: without its query string, fragment and user info
/// (`https://cdn.example/blob?X-Amz-Signature=…` becomes `https://cdn.example/blob`). The one
/// helper every URL goes through before it is put into an error, a log line or a message.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            parsed.set_fragment(None);
            // Both fail only for URLs that cannot have user info (`data:`); nothing to strip.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => {
            // Not a URL: drop anything after `?` or `#`, and anything before an `@` of the
            // authority.
            let cut = url.find(['?', '#']).map_or(url, |at| &url[..at]);
            match cut.split_once("://") {
                Some((scheme, rest)) => {
                    let authority_end = rest.find('/').unwrap_or(rest.len());
                    match rest[..authority_end].rfind('@') {
                        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                        None => cut.to_string(),
                    }
                }
                None => cut.to_string(),
            }
        }
    }
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
    /// The Hub could not be reached or failed on its side (no answer, or a 5xx after the
    /// retries): a team bucket may stand in for it (see `bucket`).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self.root(),
            HubError::Network { .. } | HubError::Http { status: 500.., .. }
        )
    }

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
            HubError::InvalidProxy { .. } | HubError::InvalidCaBundle { .. } => {
                ErrorKind::InvalidInput
            }
            HubError::UntrustedCertificate { .. } => ErrorKind::UntrustedCertificate,
            HubError::InvalidResponse { .. } | HubError::RedirectRefused { .. } => {
                ErrorKind::InvalidResponse
            }
            HubError::RangeNotSatisfiable { .. } => ErrorKind::RangeNotSatisfiable,
            HubError::RetriesExhausted { .. } => ErrorKind::RetriesExhausted,
        }
    }

    /// What the user can do about it.
    pub fn hints(&self) -> Vec<Hint> {
        match self.root() {
            HubError::Network { proxy: Some(_), .. } => vec![Hint::CheckProxy],
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
            HubError::InvalidProxy { .. } => vec![Hint::CheckProxy],
            HubError::UntrustedCertificate { .. } | HubError::InvalidCaBundle { .. } => {
                vec![Hint::TrustCertificateAuthority]
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_errors_lose_their_query_and_user_info() {
        let signed = "https://user:pass@cdn.example/repos/ab/blob?X-Amz-Signature=deadbeef&X-Amz-Expires=3600#frag";
        assert_eq!(redact_url(signed), "https://cdn.example/repos/ab/blob");
        assert_eq!(redact_url("not a url ?X-Amz-Signature=x"), "not a url ");
        assert_eq!(
            redact_url("weird://u:p@[bad/x?X-Amz-Signature=x"),
            "weird://[bad/x"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9/a/b"),
            "http://127.0.0.1:9/a/b"
        );
    }
}
