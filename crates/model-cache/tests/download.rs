//! The downloader against the hub emulator: the happy path, every injected fault, control,
//! sharing and offline mode.

mod download_support;

use model_cache::error::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use download_support::*;
use hub_emulator::auth::DEMO_TOKEN;
use hub_emulator::{EmulatorConfig, Fault, FaultRule, FileChange, Listener, Repo, RepoKind};
use model_cache::download::{ChannelReporter, DownloadEvent, FileSource};
use model_cache::index::transfers;
use model_cache::store::MAX_FILE_NAME_BYTES;
use model_cache::{RepoId, Token};

/// Asserts the snapshot file holds exactly `expected`, through a symlink into `blobs/`, and
/// that no `.incomplete` is left.
fn assert_linked(rig: &Rig, repo: &str, commit: &str, path: &str, expected: &[u8]) {
    let folder = RepoId::model(repo).unwrap().folder_name();
    let snapshot = rig
        .settings
        .hub_cache
        .join(&folder)
        .join("snapshots")
        .join(commit)
        .join(path);
    let target = std::fs::read_link(&snapshot).expect("snapshot entry is a symlink");
    assert!(
        target.starts_with("../../blobs"),
        "relative link: {target:?}"
    );
    let bytes = std::fs::read(&snapshot).unwrap();
    assert_eq!(bytes.len(), expected.len());
    assert!(bytes == expected, "content differs from upstream");
    assert!(incomplete_files(&rig.settings.hub_cache).is_empty());
}

#[tokio::test]
async fn parallel_download_of_many_chunks_is_verified_and_linked() {
    let rig = rig().await;
    let reporter = recorder();
    let summary = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    let size = expected.len() as u64;
    assert!(size >= BIG_SIZE);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
    assert_eq!(summary.files[0].source, FileSource::Downloaded);
    assert_eq!(summary.bytes_downloaded, size);

    let events = reporter.events();
    let chunks = size.div_ceil(CHUNK);
    assert_eq!(
        count(&events, |e| matches!(e, DownloadEvent::ChunkDone { .. })) as u64,
        chunks
    );
    assert_eq!(
        count(
            &events,
            |e| matches!(e, DownloadEvent::Verified { algorithm, .. } if algorithm == "sha256")
        ),
        1
    );
    assert!(matches!(
        events.last(),
        Some(DownloadEvent::Finished { .. })
    ));
    // One range request per chunk, every byte served once, all from the CDN.
    assert!(rig.emulator.log().range_requests() as u64 >= chunks);
    assert_eq!(rig.emulator.bytes_served(), size);
    // `refs/main` is the commit, with no newline.
    let folder = rig.settings.hub_cache.join("models--demo--big");
    assert_eq!(
        std::fs::read_to_string(folder.join("refs/main")).unwrap(),
        summary.commit
    );
    // The job is done and its chunk rows are gone.
    let jobs = rig.index.with_conn("list", transfers::list).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, transfers::JobState::Done);
    let chunks_left = rig
        .index
        .with_conn("chunks", |c| transfers::done_chunks(c, jobs[0].id))
        .unwrap();
    assert!(chunks_left.is_empty());
}

#[tokio::test]
async fn whole_repo_download_includes_git_files_checked_with_git_sha1() {
    let rig = rig().await;
    let reporter = recorder();
    let mut request = request("demo/tiny-safetensors", &[]);
    request.files.clear();
    let summary = rig
        .downloader
        .download(request, reporter.clone())
        .await
        .unwrap();
    assert!(summary.files.len() >= 4, "{:?}", summary.files);
    for file in &summary.files {
        let expected = upstream_bytes(&rig.emulator, "demo/tiny-safetensors", "main", &file.path);
        assert_linked(
            &rig,
            "demo/tiny-safetensors",
            &summary.commit,
            &file.path,
            &expected,
        );
    }
    let events = reporter.events();
    assert!(
        count(
            &events,
            |e| matches!(e, DownloadEvent::Verified { algorithm, .. } if algorithm == "git-sha1")
        ) >= 1
    );
    assert!(
        count(
            &events,
            |e| matches!(e, DownloadEvent::Verified { algorithm, .. } if algorithm == "sha256")
        ) >= 1
    );
}

/// HEAD requests on `resolve` URLs, per file name.
fn heads(rig: &Rig) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in rig.emulator.requests() {
        if r.method == "HEAD" && r.path.contains("/resolve/") {
            let name = r.path.rsplit('/').next().unwrap_or_default().to_string();
            *out.entry(name).or_insert(0) += 1;
        }
    }
    out
}

#[tokio::test]
async fn files_the_listing_describes_need_no_head_each() {
    // Chunks of 1 MiB: every file of the repo but the big weights is one request's worth.
    let rig = rig_with(EmulatorConfig::demo_with_big_size(4 << 20), |s| {
        s.limits.chunk_size = 1 << 20;
    })
    .await;
    let mut whole = request("demo/tiny-safetensors", &[]);
    whole.files.clear();
    let summary = rig.downloader.download(whole, recorder()).await.unwrap();
    assert!(summary.files.len() >= 4, "{:?}", summary.files);
    for file in &summary.files {
        let expected = upstream_bytes(&rig.emulator, "demo/tiny-safetensors", "main", &file.path);
        assert_linked(
            &rig,
            "demo/tiny-safetensors",
            &summary.commit,
            &file.path,
            &expected,
        );
    }
    let small: Vec<&str> = summary
        .files
        .iter()
        .filter(|f| f.size <= 1 << 20)
        .map(|f| f.path.as_str())
        .collect();
    assert!(!small.is_empty());
    let asked = heads(&rig);
    for path in &small {
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(asked.get(name), None, "no HEAD for {path}: {asked:?}");
    }
    // Files named by the caller: one listing instead of a HEAD each; the big file (4 chunks)
    // still gets the one HEAD its range requests share.
    let named = request("demo/big", &[BIG, "config.json", "README.md"]);
    let summary = rig.downloader.download(named, recorder()).await.unwrap();
    assert_eq!(summary.files.len(), 3);
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
    let asked = heads(&rig);
    assert_eq!(asked.get(BIG), Some(&1), "{asked:?}");
    assert_eq!(asked.get("config.json"), None, "{asked:?}");
    assert_eq!(asked.get("README.md"), None, "{asked:?}");
}

