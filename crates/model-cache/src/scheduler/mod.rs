//! The scheduler: a persistent queue of download jobs that look after themselves.
//!
//! Jobs live in the index ([`crate::index::queue`]), so they survive restarts: at start, jobs a
//! dead process left `running` are queued again and resume by themselves (the downloader fetches
//! only chunks not recorded). One task owns every decision. It wakes on a command, on a change
//! signal ([`Changes`]: power plugged or unplugged, space freed), when a job ends, and on a slow
//! timer as a fallback, and then:
//!
//! 1. stops running jobs whose conditions no longer hold (the user paused everything, outside
//!    the allowed hours, on battery by policy, free space under the reserve): their download is
//!    paused, progress kept, and they become `deferred` with a [`DeferReason`];
//! 2. walks waiting jobs in queue order (priority, then position) while fewer than
//!    `max_running` run, asks [`decide`] about each, evicts least-recently-used unpinned models
//!    to make room when the policy allows it (and says which), and starts, resumes or defers it.
//!
//! A disk that fills during a download (`ENOSPC`, reported by the downloader) defers the job with
//! a `disk_full` reason instead of failing it; it is tried again when free space grows.
//!
//! The work itself is done by a [`JobRunner`]; [`DownloaderRunner`] is the real one.

mod progress;
pub mod runner;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::download::{DownloadEvent, JobControl};
use crate::error::{ErrorKind, Hint};
use crate::index::queue::{self, JobError, NewQueueJob, QueueJob, QueueState};
use crate::index::{Index, IndexError, metric};
use crate::policy::cleanup::{CleanupReport, Janitor, StorageReport};
use crate::policy::evict::{EvictionGoal, EvictionPlan};
use crate::policy::probe::ProbeWatcher;
use crate::policy::{
    CachePolicy, Changes, Clock, Conditions, Decision, DeferReason, DiskProbe, DiskSpace,
    FsDiskProbe, PolicyError, PowerProbe, PowerState, SchedulePolicy, SystemClock,
    SystemPowerProbe, WhenShort, decide,
};
use crate::repo::RepoId;
use progress::JobProgress;
pub use runner::{DownloaderRunner, JobRunner, RunFailure, RunSummary, StartedJob};

/// Key of the global pause in the scheduler's state table.
const PAUSED_KEY: &str = "paused";

/// What the scheduler reads the machine through.
#[derive(Clone)]
pub struct Probes {
    pub power: Arc<dyn PowerProbe>,
    pub disk: Arc<dyn DiskProbe>,
    pub clock: Arc<dyn Clock>,
    /// Signalled by the probes (or their watcher) and by anything that frees space.
    pub changes: Changes,
    /// Poll the probes this often and signal changes (for real probes, which do not signal by
    /// themselves); `None` for probes that signal (the fakes).
    pub watch_every: Option<Duration>,
}

impl Probes {
    /// A machine for tests: on mains power, a 1000 GiB volume with 900 GiB free, the real
    /// clock. Nothing polls; the fakes signal their own changes.
    pub fn fake() -> Self {
        const GIB: u64 = 1 << 30;
        let changes = Changes::default();
        Probes {
            power: Arc::new(crate::policy::FakePower::new(
                PowerState::NO_BATTERY,
                changes.clone(),
            )),
            disk: Arc::new(crate::policy::FakeDisk::new(
                DiskSpace {
                    total: 1000 * GIB,
                    available: 900 * GIB,
                },
                changes.clone(),
            )),
            clock: Arc::new(SystemClock),
            changes,
            watch_every: None,
        }
    }

    /// The real machine: `starship-battery`, `statvfs`, the local clock, polled every 5 s.
    pub fn system() -> Self {
        Probes {
            power: Arc::new(SystemPowerProbe),
            disk: Arc::new(FsDiskProbe),
            clock: Arc::new(SystemClock),
            changes: Changes::default(),
            watch_every: Some(Duration::from_secs(5)),
        }
    }
}

/// Configuration of a scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The hub cache the jobs download into (its volume is the one whose space is checked).
    pub hub_cache: PathBuf,
    pub policy: SchedulePolicy,
    pub cache_policy: CachePolicy,
    /// How often progress is written to the index and a speed sample taken.
    pub progress_every: Duration,
    /// Run the queue in this process. `false` opens the queue passively (a short-lived CLI
    /// command beside the app): jobs can be listed and changed, but none is started, resumed,
    /// requeued or cleaned up by this process.
    pub run: bool,
}

impl SchedulerConfig {
    pub fn new(hub_cache: impl Into<PathBuf>) -> Self {
        SchedulerConfig {
            hub_cache: hub_cache.into(),
            policy: SchedulePolicy::default(),
            cache_policy: CachePolicy::default(),
            progress_every: Duration::from_secs(1),
            run: true,
        }
    }
}

/// What the scheduler tells its listeners (the app, the local API's event stream, the CLI).
///
/// **API Boundary:** serialised tagged by `"type"` (a download event inside keeps its own
/// `"event"` tag); add variants and fields, never rename.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SchedulerEvent {
    /// A job changed state (queued, running, deferred with its reason, done, ...).
    JobChanged { job: Box<QueueJob> },
    /// Progress of a running job.
    Download { job_id: i64, event: DownloadEvent },
    /// Models were evicted, to make room for a job (`for_job`) or to meet the budget.
    Evicted {
        for_job: Option<i64>,
        plan: EvictionPlan,
    },
    /// A background cleanup ran.
    CleanedUp { report: Box<CleanupReport> },
    /// The cache crossed a storage alert threshold.
    StorageAlert { report: StorageReport },
    /// Update checks found cached models whose followed branch has a newer commit (each
    /// announced once).
    UpdatesFound {
        updates: Vec<crate::engine::UpdateView>,
    },
}

