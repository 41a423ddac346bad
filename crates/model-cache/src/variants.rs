//! Variants: the versions of a model a repo offers, grouped from its file list.
//!
//! [`scan`] is a pure function of the listing (paths and sizes): one variant per GGUF quant
//! (split sets `-0000N-of-0000M` grouped and checked complete, `mmproj` projectors offered beside,
//! never counted as weights), one per safetensors set (an index file or a shard set or a single
//! file), one per ONNX precision, one per PyTorch `.bin` set. Each variant carries the companion
//! files a runner needs and its exact total size.
//!
//! [`inspect`] then reads what the names cannot be trusted for: `config.json` (GPTQ, AWQ, EXL2 and
//! MLX are safetensors sets told apart by `quantization_config`/`quantization`), the GGUF and
//! safetensors headers (quant, dtype, parameters, context, KV-cache shape) and the shard indexes.
//! Where a file name and its header disagree, the header wins and the variant says so in
//! [`Variant::warnings`].
//!
//! Quant names are read from file names with the semantics of huggingface.js `GGUF_QUANT_RE`:
//! the upper-cased path is scanned left to right for known quant names (an optional `UD-` prefix,
//! an optional `_[A-Z]+` size suffix) and the last match wins. Unlike huggingface.js, the bare
//! k-quant names (`Q4_K`) are also known, so bartowski's `Q4_K_L` keeps its `_L` instead of not
//! matching at all.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::formats::ggml::{FileType, quant_bits_per_weight, quant_rank};
use crate::formats::{ByteSource, SourceError, gguf, safetensors};
use crate::hub::{HubClient, TreeEntry};
use crate::repo::RepoId;

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
    /// Filled by [`inspect`].
    pub shape: Option<ModelShape>,
    pub warnings: Vec<Warning>,
}

/// Files every runner may need beside the weights.
const COMPANION_NAMES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
    "quantize_config.json",
    "quant_config.json",
];

fn is_extra(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "readme.md" || lower.starts_with("license") || lower == "notice"
}

fn split_path(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((d, b)) => (d, b),
        None => ("", path),
    }
}

/// Quant names the file-name scanner knows, in the order huggingface.js tries them (the
/// `GGMLFileQuantizationType` enum order) followed by the unsloth names, `MXFP4` (gpt-oss file
/// names) and the bare k-quants. Order matters: at each position the first name that matches is
/// taken, so `Q4_K_M` must come before `Q4_K`.
fn quant_alternatives() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = FileType::all()
        .filter_map(|f| f.name())
        .filter(|n| *n != "GUESSED")
        .collect();
    v.extend([
        "Q2_K_XL", "Q3_K_XL", "Q4_K_XL", "Q5_K_XL", "Q6_K_XL", "Q8_K_XL", "MXFP4", "Q3_K", "Q4_K",
        "Q5_K", "Q8_K",
    ]);
    v
}

/// The quant label of a GGUF file name (`UD-Q4_K_XL`, `Q4_K_M`), huggingface.js style: apply to
/// the upper-cased path, last match wins.
pub fn parse_quant_label(path: &str) -> Option<String> {
    let upper = path.to_ascii_uppercase();
    let s = upper.as_bytes();
    let alts = quant_alternatives();
    let at = |pos: usize| -> Option<&'static str> {
        alts.iter()
            .find(|q| s[pos..].starts_with(q.as_bytes()))
            .copied()
    };
    let mut last = None;
    let mut i = 0;
    while i < s.len() {
        let (start, prefix, quant) = match (s[i..].starts_with(b"UD-"), i + 3 <= s.len()) {
            (true, true) if at(i + 3).is_some() => (i + 3, true, at(i + 3)),
            _ => (i, false, at(i)),
        };
        let Some(q) = quant else {
            i += 1;
            continue;
        };
        let mut end = start + q.len();
        // `(_[A-Z]+)?`
        if s.get(end) == Some(&b'_') {
            let letters = s[end + 1..]
                .iter()
                .take_while(|b| b.is_ascii_uppercase())
                .count();
            if letters > 0 {
                end += 1 + letters;
            }
        }
        // Only ASCII was matched, so this is the exact label.
        let label = String::from_utf8_lossy(&s[start..end]);
        last = Some(if prefix {
            format!("UD-{label}")
        } else {
            label.into_owned()
        });
        i = end;
    }
    last
}

