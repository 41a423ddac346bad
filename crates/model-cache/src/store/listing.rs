//! The cache as a list of models, cheaply: what `mcache ls` and the app's library show (each
//! repo's revisions, refs, sizes and file counts), read once per repo from disk and then kept
//! with a [`Stamp`] of the repo's folders. While the stamp holds, the folder has not changed and
//! the kept listing is the answer: a listing of a cache of 200,000 files stats a few folders per
//! repo instead of reading every link.
//!
//! A stamp is the modification time of every folder of the repo (`blobs/`, `refs/` and its
//! subfolders, `snapshots/` and every folder under it) and of every ref file: adding, removing
//! or renaming a file changes its folder's time, and a ref rewritten in place changes its own.
//! Blobs are never rewritten in place (they are renamed into `blobs/`). A stamp taken within
//! [`RACY_WINDOW`] of a folder's last change is not trusted (a change in the same clock tick
//! would not show), so that repo is read again next time.
//!
//! What a stamp does not see: the access times of the files, which are the last-use fallback of
//! repos we have no use record for. A listing keeps the time it read; the cache policies (which
//! evict by it) always read the disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::inventory::repo_on_disk;
use super::{StoreError, size_once};
use crate::repo::RepoId;

/// Folder changes younger than this when a stamp is taken make the stamp untrusted.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// One cached repo as the library lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoListing {
    pub repo: RepoId,
    pub path: PathBuf,
    /// Bytes of its revisions' files, each file once.
    pub size_bytes: u64,
    pub revisions: Vec<RevisionListing>,
}

/// One revision of a [`RepoListing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionListing {
    pub commit: String,
    pub refs: Vec<String>,
    pub size_bytes: u64,
    /// Files (blobs) it holds, each once.
    pub files: usize,
    /// Newest access or modification time of its files (unix ms), the last-use fallback.
    pub file_time_ms: u64,
}

/// The state of a repo's folders when it was listed (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// `(path relative to the repo folder, modification time in ns since the epoch)`.
    entries: Vec<(String, i128)>,
    /// Some folder had changed within [`RACY_WINDOW`] of the stamp: never holds.
    racy: bool,
}

impl Stamp {
    /// Takes the stamp of the repo folder `dir` now.
    pub fn take(dir: &Path) -> Stamp {
        let now = SystemTime::now();
        let mut entries = Vec::new();
        stamp_one(dir, "", &mut entries);
        for folder in ["blobs", "snapshots"] {
            stamp_one(&dir.join(folder), folder, &mut entries);
        }
        stamp_tree(&dir.join("refs"), "refs", true, &mut entries);
        if let Ok(snapshots) = std::fs::read_dir(dir.join("snapshots")) {
            for entry in snapshots.filter_map(Result::ok) {
                let rel = format!("snapshots/{}", entry.file_name().to_string_lossy());
                stamp_tree(&entry.path(), &rel, false, &mut entries);
            }
        }
        let newest = entries.iter().map(|(_, t)| *t).max().unwrap_or(0);
        let racy = newest >= ns_since_epoch(now - RACY_WINDOW);
        Stamp { entries, racy }
    }

    /// Whether `dir` is as this stamp found it.
    pub fn holds(&self, dir: &Path) -> bool {
        if self.racy {
            return false;
        }
        self.entries.iter().all(|(rel, time)| {
            let path = if rel.is_empty() {
                dir.to_path_buf()
            } else {
                dir.join(rel)
            };
            modified_ns(&path) == Some(*time)
        })
    }
}

/// Adds `path`'s time; a missing path is recorded as time 0 (its later creation shows).
fn stamp_one(path: &Path, rel: &str, entries: &mut Vec<(String, i128)>) {
    entries.push((rel.to_string(), modified_ns(path).unwrap_or(0)));
}

/// Adds the times of `dir` and every folder under it, and of the files too with `files`.
fn stamp_tree(dir: &Path, rel: &str, files: bool, entries: &mut Vec<(String, i128)>) {
    stamp_one(dir, rel, entries);
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.filter_map(Result::ok) {
        let child = format!("{rel}/{}", entry.file_name().to_string_lossy());
        match entry.file_type() {
            Ok(t) if t.is_dir() => stamp_tree(&entry.path(), &child, files, entries),
            Ok(_) if files => stamp_one(&entry.path(), &child, entries),
            _ => {}
        }
    }
}

fn modified_ns(path: &Path) -> Option<i128> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(ns_since_epoch)
}

