//! Compressed peer transfers: the byte-plane zstd encoding of a range of a file.
//!
//! Measured in `docs/peers.md`: quantized files do not compress; 16-bit floating point weights
//! (F16, BF16) do, by 1.2–1.46 when each 2-byte value is split into a plane of low bytes and one
//! of high bytes before zstd, which saves time on links of about 1 Gbit/s or less. So a
//! downloading peer may ask for this encoding ([`HEADER`]: [`ENCODING`]) when the user turned
//! it on, and the serving peer uses it only for a file whose tensors are mostly F16/BF16
//! ([`worth_compressing`]); any other answer is the plain range.
//!
//! The encoding of the bytes `[start, end)`: they are cut into blocks of [`BLOCK`] bytes
//! counted from `start` (the last one shorter); each block is written as its bytes at even
//! offsets then its bytes at odd offsets; the blocks, in order, are compressed as one zstd
//! frame at [`LEVEL`]. `Content-Range` still names the file's bytes, so a receiver that lost
//! the connection asks again from the last whole block it wrote, and the encoding starts over
//! from there.

use std::io;

use bytes::Bytes;
use zstd::stream::raw::{Decoder as RawDecoder, InBuffer, Operation, OutBuffer};

/// The request and response header that asks for, and announces, the encoding.
pub const HEADER: &str = "x-model-cache-encoding";
/// Its one value.
pub const ENCODING: &str = "zstd-planes";
/// Bytes per block (a multiple of 2, so every block starts on a value).
pub const BLOCK: usize = 64 * 1024;
/// zstd's level: 1, the fastest; level 3 compressed no better in the measurement.
pub const LEVEL: i32 = 1;

/// Splits one block into its even-offset bytes followed by its odd-offset bytes.
pub fn split(block: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(block.iter().step_by(2));
    out.extend(block.iter().skip(1).step_by(2));
}

/// Undoes [`split`].
pub fn join(planes: &[u8], out: &mut Vec<u8>) {
    let evens = planes.len().div_ceil(2);
    let (low, high) = planes.split_at(evens);
    out.clear();
    out.reserve(planes.len());
    for (i, &byte) in low.iter().enumerate() {
        out.push(byte);
        if let Some(&next) = high.get(i) {
            out.push(next);
        }
    }
}

/// Encodes a stream of file bytes: feed it pieces in order, then [`Encoder::finish`].
pub struct Encoder {
    zstd: zstd::stream::write::Encoder<'static, Vec<u8>>,
    pending: Vec<u8>,
    planes: Vec<u8>,
}

impl Encoder {
    pub fn new() -> io::Result<Encoder> {
        Ok(Encoder {
            zstd: zstd::stream::write::Encoder::new(Vec::new(), LEVEL)?,
            pending: Vec::with_capacity(BLOCK),
            planes: Vec::with_capacity(BLOCK),
        })
    }

    /// Adds file bytes; returns the compressed bytes ready so far (often none).
    pub fn push(&mut self, mut bytes: &[u8]) -> io::Result<Vec<u8>> {
        use std::io::Write;
        while !bytes.is_empty() {
            let take = (BLOCK - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == BLOCK {
                split(&self.pending, &mut self.planes);
                self.zstd.write_all(&self.planes)?;
                self.pending.clear();
            }
        }
        Ok(std::mem::take(self.zstd.get_mut()))
    }

    /// The last block and the end of the frame.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        use std::io::Write;
        if !self.pending.is_empty() {
            split(&self.pending, &mut self.planes);
            self.zstd.write_all(&self.planes)?;
        }
        self.zstd.finish()
    }
}

/// Decodes the encoding as it arrives: [`Decoder::push`] the body's pieces, then
/// [`Decoder::finish`] at its end. Only whole blocks come out of `push`; a body cut short
/// yields an error from `finish`, never a partial block.
pub struct Decoder {
    zstd: RawDecoder<'static>,
    /// Decompressed bytes not yet handed out (less than a block after each `push`).
    planes: Vec<u8>,
    scratch: Vec<u8>,
    /// Whether the zstd frame ended.
    done: bool,
    /// Compressed bytes received.
    wire: u64,
}

