//! Which cached revisions to remove, in what order, and how many bytes that frees — as a pure
//! function over what is cached.
//!
//! [`plan_eviction`] takes the cached revisions ([`CachedRevision`]: its blobs with sizes, when it
//! was last used, whether it is pinned or in use) and a [`EvictionGoal`], and returns an
//! [`EvictionPlan`]. The plan *is* the dry run: executing it (see `gc`) removes exactly what it
//! lists. Blobs shared between revisions (the same file in two commits) are only counted as freed
//! when the last revision that links them goes.

use std::collections::HashMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::repo::RepoId;

/// Where a revision's last-use time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastUsedSource {
    /// Recorded by the index when the app, the CLI or the API used the model.
    Index,
    /// The newest access or modification time of its files (models other tools put there).
    FileTimes,
}

/// One blob a revision links, by its key (the etag, or the file's path for copied files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobUse {
    pub key: String,
    pub size: u64,
}

/// A revision in the cache, as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedRevision {
    pub repo: RepoId,
    pub commit: String,
    /// Refs (`main`, a tag) pointing at this commit.
    pub refs: Vec<String>,
    /// Blobs linked from this revision's snapshot. Blob keys are per repo: the layout stores blobs
    /// per repo folder.
    pub blobs: Vec<BlobUse>,
    pub last_used: SystemTime,
    pub last_used_source: LastUsedSource,
    /// Pinned by the user: never evicted.
    pub pinned: bool,
    /// A job is downloading into it, or it was just used: never evicted now.
    pub in_use: bool,
}

/// What an eviction must achieve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvictionGoal {
    /// Free at least this many bytes (room for a download).
    Free { bytes: u64 },
    /// Bring the cache's total size at or under the budget. `other_bytes` counts what the
    /// revisions do not (stale `.incomplete` files, unreferenced blobs) so the total is honest.
    Budget { budget: u64, other_bytes: u64 },
}

/// One revision the plan removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedEviction {
    pub repo: RepoId,
    pub commit: String,
    pub refs: Vec<String>,
    pub last_used: SystemTime,
    pub last_used_source: LastUsedSource,
    /// Bytes freed by removing this revision after the ones before it in the plan.
    pub bytes_freed: u64,
}

/// The result of planning: what goes, in order, and whether that is enough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvictionPlan {
    pub evictions: Vec<PlannedEviction>,
    pub bytes_freed: u64,
    /// Bytes the goal needed.
    pub bytes_wanted: u64,
    /// Whether removing everything in the plan meets the goal. When it is `false` the plan still
    /// lists every evictable revision, so a caller can say how far short it falls.
    pub satisfied: bool,
}

/// Size in bytes of everything the revisions reference, each blob counted once.
pub fn total_size(revisions: &[CachedRevision]) -> u64 {
    let mut seen = HashMap::new();
    for revision in revisions {
        for blob in &revision.blobs {
            seen.insert((&revision.repo, blob.key.as_str()), blob.size);
        }
    }
    seen.values().sum()
}

