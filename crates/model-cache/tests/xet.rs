//! Delta downloads of Xet-stored files against the emulator's real CAS (`xet-client`'s local
//! server): an update that changed 512 KiB of a 64 MiB file, a fine-tune sharing most chunks
//! with its base, a kill mid-rebuild, and the fallbacks to HTTP.

mod download_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use download_support::*;
use hub_emulator::{
    Emulator, EmulatorConfig, Fault, FaultRule, FileChange, Listener, Repo, RepoKind,
};
use model_cache::download::{DownloadEvent, DownloadRequest, FileSource};
use model_cache::index::Index;
use model_cache::index::transfers;
use model_cache::{RepoId, Settings};

const MIB: u64 = 1 << 20;
const SIZE: usize = 64 << 20;
const FILE: &str = "model.safetensors";

/// Bytes that do not compress (each Xet chunk is stored raw, so wire bytes are chunk bytes).
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

/// `base` with `len` bytes replaced at `at`.
fn edited(base: &[u8], at: usize, len: usize, seed: u64) -> Vec<u8> {
    let mut v = base.to_vec();
    v[at..at + len].copy_from_slice(&noise(seed, len));
    v
}

fn xet_repo(id: &str, body: Vec<u8>) -> Repo {
    let mut repo = Repo::new(RepoKind::Model, id);
    repo.xet = true;
    repo.commit(
        "main",
        "initial",
        vec![
            FileChange::put(FILE, body),
            FileChange::put("config.json", "{\"model_type\":\"llama\"}"),
        ],
    );
    repo
}

