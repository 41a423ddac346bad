//! `doctor`: checks the hub cache and rebuilds the index from it.
//!
//! The disk is the truth. [`run`] scans the cache (including caches written by
//! `huggingface_hub`) and always brings the index in line with it: repos, refs, files and blobs
//! found on disk are recorded; rows for blobs or snapshots that are gone are dropped. It reports
//! what is wrong on disk — broken symlinks, stale `.incomplete` files, unreferenced blobs, refs
//! to missing snapshots, foreign files in the cache root — and, with `repair`, fixes what can be
//! fixed without losing data: broken links and dangling refs are removed, and `.incomplete` files
//! that no download job owns and no process has locked are deleted, and so are temp files that
//! our interrupted atomic writes left (see [`HubCache::clean_interrupted_writes`]). Unreferenced
//! blobs are only reported (eviction decides about them).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::index::{FileRecord, Index, IndexError, transfers};
use crate::repo::RepoId;
use crate::store::{CacheWarning, HubCache, StoreError, is_commit_hash};

/// Errors that stop `doctor`.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl DoctorError {
    /// The stable kind.
    pub fn kind(&self) -> crate::error::ErrorKind {
        match self {
            DoctorError::Store(e) => e.kind(),
            DoctorError::Index(e) => e.kind(),
        }
    }

    /// What the user can do about it.
    pub fn hints(&self) -> Vec<crate::error::Hint> {
        match self {
            DoctorError::Store(e) => e.hints(),
            DoctorError::Index(e) => e.hints(),
        }
    }
}

impl crate::error::Diagnostic for DoctorError {
    fn kind(&self) -> crate::error::ErrorKind {
        DoctorError::kind(self)
    }

    fn hints(&self) -> Vec<crate::error::Hint> {
        DoctorError::hints(self)
    }
}

/// What `doctor` found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DoctorReport {
    pub cache_root: PathBuf,
    /// Repos found in the cache.
    pub repos_on_disk: Vec<RepoId>,
    /// Repos the index did not know before this run.
    pub repos_added: Vec<RepoId>,
    /// Repos the index knows but whose folder is gone (their file and blob rows were dropped;
    /// pins and access times are kept).
    pub repos_missing: Vec<RepoId>,
    pub blobs_on_disk: usize,
    pub bytes_on_disk: u64,
    /// Index blob rows dropped because the blob is gone: `(repo, etag)`.
    pub blob_rows_dropped: Vec<(RepoId, String)>,
    /// Index commits dropped because their snapshot is gone: `(repo, commit)`.
    pub commits_dropped: Vec<(RepoId, String)>,
    pub broken_links: Vec<PathBuf>,
    /// `.incomplete` files that no unfinished download job owns.
    pub stale_incomplete: Vec<PathBuf>,
    /// `.incomplete` files that a download job will resume.
    pub resumable_incomplete: Vec<PathBuf>,
    pub unreferenced_blobs: Vec<PathBuf>,
    /// `refs/...` files whose content is not a snapshot folder.
    pub dangling_refs: Vec<PathBuf>,
    /// Temp files of atomic writes in `refs/` and `snapshots/`: a write in progress, or left by
    /// one a crash interrupted (repair removes those older than an hour whose writer is gone).
    pub temp_files: Vec<PathBuf>,
    /// Every warning of the scan (`scan_cache_dir` would warn about these too).
    pub warnings: Vec<CacheWarning>,
    /// Whether repairs were applied.
    pub repair: bool,
    /// Files removed by the repair.
    pub removed: Vec<PathBuf>,
}

impl DoctorReport {
    /// Whether the cache has no problem left.
    pub fn is_healthy(&self) -> bool {
        let left = |paths: &[PathBuf]| paths.iter().any(|p| p.exists() || p.is_symlink());
        !left(&self.broken_links)
            && !left(&self.stale_incomplete)
            && !left(&self.dangling_refs)
            && self.warnings.iter().all(|w| self.removed.contains(&w.path))
    }
}

