//! What the CLI knows about its terminal: whether stdin/stderr are terminals, whether colour is
//! wanted, and the styling of message prefixes.
//!
//! The terminal-only environment variables are named here (the Hub ones live in the engine's
//! `env` module): `RUST_LOG` (log filter) and `NO_COLOR` (<https://no-color.org>) disables colour whatever its value, as long
//! as it is not empty.

use std::io::IsTerminal;

/// Log filter (`tracing` directives), overriding `-v`.
pub(crate) const RUST_LOG: &str = "RUST_LOG";

/// Disables colour when set to a non-empty value.
pub(crate) const NO_COLOR: &str = "NO_COLOR";

/// The terminal facts, read once at start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Terminal {
    pub stdin_is_terminal: bool,
    pub stderr_is_terminal: bool,
    /// Colour on stderr: a terminal, and `NO_COLOR` unset or empty.
    pub color: bool,
}

impl Terminal {
    pub(crate) fn detect() -> Self {
        let stderr_is_terminal = std::io::stderr().is_terminal();
        let no_color = std::env::var_os(NO_COLOR).is_some_and(|value| !value.is_empty());
        Terminal {
            stdin_is_terminal: std::io::stdin().is_terminal(),
            stderr_is_terminal,
            color: stderr_is_terminal && !no_color,
        }
    }
}

/// ANSI styles for message prefixes; plain text when colour is off.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Style {
    Error,
    Warning,
    Hint,
    Success,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Error => "1;31",
            Style::Warning => "1;33",
            Style::Hint => "1;36",
            Style::Success => "1;32",
        }
    }

    pub(crate) fn paint(self, text: &str, color: bool) -> String {
        if color {
            format!("\x1b[{}m{text}\x1b[0m", self.code())
        } else {
            text.to_string()
        }
    }
}

/// Turns off the terminal's echo of control characters (`^C`) while progress bars are drawn, and
/// restores it when dropped.
///
/// When Ctrl-C is pressed the terminal itself prints `^C` and moves the cursor, which the bar
/// renderer cannot know about: it would then clear the wrong lines and leave a bar behind. The
/// setting belongs to the controlling terminal (`/dev/tty`), so `stty` is asked to change it
/// there; where that fails (no terminal, no `stty`), nothing changes.
pub(crate) struct QuietControlEcho {
    restore: bool,
}

impl QuietControlEcho {
    fn stty(args: &[&str]) -> Option<String> {
        let output = std::process::Command::new("stty")
            .args(["-F", "/dev/tty"])
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub(crate) fn new() -> QuietControlEcho {
        let was_on = Self::stty(&["-a"]).is_some_and(|settings| {
            settings
                .split(|c: char| c.is_whitespace() || c == ';')
                .any(|flag| flag == "echoctl")
        });
        let restore = was_on && Self::stty(&["-echoctl"]).is_some();
        QuietControlEcho { restore }
    }
}

impl Drop for QuietControlEcho {
    fn drop(&mut self) {
        if self.restore {
            let _ = Self::stty(&["echoctl"]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_colour_means_plain_text() {
        assert_eq!(Style::Error.paint("error", false), "error");
        assert_eq!(Style::Error.paint("error", true), "\x1b[1;31merror\x1b[0m");
    }
}
