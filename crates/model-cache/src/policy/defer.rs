//! Whether a job may run now, and if not, why — as a pure function of the machine's state.
//!
//! [`decide`] takes a [`SchedulePolicy`] and [`Conditions`] (power, disk, time of day, user
//! pause) and returns [`Decision::Run`] or [`Decision::Defer`] with a [`DeferReason`] the user can
//! read. Nothing here touches the machine: the scheduler reads the probes and passes the figures.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::probe::{DiskSpace, PowerSource, PowerState};

/// What to do on battery power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BatteryPolicy {
    /// Download on battery as on AC.
    Never,
    /// Defer while on battery with less than `percent` charge left.
    Below { percent: u8 },
    /// Defer whenever on battery.
    Always,
}

impl Default for BatteryPolicy {
    fn default() -> Self {
        BatteryPolicy::Below { percent: 30 }
    }
}

impl fmt::Display for BatteryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatteryPolicy::Never => f.write_str("never defer"),
            BatteryPolicy::Below { percent } => write!(f, "below {percent}%"),
            BatteryPolicy::Always => f.write_str("always defer on battery"),
        }
    }
}

/// Free space the cache always leaves on its volume: a share of the volume with a floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservePolicy {
    /// Per-mille of the volume's size (50 = 5%), so the type stays `Eq` and exact.
    pub per_mille: u16,
    /// The reserve is never smaller than this many bytes.
    pub floor_bytes: u64,
}

impl Default for ReservePolicy {
    fn default() -> Self {
        ReservePolicy {
            per_mille: 50,
            floor_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

impl ReservePolicy {
    /// No reserve at all.
    pub const NONE: ReservePolicy = ReservePolicy {
        per_mille: 0,
        floor_bytes: 0,
    };

    /// Reserve in bytes on a volume of `total` bytes: max(share, floor).
    pub fn reserve_bytes(&self, total: u64) -> u64 {
        let share = (total as u128 * self.per_mille as u128 / 1000) as u64;
        share.max(self.floor_bytes)
    }
}

/// Local hours during which downloads may run: `[start, end)` in minutes after local midnight.
/// A window whose end is before its start wraps midnight (`01:00–07:00` does not, `22:00–06:00`
/// does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleWindow {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl ScheduleWindow {
    /// A window from `start` to `end`, each given as (hour, minute).
    pub fn new(start: (u16, u16), end: (u16, u16)) -> Self {
        ScheduleWindow {
            start_minute: (start.0 * 60 + start.1) % 1440,
            end_minute: (end.0 * 60 + end.1) % 1440,
        }
    }

    /// Whether `minute_of_day` (0..1440) lies in the window. A window with equal ends is the whole
    /// day.
    pub fn contains(&self, minute_of_day: u16) -> bool {
        let m = minute_of_day % 1440;
        if self.start_minute == self.end_minute {
            true
        } else if self.start_minute < self.end_minute {
            self.start_minute <= m && m < self.end_minute
        } else {
            m >= self.start_minute || m < self.end_minute
        }
    }
}

impl fmt::Display for ScheduleWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}–{:02}:{:02}",
            self.start_minute / 60,
            self.start_minute % 60,
            self.end_minute / 60,
            self.end_minute % 60
        )
    }
}

/// What happens to a job that does not fit in the free space above the reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenShort {
    /// Wait until space is freed.
    #[default]
    Defer,
    /// Fail the job with the figures.
    Fail,
}

/// What to do on a metered connection (a phone's hotspot, a capped plan).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeteredPolicy {
    /// Download as on any network.
    #[default]
    Download,
    /// Wait for a network that is not metered.
    Wait,
}

