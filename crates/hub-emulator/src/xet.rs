//! The Xet CAS behind repos marked [`Repo::xet`](crate::Repo::xet) (feature `xet`).
//!
//! The Hub stores most large files with Xet: content-defined chunks packed in *xorbs*, a file
//! being a list of chunk ranges (its *reconstruction*). To serve such repos faithfully the
//! emulator runs xet-core's own CAS server (`xet_client`'s `LocalServer`, a real axum server
//! over a disk store) on an internal loopback port, and stores the LFS files of Xet repos in it
//! with xet-core's upload path (`xet_data`'s `FileUploadSession`), so chunking, dedup, xorbs,
//! shards and hashes are the real ones.
//!
//! Clients never reach the internal server. They talk to the emulator's third listener,
//! [`Listener::Cas`](crate::Listener::Cas), a proxy that goes through the same fault table and
//! request log as the hub and the CDN and adds what the real CAS has and the local server lacks:
//! - reconstructions need `Authorization: Bearer <token>` with a token from the Hub's
//!   `xet-read-token` route (401 otherwise, or once the token expired);
//! - fetch URLs in reconstructions are presigned: they carry an expiry and a signature and need
//!   no token (403 once expired or when the signature is wrong);
//! - the control routes (`/simulation/*`) are not reachable (404) and the upload routes are
//!   refused (403): the CAS is read-only to clients.
//!
//! **Architecture Invariant:** the CAS has its own tokio runtime, so that storing files can be
//! waited for from synchronous code (`Emulator::move_branch`) and from any caller's runtime,
//! without deadlock: the work never needs the caller's threads.
//!
//! **Architecture Invariant:** each distinct content is stored in an upload session of its own,
//! one after the other, and every session uses one shard cache folder (`<data dir>/client/xet`).
//! Within a session xet-core dedups only against xorbs already finished, so two similar files
//! stored together would share nothing (both would sit side by side in one xorb); a finished
//! session's shards are in the cache, which the next session queries chunk by chunk, not only
//! for the sampled chunks xet-core's global dedup asks the server about. An edit of 512 KiB in
//! a 64 MiB file thus reuses the older version's chunks for everything but the edited region,
//! and a fine-tune stored with its base reuses the base's.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use xet_client::cas_client::{DirectAccessClient, LocalClient, LocalServer};
use xet_client::cas_types::FileRange;
use xet_core_structures::merklehash::MerkleHash;
use xet_data::processing::configurations::TranslatorConfig;
use xet_data::processing::{FileUploadSession, Sha256Policy};
use xet_runtime::config::XetConfig;
use xet_runtime::core::XetContext;

use crate::catalog::Catalog;
use crate::log::Entry;
use crate::repo::{FileBody, HashCache, RepoFile, RepoKind};
use crate::server::{BodySource, Shared, body_stream};

/// Default lifetime of the tokens the `xet-read-token` route hands out (the Hub's is about an
/// hour too).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Default lifetime of the presigned fetch URLs in reconstructions.
pub const DEFAULT_FETCH_URL_TTL: Duration = Duration::from_secs(3600);

/// Bytes handed to the chunker at a time when a file is stored.
const INGEST_BLOCK: usize = 8 << 20;

