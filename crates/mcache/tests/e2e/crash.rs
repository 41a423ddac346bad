//! Crash consistency: a pull of several files killed with SIGKILL at seeded points spread over
//! its life, resumed after each kill. After every kill the cache is consistent: `mcache verify`
//! passes, `huggingface_hub`'s `scan_cache_dir` reports no warning, no snapshot link dangles;
//! the last resume finishes with every file intact.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{World, sha256_file};

const REPO: &str = "demo/tiny-gguf";
const KILLS: usize = 20;
/// The seed of the kill points; `MCACHE_CRASH_SEED` picks another.
const DEFAULT_SEED: u64 = 0x6d63_6163_6865;

fn pull(world: &World) -> Command {
    let mut command = world.command();
    command
        .args(["--json", "--max-rate", "6MiB/s", "--connections", "4"])
        .args(["--chunk-size", "512KiB", "pull", REPO, "--include", "*"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// xorshift64*: the kill points, reproducibly.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Every symlink under the repos' `snapshots/` resolves.
fn dangling_links(cache: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![cache.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink()
                && path.components().any(|c| c.as_os_str() == "snapshots")
                && std::fs::metadata(&path).is_err()
            {
                out.push(path);
            }
        }
    }
    out
}

/// `scan_cache_dir` of the real `huggingface_hub` 2.4: its warnings.
fn python_warnings(world: &World) -> Vec<String> {
    if !world.hub_cache().exists() {
        return Vec::new();
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let python = hub_emulator::python::python_with_huggingface_hub(&target)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(python)
        .env_remove("HF_TOKEN")
        .env("HF_HOME", world.hf_home())
        .env("HF_HUB_CACHE", world.hub_cache())
        .env("HF_HUB_OFFLINE", "1")
        .arg("-c")
        .arg(
            "import json; from huggingface_hub import scan_cache_dir; \
             print(json.dumps([str(w) for w in scan_cache_dir().warnings]))",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_consistent(world: &World, after: &str) {
    let verify = world.run(&["verify"]);
    assert_eq!(
        verify.code, 0,
        "mcache verify after {after}:\n{}\n{}",
        verify.stdout, verify.stderr
    );
    let dangling = dangling_links(&world.hub_cache());
    assert!(
        dangling.is_empty(),
        "dangling links after {after}: {dangling:?}"
    );
    let warnings = python_warnings(world);
    assert!(
        warnings.is_empty(),
        "scan_cache_dir after {after}: {warnings:?}"
    );
}

fn wait_or_kill(mut child: Child, after: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

#[test]
fn a_pull_killed_at_twenty_points_resumes_to_an_intact_consistent_cache() {
    // How long the same pull takes uninterrupted, and what it fetches, on a world of its own.
    let baseline = World::new();
    let start = Instant::now();
    let out = pull(&baseline).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let life = start.elapsed();
    let fetched_once = baseline.cdn_bytes();

    let seed = std::env::var("MCACHE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let mut state = seed.max(1);
    let mut points: Vec<Duration> = (0..KILLS)
        .map(|_| life.mul_f64((next(&mut state) % 10_000) as f64 / 10_000.0))
        .collect();
    points.sort();

    let world = World::new();
    let mut killed = 0;
    let mut previous = Duration::ZERO;
    for (i, point) in points.iter().enumerate() {
        // Each run lives from the previous kill point to this one (its own start-up on top).
        let child = pull(&world).spawn().unwrap();
        if wait_or_kill(child, *point - previous) {
            killed += 1;
        }
        previous = *point;
        check_consistent(&world, &format!("kill {} at {:?}", i + 1, point));
    }
    let out = pull(&world).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_consistent(&world, "the last resume");

    let listing = world.run(&["--json", "ls", REPO]);
    let snapshot = world.hub_cache().join("models--demo--tiny-gguf/snapshots");
    let mut checked = 0;
    for commit in std::fs::read_dir(&snapshot).unwrap().flatten() {
        for file in std::fs::read_dir(commit.path()).unwrap().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.ends_with(".gguf") {
                assert_eq!(
                    sha256_file(&file.path()),
                    world.sha256(REPO, &name),
                    "{name}"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 6,
        "every GGUF is there: {checked}\n{}",
        listing.stdout
    );
    let refetched = world.cdn_bytes().saturating_sub(fetched_once);
    println!(
        "crash consistency: seed {seed}, life {life:?}, {killed} of {KILLS} runs killed at {:?}; \
         {refetched} bytes fetched again in all (of {fetched_once})",
        points
            .iter()
            .map(|p| format!("{}ms", p.as_millis()))
            .collect::<Vec<_>>()
    );
    assert!(
        killed >= KILLS / 2,
        "most runs were killed mid-pull: {killed}"
    );
}
