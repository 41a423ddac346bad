//! The Hugging Face hub-cache layout on disk, byte-compatible with `huggingface_hub`.
//!
//! ```text
//! <root>/
//! ├── CACHEDIR.TAG
//! ├── .locks/models--org--name/<etag>.lock
//! └── models--org--name/
//!     ├── blobs/<etag>                         (sha256 for LFS files, git sha1 otherwise)
//!     ├── blobs/<etag>.incomplete              (a download in progress)
//!     ├── refs/main                            (40-hex commit, no trailing newline)
//!     ├── snapshots/<commit>/<path> -> ../../blobs/<etag>
//!     └── .no_exist/<commit>/<path>            (empty marker: the file does not exist there)
//! ```
//!
//! [`HubCache`] is the root, [`RepoCache`] one repo folder. Repo file names become paths only
//! through [`SafeRelPath`]. Writes go through [`atomic`] (temp name, then rename) so a crash never
//! leaves a half-written ref or link, and [`HubCache::clean_interrupted_writes`] removes the temp
//! files a crash left behind; blobs are locked with the same `flock` files Python uses.
//!
//! **API Boundary:** the store does no network I/O and knows nothing of the index.

pub mod atomic;
mod inventory;
pub mod layout;
mod link_mode;
pub mod listing;
mod lock;
pub mod removal;
mod safe_path;
mod scan;
pub mod share;
pub mod shared_blobs;
mod verify;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use inventory::{
    BlobUse, Inventory, LooseFile, RepoOnDisk, RevisionFile, RevisionOnDisk, blobs_of,
};
pub use link_mode::{LinkMode, NO_SYMLINKS_WARNING};
pub use lock::BlobLock;
pub use safe_path::{
    LONGEST_NAME_SUFFIX_BYTES, MAX_FILE_NAME_BYTES, MAX_SEGMENT_BYTES, SafeRelPath,
};
pub use scan::{
    CacheScan, CacheWarning, CachedFile, CachedRepo, CachedRevision, FileId, PartialFile,
    StoredFile, size_once,
};
pub use verify::{CorruptFile, SnapshotFile, VerifyReport};

use crate::error::{ErrorKind, Hint};
use crate::repo::RepoId;

/// The content of `CACHEDIR.TAG`, exactly as `huggingface_hub` ≥ 1.9 writes it.
pub const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by huggingface_hub.\n# For information about cache directory tags, see:\n#\thttps://bford.info/cachedir/\n";

/// Errors of the store; every one names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Refusing unsafe file name `{name}`: {reason}")]
    UnsafePath {
        name: String,
        reason: std::borrow::Cow<'static, str>,
    },
    #[error("Refusing to write through `{}`: it is a symlink leading outside the cache", path.display())]
    Escape { path: PathBuf },
    #[error("Invalid {what} `{value}`")]
    InvalidName { what: &'static str, value: String },
    #[error("Cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Blob `{}` is missing", path.display())]
    BlobMissing { path: PathBuf },
    #[error("`{}` was replaced by another process while it was written; it is not used", path.display())]
    Replaced { path: PathBuf },
    #[error(
        "Timed out after {} s waiting for the lock `{}`: another process (Model Cache or huggingface_hub) is downloading the same file", waited.as_secs(), path.display()
    )]
    LockTimeout { path: PathBuf, waited: Duration },
    #[error("Revision `{commit}` of `{repo}` is not in the cache")]
    NotCached { repo: String, commit: String },
    #[error("Refusing to remove `{}`: it is outside the hub cache `{}`", path.display(), root.display())]
    OutsideCache { path: PathBuf, root: PathBuf },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The stable kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::UnsafePath { .. } => ErrorKind::UnsafePath,
            StoreError::Escape { .. } => ErrorKind::PathEscape,
            StoreError::InvalidName { .. } => ErrorKind::InvalidName,
            StoreError::Io { source, .. } if is_disk_full(source) => ErrorKind::DiskFull,
            StoreError::Io { .. } => ErrorKind::Io,
            StoreError::BlobMissing { .. } => ErrorKind::BlobMissing,
            StoreError::Replaced { .. } => ErrorKind::Store,
            StoreError::LockTimeout { .. } => ErrorKind::LockTimeout,
            StoreError::NotCached { .. } => ErrorKind::NotCached,
            StoreError::OutsideCache { .. } => ErrorKind::Policy,
        }
    }

    /// What the user can do about it.
    pub fn hints(&self) -> Vec<Hint> {
        match self {
            StoreError::LockTimeout { path, .. } => vec![Hint::WaitForLock { path: path.clone() }],
            StoreError::NotCached { .. } => vec![Hint::ListCached],
            _ => Vec::new(),
        }
    }
}

