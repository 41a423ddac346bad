//! The transfer of one blob's bytes into its `.incomplete` file: parallel range requests under
//! the global limits, or one sequential stream when the server ignores `Range`.
//!
//! Each in-flight [`Segment`] streams its response body in buffer-sized pieces into positional
//! writes; a dropped connection reconnects from the byte it reached. When every segment of a
//! chunk is written, the chunk goes to the committer, which flushes the file (`fdatasync`),
//! checksums the chunk as it is on disk and records it in the index, in batches. Only then does
//! the contiguous done prefix grow and reach the [`PrefixHasher`].

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use super::control::JobControl;
use super::error::DownloadError;
use super::events::{DownloadEvent, Reporter};
use super::jobs::JobDb;
use super::limits::{ConnectionPermit, TransferLimits};
use super::plan::{ChunkPlan, Segment, slow_tail_candidate};
use super::source::{SourceKind, Sources};
use super::writer::{BlobWriter, WriteFailure};
use crate::hash::PrefixHasher;
use crate::hub::retry::{Decision, RetryPolicy, Retryable, backoff};
use crate::hub::{HubClient, HubError, RangeResponse};
use crate::index::transfers::{DoneChunk, PartialChunk};

/// Smallest piece a slow-tail split hands to a new connection.
const MIN_SPLIT: u64 = 512 * 1024;
/// How often the scheduler looks for a slow tail while waiting.
const TAIL_CHECK: Duration = Duration::from_millis(250);
/// Minimum interval between two `bytes` events of one file.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// What every transfer of one request shares.
pub(crate) struct TransferContext {
    pub hub: HubClient,
    pub limits: TransferLimits,
    pub retry: RetryPolicy,
    pub stall: Duration,
    pub checkpoint: Checkpoint,
    /// Connections a file's transfer starts with (see [`super::ramp`]).
    pub start_connections: usize,
    pub reporter: Arc<dyn Reporter>,
    pub control: JobControl,
    pub db: JobDb,
    /// Body bytes received from the network by this request.
    pub downloaded: Arc<AtomicU64>,
    /// The team bucket's manifest of the request's commit, read the first time the Hub cannot
    /// be reached.
    pub team_manifest: tokio::sync::OnceCell<Option<crate::bucket::Manifest>>,
}

/// When a stream records how far into its chunk it has written: once `every` has passed and
/// `bytes` were written since its last record (whichever comes later).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checkpoint {
    pub every: Duration,
    pub bytes: u64,
}

/// One blob being transferred.
pub(crate) struct BlobTransfer {
    pub repo: String,
    pub path: String,
    /// Where the bytes come from: the Hub's download URL and the mirrors that have the file,
    /// each a URL that may expire (see [`BlobTransfer::renew_url`]).
    pub sources: Sources,
    /// What resolves it again: the repo and the commit the file was resolved at.
    pub resolved_at: (crate::RepoId, String),
    pub etag: String,
    pub plan: ChunkPlan,
    pub job_id: i64,
    pub writer: BlobWriter,
    /// The `If-Range` validator in use (unquoted).
    pub validator: Mutex<String>,
    /// Per chunk, the sources whose bytes it holds (bit `i` for source `i`): what a failed hash
    /// check narrows to. Chunks resumed from disk hold no bit (their source is not known).
    pub served: Mutex<Vec<u64>>,
}

impl BlobTransfer {
    /// Records that source `source` wrote bytes of `chunk`.
    fn note_served(&self, chunk: u64, source: usize) {
        if let Some(mask) = self
            .served
            .lock()
            .expect("served lock")
            .get_mut(chunk as usize)
        {
            *mask |= 1u64 << (source.min(63));
        }
    }

    /// The chunks some of whose bytes came from `source`.
    pub(super) fn chunks_served_by(&self, source: usize) -> Vec<u64> {
        let bit = 1u64 << source.min(63);
        self.served
            .lock()
            .expect("served lock")
            .iter()
            .enumerate()
            .filter(|(_, mask)| **mask & bit != 0)
            .map(|(chunk, _)| chunk as u64)
            .collect()
    }

    /// Forgets who served `chunks` (they are fetched again).
    pub(super) fn forget_served(&self, chunks: &[u64]) {
        let mut served = self.served.lock().expect("served lock");
        for &chunk in chunks {
            if let Some(mask) = served.get_mut(chunk as usize) {
                *mask = 0;
            }
        }
    }
    pub(super) fn validator(&self) -> String {
        self.validator.lock().expect("validator lock").clone()
    }

    /// Replaces a download URL source `index` refused (`refused`, as a stream used it) with a
    /// fresh one: a new `HEAD` of the file at the same commit, on the Hub (with its failover)
    /// for the Hub's URL, on the mirror itself for a mirror's. The blob's identity is the Hub's
    /// etag, not the URL: a fresh link to other content is a change. A stream that finds the URL
    /// already renewed by another one just uses it.
    async fn renew_url(
        &self,
        ctx: &TransferContext,
        index: usize,
        refused: &str,
    ) -> Result<(), TransferFailure> {
        let source = self.sources.get(index);
        let _one_at_a_time = source.renewing.lock().await;
        if source.url() != refused {
            return Ok(());
        }
        let (repo, commit) = &self.resolved_at;
        if let SourceKind::Bucket(bucket) = &source.kind {
            let url =
                bucket
                    .blob_url(repo, &self.etag)
                    .await
                    .map_err(|error| DownloadError::Bucket {
                        repo: self.repo.clone(),
                        path: self.path.clone(),
                        source: Box::new(error),
                    })?;
            source.set_url(url);
            return Ok(());
        }
        let meta = match &source.kind {
            SourceKind::Hub => ctx.hub.file_metadata(repo, commit, &self.path).await,
            SourceKind::Mirror { base } => {
                ctx.hub
                    .file_metadata_on(base, repo, commit, &self.path)
                    .await
            }
            SourceKind::Peer(peer) => {
                peer.client
                    .file_metadata_on(&peer.base, repo, commit, &self.path)
                    .await
            }
            SourceKind::Bucket(_) => unreachable!("renewed above"),
        }
        .map_err(|error| DownloadError::Hub {
            repo: self.repo.clone(),
            path: self.path.clone(),
            source: Box::new(error),
        })?;
        if meta.etag != self.etag || meta.size != self.size() {
            return Err(TransferFailure::Changed {
                reason: format!("{} now names the file `{}`", source.name(), meta.etag),
            });
        }
        tracing::info!(path = %self.path, source = %source.name(), "The download link expired; continuing with a fresh one");
        source.set_url(meta.download_url);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.plan.size
    }
}

/// Why a transfer stopped before every chunk was recorded.
#[derive(Debug)]
pub(crate) enum TransferFailure {
    /// A full `200` came where a range was asked. `etag` is the response's `ETag`.
    FullResponse {
        etag: Option<String>,
    },
    /// The server's idea of the file differs from ours (416, another total size, another ETag on
    /// a full response): the file must be resolved again and restarted.
    Changed {
        reason: String,
    },
    Cancelled,
    Error(DownloadError),
}

impl From<DownloadError> for TransferFailure {
    fn from(error: DownloadError) -> Self {
        TransferFailure::Error(error)
    }
}

/// Per-file progress shared by the scheduler, the segment tasks and the committer.
pub(crate) struct Shared {
    state: Mutex<State>,
    notify: Notify,
    hasher: Mutex<Option<PrefixHasher>>,
    /// Connections receiving a body now, and the body bytes received in all: what the
    /// connection ramp measures.
    streaming: std::sync::atomic::AtomicUsize,
    received: AtomicU64,
}

