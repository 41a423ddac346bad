//! Importing local files and adopting other apps' models (see `crate::import` for the rules):
//! the facade finds the candidates, lists the named repo through the Hub client, and places
//! each file through the store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Engine, EngineError};
use crate::formats::{LocalFile, SourceError};
use crate::hash::{HashAlgorithm, hash_file_blocking};
use crate::hub::TreeEntry;
use crate::import::{
    Candidate, IMPORT_RECORD, IMPORTED_DIR, ImportError, ImportItem, ImportOrigin, ImportRecord,
    ImportReport, ImportRequest, ImportState, ImportedFile, ImportedModel, Placement, apps,
    folder_name,
};
use crate::index::BlobStamp;
use crate::repo::RepoId;
use crate::store::SafeRelPath;
use crate::store::atomic;
use crate::store::share::{self, ShareMethod};
use crate::variants::{self, ListedFile, RepoFiles, Variant};

/// Files at most this big that the Hub keeps in git are matched by their git sha1 too (a
/// folder's `config.json`, tokenizer files).
const GIT_FILE_MAX: u64 = 10 * 1024 * 1024;

/// A model's files read from where they are, under the names they get.
struct SourceFiles(HashMap<String, PathBuf>);

impl RepoFiles for SourceFiles {
    type Source = LocalFile;

    async fn open(&self, path: &str, _size: u64) -> Result<LocalFile, SourceError> {
        match self.0.get(path) {
            Some(source) => LocalFile::open(source),
            None => LocalFile::open(Path::new(path)),
        }
    }
}

/// The variants of files named `(name, source path, size)`, from their headers.
async fn inspect_files(files: &[(String, PathBuf, u64)]) -> Vec<Variant> {
    let listed: Vec<ListedFile> = files
        .iter()
        .map(|(path, _, size)| ListedFile {
            path: path.clone(),
            size: *size,
        })
        .collect();
    let mut found = variants::scan(&listed);
    let sources = SourceFiles(
        files
            .iter()
            .map(|(name, source, _)| (name.clone(), source.clone()))
            .collect(),
    );
    variants::inspect(&mut found, &listed, &sources).await;
    found
}

/// A file's size and modification time, to tell that it did not change while it was read.
fn stamp_of(path: &Path) -> Result<BlobStamp, ImportError> {
    std::fs::metadata(path)
        .map(|m| BlobStamp::of(&m))
        .map_err(|e| ImportError::io("read", path, e))
}

async fn hash_blocking(
    path: &Path,
    algorithm: HashAlgorithm,
    len: u64,
) -> Result<String, ImportError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || hash_file_blocking(&owned, algorithm, len))
        .await
        .map_err(|e| ImportError::io("hash", path, std::io::Error::other(e)))?
        .map_err(|e| ImportError::io("hash", path, e))
}

