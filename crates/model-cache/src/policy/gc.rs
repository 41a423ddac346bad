//! The file-system side of cache policies: what is in the hub cache, and removing parts of it
//! consistently.
//!
//! [`scan`] reads the hub-cache layout (`models--org--name/{blobs,snapshots,refs,.no_exist}`)
//! into an [`Inventory`]: revisions with the blobs they link, blobs nothing links, and
//! `.incomplete` downloads. [`delete_revision`] removes a revision in the order that never leaves
//! a dangling link: snapshot links first, then blobs no other snapshot links, then refs pointing at
//! the commit and its `.no_exist` markers, then the repo folder when nothing is left.
//!
//! Sizes go by file, not by name ([`FileId`], read by the store): a blob the downloader
//! hard-linked into a second repo is counted once, and removing one of its names frees nothing
//! while another name remains (see [`Freeing`]).
//!
//! **Architecture Invariant:** every path removed is built from the cache root and names checked
//! to be single plain segments; symlinks are removed as links, never followed.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::PolicyError;
use super::evict::{BlobUse, CachedRevision, LastUsedSource};
use crate::repo::RepoId;
use crate::store::{FileId, StoredFile, layout, size_once};

/// A revision found on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionOnDisk {
    pub commit: String,
    pub refs: Vec<String>,
    pub blobs: Vec<BlobUse>,
    /// Every file of the snapshot, by path (several paths may share a blob).
    pub files: Vec<SnapshotFile>,
    /// Newest access or modification time of its files, the fallback last-use time.
    pub file_time: SystemTime,
}

/// One file of a snapshot: a link into the repo's `blobs/`, or a copied file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Relative to the snapshot folder, `/`-separated, as in a repo listing.
    pub path: String,
    /// The blob's key: its etag, or `file:` and the path for a copied file (see [`BlobUse`]).
    pub key: String,
    pub size: u64,
    /// Which file holds its content (a blob hard-linked into several repos is one file).
    pub id: FileId,
    /// Names that file has on disk (see [`StoredFile::links`]).
    pub links: u64,
    /// Newest access or modification time of its content.
    pub time: SystemTime,
}

/// A file found on disk that eviction does not account to a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LooseFile {
    pub repo: RepoId,
    pub path: PathBuf,
    pub size: u64,
    /// Which file it is, and how many names that file has (see [`StoredFile`]).
    pub id: FileId,
    pub links: u64,
    pub modified: SystemTime,
}

/// One repo found on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoOnDisk {
    pub repo: RepoId,
    pub path: PathBuf,
    pub revisions: Vec<RevisionOnDisk>,
}

/// Everything in a hub cache that cache policies care about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub repos: Vec<RepoOnDisk>,
    /// Blobs no snapshot links.
    pub unreferenced: Vec<LooseFile>,
    /// Partial downloads (`blobs/*.incomplete`).
    pub incomplete: Vec<LooseFile>,
}

impl Inventory {
    /// Bytes on disk: every file in the cache once, whichever repos and revisions hold it.
    pub fn total_bytes(&self) -> u64 {
        size_once(self.linked().chain(self.loose()))
    }

    /// Bytes in unreferenced blobs and partial downloads, except files a revision holds too:
    /// what the cache holds beyond [`evict::total_size`](super::evict::total_size) of its
    /// revisions.
    pub fn loose_bytes(&self) -> u64 {
        let linked: HashSet<&FileId> = self.linked().map(|(id, _)| id).collect();
        size_once(self.loose().filter(|(id, _)| !linked.contains(id)))
    }

    /// The files the revisions link, by identity and size.
    fn linked(&self) -> impl Iterator<Item = (&FileId, u64)> {
        self.repos
            .iter()
            .flat_map(|r| &r.revisions)
            .flat_map(|r| &r.blobs)
            .map(|b| (&b.id, b.size))
    }

    /// Unreferenced blobs and partial downloads, by identity and size.
    fn loose(&self) -> impl Iterator<Item = (&FileId, u64)> {
        self.unreferenced
            .iter()
            .chain(&self.incomplete)
            .map(|f| (&f.id, f.size))
    }

    /// The revisions as eviction candidates. `last_used` gives our own last-use record (from
    /// the index) when there is one; otherwise the file times are used. `pinned` tells which
    /// revisions are pinned.
    pub fn candidates(
        &self,
        last_used: &dyn Fn(&RepoId, &str) -> Option<SystemTime>,
        pinned: &dyn Fn(&RepoId, &str) -> bool,
    ) -> Vec<CachedRevision> {
        let mut out = Vec::new();
        for repo in &self.repos {
            for revision in &repo.revisions {
                let (time, source) = match last_used(&repo.repo, &revision.commit) {
                    Some(t) => (t, LastUsedSource::Index),
                    None => (revision.file_time, LastUsedSource::FileTimes),
                };
                out.push(CachedRevision {
                    repo: repo.repo.clone(),
                    commit: revision.commit.clone(),
                    refs: revision.refs.clone(),
                    blobs: revision.blobs.clone(),
                    last_used: time,
                    last_used_source: source,
                    pinned: pinned(&repo.repo, &revision.commit),
                    in_use: false,
                    variants: Vec::new(),
                });
            }
        }
        out
    }
}

