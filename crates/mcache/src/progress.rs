//! Draws the downloader's [`DownloadEvent`]s: progress bars on a terminal, JSON lines with
//! `--json`, nothing otherwise.
//!
//! The engine only emits events (its `Reporter` knows nothing of terminals); this module is the
//! only place that knows about `indicatif`, as uv keeps its bars in the binary. Bars: one per file
//! being transferred, cleared when the file is linked (a `✓` line stays in its place), and a total
//! bar (bytes, percent, speed, ETA) that ends as a single `done` line, so a finished pull leaves
//! no partial bar behind.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use model_cache::download::DownloadEvent;

use crate::printer::Printer;
use crate::terminal::Style;
use model_cache::units::{Throughput, format_duration, format_rate, format_size};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressMode {
    /// indicatif bars on stderr.
    Bars,
    /// Each event as one JSON line on stdout.
    JsonLines,
    /// Nothing while running (stderr is not a terminal, or `--quiet`).
    Silent,
}

impl ProgressMode {
    pub(crate) fn for_printer(printer: &Printer) -> Self {
        if printer.json {
            ProgressMode::JsonLines
        } else if printer.progress_bars() {
            ProgressMode::Bars
        } else {
            ProgressMode::Silent
        }
    }
}

struct FileProgress {
    size: u64,
    done: u64,
    bar: Option<ProgressBar>,
}

/// What a pull did, accumulated from the events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PullSummary {
    pub files_downloaded: u64,
    pub files_cached: u64,
    pub files_failed: u64,
    pub bytes_downloaded: u64,
    pub bytes_saved: u64,
    pub commit: Option<String>,
    pub retries: u64,
}

/// Renders the events of one pull.
pub(crate) struct PullProgress {
    mode: ProgressMode,
    printer: Printer,
    multi: MultiProgress,
    total: Option<ProgressBar>,
    files: HashMap<String, FileProgress>,
    expected_total: u64,
    known_total: u64,
    done_total: u64,
    /// The total's speed and ETA: the estimate the local API (and so the app) shows.
    throughput: Throughput,
    paused: bool,
    started: Instant,
    summary: PullSummary,
}

const FILE_TEMPLATE: &str = "  {prefix:40!} {bar:24.cyan/blue} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} {eta:>4} {msg}";
const FILE_TEMPLATE_PLAIN: &str = "  {prefix:40!} {bar:24} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} {eta:>4} {msg}";
// The total's speed and ETA are in `{msg}`, from the engine's estimate (see `update_total`).
const TOTAL_TEMPLATE: &str =
    "{prefix:.bold} {bar:40.green/blue} {percent:>3}% {bytes:>10}/{total_bytes:<10} {msg}";
const TOTAL_TEMPLATE_PLAIN: &str =
    "{prefix} {bar:40} {percent:>3}% {bytes:>10}/{total_bytes:<10} {msg}";
const DONE_TEMPLATE: &str =
    "{prefix:.bold} {bar:40.green/blue} {percent:>3}% {total_bytes:>10} {msg}";
const DONE_TEMPLATE_PLAIN: &str = "{prefix} {bar:40} {percent:>3}% {total_bytes:>10} {msg}";
const BAR_CHARS: &str = "=> ";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("progress templates are valid")
        .progress_chars(BAR_CHARS)
}

