//! `--json` output: one JSON value per line on stdout, shapes pinned by insta snapshots with the
//! volatile fields (paths, times, speeds, this machine's memory) redacted.

use crate::common::World;

const REPO: &str = "demo/tiny-gguf";

#[test]
fn pull_streams_events_then_the_result() {
    let world = World::new();
    let run = world.run(&["--json", "pull", REPO, "--quant", "Q4_K_M"]);
    run.ok();
    let lines = run.json_lines();
    let (result, events) = lines.split_last().unwrap();
    assert!(
        result.get("event").is_none(),
        "the last line is the result: {result}"
    );
    assert!(
        events.iter().all(|e| e["event"].is_string()),
        "every other line is an event"
    );
    let kinds: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for kind in ["file_started", "verified", "linked", "finished"] {
        assert!(kinds.contains(kind), "`{kind}` among {kinds:?}");
    }
    assert!(
        run.stderr.is_empty() || !run.stderr.contains('%'),
        "no bars with --json"
    );
    insta::assert_json_snapshot!("pull_result", result, {
        ".snapshot_path" => "[snapshot_path]",
        ".files[].snapshot_path" => "[snapshot_path]",
        ".job_id" => "[job_id]",
        ".seconds" => "[seconds]",
    });

    // A second pull is all cache hits: every file is `skipped`, nothing downloaded.
    let run = world.run(&["--json", "pull", REPO, "--quant", "Q4_K_M"]);
    let lines = run.json_lines();
    let (result, events) = lines.split_last().unwrap();
    assert_eq!(result["bytes_downloaded"], 0);
    assert!(
        events.iter().all(|e| e["event"] != "bytes"),
        "no bytes events"
    );
    assert!(events.iter().any(|e| e["event"] == "skipped"));
}

#[test]
fn variants_ls_path_and_gc_shapes() {
    let world = World::new();
    let report = world.run(&["--json", "variants", REPO]).json();
    insta::assert_json_snapshot!("variants", report, {
        ".machine" => "[machine]",
        ".variants[].fit" => "[fit: depends on this machine]",
    });

    world.run(&["pull", REPO, "--quant", "Q4_K_M"]).ok();
    let ls = world.run(&["--json", "ls"]).json();
    insta::assert_json_snapshot!("ls", ls, {
        "[].path" => "[path]",
        "[].last_used" => "[last_used]",
        "[].revisions[].snapshot_path" => "[snapshot_path]",
    });
    let path = world
        .run(&[
            "--json",
            "--offline",
            "path",
            REPO,
            "tiny-model-Q4_K_M.gguf",
        ])
        .json();
    insta::assert_json_snapshot!("path", path, { ".path" => "[path]" });
    let gc = world
        .run(&["--json", "gc", "--max-size", "0", "--dry-run"])
        .json();
    insta::assert_json_snapshot!("gc_dry_run", gc, {
        ".**.path" => "[path]",
        ".**.last_used" => "[last_used]",
    });
}
