//! The [`Janitor`]: cache-space work with the index kept consistent.
//!
//! It joins the on-disk [`Inventory`] with what the index knows (our last-use records of repos
//! and variants, pins), plans evictions with [`plan_eviction`] — a variant at a time where a
//! revision holds several — and carries out removals through [`gc`] followed by the matching
//! index updates. Every operation has a dry run that returns exactly what the real
//! run would remove.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::evict::{CachedRevision, EvictionGoal, EvictionPlan, plan_eviction};
use super::gc;
use super::usage::{self, VariantRemoval};
use super::{CachePolicy, PolicyError};
use crate::index::in_flight::{Activity, InFlight};
use crate::index::{Index, Pin};
use crate::repo::RepoId;
use crate::store::layout;
use crate::store::removal::{self, Removal};
use crate::store::size_once;
use crate::store::{HubCache, Inventory};

/// What one cleanup run removed (or would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    pub dry_run: bool,
    pub stale_incomplete: Removal,
    pub unreferenced_blobs: Removal,
    /// Old revisions removed because a newer one is complete (only with the policy's opt-in).
    pub old_revisions: Vec<(RepoId, String)>,
    pub old_revisions_removal: Removal,
    /// Partial files of stopped downloads reclaimed to get under the budget (before any
    /// eviction).
    pub reclaimed_partials: Removal,
    /// The budget eviction, when the cache was over its budget.
    pub eviction: Option<EvictionPlan>,
    pub bytes_freed: u64,
    /// Cache size after the run (before it, for a dry run, minus what would go).
    pub bytes_after: u64,
}

/// Cache size against its budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageReport {
    /// Bytes the cache holds, each file once (a blob hard-linked into several repos too).
    pub used: u64,
    pub budget: Option<u64>,
    /// `used` in percent of `budget` (over 100 when over budget: 6,000 % is said as such).
    pub percent_of_budget: Option<u32>,
    /// The highest alert threshold crossed (80, 95), if any.
    pub alert: Option<u8>,
    pub repos: usize,
    pub revisions: usize,
    pub incomplete_bytes: u64,
    pub unreferenced_bytes: u64,
}

/// Cache-space operations over one hub cache and its index.
#[derive(Debug, Clone)]
pub struct Janitor {
    pub hub_cache: PathBuf,
    pub index: Index,
    pub policy: CachePolicy,
}

/// A repo as the library lists it (see [`Janitor::listing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRepo {
    pub listing: crate::store::listing::RepoListing,
    /// The latest last use of its revisions: our record where it applies (see
    /// [`record_applies`]), the file times otherwise.
    pub last_used: Option<SystemTime>,
    pub pinned: bool,
}

/// Whether our last-use record of a repo applies to one of its revisions: to the revisions
/// refs point at (what a user of the repo gets), or to the only one; other revisions keep
/// their file times.
fn record_applies(single: bool, refs: &[String]) -> bool {
    single || !refs.is_empty()
}

/// What reading one repo folder for the library gives (see [`read_folders`]).
type FolderRead = Result<
    (
        Option<crate::store::listing::RepoListing>,
        crate::store::listing::Stamp,
    ),
    crate::store::StoreError,
>;

/// Reads the repo folders `which` of `folders`, on up to as many threads as the machine has
/// cores (at most 4): the reads are system calls, and those run in parallel.
fn read_folders(folders: &[(RepoId, PathBuf)], which: &[usize]) -> Vec<FolderRead> {
    use crate::store::listing::read_listing;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(which.len());
    if threads <= 1 {
        return which
            .iter()
            .map(|&i| read_listing(&folders[i].0, &folders[i].1))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&i) = which.get(k) else { break };
                        mine.push((k, read_listing(&folders[i].0, &folders[i].1)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a folder reader does not panic"))
            .collect()
    });
    results.sort_by_key(|(k, _)| *k);
    results.into_iter().map(|(_, r)| r).collect()
}

fn ms_to_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn index_err(source: crate::index::IndexError) -> PolicyError {
    PolicyError::Index { source }
}