async fn start(repos: Vec<Repo>) -> Emulator {
    let config = EmulatorConfig {
        repos,
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::start(config).await.expect("the emulator starts");
    assert!(emulator.xet().is_some(), "the emulator runs a CAS");
    emulator
}

/// Settings for these tests: real chunk sizes (Xet chunks are about 64 KiB).
fn settings(dir: &Path, endpoint: String) -> Settings {
    let mut settings = test_settings(dir, endpoint);
    settings.limits.chunk_size = 4 * MIB;
    settings
}

/// Xorb bytes the CAS served (fetch requests only, not reconstructions).
fn xorb_bytes(emulator: &Emulator) -> u64 {
    emulator
        .requests()
        .iter()
        .filter(|r| r.listener == Listener::Cas && r.path.starts_with("/v1/fetch_term"))
        .map(|r| r.bytes_sent)
        .sum()
}

fn cdn_bytes(emulator: &Emulator) -> u64 {
    emulator.log().bytes_served_by(Listener::Cdn)
}

fn req(repo: &str) -> DownloadRequest {
    DownloadRequest {
        repo: RepoId::model(repo).unwrap(),
        revision: "main".into(),
        files: vec![FILE.into()],
    }
}

/// Moves `main` of `repo` to a commit giving `FILE` these bytes (stored in the CAS at once).
fn update(emulator: &Emulator, repo: &str, body: Vec<u8>) {
    emulator
        .move_branch(
            RepoKind::Model,
            repo,
            "main",
            "update",
            vec![FileChange::put(FILE, body)],
        )
        .unwrap();
}

fn reused_of(events: &[DownloadEvent]) -> Option<(u64, u64)> {
    events.iter().find_map(|e| match e {
        DownloadEvent::Reused {
            bytes_reused,
            bytes_fetched,
            ..
        } => Some((*bytes_reused, *bytes_fetched)),
        _ => None,
    })
}

async fn edit_of_a_64_mib_file(v1_only: bool) {
    let v1 = noise(1, SIZE);
    let v2 = edited(&v1, 32 << 20, 512 << 10, 2);
    let emulator = start(vec![xet_repo("org/xet-model", v1.clone())]).await;
    if v1_only {
        emulator.xet().unwrap().disable_v2(404);
    }
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), emulator.url());
    let (downloader, _) = downloader(&settings);

    // v1: every chunk comes from the CAS, none from the CDN.
    let reporter = recorder();
    let first = downloader
        .download(req("org/xet-model"), reporter.clone())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&first.files[0].snapshot_path).unwrap(), v1);
    assert_eq!(cdn_bytes(&emulator), 0, "a Xet file does not touch the CDN");
    let v1_xorbs = xorb_bytes(&emulator);
    assert!(
        v1_xorbs >= SIZE as u64,
        "v1 came from the CAS ({v1_xorbs} bytes)"
    );
    assert_eq!(reused_of(&reporter.events()).map(|r| r.0), Some(0));

    // v2 upstream: 512 KiB replaced in the middle.
    update(&emulator, "org/xet-model", v2.clone());
    let reporter = recorder();
    let second = downloader
        .download(req("org/xet-model"), reporter.clone())
        .await
        .unwrap();
    let moved = xorb_bytes(&emulator) - v1_xorbs;
    let (reused, fetched) = reused_of(&reporter.events()).expect("a reused event");
    println!(
        "v1→v2 ({}): {moved} xorb bytes moved, {reused} bytes reused, {fetched} fetched",
        if v1_only { "V1 reconstructions" } else { "V2" }
    );
    assert_eq!(std::fs::read(&second.files[0].snapshot_path).unwrap(), v2);
    assert_eq!(second.files[0].source, FileSource::Downloaded);
    assert!(
        reporter.events().iter().any(
            |e| matches!(e, DownloadEvent::Verified { algorithm, .. } if algorithm == "sha256")
        )
    );
    assert!(moved <= 2 * MIB, "{moved} bytes moved for a 512 KiB edit");
    assert_eq!(fetched, moved);
    assert!(
        reused >= SIZE as u64 - 2 * MIB,
        "only {reused} bytes reused"
    );
    assert_eq!(second.files[0].bytes_reused, reused);
    assert!(second.bytes_saved >= reused);
    assert_eq!(cdn_bytes(&emulator), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_512_kib_edit_of_a_64_mib_file_moves_at_most_2_mib() {
    edit_of_a_64_mib_file(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_512_kib_edit_moves_at_most_2_mib_with_v1_reconstructions() {
    edit_of_a_64_mib_file(true).await;
}

/// The share of `other`'s bytes whose terms read xorbs `base`'s terms read too.
async fn shared_fraction(emulator: &Emulator, base: &str, other: &str) -> f64 {
    let xet = emulator.xet().unwrap();
    let terms = |json: serde_json::Value| -> Vec<(String, u64)> {
        json["terms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["hash"].as_str().unwrap().to_string(),
                    t["unpacked_length"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let of = |repo: &str| xet.xet_hash(RepoKind::Model, repo, "main", FILE).unwrap();
    let base = terms(
        xet.reconstruction_v2(&of(base), None)
            .await
            .unwrap()
            .unwrap(),
    );
    let other = terms(
        xet.reconstruction_v2(&of(other), None)
            .await
            .unwrap()
            .unwrap(),
    );
    let total: u64 = other.iter().map(|t| t.1).sum();
    let shared: u64 = other
        .iter()
        .filter(|t| base.iter().any(|b| b.0 == t.0))
        .map(|t| t.1)
        .sum();
    println!("{} base terms, {} fine-tune terms", base.len(), other.len());
    shared as f64 / total as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fine_tune_sharing_90_percent_of_chunks_fetches_at_most_15_percent() {
    let base = noise(3, SIZE);
    // 8 regions of 0.8 MiB replaced: 10% of the file.
    let mut tuned = base.clone();
    for i in 0..8 {
        let at = (4 << 20) + i * (7 << 20);
        tuned = edited(&tuned, at, 819 << 10, 100 + i as u64);
    }
    let emulator = start(vec![
        xet_repo("org/base", base.clone()),
        xet_repo("org/tuned", tuned.clone()),
    ])
    .await;
    // The CAS itself must share the chunks: most of the fine-tune's term bytes lie in xorbs the
    // base reads too.
    let shared = shared_fraction(&emulator, "org/base", "org/tuned").await;
    println!(
        "the CAS stores {:.1}% of the fine-tune in the base's xorbs",
        shared * 100.0
    );
    assert!(
        shared >= 0.85,
        "the emulator's CAS did not dedup the fine-tune"
    );
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), emulator.url());
    let (downloader, _) = downloader(&settings);
    downloader
        .download(req("org/base"), recorder())
        .await
        .unwrap();
    let before = xorb_bytes(&emulator);
    let reporter = recorder();
    let summary = downloader
        .download(req("org/tuned"), reporter.clone())
        .await
        .unwrap();
    let moved = xorb_bytes(&emulator) - before;
    println!(
        "fine-tune: {moved} xorb bytes moved for a {SIZE}-byte file ({:.1}%)",
        moved as f64 * 100.0 / SIZE as f64
    );
    assert_eq!(
        std::fs::read(&summary.files[0].snapshot_path).unwrap(),
        tuned
    );
    assert!(
        moved as f64 <= 0.15 * SIZE as f64,
        "{moved} bytes fetched, more than 15% of the file"
    );
    let (reused, _) = reused_of(&reporter.events()).unwrap();
    assert!(reused as f64 >= 0.85 * SIZE as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_errors_fall_back_to_the_cdn() {
    let body = noise(5, 8 << 20);
    let emulator = start(vec![xet_repo("org/xet-model", body.clone())]).await;
    emulator
        .faults()
        .set(FaultRule::global(Fault::ServerError(500)).on("/v2/reconstructions/*"));
    emulator
        .faults()
        .set(FaultRule::global(Fault::ServerError(500)).on("/v1/reconstructions/*"));
    let dir = tempfile::tempdir().unwrap();
    let (downloader, _) = downloader(&settings(dir.path(), emulator.url()));
    let reporter = recorder();
    let summary = downloader
        .download(req("org/xet-model"), reporter.clone())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&summary.files[0].snapshot_path).unwrap(),
        body
    );
    assert_eq!(xorb_bytes(&emulator), 0);
    assert_eq!(
        cdn_bytes(&emulator),
        body.len() as u64,
        "the CDN served the file"
    );
    assert!(reused_of(&reporter.events()).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cas_failure_midway_keeps_the_rebuilt_chunks_and_http_fetches_the_rest() {
    let body = noise(6, 16 << 20);
    let emulator = start(vec![xet_repo("org/xet-model", body.clone())]).await;
    // The first two xorb fetches pass, then the CAS fails for good.
    emulator.faults().set(
        FaultRule::global(Fault::ServerError(503))
            .on("/v1/fetch_term*")
            .after(2),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path(), emulator.url());
    settings.limits.connections = 1;
    settings.limits.connections_per_host = 1;
    let (downloader, _) = downloader(&settings);
    let summary = downloader
        .download(req("org/xet-model"), recorder())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&summary.files[0].snapshot_path).unwrap(),
        body
    );
    let (cas, cdn) = (xorb_bytes(&emulator), cdn_bytes(&emulator));
    println!("{cas} bytes from the CAS, {cdn} from the CDN");
    assert!(cas > 0 && cdn > 0, "both paths served bytes");
    assert!(
        cas + cdn <= body.len() as u64 + 2 * 4 * MIB,
        "the rebuilt chunks were not fetched again ({cas} + {cdn})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_xorb_bytes_are_not_kept() {
    let body = noise(7, 8 << 20);
    let emulator = start(vec![xet_repo("org/xet-model", body.clone())]).await;
    emulator.faults().set(
        FaultRule::global(Fault::Corrupt {
            start: 0,
            end: u64::MAX,
        })
        .on("/v1/fetch_term*"),
    );
    let dir = tempfile::tempdir().unwrap();
    let (downloader, _) = downloader(&settings(dir.path(), emulator.url()));
    let summary = downloader
        .download(req("org/xet-model"), recorder())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&summary.files[0].snapshot_path).unwrap(),
        body,
        "the file is whole and right despite the corrupt CAS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_cas_token_is_renewed() {
    let v1 = noise(8, 16 << 20);
    let emulator = start(vec![xet_repo("org/xet-model", v1.clone())]).await;
    let xet = emulator.xet().unwrap();
    // Tokens that expire at once: every CAS request needs a fresh one.
    xet.set_token_ttl(Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    let (downloader, _) = downloader(&settings(dir.path(), emulator.url()));
    let summary = downloader
        .download(req("org/xet-model"), recorder())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&summary.files[0].snapshot_path).unwrap(), v1);
    assert_eq!(cdn_bytes(&emulator), 0, "the CAS served it all");
    let tokens = emulator
        .requests()
        .iter()
        .filter(|r| r.path.contains("/xet-read-token/"))
        .count();
    assert!(tokens >= 2, "tokens were renewed ({tokens} asked)");
    let refused = emulator
        .requests()
        .iter()
        .filter(|r| r.listener == Listener::Cas && r.status == 401)
        .count();
    println!("{tokens} tokens asked, {refused} CAS requests refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_xorb_url_is_renewed_with_the_reconstruction() {
    let body = noise(16, 8 << 20);
    let emulator = start(vec![xet_repo("org/xet-model", body.clone())]).await;
    let xet = emulator.xet().unwrap();
    // Fetch URLs live 300 ms; the first fetch waits a second before it is answered.
    xet.set_fetch_term_url_expiration(Duration::from_millis(300));
    emulator.faults().set(
        FaultRule::global(Fault::Latency(Duration::from_secs(1)))
            .on("/v1/fetch_term*")
            .times(1),
    );
    let dir = tempfile::tempdir().unwrap();
    let (downloader, _) = downloader(&settings(dir.path(), emulator.url()));
    let summary = downloader
        .download(req("org/xet-model"), recorder())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&summary.files[0].snapshot_path).unwrap(),
        body
    );
    let requests = emulator.requests();
    let refused = requests
        .iter()
        .filter(|r| r.listener == Listener::Cas && r.status == 403)
        .count();
    assert_eq!(refused, 1, "the late fetch was refused");
    assert_eq!(
        cdn_bytes(&emulator),
        0,
        "the renewed URL served it, not the CDN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_blob_changed_by_hand_is_not_used() {
    let v1 = noise(9, 16 << 20);
    let v2 = edited(&v1, 8 << 20, 256 << 10, 10);
    let emulator = start(vec![xet_repo("org/xet-model", v1.clone())]).await;
    let dir = tempfile::tempdir().unwrap();
    let (downloader, _) = downloader(&settings(dir.path(), emulator.url()));
    let first = downloader
        .download(req("org/xet-model"), recorder())
        .await
        .unwrap();
    // Someone rewrites the cached v1 blob in place (same size, other bytes).
    let blob = std::fs::canonicalize(&first.files[0].snapshot_path).unwrap();
    std::fs::write(&blob, noise(11, v1.len())).unwrap();
    update(&emulator, "org/xet-model", v2.clone());
    let before = xorb_bytes(&emulator);
    let reporter = recorder();
    let second = downloader
        .download(req("org/xet-model"), reporter.clone())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&second.files[0].snapshot_path).unwrap(), v2);
    assert_eq!(reused_of(&reporter.events()).map(|r| r.0), Some(0));
    assert!(xorb_bytes(&emulator) - before >= v2.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xet_off_downloads_over_http() {
    let body = noise(12, 4 << 20);
    let emulator = start(vec![xet_repo("org/xet-model", body.clone())]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path(), emulator.url());
    settings.xet.enabled = false;
    let (downloader, _) = downloader(&settings);
    let summary = downloader
        .download(req("org/xet-model"), recorder())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&summary.files[0].snapshot_path).unwrap(),
        body
    );
    assert_eq!(xorb_bytes(&emulator), 0);
    assert_eq!(cdn_bytes(&emulator), body.len() as u64);
}

// --- A rebuild killed with SIGKILL -------------------------------------------------------------

fn spawn_child(emulator: &Emulator, dir: &Path, repo: &str, connections: usize) -> Child {
    Command::new(child_binary())
        .args([
            emulator.url(),
            dir.join("hub").display().to_string(),
            dir.join("data").display().to_string(),
            repo.into(),
            FILE.into(),
            (2 * MIB).to_string(),
            "0".into(),
            connections.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child starts")
}

fn recorded_chunks(index: &Index) -> usize {
    index
        .with_conn("read chunks", |c| {
            let mut all = 0;
            for job in transfers::list(c)? {
                all += transfers::done_chunks(c, job.id)?.len();
            }
            Ok(all)
        })
        .unwrap_or_default()
}

/// The xorb byte ranges fetched so far (the `Range` of each successful fetch; the URLs are
/// signed anew each time, so the range is what says the same bytes came twice).
fn fetches(emulator: &Emulator) -> Vec<String> {
    emulator
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Cas && r.path.starts_with("/v1/fetch_term"))
        .filter(|r| r.status == 206)
        .map(|r| r.range.unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_killed_with_sigkill_resumes_without_fetching_ranges_again() {
    let body = noise(13, SIZE);
    let emulator = start(vec![xet_repo("org/xet-model", body.clone())]).await;
    // Slow xorb ranges down so the kill lands mid-rebuild.
    emulator
        .faults()
        .set(FaultRule::global(Fault::ConnectionBandwidth(8_000_000)).on("/v1/fetch_term*"));
    let dir = tempfile::tempdir().unwrap();
    let connections = 4;
    let mut child = spawn_child(&emulator, dir.path(), "org/xet-model", connections);
    let data_dir = dir.path().join("data");
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            panic!(
                "the child ended before it was killed: {status}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if data_dir.join("index.sqlite3").exists()
            && let Ok(index) = Index::open(&data_dir)
            && recorded_chunks(&index) >= 4
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before_kill = fetches(&emulator);
    let served_at_kill = xorb_bytes(&emulator);
    let recorded = recorded_chunks(&Index::open(&data_dir).unwrap());
    assert!(
        (recorded as u64) < SIZE as u64 / (2 * MIB),
        "the kill came before the end"
    );

    emulator.faults().clear();
    let mut settings = settings(dir.path(), emulator.url());
    settings.limits.chunk_size = 2 * MIB;
    let (downloader, index) = downloader(&settings);
    let reporter = recorder();
    let summary = downloader
        .download(req("org/xet-model"), reporter.clone())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&summary.files[0].snapshot_path).unwrap(),
        body
    );
    let after: Vec<_> = fetches(&emulator)[before_kill.len()..].to_vec();
    let again = after.iter().filter(|f| before_kill.contains(f)).count();
    let total = xorb_bytes(&emulator);
    println!(
        "killed after {recorded} recorded chunks: {served_at_kill} xorb bytes before, {total} in all, {again} ranges fetched again"
    );
    // Only the chunks in flight at the kill are fetched again: one per connection at most.
    assert!(
        again <= connections,
        "{again} xorb ranges fetched again after the resume"
    );
    assert!(
        total <= SIZE as u64 + connections as u64 * (2 * MIB + 256 * 1024) + 16 * 256 * 1024,
        "{total} xorb bytes for a {SIZE}-byte file"
    );
    assert!(reporter.events().iter().any(|e| matches!(
        e,
        DownloadEvent::FileStarted { resumed_bytes, .. } if *resumed_bytes >= 4 * 2 * MIB
    )));
    // The resumed rebuild still learned every chunk: the next update can copy them all.
    let record = index
        .xet_blob(&summary.files[0].etag)
        .unwrap()
        .expect("the blob's reconstruction is recorded");
    assert!(record.terms.iter().all(|t| t.chunk_lens.is_some()));
}

// --- What huggingface_hub sees -----------------------------------------------------------------

/// A Python interpreter (`target/py-venv` or the legacy one) with a clean environment on
/// `cache`, offline.
fn python_offline(interpreter: PathBuf, cache: &Path) -> Command {
    let mut cmd = Command::new(interpreter);
    for name in [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_ENDPOINT",
        "HUGGINGFACE_HUB_CACHE",
    ] {
        cmd.env_remove(name);
    }
    cmd.env("HF_HOME", cache.parent().unwrap().join("hf-home"))
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rebuilt_from_chunks_is_found_by_huggingface_hub_offline() {
    let v1 = noise(14, 8 << 20);
    let v2 = edited(&v1, 3 << 20, 300 << 10, 15);
    let emulator = start(vec![xet_repo("org/xet-model", v1)]).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), emulator.url());
    let (downloader, _) = downloader(&settings);
    downloader
        .download(req("org/xet-model"), recorder())
        .await
        .unwrap();
    update(&emulator, "org/xet-model", v2.clone());
    let reporter = recorder();
    let summary = downloader
        .download(req("org/xet-model"), reporter.clone())
        .await
        .unwrap();
    assert!(
        reused_of(&reporter.events()).unwrap().0 > 0,
        "v2 was rebuilt from v1's chunks"
    );

    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let interpreters = [
        hub_emulator::python::python_with_huggingface_hub(&target),
        hub_emulator::python::python_with_legacy_huggingface_hub(&target),
    ];
    let script = r#"
import hashlib, json
from huggingface_hub import hf_hub_download, scan_cache_dir
path = hf_hub_download("org/xet-model", "model.safetensors")
info = scan_cache_dir()
print(json.dumps({"sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
                  "warnings": [str(w) for w in info.warnings],
                  "revisions": sum(len(r.revisions) for r in info.repos)}))
"#;
    for interpreter in interpreters {
        let interpreter = interpreter.unwrap_or_else(|e| panic!("{e}"));
        let out = python_offline(interpreter.clone(), &settings.hub_cache)
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout}\n{}",
            interpreter.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let value: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
        assert_eq!(
            value["sha256"],
            summary.files[0].etag,
            "{}",
            interpreter.display()
        );
        // 0.36 predates `CACHEDIR.TAG` and reports it as "not a directory"; nothing else may
        // be reported.
        let warnings: Vec<&str> = value["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(serde_json::Value::as_str)
            .filter(|w| !w.ends_with("/CACHEDIR.TAG"))
            .collect();
        assert!(warnings.is_empty(), "{value}");
        assert_eq!(value["revisions"], 2, "v1 and v2 are both cached");
    }
}
