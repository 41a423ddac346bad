//! Exit codes, and the error report printed on stderr: one `error:` line and `hint:` lines.
//!
//! Every engine error carries a stable [`ErrorKind`] (the same snake_case names the local API
//! returns in `{"error": {"kind": ...}}`); the exit code is chosen from that kind, never from the
//! message, so scripts can rely on it. Engine hints are data; [`hint_line`] words them for a
//! terminal.

use std::fmt;

use model_cache::error::{ErrorKind, Hint, diagnose};
use model_cache::units::format_size;

/// Documented in `mcache --help` and in the README; values are a contract.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit status:
  0    success
  1    error not covered below
  2    usage error (bad arguments)
  3    not found: repo, revision, file or variant
  4    authentication: gated or private repo, missing or rejected token
  5    offline: the cache does not have what was asked and the network is off
  6    not enough disk space
  7    network: the Hub could not be reached or kept failing
  8    verification failed: a cached file does not match its hash
  130  interrupted (Ctrl-C); a pull can be resumed by running it again
";

/// The process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Failure,
    Usage,
    NotFound,
    Auth,
    OfflineMiss,
    DiskFull,
    Network,
    Integrity,
    Interrupted,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::NotFound => 3,
            ExitStatus::Auth => 4,
            ExitStatus::OfflineMiss => 5,
            ExitStatus::DiskFull => 6,
            ExitStatus::Network => 7,
            ExitStatus::Integrity => 8,
            ExitStatus::Interrupted => 130,
        }
    }

    /// The exit status of an engine error kind. Every kind is listed (a test checks it over
    /// [`ErrorKind::ALL`]); `None` only for a kind added to the engine after this list.
    pub fn for_kind(kind: ErrorKind) -> Option<ExitStatus> {
        use ErrorKind as K;
        Some(match kind {
            K::RepoNotFound
            | K::RevisionNotFound
            | K::EntryNotFound
            | K::NotCached
            | K::NoSuchVariant
            | K::NothingSelected
            | K::NoSuchJob => ExitStatus::NotFound,
            K::Gated | K::Unauthorized | K::BadToken | K::Forbidden => ExitStatus::Auth,
            K::Offline | K::OfflineMiss => ExitStatus::OfflineMiss,
            K::DiskFull => ExitStatus::DiskFull,
            K::Network
            | K::RateLimited
            | K::Http
            | K::RetriesExhausted
            | K::InvalidResponse
            | K::RangeNotSatisfiable
            | K::Protocol
            | K::UntrustedCertificate
            | K::UpstreamChanged => ExitStatus::Network,
            K::Integrity => ExitStatus::Integrity,
            K::InvalidInput | K::BadPattern | K::InvalidEndpoint => ExitStatus::Usage,
            K::Cancelled => ExitStatus::Interrupted,
            K::UnsafePath
            | K::PathEscape
            | K::InvalidName
            | K::Io
            | K::BlobMissing
            | K::LockTimeout
            | K::Store
            | K::Index
            | K::IndexTooNew
            | K::InvalidFormat
            | K::JobFinished
            | K::InvalidJob
            | K::InUse
            | K::Pinned
            | K::Preferences
            | K::CacheUnavailable
            | K::Unsupported
            | K::Policy => ExitStatus::Failure,
            _ => return None,
        })
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

/// What kind of failure a command ended with: an engine kind, or one only the CLI has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CliKind {
    /// Bad arguments.
    Usage,
    /// `mcache queue` found no running app or `mcache serve`.
    NoServer,
    /// `mcache doctor` found problems it did not repair.
    Unhealthy,
    /// A local file named on the command line does not exist.
    FileNotFound,
    Engine(ErrorKind),
    /// A kind the local API answered with that is not an engine kind (`not_found`,
    /// `conflict`, `unauthorized`, ...).
    Remote(String),
}

impl CliKind {
    /// The stable snake_case name (the local API's `kind`).
    pub(crate) fn as_str(&self) -> &str {
        match self {
            CliKind::Usage => "usage",
            CliKind::NoServer => "no_server",
            CliKind::Unhealthy => "unhealthy",
            CliKind::FileNotFound => "not_found",
            CliKind::Engine(kind) => kind.as_str(),
            CliKind::Remote(kind) => kind,
        }
    }

    /// A kind as the local API names it.
    pub(crate) fn parse(kind: &str) -> CliKind {
        match kind.parse::<ErrorKind>() {
            Ok(kind) => CliKind::Engine(kind),
            Err(_) => CliKind::Remote(kind.to_string()),
        }
    }

    pub(crate) fn exit_status(&self) -> ExitStatus {
        match self {
            CliKind::Usage => ExitStatus::Usage,
            CliKind::NoServer => ExitStatus::NotFound,
            CliKind::Unhealthy => ExitStatus::Failure,
            CliKind::FileNotFound => ExitStatus::NotFound,
            CliKind::Engine(kind) => ExitStatus::for_kind(*kind).unwrap_or(ExitStatus::Failure),
            CliKind::Remote(kind) => match kind.as_str() {
                "not_found" => ExitStatus::NotFound,
                "invalid_input" => ExitStatus::Usage,
                _ => ExitStatus::Failure,
            },
        }
    }
}

