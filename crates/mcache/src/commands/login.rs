//! `mcache login` / `mcache logout`: the engine stores the token where `huggingface_hub` keeps
//! it (`HF_TOKEN_PATH`, default `$HF_HOME/token`, owner-only), so both tools share one login.
//! This module only reads the token from the user.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use model_cache::Token;
use model_cache::engine::Engine;

use crate::cli::GlobalArgs;
use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;

fn lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The file the engine stores the token in.
fn token_file(engine: &Engine) -> PathBuf {
    engine.settings().token_file.clone().unwrap_or_else(|| {
        model_cache::env::token_path(&lookup, crate::settings::home_dir().as_deref())
    })
}

fn env_token_set() -> bool {
    [
        model_cache::env::HF_TOKEN,
        model_cache::env::HUGGING_FACE_HUB_TOKEN,
    ]
    .iter()
    .any(|name| lookup(name).is_some_and(|value| !value.is_empty()))
}

pub(super) fn login(
    engine: &Engine,
    global: &GlobalArgs,
    from_stdin: bool,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let text = match (&global.token, from_stdin) {
        (Some(token), _) => token.trim().to_string(),
        (None, true) => read_line(&mut std::io::stdin().lock())?,
        (None, false) if printer.interactive() => prompt_hidden("Hub token (input hidden): ")?,
        (None, false) => {
            return Err(CliError::usage("No token given")
                .hint("pass `--token hf_...`, or pipe it in with `mcache login --stdin`")
                .into());
        }
    };
    let token = Token::new(text.clone())
        .filter(|_| !text.chars().any(char::is_whitespace))
        .ok_or_else(|| {
            CliError::usage("The token is empty or contains whitespace")
                .hint("copy it again from your Hub settings page (Access Tokens)")
        })?;
    engine.set_token(Some(token))?;
    let path = token_file(engine);
    printer.message(format!("Token saved to `{}`", path.display()));
    if env_token_set() {
        printer.warning("`HF_TOKEN` is set and takes precedence over the saved token");
    }
    if printer.json {
        printer.json_line(&serde_json::json!({ "token_set": true, "path": path }))?;
    }
    Ok(ExitStatus::Success)
}

pub(super) fn logout(engine: &Engine, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let path = token_file(engine);
    let removed = path.exists();
    engine.set_token(None)?;
    if removed {
        printer.message(format!("Removed the token from `{}`", path.display()));
    } else {
        printer.message("Not logged in: no saved token");
    }
    if env_token_set() {
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
