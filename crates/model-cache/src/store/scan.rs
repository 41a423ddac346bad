//! Reading a whole cache, including caches written by `huggingface_hub`.
//!
//! Unlike `scan_cache_dir`, which drops a repo at its first inconsistency, the scan keeps every
//! repo and reports each problem precisely (broken links, refs to missing snapshots, stale
//! `.incomplete` files, unreferenced blobs), which is what `doctor` needs to repair. Temp files
//! of our interrupted atomic writes are never taken for refs or files: they are listed apart.
//!
//! Sizes count each file once by its identity on disk ([`FileId`]), not by its name: a blob two
//! repos share is one file hard-linked into both `blobs/` folders, and it takes its bytes once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{HubCache, StoreError, atomic, is_commit_hash};
use crate::repo::RepoId;

/// Entries of the cache root that are not repos but are expected there.
const ROOT_ALLOWED: &[&str] = &[
    ".locks",
    "CACHEDIR.TAG",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    "blobs",
];

/// Which file a path names on disk. Hard links to one file (a blob the downloader linked into a
/// second repo rather than download it again) share one `FileId`: sizes count it once, and
/// removing one of its names frees nothing while another remains.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileId {
    /// The device and inode numbers.
    Inode { dev: u64, ino: u64 },
    /// The path, where std gives no inode number (off unix): every path is then a file of its
    /// own, so hard links there count once per name, as they did before sizes went by inode.
    Path { path: PathBuf },
}

/// What the file system says about one stored file (a blob, a copied snapshot file, a partial
/// download): which file it is, its size, how many names it has and its times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    pub id: FileId,
    pub size: u64,
    /// Names (hard links) the file has on disk, in the cache or outside it; 1 where the platform
    /// does not say. Its bytes are freed when the last one is removed.
    pub links: u64,
    pub modified: Option<SystemTime>,
    pub accessed: Option<SystemTime>,
}

impl StoredFile {
    /// Reads what `path` names, following symlinks: a snapshot link is the blob it leads to.
    pub fn read(path: &Path) -> std::io::Result<StoredFile> {
        Ok(StoredFile::of(path, &std::fs::metadata(path)?))
    }

    /// The facts of `meta`, read for `path`.
    fn of(path: &Path, meta: &Metadata) -> StoredFile {
        let (id, links) = identity(path, meta);
        StoredFile {
            id,
            size: meta.len(),
            links,
            modified: meta.modified().ok(),
            accessed: meta.accessed().ok(),
        }
    }
}

#[cfg(unix)]
pub(super) fn identity(_path: &Path, meta: &Metadata) -> (FileId, u64) {
    use std::os::unix::fs::MetadataExt;
    (
        FileId::Inode {
            dev: meta.dev(),
            ino: meta.ino(),
        },
        meta.nlink(),
    )
}

/// Off unix std has no stable file index or link count (`MetadataExt::file_index` and
/// `number_of_links` are unstable on Windows): a file is its path, with one name.
#[cfg(not(unix))]
pub(super) fn identity(path: &Path, _meta: &Metadata) -> (FileId, u64) {
    (
        FileId::Path {
            path: path.to_path_buf(),
        },
        1,
    )
}

/// Bytes of `files`, each file counted once however many names it has among them.
pub fn size_once<'a>(files: impl IntoIterator<Item = (&'a FileId, u64)>) -> u64 {
    let mut seen = HashMap::new();
    for (id, size) in files {
        seen.insert(id, size);
    }
    seen.values().sum()
}

/// Everything found in a cache.
#[derive(Debug, Clone, Serialize)]
pub struct CacheScan {
    pub root: PathBuf,
    pub repos: Vec<CachedRepo>,
    /// Problems that `huggingface_hub`'s `scan_cache_dir` would also warn about, and more.
    pub warnings: Vec<CacheWarning>,
    /// Bytes of all blobs and copied files, each file counted once (a blob hard-linked into
    /// several repos too).
    pub size_on_disk: u64,
}

/// A problem found while scanning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheWarning {
    pub path: PathBuf,
    pub message: String,
}