impl crate::error::Diagnostic for StoreError {
    fn kind(&self) -> crate::error::ErrorKind {
        StoreError::kind(self)
    }

    fn hints(&self) -> Vec<crate::error::Hint> {
        StoreError::hints(self)
    }
}

/// The suffix of our partial files, `blobs/.<etag>.mcpart`.
pub const PARTIAL_SUFFIX: &str = ".mcpart";

/// The etag a partial file in `blobs/` belongs to, by its name: ours (`.<etag>.mcpart`), or an
/// `.incomplete` file (`<etag>.incomplete` from earlier versions and `huggingface_hub` ≤ 1.17,
/// `<etag>.<8 hex>.incomplete` from 1.18). `None` for any other name.
pub fn partial_etag(name: &str) -> Option<&str> {
    if let Some(etag) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(PARTIAL_SUFFIX))
    {
        return Some(etag);
    }
    let stem = name.strip_suffix(".incomplete")?;
    Some(stem.split('.').next().unwrap_or(stem))
}

/// Which file a path names, as the file system sees it: an open handle and a path agree on it
/// only if they are the same file. `None` where the platform gives no such identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    #[cfg(unix)]
    pub fn of(meta: &std::fs::Metadata) -> Option<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        Some(FileIdentity {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }

    #[cfg(not(unix))]
    pub fn of(_meta: &std::fs::Metadata) -> Option<FileIdentity> {
        None
    }
}

/// Whether an I/O error means the disk (or quota) is full.
pub fn is_disk_full(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::StorageFull)
        || matches!(error.raw_os_error(), Some(code) if code == libc::ENOSPC || code == libc::EDQUOT)
}

/// Whether `value` is a 40-hex commit hash (lowercase, as `huggingface_hub` requires).
pub fn is_commit_hash(value: &str) -> bool {
    value.len() == 40
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `etag` can name a blob: 1 to 128 characters of `[A-Za-z0-9_.-]`, not `.`/`..`, no
/// `.incomplete`/`.lock` suffix tricks. Real etags are 40 or 64 hex characters.
pub fn is_valid_etag(etag: &str) -> bool {
    !etag.is_empty()
        && etag.len() <= 128
        && !etag.starts_with('.')
        && etag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn check_etag(etag: &str) -> Result<(), StoreError> {
    if is_valid_etag(etag) {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            what: "etag",
            value: etag.escape_debug().to_string(),
        })
    }
}

fn check_commit(commit: &str) -> Result<(), StoreError> {
    if is_commit_hash(commit) {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            what: "commit hash",
            value: commit.escape_debug().to_string(),
        })
    }
}

/// Whether `a` and `b` are one file (a hard link) or two of the same size and bytes.
fn same_file_or_bytes(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    if ma.len() != mb.len() {
        return false;
    }
    if scan::identity(a, &ma).0 == scan::identity(b, &mb).0 {
        return true;
    }
    let (Ok(fa), Ok(fb)) = (std::fs::File::open(a), std::fs::File::open(b)) else {
        return false;
    };
    use std::io::Read;
    let (mut ra, mut rb) = (std::io::BufReader::new(fa), std::io::BufReader::new(fb));
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let Ok(na) = ra.read(&mut ba) else {
            return false;
        };
        if na == 0 {
            return true;
        }
        if rb.read_exact(&mut bb[..na]).is_err() || ba[..na] != bb[..na] {
            return false;
        }
    }
}

/// Writes `bytes` to `path` atomically (see [`atomic::write`]).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    atomic::write(path, bytes).map_err(|e| StoreError::io("write", path, e))
}

/// The root of a hub cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubCache {
    root: PathBuf,
    /// The link mode chosen by the caller; `None`: probed once per root ([`LinkMode::for_cache`]).
    link_mode: Option<LinkMode>,
}