/// The user's scheduling choices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulePolicy {
    pub battery: BatteryPolicy,
    pub reserve: ReservePolicy,
    /// `None`: any time of day.
    pub window: Option<ScheduleWindow>,
    /// Evict least-recently-used unpinned models to make room for a job that does not fit.
    pub evict_to_make_room: bool,
    /// What to do when a job still does not fit.
    pub when_short: WhenShort,
    /// Jobs downloading at once.
    pub max_running: usize,
    /// Deferred jobs are re-evaluated on every change event and, as a fallback, this often.
    pub re_evaluate_every: Duration,
    /// What to do on a metered connection (saved policies of earlier versions download).
    #[serde(default)]
    pub on_metered: MeteredPolicy,
}

impl Default for SchedulePolicy {
    fn default() -> Self {
        SchedulePolicy {
            battery: BatteryPolicy::default(),
            reserve: ReservePolicy::default(),
            window: None,
            evict_to_make_room: false,
            when_short: WhenShort::Defer,
            max_running: 2,
            re_evaluate_every: Duration::from_secs(60),
            on_metered: MeteredPolicy::Download,
        }
    }
}

/// Why a job is waiting. Serialised into the index and shown to the user through `Display`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeferReason {
    /// On battery and the battery policy says wait.
    OnBattery {
        percent: Option<u8>,
        policy: BatteryPolicy,
    },
    /// The job would take free space under the reserve.
    DiskReserve {
        /// Bytes the job still has to write.
        needed: u64,
        /// Free bytes above the reserve (zero when already under it).
        free_above_reserve: u64,
        reserve: u64,
    },
    /// The disk filled while the job was writing (another program, or a misjudged size).
    DiskFull { needed: u64, available: u64 },
    /// Outside the allowed hours.
    OutsideHours { window: ScheduleWindow },
    /// The connection is metered and the policy says wait for another one.
    Metered,
    /// The user paused all downloads.
    PausedByUser,
    /// The Hub (or its CDN) could not be reached, even after the request-level retries; the
    /// job is tried again at `retry_at` (unix milliseconds), later after each failure.
    NetworkUnavailable {
        message: String,
        attempt: u32,
        retry_at: i64,
    },
}

impl DeferReason {
    /// A short stable name for metrics and filters: `on_battery`, `disk_reserve`, `disk_full`,
    /// `outside_hours`, `paused_by_user`, `network`.
    pub fn kind(&self) -> &'static str {
        match self {
            DeferReason::OnBattery { .. } => "on_battery",
            DeferReason::DiskReserve { .. } => "disk_reserve",
            DeferReason::DiskFull { .. } => "disk_full",
            DeferReason::OutsideHours { .. } => "outside_hours",
            DeferReason::Metered => "metered",
            DeferReason::PausedByUser => "paused_by_user",
            DeferReason::NetworkUnavailable { .. } => "network",
        }
    }
}

impl fmt::Display for DeferReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeferReason::OnBattery {
                percent: Some(p),
                policy,
            } => write!(f, "On battery ({p}%, policy: {policy})"),
            DeferReason::OnBattery {
                percent: None,
                policy,
            } => write!(f, "On battery (policy: {policy})"),
            DeferReason::DiskReserve {
                needed,
                free_above_reserve,
                reserve,
            } => write!(
                f,
                "Free disk would drop under the reserve: needs {}, {} free above the reserve of {}",
                HumanBytes(*needed),
                HumanBytes(*free_above_reserve),
                HumanBytes(*reserve)
            ),
            DeferReason::DiskFull { needed, available } => write!(
                f,
                "The disk is full: needs {} more, {} free; resumes when space is freed",
                HumanBytes(*needed),
                HumanBytes(*available)
            ),
            DeferReason::OutsideHours { window } => write!(f, "Outside allowed hours ({window})"),
            DeferReason::Metered => {
                f.write_str("On a metered connection: waiting for another network (policy)")
            }
            DeferReason::PausedByUser => f.write_str("Paused by you"),
            DeferReason::NetworkUnavailable {
                message, attempt, ..
            } => write!(
                f,
                "Waiting for the network (try {attempt} of {NETWORK_ATTEMPTS}): {message}"
            ),
        }
    }
}

/// Tries of a job that keeps failing on the network before it fails for good: with the delays
/// of [`network_retry`] that is about an hour and a half of waiting.
pub const NETWORK_ATTEMPTS: u32 = 10;

