//! Pull-through: a file the cache does not hold, for a holder of the mirror token, is fetched by
//! the engine (a queue job, see `model_cache::engine::Engine::fetch_through`) and streamed to
//! the client as it arrives, while it is written to the cache once. Clients asking for the same
//! file join the same job.
//!
//! The client reads the blob's partial file up to the download's done prefix (bytes written,
//! flushed and recorded, from `chunk_done` events). The **last byte is held back until the
//! file is verified and linked**: if the hash check fails, the connection ends one byte short,
//! so no client ever holds a complete copy of bytes the Hub's hash refused.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use model_cache::download::DownloadEvent;
use model_cache::engine::Fetch;
use model_cache::hub::FileMetadata;
use model_cache::index::queue::QueueState;
use model_cache::repo::RepoId;
use model_cache::scheduler::SchedulerEvent;
use tokio::sync::broadcast::error::RecvError;

use super::MirrorState;
use super::bytes::{Ranges, parse_ranges};
use super::routes::{hub_error, serve_file, upstream_file_headers};

/// How long a client waits for its download to start before it is told to come back
/// (`503` with `Retry-After`; the download goes on).
const START_WAIT: Duration = Duration::from_secs(8);
/// How long a streaming response waits for the next bytes before it gives up.
const PROGRESS_WAIT: Duration = Duration::from_secs(60);
/// Largest read from the partial file at once.
const READ: u64 = 1 << 20;

/// Where the download of the client's file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Bytes from the start written, flushed and recorded.
    Prefix(u64),
    /// Verified and linked: the whole blob may be read.
    Complete,
}

/// Why a client's file is not coming yet.
enum Waiting {
    Failed(String),
    Deferred(String),
}

/// What the next event of the job means for the client.
enum Step {
    Progress(Progress),
    Failed(String),
    /// The job waits for a condition (disk space, power, allowed hours): the reason.
    Deferred(String),
    Other,
}

fn step(event: &SchedulerEvent, job_id: i64, path: &str) -> Step {
    match event {
        SchedulerEvent::Download { job_id: id, event } if *id == job_id => match event {
            DownloadEvent::ChunkDone {
                path: p,
                prefix_bytes,
                ..
            } if p == path => Step::Progress(Progress::Prefix(*prefix_bytes)),
            DownloadEvent::FileStarted { path: p, .. } if p == path => {
                Step::Progress(Progress::Prefix(0))
            }
            DownloadEvent::Linked { path: p, .. } | DownloadEvent::Skipped { path: p, .. }
                if p == path =>
            {
                Step::Progress(Progress::Complete)
            }
            DownloadEvent::Restarted {
                path: p, reason, ..
            } if p == path => Step::Failed(format!("the download started over: {reason}")),
            DownloadEvent::Failed {
                path: p, message, ..
            } if p == path => Step::Failed(message.clone()),
            _ => Step::Other,
        },
        SchedulerEvent::JobChanged { job } if job.id == job_id => match job.state {
            QueueState::Failed | QueueState::Cancelled => Step::Failed(
                job.error
                    .clone()
                    .unwrap_or_else(|| format!("the download was {}", job.state.as_str())),
            ),
            QueueState::Deferred => Step::Deferred(
                model_cache::engine::deferred_message(job)
                    .unwrap_or_else(|| "it is deferred".to_string()),
            ),
            _ => Step::Other,
        },
        _ => Step::Other,
    }
}

