//! LAN peers, three of them on loopback (distinct ports; discovery restricted to the loopback
//! interface), against the hub emulator: discovery within seconds, pairing with the short code,
//! an unpaired peer neither served nor used, a model two peers hold fetched from them (the
//! emulator's CDN serves at most one chunk), a peer serving corrupted bytes dropped for the
//! file, a peer whose link dies mid-transfer losing its chunks to the others.
//!
//! `scripts/peers-netns.sh` runs the same binary inside three network namespaces when
//! `ip netns add` works (`MCACHE_PEERS_NETNS`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hub_emulator::{Emulator, EmulatorConfig, RepoKind};
use local_api::peers::{PeerConfig, PeerDiscovery, PeerServeError, PeerServer};
use model_cache::Settings;
use model_cache::download::{DownloadEvent, RecordingReporter};
use model_cache::engine::{Engine, EngineOptions, PullRequest};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIG: &str = "demo/big";
const BIG_FILE: &str = "big-model-Q4_K_M.gguf";
const MIB: u64 = 1024 * 1024;
const CHUNK: u64 = MIB;
const BIG_SIZE: u64 = 12 * MIB;

struct Peer {
    name: &'static str,
    engine: Engine,
    server: Option<PeerServer>,
    _dir: tempfile::TempDir,
}

impl Peer {
    fn open(name: &'static str, emulator: &Emulator) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::new(dir.path().join("hub"), dir.path().join("data"));
        settings.endpoint = emulator.url();
        settings.token_file = Some(dir.path().join("token"));
        settings.peer_name = Some(name.to_string());
        settings.limits.chunk_size = CHUNK;
        settings.limits.connections_per_host = 4;
        settings.retry.max_attempts = 3;
        settings.retry.base_delay = Duration::from_millis(20);
        settings.retry.max_delay = Duration::from_millis(100);
        settings.timeouts.stall = Duration::from_secs(3);
        let engine = Engine::open(settings, EngineOptions::system()).unwrap();
        Peer {
            name,
            engine,
            server: None,
            _dir: dir,
        }
    }

    async fn share(&mut self, discovery: PeerDiscovery) {
        self.engine.set_sharing(true).unwrap();
        let config = PeerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            fall_back_to_free_port: true,
            discovery,
        };
        self.server = Some(
            local_api::peers::serve_peers(self.engine.clone(), config)
                .await
                .unwrap(),
        );
    }

    fn address(&self) -> String {
        self.server.as_ref().unwrap().local_addr().to_string()
    }

    fn port(&self) -> Option<u16> {
        self.server.as_ref().map(|s| s.local_addr().port())
    }

    fn fingerprint(&self) -> String {
        self.engine
            .peer_identity()
            .unwrap()
            .fingerprint()
            .to_string()
    }

    /// Pulls every file of `repo`; the download's events.
    async fn pull(&self, repo: &str) -> Vec<DownloadEvent> {
        let request = PullRequest {
            include: vec!["*".into()],
            ..PullRequest::repo(repo.parse().unwrap())
        };
        let plan = self.engine.plan_pull(&request).await.unwrap();
        let reporter = Arc::new(RecordingReporter::default());
        self.engine
            .download(&plan, reporter.clone())
            .wait()
            .await
            .unwrap_or_else(|e| panic!("{} could not pull {repo}: {e}", self.name));
        reporter.events()
    }

    /// The bytes of `path` in `repo`'s `main` snapshot here.
    fn file(&self, repo: &str, path: &str) -> Vec<u8> {
        let repo: model_cache::repo::RepoId = repo.parse().unwrap();
        let cache = self.engine.cache().repo(&repo);
        let commit = cache.read_ref("main").unwrap();
        std::fs::read(cache.snapshot_dir(&commit).join(path)).unwrap()
    }

    /// Pairs with `other`: `other` shows a code, this one types it.
    async fn pair(&self, other: &Peer) {
        let code = other.engine.start_pairing().unwrap();
        self.engine
            .pair_with(&other.address(), &code.code, self.port())
            .await
            .unwrap_or_else(|e| panic!("{} could not pair with {}: {e}", self.name, other.name));
    }

    fn served_to(&self, other: &Peer) -> u64 {
        self.engine
            .paired_peer(&other.fingerprint())
            .map(|p| p.bytes_served)
            .unwrap_or(0)
    }
}

