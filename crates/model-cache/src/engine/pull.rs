//! Planning a pull (which files, how many bytes, how many already cached) and running it: on
//! the persistent queue, or at once in this process (the CLI's `pull`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Engine, EngineError, VariantView, VariantsReport};
use crate::download::{DownloadHandle, DownloadRequest, FileSpec, Reporter};
use crate::fit;
use crate::hub::{EntryKind, Gating, TreeEntry};
use crate::index::Index;
use crate::index::queue::{NewQueueJob, QueueJob};
use crate::policy::usage::Used;
use crate::repo::RepoId;
use crate::selection::Selection;
use crate::variants::{
    self, CacheFirstRepoFiles, HubRepoFiles, ListedFile, LocalRepoFiles, Variant,
};

/// What to pull.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PullRequest {
    pub repo: Option<RepoId>,
    /// Branch, tag or commit; `main` when absent.
    pub revision: Option<String>,
    /// A variant id or name (`Q4_K_M`, `gguf:Q4_K_M`, `BF16`).
    pub variant: Option<String>,
    /// Explicit files (exact paths).
    #[serde(default)]
    pub files: Vec<String>,
    /// Glob patterns of files to include / exclude.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Also fetch the variant's optional files (README, LICENSE) and projectors.
    #[serde(default)]
    pub with_extras: bool,
}

impl PullRequest {
    /// The whole selection the engine would choose by itself for a repo.
    pub fn repo(repo: RepoId) -> Self {
        PullRequest {
            repo: Some(repo),
            ..PullRequest::default()
        }
    }
}

/// How the files of a pull were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// The user named a variant.
    Variant,
    /// The user named files or patterns.
    Files,
    /// The repo has several variants and the user named none: the recommended one.
    Recommended,
    /// The repo has at most one variant: everything.
    Everything,
}

/// A pull, resolved against the listing: exactly which files, how big.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullPlan {
    pub repo: RepoId,
    pub revision: String,
    pub commit: Option<String>,
    pub choice: Choice,
    /// The variant chosen, when one was.
    pub variant: Option<String>,
    pub files: Vec<ListedFile>,
    pub total_bytes: u64,
    /// Bytes already in the cache (same blob).
    pub cached_bytes: u64,
    #[serde(skip)]
    entries: Vec<TreeEntry>,
}

impl Engine {
    /// Lists a repo at a revision: from the Hub, or from the cache when offline.
    pub(super) async fn listing(
        &self,
        repo: &RepoId,
        revision: &str,
    ) -> Result<(Vec<TreeEntry>, Option<String>, bool), EngineError> {
        if self.inner.hub.is_offline() {
            let (entries, commit) = self.cached_listing(repo, revision)?;
            return Ok((entries, commit, true));
        }
        let team = crate::download::team_ref(self.inner.downloader.bucket(), repo, revision).await;
        let info = match self
            .inner
            .hub
            .repo_info(repo, Some(team.as_deref().unwrap_or(revision)))
            .await
        {
            Ok(info) => info,
            Err(error) if error.is_unreachable() => {
                let commit = team.clone().or_else(|| {
                    crate::store::is_commit_hash(revision).then(|| revision.to_string())
                });
                return match self.team_listing(repo, commit.as_deref()).await {
                    Some(entries) => Ok((entries, commit, false)),
                    None => Err(error.into()),
                };
            }
            Err(error) => return Err(error.into()),
        };
        self.record_access(repo, &info);
        let commit = info.sha.clone();
        let entries: Vec<TreeEntry> = self
            .inner
            .hub
            .list_tree(repo, &commit, None, true)
            .await?
            .into_iter()
            .filter(|e| e.kind == EntryKind::File)
            .collect();
        // The Hub lists gated repos to anyone and refuses only their files. Ask for one file's
        // metadata now, so a user without access learns it (and what to do) before choosing.
        if info.gated != Gating::Open
            && let Some(first) = entries.first()
        {
            self.inner
                .hub
                .file_metadata(repo, &commit, &first.path)
                .await?;
        }
        Ok((entries, Some(commit), false))
    }

    /// The files the team bucket's manifest lists at `commit`, when the Hub cannot be reached:
    /// the team's ref named the commit, and each blob will be checked against the hash the
    /// manifest names (see `bucket`).
    async fn team_listing(&self, repo: &RepoId, commit: Option<&str>) -> Option<Vec<TreeEntry>> {
        let bucket = self.inner.downloader.bucket()?;
        let manifest = match bucket.read_manifest(repo, commit?).await {
            Ok(found) => found?,
            Err(error) => {
                tracing::warn!(%error, "Cannot read the team bucket's manifest");
                return None;
            }
        };
        tracing::info!(%repo, "The Hub cannot be reached; listing the team bucket's manifest");
        Some(
            manifest
                .files
                .into_iter()
                .map(|file| {
                    let lfs = (file.etag.len() == 64).then(|| crate::hub::Lfs {
                        sha256: file.etag.clone(),
                        size: file.size,
                    });
                    TreeEntry {
                        path: file.path,
                        size: file.size,
                        oid: if lfs.is_some() {
                            String::new()
                        } else {
                            file.etag
                        },
                        lfs,
                        kind: EntryKind::File,
                        xet_hash: None,
                    }
                })
                .collect(),
        )
    }

