//! The cache commands: `ls`, `rm`, `verify`, `pin`/`unpin`, `gc`. Each is one engine call and a
//! rendering of what it returns (the local API's shapes with `--json`).

use model_cache::engine::{CachedRepoView, Engine, VerifyReport};
use model_cache::policy::cleanup::CleanupReport;

use crate::commands::parse_repo;
use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;
use model_cache::error::ErrorKind;
use model_cache::units::format_size;

/// `2026-11-27 02:49` in UTC from unix milliseconds; `-` when unknown.
fn format_time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

pub(super) fn ls(
    engine: &Engine,
    repo: Option<&str>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let mut repos = engine.cache_list()?;
    if let Some(wanted) = repo {
        let wanted = parse_repo(wanted)?.to_string();
        repos.retain(|r| r.repo == wanted);
        if repos.is_empty() {
            return Err(CliError::new(
                ErrorKind::NotCached,
                format!("`{wanted}` is not in the cache"),
            )
            .hint("`mcache ls` lists cached models")
            .into());
        }
    }
    printer.output(&repos, |repos| {
        if repos.is_empty() {
            printer.message(format!(
                "The cache `{}` is empty",
                engine.settings().hub_cache.display()
            ));
            return;
        }
        print_repos(printer, repos, repo.is_some());
    })?;
    Ok(ExitStatus::Success)
}

fn print_repos(printer: &Printer, repos: &[CachedRepoView], details: bool) {
    printer.data(format!(
        "{:<44} {:>9} {:>10}  {:<16}  {}",
        "REPO", "REVISIONS", "SIZE", "LAST USED", "PINNED"
    ));
    for repo in repos {
        printer.data(format!(
            "{:<44} {:>9} {:>10}  {:<16}  {}",
            repo.repo,
            repo.revisions.len(),
            format_size(repo.size_bytes),
            format_time(repo.last_used),
            if repo.pinned { "yes" } else { "no" }
        ));
        if details {
            for revision in &repo.revisions {
                let refs = if revision.refs.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", revision.refs.join(", "))
                };
                printer.data(format!(
                    "  {}{refs}: {} file(s), {}  {}",
                    revision.commit,
                    revision.files,
                    format_size(revision.size_bytes),
                    revision.snapshot_path.display()
                ));
            }
        }
        for update in &repo.updates {
            printer.data(format!(
                "  update available: {} {} -> {} (`mcache update {} --branch {}`)",
                update.branch,
                &update.commit[..update.commit.len().min(10)],
                &update.latest[..update.latest.len().min(10)],
                repo.repo,
                update.branch
            ));
        }
        for held in &repo.held {
            printer.data(format!(
                "  kept at {} ({} is not followed; `mcache follow {}`)",
                &held.commit[..held.commit.len().min(10)],
                held.branch,
                repo.repo
            ));
        }
    }
    let total: u64 = repos.iter().map(|r| r.size_bytes).sum();
    printer.message(format!("{} repo(s), {}", repos.len(), format_size(total)));
}

pub(super) fn rm(
    engine: &Engine,
    repo: &str,
    revision: Option<&str>,
    variant: Option<&str>,
    force: bool,
    dry_run: bool,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let repo = parse_repo(repo)?;
    let removal = match variant {
        Some(variant) => engine.delete_variant(&repo, revision, variant, force, dry_run),
        None => engine.delete(&repo, revision, force, dry_run),
    }
    .map_err(|error| {
        let kind = error.kind();
        let error = anyhow::Error::new(error);
        if kind == ErrorKind::Pinned {
            error.context(
                CliError::new(ErrorKind::Pinned, format!("`{repo}` is pinned"))
                    .hint(format!("run `mcache unpin {repo}` first, or pass --force")),
            )
        } else {
            error
        }
    })?;
    printer.output(&removal, |removal| {
        let verb = if dry_run { "Would remove" } else { "Removed" };
        for path in &removal.paths {
            printer.data(path.display().to_string());
        }
        printer.message(format!(
            "{verb} `{repo}`{}{}: {} freed",
            variant
                .map(|v| format!(" variant `{v}`"))
                .unwrap_or_default(),
            revision.map(|r| format!(" at `{r}`")).unwrap_or_default(),
            format_size(removal.bytes_freed)
        ));
    })?;
    Ok(ExitStatus::Success)
}

pub(super) async fn verify(
    engine: &Engine,
    repo: Option<&str>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let repo = repo.map(parse_repo).transpose()?;
    let report: VerifyReport = engine.verify(repo.as_ref()).await?;
    printer.output(&report, |report| {
        for file in &report.corrupt {
            printer.data(format!(
                "corrupt  {} {}  (expected {}, got {})",
                file.repo, file.path, file.expected, file.actual
            ));
        }
        if report.corrupt.is_empty() {
            printer.data(format!(
                "ok: {} file(s), {} verified",
                report.checked,
                format_size(report.bytes)
            ));
        }
    })?;
    if report.corrupt.is_empty() {
        Ok(ExitStatus::Success)
    } else {
        Err(CliError::new(
            ErrorKind::Integrity,
            format!(
                "{} of {} cached file(s) do not match their hash",
                report.corrupt.len(),
                report.checked
            ),
        )
        .hint("remove the repo with `mcache rm REPO` and pull it again")
        .into())
    }
}

pub(super) fn pin(
    engine: &Engine,
    repo: &str,
    pinned: bool,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let repo = parse_repo(repo)?;
    engine.set_pinned(&repo, pinned)?;
    let view = engine
        .cache_list()?
        .into_iter()
        .find(|view| view.repo == repo.to_string());
    if printer.json {
        match &view {
            Some(view) => printer.json_line(view)?,
            None => printer
                .json_line(&serde_json::json!({ "repo": repo.to_string(), "pinned": pinned }))?,
        }
    }
    let state = if pinned { "Pinned" } else { "Unpinned" };
    printer.message(format!("{state} `{repo}`"));
    if view.is_none() && pinned {
        printer.warning(format!(
            "`{repo}` is not in the cache yet; the pin applies once it is"
        ));
    }
    Ok(ExitStatus::Success)
}

pub(super) fn gc(
    engine: &Engine,
    max_size: Option<u64>,
    dry_run: bool,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let report = engine.gc(max_size, dry_run)?;
    printer.output(&report, |report| print_cleanup(printer, report))?;
    Ok(ExitStatus::Success)
}

fn print_cleanup(printer: &Printer, report: &CleanupReport) {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for path in &report.stale_incomplete.paths {
        printer.data(format!("{verb}  stale partial file  {}", path.display()));
    }
    for path in &report.unreferenced_blobs.paths {
        printer.data(format!("{verb}  unreferenced blob   {}", path.display()));
    }
    for (repo, commit) in &report.old_revisions {
        printer.data(format!("{verb}  old revision        {repo} {commit}"));
    }
    if let Some(plan) = &report.eviction {
        for eviction in &plan.evictions {
            let variant = eviction
                .variant
                .as_deref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default();
            printer.data(format!(
                "{verb}  least recently used {} {}{variant} ({})",
                eviction.repo,
                eviction.commit,
                format_size(eviction.bytes_freed)
            ));
        }
        if !plan.satisfied {
            printer.warning(format!(
                "the budget cannot be met: {} more would be needed, and only unpinned models are evicted",
                format_size(plan.bytes_wanted.saturating_sub(plan.bytes_freed))
            ));
        }
    }
    let freed = if report.dry_run {
        "would be freed"
    } else {
        "freed"
    };
    printer.message(format!(
        "{} {freed}; the cache is {} after",
        format_size(report.bytes_freed),
        format_size(report.bytes_after)
    ));
}