impl Decoder {
    pub fn new() -> io::Result<Decoder> {
        Ok(Decoder {
            zstd: RawDecoder::new()?,
            planes: Vec::with_capacity(2 * BLOCK),
            scratch: vec![0; BLOCK],
            done: false,
            wire: 0,
        })
    }

    /// The compressed bytes received so far.
    pub fn wire_bytes(&self) -> u64 {
        self.wire
    }

    /// Takes compressed bytes; returns the file bytes of the blocks they completed.
    pub fn push(&mut self, input: &[u8]) -> io::Result<Bytes> {
        self.wire += input.len() as u64;
        let mut input = InBuffer::around(input);
        loop {
            if self.done && input.pos() < input.src.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bytes after the end of the compressed range",
                ));
            }
            let mut output = OutBuffer::around(&mut self.scratch[..]);
            let hint = self.zstd.run(&mut input, &mut output)?;
            let produced = output.pos();
            self.planes.extend_from_slice(&self.scratch[..produced]);
            if hint == 0 {
                self.done = true;
            }
            if input.pos() == input.src.len() && produced < self.scratch.len() {
                break;
            }
        }
        let whole = self.planes.len() - self.planes.len() % BLOCK;
        let mut out = Vec::with_capacity(whole);
        let mut block = Vec::with_capacity(BLOCK);
        for planes in self.planes[..whole].chunks(BLOCK) {
            join(planes, &mut block);
            out.extend_from_slice(&block);
        }
        self.planes.drain(..whole);
        Ok(Bytes::from(out))
    }

    /// The last block, once the body ended: an error when the frame did not end (the body was
    /// cut short).
    pub fn finish(self) -> io::Result<Bytes> {
        if !self.done {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the compressed range was cut short",
            ));
        }
        let mut block = Vec::with_capacity(self.planes.len());
        join(&self.planes, &mut block);
        Ok(Bytes::from(block))
    }
}

/// Whether a file is worth sending in the encoding: a safetensors file (by its header, the
/// first bytes of `head`) whose tensor data is at least half F16 or BF16. `head` needs the
/// 8-byte length and the JSON header after it; a shorter or foreign one says no.
pub fn worth_compressing(head: &[u8]) -> bool {
    let Some(length) = head.get(..8) else {
        return false;
    };
    let length = u64::from_le_bytes(length.try_into().expect("8 bytes")) as usize;
    let Some(json) = head.get(8..8 + length) else {
        return false;
    };
    let Ok(serde_json::Value::Object(tensors)) = serde_json::from_slice(json) else {
        return false;
    };
    let (mut half, mut all) = (0u64, 0u64);
    for (name, tensor) in &tensors {
        if name == "__metadata__" {
            continue;
        }
        let Some([start, end]) = tensor["data_offsets"].as_array().and_then(|offsets| {
            let offsets: Vec<u64> = offsets.iter().filter_map(|v| v.as_u64()).collect();
            <[u64; 2]>::try_from(offsets).ok()
        }) else {
            continue;
        };
        let bytes = end.saturating_sub(start);
        all += bytes;
        if matches!(tensor["dtype"].as_str(), Some("F16" | "BF16")) {
            half += bytes;
        }
    }
    all > 0 && half * 2 >= all
}

