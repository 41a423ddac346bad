//! Power, disk and memory probes: what the scheduler asks the machine before it starts a job.
//!
//! Each probe is a small trait so tests can drive it: [`PowerProbe`] (real: [`SystemPowerProbe`],
//! on `starship-battery`), [`DiskProbe`] (real: [`FsDiskProbe`], `statvfs` of the cache's own
//! volume through `fs4`), and [`system_memory`] (`sysinfo`). The fakes ([`FakePower`],
//! [`FakeDisk`]) change state on command and signal the change through [`Changes`], the same
//! channel the real [`ProbeWatcher`] uses when it sees the machine change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::PolicyError;

/// Where the machine draws power from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerSource {
    /// Plugged in, or a machine without a battery.
    Ac,
    /// Running on its battery.
    Battery,
}

/// The machine's power state at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerState {
    pub source: PowerSource,
    /// Charge of the battery (all batteries together) in percent; `None` without a battery.
    pub battery_percent: Option<u8>,
}

impl PowerState {
    /// A machine on mains power with no battery at all (a desktop, a server, CI).
    pub const NO_BATTERY: PowerState = PowerState {
        source: PowerSource::Ac,
        battery_percent: None,
    };

    /// On battery with `percent` left.
    pub fn on_battery(percent: u8) -> Self {
        PowerState {
            source: PowerSource::Battery,
            battery_percent: Some(percent.min(100)),
        }
    }

    /// Plugged in with a battery charged to `percent`.
    pub fn plugged_in(percent: u8) -> Self {
        PowerState {
            source: PowerSource::Ac,
            battery_percent: Some(percent.min(100)),
        }
    }
}

/// Space on the volume holding a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpace {
    /// Size of the volume in bytes.
    pub total: u64,
    /// Bytes this (unprivileged) process may still write.
    pub available: u64,
}

/// Memory of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryInfo {
    pub total: u64,
    pub available: u64,
}

/// Reads the machine's power state.
pub trait PowerProbe: Send + Sync {
    fn power(&self) -> Result<PowerState, PolicyError>;
}

/// Reads the free space of the volume holding a path.
/// Whether the machine's connection is metered (a phone's hotspot, a capped plan). `None` when
/// it cannot tell. The edge that can ask the system (the app, over NetworkManager) provides
/// it; may block briefly (it is called off the async threads).
pub trait MeteredProbe: Send + Sync {
    fn metered(&self) -> Option<bool>;
}

/// A machine that cannot tell (and tests that do not care).
pub struct UnknownMetering;

impl MeteredProbe for UnknownMetering {
    fn metered(&self) -> Option<bool> {
        None
    }
}

pub trait DiskProbe: Send + Sync {
    fn space(&self, path: &Path) -> Result<DiskSpace, PolicyError>;
}

/// A change signal: every probe change, and every action that frees space, bumps it so the
/// scheduler re-evaluates deferred jobs at once instead of on its slow timer.
#[derive(Debug, Clone)]
pub struct Changes(Arc<watch::Sender<u64>>);

impl Default for Changes {
    fn default() -> Self {
        Changes(Arc::new(watch::channel(0).0))
    }
}

