//! WebRTC data channels for web pages: the mirror's cached files over an encrypted peer
//! connection, for pages that cannot (or prefer not to) fetch from loopback HTTP.
//!
//! **Signaling** is one request: a page of an allowed origin `POST`s its SDP offer (the
//! `RTCSessionDescription` as JSON, ICE gathering complete: no trickle) to
//! `/api/webrtc/offer`, and gets the answer. The page's access is fixed then, as for HTTP:
//! cached public repos, or everything cached with the mirror token (or an origin the user lets
//! read without it). Files the cache does not hold are not fetched over a data channel.
//!
//! **Requests** on any data channel the page opens, one at a time:
//! - the page sends text `{"id": 1, "repo": "org/name", "revision": "main", "path": "f.gguf",
//!   "range": [start, end]}` (`revision` defaults to `main`; `range`, end exclusive, to the
//!   whole file);
//! - the mirror answers text `{"id": 1, "status": 200, "size": N, "start": s, "end": e,
//!   "sha256": "…" | null, "commit": "…"}`, then the bytes as binary messages of at most
//!   [`MESSAGE`] bytes, in order, then text `{"id": 1, "done": true}`; or
//!   `{"id": 1, "status": 404, "error": "…"}`.
//!
//! The page checks the bytes against `sha256` (`examples/web/mirror-webrtc.js` does).
//! Sending follows the channel's buffered amount: at most [`HIGH_WATER`] bytes wait in it.
//!
//! Each peer connection runs on a thread of its own ([`str0m`] is sans-IO: this module owns
//! the UDP socket and the clock), bound to the mirror's address, and ends when the page
//! disconnects or after [`IDLE`] without traffic. At most [`MAX_PEERS`] run at once.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use model_cache::engine::{Engine, ServedRead};
use model_cache::repo::RepoId;
use model_cache::serve::Access;
use serde::Deserialize;
use serde_json::json;
use str0m::change::SdpOffer;
use str0m::channel::{ChannelData, ChannelId};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

/// Largest binary message sent (browsers take up to 256 KiB; 64 KiB is safe everywhere).
pub(crate) const MESSAGE: usize = 64 * 1024;
/// Bytes allowed to wait in a channel's buffer before sending pauses.
const HIGH_WATER: usize = 1 << 20;
/// Where the buffer must fall to before sending resumes.
const LOW_WATER: usize = 256 * 1024;
/// A connection without traffic for this long is closed.
const IDLE: Duration = Duration::from_secs(60);
/// Peer connections served at once.
pub(crate) const MAX_PEERS: usize = 8;

/// Peer connections running now.
static PEERS: AtomicUsize = AtomicUsize::new(0);

/// A page's request on a channel.
#[derive(Debug, Deserialize)]
struct FileRequest {
    id: u64,
    repo: String,
    #[serde(default = "main")]
    revision: String,
    path: String,
    #[serde(default)]
    range: Option<(u64, u64)>,
}

fn main() -> String {
    "main".to_string()
}

/// Why an offer is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OfferError {
    #[error("The offer is not an SDP offer: {0}")]
    BadOffer(String),
    #[error("Too many WebRTC connections at once ({MAX_PEERS}); close one and try again")]
    TooMany,
    #[error("Cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    #[error("WebRTC failed: {0}")]
    Rtc(String),
}

