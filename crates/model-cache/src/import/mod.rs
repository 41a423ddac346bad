//! Local files and other apps' models becoming cached models.
//!
//! An import starts from [`Candidate`]s: files or folders the user named, or the models another
//! app holds (`apps`: Ollama's store, LM Studio's folder, llama.cpp's cache). Each candidate is
//! placed in one of two places:
//!
//! - **the Hub layout**, under a repo the user named (or, when asked, the repo the other app's
//!   own records name): only when every file's sha256 (git sha1 for small files kept in git)
//!   matches a file of that repo's listing, so the cache holds nothing the Hub did not publish.
//!   The blob is named by its etag, linked from the snapshot, and the ref written, exactly as a
//!   download would: every Hugging Face tool finds it.
//! - **our own area** of the app-data folder (`<data_dir>/imported/<name>/`), never a
//!   `models--…` folder in the hub cache, with a record (`.model-cache-import.json`) written
//!   last, so a folder without one is an import that did not finish.
//!
//! Files are given their new name by `store::share`: a hard link, else a reflink; a copy only
//! when the request allows it (the report says how many bytes it needs first). The other app's
//! files are only ever read. [`ImportReport`] says, per model, how each file was (or would be)
//! placed and what that saves.

pub(crate) mod apps;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, ErrorKind, Hint};
use crate::repo::RepoId;
use crate::store::share::ShareMethod;
use crate::variants::Variant;

/// The folder of the app-data folder that holds imports not placed under a Hub repo.
pub const IMPORTED_DIR: &str = "imported";
/// The record written last into an imported model's folder.
pub const IMPORT_RECORD: &str = ".model-cache-import.json";

/// Where a candidate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportOrigin {
    /// Files or folders the user named.
    Files,
    /// Ollama's model store.
    Ollama,
    /// LM Studio's models folder.
    LmStudio,
    /// llama.cpp's download cache.
    LlamaCpp,
}

impl ImportOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportOrigin::Files => "files",
            ImportOrigin::Ollama => "ollama",
            ImportOrigin::LmStudio => "lmstudio",
            ImportOrigin::LlamaCpp => "llama.cpp",
        }
    }
}

/// What to import.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRequest {
    pub from: ImportOrigin,
    /// With [`ImportOrigin::Files`], the files and folders; otherwise the app's folder (one).
    pub paths: Vec<PathBuf>,
    /// The Hub repo the files came from.
    #[serde(default)]
    pub repo: Option<RepoId>,
    /// Use the repo the other app's records name (still checked against the Hub's hashes).
    #[serde(default)]
    pub use_suggested_repos: bool,
    /// Branch, tag or commit of the repo; `main` when absent.
    #[serde(default)]
    pub revision: Option<String>,
    /// Copy where neither a hard link nor a reflink is possible.
    #[serde(default)]
    pub allow_copy: bool,
    /// Only say what would happen.
    #[serde(default)]
    pub dry_run: bool,
}

/// One model found, before it is placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub name: String,
    pub origin: ImportOrigin,
    pub files: Vec<CandidateFile>,
    /// A Hub repo the other app's records name.
    pub suggested_repo: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CandidateFile {
    pub source: PathBuf,
    /// Its name in our area (a relative path with `/`).
    pub name: String,
    pub size: u64,
    /// The sha256 the other app names the file by (Ollama's digest): checked, never trusted.
    pub claimed_sha256: Option<String>,
}

/// What became (or would become) of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportState {
    /// A dry run: this is what would happen.
    Planned,
    Imported,
    /// Some file can be neither linked nor cloned: nothing was placed; allow a copy of
    /// `copy_bytes` to import it.
    NeedsCopy,
    Failed,
}

