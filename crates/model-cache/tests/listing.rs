//! The library listing (`Engine::cache_list`, what `mcache ls` and the app show) keeps what it
//! read of each repo folder while the folder's stamp holds, reads a folder again once another
//! tool changed it, and gives the same answer with its index deleted.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use model_cache::Settings;
use model_cache::engine::{CachedRepoView, Engine, EngineOptions};

fn open(dir: &Path) -> Engine {
    let settings = Settings::new(dir.join("hub"), dir.join("data"));
    Engine::open(
        settings,
        EngineOptions {
            run_queue: false,
            ..EngineOptions::fake(16 << 30)
        },
    )
    .expect("engine")
}

/// Adds `name` with `content` to the snapshot `commit` of `models--org--name`, as a Hub
/// client writes it (a blob and a relative link).
fn add_file(hub: &Path, commit: &str, name: &str, etag: &str, content: &[u8]) -> PathBuf {
    let repo = hub.join("models--org--name");
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::fs::write(repo.join("blobs").join(etag), content).unwrap();
    std::os::unix::fs::symlink(format!("../../blobs/{etag}"), snapshot.join(name)).unwrap();
    repo
}

/// Sets the times of `dir` and everything in it a minute back: older than the window in which
/// a folder's time is not trusted.
fn age(dir: &Path) {
    let old = SystemTime::now() - Duration::from_secs(60);
    let file = std::fs::File::open(dir).unwrap();
    file.set_modified(old).unwrap();
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            age(&entry.path());
        } else if kind.is_file() {
            std::fs::File::options()
                .write(true)
                .open(entry.path())
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
    }
    // Setting a child's time does not change its folder's; the folder is set last anyway.
    std::fs::File::open(dir).unwrap().set_modified(old).unwrap();
}

/// A revision as compared: commit, bytes, files.
type Revision = (String, u64, usize);

/// What the listing says of each repo: name, bytes, revisions.
fn summary(list: &[CachedRepoView]) -> Vec<(String, u64, Vec<Revision>)> {
    list.iter()
        .map(|r| {
            (
                r.repo.clone(),
                r.size_bytes,
                r.revisions
                    .iter()
                    .map(|v| (v.commit.clone(), v.size_bytes, v.files))
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_is_kept_until_another_tool_changes_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let commit = "c".repeat(40);
    let repo = add_file(&hub, &commit, "a.bin", &"1".repeat(40), b"four");
    age(&repo);

    let engine = open(tmp.path());
    let first = engine.cache_list().unwrap();
    assert_eq!(
        summary(&first),
        vec![("org/name".to_string(), 4, vec![(commit.clone(), 4, 1)])]
    );

    // A blob rewritten in place (no Hub client does this) changes no folder: the kept listing
    // answers, so the folder was not read again.
    std::fs::write(repo.join("blobs").join("1".repeat(40)), b"eight!!!").unwrap();
    assert_eq!(summary(&engine.cache_list().unwrap()), summary(&first));

    // Another tool adds a file: the folder is read again, and the listing shows it (and the
    // rewritten blob's size).
    add_file(&hub, &commit, "b.bin", &"2".repeat(40), b"sixteen bytes!!!");
    let second = engine.cache_list().unwrap();
    assert_eq!(
        summary(&second),
        vec![("org/name".to_string(), 24, vec![(commit.clone(), 24, 2)])]
    );

    // A second revision, and the ref moved to it by rewriting the ref file in place.
    let newer = "d".repeat(40);
    age(&repo);
    add_file(&hub, &newer, "a.bin", &"1".repeat(40), b"eight!!!");
    std::fs::write(repo.join("refs/main"), &newer).unwrap();
    let third = engine.cache_list().unwrap();
    assert_eq!(third[0].revisions.len(), 2);
    let main = third[0]
        .revisions
        .iter()
        .find(|r| r.refs == vec!["main".to_string()])
        .expect("a revision has main");
    assert_eq!(main.commit, newer);

    // The repo removed by hand: gone from the listing.
    std::fs::remove_dir_all(&repo).unwrap();
    assert!(engine.cache_list().unwrap().is_empty());
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_is_the_same_with_its_index_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let commit = "e".repeat(40);
    for i in 0..50 {
        let content = vec![b'x'; i + 1];
        add_file(
            &hub,
            &commit,
            &format!("f{i:02}.bin"),
            &format!("{:040x}", i + 1),
            &content,
        );
    }
    age(&hub.join("models--org--name"));
    let engine = open(tmp.path());
    let kept = summary(&engine.cache_list().unwrap());
    assert_eq!(kept[0].1, (1..=50).sum::<u64>());
    assert_eq!(summary(&engine.cache_list().unwrap()), kept);
    engine.shutdown();
    drop(engine);

    for entry in std::fs::read_dir(tmp.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("index.sqlite3"))
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let engine = open(tmp.path());
    assert_eq!(summary(&engine.cache_list().unwrap()), kept);
    engine.shutdown();
}
