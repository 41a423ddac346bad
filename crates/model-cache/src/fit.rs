//! Fit hints: will a variant run on this machine, and which one to take.
//!
//! The estimate is deliberately simple and documented, so a user can check it by hand:
//!
//! ```text
//! needed = weights + kv_cache + overhead
//! weights  = exact tensor bytes from the headers when inspected, else the weight files' size
//! kv_cache = layers × kv_heads × (key_len + value_len) × 2 bytes (f16) × context
//!            context = FitOptions::context (default 4096), capped at the model's context length
//!            (without header data: the weights/10 per 4096 tokens heuristic Jan uses)
//! overhead = FitOptions::overhead_bytes (512 MiB: runtime, compute buffers, scratch)
//!            + FitOptions::overhead_fraction (5 %) of the weights
//! ```
//!
//! Tiers, against the memory a [`Machine`] reports:
//! - `Fits`: `needed` fits in available RAM, or in 90 % of the VRAM of one GPU.
//! - `Tight`: it fits in total RAM plus VRAM minus a 1 GiB reserve for the system:
//!   it will run after closing other programs, or split between GPU and CPU.
//! - `TooBig`: otherwise.
//! - `Unknown`: the machine's memory could not be read.
//!
//! [`recommend`] takes the complete variant that fits and is closest to [`PREFERRED_QUANT`]
//! (`Q4_K_M`) in [`crate::formats::ggml::QUANT_QUALITY_ORDER`] (non-GGUF variants are placed in
//! that order by their bits per weight): a mid quant runs several times faster than `F16` and
//! loses little quality, so it is the default a new user gets. Above it (better quality, larger)
//! comes before below it; a `Tight` variant is offered only when nothing `Fits`.

use serde::{Deserialize, Serialize};

use crate::formats::ggml::{QUANT_QUALITY_ORDER, quant_rank};
use crate::variants::{Variant, VariantFormat, quant_family};

const GIB: u64 = 1 << 30;
/// Kept free for the operating system when judging `Tight`.
pub const SYSTEM_RESERVE_BYTES: u64 = GIB;
/// Share of one GPU's memory a model may use and still `Fit`.
pub const VRAM_USABLE_FRACTION: f64 = 0.9;

/// What a machine has, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineMemory {
    pub total_ram: u64,
    pub available_ram: u64,
    /// VRAM of the largest GPU, when it can be read.
    pub vram_total: Option<u64>,
}

/// The machine's memory, behind a trait so tests can pass a fake.
pub trait Machine {
    fn memory(&self) -> MachineMemory;
}

impl Machine for MachineMemory {
    fn memory(&self) -> MachineMemory {
        *self
    }
}

/// This machine: RAM from `sysinfo`, VRAM from the amdgpu sysfs files on Linux (unknown
/// elsewhere: NVIDIA exposes no sysfs file, and we do not load vendor libraries).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemMachine;

impl Machine for SystemMachine {
    fn memory(&self) -> MachineMemory {
        let vram_total = read_vram(std::path::Path::new("/sys/class/drm"));
        match sysinfo::System::new() {
            Ok(mut sys) => {
                sys.refresh_memory();
                MachineMemory {
                    total_ram: sys.total_memory(),
                    available_ram: sys.available_memory(),
                    vram_total,
                }
            }
            Err(e) => {
                // Zero RAM makes every estimate `Unknown` rather than a wrong `TooBig`.
                tracing::warn!(error = %e, "Cannot read this machine's memory");
                MachineMemory {
                    total_ram: 0,
                    available_ram: 0,
                    vram_total,
                }
            }
        }
    }
}

/// Largest `card*/device/mem_info_vram_total` under `drm` (a sysfs folder).
pub fn read_vram(drm: &std::path::Path) -> Option<u64> {
    let entries = std::fs::read_dir(drm).ok()?;
    entries
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("card") && !n.contains('-')
        })
        .filter_map(|e| {
            let s = std::fs::read_to_string(e.path().join("device/mem_info_vram_total")).ok()?;
            s.trim().parse::<u64>().ok()
        })
        .filter(|v| *v > 0)
        .max()
}

/// Knobs of the estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// Context length to budget the KV cache for (capped at the model's own).
    pub context: u64,
    pub overhead_bytes: u64,
    pub overhead_fraction: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            context: 4096,
            overhead_bytes: 512 << 20,
            overhead_fraction: 0.05,
        }
    }
}

/// How well a variant fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitTier {
    Fits,
    Tight,
    TooBig,
    /// The machine's memory could not be read.
    Unknown,
}

/// Where the KV-cache figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvSource {
    /// Layers, KV heads and head sizes from the GGUF header or `config.json`.
    Header,
    /// No shape known: a tenth of the weights per 4096 tokens.
    Heuristic,
}

/// A fit estimate with every number behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitEstimate {
    pub tier: FitTier,
    pub needed_bytes: u64,
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub kv_source: KvSource,
    pub context: u64,
    pub overhead_bytes: u64,
    /// Whether the whole model fits in one GPU's usable VRAM.
    pub fits_in_vram: bool,
    pub machine: MachineMemory,
}

/// Estimates the memory a variant needs and compares it with the machine.
pub fn estimate(variant: &Variant, machine: &MachineMemory, opts: &FitOptions) -> FitEstimate {
    let shape = variant.shape.as_ref();
    let weights = shape
        .and_then(|s| s.tensor_data_bytes)
        .unwrap_or(variant.weights_size);
    estimate_bytes(
        weights,
        shape.and_then(|s| s.context_length),
        shape.and_then(|s| s.kv_cache_bytes_per_token),
        machine,
        opts,
    )
}

