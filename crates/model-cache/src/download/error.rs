//! Errors of the downloader, each with a stable [`DownloadError::kind`] and its hints.

use std::io;
use std::path::PathBuf;

use crate::error::{Diagnostic, ErrorKind, Hint};
use crate::hub::HubError;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a download (of one file, or of a whole request) failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The Hub (or the CDN) refused or could not be reached, after retries where they apply.
    #[error("Could not download `{path}` from `{repo}`: {source}")]
    Hub {
        repo: String,
        path: String,
        #[source]
        source: Box<HubError>,
    },
    /// The team bucket failed (signing a URL for a file).
    #[error("The team bucket failed for `{path}` of `{repo}`: {source}")]
    Bucket {
        repo: String,
        path: String,
        #[source]
        source: Box<crate::bucket::BucketError>,
    },
    /// Resolving the revision or listing the repo failed.
    #[error("Could not resolve `{repo}` at `{revision}`: {source}")]
    Resolve {
        repo: String,
        revision: String,
        #[source]
        source: Box<HubError>,
    },
    /// A file name from the Hub that could escape the snapshot folder or is not a valid path.
    #[error("Refusing file `{path}` of `{repo}`: {reason}")]
    UnsafePath {
        repo: String,
        path: String,
        reason: String,
    },
    /// The downloaded bytes do not hash to the value the Hub published, even after refetching.
    #[error(
        "`{path}` of `{repo}` failed verification: expected {algorithm} {expected}, got {actual}; the source sent corrupted data and nothing was linked"
    )]
    Integrity {
        repo: String,
        path: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    /// The Hub published no hash for the file and it was not fetched over `https`: nothing
    /// would tell a tampered file from the real one, so it is not downloaded.
    #[error(
        "`{path}` of `{repo}` has no published hash to check it against and the endpoint is not https; it was not downloaded"
    )]
    Unverifiable { repo: String, path: String },
    /// Not enough space for the file.
    #[error(
        "Not enough disk space for `{path}`: {needed} bytes needed, {free} bytes free in `{}`", dir.display()
    )]
    DiskFull {
        path: String,
        dir: PathBuf,
        needed: u64,
        free: u64,
    },
    /// Reading or writing the cache failed.
    #[error("Could not {what} `{}`: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The store refused an operation (lock, link, ref).
    #[error("Cache error for `{path}`: {source}")]
    Store {
        path: String,
        #[source]
        source: BoxError,
    },
    /// The index database failed.
    #[error("Index error while {what}: {source}")]
    Index {
        what: &'static str,
        #[source]
        source: BoxError,
    },
    /// Offline mode and the cache lacks something the request needs.
    #[error(
        "Offline mode is on and `{repo}` at `{revision}` is not fully cached: missing {}", missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
    )]
    Offline {
        repo: String,
        revision: String,
        missing: Vec<String>,
    },
    /// The file kept changing upstream while it was downloaded.
    #[error("`{path}` of `{repo}` changed upstream {restarts} times during the download")]
    UpstreamChanged {
        repo: String,
        path: String,
        restarts: u32,
    },
    /// The server answered in a way the protocol does not allow.
    #[error("Unexpected response for `{path}` of `{repo}`: {reason}")]
    Protocol {
        repo: String,
        path: String,
        reason: String,
    },
    /// The retry budget of a file ran out.
    #[error("Gave up on `{path}` of `{repo}` after {attempts} failed attempt(s): {last}")]
    RetriesExhausted {
        repo: String,
        path: String,
        attempts: u32,
        last: String,
    },
    /// The job was cancelled.
    #[error("Download of `{repo}` was cancelled")]
    Cancelled { repo: String },
    /// The failure of the one file of a request, already reported; unwrapped before it
    /// reaches the caller.
    #[error("{source}")]
    File { source: Box<DownloadError> },
    /// Another file of the same request failed, so this one was stopped.
    #[error("{count} of {total} file(s) of `{repo}` failed; first: {first}")]
    Partial {
        repo: String,
        count: usize,
        total: usize,
        first: Box<DownloadError>,
    },
}

impl DownloadError {
    /// Whether the failure is the network's (the Hub unreachable, rate limits, server errors
    /// that outlasted the retries): trying the same download later may well succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DownloadError::Hub { source, .. } | DownloadError::Resolve { source, .. } => {
                source.is_retryable()
            }
            DownloadError::RetriesExhausted { .. } => true,
            DownloadError::Partial { first, .. } => first.is_transient(),
            DownloadError::File { source } => source.is_transient(),
            _ => false,
        }
    }

    /// The stable kind; a wrapped Hub error gives its own.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DownloadError::Hub { source, .. } | DownloadError::Resolve { source, .. } => {
                source.kind()
            }
            DownloadError::UnsafePath { .. } => ErrorKind::UnsafePath,
            DownloadError::Bucket { source, .. } => source.kind(),
            DownloadError::Integrity { .. } | DownloadError::Unverifiable { .. } => {
                ErrorKind::Integrity
            }
            DownloadError::DiskFull { .. } => ErrorKind::DiskFull,
            DownloadError::Io { .. } => ErrorKind::Io,
            DownloadError::Store { .. } => ErrorKind::Store,
            DownloadError::Index { .. } => ErrorKind::Index,
            DownloadError::Offline { .. } => ErrorKind::Offline,
            DownloadError::UpstreamChanged { .. } => ErrorKind::UpstreamChanged,
            DownloadError::Protocol { .. } => ErrorKind::Protocol,
            DownloadError::RetriesExhausted { .. } => ErrorKind::RetriesExhausted,
            DownloadError::Cancelled { .. } => ErrorKind::Cancelled,
            DownloadError::Partial { first, .. } => first.kind(),
            DownloadError::File { source } => source.kind(),
        }
    }

    /// What the user can do about it.
    pub fn hints(&self) -> Vec<Hint> {
        match self {
            DownloadError::Hub { source, .. } | DownloadError::Resolve { source, .. } => {
                source.hints()
            }
            DownloadError::Integrity { .. }
            | DownloadError::UpstreamChanged { .. }
            | DownloadError::RetriesExhausted { .. } => vec![Hint::RetryLater],
            DownloadError::DiskFull { needed, free, .. } => vec![Hint::FreeSpace {
                bytes: needed.saturating_sub(*free),
            }],
            DownloadError::Offline { repo, .. } => {
                vec![Hint::GoOnline, Hint::PullWhileOnline { repo: repo.clone() }]
            }
            DownloadError::Store { source, .. } | DownloadError::Index { source, .. } => {
                crate::error::diagnose(source.as_ref()).map_or_else(Vec::new, |d| d.hints())
            }
            DownloadError::Partial { first, .. } => first.hints(),
            DownloadError::File { source } => source.hints(),
            _ => Vec::new(),
        }
    }
}

impl Diagnostic for DownloadError {
    fn kind(&self) -> ErrorKind {
        DownloadError::kind(self)
    }

    fn hints(&self) -> Vec<Hint> {
        DownloadError::hints(self)
    }
}
