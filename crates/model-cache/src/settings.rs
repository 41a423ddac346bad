//! The engine's configuration: a plain struct the edges (CLI, app, local API) fill in.
//!
//! **Architecture Invariant:** the engine never reads environment variables or files to configure
//! itself. The edges resolve `HF_HUB_CACHE`, `HF_TOKEN` and friends (see [`crate::env`]) and pass
//! the result here.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::hub::proxy::ProxySettings;
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
    /// Who chose [`Settings::hub_cache`]; a chosen folder that is missing at start is not
    /// created in its place (see [`CacheOrigin`]).
    pub hub_cache_origin: CacheOrigin,
    /// The app-data folder: index database, settings, logs, the local API secret. Never inside
    /// `hub_cache`.
    pub data_dir: PathBuf,
    /// Base URL of the Hub, without a trailing slash.
    pub endpoint: String,
    /// Mirrors tried in order when the endpoint fails; each is checked against the same hashes.
    pub mirrors: Vec<Mirror>,
    /// Access token, sent only to the endpoint's own origin and to mirrors marked
    /// [`Mirror::send_token`], never over plain `http` except to loopback.
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
    /// Caps on what is read from a Hub answer.
    pub response_limits: ResponseLimits,
    /// Proxies for the Hub, its CDN and the mirrors (never used for loopback).
    pub proxy: ProxySettings,
    /// A PEM file of certificate authorities trusted in addition to the built-in roots and the
    /// system's store (a company's CA): the `ca_bundle` setting, else `REQUESTS_CA_BUNDLE`,
    /// `CURL_CA_BUNDLE` or `SSL_CERT_FILE`.
    pub ca_bundle: Option<PathBuf>,
    /// A team bucket (S3-compatible): a download source, and where verified downloads are
    /// pushed when [`crate::bucket::BucketSettings::push`] is set.
    pub bucket: Option<crate::bucket::BucketSettings>,
    /// llama.cpp's `convert_hf_to_gguf.py`, offered for architectures the native converter does
    /// not support (`MODEL_CACHE_CONVERT_HF_TO_GGUF`, else found on `PATH`).
    pub llama_cpp_converter: Option<PathBuf>,
    /// How a team bucket is reached (endpoint, region, credentials), for a bucket the
    /// preferences name.
    pub bucket_access: crate::bucket::BucketAccess,
    /// The name LAN peers see for this machine; the host name when `None`.
    pub peer_name: Option<String>,
    /// Delta downloads of files the Hub stores with Xet.
    pub xet: XetSettings,
}

/// Delta downloads of Xet-stored files (see `download::xet`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XetSettings {
    /// Rebuild Xet files from chunks, copying those already in the cache (`HF_HUB_DISABLE_XET`
    /// turns it off). Without the `xet` feature files always come whole over HTTP.
    pub enabled: bool,
    /// The most bytes the chunk index may weigh in the index database; past it the blobs used
    /// longest ago are forgotten.
    pub index_bytes: u64,
}

impl Default for XetSettings {
    fn default() -> Self {
        XetSettings {
            enabled: true,
            index_bytes: 1 << 30,
        }
    }
}

impl Settings {
    /// Settings with defaults for everything but the two folders.
    pub fn new(hub_cache: PathBuf, data_dir: PathBuf) -> Self {
        Settings {
            hub_cache,
            hub_cache_origin: CacheOrigin::Default,
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
            response_limits: ResponseLimits::default(),
            proxy: ProxySettings::default(),
            ca_bundle: None,
            bucket: None,
            llama_cpp_converter: None,
            bucket_access: Default::default(),
            peer_name: None,
            xet: XetSettings::default(),
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
        // The demo's own folder, made on first use: not the user's choice.
        self.hub_cache_origin = CacheOrigin::Default;
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

/// Who chose the hub-cache folder, which decides what happens when it is missing at start
/// (`Engine::open`):
///
/// - [`CacheOrigin::Default`]: created, as `huggingface_hub` creates it.
/// - [`CacheOrigin::Environment`] (`HF_HUB_CACHE`, `HF_HOME`) and [`CacheOrigin::Flag`]
///   (`--cache-dir`): created when the folder it goes in exists, as `huggingface_hub` does;
///   refused when that folder is missing too (an unplugged drive's mount point is gone).
/// - [`CacheOrigin::Preference`] (chosen in the app or with `mcache config set cache_dir`): it
///   existed when chosen, so a missing one means its drive is not there: refused.
///
/// A refused folder is an error (`cache_unavailable`), never a fallback to the default folder
/// and never a new empty folder on the disk the mount point lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheOrigin {
    #[default]
    Default,
    Environment,
    Preference,
    Flag,
}

/// A mirror tried after the endpoint, as saved in the preferences: `{"url": …, "send_token": …}`.
/// A plain URL string (how earlier versions saved a mirror) reads as a mirror that does not
/// receive the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SavedMirror")]
pub struct Mirror {
    /// Base URL, without a trailing slash.
    pub url: String,
    /// Whether the Hub token is sent to this mirror's origin. Off unless the user chose it; even
    /// then the token never goes over plain `http` except to loopback.
    pub send_token: bool,
}

impl Mirror {
    /// A mirror that does not receive the token.
    pub fn new(url: impl Into<String>) -> Mirror {
        Mirror {
            url: url.into(),
            send_token: false,
        }
    }

    /// A mirror that receives the token (over `https`, or plain `http` to loopback).
    pub fn sent_token(url: impl Into<String>) -> Mirror {
        Mirror {
            url: url.into(),
            send_token: true,
        }
    }
}

/// A URL alone is a mirror that does not receive the token.
impl From<&str> for Mirror {
    fn from(url: &str) -> Mirror {
        Mirror::new(url)
    }
}

/// A URL alone is a mirror that does not receive the token.
impl From<String> for Mirror {
    fn from(url: String) -> Mirror {
        Mirror::new(url)
    }
}

/// The forms a saved mirror takes.
#[derive(Deserialize)]
#[serde(untagged)]
enum SavedMirror {
    Url(String),
    Entry {
        url: String,
        #[serde(default)]
        send_token: bool,
    },
}

impl From<SavedMirror> for Mirror {
    fn from(saved: SavedMirror) -> Mirror {
        match saved {
            SavedMirror::Url(url) => Mirror::new(url),
            SavedMirror::Entry { url, send_token } => Mirror { url, send_token },
        }
    }
}

/// Caps on what the Hub client reads from an answer, so a broken or hostile server cannot make
/// the engine hold unbounded memory. A JSON answer or a listing over its cap fails with
/// [`crate::hub::HubError::InvalidResponse`] naming the cap; an error body over its cap is not
/// read past it (the status still decides the error). The defaults are far above what the Hub
/// sends; tests lower them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Bytes of one JSON answer (repo info, one page of a listing): 64 MiB.
    pub json_bytes: u64,
    /// Bytes of an error answer's body read for its message: 64 KiB.
    pub error_text_bytes: u64,
    /// Entries of one tree listing, across all its pages: 1,000,000.
    pub tree_entries: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits {
            json_bytes: 64 * 1024 * 1024,
            error_text_bytes: 64 * 1024,
            tree_entries: 1_000_000,
        }
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
    /// Connections a file's transfer starts with; it adds more while they bring more
    /// throughput (`download/ramp.rs`), up to the limits above. 0 opens them all at once.
    #[serde(default = "default_start_connections")]
    pub start_connections: usize,
}

fn default_start_connections() -> usize {
    4
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
            start_connections: default_start_connections(),
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
