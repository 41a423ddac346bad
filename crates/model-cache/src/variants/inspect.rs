//! Reading what file names cannot be trusted for: `config.json`, shard indexes, and the GGUF and
//! safetensors headers, through a [`RepoFiles`] that opens repo files on the Hub (range
//! requests), in a local snapshot, or in the cache first.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use serde::{Deserialize, Serialize};

use super::scan::quant_family;
use super::{
    ListedFile, ModelShape, Variant, VariantFile, VariantFormat, Warning, WarningKind, group,
    split_path,
};
use crate::formats::ggml::quant_bits_per_weight;
use crate::formats::{ByteSource, SourceError, gguf, safetensors};
use crate::hub::HubClient;
use crate::repo::RepoId;

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
    group::sort(variants);
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
