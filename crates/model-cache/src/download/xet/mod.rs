//! Delta downloads of files the Hub stores with Xet.
//!
//! A Xet file is a list of terms, runs of chunks of content-addressed xorbs (see
//! [`crate::hub::xet`]). Another revision of the file, another quantization or a fine-tune
//! shares most of its chunks with what is already cached. For each blob it rebuilt this way, the
//! index keeps the reconstruction and each chunk's length (`index::xet`). A download of a Xet
//! file then:
//!
//! 1. gets a CAS token and the file's reconstruction;
//! 2. finds, for each term, cached blobs whose recorded terms hold the same chunks of the same
//!    xorb, and places them in the file (chunk lengths give the offsets). A blob is used only
//!    while it still has the stamp it was verified with; blobs with no recorded reconstruction
//!    are never guessed at;
//! 3. works through the file's chunk plan like any download, in parallel: a plan chunk copies
//!    its local pieces and asks the CAS for a reconstruction of just its missing bytes, fetches
//!    those xorb ranges and decodes them. Each plan chunk is flushed, checksummed and recorded
//!    as the HTTP streams record theirs, so a resume skips it, whichever path wrote it;
//! 4. the decoded chunk lengths are kept per job as they come (a resumed job still learns the
//!    whole file) and become the blob's record once its sha256 is verified.
//!
//! Anything the Xet path cannot do (no token, the CAS fails past its retries, bytes that do not
//! decode) ends it with [`XetEnd::Fallback`]: the chunks it recorded stay, and the HTTP
//! transfer fetches the rest. The final sha256 check (and its repair over HTTP) covers both.

mod chunks;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;

use super::Inner;
use super::transfer::{self, BlobTransfer, Shared, TransferContext, TransferFailure};
use crate::hub::retry::with_retry;
use crate::hub::xet::{ChunkRange, Reconstruction, XetFile, XetToken};
use crate::hub::{FileMetadata, HubError};
use crate::index::BlobStamp;
use crate::index::xet::{XetBlobRecord, XetChunkRun, XetTermRecord};
use crate::repo::RepoId;

/// Files smaller than this come whole over HTTP: a Xet rebuild costs a token and a
/// reconstruction request before the first byte, and small files share little.
pub(super) const MIN_XET_SIZE: u64 = 1 << 20;
/// Plan chunks rebuilt at once (at most the connection limit).
const PARALLEL_CHUNKS: usize = 16;
/// Of those, plan chunks fetching from the CAS at once: each holds its xorb range and the
/// decoded bytes in memory (two to three times the chunk size). A 2.2 GiB pull peaked at
/// 77 MB resident with 2, 103 MB with 4 and 192 MB with 8.
const PARALLEL_FETCHES: usize = 4;
/// Local copies go through buffers of at most this size.
const COPY_BUFFER: u64 = 1 << 20;
/// A token this close to expiry is renewed before use.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);

/// Why the Xet path ended before the file was whole.
#[derive(Debug)]
pub(super) enum XetEnd {
    /// Xet cannot serve the rest; HTTP takes over.
    Fallback(String),
    /// The transfer itself failed (cancelled, disk full): no other path helps.
    Failed(TransferFailure),
}

impl From<TransferFailure> for XetEnd {
    fn from(failure: TransferFailure) -> Self {
        XetEnd::Failed(failure)
    }
}

/// What the Xet path did for a file.
#[derive(Debug)]
pub(super) struct XetOutcome {
    /// Bytes received from the CAS.
    pub fetched: u64,
    /// File bytes copied from cached blobs.
    pub reused: u64,
    /// The file's terms, for its record.
    placed: Vec<Placed>,
    /// Chunk lengths learned from the cached blobs (those the job decoded are in the index).
    local_lens: HashMap<(String, u32), u32>,
}

/// CAS tokens by token route, shared by the downloads of one downloader.
#[derive(Default)]
pub(crate) struct XetTokens(std::sync::Mutex<HashMap<String, XetToken>>);

