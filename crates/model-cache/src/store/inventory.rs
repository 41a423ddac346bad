//! The cache as removals and cache policies see it: revisions with the blobs they link, blobs
//! nothing links, and partial downloads — built from the one scan of the disk ([`super::scan`]),
//! never from a walk of its own.
//!
//! Only what the store may remove is listed: repo and snapshot folders that are symlinks (they
//! could lead out of the cache), snapshot links that lead anywhere but the repo's own `blobs/`,
//! and blobs that are themselves links (`huggingface_hub` 2.x's shared blob store) are left out.
//!
//! Sizes go by file, not by name ([`FileId`]): a blob hard-linked into a second repo is counted
//! once.

use std::collections::{HashSet, hash_map::HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::scan::{CacheScan, CachedFile, CachedRepo};
use super::{FileId, StoredFile, size_once};
use crate::repo::RepoId;

/// One blob a revision links, by its key (the etag, or `file:` and the path for copied files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobUse {
    pub key: String,
    pub size: u64,
    /// The file that holds it: the same for every name of a hard-linked blob.
    pub id: FileId,
    /// Names that file has on disk, in the cache or outside it.
    pub links: u64,
}

/// A revision found on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionOnDisk {
    pub commit: String,
    pub refs: Vec<String>,
    pub blobs: Vec<BlobUse>,
    /// Every file of the snapshot, by path (several paths may share a blob).
    pub files: Vec<RevisionFile>,
    /// Newest access or modification time of its files, the fallback last-use time.
    pub file_time: SystemTime,
}

/// One file of a snapshot: a link into the repo's `blobs/`, or a copied file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionFile {
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

/// A file in a repo's `blobs/` that no revision accounts for: a partial download, or a blob
/// nothing links.
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

impl LooseFile {
    fn new(repo: &RepoId, path: PathBuf, file: &StoredFile) -> LooseFile {
        LooseFile {
            repo: repo.clone(),
            path,
            size: file.size,
            id: file.id.clone(),
            links: file.links,
            modified: file.modified.unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }
}

/// One repo found on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoOnDisk {
    pub repo: RepoId,
    pub path: PathBuf,
    pub revisions: Vec<RevisionOnDisk>,
}

/// Everything in a hub cache that removals and cache policies care about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub repos: Vec<RepoOnDisk>,
    /// Blobs no snapshot links.
    pub unreferenced: Vec<LooseFile>,
    /// Partial downloads (`blobs/*.incomplete`).
    pub incomplete: Vec<LooseFile>,
}

impl Inventory {
    /// The inventory of a scanned cache.
    pub fn from_scan(scan: &CacheScan) -> Inventory {
        let mut inventory = Inventory::default();
        for repo in scan.repos.iter().filter(|r| !r.folder_is_link) {
            let (on_disk, unreferenced) = repo_on_disk(repo);
            inventory.unreferenced.extend(unreferenced);
            inventory.incomplete.extend(
                repo.incomplete
                    .iter()
                    .map(|p| LooseFile::new(&repo.repo, p.path.clone(), &p.file)),
            );
            inventory.repos.push(on_disk);
        }
        inventory.repos.sort_by(|a, b| a.path.cmp(&b.path));
        inventory.unreferenced.sort_by(|a, b| a.path.cmp(&b.path));
        inventory.incomplete.sort_by(|a, b| a.path.cmp(&b.path));
        inventory
    }

    /// Bytes on disk: every file in the cache once, whichever repos and revisions hold it.
    pub fn total_bytes(&self) -> u64 {
        size_once(self.linked().chain(self.loose()))
    }

    /// Bytes in unreferenced blobs and partial downloads, except files a revision holds too:
    /// what the cache holds beyond the sizes of its revisions.
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
}