fn ns_since_epoch(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The repo folders of the cache at `root`, as the full scan finds them (sorted by name).
pub fn repo_folders(root: &Path) -> Result<Vec<(RepoId, PathBuf)>, StoreError> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("read", root, e)),
    };
    let mut out: Vec<(RepoId, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let repo = RepoId::from_folder_name(&entry.file_name().to_string_lossy())?;
            let path = entry.path();
            path.is_dir().then_some((repo, path))
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Reads one repo folder: its listing (`None` for a folder that is a symlink, which the
/// library does not list, as the inventory does not) and the stamp taken just before.
pub fn read_listing(repo: &RepoId, dir: &Path) -> Result<(Option<RepoListing>, Stamp), StoreError> {
    // Stamped first: a change while the folder is read leaves a stamp that no longer holds.
    let stamp = Stamp::take(dir);
    let cached = super::scan::read_repo(repo, dir)?;
    if cached.folder_is_link {
        return Ok((None, stamp));
    }
    let (on_disk, _) = repo_on_disk(&cached);
    let size_bytes = size_once(
        on_disk
            .revisions
            .iter()
            .flat_map(|r| &r.blobs)
            .map(|b| (&b.id, b.size)),
    );
    let revisions = on_disk
        .revisions
        .iter()
        .map(|r| RevisionListing {
            commit: r.commit.clone(),
            refs: r.refs.clone(),
            size_bytes: size_once(r.blobs.iter().map(|b| (&b.id, b.size))),
            files: r.blobs.len(),
            file_time_ms: r
                .file_time
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        })
        .collect();
    Ok((
        Some(RepoListing {
            repo: on_disk.repo,
            path: on_disk.path,
            size_bytes,
            revisions,
        }),
        stamp,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_dir(root: &Path) -> PathBuf {
        let dir = root.join("models--org--name");
        let commit = "a".repeat(40);
        std::fs::create_dir_all(dir.join("blobs")).unwrap();
        std::fs::create_dir_all(dir.join("refs")).unwrap();
        std::fs::create_dir_all(dir.join("snapshots").join(&commit).join("sub")).unwrap();
        std::fs::write(dir.join("refs/main"), &commit).unwrap();
        std::fs::write(dir.join("blobs/e1"), b"one").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            "../../../blobs/e1",
            dir.join("snapshots").join(&commit).join("sub/f1"),
        )
        .unwrap();
        dir
    }

    /// Sets every stamped time of `dir` back by a minute (so the stamp is not racy).
    fn age(dir: &Path) {
        let old = SystemTime::now() - Duration::from_secs(60);
        for entry in walk(dir) {
            let file = std::fs::File::open(&entry).unwrap();
            file.set_modified(old).unwrap();
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![dir.to_path_buf()];
        for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
            let t = entry.file_type().unwrap();
            if t.is_dir() {
                out.extend(walk(&entry.path()));
            } else if t.is_file() {
                out.push(entry.path());
            }
        }
        out
    }

    #[test]
    fn a_fresh_change_makes_the_stamp_untrusted_and_an_old_one_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = repo_dir(tmp.path());
        assert!(!Stamp::take(&dir).holds(&dir), "just written: racy");
        age(&dir);
        let stamp = Stamp::take(&dir);
        assert!(stamp.holds(&dir));
    }

    #[test]
    fn every_kind_of_change_breaks_the_stamp() {
        let commit = "a".repeat(40);
        type Change = Box<dyn Fn(&Path)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "a blob added",
                Box::new(|d| std::fs::write(d.join("blobs/e2"), b"2").unwrap()),
            ),
            (
                "a ref rewritten in place",
                Box::new(|d| std::fs::write(d.join("refs/main"), "b".repeat(40)).unwrap()),
            ),
            (
                "a ref added in a subfolder",
                Box::new(|d| {
                    std::fs::create_dir_all(d.join("refs/pr")).unwrap();
                    std::fs::write(d.join("refs/pr/1"), "c".repeat(40)).unwrap()
                }),
            ),
            (
                "a nested snapshot file removed",
                Box::new(move |d| {
                    std::fs::remove_file(d.join("snapshots").join(&commit).join("sub/f1")).unwrap()
                }),
            ),
            (
                "a snapshot added",
                Box::new(|d| {
                    std::fs::create_dir_all(d.join("snapshots").join("d".repeat(40))).unwrap()
                }),
            ),
        ];
        for (what, change) in changes {
            let tmp = tempfile::tempdir().unwrap();
            let dir = repo_dir(tmp.path());
            age(&dir);
            let stamp = Stamp::take(&dir);
            assert!(stamp.holds(&dir), "{what}: holds before");
            change(&dir);
            assert!(!stamp.holds(&dir), "{what}: must not hold after");
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_listing_counts_a_revision_and_its_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = repo_dir(tmp.path());
        let repo = RepoId::model("org/name").unwrap();
        let (listing, _) = read_listing(&repo, &dir).unwrap();
        let listing = listing.unwrap();
        assert_eq!(listing.size_bytes, 3);
        assert_eq!(listing.revisions.len(), 1);
        assert_eq!(listing.revisions[0].files, 1);
        assert_eq!(listing.revisions[0].refs, vec!["main".to_string()]);
    }
}
