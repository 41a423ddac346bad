//! `mcache queue`: the jobs of a running desktop app or `mcache serve`, through the local API.
//!
//! The server writes `api.json` (`{"url", "pid"}`) and the secret `api-token` into the app-data
//! folder (see `docs/local-api.md`); this module reads both and calls `/api/jobs`. Nothing here
//! touches the engine: the queue belongs to the process that runs it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use crate::cli::{JobTarget, QueueAction};
use crate::exit::{CliError, CliKind, ExitStatus};
use crate::printer::Printer;
use model_cache::error::ErrorKind;
use model_cache::units::{format_duration, format_rate, format_size};

/// The discovery file written by the local API server.
pub const DISCOVERY_FILE: &str = "api.json";
/// The per-install secret.
pub const TOKEN_FILE: &str = "api-token";

#[derive(Debug, Deserialize)]
struct Discovery {
    url: String,
    #[serde(default)]
    pid: Option<u32>,
}

/// A client for the local API of the process that owns `data_dir`.
pub struct LocalApi {
    base: String,
    secret: String,
    http: reqwest::Client,
}

impl LocalApi {
    pub fn discover(data_dir: &Path) -> anyhow::Result<LocalApi> {
        let discovery_path = data_dir.join(DISCOVERY_FILE);
        let text = match std::fs::read_to_string(&discovery_path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(no_server(data_dir).into());
            }
            Err(error) => {
                return Err(anyhow::Error::new(error)
                    .context(format!("Cannot read `{}`", discovery_path.display())));
            }
        };
        let discovery: Discovery = serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not valid JSON", discovery_path.display()))?;
        let token_path = data_dir.join(TOKEN_FILE);
        let secret = std::fs::read_to_string(&token_path)
            .with_context(|| {
                format!(
                    "Cannot read the local API secret `{}`",
                    token_path.display()
                )
            })?
            .trim()
            .to_string();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .context("Cannot create an HTTP client")?;
        // A server that died without cleaning up leaves its file behind; on Linux its pid
        // tells.
        if let Some(pid) = discovery.pid
            && cfg!(target_os = "linux")
            && Path::new("/proc/self").exists()
            && !Path::new("/proc").join(pid.to_string()).exists()
        {
            return Err(no_server(data_dir)
                .hint(format!(
                    "`{}` is left over from a server (pid {pid}) that is no longer running",
                    discovery_path.display()
                ))
                .into());
        }
        Ok(LocalApi {
            base: discovery.url.trim_end_matches('/').to_string(),
            secret,
            http,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .request(method, &url)
            .bearer_auth(&self.secret)
            .send()
            .await
            .map_err(|error| {
                CliError::new(
                    ErrorKind::Network,
                    format!("Cannot reach the local API at `{}`: {error}", self.base),
                )
                .hint("the app or `mcache serve` may have stopped; start it again")
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let error = &body["error"];
        let kind = error["kind"].as_str().unwrap_or("internal").to_string();
        let message = error["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("The local API answered HTTP {status}"));
        let mut error = CliError::new(CliKind::parse(&kind), message);
        if let Some(hint) = body["error"]["hint"].as_str() {
            error = error.hint(hint.trim_start_matches("hint:").trim());
        }
        Err(error.into())
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

pub async fn queue(
    data_dir: PathBuf,
    action: Option<QueueAction>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let api = LocalApi::discover(&data_dir)?;
    match action.unwrap_or(QueueAction::List) {
        QueueAction::List => {
            let jobs = api.call(reqwest::Method::GET, "/api/jobs").await?;
            printer.output(&jobs, |jobs| print_jobs(printer, jobs))?;
        }
        QueueAction::Pause(target) => job_action(&api, target, "pause", printer).await?,
        QueueAction::Resume(target) => job_action(&api, target, "resume", printer).await?,
        QueueAction::Cancel { id } => {
            let job = api
                .call(reqwest::Method::POST, &format!("/api/jobs/{id}/cancel"))
                .await?;
            printer.output(&job, |job| {
                print_jobs(printer, &Value::Array(vec![job.clone()]))
            })?;
        }
    }
    Ok(ExitStatus::Success)
}

async fn job_action(
    api: &LocalApi,
    target: JobTarget,
    action: &str,
    printer: &Printer,
) -> anyhow::Result<()> {
    match target.id {
        Some(id) => {
            let job = api
                .call(reqwest::Method::POST, &format!("/api/jobs/{id}/{action}"))
                .await?;
            printer.output(&job, |job| {
                print_jobs(printer, &Value::Array(vec![job.clone()]))
            })
        }
        None => {
            let result = api
                .call(reqwest::Method::POST, &format!("/api/jobs/{action}-all"))
                .await?;
            printer.output(&result, |result| {
                let affected = result["affected"].as_u64().unwrap_or(0);
                printer.message(format!("{action}: {affected} job(s) affected"));
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
