//! Which cached revisions — or which variants of them — to remove, in what order, and how many
//! bytes that frees, as a pure function over what is cached.
//!
//! [`plan_eviction`] takes the cached revisions ([`CachedRevision`]: its blobs with sizes, when it
//! was last used, whether it is pinned or in use, and its variants) and a [`EvictionGoal`], and
//! returns an [`EvictionPlan`]. The plan *is* the dry run: executing it (see `cleanup`) removes
//! exactly what it lists. Blobs shared between revisions (the same file in two commits) are only
//! counted as freed when the last revision that links them goes.
//!
//! **Space is counted by file, not by name.** A blob the downloader hard-linked into a second
//! repo is one file ([`FileId`]) with two names: it counts once in [`total_size`], and its bytes
//! are freed only when every name goes — never while a name no eviction removes remains (a
//! pinned or busy repo's, or one outside the cache, which the link count reveals). A unit that
//! frees nothing is not evicted for nothing: the planner goes on to the next candidate, and the
//! unit waits. It goes once it frees space on its own (the other holders of its files went
//! first), or together with later units that free space only with it (two repos that hold the
//! same file and nothing else).
//!
//! **The unit of eviction is the variant.** A revision holding several variants (three quants of
//! one GGUF repo) is evicted one variant at a time, least recently used first: a variant's weight
//! files (split shards together) and the companions only it uses. Files every variant shares
//! (`config.json`, the tokenizer, a README) stay while any variant of the revision remains, and go
//! with the last one, which takes the whole revision. A revision with fewer than two variants is
//! one unit, as before. Pins and jobs protect whole repos.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::repo::RepoId;
use crate::store::{FileId, size_once};

/// Where a revision's last-use time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastUsedSource {
    /// Recorded by the index when the app, the CLI or the API used the model.
    Index,
    /// Recorded by the index for this variant: its path was handed out, or it was pulled.
    Variant,
    /// The newest access or modification time of its files (models other tools put there).
    FileTimes,
}

pub use crate::store::BlobUse;

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
    /// Its variants, evicted one at a time; empty when it holds fewer than two (it is then
    /// evicted whole). Blobs that no variant lists are shared by all of them.
    #[serde(default)]
    pub variants: Vec<CachedVariant>,
}

/// A variant of a cached revision, as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedVariant {
    /// The variant's id (`gguf:model-Q4_K_M`), as `variants::scan` names it.
    pub id: String,
    /// Blobs of the files the variant holds: its weights and its own companions.
    pub blobs: Vec<BlobUse>,
    /// Its own recorded use; else the repo's (when it applies to the revision); else the newest
    /// time of its weight files.
    pub last_used: SystemTime,
    pub last_used_source: LastUsedSource,
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

/// One revision, or one variant of a revision, the plan removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedEviction {
    pub repo: RepoId,
    pub commit: String,
    /// The variant's id when one variant of the revision goes; `None` for the whole revision.
    /// The last variant of a revision to go takes the revision with it.
    pub variant: Option<String>,
    pub refs: Vec<String>,
    pub last_used: SystemTime,
    pub last_used_source: LastUsedSource,
    /// Bytes freed by removing this revision after the ones before it in the plan.
    pub bytes_freed: u64,
}

/// `repo@commit`, with the variant's id in parentheses when one variant goes.
impl std::fmt::Display for PlannedEviction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.repo, self.commit)?;
        match &self.variant {
            Some(variant) => write!(f, " ({variant})"),
            None => Ok(()),
        }
    }
}

/// The result of planning: what goes, in order, and whether that is enough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvictionPlan {
    pub evictions: Vec<PlannedEviction>,
    pub bytes_freed: u64,
    /// Bytes the goal needed.
    pub bytes_wanted: u64,
    /// Whether removing everything in the plan meets the goal. When it is `false` the plan still
    /// lists every evictable revision that frees space, so a caller can say how far short it
    /// falls.
    pub satisfied: bool,
}