/// The quant family used to compare a name with a header: `UD-` and size suffixes of k-quants
/// dropped (`Q4_K_XL`, `Q4_K_M` and `Q4_K` are one family), `MXFP4` = `MXFP4_MOE`.
pub fn quant_family(quant: &str) -> String {
    let q = quant.strip_prefix("UD-").unwrap_or(quant);
    if let Some(pos) = q.find("_K") {
        return q[..pos + 2].to_string();
    }
    if q.starts_with("MXFP4") {
        return "MXFP4".to_string();
    }
    // A size suffix beyond the known name (`Q8_0_L`) is the uploader's, not the format's.
    if FileType::from_name(q).is_none()
        && let Some((base, _)) = q.rsplit_once('_')
        && FileType::from_name(base).is_some()
    {
        return base.to_string();
    }
    q.to_string()
}

/// `prefix`, shard number and total of a `-0000N-of-0000M.<ext>` name.
fn shard_parts<'a>(base: &'a str, ext: &str) -> Option<(&'a str, u32, u32)> {
    let stem = base.strip_suffix(ext)?;
    let (rest, total) = stem.rsplit_once("-of-")?;
    let (prefix, shard) = rest.rsplit_once('-')?;
    if shard.len() != 5 || total.len() != 5 {
        return None;
    }
    if !shard.bytes().all(|b| b.is_ascii_digit()) || !total.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((prefix, shard.parse().ok()?, total.parse().ok()?))
}

/// A set of weight files being grouped.
struct Group {
    format: VariantFormat,
    dir: String,
    stem: String,
    files: Vec<(u32, VariantFile)>,
    split_total: Option<u32>,
    index: Option<VariantFile>,
    label: Option<String>,
}

/// ONNX precision suffixes of transformers.js / optimum exports.
const ONNX_SUFFIXES: &[&str] = &[
    "q4f16",
    "fp16",
    "bnb4",
    "int8",
    "uint8",
    "q4",
    "q8",
    "quantized",
];

fn onnx_precision(stem: &str) -> (&str, &str) {
    for s in ONNX_SUFFIXES {
        if let Some(base) = stem.strip_suffix(s)
            && let Some(base) = base.strip_suffix('_')
        {
            return (base, s);
        }
    }
    (stem, "fp32")
}