/// The same estimate from the weights' size alone (and the model's context length and KV bytes
/// per token when known): what a search result's badge uses, from the listing's figures.
pub fn estimate_bytes(
    weights: u64,
    model_context: Option<u64>,
    kv_bytes_per_token: Option<u64>,
    machine: &MachineMemory,
    opts: &FitOptions,
) -> FitEstimate {
    let model_ctx = model_context.filter(|c| *c > 0);
    let context = model_ctx.map_or(opts.context, |c| c.min(opts.context));
    let (kv, kv_source) = match kv_bytes_per_token {
        Some(per_token) => (per_token.saturating_mul(context), KvSource::Header),
        None => (
            ((weights as f64) * 0.1 * context as f64 / 4096.0) as u64,
            KvSource::Heuristic,
        ),
    };
    let overhead = opts.overhead_bytes + (weights as f64 * opts.overhead_fraction) as u64;
    let needed = weights.saturating_add(kv).saturating_add(overhead);
    let fits_in_vram = machine
        .vram_total
        .is_some_and(|v| (needed as f64) <= v as f64 * VRAM_USABLE_FRACTION);
    let all = machine
        .total_ram
        .saturating_add(machine.vram_total.unwrap_or(0))
        .saturating_sub(SYSTEM_RESERVE_BYTES);
    let tier = if machine.total_ram == 0 && machine.vram_total.is_none() {
        FitTier::Unknown
    } else if fits_in_vram || needed <= machine.available_ram {
        FitTier::Fits
    } else if needed <= all {
        FitTier::Tight
    } else {
        FitTier::TooBig
    };
    FitEstimate {
        tier,
        needed_bytes: needed,
        weights_bytes: weights,
        kv_cache_bytes: kv,
        kv_source,
        context,
        overhead_bytes: overhead,
        fits_in_vram,
        machine: *machine,
    }
}

/// Position of a variant in the quality order (0 = best); `None` when its quant is unknown.
///
/// GGUF quants and safetensors dtypes are looked up directly; ONNX precisions, GPTQ/AWQ/EXL2/MLX
/// bit widths and other dtypes are placed at the GGUF quant with the same bits (8 → `Q8_0`,
/// 6 → `Q6_K`, 5 → `Q5_K_M`, 4 → `Q4_K_M`, 3 → `Q3_K_M`, 2 → `Q2_K`).
pub fn quality_rank(v: &Variant) -> Option<usize> {
    let by_bits = |bits: f64| -> Option<usize> {
        let name = if bits >= 32.0 {
            "F32"
        } else if bits >= 16.0 {
            "F16"
        } else if bits >= 8.0 {
            "Q8_0"
        } else if bits >= 6.0 {
            "Q6_K"
        } else if bits >= 5.0 {
            "Q5_K_M"
        } else if bits >= 4.0 {
            "Q4_K_M"
        } else if bits >= 3.0 {
            "Q3_K_M"
        } else if bits >= 2.0 {
            "Q2_K"
        } else {
            "IQ1_S"
        };
        quant_rank(name)
    };
    match v.format {
        VariantFormat::Gguf | VariantFormat::Safetensors => {
            // An uploader's finer label of the same family (`UD-Q4_K_XL` over a `Q4_K_M`
            // header) ranks by the label; a label the header contradicts does not count.
            let label = v
                .name_quant
                .as_deref()
                .filter(|n| match v.quant.as_deref() {
                    Some(q) => quant_family(n) == quant_family(q),
                    None => true,
                });
            label
                .and_then(quant_rank)
                .or_else(|| v.quant.as_deref().and_then(quant_rank))
                .or_else(|| v.bits_per_weight.and_then(by_bits))
        }
        VariantFormat::Onnx => {
            let bits = match v.quant.as_deref()? {
                "fp32" => 32.0,
                "fp16" => 16.0,
                "int8" | "uint8" | "q8" | "quantized" => 8.0,
                _ => 4.0,
            };
            by_bits(bits)
        }
        _ => v.bits_per_weight.and_then(by_bits),
    }
}

/// The recommended variant and its estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub variant_id: String,
    pub estimate: FitEstimate,
}

/// The quant a recommendation aims for: the mid quant that weighs speed against quality.
pub const PREFERRED_QUANT: &str = "Q4_K_M";

/// How far a quality rank is from [`PREFERRED_QUANT`]: the preferred quant first, then the
/// better (larger) quants nearest to it, then the smaller ones nearest to it, then unknown ones.
fn preference(rank: Option<usize>) -> (u8, usize) {
    let target = quant_rank(PREFERRED_QUANT).unwrap_or(0);
    match rank {
        Some(r) if r <= target => (0, target - r),
        Some(r) => (1, r - target),
        None => (2, QUANT_QUALITY_ORDER.len()),
    }
}

/// The complete variant that fits and is nearest to [`PREFERRED_QUANT`] (a `Tight` one only
/// when none fits); ties go to the smaller download. `None` when nothing fits at all.
pub fn recommend(
    variants: &[Variant],
    machine: &dyn Machine,
    opts: &FitOptions,
) -> Option<Recommendation> {
    let mem = machine.memory();
    variants
        .iter()
        .filter(|v| v.complete && !v.files.is_empty())
        .map(|v| (v, estimate(v, &mem, opts)))
        .filter(|(_, e)| matches!(e.tier, FitTier::Fits | FitTier::Tight))
        .min_by_key(|(v, e)| (e.tier, preference(quality_rank(v)), v.total_size))
        .map(|(v, e)| Recommendation {
            variant_id: v.id.clone(),
            estimate: e,
        })
}
