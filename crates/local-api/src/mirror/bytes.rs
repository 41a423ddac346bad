//! The bytes of a served file: `Range` headers, and bodies read through memory maps.
//!
//! A cached file is sent from memory-mapped windows ([`WINDOW`] bytes at a time, unmapped once
//! sent): the pages go from the page cache to the socket without a copy in this process, and a
//! connection holds at most a window or two mapped, whatever the file's size. The file stays
//! open (and registered as read in flight, see [`model_cache::engine::ServedRead`]) until its
//! body ends, so no removal takes the blob from under the map.

use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use memmap2::{Advice, Mmap, MmapOptions};

/// Bytes mapped at a time by one body.
const WINDOW: u64 = 8 << 20;
/// Largest piece handed to the connection at once.
const PIECE: u64 = 1 << 20;
/// More ranges than this in one request are answered with the whole file.
const MAX_RANGES: usize = 16;

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ranges {
    /// No (usable) `Range`: the whole file, `200`.
    Whole,
    /// One or more satisfiable ranges, `[start, end)` each, in the order asked.
    Parts(Vec<(u64, u64)>),
    /// None of the ranges can be served: `416`.
    Unsatisfiable,
}

/// Parses `Range: bytes=a-b, c-, -n` against a file of `size` bytes (RFC 9110 §14.1.2):
/// unsatisfiable ranges are dropped, and a header that is not a byte range, or asks for too
/// many, is ignored (the whole file is sent, as the Hub's CDN does).
pub(crate) fn parse_ranges(header: Option<&str>, size: u64) -> Ranges {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ranges::Whole;
    };
    let mut parts = Vec::new();
    let mut asked = 0;
    for item in spec.split(',') {
        asked += 1;
        let Some((first, last)) = item.trim().split_once('-') else {
            return Ranges::Whole;
        };
        let (first, last) = (first.trim(), last.trim());
        let range = if first.is_empty() {
            // A suffix: the last `n` bytes.
            let Ok(n) = last.parse::<u64>() else {
                return Ranges::Whole;
            };
            (n > 0 && size > 0).then(|| (size.saturating_sub(n), size))
        } else {
            let Ok(start) = first.parse::<u64>() else {
                return Ranges::Whole;
            };
            let end = if last.is_empty() {
                size
            } else {
                match last.parse::<u64>() {
                    Ok(last) if last >= start => (last + 1).min(size),
                    _ => return Ranges::Whole,
                }
            };
            (start < size).then_some((start, end))
        };
        parts.extend(range);
    }
    if asked > MAX_RANGES {
        return Ranges::Whole;
    }
    if parts.is_empty() {
        Ranges::Unsatisfiable
    } else {
        Ranges::Parts(parts)
    }
}

/// A mapped window, shared by the pieces cut from it.
struct Window {
    map: Mmap,
}

/// A piece of a window, handed to the connection without copying.
struct Piece {
    window: Arc<Window>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        &self.window.map[self.start..self.end]
    }
}

/// Maps `len` bytes of `file` from `offset` (a multiple of the page size).
///
/// The one `unsafe` block of the mirror: a mapping is undefined behaviour if the file shrinks
/// under it. The files mapped are verified blobs, which the store never writes again (it
/// replaces a blob by renaming a new file over it, which leaves this inode intact), and which no
/// removal deletes or truncates while the read is registered in flight; the caller holds that
/// registration for as long as the mapping lives.
#[expect(unsafe_code, reason = "memory maps are unsafe by nature; see above")]
fn map(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<Mmap> {
    // SAFETY: see above; the file is not truncated while mapped.
    unsafe { MmapOptions::new().offset(offset).len(len).map(file) }
}

/// The bytes `[start, end)` of `file`, in pieces of at most [`PIECE`] bytes from windows of
/// [`WINDOW`] bytes mapped one at a time. `keep` (the read's in-flight registration) lives as
/// long as the stream.
pub(crate) fn mapped<K: Send + Sync + 'static>(
    file: Arc<std::fs::File>,
    start: u64,
    end: u64,
    keep: Arc<K>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    // Map offsets must be page-aligned: 64 KiB is a multiple of every page size in use.
    let page = 64 * 1024;
    futures::stream::unfold(
        (start, None::<(u64, Arc<Window>)>),
        move |(pos, mut window)| {
            let file = Arc::clone(&file);
            let _keep = Arc::clone(&keep);
            async move {
                if pos >= end {
                    return None;
                }
                // A window covering `pos`, mapped when the last one is used up.
                let current = match window.take() {
                    Some((offset, w)) if pos < offset + w.map.len() as u64 => (offset, w),
                    _ => {
                        let offset = pos - pos % page;
                        let len = WINDOW.min(end - offset);
                        let mapped = tokio::task::spawn_blocking(move || {
                            let map = map(&file, offset, len as usize)?;
                            let _ = map.advise(Advice::Sequential);
                            Ok::<_, std::io::Error>(map)
                        })
                        .await
                        .map_err(std::io::Error::other)
                        .and_then(|r| r);
                        match mapped {
                            Ok(map) => (offset, Arc::new(Window { map })),
                            Err(error) => return Some((Err(error), (end, None))),
                        }
                    }
                };
                let (offset, w) = current;
                let window_end = offset + w.map.len() as u64;
                let piece_end = (pos + PIECE).min(end).min(window_end);
                let piece = Piece {
                    window: Arc::clone(&w),
                    start: (pos - offset) as usize,
                    end: (piece_end - offset) as usize,
                };
                let next = if piece_end < window_end {
                    Some((offset, w))
                } else {
                    None
                };
                Some((Ok(Bytes::from_owner(piece)), (piece_end, next)))
            }
        },
    )
}

