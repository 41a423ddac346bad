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

mod card;
mod convert;
mod error;
mod import;
mod mirror;
mod peers;
mod preferences;
mod pull;
mod push;
mod room;
mod search;
mod updates;
mod views;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

pub use card::ModelPage;
pub use error::EngineError;
pub use mirror::{Fetch, ServedRead, deferred_message};
pub use peers::{PairingCode, PairingRefused, PeerView, PeersView, ThisPeer};
pub use preferences::{
    AllowedOrigin, AppSettings, BatteryMode, BatterySetting, DEFAULT_DEFERRED_AFTER, FieldError,
    HoursSetting, NotificationKind, NotificationPreferences, PREFERENCES_FILE, Preferences,
    PreferencesError, PreferencesPatch, PreferencesPatchError, SETTING_NAMES, Span, TrustChange,
};
pub use pull::{Choice, PullPlan, PullRequest};
pub use push::PushReport;
pub use room::{Room, RoomEviction};
pub use search::{
    DEFAULT_SEARCH_LIMIT, SearchReport, SearchRequest, SearchResultView, SizeEstimate,
    listed_formats, listed_size,
};
pub use updates::{
    HeldView, MeteredProbe, UnknownMetering, UpdateCheckPolicy, UpdateCheckReport, UpdateView,
};
pub use views::{
    CachedRepoView, CachedRevisionView, CorruptFile, Counters, DoctorError, DoctorReport,
    FinishedDownload, HealthReport, JobAction, Stats, VariantView, VariantsReport, VerifyReport,
    VolumeReport,
};

use crate::doctor;
use crate::download::Downloader;
use crate::fit::{FitOptions, Machine, MachineMemory, SystemMachine};
use crate::formats::{self, HubSource, Inspection};
use crate::hub::HubClient;
use crate::index::Index;
use crate::index::queue::QueueJob;
use crate::metrics;
use crate::policy::cleanup::CleanupReport;
use crate::policy::usage::{self, Used};
use crate::repo::RepoId;
use crate::scheduler::{DownloaderRunner, Probes, Scheduler, SchedulerConfig, SchedulerEvent};
use crate::secret::Token;
use crate::settings::{CacheOrigin, Settings};
use crate::store::{CachedLookup, HubCache, StoreError};
use crate::variants::{self, ListedFile};

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
    /// What was wrong with the saved preferences at start (shown with the health alerts).
    preference_warnings: Vec<String>,
    /// Held while a pull-through looks for a job to join or queues one.
    fetching: Mutex<()>,
    /// Pairing key exchanges this machine accepted, by the joiner's fingerprint, until the
    /// joiner proves its key (`peers.rs`).
    pairing_sessions: Mutex<std::collections::HashMap<String, peers::PairingSession>>,
}

/// Refuses a chosen cache folder that is not there, as [`CacheOrigin`] says: its drive is not
/// connected, so creating it would put a new, empty cache on the disk its mount point is on, and
/// using the default folder instead would download everything again there.
///
/// [`Engine::open`] checks it first; the app also calls it while it waits for the drive.
pub fn check_cache_folder(settings: &Settings) -> Result<(), EngineError> {
    let path = &settings.hub_cache;
    if settings.hub_cache_origin == CacheOrigin::Default || path.exists() {
        return Ok(());
    }
    // The outermost missing folder: the first ancestor whose parent exists.
    let mut missing = path.clone();
    while let Some(parent) = missing.parent() {
        if parent.as_os_str().is_empty() || parent.exists() {
            break;
        }
        missing = parent.to_path_buf();
    }
    let refused = match settings.hub_cache_origin {
        CacheOrigin::Preference => true,
        _ => missing != *path,
    };
    if refused {
        return Err(EngineError::CacheFolderMissing {
            path: path.clone(),
            missing,
        });
    }
    Ok(())
}

