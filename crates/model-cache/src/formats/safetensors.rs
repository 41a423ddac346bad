//! safetensors headers and the sharded-checkpoint index.
//!
//! A safetensors file is `u64 LE N`, `N` bytes of JSON, then the tensor bytes
//! (`reference/formats.md` §6). [`read_header`] reads it the way `huggingface_hub`'s
//! `parse_safetensors_file_metadata` does: bytes `0..=100000` first (enough for almost every
//! header), then exactly the rest when the header is longer. The header is validated as the
//! safetensors crate does: known dtypes, shapes whose byte size matches `data_offsets`, offsets
//! sorted, contiguous from 0 and ending exactly at the end of the file.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use super::{ByteSource, SourceError};

/// Largest header accepted, as `MAX_HEADER_SIZE` in the safetensors crate.
pub const MAX_HEADER_LEN: u64 = 100_000_000;
/// First read of a remote header: `bytes=0-100000`, as `huggingface_hub`.
pub const FIRST_READ: u64 = 100_001;

/// Why a safetensors header or index is refused.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("`{name}` has {len} bytes, too few for a safetensors header")]
    TooShort { name: String, len: u64 },
    #[error(
        "The safetensors header of `{name}` declares {header_len} bytes, more than the {cap} byte cap"
    )]
    HeaderTooLarge {
        name: String,
        header_len: u64,
        cap: u64,
    },
    #[error(
        "The safetensors header of `{name}` declares {header_len} bytes but the file has {file_len}; hint: the file is truncated"
    )]
    Truncated {
        name: String,
        header_len: u64,
        file_len: u64,
    },
    #[error("The safetensors header of `{name}` is not valid JSON")]
    Json {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("Invalid safetensors header in `{name}`: `{field}`: {reason}")]
    Invalid {
        name: String,
        field: String,
        reason: String,
    },
    #[error("Invalid safetensors index `{name}`: {reason}")]
    InvalidIndex { name: String, reason: String },
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Bits per element of each safetensors dtype.
pub fn dtype_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" | "F8_E4M3FNUZ"
        | "F8_E5M2FNUZ" => 8,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "C64" | "F64" | "I64" | "U64" => 64,
        _ => return None,
    })
}

/// One tensor of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// `[begin, end)` relative to the start of the byte buffer.
    pub data_offsets: (u64, u64),
}

/// A parsed, validated safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Length of the JSON (`N`).
    pub header_len: u64,
    /// Tensors sorted by offset.
    pub tensors: Vec<Tensor>,
    /// `__metadata__`.
    pub metadata: BTreeMap<String, String>,
}

/// Elements and bytes of one dtype.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtypeStats {
    pub tensors: u64,
    pub parameters: u64,
    pub bytes: u64,
}

/// What a safetensors header says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub header_len: u64,
    pub tensor_count: u64,
    pub parameter_count: u64,
    /// Bytes of tensor data.
    pub data_bytes: u64,
    pub dtypes: BTreeMap<String, DtypeStats>,
    /// The dtype holding most parameters (`BF16`), the variant's dtype.
    pub dtype: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// Parses and validates the JSON header of a file of `file_len` bytes (when known).
pub fn parse_header(
    name: &str,
    json: &[u8],
    file_len: Option<u64>,
) -> Result<Header, SafetensorsError> {
    let header_len = json.len() as u64;
    let invalid = |field: &str, reason: String| SafetensorsError::Invalid {
        name: name.to_string(),
        field: field.to_string(),
        reason,
    };
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(json).map_err(|source| SafetensorsError::Json {
            name: name.to_string(),
            source,
        })?;
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(map.len());
    for (key, value) in map {
        if key == "__metadata__" {
            let serde_json::Value::Object(m) = value else {
                return Err(invalid(&key, "must be an object of strings".into()));
            };
            for (k, v) in m {
                let serde_json::Value::String(v) = v else {
                    return Err(invalid(&key, format!("value of `{k}` is not a string")));
                };
                metadata.insert(k, v);
            }
            continue;
        }
        let raw: RawTensor = serde_json::from_value(value)
            .map_err(|e| invalid(&key, format!("not a tensor entry ({e})")))?;
        let Some(bits) = dtype_bits(&raw.dtype) else {
            return Err(invalid(&key, format!("unknown dtype `{}`", raw.dtype)));
        };
        let (begin, end) = raw.data_offsets;
        if end < begin {
            return Err(invalid(
                &key,
                format!("data_offsets [{begin}, {end}] end before they begin"),
            ));
        }
        let elements = raw
            .shape
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(*d))
            .ok_or_else(|| invalid(&key, "element count overflows 64 bits".into()))?;
        let bits_total = elements
            .checked_mul(bits)
            .ok_or_else(|| invalid(&key, "byte size overflows 64 bits".into()))?;
        if !bits_total.is_multiple_of(8) {
            return Err(invalid(
                &key,
                format!(
                    "{elements} elements of {} do not fill whole bytes",
                    raw.dtype
                ),
            ));
        }
        if bits_total / 8 != end - begin {
            return Err(invalid(
                &key,
                format!(
                    "shape {:?} of {} needs {} bytes but data_offsets span {}",
                    raw.shape,
                    raw.dtype,
                    bits_total / 8,
                    end - begin
                ),
            ));
        }
        tensors.push(Tensor {
            name: key,
            dtype: raw.dtype,
            shape: raw.shape,
            data_offsets: raw.data_offsets,
        });
    }
    tensors.sort_by_key(|t| (t.data_offsets.0, t.data_offsets.1));
    let mut next = 0u64;
    for t in &tensors {
        if t.data_offsets.0 != next {
            return Err(invalid(
                &t.name,
                format!(
                    "data starts at {} but the previous tensor ends at {next}: offsets must be contiguous and non-overlapping",
                    t.data_offsets.0
                ),
            ));
        }
        next = t.data_offsets.1;
    }
    if let Some(file_len) = file_len {
        let buffer = file_len.saturating_sub(8 + header_len);
        if next != buffer {
            return Err(invalid(
                "data_offsets",
                format!(
                    "tensor data ends at {next} but the file holds {buffer} bytes after the header"
                ),
            ));
        }
    }
    Ok(Header {
        header_len,
        tensors,
        metadata,
    })
}

