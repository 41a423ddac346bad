//! The ggml tables: tensor types with their block sizes, and GGUF file types with their quant
//! names.
//!
//! Both tables follow llama.cpp `gguf-py/gguf/constants.py` (`GGMLQuantizationType`,
//! `GGML_QUANT_SIZES`, `LlamaFileType`) as quoted in `reference/formats.md` §2 and §3. IDs 36 and
//! above are recent; an ID this table does not know is kept as a number rather than rejected, so a
//! file written by a newer llama.cpp still parses (its exact data size is then unknown).

use serde::{Deserialize, Serialize};

/// A ggml tensor type, as stored in each GGUF tensor info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

/// One row of the tensor type table: id, name, elements per block, bytes per block.
struct TypeRow {
    id: u32,
    name: &'static str,
    block_elems: u64,
    block_bytes: u64,
}

const QK_K: u64 = 256;

/// `GGML_QUANT_SIZES` in full. Removed ids (4, 5 = Q4_2/Q4_3; 31..33, 36..38 = runtime-repacked
/// layouts) are absent on purpose: llama.cpp refuses them too.
const TYPES: &[TypeRow] = &[
    row(0, "F32", 1, 4),
    row(1, "F16", 1, 2),
    row(2, "Q4_0", 32, 2 + 16),
    row(3, "Q4_1", 32, 2 + 2 + 16),
    row(6, "Q5_0", 32, 2 + 4 + 16),
    row(7, "Q5_1", 32, 2 + 2 + 4 + 16),
    row(8, "Q8_0", 32, 2 + 32),
    row(9, "Q8_1", 32, 4 + 4 + 32),
    row(10, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
    row(11, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
    row(12, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12),
    row(13, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12),
    row(14, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
    row(15, "Q8_K", QK_K, 4 + QK_K + QK_K / 8),
    row(16, "IQ2_XXS", QK_K, 2 + QK_K / 4),
    row(17, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32),
    row(18, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8),
    row(19, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16),
    row(20, "IQ4_NL", 32, 2 + 16),
    row(21, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
    row(22, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16),
    row(23, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
    row(24, "I8", 1, 1),
    row(25, "I16", 1, 2),
    row(26, "I32", 1, 4),
    row(27, "I64", 1, 8),
    row(28, "F64", 1, 8),
    row(29, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
    row(30, "BF16", 1, 2),
    row(34, "TQ1_0", QK_K, 2 + 4 * 13),
    row(35, "TQ2_0", QK_K, 2 + 64),
    row(39, "MXFP4", 32, 1 + 16),
    row(40, "NVFP4", 64, 4 + 32),
    row(41, "Q1_0", 128, 2 + 16),
];

const fn row(id: u32, name: &'static str, block_elems: u64, block_bytes: u64) -> TypeRow {
    TypeRow {
        id,
        name,
        block_elems,
        block_bytes,
    }
}

impl GgmlType {
    fn row(self) -> Option<&'static TypeRow> {
        TYPES.iter().find(|r| r.id == self.0)
    }

    /// Every tensor type this table knows, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TYPES.iter().map(|r| GgmlType(r.id))
    }

    /// The type called `name` (`Q4_K`, `BF16`), if known.
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TYPES
            .iter()
            .find(|r| r.name == name)
            .map(|r| GgmlType(r.id))
    }

    /// The type's name (`Q4_K`), or `None` for an id this table does not know.
    pub fn name(self) -> Option<&'static str> {
        self.row().map(|r| r.name)
    }

    /// The name, or `type_<id>` for an unknown id.
    pub fn display_name(self) -> String {
        match self.name() {
            Some(n) => n.to_string(),
            None => format!("type_{}", self.0),
        }
    }

    /// `(elements per block, bytes per block)`, as in `GGML_QUANT_SIZES`.
    pub fn block_size(self) -> Option<(u64, u64)> {
        self.row().map(|r| (r.block_elems, r.block_bytes))
    }

    /// Bits per weight of a tensor stored in this type.
    pub fn bits_per_weight(self) -> Option<f64> {
        self.block_size()
            .map(|(elems, bytes)| bytes as f64 * 8.0 / elems as f64)
    }

    /// Exact byte size of a tensor of `n_elements` whose first dimension is `row_len`.
    ///
    /// `None` for an unknown type, a row that is not a whole number of blocks (ggml refuses such
    /// tensors), or an overflow.
    pub fn tensor_bytes(self, row_len: u64, n_elements: u64) -> Option<u64> {
        let (elems, bytes) = self.block_size()?;
        if !row_len.is_multiple_of(elems) {
            return None;
        }
        (n_elements / elems).checked_mul(bytes)
    }
}

/// A GGUF `general.file_type` value (`llama_ftype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileType(pub u32);

/// `LlamaFileType` names without the `MOSTLY_` prefix; `ALL_F32` is shown as `F32`.
const FILE_TYPES: &[(u32, &str)] = &[
    (0, "F32"),
    (1, "F16"),
    (2, "Q4_0"),
    (3, "Q4_1"),
    (4, "Q4_1_SOME_F16"),
    (5, "Q4_2"),
    (6, "Q4_3"),
    (7, "Q8_0"),
    (8, "Q5_0"),
    (9, "Q5_1"),
    (10, "Q2_K"),
    (11, "Q3_K_S"),
    (12, "Q3_K_M"),
    (13, "Q3_K_L"),
    (14, "Q4_K_S"),
    (15, "Q4_K_M"),
    (16, "Q5_K_S"),
    (17, "Q5_K_M"),
    (18, "Q6_K"),
    (19, "IQ2_XXS"),
    (20, "IQ2_XS"),
    (21, "Q2_K_S"),
    (22, "IQ3_XS"),
    (23, "IQ3_XXS"),
    (24, "IQ1_S"),
    (25, "IQ4_NL"),
    (26, "IQ3_S"),
    (27, "IQ3_M"),
    (28, "IQ2_S"),
    (29, "IQ2_M"),
    (30, "IQ4_XS"),
    (31, "IQ1_M"),
    (32, "BF16"),
    (33, "Q4_0_4_4"),
    (34, "Q4_0_4_8"),
    (35, "Q4_0_8_8"),
    (36, "TQ1_0"),
    (37, "TQ2_0"),
    (38, "MXFP4_MOE"),
    (39, "NVFP4"),
    (40, "Q1_0"),
    (1024, "GUESSED"),
];

impl FileType {
    /// The quant name (`Q4_K_M`), or `None` for an id this table does not know.
    pub fn name(self) -> Option<&'static str> {
        FILE_TYPES
            .iter()
            .find(|(id, _)| *id == self.0)
            .map(|(_, n)| *n)
    }

    /// The file type whose quant name is `name`.
    pub fn from_name(name: &str) -> Option<FileType> {
        FILE_TYPES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| FileType(*id))
    }

    /// Every file type id with a name, in id order.
    pub fn all() -> impl Iterator<Item = FileType> {
        FILE_TYPES.iter().map(|(id, _)| FileType(*id))
    }
}

