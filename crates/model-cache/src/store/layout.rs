//! The names of the Hugging Face cache layout, in one place: every path into a repo folder's
//! `blobs/`, `snapshots/`, `refs/` and `.no_exist/`, and into the cache's `.locks/`, is built
//! here (or by [`super::RepoCache`], which uses these). `scripts/test.sh` refuses the literal
//! names anywhere else in the engine.

use std::path::{Path, PathBuf};

/// `<repo folder>/blobs`.
pub fn blobs_dir(repo_dir: &Path) -> PathBuf {
    repo_dir.join("blobs")
}

/// `<repo folder>/blobs/<name>` (a blob, or a partial file).
pub fn blob_file(repo_dir: &Path, name: &str) -> PathBuf {
    blobs_dir(repo_dir).join(name)
}

/// `<repo folder>/snapshots`.
pub fn snapshots_dir(repo_dir: &Path) -> PathBuf {
    repo_dir.join("snapshots")
}

/// `<repo folder>/snapshots/<commit>`.
pub fn snapshot_dir(repo_dir: &Path, commit: &str) -> PathBuf {
    snapshots_dir(repo_dir).join(commit)
}

/// `<repo folder>/refs`.
pub fn refs_dir(repo_dir: &Path) -> PathBuf {
    repo_dir.join("refs")
}

/// `<repo folder>/.no_exist/<commit>`.
pub fn no_exist_dir(repo_dir: &Path, commit: &str) -> PathBuf {
    repo_dir.join(".no_exist").join(commit)
}

/// `<cache root>/.locks/<repo folder name>`.
pub fn locks_dir(root: &Path, folder: &str) -> PathBuf {
    root.join(".locks").join(folder)
}

/// `<cache root>/blobs`: `huggingface_hub` 2.x's shared blob store (see `store::shared_blobs`).
pub fn shared_blobs_dir(root: &Path) -> PathBuf {
    root.join("blobs")
}

/// The key of a blob in a team bucket's mirror of the hub-cache layout:
/// `{prefix}/models--org--name/blobs/{etag}` (no leading slash; `prefix` may be empty).
pub fn bucket_blob_key(prefix: &str, repo_folder: &str, etag: &str) -> String {
    bucket_key(prefix, &[repo_folder, "blobs", etag])
}

/// The key of a ref in a team bucket: `{prefix}/models--org--name/refs/{revision}`, a small
/// object holding the commit hash.
pub fn bucket_ref_key(prefix: &str, repo_folder: &str, revision: &str) -> String {
    bucket_key(prefix, &[repo_folder, "refs", revision])
}

/// The key of a commit's manifest in a team bucket:
/// `{prefix}/models--org--name/manifests/{commit}.json`, the files pushed at that commit with
/// their sizes and etags (what a member reads when the Hub cannot be reached).
pub fn bucket_manifest_key(prefix: &str, repo_folder: &str, commit: &str) -> String {
    bucket_key(
        prefix,
        &[repo_folder, "manifests", &format!("{commit}.json")],
    )
}

fn bucket_key(prefix: &str, parts: &[&str]) -> String {
    let prefix = prefix.trim_matches('/');
    let rest = parts.join("/");
    if prefix.is_empty() {
        rest
    } else {
        format!("{prefix}/{rest}")
    }
}