impl Engine {
    /// Opens the index, the cache and the scheduler (which resumes interrupted jobs), with
    /// `settings` as the edge resolved them. Saved preferences apply on top: call
    /// [`Preferences::apply`] on the settings before, as the edges do, for the start-time ones;
    /// the live ones (schedule, cache policy, bandwidth) are applied here.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn open(settings: Settings, options: EngineOptions) -> Result<Engine, EngineError> {
        check_cache_folder(&settings)?;
        let (preferences, preference_warnings) = Preferences::load_checked(&settings.data_dir);
        for warning in &preference_warnings {
            tracing::warn!("{warning}");
        }
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
        let runner = Arc::new(crate::convert::runner::RoutingRunner {
            downloads: Arc::new(DownloaderRunner::new(hub.clone(), downloader.clone())),
            conversions: Arc::new(crate::convert::runner::ConvertRunner {
                context: crate::convert::job::ConvertContext {
                    hub_cache: settings.hub_cache.clone(),
                    data_dir: settings.data_dir.clone(),
                    llama_cpp: settings.llama_cpp_converter.clone(),
                },
            }),
        });
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
                preference_warnings,
                fetching: Mutex::new(()),
                pairing_sessions: Mutex::new(Default::default()),
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

    /// The jobs the Downloads list shows, live ones first: finished jobs the person cleared
    /// are left out (the statistics still count them).
    pub fn jobs(&self) -> Result<Vec<QueueJob>, EngineError> {
        let cleared = self
            .inner
            .index
            .with_conn("read the cleared jobs", crate::index::queue::cleared)?;
        Ok(self
            .inner
            .scheduler
            .jobs()?
            .into_iter()
            .filter(|j| !(j.state.is_terminal() && cleared.contains(&j.id)))
            .collect())
    }

