//! One conversion from start to end: the source snapshot found in the hub cache, the backend
//! chosen, the output written under a temporary name and renamed when complete, and its
//! provenance recorded.
//!
//! A conversion interrupted by a crash or a restart leaves only its temporary file (named
//! `.{output}.converting`), which the next run of the same job overwrites: a job restarts from
//! the beginning, and a file under the output's name is always complete.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint::{self, Checkpoint};
use super::{
    Backend, CONVERTER_VERSION, ConvertError, Format, GgufType, Monitor, external, gguf, llama,
    native, tokenizer,
};
use crate::download::JobControl;
use crate::repo::RepoId;
use crate::store::HubCache;

/// The folder of the app-data folder where outputs are kept when no path is given.
pub const CONVERTED_DIR: &str = "converted";

/// Our own area of the app-data folder for converted models.
pub fn converted_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(CONVERTED_DIR)
}

/// What to convert, and to what. Kept with a queued job (JSON in the index), so fields are
/// added, never renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvertRequest {
    pub to: Format,
    #[serde(rename = "type")]
    pub gguf_type: GgufType,
    /// Where to write the output; `None` for `<data_dir>/converted/…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
    #[serde(default)]
    pub backend: Backend,
}

/// Where a converted file came from, kept beside it (`<file>.provenance.json`) and in its GGUF
/// metadata (`general.source.huggingface.repository`, `model_cache.source.commit`,
/// `model_cache.converter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub repo: String,
    /// The revision asked for (a branch, a tag or a commit).
    pub revision: String,
    /// The commit of the snapshot that was converted.
    pub commit: String,
    /// The snapshot's files that were read.
    pub source_files: Vec<String>,
    pub format: Format,
    #[serde(rename = "type")]
    pub gguf_type: GgufType,
    /// `native` or `llama_cpp`.
    pub backend: Backend,
    /// The converter and its version.
    pub converter: String,
    pub architecture: Option<String>,
    pub output: PathBuf,
    pub bytes: u64,
    pub tensors: usize,
    pub created_at: i64,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The suffix of a provenance record.
pub const PROVENANCE_SUFFIX: &str = ".provenance.json";

/// The settings a conversion needs from the engine.
#[derive(Debug, Clone)]
pub struct ConvertContext {
    pub hub_cache: PathBuf,
    pub data_dir: PathBuf,
    /// llama.cpp's `convert_hf_to_gguf.py`, when found.
    pub llama_cpp: Option<PathBuf>,
}

/// The source and the output of a conversion, decided before any work.
#[derive(Debug, Clone)]
pub struct ConvertPlan {
    pub repo: RepoId,
    pub revision: String,
    pub commit: String,
    pub snapshot: PathBuf,
    pub output: PathBuf,
    pub backend: Backend,
    pub architecture: Option<String>,
    /// Bytes of the output: exact for the native converter, estimated from the weights' size for
    /// llama.cpp's.
    pub estimated_bytes: u64,
}

fn file_stem(repo: &RepoId) -> String {
    repo.id.rsplit('/').next().unwrap_or(&repo.id).to_string()
}