/// Errors of the scheduler's commands.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("No job with id {id} in the queue")]
    NoSuchJob { id: i64 },
    #[error("Job {id} is {state} and cannot change any more")]
    Finished { id: i64, state: &'static str },
    #[error("Invalid job: {reason}")]
    InvalidJob { reason: String },
    #[error("`{repo}` has a queued or running download")]
    InUse { repo: String },
    /// The cache changed since the user agreed to an eviction: making room now would remove
    /// models they were not shown.
    #[error(
        "The cache changed since the models to remove were listed: making room now would also remove {}; check again",
        others.join(", ")
    )]
    EvictionChanged { others: Vec<String> },
}

impl SchedulerError {
    /// The stable kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SchedulerError::Index(e) => e.kind(),
            SchedulerError::Policy(e) => e.kind(),
            SchedulerError::Metrics(crate::metrics::MetricsError::Index(e)) => e.kind(),
            SchedulerError::Metrics(crate::metrics::MetricsError::Policy(e)) => e.kind(),
            SchedulerError::NoSuchJob { .. } => ErrorKind::NoSuchJob,
            SchedulerError::Finished { .. } => ErrorKind::JobFinished,
            SchedulerError::InvalidJob { .. } => ErrorKind::InvalidJob,
            SchedulerError::InUse { .. } => ErrorKind::InUse,
            SchedulerError::EvictionChanged { .. } => ErrorKind::Policy,
        }
    }

    /// What the user can do about it.
    pub fn hints(&self) -> Vec<Hint> {
        match self {
            SchedulerError::Index(e) => e.hints(),
            SchedulerError::Policy(e) => e.hints(),
            SchedulerError::Metrics(crate::metrics::MetricsError::Index(e)) => e.hints(),
            SchedulerError::Metrics(crate::metrics::MetricsError::Policy(e)) => e.hints(),
            SchedulerError::NoSuchJob { .. } => vec![Hint::ListJobs],
            SchedulerError::InUse { repo } => vec![Hint::CancelDownload { repo: repo.clone() }],
            SchedulerError::Finished { .. }
            | SchedulerError::InvalidJob { .. }
            | SchedulerError::EvictionChanged { .. } => Vec::new(),
        }
    }
}

impl crate::error::Diagnostic for SchedulerError {
    fn kind(&self) -> crate::error::ErrorKind {
        SchedulerError::kind(self)
    }

    fn hints(&self) -> Vec<crate::error::Hint> {
        SchedulerError::hints(self)
    }
}

struct Live {
    control: JobControl,
    progress: Arc<JobProgress>,
    sample: (Instant, u64),
}

type Completion = (i64, Result<RunSummary, RunFailure>);

struct Inner {
    index: Index,
    runner: Arc<dyn JobRunner>,
    probes: Probes,
    hub_cache: PathBuf,
    policy: Mutex<SchedulePolicy>,
    cache_policy: Mutex<CachePolicy>,
    progress_every: Duration,
    live: Mutex<HashMap<i64, Live>>,
    /// Jobs whose size lookup failed or said nothing: not asked again in this process.
    unsized_jobs: Mutex<HashSet<i64>>,
    /// Network failures in a row per job (for the back-off of `NetworkUnavailable`).
    network_attempts: Mutex<HashMap<i64, u32>>,
    last_alert: Mutex<Option<u8>>,
    /// A cleanup check is due at the next wake (the cache policy changed).
    cleanup_due: std::sync::atomic::AtomicBool,
    /// The connection's metering as last read by [`Scheduler::watch_metering`]: 0 unknown,
    /// 1 metered, 2 not metered.
    metered: Arc<std::sync::atomic::AtomicU8>,
    events: broadcast::Sender<SchedulerEvent>,
    wake: Notify,
    done_tx: mpsc::UnboundedSender<Completion>,
    shutdown: CancellationToken,
}

