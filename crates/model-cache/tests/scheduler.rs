//! The scheduler against the hub emulator and the real downloader, with fake power, disk and
//! clock: jobs defer with a readable reason when a condition stops them and resume by themselves
//! when it clears.

mod scheduler_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use hub_emulator::{Emulator, EmulatorConfig, Fault, FaultRule};
use model_cache::download::{Downloader, JobControl, Reporter};
use model_cache::hub::HubClient;
use model_cache::index::Index;
use model_cache::index::queue::QueueJob;
use model_cache::index::queue::QueueState;
use model_cache::policy::{BatteryPolicy, DeferReason, PowerState, ReservePolicy, ScheduleWindow};
use model_cache::policy::{Changes, DiskSpace, FakeClock, FakeDisk, FakePower};
use model_cache::scheduler::{
    DownloaderRunner, JobRunner, Probes, RunFailure, Scheduler, SchedulerConfig, StartedJob,
};
use scheduler_support::*;

/// Slows the CDN so a download is still running when the test changes a condition; the test
/// clears it once it wants the download to finish.
fn slow_cdn(rig: &Rig) {
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::TotalBandwidth(64 * 1024)).on("/cdn/*"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unplugging_defers_running_jobs_and_plugging_in_resumes_them() {
    let rig = rig(
        vec![
            model_repo("t/one", MODEL_SIZE, 1),
            model_repo("t/two", MODEL_SIZE, 2),
        ],
        |config| {
            config.policy.battery = BatteryPolicy::Below { percent: 30 };
            config.policy.max_running = 2;
        },
    )
    .await;
    slow_cdn(&rig);
    let one = rig.scheduler.enqueue(job_for("t/one")).unwrap();
    let two = rig.scheduler.enqueue(job_for("t/two")).unwrap();
    wait_downloading(&rig.scheduler, one.id).await;
    wait_downloading(&rig.scheduler, two.id).await;

    rig.power.set(PowerState::on_battery(23));
    for id in [one.id, two.id] {
        let job = wait_state(&rig.scheduler, id, QueueState::Deferred).await;
        let reason = job.defer_reason.expect("a deferred job says why");
        assert!(matches!(
            reason,
            DeferReason::OnBattery {
                percent: Some(23),
                ..
            }
        ));
        assert_eq!(reason.to_string(), "On battery (23%, policy: below 30%)");
    }

    // Plugged in: both resume by themselves, with nothing else to prompt them.
    rig.emulator.faults().clear();
    rig.power.set(PowerState::plugged_in(23));
    for id in [one.id, two.id] {
        let job = wait_state(&rig.scheduler, id, QueueState::Done).await;
        let total = job.bytes_total.expect("sized from the listing");
        assert!(total > MODEL_SIZE, "model and config: {total}");
        assert_eq!(job.bytes_done + job.bytes_saved, total);
        assert!(job.defer_reason.is_none());
    }
    for repo in ["t/one", "t/two"] {
        let snapshot = snapshot_of(rig.hub_cache(), repo).expect("a ref was written");
        let bytes = std::fs::read(snapshot.join("model.gguf")).unwrap();
        assert_eq!(bytes.len() as u64, MODEL_SIZE);
    }
    // Pausing kept the bytes: nothing was fetched twice beyond chunks in flight at the pause.
    let files = 2 * MODEL_SIZE;
    let in_flight = 2 * rig.settings.limits.connections as u64 * CHUNK;
    assert!(
        rig.emulator.bytes_served() <= files + in_flight + 4096,
        "served {} for {files} bytes of files",
        rig.emulator.bytes_served()
    );
    let health = rig.scheduler.health().unwrap();
    assert!(health.deferred_ms.contains_key("on_battery"), "{health:#?}");
    let history = rig.scheduler.speed_history(one.id).unwrap();
    assert!(!history.is_empty(), "progress was sampled");
    assert!(history.windows(2).all(|w| w[0].at <= w[1].at));
    // A model with a running download cannot be removed; a finished one can.
    let repo = model_cache::RepoId::model("t/one").unwrap();
    let removed = rig.scheduler.remove(&repo, None, false, false).unwrap();
    assert!(removed.bytes_freed >= MODEL_SIZE);
    assert!(snapshot_of(rig.hub_cache(), "t/one").is_none());
}

/// A connection whose metering the test sets.
struct TestMetering(AtomicBool);

impl model_cache::policy::MeteredProbe for TestMetering {
    fn metered(&self) -> Option<bool> {
        Some(self.0.load(Ordering::SeqCst))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_metered_connection_jobs_wait_when_the_policy_says_so() {
    let rig = rig(vec![model_repo("t/one", MODEL_SIZE, 1)], |config| {
        config.policy.on_metered = model_cache::policy::MeteredPolicy::Wait;
    })
    .await;
    let metering = Arc::new(TestMetering(AtomicBool::new(true)));
    let watcher = rig
        .scheduler
        .watch_metering(metering.clone(), std::time::Duration::from_millis(50));
    // The first reading lands before the job is looked at.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let one = rig.scheduler.enqueue(job_for("t/one")).unwrap();
    let job = wait_state(&rig.scheduler, one.id, QueueState::Deferred).await;
    let reason = job.defer_reason.expect("a deferred job says why");
    assert_eq!(reason, DeferReason::Metered);
    assert!(reason.to_string().contains("metered"), "{reason}");
    assert_eq!(rig.emulator.bytes_served(), 0, "nothing was fetched");

    // Another network: the job runs by itself.
    metering.0.store(false, Ordering::SeqCst);
    let job = wait_state(&rig.scheduler, one.id, QueueState::Done).await;
    assert!(job.defer_reason.is_none());

    // With the policy back to download, a metered connection does not hold a job.
    metering.0.store(true, Ordering::SeqCst);
    let mut policy = rig.scheduler.policy();
    policy.on_metered = model_cache::policy::MeteredPolicy::Download;
    rig.scheduler.set_policy(policy);
    let two = rig
        .scheduler
        .enqueue(job_for("t/one"))
        .expect("a second job of the same model (already cached)");
    wait_state(&rig.scheduler, two.id, QueueState::Done).await;
    watcher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crossing_the_reserve_defers_and_freed_space_resumes() {
    let rig = rig(vec![model_repo("t/one", MODEL_SIZE, 3)], |config| {
        config.policy.reserve = ReservePolicy {
            per_mille: 0,
            floor_bytes: 10 * GB,
        };
    })
    .await;
    slow_cdn(&rig);
    let job = rig.scheduler.enqueue(job_for("t/one")).unwrap();
    wait_downloading(&rig.scheduler, job.id).await;

    // Another program fills the disk to under the reserve.
    rig.disk.set_available(3 * GB);
    let deferred = wait_state(&rig.scheduler, job.id, QueueState::Deferred).await;
    let reason = deferred.defer_reason.unwrap();
    assert!(matches!(reason, DeferReason::DiskReserve { reserve, .. } if reserve == 10 * GB));
    assert!(
        reason
            .to_string()
            .starts_with("Free disk would drop under the reserve: needs "),
        "{reason}"
    );
    assert!(
        reason
            .to_string()
            .ends_with("free above the reserve of 10 GB"),
        "{reason}"
    );

    // Space freed: it resumes by itself and finishes.
    rig.emulator.faults().clear();
    rig.disk.set_available(500 * GB);
    wait_state(&rig.scheduler, job.id, QueueState::Done).await;

    // A new job that does not fit above the reserve waits with the figures, then runs.
    let more = model_repo("t/two", MODEL_SIZE, 4);
    rig.emulator.add_repo(more);
    rig.disk.set_available(10 * GB + 1000);
    let second = rig.scheduler.enqueue(job_for("t/two")).unwrap();
    let waiting = wait_state(&rig.scheduler, second.id, QueueState::Deferred).await;
    assert_eq!(
        waiting.defer_reason,
        Some(DeferReason::DiskReserve {
            needed: waiting.bytes_total.unwrap(),
            free_above_reserve: 1000,
            reserve: 10 * GB,
        }),
        "the size comes from the listing"
    );
    rig.disk.set_available(20 * GB);
    wait_state(&rig.scheduler, second.id, QueueState::Done).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_pause_schedule_window_cancel_and_queue_order() {
    let rig = rig(
        vec![
            model_repo("t/a", MODEL_SIZE, 5),
            model_repo("t/b", MODEL_SIZE, 6),
            model_repo("t/c", MODEL_SIZE, 7),
        ],
        |config| {
            config.policy.max_running = 1;
            config.policy.window = Some(ScheduleWindow::new((1, 0), (7, 0)));
        },
    )
    .await;
    // Noon is outside 01:00–07:00: everything waits, saying why.
    let a = rig.scheduler.enqueue(job_for("t/a")).unwrap();
    let waiting = wait_state(&rig.scheduler, a.id, QueueState::Deferred).await;
    assert_eq!(
        waiting.defer_reason.unwrap().to_string(),
        "Outside allowed hours (01:00–07:00)"
    );
    let b = rig.scheduler.enqueue(job_for("t/b")).unwrap();
    let c = rig.scheduler.enqueue(job_for("t/c")).unwrap();
    // c goes first; b is cancelled before it ever runs.
    rig.scheduler.move_to(c.id, 0).unwrap();
    rig.scheduler.cancel(b.id).unwrap();
    assert_eq!(
        rig.scheduler.job(b.id).unwrap().state,
        QueueState::Cancelled
    );
    assert!(
        rig.scheduler.pause(b.id).is_err(),
        "a cancelled job stays cancelled"
    );
    rig.scheduler.pause_all().unwrap();

    // 02:00: inside the window, but paused by the user.
    rig.clock.set_minute_of_day(2 * 60);
    let paused = wait_job(&rig.scheduler, c.id, "paused by you", |j| {
        j.defer_reason == Some(DeferReason::PausedByUser)
    })
    .await;
    assert_eq!(paused.defer_reason.unwrap().to_string(), "Paused by you");

    slow_cdn(&rig);
    rig.scheduler.resume_all().unwrap();
    // One at a time, in queue order: c first.
    wait_downloading(&rig.scheduler, c.id).await;
    assert_ne!(rig.scheduler.job(a.id).unwrap().state, QueueState::Running);
    rig.emulator.faults().clear();
    wait_state(&rig.scheduler, c.id, QueueState::Done).await;
    wait_state(&rig.scheduler, a.id, QueueState::Done).await;
    let c_done = rig.scheduler.job(c.id).unwrap().finished_at.unwrap();
    let a_started = rig.scheduler.job(a.id).unwrap().started_at.unwrap();
    assert!(
        a_started >= c_done,
        "a started after c finished (cap of one)"
    );
    assert!(
        snapshot_of(rig.hub_cache(), "t/b").is_none(),
        "cancelled job left no snapshot"
    );
}

/// Delegates to the real runner, except that the first start of `t/full` fails as if the disk
/// had filled (`ENOSPC` from the downloader).
struct FillsOnce {
    real: DownloaderRunner,
    failed: AtomicBool,
}

impl JobRunner for FillsOnce {
    fn size(&self, job: &QueueJob) -> BoxFuture<'static, Result<Option<u64>, RunFailure>> {
        self.real.size(job)
    }

    fn start(&self, job: &QueueJob, reporter: Arc<dyn Reporter>) -> StartedJob {
        if job.repo.id == "t/full" && !self.failed.swap(true, Ordering::SeqCst) {
            return StartedJob {
                control: JobControl::new(),
                outcome: Box::pin(async {
                    Err(RunFailure::DiskFull {
                        needed: MODEL_SIZE,
                        available: 500 * GB,
                    })
                }),
            };
        }
        self.real.start(job, reporter)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disk_that_fills_defers_instead_of_failing() {
    let emulator = Emulator::start(EmulatorConfig {
        repos: vec![
            model_repo("t/full", MODEL_SIZE, 8),
            model_repo("t/next", 1000, 9),
        ],
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(dir.path(), emulator.url());
    let changes = Changes::default();
    let disk = FakeDisk::new(
        DiskSpace {
            total: 1000 * GB,
            available: 500 * GB,
        },
        changes.clone(),
    );
    let probes = Probes {
        power: Arc::new(FakePower::new(PowerState::NO_BATTERY, changes.clone())),
        disk: Arc::new(disk.clone()),
        clock: Arc::new(FakeClock::new(
            std::time::SystemTime::now(),
            600,
            changes.clone(),
        )),
        changes: changes.clone(),
        watch_every: None,
    };
    let index = Index::open(&settings.data_dir).unwrap();
    let hub = HubClient::new(&settings).unwrap();
    let real = DownloaderRunner::new(hub.clone(), Downloader::new(&settings, hub, index.clone()));
    let runner = Arc::new(FillsOnce {
        real,
        failed: AtomicBool::new(false),
    });
    let scheduler = Scheduler::start(
        SchedulerConfig::new(settings.hub_cache.clone()),
        index,
        runner,
        probes,
    )
    .unwrap();

    let full = scheduler.enqueue(job_for("t/full")).unwrap();
    let deferred = wait_state(&scheduler, full.id, QueueState::Deferred).await;
    let reason = deferred.defer_reason.unwrap();
    assert_eq!(
        reason,
        DeferReason::DiskFull {
            needed: MODEL_SIZE,
            available: 500 * GB
        }
    );
    assert!(
        reason.to_string().starts_with("The disk is full"),
        "{reason}"
    );
    // Later passes run (another job is scheduled and finishes), yet the disk has not gained
    // space since the failure, so the job keeps waiting instead of failing again.
    let next = scheduler.enqueue(job_for("t/next")).unwrap();
    wait_state(&scheduler, next.id, QueueState::Done).await;
    assert_eq!(scheduler.job(full.id).unwrap().state, QueueState::Deferred);
    // Space returns: it resumes by itself and finishes.
    disk.set_available(501 * GB);
    wait_state(&scheduler, full.id, QueueState::Done).await;
    scheduler.shutdown();
}

/// Big enough to still be downloading at the slowed CDN's 64 KiB/s while the test looks.
const BIG: u64 = 32 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_download_is_not_starved_behind_big_ones() {
    let rig = rig(
        vec![
            model_repo("t/big1", BIG, 11),
            model_repo("t/big2", BIG, 12),
            model_repo("t/small", 64 * 1024, 13),
        ],
        |config| config.policy.max_running = 1,
    )
    .await;
    slow_cdn(&rig);
    let big1 = rig.scheduler.enqueue(job_for("t/big1")).unwrap();
    wait_downloading(&rig.scheduler, big1.id).await;
    let big2 = rig.scheduler.enqueue(job_for("t/big2")).unwrap();
    let small = rig.scheduler.enqueue(job_for("t/small")).unwrap();
    // The small one runs beside the big one (the small lane) and finishes first; the second
    // big one waits for the one slot.
    wait_state(&rig.scheduler, small.id, QueueState::Done).await;
    assert_eq!(
        rig.scheduler.job(big1.id).unwrap().state,
        QueueState::Running
    );
    assert_eq!(
        rig.scheduler.job(big2.id).unwrap().state,
        QueueState::Queued
    );
    assert!(snapshot_of(rig.hub_cache(), "t/small").is_some());
    rig.emulator.faults().clear();
    wait_state(&rig.scheduler, big1.id, QueueState::Done).await;
    wait_state(&rig.scheduler, big2.id, QueueState::Done).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moving_a_job_up_gives_it_the_slot_and_the_other_resumes_later() {
    let rig = rig(
        vec![
            model_repo("t/first", BIG, 21),
            model_repo("t/second", BIG, 22),
        ],
        |config| config.policy.max_running = 1,
    )
    .await;
    slow_cdn(&rig);
    let first = rig.scheduler.enqueue(job_for("t/first")).unwrap();
    wait_downloading(&rig.scheduler, first.id).await;
    let second = rig.scheduler.enqueue(job_for("t/second")).unwrap();
    assert_eq!(
        rig.scheduler.job(second.id).unwrap().state,
        QueueState::Queued
    );
    rig.scheduler.move_to(second.id, 0).unwrap();
    wait_downloading(&rig.scheduler, second.id).await;
    // The first went back to the queue with its bytes, not to the user's "paused".
    let waiting = wait_state(&rig.scheduler, first.id, QueueState::Queued).await;
    assert!(waiting.bytes_done > 0, "{waiting:#?}");
    assert_eq!(waiting.defer_reason, None);
    rig.emulator.faults().clear();
    wait_state(&rig.scheduler, second.id, QueueState::Done).await;
    wait_state(&rig.scheduler, first.id, QueueState::Done).await;
    let second_done = rig.scheduler.job(second.id).unwrap().finished_at.unwrap();
    let first_done = rig.scheduler.job(first.id).unwrap().finished_at.unwrap();
    assert!(
        first_done >= second_done,
        "one slot: the first finished after"
    );
    // The first resumed where it stopped: each file's bytes came from the CDN about once.
    let served = rig.emulator.log().bytes_served();
    assert!(
        served <= 2 * BIG + 2 * 1024 * 1024,
        "served {served} bytes for two {BIG}-byte files"
    );
}