/// Size in bytes of everything the revisions reference, each file counted once (a blob linked
/// from several revisions, or hard-linked into several repos).
pub fn total_size(revisions: &[CachedRevision]) -> u64 {
    size_once(
        revisions
            .iter()
            .flat_map(|r| &r.blobs)
            .map(|b| (&b.id, b.size)),
    )
}

/// Where a unit of eviction comes from: a whole revision, or one variant of it.
#[derive(Debug, Clone, Copy)]
struct Unit<'a> {
    revision: usize,
    variant: Option<&'a CachedVariant>,
    last_used: SystemTime,
    source: LastUsedSource,
}

/// At the same time, a last use guessed from the repo or the files goes before one recorded for
/// the variant itself: a variant's use also stamps its repo, so its unrecorded siblings would
/// otherwise tie with it.
fn source_rank(source: LastUsedSource) -> u8 {
    match source {
        LastUsedSource::FileTimes => 0,
        LastUsedSource::Index => 1,
        LastUsedSource::Variant => 2,
    }
}

/// Plans what to evict, least recently used first, skipping pinned and in-use revisions, and
/// stopping as soon as the goal is met. Revisions with several variants are evicted a variant at
/// a time (see the module docs).
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

    let mut ledger = Ledger::new(revisions);
    // Units that free nothing given the plan so far, oldest first. A unit is fresh until it is
    // tried, and again when the plan takes a unit it shares a file or its revision with: only
    // then can what it frees have changed.
    let mut waiting: Vec<(Unit, bool)> = Vec::new();
    'units: for unit in units(revisions) {
        if !ledger.may_free(&unit) {
            continue;
        }
        waiting.push((unit, true));
        loop {
            let units: Vec<&Unit> = waiting.iter().map(|(unit, _)| unit).collect();
            let fresh: Vec<usize> = (0..waiting.len()).filter(|&at| waiting[at].1).collect();
            // The oldest unit that frees space on its own; when none does, units that free
            // space together.
            let group = match fresh
                .iter()
                .copied()
                .find(|&at| ledger.trial(&[units[at]]) > 0)
            {
                Some(at) => vec![at],
                None => ledger.freeing_group(&units, &fresh),
            };
            let taken: Vec<Unit> = group.iter().map(|&at| *units[at]).collect();
            for (_, fresh) in &mut waiting {
                *fresh = false;
            }
            if taken.is_empty() {
                break;
            }
            for unit in &taken {
                let revision = &revisions[unit.revision];
                let freed = ledger.evict(unit);
                plan.bytes_freed += freed;
                plan.evictions.push(PlannedEviction {
                    repo: revision.repo.clone(),
                    commit: revision.commit.clone(),
                    variant: unit.variant.map(|v| v.id.clone()),
                    refs: revision.refs.clone(),
                    last_used: unit.last_used,
                    last_used_source: unit.source,
                    bytes_freed: freed,
                });
            }
            ledger.undo.clear();
            let mut at = 0;
            waiting.retain(|_| {
                at += 1;
                !group.contains(&(at - 1))
            });
            let files: HashSet<&FileId> = taken.iter().flat_map(|u| ledger.holds(u)).collect();
            for (unit, fresh) in &mut waiting {
                *fresh = taken.iter().any(|t| t.revision == unit.revision)
                    || ledger.holds(unit).any(|f| files.contains(f));
            }
            if plan.bytes_freed >= wanted {
                plan.satisfied = true;
                break 'units;
            }
        }
    }
    plan
}

