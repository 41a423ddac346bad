//! The facade's error: every module's error, plus what only the facade can tell (a variant or a
//! file the user named that is not there).

use crate::doctor::DoctorError;
use crate::download::DownloadError;
use crate::error::{Diagnostic, ErrorKind, Hint};
use crate::hub::HubError;
use crate::index::IndexError;
use crate::policy::PolicyError;
use crate::scheduler::SchedulerError;
use crate::selection::SelectionError;
use crate::store::StoreError;

use super::preferences::{PreferencesError, PreferencesPatchError};

/// Errors of the facade. Each has a stable [`EngineError::kind`] the app, the local API and the
/// CLI's exit codes switch on, and [`EngineError::hints`] each edge words its own way.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Doctor(#[from] DoctorError),
    #[error(transparent)]
    Preferences(#[from] PreferencesError),
    #[error(transparent)]
    Settings(#[from] PreferencesPatchError),
    #[error(transparent)]
    Selection(#[from] SelectionError),
    #[error(transparent)]
    Inspect(#[from] crate::formats::InspectError),
    #[error(transparent)]
    Import(#[from] crate::import::ImportError),
    #[error(transparent)]
    Bucket(#[from] crate::bucket::BucketError),
    #[error(transparent)]
    Convert(#[from] crate::convert::ConvertError),
    #[error(transparent)]
    Peer(#[from] crate::peers::PeerError),
    #[error("No team bucket is configured")]
    NoBucket,
    #[error("`{repo}` has no variant named `{name}`")]
    NoSuchVariant { repo: String, name: String },
    #[error("Nothing in `{repo}` matches the selection")]
    NothingSelected { repo: String },
    #[error("No repository given")]
    NoRepo,
    #[error("Invalid search: {reason}")]
    InvalidSearch { reason: String },
    #[error("`{file}` of `{repo}` is not in the cache (revision `{revision}`)")]
    OfflineMiss {
        repo: String,
        revision: String,
        file: String,
    },
    #[error("`{repo}` is not in the cache")]
    NotCached { repo: String },
    /// The chosen cache folder is not there (its drive is not connected, its share not
    /// mounted): nothing is created in its place and no other folder is used.
    #[error("The cache folder `{}` is not there{}", path.display(), missing_note(path, missing))]
    CacheFolderMissing {
        path: std::path::PathBuf,
        /// The outermost missing folder on its path (the drive's mount point, when it is gone).
        missing: std::path::PathBuf,
    },
}

fn missing_note(path: &std::path::Path, missing: &std::path::Path) -> String {
    if missing == path {
        String::new()
    } else {
        format!(
            " (`{}` is missing: is its drive connected?)",
            missing.display()
        )
    }
}

impl EngineError {
    /// The stable kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Hub(e) => e.kind(),
            EngineError::Download(e) => e.kind(),
            EngineError::Scheduler(e) => e.kind(),
            EngineError::Policy(e) => e.kind(),
            EngineError::Index(e) => e.kind(),
            EngineError::Store(e) => e.kind(),
            EngineError::Doctor(e) => e.kind(),
            EngineError::Preferences(e) => e.kind(),
            EngineError::Settings(e) => e.kind(),
            EngineError::Selection(e) => e.kind(),
            EngineError::Inspect(e) => e.kind(),
            EngineError::Import(e) => crate::error::Diagnostic::kind(e),
            EngineError::Bucket(e) => crate::error::Diagnostic::kind(e),
            EngineError::Convert(e) => e.kind(),
            EngineError::Peer(e) => crate::error::Diagnostic::kind(e),
            EngineError::NoBucket => ErrorKind::InvalidInput,
            EngineError::NoSuchVariant { .. } => ErrorKind::NoSuchVariant,
            EngineError::NothingSelected { .. } => ErrorKind::NothingSelected,
            EngineError::NoRepo | EngineError::InvalidSearch { .. } => ErrorKind::InvalidInput,
            EngineError::OfflineMiss { .. } => ErrorKind::OfflineMiss,
            EngineError::NotCached { .. } => ErrorKind::NotCached,
            EngineError::CacheFolderMissing { .. } => ErrorKind::CacheUnavailable,
        }
    }

    /// What the user can do about it.
    pub fn hints(&self) -> Vec<Hint> {
        match self {
            EngineError::Hub(e) => e.hints(),
            EngineError::Download(e) => e.hints(),
            EngineError::Scheduler(e) => e.hints(),
            EngineError::Policy(e) => e.hints(),
            EngineError::Index(e) => e.hints(),
            EngineError::Store(e) => e.hints(),
            EngineError::Doctor(e) => e.hints(),
            EngineError::Preferences(e) => e.hints(),
            EngineError::Settings(e) => e.hints(),
            EngineError::Selection(e) => e.hints(),
            EngineError::Inspect(e) => e.hints(),
            EngineError::Import(e) => crate::error::Diagnostic::hints(e),
            EngineError::Bucket(e) => crate::error::Diagnostic::hints(e),
            EngineError::Convert(e) => e.hints(),
            EngineError::Peer(e) => crate::error::Diagnostic::hints(e),
            EngineError::NoBucket => Vec::new(),
            EngineError::NoSuchVariant { repo, .. } => {
                vec![Hint::ListVariants { repo: repo.clone() }]
            }
            EngineError::NothingSelected { .. } => vec![Hint::CheckSelection],
            EngineError::NoRepo | EngineError::InvalidSearch { .. } => Vec::new(),
            EngineError::OfflineMiss { repo, .. } => {
                vec![Hint::PullWhileOnline { repo: repo.clone() }]
            }
            EngineError::NotCached { .. } => vec![Hint::ListCached],
            EngineError::CacheFolderMissing { path, .. } => {
                vec![Hint::ConnectCacheDrive { path: path.clone() }]
            }
        }
    }
}

impl Diagnostic for EngineError {
    fn kind(&self) -> ErrorKind {
        EngineError::kind(self)
    }

    fn hints(&self) -> Vec<Hint> {
        EngineError::hints(self)
    }
}
