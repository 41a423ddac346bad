//! The downloader: parallel, resumable, verified transfers into the Hugging Face cache layout.
//!
//! One [`Downloader`] per engine holds the global limits ([`TransferLimits`]: connections in
//! total and per host, files at once, one bandwidth [`TokenBucket`]). A [`DownloadRequest`]
//! names a repo, a revision and files (or none, for the whole repo); [`Downloader::start`] runs
//! it in the background and returns a [`DownloadHandle`] whose [`JobControl`] pauses, resumes or
//! cancels it, while progress goes to a [`Reporter`] as [`DownloadEvent`]s.
//!
//! Per file:
//! 1. Resolve its metadata (a `HEAD` on `resolve`, unless the caller passed it) and validate its
//!    name through [`SafeRelPath`] before anything is written.
//! 2. If `blobs/{etag}` exists, link it; if another repo of the cache holds a blob with the same
//!    etag (a content hash), hard-link or copy it. Either way nothing is downloaded and the bytes
//!    saved are counted.
//! 3. Otherwise take the blob lock (`.locks/...`, shared with `huggingface_hub`), look again (a
//!    process that held the lock may have finished it), and transfer: chunks of
//!    `limits.chunk_size` over parallel range requests with `If-Range`, written in place into a
//!    preallocated `blobs/{etag}.incomplete`, each chunk flushed and recorded in the index so a
//!    restarted process fetches only chunks not recorded (see `transfer`).
//! 4. Hash the contiguous done prefix while the download runs (sha256 for LFS, git-sha1 for git
//!    files); on a mismatch, refetch torn chunks, then the whole file once; if it is still wrong,
//!    fail and link nothing.
//! 5. Rename to `blobs/{etag}`, link `snapshots/{commit}/{path}`, write `refs/{revision}`.
//!
//! The bytes of one file may come from several sources (`source`): the Hub's download URL and
//! every configured mirror that has the same file at the same commit. Segments are spread over
//! them by measured throughput; whichever source served a byte, the file is checked against the
//! Hub's hash.
//!
//! A `200` where a range was asked either means the server ignores `Range` (then one sequential
//! stream is used) or the file changed upstream (then its progress is discarded, its metadata
//! resolved again and the file restarted: versions are never mixed). A `416` restarts the file.

mod control;
mod error;
mod events;
mod jobs;
mod limits;
pub(crate) mod peers;
mod plan;
mod ramp;
mod source;
mod transfer;
mod writer;
#[cfg(feature = "xet")]
mod xet;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

pub use control::JobControl;
pub use error::DownloadError;
pub use events::{
    ChannelReporter, DownloadEvent, NoReporter, RecordingReporter, Reporter, SourceUse,
};
pub use limits::{Clock, ConnectionPermit, SystemClock, TokenBucket, TransferLimits};
pub use plan::ChunkPlan;

use crate::hash::{ExpectedDigest, PrefixHasher};
use crate::hub::retry::RetryPolicy;
use crate::hub::{EntryKind, FileMetadata, HubClient, HubError, TreeEntry};
use crate::index::transfers::JobState;
use crate::index::{BlobStamp, Index};
use crate::repo::RepoId;
use crate::settings::Settings;
use crate::store::{
    HubCache, RepoCache, SafeRelPath, StoreError, is_commit_hash, is_valid_etag, layout,
};
use jobs::{JobDb, OwnedNewJob};
use transfer::{BlobTransfer, Shared, TransferContext, TransferFailure};
use writer::{BlobWriter, WriteFailure};

/// How often a file may change upstream during one download before the download gives up.
const MAX_RESTARTS: u32 = 3;
/// How often a waiter looks at a blob lock held by another process.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// What to download.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    pub repo: RepoId,
    /// Branch, tag or commit.
    pub revision: String,
    /// Files to fetch; empty for every file of the repo at that revision.
    pub files: Vec<FileSpec>,
}

/// One file of a request: its path, and its metadata when the caller already resolved it (a
/// listing it just made), which saves a `HEAD`.
#[derive(Debug, Clone)]
pub struct FileSpec {
    pub path: String,
    pub metadata: Option<FileMetadata>,
}

impl From<&str> for FileSpec {
    fn from(path: &str) -> Self {
        FileSpec {
            path: path.to_string(),
            metadata: None,
        }
    }
}

impl From<String> for FileSpec {
    fn from(path: String) -> Self {
        FileSpec {
            path,
            metadata: None,
        }
    }
}

/// Where a file's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileSource {
    /// Transferred over the network (perhaps partly, when resumed).
    Downloaded,
    /// Already in this repo's cache.
    Cached,
    /// Linked or copied from another repo's identical blob.
    SharedBlob,
}

/// One file of a finished request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileOutcome {
    pub path: String,
    pub etag: String,
    pub size: u64,
    pub commit: String,
    /// `snapshots/{commit}/{path}` in the cache.
    pub snapshot_path: PathBuf,
    pub source: FileSource,
    /// The Hub published no hash for the file (its `ETag` is neither a sha256 nor a git sha1),
    /// so its bytes were not checked. Such a file is kept only when it came over `https`.
    #[serde(default)]
    pub unverified: bool,
    /// Bytes of a downloaded file that were copied from other cached blobs holding the same
    /// Xet chunks instead of being fetched (counted in [`DownloadSummary::bytes_saved`]).
    #[serde(default)]
    pub bytes_reused: u64,
}

/// The result of a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DownloadSummary {
    pub repo: String,
    pub revision: String,
    pub commit: String,
    pub files: Vec<FileOutcome>,
    /// Body bytes received from the network.
    pub bytes_downloaded: u64,
    /// Bytes not downloaded because they were cached or shared.
    pub bytes_saved: u64,
}

/// A request running in the background.
pub struct DownloadHandle {
    control: JobControl,
    task: tokio::task::JoinHandle<Result<DownloadSummary, DownloadError>>,
}

impl DownloadHandle {
    /// Pause, resume or cancel the request.
    pub fn control(&self) -> &JobControl {
        &self.control
    }

    /// Waits for the request to end.
    pub async fn wait(self) -> Result<DownloadSummary, DownloadError> {
        match self.task.await {
            Ok(result) => result,
            Err(error) => Err(DownloadError::Io {
                what: "run the download task for",
                path: PathBuf::new(),
                source: std::io::Error::other(error.to_string()),
            }),
        }
    }
}

/// The download engine. Cheap to clone; clones share limits.
#[derive(Clone)]
pub struct Downloader {
    inner: Arc<Inner>,
}

struct Inner {
    hub: HubClient,
    cache: HubCache,
    db: JobDb,
    limits: TransferLimits,
    chunk_size: u64,
    retry: RetryPolicy,
    stall: Duration,
    checkpoint: transfer::Checkpoint,
    start_connections: usize,
    offline: bool,
    /// The team bucket: a source for every file it has, and where verified downloads go when
    /// `push` is set.
    bucket: Option<crate::bucket::Bucket>,
    push: bool,
    /// The paired LAN peers, a source for every file one of them has.
    peers: peers::PeerClients,
    /// Pushes to the bucket running in the background, awaited by [`Downloader::wait_for_pushes`].
    pushes: std::sync::Mutex<tokio::task::JoinSet<()>>,
    /// Rebuild Xet-stored files from chunks (`download::xet`); without the `xet` feature,
    /// never.
    #[cfg_attr(
        not(feature = "xet"),
        expect(dead_code, reason = "read by the xet feature")
    )]
    xet_enabled: bool,
    /// The most the chunk index may weigh.
    #[cfg_attr(
        not(feature = "xet"),
        expect(dead_code, reason = "read by the xet feature")
    )]
    xet_index_bytes: u64,
    #[cfg(feature = "xet")]
    xet_tokens: xet::XetTokens,
}

impl Downloader {
    /// A downloader writing into `settings.hub_cache`, with the limits, retry policy and
    /// timeouts of `settings`.
    pub fn new(settings: &Settings, hub: HubClient, index: Index) -> Self {
        Downloader {
            inner: Arc::new(Inner {
                hub,
                cache: HubCache::new(settings.hub_cache.clone()),
                db: JobDb::new(index),
                limits: TransferLimits::new(&settings.limits),
                chunk_size: settings.limits.chunk_size.max(1),
                retry: settings.retry.clone(),
                stall: settings.timeouts.stall,
                start_connections: settings.limits.start_connections,
                checkpoint: transfer::Checkpoint {
                    every: settings.limits.checkpoint_every,
                    bytes: settings.limits.checkpoint_bytes.max(1),
                },
                offline: settings.offline,
                bucket: settings.bucket.as_ref().and_then(|b| {
                    crate::bucket::Bucket::new(b)
                        .inspect_err(|error| tracing::warn!(%error, "The team bucket is not used"))
                        .ok()
                }),
                push: settings.bucket.as_ref().is_some_and(|b| b.push),
                peers: peers::PeerClients::new(settings),
                pushes: std::sync::Mutex::new(tokio::task::JoinSet::new()),
                xet_enabled: settings.xet.enabled,
                xet_index_bytes: settings.xet.index_bytes,
                #[cfg(feature = "xet")]
                xet_tokens: xet::XetTokens::default(),
            }),
        }
    }