impl Engine {
    /// Imports files or folders, or adopts what another app holds (see `crate::import`).
    /// A model that cannot be placed is reported `failed` with its reason; the others are
    /// imported. With `dry_run`, nothing is created and the report says what would be.
    pub async fn import(&self, request: &ImportRequest) -> Result<ImportReport, EngineError> {
        let candidates = match request.from {
            ImportOrigin::Files => {
                if request.paths.is_empty() {
                    return Err(ImportError::NoAppFolder {
                        origin: ImportOrigin::Files,
                    }
                    .into());
                }
                apps::paths(&request.paths)?
            }
            origin => {
                let root = match request.paths.as_slice() {
                    [one] => one,
                    [] => return Err(ImportError::NoAppFolder { origin }.into()),
                    _ => return Err(ImportError::OneAppFolder { origin }.into()),
                };
                match origin {
                    ImportOrigin::Ollama => apps::ollama(root)?,
                    ImportOrigin::LmStudio => apps::lm_studio(root)?,
                    _ => apps::llama_cpp(root)?,
                }
            }
        };
        let mut items = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            items.push(self.import_candidate(candidate, request).await);
        }
        Ok(ImportReport::new(request.dry_run, items))
    }

    async fn import_candidate(&self, candidate: Candidate, request: &ImportRequest) -> ImportItem {
        let mut item = ImportItem {
            name: candidate.name.clone(),
            origin: candidate.origin,
            suggested_repo: candidate.suggested_repo.clone(),
            state: ImportState::Failed,
            placement: None,
            files: Vec::new(),
            bytes: candidate.files.iter().map(|f| f.size).sum(),
            saved_bytes: 0,
            copy_bytes: 0,
            variants: Vec::new(),
            error: None,
        };
        let repo = match (&request.repo, &candidate.suggested_repo) {
            (Some(repo), _) => Some(repo.clone()),
            (None, Some(suggested)) if request.use_suggested_repos => {
                match RepoId::parse_user_input(suggested) {
                    Ok(repo) => Some(repo),
                    Err(error) => {
                        item.error = Some(error.to_string());
                        return item;
                    }
                }
            }
            _ => None,
        };
        for file in &candidate.files {
            let actual = std::fs::metadata(&file.source).map(|m| m.len());
            match actual {
                Ok(size) if size == file.size => {}
                Ok(size) => {
                    item.error = Some(
                        ImportError::SizeMismatch {
                            path: file.source.clone(),
                            expected: file.size,
                            actual: size,
                        }
                        .to_string(),
                    );
                    return item;
                }
                Err(e) => {
                    item.error = Some(ImportError::io("read", &file.source, e).to_string());
                    return item;
                }
            }
        }
        let placed = match repo {
            Some(repo) => self.place_in_hub(&candidate, &repo, request).await,
            None => self.place_locally(&candidate, request).await,
        };
        match placed {
            Ok((placement, files, state)) => {
                let named: Vec<(String, PathBuf, u64)> = files
                    .iter()
                    .map(|f| (f.path.clone(), f.source.clone(), f.size))
                    .collect();
                item.variants = inspect_files(&named).await;
                item.saved_bytes = files
                    .iter()
                    .filter(|f| f.method.is_free())
                    .map(|f| f.size)
                    .sum();
                item.copy_bytes = files
                    .iter()
                    .filter(|f| matches!(f.method, ShareMethod::Copy | ShareMethod::NeedsCopy))
                    .map(|f| f.size)
                    .sum();
                item.placement = Some(placement);
                item.files = files;
                item.state = state;
            }
            Err(error) => item.error = Some(error.to_string()),
        }
        item
    }

    /// Places a candidate under `repo`: every file must match a file of its listing.
    async fn place_in_hub(
        &self,
        candidate: &Candidate,
        repo: &RepoId,
        request: &ImportRequest,
    ) -> Result<(Placement, Vec<ImportedFile>, ImportState), EngineError> {
        let revision = request.revision.clone().unwrap_or_else(|| "main".into());
        let (entries, commit, _) = self.listing(repo, &revision).await?;
        let commit = commit.ok_or_else(|| EngineError::NotCached {
            repo: repo.to_string(),
        })?;
        let cache = self.inner.cache.repo(repo);
        // Match every file first (reading each once), then place them all or none.
        let mut matched: Vec<(&crate::import::CandidateFile, &TreeEntry, String, BlobStamp)> =
            Vec::new();
        for file in &candidate.files {
            let before = stamp_of(&file.source)?;
            let sha256 = match (&file.claimed_sha256, request.dry_run) {
                (Some(claimed), true) => claimed.clone(),
                _ => hash_blocking(&file.source, HashAlgorithm::Sha256, file.size).await?,
            };
            let mut entry = entries.iter().find(|e| {
                e.lfs
                    .as_ref()
                    .is_some_and(|lfs| lfs.sha256.eq_ignore_ascii_case(&sha256))
                    && e.size == file.size
            });
            if entry.is_none() && file.size <= GIT_FILE_MAX {
                let git = hash_blocking(&file.source, HashAlgorithm::GitSha1, file.size).await?;
                entry = entries
                    .iter()
                    .find(|e| e.lfs.is_none() && e.oid.eq_ignore_ascii_case(&git));
            }
            let Some(entry) = entry else {
                return Err(ImportError::NoMatch {
                    path: file.source.clone(),
                    sha256,
                    repo: repo.to_string(),
                    revision: revision.clone(),
                }
                .into());
            };
            matched.push((file, entry, sha256, before));
        }
        let mut files = Vec::new();
        for (file, entry, sha256, _) in &matched {
            let etag = entry.etag().to_ascii_lowercase();
            let method = if cache.blob_exists(&etag) {
                ShareMethod::AlreadyThere
            } else {
                cache.probe_share(&file.source, request.allow_copy)?
            };
            files.push(ImportedFile {
                source: file.source.clone(),
                path: entry.path.clone(),
                size: file.size,
                sha256: Some(sha256.clone()),
                method,
            });
        }
        let placement = Placement::Hub {
            repo: repo.to_string(),
            revision: revision.clone(),
            commit: commit.clone(),
        };
        if request.dry_run {
            return Ok((placement, files, ImportState::Planned));
        }
        if files.iter().any(|f| f.method == ShareMethod::NeedsCopy) {
            return Ok((placement, files, ImportState::NeedsCopy));
        }
        cache.ensure_dirs()?;
        for ((file, entry, _, before), out) in matched.iter().zip(files.iter_mut()) {
            let etag = entry.etag().to_ascii_lowercase();
            let lock = {
                let cache = cache.clone();
                let etag = etag.clone();
                tokio::task::spawn_blocking(move || {
                    cache.lock_blob(&etag, std::time::Duration::from_secs(60))
                })
                .await
                .map_err(|e| ImportError::io("lock", &file.source, std::io::Error::other(e)))??
            };
            if !cache.blob_exists(&etag) {
                out.method = cache.share_into_partial(&etag, &file.source, request.allow_copy)?;
                let partial = cache.partial_path(&etag);
                // The bytes hashed above are the bytes placed: the source is unchanged since
                // (a link or clone of it, or a copy made after).
                let after = stamp_of(&file.source)?;
                let same = after.size == before.size && after.mtime_ns == before.mtime_ns;
                let placed_size = std::fs::metadata(&partial).map(|m| m.len()).ok();
                if !same || placed_size != Some(file.size) {
                    cache.discard_adopted_partial(&etag)?;
                    return Err(ImportError::Changed {
                        path: file.source.clone(),
                    }
                    .into());
                }
                let blob = cache.finish_adopted_blob(&etag)?;
                let stamp = stamp_of(&blob)?;
                self.inner.index.record_verified_blob(repo, &etag, &stamp)?;
            }
            let rel = SafeRelPath::new(&entry.path)?;
            cache.link(&commit, &rel, &etag)?;
            drop(lock);
        }
        cache.write_ref(&revision, &commit)?;
        self.inner.index.record_revision(repo, &revision, &commit)?;
        Ok((placement, files, ImportState::Imported))
    }

    /// Places a candidate in our own area of the app-data folder.
    async fn place_locally(
        &self,
        candidate: &Candidate,
        request: &ImportRequest,
    ) -> Result<(Placement, Vec<ImportedFile>, ImportState), EngineError> {
        let area = self.imported_dir();
        let dir = area.join(folder_name(&candidate.name));
        // The data folder exists (the index lives there); the area itself only once something
        // is imported.
        let probe_dir = if area.is_dir() {
            area.clone()
        } else {
            self.inner.settings.data_dir.clone()
        };
        if let Some(existing) = read_record(&dir)
            && !existing
                .files
                .iter()
                .zip(&candidate.files)
                .all(|(a, b)| a.source == b.source)
        {
            return Err(ImportError::NameTaken {
                name: candidate.name.clone(),
                dir,
            }
            .into());
        }
        let mut files = Vec::new();
        for file in &candidate.files {
            let rel = SafeRelPath::new(&file.name)?;
            let target = rel.segments().fold(dir.clone(), |p, s| p.join(s));
            let method = if share::same_file(&file.source, &target) {
                ShareMethod::AlreadyThere
            } else {
                share::probe(&file.source, &probe_dir, request.allow_copy)
                    .map_err(|e| ImportError::io("probe", &file.source, e))?
            };
            files.push(ImportedFile {
                source: file.source.clone(),
                path: file.name.clone(),
                size: file.size,
                sha256: file.claimed_sha256.clone(),
                method,
            });
        }
        let placement = Placement::Local { dir: dir.clone() };
        if request.dry_run {
            return Ok((placement, files, ImportState::Planned));
        }
        if files.iter().any(|f| f.method == ShareMethod::NeedsCopy) {
            return Ok((placement, files, ImportState::NeedsCopy));
        }
        for out in &mut files {
            let rel = SafeRelPath::new(&out.path)?;
            let target = rel.segments().fold(dir.clone(), |p, s| p.join(s));
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| ImportError::io("create", parent, e))?;
            }
            out.method = share::share_file(&out.source, &target, request.allow_copy)
                .map_err(|e| ImportError::io("link", &out.source, e))?;
            if out.method == ShareMethod::NeedsCopy {
                return Ok((placement, files, ImportState::NeedsCopy));
            }
            let sha256 = hash_blocking(&target, HashAlgorithm::Sha256, out.size).await?;
            if let Some(claimed) = &out.sha256
                && !claimed.eq_ignore_ascii_case(&sha256)
            {
                return Err(ImportError::Changed {
                    path: out.source.clone(),
                }
                .into());
            }
            out.sha256 = Some(sha256);
        }
        let record = ImportRecord {
            name: candidate.name.clone(),
            origin: candidate.origin,
            imported_at: crate::index::now_ms(),
            files: files.clone(),
        };
        let json = serde_json::to_vec_pretty(&record).expect("an import record serializes");
        let record_path = dir.join(IMPORT_RECORD);
        atomic::write(&record_path, &json)
            .map_err(|e| ImportError::io("write", &record_path, e))?;
        Ok((placement, files, ImportState::Imported))
    }

    /// Our own area of the app-data folder, where imports not placed under a Hub repo live.
    pub fn imported_dir(&self) -> PathBuf {
        self.inner.settings.data_dir.join(IMPORTED_DIR)
    }

    /// The models in our own area (those whose import finished), with their variants.
    pub async fn imported_models(&self) -> Result<Vec<ImportedModel>, EngineError> {
        let mut out = Vec::new();
        for (dir, record) in self.imported_records()? {
            let named: Vec<(String, PathBuf, u64)> = record
                .files
                .iter()
                .filter_map(|f| Some((f.path.clone(), file_in(&dir, &f.path)?, f.size)))
                .collect();
            out.push(ImportedModel {
                bytes: record.files.iter().map(|f| f.size).sum(),
                variants: inspect_files(&named).await,
                dir,
                record,
            });
        }
        Ok(out)
    }
}

