//! Snapshots of the scheduler's serialised boundary types: what the local API, the app and
//! `mcache --json` see. A change here is a change of the API.

use model_cache::RepoId;
use model_cache::index::queue::{QueueJob, QueueState, Selection};
use model_cache::policy::{BatteryPolicy, DeferReason, ScheduleWindow};
use model_cache::scheduler::SchedulerEvent;

fn job() -> QueueJob {
    QueueJob {
        id: 7,
        repo: RepoId::model("org/model-GGUF").unwrap(),
        revision: "main".into(),
        selection: Selection {
            files: vec!["model-Q4_K_M.gguf".into(), "config.json".into()],
            include: vec![],
            exclude: vec![],
            variant: Some("Q4_K_M".into()),
        },
        priority: 1,
        position: 0,
        state: QueueState::Deferred,
        defer_reason: Some(DeferReason::OnBattery {
            percent: Some(23),
            policy: BatteryPolicy::Below { percent: 30 },
        }),
        defer_message: Some("On battery (23%, policy: below 30%)".into()),
        deferred_since: Some(1_700_000_000_000),
        bytes_total: Some(4_100_000_000),
        bytes_done: 1_000_000,
        bytes_saved: 0,
        error: None,
        error_kind: None,
        error_hints: vec![],
        convert: None,
        created_at: 1_699_999_000_000,
        updated_at: 1_700_000_000_000,
        started_at: Some(1_699_999_500_000),
        finished_at: None,
    }
}

#[test]
fn queue_job_and_events_serialise_stably() {
    insta::assert_json_snapshot!("queue_job", job());
    insta::assert_json_snapshot!(
        "job_changed_event",
        SchedulerEvent::JobChanged {
            job: Box::new(job())
        }
    );
    let reasons = vec![
        DeferReason::DiskReserve {
            needed: 4_100_000_000,
            free_above_reserve: 3_200_000_000,
            reserve: 10_000_000_000,
        },
        DeferReason::DiskFull {
            needed: 1,
            available: 0,
        },
        DeferReason::OutsideHours {
            window: ScheduleWindow::new((1, 0), (7, 0)),
        },
        DeferReason::PausedByUser,
    ];
    insta::assert_json_snapshot!("defer_reasons", reasons);
    let shown: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
    insta::assert_json_snapshot!("defer_reasons_shown", shown);
}
