//! Per-job progress: a [`Reporter`] that keeps the job's byte counts and forwards every event.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use super::SchedulerEvent;
use crate::download::{DownloadEvent, Reporter};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Bytes on disk for files being or having been transferred.
    pub done: u64,
    /// Bytes of files found in the cache already (not downloaded).
    pub saved: u64,
    /// Files started over the network (cache misses) and skipped (hits).
    pub misses: u64,
    pub hits: u64,
}

#[derive(Default)]
struct Files {
    done: HashMap<String, u64>,
    saved: u64,
    misses: u64,
    hits: u64,
}

/// Tracks one job's progress from its download events.
pub(crate) struct JobProgress {
    job_id: i64,
    files: Mutex<Files>,
    events: broadcast::Sender<SchedulerEvent>,
}

impl JobProgress {
    pub(super) fn new(job_id: i64, events: broadcast::Sender<SchedulerEvent>) -> Self {
        JobProgress {
            job_id,
            files: Mutex::new(Files::default()),
            events,
        }
    }

    pub(super) fn counts(&self) -> Counts {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        Counts {
            done: files.done.values().sum(),
            saved: files.saved,
            misses: files.misses,
            hits: files.hits,
        }
    }
}

impl Reporter for JobProgress {
    fn report(&self, event: DownloadEvent) {
        {
            let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            match &event {
                DownloadEvent::FileStarted {
                    path,
                    resumed_bytes,
                    ..
                } => {
                    files.misses += 1;
                    let entry = files.done.entry(path.clone()).or_default();
                    *entry = (*entry).max(*resumed_bytes);
                }
                DownloadEvent::Bytes { path, done, .. } => {
                    files.done.insert(path.clone(), *done);
                }
                DownloadEvent::Restarted { path, .. } => {
                    files.done.insert(path.clone(), 0);
                }
                DownloadEvent::Skipped { bytes_saved, .. } => {
                    files.hits += 1;
                    files.saved += bytes_saved;
                }
                _ => {}
            }
        }
        // Nobody listening is fine: progress is also kept here and in the index.
        let _ = self.events.send(SchedulerEvent::Download {
            job_id: self.job_id,
            event,
        });
    }
}