#[tokio::test]
async fn dropped_connections_resume_from_the_byte_reached() {
    let rig = rig().await;
    // Five responses are cut after 20 000 bytes: each reconnects from where it stopped.
    rig.emulator.faults().set(
        FaultRule::global(Fault::DropAfter(20_000))
            .on("/cdn/*")
            .times(5),
    );
    let reporter = recorder();
    let summary = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
    let events = reporter.events();
    assert!(count(&events, |e| matches!(e, DownloadEvent::Retrying { .. })) >= 5);
    // No byte fetched twice: a drop resumes at the byte it reached, not at the chunk start.
    assert_eq!(rig.emulator.bytes_served(), expected.len() as u64);
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried() {
    let rig = rig().await;
    // Rules match together, so each kind gets a download of its own.
    rig.emulator.faults().set(
        FaultRule::global(Fault::ServerError(503))
            .on("/cdn/*")
            .times(4),
    );
    let reporter = recorder();
    let summary = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
    let retried = |events: &[DownloadEvent], what: &str| {
        count(
            events,
            |e| matches!(e, DownloadEvent::Retrying { reason, .. } if reason.contains(what)),
        )
    };
    assert_eq!(retried(&reporter.events(), "503"), 4);

    rig.emulator.faults().set(
        FaultRule::global(Fault::RateLimit { retry_after: 1 })
            .on("/cdn/*")
            .times(2),
    );
    let file = "tiny-model-Q4_K_M.gguf";
    let reporter = recorder();
    let summary = rig
        .downloader
        .download(request("demo/tiny-gguf", &[file]), reporter.clone())
        .await
        .unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/tiny-gguf", "main", file);
    assert_linked(&rig, "demo/tiny-gguf", &summary.commit, file, &expected);
    assert_eq!(retried(&reporter.events(), "Rate limited"), 2);
}

#[tokio::test]
async fn a_server_that_keeps_failing_exhausts_the_budget_and_links_nothing() {
    let rig = rig().await;
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::ServerError(500)).on("/cdn/*"));
    let error = rig
        .downloader
        .download(big_request(), recorder())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RetriesExhausted, "{error}");
    assert!(error.to_string().contains("500"), "{error}");
    assert!(
        !rig.settings
            .hub_cache
            .join("models--demo--big/snapshots")
            .read_dir()
            .unwrap()
            .any(|_| true)
    );
}

#[tokio::test]
async fn stalled_connections_are_replaced() {
    let rig = rig_with(EmulatorConfig::demo_with_big_size(BIG_SIZE), |s| {
        s.timeouts.stall = Duration::from_millis(300);
    })
    .await;
    // Three responses go silent for a minute after 10 000 bytes.
    rig.emulator.faults().set(
        FaultRule::global(Fault::Stall {
            after_bytes: 10_000,
            duration: Duration::from_secs(60),
        })
        .on("/cdn/*")
        .times(3),
    );
    let reporter = recorder();
    let summary = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
    // A stall is not a failed attempt.
    assert_eq!(
        count(&reporter.events(), |e| matches!(
            e,
            DownloadEvent::Retrying { .. }
        )),
        0
    );
    assert_eq!(rig.emulator.bytes_served(), expected.len() as u64);
}

#[tokio::test]
async fn a_server_that_ignores_range_is_downloaded_in_one_stream() {
    let rig = rig().await;
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::IgnoreRange).on("/cdn/*"));
    let summary = rig
        .downloader
        .download(big_request(), recorder())
        .await
        .unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
    // The last request was a plain GET without Range.
    let last = rig.emulator.requests().into_iter().last().unwrap();
    assert!(last.range.is_none());
}

#[tokio::test]
async fn a_dropped_stream_from_a_server_that_ignores_range_starts_again_at_byte_zero() {
    // One connection, so that few ranged requests come before the switch to one stream.
    let rig = rig_with(EmulatorConfig::demo_with_big_size(BIG_SIZE), |s| {
        s.limits.connections = 1;
        s.limits.connections_per_host = 1;
    })
    .await;
    let faults = rig.emulator.faults();
    faults.set(FaultRule::global(Fault::IgnoreRange).on("/cdn/*"));
    faults.set(
        FaultRule::global(Fault::DropAfter(20_000))
            .on("/cdn/*")
            .times(4),
    );
    let reporter = recorder();
    let summary = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
    let whole_file_gets = rig
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/cdn/") && r.range.is_none())
        .count();
    assert!(
        whole_file_gets >= 2,
        "a dropped stream reconnects without Range: {whole_file_gets} GET(s)"
    );
    let events = reporter.events();
    assert!(count(&events, |e| matches!(e, DownloadEvent::Retrying { .. })) >= 2);
}

