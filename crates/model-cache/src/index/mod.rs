//! The index: what Model Cache knows about repos, revisions, files, blobs, downloads, use and pins.
//!
//! SQLite (bundled) in WAL mode at `<data_dir>/index.sqlite3` — never inside the hub cache, where
//! a foreign file would make `huggingface_hub` report a corrupted cache. Two processes (the app
//! and the CLI) can share it: SQLite locks, and a busy timeout waits for the other writer.
//!
//! **Architecture Invariant:** the index is not the truth, the files on disk are; `doctor`
//! rebuilds the index from the cache. No SQL lives outside this module, and no token is ever
//! stored.
//!
//! [`Index`] is a cheap clone around one connection behind a mutex. Its API is synchronous; async
//! callers use `tokio::task::spawn_blocking`.

pub mod in_flight;
pub mod listings;
pub mod peers;
pub mod queue;
mod schema;
pub mod transfers;
pub mod updates;
pub mod uploads;
pub mod xet;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::{ErrorKind, Hint};
use crate::repo::{RepoId, RepoType};

/// File name of the index in the data folder.
pub const INDEX_FILE: &str = "index.sqlite3";

/// How long a writer waits for another process holding the database lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("Index error while trying to {action}: {source}")]
    Sqlite {
        action: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("Cannot create the data folder `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "The index `{}` was written by a newer Model Cache (schema {found}, this build knows {supported})", path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: usize,
        supported: usize,
    },
}

impl IndexError {
    fn sql(action: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> IndexError {
        let action = action.into();
        move |source| IndexError::Sqlite { action, source }
    }

    /// The stable kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IndexError::Sqlite { .. } => ErrorKind::Index,
            IndexError::Io { .. } => ErrorKind::Io,
            IndexError::NewerSchema { .. } => ErrorKind::IndexTooNew,
        }
    }

    /// What the user can do about it.
    pub fn hints(&self) -> Vec<Hint> {
        match self {
            IndexError::NewerSchema { path, .. } => {
                vec![Hint::UpgradeOrRebuildIndex { path: path.clone() }]
            }
            _ => Vec::new(),
        }
    }
}

impl crate::error::Diagnostic for IndexError {
    fn kind(&self) -> crate::error::ErrorKind {
        IndexError::kind(self)
    }

    fn hints(&self) -> Vec<crate::error::Hint> {
        IndexError::hints(self)
    }
}

/// A transaction that takes the write lock when it begins (`BEGIN IMMEDIATE`): a read followed
/// by a write in a deferred transaction cannot wait for another writer (SQLite answers busy at
/// once, without the busy timeout), while an immediate one waits its turn.
pub(crate) fn write_tx(conn: &Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Metric counter names.
pub mod metric {
    pub const BYTES_DOWNLOADED: &str = "bytes_downloaded";
    pub const BYTES_FROM_CACHE: &str = "bytes_from_cache";
    pub const HITS: &str = "hits";
    pub const MISSES: &str = "misses";
}

/// A file of a revision, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRecord {
    pub path: String,
    pub etag: String,
    pub size: u64,
    pub is_lfs: bool,
    pub sha256: Option<String>,
}

/// A blob, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobRecord {
    pub etag: String,
    pub size: u64,
    /// Unix ms of the last successful hash check; `None` when only found on disk.
    pub verified_at: Option<i64>,
}

/// What downloads learned about one source of bytes (see [`Index::record_source_use`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceHistory {
    pub name: String,
    pub bytes: u64,
    pub errors: u32,
    pub throughput: Option<f64>,
}

/// Which file a blob was when its hash was checked: its size, modification time, device and
/// inode (the last two 0 where the platform gives none). While a blob still matches its stamp
/// it is the bytes that were verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub dev: u64,
    pub ino: u64,
}

impl BlobStamp {
    /// The stamp of a file's metadata (read through symlinks by the caller as it chooses).
    pub fn of(meta: &std::fs::Metadata) -> BlobStamp {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        #[cfg(unix)]
        let (dev, ino) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (dev, ino) = (0, 0);
        BlobStamp {
            size: meta.len(),
            mtime_ns,
            dev,
            ino,
        }
    }
}

/// A repo, with what the index knows about its use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoRecord {
    pub repo: RepoId,
    pub last_used: Option<i64>,
    pub pinned: bool,
    pub private: Option<bool>,
    pub gated: Option<String>,
    pub last_modified: Option<String>,
}

/// A repo's access as repo info last gave it, each `None` until recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoAccess {
    pub private: Option<bool>,
    /// `open`, `auto` or `manual`.
    pub gated: Option<String>,
}

