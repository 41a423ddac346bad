//! A Hub that cannot be reached does not fail a queued job: the job waits ("Waiting for the
//! network"), is tried again after a back-off (driven here by a fake clock), and finishes once
//! the Hub answers again. Errors that retrying cannot fix still fail at once.

mod scheduler_support;

use std::time::Duration;

use hub_emulator::{Fault, FaultRule};
use model_cache::index::queue::QueueState;
use model_cache::policy::DeferReason;
use scheduler_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_hub_defers_the_job_and_it_resumes_when_the_hub_answers() {
    let rig = rig(vec![model_repo("n/model", MODEL_SIZE, 7)], |_| {}).await;
    // Every request fails with 503, more times than the request-level retries allow.
    let outage = rig
        .emulator
        .faults()
        .set(FaultRule::global(Fault::ServerError(503)).times(1000));
    let job = rig.scheduler.enqueue(job_for("n/model")).unwrap();

    let waiting = wait_state(&rig.scheduler, job.id, QueueState::Deferred).await;
    match waiting.defer_reason.clone() {
        Some(DeferReason::NetworkUnavailable { attempt, .. }) => assert_eq!(attempt, 1),
        other => panic!("expected a network deferral, got {other:?}"),
    }
    assert!(
        waiting
            .defer_reason
            .as_ref()
            .unwrap()
            .to_string()
            .starts_with("Waiting for the network"),
        "{waiting:?}"
    );

    // The Hub is back, but the job waits for its retry time: a change signal alone does not
    // restart it.
    rig.emulator.faults().remove(outage);
    rig.changes.notify();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = rig
        .scheduler
        .jobs()
        .unwrap()
        .into_iter()
        .find(|j| j.id == job.id)
        .unwrap();
    assert_eq!(still.state, QueueState::Deferred, "{still:?}");

    // Once the back-off has passed, it runs and finishes.
    rig.clock.advance(Duration::from_secs(31));
    let done = wait_state(&rig.scheduler, job.id, QueueState::Done).await;
    assert!(done.defer_reason.is_none());
    assert!(snapshot_of(rig.hub_cache(), "n/model").is_some());
    rig.scheduler.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_repo_still_fails_at_once() {
    let rig = rig(vec![model_repo("n/model", MODEL_SIZE, 7)], |_| {}).await;
    let job = rig.scheduler.enqueue(job_for("n/gone")).unwrap();
    let failed = wait_state(&rig.scheduler, job.id, QueueState::Failed).await;
    assert!(failed.error.unwrap().contains("n/gone"));
    rig.scheduler.shutdown();
}