impl XetTokens {
    async fn get(
        &self,
        hub: &crate::hub::HubClient,
        repo: &RepoId,
        route: &str,
        renew: bool,
    ) -> Result<XetToken, HubError> {
        if !renew
            && let Some(token) = self.0.lock().expect("token lock").get(route)
            && !token.expires_within(TOKEN_MARGIN)
        {
            return Ok(token.clone());
        }
        let token = hub.xet_read_token(repo, route).await?;
        self.0
            .lock()
            .expect("token lock")
            .insert(route.to_string(), token.clone());
        Ok(token)
    }
}

/// A cached blob chunks are copied from.
struct LocalBlob {
    file: Arc<std::fs::File>,
}

/// Where a chunk of a xorb can be read in a cached blob.
#[derive(Clone, Copy)]
struct LocalChunk {
    blob: usize,
    offset: u64,
    len: u32,
}

/// File bytes `file` are in cached blob `blob` at `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    file: Range<u64>,
    blob: usize,
    offset: u64,
}

/// A term of the file's reconstruction, placed in the file.
#[derive(Debug, Clone)]
struct Placed {
    xorb: String,
    chunks: ChunkRange,
    offset: u64,
    len: u64,
}

/// A decoded xorb range: its descriptor, the chunks' bytes back to back, each chunk's length.
type Decoded = (crate::hub::xet::XorbRange, Vec<u8>, Vec<u32>);

/// Why fetching a range of the file stopped.
enum Fetch {
    /// The CAS refused a presigned URL (expired): a fresh reconstruction brings new ones.
    Refused,
    End(XetEnd),
}

impl From<XetEnd> for Fetch {
    fn from(end: XetEnd) -> Self {
        Fetch::End(end)
    }
}

impl From<TransferFailure> for Fetch {
    fn from(failure: TransferFailure) -> Self {
        Fetch::End(XetEnd::Failed(failure))
    }
}

/// One file's Xet rebuild, shared by its chunk tasks.
struct Rebuild {
    inner: Arc<Inner>,
    ctx: Arc<TransferContext>,
    transfer: Arc<BlobTransfer>,
    shared: Arc<Shared>,
    repo: RepoId,
    xet: XetFile,
    token: Mutex<XetToken>,
    blobs: Vec<LocalBlob>,
    pieces: Vec<Piece>,
    fetched: AtomicU64,
    reused: AtomicU64,
    /// Rebuilt chunks go to the transfer's committer, which records them in batches.
    committer: tokio::sync::mpsc::UnboundedSender<u64>,
    /// Plan chunks fetching from the CAS now (see [`PARALLEL_FETCHES`]).
    fetch_slots: tokio::sync::Semaphore,
}

