//! What the local mirror asks of the engine: cached snapshots as the Hub describes them, reads
//! registered in flight, the upstream Hub's answers, and pull-through downloads.
//!
//! A pull-through is an ordinary queue job for one file at one commit, so it follows the
//! scheduler's rules (pause, deferral, the disk budget) and the downloader's (verified,
//! resumable, one writer per blob). Clients asking for a file a job already fetches join that
//! job: [`Engine::fetch_through`] finds it under a lock, so several clients cause one download.

use std::path::PathBuf;

use tokio::sync::broadcast;

use super::{Engine, EngineError};
use crate::hub::{FileMetadata, RepoInfo, TreeEntry};
use crate::index::in_flight::{Activity, InFlightGuard};
use crate::index::queue::{NewQueueJob, QueueState};
use crate::policy::usage::Used;
use crate::repo::RepoId;
use crate::scheduler::SchedulerEvent;
use crate::selection::Selection;
use crate::serve::{Access, ServedFile, served_files};
use crate::store::{SafeRelPath, is_commit_hash};

/// Priority of a pull-through job: a client is waiting on it, so it goes before queued pulls.
const PULL_THROUGH_PRIORITY: i64 = 100;

/// An open cached file, registered as read in flight until dropped.
pub struct ServedRead {
    pub file: std::fs::File,
    _in_flight: InFlightGuard,
}

/// A pull-through download a client follows: its job, the file it writes and, once linked,
/// the blob. Subscribed before the job was looked up, so no event of it is missed.
pub struct Fetch {
    pub job_id: i64,
    /// Where the bytes land while the download runs (the blob's private partial file).
    pub partial: PathBuf,
    /// Where they are once verified.
    pub blob: PathBuf,
    pub events: broadcast::Receiver<SchedulerEvent>,
    /// Why the joined job waits, when it was found deferred (disk, battery, hours): the
    /// client is told at once instead of after a timeout.
    pub waiting: Option<String>,
}

impl Engine {
    /// The commit `revision` (a branch, tag or commit) points to in the cache. `HEAD`, the
    /// Hub's name of a repo's default branch, is `main` here (the cache does not record which
    /// branch is the default).
    pub fn cached_commit(&self, repo: &RepoId, revision: &str) -> Option<String> {
        let revision = if revision == "HEAD" { "main" } else { revision };
        // A branch a paired peer says moved is not answered from the cache until the Hub
        // settles it (`Engine::settle_stale_refs`).
        if self.stale_ref(repo, revision).is_some() {
            return None;
        }
        self.inner
            .cache
            .repo(repo)
            .cached_commit(revision)
            .filter(|commit| is_commit_hash(commit))
    }

    /// The files of a cached snapshot, each with its etag and size.
    pub fn served_files(&self, repo: &RepoId, commit: &str) -> Vec<ServedFile> {
        let repo_cache = self.inner.cache.repo(repo);
        served_files(repo_cache.snapshot_files(commit).into_iter().map(|file| {
            let local = SafeRelPath::new(&file.path)
                .map(|rel| repo_cache.snapshot_path(commit, &rel))
                .unwrap_or_default();
            (file.path, file.etag, file.size, local)
        }))
    }

    /// One cached file of a snapshot.
    pub fn served_file(&self, repo: &RepoId, commit: &str, path: &str) -> Option<ServedFile> {
        let rel = SafeRelPath::new(path).ok()?;
        let repo_cache = self.inner.cache.repo(repo);
        let local = repo_cache.snapshot_path(commit, &rel);
        let size = std::fs::metadata(&local)
            .ok()
            .filter(|m| m.is_file())?
            .len();
        let etag = std::fs::read_link(&local)
            .ok()?
            .file_name()?
            .to_string_lossy()
            .into_owned();
        served_files([(path.to_string(), etag, size, local)]).pop()
    }

    /// Whether the repo may be served without the mirror token: only when the Hub said it is
    /// public and not gated.
    pub fn access(&self, repo: &RepoId) -> Access {
        // One indexed row per request: this runs for every range a client asks for.
        match self.inner.index.repo_access(repo) {
            Ok(Some(access))
                if access.private == Some(false)
                    && matches!(access.gated.as_deref(), Some("open" | "false")) =>
            {
                Access::Public
            }
            _ => Access::Restricted,
        }
    }

    /// Opens a cached file for a client, registered as read in flight (so no removal takes its
    /// blob) until the returned read is dropped, and counted as a use of the model.
    pub fn open_served(
        &self,
        repo: &RepoId,
        commit: &str,
        file: &ServedFile,
    ) -> Result<ServedRead, EngineError> {
        let in_flight = self.inner.index.begin_in_flight(
            Activity::Read,
            self.inner.cache.root(),
            &repo.folder_name(),
            Some(commit),
            Some(&file.etag),
            0,
        )?;
        let opened = std::fs::File::open(&file.local).map_err(|_| EngineError::OfflineMiss {
            repo: repo.to_string(),
            revision: commit.to_string(),
            file: file.path.clone(),
        })?;
        self.touch(
            repo,
            Used::CachedFile {
                revision: commit,
                file: &file.path,
            },
        );
        Ok(ServedRead {
            file: opened,
            _in_flight: in_flight,
        })
    }

