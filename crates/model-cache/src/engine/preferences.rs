//! What the user chose in the app, over the local API or with `mcache config set`: one
//! vocabulary for all three.
//!
//! - [`AppSettings`] is what a user sees: every setting in force, flat, with the names the local
//!   API, the app's settings page and `mcache config` share.
//! - [`PreferencesPatch`] is a change to some of them. It is parsed and validated here, once:
//!   sizes take units (`2 GiB`, or a number of bytes), spans take units (`7d`, or a number of
//!   seconds), and every bad field is reported, not only the first ([`PreferencesPatchError`]).
//! - [`Preferences`] is what is saved in the app-data folder and layered over the settings an
//!   edge resolved from the environment: a value the user set wins over an environment default,
//!   and a command-line flag wins over both (the edge applies its flags after
//!   [`Preferences::apply`]).
//!
//! **API Boundary:** `preferences.json` is read by later versions; fields are added with
//! defaults, never renamed. The names of [`AppSettings`] are the local API's contract.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Diagnostic, ErrorKind, Hint};
use crate::hub::proxy::ProxyUrl;
use crate::policy::{BatteryPolicy, CachePolicy, SchedulePolicy, ScheduleWindow};
use crate::settings::{Mirror, Settings};
use crate::units;

/// File name of the preferences in the app-data folder.
pub const PREFERENCES_FILE: &str = "preferences.json";

/// User preferences as saved. `None` means "not set: use the default or the environment".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Preferences {
    /// Another hub-cache folder (an external drive). Takes effect at the next start.
    pub cache_dir: Option<PathBuf>,
    /// The Hub endpoint. Takes effect at the next start.
    pub endpoint: Option<String>,
    /// Mirrors tried in order after the endpoint, each marked whether it receives the token.
    /// Earlier versions saved a list of URL strings, which reads as mirrors that do not. Takes
    /// effect at the next start.
    pub mirrors: Option<Vec<Mirror>>,
    /// Never touch the network. Takes effect at the next start.
    pub offline: Option<bool>,
    /// The proxy for every request but those to loopback, replacing `HTTPS_PROXY`,
    /// `HTTP_PROXY` and `ALL_PROXY` (`NO_PROXY` still applies); may carry a user and password,
    /// which are never shown. Takes effect at the next start.
    pub proxy: Option<ProxyUrl>,
    /// A PEM file of certificate authorities trusted besides the built-in and system ones,
    /// replacing `REQUESTS_CA_BUNDLE` and friends. Takes effect at the next start.
    pub ca_bundle: Option<PathBuf>,
    /// Bandwidth limit in bytes per second; `Some(0)` means explicitly unlimited. Live.
    pub max_rate_bps: Option<u64>,
    /// Connections open at once. Takes effect at the next start.
    pub connections: Option<usize>,
    /// When downloads may run: battery, disk reserve, hours. Live.
    pub schedule: Option<SchedulePolicy>,
    /// Size budget and cleanup. Live.
    pub cache: Option<CachePolicy>,
    /// Web page origins the mirror answers (CORS, WebRTC signaling), each marked whether it
    /// reads as a holder of the mirror token. Live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<AllowedOrigin>>,
    /// The team bucket, replacing `MODEL_CACHE_BUCKET`; reached with the environment's
    /// endpoint, region and credentials (see `env::bucket_access`) unless it names an
    /// endpoint. Takes effect at the next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<TeamBucket>,
    /// The welcome screen was seen (saved or dismissed): it is not shown by itself again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_run_done: Option<bool>,
    /// Which desktop notifications the app shows. Live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationPreferences>,
}

/// A team bucket chosen in the settings (credentials are never saved: they come from the
/// environment, as for every AWS tool).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamBucket {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// An S3-compatible endpoint (MinIO, R2, Ceph); `AWS_ENDPOINT_URL` or AWS otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Push verified downloads to the bucket.
    #[serde(default)]
    pub push: bool,
}

/// The kinds of desktop notification, each of which the user can turn off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A download finished.
    Finished,
    /// A download failed.
    Failed,
    /// A download has waited for long (battery, disk space, allowed hours).
    Deferred,
    /// The cache crossed a storage alert threshold of its budget.
    Storage,
    /// Models were evicted to make room or to keep the budget.
    Evicted,
    /// A cached model has a newer version on the Hub.
    Updates,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 6] = [
        NotificationKind::Finished,
        NotificationKind::Failed,
        NotificationKind::Deferred,
        NotificationKind::Storage,
        NotificationKind::Evicted,
        NotificationKind::Updates,
    ];

    /// The stable name (`finished`, `failed`, ...); the setting is `notify_<name>`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Finished => "finished",
            NotificationKind::Failed => "failed",
            NotificationKind::Deferred => "deferred",
            NotificationKind::Storage => "storage",
            NotificationKind::Evicted => "evicted",
            NotificationKind::Updates => "updates",
        }
    }
}

/// Which desktop notifications are shown (all by default), and how long a download waits
/// before its deferral is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotificationPreferences {
    pub finished: bool,
    pub failed: bool,
    pub deferred: bool,
    pub storage: bool,
    pub evicted: bool,
    pub updates: bool,
    /// A download deferred (battery, disk, hours) this long is told once.
    pub deferred_after: Span,
}

/// How long a download waits before "waiting" is told, by default.
pub const DEFAULT_DEFERRED_AFTER: Duration = Duration::from_secs(10 * 60);

impl Default for NotificationPreferences {
    fn default() -> Self {
        NotificationPreferences {
            finished: true,
            failed: true,
            deferred: true,
            storage: true,
            evicted: true,
            updates: true,
            deferred_after: Span(DEFAULT_DEFERRED_AFTER),
        }
    }
}

impl NotificationPreferences {
    /// Whether notifications of `kind` are shown.
    pub fn allows(&self, kind: NotificationKind) -> bool {
        match kind {
            NotificationKind::Finished => self.finished,
            NotificationKind::Failed => self.failed,
            NotificationKind::Deferred => self.deferred,
            NotificationKind::Storage => self.storage,
            NotificationKind::Evicted => self.evicted,
            NotificationKind::Updates => self.updates,
        }
    }

    /// Turns notifications of `kind` on or off.
    pub fn set(&mut self, kind: NotificationKind, on: bool) {
        match kind {
            NotificationKind::Finished => self.finished = on,
            NotificationKind::Failed => self.failed = on,
            NotificationKind::Deferred => self.deferred = on,
            NotificationKind::Storage => self.storage = on,
            NotificationKind::Evicted => self.evicted = on,
            NotificationKind::Updates => self.updates = on,
        }
    }
}

/// A web page origin (`https://example.com`, `http://localhost:5173`) the mirror answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedOrigin {
    pub origin: String,
    /// Its pages read as holders of the mirror token without sending it: every cached repo, and
    /// misses fetched. Otherwise they read the cached public repos, or more with the token.
    #[serde(default)]
    pub without_token: bool,
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
    #[error("`{}` is not valid preferences JSON", path.display())]
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

impl PreferencesError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Preferences
    }

    pub fn hints(&self) -> Vec<Hint> {
        match self {
            PreferencesError::Parse { path, .. } => {
                vec![Hint::FixPreferences { path: path.clone() }]
            }
            _ => Vec::new(),
        }
    }
}

impl Diagnostic for PreferencesError {
    fn kind(&self) -> ErrorKind {
        PreferencesError::kind(self)
    }

    fn hints(&self) -> Vec<Hint> {
        PreferencesError::hints(self)
    }
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

