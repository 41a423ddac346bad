//! `mcache queue`: the jobs of a running desktop app or `mcache serve`, through the local API.
//!
//! The server writes `api.json` (`{"url", "pid", "secret_file"}`) and the secret it names
//! (`api-token`, new at every start) into the app-data folder (see `docs/local-api.md`);
//! `local_api::client` finds it through them, only on this machine and while its process
//! lives, and calls `/api/jobs`. This module renders the answers and the client's errors. Nothing here touches
//! the engine: the queue belongs to the process that runs it.

use std::path::{Path, PathBuf};

use local_api::client::{Client, ClientError};
use model_cache::engine::JobAction;
use serde_json::Value;

use crate::cli::{JobTarget, QueueAction};
use crate::exit::{CliError, CliKind, ExitStatus};
use crate::printer::Printer;
use model_cache::error::ErrorKind;
use model_cache::units::{format_duration, format_rate, format_size};

/// The client's errors as the CLI reports them: a stable kind for the exit code, and hints that
/// name what to run.
fn cli_error(error: ClientError) -> anyhow::Error {
    match error {
        ClientError::NoServer { data_dir } => no_server(&data_dir).into(),
        ClientError::StaleDiscovery {
            data_dir,
            path,
            pid,
        } => no_server(&data_dir)
            .hint(format!(
                "`{}` is left over from a server (pid {pid}) that is no longer running",
                path.display()
            ))
            .into(),
        ClientError::NotLoopback { path, url } => CliError::new(
            CliKind::NoServer,
            format!(
                "`{}` names `{url}`, which is not a loopback address of this machine; refusing to send the API secret there",
                path.display()
            ),
        )
        .hint(format!(
            "`mcache queue` only reaches a server on this machine; remove `{}` if no Model Cache server uses this folder",
            path.display()
        ))
        .into(),
        ClientError::Unreachable { base_url, source } => CliError::new(
            ErrorKind::Network,
            format!("Cannot reach the local API at `{base_url}`: {source}"),
        )
        .hint("the app or `mcache serve` may have stopped; start it again")
        .into(),
        ClientError::Api(error) => {
            let mut cli = CliError::new(CliKind::parse(&error.kind), error.message);
            if let Some(hint) = error.hint {
                cli = cli.hint(hint.trim_start_matches("hint:").trim());
            }
            cli.into()
        }
        other => other.into(),
    }
}

fn no_server(data_dir: &Path) -> CliError {
    CliError::new(
        CliKind::NoServer,
        format!(
            "No running Model Cache app or `mcache serve` uses `{}`",
            data_dir.display()
        ),
    )
    .hint("start the app, or run `mcache serve` in another terminal (with the same --data-dir)")
}

pub(super) async fn queue(
    data_dir: PathBuf,
    action: Option<QueueAction>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let api = Client::discover(&data_dir).map_err(cli_error)?;
    match action.unwrap_or(QueueAction::List) {
        QueueAction::List => {
            let jobs = api.jobs().await.map_err(cli_error)?;
            printer.output(&jobs, |jobs| print_jobs(printer, jobs))?;
        }
        QueueAction::Pause(target) => pause_or_resume(&api, target, true, printer).await?,
        QueueAction::Resume(target) => pause_or_resume(&api, target, false, printer).await?,
        QueueAction::Cancel { id } => {
            let job = api
                .job_action(id, JobAction::Cancel)
                .await
                .map_err(cli_error)?;
            printer.output(&job, |job| {
                print_jobs(printer, &Value::Array(vec![job.clone()]))
            })?;
        }
    }
    Ok(ExitStatus::Success)
}

/// Pauses (or resumes) one job, or every job.
async fn pause_or_resume(
    api: &Client,
    target: JobTarget,
    pause: bool,
    printer: &Printer,
) -> anyhow::Result<()> {
    let (action, name) = if pause {
        (JobAction::Pause, "pause")
    } else {
        (JobAction::Resume, "resume")
    };
    match target.id {
        Some(id) => {
            let job = api.job_action(id, action).await.map_err(cli_error)?;
            printer.output(&job, |job| {
                print_jobs(printer, &Value::Array(vec![job.clone()]))
            })
        }
        None => {
            let result = if pause {
                api.pause_all().await
            } else {
                api.resume_all().await
            }
            .map_err(cli_error)?;
            printer.output(&result, |result| {
                let affected = result["affected"].as_u64().unwrap_or(0);
                printer.message(format!("{name}: {affected} job(s) affected"));
            })
        }
    }
}

/// The job table of `docs/local-api.md`'s `Job` shape.
fn print_jobs(printer: &Printer, jobs: &Value) {
    let Some(jobs) = jobs.as_array() else {
        return;
    };
    if jobs.is_empty() {
        printer.message("No jobs");
        return;
    }
    printer.data(format!(
        "{:>4}  {:<40} {:<10} {:>20} {:>12} {:>7}  {}",
        "ID", "REPO", "STATE", "PROGRESS", "SPEED", "ETA", "NOTE"
    ));
    for job in jobs {
        let done = job["bytes_done"].as_u64().unwrap_or(0);
        let total = job["bytes_total"].as_u64().unwrap_or(0);
        let repo = match job["variant"].as_str() {
            Some(variant) => format!("{}:{variant}", job["repo"].as_str().unwrap_or("?")),
            None => job["repo"].as_str().unwrap_or("?").to_string(),
        };
        let speed = job["speed_bps"]
            .as_u64()
            .filter(|s| *s > 0)
            .map(format_rate)
            .unwrap_or_default();
        let eta = job["eta_seconds"]
            .as_u64()
            .map(|s| format_duration(std::time::Duration::from_secs(s)))
            .unwrap_or_default();
        let note = job["reason"]
            .as_str()
            .or_else(|| job["error"]["message"].as_str())
            .unwrap_or_default();
        printer.data(format!(
            "{:>4}  {:<40} {:<10} {:>20} {:>12} {:>7}  {}",
            job["id"].as_u64().unwrap_or(0),
            repo,
            job["state"].as_str().unwrap_or("?"),
            format!("{}/{}", format_size(done), format_size(total)),
            speed,
            eta,
            note
        ));
    }
}
