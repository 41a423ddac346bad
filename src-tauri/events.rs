//! From the local API's contract events to what the person sees outside the page: desktop
//! notifications and the tray's status line. (The page itself gets every event as is.)

use local_api::contract::{ContractEvent, Job};

/// The notification an event asks for: its title and body.
pub fn notification(event: &ContractEvent) -> Option<(String, String)> {
    match event {
        // The body may carry Hub text; servers that render markup must show it as text.
        ContractEvent::Notification(note) => Some((note.title.clone(), note.desktop_body())),
        _ => None,
    }
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
        let note = ContractEvent::Notification(Notification {
            level: "info".into(),
            title: "Download finished".into(),
            body: "demo/x".into(),
        });
        assert_eq!(
            notification(&note),
            Some(("Download finished".into(), "demo/x".into()))
        );
        let progress = ContractEvent::Progress(Progress {
            job_id: 1,
            path: "x".into(),
            done: 0,
            total: 1,
            speed_bps: 0,
        });
        assert_eq!(notification(&progress), None);
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
    }
}
