//! The vocabulary, from `tokenizer.json` (and `tokenizer_config.json`, `config.json` for special
//! tokens), as llama.cpp's GGUF metadata wants it.
//!
//! Two tokenizer models are written:
//! - `llama` (SentencePiece): a `tokenizer.json` whose model is `Unigram` (scores as given) or
//!   `BPE` with `byte_fallback` (what transformers makes of a SentencePiece BPE model; the score
//!   of a piece is minus the rank of the merge that makes it, which orders pieces as
//!   SentencePiece's own scores do). Byte pieces `<0xNN>` are `BYTE` tokens.
//! - `gpt2` (byte-level BPE) with its merges and `tokenizer.ggml.pre`, the pre-tokenizer llama.cpp
//!   must apply: recognised from the pre-tokenizer's split expression (`llama-bpe` for Llama 3,
//!   `qwen2`, `gpt-2`). An expression not recognised is written as `default`, with a warning:
//!   llama.cpp then splits text its default way, which may tokenize differently.
//!
//! llama.cpp's `convert_hf_to_gguf.py` instead runs the tokenizer on a test string and compares a
//! hash of the result with known models; reading the expression itself needs no tokenizer
//! library and gives the same answer for the families the native converter supports.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as Json;

use super::ConvertError;
use super::gguf::Value;

