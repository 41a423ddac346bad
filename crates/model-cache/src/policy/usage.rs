//! Use of models, a variant at a time: which variant a file belongs to, recording a use in the
//! index, and the variants of a cached revision as eviction sees them.
//!
//! A variant is what [`variants::scan`] groups from a listing: one quant's files (split shards
//! together), one safetensors set, one ONNX precision. Its id (`gguf:model-Q4_K_M`) depends only
//! on file names, so a pull plan's files, a cached snapshot and the Hub's listing all give the
//! same id; that id is what the index records and what eviction plans name.
//!
//! Use is recorded when a model is fetched or handed out through our interfaces ([`Used`]): a
//! pull enqueued or started, a cached file's path handed out (`mcache path`), a queued download
//! finished. [`record`] stamps the repo and the variants among the files with the same instant,
//! so a variant never looks older than its repo's record because of it.
//!
//! A file belongs to a variant when it is one of the variant's weight files. Companions
//! (`config.json`, a tokenizer) and files no variant claims (a README, an `mmproj` projector) are
//! shared: handing one out is a use of the repo, not of a variant. When a variant is removed, its
//! weights go with the companions only it holds (its shard index, its subfolder's config); files
//! at the repo root stay while any variant of the revision remains.

use std::collections::HashSet;
use std::path::Path;
use std::time::SystemTime;

use super::PolicyError;
use super::evict::{CachedVariant, LastUsedSource};
use crate::hub::{EntryKind, TreeEntry};
use crate::index::Index;
use crate::index::queue::QueueJob;
use crate::repo::RepoId;
use crate::store::HubCache;
use crate::store::RevisionFile;
use crate::variants::{self, ListedFile, Variant};

