//! The downloader across processes and file systems: a pull killed with SIGKILL and resumed,
//! two processes pulling one file at once, and a disk that fills up.

mod download_support;

mod tiny_disk;

use model_cache::error::ErrorKind;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tiny_disk::TinyDisk;

use download_support::*;
use hub_emulator::{Emulator, EmulatorConfig, Fault, FaultRule};
use model_cache::download::DownloadEvent;
use model_cache::index::Index;
use model_cache::index::transfers;

fn spawn_child(
    emulator: &Emulator,
    dir: &Path,
    file: &str,
    chunk: u64,
    rate: u64,
    connections: usize,
) -> Child {
    Command::new(child_binary())
        .args([
            emulator.url(),
            dir.join("hub").display().to_string(),
            dir.join("data").display().to_string(),
            "demo/big".into(),
            file.into(),
            chunk.to_string(),
            rate.to_string(),
            connections.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child starts")
}

fn recorded_chunks(index: &Index) -> Vec<transfers::DoneChunk> {
    index
        .with_conn("read chunks", |c| {
            let mut all = Vec::new();
            for job in transfers::list(c)? {
                all.extend(transfers::done_chunks(c, job.id)?);
            }
            Ok(all)
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pull_resumes_with_only_unrecorded_chunks() {
    let emulator = Emulator::start(EmulatorConfig::demo_with_big_size(8 << 20))
        .await
        .unwrap();
    let size = upstream_bytes(&emulator, "demo/big", "main", BIG).len() as u64;
    // Slow the CDN down so the kill lands mid-transfer.
    emulator
        .faults()
        .set(FaultRule::global(Fault::ConnectionBandwidth(500_000)).on("/cdn/*"));
    let dir = tempfile::tempdir().unwrap();
    let chunk = 256 * 1024;
    let connections = 4;
    let mut child = spawn_child(&emulator, dir.path(), BIG, chunk, 0, connections);

    // Wait for a few recorded chunks, then SIGKILL.
    let data_dir = dir.path().join("data");
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended before it was killed: {status}");
        }
        if data_dir.join("index.sqlite3").exists()
            && let Ok(index) = Index::open(&data_dir)
            && recorded_chunks(&index).len() >= 6
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let served_at_kill = emulator.bytes_served();
    let index = Index::open(&data_dir).unwrap();
    let recorded = recorded_chunks(&index);
    let recorded_bytes: u64 = recorded
        .iter()
        .map(|c| (c.index * chunk + chunk).min(size) - c.index * chunk)
        .sum();
    assert!(recorded_bytes < size, "the kill came before the end");
    // What was served and not recorded was in flight: at most one chunk per connection.
    let lost = served_at_kill - recorded_bytes;
    assert!(
        lost <= connections as u64 * chunk,
        "{lost} bytes lost, more than {connections} chunks in flight"
    );

    // Restart (in this process, at full speed): only the chunks not recorded are fetched.
    emulator.faults().clear();
    let mut settings = test_settings(dir.path(), emulator.url());
    settings.limits.chunk_size = 1024 * 1024; // The job keeps the chunk size it started with.
    let (downloader, _) = downloader(&settings);
    let reporter = recorder();
    let summary = downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap();
    let refetched = emulator.bytes_served() - served_at_kill;
    assert_eq!(refetched, size - recorded_bytes);
    assert!(reporter.events().iter().any(|e| matches!(
        e,
        DownloadEvent::FileStarted { resumed_bytes, .. } if *resumed_bytes == recorded_bytes
    )));
    let linked = std::fs::read(&summary.files[0].snapshot_path).unwrap();
    assert!(linked == upstream_bytes(&emulator, "demo/big", "main", BIG));
    assert!(incomplete_files(&dir.path().join("hub")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_pulling_one_file_download_it_once() {
    let emulator = Emulator::start(EmulatorConfig::demo_with_big_size(4 << 20))
        .await
        .unwrap();
    let size = upstream_bytes(&emulator, "demo/big", "main", BIG).len() as u64;
    emulator
        .faults()
        .set(FaultRule::global(Fault::ConnectionBandwidth(2_000_000)).on("/cdn/*"));
    let dir = tempfile::tempdir().unwrap();
    let first = spawn_child(&emulator, dir.path(), BIG, 256 * 1024, 0, 4);
    let second = spawn_child(&emulator, dir.path(), BIG, 256 * 1024, 0, 4);
    let outputs = tokio::task::spawn_blocking(move || {
        [first, second].map(|child| child.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    let mut sources = Vec::new();
    for output in &outputs {
        assert!(
            output.status.success(),
            "a pull failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        sources.push(summary["files"][0]["source"].as_str().unwrap().to_string());
    }
    sources.sort();
    assert_eq!(sources, ["cached", "downloaded"]);
    // One download's worth of bytes.
    assert_eq!(emulator.bytes_served(), size);
    let snapshot = dir
        .path()
        .join("hub/models--demo--big/snapshots")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join(BIG);
    assert!(std::fs::read(snapshot).unwrap() == upstream_bytes(&emulator, "demo/big", "main", BIG));
}

#[tokio::test]
async fn a_full_disk_gives_a_clear_error_and_leaves_nothing_that_looks_complete() {
    let emulator = Emulator::start(EmulatorConfig::demo_with_big_size(4 << 20))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let disk = TinyDisk::mount(dir.path().join("hub"), "3m");
    let mut settings = test_settings(dir.path(), emulator.url());
    // One file at a time, so "the first fits, the second does not" is deterministic: with files
    // in parallel both may claim their space at once and both fail, which is also correct.
    settings.limits.files_at_once = 1;
    let (downloader, index) = downloader(&settings);

    // Too big for the disk at all: refused before any byte is fetched.
    let error = downloader
        .download(big_request(), recorder())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DiskFull, "{error}");
    let message = error.to_string();
    assert!(
        message.contains("bytes needed") && message.contains("bytes free"),
        "{message}"
    );
    assert!(incomplete_files(&disk.path).is_empty());
    assert!(
        !disk
            .path
            .join("models--demo--big/snapshots")
            .read_dir()
            .unwrap()
            .any(|_| true)
    );
    let unfinished = index
        .with_conn("list", transfers::list)
        .unwrap()
        .into_iter()
        .filter(|j| j.state != transfers::JobState::Done)
        .count();
    assert_eq!(unfinished, 0);

    // Two files that fit one at a time but not together: one lands, the other fails cleanly.
    let error = downloader
        .download(
            request(
                "demo/tiny-gguf",
                &["tiny-model-Q4_K_M.gguf", "tiny-model-Q5_K_M.gguf"],
            ),
            recorder(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DiskFull, "{error}");
    let repo = disk.path.join("models--demo--tiny-gguf");
    let linked: Vec<_> = std::fs::read_dir(repo.join("snapshots"))
        .unwrap()
        .flatten()
        .flat_map(|commit| std::fs::read_dir(commit.path()).unwrap().flatten())
        .collect();
    assert_eq!(linked.len(), 1, "exactly one file completed");
    let name = linked[0].file_name().to_string_lossy().into_owned();
    let expected = upstream_bytes(&emulator, "demo/tiny-gguf", "main", &name);
    assert!(std::fs::read(linked[0].path()).unwrap() == expected);
    assert!(incomplete_files(&disk.path).is_empty());
    let jobs = index.with_conn("list", transfers::list).unwrap();
    assert!(jobs.iter().all(|j| j.state == transfers::JobState::Done));
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_pulling_2_gib_peaks_under_64_mib_of_memory() {
    let size: u64 = 2 << 30;
    let emulator = Emulator::start(EmulatorConfig::demo_with_big_size(size))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The file lands on the temporary folder's disk: without room for it the pull cannot
    // finish, and the memory it measures would be that of a failure.
    use model_cache::policy::DiskProbe as _;
    let free = model_cache::policy::FsDiskProbe
        .space(dir.path())
        .map_or(u64::MAX, |s| s.available);
    if free < size + (1 << 30) {
        eprintln!(
            "NOT MEASURED: {free} bytes free where the file would land; the 2 GiB pull needs {}",
            size + (1 << 30)
        );
        return;
    }
    let child = spawn_child(&emulator, dir.path(), BIG, 5 << 20, 0, 8);
    let pid = child.id();
    // The kernel's own peak (`VmHWM`, a high-water mark) read while it runs.
    let watcher = std::thread::spawn(move || {
        let mut peak_kib = 0u64;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        peak_kib
    });
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the pull failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // `demo/big` is about `size` bytes: the GGUF's header and vocabulary come on top.
    assert!(summary["files"][0]["size"].as_u64().unwrap() >= size);
    let peak = watcher.join().unwrap();
    eprintln!("pulling {size} bytes: peak memory (VmHWM) {peak} KiB");
    assert!(peak > 0, "VmHWM was read while the child ran");
    assert!(
        peak <= 64 * 1024,
        "peak memory {peak} KiB pulling {size} bytes"
    );
}
