//! The set of repos the emulator serves, shared by both listeners and changeable at run time.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::repo::{
    Commit, DiskFile, FileBody, FileChange, FileHashes, HashCache, Repo, RepoFile, RepoKind,
};

/// A catalog change that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No such repo.
    #[error("Repo `{kind}/{id}` does not exist in the emulator")]
    RepoNotFound {
        /// Plural kind.
        kind: &'static str,
        /// Repo id.
        id: String,
    },
    /// No such branch.
    #[error("Branch `{branch}` does not exist in `{id}`")]
    BranchNotFound {
        /// Repo id.
        id: String,
        /// Branch.
        branch: String,
    },
    /// No such file.
    #[error("File `{path}` does not exist on `{branch}` of `{id}`")]
    FileNotFound {
        /// Repo id.
        id: String,
        /// Branch.
        branch: String,
        /// Path.
        path: String,
    },
    /// A repo folder could not be read.
    #[error("Cannot read repo folder `{path}`")]
    Read {
        /// Folder or file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Repos, plus the CDN's map from sha256 to content.
#[derive(Debug, Default)]
pub struct Catalog {
    repos: RwLock<BTreeMap<(RepoKind, String), Repo>>,
    cdn: RwLock<HashMap<String, Arc<RepoFile>>>,
    hash_cache: HashCache,
    generation: AtomicU64,
}

impl Catalog {
    /// An empty catalog whose large generated files keep their hashes in `hash_cache`.
    pub fn new(hash_cache: HashCache) -> Self {
        Self {
            hash_cache,
            ..Self::default()
        }
    }

    /// The hash cache.
    pub fn hash_cache(&self) -> &HashCache {
        &self.hash_cache
    }

    /// Adds (or replaces) a repo.
    pub fn add(&self, repo: Repo) {
        self.repos
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((repo.kind, repo.id.clone()), repo);
    }

    /// Runs `f` on a repo.
    pub fn with_repo<R>(&self, kind: RepoKind, id: &str, f: impl FnOnce(&Repo) -> R) -> Option<R> {
        let repos = self.repos.read().unwrap_or_else(|e| e.into_inner());
        repos.get(&(kind, id.to_string())).map(f)
    }

    /// Runs `f` on a repo, mutably.
    pub fn with_repo_mut<R>(
        &self,
        kind: RepoKind,
        id: &str,
        f: impl FnOnce(&mut Repo) -> R,
    ) -> Result<R, CatalogError> {
        let mut repos = self.repos.write().unwrap_or_else(|e| e.into_inner());
        repos
            .get_mut(&(kind, id.to_string()))
            .map(f)
            .ok_or_else(|| CatalogError::RepoNotFound {
                kind: kind.plural(),
                id: id.to_string(),
            })
    }

    /// Ids of all repos.
    pub fn repo_ids(&self) -> Vec<(RepoKind, String)> {
        self.repos
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Resolves a revision of a repo.
    pub fn resolve(&self, kind: RepoKind, id: &str, revision: &str) -> Option<Arc<Commit>> {
        self.with_repo(kind, id, |r| r.resolve(revision)).flatten()
    }

    /// A file at a revision.
    pub fn file(
        &self,
        kind: RepoKind,
        id: &str,
        revision: &str,
        path: &str,
    ) -> Option<Arc<RepoFile>> {
        self.resolve(kind, id, revision)?.files.get(path).cloned()
    }

    /// The oldest commit, going back from `commit`, that already had this very file.
    pub fn last_commit_touching(
        &self,
        kind: RepoKind,
        id: &str,
        commit: &Arc<Commit>,
        path: &str,
    ) -> Arc<Commit> {
        let Some(file) = commit.files.get(path) else {
            return Arc::clone(commit);
        };
        self.with_repo(kind, id, |r| {
            let mut best = Arc::clone(commit);
            while let Some(parent) = best.parent.as_ref().and_then(|p| r.commits.get(p)) {
                match parent.files.get(path) {
                    Some(f) if Arc::ptr_eq(f, file) => best = Arc::clone(parent),
                    _ => break,
                }
            }
            best
        })
        .unwrap_or_else(|| Arc::clone(commit))
    }

    /// The file's hashes (computed once), registering LFS content with the CDN.
    pub async fn hashes(&self, file: &Arc<RepoFile>) -> FileHashes {
        let h = file.hashes(&self.hash_cache).await;
        if file.lfs {
            self.cdn
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(h.sha256.clone())
                .or_insert_with(|| Arc::clone(file));
        }
        h
    }

    /// The content the CDN serves under `sha256`.
    pub fn cdn_object(&self, sha256: &str) -> Option<Arc<RepoFile>> {
        self.cdn
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha256)
            .cloned()
    }

    /// Commits `changes` on `branch` (which must exist) and returns the new commit sha.
    pub fn move_branch(
        &self,
        kind: RepoKind,
        id: &str,
        branch: &str,
        title: &str,
        changes: Vec<FileChange>,
    ) -> Result<String, CatalogError> {
        self.with_repo_mut(kind, id, |r| {
            if !r.branches.contains_key(branch) {
                return Err(CatalogError::BranchNotFound {
                    id: id.to_string(),
                    branch: branch.to_string(),
                });
            }
            Ok(r.commit(branch, title, changes))
        })?
    }

    /// Points `branch` (created if needed) at an existing commit.
    pub fn set_branch(
        &self,
        kind: RepoKind,
        id: &str,
        branch: &str,
        commit: &str,
    ) -> Result<(), CatalogError> {
        self.with_repo_mut(kind, id, |r| {
            r.branches.insert(branch.to_string(), commit.to_string());
        })
    }

    /// Changes a file's bytes "upstream": a new commit on `branch` holds the file with new
    /// content of the same size (new ETag and sha256). The CDN also starts serving the new
    /// bytes under the old sha256 URL, as a replaced object would, so a resume with a stale
    /// `If-Range` gets a full 200. Returns the new commit sha.
    pub fn change_file(
        &self,
        kind: RepoKind,
        id: &str,
        branch: &str,
        path: &str,
    ) -> Result<String, CatalogError> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let (sha, old, new) = self.with_repo_mut(kind, id, |r| {
            let head = r
                .resolve(branch)
                .ok_or_else(|| CatalogError::BranchNotFound {
                    id: id.to_string(),
                    branch: branch.to_string(),
                })?;
            let old = head
                .files
                .get(path)
                .cloned()
                .ok_or_else(|| CatalogError::FileNotFound {
                    id: id.to_string(),
                    branch: branch.to_string(),
                    path: path.to_string(),
                })?;
            let body = old.body.mutated(generation);
            let sha = r.commit(
                branch,
                &format!("Update {path}"),
                vec![FileChange::PutWithLfs(path.to_string(), body, old.lfs)],
            );
            let new = r.resolve(&sha).and_then(|c| c.files.get(path).cloned());
            Ok::<_, CatalogError>((sha, old, new))
        })??;
        if let (Some(h), Some(new)) = (old.hashes_if_ready(), new)
            && old.lfs
        {
            self.cdn
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(h.sha256.clone(), new);
        }
        Ok(sha)
    }
}

