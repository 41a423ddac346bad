//! Progress events pushed by the downloader, and the [`Reporter`] trait that receives them.
//!
//! **API Boundary:** [`DownloadEvent`] is serialised as one JSON object per event, tagged by
//! `"event"` with snake_case names and fields (`{"event":"bytes","repo":"org/name","path":"a.bin",
//! "done":1024,"total":4096}`). The CLI prints these as JSON lines and the local API streams them
//! as server-sent events, so field names are a commitment: add fields, never rename or remove.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// One step of a download. `repo` is the display form of the repo id (`org/name`,
/// `datasets/org/name`); `path` is the file's path in the repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DownloadEvent {
    /// A file transfer begins (or resumes: `resumed_bytes` are already on disk).
    FileStarted {
        repo: String,
        path: String,
        size: u64,
        resumed_bytes: u64,
    },
    /// Bytes of a file on disk so far (throttled: not every write is reported).
    Bytes {
        repo: String,
        path: String,
        done: u64,
        total: u64,
    },
    /// A chunk is written, flushed and recorded: it survives a crash.
    ChunkDone {
        repo: String,
        path: String,
        index: u64,
        chunks_done: u64,
        chunks_total: u64,
        /// Bytes from the file's start that are written, flushed and recorded (the done
        /// prefix): what a reader of the partial file may read while the download runs.
        #[serde(default)]
        prefix_bytes: u64,
    },
    /// A request failed and is tried again; `attempt` is the attempt that failed.
    Retrying {
        repo: String,
        path: String,
        reason: String,
        attempt: u32,
    },
    /// Where a file's bytes came from, when several sources had it: bytes, speed and failed
    /// attempts by source (`hub`, or a mirror's base URL). Sent when its transfer ends.
    Sources {
        repo: String,
        path: String,
        sources: Vec<SourceUse>,
    },
    /// The file changed upstream (or the server ignored `Range`): its progress is discarded and
    /// the transfer starts over.
    Restarted {
        repo: String,
        path: String,
        reason: String,
    },
    /// All bytes are on disk; the digest is being checked.
    Verifying {
        repo: String,
        path: String,
    },
    /// The digest matched. `algorithm` is `sha256` or `git-sha1`.
    Verified {
        repo: String,
        path: String,
        algorithm: String,
    },
    /// The file is in the snapshot folder (`snapshots/{commit}/{path}`).
    Linked {
        repo: String,
        path: String,
        commit: String,
    },
    /// Nothing was downloaded: the file was cached already (`reason` = `cached`), or its blob was
    /// found in another repo and linked or copied (`reason` = `shared_blob`).
    Skipped {
        repo: String,
        path: String,
        reason: String,
        bytes_saved: u64,
    },
    /// A file stored with Xet was rebuilt from chunks: `bytes_reused` of it were copied from
    /// cached blobs holding the same chunks (an older revision, another quantization, a base
    /// model), `bytes_fetched` came from the Xet CAS. Sent before it is linked.
    Reused {
        repo: String,
        path: String,
        bytes_reused: u64,
        bytes_fetched: u64,
    },
    /// The transfer is paused (connections closed, progress kept) or resumed.
    Paused {
        repo: String,
    },
    Resumed {
        repo: String,
    },
    /// The file failed; `kind` is [`super::DownloadError::kind`].
    Failed {
        repo: String,
        path: String,
        kind: String,
        message: String,
    },
    /// The whole request is over.
    Finished {
        repo: String,
        revision: String,
        commit: String,
        files: u64,
        bytes_downloaded: u64,
        bytes_saved: u64,
    },
}

/// Receives progress. Called from the downloader's tasks, so it must be cheap and never block:
/// forward to a channel, update a counter, print a line.
pub trait Reporter: Send + Sync {
    fn report(&self, event: DownloadEvent);
}

/// Drops every event.
pub struct NoReporter;

impl Reporter for NoReporter {
    fn report(&self, _event: DownloadEvent) {}
}

/// Forwards events into an unbounded channel. Events are sent even when nobody listens any more
/// (the send error is ignored), so a closed consumer never stops a download.
pub struct ChannelReporter(pub mpsc::UnboundedSender<DownloadEvent>);

impl Reporter for ChannelReporter {
    fn report(&self, event: DownloadEvent) {
        let _ = self.0.send(event);
    }
}

/// Keeps every event in memory, for tests and for callers that want a transcript.
#[derive(Default)]
pub struct RecordingReporter(Mutex<Vec<DownloadEvent>>);

impl RecordingReporter {
    pub fn events(&self) -> Vec<DownloadEvent> {
        self.0.lock().expect("reporter lock").clone()
    }
}

impl Reporter for RecordingReporter {
    fn report(&self, event: DownloadEvent) {
        self.0.lock().expect("reporter lock").push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_stable_names() {
        let event = DownloadEvent::Bytes {
            repo: "org/name".into(),
            path: "a.bin".into(),
            done: 1024,
            total: 4096,
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"event":"bytes","repo":"org/name","path":"a.bin","done":1024,"total":4096}"#
        );
        let event = DownloadEvent::Skipped {
            repo: "org/name".into(),
            path: "a.bin".into(),
            reason: "shared_blob".into(),
            bytes_saved: 7,
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"event":"skipped","repo":"org/name","path":"a.bin","reason":"shared_blob","bytes_saved":7}"#
        );
        assert_eq!(serde_json::from_str::<DownloadEvent>(&json).unwrap(), event);
    }
}

/// One source's part in a file's transfer (see [`DownloadEvent::Sources`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceUse {
    /// `hub`, or a mirror's base URL.
    pub source: String,
    /// Body bytes it served into the file.
    pub bytes: u64,
    /// Its measured speed, when it finished a segment.
    pub bytes_per_second: Option<u64>,
    /// Failed attempts on it.
    pub errors: u32,
    /// Given up on for this file (errors, or bytes that failed the hash check).
    pub dropped: bool,
}