/// The scheduler. Cheap to clone; clones steer the same queue. The background task stops on
/// [`Scheduler::shutdown`].
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Scheduler {
    /// Opens the queue, requeues jobs a dead process left running, and starts the background
    /// task (on the current Tokio runtime).
    pub fn start(
        config: SchedulerConfig,
        index: Index,
        runner: Arc<dyn JobRunner>,
        probes: Probes,
    ) -> Result<Scheduler, SchedulerError> {
        let now = probes.clock.now_ms();
        if config.run {
            let requeued = index.with_conn("requeue interrupted jobs", |c| {
                queue::requeue_interrupted(c, now)
            })?;
            if requeued > 0 {
                tracing::info!(requeued, "resuming jobs interrupted by a restart");
            }
        }
        let run = config.run;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            index,
            runner,
            hub_cache: config.hub_cache,
            policy: Mutex::new(config.policy),
            cache_policy: Mutex::new(config.cache_policy),
            progress_every: config.progress_every.max(Duration::from_millis(50)),
            live: Mutex::new(HashMap::new()),
            unsized_jobs: Mutex::new(HashSet::new()),
            network_attempts: Mutex::new(HashMap::new()),
            last_alert: Mutex::new(None),
            cleanup_due: std::sync::atomic::AtomicBool::new(true),
            metered: Arc::new(std::sync::atomic::AtomicU8::new(0)),
            events: broadcast::channel(1024).0,
            wake: Notify::new(),
            done_tx,
            shutdown: CancellationToken::new(),
            probes,
        });
        if !run {
            return Ok(Scheduler { inner });
        }
        if let Some(every) = inner.probes.watch_every {
            let watcher = ProbeWatcher {
                power: inner.probes.power.clone(),
                disk: inner.probes.disk.clone(),
                path: inner.hub_cache.clone(),
                every,
                changes: inner.probes.changes.clone(),
            };
            tokio::spawn(watcher.run(inner.shutdown.clone()));
        }
        tokio::spawn(run_loop(Arc::clone(&inner), done_rx));
        Ok(Scheduler { inner })
    }

    /// Stops the background task. Running downloads are paused in place; their jobs stay
    /// `running` in the index and are requeued by the next start.
    pub fn shutdown(&self) {
        for live in lock(&self.inner.live).values() {
            live.control.pause();
        }
        self.inner.shutdown.cancel();
    }

    /// Tells the listeners something that happened outside the queue (update checks).
    pub fn publish(&self, event: SchedulerEvent) {
        let _ = self.inner.events.send(event);
    }

    /// Whether [`Scheduler::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Listens to job changes, progress, evictions and alerts.
    pub fn subscribe(&self) -> broadcast::Receiver<SchedulerEvent> {
        self.inner.events.subscribe()
    }

    /// The change signal: notify it after freeing space outside the scheduler.
    pub fn changes(&self) -> &Changes {
        &self.inner.probes.changes
    }

    /// Adds a job at the end of its priority class.
    pub fn enqueue(&self, job: NewQueueJob) -> Result<QueueJob, SchedulerError> {
        if job.revision.trim().is_empty() {
            return Err(SchedulerError::InvalidJob {
                reason: "the revision is empty".into(),
            });
        }
        // Patterns are checked now so a typo is reported at once, not when the job starts.
        job.selection
            .pick(&[])
            .map_err(|e| SchedulerError::InvalidJob {
                reason: e.to_string(),
            })?;
        let now = self.inner.probes.clock.now_ms();
        let id = self
            .inner
            .index
            .with_conn("enqueue a job", |c| queue::enqueue(c, &job, now))?;
        let job = self.job(id)?;
        self.inner.emit_job(&job);
        self.inner.wake.notify_one();
        Ok(job)
    }

    /// One job.
    pub fn job(&self, id: i64) -> Result<QueueJob, SchedulerError> {
        self.inner.get(id)?.ok_or(SchedulerError::NoSuchJob { id })
    }

    /// Every job, live ones first in queue order, with live progress.
    pub fn jobs(&self) -> Result<Vec<QueueJob>, SchedulerError> {
        let mut jobs = self.inner.index.with_conn("list jobs", queue::list)?;
        let live = lock(&self.inner.live);
        for job in &mut jobs {
            if let Some(l) = live.get(&job.id) {
                let counts = l.progress.counts();
                job.bytes_done = counts.done;
                job.bytes_saved = counts.saved;
            }
        }
        Ok(jobs)
    }

    fn live_job(&self, id: i64) -> Result<QueueJob, SchedulerError> {
        let job = self.job(id)?;
        if job.state.is_terminal() {
            return Err(SchedulerError::Finished {
                id,
                state: job.state.as_str(),
            });
        }
        Ok(job)
    }

    /// Pauses one job; it stays paused until [`Scheduler::resume`].
    pub fn pause(&self, id: i64) -> Result<QueueJob, SchedulerError> {
        self.live_job(id)?;
        if let Some(live) = lock(&self.inner.live).get(&id) {
            live.control.pause();
        }
        self.inner.set_state(
            id,
            QueueState::Paused,
            Some(&DeferReason::PausedByUser),
            None,
        )?;
        self.inner.wake.notify_one();
        self.job(id)
    }

    /// Resumes a paused job (it runs when its conditions allow).
    pub fn resume(&self, id: i64) -> Result<QueueJob, SchedulerError> {
        let job = self.live_job(id)?;
        if job.state == QueueState::Paused {
            self.inner.set_state(id, QueueState::Queued, None, None)?;
        }
        self.inner.wake.notify_one();
        self.job(id)
    }

    /// Cancels a job; the downloader removes what it created for it.
    pub fn cancel(&self, id: i64) -> Result<QueueJob, SchedulerError> {
        self.live_job(id)?;
        self.inner
            .set_state(id, QueueState::Cancelled, None, None)?;
        if let Some(live) = lock(&self.inner.live).get(&id) {
            live.control.cancel();
        }
        self.inner.wake.notify_one();
        self.job(id)
    }

    /// Moves a job to `position` (0 = first) among the jobs that may still run.
    pub fn move_to(&self, id: i64, position: usize) -> Result<(), SchedulerError> {
        self.live_job(id)?;
        let now = self.inner.probes.clock.now_ms();
        self.inner.index.with_conn("reorder the queue", |c| {
            queue::move_to(c, id, position, now)
        })?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Sets a job's priority (higher runs first).
    pub fn set_priority(&self, id: i64, priority: i64) -> Result<(), SchedulerError> {
        self.live_job(id)?;
        let now = self.inner.probes.clock.now_ms();
        self.inner.index.with_conn("set a priority", |c| {
            queue::set_priority(c, id, priority, now)
        })?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Pauses every download ("Paused by you") until [`Scheduler::resume_all`]; survives restarts.
    pub fn pause_all(&self) -> Result<(), SchedulerError> {
        self.set_paused(true)
    }

    /// Lifts [`Scheduler::pause_all`].
    pub fn resume_all(&self) -> Result<(), SchedulerError> {
        self.set_paused(false)
    }

    fn set_paused(&self, paused: bool) -> Result<(), SchedulerError> {
        self.inner.index.with_conn("set the global pause", |c| {
            queue::set_state_value(c, PAUSED_KEY, if paused { "1" } else { "0" })
        })?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Whether everything is paused by the user.
    pub fn is_paused(&self) -> Result<bool, SchedulerError> {
        Ok(self.inner.user_paused()?)
    }

    /// The scheduling policy in force.
    pub fn policy(&self) -> SchedulePolicy {
        lock(&self.inner.policy).clone()
    }

    /// Reads whether the connection is metered from `probe` now and every `every` (off the
    /// async threads: the system's answer may take a moment), re-evaluating the jobs when it
    /// changes. Until then, and when the probe cannot tell, the connection counts as not
    /// metered. Ends when the scheduler shuts down.
    pub fn watch_metering(
        &self,
        probe: Arc<dyn crate::policy::MeteredProbe>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        use std::sync::atomic::Ordering;
        let state = Arc::clone(&self.inner.metered);
        let changes = self.inner.probes.changes.clone();
        let wake = Arc::clone(&self.inner);
        let shutdown = self.inner.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let asked = Arc::clone(&probe);
                let now = match tokio::task::spawn_blocking(move || asked.metered()).await {
                    Ok(Some(true)) => 1,
                    Ok(Some(false)) => 2,
                    _ => 0,
                };
                if state.swap(now, Ordering::SeqCst) != now {
                    tracing::info!(metered = now == 1, "The connection's metering changed");
                    changes.notify();
                    wake.wake.notify_one();
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    }

    /// Changes the scheduling policy; jobs are re-evaluated at once.
    pub fn set_policy(&self, policy: SchedulePolicy) {
        *lock(&self.inner.policy) = policy;
        self.inner.wake.notify_one();
    }

    /// The cache policy in force.
    pub fn cache_policy(&self) -> CachePolicy {
        lock(&self.inner.cache_policy).clone()
    }

    /// Changes the cache policy (budget, cleanup); a cleanup check runs at once.
    pub fn set_cache_policy(&self, policy: CachePolicy) {
        *lock(&self.inner.cache_policy) = policy;
        self.inner
            .cleanup_due
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    /// A janitor over this scheduler's cache and index, with the cache policy in force.
    pub fn janitor(&self) -> Janitor {
        self.inner.janitor()
    }

    /// Repos of jobs that may still run: never evicted or pruned meanwhile.
    pub fn protected_repos(&self) -> Result<HashSet<RepoId>, SchedulerError> {
        self.inner.protected()
    }

    /// Runs a cleanup pass now (stale partial files, unreferenced blobs, old revisions when
    /// opted in, eviction down to the budget). With `dry_run`, reports what would go.
    pub fn cleanup(&self, dry_run: bool) -> Result<CleanupReport, SchedulerError> {
        self.inner.cleanup(None, dry_run)
    }

    /// A cleanup pass with a one-off size budget (`mcache gc --max-size`); the policy in force
    /// is left as it is, so the background cleanup never acts on the one-off budget.
    pub fn cleanup_to(&self, budget: u64, dry_run: bool) -> Result<CleanupReport, SchedulerError> {
        self.inner.cleanup(Some(budget), dry_run)
    }

    /// Removes a repo, or one revision (a commit or a ref name), from the cache and the index;
    /// pinned ones only with `force`; repos with a queued or running job never. Deferred jobs
    /// are re-evaluated at once, since space was freed.
    pub fn remove(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
        force: bool,
        dry_run: bool,
    ) -> Result<crate::store::removal::Removal, SchedulerError> {
        self.removing(repo, dry_run, |janitor| {
            janitor.remove(repo, revision, force, dry_run)
        })
    }

    /// Removes some files of one cached revision (a variant), with the same rules as
    /// [`Scheduler::remove`].
    pub fn remove_files(
        &self,
        repo: &RepoId,
        commit: &str,
        files: &[String],
        force: bool,
        dry_run: bool,
    ) -> Result<crate::store::removal::Removal, SchedulerError> {
        self.removing(repo, dry_run, |janitor| {
            janitor.remove_files(repo, commit, files, force, dry_run)
        })
    }

    /// Runs a removal unless a job may still download into `repo`, then lets deferred jobs see
    /// the space it freed.
    fn removing(
        &self,
        repo: &RepoId,
        dry_run: bool,
        remove: impl FnOnce(&Janitor) -> Result<crate::store::removal::Removal, PolicyError>,
    ) -> Result<crate::store::removal::Removal, SchedulerError> {
        if self.inner.protected()?.contains(repo) {
            return Err(SchedulerError::InUse {
                repo: repo.to_string(),
            });
        }
        let removal = remove(&self.janitor())?;
        if !dry_run {
            self.inner.probes.changes.notify();
        }
        Ok(removal)
    }

    /// A job's speed history, oldest sample first.
    pub fn speed_history(&self, id: i64) -> Result<Vec<queue::SpeedSample>, SchedulerError> {
        Ok(self
            .inner
            .index
            .with_conn("read the speed history", |c| queue::speed_history(c, id))?)
    }

    /// Plans an eviction that frees `bytes` (a dry run: nothing is removed).
    pub fn plan_eviction(&self, bytes: u64) -> Result<EvictionPlan, SchedulerError> {
        let protected = self.inner.protected()?;
        Ok(self
            .janitor()
            .plan(EvictionGoal::Free { bytes }, &protected)?)
    }

    /// Free space of the cache's volume, as the scheduler sees it.
    pub fn disk_space(&self) -> DiskSpace {
        self.inner.disk()
    }

    /// Frees `bytes` by the least-recently-used plan, which must remove only what the user
    /// agreed to (`consented`, each `repo@commit` or `repo@commit#variant` as
    /// [`eviction_key`] names it): if the cache changed and the plan now takes something else,
    /// nothing is removed. The eviction is announced like any other.
    pub fn evict_with_consent(
        &self,
        bytes: u64,
        consented: &[String],
    ) -> Result<EvictionPlan, SchedulerError> {
        let plan = self.plan_eviction(bytes)?;
        let others: Vec<String> = plan
            .evictions
            .iter()
            .filter(|e| !consented.contains(&eviction_key(e)))
            .map(ToString::to_string)
            .collect();
        if !others.is_empty() {
            return Err(SchedulerError::EvictionChanged { others });
        }
        if plan.evictions.is_empty() {
            return Ok(plan);
        }
        let janitor = self.janitor();
        janitor.evict(&plan)?;
        let names: Vec<String> = plan.evictions.iter().map(ToString::to_string).collect();
        tracing::info!(evicted = ?names, "evicted with the user's consent");
        let _ = self.inner.index.record_event(
            "evicted",
            None,
            &format!("with consent, to make room: {}", names.join(", ")),
        );
        let _ = self.inner.events.send(SchedulerEvent::Evicted {
            for_job: None,
            plan: plan.clone(),
        });
        self.inner.probes.changes.notify();
        Ok(plan)
    }

    /// Health figures for `mcache doctor`/`stats` and the local API.
    pub fn health(&self) -> Result<crate::metrics::HealthReport, SchedulerError> {
        let policy = self.policy();
        Ok(crate::metrics::HealthReport::collect(
            &self.inner.index,
            &self.janitor(),
            &policy,
            &*self.inner.probes.power,
            &*self.inner.probes.disk,
            self.inner.probes.clock.now_ms(),
        )?)
    }
}

impl Inner {
    fn janitor(&self) -> Janitor {
        Janitor::new(
            self.hub_cache.clone(),
            self.index.clone(),
            lock(&self.cache_policy).clone(),
        )
    }

    fn get(&self, id: i64) -> Result<Option<QueueJob>, IndexError> {
        self.index.with_conn("read a job", |c| queue::get(c, id))
    }

    fn emit_job(&self, job: &QueueJob) {
        let _ = self.events.send(SchedulerEvent::JobChanged {
            job: Box::new(job.clone()),
        });
    }

    fn set_state(
        &self,
        id: i64,
        state: QueueState,
        reason: Option<&DeferReason>,
        error: Option<&JobError>,
    ) -> Result<(), IndexError> {
        let now = self.probes.clock.now_ms();
        self.index.with_conn("change a job's state", |c| {
            queue::set_state(c, id, state, reason, error, now)
        })?;
        if let Some(job) = self.get(id)? {
            match (&job.state, &job.defer_reason) {
                (QueueState::Deferred, Some(reason)) => {
                    tracing::info!(job = id, repo = %job.repo, %reason, "job deferred");
                }
                (state, _) => tracing::debug!(job = id, repo = %job.repo, ?state, "job state"),
            }
            self.emit_job(&job);
        }
        Ok(())
    }

    fn user_paused(&self) -> Result<bool, IndexError> {
        Ok(self
            .index
            .with_conn("read the global pause", |c| {
                queue::state_value(c, PAUSED_KEY)
            })?
            .as_deref()
            == Some("1"))
    }

    /// Free space of the cache's volume; unknown counts as unlimited (not checked).
    fn disk(&self) -> DiskSpace {
        self.probes
            .disk
            .space(&self.hub_cache)
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "free space unknown; not checking it");
                DiskSpace {
                    total: u64::MAX,
                    available: u64::MAX,
                }
            })
    }

    fn conditions(&self, user_paused: bool) -> Conditions {
        let power = self.probes.power.power().unwrap_or_else(|error| {
            tracing::warn!(%error, "power state unknown; assuming mains power");
            PowerState::NO_BATTERY
        });
        Conditions {
            power,
            disk: self.disk(),
            minute_of_day: self.probes.clock.minute_of_day(),
            user_paused,
            metered: match self.metered.load(std::sync::atomic::Ordering::SeqCst) {
                1 => Some(true),
                2 => Some(false),
                _ => None,
            },
        }
    }

    fn protected(&self) -> Result<HashSet<RepoId>, SchedulerError> {
        let pending = self.index.with_conn("list pending jobs", queue::pending)?;
        Ok(pending.into_iter().map(|j| j.repo).collect())
    }

    fn cleanup(&self, budget: Option<u64>, dry_run: bool) -> Result<CleanupReport, SchedulerError> {
        let protected = self.protected()?;
        let now = self.probes.clock.now();
        let mut policy = lock(&self.cache_policy).clone();
        if budget.is_some() {
            policy.budget = budget;
        }
        let janitor = Janitor::new(self.hub_cache.clone(), self.index.clone(), policy);
        let report = janitor.cleanup(now, &protected, dry_run)?;
        if !dry_run && report.bytes_freed > 0 {
            if let Some(plan) = &report.eviction {
                let _ = self.events.send(SchedulerEvent::Evicted {
                    for_job: None,
                    plan: plan.clone(),
                });
                let names: Vec<String> = plan.evictions.iter().map(ToString::to_string).collect();
                let _ = self.index.record_event(
                    "evicted",
                    None,
                    &format!("budget: {}", names.join(", ")),
                );
            }
            let _ = self.events.send(SchedulerEvent::CleanedUp {
                report: Box::new(report.clone()),
            });
            self.probes.changes.notify();
        }
        Ok(report)
    }

    /// Runs the background cleanup when the policy asks for it and the budget is exceeded, and
    /// raises a storage alert when a threshold is newly crossed.
    fn maybe_cleanup(&self) {
        let policy = lock(&self.cache_policy).clone();
        let Some(budget) = policy.budget else {
            return;
        };
        let storage = match self.janitor().storage() {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(%error, "could not measure the cache");
                return;
            }
        };
        {
            let mut last = lock(&self.last_alert);
            if storage.alert != *last {
                if storage.alert.is_some_and(|a| Some(a) > *last) {
                    let _ = self.events.send(SchedulerEvent::StorageAlert {
                        report: storage.clone(),
                    });
                }
                *last = storage.alert;
            }
        }
        if policy.auto_cleanup
            && storage.used > budget
            && let Err(error) = self.cleanup(None, false)
        {
            tracing::warn!(%error, "background cleanup failed");
        }
    }

    fn flush_progress(&self) {
        let now = self.probes.clock.now_ms();
        let mut live = lock(&self.live);
        for (id, l) in live.iter_mut() {
            let counts = l.progress.counts();
            let elapsed = l.sample.0.elapsed();
            let speed = if elapsed.as_millis() > 0 {
                (counts.done.saturating_sub(l.sample.1) as u128 * 1000 / elapsed.as_millis()) as u64
            } else {
                0
            };
            let changed = counts.done != l.sample.1;
            l.sample = (Instant::now(), counts.done);
            let result = self.index.with_conn("record progress", |c| {
                queue::set_progress(c, *id, None, counts.done, counts.saved, now)?;
                if changed {
                    queue::record_speed(c, *id, now, counts.done, speed)?;
                }
                Ok(())
            });
            if let Err(error) = result {
                tracing::warn!(%error, job = id, "could not record progress");
            }
        }
    }

    /// Starts a job, or resumes its paused download.
    fn launch(self: &Arc<Self>, job: &QueueJob) -> Result<(), IndexError> {
        let resumed = {
            let live = lock(&self.live);
            match live.get(&job.id) {
                Some(l) => {
                    l.control.resume();
                    true
                }
                None => false,
            }
        };
        if !resumed {
            let progress = Arc::new(JobProgress::new(job.id, self.events.clone()));
            let started = self.runner.start(job, progress.clone());
            lock(&self.live).insert(
                job.id,
                Live {
                    control: started.control,
                    progress,
                    sample: (Instant::now(), 0),
                },
            );
            let done = self.done_tx.clone();
            let id = job.id;
            let outcome = started.outcome;
            tokio::spawn(async move {
                let result = outcome.await;
                let _ = done.send((id, result));
            });
        }
        self.set_state(job.id, QueueState::Running, None, None)
    }

    fn finish(&self, id: i64, result: Result<RunSummary, RunFailure>) -> Result<(), IndexError> {
        self.flush_progress();
        let live = lock(&self.live).remove(&id);
        let Some(job) = self.get(id)? else {
            return Ok(());
        };
        let counts = live.map(|l| l.progress.counts()).unwrap_or_default();
        if counts.hits + counts.misses > 0 {
            let _ = self.index.add_metric(metric::HITS, counts.hits as i64);
            let _ = self.index.add_metric(metric::MISSES, counts.misses as i64);
        }
        if job.state == QueueState::Cancelled {
            return Ok(());
        }
        match result {
            Ok(summary) => {
                let now = self.probes.clock.now_ms();
                let total = job.bytes_total.unwrap_or(counts.done + counts.saved);
                self.index.with_conn("record the end of a job", |c| {
                    queue::set_progress(
                        c,
                        id,
                        Some(total),
                        total.saturating_sub(counts.saved),
                        counts.saved.max(summary.bytes_saved),
                        now,
                    )
                })?;
                // A model just downloaded is in use: LRU must not pick it, or the variants it
                // fetched, first.
                let used = crate::policy::usage::Used::Job(&job);
                if let Err(error) =
                    crate::policy::usage::record(&self.index, &self.hub_cache, &job.repo, used, now)
                {
                    tracing::warn!(job = id, %error, "could not record the variants a job fetched");
                    self.index.touch_at(&job.repo, now)?;
                }
                lock(&self.network_attempts).remove(&id);
                self.set_state(id, QueueState::Done, None, None)?;
                if job.convert.is_none() && lock(&self.cache_policy).prune_old_revisions {
                    self.prune_old(&job.repo);
                }
            }
            Err(RunFailure::Cancelled) => {
                self.set_state(id, QueueState::Cancelled, None, None)?;
            }
            Err(RunFailure::DiskFull { needed, available }) => {
                // The job is tried again once the probe sees more free space than now. The
                // probe's reading is the baseline (not only the downloader's figure) so a
                // reading that lags behind the file system cannot restart it in a loop.
                let probed = self
                    .probes
                    .disk
                    .space(&self.hub_cache)
                    .map(|s| s.available)
                    .unwrap_or(0);
                let reason = DeferReason::DiskFull {
                    needed,
                    available: available.max(probed),
                };
                self.set_state(id, QueueState::Deferred, Some(&reason), None)?;
            }
            Err(RunFailure::Failed {
                kind,
                message,
                hints,
                transient,
            }) => {
                let error = JobError {
                    kind,
                    message,
                    hints,
                };
                self.fail_or_wait_for_network(id, &error, transient)?;
            }
        }
        Ok(())
    }

    /// A job that failed on the network waits and tries again later (with a growing delay);
    /// any other failure, or too many network failures in a row, fails it.
    fn fail_or_wait_for_network(
        &self,
        id: i64,
        error: &JobError,
        transient: bool,
    ) -> Result<(), IndexError> {
        if transient {
            let attempt = {
                let mut attempts = lock(&self.network_attempts);
                let n = attempts.entry(id).or_insert(0);
                *n += 1;
                *n
            };
            let now = self.probes.clock.now_ms();
            if let Some(reason) = crate::policy::defer::network_retry(&error.message, attempt, now)
            {
                return self.set_state(id, QueueState::Deferred, Some(&reason), None);
            }
        }
        tracing::warn!(job = id, kind = %error.kind, message = %error.message, "job failed");
        lock(&self.network_attempts).remove(&id);
        self.set_state(id, QueueState::Failed, None, Some(error))
    }

    fn prune_old(&self, repo: &RepoId) {
        let janitor = self.janitor();
        let result = (|| -> Result<(), PolicyError> {
            let inventory = janitor.scan()?;
            let candidates = janitor.candidates(&inventory)?;
            let pinned = |r: &RepoId, c: &str| {
                candidates
                    .iter()
                    .any(|x| &x.repo == r && x.commit == c && x.pinned)
            };
            for commit in crate::policy::gc::old_revisions(&inventory, repo, &pinned) {
                match janitor.remove_revision(repo, &commit, false) {
                    Ok(_) => tracing::info!(%repo, commit, "removed an old revision"),
                    // Another process is downloading into it (a tag, a PR, a commit): it stays.
                    Err(PolicyError::InUse { .. }) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        })();
        if let Err(error) = result {
            tracing::warn!(%error, %repo, "could not prune old revisions");
        }
        self.probes.changes.notify();
    }

    /// One pass of decisions (see the module docs).
    async fn evaluate(self: &Arc<Self>) -> Result<(), SchedulerError> {
        let policy = lock(&self.policy).clone();
        let conditions = self.conditions(self.user_paused()?);
        let reserve = policy.reserve.reserve_bytes(conditions.disk.total);

        // 1. Running jobs whose conditions no longer hold.
        let mut running = 0;
        // The fewest bytes any running job still needs: what "small" is measured against.
        let mut least_remaining = u64::MAX;
        // The running job nearest to its end: the one the small lane keeps.
        let mut nearest_end = None;
        for job in self.index.with_conn("list pending jobs", queue::pending)? {
            if job.state != QueueState::Running {
                continue;
            }
            let live = lock(&self.live)
                .get(&job.id)
                .map(|l| (l.control.clone(), l.progress.counts()));
            let Some((control, counts)) = live else {
                // Running in the index but not here: left by a scheduler that stopped.
                self.set_state(job.id, QueueState::Queued, None, None)?;
                continue;
            };
            let mut reason = match decide(&policy, &conditions, 0) {
                Decision::Defer { reason } => Some(reason),
                Decision::Run => None,
            };
            if reason.is_none() && conditions.disk.available < reserve {
                let done = counts.done + counts.saved;
                reason = Some(DeferReason::DiskReserve {
                    needed: job.bytes_total.map(|t| t.saturating_sub(done)).unwrap_or(0),
                    free_above_reserve: 0,
                    reserve,
                });
            }
            match reason {
                Some(reason) => {
                    control.pause();
                    self.set_state(job.id, QueueState::Deferred, Some(&reason), None)?;
                }
                None => {
                    running += 1;
                    let done = counts.done + counts.saved;
                    let remaining = job.bytes_total.map_or(u64::MAX, |t| t.saturating_sub(done));
                    if remaining < least_remaining {
                        least_remaining = remaining;
                        nearest_end = Some(job.id);
                    }
                }
            }
        }

        // 1b. Queue order decides who runs: a job moved above a running one takes its slot,
        //     and the running one goes back to the queue, paused with its bytes kept (it
        //     resumes where it stopped). A small job in the extra lane keeps it.
        let slots = policy.max_running.max(1);
        if running >= slots {
            let lane = (running > slots && least_remaining <= SMALL_LANE_MAX)
                .then_some(nearest_end)
                .flatten();
            let mut ahead = 0;
            for job in self.index.with_conn("list pending jobs", queue::pending)? {
                match job.state {
                    QueueState::Queued => ahead += 1,
                    QueueState::Running if ahead < slots => ahead += 1,
                    QueueState::Running => {
                        if lane == Some(job.id) {
                            continue;
                        }
                        if let Some(live) = lock(&self.live).get(&job.id) {
                            live.control.pause();
                        }
                        tracing::info!(job = job.id, "a job moved ahead takes this one's slot");
                        self.set_state(job.id, QueueState::Queued, None, None)?;
                        running -= 1;
                    }
                    _ => {}
                }
            }
        }

        // 2. Waiting jobs, in queue order.
        let mut available = conditions.disk.available;
        for mut job in self.index.with_conn("list pending jobs", queue::pending)? {
            if !matches!(job.state, QueueState::Queued | QueueState::Deferred) {
                continue;
            }
            // All slots taken: only the small lane is left, for a job that needs at most
            // SMALL_LANE_MAX and an eighth of what every running job still needs, so a small
            // download is not starved behind big ones.
            if running > slots {
                break;
            }
            let lane_only = running == slots;
            if lane_only
                && job
                    .bytes_remaining()
                    .is_some_and(|r| !is_small(r, least_remaining))
            {
                continue;
            }
            if let Some(DeferReason::NetworkUnavailable { retry_at, .. }) = job.defer_reason
                && self.probes.clock.now_ms() < retry_at
            {
                // The Hub was unreachable: wait for the retry time.
                continue;
            }
            if let Some(DeferReason::DiskFull {
                available: at_failure,
                ..
            }) = job.defer_reason
                && available <= at_failure
            {
                // The disk was full when it failed; wait until something frees space.
                continue;
            }
            if job.bytes_total.is_none() && !lock(&self.unsized_jobs).contains(&job.id) {
                match self.runner.size(&job).await {
                    Ok(Some(total)) => {
                        let now = self.probes.clock.now_ms();
                        self.index.with_conn("record a job's size", |c| {
                            queue::set_progress(
                                c,
                                job.id,
                                Some(total),
                                job.bytes_done,
                                job.bytes_saved,
                                now,
                            )
                        })?;
                        job.bytes_total = Some(total);
                    }
                    Ok(None) => {
                        lock(&self.unsized_jobs).insert(job.id);
                    }
                    Err(RunFailure::Failed {
                        kind,
                        message,
                        hints,
                        transient,
                    }) => {
                        // The listing failed: the repo is gone or the token is bad (the job
                        // fails), or the Hub is unreachable (the job waits and tries again).
                        tracing::warn!(job = job.id, %kind, %message, "could not size a job");
                        let error = JobError {
                            kind,
                            message,
                            hints,
                        };
                        self.fail_or_wait_for_network(job.id, &error, transient)?;
                        continue;
                    }
                    Err(_) => {
                        lock(&self.unsized_jobs).insert(job.id);
                    }
                }
            }
            // Sizing waited on the network: the person may have paused or cancelled the job
            // meanwhile, and their choice wins over this (older) look at the queue.
            let current = self
                .index
                .with_conn("read a job", |c| queue::get(c, job.id))?;
            if !current
                .is_some_and(|j| matches!(j.state, QueueState::Queued | QueueState::Deferred))
            {
                continue;
            }
            if lane_only
                && !job
                    .bytes_remaining()
                    .is_some_and(|r| is_small(r, least_remaining))
            {
                // Sized just now, and not small.
                continue;
            }
            let live_counts = lock(&self.live).get(&job.id).map(|l| l.progress.counts());
            let needed = match (job.bytes_total, live_counts) {
                (Some(total), Some(c)) => total.saturating_sub(c.done + c.saved),
                (Some(_), None) => job.bytes_remaining().unwrap_or(0),
                (None, _) => 0,
            };
            let mut here = conditions;
            here.disk.available = available;
            let mut decision = decide(&policy, &here, needed);
            if let Decision::Defer {
                reason:
                    DeferReason::DiskReserve {
                        free_above_reserve, ..
                    },
            } = &decision
                && policy.evict_to_make_room
                && let Some(freed) = self.evict_for(&job, needed - free_above_reserve)?
            {
                tracing::info!(job = job.id, freed, "evicted models to make room");
                here.disk = self.conditions(here.user_paused).disk;
                available = here.disk.available;
                decision = decide(&policy, &here, needed);
            }
            match decision {
                Decision::Run => {
                    self.launch(&job)?;
                    running += 1;
                    if job.bytes_total.is_some() {
                        least_remaining = least_remaining.min(needed);
                    }
                    available = available.saturating_sub(needed);
                }
                Decision::Defer { reason }
                    if matches!(reason, DeferReason::DiskReserve { .. })
                        && policy.when_short == WhenShort::Fail =>
                {
                    if let Some(live) = lock(&self.live).get(&job.id) {
                        live.control.cancel();
                    }
                    let needed = job.bytes_remaining().unwrap_or(0);
                    let error = JobError {
                        kind: ErrorKind::DiskFull,
                        message: reason.to_string(),
                        hints: vec![Hint::FreeSpace {
                            bytes: needed.saturating_sub(available),
                        }],
                    };
                    self.set_state(job.id, QueueState::Failed, None, Some(&error))?;
                }
                Decision::Defer { reason } => {
                    if job.state != QueueState::Deferred
                        || job.defer_reason.as_ref() != Some(&reason)
                    {
                        if let Some(live) = lock(&self.live).get(&job.id) {
                            live.control.pause();
                        }
                        self.set_state(job.id, QueueState::Deferred, Some(&reason), None)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Evicts least-recently-used unpinned models to free `bytes` for `job`; `Some(freed)` when
    /// the plan met the goal and ran, `None` when not enough can be evicted (nothing is removed
    /// then: evicting without making room would lose models for nothing).
    fn evict_for(&self, job: &QueueJob, bytes: u64) -> Result<Option<u64>, SchedulerError> {
        let protected = self.protected()?;
        let janitor = self.janitor();
        let plan = janitor.plan(EvictionGoal::Free { bytes }, &protected)?;
        if !plan.satisfied {
            return Ok(None);
        }
        let removal = janitor.evict(&plan)?;
        let names: Vec<String> = plan.evictions.iter().map(ToString::to_string).collect();
        tracing::info!(job = job.id, evicted = ?names, "evicted to make room");
        let _ = self.index.record_event(
            "evicted",
            Some(&job.repo),
            &format!("to make room for job {}: {}", job.id, names.join(", ")),
        );
        let _ = self.events.send(SchedulerEvent::Evicted {
            for_job: Some(job.id),
            plan,
        });
        Ok(Some(removal.bytes_freed))
    }
}

/// Largest job the small lane takes (one job beyond `max_running`).
const SMALL_LANE_MAX: u64 = 512 * 1024 * 1024;

/// A job needing `remaining` bytes is small next to running jobs of which the one nearest to
/// its end still needs `least_running`.
fn is_small(remaining: u64, least_running: u64) -> bool {
    remaining <= SMALL_LANE_MAX && remaining.saturating_mul(8) <= least_running
}

/// How a planned eviction is named when the user agrees to it: `repo@commit`, or
/// `repo@commit#variant` for one variant.
pub fn eviction_key(eviction: &crate::policy::evict::PlannedEviction) -> String {
    match &eviction.variant {
        Some(variant) => format!("{}@{}#{variant}", eviction.repo, eviction.commit),
        None => format!("{}@{}", eviction.repo, eviction.commit),
    }
}

async fn run_loop(inner: Arc<Inner>, mut done_rx: mpsc::UnboundedReceiver<Completion>) {
    let mut changes = inner.probes.changes.subscribe();
    let re_evaluate = lock(&inner.policy)
        .re_evaluate_every
        .max(Duration::from_millis(100));
    let mut slow = tokio::time::interval(re_evaluate);
    slow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut progress = tokio::time::interval(inner.progress_every);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_cleanup_check = SystemTime::UNIX_EPOCH;
    loop {
        if inner
            .cleanup_due
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            inner.maybe_cleanup();
        }
        if let Err(error) = inner.evaluate().await {
            tracing::warn!(%error, "scheduling pass failed");
        }
        tokio::select! {
            _ = inner.shutdown.cancelled() => break,
            _ = inner.wake.notified() => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    // Every sender is gone; keep working on the timer.
                    changes = Changes::default().subscribe();
                }
            }
            Some((id, result)) = done_rx.recv() => {
                if let Err(error) = inner.finish(id, result) {
                    tracing::warn!(%error, job = id, "could not record the end of a job");
                }
                inner.maybe_cleanup();
            }
            _ = slow.tick() => {
                let now = SystemTime::now();
                if now.duration_since(last_cleanup_check).unwrap_or(Duration::MAX) >= re_evaluate {
                    last_cleanup_check = now;
                    inner.maybe_cleanup();
                }
            }
            _ = progress.tick() => inner.flush_progress(),
        }
    }
    inner.flush_progress();
}
