//! Pause is felt at once: once a job reads paused (Pause on it, or Pause all), the emulator sends
//! it no more bytes. How long bytes kept flowing after the click is printed.

use std::time::Duration;

use hub_emulator::{Emulator, EmulatorConfig, Fault, FaultRule};
use model_cache::engine::{Engine, EngineOptions, JobAction, PullRequest};
use model_cache::hub::retry::RetryPolicy;
use model_cache::index::queue::QueueState;
use model_cache::{RepoId, Settings};

fn settings(dir: &std::path::Path, endpoint: String) -> Settings {
    let mut settings = Settings::new(dir.join("hub"), dir.join("data"));
    settings.endpoint = endpoint;
    settings.retry = RetryPolicy::immediate();
    settings.token_file = Some(dir.join("hf-home/token"));
    settings
}

/// How long the emulator kept sending after now: the last growth of its byte count before 1.5 s
/// without any (waiting at most `limit`).
async fn flowing_for(emulator: &Emulator, limit: Duration) -> Duration {
    let start = tokio::time::Instant::now();
    let mut last = emulator.bytes_served();
    let mut last_change = start;
    while start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = emulator.bytes_served();
        if now != last {
            last = now;
            last_change = tokio::time::Instant::now();
        } else if last_change.elapsed() >= Duration::from_millis(1500) {
            break;
        }
    }
    last_change - start
}

/// The job is no longer running, and no byte reaches it for two seconds.
async fn assert_still(engine: &Engine, emulator: &Emulator, id: i64) {
    let job = engine
        .wait_for_job(id, |j| j.state != QueueState::Running)
        .await;
    assert!(
        matches!(job.state, QueueState::Paused | QueueState::Deferred),
        "{job:?}"
    );
    let at = emulator.bytes_served();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        emulator.bytes_served(),
        at,
        "bytes still flow to a paused job"
    );
}

async fn running_job(engine: &Engine, emulator: &Emulator) -> i64 {
    let repo: RepoId = "demo/tiny-gguf".parse().unwrap();
    let plan = engine
        .plan_pull(&PullRequest {
            repo: Some(repo),
            files: vec!["tiny-model-F16.gguf".into()],
            ..PullRequest::default()
        })
        .await
        .unwrap();
    let job = engine.enqueue(&plan).unwrap();
    let before = emulator.bytes_served();
    engine
        .wait_for_job(job.id, |j| {
            j.state == QueueState::Running && emulator.bytes_served() > before + 100_000
        })
        .await;
    job.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_job_gets_no_more_bytes() {
    let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
    // Slow enough that the file is far from done while the test runs.
    emulator
        .faults()
        .set(FaultRule::global(Fault::TotalBandwidth(400_000)).on("*F16*"));
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(
        settings(dir.path(), emulator.url()),
        EngineOptions::fake(1 << 36),
    )
    .unwrap();

    let id = running_job(&engine, &emulator).await;
    engine.job_action(id, JobAction::Pause).unwrap();
    let flowed = flowing_for(&emulator, Duration::from_secs(15)).await;
    println!("bytes flowed for {flowed:?} after pausing the job");
    assert_still(&engine, &emulator, id).await;

    engine.job_action(id, JobAction::Resume).unwrap();
    let before = emulator.bytes_served();
    engine
        .wait_for_job(id, |j| {
            j.state == QueueState::Running && emulator.bytes_served() > before + 100_000
        })
        .await;
    engine.pause_all().unwrap();
    let flowed = flowing_for(&emulator, Duration::from_secs(15)).await;
    println!("bytes flowed for {flowed:?} after pausing everything");
    assert_still(&engine, &emulator, id).await;
    engine.shutdown();
}
