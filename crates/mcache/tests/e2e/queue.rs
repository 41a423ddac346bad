//! `mcache serve` and `mcache queue`: the queue of a running local API, found through `api.json`
//! and `api-token` in the data folder.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::{World, interrupt};

fn post(url: &str, secret: &str, body: serde_json::Value) -> serde_json::Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(url)
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
