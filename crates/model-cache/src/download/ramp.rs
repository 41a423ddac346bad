//! How many connections one file's transfer opens: a few at first, more while more bring more
//! throughput.
//!
//! A fixed number of connections is wrong at both ends: on a fast CDN that caps each
//! connection, one connection per 40 MB/s is what fills the link; on a 2 MB/s home link,
//! sixteen streams each crawl through their own chunk, the first chunk completes after 16 × 5
//! MiB / 2 MB/s ≈ 42 s, and every one is a partial chunk when the link drops. So a transfer
//! starts with [`Limits::start_connections`](crate::settings::Limits) and measures: once every
//! allowed connection streams, it counts the bytes of the next [`WINDOW`]; then
//!
//! - each connection carries less than [`MIN_PER_CONNECTION`]: the link is slow, and more
//!   connections would only split it; it stays;
//! - the rate is less than [`GAIN`] times the one measured with half as many connections: more
//!   did not help; it goes back to that number (the extra ones end with their segments);
//! - otherwise it doubles, up to the limits.
//!
//! It decides once: the number found is kept for the rest of the file.

use std::time::{Duration, Instant};

/// How long a measurement lasts.
pub(crate) const WINDOW: Duration = Duration::from_millis(500);
/// How much faster twice the connections must be to keep them.
pub(crate) const GAIN: f64 = 1.15;
/// Below this many bytes per second on each connection, the link is the limit, not the
/// connections.
pub(crate) const MIN_PER_CONNECTION: f64 = 1024.0 * 1024.0;

#[derive(Debug)]
pub(crate) struct Ramp {
    allowed: usize,
    max: usize,
    /// The measurement in progress: when it began and the transfer's bytes then.
    window: Option<(Instant, u64)>,
    /// The rate measured with the connections allowed before the last step, and that number.
    before: Option<(f64, usize)>,
    settled: bool,
}

impl Ramp {
    /// Starts with `start` connections (all of `max` at once when `start` is 0).
    pub(crate) fn new(start: usize, max: usize) -> Ramp {
        let max = max.max(1);
        let allowed = if start == 0 { max } else { start.min(max) };
        Ramp {
            allowed,
            max,
            window: None,
            before: None,
            settled: allowed >= max,
        }
    }

    /// The connections the transfer may have open now.
    pub(crate) fn allowed(&self) -> usize {
        self.allowed
    }

    /// Takes a look at the transfer: `streaming` connections are receiving bytes and it
    /// received `bytes` in all. Returns the new number when it changed.
    pub(crate) fn observe(&mut self, now: Instant, streaming: usize, bytes: u64) -> Option<usize> {
        if self.settled {
            return None;
        }
        let Some((since, from)) = self.window else {
            // Every allowed connection has its first bytes: the measurement starts (the time
            // to connect and the first byte's wait are not counted).
            if streaming >= self.allowed {
                self.window = Some((now, bytes));
            }
            return None;
        };
        let elapsed = now.saturating_duration_since(since);
        if elapsed < WINDOW {
            return None;
        }
        self.window = None;
        let rate = bytes.saturating_sub(from) as f64 / elapsed.as_secs_f64();
        let was = self.allowed;
        if rate / (self.allowed as f64) < MIN_PER_CONNECTION {
            self.settled = true;
            if let Some((earlier, fewer)) = self.before
                && earlier >= rate
            {
                self.allowed = fewer;
            }
        } else if let Some((earlier, fewer)) = self.before
            && rate < earlier * GAIN
        {
            self.settled = true;
            self.allowed = fewer;
        } else if self.allowed >= self.max {
            // Every connection the limits allow, and they pay.
            self.settled = true;
        } else {
            self.before = Some((rate, self.allowed));
            self.allowed = (self.allowed * 2).min(self.max);
        }
        tracing::debug!(
            rate_mb_s = rate / 1e6,
            connections = was,
            now = self.allowed,
            settled = self.settled,
            "Measured a transfer's connections"
        );
        (self.allowed != was).then_some(self.allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a ramp against a link where `rate(n)` is what `n` connections deliver; the number
    /// of connections it settles on.
    fn settle(start: usize, max: usize, rate: impl Fn(usize) -> f64) -> usize {
        let mut ramp = Ramp::new(start, max);
        let mut now = Instant::now();
        let mut bytes = 0u64;
        for _ in 0..100 {
            // The connections allowed are all streaming by the next look.
            ramp.observe(now, ramp.allowed(), bytes);
            let step = Duration::from_millis(250);
            now += step;
            bytes += (rate(ramp.allowed()) * step.as_secs_f64()) as u64;
        }
        ramp.allowed()
    }

    const MB: f64 = 1e6;

    #[test]
    fn a_slow_link_keeps_a_few_connections() {
        // 2 MB/s whatever the number of connections.
        assert_eq!(settle(4, 16, |_| 2.0 * MB), 4);
    }

    #[test]
    fn a_link_that_caps_each_connection_gets_all_it_can_use() {
        // 40 MB/s per connection, 400 MB/s in all.
        assert_eq!(
            settle(4, 16, |n| (n as f64 * 40.0 * MB).min(400.0 * MB)),
            16
        );
    }

    #[test]
    fn more_connections_that_bring_nothing_are_given_back() {
        // 200 MB/s whatever the number: four connections fill it.
        assert_eq!(settle(4, 16, |_| 200.0 * MB), 4);
        // 30 MB/s per connection up to 250 MB/s: eight fill most of it, sixteen add 4 %.
        assert_eq!(settle(4, 16, |n| (n as f64 * 30.0 * MB).min(250.0 * MB)), 8);
    }

    #[test]
    fn zero_means_every_connection_at_once_and_the_start_never_exceeds_the_limit() {
        assert_eq!(Ramp::new(0, 16).allowed(), 16);
        assert_eq!(Ramp::new(4, 2).allowed(), 2);
        assert_eq!(settle(0, 16, |_| 2.0 * MB), 16);
    }

    #[test]
    fn nothing_is_measured_until_every_allowed_connection_streams() {
        let mut ramp = Ramp::new(4, 16);
        let start = Instant::now();
        // Three of four stream: no measurement starts, however long.
        for i in 0..10 {
            assert_eq!(
                ramp.observe(start + WINDOW * i, 3, 1 << 30),
                None,
                "look {i}"
            );
        }
        assert_eq!(ramp.observe(start + WINDOW * 10, 4, 0), None);
        let after = start + WINDOW * 11;
        assert_eq!(ramp.observe(after, 4, 100 << 20), Some(8));
    }
}
