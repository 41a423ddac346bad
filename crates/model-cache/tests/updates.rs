//! "A newer commit is available" end to end against the hub emulator: a cached model followed
//! on `main`, the branch moved upstream, the background check's rate limit, metered and offline
//! rounds, the one-action update (only the changed file is downloaded), and keeping a version.

use std::time::Duration;

use hub_emulator::{Emulator, EmulatorConfig, RepoKind};
use model_cache::engine::{Engine, EngineOptions, PullRequest, UpdateCheckPolicy};
use model_cache::hub::retry::RetryPolicy;
use model_cache::index::queue::QueueState;
use model_cache::scheduler::SchedulerEvent;
use model_cache::{RepoId, Settings};

const REPO: &str = "demo/tiny-gguf";
const CHANGED: &str = "tiny-model-Q2_K.gguf";

fn settings(dir: &std::path::Path, endpoint: String) -> Settings {
    let mut settings = Settings::new(dir.join("hub"), dir.join("data"));
    settings.endpoint = endpoint;
    settings.retry = RetryPolicy::immediate();
    settings.token_file = Some(dir.join("hf-home/token"));
    settings
}

async fn wait_done(engine: &Engine, id: i64) {
    let job = engine.wait_for_job(id, |j| j.state.is_terminal()).await;
    assert_eq!(job.state, QueueState::Done, "{job:?}");
}