/// Counts a connection as streaming while it lives.
struct Receiving<'a>(&'a Shared);

impl<'a> Receiving<'a> {
    fn start(shared: &'a Shared) -> Self {
        shared.streaming.fetch_add(1, Ordering::SeqCst);
        Receiving(shared)
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.0.streaming.fetch_sub(1, Ordering::SeqCst);
    }
}

struct State {
    queue: VecDeque<Arc<Segment>>,
    active: Vec<Arc<Segment>>,
    open_segments: Vec<u32>,
    written: Vec<bool>,
    recorded: Vec<bool>,
    recorded_count: u64,
    /// Index of the first chunk not recorded: chunks before it form the done prefix.
    prefix_chunks: u64,
    /// Bytes from each chunk's start already on disk from a recorded prefix (a resume), used
    /// once, when the chunks are first queued.
    resume_from: Vec<u64>,
    failures: u32,
    bytes_on_disk: u64,
    last_progress: Instant,
    error: Option<DownloadError>,
    /// Rates (bytes per second) of the last segments that finished: the yardstick for a lone
    /// straggler at the end of the file.
    finished_rates: VecDeque<f64>,
}

impl State {
    /// Marks `chunk` written and sends it to the committer, once.
    fn hand_to_committer(&mut self, chunk: u64, committer: &mpsc::UnboundedSender<u64>) {
        if !self.written[chunk as usize] {
            self.written[chunk as usize] = true;
            let _ = committer.send(chunk);
        }
    }
}

/// How many finished segments' rates are remembered.
const FINISHED_RATES: usize = 16;

impl Shared {
    /// Progress for a file whose chunks `recorded` are on disk already. `hasher` is fed the
    /// contiguous done prefix as it grows.
    /// `partial` gives the recorded prefixes of chunks in flight, `(chunk, bytes)`.
    pub(super) fn new(
        plan: ChunkPlan,
        recorded: Vec<bool>,
        partial: &[(u64, u64)],
        hasher: Option<PrefixHasher>,
    ) -> Arc<Self> {
        let count = plan.count() as usize;
        let mut resume_from = vec![0; count];
        for &(chunk, written) in partial {
            if let Some(slot) = resume_from.get_mut(chunk as usize) {
                *slot = written;
            }
        }
        let bytes_on_disk = (0..plan.count())
            .filter(|&c| recorded[c as usize])
            .map(|c| plan.range(c).end - plan.range(c).start)
            .sum::<u64>()
            + resume_from.iter().sum::<u64>();
        let recorded_count = recorded.iter().filter(|r| **r).count() as u64;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                active: Vec::new(),
                open_segments: vec![0; count],
                written: recorded.clone(),
                recorded,
                recorded_count,
                prefix_chunks: 0,
                resume_from,
                failures: 0,
                bytes_on_disk,
                last_progress: Instant::now(),
                finished_rates: VecDeque::new(),
                error: None,
            }),
            notify: Notify::new(),
            hasher: Mutex::new(hasher),
            streaming: Default::default(),
            received: AtomicU64::new(0),
        });
        let _ = shared.advance_prefix(plan);
        shared
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("transfer state lock")
    }

    /// Queues one whole-chunk segment for every chunk not written yet.
    fn queue_unwritten(&self, plan: ChunkPlan) {
        let mut state = self.lock();
        state.queue.clear();
        let resume_from = std::mem::take(&mut state.resume_from);
        for chunk in 0..plan.count() {
            if !state.written[chunk as usize] {
                let range = plan.range(chunk);
                let from = resume_from.get(chunk as usize).copied().unwrap_or(0);
                let start = (range.start + from).min(range.end);
                state.open_segments[chunk as usize] = 1;
                state.queue.push_back(Segment::new(chunk, start..range.end));
            }
        }
    }

    /// The chunks no path has written yet.
    #[cfg(feature = "xet")]
    pub(super) fn unwritten(&self) -> Vec<u64> {
        let state = self.lock();
        (0..state.written.len() as u64)
            .filter(|&c| !state.written[c as usize])
            .collect()
    }

    pub(super) fn all_recorded(&self, plan: ChunkPlan) -> bool {
        self.lock().recorded_count == plan.count()
    }

    /// The end of the bytes written contiguously from `chunk`'s start: the lowest position of
    /// its segments still open. `None` once none is (the chunk is written).
    fn chunk_prefix_end(&self, chunk: u64) -> Option<u64> {
        let state = self.lock();
        state
            .active
            .iter()
            .chain(&state.queue)
            .filter(|s| s.chunk == chunk)
            .map(|s| s.pos.load(Ordering::SeqCst))
            .min()
    }

    /// The recorded prefix: the first chunk not recorded, and the byte it starts at.
    fn prefix(&self, plan: ChunkPlan) -> (u64, u64) {
        let chunks = self.lock().prefix_chunks;
        let start = if chunks >= plan.count() {
            plan.size
        } else {
            plan.range(chunks).start
        };
        (chunks, start)
    }

    pub(super) fn take_hasher(&self) -> Option<PrefixHasher> {
        self.hasher.lock().expect("hasher lock").take()
    }

    /// Moves the done prefix over the chunks now recorded; returns where it ends.
    fn advance_prefix(&self, plan: ChunkPlan) -> u64 {
        let end = {
            let mut state = self.lock();
            while state.prefix_chunks < plan.count() && state.recorded[state.prefix_chunks as usize]
            {
                state.prefix_chunks += 1;
            }
            if state.prefix_chunks == plan.count() {
                plan.size
            } else {
                plan.range(state.prefix_chunks).start
            }
        };
        if let Some(hasher) = self.hasher.lock().expect("hasher lock").as_ref() {
            hasher.advance(end);
        }
        end
    }

    fn fail(&self, error: DownloadError) {
        self.lock().error.get_or_insert(error);
        self.notify.notify_one();
    }

    fn take_error(&self) -> Option<DownloadError> {
        self.lock().error.take()
    }

    fn failures(&self) -> u32 {
        self.lock().failures
    }

    fn count_failure(&self) -> u32 {
        let mut state = self.lock();
        state.failures += 1;
        state.failures
    }

    pub(super) fn add_bytes(&self, bytes: u64, ctx: &TransferContext, transfer: &BlobTransfer) {
        let event = {
            let mut state = self.lock();
            state.bytes_on_disk = (state.bytes_on_disk + bytes).min(transfer.size());
            let now = Instant::now();
            if now.duration_since(state.last_progress) < PROGRESS_INTERVAL {
                None
            } else {
                state.last_progress = now;
                Some(state.bytes_on_disk)
            }
        };
        if let Some(done) = event {
            ctx.reporter.report(DownloadEvent::Bytes {
                repo: transfer.repo.clone(),
                path: transfer.path.clone(),
                done,
                total: transfer.size(),
            });
        }
    }

    fn pop_queue(&self) -> Option<Arc<Segment>> {
        let mut state = self.lock();
        let segment = state.queue.pop_front()?;
        state.active.push(Arc::clone(&segment));
        Some(segment)
    }

    fn unpop(&self, segment: Arc<Segment>) {
        let mut state = self.lock();
        state.active.retain(|s| !Arc::ptr_eq(s, &segment));
        state.queue.push_front(segment);
    }

    /// Puts a stopped segment's remainder back at the front of the queue; its next attempt
    /// prefers a source other than `avoid` (the one it just failed on).
    fn requeue(&self, segment: &Arc<Segment>, avoid: Option<usize>) {
        let mut state = self.lock();
        state.active.retain(|s| !Arc::ptr_eq(s, segment));
        let pos = segment.pos.load(Ordering::SeqCst);
        let end = segment.end.load(Ordering::SeqCst);
        let mut rest = Segment::new(segment.chunk, pos..end.max(pos));
        Arc::get_mut(&mut rest).expect("a new segment").avoid = avoid;
        state.queue.push_front(rest);
        drop(state);
        self.notify.notify_one();
    }

    /// A segment wrote its last byte: when it was its chunk's last open segment, the chunk goes
    /// to the committer.
    fn segment_finished(&self, segment: &Arc<Segment>, committer: &mpsc::UnboundedSender<u64>) {
        let mut state = self.lock();
        state.active.retain(|s| !Arc::ptr_eq(s, segment));
        if state.finished_rates.len() == FINISHED_RATES {
            state.finished_rates.pop_front();
        }
        state
            .finished_rates
            .push_back(segment.final_rate(Instant::now()));
        let chunk = segment.chunk as usize;
        state.open_segments[chunk] = state.open_segments[chunk].saturating_sub(1);
        if state.open_segments[chunk] == 0 {
            state.hand_to_committer(segment.chunk, committer);
        }
        drop(state);
        self.notify.notify_one();
    }

    /// `chunk` was written whole by another path (a Xet rebuild): it goes to the committer.
    #[cfg(feature = "xet")]
    pub(super) fn hand_over(&self, chunk: u64, committer: &mpsc::UnboundedSender<u64>) {
        self.chunk_written(chunk, committer);
    }

    /// The sequential stream passed the end of `chunk`: it goes to the committer.
    fn chunk_written(&self, chunk: u64, committer: &mpsc::UnboundedSender<u64>) {
        self.lock().hand_to_committer(chunk, committer);
    }

    /// Splits the slowest in-flight segment if it is much slower than the others.
    fn split_slow_tail(&self) -> Option<Arc<Segment>> {
        let mut state = self.lock();
        if !state.queue.is_empty() {
            return None;
        }
        let finished: Vec<f64> = state.finished_rates.iter().copied().collect();
        let candidate = slow_tail_candidate(&state.active, &finished, Instant::now(), MIN_SPLIT)?;
        let upper = candidate.split(MIN_SPLIT)?;
        state.open_segments[upper.chunk as usize] += 1;
        state.active.push(Arc::clone(&upper));
        tracing::debug!(
            chunk = upper.chunk,
            from = upper.pos.load(Ordering::SeqCst),
            to = upper.end.load(Ordering::SeqCst),
            "Splitting a slow segment onto a fresh connection"
        );
        Some(upper)
    }

    fn mark_recorded(&self, chunks: &[u64], ctx: &TransferContext, transfer: &BlobTransfer) {
        let (done, total) = {
            let mut state = self.lock();
            for &chunk in chunks {
                if !state.recorded[chunk as usize] {
                    state.recorded[chunk as usize] = true;
                    state.recorded_count += 1;
                }
            }
            (state.recorded_count, transfer.plan.count())
        };
        let prefix_bytes = self.advance_prefix(transfer.plan);
        for &chunk in chunks {
            ctx.reporter.report(DownloadEvent::ChunkDone {
                repo: transfer.repo.clone(),
                path: transfer.path.clone(),
                index: chunk,
                chunks_done: done,
                chunks_total: total,
                prefix_bytes,
            });
        }
        self.notify.notify_one();
    }
}

