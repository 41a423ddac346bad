//! `GET /api/events`: the engine's broadcast channel as server-sent events.
//!
//! Each engine event becomes one SSE event whose `data` is the event's JSON. A client that falls
//! too far behind (the broadcast channel lagged) has its stream ended rather than silently
//! missing events: it reconnects and reloads the queue, which the UI does on every reconnect.
//! Streams also end when the server shuts down, so a graceful shutdown does not wait on them.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

/// Turns a subscription into an SSE response body.
pub(crate) fn stream<E>(
    rx: broadcast::Receiver<E>,
    shutdown: CancellationToken,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    E: Serialize + Clone + Send + 'static,
{
    let events = futures::stream::unfold((rx, shutdown), |(mut rx, shutdown)| async move {
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return None,
                next = rx.recv() => next,
            };
            match next {
                Ok(event) => match Event::default().json_data(&event) {
                    Ok(sse) => return Some((Ok(sse), (rx, shutdown))),
                    Err(err) => tracing::warn!(%err, "Cannot serialize an engine event"),
                },
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "An event stream fell behind; closing it so the client resyncs"
                    );
                    return None;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