/// Rebuilds the file's unwritten chunks from cached blobs and the CAS. See the module docs.
pub(super) async fn transfer_all_xet(
    inner: &Arc<Inner>,
    ctx: &Arc<TransferContext>,
    repo: &RepoId,
    transfer: &Arc<BlobTransfer>,
    shared: &Arc<Shared>,
    meta: &FileMetadata,
    xet: &XetFile,
) -> Result<XetOutcome, XetEnd> {
    let fallback =
        |what: &str, error: &dyn std::fmt::Display| XetEnd::Fallback(format!("{what}: {error}"));
    let token = inner
        .xet_tokens
        .get(&ctx.hub, repo, &xet.token_route, false)
        .await
        .map_err(|e| fallback("no Xet read token", &e))?;
    let full = reconstruction(ctx, &token, &xet.hash, None)
        .await
        .map_err(|e| fallback("no reconstruction", &e))?;
    let placed = place(&full, meta.size).map_err(|e| fallback("an unusable reconstruction", &e))?;

    // What the cache holds of these xorbs, and what this job decoded before a restart.
    let mut xorbs: Vec<String> = placed.iter().map(|t| t.xorb.clone()).collect();
    xorbs.sort();
    xorbs.dedup();
    let (blobs, local) = local_chunks(inner, &xorbs, &meta.etag).await;
    let job_runs = {
        let index = inner.db.index().clone();
        let job_id = transfer.job_id;
        tokio::task::spawn_blocking(move || index.xet_job_chunks(job_id))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    let mut lens: HashMap<(String, u32), u32> = HashMap::new();
    for run in &job_runs {
        for (i, &len) in run.lens.iter().enumerate() {
            lens.insert((run.xorb.clone(), run.chunk_start + i as u32), len);
        }
    }
    for ((xorb, chunk), at) in &local {
        lens.entry((xorb.clone(), *chunk)).or_insert(at.len);
    }
    let pieces = local_pieces(&placed, &local, &lens);
    let copyable: u64 = pieces.iter().map(|p| p.file.end - p.file.start).sum();
    tracing::info!(
        path = %transfer.path,
        terms = placed.len(),
        local_bytes = copyable,
        size = meta.size,
        "Rebuilding a Xet file"
    );

    let committer = transfer::WholeChunks::start(ctx, transfer, shared);
    let rebuild = Arc::new(Rebuild {
        inner: Arc::clone(inner),
        ctx: Arc::clone(ctx),
        transfer: Arc::clone(transfer),
        shared: Arc::clone(shared),
        repo: repo.clone(),
        xet: xet.clone(),
        token: Mutex::new(token),
        blobs,
        pieces,
        fetched: AtomicU64::new(0),
        reused: AtomicU64::new(0),
        committer: committer.sender(),
        fetch_slots: tokio::sync::Semaphore::new(PARALLEL_FETCHES),
    });
    let todo = shared.unwritten();
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = todo.into_iter();
    let mut end: Option<XetEnd> = None;
    loop {
        while end.is_none()
            && tasks.len() < PARALLEL_CHUNKS.min(ctx.limits.max_connections().max(1))
        {
            let Some(chunk) = next.next() else { break };
            let rebuild = Arc::clone(&rebuild);
            tasks.spawn(async move { rebuild.chunk(chunk).await });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => {
                end.get_or_insert(failure);
                tasks.abort_all();
            }
            Err(error) if error.is_cancelled() => {}
            Err(error) => {
                end.get_or_insert(XetEnd::Fallback(format!("a rebuild task failed: {error}")));
                tasks.abort_all();
            }
        }
    }
    let outcome = XetOutcome {
        fetched: rebuild.fetched.load(Ordering::Relaxed),
        reused: rebuild.reused.load(Ordering::Relaxed),
        placed,
        local_lens: lens,
    };
    // Every task is joined: this is the last handle on the committer's sender.
    drop(rebuild);
    if let Err(error) = committer.finish(shared).await {
        return Err(XetEnd::Failed(TransferFailure::Error(error)));
    }
    match end {
        Some(XetEnd::Fallback(reason)) => Err(XetEnd::Fallback(format!(
            "{reason} (after {} bytes from the CAS and {} copied)",
            outcome.fetched, outcome.reused
        ))),
        Some(failed) => Err(failed),
        None => Ok(outcome),
    }
}

/// After the file is verified: its reconstruction, with each chunk's length where this job
/// decoded or copied it, becomes the blob's record in the chunk index. Best effort.
pub(super) async fn record_blob(
    inner: &Arc<Inner>,
    job_id: i64,
    meta: &FileMetadata,
    outcome: XetOutcome,
) {
    let Some(xet) = meta.xet.clone() else { return };
    let index = inner.db.index().clone();
    let limit = inner.xet_index_bytes;
    let etag = meta.etag.clone();
    let size = meta.size;
    let placed = outcome.placed;
    let local = outcome.local_lens;
    let _ = tokio::task::spawn_blocking(move || {
        let mut lens: HashMap<(String, u32), u32> = local;
        for run in index.xet_job_chunks(job_id).unwrap_or_default() {
            for (i, len) in run.lens.into_iter().enumerate() {
                lens.insert((run.xorb.clone(), run.chunk_start + i as u32), len);
            }
        }
        let terms = placed
            .iter()
            .map(|t| {
                let known: Option<Vec<u32>> = (t.chunks.start..t.chunks.end)
                    .map(|c| lens.get(&(t.xorb.clone(), c)).copied())
                    .collect();
                XetTermRecord {
                    xorb: t.xorb.clone(),
                    chunk_start: t.chunks.start,
                    chunk_end: t.chunks.end,
                    file_offset: t.offset,
                    length: t.len,
                    chunk_lens: known
                        .filter(|l| l.iter().map(|&x| u64::from(x)).sum::<u64>() == t.len),
                }
            })
            .collect();
        let record = XetBlobRecord {
            etag,
            xet_hash: xet.hash,
            size,
            terms,
        };
        if let Err(error) = index.record_xet_blob(&record, limit) {
            tracing::warn!(%error, "Could not record a Xet reconstruction");
        }
        let _ = index.forget_xet_job(job_id);
    })
    .await;
}

/// The reconstruction of `hash` (or of its bytes `range`), retried under the engine's policy.
async fn reconstruction(
    ctx: &TransferContext,
    token: &XetToken,
    hash: &str,
    range: Option<Range<u64>>,
) -> Result<Reconstruction, HubError> {
    Ok(with_retry(&ctx.retry, "a Xet reconstruction", |_| {
        ctx.hub.xet_reconstruction(token, hash, range.clone())
    })
    .await?)
}

/// The terms placed in the file; the reconstruction must cover exactly `size` bytes.
fn place(full: &Reconstruction, size: u64) -> Result<Vec<Placed>, String> {
    if full.offset_into_first_range != 0 {
        return Err("a whole-file reconstruction starts inside its first term".into());
    }
    let mut offset = 0u64;
    let mut placed = Vec::with_capacity(full.terms.len());
    for term in &full.terms {
        if term.range.end <= term.range.start {
            return Err(format!("a term of `{}` holds no chunks", term.hash));
        }
        placed.push(Placed {
            xorb: term.hash.clone(),
            chunks: term.range,
            offset,
            len: u64::from(term.unpacked_length),
        });
        offset += u64::from(term.unpacked_length);
    }
    if offset != size {
        return Err(format!(
            "the terms hold {offset} bytes and the file has {size}"
        ));
    }
    Ok(placed)
}

/// The cached blobs that recorded chunks of `xorbs` and still hold their verified bytes, and
/// where each known chunk is in them.
async fn local_chunks(
    inner: &Inner,
    xorbs: &[String],
    own_etag: &str,
) -> (Vec<LocalBlob>, HashMap<(String, u32), LocalChunk>) {
    let index = inner.db.index().clone();
    let cache = inner.cache.clone();
    let xorbs = xorbs.to_vec();
    let own = own_etag.to_string();
    tokio::task::spawn_blocking(move || {
        let mut blobs = Vec::new();
        let mut local = HashMap::new();
        let records = match index.xet_blobs_reading(&xorbs) {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "The Xet chunk index cannot be read; every chunk is fetched");
                return (blobs, local);
            }
        };
        for record in records.into_iter().filter(|r| r.etag != own) {
            let Some(file) = open_verified(&index, &cache, &record) else {
                continue;
            };
            let blob = blobs.len();
            blobs.push(LocalBlob {
                file: Arc::new(file),
            });
            for term in &record.terms {
                let Some(lens) = &term.chunk_lens else { continue };
                let mut offset = term.file_offset;
                for (i, &len) in lens.iter().enumerate() {
                    local
                        .entry((term.xorb.clone(), term.chunk_start + i as u32))
                        .or_insert(LocalChunk { blob, offset, len });
                    offset += u64::from(len);
                }
            }
        }
        (blobs, local)
    })
    .await
    .unwrap_or_default()
}

