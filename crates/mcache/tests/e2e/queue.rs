//! `mcache serve` and `mcache queue`: the queue of a running local API, found through `api.json`
//! and `api-token` in the data folder.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::{World, interrupt};

fn post(url: &str, secret: &str, body: serde_json::Value) -> serde_json::Value {
    call(reqwest::Method::POST, url, secret, body)
}

#[test]
fn queue_lists_pauses_resumes_and_cancels_jobs_of_a_running_server() {
    let world = World::new();
    let run = world.run(&["queue"]);
    run.code(3);
    assert!(
        run.stderr
            .contains("hint: start the app, or run `mcache serve`"),
        "{}",
        run.stderr
    );

    let mut server = world
        .command()
        .args(["--max-rate", "1MiB/s", "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    // The first line is the UI's address with the secret in its fragment.
    let url = url
        .trim()
        .split('#')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let discovery: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.data_dir().join("api.json")).unwrap()).unwrap();
    assert_eq!(discovery["url"], url.as_str());
    assert_eq!(discovery["secret_file"], "api-token");

    // A second server on the same folder is refused while the first runs.
    let second = world.run(&["serve"]);
    assert_ne!(second.code, 0);
    assert!(second.stderr.contains("already uses"), "{}", second.stderr);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.data_dir().join("api.json")).unwrap()).unwrap();
    assert_eq!(record, discovery, "the first server's record is untouched");

    assert_eq!(
        world.run(&["--json", "queue"]).json(),
        serde_json::json!([])
    );
    let secret = std::fs::read_to_string(world.data_dir().join("api-token")).unwrap();
    let job = post(
        &format!("{url}/api/pulls"),
        secret.trim(),
        serde_json::json!({ "repo": "demo/big" }),
    );
    let id = job["job_id"].as_u64().expect("a job id");

    let jobs = world.run(&["--json", "queue", "list"]).json();
    assert_eq!(jobs[0]["id"], id, "{jobs}");
    let table = world.run(&["queue"]);
    assert!(table.ok().contains("demo/big"), "{}", table.stdout);

    let paused = world
        .run(&["--json", "queue", "pause", &id.to_string()])
        .json();
    assert_eq!(paused["state"], "paused", "{paused}");
    let resumed = world
        .run(&["--json", "queue", "resume", &id.to_string()])
        .json();
    assert_ne!(resumed["state"], "paused", "{resumed}");
    let cancelled = world
        .run(&["--json", "queue", "cancel", &id.to_string()])
        .json();
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    world.run(&["queue", "pause", "999999"]).code(3);

    interrupt(server.id());
    assert_eq!(server.wait().unwrap().code(), Some(0));
    assert!(
        !world.data_dir().join("api.json").exists(),
        "discovery removed at shutdown"
    );
}

fn call(
    method: reqwest::Method,
    url: &str,
    secret: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .request(method, url)
            .bearer_auth(secret)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        response.json().await.unwrap()
    })
}

#[test]
fn a_demo_session_never_touches_the_real_cache_token_or_settings() {
    let world = World::new();
    let mut server = world
        .command()
        .args(["serve", "--demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let (url, secret) = line.trim().split_once("#token=").unwrap();
    let url = url.trim_end_matches('/').to_string();
    let demo = world.data_dir().join("demo");

    // Log in with the demo token, change a setting, pull a model: all of it in the demo's
    // own folder.
    call(
        reqwest::Method::POST,
        &format!("{url}/api/token"),
        secret,
        serde_json::json!({ "token": hub_emulator::auth::DEMO_TOKEN }),
    );
    call(
        reqwest::Method::PUT,
        &format!("{url}/api/settings"),
        secret,
        serde_json::json!({ "max_rate_bps": "20MB/s" }),
    );
    let job = call(
        reqwest::Method::POST,
        &format!("{url}/api/pulls"),
        secret,
        serde_json::json!({ "repo": "demo/tiny-gguf", "variant": null }),
    );
    assert!(job["job_id"].as_u64().is_some(), "{job}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !demo.join("hub/models--demo--tiny-gguf/refs/main").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo pull finishes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    interrupt(server.id());
    assert_eq!(server.wait().unwrap().code(), Some(0));

    assert!(demo.join("token").exists() && demo.join("preferences.json").exists());
    assert!(
        !world.hf_home().join("token").exists(),
        "the real token file is untouched"
    );
    assert!(
        !world.data_dir().join("preferences.json").exists(),
        "the real preferences are untouched"
    );
    let real_models = std::fs::read_dir(world.hub_cache())
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(real_models, 0, "nothing was downloaded into the real cache");
}