/// What a removal took away (or, in a dry run, would take away).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub paths: Vec<PathBuf>,
    pub bytes_freed: u64,
}

impl Removal {
    fn add(&mut self, other: Removal) {
        self.paths.extend(other.paths);
        self.bytes_freed += other.bytes_freed;
    }
}

/// Bytes that removals free, file by file: a file's bytes are freed with the last of its names
/// (hard links), so removing a blob another repo — or anything outside the cache — still links
/// frees nothing. Every name is counted against the link count read before anything went, so a
/// dry run and the real run agree.
#[derive(Debug, Default)]
struct Freeing {
    names_removed: HashMap<FileId, u64>,
}

impl Freeing {
    /// Records that one name of a file goes (each name once), and returns the bytes that frees:
    /// all of them for its last name, else none.
    fn name_removed(&mut self, id: &FileId, links: u64, size: u64) -> u64 {
        let removed = self.names_removed.entry(id.clone()).or_insert(0);
        *removed += 1;
        if *removed == links.max(1) { size } else { 0 }
    }
}

fn scan_err(path: &Path) -> impl FnOnce(std::io::Error) -> PolicyError + '_ {
    move |source| PolicyError::Scan {
        path: path.to_path_buf(),
        source,
    }
}

fn remove_err(path: &Path) -> impl FnOnce(std::io::Error) -> PolicyError + '_ {
    move |source| PolicyError::Remove {
        path: path.to_path_buf(),
        source,
    }
}

/// A name usable as one path segment under the cache: not empty, not `.`/`..`, no separator.
fn plain_segment(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1
}

fn newest_time(file: &StoredFile) -> SystemTime {
    let modified = file.modified.unwrap_or(SystemTime::UNIX_EPOCH);
    let accessed = file.accessed.unwrap_or(SystemTime::UNIX_EPOCH);
    modified.max(accessed)
}

