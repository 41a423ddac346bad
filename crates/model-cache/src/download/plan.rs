//! How a file is cut into chunks, and how the work left on it is tracked: which byte ranges are
//! still to fetch (segments), which are in flight, and when a slow tail deserves a second
//! connection.
//!
//! A chunk is the unit recorded in the index. A segment is the unit of one range request: a whole
//! chunk at first, the rest of a chunk after a dropped connection, or half of a slow segment's
//! remainder after a slow-tail split. Segments of one chunk never overlap except for bytes a
//! splitting race writes twice, which are identical (one validator, one content).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The chunk layout of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    pub size: u64,
    pub chunk_size: u64,
}

impl ChunkPlan {
    pub fn new(size: u64, chunk_size: u64) -> Self {
        ChunkPlan {
            size,
            chunk_size: chunk_size.max(1),
        }
    }

    /// Number of chunks; zero for an empty file.
    pub fn count(&self) -> u64 {
        self.size.div_ceil(self.chunk_size)
    }

    /// Byte range of chunk `index`.
    pub fn range(&self, index: u64) -> Range<u64> {
        let start = index * self.chunk_size;
        start..(start + self.chunk_size).min(self.size)
    }

    /// The chunk that holds byte `offset`.
    pub fn chunk_of(&self, offset: u64) -> u64 {
        offset / self.chunk_size
    }
}

/// One range request's worth of work. `pos` and `end` are shared with the scheduler so that a
/// slow segment can be shortened while it runs.
#[derive(Debug)]
pub(super) struct Segment {
    pub chunk: u64,
    /// Next byte to write.
    pub pos: AtomicU64,
    /// First byte not to write (exclusive); only ever lowered, by a split.
    pub end: AtomicU64,
    pub started: Instant,
    /// `pos` when the segment (re)started on its current connection, for its rate.
    pub start_pos: u64,
    /// The source (an index into the file's `Sources`) its last attempt failed on: the next
    /// one prefers another.
    pub avoid: Option<usize>,
}

impl Segment {
    pub(super) fn new(chunk: u64, range: Range<u64>) -> Arc<Self> {
        Arc::new(Segment {
            chunk,
            pos: AtomicU64::new(range.start),
            end: AtomicU64::new(range.end),
            started: Instant::now(),
            start_pos: range.start,
            avoid: None,
        })
    }

    pub(super) fn remaining(&self) -> u64 {
        self.end
            .load(Ordering::SeqCst)
            .saturating_sub(self.pos.load(Ordering::SeqCst))
    }

    /// Bytes per second since the segment started on its connection.
    pub(super) fn rate(&self, now: Instant) -> Option<f64> {
        let elapsed = now.duration_since(self.started);
        if elapsed < Duration::from_millis(300) {
            return None;
        }
        let done = self
            .pos
            .load(Ordering::SeqCst)
            .saturating_sub(self.start_pos);
        Some(done as f64 / elapsed.as_secs_f64())
    }

    /// Bytes per second over the segment's whole life, for a segment that finished (however
    /// quickly: a fast finish is exactly what a straggler is measured against).
    pub(super) fn final_rate(&self, now: Instant) -> f64 {
        let elapsed = now.duration_since(self.started).as_secs_f64().max(1e-3);
        let done = self
            .pos
            .load(Ordering::SeqCst)
            .saturating_sub(self.start_pos);
        done as f64 / elapsed
    }

    /// Splits off the second half of what is left, if at least `2 * min_piece` is left: the
    /// segment's end is lowered to the midpoint and the upper half is returned as a new segment.
    pub(super) fn split(&self, min_piece: u64) -> Option<Arc<Segment>> {
        let pos = self.pos.load(Ordering::SeqCst);
        let end = self.end.load(Ordering::SeqCst);
        if end.saturating_sub(pos) < 2 * min_piece {
            return None;
        }
        let mid = pos + (end - pos) / 2;
        // Only lower `end` if no other split moved it meanwhile.
        self.end
            .compare_exchange(end, mid, Ordering::SeqCst, Ordering::SeqCst)
            .ok()?;
        Some(Segment::new(self.chunk, mid..end))
    }
}