#[tokio::test]
async fn an_upstream_change_mid_download_restarts_the_file_without_mixing_versions() {
    let rig = rig().await;
    // Slow enough that the change lands mid-transfer.
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::ConnectionBandwidth(400_000)).on("/cdn/*"));
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let handle = rig
        .downloader
        .start(big_request(), Arc::new(ChannelReporter(sender)));
    let old_commit = loop {
        match receiver.recv().await.expect("events until the change") {
            DownloadEvent::ChunkDone { .. } => break None::<String>,
            _ => continue,
        }
    };
    assert!(old_commit.is_none());
    let new_commit = rig
        .emulator
        .change_file(RepoKind::Model, "demo/big", "main", BIG)
        .unwrap();
    rig.emulator.faults().clear();
    let summary = handle.wait().await.unwrap();
    let mut restarted = false;
    while let Ok(event) = receiver.try_recv() {
        restarted |= matches!(event, DownloadEvent::Restarted { .. });
    }
    assert!(restarted, "the file was restarted");
    assert_eq!(summary.commit, new_commit);
    let new_bytes = upstream_bytes(&rig.emulator, "demo/big", &new_commit, BIG);
    assert_linked(&rig, "demo/big", &new_commit, BIG, &new_bytes);
    // Exactly one blob: the new version's, never a mix.
    let blobs: Vec<_> = std::fs::read_dir(rig.settings.hub_cache.join("models--demo--big/blobs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(blobs.len(), 1);
    let new_etag = rig
        .emulator
        .file_etag(RepoKind::Model, "demo/big", &new_commit, BIG)
        .unwrap();
    assert_eq!(blobs[0].file_name().to_string_lossy(), new_etag);
}

#[tokio::test]
async fn transient_corruption_is_detected_and_refetched() {
    let rig = rig().await;
    rig.emulator.faults().set(
        // Whichever response comes first is corrupted, wherever its range lies.
        FaultRule::global(Fault::Corrupt {
            start: 0,
            end: u64::MAX / 2,
        })
        .on("/cdn/*")
        .times(1),
    );
    let reporter = recorder();
    let summary = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
    assert!(
        count(
            &reporter.events(),
            |e| matches!(e, DownloadEvent::Retrying { reason, .. } if reason.contains("mismatch"))
        ) >= 1
    );
}

#[tokio::test]
async fn persistent_corruption_fails_and_links_nothing() {
    let rig = rig().await;
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::Corrupt { start: 10, end: 20 }).on("/cdn/*"));
    let reporter = recorder();
    let error = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Integrity, "{error}");
    assert!(error.to_string().contains("sha256"), "{error}");
    let repo = rig.settings.hub_cache.join("models--demo--big");
    assert!(
        !repo.join("snapshots").read_dir().unwrap().any(|_| true),
        "nothing linked"
    );
    assert!(
        !repo.join("blobs").read_dir().unwrap().any(|_| true),
        "no blob, no .incomplete"
    );
    assert!(!repo.join("refs/main").exists());
    let jobs = rig.index.with_conn("list", transfers::list).unwrap();
    assert_eq!(jobs[0].state, transfers::JobState::Failed);
    assert!(
        count(
            &reporter.events(),
            |e| matches!(e, DownloadEvent::Failed { kind, .. } if kind == "integrity")
        ) == 1
    );
}

#[tokio::test]
async fn hostile_file_names_are_refused_before_any_write() {
    let mut repo = Repo::new(RepoKind::Model, "evil/repo");
    repo.commit(
        "main",
        "Hostile",
        vec![
            FileChange::put("ok.txt", "fine\n"),
            FileChange::put("../evil.txt", "escaped\n"),
        ],
    );
    let mut config = EmulatorConfig::demo_with_big_size(BIG_SIZE);
    config.repos.push(repo);
    let rig = rig_with(config, |_| {}).await;
    let mut request = request("evil/repo", &[]);
    request.files.clear();
    let error = rig
        .downloader
        .download(request, recorder())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnsafePath, "{error}");
    assert!(error.to_string().contains("../evil.txt"), "{error}");
    assert!(!rig.settings.hub_cache.join("models--evil--repo").exists());
    assert!(!rig.settings.hub_cache.join("evil.txt").exists());
    assert!(!rig.dir.path().join("evil.txt").exists());
    // Asked for by name, it is refused too.
    let error = rig
        .downloader
        .download(
            download_support::request("evil/repo", &["../evil.txt"]),
            recorder(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnsafePath);
}

/// A file name too long for the cache to write (with the temp suffix of an atomic write) is
/// refused when the listing is checked: no partial file, not one byte of it requested. A name
/// at the limit downloads and links end to end.
#[tokio::test]
async fn an_over_long_file_name_is_refused_before_any_byte_and_one_at_the_limit_downloads() {
    let long = format!("sub/{}.bin", "n".repeat(246));
    let fits = format!("{}.bin", "f".repeat(MAX_FILE_NAME_BYTES - 4));
    let content: Vec<u8> = (0..3 * CHUNK).map(|i| (i % 251) as u8).collect();
    let mut long_repo = Repo::new(RepoKind::Model, "long/names");
    long_repo.commit(
        "main",
        "A 250-byte file name",
        vec![
            FileChange::put("ok.txt", "fine\n"),
            FileChange::put(long.clone(), content.clone()),
        ],
    );
    let mut fits_repo = Repo::new(RepoKind::Model, "long/fits");
    fits_repo.commit(
        "main",
        "A file name at the limit",
        vec![FileChange::put(fits.clone(), content.clone())],
    );
    let mut config = EmulatorConfig::demo_with_big_size(BIG_SIZE);
    config.repos.push(long_repo);
    config.repos.push(fits_repo);
    let rig = rig_with(config, |_| {}).await;

    let mut whole_repo = request("long/names", &[]);
    whole_repo.files.clear();
    for request in [whole_repo, request("long/names", &[long.as_str()])] {
        let error = rig
            .downloader
            .download(request, recorder())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnsafePath, "{error}");
        let message = error.to_string();
        assert!(message.contains("file name `nnnn"), "{message}");
        assert!(message.contains("250 bytes"), "{message}");
        assert!(
            message.contains(&format!("limit of {MAX_FILE_NAME_BYTES} bytes")),
            "{message}"
        );
    }
    assert!(
        !rig.settings.hub_cache.join("models--long--names").exists(),
        "nothing written, no partial file"
    );
    assert!(incomplete_files(&rig.settings.hub_cache).is_empty());
    let records = rig.emulator.requests();
    assert!(
        records.iter().all(|r| r.listener == Listener::Hub
            && !r.path.contains("/resolve/")
            && r.range.is_none()),
        "no file content requested: {records:#?}"
    );

    let mut request = request("long/fits", &[]);
    request.files.clear();
    let summary = rig.downloader.download(request, recorder()).await.unwrap();
    assert!(
        summary.files.iter().any(|f| f.path == fits),
        "{:?}",
        summary.files
    );
    assert_linked(&rig, "long/fits", &summary.commit, &fits, &content);
}

