//! Removing parts of the cache consistently: a revision, some files of one, a repo, loose files.
//!
//! [`delete_revision`] removes a revision in the order that never leaves a dangling link:
//! snapshot links first, then blobs no other snapshot links, then refs pointing at the commit and
//! its `.no_exist` markers, then the repo folder when nothing is left. Every blob goes under its
//! lock (the one a download or `huggingface_hub` holds while writing or linking it), after
//! checking again under that lock that nothing links it; blobs the caller names as in flight
//! stay. What is on disk is read by the one scanner ([`super::scan`], through
//! [`super::inventory`]).
//!
//! Bytes freed go by file, not by name ([`FileId`]): removing one name of a hard-linked blob
//! frees nothing while another name remains (see [`Freeing`]).
//!
//! **Architecture Invariant:** every path removed is built from the cache root and names checked
//! to be single plain segments; symlinks are removed as links, never followed; a lock file is
//! never removed (`store/lock.rs`).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::inventory::{self, LooseFile, RepoOnDisk};
use super::scan::{CachedRepo, read_repo};
use super::{FileId, HubCache, SafeRelPath, StoreError, StoredFile, layout, shared_blobs};
use crate::repo::RepoId;

/// What a removal took away (or, in a dry run, would take away).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub paths: Vec<PathBuf>,
    pub bytes_freed: u64,
}

