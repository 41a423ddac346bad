//! Eviction and cleanup over a real hub-cache layout: least recently used first (our own
//! record, else file times the test sets), a variant at a time where a revision holds several,
//! pinned models never, dry runs that list exactly what
//! the real run removes, the index kept consistent, and background cleanup by the scheduler.

mod scheduler_support;

use std::collections::HashSet;
use std::fs::{self, File, FileTimes};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use model_cache::RepoId;
use model_cache::index::Index;
use model_cache::index::queue::QueueState;
use model_cache::policy::cleanup::Janitor;
use model_cache::policy::evict::{EvictionGoal, LastUsedSource};
use model_cache::policy::{CachePolicy, PolicyError, ReservePolicy};
use model_cache::scheduler::{Probes, SchedulerEvent};
use scheduler_support::*;

const DAY: Duration = Duration::from_secs(86_400);

fn commit_of(name: &str) -> String {
    let mut hex = String::new();
    for b in name.bytes().cycle().take(20) {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// Writes `repo` into the cache the way `huggingface_hub` does (one blob of `size` bytes linked
/// from `snapshots/{commit}/model.gguf`, `refs/main`), with the blob's access and modification
/// times set `age` in the past.
fn put_model(root: &Path, repo: &str, size: u64, age: Duration) -> String {
    let id = RepoId::model(repo).unwrap();
    let dir = root.join(id.folder_name());
    let commit = commit_of(repo);
    let etag = format!("{:0>64}", hex_of(repo));
    fs::create_dir_all(dir.join("blobs")).unwrap();
    fs::create_dir_all(dir.join("refs")).unwrap();
    fs::create_dir_all(dir.join("snapshots").join(&commit)).unwrap();
    let blob = dir.join("blobs").join(&etag);
    fs::write(&blob, vec![7u8; size as usize]).unwrap();
    std::os::unix::fs::symlink(
        format!("../../blobs/{etag}"),
        dir.join("snapshots").join(&commit).join("model.gguf"),
    )
    .unwrap();
    fs::write(dir.join("refs/main"), &commit).unwrap();
    let when = SystemTime::now() - age;
    File::options()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_times(FileTimes::new().set_accessed(when).set_modified(when))
        .unwrap();
    commit
}

/// Writes `repo` like [`put_model`], but its blob is a hard link to the blob of `from` (the same
/// etag): what the downloader does when a second repo needs a blob the cache already holds.
fn put_linked_model(root: &Path, repo: &str, from: &str) -> String {
    let dir = root.join(model(repo).folder_name());
    let commit = commit_of(repo);
    let etag = format!("{:0>64}", hex_of(from));
    fs::create_dir_all(dir.join("blobs")).unwrap();
    fs::create_dir_all(dir.join("refs")).unwrap();
    fs::create_dir_all(dir.join("snapshots").join(&commit)).unwrap();
    fs::hard_link(
        root.join(model(from).folder_name())
            .join("blobs")
            .join(&etag),
        dir.join("blobs").join(&etag),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        format!("../../blobs/{etag}"),
        dir.join("snapshots").join(&commit).join("model.gguf"),
    )
    .unwrap();
    fs::write(dir.join("refs/main"), &commit).unwrap();
    commit
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn present(root: &Path, repo: &str) -> bool {
    root.join(RepoId::model(repo).unwrap().folder_name())
        .exists()
}

fn model(repo: &str) -> RepoId {
    RepoId::model(repo).unwrap()
}

/// Five models of 1000 bytes: `o/used` has the oldest files but was used through our interfaces
/// an hour ago; `o/pinned` is old and pinned.
fn five_models(root: &Path, index: &Index) {
    put_model(root, "o/used", 1000, 50 * DAY);
    put_model(root, "o/pinned", 1000, 40 * DAY);
    put_model(root, "o/oldest", 1000, 30 * DAY);
    put_model(root, "o/old", 1000, 20 * DAY);
    put_model(root, "o/recent", 1000, DAY);
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    index
        .touch_at(
            &model("o/used"),
            hour_ago.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64,
        )
        .unwrap();
    index.pin(&model("o/pinned"), None).unwrap();
}

#[test]
fn budget_eviction_removes_exactly_the_least_recently_used_unpinned_models() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let index = Index::open(&dir.path().join("data")).unwrap();
    five_models(&root, &index);
    let janitor = Janitor::new(
        &root,
        index.clone(),
        CachePolicy {
            budget: Some(3000),
            ..CachePolicy::default()
        },
    );
    assert_eq!(janitor.storage().unwrap().used, 5000);
    assert_eq!(janitor.storage().unwrap().alert, Some(95));
    assert_eq!(janitor.storage().unwrap().percent_of_budget, Some(166));
    // Far over budget, the true figure (it once stopped at 255).
    let tiny = Janitor::new(
        &root,
        index.clone(),
        CachePolicy {
            budget: Some(80),
            ..CachePolicy::default()
        },
    );
    assert_eq!(tiny.storage().unwrap().percent_of_budget, Some(6250));

    // The dry run names what goes, oldest first, and touches nothing.
    let dry = janitor
        .cleanup(SystemTime::now(), &HashSet::new(), true)
        .unwrap();
    let plan = dry.eviction.clone().expect("over budget");
    let planned: Vec<&str> = plan.evictions.iter().map(|e| e.repo.id.as_str()).collect();
    assert_eq!(planned, ["o/oldest", "o/old"]);
    assert!(
        plan.evictions
            .iter()
            .all(|e| e.last_used_source == LastUsedSource::FileTimes && e.bytes_freed == 1000)
    );
    assert_eq!(dry.bytes_after, 3000);
    for repo in ["o/used", "o/pinned", "o/oldest", "o/old", "o/recent"] {
        assert!(present(&root, repo), "dry run removed {repo}");
    }

    let done = janitor
        .cleanup(SystemTime::now(), &HashSet::new(), false)
        .unwrap();
    assert_eq!(
        done.eviction, dry.eviction,
        "the real run does what the dry run said"
    );
    assert_eq!(done.bytes_after, 3000);
    assert!(!present(&root, "o/oldest"));
    assert!(!present(&root, "o/old"));
    for repo in ["o/used", "o/pinned", "o/recent"] {
        assert!(present(&root, repo), "{repo} must stay");
    }
    // The index forgot the evicted repos, kept the others and the pin.
    let known: Vec<String> = index
        .repos()
        .unwrap()
        .into_iter()
        .map(|r| r.repo.id)
        .collect();
    assert!(!known.contains(&"o/oldest".to_string()));
    assert!(index.is_pinned(&model("o/pinned")).unwrap());
    assert_eq!(janitor.storage().unwrap().alert, Some(95), "3000 of 3000");

    // Under budget now: nothing more goes.
    let again = janitor
        .cleanup(SystemTime::now(), &HashSet::new(), false)
        .unwrap();
    assert!(again.eviction.is_none());
}

#[test]
fn protected_and_pinned_models_are_never_planned_and_removal_respects_pins() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let index = Index::open(&dir.path().join("data")).unwrap();
    five_models(&root, &index);
    let janitor = Janitor::new(&root, index.clone(), CachePolicy::default());
    let protected: HashSet<RepoId> = [model("o/oldest")].into();
    let plan = janitor
        .plan(EvictionGoal::Free { bytes: 10_000 }, &protected)
        .unwrap();
    let planned: Vec<&str> = plan.evictions.iter().map(|e| e.repo.id.as_str()).collect();
    assert_eq!(planned, ["o/old", "o/recent", "o/used"]);
    assert!(!plan.satisfied);
    assert_eq!(plan.bytes_freed, 3000);

    let err = janitor
        .remove(&model("o/pinned"), None, false, false)
        .unwrap_err();
    assert!(matches!(err, PolicyError::Pinned { .. }), "{err}");
    assert!(present(&root, "o/pinned"));
    let dry = janitor
        .remove(&model("o/old"), Some("main"), false, true)
        .unwrap();
    assert_eq!(dry.bytes_freed, 1000);
    assert!(present(&root, "o/old"));
    let removed = janitor
        .remove(&model("o/old"), Some("main"), false, false)
        .unwrap();
    assert_eq!(removed.bytes_freed, 1000);
    assert!(!present(&root, "o/old"));
    assert!(matches!(
        janitor.remove(&model("o/old"), None, false, false),
        Err(PolicyError::NotCached { .. })
    ));
}

#[test]
fn stale_partial_files_and_unreferenced_blobs_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let index = Index::open(&dir.path().join("data")).unwrap();
    put_model(&root, "o/m", 100, DAY);
    let blobs = root.join("models--o--m/blobs");
    let stale = blobs.join("aaaa.incomplete");
    let fresh = blobs.join("bbbb.incomplete");
    let orphan = blobs.join("cccc");
    for (path, age) in [
        (&stale, 10 * DAY),
        (&fresh, Duration::ZERO),
        (&orphan, 2 * DAY),
    ] {
        fs::write(path, b"partial").unwrap();
        let when = SystemTime::now() - age;
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_times(FileTimes::new().set_accessed(when).set_modified(when))
            .unwrap();
    }
    let janitor = Janitor::new(&root, index, CachePolicy::default());
    let report = janitor
        .cleanup(SystemTime::now(), &HashSet::new(), false)
        .unwrap();
    assert_eq!(report.stale_incomplete.paths, std::slice::from_ref(&stale));
    assert_eq!(
        report.unreferenced_blobs.paths,
        std::slice::from_ref(&orphan)
    );
    assert!(!stale.exists() && !orphan.exists());
    assert!(fresh.exists(), "a partial file in use recently stays");
    assert!(
        snapshot_of(&root, "o/m")
            .unwrap()
            .join("model.gguf")
            .exists(),
        "linked blobs stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scheduler_evicts_to_make_room_and_cleans_up_over_budget_in_the_background() {
    // The volume: what the cache holds plus a little, so the new model fits only once the least
    // recently used unpinned model is gone. No reserve, to keep the arithmetic plain.
    let rig = rig(vec![model_repo("t/new", MODEL_SIZE, 11)], |config| {
        config.policy.reserve = ReservePolicy::NONE;
        config.policy.evict_to_make_room = true;
    })
    .await;
    let root = rig.hub_cache().to_path_buf();
    let old = MODEL_SIZE;
    put_model(&root, "o/pinned", old, 40 * DAY);
    put_model(&root, "o/oldest", old, 30 * DAY);
    put_model(&root, "o/recent", old, DAY);
    rig.index.pin(&model("o/pinned"), None).unwrap();
    rig.scheduler.shutdown();

    let capacity = 3 * old + old / 2;
    let probes = Probes {
        power: Arc::new(rig.power.clone()),
        disk: Arc::new(CacheSizedDisk {
            root: root.clone(),
            capacity,
        }),
        clock: Arc::new(rig.clock.clone()),
        changes: rig.changes.clone(),
        watch_every: None,
    };
    let mut config = model_cache::scheduler::SchedulerConfig::new(root.clone());
    config.policy.reserve = ReservePolicy::NONE;
    config.policy.evict_to_make_room = true;
    let (scheduler, _index) = start_scheduler(&rig.settings, config, probes);
    let mut events = scheduler.subscribe();
    let job = scheduler.enqueue(job_for("t/new")).unwrap();
    wait_state(&scheduler, job.id, QueueState::Done).await;
    assert!(!present(&root, "o/oldest"), "evicted to make room");
    assert!(present(&root, "o/pinned"));
    assert!(present(&root, "o/recent"));
    let mut evicted = None;
    while let Ok(event) = events.try_recv() {
        if let SchedulerEvent::Evicted { for_job, plan } = event {
            evicted = Some((for_job, plan));
        }
    }
    let (for_job, plan) = evicted.expect("an eviction event says which models went");
    assert_eq!(for_job, Some(job.id));
    let names: Vec<&str> = plan.evictions.iter().map(|e| e.repo.id.as_str()).collect();
    assert_eq!(names, ["o/oldest"]);

    // A budget below what is cached now: the background cleanup evicts `o/recent` (older than
    // the model just downloaded, which counts as used now) and keeps the pinned one.
    scheduler.set_cache_policy(CachePolicy {
        budget: Some(2 * old + old / 2),
        ..CachePolicy::default()
    });
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while present(&root, "o/recent") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "background cleanup never ran"
        );
        rig.changes.notify();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(present(&root, "o/pinned"));
    assert!(snapshot_of(&root, "t/new").is_some());
    let health = scheduler.health().unwrap();
    assert!(
        health.storage.used <= 2 * old + old / 2 + 10_000,
        "{health:#?}"
    );
    assert_eq!(health.jobs.get("done"), Some(&1));
    scheduler.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_revisions_go_when_a_newer_one_completes_if_the_user_asked() {
    let rig = rig(vec![model_repo("t/evolving", 300_000, 51)], |config| {
        config.cache_policy.prune_old_revisions = true;
    })
    .await;
    let first = rig.scheduler.enqueue(job_for("t/evolving")).unwrap();
    wait_state(&rig.scheduler, first.id, QueueState::Done).await;
    let old_snapshot = snapshot_of(rig.hub_cache(), "t/evolving").unwrap();
    let old_blob = fs::canonicalize(old_snapshot.join("model.gguf")).unwrap();
    let config_blob = fs::canonicalize(old_snapshot.join("config.json")).unwrap();

    // Upstream moves on: the model file changes, the config stays the same.
    rig.emulator
        .change_file(
            hub_emulator::RepoKind::Model,
            "t/evolving",
            "main",
            "model.gguf",
        )
        .unwrap();
    let second = rig.scheduler.enqueue(job_for("t/evolving")).unwrap();
    wait_state(&rig.scheduler, second.id, QueueState::Done).await;

    let new_snapshot = snapshot_of(rig.hub_cache(), "t/evolving").unwrap();
    assert_ne!(new_snapshot, old_snapshot);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    // Links go first, then the blobs nothing links any more: wait for the end state.
    while old_snapshot.exists() || old_blob.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old revision was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!old_blob.exists(), "the old model blob went with it");
    assert!(
        config_blob.exists(),
        "the config blob is shared with the new revision"
    );
    assert_eq!(
        fs::canonicalize(new_snapshot.join("config.json")).unwrap(),
        config_blob
    );
    assert!(new_snapshot.join("model.gguf").exists());
}

