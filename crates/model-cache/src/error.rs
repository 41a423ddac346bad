//! What every edge needs to know about an engine error: its [`ErrorKind`] (one stable name per
//! kind of failure) and its [`Hint`]s (actions the user can take, as data).
//!
//! Each module's error enum implements [`Diagnostic`]; [`diagnose`] finds it on any error of a
//! chain, so an edge holding an `anyhow::Error` or a boxed source never matches on message text.
//! The edges render both in their own words: the CLI maps kinds to exit codes and hints to
//! `hint: run mcache login`, the local API maps kinds to HTTP statuses and hints to "Add a token
//! in Settings".
//!
//! **API Boundary:** the snake_case names of [`ErrorKind`] are part of the local API's contract
//! (`{"error": {"kind": ...}}`), of the `--json` output and of the index (failed jobs); they are
//! added, never renamed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::selection::SelectionError;

macro_rules! error_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// A stable name for a kind of failure. Edges match on it, never on messages.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum ErrorKind {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorKind {
            /// Every kind, for edges that must prove (in a test) that they map each one.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant,)*];

            /// The stable snake_case name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $name,)*
                }
            }
        }

        impl std::str::FromStr for ErrorKind {
            type Err = UnknownErrorKind;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($name => Ok(ErrorKind::$variant),)*
                    _ => Err(UnknownErrorKind(text.to_string())),
                }
            }
        }
    };
}