/// Picks the in-flight segment worth splitting onto a fresh connection, if any: one whose rate is
/// under half the median rate of the other transfers of the file (the ones in flight and the
/// recently `finished` ones, so that a lone straggler at the very end is caught too) and that
/// still has at least `2 * min_piece` to go. Segments too young to have a rate are left alone.
pub(super) fn slow_tail_candidate(
    active: &[Arc<Segment>],
    finished: &[f64],
    now: Instant,
    min_piece: u64,
) -> Option<Arc<Segment>> {
    let rates: Vec<(f64, &Arc<Segment>)> = active
        .iter()
        .filter_map(|segment| segment.rate(now).map(|rate| (rate, segment)))
        .collect();
    let mut reference: Vec<f64> = rates
        .iter()
        .map(|(rate, _)| *rate)
        .chain(finished.iter().copied())
        .collect();
    if rates.is_empty() || reference.len() < 2 {
        return None;
    }
    reference.sort_by(f64::total_cmp);
    let median = reference[reference.len() / 2];
    rates
        .iter()
        .filter(|(rate, segment)| *rate < median / 2.0 && segment.remaining() >= 2 * min_piece)
        .max_by_key(|(_, segment)| segment.remaining())
        .map(|(_, segment)| Arc::clone(segment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_the_file_exactly() {
        let plan = ChunkPlan::new(10, 4);
        assert_eq!(plan.count(), 3);
        assert_eq!(plan.range(0), 0..4);
        assert_eq!(plan.range(2), 8..10);
        assert_eq!(plan.chunk_of(9), 2);
        assert_eq!(ChunkPlan::new(0, 4).count(), 0);
        assert_eq!(ChunkPlan::new(8, 4).count(), 2);
    }

    #[test]
    fn split_halves_the_remainder() {
        let segment = Segment::new(0, 0..100);
        segment.pos.store(20, Ordering::SeqCst);
        let upper = segment.split(10).unwrap();
        assert_eq!(segment.end.load(Ordering::SeqCst), 60);
        assert_eq!(upper.pos.load(Ordering::SeqCst), 60);
        assert_eq!(upper.end.load(Ordering::SeqCst), 100);
        // Too little left to be worth a connection.
        segment.pos.store(50, Ordering::SeqCst);
        assert!(segment.split(10).is_none());
    }

    #[test]
    fn slow_tail_picks_the_straggler() {
        let t0 = Instant::now();
        let make = |done: u64| {
            Arc::new(Segment {
                chunk: 0,
                pos: AtomicU64::new(done),
                end: AtomicU64::new(10_000),
                started: t0,
                start_pos: 0,
                avoid: None,
            })
        };
        let fast_a = make(5_000);
        let fast_b = make(4_000);
        let slow = make(100);
        let now = t0 + Duration::from_secs(1);
        let active = vec![fast_a.clone(), slow.clone(), fast_b];
        let picked = slow_tail_candidate(&active, &[], now, 1_000).unwrap();
        assert!(Arc::ptr_eq(&picked, &slow));
        // Equal speeds: nothing to split.
        let even = vec![make(5_000), make(5_000)];
        assert!(slow_tail_candidate(&even, &[], now, 1_000).is_none());
        // A lone straggler is judged against the segments that already finished.
        let alone = vec![make(100)];
        assert!(slow_tail_candidate(&alone, &[], now, 1_000).is_none());
        let picked = slow_tail_candidate(&alone, &[5_000.0, 4_000.0], now, 1_000).unwrap();
        assert_eq!(picked.remaining(), 9_900);
        assert!(slow_tail_candidate(&alone, &[150.0, 120.0], now, 1_000).is_none());
    }
}
