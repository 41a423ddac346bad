//! Tiny but real checkpoints for the conversion tests: random weights in safetensors (BF16, F16
//! or F32), a `config.json`, and a `tokenizer.json` trained here on a small corpus — a
//! byte-level BPE tokenizer (Llama 3 and Qwen2 style) or a SentencePiece-style BPE with byte
//! fallback (Llama 2 and Mistral style).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

pub(crate) const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub(crate) const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const CORPUS: &str = "the quick brown fox jumps over the lazy dog. a model cache keeps models \
    on the machine and converts them for the runner the person uses. llamas and alpacas graze \
    in the high andes; the herd moves slowly over the stones. tokens are pieces of words, and \
    merges join the pieces that come together most often in the text the tokenizer learned from. \
    one two three four five six seven eight nine ten. hello world, hello model, hello cache.";

/// A small xorshift generator: the same weights on every run.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Roughly normal, scale 0.05, with a few larger values.
    pub(crate) fn weight(&mut self) -> f32 {
        let u: f32 = (0..4)
            .map(|_| (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
            .sum();
        (u - 2.0) * 0.08
    }
}

/// GPT-2's byte → printable character table.
pub(crate) fn bytes_to_unicode() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec!['\0'; 256];
    for (b, c) in bs.iter().zip(cs) {
        table[*b as usize] = char::from_u32(c).unwrap();
    }
    table
}

/// Learns `n` merges over `words` (each a list of symbols, with a count).
fn learn_merges(words: &mut [(Vec<String>, usize)], n: usize) -> Vec<(String, String)> {
    let mut merges = Vec::new();
    for _ in 0..n {
        let mut counts: HashMap<(String, String), usize> = HashMap::new();
        for (symbols, count) in words.iter() {
            for pair in symbols.windows(2) {
                *counts
                    .entry((pair[0].clone(), pair[1].clone()))
                    .or_default() += count;
            }
        }
        let Some(best) = counts
            .into_iter()
            .filter(|(_, c)| *c >= 2)
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .map(|(p, _)| p)
        else {
            break;
        };
        for (symbols, _) in words.iter_mut() {
            let mut i = 0;
            while i + 1 < symbols.len() {
                if symbols[i] == best.0 && symbols[i + 1] == best.1 {
                    let joined = format!("{}{}", symbols[i], symbols[i + 1]);
                    symbols.splice(i..i + 2, [joined]);
                }
                i += 1;
            }
        }
        merges.push(best);
    }
    merges
}

fn word_counts(words: impl Iterator<Item = String>) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in words {
        *counts.entry(w).or_default() += 1;
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort();
    v
}

/// A byte-level BPE tokenizer (Llama 3 / Qwen2 style) with `merges` merges and two special
/// tokens after them; `split` is the pre-tokenizer's expression. Returns the JSON and the
/// vocabulary size.
pub(crate) fn byte_level_tokenizer(split: &str, merges: usize) -> (Value, usize) {
    let table = bytes_to_unicode();
    let mut words: Vec<(Vec<String>, usize)> =
        word_counts(CORPUS.split(' ').enumerate().map(|(i, w)| {
            if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            }
        }))
        .into_iter()
        .map(|(w, c)| {
            (
                w.bytes().map(|b| table[b as usize].to_string()).collect(),
                c,
            )
        })
        .collect();
    let learned = learn_merges(&mut words, merges);
    let mut vocab = serde_json::Map::new();
    for c in &table {
        let id = vocab.len();
        vocab.insert(c.to_string(), json!(id));
    }
    for (a, b) in &learned {
        let joined = format!("{a}{b}");
        if !vocab.contains_key(&joined) {
            let id = vocab.len();
            vocab.insert(joined, json!(id));
        }
    }
    let base = vocab.len();
    let specials = ["<|begin_of_text|>", "<|end_of_text|>"];
    let added: Vec<Value> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": base + i, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": true, "vocab": vocab,
                  "merges": learned.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>()}
    });
    (tokenizer, base + specials.len())
}

