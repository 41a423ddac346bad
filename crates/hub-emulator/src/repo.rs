//! Repositories, revisions and files as the emulator stores them.
//!
//! A [`Repo`] holds commits (each a full file list), branches, tags and `refs/pr/N` refs. Files
//! are [`RepoFile`]s whose body is either small bytes in memory or a generated
//! [`VirtualFile`](crate::generate::VirtualFile). Whether a file is stored in LFS follows the
//! Hub's default `.gitattributes`: by extension, or when larger than 10 MB. File hashes are
//! computed once, lazily, off the async threads, and shared by every commit holding the file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::generate::VirtualFile;

/// Files larger than this are stored in LFS whatever their extension (the Hub's limit).
pub const LFS_THRESHOLD: u64 = 10 * 1000 * 1000;

/// Extensions the Hub's default `.gitattributes` routes to LFS.
const LFS_EXTENSIONS: &[&str] = &[
    "7z",
    "arrow",
    "bin",
    "bz2",
    "ckpt",
    "ftz",
    "gguf",
    "gz",
    "h5",
    "joblib",
    "mlmodel",
    "model",
    "msgpack",
    "npy",
    "npz",
    "onnx",
    "ot",
    "parquet",
    "pb",
    "pickle",
    "pkl",
    "pt",
    "pth",
    "rar",
    "safetensors",
    "tar",
    "tflite",
    "tgz",
    "wasm",
    "xz",
    "zip",
    "zst",
];

/// Whether the Hub would store a file with this path and size in LFS.
pub fn is_lfs(path: &str, size: u64) -> bool {
    if size > LFS_THRESHOLD {
        return true;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| LFS_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// The kind of a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RepoKind {
    /// `/api/models`, no URL prefix.
    Model,
    /// `/api/datasets`, URL prefix `datasets/`.
    Dataset,
    /// `/api/spaces`, URL prefix `spaces/`.
    Space,
}

impl RepoKind {
    /// Plural used in API paths (`models`).
    pub fn plural(self) -> &'static str {
        match self {
            Self::Model => "models",
            Self::Dataset => "datasets",
            Self::Space => "spaces",
        }
    }

    /// Prefix of `resolve` URLs (`""`, `datasets/`, `spaces/`).
    pub fn url_prefix(self) -> &'static str {
        match self {
            Self::Model => "",
            Self::Dataset => "datasets/",
            Self::Space => "spaces/",
        }
    }

    /// Parses the plural used in API paths.
    pub fn from_plural(s: &str) -> Option<Self> {
        match s {
            "models" => Some(Self::Model),
            "datasets" => Some(Self::Dataset),
            "spaces" => Some(Self::Space),
            _ => None,
        }
    }
}

/// Gating mode of a repo (`gated` in repo info).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Access granted automatically on request.
    Auto,
    /// Access granted by the authors.
    Manual,
}

impl Gate {
    /// The JSON value of `gated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Manual => "manual",
        }
    }
}

/// The bytes of a file.
#[derive(Clone, Debug)]
pub enum FileBody {
    /// Bytes held in memory.
    Memory(Bytes),
    /// Generated content.
    Virtual(VirtualFile),
    /// A real file on disk (from `--repo-dir`), read on demand.
    Disk(Arc<DiskFile>),
}

/// An open file on disk and its size.
#[derive(Debug)]
pub struct DiskFile {
    /// Where the file is.
    pub path: PathBuf,
    file: std::fs::File,
    size: u64,
}

impl DiskFile {
    /// Opens a file.
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let file = std::fs::File::open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self { path, file, size })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        use std::os::unix::fs::FileExt;
        let want = (self.size.saturating_sub(offset)).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < want {
            match self
                .file
                .read_at(&mut buf[done..want], offset + done as u64)
            {
                Ok(0) | Err(_) => break,
                Ok(n) => done += n,
            }
        }
        done
    }
}