/// The deferral after the `attempt`-th network failure of a job at `now_ms`: retried after 30 s,
/// then twice as long each time, at most 15 minutes apart. `None` once the attempts are used up.
pub fn network_retry(message: &str, attempt: u32, now_ms: i64) -> Option<DeferReason> {
    if attempt == 0 || attempt > NETWORK_ATTEMPTS {
        return None;
    }
    let delay_s = (30u64 << (attempt - 1).min(10)).min(15 * 60);
    Some(DeferReason::NetworkUnavailable {
        message: message.lines().next().unwrap_or(message).to_string(),
        attempt,
        retry_at: now_ms + (delay_s * 1000) as i64,
    })
}

/// A byte count in decimal units with one decimal (`4.1 GB`, `10 GB`, `512 B`), as file managers
/// show sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanBytes(pub u64);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
        if self.0 < 1000 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 999.95 && unit + 1 < UNITS.len() {
            value /= 1000.0;
            unit += 1;
        }
        let text = format!("{value:.1}");
        let text = text.strip_suffix(".0").unwrap_or(&text);
        write!(f, "{text} {}", UNITS[unit])
    }
}

/// The machine's state when a job is considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    pub power: PowerState,
    pub disk: DiskSpace,
    /// Local time of day in minutes after midnight.
    pub minute_of_day: u16,
    /// All downloads paused by the user.
    pub user_paused: bool,
    /// Whether the connection is metered; `None` when the machine cannot tell (then it is
    /// not treated as metered).
    pub metered: Option<bool>,
}

/// The verdict on one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Run,
    Defer { reason: DeferReason },
}

/// Decides whether a job that still has to write `bytes_needed` bytes may run now.
///
/// Checks run in the order a user would want them explained: their own pause first, then the
/// hours, then power, then disk. The disk check is last because it is the only one the scheduler
/// may resolve itself (by evicting).
pub fn decide(policy: &SchedulePolicy, conditions: &Conditions, bytes_needed: u64) -> Decision {
    if conditions.user_paused {
        return Decision::Defer {
            reason: DeferReason::PausedByUser,
        };
    }
    if let Some(window) = policy.window
        && !window.contains(conditions.minute_of_day)
    {
        return Decision::Defer {
            reason: DeferReason::OutsideHours { window },
        };
    }
    if conditions.power.source == PowerSource::Battery {
        let defer = match policy.battery {
            BatteryPolicy::Never => false,
            BatteryPolicy::Always => true,
            // An unknown charge on battery counts as low: better late than a dead laptop.
            BatteryPolicy::Below { percent } => {
                conditions.power.battery_percent.is_none_or(|p| p < percent)
            }
        };
        if defer {
            return Decision::Defer {
                reason: DeferReason::OnBattery {
                    percent: conditions.power.battery_percent,
                    policy: policy.battery,
                },
            };
        }
    }
    if policy.on_metered == MeteredPolicy::Wait && conditions.metered == Some(true) {
        return Decision::Defer {
            reason: DeferReason::Metered,
        };
    }
    if let Some(reason) = space_shortfall(&policy.reserve, &conditions.disk, bytes_needed) {
        return Decision::Defer { reason };
    }
    Decision::Run
}

/// `Some(DeferReason::DiskReserve)` when writing `bytes_needed` would leave less than the reserve.
pub fn space_shortfall(
    reserve: &ReservePolicy,
    disk: &DiskSpace,
    bytes_needed: u64,
) -> Option<DeferReason> {
    let reserve_bytes = reserve.reserve_bytes(disk.total);
    let free_above_reserve = disk.available.saturating_sub(reserve_bytes);
    (bytes_needed > free_above_reserve).then_some(DeferReason::DiskReserve {
        needed: bytes_needed,
        free_above_reserve,
        reserve: reserve_bytes,
    })
}

#[cfg(test)]
mod network_tests {
    use super::*;

