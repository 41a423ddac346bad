//! Where output goes: data on stdout, messages on stderr (as uv does).
//!
//! Every command prints through a [`Printer`], so `--json` and `--quiet` are honoured in one
//! place: with `--json`, stdout carries exactly one JSON value per line and nothing else; with
//! `--quiet`, stderr carries only errors.

use std::io::Write;

use serde::Serialize;

use crate::terminal::{Style, Terminal};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub terminal: Terminal,
}

impl Printer {
    /// A line of data on stdout (human mode). Ignored with `--json`, where commands print JSON
    /// instead.
    pub(crate) fn data(&self, line: impl AsRef<str>) {
        if !self.json {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`mcache ls | head -1`) is not an error worth reporting.
            let _ = writeln!(out, "{}", line.as_ref());
        }
    }

    /// One JSON value on one line of stdout.
    pub(crate) fn json_line(&self, value: &impl Serialize) -> anyhow::Result<()> {
        let text = serde_json::to_string(value)?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
        Ok(())
    }

    /// Prints `value` as JSON with `--json`, or runs `human` otherwise.
    pub(crate) fn output<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce(&T),
    ) -> anyhow::Result<()> {
        if self.json {
            self.json_line(value)
        } else {
            human(value);
            Ok(())
        }
    }

    /// A message on stderr, unless `--quiet`.
    pub(crate) fn message(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", line.as_ref());
        }
    }

    /// `warning: ...` on stderr, unless `--quiet`.
    pub(crate) fn warning(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!(
                "{}: {}",
                Style::Warning.paint("warning", self.terminal.color),
                line.as_ref()
            );
        }
    }

    /// The error report (always printed, even with `--quiet`).
    pub(crate) fn error(&self, error: &anyhow::Error) {
        let color = self.terminal.color;
        for line in crate::exit::report_lines(error) {
            if let Some(rest) = line.strip_prefix("error:") {
                eprintln!("{}:{rest}", Style::Error.paint("error", color));
            } else if let Some(rest) = line.strip_prefix("hint:") {
                eprintln!("{}:{rest}", Style::Hint.paint("hint", color));
            } else {
                eprintln!("{line}");
            }
        }
    }

    /// Whether interactive prompts may be shown.
    pub(crate) fn interactive(&self) -> bool {
        self.terminal.stdin_is_terminal && self.terminal.stderr_is_terminal && !self.json
    }

    /// Whether progress bars are drawn. Not with `-v`: log lines written between two frames
    /// would be torn by the redraw, and the logs tell the progress anyway.
    pub(crate) fn progress_bars(&self) -> bool {
        self.terminal.stderr_is_terminal && !self.quiet && !self.json && self.verbose == 0
    }
}
