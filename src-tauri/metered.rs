//! Whether the connection is metered, for the background update checks: NetworkManager's
//! `Metered` property on the system bus (Linux). Elsewhere, and where NetworkManager is not
//! running, the answer is "cannot tell" and the checks run.

use model_cache::engine::MeteredProbe;

/// NetworkManager's `NMMetered`: 0 unknown, 1 yes, 2 no, 3 guessed yes, 4 guessed no.
pub fn from_nm_metered(value: u32) -> Option<bool> {
    match value {
        1 | 3 => Some(true),
        2 | 4 => Some(false),
        _ => None,
    }
}

/// Asks NetworkManager on each call (a round of checks every half hour at most).
pub struct SystemMetering;

impl MeteredProbe for SystemMetering {
    #[cfg(target_os = "linux")]
    fn metered(&self) -> Option<bool> {
        let connection = zbus::blocking::Connection::system().ok()?;
        let proxy = zbus::blocking::Proxy::new(
            &connection,
            "org.freedesktop.NetworkManager",
            "/org/freedesktop/NetworkManager",
            "org.freedesktop.NetworkManager",
        )
        .ok()?;
        let value: u32 = proxy.get_property("Metered").ok()?;
        from_nm_metered(value)
    }

    #[cfg(not(target_os = "linux"))]
    fn metered(&self) -> Option<bool> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_manager_values_read_as_metered_or_not() {
        assert_eq!(from_nm_metered(0), None);
        assert_eq!(from_nm_metered(1), Some(true));
        assert_eq!(from_nm_metered(2), Some(false));
        assert_eq!(from_nm_metered(3), Some(true));
        assert_eq!(from_nm_metered(4), Some(false));
        assert_eq!(from_nm_metered(9), None);
    }
}
