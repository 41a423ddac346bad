//! Where a file's bytes can come from, and which of those places the next segment asks.
//!
//! A [`Source`] is one origin that serves a file's bytes by range: today the Hub's download URL
//! (its redirect target, a CDN) and each configured mirror that has the same file (a `HEAD` of
//! `/{repo}/resolve/{commit}/{path}` on the mirror answering the Hub's etag and size). Later
//! kinds (LAN peers, a team bucket) are more [`SourceKind`]s: the transfer only needs a URL to
//! range-read, a host to count connections against and a way to renew the URL.
//!
//! [`Sources`] is the set one file uses, with what the transfer learns about each while it runs:
//! the throughput it delivers across its connections, the connections streaming from it now,
//! its consecutive errors, and whether it is dropped for this file. [`Sources::pick`] chooses
//! the source of the next segment: the one whose measured throughput, shared with the
//! connections it already has plus this one, gives the new connection the most. A source not
//! measured yet gets a fair try, and a little exploration tries a source that recovered again.
//!
//! Counting the connections a source has *now* is what keeps the choice stable. A speed
//! measured per connection falls as a source gets more of them (its link is shared), and a
//! choice weighted by it alone herds: every connection moves to the source that was fastest
//! when it had few, which then slows, and they all move back. With live counts, connections
//! spread in proportion to what each source delivers, and stay there.
//!
//! Sources are not trusted for content: every byte is checked against the Hub's hash of the
//! whole file, whichever source served it. The token goes where the Hub client lets it
//! (`HubClient::is_trusted`): to a mirror only when the user marked it `send_token`.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

use crate::hub::{FileMetadata, HubClient, HubError, redact_url};
use crate::repo::RepoId;

/// Share of picks that ignore the measurements, so a slow or recovered source is measured again.
const EXPLORATION: f64 = 0.1;
/// Weight of the newest finished segment in a source's throughput (an exponential average).
const RATE_WEIGHT: f64 = 0.3;

/// What kind of origin a source is, and so how its download URL is renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// The Hub's own download URL (usually a CDN it redirects to), renewed by asking the Hub.
    Hub,
    /// A configured mirror (its base URL), renewed by asking that mirror.
    Mirror { base: String },
    /// The team bucket, through a signed URL renewed by signing again.
    Bucket(crate::bucket::Bucket),
    /// A paired LAN peer: its listener serves the mirror's routes over TLS pinned to the
    /// certificate paired (`peers/`), read through a client of its own; renewed by asking it.
    Peer(PeerSource),
}

/// A paired peer the downloader may read from: who it is, where it listens, and the client
/// pinned to its certificate.
#[derive(Debug, Clone)]
pub(crate) struct PeerSource {
    pub fingerprint: String,
    /// `https://host:port`.
    pub base: String,
    pub client: HubClient,
    /// Whether to ask it for compressed transfers of safetensors files (the user's setting,
    /// `mcache peers compress`, when the sources were resolved).
    pub compress: bool,
    /// Set once a compressed transfer from it ran faster than [`FAST_LINK`]: the link is fast
    /// enough that compressing costs more time than it saves, so it is not asked again. Shared
    /// by every file read from this peer in this process.
    pub fast_link: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Bytes per second on the wire above which compressing a peer's transfers no longer saves
/// time (about 1 Gbit/s: `docs/peers.md`).
pub(crate) const FAST_LINK: f64 = 125e6;

impl PeerSource {
    /// Whether to ask this peer for the compressed encoding of `path`.
    pub(crate) fn asks_compressed(&self, path: &str) -> bool {
        self.compress
            && path.ends_with(".safetensors")
            && !self.fast_link.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl PartialEq for PeerSource {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint && self.base == other.base
    }
}

impl Eq for PeerSource {}

/// One origin of a file's bytes, with what this transfer measured of it.
#[derive(Debug)]
pub(crate) struct Source {
    pub kind: SourceKind,
    /// The URL range requests go to: a signed URL that may expire (see
    /// `BlobTransfer::renew_url`).
    url: Mutex<String>,
    /// `host:port` of the URL, the key of the per-host connection limit.
    host: String,
    /// Serialises renewals, so streams refused at once ask for a fresh URL once.
    pub renewing: tokio::sync::Mutex<()>,
    state: Mutex<SourceState>,
    /// Asked only while no other source is alive: the Hub's CDN when the team bucket has the
    /// file, so the team's copy is read first and the CDN only if it fails.
    fallback: bool,
}

/// What a transfer learned about one source.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct SourceState {
    /// Bytes per second it delivers across its connections (an exponential average over its
    /// finished segments, each segment's speed times the connections it shared the source
    /// with); `None` until one finished.
    pub throughput: Option<f64>,
    /// Segments streaming from it now.
    pub active: usize,
    /// Failed attempts since its last finished segment.
    pub consecutive_errors: u32,
    /// Given up on for this file.
    pub dropped: bool,
    /// Body bytes it served into the file.
    pub bytes: u64,
    /// Failed attempts on it, in all.
    pub errors: u32,
}

impl Source {
    pub(crate) fn new(kind: SourceKind, url: String) -> Self {
        Source {
            kind,
            host: host_of(&url),
            url: Mutex::new(url),
            renewing: tokio::sync::Mutex::new(()),
            state: Mutex::new(SourceState::default()),
            fallback: false,
        }
    }