/// gguf-py's `TokenType`.
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// Llama 3's split expression, as in its `tokenizer.json`.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split expression (single digits).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The vocabulary as written to the GGUF file.
#[derive(Debug, Clone, Default)]
pub struct Vocab {
    /// `llama` or `gpt2`.
    pub model: &'static str,
    pub pre: String,
    pub tokens: Vec<String>,
    pub scores: Option<Vec<f32>>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
    pub special: Vec<(&'static str, u32)>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub chat_template: Option<String>,
    /// What was guessed or left out, for the person.
    pub warnings: Vec<String>,
}

impl Vocab {
    /// The `tokenizer.*` metadata.
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let mut kv = vec![
            (
                "tokenizer.ggml.model".to_string(),
                Value::String(self.model.into()),
            ),
            (
                "tokenizer.ggml.pre".to_string(),
                Value::String(self.pre.clone()),
            ),
            (
                "tokenizer.ggml.tokens".to_string(),
                Value::Strings(self.tokens.clone()),
            ),
        ];
        if let Some(scores) = &self.scores {
            kv.push(("tokenizer.ggml.scores".into(), Value::F32s(scores.clone())));
        }
        kv.push((
            "tokenizer.ggml.token_type".into(),
            Value::I32s(self.types.clone()),
        ));
        if !self.merges.is_empty() {
            kv.push((
                "tokenizer.ggml.merges".into(),
                Value::Strings(self.merges.clone()),
            ));
        }
        for (kind, id) in &self.special {
            kv.push((format!("tokenizer.ggml.{kind}_token_id"), Value::U32(*id)));
        }
        if let Some(add) = self.add_bos {
            kv.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(add)));
        }
        if let Some(add) = self.add_eos {
            kv.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(add)));
        }
        if let Some(template) = &self.chat_template {
            kv.push((
                "tokenizer.chat_template".into(),
                Value::String(template.clone()),
            ));
        }
        kv
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> ConvertError {
    ConvertError::BadTokenizer {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// An added token of `tokenizer.json`.
struct Added {
    id: u32,
    content: String,
    special: bool,
}

/// gguf-py's `does_token_look_special`.
fn looks_special(token: &str) -> bool {
    matches!(token, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (token.starts_with("<|") && token.ends_with("|>"))
        || (token.starts_with("<\u{ff5c}") && token.ends_with("\u{ff5c}>"))
        || (token.starts_with("<unused") && token.ends_with('>'))
}

fn is_byte_piece(token: &str) -> bool {
    let b = token.as_bytes();
    b.len() == 6
        && token.starts_with("<0x")
        && token.ends_with('>')
        && b[3].is_ascii_hexdigit()
        && b[4].is_ascii_hexdigit()
}

/// Reads the vocabulary of the checkpoint in `dir`; `vocab_size` is `config.json`'s (the
/// embedding's rows), which the token list is padded to.
pub fn read(dir: &Path, config: &Json, vocab_size: Option<u64>) -> Result<Vocab, ConvertError> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Err(ConvertError::MissingFile { path });
    }
    let text = std::fs::read(&path).map_err(|e| ConvertError::io("read", &path, e))?;
    let json: Json = serde_json::from_slice(&text).map_err(|e| bad(&path, e.to_string()))?;
    let model = json.get("model").ok_or_else(|| bad(&path, "no `model`"))?;
    let kind = model.get("type").and_then(Json::as_str).unwrap_or("");
    let added: Vec<Added> = json
        .get("added_tokens")
        .and_then(Json::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|t| {
                    Some(Added {
                        id: u32::try_from(t.get("id")?.as_u64()?).ok()?,
                        content: t.get("content")?.as_str()?.to_string(),
                        special: t.get("special").and_then(Json::as_bool).unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default();

    // id → (text, score, type)
    let mut entries: HashMap<u32, (String, f32, i32)> = HashMap::new();
    let mut merges = Vec::new();
    let mut pre = "default".to_string();
    let mut warnings = Vec::new();
    let tokenizer_model = match kind {
        "Unigram" => {
            let vocab = model
                .get("vocab")
                .and_then(Json::as_array)
                .ok_or_else(|| bad(&path, "a Unigram model without `vocab`"))?;
            let unk = model.get("unk_id").and_then(Json::as_u64);
            for (id, item) in vocab.iter().enumerate() {
                let piece = item.get(0).and_then(Json::as_str).unwrap_or_default();
                let score = item.get(1).and_then(Json::as_f64).unwrap_or(0.0) as f32;
                let kind = if Some(id as u64) == unk {
                    token_type::UNKNOWN
                } else if is_byte_piece(piece) {
                    token_type::BYTE
                } else {
                    token_type::NORMAL
                };
                entries.insert(id as u32, (piece.to_string(), score, kind));
            }
            "llama"
        }
        "BPE" => {
            let vocab = model
                .get("vocab")
                .and_then(Json::as_object)
                .ok_or_else(|| bad(&path, "a BPE model without `vocab`"))?;
            let raw_merges = model
                .get("merges")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            for merge in raw_merges {
                let text = match merge {
                    Json::String(s) => s,
                    Json::Array(pair) if pair.len() == 2 => format!(
                        "{} {}",
                        pair[0].as_str().unwrap_or_default(),
                        pair[1].as_str().unwrap_or_default()
                    ),
                    _ => return Err(bad(&path, "a merge is neither `a b` nor a pair")),
                };
                merges.push(text);
            }
            let byte_fallback = model
                .get("byte_fallback")
                .and_then(Json::as_bool)
                .unwrap_or(false);
            let unk = model.get("unk_token").and_then(Json::as_str);
            if byte_fallback {
                // SentencePiece BPE: a piece's score is minus the rank of the merge making it.
                let mut rank: HashMap<String, usize> = HashMap::new();
                for (r, merge) in merges.iter().enumerate() {
                    if let Some((a, b)) = merge.split_once(' ') {
                        rank.entry(format!("{a}{b}")).or_insert(r);
                    }
                }
                let n = merges.len() as f32;
                for (token, id) in vocab {
                    let id = id
                        .as_u64()
                        .ok_or_else(|| bad(&path, "a token id is not a number"))?;
                    let (score, kind) = if Some(token.as_str()) == unk {
                        (0.0, token_type::UNKNOWN)
                    } else if is_byte_piece(token) {
                        (0.0, token_type::BYTE)
                    } else if let Some(r) = rank.get(token) {
                        (-(*r as f32), token_type::NORMAL)
                    } else {
                        (-(n + id as f32), token_type::NORMAL)
                    };
                    entries.insert(id as u32, (token.clone(), score, kind));
                }
                merges.clear();
                "llama"
            } else {
                for (token, id) in vocab {
                    let id = id
                        .as_u64()
                        .ok_or_else(|| bad(&path, "a token id is not a number"))?;
                    entries.insert(id as u32, (token.clone(), 0.0, token_type::NORMAL));
                }
                pre = match detect_pre(json.get("pre_tokenizer")) {
                    Some(name) => name.to_string(),
                    None => {
                        warnings.push(
                            "The BPE pre-tokenizer is not one the native converter knows; it is \
                             written as `default`, and llama.cpp may split text differently than \
                             the original tokenizer"
                                .to_string(),
                        );
                        "default".to_string()
                    }
                };
                "gpt2"
            }
        }
        other => {
            return Err(ConvertError::UnsupportedTokenizer {
                kind: other.to_string(),
            });
        }
    };

    for token in &added {
        let kind = if entries
            .get(&token.id)
            .is_some_and(|e| e.2 == token_type::UNKNOWN)
        {
            token_type::UNKNOWN
        } else if token.special || looks_special(&token.content) {
            token_type::CONTROL
        } else {
            token_type::USER_DEFINED
        };
        let score = if tokenizer_model == "llama" {
            -1000.0
        } else {
            0.0
        };
        let content = if kind == token_type::USER_DEFINED {
            // gguf-py pre-normalizes user-defined spaces.
            token.content.replace('\u{2581}', " ")
        } else {
            token.content.clone()
        };
        entries.insert(token.id, (content, score, kind));
    }

    let max_id = entries.keys().max().copied().map_or(0, |m| m as u64 + 1);
    let size = vocab_size.unwrap_or(max_id).max(max_id);
    let mut tokens = Vec::with_capacity(size as usize);
    let mut scores = Vec::with_capacity(size as usize);
    let mut types = Vec::with_capacity(size as usize);
    for id in 0..size as u32 {
        match entries.remove(&id) {
            Some((text, score, kind)) => {
                tokens.push(text);
                scores.push(score);
                types.push(kind);
            }
            None => {
                tokens.push(format!("[PAD{id}]"));
                scores.push(-1000.0);
                types.push(token_type::UNUSED);
            }
        }
    }

    let mut vocab = Vocab {
        model: tokenizer_model,
        pre,
        scores: (tokenizer_model == "llama").then_some(scores),
        types,
        merges,
        warnings,
        ..Vocab::default()
    };
    vocab.tokens = tokens;
    special_tokens(dir, config, &mut vocab)?;
    Ok(vocab)
}

/// The pre-tokenizer llama.cpp must use for a byte-level BPE tokenizer, from its split
/// expression; `None` when it is not one of the known ones.
fn detect_pre(pre_tokenizer: Option<&Json>) -> Option<&'static str> {
    let pre = pre_tokenizer?;
    let kind = pre.get("type").and_then(Json::as_str)?;
    let steps: Vec<&Json> = match kind {
        "Sequence" => pre.get("pretokenizers")?.as_array()?.iter().collect(),
        _ => vec![pre],
    };
    let mut split = None;
    let mut byte_level_regex = false;
    for step in steps {
        match step.get("type").and_then(Json::as_str)? {
            "Split" => {
                if split.is_some() {
                    return None;
                }
                split = Some(step.get("pattern")?.get("Regex")?.as_str()?);
            }
            "ByteLevel" => {
                byte_level_regex = step
                    .get("use_regex")
                    .and_then(Json::as_bool)
                    .unwrap_or(true);
            }
            _ => return None,
        }
    }
    match split {
        Some(LLAMA3_SPLIT) if !byte_level_regex => Some("llama-bpe"),
        Some(QWEN2_SPLIT) if !byte_level_regex => Some("qwen2"),
        Some(_) => None,
        None if byte_level_regex => Some("gpt-2"),
        None => None,
    }
}

/// The text of a special token in `tokenizer_config.json` (a string or `{"content": …}`).
fn token_text(value: Option<&Json>) -> Option<String> {
    match value? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn first_id(value: Option<&Json>) -> Option<u32> {
    match value? {
        Json::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Json::Array(a) => first_id(a.first()),
        _ => None,
    }
}

/// BOS, EOS, UNK and PAD ids, whether to add BOS/EOS, and the chat template, as gguf-py's
/// `SpecialVocab` finds them: `tokenizer_config.json` first, `config.json`'s ids after.
fn special_tokens(dir: &Path, config: &Json, vocab: &mut Vocab) -> Result<(), ConvertError> {
    let path = dir.join("tokenizer_config.json");
    let tokenizer_config = if path.is_file() {
        let text = std::fs::read(&path).map_err(|e| ConvertError::io("read", &path, e))?;
        serde_json::from_slice::<Json>(&text).map_err(|e| bad(&path, e.to_string()))?
    } else {
        Json::Null
    };
    let by_text: HashMap<&str, u32> = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    let mut special = Vec::new();
    for (kind, key, config_key) in [
        ("bos", "bos_token", "bos_token_id"),
        ("eos", "eos_token", "eos_token_id"),
        ("unknown", "unk_token", "unk_token_id"),
        ("padding", "pad_token", "pad_token_id"),
    ] {
        let from_text =
            token_text(tokenizer_config.get(key)).and_then(|t| by_text.get(t.as_str()).copied());
        let id = from_text.or_else(|| first_id(config.get(config_key)));
        if let Some(id) = id.filter(|&id| (id as usize) < vocab.tokens.len()) {
            special.push((kind, id));
        }
    }
    vocab.special = special;
    vocab.add_bos = tokenizer_config
        .get("add_bos_token")
        .and_then(Json::as_bool);
    vocab.add_eos = tokenizer_config
        .get("add_eos_token")
        .and_then(Json::as_bool);
    vocab.chat_template = match tokenizer_config.get("chat_template") {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
        _ => None,
    };
    if vocab.chat_template.is_none() {
        let jinja = dir.join("chat_template.jinja");
        if let Ok(text) = std::fs::read_to_string(&jinja) {
            vocab.chat_template = Some(text);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_split_expressions_name_their_pre_tokenizer() {
        let seq = |regex: &str| {
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
            ]})
        };
        assert_eq!(detect_pre(Some(&seq(LLAMA3_SPLIT))), Some("llama-bpe"));
        assert_eq!(detect_pre(Some(&seq(QWEN2_SPLIT))), Some("qwen2"));
        assert_eq!(detect_pre(Some(&seq(r"\w+"))), None);
        let gpt2 = json!({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true});
        assert_eq!(detect_pre(Some(&gpt2)), Some("gpt-2"));
        assert_eq!(detect_pre(None), None);
    }
}
