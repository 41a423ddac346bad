//! Secrets that must never reach a log, an error message or the index.

use std::fmt;

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

    #[test]
    fn token_is_redacted() {
        let token = Token::new("hf_secret\n").unwrap();
        assert_eq!(token.expose(), "hf_secret");
        assert!(!format!("{token:?} {token}").contains("hf_secret"));
        assert!(Token::new("  ").is_none());
    }
}