/// The length of the head [`worth_compressing`] needs: the 8-byte length and the header it
/// names (none when the first 8 bytes do not name a plausible header).
pub fn head_length(first8: &[u8]) -> Option<usize> {
    let length = u64::from_le_bytes(first8.get(..8)?.try_into().ok()?);
    // safetensors refuses headers over 100 MB.
    (length <= 100_000_000).then(|| 8 + length as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn bf16_like(len: usize, seed: u64) -> Vec<u8> {
        // Values near zero: a narrow spread of high bytes (sign and exponent), random low bytes.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len)
            .map(|i| {
                if i % 2 == 1 {
                    0x3c + rng.random_range(0..4u8)
                } else {
                    rng.random()
                }
            })
            .collect()
    }

    fn encode(data: &[u8], piece: usize) -> Vec<u8> {
        let mut encoder = Encoder::new().unwrap();
        let mut out = Vec::new();
        for part in data.chunks(piece.max(1)) {
            out.extend(encoder.push(part).unwrap());
        }
        out.extend(encoder.finish().unwrap());
        out
    }

    fn decode(wire: &[u8], piece: usize) -> io::Result<Vec<u8>> {
        let mut decoder = Decoder::new()?;
        let mut out = Vec::new();
        for part in wire.chunks(piece.max(1)) {
            let bytes = decoder.push(part)?;
            assert_eq!(bytes.len() % BLOCK, 0, "only whole blocks before the end");
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(&decoder.finish()?);
        Ok(out)
    }

    #[test]
    fn planes_split_and_join_back() {
        for len in [0, 1, 2, 3, 10, 11] {
            let data: Vec<u8> = (0..len as u8).collect();
            let (mut planes, mut back) = (Vec::new(), Vec::new());
            split(&data, &mut planes);
            join(&planes, &mut back);
            assert_eq!(back, data, "{len} bytes");
        }
        let mut planes = Vec::new();
        split(&[1, 2, 3, 4, 5], &mut planes);
        assert_eq!(planes, [1, 3, 5, 2, 4]);
    }

    #[test]
    fn any_range_comes_back_byte_for_byte_whatever_the_pieces() {
        for len in [0, 1, 7, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345] {
            let data = bf16_like(len, len as u64);
            for (send, receive) in [(1 << 20, 1 << 20), (4096, 1000), (BLOCK + 3, 17)] {
                let wire = encode(&data, send);
                assert_eq!(decode(&wire, receive).unwrap(), data, "{len} bytes");
            }
        }
    }

    #[test]
    fn half_precision_weights_get_smaller_and_random_bytes_do_not_grow_much() {
        let weights = bf16_like(1 << 20, 1);
        let wire = encode(&weights, 1 << 16);
        assert!(
            (wire.len() as f64) < 0.8 * weights.len() as f64,
            "{} of {}",
            wire.len(),
            weights.len()
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let noise: Vec<u8> = (0..1 << 20).map(|_| rng.random()).collect();
        let wire = encode(&noise, 1 << 16);
        assert!((wire.len() as f64) < 1.01 * noise.len() as f64);
    }

    #[test]
    fn a_body_cut_short_is_an_error_and_yields_no_partial_block() {
        let data = bf16_like(5 * BLOCK, 3);
        let wire = encode(&data, BLOCK);
        let mut decoder = Decoder::new().unwrap();
        let got = decoder.push(&wire[..wire.len() - 10]).unwrap();
        assert_eq!(got.len() % BLOCK, 0);
        assert_eq!(&data[..got.len()], &got[..]);
        assert!(decoder.finish().is_err());
        assert!(decode(b"not zstd at all", 4).is_err());
    }

    fn safetensors_head(tensors: &[(&str, &str, u64)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let mut at = 0;
        for (name, dtype, bytes) in tensors {
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": [bytes / 2], "data_offsets": [at, at + bytes]}),
            );
            at += bytes;
        }
        let json = serde_json::to_vec(&header).unwrap();
        let mut head = (json.len() as u64).to_le_bytes().to_vec();
        head.extend(json);
        head
    }

    #[test]
    fn only_mostly_half_precision_safetensors_are_worth_compressing() {
        let bf16 = safetensors_head(&[("a", "BF16", 1000), ("b", "F32", 10)]);
        assert_eq!(head_length(&bf16), Some(bf16.len()));
        assert!(worth_compressing(&bf16));
        assert!(worth_compressing(&safetensors_head(&[("a", "F16", 8)])));
        assert!(!worth_compressing(&safetensors_head(&[
            ("a", "F32", 1000),
            ("b", "BF16", 10)
        ])));
        assert!(!worth_compressing(&safetensors_head(&[("a", "I8", 100)])));
        assert!(!worth_compressing(&bf16[..bf16.len() - 1]), "a cut header");
        assert!(!worth_compressing(b"GGUF\x03\0\0\0\0\0\0\0\0\0\0\0"));
        assert!(!worth_compressing(b""));
    }
}