#[tokio::test]
async fn a_gated_repo_listed_without_access_is_reported_as_gated() {
    // The listing answers; the files are refused. The metadata the listing gave is not the
    // end of it: a HEAD asks why, and the answer is "gated", with where to ask for access.
    // Chunks of 64 MiB: every file of the repo is one request's worth, described by the listing.
    let rig = rig_with(EmulatorConfig::demo_with_big_size(BIG_SIZE), |s| {
        s.limits.chunk_size = 64 << 20;
    })
    .await;
    let mut whole = request("demo/gated", &[]);
    whole.files.clear();
    let error = rig
        .downloader
        .download(whole, recorder())
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        model_cache::error::ErrorKind::Gated,
        "{error}"
    );
    assert!(
        error
            .hints()
            .iter()
            .any(|h| matches!(h, model_cache::error::Hint::RequestAccess { .. })),
        "{error}"
    );
}

#[tokio::test]
async fn the_token_goes_to_the_hub_but_never_to_the_cdn() {
    let rig = rig_with(EmulatorConfig::demo_with_big_size(BIG_SIZE), |s| {
        s.token = Token::new(DEMO_TOKEN);
    })
    .await;
    let summary = rig
        .downloader
        .download(
            request("demo/gated", &["model-Q4_K_M.gguf", "config.json"]),
            recorder(),
        )
        .await
        .unwrap();
    assert_eq!(summary.files.len(), 2);
    let records = rig.emulator.requests();
    assert!(
        records
            .iter()
            .any(|r| r.listener == hub_emulator::Listener::Hub && r.authorization.is_some())
    );
    assert!(
        records
            .iter()
            .any(|r| r.listener == hub_emulator::Listener::Cdn)
    );
    assert!(!rig.emulator.log().cdn_saw_authorization());
}

#[tokio::test]
async fn an_existing_blob_is_linked_not_downloaded() {
    let rig = rig().await;
    let first = rig
        .downloader
        .download(big_request(), recorder())
        .await
        .unwrap();
    // Same repo again: nothing is fetched.
    let served = rig.emulator.bytes_served();
    let reporter = recorder();
    let again = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap();
    assert_eq!(again.files[0].source, FileSource::Cached);
    let size = upstream_bytes(&rig.emulator, "demo/big", "main", BIG).len() as u64;
    assert_eq!(again.bytes_saved, size);
    assert_eq!(rig.emulator.bytes_served(), served);
    assert!(
        count(
            &reporter.events(),
            |e| matches!(e, DownloadEvent::Skipped { reason, bytes_saved, .. } if reason == "cached" && *bytes_saved == size)
        ) == 1
    );

    // Another repo holding the same bytes: the blob is shared, not downloaded.
    let body = rig
        .emulator
        .catalog()
        .file(RepoKind::Model, "demo/big", "main", BIG)
        .unwrap()
        .body
        .clone();
    let mut copy = Repo::new(RepoKind::Model, "other/copy");
    copy.commit(
        "main",
        "Same weights",
        vec![FileChange::put("weights.gguf", body)],
    );
    rig.emulator.add_repo(copy);
    let cdn_before = rig
        .emulator
        .log()
        .bytes_served_matching(&first.files[0].etag);
    let reporter = recorder();
    let shared = rig
        .downloader
        .download(request("other/copy", &["weights.gguf"]), reporter.clone())
        .await
        .unwrap();
    assert_eq!(shared.files[0].source, FileSource::SharedBlob);
    assert_eq!(shared.bytes_saved, size);
    assert_eq!(shared.bytes_downloaded, 0);
    assert_eq!(
        rig.emulator
            .log()
            .bytes_served_matching(&first.files[0].etag),
        cdn_before
    );
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(
        &rig,
        "other/copy",
        &shared.commit,
        "weights.gguf",
        &expected,
    );
    assert!(
        count(
            &reporter.events(),
            |e| matches!(e, DownloadEvent::Skipped { reason, .. } if reason == "shared_blob")
        ) == 1
    );
    let metrics = rig.index.metrics().unwrap();
    assert_eq!(metrics.get("bytes_saved"), Some(&(2 * size as i64)));
}

#[tokio::test]
async fn pause_keeps_progress_and_resume_finishes() {
    let rig = rig().await;
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::ConnectionBandwidth(300_000)).on("/cdn/*"));
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let handle = rig
        .downloader
        .start(big_request(), Arc::new(ChannelReporter(sender)));
    while !matches!(
        receiver.recv().await.unwrap(),
        DownloadEvent::ChunkDone { .. }
    ) {}
    handle.control().pause();
    while !matches!(receiver.recv().await.unwrap(), DownloadEvent::Paused { .. }) {}
    // Paused: every connection is closed; progress stays recorded.
    let jobs = rig.index.with_conn("list", transfers::list).unwrap();
    let recorded = rig
        .index
        .with_conn("chunks", |c| transfers::done_chunks(c, jobs[0].id))
        .unwrap();
    assert!(!recorded.is_empty());
    rig.emulator.faults().clear();
    handle.control().resume();
    let summary = handle.wait().await.unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
    let mut resumed = false;
    while let Ok(event) = receiver.try_recv() {
        resumed |= matches!(event, DownloadEvent::Resumed { .. });
    }
    assert!(resumed);
}