/// Scans `cache`, syncs `index` with it, and with `repair` fixes what is broken on disk.
pub fn run(cache: &HubCache, index: &Index, repair: bool) -> Result<DoctorReport, DoctorError> {
    let scan = cache.scan()?;
    let mut report = DoctorReport {
        cache_root: cache.root().to_path_buf(),
        repair,
        warnings: scan.warnings.clone(),
        bytes_on_disk: scan.size_on_disk,
        ..DoctorReport::default()
    };
    let known: Vec<RepoId> = index.repos()?.into_iter().map(|r| r.repo).collect();
    for cached in &scan.repos {
        let repo = &cached.repo;
        report.repos_on_disk.push(repo.clone());
        if !known.contains(repo) {
            report.repos_added.push(repo.clone());
        }
        index.upsert_repo(repo)?;
        report.blobs_on_disk += cached.blobs.len();

        // Blobs: record what is there, drop rows of what is not.
        for (etag, blob) in &cached.blobs {
            index.record_blob(repo, etag, blob.size, false)?;
        }
        for record in index.blobs(repo)? {
            if !cached.blobs.contains_key(&record.etag) {
                index.remove_blob(repo, &record.etag)?;
                report.blob_rows_dropped.push((repo.clone(), record.etag));
            }
        }

        // Snapshots and refs.
        for revision in &cached.revisions {
            if !is_commit_hash(&revision.commit) {
                continue;
            }
            let files: Vec<FileRecord> = revision
                .files
                .iter()
                .filter_map(|file| {
                    let etag = file.etag.clone()?;
                    let is_lfs = etag.len() == 64;
                    Some(FileRecord {
                        path: file.path.clone(),
                        sha256: is_lfs.then(|| etag.clone()),
                        etag,
                        size: file.size,
                        is_lfs,
                    })
                })
                .collect();
            index.record_files(repo, &revision.commit, &files)?;
            for name in &revision.refs {
                index.record_revision(repo, name, &revision.commit)?;
            }
            for broken in &revision.broken {
                report.broken_links.push(revision.path.join(broken));
            }
        }
        for commit in index.commits(repo)? {
            if !cached.revisions.iter().any(|r| r.commit == commit) {
                index.remove_commit(repo, &commit)?;
                report.commits_dropped.push((repo.clone(), commit));
            }
        }
        for name in &cached.dangling_refs {
            report.dangling_refs.push(
                name.split('/')
                    .fold(crate::store::layout::refs_dir(&cached.path), |p, s| p.join(s)),
            );
        }
        report.temp_files.extend(cached.temp_files.iter().cloned());
        for etag in &cached.unreferenced_blobs {
            report
                .unreferenced_blobs
                .push(crate::store::layout::blob_file(&cached.path, etag));
        }

        // `.incomplete` files: resumable when a job owns them, or when someone holds the lock.
        let repo_cache = cache.repo(repo);
        for partial in &cached.incomplete {
            let path = &partial.path;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let etag = crate::store::partial_etag(&name)
                .unwrap_or_default()
                .to_string();
            let folder = repo.folder_name();
            let owned = index.with_conn("find a download job", |c| {
                transfers::find_unfinished(c, &folder, &etag)
            })?;
            let locked = crate::store::is_valid_etag(&etag)
                && repo_cache.lock_blob(&etag, Duration::ZERO).is_err();
            if owned.is_some() || locked {
                report.resumable_incomplete.push(path.clone());
            } else {
                report.stale_incomplete.push(path.clone());
            }
        }
    }
    for repo in known {
        if !report.repos_on_disk.contains(&repo) {
            for blob in index.blobs(&repo)? {
                index.remove_blob(&repo, &blob.etag)?;
                report.blob_rows_dropped.push((repo.clone(), blob.etag));
            }
            for commit in index.commits(&repo)? {
                index.remove_commit(&repo, &commit)?;
                report.commits_dropped.push((repo.clone(), commit));
            }
            report.repos_missing.push(repo);
        }
    }

    if repair {
        let targets: Vec<PathBuf> = report
            .broken_links
            .iter()
            .chain(&report.stale_incomplete)
            .chain(&report.dangling_refs)
            .cloned()
            .collect();
        for path in targets {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "Removed");
                    report.removed.push(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &path, e).into()),
            }
        }
        let data_dir = index.path().and_then(Path::parent);
        report
            .removed
            .extend(cache.clean_interrupted_writes(data_dir, SystemTime::now(), false));
        index.record_event(
            "doctor_repair",
            None,
            &format!("removed {} file(s)", report.removed.len()),
        )?;
    }
    Ok(report)
}