    /// The team bucket, when one is configured and usable.
    pub fn bucket(&self) -> Option<&crate::bucket::Bucket> {
        self.inner.bucket.as_ref()
    }

    /// Waits for the pushes to the team bucket started so far (a command that exits waits for
    /// its own pushes; the app lets them run).
    pub async fn wait_for_pushes(&self) {
        let mut pending = std::mem::take(&mut *self.inner.pushes.lock().expect("pushes lock"));
        while pending.join_next().await.is_some() {}
    }

    /// The shared limits.
    pub fn limits(&self) -> &TransferLimits {
        &self.inner.limits
    }

    /// Changes the global bandwidth limit (bytes per second, `None` for unlimited) while
    /// transfers run.
    pub fn set_rate(&self, bytes_per_second: Option<u64>) {
        self.inner.limits.bandwidth().set_rate(bytes_per_second);
    }

    /// Starts a request in the background.
    pub fn start(&self, request: DownloadRequest, reporter: Arc<dyn Reporter>) -> DownloadHandle {
        let control = JobControl::new();
        let inner = Arc::clone(&self.inner);
        let task = tokio::spawn(run(inner, request, reporter, control.clone()));
        DownloadHandle { control, task }
    }

    /// Runs a request to its end.
    pub async fn download(
        &self,
        request: DownloadRequest,
        reporter: Arc<dyn Reporter>,
    ) -> Result<DownloadSummary, DownloadError> {
        self.start(request, reporter).wait().await
    }
}

fn store_error(path: &str) -> impl FnOnce(StoreError) -> DownloadError + '_ {
    move |source| match source {
        StoreError::UnsafePath { name, reason } => DownloadError::UnsafePath {
            repo: String::new(),
            path: name,
            reason: reason.to_string(),
        },
        source => DownloadError::Store {
            path: path.to_string(),
            source: Box::new(source),
        },
    }
}

async fn run(
    inner: Arc<Inner>,
    request: DownloadRequest,
    reporter: Arc<dyn Reporter>,
    control: JobControl,
) -> Result<DownloadSummary, DownloadError> {
    let repo_name = request.repo.to_string();
    let result = if inner.offline {
        run_offline(&inner, &request)
    } else {
        run_online(&inner, &request, reporter.clone(), control).await
    };
    // Failures of single files were reported as they happened; the rest is reported here.
    if let Err(error) = &result
        && !matches!(
            error,
            DownloadError::Partial { .. } | DownloadError::File { .. }
        )
    {
        reporter.report(DownloadEvent::Failed {
            repo: repo_name,
            path: String::new(),
            kind: error.kind().to_string(),
            message: error.to_string(),
        });
    }
    result.map_err(|error| match error {
        DownloadError::File { source } => *source,
        other => other,
    })
}

/// Offline: everything from the cache, or an error naming what is missing.
fn run_offline(inner: &Inner, request: &DownloadRequest) -> Result<DownloadSummary, DownloadError> {
    let repo_cache = inner.cache.repo(&request.repo);
    let repo = request.repo.to_string();
    let offline = |missing: Vec<String>| DownloadError::Offline {
        repo: repo.clone(),
        revision: request.revision.clone(),
        missing,
    };
    let Some(commit) = repo_cache
        .cached_commit(&request.revision)
        .filter(|c| is_commit_hash(c))
    else {
        return Err(offline(vec![format!("refs/{}", request.revision)]));
    };
    let snapshot = repo_cache.snapshot_dir(&commit);
    let paths: Vec<String> = if request.files.is_empty() {
        if !snapshot.is_dir() {
            return Err(offline(vec![format!("snapshots/{commit}")]));
        }
        let mut found = Vec::new();
        collect_files(&snapshot, &snapshot, &mut found);
        found
    } else {
        request.files.iter().map(|f| f.path.clone()).collect()
    };
    let mut files = Vec::new();
    let mut missing = Vec::new();
    for path in paths {
        match repo_cache.resolve_cached(&commit, &path) {
            Some(snapshot_path) => {
                let size = std::fs::metadata(&snapshot_path)
                    .map(|m| m.len())
                    .unwrap_or(0);
                let etag = std::fs::read_link(&snapshot_path)
                    .ok()
                    .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_default();
                // Offline: what the etag names is all there is to go by.
                let unverified = !is_hex_digest(&etag);
                files.push(FileOutcome {
                    path,
                    etag,
                    size,
                    commit: commit.clone(),
                    source: FileSource::Cached,
                    unverified,
                    snapshot_path,
                    bytes_reused: 0,
                });
            }
            None => missing.push(path),
        }
    }
    if !missing.is_empty() {
        return Err(offline(missing));
    }
    let bytes_saved = files.iter().map(|f| f.size).sum();
    Ok(DownloadSummary {
        repo,
        revision: request.revision.clone(),
        commit,
        files,
        bytes_downloaded: 0,
        bytes_saved,
    })
}

fn collect_files(base: &Path, dir: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(base, &path, found);
        } else if let Ok(rel) = path.strip_prefix(base) {
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            found.push(parts.join("/"));
        }
    }
}