/// The file-type name implied by a tensor type that dominates a file, used when
/// `general.file_type` is missing (gguf.md: it "can be inferred from the tensor types").
///
/// A k-quant tensor type says nothing about the `_S`/`_M`/`_L` mix, so `Q4_K` stays `Q4_K`
/// (an alias of `Q4_K_M` in `quantize`).
pub fn quant_name_for_tensor_type(t: GgmlType) -> String {
    match t.name() {
        Some("MXFP4") => "MXFP4_MOE".to_string(),
        Some(n) => n.to_string(),
        None => t.display_name(),
    }
}

/// Quant names ordered from highest quality (most bits) to lowest.
///
/// Follows huggingface.js `GGUF_QUANT_ORDER` for the names it has, with unsloth's `_XL` dynamic
/// quants just above their `_M` sibling and bartowski's `_L` between `_M` and `_XL`. Used by the
/// fit recommendation; [`quant_rank`] looks names up in it.
pub const QUANT_QUALITY_ORDER: &[&str] = &[
    "F64",
    "F32",
    "BF16",
    "F16",
    "Q8_K_XL",
    "Q8_0_L",
    "Q8_0",
    "Q6_K_XL",
    "Q6_K_L",
    "Q6_K",
    "Q5_K_XL",
    "Q5_K_L",
    "Q5_K_M",
    "Q5_K",
    "Q5_1",
    "Q5_K_S",
    "Q5_0",
    "Q4_K_XL",
    "Q4_K_L",
    "Q4_K_M",
    "Q4_K",
    "NVFP4",
    "MXFP4_MOE",
    "MXFP4",
    "Q4_1",
    "Q4_K_S",
    "IQ4_NL",
    "Q4_0",
    "IQ4_XS",
    "Q3_K_XL",
    "Q3_K_L",
    "Q3_K_M",
    "Q3_K",
    "IQ3_M",
    "IQ3_S",
    "Q3_K_S",
    "IQ3_XS",
    "IQ3_XXS",
    "Q2_K_XL",
    "Q2_K_L",
    "Q2_K",
    "Q2_K_S",
    "IQ2_M",
    "IQ2_S",
    "IQ2_XS",
    "TQ2_0",
    "IQ2_XXS",
    "IQ1_M",
    "TQ1_0",
    "IQ1_S",
    "Q1_0",
];

