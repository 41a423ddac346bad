//! Pulling a variant, pulling again from the cache, and the cache commands around it.

use std::path::PathBuf;

use crate::common::{World, sha256_file};

const REPO: &str = "demo/tiny-gguf";
const Q4: &str = "tiny-model-Q4_K_M.gguf";

fn pull_q4(world: &World) -> PathBuf {
    let run = world.run(&["pull", REPO, "--quant", "Q4_K_M"]);
    let stdout = run.ok();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout is just the snapshot path: {stdout}");
    PathBuf::from(lines[0])
}

#[test]
fn pull_a_quant_variant_then_again_with_no_network_bytes() {
    let world = World::new();
    let snapshot = pull_q4(&world);
    assert!(snapshot.starts_with(world.hub_cache().join("models--demo--tiny-gguf/snapshots")));
    let file = snapshot.join(Q4);
    assert_eq!(
        sha256_file(&file),
        world.sha256(REPO, Q4),
        "verified content"
    );
    assert!(
        !snapshot.join("tiny-model-Q2_K.gguf").exists(),
        "other quants are not downloaded"
    );
    let size = std::fs::metadata(&file).unwrap().len();
    let first = world.cdn_bytes();
    assert!(
        first >= size,
        "the file came from the CDN ({first} ≥ {size})"
    );

    let seq = world.emulator.log().records().len();
    let run = world.run(&["--json", "pull", REPO, "--quant", "Q4_K_M"]);
    run.ok();
    let lines = run.json_lines();
    let result = lines.last().unwrap();
    assert_eq!(
        PathBuf::from(result["snapshot_path"].as_str().unwrap()),
        snapshot
    );
    assert_eq!(
        result["bytes_downloaded"], 0,
        "the second pull downloads nothing"
    );
    assert!(
        lines
            .iter()
            .all(|e| e["event"] != "file_started" && e["event"] != "bytes"),
        "no transfer starts"
    );
    // The second run asks the Hub for the listing only: a named quant is found by its file
    // name, so no file byte (not even a header) comes from the CDN.
    let records = world.emulator.log().records();
    let cdn: Vec<_> = records[seq..]
        .iter()
        .filter(|r| r.listener == hub_emulator::Listener::Cdn)
        .map(|r| format!("{} {:?}", r.path, r.range))
        .collect();
    assert!(cdn.is_empty(), "the CDN was asked for {cdn:?}");
    let run = world.run(&["pull", REPO, "--quant", "Q4_K_M"]);
    assert_eq!(PathBuf::from(run.ok().trim()), snapshot);
    assert!(run.stderr.contains("already cached"), "{}", run.stderr);
    let quiet = world.run(&["--quiet", "pull", REPO, "--quant", "Q4_K_M"]);
    assert_eq!(PathBuf::from(quiet.ok().trim()), snapshot);
    assert_eq!(quiet.stderr, "", "--quiet prints no message");
}

