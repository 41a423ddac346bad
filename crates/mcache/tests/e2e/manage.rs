//! `config`, `stats` and `doctor`: persisted settings, counters, and the index checked against
//! the disk.

use std::path::PathBuf;

use crate::common::World;

#[test]
fn config_set_persists_with_units_and_flags_still_win() {
    let world = World::new();
    let run = world.run(&["config", "set", "max_rate_bps", "20MB/s"]);
    run.ok();
    assert_eq!(
        world.run(&["config", "get", "max_rate_bps"]).ok().trim(),
        "19.1 MiB/s",
        "shown with units"
    );
    world
        .run(&["config", "set", "size_budget_bytes", "1.5GiB"])
        .ok();
    world
        .run(&["config", "set", "keep_partial_files_for", "3d"])
        .ok();
    let all = world.run(&["--json", "config", "get"]).json();
    assert_eq!(all["size_budget_bytes"], 1_610_612_736u64);
    assert_eq!(all["max_rate_bps"], 20_000_000u64, "siblings are kept");
    assert_eq!(all["keep_partial_files_for"], "3d", "spans keep their unit");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.data_dir().join("preferences.json")).unwrap())
            .unwrap();
    assert_eq!(
        saved["max_rate_bps"], 20_000_000u64,
        "saved in the data folder"
    );
    assert_eq!(saved["cache"]["stale_incomplete_after"]["secs"], 3 * 86_400);

    world
        .run(&["config", "set", "size_budget_bytes", "none"])
        .ok();
    assert_eq!(
        world
            .run(&["config", "get", "size_budget_bytes"])
            .ok()
            .trim(),
        "none"
    );

    // Every bad value is refused by the engine with a usage error naming the field.
    let run = world.run(&["config", "set", "connections", "0"]);
    run.code(2);
    assert!(
        run.stderr.contains("`connections` must be 1 to 256"),
        "{}",
        run.stderr
    );
    let run = world.run(&["config", "set", "cache_dir", "relative/folder"]);
    run.code(2);
    assert!(run.stderr.contains("absolute"), "{}", run.stderr);

    let run = world.run(&["config", "set", "colour", "blue"]);
    run.code(2);
    assert!(
        run.stderr.contains("Unknown setting `colour`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: settings: "), "{}", run.stderr);
    world
        .run(&["config", "set", "max_rate_bps", "fast"])
        .code(2);

    // A saved endpoint applies to later commands; `--endpoint` overrides it.
    world
        .run(&["config", "set", "endpoint", "http://127.0.0.1:9"])
        .ok();
    let run = world.run(&[
        "--endpoint",
        &world.emulator.url(),
        "variants",
        "demo/tiny-gguf",
    ]);
    run.ok();
    world.run(&["config", "set", "endpoint", "none"]).ok();
}

#[test]
fn stats_count_downloads_and_cache_hits() {
    let world = World::new();
    world
        .run(&["pull", "demo/tiny-gguf", "--quant", "Q2_K"])
        .ok();
    world
        .run(&["pull", "demo/tiny-gguf", "--quant", "Q2_K"])
        .ok();
    let stats = world.run(&["--json", "stats"]).json();
    let counters = &stats["counters"];
    assert!(
        counters["bytes_downloaded"].as_u64().unwrap() > 1_000_000,
        "{stats}"
    );
    assert!(
        counters["bytes_from_cache"].as_u64().unwrap() > 1_000_000,
        "{stats}"
    );
    assert!(stats["health"]["storage"]["used"].as_u64().unwrap() > 1_000_000);
    let text = world.run(&["stats"]);
    assert!(text.ok().contains("served from cache"), "{}", text.stdout);
}

#[test]
fn doctor_finds_and_repairs_what_broke_on_disk() {
    let world = World::new();
    let snapshot = PathBuf::from(
        world
            .run(&["pull", "demo/tiny-gguf", "--quant", "Q2_K"])
            .ok()
            .trim(),
    );
    world.run(&["doctor", "--check"]).ok();
    // Another tool deletes a blob behind our back: the snapshot link now dangles.
    let link = snapshot.join("tiny-model-Q2_K.gguf");
    let blob = std::fs::canonicalize(&link).unwrap();
    std::fs::remove_file(&blob).unwrap();
    let check = world.run(&["--json", "doctor", "--check"]);
    check.code(1);
    // The report, then the error that explains the exit code.
    let lines = check.json_lines();
    assert_eq!(lines.len(), 2, "{}", check.stdout);
    assert_eq!(lines[1]["error"]["kind"], "unhealthy");
    let report = &lines[0];
    assert_eq!(
        report["broken_links"][0],
        link.to_str().unwrap(),
        "{report}"
    );
    assert!(
        check.stderr.contains("hint: run `mcache doctor`"),
        "{}",
        check.stderr
    );
    assert!(link.is_symlink(), "--check changes nothing on disk");
    let repair = world.run(&["doctor"]);
    repair.ok();
    assert!(!link.is_symlink(), "the broken link is removed");
    world.run(&["doctor", "--check"]).ok();

    // A repo removed by hand leaves the index too.
    std::fs::remove_dir_all(world.hub_cache().join("models--demo--tiny-gguf")).unwrap();
    let report = world.run(&["--json", "doctor"]).json();
    assert_eq!(
        report["repos_missing"][0]["id"], "demo/tiny-gguf",
        "{report}"
    );
    assert_eq!(world.run(&["--json", "ls"]).json(), serde_json::json!([]));
}