    /// This source, asked only when no other is alive.
    pub(crate) fn into_fallback(mut self) -> Self {
        self.fallback = true;
        self
    }

    pub(crate) fn url(&self) -> String {
        self.url.lock().expect("source url lock").clone()
    }

    pub(crate) fn set_url(&self, url: String) {
        *self.url.lock().expect("source url lock") = url;
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// How the source is named in logs and events: `hub`, or the mirror's base URL (redacted).
    pub(crate) fn name(&self) -> String {
        match &self.kind {
            SourceKind::Hub => "hub".to_string(),
            SourceKind::Mirror { base } => redact_url(base),
            SourceKind::Bucket(bucket) => bucket.url().to_string(),
            SourceKind::Peer(peer) => format!("peer:{}", crate::peers::peer_id(&peer.fingerprint)),
        }
    }

    /// The client requests to this source go through: a peer's own (pinned TLS), else `hub`'s.
    pub(crate) fn client<'a>(&'a self, hub: &'a HubClient) -> &'a HubClient {
        match &self.kind {
            SourceKind::Peer(peer) => &peer.client,
            _ => hub,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SourceState> {
        self.state.lock().expect("source state lock")
    }
}

/// `host:port` of `url`, or an empty string when it does not parse.
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
        })
        .unwrap_or_default()
}

/// The sources of one file. The first is the one the file was resolved through (the Hub, or
/// the mirror the Hub client failed over to): with no other, a transfer behaves exactly as a
/// single-URL download.
#[derive(Debug)]
pub(crate) struct Sources {
    list: Vec<Source>,
}

impl Sources {
    pub(crate) fn new(primary: Source, others: Vec<Source>) -> Self {
        let mut list = vec![primary];
        list.extend(others);
        Sources { list }
    }

    /// The Hub's download URL as the only source.
    #[cfg(test)]
    pub(crate) fn single(url: String) -> Self {
        Sources::new(Source::new(SourceKind::Hub, url), Vec::new())
    }

    pub(crate) fn get(&self, index: usize) -> &Source {
        &self.list[index]
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Every source's name and state, in order.
    pub(crate) fn states(&self) -> Vec<(String, SourceState)> {
        self.list
            .iter()
            .map(|s| (s.name(), s.state().clone()))
            .collect()
    }

    /// The sources still in use: those not marked fallback, or the fallbacks when every other
    /// one is dropped.
    fn alive(&self) -> impl Iterator<Item = usize> + '_ {
        let preferred =
            (0..self.list.len()).any(|i| !self.list[i].fallback && !self.list[i].state().dropped);
        (0..self.list.len())
            .filter(move |&i| !self.list[i].state().dropped && self.list[i].fallback != preferred)
    }

