//! Conversion pipelines: a cached safetensors checkpoint turned into a GGUF file for llama.cpp,
//! Ollama or LM Studio, at F16 or Q8_0.
//!
//! - [`checkpoint`] reads `config.json` and the safetensors headers of a snapshot folder;
//! - [`llama`] plans the output for the llama family (Llama, Mistral, Qwen2): metadata, tensor
//!   names, which tensors are stored at which precision;
//! - [`tokenizer`] turns `tokenizer.json` into llama.cpp's vocabulary metadata;
//! - [`native`] writes the file in one pass, one memory-mapped tensor at a time ([`gguf`] is the
//!   container, [`numeric`] the number formats);
//! - [`external`] runs llama.cpp's own `convert_hf_to_gguf.py` for architectures the native
//!   converter does not know, when it is installed;
//! - [`job`] is what the scheduler and the edges call: it finds the source snapshot in the hub
//!   cache, writes the output to a temporary name, renames it when complete, and records its
//!   provenance ([`Provenance`]) beside it.
//!
//! **Architecture Invariant:** a conversion reads the hub cache and never writes into it: its
//! output goes to `<data_dir>/converted/` or to the path the user chose; `snapshots/` holds only
//! files whose hash the Hub published.

pub mod checkpoint;
pub mod external;
pub mod gguf;
pub mod job;
pub mod llama;
pub mod native;
pub mod numeric;
pub mod runner;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::download::JobControl;
use crate::error::{ErrorKind, Hint};

pub use job::{ConvertRequest, Provenance, converted_dir};

/// The version of the native converter, recorded in every output's provenance.
pub const CONVERTER_VERSION: &str = concat!("model-cache-native-gguf/", env!("CARGO_PKG_VERSION"));

/// The precision of a GGUF output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GgufType {
    #[serde(rename = "f16")]
    F16,
    #[serde(rename = "q8_0")]
    Q8_0,
}

impl GgufType {
    /// `general.file_type` (`LlamaFileType`).
    pub fn file_type(self) -> u32 {
        match self {
            GgufType::F16 => 1,
            GgufType::Q8_0 => 7,
        }
    }

    /// As in file names and `--outtype`: `F16`, `Q8_0`.
    pub fn label(self) -> &'static str {
        match self {
            GgufType::F16 => "F16",
            GgufType::Q8_0 => "Q8_0",
        }
    }

    /// llama.cpp's `--outtype` value.
    pub fn outtype(self) -> &'static str {
        match self {
            GgufType::F16 => "f16",
            GgufType::Q8_0 => "q8_0",
        }
    }
}

impl std::str::FromStr for GgufType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "f16" => Ok(GgufType::F16),
            "q8_0" | "q8" => Ok(GgufType::Q8_0),
            other => Err(format!(
                "`{other}` is not a GGUF type this converter writes (f16, q8_0)"
            )),
        }
    }
}

/// The format asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Gguf,
}

/// Which converter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The native converter when it supports the architecture, else llama.cpp's when installed.
    #[default]
    Auto,
    Native,
    /// llama.cpp's `convert_hf_to_gguf.py`.
    LlamaCpp,
}

/// Errors of a conversion.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("Cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{repo}` at `{revision}` is not in the cache")]
    NotCached { repo: String, revision: String },
    #[error("`{path}` is not there")]
    MissingFile { path: PathBuf },
    #[error("`{dir}` has no safetensors weights to convert")]
    NoSafetensors { dir: PathBuf },
    #[error(
        "There is no standard converter from ONNX to GGUF: ONNX graphs do not keep the layout llama.cpp needs; convert the model's safetensors (or PyTorch) checkpoint instead"
    )]
    OnnxSource,
    #[error("`{path}` cannot be read: {reason}")]
    BadCheckpoint { path: PathBuf, reason: String },
    #[error("`{path}` cannot be read as a tokenizer: {reason}")]
    BadTokenizer { path: PathBuf, reason: String },
    #[error(
        "The tokenizer model `{kind}` is not supported by the native converter (it writes SentencePiece and BPE vocabularies)"
    )]
    UnsupportedTokenizer { kind: String },
    #[error(
        "Tensor `{tensor}` is stored as {dtype}, which the native converter does not read (F32, F16, BF16)"
    )]
    UnsupportedDtype { tensor: String, dtype: String },
    #[error(
        "The native converter does not support the architecture `{architecture}` (it supports {}), and llama.cpp's convert_hf_to_gguf.py was not found",
        llama::SUPPORTED.join(", ")
    )]
    UnsupportedArchitecture { architecture: String },
    #[error("The native converter does not support {what}")]
    UnsupportedSetting { what: String },
    #[error("Tensor `{name}` has no llama.cpp name in this architecture")]
    UnknownTensor { name: String },
    #[error("Tensor `{tensor}` has an unexpected shape: {reason}")]
    BadShape { tensor: String, reason: String },
    #[error("config.json has no `{key}`")]
    MissingHparam { key: &'static str },
    #[error("llama.cpp's convert_hf_to_gguf.py was not found")]
    NoLlamaCpp,
    #[error("llama.cpp's converter failed ({status}): {output}")]
    LlamaCppFailed { status: String, output: String },
    #[error("The conversion was cancelled")]
    Cancelled,
}