fn is_pinned(pins: &[Pin], repo: &RepoId, commit: &str, refs: &[String]) -> bool {
    pins.iter().any(|p| {
        &p.repo == repo
            && match &p.revision {
                None => true,
                Some(rev) => rev == commit || refs.iter().any(|r| r == rev),
            }
    })
}

impl Janitor {
    pub fn new(hub_cache: impl Into<PathBuf>, index: Index, policy: CachePolicy) -> Self {
        Janitor {
            hub_cache: hub_cache.into(),
            index,
            policy,
        }
    }

    /// Work in flight in this cache, from every process (dead processes' entries expire).
    pub fn in_flight(&self) -> Result<Vec<InFlight>, PolicyError> {
        self.index.in_flight(&self.hub_cache).map_err(index_err)
    }

    /// Reads what is in flight once for a removal from `repo`: refuses a revision a download
    /// fills (a download whose commit is not known yet counts for every revision of its repo)
    /// or a reader reads, and returns the blobs of `repo` written or read now, which stay.
    fn removable(
        &self,
        repo: &RepoId,
        commit: Option<&str>,
    ) -> Result<HashSet<String>, PolicyError> {
        let folder = repo.folder_name();
        let mine: Vec<InFlight> = self
            .in_flight()?
            .into_iter()
            .filter(|f| f.repo == folder)
            .collect();
        let busy = mine.iter().find(|f| match (commit, &f.commit) {
            (Some(wanted), Some(theirs)) => wanted == theirs,
            _ => true,
        });
        if let Some(found) = busy {
            return Err(PolicyError::InUse {
                repo: repo.to_string(),
                commit: found
                    .commit
                    .clone()
                    .or(commit.map(str::to_string))
                    .unwrap_or_else(|| "*".to_string()),
            });
        }
        Ok(mine.into_iter().filter_map(|f| f.etag).collect())
    }

    /// Repos a download in flight (of any process) writes into: never evicted or pruned.
    pub fn repos_in_flight(&self) -> Result<HashSet<String>, PolicyError> {
        Ok(self
            .in_flight()?
            .into_iter()
            .filter(|f| f.activity == Activity::Download)
            .map(|f| f.repo)
            .collect())
    }

    /// Reads the cache from disk.
    pub fn scan(&self) -> Result<Inventory, PolicyError> {
        Ok(HubCache::new(&self.hub_cache).inventory()?)
    }

    /// The library's view of the cache: each repo's listing, read from disk only where its
    /// folder changed since it was last listed (see [`crate::store::listing`]; several folders
    /// are read at once), with our last-use records and pins applied as [`Self::candidates`]
    /// applies them. Sorted by folder.
    pub fn listing(&self) -> Result<Vec<ListedRepo>, PolicyError> {
        use crate::index::listings::FolderListing;
        use crate::store::listing::{self, RepoListing, Stamp};

        let folders = listing::repo_folders(&self.hub_cache)?;
        let mut kept: std::collections::HashMap<String, (Stamp, Option<RepoListing>)> = self
            .index
            .folder_listings()
            .map_err(index_err)?
            .into_iter()
            .filter_map(|f| {
                let stamp = serde_json::from_str(&f.stamp).ok()?;
                let listing = serde_json::from_str(&f.listing).ok()?;
                Some((f.folder, (stamp, listing)))
            })
            .collect();
        let mut found: Vec<Option<Option<RepoListing>>> = Vec::with_capacity(folders.len());
        let mut to_read = Vec::new();
        for (i, (_, dir)) in folders.iter().enumerate() {
            match kept.remove(&dir.to_string_lossy().into_owned()) {
                Some((stamp, listing)) if stamp.holds(dir) => found.push(Some(listing)),
                _ => {
                    found.push(None);
                    to_read.push(i);
                }
            }
        }
        let read = read_folders(&folders, &to_read);
        let mut fresh = Vec::new();
        for (i, result) in to_read.into_iter().zip(read) {
            let (listing, stamp) = result?;
            fresh.push(FolderListing {
                folder: folders[i].1.to_string_lossy().into_owned(),
                stamp: serde_json::to_string(&stamp).expect("a stamp serializes"),
                listing: serde_json::to_string(&listing).expect("a listing serializes"),
            });
            found[i] = Some(listing);
        }
        // What is gone from disk is forgotten; keeping fails quietly (the listing is right
        // either way, and the next one reads those folders again).
        let gone: Vec<String> = kept.into_keys().collect();
        if let Err(e) = self.index.keep_folder_listings(&fresh, &gone) {
            tracing::warn!(error = %e, "could not keep the cache listing");
        }

        let pins = self.index.pins().map_err(index_err)?;
        let records = self.index.repos().map_err(index_err)?;
        let mut out = Vec::new();
        for listing in found.into_iter().flatten().flatten() {
            let used = records
                .iter()
                .find(|r| r.repo == listing.repo)
                .and_then(|r| r.last_used);
            let single = listing.revisions.len() == 1;
            let last_used = listing
                .revisions
                .iter()
                .map(|r| {
                    used.filter(|_| record_applies(single, &r.refs))
                        .map(ms_to_time)
                        .unwrap_or(UNIX_EPOCH + Duration::from_millis(r.file_time_ms))
                })
                .max();
            // A pin of any of its revisions (or of a ref it no longer has) shows on the repo.
            let pinned = pins.iter().any(|p| p.repo == listing.repo);
            out.push(ListedRepo {
                listing,
                last_used,
                pinned,
            });
        }
        Ok(out)
    }