/// Accepts a page's offer: a peer connection on a new UDP socket at `ip`, served on a thread of
/// its own with the access the request had (`full`: every cached repo). Returns the answer, as
/// the JSON `RTCSessionDescription` the page sets.
pub(crate) fn accept(
    engine: Engine,
    ip: std::net::IpAddr,
    offer: &[u8],
    full: bool,
) -> Result<Vec<u8>, OfferError> {
    static CRYPTO: std::sync::Once = std::sync::Once::new();
    CRYPTO.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
    let offer: SdpOffer =
        serde_json::from_slice(offer).map_err(|e| OfferError::BadOffer(e.to_string()))?;
    if PEERS.fetch_add(1, Ordering::SeqCst) >= MAX_PEERS {
        PEERS.fetch_sub(1, Ordering::SeqCst);
        return Err(OfferError::TooMany);
    }
    let started = (|| {
        let mut rtc = RtcConfig::new().build(Instant::now());
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(OfferError::Socket)?;
        let local = socket.local_addr().map_err(OfferError::Socket)?;
        let candidate =
            Candidate::host(local, "udp").map_err(|e| OfferError::Rtc(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| OfferError::Rtc(e.to_string()))?;
        let body = serde_json::to_vec(&answer).map_err(|e| OfferError::Rtc(e.to_string()))?;
        Ok((rtc, socket, body))
    })();
    let (rtc, socket, body) = match started {
        Ok(started) => started,
        Err(error) => {
            PEERS.fetch_sub(1, Ordering::SeqCst);
            return Err(error);
        }
    };
    std::thread::Builder::new()
        .name("mirror-webrtc".into())
        .spawn(move || {
            let mut peer = Peer {
                rtc,
                socket,
                engine,
                full,
                channels: Vec::new(),
                last_traffic: Instant::now(),
            };
            if let Err(error) = peer.run() {
                tracing::debug!(%error, "A WebRTC connection ended");
            }
            PEERS.fetch_sub(1, Ordering::SeqCst);
        })
        .map_err(OfferError::Socket)?;
    Ok(body)
}

/// A file being sent on a channel.
struct Sending {
    id: u64,
    read: Arc<ServedRead>,
    pos: u64,
    end: u64,
}

/// One data channel: its queued requests and the one being answered.
struct ChannelState {
    id: ChannelId,
    queue: VecDeque<FileRequest>,
    sending: Option<Sending>,
    /// Text messages waiting for room in the channel.
    pending_text: VecDeque<String>,
}

struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    engine: Engine,
    full: bool,
    channels: Vec<ChannelState>,
    last_traffic: Instant,
}

