//! What is in flight in the cache, across processes: downloads filling a snapshot and writing
//! blobs, and reads of cached files. Every removal (gc, prune, evict, rm, cleanup) reads this
//! list first, whichever process runs it.
//!
//! Each process that registers work owns a lock file `<data_dir>/in-flight/<token>.lock`, held
//! (an OS file lock) for as long as the process lives. Rows carry the owner's token; a row whose
//! owner's lock can be taken by someone else belongs to a dead process (killed, crashed, the
//! machine rebooted) and expires when the list is next read. Tokens are random, so a reused pid
//! never revives a dead owner's rows.
//!
//! **Architecture Invariant:** an entry lives exactly as long as its [`InFlightGuard`] (dropped
//! on success, error or cancel) or its process.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rusqlite::params;

use super::{Index, IndexError};

/// The migration that creates the in-flight table (appended to the index's list).
pub(crate) const MIGRATION: &str = "
CREATE TABLE in_flight (
    id          INTEGER PRIMARY KEY,
    owner       TEXT NOT NULL,             -- the process's token (its lock file's name)
    pid         INTEGER NOT NULL,          -- for people reading the table
    kind        TEXT NOT NULL,             -- download | read
    cache_root  TEXT NOT NULL,             -- the hub cache the work is in
    repo        TEXT NOT NULL,             -- folder name, models--org--name
    commit_hash TEXT,                      -- the snapshot being filled or read
    etag        TEXT,                      -- the blob being written or read
    reserved    INTEGER NOT NULL DEFAULT 0,-- bytes a download has preallocated
    started_at  INTEGER NOT NULL
);
CREATE INDEX in_flight_repo ON in_flight(cache_root, repo);
";

/// Folder of the owners' lock files, in the data folder.
pub const OWNERS_DIR: &str = "in-flight";

/// What an entry is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Filling a snapshot (and, with an etag, writing that blob's partial file).
    Download,
    /// Reading a cached file (a runner's path, a served range).
    Read,
}

impl Activity {
    fn as_str(self) -> &'static str {
        match self {
            Activity::Download => "download",
            Activity::Read => "read",
        }
    }
}

/// One piece of work in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub activity: Activity,
    pub cache_root: PathBuf,
    /// The repo's folder name (`models--org--name`).
    pub repo: String,
    pub commit: Option<String>,
    pub etag: Option<String>,
    /// Bytes a download has preallocated for its partial file: that download's, not the cache's.
    pub reserved: u64,
    pub pid: u32,
}

/// The process's owner identity: a random token and its held lock file.
#[derive(Debug)]
pub(crate) struct Owner {
    token: String,
    // Held for the life of the process; dropping it would expire this process's entries.
    _lock: Option<File>,
}