    #[test]
    fn network_retries_back_off_and_end() {
        let at = |attempt| match network_retry("Cannot connect\nhint: x", attempt, 1_000) {
            Some(DeferReason::NetworkUnavailable {
                retry_at, message, ..
            }) => {
                assert_eq!(message, "Cannot connect");
                Some(retry_at - 1_000)
            }
            _ => None,
        };
        assert_eq!(at(1), Some(30_000));
        assert_eq!(at(2), Some(60_000));
        assert_eq!(at(5), Some(480_000));
        assert_eq!(at(6), Some(900_000), "capped at 15 minutes");
        assert_eq!(at(NETWORK_ATTEMPTS), Some(900_000));
        assert_eq!(at(NETWORK_ATTEMPTS + 1), None);
        let reason = network_retry("Cannot connect", 2, 0).unwrap();
        assert_eq!(reason.kind(), "network");
        assert!(
            reason
                .to_string()
                .starts_with("Waiting for the network (try 2 of 10)")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1_000_000_000;

    fn conditions() -> Conditions {
        Conditions {
            power: PowerState::NO_BATTERY,
            disk: DiskSpace {
                total: 1000 * GB,
                available: 500 * GB,
            },
            minute_of_day: 12 * 60,
            user_paused: false,
            metered: None,
        }
    }

    #[test]
    fn a_metered_connection_defers_only_when_the_policy_says_wait() {
        let mut policy = SchedulePolicy::default();
        let metered = Conditions {
            metered: Some(true),
            ..conditions()
        };
        assert_eq!(
            decide(&policy, &metered, GB),
            Decision::Run,
            "downloads by default"
        );
        policy.on_metered = MeteredPolicy::Wait;
        assert_eq!(
            decide(&policy, &metered, GB),
            Decision::Defer {
                reason: DeferReason::Metered
            }
        );
        assert_eq!(DeferReason::Metered.kind(), "metered");
        for unknown_or_not in [None, Some(false)] {
            let c = Conditions {
                metered: unknown_or_not,
                ..conditions()
            };
            assert_eq!(decide(&policy, &c, GB), Decision::Run, "{unknown_or_not:?}");
        }
        // Saved policies of earlier versions have no such field: they download.
        let mut saved = serde_json::to_value(SchedulePolicy::default()).unwrap();
        saved.as_object_mut().unwrap().remove("on_metered");
        let read: SchedulePolicy = serde_json::from_value(saved).unwrap();
        assert_eq!(read.on_metered, MeteredPolicy::Download);
    }

    #[test]
    fn reasons_read_well() {
        let battery = DeferReason::OnBattery {
            percent: Some(23),
            policy: BatteryPolicy::Below { percent: 30 },
        };
        assert_eq!(battery.to_string(), "On battery (23%, policy: below 30%)");
        let disk = DeferReason::DiskReserve {
            needed: 4_100_000_000,
            free_above_reserve: 3_200_000_000,
            reserve: 10 * GB,
        };
        assert_eq!(
            disk.to_string(),
            "Free disk would drop under the reserve: needs 4.1 GB, 3.2 GB free above the reserve of 10 GB"
        );
        let hours = DeferReason::OutsideHours {
            window: ScheduleWindow::new((1, 0), (7, 0)),
        };
        assert_eq!(hours.to_string(), "Outside allowed hours (01:00–07:00)");
        assert_eq!(DeferReason::PausedByUser.to_string(), "Paused by you");
        assert_eq!(HumanBytes(999).to_string(), "999 B");
        assert_eq!(HumanBytes(999_960).to_string(), "1 MB");
        assert_eq!(HumanBytes(1_500).to_string(), "1.5 kB");
    }

    #[test]
    fn reasons_round_trip_through_json() {
        let reason = DeferReason::OnBattery {
            percent: Some(23),
            policy: BatteryPolicy::Below { percent: 30 },
        };
        let json = serde_json::to_string(&reason).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"on_battery","percent":23,"policy":{"kind":"below","percent":30}}"#
        );
        assert_eq!(serde_json::from_str::<DeferReason>(&json).unwrap(), reason);
    }

