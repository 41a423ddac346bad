//! How a snapshot file points at its blob: a relative symlink where the cache's folder allows
//! one, else a regular file with the blob's bytes.
//!
//! `huggingface_hub` decides this once per cache folder (`are_symlinks_supported`: it tries a
//! symlink in a temp folder of the cache) and, where symlinks are refused — Windows without
//! Developer Mode or administrator rights, a FAT or exFAT drive —, warns once and puts the
//! blob's bytes in the snapshot instead (`_create_symlink` moves a new blob there and copies an
//! existing one). A snapshot that holds regular files is read by every HF tool as it is.
//!
//! We do the same: [`LinkMode`] is chosen once per cache root and process ([`LinkMode::for_cache`],
//! memoised), and a cache in [`LinkMode::Copy`] gets a hard link to the blob when the file
//! system has them (no bytes copied; NTFS needs no privilege for one), else a copy. The blob
//! stays in `blobs/` either way, so deduplication and verification still find it.
//!
//! The probe is real where it matters: on Windows it tries a symlink in the cache root (under
//! a temp name of [`atomic`](super::atomic), removed at once). Elsewhere symlinks are assumed,
//! and a symlink that fails anyway (a FAT drive on Linux) turns the cache to `Copy` on the spot
//! ([`LinkMode::symlink_failed`]), with the same one-time warning. Tests choose the mode with
//! [`HubCache::with_link_mode`](super::HubCache::with_link_mode), so the fallback runs on
//! every OS.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// How snapshot files are made in one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// `snapshots/<commit>/<path>` is a relative symlink to `../../blobs/<etag>`.
    Symlink,
    /// `snapshots/<commit>/<path>` is a regular file with the blob's bytes (a hard link to the
    /// blob when possible, else a copy).
    Copy,
}

/// The warning `huggingface_hub` gives once, in our words.
pub const NO_SYMLINKS_WARNING: &str = "Symlinks are not available in this cache folder, so each \
     model file is stored as a copy (or a hard link) in its snapshot. To save disk space on \
     Windows, turn on Developer Mode or run Model Cache as an administrator";

/// The mode chosen for each cache root in this process.
fn modes() -> &'static Mutex<HashMap<PathBuf, LinkMode>> {
    static MODES: OnceLock<Mutex<HashMap<PathBuf, LinkMode>>> = OnceLock::new();
    MODES.get_or_init(Default::default)
}

impl LinkMode {
    /// The mode of the cache at `root`: probed the first time it is asked in this process,
    /// then remembered.
    pub fn for_cache(root: &Path) -> LinkMode {
        let mut modes = modes().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mode) = modes.get(root) {
            return *mode;
        }
        let mode = LinkMode::probe(root);
        if mode == LinkMode::Copy {
            warn_once(root);
        }
        modes.insert(root.to_path_buf(), mode);
        mode
    }

    /// Records that a symlink could not be made in the cache at `root` although the mode said
    /// it could (a drive without symlinks): the cache is `Copy` from now on. Warns the first
    /// time.
    pub fn symlink_failed(root: &Path) {
        let mut modes = modes().lock().unwrap_or_else(|e| e.into_inner());
        if modes.insert(root.to_path_buf(), LinkMode::Copy) != Some(LinkMode::Copy) {
            warn_once(root);
        }
    }

    /// Whether symlinks can be made in `root`: tried on Windows (where Developer Mode or
    /// administrator rights decide), assumed elsewhere.
    #[cfg(windows)]
    pub fn probe(root: &Path) -> LinkMode {
        let probe = super::atomic::temp_path(&root.join("symlink-probe"));
        if std::fs::create_dir_all(root).is_err() {
            return LinkMode::Symlink;
        }
        match std::os::windows::fs::symlink_file("blobs", &probe) {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
                LinkMode::Symlink
            }
            Err(error) => {
                tracing::debug!(%error, root = %root.display(), "symlink probe failed");
                LinkMode::Copy
            }
        }
    }

    /// Whether symlinks can be made in `root`: tried on Windows (where Developer Mode or
    /// administrator rights decide), assumed elsewhere.
    #[cfg(not(windows))]
    pub fn probe(_root: &Path) -> LinkMode {
        LinkMode::Symlink
    }
}

fn warn_once(root: &Path) {
    tracing::warn!(cache = %root.display(), "{NO_SYMLINKS_WARNING}");
}