/// The task that records one transfer's written chunks, and the channel they are sent on.
struct Committer {
    sender: mpsc::UnboundedSender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Committer {
    fn start(
        ctx: &Arc<TransferContext>,
        transfer: &Arc<BlobTransfer>,
        shared: &Arc<Shared>,
    ) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(commit_loop(
            ctx.clone(),
            transfer.clone(),
            shared.clone(),
            receiver,
        ));
        Committer { sender, task }
    }

    /// Waits until the chunks already sent are recorded, so their progress is kept. Clones of
    /// the sender (in segment tasks) must be dropped first.
    async fn finish(self) {
        drop(self.sender);
        let _ = self.task.await;
    }
}

/// Records chunks another path wrote whole (a Xet rebuild) as the streams' chunks are: in
/// batches, each batch flushed once, checksummed from disk and recorded; a chunk handed over
/// counts as written, so no stream fetches it again.
#[cfg(feature = "xet")]
pub(super) struct WholeChunks(Committer);

#[cfg(feature = "xet")]
impl WholeChunks {
    pub(super) fn start(
        ctx: &Arc<TransferContext>,
        transfer: &Arc<BlobTransfer>,
        shared: &Arc<Shared>,
    ) -> Self {
        WholeChunks(Committer::start(ctx, transfer, shared))
    }

    /// Where written chunks are handed over (see [`Shared::hand_over`]).
    pub(super) fn sender(&self) -> mpsc::UnboundedSender<u64> {
        self.0.sender.clone()
    }

    /// Waits until the chunks handed over are recorded (every sender clone must be dropped
    /// first); the error that stopped the recording, if any.
    pub(super) async fn finish(self, shared: &Shared) -> Result<(), DownloadError> {
        self.0.finish().await;
        shared.take_error().map_or(Ok(()), Err)
    }
}

/// Records written chunks: flush, checksum from disk, one index transaction per batch.
async fn commit_loop(
    ctx: Arc<TransferContext>,
    transfer: Arc<BlobTransfer>,
    shared: Arc<Shared>,
    mut receiver: mpsc::UnboundedReceiver<u64>,
) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while let Ok(chunk) = receiver.try_recv() {
            batch.push(chunk);
        }
        if let Err(error) = commit_batch(&ctx, &transfer, &batch).await {
            shared.fail(error);
            return;
        }
        shared.mark_recorded(&batch, &ctx, &transfer);
    }
}

async fn commit_batch(
    ctx: &TransferContext,
    transfer: &BlobTransfer,
    batch: &[u64],
) -> Result<(), DownloadError> {
    let ranges: Vec<(u64, u64)> = batch
        .iter()
        .map(|&c| {
            let range = transfer.plan.range(c);
            (range.start, range.end)
        })
        .collect();
    let sums = durable_checksums(transfer, ranges).await?;
    let chunks: Vec<DoneChunk> = batch
        .iter()
        .zip(sums)
        .map(|(&index, checksum)| DoneChunk { index, checksum })
        .collect();
    ctx.db.record_done(transfer.job_id, chunks).await
}

/// Flushes the partial file to disk, then reads `ranges` back and returns their checksums: what
/// the index may record as written.
async fn durable_checksums(
    transfer: &BlobTransfer,
    ranges: Vec<(u64, u64)>,
) -> Result<Vec<u32>, DownloadError> {
    transfer
        .writer
        .sync()
        .await
        .map_err(|f| write_error(transfer, f))?;
    transfer
        .writer
        .checksums(ranges)
        .await
        .map_err(|source| DownloadError::Io {
            what: "read back",
            path: transfer.writer.path().to_path_buf(),
            source,
        })
}

/// Turns a write failure into the error the user sees.
pub(crate) fn write_error(transfer: &BlobTransfer, failure: WriteFailure) -> DownloadError {
    match failure {
        WriteFailure::DiskFull => {
            disk_full(transfer.writer.path(), &transfer.path, transfer.size())
        }
        WriteFailure::Io(source) => DownloadError::Io {
            what: "write",
            path: transfer.writer.path().to_path_buf(),
            source,
        },
    }
}