#[tokio::test]
async fn cancel_removes_what_the_job_created_and_nothing_else() {
    let rig = rig().await;
    // A finished file of another repo must survive the cancel.
    let kept = rig
        .downloader
        .download(
            request("demo/tiny-safetensors", &["config.json"]),
            recorder(),
        )
        .await
        .unwrap();
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::ConnectionBandwidth(300_000)).on("/cdn/*"));
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let handle = rig
        .downloader
        .start(big_request(), Arc::new(ChannelReporter(sender)));
    while !matches!(
        receiver.recv().await.unwrap(),
        DownloadEvent::ChunkDone { .. }
    ) {}
    handle.control().cancel();
    let error = handle.wait().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Cancelled, "{error}");
    assert!(incomplete_files(&rig.settings.hub_cache).is_empty());
    let jobs = rig.index.with_conn("list", transfers::list).unwrap();
    assert!(jobs.iter().all(|j| {
        j.etag
            != rig
                .emulator
                .file_etag(RepoKind::Model, "demo/big", "main", BIG)
                .unwrap()
    }));
    assert!(kept.files[0].snapshot_path.is_file());
}

#[tokio::test]
async fn the_bandwidth_limit_can_change_while_running() {
    let rig = rig().await;
    rig.downloader.set_rate(Some(1_000_000));
    let handle = rig.downloader.start(big_request(), recorder());
    assert_eq!(rig.downloader.limits().bandwidth().rate(), Some(1_000_000));
    rig.downloader.set_rate(None);
    assert_eq!(rig.downloader.limits().bandwidth().rate(), None);
    let summary = handle.wait().await.unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
}

#[tokio::test]
async fn offline_mode_serves_the_cache_and_names_what_is_missing() {
    let rig = rig().await;
    let mut offline = rig.settings.clone();
    offline.offline = true;
    let (offline_downloader, _) = downloader(&offline);
    let error = offline_downloader
        .download(big_request(), recorder())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Offline, "{error}");
    assert!(error.to_string().contains("refs/main"), "{error}");
    let requests_before = rig.emulator.requests().len();

    rig.downloader
        .download(big_request(), recorder())
        .await
        .unwrap();
    let requests_online = rig.emulator.requests().len();
    assert!(requests_online > requests_before);
    let summary = offline_downloader
        .download(big_request(), recorder())
        .await
        .unwrap();
    assert_eq!(summary.files[0].source, FileSource::Cached);
    let error = offline_downloader
        .download(request("demo/big", &[BIG, "missing.bin"]), recorder())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("`missing.bin`"), "{error}");
    assert!(!error.to_string().contains(&format!("`{BIG}`")), "{error}");
    // Offline means no request at all.
    assert_eq!(rig.emulator.requests().len(), requests_online);
}

#[tokio::test]
async fn a_torn_chunk_found_at_verification_is_refetched_alone() {
    let rig = rig().await;
    // Stop a transfer part way: pause, then drop the downloader's work by cancelling would
    // delete it, so instead let it finish once and replay the state a crash would leave.
    let summary = rig
        .downloader
        .download(big_request(), recorder())
        .await
        .unwrap();
    let etag = summary.files[0].etag.clone();
    let repo_dir = rig.settings.hub_cache.join("models--demo--big");
    // Turn the finished blob back into a partial file with every chunk recorded, then tear
    // one chunk on disk, as a lying disk would. It gets the name earlier versions wrote
    // (`<etag>.incomplete`): the recorded job adopts it under the private name and resumes.
    std::fs::remove_file(repo_dir.join("snapshots").join(&summary.commit).join(BIG)).unwrap();
    let incomplete = repo_dir.join("blobs").join(format!("{etag}.incomplete"));
    std::fs::rename(repo_dir.join("blobs").join(&etag), &incomplete).unwrap();
    let mut bytes = std::fs::read(&incomplete).unwrap();
    let size = bytes.len() as u64;
    let chunks = size.div_ceil(CHUNK);
    let mut sums = Vec::new();
    for index in 0..chunks {
        let range = (index * CHUNK) as usize..((index + 1) * CHUNK).min(size) as usize;
        sums.push(transfers::DoneChunk {
            index,
            checksum: crc32(&bytes[range]),
        });
    }
    let job = rig
        .index
        .with_conn("create", |c| {
            let id = transfers::create(
                c,
                &transfers::NewTransferJob {
                    repo: "models--demo--big",
                    revision: "main",
                    commit: &summary.commit,
                    path: BIG,
                    etag: &etag,
                    size,
                    chunk_size: CHUNK,
                    validator: &etag,
                },
            )?;
            transfers::record_done(c, id, &sums)?;
            Ok(id)
        })
        .unwrap();
    let torn = 7 * CHUNK as usize + 123;
    bytes[torn] ^= 0xff;
    std::fs::write(&incomplete, &bytes).unwrap();
    rig.emulator.log().clear();

    let reporter = recorder();
    let again = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &again.commit, BIG, &expected);
    // Only the torn chunk crossed the network again.
    assert_eq!(rig.emulator.bytes_served(), CHUNK);
    assert!(reporter.events().iter().any(
        |e| matches!(e, DownloadEvent::FileStarted { resumed_bytes, .. } if *resumed_bytes == size)
    ));
    let state = rig
        .index
        .with_conn("get", |c| transfers::get(c, job))
        .unwrap()
        .unwrap();
    assert_eq!(state.state, transfers::JobState::Done);
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut hasher = model_cache::hash::ChunkChecksum::new();
    hasher.update(bytes);
    hasher.finalize()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_slow_stream_at_the_end_is_split_onto_fresh_connections() {
    const CHUNK_4M: u64 = 4 << 20;
    let rig = rig_with(EmulatorConfig::demo_with_big_size(16 << 20), |s| {
        s.limits.chunk_size = CHUNK_4M;
        s.limits.connections = 4;
        s.limits.connections_per_host = 4;
    })
    .await;
    // The first range request crawls; the others run at loopback speed and finish first, which
    // leaves one straggler holding up the end of the file.
    rig.emulator.faults().set(
        FaultRule::global(Fault::ConnectionBandwidth(256_000))
            .on("/cdn/*")
            .times(1),
    );
    let summary = rig
        .downloader
        .download(big_request(), recorder())
        .await
        .unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);

    let cdn: Vec<_> = rig
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.listener == hub_emulator::Listener::Cdn)
        .collect();
    let chunks = expected.len() as u64 / CHUNK_4M;
    assert!(
        cdn.len() as u64 > chunks,
        "the straggler's range was split: {} requests for {chunks} chunks",
        cdn.len()
    );
    let slow = &cdn[0];
    assert!(
        slow.bytes_sent < CHUNK_4M / 2,
        "the slow stream was relieved of most of its chunk, it sent {} bytes",
        slow.bytes_sent
    );
}