/// One repo folder.
#[derive(Debug, Clone, Serialize)]
pub struct CachedRepo {
    pub repo: RepoId,
    pub path: PathBuf,
    /// Bytes of the repo's blobs (regular files in snapshots count too: the no-symlink layout),
    /// each file once.
    pub size_on_disk: u64,
    pub revisions: Vec<CachedRevision>,
    /// `refs/<name>` → raw content.
    pub refs: BTreeMap<String, String>,
    /// Complete blobs: etag → the file.
    pub blobs: BTreeMap<String, StoredFile>,
    /// Blobs no snapshot points to.
    pub unreferenced_blobs: Vec<String>,
    /// Partial downloads in `blobs/`: ours (`.<etag>.mcpart`) and other tools' (`*.incomplete`),
    /// in progress or left behind by a crash.
    pub incomplete: Vec<PartialFile>,
    /// Blobs that are symbolic links themselves (`huggingface_hub` 2.x's shared blob store
    /// links `blobs/<etag>` to `<cache>/blobs/…`): listed in `blobs` with what they lead to.
    pub linked_blobs: BTreeSet<String>,
    /// The repo folder is a symlink (a model moved to another drive by hand): readable, but
    /// nothing in it is removed.
    pub folder_is_link: bool,
    /// Refs whose content is not a snapshot folder (`scan_cache_dir` rejects the repo for this).
    pub dangling_refs: Vec<String>,
    /// Temp files of atomic writes in `refs/` and `snapshots/` (in progress, or left by a crash;
    /// see [`HubCache::clean_interrupted_writes`]). They are not counted as refs or files.
    pub temp_files: Vec<PathBuf>,
    /// Latest modification time of a blob or snapshot file.
    pub last_modified: Option<SystemTime>,
    /// Latest access time of a blob, where the file system records it.
    pub last_accessed: Option<SystemTime>,
}

/// One snapshot folder.
#[derive(Debug, Clone, Serialize)]
pub struct CachedRevision {
    pub commit: String,
    pub path: PathBuf,
    /// Refs pointing at this commit.
    pub refs: Vec<String>,
    pub files: Vec<CachedFile>,
    /// Snapshot paths (relative) whose symlink does not resolve.
    pub broken: Vec<String>,
    /// Bytes of its files, each file once.
    pub size_on_disk: u64,
    /// The snapshot folder is a symlink: readable, but nothing in it is removed.
    pub folder_is_link: bool,
}

/// A partial download in a repo's `blobs/`.
#[derive(Debug, Clone, Serialize)]
pub struct PartialFile {
    pub path: PathBuf,
    pub file: StoredFile,
}

/// One file of a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct CachedFile {
    /// Relative to the snapshot, with `/` separators.
    pub path: String,
    pub snapshot_path: PathBuf,
    /// What the snapshot entry resolves to (the snapshot path itself for copied files).
    pub blob_path: PathBuf,
    /// The blob name when the entry is a link into this repo's `blobs/`.
    pub etag: Option<String>,
    pub size: u64,
    /// Which file `blob_path` is: the same for every name of a hard-linked blob.
    pub id: FileId,
    /// Names that file has on disk (see [`StoredFile::links`]).
    pub links: u64,
    /// The snapshot entry is a regular file (a copy, where the file system had no symlinks),
    /// not a link: it holds its own bytes.
    pub copied: bool,
    pub modified: Option<SystemTime>,
    pub accessed: Option<SystemTime>,
}

