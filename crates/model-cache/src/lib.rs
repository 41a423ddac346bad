//! The Model Cache engine: finds, downloads, verifies and keeps models from the Hugging Face Hub.
//!
//! Data flows from [`settings::Settings`] (filled in by an edge: the CLI, the app, the local
//! API) through the `hub` client (HTTP only, no file I/O) and the `download` engine into the
//! `store` (the standard Hugging Face cache layout, no network I/O), with the `index` (SQLite in
//! the app-data folder) recording what is known, in flight and used.

pub mod doctor;
pub mod download;
pub mod engine;
pub mod env;
pub mod error;
pub mod fit;
pub mod formats;
pub mod hash;
pub mod hub;
pub mod index;
pub mod metrics;
pub mod policy;
pub mod repo;
pub mod scheduler;
pub mod secret;
pub mod selection;
pub mod settings;
pub mod store;
pub mod units;
pub mod variants;

pub use repo::{RepoId, RepoType};
pub use secret::Token;
pub use settings::Settings;
