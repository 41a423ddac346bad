//! Serialized xorb chunks, as a xorb range holds them: each chunk is an 8-byte header —
//! version (0), compressed length (24 bits, little-endian), compression scheme, uncompressed
//! length (24 bits) — then its body: raw, an LZ4 frame, or an LZ4 frame of the bytes regrouped
//! by position modulo 4 ("byte grouping", which compresses floating-point tensors better).

use std::io::Read;

/// Bytes of a chunk header.
const HEADER: usize = 8;
/// The largest chunk Xet makes (twice its 64 KiB target).
const MAX_CHUNK: usize = 128 * 1024;
/// A xorb object's footer starts with this, never a chunk.
const XORB_IDENT: &[u8; 7] = b"XETBLOB";

/// Why serialized chunks cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ChunkError {
    #[error("a chunk header is cut short at byte {at}")]
    TruncatedHeader { at: usize },
    #[error("chunk header at byte {at}: {reason}")]
    BadHeader { at: usize, reason: String },
    #[error("the chunk at byte {at} is cut short")]
    TruncatedBody { at: usize },
    #[error("the chunk at byte {at} does not decompress: {reason}")]
    Corrupt { at: usize, reason: String },
}

/// Decodes every chunk of `data`, appending their bytes to `out`; returns each chunk's length.
pub(crate) fn decode_chunks(data: &[u8], out: &mut Vec<u8>) -> Result<Vec<u32>, ChunkError> {
    let mut lens = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let header = data
            .get(at..at + HEADER)
            .ok_or(ChunkError::TruncatedHeader { at })?;
        let bad = |reason: String| ChunkError::BadHeader { at, reason };
        if header[..XORB_IDENT.len()] == XORB_IDENT[..] {
            return Err(bad("a xorb footer where a chunk should be".into()));
        }
        if header[0] != 0 {
            return Err(bad(format!("version {} is not known", header[0])));
        }
        let compressed = u24(&header[1..4]);
        let scheme = header[4];
        let uncompressed = u24(&header[5..8]);
        if uncompressed > MAX_CHUNK {
            return Err(bad(format!("a chunk of {uncompressed} bytes is too large")));
        }
        if compressed > 2 * MAX_CHUNK {
            return Err(bad(format!(
                "a compressed chunk of {compressed} bytes is too large"
            )));
        }
        let body = data
            .get(at + HEADER..at + HEADER + compressed)
            .ok_or(ChunkError::TruncatedBody { at })?;
        let start = out.len();
        match scheme {
            0 => {
                if compressed != uncompressed {
                    return Err(bad(format!(
                        "an uncompressed chunk of {compressed} bytes says it holds {uncompressed}"
                    )));
                }
                out.extend_from_slice(body);
            }
            1 | 2 => {
                let mut decoded = Vec::with_capacity(uncompressed);
                lz4_flex::frame::FrameDecoder::new(body)
                    .take(uncompressed as u64 + 1)
                    .read_to_end(&mut decoded)
                    .map_err(|e| ChunkError::Corrupt {
                        at,
                        reason: e.to_string(),
                    })?;
                if scheme == 2 {
                    decoded = regroup4(&decoded);
                }
                out.extend_from_slice(&decoded);
            }
            other => return Err(bad(format!("compression scheme {other} is not known"))),
        }
        if out.len() - start != uncompressed {
            let got = out.len() - start;
            out.truncate(start);
            return Err(ChunkError::Corrupt {
                at,
                reason: format!("{got} bytes came out where the header says {uncompressed}"),
            });
        }
        lens.push(uncompressed as u32);
        at += HEADER + compressed;
    }
    Ok(lens)
}

fn u24(bytes: &[u8]) -> usize {
    bytes[0] as usize | (bytes[1] as usize) << 8 | (bytes[2] as usize) << 16
}

/// Undoes byte grouping: group `k` holds the bytes at positions `4i + k`, and the first
/// `len % 4` groups hold one byte more.
fn regroup4(grouped: &[u8]) -> Vec<u8> {
    let n = grouped.len();
    let (split, rem) = (n / 4, n % 4);
    let sizes: [usize; 4] = std::array::from_fn(|k| split + usize::from(k < rem));
    let mut starts = [0usize; 4];
    for k in 1..4 {
        starts[k] = starts[k - 1] + sizes[k - 1];
    }
    let mut out = vec![0u8; n];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = grouped[starts[i % 4] + i / 4];
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn header(compressed: usize, scheme: u8, uncompressed: usize) -> Vec<u8> {
        let mut h = vec![0u8];
        h.extend_from_slice(&(compressed as u32).to_le_bytes()[..3]);
        h.push(scheme);
        h.extend_from_slice(&(uncompressed as u32).to_le_bytes()[..3]);
        h
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn group4(data: &[u8]) -> Vec<u8> {
        (0..4)
            .flat_map(|k| data.iter().skip(k).step_by(4).copied())
            .collect()
    }

    #[test]
    fn raw_lz4_and_grouped_chunks_decode() {
        let a: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let b = vec![3u8; 5003];
        let c: Vec<u8> = (0..4099u32).map(|i| (i % 13) as u8).collect();
        let mut data = header(a.len(), 0, a.len());
        data.extend_from_slice(&a);
        let z = lz4(&b);
        data.extend(header(z.len(), 1, b.len()));
        data.extend(&z);
        let g = lz4(&group4(&c));
        data.extend(header(g.len(), 2, c.len()));
        data.extend(&g);

        let mut out = Vec::new();
        let lens = decode_chunks(&data, &mut out).unwrap();
        assert_eq!(lens, vec![1000, 5003, 4099]);
        assert_eq!(out, [a, b, c].concat());
        assert_eq!(regroup4(&group4(b"abcdefg")), b"abcdefg");
    }

    #[test]
    fn damaged_chunks_are_errors() {
        let b = vec![9u8; 300];
        let z = lz4(&b);
        let mut data = header(z.len(), 1, b.len());
        data.extend(&z);
        let mut out = Vec::new();
        assert!(matches!(
            decode_chunks(&data[..5], &mut out),
            Err(ChunkError::TruncatedHeader { at: 0 })
        ));
        assert!(matches!(
            decode_chunks(&data[..data.len() - 1], &mut out),
            Err(ChunkError::TruncatedBody { .. })
        ));
        let mut lying = header(z.len(), 1, b.len() + 1);
        lying.extend(&z);
        assert!(matches!(
            decode_chunks(&lying, &mut out),
            Err(ChunkError::Corrupt { .. })
        ));
        let mut unknown = header(3, 7, 3);
        unknown.extend(b"abc");
        assert!(matches!(
            decode_chunks(&unknown, &mut out),
            Err(ChunkError::BadHeader { .. })
        ));
        assert!(matches!(
            decode_chunks(b"XETBLOB\0", &mut out),
            Err(ChunkError::BadHeader { .. })
        ));
        assert!(out.is_empty(), "nothing of a bad chunk is kept");
    }
}