/// What went wrong in the Xet CAS.
#[derive(Debug, thiserror::Error)]
pub enum XetError {
    /// The CAS could not be set up.
    #[error("Cannot start the Xet CAS in `{dir}`")]
    Start {
        /// Its data folder.
        dir: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file could not be stored.
    #[error("Cannot store `{path}` in the Xet CAS")]
    Ingest {
        /// The file's path in its repo (or the session step that failed).
        path: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A hash that is not 64 hex digits.
    #[error("`{0}` is not a Xet hash (64 hex digits)")]
    BadHash(String),
    /// A query to the CAS store failed.
    #[error("The Xet CAS cannot answer for `{hash}`")]
    Query {
        /// The file hash asked about.
        hash: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The CAS was shut down (the emulator is being dropped).
    #[error("The Xet CAS has stopped")]
    Stopped,
}

/// Where the CAS keeps its data and how long what it hands out lives.
#[derive(Clone, Debug)]
pub(crate) struct XetSettings {
    /// Data folder; `None`: a temporary folder removed with the emulator.
    pub(crate) dir: Option<PathBuf>,
    /// Lifetime of read tokens.
    pub(crate) token_ttl: Duration,
    /// The public URL of the CAS listener (`http://127.0.0.1:PORT`).
    pub(crate) cas_url: String,
    /// Where the hashes of large generated files are kept (to pass xet-core the sha256).
    pub(crate) hash_cache: HashCache,
}

/// The running CAS: its runtime, the store, the internal server and the signing keys.
pub(crate) struct XetCas {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    ctx: XetContext,
    client: Arc<dyn DirectAccessClient>,
    internal_url: String,
    cas_url: String,
    data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// One upload session at a time, so each sees the shards of the ones before.
    ingest_lock: tokio::sync::Mutex<()>,
    /// Content id ([`FileBody::content_id`]) to Xet hash, so equal content is stored once.
    by_content: Mutex<HashMap<String, String>>,
    hash_cache: HashCache,
    key: String,
    token_ttl_ms: AtomicU64,
    fetch_url_ttl_ms: AtomicU64,
    http: reqwest::Client,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(
    e: E,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

impl XetCas {
    /// Starts the runtime, opens the store and starts the internal server.
    pub(crate) async fn start(settings: XetSettings) -> Result<Arc<Self>, XetError> {
        let (tmp, data_dir) = match &settings.dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("hub-emulator-xet-")
                    .tempdir()
                    .map_err(|e| XetError::Start {
                        dir: std::env::temp_dir().display().to_string(),
                        source: boxed(e),
                    })?;
                let path = tmp.path().to_path_buf();
                (Some(tmp), path)
            }
        };
        let start_err = |e: Box<dyn std::error::Error + Send + Sync>| XetError::Start {
            dir: data_dir.display().to_string(),
            source: e,
        };
        std::fs::create_dir_all(&data_dir).map_err(|e| start_err(boxed(e)))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hub-emulator-xet")
            .enable_all()
            .build()
            .map_err(|e| start_err(boxed(e)))?;
        let handle = runtime.handle().clone();
        let mut config = XetConfig::new();
        // The emulator is offline: no summary documents posted anywhere.
        config.telemetry.enabled = false;
        let ctx = XetContext::from_external(handle.clone(), config);
        let store = data_dir.join("cas");
        let setup = {
            let ctx = ctx.clone();
            handle.spawn(async move {
                let client: Arc<dyn DirectAccessClient> =
                    LocalClient::new(ctx, &store).await.map_err(boxed)?;
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .map_err(boxed)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((client, listener))
            })
        };
        let (client, listener) = setup
            .await
            .map_err(|e| start_err(boxed(e)))?
            .map_err(start_err)?;
        let addr: SocketAddr = listener.local_addr().map_err(|e| start_err(boxed(e)))?;
        let server = LocalServer::from_client(
            Arc::clone(&client),
            None,
            addr.ip().to_string(),
            addr.port(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel();
        handle.spawn(async move {
            if let Err(e) = server.serve_until_stopped(listener, stopped).await {
                tracing::error!(error = %e, "The internal Xet CAS server failed");
            }
        });
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| start_err(boxed(e)))?;
        tracing::info!(internal = %addr, cas = %settings.cas_url, dir = %data_dir.display(), "Xet CAS started");
        Ok(Arc::new(Self {
            runtime: Mutex::new(Some(runtime)),
            handle,
            ctx,
            client,
            internal_url: format!("http://{addr}"),
            cas_url: settings.cas_url,
            data_dir,
            _tmp: tmp,
            stop: Mutex::new(Some(stop)),
            ingest_lock: tokio::sync::Mutex::new(()),
            by_content: Mutex::new(HashMap::new()),
            hash_cache: settings.hash_cache,
            key: format!("xet-{nanos}-{}", std::process::id()),
            token_ttl_ms: AtomicU64::new(settings.token_ttl.as_millis() as u64),
            fetch_url_ttl_ms: AtomicU64::new(DEFAULT_FETCH_URL_TTL.as_millis() as u64),
            http,
        }))
    }

    /// Stops the internal server and the runtime (without waiting for running work).
    pub(crate) fn shutdown(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            rt.shutdown_background();
        }
    }

    /// Runs `fut` on the CAS runtime and waits for it.
    async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, XetError> {
        self.handle.spawn(fut).await.map_err(|_| XetError::Stopped)
    }

    /// Runs `fut` on the CAS runtime and blocks this thread until it is done. Callable from
    /// plain threads and from any tokio runtime's threads (a multi-thread runtime's worker is
    /// handed over with `block_in_place`).
    fn run_blocking<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, XetError> {
        let join = self.handle.spawn(fut);
        let wait = move || futures::executor::block_on(join).map_err(|_| XetError::Stopped);
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// Bytes `start..=end` of a stored xorb, read at their offset; `None` when the xorb is not
    /// a file of the store or the range is not in it (the internal server then answers).
    async fn read_xorb_range(&self, xorb: &str, start: u64, end: u64) -> Option<Bytes> {
        let path = self
            .data_dir
            .join("cas")
            .join("xorbs")
            .join(format!("default.{xorb}"));
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt as _;
            let file = std::fs::File::open(&path).ok()?;
            let len = file.metadata().ok()?.len();
            if start >= len {
                return None;
            }
            let end = end.min(len - 1);
            let mut buffer = vec![0u8; (end - start + 1) as usize];
            file.read_exact_at(&mut buffer, start).ok()?;
            Some(Bytes::from(buffer))
        })
        .await
        .ok()
        .flatten()
    }

    /// Stores `files` (those not stored yet), a session per content, and records their hashes.
    pub(crate) async fn ingest(
        self: &Arc<Self>,
        files: Vec<Arc<RepoFile>>,
    ) -> Result<(), XetError> {
        let me = Arc::clone(self);
        self.run(async move { me.ingest_here(files).await }).await?
    }

    /// [`XetCas::ingest`] for synchronous callers.
    pub(crate) fn ingest_blocking(
        self: &Arc<Self>,
        files: Vec<Arc<RepoFile>>,
    ) -> Result<(), XetError> {
        let me = Arc::clone(self);
        self.run_blocking(async move { me.ingest_here(files).await })?
    }

    /// The file's Xet hash, storing it first if needed; `None` (logged) if it cannot be stored.
    pub(crate) async fn hash_of(self: &Arc<Self>, file: &Arc<RepoFile>) -> Option<String> {
        if let Some(h) = file.xet_hash() {
            return Some(h.to_string());
        }
        if let Err(e) = self.ingest(vec![Arc::clone(file)]).await {
            tracing::error!(path = %file.path, error = %e, "Cannot store a file of a Xet repo in the CAS; serving it as plain LFS");
        }
        file.xet_hash().map(str::to_string)
    }

    async fn ingest_here(&self, files: Vec<Arc<RepoFile>>) -> Result<(), XetError> {
        let _one_session = self.ingest_lock.lock().await;
        // Which contents are new: files already stored, or equal to stored content, are done.
        let mut todo: Vec<(String, Vec<Arc<RepoFile>>)> = Vec::new();
        for f in files {
            if f.xet_hash().is_some() {
                continue;
            }
            let body = f.body.clone();
            let id = tokio::task::spawn_blocking(move || body.content_id())
                .await
                .map_err(|_| XetError::Stopped)?;
            let known = self
                .by_content
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned();
            match (known, todo.iter_mut().find(|(c, _)| *c == id)) {
                (Some(hash), _) => f.set_xet_hash(hash),
                (None, Some((_, same))) => same.push(f),
                (None, None) => todo.push((id, vec![f])),
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let session_err = |step: &str| {
            let step = step.to_string();
            move |e: xet_data::DataError| XetError::Ingest {
                path: step,
                source: boxed(e),
            }
        };
        // One session per content, one after the other: within a session xet-core dedups a
        // file only against xorbs already finished, so two similar files stored together
        // would share nothing. A finalized session's shards land in the shared shard cache,
        // which the next session dedups against chunk by chunk.
        let mut stored = Vec::with_capacity(todo.len());
        let mut bytes = 0u64;
        for (id, same) in todo {
            let config = TranslatorConfig::test_server_config(
                &self.ctx,
                &self.internal_url,
                self.data_dir.join("client"),
            )
            .map_err(session_err("(session setup)"))?
            .disable_progress_aggregation();
            let session = FileUploadSession::new(Arc::new(config))
                .await
                .map_err(session_err("(session setup)"))?;
            let f = &same[0];
            let hash = self.clean(&session, f).await?;
            session
                .finalize()
                .await
                .map_err(session_err("(session finalize)"))?;
            bytes += f.size();
            stored.push((id, hash, same));
        }
        let mut by_content = self.by_content.lock().unwrap_or_else(|e| e.into_inner());
        for (id, hash, same) in stored {
            for f in same {
                f.set_xet_hash(hash.clone());
            }
            by_content.insert(id, hash);
        }
        tracing::info!(
            files = by_content.len(),
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Stored files in the Xet CAS"
        );
        Ok(())
    }

    /// Chunks one file into `session`; returns its Xet hash.
    async fn clean(
        &self,
        session: &Arc<FileUploadSession>,
        f: &Arc<RepoFile>,
    ) -> Result<String, XetError> {
        let err = |e: xet_data::DataError| XetError::Ingest {
            path: f.path.clone(),
            source: boxed(e),
        };
        let sha256 = f.hashes(&self.hash_cache).await.sha256;
        let size = f.size();
        let (_, mut cleaner) = session
            .start_clean(
                Some(f.path.as_str().into()),
                Some(size),
                Sha256Policy::from_hex(&sha256),
            )
            .map_err(err)?;
        let mut offset = 0u64;
        while offset < size {
            let body: FileBody = f.body.clone();
            let n = (size - offset).min(INGEST_BLOCK as u64) as usize;
            let block = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                let got = body.read_at(offset, &mut buf);
                buf.truncate(got);
                buf
            })
            .await
            .map_err(|_| XetError::Stopped)?;
            if block.is_empty() {
                break;
            }
            offset += block.len() as u64;
            cleaner
                .add_data_from_bytes(Bytes::from(block))
                .await
                .map_err(err)?;
        }
        let (info, _metrics) = cleaner.finish().await.map_err(err)?;
        Ok(info.hash)
    }

    fn sign(&self, what: &str) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("{}\n{what}", self.key));
        hex::encode(&digest[..16])
    }

