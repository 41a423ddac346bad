//! A minimal pull in its own process, for the tests that kill a download with SIGKILL or run
//! two processes against one cache (`tests/download_process.rs`), and for the benchmark.
//!
//! ```text
//! pull_child ENDPOINT HUB_CACHE DATA_DIR REPO FILE CHUNK_SIZE RATE_BYTES_PER_S CONNECTIONS [events]
//! ```
//!
//! A rate of 0 means unlimited. `MCACHE_START_CONNECTIONS` sets the connections a transfer
//! starts with (0: all at once). With `events`, every progress event is printed first, one JSON
//! line each with the milliseconds since start in `t_ms`. On success it prints one JSON line with the summary and exits
//! 0; on failure it prints the error to stderr and exits 1.

use std::path::PathBuf;
use std::sync::Arc;

use model_cache::download::{DownloadEvent, DownloadRequest, Downloader, NoReporter, Reporter};
use model_cache::hub::HubClient;
use model_cache::hub::retry::RetryPolicy;
use model_cache::index::Index;
use model_cache::{RepoId, Settings};

/// Prints events as JSON lines with a timestamp.
struct PrintReporter(std::time::Instant);

impl Reporter for PrintReporter {
    fn report(&self, event: DownloadEvent) {
        let mut value = serde_json::to_value(&event).expect("events serialise");
        value["t_ms"] = serde_json::json!(self.0.elapsed().as_secs_f64() * 1000.0);
        println!("{value}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 8 && !(args.len() == 9 && args[8] == "events") {
        eprintln!(
            "Usage: pull_child ENDPOINT HUB_CACHE DATA_DIR REPO FILE CHUNK_SIZE RATE CONNECTIONS"
        );
        std::process::exit(2);
    }
    let number = |i: usize| -> u64 {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!("Argument {} (`{}`) is not a number", i + 1, args[i]);
            std::process::exit(2)
        })
    };
    let mut settings = Settings::new(PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    settings.endpoint = args[0].clone();
    settings.retry = RetryPolicy::immediate();
    settings.limits.chunk_size = number(5);
    settings.limits.max_bytes_per_second = Some(number(6)).filter(|r| *r > 0);
    settings.limits.connections = number(7) as usize;
    settings.limits.connections_per_host = number(7) as usize;
    // The benchmark compares the connection ramp with every connection at once (0).
    if let Some(start) = std::env::var("MCACHE_START_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        settings.limits.start_connections = start;
    }
    let repo = RepoId::model(&args[3]).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    let result = runtime.block_on(async {
        let hub = HubClient::new(&settings).map_err(|e| e.to_string())?;
        let index = Index::open(&settings.data_dir).map_err(|e| e.to_string())?;
        let downloader = Downloader::new(&settings, hub, index);
        let reporter: Arc<dyn Reporter> = if args.len() == 9 {
            Arc::new(PrintReporter(std::time::Instant::now()))
        } else {
            Arc::new(NoReporter)
        };
        let request = DownloadRequest {
            repo,
            revision: "main".into(),
            files: vec![args[4].as_str().into()],
        };
        downloader
            .download(request, reporter)
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(summary) => {
            println!(
                "{}",
                serde_json::to_string(&summary).expect("the summary serialises")
            );
        }
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    }
}