    /// The files of a cached snapshot, as a listing (sizes from the blobs).
    pub(super) fn cached_listing(
        &self,
        repo: &RepoId,
        revision: &str,
    ) -> Result<(Vec<TreeEntry>, Option<String>), EngineError> {
        let repo_cache = self.inner.cache.repo(repo);
        let commit = repo_cache
            .cached_commit(revision)
            .ok_or_else(|| EngineError::NotCached {
                repo: repo.to_string(),
            })?;
        let entries = repo_cache
            .snapshot_files(&commit)
            .into_iter()
            .map(|file| TreeEntry {
                path: file.path,
                size: file.size,
                oid: file.etag,
                lfs: None,
                kind: EntryKind::File,
                xet_hash: None,
            })
            .collect();
        Ok((entries, Some(commit)))
    }

    /// The variants of a repo with fit hints and the recommended one.
    pub async fn variants(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
    ) -> Result<VariantsReport, EngineError> {
        let revision = revision.unwrap_or("main").to_string();
        let (entries, commit, from_cache) = self.listing(repo, &revision).await?;
        let listed: Vec<ListedFile> = entries.iter().map(ListedFile::from).collect();
        let mut found = variants::scan(&listed);
        if from_cache {
            let root = self
                .inner
                .cache
                .repo(repo)
                .snapshot_dir(commit.as_deref().unwrap_or(&revision));
            variants::inspect(&mut found, &listed, &LocalRepoFiles { root }).await;
        } else {
            let files = CacheFirstRepoFiles {
                hub: HubRepoFiles {
                    client: self.inner.hub.clone(),
                    repo: repo.clone(),
                    revision: commit.clone().unwrap_or_else(|| revision.clone()),
                },
                cache: self.inner.cache.repo(repo),
                etags: entries
                    .iter()
                    .map(|e| (e.path.clone(), e.etag().to_string()))
                    .collect(),
            };
            variants::inspect(&mut found, &listed, &files).await;
        }
        let machine = self.inner.machine.memory();
        let recommended =
            fit::recommend(&found, &*self.inner.machine, &self.inner.fit).map(|r| r.variant_id);
        let variants = found
            .into_iter()
            .map(|variant| VariantView {
                fit: fit::estimate(&variant, &machine, &self.inner.fit),
                recommended: recommended.as_deref() == Some(variant.id.as_str()),
                variant,
            })
            .collect();
        Ok(VariantsReport {
            repo: repo.to_string(),
            revision,
            commit,
            variants,
            recommended,
            machine,
            from_cache,
        })
    }

    /// Resolves a pull request against the repo listing: which files, how many bytes, how many
    /// already cached.
    pub async fn plan_pull(&self, request: &PullRequest) -> Result<PullPlan, EngineError> {
        let repo = request.repo.clone().ok_or(EngineError::NoRepo)?;
        let revision = request.revision.clone().unwrap_or_else(|| "main".into());
        let (entries, commit, _) = self.listing(&repo, &revision).await?;
        let listed: Vec<ListedFile> = entries.iter().map(ListedFile::from).collect();

        let mut choice = Choice::Files;
        let mut variant_name = None;
        let mut wanted: Option<Vec<String>> = None;
        if let Some(name) = &request.variant {
            // The names in the file names are usually enough; only when none matches are the
            // headers read (a header can rename a variant whose file name says otherwise).
            let by_name = variants::scan(&listed);
            let variant = match find_variant(&by_name, name) {
                Some(variant) => variant.clone(),
                None => {
                    let report = self
                        .variants(&repo, Some(commit.as_deref().unwrap_or(&revision)))
                        .await?;
                    let inspected: Vec<Variant> =
                        report.variants.into_iter().map(|v| v.variant).collect();
                    find_variant(&inspected, name).cloned().ok_or_else(|| {
                        EngineError::NoSuchVariant {
                            repo: repo.to_string(),
                            name: name.clone(),
                        }
                    })?
                }
            };
            wanted = Some(variant_paths(&variant, request.with_extras));
            variant_name = Some(variant.name.clone());
            choice = Choice::Variant;
        } else if request.files.is_empty() && request.include.is_empty() {
            let found = variants::scan(&listed);
            if found.len() > 1 {
                let report = self
                    .variants(&repo, Some(commit.as_deref().unwrap_or(&revision)))
                    .await?;
                let chosen = report
                    .recommended
                    .as_deref()
                    .and_then(|id| report.variants.iter().find(|v| v.variant.id == id))
                    .or_else(|| report.variants.iter().find(|v| v.variant.complete));
                if let Some(view) = chosen {
                    wanted = Some(variant_paths(&view.variant, request.with_extras));
                    variant_name = Some(view.variant.name.clone());
                    choice = Choice::Recommended;
                } else {
                    choice = Choice::Everything;
                }
            } else {
                choice = Choice::Everything;
            }
        }

        let selection = match wanted {
            Some(files) => Selection {
                files,
                exclude: request.exclude.clone(),
                ..Selection::default()
            },
            None => Selection {
                files: request.files.clone(),
                include: request.include.clone(),
                exclude: request.exclude.clone(),
                variant: None,
            },
        };
        let picked: Vec<TreeEntry> = selection.pick(&entries)?.into_iter().cloned().collect();
        if picked.is_empty() {
            return Err(EngineError::NothingSelected {
                repo: repo.to_string(),
            });
        }
        let repo_cache = self.inner.cache.repo(&repo);
        let cached_bytes = picked
            .iter()
            .filter(|e| repo_cache.blob_exists(e.etag()))
            .map(|e| e.size)
            .sum();
        Ok(PullPlan {
            total_bytes: picked.iter().map(|e| e.size).sum(),
            files: picked.iter().map(ListedFile::from).collect(),
            cached_bytes,
            repo,
            revision,
            commit,
            choice,
            variant: variant_name,
            entries: picked,
        })
    }