/// The units of eviction (see the module docs), oldest first: pinned and in-use revisions have
/// none.
fn units(revisions: &[CachedRevision]) -> Vec<Unit<'_>> {
    let mut units: Vec<Unit> = Vec::new();
    for (at, revision) in revisions.iter().enumerate() {
        if revision.pinned || revision.in_use {
            continue;
        }
        if revision.variants.len() < 2 {
            units.push(Unit {
                revision: at,
                variant: None,
                last_used: revision.last_used,
                source: revision.last_used_source,
            });
        } else {
            units.extend(revision.variants.iter().map(|v| Unit {
                revision: at,
                variant: Some(v),
                last_used: v.last_used,
                source: v.last_used_source,
            }));
        }
    }
    // Oldest first; ties broken by name so a plan is reproducible.
    units.sort_by(|a, b| {
        let (ra, rb) = (&revisions[a.revision], &revisions[b.revision]);
        a.last_used
            .cmp(&b.last_used)
            .then_with(|| source_rank(a.source).cmp(&source_rank(b.source)))
            .then_with(|| ra.repo.to_string().cmp(&rb.repo.to_string()))
            .then_with(|| ra.commit.cmp(&rb.commit))
            .then_with(|| a.variant.map(|v| &v.id).cmp(&b.variant.map(|v| &v.id)))
    });
    units
}

/// What is left of the cached revisions as units are evicted: which names of blobs remain, and
/// which files. A trial eviction is undone from a log of its changes.
struct Ledger<'a> {
    revisions: &'a [CachedRevision],
    /// Per blob name (the repo and the key: `blobs/<etag>` in that repo folder, or a copied
    /// file), how many revisions still link it. The name is removed when none does.
    names: HashMap<(&'a RepoId, &'a str), u32>,
    /// Per file, what still holds it.
    files: HashMap<&'a FileId, FileLeft>,
    /// Per revision: the blobs it no longer links.
    released: Vec<HashSet<&'a str>>,
    /// Per revision: its variants still there.
    remaining: Vec<Vec<&'a CachedVariant>>,
    /// The changes evictions made, latest last, for [`Ledger::trial`] to undo.
    undo: Vec<Change<'a>>,
}

