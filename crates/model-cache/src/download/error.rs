//! Errors of the downloader, each with a stable [`DownloadError::kind`].

use std::io;
use std::path::PathBuf;

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
        "`{path}` of `{repo}` failed verification: expected {algorithm} {expected}, got {actual}\nhint: the source sent corrupted data; nothing was linked, try again later or from another mirror"
    )]
    Integrity {
        repo: String,
        path: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    /// Not enough space for the file.
    #[error(
        "Not enough disk space for `{path}`: {needed} bytes needed, {free} bytes free in `{}`\nhint: free some space or choose another cache folder", dir.display()
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
        "Offline mode is on and `{repo}` at `{revision}` is not fully cached: missing {}\nhint: go online once to download it, or unset offline mode", missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
    )]
    Offline {
        repo: String,
        revision: String,
        missing: Vec<String>,
    },
    /// The file kept changing upstream while it was downloaded.
    #[error(
        "`{path}` of `{repo}` changed upstream {restarts} times during the download\nhint: try again once the repo stops changing"
    )]
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
    /// A stable snake_case name the CLI, the app and the local API can switch on.
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

    pub fn kind(&self) -> &'static str {
        match self {
            DownloadError::Hub { source, .. } | DownloadError::Resolve { source, .. } => {
                source.root().kind()
            }
            DownloadError::UnsafePath { .. } => "unsafe_path",
            DownloadError::Integrity { .. } => "integrity",
            DownloadError::DiskFull { .. } => "disk_full",
            DownloadError::Io { .. } => "io",
            DownloadError::Store { .. } => "store",
            DownloadError::Index { .. } => "index",
            DownloadError::Offline { .. } => "offline",
            DownloadError::UpstreamChanged { .. } => "upstream_changed",
            DownloadError::Protocol { .. } => "protocol",
            DownloadError::RetriesExhausted { .. } => "retries_exhausted",
            DownloadError::Cancelled { .. } => "cancelled",
            DownloadError::Partial { first, .. } => first.kind(),
            DownloadError::File { source } => source.kind(),
        }
    }
}
