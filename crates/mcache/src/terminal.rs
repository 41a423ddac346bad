//! What the CLI knows about its terminal: whether stdin/stderr are terminals, whether colour is
//! wanted, and the styling of message prefixes.
//!
//! The terminal-only environment variables are named here (the Hub ones live in the engine's
//! `env` module): `RUST_LOG` (log filter) and `NO_COLOR` (<https://no-color.org>) disables colour whatever its value, as long
//! as it is not empty.

use std::io::IsTerminal;

/// Log filter (`tracing` directives), overriding `-v`.
pub const RUST_LOG: &str = "RUST_LOG";

/// Disables colour when set to a non-empty value.
pub const NO_COLOR: &str = "NO_COLOR";

/// The terminal facts, read once at start.
#[derive(Debug, Clone, Copy)]
pub struct Terminal {
    pub stdin_is_terminal: bool,
    pub stderr_is_terminal: bool,
    /// Colour on stderr: a terminal, and `NO_COLOR` unset or empty.
    pub color: bool,
}

impl Terminal {
    pub fn detect() -> Self {
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
pub enum Style {
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

    pub fn paint(self, text: &str, color: bool) -> String {
        if color {
            format!("\x1b[{}m{text}\x1b[0m", self.code())
        } else {
            text.to_string()
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