impl Removal {
    /// Adds what another removal took away.
    pub fn add(&mut self, other: Removal) {
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

/// How long a removal waits for a blob's lock (a download, or `huggingface_hub`, writing it)
/// before it leaves the blob for a later pass.
pub const REMOVAL_LOCK_WAIT: Duration = Duration::from_secs(30);

fn remove_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::io("remove", path, source)
}

/// A name usable as one path segment under the cache: not empty, not `.`/`..`, no separator.
pub(super) fn plain_segment(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1
}

/// Resolves `.` and `..` without touching the file system.
pub(super) fn lexical_normalize(path: &Path) -> PathBuf {
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

/// Checks that `path` is lexically inside `root` before anything is removed there.
fn ensure_inside(root: &Path, path: &Path) -> Result<(), StoreError> {
    if lexical_normalize(path).starts_with(lexical_normalize(root)) && path != root {
        Ok(())
    } else {
        Err(StoreError::OutsideCache {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
        })
    }
}

fn remove_file(root: &Path, path: &Path, dry_run: bool) -> Result<bool, StoreError> {
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

fn remove_dir(root: &Path, path: &Path, dry_run: bool) -> Result<bool, StoreError> {
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

/// One repo read for a removal: the scan of its folder, and its revisions as removals see them.
struct RepoRead {
    dir: PathBuf,
    cached: CachedRepo,
    on_disk: RepoOnDisk,
}

impl RepoRead {
    /// Reads `repo`'s folder; `NotCached` when there is none, `OutsideCache` when the folder is
    /// a symlink (nothing is removed through it).
    fn of(root: &Path, repo: &RepoId) -> Result<RepoRead, StoreError> {
        let dir = HubCache::new(root).repo(repo).dir().to_path_buf();
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() || m.file_type().is_symlink()) {
            return Err(not_cached(repo, "*"));
        }
        let cached = read_repo(repo, &dir)?;
        if cached.folder_is_link {
            return Err(StoreError::OutsideCache {
                path: dir,
                root: root.to_path_buf(),
            });
        }
        let (on_disk, _) = inventory::repo_on_disk(&cached);
        Ok(RepoRead {
            dir,
            cached,
            on_disk,
        })
    }

    /// Reads `repo` for a removal of its revision `commit`: `NotCached` unless that revision is
    /// there (as a folder removals may take apart).
    fn for_revision(root: &Path, repo: &RepoId, commit: &str) -> Result<RepoRead, StoreError> {
        if !plain_segment(commit) {
            return Err(not_cached(repo, commit));
        }
        let read = RepoRead::of(root, repo).map_err(|e| match e {
            StoreError::NotCached { .. } => not_cached(repo, commit),
            other => other,
        })?;
        if !read.on_disk.revisions.iter().any(|r| r.commit == commit) {
            return Err(not_cached(repo, commit));
        }
        Ok(read)
    }

    /// The revision [`RepoRead::for_revision`] checked is there.
    fn revision(&self, commit: &str) -> &super::inventory::RevisionOnDisk {
        self.on_disk
            .revisions
            .iter()
            .find(|r| r.commit == commit)
            .expect("for_revision checked the revision is there")
    }

    /// The repo's blobs that are links into `huggingface_hub` 2.x's shared blob store, with the
    /// payload each leads to.
    fn shared_payloads(&self, root: &Path) -> HashMap<String, PathBuf> {
        self.cached
            .linked_blobs
            .iter()
            .filter_map(|etag| {
                let payload = shared_blobs::payload_of(root, &layout::blob_file(&self.dir, etag))?;
                Some((etag.clone(), payload))
            })
            .collect()
    }

    /// Blob keys linked from snapshots removals do not take apart (symlinked snapshot folders,
    /// odd names): such blobs always stay.
    fn foreign_keys(&self) -> HashSet<String> {
        let ours: HashSet<&str> = self
            .on_disk
            .revisions
            .iter()
            .map(|r| r.commit.as_str())
            .collect();
        self.cached
            .revisions
            .iter()
            .filter(|r| !ours.contains(r.commit.as_str()))
            .flat_map(|r| &r.files)
            .filter_map(|f| f.etag.clone())
            .collect()
    }
}

/// Payloads of the shared blob store some of whose repo links went, and those links.
#[derive(Default)]
struct Released(HashMap<PathBuf, Vec<PathBuf>>);

impl Released {
    fn link_gone(&mut self, payload: &Path, link: PathBuf) {
        self.0.entry(payload.to_path_buf()).or_default().push(link);
    }

    /// Sweeps each payload (see [`shared_blobs::sweep`]) and returns the bytes freed.
    fn sweep(self, root: &Path, dry_run: bool) -> Result<u64, StoreError> {
        let mut freed = 0;
        for (payload, going) in self.0 {
            freed += shared_blobs::sweep(root, &payload, &going, dry_run, REMOVAL_LOCK_WAIT)?;
        }
        Ok(freed)
    }
}

fn not_cached(repo: &RepoId, commit: &str) -> StoreError {
    StoreError::NotCached {
        repo: repo.to_string(),
        commit: commit.to_string(),
    }
}

/// Whether any snapshot of the repo links the blob `key` (read now, under the blob's lock).
fn linked_anywhere(repo: &RepoId, repo_dir: &Path, key: &str) -> Result<bool, StoreError> {
    Ok(read_repo(repo, repo_dir)?
        .revisions
        .iter()
        .flat_map(|r| &r.files)
        .any(|f| f.etag.as_deref() == Some(key)))
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
) -> Result<Option<PathBuf>, StoreError> {
    if keep_blobs.contains(key) {
        return Ok(None);
    }
    let path = layout::blob_file(repo_dir, key);
    if dry_run {
        return Ok(remove_file(root, &path, true)?.then_some(path));
    }
    let _lock = match HubCache::new(root)
        .repo(repo)
        .lock_blob(key, REMOVAL_LOCK_WAIT)
    {
        Ok(lock) => lock,
        Err(error) => {
            tracing::warn!(%repo, blob = key, %error, "left a blob whose lock is held; a later pass removes it");
            return Ok(None);
        }
    };
    if linked_anywhere(repo, repo_dir, key)? {
        return Ok(None);
    }
    Ok(remove_file(root, &path, false)?.then_some(path))
}

/// Removes one revision of a repo: its snapshot links, the blobs no other snapshot of the repo
/// links, the refs pointing at it, its `.no_exist` markers, and the whole repo folder when no
/// revision is left (its lock files stay). Blobs in `keep_blobs` (in flight) stay, and keep the
/// repo folder. With `dry_run` nothing is touched and the result says what would go.
pub fn delete_revision(
    root: &Path,
    repo: &RepoId,
    commit: &str,
    keep_blobs: &HashSet<String>,
    dry_run: bool,
) -> Result<Removal, StoreError> {
    let read = RepoRead::for_revision(root, repo, commit)?;
    let revision = read.revision(commit);
    let repo_dir = &read.dir;
    let snapshot = layout::snapshot_dir(repo_dir, commit);
    let mut still_linked = read.foreign_keys();
    still_linked.extend(
        read.on_disk
            .revisions
            .iter()
            .filter(|r| r.commit != commit)
            .flat_map(|r| &r.blobs)
            .map(|b| b.key.clone()),
    );
    let others = read.cached.revisions.len().saturating_sub(1);
    // The files in `blobs/`, read before anything goes (see `Freeing`): when no other revision
    // is left, those the links below do not take go with the repo folder.
    let in_blobs: Vec<(PathBuf, &StoredFile)> = if others == 0 {
        let blobs = read
            .cached
            .blobs
            .iter()
            .filter(|(etag, _)| !read.cached.linked_blobs.contains(*etag))
            .map(|(etag, file)| (layout::blob_file(repo_dir, etag), file));
        let partials = read
            .cached
            .incomplete
            .iter()
            .map(|p| (p.path.clone(), &p.file));
        blobs.chain(partials).collect()
    } else {
        Vec::new()
    };

    let payloads = read.shared_payloads(root);
    let mut released = Released::default();
    let mut removal = Removal::default();
    let mut freeing = Freeing::default();
    // Links first: a crash after this step leaves unreferenced blobs (cleaned later), never a
    // link to a missing blob.
    if remove_dir(root, &snapshot, dry_run)? {
        removal.paths.push(snapshot.clone());
        for copied in revision.blobs.iter().filter(|b| b.key.starts_with("file:")) {
            removal.bytes_freed += freeing.name_removed(&copied.id, copied.links, copied.size);
        }
    }
    // A blob left in place (in flight, or its lock held too long) keeps the repo folder.
    let mut kept_any = !keep_blobs.is_empty();
    for blob in revision
        .blobs
        .iter()
        .filter(|b| !b.key.starts_with("file:"))
    {
        if still_linked.contains(&blob.key) || !plain_segment(&blob.key) {
            continue;
        }
        match remove_blob(root, repo, repo_dir, &blob.key, keep_blobs, dry_run)? {
            Some(path) => {
                match payloads.get(&blob.key) {
                    Some(payload) => released.link_gone(payload, path.clone()),
                    None => {
                        removal.bytes_freed +=
                            freeing.name_removed(&blob.id, blob.links, blob.size);
                    }
                }
                removal.paths.push(path);
            }
            None => kept_any |= layout::blob_file(repo_dir, &blob.key).exists(),
        }
    }
    for (name, target) in &read.cached.refs {
        let Ok(name) = SafeRelPath::new(name) else {
            continue;
        };
        let path = name.join_to(&layout::refs_dir(repo_dir));
        if target.trim() == commit && remove_file(root, &path, dry_run)? {
            removal.paths.push(path);
        }
    }
    let no_exist = layout::no_exist_dir(repo_dir, commit);
    if remove_dir(root, &no_exist, dry_run)? {
        removal.paths.push(no_exist);
    }
    if others == 0 && !kept_any && remove_dir(root, repo_dir, dry_run)? {
        // Nothing left that a reader could use: the repo folder goes, with any blobs left over.
        // Its lock files stay (`store/lock.rs`: a lock file is never deleted, or two processes
        // could each lock a different inode of the same name).
        for (path, file) in &in_blobs {
            if !removal.paths.contains(path) {
                removal.bytes_freed += freeing.name_removed(&file.id, file.links, file.size);
            }
        }
        // Links into the shared blob store go with the folder too.
        for (etag, payload) in &payloads {
            let link = layout::blob_file(repo_dir, etag);
            if !removal.paths.contains(&link) {
                released.link_gone(payload, link);
            }
        }
        removal.paths.push(repo_dir.clone());
    }
    removal.bytes_freed += released.sweep(root, dry_run)?;
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
) -> Result<Removal, StoreError> {
    let read = RepoRead::for_revision(root, repo, commit)?;
    let revision = read.revision(commit);
    // Every file of the revision goes: that is the whole revision, with its refs. (Files, not
    // blobs, are compared: two paths may share a blob.)
    let asked: HashSet<&str> = files.iter().map(String::as_str).collect();
    if revision
        .files
        .iter()
        .all(|f| asked.contains(f.path.as_str()))
    {
        return delete_revision(root, repo, commit, keep_blobs, dry_run);
    }
    let repo_dir = &read.dir;
    let snapshot = layout::snapshot_dir(repo_dir, commit);
    // How many links point at each blob, over every file of every snapshot of the repo; blobs
    // linked from snapshots removals do not take apart count as linked for good.
    let foreign = read.foreign_keys();
    let mut links: HashMap<&str, (usize, &super::inventory::RevisionFile)> = HashMap::new();
    for file in read.on_disk.revisions.iter().flat_map(|r| &r.files) {
        let slot = links.entry(file.key.as_str()).or_insert((0, file));
        slot.0 += 1;
    }
    let mut present: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| SafeRelPath::new(f).ok())
        .map(|rel| rel.join_to(&snapshot))
        .filter(|link| fs::symlink_metadata(link).is_ok())
        .collect();
    present.sort();
    present.dedup();
    let payloads = read.shared_payloads(root);
    let mut released = Released::default();
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
            let relative = link.strip_prefix(repo_dir).unwrap_or(&link);
            if let Some((_, copied)) =
                links.get(format!("file:{}", relative.to_string_lossy()).as_str())
            {
                removal.bytes_freed += freeing.name_removed(&copied.id, copied.links, copied.size);
            }
            None
        };
        if remove_file(root, &link, dry_run)? {
            removal.paths.push(link);
        }
        if let Some(key) = key
            && !foreign.contains(&key)
            && let Some(slot) = links.get_mut(key.as_str())
        {
            slot.0 = slot.0.saturating_sub(1);
            if slot.0 == 0
                && plain_segment(&key)
                && let Some(blob) = remove_blob(root, repo, repo_dir, &key, keep_blobs, dry_run)?
            {
                match payloads.get(&key) {
                    Some(payload) => released.link_gone(payload, blob.clone()),
                    None => {
                        removal.bytes_freed +=
                            freeing.name_removed(&slot.1.id, slot.1.links, slot.1.size);
                    }
                }
                removal.paths.push(blob);
            }
        }
    }
    removal.bytes_freed += released.sweep(root, dry_run)?;
    tracing::info!(%repo, commit, files = files.len(), bytes = removal.bytes_freed, dry_run, "removed files");
    Ok(removal)
}