/// Streams a file the cache does not hold yet.
pub(crate) async fn stream(
    state: &Arc<MirrorState>,
    repo: &RepoId,
    path: &str,
    meta: &FileMetadata,
    headers: &HeaderMap,
) -> Response {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (start, end, partial_content) = match parse_ranges(range, meta.size) {
        Ranges::Unsatisfiable => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{}", meta.size)).expect("ascii"),
            );
            return response;
        }
        Ranges::Parts(parts) if parts.len() == 1 => (parts[0].0, parts[0].1, true),
        // Several ranges of a file still downloading: the whole file (a server may ignore
        // `Range`).
        Ranges::Parts(_) | Ranges::Whole => (0, meta.size, false),
    };
    let mut fetch = match state.engine.fetch_through(repo, &meta.commit, path, meta) {
        Ok(fetch) => fetch,
        Err(error) => return super::routes::upstream_error(&error, Some(&meta.commit)),
    };
    // Wait for the download to start (or to be found finished).
    let started = tokio::time::timeout(START_WAIT, async {
        if let Some(reason) = fetch.waiting.take() {
            return Err(Waiting::Deferred(reason));
        }
        loop {
            if let Some(file) = state.engine.served_file(repo, &meta.commit, path) {
                return Ok(Some(file));
            }
            match fetch.events.recv().await {
                Ok(event) => match step(&event, fetch.job_id, path) {
                    Step::Progress(Progress::Complete) => continue,
                    Step::Progress(Progress::Prefix(_)) => return Ok(None),
                    Step::Failed(reason) => return Err(Waiting::Failed(reason)),
                    Step::Deferred(reason) => return Err(Waiting::Deferred(reason)),
                    Step::Other => {}
                },
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => {
                    return Err(Waiting::Failed("the engine stopped".to_string()));
                }
            }
        }
    })
    .await;
    match started {
        Ok(Ok(Some(file))) => {
            return serve_file(
                state,
                repo,
                &meta.commit,
                &file,
                &axum::http::Method::GET,
                headers,
            );
        }
        Ok(Ok(None)) => {}
        Ok(Err(Waiting::Failed(reason))) => {
            return hub_error(
                StatusCode::BAD_GATEWAY,
                None,
                &format!("Fetching `{path}` of `{repo}` failed: {reason}"),
            );
        }
        Ok(Err(Waiting::Deferred(reason))) => {
            let mut response = hub_error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                &format!(
                    "`{path}` of `{repo}` is queued for download (job {}) and waits: {reason}",
                    fetch.job_id
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            return response;
        }
        Err(_) => {
            let mut response = hub_error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                &format!(
                    "`{path}` of `{repo}` is queued for download (job {}) and has not started yet; try again shortly",
                    fetch.job_id
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return response;
        }
    }
    let mut response = Response::new(Body::empty());
    upstream_file_headers(response.headers_mut(), meta);
    let out = response.headers_mut();
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if partial_content {
        out.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{}", end - 1, meta.size))
                .expect("ascii"),
        );
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    let follower = Follower {
        fetch,
        path: path.to_string(),
        size: meta.size,
        progress: Progress::Prefix(0),
        file: None,
    };
    *response.body_mut() = Body::from_stream(follower.bytes(start, end));
    response
}

/// Follows one download's events and reads its file as far as they allow.
struct Follower {
    fetch: Fetch,
    path: String,
    size: u64,
    progress: Progress,
    /// The partial file (or the blob, once linked), opened on first read.
    file: Option<Arc<std::fs::File>>,
}

impl Follower {
    /// Bytes a client may have: the done prefix less the last byte until the file is linked.
    fn readable(&self) -> u64 {
        match self.progress {
            Progress::Complete => self.size,
            Progress::Prefix(prefix) => prefix.min(self.size.saturating_sub(1)),
        }
    }

    fn open(&mut self) -> std::io::Result<Arc<std::fs::File>> {
        if let Some(file) = &self.file {
            return Ok(Arc::clone(file));
        }
        let paths: [&PathBuf; 2] = match self.progress {
            Progress::Complete => [&self.fetch.blob, &self.fetch.partial],
            Progress::Prefix(_) => [&self.fetch.partial, &self.fetch.blob],
        };
        let file = std::fs::File::open(paths[0]).or_else(|_| std::fs::File::open(paths[1]))?;
        let file = Arc::new(file);
        self.file = Some(Arc::clone(&file));
        Ok(file)
    }

    /// Waits for the next event that moves the download on.
    async fn advance(&mut self) -> std::io::Result<()> {
        let waited = tokio::time::timeout(PROGRESS_WAIT, async {
            loop {
                match self.fetch.events.recv().await {
                    Ok(event) => match step(&event, self.fetch.job_id, &self.path) {
                        Step::Progress(Progress::Complete) => return Ok(Progress::Complete),
                        Step::Progress(Progress::Prefix(prefix)) => {
                            return Ok(Progress::Prefix(prefix));
                        }
                        Step::Failed(reason) => return Err(reason),
                        // Deferred mid-stream (power, hours): the stream waits for it to go
                        // on, up to PROGRESS_WAIT.
                        Step::Deferred(_) | Step::Other => {}
                    },
                    // Missed events: the next chunk event says where the prefix is.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Err("the engine stopped".to_string()),
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(progress)) => {
                self.progress = match (self.progress, progress) {
                    (Progress::Complete, _) => Progress::Complete,
                    (Progress::Prefix(a), Progress::Prefix(b)) => Progress::Prefix(a.max(b)),
                    (_, Progress::Complete) => Progress::Complete,
                };
                Ok(())
            }
            Ok(Err(reason)) => Err(std::io::Error::other(reason)),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the download made no progress",
            )),
        }
    }

    fn bytes(
        self,
        start: u64,
        end: u64,
    ) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        futures::stream::unfold((self, start), move |(mut follower, pos)| async move {
            if pos >= end {
                return None;
            }
            while follower.readable() <= pos {
                if let Err(error) = follower.advance().await {
                    tracing::warn!(path = %follower.path, %error, "A pull-through stream ends early");
                    return Some((Err(error), (follower, end)));
                }
            }
            let until = follower.readable().min(end).min(pos + READ);
            let file = match follower.open() {
                Ok(file) => file,
                Err(error) => return Some((Err(error), (follower, end))),
            };
            let read = tokio::task::spawn_blocking(move || {
                let mut buffer = vec![0u8; (until - pos) as usize];
                file.read_exact_at(&mut buffer, pos).map(|()| buffer)
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
            match read {
                Ok(buffer) => Some((Ok(Bytes::from(buffer)), (follower, until))),
                Err(error) => Some((Err(error), (follower, end))),
            }
        })
    }
}
