//! `mcache`: the Model Cache command line.
//!
//! The binary is glue over the engine (`model_cache`): it parses arguments ([`cli`]), resolves
//! settings from the environment and flags ([`settings`]), calls the engine, and prints the
//! result ([`printer`], [`progress`]). It holds no download, storage or policy logic.
//! Errors become one `error:` line, `hint:` lines and a documented exit code ([`exit`]).

mod cli;
mod commands;
mod exit;
mod printer;
mod progress;
mod settings;
mod terminal;

use std::process::ExitCode;

use clap::FromArgMatches;

use crate::cli::Cli;
use crate::exit::{ExitStatus, error_kind};
use crate::printer::Printer;
use crate::terminal::Terminal;

fn main() -> ExitCode {
    let matches = match cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(error) => {
            // clap prints help and version on stdout with code 0, usage errors on stderr with 2.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                ExitStatus::Usage.code()
            } else {
                ExitStatus::Success.code()
            });
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitStatus::Usage.into();
        }
    };
    let printer = Printer {
        json: cli.global.json,
        quiet: cli.global.quiet,
        verbose: cli.global.verbose,
        terminal: Terminal::detect(),
    };
    init_logging(&printer);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            printer.error(&anyhow::Error::new(error).context("Cannot start the async runtime"));
            return ExitStatus::Failure.into();
        }
    };
    let result = runtime.block_on(commands::run(cli, printer));
    // Background tasks (a pull being cancelled, the local API client) must not keep the process
    // alive once the command has decided its result.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(status) => status.into(),
        Err(error) => {
            printer.error(&error);
            let kind = error_kind(&error);
            if printer.json {
                // Scripts reading stdout get the error too, in the local API's shape.
                let _ = printer.json_line(&exit::json_error(&error, kind.as_ref()));
            }
            let status = kind
                .map(|kind| kind.exit_status())
                .unwrap_or(ExitStatus::Failure);
            status.into()
        }
    }
}

/// Logs go to stderr: warnings by default, debug with `-v`, trace with `-vv`; `RUST_LOG`
/// overrides. `--quiet` keeps errors only.
fn init_logging(printer: &Printer) {
    use tracing_subscriber::EnvFilter;
    let default = match (printer.quiet, printer.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,mcache=debug,model_cache=debug,local_api=debug",
        (false, _) => "debug,mcache=trace,model_cache=trace,local_api=trace",
    };
    let filter = std::env::var(terminal::RUST_LOG)
        .ok()
        .and_then(|value| EnvFilter::try_new(value).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(printer.terminal.color)
        .without_time()
        .try_init();
}