impl From<ErrorKind> for CliKind {
    fn from(kind: ErrorKind) -> Self {
        CliKind::Engine(kind)
    }
}

/// An error of the CLI itself, with a stable kind and hints in the CLI's words. Engine errors
/// are reported through their own types; this one covers what only the edge knows (a missing
/// local API, bad input).
#[derive(Debug)]
pub(crate) struct CliError {
    pub kind: CliKind,
    pub message: String,
    pub hints: Vec<String>,
}

impl CliError {
    pub(crate) fn new(kind: impl Into<CliKind>, message: impl Into<String>) -> Self {
        CliError {
            kind: kind.into(),
            message: message.into(),
            hints: Vec::new(),
        }
    }

    /// A usage error (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError::new(CliKind::Usage, message)
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The kind of the first error in the chain that has one.
pub(crate) fn error_kind(error: &anyhow::Error) -> Option<CliKind> {
    // A `CliError` given as context (the edge restating an engine error) is found here.
    if let Some(cli) = error.downcast_ref::<CliError>() {
        return Some(cli.kind.clone());
    }
    error.chain().find_map(|cause| {
        if let Some(cli) = cause.downcast_ref::<CliError>() {
            return Some(cli.kind.clone());
        }
        diagnose(cause).map(|d| CliKind::Engine(d.kind()))
    })
}

/// An engine hint in the CLI's words: the command to run.
pub(crate) fn hint_line(hint: &Hint) -> Option<String> {
    Some(match hint {
        Hint::LogIn => "run `mcache login` (or set HF_TOKEN)".to_string(),
        Hint::RenewToken => {
            "create a new token on the Hub and run `mcache login` (or set HF_TOKEN)".to_string()
        }
        Hint::CheckTokenPermissions => {
            "make sure your token has the required permissions".to_string()
        }
        Hint::RequestAccess { url } => format!("request access at {url}"),
        Hint::CheckRepoId => "check the repo id".to_string(),
        Hint::GoOnline => {
            "unset HF_HUB_OFFLINE (and `mcache config set offline false`) to allow network access"
                .to_string()
        }
        Hint::PullWhileOnline { repo } => format!("run `mcache pull {repo}` while online"),
        Hint::PullFirst { repo } => format!("run `mcache pull {repo}` first"),
        Hint::InstallLlamaCppConverter => "install llama.cpp and put its convert_hf_to_gguf.py on PATH (or set MODEL_CACHE_CONVERT_HF_TO_GGUF to its path)".to_string(),
        Hint::ListVariants { repo } => format!("`mcache variants {repo}` lists them"),
        Hint::ListCached => "`mcache ls` lists cached models".to_string(),
        Hint::CheckSelection => {
            "check the `--include`/`--exclude` patterns or the file names".to_string()
        }
        Hint::UseGlobPatterns => "use shell globs such as `*.gguf` or `*Q4_K_M*`".to_string(),
        Hint::Unpin { repo } => format!("run `mcache unpin {repo}` first"),
        Hint::CancelDownload { .. } => "cancel it first (`mcache queue cancel ID`)".to_string(),
        Hint::ListJobs => "`mcache queue` lists the jobs".to_string(),
        Hint::FreeSpace { bytes } => format!(
            "free {} or choose another cache folder (`--cache-dir`)",
            format_size(*bytes)
        ),
        Hint::RetryLater => "try again later, or from another mirror".to_string(),
        Hint::WaitForLock { path } => format!(
            "another process (Model Cache or huggingface_hub) is downloading the same file; wait for it to finish, or delete `{}` if no such process is running",
            path.display()
        ),
        Hint::UpgradeOrRebuildIndex { path } => format!(
            "upgrade Model Cache, or move `{}` away and run `mcache doctor --repair` to rebuild it",
            path.display()
        ),
        Hint::FixPreferences { path } => format!(
            "fix or delete `{}`; defaults are used without it",
            path.display()
        ),
        Hint::CheckProxy => {
            "check the proxy (`--proxy`, HTTPS_PROXY, NO_PROXY or `mcache config set proxy`) and that it is reachable".to_string()
        }
        Hint::TrustCertificateAuthority => {
            "give your organisation's CA certificates with `--ca-bundle FILE` (or REQUESTS_CA_BUNDLE, or `mcache config set ca_bundle FILE`)".to_string()
        }
        Hint::ConnectCacheDrive { path } => format!(
            "connect the drive that holds `{}`, or choose another folder with `--cache-dir` or `mcache config set cache_dir`",
            path.display()
        ),
        _ => return None,
    })
}

/// The lines of an error report, without colour: `error: ...` (the chain of causes joined with
/// `: `, skipping a cause whose text the outer message already contains), then each distinct
/// hint: those of a `CliError` in the chain (the edge's own words win), else the engine's.
pub(crate) fn report_lines(error: &anyhow::Error) -> Vec<String> {
    let mut headline = String::new();
    let mut details = Vec::new();
    let mut hints: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default().trim().to_string();
        if !first.is_empty() && !headline.contains(&first) {
            if headline.is_empty() {
                headline = first;
            } else {
                headline = format!("{headline}: {first}");
            }
        }
        for line in lines {
            let line = line.trim();
            if !line.is_empty() && !details.iter().any(|d: &String| d == line) {
                details.push(line.to_string());
            }
        }
        let found: Vec<String> = if let Some(diagnostic) = diagnose(cause) {
            diagnostic.hints().iter().filter_map(hint_line).collect()
        } else {
            Vec::new()
        };
        for hint in found {
            if !hints.contains(&hint) {
                hints.push(hint);
            }
        }
    }
    if let Some(cli) = error.downcast_ref::<CliError>()
        && !cli.hints.is_empty()
    {
        hints = cli.hints.clone();
    }
    let mut lines = vec![format!("error: {headline}")];
    lines.extend(details.into_iter().map(|line| format!("  {line}")));
    lines.extend(hints.into_iter().map(|hint| format!("hint: {hint}")));
    lines
}

