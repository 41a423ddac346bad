//! `mcache login` / `mcache logout`: the token file where `huggingface_hub` keeps it
//! (`HF_TOKEN_PATH`, default `$HF_HOME/token`), so both tools share one login.
//!
//! Writing one small file is edge work (like `hf auth login`), not engine logic: the engine only
//! ever receives the token through its settings.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;

use crate::cli::GlobalArgs;
use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;

fn lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub fn login(
    global: &GlobalArgs,
    from_stdin: bool,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let token = match (&global.token, from_stdin) {
        (Some(token), _) => token.trim().to_string(),
        (None, true) => read_line(&mut std::io::stdin().lock())?,
        (None, false) if printer.interactive() => prompt_hidden("Hub token (input hidden): ")?,
        (None, false) => {
            return Err(CliError::new("usage", "No token given")
                .hint("pass `--token hf_...`, or pipe it in with `mcache login --stdin`")
                .into());
        }
    };
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        return Err(
            CliError::new("usage", "The token is empty or contains whitespace")
                .hint("copy it again from your Hub settings page (Access Tokens)")
                .into(),
        );
    }
    let path = model_cache::env::token_path(&lookup, crate::settings::home_dir().as_deref());
    write_private(&path, &token)
        .with_context(|| format!("Cannot save the token to `{}`", path.display()))?;
    printer.message(format!("Token saved to `{}`", path.display()));
    if lookup(model_cache::env::HF_TOKEN).is_some_and(|value| !value.is_empty()) {
        printer.warning("`HF_TOKEN` is set and takes precedence over the saved token");
    }
    if printer.json {
        printer.json_line(&serde_json::json!({ "token_set": true, "path": path }))?;
    }
    Ok(ExitStatus::Success)
}

pub fn logout(printer: &Printer) -> anyhow::Result<ExitStatus> {
    let path = model_cache::env::token_path(&lookup, crate::settings::home_dir().as_deref());
    let removed = match std::fs::remove_file(&path) {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context(format!("Cannot remove the token file `{}`", path.display())));
        }
    };
    if removed {
        printer.message(format!("Removed the token from `{}`", path.display()));
    } else {
        printer.message("Not logged in: no saved token");
    }
    if lookup(model_cache::env::HF_TOKEN).is_some_and(|value| !value.is_empty()) {
        printer.warning("`HF_TOKEN` is still set in the environment and will be used");
    }
    if printer.json {
        printer.json_line(&serde_json::json!({ "token_set": false, "removed": removed }))?;
    }
    Ok(ExitStatus::Success)
}

fn read_line(input: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("Cannot read the token from stdin")?;
    Ok(line.trim().to_string())
}

/// Reads a line from the terminal with echo off (`stty -echo`), so the token is not left on
/// screen or in a terminal recording.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
            .is_ok_and(|status| status.success())
    };
    let hidden = stty("-echo");
    let line = read_line(&mut std::io::stdin().lock());
    if hidden {
        stty("echo");
    }
    eprintln!();
    line
}

/// Writes `path` owner-readable only, through a temporary file renamed into place so a reader
/// never sees half a token.
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("token"),
        std::process::id()
    ));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp)?;
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_private_and_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hf").join("token");
        write_private(&path, "hf_abc").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hf_abc");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