impl PullProgress {
    /// `expected_total` is the size of what was asked for (the variant's size) when known; the
    /// total bar grows if files turn out larger.
    pub(crate) fn new(mode: ProgressMode, printer: Printer, expected_total: Option<u64>) -> Self {
        let target = match mode {
            ProgressMode::Bars => ProgressDrawTarget::stderr_with_hz(10),
            _ => ProgressDrawTarget::hidden(),
        };
        let multi = MultiProgress::with_draw_target(target);
        let total = (mode == ProgressMode::Bars).then(|| {
            let bar = multi.add(ProgressBar::new(expected_total.unwrap_or(0)));
            bar.set_style(style(if printer.terminal.color {
                TOTAL_TEMPLATE
            } else {
                TOTAL_TEMPLATE_PLAIN
            }));
            bar.set_prefix("total");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        PullProgress {
            mode,
            printer,
            multi,
            total,
            files: HashMap::new(),
            expected_total: expected_total.unwrap_or(0),
            known_total: 0,
            done_total: 0,
            throughput: Throughput::default(),
            paused: false,
            started: Instant::now(),
            summary: PullSummary::default(),
        }
    }

    fn file_bar(&self, path: &str, size: u64) -> ProgressBar {
        let bar = ProgressBar::new(size);
        let bar = match &self.total {
            Some(total) => self.multi.insert_before(total, bar),
            None => self.multi.add(bar),
        };
        bar.set_style(style(if self.printer.terminal.color {
            FILE_TEMPLATE
        } else {
            FILE_TEMPLATE_PLAIN
        }));
        bar.set_prefix(path.to_string());
        bar
    }

    /// A line above the bars (or on stderr when there are none), unless `--quiet`.
    fn line(&self, text: String) {
        match self.mode {
            ProgressMode::Bars => {
                let _ = self.multi.println(text);
            }
            ProgressMode::Silent => self.printer.message(text),
            ProgressMode::JsonLines => {}
        }
    }

    fn update_total(&mut self) {
        self.throughput.observe(Instant::now(), self.done_total);
        if let Some(total) = &self.total {
            let length = self.expected_total.max(self.known_total);
            total.set_length(length);
            total.set_position(self.done_total);
            total.set_message(if self.paused {
                "paused".to_string()
            } else {
                let speed = self.throughput.bytes_per_second().round() as u64;
                let eta = self
                    .throughput
                    .eta(length.saturating_sub(self.done_total))
                    .map_or_else(|| "—".to_string(), format_duration);
                format!("{:>12} eta {eta}", format_rate(speed))
            });
        }
    }

    /// Bytes of `path` that appear without being transferred (cached, or already on disk).
    fn skip_to(&mut self, path: &str, done: u64) {
        let before = self.files.get(path).map_or(0, |f| f.done);
        self.throughput.skip(done.saturating_sub(before));
        self.set_done(path, done);
    }

    fn set_done(&mut self, path: &str, done: u64) {
        if let Some(file) = self.files.get_mut(path) {
            self.done_total = self.done_total - file.done + done;
            file.done = done;
            if let Some(bar) = &file.bar {
                bar.set_position(done);
            }
        }
    }

    fn register(&mut self, path: &str, size: u64) {
        if !self.files.contains_key(path) {
            self.known_total += size;
            self.files.insert(
                path.to_string(),
                FileProgress {
                    size,
                    done: 0,
                    bar: None,
                },
            );
        }
    }

    /// Shows one event.
    pub(crate) fn handle(&mut self, event: &DownloadEvent) -> anyhow::Result<()> {
        if self.mode == ProgressMode::JsonLines {
            self.printer.json_line(event)?;
        }
        let color = self.printer.terminal.color;
        match event {
            DownloadEvent::FileStarted {
                path,
                size,
                resumed_bytes,
                ..
            } => {
                self.register(path, *size);
                if self.mode == ProgressMode::Bars {
                    let bar = self.file_bar(path, *size);
                    if *resumed_bytes > 0 {
                        bar.set_position(*resumed_bytes);
                        bar.set_message(format!("resumed at {}", format_size(*resumed_bytes)));
                        // The bytes already on disk are not transfer speed.
                        bar.reset_eta();
                    }
                    if let Some(file) = self.files.get_mut(path.as_str()) {
                        file.bar = Some(bar);
                    }
                }
                self.skip_to(path, *resumed_bytes);
            }
            DownloadEvent::Bytes {
                path, done, total, ..
            } => {
                self.register(path, *total);
                self.set_done(path, *done);
            }
            DownloadEvent::ChunkDone { .. } => {}
            DownloadEvent::Retrying {
                path,
                reason,
                attempt,
                ..
            } => {
                self.summary.retries += 1;
                if let Some(bar) = self.files.get(path.as_str()).and_then(|f| f.bar.as_ref()) {
                    bar.set_message(format!("retrying ({reason})"));
                }
                if self.printer.verbose > 0 {
                    self.line(format!(
                        "  retrying `{path}` after attempt {attempt}: {reason}"
                    ));
                }
            }
            DownloadEvent::Restarted { path, reason, .. } => {
                self.set_done(path, 0);
                self.line(format!(
                    "{}: `{path}` restarted: {reason}",
                    Style::Warning.paint("warning", color)
                ));
            }
            DownloadEvent::Verifying { path, .. } => {
                if let Some(bar) = self.files.get(path.as_str()).and_then(|f| f.bar.as_ref()) {
                    bar.set_message("verifying");
                }
            }
            DownloadEvent::Verified { path, .. } => {
                if let Some(bar) = self.files.get(path.as_str()).and_then(|f| f.bar.as_ref()) {
                    bar.set_message("verified");
                }
            }
            DownloadEvent::Linked { path, .. } => {
                let size = self.files.get(path.as_str()).map(|f| f.size);
                if let Some(size) = size {
                    self.set_done(path, size);
                }
                self.summary.files_downloaded += 1;
                let bar = self.files.get_mut(path.as_str()).and_then(|f| f.bar.take());
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                    let _ = self.multi.println(format!(
                        "  {} {path} ({})",
                        Style::Success.paint("✓", color),
                        format_size(size.unwrap_or(0))
                    ));
                }
            }
            DownloadEvent::Skipped {
                path, bytes_saved, ..
            } => {
                self.register(path, *bytes_saved);
                self.skip_to(path, *bytes_saved);
                self.summary.files_cached += 1;
                self.summary.bytes_saved += bytes_saved;
            }
            DownloadEvent::Paused { .. } => {
                self.paused = true;
                self.throughput.stop();
            }
            DownloadEvent::Resumed { .. } => self.paused = false,
            DownloadEvent::Failed {
                path,
                kind,
                message,
                ..
            } => {
                self.summary.files_failed += 1;
                let bar = self.files.get_mut(path.as_str()).and_then(|f| f.bar.take());
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                let first = message.lines().next().unwrap_or_default();
                self.line(format!(
                    "  {} {path}: {first} ({kind})",
                    Style::Error.paint("✗", color)
                ));
            }
            DownloadEvent::Sources { path, sources, .. } => {
                let parts: Vec<String> = sources
                    .iter()
                    .map(|s| {
                        let speed = s
                            .bytes_per_second
                            .map(|b| format!(" at {}/s", format_size(b)))
                            .unwrap_or_default();
                        let dropped = if s.dropped { " (dropped)" } else { "" };
                        format!("{} {}{speed}{dropped}", s.source, format_size(s.bytes))
                    })
                    .collect();
                self.line(format!("  `{path}` came from: {}", parts.join(", ")));
            }
            DownloadEvent::Reused {
                path,
                bytes_reused,
                bytes_fetched,
                ..
            } => {
                self.line(format!(
                    "  `{path}`: {} reused from cached chunks, {} fetched (Xet)",
                    format_size(*bytes_reused),
                    format_size(*bytes_fetched)
                ));
            }
            DownloadEvent::Finished {
                commit,
                bytes_downloaded,
                bytes_saved,
                ..
            } => {
                self.summary.commit = Some(commit.clone());
                self.summary.bytes_downloaded = *bytes_downloaded;
                self.summary.bytes_saved = self.summary.bytes_saved.max(*bytes_saved);
            }
        }
        self.update_total();
        Ok(())
    }

    /// Ends the display: the total bar becomes one `done` line, and a summary goes to stderr
    /// when there were no bars.
    pub(crate) fn finish(&mut self) {
        let elapsed = self.started.elapsed();
        for file in self.files.values_mut() {
            if let Some(bar) = file.bar.take() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        let summary = self.summary_text(elapsed);
        match (&self.total, self.mode) {
            (Some(total), ProgressMode::Bars) => {
                total.disable_steady_tick();
                let length = total.length().unwrap_or(0).max(self.done_total);
                total.set_length(length);
                total.set_position(length);
                total.set_style(style(if self.printer.terminal.color {
                    DONE_TEMPLATE
                } else {
                    DONE_TEMPLATE_PLAIN
                }));
                total.finish_with_message(format!("done: {summary}"));
            }
            (_, ProgressMode::Silent) => self.printer.message(format!("Done: {summary}")),
            _ => {}
        }
    }

    /// Ends the display after an interruption or failure: bars are cleared, nothing claims to be
    /// done.
    /// Bytes downloaded so far (kept for the next run) and the size of the whole pull.
    pub(crate) fn kept(&self) -> (u64, u64) {
        (self.done_total, self.expected_total.max(self.known_total))
    }

    pub(crate) fn abandon(&mut self) {
        if let Some(total) = &self.total {
            total.disable_steady_tick();
        }
        for file in self.files.values_mut() {
            if let Some(bar) = file.bar.take() {
                bar.finish_and_clear();
            }
        }
        if let Some(total) = &self.total {
            total.finish_and_clear();
        }
        let _ = self.multi.clear();
    }

    fn summary_text(&self, elapsed: Duration) -> String {
        let s = &self.summary;
        let mut text = format!("{} downloaded", format_size(s.bytes_downloaded));
        if s.files_downloaded > 0 && elapsed.as_secs_f64() > 0.0 {
            let rate = (s.bytes_downloaded as f64 / elapsed.as_secs_f64()) as u64;
            text.push_str(&format!(
                " in {:.1}s ({})",
                elapsed.as_secs_f64(),
                format_rate(rate)
            ));
        }
        if s.files_cached > 0 {
            text.push_str(&format!(
                ", {} file(s) already cached ({})",
                s.files_cached,
                format_size(s.bytes_saved)
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::terminal::Terminal;

    fn quiet_printer() -> Printer {
        Printer {
            json: false,
            quiet: true,
            verbose: 0,
            terminal: Terminal {
                stdin_is_terminal: false,
                stderr_is_terminal: false,
                color: false,
            },
        }
    }

    fn repo() -> String {
        "org/name".into()
    }

    #[test]
    fn totals_follow_resumes_restarts_and_cache_hits() {
        let mut progress = PullProgress::new(ProgressMode::Silent, quiet_printer(), Some(300));
        let events = [
            DownloadEvent::FileStarted {
                repo: repo(),
                path: "a.gguf".into(),
                size: 200,
                resumed_bytes: 50,
            },
            DownloadEvent::Bytes {
                repo: repo(),
                path: "a.gguf".into(),
                done: 120,
                total: 200,
            },
            DownloadEvent::Restarted {
                repo: repo(),
                path: "a.gguf".into(),
                reason: "changed upstream".into(),
            },
            DownloadEvent::Bytes {
                repo: repo(),
                path: "a.gguf".into(),
                done: 80,
                total: 200,
            },
        ];
        for event in &events {
            progress.handle(event).unwrap();
        }
        assert_eq!(
            progress.done_total, 80,
            "a restart discards the file's progress"
        );
        progress
            .handle(&DownloadEvent::Skipped {
                repo: repo(),
                path: "config.json".into(),
                reason: "cached".into(),
                bytes_saved: 100,
            })
            .unwrap();
        progress
            .handle(&DownloadEvent::Linked {
                repo: repo(),
                path: "a.gguf".into(),
                commit: "c".into(),
            })
            .unwrap();
        progress
            .handle(&DownloadEvent::Finished {
                repo: repo(),
                revision: "main".into(),
                commit: "c".into(),
                files: 2,
                bytes_downloaded: 150,
                bytes_saved: 100,
            })
            .unwrap();
        assert_eq!(progress.done_total, 300);
        assert_eq!(progress.known_total, 300);
        assert_eq!(
            progress.summary,
            PullSummary {
                files_downloaded: 1,
                files_cached: 1,
                files_failed: 0,
                bytes_downloaded: 150,
                bytes_saved: 100,
                commit: Some("c".into()),
                retries: 0,
            }
        );
        let text = progress.summary_text(Duration::from_secs(1));
        assert!(text.contains("150 B downloaded"), "{text}");
        assert!(text.contains("1 file(s) already cached (100 B)"), "{text}");
    }
}
