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

#[test]
fn a_pull_over_the_budget_asks_and_evicts_only_with_consent() {
    let world = World::new();
    world.run(&["pull", "demo/tiny-safetensors"]).ok();
    let listed = world.run(&["--json", "ls"]).json();
    let size = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo"] == "demo/tiny-safetensors")
        .map(|r| r["size_bytes"].as_u64().unwrap())
        .unwrap();
    // A budget the next model does not fit in, without background cleanup.
    world
        .run(&[
            "config",
            "set",
            "size_budget_bytes",
            &(size + 1).to_string(),
        ])
        .ok();
    world.run(&["config", "set", "auto_cleanup", "false"]).ok();

    // No terminal to ask: nothing removed, nothing downloaded, and what to do.
    let run = world.run(&["pull", "demo/tiny-gguf", "--quant", "Q2_K"]);
    run.code(6);
    assert!(run.stderr.contains("over its budget"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Making room would remove")
            && run.stderr.contains("demo/tiny-safetensors"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--evict"), "{}", run.stderr);
    assert!(
        run.stderr.contains("mcache config set size_budget_bytes"),
        "{}",
        run.stderr
    );
    let listed = world.run(&["ls"]).ok().to_string();
    assert!(listed.contains("demo/tiny-safetensors"), "{listed}");
    assert!(!listed.contains("demo/tiny-gguf"), "{listed}");

    // `--evict` is the consent: exactly the listed model goes, then the download runs.
    let run = world.run(&["pull", "demo/tiny-gguf", "--quant", "Q2_K", "--evict"]);
    run.ok();
    assert!(run.stderr.contains("removed"), "{}", run.stderr);
    let listed = world.run(&["ls"]).ok().to_string();
    assert!(!listed.contains("demo/tiny-safetensors"), "{listed}");
    assert!(listed.contains("demo/tiny-gguf"), "{listed}");
}

#[test]
fn cache_hits_and_misses_are_counted_exactly() {
    let world = World::new();
    let pull = |quant: &str| -> (u64, u64) {
        let run = world.run(&["--json", "pull", "demo/tiny-gguf", "--quant", quant]);
        run.ok();
        let lines = run.json_lines();
        let result = lines.last().unwrap();
        let files = result["files"].as_array().unwrap();
        let misses = files.iter().filter(|f| f["source"] == "downloaded").count() as u64;
        (files.len() as u64 - misses, misses)
    };
    let counters = || {
        let stats = world.run(&["--json", "stats"]).json();
        (
            stats["counters"]["hits"].as_u64().unwrap(),
            stats["counters"]["misses"].as_u64().unwrap(),
        )
    };
    // First pull: every file is a miss.
    let (hits, misses) = pull("Q2_K");
    assert_eq!(hits, 0);
    assert!(misses >= 1);
    assert_eq!(counters(), (0, misses));
    // The same again: every file is a hit, none a miss.
    let (again_hits, again_misses) = pull("Q2_K");
    assert_eq!((again_hits, again_misses), (misses, 0));
    assert_eq!(counters(), (misses, misses));
    // Another quant: its weights are a miss, the files it shares with Q2_K are hits.
    let (other_hits, other_misses) = pull("Q4_K_M");
    assert_eq!(other_misses, 1, "only the Q4_K_M file is new");
    assert_eq!(
        counters(),
        (misses + other_hits, misses + other_misses),
        "counted exactly, once per file"
    );
}

/// A cache as `huggingface_hub` leaves it: `repos` repos of `files` small files each (blobs
/// named by a fake sha256, snapshot links, `refs/main`).
fn write_cache(root: &std::path::Path, repos: usize, files: usize) {
    for r in 0..repos {
        let dir = root.join(format!("models--bench--repo-{r:04}"));
        let commit = format!("{r:040x}");
        let snapshot = dir.join("snapshots").join(&commit);
        std::fs::create_dir_all(dir.join("blobs")).unwrap();
        std::fs::create_dir_all(dir.join("refs")).unwrap();
        std::fs::create_dir_all(snapshot.join("shards")).unwrap();
        std::fs::write(dir.join("refs/main"), &commit).unwrap();
        for f in 0..files {
            let etag = format!("{:064x}", r * files + f + 1);
            std::fs::write(dir.join("blobs").join(&etag), vec![b'x'; 1 + f % 97]).unwrap();
            std::os::unix::fs::symlink(
                format!("../../../blobs/{etag}"),
                snapshot.join("shards").join(format!("part-{f:04}.bin")),
            )
            .unwrap();
        }
    }
}

/// `ls --json` without what only the index knows (when each model was last used).
fn listing(world: &World) -> serde_json::Value {
    let mut listed = world.run(&["--json", "ls"]).json();
    for repo in listed.as_array_mut().unwrap() {
        repo.as_object_mut().unwrap().remove("last_used");
    }
    listed
}

#[test]
fn an_index_rebuilt_from_a_10_000_file_cache_lists_the_same() {
    let world = World::new();
    write_cache(&world.hub_cache(), 100, 100);
    let before = listing(&world);
    assert_eq!(before.as_array().unwrap().len(), 100);
    let files: u64 = before
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revisions"][0]["files"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(files, 10_000);
    // The index goes (as after a crash, or by hand); the next command rebuilds what it needs.
    for entry in std::fs::read_dir(world.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("index.sqlite3")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let after = listing(&world);
    assert_eq!(before, after, "the same listing from the rebuilt index");
    assert!(world.data_dir().join("index.sqlite3").exists(), "rebuilt");
}
