//! Which parts of the cache to clean, as decisions over the store's [`Inventory`]: stale
//! partial downloads, blobs nothing links, revisions no ref points at, eviction candidates. The
//! disk is read and changed by the store only (`store::inventory`, `store::removal`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::PolicyError;
use super::evict::{CachedRevision, LastUsedSource};
use crate::repo::RepoId;
use crate::store::removal::{self, Removal};
use crate::store::{Inventory, LooseFile};

/// The revisions as eviction candidates. `last_used` gives our own last-use record (from the
/// index) when there is one; otherwise the file times are used. `pinned` tells which revisions
/// are pinned.
pub fn candidates(
    inventory: &Inventory,
    last_used: &dyn Fn(&RepoId, &str) -> Option<SystemTime>,
    pinned: &dyn Fn(&RepoId, &str) -> bool,
) -> Vec<CachedRevision> {
    let mut out = Vec::new();
    for repo in &inventory.repos {
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
    Ok(removal::remove_loose(root, stale, dry_run)?)
}

fn is_older(file: &LooseFile, age: Duration, now: SystemTime) -> bool {
    now.duration_since(file.modified).unwrap_or(Duration::ZERO) >= age
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
    Ok(removal::remove_loose(root, old, dry_run)?)
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
    let candidates = candidates(inventory, &|_, _| None, &|_, _| false);
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
    use crate::store::HubCache;
    use crate::store::removal::{delete_files, delete_repo, delete_revision};
    use std::fs;

    fn scan(root: &Path) -> Result<Inventory, crate::store::StoreError> {
        HubCache::new(root).inventory()
    }

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
            Err(crate::store::StoreError::NotCached { .. })
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
