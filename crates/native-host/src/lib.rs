//! The browser's way into Model Cache: a native-messaging host.
//!
//! A browser extension calls `chrome.runtime.connectNative("dev.modelcache.host")`; the browser
//! starts the host named by a host manifest ([`manifest`]) and talks to it over its standard
//! input and output. Each message is a 4-byte native-endian length followed by that many bytes
//! of UTF-8 JSON ([`framing`]); the browser accepts at most [`framing::MAX_TO_BROWSER`] bytes
//! per message from the host.
//!
//! The host lives only as long as the extension's port, so it keeps no state of its own: each
//! request ([`protocol::Request`]) is forwarded to the running app's local API (found through
//! its discovery record, `local_api::client::Client::discover`) by [`Host`]. When no app (or
//! `mcache serve`) is running the answer is `{"error": "app_not_running"}`. File bytes never go
//! through the pipe: the host answers with a path on this machine or a URL of the local mirror.
//!
//! Two programs run this host: `mcache native-host` ([`serve`]) and the Python module's
//! `model_cache.native_host`, which does its own framing and asks [`Host::handle`] for the
//! answers, so both give the same answers to the same requests.
//!
//! ```no_run
//! # async fn run(data_dir: std::path::PathBuf) -> std::io::Result<()> {
//! native_host::serve(native_host::Host::new(data_dir), tokio::io::stdin(), tokio::io::stdout()).await
//! # }
//! ```

pub mod framing;
mod host;
pub mod manifest;
pub mod protocol;

pub use host::{Host, serve};

/// The host's name in manifests and in `connectNative`.
pub const HOST_NAME: &str = "dev.modelcache.host";