/// A SentencePiece-style BPE tokenizer with byte fallback (what transformers makes of a Llama 2
/// or Mistral `tokenizer.model`): `<unk>`, `<s>`, `</s>`, 256 byte pieces, characters, merges.
pub(crate) fn sentencepiece_tokenizer(merges: usize) -> (Value, usize) {
    let mut words: Vec<(Vec<String>, usize)> =
        word_counts(CORPUS.split(' ').map(|w| format!("\u{2581}{w}")))
            .into_iter()
            .map(|(w, c)| (w.chars().map(|ch| ch.to_string()).collect(), c))
            .collect();
    let mut vocab = serde_json::Map::new();
    for s in ["<unk>", "<s>", "</s>"] {
        let id = vocab.len();
        vocab.insert(s.to_string(), json!(id));
    }
    for b in 0..256 {
        let id = vocab.len();
        vocab.insert(format!("<0x{b:02X}>"), json!(id));
    }
    let mut chars: Vec<String> = words.iter().flat_map(|(w, _)| w.iter().cloned()).collect();
    chars.sort();
    chars.dedup();
    let learned = learn_merges(&mut words, merges);
    for (a, b) in &learned {
        let joined = format!("{a}{b}");
        if !vocab.contains_key(&joined) {
            let id = vocab.len();
            vocab.insert(joined, json!(id));
        }
    }
    for c in chars {
        if !vocab.contains_key(&c) {
            let id = vocab.len();
            vocab.insert(c, json!(id));
        }
    }
    let size = vocab.len();
    let added: Vec<Value> = ["<unk>", "<s>", "</s>"]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u{2581}"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}
        ]},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                  "ignore_merges": false, "vocab": vocab,
                  "merges": learned.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>()}
    });
    (tokenizer, size)
}

/// Element type of the generated weights.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
        }
    }

    fn encode(self, v: f32, out: &mut Vec<u8>) {
        match self {
            Dtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
            Dtype::F16 => {
                out.extend_from_slice(&model_cache::convert::numeric::f32_to_f16(v).to_le_bytes())
            }
            // Truncation is enough for test data (any bits are valid bf16 values).
            Dtype::BF16 => out.extend_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes()),
        }
    }
}

/// The shape of a generated model.
#[derive(Clone, Debug)]
pub(crate) struct ModelSpec {
    pub(crate) architecture: &'static str,
    pub(crate) hidden: u64,
    pub(crate) intermediate: u64,
    pub(crate) layers: u64,
    pub(crate) heads: u64,
    pub(crate) kv_heads: u64,
    pub(crate) vocab: u64,
    pub(crate) dtype: Dtype,
    pub(crate) attention_bias: bool,
    pub(crate) tied: bool,
}

impl ModelSpec {
    /// The checkpoint's tensors, in a fixed order.
    pub(crate) fn tensors(&self) -> Vec<(String, Vec<u64>)> {
        let head_dim = self.hidden / self.heads;
        let kv = self.kv_heads * head_dim;
        let mut t = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![self.vocab, self.hidden],
        )];
        for i in 0..self.layers {
            let p = format!("model.layers.{i}");
            t.push((format!("{p}.input_layernorm.weight"), vec![self.hidden]));
            t.push((
                format!("{p}.self_attn.q_proj.weight"),
                vec![self.hidden, self.hidden],
            ));
            t.push((
                format!("{p}.self_attn.k_proj.weight"),
                vec![kv, self.hidden],
            ));
            t.push((
                format!("{p}.self_attn.v_proj.weight"),
                vec![kv, self.hidden],
            ));
            if self.attention_bias {
                t.push((format!("{p}.self_attn.q_proj.bias"), vec![self.hidden]));
                t.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
                t.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
            }
            t.push((
                format!("{p}.self_attn.o_proj.weight"),
                vec![self.hidden, self.hidden],
            ));
            t.push((
                format!("{p}.post_attention_layernorm.weight"),
                vec![self.hidden],
            ));
            t.push((
                format!("{p}.mlp.gate_proj.weight"),
                vec![self.intermediate, self.hidden],
            ));
            t.push((
                format!("{p}.mlp.up_proj.weight"),
                vec![self.intermediate, self.hidden],
            ));
            t.push((
                format!("{p}.mlp.down_proj.weight"),
                vec![self.hidden, self.intermediate],
            ));
        }
        t.push(("model.norm.weight".to_string(), vec![self.hidden]));
        if !self.tied {
            t.push(("lm_head.weight".to_string(), vec![self.vocab, self.hidden]));
        }
        t
    }

    pub(crate) fn config(&self) -> Value {
        json!({
            "architectures": [self.architecture],
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "max_position_embeddings": 512,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "vocab_size": self.vocab,
            "tie_word_embeddings": self.tied,
            "torch_dtype": "bfloat16",
        })
    }
}