/// Requests for the commit of `main` (what one update check of the repo asks: the repo info
/// without the file list a pull asks for).
fn revision_requests(emulator: &Emulator) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|r| {
            r.path == format!("/api/models/{REPO}/revision/main")
                && !r.query.as_deref().unwrap_or("").contains("blobs")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_branch_is_found_updated_in_one_action_or_kept() {
    let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(
        settings(dir.path(), emulator.url()),
        EngineOptions::fake(1 << 36),
    )
    .unwrap();
    let repo: RepoId = REPO.parse().unwrap();
    let mut events = engine.subscribe();
    let policy = UpdateCheckPolicy {
        spacing: Duration::ZERO,
        ..UpdateCheckPolicy::default()
    };

    let plan = engine
        .plan_pull(&PullRequest {
            repo: Some(repo.clone()),
            files: vec!["README.md".into(), "config.json".into(), CHANGED.into()],
            ..PullRequest::default()
        })
        .await
        .unwrap();
    let first_commit = plan.commit.clone().unwrap();
    let job = engine.enqueue(&plan).unwrap();
    wait_done(&engine, job.id).await;

    // Up to date: one request, nothing marked.
    let report = engine.check_updates(&policy, None, false).await.unwrap();
    assert_eq!(report.checked, 1, "{report:?}");
    assert!(report.updates.is_empty(), "{report:?}");
    assert_eq!(revision_requests(&emulator), 1);

    // The branch moves upstream: only one of the three files changes.
    let new_commit = emulator
        .change_file(RepoKind::Model, REPO, "main", CHANGED)
        .unwrap();
    assert_ne!(new_commit, first_commit);

    // Rate-limited: a ref checked lately is not asked about again...
    let report = engine.check_updates(&policy, None, false).await.unwrap();
    assert_eq!((report.checked, report.recent), (0, 1), "{report:?}");
    assert!(report.updates.is_empty());
    assert_eq!(revision_requests(&emulator), 1);
    // ...nor on a metered connection (unless the user asks).
    let report = engine
        .check_updates(&policy, Some(true), false)
        .await
        .unwrap();
    assert_eq!(report.skipped.as_deref(), Some("metered"));
    assert_eq!(revision_requests(&emulator), 1);

    // Asked for: the update is found, recorded and announced once.
    let report = engine
        .check_updates(&policy, Some(true), true)
        .await
        .unwrap();
    assert_eq!(report.checked, 1);
    assert_eq!(report.updates.len(), 1, "{report:?}");
    let update = &report.updates[0];
    assert_eq!(
        (
            update.branch.as_str(),
            update.commit.as_str(),
            update.latest.as_str()
        ),
        ("main", first_commit.as_str(), new_commit.as_str())
    );
    let announced = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(SchedulerEvent::UpdatesFound { updates }) = events.recv().await {
                return updates;
            }
        }
    })
    .await
    .expect("the update is announced");
    assert_eq!(announced, report.updates);
    engine.check_updates(&policy, None, true).await.unwrap();
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, SchedulerEvent::UpdatesFound { .. }),
            "announced twice"
        );
    }
    // The cache view marks the model (as of the last check).
    let listed = engine.cache_list().unwrap();
    assert_eq!(listed[0].updates.len(), 1);
    assert_eq!(listed[0].updates[0].latest, new_commit);

    // Keep this version: the mark goes, and checks leave the branch alone.
    let held = engine.hold(&repo, "main").unwrap();
    assert_eq!(held.commit, first_commit);
    assert!(engine.updates().unwrap().is_empty());
    let before = revision_requests(&emulator);
    let report = engine.check_updates(&policy, None, true).await.unwrap();
    assert_eq!((report.checked, report.held), (0, 1));
    assert_eq!(revision_requests(&emulator), before);
    assert_eq!(engine.cache_list().unwrap()[0].held[0].commit, first_commit);
    // Following again brings the known update back without asking.
    assert!(engine.follow(&repo, "main").unwrap());
    assert_eq!(engine.updates().unwrap().len(), 1);

    // One action: the same files at the new commit; the unchanged two are already cached.
    let plan = engine.plan_update(&repo, "main").await.unwrap();
    assert_eq!(plan.commit.as_deref(), Some(new_commit.as_str()));
    assert_eq!(plan.files.len(), 3);
    let changed_size = plan.files.iter().find(|f| f.path == CHANGED).unwrap().size;
    assert_eq!(plan.cached_bytes, plan.total_bytes - changed_size);
    let served = emulator.bytes_served();
    let job = engine.update(&repo, "main").await.unwrap();
    wait_done(&engine, job.id).await;
    let fetched = emulator.bytes_served() - served;
    assert!(
        fetched >= changed_size && fetched < changed_size + 64 * 1024,
        "fetched {fetched} bytes for a {changed_size}-byte change"
    );
    assert_eq!(
        engine.cache().repo(&repo).read_ref("main").as_deref(),
        Some(new_commit.as_str())
    );
    assert!(engine.updates().unwrap().is_empty());
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_nothing_is_asked_and_the_last_finding_stays() {
    let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo: RepoId = REPO.parse().unwrap();
    {
        let engine = Engine::open(
            settings(dir.path(), emulator.url()),
            EngineOptions::fake(1 << 36),
        )
        .unwrap();
        let plan = engine
            .plan_pull(&PullRequest {
                repo: Some(repo.clone()),
                files: vec!["config.json".into()],
                ..PullRequest::default()
            })
            .await
            .unwrap();
        let job = engine.enqueue(&plan).unwrap();
        wait_done(&engine, job.id).await;
        emulator
            .change_file(RepoKind::Model, REPO, "main", "config.json")
            .unwrap();
        let report = engine
            .check_updates(&UpdateCheckPolicy::default(), None, true)
            .await
            .unwrap();
        assert_eq!(report.updates.len(), 1);
        engine.shutdown();
    }
    let mut offline = settings(dir.path(), emulator.url());
    offline.offline = true;
    let engine = Engine::open(offline, EngineOptions::fake(1 << 36)).unwrap();
    let before = revision_requests(&emulator);
    let report = engine
        .check_updates(&UpdateCheckPolicy::default(), None, true)
        .await
        .unwrap();
    assert_eq!(report.skipped.as_deref(), Some("offline"));
    assert_eq!(report.checked, 0);
    assert_eq!(report.updates.len(), 1, "the last finding is kept");
    assert_eq!(revision_requests(&emulator), before);
    engine.shutdown();
}
