//! `mcache stats` and `mcache doctor`: the engine's metrics, health and index check.

use model_cache::engine::{Engine, Stats};

use crate::exit::{CliError, CliKind, ExitStatus};
use crate::printer::Printer;
use model_cache::units::format_size;

pub(super) fn stats(engine: &Engine, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let stats = engine.stats()?;
    printer.output(&stats, |stats| print_stats(printer, engine, stats))?;
    Ok(ExitStatus::Success)
}

fn print_stats(printer: &Printer, engine: &Engine, stats: &Stats) {
    let row = |name: &str, value: String| printer.data(format!("{name:<22} {value}"));
    let counters = &stats.counters;
    let health = &stats.health;
    row("cache", engine.settings().hub_cache.display().to_string());
    row("status", health.status.clone());
    row("downloaded", format_size(counters.bytes_downloaded));
    row("served from cache", format_size(counters.bytes_from_cache));
    if counters.bytes_reused > 0 {
        row(
            "  of which Xet chunks reused",
            format_size(counters.bytes_reused),
        );
    }
    row(
        "cache hits / misses",
        format!(
            "{} / {}{}",
            counters.hits,
            counters.misses,
            health
                .hit_rate_percent
                .map(|p| format!(" ({p}% hits)"))
                .unwrap_or_default()
        ),
    );
    let storage = &health.storage;
    row(
        "storage used",
        match storage.budget {
            Some(budget) => format!(
                "{} of {} budget{}",
                format_size(storage.used),
                format_size(budget),
                storage
                    .percent_of_budget
                    .map(|p| format!(" ({p}%)"))
                    .unwrap_or_default()
            ),
            None => format!("{} (no budget)", format_size(storage.used)),
        },
    );
    row(
        "models",
        format!(
            "{} repo(s), {} revision(s)",
            storage.repos, storage.revisions
        ),
    );
    if storage.incomplete_bytes > 0 {
        row("partial downloads", format_size(storage.incomplete_bytes));
    }
    if let Some(space) = &health.volume.space {
        row(
            "disk free",
            format!(
                "{} of {}",
                format_size(space.available),
                format_size(space.total)
            ),
        );
    }
    if !health.jobs.is_empty() {
        let jobs: Vec<String> = health
            .jobs
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        row("jobs", jobs.join(", "));
    }
    for problem in &health.problems {
        printer.warning(problem);
    }
}

pub(super) fn doctor(
    engine: &Engine,
    check_only: bool,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let report = engine.doctor(!check_only)?;
    let healthy = report.is_healthy();
    printer.output(&report, |report| {
        let row = |name: &str, value: String| printer.data(format!("{name:<24} {value}"));
        row("cache", report.cache_root.display().to_string());
        row(
            "on disk",
            format!(
                "{} repo(s), {} blob(s), {}",
                report.repos_on_disk.len(),
                report.blobs_on_disk,
                format_size(report.bytes_on_disk)
            ),
        );
        let list = |name: &str, items: Vec<String>| {
            if !items.is_empty() {
                row(name, items.len().to_string());
                for item in items {
                    printer.data(format!("  {item}"));
                }
            }
        };
        let show = |paths: &[std::path::PathBuf]| -> Vec<String> {
            paths.iter().map(|p| p.display().to_string()).collect()
        };
        list(
            "repos added to index",
            report.repos_added.iter().map(ToString::to_string).collect(),
        );
        list(
            "repos gone from disk",
            report
                .repos_missing
                .iter()
                .map(ToString::to_string)
                .collect(),
        );
        list(
            "blob rows dropped",
            report
                .blob_rows_dropped
                .iter()
                .map(|(r, e)| format!("{r} {e}"))
                .collect(),
        );
        list(
            "commits dropped",
            report
                .commits_dropped
                .iter()
                .map(|(r, c)| format!("{r} {c}"))
                .collect(),
        );
        list("broken links", show(&report.broken_links));
        list("stale partial files", show(&report.stale_incomplete));
        list(
            "resumable partial files",
            show(&report.resumable_incomplete),
        );
        list("unreferenced blobs", show(&report.unreferenced_blobs));
        list("dangling refs", show(&report.dangling_refs));
        list("removed", show(&report.removed));
        for warning in &report.warnings {
            printer.warning(format!("{}: {}", warning.path.display(), warning.message));
        }
        if healthy {
            printer.message("The index matches the disk");
        } else if report.repair {
            printer.message("Repaired what could be repaired");
        }
    })?;
    if check_only && !healthy {
        return Err(
            CliError::new(CliKind::Unhealthy, "The index does not match the disk")
                .hint("run `mcache doctor` without --check to repair it")
                .into(),
        );
    }
    Ok(ExitStatus::Success)
}