/// Groups a repo listing into variants. Pure: no I/O.
pub fn scan(files: &[ListedFile]) -> Vec<Variant> {
    let mut groups: BTreeMap<(VariantFormat, String, String), Group> = BTreeMap::new();
    let mut projectors = Vec::new();
    let mut indexes: Vec<(VariantFormat, String, String, VariantFile)> = Vec::new();
    let mut companions_by_dir: BTreeMap<String, Vec<VariantFile>> = BTreeMap::new();
    let mut extras = Vec::new();

    for f in files {
        let (dir, base) = split_path(&f.path);
        let vf = VariantFile {
            path: f.path.clone(),
            size: f.size,
        };
        let lower = base.to_ascii_lowercase();
        if COMPANION_NAMES.contains(&base) {
            companions_by_dir
                .entry(dir.to_string())
                .or_default()
                .push(vf);
            continue;
        }
        if dir.is_empty() && is_extra(base) {
            extras.push(vf);
            continue;
        }
        let mut add = |format: VariantFormat, stem: &str, n: u32, total: Option<u32>, label| {
            let key = (
                format,
                dir.to_string(),
                format!("{stem}#{}", total.unwrap_or(0)),
            );
            let g = groups.entry(key).or_insert_with(|| Group {
                format,
                dir: dir.to_string(),
                stem: stem.to_string(),
                files: Vec::new(),
                split_total: total,
                index: None,
                label,
            });
            g.files.push((n, vf.clone()));
        };
        if lower.ends_with(".gguf") {
            if lower.starts_with("mmproj")
                || lower.contains("mmproj")
                || lower.contains("projector")
            {
                projectors.push(vf);
                continue;
            }
            let (stem, n, total) = match shard_parts(base, ".gguf") {
                Some((p, n, t)) => (p.to_string(), n, Some(t)),
                None => (base.trim_end_matches(".gguf").to_string(), 1, None),
            };
            let full = if dir.is_empty() {
                stem.clone()
            } else {
                format!("{dir}/{stem}")
            };
            add(
                VariantFormat::Gguf,
                &stem,
                n,
                total,
                parse_quant_label(&full),
            );
        } else if let Some(stem) = base.strip_suffix(".safetensors.index.json") {
            indexes.push((
                VariantFormat::Safetensors,
                dir.to_string(),
                stem.to_string(),
                vf,
            ));
        } else if let Some(stem) = base.strip_suffix(".bin.index.json") {
            indexes.push((
                VariantFormat::Pytorch,
                dir.to_string(),
                stem.to_string(),
                vf,
            ));
        } else if lower.ends_with(".safetensors") {
            match shard_parts(base, ".safetensors") {
                Some((p, n, t)) => add(VariantFormat::Safetensors, p, n, Some(t), None),
                None => add(
                    VariantFormat::Safetensors,
                    base.trim_end_matches(".safetensors"),
                    1,
                    None,
                    None,
                ),
            }
        } else if lower.ends_with(".bin")
            && (lower.starts_with("pytorch_model") || lower.starts_with("model"))
        {
            match shard_parts(base, ".bin") {
                Some((p, n, t)) => add(VariantFormat::Pytorch, p, n, Some(t), None),
                None => add(
                    VariantFormat::Pytorch,
                    base.trim_end_matches(".bin"),
                    1,
                    None,
                    None,
                ),
            }
        } else if lower.ends_with(".onnx") {
            let stem = &base[..base.len() - 5];
            let (_, precision) = onnx_precision(stem);
            add(
                VariantFormat::Onnx,
                precision,
                0,
                None,
                Some(precision.to_string()),
            );
        }
    }
    // ONNX external data (`model.onnx_data`, `model.onnx.data`, `model_fp16.onnx_data_1`) joins
    // the group of its graph.
    for f in files {
        let (dir, base) = split_path(&f.path);
        let Some(pos) = base.find(".onnx_data").or_else(|| base.find(".onnx.data")) else {
            continue;
        };
        let (_, precision) = onnx_precision(&base[..pos]);
        let key = (
            VariantFormat::Onnx,
            dir.to_string(),
            format!("{precision}#0"),
        );
        if let Some(g) = groups.get_mut(&key) {
            g.files.push((
                1,
                VariantFile {
                    path: f.path.clone(),
                    size: f.size,
                },
            ));
        }
    }
    // An index belongs to the set with its stem in its folder (split or not).
    for (format, dir, stem, vf) in indexes {
        let g = groups
            .values_mut()
            .find(|g| g.format == format && g.dir == dir && g.stem == stem);
        match g {
            Some(g) => g.index = Some(vf),
            None => {
                // An index without any listed shard: a set whose every file is missing.
                groups.insert(
                    (format, dir.clone(), format!("{stem}#index")),
                    Group {
                        format,
                        dir,
                        stem,
                        files: Vec::new(),
                        split_total: None,
                        index: Some(vf),
                        label: None,
                    },
                );
            }
        }
    }

    let mut variants: Vec<Variant> = groups
        .into_values()
        .map(|g| build_variant(g, &companions_by_dir, &extras, &projectors))
        .collect();
    variants.sort_by(|a, b| (a.format, rank_key(a), &a.id).cmp(&(b.format, rank_key(b), &b.id)));
    variants
}

fn rank_key(v: &Variant) -> usize {
    v.quant
        .as_deref()
        .and_then(quant_rank)
        .unwrap_or(usize::MAX)
}