/// What was used.
#[derive(Debug, Clone, Copy)]
pub enum Used<'a> {
    /// The files of a pull plan (enqueued or started).
    Planned(&'a [ListedFile]),
    /// One cached file handed out by its path, at a revision (a ref or a commit).
    CachedFile { revision: &'a str, file: &'a str },
    /// The files a finished download job selected, at its revision.
    Job(&'a QueueJob),
}

/// Records a use of `repo` at `at_ms` (unix ms): the repo, and every variant with a weight file
/// among the files used, at the same instant. Returns the ids of the variants recorded. A file
/// that is not in the cache (any more) records the repo alone.
pub fn record(
    index: &Index,
    hub_cache: &Path,
    repo: &RepoId,
    used: Used<'_>,
    at_ms: i64,
) -> Result<Vec<String>, PolicyError> {
    let ids = match used {
        Used::Planned(files) => {
            let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
            variants_among(files, &paths)
        }
        Used::CachedFile { revision, file } => match cached_listing(hub_cache, repo, revision)? {
            Some(listing) => variants_among(&listing, &[file]),
            None => Vec::new(),
        },
        Used::Job(job) => match cached_listing(hub_cache, repo, &job.revision)? {
            Some(listing) => {
                let entries: Vec<TreeEntry> = listing
                    .iter()
                    .map(|f| TreeEntry {
                        path: f.path.clone(),
                        size: f.size,
                        oid: String::new(),
                        lfs: None,
                        kind: EntryKind::File,
                        xet_hash: None,
                    })
                    .collect();
                // Patterns were checked when the job ran; a bad one selects nothing here.
                let picked = job.selection.pick(&entries).unwrap_or_default();
                let paths: Vec<&str> = picked.iter().map(|e| e.path.as_str()).collect();
                variants_among(&listing, &paths)
            }
            None => Vec::new(),
        },
    };
    index
        .touch_variants_at(repo, &ids, at_ms)
        .map_err(|source| PolicyError::Index { source })?;
    Ok(ids)
}

/// The files of the revision cached for `revision`, as a listing; `None` when it is not cached.
fn cached_listing(
    hub_cache: &Path,
    repo: &RepoId,
    revision: &str,
) -> Result<Option<Vec<ListedFile>>, PolicyError> {
    let Some(commit) = HubCache::new(hub_cache).repo(repo).cached_commit(revision) else {
        return Ok(None);
    };
    match HubCache::new(hub_cache).revision_files(repo, &commit) {
        Ok(files) => Ok(Some(listing(&files))),
        Err(crate::store::StoreError::NotCached { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// A snapshot's files as a repo listing.
pub fn listing(files: &[RevisionFile]) -> Vec<ListedFile> {
    files
        .iter()
        .map(|f| ListedFile {
            path: f.path.clone(),
            size: f.size,
        })
        .collect()
}

/// The variants of a listing that have weight files (a shard index alone is not one).
pub fn variants_with_weights(listing: &[ListedFile]) -> Vec<Variant> {
    variants::scan(listing)
        .into_iter()
        .filter(|v| !v.files.is_empty())
        .collect()
}

/// The variant a file belongs to: the one whose weight files include it.
pub fn variant_of_file(listing: &[ListedFile], path: &str) -> Option<Variant> {
    variants_with_weights(listing)
        .into_iter()
        .find(|v| v.files.iter().any(|f| f.path == path))
}

/// Ids of the variants with a weight file among `paths`.
pub fn variants_among(listing: &[ListedFile], paths: &[&str]) -> Vec<String> {
    let wanted: HashSet<&str> = paths.iter().copied().collect();
    variants_with_weights(listing)
        .into_iter()
        .filter(|v| v.files.iter().any(|f| wanted.contains(f.path.as_str())))
        .map(|v| v.id)
        .collect()
}

/// The files a variant holds: its weights, its shard index, and the companions in its own
/// subfolder. Companions at the repo root (`config.json`, the tokenizer) belong to the whole
/// revision — loaders look for them there whatever variant they load — and go with it.
fn held(variant: &Variant) -> impl Iterator<Item = &str> {
    let own_companions = variant
        .companions
        .iter()
        .filter(|f| f.path.contains('/') || f.path.ends_with(".index.json"));
    variant
        .files
        .iter()
        .chain(own_companions)
        .map(|f| f.path.as_str())
}

/// What removing one variant of a revision takes away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariantRemoval {
    /// It is the revision's last variant: the whole revision goes, shared files and refs too.
    Revision,
    /// These files (paths in the snapshot): the variant's weights and the companions no other
    /// variant of the revision holds. Shared files stay.
    Files(Vec<String>),
}

/// What removing variant `id` from a revision with this listing takes away; `None` when the
/// listing has no such variant.
pub fn variant_removal(listing: &[ListedFile], id: &str) -> Option<VariantRemoval> {
    let present = variants_with_weights(listing);
    let chosen = present.iter().find(|v| v.id == id)?;
    let others: HashSet<&str> = present
        .iter()
        .filter(|v| v.id != id)
        .flat_map(held)
        .collect();
    if present.len() == 1 {
        return Some(VariantRemoval::Revision);
    }
    let mut files: Vec<String> = held(chosen)
        .filter(|path| !others.contains(path))
        .map(str::to_string)
        .collect();
    files.sort();
    files.dedup();
    Some(VariantRemoval::Files(files))
}

/// The variants of a cached revision as eviction units, or none when it holds fewer than two
/// (it is then evicted whole, as a revision).
///
/// Each variant's last use is its own record (`recorded`); else `fallback` when that is the
/// repo's record; else the newest time of its weight files.
pub fn cached_variants(
    files: &[RevisionFile],
    fallback: (SystemTime, LastUsedSource),
    recorded: &dyn Fn(&str) -> Option<SystemTime>,
) -> Vec<CachedVariant> {
    let present = variants_with_weights(&listing(files));
    if present.len() < 2 {
        return Vec::new();
    }
    present
        .iter()
        .map(|variant| {
            let paths: HashSet<&str> = held(variant).collect();
            let mine: Vec<&RevisionFile> = files
                .iter()
                .filter(|f| paths.contains(f.path.as_str()))
                .collect();
            let (blobs, _) = crate::store::blobs_of(mine.iter().copied());
            let weights: HashSet<&str> = variant.files.iter().map(|f| f.path.as_str()).collect();
            let file_time = mine
                .iter()
                .filter(|f| weights.contains(f.path.as_str()))
                .map(|f| f.time)
                .max()
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let (last_used, last_used_source) = match recorded(&variant.id) {
                Some(time) => (time, LastUsedSource::Variant),
                None if fallback.1 == LastUsedSource::Index => fallback,
                None => (file_time, LastUsedSource::FileTimes),
            };
            CachedVariant {
                id: variant.id.clone(),
                blobs,
                last_used,
                last_used_source,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn file(path: &str, key: &str, size: u64, age_days: u64) -> RevisionFile {
        RevisionFile {
            path: path.to_string(),
            key: key.to_string(),
            size,
            id: crate::store::FileId::Path { path: key.into() },
            links: 1,
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
                - Duration::from_secs(age_days * 86_400),
        }
    }

    /// Three quants of one GGUF repo, the middle one split in two, and shared files.
    fn three_quants() -> Vec<RevisionFile> {
        vec![
            file("README.md", "readme", 10, 1),
            file("config.json", "config", 20, 1),
            file("m-Q2_K.gguf", "q2", 100, 30),
            file("m-Q4_K_M-00001-of-00002.gguf", "q4a", 100, 10),
            file("m-Q4_K_M-00002-of-00002.gguf", "q4b", 100, 20),
            file("m-Q8_0.gguf", "q8", 300, 5),
            file("mmproj-m-F16.gguf", "proj", 50, 1),
        ]
    }

    fn ids(files: &[RevisionFile]) -> Vec<String> {
        variants_with_weights(&listing(files))
            .into_iter()
            .map(|v| v.id)
            .collect()
    }

    #[test]
    fn a_file_belongs_to_the_variant_whose_weights_include_it() {
        let listed = listing(&three_quants());
        let q4 = variant_of_file(&listed, "m-Q4_K_M-00002-of-00002.gguf").unwrap();
        assert_eq!(q4.files.len(), 2, "split shards are one variant");
        assert!(variant_of_file(&listed, "config.json").is_none());
        assert!(variant_of_file(&listed, "mmproj-m-F16.gguf").is_none());
        assert_eq!(
            variants_among(&listed, &["m-Q8_0.gguf", "config.json"]),
            [variant_of_file(&listed, "m-Q8_0.gguf").unwrap().id]
        );
        // The ids from a plan's files alone are those of the full listing.
        let plan = listing(&three_quants()[3..5]);
        assert_eq!(variants_among(&plan, &[&plan[0].path]), [q4.id]);
    }

    #[test]
    fn a_variant_takes_its_own_files_and_the_last_one_takes_the_revision() {
        let all = three_quants();
        let listed = listing(&all);
        let q4 = variant_of_file(&listed, "m-Q4_K_M-00001-of-00002.gguf").unwrap();
        assert_eq!(
            variant_removal(&listed, &q4.id),
            Some(VariantRemoval::Files(vec![
                "m-Q4_K_M-00001-of-00002.gguf".to_string(),
                "m-Q4_K_M-00002-of-00002.gguf".to_string(),
            ]))
        );
        let last: Vec<RevisionFile> = all
            .iter()
            .filter(|f| !f.path.starts_with("m-Q"))
            .chain(all.iter().filter(|f| f.path == "m-Q8_0.gguf"))
            .cloned()
            .collect();
        let q8 = variant_of_file(&listing(&last), "m-Q8_0.gguf").unwrap();
        assert_eq!(
            variant_removal(&listing(&last), &q8.id),
            Some(VariantRemoval::Revision)
        );
        assert_eq!(variant_removal(&listed, "gguf:nothing"), None);
    }

    #[test]
    fn a_safetensors_set_takes_its_index_but_not_the_shared_config() {
        let files = vec![
            file("config.json", "config", 20, 1),
            file("model.safetensors.index.json", "index", 5, 1),
            file("model-00001-of-00002.safetensors", "a", 100, 1),
            file("model-00002-of-00002.safetensors", "b", 100, 1),
            file("fp8/config.json", "fp8config", 20, 1),
            file("fp8/model.safetensors", "c", 50, 1),
        ];
        let listed = listing(&files);
        let sharded = variant_of_file(&listed, "model-00001-of-00002.safetensors").unwrap();
        let Some(VariantRemoval::Files(removed)) = variant_removal(&listed, &sharded.id) else {
            panic!("two variants: only files go");
        };
        assert!(removed.contains(&"model.safetensors.index.json".to_string()));
        assert!(!removed.contains(&"config.json".to_string()), "{removed:?}");
        let fp8 = variant_of_file(&listed, "fp8/model.safetensors").unwrap();
        let Some(VariantRemoval::Files(removed)) = variant_removal(&listed, &fp8.id) else {
            panic!("two variants: only files go");
        };
        assert_eq!(removed, ["fp8/config.json", "fp8/model.safetensors"]);
    }

    #[test]
    fn last_use_is_the_variants_own_then_the_repos_then_its_files() {
        let files = three_quants();
        let recorded_at = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let repo_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
        let q8 = ids(&files)
            .into_iter()
            .find(|id| id.contains("Q8_0"))
            .unwrap();
        let recorded = |id: &str| (id == q8).then_some(recorded_at);
        let with_repo = cached_variants(&files, (repo_at, LastUsedSource::Index), &recorded);
        assert_eq!(with_repo.len(), 3);
        for v in &with_repo {
            if v.id == q8 {
                assert_eq!(
                    (v.last_used, v.last_used_source),
                    (recorded_at, LastUsedSource::Variant)
                );
            } else {
                assert_eq!(
                    (v.last_used, v.last_used_source),
                    (repo_at, LastUsedSource::Index)
                );
            }
        }
        let none = |_: &str| None;
        let from_files = cached_variants(&files, (repo_at, LastUsedSource::FileTimes), &none);
        let q4 = from_files.iter().find(|v| v.id.contains("Q4_K_M")).unwrap();
        assert_eq!(q4.last_used_source, LastUsedSource::FileTimes);
        assert_eq!(q4.last_used, files[3].time, "the newer of its two shards");
        assert_eq!(q4.blobs.len(), 2, "weights only: shared files are nobody's");
        // One variant: the revision is the unit.
        assert!(cached_variants(&files[..3], (repo_at, LastUsedSource::Index), &none).is_empty());
    }
}