/// Finds the source and decides the backend and the output path.
pub fn plan(
    context: &ConvertContext,
    repo: &RepoId,
    revision: &str,
    request: &ConvertRequest,
) -> Result<ConvertPlan, ConvertError> {
    let cache = HubCache::new(&context.hub_cache).repo(repo);
    let commit = cache
        .cached_commit(revision)
        .ok_or_else(|| ConvertError::NotCached {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })?;
    let snapshot = cache.snapshot_dir(&commit);
    if !snapshot.is_dir() {
        return Err(ConvertError::NotCached {
            repo: repo.to_string(),
            revision: revision.to_string(),
        });
    }
    let has = |ext: &str| {
        std::fs::read_dir(&snapshot)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.path().extension().is_some_and(|x| x == ext))
            })
            .unwrap_or(false)
    };
    let onnx_dir = snapshot.join("onnx");
    if !has("safetensors") && (has("onnx") || onnx_dir.is_dir()) {
        return Err(ConvertError::OnnxSource);
    }
    let config = checkpoint::read_json(&snapshot.join("config.json"))?;
    let architecture = llama::hf_architecture(&config);
    let native_ok = architecture
        .as_deref()
        .and_then(llama::Arch::from_hf)
        .is_some();
    let backend = match request.backend {
        Backend::Native if native_ok => Backend::Native,
        Backend::Auto if native_ok => Backend::Native,
        Backend::LlamaCpp | Backend::Auto if context.llama_cpp.is_some() => Backend::LlamaCpp,
        Backend::LlamaCpp => return Err(ConvertError::NoLlamaCpp),
        Backend::Native | Backend::Auto => {
            return Err(ConvertError::UnsupportedArchitecture {
                architecture: architecture
                    .clone()
                    .unwrap_or_else(|| "(none named in config.json)".into()),
            });
        }
    };
    let estimated_bytes = match backend {
        Backend::Native => {
            let (_, plan, _) = native_plan(&snapshot, repo, &commit, request.gguf_type)?;
            let infos: Vec<gguf::TensorInfo> =
                plan.tensors.iter().map(|t| t.info.clone()).collect();
            gguf::file_size(gguf::header(&plan.metadata, &infos).len() as u64, &infos)
        }
        _ => {
            let weights: u64 = checkpoint::weight_files(&snapshot)?
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum();
            match request.gguf_type {
                GgufType::F16 => weights,
                GgufType::Q8_0 => weights / 2 + weights / 32,
            }
        }
    };
    let output = match &request.out {
        Some(out) if out.is_dir() => out.join(default_name(repo, request.gguf_type)),
        Some(out) => out.clone(),
        None => converted_dir(&context.data_dir)
            .join(repo.folder_name())
            .join(&commit)
            .join(default_name(repo, request.gguf_type)),
    };
    Ok(ConvertPlan {
        repo: repo.clone(),
        revision: revision.to_string(),
        commit,
        snapshot,
        output,
        backend,
        architecture,
        estimated_bytes,
    })
}

fn default_name(repo: &RepoId, kind: GgufType) -> String {
    format!("{}-{}.gguf", file_stem(repo), kind.label())
}

fn temp_name(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!(".{name}.converting"))
}

/// Runs a planned conversion (blocking: call it off the async threads). `report` receives
/// `(bytes written, bytes expected)`.
pub fn run(
    context: &ConvertContext,
    plan: &ConvertPlan,
    request: &ConvertRequest,
    report: &mut dyn FnMut(u64, u64),
    control: Option<&JobControl>,
) -> Result<Provenance, ConvertError> {
    if let Some(parent) = plan.output.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ConvertError::io("create", parent, e))?;
    }
    let temp = temp_name(&plan.output);
    let mut monitor = Monitor::new(report, control);
    monitor.set_total(plan.estimated_bytes);
    let result = match plan.backend {
        Backend::LlamaCpp => {
            let script = context
                .llama_cpp
                .as_deref()
                .ok_or(ConvertError::NoLlamaCpp)?;
            external::run(
                script,
                &plan.snapshot,
                &temp,
                request.gguf_type,
                &mut monitor,
            )
            .map(|()| (0usize, Vec::new()))
        }
        _ => write_native(plan, request, &temp, &mut monitor),
    };
    let (tensors, warnings) = match result {
        Ok(done) => done,
        Err(error) => {
            let _ = std::fs::remove_file(&temp);
            return Err(error);
        }
    };
    std::fs::rename(&temp, &plan.output).map_err(|e| ConvertError::io("rename", &temp, e))?;
    #[cfg(unix)]
    if let Some(parent) = plan.output.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
    let bytes = std::fs::metadata(&plan.output)
        .map(|m| m.len())
        .unwrap_or(monitor.done());
    let source_files = source_files(&plan.snapshot);
    let provenance = Provenance {
        repo: plan.repo.to_string(),
        revision: plan.revision.clone(),
        commit: plan.commit.clone(),
        source_files,
        format: request.to,
        gguf_type: request.gguf_type,
        backend: plan.backend,
        converter: match plan.backend {
            Backend::LlamaCpp => format!(
                "llama.cpp convert_hf_to_gguf.py ({})",
                context
                    .llama_cpp
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            _ => CONVERTER_VERSION.to_string(),
        },
        architecture: plan.architecture.clone(),
        output: plan.output.clone(),
        bytes,
        tensors,
        created_at: crate::index::now_ms(),
        warnings,
    };
    let record = provenance_path(&plan.output);
    let json = serde_json::to_vec_pretty(&provenance).expect("a provenance record serializes");
    crate::store::atomic::write(&record, &json)
        .map_err(|e| ConvertError::io("write", &record, e))?;
    Ok(provenance)
}

