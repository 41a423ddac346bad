//! The real probes on this machine (CI has no battery: it must read as "on AC", not fail) and a
//! scheduler running on them, reporting health.

mod scheduler_support;

use model_cache::policy::{
    Clock, DiskProbe, FsDiskProbe, PowerProbe, PowerSource, SystemClock, SystemPowerProbe,
};
use model_cache::scheduler::{Probes, SchedulerConfig};
use scheduler_support::*;

#[test]
fn real_power_disk_and_clock_probes_read_this_machine() {
    let power = SystemPowerProbe
        .power()
        .expect("reading the power state never fails here");
    match power.battery_percent {
        None => assert_eq!(power.source, PowerSource::Ac, "no battery means on AC"),
        Some(p) => assert!(p <= 100),
    }
    let dir = tempfile::tempdir().unwrap();
    let space = FsDiskProbe
        .space(dir.path())
        .expect("free space of the temp volume");
    assert!(space.total > 0 && space.available > 0 && space.available <= space.total);
    assert!(SystemClock.minute_of_day() < 1440);
    let memory = model_cache::policy::probe::system_memory().expect("memory");
    assert!(memory.available <= memory.total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_on_the_real_probes_downloads_and_reports_health() {
    let emulator = hub_emulator::Emulator::start(hub_emulator::EmulatorConfig {
        repos: vec![model_repo("t/real", 200_000, 31)],
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(dir.path(), emulator.url());
    let mut config = SchedulerConfig::new(settings.hub_cache.clone());
    // The temporary volume may be small: no reserve, so the real disk never defers this job.
    config.policy.reserve = model_cache::policy::ReservePolicy::NONE;
    let probes = Probes::system();
    let (scheduler, _index) = start_scheduler(&settings, config, probes);
    let job = scheduler.enqueue(job_for("t/real")).unwrap();
    let done = wait_job(&scheduler, job.id, "done", |j| j.state.is_terminal()).await;
    assert_eq!(
        done.state,
        model_cache::index::queue::QueueState::Done,
        "{done:#?}"
    );
    let health = scheduler.health().unwrap();
    assert!(health.volume.space.is_some_and(|s| s.available > 0));
    assert!(health.power.is_some());
    assert!(health.storage.used >= 200_000);
    assert!(health.counters.bytes_downloaded >= 200_000, "{health:#?}");
    assert_eq!(health.counters.misses, 2, "two files fetched: {health:#?}");
    // The report is what the local API serves: it serialises.
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["status"], "ok");
    scheduler.shutdown();
}
