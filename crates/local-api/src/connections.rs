//! The accept loop, and the limits that keep slow or unauthenticated clients from tying the
//! server up.
//!
//! Any local process can connect to the port, secret or not, so what a client without the
//! secret can hold is bounded ([`Limits`]):
//!
//! - a client has [`HEADER_READ_TIMEOUT`] to send a request's headers, or its connection is
//!   closed (hyper's `header_read_timeout`; it also closes a keep-alive connection idle that
//!   long, which clients reopen);
//! - at most [`MAX_UNAUTHENTICATED_CONNECTIONS`] connections are open at once that have not yet
//!   sent a request with the secret. A connection holds one of these places from its accept
//!   until its first authenticated request ([`Unauthenticated::authenticated`], called by the
//!   secret check), or until it closes. A connection over the limit gets one 503
//!   (`too_many_connections`, the contract's error body) and is closed, instead of waiting;
//! - at most [`MAX_EVENT_STREAMS`] event streams are open at once (see
//!   [`crate::events::EventStreams`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ApiError;

/// How long a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How many connections may be open at once without having sent the secret.
pub const MAX_UNAUTHENTICATED_CONNECTIONS: usize = 64;
/// How many event streams (`GET /api/events`) may be open at once.
pub const MAX_EVENT_STREAMS: usize = 8;

/// How long a connection over the limit may take to send the request its 503 answers.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// The server's limits on clients; [`Limits::default`] is the constants above. Tests shorten the
/// timeout rather than wait ten seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// How many connections may be open at once without having sent the secret.
    pub max_unauthenticated_connections: usize,
    /// How many event streams may be open at once.
    pub max_event_streams: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_unauthenticated_connections: MAX_UNAUTHENTICATED_CONNECTIONS,
            max_event_streams: MAX_EVENT_STREAMS,
        }
    }
}

/// A connection's place among the unauthenticated ones, in every request's extensions; the
/// first request with the secret gives it up.
#[derive(Debug, Clone)]
pub(crate) struct Unauthenticated(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl Unauthenticated {
    /// The connection sent the secret: it no longer counts against the limit.
    pub(crate) fn authenticated(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

/// Accepts connections and serves `app` on each until `shutdown` fires, then lets every open
/// connection finish its request (event streams end with `shutdown` too).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let unauthenticated = Arc::new(Semaphore::new(limits.max_unauthenticated_connections));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // A connection that failed before it was accepted is the client's problem; any
                // other error (too many open files) is waited out rather than spun on.
                if !is_connection_error(&error) {
                    tracing::warn!(%error, "Cannot accept a connection");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                continue;
            }
        };
        match unauthenticated.clone().try_acquire_owned() {
            Ok(permit) => {
                let place = Unauthenticated(Arc::new(Mutex::new(Some(permit))));
                connections.spawn(serve_connection(
                    stream,
                    app.clone(),
                    place,
                    limits.header_read_timeout,
                    shutdown.clone(),
                ));
            }
            Err(_) => {
                tracing::warn!(
                    limit = limits.max_unauthenticated_connections,
                    "Refused a connection: too many connections without the API secret"
                );
                let timeout = limits.header_read_timeout.min(REFUSAL_TIMEOUT);
                connections.spawn(refuse_connection(stream, limits, timeout));
            }
        }
    }
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    place: Unauthenticated,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(place.clone());
        let mut app = app.clone();
        async move { tower_service::Service::call(&mut app, request).await }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "A connection ended with an error");
    }
}

/// Answers one request with 503 `too_many_connections` and closes the connection.
async fn refuse_connection(stream: TcpStream, limits: Limits, timeout: Duration) {
    let service =
        hyper::service::service_fn(move |_request: hyper::Request<Incoming>| async move {
            let refusal = ApiError::too_many_connections(format!(
                "Too many connections without the API secret (at most {} at once)",
                limits.max_unauthenticated_connections
            ));
            Ok::<_, std::convert::Infallible>(refusal.into_response())
        });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .keep_alive(false);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    if let Ok(Err(error)) = tokio::time::timeout(timeout * 2, connection).await {
        tracing::debug!(%error, "A refused connection ended with an error");
    }
}

fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        error.kind(),
        K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset
    )
}
