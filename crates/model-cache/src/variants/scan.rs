//! Recognising the files of a listing by their names alone: weights (and which shard of which
//! set), shard indexes, companions, projectors, extras, ONNX external data, and the quant label
//! a GGUF file name carries. [`scan`] feeds what it recognises to the grouping.
//!
//! Quant names are read from file names with the semantics of huggingface.js `GGUF_QUANT_RE`:
//! the upper-cased path is scanned left to right for known quant names (an optional `UD-` prefix,
//! an optional `_[A-Z]+` size suffix) and the last match wins. Unlike huggingface.js, the bare
//! k-quant names (`Q4_K`) are also known, so bartowski's `Q4_K_L` keeps its `_L` instead of not
//! matching at all.

use super::group::{Grouping, WeightFile};
use super::{ListedFile, Variant, VariantFile, VariantFormat, Warning, WarningKind, split_path};
use crate::formats::ggml::FileType;

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

/// The precision of an ONNX graph from its file stem (`model_q4f16` is `q4f16`); `fp32` when
/// the stem has no known suffix.
fn onnx_precision(stem: &str) -> &'static str {
    for &s in ONNX_SUFFIXES {
        if let Some(base) = stem.strip_suffix(s)
            && base.ends_with('_')
        {
            return s;
        }
    }
    "fp32"
}

/// What a file of the listing is, judged by its name.
enum Recognised {
    /// Config, tokenizer, chat template...: goes with the variants of its folder.
    Companion,
    /// README, LICENSE or NOTICE at the repo root.
    Extra,
    /// A GGUF multimodal projector, offered beside the GGUF variants.
    Projector,
    /// A weight file of a set.
    Weights(WeightFile),
    /// The shard index of the set `stem` in the same folder.
    Index { format: VariantFormat, stem: String },
    /// Anything else (images, code, ONNX external data, which joins its graph later).
    Other,
}

