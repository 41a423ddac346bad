//! One function per command; each resolves settings, calls the engine, prints the result.
//!
//! Commands that need no engine (completions, login, demo, queue, inspect, path) run without
//! opening the index; the others open one [`Engine`] for the duration of the command.

mod cache;
mod completions;
mod config;
mod convert;
mod demo;
mod import;
mod inspect;
mod login;
mod native_host;
mod path;
mod peers;
mod pull;
mod queue;
mod serve;
mod status;
mod updates;
mod variants;

use model_cache::engine::{Engine, EngineOptions};
use model_cache::{RepoId, Settings};

use crate::cli::{Cli, Command, ConfigAction};
use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;

/// Parses a repo id as users type it (`org/name`, a Hub URL).
pub(crate) fn parse_repo(input: &str) -> Result<RepoId, CliError> {
    RepoId::parse_user_input(input)
        .map_err(|error| CliError::usage(error.to_string()).hint("a repo id looks like `org/name`"))
}

/// SIGINT (Ctrl-C), caught from the start of a command so it can stop cleanly.
pub(crate) struct Interrupt {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupt {
    pub(crate) fn install() -> std::io::Result<Interrupt> {
        Ok(Interrupt {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?,
        })
    }

    /// Resolves at the next Ctrl-C.
    pub(crate) async fn wait(&mut self) {
        #[cfg(unix)]
        {
            self.signal.recv().await;
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The token in a `--token-file` (`-`: stdin): its first line, trimmed.
fn read_token_file(path: &std::path::Path) -> Result<String, crate::exit::CliError> {
    use std::io::BufRead as _;
    let what = path.display().to_string();
    let text = if path.as_os_str() == "-" {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map(|_| line)
            .map_err(|e| e.to_string())
    } else {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }
    .map_err(|reason| {
        crate::exit::CliError::usage(format!("Cannot read the token from `{what}`: {reason}"))
            .hint("pass a file holding the token (`--token-file PATH`), or `-` to pipe it in")
    })?;
    let token = text.lines().next().unwrap_or_default().trim().to_string();
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        return Err(crate::exit::CliError::usage(format!(
            "`{what}` holds no token on its first line"
        ))
        .hint("write the token (`hf_...`) alone on the first line"));
    }
    Ok(token)
}

/// Opens the engine for one command. The queue is opened passively: a short-lived command must
/// not start, resume or clean up jobs that a running app (or `mcache serve`) owns.
pub(crate) async fn open_engine(global: &crate::cli::GlobalArgs) -> anyhow::Result<Engine> {
    open_engine_with(global, false).await
}

/// Opens the engine, running the download queue in this process when `run_queue` (`serve`).
pub(crate) async fn open_engine_with(
    global: &crate::cli::GlobalArgs,
    run_queue: bool,
) -> anyhow::Result<Engine> {
    open_engine_from(crate::settings::resolve(global)?, run_queue)
}

/// Opens the engine on settings already resolved.
pub(crate) fn open_engine_from(settings: Settings, run_queue: bool) -> anyhow::Result<Engine> {
    let options = EngineOptions {
        run_queue,
        ..EngineOptions::system()
    };
    Ok(Engine::open(settings, options)?)
}

pub(crate) async fn run(cli: Cli, printer: Printer) -> anyhow::Result<ExitStatus> {
    let mut global = cli.global;
    if let Some(path) = global.token_file.take() {
        global.token = Some(read_token_file(&path)?);
    } else if global.token.is_some() {
        printer.warning(
            "`--token` is visible to other users (`ps`) and stays in your shell history; \
             prefer `--token-file PATH`, `--token-file -` (stdin) or `HF_TOKEN`",
        );
    }
    match cli.command {
        Command::Completions { shell } => completions::completions(shell),
        Command::Demo { port } => demo::demo(port, &printer).await,
        Command::Queue { action } => {
            let settings = crate::settings::resolve(&global)?;
            queue::queue(settings.data_dir, action, &printer).await
        }
        Command::Inspect {
            target,
            file,
            revision,
        } => {
            inspect::inspect(
                &global,
                &target,
                file.as_deref(),
                revision.as_deref(),
                &printer,
            )
            .await
        }
        Command::Serve(args) => serve::serve(global, args, &printer).await,
        Command::Update { repo, branch } => {
            // Like `pull`: Ctrl-C pauses, and the same command resumes.
            let mut interrupt = Interrupt::install()?;
            let engine = open_engine(&global).await?;
            let result = updates::update(&engine, &repo, &branch, &mut interrupt, &printer).await;
            engine.shutdown();
            result
        }
        Command::NativeHost(args) => {
            let settings = crate::settings::resolve(&global)?;
            native_host::native_host(settings.data_dir, args, &printer).await
        }
        Command::Convert(args) => {
            // Ctrl-C cancels the conversion: its temporary file is removed.
            let mut interrupt = Interrupt::install()?;
            let engine = open_engine(&global).await?;
            let result = convert::convert(&engine, args, &mut interrupt, &printer).await;
            engine.shutdown();
            result
        }
        Command::Pull(args) => {
            // Ctrl-C is caught before the engine opens: `pull` turns it into a clean pause.
            let mut interrupt = Interrupt::install()?;
            let engine = open_engine(&global).await?;
            let result = pull::pull(&engine, args, &mut interrupt, &printer).await;
            engine.shutdown();
            result
        }
        command => {
            // Other commands stop at Ctrl-C between steps: synchronous engine calls (removals,
            // cleanup) finish the step they are in, so nothing is left half-written; reads
            // (listings, hashing) are simply dropped.
            let mut interrupt = Interrupt::install()?;
            let engine = open_engine(&global).await?;
            let result = tokio::select! {
                result = run_with_engine(&engine, &global, command, &printer) => result,
                _ = interrupt.wait() => {
                    eprintln!("interrupted");
                    Ok(ExitStatus::Interrupted)
                }
            };
            engine.shutdown();
            result
        }
    }
}

async fn run_with_engine(
    engine: &Engine,
    global: &crate::cli::GlobalArgs,
    command: Command,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    match command {
        Command::Variants { repo, revision } => {
            variants::variants(engine, &repo, revision.as_deref(), printer).await
        }
        Command::Ls { repo } => cache::ls(engine, repo.as_deref(), printer),
        Command::Path {
            repo,
            file,
            revision,
        } => path::path(engine, &repo, &file, revision.as_deref(), printer),
        Command::Rm {
            repo,
            revision,
            variant,
            force,
            dry_run,
        } => cache::rm(
            engine,
            &repo,
            revision.as_deref(),
            variant.as_deref(),
            force,
            dry_run,
            printer,
        ),
        Command::Verify { repo } => cache::verify(engine, repo.as_deref(), printer).await,
        Command::Outdated { cached } => updates::outdated(engine, cached, printer).await,
        Command::Peers { action } => peers::peers(engine, action, printer).await,
        Command::Hold { repo, branch } => updates::hold(engine, &repo, &branch, true, printer),
        Command::Follow { repo, branch } => updates::hold(engine, &repo, &branch, false, printer),
        Command::Import(args) => import::import(engine, args, printer).await,
        Command::Push { repo, revision } => {
            let repo = parse_repo(&repo)?;
            let report = engine
                .push(&repo, &revision, &|path, part, parts| {
                    eprintln!("pushed part {part}/{parts} of {path}");
                })
                .await?;
            printer.output(&report, |r| {
                printer.data(format!(
                    "pushed {} file(s) ({} bytes), {} already in the bucket; {} at {}",
                    r.pushed, r.bytes, r.already_there, r.revision, r.commit
                ));
            })?;
            Ok(ExitStatus::Success)
        }
        Command::Pin { repo } => cache::pin(engine, &repo, true, printer),
        Command::Unpin { repo } => cache::pin(engine, &repo, false, printer),
        Command::Gc { max_size, dry_run } => {
            cache::gc(engine, max_size.map(|size| size.0), dry_run, printer)
        }
        Command::Stats => status::stats(engine, printer),
        Command::Login { stdin } => login::login(engine, global, stdin, printer),
        Command::Logout => login::logout(engine, printer),
        Command::Doctor { check } => status::doctor(engine, check, printer),
        Command::Config { action } => match action {
            ConfigAction::Get { key } => config::get(engine, key.as_deref(), printer),
            ConfigAction::Set { key, value } => config::set(engine, &key, &value, printer),
        },
        Command::Completions { .. }
        | Command::Pull(_)
        | Command::Convert(_)
        | Command::Update { .. }
        | Command::Demo { .. }
        | Command::Queue { .. }
        | Command::Inspect { .. }
        | Command::Serve(_)
        | Command::NativeHost(_) => unreachable!("handled without an engine"),
    }
}