/// Where a model is placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Placement {
    /// Under a Hub repo, in the hub cache.
    Hub {
        repo: String,
        revision: String,
        commit: String,
    },
    /// In our own area of the app-data folder.
    Local { dir: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedFile {
    pub source: PathBuf,
    /// The repo path (Hub placement) or the name in our area.
    pub path: String,
    pub size: u64,
    /// The content's sha256, once read (a dry run reads only what it must).
    pub sha256: Option<String>,
    pub method: ShareMethod,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportItem {
    pub name: String,
    pub origin: ImportOrigin,
    pub suggested_repo: Option<String>,
    pub state: ImportState,
    pub placement: Option<Placement>,
    pub files: Vec<ImportedFile>,
    /// Total size of the model's files.
    pub bytes: u64,
    /// Bytes that cost no new disk (linked, cloned or already there) and need no download.
    pub saved_bytes: u64,
    /// Bytes copied, or that a copy would need.
    pub copy_bytes: u64,
    /// The model's variants, from its files' headers.
    pub variants: Vec<Variant>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub items: Vec<ImportItem>,
    pub bytes: u64,
    pub saved_bytes: u64,
    pub copy_bytes: u64,
}

impl ImportReport {
    pub(crate) fn new(dry_run: bool, items: Vec<ImportItem>) -> Self {
        ImportReport {
            dry_run,
            bytes: items.iter().map(|i| i.bytes).sum(),
            saved_bytes: items.iter().map(|i| i.saved_bytes).sum(),
            copy_bytes: items.iter().map(|i| i.copy_bytes).sum(),
            items,
        }
    }
}

/// The record in an imported model's folder in our area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    pub name: String,
    pub origin: ImportOrigin,
    /// Milliseconds since the Unix epoch.
    pub imported_at: i64,
    pub files: Vec<ImportedFile>,
}

/// A model in our area, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedModel {
    pub dir: PathBuf,
    #[serde(flatten)]
    pub record: ImportRecord,
    pub bytes: u64,
    pub variants: Vec<Variant>,
}

/// The folder name in our area for a model name: letters, digits, `.`, `_` and `-` kept,
/// anything else a `-`, never empty nor starting with a dot.
pub(crate) fn folder_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    out = out.trim_start_matches('.').to_string();
    out.truncate(120);
    if out.is_empty() {
        out.push_str("model");
    }
    out
}

/// Errors of an import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("Cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not a GGUF or safetensors file, nor a folder holding one", path.display())]
    NotWeights { path: PathBuf },
    #[error("`{}` does not look like a {} folder (expected {expected})", path.display(), origin.as_str())]
    NotAnAppStore {
        origin: ImportOrigin,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("No {} folder given and none found in the usual place", origin.as_str())]
    NoAppFolder { origin: ImportOrigin },
    #[error("`{}` is {actual} bytes, but its app's records say {expected}", path.display())]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("`{}` (sha256 {sha256}) is not a file of `{repo}` at `{revision}`", path.display())]
    NoMatch {
        path: PathBuf,
        sha256: String,
        repo: String,
        revision: String,
    },
    #[error("`{}` changed while it was imported", path.display())]
    Changed { path: PathBuf },
    #[error("`{name}` is already imported from other files (`{}`)", dir.display())]
    NameTaken { name: String, dir: PathBuf },
    #[error("Only files can be imported from several paths; give one {} folder", origin.as_str())]
    OneAppFolder { origin: ImportOrigin },
}

impl ImportError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        ImportError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl Diagnostic for ImportError {
    fn kind(&self) -> ErrorKind {
        match self {
            ImportError::Io { source, .. } if crate::store::is_disk_full(source) => {
                ErrorKind::DiskFull
            }
            ImportError::Io { .. } => ErrorKind::Io,
            ImportError::NoMatch { .. } | ImportError::Changed { .. } => ErrorKind::Integrity,
            ImportError::SizeMismatch { .. } => ErrorKind::InvalidFormat,
            ImportError::NotWeights { .. }
            | ImportError::NotAnAppStore { .. }
            | ImportError::NoAppFolder { .. }
            | ImportError::NameTaken { .. }
            | ImportError::OneAppFolder { .. } => ErrorKind::InvalidInput,
        }
    }

    fn hints(&self) -> Vec<Hint> {
        match self {
            ImportError::NoMatch { .. } => vec![Hint::CheckRepoId],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_stay_plain() {
        assert_eq!(folder_name("hf.co/org/M:Q4_K_M"), "hf.co-org-M-Q4_K_M");
        assert_eq!(folder_name("../x"), "-x");
        assert_eq!(folder_name(""), "model");
    }
}
