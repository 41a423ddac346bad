//! An S3-compatible bucket as a team tier: a mirror of the hub-cache layout that members pull
//! from and push to.
//!
//! ```text
//! s3://<bucket>/<prefix>/
//! └── models--org--name/
//!     ├── blobs/<etag>        the file's bytes (sha256 for LFS files, git sha1 otherwise)
//!     ├── refs/<revision>     a small object: the 40-hex commit the revision is at
//!     └── manifests/<commit>.json   the files pushed at that commit: path, size, etag
//! ```
//!
//! Keys are built by `store::layout` like every other layout path. Nothing in the bucket is
//! trusted: a blob read from it is a download source like a mirror (`download::source`), and its
//! bytes are linked only when they hash to the Hub's etag; a ref read from it names a commit the
//! Hub is then asked about. Only when the Hub cannot be reached does a member go by the bucket
//! alone: the ref names the commit, the commit's manifest lists the files, and each blob is
//! checked against the hash it is stored under (the etag the Hub gave the member who pushed
//! it, after that member verified the bytes). A blob is pushed only after it was verified, with one `PUT` when
//! small and a multipart upload otherwise; the upload id and every acknowledged part's ETag are
//! kept in the index (`index::uploads`), so an upload killed halfway resumes at the next part.
//!
//! Credentials come from the edge (the usual AWS variables); the secret key and session token
//! are [`Token`]s, never printed. Without credentials requests are unsigned (a public bucket):
//! the client never asks a cloud metadata endpoint.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ObjectStoreExt, PutPayload, RetryConfig};

use crate::error::{Diagnostic, ErrorKind};
use crate::index::Index;
use crate::index::uploads::BucketUpload;
use crate::repo::RepoId;
use crate::secret::Token;
use crate::store::{is_commit_hash, layout};

/// S3's smallest part (but the last): blobs up to this size go in one `PUT`.
pub const PART_SIZE: u64 = 5 * 1024 * 1024;
/// How long a signed download URL is valid; a transfer renews it when refused.
const URL_LIFETIME: Duration = Duration::from_secs(3600);

/// Where the team bucket is and how to reach it, as the edge resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSettings {
    /// `s3://bucket/prefix` (the prefix may be empty).
    pub url: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`, a MinIO or R2 URL); AWS otherwise.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub credentials: Option<BucketCredentials>,
    /// Push verified downloads to the bucket (in the background).
    pub push: bool,
}

/// How a team bucket is reached, whichever bucket it is: what the environment says (the
/// settings name a bucket, never credentials).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketAccess {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub credentials: Option<BucketCredentials>,
}

/// AWS-style credentials; the secret parts never appear in `Debug` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketCredentials {
    pub access_key_id: String,
    pub secret_access_key: Token,
    pub session_token: Option<Token>,
}

/// Errors of the bucket; they name the bucket URL and key, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("`{url}` is not a bucket URL (expected s3://bucket/prefix)")]
    BadUrl { url: String },
    #[error("Cannot use the bucket `{url}`: {source}")]
    Client {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("The bucket `{url}` failed on `{key}`: {source}")]
    Request {
        url: String,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("Cannot read `{}` to push it: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` does not hold the bytes of blob `{etag}`; it is not pushed", path.display())]
    NotVerified {
        path: std::path::PathBuf,
        etag: String,
    },
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
}

impl Diagnostic for BucketError {
    fn kind(&self) -> ErrorKind {
        match self {
            BucketError::BadUrl { .. } => ErrorKind::InvalidInput,
            BucketError::Client { .. } | BucketError::Request { .. } => ErrorKind::Network,
            BucketError::Read { .. } => ErrorKind::Io,
            BucketError::NotVerified { .. } => ErrorKind::Integrity,
            BucketError::Index(e) => e.kind(),
        }
    }
}

/// The files a team pushed at one commit, as the Hub listed them to the member who pushed:
/// what a member goes by when the Hub cannot be reached. Members pushing other files of the
/// same commit (another quant) add theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub files: Vec<ManifestFile>,
}

/// One file of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestFile {
    /// The path in the repo.
    pub path: String,
    pub size: u64,
    /// The blob's name: the content's sha256 (64 hex) for LFS files, its git sha1 (40 hex)
    /// otherwise.
    pub etag: String,
}

impl Manifest {
    /// Adds or replaces the entries of `files` (by path), keeping the list sorted.
    pub fn merge(&mut self, files: impl IntoIterator<Item = ManifestFile>) {
        for file in files {
            match self.files.iter_mut().find(|f| f.path == file.path) {
                Some(found) => *found = file,
                None => self.files.push(file),
            }
        }
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
    }

    /// The entry of `path`, when its etag is a hash its bytes can be checked against.
    pub fn file(&self, path: &str) -> Option<&ManifestFile> {
        self.files
            .iter()
            .find(|f| f.path == path && crate::download::is_hex_digest(&f.etag))
    }
}