impl FileBody {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Self::Memory(b) => b.len() as u64,
            Self::Virtual(v) => v.size(),
            Self::Disk(d) => d.size,
        }
    }

    /// Fills `buf` from `offset`; returns the bytes written (short only at the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        match self {
            Self::Memory(b) => {
                if offset >= b.len() as u64 {
                    return 0;
                }
                let start = offset as usize;
                let n = (b.len() - start).min(buf.len());
                buf[..n].copy_from_slice(&b[start..start + n]);
                n
            }
            Self::Virtual(v) => v.read_at(offset, buf),
            Self::Disk(d) => d.read_at(offset, buf),
        }
    }

    /// The whole content (for small files and tests).
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            Self::Memory(b) => b.to_vec(),
            Self::Virtual(v) => v.to_vec(),
            Self::Disk(d) => {
                let mut v = vec![0u8; d.size as usize];
                let n = d.read_at(0, &mut v);
                v.truncate(n);
                v
            }
        }
    }

    /// A stable identifier of the content, cheap for generated files.
    pub fn content_id(&self) -> String {
        match self {
            Self::Memory(b) => hex::encode(Sha256::digest(b)),
            Self::Virtual(v) => v.content_id(),
            Self::Disk(d) => {
                let mut h = Sha256::new();
                h.update(d.path.to_string_lossy().as_bytes());
                h.update(d.size.to_le_bytes());
                hex::encode(h.finalize())
            }
        }
    }

    /// The same file with different bytes and the same size; used for "content changed
    /// upstream".
    pub fn mutated(&self, generation: u64) -> Self {
        match self {
            Self::Memory(b) => {
                let mut v = b.to_vec();
                let marker = format!("\n# changed upstream ({generation})\n");
                v.extend_from_slice(marker.as_bytes());
                Self::Memory(v.into())
            }
            Self::Virtual(v) => {
                Self::Virtual(v.with_seed(v.seed() ^ generation.wrapping_mul(0x9E37_79B9)))
            }
            // A real file cannot be rewritten; its changed version is generated bytes of the
            // same size.
            Self::Disk(d) => Self::Virtual(VirtualFile::random(d.size, generation)),
        }
    }
}

impl From<Vec<u8>> for FileBody {
    fn from(v: Vec<u8>) -> Self {
        Self::Memory(v.into())
    }
}
impl From<&[u8]> for FileBody {
    fn from(v: &[u8]) -> Self {
        Self::Memory(Bytes::copy_from_slice(v))
    }
}
impl From<String> for FileBody {
    fn from(v: String) -> Self {
        Self::Memory(v.into())
    }
}
impl From<&str> for FileBody {
    fn from(v: &str) -> Self {
        Self::Memory(Bytes::copy_from_slice(v.as_bytes()))
    }
}
impl From<VirtualFile> for FileBody {
    fn from(v: VirtualFile) -> Self {
        Self::Virtual(v)
    }
}

/// The hashes the Hub publishes for a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHashes {
    /// The git blob id: sha1 of the content for git files, of the LFS pointer for LFS files.
    /// This is `ETag`, `blobId` and the tree `oid`.
    pub git_oid: String,
    /// sha256 of the content (`X-Linked-Etag`, `lfs.oid`, `lfs.sha256`).
    pub sha256: String,
    /// Size of the LFS pointer file (0 for git files).
    pub pointer_size: u64,
}

/// The git blob sha1 of `content`: `sha1("blob {len}\0" + content)`.
pub fn git_blob_sha1(content: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    hex::encode(h.finalize())
}

/// The LFS pointer file for content with this sha256 and size.
pub fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

/// Where hashes of large generated files are kept between runs.
#[derive(Clone, Debug, Default)]
pub struct HashCache {
    /// Directory for `<content id>.sha256` files; `None` keeps hashes in memory only.
    pub dir: Option<PathBuf>,
}

/// Generated files at least this large get their hashes cached on disk.
const DISK_CACHE_MIN: u64 = 32 << 20;

impl HashCache {
    fn path(&self, body: &FileBody) -> Option<PathBuf> {
        match (body, &self.dir) {
            (FileBody::Virtual(v), Some(dir)) if v.size() >= DISK_CACHE_MIN => {
                Some(dir.join(format!("{}.sha256", v.content_id())))
            }
            _ => None,
        }
    }

    fn load(&self, body: &FileBody) -> Option<String> {
        let text = std::fs::read_to_string(self.path(body)?).ok()?;
        let text = text.trim();
        (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| text.to_string())
    }

