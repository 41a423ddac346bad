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
use model_cache::engine::{Engine, FinishedDownload, NotificationKind, VariantsReport};
use model_cache::error::{ErrorKind, Hint};
use model_cache::fit::FitTier;
use model_cache::index::queue::{QueueJob, QueueState};
use model_cache::policy::DeferReason;
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
    /// Bytes copied from cached blobs holding the same Xet chunks instead of being fetched.
    #[serde(default)]
    pub reused: u64,
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

/// `POST /api/convert`: convert a cached model; queued like a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvertBody {
    pub repo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// `gguf` (the only format written).
    #[serde(default = "default_convert_to")]
    pub to: String,
    /// `f16` or `q8_0`.
    #[serde(rename = "type")]
    pub gguf_type: String,
}

fn default_convert_to() -> String {
    "gguf".to_string()
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

/// `POST /api/peers/sharing`: turn sharing with LAN peers on or off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharingBody {
    pub on: bool,
}

/// `POST /api/peers/compression`: ask paired peers for compressed transfers of F16/BF16
/// safetensors files, or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionBody {
    pub on: bool,
}

/// `POST /api/peers/pair`: pair with the peer at `address` (`host:port`, or a peer id discovery
/// saw) that shows `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairBody {
    pub address: String,
    pub code: String,
}

/// `POST /api/peers/unpair`: forget a paired peer (its id or fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnpairBody {
    pub peer: String,
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
    /// Of `bytes_from_cache`, bytes copied from cached blobs holding the same Xet chunks.
    #[serde(default)]
    pub bytes_reused: u64,
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
    /// What it is about, for the settings that turn each kind off (`finished`, `failed`,
    /// `deferred`, `storage`, `evicted`, `updates`); absent for notices always shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<NotificationKind>,
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
    /// What the user agreed to remove to make room (the `key`s of `Room.evictions`); the pull
    /// is refused, removing nothing, if making room would now take anything else.
    #[serde(default)]
    pub evict: Option<Vec<String>>,
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
    reused: u64,
}

#[derive(Debug, Default)]
struct JobProgress {
    files: Vec<(String, FileProgress)>,
    throughput: model_cache::units::Throughput,
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
    /// Jobs waiting on a condition that can last (battery, disk space, hours), by id.
    deferrals: Mutex<HashMap<i64, Deferral>>,
}

/// One job's wait, from when it began until the job leaves the deferred state: told once, when
/// it has lasted the user's `notify_deferred_after`, however often its reason is re-checked
/// (the battery level in the reason changes as it drains).
#[derive(Debug, Clone)]
struct Deferral {
    /// Unix milliseconds when the wait began.
    since_ms: i64,
    name: String,
    /// The latest reason, in words.
    reason: String,
    told: bool,
}