pub(super) fn scan(cache: &HubCache) -> Result<CacheScan, StoreError> {
    let root = cache.root().to_path_buf();
    let mut scan = CacheScan {
        root: root.clone(),
        repos: Vec::new(),
        warnings: Vec::new(),
        size_on_disk: 0,
    };
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(scan),
        Err(e) => return Err(StoreError::io("read", &root, e)),
    };
    let mut names: Vec<_> = entries.filter_map(Result::ok).collect();
    names.sort_by_key(|e| e.file_name());
    let mut files: HashMap<FileId, u64> = HashMap::new();
    for entry in names {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if ROOT_ALLOWED.contains(&name.as_str())
            || atomic::leftover_pid(&entry.file_name()).is_some()
        {
            continue;
        }
        let repo = RepoId::from_folder_name(&name);
        match (repo, path.is_dir()) {
            (Some(repo), true) => {
                let mut cached = scan_repo(repo, &path, &mut scan.warnings)?;
                cached.folder_is_link = is_link(&path);
                for (id, size) in stored_files(&cached) {
                    files.insert(id.clone(), size);
                }
                scan.repos.push(cached);
            }
            _ => scan.warnings.push(CacheWarning {
                path,
                message: format!(
                    "`{name}` is not a repo folder (`models--org--name`); huggingface_hub reports it as a corrupted cache"
                ),
            }),
        }
    }
    // `huggingface_hub` 2.x's shared blob store: each payload counts once (those no repo uses
    // too, as 2.4 counts them), and each repo link to it is one of its names.
    let payloads = super::shared_blobs::payloads(&root);
    if !payloads.is_empty() {
        let mut names: HashMap<FileId, u64> = HashMap::new();
        for repo in &scan.repos {
            for etag in &repo.linked_blobs {
                if let Some(blob) = repo.blobs.get(etag) {
                    *names.entry(blob.id.clone()).or_default() += 1;
                }
            }
        }
        for repo in &mut scan.repos {
            let linked = &repo.linked_blobs;
            for (etag, blob) in repo.blobs.iter_mut() {
                if let Some(&n) = names.get(&blob.id).filter(|_| linked.contains(etag)) {
                    blob.links = n;
                }
            }
            for file in repo.revisions.iter_mut().flat_map(|r| r.files.iter_mut()) {
                let shared = file.etag.as_ref().is_some_and(|e| linked.contains(e));
                if let Some(&n) = names.get(&file.id).filter(|_| shared) {
                    file.links = n;
                }
            }
        }
        for (_, payload) in payloads {
            files.insert(payload.id, payload.size);
        }
    }
    scan.size_on_disk = files.values().sum();
    Ok(scan)
}

/// The files a repo takes space with: its blobs and the files its snapshots hold themselves
/// (copies, where the file system had no symlinks).
fn stored_files(repo: &CachedRepo) -> impl Iterator<Item = (&FileId, u64)> {
    let blobs = repo.blobs.values().map(|b| (&b.id, b.size));
    let copied = repo
        .revisions
        .iter()
        .flat_map(|r| &r.files)
        .filter(|f| f.copied)
        .map(|f| (&f.id, f.size));
    blobs.chain(copied)
}

/// Whether `path` itself is a symbolic link.
fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Reads one repo folder, as [`scan`] does for each (its warnings are dropped).
pub(super) fn read_repo(repo: &RepoId, dir: &Path) -> Result<CachedRepo, StoreError> {
    let mut cached = scan_repo(repo.clone(), dir, &mut Vec::new())?;
    cached.folder_is_link = is_link(dir);
    Ok(cached)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<std::fs::DirEntry>, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
            entries.sort_by_key(|e| e.file_name());
            Ok(entries)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io("read", dir, e)),
    }
}

