//! The local mirror: the cache served as a Hugging Face Hub, on a listener of its own.
//!
//! Point any Hub client at it (`HF_ENDPOINT=http://127.0.0.1:PORT`) and it reads the cache
//! through the Hub's own routes (`routes.rs`); with the mirror token (`HF_TOKEN`), what the cache
//! lacks is fetched through the engine and streamed as it arrives (`pull.rs`). Bytes are sent
//! from memory maps (`bytes.rs`).
//!
//! It is separate from the admin API: another port, another secret. The admin secret is new at
//! every start and never leaves the app; the mirror token is for handing to tools (scripts,
//! notebooks, other machines when the user opts in), so it is kept across starts in
//! `mirror-token` (owner-only) in the app-data folder, and only fetches and reads restricted
//! repos. Without any token the mirror serves what the cache holds of public repos, and
//! nothing else. It listens on loopback unless the user opts in to a LAN address.

mod bytes;
pub(crate) mod planes;
mod pull;
pub(crate) mod routes;
mod webrtc;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use model_cache::engine::Engine;
use model_cache::store::atomic;
use rand::RngCore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ServeError;
use crate::secret::{SecretError, constant_time_eq};

/// How long a stopping mirror lets responses in progress go on.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// How a mirror token starts: `hf_` as Hub tokens do (clients check), `mc_` to tell it apart.
const TOKEN_PREFIX: &str = "hf_mc_";

/// The mirror token's file in the app-data folder.
pub const MIRROR_TOKEN_FILE: &str = "mirror-token";

/// The port the mirror asks for first, so that `HF_ENDPOINT` stays the same across starts; a
/// free one is taken when it is in use.
pub const DEFAULT_MIRROR_PORT: u16 = 7870;

/// The mirror token: whoever sends it (`Authorization: Bearer …`) may read every cached repo and
/// fetch misses through the mirror. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct MirrorToken(String);

impl std::fmt::Debug for MirrorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MirrorToken(<redacted>)")
    }
}

impl MirrorToken {
    /// The token as a client sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The token kept in `data_dir`, made (owner-only) on first use. A file that is not a token
    /// this module wrote, or that others can read, is replaced.
    pub fn load_or_create(data_dir: &Path) -> Result<MirrorToken, SecretError> {
        let path = data_dir.join(MIRROR_TOKEN_FILE);
        if let Some(token) = read_private(&path) {
            return Ok(MirrorToken(token));
        }
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        // Hub clients check the shape of a token: `@huggingface/hub` refuses one that does not
        // start with `hf_`.
        let token = format!("{TOKEN_PREFIX}{}", ::hex::encode(bytes));
        atomic::write_private(&path, token.as_bytes())
            .map_err(|source| SecretError::Write { path, source })?;
        Ok(MirrorToken(token))
    }
}

/// The token in `path`, when it is well formed and only its owner can read it.
fn read_private(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(path).ok()?;
        if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
            return None;
        }
    }
    let text = std::fs::read_to_string(path).ok()?;
    let token = text.trim();
    let hex = token.strip_prefix(TOKEN_PREFIX)?;
    (hex.len() == 48 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| token.to_string())
}

/// How to serve the mirror.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Address to listen on: loopback, [`DEFAULT_MIRROR_PORT`] (or a free port when taken).
    pub bind: SocketAddr,
    /// Take a free port when `bind`'s is in use.
    pub fall_back_to_free_port: bool,
    /// The app-data folder, where the mirror token is kept.
    pub data_dir: PathBuf,
    /// Permit a non-loopback `bind` (the user opted in to serving the LAN).
    pub allow_lan: bool,
}

impl MirrorConfig {
    pub fn new(data_dir: PathBuf) -> MirrorConfig {
        MirrorConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_MIRROR_PORT),
            fall_back_to_free_port: true,
            data_dir,
            allow_lan: false,
        }
    }
}

/// What every request of the mirror shares.
pub(crate) struct MirrorState {
    pub engine: Engine,
    token: MirrorToken,
    /// `Host` values accepted; empty when any is (a LAN bind).
    hosts: Vec<String>,
    /// The base URL links point to when the request's `Host` is not usable.
    url: String,
    /// When each page origin's use was last written to the index.
    origins_noted: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// The address the mirror listens on (WebRTC sockets bind there too).
    ip: IpAddr,
    /// Whether a file (by etag) is worth compressing for a peer (`planes`).
    pub(crate) compressible: planes::Compressible,
}