#[test]
fn verify_names_a_corrupted_file_and_exits_8() {
    let world = World::new();
    let snapshot = PathBuf::from(
        world
            .run(&["pull", "demo/tiny-gguf", "--quant", "Q2_K"])
            .ok()
            .trim(),
    );
    world.run(&["verify"]).ok();
    // Flip bytes in the middle of the blob, as a failing disk would.
    let blob = std::fs::canonicalize(snapshot.join("tiny-model-Q2_K.gguf")).unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 16] {
        *byte ^= 0xff;
    }
    std::fs::write(&blob, bytes).unwrap();
    let run = world.run(&["verify", "demo/tiny-gguf"]);
    run.code(8);
    assert!(
        run.stdout.contains("corrupt") && run.stdout.contains("tiny-model-Q2_K.gguf"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.starts_with("error: 1 of "), "{}", run.stderr);
    assert!(run.stderr.contains("hint: "), "{}", run.stderr);
    let report = world.run(&["--json", "verify"]);
    report.code(8);
    let lines = report.json_lines();
    assert_eq!(lines[0]["corrupt"][0]["path"], "tiny-model-Q2_K.gguf");
    assert_eq!(lines[1]["error"]["kind"], "integrity");
}

#[test]
fn outdated_update_hold_and_follow() {
    let world = World::new();
    world
        .run(&[
            "pull",
            "demo/tiny-gguf",
            "--include",
            "config.json",
            "--include",
            "tiny-model-Q2_K.gguf",
        ])
        .ok();
    let report = world.run(&["--json", "outdated"]).json();
    assert_eq!(report["checked"], 1);
    assert_eq!(report["updates"].as_array().unwrap().len(), 0);

    let new_commit = world
        .emulator
        .change_file(
            hub_emulator::RepoKind::Model,
            "demo/tiny-gguf",
            "main",
            "tiny-model-Q2_K.gguf",
        )
        .unwrap();
    // The last finding, without asking: still nothing.
    let cached = world.run(&["--json", "outdated", "--cached"]).json();
    assert_eq!(cached["checked"], 0);
    assert_eq!(cached["updates"].as_array().unwrap().len(), 0);
    let run = world.run(&["outdated"]);
    assert!(run.ok().contains("demo/tiny-gguf"), "{}", run.ok());
    let listed = world.run(&["ls", "demo/tiny-gguf"]);
    assert!(
        listed.ok().contains("update available: main"),
        "{}",
        listed.ok()
    );

    // Held: the checks leave it alone and `ls` says so.
    world.run(&["hold", "demo/tiny-gguf"]).ok();
    let report = world.run(&["--json", "outdated"]).json();
    assert_eq!(report["held"], 1);
    assert_eq!(report["updates"].as_array().unwrap().len(), 0);
    assert!(
        world
            .run(&["ls", "demo/tiny-gguf"])
            .ok()
            .contains("kept at")
    );

    // `update` downloads only the changed file and moves `main`; it also follows the branch.
    let served = world.bytes_served();
    world.run(&["update", "demo/tiny-gguf"]).ok();
    let fetched = world.bytes_served() - served;
    let path = world
        .run(&["path", "demo/tiny-gguf", "tiny-model-Q2_K.gguf"])
        .ok()
        .trim()
        .to_string();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        fetched >= size && fetched < size + 64 * 1024,
        "{fetched} bytes for a {size}-byte change"
    );
    let main = std::fs::read_to_string(
        world
            .hub_cache()
            .join("models--demo--tiny-gguf")
            .join("refs")
            .join("main"),
    )
    .unwrap();
    assert_eq!(main.trim(), new_commit);
    let report = world.run(&["--json", "outdated"]).json();
    assert_eq!(report["held"], 0);
    assert_eq!(report["updates"].as_array().unwrap().len(), 0);
    // Following a branch that is followed already says so.
    assert!(world.run(&["follow", "demo/tiny-gguf"]).ok().is_empty());
}
