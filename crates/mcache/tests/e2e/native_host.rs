//! `mcache native-host` through its pipes, as a browser drives it: 4-byte native-endian lengths
//! and JSON, against a running `mcache serve`; and `native-host install`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};

use serde_json::{Value, json};

use crate::common::World;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut bytes = (body.len() as u32).to_ne_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads every answer until the host closes its output.
fn answers(mut output: impl Read) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let mut header = [0u8; 4];
        if output.read_exact(&mut header).is_err() {
            return out;
        }
        let length = u32::from_ne_bytes(header) as usize;
        assert!(length <= 1024 * 1024, "an answer of {length} bytes");
        let mut body = vec![0u8; length];
        output.read_exact(&mut body).expect("a whole answer");
        out.push(serde_json::from_slice(&body).expect("answers are JSON"));
    }
}

/// Runs the host with `input` on its stdin (then closed) and returns its answers.
fn exchange(world: &World, input: &[u8]) -> Vec<Value> {
    let mut host = world
        .command()
        .args([
            "native-host",
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop/",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the host starts");
    let mut stdin = host.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = answers(host.stdout.take().unwrap());
    writer.join().unwrap();
    let status = host.wait().unwrap();
    assert!(status.success(), "the host exits cleanly: {status}");
    out
}

fn request(value: Value) -> Vec<u8> {
    frame(value.to_string().as_bytes())
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(world: &World) -> Server {
    let mut server = world
        .command()
        .args(["serve", "--mirror-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("http://127.0.0.1:"), "{line}");
    Server(server)
}

#[test]
fn without_an_app_the_host_answers_app_not_running() {
    let world = World::new();
    let out = exchange(&world, &request(json!({"id": 1, "type": "list"})));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["id"], 1);
    assert_eq!(out[0]["error"], "app_not_running");
}

#[test]
fn bad_frames_get_error_answers_and_the_host_goes_on() {
    let world = World::new();
    let mut input = Vec::new();
    input.extend(frame(b"{not json"));
    // Over the host's limit: read, dropped and answered; the next message is still read.
    input.extend(frame(&vec![b' '; 1024 * 1024 + 1]));
    input.extend(request(json!({"id": "x", "type": "format_disk"})));
    input.extend(request(
        json!({"id": 2, "type": "path", "repo": "a/b", "file": "../../etc/passwd"}),
    ));
    // A message cut short ends the input.
    let mut cut = request(json!({"id": 3, "type": "list"}));
    cut.truncate(9);
    input.extend(cut);
    let out = exchange(&world, &input);
    // Requests are answered concurrently: the order of the answers is not the order of the
    // messages.
    let mut errors: Vec<&str> = out.iter().map(|a| a["error"].as_str().unwrap()).collect();
    errors.sort_unstable();
    assert_eq!(
        errors,
        [
            "invalid_json",
            "invalid_request",
            "invalid_request",
            "message_too_large",
            "truncated_message"
        ],
        "{out:?}"
    );
    let by_id = |id: Value| out.iter().find(|a| a["id"] == id).unwrap();
    assert_eq!(by_id(json!("x"))["error"], "invalid_request");
    assert_eq!(by_id(json!(2))["error"], "invalid_request");
}

#[test]
fn the_host_lists_pulls_streams_progress_and_points_at_files() {
    let world = World::new();
    // A model in the cache before the app starts.
    world
        .run(&[
            "pull",
            "demo/tiny-gguf",
            "--include",
            "config.json",
            "--include",
            "*Q4_K_M.gguf",
        ])
        .ok();
    let _server = serve(&world);

    let mut input = Vec::new();
    input.extend(request(json!({"id": 1, "type": "list"})));
    input.extend(request(
        json!({"id": 2, "type": "variants", "repo": "demo/tiny-gguf"}),
    ));
    input.extend(request(
        json!({"id": 3, "type": "path", "repo": "demo/tiny-gguf", "file": "config.json"}),
    ));
    input.extend(request(
        json!({"id": 4, "type": "mirror_url", "repo": "demo/tiny-gguf", "file": "config.json"}),
    ));
    input.extend(request(
        json!({"id": 5, "type": "path", "repo": "demo/tiny-gguf", "file": "nope.bin"}),
    ));
    input.extend(request(
        json!({"id": 6, "type": "variants", "repo": "demo/missing"}),
    ));
    let out = exchange(&world, &input);
    let by_id = |id: i64| {
        out.iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("an answer to {id}: {out:?}"))
    };
    let list = by_id(1);
    assert_eq!(list["type"], "list");
    assert_eq!(list["models"][0]["repo"], "demo/tiny-gguf", "{list}");
    assert_eq!(list["truncated"], false);
    let variants = by_id(2);
    assert!(
        variants["variants"]["variants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["quant"] == "Q4_K_M"),
        "{variants}"
    );
    let path = by_id(3)["path"].as_str().unwrap().to_string();
    assert!(
        path.starts_with(world.hub_cache().to_str().unwrap()),
        "{path}"
    );
    assert!(std::fs::read_to_string(&path).unwrap().contains("llama"));
    let url = by_id(4)["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(
        url.ends_with("/demo/tiny-gguf/resolve/main/config.json"),
        "{url}"
    );
    assert_eq!(by_id(5)["error"], "not_cached");
    assert_eq!(by_id(6)["error"], "repo_not_found");

    // A pull queued through the host, then its progress streamed to the end.
    let out = exchange(
        &world,
        &request(json!({"id": 7, "type": "pull", "repo": "demo/tiny-safetensors"})),
    );
    let job_id = out[0]["job_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{out:?}"));
    let out = exchange(
        &world,
        &request(json!({"id": 8, "type": "progress", "job_id": job_id})),
    );
    let last = out.last().unwrap();
    assert_eq!(last["type"], "progress_end", "{out:?}");
    assert_eq!(last["job"]["state"], "done", "{last}");
    assert!(out.iter().all(|a| a["id"] == 8));
    let snapshot = last["job"]["snapshot_path"].as_str().unwrap();
    assert!(std::path::Path::new(snapshot).join("config.json").is_file());
    // Every answer was small: no file bytes went through the pipe.
    assert!(out.iter().all(|a| a.to_string().len() < 64 * 1024));
}

#[test]
fn a_pull_is_paused_and_resumed_through_the_host() {
    let world = World::new();
    let mut server = world
        .command()
        .args(["--max-rate", "1MiB/s", "serve", "--no-mirror"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Server(server);
    let out = exchange(
        &world,
        &request(json!({"id": 1, "type": "pull", "repo": "demo/big"})),
    );
    let job_id = out[0]["job_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{out:?}"));
    let out = exchange(
        &world,
        &request(json!({"id": 2, "type": "pause", "job_id": job_id})),
    );
    assert_eq!(out[0]["type"], "pause", "{out:?}");
    assert_eq!(out[0]["job"]["state"], "paused", "{out:?}");
    // A paused job's progress stream ends at once, with the job as it is.
    let out = exchange(
        &world,
        &request(json!({"id": 3, "type": "progress", "job_id": job_id})),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["job"]["state"], "paused");
    let out = exchange(
        &world,
        &request(json!({"id": 4, "type": "resume", "job_id": job_id})),
    );
    assert_eq!(out[0]["type"], "resume", "{out:?}");
    assert_ne!(out[0]["job"]["state"], "paused", "{out:?}");
    // No mirror runs: a mirror URL is refused with its own kind.
    let out = exchange(
        &world,
        &request(json!({"type": "mirror_url", "repo": "demo/big", "file": "README.md"})),
    );
    assert_eq!(out[0]["error"], "mirror_not_running", "{out:?}");
}

#[test]
fn install_writes_the_manifest_and_launcher_where_the_browser_looks() {
    let world = World::new();
    let profile = world.dir.path().join("chromium-profile");
    let origin = "chrome-extension://abcdefghijklmnopabcdefghijklmnop/";
    let run = world.run(&[
        "--json",
        "native-host",
        "install",
        "--browser",
        "chromium",
        "--user-data-dir",
        profile.to_str().unwrap(),
        "--allow-origin",
        origin,
    ]);
    let installed = run.json();
    let manifest_path = profile.join("NativeMessagingHosts/dev.modelcache.host.json");
    assert_eq!(installed["manifest"], manifest_path.to_str().unwrap());
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["name"], "dev.modelcache.host");
    assert_eq!(manifest["type"], "stdio");
    assert_eq!(manifest["allowed_origins"], json!([origin]));
    let launcher = std::path::PathBuf::from(manifest["path"].as_str().unwrap());
    assert!(launcher.is_absolute());

    // The launcher is what the browser runs: it answers as `mcache native-host` does.
    let mut host = std::process::Command::new(&launcher)
        .arg(origin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the launcher runs");
    host.stdin
        .take()
        .unwrap()
        .write_all(&request(json!({"id": 1, "type": "list"})))
        .unwrap();
    let out = answers(host.stdout.take().unwrap());
    host.wait().unwrap();
    assert_eq!(
        out,
        vec![
            json!({"id": 1, "error": "app_not_running", "message": "Model Cache is not running", "hint": "start the Model Cache app (or `mcache serve`)"})
        ]
    );

    let bad = world.run(&[
        "native-host",
        "install",
        "--allow-origin",
        "https://example.com/",
    ]);
    bad.code(2);
    assert!(bad.stderr.contains("chrome-extension://"), "{}", bad.stderr);
    let bad = world.run(&[
        "native-host",
        "install",
        "--browser",
        "firefox",
        "--user-data-dir",
        "/tmp/x",
        "--allow-origin",
        "m@example.org",
    ]);
    bad.code(2);
}
