//! `hub-emulator serve`: runs the local Hub until interrupted.
//!
//! The first line on stdout is the hub's base URL, printed once both listeners accept
//! connections; everything else goes to stderr.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hub_emulator::faults::{FaultRule, parse_size};
use hub_emulator::{Emulator, EmulatorConfig};

#[derive(Parser)]
#[command(
    name = "hub-emulator",
    version,
    about = "A local Hugging Face Hub for tests and demos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve repos on 127.0.0.1 until interrupted.
    Serve(Serve),
}

#[derive(clap::Args)]
struct Serve {
    /// Hub port (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// CDN port (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    cdn_port: u16,
    /// Serve the built-in demo catalog.
    #[arg(long)]
    demo: bool,
    /// Serve DIR/<org>/<name>/** as repos (repeatable).
    #[arg(long, value_name = "DIR")]
    repo_dir: Vec<PathBuf>,
    /// Size of the `demo/big` GGUF, e.g. 4GiB.
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    big_repo_size: String,
    /// Tree entries per page.
    #[arg(long, default_value_t = hub_emulator::DEFAULT_PAGE_SIZE)]
    page_size: usize,
    /// Folder for the hashes of large generated files.
    #[arg(long, value_name = "DIR")]
    hash_cache: Option<PathBuf>,
    /// Accept this token with access to every repo (repeatable).
    #[arg(long, value_name = "TOKEN")]
    token: Vec<String>,
    /// Inject a fault: KIND[=ARG][@GLOB][#COUNT], e.g. `latency=100ms`, `error=503#2`,
    /// `rate-limit=1#1`, `drop-after=1MB@/cdn/*#1`, `stall=5s`, `ignore-range`,
    /// `corrupt=100-200`, `conn-bandwidth=10MB`, `total-bandwidth=50MB` (repeatable).
    #[arg(long, value_name = "SPEC")]
    fault: Vec<String>,
    /// Store this repo's LFS files with Xet and serve them through the CAS (repeatable; a
    /// dataset or space as `datasets/ID`, `spaces/ID`).
    #[cfg(feature = "xet")]
    #[arg(long, value_name = "ID")]
    xet_repo: Vec<String>,
    /// Store every repo's LFS files with Xet.
    #[cfg(feature = "xet")]
    #[arg(long)]
    xet_all: bool,
    /// Folder for the Xet CAS's data (default: a temporary folder removed on exit).
    #[cfg(feature = "xet")]
    #[arg(long, value_name = "DIR")]
    xet_dir: Option<PathBuf>,
    /// Xet CAS port (0 picks a free one).
    #[cfg(feature = "xet")]
    #[arg(long, default_value_t = 0)]
    cas_port: u16,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "hub_emulator=info".into()),
        )
        .init();
    let Command::Serve(args) = Cli::parse().command;
    let big = parse_size(&args.big_repo_size).with_context(|| {
        format!(
            "Invalid `--big-repo-size` `{}`; hint: use a size like 4GiB",
            args.big_repo_size
        )
    })?;
    let mut config = if args.demo {
        EmulatorConfig::demo_with_big_size(big)
    } else {
        EmulatorConfig::default()
    };
    for dir in &args.repo_dir {
        let repos = hub_emulator::catalog::repos_from_dir(dir)
            .with_context(|| format!("Cannot load repos from `{}`", dir.display()))?;
        config.repos.extend(repos);
    }
    if config.repos.is_empty() {
        tracing::warn!("No repos to serve; hint: pass --demo or --repo-dir DIR");
    }
    config.hub_port = args.port;
    config.cdn_port = args.cdn_port;
    config.page_size = args.page_size;
    if let Some(dir) = args.hash_cache {
        config.hash_cache_dir = Some(dir);
    }
    for t in &args.token {
        config
            .tokens
            .insert(t.clone(), hub_emulator::TokenAccess::all());
    }
    for f in &args.fault {
        config.faults.push(f.parse::<FaultRule>()?);
    }
    #[cfg(feature = "xet")]
    {
        for wanted in &args.xet_repo {
            let (kind, id) = if let Some(id) = wanted.strip_prefix("datasets/") {
                (hub_emulator::RepoKind::Dataset, id)
            } else if let Some(id) = wanted.strip_prefix("spaces/") {
                (hub_emulator::RepoKind::Space, id)
            } else {
                (hub_emulator::RepoKind::Model, wanted.as_str())
            };
            let repo = config
                .repos
                .iter_mut()
                .find(|r| r.kind == kind && r.id == id)
                .with_context(|| {
                    format!("No repo `{wanted}` to store with Xet; hint: pass --demo or --repo-dir DIR holding it")
                })?;
            repo.xet = true;
        }
        if args.xet_all {
            for repo in &mut config.repos {
                repo.xet = true;
            }
        }
        config.xet_dir = args.xet_dir;
        config.cas_port = args.cas_port;
    }
    let runtime = tokio::runtime::Runtime::new().context("Cannot start the async runtime")?;
    runtime.block_on(async move {
        let emulator = Emulator::start(config)
            .await
            .context("Cannot bind the emulator's listeners")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", emulator.url())?;
        out.flush()?;
        drop(out);
        eprintln!("hub: {}  cdn: {}", emulator.url(), emulator.cdn_url());
        #[cfg(feature = "xet")]
        if let Some(xet) = emulator.xet() {
            eprintln!("xet cas: {}", xet.cas_url());
        }
        tokio::signal::ctrl_c()
            .await
            .context("Cannot wait for Ctrl-C")?;
        emulator.shutdown().await;
        anyhow::Ok(())
    })
}