async fn run_online(
    inner: &Arc<Inner>,
    request: &DownloadRequest,
    reporter: Arc<dyn Reporter>,
    control: JobControl,
) -> Result<DownloadSummary, DownloadError> {
    let repo = &request.repo;
    let repo_name = repo.to_string();
    let resolve_error = |source: HubError| DownloadError::Resolve {
        repo: repo_name.clone(),
        revision: request.revision.clone(),
        source: Box::new(source),
    };
    // Pin one commit for the whole request, so files of one request never mix revisions.
    let given_commit = request
        .files
        .iter()
        .find_map(|f| f.metadata.as_ref().map(|m| m.commit.clone()));
    let commit = if is_commit_hash(&request.revision) {
        request.revision.clone()
    } else if let Some(commit) = given_commit
        .filter(|_| !request.files.is_empty() && request.files.iter().all(|f| f.metadata.is_some()))
    {
        commit
    } else if let Some(commit) = team_ref(inner.bucket.as_ref(), repo, &request.revision).await {
        commit
    } else {
        inner
            .hub
            .repo_info(repo, Some(&request.revision))
            .await
            .map_err(resolve_error)?
            .sha
    };
    if !is_commit_hash(&commit) {
        return Err(DownloadError::Protocol {
            repo: repo_name.clone(),
            path: String::new(),
            reason: format!(
                "the Hub sent an invalid commit hash `{}`",
                commit.escape_debug()
            ),
        });
    }
    // Asked for only when the Hub cannot be reached (see `bucket`).
    let team_manifest = tokio::sync::OnceCell::new();
    let specs: Vec<FileSpec> = if request.files.is_empty() {
        match inner.hub.list_tree(repo, &commit, None, true).await {
            Ok(entries) => entries
                .into_iter()
                .filter(|entry| entry.kind == EntryKind::File)
                .map(|entry| listed_spec(inner, repo, &commit, entry))
                .collect(),
            Err(error) if error.is_unreachable() => {
                let Some(manifest) = team_manifest_of(inner, &team_manifest, repo, &commit).await
                else {
                    return Err(resolve_error(error));
                };
                tracing::info!(%repo, %commit, "The Hub cannot be reached; going by the team bucket's manifest");
                manifest
                    .files
                    .iter()
                    .filter_map(|file| team_metadata(inner, repo, &commit, manifest, &file.path))
                    .map(|meta| FileSpec {
                        path: meta.0,
                        metadata: Some(meta.1),
                    })
                    .collect()
            }
            Err(error) => return Err(resolve_error(error)),
        }
    } else {
        with_listed_metadata(inner, repo, &commit, request.files.clone()).await
    };
    // Every name is checked before anything is written: one hostile name refuses the request.
    for spec in &specs {
        if let Err(StoreError::UnsafePath { reason, .. }) = SafeRelPath::new(&spec.path) {
            return Err(DownloadError::UnsafePath {
                repo: repo_name.clone(),
                path: spec.path.escape_debug().to_string(),
                reason: reason.to_string(),
            });
        }
    }
    let repo_cache = inner.cache.repo(repo);
    repo_cache.ensure_dirs().map_err(store_error(&repo_name))?;
    // The snapshot this request fills is in flight until the request ends, for every process.
    let _filling = inner
        .db
        .begin_in_flight(
            inner.cache.root().to_path_buf(),
            repo.folder_name(),
            commit.clone(),
            None,
            0,
        )
        .await?;

    let ctx = Arc::new(TransferContext {
        hub: inner.hub.clone(),
        limits: inner.limits.clone(),
        retry: inner.retry.clone(),
        stall: inner.stall,
        checkpoint: inner.checkpoint,
        start_connections: inner.start_connections,
        reporter: reporter.clone(),
        control: control.clone(),
        db: inner.db.clone(),
        downloaded: Arc::new(AtomicU64::new(0)),
        team_manifest,
    });
    let total = specs.len();
    let mut tasks = JoinSet::new();
    for (position, spec) in specs.into_iter().enumerate() {
        let inner = Arc::clone(inner);
        let ctx = Arc::clone(&ctx);
        let request = request.clone();
        let commit = commit.clone();
        // A small file whose metadata the listing gave is one request: many go at once (twice
        // as many as there are connections, so finishing one overlaps another's request),
        // instead of waiting behind the big files' slots.
        let small = spec
            .metadata
            .as_ref()
            .is_some_and(|m| m.size <= inner.chunk_size);
        tasks.spawn(async move {
            let slot = tokio::select! {
                slot = async {
                    if small {
                        inner.limits.small_file_slot().await
                    } else {
                        inner.limits.file_slot().await
                    }
                } => slot,
                _ = ctx.control.cancelled() => {
                    return (position, spec.path.clone(), Err(DownloadError::Cancelled { repo: request.repo.to_string() }));
                }
            };
            let path = spec.path.clone();
            let result = download_file(&inner, &ctx, &request, &commit, spec).await;
            drop(slot);
            (position, path, result)
        });
    }
    let mut outcomes: Vec<(usize, FileOutcome)> = Vec::new();
    let mut errors: Vec<DownloadError> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (position, path, result) = match joined {
            Ok(value) => value,
            Err(error) => {
                errors.push(DownloadError::Io {
                    what: "run a file task for",
                    path: PathBuf::new(),
                    source: std::io::Error::other(error.to_string()),
                });
                continue;
            }
        };
        match result {
            Ok(outcome) => outcomes.push((position, outcome)),
            Err(error) => {
                reporter.report(DownloadEvent::Failed {
                    repo: repo_name.clone(),
                    path,
                    kind: error.kind().to_string(),
                    message: error.to_string(),
                });
                errors.push(error);
            }
        }
    }
    outcomes.sort_by_key(|(position, _)| *position);
    let mut files: Vec<FileOutcome> = outcomes.into_iter().map(|(_, o)| o).collect();
    let bytes_downloaded = ctx.downloaded.load(Ordering::Relaxed);
    let bytes_saved: u64 = files
        .iter()
        .map(|f| {
            if f.source == FileSource::Downloaded {
                f.bytes_reused
            } else {
                f.size
            }
        })
        .sum();
    let bytes_reused: u64 = files.iter().map(|f| f.bytes_reused).sum();
    record_metrics(&inner.db, bytes_downloaded, bytes_saved, bytes_reused).await;
    // A ref moves only to a snapshot that holds every requested file. A file restarted after
    // an upstream change was linked under its new commit: the others are linked there too when
    // their blobs are unchanged at that commit (the Hub says so: one HEAD each, no bytes), else
    // the ref stays where it was.
    let mut newest_commit = files
        .iter()
        .rev()
        .find(|f| f.commit != commit)
        .map(|f| f.commit.clone())
        .unwrap_or_else(|| commit.clone());
    let mut complete = errors.is_empty();
    if complete && newest_commit != commit {
        for file in files.iter_mut().filter(|f| f.commit != newest_commit) {
            let same = inner
                .hub
                .file_metadata(repo, &newest_commit, &file.path)
                .await
                .is_ok_and(|m| m.etag == file.etag);
            let linked = same
                .then(|| SafeRelPath::new(&file.path).ok())
                .flatten()
                .and_then(|rel| repo_cache.link(&newest_commit, &rel, &file.etag).ok());
            match linked {
                Some(path) => {
                    file.commit = newest_commit.clone();
                    file.snapshot_path = path;
                }
                None => complete = false,
            }
        }
        if !complete {
            tracing::warn!(repo = %repo_name, revision = %request.revision, "files changed upstream during the download; the ref stays where it was");
            newest_commit = commit.clone();
        }
    }
    if complete {
        let previous = repo_cache.read_ref(&request.revision);
        repo_cache
            .write_ref(&request.revision, &newest_commit)
            .map_err(store_error(&repo_name))?;
        // A branch that moved here moved for the paired peers too: they mark theirs stale
        // until the Hub confirms. This cache's own mark, if a peer left one, is settled.
        if previous.as_deref() != Some(newest_commit.as_str())
            && !crate::store::is_commit_hash(&request.revision)
        {
            let notice = crate::peers::client::PeerRef {
                repo: repo.folder_name(),
                ref_name: request.revision.clone(),
                commit: newest_commit.clone(),
            };
            let _ = inner
                .db
                .index()
                .clear_stale_ref(&notice.repo, &notice.ref_name);
            if previous.is_some() {
                let inner = Arc::clone(inner);
                let _ = tokio::task::spawn_blocking(move || {
                    inner.peers.notify_ref_moved(inner.db.index(), notice)
                })
                .await;
            }
        }
        let (index, repo_id, revision, commit) = (
            inner.db.index().clone(),
            repo.clone(),
            request.revision.clone(),
            newest_commit.clone(),
        );
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(error) = index.record_revision(&repo_id, &revision, &commit) {
                tracing::warn!(%error, "Could not record the revision in the index");
            }
        })
        .await;
        if inner.push
            && let Some(bucket) = inner.bucket.clone()
        {
            let blobs: Vec<PushedBlob> = files
                .iter()
                .map(|f| PushedBlob {
                    path: f.path.clone(),
                    etag: f.etag.clone(),
                    blob: repo_cache.blob_path(&f.etag),
                    size: f.size,
                })
                .collect();
            let (index, repo, revision, commit) = (
                inner.db.index().clone(),
                repo.clone(),
                request.revision.clone(),
                newest_commit.clone(),
            );
            inner
                .pushes
                .lock()
                .expect("pushes lock")
                .spawn(push_verified(bucket, index, repo, revision, commit, blobs));
        }
    }
    if control.is_cancelled() {
        return Err(DownloadError::Cancelled { repo: repo_name });
    }
    if let Some(first) = errors.into_iter().reduce(|first, _| first) {
        let count = total - files.len();
        return Err(if total == 1 {
            DownloadError::File {
                source: Box::new(first),
            }
        } else {
            DownloadError::Partial {
                repo: repo_name,
                count,
                total,
                first: Box::new(first),
            }
        });
    }
    reporter.report(DownloadEvent::Finished {
        repo: repo_name.clone(),
        revision: request.revision.clone(),
        commit: newest_commit.clone(),
        files: files.len() as u64,
        bytes_downloaded,
        bytes_saved,
    });
    Ok(DownloadSummary {
        repo: repo_name,
        revision: request.revision.clone(),
        commit: newest_commit,
        files,
        bytes_downloaded,
        bytes_saved,
    })
}

async fn record_metrics(db: &JobDb, downloaded: u64, saved: u64, reused: u64) {
    let index = db.index().clone();
    let _ = tokio::task::spawn_blocking(move || {
        for (name, value) in [
            ("bytes_downloaded", downloaded),
            ("bytes_saved", saved),
            ("bytes_reused", reused),
        ] {
            if value > 0
                && let Err(error) = index.add_metric(name, value as i64)
            {
                tracing::warn!(%error, "Could not update a metric");
            }
        }
    })
    .await;
}