/// A verified copy of the recorded blob whose file still has the stamp it was verified with.
fn open_verified(
    index: &crate::index::Index,
    cache: &crate::store::HubCache,
    record: &XetBlobRecord,
) -> Option<std::fs::File> {
    for (folder, stamp) in index.verified_copies(&record.etag).ok()? {
        let Some(repo) = RepoId::from_folder_name(&folder) else {
            continue;
        };
        let path = cache.repo(&repo).blob_path(&record.etag);
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let Ok(found) = file.metadata() else { continue };
        if BlobStamp::of(&found) == stamp && found.len() == record.size {
            return Some(file);
        }
        tracing::debug!(blob = %path.display(), "A cached blob changed since it was verified; its chunks are not used");
    }
    None
}

/// The file's bytes that cached blobs hold: for each term, the chunks whose place in the file
/// is known (from the term's start forward, and from its end backward, while chunk lengths are
/// known) and that a cached blob has.
fn local_pieces(
    placed: &[Placed],
    local: &HashMap<(String, u32), LocalChunk>,
    lens: &HashMap<(String, u32), u32>,
) -> Vec<Piece> {
    let mut pieces: Vec<Piece> = Vec::new();
    for term in placed {
        let n = (term.chunks.end - term.chunks.start) as usize;
        let len_of = |i: usize| {
            lens.get(&(term.xorb.clone(), term.chunks.start + i as u32))
                .copied()
        };
        // bounds[i]: where chunk i starts in the file; bounds[n] is the term's end.
        let mut bounds: Vec<Option<u64>> = vec![None; n + 1];
        bounds[0] = Some(term.offset);
        bounds[n] = Some(term.offset + term.len);
        for i in 0..n {
            match (bounds[i], len_of(i)) {
                (Some(at), Some(len)) => bounds[i + 1] = Some(at + u64::from(len)),
                _ => break,
            }
        }
        for i in (0..n).rev() {
            match (bounds[i + 1], len_of(i)) {
                (Some(end), Some(len)) if bounds[i].is_none() => {
                    bounds[i] = end.checked_sub(u64::from(len));
                }
                (Some(_), Some(_)) => {}
                _ => break,
            }
        }
        for i in 0..n {
            let (Some(start), Some(end)) = (bounds[i], bounds[i + 1]) else {
                continue;
            };
            let Some(at) = local.get(&(term.xorb.clone(), term.chunks.start + i as u32)) else {
                continue;
            };
            if end < start || end - start != u64::from(at.len) {
                continue;
            }
            match pieces.last_mut() {
                Some(last)
                    if last.blob == at.blob
                        && last.file.end == start
                        && last.offset + (last.file.end - last.file.start) == at.offset =>
                {
                    last.file.end = end;
                }
                _ => pieces.push(Piece {
                    file: start..end,
                    blob: at.blob,
                    offset: at.offset,
                }),
            }
        }
    }
    pieces
}

