//! A GGUF header parser that reads only the header, from any [`ByteSource`].
//!
//! The layout is in `reference/formats.md` §1. The parser works on an in-memory prefix of the
//! file; when the prefix ends before the header does, it reports how far it needs to see
//! ([`ParseError::NeedMore`]) and [`read_header`] fetches a larger prefix (doubling, bounded by
//! [`ReadLimits::max_header_bytes`]) and parses again. Re-parsing a few megabytes is far cheaper
//! than the round trip that fetched them, and it keeps the parser a plain function of bytes, which
//! is what the property tests and the fuzz target feed.
//!
//! Untrusted lengths are never used to allocate: every string length is checked against the bytes
//! that remain, arrays keep at most [`MAX_KEPT_ARRAY_ITEMS`] items (the rest are walked and
//! skipped), nesting is bounded, and tensor and key counts grow their vectors only as entries
//! actually parse.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::ggml::{FileType, GgmlType, quant_name_for_tensor_type};
use super::{ByteSource, SourceError};

/// `GGUF` as bytes; both byte orders store the magic this way.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// `GGUF_DEFAULT_ALIGNMENT`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Arrays longer than this keep only their first items in memory; the rest are validated and
/// skipped. Vocabularies (150k strings) would otherwise dominate memory for no use.
pub const MAX_KEPT_ARRAY_ITEMS: usize = 1024;
/// Deepest array nesting accepted; real files nest at most once.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// `GGML_MAX_DIMS`: ggml tensors have at most four dimensions.
pub const MAX_DIMS: u32 = 4;
/// Longest metadata key accepted (gguf.md: keys are at most 65535 bytes).
pub const MAX_KEY_LEN: u64 = 65_535;

/// Byte order of a GGUF file, detected from the version field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endian {
    Little,
    Big,
}

/// A metadata value type (`gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Size of a fixed-size value, `None` for strings and arrays.
    fn fixed_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// An array value. `items` holds at most [`MAX_KEPT_ARRAY_ITEMS`]; `len` is the real length.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub elem_type: ValueType,
    pub len: u64,
    pub items: Vec<Value>,
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A JSON rendering for display; arrays longer than `max_items` show their length only.
    pub fn to_json(&self, max_items: usize) -> serde_json::Value {
        use serde_json::json;
        match self {
            Value::U8(v) => json!(v),
            Value::I8(v) => json!(v),
            Value::U16(v) => json!(v),
            Value::I16(v) => json!(v),
            Value::U32(v) => json!(v),
            Value::I32(v) => json!(v),
            Value::F32(v) => json!(v),
            Value::Bool(v) => json!(v),
            Value::String(v) => json!(v),
            Value::U64(v) => json!(v),
            Value::I64(v) => json!(v),
            Value::F64(v) => json!(v),
            Value::Array(a) => {
                if a.len as usize <= max_items && a.items.len() as u64 == a.len {
                    serde_json::Value::Array(a.items.iter().map(|v| v.to_json(max_items)).collect())
                } else {
                    json!({ "array_of": a.elem_type, "len": a.len })
                }
            }
        }
    }
}

/// One tensor info entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset relative to the start of the tensor data.
    pub offset: u64,
    /// Number of elements (product of `dims`).
    pub n_elements: u64,
    /// Exact byte size from the ggml table, `None` for an unknown type.
    pub n_bytes: Option<u64>,
}

/// A parsed GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u32,
    pub endian: Endian,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Offset just past the last tensor info.
    pub header_end: u64,
    /// Offset of the tensor data: `header_end` rounded up to `alignment`.
    pub data_offset: u64,
}

/// Why a byte prefix does not parse as a GGUF header.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// The prefix ends inside the header; more bytes are needed, up to offset `needed`.
    #[error(
        "Header continues past byte {have}: `{field}` at offset {offset} needs bytes up to {needed}"
    )]
    NeedMore {
        offset: u64,
        field: String,
        needed: u64,
        have: u64,
    },
    #[error("Not a GGUF file: the magic is {found:02x?}, expected `GGUF`")]
    BadMagic { found: Vec<u8> },
    #[error("Unsupported GGUF version {version}; hint: versions 2 and 3 are supported")]
    UnsupportedVersion { version: u32 },
    /// The file ends inside the header: the file is truncated.
    #[error(
        "File ends at byte {file_len} inside the header: `{field}` at offset {offset} needs bytes up to {needed}; hint: the file is truncated"
    )]
    Truncated {
        offset: u64,
        field: String,
        needed: u64,
        file_len: u64,
    },
    #[error("Invalid `{field}` at offset {offset}: {reason}")]
    Invalid {
        offset: u64,
        field: String,
        reason: String,
    },
}