    fn store(&self, body: &FileBody, sha256: &str) {
        let Some(path) = self.path(body) else { return };
        if let Some(dir) = path.parent()
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(path = %dir.display(), error = %e, "Cannot create the hash cache folder");
            return;
        }
        // Written to a temporary name and renamed, so a concurrent reader never sees half a hash.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, sha256)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// Hashes `body` (sha256 always, git sha1 too for git files). Runs for seconds on gigabytes:
/// call it off the async threads.
pub fn compute_hashes(body: &FileBody, lfs: bool, cache: &HashCache) -> FileHashes {
    let size = body.size();
    let cached = if lfs { cache.load(body) } else { None };
    let sha256 = match cached {
        Some(s) => s,
        None => {
            let mut sha = Sha256::new();
            let mut git = Sha1::new();
            git.update(format!("blob {size}\0").as_bytes());
            let mut buf = vec![0u8; 1 << 20];
            let mut off = 0u64;
            while off < size {
                let n = body.read_at(off, &mut buf);
                sha.update(&buf[..n]);
                if !lfs {
                    git.update(&buf[..n]);
                }
                off += n as u64;
            }
            let s = hex::encode(sha.finalize());
            if lfs {
                cache.store(body, &s);
            } else {
                return FileHashes {
                    git_oid: hex::encode(git.finalize()),
                    sha256: s,
                    pointer_size: 0,
                };
            }
            s
        }
    };
    let pointer = lfs_pointer(&sha256, size);
    FileHashes {
        git_oid: git_blob_sha1(pointer.as_bytes()),
        sha256,
        pointer_size: pointer.len() as u64,
    }
}

/// A file at some path of a commit.
#[derive(Debug)]
pub struct RepoFile {
    /// Path relative to the repo root (`/`-separated).
    pub path: String,
    /// Content.
    pub body: FileBody,
    /// Whether the file is stored in LFS (served through the CDN).
    pub lfs: bool,
    hashes: tokio::sync::OnceCell<FileHashes>,
    /// The Xet hash, once the file was stored in the emulator's CAS (feature `xet`).
    xet_hash: std::sync::OnceLock<String>,
}

impl RepoFile {
    /// A file; LFS is decided by [`is_lfs`].
    pub fn new(path: impl Into<String>, body: impl Into<FileBody>) -> Self {
        let path = path.into();
        let body = body.into();
        let lfs = is_lfs(&path, body.size());
        Self::with_lfs(path, body, lfs)
    }

    /// A file with LFS storage chosen explicitly.
    pub fn with_lfs(path: impl Into<String>, body: impl Into<FileBody>, lfs: bool) -> Self {
        let body = body.into();
        let file = Self {
            path: path.into(),
            body,
            lfs,
            hashes: tokio::sync::OnceCell::new(),
            xet_hash: std::sync::OnceLock::new(),
        };
        // Small in-memory files are hashed at once: it costs nothing and keeps HEADs cheap.
        if let FileBody::Memory(b) = &file.body
            && b.len() < (1 << 20)
        {
            let _ = file
                .hashes
                .set(compute_hashes(&file.body, lfs, &HashCache::default()));
        }
        file
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.body.size()
    }

    /// The file's Xet hash (64 hex), once the emulator's CAS holds the file: only LFS files of
    /// repos marked [`Repo::xet`], and only with the feature `xet`.
    pub fn xet_hash(&self) -> Option<&str> {
        self.xet_hash.get().map(String::as_str)
    }

    /// Records the Xet hash the CAS gave this file's content.
    #[cfg_attr(
        not(feature = "xet"),
        expect(dead_code, reason = "only the Xet CAS records hashes")
    )]
    pub(crate) fn set_xet_hash(&self, hash: String) {
        let _ = self.xet_hash.set(hash);
    }

    /// The hashes if already computed.
    pub fn hashes_if_ready(&self) -> Option<&FileHashes> {
        self.hashes.get()
    }

    /// The hashes, computed on first use on a blocking thread and then kept.
    pub async fn hashes(self: &Arc<Self>, cache: &HashCache) -> FileHashes {
        let me = Arc::clone(self);
        let cache = cache.clone();
        self.hashes
            .get_or_init(|| async move {
                let started = std::time::Instant::now();
                let body = me.body.clone();
                let lfs = me.lfs;
                let h = tokio::task::spawn_blocking(move || compute_hashes(&body, lfs, &cache))
                    .await
                    .expect("hashing task panicked");
                if me.size() >= DISK_CACHE_MIN {
                    tracing::info!(path = %me.path, size = me.size(), elapsed_ms = started.elapsed().as_millis() as u64, "Hashed generated file");
                }
                h
            })
            .await
            .clone()
    }

    /// The hashes, computed on this thread if needed (for sync callers).
    pub fn hashes_blocking(&self, cache: &HashCache) -> FileHashes {
        if let Some(h) = self.hashes.get() {
            return h.clone();
        }
        let h = compute_hashes(&self.body, self.lfs, cache);
        let _ = self.hashes.set(h.clone());
        h
    }

    /// The `ETag` value a download of this file is named by (sha256 for LFS, git sha1
    /// otherwise), if the hashes are known.
    pub fn etag_if_ready(&self) -> Option<String> {
        self.hashes.get().map(|h| {
            if self.lfs {
                h.sha256.clone()
            } else {
                h.git_oid.clone()
            }
        })
    }
}