/// The parts of `range` no piece covers.
fn gaps(range: &Range<u64>, pieces: &[&Piece]) -> Vec<Range<u64>> {
    let mut gaps = Vec::new();
    let mut at = range.start;
    for piece in pieces {
        let start = piece.file.start.max(range.start);
        let end = piece.file.end.min(range.end);
        if start > at {
            gaps.push(at..start);
        }
        at = at.max(end);
    }
    if at < range.end {
        gaps.push(at..range.end);
    }
    gaps
}

impl Rebuild {
    /// Rebuilds plan chunk `chunk`: copies its local pieces, fetches the rest, then records it.
    async fn chunk(self: Arc<Self>, chunk: u64) -> Result<(), XetEnd> {
        let ctx = &self.ctx;
        if ctx.control.is_cancelled() {
            return Err(TransferFailure::Cancelled.into());
        }
        ctx.control.running().await;
        let range = self.transfer.plan.range(chunk);
        let pieces: Vec<&Piece> = self
            .pieces
            .iter()
            .filter(|p| p.file.start < range.end && range.start < p.file.end)
            .collect();
        let mut buffer = Vec::new();
        for piece in &pieces {
            let file = Arc::clone(&self.blobs[piece.blob].file);
            let mut start = piece.file.start.max(range.start);
            let end = piece.file.end.min(range.end);
            while start < end {
                let len = (end - start).min(COPY_BUFFER) as usize;
                let from = piece.offset + (start - piece.file.start);
                let file = Arc::clone(&file);
                let mut reuse = std::mem::take(&mut buffer);
                let bytes = tokio::task::spawn_blocking(move || {
                    reuse.resize(len, 0);
                    read_exact_at(&file, &mut reuse, from).map(|()| reuse)
                })
                .await
                .map_err(|e| XetEnd::Fallback(format!("a local copy failed: {e}")))?
                .map_err(|e| XetEnd::Fallback(format!("a cached blob cannot be read: {e}")))?;
                buffer = self.write(start, bytes).await?;
                self.reused.fetch_add(len as u64, Ordering::Relaxed);
                start += len as u64;
            }
        }
        let mut runs = Vec::new();
        let missing = gaps(&range, &pieces);
        let _slot = if missing.is_empty() {
            None
        } else {
            Some(
                self.fetch_slots
                    .acquire()
                    .await
                    .map_err(|_| XetEnd::Fallback("the rebuild was stopped".into()))?,
            )
        };
        for gap in missing {
            runs.extend(self.fetch_range(gap).await?);
        }
        if !runs.is_empty() {
            let index = self.inner.db.index().clone();
            let job_id = self.transfer.job_id;
            let kept =
                tokio::task::spawn_blocking(move || index.record_xet_job_chunks(job_id, &runs))
                    .await;
            if !matches!(kept, Ok(Ok(()))) {
                tracing::debug!(
                    "Could not keep a rebuild's chunk lengths; the blob's record will miss them"
                );
            }
        }
        self.shared.hand_over(chunk, &self.committer);
        Ok(())
    }

