//! Translation from the engine's types to the v1 JSON shapes of `docs/local-api.md`.
//!
//! The engine's own types carry more (and differently named) detail; the contract is what the
//! UI and other programs rely on, so the mapping lives in one place and is tested against it.
//! [`Tracker`] keeps what the contract's `Job` has but the queue does not: per-file progress,
//! speed, the failure kind and the snapshot path, fed from the engine's event stream.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use model_cache::download::DownloadEvent;
use model_cache::engine::{Engine, Preferences, VariantsReport};
use model_cache::index::queue::{QueueJob, QueueState};
use model_cache::policy::{BatteryPolicy, ScheduleWindow};
use model_cache::scheduler::SchedulerEvent;
use serde_json::{Value, json};

/// A variant report in the contract's shape.
pub fn variants(report: &VariantsReport) -> Value {
    let mut recommended_name = Value::Null;
    let variants: Vec<Value> = report
        .variants
        .iter()
        .map(|view| {
            let v = &view.variant;
            if report.recommended.as_deref() == Some(v.id.as_str()) {
                recommended_name = json!(v.name);
            }
            let files = |list: &[model_cache::variants::VariantFile]| -> Vec<Value> {
                list.iter()
                    .map(|f| json!({"path": f.path, "size": f.size}))
                    .collect()
            };
            let extras: Vec<Value> = v
                .projectors
                .iter()
                .map(|f| json!({"path": f.path, "size": f.size, "kind": "projector"}))
                .chain(
                    v.extras
                        .iter()
                        .map(|f| json!({"path": f.path, "size": f.size, "kind": "extra"})),
                )
                .collect();
            let fit = &view.fit;
            let machine = &fit.machine;
            json!({
                "id": v.id,
                "name": v.name,
                "format": v.format,
                "quant": v.quant,
                "bits_per_weight": v.bits_per_weight,
                "size_bytes": v.total_size,
                "files": files(&v.files),
                "companions": files(&v.companions),
                "extras": extras,
                "complete": v.complete,
                "fit": {
                    "tier": fit.tier,
                    "needed_bytes": fit.needed_bytes,
                    "available_bytes": machine.available_ram,
                },
                "recommended": view.recommended,
                "warnings": v.warnings.iter().map(|w| w.message.clone()).collect::<Vec<_>>(),
                "header": v.shape,
            })
        })
        .collect();
    json!({
        "repo": report.repo,
        "revision": report.revision,
        "commit": report.commit,
        "variants": variants,
        "recommended": recommended_name,
        "machine": {
            "total_ram": report.machine.total_ram,
            "available_ram": report.machine.available_ram,
            "vram": report.machine.vram_total,
        },
    })
}

/// Settings in the contract's `AppSettings` shape.
pub fn settings(engine: &Engine) -> Value {
    let prefs = engine.preferences();
    let current = engine.settings();
    let schedule = prefs.schedule.clone().unwrap_or_default();
    let (mode, percent) = match schedule.battery {
        BatteryPolicy::Never => ("never", 30),
        BatteryPolicy::Below { percent } => ("below", percent),
        BatteryPolicy::Always => ("always", 30),
    };
    let window = schedule
        .window
        .map(|w| json!({"start": hhmm(w.start_minute), "end": hhmm(w.end_minute)}));
    json!({
        "cache_dir": prefs.cache_dir.clone().unwrap_or_else(|| current.hub_cache.clone()),
        "size_budget_bytes": prefs.cache.as_ref().and_then(|c| c.budget),
        "max_rate_bps": prefs.max_rate_bps.filter(|r| *r > 0),
        "battery_policy": {"mode": mode, "percent": percent},
        "disk_reserve_bytes": schedule.reserve.floor_bytes,
        "schedule": window,
        "mirrors": prefs.mirrors.clone().unwrap_or_else(|| current.mirrors.clone()),
        "endpoint": prefs.endpoint.clone().unwrap_or_else(|| current.endpoint.clone()),
        "token_set": engine.has_token(),
        "offline": prefs.offline.unwrap_or(current.offline),
        "connections": prefs.connections.unwrap_or(current.limits.connections),
    })
}

