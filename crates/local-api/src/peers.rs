//! The peer listener: what this machine serves to the LAN peers it paired with, while sharing
//! is on, and its announcement on the LAN (DNS-SD, `mdns-sd`).
//!
//! It speaks TLS only (`model_cache::peers::tls`): every client presents a certificate, and the
//! routes go by its fingerprint:
//!
//! - `GET /api/peers/hello`, `POST /api/peers/pair` and `POST /api/peers/pair/confirm` answer
//!   any client: the first says who this machine is, the others are the accepting side of
//!   pairing (the short code's key exchange, then the joiner's proof).
//! - Everything else answers paired peers only (403 otherwise): `POST /api/peers/ref-moved`
//!   (a peer's ref moved), `GET /api/peers/refs` (this cache's refs, for a peer catching up)
//!   and the local mirror's own read routes (`mirror::routes`) as a client
//!   without the mirror token sees them: the cached files of public repos, no pull-through.
//!   A peer may ask for a range of an F16/BF16 safetensors file compressed
//!   (`mirror::planes`).
//!
//! Nothing listens and nothing is announced while sharing is off: [`serve_peers`] refuses to
//! start, and the edges stop the listener when the user turns sharing off.
//!
//! Discovery announces `_model-cache._tcp.local.` with the TXT keys `peer_id`, `fp` (the
//! certificate's fingerprint) and `name`, and records every other instance it resolves in the
//! index (`Engine::saw_peer`): a paired peer's address follows it. An announced fingerprint is
//! only a label: trust comes from pairing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use model_cache::engine::Engine;
use model_cache::index::peers::SeenPeer;
use model_cache::peers::client::{
    PAIR_CONFIRM_PATH, PAIR_PATH, PairConfirm, PairRequest, PeerRef, REF_MOVED_PATH, REFS_PATH,
};
use model_cache::peers::{DEFAULT_PEER_PORT, SERVICE_TYPE};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ServeError;
use crate::mirror::{MirrorState, planes, routes};

/// How long a client has for the TLS handshake and then for a request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once; one more is closed at once (a LAN host cannot tie the listener up
/// with idle handshakes, and paired peers use a few connections each).
const MAX_CONNECTIONS: usize = 128;

/// Where discovery announces and looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerDiscovery {
    /// Every interface but loopback's (the LAN).
    Lan,
    /// Loopback only: peers on one machine (tests), told apart by port and `peer_id`.
    Loopback,
    /// No announcement and no browsing: peers are reached at the addresses recorded at pairing.
    Off,
}

/// How to serve peers.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Address to listen on: every interface, [`DEFAULT_PEER_PORT`] (a free port when taken).
    pub bind: SocketAddr,
    pub fall_back_to_free_port: bool,
    pub discovery: PeerDiscovery,
}

impl Default for PeerConfig {
    fn default() -> PeerConfig {
        PeerConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PEER_PORT),
            fall_back_to_free_port: true,
            discovery: PeerDiscovery::Lan,
        }
    }
}

/// A running peer listener. Call [`PeerServer::shutdown`] to stop it (and its announcement).
pub struct PeerServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    discovery: Option<Announcement>,
}

impl std::fmt::Debug for PeerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

struct Announcement {
    daemon: ServiceDaemon,
    browser: std::thread::JoinHandle<()>,
}

impl PeerServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops announcing and accepting, lets transfers in progress finish for a moment, then
    /// ends the ones still open.
    pub async fn shutdown(self) {
        if let Some(announcement) = self.discovery {
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(done) = announcement.daemon.shutdown() {
                    let _ = done.recv_timeout(Duration::from_secs(2));
                }
                let _ = announcement.browser.join();
            })
            .await;
        }
        crate::mirror::stop_gracefully(self.shutdown, self.task).await;
    }
}

/// Why the peer listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum PeerServeError {
    #[error("Sharing is off: nothing is served to peers until it is turned on")]
    SharingOff,
    #[error(transparent)]
    Engine(#[from] model_cache::engine::EngineError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("Cannot announce this machine on the LAN: {0}")]
    Discovery(String),
}

