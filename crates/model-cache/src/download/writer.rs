//! The `.incomplete` file of a blob being downloaded: preallocated to its final size, written at
//! offsets from many connections at once, flushed before a chunk is recorded as done.
//!
//! Every write and flush runs on a blocking thread; a write takes the caller's buffer and hands
//! it back, so one buffer per connection is all the memory a transfer uses.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open `.incomplete` file.
#[derive(Clone)]
pub(super) struct BlobWriter {
    file: Arc<File>,
    path: PathBuf,
}

/// Why the writer failed, with ENOSPC told apart so the caller can say how much space is needed.
#[derive(Debug)]
pub(super) enum WriteFailure {
    DiskFull,
    Io(io::Error),
}

impl From<io::Error> for WriteFailure {
    fn from(error: io::Error) -> Self {
        if is_disk_full(&error) {
            WriteFailure::DiskFull
        } else {
            WriteFailure::Io(error)
        }
    }
}

/// Whether an I/O error means the disk (or quota) is full.
pub(super) fn is_disk_full(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull
        || error.kind() == io::ErrorKind::QuotaExceeded
        || error.raw_os_error() == Some(libc::ENOSPC)
        || error.raw_os_error() == Some(libc::EDQUOT)
}

impl BlobWriter {
    /// Opens (creating if needed) the file at `path` and makes it exactly `size` bytes long,
    /// reserving the space up front where the file system allows, so a full disk is reported
    /// before any transfer rather than in the middle of one. Existing content is kept (resume).
    pub(super) fn open_blocking(path: &Path, size: u64) -> Result<Self, WriteFailure> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let current = file.metadata()?.len();
        if current != size {
            file.set_len(size)?;
        }
        if size > 0 {
            // `fallocate` keeps existing data and fails with ENOSPC when the space is not there;
            // file systems without it fall back to the sparse file `set_len` made.
            match fs4::FileExt::allocate(&file, size) {
                Ok(()) => {}
                Err(error) if is_disk_full(&error) => {
                    // Leave no full-length sparse file behind that could be taken for progress.
                    drop(file);
                    let _ = std::fs::remove_file(path);
                    return Err(WriteFailure::DiskFull);
                }
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "Preallocation not supported; using a sparse file");
                }
            }
        }
        Ok(BlobWriter {
            file: Arc::new(file),
            path: path.to_path_buf(),
        })
    }

    pub(super) async fn open(path: PathBuf, size: u64) -> Result<Self, WriteFailure> {
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, size))
            .await
            .map_err(|e| WriteFailure::Io(io::Error::other(e)))?
    }

    /// The identity of the file this writer writes (not of whatever its path names now).
    pub(super) fn identity(&self) -> Option<crate::store::FileIdentity> {
        self.file
            .metadata()
            .ok()
            .and_then(|m| crate::store::FileIdentity::of(&m))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `buffer` at `offset` on a blocking thread and gives the buffer back (cleared) for
    /// reuse.
    pub(super) async fn write_at(
        &self,
        buffer: Vec<u8>,
        offset: u64,
    ) -> Result<Vec<u8>, WriteFailure> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || {
            write_all_at(&file, &buffer, offset)?;
            let mut buffer = buffer;
            buffer.clear();
            Ok(buffer)
        })
        .await
        .map_err(|e| WriteFailure::Io(io::Error::other(e)))?
    }

    /// Flushes written data to the disk (`fdatasync`), so what is recorded afterwards survives a
    /// crash or power loss.
    pub(super) async fn sync(&self) -> Result<(), WriteFailure> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| WriteFailure::Io(io::Error::other(e)))??;
        Ok(())
    }

    /// CRC-32 checksums of `ranges` as they are on disk, computed on a blocking thread.
    pub(super) async fn checksums(&self, ranges: Vec<(u64, u64)>) -> io::Result<Vec<u32>> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || crate::hash::chunk_checksums_blocking(&path, &ranges))
            .await
            .map_err(io::Error::other)?
    }
}

#[cfg(unix)]
fn write_all_at(file: &File, buffer: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buffer, offset)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut buffer: &[u8], mut offset: u64) -> io::Result<()> {
    while !buffer.is_empty() {
        let written = std::os::windows::fs::FileExt::seek_write(file, buffer, offset)?;
        if written == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "Wrote zero bytes"));
        }
        buffer = &buffer[written..];
        offset += written as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn positional_writes_land_at_their_offsets_and_resume_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.incomplete");
        let writer = BlobWriter::open(path.clone(), 10).await.unwrap();
        let buffer = writer.write_at(b"world".to_vec(), 5).await.unwrap();
        assert!(buffer.is_empty());
        writer.write_at(b"hello".to_vec(), 0).await.unwrap();
        writer.sync().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"helloworld");
        drop(writer);
        // Reopening for a resume keeps what is there.
        let writer = BlobWriter::open(path.clone(), 10).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"helloworld");
        let sums = writer.checksums(vec![(0, 5), (5, 10)]).await.unwrap();
        let mut expected = crc32fast::Hasher::new();
        expected.update(b"hello");
        assert_eq!(sums[0], expected.finalize());
    }
}