    /// Records that the upstream Hub resolved the branch or tag `revision` to `commit`, as Hub
    /// clients do (`refs/<revision>`), so the cache answers for the revision when the Hub does
    /// not (offline, or a client without the mirror token). A commit hash, `HEAD` and a name
    /// that is not a safe path record nothing.
    pub fn note_ref(&self, repo: &RepoId, revision: &str, commit: &str) {
        if is_commit_hash(revision) || revision == "HEAD" || !is_commit_hash(commit) {
            return;
        }
        let repo_cache = self.inner.cache.repo(repo);
        if repo_cache.read_ref(revision).as_deref() == Some(commit) {
            return;
        }
        if let Err(error) = repo_cache
            .ensure_dirs()
            .and_then(|()| repo_cache.write_ref(revision, commit))
        {
            tracing::debug!(%repo, %revision, %error, "could not record a ref");
        }
    }

    /// Whether upstream calls are possible at all (not offline).
    pub fn upstream_enabled(&self) -> bool {
        !self.inner.hub.is_offline()
    }

    /// The upstream Hub's metadata of a file at a revision (its `HEAD`).
    pub async fn upstream_file(
        &self,
        repo: &RepoId,
        revision: &str,
        path: &str,
    ) -> Result<FileMetadata, EngineError> {
        Ok(self.inner.hub.file_metadata(repo, revision, path).await?)
    }

    /// The upstream Hub's repo info at a revision (or its default branch), with file sizes.
    /// What it says about access is recorded, so the repo's cached files are served without
    /// the mirror token only when it is public.
    pub async fn upstream_info(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
    ) -> Result<RepoInfo, EngineError> {
        let info = self.inner.hub.repo_info(repo, revision).await?;
        self.record_access(repo, &info);
        Ok(info)
    }

    /// Keeps what repo info said about access (private, gated), which decides whether the
    /// mirror serves the repo's cached files without its token.
    pub(super) fn record_access(&self, repo: &RepoId, info: &RepoInfo) {
        let gated = match info.gated {
            crate::hub::Gating::Open => "open",
            crate::hub::Gating::Auto => "auto",
            crate::hub::Gating::Manual => "manual",
        };
        if let Err(error) = self.inner.index.record_repo_details(
            repo,
            info.private,
            gated,
            info.last_modified.as_deref(),
        ) {
            tracing::debug!(%repo, %error, "could not record repo details");
        }
    }

    /// The upstream Hub's tree listing at a revision.
    pub async fn upstream_tree(
        &self,
        repo: &RepoId,
        revision: &str,
        path: Option<&str>,
        recursive: bool,
    ) -> Result<Vec<TreeEntry>, EngineError> {
        Ok(self
            .inner
            .hub
            .list_tree(repo, revision, path, recursive)
            .await?)
    }

    /// Starts (or joins) the download of one file at a commit, for a client waiting on it: a
    /// queue job for that file alone, at a high priority. A job already queued or running for
    /// the same file is joined instead, so several clients cause one download.
    pub fn fetch_through(
        &self,
        repo: &RepoId,
        commit: &str,
        path: &str,
        meta: &FileMetadata,
    ) -> Result<Fetch, EngineError> {
        let events = self.inner.scheduler.subscribe();
        let (job_id, waiting) = {
            let _one_at_a_time = super::lock(&self.inner.fetching);
            let active = self.inner.scheduler.jobs()?.into_iter().find(|job| {
                &job.repo == repo
                    && job.revision == commit
                    && job.selection.files == [path]
                    && !job.state.is_terminal()
            });
            match active {
                Some(job) => {
                    if job.state == QueueState::Paused {
                        self.inner.scheduler.resume(job.id)?;
                    }
                    let waiting = (job.state == QueueState::Deferred)
                        .then(|| deferred_message(&job))
                        .flatten();
                    (job.id, waiting)
                }
                None => {
                    // What the Hub says about access, for serving the file later without the
                    // token (best effort, beside the download).
                    let engine = self.clone();
                    let for_repo = repo.clone();
                    tokio::spawn(async move {
                        let _ = engine.upstream_info(&for_repo, None).await;
                    });
                    let job = self.inner.scheduler.enqueue(NewQueueJob {
                        repo: repo.clone(),
                        revision: commit.to_string(),
                        selection: Selection::files([path.to_string()]),
                        priority: PULL_THROUGH_PRIORITY,
                        bytes_total: Some(meta.size),
                        convert: None,
                    })?;
                    tracing::info!(%repo, %path, job = job.id, "Fetching a file for a mirror client");
                    (job.id, None)
                }
            }
        };
        let repo_cache = self.inner.cache.repo(repo);
        Ok(Fetch {
            job_id,
            partial: repo_cache.partial_path(&meta.etag),
            blob: repo_cache.blob_path(&meta.etag),
            events,
            waiting,
        })
    }
}

/// Why a deferred job waits, as the user reads it.
pub fn deferred_message(job: &crate::index::queue::QueueJob) -> Option<String> {
    job.defer_message
        .clone()
        .or_else(|| job.defer_reason.as_ref().map(ToString::to_string))
}
