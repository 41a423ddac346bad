//! The v1 JSON shapes of `docs/local-api.md`, as serde types, and the translation from the
//! engine's types into them.
//!
//! The engine's own types carry more (and differently named) detail; the contract is what the
//! UI and other programs rely on, so the mapping lives in one place and `tests/contract_docs.rs`
//! checks every type's fields against the document. [`Tracker`] keeps what the contract's `Job`
//! has but the queue does not: per-file progress and speed, fed from the engine's event stream.
//!
//! **API Boundary:** fields are added, never renamed or removed, within v1.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use model_cache::download::DownloadEvent;
use model_cache::engine::{Engine, FinishedDownload, VariantsReport};
use model_cache::fit::FitTier;
use model_cache::index::queue::{QueueJob, QueueState};
use model_cache::scheduler::SchedulerEvent;
use model_cache::units::format_size;
use model_cache::variants::{ModelShape, VariantFile, VariantFormat};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorBody, hint_text};

/// `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    pub version: String,
    pub offline: bool,
    pub endpoint: String,
    pub cache_dir: PathBuf,
    pub jobs: JobCounts,
    pub storage: Storage,
    /// Problems a person should know about, most serious first.
    pub alerts: Vec<String>,
}

/// Jobs per state, for the health summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    pub running: u64,
    pub queued: u64,
    pub deferred: u64,
}

/// The cache's size against its budget and the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    pub used_bytes: u64,
    pub budget_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
}

/// `GET /api/variants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variants {
    pub repo: String,
    pub revision: String,
    pub commit: Option<String>,
    pub variants: Vec<VariantBody>,
    /// The name of the recommended variant.
    pub recommended: Option<String>,
    pub machine: MachineBody,
}

/// One variant with its fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantBody {
    pub id: String,
    pub name: String,
    pub format: VariantFormat,
    pub quant: Option<String>,
    pub bits_per_weight: Option<f64>,
    pub size_bytes: u64,
    pub files: Vec<FileRef>,
    pub companions: Vec<FileRef>,
    pub extras: Vec<ExtraRef>,
    pub complete: bool,
    pub fit: FitBody,
    pub recommended: bool,
    pub warnings: Vec<String>,
    pub header: Option<ModelShape>,
    /// Every file of the variant (and its companions) is in the cache at this commit.
    pub cached: bool,
}

/// A file and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub path: String,
    pub size: u64,
}

/// An optional file offered beside a variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraRef {
    pub path: String,
    pub size: u64,
    /// `projector` (e.g. `mmproj-*.gguf`) or `extra` (README, LICENSE).
    pub kind: String,
}

/// Whether a variant fits this machine, and the figures behind the estimate
/// (`needed_bytes = weights_bytes + kv_cache_bytes + overhead_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FitBody {
    pub tier: FitTier,
    pub needed_bytes: u64,
    pub available_bytes: u64,
    /// The whole model fits in one GPU's usable memory.
    pub in_gpu: bool,
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub overhead_bytes: u64,
    /// The context length the KV cache was budgeted for.
    pub context: u64,
}

impl FitBody {
    /// The contract's view of an engine estimate.
    pub fn from_estimate(fit: &model_cache::fit::FitEstimate) -> FitBody {
        FitBody {
            tier: fit.tier,
            needed_bytes: fit.needed_bytes,
            available_bytes: fit.machine.available_ram,
            in_gpu: fit.fits_in_vram,
            weights_bytes: fit.weights_bytes,
            kv_cache_bytes: fit.kv_cache_bytes,
            overhead_bytes: fit.overhead_bytes,
            context: fit.context,
        }
    }
}

/// `GET /api/search`: the query (the app's `search` command takes the same fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Words to look for in model ids.
    pub q: Option<String>,
    /// Tags, comma-separated: `gguf`, `safetensors`, `mlx`, `onnx`, …
    pub filter: Option<String>,
    /// `downloads` (the default), `likes` or `last_modified`.
    pub sort: Option<String>,
    /// Results per page, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// The `next` of an earlier page.
    pub cursor: Option<String>,
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    pub results: Vec<SearchResult>,
    /// The cursor of the next page; null on the last one.
    pub next: Option<String>,
    pub machine: MachineBody,
}