#[tokio::test]
async fn a_failed_job_resumes_its_recorded_chunks() {
    let rig = rig().await;
    // A slow link, so the download can be caught halfway...
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::TotalBandwidth(4 << 20)).on("/cdn/*"));
    let reporter = recorder();
    let handle = rig.downloader.start(big_request(), reporter.clone());
    loop {
        let halfway = reporter
            .events()
            .iter()
            .any(|e| matches!(e, DownloadEvent::Bytes { done, total, .. } if done * 2 >= *total));
        if halfway {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...where the CDN starts failing for good: the job fails after its retries.
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::ServerError(500)).on("/cdn/*"));
    let error = handle.wait().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RetriesExhausted, "{error}");
    rig.emulator.faults().clear();

    // The next attempt fetches what was missing, not the whole file again.
    let before = rig.emulator.bytes_served();
    let reporter = recorder();
    let summary = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap();
    let again = rig.emulator.bytes_served() - before;
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
    let resumed: u64 = reporter
        .events()
        .iter()
        .find_map(|e| match e {
            DownloadEvent::FileStarted { resumed_bytes, .. } => Some(*resumed_bytes),
            _ => None,
        })
        .unwrap();
    assert!(resumed > 0, "the recorded chunks are resumed");
    assert_eq!(
        again + resumed,
        expected.len() as u64,
        "exactly the bytes not recorded are fetched again"
    );
}

#[tokio::test]
async fn refs_never_point_at_a_partial_snapshot() {
    let rig = rig().await;
    let (good, bad) = ("tiny-model-Q4_K_M.gguf", "tiny-model-Q2_K.gguf");
    // One file of the request keeps failing: the other is linked, but `main` must not point at
    // a snapshot that lacks a requested file (huggingface_hub would take it as complete).
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::ServerError(500)).on("/cdn/*Q2_K.gguf"));
    let error = rig
        .downloader
        .download(request("demo/tiny-gguf", &[good, bad]), recorder())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RetriesExhausted, "{error}");
    let repo_dir = rig.settings.hub_cache.join("models--demo--tiny-gguf");
    assert!(
        !repo_dir.join("refs/main").exists(),
        "the ref does not move to a partial snapshot"
    );
    // Once every file is there, it does.
    rig.emulator.faults().clear();
    let summary = rig
        .downloader
        .download(request("demo/tiny-gguf", &[good, bad]), recorder())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        summary.commit
    );
    for file in [good, bad] {
        assert!(
            repo_dir
                .join("snapshots")
                .join(&summary.commit)
                .join(file)
                .is_file()
        );
    }
}

/// Stops a download of `BIG` halfway with a failure: its preallocated partial file stays.
async fn leave_a_partial_file(rig: &Rig) {
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::TotalBandwidth(4 << 20)).on("/cdn/*"));
    let reporter = recorder();
    let handle = rig.downloader.start(big_request(), reporter.clone());
    while !reporter
        .events()
        .iter()
        .any(|e| matches!(e, DownloadEvent::Bytes { done, total, .. } if done * 2 >= *total))
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::ServerError(500)).on("/cdn/*"));
    handle.wait().await.unwrap_err();
    rig.emulator.faults().clear();
}

