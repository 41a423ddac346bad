//! Errors of missing, gated and private repos: one `error:` line, hints, documented exit codes.

use crate::common::{World, files_under};

fn error_line(stderr: &str) -> &str {
    // Warnings (such as the one `--token` draws) come first.
    let first = stderr
        .lines()
        .find(|l| !l.starts_with("warning: "))
        .unwrap_or_default();
    assert!(
        first.starts_with("error: "),
        "first stderr line is the error: {stderr}"
    );
    first
}

#[test]
fn missing_repo_revision_and_file() {
    let world = World::new();
    let run = world.run_with_env(
        &["pull", "demo/does-not-exist"],
        &[("HF_TOKEN", hub_emulator::auth::DEMO_TOKEN)],
    );
    run.code(3);
    assert!(
        error_line(&run.stderr).contains("`demo/does-not-exist`"),
        "{}",
        run.stderr
    );

    let run = world.run(&[
        "pull",
        "demo/tiny-gguf",
        "--quant",
        "Q4_K_M",
        "--revision",
        "nope",
    ]);
    run.code(3);
    assert!(error_line(&run.stderr).contains("nope"), "{}", run.stderr);

    // The Hub answers 401 `RepoNotFound` without a token: not found (3), as huggingface_hub
    // reads it, with a hint that a private repo needs a login.
    let run = world.run(&["pull", "demo/does-not-exist"]);
    run.code(3);
    assert!(
        run.stderr.contains("hint: check the repo id")
            && run.stderr.contains("hint: run `mcache login`"),
        "{}",
        run.stderr
    );
    let run = world.run(&[
        "--token",
        hub_emulator::auth::DEMO_TOKEN,
        "pull",
        "demo/does-not-exist",
    ]);
    run.code(3);
    assert!(
        !run.stderr.contains("mcache login"),
        "a token was sent: no login hint: {}",
        run.stderr
    );

    let run = world.run(&["pull", "demo/tiny-gguf", "--include", "["]);
    run.code(2);
    assert!(
        error_line(&run.stderr).contains("Invalid file pattern"),
        "{}",
        run.stderr
    );

    let run = world.run(&["pull", "demo/tiny-gguf", "--quant", "Q9_Z"]);
    run.code(3);
    assert!(error_line(&run.stderr).contains("Q9_Z"), "{}", run.stderr);
    assert!(
        run.stderr.contains("hint: "),
        "lists the variants: {}",
        run.stderr
    );

    let run = world.run(&["--json", "pull", "demo/tiny-gguf", "--variant", "nope"]);
    run.code(3);
    // With --json the error also reaches stdout, in the local API's shape.
    let error = run.json();
    assert_eq!(error["error"]["kind"], "no_such_variant", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("nope"));
    assert!(
        error["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("mcache variants")
    );
}

#[test]
fn gated_repo_without_and_with_a_token() {
    let world = World::new();
    let run = world.run(&["pull", "demo/gated"]);
    run.code(4);
    let line = error_line(&run.stderr);
    assert!(line.contains("demo/gated"), "{}", run.stderr);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("hint: ") && l.contains("request access")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("{}/demo/gated", world.emulator.url())),
        "the hint names the repo page: {}",
        run.stderr
    );
    let run = world.run(&[
        "--token",
        hub_emulator::auth::OTHER_TOKEN,
        "pull",
        "demo/gated",
    ]);
    run.code(4);
    assert!(
        !run.stderr.contains(hub_emulator::auth::OTHER_TOKEN),
        "the token never shows"
    );
    let run = world.run(&[
        "--token",
        hub_emulator::auth::DEMO_TOKEN,
        "pull",
        "demo/gated",
    ]);
    run.ok();
}