/// Reads `DIR/<org>/<name>/**` as model repos (and `DIR/datasets/<org>/<name>/**`,
/// `DIR/spaces/<org>/<name>/**` as datasets and spaces), one commit each. Files are read from
/// disk on demand.
pub fn repos_from_dir(dir: &Path) -> Result<Vec<Repo>, CatalogError> {
    let read = |p: &Path| {
        std::fs::read_dir(p).map_err(|source| CatalogError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let mut repos = Vec::new();
    let sorted = |p: &Path| -> Result<Vec<std::fs::DirEntry>, CatalogError> {
        let mut v: Vec<_> = read(p)?.filter_map(Result::ok).collect();
        v.sort_by_key(std::fs::DirEntry::file_name);
        Ok(v)
    };
    for org in sorted(dir)? {
        if !org.path().is_dir() {
            continue;
        }
        let org_name = org.file_name().to_string_lossy().to_string();
        let (kind, base) = match org_name.as_str() {
            "datasets" => (RepoKind::Dataset, true),
            "spaces" => (RepoKind::Space, true),
            _ => (RepoKind::Model, false),
        };
        let mut repo_dirs = Vec::new();
        if base {
            for o in sorted(&org.path())? {
                for n in sorted(&o.path())? {
                    if n.path().is_dir() {
                        let id = format!(
                            "{}/{}",
                            o.file_name().to_string_lossy(),
                            n.file_name().to_string_lossy()
                        );
                        repo_dirs.push((id, n.path()));
                    }
                }
            }
        } else {
            for n in sorted(&org.path())? {
                if n.path().is_dir() {
                    let id = format!("{org_name}/{}", n.file_name().to_string_lossy());
                    repo_dirs.push((id, n.path()));
                }
            }
        }
        for (id, root) in repo_dirs {
            let mut changes = Vec::new();
            collect_files(&root, &root, &mut changes)?;
            let mut repo = Repo::new(kind, id);
            repo.commit("main", "Upload folder", changes);
            repos.push(repo);
        }
    }
    Ok(repos)
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<FileChange>) -> Result<(), CatalogError> {
    let err = |p: &Path| {
        let path = p.display().to_string();
        move |source| CatalogError::Read { path, source }
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(err(dir))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let path = e.path();
        if e.file_name() == ".git" {
            continue;
        }
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else if path.is_file() {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect::<Vec<_>>()
                .join("/");
            let file = DiskFile::open(path.clone()).map_err(err(&path))?;
            out.push(FileChange::Put(rel, FileBody::Disk(Arc::new(file))));
        }
    }
    Ok(())
}