/// The digest a file must have, from its metadata.
/// Whether an etag is a content hash (a sha256 or a git sha1).
/// A 40-hex (git sha1) or 64-hex (sha256) etag: a name the bytes can be checked against.
pub(crate) fn is_hex_digest(etag: &str) -> bool {
    matches!(etag.len(), 40 | 64) && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

fn expected_digest(meta: &FileMetadata) -> Option<ExpectedDigest> {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(sha256) = meta.sha256.as_deref().filter(|s| hex(s, 64)) {
        Some(ExpectedDigest::sha256(sha256))
    } else if let Some(sha1) = meta.git_sha1.as_deref().filter(|s| hex(s, 40)) {
        Some(ExpectedDigest::git_sha1(sha1))
    } else if meta.is_lfs && hex(&meta.etag, 64) {
        Some(ExpectedDigest::sha256(&meta.etag))
    } else if hex(&meta.etag, 40) {
        Some(ExpectedDigest::git_sha1(&meta.etag))
    } else {
        None
    }
}

/// A file of the listing at `commit`: a small one (one request's worth, at most a chunk) takes
/// its size and hash from the listing, saving a `HEAD` each (thousands, for a repo of many
/// small files); a bigger one is asked once with a `HEAD` for its download link, which all its
/// range requests then use.
fn listed_spec(inner: &Inner, repo: &RepoId, commit: &str, entry: TreeEntry) -> FileSpec {
    let metadata =
        (entry.size <= inner.chunk_size).then(|| inner.hub.listed_metadata(repo, commit, &entry));
    FileSpec {
        path: entry.path,
        metadata,
    }
}

/// Files named by the caller, without metadata: when several are, one listing at `commit`
/// replaces a `HEAD` for each small one (see [`listed_spec`]). If the listing fails, each file
/// is asked for as before.
async fn with_listed_metadata(
    inner: &Inner,
    repo: &RepoId,
    commit: &str,
    files: Vec<FileSpec>,
) -> Vec<FileSpec> {
    if files.iter().filter(|f| f.metadata.is_none()).count() < 2 {
        return files;
    }
    let entries = match inner.hub.list_tree(repo, commit, None, true).await {
        Ok(entries) => entries,
        Err(error) => {
            tracing::debug!(%repo, %error, "no listing for the files' metadata; asking each");
            return files;
        }
    };
    let mut listed: HashMap<String, TreeEntry> = entries
        .into_iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| (e.path.clone(), e))
        .collect();
    files
        .into_iter()
        .map(|spec| match (&spec.metadata, listed.remove(&spec.path)) {
            (None, Some(entry)) => listed_spec(inner, repo, commit, entry),
            _ => spec,
        })
        .collect()
}

/// How a blob transfer ended, seen from the file loop.
enum FetchEnd {
    Done(FileOutcome),
    Restart(String),
}

async fn download_file(
    inner: &Arc<Inner>,
    ctx: &Arc<TransferContext>,
    request: &DownloadRequest,
    commit: &str,
    spec: FileSpec,
) -> Result<FileOutcome, DownloadError> {
    let repo = &request.repo;
    let repo_name = repo.to_string();
    let rel = SafeRelPath::new(&spec.path).map_err(store_error(&spec.path))?;
    let repo_cache = inner.cache.repo(repo);
    let mut given = spec.metadata;
    // Metadata a caller gave (the listing), not a `HEAD` of ours: if the Hub refuses the
    // download, one `HEAD` asks again, and its answer names the problem (a gated repo, a
    // missing file). A refusal by the team bucket is not the Hub's and is reported as it is.
    let mut unconfirmed = given.is_some();
    // After an upstream change the branch is resolved again, not the pinned commit.
    let mut head_revision = commit.to_string();
    let mut restarts = 0;
    loop {
        let meta = match given.take() {
            Some(meta) => meta,
            None => match inner
                .hub
                .file_metadata(repo, &head_revision, &spec.path)
                .await
            {
                Ok(meta) => meta,
                Err(source) => {
                    let team = if source.is_unreachable() && head_revision == commit {
                        team_manifest_of(inner, &ctx.team_manifest, repo, commit)
                            .await
                            .and_then(|manifest| {
                                team_metadata(inner, repo, commit, manifest, &spec.path)
                            })
                    } else {
                        None
                    };
                    match team {
                        Some((_, meta)) => {
                            tracing::info!(%repo, path = %spec.path, "The Hub cannot be reached; going by the team bucket's manifest");
                            meta
                        }
                        None => {
                            return Err(DownloadError::Hub {
                                repo: repo_name.clone(),
                                path: spec.path.clone(),
                                source: Box::new(source),
                            });
                        }
                    }
                }
            },
        };
        if !is_valid_etag(&meta.etag) || !is_commit_hash(&meta.commit) {
            return Err(DownloadError::Protocol {
                repo: repo_name.clone(),
                path: spec.path.clone(),
                reason: format!(
                    "invalid etag `{}` or commit `{}`",
                    meta.etag.escape_debug(),
                    meta.commit.escape_debug()
                ),
            });
        }
        if expected_digest(&meta).is_none() && !meta.over_https {
            return Err(DownloadError::Unverifiable {
                repo: repo_name.clone(),
                path: spec.path.clone(),
            });
        }
        if let Some(outcome) = link_cached(inner, ctx, &repo_cache, &rel, &meta).await? {
            return Ok(outcome);
        }
        let lock = acquire_lock(&repo_cache, &meta.etag, ctx, &spec.path).await?;
        // Whoever held the lock may have just finished this blob.
        if let Some(outcome) = link_cached(inner, ctx, &repo_cache, &rel, &meta).await? {
            return Ok(outcome);
        }
        if let Some(outcome) = link_shared(inner, ctx, &repo_cache, &rel, &meta).await? {
            return Ok(outcome);
        }
        let end = fetch_blob(inner, ctx, request, &repo_cache, &rel, &meta).await;
        drop(lock);
        if unconfirmed && matches!(&end, Err(error) if refused_by_the_hub(error)) {
            unconfirmed = false;
            tracing::debug!(path = %spec.path, "The listed file was refused; asking with a HEAD");
            continue;
        }
        unconfirmed = false;
        match end? {
            FetchEnd::Done(outcome) => return Ok(outcome),
            FetchEnd::Restart(reason) => {
                restarts += 1;
                tracing::info!(path = %spec.path, %reason, "Restarting a file");
                ctx.reporter.report(DownloadEvent::Restarted {
                    repo: repo_name.clone(),
                    path: spec.path.clone(),
                    reason,
                });
                if restarts > MAX_RESTARTS {
                    return Err(DownloadError::UpstreamChanged {
                        repo: repo_name,
                        path: spec.path,
                        restarts,
                    });
                }
                head_revision = request.revision.clone();
            }
        }
    }
}

/// The Hub refused the file (401, 403, 404 and their kinds): a `HEAD` says why.
fn refused_by_the_hub(error: &DownloadError) -> bool {
    match error {
        DownloadError::File { source } => refused_by_the_hub(source),
        DownloadError::Hub { source, .. } => matches!(
            **source,
            HubError::Http {
                status: 401 | 403 | 404,
                ..
            } | HubError::Unauthorized { .. }
                | HubError::Forbidden { .. }
                | HubError::Gated { .. }
                | HubError::EntryNotFound { .. }
                | HubError::RepoNotFound { .. }
                | HubError::DownloadUrlRefused { .. }
        ),
        _ => false,
    }
}

/// Waits for the blob lock without holding a thread, giving up when the job is cancelled.
async fn acquire_lock(
    repo_cache: &RepoCache,
    etag: &str,
    ctx: &TransferContext,
    path: &str,
) -> Result<crate::store::BlobLock, DownloadError> {
    let mut logged = false;
    loop {
        let (cache, etag_owned) = (repo_cache.clone(), etag.to_string());
        let attempt =
            tokio::task::spawn_blocking(move || cache.lock_blob(&etag_owned, Duration::ZERO))
                .await
                .map_err(|e| DownloadError::Io {
                    what: "lock",
                    path: repo_cache.lock_path(etag),
                    source: std::io::Error::other(e.to_string()),
                })?;
        match attempt {
            Ok(lock) => return Ok(lock),
            Err(StoreError::LockTimeout { .. }) => {
                if !logged {
                    logged = true;
                    tracing::info!(%path, "Waiting for another process downloading the same file");
                }
                tokio::select! {
                    _ = tokio::time::sleep(LOCK_POLL) => {}
                    _ = ctx.control.cancelled() => {
                        return Err(DownloadError::Cancelled { repo: repo_cache.repo().to_string() });
                    }
                }
            }
            Err(error) => return Err(store_error(path)(error)),
        }
    }
}

/// Links the file if its blob is already in this repo's cache. A blob is linked without
/// re-hashing only while it is the very file the index recorded as verified (size, mtime,
/// inode); any other (written by another tool, replaced, or recorded before stamps) is hashed
/// first, and one whose bytes do not match is left to be downloaded again (the verified
/// download replaces it).
async fn link_cached(
    inner: &Inner,
    ctx: &TransferContext,
    repo_cache: &RepoCache,
    rel: &SafeRelPath,
    meta: &FileMetadata,
) -> Result<Option<FileOutcome>, DownloadError> {
    let blob = repo_cache.blob_path(&meta.etag);
    match std::fs::metadata(&blob) {
        Ok(m) if m.is_file() && m.len() == meta.size => {}
        _ => return Ok(None),
    }
    if !blob_is_verified(inner, repo_cache.repo(), &blob, meta).await? {
        return Ok(None);
    }
    link_skipped(
        inner,
        ctx,
        repo_cache,
        rel,
        meta,
        FileSource::Cached,
        "cached",
    )
    .await
    .map(Some)
}

