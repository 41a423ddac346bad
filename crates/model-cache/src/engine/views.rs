//! What the facade returns: plain serialisable views the edges render.
//!
//! **API Boundary:** these are sent over the local API and printed by `mcache --json`; fields
//! are added, never renamed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::fit::{FitEstimate, MachineMemory};
use crate::variants::Variant;

pub use crate::doctor::{DoctorError, DoctorReport};
pub use crate::metrics::{Counters, HealthReport, VolumeReport};
pub use crate::store::{CorruptFile, VerifyReport};

/// The variants of a repo at a revision, with fit hints and a recommendation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantsReport {
    pub repo: String,
    pub revision: String,
    /// The commit the listing was read at (`None` when read from the cache offline without a
    /// known commit).
    pub commit: Option<String>,
    pub variants: Vec<VariantView>,
    /// The `id` of the recommended variant.
    pub recommended: Option<String>,
    pub machine: MachineMemory,
    /// Whether the listing came from the cache (offline) instead of the Hub.
    pub from_cache: bool,
}

/// A variant with its fit estimate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantView {
    #[serde(flatten)]
    pub variant: Variant,
    pub fit: FitEstimate,
    pub recommended: bool,
}

/// A job action from the UI, the CLI or the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobAction {
    Pause,
    Resume,
    Cancel,
    MoveUp,
    MoveDown,
}

/// A model in the cache, as the cache browser shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedRepoView {
    pub repo: String,
    pub repo_type: crate::repo::RepoType,
    pub size_bytes: u64,
    /// Unix milliseconds of the last use through Model Cache (or the file times).
    pub last_used: Option<i64>,
    pub pinned: bool,
    pub path: PathBuf,
    pub revisions: Vec<CachedRevisionView>,
    /// Followed branches with a newer commit on the Hub (the last update check's finding).
    #[serde(default)]
    pub updates: Vec<super::UpdateView>,
    /// Branches the user keeps at their current commit.
    #[serde(default)]
    pub held: Vec<super::HeldView>,
}

/// One cached revision of a model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedRevisionView {
    pub commit: String,
    pub refs: Vec<String>,
    pub size_bytes: u64,
    pub files: usize,
    pub snapshot_path: PathBuf,
}

/// Counters and health together, for `mcache stats` and the UI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub counters: Counters,
    pub health: HealthReport,
    /// The most recent finished downloads of the queue, newest first.
    pub downloads: Vec<FinishedDownload>,
}

/// One finished download and how fast it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishedDownload {
    pub repo: String,
    pub variant: Option<String>,
    /// Bytes transferred (not counting files found in the cache).
    pub bytes: u64,
    pub bytes_from_cache: u64,
    pub seconds: f64,
    pub speed_bps: u64,
    /// Unix milliseconds.
    pub finished_at: i64,
}
