//! `mcache pull`: plan with the engine, download in this process with progress, print the
//! snapshot path. Ctrl-C pauses the download (every finished chunk stays recorded) and exits
//! with 130; the next `pull` resumes it.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use model_cache::download::{ChannelReporter, DownloadEvent, DownloadSummary};
use model_cache::engine::{Choice, Engine, PullPlan, PullRequest};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::cli::PullArgs;
use crate::commands::{Interrupt, parse_repo};
use crate::exit::{CliError, CliKind, ExitStatus, error_kind};
use crate::printer::Printer;
use crate::progress::{ProgressMode, PullProgress};
use model_cache::error::ErrorKind;
use model_cache::units::format_size;

/// The final line of `pull --json`: the engine's summary plus where the snapshot is and which
/// variant was taken.
#[derive(Debug, Serialize)]
struct PullResult<'a> {
    #[serde(flatten)]
    summary: &'a DownloadSummary,
    variant: Option<&'a str>,
    choice: Choice,
    snapshot_path: PathBuf,
}

pub(super) async fn pull(
    engine: &Engine,
    args: PullArgs,
    interrupt: &mut Interrupt,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let repo = parse_repo(&args.repo)?;
    let mut variant = args.variant.clone().or(args.quant.clone());
    let picks_files = !args.include.is_empty();
    if variant.is_none() && !picks_files && printer.interactive() {
        variant = tokio::select! {
            picked = pick_variant(engine, &repo, args.revision.as_deref()) => picked?,
            _ = interrupt.wait() => return Ok(interrupted()),
        };
    }
    let request = PullRequest {
        repo: Some(repo.clone()),
        revision: args.revision.clone(),
        variant,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        ..PullRequest::default()
    };
    let plan = tokio::select! {
        plan = engine.plan_pull(&request) => plan.map_err(|error| offline_context(engine, &request, error.into()))?,
        _ = interrupt.wait() => return Ok(interrupted()),
    };
    describe_plan(&plan, printer);
    if !make_room(engine, &plan, args.evict, printer).await? {
        // Declined at the prompt: the same exit as without a terminal to ask (no room).
        eprintln!("cancelled: nothing was removed or downloaded");
        return Ok(ExitStatus::DiskFull);
    }
    download_plan(engine, &request, plan, interrupt, printer).await
}

/// `bytes` rounded up to a whole MiB (under 1 GiB) or GiB, as `config set` reads it.
fn round_up_size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes < GIB {
        format!("{}MiB", bytes.div_ceil(MIB))
    } else {
        format!("{}GiB", bytes.div_ceil(GIB))
    }
}