/// Whether `blob` (the blob of `meta` in `repo`) holds the right bytes: recorded as verified
/// with its current stamp, or hashed now (and then recorded). Files without a digest to check
/// pass on their size.
async fn blob_is_verified(
    inner: &Inner,
    repo: &RepoId,
    blob: &Path,
    meta: &FileMetadata,
) -> Result<bool, DownloadError> {
    let Some(expected) = expected_digest(meta) else {
        return Ok(true);
    };
    let Ok(found) = std::fs::metadata(blob) else {
        return Ok(false);
    };
    let stamp = BlobStamp::of(&found);
    let index = inner.db.index().clone();
    let (owner, etag) = (repo.clone(), meta.etag.clone());
    let recorded = tokio::task::spawn_blocking(move || index.verified_stamp(&owner, &etag))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    if recorded == Some(stamp) {
        return Ok(true);
    }
    let hex = crate::hash::hash_file(blob.to_path_buf(), expected.algorithm, meta.size)
        .await
        .map_err(|source| DownloadError::Io {
            what: "hash",
            path: blob.to_path_buf(),
            source,
        })?;
    if !expected.matches(&hex) {
        tracing::warn!(blob = %blob.display(), expected = %expected.hex, found = %hex, "A blob in the cache does not hold its bytes; it is downloaded again");
        return Ok(false);
    }
    let index = inner.db.index().clone();
    let (owner, etag) = (repo.clone(), meta.etag.clone());
    let _ = tokio::task::spawn_blocking(move || {
        index
            .upsert_repo(&owner)
            .and_then(|_| index.record_verified_blob(&owner, &etag, &stamp))
    })
    .await;
    Ok(true)
}

/// Hard-links (or copies) an identical blob from another repo of the cache. Etags are content
/// hashes (sha256 or git-sha1), so the same etag and size is the same content. Called with the
/// blob lock held.
async fn link_shared(
    inner: &Inner,
    ctx: &TransferContext,
    repo_cache: &RepoCache,
    rel: &SafeRelPath,
    meta: &FileMetadata,
) -> Result<Option<FileOutcome>, DownloadError> {
    let Some(expected) = expected_digest(meta) else {
        return Ok(None);
    };
    let own_dir = repo_cache.dir().to_path_buf();
    let root = inner.cache.root().to_path_buf();
    let index = inner.db.index().clone();
    let etag = meta.etag.clone();
    let size = meta.size;
    let incomplete = repo_cache.partial_path(&meta.etag);
    let copied = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        let mut candidates: Vec<PathBuf> = index
            .find_blob(&etag)
            .unwrap_or_default()
            .into_iter()
            .map(|(repo, _)| layout::blob_file(&root.join(repo.folder_name()), &etag))
            .collect();
        // The index is not the truth: any repo folder on disk may hold the blob.
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.contains("--") {
                    candidates.push(layout::blob_file(&entry.path(), &etag));
                }
            }
        }
        for candidate in candidates {
            let Some(owner_dir) = candidate.parent().and_then(Path::parent) else {
                continue;
            };
            if owner_dir == own_dir.as_path() {
                continue;
            }
            let found = match std::fs::metadata(&candidate) {
                Ok(m) if m.is_file() && m.len() == size => m,
                _ => continue,
            };
            // Only bytes known good are shared: the candidate is the file its repo verified,
            // or it is hashed now.
            let owner = owner_dir
                .file_name()
                .and_then(|n| RepoId::from_folder_name(&n.to_string_lossy()));
            let recorded = owner
                .as_ref()
                .and_then(|owner| index.verified_stamp(owner, &etag).ok().flatten());
            if recorded != Some(BlobStamp::of(&found)) {
                let hex = crate::hash::hash_file_blocking(&candidate, expected.algorithm, size)?;
                if !expected.matches(&hex) {
                    tracing::warn!(blob = %candidate.display(), "A blob of another repo does not hold its bytes; not sharing it");
                    continue;
                }
            }
            let _ = std::fs::remove_file(&incomplete);
            if std::fs::hard_link(&candidate, &incomplete).is_err() {
                std::fs::copy(&candidate, &incomplete)?;
            }
            tracing::debug!(from = %candidate.display(), "Reusing a blob of another repo");
            return Ok(true);
        }
        Ok(false)
    })
    .await
    .map_err(|e| DownloadError::Io {
        what: "share",
        path: repo_cache.partial_path(&meta.etag),
        source: std::io::Error::other(e.to_string()),
    })?
    .map_err(|source| {
        let _ = std::fs::remove_file(repo_cache.partial_path(&meta.etag));
        if writer::is_disk_full(&source) {
            transfer::disk_full(
                &repo_cache.partial_path(&meta.etag),
                rel.as_str(),
                meta.size,
            )
        } else {
            DownloadError::Io {
                what: "copy a shared blob to",
                path: repo_cache.partial_path(&meta.etag),
                source,
            }
        }
    })?;
    if !copied {
        return Ok(None);
    }
    repo_cache
        .finish_blob(&meta.etag)
        .map_err(store_error(rel.as_str()))?;
    link_skipped(
        inner,
        ctx,
        repo_cache,
        rel,
        meta,
        FileSource::SharedBlob,
        "shared_blob",
    )
    .await
    .map(Some)
}

/// Links a file whose bytes were already in the cache, and says so (`reason`: `cached` or
/// `shared_blob`) with the bytes it saved.
async fn link_skipped(
    inner: &Inner,
    ctx: &TransferContext,
    repo_cache: &RepoCache,
    rel: &SafeRelPath,
    meta: &FileMetadata,
    source: FileSource,
    reason: &str,
) -> Result<FileOutcome, DownloadError> {
    let outcome = link(inner, ctx, repo_cache, rel, meta, source).await?;
    ctx.reporter.report(DownloadEvent::Skipped {
        repo: repo_cache.repo().to_string(),
        path: rel.as_str().to_string(),
        reason: reason.into(),
        bytes_saved: meta.size,
    });
    Ok(outcome)
}

/// Links `snapshots/{commit}/{path}` to the blob and records the blob in the index.
async fn link(
    inner: &Inner,
    ctx: &TransferContext,
    repo_cache: &RepoCache,
    rel: &SafeRelPath,
    meta: &FileMetadata,
    source: FileSource,
) -> Result<FileOutcome, DownloadError> {
    let snapshot_path = repo_cache
        .link(&meta.commit, rel, &meta.etag)
        .map_err(store_error(rel.as_str()))?;
    // A blob this call verified (downloaded and hashed, or shared from a verified one) is
    // recorded with its stamp; a cached one was recorded when it was checked. One with no hash
    // to check is never recorded as verified.
    let unverified = expected_digest(meta).is_none();
    let verified = !unverified && matches!(source, FileSource::Downloaded | FileSource::SharedBlob);
    let stamp = verified
        .then(|| std::fs::metadata(repo_cache.blob_path(&meta.etag)).ok())
        .flatten()
        .map(|m| BlobStamp::of(&m));
    let (index, repo, etag, size) = (
        inner.db.index().clone(),
        repo_cache.repo().clone(),
        meta.etag.clone(),
        meta.size,
    );
    let _ = tokio::task::spawn_blocking(move || {
        let result = index.upsert_repo(&repo).and_then(|_| match stamp {
            Some(stamp) => index.record_verified_blob(&repo, &etag, &stamp),
            None => index.record_blob(&repo, &etag, size, false),
        });
        if let Err(error) = result {
            tracing::warn!(%error, "Could not record a blob in the index");
        }
    })
    .await;
    ctx.reporter.report(DownloadEvent::Linked {
        repo: repo_cache.repo().to_string(),
        path: rel.as_str().to_string(),
        commit: meta.commit.clone(),
    });
    Ok(FileOutcome {
        path: rel.as_str().to_string(),
        etag: meta.etag.clone(),
        size: meta.size,
        commit: meta.commit.clone(),
        snapshot_path,
        source,
        unverified,
        bytes_reused: 0,
    })
}

/// Removes a job's `.incomplete` and its index rows.
async fn discard(db: &JobDb, job_id: i64, incomplete: &Path) {
    let _ = tokio::fs::remove_file(incomplete).await;
    if let Err(error) = db.delete(job_id).await {
        tracing::warn!(%error, "Could not delete a download job");
    }
}