    /// A read token and its expiry (unix seconds).
    pub(crate) fn issue_token(&self) -> (String, u64) {
        let ttl_ms = self.token_ttl_ms.load(Ordering::Relaxed);
        let exp = (now_ms() + ttl_ms).div_ceil(1000);
        let token = format!("xet_read_{exp}_{}", self.sign(&format!("token\n{exp}")));
        (token, exp)
    }

    /// Whether `authorization` carries a read token of ours that has not expired.
    fn token_ok(&self, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        }) else {
            return false;
        };
        let Some((exp, sig)) = token
            .trim()
            .strip_prefix("xet_read_")
            .and_then(|t| t.split_once('_'))
        else {
            return false;
        };
        let Ok(exp_secs) = exp.parse::<u64>() else {
            return false;
        };
        sig == self.sign(&format!("token\n{exp_secs}")) && now_ms() < exp_secs * 1000
    }

    /// The presigned URL a client gets for a fetch URL of the internal server: on the CAS
    /// listener as the client named it (`host`), with an expiry and a signature.
    fn presign(&self, upstream: &str, host: &str) -> String {
        let query = upstream.split_once('?').map_or("", |(_, q)| q);
        let expires = now_ms().saturating_add(self.fetch_url_ttl_ms.load(Ordering::Relaxed));
        let sig = self.sign(&format!("fetch\n{query}\n{expires}"));
        format!("http://{host}/v1/fetch_term?{query}&X-Xet-Expires={expires}&X-Xet-Signature={sig}")
    }

    /// The internal query of a presigned fetch URL's query, or why it is refused.
    fn check_presigned<'q>(&self, query: Option<&'q str>) -> Result<&'q str, &'static str> {
        let query = query.unwrap_or_default();
        let Some((inner, signed)) = query.split_once("&X-Xet-Expires=") else {
            return Err("Missing X-Xet-Expires and X-Xet-Signature query parameters");
        };
        let (expires, sig) = signed
            .split_once("&X-Xet-Signature=")
            .ok_or("Missing X-Xet-Signature query parameter")?;
        let expires_ms: u64 = expires.parse().map_err(|_| "Invalid X-Xet-Expires")?;
        if sig != self.sign(&format!("fetch\n{inner}\n{expires_ms}")) {
            return Err("Invalid signature");
        }
        if now_ms() > expires_ms {
            return Err("Request has expired");
        }
        Ok(inner)
    }

    /// Presigns every fetch URL of a V1 (`fetch_info`) or V2 (`xorbs`) reconstruction.
    fn presign_reconstruction(&self, v: &mut Value, host: &str) {
        for key in ["fetch_info", "xorbs"] {
            let Some(map) = v.get_mut(key).and_then(Value::as_object_mut) else {
                continue;
            };
            for item in map.values_mut().filter_map(Value::as_array_mut).flatten() {
                if let Some(url) = item.get_mut("url")
                    && let Some(u) = url.as_str()
                {
                    *url = Value::String(self.presign(u, host));
                }
            }
        }
    }
}

