//! Cache policies: when downloads may run, and how the cache keeps within its space.
//!
//! - [`probe`]: power, disk and memory, read through small traits (real and fake).
//! - [`defer`]: the pure decision "run now or defer, and why" ([`defer::decide`]).
//! - [`evict`]: the pure eviction plan, least recently used first, pinned models never
//!   ([`evict::plan_eviction`]); the unit is the variant when a revision holds several.
//! - [`usage`]: which variant a file belongs to, and recording the use of a repo and its
//!   variants ([`usage::record`]).
//! - [`clock`]: the wall clock and local time of day (real and fake).
//! - [`cleanup`]: [`cleanup::Janitor`] ties the inventory to the index (last use, pins) and runs
//!   eviction, removal and cleanup with the index kept consistent.
//! - [`gc`]: the file-system side: an inventory of the hub cache, removal of revisions with
//!   their now-unreferenced blobs and refs, stale `.incomplete` files, unreferenced blobs, old
//!   revisions.
//!
//! **Architecture Invariant:** nothing here removes a path outside the hub-cache root, and
//! nothing follows a symlink out of it.

pub mod cleanup;
pub mod clock;
pub mod defer;
pub mod evict;
pub mod gc;
pub mod probe;
pub mod usage;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, Hint};

pub use clock::{Clock, FakeClock, SystemClock};
pub use defer::{
    BatteryPolicy, Conditions, Decision, DeferReason, HumanBytes, MeteredPolicy, ReservePolicy,
    SchedulePolicy, ScheduleWindow, WhenShort, decide,
};
pub use evict::{CachedRevision, CachedVariant, EvictionGoal, EvictionPlan, plan_eviction};
pub use probe::{
    Changes, DiskProbe, DiskSpace, FakeDisk, FakePower, FsDiskProbe, MeteredProbe, PowerProbe,
    PowerSource, PowerState, SystemPowerProbe, UnknownMetering,
};

/// How the cache keeps within its space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachePolicy {
    /// Size budget of the hub cache in bytes; `None` for no budget.
    pub budget: Option<u64>,
    /// Clean up automatically in the background when the budget is exceeded.
    pub auto_cleanup: bool,
    /// `.incomplete` files untouched for this long, and not part of a known job, are removed.
    pub stale_incomplete_after: Duration,
    /// Blobs no snapshot links are removed once they are this old (younger ones may be a
    /// download between its rename and its link).
    pub unreferenced_blob_grace: Duration,
    /// Remove a repo's old revisions (no ref points at them) once a newer one is complete.
    pub prune_old_revisions: bool,
    /// Storage alert thresholds in percent of the budget, ascending (default 80 and 95).
    pub alert_percents: Vec<u8>,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            budget: None,
            auto_cleanup: true,
            stale_incomplete_after: Duration::from_secs(7 * 86_400),
            unreferenced_blob_grace: Duration::from_secs(3600),
            prune_old_revisions: false,
            alert_percents: vec![80, 95],
        }
    }
}

impl PolicyError {
    /// The stable kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PolicyError::NotCached { .. } => ErrorKind::NotCached,
            PolicyError::Pinned { .. } => ErrorKind::Pinned,
            PolicyError::InUse { .. } => ErrorKind::InUse,
            PolicyError::Index { source } => source.kind(),
            PolicyError::Store(source) => source.kind(),
            PolicyError::Battery { .. } | PolicyError::DiskSpace { .. } => ErrorKind::Policy,
        }
    }

    /// What the user can do about it.
    pub fn hints(&self) -> Vec<Hint> {
        match self {
            PolicyError::NotCached { .. } => vec![Hint::ListCached],
            PolicyError::Pinned { repo, .. } => vec![Hint::Unpin { repo: repo.clone() }],
            PolicyError::InUse { .. } => vec![Hint::RetryLater],
            PolicyError::Index { source } => source.hints(),
            PolicyError::Store(source) => source.hints(),
            _ => Vec::new(),
        }
    }
}

impl crate::error::Diagnostic for PolicyError {
    fn kind(&self) -> crate::error::ErrorKind {
        PolicyError::kind(self)
    }

    fn hints(&self) -> Vec<crate::error::Hint> {
        PolicyError::hints(self)
    }
}

/// Errors of the policy layer.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("Could not read the battery state")]
    Battery {
        #[source]
        source: Box<battery::Error>,
    },
    #[error("Could not read the free space of `{}`", path.display())]
    DiskSpace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading or changing the cache on disk failed (the store's error).
    #[error(transparent)]
    Store(crate::store::StoreError),
    #[error("Revision `{commit}` of `{repo}` is not in the cache")]
    NotCached { repo: String, commit: String },
    #[error("Revision `{commit}` of `{repo}` is pinned")]
    Pinned { repo: String, commit: String },
    /// A download (of any process) is filling the revision, or a file of it is being read.
    #[error(
        "Revision `{commit}` of `{repo}` is in use: a download is filling it or a file of it is being read"
    )]
    InUse { repo: String, commit: String },
    #[error("Could not update the index after a cache change")]
    Index {
        #[source]
        source: crate::index::IndexError,
    },
}

impl From<crate::store::StoreError> for PolicyError {
    /// A revision the store did not find is this module's `NotCached`, which callers match on.
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::NotCached { repo, commit } => {
                PolicyError::NotCached { repo, commit }
            }
            other => PolicyError::Store(other),
        }
    }
}
