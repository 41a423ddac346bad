//! The cache as a Hub: what the local mirror serves, in the Hub's own terms.
//!
//! A cached snapshot is turned into what the Hub's read routes describe: files with their etag
//! (the blob name: the sha256 of an LFS file's content, the git blob sha1 of a regular file),
//! size and git object id (for an LFS file, the id of its pointer file), and directories with
//! their git tree ids, computed from the entries below them as git does. The HTTP side
//! (`local-api`'s mirror) only words these as headers and JSON.
//!
//! Reads go through [`crate::engine::Engine::open_served`], which registers each one in the
//! in-flight list for as long as the file is open, so no removal (gc, evict, rm) takes a blob
//! a client is reading.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha1::{Digest, Sha1};

use crate::store::is_valid_etag;

/// Who may read a cached repo through the mirror without the mirror token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Known to be public and not gated (repo info said so when it was downloaded).
    Public,
    /// Private, gated, or not known to be public (found on disk, written by another tool):
    /// served only to holders of the mirror token.
    Restricted,
}

/// One cached file, as the mirror serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedFile {
    /// Its path in the repo (`/`-separated).
    pub path: String,
    /// The blob name: sha256 of the content for LFS files, git blob sha1 otherwise.
    pub etag: String,
    pub size: u64,
    /// Its snapshot path in the cache (a link to the blob), what a read opens.
    pub local: PathBuf,
}

impl ServedFile {
    /// Stored in LFS: its etag is a sha256 (a git sha1 has 40 hex digits, a sha256 64).
    pub fn is_lfs(&self) -> bool {
        self.etag.len() == 64
    }

    /// The git LFS pointer file the Hub keeps in git for an LFS file.
    fn pointer(&self) -> Option<String> {
        self.is_lfs().then(|| lfs_pointer(&self.etag, self.size))
    }

    /// Size of the LFS pointer file (`lfs.pointerSize` in listings).
    pub fn pointer_size(&self) -> Option<u64> {
        self.pointer().map(|p| p.len() as u64)
    }

    /// The git object id of the file as the repo's git tree holds it: the etag of a regular
    /// file, the blob id of the pointer of an LFS file (`oid` / `blobId` in listings).
    pub fn oid(&self) -> String {
        match self.pointer() {
            Some(pointer) => git_object_id("blob", pointer.as_bytes()),
            None => self.etag.clone(),
        }
    }
}

