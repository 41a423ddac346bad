//! The request log and byte counters tests assert on.
//!
//! Every request to any listener is recorded with its method, path, `Host`, `Range`,
//! `If-Range`, status and the body bytes actually sent. `Authorization` is never stored in
//! clear: only whether it was present and a short fingerprint of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Which listener a request reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    /// The hub (API and `resolve`).
    Hub,
    /// The CDN serving LFS content.
    Cdn,
    /// The Xet CAS (feature `xet`): reconstructions and xorb ranges.
    Cas,
}

/// One request, as seen by tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// Sequence number, from 0.
    pub seq: u64,
    /// Listener.
    pub listener: Listener,
    /// HTTP method.
    pub method: String,
    /// Raw (still percent-encoded) path.
    pub path: String,
    /// Raw query string.
    pub query: Option<String>,
    /// `Host` header.
    pub host: Option<String>,
    /// Fingerprint of the `Authorization` header ([`crate::auth::fingerprint`]), if present.
    pub authorization: Option<String>,
    /// `Range` header.
    pub range: Option<String>,
    /// `If-Range` header.
    pub if_range: Option<String>,
    /// Response status (0 if the handler has not answered yet).
    pub status: u16,
    /// Body bytes sent so far.
    pub bytes_sent: u64,
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) record: RequestRecord,
    status: AtomicU16,
    bytes: AtomicU64,
}

impl Entry {
    pub(crate) fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }
}

/// Request log and counters, shared by all listeners.
#[derive(Debug, Default)]
pub struct RequestLog {
    entries: Mutex<Vec<Arc<Entry>>>,
    total: AtomicU64,
    per_path: Mutex<HashMap<String, u64>>,
    seq: AtomicU64,
}

impl RequestLog {
    pub(crate) fn start(&self, mut record: RequestRecord) -> Arc<Entry> {
        record.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            record,
            status: AtomicU16::new(0),
            bytes: AtomicU64::new(0),
        });
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&entry));
        entry
    }

    /// Counts body bytes; called before the bytes are handed to the socket, so a client that
    /// has received them always sees them counted.
    pub(crate) fn add_bytes(&self, entry: &Entry, n: u64) {
        entry.bytes.fetch_add(n, Ordering::Relaxed);
        self.total.fetch_add(n, Ordering::Relaxed);
        *self
            .per_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(entry.record.path.clone())
            .or_default() += n;
    }

    /// A snapshot of every request so far.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|e| {
                let mut r = e.record.clone();
                r.status = e.status.load(Ordering::Relaxed);
                r.bytes_sent = e.bytes.load(Ordering::Relaxed);
                r
            })
            .collect()
    }

    /// Body bytes served by all listeners.
    pub fn bytes_served(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Body bytes served by one listener (e.g. [`Listener::Cas`] for what Xet clients fetched).
    pub fn bytes_served_by(&self, listener: Listener) -> u64 {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|e| e.record.listener == listener)
            .map(|e| e.bytes.load(Ordering::Relaxed))
            .sum()
    }

    /// Body bytes served for one raw request path (e.g. a CDN path or a resolve path).
    pub fn bytes_served_for(&self, path: &str) -> u64 {
        self.per_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Body bytes served for every path whose raw path ends with `suffix` (e.g. a file name).
    pub fn bytes_served_matching(&self, suffix: &str) -> u64 {
        self.per_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(p, _)| p.ends_with(suffix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Number of requests that carried a `Range` header.
    pub fn range_requests(&self) -> usize {
        self.records().iter().filter(|r| r.range.is_some()).count()
    }

    /// Whether any request to the CDN carried `Authorization` (clients must drop it).
    pub fn cdn_saw_authorization(&self) -> bool {
        self.records()
            .iter()
            .any(|r| r.listener == Listener::Cdn && r.authorization.is_some())
    }

    /// Forgets all records and zeroes the counters.
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.per_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.total.store(0, Ordering::Relaxed);
    }
}
