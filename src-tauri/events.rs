//! From the local API's contract events to what the person sees outside the page: desktop
//! notifications and the tray's status line. (The page itself gets every event as is.)

use serde_json::Value;

/// The notification an event asks for: `{"type": "notification", "title", "body"}`.
pub fn notification(event: &Value) -> Option<(String, String)> {
    if event["type"] != "notification" {
        return None;
    }
    Some((
        event["title"].as_str()?.to_string(),
        event["body"].as_str().unwrap_or_default().to_string(),
    ))
}

/// The tray's status line from the contract's job list: active downloads and their total speed.
pub fn tray_status(jobs: &Value, paused: bool) -> String {
    if paused {
        return "Paused".to_string();
    }
    let jobs = jobs.as_array().map(Vec::as_slice).unwrap_or_default();
    let count = |state: &str| jobs.iter().filter(|j| j["state"] == state).count();
    let running = count("running");
    let waiting = count("queued") + count("deferred");
    let speed: u64 = jobs
        .iter()
        .filter(|j| j["state"] == "running")
        .filter_map(|j| j["speed_bps"].as_u64())
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
    use serde_json::json;

    #[test]
    fn notifications_come_from_notification_events_only() {
        let note = json!({"type": "notification", "level": "info", "title": "Download finished", "body": "demo/x"});
        assert_eq!(
            notification(&note),
            Some(("Download finished".into(), "demo/x".into()))
        );
        assert_eq!(
            notification(&json!({"type": "progress", "title": "x"})),
            None
        );
    }

    #[test]
    fn tray_status_reads_well() {
        assert_eq!(tray_status(&json!([]), false), "Idle");
        assert_eq!(tray_status(&json!([]), true), "Paused");
        let waiting = json!([{"state": "queued"}, {"state": "deferred"}, {"state": "done"}]);
        assert_eq!(tray_status(&waiting, false), "2 waiting");
        let running = json!([{"state": "running", "speed_bps": 2_000_000}, {"state": "queued"}]);
        let text = tray_status(&running, false);
        assert!(text.starts_with("1 downloading · "), "{text}");
        assert!(text.ends_with("/s"), "{text}");
    }
}
