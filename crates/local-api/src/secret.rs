//! The API secret: 32 random bytes, hex encoded, written to `data_dir/api-token` afresh by every
//! server start, and the owner-only app-data folder that holds it.
//!
//! A secret lives as long as the server that made it. Each start writes a new one (the discovery
//! record `api.json` names its file, see [`crate::discovery`]), so a secret that leaked (a copied
//! UI link, a shell history) stops working at the next restart, and a file an earlier start left
//! is never trusted again, whoever could read it meanwhile. Only one server uses a folder at a
//! time (see [`crate::discovery`]), so a start never replaces the secret of a running one.
//!
//! The file is written through [`model_cache::store::atomic::write_private`]: a temp file with an
//! unpredictable name, created exclusively and without following links, mode 0600 from the
//! start, synced, then renamed; a crash never leaves a truncated secret. The folder is made
//! owner-only (0700 on Unix) by [`create_private_dir`], so other users cannot even list it.
//! The secret never appears in logs or errors.

use std::fmt;
use std::path::{Path, PathBuf};

use model_cache::store::atomic;

use rand::RngCore;

/// File name of the secret inside the app-data folder.
pub const TOKEN_FILE: &str = "api-token";

/// Bytes of entropy in a secret.
const SECRET_BYTES: usize = 32;

/// Errors preparing the data folder or writing the secret.
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
    /// The data folder could not be made owner-only.
    #[error("Cannot make the data folder `{path}` private to its owner: {source}")]
    RestrictDir {
        /// The folder.
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
    /// process's secret file.
    pub fn new(secret: impl Into<String>) -> ApiSecret {
        ApiSecret(secret.into())
    }

    /// A new random secret.
    pub fn generate() -> ApiSecret {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        ApiSecret(hex::encode(bytes))
    }

    /// The secret as sent in `Authorization: Bearer ...`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares a presented secret without leaking, through timing, how many leading bytes match.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }

    /// Generates a secret and writes it to `data_dir/api-token` (mode 0600), replacing whatever
    /// was there: a secret is never read back, whatever its permissions, so one another user
    /// could read is never reused.
    pub(crate) fn write_new(data_dir: &Path) -> Result<ApiSecret, SecretError> {
        let path = data_dir.join(TOKEN_FILE);
        let secret = ApiSecret::generate();
        atomic::write_private(&path, secret.0.as_bytes())
            .map_err(|source| SecretError::Write { path, source })?;
        tracing::debug!(path = %data_dir.join(TOKEN_FILE).display(), "Wrote a new API secret");
        Ok(secret)
    }
}

impl fmt::Debug for ApiSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiSecret(<redacted>)")
    }
}

/// Creates the app-data folder owner-only (0700 on Unix), or restricts an existing one whose
/// group or others have any access, so that the secret, the discovery record and the index
/// are out of other users' reach. Elsewhere the folder is created and its ACLs left alone.
pub fn create_private_dir(path: &Path) -> Result<(), SecretError> {
    use model_cache::secret::PrivateDirError;
    model_cache::secret::create_private_dir(path).map_err(|error| match error {
        PrivateDirError::Create(source) => SecretError::CreateDir {
            path: path.to_path_buf(),
            source,
        },
        PrivateDirError::Restrict(source) => SecretError::RestrictDir {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Whether `text` looks like a secret this module writes.
#[cfg(test)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn every_secret_is_new_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let first = ApiSecret::write_new(dir.path()).unwrap();
        let second = ApiSecret::write_new(dir.path()).unwrap();
        assert_ne!(first, second);
        assert!(is_well_formed(first.expose()));
        assert_eq!(
            fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap(),
            second.expose()
        );
        assert!(first.matches(first.expose()));
        assert!(!first.matches("nope"));
        assert_eq!(format!("{first:?}"), "ApiSecret(<redacted>)");
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

        let secret = ApiSecret::write_new(dir.path()).unwrap();

        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        let mode = fs::metadata(&victim).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let path = dir.path().join(TOKEN_FILE);
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap(), secret.expose());
    }

    /// A secret others could read was chmodded and kept: whoever read it meanwhile could use it.
    #[cfg(unix)]
    #[test]
    fn a_world_readable_secret_is_replaced_not_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        let leaked = "ab".repeat(32);
        fs::write(&path, &leaked).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let secret = ApiSecret::write_new(dir.path()).unwrap();
        assert_ne!(secret.expose(), leaked);
        assert!(!secret.matches(&leaked));
        assert_eq!(fs::read_to_string(&path).unwrap(), secret.expose());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn the_data_folder_is_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("parent").join("data");
        create_private_dir(&data).unwrap();
        let mode = fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Again on an existing folder: nothing changes, nothing fails.
        create_private_dir(&data).unwrap();
        let mode = fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[cfg(unix)]
    #[test]
    fn a_data_folder_open_to_others_is_restricted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&data).unwrap();
        let mode = fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_file_in_place_of_the_data_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::write(&data, "").unwrap();
        let error = create_private_dir(&data).unwrap_err();
        assert!(matches!(error, SecretError::CreateDir { .. }), "{error}");
    }
}
