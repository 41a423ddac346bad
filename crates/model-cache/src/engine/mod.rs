//! The facade the edges use: one [`Engine`] per process ties the Hub client, the store, the
//! index, the downloader, the variants and the scheduler together.
//!
//! The desktop app, `mcache` and the local API call these methods and render what comes back;
//! they hold no logic of their own. Every type returned here is serialisable and is what the
//! local API sends (`docs/local-api.md`): **serialization is a commitment**.
//!
//! ```no_run
//! # async fn demo(settings: model_cache::Settings) -> Result<(), model_cache::engine::EngineError> {
//! use model_cache::engine::{Engine, EngineOptions, PullRequest};
//! let engine = Engine::open(settings, EngineOptions::system())?;
//! let report = engine.variants(&"demo/tiny-gguf".parse().unwrap(), None).await?;
//! println!("recommended: {:?}", report.recommended);
//! let plan = engine.plan_pull(&PullRequest::repo("demo/tiny-gguf".parse().unwrap())).await?;
//! let job = engine.enqueue(&plan)?;
//! println!("queued job {}", job.id);
//! # Ok(()) }
//! ```

mod preferences;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub use preferences::{PREFERENCES_FILE, Preferences, PreferencesError};

use crate::doctor::{self, DoctorError, DoctorReport};
use crate::download::{
    DownloadError, DownloadHandle, DownloadRequest, Downloader, FileSpec, Reporter,
};
use crate::fit::{self, FitEstimate, FitOptions, Machine, MachineMemory, SystemMachine};
use crate::hash::{self, HashAlgorithm};
use crate::hub::{EntryKind, Gating, HubClient, HubError, TreeEntry};
use crate::index::queue::{NewQueueJob, QueueJob, Selection};
use crate::index::{Index, IndexError};
use crate::metrics::{self, Counters, HealthReport};
use crate::policy::cleanup::CleanupReport;
use crate::policy::usage::{self, Used};
use crate::policy::{CachePolicy, PolicyError, SchedulePolicy};
use crate::repo::RepoId;
use crate::scheduler::{
    DownloaderRunner, Probes, Scheduler, SchedulerConfig, SchedulerError, SchedulerEvent,
};
use crate::secret::Token;
use crate::settings::Settings;
use crate::store::{CachedLookup, HubCache, StoreError};
use crate::variants::{
    self, CacheFirstRepoFiles, HubRepoFiles, ListedFile, LocalRepoFiles, Variant,
};

/// Errors of the facade. Each has a stable [`EngineError::kind`] the app, the local API and the
/// CLI's exit codes switch on, and a message that says what to do where it can.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Doctor(#[from] DoctorError),
    #[error(transparent)]
    Preferences(#[from] PreferencesError),
    #[error("`{repo}` has no variant named `{name}`\nhint: `mcache variants {repo}` lists them")]
    NoSuchVariant { repo: String, name: String },
    #[error(
        "Nothing in `{repo}` matches the selection\nhint: check the `--include`/`--exclude` patterns or the file names"
    )]
    NothingSelected { repo: String },
    #[error("Invalid file pattern `{pattern}`: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error(
        "`{file}` of `{repo}` is not in the cache (revision `{revision}`)\nhint: run `mcache pull {repo}` while online"
    )]
    OfflineMiss {
        repo: String,
        revision: String,
        file: String,
    },
    #[error("`{repo}` is not in the cache\nhint: `mcache ls` lists cached models")]
    NotCached { repo: String },
}

impl EngineError {
    /// A stable snake_case name of the error.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::Hub(e) => e.root().kind(),
            EngineError::Download(e) => e.kind(),
            EngineError::Scheduler(e) => e.kind(),
            EngineError::Policy(e) => e.kind(),
            EngineError::Index(e) => e.kind(),
            EngineError::Store(e) => e.kind(),
            EngineError::Doctor(e) => e.kind(),
            EngineError::Preferences(_) => "preferences",
            EngineError::NoSuchVariant { .. } => "no_such_variant",
            EngineError::NothingSelected { .. } => "nothing_selected",
            EngineError::BadPattern { .. } => "bad_pattern",
            EngineError::OfflineMiss { .. } => "offline_miss",
            EngineError::NotCached { .. } => "not_cached",
        }
    }

    /// The `hint:` part of the message, if any.
    pub fn hint(&self) -> Option<String> {
        let text = self.to_string();
        text.split_once("\nhint: ").map(|(_, h)| h.to_string())
    }

    /// The message without its hint.
    pub fn headline(&self) -> String {
        let text = self.to_string();
        text.split_once("\nhint: ")
            .map_or(text.clone(), |(m, _)| m.to_string())
    }
}