impl MirrorState {
    /// The state of the peer listener (`crate::peers`): the mirror's routes as a client without
    /// the mirror token sees them (no token matches one made here and never kept), any `Host`.
    pub(crate) fn for_peers(engine: Engine, addr: SocketAddr) -> MirrorState {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        MirrorState {
            engine,
            token: MirrorToken(format!("{TOKEN_PREFIX}{}", ::hex::encode(bytes))),
            hosts: Vec::new(),
            url: format!("https://{addr}"),
            origins_noted: Default::default(),
            ip: addr.ip(),
            compressible: Default::default(),
        }
    }

    /// Whether the request carries the mirror token. Any other token (a client's Hub token,
    /// sent by habit) counts as none.
    pub(crate) fn holds_token(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|presented| {
                constant_time_eq(presented.trim().as_bytes(), self.token.0.as_bytes())
            })
    }

    /// The mirror's base URL as the client named it (for pagination links).
    pub(crate) fn base_url(&self, headers: &HeaderMap) -> String {
        headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|host| self.host_allowed(host))
            .map(|host| format!("http://{host}"))
            .unwrap_or_else(|| self.url.clone())
    }

    /// Records a page origin's use, at most every [`ORIGIN_USE_EVERY`].
    fn note_origin_use(&self, origin: &str) {
        let now = std::time::Instant::now();
        let mut last = self.origins_noted.lock().unwrap_or_else(|e| e.into_inner());
        if last
            .get(origin)
            .is_some_and(|at| now.duration_since(*at) < ORIGIN_USE_EVERY)
        {
            return;
        }
        last.insert(origin.to_string(), now);
        drop(last);
        self.engine.record_origin_use(origin);
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }
}

/// A running mirror. Dropping it leaves it running; call [`MirrorServer::shutdown`].
#[derive(Debug)]
pub struct MirrorServer {
    url: String,
    addr: SocketAddr,
    token: MirrorToken,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl MirrorServer {
    /// Base URL, e.g. `http://127.0.0.1:7870`: what `HF_ENDPOINT` is set to.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The mirror token (also in `mirror-token` in the app-data folder).
    pub fn token(&self) -> &MirrorToken {
        &self.token
    }

    /// Stops accepting connections, lets responses in progress finish for a moment, then ends
    /// the ones still open (a client resumes with `Range`).
    pub async fn shutdown(self) {
        stop_gracefully(self.shutdown, self.task).await;
    }
}

/// Stops a listener: no new connections, [`SHUTDOWN_GRACE`] for the responses in progress,
/// then the ones still open are ended. The mirror's and the peers' listeners stop this way.
pub(crate) async fn stop_gracefully(shutdown: CancellationToken, mut task: JoinHandle<()>) {
    shutdown.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
        .await
        .is_err()
    {
        task.abort();
        let _ = task.await;
    }
}

/// Starts the mirror over `engine`.
pub async fn serve_mirror(
    engine: Engine,
    config: MirrorConfig,
) -> Result<MirrorServer, ServeError> {
    if !config.bind.ip().is_loopback() && !config.allow_lan {
        return Err(ServeError::NonLoopback { addr: config.bind });
    }
    crate::secret::create_private_dir(&config.data_dir)?;
    let token = MirrorToken::load_or_create(&config.data_dir)?;
    let listener = match tokio::net::TcpListener::bind(config.bind).await {
        Ok(listener) => listener,
        Err(error)
            if config.fall_back_to_free_port && error.kind() == std::io::ErrorKind::AddrInUse =>
        {
            let free = SocketAddr::new(config.bind.ip(), 0);
            tokio::net::TcpListener::bind(free)
                .await
                .map_err(|source| ServeError::Bind { addr: free, source })?
        }
        Err(source) => {
            return Err(ServeError::Bind {
                addr: config.bind,
                source,
            });
        }
    };
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.bind,
        source,
    })?;
    let url = crate::base_url(addr);
    let port = addr.port();
    let hosts = if addr.ip().is_loopback() {
        vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ]
    } else {
        Vec::new()
    };
    let state = Arc::new(MirrorState {
        engine,
        token: token.clone(),
        hosts,
        url: url.clone(),
        origins_noted: Default::default(),
        ip: addr.ip(),
        compressible: Default::default(),
    });
    let app = Router::new()
        .route("/api/webrtc/offer", axum::routing::post(webrtc_offer))
        .fallback(routes::handle)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            cors,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            check_host,
        ))
        .with_state(state);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(error) = served.await {
            tracing::warn!(%error, "The mirror stopped");
        }
    });
    tracing::info!(%url, "Mirror listening");
    Ok(MirrorServer {
        url,
        addr,
        token,
        shutdown,
        task,
    })
}

