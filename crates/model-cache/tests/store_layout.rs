//! The store writes the Hugging Face cache layout byte for byte, refuses hostile names, locks
//! blobs, and scans caches. No network.

use model_cache::error::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use model_cache::RepoId;
use model_cache::store::{
    CACHEDIR_TAG, CachedLookup, HubCache, LinkMode, MAX_FILE_NAME_BYTES, MAX_SEGMENT_BYTES,
    RepoCache, SafeRelPath, StoreError,
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
    std::fs::write(repo.partial_path(&etag), content).unwrap();
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
        "a/C:x",
        "a/file:stream",
        "x/con",
        "x/NUL.txt",
        "a/b.",
        "a/b ",
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

/// The longest names `SafeRelPath` accepts go through every writing method of the store on a
/// real file system, temporary names of atomic writes included: `MAX_FILE_NAME_BYTES` is kept
/// in step with how the store names its temporary files. One byte more is refused when the
/// name is checked, not once a write fails with `ENAMETOOLONG`.
#[test]
fn the_longest_accepted_names_are_written_through_every_method() {
    let (_dir, _cache, repo) = setup();
    let first = put_blob(&repo, b"first");
    let second = put_blob(&repo, b"second");
    let folder = "d".repeat(MAX_SEGMENT_BYTES);
    let at_limit = |letter: &str| format!("{folder}/{}", letter.repeat(MAX_FILE_NAME_BYTES));

    let file = rel(&at_limit("f"));
    let linked = repo.link(COMMIT, &file, &first).unwrap();
    assert_eq!(std::fs::read(&linked).unwrap(), b"first");
    // Linking over an existing link goes through a temporary name too.
    repo.link(COMMIT, &file, &second).unwrap();
    assert_eq!(std::fs::read(&linked).unwrap(), b"second");
    repo.mark_no_exist(COMMIT, &rel(&at_limit("m"))).unwrap();
    repo.write_ref(&at_limit("r"), COMMIT).unwrap();
    assert_eq!(repo.read_ref(&at_limit("r")).as_deref(), Some(COMMIT));

    let over = format!("{}n", at_limit("f"));
    let err = SafeRelPath::new(&over).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsafePath);
    assert!(
        err.to_string()
            .contains(&format!("limit of {MAX_FILE_NAME_BYTES} bytes")),
        "{err}"
    );
    let err = repo.write_ref(&over, COMMIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsafePath);
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
    std::fs::write(repo.partial_path(&"c".repeat(64)), b"partial").unwrap();
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
        names(
            &tiny
                .incomplete
                .iter()
                .map(|p| p.path.clone())
                .collect::<Vec<_>>()
        ),
        vec![format!(".{}.mcpart", "c".repeat(64))]
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

/// The pid of a process that has exited (free, unless the system reuses it at once).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Writes a file last modified `ago` in the past.
fn write_aged(path: &Path, content: &[u8], ago: Duration) {
    std::fs::write(path, content).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

/// Every entry under `dir` whose name ends in `.tmp`, relative to `dir`.
fn temp_entries(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.map(Result::unwrap) {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let path = entry.path();
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// A crash between writing a temp file and renaming it leaves `.{name}…tmp` next to a ref, a
/// link or a marker, which `scan_cache_dir` would list as a ref or a file. The cleanup pass
/// removes those of dead writers past the grace hour, keeps a live writer's and fresh ones,
/// and the scan never counts them.
#[test]
fn temp_files_of_interrupted_writes_are_cleaned_and_never_taken_for_refs_or_files() {
    use model_cache::index::Index;
    use model_cache::policy::CachePolicy;
    use model_cache::policy::cleanup::Janitor;
    use std::collections::HashSet;

    let (dir, cache, repo) = setup();
    let data_dir = dir.path().join("data");
    let index = Index::open(&data_dir).unwrap();
    let etag = put_blob(&repo, b"hello");
    repo.link(COMMIT, &rel("config.json"), &etag).unwrap();
    repo.write_ref("main", COMMIT).unwrap();
    repo.mark_no_exist(COMMIT, &rel("missing.bin")).unwrap();
    let dead = dead_pid();
    let live = std::process::id();
    let old = Duration::from_secs(2 * 3600);
    let refs = repo.dir().join("refs");
    let snapshot = repo.snapshot_dir(COMMIT);
    let no_exist = repo.dir().join(".no_exist").join(COMMIT);

    // Left by a dead writer, two hours ago: the names earlier versions wrote in the cache, and
    // the names of `store::atomic`.
    let stale = [
        refs.join(format!(".main.{dead}.00000000deadbeef.tmp")),
        snapshot.join(format!(
            ".config.json.model-cache-{dead}-0123456789abcdef.tmp"
        )),
        no_exist.join(format!(".missing.bin.{dead}.0123456789abcdef.tmp")),
        data_dir.join(format!(
            ".preferences.json.model-cache-{dead}-fedcba9876543210.tmp"
        )),
        cache.root().join(format!(
            ".CACHEDIR.TAG.model-cache-{dead}-fedcba9876543210.tmp"
        )),
    ];
    write_aged(&stale[0], &COMMIT.as_bytes()[..12], old);
    write_aged(&stale[1], b"hello", old);
    write_aged(&stale[2], b"", old);
    write_aged(&stale[3], b"{", old);
    write_aged(&stale[4], b"Signature", old);
    // Kept: a live writer's (however old), a fresh one, and a file that is not ours.
    let kept = [
        refs.join(format!(".main.model-cache-{live}-0123456789abcdef.tmp")),
        refs.join(format!(".dev.model-cache-{dead}-0123456789abcdef.tmp")),
        data_dir.join("notes.tmp"),
    ];
    write_aged(&kept[0], COMMIT.as_bytes(), old);
    write_aged(&kept[1], COMMIT.as_bytes(), Duration::ZERO);
    write_aged(&kept[2], b"mine", old);

    let scan = cache.scan().unwrap();
    assert_eq!(
        scan.repos[0].refs.keys().collect::<Vec<_>>(),
        ["main"],
        "temp files are not refs"
    );
    let files: Vec<&str> = scan.repos[0].revisions[0]
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(files, ["config.json"], "temp files are not snapshot files");
    assert!(scan.warnings.is_empty(), "{:?}", scan.warnings);

    let janitor = Janitor::new(cache.root(), index.clone(), CachePolicy::default());
    let now = std::time::SystemTime::now();
    let no_repos = HashSet::new();
    janitor.cleanup(now, &no_repos, true).unwrap();
    assert!(
        stale.iter().all(|p| p.exists()),
        "a dry run removes nothing"
    );
    janitor.cleanup(now, &no_repos, false).unwrap();
    for path in &stale {
        assert!(!path.exists(), "{} was left", path.display());
    }
    for path in &kept {
        assert!(path.exists(), "{} was removed", path.display());
    }
    assert_eq!(repo.read_ref("main").as_deref(), Some(COMMIT));
    assert_eq!(
        std::fs::read(repo.snapshot_dir(COMMIT).join("config.json")).unwrap(),
        b"hello"
    );
    assert!(no_exist.join("missing.bin").is_file());

    // `doctor --repair` removes them too.
    let again = refs.join(format!(".main.model-cache-{dead}-0000000000000001.tmp"));
    write_aged(&again, b"", old);
    let report = model_cache::doctor::run(&cache, &index, true).unwrap();
    assert!(report.removed.contains(&again), "{:?}", report.removed);
    assert!(!again.exists());
    assert!(kept.iter().all(|p| p.exists()));
}

/// Today's token and preferences writers used a predictable temp name (`.token.<pid>.tmp`)
/// opened without `O_EXCL`: a symlink planted there was written through. The atomic writer
/// never opens an existing entry.
#[test]
fn atomic_writers_never_write_through_a_symlink_at_a_temp_name() {
    use model_cache::Token;
    use model_cache::engine::Preferences;
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"untouched").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pid = std::process::id();
    for name in [
        format!(".token.{pid}.tmp"),
        format!(".preferences.json.{pid}.tmp"),
    ] {
        std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
    }

    let token = dir.path().join("token");
    model_cache::secret::write_token_file(&token, Some(&Token::new("hf_secret").unwrap())).unwrap();
    Preferences::default().save(dir.path()).unwrap();

    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let meta = std::fs::symlink_metadata(&token).unwrap();
    assert!(meta.is_file(), "the token is a file of its own, not a link");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&token).unwrap(), b"hf_secret");
    let prefs = Preferences::path(dir.path());
    assert!(std::fs::symlink_metadata(&prefs).unwrap().is_file());
    assert_eq!(
        Preferences::load(dir.path()).unwrap(),
        Preferences::default()
    );
}

/// A write that fails at any step leaves no temp file behind, and nor does one that succeeds.
#[test]
fn atomic_writes_leave_no_temp_file_after_success_or_failure() {
    use model_cache::Token;
    use model_cache::engine::Preferences;

    let (dir, _cache, repo) = setup();
    let etag = put_blob(&repo, b"hello");
    repo.link(COMMIT, &rel("sub/config.json"), &etag).unwrap();
    repo.link(COMMIT, &rel("sub/config.json"), &put_blob(&repo, b"other"))
        .unwrap();
    repo.write_ref("main", COMMIT).unwrap();
    repo.write_ref("main", COMMIT2).unwrap();
    repo.mark_no_exist(COMMIT, &rel("a/missing.bin")).unwrap();
    let data_dir = dir.path().join("data");
    Preferences::default().save(&data_dir).unwrap();
    Preferences::default().save(&data_dir).unwrap();
    let token = Token::new("hf_secret").unwrap();
    model_cache::secret::write_token_file(&data_dir.join("token"), Some(&token)).unwrap();
    assert_eq!(temp_entries(dir.path()), Vec::<String>::new());

    // The rename fails: a non-empty folder stands where each file goes.
    for blocked in [
        repo.dir().join("refs/dev/x"),
        data_dir.join("elsewhere/preferences.json/x"),
        data_dir.join("token-dir/x"),
    ] {
        std::fs::create_dir_all(&blocked).unwrap();
    }
    let err = repo.write_ref("dev", COMMIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    let err = Preferences::default()
        .save(&data_dir.join("elsewhere"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Preferences);
    model_cache::secret::write_token_file(&data_dir.join("token-dir"), Some(&token)).unwrap_err();
    assert_eq!(temp_entries(dir.path()), Vec::<String>::new());
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

/// Where symlinks are refused (Windows without Developer Mode, a FAT drive), a snapshot file is
/// a regular file with the blob's bytes, as `huggingface_hub` falls back: the blob stays in
/// `blobs/` (a hard link here, so the bytes are on disk once), linking again changes nothing,
/// a new blob replaces the file, and the cache reads as usual.
#[test]
fn without_symlinks_a_snapshot_file_holds_the_blobs_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = HubCache::new(dir.path().join("hub")).with_link_mode(LinkMode::Copy);
    assert_eq!(cache.link_mode(), LinkMode::Copy);
    let repo = cache.repo(&RepoId::model("org/tiny").unwrap());
    repo.ensure_dirs().unwrap();
    let first = put_blob(&repo, b"first bytes");
    let second = put_blob(&repo, b"second");
    let file = rel("sub/model.gguf");

    let path = repo.link(COMMIT, &file, &first).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_file(), "a regular file, not a symlink");
    assert_eq!(std::fs::read(&path).unwrap(), b"first bytes");
    assert_eq!(
        std::fs::read(repo.blob_path(&first)).unwrap(),
        b"first bytes"
    );
    assert_eq!(
        repo.lookup_cached(COMMIT, "sub/model.gguf"),
        CachedLookup::Found(path.clone())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let blob = std::fs::metadata(repo.blob_path(&first)).unwrap();
        assert_eq!(meta.ino(), blob.ino(), "a hard link: no second copy");
        repo.link(COMMIT, &file, &first).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            meta.ino(),
            "linking again keeps the file"
        );
    }
    let scan = cache.scan().unwrap();
    assert!(scan.warnings.is_empty(), "{:?}", scan.warnings);
    // Off unix a file has no identity the store can read: the hard link counts as a file.
    #[cfg(unix)]
    assert_eq!(scan.size_on_disk, 11 + 6, "each blob counted once");

    repo.link(COMMIT, &file, &second).unwrap();
    assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    assert_eq!(
        std::fs::read(repo.blob_path(&first)).unwrap(),
        b"first bytes"
    );
}

/// A snapshot file made as a copy (a hard link was refused) with the blob's bytes is kept when
/// linked again, and replaced when its bytes differ.
#[test]
fn without_symlinks_a_copy_with_other_bytes_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = HubCache::new(dir.path().join("hub")).with_link_mode(LinkMode::Copy);
    let repo = cache.repo(&RepoId::model("org/tiny").unwrap());
    repo.ensure_dirs().unwrap();
    let etag = put_blob(&repo, b"the bytes");
    let path = repo.snapshot_dir(COMMIT).join("model.bin");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"the bytes").unwrap();
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    repo.link(COMMIT, &rel("model.bin"), &etag).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before
    );
    std::fs::write(&path, b"tampered!").unwrap();
    repo.link(COMMIT, &rel("model.bin"), &etag).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"the bytes");
}

/// Off Windows the probe finds symlinks (a drive without them is found at the first link);
/// the default cache links with them.
#[cfg(not(windows))]
#[test]
fn symlinks_are_the_default_mode() {
    let (_dir, cache, repo) = setup();
    assert_eq!(cache.link_mode(), LinkMode::Symlink);
    let etag = put_blob(&repo, b"x");
    let path = repo.link(COMMIT, &rel("x.bin"), &etag).unwrap();
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