/// What a push did with one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The bucket already had an object of that size under the blob's key.
    AlreadyThere,
    /// One `PUT`.
    Whole,
    /// A multipart upload; `resumed` parts had been acknowledged by an earlier attempt.
    Multipart { parts: usize, resumed: usize },
}

/// A team bucket. Cheap to clone.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<AmazonS3>,
    url: String,
    prefix: String,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("url", &self.url).finish()
    }
}

impl PartialEq for Bucket {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for Bucket {}

impl Bucket {
    pub fn new(settings: &BucketSettings) -> Result<Bucket, BucketError> {
        let bad = || BucketError::BadUrl {
            url: settings.url.clone(),
        };
        let rest = settings.url.strip_prefix("s3://").ok_or_else(bad)?;
        let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if name.is_empty() {
            return Err(bad());
        }
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(name)
            .with_region(settings.region.as_deref().unwrap_or("us-east-1"))
            .with_retry(RetryConfig {
                max_retries: 2,
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        match &settings.credentials {
            Some(credentials) => {
                builder = builder
                    .with_access_key_id(&credentials.access_key_id)
                    .with_secret_access_key(credentials.secret_access_key.expose());
                if let Some(token) = &credentials.session_token {
                    builder = builder.with_token(token.expose());
                }
            }
            None => builder = builder.with_skip_signature(true),
        }
        let store = builder.build().map_err(|source| BucketError::Client {
            url: settings.url.clone(),
            source,
        })?;
        Ok(Bucket {
            store: Arc::new(store),
            url: settings.url.trim_end_matches('/').to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// `s3://bucket/prefix`, as sources and messages name the bucket.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn blob_key(&self, repo: &RepoId, etag: &str) -> ObjectPath {
        ObjectPath::from(layout::bucket_blob_key(
            &self.prefix,
            &repo.folder_name(),
            etag,
        ))
    }

    fn ref_key(&self, repo: &RepoId, revision: &str) -> ObjectPath {
        ObjectPath::from(layout::bucket_ref_key(
            &self.prefix,
            &repo.folder_name(),
            revision,
        ))
    }

    fn manifest_key(&self, repo: &RepoId, commit: &str) -> ObjectPath {
        ObjectPath::from(layout::bucket_manifest_key(
            &self.prefix,
            &repo.folder_name(),
            commit,
        ))
    }

    fn failed(&self, key: &ObjectPath, source: object_store::Error) -> BucketError {
        BucketError::Request {
            url: self.url.clone(),
            key: key.to_string(),
            source,
        }
    }

    /// The size of the bucket's copy of a blob, `None` when it has none.
    pub async fn blob_size(&self, repo: &RepoId, etag: &str) -> Result<Option<u64>, BucketError> {
        let key = self.blob_key(repo, etag);
        match self.store.head(&key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(self.failed(&key, source)),
        }
    }

    /// A signed URL a plain HTTP client can range-read the blob from (valid for an hour).
    pub async fn blob_url(&self, repo: &RepoId, etag: &str) -> Result<String, BucketError> {
        let key = self.blob_key(repo, etag);
        self.store
            .signed_url(reqwest::Method::GET, &key, URL_LIFETIME)
            .await
            .map(|url| url.to_string())
            .map_err(|source| self.failed(&key, source))
    }

    /// The commit the team's ref `revision` of `repo` is at, `None` when the bucket has no
    /// such ref (or holds something that is not a commit hash there).
    pub async fn read_ref(
        &self,
        repo: &RepoId,
        revision: &str,
    ) -> Result<Option<String>, BucketError> {
        let key = self.ref_key(repo, revision);
        let bytes = match self.store.get(&key).await {
            Ok(found) => found.bytes().await.map_err(|e| self.failed(&key, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(self.failed(&key, source)),
        };
        let commit = String::from_utf8_lossy(&bytes).trim().to_string();
        if !is_commit_hash(&commit) {
            tracing::warn!(bucket = %self.url, key = %key, "The bucket's ref is not a commit hash; ignored");
            return Ok(None);
        }
        Ok(Some(commit))
    }

    /// The files the team pushed at `commit`, `None` when the bucket has no manifest for it (or
    /// one that cannot be read as a manifest, which is logged and passed over).
    pub async fn read_manifest(
        &self,
        repo: &RepoId,
        commit: &str,
    ) -> Result<Option<Manifest>, BucketError> {
        if !is_commit_hash(commit) {
            return Ok(None);
        }
        let key = self.manifest_key(repo, commit);
        let bytes = match self.store.get(&key).await {
            Ok(found) => found.bytes().await.map_err(|e| self.failed(&key, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(self.failed(&key, source)),
        };
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(manifest) => Ok(Some(manifest)),
            Err(error) => {
                tracing::warn!(bucket = %self.url, key = %key, %error, "The bucket's manifest cannot be read; ignored");
                Ok(None)
            }
        }
    }

    /// Adds `files` to the manifest of `commit` (read, merged, written back).
    pub async fn add_to_manifest(
        &self,
        repo: &RepoId,
        commit: &str,
        files: Vec<ManifestFile>,
    ) -> Result<(), BucketError> {
        let mut manifest = self.read_manifest(repo, commit).await?.unwrap_or_default();
        let before = manifest.clone();
        manifest.merge(files);
        if manifest == before {
            return Ok(());
        }
        let key = self.manifest_key(repo, commit);
        let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        self.store
            .put(&key, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| self.failed(&key, source))
    }

    /// Moves the team's ref `revision` of `repo` to `commit`.
    pub async fn write_ref(
        &self,
        repo: &RepoId,
        revision: &str,
        commit: &str,
    ) -> Result<(), BucketError> {
        let key = self.ref_key(repo, revision);
        self.store
            .put(&key, PutPayload::from(commit.as_bytes().to_vec()))
            .await
            .map(|_| ())
            .map_err(|source| self.failed(&key, source))
    }

    /// Pushes the verified blob at `path` (`size` bytes) under `etag`: nothing when the bucket
    /// has it, one `PUT` up to [`PART_SIZE`], else a multipart upload resumed from the parts
    /// the index recorded. `progress(done, parts)` is called after each part.
    pub async fn push_blob(
        &self,
        index: &Index,
        repo: &RepoId,
        etag: &str,
        path: &Path,
        size: u64,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<Pushed, BucketError> {
        if self.blob_size(repo, etag).await? == Some(size) {
            return Ok(Pushed::AlreadyThere);
        }
        let key = self.blob_key(repo, etag);
        if size <= PART_SIZE {
            let bytes = read_range(path, 0, size).await?;
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|source| self.failed(&key, source))?;
            return Ok(Pushed::Whole);
        }
        let record_key = format!("{}/{}", self.url, key);
        let parts = size.div_ceil(PART_SIZE) as usize;
        let mut upload = match index.bucket_upload(&record_key)? {
            Some(found) if found.etag == etag && found.part_size == PART_SIZE => found,
            _ => {
                let upload_id = self
                    .store
                    .create_multipart(&key)
                    .await
                    .map_err(|source| self.failed(&key, source))?;
                let upload = BucketUpload {
                    key: record_key.clone(),
                    etag: etag.to_string(),
                    upload_id,
                    part_size: PART_SIZE,
                    parts: Vec::new(),
                };
                index.save_bucket_upload(&upload)?;
                upload
            }
        };
        let resumed = upload.parts.len().min(parts);
        if resumed > 0 {
            tracing::info!(bucket = %self.url, key = %key, resumed, parts, "Resuming a multipart upload");
        }
        for part in resumed..parts {
            let start = part as u64 * PART_SIZE;
            let bytes = read_range(path, start, (size - start).min(PART_SIZE)).await?;
            let id = self
                .store
                .put_part(&key, &upload.upload_id, part, PutPayload::from(bytes))
                .await
                .map_err(|source| self.failed(&key, source))?;
            upload.parts.truncate(part);
            upload.parts.push(id.content_id);
            index.save_bucket_upload(&upload)?;
            progress(part + 1, parts);
        }
        let ids = upload
            .parts
            .iter()
            .map(|content_id| PartId {
                content_id: content_id.clone(),
            })
            .collect();
        self.store
            .complete_multipart(&key, &upload.upload_id, ids)
            .await
            .map_err(|source| self.failed(&key, source))?;
        index.forget_bucket_upload(&record_key)?;
        Ok(Pushed::Multipart { parts, resumed })
    }
}

async fn read_range(path: &Path, start: u64, len: u64) -> Result<Vec<u8>, BucketError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&owned)?;
        file.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0; len as usize];
        file.read_exact(&mut buf)?;
        Ok(buf)
    })
    .await
    .map_err(|e| BucketError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?
    .map_err(|source| BucketError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_mirror_the_hub_cache_layout() {
        let bucket = Bucket::new(&BucketSettings {
            url: "s3://team/models/".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: None,
            credentials: None,
            push: false,
        })
        .unwrap();
        let repo: RepoId = "org/name".parse().unwrap();
        assert_eq!(
            bucket.blob_key(&repo, "abc").to_string(),
            "models/models--org--name/blobs/abc"
        );
        assert_eq!(
            bucket.ref_key(&repo, "main").to_string(),
            "models/models--org--name/refs/main"
        );
        assert!(matches!(
            Bucket::new(&BucketSettings {
                url: "team/models".into(),
                endpoint: None,
                region: None,
                credentials: None,
                push: false,
            }),
            Err(BucketError::BadUrl { .. })
        ));
    }

    #[test]
    fn credentials_are_not_printed() {
        let credentials = BucketCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Token::new("wJalrXUtnFEMIsecret").unwrap(),
            session_token: None,
        };
        assert!(!format!("{credentials:?}").contains("wJalrXUtnFEMIsecret"));
    }
}