/// One model found, described from the listing alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    pub repo: String,
    pub downloads: u64,
    pub likes: u64,
    pub last_modified: Option<String>,
    pub formats: Vec<String>,
    pub task: Option<String>,
    /// `open`, `auto` or `manual`.
    pub gated: String,
    pub parameters: Option<u64>,
    /// The variant `size_bytes` is for (`Q4_K_M` for GGUF repos, a dtype otherwise).
    pub size_variant: Option<String>,
    pub size_bytes: Option<u64>,
    pub fit: Option<FitBody>,
    pub cached: bool,
}

/// A search report in the contract's shape.
pub fn search_results(report: &model_cache::engine::SearchReport) -> SearchResults {
    SearchResults {
        results: report
            .results
            .iter()
            .map(|r| SearchResult {
                repo: r.repo.clone(),
                downloads: r.downloads,
                likes: r.likes,
                last_modified: r.last_modified.clone(),
                formats: r.formats.clone(),
                task: r.pipeline_tag.clone(),
                gated: match r.gated {
                    model_cache::hub::Gating::Open => "open",
                    model_cache::hub::Gating::Auto => "auto",
                    model_cache::hub::Gating::Manual => "manual",
                }
                .to_string(),
                parameters: r.size.as_ref().map(|s| s.parameters),
                size_variant: r.size.as_ref().map(|s| s.variant.clone()),
                size_bytes: r.size.as_ref().map(|s| s.weights_bytes),
                fit: r.fit.as_ref().map(FitBody::from_estimate),
                cached: r.cached,
            })
            .collect(),
        next: report.next.clone(),
        machine: MachineBody {
            total_ram: report.machine.total_ram,
            available_ram: report.machine.available_ram,
            vram: report.machine.vram_total,
        },
    }
}

/// The machine the fit was computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineBody {
    pub total_ram: u64,
    pub available_ram: u64,
    pub vram: Option<u64>,
}

/// `POST /api/pulls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub job_id: i64,
}

/// A job as the UI shows it (`GET /api/jobs`, job actions, `job` events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub repo: String,
    pub revision: String,
    pub variant: Option<String>,
    /// `queued`, `running`, `paused`, `deferred`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// Why a deferred or paused job waits, for a person.
    pub reason: Option<String>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub speed_bps: u64,
    pub eta_seconds: Option<u64>,
    pub files: Vec<FileProgressBody>,
    pub error: Option<ErrorBody>,
    pub snapshot_path: Option<PathBuf>,
}

/// One file of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProgressBody {
    pub path: String,
    pub size: u64,
    pub done: u64,
    /// `queued`, `running`, `verifying`, `done` or `failed`.
    pub state: String,
    /// Where its bytes came from, when several sources had it (known once its transfer
    /// ended): bytes, speed and failed attempts by source.
    pub sources: Vec<model_cache::download::SourceUse>,
}

/// `POST /api/jobs/pause-all` and `/resume-all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affected {
    /// Jobs whose state the action changed.
    pub affected: usize,
}

/// `POST /api/cache/update`: queue the update of a followed branch (`main` when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    pub repo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// `POST /api/cache/hold`: keep a followed branch at its cached commit (`held: true`), or follow
/// it again (`held: false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    pub repo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub held: bool,
}

/// `POST /api/updates/check`: ask the Hub now (`force`: even refs checked recently, and on a
/// metered connection).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    #[serde(default)]
    pub force: bool,
}

/// `POST /api/cache/delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freed {
    pub freed_bytes: u64,
}

/// `POST /api/cache/reveal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revealed {
    pub path: PathBuf,
}

/// `POST /api/token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenState {
    pub token_set: bool,
}

/// `GET /api/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsBody {
    pub bytes_downloaded: u64,
    pub bytes_from_cache: u64,
    pub hits: u64,
    pub misses: u64,
    pub storage_used_bytes: u64,
    pub budget_bytes: Option<u64>,
    /// The last finished downloads, newest first.
    pub downloads: Vec<FinishedDownload>,
}