    /// Puts a planned pull on the persistent queue; the scheduler runs it when conditions allow.
    pub fn enqueue(&self, plan: &PullPlan) -> Result<QueueJob, EngineError> {
        let selection = Selection {
            variant: plan.variant.clone(),
            ..Selection::files(plan.files.iter().map(|f| f.path.clone()))
        };
        let job = self.inner.scheduler.enqueue(NewQueueJob {
            repo: plan.repo.clone(),
            // Pin the job to the commit listed, so the files match what the user saw.
            revision: plan.revision.clone(),
            selection,
            priority: 0,
            bytes_total: Some(plan.total_bytes),
            convert: None,
        })?;
        self.touch(&plan.repo, Used::Planned(&plan.files));
        Ok(job)
    }

    /// Downloads a planned pull now, in this process, outside the queue (the CLI's `pull`).
    /// Progress goes to `reporter`; the handle pauses, resumes or cancels it.
    pub fn download(&self, plan: &PullPlan, reporter: Arc<dyn Reporter>) -> DownloadHandle {
        self.touch(&plan.repo, Used::Planned(&plan.files));
        let request = DownloadRequest {
            repo: plan.repo.clone(),
            revision: plan.revision.clone(),
            files: plan
                .entries
                .iter()
                .map(|e| FileSpec::from(e.path.clone()))
                .collect(),
        };
        let counting = Arc::new(HitCounter {
            index: self.inner.index.clone(),
            inner: reporter,
        });
        self.inner.downloader.start(request, counting)
    }
}

/// Counts cache hits (files found in the cache) and misses (files fetched) of a direct
/// download in the index, as the scheduler does for queued jobs, and forwards every event.
struct HitCounter {
    index: Index,
    inner: Arc<dyn Reporter>,
}

impl Reporter for HitCounter {
    fn report(&self, event: crate::download::DownloadEvent) {
        use crate::download::DownloadEvent;
        let metric = match &event {
            DownloadEvent::FileStarted { .. } => Some(crate::index::metric::MISSES),
            DownloadEvent::Skipped { .. } => Some(crate::index::metric::HITS),
            _ => None,
        };
        if let Some(name) = metric
            && let Err(error) = self.index.add_metric(name, 1)
        {
            tracing::warn!(%error, "could not count a cache hit or miss");
        }
        self.inner.report(event);
    }
}

/// Finds a variant by id (`gguf:Q4_K_M`), name or quant, case-insensitively.
pub(super) fn find_variant<'a>(variants: &'a [Variant], name: &str) -> Option<&'a Variant> {
    let eq = |a: &str| a.eq_ignore_ascii_case(name);
    variants
        .iter()
        .find(|v| eq(&v.id))
        .or_else(|| variants.iter().find(|v| eq(&v.name)))
        .or_else(|| variants.iter().find(|v| v.quant.as_deref().is_some_and(eq)))
}

/// The paths a variant's download needs.
fn variant_paths(variant: &Variant, with_extras: bool) -> Vec<String> {
    let mut paths: Vec<String> = variant
        .files
        .iter()
        .chain(&variant.companions)
        .map(|f| f.path.clone())
        .collect();
    if with_extras {
        paths.extend(
            variant
                .extras
                .iter()
                .chain(&variant.projectors)
                .map(|f| f.path.clone()),
        );
    }
    paths
}