    /// Reads the preferences for a start that must not fail because of them: a file that cannot
    /// be read or parsed gives the defaults (its bytes are kept beside it as
    /// `preferences.json.bad`), and a saved start-time setting that would stop the start (an
    /// endpoint that is not a URL, a relative cache folder, …) is dropped. Each problem comes
    /// back as a sentence for a person; the engine shows them as health alerts.
    pub fn load_checked(data_dir: &Path) -> (Preferences, Vec<String>) {
        match Self::load(data_dir) {
            Ok(mut preferences) => {
                let warnings = preferences.drop_invalid();
                (preferences, warnings)
            }
            Err(error) => {
                let path = Self::path(data_dir);
                let kept = path.with_extension("json.bad");
                let cause = std::error::Error::source(&error)
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                let kept_note = if std::fs::copy(&path, &kept).is_ok() {
                    format!("; the file was kept as `{}`", kept.display())
                } else {
                    String::new()
                };
                let warning =
                    format!("{error}{cause}. Model Cache started with default settings{kept_note}");
                (Preferences::default(), vec![warning])
            }
        }
    }

    /// Drops saved start-time settings the settings' own checks refuse (the same checks a
    /// change goes through), and says which.
    fn drop_invalid(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        let saved = serde_json::to_value(&*self).unwrap_or_default();
        for key in [
            "cache_dir",
            "endpoint",
            "mirrors",
            "connections",
            "proxy",
            "ca_bundle",
            "bucket",
        ] {
            let Some(value) = saved.get(key).filter(|v| !v.is_null()) else {
                continue;
            };
            let mut one = Map::new();
            let value = match (key, value) {
                // Saved as `{url, send_token}` entries; a change names the URLs.
                ("mirrors", Value::Array(entries)) => Value::Array(
                    entries
                        .iter()
                        .map(|entry| entry.get("url").cloned().unwrap_or_else(|| entry.clone()))
                        .collect(),
                ),
                // Saved as `{url, endpoint, push}`; a change names the URL.
                ("bucket", entry) => entry.get("url").cloned().unwrap_or(Value::Null),
                _ => value.clone(),
            };
            one.insert(key.to_string(), value);
            let Err(error) = PreferencesPatch::from_json(&Value::Object(one)) else {
                continue;
            };
            match key {
                "cache_dir" => self.cache_dir = None,
                "endpoint" => self.endpoint = None,
                "mirrors" => self.mirrors = None,
                "proxy" => self.proxy = None,
                "ca_bundle" => self.ca_bundle = None,
                "bucket" => self.bucket = None,
                _ => self.connections = None,
            }
            let reasons: Vec<String> = error.errors.iter().map(|e| e.message.clone()).collect();
            let warning = format!(
                "The saved setting `{key}` was ignored ({}); the default is used",
                reasons.join("; ")
            );
            warnings.push(warning);
        }
        warnings
    }

    /// Writes the preferences atomically ([`crate::store::atomic::write`]), so a crash never
    /// leaves half a file.
    pub fn save(&self, data_dir: &Path) -> Result<(), PreferencesError> {
        let path = Self::path(data_dir);
        let write = |source| PreferencesError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(write)?;
        let json = serde_json::to_vec_pretty(self).expect("preferences serialise");
        crate::store::atomic::write(&path, &json).map_err(write)
    }

    /// Layers the preferences over settings resolved from the environment.
    pub fn apply(&self, settings: &mut Settings) {
        if let Some(dir) = &self.cache_dir {
            settings.hub_cache = dir.clone();
            settings.hub_cache_origin = crate::settings::CacheOrigin::Preference;
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
        if let Some(proxy) = &self.proxy {
            settings.proxy.set_all(Some(proxy.clone()));
        }
        if let Some(bundle) = &self.ca_bundle {
            settings.ca_bundle = Some(bundle.clone());
        }
        if let Some(bucket) = &self.bucket {
            let access = &settings.bucket_access;
            settings.bucket = Some(crate::bucket::BucketSettings {
                url: bucket.url.clone(),
                endpoint: bucket.endpoint.clone().or_else(|| access.endpoint.clone()),
                region: access.region.clone(),
                credentials: access.credentials.clone(),
                push: bucket.push,
            });
        }
        if let Some(rate) = self.max_rate_bps {
            settings.limits.max_bytes_per_second = (rate > 0).then_some(rate);
        }
        if let Some(connections) = self.connections {
            settings.limits.connections = connections.max(1);
            settings.limits.connections_per_host = settings.limits.connections;
        }
    }
}

/// What to do on battery, as the settings page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatteryMode {
    Never,
    Below,
    Always,
}

/// The battery policy as a mode and the threshold used by `below` (kept when another mode is
/// chosen, so switching back restores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatterySetting {
    pub mode: BatteryMode,
    pub percent: u8,
}

/// Hours when downloads may run, `HH:MM` to `HH:MM` (across midnight when `end` < `start`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoursSetting {
    pub start: String,
    pub end: String,
}

/// Every setting in force, as the user sees them (`GET /api/settings`, the settings page,
/// `mcache config get`). Sizes are bytes (`*_bytes`), rates bytes per second (`*_bps`), spans
/// written with a unit (`7d`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSettings {
    /// The hub-cache folder (next start when changed).
    pub cache_dir: PathBuf,
    /// Size budget of the cache; `null` for none.
    pub size_budget_bytes: Option<u64>,
    /// Bandwidth limit; `null` for none.
    pub max_rate_bps: Option<u64>,
    pub battery_policy: BatterySetting,
    /// On a metered connection: `download`, or `wait` for another network.
    #[serde(default)]
    pub on_metered: crate::policy::MeteredPolicy,
    /// Free space always left on the cache's disk.
    pub disk_reserve_bytes: u64,
    /// Hours when downloads may run; `null` for any time.
    pub schedule: Option<HoursSetting>,
    /// Mirrors tried after the endpoint (next start when changed).
    pub mirrors: Vec<String>,
    /// The mirrors (of `mirrors`) the Hub token is sent to; the endpoint always receives it.
    /// Never sent over plain `http` except to loopback (next start when changed).
    pub mirrors_receiving_token: Vec<String>,
    /// The Hub endpoint (next start when changed).
    pub endpoint: String,
    /// Whether a Hub token is set (read-only here: the token is set by logging in).
    pub token_set: bool,
    /// Never touch the network (next start when changed).
    pub offline: bool,
    /// The proxy for the Hub, its CDN and the mirrors, shown without its user and password;
    /// `null` for none (next start when changed).
    pub proxy: Option<String>,
    /// The extra CA bundle trusted; `null` for none (next start when changed).
    pub ca_bundle: Option<PathBuf>,
    /// Connections open at once (next start when changed).
    pub connections: usize,
    /// Clean up in the background when the cache is over its budget.
    pub auto_cleanup: bool,
    /// Evict least-recently-used, unpinned models to make room for a download.
    pub evict_to_make_room: bool,
    /// Remove a model's old revisions once a newer one is complete.
    pub prune_old_revisions: bool,
    /// How long an abandoned partial download is kept for resuming.
    pub keep_partial_files_for: Span,
    /// Downloads running at once.
    pub max_running: usize,
    /// Web page origins the mirror answers (CORS and WebRTC signaling).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// The allowed origins whose pages read as holders of the mirror token.
    #[serde(default)]
    pub origins_without_token: Vec<String>,
    /// When each allowed origin's pages last used the mirror (unix ms; read-only).
    #[serde(default)]
    pub origins_last_used: std::collections::BTreeMap<String, i64>,
    /// The team bucket, `s3://bucket/prefix`; `null` for none (next start when changed).
    #[serde(default)]
    pub bucket: Option<String>,
    /// The bucket's S3-compatible endpoint; `null` for AWS or `AWS_ENDPOINT_URL` (next start
    /// when changed).
    #[serde(default)]
    pub bucket_endpoint: Option<String>,
    /// Push verified downloads to the bucket (next start when changed).
    #[serde(default)]
    pub bucket_push: bool,
    /// Whether credentials for the bucket were found in the environment (read-only: they
    /// come from the AWS variables or profile, never from the settings).
    #[serde(default)]
    pub bucket_credentials: bool,
    /// The welcome screen was seen; until then the app shows it on start.
    #[serde(default)]
    pub first_run_done: bool,
    /// Desktop notification when a download finishes.
    #[serde(default = "yes")]
    pub notify_finished: bool,
    /// Desktop notification when a download fails (with the reason and what to do).
    #[serde(default = "yes")]
    pub notify_failed: bool,
    /// Desktop notification when a download has waited `notify_deferred_after` (battery, disk
    /// space, allowed hours), once per wait.
    #[serde(default = "yes")]
    pub notify_deferred: bool,
    /// How long a download waits before that notification.
    #[serde(default = "default_deferred_after")]
    pub notify_deferred_after: Span,
    /// Desktop notification when the cache crosses a storage alert threshold.
    #[serde(default = "yes")]
    pub notify_storage: bool,
    /// Desktop notification naming the models evicted.
    #[serde(default = "yes")]
    pub notify_evicted: bool,
    /// Desktop notification when a cached model has a newer version.
    #[serde(default = "yes")]
    pub notify_updates: bool,
}

