//! GGUF v3 builder: a header laid out exactly as llama.cpp writes it, with tensor data generated.

use super::VirtualFile;

/// A ggml tensor type id (`ggml_type` / `GGMLQuantizationType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: Self = Self(0);
    pub const F16: Self = Self(1);
    pub const Q4_0: Self = Self(2);
    pub const Q4_1: Self = Self(3);
    pub const Q5_0: Self = Self(6);
    pub const Q5_1: Self = Self(7);
    pub const Q8_0: Self = Self(8);
    pub const Q8_1: Self = Self(9);
    pub const Q2_K: Self = Self(10);
    pub const Q3_K: Self = Self(11);
    pub const Q4_K: Self = Self(12);
    pub const Q5_K: Self = Self(13);
    pub const Q6_K: Self = Self(14);
    pub const Q8_K: Self = Self(15);
    pub const IQ2_XXS: Self = Self(16);
    pub const IQ2_XS: Self = Self(17);
    pub const IQ3_XXS: Self = Self(18);
    pub const IQ1_S: Self = Self(19);
    pub const IQ4_NL: Self = Self(20);
    pub const IQ3_S: Self = Self(21);
    pub const IQ2_S: Self = Self(22);
    pub const IQ4_XS: Self = Self(23);
    pub const I8: Self = Self(24);
    pub const I16: Self = Self(25);
    pub const I32: Self = Self(26);
    pub const I64: Self = Self(27);
    pub const F64: Self = Self(28);
    pub const IQ1_M: Self = Self(29);
    pub const BF16: Self = Self(30);
    pub const TQ1_0: Self = Self(34);
    pub const TQ2_0: Self = Self(35);
    pub const MXFP4: Self = Self(39);
}

const QK_K: u64 = 256;