/// The client of one connection, as the TLS handshake showed it.
#[derive(Debug, Clone)]
struct PeerConnection {
    /// The SHA-256 of the certificate it presented.
    fingerprint: String,
    remote: SocketAddr,
}

/// Starts serving paired peers over `engine` (sharing must be on), and announces this machine
/// as `config.discovery` says.
pub async fn serve_peers(engine: Engine, config: PeerConfig) -> Result<PeerServer, PeerServeError> {
    if !engine.sharing() {
        return Err(PeerServeError::SharingOff);
    }
    let identity = engine.peer_identity()?;
    let tls = model_cache::peers::tls::server_config(&identity)
        .map_err(model_cache::engine::EngineError::from)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = match TcpListener::bind(config.bind).await {
        Ok(listener) => listener,
        Err(error)
            if config.fall_back_to_free_port && error.kind() == std::io::ErrorKind::AddrInUse =>
        {
            let free = SocketAddr::new(config.bind.ip(), 0);
            TcpListener::bind(free)
                .await
                .map_err(|source| ServeError::Bind { addr: free, source })?
        }
        Err(source) => {
            return Err(ServeError::Bind {
                addr: config.bind,
                source,
            }
            .into());
        }
    };
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.bind,
        source,
    })?;
    let state = Arc::new(MirrorState::for_peers(engine.clone(), addr));
    let app = Router::new()
        .route("/api/peers/hello", axum::routing::get(hello))
        .route(PAIR_PATH, axum::routing::post(pair))
        .route(PAIR_CONFIRM_PATH, axum::routing::post(pair_confirm))
        .route(REF_MOVED_PATH, axum::routing::post(ref_moved))
        .route(REFS_PATH, axum::routing::get(refs))
        .fallback(routes::handle)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            paired_only,
        ))
        .with_state(state);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(accept_loop(listener, acceptor, app, shutdown.clone()));
    let discovery = match config.discovery {
        PeerDiscovery::Off => None,
        mode => {
            let engine = engine.clone();
            let announced = tokio::task::spawn_blocking(move || announce(engine, mode, addr))
                .await
                .map_err(|e| PeerServeError::Discovery(e.to_string()))?;
            match announced {
                Ok(announcement) => Some(announcement),
                Err(error) => {
                    shutdown.cancel();
                    let _ = task.await;
                    return Err(error);
                }
            }
        }
    };
    tracing::info!(%addr, peer = %identity.peer_id(), "Serving paired peers");
    Ok(PeerServer {
        addr,
        shutdown,
        task,
        discovery,
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    let places = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "Cannot accept a peer connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
            tracing::debug!(%remote, "Too many peer connections; closing one");
            drop(stream);
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _place = place;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "A peer's TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let Some(fingerprint) = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certificates| certificates.first())
                .map(|certificate| model_cache::peers::fingerprint(certificate))
            else {
                return;
            };
            let connection = PeerConnection {
                fingerprint,
                remote,
            };
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(connection.clone());
                let mut app = app.clone();
                async move { tower_service::Service::call(&mut app, request).await }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT);
            let serving = builder.serve_connection(TokioIo::new(tls), service);
            tokio::pin!(serving);
            let result = tokio::select! {
                result = serving.as_mut() => result,
                () = shutdown.cancelled() => {
                    serving.as_mut().graceful_shutdown();
                    serving.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "A peer connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

fn connection(request: &Request) -> Option<&PeerConnection> {
    request.extensions().get::<PeerConnection>()
}

/// Serves paired peers only, but for the two routes any client may use; counts what each
/// paired peer was served.
async fn paired_only(
    State(state): State<Arc<MirrorState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path == "/api/peers/hello" || path == PAIR_PATH || path == PAIR_CONFIRM_PATH {
        return next.run(request).await;
    }
    let Some(peer) = connection(&request).cloned() else {
        return routes::hub_error(StatusCode::FORBIDDEN, None, "Not a peer connection");
    };
    if state.engine.paired_peer(&peer.fingerprint).is_none() {
        return routes::hub_error(
            StatusCode::FORBIDDEN,
            None,
            "This machine serves paired peers only; pair first (mcache peers pair)",
        );
    }
    let is_get = request.method() == axum::http::Method::GET;
    let compress =
        (is_get && planes::asked(request.headers())).then(|| request.uri().path().to_string());
    let response = next.run(request).await;
    // What a response announces, as soon as it starts (a transfer cut short counts whole).
    let served = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| is_get && response.status().is_success());
    if let Some(bytes) = served
        && bytes > 0
    {
        state.engine.peer_served(&peer.fingerprint, bytes);
    }
    match compress {
        Some(path) => planes::encode(&state, &path, response).await,
        None => response,
    }
}

/// `GET /api/peers/hello`: who this machine is.
async fn hello(State(state): State<Arc<MirrorState>>) -> Response {
    let identity = match state.engine.peer_identity() {
        Ok(identity) => identity,
        Err(error) => {
            return routes::hub_error(StatusCode::INTERNAL_SERVER_ERROR, None, &error.to_string());
        }
    };
    axum::Json(serde_json::json!({
        "peer_id": identity.peer_id(),
        "name": state.engine.peer_name(),
    }))
    .into_response()
}

/// The peer connection a request came on and its small JSON body (at most 16 KiB), or the
/// refusal to send.
async fn peer_body<T: serde::de::DeserializeOwned>(
    request: Request,
    what: &str,
) -> Result<(PeerConnection, T), Response> {
    let Some(peer) = connection(&request).cloned() else {
        return Err(routes::hub_error(
            StatusCode::FORBIDDEN,
            None,
            "Not a peer connection",
        ));
    };
    let Ok(body) = axum::body::to_bytes(request.into_body(), 16 * 1024).await else {
        return Err(routes::hub_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            "At most 16 KiB",
        ));
    };
    let Ok(value) = serde_json::from_slice::<T>(&body) else {
        return Err(routes::hub_error(StatusCode::BAD_REQUEST, None, what));
    };
    Ok((peer, value))
}

/// `POST /api/peers/pair`: the accepting side of pairing.
async fn pair(State(state): State<Arc<MirrorState>>, request: Request) -> Response {
    let (peer, asked) = match peer_body::<PairRequest>(request, "Not a pairing request").await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let engine = state.engine.clone();
    let ip = peer.remote.ip();
    let answered =
        tokio::task::spawn_blocking(move || engine.accept_pairing(&peer.fingerprint, ip, &asked))
            .await;
    match answered {
        Ok(Ok(answer)) => axum::Json(answer).into_response(),
        Ok(Err(refused)) => routes::hub_error(StatusCode::FORBIDDEN, None, &refused.to_string()),
        Err(error) => {
            routes::hub_error(StatusCode::INTERNAL_SERVER_ERROR, None, &error.to_string())
        }
    }
}

/// `POST /api/peers/pair/confirm`: the joiner's proof of the key; pairs it.
async fn pair_confirm(State(state): State<Arc<MirrorState>>, request: Request) -> Response {
    let (peer, confirm) =
        match peer_body::<PairConfirm>(request, "Not a pairing confirmation").await {
            Ok(read) => read,
            Err(refused) => return refused,
        };
    let engine = state.engine.clone();
    let confirmed =
        tokio::task::spawn_blocking(move || engine.confirm_pairing(&peer.fingerprint, &confirm))
            .await;
    match confirmed {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(refused)) => routes::hub_error(StatusCode::FORBIDDEN, None, &refused.to_string()),
        Err(error) => {
            routes::hub_error(StatusCode::INTERNAL_SERVER_ERROR, None, &error.to_string())
        }
    }
}