/// Before a download that does not fit in the free space above the reserve, or would take the
/// cache over its budget: says so and names what making room would remove. With `--evict`
/// (or a "yes" at the prompt) exactly that is removed; without a terminal to ask, nothing is,
/// and the command stops with what to do. The settings "evict to make room" and "clean up in
/// the background" are consent given once: nothing is asked then. Returns false when the user
/// declines.
async fn make_room(
    engine: &Engine,
    plan: &PullPlan,
    evict: bool,
    printer: &Printer,
) -> anyhow::Result<bool> {
    let room = {
        let (engine, plan) = (engine.clone(), plan.clone());
        tokio::task::spawn_blocking(move || engine.room_for(&plan)).await??
    };
    if room.fits || room.consent {
        return Ok(true);
    }
    let mut reasons = Vec::new();
    if room.disk_short > 0 {
        reasons.push(format!(
            "only {} is free on the disk above the reserve of {}",
            format_size(room.free_above_reserve),
            format_size(room.reserve)
        ));
    }
    if let Some(budget) = room.budget.filter(|_| room.over_budget_by > 0) {
        reasons.push(format!(
            "the cache would be {} over its budget of {}",
            format_size(room.over_budget_by),
            format_size(budget)
        ));
    }
    let situation = format!(
        "This download needs {}, but {}",
        format_size(room.needed),
        reasons.join(", and ")
    );
    if !room.evictions.is_empty() {
        eprintln!("{situation}.");
        eprintln!(
            "{}",
            if room.evictions_enough {
                "Making room would remove, least recently used first:"
            } else {
                "Removing every model that can go (not pinned, not downloading) would not be enough:"
            }
        );
        for e in &room.evictions {
            let variant = e
                .variant
                .as_deref()
                .map(|v| format!(" ({v})"))
                .unwrap_or_default();
            eprintln!("  {}{variant}  {}", e.repo, format_size(e.bytes_freed));
        }
    }
    let not_enough = || {
        let mut error = CliError::new(ErrorKind::DiskFull, format!("{situation}."));
        if room.evictions_enough && !room.evictions.is_empty() {
            error = error.hint("run again with `--evict` to remove the models listed");
        }
        if room.over_budget_by > 0 {
            error = error.hint(format!(
                "raise the budget: `mcache config set size_budget_bytes {}`",
                round_up_size(room.used.unwrap_or(0) + room.needed)
            ));
        }
        if room.disk_short > 0 {
            error = error.hint("free space on the cache's disk, or choose another cache folder");
        }
        error
    };
    if !room.evictions_enough || room.evictions.is_empty() {
        return Err(not_enough().into());
    }
    if !evict {
        if !printer.interactive() {
            return Err(not_enough().into());
        }
        let answer = tokio::task::spawn_blocking(|| -> std::io::Result<String> {
            eprint!("Remove these and download? [y/N] ");
            std::io::stderr().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            Ok(line.trim().to_lowercase())
        })
        .await??;
        if !matches!(answer.as_str(), "y" | "yes") {
            return Ok(false);
        }
    }
    let keys: Vec<String> = room.evictions.iter().map(|e| e.key.clone()).collect();
    let freed = {
        let (engine, plan) = (engine.clone(), plan.clone());
        tokio::task::spawn_blocking(move || engine.make_room(&plan, &keys)).await??
    };
    eprintln!("removed {} to make room", format_size(freed));
    Ok(true)
}

/// Downloads a planned pull in this process with progress, pausing (and keeping every verified
/// chunk) at Ctrl-C; prints the snapshot path.
pub(super) async fn download_plan(
    engine: &Engine,
    request: &PullRequest,
    plan: PullPlan,
    interrupt: &mut Interrupt,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let (sender, mut events) = mpsc::unbounded_channel();
    let handle = engine.download(&plan, Arc::new(ChannelReporter(sender)));
    let control = handle.control().clone();
    let mode = ProgressMode::for_printer(printer);
    // Only while bars are on screen; restored when the pull returns, however it returns.
    let _echo = (mode == ProgressMode::Bars).then(crate::terminal::QuietControlEcho::new);
    let mut progress = PullProgress::new(mode, *printer, Some(plan.total_bytes));
    let wait = handle.wait();
    tokio::pin!(wait);
    let result = loop {
        tokio::select! {
            biased;
            _ = interrupt.wait() => {
                // Pause, not cancel: a cancelled job deletes its partial files, a paused one
                // keeps every recorded chunk for the next run. Wait (briefly) for the engine
                // to acknowledge so in-flight writes land before the process exits.
                control.pause();
                let acknowledged = tokio::time::timeout(Duration::from_secs(3), async {
                    while let Some(event) = events.recv().await {
                        let paused = matches!(event, DownloadEvent::Paused { .. });
                        if printer.json {
                            let _ = printer.json_line(&event);
                        }
                        if paused {
                            break;
                        }
                    }
                })
                .await;
                if acknowledged.is_err() {
                    tracing::debug!("the download did not acknowledge the pause in time");
                }
                progress.abandon();
                let (kept, total) = progress.kept();
                eprintln!(
                    "interrupted: kept {} of {}; run the same command to resume",
                    format_size(kept),
                    format_size(total)
                );
                return Ok(ExitStatus::Interrupted);
            }
            Some(event) = events.recv() => progress.handle(&event)?,
            result = &mut wait => break result,
        }
    };
    // Events sent just before the end are still in the channel.
    while let Ok(event) = events.try_recv() {
        progress.handle(&event)?;
    }
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            progress.abandon();
            return Err(offline_context(engine, request, error.into()));
        }
    };
    progress.finish();
    // Pushes to the team bucket run beside the download; this process waits for its own.
    engine.downloader().wait_for_pushes().await;
    let snapshot_path = engine
        .cache()
        .repo(&plan.repo)
        .snapshot_dir(&summary.commit);
    if printer.json {
        printer.json_line(&PullResult {
            summary: &summary,
            variant: plan.variant.as_deref(),
            choice: plan.choice,
            snapshot_path,
        })?;
    } else {
        println!("{}", snapshot_path.display());
    }
    Ok(ExitStatus::Success)
}

