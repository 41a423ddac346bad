//! Removals and what is in flight: no removal (gc, prune, evict, rm, cleanup) takes what a
//! download of any process is writing or filling, partial files of stopped downloads go before
//! any model, a live download's partial file is its own, and blobs are removed under their locks.
//!
//! "Another process" is another [`Index`] handle on the same data folder: each handle owns its
//! own in-flight lock, exactly as two processes do.

use std::collections::HashSet;
use std::fs::{self, File, FileTimes};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use model_cache::RepoId;
use model_cache::index::Index;
use model_cache::index::in_flight::Activity;
use model_cache::policy::CachePolicy;
use model_cache::policy::PolicyError;
use model_cache::policy::cleanup::Janitor;
use model_cache::store::HubCache;

const DAY: Duration = Duration::from_secs(86_400);

fn model(repo: &str) -> RepoId {
    RepoId::model(repo).unwrap()
}

fn hex40(seed: u8) -> String {
    format!("{seed:02x}").repeat(20)
}

fn etag_of(seed: u8) -> String {
    format!("{seed:02x}").repeat(32)
}

/// A snapshot of `repo` at `commit` with one file linking a blob of `size` bytes, files aged
/// `age`; `refs/main` points at it when `main`.
fn put_revision(root: &Path, repo: &str, commit: &str, etag: &str, size: u64, main: bool) {
    let dir = root.join(model(repo).folder_name());
    fs::create_dir_all(dir.join("blobs")).unwrap();
    fs::create_dir_all(dir.join("refs")).unwrap();
    let snapshot = dir.join("snapshots").join(commit);
    fs::create_dir_all(&snapshot).unwrap();
    let blob = dir.join("blobs").join(etag);
    fs::write(&blob, vec![7u8; size as usize]).unwrap();
    std::os::unix::fs::symlink(format!("../../blobs/{etag}"), snapshot.join("model.gguf")).unwrap();
    if main {
        fs::write(dir.join("refs/main"), commit).unwrap();
    }
    age(&blob, 10 * DAY);
}

fn age(path: &Path, by: Duration) {
    let when = SystemTime::now() - by;
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(FileTimes::new().set_accessed(when).set_modified(when))
        .unwrap();
}

/// A preallocated partial file `blobs/.<etag>.mcpart` of `size` bytes (sparse).
fn put_partial(root: &Path, repo: &str, etag: &str, size: u64) -> PathBuf {
    let dir = root.join(model(repo).folder_name()).join("blobs");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(".{etag}.mcpart"));
    File::create(&path).unwrap().set_len(size).unwrap();
    path
}

fn janitor(root: &Path, index: &Index, policy: CachePolicy) -> Janitor {
    Janitor::new(root, index.clone(), policy)
}

/// Every link under every snapshot resolves.
fn no_dangling_links(root: &Path) {
    for repo in fs::read_dir(root).unwrap().flatten() {
        let snapshots = repo.path().join("snapshots");
        let Ok(commits) = fs::read_dir(&snapshots) else {
            continue;
        };
        for commit in commits.flatten() {
            for file in fs::read_dir(commit.path()).unwrap().flatten() {
                assert!(
                    fs::metadata(file.path()).is_ok(),
                    "dangling link {}",
                    file.path().display()
                );
            }
        }
    }
}

#[test]
fn gc_during_a_pull_never_leaves_a_dangling_link() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let data = dir.path().join("data");
    let index = Index::open(&data).unwrap();
    // `main` at A is cached; a pull of a tag (commit B, no ref until it ends) is filling B in
    // another process: one file linked, more to come.
    let (a, b) = (hex40(0xa), hex40(0xb));
    put_revision(&root, "o/m", &a, &etag_of(1), 100, true);
    put_revision(&root, "o/m", &b, &etag_of(2), 100, false);
    let pulling = Index::open(&data).unwrap();
    let cache_root = HubCache::new(&root).root().to_path_buf();
    let _filling = pulling
        .begin_in_flight(
            Activity::Download,
            &cache_root,
            &model("o/m").folder_name(),
            Some(&b),
            None,
            0,
        )
        .unwrap();

    let pruning = CachePolicy {
        prune_old_revisions: true,
        ..CachePolicy::default()
    };
    let report = janitor(&root, &index, pruning.clone())
        .cleanup(SystemTime::now(), &HashSet::new(), false)
        .unwrap();
    assert!(report.old_revisions.is_empty(), "{report:?}");
    let snapshot_b = root
        .join(model("o/m").folder_name())
        .join("snapshots")
        .join(&b);
    assert!(
        snapshot_b.join("model.gguf").is_file(),
        "the snapshot being filled stays"
    );
    no_dangling_links(&root);

    // `rm` of that revision is refused while the pull runs, whatever process asks.
    let refused = janitor(&root, &index, CachePolicy::default())
        .remove(&model("o/m"), Some(&b), true, false)
        .unwrap_err();
    assert!(matches!(refused, PolicyError::InUse { .. }), "{refused}");

    // Once the pull ends (its process too), the old revision can go.
    drop(_filling);
    drop(pulling);
    let report = janitor(&root, &index, pruning)
        .cleanup(SystemTime::now(), &HashSet::new(), false)
        .unwrap();
    assert_eq!(report.old_revisions.len(), 1, "{report:?}");
    no_dangling_links(&root);
}

