//! Blob locks that interlock with `huggingface_hub`.
//!
//! Python takes `filelock.FileLock(<cache>/.locks/<folder>/<etag>.lock)`, an `flock(LOCK_EX)` on
//! POSIX and `LockFileEx` on Windows. `std::fs::File::try_lock` is the same system call on both,
//! so holding a [`BlobLock`] keeps Python (and other Model Cache processes) away from that blob.
//! The lock file is never deleted: deleting it while another process waits on the old inode
//! would let two writers in at once.
//!
//! A lock file is created the way `filelock.FileLock(path)` creates it: mode `0o666`, filtered
//! by the umask (and a folder's default ACL), and never `chmod`ed afterwards. Whoever shares a
//! cache with a group sets a group-friendly umask (`002`), and then every lock file, ours or
//! Python's, is group-writable, so each user can open and lock the files the others created.
//! (`huggingface_hub`'s `WeakFileLock` asks filelock for `0o664` explicitly, which filelock
//! applies with `fchmod` after creating the file; we leave the mode to the user's umask.)

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::StoreError;

/// An exclusive lock on one blob; released when dropped.
#[derive(Debug)]
pub struct BlobLock {
    file: File,
    path: PathBuf,
}

impl BlobLock {
    pub(crate) fn acquire(path: PathBuf, timeout: Duration) -> Result<Self, StoreError> {
        let file = open(&path)?;
        let start = Instant::now();
        let mut delay = Duration::from_millis(5);
        let mut logged = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(BlobLock { file, path }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(StoreError::io("lock", &path, e)),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(StoreError::LockTimeout { path, waited });
            }
            if !logged {
                tracing::debug!(path = %path.display(), "Waiting for a blob lock held by another process");
                logged = true;
            }
            std::thread::sleep(delay.min(timeout.saturating_sub(waited)));
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BlobLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn open(path: &Path) -> Result<File, StoreError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // As filelock does: the umask decides, no `chmod` (see the module header).
        options.mode(0o666);
    }
    options
        .open(path)
        .map_err(|e| StoreError::io("open the lock", path, e))
}
