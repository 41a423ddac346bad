//! Ctrl-C during a pull stops cleanly, and the next pull resumes instead of starting over.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{BIG_SIZE, World, interrupt, sha256_file};

const FILE: &str = "big-model-Q4_K_M.gguf";

#[test]
fn sigint_then_resume_fetches_only_what_is_missing() {
    let world = World::new();
    let mut child = world
        .command()
        .args([
            "--max-rate",
            "2MiB/s",
            "--chunk-size",
            "1MiB",
            "pull",
            "demo/big",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a good part of the file went over the wire (the emulator counts bytes sent).
    let start = Instant::now();
    while world.cdn_bytes() < BIG_SIZE / 4 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the download makes progress"
        );
        assert!(child.try_wait().unwrap().is_none(), "still running");
        std::thread::sleep(Duration::from_millis(50));
    }
    interrupt(child.id());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted; run the same command to resume"),
        "{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "no snapshot path for an unfinished pull"
    );
    let snapshot_file = world
        .hub_cache()
        .join("models--demo--big/snapshots")
        .read_dir()
        .ok()
        .and_then(|mut dirs| dirs.next())
        .map(|dir| dir.unwrap().path().join(FILE));
    assert!(
        snapshot_file.is_none_or(|file| !file.exists()),
        "an unfinished file is never linked"
    );

    let before = world.cdn_bytes();
    let run = world.run(&["pull", "demo/big"]);
    let snapshot = std::path::PathBuf::from(run.ok().trim());
    let resumed = world.cdn_bytes() - before;
    let size = std::fs::metadata(snapshot.join(FILE)).unwrap().len();
    assert!(
        resumed < size - BIG_SIZE / 8,
        "the second pull fetched {resumed} of {size} bytes: it resumed"
    );
    assert_eq!(
        sha256_file(&snapshot.join(FILE)),
        world.sha256("demo/big", FILE)
    );
}
