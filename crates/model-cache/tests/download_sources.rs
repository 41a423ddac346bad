//! One file from several sources: the endpoint and a mirror, two emulators with the same demo
//! catalog, each with its own per-connection speed on its CDN. Chunks go where the bytes come
//! fastest, and a source that dies mid-download leaves its chunks to the other.

mod download_support;

use std::sync::Arc;

use download_support::*;
use hub_emulator::{Emulator, EmulatorConfig, Fault, FaultRule, Listener};
use model_cache::download::{ChannelReporter, DownloadEvent, Downloader};
use model_cache::settings::Mirror;
use model_cache::{RepoId, Settings};
use tempfile::TempDir;

/// The endpoint and a mirror serving the same catalog, and a downloader that knows both.
struct TwoSources {
    endpoint: Emulator,
    mirror: Emulator,
    _dir: TempDir,
    settings: Settings,
    downloader: Downloader,
}

/// Starts both emulators, each CDN capped at its bytes per second per connection.
async fn two_sources(endpoint_speed: u64, mirror_speed: u64) -> TwoSources {
    let config = || EmulatorConfig::demo_with_big_size(BIG_SIZE);
    let endpoint = Emulator::start(config()).await.expect("endpoint starts");
    let mirror = Emulator::start(config()).await.expect("mirror starts");
    for (emulator, speed) in [(&endpoint, endpoint_speed), (&mirror, mirror_speed)] {
        emulator
            .faults()
            .set(FaultRule::global(Fault::ConnectionBandwidth(speed)).on("/cdn/*"));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path(), endpoint.url());
    settings.mirrors = vec![Mirror::new(mirror.url())];
    let (downloader, _) = downloader(&settings);
    TwoSources {
        endpoint,
        mirror,
        _dir: dir,
        settings,
        downloader,
    }
}

/// Body bytes a CDN served: the file's bytes that came from that source.
fn cdn_bytes(emulator: &Emulator) -> u64 {
    emulator
        .requests()
        .iter()
        .filter(|r| r.listener == Listener::Cdn)
        .map(|r| r.bytes_sent)
        .sum()
}

/// The snapshot file holds exactly `expected`, and no partial file is left.
fn assert_file(settings: &Settings, commit: &str, expected: &[u8]) {
    let snapshot = settings
        .hub_cache
        .join(RepoId::model("demo/big").unwrap().folder_name())
        .join("snapshots")
        .join(commit)
        .join(BIG);
    let bytes = std::fs::read(&snapshot).expect("the file is linked");
    assert_eq!(bytes.len(), expected.len());
    assert!(bytes == expected, "content differs from upstream");
    assert!(incomplete_files(&settings.hub_cache).is_empty());
}

#[tokio::test]
async fn most_chunks_come_from_the_faster_source() {
    // The mirror is ten times faster than the endpoint's CDN.
    let rig = two_sources(200_000, 2_000_000).await;
    let summary = rig
        .downloader
        .download(big_request(), recorder())
        .await
        .expect("the download succeeds");
    let expected = upstream_bytes(&rig.endpoint, "demo/big", "main", BIG);
    assert_file(&rig.settings, &summary.commit, &expected);

    let (slow, fast) = (cdn_bytes(&rig.endpoint), cdn_bytes(&rig.mirror));
    // No byte fetched twice (but for a slow-tail split's race), and most from the fast source.
    let size = expected.len() as u64;
    assert!(slow + fast >= size, "slow {slow} + fast {fast}");
    assert!(slow + fast < size + size / 8, "slow {slow} + fast {fast}");
    assert!(fast > 2 * slow, "slow {slow}, fast {fast}");
    // The slow source was still used: it was tried, not ignored.
    assert!(slow > 0, "slow {slow}, fast {fast}");
}