    #[test]
    fn battery_policy_is_applied() {
        let mut c = conditions();
        let mut policy = SchedulePolicy::default();
        c.power = PowerState::on_battery(23);
        policy.battery = BatteryPolicy::Below { percent: 30 };
        assert!(matches!(
            decide(&policy, &c, 0),
            Decision::Defer {
                reason: DeferReason::OnBattery {
                    percent: Some(23),
                    ..
                }
            }
        ));
        c.power = PowerState::on_battery(30);
        assert_eq!(decide(&policy, &c, 0), Decision::Run);
        policy.battery = BatteryPolicy::Always;
        assert_ne!(decide(&policy, &c, 0), Decision::Run);
        policy.battery = BatteryPolicy::Never;
        c.power = PowerState::on_battery(1);
        assert_eq!(decide(&policy, &c, 0), Decision::Run);
        policy.battery = BatteryPolicy::Always;
        c.power = PowerState::plugged_in(5);
        assert_eq!(decide(&policy, &c, 0), Decision::Run);
    }

    #[test]
    fn reserve_is_a_share_with_a_floor() {
        let reserve = ReservePolicy::default();
        assert_eq!(reserve.reserve_bytes(1000 * GB), 50 * GB);
        assert_eq!(reserve.reserve_bytes(10 * GB), 2 * 1024 * 1024 * 1024);
        let disk = DiskSpace {
            total: 200 * GB,
            available: 13_200_000_000,
        };
        let policy = ReservePolicy {
            per_mille: 50,
            floor_bytes: 0,
        };
        // Reserve 10 GB, 3.2 GB above it: 3.2 GB fits, 3.3 GB does not.
        assert_eq!(space_shortfall(&policy, &disk, 3_200_000_000), None);
        assert_eq!(
            space_shortfall(&policy, &disk, 3_300_000_000),
            Some(DeferReason::DiskReserve {
                needed: 3_300_000_000,
                free_above_reserve: 3_200_000_000,
                reserve: 10 * GB
            })
        );
        // Already under the reserve: nothing is free above it.
        let low = DiskSpace {
            total: 200 * GB,
            available: GB,
        };
        assert!(matches!(
            space_shortfall(&policy, &low, 1),
            Some(DeferReason::DiskReserve {
                free_above_reserve: 0,
                ..
            })
        ));
    }

    #[test]
    fn windows_wrap_midnight() {
        let night = ScheduleWindow::new((22, 0), (6, 0));
        assert!(night.contains(23 * 60));
        assert!(night.contains(0));
        assert!(night.contains(5 * 60 + 59));
        assert!(!night.contains(6 * 60));
        assert!(!night.contains(12 * 60));
        let early = ScheduleWindow::new((1, 0), (7, 0));
        assert!(early.contains(60));
        assert!(!early.contains(7 * 60));
        assert!(!early.contains(0));
        assert!(ScheduleWindow::new((3, 0), (3, 0)).contains(17 * 60));
    }

    #[test]
    fn checks_run_in_a_readable_order() {
        let policy = SchedulePolicy {
            battery: BatteryPolicy::Always,
            window: Some(ScheduleWindow::new((1, 0), (7, 0))),
            ..SchedulePolicy::default()
        };
        let mut c = conditions();
        c.power = PowerState::on_battery(90);
        c.disk.available = 0;
        c.user_paused = true;
        let reason = |c: &Conditions| match decide(&policy, c, 10) {
            Decision::Defer { reason } => reason.kind(),
            Decision::Run => "run",
        };
        assert_eq!(reason(&c), "paused_by_user");
        c.user_paused = false;
        assert_eq!(reason(&c), "outside_hours");
        c.minute_of_day = 2 * 60;
        assert_eq!(reason(&c), "on_battery");
        c.power = PowerState::plugged_in(90);
        assert_eq!(reason(&c), "disk_reserve");
        c.disk.available = 500 * GB;
        assert_eq!(reason(&c), "run");
    }
}