impl HubCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HubCache {
            root: root.into(),
            link_mode: None,
        }
    }

    /// The same cache, making snapshot files in `mode` whatever the file system supports
    /// (tests use it to run the no-symlink fallback on every OS).
    pub fn with_link_mode(mut self, mode: LinkMode) -> Self {
        self.link_mode = Some(mode);
        self
    }

    /// How snapshot files are made in this cache.
    pub fn link_mode(&self) -> LinkMode {
        self.link_mode
            .unwrap_or_else(|| LinkMode::for_cache(&self.root))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of one repo (it may not exist yet).
    pub fn repo(&self, repo: &RepoId) -> RepoCache {
        let folder = repo.folder_name();
        RepoCache {
            dir: self.root.join(&folder),
            locks: self.root.join(".locks").join(&folder),
            root: self.root.clone(),
            repo: repo.clone(),
            link_mode: self.link_mode,
        }
    }

    /// Creates the root and writes `CACHEDIR.TAG` if it is missing (as `huggingface_hub` ≥ 1.9
    /// does; the only file of ours allowed in the root).
    pub fn ensure_root(&self) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.root).map_err(|e| StoreError::io("create", &self.root, e))?;
        let tag = self.root.join("CACHEDIR.TAG");
        if !tag.exists() {
            write_atomic(&tag, CACHEDIR_TAG.as_bytes())?;
        }
        Ok(())
    }

    /// Reads the whole cache like `scan_cache_dir`: repos, revisions, files, sizes, warnings.
    pub fn scan(&self) -> Result<CacheScan, StoreError> {
        scan::scan(self)
    }

    /// Removes the temp files that interrupted atomic writes left in the cache (the root, and
    /// each repo's `refs/`, `snapshots/` and `.no_exist/`) and in `data_dir` (the app-data
    /// folder, not its subfolders): those older than [`atomic::LEFTOVER_GRACE`] at `now` whose
    /// writer is no longer running. Without this, `huggingface_hub`'s `scan_cache_dir` would
    /// list such a file as a ref or a snapshot file. Best effort (failures are logged); returns
    /// what was removed, or with `dry_run` what would be.
    pub fn clean_interrupted_writes(
        &self,
        data_dir: Option<&Path>,
        now: SystemTime,
        dry_run: bool,
    ) -> Vec<PathBuf> {
        let grace = atomic::LEFTOVER_GRACE;
        let mut removed = atomic::remove_leftovers(&self.root, false, grace, now, dry_run);
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for entry in entries.filter_map(Result::ok) {
                let is_repo = entry.file_type().is_ok_and(|t| t.is_dir())
                    && RepoId::from_folder_name(&entry.file_name().to_string_lossy()).is_some();
                if !is_repo {
                    continue;
                }
                for folder in ["refs", "snapshots", ".no_exist"] {
                    let dir = entry.path().join(folder);
                    removed.extend(atomic::remove_leftovers(&dir, true, grace, now, dry_run));
                }
            }
        }
        if let Some(dir) = data_dir {
            removed.extend(atomic::remove_leftovers(dir, false, grace, now, dry_run));
        }
        removed
    }
}

/// What the cache knows about one file at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedLookup {
    /// The snapshot path (not the resolved blob: transformers parses the commit out of it).
    Found(PathBuf),
    /// A `.no_exist` marker says the file does not exist at that commit.
    KnownMissing { commit: String },
    /// Nothing cached.
    NotCached,
}

/// One repo folder in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoCache {
    root: PathBuf,
    dir: PathBuf,
    locks: PathBuf,
    repo: RepoId,
    link_mode: Option<LinkMode>,
}

impl RepoCache {
    pub fn repo(&self) -> &RepoId {
        &self.repo
    }

    /// `<root>/models--org--name`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `blobs/<etag>`. The etag must satisfy [`is_valid_etag`] (the hub client checks etags it
    /// receives); writing methods re-check it.
    pub fn blob_path(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }

    /// `blobs/.<etag>.mcpart`: where our download writes before verification. The name is
    /// ours alone: `huggingface_hub` ≤ 1.17 resumes `<etag>.incomplete` by appending to it (and
    /// would take a preallocated file of the right length as finished), 2.x's `hf cache prune`
    /// deletes every `*.incomplete`, and `hf-hub` appends to `*.part`.
    pub fn partial_path(&self, etag: &str) -> PathBuf {
        self.dir
            .join("blobs")
            .join(format!(".{etag}{PARTIAL_SUFFIX}"))
    }