impl Owner {
    fn create(data_dir: Option<&Path>) -> Result<Owner, IndexError> {
        let token = format!("{:016x}{:08x}", rand::random::<u64>(), std::process::id());
        let Some(data_dir) = data_dir else {
            return Ok(Owner { token, _lock: None });
        };
        let dir = data_dir.join(OWNERS_DIR);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IndexError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(format!("{token}.lock"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(Owner {
            token,
            _lock: Some(file),
        })
    }
}

/// Shared by the clones of one [`Index`]: the process's owner, made on first use.
pub(crate) type OwnerCell = Arc<OnceLock<Owner>>;

/// Removes its entry when dropped.
#[derive(Debug)]
#[must_use = "the entry is removed when the guard is dropped"]
pub struct InFlightGuard {
    index: Index,
    id: i64,
}

impl InFlightGuard {
    /// Records that the download now fills `commit` (known once the revision is resolved).
    pub fn set_commit(&self, commit: &str) -> Result<(), IndexError> {
        self.index.with_conn("record a snapshot in flight", |c| {
            c.prepare_cached("UPDATE in_flight SET commit_hash = ?2 WHERE id = ?1")?
                .execute(params![self.id, commit])
                .map(|_| ())
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let result = self.index.with_conn("end work in flight", |c| {
            c.prepare_cached("DELETE FROM in_flight WHERE id = ?1")?
                .execute(params![self.id])
        });
        if let Err(error) = result {
            tracing::warn!(%error, "could not end an in-flight entry");
        }
    }
}

fn owner_alive(data_dir: Option<&Path>, token: &str) -> bool {
    let Some(data_dir) = data_dir else {
        // An in-memory index is private to this process: every owner is this process.
        return true;
    };
    let path = data_dir.join(OWNERS_DIR).join(format!("{token}.lock"));
    let Ok(file) = File::open(&path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        // Locks unsupported on this file system: keep the entry rather than remove live work.
        Err(TryLockError::Error(_)) => true,
    }
}

impl Index {
    fn owner(&self) -> Result<&Owner, IndexError> {
        if let Some(owner) = self.owner.get() {
            return Ok(owner);
        }
        let owner = Owner::create(self.data_dir())?;
        // Another thread may have won the race; its owner is used and ours is dropped.
        let _ = self.owner.set(owner);
        Ok(self.owner.get().expect("the owner was just set"))
    }

    fn data_dir(&self) -> Option<&Path> {
        self.path.as_deref().and_then(Path::parent)
    }

    /// Registers work in flight; it ends when the guard is dropped (or the process dies).
    pub fn begin_in_flight(
        &self,
        activity: Activity,
        cache_root: &Path,
        repo: &str,
        commit: Option<&str>,
        etag: Option<&str>,
        reserved: u64,
    ) -> Result<InFlightGuard, IndexError> {
        let owner = self.owner()?.token.clone();
        let id = self.with_conn("register work in flight", |c| {
            c.prepare_cached(
                "INSERT INTO in_flight
                     (owner, pid, kind, cache_root, repo, commit_hash, etag, reserved, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                owner,
                std::process::id(),
                activity.as_str(),
                cache_root.to_string_lossy(),
                repo,
                commit,
                etag,
                reserved as i64,
                super::now_ms()
            ])?;
            Ok(c.last_insert_rowid())
        })?;
        Ok(InFlightGuard {
            index: self.clone(),
            id,
        })
    }

    /// Everything in flight in `cache_root`, from every process; entries of dead processes are
    /// removed first (with their owners' lock files).
    pub fn in_flight(&self, cache_root: &Path) -> Result<Vec<InFlight>, IndexError> {
        let own = self.owner.get().map(|o| o.token.clone());
        let owners: Vec<String> = self.with_conn("list in-flight owners", |c| {
            let mut statement = c.prepare("SELECT DISTINCT owner FROM in_flight")?;
            let rows = statement.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        for token in owners {
            if Some(&token) == own.as_ref() || owner_alive(self.data_dir(), &token) {
                continue;
            }
            tracing::debug!(
                owner = token,
                "expiring the in-flight entries of a dead process"
            );
            self.with_conn("expire in-flight entries", |c| {
                c.prepare_cached("DELETE FROM in_flight WHERE owner = ?1")?
                    .execute(params![token])
            })?;
            if let Some(dir) = self.data_dir() {
                let _ = std::fs::remove_file(dir.join(OWNERS_DIR).join(format!("{token}.lock")));
            }
        }
        self.with_conn("list work in flight", |c| {
            let mut statement = c.prepare(
                "SELECT kind, cache_root, repo, commit_hash, etag, reserved, pid FROM in_flight
                 WHERE cache_root = ?1",
            )?;
            let rows = statement.query_map(params![cache_root.to_string_lossy()], |r| {
                let kind: String = r.get(0)?;
                Ok(InFlight {
                    activity: if kind == "read" {
                        Activity::Read
                    } else {
                        Activity::Download
                    },
                    cache_root: PathBuf::from(r.get::<_, String>(1)?),
                    repo: r.get(2)?,
                    commit: r.get(3)?,
                    etag: r.get(4)?,
                    reserved: r.get::<_, i64>(5)?.max(0) as u64,
                    pid: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_with_their_guard_and_their_process() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("hub");
        let index = Index::open(dir.path()).unwrap();
        let guard = index
            .begin_in_flight(
                Activity::Download,
                &root,
                "models--o--m",
                None,
                Some("e"),
                10,
            )
            .unwrap();
        guard.set_commit(&"c".repeat(40)).unwrap();
        let listed = index.in_flight(&root).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].commit.as_deref(), Some("c".repeat(40).as_str()));
        assert_eq!(listed[0].reserved, 10);
        assert!(
            index
                .in_flight(&dir.path().join("other"))
                .unwrap()
                .is_empty()
        );
        drop(guard);
        assert!(index.in_flight(&root).unwrap().is_empty());

        // A row whose owner holds no lock (a dead process) expires at the next read, while one
        // whose owner is alive (here: another open index of this process, with its own owner)
        // stays.
        let other = Index::open(dir.path()).unwrap();
        let _alive = other
            .begin_in_flight(Activity::Read, &root, "models--o--m", None, None, 0)
            .unwrap();
        index
            .with_conn("plant a dead owner's row", |c| {
                c.prepare_cached(
                    "INSERT INTO in_flight (owner, pid, kind, cache_root, repo, started_at)
                     VALUES ('deadbeef', 1, 'download', ?1, 'models--o--m', 0)",
                )?
                .execute(params![root.to_string_lossy()])
            })
            .unwrap();
        let listed = index.in_flight(&root).unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].activity, Activity::Read);
    }
}