fn yes() -> bool {
    true
}

fn default_deferred_after() -> Span {
    Span(DEFAULT_DEFERRED_AFTER)
}

/// A span of time, written with a unit (`7d`, `12h`, `90s`); read from such a string or a
/// number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&units::format_span(self.0))
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        span(&value).map(Span).map_err(serde::de::Error::custom)
    }
}

/// A change to some settings, in the vocabulary of [`AppSettings`]. An absent field is left as
/// it is; for the optional settings, `Some(None)` (JSON `null`) removes the value.
///
/// Built from JSON with [`PreferencesPatch::from_json`] (or serde), or from one `key value` pair
/// typed by a person with [`PreferencesPatch::parse_entry`]; both validate every field.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct PreferencesPatch {
    /// `Some(None)`: back to the environment's folder (next start).
    pub cache_dir: Option<Option<PathBuf>>,
    pub size_budget_bytes: Option<Option<u64>>,
    pub max_rate_bps: Option<Option<u64>>,
    pub battery_policy: Option<BatteryPolicy>,
    pub on_metered: Option<crate::policy::MeteredPolicy>,
    pub disk_reserve_bytes: Option<u64>,
    pub schedule: Option<Option<ScheduleWindow>>,
    /// The mirror URLs; a mirror that stays keeps whether it receives the token.
    pub mirrors: Option<Option<Vec<String>>>,
    /// The mirrors that receive the token (each one of the mirrors after the patch).
    pub mirrors_receiving_token: Option<Vec<String>>,
    /// `Some(None)`: back to the environment's endpoint (next start).
    pub endpoint: Option<Option<String>>,
    pub offline: Option<Option<bool>>,
    /// `Some(None)`: back to the environment's proxies (next start).
    pub proxy: Option<Option<ProxyUrl>>,
    /// `Some(None)`: back to the environment's CA bundle (next start).
    pub ca_bundle: Option<Option<PathBuf>>,
    pub connections: Option<Option<usize>>,
    pub auto_cleanup: Option<bool>,
    pub evict_to_make_room: Option<bool>,
    pub prune_old_revisions: Option<bool>,
    pub keep_partial_files_for: Option<Duration>,
    pub max_running: Option<usize>,
    /// The allowed origins; an origin that stays keeps whether it reads without the token.
    pub allowed_origins: Option<Vec<String>>,
    /// The origins (each one of the allowed origins after the patch) read without the token.
    pub origins_without_token: Option<Vec<String>>,
    /// `Some(None)`: back to the environment's bucket (next start).
    pub bucket: Option<Option<String>>,
    /// `Some(None)`: the environment's endpoint (next start).
    pub bucket_endpoint: Option<Option<String>>,
    pub bucket_push: Option<bool>,
    pub first_run_done: Option<bool>,
    /// Turns kinds of desktop notification on or off (`notify_finished`, ...).
    pub notify: Vec<(NotificationKind, bool)>,
    pub notify_deferred_after: Option<Duration>,
}

/// A change to where the engine's requests and the Hub token go: the endpoint, the mirrors,
/// which mirrors receive the token, the proxy, or which certificate authorities are trusted. The local API refuses these; the app makes them after the
/// person confirms them in a native dialog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustChange {
    /// The setting's name (`endpoint`, `mirrors`, `mirrors_receiving_token`).
    pub setting: String,
    /// Its value in force, as text (a list is one URL per line; `none` when empty).
    pub from: String,
    /// Its value after the change.
    pub to: String,
}

impl std::fmt::Display for TrustChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} → {}", self.setting, self.from, self.to)
    }
}

impl TrustChange {
    /// The settings of `before` and `after` that say where requests and the token go, where
    /// they differ.
    pub fn between(before: &AppSettings, after: &AppSettings) -> Vec<TrustChange> {
        let list = |urls: &[String]| {
            if urls.is_empty() {
                "none".to_string()
            } else {
                urls.join("\n")
            }
        };
        let mut changes = Vec::new();
        let mut compare = |setting: &str, from: String, to: String| {
            if from != to {
                changes.push(TrustChange {
                    setting: setting.to_string(),
                    from,
                    to,
                });
            }
        };
        compare("endpoint", before.endpoint.clone(), after.endpoint.clone());
        let or_none = |value: Option<String>| value.unwrap_or_else(|| "none".to_string());
        compare(
            "proxy",
            or_none(before.proxy.clone()),
            or_none(after.proxy.clone()),
        );
        compare(
            "ca_bundle",
            or_none(before.ca_bundle.as_ref().map(|p| p.display().to_string())),
            or_none(after.ca_bundle.as_ref().map(|p| p.display().to_string())),
        );
        compare("mirrors", list(&before.mirrors), list(&after.mirrors));
        compare(
            "mirrors_receiving_token",
            list(&before.mirrors_receiving_token),
            list(&after.mirrors_receiving_token),
        );
        compare(
            "origins_without_token",
            list(&before.origins_without_token),
            list(&after.origins_without_token),
        );
        // The bucket receives the AWS credentials and serves bytes.
        compare(
            "bucket",
            or_none(before.bucket.clone()),
            or_none(after.bucket.clone()),
        );
        compare(
            "bucket_endpoint",
            or_none(before.bucket_endpoint.clone()),
            or_none(after.bucket_endpoint.clone()),
        );
        changes
    }
}

/// One bad field of a patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every bad field of a patch; nothing of the patch was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))]
pub struct PreferencesPatchError {
    pub errors: Vec<FieldError>,
}

impl PreferencesPatchError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }

    pub fn hints(&self) -> Vec<Hint> {
        Vec::new()
    }

    fn one(field: &str, message: String) -> Self {
        PreferencesPatchError {
            errors: vec![FieldError {
                field: field.to_string(),
                message,
            }],
        }
    }
}

impl Diagnostic for PreferencesPatchError {
    fn kind(&self) -> ErrorKind {
        PreferencesPatchError::kind(self)
    }

    fn hints(&self) -> Vec<Hint> {
        PreferencesPatchError::hints(self)
    }
}

/// The names of every setting, in the order they are shown.
pub const SETTING_NAMES: &[&str] = &[
    "cache_dir",
    "size_budget_bytes",
    "max_rate_bps",
    "battery_policy",
    "on_metered",
    "disk_reserve_bytes",
    "schedule",
    "mirrors",
    "mirrors_receiving_token",
    "endpoint",
    "token_set",
    "offline",
    "proxy",
    "ca_bundle",
    "connections",
    "auto_cleanup",
    "evict_to_make_room",
    "prune_old_revisions",
    "keep_partial_files_for",
    "max_running",
    "allowed_origins",
    "origins_without_token",
    "origins_last_used",
    "bucket",
    "bucket_endpoint",
    "bucket_push",
    "bucket_credentials",
    "first_run_done",
    "notify_finished",
    "notify_failed",
    "notify_deferred",
    "notify_deferred_after",
    "notify_storage",
    "notify_evicted",
    "notify_updates",
];

impl TryFrom<Map<String, Value>> for PreferencesPatch {
    type Error = PreferencesPatchError;

    fn try_from(map: Map<String, Value>) -> Result<Self, Self::Error> {
        PreferencesPatch::from_map(&map)
    }
}