    /// `blobs/<etag>.incomplete`: where earlier versions of Model Cache (and `huggingface_hub`
    /// ≤ 1.17) wrote. A download whose job is recorded resumes from it by renaming it to
    /// [`RepoCache::partial_path`] (see [`RepoCache::adopt_legacy_partial`]).
    pub fn legacy_partial_path(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{etag}.incomplete"))
    }

    /// Renames our earlier partial file `blobs/<etag>.incomplete` to the private name, when
    /// there is one of `size` bytes and no private partial file yet. Called with the blob lock
    /// held, for a download whose job the index records (so the file is ours). Returns whether
    /// it did.
    pub fn adopt_legacy_partial(&self, etag: &str, size: u64) -> Result<bool, StoreError> {
        check_etag(etag)?;
        let (from, to) = (self.legacy_partial_path(etag), self.partial_path(etag));
        if std::fs::symlink_metadata(&to).is_ok()
            || !std::fs::symlink_metadata(&from).is_ok_and(|m| m.is_file() && m.len() == size)
        {
            return Ok(false);
        }
        std::fs::rename(&from, &to).map_err(|e| StoreError::io("rename", &from, e))?;
        Ok(true)
    }

    pub fn blob_exists(&self, etag: &str) -> bool {
        is_valid_etag(etag) && self.blob_path(etag).is_file()
    }

    /// `snapshots/<commit>`.
    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    /// `snapshots/<commit>/<file>`.
    pub fn snapshot_path(&self, commit: &str, file: &SafeRelPath) -> PathBuf {
        file.join_to(&self.snapshot_dir(commit))
    }

    /// `.locks/<folder>/<etag>.lock`.
    pub fn lock_path(&self, etag: &str) -> PathBuf {
        self.locks.join(format!("{etag}.lock"))
    }

    /// `refs/<revision>` (`refs/refs/pr/1` for `refs/pr/1`).
    pub fn ref_path(&self, revision: &SafeRelPath) -> PathBuf {
        revision.join_to(&self.dir.join("refs"))
    }

    /// Creates the repo's `blobs/`, `snapshots/`, `refs/` and lock folders, and the root's
    /// `CACHEDIR.TAG`.
    pub fn ensure_dirs(&self) -> Result<(), StoreError> {
        HubCache::new(self.root.clone()).ensure_root()?;
        for dir in [
            self.dir.join("blobs"),
            self.dir.join("snapshots"),
            self.dir.join("refs"),
            self.locks.clone(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        }
        Ok(())
    }

    /// Takes the exclusive lock on a blob, waiting up to `timeout` (blocking: async callers use
    /// `spawn_blocking`). It is an `flock` on the very
    /// file `huggingface_hub` locks, so Python and Model Cache never write one blob at once.
    pub fn lock_blob(&self, etag: &str, timeout: Duration) -> Result<BlobLock, StoreError> {
        check_etag(etag)?;
        std::fs::create_dir_all(&self.locks)
            .map_err(|e| StoreError::io("create", &self.locks, e))?;
        BlobLock::acquire(self.lock_path(etag), timeout)
    }

    /// Moves a finished `blobs/<etag>.incomplete` to `blobs/<etag>` (after the caller verified
    /// it), with the permissions a freshly created file gets (as Python's `chmod` from umask).
    pub fn finish_blob(&self, etag: &str) -> Result<PathBuf, StoreError> {
        self.finish_blob_as(etag, None)
    }

    /// Like [`RepoCache::finish_blob`], but only when the partial file is still the very file
    /// `written` identifies (the one the caller wrote and verified through its open handle): a
    /// partial file removed and recreated meanwhile by another process is never renamed into
    /// place as if it were the verified one.
    pub fn finish_written_blob(
        &self,
        etag: &str,
        written: &FileIdentity,
    ) -> Result<PathBuf, StoreError> {
        self.finish_blob_as(etag, Some(written))
    }

    fn finish_blob_as(
        &self,
        etag: &str,
        written: Option<&FileIdentity>,
    ) -> Result<PathBuf, StoreError> {
        check_etag(etag)?;
        let from = self.partial_path(etag);
        let to = self.blob_path(etag);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&from)
            .map_err(|e| StoreError::io("open", &from, e))?;
        file.sync_all()
            .map_err(|e| StoreError::io("flush", &from, e))?;
        if let Some(written) = written {
            let found = file
                .metadata()
                .map(|m| FileIdentity::of(&m))
                .map_err(|e| StoreError::io("read", &from, e))?;
            if found.as_ref() != Some(written) {
                return Err(StoreError::Replaced { path: from });
            }
        }
        drop(file);
        std::fs::rename(&from, &to).map_err(|e| StoreError::io("rename", &from, e))?;
        Ok(to)
    }