/// Removes every revision of a repo, and the repo folder with them (its lock files stay).
pub fn delete_repo(
    root: &Path,
    repo: &RepoId,
    keep_blobs: &HashSet<String>,
    dry_run: bool,
) -> Result<Removal, StoreError> {
    let read = RepoRead::of(root, repo)?;
    let mut removal = Removal::default();
    if dry_run {
        // Every revision goes, so every name the repo holds goes, each once: its blobs (which
        // revisions share), copied files, unreferenced blobs and partial downloads. Files linked
        // from elsewhere stay.
        let mut freeing = Freeing::default();
        let mut names = HashSet::new();
        let payloads = read.shared_payloads(root);
        let mut released = Released::default();
        for (etag, payload) in &payloads {
            released.link_gone(payload, layout::blob_file(&read.dir, etag));
        }
        removal.bytes_freed += released.sweep(root, true)?;
        for blob in read.on_disk.revisions.iter().flat_map(|r| &r.blobs) {
            if !payloads.contains_key(&blob.key) && names.insert(blob.key.as_str()) {
                removal.bytes_freed += freeing.name_removed(&blob.id, blob.links, blob.size);
            }
        }
        let (_, unreferenced) = inventory::repo_on_disk(&read.cached);
        let partials = read
            .cached
            .incomplete
            .iter()
            .map(|p| (&p.file.id, p.file.links, p.file.size));
        for (id, links, size) in unreferenced
            .iter()
            .map(|f| (&f.id, f.links, f.size))
            .chain(partials)
        {
            removal.bytes_freed += freeing.name_removed(id, links, size);
        }
        removal.paths.push(read.dir.clone());
        return Ok(removal);
    }
    for revision in &read.on_disk.revisions {
        removal.add(delete_revision(
            root,
            repo,
            &revision.commit,
            keep_blobs,
            false,
        )?);
    }
    if read.on_disk.revisions.is_empty() && remove_dir(root, &read.dir, false)? {
        removal.paths.push(read.dir.clone());
    }
    Ok(removal)
}

/// Removes loose files (partial downloads, unreferenced blobs) and says what went.
pub fn remove_loose<'a>(
    root: &Path,
    files: impl IntoIterator<Item = &'a LooseFile>,
    dry_run: bool,
) -> Result<Removal, StoreError> {
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