impl ConvertError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> ConvertError {
        ConvertError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ConvertError::Io { source, .. } if source.raw_os_error() == Some(libc_enospc()) => {
                ErrorKind::DiskFull
            }
            ConvertError::Io { .. } => ErrorKind::Io,
            ConvertError::NotCached { .. }
            | ConvertError::MissingFile { .. }
            | ConvertError::NoSafetensors { .. } => ErrorKind::NotCached,
            ConvertError::BadCheckpoint { .. }
            | ConvertError::BadTokenizer { .. }
            | ConvertError::BadShape { .. }
            | ConvertError::MissingHparam { .. } => ErrorKind::InvalidFormat,
            ConvertError::OnnxSource
            | ConvertError::UnsupportedTokenizer { .. }
            | ConvertError::UnsupportedDtype { .. }
            | ConvertError::UnsupportedArchitecture { .. }
            | ConvertError::UnsupportedSetting { .. }
            | ConvertError::UnknownTensor { .. }
            | ConvertError::NoLlamaCpp => ErrorKind::Unsupported,
            ConvertError::LlamaCppFailed { .. } => ErrorKind::Io,
            ConvertError::Cancelled => ErrorKind::Cancelled,
        }
    }

    pub fn hints(&self) -> Vec<Hint> {
        match self {
            ConvertError::UnsupportedArchitecture { .. } | ConvertError::NoLlamaCpp => {
                vec![Hint::InstallLlamaCppConverter]
            }
            ConvertError::NotCached { repo, .. } => vec![Hint::PullFirst { repo: repo.clone() }],
            _ => Vec::new(),
        }
    }
}

impl crate::error::Diagnostic for ConvertError {
    fn kind(&self) -> ErrorKind {
        ConvertError::kind(self)
    }

    fn hints(&self) -> Vec<Hint> {
        ConvertError::hints(self)
    }
}

#[cfg(unix)]
fn libc_enospc() -> i32 {
    libc::ENOSPC
}

#[cfg(not(unix))]
fn libc_enospc() -> i32 {
    112 // ERROR_DISK_FULL
}

/// Progress and control of one conversion: counts output bytes, reports them, waits while the
/// job is paused and stops when it is cancelled.
pub struct Monitor<'a> {
    done: u64,
    total: u64,
    report: &'a mut dyn FnMut(u64, u64),
    control: Option<&'a JobControl>,
}

impl<'a> Monitor<'a> {
    pub fn new(report: &'a mut dyn FnMut(u64, u64), control: Option<&'a JobControl>) -> Self {
        Monitor {
            done: 0,
            total: 0,
            report,
            control,
        }
    }

    pub fn set_total(&mut self, total: u64) {
        self.total = total;
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    /// Counts `bytes` more written; returns `Cancelled` when the job was cancelled (after
    /// waiting out a pause).
    pub fn advance(&mut self, bytes: u64) -> Result<(), ConvertError> {
        self.done += bytes;
        (self.report)(self.done, self.total.max(self.done));
        self.check()
    }

    /// Counts `bytes` more written, without waiting on a pause.
    pub fn count(&mut self, bytes: u64) {
        self.done += bytes;
        (self.report)(self.done, self.total.max(self.done));
    }

    pub fn is_paused(&self) -> bool {
        self.control.is_some_and(JobControl::is_paused)
    }

    pub fn is_cancelled(&self) -> bool {
        self.control.is_some_and(JobControl::is_cancelled)
    }

    pub fn check(&self) -> Result<(), ConvertError> {
        let Some(control) = self.control else {
            return Ok(());
        };
        while control.is_paused() && !control.is_cancelled() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if control.is_cancelled() {
            return Err(ConvertError::Cancelled);
        }
        Ok(())
    }
}