/// A disk-full error for `file`, with the free space of the folder of `path`.
pub(crate) fn disk_full(path: &std::path::Path, file: &str, needed: u64) -> DownloadError {
    let dir = path.parent().unwrap_or(path).to_path_buf();
    let free = fs4::available_space(&dir).unwrap_or(0);
    DownloadError::DiskFull {
        path: file.to_string(),
        dir,
        needed,
        free,
    }
}

/// Runs the chunks not recorded in `shared` over parallel range requests until all are recorded.
pub(crate) async fn run_parallel(
    ctx: Arc<TransferContext>,
    transfer: Arc<BlobTransfer>,
    shared: Arc<Shared>,
) -> Result<(), TransferFailure> {
    let plan = transfer.plan;
    shared.queue_unwritten(plan);
    let committer = Committer::start(&ctx, &transfer, &shared);
    let sender = &committer.sender;
    let mut tasks: JoinSet<Result<SegmentEnd, TransferFailure>> = JoinSet::new();
    let mut paused_reported = false;
    let mut ramp = super::ramp::Ramp::new(ctx.start_connections, ctx.limits.max_connections());
    let result: Result<(), TransferFailure> = loop {
        if let Some(error) = shared.take_error() {
            break Err(error.into());
        }
        if shared.all_recorded(plan) {
            break Ok(());
        }
        if ctx.control.is_cancelled() {
            break Err(TransferFailure::Cancelled);
        }
        if ctx.control.is_paused() {
            if tasks.is_empty() {
                if !paused_reported {
                    paused_reported = true;
                    ctx.reporter.report(DownloadEvent::Paused {
                        repo: transfer.repo.clone(),
                    });
                }
                tokio::select! {
                    _ = ctx.control.running() => {}
                    _ = shared.notify.notified() => {}
                }
                continue;
            }
        } else if paused_reported {
            paused_reported = false;
            ctx.reporter.report(DownloadEvent::Resumed {
                repo: transfer.repo.clone(),
            });
        }
        if let Some(now) = ramp.observe(
            Instant::now(),
            shared.streaming.load(Ordering::SeqCst),
            shared.received.load(Ordering::SeqCst),
        ) {
            tracing::debug!(path = %transfer.path, connections = now, "Connections for a file");
        }
        let room = tasks.len() < ramp.allowed();
        if !ctx.control.is_paused()
            && room
            && let Some(segment) = shared.pop_queue()
        {
            let Some(source) = transfer.sources.pick(segment.avoid) else {
                shared.unpop(segment);
                break Err(every_source_failed(&transfer, &shared).into());
            };
            let host = transfer.sources.get(source).host().to_string();
            enum Wait {
                Permit(ConnectionPermit),
                Joined(Option<TransferFailure>),
                Cancelled,
                Paused,
            }
            let waited = tokio::select! {
                permit = ctx.limits.connection(&host) => Wait::Permit(permit),
                Some(joined) = tasks.join_next() => Wait::Joined(joined_failure(joined)),
                _ = ctx.control.cancelled() => Wait::Cancelled,
                _ = ctx.control.paused() => Wait::Paused,
            };
            match waited {
                Wait::Permit(permit) => {
                    let started = Started { source, permit };
                    spawn_segment(
                        &mut tasks, &ctx, &transfer, &shared, segment, started, sender,
                    );
                }
                Wait::Joined(failure) => {
                    shared.unpop(segment);
                    if let Some(failure) = failure {
                        break Err(failure);
                    }
                }
                Wait::Cancelled => break Err(TransferFailure::Cancelled),
                Wait::Paused => shared.unpop(segment),
            }
            continue;
        }
        // Nothing queued: a free connection to the fastest source may take over half of a
        // straggler's range.
        if !ctx.control.is_paused()
            && room
            && !tasks.is_empty()
            && let Some(source) = transfer.sources.fastest()
            && let Some(permit) = ctx
                .limits
                .connection(transfer.sources.get(source).host())
                .now_or_never()
        {
            if let Some(segment) = shared.split_slow_tail() {
                let started = Started { source, permit };
                spawn_segment(
                    &mut tasks, &ctx, &transfer, &shared, segment, started, sender,
                );
                continue;
            }
            drop(permit);
        }
        tokio::select! {
            Some(joined) = tasks.join_next() => {
                if let Some(failure) = joined_failure(joined) {
                    break Err(failure);
                }
            }
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep(TAIL_CHECK) => {}
            _ = ctx.control.cancelled() => break Err(TransferFailure::Cancelled),
        }
    };
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    committer.finish().await;
    match (result, shared.take_error()) {
        (Ok(()), Some(error)) => Err(error.into()),
        (result, _) => result,
    }
}

fn joined_failure(
    joined: Result<Result<SegmentEnd, TransferFailure>, tokio::task::JoinError>,
) -> Option<TransferFailure> {
    match joined {
        Ok(Ok(_)) => None,
        Ok(Err(failure)) => Some(failure),
        Err(error) if error.is_cancelled() => None,
        Err(error) => Some(TransferFailure::Error(DownloadError::Io {
            what: "run a transfer task for",
            path: Default::default(),
            source: std::io::Error::other(error.to_string()),
        })),
    }
}

/// The error when no source of a file is left.
fn every_source_failed(transfer: &BlobTransfer, shared: &Shared) -> DownloadError {
    DownloadError::RetriesExhausted {
        repo: transfer.repo.clone(),
        path: transfer.path.clone(),
        attempts: shared.failures(),
        last: format!(
            "every source of the file failed ({} tried)",
            transfer.sources.len()
        ),
    }
}

/// A segment about to start: the source it asks and a connection permit for that source's host.
struct Started {
    source: usize,
    permit: ConnectionPermit,
}

fn spawn_segment(
    tasks: &mut JoinSet<Result<SegmentEnd, TransferFailure>>,
    ctx: &Arc<TransferContext>,
    transfer: &Arc<BlobTransfer>,
    shared: &Arc<Shared>,
    segment: Arc<Segment>,
    started: Started,
    committer: &mpsc::UnboundedSender<u64>,
) {
    let (ctx, transfer, shared, committer) = (
        ctx.clone(),
        transfer.clone(),
        shared.clone(),
        committer.clone(),
    );
    transfer.sources.begin(started.source);
    tasks.spawn(async move {
        let _permit = started.permit;
        // Counted on its source until it ends, however it ends (an abort drops the guard).
        let _streaming = Streaming {
            transfer: &transfer,
            source: started.source,
        };
        run_segment(
            &ctx,
            &transfer,
            &shared,
            segment,
            started.source,
            &committer,
        )
        .await
    });
}

/// A segment streaming from `source`; ends the count [`Sources::begin`] started when dropped.
struct Streaming<'a> {
    transfer: &'a BlobTransfer,
    source: usize,
}

impl Drop for Streaming<'_> {
    fn drop(&mut self) {
        self.transfer.sources.end(self.source);
    }
}

enum SegmentEnd {
    Done,
    Paused,
    /// The source failed; the rest of the segment goes back to the queue for another source.
    Switch {
        failed: usize,
    },
}

enum StreamEnd {
    Complete,
    Eof,
    Stalled,
    Failed(String),
    Paused,
}