error_kinds! {
    // The Hub said no.
    /// The repository does not exist, or is private and no token was sent.
    RepoNotFound = "repo_not_found",
    RevisionNotFound = "revision_not_found",
    EntryNotFound = "entry_not_found",
    /// A gated repository the user has no access to (yet).
    Gated = "gated",
    /// The Hub refused a request without credentials.
    Unauthorized = "unauthorized",
    /// The Hub rejected the token.
    BadToken = "bad_token",
    Forbidden = "forbidden",
    RateLimited = "rate_limited",
    /// An HTTP status without a more specific meaning.
    Http = "http",
    /// The Hub (or a mirror) could not be reached.
    Network = "network",
    /// Offline mode is on and the network was needed.
    Offline = "offline",
    InvalidEndpoint = "invalid_endpoint",
    InvalidResponse = "invalid_response",
    RangeNotSatisfiable = "range_not_satisfiable",
    RetriesExhausted = "retries_exhausted",
    /// A server's TLS certificate is not signed by a trusted authority (or is invalid).
    UntrustedCertificate = "untrusted_certificate",

    // The disk and the cache.
    UnsafePath = "unsafe_path",
    PathEscape = "path_escape",
    InvalidName = "invalid_name",
    DiskFull = "disk_full",
    Io = "io",
    BlobMissing = "blob_missing",
    LockTimeout = "lock_timeout",
    Store = "store",
    Index = "index",
    IndexTooNew = "index_too_new",
    /// The chosen cache folder is not there (a drive not connected, a share not mounted).
    CacheUnavailable = "cache_unavailable",

    // Downloads.
    /// Bytes did not match the Hub's hash.
    Integrity = "integrity",
    UpstreamChanged = "upstream_changed",
    Protocol = "protocol",
    Cancelled = "cancelled",
    /// A file is not a GGUF or safetensors file, or its header is damaged.
    InvalidFormat = "invalid_format",

    // What the user asked for.
    /// Offline mode is on and the cache does not hold what was asked.
    OfflineMiss = "offline_miss",
    NotCached = "not_cached",
    NoSuchVariant = "no_such_variant",
    NothingSelected = "nothing_selected",
    BadPattern = "bad_pattern",
    NoSuchJob = "no_such_job",
    JobFinished = "job_finished",
    InvalidJob = "invalid_job",
    /// A queued or running download uses what was to be removed.
    InUse = "in_use",
    Pinned = "pinned",
    /// A value the user gave is not valid (a setting, a size, a URL).
    InvalidInput = "invalid_input",
    /// The saved preferences could not be read or written.
    Preferences = "preferences",
    /// A cache policy could not be applied (eviction, cleanup).
    Policy = "policy",
    /// No converter supports this model or format (an architecture, ONNX to GGUF).
    Unsupported = "unsupported",
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an [`ErrorKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an error kind")]
pub struct UnknownErrorKind(pub String);

/// An action the user can take about an error. The engine names the action; each edge says it in
/// its own words (the CLI names a command, the app a place in its window).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Hint {
    /// Set a Hub token (log in).
    LogIn,
    /// The token was rejected: create a new one and set it.
    RenewToken,
    /// The token lacks a permission the request needs.
    CheckTokenPermissions,
    /// Ask for access to a gated repository on its page.
    RequestAccess { url: String },
    /// The repository id may be misspelt.
    CheckRepoId,
    /// Turn offline mode off.
    GoOnline,
    /// Download the repository once while online.
    PullWhileOnline { repo: String },
    /// The variants of a repository are listed by the variants view.
    ListVariants { repo: String },
    /// What is cached is listed by the cache view.
    ListCached,
    /// The selection (file names, include and exclude patterns) matched nothing.
    CheckSelection,
    /// File patterns are shell globs such as `*.gguf`.
    UseGlobPatterns,
    /// Unpin the model first.
    Unpin { repo: String },
    /// Cancel the queued or running download first.
    CancelDownload { repo: String },
    /// The jobs are listed by the queue view.
    ListJobs,
    /// Free this many bytes on the cache's disk (or choose another cache folder).
    FreeSpace { bytes: u64 },
    /// Try again later, or from another mirror.
    RetryLater,
    /// Another process holds the lock; wait for it, or delete the lock file if none runs.
    WaitForLock { path: PathBuf },
    /// The index was written by a newer version: upgrade, or rebuild the index.
    UpgradeOrRebuildIndex { path: PathBuf },
    /// Fix or delete the preferences file; defaults are used without it.
    FixPreferences { path: PathBuf },
    /// Check the proxy settings (`HTTPS_PROXY`, `NO_PROXY`, the `proxy` setting) and that the
    /// proxy is reachable.
    CheckProxy,
    /// Trust the certificate authority that signed the server's certificate (a company's):
    /// give its PEM bundle (the `ca_bundle` setting, or `REQUESTS_CA_BUNDLE`), or add it to
    /// the system's certificate store.
    TrustCertificateAuthority,
    /// The cache folder is not there: connect its drive (or mount its share), or choose
    /// another cache folder.
    ConnectCacheDrive { path: PathBuf },
    /// Download the model first (a conversion reads it from the cache).
    PullFirst { repo: String },
    /// Install llama.cpp's `convert_hf_to_gguf.py` (on `PATH`, or named by
    /// `MODEL_CACHE_CONVERT_HF_TO_GGUF`) for architectures the native converter does not know.
    InstallLlamaCppConverter,
}

/// What an error tells the edges beyond its message.
pub trait Diagnostic: std::error::Error {
    /// The stable kind.
    fn kind(&self) -> ErrorKind;

    /// Actions the user can take; empty when there is nothing to suggest.
    fn hints(&self) -> Vec<Hint> {
        Vec::new()
    }
}

/// The [`Diagnostic`] of an error, if it is one of the engine's error types. Edges call this on
/// each error of a chain (`anyhow::Error::chain`) and use the first that answers.
pub fn diagnose<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Diagnostic> {
    macro_rules! try_types {
        ($($ty:ty),*) => {
            $(if let Some(e) = error.downcast_ref::<$ty>() { return Some(e); })*
        };
    }
    try_types!(
        crate::engine::EngineError,
        crate::engine::PreferencesError,
        crate::engine::PreferencesPatchError,
        crate::hub::HubError,
        crate::download::DownloadError,
        crate::store::StoreError,
        crate::index::IndexError,
        crate::scheduler::SchedulerError,
        crate::policy::PolicyError,
        crate::doctor::DoctorError,
        crate::selection::SelectionError,
        crate::formats::InspectError,
        crate::import::ImportError,
        crate::bucket::BucketError
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_their_stable_names() {
        for kind in ErrorKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::json!(kind.as_str()));
            assert_eq!(kind.as_str().parse::<ErrorKind>().unwrap(), *kind);
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len(), "names are unique");
        assert!("no_such_thing".parse::<ErrorKind>().is_err());
    }

    #[test]
    fn hints_are_tagged_by_action() {
        insta::assert_json_snapshot!(
            vec![
                Hint::LogIn,
                Hint::RequestAccess {
                    url: "https://huggingface.co/org/gated".into()
                },
                Hint::FreeSpace { bytes: 3 << 30 },
            ],
            @r###"
        [
          {
            "action": "log_in"
          },
          {
            "action": "request_access",
            "url": "https://huggingface.co/org/gated"
          },
          {
            "action": "free_space",
            "bytes": 3221225472
          }
        ]
        "###
        );
    }
}
