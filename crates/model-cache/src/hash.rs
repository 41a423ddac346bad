//! Content hashing: the digests the Hub publishes (sha256 for LFS files, git-sha1 for files kept
//! in git) and the cheap per-chunk checksums the downloader records to find torn chunks.
//!
//! All hashing here is blocking CPU work. Callers on the async runtime use the `async` wrappers or
//! [`PrefixHasher`], which run on blocking threads, so the runtime's worker threads never hash.
//! `sha2` and `sha1` pick the CPU's SHA extensions at run time where they exist (about 1.5 GB/s per
//! core against about 170 MB/s for the portable code).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Size of the read buffer used when hashing a file from disk.
const READ_BUFFER: usize = 1024 * 1024;

/// Which digest identifies a file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashAlgorithm {
    /// Plain sha256 of the bytes: the identity of LFS files (their `X-Linked-Etag`).
    Sha256,
    /// Git's blob id, `sha1("blob {len}\0" + bytes)`: the identity (`ETag`) of files kept in git.
    GitSha1,
}

impl HashAlgorithm {
    /// Stable lowercase name, used in events and error messages.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::GitSha1 => "git-sha1",
        }
    }
}

/// The digest a file must have, as published by the Hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedDigest {
    pub algorithm: HashAlgorithm,
    /// Lowercase hex.
    pub hex: String,
}

impl ExpectedDigest {
    pub fn sha256(hex: impl Into<String>) -> Self {
        ExpectedDigest {
            algorithm: HashAlgorithm::Sha256,
            hex: hex.into().to_ascii_lowercase(),
        }
    }

    pub fn git_sha1(hex: impl Into<String>) -> Self {
        ExpectedDigest {
            algorithm: HashAlgorithm::GitSha1,
            hex: hex.into().to_ascii_lowercase(),
        }
    }

    /// Whether `actual` (lowercase hex) is this digest.
    pub fn matches(&self, actual: &str) -> bool {
        self.hex.eq_ignore_ascii_case(actual)
    }
}

/// An incremental hasher for one of the Hub's digests. For git-sha1 the `blob {len}\0` header
/// is fed at construction, so the total length must be known up front.
pub struct ContentHasher {
    state: HasherState,
}

enum HasherState {
    Sha256(Sha256),
    GitSha1(Sha1),
}

impl ContentHasher {
    /// A hasher for a file of `len` bytes.
    pub fn new(algorithm: HashAlgorithm, len: u64) -> Self {
        let state = match algorithm {
            HashAlgorithm::Sha256 => HasherState::Sha256(Sha256::new()),
            HashAlgorithm::GitSha1 => {
                let mut sha1 = Sha1::new();
                sha1.update(format!("blob {len}\0").as_bytes());
                HasherState::GitSha1(sha1)
            }
        };
        ContentHasher { state }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.state {
            HasherState::Sha256(h) => h.update(bytes),
            HasherState::GitSha1(h) => h.update(bytes),
        }
    }

    /// The digest as lowercase hex.
    pub fn finalize_hex(self) -> String {
        match self.state {
            HasherState::Sha256(h) => hex::encode(h.finalize()),
            HasherState::GitSha1(h) => hex::encode(h.finalize()),
        }
    }
}

/// One-shot digest of a byte slice (what the tests check the streaming hashers against).
#[cfg(any(test, feature = "test-support"))]
pub fn digest_bytes(algorithm: HashAlgorithm, bytes: &[u8]) -> String {
    let mut hasher = ContentHasher::new(algorithm, bytes.len() as u64);
    hasher.update(bytes);
    hasher.finalize_hex()
}

/// Cheap checksum of a chunk's bytes as written (CRC-32, hardware accelerated). It only has to
/// tell whether what is on disk is still what was written, so a cryptographic hash would be waste.
#[derive(Default, Clone)]
pub struct ChunkChecksum(crc32fast::Hasher);

