//! Shared set-up of the scheduler tests: an emulator with small generated models, a temporary
//! cache and index, the real downloader behind the scheduler, and fake power, disk and clock.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hub_emulator::generate::VirtualFile;
use hub_emulator::{Emulator, EmulatorConfig, FileChange, Repo, RepoKind};
use model_cache::download::Downloader;
use model_cache::hub::HubClient;
use model_cache::hub::retry::RetryPolicy;
use model_cache::index::Index;
use model_cache::index::queue::{NewQueueJob, QueueJob, QueueState, Selection};
use model_cache::policy::{
    Changes, DiskProbe, DiskSpace, FakeClock, FakeDisk, FakePower, PolicyError, PowerState,
};
use model_cache::scheduler::{DownloaderRunner, Probes, Scheduler, SchedulerConfig};
use model_cache::{RepoId, Settings};
use tempfile::TempDir;

pub(crate) const GB: u64 = 1_000_000_000;
pub(crate) const CHUNK: u64 = 64 * 1024;
/// Size of each generated model file.
pub(crate) const MODEL_SIZE: u64 = 2 * 1024 * 1024;

/// How long a test waits for a state before failing. Generous: the machine is shared.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

/// A repo `name` with one LFS file `model.gguf` of `size` random bytes and a small config.
pub(crate) fn model_repo(name: &str, size: u64, seed: u64) -> Repo {
    let mut repo = Repo::new(RepoKind::Model, name);
    repo.commit(
        "main",
        "Upload",
        vec![
            FileChange::put("config.json", format!("{{\"name\": \"{name}\"}}\n")),
            FileChange::put("model.gguf", VirtualFile::random(size, seed)),
        ],
    );
    repo
}

pub(crate) fn settings_for(dir: &Path, endpoint: String) -> Settings {
    let mut settings = Settings::new(dir.join("hub"), dir.join("data"));
    settings.endpoint = endpoint;
    settings.retry = RetryPolicy::immediate();
    settings.limits.chunk_size = CHUNK;
    settings.limits.connections = 4;
    settings.limits.connections_per_host = 4;
    settings.limits.buffer_size = 16 * 1024;
    settings.timeouts.stall = Duration::from_secs(10);
    settings
}

pub(crate) struct Rig {
    pub emulator: Emulator,
    pub dir: TempDir,
    pub settings: Settings,
    pub index: Index,
    pub changes: Changes,
    pub power: FakePower,
    pub disk: FakeDisk,
    pub clock: FakeClock,
    pub scheduler: Scheduler,
}

impl Rig {
    pub(crate) fn hub_cache(&self) -> &Path {
        &self.settings.hub_cache
    }
}

/// Starts an emulator serving `repos`, and a scheduler with fake probes (on AC, 1 TB volume with
/// 500 GB free, noon) configured by `tweak`.
pub(crate) async fn rig(repos: Vec<Repo>, tweak: impl FnOnce(&mut SchedulerConfig)) -> Rig {
    let emulator = Emulator::start(EmulatorConfig {
        repos,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(dir.path(), emulator.url());
    let changes = Changes::default();
    let power = FakePower::new(PowerState::plugged_in(80), changes.clone());
    let disk = FakeDisk::new(
        DiskSpace {
            total: 1000 * GB,
            available: 500 * GB,
        },
        changes.clone(),
    );
    let clock = FakeClock::new(SystemTime::now(), 12 * 60, changes.clone());
    let probes = Probes {
        power: Arc::new(power.clone()),
        disk: Arc::new(disk.clone()),
        clock: Arc::new(clock.clone()),
        changes: changes.clone(),
        watch_every: None,
    };
    let mut config = SchedulerConfig::new(settings.hub_cache.clone());
    config.progress_every = Duration::from_millis(100);
    tweak(&mut config);
    let (scheduler, index) = start_scheduler(&settings, config, probes);
    Rig {
        emulator,
        dir,
        settings,
        index,
        changes,
        power,
        disk,
        clock,
        scheduler,
    }
}

pub(crate) fn start_scheduler(
    settings: &Settings,
    config: SchedulerConfig,
    probes: Probes,
) -> (Scheduler, Index) {
    let index = Index::open(&settings.data_dir).expect("index opens");
    let hub = HubClient::new(settings).expect("hub client");
    let downloader = Downloader::new(settings, hub.clone(), index.clone());
    let runner = Arc::new(DownloaderRunner::new(hub, downloader));
    let scheduler =
        Scheduler::start(config, index.clone(), runner, probes).expect("scheduler starts");
    (scheduler, index)
}

pub(crate) fn job_for(repo: &str) -> NewQueueJob {
    NewQueueJob {
        repo: RepoId::model(repo).unwrap(),
        revision: "main".into(),
        selection: Selection::default(),
        priority: 0,
        bytes_total: None,
        convert: None,
    }
}

/// Polls until `check` holds for the job, or fails after [`PATIENCE`] with the last state.
pub(crate) async fn wait_job(
    scheduler: &Scheduler,
    id: i64,
    what: &str,
    check: impl Fn(&QueueJob) -> bool,
) -> QueueJob {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let job = scheduler
            .jobs()
            .unwrap()
            .into_iter()
            .find(|j| j.id == id)
            .expect("job exists");
        if check(&job) {
            return job;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("job {id} never became {what}; last seen: {job:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn wait_state(scheduler: &Scheduler, id: i64, state: QueueState) -> QueueJob {
    wait_job(scheduler, id, state.as_str(), |j| j.state == state).await
}

/// Running with some bytes on disk.
pub(crate) async fn wait_downloading(scheduler: &Scheduler, id: i64) -> QueueJob {
    wait_job(scheduler, id, "running with bytes on disk", |j| {
        j.state == QueueState::Running && j.bytes_done > 0
    })
    .await
}

/// The snapshot folder of `repo` at its `main` ref, if complete enough to have a ref.
pub(crate) fn snapshot_of(hub_cache: &Path, repo: &str) -> Option<PathBuf> {
    let folder = hub_cache.join(RepoId::model(repo).unwrap().folder_name());
    let commit = std::fs::read_to_string(folder.join("refs/main")).ok()?;
    Some(folder.join("snapshots").join(commit))
}

/// A disk probe whose volume holds `capacity` bytes and whose free space is that minus what the
/// hub cache really holds: freeing files in the cache frees space, as on a real disk.
#[derive(Clone)]
pub(crate) struct CacheSizedDisk {
    pub root: PathBuf,
    pub capacity: u64,
}

pub(crate) fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                total += dir_size(&entry.path());
            } else if kind.is_file() {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

impl DiskProbe for CacheSizedDisk {
    fn space(&self, _path: &Path) -> Result<DiskSpace, PolicyError> {
        Ok(DiskSpace {
            total: self.capacity,
            available: self.capacity.saturating_sub(dir_size(&self.root)),
        })
    }
}
