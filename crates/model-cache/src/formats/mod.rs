//! Model file formats: GGUF and safetensors headers, read without downloading the file.
//!
//! Every reader works on a [`ByteSource`]: a file of known length read at offsets. Three exist: a
//! [`LocalFile`], a [`MemorySource`] (tests, fuzzing) and a [`HubSource`], which reads a file on
//! the Hub with range requests through [`HubClient`] and counts the bytes it fetched. The format
//! readers ask only for what they need (a growing prefix for GGUF, `0..100000` then exactly the
//! rest for safetensors), so inspecting a 40 GB file costs a few megabytes at most.
//!
//! [`inspect_path`] is the local entry point behind `mcache inspect PATH`: it recognises the format
//! by its first bytes and returns a serialisable [`Inspection`].

pub mod ggml;
pub mod gguf;
pub mod safetensors;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, ErrorKind, Hint};
use crate::hub::{HubClient, HubError};

/// A file of known length that can be read at any offset.
pub trait ByteSource: Send + Sync {
    /// Length of the whole file in bytes.
    fn len(&self) -> u64;

    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A short name for errors: a path or a repo file.
    fn name(&self) -> &str;

    /// Exactly `len` bytes at `offset`; reading past the end is an error.
    fn read_at(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Bytes, SourceError>> + Send;

    /// Bytes fetched so far by this source (for remote sources: bytes received on the wire).
    fn bytes_read(&self) -> u64;
}

/// Why bytes could not be read from a [`ByteSource`].
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("Cannot read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Bytes {}..{} are past the end of `{name}` ({len} bytes)", range.start, range.end)]
    OutOfRange {
        name: String,
        range: Range<u64>,
        len: u64,
    },
    #[error("Cannot fetch bytes {}..{} of `{name}`", range.start, range.end)]
    Hub {
        name: String,
        range: Range<u64>,
        #[source]
        source: Box<HubError>,
    },
    #[error("The server sent {got} bytes for bytes {}..{} of `{name}`", range.start, range.end)]
    ShortBody {
        name: String,
        range: Range<u64>,
        got: u64,
    },
}

fn check_range(
    name: &str,
    offset: u64,
    len: u64,
    file_len: u64,
) -> Result<Range<u64>, SourceError> {
    let end = offset.saturating_add(len);
    if end > file_len {
        return Err(SourceError::OutOfRange {
            name: name.to_string(),
            range: offset..end,
            len: file_len,
        });
    }
    Ok(offset..end)
}

/// A file on the local disk.
#[derive(Debug)]
pub struct LocalFile {
    path: PathBuf,
    name: String,
    file: Arc<std::fs::File>,
    len: u64,
    read: AtomicU64,
}

impl LocalFile {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok(LocalFile {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            file: Arc::new(file),
            len,
            read: AtomicU64::new(0),
        })
    }
}

impl ByteSource for LocalFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn read_at(&self, offset: u64, len: u64) -> Result<Bytes, SourceError> {
        check_range(&self.name, offset, len, self.len)?;
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            // `len` is within the file, which the caller bounds by its own cap.
            let mut buf = vec![0u8; len as usize];
            read_exact_at(&file, &mut buf, offset).map(|()| Bytes::from(buf))
        })
        .await
        .map_err(|e| SourceError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?
        .map_err(|source| SourceError::Io { path, source })?;
        self.read.fetch_add(len, Ordering::Relaxed);
        Ok(bytes)
    }

    fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

#[cfg(unix)]
fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &std::fs::File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// Bytes held in memory, for tests and fuzzing.
#[derive(Debug)]
pub struct MemorySource {
    name: String,
    bytes: Bytes,
    read: AtomicU64,
}

impl MemorySource {
    pub fn new(name: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        MemorySource {
            name: name.into(),
            bytes: bytes.into(),
            read: AtomicU64::new(0),
        }
    }
}

impl ByteSource for MemorySource {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn read_at(&self, offset: u64, len: u64) -> Result<Bytes, SourceError> {
        let r = check_range(&self.name, offset, len, self.len())?;
        self.read.fetch_add(len, Ordering::Relaxed);
        Ok(self.bytes.slice(r.start as usize..r.end as usize))
    }

    fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

/// A file on the Hub (or a mirror, or its CDN) read with range requests.
///
/// Built from the download URL and size that [`HubClient::file_metadata`] returns. Every read is
/// one `GET` with `Range`; if the server ignores the range and sends the whole file, only the
/// requested bytes are read off the stream and the connection is dropped.
#[derive(Debug)]
pub struct HubSource {
    client: HubClient,
    url: String,
    name: String,
    len: u64,
    etag: Option<String>,
    read: AtomicU64,
    requests: AtomicU64,
}

impl HubSource {
    /// A source for `url` of `len` bytes; `name` is used in errors (e.g. `org/repo/file.gguf`).
    /// With `etag`, reads carry `If-Range` so a file changed upstream is never mixed.
    pub fn new(
        client: HubClient,
        url: impl Into<String>,
        len: u64,
        name: impl Into<String>,
        etag: Option<String>,
    ) -> Self {
        HubSource {
            client,
            url: url.into(),
            name: name.into(),
            len,
            etag,
            read: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// Range requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl ByteSource for HubSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn read_at(&self, offset: u64, len: u64) -> Result<Bytes, SourceError> {
        let range = check_range(&self.name, offset, len, self.len)?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        let hub = |source: HubError| SourceError::Hub {
            name: self.name.clone(),
            range: range.clone(),
            source: Box::new(source),
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut response = self
            .client
            .get_range(&self.url, Some(range.clone()), self.etag.as_deref())
            .await
            .map_err(hub)?;
        // A server that ignores `Range` sends from byte 0: skip up to `offset`.
        let mut skip = if response.partial { 0 } else { offset };
        let mut out = BytesMut::with_capacity(len as usize);
        while (out.len() as u64) < len {
            let chunk = match response.body.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Err(hub(HubError::Network {
                        url: crate::hub::redact_url(&self.url),
                        proxy: None,
                        source: e.without_url(),
                    }));
                }
            };
            self.read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let mut chunk = &chunk[..];
            if skip > 0 {
                let s = skip.min(chunk.len() as u64) as usize;
                chunk = &chunk[s..];
                skip -= s as u64;
            }
            let want = (len - out.len() as u64).min(chunk.len() as u64) as usize;
            out.extend_from_slice(&chunk[..want]);
        }
        if (out.len() as u64) < len {
            return Err(SourceError::ShortBody {
                name: self.name.clone(),
                range,
                got: out.len() as u64,
            });
        }
        Ok(out.freeze())
    }

    fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

/// The format of a model file, recognised from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Gguf,
    Safetensors,
}

/// What `mcache inspect PATH` reports about a local model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inspection {
    pub path: String,
    pub size: u64,
    pub format: Format,
    /// Present for GGUF files.
    pub gguf: Option<gguf::Summary>,
    /// Present for safetensors files.
    pub safetensors: Option<safetensors::Summary>,
    /// Header metadata for display: GGUF key-values (long arrays shown by length) or the
    /// safetensors `__metadata__`.
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Why a local file could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error(transparent)]
    Safetensors(#[from] safetensors::SafetensorsError),
    #[error(
        "`{path}` is neither a GGUF nor a safetensors file (first bytes {head:02x?}); hint: an HTML error page saved as a model file looks like this"
    )]
    UnknownFormat { path: String, head: Vec<u8> },
}

impl InspectError {
    /// The stable kind: the Hub's when the bytes could not be fetched, else `invalid_format`
    /// or `io`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            InspectError::Source(SourceError::Hub { source, .. }) => source.kind(),
            InspectError::Source(SourceError::Io { .. }) => ErrorKind::Io,
            InspectError::Source(_)
            | InspectError::Gguf(_)
            | InspectError::Safetensors(_)
            | InspectError::UnknownFormat { .. } => ErrorKind::InvalidFormat,
        }
    }

    pub fn hints(&self) -> Vec<Hint> {
        match self {
            InspectError::Source(SourceError::Hub { source, .. }) => source.hints(),
            _ => Vec::new(),
        }
    }
}

impl Diagnostic for InspectError {
    fn kind(&self) -> ErrorKind {
        InspectError::kind(self)
    }

    fn hints(&self) -> Vec<Hint> {
        InspectError::hints(self)
    }
}

/// Recognises the format of a file from its first 16 bytes.
pub fn sniff(head: &[u8]) -> Option<Format> {
    if head.starts_with(&gguf::MAGIC) {
        return Some(Format::Gguf);
    }
    if head.len() >= 9 {
        let n = u64::from_le_bytes(head[..8].try_into().ok()?);
        let first = head[8..].iter().find(|b| !b.is_ascii_whitespace());
        if n >= 2 && first == Some(&b'{') {
            return Some(Format::Safetensors);
        }
    }
    None
}

/// Inspects a local GGUF or safetensors file: reads only its header.
pub async fn inspect_path(path: &Path) -> Result<Inspection, InspectError> {
    let src = LocalFile::open(path)?;
    inspect_source(&src).await
}

/// Inspects any [`ByteSource`] holding a GGUF or safetensors file.
pub async fn inspect_source<S: ByteSource + ?Sized>(src: &S) -> Result<Inspection, InspectError> {
    let head_len = src.len().min(16);
    let head = src.read_at(0, head_len).await?;
    match sniff(&head) {
        Some(Format::Gguf) => {
            let (header, summary) = gguf::inspect(src).await?;
            Ok(Inspection {
                path: src.name().to_string(),
                size: src.len(),
                format: Format::Gguf,
                gguf: Some(summary),
                safetensors: None,
                metadata: header.metadata_json(16),
            })
        }
        Some(Format::Safetensors) => {
            let header = safetensors::read_header(src).await?;
            let metadata = header
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            Ok(Inspection {
                path: src.name().to_string(),
                size: src.len(),
                format: Format::Safetensors,
                gguf: None,
                safetensors: Some(header.summary()),
                metadata,
            })
        }
        None => Err(InspectError::UnknownFormat {
            path: src.name().to_string(),
            head: head.to_vec(),
        }),
    }
}
