//! Grouping recognised files into variants: weight files into sets (split sets checked for
//! missing shards, an index attached to its set), then each set into a [`Variant`] with its
//! companions (from its folder, then the repo root), the projectors and extras offered beside
//! it, and its exact sizes. Also the one order variants are listed in.

use std::collections::{BTreeMap, BTreeSet};

use super::{SplitStatus, Variant, VariantFile, VariantFormat, Warning, WarningKind, split_path};
use crate::formats::ggml::{quant_bits_per_weight, quant_rank};

/// A weight file as its name describes it: shard `shard` (1-based; 0 for an ONNX graph) of the
/// set `stem`, split into `total` shards when the name says so.
pub(super) struct WeightFile {
    pub format: VariantFormat,
    pub stem: String,
    pub shard: u32,
    pub total: Option<u32>,
    /// The quant label in the name; the set takes the label of its first file.
    pub label: Option<String>,
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

/// The files of one listing, gathered as they are recognised, then turned into variants by
/// [`Grouping::into_variants`].
#[derive(Default)]
pub(super) struct Grouping {
    /// Keyed by format, folder and `stem#total` (a split set and a single file of the same stem
    /// are different sets).
    groups: BTreeMap<(VariantFormat, String, String), Group>,
    projectors: Vec<VariantFile>,
    /// Shard indexes, attached to their sets once every set is known.
    indexes: Vec<(VariantFormat, String, String, VariantFile)>,
    companions_by_dir: BTreeMap<String, Vec<VariantFile>>,
    extras: Vec<VariantFile>,
}

impl Grouping {
    /// A companion file in `dir`.
    pub(super) fn add_companion(&mut self, dir: &str, file: VariantFile) {
        self.companions_by_dir
            .entry(dir.to_string())
            .or_default()
            .push(file);
    }

    /// A README, LICENSE or NOTICE, offered with every variant.
    pub(super) fn add_extra(&mut self, file: VariantFile) {
        self.extras.push(file);
    }

    /// A multimodal projector, offered with every GGUF variant.
    pub(super) fn add_projector(&mut self, file: VariantFile) {
        self.projectors.push(file);
    }

    /// A weight file in `dir`, added to its set.
    pub(super) fn add_weights(&mut self, dir: &str, weights: WeightFile, file: VariantFile) {
        let WeightFile {
            format,
            stem,
            shard,
            total,
            label,
        } = weights;
        let key = (
            format,
            dir.to_string(),
            format!("{stem}#{}", total.unwrap_or(0)),
        );
        let g = self.groups.entry(key).or_insert_with(|| Group {
            format,
            dir: dir.to_string(),
            stem,
            files: Vec::new(),
            split_total: total,
            index: None,
            label,
        });
        g.files.push((shard, file));
    }

    /// The shard index of the set `stem` in `dir`.
    pub(super) fn add_index(
        &mut self,
        format: VariantFormat,
        dir: &str,
        stem: String,
        file: VariantFile,
    ) {
        self.indexes.push((format, dir.to_string(), stem, file));
    }

    /// ONNX external data of the graph of `precision` in `dir`; ignored when there is no such
    /// graph.
    pub(super) fn add_onnx_data(&mut self, dir: &str, precision: &str, file: VariantFile) {
        let key = (
            VariantFormat::Onnx,
            dir.to_string(),
            format!("{precision}#0"),
        );
        if let Some(g) = self.groups.get_mut(&key) {
            g.files.push((1, file));
        }
    }

    /// The variants, in [`sort`] order.
    pub(super) fn into_variants(self) -> Vec<Variant> {
        let Grouping {
            mut groups,
            projectors,
            indexes,
            companions_by_dir,
            extras,
        } = self;
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
        sort(&mut variants);
        variants
    }
}

/// Orders variants by format, then quality (best first), then id.
pub(super) fn sort(variants: &mut [Variant]) {
    variants.sort_by(|a, b| (a.format, rank_key(a), &a.id).cmp(&(b.format, rank_key(b), &b.id)));
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
