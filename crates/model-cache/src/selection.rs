//! Which files of a repo listing a pull takes: the one place a selection is matched.
//!
//! A [`Selection`] is decided once, when a pull is planned (a variant's files, the files the
//! user named, or glob patterns), stored with the queue job, and matched again by the runner
//! against the listing of the job's revision when the job starts. Both use [`Selection::pick`].

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, ErrorKind, Hint};
use crate::hub::{EntryKind, TreeEntry};

/// The files a job downloads.
///
/// **API Boundary:** stored as JSON in the index's queue rows; fields are added with defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Exact paths (no pattern syntax).
    #[serde(default)]
    pub files: Vec<String>,
    /// Glob patterns of files to take.
    #[serde(default)]
    pub include: Vec<String>,
    /// Glob patterns of files to leave out (applied after `files` and `include`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// A variant name (a GGUF quantization such as `Q4_K_M`, a safetensors dtype) when the user
    /// picked one; `files` already names its files.
    #[serde(default)]
    pub variant: Option<String>,
}

/// A glob pattern that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("Invalid file pattern `{pattern}`: {reason}")]
pub struct SelectionError {
    pub pattern: String,
    pub reason: String,
}

impl SelectionError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::BadPattern
    }

    pub fn hints(&self) -> Vec<Hint> {
        vec![Hint::UseGlobPatterns]
    }
}

impl Diagnostic for SelectionError {
    fn kind(&self) -> ErrorKind {
        SelectionError::kind(self)
    }

    fn hints(&self) -> Vec<Hint> {
        SelectionError::hints(self)
    }
}

impl Selection {
    /// Exactly these files.
    pub fn files(files: impl IntoIterator<Item = String>) -> Self {
        Selection {
            files: files.into_iter().collect(),
            ..Selection::default()
        }
    }

    /// Whether the selection names nothing, so takes every file.
    pub fn is_everything(&self) -> bool {
        self.files.is_empty() && self.include.is_empty()
    }

    /// The files of `entries` the selection takes: every file when it names none; otherwise
    /// those named in `files` or matched by an `include` pattern; then less those matched by an
    /// `exclude` pattern. Folders are never taken.
    pub fn pick<'a>(&self, entries: &'a [TreeEntry]) -> Result<Vec<&'a TreeEntry>, SelectionError> {
        let include = glob_set(&self.include)?;
        let exclude = glob_set(&self.exclude)?;
        let everything = self.is_everything();
        Ok(entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .filter(|e| {
                everything
                    || self.files.iter().any(|f| f == &e.path)
                    || include.as_ref().is_some_and(|s| s.is_match(&e.path))
            })
            .filter(|e| exclude.as_ref().is_none_or(|s| !s.is_match(&e.path)))
            .collect())
    }
}

fn glob_set(patterns: &[String]) -> Result<Option<GlobSet>, SelectionError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let error = |pattern: String, e: globset::Error| SelectionError {
        pattern,
        reason: e.kind().to_string(),
    };
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(Glob::new(pattern).map_err(|e| error(pattern.clone(), e))?);
    }
    builder
        .build()
        .map(Some)
        .map_err(|e| error(patterns.join(" "), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            size: 1,
            oid: String::new(),
            lfs: None,
            kind: EntryKind::File,
            xet_hash: None,
        }
    }

    fn picked(selection: &Selection, entries: &[TreeEntry]) -> Vec<String> {
        selection
            .pick(entries)
            .unwrap()
            .into_iter()
            .map(|e| e.path.clone())
            .collect()
    }

    #[test]
    fn files_are_exact_and_patterns_are_globs() {
        let entries = [
            entry("config.json"),
            entry("weird/[x]*name?.gguf"),
            entry("weird/xAname1.gguf"),
            entry("model-Q4_K_M.gguf"),
            entry("model-Q8_0.gguf"),
        ];
        assert_eq!(picked(&Selection::default(), &entries).len(), 5);
        let exact = Selection::files(["weird/[x]*name?.gguf".to_string()]);
        assert_eq!(picked(&exact, &entries), ["weird/[x]*name?.gguf"]);
        let globs = Selection {
            files: vec!["config.json".into()],
            include: vec!["*Q*.gguf".into()],
            exclude: vec!["*Q8_0*".into()],
            variant: None,
        };
        assert_eq!(
            picked(&globs, &entries),
            ["config.json", "model-Q4_K_M.gguf"]
        );
        let bad = Selection {
            include: vec!["[".into()],
            ..Selection::default()
        };
        let error = bad.pick(&entries).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadPattern);
    }

    #[test]
    fn rows_written_before_files_existed_still_read() {
        let old: Selection =
            serde_json::from_str(r#"{"include":["*.gguf"],"exclude":[],"variant":"Q4_K_M"}"#)
                .unwrap();
        assert!(old.files.is_empty());
        assert_eq!(old.include, ["*.gguf"]);
    }
}