#[test]
fn private_repo_needs_a_token_and_a_bad_token_is_named() {
    let world = World::new();
    // Like the Hub, the emulator answers 401 `RepoNotFound` to an anonymous request for a
    // private (or missing) repo: not found, with a hint to log in.
    let run = world.run(&["pull", "demo/private"]);
    run.code(3);
    assert!(
        error_line(&run.stderr).contains("was not found"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: run `mcache login`"),
        "{}",
        run.stderr
    );
    let run = world.run(&["--token", "hf_wrong", "pull", "demo/private"]);
    run.code(4);
    assert!(!run.stderr.contains("hf_wrong"), "the token never shows");
    let run = world.run(&[
        "--token",
        hub_emulator::auth::DEMO_TOKEN,
        "pull",
        "demo/private",
    ]);
    run.ok();
}

#[test]
fn unreachable_hub_is_a_network_error() {
    let world = World::new();
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = world.run(&[
        "--endpoint",
        &format!("http://127.0.0.1:{port}"),
        "variants",
        "demo/tiny-gguf",
    ]);
    run.code(7);
    error_line(&run.stderr);
}

#[test]
fn a_token_file_or_stdin_keeps_the_token_off_the_command_line() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{}\n", hub_emulator::auth::DEMO_TOKEN)).unwrap();
    let run = world.run(&[
        "--token-file",
        file.to_str().unwrap(),
        "pull",
        "demo/private",
    ]);
    run.ok();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);

    // `-` reads it from stdin.
    let mut child = world
        .command()
        .args(["--token-file", "-", "--json", "ls"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    writeln!(
        child.stdin.take().unwrap(),
        "{}",
        hub_emulator::auth::DEMO_TOKEN
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `--token` still works, with a warning naming the safer ways.
    let run = world.run(&["--token", hub_emulator::auth::DEMO_TOKEN, "ls"]);
    run.ok();
    assert!(
        run.stderr.starts_with("warning: `--token` is visible")
            && run.stderr.contains("--token-file"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(hub_emulator::auth::DEMO_TOKEN));

    // A missing or empty file is a usage error, and both flags at once are refused.
    let missing = dir.path().join("nope");
    let run = world.run(&["--token-file", missing.to_str().unwrap(), "ls"]);
    run.code(2);
    assert!(
        error_line(&run.stderr).contains("Cannot read the token"),
        "{}",
        run.stderr
    );
    std::fs::write(&file, "\n").unwrap();
    world
        .run(&["--token-file", file.to_str().unwrap(), "ls"])
        .code(2);
    world
        .run(&[
            "--token",
            "hf_x",
            "--token-file",
            file.to_str().unwrap(),
            "ls",
        ])
        .code(2);
}

#[test]
fn a_bad_saved_preferences_file_never_stops_a_command() {
    let world = World::new();
    std::fs::create_dir_all(world.data_dir()).unwrap();
    std::fs::write(
        world.data_dir().join("preferences.json"),
        r#"{"endpoint": "http://", "cache_dir": "relative"}"#,
    )
    .unwrap();
    let run = world.run(&["ls"]);
    run.ok();
    assert!(
        run.stderr.contains("`endpoint` was ignored")
            && run.stderr.contains("`cache_dir` was ignored"),
        "{}",
        run.stderr
    );
    std::fs::write(world.data_dir().join("preferences.json"), "{ not json").unwrap();
    let run = world.run(&["ls"]);
    run.ok();
    assert!(run.stderr.contains("default settings"), "{}", run.stderr);
}

#[test]
fn a_cache_folder_on_a_drive_that_is_not_there_is_refused_not_created_elsewhere() {
    let world = World::new();
    let drives = tempfile::tempdir().unwrap();
    // `--cache-dir` on a drive whose mount point is gone.
    let mount = drives.path().join("usb");
    let cache = mount.join("hf").join("hub");
    let run = world.run(&[
        "--cache-dir",
        cache.to_str().unwrap(),
        "variants",
        "demo/tiny-gguf",
    ]);
    run.code(1);
    let line = error_line(&run.stderr);
    assert!(line.contains("is not there"), "{line}");
    assert!(
        line.contains(&format!(
            "`{}` is missing: is its drive connected?",
            mount.display()
        )),
        "{line}"
    );
    assert!(
        run.stderr.contains("hint: connect the drive"),
        "{}",
        run.stderr
    );
    assert!(!mount.exists(), "nothing is created where the drive was");
    assert!(
        !world.hub_cache().exists() || files_under(&world.hub_cache()).is_empty(),
        "nothing falls back to the default cache"
    );

    // A cache folder chosen in the settings existed when chosen: missing now, it is refused
    // even though the folder it was in is still there.
    let chosen = drives.path().join("external").join("hub");
    std::fs::create_dir_all(&chosen).unwrap();
    world
        .run(&["config", "set", "cache_dir", chosen.to_str().unwrap()])
        .ok();
    std::fs::remove_dir(&chosen).unwrap();
    let run = world.run(&["variants", "demo/tiny-gguf"]);
    run.code(1);
    assert!(
        error_line(&run.stderr).contains("is not there"),
        "{}",
        run.stderr
    );
    assert!(!chosen.exists(), "the chosen folder is not created again");

    // `--cache-dir` naming a new folder in a folder that exists is created, as
    // `huggingface_hub` creates its cache.
    let new = drives.path().join("new-hub");
    world
        .run(&[
            "--cache-dir",
            new.to_str().unwrap(),
            "pull",
            "demo/tiny-gguf",
            "--include",
            "config.json",
        ])
        .ok();
    assert!(new.exists());
}