/// The framing of a `multipart/byteranges` body: the part heads, in order, and the closing
/// delimiter. The body is head 1, range 1, head 2, range 2, …, then the tail.
pub(crate) struct Multipart {
    pub boundary: String,
    pub heads: Vec<String>,
    pub tail: String,
}

impl Multipart {
    pub(crate) fn new(parts: &[(u64, u64)], size: u64, content_type: &str) -> Multipart {
        let boundary = format!("mcache-{:016x}", rand::random::<u64>());
        let heads = parts
            .iter()
            .enumerate()
            .map(|(i, (start, end))| {
                format!(
                    "{}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {start}-{}/{size}\r\n\r\n",
                    if i == 0 { "" } else { "\r\n" },
                    end - 1
                )
            })
            .collect();
        let tail = format!("\r\n--{boundary}--\r\n");
        Multipart {
            boundary,
            heads,
            tail,
        }
    }

    /// The body's length.
    pub(crate) fn len(&self, parts: &[(u64, u64)]) -> u64 {
        let data: u64 = parts.iter().map(|(s, e)| e - s).sum();
        let framing: usize = self.heads.iter().map(String::len).sum::<usize>() + self.tail.len();
        data + framing as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn ranges_as_rfc_9110_reads_them() {
        let p = |h: &str| parse_ranges(Some(h), 100);
        assert_eq!(parse_ranges(None, 100), Ranges::Whole);
        assert_eq!(p("bytes=0-0"), Ranges::Parts(vec![(0, 1)]));
        assert_eq!(p("bytes=10-"), Ranges::Parts(vec![(10, 100)]));
        assert_eq!(p("bytes=90-200"), Ranges::Parts(vec![(90, 100)]));
        assert_eq!(p("bytes=-10"), Ranges::Parts(vec![(90, 100)]));
        assert_eq!(p("bytes=-500"), Ranges::Parts(vec![(0, 100)]));
        assert_eq!(p("bytes=0-1, 5-6"), Ranges::Parts(vec![(0, 2), (5, 7)]));
        assert_eq!(p("bytes=100-"), Ranges::Unsatisfiable);
        assert_eq!(p("bytes=-0"), Ranges::Unsatisfiable);
        assert_eq!(p("bytes=200-300, 5-6"), Ranges::Parts(vec![(5, 7)]));
        assert_eq!(p("bytes=5-2"), Ranges::Whole, "an invalid range is ignored");
        assert_eq!(p("items=0-1"), Ranges::Whole);
        assert_eq!(p("bytes=x-1"), Ranges::Whole);
        assert_eq!(parse_ranges(Some("bytes=0-0"), 0), Ranges::Unsatisfiable);
        let many = format!("bytes={}", vec!["0-0"; 17].join(","));
        assert_eq!(p(&many), Ranges::Whole);
    }

    #[test]
    fn multipart_framing_adds_up() {
        let parts = [(0, 2), (5, 7)];
        let multipart = Multipart::new(&parts, 100, "application/octet-stream");
        assert!(multipart.heads[0].starts_with("--mcache-"));
        assert!(multipart.heads[1].starts_with("\r\n--mcache-"));
        assert!(multipart.heads[1].contains("Content-Range: bytes 5-6/100\r\n"));
        let total: usize =
            multipart.heads.iter().map(String::len).sum::<usize>() + multipart.tail.len() + 4;
        assert_eq!(multipart.len(&parts), total as u64);
    }

    #[tokio::test]
    async fn a_mapped_range_is_the_files_bytes_across_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let content: Vec<u8> = (0..(WINDOW * 2 + 12345)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        for (start, end) in [
            (0, content.len() as u64),
            (5, 6),
            (WINDOW - 3, WINDOW + 5),
            (4097, WINDOW * 2 + 100),
        ] {
            let pieces: Vec<Bytes> = mapped(Arc::clone(&file), start, end, Arc::new(()))
                .map(|p| p.unwrap())
                .collect()
                .await;
            assert!(pieces.iter().all(|p| p.len() as u64 <= PIECE));
            let got: Vec<u8> = pieces.concat();
            assert_eq!(got, &content[start as usize..end as usize], "{start}-{end}");
        }
    }
}