/// Writes `model.safetensors` for `spec` into `dir`, streaming (no whole copy in memory);
/// norms are near 1 as in trained models.
pub(crate) fn write_safetensors(dir: &Path, spec: &ModelSpec, seed: u64) {
    use std::io::Write;
    let tensors = spec.tensors();
    let size = match spec.dtype {
        Dtype::F32 => 4,
        _ => 2,
    };
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for (name, shape) in &tensors {
        let bytes = shape.iter().product::<u64>() * size;
        header.insert(
            name.clone(),
            json!({"dtype": spec.dtype.name(), "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let file = std::fs::File::create(dir.join("model.safetensors")).unwrap();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    out.write_all(&(text.len() as u64).to_le_bytes()).unwrap();
    out.write_all(&text).unwrap();
    let mut rng = Rng::new(seed);
    let mut buf = Vec::with_capacity(1 << 20);
    for (name, shape) in &tensors {
        let n = shape.iter().product::<u64>();
        let norm = name.ends_with("norm.weight");
        for _ in 0..n {
            let v = rng.weight();
            spec.dtype.encode(if norm { 1.0 + v } else { v }, &mut buf);
            if buf.len() >= 1 << 20 {
                out.write_all(&buf).unwrap();
                buf.clear();
            }
        }
    }
    out.write_all(&buf).unwrap();
    out.flush().unwrap();
}

/// Writes a whole checkpoint (config, weights, tokenizer, tokenizer config) into `dir`.
pub(crate) fn write_checkpoint(dir: &Path, spec: &ModelSpec, tokenizer: &Value, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&spec.config()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_vec(tokenizer).unwrap(),
    )
    .unwrap();
    let (bos, eos) = if tokenizer["model"]["byte_fallback"] == json!(true) {
        ("<s>", "</s>")
    } else {
        ("<|begin_of_text|>", "<|end_of_text|>")
    };
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_vec_pretty(&json!({
            "bos_token": bos,
            "eos_token": {"content": eos, "special": true},
            "add_bos_token": true,
            "add_eos_token": false,
            "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
        }))
        .unwrap(),
    )
    .unwrap();
    write_safetensors(dir, spec, seed);
}

/// Like [`write_safetensors`] but fast for big checkpoints: random BF16 values of magnitude
/// below 2 straight from the generator's bits (four per draw), no per-element arithmetic.
pub(crate) fn write_big_bf16_safetensors(dir: &Path, spec: &ModelSpec, seed: u64) {
    use std::io::Write;
    assert_eq!(spec.dtype, Dtype::BF16);
    let tensors = spec.tensors();
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, shape) in &tensors {
        let bytes = shape.iter().product::<u64>() * 2;
        header.insert(
            name.clone(),
            json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let file = std::fs::File::create(dir.join("model.safetensors")).unwrap();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    out.write_all(&(text.len() as u64).to_le_bytes()).unwrap();
    out.write_all(&text).unwrap();
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = offset;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for chunk in buf[..n].chunks_exact_mut(8) {
            // Sign, an exponent of 2^-8 .. 2^0 and 7 mantissa bits, per 16-bit value.
            let r = rng.next_u64() & 0x83ff_83ff_83ff_83ff | 0x3b80_3b80_3b80_3b80;
            chunk.copy_from_slice(&r.to_le_bytes());
        }
        out.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    out.flush().unwrap();
}

/// Makes `source` (a folder of files) the snapshot of `repo` at a made-up commit in the hub
/// cache at `hub_cache`, as a `huggingface_hub` copy-mode cache would hold it (`refs/main` names
/// the commit; the files are moved into `snapshots/<commit>/`). Returns the commit.
pub(crate) fn place_in_cache(hub_cache: &Path, repo: &str, source: &Path) -> String {
    let commit = "c0ffee0000000000000000000000000000000001".to_string();
    let folder = hub_cache.join(format!("models--{}", repo.replace('/', "--")));
    let snapshot = folder.join("snapshots").join(&commit);
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::create_dir_all(snapshot.parent().unwrap()).unwrap();
    std::fs::rename(source, &snapshot).unwrap();
    std::fs::write(folder.join("refs").join("main"), &commit).unwrap();
    commit
}
