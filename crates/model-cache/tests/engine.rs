//! The engine facade end to end against the hub emulator's demo catalog: variants with a
//! recommendation, a queued pull of the recommended variant, the cache browser, pins, deletion,
//! offline lookups, verification and preferences.

use model_cache::error::{ErrorKind, Hint};
use std::time::Duration;

use hub_emulator::{Emulator, EmulatorConfig};
use model_cache::engine::{
    Choice, Engine, EngineOptions, JobAction, Preferences, PreferencesPatch, PullRequest,
};
use model_cache::hub::retry::RetryPolicy;
use model_cache::index::queue::QueueState;
use model_cache::{RepoId, Settings};

const GIB: u64 = 1 << 30;

fn passive(ram: u64) -> EngineOptions {
    EngineOptions {
        run_queue: false,
        ..EngineOptions::fake(ram)
    }
}

fn settings(dir: &std::path::Path, endpoint: String) -> Settings {
    let mut settings = Settings::new(dir.join("hub"), dir.join("data"));
    settings.endpoint = endpoint;
    settings.retry = RetryPolicy::immediate();
    settings.limits.chunk_size = 256 * 1024;
    settings.token_file = Some(dir.join("hf-home/token"));
    settings
}

async fn wait_done(engine: &Engine, id: i64) -> model_cache::index::queue::QueueJob {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let job = engine
            .jobs()
            .unwrap()
            .into_iter()
            .find(|j| j.id == id)
            .expect("the job is listed");
        if job.state.is_terminal() {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} did not finish: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_the_recommended_variant_then_manage_the_cache() {
    let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(
        settings(dir.path(), emulator.url()),
        EngineOptions::fake(64 * GIB),
    )
    .unwrap();
    let repo: RepoId = "demo/tiny-gguf".parse().unwrap();

    let report = engine.variants(&repo, None).await.unwrap();
    assert!(report.variants.len() >= 6, "{:#?}", report.variants);
    let recommended = report
        .recommended
        .clone()
        .expect("a variant fits in 64 GiB");
    assert_eq!(
        report.variants.iter().filter(|v| v.recommended).count(),
        1,
        "exactly one variant is marked"
    );
    assert!(report.commit.as_deref().is_some_and(|c| c.len() == 40));
    // Everything fits in 64 GiB; the default is still the mid quant, not F16.
    let marked = report.variants.iter().find(|v| v.recommended).unwrap();
    assert_eq!(marked.variant.name, "Q4_K_M");

    let plan = engine
        .plan_pull(&PullRequest::repo(repo.clone()))
        .await
        .unwrap();
    assert_eq!(plan.choice, Choice::Recommended);
    let chosen = report
        .variants
        .iter()
        .find(|v| v.variant.id == recommended)
        .unwrap();
    assert_eq!(plan.variant.as_deref(), Some(chosen.variant.name.as_str()));
    assert_eq!(plan.total_bytes, chosen.variant.total_size);

    let job = engine.enqueue(&plan).unwrap();
    let job = wait_done(&engine, job.id).await;
    assert_eq!(job.state, QueueState::Done, "{job:?}");
    let stats = engine.stats().unwrap();
    assert_eq!(stats.downloads.len(), 1);
    assert_eq!(stats.downloads[0].repo, "demo/tiny-gguf");
    assert_eq!(stats.downloads[0].bytes, plan.total_bytes);
    assert!(stats.downloads[0].speed_bps > 0);

    // Every planned file is in the cache, reachable offline by its snapshot path.
    for file in &plan.files {
        let path = engine.path(&repo, "main", &file.path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), file.size);
        assert!(path.to_string_lossy().contains("/snapshots/"));
    }
    let missing = engine.path(&repo, "main", "no-such-file.gguf").unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::OfflineMiss);

    let verify = engine.verify(Some(&repo)).await.unwrap();
    assert_eq!(verify.checked, plan.files.len());
    assert!(verify.corrupt.is_empty(), "{:?}", verify.corrupt);

    // A second plan sees everything cached.
    let again = engine
        .plan_pull(&PullRequest::repo(repo.clone()))
        .await
        .unwrap();
    assert_eq!(again.cached_bytes, again.total_bytes);

    // The cache browser lists it; pins stop deletion.
    let listed = engine.cache_list().unwrap();
    let entry = listed.iter().find(|r| r.repo == "demo/tiny-gguf").unwrap();
    assert_eq!(entry.size_bytes, plan.total_bytes);
    assert!(entry.last_used.is_some());
    engine.set_pinned(&repo, true).unwrap();
    assert!(engine.cache_list().unwrap()[0].pinned);
    let refused = engine.delete(&repo, None, false, false).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Pinned);
    engine.set_pinned(&repo, false).unwrap();
    let removal = engine.delete(&repo, None, false, false).unwrap();
    assert!(removal.bytes_freed >= plan.total_bytes);
    assert!(engine.cache_list().unwrap().is_empty());
    engine.shutdown();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_describes_each_result_from_the_listing_alone() {
    use model_cache::engine::SearchRequest;
    use model_cache::fit::FitTier;
    use model_cache::hub::SearchSort;

    let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 1 GiB of RAM: the tiny models fit, the 1 GiB `demo/big` does not.
    let engine = Engine::open(
        settings(dir.path(), emulator.url()),
        EngineOptions::fake(GIB),
    )
    .unwrap();
    let before = emulator.log().records().len();
    let report = engine
        .search(&SearchRequest {
            query: "demo".into(),
            ..SearchRequest::default()
        })
        .await
        .unwrap();
    // One request for the whole page: no per-result tree or header fetch.
    assert_eq!(emulator.log().records().len() - before, 1);
    let names: Vec<&str> = report.results.iter().map(|r| r.repo.as_str()).collect();
    assert_eq!(
        names,
        [
            "demo/tiny-gguf",
            "demo/tiny-safetensors",
            "demo/gated",
            "demo/big"
        ]
    );
    assert!(report.next.is_none());
    let tiny = &report.results[0];
    assert_eq!(tiny.downloads, 52_000);
    assert_eq!(tiny.formats, ["gguf"]);
    assert!(
        tiny.last_modified
            .as_deref()
            .is_some_and(|d| d.starts_with("20"))
    );
    let size = tiny.size.as_ref().unwrap();
    assert_eq!(size.variant, "Q4_K_M");
    assert!(size.weights_bytes > 1_000_000 && size.weights_bytes < 3_000_000);
    assert_eq!(tiny.fit.unwrap().tier, FitTier::Fits);
    let st = &report.results[1];
    assert_eq!(st.formats, ["safetensors"]);
    assert_eq!(st.size.as_ref().unwrap().variant, "BF16");
    assert_eq!(report.results[2].gated, model_cache::hub::Gating::Manual);
    assert_eq!(report.results[3].fit.unwrap().tier, FitTier::TooBig);
    assert!(report.results.iter().all(|r| !r.cached));

    // Other orders, a filter, and pages of one through the cursor.
    let by_likes = engine
        .search(&SearchRequest {
            sort: SearchSort::Likes,
            filter: vec!["gguf".into()],
            ..SearchRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(by_likes.results[0].repo, "demo/tiny-gguf");
    assert!(
        by_likes
            .results
            .iter()
            .all(|r| r.formats.contains(&"gguf".to_string()))
    );
    let mut request = SearchRequest {
        query: "tiny".into(),
        limit: Some(1),
        ..SearchRequest::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = engine.search(&request).await.unwrap();
        assert_eq!(page.results.len(), 1);
        seen.push(page.results[0].repo.clone());
        match page.next {
            Some(next) => request.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["demo/tiny-gguf", "demo/tiny-safetensors", "tiny-legacy"]
    );

    // A cached repo is marked.
    let plan = engine
        .plan_pull(&PullRequest::repo("tiny-legacy".parse().unwrap()))
        .await
        .unwrap();
    let job = engine.enqueue(&plan).unwrap();
    assert_eq!(wait_done(&engine, job.id).await.state, QueueState::Done);
    let legacy = engine
        .search(&SearchRequest {
            query: "legacy".into(),
            ..SearchRequest::default()
        })
        .await
        .unwrap();
    assert!(legacy.results[0].cached);

    // Bad input: a page size out of range, a cursor on another origin.
    let zero = engine
        .search(&SearchRequest {
            limit: Some(0),
            ..SearchRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(zero.kind(), ErrorKind::InvalidInput);
    assert!(zero.to_string().contains("1 to 100"), "{zero}");
    let foreign = engine
        .search(&SearchRequest {
            cursor: Some("https://elsewhere.example/api/models?cursor=2".into()),
            ..SearchRequest::default()
        })
        .await
        .unwrap_err();
    assert!(foreign.to_string().contains("cursor"), "{foreign}");
    engine.shutdown();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_variants_patterns_and_job_actions() {
    let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(
        settings(dir.path(), emulator.url()),
        EngineOptions::fake(64 * GIB),
    )
    .unwrap();
    let repo: RepoId = "demo/tiny-gguf".parse().unwrap();

    let unknown = engine
        .plan_pull(&PullRequest {
            variant: Some("Q9_Z".into()),
            ..PullRequest::repo(repo.clone())
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::NoSuchVariant);
    assert_eq!(
        unknown.hints(),
        [Hint::ListVariants {
            repo: repo.to_string()
        }]
    );

    let by_quant = engine
        .plan_pull(&PullRequest {
            variant: Some("q8_0".into()),
            ..PullRequest::repo(repo.clone())
        })
        .await
        .unwrap();
    assert_eq!(by_quant.choice, Choice::Variant);
    assert!(by_quant.files.iter().any(|f| f.path.contains("Q8_0")));
    // GGUF files carry their tokenizer and chat template: no companions are needed.
    assert!(!by_quant.files.iter().any(|f| f.path == "config.json"));
    assert!(!by_quant.files.iter().any(|f| f.path.contains("Q4_K_M")));

    let by_pattern = engine
        .plan_pull(&PullRequest {
            include: vec!["*.json".into()],
            ..PullRequest::repo(repo.clone())
        })
        .await
        .unwrap();
    assert_eq!(by_pattern.choice, Choice::Files);
    assert!(by_pattern.files.iter().all(|f| f.path.ends_with(".json")));

    let nothing = engine
        .plan_pull(&PullRequest {
            include: vec!["*.nothing".into()],
            ..PullRequest::repo(repo.clone())
        })
        .await
        .unwrap_err();
    assert_eq!(nothing.kind(), ErrorKind::NothingSelected);

    // A paused job stays paused until resumed, then finishes.
    engine.pause_all().unwrap();
    let job = engine.enqueue(&by_quant).unwrap();
    let paused = engine.job_action(job.id, JobAction::Pause).unwrap();
    assert_eq!(paused.state, QueueState::Paused);
    engine.resume_all().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let still = engine
        .jobs()
        .unwrap()
        .into_iter()
        .find(|j| j.id == job.id)
        .unwrap();
    assert_eq!(still.state, QueueState::Paused);
    engine.job_action(job.id, JobAction::Resume).unwrap();
    assert_eq!(wait_done(&engine, job.id).await.state, QueueState::Done);
    let finished = engine.job_action(job.id, JobAction::Cancel).unwrap_err();
    assert_eq!(finished.kind(), ErrorKind::JobFinished);
    engine.shutdown();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_repos_explain_what_to_do() {
    let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(
        settings(dir.path(), emulator.url()),
        EngineOptions::fake(64 * GIB),
    )
    .unwrap();
    let error = engine
        .variants(&"demo/gated".parse().unwrap(), None)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error.kind(), ErrorKind::Gated | ErrorKind::Unauthorized),
        "{}: {text}",
        error.kind()
    );
    assert!(!error.hints().is_empty(), "a hint is given: {text}");

    // Logging in takes effect at once and stores the token where huggingface_hub reads it.
    engine
        .set_token(model_cache::Token::new("hf_demo_token"))
        .unwrap();
    assert!(engine.has_token());
    let token_file = dir.path().join("hf-home/token");
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        "hf_demo_token"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let report = engine
        .variants(&"demo/gated".parse().unwrap(), None)
        .await
        .unwrap();
    assert!(!report.variants.is_empty());
    engine.set_token(None).unwrap();
    assert!(!token_file.exists());
    assert!(!engine.has_token());
    engine.shutdown();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_apply_live_and_persist() {
    let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(
        settings(dir.path(), emulator.url()),
        EngineOptions::fake(64 * GIB),
    )
    .unwrap();
    let prefs = engine
        .update_preferences(&PreferencesPatch::parse_entry("max_rate_bps", "5MB/s").unwrap())
        .unwrap();
    assert_eq!(prefs.max_rate_bps, Some(5_000_000));
    assert_eq!(
        engine.downloader().limits().bandwidth().rate(),
        Some(5_000_000)
    );
    let prefs = engine
        .update_preferences(
            &PreferencesPatch::from_json(&serde_json::json!({
                "size_budget_bytes": "10 GiB",
                "keep_partial_files_for": "3d",
            }))
            .unwrap(),
        )
        .unwrap();
    assert_eq!(prefs.size_budget_bytes, Some(10 * GIB));
    assert_eq!(prefs.max_rate_bps, Some(5_000_000), "other settings stay");
    assert_eq!(engine.scheduler().cache_policy().budget, Some(10 * GIB));
    assert_eq!(
        engine.scheduler().cache_policy().stale_incomplete_after,
        std::time::Duration::from_secs(3 * 86_400)
    );
    let refused = engine
        .update_preferences(&PreferencesPatch::default())
        .map(|_| ());
    assert!(refused.is_ok(), "an empty patch changes nothing");
    let saved = Preferences::load(&dir.path().join("data")).unwrap();
    assert_eq!(saved.max_rate_bps, Some(5_000_000));
    assert_eq!(saved.cache.unwrap().budget, Some(10 * GIB));
    engine.shutdown();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_engine_never_runs_jobs_and_cached_headers_are_read_locally() {
    let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo: RepoId = "demo/tiny-gguf".parse().unwrap();

    // A short-lived command (passive) queues a job: it stays queued.
    let cli = Engine::open(settings(dir.path(), emulator.url()), passive(64 * GIB)).unwrap();
    let plan = cli
        .plan_pull(&PullRequest {
            variant: Some("Q4_K_M".into()),
            ..PullRequest::repo(repo.clone())
        })
        .await
        .unwrap();
    let job = cli.enqueue(&plan).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cli.jobs().unwrap()[0].state, QueueState::Queued);
    // A repo a job will download into cannot be removed meanwhile.
    let busy = cli.delete(&repo, None, false, true).unwrap_err();
    assert_eq!(busy.kind(), ErrorKind::InUse);
    cli.shutdown();

    // The app (active) picks it up and finishes it.
    let app = Engine::open(
        settings(dir.path(), emulator.url()),
        EngineOptions::fake(64 * GIB),
    )
    .unwrap();
    assert_eq!(wait_done(&app, job.id).await.state, QueueState::Done);

    // Planning the same pull again transfers no file bytes: the name is enough, no header is
    // read, and the listing says everything is cached.
    let before = emulator.log().bytes_served_matching(".gguf");
    assert!(
        before >= plan.total_bytes,
        "the first pull was served as .gguf paths"
    );
    let again = app
        .plan_pull(&PullRequest {
            variant: Some("Q4_K_M".into()),
            ..PullRequest::repo(repo.clone())
        })
        .await
        .unwrap();
    assert_eq!(again.cached_bytes, again.total_bytes);
    assert_eq!(emulator.log().bytes_served_matching(".gguf"), before);

    // The variants report reads the cached variant's header from disk, the others remotely.
    let report = app.variants(&repo, None).await.unwrap();
    let q4 = report
        .variants
        .iter()
        .find(|v| v.variant.name == "Q4_K_M")
        .unwrap();
    assert!(q4.variant.shape.is_some(), "the cached header was read");
    app.shutdown();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_saved_preferences_start_with_defaults_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = Preferences::path(&data);

    // Settings an older version let through: the start uses the defaults for them, says so,
    // and keeps what is valid.
    std::fs::write(
        &file,
        r#"{"endpoint": "http://", "cache_dir": "relative/folder", "max_rate_bps": 5000000}"#,
    )
    .unwrap();
    let (preferences, warnings) = Preferences::load_checked(&data);
    assert_eq!(preferences.endpoint, None);
    assert_eq!(preferences.cache_dir, None);
    assert_eq!(preferences.max_rate_bps, Some(5_000_000));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let engine = Engine::open(
        settings(dir.path(), "http://127.0.0.1:9".into()),
        passive(8 << 30),
    )
    .unwrap();
    let problems = engine.health().unwrap().problems;
    assert!(
        problems[0].contains("`cache_dir`") || problems[0].contains("`endpoint`"),
        "{problems:?}"
    );
    engine.shutdown();

    // A file that is not JSON at all: defaults, an alert, and its bytes kept for the user.
    std::fs::write(&file, "{ not json").unwrap();
    let engine = Engine::open(
        settings(dir.path(), "http://127.0.0.1:9".into()),
        passive(8 << 30),
    )
    .unwrap();
    let problems = engine.health().unwrap().problems;
    assert!(
        problems[0].contains("not valid preferences JSON") && problems[0].contains("default"),
        "{problems:?}"
    );
    assert_eq!(
        std::fs::read_to_string(file.with_extension("json.bad")).unwrap(),
        "{ not json"
    );
    engine.shutdown();
}

/// A cache where symlinks turned out to be refused (a FAT drive, Windows without Developer
/// Mode) keeps working with regular files in its snapshots, and the health alerts say why each
/// file is stored twice over; a download into it links no symlink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_without_symlinks_downloads_regular_files_and_says_so() {
    let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), emulator.url());
    let root = settings.hub_cache.clone();
    let engine = Engine::open(settings, EngineOptions::fake(64 * GIB)).unwrap();
    assert!(
        !engine
            .health()
            .unwrap()
            .problems
            .iter()
            .any(|p| p == model_cache::store::NO_SYMLINKS_WARNING)
    );
    // What the first failed symlink in this cache records for the whole process.
    model_cache::store::LinkMode::symlink_failed(&root);
    let problems = engine.health().unwrap().problems;
    assert!(
        problems
            .iter()
            .any(|p| p == model_cache::store::NO_SYMLINKS_WARNING),
        "{problems:?}"
    );
    let repo: RepoId = "demo/tiny-gguf".parse().unwrap();
    let plan = engine
        .plan_pull(&PullRequest::repo(repo.clone()))
        .await
        .unwrap();
    let job = engine.enqueue(&plan).unwrap();
    assert_eq!(wait_done(&engine, job.id).await.state, QueueState::Done);
    for file in &plan.files {
        let path = engine.path(&repo, "main", &file.path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file(), "{} is not a regular file", path.display());
        assert_eq!(meta.len(), file.size);
    }
    engine.shutdown();
    emulator.shutdown().await;
}
