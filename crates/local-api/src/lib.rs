//! The Model Cache local API: loopback HTTP/JSON and server-sent events over the engine, and the
//! web UI's static files, as specified in `docs/local-api.md`.
//!
//! Served by the desktop app and by `mcache serve`:
//!
//! ```no_run
//! # async fn run(engine: model_cache::engine::Engine, data_dir: std::path::PathBuf) -> Result<(), local_api::ServeError> {
//! let server = local_api::serve(engine, local_api::ApiConfig::new(data_dir)).await?;
//! println!("{}", server.ui_url()); // http://127.0.0.1:PORT/#token=...
//! server.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! **Architecture Invariant:** this crate is glue. Handlers translate HTTP to calls on the
//! engine's facade and back; no download, storage or policy logic lives here.
//!
//! Security model (see `docs/local-api.md`, "Threat model"): the listener is loopback unless the
//! caller explicitly allows otherwise; every request's `Host` and `Origin` are checked (`guard`);
//! every `/api/*` request carries the secret ([`secret`]) this start wrote, owner-only, into the
//! owner-only app-data folder; one server uses a folder at a time ([`discovery`]); slow and
//! unauthenticated clients are bounded ([`Limits`], `connections`).
//!
//! The other side, for tools that talk to a server another process runs (`mcache queue`), is
//! [`client`]: it finds the server through the discovery record, trusts it only on this machine
//! and while its process lives, and sends the secret.

// Libraries report through their callers (events, return values, `tracing`), never by printing.
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod assets;
pub mod client;
mod connections;
pub mod contract;
pub mod discovery;
pub mod error;
mod events;
mod guard;
pub mod mirror;
pub mod ops;
pub mod peers;
mod routes;
pub mod secret;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use connections::{
    HEADER_READ_TIMEOUT, Limits, MAX_EVENT_STREAMS, MAX_UNAUTHENTICATED_CONNECTIONS,
};
pub use contract::PullBody;
pub use discovery::{DISCOVERY_FILE, Discovery};
pub use error::ApiError;
pub use mirror::{MirrorConfig, MirrorServer, MirrorToken, serve_mirror};
pub use ops::{Api, ApiResult};
pub use secret::{ApiSecret, SecretError};

use assets::UiSource;
use discovery::Instance;
use events::EventStreams;
use guard::Guard;

/// How to serve the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Address to listen on; `127.0.0.1:0` (a free port) by default.
    pub bind: SocketAddr,
    /// The app-data folder: holds `api-token`, `api.json` and `api.lock`; made owner-only.
    pub data_dir: PathBuf,
    /// Serve the UI from this folder instead of the copy embedded at build time (development).
    pub ui_dir: Option<PathBuf>,
    /// Permit a non-loopback `bind`. Off by default: the API then refuses to start on one.
    pub allow_non_loopback: bool,
    /// Further `host:port` names accepted in `Host` (e.g. a LAN name when binding elsewhere).
    pub extra_hosts: Vec<String>,
    /// Write `api.json` so local tools can find the server.
    pub write_discovery: bool,
    /// Limits on slow and unauthenticated clients.
    pub limits: Limits,
    /// The local mirror's URL, when one runs beside the API: written to the discovery record.
    pub mirror_url: Option<String>,
}

impl ApiConfig {
    /// Loopback on a free port, embedded UI, discovery file written.
    pub fn new(data_dir: PathBuf) -> ApiConfig {
        ApiConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            data_dir,
            ui_dir: None,
            allow_non_loopback: false,
            extra_hosts: Vec::new(),
            write_discovery: true,
            limits: Limits::default(),
            mirror_url: None,
        }
    }
}

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The bind address is not loopback and the caller did not allow that.
    #[error(
        "Refusing to listen on the non-loopback address `{addr}`\nhint: the local API is for this machine only; set `allow_non_loopback` (e.g. `--allow-remote`) if you really mean it"
    )]
    NonLoopback {
        /// The refused address.
        addr: SocketAddr,
    },
    /// The data folder could not be prepared or the secret written.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// Another server (the desktop app or `mcache serve`) uses the same app-data folder.
    #[error(
        "Another Model Cache server{} already uses `{}`\nhint: stop it first (quit the app, or Ctrl-C the other `mcache serve`), or use another data folder",
        running.as_ref().map(|r| format!(" ({}, pid {})", r.url, r.pid)).unwrap_or_default(),
        data_dir.display()
    )]
    AlreadyRunning {
        /// The app-data folder.
        data_dir: PathBuf,
        /// The running server's discovery record, when it could be read.
        running: Option<Discovery>,
    },
    /// The server lock could not be opened or taken.
    #[error("Cannot lock `{path}`: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The listener could not be opened.
    #[error("Cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The discovery file could not be written.
    #[error("Cannot write the discovery file `{path}`: {source}")]
    Discovery {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The server task failed.
    #[error("The local API server failed: {0}")]
    Server(#[source] std::io::Error),
}

/// A running server. Dropping it leaves the server running in the background; call
/// [`ApiServer::shutdown`] to stop it.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    url: String,
    secret: ApiSecret,
    shutdown: CancellationToken,
    /// Serves until `shutdown`, then removes the discovery record and releases the folder.
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Base URL, e.g. `http://127.0.0.1:43125` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The UI's address with the secret in the fragment, which browsers never send to a server.
    pub fn ui_url(&self) -> String {
        format!("{}/#token={}", self.url, self.secret.expose())
    }

    /// The API secret (for `Authorization: Bearer ...`).
    pub fn token(&self) -> &str {
        self.secret.expose()
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, ends event streams, waits for in-flight requests, removes
    /// the discovery file and releases the folder to the next server.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.task
            .await
            .map_err(|join| ServeError::Server(std::io::Error::other(join.to_string())))
    }
}

