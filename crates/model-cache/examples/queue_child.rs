//! A process that runs the scheduler's queue to its end, for the restart test: it is killed with
//! `SIGKILL` halfway and started again, and the queue must finish without downloading anything
//! twice.
//!
//! ```text
//! queue_child --endpoint URL --root DIR [--chunk BYTES] [--enqueue REPO]...
//! ```
//!
//! The cache is `DIR/hub`, the index `DIR/data`. The real power and disk probes are used (a
//! machine without a battery is on AC), with no disk reserve so a small temporary volume does
//! not defer the jobs. Prints one JSON line per finished job and exits 0 when every job is done.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use model_cache::download::Downloader;
use model_cache::hub::HubClient;
use model_cache::hub::retry::RetryPolicy;
use model_cache::index::Index;
use model_cache::index::queue::{NewQueueJob, QueueState, Selection};
use model_cache::policy::ReservePolicy;
use model_cache::scheduler::{DownloaderRunner, Probes, Scheduler, SchedulerConfig};
use model_cache::{RepoId, Settings};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut endpoint = None;
    let mut root = None;
    let mut chunk = 64 * 1024;
    let mut enqueue = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("`{arg}` needs a value"));
        match arg.as_str() {
            "--endpoint" => endpoint = Some(value()?),
            "--root" => root = Some(PathBuf::from(value()?)),
            "--chunk" => chunk = value()?.parse()?,
            "--enqueue" => enqueue.push(RepoId::model(&value()?)?),
            other => return Err(format!("Unknown argument `{other}`").into()),
        }
    }
    let root = root.ok_or("`--root` is required")?;
    let mut settings = Settings::new(root.join("hub"), root.join("data"));
    settings.endpoint = endpoint.ok_or("`--endpoint` is required")?;
    settings.retry = RetryPolicy::immediate();
    settings.limits.chunk_size = chunk;
    settings.limits.connections = 4;
    settings.limits.connections_per_host = 4;
    settings.limits.buffer_size = 16 * 1024;

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let index = Index::open(&settings.data_dir)?;
        let hub = HubClient::new(&settings)?;
        let downloader = Downloader::new(&settings, hub.clone(), index.clone());
        let runner = Arc::new(DownloaderRunner::new(hub, downloader));
        let mut config = SchedulerConfig::new(settings.hub_cache.clone());
        config.policy.reserve = ReservePolicy::NONE;
        config.progress_every = Duration::from_millis(50);
        let scheduler = Scheduler::start(config, index, runner, Probes::system())?;
        for repo in enqueue {
            scheduler.enqueue(NewQueueJob {
                repo,
                revision: "main".into(),
                selection: Selection::default(),
                priority: 0,
                bytes_total: None,
                convert: None,
            })?;
        }
        loop {
            let jobs = scheduler.jobs()?;
            if jobs.iter().all(|j| j.state.is_terminal()) {
                for job in &jobs {
                    println!("{}", serde_json::to_string(job)?);
                }
                scheduler.shutdown();
                let all_done = jobs.iter().all(|j| j.state == QueueState::Done);
                return if all_done {
                    Ok(())
                } else {
                    Err("Some jobs did not finish".into())
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}
