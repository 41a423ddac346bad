//! The engine's configuration: a plain struct the edges (CLI, app, local API) fill in.
//!
//! **Architecture Invariant:** the engine never reads environment variables or files to configure
//! itself. The edges resolve `HF_HUB_CACHE`, `HF_TOKEN` and friends (see [`crate::env`]) and pass
//! the result here.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Token;

/// The Hub's public endpoint, the default when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Default size of a transfer chunk: 5 MiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 5 * 1024 * 1024;

/// Everything the engine needs to know, resolved by the caller.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The hub-cache root (`~/.cache/huggingface/hub` by default), shared with `huggingface_hub`.
    pub hub_cache: PathBuf,
    /// The app-data folder: index database, settings, logs, the local API secret. Never inside
    /// `hub_cache`.
    pub data_dir: PathBuf,
    /// Base URL of the Hub, without a trailing slash.
    pub endpoint: String,
    /// Mirrors tried in order when the endpoint fails; each is checked against the same hashes.
    pub mirrors: Vec<String>,
    /// Access token, sent only to the endpoint's (or a mirror's) own origin.
    pub token: Option<Token>,
    /// Where a token set by the user (log in) is stored: `$HF_HOME/token`, the file
    /// `huggingface_hub` reads. `None`: the token is kept in memory only.
    pub token_file: Option<PathBuf>,
    /// No network at all: everything is served from the cache.
    pub offline: bool,
    /// Transfer limits.
    pub limits: Limits,
    /// Retry policy for every request.
    pub retry: RetryPolicy,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// User-agent suffix added by the edge (e.g. `mcache/0.1.0`).
    pub user_agent: String,
}

impl Settings {
    /// Settings with defaults for everything but the two folders.
    pub fn new(hub_cache: PathBuf, data_dir: PathBuf) -> Self {
        Settings {
            hub_cache,
            data_dir,
            endpoint: DEFAULT_ENDPOINT.to_string(),
            mirrors: Vec::new(),
            token: None,
            token_file: None,
            offline: false,
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            user_agent: concat!("model-cache/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    /// These settings turned to the demo hub at `endpoint`, with state of its own: the demo's
    /// cache, index, preferences, API secret and token file all live in `<data_dir>/demo/`
    /// (its hub cache in `<data_dir>/demo/hub`), so a demo session never touches the user's
    /// real cache, token or saved settings. No mirror, never offline; a token from the
    /// environment is not sent to the demo (the one saved in the demo's token file is).
    pub fn into_demo(mut self, endpoint: String) -> Settings {
        let demo = self.data_dir.join(DEMO_FOLDER);
        self.hub_cache = demo.join("hub");
        self.token_file = Some(demo.join("token"));
        self.token = std::fs::read_to_string(demo.join("token"))
            .ok()
            .and_then(Token::new);
        self.data_dir = demo;
        self.endpoint = endpoint;
        self.mirrors.clear();
        self.offline = false;
        self
    }
}

/// The folder of the demo's own state, inside the app-data folder (see [`Settings::into_demo`]).
pub const DEMO_FOLDER: &str = "demo";

/// Global transfer limits, shared by every download of one engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Connections open at once across all files.
    pub connections: usize,
    /// Connections open at once to one host.
    pub connections_per_host: usize,
    /// Files downloaded at once.
    pub files_at_once: usize,
    /// Size of a transfer chunk in bytes.
    pub chunk_size: u64,
    /// Bytes per second across all transfers; `None` for unlimited. Changeable while running.
    pub max_bytes_per_second: Option<u64>,
    /// Size of one read buffer per connection; memory is bounded by `connections` × this.
    pub buffer_size: usize,
    /// A stream records how far into its chunk it has written (after an fsync) once this long
    /// has passed and [`Limits::checkpoint_bytes`] were written since its last record, so a
    /// slow link interrupted mid-chunk resumes from there.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: Duration,
    /// See [`Limits::checkpoint_every`].
    #[serde(default = "default_checkpoint_bytes")]
    pub checkpoint_bytes: u64,
}

fn default_checkpoint_every() -> Duration {
    Duration::from_secs(2)
}

fn default_checkpoint_bytes() -> u64 {
    4 * 1024 * 1024
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 16,
            connections_per_host: 16,
            files_at_once: 4,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_bytes_per_second: None,
            buffer_size: 256 * 1024,
            checkpoint_every: default_checkpoint_every(),
            checkpoint_bytes: default_checkpoint_bytes(),
        }
    }
}

/// How requests are retried (see [`crate::hub::retry`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per request (the first one included).
    pub max_attempts: u32,
    /// First backoff delay; doubles each attempt, with jitter.
    pub base_delay: Duration,
    /// Ceiling of one backoff delay (a `Retry-After` may ask for longer, up to `max_retry_after`).
    pub max_delay: Duration,
    /// Longest `Retry-After` the engine honours before giving up.
    pub max_retry_after: Duration,
    /// Failed attempts allowed per file, across all its chunks, before the file fails.
    pub file_budget: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(120),
            file_budget: 50,
        }
    }
}

impl RetryPolicy {
    /// A policy with no waiting between attempts, for tests.
    pub fn immediate() -> Self {
        RetryPolicy {
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            max_retry_after: Duration::from_secs(2),
            ..RetryPolicy::default()
        }
    }
}

/// Timeouts of network operations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Timeouts {
    /// Connecting to a host.
    pub connect: Duration,
    /// Metadata requests (`HEAD` on `resolve`, API calls): `HF_HUB_ETAG_TIMEOUT`.
    pub metadata: Duration,
    /// No bytes received for this long on a transfer: the connection is considered stalled and
    /// replaced (not counted as a failed attempt).
    pub stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            metadata: Duration::from_secs(10),
            stall: Duration::from_secs(20),
        }
    }
}
