//! llama.cpp's own converter, `convert_hf_to_gguf.py`, as a backend for architectures the
//! native converter does not know.
//!
//! It is used only when found: named by `MODEL_CACHE_CONVERT_HF_TO_GGUF`, or on `PATH` (the
//! edges resolve it, see `env.rs`). It runs as a child process (`python3 SCRIPT SNAPSHOT
//! --outfile TEMP --outtype f16|q8_0`); progress is the size of its output so far; a pause
//! stops the process (`SIGSTOP`) and a resume continues it; a cancel kills it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{ConvertError, GgufType, Monitor};

/// The file names looked for on `PATH`.
pub const SCRIPT_NAMES: &[&str] = &["convert_hf_to_gguf.py", "convert-hf-to-gguf.py"];

/// Finds the script in the folders of a `PATH` value.
pub fn find_on_path(path: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(path).find_map(|dir| {
        SCRIPT_NAMES
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn command(script: &Path) -> Command {
    if script.extension().is_some_and(|e| e == "py") {
        let mut command = Command::new("python3");
        command.arg(script);
        command
    } else {
        Command::new(script)
    }
}

/// Runs the script; the output is at `temp` when it succeeds.
pub fn run(
    script: &Path,
    snapshot: &Path,
    temp: &Path,
    kind: GgufType,
    monitor: &mut Monitor<'_>,
) -> Result<(), ConvertError> {
    let log = temp.with_extension("log");
    let log_file = std::fs::File::create(&log).map_err(|e| ConvertError::io("create", &log, e))?;
    let err_file = log_file
        .try_clone()
        .map_err(|e| ConvertError::io("create", &log, e))?;
    let mut child = command(script)
        .arg(snapshot)
        .arg("--outfile")
        .arg(temp)
        .arg("--outtype")
        .arg(kind.outtype())
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| ConvertError::io("run", script, e))?;
    let mut stopped = false;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| ConvertError::io("run", script, e))?
        {
            break status;
        }
        let size = std::fs::metadata(temp).map(|m| m.len()).unwrap_or(0);
        let step = size.saturating_sub(monitor.done());
        let paused = monitor.is_paused();
        if paused != stopped {
            signal(&child, paused);
            stopped = paused;
        }
        if monitor.is_cancelled() {
            if stopped {
                signal(&child, false);
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&log);
            return Err(ConvertError::Cancelled);
        }
        if step > 0 {
            monitor.count(step);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    if !status.success() {
        let tail: Vec<&str> = output.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(ConvertError::LlamaCppFailed {
            status: status.to_string(),
            output: tail.join("\n"),
        });
    }
    Ok(())
}

#[cfg(unix)]
#[expect(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
fn signal(child: &std::process::Child, stop: bool) {
    let sig = if stop { libc::SIGSTOP } else { libc::SIGCONT };
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

#[cfg(not(unix))]
fn signal(_child: &std::process::Child, _stop: bool) {}
