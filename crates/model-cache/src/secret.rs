//! Secrets that must never reach a log, an error message or the index.

use std::fmt;
use std::path::Path;

/// Creates the app-data folder owner-only (0700 on Unix), or restricts an existing one whose
/// group or others have any access, so the index, the token file, the API secret and the
/// discovery record are out of other users' reach. Elsewhere the folder is created and its ACLs
/// left alone. Errors say which step failed: [`PrivateDirError`].
pub fn create_private_dir(path: &Path) -> Result<(), PrivateDirError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(PrivateDirError::Create)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
        Err(e) => return Err(PrivateDirError::Create(e)),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(PrivateDirError::Restrict)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "The data folder was open to other users; restricting it to its owner");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .map_err(PrivateDirError::Restrict)?;
        }
    }
    Ok(())
}

/// Why [`create_private_dir`] failed: creating the folder, or restricting its mode.
#[derive(Debug)]
pub enum PrivateDirError {
    Create(std::io::Error),
    Restrict(std::io::Error),
}

impl PrivateDirError {
    /// The I/O error behind it.
    pub fn into_io(self) -> std::io::Error {
        match self {
            PrivateDirError::Create(e) | PrivateDirError::Restrict(e) => e,
        }
    }
}

/// A Hub access token. `Debug` and `Display` print `****`; the only way to the value is
/// [`Token::expose`], which callers use at the moment they build an `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token; surrounding whitespace (a trailing newline in a token file) is dropped.
    /// Returns `None` for an empty token, and for one that could not travel in an
    /// `Authorization` header as it is (whitespace inside, control or non-ASCII characters):
    /// such a value is a mistake (two tokens pasted, a stray character), never sent as an empty
    /// or mangled header.
    pub fn new(value: impl Into<String>) -> Option<Self> {
        let value = value.into();
        let trimmed = value.trim();
        let sendable = trimmed.bytes().all(|b| b.is_ascii_graphic());
        (!trimmed.is_empty() && sendable).then(|| Token(trimmed.to_string()))
    }

    /// The raw token, for an `Authorization: Bearer` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(****)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Writes (or, for `None`, removes) a token file where `huggingface_hub` reads it, owner-only
/// (0600) and atomically ([`crate::store::atomic::write_private`]).
pub fn write_token_file(path: &std::path::Path, token: Option<&Token>) -> std::io::Result<()> {
    let Some(token) = token else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    crate::store::atomic::write_private(path, token.expose().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[cfg(unix)]
    #[test]
    fn the_data_folder_is_created_owner_only_by_the_index_too() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("app").join("data");
        crate::index::Index::open(&data).unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn only_a_value_an_authorization_header_carries_as_is_is_a_token() {
        assert_eq!(Token::new("  hf_abc\n").unwrap().expose(), "hf_abc");
        for bad in [
            "",
            "  ",
            "hf_a b",
            "hf_a\tb",
            "hf_\u{7f}",
            "hf_é",
            "hf_a\r\nX-Evil: 1",
        ] {
            assert!(Token::new(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn token_is_redacted() {
        let token = Token::new("hf_secret\n").unwrap();
        assert_eq!(token.expose(), "hf_secret");
        assert!(!format!("{token:?} {token}").contains("hf_secret"));
        assert!(Token::new("  ").is_none());
    }
}