/// Starts the local API over `engine`.
pub async fn serve(
    engine: model_cache::engine::Engine,
    config: ApiConfig,
) -> Result<ApiServer, ServeError> {
    serve_api(Api::new(engine), config).await
}

/// Starts the local API over operations the caller also uses elsewhere (the desktop app's IPC
/// commands share one [`Api`] with the server, so both see the same jobs and events).
pub async fn serve_api(api: Api, config: ApiConfig) -> Result<ApiServer, ServeError> {
    start(config, move |streams| routes::router(api, streams)).await
}

/// Fails with [`ServeError::AlreadyRunning`] when a server uses `data_dir` now. A caller that
/// would do work of its own before serving (open the engine, which runs the queue) checks
/// first; [`serve`] checks again, race-free, by taking the folder for itself.
pub fn check_no_server_running(data_dir: &std::path::Path) -> Result<(), ServeError> {
    if !data_dir.is_dir() {
        return Ok(());
    }
    Instance::claim(data_dir).map(drop)
}

/// Claims the data folder, writes a new secret, binds, then serves `api` (nested under `/api`)
/// and the UI behind the guard.
async fn start(
    config: ApiConfig,
    api: impl FnOnce(EventStreams) -> Router,
) -> Result<ApiServer, ServeError> {
    if !config.bind.ip().is_loopback() && !config.allow_non_loopback {
        return Err(ServeError::NonLoopback { addr: config.bind });
    }
    secret::create_private_dir(&config.data_dir)?;
    // Before the secret: a second server must not replace the secret the first one checks.
    let mut instance = Instance::claim(&config.data_dir)?;
    let secret = ApiSecret::write_new(&config.data_dir)?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.bind,
        source,
    })?;
    let url = base_url(addr);
    let shutdown = CancellationToken::new();
    let guard = Guard::new(secret.clone(), addr, &config.extra_hosts);
    let ui = match &config.ui_dir {
        Some(dir) => UiSource::Dir(dir.clone()),
        None => UiSource::Embedded,
    };
    let streams = EventStreams::new(shutdown.clone(), config.limits.max_event_streams);
    let app = app(api(streams), guard, ui);

    if config.write_discovery {
        instance.announce(&Discovery {
            url: url.clone(),
            pid: std::process::id(),
            secret_file: secret::TOKEN_FILE.to_string(),
            mirror_url: config.mirror_url.clone(),
        })?;
    }

    let stop = shutdown.clone();
    let limits = config.limits;
    let task = tokio::spawn(async move {
        connections::serve(listener, app, limits, stop).await;
        // The record goes, and the folder is released, only once the server has stopped.
        drop(instance);
    });
    tracing::info!(%url, "Local API listening");
    Ok(ApiServer {
        addr,
        url,
        secret,
        shutdown,
        task,
    })
}

/// The URL clients use for a bound address: `http://ADDR`, or loopback for a wildcard bind.
pub(crate) fn base_url(addr: SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() => format!("http://127.0.0.1:{}", addr.port()),
        _ => format!("http://{addr}"),
    }
}

/// The whole application: `/api/*` behind the secret, the UI beside it, all behind Host/Origin.
fn app(api: Router, guard: Guard, ui: UiSource) -> Router {
    let api = api
        .fallback(|| async { ApiError::not_found("No such API route") })
        .layer(from_fn_with_state(guard.clone(), guard::check_secret));
    let ui = Router::new()
        .route("/", get(assets::index))
        .route("/{file}", get(assets::file))
        .with_state(ui);
    Router::new()
        .nest("/api", api)
        .merge(ui)
        .layer(from_fn_with_state(guard, guard::check_site))
}

#[cfg(test)]
mod tests;