/// A commit: a complete file list.
#[derive(Debug)]
pub struct Commit {
    /// 40-hex commit id.
    pub sha: String,
    /// Parent commit, if any.
    pub parent: Option<String>,
    /// Commit title.
    pub title: String,
    /// ISO-8601 date (`2024-01-01T00:00:00.000Z`).
    pub date: String,
    /// Files by path.
    pub files: BTreeMap<String, Arc<RepoFile>>,
}

/// A change applied by a new commit.
#[derive(Clone, Debug)]
pub enum FileChange {
    /// Add or replace a file.
    Put(String, FileBody),
    /// Add or replace a file with explicit LFS storage.
    PutWithLfs(String, FileBody, bool),
    /// Remove a file.
    Delete(String),
}

impl FileChange {
    /// Add or replace a file.
    pub fn put(path: impl Into<String>, body: impl Into<FileBody>) -> Self {
        Self::Put(path.into(), body.into())
    }
}

/// A repository.
#[derive(Debug)]
pub struct Repo {
    /// Kind.
    pub kind: RepoKind,
    /// `namespace/name` (or a legacy single segment).
    pub id: String,
    /// Private repos are invisible to tokens without access.
    pub private: bool,
    /// Gated repos serve files only to tokens in their allow-list.
    pub gated: Option<Gate>,
    /// Commits by sha.
    pub commits: HashMap<String, Arc<Commit>>,
    /// Branch name to commit sha.
    pub branches: BTreeMap<String, String>,
    /// Tag name to commit sha.
    pub tags: BTreeMap<String, String>,
    /// Pull request number to commit sha (`refs/pr/N`).
    pub pull_requests: BTreeMap<u32, String>,
    /// Downloads the model search reports and sorts by.
    pub downloads: u64,
    /// Likes the model search reports and sorts by.
    pub likes: u64,
    /// Whether the repo is stored with Xet: with the feature `xet`, its LFS files are put in
    /// the emulator's CAS and the Hub sends their Xet metadata (`X-Xet-Hash`, the `xet-auth`
    /// link, `xetHash` in listings). Without the feature, or when false, the repo is served as
    /// plain LFS.
    pub xet: bool,
    clock: u64,
}