impl ChunkChecksum {
    pub fn new() -> Self {
        ChunkChecksum::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finalize(self) -> u32 {
        self.0.finalize()
    }
}

/// Reads `len` bytes of `file` from `offset` and feeds them to `sink`, one buffer at a time.
fn read_range(
    file: &File,
    mut offset: u64,
    len: u64,
    buffer: &mut [u8],
    mut sink: impl FnMut(&[u8]),
) -> io::Result<()> {
    let end = offset + len;
    while offset < end {
        let want = buffer.len().min((end - offset) as usize);
        let read = read_at(file, &mut buffer[..want], offset)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("File ended at byte {offset}, expected {end} bytes"),
            ));
        }
        sink(&buffer[..read]);
        offset += read as u64;
    }
    Ok(())
}

#[cfg(unix)]
fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buffer, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buffer, offset)
}

/// Digest of the first `len` bytes of the file at `path` (blocking).
pub fn hash_file_blocking(path: &Path, algorithm: HashAlgorithm, len: u64) -> io::Result<String> {
    let file = File::open(path)?;
    let mut hasher = ContentHasher::new(algorithm, len);
    let mut buffer = vec![0u8; READ_BUFFER];
    read_range(&file, 0, len, &mut buffer, |bytes| hasher.update(bytes))?;
    Ok(hasher.finalize_hex())
}

/// Digest of the first `len` bytes of the file at `path`, on a blocking thread.
pub async fn hash_file(path: PathBuf, algorithm: HashAlgorithm, len: u64) -> io::Result<String> {
    tokio::task::spawn_blocking(move || hash_file_blocking(&path, algorithm, len))
        .await
        .map_err(io::Error::other)?
}

/// Checksums of the byte ranges `ranges` of the file at `path` as they are on disk now
/// (blocking). Used after a digest mismatch to find chunks whose bytes changed after they were
/// written.
pub fn chunk_checksums_blocking(path: &Path, ranges: &[(u64, u64)]) -> io::Result<Vec<u32>> {
    let file = File::open(path)?;
    let mut buffer = vec![0u8; READ_BUFFER];
    ranges
        .iter()
        .map(|&(start, end)| {
            let mut checksum = ChunkChecksum::new();
            read_range(&file, start, end - start, &mut buffer, |b| {
                checksum.update(b)
            })?;
            Ok(checksum.finalize())
        })
        .collect()
}

/// Hashes a file that is being written out of order, as its contiguous prefix grows.
///
/// The downloader calls [`PrefixHasher::advance`] with the end of the contiguous run of bytes
/// already written from offset 0; a dedicated thread reads that new part back (from the page
/// cache, normally) and hashes it. So when the last chunk lands only the tail is left to hash and
/// the file is verified soon after its last byte, instead of a full second pass.
pub struct PrefixHasher {
    sender: Option<mpsc::Sender<u64>>,
    thread: Option<thread::JoinHandle<io::Result<PrefixDigest>>>,
}

/// What a [`PrefixHasher`] computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixDigest {
    /// Lowercase hex digest of the whole file.
    pub hex: String,
    /// Bytes hashed after the last `advance` call, i.e. the work left when the file was complete.
    pub tail_bytes: u64,
}

