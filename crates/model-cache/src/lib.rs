//! The Model Cache engine: finds, downloads, verifies and keeps models from the Hugging Face Hub.
//!
//! Data flows from [`settings::Settings`] (filled in by an edge: the CLI, the app, the local
//! API) through the `hub` client (HTTP only, no file I/O) and the `download` engine into the
//! `store` (the standard Hugging Face cache layout, no network I/O), with the `index` (SQLite in
//! the app-data folder) recording what is known, in flight and used.

// Libraries report through their callers (events, return values, `tracing`), never by printing.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod bucket;
pub mod card;
pub mod convert;
pub mod download;
pub mod engine;
pub mod env;
pub mod error;
pub mod fit;
pub mod formats;
pub mod hub;
pub mod import;
pub mod index;
pub mod peers;
pub mod policy;
pub mod repo;
pub mod scheduler;
pub mod secret;
pub mod serve;
pub mod settings;
pub mod store;
pub mod units;
pub mod variants;

/// Declares modules the edges do not need: crate-private, and public only with the
/// `test-support` feature, which the engine's own integration tests and benchmark enable.
macro_rules! internal_modules {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[cfg(feature = "test-support")]
        pub mod $name;
        $(#[$doc])*
        #[cfg(not(feature = "test-support"))]
        #[cfg_attr(
            not(feature = "test-support"),
            expect(unreachable_pub, reason = "public only to the engine's own tests")
        )]
        pub(crate) mod $name;
    )*};
}

internal_modules! {
    /// Checking and repairing the index against the disk (through [`engine::Engine::doctor`]).
    doctor;
    /// Hashing at hardware speed: whole files, prefixes, per-chunk checksums.
    hash;
    /// Download counters and the health summary (seen through [`engine::Stats`]).
    metrics;
}

/// The one place a selection of files is matched; its types are seen as
/// `index::queue::Selection` and `error::SelectionError`.
pub(crate) mod selection;

pub use repo::{RepoId, RepoType};
pub use secret::Token;
pub use settings::{Mirror, Settings};