/// What the bytes on disk of a transfer that failed with an error are worth.
#[derive(Debug, Clone, Copy)]
enum Leftover {
    /// Recorded chunks are good: they stay, and a later run resumes them.
    Resumable,
    /// They failed verification even after refetching: worth nothing, and dropped.
    Corrupt,
}

/// The one place a failed transfer of a blob ends. An upstream change discards the job and
/// restarts the file; a cancel discards it; an error marks the job failed and keeps or drops
/// its bytes as `leftover` says (on a full disk they are dropped whatever they are worth).
async fn transfer_failed(
    db: &JobDb,
    job_id: i64,
    incomplete: &Path,
    repo: String,
    failure: TransferFailure,
    leftover: Leftover,
) -> Result<FetchEnd, DownloadError> {
    let error = match failure {
        TransferFailure::Changed { reason } => {
            discard(db, job_id, incomplete).await;
            return Ok(FetchEnd::Restart(reason));
        }
        TransferFailure::Cancelled => {
            discard(db, job_id, incomplete).await;
            return Err(DownloadError::Cancelled { repo });
        }
        TransferFailure::FullResponse { .. } => unreachable!("handled by transfer_all"),
        TransferFailure::Error(error) => error,
    };
    match leftover {
        // Never leave a full-size file that could pass for progress on a full disk.
        Leftover::Resumable if matches!(error, DownloadError::DiskFull { .. }) => {
            discard(db, job_id, incomplete).await;
        }
        Leftover::Resumable => {
            let _ = db
                .set_state(job_id, JobState::Failed, Some(error.to_string()))
                .await;
        }
        Leftover::Corrupt => {
            let _ = tokio::fs::remove_file(incomplete).await;
            let _ = db.clear_chunks(job_id).await;
            let _ = db
                .set_state(job_id, JobState::Failed, Some(error.to_string()))
                .await;
        }
    }
    Err(error)
}

/// Transfers, verifies, renames and links one blob. Called with the blob lock held.
async fn fetch_blob(
    inner: &Arc<Inner>,
    ctx: &Arc<TransferContext>,
    request: &DownloadRequest,
    repo_cache: &RepoCache,
    rel: &SafeRelPath,
    meta: &FileMetadata,
) -> Result<FetchEnd, DownloadError> {
    let repo_name = repo_cache.repo().to_string();
    let folder = repo_cache.repo().folder_name();
    let incomplete = repo_cache.partial_path(&meta.etag);
    let size = meta.size;
    // The partial file and the space preallocated for it are this download's.
    let _writing = inner
        .db
        .begin_in_flight(
            inner.cache.root().to_path_buf(),
            folder.clone(),
            meta.commit.clone(),
            Some(meta.etag.clone()),
            size,
        )
        .await?;

    // Resume a recorded job when its file is there with the right length; otherwise start over.
    let existing = inner
        .db
        .find_unfinished(folder.clone(), meta.etag.clone())
        .await?;
    if let Some((job, _)) = &existing
        && job.size == size
        && repo_cache
            .adopt_legacy_partial(&meta.etag, size)
            .map_err(store_error(rel.as_str()))?
    {
        // A cache written by an earlier version: its `<etag>.incomplete` is this job's.
        tracing::info!(repo = %repo_name, etag = %meta.etag, "resuming a partial file under its private name");
    }
    let on_disk = std::fs::metadata(&incomplete).ok().map(|m| m.len());
    let (job_id, plan, done, validator) = match existing {
        Some((job, chunks)) if job.size == size && on_disk == Some(size) && job.chunk_size > 0 => {
            inner.db.set_state(job.id, JobState::Running, None).await?;
            let plan = ChunkPlan::new(size, job.chunk_size);
            (job.id, plan, chunks, job.validator)
        }
        existing => {
            if let Some((job, _)) = existing {
                inner.db.delete(job.id).await?;
            }
            // A stale partial file (a crash before its job was recorded) is not ours to trust:
            // we hold the lock, so nobody writes it now.
            let _ = tokio::fs::remove_file(&incomplete).await;
            let needed = size;
            let dir = incomplete.parent().unwrap_or(Path::new("."));
            if let Ok(free) = fs4::available_space(dir)
                && free < needed
            {
                return Err(DownloadError::DiskFull {
                    path: rel.as_str().to_string(),
                    dir: dir.to_path_buf(),
                    needed,
                    free,
                });
            }
            let id = inner
                .db
                .create(OwnedNewJob {
                    repo: folder.clone(),
                    revision: request.revision.clone(),
                    commit: meta.commit.clone(),
                    path: rel.as_str().to_string(),
                    etag: meta.etag.clone(),
                    size,
                    chunk_size: inner.chunk_size,
                    validator: meta.etag.clone(),
                })
                .await?;
            (
                id,
                ChunkPlan::new(size, inner.chunk_size),
                Vec::new(),
                meta.etag.clone(),
            )
        }
    };

    let writer = match BlobWriter::open(incomplete.clone(), size).await {
        Ok(writer) => writer,
        Err(failure) => {
            discard(&inner.db, job_id, &incomplete).await;
            return Err(match failure {
                WriteFailure::DiskFull => transfer::disk_full(&incomplete, rel.as_str(), size),
                WriteFailure::Io(source) => DownloadError::Io {
                    what: "create",
                    path: incomplete.clone(),
                    source,
                },
            });
        }
    };
    let written = writer.identity();
    let mut recorded = vec![false; plan.count() as usize];
    for chunk in &done {
        if let Some(slot) = recorded.get_mut(chunk.index as usize) {
            *slot = true;
        }
    }
    let partial = resumable_prefixes(inner, &writer, job_id, plan, &recorded).await?;
    let resumed_bytes: u64 = (0..plan.count())
        .filter(|&c| recorded[c as usize])
        .map(|c| plan.range(c).end - plan.range(c).start)
        .sum::<u64>()
        + partial.iter().map(|&(_, written)| written).sum::<u64>();
    ctx.reporter.report(DownloadEvent::FileStarted {
        repo: repo_name.clone(),
        path: rel.as_str().to_string(),
        size,
        resumed_bytes,
    });

    // The Hub's download URL, and every mirror, paired peer and bucket that has the same file.
    let peers = {
        let inner = Arc::clone(inner);
        tokio::task::spawn_blocking(move || inner.peers.current(inner.db.index()))
            .await
            .unwrap_or_default()
    };
    let sources = source::resolve(
        &ctx.hub,
        inner.bucket.as_ref(),
        &peers,
        &|peer| inner.peers.unreachable(peer),
        repo_cache.repo(),
        rel.as_str(),
        meta,
    )
    .await;
    if sources.len() > 1 {
        let index = inner.db.index().clone();
        let history = tokio::task::spawn_blocking(move || index.source_history())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        for known in history {
            if let Some(throughput) = known.throughput {
                sources.seed(&known.name, throughput);
            }
        }
    }
    if sources.len() > 1 {
        tracing::debug!(path = %rel.as_str(), sources = sources.len(), "Fetching from several sources");
    }
    let transfer = Arc::new(BlobTransfer {
        repo: repo_name.clone(),
        path: rel.as_str().to_string(),
        sources,
        resolved_at: (repo_cache.repo().clone(), meta.commit.clone()),
        etag: meta.etag.clone(),
        plan,
        job_id,
        writer,
        validator: std::sync::Mutex::new(validator),
        served: std::sync::Mutex::new(vec![0; plan.count() as usize]),
    });
    let expected = expected_digest(meta);
    let hasher = match &expected {
        Some(expected) => Some(
            PrefixHasher::start(incomplete.clone(), expected.algorithm, size).map_err(
                |source| DownloadError::Io {
                    what: "read",
                    path: incomplete.clone(),
                    source,
                },
            )?,
        ),
        None => None,
    };
    let shared = Shared::new(plan, recorded, &partial, hasher);

    // Files the Hub stores with Xet are rebuilt from chunks first: those cached blobs hold are
    // copied, the rest fetched from the CAS. What that leaves undone (all of it, when Xet
    // fails) comes over HTTP.
    #[cfg(feature = "xet")]
    let mut rebuilt = None;
    #[cfg(feature = "xet")]
    if let Some(xet_file) = meta
        .xet
        .as_ref()
        .filter(|_| inner.xet_enabled && meta.sha256.is_some() && meta.size >= xet::MIN_XET_SIZE)
    {
        match xet::transfer_all_xet(
            inner,
            ctx,
            repo_cache.repo(),
            &transfer,
            &shared,
            meta,
            xet_file,
        )
        .await
        {
            Ok(outcome) => rebuilt = Some(outcome),
            Err(xet::XetEnd::Fallback(reason)) => {
                tracing::info!(path = %rel.as_str(), %reason, "The Xet rebuild stopped; HTTP fetches the rest");
            }
            Err(xet::XetEnd::Failed(failure)) => {
                let leftover = Leftover::Resumable;
                return transfer_failed(
                    &inner.db,
                    job_id,
                    &incomplete,
                    repo_name,
                    failure,
                    leftover,
                )
                .await;
            }
        }
    }

    let transferred = if shared.all_recorded(plan) {
        Ok(())
    } else {
        transfer_all(inner, ctx, request, &transfer, &shared, meta).await
    };
    if let Err(failure) = transferred {
        record_sources(inner, ctx, &transfer).await;
        let leftover = Leftover::Resumable;
        return transfer_failed(&inner.db, job_id, &incomplete, repo_name, failure, leftover).await;
    }

    // Verify.
    if let Some(expected) = &expected {
        ctx.reporter.report(DownloadEvent::Verifying {
            repo: repo_name.clone(),
            path: rel.as_str().to_string(),
        });
        inner
            .db
            .set_state(job_id, JobState::Verifying, None)
            .await?;
        let hasher = shared.take_hasher().expect("the hasher is taken once");
        let digest = hasher.finish().await.map_err(|source| DownloadError::Io {
            what: "hash",
            path: incomplete.clone(),
            source,
        })?;
        tracing::debug!(path = %rel.as_str(), tail_bytes = digest.tail_bytes, "Hashed");
        if !expected.matches(&digest.hex)
            && let Err(failure) =
                repair(inner, ctx, request, &transfer, meta, expected, digest.hex).await
        {
            record_sources(inner, ctx, &transfer).await;
            let leftover = Leftover::Corrupt;
            return transfer_failed(&inner.db, job_id, &incomplete, repo_name, failure, leftover)
                .await;
        }
        ctx.reporter.report(DownloadEvent::Verified {
            repo: repo_name.clone(),
            path: rel.as_str().to_string(),
            algorithm: expected.algorithm.name().to_string(),
        });
    } else {
        tracing::warn!(path = %rel.as_str(), etag = %meta.etag, "No digest to verify this file against");
    }
    // After the check and any repair, so the report says which source was dropped for lying.
    record_sources(inner, ctx, &transfer).await;

    match &written {
        Some(written) => repo_cache.finish_written_blob(&meta.etag, written),
        None => repo_cache.finish_blob(&meta.etag),
    }
    .map_err(store_error(rel.as_str()))?;
    #[cfg_attr(
        not(feature = "xet"),
        expect(unused_mut, reason = "set by the xet feature")
    )]
    let mut bytes_reused = 0;
    #[cfg(feature = "xet")]
    if let Some(outcome) = rebuilt {
        bytes_reused = outcome.reused;
        ctx.reporter.report(DownloadEvent::Reused {
            repo: repo_name.clone(),
            path: rel.as_str().to_string(),
            bytes_reused: outcome.reused,
            bytes_fetched: outcome.fetched,
        });
        xet::record_blob(inner, job_id, meta, outcome).await;
    }
    inner.db.finish(job_id).await?;
    let mut outcome = link(inner, ctx, repo_cache, rel, meta, FileSource::Downloaded).await?;
    outcome.bytes_reused = bytes_reused;
    Ok(FetchEnd::Done(outcome))
}

