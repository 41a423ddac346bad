//! How a running server is found, and why there is only one per app-data folder.
//!
//! A server announces itself in its app-data folder with a [`Discovery`] record in
//! [`DISCOVERY_FILE`] (`api.json`): its URL, its process id and the name of the secret file it
//! wrote at this start (see [`crate::secret`]). [`crate::client::Client::discover`] reads it and
//! trusts it only when the URL is on this machine and the process is alive.
//!
//! **Invariant:** one server per folder. A server holds an exclusive lock on [`LOCK_FILE`] from
//! before it writes its secret until it has removed its record (`Instance`); a second start
//! (the app while `mcache serve` runs, or the other way round) cannot take it and is refused
//! with [`ServeError::AlreadyRunning`], naming the first server's pid, instead of replacing
//! the secret the first one checks. The lock, not the recorded pid, decides: it ends with its
//! process even on a crash, while a pid may be reused by an unrelated process. Like the store's
//! blob locks, the lock file is never deleted (a process waiting on a deleted file's lock would
//! share the folder with the next one).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ServeError;
use crate::secret::TOKEN_FILE;

/// Name of the discovery file in the app-data folder.
pub const DISCOVERY_FILE: &str = "api.json";

/// Name of the lock file a running server holds in the app-data folder.
pub const LOCK_FILE: &str = "api.lock";

/// The discovery record: `{"url": "http://127.0.0.1:PORT", "pid": N, "secret_file": "api-token",
/// "mirror_url": "http://127.0.0.1:PORT"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// The server's base URL.
    pub url: String,
    /// The server's process id.
    pub pid: u32,
    /// The file, in the same folder, holding the secret this server wrote when it started.
    /// Records of servers older than this field name none: theirs is `api-token`.
    #[serde(default = "default_secret_file")]
    pub secret_file: String,
    /// The local mirror's base URL (the cache as a Hub, for `HF_ENDPOINT`), when one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_url: Option<String>,
}

fn default_secret_file() -> String {
    TOKEN_FILE.to_string()
}

impl Discovery {
    /// Reads the record in `data_dir`; `None` when there is none or it cannot be parsed.
    pub(crate) fn read(data_dir: &Path) -> Option<Discovery> {
        let text = std::fs::read_to_string(data_dir.join(DISCOVERY_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The lock that makes this process the one server of a folder; released when dropped.
#[derive(Debug)]
pub(crate) struct Instance {
    _lock: File,
    data_dir: PathBuf,
    announced: bool,
}

impl Instance {
    /// Takes the folder's server lock, or says which server holds it.
    pub(crate) fn claim(data_dir: &Path) -> Result<Instance, ServeError> {
        let path = data_dir.join(LOCK_FILE);
        let lock_error = |source| ServeError::Lock {
            path: path.clone(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(lock_error)?;
        match file.try_lock() {
            Ok(()) => Ok(Instance {
                _lock: file,
                data_dir: data_dir.to_path_buf(),
                announced: false,
            }),
            Err(TryLockError::WouldBlock) => Err(ServeError::AlreadyRunning {
                data_dir: data_dir.to_path_buf(),
                running: Discovery::read(data_dir),
            }),
            Err(TryLockError::Error(source)) => Err(lock_error(source)),
        }
    }

    /// Writes the discovery record (owner-only, atomically).
    pub(crate) fn announce(&mut self, record: &Discovery) -> Result<(), ServeError> {
        let path = self.data_dir.join(DISCOVERY_FILE);
        let body = serde_json::to_vec(record).map_err(|e| ServeError::Discovery {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        model_cache::store::atomic::write_private(&path, &body)
            .map_err(|source| ServeError::Discovery { path, source })?;
        self.announced = true;
        Ok(())
    }
}

impl Drop for Instance {
    /// Removes the record this server wrote, while it still holds the lock: no other server
    /// can have replaced it meanwhile.
    fn drop(&mut self) {
        if !self.announced {
            return;
        }
        let path = self.data_dir.join(DISCOVERY_FILE);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "Cannot remove the discovery file");
        }
    }
}