/// Printed even with `--quiet`: it explains the exit code.
fn interrupted() -> ExitStatus {
    eprintln!("interrupted; run the same command to resume");
    ExitStatus::Interrupted
}

pub(super) fn describe_plan(plan: &PullPlan, printer: &Printer) {
    let what = match (plan.choice, plan.variant.as_deref()) {
        (Choice::Recommended, Some(name)) => {
            printer.message(format!(
                "Using the recommended variant `{name}` of `{}` (choose another with --variant or --quant; `mcache variants {}` lists them)",
                plan.repo, plan.repo
            ));
            format!("variant `{name}`")
        }
        (_, Some(name)) => format!("variant `{name}`"),
        (Choice::Files, None) => "selected files".to_string(),
        _ => "every file".to_string(),
    };
    let cached = if plan.cached_bytes > 0 {
        format!(", {} already cached", format_size(plan.cached_bytes))
    } else {
        String::new()
    };
    printer.message(format!(
        "Pulling {what} of `{}` at `{}`: {} file(s), {}{cached}",
        plan.repo,
        plan.revision,
        plan.files.len(),
        format_size(plan.total_bytes)
    ));
}

/// In offline mode the engine lists the repo from the cache, so "no such variant" or "nothing
/// selected" means "not downloaded yet": report it as the offline miss it is.
fn offline_context(engine: &Engine, request: &PullRequest, error: anyhow::Error) -> anyhow::Error {
    let kind = error_kind(&error);
    if !engine.settings().offline
        || !matches!(
            kind,
            Some(CliKind::Engine(
                ErrorKind::NoSuchVariant | ErrorKind::NothingSelected | ErrorKind::NotCached
            ))
        )
    {
        return error;
    }
    let repo = request
        .repo
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let what = match (&request.variant, request.include.is_empty()) {
        (Some(variant), _) => format!("variant `{variant}` of `{repo}`"),
        (None, false) => format!("files matching {} in `{repo}`", request.include.join(", ")),
        (None, true) => format!("`{repo}`"),
    };
    CliError::new(
        ErrorKind::OfflineMiss,
        format!(
            "Offline mode is on and {what} at `{}` is not in the cache",
            request.revision.as_deref().unwrap_or("main")
        ),
    )
    .hint("go online once to download it (drop --offline, unset HF_HUB_OFFLINE)")
    .hint(format!("`mcache ls {repo}` shows what is cached"))
    .into()
}

/// The numbered picker shown when stdin and stderr are terminals and no variant was named.
async fn pick_variant(
    engine: &Engine,
    repo: &model_cache::RepoId,
    revision: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let report = engine.variants(repo, revision).await?;
    if report.variants.len() <= 1 {
        return Ok(None);
    }
    eprintln!("`{repo}` has {} variants:", report.variants.len());
    let default = report
        .variants
        .iter()
        .position(|v| v.recommended)
        .unwrap_or(0);
    for (number, view) in report.variants.iter().enumerate() {
        eprintln!(
            "  {:>2}) {}{:<28} {:>10}  {}",
            number + 1,
            if view.recommended { "*" } else { " " },
            view.variant.name,
            format_size(view.variant.total_size),
            super::variants::tier_label(view)
        );
    }
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        eprint!("Variant to pull [{}]: ", default + 1);
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim().to_string())
    })
    .await??;
    let index = if answer.is_empty() {
        default
    } else {
        match answer.parse::<usize>() {
            Ok(n) if (1..=report.variants.len()).contains(&n) => n - 1,
            _ => {
                return Err(CliError::usage(format!(
                    "`{answer}` is not a number between 1 and {}",
                    report.variants.len()
                ))
                .into());
            }
        }
    };
    Ok(Some(report.variants[index].variant.id.clone()))
}