/// `POST /api/peers/ref-moved`: a paired peer's ref moved (see `Engine::peer_ref_moved`).
async fn ref_moved(State(state): State<Arc<MirrorState>>, request: Request) -> Response {
    let (peer, notice) = match peer_body::<PeerRef>(request, "Not a ref notice").await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    match state.engine.peer_ref_moved(&peer.fingerprint, &notice) {
        Ok(()) => {
            // The Hub settles the mark at once when it can be reached.
            let engine = state.engine.clone();
            tokio::spawn(async move {
                if let Err(error) = engine.settle_stale_refs().await {
                    tracing::debug!(%error, "Cannot settle stale refs");
                }
            });
            let mut response = StatusCode::NO_CONTENT.into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => routes::hub_error(StatusCode::BAD_REQUEST, None, &error.to_string()),
    }
}

/// `GET /api/peers/refs`: this cache's branches and tags of public repos, for a paired peer
/// catching up after it was away.
async fn refs(State(state): State<Arc<MirrorState>>) -> Response {
    let engine = state.engine.clone();
    match tokio::task::spawn_blocking(move || engine.shared_refs()).await {
        Ok(Ok(refs)) => axum::Json(refs).into_response(),
        Ok(Err(error)) => {
            routes::hub_error(StatusCode::INTERNAL_SERVER_ERROR, None, &error.to_string())
        }
        Err(error) => {
            routes::hub_error(StatusCode::INTERNAL_SERVER_ERROR, None, &error.to_string())
        }
    }
}

/// Announces this machine and records the peers it sees (a thread of its own reads the
/// browse events).
fn announce(
    engine: Engine,
    mode: PeerDiscovery,
    addr: SocketAddr,
) -> Result<Announcement, PeerServeError> {
    let failed = |error: mdns_sd::Error| PeerServeError::Discovery(error.to_string());
    let identity = engine.peer_identity()?;
    let peer_id = identity.peer_id();
    let daemon = ServiceDaemon::new().map_err(failed)?;
    if mode == PeerDiscovery::Loopback {
        daemon.disable_interface(IfKind::All).map_err(failed)?;
        daemon
            .enable_interface(IfKind::LoopbackV4)
            .map_err(failed)?;
    } else {
        daemon
            .disable_interface(IfKind::LoopbackV4)
            .map_err(failed)?;
        daemon
            .disable_interface(IfKind::LoopbackV6)
            .map_err(failed)?;
    }
    let name = engine.peer_name();
    let properties = [
        ("peer_id", peer_id.as_str()),
        ("fp", identity.fingerprint()),
        ("name", name.as_str()),
    ];
    let host = format!("{peer_id}.local.");
    let info = match (mode, addr.ip()) {
        (PeerDiscovery::Loopback, _) => ServiceInfo::new(
            SERVICE_TYPE,
            &peer_id,
            &host,
            "127.0.0.1",
            addr.port(),
            &properties[..],
        ),
        (_, ip) if !ip.is_unspecified() => ServiceInfo::new(
            SERVICE_TYPE,
            &peer_id,
            &host,
            ip.to_string().as_str(),
            addr.port(),
            &properties[..],
        ),
        _ => ServiceInfo::new(
            SERVICE_TYPE,
            &peer_id,
            &host,
            "",
            addr.port(),
            &properties[..],
        )
        .map(ServiceInfo::enable_addr_auto),
    }
    .map_err(failed)?;
    daemon.register(info).map_err(failed)?;
    let events = daemon.browse(SERVICE_TYPE).map_err(failed)?;
    let own = identity.fingerprint().to_string();
    let browser = std::thread::Builder::new()
        .name("peer-discovery".into())
        .spawn(move || {
            while let Ok(event) = events.recv() {
                match event {
                    ServiceEvent::ServiceResolved(found) => {
                        let (Some(id), Some(fingerprint)) = (
                            found.get_property_val_str("peer_id"),
                            found.get_property_val_str("fp"),
                        ) else {
                            continue;
                        };
                        if fingerprint == own {
                            continue;
                        }
                        let mut addresses: Vec<Ipv4Addr> =
                            found.get_addresses_v4().into_iter().collect();
                        addresses.sort_by_key(|ip| ip.is_loopback() != (mode == PeerDiscovery::Loopback));
                        let Some(ip) = addresses.first() else {
                            continue;
                        };
                        let seen = SeenPeer {
                            peer_id: id.chars().take(16).collect(),
                            fingerprint: fingerprint.chars().take(64).collect(),
                            name: found
                                .get_property_val_str("name")
                                .unwrap_or("peer")
                                .chars()
                                .take(64)
                                .collect(),
                            address: format!("{ip}:{}", found.port),
                            last_seen: model_cache::index::now_ms(),
                        };
                        tracing::debug!(peer = %seen.peer_id, address = %seen.address, "Saw a peer");
                        engine.saw_peer(&seen);
                    }
                    ServiceEvent::ServiceRemoved(_, fullname) => {
                        if let Some(instance) = fullname.split('.').next() {
                            engine.lost_peer(instance);
                        }
                    }
                    ServiceEvent::SearchStopped(_) => break,
                    _ => {}
                }
            }
        })
        .map_err(|error| PeerServeError::Discovery(error.to_string()))?;
    Ok(Announcement { daemon, browser })
}

/// How often stale refs are put to the Hub again while it could not be reached.
const SETTLE_EVERY: Duration = Duration::from_secs(60);

/// How often the refs of the paired peers are compared again while the listener runs.
const CATCH_UP_EVERY: Duration = Duration::from_secs(600);

/// How often [`follow_sharing`] reads whether sharing is on.
const SHARING_POLL: Duration = Duration::from_secs(2);

/// The peer listener following the sharing switch ([`follow_sharing`]). Dropping it leaves it
/// running; [`Sharing::stop`] stops it.
#[derive(Debug)]
pub struct Sharing {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Sharing {
    /// Stops following, and the listener if it runs.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Runs the peer listener while sharing is on, and only then: started when the user turns
/// sharing on (from this process or another: `mcache peers share on` beside the app), stopped
/// when it is turned off. What the app and `mcache serve` run.
pub fn follow_sharing(engine: Engine, config: PeerConfig) -> Sharing {
    let stop = CancellationToken::new();
    let shutdown = stop.clone();
    let task = tokio::spawn(async move {
        let mut running: Option<PeerServer> = None;
        let mut failed_at: Option<std::time::Instant> = None;
        let mut settled_at: Option<std::time::Instant> = None;
        let mut caught_up_at: Option<std::time::Instant> = None;
        loop {
            let on = {
                let engine = engine.clone();
                tokio::task::spawn_blocking(move || engine.sharing())
                    .await
                    .unwrap_or(false)
            };
            match (&running, on) {
                (None, true)
                    if failed_at.is_none_or(|at| at.elapsed() > Duration::from_secs(30)) =>
                {
                    match serve_peers(engine.clone(), config.clone()).await {
                        Ok(server) => {
                            engine.note_peer_port(Some(server.local_addr().port()));
                            running = Some(server);
                            failed_at = None;
                            // Back on the LAN: the ref moves missed while away.
                            match engine.catch_up_refs().await {
                                Ok(0) => {}
                                Ok(marked) => tracing::info!(
                                    marked,
                                    "Refs marked stale after catching up with peers"
                                ),
                                Err(error) => tracing::debug!(%error, "Cannot catch up with peers"),
                            }
                            settled_at = None;
                            caught_up_at = Some(std::time::Instant::now());
                        }
                        Err(error) => {
                            tracing::warn!(%error, "Cannot serve peers");
                            failed_at = Some(std::time::Instant::now());
                        }
                    }
                }
                (Some(_), false) => {
                    if let Some(server) = running.take() {
                        server.shutdown().await;
                    }
                    engine.note_peer_port(None);
                    tracing::info!("Sharing is off: no longer serving peers");
                }
                _ => {}
            }
            // A peer that came back (or this machine's network) may hold moves missed meanwhile.
            if running.is_some()
                && caught_up_at.is_some_and(|at: std::time::Instant| at.elapsed() > CATCH_UP_EVERY)
            {
                caught_up_at = Some(std::time::Instant::now());
                if let Err(error) = engine.catch_up_refs().await {
                    tracing::debug!(%error, "Cannot catch up with peers");
                }
            }
            if running.is_some() && settled_at.is_none_or(|at| at.elapsed() > SETTLE_EVERY) {
                settled_at = Some(std::time::Instant::now());
                if let Err(error) = engine.settle_stale_refs().await {
                    tracing::debug!(%error, "Cannot settle stale refs");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(SHARING_POLL) => {}
            }
        }
        if let Some(server) = running {
            server.shutdown().await;
            engine.note_peer_port(None);
        }
    });
    Sharing { stop, task }
}
