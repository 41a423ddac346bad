//! From the local API's contract events to what the person sees outside the page: desktop
//! notifications and the tray's status line. (The page itself gets every event as is.)

use local_api::contract::{ContractEvent, Job};
use model_cache::engine::NotificationPreferences;

/// The desktop notification an event asks for, its title and body, unless the person turned
/// its kind off in Settings (notices without a kind always show).
pub fn notification(
    event: &ContractEvent,
    wanted: &NotificationPreferences,
) -> Option<(String, String)> {
    match event {
        ContractEvent::Notification(note) if note.kind.is_none_or(|kind| wanted.allows(kind)) => {
            // The body may carry Hub text; servers that render markup must show it as text.
            Some((note.title.clone(), note.desktop_body()))
        }
        _ => None,
    }
}

/// Whether an event can change the tray's status line (a job's state, bytes arriving).
pub fn changes_tray(event: &ContractEvent) -> bool {
    matches!(event, ContractEvent::Job(_) | ContractEvent::Progress(_))
}

/// The tray's status line from the contract's job list: active downloads and their total speed.
pub fn tray_status(jobs: &[Job], paused: bool) -> String {
    if paused {
        return "Paused".to_string();
    }
    let count = |state: &str| jobs.iter().filter(|j| j.state == state).count();
    let running = count("running");
    let waiting = count("queued") + count("deferred");
    let speed: u64 = jobs
        .iter()
        .filter(|j| j.state == "running")
        .map(|j| j.speed_bps)
        .sum();
    match (running, waiting) {
        (0, 0) => "Idle".to_string(),
        (0, w) => format!("{w} waiting"),
        // Before the first bytes a speed of 0 B/s reads like a stall: say nothing of it.
        (r, _) if speed == 0 => format!("{r} downloading"),
        (r, _) => format!(
            "{r} downloading · {}/s",
            model_cache::policy::HumanBytes(speed)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use local_api::contract::{Notification, Progress};
    use model_cache::engine::NotificationKind;

    fn job(state: &str, speed_bps: u64) -> Job {
        Job {
            id: 1,
            repo: "demo/x".into(),
            revision: "main".into(),
            variant: None,
            state: state.into(),
            reason: None,
            bytes_done: 0,
            bytes_total: 0,
            speed_bps,
            eta_seconds: None,
            files: vec![],
            error: None,
            snapshot_path: None,
        }
    }

    #[test]
    fn notifications_come_from_notification_events_only() {
        let all = NotificationPreferences::default();
        let note = ContractEvent::Notification(Notification {
            level: "info".into(),
            kind: Some(NotificationKind::Finished),
            title: "Download finished".into(),
            body: "demo/x".into(),
        });
        assert_eq!(
            notification(&note, &all),
            Some(("Download finished".into(), "demo/x".into()))
        );
        assert!(!changes_tray(&note));
        let progress = ContractEvent::Progress(Progress {
            job_id: 1,
            path: "x".into(),
            done: 0,
            total: 1,
            speed_bps: 0,
        });
        assert_eq!(notification(&progress, &all), None);
        assert!(changes_tray(&progress));
    }

    /// Each kind the person turned off in Settings stays off the desktop; the others, and
    /// notices without a kind, still show.
    #[test]
    fn a_kind_turned_off_is_not_shown() {
        for off in NotificationKind::ALL {
            let mut wanted = NotificationPreferences::default();
            wanted.set(off, false);
            for kind in NotificationKind::ALL {
                let note = ContractEvent::Notification(Notification {
                    level: "info".into(),
                    kind: Some(kind),
                    title: kind.as_str().into(),
                    body: "b".into(),
                });
                assert_eq!(
                    notification(&note, &wanted).is_some(),
                    kind != off,
                    "{kind:?} with {off:?} off"
                );
            }
            let always = ContractEvent::Notification(Notification {
                level: "info".into(),
                kind: None,
                title: "Cache drive not connected".into(),
                body: "b".into(),
            });
            assert!(notification(&always, &wanted).is_some());
        }
    }

    #[test]
    fn tray_status_reads_well() {
        assert_eq!(tray_status(&[], false), "Idle");
        assert_eq!(tray_status(&[], true), "Paused");
        let waiting = [job("queued", 0), job("deferred", 0), job("done", 0)];
        assert_eq!(tray_status(&waiting, false), "2 waiting");
        let running = [job("running", 2_000_000), job("queued", 0)];
        let text = tray_status(&running, false);
        assert!(text.starts_with("1 downloading · "), "{text}");
        assert!(text.ends_with("/s"), "{text}");
        assert_eq!(
            tray_status(&[job("running", 0), job("running", 0)], false),
            "2 downloading"
        );
    }
}