    /// The inventory's revisions with our last-use records and pins. The index records use per
    /// repo and per variant; both apply to the revisions refs point at (what a user of the repo
    /// gets), while detached revisions keep their file times. Revisions with several variants
    /// carry them (see [`usage::cached_variants`]).
    pub fn candidates(&self, inventory: &Inventory) -> Result<Vec<CachedRevision>, PolicyError> {
        let pins = self.index.pins().map_err(index_err)?;
        let records = self.index.repos().map_err(index_err)?;
        let variant_uses = self.index.variant_uses().map_err(index_err)?;
        let mut out = Vec::new();
        for repo in &inventory.repos {
            let used = records
                .iter()
                .find(|r| r.repo == repo.repo)
                .and_then(|r| r.last_used);
            let single = repo.revisions.len() == 1;
            let variant_used = |id: &str| {
                variant_uses
                    .iter()
                    .find(|u| u.repo == repo.repo && u.variant == id)
                    .map(|u| ms_to_time(u.last_used))
            };
            let by_commit = |commit: &str| {
                repo.revisions
                    .iter()
                    .find(|r| r.commit == commit)
                    .map(|r| r.refs.clone())
                    .unwrap_or_default()
            };
            let part = Inventory {
                repos: vec![repo.clone()],
                ..Inventory::default()
            };
            let records_apply = |commit: &str| record_applies(single, &by_commit(commit));
            for mut candidate in gc::candidates(
                &part,
                &|_, commit| used.filter(|_| records_apply(commit)).map(ms_to_time),
                &|r, commit| is_pinned(&pins, r, commit, &by_commit(commit)),
            ) {
                if let Some(revision) = repo.revisions.iter().find(|r| r.commit == candidate.commit)
                {
                    let applies = records_apply(&candidate.commit);
                    candidate.variants = usage::cached_variants(
                        &revision.files,
                        (candidate.last_used, candidate.last_used_source),
                        &|id| variant_used(id).filter(|_| applies),
                    );
                }
                out.push(candidate);
            }
        }
        Ok(out)
    }

    /// Plans an eviction; revisions of `protected` repos (queued or running jobs) are never
    /// planned.
    pub fn plan(
        &self,
        goal: EvictionGoal,
        protected: &HashSet<RepoId>,
    ) -> Result<EvictionPlan, PolicyError> {
        let inventory = self.scan()?;
        let mut candidates = self.candidates(&inventory)?;
        let in_flight = self.repos_in_flight()?;
        for candidate in &mut candidates {
            candidate.in_use = protected.contains(&candidate.repo)
                || in_flight.contains(&candidate.repo.folder_name());
        }
        let goal = match goal {
            EvictionGoal::Budget { budget, .. } => EvictionGoal::Budget {
                budget,
                other_bytes: inventory.loose_bytes(),
            },
            other => other,
        };
        Ok(plan_eviction(&candidates, goal))
    }