#[test]
fn a_live_download_never_evicts_a_finished_model() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let data = dir.path().join("data");
    let index = Index::open(&data).unwrap();
    put_revision(&root, "o/finished", &hex40(1), &etag_of(1), 1000, true);
    // Another process downloads a 1 GB file: its partial file is preallocated to full length.
    let partial = put_partial(&root, "o/big", &etag_of(9), 1 << 30);
    let downloading = Index::open(&data).unwrap();
    let _writing = downloading
        .begin_in_flight(
            Activity::Download,
            &root,
            &model("o/big").folder_name(),
            Some(&hex40(9)),
            Some(&etag_of(9)),
            1 << 30,
        )
        .unwrap();
    let budget = CachePolicy {
        budget: Some(1500),
        ..CachePolicy::default()
    };
    let report = janitor(&root, &index, budget)
        .cleanup(SystemTime::now(), &HashSet::new(), false)
        .unwrap();
    assert!(report.eviction.is_none(), "{report:?}");
    assert!(
        root.join(model("o/finished").folder_name()).exists(),
        "the finished model stays"
    );
    assert!(partial.exists(), "the live download's partial file stays");
}

#[test]
fn an_abandoned_partial_is_reclaimed_before_any_model_is_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let data = dir.path().join("data");
    let index = Index::open(&data).unwrap();
    put_revision(&root, "o/finished", &hex40(1), &etag_of(1), 1000, true);
    // A pull stopped by kill -9 a day ago: its partial file is resumable (younger than the
    // seven days it is kept), its transfer is still recorded as running, and nobody writes it.
    let partial = put_partial(&root, "o/big", &etag_of(9), 1 << 20);
    age(&partial, DAY);
    index
        .with_conn("record the stopped download", |c| {
            model_cache::index::transfers::create(
                c,
                &model_cache::index::transfers::NewTransferJob {
                    repo: &model("o/big").folder_name(),
                    revision: "main",
                    commit: &hex40(9),
                    path: "big.gguf",
                    etag: &etag_of(9),
                    size: 1 << 20,
                    chunk_size: 1 << 16,
                    validator: "",
                },
            )
        })
        .unwrap();
    let budget = CachePolicy {
        budget: Some(1500),
        ..CachePolicy::default()
    };
    let report = janitor(&root, &index, budget)
        .cleanup(SystemTime::now(), &HashSet::new(), false)
        .unwrap();
    assert!(!partial.exists(), "the abandoned partial file is reclaimed");
    assert_eq!(report.reclaimed_partials.paths, vec![partial]);
    assert!(report.eviction.is_none(), "no model is evicted: {report:?}");
    assert!(root.join(model("o/finished").folder_name()).exists());
    let left = index
        .with_conn("list transfers", model_cache::index::transfers::list)
        .unwrap();
    assert!(
        left.is_empty(),
        "its recorded download is forgotten: {left:?}"
    );
}