/// Recognises the file `base` in the folder `dir` (`""` for the repo root).
fn recognise(dir: &str, base: &str) -> Recognised {
    let lower = base.to_ascii_lowercase();
    if COMPANION_NAMES.contains(&base) {
        return Recognised::Companion;
    }
    if dir.is_empty() && is_extra(base) {
        return Recognised::Extra;
    }
    let weights = |format, stem: &str, shard, total, label| {
        Recognised::Weights(WeightFile {
            format,
            stem: stem.to_string(),
            shard,
            total,
            label,
        })
    };
    if lower.ends_with(".gguf") {
        if lower.starts_with("mmproj") || lower.contains("mmproj") || lower.contains("projector") {
            return Recognised::Projector;
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
        weights(
            VariantFormat::Gguf,
            &stem,
            n,
            total,
            parse_quant_label(&full),
        )
    } else if let Some(stem) = base.strip_suffix(".safetensors.index.json") {
        Recognised::Index {
            format: VariantFormat::Safetensors,
            stem: stem.to_string(),
        }
    } else if let Some(stem) = base.strip_suffix(".bin.index.json") {
        Recognised::Index {
            format: VariantFormat::Pytorch,
            stem: stem.to_string(),
        }
    } else if lower.ends_with(".safetensors") {
        match shard_parts(base, ".safetensors") {
            Some((p, n, t)) => weights(VariantFormat::Safetensors, p, n, Some(t), None),
            None => weights(
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
            Some((p, n, t)) => weights(VariantFormat::Pytorch, p, n, Some(t), None),
            None => weights(
                VariantFormat::Pytorch,
                base.trim_end_matches(".bin"),
                1,
                None,
                None,
            ),
        }
    } else if let Some(ext) = PICKLE_ONLY_EXTENSIONS
        .iter()
        .find(|ext| lower.ends_with(*ext))
        && !is_training_state(&lower)
    {
        // A checkpoint saved with `torch.save` (`model.pt`, `consolidated.00.pth`) or `pickle`.
        let stem = &base[..base.len() - ext.len()];
        weights(VariantFormat::Pytorch, stem, 1, None, None)
    } else if lower.ends_with(".onnx") {
        // One set per precision: the graph's stem is the precision.
        let precision = onnx_precision(&base[..base.len() - 5]);
        weights(
            VariantFormat::Onnx,
            precision,
            0,
            None,
            Some(precision.to_string()),
        )
    } else {
        Recognised::Other
    }
}

/// Extensions of weights saved as Python pickles besides `.bin` (which is recognised by its
/// `pytorch_model`/`model` name, since other tools use `.bin` for raw bytes).
const PICKLE_ONLY_EXTENSIONS: &[&str] = &[".pt", ".pth", ".ckpt", ".pkl"];

/// Whether a lowercase file name is a training run's state saved beside the weights (optimizer,
/// scheduler, random state, arguments), not weights to run.
fn is_training_state(lower: &str) -> bool {
    [
        "optimizer",
        "scheduler",
        "rng_state",
        "training_args",
        "trainer_state",
    ]
    .iter()
    .any(|prefix| lower.starts_with(prefix))
}

/// Whether a weight file is a Python pickle, which can run code when it is loaded.
pub(crate) fn is_pickle(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".bin")
        || PICKLE_ONLY_EXTENSIONS
            .iter()
            .any(|ext| lower.ends_with(ext))
}

/// Marks each variant whose weights are pickles as unsafe to load, naming the repo's first
/// (best) safetensors variant as the alternative when it has one.
fn mark_pickles(variants: &mut [Variant]) {
    let alternative = variants
        .iter()
        .find(|v| v.format == VariantFormat::Safetensors && v.complete)
        .map(|v| v.name.clone());
    for variant in variants.iter_mut() {
        if !variant.files.iter().any(|f| is_pickle(&f.path)) {
            continue;
        }
        let mut message = "The weights are Python pickles: loading them can run any code they \
                           carry; load them only from a publisher you trust"
            .to_string();
        if let Some(name) = &alternative {
            message.push_str(&format!(
                ", or choose the safetensors variant `{name}` of this repo, which carries no code"
            ));
        }
        variant.warnings.push(Warning {
            kind: WarningKind::UnsafePickle,
            message,
        });
    }
}

/// The precision of the graph an ONNX external data file (`model.onnx_data`, `model.onnx.data`,
/// `model_fp16.onnx_data_1`) belongs to, when `base` is one.
fn onnx_external_data(base: &str) -> Option<&'static str> {
    let pos = base
        .find(".onnx_data")
        .or_else(|| base.find(".onnx.data"))?;
    Some(onnx_precision(&base[..pos]))
}

/// Groups a repo listing into variants. Pure: no I/O.
pub fn scan(files: &[ListedFile]) -> Vec<Variant> {
    let mut grouping = Grouping::default();
    for f in files {
        let (dir, base) = split_path(&f.path);
        let file = VariantFile {
            path: f.path.clone(),
            size: f.size,
        };
        match recognise(dir, base) {
            Recognised::Companion => grouping.add_companion(dir, file),
            Recognised::Extra => grouping.add_extra(file),
            Recognised::Projector => grouping.add_projector(file),
            Recognised::Weights(weights) => grouping.add_weights(dir, weights, file),
            Recognised::Index { format, stem } => grouping.add_index(format, dir, stem, file),
            Recognised::Other => {}
        }
    }
    // ONNX external data joins the group of its graph, once every graph is known.
    for f in files {
        let (dir, base) = split_path(&f.path);
        if let Some(precision) = onnx_external_data(base) {
            grouping.add_onnx_data(
                dir,
                precision,
                VariantFile {
                    path: f.path.clone(),
                    size: f.size,
                },
            );
        }
    }
    let mut variants = grouping.into_variants();
    mark_pickles(&mut variants);
    variants
}