impl Changes {
    /// Tells every subscriber that something may have changed.
    pub fn notify(&self) {
        self.0
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// A receiver that sees every later [`Changes::notify`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// The real power probe, on `starship-battery`. A machine without a battery is on AC.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemPowerProbe;

impl PowerProbe for SystemPowerProbe {
    fn power(&self) -> Result<PowerState, PolicyError> {
        use battery::units::energy::watt_hour;

        let manager = battery::Manager::new().map_err(|source| PolicyError::Battery {
            source: Box::new(source),
        })?;
        let batteries = manager.batteries().map_err(|source| PolicyError::Battery {
            source: Box::new(source),
        })?;
        let (mut energy, mut full, mut count, mut discharging) = (0.0f32, 0.0f32, 0, false);
        for battery in batteries {
            let battery = battery.map_err(|source| PolicyError::Battery {
                source: Box::new(source),
            })?;
            count += 1;
            energy += battery.energy().get::<watt_hour>();
            full += battery.energy_full().get::<watt_hour>();
            // `Discharging` is the only state that means "not on mains": a full or paused battery
            // (charge limit reached) is plugged in, and `Unknown` is what many laptops report
            // while plugged in and idle.
            discharging |= battery.state() == battery::State::Discharging;
        }
        if count == 0 {
            return Ok(PowerState::NO_BATTERY);
        }
        let percent = if full > 0.0 {
            Some(((energy / full) * 100.0).round().clamp(0.0, 100.0) as u8)
        } else {
            None
        };
        Ok(PowerState {
            source: if discharging {
                PowerSource::Battery
            } else {
                PowerSource::Ac
            },
            battery_percent: percent,
        })
    }
}

/// The real disk probe: `statvfs` (`GetDiskFreeSpaceEx` on Windows) of the volume holding the
/// path. The path's nearest existing ancestor is asked, so a cache folder not created yet still
/// reports the volume it will live on.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsDiskProbe;

impl DiskProbe for FsDiskProbe {
    fn space(&self, path: &Path) -> Result<DiskSpace, PolicyError> {
        let existing = path
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or_else(|| Path::new("."));
        let stats = fs4::statvfs(existing).map_err(|source| PolicyError::DiskSpace {
            path: existing.to_path_buf(),
            source,
        })?;
        Ok(DiskSpace {
            total: stats.total_space(),
            available: stats.available_space(),
        })
    }
}

/// Memory of this machine, through `sysinfo`; `None` where the platform does not tell.
pub fn system_memory() -> Option<MemoryInfo> {
    let mut system = sysinfo::System::new().ok()?;
    system.refresh_memory();
    Some(MemoryInfo {
        total: system.total_memory(),
        available: system.available_memory(),
    })
}

/// A power probe for tests: reports what it was told, and signals each change.
#[derive(Debug, Clone)]
pub struct FakePower {
    state: Arc<Mutex<PowerState>>,
    changes: Changes,
}

impl FakePower {
    pub fn new(state: PowerState, changes: Changes) -> Self {
        FakePower {
            state: Arc::new(Mutex::new(state)),
            changes,
        }
    }

    /// Changes the reported state and tells the scheduler.
    pub fn set(&self, state: PowerState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        self.changes.notify();
    }
}

impl PowerProbe for FakePower {
    fn power(&self) -> Result<PowerState, PolicyError> {
        Ok(*self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A disk probe for tests: a volume of a given size whose free space the test sets, whatever the
/// path asked about.
#[derive(Debug, Clone)]
pub struct FakeDisk {
    space: Arc<Mutex<DiskSpace>>,
    changes: Changes,
}

impl FakeDisk {
    pub fn new(space: DiskSpace, changes: Changes) -> Self {
        FakeDisk {
            space: Arc::new(Mutex::new(space)),
            changes,
        }
    }

    /// Sets the available bytes and tells the scheduler.
    pub fn set_available(&self, available: u64) {
        self.space
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .available = available;
        self.changes.notify();
    }

    /// Adds (or with a negative number removes) available bytes, as a file write or delete would.
    pub fn adjust_available(&self, delta: i64) {
        {
            let mut space = self.space.lock().unwrap_or_else(|e| e.into_inner());
            space.available = space.available.saturating_add_signed(delta);
        }
        self.changes.notify();
    }
}

impl DiskProbe for FakeDisk {
    fn space(&self, _path: &Path) -> Result<DiskSpace, PolicyError> {
        Ok(*self.space.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Polls the real probes and signals [`Changes`] when the power source, the battery (by whole
/// percent steps of 5) or the free space (by more than 1%) changes. Operating systems offer
/// push notifications for power, but not portably; a cheap poll every few seconds is what
/// reaches every platform.
pub struct ProbeWatcher {
    pub power: Arc<dyn PowerProbe>,
    pub disk: Arc<dyn DiskProbe>,
    pub path: PathBuf,
    pub every: Duration,
    pub changes: Changes,
}

impl ProbeWatcher {
    /// Runs until `cancel` fires.
    pub async fn run(self, cancel: tokio_util::sync::CancellationToken) {
        let mut last_power = self.power.power().ok();
        let mut last_disk = self.disk.space(&self.path).ok();
        let mut interval = tokio::time::interval(self.every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = interval.tick() => {}
            }
            let power = self.power.power().ok();
            let disk = self.disk.space(&self.path).ok();
            let power_changed = match (last_power, power) {
                (Some(a), Some(b)) => {
                    a.source != b.source
                        || a.battery_percent.map(|p| p / 5) != b.battery_percent.map(|p| p / 5)
                }
                (a, b) => a.is_some() != b.is_some(),
            };
            let disk_changed = match (last_disk, disk) {
                (Some(a), Some(b)) => a.available.abs_diff(b.available) > a.total / 100,
                (a, b) => a.is_some() != b.is_some(),
            };
            if power_changed || disk_changed {
                tracing::debug!(?power, ?disk, "machine state changed");
                last_power = power;
                last_disk = disk;
                self.changes.notify();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_probes_read_this_machine() {
        // Machines here (CI, containers) have no battery: the probe must say "on AC", not fail.
        let power = SystemPowerProbe.power().expect("power probe");
        if power.battery_percent.is_none() {
            assert_eq!(power.source, PowerSource::Ac);
        }
        let dir = tempfile::tempdir().unwrap();
        let space = FsDiskProbe.space(dir.path()).expect("disk probe");
        assert!(space.total > 0);
        assert!(space.available > 0);
        assert!(space.available <= space.total);
        // A folder that does not exist yet reports the volume it will be created on.
        let later = FsDiskProbe
            .space(&dir.path().join("not/yet/there"))
            .expect("disk probe of a missing folder");
        assert_eq!(later.total, space.total);
        let memory = system_memory().expect("memory of a Linux machine");
        assert!(memory.total > 0);
    }

    #[test]
    fn fakes_signal_changes() {
        let changes = Changes::default();
        let mut rx = changes.subscribe();
        let power = FakePower::new(PowerState::plugged_in(80), changes.clone());
        power.set(PowerState::on_battery(40));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert_eq!(power.power().unwrap(), PowerState::on_battery(40));
        let disk = FakeDisk::new(
            DiskSpace {
                total: 100,
                available: 10,
            },
            changes.clone(),
        );
        disk.adjust_available(-20);
        assert_eq!(disk.space(Path::new("/")).unwrap().available, 0);
        assert!(rx.has_changed().unwrap());
    }
}