/// The error as the local API reports it: `{"error": {"kind", "message", "hint"}}` (hints joined
/// by newlines; `kind` is `internal` when no error in the chain has one).
pub(crate) fn json_error(error: &anyhow::Error, kind: Option<&CliKind>) -> serde_json::Value {
    let lines = report_lines(error);
    let message = lines[0].trim_start_matches("error: ").to_string();
    let hints: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("hint: "))
        .collect();
    serde_json::json!({
        "error": {
            "kind": kind.map_or("internal", |k| k.as_str()),
            "message": message,
            "hint": (!hints.is_empty()).then(|| hints.join("\n")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_documented_codes() {
        for kind in ErrorKind::ALL {
            assert!(
                ExitStatus::for_kind(*kind).is_some(),
                "`{kind}` has a deliberate exit code"
            );
        }
        let code = |kind| ExitStatus::for_kind(kind).unwrap().code();
        assert_eq!(code(ErrorKind::RepoNotFound), 3);
        assert_eq!(code(ErrorKind::EntryNotFound), 3);
        assert_eq!(code(ErrorKind::Gated), 4);
        assert_eq!(code(ErrorKind::BadToken), 4);
        assert_eq!(code(ErrorKind::OfflineMiss), 5);
        assert_eq!(code(ErrorKind::DiskFull), 6);
        assert_eq!(code(ErrorKind::Network), 7);
        assert_eq!(code(ErrorKind::Integrity), 8);
        assert_eq!(CliKind::Usage.exit_status().code(), 2);
        assert_eq!(ExitStatus::Interrupted.code(), 130);
        for code in [0, 1, 2, 3, 4, 5, 6, 7, 8, 130] {
            assert!(
                EXIT_CODES_HELP.contains(&format!("\n  {code} ")),
                "exit code {code} is documented"
            );
        }
    }

    #[test]
    fn every_hint_has_words() {
        let hints = [
            Hint::LogIn,
            Hint::RequestAccess { url: "u".into() },
            Hint::FreeSpace { bytes: 3 << 30 },
        ];
        for hint in &hints {
            assert!(hint_line(hint).is_some(), "{hint:?}");
        }
        assert_eq!(
            hint_line(&Hint::FreeSpace { bytes: 3 << 30 }).unwrap(),
            "free 3.00 GiB or choose another cache folder (`--cache-dir`)"
        );
    }

    #[test]
    fn report_has_one_error_line_and_distinct_hints() {
        let inner = CliError::new(ErrorKind::Gated, "Access to `demo/gated` is restricted")
            .hint("request access at http://hub/demo/gated");
        let error = anyhow::Error::new(inner).context("Cannot pull `demo/gated`");
        assert_eq!(
            report_lines(&error),
            vec![
                "error: Cannot pull `demo/gated`: Access to `demo/gated` is restricted",
                "hint: request access at http://hub/demo/gated",
            ]
        );
        assert_eq!(error_kind(&error), Some(CliKind::Engine(ErrorKind::Gated)));
        let json = json_error(&error, error_kind(&error).as_ref());
        assert_eq!(json["error"]["kind"], "gated");
        assert_eq!(
            json["error"]["message"],
            "Cannot pull `demo/gated`: Access to `demo/gated` is restricted"
        );
        assert_eq!(
            json["error"]["hint"],
            "request access at http://hub/demo/gated"
        );
        let plain = anyhow::anyhow!("Something broke");
        assert_eq!(
            json_error(&plain, None)["error"]["hint"],
            serde_json::Value::Null
        );
        assert_eq!(report_lines(&plain), vec!["error: Something broke"]);
        assert_eq!(error_kind(&plain), None);
    }
}