/// The recorded prefixes of chunks that were in flight, `(chunk, bytes)`, whose bytes on disk
/// still match their checksum (a prefix that does not is fetched again whole).
async fn resumable_prefixes(
    inner: &Inner,
    writer: &BlobWriter,
    job_id: i64,
    plan: ChunkPlan,
    recorded: &[bool],
) -> Result<Vec<(u64, u64)>, DownloadError> {
    let candidates: Vec<_> = inner
        .db
        .partial_chunks(job_id)
        .await?
        .into_iter()
        .filter(|p| {
            let range = plan.range(p.index);
            p.index < plan.count()
                && !recorded[p.index as usize]
                && p.written > 0
                && p.written < range.end - range.start
        })
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let ranges = candidates
        .iter()
        .map(|p| {
            let start = plan.range(p.index).start;
            (start, start + p.written)
        })
        .collect();
    let sums = writer
        .checksums(ranges)
        .await
        .map_err(|source| DownloadError::Io {
            what: "read back",
            path: writer.path().to_path_buf(),
            source,
        })?;
    Ok(candidates
        .iter()
        .zip(sums)
        .filter(|(p, sum)| p.checksum == *sum)
        .map(|(p, _)| (p.index, p.written))
        .collect())
}

/// What the transfer learned about each of its sources: kept in the index (a restart starts
/// from it) and, with several sources, reported (bytes and speed by source).
async fn record_sources(inner: &Inner, ctx: &TransferContext, transfer: &BlobTransfer) {
    let states = transfer.sources.states();
    if states.len() > 1 {
        ctx.reporter.report(DownloadEvent::Sources {
            repo: transfer.repo.clone(),
            path: transfer.path.clone(),
            sources: states
                .iter()
                .map(|(name, state)| SourceUse {
                    source: name.clone(),
                    bytes: state.bytes,
                    bytes_per_second: state.throughput.map(|t| t as u64),
                    errors: state.errors,
                    dropped: state.dropped,
                })
                .collect(),
        });
    }
    let index = inner.db.index().clone();
    let from_peers: Vec<(String, u64)> = (0..transfer.sources.len())
        .filter_map(|i| match &transfer.sources.get(i).kind {
            source::SourceKind::Peer(peer) => Some((peer.fingerprint.clone(), i)),
            _ => None,
        })
        .map(|(fingerprint, i)| (fingerprint, states[i].1.bytes))
        .filter(|(_, bytes)| *bytes > 0)
        .collect();
    let _ = tokio::task::spawn_blocking(move || {
        for (fingerprint, bytes) in from_peers {
            let _ = index.count_peer_bytes(&fingerprint, 0, bytes);
        }
        for (name, state) in states {
            if state.bytes == 0 && state.errors == 0 {
                continue;
            }
            if let Err(error) =
                index.record_source_use(&name, state.bytes, state.errors, state.throughput)
            {
                tracing::warn!(%error, "could not record a source's use");
            }
        }
    })
    .await;
}

/// Runs the transfer to completion, switching to a sequential stream when the server ignores
/// `Range`, and adopting the CDN's own ETag as validator when it differs from the Hub's.
async fn transfer_all(
    inner: &Arc<Inner>,
    ctx: &Arc<TransferContext>,
    request: &DownloadRequest,
    transfer: &Arc<BlobTransfer>,
    shared: &Arc<Shared>,
    meta: &FileMetadata,
) -> Result<(), TransferFailure> {
    let mut sequential = false;
    let mut adopted = false;
    loop {
        let result = if sequential {
            transfer::run_sequential(ctx.clone(), transfer.clone(), shared.clone()).await
        } else {
            transfer::run_parallel(ctx.clone(), transfer.clone(), shared.clone()).await
        };
        let etag = match result {
            Err(TransferFailure::FullResponse { etag }) => etag,
            other => return other,
        };
        let validator = transfer.validator();
        if etag.as_deref() == Some(validator.as_str()) || (etag.is_none() && adopted) {
            tracing::info!(path = %transfer.path, "The server ignores Range; downloading in one stream");
            sequential = true;
            continue;
        }
        // Another validator: the file changed, or the CDN names versions its own way. Ask the Hub.
        let fresh = inner
            .hub
            .file_metadata(&request.repo, &request.revision, &transfer.path)
            .await
            .map_err(|source| DownloadError::Hub {
                repo: transfer.repo.clone(),
                path: transfer.path.clone(),
                source: Box::new(source),
            })?;
        if fresh.etag != meta.etag || fresh.size != meta.size {
            return Err(TransferFailure::Changed {
                reason: format!(
                    "the file changed upstream (etag `{}` is now `{}`)",
                    meta.etag, fresh.etag
                ),
            });
        }
        match etag {
            Some(cdn_etag) if !adopted => {
                tracing::debug!(path = %transfer.path, %cdn_etag, "Using the download server's ETag as validator");
                *transfer.validator.lock().expect("validator lock") = cdn_etag.clone();
                ctx.db
                    .set_validator(transfer.job_id, cdn_etag)
                    .await
                    .map_err(TransferFailure::Error)?;
                adopted = true;
            }
            _ => sequential = true,
        }
    }
}

/// One try of [`repair`].
enum Attempt {
    /// Refetch these chunks.
    Chunks(Vec<u64>),
    /// Drop this source and refetch the chunks it served.
    Suspect(usize),
    /// Refetch every chunk from the first source alone.
    Everything,
}