/// Errors of [`read_header`] and [`inspect`].
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("Cannot parse the GGUF header of `{name}`")]
    Parse {
        name: String,
        #[source]
        source: ParseError,
    },
    #[error(
        "The GGUF header of `{name}` is larger than the {cap} byte cap (needs at least {needed} bytes)"
    )]
    HeaderTooLarge { name: String, needed: u64, cap: u64 },
    #[error(transparent)]
    Source(#[from] SourceError),
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    endian: Endian,
    file_len: Option<u64>,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    /// The next `n` bytes, or the error that says whether more of the file would help.
    fn take(&mut self, n: u64, field: &dyn Fn() -> String) -> Result<&'a [u8], ParseError> {
        let offset = self.pos as u64;
        let needed = offset.saturating_add(n);
        if n > self.remaining() {
            if let Some(file_len) = self.file_len
                && needed > file_len
            {
                return Err(ParseError::Truncated {
                    offset,
                    field: field(),
                    needed,
                    file_len,
                });
            }
            return Err(ParseError::NeedMore {
                offset,
                field: field(),
                needed,
                have: self.buf.len() as u64,
            });
        }
        // `n <= remaining`, which fits in usize.
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> Result<[u8; N], ParseError> {
        let s = self.take(N as u64, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        if self.endian == Endian::Big {
            a.reverse();
        }
        Ok(a)
    }

    fn u8(&mut self, f: &dyn Fn() -> String) -> Result<u8, ParseError> {
        Ok(self.array::<1>(f)?[0])
    }
    fn u16(&mut self, f: &dyn Fn() -> String) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(self.array(f)?))
    }
    fn u32(&mut self, f: &dyn Fn() -> String) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array(f)?))
    }
    fn u64(&mut self, f: &dyn Fn() -> String) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(self.array(f)?))
    }

    fn invalid(&self, offset: usize, field: &dyn Fn() -> String, reason: String) -> ParseError {
        ParseError::Invalid {
            offset: offset as u64,
            field: field(),
            reason,
        }
    }

    /// A GGUF string: u64 length and that many bytes, bounded by `max_len`.
    fn string(&mut self, max_len: u64, field: &dyn Fn() -> String) -> Result<String, ParseError> {
        let at = self.pos;
        let len = self.u64(field)?;
        if len > max_len {
            return Err(self.invalid(
                at,
                field,
                format!("string length {len} exceeds the limit of {max_len} bytes"),
            ));
        }
        let bytes = self.take(len, field)?;
        // Vocabularies hold byte-level tokens that are not always valid UTF-8; keep them readable
        // rather than refusing the file.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Skips a string without allocating.
    fn skip_string(&mut self, max_len: u64, field: &dyn Fn() -> String) -> Result<(), ParseError> {
        let at = self.pos;
        let len = self.u64(field)?;
        if len > max_len {
            return Err(self.invalid(
                at,
                field,
                format!("string length {len} exceeds the limit of {max_len} bytes"),
            ));
        }
        self.take(len, field)?;
        Ok(())
    }

    fn value_type(&mut self, field: &dyn Fn() -> String) -> Result<ValueType, ParseError> {
        let at = self.pos;
        let id = self.u32(field)?;
        ValueType::from_id(id)
            .ok_or_else(|| self.invalid(at, field, format!("unknown value type {id}")))
    }

    fn scalar(&mut self, t: ValueType, f: &dyn Fn() -> String) -> Result<Value, ParseError> {
        let at = self.pos;
        Ok(match t {
            ValueType::U8 => Value::U8(self.u8(f)?),
            ValueType::I8 => Value::I8(self.u8(f)? as i8),
            ValueType::U16 => Value::U16(self.u16(f)?),
            ValueType::I16 => Value::I16(self.u16(f)? as i16),
            ValueType::U32 => Value::U32(self.u32(f)?),
            ValueType::I32 => Value::I32(self.u32(f)? as i32),
            ValueType::F32 => Value::F32(f32::from_bits(self.u32(f)?)),
            ValueType::U64 => Value::U64(self.u64(f)?),
            ValueType::I64 => Value::I64(self.u64(f)? as i64),
            ValueType::F64 => Value::F64(f64::from_bits(self.u64(f)?)),
            ValueType::Bool => match self.u8(f)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.invalid(at, f, format!("bool byte is {b}, expected 0 or 1"))),
            },
            ValueType::String => Value::String(self.string(u64::MAX, f)?),
            ValueType::Array => self.array_value(0, f)?,
        })
    }

    fn array_value(&mut self, depth: usize, f: &dyn Fn() -> String) -> Result<Value, ParseError> {
        let at = self.pos;
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.invalid(
                at,
                f,
                format!("arrays nested deeper than {MAX_ARRAY_DEPTH} levels"),
            ));
        }
        let elem_type = self.value_type(f)?;
        let len_at = self.pos;
        let len = self.u64(f)?;
        // Fixed-size elements: check the whole extent at once, keep a bounded prefix.
        if let Some(size) = elem_type.fixed_size() {
            let Some(total) = len.checked_mul(size) else {
                return Err(self.invalid(len_at, f, format!("array length {len} overflows")));
            };
            let keep = len.min(MAX_KEPT_ARRAY_ITEMS as u64);
            let mut items = Vec::with_capacity(keep as usize);
            // Fail early (and ask for the right amount) before decoding items.
            if total > self.remaining() {
                self.take(total, f)?;
            }
            for _ in 0..keep {
                items.push(self.scalar(elem_type, f)?);
            }
            self.take(total - keep * size, f)?;
            return Ok(Value::Array(Array {
                elem_type,
                len,
                items,
            }));
        }
        // Strings and nested arrays take at least 8 bytes each: a length that cannot fit in the
        // rest of the file is refused before walking it.
        if let Some(file_len) = self.file_len {
            let left = file_len.saturating_sub(self.pos as u64);
            if len > left / 8 {
                return Err(self.invalid(
                    len_at,
                    f,
                    format!("array of {len} items cannot fit in the {left} bytes left in the file"),
                ));
            }
        }
        let mut items = Vec::new();
        for i in 0..len {
            let keep = i < MAX_KEPT_ARRAY_ITEMS as u64;
            match elem_type {
                ValueType::String if keep => items.push(Value::String(self.string(u64::MAX, f)?)),
                ValueType::String => self.skip_string(u64::MAX, f)?,
                _ => {
                    let v = self.array_value(depth + 1, f)?;
                    if keep {
                        items.push(v);
                    }
                }
            }
        }
        Ok(Value::Array(Array {
            elem_type,
            len,
            items,
        }))
    }
}

