//! What the scheduler runs: the [`JobRunner`] trait, and [`DownloaderRunner`], the real one on
//! the [`Downloader`].
//!
//! The scheduler decides *when*; a runner does the work of one queue job and reports progress.
//! Keeping it a trait lets the scheduler's own tests count exactly what it started, while the
//! real runner is exercised end to end against the hub emulator.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::download::{DownloadError, DownloadRequest, Downloader, FileSpec, JobControl, Reporter};
use crate::error::{ErrorKind, Hint};
use crate::hub::{HubClient, TreeEntry};
use crate::index::queue::QueueJob;

/// How a run ended, when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFailure {
    /// The disk filled while writing; the job waits for space instead of failing.
    DiskFull { needed: u64, available: u64 },
    /// Cancelled through its control.
    Cancelled,
    /// Anything else. `transient` failures (the network's) are tried again later; the others
    /// fail the job.
    Failed {
        kind: ErrorKind,
        message: String,
        hints: Vec<Hint>,
        transient: bool,
    },
}

/// A successful run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub bytes_downloaded: u64,
    pub bytes_saved: u64,
    pub commit: Option<String>,
}

/// A run in progress: its control (pause, resume, cancel) and its outcome.
pub struct StartedJob {
    pub control: JobControl,
    pub outcome: BoxFuture<'static, Result<RunSummary, RunFailure>>,
}

/// Runs queue jobs.
pub trait JobRunner: Send + Sync + 'static {
    /// Bytes the job's selection needs, from a listing, without downloading. `Ok(None)` when the
    /// runner cannot tell.
    fn size(&self, job: &QueueJob) -> BoxFuture<'static, Result<Option<u64>, RunFailure>>;

    /// Starts the job. Progress goes to `reporter`; the outcome resolves when the job ends.
    fn start(&self, job: &QueueJob, reporter: Arc<dyn Reporter>) -> StartedJob;
}

fn failure_from(error: DownloadError) -> RunFailure {
    match error {
        DownloadError::DiskFull { needed, free, .. } => RunFailure::DiskFull {
            needed,
            available: free,
        },
        DownloadError::Cancelled { .. } => RunFailure::Cancelled,
        DownloadError::Partial { first, .. }
            if matches!(*first, DownloadError::DiskFull { .. }) =>
        {
            failure_from(*first)
        }
        other => RunFailure::Failed {
            kind: other.kind(),
            message: other.to_string(),
            hints: other.hints(),
            transient: other.is_transient(),
        },
    }
}

/// The real runner: lists the repo, picks the selection's files and hands them to the
/// [`Downloader`], which resumes from recorded chunks after a restart.
#[derive(Clone)]
pub struct DownloaderRunner {
    pub hub: HubClient,
    pub downloader: Downloader,
}

impl DownloaderRunner {
    pub fn new(hub: HubClient, downloader: Downloader) -> Self {
        DownloaderRunner { hub, downloader }
    }

    async fn list(hub: &HubClient, job: &QueueJob) -> Result<Vec<TreeEntry>, RunFailure> {
        let entries = hub
            .list_tree(&job.repo, &job.revision, None, true)
            .await
            .map_err(|e| RunFailure::Failed {
                kind: e.kind(),
                message: e.to_string(),
                hints: e.hints(),
                transient: e.is_retryable(),
            })?;
        let picked = job
            .selection
            .pick(&entries)
            .map_err(|e| RunFailure::Failed {
                kind: e.kind(),
                message: e.to_string(),
                hints: e.hints(),
                transient: false,
            })?;
        if picked.is_empty() {
            return Err(RunFailure::Failed {
                kind: ErrorKind::NothingSelected,
                message: format!(
                    "No file of `{}` at `{}` matches the selection",
                    job.repo, job.revision
                ),
                hints: vec![Hint::CheckSelection],
                transient: false,
            });
        }
        Ok(picked.into_iter().cloned().collect())
    }
}

impl JobRunner for DownloaderRunner {
    fn size(&self, job: &QueueJob) -> BoxFuture<'static, Result<Option<u64>, RunFailure>> {
        let hub = self.hub.clone();
        let job = job.clone();
        Box::pin(async move {
            let files = Self::list(&hub, &job).await?;
            Ok(Some(files.iter().map(|f| f.size).sum()))
        })
    }

    fn start(&self, job: &QueueJob, reporter: Arc<dyn Reporter>) -> StartedJob {
        let outer = JobControl::new();
        let control = outer.clone();
        let hub = self.hub.clone();
        let downloader = self.downloader.clone();
        let job = job.clone();
        let outcome = Box::pin(async move {
            let files = tokio::select! {
                files = Self::list(&hub, &job) => files?,
                _ = outer.cancelled() => return Err(RunFailure::Cancelled),
            };
            // A pause requested while listing holds the start until resumed.
            tokio::select! {
                _ = outer.running() => {}
                _ = outer.cancelled() => return Err(RunFailure::Cancelled),
            }
            if outer.is_cancelled() {
                return Err(RunFailure::Cancelled);
            }
            let request = DownloadRequest {
                repo: job.repo.clone(),
                revision: job.revision.clone(),
                files: files.into_iter().map(|f| FileSpec::from(f.path)).collect(),
            };
            let handle = downloader.start(request, reporter);
            let inner = handle.control().clone();
            // Forward pause, resume and cancel from the scheduler's control to the download's.
            let forward = async {
                loop {
                    tokio::select! {
                        _ = outer.cancelled() => {
                            inner.cancel();
                            futures::future::pending::<()>().await;
                        }
                        _ = outer.paused() => {
                            inner.pause();
                            tokio::select! {
                                _ = outer.running() => inner.resume(),
                                _ = outer.cancelled() => inner.cancel(),
                            }
                        }
                    }
                }
            };
            let result = tokio::select! {
                result = handle.wait() => result,
                _ = forward => unreachable!("the forwarding loop never ends"),
            };
            match result {
                Ok(summary) => Ok(RunSummary {
                    bytes_downloaded: summary.bytes_downloaded,
                    bytes_saved: summary.bytes_saved,
                    commit: Some(summary.commit),
                }),
                Err(error) => Err(failure_from(error)),
            }
        });
        StartedJob { control, outcome }
    }
}