fn build_variant(
    mut g: Group,
    companions_by_dir: &BTreeMap<String, Vec<VariantFile>>,
    extras: &[VariantFile],
    projectors: &[VariantFile],
) -> Variant {
    g.files
        .sort_by(|a, b| (a.0, &a.1.path).cmp(&(b.0, &b.1.path)));
    let format_tag = match g.format {
        VariantFormat::Gguf => "gguf",
        VariantFormat::Onnx => "onnx",
        VariantFormat::Pytorch => "pytorch",
        _ => "safetensors",
    };
    let stem_path = if g.dir.is_empty() {
        g.stem.clone()
    } else {
        format!("{}/{}", g.dir, g.stem)
    };
    let id = format!("{format_tag}:{stem_path}");
    let mut warnings = Vec::new();
    let split = g.split_total.map(|count| {
        let present: BTreeSet<u32> = g.files.iter().map(|(n, _)| *n).collect();
        let missing: Vec<u32> = (1..=count).filter(|n| !present.contains(n)).collect();
        SplitStatus { count, missing }
    });
    if let Some(s) = &split
        && !s.missing.is_empty()
    {
        warnings.push(Warning {
            kind: WarningKind::IncompleteSplit,
            message: format!(
                "Split set `{stem_path}` lacks shard(s) {} of {}",
                s.missing
                    .iter()
                    .map(|n| format!("{n:05}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.count
            ),
        });
    }
    let mut complete = split.as_ref().is_none_or(|s| s.missing.is_empty());
    if g.files.is_empty() {
        complete = false;
        warnings.push(Warning {
            kind: WarningKind::IndexMismatch,
            message: format!("Index of `{stem_path}` is listed but none of its weight files are"),
        });
    }
    // Companions come from the variant's folder, then the repo root for what the folder lacks
    // (an `onnx/` export uses the root tokenizer).
    let mut companions: Vec<VariantFile> = Vec::new();
    if g.format != VariantFormat::Gguf {
        let mut seen = BTreeSet::new();
        for dir in [g.dir.as_str(), ""] {
            for f in companions_by_dir.get(dir).into_iter().flatten() {
                let (_, base) = split_path(&f.path);
                if seen.insert(base.to_string()) {
                    companions.push(f.clone());
                }
            }
        }
        // `quantize_config.json` and friends only matter to quantized sets; harmless otherwise.
    }
    if let Some(ix) = g.index.take() {
        companions.push(ix);
    }
    companions.sort_by(|a, b| a.path.cmp(&b.path));
    let files: Vec<VariantFile> = g.files.into_iter().map(|(_, f)| f).collect();
    let weights_size = files.iter().map(|f| f.size).sum();
    let total_size = weights_size + companions.iter().map(|f| f.size).sum::<u64>();
    let quant = g.label.as_deref().map(|l| match g.format {
        VariantFormat::Gguf => l.strip_prefix("UD-").unwrap_or(l).to_string(),
        _ => l.to_string(),
    });
    let name = match (&g.label, g.format) {
        (Some(l), VariantFormat::Onnx) => format!("onnx {l}"),
        (Some(l), _) => l.clone(),
        (None, _) => stem_path.clone(),
    };
    let bits_per_weight = quant.as_deref().and_then(quant_bits_per_weight);
    Variant {
        id,
        name,
        format: g.format,
        quant,
        name_quant: g.label,
        bits_per_weight,
        files,
        companions,
        extras: extras.to_vec(),
        projectors: if g.format == VariantFormat::Gguf {
            projectors.to_vec()
        } else {
            Vec::new()
        },
        weights_size,
        total_size,
        split,
        complete,
        shape: None,
        warnings,
    }
}

/// What `config.json` says about quantization and the model's shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigInfo {
    /// `gptq`, `awq`, `exl2`, `mlx`, or another `quant_method` (`fp8`, `bitsandbytes`...).
    pub quant_method: Option<String>,
    pub bits: Option<f64>,
    pub group_size: Option<i64>,
    pub shape: ModelShape,
}

/// Reads the fields of a transformers `config.json` that matter here.
pub fn parse_config(json: &[u8]) -> Option<ConfigInfo> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    // Multimodal configs nest the language model's numbers.
    let text = v.get("text_config").unwrap_or(&v);
    let u = |k: &str| text.get(k).and_then(serde_json::Value::as_u64);
    let mut info = ConfigInfo::default();
    let layers = u("num_hidden_layers").or_else(|| u("n_layer"));
    let heads = u("num_attention_heads").or_else(|| u("n_head"));
    let kv_heads = u("num_key_value_heads").or(heads);
    let hidden = u("hidden_size").or_else(|| u("n_embd"));
    let head_dim = u("head_dim").or(match (hidden, heads) {
        (Some(h), Some(n)) if n > 0 => Some(h / n),
        _ => None,
    });
    info.shape = ModelShape {
        architecture: v
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str())
            .or_else(|| v.get("model_type").and_then(|m| m.as_str()))
            .map(str::to_string),
        parameter_count: None,
        context_length: u("max_position_embeddings").or_else(|| u("n_positions")),
        block_count: layers,
        head_count_kv: kv_heads,
        key_length: head_dim,
        value_length: head_dim,
        kv_cache_bytes_per_token: match (layers, kv_heads, head_dim) {
            (Some(l), Some(k), Some(d)) => Some(l * k * 2 * d * 2),
            _ => None,
        },
        tensor_data_bytes: None,
    };
    if let Some(q) = v.get("quantization_config") {
        info.quant_method = q
            .get("quant_method")
            .and_then(|m| m.as_str())
            .map(str::to_ascii_lowercase);
        info.bits = q.get("bits").and_then(serde_json::Value::as_f64);
        info.group_size = q.get("group_size").and_then(serde_json::Value::as_i64);
        if info.quant_method.as_deref() == Some("bitsandbytes") {
            info.bits = if q.get("load_in_4bit").and_then(|b| b.as_bool()) == Some(true) {
                Some(4.0)
            } else {
                Some(8.0)
            };
        }
    } else if let Some(q) = v.get("quantization") {
        // MLX writes `"quantization": {"group_size": 64, "bits": 4}`.
        info.quant_method = Some("mlx".into());
        info.bits = q.get("bits").and_then(serde_json::Value::as_f64);
        info.group_size = q.get("group_size").and_then(serde_json::Value::as_i64);
    }
    Some(info)
}