/// Parses the GGUF header at the start of `buf`.
///
/// `file_len` is the length of the whole file when known: running past it is reported as
/// [`ParseError::Truncated`] (final), running past `buf` only as [`ParseError::NeedMore`].
pub fn parse_header(buf: &[u8], file_len: Option<u64>) -> Result<Header, ParseError> {
    let mut c = Cursor {
        buf,
        pos: 0,
        endian: Endian::Little,
        file_len,
    };
    let magic = c.take(4, &|| "magic".into())?;
    if magic != MAGIC {
        return Err(ParseError::BadMagic {
            found: magic.to_vec(),
        });
    }
    // No flag marks big-endian files: a version that reads as a small number one way and not the
    // other gives the byte order away.
    let raw = c.array::<4>(&|| "version".into())?;
    let le = u32::from_le_bytes(raw);
    let be = u32::from_be_bytes(raw);
    let version = if (1..=0xffff).contains(&le) {
        le
    } else if (1..=0xffff).contains(&be) {
        c.endian = Endian::Big;
        be
    } else {
        le
    };
    if !(2..=3).contains(&version) {
        return Err(ParseError::UnsupportedVersion { version });
    }
    let tensor_count = c.u64(&|| "tensor_count".into())?;
    let kv_count = c.u64(&|| "metadata_kv_count".into())?;
    // Each key-value pair takes at least 8 + 4 + 1 bytes and each tensor info at least 8 + 4 + 4
    // + 8 bytes; counts that cannot fit in the file are corrupt, whatever the prefix length.
    if let Some(file_len) = file_len {
        if kv_count > file_len / 13 {
            return Err(ParseError::Invalid {
                offset: 16,
                field: "metadata_kv_count".into(),
                reason: format!("{kv_count} pairs cannot fit in a file of {file_len} bytes"),
            });
        }
        if tensor_count > file_len / 24 {
            return Err(ParseError::Invalid {
                offset: 8,
                field: "tensor_count".into(),
                reason: format!("{tensor_count} tensors cannot fit in a file of {file_len} bytes"),
            });
        }
    }

    let mut metadata = Vec::new();
    let mut alignment = DEFAULT_ALIGNMENT;
    for i in 0..kv_count {
        let key = c.string(MAX_KEY_LEN, &|| format!("metadata key #{i}"))?;
        let field = || format!("value of `{key}`");
        let type_at = c.pos;
        let t = c.value_type(&field)?;
        let value_at = c.pos;
        let value = c.scalar(t, &field)?;
        if key == "general.alignment" {
            match value.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 30 => alignment = a,
                _ => {
                    return Err(ParseError::Invalid {
                        offset: value_at as u64,
                        field: field(),
                        reason: format!(
                            "alignment must be a power of two (type {t:?} at offset {type_at})"
                        ),
                    });
                }
            }
        }
        metadata.push((key, value));
    }

    let mut tensors = Vec::new();
    for i in 0..tensor_count {
        let name = c.string(MAX_KEY_LEN, &|| format!("tensor info #{i} name"))?;
        let field = || format!("tensor info #{i} `{name}`");
        let dims_at = c.pos;
        let n_dims = c.u32(&field)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(c.invalid(
                dims_at,
                &field,
                format!("n_dims is {n_dims}, expected 1..={MAX_DIMS}"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        let mut n_elements: u64 = 1;
        for _ in 0..n_dims {
            let at = c.pos;
            let d = c.u64(&field)?;
            n_elements = n_elements.checked_mul(d).ok_or_else(|| {
                c.invalid(at, &field, "element count overflows 64 bits".to_string())
            })?;
            dims.push(d);
        }
        let type_at = c.pos;
        let ggml_type = GgmlType(c.u32(&field)?);
        let n_bytes = match ggml_type.block_size() {
            Some((block, _)) => {
                if !dims[0].is_multiple_of(block) {
                    return Err(c.invalid(
                        type_at,
                        &field,
                        format!(
                            "row length {} is not a multiple of the {} block size {block}",
                            dims[0],
                            ggml_type.display_name()
                        ),
                    ));
                }
                Some(ggml_type.tensor_bytes(dims[0], n_elements).ok_or_else(|| {
                    c.invalid(type_at, &field, "byte size overflows 64 bits".to_string())
                })?)
            }
            None => None,
        };
        let off_at = c.pos;
        let offset = c.u64(&field)?;
        if !offset.is_multiple_of(alignment) {
            return Err(c.invalid(
                off_at,
                &field,
                format!("data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_elements,
            n_bytes,
        });
    }
    let header_end = c.pos as u64;
    let data_offset = header_end.div_ceil(alignment) * alignment;

    let header = Header {
        version,
        endian: c.endian,
        metadata,
        tensors,
        alignment,
        header_end,
        data_offset,
    };
    if let Some(file_len) = file_len
        && let Some(end) = header.data_end()
        && end > file_len
    {
        return Err(ParseError::Truncated {
            offset: header.data_offset,
            field: "tensor data".into(),
            needed: end,
            file_len,
        });
    }
    Ok(header)
}

impl Header {
    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    fn get_str(&self, key: &str) -> Option<String> {
        self.get(key).and_then(Value::as_str).map(str::to_string)
    }

    /// Exact size of the tensor data: the sum of every tensor's bytes, `None` if a tensor has a
    /// type the table does not know.
    pub fn tensor_data_bytes(&self) -> Option<u64> {
        self.tensors
            .iter()
            .try_fold(0u64, |acc, t| acc.checked_add(t.n_bytes?))
    }

    /// Absolute offset just past the last tensor's bytes, `None` if a size is unknown.
    pub fn data_end(&self) -> Option<u64> {
        let mut end = self.data_offset;
        for t in &self.tensors {
            let e = self
                .data_offset
                .checked_add(t.offset)?
                .checked_add(t.n_bytes?)?;
            end = end.max(e);
        }
        Some(end)
    }

    /// The summary the UI, the CLI and the fit hints use.
    pub fn summary(&self) -> Summary {
        let arch = self.get_str("general.architecture");
        let a = |k: &str| -> Option<u64> {
            let arch = arch.as_deref()?;
            self.get_u64(&format!("{arch}.{k}"))
        };
        // `head_count_kv` is an array (one per layer) in some hybrid models.
        let kv_key = arch
            .as_deref()
            .map(|a| format!("{a}.attention.head_count_kv"));
        let kv_per_layer: Option<Vec<u64>> = kv_key.as_deref().and_then(|k| match self.get(k)? {
            Value::Array(arr) if arr.items.len() as u64 == arr.len => {
                arr.items.iter().map(Value::as_u64).collect()
            }
            _ => None,
        });
        let head_count = a("attention.head_count");
        let head_count_kv = a("attention.head_count_kv")
            .or_else(|| kv_per_layer.as_ref().and_then(|v| v.iter().copied().max()))
            .or(head_count);
        let embedding_length = a("embedding_length");
        let head_dim = match (embedding_length, head_count) {
            (Some(e), Some(h)) if h > 0 => Some(e / h),
            _ => None,
        };
        let key_length = a("attention.key_length").or(head_dim);
        let value_length = a("attention.value_length").or(head_dim);
        let block_count = a("block_count");
        let kv_cache_bytes_per_token = match (key_length, value_length) {
            (Some(k), Some(v)) => match &kv_per_layer {
                Some(layers) => Some(layers.iter().map(|h| h * (k + v) * 2).sum()),
                None => match (block_count, head_count_kv) {
                    (Some(b), Some(h)) => Some(b * h * (k + v) * 2),
                    _ => None,
                },
            },
            _ => None,
        };

        let mut tensor_types: BTreeMap<String, TensorTypeStats> = BTreeMap::new();
        let mut parameter_count: u64 = 0;
        for t in &self.tensors {
            parameter_count = parameter_count.saturating_add(t.n_elements);
            let s = tensor_types.entry(t.ggml_type.display_name()).or_default();
            s.tensors += 1;
            s.elements = s.elements.saturating_add(t.n_elements);
            s.bytes = match (s.bytes, t.n_bytes) {
                (Some(a), Some(b)) => a.checked_add(b),
                _ => None,
            };
        }
        let file_type = self
            .get_u64("general.file_type")
            .and_then(|v| u32::try_from(v).ok());
        let majority = self.majority_tensor_type();
        let (quant, quant_source) = match file_type.and_then(|ft| FileType(ft).name()) {
            Some(n) if n != "GUESSED" => (Some(n.to_string()), Some(QuantSource::FileType)),
            _ => match (file_type, majority) {
                (_, Some(t)) => (
                    Some(quant_name_for_tensor_type(t)),
                    Some(QuantSource::TensorTypes),
                ),
                (Some(ft), None) => (Some(format!("file_type_{ft}")), Some(QuantSource::FileType)),
                (None, None) => (None, None),
            },
        };
        let vocab_size = match self.get("tokenizer.ggml.tokens") {
            Some(Value::Array(a)) => Some(a.len),
            _ => None,
        };
        Summary {
            version: self.version,
            endian: self.endian,
            architecture: arch.clone(),
            name: self.get_str("general.name"),
            basename: self.get_str("general.basename"),
            size_label: self.get_str("general.size_label"),
            file_type,
            quant,
            quant_source,
            quantization_version: self.get_u64("general.quantization_version"),
            context_length: a("context_length"),
            block_count,
            embedding_length,
            head_count,
            head_count_kv,
            key_length,
            value_length,
            sliding_window: a("attention.sliding_window"),
            kv_cache_bytes_per_token,
            vocab_size,
            has_chat_template: self.get("tokenizer.chat_template").is_some(),
            parameter_count,
            tensor_count: self.tensors.len() as u64,
            metadata_count: self.metadata.len() as u64,
            tensor_data_bytes: self.tensor_data_bytes(),
            tensor_types,
            alignment: self.alignment,
            data_offset: self.data_offset,
            split_no: self.get_u64("split.no"),
            split_count: self.get_u64("split.count"),
            split_tensors_count: self.get_u64("split.tensors.count"),
        }
    }

    /// The tensor type holding most of the weights (by elements of 2-D and larger tensors, since
    /// the many 1-D norms are F32 in every quant).
    pub fn majority_tensor_type(&self) -> Option<GgmlType> {
        let mut by_type: BTreeMap<u32, u64> = BTreeMap::new();
        let matrices = self.tensors.iter().any(|t| t.dims.len() >= 2);
        for t in &self.tensors {
            if !matrices || t.dims.len() >= 2 {
                *by_type.entry(t.ggml_type.0).or_default() += t.n_elements;
            }
        }
        by_type
            .into_iter()
            .max_by_key(|(id, n)| (*n, std::cmp::Reverse(*id)))
            .map(|(id, _)| GgmlType(id))
    }

    /// Metadata as JSON for display, arrays longer than `max_items` shown by length.
    pub fn metadata_json(&self, max_items: usize) -> BTreeMap<String, serde_json::Value> {
        self.metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json(max_items)))
            .collect()
    }
}

/// Where a summary's quant name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantSource {
    /// `general.file_type`.
    FileType,
    /// The majority tensor type (no usable `general.file_type`).
    TensorTypes,
}

/// Tensors of one ggml type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorTypeStats {
    pub tensors: u64,
    pub elements: u64,
    /// `None` when the type's block size is unknown.
    pub bytes: Option<u64>,
}

