//! Global transfer limits shared by every download of one engine: connection semaphores (total
//! and per host), a files-at-once semaphore, and one token bucket for bandwidth.
//!
//! They are explicit objects handed to each transfer, so a limit set on the engine holds across
//! all its jobs, and the bandwidth can be changed while transfers run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::settings::Limits;

/// A source of monotonic time, so the token bucket can be tested with a fake clock.
pub trait Clock: Send + Sync + 'static {
    /// Time elapsed since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

/// The real monotonic clock.
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A token bucket shared by all transfers. Tokens are bytes; they refill at `rate` bytes per
/// second up to a burst of a quarter second's worth. A taker may go into debt (a read can be larger
/// than the burst); it then waits until the debt is repaid, so the long-run rate is exact.
pub struct TokenBucket {
    clock: Arc<dyn Clock>,
    state: Mutex<BucketState>,
}

struct BucketState {
    rate: Option<u64>,
    /// Available tokens; negative when in debt.
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    pub fn new(rate: Option<u64>) -> Self {
        Self::with_clock(rate, Arc::new(SystemClock::default()))
    }

    pub fn with_clock(rate: Option<u64>, clock: Arc<dyn Clock>) -> Self {
        let last = clock.now();
        TokenBucket {
            clock,
            state: Mutex::new(BucketState {
                rate: rate.filter(|r| *r > 0),
                tokens: 0.0,
                last,
            }),
        }
    }

    /// Changes the rate (bytes per second; `None` or 0 for unlimited). Takes effect for every
    /// transfer at its next read.
    pub fn set_rate(&self, rate: Option<u64>) {
        let now = self.clock.now();
        let mut state = self.state.lock().expect("bucket lock");
        state.refill(now);
        state.rate = rate.filter(|r| *r > 0);
        if state.rate.is_none() {
            state.tokens = 0.0;
        } else {
            // Old savings would let a burst through at the new rate; old debt is kept.
            state.tokens = state.tokens.min(state.burst());
        }
    }

    pub fn rate(&self) -> Option<u64> {
        self.state.lock().expect("bucket lock").rate
    }