/// Applies a root `config.json` to the root-level safetensors sets: quantized formats, labels and
/// the model shape for fit hints.
pub fn apply_config(variants: &mut [Variant], config: &ConfigInfo) {
    for v in variants.iter_mut() {
        let at_root = v.files.iter().all(|f| !f.path.contains('/'));
        if v.format != VariantFormat::Gguf && v.shape.is_none() {
            v.shape = Some(config.shape.clone());
        }
        if !at_root || v.format != VariantFormat::Safetensors {
            continue;
        }
        let bits = config.bits;
        let bits_label = |b: f64| {
            if b.fract() == 0.0 {
                format!("{b:.0}bit")
            } else {
                format!("{b}bpw")
            }
        };
        let (format, label) = match config.quant_method.as_deref() {
            Some("gptq") => (VariantFormat::Gptq, "GPTQ"),
            Some("awq") => (VariantFormat::Awq, "AWQ"),
            Some("exl2") => (VariantFormat::Exl2, "EXL2"),
            Some("mlx") => (VariantFormat::Mlx, "MLX"),
            Some(other) => {
                // fp8, bitsandbytes, compressed-tensors...: still safetensors, but not the dtype.
                let q = match bits {
                    Some(b) => format!("{}-{}", other.to_ascii_uppercase(), bits_label(b)),
                    None => other.to_ascii_uppercase(),
                };
                v.quant = Some(q.clone());
                v.name = q;
                v.bits_per_weight = bits;
                continue;
            }
            None => continue,
        };
        let mut q = label.to_string();
        if let Some(b) = bits {
            q.push('-');
            q.push_str(&bits_label(b));
        }
        if let Some(g) = config.group_size.filter(|g| *g > 0) {
            q.push_str(&format!("-g{g}"));
        }
        v.format = format;
        v.quant = Some(q.clone());
        v.name = q;
        v.bits_per_weight = bits;
    }
}