/// What the engine reads the machine through; tests pass fakes.
pub struct EngineOptions {
    pub probes: Probes,
    pub machine: Arc<dyn Machine + Send + Sync>,
    pub fit: FitOptions,
    /// Run the download queue (and background cleanup) in this process: the app and
    /// `mcache serve` do; other short-lived commands open the queue passively, so they never
    /// take over jobs the app is running.
    pub run_queue: bool,
}

impl EngineOptions {
    /// The real machine: battery, disk, clock, memory.
    pub fn system() -> Self {
        EngineOptions {
            probes: Probes::system(),
            machine: Arc::new(SystemMachine),
            fit: FitOptions::default(),
            run_queue: true,
        }
    }

    /// Fakes for tests: [`Probes::fake`] and a machine with `ram` bytes of memory, all free.
    pub fn fake(ram: u64) -> Self {
        EngineOptions {
            probes: Probes::fake(),
            machine: Arc::new(MachineMemory {
                total_ram: ram,
                available_ram: ram,
                vram_total: None,
            }),
            fit: FitOptions::default(),
            run_queue: true,
        }
    }
}

/// The variants of a repo at a revision, with fit hints and a recommendation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantsReport {
    pub repo: String,
    pub revision: String,
    /// The commit the listing was read at (`None` when read from the cache offline without a
    /// known commit).
    pub commit: Option<String>,
    pub variants: Vec<VariantView>,
    /// The `id` of the recommended variant.
    pub recommended: Option<String>,
    pub machine: MachineMemory,
    /// Whether the listing came from the cache (offline) instead of the Hub.
    pub from_cache: bool,
}

/// A variant with its fit estimate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantView {
    #[serde(flatten)]
    pub variant: Variant,
    pub fit: FitEstimate,
    pub recommended: bool,
}

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

/// A job action from the UI, the CLI or the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobAction {
    Pause,
    Resume,
    Cancel,
    MoveUp,
    MoveDown,
}

/// A model in the cache, as the cache browser shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedRepoView {
    pub repo: String,
    pub repo_type: crate::repo::RepoType,
    pub size_bytes: u64,
    /// Unix milliseconds of the last use through Model Cache (or the file times).
    pub last_used: Option<i64>,
    pub pinned: bool,
    pub path: PathBuf,
    pub revisions: Vec<CachedRevisionView>,
}

/// One cached revision of a model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedRevisionView {
    pub commit: String,
    pub refs: Vec<String>,
    pub size_bytes: u64,
    pub files: usize,
    pub snapshot_path: PathBuf,
}

/// The result of checking cached files against their hashes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    pub checked: usize,
    pub bytes: u64,
    pub corrupt: Vec<CorruptFile>,
}

/// A cached file whose bytes no longer match its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CorruptFile {
    pub repo: String,
    pub path: String,
    pub blob: PathBuf,
    pub expected: String,
    pub actual: String,
}

/// Counters and health together, for `mcache stats` and the UI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub counters: Counters,
    pub health: HealthReport,
    /// The most recent finished downloads of the queue, newest first.
    pub downloads: Vec<FinishedDownload>,
}

/// One finished download and how fast it went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinishedDownload {
    pub repo: String,
    pub variant: Option<String>,
    /// Bytes transferred (not counting files found in the cache).
    pub bytes: u64,
    pub bytes_from_cache: u64,
    pub seconds: f64,
    pub speed_bps: u64,
    /// Unix milliseconds.
    pub finished_at: i64,
}

/// How many finished downloads [`Engine::stats`] lists.
const RECENT_DOWNLOADS: usize = 20;

/// The engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    hub: HubClient,
    cache: HubCache,
    index: Index,
    downloader: Downloader,
    scheduler: Scheduler,
    machine: Arc<dyn Machine + Send + Sync>,
    fit: FitOptions,
    preferences: Mutex<Preferences>,
}