/// Position of `quant` in [`QUANT_QUALITY_ORDER`] (0 = best); a `UD-` prefix is ignored.
pub fn quant_rank(quant: &str) -> Option<usize> {
    let q = quant.strip_prefix("UD-").unwrap_or(quant);
    QUANT_QUALITY_ORDER.iter().position(|n| *n == q)
}

/// Approximate bits per weight of a quant name, for display and for ordering non-GGUF variants
/// against GGUF ones. From the `quantize` help text (formats.md §4.1) and the block tables.
pub fn quant_bits_per_weight(quant: &str) -> Option<f64> {
    let q = quant.strip_prefix("UD-").unwrap_or(quant);
    let bpw = match q {
        "F64" => 64.0,
        "F32" => 32.0,
        "BF16" | "F16" => 16.0,
        "Q8_0" | "Q8_0_L" | "Q8_K_XL" => 8.5,
        "Q6_K" | "Q6_K_L" | "Q6_K_XL" => 6.5625,
        "Q5_K_M" | "Q5_K" | "Q5_K_L" | "Q5_K_XL" => 5.69,
        "Q5_K_S" => 5.54,
        "Q5_1" => 6.0,
        "Q5_0" => 5.5,
        "Q4_K_M" | "Q4_K" | "Q4_K_L" | "Q4_K_XL" => 4.89,
        "Q4_K_S" => 4.58,
        "Q4_1" => 5.0,
        "Q4_0" | "IQ4_NL" => 4.5,
        "IQ4_XS" => 4.25,
        "MXFP4_MOE" | "MXFP4" => 4.25,
        "NVFP4" => 4.5,
        "Q3_K_L" | "Q3_K_XL" => 4.27,
        "Q3_K_M" | "Q3_K" => 3.91,
        "Q3_K_S" => 3.5,
        "IQ3_M" => 3.66,
        "IQ3_S" => 3.44,
        "IQ3_XS" => 3.3,
        "IQ3_XXS" => 3.06,
        "Q2_K" | "Q2_K_L" | "Q2_K_XL" => 3.35,
        "Q2_K_S" => 2.96,
        "IQ2_M" => 2.7,
        "IQ2_S" => 2.5,
        "IQ2_XS" => 2.31,
        "IQ2_XXS" | "TQ2_0" => 2.06,
        "IQ1_M" => 1.75,
        "TQ1_0" => 1.69,
        "IQ1_S" => 1.56,
        "Q1_0" => 1.125,
        _ => return None,
    };
    Some(bpw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_the_reference_examples() {
        assert_eq!(
            GgmlType::from_name("Q4_K").unwrap().block_size(),
            Some((256, 144))
        );
        assert_eq!(
            GgmlType::from_name("Q8_0").unwrap().block_size(),
            Some((32, 34))
        );
        assert_eq!(
            GgmlType::from_name("Q4_K").unwrap().bits_per_weight(),
            Some(4.5)
        );
        assert_eq!(GgmlType(4).name(), None);
    }

    #[test]
    fn tensor_bytes_refuses_partial_blocks() {
        let q4k = GgmlType::from_name("Q4_K").unwrap();
        assert_eq!(q4k.tensor_bytes(512, 512 * 3), Some(2 * 3 * 144));
        assert_eq!(q4k.tensor_bytes(100, 100), None);
    }

    #[test]
    fn every_named_quant_has_a_rank_and_bits() {
        for ft in FileType::all() {
            let name = ft.name().unwrap();
            let removed = matches!(
                name,
                "Q4_1_SOME_F16"
                    | "Q4_2"
                    | "Q4_3"
                    | "Q4_0_4_4"
                    | "Q4_0_4_8"
                    | "Q4_0_8_8"
                    | "GUESSED"
            );
            if !removed {
                assert!(quant_rank(name).is_some(), "{name} has no rank");
                assert!(quant_bits_per_weight(name).is_some(), "{name} has no bpw");
            }
        }
    }
}