impl PreferencesPatch {
    /// Parses and validates a partial [`AppSettings`] object. Unknown and read-only fields are
    /// refused, so a typo never silently does nothing.
    pub fn from_json(value: &Value) -> Result<Self, PreferencesPatchError> {
        let map = value.as_object().ok_or_else(|| {
            PreferencesPatchError::one("", "The settings must be a JSON object".into())
        })?;
        Self::from_map(map)
    }

    /// One setting as a person types it (`max_rate_bps 20MB/s`, `size_budget_bytes 50GiB`,
    /// `keep_partial_files_for 3d`, `schedule none`): `none`, `null` or `unset` clear it, JSON
    /// is read as JSON, anything else as text.
    pub fn parse_entry(key: &str, text: &str) -> Result<Self, PreferencesPatchError> {
        let trimmed = text.trim();
        let value = if matches!(
            trimmed.to_ascii_lowercase().as_str(),
            "none" | "null" | "unset"
        ) {
            Value::Null
        } else {
            match serde_json::from_str::<Value>(trimmed) {
                Ok(
                    value
                    @ (Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_)),
                ) => value,
                _ => Value::String(trimmed.to_string()),
            }
        };
        let mut map = Map::new();
        map.insert(key.to_string(), value);
        Self::from_map(&map)
    }

    fn from_map(map: &Map<String, Value>) -> Result<Self, PreferencesPatchError> {
        let mut patch = PreferencesPatch::default();
        let mut errors = Vec::new();
        for (key, value) in map {
            let result: Result<(), String> = (|| {
                match key.as_str() {
                    "cache_dir" => patch.cache_dir = Some(nullable(value, |v| folder(key, v))?),
                    "size_budget_bytes" => patch.size_budget_bytes = Some(nullable(value, size)?),
                    "max_rate_bps" => patch.max_rate_bps = Some(nullable(value, rate)?),
                    "battery_policy" => patch.battery_policy = Some(battery(value)?),
                    "on_metered" => {
                        patch.on_metered = Some(match value.as_str() {
                            Some("download") => crate::policy::MeteredPolicy::Download,
                            Some("wait") => crate::policy::MeteredPolicy::Wait,
                            _ => return Err("`on_metered` must be `download` or `wait`".into()),
                        })
                    }
                    "disk_reserve_bytes" => patch.disk_reserve_bytes = Some(size(value)?),
                    "schedule" => patch.schedule = Some(nullable(value, hours)?),
                    "mirrors" => {
                        patch.mirrors = Some(nullable(value, |value| {
                            let list =
                                value.as_array().ok_or("`mirrors` must be a list of URLs")?;
                            list.iter().map(|m| url(key, m)).collect()
                        })?);
                    }
                    "mirrors_receiving_token" => {
                        let list = value
                            .as_array()
                            .ok_or("`mirrors_receiving_token` must be a list of mirror URLs")?;
                        patch.mirrors_receiving_token = Some(
                            list.iter()
                                .map(|m| token_url(key, m))
                                .collect::<Result<_, _>>()?,
                        );
                    }
                    "endpoint" => patch.endpoint = Some(nullable(value, |v| url(key, v))?),
                    "offline" => patch.offline = Some(nullable(value, |v| boolean(key, v))?),
                    "proxy" => patch.proxy = Some(nullable(value, |v| proxy(key, v))?),
                    "ca_bundle" => patch.ca_bundle = Some(nullable(value, |v| file(key, v))?),
                    "connections" => {
                        patch.connections = Some(nullable(value, |v| count(key, v, 1, 256))?)
                    }
                    "auto_cleanup" => patch.auto_cleanup = Some(boolean(key, value)?),
                    "evict_to_make_room" => patch.evict_to_make_room = Some(boolean(key, value)?),
                    "prune_old_revisions" => patch.prune_old_revisions = Some(boolean(key, value)?),
                    "keep_partial_files_for" => patch.keep_partial_files_for = Some(span(value)?),
                    "max_running" => patch.max_running = Some(count(key, value, 1, 16)?),
                    "allowed_origins" | "origins_without_token" => {
                        let list = value
                            .as_array()
                            .ok_or(format!("`{key}` must be a list of origins"))?;
                        let origins = list
                            .iter()
                            .map(|o| {
                                o.as_str()
                                    .ok_or(format!("`{key}` must be a list of origins"))
                            })
                            .map(|o| o.and_then(origin))
                            .collect::<Result<Vec<_>, _>>()?;
                        if key == "allowed_origins" {
                            patch.allowed_origins = Some(origins);
                        } else {
                            patch.origins_without_token = Some(origins);
                        }
                    }
                    "origins_last_used" => {
                        return Err("`origins_last_used` is read-only".to_string());
                    }
                    "bucket" => patch.bucket = Some(nullable(value, bucket_url)?),
                    "bucket_endpoint" => {
                        patch.bucket_endpoint = Some(nullable(value, |v| url(key, v))?)
                    }
                    "bucket_push" => patch.bucket_push = Some(boolean(key, value)?),
                    "first_run_done" => patch.first_run_done = Some(boolean(key, value)?),
                    "bucket_credentials" => {
                        return Err(
                            "`bucket_credentials` is read-only; credentials come from the AWS variables or profile".to_string()
                        );
                    }
                    "notify_deferred_after" => {
                        let after = span(value)?;
                        if after > Duration::from_secs(7 * 86_400) {
                            return Err(
                                "`notify_deferred_after` must be at most 7 days".to_string()
                            );
                        }
                        patch.notify_deferred_after = Some(after);
                    }
                    name if notification_kind(name).is_some() => {
                        let kind = notification_kind(name).expect("checked by the guard");
                        patch.notify.push((kind, boolean(key, value)?));
                    }
                    "token_set" => {
                        return Err(
                            "`token_set` is read-only; the token is set by logging in".to_string()
                        );
                    }
                    other => {
                        return Err(format!(
                            "Unknown setting `{other}` (settings: {})",
                            SETTING_NAMES.join(", ")
                        ));
                    }
                }
                Ok(())
            })();
            if let Err(message) = result {
                errors.push(FieldError {
                    field: key.clone(),
                    message,
                });
            }
        }
        if errors.is_empty() {
            Ok(patch)
        } else {
            Err(PreferencesPatchError { errors })
        }
    }

    /// Writes the patch into the saved preferences; `schedule` and `cache` are the policies in
    /// force, which the patch changes field by field, and `mirrors` the mirrors the edge
    /// resolved (in force while the preferences name none). Fails, changing nothing, when
    /// `mirrors_receiving_token` names a URL that is not one of the mirrors.
    pub fn apply(
        &self,
        prefs: &mut Preferences,
        schedule: &SchedulePolicy,
        cache: &CachePolicy,
        mirrors: &[Mirror],
        bucket: Option<&crate::bucket::BucketSettings>,
    ) -> Result<(), PreferencesPatchError> {
        let next_bucket = self.next_bucket(prefs, bucket)?;
        let next_mirrors = self.next_mirrors(prefs, mirrors)?;
        let next_origins = self.next_origins(prefs)?;
        let mut schedule = prefs.schedule.clone().unwrap_or_else(|| schedule.clone());
        let mut cache = prefs.cache.clone().unwrap_or_else(|| cache.clone());
        let (mut schedule_changed, mut cache_changed) = (false, false);
        if let Some(dir) = &self.cache_dir {
            prefs.cache_dir = dir.clone();
        }
        if let Some(endpoint) = &self.endpoint {
            prefs.endpoint = endpoint.clone();
        }
        if let Some(mirrors) = next_mirrors {
            prefs.mirrors = mirrors;
        }
        if let Some(bucket) = next_bucket {
            prefs.bucket = bucket;
        }
        if let Some(done) = self.first_run_done {
            prefs.first_run_done = Some(done);
        }
        if let Some(origins) = next_origins {
            prefs.allowed_origins = Some(origins);
        }
        if let Some(offline) = self.offline {
            prefs.offline = offline;
        }
        if let Some(proxy) = &self.proxy {
            prefs.proxy = proxy.clone();
        }
        if let Some(bundle) = &self.ca_bundle {
            prefs.ca_bundle = bundle.clone();
        }
        if let Some(connections) = self.connections {
            prefs.connections = connections;
        }
        if let Some(rate) = self.max_rate_bps {
            prefs.max_rate_bps = Some(rate.unwrap_or(0));
        }
        if let Some(on_metered) = self.on_metered {
            schedule.on_metered = on_metered;
            schedule_changed = true;
        }
        if let Some(battery) = self.battery_policy {
            schedule.battery = battery;
            schedule_changed = true;
        }
        if let Some(reserve) = self.disk_reserve_bytes {
            schedule.reserve.floor_bytes = reserve;
            schedule_changed = true;
        }
        if let Some(window) = &self.schedule {
            schedule.window = *window;
            schedule_changed = true;
        }
        if let Some(evict) = self.evict_to_make_room {
            schedule.evict_to_make_room = evict;
            schedule_changed = true;
        }
        if let Some(running) = self.max_running {
            schedule.max_running = running;
            schedule_changed = true;
        }
        if let Some(budget) = self.size_budget_bytes {
            cache.budget = budget;
            cache_changed = true;
        }
        if let Some(auto) = self.auto_cleanup {
            cache.auto_cleanup = auto;
            cache_changed = true;
        }
        if let Some(prune) = self.prune_old_revisions {
            cache.prune_old_revisions = prune;
            cache_changed = true;
        }
        if let Some(keep) = self.keep_partial_files_for {
            cache.stale_incomplete_after = keep;
            cache_changed = true;
        }
        if !self.notify.is_empty() || self.notify_deferred_after.is_some() {
            let mut notifications = prefs.notifications.unwrap_or_default();
            for (kind, on) in &self.notify {
                notifications.set(*kind, *on);
            }
            if let Some(after) = self.notify_deferred_after {
                notifications.deferred_after = Span(after);
            }
            prefs.notifications = Some(notifications);
        }
        if schedule_changed {
            prefs.schedule = Some(schedule);
        }
        if cache_changed {
            prefs.cache = Some(cache);
        }
        Ok(())
    }

    /// The allowed origins after the patch (`None`: unchanged). Fails when
    /// `origins_without_token` names an origin that is not allowed.
    fn next_origins(
        &self,
        prefs: &Preferences,
    ) -> Result<Option<Vec<AllowedOrigin>>, PreferencesPatchError> {
        if self.allowed_origins.is_none() && self.origins_without_token.is_none() {
            return Ok(None);
        }
        let in_force = prefs.allowed_origins.clone().unwrap_or_default();
        let mut origins: Vec<AllowedOrigin> = match &self.allowed_origins {
            Some(list) => {
                let mut out: Vec<AllowedOrigin> = Vec::new();
                for origin in list {
                    if out.iter().any(|o| &o.origin == origin) {
                        continue;
                    }
                    let without_token = in_force
                        .iter()
                        .any(|o| &o.origin == origin && o.without_token);
                    out.push(AllowedOrigin {
                        origin: origin.clone(),
                        without_token,
                    });
                }
                out
            }
            None => in_force,
        };
        if let Some(trusted) = &self.origins_without_token {
            if let Some(unknown) = trusted
                .iter()
                .find(|t| !origins.iter().any(|o| &o.origin == *t))
            {
                return Err(PreferencesPatchError::one(
                    "origins_without_token",
                    format!("`{unknown}` is not one of the allowed origins; allow it first"),
                ));
            }
            for origin in &mut origins {
                origin.without_token = trusted.contains(&origin.origin);
            }
        }
        Ok(Some(origins))
    }

    /// The saved bucket after the patch (`None`: unchanged; `Some(None)`: back to the edge's).
    /// `bucket_endpoint` and `bucket_push` change the bucket in force (the saved one, else the
    /// environment's `in_force`); without one they are refused.
    fn next_bucket(
        &self,
        prefs: &Preferences,
        in_force: Option<&crate::bucket::BucketSettings>,
    ) -> Result<Option<Option<TeamBucket>>, PreferencesPatchError> {
        if self.bucket.is_none() && self.bucket_endpoint.is_none() && self.bucket_push.is_none() {
            return Ok(None);
        }
        let current = prefs.bucket.clone().or_else(|| {
            in_force.map(|b| TeamBucket {
                url: b.url.clone(),
                endpoint: None,
                push: b.push,
            })
        });
        let mut next = match &self.bucket {
            Some(None) => return Ok(Some(None)),
            Some(Some(url)) => TeamBucket {
                url: url.clone(),
                endpoint: current.as_ref().and_then(|b| b.endpoint.clone()),
                push: current.as_ref().is_some_and(|b| b.push),
            },
            None => current.ok_or_else(|| {
                let field = if self.bucket_endpoint.is_some() {
                    "bucket_endpoint"
                } else {
                    "bucket_push"
                };
                PreferencesPatchError::one(field, "Set `bucket` (s3://bucket/prefix) first".into())
            })?,
        };
        if let Some(endpoint) = &self.bucket_endpoint {
            next.endpoint = endpoint.clone();
        }
        if let Some(push) = self.bucket_push {
            next.push = push;
        }
        Ok(Some(Some(next)))
    }

    /// The saved mirrors after the patch (`None`: unchanged; `Some(None)`: back to the edge's).
    fn next_mirrors(
        &self,
        prefs: &Preferences,
        resolved: &[Mirror],
    ) -> Result<Option<Option<Vec<Mirror>>>, PreferencesPatchError> {
        if self.mirrors.is_none() && self.mirrors_receiving_token.is_none() {
            return Ok(None);
        }
        let in_force = prefs.mirrors.as_deref().unwrap_or(resolved);
        let urls: Vec<String> = match &self.mirrors {
            Some(Some(urls)) => urls.clone(),
            Some(None) if self.mirrors_receiving_token.is_none() => return Ok(Some(None)),
            Some(None) => resolved.iter().map(|m| m.url.clone()).collect(),
            None => in_force.iter().map(|m| m.url.clone()).collect(),
        };
        if let Some(receiving) = &self.mirrors_receiving_token
            && let Some(stranger) = receiving.iter().find(|r| !urls.contains(r))
        {
            return Err(PreferencesPatchError::one(
                "mirrors_receiving_token",
                format!("`{stranger}` is not one of the mirrors; add it to `mirrors` first"),
            ));
        }
        let send_token = |url: &String| match &self.mirrors_receiving_token {
            Some(receiving) => receiving.contains(url),
            None => in_force.iter().any(|m| &m.url == url && m.send_token),
        };
        Ok(Some(Some(
            urls.iter()
                .map(|url| Mirror {
                    url: url.clone(),
                    send_token: send_token(url),
                })
                .collect(),
        )))
    }

    /// Whether the patch changes the bandwidth limit.
    pub fn changes_rate(&self) -> bool {
        self.max_rate_bps.is_some()
    }
}