#[test]
fn without_a_choice_the_recommended_variant_is_taken_and_said() {
    let world = World::new();
    let report = world.run(&["--json", "variants", REPO]).json();
    let recommended = report["recommended"].as_str().expect("a recommendation");
    let variant = report["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == recommended && v["recommended"] == true)
        .expect("the recommended variant is marked");
    let name = variant["name"].as_str().unwrap();
    let run = world.run(&["pull", REPO]);
    let snapshot = PathBuf::from(run.ok().trim());
    assert!(
        run.stderr
            .contains(&format!("recommended variant `{name}`")),
        "{}",
        run.stderr
    );
    for file in variant["files"].as_array().unwrap() {
        let path = snapshot.join(file["path"].as_str().unwrap());
        assert!(
            path.is_file(),
            "`{}` of the recommended variant",
            path.display()
        );
    }
}

#[test]
fn variants_table_marks_the_recommended_one() {
    let world = World::new();
    let run = world.run(&["variants", REPO]);
    let table = run.ok();
    let header = table.lines().next().unwrap();
    for column in ["NAME", "FORMAT", "QUANT", "SIZE", "FILES", "FIT"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(
        table.contains("Q4_K_M") && table.contains("Q8_0"),
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|line| line.starts_with('*')).count(),
        1,
        "one recommended row:\n{table}"
    );
}

#[test]
fn cache_commands_list_locate_verify_pin_gc_and_remove() {
    let world = World::new();
    let snapshot = pull_q4(&world);

    let ls = world.run(&["ls"]);
    let table = ls.ok();
    assert!(table.contains(REPO), "{table}");
    let repos = world.run(&["--json", "ls"]).json();
    let entry = &repos.as_array().unwrap()[0];
    assert_eq!(entry["repo"], REPO);
    assert_eq!(entry["pinned"], false);
    assert!(entry["size_bytes"].as_u64().unwrap() > 1_000_000);

    let requests = world.emulator.log().records().len();
    let path = world.run(&["--offline", "path", REPO, Q4]);
    assert_eq!(PathBuf::from(path.ok().trim()), snapshot.join(Q4));
    let path = world.run_with_env(&["path", REPO, Q4], &[("HF_HUB_OFFLINE", "1")]);
    assert_eq!(PathBuf::from(path.ok().trim()), snapshot.join(Q4));
    world
        .run(&["--offline", "path", REPO, "tiny-model-Q2_K.gguf"])
        .code(5);
    assert_eq!(
        world.emulator.log().records().len(),
        requests,
        "offline lookups make no request"
    );

    let verify = world.run(&["verify", REPO]);
    assert!(verify.ok().contains("ok"), "{}", verify.stdout);

    world.run(&["pin", REPO]).ok();
    let repos = world.run(&["--json", "ls"]).json();
    assert_eq!(repos[0]["pinned"], true);
    let gc = world.run(&["gc", "--max-size", "0", "--dry-run"]);
    gc.ok();
    assert!(snapshot.join(Q4).is_file());
    let gc = world.run(&["--json", "gc", "--max-size", "0"]);
    gc.ok();
    assert!(snapshot.join(Q4).is_file(), "pinned repos survive gc");

    let refused = world.run(&["rm", REPO]);
    refused.code(1);
    assert!(
        refused
            .stderr
            .contains("hint: run `mcache unpin demo/tiny-gguf` first, or pass --force"),
        "{}",
        refused.stderr
    );
    assert!(snapshot.join(Q4).is_file(), "a pinned repo is not removed");
    let dry = world
        .run(&["--json", "rm", REPO, "--force", "--dry-run"])
        .json();
    assert!(dry["bytes_freed"].as_u64().unwrap() > 0, "{dry}");
    assert!(snapshot.join(Q4).is_file(), "a dry run removes nothing");
    world.run(&["unpin", REPO]).ok();
    let dry = world.run(&["gc", "--max-size", "0", "--dry-run"]);
    assert!(
        dry.ok().contains(REPO),
        "the dry run names the repo:\n{}",
        dry.stdout
    );
    assert!(snapshot.join(Q4).is_file(), "a dry run removes nothing");

    world.run(&["rm", REPO]).ok();
    assert!(!snapshot.join(Q4).exists());
    let repos = world.run(&["--json", "ls"]).json();
    assert_eq!(repos.as_array().unwrap().len(), 0, "{repos}");
    world.run(&["--offline", "path", REPO, Q4]).code(5);
}

#[test]
fn rm_variant_removes_one_quant_and_keeps_the_others() {
    let world = World::new();
    let snapshot = pull_q4(&world);
    world.run(&["pull", REPO, "--quant", "Q2_K"]).ok();
    let q2 = snapshot.join("tiny-model-Q2_K.gguf");
    assert!(q2.is_file());
    let q2_blob = std::fs::canonicalize(&q2).unwrap();

    let dry = world
        .run(&["--json", "rm", REPO, "--variant", "Q2_K", "--dry-run"])
        .json();
    assert!(dry["bytes_freed"].as_u64().unwrap() > 0, "{dry}");
    assert!(q2.is_file(), "a dry run removes nothing");

    world.run(&["rm", REPO, "--variant", "Q2_K"]).ok();
    assert!(!q2.exists(), "the variant's link is gone");
    assert!(!q2_blob.exists(), "its blob is gone");
    assert!(snapshot.join(Q4).is_file(), "the other variant stays");
    assert!(world.run(&["verify", REPO]).ok().contains("ok"));
    world.run(&["rm", REPO, "--variant", "Q9_Z"]).code(3);

    // The last variant takes the whole revision with it.
    world.run(&["rm", REPO, "--variant", "Q4_K_M"]).ok();
    let repos = world.run(&["--json", "ls"]).json();
    assert_eq!(repos.as_array().unwrap().len(), 0, "{repos}");
}

#[test]
fn gc_evicts_an_unpinned_repo_over_the_budget() {
    let world = World::new();
    let snapshot = pull_q4(&world);
    let run = world.run(&["gc", "--max-size", "1KB"]);
    run.ok();
    assert!(
        !snapshot.join(Q4).exists(),
        "evicted:\n{}\n{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn gc_evicts_the_least_recently_used_quant_and_keeps_the_repo() {
    let world = World::new();
    let snapshot = pull_q4(&world);
    world.run(&["pull", REPO, "--quant", "Q2_K"]).ok();
    // Handing out the Q4 path makes Q2 the least recently used quant.
    world.run(&["--offline", "path", REPO, Q4]).ok();
    let q2 = snapshot.join("tiny-model-Q2_K.gguf");
    let used = world.run(&["--json", "ls"]).json()[0]["size_bytes"]
        .as_u64()
        .unwrap();
    let q2_size = std::fs::metadata(&q2).unwrap().len();
    let budget = (used - q2_size).to_string();

    let dry = world.run(&["gc", "--max-size", &budget, "--dry-run"]);
    assert!(
        dry.ok().contains("gguf:tiny-model-Q2_K"),
        "the dry run names the quant:\n{}",
        dry.stdout
    );
    let run = world.run(&["--json", "gc", "--max-size", &budget]).json();
    let evictions = run["eviction"]["evictions"].as_array().unwrap();
    assert_eq!(evictions.len(), 1, "{run}");
    assert_eq!(evictions[0]["variant"], "gguf:tiny-model-Q2_K");
    assert_eq!(evictions[0]["last_used_source"], "variant");
    assert!(!q2.exists(), "the least recently used quant is evicted");
    assert!(snapshot.join(Q4).is_file(), "the quant just used stays");
    assert!(world.run(&["verify", REPO]).ok().contains("ok"));
}

#[test]
fn offline_pull_serves_the_cache_and_names_what_is_missing() {
    let world = World::new();
    let snapshot = pull_q4(&world);
    let requests = world.emulator.log().records().len();
    let run = world.run(&["--offline", "pull", REPO, "--quant", "Q4_K_M"]);
    assert_eq!(PathBuf::from(run.ok().trim()), snapshot);
    let run = world.run(&["--offline", "pull", REPO, "--quant", "Q6_K"]);
    run.code(5);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(
        run.stderr.contains("Q6_K"),
        "names what is missing: {}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: "), "{}", run.stderr);
    assert_eq!(
        world.emulator.log().records().len(),
        requests,
        "offline means no request"
    );
}
