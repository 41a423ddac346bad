//! Tokens and who may see what.
//!
//! The emulator knows a table of tokens. A request is anonymous (no `Authorization`), made with
//! a known token, or made with an unknown token (answered `401 Invalid credentials in
//! Authorization header`, as the Hub does for a bad or expired token). A known token is valid
//! everywhere and grants access to private repos and to gated repos' files if it has access to
//! all repos or to that repo by id.
//!
//! [`TokenTable::demo`] holds `hf_demo_token` (access to every repo) and `hf_other_token`
//! (a valid token with no access to private or gated repos).

use std::collections::{HashMap, HashSet};

/// The token with access to every demo repo.
pub const DEMO_TOKEN: &str = "hf_demo_token";
/// A valid token with no special access (gated repos answer 403, private ones 404).
pub const OTHER_TOKEN: &str = "hf_other_token";

/// What a token may access.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenAccess {
    /// Access to every private and gated repo.
    pub all_repos: bool,
    /// Access to these repo ids (`org/name`).
    pub repos: HashSet<String>,
}

impl TokenAccess {
    /// Access to everything.
    pub fn all() -> Self {
        Self {
            all_repos: true,
            repos: HashSet::new(),
        }
    }

    /// Access to no private or gated repo.
    pub fn none() -> Self {
        Self::default()
    }

    /// Access to the given repos.
    pub fn repos<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> Self {
        Self {
            all_repos: false,
            repos: ids.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether this token may access `repo_id`.
    pub fn allows(&self, repo_id: &str) -> bool {
        self.all_repos || self.repos.contains(repo_id)
    }
}

/// The tokens the emulator accepts.
#[derive(Clone, Debug, Default)]
pub struct TokenTable {
    tokens: HashMap<String, TokenAccess>,
}

impl TokenTable {
    /// No tokens: every `Authorization` is invalid.
    pub fn empty() -> Self {
        Self::default()
    }

    /// [`DEMO_TOKEN`] with access to everything and [`OTHER_TOKEN`] with none.
    pub fn demo() -> Self {
        let mut t = Self::empty();
        t.insert(DEMO_TOKEN, TokenAccess::all());
        t.insert(OTHER_TOKEN, TokenAccess::none());
        t
    }

    /// Adds or replaces a token.
    pub fn insert(&mut self, token: impl Into<String>, access: TokenAccess) {
        self.tokens.insert(token.into(), access);
    }

    /// Classifies a request by its `Authorization` header value.
    pub fn caller(&self, authorization: Option<&str>) -> Caller {
        let Some(value) = authorization else {
            return Caller::Anonymous;
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(value)
            .trim();
        match self.tokens.get(token) {
            Some(access) => Caller::Token(access.clone()),
            None => Caller::Invalid,
        }
    }
}

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No `Authorization` header.
    Anonymous,
    /// A known token.
    Token(TokenAccess),
    /// An `Authorization` header with an unknown token.
    Invalid,
}

/// A short, non-reversible fingerprint of a secret for logs (`sha256:` and 12 hex digits).
pub fn fingerprint(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(secret.as_bytes()));
    format!("sha256:{}", &h[..12])
}