impl AppSettings {
    /// The settings in force: saved preferences over the settings the edge resolved, and the
    /// live policies.
    pub fn from_parts(
        prefs: &Preferences,
        settings: &Settings,
        schedule: &SchedulePolicy,
        cache: &CachePolicy,
        rate: Option<u64>,
        token_set: bool,
    ) -> AppSettings {
        let (mode, percent) = match schedule.battery {
            BatteryPolicy::Never => (BatteryMode::Never, 30),
            BatteryPolicy::Below { percent } => (BatteryMode::Below, percent),
            BatteryPolicy::Always => (BatteryMode::Always, 30),
        };
        let mirrors = prefs.mirrors.as_deref().unwrap_or(&settings.mirrors);
        let origins = prefs.allowed_origins.clone().unwrap_or_default();
        let notify = prefs.notifications.unwrap_or_default();
        AppSettings {
            cache_dir: prefs
                .cache_dir
                .clone()
                .unwrap_or_else(|| settings.hub_cache.clone()),
            size_budget_bytes: cache.budget,
            max_rate_bps: rate.filter(|r| *r > 0),
            battery_policy: BatterySetting { mode, percent },
            on_metered: schedule.on_metered,
            disk_reserve_bytes: schedule.reserve.floor_bytes,
            schedule: schedule.window.map(|w| HoursSetting {
                start: hhmm(w.start_minute),
                end: hhmm(w.end_minute),
            }),
            mirrors: mirrors.iter().map(|m| m.url.clone()).collect(),
            mirrors_receiving_token: mirrors
                .iter()
                .filter(|m| m.send_token)
                .map(|m| m.url.clone())
                .collect(),
            endpoint: prefs
                .endpoint
                .clone()
                .unwrap_or_else(|| settings.endpoint.clone()),
            token_set,
            offline: prefs.offline.unwrap_or(settings.offline),
            proxy: match &prefs.proxy {
                Some(proxy) => Some(proxy.to_string()),
                None => settings.proxy.https.as_ref().map(ProxyUrl::to_string),
            },
            ca_bundle: prefs
                .ca_bundle
                .clone()
                .or_else(|| settings.ca_bundle.clone()),
            connections: prefs.connections.unwrap_or(settings.limits.connections),
            auto_cleanup: cache.auto_cleanup,
            evict_to_make_room: schedule.evict_to_make_room,
            prune_old_revisions: cache.prune_old_revisions,
            keep_partial_files_for: Span(cache.stale_incomplete_after),
            max_running: schedule.max_running,
            allowed_origins: origins.iter().map(|o| o.origin.clone()).collect(),
            origins_without_token: origins
                .iter()
                .filter(|o| o.without_token)
                .map(|o| o.origin.clone())
                .collect(),
            origins_last_used: Default::default(),
            bucket: match &prefs.bucket {
                Some(bucket) => Some(bucket.url.clone()),
                None => settings.bucket.as_ref().map(|b| b.url.clone()),
            },
            bucket_endpoint: match &prefs.bucket {
                Some(bucket) => bucket.endpoint.clone(),
                None => settings.bucket.as_ref().and_then(|b| b.endpoint.clone()),
            },
            bucket_push: match &prefs.bucket {
                Some(bucket) => bucket.push,
                None => settings.bucket.as_ref().is_some_and(|b| b.push),
            },
            bucket_credentials: settings.bucket_access.credentials.is_some(),
            first_run_done: prefs.first_run_done.unwrap_or(false),
            notify_finished: notify.finished,
            notify_failed: notify.failed,
            notify_deferred: notify.deferred,
            notify_deferred_after: notify.deferred_after,
            notify_storage: notify.storage,
            notify_evicted: notify.evicted,
            notify_updates: notify.updates,
        }
    }
}

