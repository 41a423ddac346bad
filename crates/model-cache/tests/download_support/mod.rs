//! Shared set-up of the downloader tests: an emulator, a temporary cache and index, and a
//! downloader with small chunks and no retry delays.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hub_emulator::{Emulator, EmulatorConfig, RepoKind};
use model_cache::download::{DownloadEvent, DownloadRequest, Downloader, RecordingReporter};
use model_cache::hub::HubClient;
use model_cache::hub::retry::RetryPolicy;
use model_cache::index::Index;
use model_cache::{RepoId, Settings};
use tempfile::TempDir;

/// The one file of `demo/big`.
pub(crate) const BIG: &str = "big-model-Q4_K_M.gguf";
/// Size of `demo/big` in these tests (64 chunks of 64 KiB).
pub(crate) const BIG_SIZE: u64 = 4 * 1024 * 1024;
pub(crate) const CHUNK: u64 = 64 * 1024;

pub(crate) struct Rig {
    pub emulator: Emulator,
    pub dir: TempDir,
    pub settings: Settings,
    pub index: Index,
    pub downloader: Downloader,
}

/// Settings for a cache under `dir` talking to `endpoint`, tuned for tests.
pub(crate) fn test_settings(dir: &Path, endpoint: String) -> Settings {
    let mut settings = Settings::new(dir.join("hub"), dir.join("data"));
    settings.endpoint = endpoint;
    settings.retry = RetryPolicy::immediate();
    settings.limits.chunk_size = CHUNK;
    settings.limits.connections = 8;
    settings.limits.connections_per_host = 8;
    settings.limits.buffer_size = 32 * 1024;
    settings.timeouts.stall = Duration::from_secs(5);
    settings
}

pub(crate) async fn rig() -> Rig {
    rig_with(EmulatorConfig::demo_with_big_size(BIG_SIZE), |_| {}).await
}

pub(crate) async fn rig_with(config: EmulatorConfig, tweak: impl FnOnce(&mut Settings)) -> Rig {
    let emulator = Emulator::start(config).await.expect("emulator starts");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path(), emulator.url());
    tweak(&mut settings);
    let rig_downloader = downloader(&settings);
    Rig {
        emulator,
        dir,
        index: rig_downloader.1,
        downloader: rig_downloader.0,
        settings,
    }
}

pub(crate) fn downloader(settings: &Settings) -> (Downloader, Index) {
    let hub = HubClient::new(settings).expect("hub client");
    let index = Index::open(&settings.data_dir).expect("index opens");
    (Downloader::new(settings, hub, index.clone()), index)
}

pub(crate) fn request(repo: &str, files: &[&str]) -> DownloadRequest {
    DownloadRequest {
        repo: RepoId::model(repo).unwrap(),
        revision: "main".into(),
        files: files.iter().map(|f| (*f).into()).collect(),
    }
}

pub(crate) fn big_request() -> DownloadRequest {
    request("demo/big", &[BIG])
}

/// The bytes the emulator serves for a file at a revision.
pub(crate) fn upstream_bytes(
    emulator: &Emulator,
    repo: &str,
    revision: &str,
    path: &str,
) -> Vec<u8> {
    emulator
        .catalog()
        .file(RepoKind::Model, repo, revision, path)
        .expect("file exists upstream")
        .body
        .to_vec()
}

pub(crate) fn recorder() -> Arc<RecordingReporter> {
    Arc::new(RecordingReporter::default())
}

/// Every partial file under the cache (ours, `.<etag>.mcpart`, and any `*.incomplete`).
pub(crate) fn incomplete_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk(root, &mut |path| {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if model_cache::store::partial_etag(&name).is_some() {
            found.push(path.to_path_buf());
        }
    });
    found
}

pub(crate) fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        visit(&path);
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(&path, visit);
        }
    }
}

pub(crate) fn count<F: Fn(&DownloadEvent) -> bool>(events: &[DownloadEvent], f: F) -> usize {
    events.iter().filter(|e| f(e)).count()
}

/// The `pull_child` example binary, built by `cargo test` next to the test binaries (built here
/// if a filtered run skipped it).
pub(crate) fn child_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let binary = profile_dir
        .join("examples")
        .join(format!("pull_child{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command.args(["build", "-p", "model-cache", "--example", "pull_child"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("cargo runs");
        assert!(status.success(), "building the pull_child example failed");
    }
    binary
}
