//! The command line grammar: every command, argument and global option of `mcache`.
//!
//! Command names are a contract (scripts call them); aliases may be added, names never change.
//! Environment variables are not declared here: the engine's `env` module resolves them, and
//! `--help` lists them from its table so the two never drift apart.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES_HELP;
use model_cache::units::{Rate, Size};

/// Find, download, verify and keep models from the Hugging Face Hub.
///
/// Models are stored in the standard Hugging Face cache, so they are usable at once by
/// transformers, llama.cpp and huggingface_hub (offline too).
#[derive(Debug, Parser)]
#[command(
    name = "mcache",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted by every command. Flags override the environment.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct GlobalArgs {
    /// Hub cache folder [default: HF_HUB_CACHE, or $HF_HOME/hub, or ~/.cache/huggingface/hub]
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Model Cache's own folder: index, settings, local API secret [default: MODEL_CACHE_DATA_DIR
    /// or the platform's app-data folder]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Base URL of the Hub [default: HF_ENDPOINT or https://huggingface.co]
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Hub access token [default: HF_TOKEN, or the token saved by `mcache login`]. Visible to
    /// other users in `ps` and kept in shell history: prefer `--token-file`
    #[arg(long, global = true, value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the Hub access token from this file (`-`: from stdin), out of shell history and `ps`
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Proxy for the Hub, its CDN and mirrors, e.g. `http://proxy:3128` (never used for
    /// loopback; NO_PROXY still applies) [default: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY]
    #[arg(long, global = true, value_name = "URL", hide_env_values = true)]
    pub proxy: Option<String>,
    /// PEM file of certificate authorities to trust besides the built-in and system ones (a
    /// company CA) [default: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, SSL_CERT_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// No network at all: everything comes from the cache [default: HF_HUB_OFFLINE]
    #[arg(long, global = true)]
    pub offline: bool,
    /// Connections open at once across all files
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub connections: Option<u16>,
    /// Size of a transfer chunk, e.g. `8MiB`
    #[arg(long, global = true, value_name = "SIZE")]
    pub chunk_size: Option<Size>,
    /// Bandwidth limit across all transfers, e.g. `20MB/s` or `unlimited`
    #[arg(long, global = true, value_name = "RATE")]
    pub max_rate: Option<Rate>,
    /// Machine-readable output: JSON on stdout (JSON lines for progress)
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars and no messages on stderr except errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More logging on stderr (-v: debug, -vv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List the variants of a repo (quantizations, formats) with sizes and fit for this machine
    Variants {
        /// Repo id, e.g. `org/name` (or a Hub URL)
        repo: String,
        /// Branch, tag or commit
        #[arg(long, value_name = "REV")]
        revision: Option<String>,
    },
    /// Download a model (a variant, or selected files) into the cache
    Pull(PullArgs),
    /// Convert a cached model to another format: safetensors to GGUF (F16 or Q8_0) for
    /// llama.cpp, Ollama or LM Studio. The output goes to the app-data folder (or --out) with a
    /// record of where it came from, never into the hub cache
    Convert(ConvertArgs),
    /// List cached repos: revisions, size on disk, last used, pinned
    #[command(visible_alias = "list")]
    Ls {
        /// Show only this repo, with its revisions and files
        repo: Option<String>,
    },
    /// Print the local path of a cached file (never uses the network)
    Path {
        /// Repo id
        repo: String,
        /// File path inside the repo
        file: String,
        /// Branch, tag or commit
        #[arg(long, value_name = "REV")]
        revision: Option<String>,
    },
    /// Remove a repo, a revision or a variant from the cache
    #[command(visible_alias = "remove")]
    Rm {
        /// Repo id
        repo: String,
        /// Remove only this revision (commit or ref)
        #[arg(long, value_name = "REV", conflicts_with = "variant")]
        revision: Option<String>,
        /// Remove only the weight files of this variant (a quant such as `Q4_K_M`) and the blobs
        /// nothing else links; companions stay while another variant uses them
        #[arg(long, value_name = "NAME")]
        variant: Option<String>,
        /// Remove a pinned repo too
        #[arg(long)]
        force: bool,
        /// Show what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Import GGUF or safetensors files or folders, or adopt another app's models, without
    /// moving or changing them (hard links or reflinks; a copy only with --copy)
    Import(ImportArgs),
    /// Push a cached revision to the team bucket (MODEL_CACHE_BUCKET): its blobs, checked
    /// against their hashes first, then its ref; an interrupted upload resumes
    Push {
        /// Repo id
        repo: String,
        /// Branch, tag or commit
        #[arg(long, default_value = "main")]
        revision: String,
    },
    /// Check cached files against their hashes
    Verify {
        /// Only this repo [default: every cached repo]
        repo: Option<String>,
    },
    /// Ask the Hub which cached models have a newer commit on the branch they follow
    Outdated {
        /// Show what the last check found; ask the Hub nothing
        #[arg(long)]
        cached: bool,
    },
    /// Download the newer commit of a followed branch: the same files, unchanged ones kept
    Update {
        /// Repo id
        repo: String,
        /// The branch to update
        #[arg(long, value_name = "BRANCH", default_value = "main")]
        branch: String,
    },
    /// LAN peers: list them, pair and unpair, turn sharing on or off. Paired peers serve each
    /// other what they hold (over TLS, pinned at pairing) and are download sources, checked
    /// against the Hub's hashes
    Peers {
        #[command(subcommand)]
        action: Option<PeersAction>,
    },
    /// Keep a cached model at its current commit: update checks leave the branch alone
    Hold {
        /// Repo id
        repo: String,
        #[arg(long, value_name = "BRANCH", default_value = "main")]
        branch: String,
    },
    /// Follow a held branch again (undo `mcache hold`)
    Follow {
        /// Repo id
        repo: String,
        #[arg(long, value_name = "BRANCH", default_value = "main")]
        branch: String,
    },
    /// Protect a repo from garbage collection and eviction
    Pin {
        /// Repo id
        repo: String,
    },
    /// Remove the protection of `mcache pin`
    Unpin {
        /// Repo id
        repo: String,
    },
    /// Free space: stale partial files, unreferenced blobs, least recently used variants
    Gc {
        /// Evict unpinned models a variant at a time, least recently used first, until the cache
        /// fits this size
        #[arg(long, value_name = "SIZE")]
        max_size: Option<Size>,
        /// Show what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the header of a model file: a local PATH, or REPO FILE (read remotely or from the cache)
    Inspect {
        /// A local file, or a repo id followed by FILE
        target: String,
        /// File inside the repo when TARGET is a repo id
        file: Option<String>,
        /// Branch, tag or commit (with REPO FILE)
        #[arg(long, value_name = "REV")]
        revision: Option<String>,
    },
    /// Download and cache statistics
    Stats,
    /// Check the index against the disk and repair it
    Doctor {
        /// Report problems on disk and remove nothing (the index is still brought in line with
        /// the disk); exits with 1 when a problem is found
        #[arg(long)]
        check: bool,
    },
    /// Jobs of a running app or `mcache serve`: list, pause, resume, cancel
    Queue {
        #[command(subcommand)]
        action: Option<QueueAction>,
    },
    /// Save a Hub token where huggingface_hub keeps it ($HF_HOME/token)
    Login {
        /// Read the token from stdin (one line) instead of --token or a prompt
        #[arg(long)]
        stdin: bool,
    },
    /// Remove the saved Hub token
    Logout,
    /// Read or change persistent settings
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Run the local API (and web UI) without the desktop app
    Serve(ServeArgs),
    /// Run the built-in demo hub on 127.0.0.1 and print its URL
    Demo {
        /// Port to listen on [default: a free port]
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Answer a browser extension over native messaging (the browser starts this; `install`
    /// tells a browser where it is)
    NativeHost(NativeHostArgs),
    /// Print a shell completion script
    Completions {
        /// The shell
        shell: CompletionShell,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ConvertArgs {
    /// Repo id of a cached model, e.g. `org/name` (pull it first)
    pub repo: String,
    /// Output format
    #[arg(long, value_enum, default_value = "gguf")]
    pub to: ConvertTo,
    /// Precision of the output: `f16` (lossless for F16 and most BF16 weights) or `q8_0`
    #[arg(long = "type", value_name = "TYPE", default_value = "f16", value_parser = parse_gguf_type)]
    pub gguf_type: model_cache::convert::GgufType,
    /// Where to write the output (a file, or a folder for the default file name)
    #[arg(long, value_name = "PATH")]
    pub out: Option<std::path::PathBuf>,
    /// Branch, tag or commit of the cached model
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// The converter: `native` (Llama, Mistral, Qwen2), `llama-cpp` (llama.cpp's
    /// convert_hf_to_gguf.py, found on PATH or named by MODEL_CACHE_CONVERT_HF_TO_GGUF), or
    /// `auto` (native when it supports the model)
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: ConvertBackend,
}

fn parse_gguf_type(text: &str) -> Result<model_cache::convert::GgufType, String> {
    text.parse()
}

/// Formats `mcache convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ConvertTo {
    Gguf,
}

/// Converters `mcache convert` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ConvertBackend {
    Auto,
    Native,
    LlamaCpp,
}

#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// Repo id, e.g. `org/name` (or a Hub URL)
    pub repo: String,
    /// Variant to download (a name from `mcache variants`)
    #[arg(long, value_name = "NAME", conflicts_with = "quant")]
    pub variant: Option<String>,
    /// Quantization to download, e.g. `Q4_K_M` (matched against variant quants)
    #[arg(long, value_name = "Q")]
    pub quant: Option<String>,
    /// Only files matching this glob (repeatable); selects files instead of a variant
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip files matching this glob (repeatable)
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Branch, tag or commit
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// When the download does not fit (free space above the reserve, or the budget), remove
    /// the least recently used models it lists without asking
    #[arg(long)]
    pub evict: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct NativeHostArgs {
    #[command(subcommand)]
    pub action: Option<NativeHostAction>,
    /// What the browser adds when it starts the host (the extension's origin); not used
    #[arg(hide = true, num_args = 0.., allow_hyphen_values = true)]
    pub browser_args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum NativeHostAction {
    /// Write the host manifest where a browser looks for it, and the launcher it names
    Install {
        /// The browser
        #[arg(long, default_value = "chrome", value_parser = ["chrome", "chromium", "edge", "firefox"])]
        browser: String,
        /// The profile folder of a Chromium-family browser started with `--user-data-dir DIR`
        #[arg(long, value_name = "DIR")]
        user_data_dir: Option<PathBuf>,
        /// An extension allowed to use the host: `chrome-extension://ID/` (Firefox: the add-on
        /// id) (repeatable)
        #[arg(long, value_name = "ORIGIN", required = true)]
        allow_origin: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Port to listen on [default: a free port]
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to bind; anything but loopback needs --allow-remote
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: std::net::IpAddr,
    /// Allow a non-loopback --bind (exposes the API, behind its secret, to the network)
    #[arg(long)]
    pub allow_remote: bool,
    /// Start the built-in demo hub on 127.0.0.1 and use it as the endpoint (no network needed)
    #[arg(long)]
    pub demo: bool,
    /// Port of the local mirror (the cache served as a Hub, for `HF_ENDPOINT`); 0 picks a free
    /// one, and a free one is taken when this one is in use
    #[arg(long, default_value_t = local_api::mirror::DEFAULT_MIRROR_PORT, value_name = "PORT")]
    pub mirror_port: u16,
    /// Address the mirror listens on; anything but loopback needs --mirror-lan
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub mirror_bind: std::net::IpAddr,
    /// Allow a non-loopback --mirror-bind: serve the cache to the local network (public cached
    /// repos to anyone who reaches it, the rest to holders of the mirror token)
    #[arg(long)]
    pub mirror_lan: bool,
    /// Do not start the mirror
    #[arg(long)]
    pub no_mirror: bool,
    /// Port of the peer listener (served to paired LAN peers while sharing is on, see `mcache
    /// peers`); a free one is taken when it is in use
    #[arg(long, default_value_t = model_cache::peers::DEFAULT_PEER_PORT, value_name = "PORT")]
    pub peers_port: u16,
    /// Address the peer listener binds
    #[arg(long, default_value = "0.0.0.0", value_name = "ADDR")]
    pub peers_bind: std::net::IpAddr,
    /// Where peers are announced and looked for: the LAN, loopback only (several peers on one
    /// machine), or nowhere (peers reached at the addresses recorded when pairing)
    #[arg(long, default_value = "lan", value_parser = ["lan", "loopback", "off"])]
    pub peers_discovery: String,
    /// Size of the demo hub's `demo/big` model, e.g. `64MiB` (with --demo)
    #[arg(long, value_name = "SIZE", requires = "demo")]
    pub demo_big_size: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PeersAction {
    /// This machine, the paired peers and the peers seen on the LAN (the default)
    #[command(visible_alias = "ls")]
    List,
    /// Show a pairing code and wait for a peer to type it; or, with ADDRESS and CODE, pair with
    /// the peer at ADDRESS (`host:port`, or a peer id from `mcache peers`) that shows CODE
    Pair {
        /// The other machine's peer address or id
        #[arg(requires = "code")]
        address: Option<String>,
        /// The code the other machine shows
        code: Option<String>,
    },
    /// Forget a paired peer: it is neither served nor used again
    Unpair {
        /// Peer id (from `mcache peers`) or fingerprint
        peer: String,
    },
    /// Turn sharing on or off (nothing listens on or is announced to the LAN while off)
    Share {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Ask paired peers to compress F16/BF16 safetensors transfers, or not (off by default: it
    /// saves time on links of about 1 Gbit/s or less, and is skipped on faster ones)
    Compress {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueueAction {
    /// List jobs (the default)
    #[command(visible_alias = "ls")]
    List,
    /// Pause a job, or every job with --all
    Pause(JobTarget),
    /// Resume a job, or every job with --all
    Resume(JobTarget),
    /// Cancel a job
    Cancel {
        /// Job id (from `mcache queue`)
        id: u64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct JobTarget {
    /// Job id (from `mcache queue`)
    #[arg(required_unless_present = "all")]
    pub id: Option<u64>,
    /// Every job
    #[arg(long, conflicts_with = "id")]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigAction {
    /// Print one setting, or all of them
    Get {
        /// Setting name, e.g. `max_rate_bps` [default: all]
        key: Option<String>,
    },
    /// Change a setting (sizes and rates accept units: `20MB/s`, `50GiB`)
    Set {
        /// Setting name
        key: String,
        /// New value (`null` or `none` to unset)
        value: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

/// The full command with the texts that are built at run time: exit codes and the environment
/// variables the engine reads.
pub(crate) fn command() -> clap::Command {
    let mut environment = String::from("Environment:\n");
    for (name, what) in model_cache::env::VARIABLES {
        environment.push_str(&format!("  {name:<24} {}\n", what.replace('`', "")));
    }
    environment.push_str(&format!(
        "  {:<24} Disable colours in messages\n",
        crate::terminal::NO_COLOR
    ));
    Cli::command()
        .after_help(format!(
            "{EXIT_CODES_HELP}\nRun `mcache --help` for the environment variables."
        ))
        .after_long_help(format!("{EXIT_CODES_HELP}\n{environment}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        command().debug_assert();
    }
}

/// Where `mcache import` takes models from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ImportFrom {
    /// The files and folders given
    Files,
    /// Ollama's store [default folder: OLLAMA_MODELS or ~/.ollama/models]
    Ollama,
    /// LM Studio's models folder [default: ~/.lmstudio/models]
    Lmstudio,
    /// llama.cpp's download cache [default: LLAMA_CACHE or ~/.cache/llama.cpp]
    #[value(name = "llama.cpp", alias = "llama-cpp")]
    LlamaCpp,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Files or folders to import; with --from, the app's folder (optional)
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Take the models of another app
    #[arg(long, value_enum, default_value = "files")]
    pub from: ImportFrom,
    /// The Hub repo the files came from: they are placed under it, in the standard layout,
    /// when their hashes match its files
    #[arg(long, value_name = "ORG/NAME")]
    pub repo: Option<String>,
    /// Use the Hub repo the other app's own records name (still checked against its hashes)
    #[arg(long, conflicts_with = "repo")]
    pub suggested_repos: bool,
    /// Branch, tag or commit of --repo [default: main]
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// Copy the files that can be neither hard-linked nor cloned (uses their size in disk)
    #[arg(long)]
    pub copy: bool,
    /// Only show what would be imported, how, and what it saves
    #[arg(long)]
    pub dry_run: bool,
    /// List the models imported into Model Cache's own folder
    #[arg(long, conflicts_with_all = ["paths", "repo", "dry_run", "copy"])]
    pub list: bool,
}
