//! The store writes the Hugging Face cache layout byte for byte, refuses hostile names, locks
//! blobs, and scans caches. No network.

use model_cache::error::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use model_cache::RepoId;
use model_cache::store::{
    CACHEDIR_TAG, CachedLookup, HubCache, RepoCache, SafeRelPath, StoreError,
};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const COMMIT2: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn etag_of(content: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(content))
}

fn setup() -> (tempfile::TempDir, HubCache, RepoCache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = HubCache::new(dir.path().join("hub"));
    let repo = cache.repo(&RepoId::model("org/tiny").unwrap());
    repo.ensure_dirs().unwrap();
    (dir, cache, repo)
}

/// Puts `content` into `blobs/<sha256>` the way a download finishes, and returns the etag.
fn put_blob(repo: &RepoCache, content: &[u8]) -> String {
    let etag = etag_of(content);
    std::fs::write(repo.incomplete_path(&etag), content).unwrap();
    repo.finish_blob(&etag).unwrap();
    etag
}

fn rel(name: &str) -> SafeRelPath {
    SafeRelPath::new(name).unwrap()
}

#[test]
fn hostile_names_are_rejected() {
    let long_segment = "a".repeat(300);
    let long_path = vec!["abc"; 400].join("/");
    let rejected: &[&str] = &[
        "",
        "/etc/passwd",
        "..",
        ".",
        "../x",
        "a/../../x",
        "a/..",
        "a//b",
        "a/",
        "./a",
        "a/./b",
        "a\\b",
        "..\\..\\x",
        "C:x",
        "c:/windows",
        "a\0b",
        "a\nb",
        "tab\there",
        "\u{7f}",
        &long_segment,
        &long_path,
    ];
    for name in rejected {
        let err = SafeRelPath::new(name).expect_err(&format!("{name:?} must be rejected"));
        assert_eq!(err.kind(), ErrorKind::UnsafePath);
        assert!(err.to_string().starts_with("Refusing unsafe file name"));
    }
    let accepted = [
        "config.json",
        "sub/dir/f.txt",
        "data/train file.csv",
        "..hidden",
        "a..b/c",
        ".gitattributes",
        "émoji-ü.bin",
    ];
    for name in accepted {
        let path = SafeRelPath::new(name).unwrap();
        assert_eq!(path.as_str(), name);
    }
    assert_eq!(rel("sub/dir/f.txt").depth(), 3);
}

#[test]
fn symlinks_cannot_lead_writes_out_of_the_snapshot() {
    let (dir, _cache, repo) = setup();
    let etag = put_blob(&repo, b"payload");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let snapshot = repo.snapshot_dir(COMMIT);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::os::unix::fs::symlink(&outside, snapshot.join("evil")).unwrap();
    // A symlink to a folder of the cache that is not inside the snapshot is refused too.
    std::os::unix::fs::symlink(repo.dir().join("blobs"), snapshot.join("to-blobs")).unwrap();
    std::os::unix::fs::symlink("../..", snapshot.join("up")).unwrap();

    for name in ["evil/x.bin", "evil/deeper/x.bin", "to-blobs/x", "up/x"] {
        let err = repo.link(COMMIT, &rel(name), &etag).unwrap_err();
        assert!(
            matches!(err, StoreError::Escape { .. }),
            "{name}: expected an escape error, got {err}"
        );
        assert!(err.to_string().contains("outside the cache"), "{err}");
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing was written outside"
    );

    // `.no_exist` gets the same protection.
    let no_exist = repo.dir().join(".no_exist").join(COMMIT);
    std::fs::create_dir_all(&no_exist).unwrap();
    std::os::unix::fs::symlink(&outside, no_exist.join("evil")).unwrap();
    assert!(matches!(
        repo.mark_no_exist(COMMIT, &rel("evil/missing.bin")),
        Err(StoreError::Escape { .. })
    ));
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

    // A symlinked folder that stays inside the snapshot is fine.
    std::fs::create_dir_all(snapshot.join("real")).unwrap();
    std::os::unix::fs::symlink("real", snapshot.join("alias")).unwrap();
    repo.link(COMMIT, &rel("alias/ok.bin"), &etag).unwrap();
    assert_eq!(
        std::fs::read(snapshot.join("real/ok.bin")).unwrap(),
        b"payload"
    );

    // Invalid etags and commits never become paths.
    assert!(repo.link(COMMIT, &rel("a"), "../../x").is_err());
    assert!(repo.link("../../x", &rel("a"), &etag).is_err());
    assert!(repo.lock_blob("../x", Duration::ZERO).is_err());
}