/// The notification kind a `notify_<kind>` setting names.
fn notification_kind(setting: &str) -> Option<NotificationKind> {
    let name = setting.strip_prefix("notify_")?;
    NotificationKind::ALL
        .into_iter()
        .find(|k| k.as_str() == name)
}

fn hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn parse_hhmm(field: &str, text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{field}` must be a time of day (HH:MM), not `{text}`");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let h: u16 = h.trim().parse().map_err(|_| bad())?;
    let m: u16 = m.trim().parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}

fn nullable<T>(
    value: &Value,
    parse: impl FnOnce(&Value) -> Result<T, String>,
) -> Result<Option<T>, String> {
    match value {
        Value::Null => Ok(None),
        other => parse(other).map(Some),
    }
}

/// A size: a number of bytes, or text with a unit (`2 GiB`, `500MB`).
fn size(value: &Value) -> Result<u64, String> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("`{n}` is not a number of bytes")),
        Value::String(text) => units::parse_size(text).map_err(|e| e.to_string()),
        other => Err(format!("`{other}` is not a size such as `2 GiB`")),
    }
}

/// A bandwidth limit: a positive number of bytes per second, or text (`20MB/s`); `null` (or
/// `unlimited`) for none.
fn rate(value: &Value) -> Result<u64, String> {
    let limit = match value {
        Value::Number(n) => n.as_u64().filter(|n| *n > 0),
        Value::String(text) => units::parse_rate(text).map_err(|e| e.to_string())?,
        _ => None,
    };
    limit.ok_or_else(|| {
        "`max_rate_bps` must be a positive number of bytes per second (or text such as `20MB/s`), or null for no limit".into()
    })
}

/// A span: a number of seconds, or text with a unit (`7d`).
fn span(value: &Value) -> Result<Duration, String> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{n}` is not a number of seconds")),
        Value::String(text) => units::parse_span(text).map_err(|e| e.to_string()),
        other => Err(format!("`{other}` is not a span of time such as `7d`")),
    }
}

fn boolean(field: &str, value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(format!("`{field}` must be true or false")),
    }
}

fn count(field: &str, value: &Value, min: u64, max: u64) -> Result<usize, String> {
    value
        .as_u64()
        .filter(|n| (min..=max).contains(n))
        .map(|n| n as usize)
        .ok_or_else(|| format!("`{field}` must be {min} to {max}"))
}

/// An `http(s)` URL with a host, without a trailing slash.
fn url(field: &str, value: &Value) -> Result<String, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("`{field}` must be a URL"))?
        .trim()
        .trim_end_matches('/');
    let bad = || format!("`{text}` is not an http(s) URL with a host (in `{field}`)");
    let parsed = url::Url::parse(text).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(text.to_string())
}

/// A team bucket URL: `s3://bucket` or `s3://bucket/prefix`, without a trailing slash.
fn bucket_url(value: &Value) -> Result<String, String> {
    let text = value
        .as_str()
        .ok_or("`bucket` must be a bucket URL such as `s3://team-models/hf`")?
        .trim()
        .trim_end_matches('/');
    let bad = || {
        format!("`{text}` is not a bucket URL; write it as `s3://bucket` or `s3://bucket/prefix`")
    };
    let rest = text.strip_prefix("s3://").ok_or_else(bad)?;
    let name = rest.split('/').next().unwrap_or("");
    let valid_name = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_name {
        return Err(bad());
    }
    Ok(text.to_string())
}

/// A mirror URL the token may be sent to: `https`, or plain `http` to loopback.
/// A web origin as browsers send it: `http(s)://host[:port]`, no path, query or user; lower
/// case, without a trailing slash or the scheme's default port.
fn origin(text: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "`{text}` is not a web origin; write it as the page's scheme, host and port, e.g. `https://example.com` or `http://localhost:5173`"
        )
    };
    let parsed = url::Url::parse(text.trim()).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !matches!(parsed.path(), "" | "/")
    {
        return Err(bad());
    }
    Ok(parsed.origin().ascii_serialization())
}

fn token_url(field: &str, value: &Value) -> Result<String, String> {
    let text = url(field, value)?;
    let parsed = url::Url::parse(&text).map_err(|e| e.to_string())?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if parsed.scheme() == "https" || loopback {
        Ok(text)
    } else {
        Err(format!(
            "`{text}` is plain http: the token is sent only over https (or to this machine)"
        ))
    }
}

/// A proxy URL (`http://host:port`, `host:port`, with or without `user:password@`). The
/// message never repeats a password.
fn proxy(field: &str, value: &Value) -> Result<ProxyUrl, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("`{field}` must be a proxy URL such as `http://proxy:3128`"))?;
    let proxy = ProxyUrl::new(text)
        .ok_or_else(|| format!("`{field}` must be a proxy URL such as `http://proxy:3128`"))?;
    proxy
        .parse()
        .map_err(|reason| format!("`{proxy}` cannot be used as `{field}`: {reason}"))?;
    Ok(proxy)
}

/// An absolute path to a file.
fn file(field: &str, value: &Value) -> Result<PathBuf, String> {
    let path = folder(field, value)?;
    if path.is_dir() {
        return Err(format!(
            "`{field}` must be a file, not the folder `{}`",
            path.display()
        ));
    }
    Ok(path)
}

