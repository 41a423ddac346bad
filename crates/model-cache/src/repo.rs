//! Repository identity: what a repo is called on the Hub and in the cache.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kind of a Hub repository. It selects the API path (`/api/models/...`), the URL prefix of
/// `resolve` links (`datasets/...`) and the cache folder prefix (`models--...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RepoType {
    #[default]
    Model,
    Dataset,
    Space,
}

impl RepoType {
    /// Plural form used in API paths and cache folder names: `models`, `datasets`, `spaces`.
    pub fn plural(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
            RepoType::Space => "spaces",
        }
    }

    /// Prefix of non-API paths such as `resolve`: empty for models.
    pub fn url_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
            RepoType::Space => "spaces/",
        }
    }
}

/// A repository on the Hub: its type and its id (`namespace/name`, or a legacy single segment).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RepoId {
    pub repo_type: RepoType,
    pub id: String,
}

/// A repo id that cannot name a Hub repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid repo id `{input}`: {reason}")]
pub struct InvalidRepoId {
    pub input: String,
    pub reason: &'static str,
}

impl RepoId {
    /// A model repo, after validation.
    pub fn model(id: &str) -> Result<Self, InvalidRepoId> {
        Self::new(RepoType::Model, id)
    }

    /// Validates `id` the way the Hub does: one or two segments of `[A-Za-z0-9._-]`, no `--`,
    /// no leading or trailing `.`/`-`, at most 96 characters per segment.
    pub fn new(repo_type: RepoType, id: &str) -> Result<Self, InvalidRepoId> {
        let bad = |reason| InvalidRepoId {
            input: id.to_string(),
            reason,
        };
        let segments: Vec<&str> = id.split('/').collect();
        if segments.is_empty() || segments.len() > 2 {
            return Err(bad("expected `namespace/name`"));
        }
        for segment in &segments {
            if segment.is_empty() {
                return Err(bad("empty segment"));
            }
            if segment.len() > 96 {
                return Err(bad("segment longer than 96 characters"));
            }
            if !segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(bad("only letters, digits, `.`, `_` and `-` are allowed"));
            }
            if segment.contains("--") || segment.contains("..") {
                return Err(bad("`--` and `..` are not allowed"));
            }
            if segment.starts_with(['.', '-']) || segment.ends_with(['.', '-']) {
                return Err(bad("segments cannot start or end with `.` or `-`"));
            }
        }
        Ok(RepoId {
            repo_type,
            id: id.to_string(),
        })
    }

    /// The cache folder name used by `huggingface_hub`: `models--org--name`.
    pub fn folder_name(&self) -> String {
        let mut name = self.repo_type.plural().to_string();
        for segment in self.id.split('/') {
            name.push_str("--");
            name.push_str(segment);
        }
        name
    }

    /// Parses a cache folder name (`models--org--name`) back into a repo id.
    pub fn from_folder_name(folder: &str) -> Option<Self> {
        let (kind, rest) = folder.split_once("--")?;
        let repo_type = match kind {
            "models" => RepoType::Model,
            "datasets" => RepoType::Dataset,
            "spaces" => RepoType::Space,
            _ => return None,
        };
        RepoId::new(repo_type, &rest.replace("--", "/")).ok()
    }

    /// Accepts what a user pastes: `org/name`, `datasets/org/name`, or a Hub URL such as
    /// `https://huggingface.co/org/name/blob/main/x.gguf` (the part after the repo is ignored).
    pub fn parse_user_input(input: &str) -> Result<Self, InvalidRepoId> {
        let mut text = input.trim();
        for scheme in ["https://", "http://"] {
            if let Some(rest) = text.strip_prefix(scheme) {
                text = rest.split_once('/').map(|(_, path)| path).unwrap_or("");
            }
        }
        let text = text.trim_matches('/');
        let (repo_type, text) = if let Some(rest) = text.strip_prefix("datasets/") {
            (RepoType::Dataset, rest)
        } else if let Some(rest) = text.strip_prefix("spaces/") {
            (RepoType::Space, rest)
        } else if let Some(rest) = text.strip_prefix("models/") {
            (RepoType::Model, rest)
        } else {
            (RepoType::Model, text)
        };
        let mut parts = text.split('/');
        let first = parts.next().unwrap_or("");
        let id = match parts.next() {
            Some(second)
                if !second.is_empty() && !matches!(second, "resolve" | "blob" | "tree") =>
            {
                format!("{first}/{second}")
            }
            _ => first.to_string(),
        };
        RepoId::new(repo_type, &id).map_err(|mut e| {
            e.input = input.to_string();
            e
        })
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.repo_type {
            RepoType::Model => f.write_str(&self.id),
            other => write!(f, "{}/{}", other.plural(), self.id),
        }
    }
}

impl FromStr for RepoId {
    type Err = InvalidRepoId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RepoId::parse_user_input(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_match_huggingface_hub() {
        assert_eq!(
            RepoId::model("org/tiny").unwrap().folder_name(),
            "models--org--tiny"
        );
        assert_eq!(RepoId::model("gpt2").unwrap().folder_name(), "models--gpt2");
        let ds = RepoId::new(RepoType::Dataset, "org/ds").unwrap();
        assert_eq!(ds.folder_name(), "datasets--org--ds");
        assert_eq!(RepoId::from_folder_name("datasets--org--ds"), Some(ds));
        assert_eq!(RepoId::from_folder_name("CACHEDIR.TAG"), None);
    }

    #[test]
    fn user_input_accepts_urls_and_rejects_traversal() {
        let id = RepoId::parse_user_input("https://huggingface.co/demo/tiny-gguf/blob/main/x.gguf")
            .unwrap();
        assert_eq!(id, RepoId::model("demo/tiny-gguf").unwrap());
        let ds = RepoId::parse_user_input("datasets/org/ds").unwrap();
        assert_eq!(ds.repo_type, RepoType::Dataset);
        assert!(RepoId::parse_user_input("../etc").is_err());
        assert!(
            RepoId::parse_user_input("a/b/c").is_ok(),
            "extra path parts are ignored"
        );
        assert!(RepoId::model("a/b/c").is_err());
        assert!(RepoId::model("a--b/c").is_err());
        assert!(RepoId::model("").is_err());
    }
}