/// `GGML_QUANT_SIZES` from llama.cpp `gguf-py/gguf/constants.py`: for each tensor type, its
/// name, the elements per block and the bytes per block.
///
/// NVFP4 (40) and Q1_0 (41) are left out on purpose: their block layout was not verified.
pub const GGML_QUANT_SIZES: &[(GgmlType, &str, u64, u64)] = &[
    (GgmlType::F32, "F32", 1, 4),
    (GgmlType::F16, "F16", 1, 2),
    (GgmlType::Q4_0, "Q4_0", 32, 2 + 16),
    (GgmlType::Q4_1, "Q4_1", 32, 2 + 2 + 16),
    (GgmlType::Q5_0, "Q5_0", 32, 2 + 4 + 16),
    (GgmlType::Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16),
    (GgmlType::Q8_0, "Q8_0", 32, 2 + 32),
    (GgmlType::Q8_1, "Q8_1", 32, 4 + 4 + 32),
    (GgmlType::Q2_K, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
    (GgmlType::Q3_K, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
    (GgmlType::Q4_K, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12),
    (
        GgmlType::Q5_K,
        "Q5_K",
        QK_K,
        2 + 2 + QK_K / 2 + QK_K / 8 + 12,
    ),
    (
        GgmlType::Q6_K,
        "Q6_K",
        QK_K,
        2 + QK_K / 2 + QK_K / 4 + QK_K / 16,
    ),
    (GgmlType::Q8_K, "Q8_K", QK_K, 4 + QK_K + QK_K / 8),
    (GgmlType::IQ2_XXS, "IQ2_XXS", QK_K, 2 + QK_K / 4),
    (GgmlType::IQ2_XS, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32),
    (GgmlType::IQ3_XXS, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8),
    (GgmlType::IQ1_S, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16),
    (GgmlType::IQ4_NL, "IQ4_NL", 32, 2 + 16),
    (
        GgmlType::IQ3_S,
        "IQ3_S",
        QK_K,
        2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4,
    ),
    (GgmlType::IQ2_S, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16),
    (
        GgmlType::IQ4_XS,
        "IQ4_XS",
        QK_K,
        2 + 2 + QK_K / 2 + QK_K / 64,
    ),
    (GgmlType::I8, "I8", 1, 1),
    (GgmlType::I16, "I16", 1, 2),
    (GgmlType::I32, "I32", 1, 4),
    (GgmlType::I64, "I64", 1, 8),
    (GgmlType::F64, "F64", 1, 8),
    (
        GgmlType::IQ1_M,
        "IQ1_M",
        QK_K,
        QK_K / 8 + QK_K / 16 + QK_K / 32,
    ),
    (GgmlType::BF16, "BF16", 1, 2),
    (GgmlType::TQ1_0, "TQ1_0", QK_K, 2 + 4 * 13),
    (GgmlType::TQ2_0, "TQ2_0", QK_K, 2 + 64),
    (GgmlType::MXFP4, "MXFP4", 32, 1 + 16),
];

impl GgmlType {
    /// `(elements per block, bytes per block)`, or `None` for an id not in [`GGML_QUANT_SIZES`].
    pub fn block_size(self) -> Option<(u64, u64)> {
        GGML_QUANT_SIZES
            .iter()
            .find(|(t, ..)| *t == self)
            .map(|&(_, _, e, b)| (e, b))
    }

    /// The type's name as in `GGMLQuantizationType`.
    pub fn name(self) -> Option<&'static str> {
        GGML_QUANT_SIZES
            .iter()
            .find(|(t, ..)| *t == self)
            .map(|&(_, n, ..)| n)
    }

    /// Exact byte size of a tensor of this type with `elements` elements, or `None` when the
    /// type is unknown or `elements` is not a whole number of blocks.
    pub fn tensor_bytes(self, elements: u64) -> Option<u64> {
        let (per_block, bytes) = self.block_size()?;
        elements
            .is_multiple_of(per_block)
            .then(|| elements / per_block * bytes)
    }
}

/// A `general.file_type` value (`llama_ftype` / `LlamaFileType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LlamaFileType(pub u32);

/// Known file types: id, the name used in file names, and the main tensor type a file of this
/// kind is made of (the "majority" type a reader falls back to).
const FILE_TYPES: &[(u32, &str, GgmlType)] = &[
    (0, "F32", GgmlType::F32),
    (1, "F16", GgmlType::F16),
    (2, "Q4_0", GgmlType::Q4_0),
    (3, "Q4_1", GgmlType::Q4_1),
    (7, "Q8_0", GgmlType::Q8_0),
    (8, "Q5_0", GgmlType::Q5_0),
    (9, "Q5_1", GgmlType::Q5_1),
    (10, "Q2_K", GgmlType::Q2_K),
    (11, "Q3_K_S", GgmlType::Q3_K),
    (12, "Q3_K_M", GgmlType::Q3_K),
    (13, "Q3_K_L", GgmlType::Q3_K),
    (14, "Q4_K_S", GgmlType::Q4_K),
    (15, "Q4_K_M", GgmlType::Q4_K),
    (16, "Q5_K_S", GgmlType::Q5_K),
    (17, "Q5_K_M", GgmlType::Q5_K),
    (18, "Q6_K", GgmlType::Q6_K),
    (19, "IQ2_XXS", GgmlType::IQ2_XXS),
    (20, "IQ2_XS", GgmlType::IQ2_XS),
    (21, "Q2_K_S", GgmlType::Q2_K),
    (22, "IQ3_XS", GgmlType::IQ3_S),
    (23, "IQ3_XXS", GgmlType::IQ3_XXS),
    (24, "IQ1_S", GgmlType::IQ1_S),
    (25, "IQ4_NL", GgmlType::IQ4_NL),
    (26, "IQ3_S", GgmlType::IQ3_S),
    (27, "IQ3_M", GgmlType::IQ3_S),
    (28, "IQ2_S", GgmlType::IQ2_S),
    (29, "IQ2_M", GgmlType::IQ2_S),
    (30, "IQ4_XS", GgmlType::IQ4_XS),
    (31, "IQ1_M", GgmlType::IQ1_M),
    (32, "BF16", GgmlType::BF16),
    (36, "TQ1_0", GgmlType::TQ1_0),
    (37, "TQ2_0", GgmlType::TQ2_0),
    (38, "MXFP4_MOE", GgmlType::MXFP4),
];

impl LlamaFileType {
    pub const ALL_F32: Self = Self(0);
    pub const F16: Self = Self(1);
    pub const Q4_0: Self = Self(2);
    pub const Q4_1: Self = Self(3);
    pub const Q8_0: Self = Self(7);
    pub const Q5_0: Self = Self(8);
    pub const Q5_1: Self = Self(9);
    pub const Q2_K: Self = Self(10);
    pub const Q3_K_S: Self = Self(11);
    pub const Q3_K_M: Self = Self(12);
    pub const Q3_K_L: Self = Self(13);
    pub const Q4_K_S: Self = Self(14);
    pub const Q4_K_M: Self = Self(15);
    pub const Q5_K_S: Self = Self(16);
    pub const Q5_K_M: Self = Self(17);
    pub const Q6_K: Self = Self(18);
    pub const IQ2_XXS: Self = Self(19);
    pub const IQ2_XS: Self = Self(20);
    pub const Q2_K_S: Self = Self(21);
    pub const IQ3_XS: Self = Self(22);
    pub const IQ3_XXS: Self = Self(23);
    pub const IQ1_S: Self = Self(24);
    pub const IQ4_NL: Self = Self(25);
    pub const IQ3_S: Self = Self(26);
    pub const IQ3_M: Self = Self(27);
    pub const IQ2_S: Self = Self(28);
    pub const IQ2_M: Self = Self(29);
    pub const IQ4_XS: Self = Self(30);
    pub const IQ1_M: Self = Self(31);
    pub const BF16: Self = Self(32);
    pub const TQ1_0: Self = Self(36);
    pub const TQ2_0: Self = Self(37);
    pub const MXFP4_MOE: Self = Self(38);
}

impl LlamaFileType {
    /// The quant name as used in file names (`Q4_K_M`), or `None` for an unknown id.
    pub fn name(self) -> Option<&'static str> {
        FILE_TYPES
            .iter()
            .find(|(id, ..)| *id == self.0)
            .map(|&(_, n, _)| n)
    }

    /// Looks a file type up by its name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        FILE_TYPES
            .iter()
            .find(|(_, n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(id, ..)| Self(id))
    }

    /// The tensor type most tensors of such a file use.
    pub fn main_tensor_type(self) -> Option<GgmlType> {
        FILE_TYPES
            .iter()
            .find(|(id, ..)| *id == self.0)
            .map(|&(.., t)| t)
    }

    /// Every file type the generator knows.
    pub fn all() -> impl Iterator<Item = Self> {
        FILE_TYPES.iter().map(|&(id, ..)| Self(id))
    }

    /// The higher-precision type `_M`/`_L` mixes use for some tensors (as llama.cpp does for
    /// `attn_v` and `ffn_down`).
    fn upgraded_type(self) -> Option<GgmlType> {
        match self {
            Self::Q3_K_M => Some(GgmlType::Q4_K),
            Self::Q3_K_L => Some(GgmlType::Q5_K),
            Self::Q4_K_M | Self::Q5_K_M => Some(GgmlType::Q6_K),
            Self::Q2_K => Some(GgmlType::Q4_K),
            _ => None,
        }
    }
}

