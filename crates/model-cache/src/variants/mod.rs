//! Variants: the versions of a model a repo offers, grouped from its file list.
//!
//! [`scan()`] is a pure function of the listing (paths and sizes): one variant per GGUF quant
//! (split sets `-0000N-of-0000M` grouped and checked complete, `mmproj` projectors offered beside,
//! never counted as weights), one per safetensors set (an index file or a shard set or a single
//! file), one per ONNX precision, one per PyTorch `.bin` set. Each variant carries the companion
//! files a runner needs and its exact total size.
//!
//! [`inspect()`] then reads what the names cannot be trusted for: `config.json` (GPTQ, AWQ, EXL2 and
//! MLX are safetensors sets told apart by `quantization_config`/`quantization`), the GGUF and
//! safetensors headers (quant, dtype, parameters, context, KV-cache shape) and the shard indexes.
//! Where a file name and its header disagree, the header wins and the variant says so in
//! [`Variant::warnings`].
//!
//! The work is split the same way:
//!
//! - `scan` recognises each file of the listing by its name (weights, shard of a split set,
//!   shard index, companion, projector, extra) and reads quant labels from GGUF file names;
//! - `group` gathers the recognised files into variants: split sets checked complete,
//!   companions from the variant's folder and the root, projectors and extras beside, sizes
//!   summed, and the order (format, then quality, best first);
//! - `inspect` reads `config.json`, shard indexes and weight headers through a [`RepoFiles`]
//!   (the Hub with range requests, a local snapshot, or the cache first).
//!
//! This module holds the types they share; everything public is re-exported here, so the
//! submodules are an internal seam, not part of the path.

mod group;
mod inspect;
mod scan;

use serde::{Deserialize, Serialize};

use crate::hub::TreeEntry;

pub use inspect::{
    CacheFirstRepoFiles, ConfigInfo, EitherSource, HubRepoFiles, LocalRepoFiles, RepoFiles,
    apply_config, inspect, parse_config,
};
pub use scan::{parse_quant_label, quant_family, scan};

/// A file of a repo listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedFile {
    pub path: String,
    pub size: u64,
}

impl From<&TreeEntry> for ListedFile {
    fn from(e: &TreeEntry) -> Self {
        ListedFile {
            path: e.path.clone(),
            size: e.size,
        }
    }
}

/// The kind of weights a variant holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantFormat {
    Gguf,
    Safetensors,
    Gptq,
    Awq,
    Exl2,
    Mlx,
    Onnx,
    Pytorch,
}

/// A file that belongs to a variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantFile {
    pub path: String,
    pub size: u64,
}

/// Shard bookkeeping of a split set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitStatus {
    /// `M` in `-0000N-of-0000M`.
    pub count: u32,
    /// Shard numbers (1-based) not in the listing.
    pub missing: Vec<u32>,
}

/// What the headers (or `config.json`) say about the model in a variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    pub architecture: Option<String>,
    pub parameter_count: Option<u64>,
    pub context_length: Option<u64>,
    pub block_count: Option<u64>,
    pub head_count_kv: Option<u64>,
    pub key_length: Option<u64>,
    pub value_length: Option<u64>,
    /// f16 KV-cache bytes per token of context.
    pub kv_cache_bytes_per_token: Option<u64>,
    /// Exact bytes of tensor data over all files (GGUF from the ggml table, safetensors from the
    /// offsets).
    pub tensor_data_bytes: Option<u64>,
}

/// Why a variant deserves a second look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// The file name says one quant, the header another; the header wins.
    QuantMismatch,
    /// A split set lacks shards.
    IncompleteSplit,
    /// A header could not be read or parsed.
    HeaderUnreadable,
    /// A shard index names files the listing does not have (or the reverse).
    IndexMismatch,
    /// The weights are Python pickles (`.bin`, `.pt`, `.pth`, `.ckpt`, `.pkl`): loading them
    /// with `torch.load` or `pickle` can run any code the file carries. The message names the
    /// repo's safetensors variant when it has one.
    UnsafePickle,
}

/// A warning attached to a variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub kind: WarningKind,
    pub message: String,
}

/// One selectable version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Unique within the repo: the format and the weight files' common path stem.
    pub id: String,
    /// What to show: the quant label (`UD-Q4_K_XL`), the dtype (`BF16`), or the file stem.
    pub name: String,
    pub format: VariantFormat,
    /// The canonical quant: from the header once inspected (it wins over the name), else from
    /// the name.
    pub quant: Option<String>,
    /// The quant label read from the file name, as written.
    pub name_quant: Option<String>,
    pub bits_per_weight: Option<f64>,
    /// Weight files, in shard order.
    pub files: Vec<VariantFile>,
    /// Files a runner needs beside the weights: config, tokenizer, chat template, generation
    /// config, shard index.
    pub companions: Vec<VariantFile>,
    /// Optional files (README, LICENSE).
    pub extras: Vec<VariantFile>,
    /// Multimodal projectors offered beside the weights (not counted in the sizes).
    pub projectors: Vec<VariantFile>,
    pub weights_size: u64,
    /// Weights plus companions: what a download of this variant transfers (extras and
    /// projectors are opt-in).
    pub total_size: u64,
    pub split: Option<SplitStatus>,
    /// False when shards are missing.
    pub complete: bool,
    /// Filled by [`inspect()`].
    pub shape: Option<ModelShape>,
    pub warnings: Vec<Warning>,
}

/// The folder and the file name of a listed path (`""` for the repo root).
fn split_path(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((d, b)) => (d, b),
        None => ("", path),
    }
}