/// Unix milliseconds now.
pub(crate) fn unix_ms_now() -> i64 {
    now_ms()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whether a deferral for `reason` can last long enough to be worth a notification: waiting
/// for a charger, free space, the allowed hours or a network that is not metered. A pause the person asked for is not told
/// back to them, and a network wait retries and fails by itself.
fn lasting(reason: &DeferReason) -> bool {
    matches!(
        reason,
        DeferReason::OnBattery { .. }
            | DeferReason::DiskReserve { .. }
            | DeferReason::DiskFull { .. }
            | DeferReason::OutsideHours { .. }
            | DeferReason::Metered
    )
}

/// The model a job downloads, as a person names it: the repo and the variant's short name
/// (`org/model Q4_K_M`).
fn model_name(job: &QueueJob) -> String {
    match job.selection.variant.as_deref() {
        Some(variant) => format!(
            "{} {}",
            job.repo,
            variant.rsplit(':').next().unwrap_or(variant)
        ),
        None => job.repo.to_string(),
    }
}

/// A failed job's notification body: the model, what went wrong, and what to do, in the
/// window's words (no command lines).
fn failure_body(name: &str, job: &QueueJob) -> String {
    // The engine quotes names with backticks for terminals; a notification shows plain text.
    let message = job
        .error
        .as_deref()
        .unwrap_or("The download stopped")
        .trim_end_matches('.')
        .replace('`', "");
    match failure_hint(job.error_kind, &job.error_hints) {
        Some(hint) => format!("{name}: {message}. {hint}"),
        None => format!("{name}: {message}."),
    }
}

/// What a person can do about a failed download, in the app's words: from the engine's hints
/// where one names an action the window has, else from the kind of error.
pub fn failure_hint(kind: Option<ErrorKind>, hints: &[Hint]) -> Option<String> {
    for hint in hints {
        let words = match hint {
            Hint::LogIn => "Add your access token in Settings.".to_string(),
            Hint::RenewToken => {
                "The access token was refused: add a valid one in Settings.".to_string()
            }
            Hint::CheckTokenPermissions => {
                "The access token lacks a permission: create one with read access and add it in Settings.".to_string()
            }
            Hint::RequestAccess { url } => {
                format!("Request access on the model's page ({url}), then try again.")
            }
            Hint::CheckRepoId => "Check the model's name (org/name).".to_string(),
            Hint::GoOnline => "Turn offline mode off in Settings.".to_string(),
            Hint::FreeSpace { bytes } => format!(
                "Free {} on the cache's disk (delete unused models in the Cache tab), then try again.",
                format_size(*bytes)
            ),
            Hint::RetryLater => "Try again later.".to_string(),
            _ => continue,
        };
        return Some(words);
    }
    let words = match kind? {
        ErrorKind::Gated => {
            "This model is gated: request access on its page, then add your access token in Settings."
        }
        ErrorKind::Unauthorized | ErrorKind::BadToken => {
            "The access token was refused: add a valid one in Settings."
        }
        ErrorKind::RepoNotFound | ErrorKind::RevisionNotFound | ErrorKind::EntryNotFound => {
            "Check the model's name; if it is private, add an access token in Settings."
        }
        ErrorKind::RateLimited => "The Hub is limiting requests: try again in a minute.",
        ErrorKind::Network | ErrorKind::RetriesExhausted | ErrorKind::Http => {
            "Check the network connection, then try again from the Downloads tab."
        }
        ErrorKind::Offline => "Offline mode is on: turn it off in Settings.",
        ErrorKind::DiskFull => {
            "Free some disk space or delete unused models in the Cache tab, then try again."
        }
        ErrorKind::Integrity | ErrorKind::UpstreamChanged => {
            "The file changed or arrived damaged: try again; only the bad parts are fetched again."
        }
        ErrorKind::UntrustedCertificate => {
            "The connection is not trusted: check the proxy and the certificate authorities in Settings."
        }
        _ => return None,
    };
    Some(words.to_string())
}

/// Progress events closer together than this (per job) are dropped, except a file's last one.
const PROGRESS_INTERVAL_MS: u128 = 250;

impl Tracker {
    /// Follows a job's deferral: a lasting wait begins, goes on (its reason re-checked), or
    /// ends.
    fn track_deferral(&self, job: &QueueJob, now_ms: i64) {
        let mut deferrals = self.deferrals.lock().unwrap_or_else(|e| e.into_inner());
        match (&job.state, &job.defer_reason) {
            (QueueState::Deferred, Some(reason)) if lasting(reason) => {
                let entry = deferrals.entry(job.id).or_insert_with(|| Deferral {
                    since_ms: job.deferred_since.unwrap_or(now_ms).min(now_ms),
                    name: model_name(job),
                    reason: String::new(),
                    told: false,
                });
                entry.reason = job
                    .defer_message
                    .clone()
                    .unwrap_or_else(|| reason.to_string());
            }
            _ => {
                deferrals.remove(&job.id);
            }
        }
    }

    /// When the next untold deferral will have lasted `after` (unix milliseconds); `None` when
    /// no job waits untold: nothing to wake up for.
    pub fn next_deferral_due(&self, after: std::time::Duration) -> Option<i64> {
        let deferrals = self.deferrals.lock().unwrap_or_else(|e| e.into_inner());
        deferrals
            .values()
            .filter(|d| !d.told)
            .map(|d| d.since_ms.saturating_add(after.as_millis() as i64))
            .min()
    }

    /// The "download waiting" notifications due at `now_ms`: each deferral that has lasted
    /// `after` and was not told yet, once.
    pub fn due_deferrals(&self, now_ms: i64, after: std::time::Duration) -> Vec<ContractEvent> {
        let mut deferrals = self.deferrals.lock().unwrap_or_else(|e| e.into_inner());
        let mut due: Vec<(i64, &mut Deferral)> = deferrals
            .iter_mut()
            .filter(|(_, d)| {
                !d.told && now_ms >= d.since_ms.saturating_add(after.as_millis() as i64)
            })
            .map(|(id, d)| (*id, d))
            .collect();
        due.sort_by_key(|(id, _)| *id);
        due.into_iter()
            .map(|(_, deferral)| {
                deferral.told = true;
                let waited =
                    std::time::Duration::from_millis((now_ms - deferral.since_ms).max(0) as u64);
                ContractEvent::Notification(Notification {
                    level: "info".to_string(),
                    kind: Some(NotificationKind::Deferred),
                    title: "Download waiting".to_string(),
                    body: format!(
                        "{} has waited {}: {}. It starts by itself when that changes.",
                        deferral.name,
                        waited_words(waited),
                        deferral.reason.trim_end_matches('.')
                    ),
                })
            })
            .collect()
    }

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
                        reused: f.reused,
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
                        reused: 0,
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
        let (speed, eta) = match progress.filter(|_| running) {
            Some(p) => (
                p.throughput.bytes_per_second(),
                p.throughput
                    .eta(total.saturating_sub(done))
                    .map(|eta| eta.as_secs()),
            ),
            None => (0.0, None),
        };
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
            // A conversion reads as what it makes ("GGUF Q8_0").
            variant: match &job.convert {
                Some(c) => Some(format!("GGUF {}", c.gguf_type.label())),
                None => job.selection.variant.clone(),
            },
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
                self.track_deferral(job, now_ms());
                let name = model_name(job);
                let note = match job.state {
                    QueueState::Done => Some((
                        "info",
                        NotificationKind::Finished,
                        "Download finished",
                        format!("{name} is ready to use."),
                    )),
                    QueueState::Failed => Some((
                        "error",
                        NotificationKind::Failed,
                        "Download failed",
                        failure_body(&name, job),
                    )),
                    _ => None,
                };
                if let Some((level, kind, title, body)) = note {
                    out.push(ContractEvent::Notification(Notification {
                        level: level.to_string(),
                        kind: Some(kind),
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
                    kind: Some(NotificationKind::Storage),
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
                    kind: Some(NotificationKind::Updates),
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
                let skipped = resumed_bytes.saturating_sub(f.done);
                f.size = *size;
                f.done = *resumed_bytes;
                f.state = "running";
                // Bytes already on disk are not speed.
                job.throughput.skip(skipped);
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
                let before = f.done;
                f.size = f.size.max(*bytes_saved);
                f.done = f.size;
                f.state = "done";
                // A cached file is not speed.
                let skipped = f.done.saturating_sub(before);
                job.throughput.skip(skipped);
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
            DownloadEvent::Reused {
                path, bytes_reused, ..
            } => {
                job.file(path).reused = *bytes_reused;
                (path.clone(), true)
            }
            DownloadEvent::Finished { commit, .. } => {
                job.commit = Some(commit.clone());
                return vec![];
            }
            DownloadEvent::Paused { .. } => {
                job.throughput.stop();
                return vec![];
            }
            _ => return vec![],
        };
        // Speed: bytes across the job's files over time, the estimate `mcache pull` shows too.
        let total_done = job.bytes_done();
        job.throughput.observe(now, total_done);
        let due = job
            .last_sent
            .is_none_or(|at| now.duration_since(at).as_millis() >= PROGRESS_INTERVAL_MS);
        if !(force || due) {
            return vec![];
        }
        job.last_sent = Some(now);
        let f = job.file(&path).clone();
        let speed = job.throughput.bytes_per_second().round() as u64;
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
    fn a_file_rebuilt_from_cached_chunks_shows_the_bytes_reused() {
        let tracker = Tracker::default();
        let (repo, path) = ("org/m".to_string(), "model.safetensors".to_string());
        tracker.progress(
            7,
            &DownloadEvent::FileStarted {
                repo: repo.clone(),
                path: path.clone(),
                size: 1000,
                resumed_bytes: 0,
            },
        );
        let sent = tracker.progress(
            7,
            &DownloadEvent::Reused {
                repo,
                path: path.clone(),
                bytes_reused: 990,
                bytes_fetched: 12,
            },
        );
        assert!(
            matches!(sent.as_slice(), [ContractEvent::Progress(p)] if p.path == path),
            "the job's progress is sent again: {sent:?}"
        );
        let jobs = tracker.jobs.lock().unwrap();
        let (_, file) = jobs[&7].files.iter().find(|(p, _)| *p == path).unwrap();
        assert_eq!(file.reused, 990);
    }

    #[test]
    fn a_desktop_notification_body_shows_markup_as_text() {
        let note = Notification {
            level: "error".into(),
            kind: Some(NotificationKind::Failed),
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

/// A wait in whole minutes or hours, as a person says it (`12 minutes`, `2 hours`).
fn waited_words(waited: std::time::Duration) -> String {
    let minutes = waited.as_secs() / 60;
    match minutes {
        0 => "less than a minute".to_string(),
        1 => "a minute".to_string(),
        m if m < 120 => format!("{m} minutes"),
        m => format!("{} hours", m / 60),
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
        kind: Some(NotificationKind::Evicted),
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

#[cfg(test)]
mod notification_tests {
    use std::time::Duration;

    use model_cache::error::{ErrorKind, Hint};
    use model_cache::index::queue::{QueueJob, QueueState, Selection};
    use model_cache::policy::{BatteryPolicy, DeferReason};

    use super::{ContractEvent, Tracker, failure_body, failure_hint, model_name};

    fn job(id: i64, state: QueueState, reason: Option<DeferReason>) -> QueueJob {
        QueueJob {
            id,
            repo: "org/model-GGUF".parse().unwrap(),
            revision: "main".into(),
            selection: Selection {
                variant: Some("gguf:Q4_K_M".into()),
                ..Selection::default()
            },
            priority: 0,
            position: 0,
            state,
            defer_message: reason.as_ref().map(ToString::to_string),
            defer_reason: reason,
            deferred_since: None,
            bytes_total: None,
            bytes_done: 0,
            bytes_saved: 0,
            error: None,
            error_kind: None,
            error_hints: vec![],
            created_at: 0,
            updated_at: 0,
            started_at: None,
            finished_at: None,
            convert: None,
        }
    }

    fn battery(percent: u8) -> Option<DeferReason> {
        Some(DeferReason::OnBattery {
            percent: Some(percent),
            policy: BatteryPolicy::Always,
        })
    }

    fn bodies(events: Vec<ContractEvent>) -> Vec<String> {
        events
            .into_iter()
            .map(|e| match e {
                ContractEvent::Notification(n) => {
                    assert_eq!(
                        n.kind,
                        Some(model_cache::engine::NotificationKind::Deferred)
                    );
                    assert_eq!(n.title, "Download waiting");
                    n.body
                }
                other => panic!("not a notification: {other:?}"),
            })
            .collect()
    }

    const MIN: i64 = 60_000;

    /// A wait on the battery is told once, when it has lasted the user's span, however often
    /// the scheduler re-checks it (the level in the reason changes as it drains); a new wait
    /// after the job ran is told again; a pause the user asked for never is.
    #[test]
    fn a_lasting_deferral_is_told_once_per_wait() {
        let tracker = Tracker::default();
        let after = Duration::from_secs(10 * 60);
        assert_eq!(tracker.next_deferral_due(after), None, "nothing waits");
        let start = 1_000 * MIN;
        tracker.track_deferral(&job(1, QueueState::Deferred, battery(40)), start);
        assert_eq!(tracker.next_deferral_due(after), Some(start + 10 * MIN));
        assert!(tracker.due_deferrals(start + 5 * MIN, after).is_empty());
        // Re-checked with another level: still the same wait.
        tracker.track_deferral(&job(1, QueueState::Deferred, battery(35)), start + 6 * MIN);
        let told = bodies(tracker.due_deferrals(start + 11 * MIN, after));
        assert_eq!(
            told,
            [
                "org/model-GGUF Q4_K_M has waited 11 minutes: On battery (35%, policy: always defer on battery). It starts by itself when that changes."
            ]
        );
        assert_eq!(
            tracker.next_deferral_due(after),
            None,
            "told: nothing to wake for"
        );
        tracker.track_deferral(&job(1, QueueState::Deferred, battery(30)), start + 12 * MIN);
        assert!(
            tracker.due_deferrals(start + 60 * MIN, after).is_empty(),
            "once"
        );

        // The job ran, then waited again: a new wait.
        tracker.track_deferral(&job(1, QueueState::Running, None), start + 61 * MIN);
        assert_eq!(tracker.next_deferral_due(after), None);
        tracker.track_deferral(&job(1, QueueState::Deferred, battery(20)), start + 70 * MIN);
        assert_eq!(
            bodies(tracker.due_deferrals(start + 80 * MIN, after)).len(),
            1
        );

        // Paused by the person: never told.
        tracker.track_deferral(
            &job(2, QueueState::Deferred, Some(DeferReason::PausedByUser)),
            start,
        );
        assert!(tracker.due_deferrals(start + 600 * MIN, after).is_empty());
    }

    /// A job found deferred since earlier (the app restarted) counts its wait from then.
    #[test]
    fn a_wait_counts_from_when_the_queue_says_it_began() {
        let tracker = Tracker::default();
        let mut waiting = job(3, QueueState::Deferred, battery(50));
        waiting.deferred_since = Some(100 * MIN);
        tracker.track_deferral(&waiting, 130 * MIN);
        let after = Duration::from_secs(10 * 60);
        assert_eq!(tracker.next_deferral_due(after), Some(110 * MIN));
        assert_eq!(bodies(tracker.due_deferrals(130 * MIN, after)).len(), 1);
    }

    #[test]
    fn a_failure_names_the_variant_the_reason_and_what_to_do() {
        let mut failed = job(4, QueueState::Failed, None);
        failed.error = Some("The disk is `full`".into());
        failed.error_kind = Some(ErrorKind::DiskFull);
        failed.error_hints = vec![Hint::FreeSpace { bytes: 3 << 30 }];
        assert_eq!(model_name(&failed), "org/model-GGUF Q4_K_M");
        assert_eq!(
            failure_body("org/model-GGUF Q4_K_M", &failed),
            "org/model-GGUF Q4_K_M: The disk is full. Free 3.00 GiB on the cache's disk (delete unused models in the Cache tab), then try again."
        );
        // No hint the window can act on: the kind's words.
        assert_eq!(
            failure_hint(Some(ErrorKind::Gated), &[Hint::ListJobs]).as_deref(),
            Some(
                "This model is gated: request access on its page, then add your access token in Settings."
            )
        );
        assert_eq!(failure_hint(Some(ErrorKind::Cancelled), &[]), None);
        failed.error_kind = None;
        failed.error_hints.clear();
        assert_eq!(failure_body("x", &failed), "x: The disk is full.");
    }
}