/// What a GGUF header says, in the units people read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub version: u32,
    pub endian: Endian,
    pub architecture: Option<String>,
    pub name: Option<String>,
    pub basename: Option<String>,
    pub size_label: Option<String>,
    /// Raw `general.file_type`.
    pub file_type: Option<u32>,
    /// Quant name (`Q4_K_M`), from `general.file_type` or else the majority tensor type.
    pub quant: Option<String>,
    pub quant_source: Option<QuantSource>,
    pub quantization_version: Option<u64>,
    pub context_length: Option<u64>,
    pub block_count: Option<u64>,
    pub embedding_length: Option<u64>,
    pub head_count: Option<u64>,
    pub head_count_kv: Option<u64>,
    /// Per-head key length; defaults to `embedding_length / head_count` as in llama.cpp.
    pub key_length: Option<u64>,
    pub value_length: Option<u64>,
    pub sliding_window: Option<u64>,
    /// KV-cache bytes per token of context with an f16 cache:
    /// layers × kv heads × (key + value length) × 2 bytes.
    pub kv_cache_bytes_per_token: Option<u64>,
    pub vocab_size: Option<u64>,
    pub has_chat_template: bool,
    /// Sum of the elements of every tensor in this file.
    pub parameter_count: u64,
    pub tensor_count: u64,
    pub metadata_count: u64,
    /// Exact bytes of tensor data (without alignment padding); `None` if a type is unknown.
    pub tensor_data_bytes: Option<u64>,
    pub tensor_types: BTreeMap<String, TensorTypeStats>,
    pub alignment: u64,
    pub data_offset: u64,
    pub split_no: Option<u64>,
    pub split_count: Option<u64>,
    pub split_tensors_count: Option<u64>,
}