/// The next piece of a response body (counted as downloaded), or how the stream ended: no
/// bytes for the stall timeout, a lost connection, the end of the body, or a pause (when
/// `pausable`). A cancel ends the transfer.
async fn next_bytes(
    ctx: &TransferContext,
    body: &mut FileBody,
    pausable: bool,
) -> Result<Result<bytes::Bytes, StreamEnd>, TransferFailure> {
    let next = tokio::select! {
        biased;
        _ = ctx.control.cancelled() => return Err(TransferFailure::Cancelled),
        _ = ctx.control.paused(), if pausable => return Ok(Err(StreamEnd::Paused)),
        next = tokio::time::timeout(ctx.stall, body.chunk()) => next,
    };
    Ok(match next {
        Err(_) | Ok(Err(BodyError::Timeout)) => Err(StreamEnd::Stalled),
        Ok(Err(BodyError::Failed(reason))) => Err(StreamEnd::Failed(reason)),
        Ok(Ok(None)) => Err(StreamEnd::Eof),
        Ok(Ok(Some(bytes))) => {
            ctx.downloaded
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            Ok(bytes)
        }
    })
}

/// A response body as the file's bytes: as sent, or decoded from a paired peer's compressed
/// encoding (`crate::peers::planes`), which hands out whole blocks only, so a connection lost
/// mid-block costs that block and the next request starts from the last byte written.
enum FileBody {
    Plain(reqwest::Response),
    Planes {
        response: reqwest::Response,
        /// `None` once the body ended.
        decoder: Option<crate::peers::planes::Decoder>,
        /// Compressed bytes received.
        wire: u64,
    },
}

/// Why a body gave no bytes.
enum BodyError {
    Timeout,
    Failed(String),
}

impl FileBody {
    fn new(response: RangeResponse) -> Result<FileBody, String> {
        if !response.planes {
            return Ok(FileBody::Plain(response.body));
        }
        let decoder =
            crate::peers::planes::Decoder::new().map_err(|e| format!("cannot decompress: {e}"))?;
        Ok(FileBody::Planes {
            response: response.body,
            decoder: Some(decoder),
            wire: 0,
        })
    }

    /// Compressed bytes received, for a compressed body.
    fn wire_bytes(&self) -> Option<u64> {
        match self {
            FileBody::Plain(_) => None,
            FileBody::Planes { wire, .. } => Some(*wire),
        }
    }

    /// The next bytes of the file, `None` at the end of the body. Cancel-safe: nothing is
    /// lost when the future is dropped at its one await.
    async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, BodyError> {
        fn lost(error: reqwest::Error) -> BodyError {
            if error.is_timeout() {
                BodyError::Timeout
            } else {
                BodyError::Failed(format!("connection lost: {}", error.without_url()))
            }
        }
        match self {
            FileBody::Plain(response) => response.chunk().await.map_err(lost),
            FileBody::Planes {
                response,
                decoder,
                wire,
            } => loop {
                if decoder.is_none() {
                    return Ok(None);
                }
                let next = response.chunk().await.map_err(lost)?;
                let Some(active) = decoder.as_mut() else {
                    return Ok(None);
                };
                let decoded = match next {
                    Some(compressed) => {
                        *wire += compressed.len() as u64;
                        active.push(&compressed)
                    }
                    None => decoder.take().expect("decoder").finish(),
                };
                let decoded =
                    decoded.map_err(|e| BodyError::Failed(format!("compressed body: {e}")))?;
                if !decoded.is_empty() {
                    return Ok(Some(decoded));
                }
            },
        }
    }
}

/// `If-Range` wants an entity tag in quotes.
fn quoted(validator: &str) -> String {
    format!("\"{validator}\"")
}

/// What a connection asks for: a byte range with its `If-Range` validator, or (both `None`) the
/// whole body.
struct Asked {
    range: Option<Range<u64>>,
    if_range: Option<String>,
}

/// Whether a response head carries the bytes the stream asked for.
enum Head {
    /// Read its body.
    Stream,
    /// Drop it and try again after a backoff (a failed attempt, for this reason).
    Retry(String),
}

/// What differs between the two ways bytes reach the file: one [`Segment`] of a ranged
/// transfer, or the whole file from byte 0 when the server ignores `Range`. The streaming loop
/// itself ([`stream`]) is the same for both.
trait StreamTarget {
    /// Whether a pause ends the stream (a segment is requeued and later reconnects from the byte
    /// it reached), or is waited out before connecting and ignored while streaming (a stream
    /// that cannot resume is not cut).
    const PAUSABLE: bool;
    /// What the stream covers, for the message when a connection closes early.
    const COVERS: &'static str;

    /// The cursor the bytes are written at: `pos` advances with every write, up to `end`.
    fn segment(&self) -> &Arc<Segment>;

    /// The source it streams from (an index into the file's sources).
    fn source(&self) -> usize;

    /// The one chunk its bytes belong to, when it writes within one chunk (a ranged segment).
    fn chunk(&self) -> Option<u64> {
        None
    }

    /// Prepares a new connection and says what it asks for.
    fn connect(&mut self, transfer: &BlobTransfer) -> Asked;

    /// Checks a response head before its body is read.
    fn check(
        &self,
        transfer: &BlobTransfer,
        asked: &Asked,
        response: &RangeResponse,
    ) -> Result<Head, TransferFailure>;

    /// Called after each write, with the segment's `pos` advanced.
    fn written(&mut self, shared: &Shared);

    /// Bytes at the start of the response just checked that are already on disk: read and
    /// dropped, never written again.
    fn skip(&self) -> u64 {
        0
    }

    /// Records how far the target's chunk is written, when it is time (see [`Checkpoint`]).
    async fn checkpoint(
        &mut self,
        _: &TransferContext,
        _: &BlobTransfer,
        _: &Shared,
    ) -> Result<(), TransferFailure> {
        Ok(())
    }
}

/// One segment of a ranged transfer: reconnects ask for the bytes from `pos` to `end` with
/// `If-Range`, so a dropped connection costs no byte fetched twice.
struct RangedSegment {
    segment: Arc<Segment>,
    /// The source it asks (an index into the file's sources).
    source: usize,
    /// When the last checkpoint was taken, and the position then.
    checkpointed: (Instant, u64),
}

impl StreamTarget for RangedSegment {
    const PAUSABLE: bool = true;
    const COVERS: &'static str = "range";

    fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    fn chunk(&self) -> Option<u64> {
        Some(self.segment.chunk)
    }

    fn source(&self) -> usize {
        self.source
    }

    fn connect(&mut self, transfer: &BlobTransfer) -> Asked {
        let pos = self.segment.pos.load(Ordering::SeqCst);
        let end = self.segment.end.load(Ordering::SeqCst);
        Asked {
            range: Some(pos..end),
            if_range: Some(quoted(&transfer.validator())),
        }
    }

    fn check(
        &self,
        transfer: &BlobTransfer,
        asked: &Asked,
        response: &RangeResponse,
    ) -> Result<Head, TransferFailure> {
        if !response.partial {
            if response.status == 200 {
                return Err(TransferFailure::FullResponse {
                    etag: response.etag.clone(),
                });
            }
            let Range { start, end } = asked.range.clone().unwrap_or_default();
            return Ok(Head::Retry(format!(
                "status {} with Content-Range {:?} for bytes {start}-{end}",
                response.status, response.content_range
            )));
        }
        if let Some((_, _, Some(total))) = response.content_range
            && total != transfer.size()
        {
            return Err(TransferFailure::Changed {
                reason: format!(
                    "the server reports {total} bytes, expected {}",
                    transfer.size()
                ),
            });
        }
        Ok(Head::Stream)
    }

    fn written(&mut self, _: &Shared) {}

