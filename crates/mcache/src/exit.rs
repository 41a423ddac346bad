//! Exit codes, and the error report printed on stderr: one `error:` line and `hint:` lines.
//!
//! Every engine error carries a stable snake_case `kind` (the same strings the local API returns
//! in `{"error": {"kind": ...}}`); the exit code is chosen from that kind, never from the message,
//! so scripts can rely on it.

use std::fmt;

/// Documented in `mcache --help` and in the README; values are a contract.
pub const EXIT_CODES_HELP: &str = "\
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

    /// The exit status for an error kind of the engine (or of the local API).
    pub fn for_kind(kind: &str) -> ExitStatus {
        match kind {
            "repo_not_found" | "revision_not_found" | "entry_not_found" | "not_found"
            | "variant_not_found" | "no_such_variant" | "nothing_selected" | "not_cached" => {
                ExitStatus::NotFound
            }
            "gated" | "unauthorized" | "bad_token" | "forbidden" => ExitStatus::Auth,
            "offline" | "offline_miss" => ExitStatus::OfflineMiss,
            "disk_full" | "no_space" => ExitStatus::DiskFull,
            "network" | "retries_exhausted" | "rate_limited" | "http" | "timeout" | "stalled" => {
                ExitStatus::Network
            }
            "integrity" | "hash_mismatch" | "corrupt" | "verification_failed" => {
                ExitStatus::Integrity
            }
            "invalid_input" | "usage" | "bad_pattern" => ExitStatus::Usage,
            "interrupted" | "cancelled" => ExitStatus::Interrupted,
            _ => ExitStatus::Failure,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

/// An error of the CLI itself, with a stable kind and hints. Engine errors are reported through
/// their own types; this one covers what only the edge knows (a missing local API, bad input).
#[derive(Debug)]
pub struct CliError {
    pub kind: String,
    pub message: String,
    pub hints: Vec<String>,
}

impl CliError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        CliError {
            kind: kind.into(),
            message: message.into(),
            hints: Vec::new(),
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for hint in &self.hints {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

/// The kind of the first error in the chain that has one.
pub fn error_kind(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(kind_of)
}

/// Recognises the error types that carry a kind. New engine error types are added here.
fn kind_of(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(error) = error.downcast_ref::<CliError>() {
        return Some(error.kind.clone());
    }
    if let Some(error) = error.downcast_ref::<model_cache::engine::EngineError>() {
        return Some(error.kind().to_string());
    }
    if let Some(error) = error.downcast_ref::<model_cache::hub::HubError>() {
        return Some(error.root().kind().to_string());
    }
    if let Some(error) = error.downcast_ref::<model_cache::download::DownloadError>() {
        return Some(error.kind().to_string());
    }
    if let Some(error) = error.downcast_ref::<model_cache::store::StoreError>() {
        return Some(error.kind().to_string());
    }
    None
}

/// The lines of an error report, without colour: `error: ...` (the chain of causes joined with
/// `: `, skipping a cause whose text the outer message already contains), then each distinct
/// `hint:` line found anywhere in the chain.
pub fn report_lines(error: &anyhow::Error) -> Vec<String> {
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
            if let Some(hint) = line.strip_prefix("hint:") {
                let hint = hint.trim().to_string();
                if !hints.contains(&hint) {
                    hints.push(hint);
                }
            } else if !line.is_empty() && !details.iter().any(|d: &String| d == line) {
                details.push(line.to_string());
            }
        }
    }
    let mut lines = vec![format!("error: {headline}")];
    lines.extend(details.into_iter().map(|line| format!("  {line}")));
    lines.extend(hints.into_iter().map(|hint| format!("hint: {hint}")));
    lines
}

/// The error as the local API reports it: `{"error": {"kind", "message", "hint"}}` (hints joined
/// by newlines; `kind` is `internal` when no error in the chain has one).
pub fn json_error(error: &anyhow::Error, kind: Option<&str>) -> serde_json::Value {
    let lines = report_lines(error);
    let message = lines[0].trim_start_matches("error: ").to_string();
    let hints: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("hint: "))
        .collect();
    serde_json::json!({
        "error": {
            "kind": kind.unwrap_or("internal"),
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
        assert_eq!(ExitStatus::for_kind("repo_not_found").code(), 3);
        assert_eq!(ExitStatus::for_kind("entry_not_found").code(), 3);
        assert_eq!(ExitStatus::for_kind("gated").code(), 4);
        assert_eq!(ExitStatus::for_kind("bad_token").code(), 4);
        assert_eq!(ExitStatus::for_kind("offline_miss").code(), 5);
        assert_eq!(ExitStatus::for_kind("disk_full").code(), 6);
        assert_eq!(ExitStatus::for_kind("network").code(), 7);
        assert_eq!(ExitStatus::for_kind("something_new").code(), 1);
        assert_eq!(ExitStatus::Interrupted.code(), 130);
        for code in [0, 1, 2, 3, 4, 5, 6, 7, 8, 130] {
            assert!(
                EXIT_CODES_HELP.contains(&format!("\n  {code} ")),
                "exit code {code} is documented"
            );
        }
    }

    #[test]
    fn report_has_one_error_line_and_distinct_hints() {
        let inner = CliError::new("gated", "Access to `demo/gated` is restricted")
            .hint("request access at http://hub/demo/gated");
        let error = anyhow::Error::new(inner).context("Cannot pull `demo/gated`");
        assert_eq!(
            report_lines(&error),
            vec![
                "error: Cannot pull `demo/gated`: Access to `demo/gated` is restricted",
                "hint: request access at http://hub/demo/gated",
            ]
        );
        assert_eq!(error_kind(&error).as_deref(), Some("gated"));
        let json = json_error(&error, Some("gated"));
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