fn hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn parse_hhmm(text: &str) -> Result<(u16, u16), String> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not a time (HH:MM)"))?;
    let h: u16 = h
        .parse()
        .map_err(|_| format!("`{text}` is not a time (HH:MM)"))?;
    let m: u16 = m
        .parse()
        .map_err(|_| format!("`{text}` is not a time (HH:MM)"))?;
    if h > 23 || m > 59 {
        return Err(format!("`{text}` is not a time of day"));
    }
    Ok((h, m))
}

/// Turns a partial `AppSettings` into a preferences patch; unknown or read-only fields are
/// refused so a typo never silently does nothing.
pub fn settings_patch(engine: &Engine, body: &Value) -> Result<Preferences, String> {
    let object = body
        .as_object()
        .ok_or("The settings must be a JSON object")?;
    let mut patch = Preferences::default();
    let current = engine.preferences();
    let mut schedule = current.schedule.clone().unwrap_or_default();
    let mut schedule_changed = false;
    for (key, value) in object {
        match key.as_str() {
            "cache_dir" => {
                let dir = value
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .ok_or("`cache_dir` must be a folder path")?;
                patch.cache_dir = Some(dir.into());
            }
            "size_budget_bytes" => {
                let mut cache = current.cache.clone().unwrap_or_default();
                cache.budget = match value {
                    Value::Null => None,
                    v => Some(
                        v.as_u64()
                            .ok_or("`size_budget_bytes` must be a number of bytes or null")?,
                    ),
                };
                patch.cache = Some(cache);
            }
            "max_rate_bps" => {
                patch.max_rate_bps = Some(match value {
                    Value::Null => 0,
                    v => match v.as_u64() {
                        Some(0) | None => {
                            return Err("`max_rate_bps` must be a positive number of bytes per second, or null for no limit".into());
                        }
                        Some(n) => n,
                    },
                });
            }
            "battery_policy" => {
                let mode = value
                    .get("mode")
                    .and_then(Value::as_str)
                    .ok_or("`battery_policy.mode` must be `never`, `below` or `always`")?;
                schedule.battery = match mode {
                    "never" => BatteryPolicy::Never,
                    "always" => BatteryPolicy::Always,
                    "below" => {
                        let percent = value
                            .get("percent")
                            .and_then(Value::as_u64)
                            .filter(|p| *p <= 100)
                            .ok_or("`battery_policy.percent` must be 0 to 100")?;
                        BatteryPolicy::Below {
                            percent: percent as u8,
                        }
                    }
                    other => {
                        return Err(format!(
                            "`{other}` is not a battery mode (never, below, always)"
                        ));
                    }
                };
                schedule_changed = true;
            }
            "disk_reserve_bytes" => {
                schedule.reserve.floor_bytes = value
                    .as_u64()
                    .ok_or("`disk_reserve_bytes` must be a number of bytes")?;
                schedule_changed = true;
            }
            "schedule" => {
                schedule.window = match value {
                    Value::Null => None,
                    v => {
                        let start = v
                            .get("start")
                            .and_then(Value::as_str)
                            .ok_or("`schedule.start` is missing")?;
                        let end = v
                            .get("end")
                            .and_then(Value::as_str)
                            .ok_or("`schedule.end` is missing")?;
                        Some(ScheduleWindow::new(parse_hhmm(start)?, parse_hhmm(end)?))
                    }
                };
                schedule_changed = true;
            }
            "mirrors" => {
                let list = value.as_array().ok_or("`mirrors` must be a list of URLs")?;
                let mut mirrors = Vec::new();
                for m in list {
                    let url = m.as_str().ok_or("`mirrors` must be a list of URLs")?;
                    check_url(url)?;
                    mirrors.push(url.trim_end_matches('/').to_string());
                }
                patch.mirrors = Some(mirrors);
            }
            "endpoint" => {
                let url = value.as_str().ok_or("`endpoint` must be a URL")?;
                check_url(url)?;
                patch.endpoint = Some(url.trim_end_matches('/').to_string());
            }
            "offline" => {
                patch.offline = Some(value.as_bool().ok_or("`offline` must be true or false")?)
            }
            "connections" => {
                let n = value
                    .as_u64()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or("`connections` must be 1 to 256")?;
                patch.connections = Some(n as usize);
            }
            "token_set" => return Err("`token_set` is read-only; use `POST /api/token`".into()),
            other => return Err(format!("Unknown setting `{other}`")),
        }
    }
    if schedule_changed {
        patch.schedule = Some(schedule);
    }
    Ok(patch)
}

fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("`{url}` is not an http(s) URL"))
    }
}

/// Per-file progress of one job, as the events reported it.
#[derive(Debug, Clone, Default)]
struct FileProgress {
    size: u64,
    done: u64,
    state: &'static str,
}

#[derive(Debug, Default)]
struct JobProgress {
    files: Vec<(String, FileProgress)>,
    speed_bps: f64,
    last: Option<(Instant, u64)>,
    last_sent: Option<Instant>,
    error_kind: Option<String>,
    commit: Option<String>,
}

impl JobProgress {
    fn file(&mut self, path: &str) -> &mut FileProgress {
        if let Some(i) = self.files.iter().position(|(p, _)| p == path) {
            return &mut self.files[i].1;
        }
        self.files.push((
            path.to_string(),
            FileProgress {
                state: "queued",
                ..FileProgress::default()
            },
        ));
        let last = self.files.len() - 1;
        &mut self.files[last].1
    }

    fn bytes_done(&self) -> u64 {
        self.files.iter().map(|(_, f)| f.done).sum()
    }
}

/// What the contract's jobs and events need beyond the queue rows.
#[derive(Debug, Default)]
pub struct Tracker {
    jobs: Mutex<HashMap<i64, JobProgress>>,
}

/// Progress events closer together than this (per job) are dropped, except a file's last one.
const PROGRESS_INTERVAL_MS: u128 = 250;

impl Tracker {
    /// A queue row in the contract's `Job` shape.
    pub fn job(&self, engine: &Engine, job: &QueueJob) -> Value {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let progress = jobs.get(&job.id);
        let running = job.state == QueueState::Running;
        let files: Vec<Value> = progress
            .map(|p| {
                p.files
                    .iter()
                    .map(|(path, f)| json!({"path": path, "size": f.size, "done": f.done, "state": f.state}))
                    .collect()
            })
            .unwrap_or_default();
        let total = job.bytes_total.unwrap_or(0);
        // The queue counts bytes saved by the cache apart; the UI shows them as done.
        let mut done = job.bytes_done + job.bytes_saved;
        if let Some(p) = progress {
            done = done.max(p.bytes_done());
        }
        if job.state == QueueState::Done {
            done = done.max(total);
        }
        let speed = if running {
            progress.map_or(0.0, |p| p.speed_bps)
        } else {
            0.0
        };
        let eta = (running && speed > 0.0)
            .then(|| (total.saturating_sub(done) as f64 / speed).ceil() as u64);
        let reason = job.defer_message.clone().or_else(|| {
            job.defer_reason
                .as_ref()
                .and_then(|r| serde_json::to_value(r).ok())
                .and_then(|v| v.get("kind").and_then(Value::as_str).map(str::to_string))
        });
        let error = job.error.as_ref().map(|message| {
            let kind = progress
                .and_then(|p| p.error_kind.clone())
                .unwrap_or_else(|| "internal".into());
            let (message, hint) = match message.split_once("\nhint: ") {
                Some((m, h)) => (m.to_string(), Some(h.to_string())),
                None => (message.clone(), None),
            };
            json!({"kind": kind, "message": message, "hint": hint})
        });
        let snapshot_path = progress
            .and_then(|p| p.commit.as_ref())
            .filter(|_| job.state == QueueState::Done)
            .map(|commit| engine.cache().repo(&job.repo).snapshot_dir(commit));
        json!({
            "id": job.id,
            "repo": job.repo.to_string(),
            "revision": job.revision,
            "variant": job.selection.variant,
            "state": job.state.as_str(),
            "reason": reason,
            "bytes_done": done.min(total.max(done)),
            "bytes_total": total,
            "speed_bps": speed.round() as u64,
            "eta_seconds": eta,
            "files": files,
            "error": error,
            "snapshot_path": snapshot_path,
        })
    }