/// Whether `etag` is what the Hub names blobs by: a git sha1 (40 hex digits) or a sha256 (64).
fn is_hub_etag(etag: &str) -> bool {
    is_valid_etag(etag)
        && matches!(etag.len(), 40 | 64)
        && etag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The git LFS pointer file of content with this sha256 and size (what git holds in place of
/// an LFS file; its length is `lfs.pointerSize` in listings).
pub fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

/// A cached snapshot's files from the snapshot folder's listing: `(path, etag, size, local)`.
/// Entries whose etag is unknown or not a Hub hash (a copy instead of a link, a blob named by
/// another server's etag) are left out: the mirror could not give them the Hub's headers.
pub(crate) fn served_files(
    listing: impl IntoIterator<Item = (String, String, u64, PathBuf)>,
) -> Vec<ServedFile> {
    let mut files: Vec<ServedFile> = listing
        .into_iter()
        .filter(|(_, etag, _, _)| is_hub_etag(etag))
        .map(|(path, etag, size, local)| ServedFile {
            path,
            etag,
            size,
            local,
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// What an entry of a tree listing is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeItem {
    File(ServedFile),
    /// A folder, with its git tree id.
    Directory {
        path: String,
        oid: String,
    },
}

impl TreeItem {
    pub fn path(&self) -> &str {
        match self {
            TreeItem::File(file) => &file.path,
            TreeItem::Directory { path, .. } => path,
        }
    }
}

/// The entries of a tree listing of `files` under `under` (`""` for the repo root): the direct
/// children, or with `recursive` every file and folder below. Folders come with their git tree
/// id. `None` when `under` is neither the root nor a folder of the snapshot.
pub fn tree(files: &[ServedFile], under: &str, recursive: bool) -> Option<Vec<TreeItem>> {
    let under = under.trim_matches('/');
    let root = Folder::of(files);
    let folder = if under.is_empty() {
        &root
    } else {
        under
            .split('/')
            .try_fold(&root, |folder, name| folder.folders.get(name))?
    };
    let mut out = Vec::new();
    folder.list(under, recursive, &mut out);
    Some(out)
}

/// A folder of a snapshot, with what is directly inside it.
#[derive(Default)]
struct Folder<'a> {
    files: BTreeMap<&'a str, &'a ServedFile>,
    folders: BTreeMap<&'a str, Folder<'a>>,
}

impl<'a> Folder<'a> {
    fn of(files: &'a [ServedFile]) -> Folder<'a> {
        let mut root = Folder::default();
        for file in files {
            let mut parts: Vec<&str> = file.path.split('/').collect();
            let name = parts.pop().unwrap_or_default();
            let folder = parts.into_iter().fold(&mut root, |folder, part| {
                folder.folders.entry(part).or_default()
            });
            folder.files.insert(name, file);
        }
        root
    }

    /// The git tree id: entries sorted by name as git sorts them (a folder as if its name ended
    /// in `/`), each `mode name\0<20-byte id>`.
    fn oid(&self) -> String {
        let mut entries: Vec<(String, &str, Vec<u8>)> = Vec::new();
        for (name, file) in &self.files {
            let id = hex::decode(file.oid()).unwrap_or_default();
            entries.push((name.to_string(), "100644", id));
        }
        for (name, folder) in &self.folders {
            let id = hex::decode(folder.oid()).unwrap_or_default();
            entries.push((format!("{name}/"), "40000", id));
        }
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut body = Vec::new();
        for (key, mode, id) in entries {
            body.extend_from_slice(mode.as_bytes());
            body.push(b' ');
            body.extend_from_slice(key.trim_end_matches('/').as_bytes());
            body.push(0);
            body.extend_from_slice(&id);
        }
        git_object_id("tree", &body)
    }

    fn list(&self, prefix: &str, recursive: bool, out: &mut Vec<TreeItem>) {
        let join = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            }
        };
        for (name, folder) in &self.folders {
            let path = join(name);
            out.push(TreeItem::Directory {
                path: path.clone(),
                oid: folder.oid(),
            });
            if recursive {
                folder.list(&path, true, out);
            }
        }
        for file in self.files.values() {
            out.push(TreeItem::File((*file).clone()));
        }
    }
}

/// `sha1("{kind} {len}\0" + body)`, in hex: a git object id.
fn git_object_id(kind: &str, body: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(format!("{kind} {}\0", body.len()).as_bytes());
    sha1.update(body);
    hex::encode(sha1.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, etag: &str, size: u64) -> ServedFile {
        ServedFile {
            path: path.into(),
            etag: etag.into(),
            size,
            local: PathBuf::from(path),
        }
    }

    const SHA256: &str = "4cd855c0636b889c3fa2f5edc697bcb5946387ca7f76cd096c8994fa4df4c8e5";

    #[test]
    fn an_lfs_file_is_known_to_git_by_its_pointer() {
        let lfs = file("model.gguf", SHA256, 1234);
        assert!(lfs.is_lfs());
        let pointer =
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{SHA256}\nsize 1234\n");
        assert_eq!(lfs.pointer_size(), Some(pointer.len() as u64));
        // What `git hash-object` gives for the pointer file.
        assert_eq!(lfs.oid(), git_object_id("blob", pointer.as_bytes()));
        let regular = file("config.json", "0123456789abcdef0123456789abcdef01234567", 9);
        assert!(!regular.is_lfs());
        assert_eq!(regular.oid(), regular.etag);
        assert_eq!(regular.pointer_size(), None);
    }

    #[test]
    fn git_object_ids_are_what_git_computes() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_object_id("blob", b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // The empty tree.
        assert_eq!(
            git_object_id("tree", b""),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
    }

    #[test]
    fn a_tree_lists_children_or_everything_below() {
        let files = served_files([
            (
                "README.md".into(),
                "ce013625030ba8dba906f756967f9e9ca394464a".into(),
                6,
                "a".into(),
            ),
            ("sub/a.gguf".into(), SHA256.into(), 10, "b".into()),
            (
                "sub/deep/b.txt".into(),
                "ce013625030ba8dba906f756967f9e9ca394464a".into(),
                6,
                "c".into(),
            ),
            ("bad".into(), "not-an-etag".into(), 1, "d".into()),
        ]);
        assert_eq!(files.len(), 3, "an entry without a valid etag is left out");
        let paths = |items: Vec<TreeItem>| -> Vec<String> {
            items.iter().map(|i| i.path().to_string()).collect()
        };
        assert_eq!(
            paths(tree(&files, "", false).unwrap()),
            ["sub", "README.md"]
        );
        assert_eq!(
            paths(tree(&files, "", true).unwrap()),
            [
                "sub",
                "sub/deep",
                "sub/deep/b.txt",
                "sub/a.gguf",
                "README.md"
            ]
        );
        assert_eq!(
            paths(tree(&files, "sub/", false).unwrap()),
            ["sub/deep", "sub/a.gguf"]
        );
        assert!(tree(&files, "missing", false).is_none());
        assert!(
            tree(&files, "README.md", false).is_none(),
            "a file is not a folder"
        );
    }

    #[test]
    fn a_folder_id_is_the_git_tree_of_its_entries() {
        // A folder holding only `hello.txt` (blob `ce0136…`, the content "hello\n").
        let files = served_files([(
            "d/hello.txt".into(),
            "ce013625030ba8dba906f756967f9e9ca394464a".into(),
            6,
            "x".into(),
        )]);
        let items = tree(&files, "", false).unwrap();
        let TreeItem::Directory { oid, .. } = &items[0] else {
            panic!("a folder first")
        };
        // `git mktree` of `100644 blob ce0136…\thello.txt`.
        let mut body = b"100644 hello.txt\0".to_vec();
        body.extend(hex::decode("ce013625030ba8dba906f756967f9e9ca394464a").unwrap());
        assert_eq!(oid, &git_object_id("tree", &body));
    }
}