/// A repo with three GGUF quants of one model — `Q4_K_M` split in two shards — beside a config
/// and a README every quant shares.
fn three_quants_repo(name: &str) -> hub_emulator::Repo {
    use hub_emulator::generate::{GgufSpec, LlamaFileType};
    use hub_emulator::{FileChange, Repo, RepoKind};
    let quant = |file_type, size| GgufSpec::llama("Three", file_type, size);
    let mut files = vec![
        FileChange::put("README.md", "# Three quants\n"),
        FileChange::put("config.json", "{\"model_type\": \"llama\"}\n"),
        FileChange::put(
            "three-Q2_K.gguf",
            quant(LlamaFileType::Q2_K, 300_000).build(),
        ),
        FileChange::put(
            "three-Q8_0.gguf",
            quant(LlamaFileType::Q8_0, 500_000).build(),
        ),
    ];
    for (at, part) in quant(LlamaFileType::Q4_K_M, 400_000)
        .split(2)
        .iter()
        .enumerate()
    {
        files.push(FileChange::put(
            format!("three-Q4_K_M-{:05}-of-00002.gguf", at + 1),
            part.build(),
        ));
    }
    let mut repo = Repo::new(RepoKind::Model, name);
    repo.commit("main", "Upload", files);
    repo
}

/// Checks the repo folder the way `huggingface_hub` reads it: `refs/main` names a snapshot,
/// every snapshot link resolves to a blob, and every blob is linked.
fn assert_layout_consistent(repo_dir: &Path) {
    let commit = fs::read_to_string(repo_dir.join("refs/main")).unwrap();
    let snapshot = repo_dir.join("snapshots").join(commit.trim());
    assert!(snapshot.is_dir(), "refs/main names a missing snapshot");
    let mut linked = HashSet::new();
    for entry in fs::read_dir(&snapshot).unwrap() {
        let path = entry.unwrap().path();
        let blob = fs::canonicalize(&path)
            .unwrap_or_else(|e| panic!("dangling snapshot link {}: {e}", path.display()));
        assert!(blob.starts_with(fs::canonicalize(repo_dir.join("blobs")).unwrap()));
        linked.insert(blob);
    }
    for entry in fs::read_dir(repo_dir.join("blobs")).unwrap() {
        let blob = fs::canonicalize(entry.unwrap().path()).unwrap();
        assert!(linked.contains(&blob), "unlinked blob {}", blob.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_quants_and_a_budget_for_two_lose_exactly_the_least_recently_used_quant() {
    use model_cache::download::NoReporter;
    use model_cache::engine::{Engine, EngineOptions, PullRequest};
    use model_cache::policy::usage::variant_of_file;
    use model_cache::variants::ListedFile;

    let emulator = hub_emulator::Emulator::start(hub_emulator::EmulatorConfig {
        repos: vec![three_quants_repo("q/three")],
        ..hub_emulator::EmulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(
        settings_for(dir.path(), emulator.url()),
        EngineOptions {
            run_queue: false,
            ..EngineOptions::fake(64 << 30)
        },
    )
    .unwrap();
    let repo = model("q/three");

    // Pull the shared files (a GGUF variant alone has none), then the three quants in order,
    // then use the first and the last: the middle one is the least recently used.
    let shared = PullRequest {
        files: vec!["config.json".into(), "README.md".into()],
        ..PullRequest::repo(repo.clone())
    };
    let shared = engine.plan_pull(&shared).await.unwrap();
    engine
        .download(&shared, Arc::new(NoReporter))
        .wait()
        .await
        .unwrap();
    let mut pulled = Vec::new();
    for quant in ["Q2_K", "Q4_K_M", "Q8_0"] {
        let plan = engine
            .plan_pull(&PullRequest {
                variant: Some(quant.into()),
                ..PullRequest::repo(repo.clone())
            })
            .await
            .unwrap();
        engine
            .download(&plan, Arc::new(NoReporter))
            .wait()
            .await
            .unwrap();
        pulled.push(plan);
    }
    let q2 = engine.path(&repo, "main", "three-Q2_K.gguf").unwrap();
    let q8 = engine.path(&repo, "main", "three-Q8_0.gguf").unwrap();
    let snapshot = q2.parent().unwrap().to_path_buf();
    let shards: Vec<_> = pulled[1]
        .files
        .iter()
        .map(|f| snapshot.join(&f.path))
        .collect();
    assert_eq!(shards.len(), 2, "{:?}", pulled[1].files);
    let shard_blobs: Vec<_> = shards
        .iter()
        .map(|s| fs::canonicalize(s).unwrap())
        .collect();
    let q4_bytes: u64 = pulled[1].files.iter().map(|f| f.size).sum();
    let listing: Vec<ListedFile> = pulled.iter().flat_map(|p| p.files.clone()).collect();
    let q4_id = variant_of_file(&listing, &pulled[1].files[0].path)
        .unwrap()
        .id;

    // A budget for two quants and the shared files.
    let used = engine.health().unwrap().storage.used;
    let budget = used - q4_bytes;
    let dry = engine.gc(Some(budget), true).unwrap();
    let plan = dry.eviction.clone().expect("over budget");
    let planned: Vec<_> = plan
        .evictions
        .iter()
        .map(|e| (e.variant.as_deref(), e.last_used_source, e.bytes_freed))
        .collect();
    assert_eq!(
        planned,
        [(Some(q4_id.as_str()), LastUsedSource::Variant, q4_bytes)]
    );
    assert!(
        shards.iter().all(|s| s.exists()),
        "a dry run removes nothing"
    );

    let done = engine.gc(Some(budget), false).unwrap();
    assert_eq!(
        done.eviction, dry.eviction,
        "the real run does what the dry run said"
    );
    assert_eq!(done.bytes_after, budget);
    for (shard, blob) in shards.iter().zip(&shard_blobs) {
        assert!(fs::symlink_metadata(shard).is_err(), "{shard:?} stays");
        assert!(!blob.exists(), "{blob:?} stays");
    }
    for kept in [
        q2.clone(),
        q8.clone(),
        snapshot.join("config.json"),
        snapshot.join("README.md"),
    ] {
        assert!(kept.is_file(), "{kept:?} was removed");
    }
    assert_layout_consistent(snapshot.parent().unwrap().parent().unwrap());
    let recorded: Vec<String> = engine
        .index()
        .variant_uses()
        .unwrap()
        .into_iter()
        .map(|u| u.variant)
        .collect();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(
        !recorded.contains(&q4_id),
        "the evicted quant's use is forgotten"
    );

    // Within budget now; a smaller one takes the next least recently used quant, then the
    // last one takes the shared files and the repo folder with it.
    assert!(engine.gc(Some(budget), false).unwrap().eviction.is_none());
    engine.gc(Some(budget - 1), false).unwrap();
    assert!(!q2.exists() && q8.is_file() && snapshot.join("config.json").is_file());
    assert_layout_consistent(snapshot.parent().unwrap().parent().unwrap());
    engine.gc(Some(0), false).unwrap();
    assert!(!present(&root_of(&snapshot), "q/three"));
    engine.shutdown();
    emulator.shutdown().await;
}

/// The hub-cache root of a snapshot folder (`<root>/models--o--n/snapshots/<commit>`).
fn root_of(snapshot: &Path) -> std::path::PathBuf {
    snapshot.ancestors().nth(3).unwrap().to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_records_the_use_of_the_variants_it_fetched() {
    let rig = rig(vec![three_quants_repo("q/queued")], |_| {}).await;
    let mut only_q8 = job_for("q/queued");
    only_q8.selection.include = vec!["three-Q8_0.gguf".into(), "config.json".into()];
    let job = rig.scheduler.enqueue(only_q8).unwrap();
    wait_state(&rig.scheduler, job.id, QueueState::Done).await;
    let uses = rig.index.variant_uses().unwrap();
    let names: Vec<&str> = uses.iter().map(|u| u.variant.as_str()).collect();
    assert_eq!(names, ["gguf:three-Q8_0"]);
    assert_eq!(
        rig.index.last_used(&model("q/queued")).unwrap(),
        Some(uses[0].last_used),
        "the repo and its variant are stamped together"
    );
    rig.scheduler.shutdown();
}

/// The device and inode of the file a path resolves to.
fn inode_of(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).unwrap();
    (meta.dev(), meta.ino())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_blobs_count_once() {
    use model_cache::download::NoReporter;
    use model_cache::engine::{Engine, EngineOptions, PullRequest};

    // Two repos with the same model file (same seed, same bytes, same etag) and their own
    // configs: the second pull hard-links the first repo's blob instead of downloading it.
    let emulator = hub_emulator::Emulator::start(hub_emulator::EmulatorConfig {
        repos: vec![
            model_repo("s/first", MODEL_SIZE, 7),
            model_repo("s/second", MODEL_SIZE, 7),
        ],
        ..hub_emulator::EmulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(
        settings_for(dir.path(), emulator.url()),
        EngineOptions {
            run_queue: false,
            ..EngineOptions::fake(64 << 30)
        },
    )
    .unwrap();
    let mut config_bytes = Vec::new();
    for name in ["s/first", "s/second"] {
        let plan = engine
            .plan_pull(&PullRequest::repo(model(name)))
            .await
            .unwrap();
        engine
            .download(&plan, Arc::new(NoReporter))
            .wait()
            .await
            .unwrap();
        config_bytes.push(
            plan.files
                .iter()
                .find(|f| f.path == "config.json")
                .unwrap()
                .size,
        );
    }
    let root = dir.path().join("hub");
    let first = snapshot_of(&root, "s/first").unwrap().join("model.gguf");
    let second = snapshot_of(&root, "s/second").unwrap().join("model.gguf");
    assert_eq!(
        inode_of(&first),
        inode_of(&second),
        "the second repo's blob is a hard link to the first's"
    );

    // The cache holds one model file and two configs, whichever way it is measured.
    let on_disk = MODEL_SIZE + config_bytes[0] + config_bytes[1];
    assert_eq!(engine.health().unwrap().storage.used, on_disk);
    let listed = engine.cache_list().unwrap();
    let sizes: Vec<(&str, u64)> = listed
        .iter()
        .map(|r| (r.repo.as_str(), r.size_bytes))
        .collect();
    assert_eq!(
        sizes,
        [
            ("s/first", MODEL_SIZE + config_bytes[0]),
            ("s/second", MODEL_SIZE + config_bytes[1]),
        ],
        "each repo holds the model file"
    );
    assert_eq!(
        model_cache::store::HubCache::new(&root)
            .scan()
            .unwrap()
            .size_on_disk,
        on_disk,
        "the store's scan (what doctor reports) counts it once too"
    );
    // A budget of exactly what is on disk is not exceeded.
    assert!(engine.gc(Some(on_disk), true).unwrap().eviction.is_none());

    // Removing the first repo frees its config, not the model file the second still holds.
    let dry = engine.delete(&model("s/first"), None, false, true).unwrap();
    assert_eq!(dry.bytes_freed, config_bytes[0]);
    let done = engine
        .delete(&model("s/first"), None, false, false)
        .unwrap();
    assert_eq!(done.bytes_freed, config_bytes[0]);
    assert!(second.is_file());
    assert_eq!(
        engine.health().unwrap().storage.used,
        MODEL_SIZE + config_bytes[1]
    );
    // The last link frees the file.
    let last = engine
        .delete(&model("s/second"), None, false, false)
        .unwrap();
    assert_eq!(last.bytes_freed, MODEL_SIZE + config_bytes[1]);
    assert_eq!(engine.health().unwrap().storage.used, 0);
    engine.shutdown();
    emulator.shutdown().await;
}

#[test]
fn evicting_a_repo_whose_blob_is_hard_linked_elsewhere_frees_nothing_and_evicts_the_next() {
    // `o/shared-old` is the least recently used model, but its blob is hard-linked into
    // `o/shared-new`, used an hour ago: evicting it frees nothing. `o/middle` is next.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let index = Index::open(&dir.path().join("data")).unwrap();
    put_model(&root, "o/shared-old", 1000, 30 * DAY);
    put_linked_model(&root, "o/shared-new", "o/shared-old");
    put_model(&root, "o/middle", 1000, 20 * DAY);
    put_model(&root, "o/recent", 1000, DAY);
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    index
        .touch_at(
            &model("o/shared-new"),
            hour_ago.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64,
        )
        .unwrap();
    let janitor = Janitor::new(
        &root,
        index.clone(),
        CachePolicy {
            budget: Some(2500),
            ..CachePolicy::default()
        },
    );
    assert_eq!(janitor.storage().unwrap().used, 3000);

    // Room for a download: the planner passes over the shared model and takes the next one.
    let plan = janitor
        .plan(EvictionGoal::Free { bytes: 500 }, &HashSet::new())
        .unwrap();
    let planned: Vec<(&str, u64)> = plan
        .evictions
        .iter()
        .map(|e| (e.repo.id.as_str(), e.bytes_freed))
        .collect();
    assert_eq!(planned, [("o/middle", 1000)]);
    assert!(plan.satisfied);

    // The budget: the same, and the real run frees what the dry run said.
    let dry = janitor
        .cleanup(SystemTime::now(), &HashSet::new(), true)
        .unwrap();
    let dry_plan = dry.eviction.clone().expect("over budget");
    let planned: Vec<&str> = dry_plan
        .evictions
        .iter()
        .map(|e| e.repo.id.as_str())
        .collect();
    assert_eq!(planned, ["o/middle"]);
    assert_eq!(dry.bytes_after, 2000);
    let done = janitor
        .cleanup(SystemTime::now(), &HashSet::new(), false)
        .unwrap();
    assert_eq!(done.eviction, dry.eviction);
    assert_eq!(done.bytes_after, 2000);
    assert!(!present(&root, "o/middle"));
    for repo in ["o/shared-old", "o/shared-new", "o/recent"] {
        assert!(present(&root, repo), "{repo} must stay");
    }

    // Asked for more than the unshared models hold, the planner takes both holders of the
    // shared file (the older first, freeing nothing on its own) rather than claiming it twice.
    let plan = janitor
        .plan(EvictionGoal::Free { bytes: 1500 }, &HashSet::new())
        .unwrap();
    let planned: Vec<(&str, u64)> = plan
        .evictions
        .iter()
        .map(|e| (e.repo.id.as_str(), e.bytes_freed))
        .collect();
    assert_eq!(
        planned,
        [
            ("o/recent", 1000),
            ("o/shared-old", 0),
            ("o/shared-new", 1000)
        ]
    );
    let removed = janitor.evict(&plan).unwrap();
    assert_eq!(removed.bytes_freed, 2000, "the plan's figure, for real");
    assert_eq!(janitor.storage().unwrap().used, 0);

    // A holder that cannot go (pinned) keeps the file: the other holder is never planned.
    put_model(&root, "o/shared-old", 1000, 30 * DAY);
    put_linked_model(&root, "o/shared-new", "o/shared-old");
    index.pin(&model("o/shared-new"), None).unwrap();
    let plan = janitor
        .plan(EvictionGoal::Free { bytes: 1 }, &HashSet::new())
        .unwrap();
    assert!(plan.evictions.is_empty(), "{plan:#?}");
    assert!(!plan.satisfied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_does_not_fit_names_what_would_go_and_evicts_only_with_consent() {
    use model_cache::download::NoReporter;
    use model_cache::engine::{Engine, EngineOptions, PullRequest};
    use model_cache::policy::{DiskSpace, FakeDisk};

    const GIB: u64 = 1 << 30;
    let emulator = hub_emulator::Emulator::start(hub_emulator::EmulatorConfig {
        repos: vec![three_quants_repo("r/old"), three_quants_repo("r/new")],
        ..hub_emulator::EmulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut probes = Probes::fake();
    let disk = FakeDisk::new(
        DiskSpace {
            total: 1000 * GIB,
            available: 900 * GIB,
        },
        probes.changes.clone(),
    );
    probes.disk = Arc::new(disk.clone());
    let engine = Engine::open(
        settings_for(dir.path(), emulator.url()),
        EngineOptions {
            run_queue: false,
            probes,
            ..EngineOptions::fake(64 << 30)
        },
    )
    .unwrap();
    let hub = dir.path().join("hub");
    let plan_of = |repo: &str| {
        let request = PullRequest {
            variant: Some("Q8_0".into()),
            ..PullRequest::repo(model(repo))
        };
        let engine = engine.clone();
        async move { engine.plan_pull(&request).await.unwrap() }
    };
    let old = plan_of("r/old").await;
    engine
        .download(&old, Arc::new(NoReporter))
        .wait()
        .await
        .unwrap();
    let new = plan_of("r/new").await;

    // Room on the disk and no budget: nothing to ask.
    let room = engine.room_for(&new).unwrap();
    assert!(room.fits && room.evictions.is_empty(), "{room:?}");
    assert_eq!(room.needed, new.total_bytes);
    assert_eq!(room.used, None, "no budget: the cache is not measured");
    let used = engine.scheduler().janitor().storage().unwrap().used;
    assert!(used >= old.total_bytes);

    // A budget one byte too small, without background cleanup: the user is asked, and told
    // exactly what would go.
    let scheduler = engine.scheduler();
    scheduler.set_cache_policy(CachePolicy {
        budget: Some(used + room.needed - 1),
        auto_cleanup: false,
        ..CachePolicy::default()
    });
    let room = engine.room_for(&new).unwrap();
    assert!(!room.fits && !room.consent, "{room:?}");
    assert_eq!((room.over_budget_by, room.disk_short), (1, 0));
    assert!(room.evictions_enough);
    let keys: Vec<String> = room.evictions.iter().map(|e| e.key.clone()).collect();
    assert_eq!(room.evictions.len(), 1, "{room:?}");
    assert_eq!(room.evictions[0].repo, "r/old");
    assert!(room.evictions[0].bytes_freed >= 1);
    assert!(present(&hub, "r/old"), "asking removes nothing");

    // A consent that does not cover what the eviction takes is refused, removing nothing.
    let error = engine
        .make_room(&new, &["r/other@0000".to_string()])
        .unwrap_err();
    assert_eq!(error.kind(), model_cache::error::ErrorKind::Policy);
    assert!(error.to_string().contains("r/old"), "{error}");
    assert!(present(&hub, "r/old"));

    // With the consent: exactly that goes, announced like any eviction.
    let mut events = scheduler.subscribe();
    let freed = engine.make_room(&new, &keys).unwrap();
    assert!(freed >= room.over_budget_by);
    assert!(!present(&hub, "r/old"));
    let announced = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(SchedulerEvent::Evicted {
                for_job: None,
                plan,
            }) = events.recv().await
            {
                return plan;
            }
        }
    })
    .await
    .expect("an Evicted event");
    assert_eq!(announced.evictions.len(), 1);
    assert!(engine.room_for(&new).unwrap().fits);

    // Background cleanup on: the setting is the consent, nothing to ask.
    scheduler.set_cache_policy(CachePolicy {
        budget: Some(1),
        auto_cleanup: true,
        ..CachePolicy::default()
    });
    let room = engine.room_for(&new).unwrap();
    assert!(!room.fits && room.consent, "{room:?}");

    // Short on disk: the figures, and "evict to make room" is that setting's consent.
    scheduler.set_cache_policy(CachePolicy::default());
    let policy = scheduler.policy();
    let reserve = policy.reserve.reserve_bytes(1000 * GIB);
    disk.set_available(reserve + room.needed / 2);
    let room = engine.room_for(&new).unwrap();
    assert!(!room.fits && !room.consent, "{room:?}");
    assert_eq!(room.reserve, reserve);
    assert_eq!(room.disk_short, room.needed - room.needed / 2);
    assert!(
        room.evictions.is_empty() && !room.evictions_enough,
        "nothing left to evict"
    );
    scheduler.set_policy(model_cache::policy::SchedulePolicy {
        evict_to_make_room: true,
        ..policy
    });
    assert!(engine.room_for(&new).unwrap().consent);
}