    /// Writes file bytes at `offset`, counting them as progress; gives the buffer back, empty.
    async fn write(&self, offset: u64, bytes: Vec<u8>) -> Result<Vec<u8>, XetEnd> {
        let len = bytes.len() as u64;
        let buffer = self
            .transfer
            .writer
            .write_at(bytes, offset)
            .await
            .map_err(|f| {
                XetEnd::Failed(TransferFailure::Error(transfer::write_error(
                    &self.transfer,
                    f,
                )))
            })?;
        self.shared.add_bytes(len, &self.ctx, &self.transfer);
        Ok(buffer)
    }

    /// Fetches and writes the file bytes `range` from the CAS: a reconstruction of just that
    /// range, then its xorb ranges. Returns the chunk lengths it decoded.
    async fn fetch_range(&self, range: Range<u64>) -> Result<Vec<XetChunkRun>, XetEnd> {
        // The fetch URLs are presigned: one refused (it expired while the request waited for a
        // connection) is renewed with the reconstruction, once.
        match self.fetch_range_once(range.clone()).await {
            Err(Fetch::Refused) => {
                tracing::debug!("A xorb URL was refused; asking for the reconstruction again");
                match self.fetch_range_once(range).await {
                    Err(Fetch::Refused) => {
                        Err(XetEnd::Fallback("the CAS refused fresh xorb URLs".into()))
                    }
                    Err(Fetch::End(end)) => Err(end),
                    Ok(runs) => Ok(runs),
                }
            }
            Err(Fetch::End(end)) => Err(end),
            Ok(runs) => Ok(runs),
        }
    }

    /// [`Rebuild::fetch_range`] with one reconstruction.
    async fn fetch_range_once(&self, range: Range<u64>) -> Result<Vec<XetChunkRun>, Fetch> {
        let mut refused = false;
        match self.fetch_with_plan(range, &mut refused).await {
            Err(_) if refused => Err(Fetch::Refused),
            Err(end) => Err(Fetch::End(end)),
            Ok(runs) => Ok(runs),
        }
    }

