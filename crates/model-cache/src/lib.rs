//! The Model Cache engine.
