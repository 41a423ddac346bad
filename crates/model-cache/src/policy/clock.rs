//! Time as the scheduler sees it: the wall clock and the local time of day, behind a trait so
//! tests can move time (and cross a schedule window) without waiting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::probe::Changes;

/// Reads the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
    /// Local time of day in minutes after midnight (0..1440).
    fn minute_of_day(&self) -> u16;

    /// [`Clock::now`] in unix milliseconds.
    fn now_ms(&self) -> i64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// The machine's clock, in its local time zone.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn minute_of_day(&self) -> u16 {
        use chrono::Timelike;
        let local = chrono::Local::now();
        (local.hour() * 60 + local.minute()) as u16
    }
}

/// A clock for tests: time moves only when told, and each move signals [`Changes`].
#[derive(Debug, Clone)]
pub struct FakeClock {
    state: Arc<Mutex<(SystemTime, u16)>>,
    changes: Changes,
}

impl FakeClock {
    pub fn new(now: SystemTime, minute_of_day: u16, changes: Changes) -> Self {
        FakeClock {
            state: Arc::new(Mutex::new((now, minute_of_day % 1440))),
            changes,
        }
    }

    /// Moves time forward; the time of day follows.
    pub fn advance(&self, by: Duration) {
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.0 += by;
            state.1 = ((state.1 as u64 + by.as_secs() / 60) % 1440) as u16;
        }
        self.changes.notify();
    }

    /// Sets the local time of day.
    pub fn set_minute_of_day(&self, minute: u16) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = minute % 1440;
        self.changes.notify();
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    fn minute_of_day(&self) -> u16 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_time_of_day() {
        let clock = FakeClock::new(UNIX_EPOCH, 23 * 60 + 30, Changes::default());
        clock.advance(Duration::from_secs(3600));
        assert_eq!(clock.minute_of_day(), 30);
        assert_eq!(clock.now_ms(), 3_600_000);
        assert!(SystemClock.minute_of_day() < 1440);
    }
}