    /// Updates the tracker with an engine event and returns the contract events to send.
    pub fn translate(&self, engine: &Engine, event: &SchedulerEvent) -> Vec<Value> {
        match event {
            SchedulerEvent::JobChanged { job } => {
                let mut out = vec![];
                let mut value = self.job(engine, job);
                if let Some(object) = value.as_object_mut() {
                    object.insert("type".into(), json!("job"));
                }
                out.push(value);
                let repo = job.repo.to_string();
                let note = match job.state {
                    QueueState::Done => Some(("info", "Download finished", repo)),
                    QueueState::Failed => Some((
                        "error",
                        "Download failed",
                        format!("{repo}: {}", job.error.clone().unwrap_or_default()),
                    )),
                    QueueState::Deferred => Some((
                        "info",
                        "Download waiting",
                        format!("{repo}: {}", job.defer_message.clone().unwrap_or_default()),
                    )),
                    _ => None,
                };
                if let Some((level, title, body)) = note {
                    out.push(json!({"type": "notification", "level": level, "title": title, "body": body}));
                }
                out
            }
            SchedulerEvent::Download { job_id, event } => self.progress(*job_id, event),
            _ => vec![],
        }
    }

    fn progress(&self, job_id: i64, event: &DownloadEvent) -> Vec<Value> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let job = jobs.entry(job_id).or_default();
        let now = Instant::now();
        let (path, force) = match event {
            DownloadEvent::FileStarted {
                path,
                size,
                resumed_bytes,
                ..
            } => {
                let f = job.file(path);
                f.size = *size;
                f.done = *resumed_bytes;
                f.state = "running";
                (path.clone(), true)
            }
            DownloadEvent::Bytes {
                path, done, total, ..
            } => {
                let f = job.file(path);
                f.size = *total;
                f.done = *done;
                f.state = "running";
                (path.clone(), done >= total)
            }
            DownloadEvent::Verifying { path, .. } => {
                job.file(path).state = "verifying";
                return vec![];
            }
            DownloadEvent::Verified { path, .. } | DownloadEvent::Linked { path, .. } => {
                let f = job.file(path);
                f.done = f.size;
                f.state = "done";
                (path.clone(), true)
            }
            DownloadEvent::Skipped {
                path, bytes_saved, ..
            } => {
                let f = job.file(path);
                f.size = f.size.max(*bytes_saved);
                f.done = f.size;
                f.state = "done";
                (path.clone(), true)
            }
            DownloadEvent::Failed { path, kind, .. } => {
                job.file(path).state = "failed";
                job.error_kind = Some(kind.clone());
                return vec![];
            }
            DownloadEvent::Finished { commit, .. } => {
                job.commit = Some(commit.clone());
                return vec![];
            }
            _ => return vec![],
        };
        // Speed: bytes across the job's files over time, smoothed.
        let total_done = job.bytes_done();
        if let Some((at, before)) = job.last {
            let secs = now.duration_since(at).as_secs_f64();
            if secs >= 0.2 {
                let instant = total_done.saturating_sub(before) as f64 / secs;
                job.speed_bps = if job.speed_bps == 0.0 {
                    instant
                } else {
                    0.7 * job.speed_bps + 0.3 * instant
                };
                job.last = Some((now, total_done));
            }
        } else {
            job.last = Some((now, total_done));
        }
        let due = job
            .last_sent
            .is_none_or(|at| now.duration_since(at).as_millis() >= PROGRESS_INTERVAL_MS);
        if !(force || due) {
            return vec![];
        }
        job.last_sent = Some(now);
        let f = job.file(&path).clone();
        let speed = job.speed_bps.round() as u64;
        vec![
            json!({"type": "progress", "job_id": job_id, "path": path, "done": f.done, "total": f.size, "speed_bps": speed}),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(hhmm(0), "00:00");
        assert_eq!(hhmm(22 * 60 + 5), "22:05");
        assert_eq!(parse_hhmm("07:30"), Ok((7, 30)));
        assert!(parse_hhmm("24:00").is_err());
        assert!(parse_hhmm("7").is_err());
    }
}