    /// Gives another program's file `source` the partial name of blob `etag` (see
    /// [`share::share_file`]: a hard link, else a reflink, else a copy when `allow_copy`), for
    /// an import that then checks its hash and calls [`RepoCache::finish_adopted_blob`]. The
    /// source is only read. With [`share::ShareMethod::NeedsCopy`] nothing was created.
    pub fn share_into_partial(
        &self,
        etag: &str,
        source: &Path,
        allow_copy: bool,
    ) -> Result<share::ShareMethod, StoreError> {
        check_etag(etag)?;
        let to = self.partial_path(etag);
        let blobs = layout::blobs_dir(&self.dir);
        std::fs::create_dir_all(&blobs).map_err(|e| StoreError::io("create", &blobs, e))?;
        share::share_file(source, &to, allow_copy).map_err(|e| StoreError::io("link", source, e))
    }

    /// What [`RepoCache::share_into_partial`] would do, creating nothing that stays.
    pub fn probe_share(
        &self,
        source: &Path,
        allow_copy: bool,
    ) -> Result<share::ShareMethod, StoreError> {
        // The nearest folder that exists on the way to `blobs/`: the same file system, and
        // nothing created for a dry run.
        let blobs = layout::blobs_dir(&self.dir);
        let mut dir = blobs.as_path();
        while !dir.is_dir() {
            match dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => dir = parent,
                _ => break,
            }
        }
        share::probe(source, dir, allow_copy).map_err(|e| StoreError::io("probe", source, e))
    }

    /// Renames an adopted partial file (whose hash the caller checked) to `blobs/<etag>`. Unlike
    /// [`RepoCache::finish_blob`] it never opens the file for writing: it may be another
    /// program's file under a second name.
    pub fn finish_adopted_blob(&self, etag: &str) -> Result<PathBuf, StoreError> {
        check_etag(etag)?;
        let (from, to) = (self.partial_path(etag), self.blob_path(etag));
        std::fs::rename(&from, &to).map_err(|e| StoreError::io("rename", &from, e))?;
        Ok(to)
    }

    /// Removes an adopted partial file whose hash did not match (only our name for it).
    pub fn discard_adopted_partial(&self, etag: &str) -> Result<(), StoreError> {
        check_etag(etag)?;
        let path = self.partial_path(etag);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError::io("remove", &path, e))
            }
            _ => Ok(()),
        }
    }

    /// Links `snapshots/<commit>/<file>` to `blobs/<etag>` with a relative symlink, atomically
    /// (see [`atomic::symlink`]: a symlink under a temp name, then a rename over the final
    /// name). In a cache without symlinks ([`LinkMode::Copy`]: Windows without Developer Mode,
    /// a FAT drive) the snapshot file is a hard link to the blob, else a copy of it, as
    /// `huggingface_hub` falls back. Parent folders are created without ever following a
    /// symlink out of the snapshot. Returns the snapshot path.
    pub fn link(
        &self,
        commit: &str,
        file: &SafeRelPath,
        etag: &str,
    ) -> Result<PathBuf, StoreError> {
        check_commit(commit)?;
        check_etag(etag)?;
        let blob = self.blob_path(etag);
        if !blob.is_file() {
            return Err(StoreError::BlobMissing { path: blob });
        }
        let snapshot = self.snapshot_dir(commit);
        let parent = safe_path::create_parents_inside(&snapshot, file)?;
        let name = file.segments().last().unwrap_or_default();
        let pointer = parent.join(name);
        let mut target = PathBuf::new();
        for _ in 0..file.depth() + 1 {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        if std::fs::read_link(&pointer).is_ok_and(|existing| existing == target) {
            return Ok(pointer);
        }
        if std::fs::symlink_metadata(&pointer).is_ok_and(|m| m.is_dir()) {
            return Err(StoreError::io(
                "link",
                &pointer,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a folder is in the way"),
            ));
        }
        let mode = self
            .link_mode
            .unwrap_or_else(|| LinkMode::for_cache(&self.root));
        if mode == LinkMode::Symlink {
            match atomic::symlink(&target, &pointer) {
                Ok(()) => return Ok(pointer),
                Err(e) => {
                    tracing::debug!(path = %pointer.display(), error = %e, "Symlink failed, falling back to a hard link or a copy");
                    if self.link_mode.is_none() {
                        LinkMode::symlink_failed(&self.root);
                    }
                }
            }
        }
        // The snapshot holds a regular file, which `huggingface_hub` accepts as the blob
        // itself. A hard link costs no space and keeps one file for deduplication; a copy is
        // the last resort. A copy already there with the blob's bytes is kept.
        if std::fs::symlink_metadata(&pointer).is_ok_and(|m| m.is_file())
            && same_file_or_bytes(&blob, &pointer)
        {
            return Ok(pointer);
        }
        if atomic::hard_link(&blob, &pointer).is_err() {
            atomic::copy(&blob, &pointer).map_err(|e| StoreError::io("copy", &blob, e))?;
        }
        Ok(pointer)
    }

    /// Writes `refs/<revision>` = `commit` atomically with no trailing newline, unless the
    /// revision is itself a commit hash (then there is nothing to record).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), StoreError> {
        check_commit(commit)?;
        if is_commit_hash(revision) {
            return Ok(());
        }
        let rel = SafeRelPath::new(revision)?;
        let refs = self.dir.join("refs");
        let parent = safe_path::create_parents_inside(&refs, &rel)?;
        let path = parent.join(rel.segments().last().unwrap_or_default());
        if std::fs::read(&path).is_ok_and(|current| current == commit.as_bytes()) {
            return Ok(());
        }
        write_atomic(&path, commit.as_bytes())
    }

    /// The raw content of `refs/<revision>` (read like Python: no trimming), if present.
    pub fn read_ref(&self, revision: &str) -> Option<String> {
        let rel = SafeRelPath::new(revision).ok()?;
        std::fs::read_to_string(self.ref_path(&rel)).ok()
    }

    /// The commit a revision points to in the cache: the revision itself when it is a commit
    /// hash, else `refs/<revision>`.
    pub fn cached_commit(&self, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            return Some(revision.to_string());
        }
        self.read_ref(revision)
    }

    /// Records that `file` does not exist at `commit` (`.no_exist/<commit>/<file>`, empty).
    pub fn mark_no_exist(&self, commit: &str, file: &SafeRelPath) -> Result<(), StoreError> {
        check_commit(commit)?;
        let base = self.dir.join(".no_exist").join(commit);
        let parent = safe_path::create_parents_inside(&base, file)?;
        let path = parent.join(file.segments().last().unwrap_or_default());
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        write_atomic(&path, b"")
    }

    /// Offline lookup, like `try_to_load_from_cache`.
    pub fn lookup_cached(&self, revision: &str, file: &str) -> CachedLookup {
        let Ok(file) = SafeRelPath::new(file) else {
            return CachedLookup::NotCached;
        };
        let Some(commit) = self.cached_commit(revision) else {
            return CachedLookup::NotCached;
        };
        if !is_commit_hash(&commit) {
            return CachedLookup::NotCached;
        }
        if file
            .join_to(&self.dir.join(".no_exist").join(&commit))
            .is_file()
        {
            return CachedLookup::KnownMissing { commit };
        }
        let path = self.snapshot_path(&commit, &file);
        if path.is_file() {
            CachedLookup::Found(path)
        } else {
            CachedLookup::NotCached
        }
    }

    /// The snapshot path of a cached file (not the resolved blob), or `None`.
    pub fn resolve_cached(&self, revision: &str, file: &str) -> Option<PathBuf> {
        match self.lookup_cached(revision, file) {
            CachedLookup::Found(path) => Some(path),
            _ => None,
        }
    }
}