fn later(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn scan_repo(
    repo: RepoId,
    dir: &Path,
    warnings: &mut Vec<CacheWarning>,
) -> Result<CachedRepo, StoreError> {
    let mut cached = CachedRepo {
        repo,
        path: dir.to_path_buf(),
        size_on_disk: 0,
        revisions: Vec::new(),
        refs: BTreeMap::new(),
        blobs: BTreeMap::new(),
        unreferenced_blobs: Vec::new(),
        incomplete: Vec::new(),
        linked_blobs: BTreeSet::new(),
        folder_is_link: false,
        dangling_refs: Vec::new(),
        temp_files: Vec::new(),
        last_modified: None,
        last_accessed: None,
    };
    let blobs_dir = dir.join("blobs");
    for entry in read_dir_sorted(&blobs_dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        // The entry's type comes with the folder listing where the file system gives it: a
        // plain blob then costs one `stat`, and only a link is followed.
        let linked = entry
            .file_type()
            .map_or_else(|_| is_link(&entry.path()), |t| t.is_symlink());
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if super::partial_etag(&name).is_some() {
            cached.incomplete.push(PartialFile {
                path: entry.path(),
                file: StoredFile::of(&entry.path(), &meta),
            });
        } else if !name.ends_with(".lock") && !name.ends_with(".part") {
            if linked {
                cached.linked_blobs.insert(name.clone());
            }
            let blob = StoredFile::of(&entry.path(), &meta);
            cached.last_modified = later(cached.last_modified, blob.modified);
            cached.last_accessed = later(cached.last_accessed, blob.accessed);
            cached.blobs.insert(name, blob);
        }
    }
    collect_refs(
        &dir.join("refs"),
        "",
        &mut cached.refs,
        &mut cached.temp_files,
    )?;

    let snapshots = dir.join("snapshots");
    if !snapshots.is_dir() {
        warnings.push(CacheWarning {
            path: snapshots.clone(),
            message: "Repo has no `snapshots` folder".into(),
        });
    }
    let canonical_blobs = blobs_dir.canonicalize().ok();
    // Snapshot links are read against the blobs just listed when `..` means what it says: the
    // `snapshots` folder is a real folder (a linked snapshot folder is resolved the long way).
    let known = KnownBlobs {
        canonical: canonical_blobs.as_deref(),
        blobs: &cached.blobs,
        linked: &cached.linked_blobs,
        usable: !is_link(&snapshots),
    };
    let mut referenced = BTreeSet::new();
    for entry in read_dir_sorted(&snapshots)? {
        let commit = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !path.is_dir() {
            warnings.push(CacheWarning {
                path,
                message: "Snapshots folder contains a file".into(),
            });
            continue;
        }
        let mut revision = CachedRevision {
            refs: cached
                .refs
                .iter()
                .filter(|(_, target)| **target == commit)
                .map(|(name, _)| name.clone())
                .collect(),
            commit,
            path: path.clone(),
            files: Vec::new(),
            broken: Vec::new(),
            size_on_disk: 0,
            folder_is_link: is_link(&path),
        };
        let direct = KnownBlobs {
            usable: known.usable && !revision.folder_is_link,
            ..known
        };
        walk_snapshot(&path, "", &direct, &mut revision, &mut cached.temp_files)?;
        for file in &revision.files {
            if let Some(etag) = &file.etag {
                referenced.insert(etag.clone());
            }
            // A blob of this repo's folder counted its time above.
            let listed = file.etag.as_ref().is_some_and(|e| {
                known.blobs.contains_key(e) && !known.linked.contains(e) && !file.copied
            });
            if !listed {
                cached.last_modified = later(
                    cached.last_modified,
                    std::fs::metadata(&file.blob_path)
                        .ok()
                        .and_then(|m| m.modified().ok()),
                );
            }
        }
        for broken in &revision.broken {
            warnings.push(CacheWarning {
                path: path.join(broken),
                message: "Blob missing (broken symlink)".into(),
            });
        }
        cached.revisions.push(revision);
    }
    let snapshot_names: BTreeSet<&str> =
        cached.revisions.iter().map(|r| r.commit.as_str()).collect();
    for (name, target) in &cached.refs {
        if !snapshot_names.contains(target.as_str()) {
            cached.dangling_refs.push(name.clone());
            let shown = if is_commit_hash(target) {
                target.clone()
            } else {
                format!("{target:?}")
            };
            warnings.push(CacheWarning {
                path: dir.join("refs").join(name),
                message: format!("Reference `{name}` refers to a missing commit hash {shown}"),
            });
        }
    }
    cached.unreferenced_blobs = cached
        .blobs
        .keys()
        .filter(|etag| !referenced.contains(*etag))
        .cloned()
        .collect();
    cached.size_on_disk = size_once(stored_files(&cached));
    for revision in &mut cached.revisions {
        revision.size_on_disk = size_once(revision.files.iter().map(|f| (&f.id, f.size)));
    }
    Ok(cached)
}

fn collect_refs(
    dir: &Path,
    prefix: &str,
    refs: &mut BTreeMap<String, String>,
    temp_files: &mut Vec<PathBuf>,
) -> Result<(), StoreError> {
    for entry in read_dir_sorted(dir)? {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        if path.is_dir() {
            collect_refs(&path, &format!("{name}/"), refs, temp_files)?;
        } else if atomic::leftover_pid(&entry.file_name()).is_some() {
            temp_files.push(path);
        } else if let Ok(content) = std::fs::read_to_string(&path) {
            refs.insert(name, content);
        }
    }
    Ok(())
}

/// The blobs a repo's `blobs/` folder holds, read before its snapshots.
#[derive(Clone, Copy)]
struct KnownBlobs<'a> {
    /// The `blobs/` folder, canonical.
    canonical: Option<&'a Path>,
    blobs: &'a BTreeMap<String, StoredFile>,
    /// Blobs that are links themselves (the shared store).
    linked: &'a BTreeSet<String>,
    /// `..` in a snapshot link can be read lexically (no linked folder on the way).
    usable: bool,
}