/// Seconds since the epoch of 2024-01-01T00:00:00Z; commit dates count up from it.
const EPOCH_2024: u64 = 1_704_067_200;

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SS.000Z`.
pub fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Repo {
    /// An empty repo (no commits yet).
    pub fn new(kind: RepoKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
            private: false,
            gated: None,
            downloads: 0,
            likes: 0,
            xet: false,
            commits: HashMap::new(),
            branches: BTreeMap::new(),
            tags: BTreeMap::new(),
            pull_requests: BTreeMap::new(),
            clock: 0,
        }
    }

    /// The same repo marked as stored with Xet (see [`Repo::xet`]).
    pub fn with_xet(mut self) -> Self {
        self.xet = true;
        self
    }

    /// Every LFS file of every commit (each file once, in commit order then path order).
    pub fn lfs_files(&self) -> Vec<Arc<RepoFile>> {
        let mut commits: Vec<&Arc<Commit>> = self.commits.values().collect();
        commits.sort_by(|a, b| a.date.cmp(&b.date).then_with(|| a.sha.cmp(&b.sha)));
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for c in commits {
            for f in c.files.values().filter(|f| f.lfs) {
                if seen.insert(Arc::as_ptr(f)) {
                    out.push(Arc::clone(f));
                }
            }
        }
        out
    }

    /// `namespace` part of the id, if any.
    pub fn author(&self) -> Option<&str> {
        self.id.split_once('/').map(|(a, _)| a)
    }

    /// Creates a commit with `changes` on top of `parent` (or an empty tree) and returns its
    /// sha. No ref is moved.
    pub fn commit_on(
        &mut self,
        parent: Option<&str>,
        title: &str,
        changes: Vec<FileChange>,
    ) -> String {
        let mut files = parent
            .and_then(|p| self.commits.get(p))
            .map(|c| c.files.clone())
            .unwrap_or_default();
        for change in changes {
            match change {
                FileChange::Put(path, body) => {
                    let f = RepoFile::new(path.clone(), body);
                    files.insert(path, Arc::new(f));
                }
                FileChange::PutWithLfs(path, body, lfs) => {
                    let f = RepoFile::with_lfs(path.clone(), body, lfs);
                    files.insert(path, Arc::new(f));
                }
                FileChange::Delete(path) => {
                    files.remove(&path);
                }
            }
        }
        self.clock += 1;
        let date = iso8601(EPOCH_2024 + self.clock * 3600);
        // Commit ids are derived from the content identity, so the same catalog gives the same
        // shas on every run (tests and caches can rely on them).
        let mut h = Sha1::new();
        h.update(
            format!(
                "{}\0{}\0{}\0{}\0",
                self.kind.plural(),
                self.id,
                parent.unwrap_or(""),
                title
            )
            .as_bytes(),
        );
        h.update(date.as_bytes());
        for (path, f) in &files {
            h.update(path.as_bytes());
            h.update([0]);
            h.update(f.body.content_id().as_bytes());
            h.update([u8::from(f.lfs)]);
        }
        let sha = hex::encode(h.finalize());
        self.commits.insert(
            sha.clone(),
            Arc::new(Commit {
                sha: sha.clone(),
                parent: parent.map(str::to_string),
                title: title.to_string(),
                date,
                files,
            }),
        );
        sha
    }

    /// Commits `changes` on top of `branch` (created if missing) and moves the branch.
    pub fn commit(&mut self, branch: &str, title: &str, changes: Vec<FileChange>) -> String {
        let parent = self.branches.get(branch).cloned();
        let sha = self.commit_on(parent.as_deref(), title, changes);
        self.branches.insert(branch.to_string(), sha.clone());
        sha
    }

    /// Resolves a revision: a branch, a tag, a full commit sha, `refs/pr/N`, `refs/heads/X`,
    /// `refs/tags/X`, or `HEAD` (the default branch, `main`, as on the Hub: `@huggingface/hub`
    /// asks for it by default).
    pub fn resolve(&self, revision: &str) -> Option<Arc<Commit>> {
        let revision = if revision == "HEAD" { "main" } else { revision };
        let sha = if let Some(c) = self.commits.get(revision) {
            return Some(Arc::clone(c));
        } else if let Some(n) = revision.strip_prefix("refs/pr/") {
            n.parse().ok().and_then(|n: u32| self.pull_requests.get(&n))
        } else if let Some(b) = revision.strip_prefix("refs/heads/") {
            self.branches.get(b)
        } else if let Some(t) = revision.strip_prefix("refs/tags/") {
            self.tags.get(t)
        } else {
            self.branches
                .get(revision)
                .or_else(|| self.tags.get(revision))
        }?;
        self.commits.get(sha).cloned()
    }

    /// The head of `main`.
    pub fn main(&self) -> Option<Arc<Commit>> {
        self.resolve("main")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_sha1_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_sha1(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(
            git_blob_sha1(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }

    #[test]
    fn lfs_by_extension_and_size() {
        assert!(is_lfs("a/model.gguf", 10));
        assert!(is_lfs("x.SAFETENSORS", 10));
        assert!(!is_lfs("README.md", 10));
        assert!(is_lfs("big.txt", LFS_THRESHOLD + 1));
    }

    #[test]
    fn revisions_resolve() {
        let mut r = Repo::new(RepoKind::Model, "a/b");
        let c1 = r.commit("main", "one", vec![FileChange::put("a.txt", "1")]);
        r.tags.insert("v1.0".into(), c1.clone());
        let c2 = r.commit("main", "two", vec![FileChange::put("a.txt", "2")]);
        r.pull_requests.insert(1, c1.clone());
        assert_ne!(c1, c2);
        assert_eq!(r.resolve("main").unwrap().sha, c2);
        assert_eq!(r.resolve("v1.0").unwrap().sha, c1);
        assert_eq!(r.resolve("refs/pr/1").unwrap().sha, c1);
        assert_eq!(r.resolve(&c1).unwrap().sha, c1);
        assert!(r.resolve("nope").is_none());
        assert_eq!(iso8601(EPOCH_2024), "2024-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(EPOCH_2024 + 86_400 * 60 + 3661),
            "2024-03-01T01:01:01.000Z"
        );
    }
}
