//! A local, faithful Hugging Face Hub for tests, benchmarks and the demo mode.
//!
//! The emulator serves the Hub's HTTP protocol (see `reference/hub-protocol.md` §7.1) on two
//! loopback listeners: the **hub** (`/api/...` and `/{id}/resolve/...`) and a **CDN** on another
//! port, to which LFS files redirect, exactly like the real Hub's `302` to its CDN hosts.
//!
//! With the cargo feature `xet`, a third listener serves a real Xet **CAS** ([`xet`]): repos
//! marked [`Repo::xet`] have their LFS files stored in it, and the hub then sends their Xet
//! metadata (`X-Xet-Hash`, the `xet-auth` link to its `xet-read-token` route, `xetHash` in
//! listings), so Xet clients download them from the CAS. Every other repo, and every repo
//! without the feature, is served exactly as before: plain LFS, no Xet metadata.
//!
//! Data flows like this: an [`EmulatorConfig`] lists [`Repo`]s (commits, branches, tags,
//! `refs/pr/N`), whose files are small bytes or generated [`generate::VirtualFile`]s (valid
//! GGUF and safetensors of any size that cost no disk). Hashes are computed lazily and cached
//! ([`repo::HashCache`]). Every request goes through the [`faults::Faults`] table (latency,
//! bandwidth caps, drops, 5xx/429 bursts, stalls, ignored `Range`, corruption) and is recorded
//! in the [`log::RequestLog`] that tests assert on. Access follows [`auth`]: anonymous,
//! known token or invalid token, with private and gated repos.
//!
//! ```no_run
//! use hub_emulator::{Emulator, EmulatorConfig, faults::{Fault, FaultRule}};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let emulator = Emulator::start(EmulatorConfig::demo()).await?;
//! let url = emulator.url(); // e.g. http://127.0.0.1:41234, use as HF_ENDPOINT
//! // The next two CDN responses drop the connection after 1 MB.
//! emulator
//!     .faults()
//!     .set(FaultRule::global(Fault::DropAfter(1_000_000)).on("/cdn/*").times(2));
//! // ... run a client against `url` ...
//! assert!(!emulator.log().cdn_saw_authorization());
//! println!("{} bytes served", emulator.log().bytes_served());
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! From synchronous code, [`Emulator::start_blocking`] runs the emulator on its own runtime.

// Libraries report through their callers (events, return values, `tracing`), never by printing.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod auth;
pub mod catalog;
pub mod demo;
pub mod faults;
pub mod generate;
pub mod log;
pub mod python;
pub mod repo;
mod search;
mod server;
#[cfg(feature = "xet")]
pub mod xet;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

pub use auth::{TokenAccess, TokenTable};
pub use catalog::{Catalog, CatalogError};
pub use faults::{Fault, FaultRule, Faults};
pub use log::{Listener, RequestLog, RequestRecord};
pub use repo::{FileBody, FileChange, FileHashes, Gate, Repo, RepoFile, RepoKind};
#[cfg(feature = "xet")]
pub use xet::{XetError, XetHandle};

/// Default number of entries per tree page (the Hub's).
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// What the emulator serves and how.
#[derive(Debug)]
pub struct EmulatorConfig {
    /// Repos to serve.
    pub repos: Vec<Repo>,
    /// Accepted tokens.
    pub tokens: TokenTable,
    /// Tree entries per page (at most 50 with `expand=true`).
    pub page_size: usize,
    /// Folder for the hashes of large generated files; `None` keeps them in memory only.
    pub hash_cache_dir: Option<PathBuf>,
    /// Hub port (0 picks a free one).
    pub hub_port: u16,
    /// CDN port (0 picks a free one).
    pub cdn_port: u16,
    /// Faults installed from the start.
    pub faults: Vec<FaultRule>,
    /// How long the CDN accepts a signed URL the Hub's redirects hand out (`Expires` and
    /// `Signature` query parameters, as the real Hub's CDN URLs carry); a request after that
    /// gets 403. `None`: URLs carry no signature and never expire.
    pub signed_url_ttl: Option<std::time::Duration>,
    /// The base URL the Hub's redirects name for the CDN, when the CDN is reached by another
    /// name than its listening address (`http://cdn.test:{port}` through a proxy, or a TLS
    /// front); `None`: `http://127.0.0.1:{cdn port}`.
    pub cdn_base_url: Option<String>,
    /// Xet CAS port (0 picks a free one); used with the feature `xet` only.
    pub cas_port: u16,
    /// Folder for the Xet CAS's data (xorbs, shards, the upload shard cache); `None`: a
    /// temporary folder removed with the emulator. Used with the feature `xet` only.
    pub xet_dir: Option<PathBuf>,
    /// Lifetime of the CAS tokens the `xet-read-token` route hands out (default 1 h). Used
    /// with the feature `xet` only.
    pub xet_token_ttl: std::time::Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            repos: Vec::new(),
            tokens: TokenTable::demo(),
            page_size: DEFAULT_PAGE_SIZE,
            hash_cache_dir: Some(std::env::temp_dir().join("hub-emulator-hash-cache")),
            hub_port: 0,
            cdn_port: 0,
            faults: Vec::new(),
            signed_url_ttl: None,
            cdn_base_url: None,
            cas_port: 0,
            xet_dir: None,
            xet_token_ttl: std::time::Duration::from_secs(3600),
        }
    }
}