    async fn checkpoint(
        &mut self,
        ctx: &TransferContext,
        transfer: &BlobTransfer,
        shared: &Shared,
    ) -> Result<(), TransferFailure> {
        let pos = self.segment.pos.load(Ordering::SeqCst);
        let (at, from) = self.checkpointed;
        if at.elapsed() < ctx.checkpoint.every || pos.saturating_sub(from) < ctx.checkpoint.bytes {
            return Ok(());
        }
        self.checkpointed = (Instant::now(), pos);
        let chunk = self.segment.chunk;
        let start = transfer.plan.range(chunk).start;
        let Some(end) = shared.chunk_prefix_end(chunk).filter(|&end| end > start) else {
            return Ok(());
        };
        // Bytes below `end` were written before the positions advanced; the fsync makes them
        // durable before the index says they are there.
        let sums = durable_checksums(transfer, vec![(start, end)]).await?;
        let chunk = PartialChunk {
            index: chunk,
            written: end - start,
            checksum: sums.first().copied().unwrap_or_default(),
        };
        ctx.db.record_partial(transfer.job_id, chunk).await?;
        Ok(())
    }
}

/// The whole file in one stream, for servers that ignore `Range`: every connection receives
/// the file from byte 0, and each chunk goes to the committer as the stream passes its end.
/// Bytes already on disk (the recorded prefix a resume starts from, or what an earlier
/// connection wrote) are read and dropped, never written again: the prefix hasher has hashed
/// them, and a second pass that brought other bytes would leave a file its hash no longer
/// describes.
struct WholeFile<'a> {
    segment: Arc<Segment>,
    /// The source it streams from, the whole way: the first still in use.
    source: usize,
    plan: ChunkPlan,
    /// The first chunk this connection has not passed yet.
    next_chunk: u64,
    /// Bytes of the current response to drop (see [`StreamTarget::skip`]).
    skip: u64,
    committer: &'a mpsc::UnboundedSender<u64>,
}

impl StreamTarget for WholeFile<'_> {
    const PAUSABLE: bool = false;
    const COVERS: &'static str = "file";

    fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    fn source(&self) -> usize {
        self.source
    }

    fn connect(&mut self, _: &BlobTransfer) -> Asked {
        // The response starts at byte 0 again; writing resumes where the last one stopped.
        let reached = self.segment.pos.load(Ordering::SeqCst);
        self.segment = Segment::new(0, reached..self.plan.size);
        self.skip = reached;
        Asked {
            range: None,
            if_range: None,
        }
    }

    fn check(
        &self,
        transfer: &BlobTransfer,
        _: &Asked,
        response: &RangeResponse,
    ) -> Result<Head, TransferFailure> {
        if let Some(etag) = &response.etag
            && *etag != transfer.validator()
            && *etag != transfer.etag
        {
            return Err(TransferFailure::Changed {
                reason: format!("the server now sends ETag `{etag}`"),
            });
        }
        if let Some(length) = response.content_length
            && length != self.plan.size
        {
            return Err(TransferFailure::Changed {
                reason: format!(
                    "the server now sends {length} bytes, expected {}",
                    self.plan.size
                ),
            });
        }
        Ok(Head::Stream)
    }

    fn written(&mut self, shared: &Shared) {
        let pos = self.segment.pos.load(Ordering::SeqCst);
        while self.next_chunk < self.plan.count() && self.plan.range(self.next_chunk).end <= pos {
            shared.chunk_written(self.next_chunk, self.committer);
            self.next_chunk += 1;
        }
    }

    fn skip(&self) -> u64 {
        self.skip
    }
}

/// Fetches one segment, reconnecting from the byte reached after drops and stalls.
async fn run_segment(
    ctx: &TransferContext,
    transfer: &BlobTransfer,
    shared: &Shared,
    segment: Arc<Segment>,
    source: usize,
    committer: &mpsc::UnboundedSender<u64>,
) -> Result<SegmentEnd, TransferFailure> {
    let mut target = RangedSegment {
        checkpointed: (Instant::now(), segment.pos.load(Ordering::SeqCst)),
        segment: Arc::clone(&segment),
        source,
    };
    let end = stream(ctx, transfer, shared, &mut target).await?;
    match end {
        SegmentEnd::Done => shared.segment_finished(&segment, committer),
        SegmentEnd::Paused => shared.requeue(&segment, None),
        SegmentEnd::Switch { failed } => shared.requeue(&segment, Some(failed)),
    }
    Ok(end)
}