/// What `GET /api/events` sends (and the app's `engine-event`), tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContractEvent {
    /// A job changed (state, progress totals).
    Job(Box<Job>),
    /// Bytes of one file, throttled to a few per second.
    Progress(Progress),
    /// Something to tell the user.
    Notification(Notification),
}

/// Progress of one file of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub job_id: i64,
    pub path: String,
    pub done: u64,
    pub total: u64,
    pub speed_bps: u64,
}

/// A notification for the user (the app shows it on the desktop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// `info` or `error`.
    pub level: String,
    pub title: String,
    pub body: String,
}

impl Notification {
    /// The body as a desktop notification shows it ([`escape_markup`]): freedesktop
    /// notification servers that advertise `body-markup` read the body as markup, and the text
    /// carries what the Hub said (error messages). The title is plain text by the specification.
    pub fn desktop_body(&self) -> String {
        escape_markup(&self.body)
    }
}

/// `text` with `&`, `<` and `>` escaped as XML entities, so no markup in it is rendered (a link
/// or an image tag in a Hub error message stays text).
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            other => out.push(other),
        }
    }
    out
}

/// `POST /api/pulls`: a repo, and a variant or files (the recommended variant when neither).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullBody {
    pub repo: String,
    pub revision: Option<String>,
    pub variant: Option<String>,
    pub files: Option<Vec<String>>,
}

/// `POST /api/cache/pin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinBody {
    pub repo: String,
    pub pinned: bool,
}

/// `POST /api/cache/delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    pub repo: String,
    pub revision: Option<String>,
    /// One variant (its weight files) instead of the whole revision.
    #[serde(default)]
    pub variant: Option<String>,
}

/// `POST /api/cache/reveal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevealBody {
    pub repo: String,
}

