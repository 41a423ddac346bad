//! A real full disk under the scheduler: a small tmpfs holds the hub cache, another program
//! fills it, and the downloader's `ENOSPC` defers the job ("The disk is full") instead of failing
//! it; when space returns the job resumes by itself and finishes.

mod scheduler_support;

mod tiny_disk;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tiny_disk::TinyDisk;

use hub_emulator::{Emulator, EmulatorConfig};
use model_cache::index::queue::QueueState;
use model_cache::policy::{
    Changes, DeferReason, DiskSpace, FakeClock, FakeDisk, FakePower, PowerState, ReservePolicy,
};
use model_cache::scheduler::{Probes, SchedulerConfig};
use scheduler_support::*;

/// Fills the volume at `dir` with a file until less than `leave` bytes are free.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let free = fs4::available_space(dir).unwrap();
    let filler = dir.join("filler.bin");
    std::fs::write(&filler, vec![1u8; free.saturating_sub(leave) as usize]).unwrap();
    filler
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disk_filled_by_another_program_defers_the_job_until_space_returns() {
    let emulator = Emulator::start(EmulatorConfig {
        repos: vec![model_repo("t/big", MODEL_SIZE, 41)],
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let volume = TinyDisk::mount(dir.path().join("volume"), "4m");
    let mut settings = settings_for(dir.path(), emulator.url());
    settings.hub_cache = volume.path.join("hub");
    std::fs::create_dir_all(&settings.hub_cache).unwrap();

    // Another program leaves 256 KiB free: not enough for the 2 MiB model. The scheduler's own
    // probe is told there is plenty (a stale reading), so the job starts and meets the real
    // `ENOSPC` from the file system.
    let filler = fill(&volume.path, 256 * 1024);
    let changes = Changes::default();
    let disk = FakeDisk::new(
        DiskSpace {
            total: 4 << 20,
            available: 4 << 20,
        },
        changes.clone(),
    );
    let probes = Probes {
        power: Arc::new(FakePower::new(PowerState::NO_BATTERY, changes.clone())),
        disk: Arc::new(disk.clone()),
        clock: Arc::new(FakeClock::new(SystemTime::now(), 600, changes.clone())),
        changes,
        watch_every: None,
    };
    let mut config = SchedulerConfig::new(settings.hub_cache.clone());
    config.policy.reserve = ReservePolicy::NONE;
    let (scheduler, _index) = start_scheduler(&settings, config, probes);
    let job = scheduler.enqueue(job_for("t/big")).unwrap();

    let deferred = wait_state(&scheduler, job.id, QueueState::Deferred).await;
    let reason = deferred.defer_reason.expect("a reason");
    assert!(
        matches!(reason, DeferReason::DiskFull { .. }),
        "the job waits for space instead of failing: {reason:?}"
    );
    assert!(
        reason.to_string().starts_with("The disk is full"),
        "{reason}"
    );
    assert_ne!(deferred.state, QueueState::Failed);

    // The other program deletes its file; the probe sees the space and the job resumes.
    std::fs::remove_file(&filler).unwrap();
    disk.set_available((4 << 20) + fs4::available_space(&volume.path).unwrap());
    let done = wait_state(&scheduler, job.id, QueueState::Done).await;
    assert!(done.defer_reason.is_none());
    let snapshot = snapshot_of(&settings.hub_cache, "t/big").expect("linked");
    assert_eq!(
        std::fs::metadata(snapshot.join("model.gguf"))
            .unwrap()
            .len(),
        MODEL_SIZE
    );
    scheduler.shutdown();
    drop(volume);
}