/// After a digest mismatch: refetch the chunks whose bytes on disk no longer match what was
/// recorded; if none are torn (the source sent bad bytes) or that does not help, refetch the whole
/// file once. Still wrong: an integrity error.
async fn repair(
    inner: &Arc<Inner>,
    ctx: &Arc<TransferContext>,
    request: &DownloadRequest,
    transfer: &Arc<BlobTransfer>,
    meta: &FileMetadata,
    expected: &ExpectedDigest,
    mut actual: String,
) -> Result<(), TransferFailure> {
    let plan = transfer.plan;
    let hash_error = |source| {
        TransferFailure::Error(DownloadError::Io {
            what: "hash",
            path: transfer.writer.path().to_path_buf(),
            source,
        })
    };
    let recorded = ctx.db.done_chunks(transfer.job_id).await?;
    let ranges: Vec<(u64, u64)> = recorded
        .iter()
        .map(|c| {
            let r = plan.range(c.index);
            (r.start, r.end)
        })
        .collect();
    let on_disk = transfer
        .writer
        .checksums(ranges)
        .await
        .map_err(hash_error)?;
    let torn: Vec<u64> = recorded
        .iter()
        .zip(&on_disk)
        .filter(|(chunk, sum)| chunk.checksum != **sum)
        .map(|(chunk, _)| chunk.index)
        .collect();
    // Torn chunks first; then, with several sources, each source's chunks in turn (mirrors and
    // peers before the Hub's own URL), the source dropped for this file and its chunks fetched
    // from the others; then every chunk from the source the file was resolved through alone.
    //
    // A suspect's chunks are the ones it served *when its turn comes*: an honest source tried
    // first has its chunks refetched from the liar, which then holds those too. A suspect
    // whose replacement did not fix the file was not shown to lie, and is used again.
    let mut attempts: Vec<Attempt> = Vec::new();
    if !torn.is_empty() {
        attempts.push(Attempt::Chunks(torn));
    }
    if transfer.sources.len() > 1 {
        for source in (0..transfer.sources.len()).rev() {
            attempts.push(Attempt::Suspect(source));
        }
    }
    attempts.push(Attempt::Everything);
    let mut cleared: Option<usize> = None;
    for attempt in attempts {
        if let Some(innocent) = cleared.take() {
            transfer.sources.restore(innocent);
        }
        let (suspect, chunks) = match attempt {
            Attempt::Chunks(chunks) => (None, chunks),
            Attempt::Suspect(source) => {
                let chunks = transfer.chunks_served_by(source);
                if chunks.is_empty() {
                    continue;
                }
                (Some(source), chunks)
            }
            Attempt::Everything => {
                for other in 1..transfer.sources.len() {
                    transfer.sources.drop_source(other);
                }
                transfer.sources.restore(0);
                (None, (0..plan.count()).collect())
            }
        };
        let reason = match suspect {
            Some(source) if transfer.sources.has_alternative(source) => {
                transfer.sources.drop_source(source);
                cleared = Some(source);
                format!(
                    "{} mismatch; dropping source {} and fetching its {} chunk(s) elsewhere",
                    expected.algorithm.name(),
                    transfer.sources.get(source).name(),
                    chunks.len()
                )
            }
            Some(_) => continue,
            None => format!(
                "{} mismatch; refetching {} chunk(s)",
                expected.algorithm.name(),
                chunks.len()
            ),
        };
        tracing::warn!(path = %transfer.path, chunks = chunks.len(), expected = %expected.hex, %actual, %reason, "Digest mismatch");
        transfer.forget_served(&chunks);
        ctx.reporter.report(DownloadEvent::Retrying {
            repo: transfer.repo.clone(),
            path: transfer.path.clone(),
            reason,
            attempt: 1,
        });
        ctx.db
            .forget_chunks(transfer.job_id, chunks.clone())
            .await?;
        let mut recorded_now = vec![true; plan.count() as usize];
        for &chunk in &chunks {
            recorded_now[chunk as usize] = false;
        }
        let shared = Shared::new(plan, recorded_now, &[], None);
        transfer_all(inner, ctx, request, transfer, &shared, meta).await?;
        actual = crate::hash::hash_file(
            transfer.writer.path().to_path_buf(),
            expected.algorithm,
            plan.size,
        )
        .await
        .map_err(hash_error)?;
        if expected.matches(&actual) {
            // The last suspect dropped was the liar: it stays dropped.
            return Ok(());
        }
    }
    Err(TransferFailure::Error(DownloadError::Integrity {
        repo: transfer.repo.clone(),
        path: transfer.path.clone(),
        algorithm: expected.algorithm.name(),
        expected: expected.hex.clone(),
        actual,
    }))
}

/// The team bucket's manifest of `commit`, read once per request (`None` without a bucket, or
/// when it has none or cannot be read).
async fn team_manifest_of<'a>(
    inner: &Inner,
    cell: &'a tokio::sync::OnceCell<Option<crate::bucket::Manifest>>,
    repo: &RepoId,
    commit: &str,
) -> Option<&'a crate::bucket::Manifest> {
    cell.get_or_init(|| async {
        let bucket = inner.bucket.as_ref()?;
        match bucket.read_manifest(repo, commit).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "Cannot read the team bucket's manifest");
                None
            }
        }
    })
    .await
    .as_ref()
}

/// What the team bucket's manifest says of `path` at `commit`, as the Hub would have: the
/// etag is the hash the bytes are checked against (a member verified them against the Hub's
/// before pushing). The Hub's URL stays the fallback source.
fn team_metadata(
    inner: &Inner,
    repo: &RepoId,
    commit: &str,
    manifest: &crate::bucket::Manifest,
    path: &str,
) -> Option<(String, FileMetadata)> {
    let file = manifest.file(path)?;
    let lfs = file.etag.len() == 64;
    Some((
        file.path.clone(),
        FileMetadata {
            commit: commit.to_string(),
            etag: file.etag.to_ascii_lowercase(),
            size: file.size,
            download_url: inner.hub.resolve_url(repo, commit, &file.path),
            is_lfs: lfs,
            sha256: lfs.then(|| file.etag.to_ascii_lowercase()),
            git_sha1: (!lfs).then(|| file.etag.to_ascii_lowercase()),
            over_https: false,
            xet: None,
        },
    ))
}

/// A verified file of a finished request, to push.
struct PushedBlob {
    /// The path in the repo.
    path: String,
    etag: String,
    /// The blob in the cache.
    blob: PathBuf,
    size: u64,
}

/// Pushes a finished request's verified blobs to the team bucket, then adds them to the
/// commit's manifest, then moves the ref (so a member who reads the ref finds the manifest,
/// and one who reads the manifest finds the blobs). Failures are logged: the download itself
/// succeeded.
async fn push_verified(
    bucket: crate::bucket::Bucket,
    index: Index,
    repo: RepoId,
    revision: String,
    commit: String,
    blobs: Vec<PushedBlob>,
) {
    for pushed in &blobs {
        let etag = &pushed.etag;
        match bucket
            .push_blob(&index, &repo, etag, &pushed.blob, pushed.size, &|_, _| {})
            .await
        {
            Ok(pushed) => tracing::debug!(bucket = %bucket.url(), %etag, ?pushed, "Pushed a blob"),
            Err(error) => {
                tracing::warn!(%error, "Could not push a blob to the team bucket");
                return;
            }
        }
    }
    let files = blobs
        .into_iter()
        .map(|b| crate::bucket::ManifestFile {
            path: b.path,
            size: b.size,
            etag: b.etag,
        })
        .collect();
    if let Err(error) = bucket.add_to_manifest(&repo, &commit, files).await {
        tracing::warn!(%error, "Could not write the team bucket's manifest");
        return;
    }
    if !crate::store::is_commit_hash(&revision)
        && let Err(error) = bucket.write_ref(&repo, &revision, &commit).await
    {
        tracing::warn!(%error, "Could not move the team bucket's ref");
    }
}

/// The commit the team bucket's ref `revision` names, when a bucket is configured and has one:
/// a team moves together, and a ref one member moved is what the others get on their next
/// lookup. A bucket that cannot be read is passed over (the Hub decides then).
pub(crate) async fn team_ref(
    bucket: Option<&crate::bucket::Bucket>,
    repo: &RepoId,
    revision: &str,
) -> Option<String> {
    let bucket = bucket?;
    if is_commit_hash(revision) {
        return None;
    }
    match bucket.read_ref(repo, revision).await {
        Ok(found) => {
            if let Some(commit) = &found {
                tracing::debug!(bucket = %bucket.url(), %revision, %commit, "The team's ref");
            }
            found
        }
        Err(error) => {
            tracing::warn!(%error, "Cannot read the team bucket's ref; asking the Hub");
            None
        }
    }
}