/// `POST /api/import`: files or folders, or another app's models, into the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// `files`, `ollama`, `lmstudio` or `llama.cpp`.
    pub from: String,
    /// Files or folders; for an app, its folder (empty: the app's usual folder).
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub suggested_repos: bool,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub copy: bool,
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /api/token`: a token logs in, `null` logs out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub token: Option<String>,
}

/// A variant report in the contract's shape.
pub fn variants(report: &VariantsReport) -> Variants {
    let files = |list: &[VariantFile]| -> Vec<FileRef> {
        list.iter()
            .map(|f| FileRef {
                path: f.path.clone(),
                size: f.size,
            })
            .collect()
    };
    let extra = |f: &VariantFile, kind: &str| ExtraRef {
        path: f.path.clone(),
        size: f.size,
        kind: kind.to_string(),
    };
    let variants: Vec<VariantBody> = report
        .variants
        .iter()
        .map(|view| {
            let v = &view.variant;
            VariantBody {
                id: v.id.clone(),
                name: v.name.clone(),
                format: v.format,
                quant: v.quant.clone(),
                bits_per_weight: v.bits_per_weight,
                size_bytes: v.total_size,
                files: files(&v.files),
                companions: files(&v.companions),
                extras: v
                    .projectors
                    .iter()
                    .map(|f| extra(f, "projector"))
                    .chain(v.extras.iter().map(|f| extra(f, "extra")))
                    .collect(),
                complete: v.complete,
                fit: FitBody::from_estimate(&view.fit),
                recommended: view.recommended,
                warnings: v.warnings.iter().map(|w| w.message.clone()).collect(),
                header: v.shape.clone(),
                cached: false,
            }
        })
        .collect();
    let recommended = report.recommended.as_ref().and_then(|id| {
        report
            .variants
            .iter()
            .find(|v| &v.variant.id == id)
            .map(|v| v.variant.name.clone())
    });
    Variants {
        repo: report.repo.clone(),
        revision: report.revision.clone(),
        commit: report.commit.clone(),
        variants,
        recommended,
        machine: MachineBody {
            total_ram: report.machine.total_ram,
            available_ram: report.machine.available_ram,
            vram: report.machine.vram_total,
        },
    }
}

/// Per-file progress of one job, as the events reported it.
#[derive(Debug, Clone, Default)]
struct FileProgress {
    size: u64,
    done: u64,
    state: &'static str,
    sources: Vec<model_cache::download::SourceUse>,
}

#[derive(Debug, Default)]
struct JobProgress {
    files: Vec<(String, FileProgress)>,
    speed_bps: f64,
    last: Option<(Instant, u64)>,
    last_sent: Option<Instant>,
    commit: Option<String>,
}

impl JobProgress {
    fn file(&mut self, path: &str) -> &mut FileProgress {
        if let Some(i) = self.files.iter().position(|(p, _)| p == path) {
            return &mut self.files[i].1;
        }
        self.files.push((
            path.to_string(),
            FileProgress {
                state: "queued",
                ..FileProgress::default()
            },
        ));
        let last = self.files.len() - 1;
        &mut self.files[last].1
    }

    fn bytes_done(&self) -> u64 {
        self.files.iter().map(|(_, f)| f.done).sum()
    }
}

/// What the contract's jobs and events need beyond the queue rows.
#[derive(Debug, Default)]
pub struct Tracker {
    jobs: Mutex<HashMap<i64, JobProgress>>,
}

/// Progress events closer together than this (per job) are dropped, except a file's last one.
const PROGRESS_INTERVAL_MS: u128 = 250;

impl Tracker {
    /// A queue row in the contract's `Job` shape.
    pub fn job(&self, engine: &Engine, job: &QueueJob) -> Job {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let progress = jobs.get(&job.id);
        let running = job.state == QueueState::Running;
        let files: Vec<FileProgressBody> = progress
            .map(|p| {
                p.files
                    .iter()
                    .map(|(path, f)| FileProgressBody {
                        path: path.clone(),
                        size: f.size,
                        done: f.done,
                        state: f.state.to_string(),
                        sources: f.sources.clone(),
                    })
                    .collect()
            })
            .filter(|files: &Vec<FileProgressBody>| !files.is_empty())
            // Before its first byte (queued, paused, cancelled early) a job lists the files it
            // was asked for, with sizes not known yet.
            .unwrap_or_else(|| {
                job.selection
                    .files
                    .iter()
                    .map(|path| FileProgressBody {
                        path: path.clone(),
                        size: 0,
                        done: 0,
                        state: "queued".to_string(),
                        sources: Vec::new(),
                    })
                    .collect()
            });
        let total = job.bytes_total.unwrap_or(0);
        // The queue counts bytes saved by the cache apart; the UI shows them as done.
        let mut done = job.bytes_done + job.bytes_saved;
        if let Some(p) = progress {
            done = done.max(p.bytes_done());
        }
        if job.state == QueueState::Done {
            done = done.max(total);
        }
        let speed = if running {
            progress.map_or(0.0, |p| p.speed_bps)
        } else {
            0.0
        };
        let eta = (running && speed > 0.0)
            .then(|| (total.saturating_sub(done) as f64 / speed).ceil() as u64);
        let reason = job
            .defer_message
            .clone()
            .or_else(|| job.defer_reason.as_ref().map(|r| r.kind().to_string()));
        let error = job.error.as_ref().map(|message| ErrorBody {
            kind: job
                .error_kind
                .map_or("internal", |k| k.as_str())
                .to_string(),
            message: message.clone(),
            hint: hint_text(&job.error_hints),
        });
        let snapshot_path = progress
            .and_then(|p| p.commit.as_ref())
            .filter(|_| job.state == QueueState::Done)
            .map(|commit| engine.cache().repo(&job.repo).snapshot_dir(commit));
        Job {
            id: job.id,
            repo: job.repo.to_string(),
            revision: job.revision.clone(),
            variant: job.selection.variant.clone(),
            state: job.state.as_str().to_string(),
            reason,
            bytes_done: done.min(total.max(done)),
            bytes_total: total,
            speed_bps: speed.round() as u64,
            eta_seconds: eta,
            files,
            error,
            snapshot_path,
        }
    }

    /// Updates the tracker with an engine event and returns the contract events to send.
    pub fn translate(&self, engine: &Engine, event: &SchedulerEvent) -> Vec<ContractEvent> {
        match event {
            SchedulerEvent::JobChanged { job } => {
                let mut out = vec![ContractEvent::Job(Box::new(self.job(engine, job)))];
                let repo = job.repo.to_string();
                let note = match job.state {
                    QueueState::Done => Some(("info", "Download finished", repo)),
                    QueueState::Failed => Some((
                        "error",
                        "Download failed",
                        format!("{repo}: {}", job.error.clone().unwrap_or_default()),
                    )),
                    QueueState::Deferred => Some((
                        "info",
                        "Download waiting",
                        format!("{repo}: {}", job.defer_message.clone().unwrap_or_default()),
                    )),
                    _ => None,
                };
                if let Some((level, title, body)) = note {
                    out.push(ContractEvent::Notification(Notification {
                        level: level.to_string(),
                        title: title.to_string(),
                        body,
                    }));
                }
                out
            }
            SchedulerEvent::Download { job_id, event } => self.progress(*job_id, event),
            SchedulerEvent::Evicted { for_job, plan } if !plan.evictions.is_empty() => {
                vec![ContractEvent::Notification(eviction_notice(*for_job, plan))]
            }
            SchedulerEvent::StorageAlert { report } => {
                let (Some(budget), Some(percent)) = (report.budget, report.percent_of_budget)
                else {
                    return vec![];
                };
                vec![ContractEvent::Notification(Notification {
                    level: "info".to_string(),
                    title: format!("The cache is at {percent}% of its budget"),
                    body: format!(
                        "{} of {} used. Delete models you no longer need, or raise the budget in Settings.",
                        format_size(report.used),
                        format_size(budget)
                    ),
                })]
            }
            SchedulerEvent::UpdatesFound { updates } => {
                let names: Vec<String> = updates
                    .iter()
                    .map(|u| format!("{} ({})", u.repo, u.branch))
                    .collect();
                let (title, body) = match names.as_slice() {
                    [one] => (
                        "Update available",
                        format!("{one} has a newer version on the Hub."),
                    ),
                    many => (
                        "Updates available",
                        format!("{} have newer versions on the Hub.", many.join(", ")),
                    ),
                };
                vec![ContractEvent::Notification(Notification {
                    level: "info".to_string(),
                    title: title.to_string(),
                    body,
                })]
            }
            _ => vec![],
        }
    }

    fn progress(&self, job_id: i64, event: &DownloadEvent) -> Vec<ContractEvent> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let job = jobs.entry(job_id).or_default();
        let now = Instant::now();
        let (path, force) = match event {
            DownloadEvent::FileStarted {
                path,
                size,
                resumed_bytes,
                ..
            } => {
                let f = job.file(path);
                f.size = *size;
                f.done = *resumed_bytes;
                f.state = "running";
                (path.clone(), true)
            }
            DownloadEvent::Bytes {
                path, done, total, ..
            } => {
                let f = job.file(path);
                f.size = *total;
                f.done = *done;
                f.state = "running";
                (path.clone(), done >= total)
            }
            DownloadEvent::Verifying { path, .. } => {
                job.file(path).state = "verifying";
                return vec![];
            }
            DownloadEvent::Verified { path, .. } | DownloadEvent::Linked { path, .. } => {
                let f = job.file(path);
                f.done = f.size;
                f.state = "done";
                (path.clone(), true)
            }
            DownloadEvent::Skipped {
                path, bytes_saved, ..
            } => {
                let f = job.file(path);
                f.size = f.size.max(*bytes_saved);
                f.done = f.size;
                f.state = "done";
                (path.clone(), true)
            }
            DownloadEvent::Failed { path, .. } => {
                job.file(path).state = "failed";
                return vec![];
            }
            DownloadEvent::Sources { path, sources, .. } => {
                job.file(path).sources = sources.clone();
                (path.clone(), true)
            }
            DownloadEvent::Finished { commit, .. } => {
                job.commit = Some(commit.clone());
                return vec![];
            }
            _ => return vec![],
        };
        // Speed: bytes across the job's files over time, smoothed.
        let total_done = job.bytes_done();
        if let Some((at, before)) = job.last {
            let secs = now.duration_since(at).as_secs_f64();
            if secs >= 0.2 {
                let instant = total_done.saturating_sub(before) as f64 / secs;
                job.speed_bps = if job.speed_bps == 0.0 {
                    instant
                } else {
                    0.7 * job.speed_bps + 0.3 * instant
                };
                job.last = Some((now, total_done));
            }
        } else {
            job.last = Some((now, total_done));
        }
        let due = job
            .last_sent
            .is_none_or(|at| now.duration_since(at).as_millis() >= PROGRESS_INTERVAL_MS);
        if !(force || due) {
            return vec![];
        }
        job.last_sent = Some(now);
        let f = job.file(&path).clone();
        let speed = job.speed_bps.round() as u64;
        vec![ContractEvent::Progress(Progress {
            job_id,
            path,
            done: f.done,
            total: f.size,
            speed_bps: speed,
        })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_desktop_notification_body_shows_markup_as_text() {
        let note = Notification {
            level: "error".into(),
            title: "Download failed".into(),
            body: "demo/x: <b>bold</b> & <a href=\"https://evil.example\">link</a>".into(),
        };
        let body = note.desktop_body();
        assert_eq!(
            body,
            "demo/x: &lt;b&gt;bold&lt;/b&gt; &amp; &lt;a href=\"https://evil.example\"&gt;link&lt;/a&gt;"
        );
        assert!(!body.contains('<') && !body.contains('>'), "{body}");
        assert_eq!(escape_markup("<b>&"), "&lt;b&gt;&amp;");
        assert_eq!(escape_markup("plain text"), "plain text");
    }
}

/// What an eviction removed, named with sizes: every eviction is announced.
fn eviction_notice(for_job: Option<i64>, plan: &model_cache::policy::EvictionPlan) -> Notification {
    let names: Vec<String> = plan
        .evictions
        .iter()
        .map(|e| {
            let what = e
                .variant
                .as_deref()
                .map(|v| format!("{} {}", e.repo, v.rsplit(':').next().unwrap_or(v)))
                .unwrap_or_else(|| e.repo.to_string());
            format!("{what} ({})", format_size(e.bytes_freed))
        })
        .collect();
    let why = match for_job {
        Some(_) => "to make room for a download",
        None => "to keep the cache within its budget",
    };
    Notification {
        level: "info".to_string(),
        title: format!("Removed {} from the cache", format_size(plan.bytes_freed)),
        body: format!("{} ({why}).", names.join(", ")),
    }
}

#[cfg(test)]
mod eviction_tests {
    use std::time::SystemTime;

    use model_cache::policy::EvictionPlan;
    use model_cache::policy::evict::{LastUsedSource, PlannedEviction};

    use super::eviction_notice;

    #[test]
    fn an_eviction_names_each_model_and_its_size() {
        let planned = |repo: &str, variant: Option<&str>, bytes| PlannedEviction {
            repo: repo.parse().unwrap(),
            commit: "c".repeat(40),
            variant: variant.map(str::to_string),
            refs: vec!["main".into()],
            last_used: SystemTime::UNIX_EPOCH,
            last_used_source: LastUsedSource::FileTimes,
            bytes_freed: bytes,
        };
        let plan = EvictionPlan {
            evictions: vec![
                planned("org/a", Some("gguf:Q4_K_M"), 3 << 30),
                planned("org/b", None, 512 << 20),
            ],
            bytes_freed: (3 << 30) + (512 << 20),
            bytes_wanted: 1,
            satisfied: true,
        };
        let notice = eviction_notice(Some(7), &plan);
        assert_eq!(notice.title, "Removed 3.50 GiB from the cache");
        assert_eq!(
            notice.body,
            "org/a Q4_K_M (3.00 GiB), org/b (512 MiB) (to make room for a download)."
        );
        let notice = eviction_notice(None, &plan);
        assert!(
            notice
                .body
                .ends_with("(to keep the cache within its budget).")
        );
    }
}
