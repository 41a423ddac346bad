//! The llama family (Llama, Mistral, Qwen2): `config.json` to GGUF metadata, Hugging Face
//! tensor names to llama.cpp's, and which tensors are stored at which precision — as llama.cpp's
//! `convert_hf_to_gguf.py` does for `LlamaModel` and `Qwen2Model`.

use serde_json::Value as Json;

use super::checkpoint::Checkpoint;
use super::gguf::{GgmlType, TensorInfo, Value};
use super::{ConvertError, GgufType};

/// llama.cpp architectures the native converter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `LlamaForCausalLM` and `MistralForCausalLM` (Q and K rows permuted for llama.cpp's rope).
    Llama,
    /// `Qwen2ForCausalLM` (attention biases; no permutation).
    Qwen2,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }

    /// The architecture of a `config.json`'s `architectures[0]`, when supported natively.
    pub fn from_hf(architecture: &str) -> Option<Arch> {
        match architecture {
            "LlamaForCausalLM" | "MistralForCausalLM" => Some(Arch::Llama),
            "Qwen2ForCausalLM" => Some(Arch::Qwen2),
            _ => None,
        }
    }
}

/// The Hugging Face architectures the native converter supports.
pub const SUPPORTED: &[&str] = &["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];

/// The first architecture `config.json` names.
pub fn hf_architecture(config: &Json) -> Option<String> {
    config
        .get("architectures")?
        .as_array()?
        .first()?
        .as_str()
        .map(str::to_string)
}

/// Where an output tensor's data comes from.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// A tensor of the checkpoint; with `Some(heads)`, its rows are permuted for `heads` heads.
    Tensor { index: usize, permute: Option<u64> },
    /// Computed values (Llama 3's rope frequency factors).
    Values(Vec<f32>),
}

/// One tensor of the output.
#[derive(Debug, Clone)]
pub struct PlannedTensor {
    pub info: TensorInfo,
    pub source: DataSource,
}

/// The whole output, before any tensor byte is read.
#[derive(Debug, Clone)]
pub struct Plan {
    pub arch: Arch,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<PlannedTensor>,
}

struct Hparams<'a> {
    config: &'a Json,
}

impl Hparams<'_> {
    fn u64(&self, key: &str) -> Option<u64> {
        self.config.get(key).and_then(Json::as_u64)
    }

    fn f64(&self, key: &str) -> Option<f64> {
        self.config.get(key).and_then(Json::as_f64)
    }

    fn required(&self, key: &'static str) -> Result<u64, ConvertError> {
        self.u64(key).ok_or(ConvertError::MissingHparam { key })
    }

    /// Rope settings: `rope_parameters` (transformers 5) or `rope_scaling` and `rope_theta`.
    fn rope(&self) -> (Option<f64>, Option<&Json>) {
        let params = self.config.get("rope_parameters").filter(|p| p.is_object());
        let theta = self.f64("rope_theta").or_else(|| {
            params
                .and_then(|p| p.get("rope_theta"))
                .and_then(Json::as_f64)
        });
        let scaling = self
            .config
            .get("rope_scaling")
            .filter(|s| s.is_object())
            .or(params);
        (theta, scaling)
    }
}

fn u32_value(v: u64) -> Value {
    Value::U32(u32::try_from(v).unwrap_or(u32::MAX))
}

/// The llama.cpp name of a Hugging Face tensor; `Ok(None)` for tensors left out.
fn map_name(name: &str) -> Result<Option<String>, ConvertError> {
    let unknown = || ConvertError::UnknownTensor {
        name: name.to_string(),
    };
    let name = name.strip_prefix("text_model.").unwrap_or(name);
    if name.ends_with(".rotary_emb.inv_freq") {
        return Ok(None);
    }
    let fixed = match name {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(fixed) = fixed {
        return Ok(Some(fixed.to_string()));
    }
    let rest = name.strip_prefix("model.layers.").ok_or_else(unknown)?;
    let (block, rest) = rest.split_once('.').ok_or_else(unknown)?;
    let block: u64 = block.parse().map_err(|_| unknown())?;
    let (module, suffix) = rest.rsplit_once('.').ok_or_else(unknown)?;
    let mapped = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return Err(unknown()),
    };
    if !matches!(suffix, "weight" | "bias") {
        return Err(unknown());
    }
    Ok(Some(format!("blk.{block}.{mapped}.{suffix}")))
}

