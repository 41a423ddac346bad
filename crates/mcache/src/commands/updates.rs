//! `mcache outdated`, `mcache update`, `mcache hold` and `mcache follow`: the cached models whose
//! followed branch has a newer commit, and what to do about each.

use model_cache::engine::{Engine, PullRequest, UpdateCheckPolicy};
use model_cache::units::format_size;

use crate::commands::pull::{describe_plan, download_plan};
use crate::commands::{Interrupt, parse_repo};
use crate::exit::ExitStatus;
use crate::printer::Printer;

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

/// Lists the followed branches with a newer commit; asks the Hub first (one request per branch)
/// unless `cached`. The user asked, so the per-branch rate limit and a metered connection do
/// not stop it; offline, nothing is asked.
pub(super) async fn outdated(
    engine: &Engine,
    cached: bool,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let report = if cached {
        model_cache::engine::UpdateCheckReport {
            updates: engine.updates()?,
            ..Default::default()
        }
    } else {
        engine
            .check_updates(&UpdateCheckPolicy::default(), None, true)
            .await?
    };
    printer.output(&report, |report| {
        if report.skipped.as_deref() == Some("offline") {
            printer.warning("offline: the Hub was not asked; showing the last check");
        }
        for update in &report.updates {
            printer.data(format!(
                "{:<44} {:<10} {} -> {}",
                update.repo,
                update.branch,
                short(&update.commit),
                short(&update.latest)
            ));
        }
        for (repo, branch, kind) in &report.failed {
            printer.warning(format!("could not check `{repo}` ({branch}): {kind}"));
        }
        let checked = if cached {
            String::new()
        } else {
            format!("{} branch(es) checked; ", report.checked)
        };
        printer.message(match report.updates.len() {
            0 => format!("{checked}every cached model is up to date"),
            n => format!("{checked}{n} update(s) available: `mcache update REPO` downloads one"),
        });
    })?;
    Ok(ExitStatus::Success)
}

/// Downloads the newer commit of a followed branch in this process (like `pull`).
pub(super) async fn update(
    engine: &Engine,
    repo: &str,
    branch: &str,
    interrupt: &mut Interrupt,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let repo = parse_repo(repo)?;
    let plan = tokio::select! {
        plan = engine.plan_update(&repo, branch) => plan?,
        _ = interrupt.wait() => {
            eprintln!("interrupted; run the same command to resume");
            return Ok(ExitStatus::Interrupted);
        }
    };
    if plan.commit.is_some() && plan.cached_bytes == plan.total_bytes {
        printer.message(format!(
            "every file of `{repo}` at `{branch}` is already cached ({})",
            format_size(plan.total_bytes)
        ));
    }
    describe_plan(&plan, printer);
    engine.follow(&repo, branch)?;
    let request = PullRequest {
        repo: Some(repo),
        revision: Some(branch.to_string()),
        ..PullRequest::default()
    };
    download_plan(engine, &request, plan, interrupt, printer).await
}

/// Keeps a branch at its cached commit (`held`), or follows it again.
pub(super) fn hold(
    engine: &Engine,
    repo: &str,
    branch: &str,
    held: bool,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let repo = parse_repo(repo)?;
    if held {
        let view = engine.hold(&repo, branch)?;
        if printer.json {
            printer.json_line(&view)?;
        }
        printer.message(format!(
            "`{repo}` stays at {} ({branch} is no longer checked for updates)",
            short(&view.commit)
        ));
    } else {
        let was = engine.follow(&repo, branch)?;
        if printer.json {
            printer.json_line(
                &serde_json::json!({ "repo": repo.to_string(), "branch": branch, "was_held": was }),
            )?;
        }
        printer.message(if was {
            format!("`{repo}` follows {branch} again")
        } else {
            format!("`{repo}` already follows {branch}")
        });
    }
    Ok(ExitStatus::Success)
}
