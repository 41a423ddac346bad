//! Giving a file that another program owns a second name, without moving or changing it.
//!
//! Adopting a model another app holds (Ollama's blobs, LM Studio's folder, llama.cpp's cache)
//! must cost no disk where the file system allows it. [`share_file`] tries, in order, a hard link
//! (same file system: one inode, two names), then a reflink (`FICLONE` on Linux: Btrfs, XFS,
//! bcachefs; a copy-on-write clone that shares extents), and copies only when the caller allows
//! it: a copy doubles the disk used, so it is offered to the user with its size, never made
//! silently. [`probe`] answers the same question without creating anything the caller keeps, for
//! a dry run. The source is only ever opened for reading.
//!
//! Every new name is created under a temp name and renamed into place (`atomic`), so a crash
//! never leaves a half-copied file under the final name.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::atomic;

/// How a file got (or would get) its new name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareMethod {
    /// The destination already is this file (or holds the same verified bytes).
    AlreadyThere,
    /// A second name for the same inode: no disk used.
    HardLink,
    /// A copy-on-write clone: no disk used until one side is written.
    Reflink,
    /// A full copy: the file's size in new disk.
    Copy,
    /// Neither a link nor a clone is possible here and copying was not allowed.
    NeedsCopy,
}

impl ShareMethod {
    /// Whether the file costs no new disk this way.
    pub fn is_free(self) -> bool {
        matches!(
            self,
            ShareMethod::AlreadyThere | ShareMethod::HardLink | ShareMethod::Reflink
        )
    }
}

/// Whether `a` and `b` are the same file on disk (device and inode).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => same_identity(&a, &b),
        _ => false,
    }
}

#[cfg(unix)]
fn same_identity(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_identity(_a: &std::fs::Metadata, _b: &std::fs::Metadata) -> bool {
    false
}

/// Gives `from` the new name `to` (whose folder must exist): a hard link, else a reflink, else a
/// copy when `allow_copy`, else nothing and [`ShareMethod::NeedsCopy`]. An existing `to` that is
/// already `from` is left as it is.
pub fn share_file(from: &Path, to: &Path, allow_copy: bool) -> io::Result<ShareMethod> {
    if same_file(from, to) {
        return Ok(ShareMethod::AlreadyThere);
    }
    match atomic::hard_link(from, to) {
        Ok(()) => return Ok(ShareMethod::HardLink),
        Err(e) => {
            tracing::debug!(from = %from.display(), error = %e, "No hard link; trying a reflink")
        }
    }
    match atomic::reflink(from, to) {
        Ok(()) => return Ok(ShareMethod::Reflink),
        Err(e) => tracing::debug!(from = %from.display(), error = %e, "No reflink"),
    }
    if !allow_copy {
        return Ok(ShareMethod::NeedsCopy);
    }
    atomic::copy(from, to)?;
    Ok(ShareMethod::Copy)
}

/// What [`share_file`] would do for `from` into the folder `dir` (which must exist), leaving
/// nothing behind: a hard link or a clone is tried under a temp name and removed.
pub fn probe(from: &Path, dir: &Path, allow_copy: bool) -> io::Result<ShareMethod> {
    let name = from
        .file_name()
        .map_or_else(|| "probe".into(), |n| n.to_string_lossy().into_owned());
    let temp = atomic::temp_path(&dir.join(name));
    let method = if std::fs::hard_link(from, &temp).is_ok() {
        ShareMethod::HardLink
    } else if atomic::clone_into_new(from, &temp).is_ok() {
        ShareMethod::Reflink
    } else if allow_copy {
        ShareMethod::Copy
    } else {
        ShareMethod::NeedsCopy
    };
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_on_the_same_file_system_is_hard_linked_and_left_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a.gguf");
        std::fs::write(&from, b"GGUF bytes").unwrap();
        let to = dir.path().join("b.gguf");
        assert_eq!(
            share_file(&from, &to, false).unwrap(),
            ShareMethod::HardLink
        );
        assert!(same_file(&from, &to));
        assert_eq!(std::fs::read(&from).unwrap(), b"GGUF bytes");
        assert_eq!(
            share_file(&from, &to, false).unwrap(),
            ShareMethod::AlreadyThere
        );
    }

    #[test]
    fn a_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a.gguf");
        std::fs::write(&from, b"x").unwrap();
        let into = dir.path().join("into");
        std::fs::create_dir(&into).unwrap();
        assert_eq!(probe(&from, &into, false).unwrap(), ShareMethod::HardLink);
        assert_eq!(std::fs::read_dir(&into).unwrap().count(), 0);
    }
}