struct Trio {
    emulator: Emulator,
    a: Peer,
    b: Peer,
    c: Peer,
}

impl Trio {
    async fn start(discovery: PeerDiscovery) -> Trio {
        let emulator = Emulator::start(EmulatorConfig::demo_with_big_size(BIG_SIZE))
            .await
            .unwrap();
        let mut trio = Trio {
            a: Peer::open("A", &emulator),
            b: Peer::open("B", &emulator),
            c: Peer::open("C", &emulator),
            emulator,
        };
        for peer in [&mut trio.a, &mut trio.b, &mut trio.c] {
            peer.share(discovery).await;
        }
        trio
    }

    fn content(&self, repo: &str, path: &str) -> Vec<u8> {
        self.emulator
            .catalog()
            .file(RepoKind::Model, repo, "main", path)
            .unwrap()
            .body
            .to_vec()
    }

    fn cdn_bytes(&self) -> u64 {
        self.emulator.log().bytes_served_matching(BIG_FILE)
    }

    async fn stop(self) {
        for peer in [self.a, self.b, self.c] {
            if let Some(server) = peer.server {
                server.shutdown().await;
            }
        }
    }
}

fn sources(events: &[DownloadEvent], path: &str) -> Vec<model_cache::download::SourceUse> {
    events
        .iter()
        .find_map(|event| match event {
            DownloadEvent::Sources {
                path: p, sources, ..
            } if p == path => Some(sources.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_discover_each_other_within_seconds_and_nothing_listens_while_sharing_is_off() {
    let emulator = Emulator::start(EmulatorConfig::demo_with_big_size(BIG_SIZE))
        .await
        .unwrap();
    let off = Peer::open("off", &emulator);
    let refused = local_api::peers::serve_peers(
        off.engine.clone(),
        PeerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            fall_back_to_free_port: true,
            discovery: PeerDiscovery::Loopback,
        },
    )
    .await;
    assert!(matches!(refused, Err(PeerServeError::SharingOff)));
    drop(emulator);

    let trio = Trio::start(PeerDiscovery::Loopback).await;
    let started = Instant::now();
    let ids: Vec<String> = [&trio.a, &trio.b, &trio.c]
        .iter()
        .map(|p| p.engine.peer_identity().unwrap().peer_id())
        .collect();
    loop {
        let seen: Vec<usize> = [&trio.a, &trio.b, &trio.c]
            .iter()
            .map(|peer| {
                let view = peer.engine.peers().unwrap();
                view.unpaired
                    .iter()
                    .filter(|seen| ids.contains(&seen.peer_id))
                    .count()
            })
            .collect();
        if seen == [2, 2, 2] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "each peer should see the two others, saw {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What discovery found is where the peer listens: pairing by the discovered address works.
    let view = trio.c.engine.peers().unwrap();
    let a_id = trio.a.engine.peer_identity().unwrap().peer_id();
    let a_seen = view.unpaired.iter().find(|p| p.peer_id == a_id).unwrap();
    assert_eq!(a_seen.address, trio.a.address());
    assert_eq!(a_seen.name, "A");
    let code = trio.a.engine.start_pairing().unwrap();
    trio.c
        .engine
        .pair_with(&a_seen.address, &code.code, trio.c.port())
        .await
        .unwrap();
    let view = trio.c.engine.peers().unwrap();
    assert_eq!(view.paired.len(), 1);
    assert!(view.unpaired.iter().all(|p| p.peer_id != a_id));
    eprintln!("discovery took {:?}", started.elapsed());
    trio.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unpaired_peer_is_neither_served_nor_used_and_pairing_needs_the_code() {
    let trio = Trio::start(PeerDiscovery::Off).await;
    trio.a.pull(BIG).await;
    let from_hub = trio.cdn_bytes();
    assert_eq!(from_hub, BIG_SIZE_ON_DISK(&trio));

    // C is not paired with A: A refuses it, whatever it asks.
    let c_identity = trio.c.engine.peer_identity().unwrap();
    let client = model_cache::peers::client::peer_hub_client(
        trio.c.engine.settings(),
        &c_identity,
        &trio.a.fingerprint(),
        &trio.a.address(),
    )
    .unwrap();
    let repo: model_cache::repo::RepoId = BIG.parse().unwrap();
    let refused = client
        .file_metadata_on(
            &format!("https://{}", trio.a.address()),
            &repo,
            "main",
            BIG_FILE,
        )
        .await;
    assert!(refused.is_err(), "an unpaired peer is not served");
    // And C does not use A: everything comes from the Hub.
    trio.c.pull(BIG).await;
    assert_eq!(trio.cdn_bytes() - from_hub, from_hub);
    assert_eq!(trio.a.served_to(&trio.c), 0);

    // A wrong code pairs nothing, on either side; the right one pairs both.
    let code = trio.a.engine.start_pairing().unwrap();
    let wrong = if code.code.starts_with('A') {
        "BBBB-BBBB"
    } else {
        "AAAA-AAAA"
    };
    let refused = trio
        .b
        .engine
        .pair_with(&trio.a.address(), wrong, trio.b.port())
        .await;
    assert!(refused.is_err());
    assert!(trio.a.engine.peers().unwrap().paired.is_empty());
    assert!(trio.b.engine.peers().unwrap().paired.is_empty());
    trio.b
        .engine
        .pair_with(&trio.a.address(), &code.code.to_lowercase(), trio.b.port())
        .await
        .unwrap();
    let a_view = trio.a.engine.peers().unwrap();
    let b_view = trio.b.engine.peers().unwrap();
    assert_eq!(a_view.paired.len(), 1);
    assert_eq!(a_view.paired[0].fingerprint, trio.b.fingerprint());
    assert_eq!(a_view.paired[0].name, "B");
    assert_eq!(
        a_view.paired[0].address.as_deref(),
        Some(trio.b.address().as_str())
    );
    assert_eq!(b_view.paired[0].fingerprint, trio.a.fingerprint());
    // The code is used up.
    let again = trio
        .c
        .engine
        .pair_with(&trio.a.address(), &code.code, trio.c.port())
        .await;
    assert!(again.is_err());
    // Unpaired again, B is refused again.
    trio.a
        .engine
        .unpair(&trio.b.engine.peer_identity().unwrap().peer_id())
        .unwrap();
    let b_identity = trio.b.engine.peer_identity().unwrap();
    let client = model_cache::peers::client::peer_hub_client(
        trio.b.engine.settings(),
        &b_identity,
        &trio.a.fingerprint(),
        &trio.a.address(),
    )
    .unwrap();
    let refused = client
        .file_metadata_on(
            &format!("https://{}", trio.a.address()),
            &repo,
            "main",
            BIG_FILE,
        )
        .await;
    assert!(refused.is_err());
    trio.stop().await;
}

#[expect(non_snake_case, reason = "reads as a constant")]
fn BIG_SIZE_ON_DISK(trio: &Trio) -> u64 {
    trio.content(BIG, BIG_FILE).len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_two_peers_hold_comes_from_them_not_from_the_hub() {
    let trio = Trio::start(PeerDiscovery::Off).await;
    let size = BIG_SIZE_ON_DISK(&trio);
    trio.a.pull(BIG).await;
    assert_eq!(trio.cdn_bytes(), size);
    trio.b.pair(&trio.a).await;
    let before = trio.cdn_bytes();
    trio.b.pull(BIG).await;
    assert!(
        trio.cdn_bytes() - before <= CHUNK,
        "B got {} bytes from the Hub's CDN",
        trio.cdn_bytes() - before
    );
    assert_eq!(
        sha(&trio.b.file(BIG, BIG_FILE)),
        sha(&trio.content(BIG, BIG_FILE))
    );

    trio.c.pair(&trio.a).await;
    trio.c.pair(&trio.b).await;
    let before = trio.cdn_bytes();
    let events = trio.c.pull(BIG).await;
    let from_hub = trio.cdn_bytes() - before;
    assert!(
        from_hub <= CHUNK,
        "C got {from_hub} bytes from the Hub's CDN"
    );
    assert_eq!(
        sha(&trio.c.file(BIG, BIG_FILE)),
        sha(&trio.content(BIG, BIG_FILE))
    );
    let used = sources(&events, BIG_FILE);
    eprintln!("C's sources: {used:?}");
    let a_served = trio.a.served_to(&trio.c);
    let b_served = trio.b.served_to(&trio.c);
    assert!(
        a_served > 0 && b_served > 0,
        "both peers served C: {a_served} and {b_served}"
    );
    let received: u64 = trio
        .c
        .engine
        .peers()
        .unwrap()
        .paired
        .iter()
        .map(|p| p.bytes_received)
        .sum();
    assert!(
        received + from_hub >= size,
        "{received} + {from_hub} < {size}"
    );
    trio.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_serving_corrupted_bytes_is_dropped_for_the_file_and_the_file_is_right() {
    let trio = Trio::start(PeerDiscovery::Off).await;
    trio.a.pull(BIG).await;
    trio.b.pull(BIG).await;
    trio.c.pair(&trio.a).await;
    trio.c.pair(&trio.b).await;
    // A's copy rots on disk: every chunk it serves is wrong.
    let blob = std::fs::canonicalize(
        trio.a
            .engine
            .cache()
            .repo(&BIG.parse().unwrap())
            .snapshot_dir(
                &trio
                    .a
                    .engine
                    .cache()
                    .repo(&BIG.parse().unwrap())
                    .read_ref("main")
                    .unwrap(),
            )
            .join(BIG_FILE),
    )
    .unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    for chunk in 0..bytes.len() / CHUNK as usize {
        bytes[chunk * CHUNK as usize + 1000] ^= 0xff;
    }
    std::fs::write(&blob, &bytes).unwrap();

    let events = trio.c.pull(BIG).await;
    assert_eq!(
        sha(&trio.c.file(BIG, BIG_FILE)),
        sha(&trio.content(BIG, BIG_FILE))
    );
    let used = sources(&events, BIG_FILE);
    eprintln!("C's sources: {used:?}");
    let a_id = format!("peer:{}", trio.a.engine.peer_identity().unwrap().peer_id());
    let a = used
        .iter()
        .find(|s| s.source == a_id)
        .expect("A was a source");
    assert!(
        a.dropped,
        "A served bad bytes and is dropped for the file: {used:?}"
    );
    trio.stop().await;
}

/// A TCP relay in front of a peer that gives up after `budget` bytes towards the client:
/// every connection is cut and new ones are refused (the peer's link went down).
async fn failing_link(target: SocketAddr, budget: u64) -> (SocketAddr, Arc<AtomicU64>) {
    // A slow link, so the others have work left when it dies.
    relay(target, budget, Duration::from_millis(5)).await
}

/// A TCP relay to `target` that counts the bytes towards the client, waits `pause` after each
/// read of up to 16 KiB, and after `budget` bytes cuts every connection and refuses new ones.
async fn relay(target: SocketAddr, budget: u64, pause: Duration) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let counter = sent.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            if down.load(Ordering::SeqCst) {
                drop(client);
                continue;
            }
            let sent = counter.clone();
            let down = down.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.split();
                let (mut server_read, mut server_write) = server.split();
                let up = tokio::io::copy(&mut client_read, &mut server_write);
                let downstream = async {
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        if down.load(Ordering::SeqCst) {
                            return;
                        }
                        let n = match server_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if sent
                            .fetch_add(n as u64, Ordering::SeqCst)
                            .saturating_add(n as u64)
                            > budget
                        {
                            down.store(true, Ordering::SeqCst);
                            return;
                        }
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(pause).await;
                    }
                };
                tokio::select! {
                    _ = up => {}
                    () = downstream => {}
                }
            });
        }
    });
    (addr, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_whose_link_dies_mid_transfer_loses_its_chunks_to_the_others() {
    let trio = Trio::start(PeerDiscovery::Off).await;
    let size = BIG_SIZE_ON_DISK(&trio);
    trio.a.pull(BIG).await;
    trio.b.pull(BIG).await;
    trio.c.pair(&trio.a).await;
    trio.c.pair(&trio.b).await;
    // C reaches B through a link that dies after 2 MiB.
    let (relay, relayed) =
        failing_link(trio.b.server.as_ref().unwrap().local_addr(), 2 * MIB).await;
    trio.c
        .engine
        .set_peer_address(&trio.b.fingerprint(), &relay.to_string())
        .unwrap();
    let before = trio.cdn_bytes();
    let events = trio.c.pull(BIG).await;
    assert_eq!(
        sha(&trio.c.file(BIG, BIG_FILE)),
        sha(&trio.content(BIG, BIG_FILE))
    );
    let used = sources(&events, BIG_FILE);
    eprintln!(
        "C's sources: {used:?}; relayed {}",
        relayed.load(Ordering::SeqCst)
    );
    let b_id = format!("peer:{}", trio.b.engine.peer_identity().unwrap().peer_id());
    let a_id = format!("peer:{}", trio.a.engine.peer_identity().unwrap().peer_id());
    let b = used
        .iter()
        .find(|s| s.source == b_id)
        .expect("B was a source");
    let a = used
        .iter()
        .find(|s| s.source == a_id)
        .expect("A was a source");
    assert!(b.errors > 0, "B's link died: {used:?}");
    assert!(b.bytes < size / 2, "B stopped serving early: {used:?}");
    assert!(
        a.bytes >= size - b.bytes - (trio.cdn_bytes() - before),
        "A took over: {used:?}"
    );
    trio.stop().await;
}

const TINY: &str = "demo/tiny-gguf";

/// A new commit on `main` of `repo` in the emulator (its README changes); the commit.
fn move_main(emulator: &Emulator, repo: &str, text: &str) -> String {
    emulator
        .catalog()
        .with_repo_mut(RepoKind::Model, repo, |r| {
            r.commit(
                "main",
                "Update the card",
                vec![hub_emulator::FileChange::put("README.md", text.to_string())],
            )
        })
        .unwrap()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited 10 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ref_that_moved_on_a_reaches_b_and_c_and_moves_only_with_the_hub() {
    let mut trio = Trio::start(PeerDiscovery::Off).await;
    let repo: model_cache::repo::RepoId = TINY.parse().unwrap();
    for peer in [&trio.a, &trio.b, &trio.c] {
        peer.pull(TINY).await;
    }
    let old = trio.b.engine.cache().repo(&repo).read_ref("main").unwrap();
    // B and C pair with A, so A knows where they listen.
    trio.b.pair(&trio.a).await;
    trio.c.pair(&trio.a).await;
    // C holds `main` at its commit: a peer's notice leaves it alone.
    trio.c.engine.hold(&repo, "main").unwrap();

    let new = move_main(&trio.emulator, TINY, "# Tiny\n\nA newer card.\n");
    trio.a.pull(TINY).await;
    assert_eq!(
        trio.a.engine.cache().repo(&repo).read_ref("main").unwrap(),
        new
    );
    wait_for("B to learn that main moved", || {
        trio.b.engine.stale_ref(&repo, "main").is_some()
    })
    .await;
    let stale = trio.b.engine.stale_ref(&repo, "main").unwrap();
    assert_eq!(stale.ref_name, "main");
    // Never served as current: B's cache does not answer for `main`, while the old commit, by
    // its hash, still is.
    assert_eq!(trio.b.engine.cached_commit(&repo, "main"), None);
    assert_eq!(trio.b.engine.cached_commit(&repo, &old), Some(old.clone()));
    // The ref itself has not moved: B does not hold the new commit's files.
    assert_eq!(
        trio.b.engine.cache().repo(&repo).read_ref("main").unwrap(),
        old
    );
    // The held ref is untouched.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(trio.c.engine.stale_ref(&repo, "main").is_none());
    assert_eq!(
        trio.c.engine.cached_commit(&repo, "main"),
        Some(old.clone())
    );

    // The Hub confirms: an update is offered, and the mark stays until B downloads it.
    wait_for("the Hub to settle the mark", || {
        trio.b
            .engine
            .updates()
            .unwrap()
            .iter()
            .any(|u| u.repo == TINY && u.latest == new)
    })
    .await;
    assert!(trio.b.engine.stale_ref(&repo, "main").is_some());
    trio.b.pull(TINY).await;
    assert_eq!(
        trio.b.engine.cache().repo(&repo).read_ref("main").unwrap(),
        new
    );
    assert!(trio.b.engine.stale_ref(&repo, "main").is_none());
    assert_eq!(
        trio.b.engine.cached_commit(&repo, "main"),
        Some(new.clone())
    );

    // A peer that was away catches up when it comes back: C follows `main` again, is offline
    // while A moves it once more, then asks its peers.
    trio.c.engine.follow(&repo, "main").unwrap();
    trio.c.server.take().unwrap().shutdown().await;
    let newer = move_main(&trio.emulator, TINY, "# Tiny\n\nThe newest card.\n");
    trio.a.pull(TINY).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        trio.c.engine.stale_ref(&repo, "main").is_none(),
        "C was away"
    );
    trio.c.share(PeerDiscovery::Off).await;
    let marked = trio.c.engine.catch_up_refs().await.unwrap();
    assert_eq!(marked, 1);
    assert_eq!(
        trio.c.engine.stale_ref(&repo, "main").unwrap().commit,
        newer
    );
    assert_eq!(trio.c.engine.cached_commit(&repo, "main"), None);
    trio.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paired_peer_that_is_switched_off_is_left_out_and_the_hub_serves() {
    let mut trio = Trio::start(PeerDiscovery::Off).await;
    trio.a.pull(TINY).await;
    trio.c.pair(&trio.a).await;
    trio.a.server.take().unwrap().shutdown().await;
    let events = trio.c.pull(TINY).await;
    for path in ["config.json", "README.md"] {
        assert_eq!(trio.c.file(TINY, path), trio.content(TINY, path));
    }
    // No file had A as a source: it did not answer, and was left out.
    assert!(
        events
            .iter()
            .all(|event| !matches!(event, DownloadEvent::Sources { .. })),
        "only the Hub served"
    );
    trio.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_exchanges_with_a_wrong_code_withdraw_it() {
    let trio = Trio::start(PeerDiscovery::Off).await;
    let code = trio.a.engine.start_pairing().unwrap();
    let wrong = if code.code.starts_with('A') {
        "BBBB-BBBB"
    } else {
        "AAAA-AAAA"
    };
    for _ in 0..3 {
        let refused = trio
            .b
            .engine
            .pair_with(&trio.a.address(), wrong, trio.b.port())
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("Wrong pairing code"),
            "{refused}"
        );
    }
    // The guesses are used up: even the right code is refused now.
    let refused = trio
        .c
        .engine
        .pair_with(&trio.a.address(), &code.code, trio.c.port())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("refused to pair"), "{refused}");
    assert!(!trio.a.engine.pairing_pending());
    assert!(trio.a.engine.peers().unwrap().paired.is_empty());
    trio.stop().await;
}

/// A safetensors file of `values` BF16 weights drawn around zero (N(0, 0.02) roughly: the sum
/// of four uniforms), as initialised transformer weights are.
fn bf16_safetensors(values: usize) -> Vec<u8> {
    let header = format!(
        r#"{{"__metadata__":{{"format":"pt"}},"w":{{"dtype":"BF16","shape":[{values}],"data_offsets":[0,{}]}}}}"#,
        values * 2
    );
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    for _ in 0..values {
        let sum: f32 = (0..4).map(|_| uniform()).sum::<f32>() - 2.0;
        let value = sum * 0.02 / 0.577;
        file.extend_from_slice(&((value.to_bits() >> 16) as u16).to_le_bytes());
    }
    file
}

/// A TCP relay to `target` that counts the bytes towards the client and paces them to about
/// 16 MB/s (a link slow enough for compression to pay).
async fn counting_link(target: SocketAddr) -> (SocketAddr, Arc<AtomicU64>) {
    relay(target, u64::MAX, Duration::from_millis(1)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bf16_weights_cross_a_slow_link_compressed_when_asked_and_gguf_as_it_is() {
    const WEIGHTS: &str = "model-bf16.safetensors";
    let trio = Trio::start(PeerDiscovery::Off).await;
    let weights = bf16_safetensors(3 * MIB as usize);
    trio.emulator
        .catalog()
        .with_repo_mut(RepoKind::Model, TINY, |r| {
            r.commit(
                "main",
                "Add BF16 weights",
                vec![hub_emulator::FileChange::put(WEIGHTS, weights.clone())],
            )
        })
        .unwrap();
    trio.a.pull(TINY).await;
    let gguf: Vec<String> = trio
        .a
        .engine
        .cache()
        .repo(&TINY.parse().unwrap())
        .snapshot_files(
            &trio
                .a
                .engine
                .cache()
                .repo(&TINY.parse().unwrap())
                .read_ref("main")
                .unwrap(),
        )
        .into_iter()
        .map(|f| f.path)
        .filter(|p| p.ends_with(".gguf"))
        .collect();
    let gguf = gguf.first().expect("a GGUF file in the repo").clone();
    let a = trio.a.server.as_ref().unwrap().local_addr();

    // B (compression off) and C (on) each reach A through a counting 16 MB/s link.
    let mut moved = Vec::new();
    for (peer, compress) in [(&trio.b, false), (&trio.c, true)] {
        peer.pair(&trio.a).await;
        peer.engine.set_peer_compression(compress).unwrap();
        assert_eq!(peer.engine.peers().unwrap().compress, compress);
        let mut wire = Vec::new();
        for path in [WEIGHTS, gguf.as_str()] {
            let (relay, relayed) = counting_link(a).await;
            peer.engine
                .set_peer_address(&trio.a.fingerprint(), &relay.to_string())
                .unwrap();
            let request = PullRequest {
                include: vec![path.to_string()],
                ..PullRequest::repo(TINY.parse().unwrap())
            };
            let plan = peer.engine.plan_pull(&request).await.unwrap();
            let reporter = Arc::new(RecordingReporter::default());
            let before = trio.emulator.log().bytes_served_matching(path);
            peer.engine
                .download(&plan, reporter.clone())
                .wait()
                .await
                .unwrap();
            assert_eq!(sha(&peer.file(TINY, path)), sha(&trio.content(TINY, path)));
            assert!(
                trio.emulator.log().bytes_served_matching(path) - before <= CHUNK,
                "{path} came from A, not the Hub's CDN"
            );
            wire.push(relayed.load(Ordering::SeqCst));
        }
        eprintln!(
            "compression {compress}: {WEIGHTS} {} bytes on the wire, {gguf} {} bytes",
            wire[0], wire[1]
        );
        moved.push(wire);
    }
    let (plain, compressed) = (&moved[0], &moved[1]);
    let (weights_size, gguf_size) = (weights.len() as u64, trio.content(TINY, &gguf).len() as u64);
    eprintln!(
        "{WEIGHTS}: {weights_size} bytes; {} on the wire uncompressed, {} compressed ({:.2}x)",
        plain[0],
        compressed[0],
        plain[0] as f64 / compressed[0] as f64
    );
    assert!(plain[0] >= weights_size, "uncompressed: {}", plain[0]);
    assert!(
        (compressed[0] as f64) < 0.85 * weights_size as f64,
        "BF16 weights crossed compressed: {} of {weights_size}",
        compressed[0]
    );
    // A GGUF file (quantized, incompressible) is sent as it is either way.
    assert!(compressed[1] >= gguf_size && plain[1] >= gguf_size);
    trio.stop().await;
}