    /// One reconstruction of `range`, its xorb ranges fetched and written; `refused` is set when
    /// the CAS refused a fetch URL.
    async fn fetch_with_plan(
        &self,
        range: Range<u64>,
        refused: &mut bool,
    ) -> Result<Vec<XetChunkRun>, XetEnd> {
        let mut renewed = false;
        let plan = loop {
            let token = self.token.lock().await.clone();
            let token = if token.expires_within(TOKEN_MARGIN) {
                self.renew_token().await?
            } else {
                token
            };
            match reconstruction(&self.ctx, &token, &self.xet.hash, Some(range.clone())).await {
                Ok(plan) => break plan,
                Err(HubError::Http { status: 401, .. }) if !renewed => {
                    renewed = true;
                    self.renew_token().await?;
                }
                Err(error) => {
                    return Err(XetEnd::Fallback(format!(
                        "no reconstruction of bytes {}..{}: {error}",
                        range.start, range.end
                    )));
                }
            }
        };
        let Some(mut at) = range.start.checked_sub(plan.offset_into_first_range) else {
            return Err(XetEnd::Fallback(
                "a ranged reconstruction starts before the file".into(),
            ));
        };
        // Each fetch entry a term needs, once: all of its ranges in one request.
        let mut decoded: HashMap<(String, usize), Vec<Decoded>> = HashMap::new();
        let mut runs = Vec::new();
        for term in &plan.terms {
            let entry = plan
                .xorbs
                .get(&term.hash)
                .and_then(|fetches| {
                    fetches.iter().position(|f| {
                        f.ranges.iter().any(|r| {
                            r.chunks.start <= term.range.start && term.range.end <= r.chunks.end
                        })
                    })
                })
                .ok_or_else(|| {
                    XetEnd::Fallback(format!("no fetch for a term of xorb `{}`", term.hash))
                })?;
            let key = (term.hash.clone(), entry);
            if !decoded.contains_key(&key) {
                let fetch = &plan.xorbs[&term.hash][entry];
                let parts = match self.fetch(&fetch.url, &fetch.ranges).await {
                    Ok(parts) => parts,
                    Err(Fetch::Refused) => {
                        *refused = true;
                        return Err(XetEnd::Fallback("a xorb URL was refused".into()));
                    }
                    Err(Fetch::End(end)) => return Err(end),
                };
                let mut out = Vec::new();
                for (descriptor, data) in fetch.ranges.iter().zip(parts) {
                    // About the size of what came: chunks are stored compressed only when that
                    // made them smaller, and most weights hardly compress.
                    let mut bytes = Vec::with_capacity(data.len());
                    let lens = chunks::decode_chunks(&data, &mut bytes).map_err(|e| {
                        XetEnd::Fallback(format!(
                            "a xorb range of `{}` does not decode: {e}",
                            term.hash
                        ))
                    })?;
                    if lens.len() as u32 != descriptor.chunks.end - descriptor.chunks.start {
                        return Err(XetEnd::Fallback(format!(
                            "a xorb range of `{}` holds {} chunks, not {}",
                            term.hash,
                            lens.len(),
                            descriptor.chunks.end - descriptor.chunks.start
                        )));
                    }
                    runs.push(XetChunkRun {
                        xorb: term.hash.clone(),
                        chunk_start: descriptor.chunks.start,
                        lens: lens.clone(),
                    });
                    out.push((*descriptor, bytes, lens));
                }
                decoded.insert(key.clone(), out);
            }
            let (descriptor, bytes, lens) = decoded[&key]
                .iter()
                .find(|(d, _, _)| {
                    d.chunks.start <= term.range.start && term.range.end <= d.chunks.end
                })
                .expect("the entry was chosen for this term");
            let skip = (term.range.start - descriptor.chunks.start) as usize;
            let count = (term.range.end - term.range.start) as usize;
            let from: usize = lens[..skip].iter().map(|&l| l as usize).sum();
            let len: usize = lens[skip..skip + count].iter().map(|&l| l as usize).sum();
            if len as u64 != u64::from(term.unpacked_length) {
                return Err(XetEnd::Fallback(format!(
                    "a term of `{}` decodes to {len} bytes, not {}",
                    term.hash, term.unpacked_length
                )));
            }
            let term_bytes = &bytes[from..from + len];
            let (start, end) = (at.max(range.start), (at + len as u64).min(range.end));
            if start < end {
                let slice = &term_bytes[(start - at) as usize..(end - at) as usize];
                self.write(start, slice.to_vec()).await?;
            }
            at += len as u64;
        }
        if at < range.end {
            return Err(XetEnd::Fallback(format!(
                "a ranged reconstruction ends at byte {at}, before {}",
                range.end
            )));
        }
        Ok(runs)
    }

