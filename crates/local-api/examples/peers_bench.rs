//! The LAN peers' benchmark: prints figures, asserts nothing.
//!
//! ```text
//! cargo run --release -p local-api --example peers_bench -- [--size 256MiB] [--links 20,40,60] [--hub 60]
//! ```
//!
//! Three peers hold one generated file (`demo/big`, about `--size`); each is reached through a
//! relay that caps its link (`--links`, MB/s, one per peer, shared by all the connections to
//! it). A fourth machine, paired with the three, downloads the file; then a fifth, with no
//! peer, downloads it from the hub emulator's CDN capped at `--hub` MB/s (the Hub alone). Both
//! in this process, on loopback, into fresh caches. Prints each one's MB/s, the peers' as a
//! fraction of the summed links, the Hub's as a fraction of its link, and the peers' time as a
//! ratio of the Hub's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hub_emulator::faults::parse_size;
use hub_emulator::{Emulator, EmulatorConfig, Fault, FaultRule};
use local_api::peers::{PeerConfig, PeerDiscovery, PeerServer};
use model_cache::Settings;
use model_cache::download::RecordingReporter;
use model_cache::engine::{Engine, EngineOptions, PullRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REPO: &str = "demo/big";
const MB: f64 = 1e6;

struct Options {
    size: u64,
    links: Vec<f64>,
    hub: f64,
}

fn options() -> Options {
    let mut options = Options {
        size: 256 << 20,
        links: vec![20.0, 40.0, 60.0],
        hub: 60.0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--size" => options.size = parse_size(&value).expect("a size like 256MiB"),
            "--links" => {
                options.links = value.split(',').map(|v| v.parse().expect("MB/s")).collect()
            }
            "--hub" => options.hub = value.parse().expect("MB/s"),
            other => panic!("unknown argument `{other}`"),
        }
        i += 2;
    }
    options
}

struct Machine {
    engine: Engine,
    server: Option<PeerServer>,
    _dir: tempfile::TempDir,
}

async fn machine(emulator: &Emulator, name: &str, share: bool) -> Machine {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::new(dir.path().join("hub"), dir.path().join("data"));
    settings.endpoint = emulator.url();
    settings.token_file = Some(dir.path().join("token"));
    settings.peer_name = Some(name.to_string());
    let engine = Engine::open(settings, EngineOptions::system()).unwrap();
    let server = if share {
        engine.set_sharing(true).unwrap();
        Some(
            local_api::peers::serve_peers(
                engine.clone(),
                PeerConfig {
                    bind: "127.0.0.1:0".parse().unwrap(),
                    fall_back_to_free_port: true,
                    discovery: PeerDiscovery::Off,
                },
            )
            .await
            .unwrap(),
        )
    } else {
        None
    };
    Machine {
        engine,
        server,
        _dir: dir,
    }
}

/// Pulls `demo/big`; the seconds it took and the bytes by source.
async fn pull(engine: &Engine) -> (f64, Vec<(String, u64)>) {
    let request = PullRequest {
        include: vec!["*.gguf".into()],
        ..PullRequest::repo(REPO.parse().unwrap())
    };
    let plan = engine.plan_pull(&request).await.unwrap();
    let reporter = Arc::new(RecordingReporter::default());
    let started = Instant::now();
    engine
        .download(&plan, reporter.clone())
        .wait()
        .await
        .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let sources = reporter
        .events()
        .iter()
        .find_map(|event| match event {
            model_cache::download::DownloadEvent::Sources { sources, .. } => Some(
                sources
                    .iter()
                    .map(|s| (s.source.clone(), s.bytes))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default();
    (elapsed, sources)
}

/// A relay to `target` whose downstream (towards the client) is paced at `rate` bytes per
/// second across all its connections: one peer's link.
async fn capped_link(target: SocketAddr, rate: f64) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let sent = Arc::clone(&sent);
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.split();
                let (mut server_read, mut server_write) = server.split();
                let up = tokio::io::copy(&mut client_read, &mut server_write);
                let down = async {
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let total = sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                        let due = Duration::from_secs_f64(total as f64 / rate);
                        let now = started.elapsed();
                        if due > now {
                            tokio::time::sleep(due - now).await;
                        }
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    _ = up => {}
                    () = down => {}
                }
            });
        }
    });
    addr
}

#[tokio::main]
async fn main() {
    let options = options();
    let emulator = Emulator::start(EmulatorConfig::demo_with_big_size(options.size))
        .await
        .unwrap();
    let names = ["peer-1", "peer-2", "peer-3"];
    let mut holders = Vec::new();
    for name in names.iter().take(options.links.len()) {
        let holder = machine(&emulator, name, true).await;
        pull(&holder.engine).await;
        holders.push(holder);
    }
    let size = emulator
        .catalog()
        .file(
            hub_emulator::RepoKind::Model,
            REPO,
            "main",
            "big-model-Q4_K_M.gguf",
        )
        .unwrap()
        .body
        .size();

    let puller = machine(&emulator, "puller", true).await;
    for (holder, rate) in holders.iter().zip(&options.links) {
        let address = holder.server.as_ref().unwrap().local_addr().to_string();
        let code = holder.engine.start_pairing().unwrap();
        puller
            .engine
            .pair_with(&address, &code.code, None)
            .await
            .unwrap();
        let relay = capped_link(holder.server.as_ref().unwrap().local_addr(), rate * MB).await;
        let fingerprint = holder
            .engine
            .peer_identity()
            .unwrap()
            .fingerprint()
            .to_string();
        puller
            .engine
            .set_peer_address(&fingerprint, &relay.to_string())
            .unwrap();
    }
    let before = emulator.log().bytes_served_matching(".gguf");
    let (peers_seconds, sources) = pull(&puller.engine).await;
    let from_hub = emulator.log().bytes_served_matching(".gguf") - before;
    let summed: f64 = options.links.iter().sum();
    let peers_rate = size as f64 / peers_seconds / MB;

    emulator
        .faults()
        .set(FaultRule::global(Fault::TotalBandwidth(
            (options.hub * MB) as u64,
        )));
    let alone = machine(&emulator, "alone", false).await;
    let (hub_seconds, _) = pull(&alone.engine).await;
    let hub_rate = size as f64 / hub_seconds / MB;

    println!(
        "file: {:.1} MB (demo/big), links to the peers: {:?} MB/s, the Hub's: {} MB/s",
        size as f64 / MB,
        options.links,
        options.hub
    );
    println!(
        "from {} peers: {peers_seconds:.2} s, {peers_rate:.1} MB/s = {:.2} of the summed links ({summed} MB/s); {} bytes from the Hub's CDN",
        options.links.len(),
        peers_rate / summed,
        from_hub
    );
    for (source, bytes) in &sources {
        println!("  {source}: {:.1} MB", *bytes as f64 / MB);
    }
    println!(
        "from the Hub alone: {hub_seconds:.2} s, {hub_rate:.1} MB/s = {:.2} of its link",
        hub_rate / options.hub
    );
    println!(
        "peers / Hub alone: {:.2}x the speed ({:.2} of the time)",
        peers_rate / hub_rate,
        peers_seconds / hub_seconds
    );
    for holder in holders {
        if let Some(server) = holder.server {
            server.shutdown().await;
        }
    }
    if let Some(server) = puller.server {
        server.shutdown().await;
    }
}