#[test]
fn a_removal_waits_for_the_blob_lock() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let index = Index::open(&dir.path().join("data")).unwrap();
    let etag = etag_of(3);
    put_revision(&root, "o/m", &hex40(3), &etag, 100, true);
    let blob = root
        .join(model("o/m").folder_name())
        .join("blobs")
        .join(&etag);
    // Another process (or `huggingface_hub`) holds the blob's lock.
    let lock = HubCache::new(&root)
        .repo(&model("o/m"))
        .lock_blob(&etag, Duration::from_secs(1))
        .unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let remover = {
        let (root, index) = (root.clone(), index.clone());
        std::thread::spawn(move || {
            let result = janitor(&root, &index, CachePolicy::default()).remove(
                &model("o/m"),
                None,
                true,
                false,
            );
            done_tx.send(()).unwrap();
            result
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(blob.exists(), "the blob stays while its lock is held");
    assert!(done_rx.try_recv().is_err(), "the removal is still waiting");
    drop(lock);
    let removal = remover.join().unwrap().unwrap();
    assert!(removal.paths.contains(&blob), "{removal:?}");
    assert!(!blob.exists());
}

#[test]
fn lock_files_are_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let index = Index::open(&dir.path().join("data")).unwrap();
    let etag = etag_of(4);
    put_revision(&root, "o/m", &hex40(4), &etag, 100, true);
    let lock_path = {
        let lock = HubCache::new(&root)
            .repo(&model("o/m"))
            .lock_blob(&etag, Duration::from_secs(1))
            .unwrap();
        lock.path().to_path_buf()
    };
    janitor(&root, &index, CachePolicy::default())
        .remove(&model("o/m"), None, true, false)
        .unwrap();
    assert!(!root.join(model("o/m").folder_name()).exists());
    assert!(
        lock_path.exists(),
        "the lock file stays: another process may hold it"
    );
}

#[test]
fn a_partial_file_replaced_meanwhile_is_never_renamed_into_place() {
    let dir = tempfile::tempdir().unwrap();
    let cache = HubCache::new(dir.path().join("hub"));
    let repo = cache.repo(&model("o/m"));
    repo.ensure_dirs().unwrap();
    let etag = etag_of(5);
    // This process writes and verifies its partial file through an open handle...
    let partial = repo.partial_path(&etag);
    let mine = File::create(&partial).unwrap();
    let written =
        model_cache::store::FileIdentity::of(&mine.metadata().unwrap()).expect("unix identity");
    // ...while `rm` and a second pull of another process replace it with their own.
    fs::remove_file(&partial).unwrap();
    fs::write(&partial, b"someone else's half-written bytes").unwrap();
    let error = repo.finish_written_blob(&etag, &written).unwrap_err();
    assert!(error.to_string().contains("replaced"), "{error}");
    assert!(
        !repo.blob_path(&etag).exists(),
        "nothing was renamed into place"
    );
    assert!(partial.exists(), "the other process's file is left to it");
}

/// One scanner: what `mcache ls` reports (the store's scan) and what removals and eviction
/// account (the inventory built from it) agree, file for file, on a cache with shared blobs,
/// a copied snapshot file, a partial download, a blob nothing links and a link leading out of
/// the cache.
#[test]
fn the_listing_and_the_removals_read_the_cache_the_same_way() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("hub");
    let (shared, own) = (etag_of(1), etag_of(2));
    put_revision(&root, "org/one", &hex40(1), &shared, 1000, true);
    put_revision(&root, "org/two", &hex40(2), &shared, 1000, true);
    // org/two's blob is a hard link to org/one's (the downloader shares identical blobs so).
    let blob_two = root.join("models--org--two/blobs").join(&shared);
    fs::remove_file(&blob_two).unwrap();
    fs::hard_link(root.join("models--org--one/blobs").join(&shared), &blob_two).unwrap();
    // A copied file (no symlinks), an unreferenced blob, a partial file, and a link out.
    let snapshot = root.join("models--org--two/snapshots").join(hex40(2));
    fs::write(snapshot.join("config.json"), vec![1u8; 30]).unwrap();
    fs::write(
        root.join("models--org--two/blobs").join(&own),
        vec![2u8; 70],
    )
    .unwrap();
    put_partial(&root, "org/two", &etag_of(3), 500);
    let outside = tmp.path().join("elsewhere.bin");
    fs::write(&outside, vec![3u8; 4000]).unwrap();
    std::os::unix::fs::symlink(&outside, snapshot.join("foreign.bin")).unwrap();

    let cache = HubCache::new(&root);
    let scan = cache.scan().unwrap();
    let inventory = cache.inventory().unwrap();
    let partials: u64 = scan
        .repos
        .iter()
        .flat_map(|r| &r.incomplete)
        .map(|p| p.file.size)
        .sum();
    // 1000 once (two names), 30 copied, 70 unreferenced; the link out is not the cache's.
    assert_eq!(scan.size_on_disk, 1100);
    assert_eq!(inventory.total_bytes(), scan.size_on_disk + partials);
    assert_eq!(inventory.loose_bytes(), 570);
    let two = inventory
        .repos
        .iter()
        .find(|r| r.repo == model("org/two"))
        .unwrap();
    let keys: Vec<&str> = two.revisions[0]
        .files
        .iter()
        .map(|f| f.key.as_str())
        .collect();
    assert_eq!(
        keys.len(),
        2,
        "the link out of the cache is not a file of ours: {keys:?}"
    );
    // Removing org/two frees its copied file, unreferenced blob and partial; the shared blob
    // keeps its bytes for org/one.
    let dry =
        model_cache::store::removal::delete_repo(&root, &model("org/two"), &HashSet::new(), true)
            .unwrap();
    assert_eq!(dry.bytes_freed, 600);
    assert_eq!(fs::read(&outside).unwrap().len(), 4000);
}