impl EmulatorConfig {
    /// The demo catalog ([`demo`]) with `demo/big` of [`demo::DEFAULT_BIG_SIZE`] and the demo
    /// tokens ([`auth::DEMO_TOKEN`], [`auth::OTHER_TOKEN`]).
    pub fn demo() -> Self {
        Self::demo_with_big_size(demo::DEFAULT_BIG_SIZE)
    }

    /// The demo catalog with `demo/big` of about `big_size` bytes.
    pub fn demo_with_big_size(big_size: u64) -> Self {
        Self {
            repos: demo::demo_repos(big_size),
            ..Self::default()
        }
    }
}

/// A running emulator. Dropping it stops its listeners.
pub struct Emulator {
    shared: Arc<server::Shared>,
    hub_addr: SocketAddr,
    cdn_addr: SocketAddr,
    #[cfg(feature = "xet")]
    xet: Option<XetHandle>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("hub", &self.hub_addr)
            .field("cdn", &self.cdn_addr)
            .finish()
    }
}

impl Emulator {
    /// Binds the listeners on 127.0.0.1 and starts serving; they accept connections when
    /// this returns. With the feature `xet`, the CAS is started too and the LFS files of every
    /// repo marked Xet (all commits) are stored in it first.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        let hub = tokio::net::TcpListener::bind(("127.0.0.1", config.hub_port)).await?;
        let cdn = tokio::net::TcpListener::bind(("127.0.0.1", config.cdn_port)).await?;
        let hub_addr = hub.local_addr()?;
        let cdn_addr = cdn.local_addr()?;
        let catalog = Arc::new(Catalog::new(repo::HashCache {
            dir: config.hash_cache_dir.clone(),
        }));
        for r in config.repos {
            catalog.add(r);
        }
        let faults = Arc::new(Faults::default());
        for f in config.faults {
            faults.set(f);
        }
        #[cfg(feature = "xet")]
        let (xet, cas_listener) = {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.cas_port)).await?;
            let cas = xet::XetCas::start(xet::XetSettings {
                dir: config.xet_dir.clone(),
                token_ttl: config.xet_token_ttl,
                cas_url: format!("http://{}", listener.local_addr()?),
                hash_cache: catalog.hash_cache().clone(),
            })
            .await
            .map_err(std::io::Error::other)?;
            let files: Vec<Arc<RepoFile>> = catalog
                .repo_ids()
                .into_iter()
                .filter_map(|(kind, id)| {
                    catalog
                        .with_repo(kind, &id, |r| r.xet.then(|| r.lfs_files()))
                        .flatten()
                })
                .flatten()
                .collect();
            // Each content in its own upload session, all with one shard cache: every file
            // dedups against all stored before it (see `xet`).
            cas.ingest(files).await.map_err(std::io::Error::other)?;
            (Some(cas), listener)
        };
        let shared = Arc::new(server::Shared {
            catalog,
            tokens: RwLock::new(config.tokens),
            faults,
            log: Arc::new(RequestLog::default()),
            page_size: AtomicUsize::new(config.page_size.max(1)),
            hub_url: format!("http://{hub_addr}"),
            cdn_url: config
                .cdn_base_url
                .clone()
                .map(|url| url.trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("http://{cdn_addr}")),
            signing: config.signed_url_ttl.map(server::UrlSigning::new),
            #[cfg(feature = "xet")]
            xet: xet.clone(),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        #[cfg_attr(
            not(feature = "xet"),
            expect(unused_mut, reason = "the CAS listener needs the feature")
        )]
        let mut listeners = vec![(hub, Listener::Hub), (cdn, Listener::Cdn)];
        #[cfg(feature = "xet")]
        listeners.push((cas_listener, Listener::Cas));
        for (listener, handler) in listeners {
            let router = match handler {
                Listener::Hub => axum::Router::new().fallback(server::hub_handler),
                Listener::Cdn => axum::Router::new().fallback(server::cdn_handler),
                Listener::Cas => axum::Router::new().fallback(server::cas_handler),
            }
            .with_state(Arc::clone(&shared));
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!(error = %e, "Emulator listener failed");
                }
            }));
        }
        tracing::info!(hub = %shared.hub_url, cdn = %shared.cdn_url, "Hub emulator listening");
        Ok(Self {
            #[cfg(feature = "xet")]
            xet: xet.map(|cas| XetHandle {
                cas,
                catalog: Arc::clone(&shared.catalog),
            }),
            shared,
            hub_addr,
            cdn_addr,
            stop: Some(stop),
            tasks,
            runtime: None,
        })
    }

    /// Starts the emulator on its own background runtime, for synchronous callers. Do not call
    /// it from inside an async runtime.
    pub fn start_blocking(config: EmulatorConfig) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hub-emulator")
            .enable_all()
            .build()?;
        let mut emulator = runtime.block_on(Self::start(config))?;
        emulator.runtime = Some(runtime);
        Ok(emulator)
    }

    /// The hub base URL, `http://127.0.0.1:PORT` (use it as `HF_ENDPOINT`).
    pub fn url(&self) -> String {
        self.shared.hub_url.clone()
    }

    /// The CDN base URL (another port).
    pub fn cdn_url(&self) -> String {
        self.shared.cdn_url.clone()
    }

    /// The hub's socket address.
    pub fn hub_addr(&self) -> SocketAddr {
        self.hub_addr
    }

    /// The CDN's socket address.
    pub fn cdn_addr(&self) -> SocketAddr {
        self.cdn_addr
    }

    /// The Xet CAS's knobs and self-checks (feature `xet`).
    #[cfg(feature = "xet")]
    pub fn xet(&self) -> Option<&XetHandle> {
        self.xet.as_ref()
    }

    /// The fault table, switchable at run time.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The request log and byte counters.
    pub fn log(&self) -> &RequestLog {
        &self.shared.log
    }

    /// Body bytes served by all listeners so far.
    pub fn bytes_served(&self) -> u64 {
        self.shared.log.bytes_served()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.records()
    }

    /// The repos, for lookups (`file`, `resolve`) and changes.
    pub fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    /// Adds or replaces a repo. A repo marked Xet has its LFS files stored in the CAS before
    /// this returns (feature `xet`).
    pub fn add_repo(&self, repo: Repo) {
        let (kind, id) = (repo.kind, repo.id.clone());
        self.shared.catalog.add(repo);
        self.store_in_cas(kind, &id);
    }

    /// Stores the LFS files of `kind/id` that the CAS lacks, if the repo is marked Xet, and
    /// waits for it. A failure is logged; the files are then tried again when asked for, and
    /// served as plain LFS if that fails too.
    fn store_in_cas(&self, kind: RepoKind, id: &str) {
        #[cfg(feature = "xet")]
        if let Some(cas) = &self.shared.xet
            && let Some(files) = self
                .shared
                .catalog
                .with_repo(kind, id, |r| r.xet.then(|| r.lfs_files()))
                .flatten()
            && let Err(e) = cas.ingest_blocking(files)
        {
            tracing::error!(repo = id, error = %e, "Cannot store a Xet repo's files in the CAS");
        }
        let _ = (kind, id);
    }

    /// Commits `changes` on top of `branch` and moves the branch; returns the new commit.
    pub fn move_branch(
        &self,
        kind: RepoKind,
        id: &str,
        branch: &str,
        title: &str,
        changes: Vec<FileChange>,
    ) -> Result<String, CatalogError> {
        let sha = self
            .shared
            .catalog
            .move_branch(kind, id, branch, title, changes)?;
        self.store_in_cas(kind, id);
        Ok(sha)
    }

    /// Gives a file new bytes upstream (new commit on `branch`, new ETag/sha256; stale CDN
    /// URLs serve the new bytes); returns the new commit. See [`Catalog::change_file`].
    pub fn change_file(
        &self,
        kind: RepoKind,
        id: &str,
        branch: &str,
        path: &str,
    ) -> Result<String, CatalogError> {
        let sha = self.shared.catalog.change_file(kind, id, branch, path)?;
        self.store_in_cas(kind, id);
        Ok(sha)
    }

    /// The hashes of a file at a revision (computed on this thread if needed), or `None`.
    pub fn file_hashes(
        &self,
        kind: RepoKind,
        id: &str,
        revision: &str,
        path: &str,
    ) -> Option<FileHashes> {
        let f = self.shared.catalog.file(kind, id, revision, path)?;
        Some(f.hashes_blocking(self.shared.catalog.hash_cache()))
    }

    /// The name a client gives this file's blob in its cache (sha256 for LFS, git sha1
    /// otherwise).
    pub fn file_etag(
        &self,
        kind: RepoKind,
        id: &str,
        revision: &str,
        path: &str,
    ) -> Option<String> {
        let f = self.shared.catalog.file(kind, id, revision, path)?;
        let h = f.hashes_blocking(self.shared.catalog.hash_cache());
        Some(if f.lfs { h.sha256 } else { h.git_oid })
    }

    /// Sets the tree page size.
    pub fn set_page_size(&self, n: usize) {
        self.shared.page_size.store(n.max(1), Ordering::Relaxed);
    }

    /// Adds or replaces a token.
    pub fn set_token(&self, token: &str, access: TokenAccess) {
        self.shared
            .tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, access);
    }

    /// Stops the listeners and waits for them.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        #[cfg(feature = "xet")]
        if let Some(cas) = &self.shared.xet {
            cas.shutdown();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        for t in &self.tasks {
            t.abort();
        }
        #[cfg(feature = "xet")]
        if let Some(cas) = &self.shared.xet {
            cas.shutdown();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
