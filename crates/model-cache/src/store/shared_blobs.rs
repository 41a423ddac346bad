//! `huggingface_hub` 2.x's shared blob store, read and cleaned as 2.4 does.
//!
//! With `hf_xet` installed, 2.4 keeps each Xet-backed file once for the whole cache:
//!
//! ```text
//! <cache>/blobs/.huggingface-shared-blobs      marker, exactly "1\n" (layout version 1)
//! <cache>/blobs/<h[..2]>/<h>                   the payload (h: the file's Xet hash)
//! <cache>/blobs/<h[..2]>/<h>.refs              one line per reference: `<repo folder>/blobs/<etag>`
//! <cache>/blobs/<h[..2]>/<h>.lock              the payload's lock (never removed)
//! <cache>/models--org--name/blobs/<etag>       a relative symlink to `../../blobs/<h[..2]>/<h>`
//! ```
//!
//! A repo's blob is then a link, and its name (the sha256 etag) is what the snapshot links and
//! what the bytes hash to; the payload's name is the Xet hash, never a content sha256. Sizes
//! count a payload once; each repo link to it is one of its names. Removing the last repo link
//! to a payload removes the payload and its manifest, under the payload's lock, after reading
//! which manifest lines still lead to it (the manifest is a hint: a line counts only while it is
//! a link to exactly this payload); a payload whose manifest is missing or unreadable is kept,
//! as 2.4 keeps it.

use std::path::{Path, PathBuf};

use super::{StoreError, StoredFile, atomic, layout};

/// The marker file of a shared blob store, and the layout version it must hold.
const MARKER: &str = ".huggingface-shared-blobs";
const LAYOUT: &str = "1\n";

/// `<root>/blobs` when it is a shared blob store: a real folder whose marker says layout 1.
pub fn store_dir(root: &Path) -> Option<PathBuf> {
    let dir = layout::shared_blobs_dir(root);
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return None;
    }
    let marker = dir.join(MARKER);
    let is_file = std::fs::symlink_metadata(&marker).is_ok_and(|m| m.is_file());
    (is_file && std::fs::read_to_string(&marker).is_ok_and(|t| t == LAYOUT)).then_some(dir)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The payload a repo's blob entry leads to, when the entry is a symlink into the store
/// (`../../blobs/<h[..2]>/<h>`).
pub fn payload_of(root: &Path, blob_entry: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(blob_entry).ok()?;
    let resolved = super::removal::lexical_normalize(&blob_entry.parent()?.join(target));
    let store = store_dir(root)?;
    let relative = resolved
        .strip_prefix(super::removal::lexical_normalize(&store))
        .ok()?;
    let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        [prefix, hash] if is_hex(hash, 64) && hash.starts_with(prefix) && prefix.len() == 2 => {
            Some(resolved)
        }
        _ => None,
    }
}

fn sibling(payload: &Path, suffix: &str) -> PathBuf {
    let name = payload
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    payload.with_file_name(format!("{name}{suffix}"))
}

/// Whether a manifest line names a repo blob entry: `<type>s--<name>/blobs/<etag>`.
fn is_reference(line: &str) -> bool {
    let parts: Vec<&str> = line.split('/').collect();
    let repo_folder = ["datasets--", "kernels--", "models--", "spaces--"]
        .iter()
        .any(|p| {
            parts
                .first()
                .is_some_and(|f| f.len() > p.len() && f.starts_with(p))
        });
    parts.len() == 3
        && repo_folder
        && parts[1] == "blobs"
        && !parts[2].is_empty()
        && !parts.iter().any(|p| *p == ".." || *p == ".")
}

/// The manifest's references that still lead to `payload`, sorted and each once; `None` when
/// the manifest is missing, not a regular file or unreadable.
fn valid_references(root: &Path, payload: &Path) -> Option<Vec<String>> {
    let manifest = sibling(payload, ".refs");
    if !std::fs::symlink_metadata(&manifest).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let text = std::fs::read_to_string(&manifest).ok()?;
    let mut valid: Vec<String> = text
        .lines()
        .filter(|line| is_reference(line))
        .filter(|line| payload_of(root, &root.join(line)).as_deref() == Some(payload))
        .map(str::to_string)
        .collect();
    valid.sort();
    valid.dedup();
    Some(valid)
}

/// Every payload of the store, with what the file system says of it.
pub fn payloads(root: &Path) -> Vec<(PathBuf, StoredFile)> {
    let Some(store) = store_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for prefix in std::fs::read_dir(&store).into_iter().flatten().flatten() {
        let name = prefix.file_name().to_string_lossy().into_owned();
        if !is_hex(&name, 2) || !prefix.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for entry in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let hash = entry.file_name().to_string_lossy().into_owned();
            if is_hex(&hash, 64)
                && entry.file_type().is_ok_and(|t| t.is_file())
                && let Ok(file) = StoredFile::read(&entry.path())
            {
                out.push((entry.path(), file));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// After repo links to `payload` were removed (or, in a dry run, would be: `going`), removes
/// the payload and its manifest when no valid reference is left, else rewrites the manifest
/// with the references that are; returns the bytes freed. Runs under the payload's lock (the
/// one 2.4 takes), waiting at most `wait`.
pub fn sweep(
    root: &Path,
    payload: &Path,
    going: &[PathBuf],
    dry_run: bool,
    wait: std::time::Duration,
) -> Result<u64, StoreError> {
    let size = std::fs::metadata(payload).map(|m| m.len()).unwrap_or(0);
    if dry_run {
        let Some(references) = valid_references(root, payload) else {
            return Ok(0);
        };
        let remaining = references
            .iter()
            .filter(|r| {
                !going.iter().any(|g| {
                    super::removal::lexical_normalize(&root.join(r))
                        == super::removal::lexical_normalize(g)
                })
            })
            .count();
        return Ok(if remaining == 0 { size } else { 0 });
    }
    let _lock = super::BlobLock::acquire(sibling(payload, ".lock"), wait)?;
    let Some(references) = valid_references(root, payload) else {
        tracing::info!(payload = %payload.display(), "kept a shared blob whose manifest cannot be read");
        return Ok(0);
    };
    let manifest = sibling(payload, ".refs");
    if references.is_empty() {
        std::fs::remove_file(payload).map_err(|e| StoreError::io("remove", payload, e))?;
        let _ = std::fs::remove_file(&manifest);
        tracing::info!(payload = %payload.display(), bytes = size, "removed a shared blob no repo uses");
        return Ok(size);
    }
    let content: String = references.iter().map(|r| format!("{r}\n")).collect();
    if std::fs::read_to_string(&manifest).ok().as_deref() != Some(content.as_str()) {
        atomic::write(&manifest, content.as_bytes())
            .map_err(|e| StoreError::io("write", &manifest, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o666));
        }
    }
    Ok(0)
}