/// GGUF metadata value type ids (`gguf_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

/// A GGUF metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// An array whose elements all have the given type.
    Array(GgufValueType, Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// The value's type id.
    pub fn value_type(&self) -> GgufValueType {
        match self {
            Self::U8(_) => GgufValueType::U8,
            Self::I8(_) => GgufValueType::I8,
            Self::U16(_) => GgufValueType::U16,
            Self::I16(_) => GgufValueType::I16,
            Self::U32(_) => GgufValueType::U32,
            Self::I32(_) => GgufValueType::I32,
            Self::F32(_) => GgufValueType::F32,
            Self::Bool(_) => GgufValueType::Bool,
            Self::String(_) => GgufValueType::String,
            Self::Array(..) => GgufValueType::Array,
            Self::U64(_) => GgufValueType::U64,
            Self::I64(_) => GgufValueType::I64,
            Self::F64(_) => GgufValueType::F64,
        }
    }

    /// Shorthand for a string value.
    pub fn str(s: impl Into<String>) -> Self {
        Self::String(s.into())
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::U8(v) => out.push(*v),
            Self::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::Bool(v) => out.push(u8::from(*v)),
            Self::String(s) => write_str(out, s),
            Self::Array(t, items) => {
                out.extend_from_slice(&(*t as u32).to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    debug_assert_eq!(item.value_type(), *t, "GGUF arrays are homogeneous");
                    item.write(out);
                }
            }
            Self::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// One tensor info entry.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensor {
    /// Tensor name (at most 64 bytes).
    pub name: String,
    /// Dimensions, innermost first (`ne[0]` must be a whole number of blocks).
    pub dims: Vec<u64>,
    /// Tensor type.
    pub ggml_type: GgmlType,
}

impl GgufTensor {
    /// A tensor info.
    pub fn new(name: impl Into<String>, dims: &[u64], ggml_type: GgmlType) -> Self {
        Self {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type,
        }
    }

    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Exact data size in bytes per `GGML_QUANT_SIZES`.
    ///
    /// # Panics
    /// If the type is unknown or the element count is not a whole number of blocks.
    pub fn data_bytes(&self) -> u64 {
        self.ggml_type
            .tensor_bytes(self.elements())
            .unwrap_or_else(|| {
                panic!(
                    "Tensor `{}` of type {:?} with dims {:?} is not a whole number of blocks",
                    self.name, self.ggml_type, self.dims
                )
            })
    }
}

/// Split-file position (`split.no` is zero-based, as llama.cpp writes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitInfo {
    /// Zero-based index of this file.
    pub no: u16,
    /// Number of files in the set.
    pub count: u16,
    /// Number of tensors in the whole set.
    pub tensors_total: i32,
}