#[test]
fn links_refs_and_markers_match_huggingface_hub_byte_for_byte() {
    let (_dir, cache, repo) = setup();
    let etag = put_blob(&repo, b"hello");
    let nested_etag = put_blob(&repo, b"nested");

    let top = repo.link(COMMIT, &rel("config.json"), &etag).unwrap();
    assert_eq!(top, repo.snapshot_dir(COMMIT).join("config.json"));
    assert_eq!(
        std::fs::read_link(&top).unwrap(),
        PathBuf::from(format!("../../blobs/{etag}"))
    );
    assert_eq!(std::fs::read(&top).unwrap(), b"hello");
    let nested = repo
        .link(COMMIT, &rel("sub/dir/f.txt"), &nested_etag)
        .unwrap();
    assert_eq!(
        std::fs::read_link(&nested).unwrap(),
        PathBuf::from(format!("../../../../blobs/{nested_etag}"))
    );
    assert_eq!(std::fs::read(&nested).unwrap(), b"nested");
    // Linking again is idempotent; re-linking to another blob replaces the link.
    repo.link(COMMIT, &rel("config.json"), &etag).unwrap();
    repo.link(COMMIT, &rel("config.json"), &nested_etag)
        .unwrap();
    assert_eq!(std::fs::read(&top).unwrap(), b"nested");
    let leftovers: Vec<_> = std::fs::read_dir(repo.snapshot_dir(COMMIT))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let missing = repo
        .link(COMMIT, &rel("x.bin"), &"f".repeat(64))
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::BlobMissing);

    repo.write_ref("main", COMMIT).unwrap();
    assert_eq!(
        std::fs::read(repo.dir().join("refs/main")).unwrap(),
        COMMIT.as_bytes(),
        "no trailing newline"
    );
    repo.write_ref("refs/pr/1", COMMIT2).unwrap();
    assert_eq!(
        std::fs::read(repo.dir().join("refs/refs/pr/1")).unwrap(),
        COMMIT2.as_bytes()
    );
    repo.write_ref(COMMIT, COMMIT).unwrap();
    assert!(!repo.dir().join("refs").join(COMMIT).exists());
    assert!(repo.write_ref("main", "not-a-commit").is_err());
    assert!(repo.write_ref("../escape", COMMIT).is_err());
    assert_eq!(repo.read_ref("main").as_deref(), Some(COMMIT));
    assert_eq!(repo.read_ref("dev"), None);

    repo.mark_no_exist(COMMIT, &rel("sub/missing.bin")).unwrap();
    let marker = repo
        .dir()
        .join(".no_exist")
        .join(COMMIT)
        .join("sub/missing.bin");
    assert_eq!(std::fs::metadata(&marker).unwrap().len(), 0);

    assert_eq!(
        std::fs::read_to_string(cache.root().join("CACHEDIR.TAG")).unwrap(),
        CACHEDIR_TAG
    );
    let root_entries: Vec<String> = std::fs::read_dir(cache.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut sorted = root_entries.clone();
    sorted.sort();
    assert_eq!(sorted, vec![".locks", "CACHEDIR.TAG", "models--org--tiny"]);
    assert_eq!(
        repo.lock_path(&etag),
        cache
            .root()
            .join(".locks/models--org--tiny")
            .join(format!("{etag}.lock"))
    );
}