    /// The first source still in use (the one the file was resolved through, while it is).
    pub(crate) fn first_alive(&self) -> Option<usize> {
        self.alive().next()
    }

    /// Whether a source other than `index` is still in use for this file.
    pub(crate) fn has_alternative(&self, index: usize) -> bool {
        // A fallback counts: it is what takes over when this one is dropped.
        (0..self.list.len()).any(|i| i != index && !self.list[i].state().dropped)
    }

    /// The fastest source still in use (the first one while none is measured): where the end of
    /// a file goes when a straggler's range is split.
    pub(crate) fn fastest(&self) -> Option<usize> {
        let alive: Vec<usize> = self.alive().collect();
        let measured = alive
            .iter()
            .copied()
            .filter_map(|i| self.list[i].state().throughput.map(|t| (i, t)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i);
        measured.or_else(|| alive.first().copied())
    }

    /// The source for the next segment, avoiding `avoid` (the one its last attempt failed on)
    /// when another is alive. `None` when every source is dropped.
    pub(crate) fn pick(&self, avoid: Option<usize>) -> Option<usize> {
        self.pick_with(avoid, &mut rand::rng())
    }

    fn pick_with(&self, avoid: Option<usize>, rng: &mut impl Rng) -> Option<usize> {
        let alive: Vec<usize> = self.alive().collect();
        let preferred: Vec<usize> = alive
            .iter()
            .copied()
            .filter(|&i| Some(i) != avoid)
            .collect();
        let candidates = if preferred.is_empty() {
            alive
        } else {
            preferred
        };
        match candidates.len() {
            0 => return None,
            1 => return Some(candidates[0]),
            _ => {}
        }
        if rng.random_bool(EXPLORATION) {
            return Some(candidates[rng.random_range(0..candidates.len())]);
        }
        let states: Vec<(Option<f64>, usize)> = candidates
            .iter()
            .map(|&i| {
                let state = self.list[i].state();
                (state.throughput, state.active)
            })
            .collect();
        // A source not measured yet counts as the best measured one: a fair try.
        let best = states
            .iter()
            .filter_map(|(rate, _)| *rate)
            .fold(0.0, f64::max);
        // What one more connection would get from each: its throughput shared with the
        // connections it has plus this one.
        let share: Vec<f64> = states
            .iter()
            .map(|(rate, active)| rate.unwrap_or(best).max(1.0) / (*active as f64 + 1.0))
            .collect();
        let top = share.iter().copied().fold(f64::MIN, f64::max);
        let tied: Vec<usize> = candidates
            .iter()
            .zip(&share)
            .filter(|(_, s)| **s >= top * (1.0 - 1e-9))
            .map(|(&i, _)| i)
            .collect();
        Some(tied[rng.random_range(0..tied.len())])
    }

    /// A segment starts streaming from `index`.
    pub(crate) fn begin(&self, index: usize) {
        self.list[index].state().active += 1;
    }

    /// A segment that [`Sources::begin`] counted on `index` stopped streaming from it.
    pub(crate) fn end(&self, index: usize) {
        let mut state = self.list[index].state();
        state.active = state.active.saturating_sub(1);
    }

    /// Segments streaming from `index` now.
    pub(crate) fn active(&self, index: usize) -> usize {
        self.list[index].state().active
    }

    /// A segment (or its part on one connection) finished: `bytes` in `elapsed`, while the
    /// source had `connections` segments streaming on average (this one included).
    pub(crate) fn finished(&self, index: usize, bytes: u64, elapsed: Duration, connections: f64) {
        let rate = bytes as f64 / elapsed.as_secs_f64().max(1e-3) * connections.max(1.0);
        let mut state = self.list[index].state();
        state.consecutive_errors = 0;
        state.throughput = Some(match state.throughput {
            Some(old) => old * (1.0 - RATE_WEIGHT) + rate * RATE_WEIGHT,
            None => rate,
        });
    }

    /// Body bytes `index` served into the file.
    pub(crate) fn served(&self, index: usize, bytes: u64) {
        self.list[index].state().bytes += bytes;
    }

    /// Counts a failed attempt on `index`; after `limit` in a row the source is dropped for the
    /// file. Returns whether it is (now) dropped.
    pub(crate) fn failed(&self, index: usize, limit: u32) -> bool {
        let mut state = self.list[index].state();
        state.consecutive_errors += 1;
        state.errors += 1;
        if state.consecutive_errors >= limit.max(1) {
            state.dropped = true;
        }
        state.dropped
    }

    /// Starts the source named `name` (see [`Source::name`]) from the throughput an earlier
    /// download measured (the index keeps it), until this transfer measures its own.
    pub(crate) fn seed(&self, name: &str, throughput: f64) {
        for source in &self.list {
            if source.name() == name {
                let mut state = source.state();
                if state.throughput.is_none() && throughput > 0.0 {
                    state.throughput = Some(throughput);
                }
            }
        }
    }

    /// Uses `index` again for this file (a repair found it was not the one that lied).
    pub(crate) fn restore(&self, index: usize) {
        let mut state = self.list[index].state();
        state.dropped = false;
        state.consecutive_errors = 0;
    }

    /// Gives up on `index` for this file.
    pub(crate) fn drop_source(&self, index: usize) {
        self.list[index].state().dropped = true;
    }
}

/// How long a paired peer has to say whether it has a file before it is left out for it.
const PEER_ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// The sources of a file the Hub resolved as `meta`: its download URL first, then every
/// configured mirror that has the same file at the same commit (same etag and size). Mirrors
/// are asked at once, one attempt each; one that fails or differs is left out for this file.
/// Paired peers are asked the same way; when one has the file (or the team bucket does), the
/// Hub's CDN becomes a fallback, asked only once every peer and the bucket are dropped.
///
/// A peer that does not answer in time or cannot be reached is passed to `unreachable`, so the
/// next files do not wait for it again (`download/peers.rs`).
pub(crate) async fn resolve(
    hub: &HubClient,
    bucket: Option<&crate::bucket::Bucket>,
    peers: &[PeerSource],
    unreachable: &(dyn Fn(&PeerSource) + Sync),
    repo: &RepoId,
    path: &str,
    meta: &FileMetadata,
) -> Sources {
    let mut primary = Source::new(SourceKind::Hub, meta.download_url.clone());
    let mut team = None;
    if let Some(bucket) = bucket {
        match bucket_has(bucket, repo, meta).await {
            Ok(url) => {
                tracing::debug!(bucket = %bucket.url(), %path, "The team bucket has the file");
                team = Some(Source::new(SourceKind::Bucket(bucket.clone()), url));
                primary = primary.into_fallback();
            }
            Err(reason) => {
                tracing::debug!(bucket = %bucket.url(), %path, %reason, "Not using the team bucket for this file");
            }
        }
    }
    let asks = hub.mirrors().iter().map(|base| async move {
        let answer = hub.file_metadata_on(base, repo, &meta.commit, path).await;
        (base, answer)
    });
    let mut others: Vec<Source> = Vec::new();
    for (base, answer) in futures::future::join_all(asks).await {
        match mirror_has(meta, answer) {
            Ok(url) if url != meta.download_url && others.iter().all(|s| s.url() != url) => {
                tracing::debug!(mirror = %redact_url(base), %path, "The mirror has the file");
                others.push(Source::new(SourceKind::Mirror { base: base.clone() }, url));
            }
            Ok(_) => {}
            Err(reason) => {
                tracing::debug!(mirror = %redact_url(base), %path, %reason, "Not using the mirror for this file");
            }
        }
    }
    let peer_asks = peers.iter().map(|peer| async move {
        let answer = tokio::time::timeout(
            PEER_ASK_TIMEOUT,
            peer.client
                .file_metadata_on(&peer.base, repo, &meta.commit, path),
        )
        .await;
        (peer, answer)
    });
    let mut from_peers = Vec::new();
    for (peer, answer) in futures::future::join_all(peer_asks).await {
        let name = crate::peers::peer_id(&peer.fingerprint);
        let answer = match answer {
            Ok(Err(error)) if error.kind() == crate::error::ErrorKind::Network => {
                tracing::debug!(peer = %name, %path, %error, "The peer cannot be reached");
                unreachable(peer);
                continue;
            }
            Ok(answer) => answer,
            Err(_) => {
                tracing::debug!(peer = %name, %path, "The peer did not answer in time");
                unreachable(peer);
                continue;
            }
        };
        match mirror_has(meta, answer) {
            Ok(url) => {
                tracing::debug!(peer = %name, %path, "The peer has the file");
                from_peers.push(Source::new(SourceKind::Peer(peer.clone()), url));
            }
            Err(reason) => {
                tracing::debug!(peer = %name, %path, %reason, "Not using the peer for this file");
            }
        }
    }
    if !from_peers.is_empty() && !primary.fallback {
        primary = primary.into_fallback();
    }
    let mut first = Vec::new();
    if let Some(team) = team {
        first.push(team);
    }
    first.extend(from_peers);
    first.extend(others);
    Sources::new(primary, first)
}

/// A signed URL of the bucket's copy of the file, when it has one of the Hub's size.
async fn bucket_has(
    bucket: &crate::bucket::Bucket,
    repo: &RepoId,
    meta: &FileMetadata,
) -> Result<String, String> {
    match bucket.blob_size(repo, &meta.etag).await {
        Ok(Some(size)) if size == meta.size => {}
        Ok(Some(size)) => return Err(format!("its copy is {size} bytes, the Hub's {}", meta.size)),
        Ok(None) => return Err("it has no copy".into()),
        Err(error) => return Err(error.to_string()),
    }
    bucket
        .blob_url(repo, &meta.etag)
        .await
        .map_err(|error| error.to_string())
}

/// The download URL a mirror's answer gives for the file `meta` describes, or why it does not
/// have that file.
fn mirror_has(
    meta: &FileMetadata,
    answer: Result<FileMetadata, HubError>,
) -> Result<String, String> {
    let theirs = answer.map_err(|error| error.to_string())?;
    if theirs.etag != meta.etag || theirs.size != meta.size {
        return Err(format!(
            "it names the file `{}` ({} bytes), the Hub `{}` ({} bytes)",
            theirs.etag, theirs.size, meta.etag, meta.size
        ));
    }
    Ok(theirs.download_url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn two() -> Sources {
        Sources::new(
            Source::new(SourceKind::Hub, "http://a.test/f".into()),
            vec![Source::new(
                SourceKind::Mirror {
                    base: "http://b.test".into(),
                },
                "http://b.test/f".into(),
            )],
        )
    }

    fn share_of_first(sources: &Sources, avoid: Option<usize>) -> f64 {
        let mut rng = StdRng::seed_from_u64(7);
        let picks = 10_000;
        let first = (0..picks)
            .filter(|_| sources.pick_with(avoid, &mut rng) == Some(0))
            .count();
        first as f64 / picks as f64
    }

    #[test]
    fn a_fallback_is_asked_only_once_every_other_source_is_dropped() {
        let sources = Sources::new(
            Source::new(SourceKind::Hub, "http://cdn.test/f".into()).into_fallback(),
            vec![Source::new(
                SourceKind::Mirror {
                    base: "http://team.test".into(),
                },
                "http://team.test/f".into(),
            )],
        );
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..1000 {
            assert_eq!(sources.pick_with(None, &mut rng), Some(1));
        }
        assert!(sources.has_alternative(1), "the fallback takes over");
        sources.drop_source(1);
        assert_eq!(sources.pick_with(None, &mut rng), Some(0));
        assert_eq!(sources.fastest(), Some(0));
    }

    #[test]
    fn a_split_goes_to_the_fastest_source_still_in_use() {
        let sources = two();
        assert_eq!(sources.fastest(), Some(0), "none measured: the first");
        sources.finished(0, 1_000, Duration::from_secs(1), 1.0);
        sources.finished(1, 9_000, Duration::from_secs(1), 1.0);
        assert_eq!(sources.fastest(), Some(1));
        sources.drop_source(1);
        assert_eq!(sources.fastest(), Some(0));
        sources.drop_source(0);
        assert_eq!(sources.fastest(), None);
    }

    #[test]
    fn one_source_is_always_picked_even_after_it_failed() {
        let sources = Sources::single("http://a.test/f".into());
        assert_eq!(sources.pick(None), Some(0));
        assert_eq!(sources.pick(Some(0)), Some(0));
        assert!(!sources.has_alternative(0));
    }

    #[test]
    fn unmeasured_sources_get_a_fair_try() {
        let share = share_of_first(&two(), None);
        assert!((0.45..0.55).contains(&share), "{share}");
        // One measured, the other not yet: the new one weighs as much as the measured one.
        let sources = two();
        sources.finished(0, 1_000_000, Duration::from_secs(1), 1.0);
        let share = share_of_first(&sources, None);
        assert!((0.45..0.55).contains(&share), "{share}");
    }

    #[test]
    fn faster_sources_get_more_segments_and_slow_ones_still_some() {
        let sources = two();
        sources.finished(0, 9_000_000, Duration::from_secs(1), 1.0);
        sources.finished(1, 1_000_000, Duration::from_secs(1), 1.0);
        let share = share_of_first(&sources, None);
        // Every pick but the exploring ones, and half of those.
        assert!((0.93..0.97).contains(&share), "{share}");
    }

    /// Connections started one after another on two sources that deliver 100 and 60 MB/s in
    /// all, each time to the source `pick` names.
    fn spread(sources: &Sources, connections: usize, rng: &mut StdRng) -> (usize, usize) {
        for _ in 0..connections {
            let index = sources.pick_with(None, rng).expect("a source");
            sources.begin(index);
        }
        let counts = (sources.active(0), sources.active(1));
        for index in [0, 1] {
            while sources.active(index) > 0 {
                sources.end(index);
            }
        }
        counts
    }

    #[test]
    fn connections_spread_in_proportion_to_what_each_source_delivers() {
        let sources = two();
        // Measured with 10 and 2 connections streaming: 100 and 60 MB/s in all.
        sources.finished(0, 10_000_000, Duration::from_secs(1), 10.0);
        sources.finished(1, 30_000_000, Duration::from_secs(1), 2.0);
        let mut rng = StdRng::seed_from_u64(11);
        let mut first = 0;
        let rounds = 200;
        for _ in 0..rounds {
            first += spread(&sources, 16, &mut rng).0;
        }
        // 16 × 100 / 160 = 10 connections on the first, give or take the exploration.
        let mean = first as f64 / rounds as f64;
        assert!((9.0..11.0).contains(&mean), "{mean}");
        // The per-connection speed of the second is higher (30 against 10 MB/s), yet it does not
        // take every connection: its 60 MB/s are shared by the connections it has.
    }

    #[test]
    fn connections_that_end_free_their_source() {
        let sources = two();
        sources.begin(0);
        sources.begin(0);
        sources.end(0);
        assert_eq!(sources.active(0), 1);
        sources.end(0);
        sources.end(0);
        assert_eq!(sources.active(0), 0, "never below zero");
    }

    #[test]
    fn a_failed_source_is_avoided_then_dropped() {
        let sources = two();
        assert_eq!(share_of_first(&sources, Some(0)), 0.0);
        assert!(!sources.failed(1, 3));
        assert!(!sources.failed(1, 3));
        // A finished segment resets the count.
        sources.finished(1, 10, Duration::from_secs(1), 1.0);
        assert!(!sources.failed(1, 3));
        assert!(!sources.failed(1, 3));
        assert!(sources.failed(1, 3));
        assert!(!sources.has_alternative(0));
        // The only one left is used even right after it failed.
        assert_eq!(sources.pick(Some(0)), Some(0));
        sources.drop_source(0);
        assert_eq!(sources.pick(None), None);
    }
}
