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
//! Security model (see [`guard`]): the listener is loopback unless the caller explicitly allows
//! otherwise; every request's `Host` and `Origin` are checked; every `/api/*` request carries the
//! per-install secret ([`secret`]), stored owner-only in the app-data folder.
//!
//! The other side, for tools that talk to a server another process runs (`mcache queue`), is
//! [`client`]: it finds the server through the discovery file and sends the secret.

// Libraries report through their callers (events, return values, `tracing`), never by printing.
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod assets;
pub mod client;
pub mod contract;
pub mod error;
mod events;
mod guard;
pub mod ops;
mod routes;
pub mod secret;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use contract::PullBody;
pub use error::ApiError;
pub use ops::{Api, ApiResult};
pub use secret::{ApiSecret, SecretError};

use assets::UiSource;
use guard::Guard;

/// Name of the discovery file in the app-data folder: `{"url": ..., "pid": ...}`.
pub const DISCOVERY_FILE: &str = "api.json";

/// How to serve the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Address to listen on; `127.0.0.1:0` (a free port) by default.
    pub bind: SocketAddr,
    /// The app-data folder: holds `api-token` and `api.json`.
    pub data_dir: PathBuf,
    /// Serve the UI from this folder instead of the copy embedded at build time (development).
    pub ui_dir: Option<PathBuf>,
    /// Permit a non-loopback `bind`. Off by default: the API then refuses to start on one.
    pub allow_non_loopback: bool,
    /// Further `host:port` names accepted in `Host` (e.g. a LAN name when binding elsewhere).
    pub extra_hosts: Vec<String>,
    /// Write `api.json` so local tools can find the server.
    pub write_discovery: bool,
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
    /// The secret could not be read or created.
    #[error(transparent)]
    Secret(#[from] SecretError),
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
    /// The server stopped with an I/O error.
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
    task: JoinHandle<std::io::Result<()>>,
    discovery: Option<PathBuf>,
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

    /// Stops accepting connections, ends event streams, waits for in-flight requests, and
    /// removes the discovery file.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        let result = match self.task.await {
            Ok(result) => result.map_err(ServeError::Server),
            Err(join) => Err(ServeError::Server(std::io::Error::other(join.to_string()))),
        };
        if let Some(path) = &self.discovery {
            remove_discovery(path);
        }
        result
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
    start(config, move |shutdown| routes::router(api, shutdown)).await
}

/// Binds, then serves `api` (nested under `/api`) and the UI behind the guard.
async fn start(
    config: ApiConfig,
    api: impl FnOnce(CancellationToken) -> Router,
) -> Result<ApiServer, ServeError> {
    if !config.bind.ip().is_loopback() && !config.allow_non_loopback {
        return Err(ServeError::NonLoopback { addr: config.bind });
    }
    let secret = ApiSecret::load_or_create(&config.data_dir)?;
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
    let url = match addr.ip() {
        ip if ip.is_unspecified() => format!("http://127.0.0.1:{}", addr.port()),
        _ => format!("http://{addr}"),
    };
    let shutdown = CancellationToken::new();
    let guard = Guard::new(secret.clone(), addr, &config.extra_hosts);
    let ui = match &config.ui_dir {
        Some(dir) => UiSource::Dir(dir.clone()),
        None => UiSource::Embedded,
    };
    let app = app(api(shutdown.clone()), guard, ui);

    let discovery = if config.write_discovery {
        let path = config.data_dir.join(DISCOVERY_FILE);
        let body = serde_json::json!({ "url": url, "pid": std::process::id() });
        model_cache::store::atomic::write_private(&path, body.to_string().as_bytes()).map_err(
            |source| ServeError::Discovery {
                path: path.clone(),
                source,
            },
        )?;
        Some(path)
    } else {
        None
    };

    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    tracing::info!(%url, "Local API listening");
    Ok(ApiServer {
        addr,
        url,
        secret,
        shutdown,
        task,
        discovery,
    })
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

fn remove_discovery(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("pid").and_then(serde_json::Value::as_u64))
        == Some(u64::from(std::process::id()));
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests;