fn folder(field: &str, value: &Value) -> Result<PathBuf, String> {
    let text = value
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("`{field}` must be a folder path"))?;
    let path = PathBuf::from(text);
    if !path.is_absolute() {
        return Err(format!("`{field}` must be an absolute path, not `{text}`"));
    }
    Ok(path)
}

fn battery(value: &Value) -> Result<BatteryPolicy, String> {
    let mode = value
        .get("mode")
        .and_then(Value::as_str)
        .ok_or("`battery_policy.mode` must be `never`, `below` or `always`")?;
    Ok(match mode {
        "never" => BatteryPolicy::Never,
        "always" => BatteryPolicy::Always,
        "below" => {
            let percent = value
                .get("percent")
                .and_then(Value::as_u64)
                .filter(|p| *p <= 100)
                .ok_or("`battery_policy.percent` must be 0 to 100")?;
            BatteryPolicy::Below {
                percent: percent as u8,
            }
        }
        other => {
            return Err(format!(
                "`{other}` is not a battery mode (never, below, always)"
            ));
        }
    })
}

fn hours(value: &Value) -> Result<ScheduleWindow, String> {
    let get = |end: &str| {
        value
            .get(end)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("`schedule.{end}` must be a time of day (HH:MM)"))
    };
    Ok(ScheduleWindow::new(
        parse_hhmm("schedule.start", get("start")?)?,
        parse_hhmm("schedule.end", get("end")?)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_layers_over_settings() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Preferences::load(dir.path()).unwrap(),
            Preferences::default()
        );
        let mut prefs = Preferences::default();
        let patch = PreferencesPatch::from_json(
            &json!({"max_rate_bps": "20MB/s", "endpoint": "http://127.0.0.1:9/"}),
        )
        .unwrap();
        patch
            .apply(
                &mut prefs,
                &SchedulePolicy::default(),
                &CachePolicy::default(),
                &[],
                None,
            )
            .unwrap();
        prefs.save(dir.path()).unwrap();
        let loaded = Preferences::load(dir.path()).unwrap();
        assert_eq!(loaded, prefs);
        let mut settings = Settings::new("/c".into(), "/d".into());
        loaded.apply(&mut settings);
        assert_eq!(settings.endpoint, "http://127.0.0.1:9");
        assert_eq!(settings.limits.max_bytes_per_second, Some(20_000_000));
        let unlimited = PreferencesPatch::parse_entry("max_rate_bps", "none").unwrap();
        unlimited
            .apply(
                &mut prefs,
                &SchedulePolicy::default(),
                &CachePolicy::default(),
                &[],
                None,
            )
            .unwrap();
        prefs.apply(&mut settings);
        assert_eq!(settings.limits.max_bytes_per_second, None);
    }

    #[test]
    fn a_bucket_chosen_in_the_settings_is_reached_with_the_environments_credentials() {
        let patch = |value: Value| PreferencesPatch::from_json(&value);
        // Bad URLs and a push without a bucket are refused, each naming its field.
        for bad in ["team-models", "s3://", "s3://A_B", "https://x.test/bucket"] {
            let error = patch(json!({ "bucket": bad })).unwrap_err();
            assert_eq!(error.errors[0].field, "bucket", "{bad}");
        }
        let mut prefs = Preferences::default();
        let policies = (SchedulePolicy::default(), CachePolicy::default());
        let error = patch(json!({"bucket_push": true}))
            .unwrap()
            .apply(&mut prefs, &policies.0, &policies.1, &[], None)
            .unwrap_err();
        assert_eq!(error.errors[0].field, "bucket_push");
        assert!(patch(json!({"bucket_credentials": true})).is_err());

        // The environment's bucket is what `bucket_push` changes when none is saved.
        let env_bucket = crate::bucket::BucketSettings {
            url: "s3://env-bucket/hf".into(),
            endpoint: None,
            region: None,
            credentials: None,
            push: false,
        };
        patch(json!({"bucket_push": true}))
            .unwrap()
            .apply(&mut prefs, &policies.0, &policies.1, &[], Some(&env_bucket))
            .unwrap();
        assert_eq!(prefs.bucket.as_ref().unwrap().url, "s3://env-bucket/hf");
        assert!(prefs.bucket.as_ref().unwrap().push);

        patch(
            json!({"bucket": "s3://team-models/hf/", "bucket_endpoint": "http://127.0.0.1:9000"}),
        )
        .unwrap()
        .apply(&mut prefs, &policies.0, &policies.1, &[], Some(&env_bucket))
        .unwrap();
        let mut settings = Settings::new("/c".into(), "/d".into());
        settings.bucket_access = crate::bucket::BucketAccess {
            endpoint: Some("http://elsewhere.test".into()),
            region: Some("eu-west-1".into()),
            credentials: Some(crate::bucket::BucketCredentials {
                access_key_id: "AKID".into(),
                secret_access_key: crate::secret::Token::new("secret-not-saved").unwrap(),
                session_token: None,
            }),
        };
        prefs.apply(&mut settings);
        let bucket = settings.bucket.clone().unwrap();
        assert_eq!(bucket.url, "s3://team-models/hf");
        assert_eq!(bucket.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(bucket.region.as_deref(), Some("eu-west-1"));
        assert!(bucket.push, "the push choice stays with the new URL");
        assert!(bucket.credentials.is_some());
        assert!(
            !serde_json::to_string(&prefs)
                .unwrap()
                .contains("secret-not-saved"),
            "credentials are never saved"
        );
        let shown =
            AppSettings::from_parts(&prefs, &settings, &policies.0, &policies.1, None, false);
        assert_eq!(shown.bucket.as_deref(), Some("s3://team-models/hf"));
        assert!(shown.bucket_credentials);

        // A new bucket is a trust change; clearing it goes back to the environment's.
        let before = AppSettings::from_parts(
            &Preferences::default(),
            &Settings::new("/c".into(), "/d".into()),
            &policies.0,
            &policies.1,
            None,
            false,
        );
        let settings_names: Vec<String> = TrustChange::between(&before, &shown)
            .into_iter()
            .map(|c| c.setting)
            .collect();
        assert_eq!(settings_names, ["bucket", "bucket_endpoint"]);
        patch(json!({"bucket": null}))
            .unwrap()
            .apply(&mut prefs, &policies.0, &policies.1, &[], Some(&env_bucket))
            .unwrap();
        assert_eq!(prefs.bucket, None);
    }

    #[test]
    fn saved_mirrors_survive_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let prefs = Preferences {
            mirrors: Some(vec![
                Mirror::new("http://127.0.0.1:9"),
                Mirror::sent_token("https://mirror.example"),
            ]),
            ..Preferences::default()
        };
        prefs.save(dir.path()).unwrap();
        let (loaded, warnings) = Preferences::load_checked(dir.path());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(loaded.mirrors, prefs.mirrors);
        // A saved mirror that is not a URL is still dropped, with a warning.
        let bad = Preferences {
            mirrors: Some(vec![Mirror::new("not a url")]),
            ..Preferences::default()
        };
        bad.save(dir.path()).unwrap();
        let (loaded, warnings) = Preferences::load_checked(dir.path());
        assert_eq!(loaded.mirrors, None);
        assert!(warnings[0].contains("`mirrors`"), "{warnings:?}");
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
        assert!(matches!(err.hints()[..], [Hint::FixPreferences { .. }]));
    }

    #[test]
    fn sizes_and_spans_take_units() {
        let patch = PreferencesPatch::from_json(&json!({
            "size_budget_bytes": "2 GiB",
            "disk_reserve_bytes": 1000,
            "keep_partial_files_for": "3d",
        }))
        .unwrap();
        assert_eq!(patch.size_budget_bytes, Some(Some(2 << 30)));
        assert_eq!(patch.disk_reserve_bytes, Some(1000));
        assert_eq!(
            patch.keep_partial_files_for,
            Some(Duration::from_secs(3 * 86_400))
        );
        let entry = PreferencesPatch::parse_entry("keep_partial_files_for", "604800").unwrap();
        assert_eq!(
            entry.keep_partial_files_for,
            Some(Duration::from_secs(604_800))
        );
        let cleared = PreferencesPatch::parse_entry("size_budget_bytes", "none").unwrap();
        assert_eq!(cleared.size_budget_bytes, Some(None));
        assert_eq!(
            serde_json::to_value(Span(Duration::from_secs(7 * 86_400))).unwrap(),
            json!("1w")
        );
    }

    #[test]
    fn every_bad_field_is_reported() {
        let error = PreferencesPatch::from_json(&json!({
            "connections": 0,
            "battery_policy": {"mode": "below", "percent": 150},
            "endpoint": "http://",
            "cache_dir": "relative/folder",
            "max_rate_bps": 0,
            "colour": "blue",
            "token_set": true,
            "offline": false,
        }))
        .unwrap_err();
        let mut fields: Vec<&str> = error.errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "battery_policy",
                "cache_dir",
                "colour",
                "connections",
                "endpoint",
                "max_rate_bps",
                "token_set"
            ]
        );
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert!(PreferencesPatch::from_json(&json!([1])).is_err());
    }

    /// A preferences file from before the notification settings loads with every kind on; a
    /// patch turns one kind off and sets the wait, and only that is saved.
    #[test]
    fn notification_settings_default_on_and_change_one_by_one() {
        let old: Preferences = serde_json::from_str(r#"{"offline": true}"#).unwrap();
        assert_eq!(old.notifications, None);
        let shown = |prefs: &Preferences| {
            AppSettings::from_parts(
                prefs,
                &Settings::new("/c".into(), "/d".into()),
                &SchedulePolicy::default(),
                &CachePolicy::default(),
                None,
                false,
            )
        };
        let before = shown(&old);
        assert!(before.notify_finished && before.notify_failed && before.notify_deferred);
        assert!(before.notify_storage && before.notify_evicted && before.notify_updates);
        assert_eq!(before.notify_deferred_after, Span(DEFAULT_DEFERRED_AFTER));
        // An AppSettings from an older engine (no notify_* fields) still reads.
        let mut json = serde_json::to_value(&before).unwrap();
        for kind in NotificationKind::ALL {
            json.as_object_mut()
                .unwrap()
                .remove(&format!("notify_{}", kind.as_str()));
        }
        json.as_object_mut()
            .unwrap()
            .remove("notify_deferred_after");
        assert_eq!(serde_json::from_value::<AppSettings>(json).unwrap(), before);

        let mut prefs = old.clone();
        let patch = PreferencesPatch::from_json(
            &serde_json::json!({"notify_failed": false, "notify_deferred_after": "30s"}),
        )
        .unwrap();
        patch
            .apply(
                &mut prefs,
                &SchedulePolicy::default(),
                &CachePolicy::default(),
                &[],
                None,
            )
            .unwrap();
        let after = shown(&prefs);
        assert!(!after.notify_failed);
        assert!(after.notify_finished && after.notify_deferred && after.notify_evicted);
        assert_eq!(after.notify_deferred_after, Span(Duration::from_secs(30)));
        let notifications = prefs.notifications.unwrap();
        assert!(!notifications.allows(NotificationKind::Failed));
        assert!(notifications.allows(NotificationKind::Storage));
        assert_eq!(prefs.schedule, None, "nothing else was saved");
        // Saved and read back.
        let saved: Preferences =
            serde_json::from_str(&serde_json::to_string(&prefs).unwrap()).unwrap();
        assert_eq!(saved, prefs);

        let typed = PreferencesPatch::parse_entry("notify_evicted", "false").unwrap();
        assert_eq!(typed.notify, vec![(NotificationKind::Evicted, false)]);
    }

    #[test]
    fn bad_notification_settings_are_refused_each_beside_its_field() {
        let err = PreferencesPatch::from_json(&serde_json::json!({
            "notify_failed": "sometimes",
            "notify_deferred_after": "8d",
            "notify_everything": true,
        }))
        .unwrap_err();
        let mut fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "notify_deferred_after",
                "notify_everything",
                "notify_failed"
            ]
        );
        let message = |field: &str| {
            err.errors
                .iter()
                .find(|e| e.field == field)
                .unwrap()
                .message
                .clone()
        };
        assert_eq!(
            message("notify_failed"),
            "`notify_failed` must be true or false"
        );
        assert!(message("notify_deferred_after").contains("at most 7 days"));
        assert!(message("notify_everything").starts_with("Unknown setting"));
    }

    #[test]
    fn every_setting_shown_has_its_name_listed() {
        let shown = AppSettings::from_parts(
            &Preferences::default(),
            &Settings::new("/c".into(), "/d".into()),
            &SchedulePolicy::default(),
            &CachePolicy::default(),
            None,
            false,
        );
        let mut fields: Vec<String> = serde_json::to_value(shown)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut names: Vec<String> = SETTING_NAMES.iter().map(|n| n.to_string()).collect();
        fields.sort();
        names.sort();
        assert_eq!(fields, names);
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let mut prefs = Preferences::default();
        let schedule = SchedulePolicy {
            max_running: 3,
            ..SchedulePolicy::default()
        };
        let patch: PreferencesPatch =
            serde_json::from_value(json!({"schedule": {"start": "22:00", "end": "06:30"}}))
                .unwrap();
        patch
            .apply(&mut prefs, &schedule, &CachePolicy::default(), &[], None)
            .unwrap();
        let saved = prefs.schedule.clone().unwrap();
        assert_eq!(saved.max_running, 3);
        assert_eq!(saved.window, Some(ScheduleWindow::new((22, 0), (6, 30))));
        assert!(prefs.cache.is_none());
        assert!(prefs.max_rate_bps.is_none());
    }

    #[test]
    fn the_proxy_and_ca_bundle_are_saved_applied_and_shown_without_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("corp.pem");
        std::fs::write(&bundle, "").unwrap();
        let patch = PreferencesPatch::from_json(&json!({
            "proxy": "http://alice:s3cret@proxy.corp:3128",
            "ca_bundle": bundle,
        }))
        .unwrap();
        assert!(!format!("{patch:?}").contains("s3cret"));
        let mut prefs = Preferences::default();
        patch
            .apply(
                &mut prefs,
                &SchedulePolicy::default(),
                &CachePolicy::default(),
                &[],
                None,
            )
            .unwrap();
        prefs.save(dir.path()).unwrap();
        let saved = Preferences::load(dir.path()).unwrap();
        assert_eq!(saved, prefs);
        assert!(!format!("{saved:?}").contains("s3cret"));

        let mut settings = Settings::new("/c".into(), "/d".into());
        settings.proxy.https = ProxyUrl::new("http://env:1");
        settings.proxy.no_proxy = Some("corp.example".into());
        saved.apply(&mut settings);
        let proxy = settings.proxy.https.as_ref().unwrap();
        assert_eq!(proxy.expose(), "http://alice:s3cret@proxy.corp:3128");
        assert_eq!(settings.proxy.http, settings.proxy.https);
        assert_eq!(settings.proxy.no_proxy.as_deref(), Some("corp.example"));
        assert_eq!(settings.ca_bundle.as_deref(), Some(bundle.as_path()));

        let shown = AppSettings::from_parts(
            &saved,
            &settings,
            &SchedulePolicy::default(),
            &CachePolicy::default(),
            None,
            false,
        );
        assert_eq!(shown.proxy.as_deref(), Some("http://proxy.corp:3128/"));
        let before = AppSettings::from_parts(
            &Preferences::default(),
            &Settings::new("/c".into(), "/d".into()),
            &SchedulePolicy::default(),
            &CachePolicy::default(),
            None,
            false,
        );
        let changed: Vec<String> = TrustChange::between(&before, &shown)
            .into_iter()
            .map(|c| c.setting)
            .collect();
        assert_eq!(changed, ["proxy", "ca_bundle"]);

        let error =
            PreferencesPatch::from_json(&json!({"proxy": "socks5://bob:hunter2@p:1"})).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(PreferencesPatch::from_json(&json!({"ca_bundle": dir.path()})).is_err());
    }
}
