//! [`SafeRelPath`]: the only way a file name from a repo listing becomes a path on disk.

use std::fmt;
use std::path::{Path, PathBuf};

use super::StoreError;

/// Longest accepted repo path, in bytes (Linux `PATH_MAX` is 4096; the cache prefix needs room).
const MAX_LEN: usize = 1024;
/// Longest accepted path segment, in bytes (`NAME_MAX` on common file systems).
const MAX_SEGMENT: usize = 255;

/// A relative, `/`-separated path inside a snapshot that cannot escape it: no absolute paths, no
/// `..` or `.` segments, no empty segments (`a//b`, a trailing `/`), no backslashes or drive
/// prefixes (`C:`), no NUL or other control characters, nothing over-long.
///
/// **Architecture Invariant:** the store joins repo file names onto cache paths only through
/// this type; combined with the symlink check at link time, nothing is written outside the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SafeRelPath(String);

impl SafeRelPath {
    /// Validates a name from a repo listing (or a user).
    pub fn new(name: &str) -> Result<Self, StoreError> {
        let reject = |reason: &'static str| StoreError::UnsafePath {
            name: name.escape_debug().to_string(),
            reason,
        };
        if name.is_empty() {
            return Err(reject("empty path"));
        }
        if name.len() > MAX_LEN {
            return Err(reject("path too long"));
        }
        if name.starts_with('/') {
            return Err(reject("absolute path"));
        }
        if name.contains('\\') {
            return Err(reject("backslash in path"));
        }
        if name.chars().any(|c| c.is_control()) {
            return Err(reject("NUL or control character in path"));
        }
        let bytes = name.as_bytes();
        if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
            return Err(reject("drive prefix in path"));
        }
        for segment in name.split('/') {
            match segment {
                "" => return Err(reject("empty path segment")),
                "." | ".." => return Err(reject("`.` or `..` segment")),
                s if s.len() > MAX_SEGMENT => return Err(reject("path segment too long")),
                _ => {}
            }
        }
        Ok(SafeRelPath(name.to_string()))
    }

    /// The path as given (with `/` separators).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Number of segments (`a/b/c` has 3).
    pub fn depth(&self) -> usize {
        self.segments().count()
    }

    /// The path, joined with the platform's separator.
    pub fn to_path_buf(&self) -> PathBuf {
        self.segments().collect()
    }

    /// `base` joined with this path.
    pub fn join_to(&self, base: &Path) -> PathBuf {
        let mut path = base.to_path_buf();
        for segment in self.segments() {
            path.push(segment);
        }
        path
    }
}

impl fmt::Display for SafeRelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SafeRelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Creates the folders of `rel`'s parent under `base`, one component at a time, refusing to go
/// through any existing symlink (or file) that leads outside `base`. Returns the parent folder.
///
/// Creating folders one by one matters: `create_dir_all` on `base/evil/sub` where `evil` is a
/// symlink to `/tmp` would already have written `/tmp/sub` before any check could run.
pub(crate) fn create_parents_inside(base: &Path, rel: &SafeRelPath) -> Result<PathBuf, StoreError> {
    std::fs::create_dir_all(base).map_err(|e| StoreError::io("create", base, e))?;
    let canonical_base = base
        .canonicalize()
        .map_err(|e| StoreError::io("resolve", base, e))?;
    let segments: Vec<&str> = rel.segments().collect();
    let mut current = base.to_path_buf();
    for segment in &segments[..segments.len() - 1] {
        current.push(segment);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = current.canonicalize().map_err(|_| StoreError::Escape {
                    path: current.clone(),
                })?;
                if !target.starts_with(&canonical_base) || !target.is_dir() {
                    return Err(StoreError::Escape { path: current });
                }
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::io(
                    "create folder",
                    &current,
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "a file is in the way of a folder",
                    ),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::create_dir(&current) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(StoreError::io("create", &current, e)),
                }
            }
            Err(e) => return Err(StoreError::io("inspect", &current, e)),
        }
    }
    // Belt and braces: the final parent, with every link resolved, must be inside `base`.
    let parent = current
        .canonicalize()
        .map_err(|e| StoreError::io("resolve", &current, e))?;
    if !parent.starts_with(&canonical_base) {
        return Err(StoreError::Escape { path: current });
    }
    Ok(current)
}
