//! Room for a download, asked before it is queued: does it fit in the free space above the
//! reserve, and in the cache's budget? When it does not, the answer names what the
//! least-recently-used eviction would remove, so the user can agree to exactly that, raise the
//! budget, or cancel. Nothing is evicted without consent; the "evict to make room" and
//! "clean up in the background" settings are that consent given once.

use serde::{Deserialize, Serialize};

use super::{Engine, EngineError, PullPlan};
use crate::scheduler::{SchedulerError, eviction_key};

/// Whether a download fits, and what making room would take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// Bytes the download will write (what the cache does not hold yet).
    pub needed: u64,
    /// Free space of the cache's volume above the reserve it always leaves.
    pub free_above_reserve: u64,
    /// The reserve in bytes.
    pub reserve: u64,
    /// Bytes missing on the disk (0 when the download fits).
    pub disk_short: u64,
    /// The cache's size now; `None` when no budget is set (the cache is not measured then: a
    /// scan of every file, on each download asked for, would buy nothing).
    pub used: Option<u64>,
    /// The cache's budget, when one is set.
    pub budget: Option<u64>,
    /// How far over its budget the cache would be after the download (0 when within it).
    pub over_budget_by: u64,
    /// It fits on the disk and in the budget.
    pub fits: bool,
    /// The settings already agree to evicting for what is short ("evict to make room" for the
    /// disk, "clean up in the background" for the budget): no question to ask.
    pub consent: bool,
    /// What the least-recently-used eviction would remove to make the room, in order.
    pub evictions: Vec<RoomEviction>,
    /// Removing all of `evictions` makes enough room (pinned models and models being
    /// downloaded are never listed).
    pub evictions_enough: bool,
}

/// One model (or one variant of it) making room would remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEviction {
    /// What the user agrees to when they agree to this one (`repo@commit[#variant]`), given
    /// back with the pull.
    pub key: String,
    pub repo: String,
    pub commit: String,
    pub variant: Option<String>,
    /// Refs pointing at the commit (`main`).
    pub refs: Vec<String>,
    /// Bytes its removal frees.
    pub bytes_freed: u64,
}

impl Room {
    /// Bytes to free for the download to fit both on the disk and in the budget.
    pub fn to_free(&self) -> u64 {
        self.disk_short.max(self.over_budget_by)
    }
}

impl Engine {
    /// Whether the planned download fits, and what making room would remove.
    pub fn room_for(&self, plan: &PullPlan) -> Result<Room, EngineError> {
        let scheduler = &self.inner.scheduler;
        let needed = plan.total_bytes.saturating_sub(plan.cached_bytes);
        let policy = scheduler.policy();
        let disk = scheduler.disk_space();
        let reserve = policy.reserve.reserve_bytes(disk.total);
        let free_above_reserve = disk.available.saturating_sub(reserve);
        let disk_short = needed.saturating_sub(free_above_reserve);
        let cache_policy = scheduler.cache_policy();
        let used = match cache_policy.budget {
            Some(_) => Some(
                scheduler
                    .janitor()
                    .storage()
                    .map_err(SchedulerError::from)?
                    .used,
            ),
            None => None,
        };
        let over_budget_by = match (cache_policy.budget, used) {
            (Some(budget), Some(used)) => used.saturating_add(needed).saturating_sub(budget),
            _ => 0,
        };
        let mut room = Room {
            needed,
            free_above_reserve,
            reserve,
            disk_short,
            used,
            budget: cache_policy.budget,
            over_budget_by,
            fits: disk_short == 0 && over_budget_by == 0,
            consent: (disk_short == 0 || policy.evict_to_make_room)
                && (over_budget_by == 0 || cache_policy.auto_cleanup),
            evictions: Vec::new(),
            evictions_enough: true,
        };
        if room.to_free() > 0 {
            let plan = scheduler.plan_eviction(room.to_free())?;
            room.evictions_enough = plan.satisfied;
            room.evictions = plan
                .evictions
                .iter()
                .map(|e| RoomEviction {
                    key: eviction_key(e),
                    repo: e.repo.to_string(),
                    commit: e.commit.clone(),
                    variant: e.variant.clone(),
                    refs: e.refs.clone(),
                    bytes_freed: e.bytes_freed,
                })
                .collect();
        }
        Ok(room)
    }

    /// Makes room for the planned download by removing what the user agreed to (the keys of
    /// [`Room::evictions`]); refused, removing nothing, when the eviction would now take
    /// anything else. Returns the bytes freed.
    pub fn make_room(&self, plan: &PullPlan, consented: &[String]) -> Result<u64, EngineError> {
        let room = self.room_for(plan)?;
        if room.to_free() == 0 {
            return Ok(0);
        }
        let evicted = self
            .inner
            .scheduler
            .evict_with_consent(room.to_free(), consented)?;
        Ok(evicted.bytes_freed)
    }
}
