//! The per-install API secret: 32 random bytes, hex encoded, kept in `data_dir/api-token`.
//!
//! The file is created atomically and owner-only through
//! [`model_cache::store::atomic::write_private`] (a temporary file with mode 0600, synced, then
//! renamed) so that a crash never leaves a truncated secret, and it is reused across starts so
//! tools that read it once keep working. The secret never appears in logs or errors.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use model_cache::store::atomic;

use rand::RngCore;

/// File name of the secret inside the app-data folder.
pub const TOKEN_FILE: &str = "api-token";

/// Bytes of entropy in a secret.
const SECRET_BYTES: usize = 32;

/// Errors reading or creating the secret file.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The data folder could not be created.
    #[error("Cannot create the data folder `{path}`: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The secret file could not be read.
    #[error("Cannot read the API secret `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The secret file could not be written.
    #[error("Cannot write the API secret `{path}`: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The API secret. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiSecret(String);

impl ApiSecret {
    /// A secret read elsewhere: a [`crate::client::Client`] sends the one it found in another
    /// process's `api-token`.
    pub fn new(secret: impl Into<String>) -> ApiSecret {
        ApiSecret(secret.into())
    }

    /// The secret as sent in `Authorization: Bearer ...`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares a presented secret without leaking, through timing, how many leading bytes match.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }

    /// Reads the secret from `data_dir/api-token`, or creates it (mode 0600) when missing or
    /// malformed. Existing files with looser permissions are tightened.
    pub fn load_or_create(data_dir: &Path) -> Result<ApiSecret, SecretError> {
        fs::create_dir_all(data_dir).map_err(|source| SecretError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(TOKEN_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let text = text.trim();
                if is_well_formed(text) {
                    tighten_permissions(&path)?;
                    return Ok(ApiSecret(text.to_string()));
                }
                tracing::warn!(path = %path.display(), "The API secret file is malformed; replacing it");
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SecretError::Read { path, source }),
        }
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let secret = ApiSecret(hex::encode(bytes));
        atomic::write_private(&path, secret.0.as_bytes())
            .map_err(|source| SecretError::Write { path, source })?;
        tracing::info!(path = %data_dir.join(TOKEN_FILE).display(), "Created a new API secret");
        Ok(secret)
    }
}

impl fmt::Debug for ApiSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiSecret(<redacted>)")
    }
}

fn is_well_formed(text: &str) -> bool {
    text.len() == SECRET_BYTES * 2 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Equality whose running time depends only on the lengths, not on where the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn tighten_permissions(path: &Path) -> Result<(), SecretError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(|source| SecretError::Read {
                path: path.to_path_buf(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "The API secret was readable by others; restricting it to the owner");
            set_owner_only(path).map_err(|source| SecretError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn set_owner_only(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn secret_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ApiSecret::load_or_create(dir.path()).unwrap();
        let second = ApiSecret::load_or_create(dir.path()).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.expose().len(), 64);
        assert!(first.matches(first.expose()));
        assert!(!first.matches("nope"));
        assert_eq!(format!("{first:?}"), "ApiSecret(<redacted>)");
    }

    #[test]
    fn malformed_secret_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(TOKEN_FILE), "short").unwrap();
        let secret = ApiSecret::load_or_create(dir.path()).unwrap();
        assert!(is_well_formed(secret.expose()));
        let on_disk = fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap();
        assert_eq!(on_disk, secret.expose());
    }

    /// The secret used to be written through `.api-token.tmp-<pid>`, opened without `O_EXCL`
    /// and then chmodded by name: a symlink planted there received the secret and mode 0600.
    #[cfg(unix)]
    #[test]
    fn a_symlink_at_a_temp_name_is_never_written_through() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        let planted = dir
            .path()
            .join(format!(".{TOKEN_FILE}.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();

        let secret = ApiSecret::load_or_create(dir.path()).unwrap();

        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        let mode = fs::metadata(&victim).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let path = dir.path().join(TOKEN_FILE);
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap(), secret.expose());
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_are_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        fs::write(&path, "ab".repeat(32)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let secret = ApiSecret::load_or_create(dir.path()).unwrap();
        assert_eq!(secret.expose(), "ab".repeat(32));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