/// One change an eviction made to the ledger.
enum Change<'a> {
    Released(usize, &'a str),
    NameUnlinked((&'a RepoId, &'a str)),
    NameRemoved(&'a FileId),
    Variants(usize, Vec<&'a CachedVariant>),
}

/// What holds one file while eviction goes on.
#[derive(Debug, Clone, Copy)]
struct FileLeft {
    size: u64,
    /// Its names that revisions link and eviction has not removed yet.
    names: u64,
    /// It has a name no eviction removes: one no revision links (outside the cache, or a blob
    /// nothing links), or one a pinned or busy revision links. Evicting never frees it.
    kept: bool,
}

impl<'a> Ledger<'a> {
    fn new(revisions: &'a [CachedRevision]) -> Self {
        let mut names: HashMap<(&RepoId, &str), u32> = HashMap::new();
        let mut files: HashMap<&FileId, (FileLeft, u64)> = HashMap::new();
        for revision in revisions {
            let protected = revision.pinned || revision.in_use;
            for blob in &revision.blobs {
                let count = names
                    .entry((&revision.repo, blob.key.as_str()))
                    .or_insert(0);
                let (file, links) = files.entry(&blob.id).or_insert((
                    FileLeft {
                        size: blob.size,
                        names: 0,
                        kept: false,
                    },
                    blob.links,
                ));
                if *count == 0 {
                    file.names += 1;
                    *links = (*links).max(blob.links);
                }
                file.kept |= protected;
                *count += 1;
            }
        }
        let files = files
            .into_iter()
            .map(|(id, (mut file, links))| {
                file.kept |= links > file.names;
                (id, file)
            })
            .collect();
        Ledger {
            revisions,
            names,
            files,
            released: vec![HashSet::new(); revisions.len()],
            remaining: revisions
                .iter()
                .map(|r| r.variants.iter().collect())
                .collect(),
            undo: Vec::new(),
        }
    }

    /// Whether evicting `unit` can ever free anything: whether its revision holds a file that
    /// no pinned or busy revision, and nothing outside the revisions, holds too.
    fn may_free(&self, unit: &Unit<'a>) -> bool {
        self.revisions[unit.revision]
            .blobs
            .iter()
            .any(|b| self.files.get(&b.id).is_some_and(|f| !f.kept))
    }

    /// The files `unit`'s revision holds that evicting can free (not kept).
    fn holds<'u>(&'u self, unit: &Unit<'a>) -> impl Iterator<Item = &'a FileId> + 'u {
        let revisions = self.revisions;
        revisions[unit.revision]
            .blobs
            .iter()
            .map(|b| &b.id)
            .filter(|id| self.files.get(id).is_some_and(|f| !f.kept))
    }

    /// Among `waiting` units (oldest first), none of which frees space on its own, those to
    /// evict together, in that order: together they free space, and each adds to it. The group
    /// grows from one of the `fresh` units through the files that can be freed and the
    /// revisions its members share (where a group can have appeared since the last try).
    /// Empty when there is none.
    fn freeing_group(&mut self, waiting: &[&Unit<'a>], fresh: &[usize]) -> Vec<usize> {
        for &seed in fresh {
            let mut member = vec![false; waiting.len()];
            member[seed] = true;
            let mut files: HashSet<&FileId> = self.holds(waiting[seed]).collect();
            let mut revisions: HashSet<usize> = HashSet::from([waiting[seed].revision]);
            let mut grew = true;
            while grew {
                grew = false;
                for (at, unit) in waiting.iter().enumerate() {
                    if member[at]
                        || !(revisions.contains(&unit.revision)
                            || self.holds(unit).any(|f| files.contains(f)))
                    {
                        continue;
                    }
                    member[at] = true;
                    revisions.insert(unit.revision);
                    files.extend(self.holds(unit));
                    grew = true;
                }
            }
            let mut group: Vec<usize> = (0..waiting.len()).filter(|&at| member[at]).collect();
            let frees = |ledger: &mut Self, group: &[usize]| {
                let units: Vec<&Unit<'a>> = group.iter().map(|&at| waiting[at]).collect();
                ledger.trial(&units)
            };
            let all = frees(self, &group);
            if all == 0 {
                continue;
            }
            // Leave out the members that add nothing (their files stay held anyway), newest
            // first, so that of two that would free the same the older one goes.
            for at in group.clone().into_iter().rev() {
                let without: Vec<usize> = group.iter().copied().filter(|&m| m != at).collect();
                if frees(self, &without) == all {
                    group = without;
                }
            }
            return group;
        }
        Vec::new()
    }

    /// The bytes evicting `units` in this order would free, leaving the ledger as it was.
    fn trial(&mut self, units: &[&Unit<'a>]) -> u64 {
        let mark = self.undo.len();
        let freed = units.iter().map(|unit| self.evict(unit)).sum();
        while self.undo.len() > mark {
            match self.undo.pop() {
                Some(Change::Released(revision, key)) => {
                    self.released[revision].remove(key);
                }
                Some(Change::NameUnlinked(name)) => {
                    if let Some(count) = self.names.get_mut(&name) {
                        *count += 1;
                    }
                }
                Some(Change::NameRemoved(id)) => {
                    if let Some(file) = self.files.get_mut(id) {
                        file.names += 1;
                    }
                }
                Some(Change::Variants(revision, variants)) => self.remaining[revision] = variants,
                None => break,
            }
        }
        freed
    }

    /// The blobs `unit` takes out of its revision now, each once, and the variants the
    /// revision keeps: all its blobs for a whole revision or its last variant; otherwise the
    /// variant's blobs no remaining variant holds.
    fn leaving(&self, unit: &Unit<'a>) -> (Vec<&'a BlobUse>, Vec<&'a CachedVariant>) {
        let revisions = self.revisions;
        let revision = &revisions[unit.revision];
        let left: Vec<&'a CachedVariant> = self.remaining[unit.revision]
            .iter()
            .copied()
            .filter(|v| unit.variant.is_none_or(|gone| v.id != gone.id))
            .collect();
        let blobs: Vec<&'a BlobUse> = match unit.variant {
            Some(variant) if !left.is_empty() => variant
                .blobs
                .iter()
                .filter(|b| !left.iter().any(|v| v.blobs.iter().any(|o| o.key == b.key)))
                .collect(),
            _ => revision.blobs.iter().collect(),
        };
        let released = &self.released[unit.revision];
        let mut seen = HashSet::new();
        let blobs = blobs
            .into_iter()
            .filter(|b| !released.contains(b.key.as_str()) && seen.insert(b.key.as_str()))
            .collect();
        (blobs, left)
    }

    /// Takes `unit` out of its revision and returns the bytes that frees.
    fn evict(&mut self, unit: &Unit<'a>) -> u64 {
        let revisions = self.revisions;
        let revision = &revisions[unit.revision];
        let (leaving, left) = self.leaving(unit);
        let kept = std::mem::replace(&mut self.remaining[unit.revision], left);
        self.undo.push(Change::Variants(unit.revision, kept));
        let mut freed = 0;
        for blob in leaving {
            let key = blob.key.as_str();
            self.released[unit.revision].insert(key);
            self.undo.push(Change::Released(unit.revision, key));
            let name = (&revision.repo, key);
            let Some(count) = self.names.get_mut(&name) else {
                continue;
            };
            *count -= 1;
            self.undo.push(Change::NameUnlinked(name));
            if *count > 0 {
                continue;
            }
            // No revision links this name any more: it is removed, and the file with it when
            // it was the file's last name.
            if let Some(file) = self.files.get_mut(&blob.id) {
                file.names -= 1;
                self.undo.push(Change::NameRemoved(&blob.id));
                if file.names == 0 && !file.kept {
                    freed += file.size;
                }
            }
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A blob of `repo` that is a file of its own, with one name.
    fn blob(repo: &str, key: &str, size: u64) -> BlobUse {
        BlobUse {
            key: key.to_string(),
            size,
            id: FileId::Path {
                path: format!("{repo}/{key}").into(),
            },
            links: 1,
        }
    }

    fn rev(repo: &str, commit: &str, age_days: u64, blobs: &[(&str, u64)]) -> CachedRevision {
        CachedRevision {
            repo: RepoId::model(repo).unwrap(),
            commit: commit.to_string(),
            refs: vec!["main".to_string()],
            blobs: blobs.iter().map(|(k, s)| blob(repo, k, *s)).collect(),
            last_used: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
                - Duration::from_secs(age_days * 86_400),
            last_used_source: LastUsedSource::FileTimes,
            pinned: false,
            in_use: false,
            variants: Vec::new(),
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

    /// `revision` with its blob `key` being `file`, a file with `links` names (hard links).
    fn hard_linked(
        mut revision: CachedRevision,
        key: &str,
        file: &str,
        links: u64,
    ) -> CachedRevision {
        for blob in revision.blobs.iter_mut().filter(|b| b.key == key) {
            blob.id = FileId::Path { path: file.into() };
            blob.links = links;
        }
        revision
    }

    fn freed(plan: &EvictionPlan) -> Vec<(&str, u64)> {
        plan.evictions
            .iter()
            .map(|e| (e.repo.id.as_str(), e.bytes_freed))
            .collect()
    }

    #[test]
    fn a_file_hard_linked_into_two_repos_counts_once_and_goes_with_its_last_name() {
        let revisions = vec![
            hard_linked(rev("a/old", "1", 30, &[("w", 1000)]), "w", "w", 2),
            rev("a/mid", "2", 20, &[("x", 1000)]),
            hard_linked(
                rev("a/new", "3", 1, &[("w", 1000), ("own", 10)]),
                "w",
                "w",
                2,
            ),
        ];
        assert_eq!(total_size(&revisions), 2010);
        // The least recently used model frees nothing while `a/new` holds its file: the next
        // one goes instead.
        let plan = plan_eviction(&revisions, EvictionGoal::Free { bytes: 1 });
        assert_eq!(freed(&plan), [("a/mid", 1000)]);
        let plan = plan_eviction(&revisions, EvictionGoal::Free { bytes: 1010 });
        assert_eq!(freed(&plan), [("a/mid", 1000), ("a/new", 10)]);
        // Once `a/new` is planned, `a/old` holds the file's last name and frees it.
        let plan = plan_eviction(&revisions, EvictionGoal::Free { bytes: 1500 });
        assert_eq!(
            freed(&plan),
            [("a/mid", 1000), ("a/new", 10), ("a/old", 1000)]
        );
        assert_eq!(plan.bytes_freed, 2010);
    }

    #[test]
    fn models_that_free_space_only_together_go_together_and_a_file_held_elsewhere_never() {
        // Two repos holding one file and nothing else: neither frees anything alone.
        let pair = vec![
            hard_linked(rev("a/one", "1", 30, &[("w", 1000)]), "w", "w", 2),
            rev("a/mid", "2", 20, &[("x", 100)]),
            hard_linked(rev("a/two", "3", 1, &[("w", 1000)]), "w", "w", 2),
        ];
        let plan = plan_eviction(&pair, EvictionGoal::Free { bytes: 500 });
        assert_eq!(
            freed(&plan),
            [("a/mid", 100), ("a/one", 0), ("a/two", 1000)]
        );
        assert!(plan.satisfied);
        // With the other holder pinned, the file stays whatever goes: its holder never does.
        let mut pinned = pair.clone();
        pinned[2].pinned = true;
        let plan = plan_eviction(&pinned, EvictionGoal::Free { bytes: 500 });
        assert_eq!(freed(&plan), [("a/mid", 100)]);
        assert!(!plan.satisfied);
        // A third name outside the cache (the link count says 3, revisions hold 2): evicting
        // both holders would free nothing, so neither goes.
        let outside: Vec<CachedRevision> = pair
            .iter()
            .map(|r| hard_linked(r.clone(), "w", "w", 3))
            .collect();
        let plan = plan_eviction(&outside, EvictionGoal::Free { bytes: 500 });
        assert_eq!(freed(&plan), [("a/mid", 100)]);
        assert_eq!(total_size(&outside), 1100, "it is still in the cache, once");
    }

    #[test]
    fn two_revisions_linking_the_same_blobs_go_together() {
        // A commit that changed only files never downloaded: both snapshots link the same blobs,
        // so neither revision frees anything without the other.
        let revisions = vec![
            rev("a/m", "old", 30, &[("w", 1000)]),
            rev("a/m", "new", 1, &[("w", 1000)]),
        ];
        assert_eq!(total_size(&revisions), 1000);
        let plan = plan_eviction(&revisions, EvictionGoal::Free { bytes: 1 });
        assert_eq!(freed(&plan), [("a/m", 0), ("a/m", 1000)]);
        assert_eq!(plan.evictions[0].commit, "old");
    }

    #[test]
    fn a_trial_eviction_leaves_the_ledger_as_it_was() {
        let mut quants = three_quants();
        quants.blobs[0] = hard_linked(quants.clone(), "config", "w", 2).blobs[0].clone();
        let scenarios = [
            vec![three_quants(), rev("a/other", "2", 5, &[("x", 1000)])],
            vec![
                quants,
                hard_linked(rev("a/old", "1", 30, &[("w", 10)]), "w", "w", 2),
                rev("a/m", "old", 30, &[("w", 1000), ("v", 1)]),
                rev("a/m", "new", 1, &[("w", 1000)]),
            ],
        ];
        for revisions in &scenarios {
            let mut ledger = Ledger::new(revisions);
            let all = units(revisions);
            let everything: Vec<&Unit> = all.iter().collect();
            let total = ledger.trial(&everything);
            let mut freed = 0;
            for unit in &all {
                let would = ledger.trial(&[unit]);
                assert_eq!(
                    would,
                    ledger.evict(unit),
                    "{}",
                    revisions[unit.revision].repo
                );
                freed += would;
            }
            assert_eq!(freed, total);
        }
    }

    fn variant(id: &str, age_days: u64, blobs: &[(&str, u64)]) -> CachedVariant {
        CachedVariant {
            id: id.to_string(),
            blobs: blobs.iter().map(|(k, s)| blob("a/quants", k, *s)).collect(),
            last_used: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
                - Duration::from_secs(age_days * 86_400),
            last_used_source: LastUsedSource::Variant,
        }
    }

    /// Three quants of one revision (the middle one used least recently) and a shared config.
    fn three_quants() -> CachedRevision {
        let mut revision = rev(
            "a/quants",
            "1",
            1,
            &[
                ("config", 10),
                ("q2", 100),
                ("q4a", 100),
                ("q4b", 100),
                ("q8", 300),
            ],
        );
        revision.variants = vec![
            variant("gguf:m-Q2_K", 2, &[("q2", 100)]),
            variant("gguf:m-Q4_K_M", 9, &[("q4a", 100), ("q4b", 100)]),
            variant("gguf:m-Q8_0", 1, &[("q8", 300)]),
        ];
        revision
    }

    fn variant_names(plan: &EvictionPlan) -> Vec<Option<&str>> {
        plan.evictions
            .iter()
            .map(|e| e.variant.as_deref())
            .collect()
    }

    #[test]
    fn a_revision_with_several_variants_loses_the_least_recently_used_one_first() {
        let revisions = vec![three_quants()];
        let plan = plan_eviction(
            &revisions,
            EvictionGoal::Budget {
                budget: 410,
                other_bytes: 0,
            },
        );
        assert_eq!(variant_names(&plan), [Some("gguf:m-Q4_K_M")]);
        assert_eq!(plan.bytes_freed, 200, "both shards, not the shared config");
        assert!(plan.satisfied);
        assert_eq!(plan.evictions[0].last_used_source, LastUsedSource::Variant);
    }

    #[test]
    fn the_last_variant_takes_the_shared_files_and_other_revisions_interleave() {
        let mut other = rev("a/other", "2", 5, &[("x", 1000)]);
        other.variants = Vec::new();
        let revisions = vec![three_quants(), other];
        let plan = plan_eviction(&revisions, EvictionGoal::Free { bytes: 10_000 });
        assert_eq!(
            variant_names(&plan),
            [
                Some("gguf:m-Q4_K_M"),
                None,
                Some("gguf:m-Q2_K"),
                Some("gguf:m-Q8_0")
            ]
        );
        let freed: Vec<u64> = plan.evictions.iter().map(|e| e.bytes_freed).collect();
        assert_eq!(
            freed,
            [200, 1000, 100, 310],
            "config goes with the last quant"
        );
        assert!(!plan.satisfied);
    }

    #[test]
    fn pinned_revisions_keep_every_variant_and_a_single_variant_is_the_revision() {
        let mut pinned = three_quants();
        pinned.pinned = true;
        let plan = plan_eviction(&[pinned], EvictionGoal::Free { bytes: 1 });
        assert!(plan.evictions.is_empty());
        let mut single = three_quants();
        single.variants.truncate(1);
        let plan = plan_eviction(&[single], EvictionGoal::Free { bytes: 1 });
        assert_eq!(variant_names(&plan), [None]);
        assert_eq!(plan.bytes_freed, 610);
    }

    #[test]
    fn at_the_same_time_a_guessed_use_goes_before_a_recorded_one() {
        let mut revision = three_quants();
        let now = revision.variants[2].last_used;
        for v in &mut revision.variants {
            v.last_used = now;
        }
        // The Q2 use is the repo's record (stamped by the Q8 use), not its own.
        revision.variants[0].last_used_source = LastUsedSource::Index;
        let plan = plan_eviction(&[revision], EvictionGoal::Free { bytes: 1 });
        assert_eq!(variant_names(&plan), [Some("gguf:m-Q2_K")]);
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
