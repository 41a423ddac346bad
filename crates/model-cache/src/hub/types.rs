//! Plain data returned by the Hub client.

use serde::{Deserialize, Serialize};

/// Access control of a repo: `false`, `"auto"` or `"manual"` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Gating {
    #[default]
    Open,
    Auto,
    Manual,
}

/// LFS identity of a file: the sha256 of its content and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lfs {
    pub sha256: String,
    pub size: u64,
}

/// A file of a repo as listed by repo info (`siblings`, asked with `blobs=true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    pub rfilename: String,
    pub size: Option<u64>,
    /// Git blob sha1.
    pub blob_id: Option<String>,
    pub lfs: Option<Lfs>,
}

/// Repo info (`GET /api/{type}s/{id}[/revision/{rev}]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoInfo {
    pub id: String,
    /// The 40-hex commit the revision points to.
    pub sha: String,
    pub siblings: Vec<Sibling>,
    pub private: bool,
    pub gated: Gating,
    /// ISO-8601 as sent by the Hub.
    pub last_modified: Option<String>,
}

/// File or directory, in a tree listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Directory,
}

/// One entry of a tree listing. `path` is relative to the repo root and untrusted: turn it into
/// a file system path only through [`crate::store::SafeRelPath`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    pub path: String,
    pub size: u64,
    /// Git blob (or tree) sha1.
    pub oid: String,
    pub lfs: Option<Lfs>,
    pub kind: EntryKind,
    /// The file's Xet hash, when the Hub stores it with Xet (`xetHash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xet_hash: Option<String>,
}

impl TreeEntry {
    /// The blob name (etag) this file gets in the cache: the sha256 for LFS files, the git sha1
    /// otherwise — what the Hub sends as `X-Linked-Etag` / `ETag`.
    pub fn etag(&self) -> &str {
        self.lfs.as_ref().map_or(&self.oid, |lfs| &lfs.sha256)
    }
}

/// What a `HEAD` on a `resolve` URL says about a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMetadata {
    /// The commit the revision resolved to (`X-Repo-Commit`).
    pub commit: String,
    /// Normalised etag (`W/` and quotes stripped): the blob file name in the cache.
    pub etag: String,
    /// Size in bytes (`X-Linked-Size`, else `Content-Length` of a non-redirect response).
    pub size: u64,
    /// Where to GET the bytes: the redirect `Location` (a CDN), or the resolve URL itself.
    pub download_url: String,
    /// Stored in LFS (`X-Linked-Etag` present): the etag is the content's sha256.
    pub is_lfs: bool,
    /// Expected sha256 of the content, for LFS files.
    pub sha256: Option<String>,
    /// Expected git blob sha1 (`sha1("blob {len}\0" + content)`), for regular files.
    pub git_sha1: Option<String>,
    /// Resolved (and so downloaded: redirects never downgrade) over `https` from the first
    /// request on. A file with no hash to check is kept only then. `false` for metadata saved by
    /// earlier versions.
    #[serde(default)]
    pub over_https: bool,
    /// Stored with Xet: the file can be rebuilt from chunks (see [`super::xet`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xet: Option<super::xet::XetFile>,
}

/// The start of a range (or whole-file) GET: status and validators are read, the body is left
/// to stream.
#[derive(Debug)]
pub struct RangeResponse {
    pub status: u16,
    /// `206` with a `Content-Range` starting where we asked. `false` means the server sent the
    /// whole file (it ignored `Range`, or `If-Range` no longer matched): start over from byte 0.
    pub partial: bool,
    /// `(first, last, total)` from `Content-Range: bytes first-last/total` (`last` inclusive).
    pub content_range: Option<(u64, u64, Option<u64>)>,
    /// Normalised `ETag` of the response, when sent.
    pub etag: Option<String>,
    /// `Content-Length` of the body, when sent.
    pub content_length: Option<u64>,
    /// Whether the body is in the compressed encoding a paired peer was asked for
    /// (`crate::peers::planes`): `content_range` names the file's bytes all the same.
    pub planes: bool,
    /// The body, to be read with `chunk()` or `bytes_stream()`.
    pub body: reqwest::Response,
}

/// `_normalize_etag`: strips a weak `W/` prefix and surrounding quotes.
pub fn normalize_etag(raw: &str) -> String {
    let raw = raw.trim();
    raw.strip_prefix("W/")
        .unwrap_or(raw)
        .trim_matches('"')
        .to_string()
}

pub(crate) fn is_hex(value: &str, len: usize) -> bool {
    value.len() == len && value.bytes().all(|b| b.is_ascii_hexdigit())
}