impl PrefixHasher {
    /// Starts the hashing thread for the file at `path`, `len` bytes long once complete.
    pub fn start(path: PathBuf, algorithm: HashAlgorithm, len: u64) -> io::Result<Self> {
        let file = File::open(&path)?;
        let (sender, receiver) = mpsc::channel::<u64>();
        let thread = thread::Builder::new()
            .name("prefix-hasher".into())
            .spawn(move || {
                let mut hasher = ContentHasher::new(algorithm, len);
                let mut buffer = vec![0u8; READ_BUFFER];
                let mut hashed = 0u64;
                let mut target = 0u64;
                let mut finished = false;
                let mut tail_bytes = 0u64;
                loop {
                    // Take the newest target without blocking; block only when caught up.
                    loop {
                        match receiver.try_recv() {
                            Ok(end) => target = target.max(end.min(len)),
                            Err(mpsc::TryRecvError::Empty) => break,
                            Err(mpsc::TryRecvError::Disconnected) => {
                                finished = true;
                                break;
                            }
                        }
                    }
                    if hashed >= target {
                        if finished {
                            break;
                        }
                        match receiver.recv() {
                            Ok(end) => target = target.max(end.min(len)),
                            Err(_) => finished = true,
                        }
                        continue;
                    }
                    // Hash in bounded steps so a new target is picked up promptly.
                    let step = (target - hashed).min(8 * READ_BUFFER as u64);
                    read_range(&file, hashed, step, &mut buffer, |b| hasher.update(b))?;
                    hashed += step;
                    if finished {
                        tail_bytes += step;
                    }
                }
                if hashed != len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("Only {hashed} of {len} bytes were complete when hashing ended"),
                    ));
                }
                Ok(PrefixDigest {
                    hex: hasher.finalize_hex(),
                    tail_bytes,
                })
            })?;
        Ok(PrefixHasher {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Tells the hasher that bytes `0..end` are written and will not change.
    pub fn advance(&self, end: u64) {
        if let Some(sender) = &self.sender {
            // A send error means the thread failed already; `finish` reports why.
            let _ = sender.send(end);
        }
    }

    /// Waits (on a blocking thread) for the digest of the whole file. Call it once every byte is
    /// written and announced through [`advance`](Self::advance).
    pub async fn finish(mut self) -> io::Result<PrefixDigest> {
        self.sender.take();
        let thread = self.thread.take().expect("finish is called once");
        tokio::task::spawn_blocking(move || {
            thread
                .join()
                .map_err(|_| io::Error::other("The hashing thread panicked"))?
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl Drop for PrefixHasher {
    fn drop(&mut self) {
        // Dropping the sender ends the thread after it catches up; it is detached, not joined,
        // so an abandoned download never blocks here.
        self.sender.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn git_sha1_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            digest_bytes(HashAlgorithm::GitSha1, b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // `printf '' | git hash-object --stdin`
        assert_eq!(
            digest_bytes(HashAlgorithm::GitSha1, b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            digest_bytes(HashAlgorithm::Sha256, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(
            ExpectedDigest::sha256(
                "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
            )
            .matches("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[tokio::test]
    async fn prefix_hasher_equals_whole_file_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut file = File::create(&path).unwrap();
        file.write_all(&data).unwrap();
        drop(file);
        let hasher =
            PrefixHasher::start(path.clone(), HashAlgorithm::Sha256, data.len() as u64).unwrap();
        for end in [10u64, 5, 1_000_000, 2_999_999, 3_000_001] {
            hasher.advance(end);
        }
        let digest = hasher.finish().await.unwrap();
        assert_eq!(digest.hex, digest_bytes(HashAlgorithm::Sha256, &data));
        assert_eq!(
            hash_file(path, HashAlgorithm::GitSha1, data.len() as u64)
                .await
                .unwrap(),
            digest_bytes(HashAlgorithm::GitSha1, &data)
        );
    }

    #[tokio::test]
    async fn prefix_hasher_reports_an_incomplete_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 100]).unwrap();
        let hasher = PrefixHasher::start(path, HashAlgorithm::Sha256, 100).unwrap();
        hasher.advance(50);
        assert!(hasher.finish().await.is_err());
    }

    #[test]
    fn chunk_checksums_find_a_changed_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut data = vec![3u8; 300];
        std::fs::write(&path, &data).unwrap();
        let ranges = [(0, 100), (100, 200), (200, 300)];
        let before = chunk_checksums_blocking(&path, &ranges).unwrap();
        data[150] = 4;
        std::fs::write(&path, &data).unwrap();
        let after = chunk_checksums_blocking(&path, &ranges).unwrap();
        assert_eq!(before[0], after[0]);
        assert_ne!(before[1], after[1]);
        assert_eq!(before[2], after[2]);
    }
}