/// Marks a request from a page whose origin reads as a holder of the mirror token.
#[derive(Clone, Copy)]
pub(crate) struct TrustedOrigin;

/// Headers a page may read from the mirror's answers.
const EXPOSED_HEADERS: &str = "X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size, Content-Range, \
    Content-Length, Accept-Ranges, Link, X-Error-Code, X-Error-Message";
/// Request headers a page may send.
const ALLOWED_HEADERS: &str = "Authorization, Range, If-None-Match, Content-Type";
/// How often a page origin's last use is written to the index, at most.
const ORIGIN_USE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// CORS for the web page origins the user allowed, and nothing for any other: a request that
/// carries an `Origin` (a page's request) from an origin not on the list is refused, preflight
/// included. Requests without `Origin` (programs, not pages) pass untouched.
async fn cors(
    axum::extract::State(state): axum::extract::State<Arc<MirrorState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return next.run(request).await;
    };
    let Some(without_token) = state.engine.allowed_origin(&origin) else {
        return routes::hub_error(
            StatusCode::FORBIDDEN,
            None,
            &format!(
                "Pages of `{}` may not use this mirror; allow the origin in Model Cache's settings (Web pages)",
                origin.escape_debug()
            ),
        );
    };
    state.note_origin_use(&origin);
    let preflight = request.method() == axum::http::Method::OPTIONS;
    let private_network = request
        .headers()
        .get("access-control-request-private-network")
        .is_some();
    let mut response = if preflight {
        let mut response = Response::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        if private_network {
            // Chromium's Private Network Access: a public page may reach this loopback server.
            headers.insert(
                "access-control-allow-private-network",
                HeaderValue::from_static("true"),
            );
        }
        response
    } else {
        if without_token {
            request.extensions_mut().insert(TrustedOrigin);
        }
        next.run(request).await
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
    response
}

/// `POST /api/webrtc/offer`: a page's SDP offer in, the answer out (see `webrtc.rs`). Pages of
/// origins not allowed never get here (`cors`).
async fn webrtc_offer(
    axum::extract::State(state): axum::extract::State<Arc<MirrorState>>,
    request: Request,
) -> Response {
    let full = state.holds_token(request.headers())
        || request.extensions().get::<TrustedOrigin>().is_some();
    let body = match axum::body::to_bytes(request.into_body(), 64 * 1024).await {
        Ok(body) => body,
        Err(_) => {
            return routes::hub_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                "An SDP offer is at most 64 KiB",
            );
        }
    };
    let engine = state.engine.clone();
    let ip = if state.ip.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        state.ip
    };
    let answered =
        tokio::task::spawn_blocking(move || webrtc::accept(engine, ip, &body, full)).await;
    match answered {
        Ok(Ok(answer)) => {
            let mut response = Response::new(axum::body::Body::from(answer));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Ok(Err(error @ webrtc::OfferError::BadOffer(_))) => {
            routes::hub_error(StatusCode::BAD_REQUEST, None, &error.to_string())
        }
        Ok(Err(error @ webrtc::OfferError::TooMany)) => {
            routes::hub_error(StatusCode::SERVICE_UNAVAILABLE, None, &error.to_string())
        }
        Ok(Err(error)) => {
            routes::hub_error(StatusCode::INTERNAL_SERVER_ERROR, None, &error.to_string())
        }
        Err(error) => {
            routes::hub_error(StatusCode::INTERNAL_SERVER_ERROR, None, &error.to_string())
        }
    }
}

/// Refuses a `Host` that does not name the mirror on loopback (DNS rebinding).
async fn check_host(
    axum::extract::State(state): axum::extract::State<Arc<MirrorState>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !state.host_allowed(host) {
        return routes::hub_error(
            StatusCode::FORBIDDEN,
            None,
            "This mirror answers only to its own address",
        );
    }
    next.run(request).await
}