/// Opens repo files by path for reading headers.
pub trait RepoFiles: Send + Sync {
    type Source: ByteSource;
    /// Opens `path` (of `size` bytes, from the listing).
    fn open(
        &self,
        path: &str,
        size: u64,
    ) -> impl Future<Output = Result<Self::Source, SourceError>> + Send;
}

/// Repo files on the Hub, at one revision, read with range requests.
#[derive(Debug, Clone)]
pub struct HubRepoFiles {
    pub client: HubClient,
    pub repo: RepoId,
    pub revision: String,
}

impl RepoFiles for HubRepoFiles {
    type Source = crate::formats::HubSource;

    async fn open(&self, path: &str, _size: u64) -> Result<Self::Source, SourceError> {
        let meta = self
            .client
            .file_metadata(&self.repo, &self.revision, path)
            .await
            .map_err(|e| SourceError::Hub {
                name: format!("{}/{path}", self.repo.id),
                range: 0..0,
                source: Box::new(e),
            })?;
        Ok(crate::formats::HubSource::new(
            self.client.clone(),
            meta.download_url,
            meta.size,
            format!("{}/{path}", self.repo.id),
            Some(meta.etag),
        ))
    }
}

/// Repo files in a local folder (a snapshot).
#[derive(Debug, Clone)]
pub struct LocalRepoFiles {
    pub root: std::path::PathBuf,
}

impl RepoFiles for LocalRepoFiles {
    type Source = crate::formats::LocalFile;

    async fn open(&self, path: &str, _size: u64) -> Result<Self::Source, SourceError> {
        crate::formats::LocalFile::open(&self.root.join(path))
    }
}

/// Repo files on the Hub, read from the local cache when their blob is already there: the
/// headers of a model already downloaded cost no network bytes.
#[derive(Debug, Clone)]
pub struct CacheFirstRepoFiles {
    pub hub: HubRepoFiles,
    pub cache: crate::store::RepoCache,
    /// The blob name (etag) of each listed path.
    pub etags: std::collections::HashMap<String, String>,
}

/// A file read from the cache or from the Hub.
pub enum EitherSource {
    Local(crate::formats::LocalFile),
    Hub(crate::formats::HubSource),
}

impl crate::formats::ByteSource for EitherSource {
    fn len(&self) -> u64 {
        match self {
            EitherSource::Local(s) => s.len(),
            EitherSource::Hub(s) => s.len(),
        }
    }

    fn name(&self) -> &str {
        match self {
            EitherSource::Local(s) => s.name(),
            EitherSource::Hub(s) => s.name(),
        }
    }

    async fn read_at(&self, offset: u64, len: u64) -> Result<bytes::Bytes, SourceError> {
        match self {
            EitherSource::Local(s) => s.read_at(offset, len).await,
            EitherSource::Hub(s) => s.read_at(offset, len).await,
        }
    }

    fn bytes_read(&self) -> u64 {
        match self {
            EitherSource::Local(s) => s.bytes_read(),
            EitherSource::Hub(s) => s.bytes_read(),
        }
    }
}

impl RepoFiles for CacheFirstRepoFiles {
    type Source = EitherSource;

    async fn open(&self, path: &str, size: u64) -> Result<Self::Source, SourceError> {
        if let Some(etag) = self.etags.get(path)
            && self.cache.blob_exists(etag)
        {
            let local = crate::formats::LocalFile::open(&self.cache.blob_path(etag))?;
            // A blob of the wrong size is not this file (a torn copy): ask the Hub instead.
            if local.len() == size {
                return Ok(EitherSource::Local(local));
            }
        }
        Ok(EitherSource::Hub(self.hub.open(path, size).await?))
    }
}

/// Largest `config.json` or shard index read (real ones are at most a few MB).
const MAX_JSON_BYTES: u64 = 32 * 1024 * 1024;

