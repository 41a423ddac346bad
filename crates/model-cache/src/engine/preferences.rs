//! What the user chose in the app or with `mcache config set`, kept in the app-data folder.
//!
//! Preferences are layered over the settings an edge resolved from the environment: a value the
//! user set wins over an environment default, and a command-line flag wins over both (the edge
//! applies its flags after [`Preferences::apply`]).
//!
//! **API Boundary:** `preferences.json` is read by later versions; fields are added with
//! defaults, never renamed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::{CachePolicy, SchedulePolicy};
use crate::settings::Settings;

/// File name of the preferences in the app-data folder.
pub const PREFERENCES_FILE: &str = "preferences.json";

/// User preferences. `None` means "not set: use the default or the environment".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Preferences {
    /// Another hub-cache folder (an external drive). Takes effect at the next start.
    pub cache_dir: Option<PathBuf>,
    /// The Hub endpoint. Takes effect at the next start.
    pub endpoint: Option<String>,
    /// Mirrors tried in order after the endpoint. Takes effect at the next start.
    pub mirrors: Option<Vec<String>>,
    /// Never touch the network. Takes effect at the next start.
    pub offline: Option<bool>,
    /// Bandwidth limit in bytes per second; `Some(0)` means explicitly unlimited. Live.
    pub max_rate_bps: Option<u64>,
    /// Connections open at once. Takes effect at the next start.
    pub connections: Option<usize>,
    /// When downloads may run: battery, disk reserve, hours. Live.
    pub schedule: Option<SchedulePolicy>,
    /// Size budget and cleanup. Live.
    pub cache: Option<CachePolicy>,
}

/// Errors reading or writing preferences.
#[derive(Debug, thiserror::Error)]
pub enum PreferencesError {
    #[error("Could not read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not valid preferences JSON\nhint: fix or delete the file; defaults are used without it", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("Could not write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Preferences {
    /// The preferences file of an app-data folder.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(PREFERENCES_FILE)
    }

    /// Reads the preferences; a missing file means defaults.
    pub fn load(data_dir: &Path) -> Result<Preferences, PreferencesError> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| PreferencesError::Parse { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Preferences::default()),
            Err(source) => Err(PreferencesError::Read { path, source }),
        }
    }

    /// Writes the preferences atomically (temp file + rename), so a crash never leaves half a
    /// file.
    pub fn save(&self, data_dir: &Path) -> Result<(), PreferencesError> {
        let path = Self::path(data_dir);
        let write = |source| PreferencesError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(write)?;
        let tmp = data_dir.join(format!(".{PREFERENCES_FILE}.{}.tmp", std::process::id()));
        let json = serde_json::to_vec_pretty(self).expect("preferences serialise");
        std::fs::write(&tmp, json).map_err(write)?;
        std::fs::rename(&tmp, &path).map_err(write)
    }

    /// Layers the preferences over settings resolved from the environment.
    pub fn apply(&self, settings: &mut Settings) {
        if let Some(dir) = &self.cache_dir {
            settings.hub_cache = dir.clone();
        }
        if let Some(endpoint) = &self.endpoint {
            settings.endpoint = endpoint.trim_end_matches('/').to_string();
        }
        if let Some(mirrors) = &self.mirrors {
            settings.mirrors = mirrors.clone();
        }
        if let Some(offline) = self.offline {
            settings.offline = offline;
        }
        if let Some(rate) = self.max_rate_bps {
            settings.limits.max_bytes_per_second = (rate > 0).then_some(rate);
        }
        if let Some(connections) = self.connections {
            settings.limits.connections = connections.max(1);
            settings.limits.connections_per_host = settings.limits.connections;
        }
    }

    /// Copies the fields `patch` sets over `self`.
    pub fn merge(&mut self, patch: Preferences) {
        macro_rules! take {
            ($($field:ident),*) => { $( if patch.$field.is_some() { self.$field = patch.$field; } )* };
        }
        take!(
            cache_dir,
            endpoint,
            mirrors,
            offline,
            max_rate_bps,
            connections,
            schedule,
            cache
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_layers_over_settings() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Preferences::load(dir.path()).unwrap(),
            Preferences::default()
        );
        let mut prefs = Preferences::default();
        prefs.merge(Preferences {
            max_rate_bps: Some(20_000_000),
            endpoint: Some("http://127.0.0.1:9/".into()),
            ..Preferences::default()
        });
        prefs.save(dir.path()).unwrap();
        let loaded = Preferences::load(dir.path()).unwrap();
        assert_eq!(loaded, prefs);
        let mut settings = Settings::new("/c".into(), "/d".into());
        loaded.apply(&mut settings);
        assert_eq!(settings.endpoint, "http://127.0.0.1:9");
        assert_eq!(settings.limits.max_bytes_per_second, Some(20_000_000));
        let unlimited = Preferences {
            max_rate_bps: Some(0),
            ..Preferences::default()
        };
        unlimited.apply(&mut settings);
        assert_eq!(settings.limits.max_bytes_per_second, None);
    }

    #[test]
    fn a_broken_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Preferences::path(dir.path()), b"{not json").unwrap();
        let err = Preferences::load(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("not valid preferences JSON"),
            "{err}"
        );
    }
}