/// The one streaming loop: connects, checks the response head, streams the body in buffer-sized
/// pieces into positional writes under the bandwidth limit, and reconnects after drops and
/// stalls, counting failures against the retry budgets, until the target's segment is written
/// (or paused, for a pausable target). A cancel ends it at once.
///
/// When the file has another source still in use, a ranged segment does not retry a failed
/// source itself: it counts the failure against the source ([`leave_source`]) and ends with
/// [`SegmentEnd::Switch`], and the scheduler gives its rest to another source. With one source
/// (or the whole-file stream) failures are retried here, on the same source.
async fn stream<T: StreamTarget>(
    ctx: &TransferContext,
    transfer: &BlobTransfer,
    shared: &Shared,
    target: &mut T,
) -> Result<SegmentEnd, TransferFailure> {
    let capacity = ctx.limits.buffer_size();
    let mut buffer = Vec::with_capacity(capacity);
    let mut attempt = 0u32;
    let mut stalls = 0u32;
    let source = target.source();
    // Whether a failure moves the segment to another source rather than retrying this one.
    let switchable = || T::PAUSABLE && transfer.sources.has_alternative(source);
    loop {
        let pos = target.segment().pos.load(Ordering::SeqCst);
        let end = target.segment().end.load(Ordering::SeqCst);
        if pos >= end {
            return Ok(SegmentEnd::Done);
        }
        if !T::PAUSABLE {
            ctx.control.running().await;
        }
        let asked = target.connect(transfer);
        let url = transfer.sources.get(source).url();
        let connected = Instant::now();
        let sharing = transfer.sources.active(source);
        // A paired peer is asked for compressed bytes of a safetensors file when the user
        // turned it on and its link is not too fast for it to pay.
        let planes = asked.range.is_some()
            && matches!(&transfer.sources.get(source).kind,
                SourceKind::Peer(peer) if peer.asks_compressed(&transfer.path));
        let request = transfer
            .sources
            .get(source)
            .client(&ctx.hub)
            .get_range_encoded(&url, asked.range.clone(), asked.if_range.as_deref(), planes);
        let response = tokio::select! {
            biased;
            _ = ctx.control.cancelled() => return Err(TransferFailure::Cancelled),
            _ = ctx.control.paused(), if T::PAUSABLE => return Ok(SegmentEnd::Paused),
            response = tokio::time::timeout(ctx.stall, request) => response,
        };
        let response = match response {
            Err(_) if switchable() => {
                let reason = format!("no answer for {} s", ctx.stall.as_secs_f32());
                return leave_source(ctx, transfer, shared, source, reason, false).await;
            }
            Err(_) => {
                stalled(ctx, transfer, shared, &mut stalls, &mut attempt).await?;
                continue;
            }
            Ok(Err(HubError::RangeNotSatisfiable { total, .. })) if asked.range.is_some() => {
                let reason = format!(
                    "the server cannot serve bytes {pos}-{end} (416, size {})",
                    total
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "unknown".into())
                );
                if switchable() {
                    return leave_source(ctx, transfer, shared, source, reason, true).await;
                }
                return Err(TransferFailure::Changed { reason });
            }
            Ok(Err(error @ HubError::DownloadUrlRefused { .. })) => {
                // An expired link is renewed at once; a fresh one refused again and again is
                // a failure like any other.
                attempt += 1;
                if attempt >= ctx.retry.max_attempts.max(1) {
                    if switchable() {
                        let reason = error.to_string();
                        return leave_source(ctx, transfer, shared, source, reason, true).await;
                    }
                    return Err(DownloadError::Hub {
                        repo: transfer.repo.clone(),
                        path: transfer.path.clone(),
                        source: Box::new(error),
                    }
                    .into());
                }
                match transfer.renew_url(ctx, source, &url).await {
                    Ok(()) => {}
                    Err(failure) if switchable() => {
                        let reason = failure_reason(&failure);
                        return leave_source(ctx, transfer, shared, source, reason, true).await;
                    }
                    Err(failure) => return Err(failure),
                }
                continue;
            }
            Ok(Err(error)) if switchable() => {
                let fatal = matches!(error.decision(), Decision::Fatal);
                let reason = error.to_string();
                return leave_source(ctx, transfer, shared, source, reason, fatal).await;
            }
            Ok(Err(error)) => {
                retry_hub_error(ctx, transfer, shared, error, &mut attempt).await?;
                continue;
            }
            Ok(Ok(response)) => response,
        };
        match target.check(transfer, &asked, &response) {
            Ok(Head::Stream) => {}
            Ok(Head::Retry(reason)) if switchable() => {
                return leave_source(ctx, transfer, shared, source, reason, false).await;
            }
            Ok(Head::Retry(reason)) => {
                attempt += 1;
                retry_wait(ctx, transfer, shared, reason, attempt, None).await?;
                continue;
            }
            Err(
                failure @ (TransferFailure::Changed { .. } | TransferFailure::FullResponse { .. }),
            ) if switchable() => {
                let reason = failure_reason(&failure);
                return leave_source(ctx, transfer, shared, source, reason, true).await;
            }
            Err(failure) => return Err(failure),
        }
        let segment = Arc::clone(target.segment());
        let mut skip = target.skip();
        let mut noted = false;
        let mut body = match FileBody::new(response) {
            Ok(body) => body,
            Err(reason) if switchable() => {
                return leave_source(ctx, transfer, shared, source, reason, false).await;
            }
            Err(reason) => {
                attempt += 1;
                retry_wait(ctx, transfer, shared, reason, attempt, None).await?;
                continue;
            }
        };
        let from = segment.pos.load(Ordering::SeqCst);
        let receiving = Receiving::start(shared);
        let outcome = loop {
            let bytes = match next_bytes(ctx, &mut body, T::PAUSABLE).await? {
                Ok(bytes) => bytes,
                Err(end) => break end,
            };
            shared
                .received
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            let mut piece: &[u8] = &bytes;
            if skip > 0 {
                let dropped = skip.min(piece.len() as u64);
                ctx.limits.bandwidth().acquire(dropped).await;
                piece = &piece[dropped as usize..];
                skip -= dropped;
                stalls = 0;
            }
            while !piece.is_empty() {
                let write_pos = segment.pos.load(Ordering::SeqCst) + buffer.len() as u64;
                let end = segment.end.load(Ordering::SeqCst);
                let take = end
                    .saturating_sub(write_pos)
                    .min(piece.len() as u64)
                    .min((capacity - buffer.len()) as u64) as usize;
                if take == 0 {
                    break;
                }
                ctx.limits.bandwidth().acquire(take as u64).await;
                buffer.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                attempt = 0;
                stalls = 0;
                if buffer.len() >= capacity || write_pos + take as u64 >= end {
                    buffer = flush(ctx, transfer, shared, &segment, buffer).await?;
                    if let Some(chunk) = target.chunk().filter(|_| !noted) {
                        transfer.note_served(chunk, source);
                        noted = true;
                    }
                    target.written(shared);
                    target.checkpoint(ctx, transfer, shared).await?;
                }
            }
            if segment.pos.load(Ordering::SeqCst) + buffer.len() as u64
                >= segment.end.load(Ordering::SeqCst)
            {
                break StreamEnd::Complete;
            }
        };
        drop(receiving);
        buffer = flush(ctx, transfer, shared, &segment, buffer).await?;
        target.written(shared);
        let served = segment.pos.load(Ordering::SeqCst).saturating_sub(from);
        transfer.sources.served(source, served);
        let reason = match outcome {
            StreamEnd::Complete => {
                // The connections the source had while this one streamed, on average.
                let sharing = (sharing + transfer.sources.active(source)) as f64 / 2.0;
                transfer
                    .sources
                    .finished(source, served, connected.elapsed(), sharing);
                if let (Some(wire), SourceKind::Peer(peer)) =
                    (body.wire_bytes(), &transfer.sources.get(source).kind)
                {
                    judge_link(
                        peer,
                        &transfer.path,
                        served,
                        wire,
                        connected.elapsed(),
                        sharing,
                    );
                }
                continue;
            }
            StreamEnd::Paused => return Ok(SegmentEnd::Paused),
            StreamEnd::Stalled if switchable() => {
                format!("no data for {} s", ctx.stall.as_secs_f32())
            }
            StreamEnd::Stalled => {
                stalled(ctx, transfer, shared, &mut stalls, &mut attempt).await?;
                continue;
            }
            StreamEnd::Eof => {
                if segment.pos.load(Ordering::SeqCst) >= segment.end.load(Ordering::SeqCst) {
                    continue;
                }
                format!("the connection closed before the {} ended", T::COVERS)
            }
            StreamEnd::Failed(reason) => reason,
        };
        if switchable() {
            return leave_source(ctx, transfer, shared, source, reason, false).await;
        }
        attempt += 1;
        retry_wait(ctx, transfer, shared, reason, attempt, None).await?;
    }
}

/// After a compressed response from a peer: when its link carried more than
/// [`super::source::FAST_LINK`] (the response's wire rate times the connections sharing it), the
/// peer is not asked to compress again in this process: on such a link compressing costs more
/// time than it saves.
fn judge_link(
    peer: &super::source::PeerSource,
    path: &str,
    served: u64,
    wire: u64,
    elapsed: Duration,
    sharing: f64,
) {
    let rate = link_rate(wire, elapsed, sharing);
    tracing::debug!(
        path,
        peer = %crate::peers::peer_id(&peer.fingerprint),
        served,
        wire,
        rate,
        "A compressed range from a peer"
    );
    if rate.is_some_and(|rate| rate > super::source::FAST_LINK) {
        peer.fast_link.store(true, Ordering::Relaxed);
        tracing::info!(
            peer = %crate::peers::peer_id(&peer.fingerprint),
            rate_mb_s = rate.unwrap_or_default() / 1e6,
            "The link to a peer is faster than compression pays for; its transfers are no longer compressed"
        );
    }
}

/// Bytes per second a peer's link carried during one compressed response: its wire bytes over
/// its time, times the connections sharing the link; `None` for a response too short (under
/// 1 MiB on the wire) to say anything about the link.
fn link_rate(wire: u64, elapsed: Duration, sharing: f64) -> Option<f64> {
    (wire >= 1 << 20).then(|| wire as f64 / elapsed.as_secs_f64().max(1e-3) * sharing.max(1.0))
}

/// What a failure says about the source that caused it, for the message when it is left.
fn failure_reason(failure: &TransferFailure) -> String {
    match failure {
        TransferFailure::FullResponse { .. } => {
            "a full response where a range was asked (it ignores `Range` or has other content)"
                .to_string()
        }
        TransferFailure::Changed { reason } => reason.clone(),
        TransferFailure::Cancelled => "cancelled".to_string(),
        TransferFailure::Error(error) => error.to_string(),
    }
}