/// Reads every ref file under `refs/` (nested ones such as `refs/pr/1` included):
/// ref name → commit.
fn read_refs(repo_dir: &Path) -> Result<Vec<(String, String, PathBuf)>, PolicyError> {
    let mut out = Vec::new();
    let root = layout::refs_dir(repo_dir);
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(scan_err(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(scan_err(&dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(scan_err(&path))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let commit = fs::read_to_string(&path).map_err(scan_err(&path))?;
                let name = path
                    .strip_prefix(&root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((name, commit.trim().to_string(), path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Walks a snapshot folder without following symlinked folders: each file is either a link into
/// `../../blobs/{etag}` (keyed by the etag) or a copied file (keyed by its own path). Links that
/// lead anywhere else are not ours to size or remove, and are left out.
fn snapshot_files(repo_dir: &Path, snapshot: &Path) -> Result<Vec<SnapshotFile>, PolicyError> {
    let blobs_dir = layout::blobs_dir(repo_dir);
    let mut files = Vec::new();
    let mut stack = vec![snapshot.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(scan_err(&dir))? {
            let entry = entry.map_err(scan_err(&dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(scan_err(&path))?;
            let listed = path
                .strip_prefix(snapshot)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).map_err(scan_err(&path))?;
                let resolved = path.parent().unwrap_or(snapshot).join(&target);
                let name = resolved
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // Only links that land in this repo's own `blobs/` are blobs we account for; a
                // link pointing anywhere else is not ours to size or remove.
                let parent_is_blobs = lexical_normalize(resolved.parent().unwrap_or(snapshot))
                    == lexical_normalize(&blobs_dir);
                if parent_is_blobs
                    && plain_segment(&name)
                    && let Ok(blob) = StoredFile::read(&blobs_dir.join(&name))
                {
                    files.push(SnapshotFile {
                        path: listed,
                        key: name,
                        size: blob.size,
                        time: newest_time(&blob),
                        id: blob.id,
                        links: blob.links,
                    });
                }
            } else if kind.is_file() {
                let copied = StoredFile::read(&path).map_err(scan_err(&path))?;
                let relative = path.strip_prefix(repo_dir).unwrap_or(&path);
                files.push(SnapshotFile {
                    path: listed,
                    key: format!("file:{}", relative.to_string_lossy()),
                    size: copied.size,
                    time: newest_time(&copied),
                    id: copied.id,
                    links: copied.links,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The blobs of some of a snapshot's files, each once, and the newest time among the files.
pub(crate) fn blobs_of<'a>(
    files: impl IntoIterator<Item = &'a SnapshotFile> + Clone,
) -> (Vec<BlobUse>, SystemTime) {
    let mut blobs: Vec<BlobUse> = files
        .clone()
        .into_iter()
        .map(|f| BlobUse {
            key: f.key.clone(),
            size: f.size,
            id: f.id.clone(),
            links: f.links,
        })
        .collect();
    blobs.sort_by(|a, b| a.key.cmp(&b.key));
    blobs.dedup_by(|a, b| a.key == b.key);
    let newest = files
        .into_iter()
        .map(|f| f.time)
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    (blobs, newest)
}

/// The blobs a snapshot links, each once, and the newest time among them.
fn snapshot_blobs(
    repo_dir: &Path,
    snapshot: &Path,
) -> Result<(Vec<BlobUse>, SystemTime), PolicyError> {
    Ok(blobs_of(&snapshot_files(repo_dir, snapshot)?))
}

/// The files of one cached revision (see [`SnapshotFile`]), or `NotCached`.
pub fn revision_files(
    root: &Path,
    repo: &RepoId,
    commit: &str,
) -> Result<Vec<SnapshotFile>, PolicyError> {
    let (repo_dir, snapshot) = cached_snapshot(root, repo, commit)?;
    snapshot_files(&repo_dir, &snapshot)
}

/// Resolves `.` and `..` without touching the file system.
fn lexical_normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Reads the hub cache at `root`. A missing root is an empty cache. Folders that are not repos
/// (`.locks`, `CACHEDIR.TAG`, foreign folders) are skipped.
pub fn scan(root: &Path) -> Result<Inventory, PolicyError> {
    let mut inventory = Inventory::default();
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(inventory),
        Err(e) => return Err(scan_err(root)(e)),
    };
    let mut folders: Vec<(RepoId, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(scan_err(root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // A symlinked repo folder could lead out of the cache: skip it.
        if !entry.file_type().map_err(scan_err(root))?.is_dir() {
            continue;
        }
        if let Some(repo) = RepoId::from_folder_name(&name) {
            folders.push((repo, entry.path()));
        }
    }
    folders.sort_by(|a, b| a.1.cmp(&b.1));

    for (repo, repo_dir) in folders {
        let refs = read_refs(&repo_dir)?;
        let mut revisions = Vec::new();
        let mut linked: HashSet<String> = HashSet::new();
        let snapshots = layout::snapshots_dir(&repo_dir);
        if let Ok(entries) = fs::read_dir(&snapshots) {
            for entry in entries {
                let entry = entry.map_err(scan_err(&snapshots))?;
                let commit = entry.file_name().to_string_lossy().into_owned();
                if !entry.file_type().map_err(scan_err(&snapshots))?.is_dir()
                    || !plain_segment(&commit)
                {
                    continue;
                }
                let files = snapshot_files(&repo_dir, &entry.path())?;
                let (blobs, file_time) = blobs_of(&files);
                linked.extend(blobs.iter().map(|b| b.key.clone()));
                revisions.push(RevisionOnDisk {
                    refs: refs
                        .iter()
                        .filter(|(_, c, _)| *c == commit)
                        .map(|(name, _, _)| name.clone())
                        .collect(),
                    commit,
                    blobs,
                    files,
                    file_time,
                });
            }
        }
        revisions.sort_by(|a, b| a.commit.cmp(&b.commit));

        let blobs_dir = layout::blobs_dir(&repo_dir);
        if let Ok(entries) = fs::read_dir(&blobs_dir) {
            for entry in entries {
                let entry = entry.map_err(scan_err(&blobs_dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !entry.file_type().map_err(scan_err(&blobs_dir))?.is_file() {
                    continue;
                }
                let path = entry.path();
                let stored = StoredFile::read(&path).map_err(scan_err(&path))?;
                let file = LooseFile {
                    repo: repo.clone(),
                    path,
                    size: stored.size,
                    id: stored.id,
                    links: stored.links,
                    modified: stored.modified.unwrap_or(SystemTime::UNIX_EPOCH),
                };
                if name.ends_with(".incomplete") {
                    inventory.incomplete.push(file);
                } else if !linked.contains(&name) {
                    inventory.unreferenced.push(file);
                }
            }
        }
        inventory.repos.push(RepoOnDisk {
            repo,
            path: repo_dir,
            revisions,
        });
    }
    inventory.unreferenced.sort_by(|a, b| a.path.cmp(&b.path));
    inventory.incomplete.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(inventory)
}

/// Checks that `path` is lexically inside `root` before anything is removed there.
fn ensure_inside(root: &Path, path: &Path) -> Result<(), PolicyError> {
    if lexical_normalize(path).starts_with(lexical_normalize(root)) && path != root {
        Ok(())
    } else {
        Err(PolicyError::OutsideCache {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
        })
    }
}

fn remove_file(root: &Path, path: &Path, dry_run: bool) -> Result<bool, PolicyError> {
    ensure_inside(root, path)?;
    if dry_run {
        return Ok(fs::symlink_metadata(path).is_ok());
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(remove_err(path)(e)),
    }
}

fn remove_dir(root: &Path, path: &Path, dry_run: bool) -> Result<bool, PolicyError> {
    ensure_inside(root, path)?;
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(remove_err(path)(e)),
    };
    if dry_run {
        return Ok(true);
    }
    // `remove_dir_all` removes symlinks inside as links and does not follow them; a symlink in
    // place of the folder itself is removed as a link too.
    let result = if meta.file_type().is_symlink() {
        fs::remove_file(path)
    } else {
        fs::remove_dir_all(path)
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(remove_err(path)(e)),
    }
}

/// How long a removal waits for a blob's lock (a download, or `huggingface_hub`, writing it)
/// before it leaves the blob for a later pass.
pub(crate) const REMOVAL_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Whether any snapshot of the repo links the blob `key` (read now, under the blob's lock).
fn linked_anywhere(repo_dir: &Path, key: &str) -> Result<bool, PolicyError> {
    let snapshots = layout::snapshots_dir(repo_dir);
    let Ok(entries) = fs::read_dir(&snapshots) else {
        return Ok(false);
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && snapshot_files(repo_dir, &entry.path())?
                .iter()
                .any(|f| f.key == key)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes one blob no link points at, under its lock (the very lock a download or
/// `huggingface_hub` holds while writing or linking it), after checking again, under the lock,
/// that nothing links it and nothing in flight uses it. `None` when it stays.
fn remove_blob(
    root: &Path,
    repo: &RepoId,
    repo_dir: &Path,
    key: &str,
    keep_blobs: &HashSet<String>,
    dry_run: bool,
) -> Result<Option<PathBuf>, PolicyError> {
    if keep_blobs.contains(key) {
        return Ok(None);
    }
    let path = layout::blob_file(repo_dir, key);
    if dry_run {
        return Ok(remove_file(root, &path, true)?.then_some(path));
    }
    let _lock = match crate::store::HubCache::new(root)
        .repo(repo)
        .lock_blob(key, REMOVAL_LOCK_WAIT)
    {
        Ok(lock) => lock,
        Err(error) => {
            tracing::warn!(%repo, blob = key, %error, "left a blob whose lock is held; a later pass removes it");
            return Ok(None);
        }
    };
    if linked_anywhere(repo_dir, key)? {
        return Ok(None);
    }
    Ok(remove_file(root, &path, false)?.then_some(path))
}

/// The repo folder and the snapshot folder of a cached revision, or `NotCached`.
fn cached_snapshot(
    root: &Path,
    repo: &RepoId,
    commit: &str,
) -> Result<(PathBuf, PathBuf), PolicyError> {
    let repo_dir = root.join(repo.folder_name());
    let snapshot = layout::snapshot_dir(&repo_dir, commit);
    if plain_segment(commit) && fs::symlink_metadata(&snapshot).is_ok_and(|m| m.is_dir()) {
        Ok((repo_dir, snapshot))
    } else {
        Err(PolicyError::NotCached {
            repo: repo.to_string(),
            commit: commit.to_string(),
        })
    }
}

/// Removes one revision of a repo: its snapshot links, the blobs no other snapshot of the repo
/// links, the refs pointing at it, its `.no_exist` markers, and the whole repo folder (with its
/// `.locks/` folder) when no revision is left. With `dry_run` nothing is touched and the result
/// says what would go.
pub fn delete_revision(
    root: &Path,
    repo: &RepoId,
    commit: &str,
    keep_blobs: &HashSet<String>,
    dry_run: bool,
) -> Result<Removal, PolicyError> {
    let (repo_dir, snapshot) = cached_snapshot(root, repo, commit)?;
    let (mine, _) = snapshot_blobs(&repo_dir, &snapshot)?;
    let mut still_linked: HashSet<String> = HashSet::new();
    let mut others = 0;
    if let Ok(entries) = fs::read_dir(layout::snapshots_dir(&repo_dir)) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == commit || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            others += 1;
            let (blobs, _) = snapshot_blobs(&repo_dir, &entry.path())?;
            still_linked.extend(blobs.into_iter().map(|b| b.key));
        }
    }
    // The files in `blobs/`, read before anything goes (see `Freeing`): when no other revision
    // is left, those the links below do not take go with the repo folder.
    let in_blobs: Vec<(PathBuf, StoredFile)> = if others == 0 {
        fs::read_dir(layout::blobs_dir(&repo_dir))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|e| Some((e.path(), StoredFile::read(&e.path()).ok()?)))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };

    let mut removal = Removal::default();
    let mut freeing = Freeing::default();
    // Links first: a crash after this step leaves unreferenced blobs (cleaned later), never a
    // link to a missing blob.
    if remove_dir(root, &snapshot, dry_run)? {
        removal.paths.push(snapshot.clone());
        for copied in mine.iter().filter(|b| b.key.starts_with("file:")) {
            removal.bytes_freed += freeing.name_removed(&copied.id, copied.links, copied.size);
        }
    }
    // A blob left in place (in flight, or its lock held too long) keeps the repo folder.
    let mut kept_any = !keep_blobs.is_empty();
    for blob in mine.iter().filter(|b| !b.key.starts_with("file:")) {
        if still_linked.contains(&blob.key) || !plain_segment(&blob.key) {
            continue;
        }
        match remove_blob(root, repo, &repo_dir, &blob.key, keep_blobs, dry_run)? {
            Some(path) => {
                removal.paths.push(path);
                removal.bytes_freed += freeing.name_removed(&blob.id, blob.links, blob.size);
            }
            None => kept_any |= layout::blob_file(&repo_dir, &blob.key).exists(),
        }
    }
    for (_, target, path) in read_refs(&repo_dir)? {
        if target == commit && remove_file(root, &path, dry_run)? {
            removal.paths.push(path);
        }
    }
    let no_exist = layout::no_exist_dir(&repo_dir, commit);
    if remove_dir(root, &no_exist, dry_run)? {
        removal.paths.push(no_exist);
    }
    if others == 0 {
        // Nothing left that a reader could use: the repo folder goes, with any blobs left over
        // and its lock folder.
        let leftover: Vec<&StoredFile> = in_blobs
            .iter()
            .filter(|(path, _)| !removal.paths.contains(path))
            .map(|(_, file)| file)
            .collect();
        // Its lock files stay (`store/lock.rs`: a lock file is never deleted, or two
        // processes could each lock a different inode of the same name).
        if !kept_any && remove_dir(root, &repo_dir, dry_run)? {
            removal.paths.push(repo_dir.clone());
            for file in leftover {
                removal.bytes_freed += freeing.name_removed(&file.id, file.links, file.size);
            }
        }
    }
    tracing::info!(%repo, commit, bytes = removal.bytes_freed, dry_run, "removed revision");
    Ok(removal)
}

/// Removes some files of one revision (one variant of a model): their snapshot links, and the
/// blobs no link in any snapshot of the repo points at any more. When the snapshot is left
/// empty the whole revision goes, as [`delete_revision`] does. Paths are relative to the
/// snapshot and checked like a repo listing's; nothing outside the cache is touched.
pub fn delete_files(
    root: &Path,
    repo: &RepoId,
    commit: &str,
    files: &[String],
    keep_blobs: &HashSet<String>,
    dry_run: bool,
) -> Result<Removal, PolicyError> {
    let (repo_dir, snapshot) = cached_snapshot(root, repo, commit)?;
    let snapshots = layout::snapshots_dir(&repo_dir);
    // How many links point at each blob, over every file of every snapshot of the repo.
    let mut links: HashMap<String, (usize, SnapshotFile)> = HashMap::new();
    for entry in fs::read_dir(&snapshots)
        .map_err(scan_err(&snapshots))?
        .flatten()
    {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            for file in snapshot_files(&repo_dir, &entry.path())? {
                let slot = links.entry(file.key.clone()).or_insert((0, file));
                slot.0 += 1;
            }
        }
    }
    let mut present: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| crate::store::SafeRelPath::new(f).ok())
        .map(|rel| rel.join_to(&snapshot))
        .filter(|link| fs::symlink_metadata(link).is_ok())
        .collect();
    present.sort();
    present.dedup();
    // Every file of the revision goes: that is the whole revision, with its refs. (Files, not
    // blobs, are compared: two paths may share a blob.)
    let asked: HashSet<&str> = files.iter().map(String::as_str).collect();
    if snapshot_files(&repo_dir, &snapshot)?
        .iter()
        .all(|f| asked.contains(f.path.as_str()))
    {
        return delete_revision(root, repo, commit, keep_blobs, dry_run);
    }
    let mut removal = Removal::default();
    let mut freeing = Freeing::default();
    for link in present {
        let Ok(meta) = fs::symlink_metadata(&link) else {
            continue;
        };
        let key = if meta.file_type().is_symlink() {
            fs::read_link(&link)
                .ok()
                .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
        } else {
            // A copied file (no symlinks on this file system) is its own storage, unless it is
            // a hard link to a file that stays.
            let relative = link.strip_prefix(&repo_dir).unwrap_or(&link);
            if let Some((_, copied)) = links.get(&format!("file:{}", relative.to_string_lossy())) {
                removal.bytes_freed += freeing.name_removed(&copied.id, copied.links, copied.size);
            }
            None
        };
        if remove_file(root, &link, dry_run)? {
            removal.paths.push(link);
        }
        if let Some(key) = key
            && let Some(slot) = links.get_mut(&key)
        {
            slot.0 = slot.0.saturating_sub(1);
            if slot.0 == 0
                && plain_segment(&key)
                && let Some(blob) = remove_blob(root, repo, &repo_dir, &key, keep_blobs, dry_run)?
            {
                removal.paths.push(blob);
                removal.bytes_freed += freeing.name_removed(&slot.1.id, slot.1.links, slot.1.size);
            }
        }
    }
    tracing::info!(%repo, commit, files = files.len(), bytes = removal.bytes_freed, dry_run, "removed files");
    Ok(removal)
}

/// Removes every revision of a repo.
pub fn delete_repo(
    root: &Path,
    repo: &RepoId,
    keep_blobs: &HashSet<String>,
    dry_run: bool,
) -> Result<Removal, PolicyError> {
    let inventory = scan(root)?;
    let Some(found) = inventory.repos.iter().find(|r| &r.repo == repo) else {
        return Err(PolicyError::NotCached {
            repo: repo.to_string(),
            commit: "*".to_string(),
        });
    };
    let mut removal = Removal::default();
    if dry_run {
        // Every revision goes, so every name the repo holds goes, each once: its blobs (which
        // revisions share), copied files, unreferenced blobs and partial downloads. Files linked
        // from elsewhere stay.
        let mut freeing = Freeing::default();
        let mut names = HashSet::new();
        for blob in found.revisions.iter().flat_map(|r| &r.blobs) {
            if names.insert(blob.key.as_str()) {
                removal.bytes_freed += freeing.name_removed(&blob.id, blob.links, blob.size);
            }
        }
        for file in inventory
            .unreferenced
            .iter()
            .chain(&inventory.incomplete)
            .filter(|f| &f.repo == repo)
        {
            removal.bytes_freed += freeing.name_removed(&file.id, file.links, file.size);
        }
        removal.paths.push(found.path.clone());
        return Ok(removal);
    }
    for revision in &found.revisions {
        removal.add(delete_revision(
            root,
            repo,
            &revision.commit,
            keep_blobs,
            false,
        )?);
    }
    if found.revisions.is_empty() && remove_dir(root, &found.path, false)? {
        removal.paths.push(found.path.clone());
    }
    Ok(removal)
}

/// Removes `.incomplete` files untouched for `older_than`, except those in `keep` (files live
/// downloads write).
pub fn clean_stale_incomplete(
    root: &Path,
    inventory: &Inventory,
    older_than: Duration,
    now: SystemTime,
    keep: &HashSet<PathBuf>,
    dry_run: bool,
) -> Result<Removal, PolicyError> {
    let stale = inventory
        .incomplete
        .iter()
        .filter(|f| is_older(f, older_than, now) && !keep.contains(&f.path));
    remove_loose(root, stale, dry_run)
}

fn is_older(file: &LooseFile, age: Duration, now: SystemTime) -> bool {
    now.duration_since(file.modified).unwrap_or(Duration::ZERO) >= age
}

/// Removes partial files of stopped downloads (reclaimed for the budget).
pub fn remove_partials(
    root: &Path,
    files: &[LooseFile],
    dry_run: bool,
) -> Result<Removal, PolicyError> {
    remove_loose(root, files.iter(), dry_run)
}

/// Removes loose files (partial downloads, unreferenced blobs) and says what went.
fn remove_loose<'a>(
    root: &Path,
    files: impl Iterator<Item = &'a LooseFile>,
    dry_run: bool,
) -> Result<Removal, PolicyError> {
    let mut removal = Removal::default();
    let mut freeing = Freeing::default();
    for file in files {
        if remove_file(root, &file.path, dry_run)? {
            removal.paths.push(file.path.clone());
            removal.bytes_freed += freeing.name_removed(&file.id, file.links, file.size);
        }
    }
    Ok(removal)
}

/// Removes blobs no snapshot links, once older than `grace` (a younger one may be a download
/// between its rename and its link).
pub fn clean_unreferenced_blobs(
    root: &Path,
    inventory: &Inventory,
    grace: Duration,
    now: SystemTime,
    dry_run: bool,
) -> Result<Removal, PolicyError> {
    let old = inventory
        .unreferenced
        .iter()
        .filter(|f| is_older(f, grace, now));
    remove_loose(root, old, dry_run)
}

/// Old revisions of `repo`: those no ref points at, when at least one revision a ref points at
/// is present (the newer one). Pinned revisions are kept.
pub fn old_revisions(
    inventory: &Inventory,
    repo: &RepoId,
    pinned: &dyn Fn(&RepoId, &str) -> bool,
) -> Vec<String> {
    let Some(found) = inventory.repos.iter().find(|r| &r.repo == repo) else {
        return Vec::new();
    };
    if !found.revisions.iter().any(|r| !r.refs.is_empty()) {
        return Vec::new();
    }
    found
        .revisions
        .iter()
        .filter(|r| r.refs.is_empty() && !pinned(repo, &r.commit))
        .map(|r| r.commit.clone())
        .collect()
}

/// Per-repo figures for reports: bytes each repo holds (a file it shares with another repo
/// counts in both).
pub fn repo_sizes(inventory: &Inventory) -> HashMap<RepoId, u64> {
    let mut out = HashMap::new();
    let candidates = inventory.candidates(&|_, _| None, &|_, _| false);
    for repo in &inventory.repos {
        let mine: Vec<_> = candidates
            .iter()
            .filter(|c| c.repo == repo.repo)
            .cloned()
            .collect();
        out.insert(repo.repo.clone(), super::evict::total_size(&mine));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a repo the way the store does: blobs, relative links, a ref.
    fn write_revision(root: &Path, repo: &RepoId, commit: &str, files: &[(&str, &str, &[u8])]) {
        let dir = root.join(repo.folder_name());
        fs::create_dir_all(dir.join("blobs")).unwrap();
        fs::create_dir_all(dir.join("refs")).unwrap();
        for (path, etag, content) in files {
            fs::write(dir.join("blobs").join(etag), content).unwrap();
            let link = dir.join("snapshots").join(commit).join(path);
            fs::create_dir_all(link.parent().unwrap()).unwrap();
            let depth = path.matches('/').count();
            let target = format!("{}../../blobs/{etag}", "../".repeat(depth));
            std::os::unix::fs::symlink(target, &link).unwrap();
        }
        fs::write(dir.join("refs/main"), commit).unwrap();
    }

    #[test]
    fn delete_revision_keeps_shared_blobs_and_stays_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("hub");
        let repo = RepoId::model("org/m").unwrap();
        write_revision(
            &root,
            &repo,
            "aaa",
            &[
                ("config.json", "e1", b"{}"),
                ("w/model.bin", "e2", b"0123456789"),
            ],
        );
        write_revision(&root, &repo, "bbb", &[("config.json", "e1", b"{}")]);
        // An outside file a hostile link points at must survive.
        let outside = tmp.path().join("precious");
        fs::write(&outside, b"keep me").unwrap();
        std::os::unix::fs::symlink(
            &outside,
            root.join(repo.folder_name()).join("snapshots/aaa/evil"),
        )
        .unwrap();

        let inventory = scan(&root).unwrap();
        assert_eq!(inventory.repos[0].revisions.len(), 2);
        assert_eq!(inventory.total_bytes(), 12);

        let dry = delete_revision(&root, &repo, "aaa", &HashSet::new(), true).unwrap();
        assert_eq!(dry.bytes_freed, 10);
        assert!(
            root.join("models--org--m/snapshots/aaa").exists(),
            "dry run touches nothing"
        );

        let done = delete_revision(&root, &repo, "aaa", &HashSet::new(), false).unwrap();
        assert_eq!(done, dry);
        assert!(!root.join("models--org--m/snapshots/aaa").exists());
        assert!(!root.join("models--org--m/blobs/e2").exists());
        assert!(
            root.join("models--org--m/blobs/e1").exists(),
            "still linked by bbb"
        );
        assert_eq!(fs::read(&outside).unwrap(), b"keep me");
        // `main` pointed at bbb (written last), so it stays.
        assert_eq!(
            fs::read_to_string(root.join("models--org--m/refs/main")).unwrap(),
            "bbb"
        );

        let last = delete_revision(&root, &repo, "bbb", &HashSet::new(), false).unwrap();
        assert_eq!(last.bytes_freed, 2);
        assert!(
            !root.join("models--org--m").exists(),
            "empty repo folder removed"
        );
        assert!(matches!(
            delete_revision(&root, &repo, "../../etc", &HashSet::new(), false),
            Err(PolicyError::NotCached { .. })
        ));
    }

    #[test]
    fn stale_incomplete_and_unreferenced_blobs_are_cleaned() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let repo = RepoId::model("org/m").unwrap();
        write_revision(root, &repo, "aaa", &[("a", "e1", b"x")]);
        let blobs = root.join("models--org--m/blobs");
        fs::write(blobs.join("orphan"), b"12345").unwrap();
        fs::write(blobs.join("e9.incomplete"), b"123").unwrap();
        fs::write(blobs.join("e8.incomplete"), b"1234").unwrap();
        let inventory = scan(root).unwrap();
        assert_eq!(inventory.unreferenced.len(), 1);
        assert_eq!(inventory.incomplete.len(), 2);
        let later = SystemTime::now() + Duration::from_secs(10 * 86_400);
        let keep: HashSet<PathBuf> = [blobs.join("e8.incomplete")].into();
        let removed = clean_stale_incomplete(
            root,
            &inventory,
            Duration::from_secs(86_400),
            later,
            &keep,
            false,
        )
        .unwrap();
        assert_eq!(removed.paths, [blobs.join("e9.incomplete")]);
        assert!(blobs.join("e8.incomplete").exists());
        // Within the grace period nothing goes; after it the orphan does.
        let none = clean_unreferenced_blobs(
            root,
            &inventory,
            Duration::from_secs(3600),
            SystemTime::now(),
            false,
        )
        .unwrap();
        assert!(none.paths.is_empty());
        let removed =
            clean_unreferenced_blobs(root, &inventory, Duration::from_secs(3600), later, false)
                .unwrap();
        assert_eq!(removed.bytes_freed, 5);
        assert!(blobs.join("e1").exists());
    }

    #[test]
    fn removals_free_a_hard_linked_file_with_its_last_name_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let one = RepoId::model("org/one").unwrap();
        let two = RepoId::model("org/two").unwrap();
        write_revision(
            root,
            &one,
            "aaa",
            &[
                ("model.bin", "e1", b"0123456789"),
                ("tokenizer.json", "e2", b"abc"),
            ],
        );
        // `org/two` holds the same model blob, hard-linked as the downloader shares it, and
        // `org/one` has a stray second name for its tokenizer blob.
        let (blobs_one, dir_two) = (
            root.join("models--org--one/blobs"),
            root.join("models--org--two"),
        );
        fs::create_dir_all(dir_two.join("blobs")).unwrap();
        fs::create_dir_all(dir_two.join("snapshots/bbb")).unwrap();
        fs::hard_link(blobs_one.join("e1"), dir_two.join("blobs/e1")).unwrap();
        std::os::unix::fs::symlink("../../blobs/e1", dir_two.join("snapshots/bbb/model.bin"))
            .unwrap();
        fs::hard_link(blobs_one.join("e2"), blobs_one.join("stray")).unwrap();

        let inventory = scan(root).unwrap();
        assert_eq!(inventory.total_bytes(), 13, "each file once");
        assert_eq!(
            inventory.loose_bytes(),
            0,
            "the stray name's file is linked"
        );
        let later = SystemTime::now() + Duration::from_secs(86_400);
        let stray =
            clean_unreferenced_blobs(root, &inventory, Duration::ZERO, later, true).unwrap();
        assert_eq!((stray.paths.len(), stray.bytes_freed), (1, 0));
        assert_eq!(
            delete_repo(root, &two, &HashSet::new(), true)
                .unwrap()
                .bytes_freed,
            0
        );

        let files = ["model.bin".to_string()];
        let dry = delete_files(root, &one, "aaa", &files, &HashSet::new(), true).unwrap();
        assert_eq!(dry.bytes_freed, 0, "org/two still holds the model file");
        assert_eq!(
            delete_files(root, &one, "aaa", &files, &HashSet::new(), false).unwrap(),
            dry
        );
        assert!(!blobs_one.join("e1").exists());
        // The model file's last name goes with org/two.
        assert_eq!(
            delete_repo(root, &two, &HashSet::new(), true)
                .unwrap()
                .bytes_freed,
            10
        );
        assert_eq!(
            delete_revision(root, &two, "bbb", &HashSet::new(), false)
                .unwrap()
                .bytes_freed,
            10
        );
        // The tokenizer file goes with the last of its two names: the link and the stray.
        let last = delete_revision(root, &one, "aaa", &HashSet::new(), true).unwrap();
        assert_eq!(last.bytes_freed, 3);
        assert_eq!(
            delete_revision(root, &one, "aaa", &HashSet::new(), false).unwrap(),
            last
        );
    }

    #[test]
    fn a_snapshot_file_hard_linked_to_its_blob_counts_once() {
        // Where symlinks fail the store hard-links the blob into the snapshot: one file, a
        // snapshot name and an (unreferenced) blob name.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let repo = RepoId::model("org/m").unwrap();
        write_revision(root, &repo, "aaa", &[("b.bin", "eb", b"xy")]);
        let dir = root.join("models--org--m");
        fs::write(dir.join("blobs/ea"), b"0123456789").unwrap();
        fs::hard_link(dir.join("blobs/ea"), dir.join("snapshots/aaa/a.bin")).unwrap();

        let inventory = scan(root).unwrap();
        assert_eq!(inventory.total_bytes(), 12);
        assert_eq!(inventory.loose_bytes(), 0);
        let files = ["a.bin".to_string()];
        let dry = delete_files(root, &repo, "aaa", &files, &HashSet::new(), true).unwrap();
        assert_eq!(dry.bytes_freed, 0, "the blob name keeps the file");
        assert_eq!(
            delete_files(root, &repo, "aaa", &files, &HashSet::new(), false).unwrap(),
            dry
        );
        assert_eq!(scan(root).unwrap().loose_bytes(), 10);
    }

    #[test]
    fn old_revisions_are_those_no_ref_points_at() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let repo = RepoId::model("org/m").unwrap();
        write_revision(root, &repo, "old", &[("a", "e1", b"x")]);
        write_revision(root, &repo, "new", &[("a", "e2", b"y")]);
        let inventory = scan(root).unwrap();
        assert_eq!(old_revisions(&inventory, &repo, &|_, _| false), ["old"]);
        assert!(old_revisions(&inventory, &repo, &|_, c| c == "old").is_empty());
    }
}