#[tokio::test]
async fn python_never_adopts_our_partial_file() {
    let rig = rig().await;
    leave_a_partial_file(&rig).await;
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    let partials = incomplete_files(&rig.settings.hub_cache);
    assert_eq!(partials.len(), 1, "{partials:?}");
    assert_eq!(
        std::fs::metadata(&partials[0]).unwrap().len(),
        expected.len() as u64,
        "the partial file is preallocated to the full length"
    );
    assert!(
        std::fs::read(&partials[0]).unwrap() != expected,
        "the partial file does not hold the whole file yet"
    );

    // `huggingface_hub` 0.36 resumes `blobs/<etag>.incomplete` by appending, and takes one of
    // the full length as finished. Ours has another name: it downloads the file itself.
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let python = tokio::task::spawn_blocking(move || {
        hub_emulator::python::python_with_legacy_huggingface_hub(&target)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = std::process::Command::new(python);
    for name in ["HF_TOKEN", "HF_HOME", "HF_HUB_OFFLINE", "HF_HUB_CACHE"] {
        cmd.env_remove(name);
    }
    cmd.env("HF_ENDPOINT", rig.emulator.url())
        .env("HF_HUB_CACHE", &rig.settings.hub_cache)
        .env("HF_HOME", rig.settings.data_dir.join("hf-home"))
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .arg("-c")
        .arg(format!(
            "import huggingface_hub as h; print(h.__version__); print(h.hf_hub_download('demo/big', {BIG:?}))"
        ));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(hub_emulator::python::HF_HUB_LEGACY_VERSION)
    );
    let path = lines.next().unwrap();
    assert!(
        std::fs::read(path).unwrap() == expected,
        "huggingface_hub 0.36 returned a file with other bytes than upstream"
    );
}

#[tokio::test]
async fn the_sequential_fallback_never_rewrites_hashed_bytes() {
    let rig = rig_with(EmulatorConfig::demo_with_big_size(BIG_SIZE), |s| {
        s.limits.connections = 1;
        s.limits.connections_per_host = 1;
    })
    .await;
    // A server that ignores `Range`: the first ranged request gets the whole file (and the
    // switch to one stream), the stream drops after a few chunks, and the reconnect sends the
    // file again from byte 0 — with bytes the first stream already wrote (and the hasher
    // hashed) coming back different.
    let faults = rig.emulator.faults();
    faults.set(FaultRule::global(Fault::IgnoreRange).on("/cdn/*"));
    faults.set(
        FaultRule::global(Fault::DropAfter(300_000))
            .on("/cdn/*")
            .after(1)
            .times(1),
    );
    faults.set(
        FaultRule::global(Fault::Corrupt {
            start: 1000,
            end: 1010,
        })
        .on("/cdn/*")
        .after(2),
    );
    let summary = rig
        .downloader
        .download(big_request(), recorder())
        .await
        .unwrap();
    let gets: Vec<_> = rig
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/cdn/"))
        .collect();
    assert_eq!(gets.len(), 3, "one ranged try, then two whole-file streams");
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
}

#[tokio::test]
async fn a_slow_interrupted_pull_keeps_its_progress() {
    // Chunks far larger than what a slow link brings before each interruption: without the
    // written prefix of chunks in flight, every resume would start from zero.
    let rig = rig_with(EmulatorConfig::demo_with_big_size(BIG_SIZE), |s| {
        s.limits.chunk_size = 4 << 20;
        s.limits.checkpoint_every = Duration::from_millis(100);
        s.limits.checkpoint_bytes = 64 << 10;
    })
    .await;
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    let resumed_of = |reporter: &model_cache::download::RecordingReporter| {
        reporter
            .events()
            .iter()
            .find_map(|e| match e {
                DownloadEvent::FileStarted { resumed_bytes, .. } => Some(*resumed_bytes),
                _ => None,
            })
            .unwrap()
    };
    let mut resumed = Vec::new();
    for _ in 0..3 {
        // A slow link whose connections drop after 200 kB; the reconnects fail for good.
        let faults = rig.emulator.faults();
        faults.clear();
        faults.set(FaultRule::global(Fault::TotalBandwidth(300_000)).on("/cdn/*"));
        faults.set(FaultRule::global(Fault::DropAfter(200_000)).on("/cdn/*"));
        let reporter = recorder();
        let handle = rig.downloader.start(big_request(), reporter.clone());
        while !reporter
            .events()
            .iter()
            .any(|e| matches!(e, DownloadEvent::Bytes { .. }))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        faults.set(FaultRule::global(Fault::ServerError(500)).on("/cdn/*"));
        let error = handle.wait().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::RetriesExhausted, "{error}");
        resumed.push(resumed_of(&reporter));
    }
    rig.emulator.faults().clear();
    let before = rig.emulator.bytes_served();
    let reporter = recorder();
    let summary = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap();
    let again = rig.emulator.bytes_served() - before;
    let last = resumed_of(&reporter);
    resumed.push(last);
    println!("resumed bytes at each start: {resumed:?}");
    assert_eq!(resumed[0], 0, "the first attempt starts from nothing");
    assert!(
        resumed.windows(2).all(|w| w[1] > w[0]),
        "each interrupted attempt kept its progress: {resumed:?}"
    );
    assert_eq!(
        again + last,
        expected.len() as u64,
        "exactly the bytes not recorded are fetched again"
    );
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
}

#[tokio::test]
async fn an_expired_cdn_url_is_renewed() {
    // The Hub's redirects hand out signed CDN links that expire after a second; the download
    // takes several.
    let config = EmulatorConfig {
        signed_url_ttl: Some(Duration::from_secs(1)),
        ..EmulatorConfig::demo_with_big_size(BIG_SIZE)
    };
    let rig = rig_with(config, |_| {}).await;
    rig.emulator
        .faults()
        .set(FaultRule::global(Fault::TotalBandwidth(1_500_000)).on("/cdn/*"));
    let summary = rig
        .downloader
        .download(big_request(), recorder())
        .await
        .unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
    let requests = rig.emulator.requests();
    let refused = requests
        .iter()
        .filter(|r| r.path.starts_with("/cdn/") && r.status == 403)
        .count();
    let resolves = requests
        .iter()
        .filter(|r| r.method == "HEAD" && r.path.ends_with(&format!("/{BIG}")))
        .count();
    assert!(refused >= 1, "the link expired during the download");
    assert!(
        resolves >= 2,
        "a fresh link was asked for: {resolves} HEAD request(s)"
    );
}

#[tokio::test]
async fn a_blob_of_the_right_size_is_hashed_before_it_is_linked_unless_verified_as_it_is() {
    let rig = rig().await;
    let summary = rig
        .downloader
        .download(big_request(), recorder())
        .await
        .unwrap();
    let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
    let repo_dir = rig.settings.hub_cache.join("models--demo--big");
    let blob = repo_dir.join("blobs").join(&summary.files[0].etag);
    let link = repo_dir.join("snapshots").join(&summary.commit).join(BIG);

    // Unchanged since it was verified: linked again without a byte fetched.
    std::fs::remove_file(&link).unwrap();
    let before = rig.emulator.bytes_served();
    rig.downloader
        .download(big_request(), recorder())
        .await
        .unwrap();
    assert_eq!(
        rig.emulator.bytes_served(),
        before,
        "a verified blob is reused"
    );

    // Another tool left a blob of the right length with other bytes (as `huggingface_hub`
    // 0.36 does when it adopts a preallocated partial file): it is not trusted for its size.
    std::fs::remove_file(&link).unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1000..2000].fill(0);
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    let reporter = recorder();
    let summary = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .unwrap();
    assert_eq!(summary.files[0].source, FileSource::Downloaded);
    assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
}

