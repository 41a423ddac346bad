//! Async access to the download-job tables of the index ([`crate::index::transfers`]). SQLite
//! calls block, so each runs on a blocking thread.

use std::path::PathBuf;

use super::error::DownloadError;
use crate::index::in_flight::{Activity, InFlightGuard};
use crate::index::transfers::{self, DoneChunk, JobState, NewTransferJob, TransferJob};
use crate::index::{Index, IndexError};

/// The index, seen by the downloader.
#[derive(Clone)]
pub(crate) struct JobDb {
    index: Index,
}

fn index_error(what: &'static str) -> impl FnOnce(IndexError) -> DownloadError {
    move |source| DownloadError::Index {
        what,
        source: Box::new(source),
    }
}

impl JobDb {
    pub(super) fn new(index: Index) -> Self {
        JobDb { index }
    }

    pub(super) fn index(&self) -> &Index {
        &self.index
    }

    async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DownloadError> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.with_conn(what, f))
            .await
            .map_err(|e| DownloadError::Index {
                what,
                source: Box::new(e),
            })?
            .map_err(index_error(what))
    }

    /// Registers a download in flight (the snapshot it fills and, with an etag, the blob it
    /// writes), so that no process removes them under it; the entry ends with the guard.
    pub(super) async fn begin_in_flight(
        &self,
        cache_root: PathBuf,
        repo: String,
        commit: String,
        etag: Option<String>,
        reserved: u64,
    ) -> Result<InFlightGuard, DownloadError> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || {
            index.begin_in_flight(
                Activity::Download,
                &cache_root,
                &repo,
                Some(&commit),
                etag.as_deref(),
                reserved,
            )
        })
        .await
        .map_err(|e| DownloadError::Index {
            what: "registering a download in flight",
            source: Box::new(e),
        })?
        .map_err(index_error("registering a download in flight"))
    }

    pub(super) async fn find_unfinished(
        &self,
        repo: String,
        etag: String,
    ) -> Result<Option<(TransferJob, Vec<DoneChunk>)>, DownloadError> {
        self.run("looking up a download job", move |c| {
            let Some(job) = transfers::find_unfinished(c, &repo, &etag)? else {
                return Ok(None);
            };
            let chunks = transfers::done_chunks(c, job.id)?;
            Ok(Some((job, chunks)))
        })
        .await
    }

    pub(super) async fn create(&self, job: OwnedNewJob) -> Result<i64, DownloadError> {
        self.run("creating a download job", move |c| {
            transfers::create(
                c,
                &NewTransferJob {
                    repo: &job.repo,
                    revision: &job.revision,
                    commit: &job.commit,
                    path: &job.path,
                    etag: &job.etag,
                    size: job.size,
                    chunk_size: job.chunk_size,
                    validator: &job.validator,
                },
            )
        })
        .await
    }

    pub(super) async fn record_done(
        &self,
        id: i64,
        chunks: Vec<DoneChunk>,
    ) -> Result<(), DownloadError> {
        self.run("recording finished chunks", move |c| {
            transfers::record_done(c, id, &chunks)
        })
        .await
    }

    pub(super) async fn record_partial(
        &self,
        id: i64,
        chunk: transfers::PartialChunk,
    ) -> Result<(), DownloadError> {
        self.run("recording a chunk's progress", move |c| {
            transfers::record_partial(c, id, &chunk)
        })
        .await
    }

    pub(super) async fn partial_chunks(
        &self,
        id: i64,
    ) -> Result<Vec<transfers::PartialChunk>, DownloadError> {
        self.run("reading chunks in flight", move |c| {
            transfers::partial_chunks(c, id)
        })
        .await
    }

    pub(super) async fn done_chunks(&self, id: i64) -> Result<Vec<DoneChunk>, DownloadError> {
        self.run("reading finished chunks", move |c| {
            transfers::done_chunks(c, id)
        })
        .await
    }

    pub(super) async fn forget_chunks(
        &self,
        id: i64,
        indices: Vec<u64>,
    ) -> Result<(), DownloadError> {
        self.run("forgetting torn chunks", move |c| {
            transfers::forget_chunks(c, id, &indices)
        })
        .await
    }

    pub(super) async fn clear_chunks(&self, id: i64) -> Result<(), DownloadError> {
        self.run("forgetting chunks", move |c| transfers::clear_chunks(c, id))
            .await
    }

    pub(super) async fn set_state(
        &self,
        id: i64,
        state: JobState,
        error: Option<String>,
    ) -> Result<(), DownloadError> {
        self.run("updating a download job", move |c| {
            transfers::set_state(c, id, state, error.as_deref())
        })
        .await
    }

    pub(super) async fn set_validator(
        &self,
        id: i64,
        validator: String,
    ) -> Result<(), DownloadError> {
        self.run("updating a download job", move |c| {
            transfers::set_validator(c, id, &validator)
        })
        .await
    }

    pub(super) async fn finish(&self, id: i64) -> Result<(), DownloadError> {
        self.run("finishing a download job", move |c| {
            transfers::finish(c, id)
        })
        .await
    }

    pub(super) async fn delete(&self, id: i64) -> Result<(), DownloadError> {
        self.run("deleting a download job", move |c| transfers::delete(c, id))
            .await
    }
}

/// [`NewTransferJob`] with owned fields, to cross into a blocking thread.
pub(crate) struct OwnedNewJob {
    pub repo: String,
    pub revision: String,
    pub commit: String,
    pub path: String,
    pub etag: String,
    pub size: u64,
    pub chunk_size: u64,
    pub validator: String,
}
