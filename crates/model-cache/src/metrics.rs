//! Metrics and the health report.
//!
//! Counters live in the index (`metrics`: bytes downloaded, bytes served from the cache, hits
//! and misses), with per-download speed samples and time spent deferred per reason (see
//! [`crate::index::queue`]). [`HealthReport`] gathers them with storage against the budget and
//! the machine's power and disk state; `mcache doctor`/`stats` print it and the local API's health
//! endpoint serves it as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::index::queue::{self, QueueState};
use crate::index::{Index, IndexError, metric};
use crate::policy::cleanup::{Janitor, StorageReport};
use crate::policy::{DiskProbe, DiskSpace, PolicyError, PowerProbe, PowerState, SchedulePolicy};

/// Errors while gathering a report.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Download counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub bytes_downloaded: u64,
    /// Bytes not downloaded because the cache had them (same file, or same blob elsewhere).
    pub bytes_from_cache: u64,
    /// Bytes of downloaded files copied from cached blobs holding the same Xet chunks (counted
    /// in `bytes_from_cache` too).
    #[serde(default)]
    pub bytes_reused: u64,
    pub hits: u64,
    pub misses: u64,
}

impl Counters {
    /// Share of files served from the cache, in percent; `None` before any file.
    pub fn hit_rate_percent(&self) -> Option<u8> {
        let total = self.hits + self.misses;
        (total > 0).then(|| (self.hits * 100 / total) as u8)
    }
}

/// The volume holding the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeReport {
    pub space: Option<DiskSpace>,
    pub reserve: Option<u64>,
}

/// Everything `doctor`, `stats` and the health endpoint show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `ok`, `warning` (an alert threshold crossed, jobs failed) or `critical` (over budget, free
    /// space under the reserve).
    pub status: String,
    pub storage: StorageReport,
    pub volume: VolumeReport,
    pub power: Option<PowerState>,
    pub counters: Counters,
    pub hit_rate_percent: Option<u8>,
    /// Jobs per state (`queued`, `running`, `deferred`, ...).
    pub jobs: BTreeMap<String, u64>,
    /// Milliseconds jobs spent deferred, per reason kind.
    pub deferred_ms: BTreeMap<String, i64>,
    /// Human-readable problems, most serious first.
    pub problems: Vec<String>,
}

/// Reads the counters (the downloader records `bytes_saved`; older rows may say
/// `bytes_from_cache`; both count).
pub fn counters(index: &Index) -> Result<Counters, IndexError> {
    let all = index.metrics()?;
    let get = |name: &str| all.get(name).copied().unwrap_or(0).max(0) as u64;
    Ok(Counters {
        bytes_downloaded: get(metric::BYTES_DOWNLOADED),
        bytes_from_cache: get(metric::BYTES_FROM_CACHE) + get("bytes_saved"),
        bytes_reused: get("bytes_reused"),
        hits: get(metric::HITS),
        misses: get(metric::MISSES),
    })
}

impl HealthReport {
    /// Gathers a report.
    pub fn collect(
        index: &Index,
        janitor: &Janitor,
        policy: &SchedulePolicy,
        power: &dyn PowerProbe,
        disk: &dyn DiskProbe,
        now_ms: i64,
    ) -> Result<HealthReport, MetricsError> {
        let storage = janitor.storage()?;
        let counters = counters(index)?;
        let mut jobs = BTreeMap::new();
        for job in index.with_conn("list jobs", queue::list)? {
            *jobs.entry(job.state.as_str().to_string()).or_insert(0) += 1;
        }
        let deferred_ms = index
            .with_conn("read deferral time", |c| queue::deferred_time(c, now_ms))?
            .into_iter()
            .collect();
        let space = disk.space(&janitor.hub_cache).ok();
        let reserve = space.map(|s| policy.reserve.reserve_bytes(s.total));
        let mut problems = Vec::new();
        let mut status = "ok";
        if let (Some(space), Some(reserve)) = (space, reserve)
            && space.available < reserve
        {
            status = "critical";
            problems.push(format!(
                "Free space is under the reserve: {} free, reserve {}",
                crate::policy::HumanBytes(space.available),
                crate::policy::HumanBytes(reserve)
            ));
        }
        if let (Some(budget), Some(percent)) = (storage.budget, storage.percent_of_budget) {
            if storage.used > budget {
                status = "critical";
                problems.push(format!(
                    "The cache is over its budget: {} used of {} ({percent}%)",
                    crate::policy::HumanBytes(storage.used),
                    crate::policy::HumanBytes(budget)
                ));
            } else if let Some(alert) = storage.alert {
                if status == "ok" {
                    status = "warning";
                }
                problems.push(format!(
                    "The cache is at {percent}% of its budget (alert at {alert}%)"
                ));
            }
        }
        let failed = jobs.get(QueueState::Failed.as_str()).copied().unwrap_or(0);
        if failed > 0 {
            if status == "ok" {
                status = "warning";
            }
            problems.push(format!("{failed} job(s) failed"));
        }
        Ok(HealthReport {
            status: status.to_string(),
            hit_rate_percent: counters.hit_rate_percent(),
            storage,
            volume: VolumeReport { space, reserve },
            power: power.power().ok(),
            counters,
            jobs,
            deferred_ms,
            problems,
        })
    }
}