impl Drop for XetCas {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Test knobs and self-checks of the emulator's Xet CAS; get it with `Emulator::xet()`.
#[derive(Clone)]
pub struct XetHandle {
    pub(crate) cas: Arc<XetCas>,
    pub(crate) catalog: Arc<Catalog>,
}

impl std::fmt::Debug for XetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XetHandle")
            .field("cas_url", &self.cas.cas_url)
            .field("data_dir", &self.cas.data_dir)
            .finish()
    }
}

fn merkle(hash: &str) -> Result<MerkleHash, XetError> {
    MerkleHash::from_hex(hash).map_err(|_| XetError::BadHash(hash.to_string()))
}

impl XetHandle {
    /// The CAS listener's base URL, `http://127.0.0.1:PORT` (the `casUrl` of read tokens).
    pub fn cas_url(&self) -> String {
        self.cas.cas_url.clone()
    }

    /// The CAS data folder (xorbs, shards, the upload sessions' shard cache).
    pub fn data_dir(&self) -> &Path {
        &self.cas.data_dir
    }

    /// The Xet hash of a file at a revision, if it is an LFS file of a repo marked Xet (stored
    /// now if it was not yet; blocks until then).
    pub fn xet_hash(&self, kind: RepoKind, id: &str, revision: &str, path: &str) -> Option<String> {
        let xet_repo = self.catalog.with_repo(kind, id, |r| r.xet)?;
        let f = self.catalog.file(kind, id, revision, path)?;
        if !xet_repo || !f.lfs {
            return None;
        }
        if f.xet_hash().is_none()
            && let Err(e) = self.cas.ingest_blocking(vec![Arc::clone(&f)])
        {
            tracing::error!(path, error = %e, "Cannot store a file in the Xet CAS");
        }
        f.xet_hash().map(str::to_string)
    }