impl Engine {
    /// Re-hashes the files of the models in our own area against the sha256 their import
    /// recorded; a mismatch (or a missing file) is reported under `imported/<folder>`.
    pub(super) async fn verify_imported(
        &self,
        report: &mut crate::store::VerifyReport,
    ) -> Result<(), EngineError> {
        for (dir, record) in self.imported_records()? {
            let folder = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for file in &record.files {
                let (Some(expected), Some(path)) = (&file.sha256, file_in(&dir, &file.path)) else {
                    continue;
                };
                let actual = match crate::hash::hash_file(
                    path.clone(),
                    crate::hash::HashAlgorithm::Sha256,
                    file.size,
                )
                .await
                {
                    Ok(actual) => actual,
                    Err(error) => format!("unreadable: {error}"),
                };
                report.checked += 1;
                report.bytes += file.size;
                if !actual.eq_ignore_ascii_case(expected) {
                    report.corrupt.push(crate::store::CorruptFile {
                        repo: format!("{IMPORTED_DIR}/{folder}"),
                        path: file.path.clone(),
                        blob: path,
                        expected: expected.clone(),
                        actual,
                    });
                }
            }
        }
        Ok(())
    }
}

impl Engine {
    /// The finished imports in our own area, by folder name: each folder with its record (a
    /// folder without one is an import that did not finish, and is left out).
    fn imported_records(&self) -> Result<Vec<(PathBuf, ImportRecord)>, EngineError> {
        let area = self.imported_dir();
        let mut dirs: Vec<PathBuf> = match std::fs::read_dir(&area) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImportError::io("list", &area, e).into()),
        };
        dirs.sort();
        Ok(dirs
            .into_iter()
            .filter_map(|dir| read_record(&dir).map(|record| (dir, record)))
            .collect())
    }
}

/// Where a recorded file of an imported model is, when its recorded name is a safe relative
/// path.
fn file_in(dir: &Path, name: &str) -> Option<PathBuf> {
    let rel = SafeRelPath::new(name).ok()?;
    Some(rel.segments().fold(dir.to_path_buf(), |p, s| p.join(s)))
}

fn read_record(dir: &Path) -> Option<ImportRecord> {
    let text = std::fs::read(dir.join(IMPORT_RECORD)).ok()?;
    serde_json::from_slice(&text).ok()
}
