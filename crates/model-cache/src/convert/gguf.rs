//! A streaming GGUF (version 3) writer.
//!
//! Every tensor's name, shape and type is known before any byte of data is produced, so the
//! header (metadata, then tensor infos with their offsets) is written first and the tensor data
//! follows in order, each tensor padded to the alignment: the file is written front to back in
//! one pass, with nothing held in memory but the current tensor's output buffer.

use std::io::{self, Write};

/// `general.alignment`'s default, used for every file written here.
pub const ALIGNMENT: u64 = 32;

/// ggml tensor types the converter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q8_0,
}

impl GgmlType {
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q8_0 => 8,
        }
    }

    /// Bytes of `elements` elements of this type (a whole number of blocks for Q8_0).
    pub fn bytes(self, elements: u64) -> u64 {
        match self {
            GgmlType::F32 => elements * 4,
            GgmlType::F16 => elements * 2,
            GgmlType::Q8_0 => {
                elements / super::numeric::Q8_0_BLOCK as u64
                    * super::numeric::Q8_0_BLOCK_BYTES as u64
            }
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Strings(Vec<String>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
}

/// A tensor's entry in the header.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: innermost (contiguous) dimension first.
    pub dims: Vec<u64>,
    pub kind: GgmlType,
}

impl TensorInfo {
    pub fn bytes(&self) -> u64 {
        self.kind.bytes(self.dims.iter().product())
    }
}

fn padding(offset: u64) -> u64 {
    (ALIGNMENT - offset % ALIGNMENT) % ALIGNMENT
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    const U32: u32 = 4;
    const I32: u32 = 5;
    const F32: u32 = 6;
    const BOOL: u32 = 7;
    const STRING: u32 = 8;
    const ARRAY: u32 = 9;
    match value {
        Value::U32(v) => {
            out.extend_from_slice(&U32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::I32(v) => {
            out.extend_from_slice(&I32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::F32(v) => {
            out.extend_from_slice(&F32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::Bool(v) => {
            out.extend_from_slice(&BOOL.to_le_bytes());
            out.push(*v as u8);
        }
        Value::String(s) => {
            out.extend_from_slice(&STRING.to_le_bytes());
            write_string(out, s);
        }
        Value::Strings(items) => {
            out.extend_from_slice(&ARRAY.to_le_bytes());
            out.extend_from_slice(&STRING.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for s in items {
                write_string(out, s);
            }
        }
        Value::F32s(items) => {
            out.extend_from_slice(&ARRAY.to_le_bytes());
            out.extend_from_slice(&F32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for v in items {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Value::I32s(items) => {
            out.extend_from_slice(&ARRAY.to_le_bytes());
            out.extend_from_slice(&I32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for v in items {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// The header: magic, version, counts, metadata, tensor infos, padding. Returns its bytes.
pub fn header(metadata: &[(String, Value)], tensors: &[TensorInfo]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        write_string(&mut out, key);
        write_value(&mut out, value);
    }
    let mut offset = 0u64;
    for tensor in tensors {
        write_string(&mut out, &tensor.name);
        out.extend_from_slice(&(tensor.dims.len() as u32).to_le_bytes());
        for d in &tensor.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&tensor.kind.id().to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset += tensor.bytes();
        offset += padding(offset);
    }
    let pad = padding(out.len() as u64);
    out.resize(out.len() + pad as usize, 0);
    out
}

/// The whole file's size for this header and these tensors.
pub fn file_size(header_len: u64, tensors: &[TensorInfo]) -> u64 {
    let mut size = header_len;
    for tensor in tensors {
        size += tensor.bytes();
        size += padding(size - header_len);
    }
    size
}

/// Writes the padding that follows a tensor of `bytes` bytes.
pub fn write_tensor_padding(out: &mut impl Write, bytes: u64) -> io::Result<()> {
    let pad = padding(bytes) as usize;
    out.write_all(&[0u8; ALIGNMENT as usize][..pad])
}