    /// Takes `bytes` tokens and returns how long the caller must wait before using them.
    pub fn reserve(&self, bytes: u64) -> Duration {
        let now = self.clock.now();
        let mut state = self.state.lock().expect("bucket lock");
        state.refill(now);
        let Some(rate) = state.rate else {
            return Duration::ZERO;
        };
        state.tokens -= bytes as f64;
        if state.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-state.tokens / rate as f64)
        }
    }

    /// Takes `bytes` tokens, sleeping as long as the bucket requires.
    pub async fn acquire(&self, bytes: u64) {
        let wait = self.reserve(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl BucketState {
    fn burst(&self) -> f64 {
        self.rate.map(|r| r as f64 / 4.0).unwrap_or(0.0)
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.last);
        self.last = now;
        if let Some(rate) = self.rate {
            self.tokens = (self.tokens + elapsed.as_secs_f64() * rate as f64).min(self.burst());
        }
    }
}

/// All limits of one engine. Cloning shares them.
#[derive(Clone)]
pub struct TransferLimits {
    inner: Arc<LimitsInner>,
}

struct LimitsInner {
    connections: Arc<Semaphore>,
    max_connections: usize,
    per_host_limit: usize,
    per_host: Mutex<HashMap<String, Arc<Semaphore>>>,
    files: Arc<Semaphore>,
    /// Small files (one request each) at once: twice as many as there are connections, so
    /// one file's finishing work (the hash check, the fsyncs, the rename and link, the index
    /// records) overlaps another's request; the requests open at once are still bounded by
    /// `connections`.
    small_files: Arc<Semaphore>,
    bandwidth: TokenBucket,
    buffer_size: usize,
}

/// Permission to open one connection: held for the life of a range request.
pub struct ConnectionPermit {
    _total: OwnedSemaphorePermit,
    _host: OwnedSemaphorePermit,
}

impl TransferLimits {
    pub fn new(limits: &Limits) -> Self {
        TransferLimits {
            inner: Arc::new(LimitsInner {
                connections: Arc::new(Semaphore::new(limits.connections.max(1))),
                max_connections: limits.connections.max(1),
                per_host_limit: limits.connections_per_host.max(1),
                per_host: Mutex::new(HashMap::new()),
                files: Arc::new(Semaphore::new(limits.files_at_once.max(1))),
                small_files: Arc::new(Semaphore::new(2 * limits.connections.max(1))),
                bandwidth: TokenBucket::new(limits.max_bytes_per_second),
                buffer_size: limits.buffer_size.max(4096),
            }),
        }
    }

    /// Waits for a connection slot to `host` (and one of the total).
    pub async fn connection(&self, host: &str) -> ConnectionPermit {
        let host_semaphore = {
            let mut map = self.inner.per_host.lock().expect("limits lock");
            map.entry(host.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.inner.per_host_limit)))
                .clone()
        };
        // Host first: a connection waiting on a busy host must not hold a total slot that a
        // connection to another host could use.
        let host = host_semaphore
            .acquire_owned()
            .await
            .expect("semaphores are never closed");
        let total = self
            .inner
            .connections
            .clone()
            .acquire_owned()
            .await
            .expect("semaphores are never closed");
        ConnectionPermit {
            _total: total,
            _host: host,
        }
    }

    /// Waits for a slot among the small files (one request's worth) downloaded at once: they
    /// do not wait behind `files_at_once`, which paces big files spread over many connections;
    /// each still takes a connection slot.
    pub async fn small_file_slot(&self) -> OwnedSemaphorePermit {
        self.inner
            .small_files
            .clone()
            .acquire_owned()
            .await
            .expect("semaphores are never closed")
    }

    /// Waits for a slot among the files downloaded at once.
    pub async fn file_slot(&self) -> OwnedSemaphorePermit {
        self.inner
            .files
            .clone()
            .acquire_owned()
            .await
            .expect("semaphores are never closed")
    }

    pub fn bandwidth(&self) -> &TokenBucket {
        &self.inner.bandwidth
    }

    /// Size of one connection's write buffer.
    pub fn buffer_size(&self) -> usize {
        self.inner.buffer_size
    }

    /// The total connection limit.
    pub fn max_connections(&self) -> usize {
        self.inner.max_connections
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct FakeClock(AtomicU64);

    impl FakeClock {
        fn advance(&self, by: Duration) {
            self.0.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            Duration::from_nanos(self.0.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn unlimited_bucket_never_waits() {
        let bucket = TokenBucket::with_clock(None, Arc::new(FakeClock::default()));
        assert_eq!(bucket.reserve(u64::MAX / 2), Duration::ZERO);
    }

    #[test]
    fn bucket_charges_debt_at_the_rate() {
        let clock = Arc::new(FakeClock::default());
        let bucket = TokenBucket::with_clock(Some(1000), clock.clone());
        // Empty at start: 500 bytes cost half a second.
        assert_eq!(bucket.reserve(500), Duration::from_millis(500));
        // The debt accumulates: another 500 must wait until a full second.
        assert_eq!(bucket.reserve(500), Duration::from_secs(1));
        // After one second the debt is repaid; a long idle time only saves a 250-byte burst.
        clock.advance(Duration::from_secs(1));
        assert_eq!(bucket.reserve(0), Duration::ZERO);
        clock.advance(Duration::from_secs(100));
        assert_eq!(bucket.reserve(250), Duration::ZERO);
        assert_eq!(bucket.reserve(100), Duration::from_millis(100));
    }

    #[test]
    fn bucket_rate_change_applies_to_the_next_reservation() {
        let clock = Arc::new(FakeClock::default());
        let bucket = TokenBucket::with_clock(Some(1000), clock.clone());
        assert_eq!(bucket.reserve(1000), Duration::from_secs(1));
        clock.advance(Duration::from_secs(1));
        // Ten times faster: 1000 bytes now cost a tenth of a second.
        bucket.set_rate(Some(10_000));
        assert_eq!(bucket.rate(), Some(10_000));
        assert_eq!(bucket.reserve(1000), Duration::from_millis(100));
        clock.advance(Duration::from_millis(100));
        // Slower again: savings do not carry over as a burst bigger than the new rate allows.
        clock.advance(Duration::from_secs(10));
        bucket.set_rate(Some(100));
        assert_eq!(bucket.reserve(25), Duration::ZERO);
        assert_eq!(bucket.reserve(100), Duration::from_secs(1));
        // Lifting the limit clears the debt.
        bucket.set_rate(None);
        assert_eq!(bucket.reserve(1_000_000), Duration::ZERO);
    }

    /// Several jobs reading through one bucket, each waiting what the bucket says before it
    /// uses its bytes: by any time t the bytes released stay within L·t plus the burst (a
    /// quarter second's worth), and a rate change applies from the next read.
    #[test]
    fn jobs_sharing_the_bucket_never_get_more_than_the_rate_plus_the_burst() {
        let clock = Arc::new(FakeClock::default());
        let bucket = TokenBucket::with_clock(Some(300_000), clock.clone());
        // (time its next read may start, bytes it reads) for three jobs.
        let mut jobs = [
            (Duration::ZERO, 16_384u64),
            (Duration::ZERO, 65_536),
            (Duration::ZERO, 262_144),
        ];
        // Each release: (when the bytes may flow, how many).
        let mut released: Vec<(Duration, u64)> = Vec::new();
        // The allowance: the integral of the rate over time (the rate changes once).
        let allowance = |t: Duration| {
            let change = Duration::from_secs(10);
            if t <= change {
                t.as_secs_f64() * 300_000.0
            } else {
                10.0 * 300_000.0 + (t - change).as_secs_f64() * 1_000_000.0
            }
        };
        let mut changed = false;
        for _ in 0..2_000 {
            let (job, (at, bytes)) = jobs
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|(_, (at, _))| *at)
                .unwrap();
            let now = clock.now();
            if at > now {
                clock.advance(at - now);
            }
            if !changed && clock.now() >= Duration::from_secs(10) {
                // At or just after 10 s: the allowance (which counts the higher rate from
                // exactly 10 s) is then an upper bound.
                bucket.set_rate(Some(1_000_000));
                changed = true;
            }
            let wait = bucket.reserve(bytes);
            let flows = clock.now() + wait;
            released.push((flows, bytes));
            jobs[job].0 = flows;
        }
        assert!(changed, "the run went past the rate change");
        released.sort();
        let mut total = 0u64;
        for (t, bytes) in &released {
            total += bytes;
            // Bytes that flow at t may go at most one burst (of the higher rate) beyond L·t.
            let burst = 1_000_000.0 / 4.0;
            assert!(
                total as f64 <= allowance(*t) + burst + 1.0,
                "{total} bytes by {t:?}: more than the rate allows ({})",
                allowance(*t)
            );
        }
        // And the limit is used, not just respected: within a second of the end.
        let (end, _) = released.last().unwrap();
        assert!(total as f64 >= allowance(end.saturating_sub(Duration::from_secs(1))));
    }

    #[tokio::test]
    async fn connection_permits_respect_total_and_host_limits() {
        let limits = TransferLimits::new(&Limits {
            connections: 3,
            connections_per_host: 2,
            ..Limits::default()
        });
        let a1 = limits.connection("a").await;
        let _a2 = limits.connection("a").await;
        // A third connection to `a` must wait, while `b` still gets one.
        assert!(limits.connection("a").now_or_never().is_none());
        let _b1 = limits.connection("b").await;
        // Total is now exhausted for `b` too.
        assert!(limits.connection("b").now_or_never().is_none());
        drop(a1);
        let _a3 = limits.connection("a").await;
    }
}