impl Peer {
    fn run(&mut self) -> Result<(), String> {
        let mut buf = vec![0u8; 2000];
        let local = self.socket.local_addr().map_err(|e| e.to_string())?;
        loop {
            if !self.rtc.is_alive() || self.last_traffic.elapsed() > IDLE {
                return Ok(());
            }
            let deadline = loop {
                match self.rtc.poll_output().map_err(|e| e.to_string())? {
                    Output::Timeout(at) => break at,
                    Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    Output::Event(event) => {
                        if !self.event(event) {
                            return Ok(());
                        }
                    }
                }
            };
            if self.pump()? {
                // Sent something: let the connection put it on the wire first.
                continue;
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                self.rtc
                    .handle_input(Input::Timeout(Instant::now()))
                    .map_err(|e| e.to_string())?;
                continue;
            }
            self.socket
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .map_err(|e| e.to_string())?;
            buf.resize(2000, 0);
            let input = match self.socket.recv_from(&mut buf) {
                Ok((n, source)) => {
                    self.last_traffic = Instant::now();
                    let contents = match buf[..n].try_into() {
                        Ok(contents) => contents,
                        Err(_) => continue,
                    };
                    Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: local,
                            contents,
                        },
                    )
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    Input::Timeout(Instant::now())
                }
                Err(e) => return Err(e.to_string()),
            };
            self.rtc.handle_input(input).map_err(|e| e.to_string())?;
        }
    }

    /// Handles one event; `false` ends the connection.
    fn event(&mut self, event: Event) -> bool {
        match event {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => return false,
            Event::ChannelOpen(id, _) => {
                if let Some(mut channel) = self.rtc.channel(id) {
                    channel.set_buffered_amount_low_threshold(LOW_WATER);
                }
                self.channels.push(ChannelState {
                    id,
                    queue: VecDeque::new(),
                    sending: None,
                    pending_text: VecDeque::new(),
                });
            }
            Event::ChannelClose(id) => self.channels.retain(|c| c.id != id),
            Event::ChannelData(data) => self.request(data),
            _ => {}
        }
        true
    }

    fn request(&mut self, data: ChannelData) {
        let Some(channel) = self.channels.iter_mut().find(|c| c.id == data.id) else {
            return;
        };
        match serde_json::from_slice::<FileRequest>(&data.data) {
            Ok(request) => channel.queue.push_back(request),
            Err(error) => channel.pending_text.push_back(
                json!({ "status": 400, "error": format!("Not a file request: {error}") })
                    .to_string(),
            ),
        }
    }

    /// Starts the next request of a channel: the answer's head, or its error.
    fn start(&self, request: &FileRequest) -> Result<(String, Sending), String> {
        let error = |status: u16, message: String| {
            json!({ "id": request.id, "status": status, "error": message }).to_string()
        };
        let repo: RepoId = request
            .repo
            .parse()
            .map_err(|e| error(400, format!("{e}")))?;
        if !self.full && self.engine.access(&repo) != Access::Public {
            return Err(error(
                401,
                format!("`{repo}` is not served to this page without the mirror token"),
            ));
        }
        let not_cached = || {
            error(
                404,
                format!("`{}` of `{repo}` is not in the cache", request.path),
            )
        };
        let commit = self
            .engine
            .cached_commit(&repo, &request.revision)
            .ok_or_else(not_cached)?;
        let file = self
            .engine
            .served_file(&repo, &commit, &request.path)
            .ok_or_else(not_cached)?;
        let (start, end) = request.range.unwrap_or((0, file.size));
        if start >= end || end > file.size {
            return Err(error(
                416,
                format!(
                    "bytes {start}-{end} are not in a file of {} bytes",
                    file.size
                ),
            ));
        }
        let read = self
            .engine
            .open_served(&repo, &commit, &file)
            .map_err(|_| not_cached())?;
        let head = json!({
            "id": request.id,
            "status": 200,
            "size": file.size,
            "start": start,
            "end": end,
            "sha256": file.is_lfs().then_some(&file.etag),
            "etag": file.etag,
            "commit": commit,
        })
        .to_string();
        Ok((
            head,
            Sending {
                id: request.id,
                read: Arc::new(read),
                pos: start,
                end,
            },
        ))
    }

    /// Writes what the channels' buffers have room for; whether anything was written.
    fn pump(&mut self) -> Result<bool, String> {
        let mut wrote = false;
        for index in 0..self.channels.len() {
            let id = self.channels[index].id;
            while let Some(mut channel) = self.rtc.channel(id) {
                if channel.buffered_amount() >= HIGH_WATER {
                    break;
                }
                let state = &mut self.channels[index];
                if let Some(text) = state.pending_text.front() {
                    if channel
                        .write(false, text.as_bytes())
                        .map_err(|e| e.to_string())?
                    {
                        state.pending_text.pop_front();
                        wrote = true;
                        continue;
                    }
                    break;
                }
                if let Some(sending) = &mut state.sending {
                    if sending.pos >= sending.end {
                        let done = json!({ "id": sending.id, "done": true }).to_string();
                        state.sending = None;
                        state.pending_text.push_back(done);
                        continue;
                    }
                    let len = MESSAGE.min((sending.end - sending.pos) as usize);
                    let mut piece = vec![0u8; len];
                    sending
                        .read
                        .file
                        .read_exact_at(&mut piece, sending.pos)
                        .map_err(|e| e.to_string())?;
                    if !channel.write(true, &piece).map_err(|e| e.to_string())? {
                        break;
                    }
                    sending.pos += len as u64;
                    wrote = true;
                    continue;
                }
                let Some(request) = state.queue.pop_front() else {
                    break;
                };
                match self.start(&request) {
                    Ok((head, sending)) => {
                        let state = &mut self.channels[index];
                        state.pending_text.push_back(head);
                        state.sending = Some(sending);
                    }
                    Err(error) => self.channels[index].pending_text.push_back(error),
                }
            }
        }
        if wrote {
            self.last_traffic = Instant::now();
        }
        Ok(wrote)
    }
}