/// A GGUF file to generate: ordered metadata, tensor infos, alignment and the body seed.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufSpec {
    /// Metadata in file order.
    pub metadata: Vec<(String, GgufValue)>,
    /// Tensor infos in file order.
    pub tensors: Vec<GgufTensor>,
    /// Data alignment (`general.alignment`, default 32).
    pub alignment: u64,
    /// Seed of the generated tensor data.
    pub seed: u64,
}

fn seed_of(name: &str) -> u64 {
    // FNV-1a: a stable seed from a name, so the same spec always yields the same bytes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl GgufSpec {
    /// An empty spec (no metadata, no tensors, alignment 32).
    pub fn empty(seed: u64) -> Self {
        Self {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
            seed,
        }
    }

    /// A llama-architecture model of type `file_type` whose file is at least `approx_size`
    /// bytes (and close to it): all the usual `general.*`/`llama.*` keys, a small tokenizer,
    /// one sample key of every metadata value type, and `blk.N.*` tensors of the quant's types.
    pub fn llama(name: &str, file_type: LlamaFileType, approx_size: u64) -> Self {
        let main = file_type.main_tensor_type().unwrap_or(GgmlType::F16);
        let embd: u64 = if approx_size >= 256 << 20 { 4096 } else { 512 };
        let matrix = GgufTensor::new("x", &[embd, embd], main).data_bytes();
        let per_block = 7 * matrix;
        let blocks = approx_size.div_ceil(per_block).max(1);
        let heads = (embd / 64) as u32;
        let size_label = if embd >= 4096 { "7B" } else { "1M" };
        let mut spec = Self::empty(seed_of(name) ^ u64::from(file_type.0));
        let ftype_name = file_type.name().unwrap_or("unknown");
        spec.metadata = vec![
            ("general.architecture".into(), GgufValue::str("llama")),
            ("general.type".into(), GgufValue::str("model")),
            (
                "general.name".into(),
                GgufValue::str(format!("{name} {ftype_name}")),
            ),
            ("general.basename".into(), GgufValue::str(name)),
            ("general.size_label".into(), GgufValue::str(size_label)),
            ("general.file_type".into(), GgufValue::U32(file_type.0)),
            ("general.quantization_version".into(), GgufValue::U32(2)),
            ("general.alignment".into(), GgufValue::U32(32)),
            ("llama.context_length".into(), GgufValue::U32(4096)),
            ("llama.embedding_length".into(), GgufValue::U32(embd as u32)),
            ("llama.block_count".into(), GgufValue::U32(blocks as u32)),
            (
                "llama.feed_forward_length".into(),
                GgufValue::U32(embd as u32),
            ),
            ("llama.attention.head_count".into(), GgufValue::U32(heads)),
            (
                "llama.attention.head_count_kv".into(),
                GgufValue::U32((heads / 4).max(1)),
            ),
            ("llama.attention.key_length".into(), GgufValue::U32(64)),
            ("llama.attention.value_length".into(), GgufValue::U32(64)),
            ("llama.rope.freq_base".into(), GgufValue::F32(10000.0)),
            (
                "llama.attention.layer_norm_rms_epsilon".into(),
                GgufValue::F32(1e-5),
            ),
            ("tokenizer.ggml.model".into(), GgufValue::str("llama")),
            ("tokenizer.ggml.bos_token_id".into(), GgufValue::U32(1)),
            ("tokenizer.ggml.add_bos_token".into(), GgufValue::Bool(true)),
            (
                "tokenizer.chat_template".into(),
                GgufValue::str("{% for m in messages %}{{ m['content'] }}{% endfor %}"),
            ),
            // One key of every remaining value type, so parsers meet them all.
            ("emulator.sample.u8".into(), GgufValue::U8(8)),
            ("emulator.sample.i8".into(), GgufValue::I8(-8)),
            ("emulator.sample.u16".into(), GgufValue::U16(16)),
            ("emulator.sample.i16".into(), GgufValue::I16(-16)),
            ("emulator.sample.u64".into(), GgufValue::U64(1 << 40)),
            ("emulator.sample.i64".into(), GgufValue::I64(-(1 << 40))),
            ("emulator.sample.f64".into(), GgufValue::F64(0.5)),
            (
                "emulator.sample.nested".into(),
                GgufValue::Array(
                    GgufValueType::Array,
                    vec![
                        GgufValue::Array(GgufValueType::U8, vec![GgufValue::U8(1)]),
                        GgufValue::Array(GgufValueType::U8, vec![]),
                    ],
                ),
            ),
        ];
        spec.set_vocab(64);
        let upgraded = file_type.upgraded_type();
        spec.tensors
            .push(GgufTensor::new("token_embd.weight", &[embd, 64], main));
        for b in 0..blocks {
            for part in [
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
            ] {
                let t = match (part, upgraded) {
                    ("attn_v" | "ffn_down", Some(up)) if b % 2 == 0 => up,
                    _ => main,
                };
                spec.tensors.push(GgufTensor::new(
                    format!("blk.{b}.{part}.weight"),
                    &[embd, embd],
                    t,
                ));
            }
            spec.tensors.push(GgufTensor::new(
                format!("blk.{b}.attn_norm.weight"),
                &[embd],
                GgmlType::F32,
            ));
        }
        spec.tensors.push(GgufTensor::new(
            "output_norm.weight",
            &[embd],
            GgmlType::F32,
        ));
        spec
    }

    /// A vision projector (`general.architecture` = `clip`) in F16, at least `approx_size`
    /// bytes.
    pub fn mmproj(name: &str, approx_size: u64) -> Self {
        let embd: u64 = 256;
        let matrix = GgufTensor::new("x", &[embd, embd], GgmlType::F16).data_bytes();
        let blocks = approx_size.div_ceil(4 * matrix).max(1);
        let mut spec = Self::empty(seed_of(name) ^ 0x6d6d);
        spec.metadata = vec![
            ("general.architecture".into(), GgufValue::str("clip")),
            (
                "general.name".into(),
                GgufValue::str(format!("{name} mmproj")),
            ),
            ("general.file_type".into(), GgufValue::U32(1)),
            ("clip.has_vision_encoder".into(), GgufValue::Bool(true)),
            ("clip.has_text_encoder".into(), GgufValue::Bool(false)),
            ("clip.projector_type".into(), GgufValue::str("mlp")),
            ("clip.vision.image_size".into(), GgufValue::U32(336)),
            ("clip.vision.patch_size".into(), GgufValue::U32(14)),
            (
                "clip.vision.embedding_length".into(),
                GgufValue::U32(embd as u32),
            ),
            (
                "clip.vision.block_count".into(),
                GgufValue::U32(blocks as u32),
            ),
            ("clip.vision.attention.head_count".into(), GgufValue::U32(4)),
            (
                "clip.vision.image_mean".into(),
                GgufValue::Array(GgufValueType::F32, vec![GgufValue::F32(0.5); 3]),
            ),
        ];
        for b in 0..blocks {
            for part in ["attn_q", "attn_k", "attn_v", "attn_out"] {
                spec.tensors.push(GgufTensor::new(
                    format!("v.blk.{b}.{part}.weight"),
                    &[embd, embd],
                    GgmlType::F16,
                ));
            }
        }
        spec
    }

    /// Replaces the tokenizer vocabulary with `n` tokens (`tokenizer.ggml.tokens`, `scores`,
    /// `token_type`); large `n` makes a header of several megabytes, as real models have.
    pub fn set_vocab(&mut self, n: usize) {
        let tokens = (0..n)
            .map(|i| GgufValue::String(format!("<tok_{i:06}>")))
            .collect();
        let scores = (0..n).map(|i| GgufValue::F32(-(i as f32))).collect();
        let types = (0..n).map(|_| GgufValue::I32(1)).collect();
        self.set(
            "tokenizer.ggml.tokens",
            GgufValue::Array(GgufValueType::String, tokens),
        );
        self.set(
            "tokenizer.ggml.scores",
            GgufValue::Array(GgufValueType::F32, scores),
        );
        self.set(
            "tokenizer.ggml.token_type",
            GgufValue::Array(GgufValueType::I32, types),
        );
    }

    /// Sets (or replaces, keeping its position) a metadata key.
    pub fn set(&mut self, key: &str, value: GgufValue) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
    }

    /// The value of a metadata key.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Splits the tensors over `count` files the way `llama-gguf-split` does: the first file
    /// keeps all metadata, every file gets `split.no`, `split.count` and `split.tensors.count`.
    pub fn split(&self, count: u16) -> Vec<GgufSpec> {
        let count = count.max(1);
        let total = self.tensors.len();
        let per = total.div_ceil(count as usize).max(1);
        (0..count)
            .map(|i| {
                let mut part = Self::empty(self.seed ^ (u64::from(i) << 32));
                part.alignment = self.alignment;
                if i == 0 {
                    part.metadata = self.metadata.clone();
                } else if let Some(arch) = self.get("general.architecture") {
                    part.metadata
                        .push(("general.architecture".into(), arch.clone()));
                }
                part.set("split.no", GgufValue::U16(i));
                part.set("split.count", GgufValue::U16(count));
                part.set("split.tensors.count", GgufValue::I32(total as i32));
                let start = (i as usize * per).min(total);
                let end = ((i as usize + 1) * per).min(total);
                part.tensors = self.tensors[start..end].to_vec();
                part
            })
            .collect()
    }

    /// The header bytes (up to and including the padding before the tensor data) and the
    /// tensor data size (with the padding between tensors).
    pub fn header(&self) -> (Vec<u8>, u64) {
        let align = self.alignment.max(1);
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_str(&mut out, key);
            out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            value.write(&mut out);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.0.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += t.data_bytes().next_multiple_of(align);
        }
        let padded = (out.len() as u64).next_multiple_of(align);
        out.resize(padded as usize, 0);
        (out, offset)
    }

    /// Builds the file.
    pub fn build(&self) -> VirtualFile {
        let (header, data) = self.header();
        let size = header.len() as u64 + data;
        VirtualFile::new(header, size, self.seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quant_sizes_match_llama_cpp() {
        assert_eq!(GgmlType::Q4_K.block_size(), Some((256, 144)));
        assert_eq!(GgmlType::Q8_0.block_size(), Some((32, 34)));
        assert_eq!(GgmlType::Q6_K.block_size(), Some((256, 210)));
        assert_eq!(GgmlType::Q2_K.block_size(), Some((256, 84)));
        assert_eq!(GgmlType::IQ4_XS.block_size(), Some((256, 136)));
        assert_eq!(GgmlType(5).block_size(), None);
    }

    #[test]
    fn llama_file_has_the_requested_size_and_keys() {
        let spec = GgufSpec::llama("Tiny", LlamaFileType::Q4_K_M, 3 << 20);
        let f = spec.build();
        assert!(f.size() >= 3 << 20 && f.size() < 5 << 20, "{}", f.size());
        assert_eq!(spec.get("general.file_type"), Some(&GgufValue::U32(15)));
        let mut head = [0u8; 8];
        f.read_at(0, &mut head);
        assert_eq!(&head[..4], b"GGUF");
        assert_eq!(u32::from_le_bytes(head[4..8].try_into().unwrap()), 3);
        let (header, data) = spec.header();
        assert_eq!(header.len() % 32, 0);
        assert_eq!(f.size(), header.len() as u64 + data);
    }

    #[test]
    fn split_keeps_all_tensors() {
        let spec = GgufSpec::llama("Tiny", LlamaFileType::Q8_0, 1 << 20);
        let parts = spec.split(3);
        assert_eq!(parts.len(), 3);
        let n: usize = parts.iter().map(|p| p.tensors.len()).sum();
        assert_eq!(n, spec.tensors.len());
        assert_eq!(parts[2].get("split.no"), Some(&GgufValue::U16(2)));
        assert!(parts[1].get("general.file_type").is_none());
    }
}
