//! The source checkpoint: a snapshot folder's `config.json`, tokenizer files and safetensors
//! weights (one file, or shards named by `model.safetensors.index.json`).
//!
//! Only the headers are read here. Tensor bytes are read later, one tensor at a time, through a
//! memory map of just that tensor's range ([`TensorData`]), and unmapped as soon as the tensor is
//! written: the converter's resident memory stays near one tensor whatever the model's size.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConvertError;

/// Element types the converter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }
}

/// One tensor of the checkpoint.
#[derive(Debug, Clone)]
pub struct SourceTensor {
    pub name: String,
    pub dtype: Dtype,
    /// Row-major, outermost first (PyTorch order).
    pub shape: Vec<u64>,
    pub file: PathBuf,
    /// Absolute byte range in `file`.
    pub start: u64,
    pub end: u64,
}

impl SourceTensor {
    pub fn elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// The checkpoint's files, read from one folder.
#[derive(Debug)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: serde_json::Value,
    /// Tensors in file order (shard by shard).
    pub tensors: Vec<SourceTensor>,
}

#[derive(Deserialize)]
struct IndexFile {
    weight_map: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// Largest safetensors header accepted (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

impl Checkpoint {
    /// Reads `config.json` and the safetensors headers of `dir`.
    pub fn open(dir: &Path) -> Result<Checkpoint, ConvertError> {
        let config = read_json(&dir.join("config.json"))?;
        let files = weight_files(dir)?;
        let mut tensors = Vec::new();
        for file in files {
            tensors.extend(read_header(&file)?);
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            tensors,
        })
    }

    /// Bytes of all tensors.
    pub fn bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.end - t.start).sum()
    }
}

/// The weight files of `dir`: the shards its index names, else `model.safetensors`, else every
/// top-level `*.safetensors` (Mistral's `consolidated.safetensors` uses other tensor names and is
/// left out when HF-named files are there).
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ConvertError> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read(&index).map_err(|e| ConvertError::io("read", &index, e))?;
        let parsed: IndexFile =
            serde_json::from_slice(&text).map_err(|e| ConvertError::BadCheckpoint {
                path: index.clone(),
                reason: e.to_string(),
            })?;
        let mut names: Vec<String> = parsed.weight_map.into_values().collect();
        names.sort();
        names.dedup();
        let mut files = Vec::new();
        for name in names {
            let rel =
                crate::store::SafeRelPath::new(&name).map_err(|e| ConvertError::BadCheckpoint {
                    path: index.clone(),
                    reason: e.to_string(),
                })?;
            let path = rel.segments().fold(dir.to_path_buf(), |p, s| p.join(s));
            if !path.is_file() {
                return Err(ConvertError::MissingFile { path });
            }
            files.push(path);
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ConvertError::io("list", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ConvertError::NoSafetensors {
            dir: dir.to_path_buf(),
        });
    }
    Ok(files)
}

pub(super) fn read_json(path: &Path) -> Result<serde_json::Value, ConvertError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConvertError::MissingFile {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(ConvertError::io("read", path, e)),
    };
    serde_json::from_slice(&text).map_err(|e| ConvertError::BadCheckpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn read_header(path: &Path) -> Result<Vec<SourceTensor>, ConvertError> {
    use std::io::Read;
    let bad = |reason: String| ConvertError::BadCheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(|e| ConvertError::io("open", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| ConvertError::io("read", path, e))?
        .len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| ConvertError::io("read", path, e))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER || 8 + header_len > size {
        return Err(bad(format!(
            "its header length {header_len} is not plausible"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| ConvertError::io("read", path, e))?;
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    let base = 8 + header_len;
    let mut tensors = Vec::new();
    for (name, value) in map {
        if name == "__metadata__" {
            continue;
        }
        let entry: HeaderEntry =
            serde_json::from_value(value).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        let dtype = match entry.dtype.as_str() {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            other => {
                return Err(ConvertError::UnsupportedDtype {
                    tensor: name,
                    dtype: other.to_string(),
                });
            }
        };
        let [start, end] = entry.data_offsets;
        let elements: u64 = entry.shape.iter().product();
        if end < start || base + end > size || end - start != elements * dtype.size() as u64 {
            return Err(bad(format!("tensor `{name}` has inconsistent offsets")));
        }
        tensors.push(SourceTensor {
            name,
            dtype,
            shape: entry.shape,
            file: path.to_path_buf(),
            start: base + start,
            end: base + end,
        });
    }
    tensors.sort_by_key(|t| t.start);
    Ok(tensors)
}

/// One tensor's bytes, memory-mapped for as long as this value lives.
pub struct TensorData {
    map: Option<memmap2::Mmap>,
}

impl TensorData {
    /// Maps `tensor`'s byte range (memmap2 aligns the offset to a page itself).
    #[expect(
        unsafe_code,
        reason = "memory maps are unsafe by nature: a file that shrinks under the map is undefined behaviour; cache blobs are never written once named"
    )]
    pub fn map(tensor: &SourceTensor) -> Result<TensorData, ConvertError> {
        if tensor.end == tensor.start {
            return Ok(TensorData { map: None });
        }
        let file =
            File::open(&tensor.file).map_err(|e| ConvertError::io("open", &tensor.file, e))?;
        // SAFETY: the file is a verified blob of the cache, which nothing writes once it is
        // named; a map of it reads what is on disk.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(tensor.start)
                .len((tensor.end - tensor.start) as usize)
                .map(&file)
        }
        .map_err(|e| ConvertError::io("map", &tensor.file, e))?;
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(TensorData { map: Some(map) })
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}