impl Header {
    /// Parameters, dtypes and sizes.
    pub fn summary(&self) -> Summary {
        let mut dtypes: BTreeMap<String, DtypeStats> = BTreeMap::new();
        let mut parameter_count = 0u64;
        let mut data_bytes = 0u64;
        for t in &self.tensors {
            let n = t.shape.iter().product::<u64>();
            let bytes = t.data_offsets.1 - t.data_offsets.0;
            parameter_count += n;
            data_bytes += bytes;
            let s = dtypes.entry(t.dtype.clone()).or_default();
            s.tensors += 1;
            s.parameters += n;
            s.bytes += bytes;
        }
        let dtype = dtypes
            .iter()
            .max_by_key(|(_, s)| s.parameters)
            .map(|(d, _)| d.clone());
        Summary {
            header_len: self.header_len,
            tensor_count: self.tensors.len() as u64,
            parameter_count,
            data_bytes,
            dtypes,
            dtype,
            metadata: self.metadata.clone(),
        }
    }
}

/// Splits the 8-byte length prefix, checking it against the cap and the file length.
fn header_len(name: &str, prefix: &[u8], file_len: u64) -> Result<u64, SafetensorsError> {
    if file_len < 8 || prefix.len() < 8 {
        return Err(SafetensorsError::TooShort {
            name: name.to_string(),
            len: file_len,
        });
    }
    let n = u64::from_le_bytes(prefix[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER_LEN {
        return Err(SafetensorsError::HeaderTooLarge {
            name: name.to_string(),
            header_len: n,
            cap: MAX_HEADER_LEN,
        });
    }
    if n > file_len - 8 {
        return Err(SafetensorsError::Truncated {
            name: name.to_string(),
            header_len: n,
            file_len,
        });
    }
    Ok(n)
}

/// Parses a whole safetensors file (or at least its header) held in memory.
pub fn parse_bytes(name: &str, bytes: &[u8], file_len: u64) -> Result<Header, SafetensorsError> {
    let n = header_len(name, bytes, file_len)?;
    let Some(json) = bytes.get(8..8 + n as usize) else {
        return Err(SafetensorsError::Truncated {
            name: name.to_string(),
            header_len: n,
            file_len: bytes.len() as u64,
        });
    };
    parse_header(name, json, Some(file_len))
}

/// Reads the header of a safetensors file: `0..=100000` first, then exactly the rest.
pub async fn read_header<S: ByteSource + ?Sized>(src: &S) -> Result<Header, SafetensorsError> {
    let file_len = src.len();
    let name = src.name();
    let first = src.read_at(0, FIRST_READ.min(file_len)).await?;
    let n = header_len(name, &first, file_len)?;
    let end = 8 + n;
    let mut buf = BytesMut::from(&first[..]);
    if end > buf.len() as u64 {
        let have = buf.len() as u64;
        buf.extend_from_slice(&src.read_at(have, end - have).await?);
    }
    parse_header(name, &buf[8..end as usize], Some(file_len))
}

/// A sharded checkpoint's `model.safetensors.index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIndex {
    /// `metadata.total_size`: bytes of tensor data over all shards.
    pub total_size: Option<u64>,
    /// Tensor name → shard file name (relative to the index's folder).
    pub weight_map: BTreeMap<String, String>,
    /// The distinct shard files, sorted.
    pub shards: BTreeSet<String>,
}

#[derive(Deserialize)]
struct RawIndex {
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    weight_map: BTreeMap<String, String>,
}

/// Parses a `*.safetensors.index.json` (also `pytorch_model.bin.index.json`, same shape).
pub fn parse_index(name: &str, json: &[u8]) -> Result<ShardIndex, SafetensorsError> {
    let raw: RawIndex =
        serde_json::from_slice(json).map_err(|e| SafetensorsError::InvalidIndex {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
    let total_size = match raw.metadata.as_ref().and_then(|m| m.get("total_size")) {
        None => None,
        // Some writers store it as a float or a string.
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| SafetensorsError::InvalidIndex {
                    name: name.to_string(),
                    reason: format!("`metadata.total_size` is not a byte count: {v}"),
                })?,
        ),
    };
    for shard in raw.weight_map.values() {
        if shard.is_empty() || shard.contains("..") || shard.starts_with('/') {
            return Err(SafetensorsError::InvalidIndex {
                name: name.to_string(),
                reason: format!("shard file name `{shard}` is not a plain relative path"),
            });
        }
    }
    let shards = raw.weight_map.values().cloned().collect();
    Ok(ShardIndex {
        total_size,
        weight_map: raw.weight_map,
        shards,
    })
}
