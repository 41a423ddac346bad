//! Writes the upgrade fixture: the data folder and hub cache this build leaves behind after a
//! complete pull, a paused half-done pull, a Hub token, saved preferences and a pin, packed as
//! `OUT.tar.gz` with a `manifest.json` of what it holds. `tests/upgrade.rs` opens such a fixture
//! with the current build.
//!
//! ```text
//! cargo run -p model-cache --example upgrade_fixture -- crates/model-cache/tests/fixtures/upgrade-NAME
//! ```
//!
//! A fixture is written once, by the build whose format it records, and kept: later builds must
//! keep opening it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hub_emulator::{Emulator, EmulatorConfig, Fault, FaultRule};
use model_cache::engine::{Engine, EngineOptions, JobAction, PreferencesPatch, PullRequest};
use model_cache::hub::retry::RetryPolicy;
use model_cache::index::queue::QueueState;
use model_cache::secret::Token;
use model_cache::{RepoId, Settings};

/// The token the fixture's `hf-home/token` holds (one the emulator accepts).
const TOKEN: &str = hub_emulator::auth::DEMO_TOKEN;

fn settings(root: &Path, endpoint: String) -> Settings {
    let mut settings = Settings::new(root.join("hub"), root.join("data"));
    settings.endpoint = endpoint;
    settings.retry = RetryPolicy::immediate();
    settings.limits.chunk_size = 64 * 1024;
    settings.token_file = Some(root.join("hf-home/token"));
    settings
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out: PathBuf = std::env::args()
        .nth(1)
        .ok_or("usage: upgrade_fixture OUT (writes OUT.tar.gz)")?
        .into();
    let archive = PathBuf::from(format!("{}.tar.gz", out.display()));
    if archive.exists() {
        return Err(format!("{} exists: a fixture is written once", archive.display()).into());
    }
    let work = tempfile::tempdir()?;
    let root = work.path().join("fixture");
    let emulator = Emulator::start(EmulatorConfig {
        repos: vec![hub_emulator::demo::upgrade_fixture_repo()],
        ..EmulatorConfig::default()
    })
    .await?;
    let engine = Engine::open(
        settings(&root, emulator.url()),
        EngineOptions::fake(1 << 34),
    )?;
    let repo: RepoId = hub_emulator::demo::UPGRADE_FIXTURE_REPO.parse()?;
    engine.set_token(Token::new(TOKEN))?;
    engine.update_preferences(&PreferencesPatch::from_json(&serde_json::json!({
        "connections": 6,
        "max_rate_bps": 50_000_000,
        "disk_reserve_bytes": 1_000_000,
        "mirrors": ["http://127.0.0.1:9/"],
        "allowed_origins": ["http://localhost:5173"],
    }))?)?;

    // One complete pull.
    let plan = engine
        .plan_pull(&PullRequest {
            repo: Some(repo.clone()),
            files: vec!["README.md".into(), "model-Q4_K_M.gguf".into()],
            ..PullRequest::default()
        })
        .await?;
    let commit = plan.commit.clone().ok_or("no commit")?;
    let job = engine.enqueue(&plan)?;
    engine
        .wait_for_job(job.id, |j| j.state == QueueState::Done)
        .await;
    engine.set_pinned(&repo, true)?;

    // One pull paused about halfway: slow bytes, then Pause.
    let slow = emulator
        .faults()
        .set(FaultRule::global(Fault::TotalBandwidth(192 * 1024)).on("*model-Q8_0.gguf*"));
    let plan = engine
        .plan_pull(&PullRequest {
            repo: Some(repo.clone()),
            files: vec!["model-Q8_0.gguf".into()],
            ..PullRequest::default()
        })
        .await?;
    let partial_size = plan.total_bytes;
    let job = engine.enqueue(&plan)?;
    engine
        .wait_for_job(job.id, |j| j.bytes_done >= partial_size * 2 / 5)
        .await;
    engine.job_action(job.id, JobAction::Pause)?;
    let paused = engine
        .wait_for_job(job.id, |j| j.state == QueueState::Paused)
        .await;
    emulator.faults().remove(slow);
    // Let the pause land (the transfer stops and records its last chunks).
    tokio::time::sleep(Duration::from_secs(1)).await;
    engine.shutdown();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let schema_version = engine.index().schema_version()?;
    drop(engine);

    // The owners' lock files of the in-flight list belong to this (ending) process.
    let _ = std::fs::remove_dir_all(root.join("data").join("in-flight"));
    let manifest = serde_json::json!({
        "written_by": concat!("model-cache ", env!("CARGO_PKG_VERSION")),
        "schema_version": schema_version,
        "repo": repo.to_string(),
        "commit": commit,
        "complete": ["README.md", "model-Q4_K_M.gguf"],
        "partial": {"path": "model-Q8_0.gguf", "size": partial_size, "job_id": paused.id,
                    "bytes_done_when_paused": paused.bytes_done},
        "token": TOKEN,
        "preferences": {"connections": 6, "max_rate_bps": 50_000_000, "disk_reserve_bytes": 1_000_000},
        "pinned": true,
    });
    std::fs::write(
        root.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()?;
    if !status.success() {
        return Err("tar failed".into());
    }
    println!("{}\n{}", archive.display(), manifest);
    Ok(())
}
