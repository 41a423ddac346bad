//! Help, completions, usage errors, login/logout, the demo hub, inspect and offline `path`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;

use crate::common::{World, bare, interrupt};

#[test]
fn help_documents_commands_exit_codes_and_environment() {
    let run = bare(&["--help"]);
    let help = run.ok();
    for command in [
        "variants",
        "pull",
        "convert",
        "ls",
        "path",
        "rm",
        "verify",
        "pin",
        "unpin",
        "gc",
        "inspect",
        "stats",
        "doctor",
        "queue",
        "login",
        "logout",
        "config",
        "serve",
        "demo",
        "completions",
    ] {
        assert!(
            help.contains(&format!("\n  {command} ")),
            "`{command}` in --help:\n{help}"
        );
    }
    for text in [
        "Exit status:",
        "130  interrupted",
        "3    not found",
        "4    authentication",
        "5    offline",
        "6    not enough disk space",
        "HF_HUB_CACHE",
        "HF_ENDPOINT",
        "HF_TOKEN",
        "HF_HUB_OFFLINE",
        "NO_COLOR",
        "--max-rate <RATE>",
        "--chunk-size <SIZE>",
    ] {
        assert!(help.contains(text), "`{text}` in --help:\n{help}");
    }
    let short = bare(&["-h"]);
    assert!(short.ok().contains("Exit status:"));
    let pull = bare(&["pull", "--help"]);
    assert!(pull.ok().contains("--quant <Q>"));
}

#[test]
fn completions_for_each_shell_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let run = bare(&["completions", shell]);
        let script = run.ok();
        assert!(script.contains("mcache"), "{shell}");
        for command in ["pull", "variants", "gc", "completions"] {
            assert!(
                script.contains(command),
                "`{command}` in the {shell} completions"
            );
        }
    }
    assert!(
        bare(&["completions", "bash"])
            .stdout
            .contains("complete -F")
    );
    bare(&["completions", "tcsh"]).code(2);
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let run = bare(&["pull"]);
    run.code(2);
    assert!(run.stderr.contains("REPO"), "{}", run.stderr);
    let run = bare(&["--max-rate", "fast", "ls"]);
    run.code(2);
    assert!(
        run.stderr.contains("`fast` is not a rate"),
        "{}",
        run.stderr
    );
    let run = bare(&["gc", "--max-size", "10 parsecs"]);
    run.code(2);
    assert!(
        run.stderr.contains("unknown unit `parsecs`"),
        "{}",
        run.stderr
    );
    let run = bare(&["pull", "a/b", "--variant", "x", "--quant", "y"]);
    run.code(2);
    let run = bare(&["frobnicate"]);
    run.code(2);
    let version = bare(&["--version"]);
    assert!(version.ok().starts_with("mcache "));
}

#[test]
fn login_saves_the_token_where_huggingface_hub_reads_it_and_logout_removes_it() {
    let world = World::new();
    let token_file = world.hf_home().join("token");
    let run = world.run(&["login", "--token", "hf_test_login"]);
    run.ok();
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        "hf_test_login"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        !run.stderr.contains("hf_test_login"),
        "the token is never echoed"
    );

    let mut child = world
        .command()
        .args(["login", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hf_from_stdin\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        "hf_from_stdin"
    );

    let run = world.run(&["login"]);
    run.code(2);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);

    world.run(&["logout"]).ok();
    assert!(!token_file.exists());
    let run = world.run(&["logout"]);
    assert!(run.ok().is_empty());
    assert!(run.stderr.contains("Not logged in"), "{}", run.stderr);
}

#[test]
fn demo_prints_its_url_first_and_serves_the_catalog_until_interrupted() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mcache"))
        .arg("demo")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    let url = url.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "first line is the URL: {url:?}"
    );

    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET /api/models/demo/tiny-gguf HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("tiny-model-Q4_K_M.gguf"), "{response}");

    interrupt(child.id());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn inspect_reads_only_the_header_of_a_remote_file() {
    let world = World::new();
    let before = world.bytes_served();
    let run = world.run(&[
        "--json",
        "inspect",
        "demo/tiny-gguf",
        "tiny-model-Q4_K_M.gguf",
    ]);
    let inspection = run.json();
    assert_eq!(inspection["format"], "gguf");
    assert_eq!(inspection["gguf"]["quant"], "Q4_K_M");
    assert_eq!(inspection["gguf"]["architecture"], "llama");
    let size = inspection["size"].as_u64().unwrap();
    let served = world.bytes_served() - before;
    assert!(
        served < size / 2,
        "served {served} of {size} bytes for a header"
    );

    let run = world.run(&["inspect", "demo/tiny-gguf", "tiny-model-Q4_K_M.gguf"]);
    let text = run.ok();
    assert!(text.contains("Q4_K_M") && text.contains("llama"), "{text}");

    let run = world.run(&["inspect", "/nonexistent/model.gguf"]);
    run.code(3);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
}

#[test]
fn path_of_an_uncached_file_is_an_offline_miss_with_a_hint() {
    let world = World::new();
    let before = world.bytes_served();
    let run = world.run(&["--offline", "path", "demo/tiny-gguf", "config.json"]);
    run.code(5);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines[0].starts_with("error: `config.json` of `demo/tiny-gguf`"),
        "{}",
        run.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("hint: ") && l.contains("mcache pull demo/tiny-gguf")),
        "{}",
        run.stderr
    );
    assert_eq!(world.bytes_served(), before);
    assert!(
        world.emulator.log().records().is_empty(),
        "no request at all"
    );
}

#[test]
fn queue_without_a_running_server_says_how_to_start_one() {
    let world = World::new();
    let run = world.run(&["queue"]);
    run.code(3);
    assert!(
        run.stderr
            .contains("hint: start the app, or run `mcache serve`"),
        "{}",
        run.stderr
    );
    // A discovery file left by a server that died: its pid is gone.
    std::fs::create_dir_all(world.data_dir()).unwrap();
    std::fs::write(
        world.data_dir().join("api.json"),
        r#"{"url": "http://127.0.0.1:9", "pid": 4000000}"#,
    )
    .unwrap();
    std::fs::write(world.data_dir().join("api-token"), "secret").unwrap();
    let run = world.run(&["queue"]);
    run.code(3);
    assert!(run.stderr.contains("no longer running"), "{}", run.stderr);
    // A record naming another machine, with a live pid (this test's): the secret is not sent.
    std::fs::write(
        world.data_dir().join("api.json"),
        format!(
            r#"{{"url": "http://192.0.2.1:80", "pid": {}}}"#,
            std::process::id()
        ),
    )
    .unwrap();
    let run = world.run(&["queue"]);
    run.code(3);
    assert!(
        run.stderr.contains("not a loopback address"),
        "{}",
        run.stderr
    );
}