    /// Makes `/v2/reconstructions/*` answer `status` (e.g. 404), so clients fall back to V1;
    /// 0 enables V2 again.
    pub fn disable_v2(&self, status: u16) {
        self.cas.client.disable_v2_endpoints(status);
    }

    /// How long fetch URLs handed out from now on stay valid (403 afterwards).
    pub fn set_fetch_term_url_expiration(&self, ttl: Duration) {
        self.cas
            .fetch_url_ttl_ms
            .store(ttl.as_millis() as u64, Ordering::Relaxed);
    }

    /// How long read tokens handed out from now on stay valid (401 afterwards).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.cas
            .token_ttl_ms
            .store(ttl.as_millis() as u64, Ordering::Relaxed);
    }

    /// A read token for the CAS listener and its expiry (unix seconds), as the Hub's
    /// `xet-read-token` route gives.
    pub fn read_token(&self) -> (String, u64) {
        self.cas.issue_token()
    }

    /// The V2 reconstruction of a file (of `range` of it, end exclusive), as the store
    /// computes it, in the JSON wire format (`terms`, `xorbs`, `offset_into_first_range`); its
    /// URLs are the store's internal ones. `None` if the range is past the end.
    pub async fn reconstruction_v2(
        &self,
        hash: &str,
        range: Option<Range<u64>>,
    ) -> Result<Option<Value>, XetError> {
        let file = merkle(hash)?;
        let client = Arc::clone(&self.cas.client);
        let hash = hash.to_string();
        self.cas
            .run(async move {
                let range = range.map(|r| FileRange::new(r.start, r.end));
                let r = client
                    .get_reconstruction_v2(&file, range)
                    .await
                    .map_err(|e| XetError::Query {
                        hash: hash.clone(),
                        source: boxed(e),
                    })?;
                r.map(serde_json::to_value)
                    .transpose()
                    .map_err(|e| XetError::Query {
                        hash,
                        source: boxed(e),
                    })
            })
            .await?
    }

    /// The bytes of a file as the store reassembles them (a self-check of an ingest).
    pub async fn file_data(&self, hash: &str) -> Result<Bytes, XetError> {
        let file = merkle(hash)?;
        let client = Arc::clone(&self.cas.client);
        let hash = hash.to_string();
        self.cas
            .run(async move {
                client
                    .get_file_data(&file, None)
                    .await
                    .map_err(|e| XetError::Query {
                        hash,
                        source: boxed(e),
                    })
            })
            .await?
    }
}

