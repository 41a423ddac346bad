//! The index on disk and `doctor`, which rebuilds it from the cache and repairs the cache.

use std::time::Duration;

use model_cache::RepoId;
use model_cache::doctor;
use model_cache::index::{Index, metric};
use model_cache::store::{HubCache, RepoCache, SafeRelPath};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const COMMIT2: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn put_blob(repo: &RepoCache, content: &[u8]) -> String {
    use sha2::Digest;
    let etag = hex::encode(sha2::Sha256::digest(content));
    std::fs::write(repo.partial_path(&etag), content).unwrap();
    repo.finish_blob(&etag).unwrap();
    etag
}

fn rel(name: &str) -> SafeRelPath {
    SafeRelPath::new(name).unwrap()
}

#[test]
fn two_processes_opening_a_fresh_index_apply_migrations_once() {
    let dir = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let index = Index::open(&path).unwrap();
                index.add_metric(metric::HITS, 1).unwrap();
                index.schema_version().unwrap()
            })
        })
        .collect();
    let versions: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(versions.windows(2).all(|w| w[0] == w[1]), "{versions:?}");
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.metrics().unwrap()[metric::HITS], 4);
    assert_eq!(
        index.path(),
        Some(dir.path().join("index.sqlite3").as_path())
    );
}

#[test]
fn doctor_rebuilds_the_index_and_repairs_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = HubCache::new(dir.path().join("hub"));
    let tiny_id = RepoId::model("org/tiny").unwrap();
    let tiny = cache.repo(&tiny_id);
    tiny.ensure_dirs().unwrap();
    let a = put_blob(&tiny, b"aaaa");
    let b = put_blob(&tiny, b"bbbbbbbb");
    let unused = put_blob(&tiny, b"unused");
    tiny.link(COMMIT, &rel("a.bin"), &a).unwrap();
    tiny.link(COMMIT, &rel("dir/b.bin"), &b).unwrap();
    tiny.link(COMMIT2, &rel("a.bin"), &a).unwrap();
    tiny.write_ref("main", COMMIT).unwrap();
    std::fs::write(tiny.dir().join("refs/gone"), "f".repeat(40)).unwrap();
    let stale = tiny.partial_path(&"c".repeat(64));
    std::fs::write(&stale, b"partial").unwrap();
    let active = tiny.partial_path(&"e".repeat(64));
    std::fs::write(&active, b"in progress").unwrap();
    let broken = tiny.snapshot_dir(COMMIT2).join("broken.bin");
    std::os::unix::fs::symlink(format!("../../blobs/{}", "d".repeat(64)), &broken).unwrap();

    let index = Index::open(&dir.path().join("data")).unwrap();
    // Someone (another process) is downloading `e…`: its `.incomplete` must survive repairs.
    let busy = tiny
        .lock_blob(&"e".repeat(64), Duration::from_secs(1))
        .unwrap();

    let report = doctor::run(&cache, &index, false).unwrap();
    assert_eq!(report.repos_added, vec![tiny_id.clone()]);
    assert_eq!(report.blobs_on_disk, 3);
    assert_eq!(report.broken_links, vec![broken.clone()]);
    assert_eq!(report.stale_incomplete, vec![stale.clone()]);
    assert_eq!(report.resumable_incomplete, vec![active.clone()]);
    assert_eq!(report.dangling_refs, vec![tiny.dir().join("refs/gone")]);
    assert_eq!(
        report.unreferenced_blobs,
        vec![tiny.dir().join("blobs").join(&unused)]
    );
    assert!(report.removed.is_empty());
    assert!(!report.is_healthy());
    assert!(
        broken.is_symlink() && stale.exists(),
        "a check changes nothing on disk"
    );

    let files = index.files(&tiny_id, COMMIT).unwrap();
    let paths: Vec<(&str, &str, u64, bool)> = files
        .iter()
        .map(|f| (f.path.as_str(), f.etag.as_str(), f.size, f.is_lfs))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("a.bin", a.as_str(), 4, true),
            ("dir/b.bin", b.as_str(), 8, true)
        ]
    );
    assert_eq!(
        index.revision_commit(&tiny_id, "main").unwrap().as_deref(),
        Some(COMMIT)
    );
    assert_eq!(index.blobs(&tiny_id).unwrap().len(), 3);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"stale_incomplete\""));

    let repaired = doctor::run(&cache, &index, true).unwrap();
    let mut removed = repaired.removed.clone();
    removed.sort();
    let mut expected = vec![broken.clone(), stale.clone(), tiny.dir().join("refs/gone")];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(!broken.is_symlink() && !stale.exists());
    assert!(active.exists(), "a locked download is left alone");
    assert!(tiny.dir().join("refs/main").exists());
    drop(busy);

    let again = doctor::run(&cache, &index, false).unwrap();
    assert!(again.repos_added.is_empty());
    assert!(again.broken_links.is_empty() && again.dangling_refs.is_empty());
    assert_eq!(
        again.stale_incomplete,
        vec![active.clone()],
        "unlocked now, and no job owns it"
    );

    // A blob deleted behind our back: its rows go.
    std::fs::remove_file(tiny.dir().join("blobs").join(&b)).unwrap();
    std::fs::remove_file(tiny.snapshot_dir(COMMIT).join("dir/b.bin")).unwrap();
    let after = doctor::run(&cache, &index, false).unwrap();
    assert_eq!(after.blob_rows_dropped, vec![(tiny_id.clone(), b.clone())]);
    assert!(index.blobs(&tiny_id).unwrap().iter().all(|r| r.etag != b));
    assert!(
        index
            .files(&tiny_id, COMMIT)
            .unwrap()
            .iter()
            .all(|f| f.etag != b)
    );

    // A snapshot deleted: its commit goes. A repo folder deleted: reported, rows dropped, pin
    // kept.
    std::fs::remove_dir_all(tiny.snapshot_dir(COMMIT2)).unwrap();
    let after = doctor::run(&cache, &index, false).unwrap();
    assert_eq!(
        after.commits_dropped,
        vec![(tiny_id.clone(), COMMIT2.to_string())]
    );
    index.pin(&tiny_id, None).unwrap();
    std::fs::remove_dir_all(tiny.dir()).unwrap();
    let after = doctor::run(&cache, &index, true).unwrap();
    assert_eq!(after.repos_missing, vec![tiny_id.clone()]);
    assert!(index.blobs(&tiny_id).unwrap().is_empty());
    assert!(index.is_pinned(&tiny_id).unwrap());
}