/// Plans which revisions to evict, least recently used first, skipping pinned and in-use ones,
/// and stopping as soon as the goal is met.
pub fn plan_eviction(revisions: &[CachedRevision], goal: EvictionGoal) -> EvictionPlan {
    let wanted = match goal {
        EvictionGoal::Free { bytes } => bytes,
        EvictionGoal::Budget {
            budget,
            other_bytes,
        } => (total_size(revisions) + other_bytes).saturating_sub(budget),
    };
    let mut plan = EvictionPlan {
        evictions: Vec::new(),
        bytes_freed: 0,
        bytes_wanted: wanted,
        satisfied: wanted == 0,
    };
    if plan.satisfied {
        return plan;
    }

    // How many revisions link each blob: a blob is freed when its count reaches zero.
    let mut links: HashMap<(&RepoId, &str), (u32, u64)> = HashMap::new();
    for revision in revisions {
        for blob in &revision.blobs {
            links
                .entry((&revision.repo, blob.key.as_str()))
                .or_insert((0, blob.size))
                .0 += 1;
        }
    }

    let mut candidates: Vec<&CachedRevision> = revisions
        .iter()
        .filter(|r| !r.pinned && !r.in_use)
        .collect();
    // Oldest first; ties broken by name so a plan is reproducible.
    candidates.sort_by(|a, b| {
        a.last_used
            .cmp(&b.last_used)
            .then_with(|| a.repo.to_string().cmp(&b.repo.to_string()))
            .then_with(|| a.commit.cmp(&b.commit))
    });

    for revision in candidates {
        let mut freed = 0;
        for blob in &revision.blobs {
            if let Some(entry) = links.get_mut(&(&revision.repo, blob.key.as_str())) {
                entry.0 -= 1;
                if entry.0 == 0 {
                    freed += entry.1;
                }
            }
        }
        plan.bytes_freed += freed;
        plan.evictions.push(PlannedEviction {
            repo: revision.repo.clone(),
            commit: revision.commit.clone(),
            refs: revision.refs.clone(),
            last_used: revision.last_used,
            last_used_source: revision.last_used_source,
            bytes_freed: freed,
        });
        if plan.bytes_freed >= wanted {
            plan.satisfied = true;
            break;
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rev(repo: &str, commit: &str, age_days: u64, blobs: &[(&str, u64)]) -> CachedRevision {
        CachedRevision {
            repo: RepoId::model(repo).unwrap(),
            commit: commit.to_string(),
            refs: vec!["main".to_string()],
            blobs: blobs
                .iter()
                .map(|(k, s)| BlobUse {
                    key: k.to_string(),
                    size: *s,
                })
                .collect(),
            last_used: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
                - Duration::from_secs(age_days * 86_400),
            last_used_source: LastUsedSource::FileTimes,
            pinned: false,
            in_use: false,
        }
    }

    fn names(plan: &EvictionPlan) -> Vec<&str> {
        plan.evictions.iter().map(|e| e.repo.id.as_str()).collect()
    }

    #[test]
    fn evicts_least_recently_used_first_and_stops_when_enough() {
        let revisions = vec![
            rev("a/new", "1", 1, &[("x", 100)]),
            rev("a/old", "2", 30, &[("y", 100)]),
            rev("a/mid", "3", 10, &[("z", 100)]),
        ];
        let plan = plan_eviction(&revisions, EvictionGoal::Free { bytes: 150 });
        assert_eq!(names(&plan), ["a/old", "a/mid"]);
        assert_eq!(plan.bytes_freed, 200);
        assert!(plan.satisfied);
    }

    #[test]
    fn pinned_and_in_use_are_never_planned() {
        let mut revisions = vec![
            rev("a/old", "1", 30, &[("x", 100)]),
            rev("a/mid", "2", 10, &[("y", 100)]),
            rev("a/new", "3", 1, &[("z", 100)]),
        ];
        revisions[0].pinned = true;
        revisions[1].in_use = true;
        let plan = plan_eviction(&revisions, EvictionGoal::Free { bytes: 1000 });
        assert_eq!(names(&plan), ["a/new"]);
        assert!(!plan.satisfied);
        assert_eq!(plan.bytes_freed, 100);
    }

    #[test]
    fn shared_blobs_count_once_and_only_when_the_last_link_goes() {
        let revisions = vec![
            rev("a/m", "old", 30, &[("shared", 500), ("only-old", 10)]),
            rev("a/m", "new", 1, &[("shared", 500), ("only-new", 20)]),
        ];
        assert_eq!(total_size(&revisions), 530);
        let plan = plan_eviction(&revisions, EvictionGoal::Free { bytes: 11 });
        assert_eq!(plan.evictions.len(), 2, "the old revision alone frees 10");
        assert_eq!(plan.evictions[0].bytes_freed, 10);
        assert_eq!(plan.evictions[1].bytes_freed, 520);
        // The same key in another repo is another file.
        let two_repos = vec![
            rev("a/one", "1", 30, &[("k", 100)]),
            rev("a/two", "1", 1, &[("k", 100)]),
        ];
        assert_eq!(total_size(&two_repos), 200);
    }

    #[test]
    fn budget_goal_counts_other_bytes() {
        let revisions = vec![
            rev("a/old", "1", 30, &[("x", 100)]),
            rev("a/new", "2", 1, &[("y", 100)]),
        ];
        let under = plan_eviction(
            &revisions,
            EvictionGoal::Budget {
                budget: 200,
                other_bytes: 0,
            },
        );
        assert!(under.satisfied && under.evictions.is_empty());
        let over = plan_eviction(
            &revisions,
            EvictionGoal::Budget {
                budget: 200,
                other_bytes: 1,
            },
        );
        assert_eq!(names(&over), ["a/old"]);
        assert_eq!(over.bytes_wanted, 1);
    }
}