impl Engine {
    /// Opens the index, the cache and the scheduler (which resumes interrupted jobs), with
    /// `settings` as the edge resolved them. Saved preferences apply on top: call
    /// [`Preferences::apply`] on the settings before, as the edges do, for the start-time ones;
    /// the live ones (schedule, cache policy, bandwidth) are applied here.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn open(settings: Settings, options: EngineOptions) -> Result<Engine, EngineError> {
        let preferences = Preferences::load(&settings.data_dir)?;
        let index = Index::open(&settings.data_dir)?;
        let cache = HubCache::new(&settings.hub_cache);
        let hub = HubClient::new(&settings)?;
        let downloader = Downloader::new(&settings, hub.clone(), index.clone());
        let mut config = SchedulerConfig::new(&settings.hub_cache);
        config.run = options.run_queue;
        if let Some(policy) = &preferences.schedule {
            config.policy = policy.clone();
        }
        if let Some(policy) = &preferences.cache {
            config.cache_policy = policy.clone();
        }
        let runner = Arc::new(DownloaderRunner::new(hub.clone(), downloader.clone()));
        let scheduler = Scheduler::start(config, index.clone(), runner, options.probes)?;
        Ok(Engine {
            inner: Arc::new(Inner {
                settings,
                hub,
                cache,
                index,
                downloader,
                scheduler,
                machine: options.machine,
                fit: options.fit,
                preferences: Mutex::new(preferences),
            }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn hub(&self) -> &HubClient {
        &self.inner.hub
    }

    pub fn cache(&self) -> &HubCache {
        &self.inner.cache
    }

    pub fn index(&self) -> &Index {
        &self.inner.index
    }

    pub fn downloader(&self) -> &Downloader {
        &self.inner.downloader
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.inner.scheduler
    }

    /// Job changes, progress, evictions and alerts.
    pub fn subscribe(&self) -> broadcast::Receiver<SchedulerEvent> {
        self.inner.scheduler.subscribe()
    }

    /// Stops the scheduler; running downloads pause in place and resume at the next start.
    pub fn shutdown(&self) {
        self.inner.scheduler.shutdown();
    }

    /// Lists a repo at a revision: from the Hub, or from the cache when offline.
    async fn listing(
        &self,
        repo: &RepoId,
        revision: &str,
    ) -> Result<(Vec<TreeEntry>, Option<String>, bool), EngineError> {
        if self.inner.hub.is_offline() {
            let (entries, commit) = self.cached_listing(repo, revision)?;
            return Ok((entries, commit, true));
        }
        let info = self.inner.hub.repo_info(repo, Some(revision)).await?;
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

    /// The files of a cached snapshot, as a listing (sizes from the blobs).
    fn cached_listing(
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
        let root = repo_cache.snapshot_dir(&commit);
        let mut entries = Vec::new();
        collect_files(&root, &root, &mut entries);
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
        let repo = request
            .repo
            .clone()
            .ok_or_else(|| EngineError::BadPattern {
                pattern: String::new(),
                reason: "no repo given".into(),
            })?;
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

        let include = glob_set(&request.include)?;
        let exclude = glob_set(&request.exclude)?;
        let picked: Vec<TreeEntry> = entries
            .into_iter()
            .filter(|e| match &wanted {
                Some(paths) => paths.iter().any(|p| p == &e.path),
                None => {
                    (request.files.is_empty() && include.is_none())
                        || request.files.iter().any(|f| f == &e.path)
                        || include.as_ref().is_some_and(|s| s.is_match(&e.path))
                }
            })
            .filter(|e| exclude.as_ref().is_none_or(|s| !s.is_match(&e.path)))
            .collect();
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
            include: plan.files.iter().map(|f| glob_escape(&f.path)).collect(),
            exclude: Vec::new(),
            variant: plan.variant.clone(),
        };
        let job = self.inner.scheduler.enqueue(NewQueueJob {
            repo: plan.repo.clone(),
            // Pin the job to the commit listed, so the files match what the user saw.
            revision: plan.revision.clone(),
            selection,
            priority: 0,
            bytes_total: Some(plan.total_bytes),
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

    /// Every job, live ones first.
    pub fn jobs(&self) -> Result<Vec<QueueJob>, EngineError> {
        Ok(self.inner.scheduler.jobs()?)
    }

    /// Pauses, resumes, cancels or reorders a job.
    pub fn job_action(&self, id: i64, action: JobAction) -> Result<QueueJob, EngineError> {
        let scheduler = &self.inner.scheduler;
        match action {
            JobAction::Pause => Ok(scheduler.pause(id)?),
            JobAction::Resume => Ok(scheduler.resume(id)?),
            JobAction::Cancel => Ok(scheduler.cancel(id)?),
            JobAction::MoveUp | JobAction::MoveDown => {
                let live: Vec<QueueJob> = scheduler
                    .jobs()?
                    .into_iter()
                    .filter(|j| !j.state.is_terminal())
                    .collect();
                let at = live.iter().position(|j| j.id == id).unwrap_or(0);
                let to = match action {
                    JobAction::MoveUp => at.saturating_sub(1),
                    _ => (at + 1).min(live.len().saturating_sub(1)),
                };
                scheduler.move_to(id, to)?;
                Ok(scheduler.job(id)?)
            }
        }
    }

    /// Pauses every download until [`Engine::resume_all`]; survives restarts.
    pub fn pause_all(&self) -> Result<(), EngineError> {
        Ok(self.inner.scheduler.pause_all()?)
    }

    pub fn resume_all(&self) -> Result<(), EngineError> {
        Ok(self.inner.scheduler.resume_all()?)
    }

    /// The models in the cache, with sizes, last use and pins; includes models other tools put
    /// there.
    pub fn cache_list(&self) -> Result<Vec<CachedRepoView>, EngineError> {
        let janitor = self.inner.scheduler.janitor();
        let inventory = janitor.scan()?;
        let candidates = janitor.candidates(&inventory)?;
        let mut views = Vec::new();
        for repo in &inventory.repos {
            let mut revisions = Vec::new();
            let mut repo_blobs = std::collections::HashMap::new();
            for revision in &repo.revisions {
                let candidate = candidates
                    .iter()
                    .find(|c| c.repo == repo.repo && c.commit == revision.commit);
                let (size, files) = candidate.map_or((0, 0), |c| {
                    for blob in &c.blobs {
                        repo_blobs.insert(blob.key.clone(), blob.size);
                    }
                    (c.blobs.iter().map(|b| b.size).sum(), c.blobs.len())
                });
                revisions.push(CachedRevisionView {
                    commit: revision.commit.clone(),
                    refs: revision.refs.clone(),
                    size_bytes: size,
                    files,
                    snapshot_path: repo.path.join("snapshots").join(&revision.commit),
                });
            }
            let last_used = candidates
                .iter()
                .filter(|c| c.repo == repo.repo)
                .map(|c| system_time_ms(c.last_used))
                .max();
            let pinned = candidates.iter().any(|c| c.repo == repo.repo && c.pinned)
                || self.inner.index.is_pinned(&repo.repo)?;
            views.push(CachedRepoView {
                repo: repo.repo.to_string(),
                repo_type: repo.repo.repo_type,
                size_bytes: repo_blobs.values().sum(),
                last_used,
                pinned,
                path: repo.path.clone(),
                revisions,
            });
        }
        views.sort_by(|a, b| a.repo.cmp(&b.repo));
        Ok(views)
    }

    /// Pins (never evicted) or unpins a cached model.
    pub fn set_pinned(&self, repo: &RepoId, pinned: bool) -> Result<(), EngineError> {
        self.inner.index.upsert_repo(repo)?;
        if pinned {
            self.inner.index.pin(repo, None)?;
        } else {
            self.inner.index.unpin(repo, None)?;
        }
        Ok(())
    }

    /// Removes a cached model (or one revision of it) with the blobs nothing else links, and
    /// its index rows. Pinned models are refused unless `force`.
    pub fn delete(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
        force: bool,
        dry_run: bool,
    ) -> Result<crate::policy::gc::Removal, EngineError> {
        Ok(self
            .inner
            .scheduler
            .remove(repo, revision, force, dry_run)?)
    }

    /// Removes one variant of a cached revision: its weight files, and the blobs nothing else
    /// links. Companions (config, tokenizer) stay while another variant still uses them; when no
    /// weights are left the whole revision goes.
    pub fn delete_variant(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
        variant: &str,
        force: bool,
        dry_run: bool,
    ) -> Result<crate::policy::gc::Removal, EngineError> {
        let revision = revision.unwrap_or("main");
        let (entries, commit) = self.cached_listing(repo, revision)?;
        let commit = commit.ok_or_else(|| EngineError::NotCached {
            repo: repo.to_string(),
        })?;
        let listed: Vec<ListedFile> = entries.iter().map(ListedFile::from).collect();
        let present = variants::scan(&listed);
        let chosen = find_variant(&present, variant).ok_or_else(|| EngineError::NoSuchVariant {
            repo: repo.to_string(),
            name: variant.to_string(),
        })?;
        let others_left = present
            .iter()
            .any(|v| v.id != chosen.id && !v.files.is_empty());
        let files: Vec<String> = if others_left {
            chosen.files.iter().map(|f| f.path.clone()).collect()
        } else {
            listed.iter().map(|f| f.path.clone()).collect()
        };
        Ok(self
            .inner
            .scheduler
            .remove_files(repo, &commit, &files, force, dry_run)?)
    }

    /// Runs a cleanup pass now; `max_size` sets the budget for this pass.
    pub fn gc(&self, max_size: Option<u64>, dry_run: bool) -> Result<CleanupReport, EngineError> {
        let scheduler = &self.inner.scheduler;
        Ok(match max_size {
            Some(budget) => scheduler.cleanup_to(budget, dry_run)?,
            None => scheduler.cleanup(dry_run)?,
        })
    }

    /// Re-hashes cached files (of one repo, or all) and reports those that no longer match.
    pub async fn verify(&self, repo: Option<&RepoId>) -> Result<VerifyReport, EngineError> {
        let scan = self.inner.cache.scan()?;
        let mut report = VerifyReport::default();
        for cached in scan
            .repos
            .iter()
            .filter(|r| repo.is_none_or(|want| &r.repo == want))
        {
            let mut seen = std::collections::HashSet::new();
            for revision in &cached.revisions {
                for file in &revision.files {
                    let Some(etag) = file.blob_path.file_name().and_then(|n| n.to_str()) else {
                        continue;
                    };
                    if !seen.insert(file.blob_path.clone()) {
                        continue;
                    }
                    let algorithm = match etag.len() {
                        64 => HashAlgorithm::Sha256,
                        40 => HashAlgorithm::GitSha1,
                        _ => continue,
                    };
                    let actual = hash::hash_file(file.blob_path.clone(), algorithm, file.size)
                        .await
                        .map_err(|source| StoreError::Io {
                            action: "hash",
                            path: file.blob_path.clone(),
                            source,
                        })?;
                    report.checked += 1;
                    report.bytes += file.size;
                    if actual != etag {
                        report.corrupt.push(CorruptFile {
                            repo: cached.repo.to_string(),
                            path: file.path.clone(),
                            blob: file.blob_path.clone(),
                            expected: etag.to_string(),
                            actual,
                        });
                    }
                }
            }
        }
        Ok(report)
    }

    /// Checks (and with `repair`, fixes) the index against the disk.
    pub fn doctor(&self, repair: bool) -> Result<DoctorReport, EngineError> {
        Ok(doctor::run(&self.inner.cache, &self.inner.index, repair)?)
    }

    pub fn health(&self) -> Result<HealthReport, EngineError> {
        Ok(self.inner.scheduler.health()?)
    }

    pub fn stats(&self) -> Result<Stats, EngineError> {
        let mut downloads: Vec<FinishedDownload> = self
            .jobs()?
            .into_iter()
            .filter(|j| j.state == crate::index::queue::QueueState::Done)
            .filter_map(|j| {
                let (started, finished) = (j.started_at?, j.finished_at?);
                let seconds = (finished - started).max(1) as f64 / 1000.0;
                Some(FinishedDownload {
                    repo: j.repo.to_string(),
                    variant: j.selection.variant,
                    bytes: j.bytes_done,
                    bytes_from_cache: j.bytes_saved,
                    seconds,
                    speed_bps: (j.bytes_done as f64 / seconds) as u64,
                    finished_at: finished,
                })
            })
            .collect();
        downloads.sort_by_key(|d| std::cmp::Reverse(d.finished_at));
        downloads.truncate(RECENT_DOWNLOADS);
        Ok(Stats {
            counters: metrics::counters(&self.inner.index)?,
            health: self.health()?,
            downloads,
        })
    }

    /// The local path of a cached file, without any network access (like
    /// `try_to_load_from_cache`): the snapshot path, which runners can open directly.
    pub fn path(&self, repo: &RepoId, revision: &str, file: &str) -> Result<PathBuf, EngineError> {
        match self.inner.cache.repo(repo).lookup_cached(revision, file) {
            CachedLookup::Found(path) => {
                self.touch(repo, Used::CachedFile { revision, file });
                Ok(path)
            }
            _ => Err(EngineError::OfflineMiss {
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: file.to_string(),
            }),
        }
    }

    /// The preferences in force.
    pub fn preferences(&self) -> Preferences {
        let mut prefs = lock(&self.inner.preferences).clone();
        prefs
            .schedule
            .get_or_insert_with(|| self.inner.scheduler.policy());
        prefs
            .cache
            .get_or_insert_with(|| self.inner.scheduler.cache_policy());
        prefs.max_rate_bps.get_or_insert(
            self.inner
                .downloader
                .limits()
                .bandwidth()
                .rate()
                .unwrap_or(0),
        );
        prefs
    }

    /// Changes preferences: saved, and the live ones (bandwidth, schedule, cache policy) applied
    /// at once.
    pub fn update_preferences(&self, patch: Preferences) -> Result<Preferences, EngineError> {
        let mut prefs = lock(&self.inner.preferences);
        let mut next = prefs.clone();
        next.merge(patch.clone());
        next.save(&self.inner.settings.data_dir)?;
        if let Some(rate) = patch.max_rate_bps {
            self.inner.downloader.set_rate((rate > 0).then_some(rate));
        }
        if let Some(policy) = patch.schedule {
            self.apply_schedule(policy);
        }
        if let Some(policy) = patch.cache {
            self.apply_cache_policy(policy);
        }
        *prefs = next;
        drop(prefs);
        Ok(self.preferences())
    }

    fn apply_schedule(&self, policy: SchedulePolicy) {
        self.inner.scheduler.set_policy(policy);
    }

    fn apply_cache_policy(&self, policy: CachePolicy) {
        self.inner.scheduler.set_cache_policy(policy);
    }

    /// Whether a Hub token is set (its value is never returned).
    pub fn has_token(&self) -> bool {
        self.inner.hub.has_token()
    }

    /// Logs in (`Some`) or out (`None`): the token is used at once by every request, and stored
    /// in `settings.token_file` (owner-only, written atomically) where `huggingface_hub` reads it.
    pub fn set_token(&self, token: Option<Token>) -> Result<(), EngineError> {
        if let Some(path) = &self.inner.settings.token_file {
            store_token(path, token.as_ref()).map_err(|source| StoreError::Io {
                action: "store the token in",
                path: path.clone(),
                source,
            })?;
        }
        self.inner.hub.set_token(token);
        Ok(())
    }

    /// Records a use of a model, and of the variants used, through one of our interfaces (for
    /// LRU eviction).
    fn touch(&self, repo: &RepoId, used: Used<'_>) {
        let (index, root) = (&self.inner.index, self.inner.cache.root());
        if let Err(error) = usage::record(index, root, repo, used, crate::index::now_ms()) {
            tracing::warn!(%repo, %error, "could not record the use of a model");
        }
    }
}

/// Writes (or removes) the token file: a temp file with mode 0600 renamed into place.
fn store_token(path: &Path, token: Option<&Token>) -> std::io::Result<()> {
    let Some(token) = token else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".token.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    {
        use std::io::Write;
        let mut file = options.open(&tmp)?;
        file.write_all(token.expose().as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn system_time_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Finds a variant by id (`gguf:Q4_K_M`), name or quant, case-insensitively.
fn find_variant<'a>(variants: &'a [Variant], name: &str) -> Option<&'a Variant> {
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

fn glob_set(patterns: &[String]) -> Result<Option<globset::GlobSet>, EngineError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = globset::GlobSetBuilder::new();
    for pattern in patterns {
        let glob = globset::Glob::new(pattern).map_err(|e| EngineError::BadPattern {
            pattern: pattern.clone(),
            reason: e.kind().to_string(),
        })?;
        builder.add(glob);
    }
    builder
        .build()
        .map(Some)
        .map_err(|e| EngineError::BadPattern {
            pattern: patterns.join(" "),
            reason: e.kind().to_string(),
        })
}

/// Escapes glob metacharacters so a path matches only itself.
fn glob_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '!') {
            out.push('[');
            out.push(c);
            out.push(']');
        } else {
            out.push(c);
        }
    }
    out
}

/// Collects the files under a snapshot folder as listing entries (sizes of the link targets).
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<TreeEntry>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect_files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let etag = std::fs::read_link(&path)
                .ok()
                .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            out.push(TreeEntry {
                path: rel.to_string_lossy().replace('\\', "/"),
                size: meta.len(),
                oid: etag,
                lfs: None,
                kind: EntryKind::File,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn escaped_paths_match_only_themselves() {
        let path = "weird/[x]*name?.gguf";
        let glob = globset::Glob::new(&glob_escape(path))
            .unwrap()
            .compile_matcher();
        assert!(glob.is_match(path));
        assert!(!glob.is_match("weird/xAname1.gguf"));
    }
}