#[tokio::test]
async fn where_the_bytes_came_from_is_reported_and_remembered() {
    let rig = two_sources(300_000, 1_500_000).await;
    let reporter = recorder();
    rig.downloader
        .download(big_request(), reporter.clone())
        .await
        .expect("the download succeeds");
    let size = upstream_bytes(&rig.endpoint, "demo/big", "main", BIG).len() as u64;
    let sources = reporter
        .events()
        .into_iter()
        .find_map(|e| match e {
            DownloadEvent::Sources { sources, .. } => Some(sources),
            _ => None,
        })
        .expect("a Sources event");
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert_eq!(sources[0].source, "hub");
    assert_eq!(sources[1].source.trim_end_matches('/'), rig.mirror.url());
    let served: u64 = sources.iter().map(|s| s.bytes).sum();
    assert_eq!(
        served, size,
        "every byte is counted once, by source: {sources:?}"
    );
    assert!(sources[1].bytes > sources[0].bytes, "{sources:?}");
    // The index keeps what was measured, for the next start.
    let index = model_cache::index::Index::open(&rig.settings.data_dir).unwrap();
    let history = index.source_history().unwrap();
    let mirror = history
        .iter()
        .find(|h| h.name.trim_end_matches('/') == rig.mirror.url())
        .expect("the mirror's history");
    assert_eq!(mirror.bytes, sources[1].bytes);
    assert!(mirror.throughput.is_some_and(|t| t > 0.0), "{history:?}");
}

#[tokio::test]
async fn a_source_that_dies_mid_download_leaves_its_chunks_to_the_other() {
    // The endpoint is the fast one, so most chunks are in flight there when it goes away.
    let rig = two_sources(1_000_000, 250_000).await;
    let TwoSources {
        endpoint,
        mirror,
        _dir,
        settings,
        downloader,
    } = rig;
    let expected = upstream_bytes(&endpoint, "demo/big", "main", BIG);
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let handle = downloader.start(big_request(), Arc::new(ChannelReporter(sender)));
    let mut chunks = 0;
    while chunks < 8 {
        if let DownloadEvent::ChunkDone { .. } = receiver.recv().await.expect("events") {
            chunks += 1;
        }
    }
    let endpoint_before = cdn_bytes(&endpoint);
    let mirror_before = cdn_bytes(&mirror);
    drop(endpoint);
    let summary = handle.wait().await.expect("the mirror completes the file");
    // The endpoint's failures moved its segments to the mirror.
    let mut switched = 0;
    while let Ok(event) = receiver.try_recv() {
        if let DownloadEvent::Retrying { reason, .. } = event
            && reason.contains("trying another source")
        {
            switched += 1;
        }
    }
    assert!(switched > 0, "no segment moved to the mirror");
    assert_file(&settings, &summary.commit, &expected);
    let mirror_after = cdn_bytes(&mirror);
    assert!(
        mirror_after > mirror_before,
        "the mirror served {mirror_before} bytes before, {mirror_after} after"
    );
    assert!(
        endpoint_before < expected.len() as u64,
        "endpoint {endpoint_before}"
    );
    drop(downloader);
}

#[tokio::test]
async fn a_source_serving_corrupt_bytes_is_caught_dropped_and_the_file_is_right() {
    // Both as fast; the mirror's CDN changes every byte range it serves.
    let rig = two_sources(2_000_000, 2_000_000).await;
    rig.mirror.faults().set(
        FaultRule::global(Fault::Corrupt {
            start: 0,
            end: 64 << 20,
        })
        .on("/cdn/*"),
    );
    let reporter = recorder();
    let summary = rig
        .downloader
        .download(big_request(), reporter.clone())
        .await
        .expect("the download succeeds from the honest source");
    let expected = upstream_bytes(&rig.endpoint, "demo/big", "main", BIG);
    assert_file(&rig.settings, &summary.commit, &expected);
    assert!(cdn_bytes(&rig.mirror) > 0, "the mirror served some chunks");
    let dropped: Vec<String> = reporter
        .events()
        .iter()
        .filter_map(|e| match e {
            DownloadEvent::Retrying { reason, .. } if reason.contains("dropping source") => {
                Some(reason.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(dropped.len(), 1, "the mirror is dropped once: {dropped:?}");
    assert!(dropped[0].contains("127.0.0.1"), "{}", dropped[0]);
}