/// Llama 3's rope frequency factors (`generate_extra_tensors` of `LlamaModel`).
fn llama3_rope_factors(scaling: &Json, theta: f64, dim: u64) -> Vec<f32> {
    let get = |k: &str, d: f64| scaling.get(k).and_then(Json::as_f64).unwrap_or(d);
    let factor = get("factor", 8.0);
    let low = get("low_freq_factor", 1.0);
    let high = get("high_freq_factor", 4.0);
    let old_context = get("original_max_position_embeddings", 8192.0);
    let low_wavelen = old_context / low;
    let high_wavelen = old_context / high;
    (0..dim)
        .step_by(2)
        .map(|i| {
            let freq = 1.0 / (theta as f32).powf(i as f32 / dim as f32);
            let wavelen = 2.0 * std::f64::consts::PI / freq as f64;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor as f32
            } else {
                let smooth = (old_context / wavelen - low) / (high - low);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect()
}

/// Plans the output: metadata (without the tokenizer's) and tensors in checkpoint order.
pub fn plan(checkpoint: &Checkpoint, kind: GgufType, name: &str) -> Result<Plan, ConvertError> {
    let config = &checkpoint.config;
    let hf_arch = hf_architecture(config).unwrap_or_default();
    let arch = Arch::from_hf(&hf_arch).ok_or_else(|| ConvertError::UnsupportedArchitecture {
        architecture: if hf_arch.is_empty() {
            "(none named in config.json)".to_string()
        } else {
            hf_arch.clone()
        },
    })?;
    let hp = Hparams { config };
    let a = arch.name();
    let n_layers = hp.required("num_hidden_layers")?;
    let n_embd = hp.required("hidden_size")?;
    let n_head = hp.required("num_attention_heads")?;
    let n_head_kv = hp.u64("num_key_value_heads").unwrap_or(n_head);
    let head_dim = hp.u64("head_dim");
    let mut metadata = vec![
        ("general.architecture".to_string(), Value::String(a.into())),
        ("general.type".to_string(), Value::String("model".into())),
        ("general.name".to_string(), Value::String(name.to_string())),
    ];
    let mut kv = |key: &str, value: Value| metadata.push((format!("{a}.{key}"), value));
    kv("block_count", u32_value(n_layers));
    if let Some(ctx) = hp.u64("max_position_embeddings") {
        kv("context_length", u32_value(ctx));
    }
    kv("embedding_length", u32_value(n_embd));
    if let Some(ff) = hp.u64("intermediate_size") {
        kv("feed_forward_length", u32_value(ff));
    }
    kv("attention.head_count", u32_value(n_head));
    kv("attention.head_count_kv", u32_value(n_head_kv));
    let (theta, scaling) = hp.rope();
    if let Some(theta) = theta {
        kv("rope.freq_base", Value::F32(theta as f32));
    }
    if let Some(eps) = hp.f64("rms_norm_eps") {
        kv("attention.layer_norm_rms_epsilon", Value::F32(eps as f32));
    }
    if let Some(head_dim) = head_dim {
        kv("attention.key_length", u32_value(head_dim));
        kv("attention.value_length", u32_value(head_dim));
    }
    let rope_dim = head_dim.unwrap_or(n_embd / n_head.max(1));
    let mut extra = Vec::new();
    if let Some(scaling) = scaling {
        let rope_type = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(Json::as_str)
            .unwrap_or("default");
        let factor = scaling.get("factor").and_then(Json::as_f64);
        match (rope_type, factor) {
            ("default", _) => {}
            ("linear", Some(factor)) => {
                kv("rope.scaling.type", Value::String("linear".into()));
                kv("rope.scaling.factor", Value::F32(factor as f32));
            }
            ("yarn", Some(factor)) => {
                kv("rope.scaling.type", Value::String("yarn".into()));
                kv("rope.scaling.factor", Value::F32(factor as f32));
                if let Some(orig) = scaling
                    .get("original_max_position_embeddings")
                    .and_then(Json::as_u64)
                {
                    kv("rope.scaling.original_context_length", u32_value(orig));
                }
            }
            ("llama3", _) if arch == Arch::Llama => {
                extra.push(PlannedTensor {
                    info: TensorInfo {
                        name: "rope_freqs.weight".into(),
                        dims: vec![rope_dim / 2],
                        kind: GgmlType::F32,
                    },
                    source: DataSource::Values(llama3_rope_factors(
                        scaling,
                        theta.unwrap_or(10_000.0),
                        rope_dim,
                    )),
                });
            }
            (other, _) => {
                return Err(ConvertError::UnsupportedSetting {
                    what: format!("rope scaling `{other}`"),
                });
            }
        }
    }
    if arch == Arch::Llama {
        if let Some(vocab) = hp.u64("vocab_size") {
            kv("vocab_size", u32_value(vocab));
        }
        kv("rope.dimension_count", u32_value(rope_dim));
    }
    metadata.push(("general.file_type".into(), Value::U32(kind.file_type())));
    metadata.push(("general.quantization_version".into(), Value::U32(2)));

    let mut tensors = extra;
    for (index, tensor) in checkpoint.tensors.iter().enumerate() {
        let Some(new_name) = map_name(&tensor.name)? else {
            continue;
        };
        let permute = if arch == Arch::Llama {
            if tensor.name.ends_with("q_proj.weight") || tensor.name.ends_with("q_proj.bias") {
                Some(n_head)
            } else if tensor.name.ends_with("k_proj.weight") || tensor.name.ends_with("k_proj.bias")
            {
                Some(n_head_kv)
            } else {
                None
            }
        } else {
            None
        };
        if let Some(heads) = permute {
            let rows = tensor.shape.first().copied().unwrap_or(0);
            if heads == 0 || !rows.is_multiple_of(heads * 2) {
                return Err(ConvertError::BadShape {
                    tensor: tensor.name.clone(),
                    reason: format!("{rows} rows do not split into {heads} heads of pairs"),
                });
            }
        }
        let dims: Vec<u64> = tensor.shape.iter().rev().copied().collect();
        let n_dims = dims.len();
        let kind = if n_dims <= 1
            || new_name.ends_with("_norm.weight")
            || !new_name.ends_with(".weight")
        {
            GgmlType::F32
        } else {
            match kind {
                GgufType::F16 => GgmlType::F16,
                GgufType::Q8_0 if dims[0].is_multiple_of(super::numeric::Q8_0_BLOCK as u64) => {
                    GgmlType::Q8_0
                }
                // gguf-py falls back to F16 when rows are not whole blocks.
                GgufType::Q8_0 => GgmlType::F16,
            }
        };
        tensors.push(PlannedTensor {
            info: TensorInfo {
                name: new_name,
                dims,
                kind,
            },
            source: DataSource::Tensor { index, permute },
        });
    }
    if !tensors.iter().any(|t| t.info.name == "token_embd.weight") {
        return Err(ConvertError::UnknownTensor {
            name: "model.embed_tokens.weight (missing)".into(),
        });
    }
    Ok(Plan {
        arch,
        metadata,
        tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugging_face_names_map_to_llama_cpp_names() {
        let cases = [
            ("model.embed_tokens.weight", Some("token_embd.weight")),
            ("model.norm.weight", Some("output_norm.weight")),
            ("lm_head.weight", Some("output.weight")),
            (
                "model.layers.3.input_layernorm.weight",
                Some("blk.3.attn_norm.weight"),
            ),
            (
                "model.layers.0.self_attn.q_proj.bias",
                Some("blk.0.attn_q.bias"),
            ),
            (
                "model.layers.12.self_attn.o_proj.weight",
                Some("blk.12.attn_output.weight"),
            ),
            (
                "model.layers.1.post_attention_layernorm.weight",
                Some("blk.1.ffn_norm.weight"),
            ),
            (
                "model.layers.1.mlp.down_proj.weight",
                Some("blk.1.ffn_down.weight"),
            ),
            ("model.layers.1.self_attn.rotary_emb.inv_freq", None),
        ];
        for (hf, gguf) in cases {
            assert_eq!(map_name(hf).unwrap().as_deref(), gguf, "{hf}");
        }
        assert!(map_name("model.layers.1.mlp.experts.0.w1.weight").is_err());
        assert!(map_name("vision_tower.patch_embed.weight").is_err());
    }
}