/// The provenance record of an output file.
pub fn provenance_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!("{name}{PROVENANCE_SUFFIX}"))
}

fn source_files(snapshot: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(snapshot)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    n.ends_with(".safetensors")
                        || n.ends_with(".json")
                        || n == "tokenizer.model"
                        || n.ends_with(".jinja")
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The checkpoint and the whole output of the native converter: tensors, and metadata with the
/// vocabulary and the provenance keys (so the planned size is the file's exact size).
fn native_plan(
    snapshot: &Path,
    repo: &RepoId,
    commit: &str,
    kind: GgufType,
) -> Result<(Checkpoint, llama::Plan, Vec<String>), ConvertError> {
    let checkpoint = Checkpoint::open(snapshot)?;
    let mut plan = llama::plan(&checkpoint, kind, &file_stem(repo))?;
    let vocab_size = checkpoint.config.get("vocab_size").and_then(|v| v.as_u64());
    let vocab = tokenizer::read(snapshot, &checkpoint.config, vocab_size)?;
    plan.metadata.extend([
        (
            "general.source.huggingface.repository".to_string(),
            gguf::Value::String(repo.id.clone()),
        ),
        (
            "model_cache.source.commit".to_string(),
            gguf::Value::String(commit.to_string()),
        ),
        (
            "model_cache.converter".to_string(),
            gguf::Value::String(CONVERTER_VERSION.to_string()),
        ),
    ]);
    plan.metadata.extend(vocab.metadata());
    Ok((checkpoint, plan, vocab.warnings))
}

fn write_native(
    plan: &ConvertPlan,
    request: &ConvertRequest,
    temp: &Path,
    monitor: &mut Monitor<'_>,
) -> Result<(usize, Vec<String>), ConvertError> {
    let (checkpoint, out_plan, warnings) =
        native_plan(&plan.snapshot, &plan.repo, &plan.commit, request.gguf_type)?;
    for warning in &warnings {
        tracing::warn!(repo = %plan.repo, "{warning}");
    }
    let infos: Vec<gguf::TensorInfo> = out_plan.tensors.iter().map(|t| t.info.clone()).collect();
    let header_len = gguf::header(&out_plan.metadata, &infos).len() as u64;
    monitor.set_total(gguf::file_size(header_len, &infos));
    let file = std::fs::File::create(temp).map_err(|e| ConvertError::io("create", temp, e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    native::write(&checkpoint, &out_plan, &mut out, temp, monitor)?;
    out.flush()
        .map_err(|e| ConvertError::io("write", temp, e))?;
    let file = out
        .into_inner()
        .map_err(|e| ConvertError::io("write", temp, e.into_error()))?;
    file.sync_all()
        .map_err(|e| ConvertError::io("sync", temp, e))?;
    Ok((out_plan.tensors.len(), warnings))
}

/// The converted models in our own area, newest first (a record is written only when its
/// output is complete).
pub fn list(data_dir: &Path) -> Vec<Provenance> {
    let mut out = Vec::new();
    let mut stack = vec![converted_dir(data_dir)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(PROVENANCE_SUFFIX))
                && let Ok(text) = std::fs::read(&path)
                && let Ok(record) = serde_json::from_slice::<Provenance>(&text)
                && record.output.is_file()
            {
                out.push(record);
            }
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    out
}