/// How much of a file [`read_header`] may fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// First read.
    pub initial_bytes: u64,
    /// Hard cap on the header prefix; headers needing more are refused.
    pub max_header_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            initial_bytes: 256 * 1024,
            max_header_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Reads and parses the header of a GGUF file, fetching a growing prefix until it parses.
///
/// Each step at least doubles the prefix, and jumps straight to what the parser asked for when
/// that is more, so a header of `H` bytes costs fewer than `2·H` bytes (plus the first read) and
/// about log2(H / initial) requests.
pub async fn read_header<S: ByteSource + ?Sized>(
    src: &S,
    limits: ReadLimits,
) -> Result<Header, GgufError> {
    let file_len = src.len();
    let first = limits
        .initial_bytes
        .min(file_len)
        .min(limits.max_header_bytes);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&src.read_at(0, first).await?);
    loop {
        match parse_header(&buf, Some(file_len)) {
            Ok(h) => return Ok(h),
            Err(ParseError::NeedMore { needed, .. }) => {
                let have = buf.len() as u64;
                if needed > limits.max_header_bytes {
                    return Err(GgufError::HeaderTooLarge {
                        name: src.name().to_string(),
                        needed,
                        cap: limits.max_header_bytes,
                    });
                }
                let want = needed
                    .max(have.saturating_mul(2))
                    .min(limits.max_header_bytes)
                    .min(file_len);
                let more: Bytes = src.read_at(have, want - have).await?;
                buf.extend_from_slice(&more);
            }
            Err(source) => {
                return Err(GgufError::Parse {
                    name: src.name().to_string(),
                    source,
                });
            }
        }
    }
}

/// Reads the header and summarises it.
pub async fn inspect<S: ByteSource + ?Sized>(src: &S) -> Result<(Header, Summary), GgufError> {
    let h = read_header(src, ReadLimits::default()).await?;
    let s = h.summary();
    Ok((h, s))
}