/// A ranged segment's source failed while another source is in use: the failure counts against
/// the file's budget and the source (which is dropped for the file when `fatal`, or after
/// `max_attempts` failures in a row), and the segment ends with [`SegmentEnd::Switch`] so its
/// rest goes to another source, at once (the other source has not failed: no backoff).
async fn leave_source(
    ctx: &TransferContext,
    transfer: &BlobTransfer,
    shared: &Shared,
    source: usize,
    reason: String,
    fatal: bool,
) -> Result<SegmentEnd, TransferFailure> {
    let total = shared.count_failure();
    if total > ctx.retry.file_budget {
        return Err(DownloadError::RetriesExhausted {
            repo: transfer.repo.clone(),
            path: transfer.path.clone(),
            attempts: total,
            last: reason,
        }
        .into());
    }
    let sources = &transfer.sources;
    let name = sources.get(source).name();
    let dropped = if fatal {
        sources.drop_source(source);
        true
    } else {
        sources.failed(source, ctx.retry.max_attempts)
    };
    if dropped {
        tracing::warn!(path = %transfer.path, source = %name, %reason, "Dropping a source for this file");
    } else {
        tracing::debug!(path = %transfer.path, source = %name, %reason, "A source failed; the segment moves to another");
    }
    ctx.reporter.report(DownloadEvent::Retrying {
        repo: transfer.repo.clone(),
        path: transfer.path.clone(),
        reason: format!("{name}: {reason}; trying another source"),
        attempt: total,
    });
    Ok(SegmentEnd::Switch { failed: source })
}

/// A stall is not a failed attempt: the connection is replaced at once. Only a long run of stalls
/// with no byte in between counts against the budgets.
async fn stalled(
    ctx: &TransferContext,
    transfer: &BlobTransfer,
    shared: &Shared,
    stalls: &mut u32,
    attempt: &mut u32,
) -> Result<(), TransferFailure> {
    *stalls += 1;
    tracing::debug!(path = %transfer.path, stalls = *stalls, "No bytes for the stall timeout; reconnecting");
    if *stalls > ctx.retry.max_attempts.max(1) * 2 {
        *stalls = 0;
        *attempt += 1;
        let reason = format!("no data for {} s, repeatedly", ctx.stall.as_secs_f32());
        return retry_wait(ctx, transfer, shared, reason, *attempt, None).await;
    }
    Ok(())
}

/// Waits before the next attempt after a failed request, or ends the transfer when the error
/// is fatal or the attempts are used up.
async fn retry_hub_error(
    ctx: &TransferContext,
    transfer: &BlobTransfer,
    shared: &Shared,
    error: HubError,
    attempt: &mut u32,
) -> Result<(), TransferFailure> {
    let after = match error.decision() {
        Decision::Retry { after } => after,
        Decision::Fatal => {
            return Err(DownloadError::Hub {
                repo: transfer.repo.clone(),
                path: transfer.path.clone(),
                source: Box::new(error),
            }
            .into());
        }
    };
    *attempt += 1;
    retry_wait(ctx, transfer, shared, error.to_string(), *attempt, after).await
}

/// Counts a failed attempt against the segment's and the file's budgets, reports it, and waits
/// the backoff (or the server's `Retry-After`).
async fn retry_wait(
    ctx: &TransferContext,
    transfer: &BlobTransfer,
    shared: &Shared,
    reason: String,
    attempt: u32,
    after: Option<Duration>,
) -> Result<(), TransferFailure> {
    let total = shared.count_failure();
    let too_long = after.is_some_and(|after| after > ctx.retry.max_retry_after);
    if attempt >= ctx.retry.max_attempts.max(1) || total > ctx.retry.file_budget || too_long {
        return Err(DownloadError::RetriesExhausted {
            repo: transfer.repo.clone(),
            path: transfer.path.clone(),
            attempts: total,
            last: reason,
        }
        .into());
    }
    tracing::debug!(path = %transfer.path, attempt, %reason, "Retrying a range request");
    ctx.reporter.report(DownloadEvent::Retrying {
        repo: transfer.repo.clone(),
        path: transfer.path.clone(),
        reason,
        attempt,
    });
    let delay = after.unwrap_or_else(|| backoff(&ctx.retry, attempt));
    tokio::select! {
        _ = tokio::time::sleep(delay) => Ok(()),
        _ = ctx.control.cancelled() => Err(TransferFailure::Cancelled),
    }
}

/// Writes the buffered bytes at the segment's position and advances it.
async fn flush(
    ctx: &TransferContext,
    transfer: &BlobTransfer,
    shared: &Shared,
    segment: &Segment,
    buffer: Vec<u8>,
) -> Result<Vec<u8>, TransferFailure> {
    if buffer.is_empty() {
        return Ok(buffer);
    }
    let offset = segment.pos.load(Ordering::SeqCst);
    let len = buffer.len() as u64;
    let buffer = transfer
        .writer
        .write_at(buffer, offset)
        .await
        .map_err(|f| write_error(transfer, f))?;
    segment.pos.store(offset + len, Ordering::SeqCst);
    shared.add_bytes(len, ctx, transfer);
    Ok(buffer)
}

/// Downloads the whole file in one stream from byte 0, for servers that ignore `Range`. Chunks
/// are recorded as the stream passes their ends, so progress still survives a crash (a resume
/// against such a server starts over anyway, but a later server may honour ranges).
pub(crate) async fn run_sequential(
    ctx: Arc<TransferContext>,
    transfer: Arc<BlobTransfer>,
    shared: Arc<Shared>,
) -> Result<(), TransferFailure> {
    let plan = transfer.plan;
    let committer = Committer::start(&ctx, &transfer, &shared);
    let result = sequential_stream(&ctx, &transfer, &shared, &committer.sender).await;
    committer.finish().await;
    if let Some(error) = shared.take_error() {
        return Err(error.into());
    }
    result?;
    if shared.all_recorded(plan) {
        Ok(())
    } else {
        Err(DownloadError::Protocol {
            repo: transfer.repo.clone(),
            path: transfer.path.clone(),
            reason: "the stream ended before every chunk was recorded".into(),
        }
        .into())
    }
}

async fn sequential_stream(
    ctx: &TransferContext,
    transfer: &BlobTransfer,
    shared: &Shared,
    committer: &mpsc::UnboundedSender<u64>,
) -> Result<(), TransferFailure> {
    let Some(source) = transfer.sources.first_alive() else {
        return Err(every_source_failed(transfer, shared).into());
    };
    let _permit = tokio::select! {
        permit = ctx.limits.connection(transfer.sources.get(source).host()) => permit,
        _ = ctx.control.cancelled() => return Err(TransferFailure::Cancelled),
    };
    // A resume starts after the recorded prefix (the hasher has it already).
    let (next_chunk, start) = shared.prefix(transfer.plan);
    let mut target = WholeFile {
        segment: Segment::new(0, start..transfer.plan.size),
        source,
        plan: transfer.plan,
        next_chunk,
        skip: 0,
        committer,
    };
    // The whole file is not pausable, so the stream ends only when it is written; whether every
    // chunk was recorded is the caller's check.
    stream(ctx, transfer, shared, &mut target).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_judged_by_its_wire_rate_across_its_connections() {
        let second = Duration::from_secs(1);
        assert_eq!(link_rate(1000, second, 1.0), None, "too short to judge");
        let one = link_rate(100 << 20, second, 1.0).unwrap();
        assert!((one - 104_857_600.0).abs() < 1.0);
        // Two connections at that rate each: the link carried twice as much, past 1 Gbit/s.
        let two = link_rate(100 << 20, second, 2.0).unwrap();
        assert!(one < super::super::source::FAST_LINK && two > super::super::source::FAST_LINK);
    }
}