    /// Clears the finished jobs (done, failed, cancelled) from the Downloads list; returns how
    /// many. Their downloads stay counted in the statistics.
    pub fn clear_finished(&self) -> Result<usize, EngineError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(self.inner.index.with_conn("clear finished jobs", |c| {
            crate::index::queue::clear_finished(c, now)
        })?)
    }

    /// Polls job `id` until `until` holds for it; panics after two minutes (tests and
    /// examples only).
    #[cfg(feature = "test-support")]
    pub async fn wait_for_job(&self, id: i64, until: impl Fn(&QueueJob) -> bool) -> QueueJob {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let job = self.inner.scheduler.job(id).expect("the job is listed");
            if until(&job) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} did not get there: {job:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
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
        let listed = self.inner.scheduler.janitor().listing()?;
        let followed = updates::followed_in_listing(&listed);
        let mut views = Vec::new();
        for listed in listed {
            let repo = listed.listing;
            let revisions = repo
                .revisions
                .into_iter()
                .map(|revision| CachedRevisionView {
                    snapshot_path: crate::store::layout::snapshot_dir(&repo.path, &revision.commit),
                    commit: revision.commit,
                    refs: revision.refs,
                    size_bytes: revision.size_bytes,
                    files: revision.files,
                })
                .collect();
            let (updates, held) = self.update_state(&repo.repo, &followed)?;
            views.push(CachedRepoView {
                repo: repo.repo.to_string(),
                repo_type: repo.repo.repo_type,
                size_bytes: repo.size_bytes,
                last_used: listed.last_used.map(system_time_ms),
                pinned: listed.pinned,
                path: repo.path,
                revisions,
                updates,
                held,
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
    ) -> Result<crate::store::removal::Removal, EngineError> {
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
    ) -> Result<crate::store::removal::Removal, EngineError> {
        let revision = revision.unwrap_or("main");
        let (entries, commit) = self.cached_listing(repo, revision)?;
        let commit = commit.ok_or_else(|| EngineError::NotCached {
            repo: repo.to_string(),
        })?;
        let listed: Vec<ListedFile> = entries.iter().map(ListedFile::from).collect();
        let present = variants::scan(&listed);
        let chosen =
            pull::find_variant(&present, variant).ok_or_else(|| EngineError::NoSuchVariant {
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

    /// Re-hashes cached files (of one repo, or all: then the imported models in our own area
    /// too, against the sha256 their import recorded) and reports those that no longer match.
    pub async fn verify(&self, repo: Option<&RepoId>) -> Result<VerifyReport, EngineError> {
        let mut report = self.inner.cache.verify(repo).await?;
        if repo.is_none() {
            self.verify_imported(&mut report).await?;
        }
        Ok(report)
    }

    /// Checks (and with `repair`, fixes) the index against the disk.
    pub fn doctor(&self, repair: bool) -> Result<DoctorReport, EngineError> {
        Ok(doctor::run(&self.inner.cache, &self.inner.index, repair)?)
    }

    /// The health summary; problems with the saved preferences found at start come first.
    pub fn health(&self) -> Result<HealthReport, EngineError> {
        let mut report = self.inner.scheduler.health()?;
        if !self.inner.preference_warnings.is_empty() {
            let mut problems = self.inner.preference_warnings.clone();
            problems.append(&mut report.problems);
            report.problems = problems;
        }
        // A cache without symlinks works, but each file takes its place twice over where hard
        // links are not available either: the person should know why.
        if self.inner.cache.link_mode() == crate::store::LinkMode::Copy {
            report
                .problems
                .push(crate::store::NO_SYMLINKS_WARNING.to_string());
        }
        Ok(report)
    }

    pub fn stats(&self) -> Result<Stats, EngineError> {
        let mut downloads: Vec<FinishedDownload> = self
            .inner
            .scheduler
            .jobs()?
            .into_iter()
            .filter(|j| j.state == crate::index::queue::QueueState::Done && j.convert.is_none())
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

    /// Which desktop notifications the user wants (the `notify_*` settings), cheaply.
    pub fn notification_preferences(&self) -> NotificationPreferences {
        lock(&self.inner.preferences)
            .notifications
            .unwrap_or_default()
    }

    /// The settings in force, in the vocabulary every edge shares.
    pub fn app_settings(&self) -> AppSettings {
        let prefs = lock(&self.inner.preferences).clone();
        self.app_settings_with(&prefs)
    }

    /// The settings in force were `prefs` saved.
    fn app_settings_with(&self, prefs: &Preferences) -> AppSettings {
        let mut settings = AppSettings::from_parts(
            prefs,
            &self.inner.settings,
            &self.inner.scheduler.policy(),
            &self.inner.scheduler.cache_policy(),
            self.inner.downloader.limits().bandwidth().rate(),
            self.has_token(),
        );
        if let Ok(used) = self.inner.index.origins_last_used() {
            settings.origins_last_used = used
                .into_iter()
                .filter(|(origin, _)| settings.allowed_origins.contains(origin))
                .collect();
        }
        settings
    }

    /// Whether pages of the web `origin` may use the mirror, and if so whether they read as
    /// holders of the mirror token (`Some(true)`).
    pub fn allowed_origin(&self, origin: &str) -> Option<bool> {
        let prefs = lock(&self.inner.preferences);
        prefs
            .allowed_origins
            .as_ref()?
            .iter()
            .find(|o| o.origin.eq_ignore_ascii_case(origin))
            .map(|o| o.without_token)
    }

    /// Records that pages of an allowed `origin` used the mirror now (shown as its last use).
    pub fn record_origin_use(&self, origin: &str) {
        if let Err(error) = self.inner.index.record_origin_use(origin) {
            tracing::debug!(%origin, %error, "could not record a web origin's use");
        }
    }

    /// Changes settings: saved, and the live ones (bandwidth, schedule, cache policy) applied
    /// at once. Returns the settings now in force.
    pub fn update_preferences(&self, patch: &PreferencesPatch) -> Result<AppSettings, EngineError> {
        let mut prefs = lock(&self.inner.preferences);
        let next = self.patched(&prefs, patch)?;
        next.save(&self.inner.settings.data_dir)?;
        if let Some(rate) = patch.max_rate_bps {
            self.inner.downloader.set_rate(rate);
        }
        if next.schedule != prefs.schedule
            && let Some(policy) = &next.schedule
        {
            self.inner.scheduler.set_policy(policy.clone());
        }
        if next.cache != prefs.cache
            && let Some(policy) = &next.cache
        {
            self.inner.scheduler.set_cache_policy(policy.clone());
        }
        *prefs = next;
        drop(prefs);
        Ok(self.app_settings())
    }

    /// What `patch` would change of where requests and the token go (the endpoint, the mirrors,
    /// the mirrors receiving the token); empty when it changes none of them. Nothing is saved.
    pub fn trust_changes(&self, patch: &PreferencesPatch) -> Result<Vec<TrustChange>, EngineError> {
        let prefs = lock(&self.inner.preferences).clone();
        let next = self.patched(&prefs, patch)?;
        let before = self.app_settings_with(&prefs);
        let after = self.app_settings_with(&next);
        Ok(TrustChange::between(&before, &after))
    }

    /// `prefs` with `patch` applied.
    fn patched(
        &self,
        prefs: &Preferences,
        patch: &PreferencesPatch,
    ) -> Result<Preferences, EngineError> {
        let mut next = prefs.clone();
        patch.apply(
            &mut next,
            &self.inner.scheduler.policy(),
            &self.inner.scheduler.cache_policy(),
            &self.inner.settings.mirrors,
            self.inner.settings.bucket.as_ref(),
        )?;
        Ok(next)
    }

    /// Whether a Hub token is set (its value is never returned).
    pub fn has_token(&self) -> bool {
        self.inner.hub.has_token()
    }

    /// Logs in (`Some`) or out (`None`): the token is used at once by every request, and stored
    /// in `settings.token_file` (owner-only, written atomically) where `huggingface_hub` reads it.
    pub fn set_token(&self, token: Option<Token>) -> Result<(), EngineError> {
        if let Some(path) = &self.inner.settings.token_file {
            crate::secret::write_token_file(path, token.as_ref()).map_err(|source| {
                StoreError::Io {
                    action: "store the token in",
                    path: path.clone(),
                    source,
                }
            })?;
        }
        self.inner.hub.set_token(token);
        Ok(())
    }

    /// The header of a file of a repo (architecture, parameters, quantization, tensors): read
    /// from the cache when the file is there, else fetched alone with range requests, never
    /// the whole file.
    pub async fn inspect(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
        file: &str,
    ) -> Result<Inspection, EngineError> {
        let revision = revision.unwrap_or("main");
        if let Some(path) = self.inner.cache.repo(repo).resolve_cached(revision, file) {
            return Ok(formats::inspect_path(&path).await?);
        }
        let metadata = self.inner.hub.file_metadata(repo, revision, file).await?;
        let source = HubSource::new(
            self.inner.hub.clone(),
            metadata.download_url.clone(),
            metadata.size,
            format!("{repo}/{file}"),
            Some(metadata.etag.clone()),
        );
        Ok(formats::inspect_source(&source).await?)
    }

    /// Records a use of a model, and of the variants used, through one of our interfaces (for
    /// LRU eviction).
    pub(super) fn touch(&self, repo: &RepoId, used: Used<'_>) {
        let (index, root) = (&self.inner.index, self.inner.cache.root());
        if let Err(error) = usage::record(index, root, repo, used, crate::index::now_ms()) {
            tracing::warn!(%repo, %error, "could not record the use of a model");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn system_time_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod cache_folder_tests {
    use super::*;
    use crate::error::{ErrorKind, Hint};

    fn check(path: &std::path::Path, origin: CacheOrigin) -> Result<(), EngineError> {
        let mut settings = Settings::new(path.to_path_buf(), "/d".into());
        settings.hub_cache_origin = origin;
        check_cache_folder(&settings)
    }

    #[test]
    fn a_chosen_cache_folder_that_is_not_there_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("usb").join("hub");
        let in_existing = dir.path().join("hub");
        for origin in [
            CacheOrigin::Environment,
            CacheOrigin::Flag,
            CacheOrigin::Preference,
        ] {
            let error = check(&gone, origin).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::CacheUnavailable);
            assert_eq!(
                error.hints(),
                [Hint::ConnectCacheDrive { path: gone.clone() }]
            );
            assert!(
                error.to_string().contains("is its drive connected?"),
                "{error}"
            );
        }
        // A new folder in a folder that exists: created later, as huggingface_hub does, unless
        // the user chose it in the settings (it existed then).
        check(&in_existing, CacheOrigin::Environment).unwrap();
        check(&in_existing, CacheOrigin::Flag).unwrap();
        let error = check(&in_existing, CacheOrigin::Preference).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("The cache folder `{}` is not there", in_existing.display())
        );
        check(&gone, CacheOrigin::Default).unwrap();
        check(dir.path(), CacheOrigin::Preference).unwrap();
    }
}