    /// Carries out a plan: removes each planned revision or variant and its index rows.
    pub fn evict(&self, plan: &EvictionPlan) -> Result<Removal, PolicyError> {
        let mut removal = Removal::default();
        for item in &plan.evictions {
            let removed = match &item.variant {
                Some(variant) => self.remove_variant(&item.repo, &item.commit, variant, false),
                None => self.remove_revision(&item.repo, &item.commit, false),
            };
            match removed {
                Ok(r) => {
                    removal.paths.extend(r.paths);
                    removal.bytes_freed += r.bytes_freed;
                }
                // Removed meanwhile by someone else: the goal is served all the same.
                Err(PolicyError::NotCached { .. }) => {}
                // A download of another process started on it meanwhile: it stays.
                Err(PolicyError::InUse { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removal)
    }

    /// Removes one revision from disk and the index (see [`gc::delete_revision`]).
    pub fn remove_revision(
        &self,
        repo: &RepoId,
        commit: &str,
        dry_run: bool,
    ) -> Result<Removal, PolicyError> {
        let busy = self.removable(repo, Some(commit))?;
        let removal = removal::delete_revision(&self.hub_cache, repo, commit, &busy, dry_run)?;
        if !dry_run {
            self.forget(repo, commit, &removal)?;
        }
        Ok(removal)
    }

    /// Removes one variant of a revision from disk and the index: its weights and the
    /// companions no other variant holds; the whole revision when it is the last variant (see
    /// [`usage::variant_removal`]). Pins are not checked: eviction plans never hold pinned
    /// revisions. `NotCached` when the revision or the variant is not there.
    pub fn remove_variant(
        &self,
        repo: &RepoId,
        commit: &str,
        variant: &str,
        dry_run: bool,
    ) -> Result<Removal, PolicyError> {
        let files = HubCache::new(&self.hub_cache).revision_files(repo, commit)?;
        match usage::variant_removal(&usage::listing(&files), variant) {
            None => Err(PolicyError::NotCached {
                repo: repo.to_string(),
                commit: format!("{commit} ({variant})"),
            }),
            Some(VariantRemoval::Revision) => self.remove_revision(repo, commit, dry_run),
            Some(VariantRemoval::Files(paths)) => {
                self.remove_files(repo, commit, &paths, true, dry_run)
            }
        }
    }

    /// Removes some files of one revision (a variant) from disk and the index (see
    /// [`gc::delete_files`]), unless the revision is pinned (`force` overrides the pin).
    pub fn remove_files(
        &self,
        repo: &RepoId,
        commit: &str,
        files: &[String],
        force: bool,
        dry_run: bool,
    ) -> Result<Removal, PolicyError> {
        if !force {
            let pins = self.index.pins().map_err(index_err)?;
            let refs: Vec<String> = HubCache::new(&self.hub_cache)
                .inventory()?
                .repos
                .into_iter()
                .filter(|r| &r.repo == repo)
                .flat_map(|r| r.revisions)
                .filter(|r| r.commit == commit)
                .flat_map(|r| r.refs)
                .collect();
            if is_pinned(&pins, repo, commit, &refs) {
                return Err(PolicyError::Pinned {
                    repo: repo.to_string(),
                    commit: commit.to_string(),
                });
            }
        }
        let busy = self.removable(repo, Some(commit))?;
        let removal = removal::delete_files(&self.hub_cache, repo, commit, files, &busy, dry_run)?;
        if !dry_run {
            let repo_dir = self.hub_cache.join(repo.folder_name());
            let snapshot = layout::snapshot_dir(&repo_dir, commit);
            if snapshot.exists() {
                self.index
                    .remove_files(repo, commit, files)
                    .map_err(index_err)?;
                let blobs_dir = layout::blobs_dir(&repo_dir);
                for path in &removal.paths {
                    if path.parent() == Some(blobs_dir.as_path())
                        && let Some(etag) = path.file_name().and_then(|n| n.to_str())
                    {
                        self.index.remove_blob(repo, etag).map_err(index_err)?;
                    }
                }
                self.forget_absent_variants(repo)?;
            } else {
                self.forget(repo, commit, &removal)?;
            }
        }
        Ok(removal)
    }

    /// Forgets the recorded use of the repo's variants no cached revision holds any more.
    fn forget_absent_variants(&self, repo: &RepoId) -> Result<(), PolicyError> {
        let recorded: Vec<String> = self
            .index
            .variant_uses()
            .map_err(index_err)?
            .into_iter()
            .filter(|u| &u.repo == repo)
            .map(|u| u.variant)
            .collect();
        if recorded.is_empty() {
            return Ok(());
        }
        let inventory = self.scan()?;
        let present: HashSet<String> = inventory
            .repos
            .iter()
            .filter(|r| &r.repo == repo)
            .flat_map(|r| &r.revisions)
            .flat_map(|r| usage::variants_with_weights(&usage::listing(&r.files)))
            .map(|v| v.id)
            .collect();
        for variant in recorded.iter().filter(|v| !present.contains(*v)) {
            self.index
                .forget_variant(repo, variant)
                .map_err(index_err)?;
        }
        Ok(())
    }

    /// Removes a repo, or one revision of it (a commit, or a ref name such as `main`), unless
    /// pinned (`force` overrides the pin).
    pub fn remove(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
        force: bool,
        dry_run: bool,
    ) -> Result<Removal, PolicyError> {
        let inventory = self.scan()?;
        let found = inventory
            .repos
            .iter()
            .find(|r| &r.repo == repo)
            .ok_or_else(|| PolicyError::NotCached {
                repo: repo.to_string(),
                commit: revision.unwrap_or("*").to_string(),
            })?;
        let commits: Vec<&crate::store::RevisionOnDisk> = match revision {
            None => found.revisions.iter().collect(),
            Some(rev) => found
                .revisions
                .iter()
                .filter(|r| r.commit == rev || r.refs.iter().any(|n| n == rev))
                .collect(),
        };
        if revision.is_some() && commits.is_empty() {
            return Err(PolicyError::NotCached {
                repo: repo.to_string(),
                commit: revision.unwrap_or("*").to_string(),
            });
        }
        if !force {
            let pins = self.index.pins().map_err(index_err)?;
            if let Some(pinned) = commits
                .iter()
                .find(|r| is_pinned(&pins, repo, &r.commit, &r.refs))
            {
                return Err(PolicyError::Pinned {
                    repo: repo.to_string(),
                    commit: pinned.commit.clone(),
                });
            }
        }
        if revision.is_none() {
            let busy = self.removable(repo, None)?;
            let removal = removal::delete_repo(&self.hub_cache, repo, &busy, dry_run)?;
            if !dry_run {
                self.index.remove_repo(repo).map_err(index_err)?;
            }
            return Ok(removal);
        }
        let mut removal = Removal::default();
        for r in commits {
            let part = self.remove_revision(repo, &r.commit, dry_run)?;
            removal.paths.extend(part.paths);
            removal.bytes_freed += part.bytes_freed;
        }
        Ok(removal)
    }

    /// Brings the index in line with a removal: the commit's files, the blobs removed, and the
    /// repo's rows when its folder is gone (pins included: there is nothing left to pin).
    fn forget(&self, repo: &RepoId, commit: &str, removal: &Removal) -> Result<(), PolicyError> {
        self.index.remove_commit(repo, commit).map_err(index_err)?;
        let repo_dir = self.hub_cache.join(repo.folder_name());
        let blobs_dir = layout::blobs_dir(&repo_dir);
        for path in &removal.paths {
            if path.parent() == Some(blobs_dir.as_path())
                && let Some(etag) = path.file_name().and_then(|n| n.to_str())
            {
                self.index.remove_blob(repo, etag).map_err(index_err)?;
            }
        }
        if !repo_dir.exists() {
            let keep_pins = self.index.is_pinned(repo).map_err(index_err)?;
            // A pinned repo removed by force keeps its pin: pins say what the user wants kept,
            // and a later download of it should be kept too.
            if !keep_pins {
                self.index.remove_repo(repo).map_err(index_err)?;
            }
        } else {
            self.forget_absent_variants(repo)?;
        }
        Ok(())
    }

    /// One cleanup pass, in this order, so that no model is evicted while loose bytes could go
    /// instead:
    /// 1. partial files untouched for `stale_incomplete_after` that no live download writes
    ///    (resumable ones included: a download stopped that long ago starts over);
    /// 2. unreferenced blobs past their grace;
    /// 3. old revisions (when the policy opts in), never one a download fills;
    /// 4. over the budget: resumable partial files no live download writes, oldest first;
    /// 5. still over: LRU eviction, never of a repo a queued job (`queued`) or a download in
    ///    flight (of any process) writes into.
    ///
    /// The partial files of live downloads are theirs (their space was reserved when they
    /// started): they are never removed and not counted against the budget.
    pub fn cleanup(
        &self,
        now: SystemTime,
        queued: &HashSet<RepoId>,
        dry_run: bool,
    ) -> Result<CleanupReport, PolicyError> {
        let mut report = CleanupReport {
            dry_run,
            ..CleanupReport::default()
        };
        let in_flight = self.in_flight()?;
        let cache = crate::store::HubCache::new(&self.hub_cache);
        let mut live_partials: HashSet<PathBuf> = HashSet::new();
        let mut protected: HashSet<RepoId> = queued.clone();
        let mut busy_snapshots: HashSet<(String, String)> = HashSet::new();
        for entry in &in_flight {
            let Some(repo) = RepoId::from_folder_name(&entry.repo) else {
                continue;
            };
            if let Some(etag) = &entry.etag {
                live_partials.insert(cache.repo(&repo).partial_path(etag));
            }
            if let Some(commit) = &entry.commit {
                busy_snapshots.insert((entry.repo.clone(), commit.clone()));
            }
            if entry.activity == Activity::Download {
                protected.insert(repo);
            }
        }
        let inventory = self.scan()?;
        let before = inventory.total_bytes();
        report.stale_incomplete = gc::clean_stale_incomplete(
            &self.hub_cache,
            &inventory,
            self.policy.stale_incomplete_after,
            now,
            &live_partials,
            dry_run,
        )?;
        report.unreferenced_blobs = gc::clean_unreferenced_blobs(
            &self.hub_cache,
            &inventory,
            self.policy.unreferenced_blob_grace,
            now,
            dry_run,
        )?;
        // Temp files of interrupted atomic writes (refs, links, markers, app-data files).
        crate::store::HubCache::new(self.hub_cache.clone()).clean_interrupted_writes(
            self.index.path().and_then(Path::parent),
            now,
            dry_run,
        );
        let mut candidates = self.candidates(&inventory)?;
        if self.policy.prune_old_revisions {
            for repo in &inventory.repos {
                if protected.contains(&repo.repo) {
                    continue;
                }
                let pinned = |r: &RepoId, c: &str| {
                    candidates
                        .iter()
                        .any(|x| &x.repo == r && x.commit == c && x.pinned)
                };
                for commit in gc::old_revisions(&inventory, &repo.repo, &pinned) {
                    if busy_snapshots.contains(&(repo.repo.folder_name(), commit.clone())) {
                        continue;
                    }
                    let removal = self.remove_revision(&repo.repo, &commit, dry_run)?;
                    report.old_revisions_removal.paths.extend(removal.paths);
                    report.old_revisions_removal.bytes_freed += removal.bytes_freed;
                    report.old_revisions.push((repo.repo.clone(), commit));
                }
            }
            candidates.retain(|c| {
                !report
                    .old_revisions
                    .iter()
                    .any(|(r, commit)| r == &c.repo && commit == &c.commit)
            });
        }
        let gone: HashSet<&PathBuf> = report
            .stale_incomplete
            .paths
            .iter()
            .chain(&report.unreferenced_blobs.paths)
            .collect();
        // Loose bytes left that count against the budget: not those removed in this pass, and
        // not the partial files of live downloads.
        let mut loose_left: u64 = inventory
            .unreferenced
            .iter()
            .chain(&inventory.incomplete)
            .filter(|f| !gone.contains(&f.path) && !live_partials.contains(&f.path))
            .map(|f| f.size)
            .sum();
        if let Some(budget) = self.policy.budget {
            let revisions = super::evict::total_size(&candidates);
            // Over the budget: abandoned partial files go before any model, oldest first.
            let mut reclaimable: Vec<&crate::store::LooseFile> = inventory
                .incomplete
                .iter()
                .filter(|f| !gone.contains(&f.path) && !live_partials.contains(&f.path))
                .collect();
            reclaimable.sort_by_key(|f| f.modified);
            let mut reclaimed = Vec::new();
            for file in reclaimable {
                if revisions + loose_left <= budget {
                    break;
                }
                loose_left = loose_left.saturating_sub(file.size);
                reclaimed.push(file.clone());
            }
            if !reclaimed.is_empty() {
                report.reclaimed_partials =
                    removal::remove_loose(&self.hub_cache, &reclaimed, dry_run)?;
                self.forget_partials(&reclaimed, dry_run);
            }
            for candidate in &mut candidates {
                candidate.in_use = protected.contains(&candidate.repo);
            }
            let plan = plan_eviction(
                &candidates,
                EvictionGoal::Budget {
                    budget,
                    other_bytes: loose_left,
                },
            );
            if !plan.evictions.is_empty() {
                if !dry_run {
                    self.evict(&plan)?;
                }
                report.eviction = Some(plan);
            }
        }
        let freed_so_far = report.stale_incomplete.bytes_freed
            + report.unreferenced_blobs.bytes_freed
            + report.old_revisions_removal.bytes_freed
            + report.reclaimed_partials.bytes_freed;
        report.bytes_freed =
            freed_so_far + report.eviction.as_ref().map(|p| p.bytes_freed).unwrap_or(0);
        report.bytes_after = if dry_run {
            before.saturating_sub(report.bytes_freed)
        } else {
            self.scan()?.total_bytes()
        };
        Ok(report)
    }

    /// Forgets the recorded downloads of reclaimed partial files: they start over if asked again.
    fn forget_partials(&self, files: &[crate::store::LooseFile], dry_run: bool) {
        if dry_run {
            return;
        }
        for file in files {
            let Some(etag) = file
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(crate::store::partial_etag)
            else {
                continue;
            };
            let folder = file.repo.folder_name();
            let result = self.index.with_conn("forget a reclaimed download", |c| {
                crate::index::transfers::forget(c, &folder, etag)
            });
            if let Err(error) = result {
                tracing::warn!(%error, "could not forget a reclaimed download");
            }
        }
    }

    /// Cache size against the budget, with the alert threshold crossed.
    pub fn storage(&self) -> Result<StorageReport, PolicyError> {
        let inventory = self.scan()?;
        let used = inventory.total_bytes();
        let percent = self
            .policy
            .budget
            .filter(|b| *b > 0)
            .map(|b| ((used as u128 * 100) / b as u128).min(u32::MAX as u128) as u32);
        let alert = percent.and_then(|p| {
            self.policy
                .alert_percents
                .iter()
                .copied()
                .filter(|t| p >= u32::from(*t))
                .max()
        });
        Ok(StorageReport {
            used,
            budget: self.policy.budget,
            percent_of_budget: percent,
            alert,
            repos: inventory.repos.len(),
            revisions: inventory.repos.iter().map(|r| r.revisions.len()).sum(),
            incomplete_bytes: size_once(inventory.incomplete.iter().map(|f| (&f.id, f.size))),
            unreferenced_bytes: size_once(inventory.unreferenced.iter().map(|f| (&f.id, f.size))),
        })
    }

    /// The hub-cache root.
    pub fn root(&self) -> &Path {
        &self.hub_cache
    }
}
