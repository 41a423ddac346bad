//! The downloader benchmark: prints figures, asserts nothing.
//!
//! ```text
//! cargo build --release -p model-cache --examples
//! cargo run --release -p model-cache --example bench -- [--size 4GiB] [--link-mbps 400]
//!     [--conn-mbps 40] [--connections 16] [--chunk-size 5MiB] [--skip-baseline]
//! cargo run --release -p model-cache --example bench -- --scenario two-sources
//!     [--size 512MiB] [--a-mbps 100] [--b-mbps 60] [--timeline]
//! ```
//!
//! ```text
//! cargo run --release -p model-cache --example bench -- --scenario many-files
//!     [--files 3000] [--max-file 50MiB]
//! ```
//!
//! `--scenario many-files`: one repo of many files (sizes log-uniform from 1 KiB to
//! `--max-file`, seeded), pulled whole by the downloader, then by `huggingface_hub`'s
//! `snapshot_download` (its default workers; the Python of `target/py-venv`, made by
//! `scripts/setup.sh --with-test-tools`) from the same emulator; prints both times, the ratio,
//! and the requests each made.
//!
//! `--scenario big-cache [--repos 1000 --files 200]`: a cache of that many repos of tiny
//! files (made here, in the `huggingface_hub` layout); lists it as `mcache ls` and the app's
//! library do (`Engine::cache_list`) cold, warm, and after the index is deleted, then with
//! `huggingface_hub.scan_cache_dir()`; prints the times and the ratios.
//!
//! `--scenario slow-links [--size 64MiB]`: one file over a 2 MB/s link and over a 200 MB/s
//! one (no cap per connection), each pulled with the connection ramp (4 at first, more while
//! they bring more) and with all `--connections` at once: prints the time to the first
//! complete chunk, the whole pull's time, and the bytes fetched twice after a kill -9 (the
//! bytes at risk on an interruption).
//!
//! `--scenario split [--size 4GiB]`: a GGUF split in 5 files pulled as one variant (Q8_0),
//! against `demo/big`'s one file of the same size, both through the engine over the same
//! capped link (`--link-mbps`, `--conn-mbps`): prints both times, the share of the link each
//! used, and their ratio.
//!
//! `--scenario many-files [--latency-ms 0]` adds that delay to every request of the emulator
//! (its Hub and its CDN alike), as a Hub across a real network has.
//!
//! `--scenario fast-link [--size 1GiB] [--profile]`: Debian's nginx (`apt-get install
//! nginx-light`) serves the file with `sendfile` as the CDN the emulator's redirects name;
//! `curl -o` of it against a pull, three of each alternating, quiet and then with one core
//! busy beside them; prints the medians and their ratio. `--profile` adds the CPU each used
//! (`perf stat`) and where the pull's CPU goes (`perf record`, self time).
//!
//! `--scenario xet-update [--size 512MiB]`: a repo the emulator stores with Xet (its real CAS),
//! pulled at v1, then updated to a v2 that changed 1 % of the file (four edits); the update is
//! pulled as a delta (cached chunks copied, the rest fetched from the CAS) and, in another
//! cache with Xet off, as a plain HTTP re-download of v2. Both go through the same link cap
//! (`--link-mbps`, on the CDN and on the CAS's xorb ranges). Prints bytes moved and wall time
//! of each and their ratios.
//!
//! `--scenario two-sources`: one file from two emulators (the endpoint capped at A MB/s, a
//! mirror at B MB/s), first from each alone (the baselines), then from both at once; prints the
//! fraction of A + B achieved.
//!
//! It starts the hub emulator with a per-connection cap and a total link cap on its CDN, then:
//! 1. pulls `demo/big` with the downloader in a child process (`pull_child`), sampling the
//!    child's peak RSS (`VmHWM`) and timing the last chunk against the verified event;
//! 2. downloads the same file the way `hf download` does: one GET, sequential writes, hash after;
//! 3. pulls again in a fresh cache, kills the child with SIGKILL at 50 % of the chunks, resumes,
//!    and compares the bytes fetched twice with the bytes that were in flight.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_emulator::faults::parse_size;
use hub_emulator::{Emulator, EmulatorConfig, Fault, FaultRule};
use model_cache::hash::{HashAlgorithm, hash_file_blocking};
use model_cache::hub::HubClient;
use model_cache::{RepoId, Settings};

const FILE: &str = "big-model-Q4_K_M.gguf";

struct Options {
    size: u64,
    link: u64,
    conn: u64,
    connections: usize,
    chunk: u64,
    baseline: bool,
    /// Print what each source sends every half second (`two-sources`).
    timeline: bool,
    scenario: String,
    a: u64,
    b: u64,
    files: usize,
    max_file: u64,
    repos: usize,
    /// Added to every request of the emulator (`many-files`): a Hub across a real network.
    latency_ms: u64,
    /// Profile one pull with `perf` (`fast-link`).
    profile: bool,
}

fn options() -> Options {
    let mut options = Options {
        size: 4 << 30,
        link: 400_000_000,
        conn: 40_000_000,
        connections: 16,
        chunk: 5 << 20,
        baseline: true,
        timeline: false,
        scenario: "single".into(),
        a: 100_000_000,
        b: 60_000_000,
        files: 3000,
        max_file: 50 << 20,
        repos: 1000,
        latency_ms: 0,
        profile: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || {
            args.get(i + 1).cloned().unwrap_or_else(|| {
                eprintln!("`{}` needs a value", args[i]);
                std::process::exit(2)
            })
        };
        let size = |text: String| {
            parse_size(&text).unwrap_or_else(|| {
                eprintln!("Invalid size `{text}`");
                std::process::exit(2)
            })
        };
        match args[i].as_str() {
            "--size" => options.size = size(value()),
            "--link-mbps" => options.link = size(value()) * 1_000_000,
            "--conn-mbps" => options.conn = size(value()) * 1_000_000,
            "--connections" => options.connections = size(value()) as usize,
            "--chunk-size" => options.chunk = size(value()),
            "--scenario" => options.scenario = value(),
            "--a-mbps" => options.a = size(value()) * 1_000_000,
            "--b-mbps" => options.b = size(value()) * 1_000_000,
            "--files" => options.files = size(value()) as usize,
            "--repos" => options.repos = size(value()) as usize,
            "--max-file" => options.max_file = size(value()),
            "--latency-ms" => options.latency_ms = size(value()),
            "--profile" => {
                options.profile = true;
                i += 1;
                continue;
            }
            "--timeline" => {
                options.timeline = true;
                i += 1;
                continue;
            }
            "--skip-baseline" => {
                options.baseline = false;
                i += 1;
                continue;
            }
            other => {
                eprintln!("Unknown option `{other}`");
                std::process::exit(2)
            }
        }
        i += 2;
    }
    options
}

