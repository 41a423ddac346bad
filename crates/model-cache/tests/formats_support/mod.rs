//! A byte-level GGUF writer for tests, independent of the parser and of the emulator's
//! generator: it writes big-endian files, version 2, nested arrays and deliberately broken
//! headers that the emulator has no reason to produce.

#![allow(dead_code)]

/// A metadata value to write.
#[derive(Clone, Debug)]
pub(crate) enum V {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    /// Raw bool byte (so invalid bytes can be written).
    Bool(u8),
    Str(String),
    /// Element type id and items.
    Arr(u32, Vec<V>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl V {
    pub(crate) fn type_id(&self) -> u32 {
        match self {
            V::U8(_) => 0,
            V::I8(_) => 1,
            V::U16(_) => 2,
            V::I16(_) => 3,
            V::U32(_) => 4,
            V::I32(_) => 5,
            V::F32(_) => 6,
            V::Bool(_) => 7,
            V::Str(_) => 8,
            V::Arr(..) => 9,
            V::U64(_) => 10,
            V::I64(_) => 11,
            V::F64(_) => 12,
        }
    }
    pub(crate) fn s(s: &str) -> V {
        V::Str(s.to_string())
    }
}

/// Writes GGUF headers field by field.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    pub big_endian: bool,
    pub version: u32,
    pub kvs: Vec<(String, V)>,
    /// Name, dims, ggml type.
    pub tensors: Vec<(String, Vec<u64>, u32)>,
    pub alignment: u64,
    /// Bytes per (type id): (elements per block, bytes per block), for data layout.
    pub block: fn(u32) -> (u64, u64),
}

pub(crate) fn default_block(t: u32) -> (u64, u64) {
    match t {
        0 => (1, 4),
        1 | 30 => (1, 2),
        2 => (32, 18),
        8 => (32, 34),
        12 => (256, 144),
        14 => (256, 210),
        _ => (1, 4),
    }
}

impl Writer {
    pub(crate) fn new() -> Self {
        Writer {
            big_endian: false,
            version: 3,
            kvs: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
            block: default_block,
        }
    }

    pub(crate) fn kv(mut self, k: &str, v: V) -> Self {
        self.kvs.push((k.to_string(), v));
        self
    }

    pub(crate) fn tensor(mut self, name: &str, dims: &[u64], t: u32) -> Self {
        self.tensors.push((name.to_string(), dims.to_vec(), t));
        self
    }

    fn u32(&self, out: &mut Vec<u8>, v: u32) {
        if self.big_endian {
            out.extend_from_slice(&v.to_be_bytes())
        } else {
            out.extend_from_slice(&v.to_le_bytes())
        }
    }

    fn u64(&self, out: &mut Vec<u8>, v: u64) {
        if self.big_endian {
            out.extend_from_slice(&v.to_be_bytes())
        } else {
            out.extend_from_slice(&v.to_le_bytes())
        }
    }

    fn string(&self, out: &mut Vec<u8>, s: &str) {
        self.u64(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn value(&self, out: &mut Vec<u8>, v: &V) {
        let be = self.big_endian;
        macro_rules! put {
            ($x:expr) => {
                if be {
                    out.extend_from_slice(&$x.to_be_bytes())
                } else {
                    out.extend_from_slice(&$x.to_le_bytes())
                }
            };
        }
        match v {
            V::U8(x) => out.push(*x),
            V::I8(x) => out.push(*x as u8),
            V::U16(x) => put!(x),
            V::I16(x) => put!(x),
            V::U32(x) => put!(x),
            V::I32(x) => put!(x),
            V::F32(x) => put!(x.to_bits()),
            V::Bool(x) => out.push(*x),
            V::Str(s) => self.string(out, s),
            V::Arr(t, items) => {
                self.u32(out, *t);
                self.u64(out, items.len() as u64);
                for i in items {
                    self.value(out, i);
                }
            }
            V::U64(x) => put!(x),
            V::I64(x) => put!(x),
            V::F64(x) => put!(x.to_bits()),
        }
    }

    /// Bytes of one tensor.
    pub(crate) fn tensor_bytes(&self, dims: &[u64], t: u32) -> u64 {
        let (e, b) = (self.block)(t);
        dims.iter().product::<u64>() / e * b
    }

    /// The header (with padding) and the total data size.
    pub(crate) fn header(&self) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        self.u32(&mut out, self.version);
        self.u64(&mut out, self.tensors.len() as u64);
        self.u64(&mut out, self.kvs.len() as u64);
        for (k, v) in &self.kvs {
            self.string(&mut out, k);
            self.u32(&mut out, v.type_id());
            self.value(&mut out, v);
        }
        let mut offset = 0u64;
        for (name, dims, t) in &self.tensors {
            self.string(&mut out, name);
            self.u32(&mut out, dims.len() as u32);
            for d in dims {
                self.u64(&mut out, *d);
            }
            self.u32(&mut out, *t);
            self.u64(&mut out, offset);
            offset += self.tensor_bytes(dims, *t).div_ceil(self.alignment) * self.alignment;
        }
        while !(out.len() as u64).is_multiple_of(self.alignment) {
            out.push(0);
        }
        (out, offset)
    }

    /// A whole file: header, then zeroed tensor data.
    pub(crate) fn build(&self) -> Vec<u8> {
        let (mut out, data) = self.header();
        out.resize(out.len() + data as usize, 0);
        out
    }
}
