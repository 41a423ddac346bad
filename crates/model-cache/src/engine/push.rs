//! Pushing a cached revision to the team bucket by hand (`mcache push`): every blob checked
//! against its name first, then uploaded (multipart uploads resumed), then listed in the
//! commit's manifest, then the ref moved.

use serde::Serialize;

use super::{Engine, EngineError};
use crate::bucket::{BucketError, Pushed};
use crate::hash::{HashAlgorithm, hash_file_blocking};
use crate::repo::RepoId;
use crate::store::is_commit_hash;

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PushReport {
    pub repo: String,
    pub revision: String,
    pub commit: String,
    /// Files uploaded now.
    pub pushed: usize,
    /// Files the bucket already had.
    pub already_there: usize,
    /// Bytes of the files uploaded now.
    pub bytes: u64,
    /// Parts an earlier, interrupted upload had already sent.
    pub resumed_parts: usize,
}

impl Engine {
    /// Pushes the cached `revision` of `repo` to the team bucket; `progress(path, part, parts)`
    /// is called after each part of a multipart upload.
    pub async fn push(
        &self,
        repo: &RepoId,
        revision: &str,
        progress: &(dyn Fn(&str, usize, usize) + Send + Sync),
    ) -> Result<PushReport, EngineError> {
        let bucket = self
            .inner
            .downloader
            .bucket()
            .ok_or(EngineError::NoBucket)?
            .clone();
        let cache = self.inner.cache.repo(repo);
        let commit = cache
            .cached_commit(revision)
            .ok_or_else(|| EngineError::NotCached {
                repo: repo.to_string(),
            })?;
        let mut report = PushReport {
            repo: repo.to_string(),
            revision: revision.to_string(),
            commit: commit.clone(),
            ..PushReport::default()
        };
        let mut manifest = Vec::new();
        for file in cache.snapshot_files(&commit) {
            let blob = cache.blob_path(&file.etag);
            let algorithm = if file.etag.len() == 64 {
                HashAlgorithm::Sha256
            } else {
                HashAlgorithm::GitSha1
            };
            let (path, size) = (blob.clone(), file.size);
            let actual =
                tokio::task::spawn_blocking(move || hash_file_blocking(&path, algorithm, size))
                    .await
                    .map_err(|e| BucketError::Read {
                        path: blob.clone(),
                        source: std::io::Error::other(e),
                    })?
                    .map_err(|source| BucketError::Read {
                        path: blob.clone(),
                        source,
                    })?;
            if !actual.eq_ignore_ascii_case(&file.etag) {
                return Err(BucketError::NotVerified {
                    path: blob,
                    etag: file.etag,
                }
                .into());
            }
            let name = file.path.clone();
            manifest.push(crate::bucket::ManifestFile {
                path: file.path.clone(),
                size: file.size,
                etag: file.etag.clone(),
            });
            let pushed = bucket
                .push_blob(
                    &self.inner.index,
                    repo,
                    &file.etag,
                    &blob,
                    file.size,
                    &|part, parts| progress(&name, part, parts),
                )
                .await?;
            match pushed {
                Pushed::AlreadyThere => report.already_there += 1,
                Pushed::Whole => {
                    report.pushed += 1;
                    report.bytes += file.size;
                }
                Pushed::Multipart { resumed, .. } => {
                    report.pushed += 1;
                    report.bytes += file.size;
                    report.resumed_parts += resumed;
                }
            }
        }
        bucket.add_to_manifest(repo, &commit, manifest).await?;
        if !is_commit_hash(revision) {
            bucket.write_ref(repo, revision, &commit).await?;
        }
        Ok(report)
    }
}