/// The Hub's `GET /api/{T}/{id}/xet-read-token/{rev}` answer: the token, its expiry and the
/// CAS URL, in the JSON body (`CasJWTInfo`) and in the `X-Xet-*` headers `huggingface_hub`
/// reads.
pub(crate) fn read_token_response(cas: &XetCas) -> Response {
    let (token, exp) = cas.issue_token();
    let body = serde_json::json!({"accessToken": token, "exp": exp, "casUrl": cas.cas_url});
    let mut r = axum::Json(body).into_response();
    let h = r.headers_mut();
    for (name, value) in [
        ("x-xet-access-token", token),
        ("x-xet-token-expiration", exp.to_string()),
        ("x-xet-cas-url", cas.cas_url.clone()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    r
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

/// `bytes=a-b` (one range, both ends given) as `(a, b)`, `b` inclusive.
fn single_range(value: &str) -> Option<(u64, u64)> {
    let (a, b) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
    if b.contains(',') {
        return None;
    }
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

/// The xorb a presigned fetch URL's `term` names: the term is URL-safe base64 (no padding) of
/// `<xorb hex>[:<ranges>]`.
fn term_xorb(query: &str) -> Option<String> {
    let term = query.split('&').find_map(|p| p.strip_prefix("term="))?;
    let mut bits = 0u32;
    let mut count = 0;
    let mut decoded = Vec::with_capacity(term.len() * 3 / 4);
    for c in term.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            decoded.push((bits >> count) as u8);
        }
    }
    let text = String::from_utf8(decoded).ok()?;
    let hash = text.split(':').next()?;
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hash.to_string())
}

/// The routes of the internal server a client may use through the CAS listener.
enum CasRoute {
    /// `GET /v1/reconstructions/{hash}`, `/v2/reconstructions/{hash}`, `/v1/reconstructions?file_id=`.
    Reconstruction,
    /// `HEAD /v1/files/{hash}`.
    FileSize,
    /// `GET /v1/fetch_term?...` (presigned).
    FetchTerm,
    /// `GET /health`.
    Health,
    /// `POST /v1/telemetry`: accepted and dropped.
    Telemetry,
}

/// The route of a request to the CAS listener, or the status and message refusing it.
fn cas_route_of(method: &Method, path: &str) -> Result<CasRoute, (StatusCode, &'static str)> {
    let get = method == Method::GET || method == Method::HEAD;
    if path.starts_with("/simulation") {
        return Err((StatusCode::NOT_FOUND, "Not Found"));
    }
    if get
        && (path.starts_with("/v1/reconstructions/")
            || path.starts_with("/v2/reconstructions/")
            || path == "/v1/reconstructions")
    {
        return Ok(CasRoute::Reconstruction);
    }
    if method == Method::HEAD && path.starts_with("/v1/files/") {
        return Ok(CasRoute::FileSize);
    }
    if get && path == "/v1/fetch_term" {
        return Ok(CasRoute::FetchTerm);
    }
    if get && path == "/health" {
        return Ok(CasRoute::Health);
    }
    if method == Method::POST && path == "/v1/telemetry" {
        return Ok(CasRoute::Telemetry);
    }
    let upload = [
        "/v1/xorbs/",
        "/v1/xorb-grants/",
        "/v1/xorb-commits/",
        "/v1/chunks/",
    ]
    .iter()
    .any(|p| path.starts_with(p))
        || matches!(path, "/v1/shards" | "/v2/shards");
    if upload {
        return Err((
            StatusCode::FORBIDDEN,
            "Read-only: this CAS does not accept uploads",
        ));
    }
    Err((StatusCode::NOT_FOUND, "Not Found"))
}

/// The CAS listener: checks the route, the token or the URL signature, forwards to the
/// internal server and streams the answer back through the fault table and the log.
pub(crate) async fn cas_route(
    s: &Arc<Shared>,
    cas: &Arc<XetCas>,
    parts: &Parts,
    entry: &Arc<Entry>,
    decoded_path: &str,
) -> Response {
    let path = parts.uri.path();
    let route = match cas_route_of(&parts.method, path) {
        Ok(r) => r,
        Err((status, message)) => return plain(status, message),
    };
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let host = header(header::HOST)
        .unwrap_or_else(|| cas.cas_url.trim_start_matches("http://").to_string());
    let query = match route {
        CasRoute::Telemetry => return StatusCode::OK.into_response(),
        CasRoute::Reconstruction | CasRoute::FileSize => {
            if !cas.token_ok(header(header::AUTHORIZATION).as_deref()) {
                return plain(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized: missing, invalid or expired token",
                );
            }
            parts.uri.query().map(str::to_string)
        }
        CasRoute::FetchTerm => match cas.check_presigned(parts.uri.query()) {
            Ok(inner) => Some(inner.to_string()),
            Err(reason) => {
                let body =
                    format!("<Error><Code>AccessDenied</Code><Message>{reason}</Message></Error>");
                return (StatusCode::FORBIDDEN, body).into_response();
            }
        },
        CasRoute::Health => None,
    };
    let faults = if parts.method == Method::GET {
        s.faults.for_body(decoded_path)
    } else {
        crate::faults::BodyFaults::default()
    };
    let range = header(header::RANGE).filter(|_| !faults.ignore_range);
    // One range of a xorb is read from the store's file at its offset. The local server reads
    // the whole xorb (up to 64 MiB) into memory for every range it serves, on its runtime's
    // threads: with it, the emulator and not the client would be what a Xet benchmark measures.
    let direct = match (&route, parts.method == Method::GET) {
        (CasRoute::FetchTerm, true) => match (
            range.as_deref().and_then(single_range),
            query.as_deref().and_then(term_xorb),
        ) {
            (Some((start, end)), Some(xorb)) => cas.read_xorb_range(&xorb, start, end).await,
            _ => None,
        },
        _ => None,
    };
    let (status, content_type, length, source) = if let Some(bytes) = direct {
        (
            StatusCode::PARTIAL_CONTENT,
            Some(HeaderValue::from_static("application/octet-stream")),
            Some(bytes.len() as u64),
            BodySource::Stream {
                upstream: Box::pin(futures::stream::empty()),
                pending: bytes,
            },
        )
    } else {
        let url = match &query {
            Some(q) => format!("{}{path}?{q}", cas.internal_url),
            None => format!("{}{path}", cas.internal_url),
        };
        let mut req = cas.http.request(parts.method.clone(), url);
        // The internal server builds fetch URLs from `Host`: they then name this listener.
        req = req.header(header::HOST, &host);
        if let Some(range) = &range {
            req = req.header(header::RANGE, range);
        }
        let upstream = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "The internal Xet CAS server did not answer");
                return plain(StatusCode::BAD_GATEWAY, "Bad Gateway");
            }
        };
        let mut status = upstream.status();
        // The internal server answers a V1 fetch with a `Range` 200; the CDN it stands for
        // answers 206, as for any range.
        if matches!(route, CasRoute::FetchTerm) && range.is_some() && status == StatusCode::OK {
            status = StatusCode::PARTIAL_CONTENT;
        }
        let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
        // From the header: reqwest's `content_length` is the body's, 0 for a HEAD.
        let mut length = upstream
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let source = if matches!(route, CasRoute::Reconstruction) && status == StatusCode::OK {
            // A reconstruction is small JSON: read it whole to presign its fetch URLs.
            let body = match upstream.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "The internal Xet CAS server broke off a reconstruction");
                    return plain(StatusCode::BAD_GATEWAY, "Bad Gateway");
                }
            };
            let body = match serde_json::from_slice::<Value>(&body) {
                Ok(mut v) => {
                    cas.presign_reconstruction(&mut v, &host);
                    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
                }
                Err(_) => body,
            };
            length = Some(body.len() as u64);
            BodySource::Stream {
                upstream: Box::pin(futures::stream::empty()),
                pending: body,
            }
        } else {
            use futures::TryStreamExt as _;
            BodySource::Stream {
                upstream: Box::pin(upstream.bytes_stream().map_err(std::io::Error::other)),
                pending: Bytes::new(),
            }
        };
        (status, content_type, length, source)
    };
    let is_get = parts.method == Method::GET;
    let body = if is_get {
        Body::from_stream(body_stream(
            source,
            0,
            length.unwrap_or(u64::MAX),
            faults,
            Arc::clone(&s.faults),
            Arc::clone(&s.log),
            Arc::clone(entry),
        ))
    } else {
        Body::empty()
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Some(ct) = content_type {
        h.insert(header::CONTENT_TYPE, ct);
    }
    if let Some(n) = length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let (Some(n), Some(start)) = (
            length,
            range
                .as_deref()
                .and_then(|r| r.trim().strip_prefix("bytes="))
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, _)| a.trim().parse::<u64>().ok()),
        )
        && n > 0
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/*", start + n - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}