fn child_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let binary = exe
        .parent()
        .expect("examples folder")
        .join(format!("pull_child{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command.args(["build", "-p", "model-cache", "--example", "pull_child"]);
        if !cfg!(debug_assertions) {
            command.arg("--release");
        }
        assert!(command.status().expect("cargo runs").success());
    }
    binary
}

/// `pull_child` pulling `demo/big` into `dir`, its events on stdout; with `start`, the
/// connections each transfer starts with (`MCACHE_START_CONNECTIONS`).
fn spawn_pull(emulator: &Emulator, dir: &Path, options: &Options, start: Option<usize>) -> Child {
    let mut command = Command::new(child_binary());
    if let Some(start) = start {
        command.env("MCACHE_START_CONNECTIONS", start.to_string());
    }
    command
        .args(pull_args(emulator, dir, options))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("pull_child starts")
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct PullFigures {
    seconds: f64,
    peak_rss_kib: u64,
    last_chunk_ms: f64,
    verified_ms: f64,
}

/// Runs a pull in a child to the end (or, with `kill_at`, until that fraction of chunks is
/// recorded, then SIGKILLs it).
fn run_pull(
    emulator: &Emulator,
    dir: &Path,
    options: &Options,
    kill_at: Option<f64>,
) -> PullFigures {
    let start = Instant::now();
    let mut child = spawn_pull(emulator, dir, options, None);
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = std::sync::mpsc::channel::<serde_json::Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = sender.send(value);
            }
        }
    });
    let mut peak = 0u64;
    let mut last_chunk_ms = 0.0;
    let mut verified_ms = 0.0;
    let mut killed = false;
    loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        while let Ok(event) = receiver.try_recv() {
            match event["event"].as_str() {
                Some("chunk_done") => {
                    let done = event["chunks_done"].as_f64().unwrap_or(0.0);
                    let total = event["chunks_total"].as_f64().unwrap_or(1.0);
                    if done == total {
                        last_chunk_ms = event["t_ms"].as_f64().unwrap_or(0.0);
                    }
                    if let Some(fraction) = kill_at
                        && !killed
                        && done / total >= fraction
                    {
                        let _ = child.kill();
                        killed = true;
                    }
                }
                Some("verified") => verified_ms = event["t_ms"].as_f64().unwrap_or(0.0),
                _ => {}
            }
        }
        if let Some(status) = child.try_wait().expect("wait") {
            if kill_at.is_none() && !status.success() {
                panic!("pull_child failed: {status}");
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = reader.join();
    PullFigures {
        seconds: start.elapsed().as_secs_f64(),
        peak_rss_kib: peak,
        last_chunk_ms,
        verified_ms,
    }
}

/// `hf download`'s way: one GET of the whole file, written in order, hashed afterwards.
fn single_stream(runtime: &tokio::runtime::Runtime, emulator: &Emulator, dir: &Path) -> f64 {
    let mut settings = Settings::new(dir.join("hub"), dir.join("data"));
    settings.endpoint = emulator.url();
    let hub = HubClient::new(&settings).expect("client");
    let repo = RepoId::model("demo/big").expect("repo id");
    let path = dir.join("single.bin");
    let start = Instant::now();
    let size = runtime.block_on(async {
        let meta = hub
            .file_metadata(&repo, "main", FILE)
            .await
            .expect("metadata");
        let mut response = hub
            .get_range(&meta.download_url, None, None)
            .await
            .expect("GET")
            .body;
        let mut file = std::io::BufWriter::with_capacity(
            10 << 20,
            std::fs::File::create(&path).expect("create"),
        );
        while let Some(bytes) = response.chunk().await.expect("body") {
            file.write_all(&bytes).expect("write");
        }
        file.flush().expect("flush");
        meta.size
    });
    hash_file_blocking(&path, HashAlgorithm::Sha256, size).expect("hash");
    let seconds = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    seconds
}

fn main() {
    let options = options();
    let scenario: Option<fn(&Options)> = match options.scenario.as_str() {
        "two-sources" => Some(two_sources),
        "many-files" => Some(many_files),
        "big-cache" => Some(big_cache),
        "split" => Some(split),
        "slow-links" => Some(slow_links),
        "fast-link" => Some(fast_link),
        "xet-update" => Some(xet_update),
        "single" => None,
        other => {
            eprintln!(
                "Unknown scenario `{other}`: single, two-sources, many-files, big-cache, split, slow-links, fast-link or xet-update"
            );
            std::process::exit(2);
        }
    };
    if let Some(run) = scenario {
        return run(&options);
    }
    let (runtime, emulator, size) = capped_emulator(options.size, &options);
    let mb = |bytes: f64| bytes / 1e6;
    println!(
        "file {:.1} MiB, link {:.0} MB/s, {:.0} MB/s per connection, {} connections, chunks of {} KiB",
        size as f64 / 1048576.0,
        mb(options.link as f64),
        mb(options.conn as f64),
        options.connections,
        options.chunk / 1024
    );
    let base = std::env::temp_dir().join(format!("mc-bench-{}", std::process::id()));

    // 1. Parallel pull.
    let dir = base.join("pull");
    let served = emulator.bytes_served();
    let pull = run_pull(&emulator, &dir, &options, None);
    let throughput = (emulator.bytes_served() - served) as f64 / pull.seconds;
    println!(
        "parallel pull: {:.2} s, {:.1} MB/s = {:.1} % of the link",
        pull.seconds,
        mb(throughput),
        100.0 * throughput / options.link as f64
    );
    println!(
        "peak RSS of the pulling process: {:.1} MiB",
        pull.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "last chunk recorded -> verified: {:.0} ms",
        (pull.verified_ms - pull.last_chunk_ms).max(0.0)
    );
    let _ = std::fs::remove_dir_all(&dir);

    // 2. Single stream.
    if options.baseline {
        let dir = base.join("single");
        std::fs::create_dir_all(&dir).expect("bench dir");
        let seconds = single_stream(&runtime, &emulator, &dir);
        println!(
            "single stream (one GET, hash after): {:.2} s; parallel pull is {:.2}x faster",
            seconds,
            seconds / pull.seconds
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    // 3. Kill at 50 %, resume.
    let dir = base.join("kill");
    let before = emulator.bytes_served();
    run_pull(&emulator, &dir, &options, Some(0.5));
    let at_kill = emulator.bytes_served() - before;
    run_pull(&emulator, &dir, &options, None);
    let total = emulator.bytes_served() - before;
    let refetched = total.saturating_sub(size);
    println!(
        "kill -9 at 50 %: {:.1} MiB served before the kill, {:.1} MiB fetched twice; in flight at most {} x {} KiB = {:.1} MiB",
        at_kill as f64 / 1048576.0,
        refetched as f64 / 1048576.0,
        options.connections,
        options.chunk / 1024,
        (options.connections as u64 * options.chunk) as f64 / 1048576.0
    );
    // 4. Hashing: ours (run-time CPU feature detection) against coreutils' `sha256sum` on the
    // same file, hot in the page cache for both.
    hash_speed(&base, 1 << 30);
    let _ = std::fs::remove_dir_all(&base);
    drop(emulator);
}

fn hash_speed(base: &Path, size: u64) {
    let path = base.join("hash-speed.bin");
    std::fs::create_dir_all(base).expect("bench dir");
    {
        let mut file = std::fs::File::create(&path).expect("hash file");
        let block: Vec<u8> = (0..1 << 20).map(|i| (i * 7 + 3) as u8).collect();
        for _ in 0..size >> 20 {
            file.write_all(&block).expect("write");
        }
    }
    // Warm the page cache, then time each once.
    hash_file_blocking(&path, HashAlgorithm::Sha256, size).expect("hash");
    let started = Instant::now();
    let ours = hash_file_blocking(&path, HashAlgorithm::Sha256, size).expect("hash");
    let ours_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let output = Command::new("sha256sum").arg(&path).output();
    let coreutils_s = started.elapsed().as_secs_f64();
    let gb = size as f64 / 1e9;
    match output {
        Ok(out) if out.status.success() => {
            let theirs = String::from_utf8_lossy(&out.stdout);
            assert!(theirs.starts_with(&ours), "sha256sum disagrees: {theirs}");
            println!(
                "sha256 of {:.1} GB: {:.2} GB/s; coreutils sha256sum {:.2} GB/s; ratio {:.1}x",
                gb,
                gb / ours_s,
                gb / coreutils_s,
                coreutils_s / ours_s
            );
        }
        _ => println!(
            "sha256 of {:.1} GB: {:.2} GB/s (sha256sum unavailable)",
            gb,
            gb / ours_s
        ),
    }
    let _ = std::fs::remove_file(&path);
}

/// One file from two sources: the endpoint capped at `a` bytes/s, a mirror at `b`, each alone
/// (the baselines), then both; prints the fraction of `a + b` achieved.
fn two_sources(options: &Options) {
    use model_cache::download::{DownloadRequest, Downloader};
    use model_cache::settings::Mirror;
    let size = if options.size == 4 << 30 {
        512 << 20
    } else {
        options.size
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // The emulators serve from threads of their own: sharing the downloader's two workers, their
    // pacing timers wake late and the links deliver less than their caps.
    let serving = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let start = |cap: u64| {
        let emulator = serving
            .block_on(Emulator::start(EmulatorConfig::demo_with_big_size(size)))
            .expect("emulator");
        emulator
            .faults()
            .set(FaultRule::global(Fault::TotalBandwidth(cap)).on("/cdn/*"));
        emulator
    };
    let (a, b) = (start(options.a), start(options.b));
    // The generated GGUF is about the size asked for (its tensors are sized by the model's
    // shapes): the figures divide by the file's real size.
    let size = a
        .catalog()
        .file(hub_emulator::RepoKind::Model, "demo/big", "main", FILE)
        .map(|f| f.size())
        .unwrap_or(size);
    let base = std::env::temp_dir().join(format!("mc-bench-sources-{}", std::process::id()));
    let run = |name: &str, endpoint: &Emulator, mirror: Option<&Emulator>| -> f64 {
        let dir = base.join(name);
        let mut settings = Settings::new(dir.join("hub"), dir.join("data"));
        settings.endpoint = endpoint.url();
        settings.mirrors = mirror
            .map(|m| vec![Mirror::new(m.url())])
            .unwrap_or_default();
        settings.limits.connections = options.connections;
        settings.limits.connections_per_host = options.connections;
        settings.limits.chunk_size = options.chunk;
        let hub = HubClient::new(&settings).expect("hub client");
        let index = model_cache::index::Index::open(&settings.data_dir).expect("index");
        let downloader = Downloader::new(&settings, hub, index);
        let request = DownloadRequest {
            repo: RepoId::model("demo/big").expect("repo"),
            revision: "main".into(),
            files: vec![FILE.into()],
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (seconds, phases) = std::thread::scope(|scope| {
            if options.timeline {
                let stop = &stop;
                scope.spawn(move || timeline(endpoint, mirror, stop));
            }
            let started = Instant::now();
            let phases = std::sync::Arc::new(Phases::new(started));
            runtime
                .block_on(downloader.download(request, phases.clone()))
                .expect("the download succeeds");
            let seconds = started.elapsed().as_secs_f64();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (seconds, phases)
        });
        let _ = std::fs::remove_dir_all(&dir);
        let served: u64 = [Some(endpoint), mirror]
            .into_iter()
            .flatten()
            .map(|e| {
                let bytes = e.log().bytes_served();
                e.log().clear();
                bytes
            })
            .sum();
        println!(
            "  {name}: the emulators served {:.2} times the file",
            served as f64 / size as f64
        );
        let (first, last) = phases.transfer();
        println!(
            "  {name}: first progress at {first:.2} s, all bytes on disk at {last:.2} s, verified and linked at {seconds:.2} s"
        );
        size as f64 / seconds
    };
    let mb = |bytes: f64| bytes / 1e6;
    println!(
        "two sources: file {:.0} MiB, A {:.0} MB/s (endpoint), B {:.0} MB/s (mirror), {} connections, chunks of {} KiB",
        size as f64 / 1048576.0,
        mb(options.a as f64),
        mb(options.b as f64),
        options.connections,
        options.chunk / 1024
    );
    let only_a = run("a", &a, None);
    println!(
        "A alone: {:.1} MB/s = {:.2} of A",
        mb(only_a),
        only_a / options.a as f64
    );
    let only_b = run("b", &b, None);
    println!(
        "B alone: {:.1} MB/s = {:.2} of B",
        mb(only_b),
        only_b / options.b as f64
    );
    let both = run("both", &a, Some(&b));
    let cap = (options.a + options.b) as f64;
    println!(
        "A and B: {:.1} MB/s = {:.2} of A + B, {:.2} of A alone + B alone",
        mb(both),
        both / cap,
        both / (only_a + only_b)
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// When a download's bytes started and stopped arriving (from its progress events), to tell the
/// transfer from the work around it (resolving, verifying, linking).
struct Phases {
    started: Instant,
    seen: std::sync::Mutex<(Option<f64>, Option<f64>)>,
}

impl Phases {
    fn new(started: Instant) -> Self {
        Phases {
            started,
            seen: std::sync::Mutex::new((None, None)),
        }
    }

    /// Seconds from the start to the first and to the last byte on disk.
    fn transfer(&self) -> (f64, f64) {
        let (first, last) = *self.seen.lock().expect("phases lock");
        (first.unwrap_or(0.0), last.unwrap_or(0.0))
    }
}

impl model_cache::download::Reporter for Phases {
    fn report(&self, event: model_cache::download::DownloadEvent) {
        use model_cache::download::DownloadEvent;
        let now = self.started.elapsed().as_secs_f64();
        let mut seen = self.seen.lock().expect("phases lock");
        match event {
            DownloadEvent::Bytes { done, total, .. } => {
                if seen.0.is_none() && done > 0 {
                    seen.0 = Some(now);
                }
                if done == total {
                    seen.1.get_or_insert(now);
                }
            }
            DownloadEvent::Verifying { .. } => {
                seen.1.get_or_insert(now);
            }
            _ => {}
        }
    }
}

/// Every half second until `stop`: what each emulator sent and the range requests it is
/// answering (`--timeline`), to see how the downloader spreads its connections.
fn timeline(a: &Emulator, b: Option<&Emulator>, stop: &std::sync::atomic::AtomicBool) {
    let streaming = |emulator: &Emulator| {
        emulator
            .log()
            .records()
            .iter()
            .filter(|r| {
                let asked = r
                    .range
                    .as_deref()
                    .and_then(|x| x.strip_prefix("bytes="))
                    .and_then(|x| x.split_once('-'))
                    .and_then(|(s, e)| Some(e.parse::<u64>().ok()? + 1 - s.parse::<u64>().ok()?));
                asked.is_some_and(|asked| r.bytes_sent < asked)
            })
            .count()
    };
    let sent = |emulator: Option<&Emulator>| emulator.map_or(0, |e| e.log().bytes_served());
    let started = Instant::now();
    let (mut last_a, mut last_b) = (sent(Some(a)), sent(b));
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(500));
        let (now_a, now_b) = (sent(Some(a)), sent(b));
        println!(
            "    {:4.1} s: A {:3.0} MB/s on {:2} connections, B {:3.0} MB/s on {:2}",
            started.elapsed().as_secs_f64(),
            (now_a - last_a) as f64 / 0.5e6,
            streaming(a),
            (now_b - last_b) as f64 / 0.5e6,
            b.map_or(0, streaming)
        );
        (last_a, last_b) = (now_a, now_b);
    }
}

/// Requests the emulator saw, by method.
fn requests_by_method(emulator: &Emulator) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in emulator.requests() {
        *out.entry(r.method.clone()).or_insert(0) += 1;
    }
    out
}

/// `--scenario many-files` (see the module's documentation).
fn many_files(options: &Options) {
    use hub_emulator::generate::VirtualFile;
    use hub_emulator::{FileChange, Repo, RepoKind};

    // Log-uniform sizes from 1 KiB to the largest, from a fixed seed.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let (low, high) = (1024f64.ln(), (options.max_file.max(1025) as f64).ln());
    let mut changes = Vec::new();
    let mut total = 0u64;
    for i in 0..options.files {
        let size = (low + next() * (high - low)).exp() as u64;
        total += size;
        let path = format!("shard-{:02}/file-{i:05}.bin", i % 37);
        changes.push(FileChange::put(
            path,
            VirtualFile::random(size, i as u64 + 1),
        ));
    }
    let mut repo = Repo::new(RepoKind::Model, "bench/many");
    repo.commit("main", "Many files", changes);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let emulator = runtime
        .block_on(Emulator::start(EmulatorConfig {
            repos: vec![repo],
            ..EmulatorConfig::default()
        }))
        .expect("emulator");
    if options.latency_ms > 0 {
        emulator
            .faults()
            .set(FaultRule::global(Fault::Latency(Duration::from_millis(
                options.latency_ms,
            ))));
    }
    println!(
        "many-files: {} files, {:.1} MiB in all (1 KiB to {:.1} MiB each), {} ms added to every request",
        options.files,
        total as f64 / 1048576.0,
        options.max_file as f64 / 1048576.0,
        options.latency_ms
    );
    let base = std::env::temp_dir().join(format!("mc-bench-many-{}", std::process::id()));

    // 1. The downloader.
    let dir = base.join("ours");
    let mut settings = Settings::new(dir.join("hub"), dir.join("data"));
    settings.endpoint = emulator.url();
    let hub = HubClient::new(&settings).expect("hub client");
    // The emulator hashes each file the first time it is asked about it: done here, before
    // either run, so neither pays for it.
    let repo_id = RepoId::model("bench/many").expect("repo id");
    runtime
        .block_on(hub.list_tree(&repo_id, "main", None, true))
        .expect("listing");
    emulator.log().clear();
    let index = model_cache::index::Index::open(&settings.data_dir).expect("index");
    let downloader = model_cache::download::Downloader::new(&settings, hub, index);
    let request = model_cache::download::DownloadRequest {
        repo: repo_id,
        revision: "main".into(),
        files: Vec::new(),
    };
    let started = Instant::now();
    let summary = runtime
        .block_on(downloader.download(
            request,
            std::sync::Arc::new(model_cache::download::NoReporter),
        ))
        .expect("the pull succeeds");
    let ours = started.elapsed().as_secs_f64();
    let ours_requests = requests_by_method(&emulator);
    println!(
        "  model-cache: {:.2} s for {} files; requests {:?}",
        ours,
        summary.files.len(),
        ours_requests
    );
    emulator.log().clear();

    // 2. `snapshot_download`, timed inside Python (the interpreter's start is not counted).
    let Some(python) = venv_python() else {
        println!(
            "  huggingface_hub: skipped (no target/py-venv; run scripts/setup.sh --with-test-tools)"
        );
        let _ = std::fs::remove_dir_all(&base);
        return;
    };
    let script = "import sys, time\nfrom huggingface_hub import snapshot_download\n\
        t = time.time()\nsnapshot_download('bench/many', cache_dir=sys.argv[1])\n\
        print(time.time() - t)\n";
    let output = Command::new(&python)
        .args(["-c", script, &base.join("hf").display().to_string()])
        .env("HF_ENDPOINT", emulator.url())
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_ENABLE_HF_TRANSFER")
        .output()
        .expect("python runs");
    if !output.status.success() {
        println!(
            "  huggingface_hub: failed: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        );
        let _ = std::fs::remove_dir_all(&base);
        return;
    }
    let theirs: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a time");
    println!(
        "  huggingface_hub.snapshot_download: {:.2} s; requests {:?}",
        theirs,
        requests_by_method(&emulator)
    );
    println!(
        "  ratio: model-cache took {:.2}x the time of snapshot_download ({:.1}x faster)",
        ours / theirs,
        theirs / ours
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// The Python of `target/py-venv`, next to this example's target folder.
fn venv_python() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("py-venv/bin/python")))
        .filter(|p| p.exists())
}

/// `--scenario big-cache` (see the module's documentation).
fn big_cache(options: &Options) {
    let files = if options.files == 3000 {
        200
    } else {
        options.files
    };
    let base = std::env::temp_dir().join(format!("mc-bench-cache-{}", std::process::id()));
    let hub = base.join("hub");
    let made = Instant::now();
    for r in 0..options.repos {
        let dir = hub.join(format!("models--bench--repo-{r:04}"));
        let commit = format!("{r:040x}");
        let snapshot = dir.join("snapshots").join(&commit);
        std::fs::create_dir_all(dir.join("blobs")).expect("blobs");
        std::fs::create_dir_all(dir.join("refs")).expect("refs");
        std::fs::create_dir_all(&snapshot).expect("snapshot");
        std::fs::write(dir.join("refs/main"), &commit).expect("ref");
        for f in 0..files {
            let etag = format!("{:064x}", r * files + f + 1);
            std::fs::write(dir.join("blobs").join(&etag), b"x").expect("blob");
            std::os::unix::fs::symlink(
                format!("../../blobs/{etag}"),
                snapshot.join(format!("part-{f:05}.bin")),
            )
            .expect("link");
        }
    }
    println!(
        "big-cache: {} repos x {files} files made in {:.1} s",
        options.repos,
        made.elapsed().as_secs_f64()
    );
    let settings = Settings::new(hub.clone(), base.join("data"));
    let list = |what: &str| {
        let engine = model_cache::engine::Engine::open(
            settings.clone(),
            model_cache::engine::EngineOptions {
                run_queue: false,
                ..model_cache::engine::EngineOptions::system()
            },
        )
        .expect("engine");
        let started = Instant::now();
        let listed = engine.cache_list().expect("listing");
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "  cache_list {what}: {:.3} s ({} repos)",
            seconds,
            listed.len()
        );
        seconds
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let first = list("first (index made)");
    let warm = list("warm");
    for entry in std::fs::read_dir(base.join("data")).expect("data") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("index.sqlite3"))
        {
            let _ = std::fs::remove_file(path);
        }
    }
    let rebuilt = list("with the index deleted");
    match venv_python() {
        Some(python) => {
            let script = "import sys, time\nfrom huggingface_hub import scan_cache_dir\n\
                t = time.time()\ninfo = scan_cache_dir(sys.argv[1])\n\
                print(time.time() - t, len(info.repos))\n";
            let output = Command::new(python)
                .args(["-c", script, &hub.display().to_string()])
                .output()
                .expect("python runs");
            let text = String::from_utf8_lossy(&output.stdout);
            match text
                .split_whitespace()
                .next()
                .and_then(|t| t.parse::<f64>().ok())
            {
                Some(theirs) => println!(
                    "  huggingface_hub.scan_cache_dir: {theirs:.3} s; ratios: first {:.2}x, warm {:.2}x, without index {:.2}x of its time",
                    first / theirs,
                    warm / theirs,
                    rebuilt / theirs
                ),
                None => println!(
                    "  huggingface_hub.scan_cache_dir failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                        .lines()
                        .last()
                        .unwrap_or_default()
                ),
            }
        }
        None => println!("  huggingface_hub: skipped (no target/py-venv)"),
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// What one pull over a capped link showed.
struct LinkFigures {
    first_chunk_s: f64,
    seconds: f64,
    refetched: u64,
}

/// `--scenario slow-links`.
fn slow_links(options: &Options) {
    let size_asked = if options.size == 4 << 30 {
        64 << 20
    } else {
        options.size
    };
    // The caps are replaced for each link below.
    let (_runtime, emulator, size) = capped_emulator(size_asked, options);
    let base = std::env::temp_dir().join(format!("mc-bench-links-{}", std::process::id()));
    println!(
        "file {:.1} MiB, chunks of {} KiB, at most {} connections",
        size as f64 / 1048576.0,
        options.chunk / 1024,
        options.connections
    );
    for link in [2_000_000u64, 200_000_000] {
        emulator.faults().clear();
        emulator
            .faults()
            .set(FaultRule::global(Fault::TotalBandwidth(link)).on("/cdn/*"));
        // Interrupted about a third of the way through.
        let kill_after = Duration::from_secs_f64(size as f64 / link as f64 / 3.0);
        let mut figures = Vec::new();
        for (name, start) in [("all at once", 0usize), ("ramp from 4", 4)] {
            let dir = base.join(format!("{link}-{start}"));
            let whole = pull_over_link(&emulator, &dir, options, start, None);
            let _ = std::fs::remove_dir_all(&dir);
            let before = emulator.bytes_served();
            pull_over_link(&emulator, &dir, options, start, Some(kill_after));
            pull_over_link(&emulator, &dir, options, start, None);
            let refetched = (emulator.bytes_served() - before).saturating_sub(size);
            let _ = std::fs::remove_dir_all(&dir);
            println!(
                "{:>4.0} MB/s, {name:<11}: first whole chunk after {:.2} s, whole file {:.2} s, {:.2} MiB fetched twice after a kill -9 at {:.1} s",
                link as f64 / 1e6,
                whole.first_chunk_s,
                whole.seconds,
                refetched as f64 / 1048576.0,
                kill_after.as_secs_f64()
            );
            figures.push(LinkFigures { refetched, ..whole });
        }
        let (fixed, ramp) = (&figures[0], &figures[1]);
        println!(
            "{:>4.0} MB/s: ramp / all at once: first chunk {:.2}x the time, whole file {:.2}x, bytes at risk {:.2}x",
            link as f64 / 1e6,
            ramp.first_chunk_s / fixed.first_chunk_s.max(1e-9),
            ramp.seconds / fixed.seconds.max(1e-9),
            ramp.refetched as f64 / (fixed.refetched as f64).max(1.0)
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// One pull in a child with `start` connections at first; with `kill_after`, SIGKILLed then.
fn pull_over_link(
    emulator: &Emulator,
    dir: &Path,
    options: &Options,
    start: usize,
    kill_after: Option<Duration>,
) -> LinkFigures {
    let began = Instant::now();
    let mut child = spawn_pull(emulator, dir, options, Some(start));
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = std::sync::mpsc::channel::<serde_json::Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = sender.send(value);
            }
        }
    });
    let mut first_chunk_s = f64::NAN;
    loop {
        while let Ok(event) = receiver.try_recv() {
            // The first whole chunk (the file's last chunk is shorter and would say nothing).
            let whole_chunk = event["index"].as_u64().unwrap_or(0) + 1
                < event["chunks_total"].as_u64().unwrap_or(0);
            if event["event"].as_str() == Some("chunk_done")
                && whole_chunk
                && first_chunk_s.is_nan()
            {
                first_chunk_s = event["t_ms"].as_f64().unwrap_or(0.0) / 1000.0;
            }
        }
        if kill_after.is_some_and(|after| began.elapsed() >= after) {
            let _ = child.kill();
        }
        if let Some(status) = child.try_wait().expect("wait") {
            if kill_after.is_none() && !status.success() {
                panic!("pull_child failed: {status}");
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = reader.join();
    LinkFigures {
        first_chunk_s,
        seconds: began.elapsed().as_secs_f64(),
        refetched: 0,
    }
}

/// `--scenario split`.
fn split(options: &Options) {
    use hub_emulator::generate::{GgufSpec, LlamaFileType};
    let (runtime, emulator, one) = capped_emulator(options.size, options);
    let mut repo = hub_emulator::Repo::new(hub_emulator::RepoKind::Model, "bench/big-split");
    let spec = GgufSpec::llama("Big-Split", LlamaFileType::Q8_0, one);
    let parts: Vec<_> = spec
        .split(5)
        .iter()
        .enumerate()
        .map(|(i, part)| {
            hub_emulator::FileChange::put(
                format!("big-split-Q8_0-{:05}-of-00005.gguf", i + 1),
                part.build(),
            )
        })
        .collect();
    repo.commit("main", "Upload a split model", parts);
    emulator.catalog().add(repo);
    let base = std::env::temp_dir().join(format!("mc-bench-split-{}", std::process::id()));
    let pull = |name: &str, repo: &str, variant: Option<&str>| -> (f64, u64) {
        let dir = base.join(name);
        let mut settings = Settings::new(dir.join("hub"), dir.join("data"));
        settings.endpoint = emulator.url();
        settings.limits.chunk_size = options.chunk;
        settings.limits.connections = options.connections;
        settings.limits.connections_per_host = options.connections;
        let engine = runtime.block_on(async {
            model_cache::engine::Engine::open(
                settings,
                model_cache::engine::EngineOptions {
                    run_queue: false,
                    ..model_cache::engine::EngineOptions::system()
                },
            )
            .expect("engine")
        });
        let request = model_cache::engine::PullRequest {
            variant: variant.map(str::to_string),
            include: if variant.is_none() {
                vec![FILE.to_string()]
            } else {
                Vec::new()
            },
            ..model_cache::engine::PullRequest::repo(repo.parse().expect("repo id"))
        };
        let served = emulator.bytes_served();
        let started = Instant::now();
        runtime.block_on(async {
            let plan = engine.plan_pull(&request).await.expect("plan");
            engine
                .download(&plan, Arc::new(model_cache::download::NoReporter))
                .wait()
                .await
                .expect("pull");
        });
        let seconds = started.elapsed().as_secs_f64();
        let bytes = emulator.bytes_served() - served;
        drop(engine);
        let _ = std::fs::remove_dir_all(&dir);
        (seconds, bytes)
    };
    println!(
        "{:.1} MiB in one file and in 5 parts, link {:.0} MB/s, {:.0} MB/s per connection",
        one as f64 / 1048576.0,
        options.link as f64 / 1e6,
        options.conn as f64 / 1e6
    );
    let (one_s, one_bytes) = pull("one", "demo/big", None);
    let (split_s, split_bytes) = pull("split", "bench/big-split", Some("Q8_0"));
    for (name, seconds, bytes) in [
        ("one file", one_s, one_bytes),
        ("5-way split variant", split_s, split_bytes),
    ] {
        println!(
            "{name}: {:.2} s, {:.1} MB/s = {:.1} % of the link",
            seconds,
            bytes as f64 / seconds / 1e6,
            100.0 * bytes as f64 / seconds / options.link as f64
        );
    }
    println!("split / one file: {:.2}x the time", split_s / one_s);
    let _ = std::fs::remove_dir_all(&base);
}

/// The arguments of `pull_child` pulling `demo/big` into `dir` (its events on stdout).
fn pull_args(emulator: &Emulator, dir: &Path, options: &Options) -> Vec<String> {
    vec![
        emulator.url(),
        dir.join("hub").display().to_string(),
        dir.join("data").display().to_string(),
        "demo/big".into(),
        FILE.into(),
        options.chunk.to_string(),
        "0".into(),
        options.connections.to_string(),
        "events".into(),
    ]
}

/// A free port on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// CPU seconds a command used (`perf stat`'s task clock) and its wall seconds, or `None`
/// without `perf`.
fn task_clock(program: &Path, args: &[String]) -> Option<(f64, f64)> {
    let started = Instant::now();
    let output = Command::new("perf")
        .args(["stat", "-x", ",", "-e", "task-clock", "--"])
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .output()
        .ok()?;
    let wall = started.elapsed().as_secs_f64();
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stderr);
    let line = text.lines().find(|l| l.contains("task-clock"))?;
    let msec: f64 = line.split(',').next()?.trim().parse().ok()?;
    Some((msec / 1000.0, wall))
}

/// `--scenario fast-link` (see the module's documentation).
fn fast_link(options: &Options) {
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        println!("fast-link: skipped (no nginx: `apt-get install nginx-light`)");
        return;
    };
    let size = if options.size == 4 << 30 {
        1 << 30
    } else {
        options.size
    };
    let base = std::env::temp_dir().join(format!("mc-bench-fast-{}", std::process::id()));
    let port = free_port();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    // The Hub is the emulator; its redirects name nginx as the CDN.
    let mut config = EmulatorConfig::demo_with_big_size(size);
    config.cdn_base_url = Some(format!("http://127.0.0.1:{port}"));
    let emulator = runtime.block_on(Emulator::start(config)).expect("emulator");
    let file = emulator
        .catalog()
        .file(hub_emulator::RepoKind::Model, "demo/big", "main", FILE)
        .expect("demo/big holds the file");
    let settings = {
        let mut s = Settings::new(base.join("probe/hub"), base.join("probe/data"));
        s.endpoint = emulator.url();
        s
    };
    let hub = HubClient::new(&settings).expect("client");
    let repo = RepoId::model("demo/big").expect("repo id");
    let meta = runtime
        .block_on(hub.file_metadata(&repo, "main", FILE))
        .expect("metadata");
    let sha256 = meta.sha256.clone().expect("an LFS file has a sha256");
    let object = base.join("www/cdn").join(&sha256).join(FILE);
    std::fs::create_dir_all(object.parent().expect("folder")).expect("www");
    {
        let mut out = std::io::BufWriter::with_capacity(
            8 << 20,
            std::fs::File::create(&object).expect("object"),
        );
        let mut buf = vec![0u8; 8 << 20];
        let mut offset = 0u64;
        while offset < file.size() {
            let n = file.body.read_at(offset, &mut buf);
            out.write_all(&buf[..n]).expect("write");
            offset += n as u64;
        }
        out.flush().expect("flush");
    }
    let conf = base.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {pid};\nerror_log {err} warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000;\n\
               client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n  fastcgi_temp_path {tmp};\n\
               uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n\
               server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
            pid = base.join("nginx.pid").display(),
            err = base.join("nginx.err").display(),
            tmp = base.join("tmp").display(),
            root = base.join("www").display(),
        ),
    )
    .expect("nginx.conf");
    let mut server = Command::new(&nginx)
        .args([
            "-c",
            &conf.display().to_string(),
            "-p",
            &base.display().to_string(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let ready = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(10),
            "nginx did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("http://127.0.0.1:{port}/cdn/{sha256}/{FILE}");
    println!(
        "fast-link: {:.0} MiB from nginx (sendfile) on 127.0.0.1; curl -o against a pull \
         (which also hashes, records chunks and fsyncs), alternating, 3 runs each",
        size as f64 / 1048576.0
    );
    let curl = |dir: &Path| -> f64 {
        let out = dir.join("curl.bin");
        let started = Instant::now();
        let status = Command::new("curl")
            .args(["-s", "-f", "-o", &out.display().to_string(), &url])
            .status()
            .expect("curl runs");
        let seconds = started.elapsed().as_secs_f64();
        assert!(status.success(), "curl failed");
        assert_eq!(
            std::fs::metadata(&out).map(|m| m.len()).ok(),
            Some(file.size())
        );
        let _ = std::fs::remove_file(out);
        seconds
    };
    for loaded in [false, true] {
        // Other work beside it: one thread busy on one of the cores.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load = loaded.then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for i in 0..100_000u64 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
                    }
                    std::hint::black_box(x);
                }
            })
        });
        let (mut theirs, mut ours) = (Vec::new(), Vec::new());
        for run in 0..3 {
            let dir = base.join(format!("run-{loaded}-{run}"));
            std::fs::create_dir_all(&dir).expect("run folder");
            theirs.push(curl(&dir));
            ours.push(run_pull(&emulator, &dir, options, None).seconds);
            let _ = std::fs::remove_dir_all(&dir);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(load) = load {
            let _ = load.join();
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (t, o) = (median(&mut theirs), median(&mut ours));
        println!(
            "  {}: curl {:.2} s, pull {:.2} s (medians; {:.1} and {:.1} MB/s): the pull took {:.2}x curl's time",
            if loaded {
                "loaded (one core busy)"
            } else {
                "quiet"
            },
            t,
            o,
            size as f64 / t / 1e6,
            size as f64 / o / 1e6,
            o / t
        );
    }
    if options.profile {
        let dir = base.join("profile");
        std::fs::create_dir_all(&dir).expect("profile folder");
        let out = dir.join("curl.bin").display().to_string();
        let curl_args = ["-s".to_string(), "-o".into(), out.clone(), url.clone()];
        let theirs = task_clock(Path::new("curl"), &curl_args);
        let _ = std::fs::remove_file(&out);
        let ours = task_clock(&child_binary(), &pull_args(&emulator, &dir, options));
        let _ = std::fs::remove_dir_all(dir.join("hub"));
        let _ = std::fs::remove_dir_all(dir.join("data"));
        if let (Some((tc, tw)), Some((oc, ow))) = (theirs, ours) {
            println!(
                "  CPU: curl {tc:.2} s in {tw:.2} s ({:.2} CPUs), pull {oc:.2} s in {ow:.2} s ({:.2} CPUs): the pull used {:.1}x curl's CPU",
                tc / tw,
                oc / ow,
                oc / tc
            );
        }
        let data = dir.join("perf.data");
        let status = Command::new("perf")
            .args([
                "record",
                "-q",
                "-g",
                "-o",
                &data.display().to_string(),
                "--",
            ])
            .arg(child_binary())
            .args(pull_args(&emulator, &dir, options))
            .stdout(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {
                let report = Command::new("perf")
                    .args(["report", "-i", &data.display().to_string(), "--no-children"])
                    .args([
                        "--sort",
                        "dso,sym",
                        "--percent-limit",
                        "1.5",
                        "--stdio",
                        "-g",
                        "none",
                    ])
                    .output()
                    .expect("perf report");
                println!("  where the pull's CPU goes (perf, self time):");
                for line in String::from_utf8_lossy(&report.stdout)
                    .lines()
                    .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                    .take(25)
                {
                    println!("    {line}");
                }
            }
            _ => println!("  profile skipped (perf record failed or is missing)"),
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&base);
}

/// A runtime and the emulator with `demo/big` of about `size` bytes, its CDN capped at
/// `--conn-mbps` per connection and `--link-mbps` in all; and the file's exact size.
fn capped_emulator(size: u64, options: &Options) -> (tokio::runtime::Runtime, Emulator, u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let emulator = runtime
        .block_on(Emulator::start(EmulatorConfig::demo_with_big_size(size)))
        .expect("emulator");
    let exact = emulator
        .catalog()
        .file(hub_emulator::RepoKind::Model, "demo/big", "main", FILE)
        .map(|f| f.size())
        .unwrap_or(size);
    emulator
        .faults()
        .set(FaultRule::global(Fault::ConnectionBandwidth(options.conn)).on("/cdn/*"));
    emulator
        .faults()
        .set(FaultRule::global(Fault::TotalBandwidth(options.link)).on("/cdn/*"));
    (runtime, emulator, exact)
}

/// Bytes that do not compress, from a seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `--scenario xet-update` (see the module's documentation).
fn xet_update(options: &Options) {
    use hub_emulator::{FileChange, Listener, Repo, RepoKind};
    use model_cache::download::{DownloadRequest, Downloader, NoReporter};
    let size = if options.size == 4 << 30 {
        512 << 20
    } else {
        options.size as usize
    };
    let file = "model.safetensors";
    let v1 = noise(1, size);
    // 1 % of the file changed, in four places.
    let mut v2 = v1.clone();
    let edit = size / 400;
    for i in 0..4 {
        let at = size / 5 * (i + 1);
        v2[at..at + edit].copy_from_slice(&noise(10 + i as u64, edit));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut repo = Repo::new(RepoKind::Model, "bench/xet");
    repo.xet = true;
    repo.commit("main", "v1", vec![FileChange::put(file, v1)]);
    let stored = Instant::now();
    let emulator = runtime
        .block_on(Emulator::start(EmulatorConfig {
            repos: vec![repo],
            ..EmulatorConfig::default()
        }))
        .expect("emulator");
    if emulator.xet().is_none() {
        eprintln!("The emulator runs no Xet CAS (built without hub-emulator's `xet` feature)");
        std::process::exit(2);
    }
    println!(
        "{:.0} MiB stored in the emulator's CAS in {:.1} s; link {:.0} MB/s",
        size as f64 / 1048576.0,
        stored.elapsed().as_secs_f64(),
        options.link as f64 / 1e6
    );
    for glob in ["/cdn/*", "/v1/fetch_term*"] {
        emulator
            .faults()
            .set(FaultRule::global(Fault::TotalBandwidth(options.link)).on(glob));
    }
    let base = std::env::temp_dir().join(format!("mc-bench-xet-{}", std::process::id()));
    let downloader_in = |name: &str, xet: bool| {
        let dir = base.join(name);
        let mut settings = Settings::new(dir.join("hub"), dir.join("data"));
        settings.endpoint = emulator.url();
        settings.limits.chunk_size = options.chunk;
        settings.limits.connections = options.connections;
        settings.limits.connections_per_host = options.connections;
        settings.xet.enabled = xet;
        let hub = HubClient::new(&settings).expect("hub client");
        let index = model_cache::index::Index::open(&settings.data_dir).expect("index");
        Downloader::new(&settings, hub, index)
    };
    let moved = |listener| emulator.log().bytes_served_by(listener);
    let pull = |downloader: &Downloader| -> (f64, u64, u64) {
        let before = moved(Listener::Cas) + moved(Listener::Cdn);
        let started = Instant::now();
        let summary = runtime
            .block_on(downloader.download(
                DownloadRequest {
                    repo: RepoId::model("bench/xet").expect("repo id"),
                    revision: "main".into(),
                    files: vec![file.into()],
                },
                Arc::new(NoReporter),
            ))
            .expect("pull");
        let seconds = started.elapsed().as_secs_f64();
        let reused = summary.files.iter().map(|f| f.bytes_reused).sum();
        (
            seconds,
            moved(Listener::Cas) + moved(Listener::Cdn) - before,
            reused,
        )
    };
    let delta = downloader_in("delta", true);
    let (v1_s, v1_bytes, _) = pull(&delta);
    println!(
        "v1 through Xet: {:.2} s, {:.1} MiB moved",
        v1_s,
        v1_bytes as f64 / 1048576.0
    );
    emulator
        .move_branch(
            RepoKind::Model,
            "bench/xet",
            "main",
            "v2: 1 % changed",
            vec![FileChange::put(file, v2)],
        )
        .expect("v2");
    let (delta_s, delta_bytes, reused) = pull(&delta);
    let plain = downloader_in("plain", false);
    let (plain_s, plain_bytes, _) = pull(&plain);
    println!(
        "update to v2 as a Xet delta: {:.2} s, {:.2} MiB moved, {:.1} MiB copied from v1",
        delta_s,
        delta_bytes as f64 / 1048576.0,
        reused as f64 / 1048576.0
    );
    println!(
        "v2 re-downloaded over HTTP: {:.2} s, {:.1} MiB moved",
        plain_s,
        plain_bytes as f64 / 1048576.0
    );
    println!(
        "delta / HTTP: {:.3}x the bytes, {:.2}x the time",
        delta_bytes as f64 / plain_bytes.max(1) as f64,
        delta_s / plain_s.max(1e-9)
    );
    drop(delta);
    drop(plain);
    let _ = std::fs::remove_dir_all(&base);
}