#[test]
fn offline_lookup_returns_snapshot_paths() {
    let (_dir, _cache, repo) = setup();
    let etag = put_blob(&repo, b"{}");
    repo.link(COMMIT, &rel("config.json"), &etag).unwrap();
    repo.write_ref("main", COMMIT).unwrap();
    repo.mark_no_exist(COMMIT, &rel("missing.bin")).unwrap();

    let found = repo.resolve_cached("main", "config.json").unwrap();
    assert_eq!(found, repo.snapshot_dir(COMMIT).join("config.json"));
    assert!(
        found
            .to_string_lossy()
            .contains(&format!("snapshots/{COMMIT}/")),
        "transformers parses the commit out of the path"
    );
    assert_eq!(
        repo.resolve_cached(COMMIT, "config.json"),
        Some(found.clone())
    );
    assert_eq!(
        repo.lookup_cached("main", "missing.bin"),
        CachedLookup::KnownMissing {
            commit: COMMIT.into()
        }
    );
    assert_eq!(
        repo.lookup_cached("main", "other.bin"),
        CachedLookup::NotCached
    );
    assert_eq!(
        repo.lookup_cached("dev", "config.json"),
        CachedLookup::NotCached
    );
    assert_eq!(repo.lookup_cached("main", "../x"), CachedLookup::NotCached);

    // A ref with a trailing newline is not a commit (Python reads it raw, and fails the same).
    std::fs::write(repo.dir().join("refs/broken"), format!("{COMMIT}\n")).unwrap();
    assert_eq!(repo.resolve_cached("broken", "config.json"), None);
}

#[test]
fn blob_locks_exclude_each_other_and_time_out_with_a_hint() {
    let (_dir, _cache, repo) = setup();
    let etag = "a".repeat(64);
    let first = repo.lock_blob(&etag, Duration::from_secs(1)).unwrap();
    let err = repo
        .lock_blob(&etag, Duration::from_millis(50))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockTimeout);
    let message = err.to_string();
    assert!(message.contains(".lock"), "{message}");
    assert!(
        matches!(&err.hints()[..], [model_cache::error::Hint::WaitForLock { path }] if path.to_string_lossy().ends_with(".lock")),
        "{:?}",
        err.hints()
    );

    // A waiter gets the lock once the holder lets go, and not before.
    let released = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(2));
    let waiter = {
        let repo = repo.clone();
        let etag = etag.clone();
        let released = Arc::clone(&released);
        let barrier = Arc::clone(&barrier);
        std::thread::spawn(move || {
            barrier.wait();
            let lock = repo.lock_blob(&etag, Duration::from_secs(30)).unwrap();
            let was_released = released.load(Ordering::SeqCst);
            drop(lock);
            was_released
        })
    };
    barrier.wait();
    std::thread::sleep(Duration::from_millis(100));
    released.store(true, Ordering::SeqCst);
    drop(first);
    assert!(
        waiter.join().unwrap(),
        "the waiter got the lock only after release"
    );
    assert!(
        repo.lock_path(&etag).exists(),
        "lock files are left in place"
    );
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn scan_reports_repos_revisions_sizes_and_problems() {
    let (_dir, cache, repo) = setup();
    let a = put_blob(&repo, b"aaaa");
    let b = put_blob(&repo, b"bbbbbbbb");
    let unused = put_blob(&repo, b"unused!");
    repo.link(COMMIT, &rel("a.bin"), &a).unwrap();
    repo.link(COMMIT, &rel("dir/b.bin"), &b).unwrap();
    repo.link(COMMIT2, &rel("a.bin"), &a).unwrap();
    repo.write_ref("main", COMMIT).unwrap();
    repo.write_ref("v1", COMMIT2).unwrap();
    std::fs::write(repo.dir().join("refs/gone"), "f".repeat(40)).unwrap();
    std::fs::write(repo.incomplete_path(&"c".repeat(64)), b"partial").unwrap();
    std::os::unix::fs::symlink(
        format!("../../blobs/{}", "d".repeat(64)),
        repo.snapshot_dir(COMMIT2).join("broken.bin"),
    )
    .unwrap();
    // Another repo with copied files (the no-symlink layout).
    let other = cache.repo(&RepoId::model("gpt2").unwrap());
    other.ensure_dirs().unwrap();
    std::fs::create_dir_all(other.snapshot_dir(COMMIT)).unwrap();
    std::fs::write(other.snapshot_dir(COMMIT).join("config.json"), b"{}").unwrap();
    other.write_ref("main", COMMIT).unwrap();
    std::fs::write(cache.root().join("index.sqlite3"), b"foreign").unwrap();

    let scan = cache.scan().unwrap();
    let ids: Vec<String> = scan.repos.iter().map(|r| r.repo.to_string()).collect();
    assert_eq!(ids, vec!["gpt2", "org/tiny"]);
    let tiny = &scan.repos[1];
    assert_eq!(tiny.size_on_disk, 4 + 8 + 7);
    assert_eq!(tiny.revisions.len(), 2);
    let first = tiny.revisions.iter().find(|r| r.commit == COMMIT).unwrap();
    assert_eq!(first.refs, vec!["main"]);
    let files: Vec<(&str, u64, Option<&str>)> = first
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.size, f.etag.as_deref()))
        .collect();
    assert_eq!(
        files,
        vec![
            ("a.bin", 4, Some(a.as_str())),
            ("dir/b.bin", 8, Some(b.as_str()))
        ]
    );
    assert_eq!(first.size_on_disk, 12);
    let second = tiny.revisions.iter().find(|r| r.commit == COMMIT2).unwrap();
    assert_eq!(second.broken, vec!["broken.bin"]);
    assert_eq!(tiny.unreferenced_blobs, vec![unused]);
    assert_eq!(
        names(&tiny.incomplete),
        vec![format!("{}.incomplete", "c".repeat(64))]
    );
    assert_eq!(tiny.dangling_refs, vec!["gone"]);
    assert_eq!(tiny.refs.get("v1").map(String::as_str), Some(COMMIT2));

    let gpt2 = &scan.repos[0];
    assert_eq!(gpt2.size_on_disk, 2);
    assert_eq!(gpt2.revisions[0].files[0].etag, None);

    let messages: Vec<&str> = scan.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(
        messages.iter().any(|m| m.contains("broken symlink")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("missing commit")),
        "{messages:?}"
    );
    assert!(
        scan.warnings
            .iter()
            .any(|w| w.path == cache.root().join("index.sqlite3")),
        "a foreign file in the root is reported"
    );
    assert_eq!(scan.size_on_disk, 19 + 2);
}