    /// The serialized chunks of a fetch entry, under the connection and bandwidth limits, retried.
    async fn fetch(
        &self,
        url: &str,
        ranges: &[crate::hub::xet::XorbRange],
    ) -> Result<Vec<bytes::Bytes>, Fetch> {
        let ctx = &self.ctx;
        let wanted: Vec<_> = ranges.iter().map(|r| r.bytes).collect();
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let attempts = with_retry(&ctx.retry, "a xorb range", |_| async {
            let _permit = ctx.limits.connection(&host).await;
            ctx.hub.xet_fetch(url, &wanted).await
        });
        let result = tokio::select! {
            result = attempts => result.map_err(HubError::from),
            () = ctx.control.cancelled() => return Err(TransferFailure::Cancelled.into()),
        };
        match result {
            Ok(parts) => {
                let bytes: u64 = parts.iter().map(|p| p.len() as u64).sum();
                ctx.limits.bandwidth().acquire(bytes).await;
                self.fetched.fetch_add(bytes, Ordering::Relaxed);
                ctx.downloaded.fetch_add(bytes, Ordering::Relaxed);
                Ok(parts)
            }
            Err(HubError::DownloadUrlRefused { .. }) => Err(Fetch::Refused),
            Err(error) => Err(XetEnd::Fallback(format!("a xorb range failed: {error}")).into()),
        }
    }

    async fn renew_token(&self) -> Result<XetToken, XetEnd> {
        let token = self
            .inner
            .xet_tokens
            .get(&self.ctx.hub, &self.repo, &self.xet.token_route, true)
            .await
            .map_err(|e| XetEnd::Fallback(format!("the Xet read token cannot be renewed: {e}")))?;
        *self.token.lock().await = token.clone();
        Ok(token)
    }
}

#[cfg(unix)]
fn read_exact_at(file: &std::fs::File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buffer, offset)
}

#[cfg(windows)]
fn read_exact_at(
    file: &std::fs::File,
    mut buffer: &mut [u8],
    mut offset: u64,
) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buffer.is_empty() {
        match file.seek_read(buffer, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buffer = &mut buffer[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(xorb: &str, start: u32, end: u32, offset: u64, len: u64) -> Placed {
        Placed {
            xorb: xorb.into(),
            chunks: ChunkRange { start, end },
            offset,
            len,
        }
    }

    #[test]
    fn known_chunks_are_placed_from_both_ends_of_a_term() {
        // A cached blob knows chunks 0..4 of xorb `a` (10 bytes each) at blob offset 100.
        let mut local = HashMap::new();
        let mut lens = HashMap::new();
        for c in 0..4u32 {
            local.insert(
                ("a".to_string(), c),
                LocalChunk {
                    blob: 0,
                    offset: 100 + 10 * u64::from(c),
                    len: 10,
                },
            );
            lens.insert(("a".to_string(), c), 10);
        }
        // The new file: `a` 0..2, then 5 bytes of `b`, then `a` 2..4.
        let placed = [
            term("a", 0, 2, 0, 20),
            term("b", 0, 1, 20, 5),
            term("a", 2, 4, 25, 20),
        ];
        let pieces = local_pieces(&placed, &local, &lens);
        assert_eq!(
            pieces,
            vec![
                Piece {
                    file: 0..20,
                    blob: 0,
                    offset: 100
                },
                Piece {
                    file: 25..45,
                    blob: 0,
                    offset: 120
                },
            ]
        );
        let all: Vec<&Piece> = pieces.iter().collect();
        assert_eq!(gaps(&(0..45), &all), vec![20..25]);
        assert_eq!(gaps(&(10..30), &all), vec![20..25]);
        assert_eq!(gaps(&(40..50), &all), vec![45..50]);

        // A term whose middle chunk length is unknown: its ends are still placed.
        lens.remove(&("a".to_string(), 1));
        local.remove(&("a".to_string(), 1));
        let pieces = local_pieces(&[term("a", 0, 3, 0, 30)], &local, &lens);
        assert_eq!(
            pieces,
            vec![
                Piece {
                    file: 0..10,
                    blob: 0,
                    offset: 100
                },
                Piece {
                    file: 20..30,
                    blob: 0,
                    offset: 120
                },
            ]
        );
    }

    #[test]
    fn a_reconstruction_must_cover_the_file() {
        let r = Reconstruction {
            offset_into_first_range: 0,
            terms: vec![crate::hub::xet::Term {
                hash: "a".into(),
                unpacked_length: 10,
                range: ChunkRange { start: 0, end: 1 },
            }],
            xorbs: HashMap::new(),
        };
        assert_eq!(place(&r, 10).unwrap().len(), 1);
        assert!(place(&r, 11).is_err());
    }
}