impl KnownBlobs<'_> {
    /// The blob a snapshot link `target`, found `depth` folders below the snapshot folder,
    /// names when it has the form the Hub clients write (`../../blobs/<etag>`, one `..` more
    /// per folder) and the blob is a plain file listed in `blobs/`: its name, canonical path
    /// and facts, without following the link.
    fn direct(&self, target: &Path, depth: usize) -> Option<(String, PathBuf, &StoredFile)> {
        let canonical = self.canonical.filter(|_| self.usable)?;
        let mut parts = target.components();
        for _ in 0..depth + 2 {
            if parts.next() != Some(std::path::Component::ParentDir) {
                return None;
            }
        }
        if parts.next() != Some(std::path::Component::Normal("blobs".as_ref())) {
            return None;
        }
        let Some(std::path::Component::Normal(name)) = parts.next() else {
            return None;
        };
        if parts.next().is_some() {
            return None;
        }
        let name = name.to_str()?;
        if self.linked.contains(name) {
            return None;
        }
        let stored = self.blobs.get(name)?;
        Some((name.to_string(), canonical.join(name), stored))
    }
}

fn walk_snapshot(
    dir: &Path,
    prefix: &str,
    blobs: &KnownBlobs<'_>,
    revision: &mut CachedRevision,
    temp_files: &mut Vec<PathBuf>,
) -> Result<(), StoreError> {
    let depth = prefix.matches('/').count();
    for entry in read_dir_sorted(dir)? {
        let rel = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        if atomic::leftover_pid(&entry.file_name()).is_some()
            && !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            temp_files.push(path);
            continue;
        }
        // The common case, two system calls a file: a link of the usual form to a blob the
        // `blobs/` listing already read.
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            let direct = std::fs::read_link(&path)
                .ok()
                .and_then(|target| blobs.direct(&target, depth));
            if let Some((etag, blob_path, stored)) = direct {
                revision.files.push(CachedFile {
                    path: rel,
                    snapshot_path: path,
                    blob_path,
                    etag: Some(etag),
                    size: stored.size,
                    id: stored.id.clone(),
                    links: stored.links,
                    copied: false,
                    modified: stored.modified,
                    accessed: stored.accessed,
                });
                continue;
            }
        }
        let Ok(link_meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if link_meta.is_dir() {
            walk_snapshot(&path, &format!("{rel}/"), blobs, revision, temp_files)?;
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            revision.broken.push(rel);
            continue;
        };
        if meta.is_dir() {
            // A symlink to a folder: not something a Hub client writes; skip it.
            continue;
        }
        let resolved = path.canonicalize().unwrap_or_else(|_| path.clone());
        let stored = StoredFile::of(&resolved, &meta);
        // The blob name comes from the link itself (`../../blobs/<etag>`), not from where it
        // finally resolves: with `huggingface_hub` 2.x's shared store the repo blob may itself
        // be a link into `<cache>/blobs/`.
        let etag = if link_meta.file_type().is_symlink() {
            std::fs::read_link(&path).ok().and_then(|target| {
                let absolute = path.parent()?.join(&target);
                let parent = absolute.parent()?.canonicalize().ok()?;
                (Some(parent.as_path()) == blobs.canonical)
                    .then(|| target.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .flatten()
            })
        } else {
            None
        };
        revision.files.push(CachedFile {
            path: rel,
            snapshot_path: path,
            blob_path: resolved,
            etag,
            size: stored.size,
            id: stored.id,
            links: stored.links,
            copied: link_meta.is_file(),
            modified: stored.modified,
            accessed: stored.accessed,
        });
    }
    Ok(())
}
