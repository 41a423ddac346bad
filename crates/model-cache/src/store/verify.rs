//! Re-hashing cached blobs against the names they carry (`blobs/{sha256}` for LFS files,
//! `blobs/{git-sha1}` for small git files), and listing a snapshot's files from the disk.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{HubCache, StoreError};
use crate::hash::{self, HashAlgorithm};
use crate::repo::RepoId;

/// The result of checking cached files against their hashes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    pub checked: usize,
    pub bytes: u64,
    pub corrupt: Vec<CorruptFile>,
}

/// A cached file whose bytes no longer match its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CorruptFile {
    pub repo: String,
    pub path: String,
    pub blob: PathBuf,
    pub expected: String,
    pub actual: String,
}

/// A file of a snapshot as the disk has it: its path in the repo, its size and the name of the
/// blob it links to (its etag; empty when it is not a link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: String,
    pub size: u64,
    pub etag: String,
}

impl HubCache {
    /// Re-hashes the cached files of one repo (or all), each blob once, and reports those whose
    /// bytes no longer match their name.
    pub async fn verify(&self, repo: Option<&RepoId>) -> Result<VerifyReport, StoreError> {
        let scan = self.scan()?;
        let mut report = VerifyReport::default();
        for cached in scan
            .repos
            .iter()
            .filter(|r| repo.is_none_or(|want| &r.repo == want))
        {
            let mut seen = HashSet::new();
            for file in cached.revisions.iter().flat_map(|r| &r.files) {
                // The name the snapshot links (`blobs/<etag>`), not where the link finally
                // leads: with `huggingface_hub` 2.x's shared store that is a payload named by
                // its Xet hash.
                let Some(etag) = file.etag.as_deref() else {
                    continue;
                };
                if !seen.insert(file.blob_path.clone()) {
                    continue;
                }
                let algorithm = match etag.len() {
                    64 => HashAlgorithm::Sha256,
                    40 => HashAlgorithm::GitSha1,
                    _ => continue,
                };
                let actual = hash::hash_file(file.blob_path.clone(), algorithm, file.size)
                    .await
                    .map_err(|source| StoreError::io("hash", &file.blob_path, source))?;
                report.checked += 1;
                report.bytes += file.size;
                if actual != etag {
                    report.corrupt.push(CorruptFile {
                        repo: cached.repo.to_string(),
                        path: file.path.clone(),
                        blob: file.blob_path.clone(),
                        expected: etag.to_string(),
                        actual,
                    });
                }
            }
        }
        Ok(report)
    }
}

impl super::RepoCache {
    /// The files under `snapshots/{commit}/`, with the sizes of their link targets.
    pub fn snapshot_files(&self, commit: &str) -> Vec<SnapshotFile> {
        let root = self.snapshot_dir(commit);
        let mut files = Vec::new();
        collect(&root, &root, &mut files);
        files
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<SnapshotFile>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let etag = std::fs::read_link(&path)
                .ok()
                .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            out.push(SnapshotFile {
                path: rel.to_string_lossy().replace('\\', "/"),
                size: meta.len(),
                etag,
            });
        }
    }
}