async fn read_small<R: RepoFiles>(files: &R, f: &VariantFile) -> Result<Vec<u8>, String> {
    if f.size > MAX_JSON_BYTES {
        return Err(format!(
            "`{}` is larger than {MAX_JSON_BYTES} bytes",
            f.path
        ));
    }
    let src = files
        .open(&f.path, f.size)
        .await
        .map_err(|e| e.to_string())?;
    let len = src.len().min(MAX_JSON_BYTES);
    let b = src.read_at(0, len).await.map_err(|e| error_chain(&e))?;
    Ok(b.to_vec())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Reads configs, indexes and headers to fill in quants, dtypes and model shapes. Failures become
/// [`WarningKind::HeaderUnreadable`] warnings, never errors: a listing stays useful without them.
pub async fn inspect<R: RepoFiles>(variants: &mut [Variant], listing: &[ListedFile], files: &R) {
    if let Some(cfg) = listing.iter().find(|f| f.path == "config.json") {
        let vf = VariantFile {
            path: cfg.path.clone(),
            size: cfg.size,
        };
        match read_small(files, &vf).await {
            Ok(bytes) => {
                if let Some(info) = parse_config(&bytes) {
                    apply_config(variants, &info);
                }
            }
            Err(e) => tracing::debug!(error = %e, "Cannot read config.json"),
        }
    }
    for v in variants.iter_mut() {
        match v.format {
            VariantFormat::Gguf => inspect_gguf(v, files).await,
            VariantFormat::Safetensors
            | VariantFormat::Gptq
            | VariantFormat::Awq
            | VariantFormat::Exl2
            | VariantFormat::Mlx => inspect_safetensors(v, listing, files).await,
            VariantFormat::Onnx | VariantFormat::Pytorch => {}
        }
    }
    // Headers may have renamed variants: keep the order (format, then quality, best first).
    variants.sort_by(|a, b| (a.format, rank_key(a), &a.id).cmp(&(b.format, rank_key(b), &b.id)));
}

async fn inspect_gguf<R: RepoFiles>(v: &mut Variant, files: &R) {
    let mut shape = ModelShape::default();
    let mut params = 0u64;
    let mut data: Option<u64> = Some(0);
    let mut first: Option<gguf::Summary> = None;
    for f in &v.files {
        let summary = match files.open(&f.path, f.size).await {
            Ok(src) => gguf::inspect(&src)
                .await
                .map(|(_, s)| s)
                .map_err(|e| error_chain(&e)),
            Err(e) => Err(error_chain(&e)),
        };
        match summary {
            Ok(s) => {
                params += s.parameter_count;
                data = match (data, s.tensor_data_bytes) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
                if let (Some(count), Some(split)) = (s.split_count, &v.split)
                    && count != u64::from(split.count)
                {
                    v.warnings.push(Warning {
                        kind: WarningKind::IncompleteSplit,
                        message: format!(
                            "`{}` says `split.count` = {count} but its name says {}",
                            f.path, split.count
                        ),
                    });
                }
                if first.is_none() {
                    first = Some(s);
                }
            }
            Err(e) => {
                v.warnings.push(Warning {
                    kind: WarningKind::HeaderUnreadable,
                    message: format!("Cannot read the GGUF header of `{}`: {e}", f.path),
                });
                data = None;
            }
        }
    }
    let Some(s) = first else { return };
    shape.architecture = s.architecture.clone();
    shape.parameter_count = Some(params);
    shape.context_length = s.context_length;
    shape.block_count = s.block_count;
    shape.head_count_kv = s.head_count_kv;
    shape.key_length = s.key_length;
    shape.value_length = s.value_length;
    shape.kv_cache_bytes_per_token = s.kv_cache_bytes_per_token;
    shape.tensor_data_bytes = data.filter(|_| v.complete);
    v.shape = Some(shape);
    if let Some(hq) = s.quant {
        if let Some(nq) = &v.name_quant
            && quant_family(nq) != quant_family(&hq)
        {
            v.warnings.push(Warning {
                kind: WarningKind::QuantMismatch,
                message: format!("File name says `{nq}` but the header says `{hq}`; using `{hq}`"),
            });
            v.name = hq.clone();
            v.quant = Some(hq.clone());
        } else {
            if v.name_quant.is_none() {
                v.name = hq.clone();
            }
            // The canonical quant is the header's; the name keeps an uploader's finer label
            // (`UD-Q4_K_XL` for a `Q4_K_M` header).
            v.quant = Some(hq.clone());
        }
        // The name keeps an uploader's finer label (`UD-Q4_K_XL`); bits follow the label when
        // known, the header's quant otherwise.
        v.bits_per_weight = v
            .name_quant
            .as_deref()
            .filter(|nq| quant_family(nq) == quant_family(&hq))
            .and_then(quant_bits_per_weight)
            .or_else(|| quant_bits_per_weight(&hq));
    }
}

async fn inspect_safetensors<R: RepoFiles>(v: &mut Variant, listing: &[ListedFile], files: &R) {
    // The shard index, when there is one, is the set's truth.
    let index_file = v
        .companions
        .iter()
        .find(|c| c.path.ends_with(".safetensors.index.json"))
        .cloned();
    if let Some(ix) = index_file {
        match read_small(files, &ix)
            .await
            .and_then(|b| safetensors::parse_index(&ix.path, &b).map_err(|e| error_chain(&e)))
        {
            Ok(index) => {
                let (dir, _) = split_path(&ix.path);
                let listed: BTreeSet<&str> = listing.iter().map(|f| f.path.as_str()).collect();
                let missing: Vec<String> = index
                    .shards
                    .iter()
                    .map(|s| {
                        if dir.is_empty() {
                            s.clone()
                        } else {
                            format!("{dir}/{s}")
                        }
                    })
                    .filter(|p| !listed.contains(p.as_str()))
                    .collect();
                if !missing.is_empty() {
                    v.complete = false;
                    v.warnings.push(Warning {
                        kind: WarningKind::IndexMismatch,
                        message: format!(
                            "`{}` names shard(s) the repo does not have: {}",
                            ix.path,
                            missing.join(", ")
                        ),
                    });
                }
            }
            Err(e) => v.warnings.push(Warning {
                kind: WarningKind::HeaderUnreadable,
                message: format!("Cannot read the shard index `{}`: {e}", ix.path),
            }),
        }
    }
    let mut params = 0u64;
    let mut data = 0u64;
    let mut dtypes: BTreeMap<String, u64> = BTreeMap::new();
    let mut ok = true;
    for f in &v.files {
        let header = match files.open(&f.path, f.size).await {
            Ok(src) => safetensors::read_header(&src)
                .await
                .map_err(|e| error_chain(&e)),
            Err(e) => Err(error_chain(&e)),
        };
        match header {
            Ok(h) => {
                let s = h.summary();
                params += s.parameter_count;
                data += s.data_bytes;
                for (d, st) in s.dtypes {
                    *dtypes.entry(d).or_default() += st.parameters;
                }
            }
            Err(e) => {
                ok = false;
                v.warnings.push(Warning {
                    kind: WarningKind::HeaderUnreadable,
                    message: format!("Cannot read the safetensors header of `{}`: {e}", f.path),
                });
            }
        }
    }
    if dtypes.is_empty() {
        return;
    }
    let shape = v.shape.get_or_insert_with(ModelShape::default);
    if ok && v.complete {
        shape.parameter_count = Some(params);
        shape.tensor_data_bytes = Some(data);
    }
    if v.format == VariantFormat::Safetensors && v.quant.is_none() {
        // The dtype comes from the header, never from the name.
        let dtype = dtypes
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(d, _)| d.clone())
            .expect("non-empty");
        v.bits_per_weight = safetensors::dtype_bits(&dtype).map(|b| b as f64);
        let (dir, base_stem) =
            v.id.trim_start_matches("safetensors:")
                .rsplit_once('/')
                .map_or(("", v.id.trim_start_matches("safetensors:")), |(d, s)| {
                    (d, s)
                });
        v.name = if dir.is_empty() && base_stem == "model" {
            dtype.clone()
        } else {
            format!("{dtype} ({})", v.id.trim_start_matches("safetensors:"))
        };
        v.quant = Some(dtype);
    }
}