/// The last recorded use of one variant of a repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariantUse {
    pub repo: RepoId,
    /// The variant's id (`gguf:model-Q4_K_M`).
    pub variant: String,
    /// Unix ms.
    pub last_used: i64,
}

/// A pin: a whole repo (`revision: None`) or one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pin {
    pub repo: RepoId,
    pub revision: Option<String>,
}

/// One event of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub repo: Option<String>,
    pub detail: String,
}

/// The index database.
#[derive(Clone)]
pub struct Index {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
    owner: in_flight::OwnerCell,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("path", &self.path).finish()
    }
}

impl Index {
    /// Opens (creating if needed) `<data_dir>/index.sqlite3` and brings its schema up to date.
    /// The data folder is created owner-only (see [`crate::secret::create_private_dir`]).
    pub fn open(data_dir: &Path) -> Result<Index, IndexError> {
        crate::secret::create_private_dir(data_dir).map_err(|error| IndexError::Io {
            path: data_dir.to_path_buf(),
            source: error.into_io(),
        })?;
        let path = data_dir.join(INDEX_FILE);
        let conn = Connection::open(&path)
            .map_err(IndexError::sql(format!("open `{}`", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(IndexError::sql("set the busy timeout"))?;
        // Switching to WAL takes an exclusive lock; when two processes open a fresh index at
        // once, SQLite can answer `SQLITE_BUSY` here without calling the busy handler. WAL mode
        // is persistent, so retrying until the other process finished is enough.
        let started = std::time::Instant::now();
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(IndexError::sql("enable WAL")(e)),
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(IndexError::sql("set synchronous"))?;
        // The downloader's statements run thousands of times for a repo of many files: each
        // is parsed once.
        conn.set_prepared_statement_cache_capacity(128);
        Self::init(conn, Some(path))
    }

    /// A private in-memory index, for tests.
    pub fn in_memory() -> Result<Index, IndexError> {
        let conn = Connection::open_in_memory().map_err(IndexError::sql("open in memory"))?;
        Self::init(conn, None)
    }

    fn init(conn: Connection, path: Option<PathBuf>) -> Result<Index, IndexError> {
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(IndexError::sql("enable foreign keys"))?;
        let index = Index {
            conn: Arc::new(Mutex::new(conn)),
            path,
            owner: in_flight::OwnerCell::default(),
        };
        index.migrate()?;
        Ok(index)
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` with the connection, inside the index module family (e.g. [`transfers`]).
    pub fn with_conn<T>(
        &self,
        action: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, IndexError> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&conn).map_err(IndexError::sql(action))
    }

    /// Number of migrations applied.
    pub fn schema_version(&self) -> Result<usize, IndexError> {
        self.with_conn("read the schema version", |c| {
            c.prepare_cached("SELECT COUNT(*) FROM schema_migrations")?
                .query_row([], |r| r.get::<_, i64>(0))
                .map(|n| n as usize)
        })
    }

    fn migrate(&self) -> Result<(), IndexError> {
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 applied_at INTEGER NOT NULL
             )",
        )
        .map_err(IndexError::sql("create the migrations table"))?;
        // An immediate transaction makes two processes opening a fresh index at once apply each
        // migration exactly once: the second waits, then sees the first one's work.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(IndexError::sql("start the migration"))?;
        let applied: usize =
            tx.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(IndexError::sql("read the schema version"))? as usize;
        if applied > schema::MIGRATIONS.len() {
            return Err(IndexError::NewerSchema {
                path: self.path.clone().unwrap_or_default(),
                found: applied,
                supported: schema::MIGRATIONS.len(),
            });
        }
        for (version, sql) in schema::MIGRATIONS.iter().enumerate().skip(applied) {
            tx.execute_batch(sql)
                .map_err(IndexError::sql(format!("apply migration {}", version + 1)))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version as i64 + 1, now_ms()],
            )
            .map_err(IndexError::sql("record a migration"))?;
        }
        tx.commit().map_err(IndexError::sql("commit the migration"))
    }

    /// The row id of a repo, created on first sight.
    pub fn upsert_repo(&self, repo: &RepoId) -> Result<i64, IndexError> {
        self.with_conn("record a repo", |c| repo_row(c, repo))
    }

    /// Records what repo info said about access and freshness.
    pub fn record_repo_details(
        &self,
        repo: &RepoId,
        private: bool,
        gated: &str,
        last_modified: Option<&str>,
    ) -> Result<(), IndexError> {
        self.with_conn("record repo details", |c| {
            let id = repo_row(c, repo)?;
            c.prepare_cached(
                "UPDATE repos SET private = ?2, gated = ?3, last_modified = ?4 WHERE id = ?1",
            )?
            .execute(params![id, private, gated, last_modified])?;
            Ok(())
        })
    }

    /// What repo info last said about a repo's access; `None` for a repo the index does not
    /// know.
    pub fn repo_access(&self, repo: &RepoId) -> Result<Option<RepoAccess>, IndexError> {
        self.with_conn("read a repo's access", |c| {
            c.prepare_cached("SELECT private, gated FROM repos WHERE folder = ?1")?
                .query_row(params![repo.folder_name()], |row| {
                    Ok(RepoAccess {
                        private: row.get(0)?,
                        gated: row.get(1)?,
                    })
                })
                .optional()
        })
    }

    /// All repos the index knows, with last use and pin state.
    pub fn repos(&self) -> Result<Vec<RepoRecord>, IndexError> {
        self.with_conn("list repos", |c| {
            let mut statement = c.prepare(
                "SELECT r.repo_type, r.repo_id, a.last_used,
                        EXISTS (SELECT 1 FROM pins p WHERE p.repo = r.id),
                        r.private, r.gated, r.last_modified
                 FROM repos r LEFT JOIN access a ON a.repo = r.id
                 ORDER BY r.repo_type, r.repo_id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    RepoRecord {
                        repo: RepoId {
                            repo_type: RepoType::Model,
                            id: String::new(),
                        },
                        last_used: row.get(2)?,
                        pinned: row.get(3)?,
                        private: row.get(4)?,
                        gated: row.get(5)?,
                        last_modified: row.get(6)?,
                    },
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (kind, id, mut record) = row?;
                record.repo = RepoId {
                    repo_type: parse_repo_type(&kind),
                    id,
                };
                out.push(record);
            }
            Ok(out)
        })
    }

    /// Forgets a repo and everything recorded about it (revisions, files, blobs, pins, access).
    pub fn remove_repo(&self, repo: &RepoId) -> Result<(), IndexError> {
        self.with_conn("remove a repo", |c| {
            c.prepare_cached("DELETE FROM repos WHERE folder = ?1")?
                .execute(params![repo.folder_name()])?;
            Ok(())
        })
    }

    /// Records that `revision` of `repo` pointed to `commit`, now.
    pub fn record_revision(
        &self,
        repo: &RepoId,
        revision: &str,
        commit: &str,
    ) -> Result<(), IndexError> {
        self.with_conn("record a revision", |c| {
            let id = repo_row(c, repo)?;
            c.prepare_cached("INSERT INTO revisions (repo, revision, commit_hash, seen_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (repo, revision) DO UPDATE SET commit_hash = ?3, seen_at = ?4")?.execute(
                params![id, revision, commit, now_ms()],
            )?;
            Ok(())
        })
    }

    /// The commit a revision last pointed to, as recorded.
    pub fn revision_commit(
        &self,
        repo: &RepoId,
        revision: &str,
    ) -> Result<Option<String>, IndexError> {
        self.with_conn("read a revision", |c| {
            c.prepare_cached(
                "SELECT v.commit_hash FROM revisions v JOIN repos r ON r.id = v.repo
                 WHERE r.folder = ?1 AND v.revision = ?2",
            )?
            .query_row(params![repo.folder_name(), revision], |row| row.get(0))
            .optional()
        })
    }

    /// Records (or updates) files of a commit, in one transaction.
    pub fn record_files(
        &self,
        repo: &RepoId,
        commit: &str,
        files: &[FileRecord],
    ) -> Result<(), IndexError> {
        self.with_conn("record files", |c| {
            let tx = write_tx(c)?;
            let id = repo_row(&tx, repo)?;
            {
                let mut statement = tx.prepare_cached(
                    "INSERT INTO files (repo, commit_hash, path, etag, size, is_lfs, sha256)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (repo, commit_hash, path)
                     DO UPDATE SET etag = ?4, size = ?5, is_lfs = ?6, sha256 = ?7",
                )?;
                for file in files {
                    statement.execute(params![
                        id,
                        commit,
                        file.path,
                        file.etag,
                        file.size as i64,
                        file.is_lfs,
                        file.sha256
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// Files recorded for a commit, sorted by path.
    pub fn files(&self, repo: &RepoId, commit: &str) -> Result<Vec<FileRecord>, IndexError> {
        self.with_conn("list files", |c| {
            let mut statement = c.prepare(
                "SELECT f.path, f.etag, f.size, f.is_lfs, f.sha256
                 FROM files f JOIN repos r ON r.id = f.repo
                 WHERE r.folder = ?1 AND f.commit_hash = ?2 ORDER BY f.path",
            )?;
            let rows = statement.query_map(params![repo.folder_name(), commit], |row| {
                Ok(FileRecord {
                    path: row.get(0)?,
                    etag: row.get(1)?,
                    size: row.get::<_, i64>(2)? as u64,
                    is_lfs: row.get(3)?,
                    sha256: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Commits with recorded files.
    pub fn commits(&self, repo: &RepoId) -> Result<Vec<String>, IndexError> {
        self.with_conn("list commits", |c| {
            let mut statement = c.prepare(
                "SELECT DISTINCT f.commit_hash FROM files f JOIN repos r ON r.id = f.repo
                 WHERE r.folder = ?1 ORDER BY 1",
            )?;
            let rows = statement.query_map(params![repo.folder_name()], |row| row.get(0))?;
            rows.collect()
        })
    }

    /// Forgets the files of a commit (its snapshot is gone).
    /// Forgets some files of a commit (a variant removed from the cache).
    pub fn remove_files(
        &self,
        repo: &RepoId,
        commit: &str,
        paths: &[String],
    ) -> Result<(), IndexError> {
        self.with_conn("remove files", |c| {
            for path in paths {
                c.prepare_cached(
                    "DELETE FROM files WHERE commit_hash = ?2 AND path = ?3
                     AND repo = (SELECT id FROM repos WHERE folder = ?1)",
                )?
                .execute(params![repo.folder_name(), commit, path])?;
            }
            Ok(())
        })
    }

    pub fn remove_commit(&self, repo: &RepoId, commit: &str) -> Result<(), IndexError> {
        self.with_conn("remove a commit", |c| {
            let tx = write_tx(c)?;
            tx.prepare_cached(
                "DELETE FROM files WHERE commit_hash = ?2
                 AND repo = (SELECT id FROM repos WHERE folder = ?1)",
            )?
            .execute(params![repo.folder_name(), commit])?;
            tx.prepare_cached(
                "DELETE FROM revisions WHERE commit_hash = ?2
                 AND repo = (SELECT id FROM repos WHERE folder = ?1)",
            )?
            .execute(params![repo.folder_name(), commit])?;
            tx.commit()
        })
    }

    /// Records a complete blob; `verified` when its hash was just checked.
    pub fn record_blob(
        &self,
        repo: &RepoId,
        etag: &str,
        size: u64,
        verified: bool,
    ) -> Result<(), IndexError> {
        self.with_conn("record a blob", |c| {
            let id = repo_row(c, repo)?;
            let verified_at = verified.then(now_ms);
            c.prepare_cached(
                "INSERT INTO blobs (repo, etag, size, verified_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (repo, etag) DO UPDATE SET size = ?3,
                     verified_at = COALESCE(?4, verified_at)",
            )?
            .execute(params![id, etag, size as i64, verified_at])?;
            Ok(())
        })
    }

    /// Records a blob whose hash was just checked, as the file `stamp` describes.
    pub fn record_verified_blob(
        &self,
        repo: &RepoId,
        etag: &str,
        stamp: &BlobStamp,
    ) -> Result<(), IndexError> {
        self.with_conn("record a verified blob", |c| {
            let id = repo_row(c, repo)?;
            c.prepare_cached(
                "INSERT INTO blobs (repo, etag, size, verified_at, mtime_ns, dev, ino)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (repo, etag) DO UPDATE SET size = ?3, verified_at = ?4,
                     mtime_ns = ?5, dev = ?6, ino = ?7",
            )?
            .execute(params![
                id,
                etag,
                stamp.size as i64,
                now_ms(),
                stamp.mtime_ns,
                stamp.dev as i64,
                stamp.ino as i64
            ])?;
            Ok(())
        })
    }

    /// The stamp of the file a repo's blob was when it was last verified; `None` when it never
    /// was (found on disk, written by another tool).
    pub fn verified_stamp(
        &self,
        repo: &RepoId,
        etag: &str,
    ) -> Result<Option<BlobStamp>, IndexError> {
        self.with_conn("read a blob's stamp", |c| {
            c.prepare_cached(
                "SELECT b.size, b.mtime_ns, b.dev, b.ino FROM blobs b JOIN repos r ON r.id = b.repo
                 WHERE r.folder = ?1 AND b.etag = ?2 AND b.verified_at IS NOT NULL
                     AND b.mtime_ns IS NOT NULL",
            )?
            .query_row(params![repo.folder_name(), etag], |row| {
                Ok(BlobStamp {
                    size: row.get::<_, i64>(0)? as u64,
                    mtime_ns: row.get(1)?,
                    dev: row.get::<_, i64>(2)? as u64,
                    ino: row.get::<_, i64>(3)? as u64,
                })
            })
            .optional()
        })
    }

    /// Records that pages of `origin` used the mirror now.
    pub fn record_origin_use(&self, origin: &str) -> Result<(), IndexError> {
        self.with_conn("record a web origin's use", |c| {
            c.prepare_cached(
                "INSERT INTO origin_use (origin, last_used) VALUES (?1, ?2)
                 ON CONFLICT(origin) DO UPDATE SET last_used = ?2",
            )?
            .execute(params![origin, now_ms()])
            .map(|_| ())
        })
    }

    /// When each web origin last used the mirror (unix ms).
    pub fn origins_last_used(&self) -> Result<std::collections::BTreeMap<String, i64>, IndexError> {
        self.with_conn("list web origins' use", |c| {
            let mut statement = c.prepare("SELECT origin, last_used FROM origin_use")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
    }

    /// Adds what one transfer learned about a source: `bytes` served, `errors` failed attempts,
    /// and its measured `throughput` (bytes per second) when it finished a segment.
    pub fn record_source_use(
        &self,
        name: &str,
        bytes: u64,
        errors: u32,
        throughput: Option<f64>,
    ) -> Result<(), IndexError> {
        self.with_conn("record a source's use", |c| {
            c.prepare_cached(
                "INSERT INTO source_history (name, bytes, errors, throughput, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET bytes = bytes + ?2, errors = errors + ?3,
                     throughput = COALESCE(?4, throughput), updated_at = ?5",
            )?
            .execute(params![name, bytes as i64, errors, throughput, now_ms()])?;
            Ok(())
        })
    }

    /// Every source's history: name, bytes served, failed attempts, last measured throughput.
    pub fn source_history(&self) -> Result<Vec<SourceHistory>, IndexError> {
        self.with_conn("read the sources' history", |c| {
            let mut statement = c.prepare(
                "SELECT name, bytes, errors, throughput FROM source_history ORDER BY name",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(SourceHistory {
                    name: row.get(0)?,
                    bytes: row.get::<_, i64>(1)? as u64,
                    errors: row.get(2)?,
                    throughput: row.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Blobs recorded for a repo.
    pub fn blobs(&self, repo: &RepoId) -> Result<Vec<BlobRecord>, IndexError> {
        self.with_conn("list blobs", |c| {
            let mut statement = c.prepare(
                "SELECT b.etag, b.size, b.verified_at FROM blobs b JOIN repos r ON r.id = b.repo
                 WHERE r.folder = ?1 ORDER BY b.etag",
            )?;
            let rows = statement.query_map(params![repo.folder_name()], blob_from_row)?;
            rows.collect()
        })
    }

    /// Any repo's record of a blob with this etag (same etag, same content), for deduplication.
    pub fn find_blob(&self, etag: &str) -> Result<Vec<(RepoId, BlobRecord)>, IndexError> {
        self.with_conn("find a blob", |c| {
            let mut statement = c.prepare(
                "SELECT b.etag, b.size, b.verified_at, r.repo_type, r.repo_id
                 FROM blobs b JOIN repos r ON r.id = b.repo WHERE b.etag = ?1",
            )?;
            let rows = statement.query_map(params![etag], |row| {
                Ok((
                    RepoId {
                        repo_type: parse_repo_type(&row.get::<_, String>(3)?),
                        id: row.get(4)?,
                    },
                    blob_from_row(row)?,
                ))
            })?;
            rows.collect()
        })
    }

    /// Forgets a blob, and the file rows that need it.
    pub fn remove_blob(&self, repo: &RepoId, etag: &str) -> Result<(), IndexError> {
        self.with_conn("remove a blob", |c| {
            let tx = write_tx(c)?;
            tx.prepare_cached("DELETE FROM blobs WHERE etag = ?2 AND repo = (SELECT id FROM repos WHERE folder = ?1)")?.execute(
                params![repo.folder_name(), etag],
            )?;
            tx.prepare_cached("DELETE FROM files WHERE etag = ?2 AND repo = (SELECT id FROM repos WHERE folder = ?1)")?.execute(
                params![repo.folder_name(), etag],
            )?;
            tx.commit()
        })
    }

    /// Records a use of the repo through our interfaces (for LRU eviction), now.
    pub fn touch(&self, repo: &RepoId) -> Result<(), IndexError> {
        self.touch_at(repo, now_ms())
    }

    /// Records a use at a given time (unix ms).
    pub fn touch_at(&self, repo: &RepoId, at_ms: i64) -> Result<(), IndexError> {
        self.with_conn("record an access", |c| {
            let id = repo_row(c, repo)?;
            c.prepare_cached(
                "INSERT INTO access (repo, last_used) VALUES (?1, ?2)
                 ON CONFLICT (repo) DO UPDATE SET last_used = max(last_used, ?2)",
            )?
            .execute(params![id, at_ms])?;
            Ok(())
        })
    }

    /// Records a use of some variants of the repo at a given time (unix ms): the repo's use and
    /// each variant's, at the same instant, in one transaction. With no variants it is
    /// [`Index::touch_at`].
    pub fn touch_variants_at(
        &self,
        repo: &RepoId,
        variants: &[String],
        at_ms: i64,
    ) -> Result<(), IndexError> {
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let record = |c: &Connection| -> rusqlite::Result<()> {
            let id = repo_row(c, repo)?;
            c.prepare_cached(
                "INSERT INTO access (repo, last_used) VALUES (?1, ?2)
                 ON CONFLICT (repo) DO UPDATE SET last_used = max(last_used, ?2)",
            )?
            .execute(params![id, at_ms])?;
            for variant in variants {
                c.prepare_cached(
                    "INSERT INTO variant_access (repo, variant, last_used) VALUES (?1, ?2, ?3)
                     ON CONFLICT (repo, variant) DO UPDATE SET last_used = max(last_used, ?3)",
                )?
                .execute(params![id, variant, at_ms])?;
            }
            Ok(())
        };
        let action = "record the use of variants";
        let tx = conn.transaction().map_err(IndexError::sql(action))?;
        record(&tx).map_err(IndexError::sql(action))?;
        tx.commit().map_err(IndexError::sql(action))
    }

    /// Every recorded variant use, by repo and variant.
    pub fn variant_uses(&self) -> Result<Vec<VariantUse>, IndexError> {
        self.with_conn("read variant access times", |c| {
            let mut statement = c.prepare(
                "SELECT r.repo_type, r.repo_id, v.variant, v.last_used
                 FROM variant_access v JOIN repos r ON r.id = v.repo
                 ORDER BY r.repo_type, r.repo_id, v.variant",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(VariantUse {
                    repo: RepoId {
                        repo_type: parse_repo_type(&row.get::<_, String>(0)?),
                        id: row.get(1)?,
                    },
                    variant: row.get(2)?,
                    last_used: row.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Forgets the recorded use of a variant (it left the cache).
    pub fn forget_variant(&self, repo: &RepoId, variant: &str) -> Result<(), IndexError> {
        self.with_conn("forget a variant's use", |c| {
            c.prepare_cached(
                "DELETE FROM variant_access WHERE variant = ?2
                 AND repo = (SELECT id FROM repos WHERE folder = ?1)",
            )?
            .execute(params![repo.folder_name(), variant])?;
            Ok(())
        })
    }

    /// Last recorded use (unix ms).
    pub fn last_used(&self, repo: &RepoId) -> Result<Option<i64>, IndexError> {
        self.with_conn("read an access time", |c| {
            c.prepare_cached("SELECT a.last_used FROM access a JOIN repos r ON r.id = a.repo WHERE r.folder = ?1")?.query_row(
                params![repo.folder_name()],
                |row| row.get(0),
            )
            .optional()
        })
    }

    /// Pins a repo (`revision: None`) or one revision: never evicted.
    pub fn pin(&self, repo: &RepoId, revision: Option<&str>) -> Result<(), IndexError> {
        self.with_conn("pin", |c| {
            let id = repo_row(c, repo)?;
            c.prepare_cached(
                "INSERT OR IGNORE INTO pins (repo, revision, pinned_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id, revision.unwrap_or(""), now_ms()])?;
            Ok(())
        })
    }

    /// Removes a pin; with `revision: None`, every pin of the repo.
    pub fn unpin(&self, repo: &RepoId, revision: Option<&str>) -> Result<(), IndexError> {
        self.with_conn("unpin", |c| {
            let sql = match revision {
                None => "DELETE FROM pins WHERE repo = (SELECT id FROM repos WHERE folder = ?1) AND ?2 IS NULL",
                Some(_) => "DELETE FROM pins WHERE repo = (SELECT id FROM repos WHERE folder = ?1) AND revision = ?2",
            };
            c.execute(sql, params![repo.folder_name(), revision])?;
            Ok(())
        })
    }

    /// Whether any pin (repo-wide or a revision) holds the repo.
    pub fn is_pinned(&self, repo: &RepoId) -> Result<bool, IndexError> {
        self.with_conn("read pins", |c| {
            c.prepare_cached("SELECT EXISTS (SELECT 1 FROM pins p JOIN repos r ON r.id = p.repo WHERE r.folder = ?1)")?.query_row(
                params![repo.folder_name()],
                |row| row.get(0),
            )
        })
    }

    /// Every pin.
    pub fn pins(&self) -> Result<Vec<Pin>, IndexError> {
        self.with_conn("list pins", |c| {
            let mut statement = c.prepare(
                "SELECT r.repo_type, r.repo_id, p.revision FROM pins p JOIN repos r ON r.id = p.repo
                 ORDER BY r.repo_type, r.repo_id, p.revision",
            )?;
            let rows = statement.query_map([], |row| {
                let revision: String = row.get(2)?;
                Ok(Pin {
                    repo: RepoId {
                        repo_type: parse_repo_type(&row.get::<_, String>(0)?),
                        id: row.get(1)?,
                    },
                    revision: (!revision.is_empty()).then_some(revision),
                })
            })?;
            rows.collect()
        })
    }

    /// Adds `delta` to a counter (see [`metric`]).
    pub fn add_metric(&self, name: &str, delta: i64) -> Result<(), IndexError> {
        self.with_conn("update a metric", |c| {
            c.prepare_cached(
                "INSERT INTO metrics (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = value + ?2",
            )?
            .execute(params![name, delta])?;
            Ok(())
        })
    }

    /// All counters.
    pub fn metrics(&self) -> Result<BTreeMap<String, i64>, IndexError> {
        self.with_conn("read metrics", |c| {
            let mut statement = c.prepare("SELECT name, value FROM metrics ORDER BY name")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
    }

    /// Appends an event to the history. `detail` must not hold secrets.
    pub fn record_event(
        &self,
        kind: &str,
        repo: Option<&RepoId>,
        detail: &str,
    ) -> Result<i64, IndexError> {
        self.with_conn("record an event", |c| {
            c.prepare_cached(
                "INSERT INTO events (at, kind, repo, detail) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![now_ms(), kind, repo.map(|r| r.to_string()), detail])?;
            Ok(c.last_insert_rowid())
        })
    }

    /// The latest events, newest first.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<EventRecord>, IndexError> {
        self.with_conn("read events", |c| {
            let mut statement = c.prepare(
                "SELECT id, at, kind, repo, detail FROM events ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = statement.query_map(params![limit as i64], |row| {
                Ok(EventRecord {
                    id: row.get(0)?,
                    at: row.get(1)?,
                    kind: row.get(2)?,
                    repo: row.get(3)?,
                    detail: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }
}

fn parse_repo_type(kind: &str) -> RepoType {
    match kind {
        "dataset" => RepoType::Dataset,
        "space" => RepoType::Space,
        _ => RepoType::Model,
    }
}

fn repo_type_name(kind: RepoType) -> &'static str {
    match kind {
        RepoType::Model => "model",
        RepoType::Dataset => "dataset",
        RepoType::Space => "space",
    }
}

fn repo_row(c: &Connection, repo: &RepoId) -> rusqlite::Result<i64> {
    c.prepare_cached("INSERT OR IGNORE INTO repos (repo_type, repo_id, folder, first_seen) VALUES (?1, ?2, ?3, ?4)")?.execute(
        params![
            repo_type_name(repo.repo_type),
            repo.id,
            repo.folder_name(),
            now_ms()
        ],
    )?;
    c.prepare_cached("SELECT id FROM repos WHERE folder = ?1")?
        .query_row(params![repo.folder_name()], |row| row.get(0))
}

fn blob_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<BlobRecord> {
    Ok(BlobRecord {
        etag: row.get(0)?,
        size: row.get::<_, i64>(1)? as u64,
        verified_at: row.get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoId {
        RepoId::model("org/tiny").unwrap()
    }

    #[test]
    fn migrations_apply_once_and_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        assert_eq!(index.schema_version().unwrap(), schema::MIGRATIONS.len());
        drop(index);
        let index = Index::open(dir.path()).unwrap();
        assert_eq!(index.schema_version().unwrap(), schema::MIGRATIONS.len());
        let mode: String = index
            .with_conn("read", |c| {
                c.prepare_cached("PRAGMA journal_mode")?
                    .query_row([], |r| r.get(0))
            })
            .unwrap();
        assert_eq!(mode, "wal");
        index
            .with_conn("fake a future migration", |c| {
                c.prepare_cached(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)",
                )?
                .execute([])
            })
            .unwrap();
        drop(index);
        let err = Index::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IndexTooNew);
        assert!(err.to_string().contains("newer Model Cache"), "{err}");
    }

    #[test]
    fn repos_revisions_files_blobs_round_trip() {
        let index = Index::in_memory().unwrap();
        let repo = repo();
        let commit = "a".repeat(40);
        index.record_revision(&repo, "main", &commit).unwrap();
        assert_eq!(
            index.revision_commit(&repo, "main").unwrap(),
            Some(commit.clone())
        );
        assert_eq!(index.revision_commit(&repo, "dev").unwrap(), None);
        let file = FileRecord {
            path: "model.gguf".into(),
            etag: "b".repeat(64),
            size: 10,
            is_lfs: true,
            sha256: Some("b".repeat(64)),
        };
        index
            .record_files(&repo, &commit, std::slice::from_ref(&file))
            .unwrap();
        assert_eq!(index.files(&repo, &commit).unwrap(), vec![file.clone()]);
        index.record_blob(&repo, &file.etag, 10, true).unwrap();
        index.record_blob(&repo, &file.etag, 10, false).unwrap();
        let blobs = index.blobs(&repo).unwrap();
        assert!(
            blobs[0].verified_at.is_some(),
            "a later unverified sighting keeps the verification time"
        );
        assert_eq!(index.find_blob(&file.etag).unwrap().len(), 1);
        index.remove_blob(&repo, &file.etag).unwrap();
        assert!(index.files(&repo, &commit).unwrap().is_empty());
        assert!(index.blobs(&repo).unwrap().is_empty());
    }

    #[test]
    fn access_pins_metrics_events() {
        let index = Index::in_memory().unwrap();
        let repo = repo();
        index.touch_at(&repo, 2000).unwrap();
        index.touch_at(&repo, 1000).unwrap();
        assert_eq!(index.last_used(&repo).unwrap(), Some(2000));
        assert!(!index.is_pinned(&repo).unwrap());
        index.pin(&repo, Some("main")).unwrap();
        index.pin(&repo, None).unwrap();
        assert!(index.is_pinned(&repo).unwrap());
        assert_eq!(index.pins().unwrap().len(), 2);
        index.unpin(&repo, Some("main")).unwrap();
        assert_eq!(
            index.pins().unwrap(),
            vec![Pin {
                repo: repo.clone(),
                revision: None
            }]
        );
        index.unpin(&repo, None).unwrap();
        assert!(!index.is_pinned(&repo).unwrap());
        index.add_metric(metric::HITS, 2).unwrap();
        index.add_metric(metric::HITS, 3).unwrap();
        assert_eq!(index.metrics().unwrap()[metric::HITS], 5);
        index.record_event("downloaded", Some(&repo), "x").unwrap();
        let events = index.recent_events(10).unwrap();
        assert_eq!(events[0].kind, "downloaded");
        assert_eq!(events[0].repo.as_deref(), Some("org/tiny"));
        let repos = index.repos().unwrap();
        assert_eq!(repos.len(), 1);
        assert_eq!(repos[0].repo, repo);
        index.remove_repo(&repo).unwrap();
        assert!(index.repos().unwrap().is_empty());
        assert!(index.last_used(&repo).unwrap().is_none(), "cascade");
    }

    #[test]
    fn variant_uses_record_the_repo_too_and_keep_the_latest() {
        let index = Index::in_memory().unwrap();
        let repo = repo();
        let q4 = "gguf:m-Q4_K_M".to_string();
        let q8 = "gguf:m-Q8_0".to_string();
        index
            .touch_variants_at(&repo, &[q4.clone(), q8.clone()], 1000)
            .unwrap();
        index
            .touch_variants_at(&repo, std::slice::from_ref(&q8), 3000)
            .unwrap();
        index
            .touch_variants_at(&repo, std::slice::from_ref(&q4), 2000)
            .unwrap();
        index
            .touch_variants_at(&repo, std::slice::from_ref(&q8), 500)
            .unwrap();
        assert_eq!(index.last_used(&repo).unwrap(), Some(3000));
        let uses: Vec<(String, i64)> = index
            .variant_uses()
            .unwrap()
            .into_iter()
            .map(|u| (u.variant, u.last_used))
            .collect();
        assert_eq!(uses, [(q4.clone(), 2000), (q8.clone(), 3000)]);
        index.forget_variant(&repo, &q4).unwrap();
        assert_eq!(index.variant_uses().unwrap().len(), 1);
        index.remove_repo(&repo).unwrap();
        assert!(index.variant_uses().unwrap().is_empty(), "cascade");
    }
}
