//! Upgrades: a data folder and hub cache written by an earlier build (`fixtures/upgrade-*.tar.gz`,
//! made by `examples/upgrade_fixture.rs` with that build) opened by this one. Nothing is
//! downloaded again, nothing is lost (index, pins, preferences, the Hub token), and the pull that
//! build left half done resumes from its recorded chunks.

use std::path::{Path, PathBuf};

use hub_emulator::{Emulator, EmulatorConfig};
use model_cache::RepoId;
use model_cache::engine::{Engine, EngineOptions, JobAction, Preferences};
use model_cache::hub::retry::RetryPolicy;
use model_cache::index::queue::QueueState;
use serde_json::Value;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("upgrade-") && n.ends_with(".tar.gz"))
        })
        .collect();
    found.sort();
    found
}

fn unpack(archive: &Path, into: &Path) {
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success(), "could not unpack {}", archive.display());
}

/// Every file under `dir` with its bytes (relative path → content), links followed.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path.strip_prefix(dir).unwrap().to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_earlier_fixture_opens_with_nothing_lost_and_its_partial_resumed() {
    let archives = fixtures();
    assert!(!archives.is_empty(), "no upgrade fixture in tests/fixtures");
    for archive in archives {
        upgrade(&archive).await;
    }
}

async fn upgrade(archive: &Path) {
    let name = archive.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    unpack(archive, root);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap())
            .unwrap();
    let emulator = Emulator::start(EmulatorConfig {
        repos: vec![hub_emulator::demo::upgrade_fixture_repo()],
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let repo: RepoId = manifest["repo"].as_str().unwrap().parse().unwrap();
    let commit = manifest["commit"].as_str().unwrap();
    assert_eq!(
        emulator
            .catalog()
            .resolve(hub_emulator::RepoKind::Model, &repo.id, "main")
            .unwrap()
            .sha,
        commit,
        "{name}: the emulator's fixture repo changed; the fixture's blobs no longer match it"
    );
    let old_version = manifest["schema_version"].as_u64().unwrap() as usize;
    let complete_before = contents(&root.join("hub").join(repo.folder_name()).join("snapshots"));
    let token_before = std::fs::read(root.join("hf-home/token")).unwrap();

    // The settings an edge builds: the environment (the token from `HF_HOME/token`), then the
    // saved preferences on top.
    let vars = [
        ("HF_HOME", root.join("hf-home")),
        ("HF_HUB_CACHE", root.join("hub")),
        ("MODEL_CACHE_DATA_DIR", root.join("data")),
    ];
    let endpoint = emulator.url();
    let mut settings = model_cache::env::settings_from_env(
        |key| match key {
            "HF_ENDPOINT" => Some(endpoint.clone()),
            _ => vars
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, path)| path.display().to_string()),
        },
        None,
        root.join("unused"),
    );
    settings.retry = RetryPolicy::immediate();
    let (preferences, warnings) = Preferences::load_checked(&settings.data_dir);
    assert!(warnings.is_empty(), "{name}: {warnings:?}");
    preferences.apply(&mut settings);
    assert_eq!(
        settings.token.as_ref().map(|t| t.expose()),
        manifest["token"].as_str()
    );
    let engine = Engine::open(settings, EngineOptions::fake(1 << 34)).unwrap();

    // The index was migrated, in place.
    let version = engine.index().schema_version().unwrap();
    assert!(
        version > old_version,
        "{name}: schema {old_version} -> {version}: a fixture of an older format is expected"
    );
    // Preferences and the token are kept as they were.
    let app = engine.app_settings();
    let saved = &manifest["preferences"];
    assert_eq!(
        app.connections as u64,
        saved["connections"].as_u64().unwrap()
    );
    assert_eq!(app.max_rate_bps, saved["max_rate_bps"].as_u64());
    assert_eq!(
        app.disk_reserve_bytes,
        saved["disk_reserve_bytes"].as_u64().unwrap()
    );
    assert!(app.token_set, "{name}: the token is gone");
    assert_eq!(
        std::fs::read(root.join("hf-home/token")).unwrap(),
        token_before
    );
    // The cached model, its pin and its files are intact.
    let listed = engine.cache_list().unwrap();
    let view = listed.iter().find(|r| r.repo == repo.to_string()).unwrap();
    assert!(view.pinned, "{name}: the pin is gone");
    let report = engine.verify(Some(&repo)).await.unwrap();
    assert!(report.corrupt.is_empty(), "{name}: {report:?}");

    // The paused pull is still queued, with its bytes; resumed, it fetches only the rest.
    let partial = &manifest["partial"];
    let job_id = partial["job_id"].as_i64().unwrap();
    let job = engine
        .jobs()
        .unwrap()
        .into_iter()
        .find(|j| j.id == job_id)
        .unwrap_or_else(|| panic!("{name}: the paused job is gone"));
    assert_eq!(job.state, QueueState::Paused, "{name}: {job:?}");
    let size = partial["size"].as_u64().unwrap();
    let kept = partial["bytes_done_when_paused"].as_u64().unwrap();
    assert!(kept > 0 && kept < size);
    let served = emulator.bytes_served();
    engine.job_action(job_id, JobAction::Resume).unwrap();
    let job = engine.wait_for_job(job_id, |j| j.state.is_terminal()).await;
    assert_eq!(job.state, QueueState::Done, "{name}: {job:?}");
    let fetched = emulator.bytes_served() - served;
    // Chunks recorded after the last progress report are kept too, so at most what was left
    // (plus nothing else: the complete files are never asked for).
    assert!(
        fetched <= size - kept,
        "{name}: fetched {fetched} bytes to finish a {size}-byte file of which {kept} were kept"
    );
    assert!(fetched > 0);
    for record in emulator.requests() {
        for path in manifest["complete"].as_array().unwrap() {
            let path = path.as_str().unwrap();
            assert!(
                !(record.method == "GET" && record.path.ends_with(&format!("/{path}"))),
                "{name}: {path} was downloaded again: {record:?}"
            );
        }
    }
    let report = engine.verify(Some(&repo)).await.unwrap();
    assert!(report.corrupt.is_empty(), "{name}: {report:?}");
    let complete_after = contents(&root.join("hub").join(repo.folder_name()).join("snapshots"));
    for (path, bytes) in &complete_before {
        assert!(
            complete_after.iter().any(|(p, b)| p == path && b == bytes),
            "{name}: {} changed",
            path.display()
        );
    }
    engine.shutdown();
}
