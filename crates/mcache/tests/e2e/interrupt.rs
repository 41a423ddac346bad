//! Ctrl-C during a pull stops cleanly, and the next pull resumes instead of starting over.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{World, files_under, interrupt, sha256_file};

const FILE: &str = "big-model-Q4_K_M.gguf";
const CHUNK: u64 = 1 << 20;
/// Chunks recorded before the interrupt.
const CHUNKS_BEFORE_INTERRUPT: u64 = 5;

#[test]
fn sigint_then_resume_fetches_only_what_is_missing() {
    let world = World::new();
    // Two connections and 1 MiB chunks under a 2 MiB/s cap: chunks finish one after another,
    // about two per second, so the interrupt lands mid-file.
    let mut child = world
        .command()
        .args([
            "--json",
            "--max-rate",
            "2MiB/s",
            "--connections",
            "2",
            "--chunk-size",
            "1MiB",
        ])
        .args(["pull", "demo/big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Progress is read from the client's own events (the emulator's byte count runs ahead of
    // what the client received, by the size of the socket buffers).
    let mut events = BufReader::new(child.stdout.take().unwrap());
    let start = Instant::now();
    let mut chunks = 0;
    let mut line = String::new();
    while chunks < CHUNKS_BEFORE_INTERRUPT {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the download makes progress"
        );
        line.clear();
        assert!(
            events.read_line(&mut line).unwrap() > 0,
            "stdout closed early"
        );
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "chunk_done" && event["path"] == FILE {
            chunks += 1;
        }
    }
    interrupt(child.id());
    let mut rest = String::new();
    events.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("; run the same command to resume"),
        "{stderr}"
    );
    // What was kept, in the CLI's units: "interrupted: kept 1.2 MiB of 64.0 MiB; …".
    let kept = stderr
        .split("interrupted: kept ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no `kept` figure: {stderr}"));
    let (done, total) = kept.split_once(" of ").unwrap();
    assert!(done.ends_with("iB") && total.ends_with("iB"), "{kept}");
    assert_ne!(done, "0 B", "{kept}");
    assert!(
        !rest.contains("\"snapshot_path\""),
        "no result for an unfinished pull: {rest}"
    );
    let snapshots = world.hub_cache().join("models--demo--big/snapshots");
    let linked = std::fs::read_dir(&snapshots)
        .map(|dirs| dirs.flatten().any(|dir| dir.path().join(FILE).exists()))
        .unwrap_or(false);
    assert!(!linked, "an unfinished file is never linked");
    let partial = |world: &World| {
        files_under(&world.hub_cache())
            .into_iter()
            .filter(|path| path.to_string_lossy().ends_with(".mcpart"))
            .count()
    };
    assert!(
        partial(&world) >= 1,
        "the partial blob is kept for the resume"
    );

    // The same command again (without the cap, for speed).
    let before = world.cdn_bytes();
    let run = world.run(&[
        "--json",
        "--connections",
        "2",
        "--chunk-size",
        "1MiB",
        "pull",
        "demo/big",
    ]);
    run.ok();
    let lines = run.json_lines();
    let started = lines
        .iter()
        .find(|e| e["event"] == "file_started" && e["path"] == FILE)
        .expect("the big file is started again");
    let resumed = started["resumed_bytes"].as_u64().unwrap();
    let size = started["size"].as_u64().unwrap();
    assert!(
        resumed >= CHUNKS_BEFORE_INTERRUPT * CHUNK,
        "resumed at {resumed}: every recorded chunk is kept"
    );
    let refetched = world.cdn_bytes() - before;
    assert!(
        refetched <= size - resumed,
        "fetched {refetched} bytes of {size} after resuming at {resumed}"
    );
    let snapshot =
        std::path::PathBuf::from(lines.last().unwrap()["snapshot_path"].as_str().unwrap());
    assert_eq!(
        sha256_file(&snapshot.join(FILE)),
        world.sha256("demo/big", FILE)
    );
}