#[test]
fn scanning_a_missing_cache_is_empty_not_an_error() {
    let scan = HubCache::new(Path::new("/nonexistent/cache/root"))
        .scan()
        .unwrap();
    assert!(scan.repos.is_empty() && scan.warnings.is_empty());
}

#[test]
fn scan_names_blobs_by_their_link_even_through_the_shared_blob_store() {
    // huggingface_hub 2.x may make `blobs/<etag>` itself a link into `<cache>/blobs/`.
    let (_dir, cache, repo) = setup();
    let shared = cache.root().join("blobs/ab");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("abcdef"), b"xet bytes").unwrap();
    let etag = "e".repeat(64);
    std::os::unix::fs::symlink("../../blobs/ab/abcdef", repo.blob_path(&etag)).unwrap();
    repo.link(COMMIT, &rel("model.bin"), &etag).unwrap();
    let scan = cache.scan().unwrap();
    assert!(scan.warnings.is_empty(), "{:?}", scan.warnings);
    let file = &scan.repos[0].revisions[0].files[0];
    assert_eq!(file.etag.as_deref(), Some(etag.as_str()));
    assert_eq!(file.size, 9);
    assert!(scan.repos[0].unreferenced_blobs.is_empty());
}

#[test]
fn scan_counts_a_blob_hard_linked_into_two_repos_once() {
    let (_dir, cache, repo) = setup();
    let etag = put_blob(&repo, b"shared bytes");
    repo.link(COMMIT, &rel("model.bin"), &etag).unwrap();
    let other = cache.repo(&RepoId::model("org/other").unwrap());
    other.ensure_dirs().unwrap();
    std::fs::hard_link(repo.blob_path(&etag), other.blob_path(&etag)).unwrap();
    other.link(COMMIT, &rel("model.bin"), &etag).unwrap();

    let scan = cache.scan().unwrap();
    let (a, b) = (&scan.repos[0], &scan.repos[1]);
    assert_eq!(
        (a.size_on_disk, b.size_on_disk),
        (12, 12),
        "each repo holds it"
    );
    assert_eq!(scan.size_on_disk, 12, "the cache holds it once");
    assert_eq!(a.blobs[&etag].id, b.blobs[&etag].id);
    assert_eq!(a.blobs[&etag].links, 2);
    let file = &b.revisions[0].files[0];
    assert_eq!((&file.id, file.links), (&a.blobs[&etag].id, 2));
}