/// A repo's revisions as removals see them, and its blobs nothing links.
pub(super) fn repo_on_disk(repo: &CachedRepo) -> (RepoOnDisk, Vec<LooseFile>) {
    let mut linked: HashSet<&str> = HashSet::new();
    let mut revisions = Vec::new();
    for revision in &repo.revisions {
        if revision.folder_is_link || !super::removal::plain_segment(&revision.commit) {
            continue;
        }
        let files: Vec<RevisionFile> = revision
            .files
            .iter()
            .filter_map(|f| revision_file(&repo.path, f))
            .collect();
        let (blobs, file_time) = blobs_of(&files);
        revisions.push(RevisionOnDisk {
            commit: revision.commit.clone(),
            // Ref files are read as the downloader writes them, a trailing newline tolerated.
            refs: repo
                .refs
                .iter()
                .filter(|(_, target)| target.trim() == revision.commit)
                .map(|(name, _)| name.clone())
                .collect(),
            blobs,
            files,
            file_time,
        });
    }
    for file in repo.revisions.iter().flat_map(|r| &r.files) {
        if let Some(etag) = &file.etag {
            linked.insert(etag);
        }
    }
    let unreferenced = repo
        .blobs
        .iter()
        .filter(|(etag, _)| !linked.contains(etag.as_str()) && !repo.linked_blobs.contains(*etag))
        .map(|(etag, file)| {
            LooseFile::new(&repo.repo, super::layout::blob_file(&repo.path, etag), file)
        })
        .collect();
    let on_disk = RepoOnDisk {
        repo: repo.repo.clone(),
        path: repo.path.clone(),
        revisions,
    };
    (on_disk, unreferenced)
}

/// One snapshot entry as a revision file: a link into the repo's own `blobs/` (keyed by the
/// etag) or a copied file (keyed by its path in the repo folder). Links that lead anywhere else
/// are not ours to size or remove: `None`.
fn revision_file(repo_dir: &Path, file: &CachedFile) -> Option<RevisionFile> {
    let key = match (&file.etag, file.copied) {
        (Some(etag), _) => etag.clone(),
        (None, true) => {
            let relative = file
                .snapshot_path
                .strip_prefix(repo_dir)
                .unwrap_or(&file.snapshot_path);
            format!("file:{}", relative.to_string_lossy())
        }
        (None, false) => return None,
    };
    let time = file
        .modified
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .max(file.accessed.unwrap_or(SystemTime::UNIX_EPOCH));
    Some(RevisionFile {
        path: file.path.clone(),
        key,
        size: file.size,
        id: file.id.clone(),
        links: file.links,
        time,
    })
}

/// The blobs of some of a snapshot's files, each once, and the newest time among the files.
pub fn blobs_of<'a>(
    files: impl IntoIterator<Item = &'a RevisionFile> + Clone,
) -> (Vec<BlobUse>, SystemTime) {
    let mut blobs: HashMap<&str, BlobUse> = HashMap::new();
    for f in files.clone() {
        blobs.entry(&f.key).or_insert_with(|| BlobUse {
            key: f.key.clone(),
            size: f.size,
            id: f.id.clone(),
            links: f.links,
        });
    }
    let mut blobs: Vec<BlobUse> = blobs.into_values().collect();
    blobs.sort_by(|a, b| a.key.cmp(&b.key));
    let newest = files
        .into_iter()
        .map(|f| f.time)
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    (blobs, newest)
}

impl super::HubCache {
    /// What removals and cache policies see of the whole cache (one [`super::HubCache::scan`]).
    pub fn inventory(&self) -> Result<Inventory, super::StoreError> {
        Ok(Inventory::from_scan(&self.scan()?))
    }

    /// The files of one cached revision (see [`RevisionFile`]), or `NotCached`.
    pub fn revision_files(
        &self,
        repo: &RepoId,
        commit: &str,
    ) -> Result<Vec<RevisionFile>, super::StoreError> {
        let not_cached = || super::StoreError::NotCached {
            repo: repo.to_string(),
            commit: commit.to_string(),
        };
        let dir = self.repo(repo).dir().to_path_buf();
        if !super::removal::plain_segment(commit) || !dir.is_dir() {
            return Err(not_cached());
        }
        let (on_disk, _) = repo_on_disk(&super::scan::read_repo(repo, &dir)?);
        on_disk
            .revisions
            .into_iter()
            .find(|r| r.commit == commit)
            .map(|r| r.files)
            .ok_or_else(not_cached)
    }
}
