//! A restart test with a real process: a child runs the queue, is killed with `SIGKILL` while
//! its jobs are half done, and a second child started on the same cache and index finishes every
//! job by itself, fetching only what was not on disk yet.

mod scheduler_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hub_emulator::{Emulator, EmulatorConfig, Fault, FaultRule};
use model_cache::index::Index;
use model_cache::index::queue::{self, QueueState};
use scheduler_support::*;

const SIZE: u64 = 3 * 1024 * 1024;
const CHUNK_BYTES: u64 = 64 * 1024;

/// The `queue_child` example binary, built by `cargo test` next to the test binaries (built
/// here if a filtered run skipped it).
fn child_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let binary = profile_dir
        .join("examples")
        .join(format!("queue_child{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command.args(["build", "-p", "model-cache", "--example", "queue_child"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("cargo runs");
        assert!(status.success(), "building the queue_child example failed");
    }
    binary
}

fn spawn(endpoint: &str, root: &Path, enqueue: &[&str]) -> Child {
    let mut command = Command::new(child_binary());
    command
        .args(["--endpoint", endpoint])
        .arg("--root")
        .arg(root)
        .args(["--chunk", &CHUNK_BYTES.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for repo in enqueue {
        command.args(["--enqueue", repo]);
    }
    command.spawn().expect("child starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_halfway_and_restarted_every_job_finishes_and_nothing_is_fetched_twice() {
    let emulator = Emulator::start(EmulatorConfig {
        repos: vec![model_repo("t/one", SIZE, 21), model_repo("t/two", SIZE, 22)],
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    // Slow enough that the kill lands mid-download; cleared before the restart.
    emulator
        .faults()
        .set(FaultRule::global(Fault::TotalBandwidth(256 * 1024)).on("/cdn/*"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut first = spawn(&emulator.url(), root, &["t/one", "t/two"]);

    // Wait until both jobs are running with a good part of their bytes recorded.
    let index = loop {
        if let Ok(index) = Index::open(&root.join("data")) {
            break index;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let jobs = index.with_conn("read jobs", queue::list).unwrap();
        let done: u64 = jobs.iter().map(|j| j.bytes_done).sum();
        if jobs.len() == 2 && done >= SIZE / 2 {
            assert!(
                jobs.iter().all(|j| j.state == QueueState::Running),
                "{jobs:#?}"
            );
            break;
        }
        assert!(first.try_wait().unwrap().is_none(), "the child ended early");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never half done: {jobs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().expect("SIGKILL");
    first.wait().unwrap();
    let jobs = index.with_conn("read jobs", queue::list).unwrap();
    assert!(
        jobs.iter().all(|j| j.state == QueueState::Running),
        "a killed process leaves its jobs running in the index: {jobs:#?}"
    );
    let served_before = emulator.bytes_served();
    assert!(served_before < 2 * SIZE, "killed before the end");

    emulator.faults().clear();
    let second = spawn(&emulator.url(), root, &[]);
    let output = tokio::task::spawn_blocking(move || second.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "second child failed: {stdout}");

    let jobs = index.with_conn("read jobs", queue::list).unwrap();
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        assert_eq!(job.state, QueueState::Done, "{job:#?}");
        let snapshot = snapshot_of(&root.join("hub"), &job.repo.id).unwrap();
        assert_eq!(
            std::fs::metadata(snapshot.join("model.gguf"))
                .unwrap()
                .len(),
            SIZE
        );
    }
    // Each model file crossed the wire once, give or take the chunks in flight at the kill.
    let in_flight = 4 * CHUNK_BYTES;
    eprintln!(
        "served before the kill: {served_before}; model bytes served in all: {} for {} bytes",
        emulator.log().bytes_served_matching("model.gguf"),
        2 * SIZE
    );
    let model_bytes = emulator.log().bytes_served_matching("model.gguf");
    assert!(model_bytes >= 2 * SIZE);
    assert!(
        model_bytes <= 2 * SIZE + in_flight,
        "{model_bytes} bytes served for {} bytes of models",
        2 * SIZE
    );
}