#[tokio::test]
async fn a_file_without_a_published_hash_is_kept_only_over_https_and_marked_unverified() {
    let rig = rig().await;
    let repo = RepoId::model("demo/tiny-gguf").unwrap();
    let hub = model_cache::hub::HubClient::new(&rig.settings).unwrap();
    let mut meta = hub
        .file_metadata(&repo, "main", "config.json")
        .await
        .unwrap();
    // As a Hub that publishes no hash would answer: an etag that is neither a sha256 nor a git
    // sha1.
    meta.etag = "plain-etag-without-a-hash".into();
    meta.sha256 = None;
    meta.git_sha1 = None;
    meta.is_lfs = false;
    assert!(!meta.over_https, "the emulator is plain http");
    let given = |meta: &model_cache::hub::FileMetadata| model_cache::download::DownloadRequest {
        repo: repo.clone(),
        revision: meta.commit.clone(),
        files: vec![model_cache::download::FileSpec {
            path: "config.json".into(),
            metadata: Some(meta.clone()),
        }],
    };
    let before = rig.emulator.requests().len();
    let error = rig
        .downloader
        .download(given(&meta), recorder())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            model_cache::download::DownloadError::Unverifiable { .. }
        ),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::Integrity);
    assert_eq!(rig.emulator.requests().len(), before, "nothing was fetched");
    assert!(
        rig.settings
            .hub_cache
            .join(repo.folder_name())
            .join("snapshots")
            .read_dir()
            .map_or(true, |mut entries| entries.next().is_none()),
        "nothing was linked"
    );

    // Resolved over https, it is kept, and says it was not verified. (Its bytes come from a
    // server that sends no `ETag` either, as such a Hub would.)
    let body = b"{\"plain\": true}";
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = [0u8; 4096];
            let read = stream.read(&mut head).unwrap_or(0);
            let head = String::from_utf8_lossy(&head[..read]).to_ascii_lowercase();
            // `Range: bytes=a-b`, answered as asked.
            let range = head
                .lines()
                .find_map(|line| line.strip_prefix("range: bytes="))
                .and_then(|r| r.trim().split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
            let mut answer = match range {
                Some((first, last)) => format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len(),
                    last + 1 - first
                )
                .into_bytes(),
                None => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes(),
            };
            let (first, last) = range.unwrap_or((0, body.len() - 1));
            answer.extend_from_slice(&body[first..=last]);
            let _ = stream.write_all(&answer);
        }
    });
    meta.download_url = format!("http://{address}/config.json");
    meta.size = body.len() as u64;
    meta.over_https = true;
    let summary = rig
        .downloader
        .download(given(&meta), recorder())
        .await
        .unwrap();
    assert_eq!(summary.files.len(), 1);
    assert!(summary.files[0].unverified, "{summary:?}");
    // A file with a published hash is verified as ever.
    let verified = rig
        .downloader
        .download(request("demo/tiny-gguf", &["README.md"]), recorder())
        .await
        .unwrap();
    assert!(verified.files.iter().all(|f| !f.unverified));
}

/// Over a slow link (1 MB/s), a transfer keeps the few connections it starts with: when its
/// first chunk completes it has asked for about 4 ranges (17 chunks), where opening every
/// connection at once asks for 16 — each crawling, and each a partial chunk if the link drops.
#[tokio::test]
async fn a_slow_link_is_not_split_into_every_connection() {
    const SMALL_CHUNK: u64 = 128 * 1024;
    let mut asked = Vec::new();
    for start in [0usize, 4] {
        let rig = rig_with(EmulatorConfig::demo_with_big_size(2 << 20), |s| {
            s.limits.chunk_size = SMALL_CHUNK;
            s.limits.connections = 16;
            s.limits.connections_per_host = 16;
            s.limits.start_connections = start;
        })
        .await;
        rig.emulator
            .faults()
            .set(FaultRule::global(Fault::TotalBandwidth(1_000_000)).on("/cdn/*"));
        let cdn_ranges = |records: &[hub_emulator::RequestRecord]| {
            records
                .iter()
                .filter(|r| r.path.starts_with("/cdn/") && r.range.is_some())
                .cloned()
                .collect::<Vec<_>>()
        };
        let downloader = rig.downloader.clone();
        let pull =
            tokio::spawn(async move { downloader.download(big_request(), recorder()).await });
        // The ranges asked for by the time the first whole chunk was served.
        let at_first_chunk = loop {
            let ranges = cdn_ranges(&rig.emulator.log().records());
            if ranges.iter().any(|r| r.bytes_sent >= SMALL_CHUNK) {
                break ranges.len();
            }
            assert!(
                !pull.is_finished(),
                "the pull ended before a chunk was seen"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let summary = pull.await.unwrap().unwrap();
        let expected = upstream_bytes(&rig.emulator, "demo/big", "main", BIG);
        assert_linked(&rig, "demo/big", &summary.commit, BIG, &expected);
        eprintln!(
            "start_connections {start}: {at_first_chunk} ranges asked at the first whole chunk"
        );
        asked.push(at_first_chunk);
    }
    assert!(asked[0] >= 12, "all at once: {asked:?}");
    // Four, and the ones that replaced them as they ended (they end together on a fair link).
    assert!(asked[1] <= 8, "the ramp kept a few: {asked:?}");
}
