//! `GET /api/events`: the engine's broadcast channel as server-sent events.
//!
//! Each engine event becomes one SSE event whose `data` is the event's JSON. A client that falls
//! too far behind (the broadcast channel lagged) has its stream ended rather than silently
//! missing events: it reconnects and reloads the queue, which the UI does on every reconnect.
//! Streams also end when the server shuts down, so a graceful shutdown does not wait on them.
//!
//! A stream holds the connection for as long as it is open, so [`EventStreams`] counts them: at
//! most [`crate::MAX_EVENT_STREAMS`] at once (a browser tab holds one); one more is refused
//! with 503 `too_many_connections` rather than left waiting.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

/// Opens event streams: at most `max` at once, all ending when the server shuts down.
#[derive(Debug, Clone)]
pub(crate) struct EventStreams {
    shutdown: CancellationToken,
    open: Arc<Semaphore>,
    max: usize,
}

impl EventStreams {
    pub(crate) fn new(shutdown: CancellationToken, max: usize) -> EventStreams {
        EventStreams {
            shutdown,
            open: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Turns a subscription into an SSE response body, or refuses it when `max` streams are
    /// open. The stream keeps its place until it ends or its client goes away.
    pub(crate) fn open<E>(
        &self,
        rx: broadcast::Receiver<E>,
    ) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<E>>, ApiError>
    where
        E: Serialize + Clone + Send + 'static,
    {
        let Ok(place) = self.open.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = self.max,
                "Refused an event stream: too many are open"
            );
            return Err(ApiError::too_many_connections(format!(
                "Too many event streams are open (at most {} at once)",
                self.max
            )));
        };
        Ok(stream(rx, self.shutdown.clone(), place))
    }
}

/// Turns a subscription into an SSE response body that holds `place` while it is open.
fn stream<E>(
    rx: broadcast::Receiver<E>,
    shutdown: CancellationToken,
    place: OwnedSemaphorePermit,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    E: Serialize + Clone + Send + 'static,
{
    let state = (rx, shutdown, place);
    let events = futures::stream::unfold(state, |(mut rx, shutdown, place)| async move {
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return None,
                next = rx.recv() => next,
            };
            match next {
                Ok(event) => match Event::default().json_data(&event) {
                    Ok(sse) => return Some((Ok(sse), (rx, shutdown, place))),
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
