//! Host manifests: the JSON file that tells a browser which program to start for
//! [`crate::HOST_NAME`] and which extensions may talk to it, and where each browser looks for it.
//!
//! The places are pure functions of the browser, the OS and the home folder, so they are tested
//! for every OS on any OS. On Windows the browser finds the manifest through a registry key
//! ([`windows_registry_key`]) whose default value is the manifest's path.
//!
//! A manifest's `path` must be a program the browser starts without arguments of ours, so the
//! installer also writes a launcher ([`launcher_script`]) that starts `mcache native-host` with
//! the app-data folder it was installed for.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::HOST_NAME;

/// The browsers whose manifest places are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Browser {
    Chrome,
    Chromium,
    Edge,
    Firefox,
}

impl Browser {
    pub const ALL: [Browser; 4] = [
        Browser::Chrome,
        Browser::Chromium,
        Browser::Edge,
        Browser::Firefox,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Browser::Chrome => "chrome",
            Browser::Chromium => "chromium",
            Browser::Edge => "edge",
            Browser::Firefox => "firefox",
        }
    }

    fn is_chromium_family(self) -> bool {
        !matches!(self, Browser::Firefox)
    }
}

impl std::str::FromStr for Browser {
    type Err = ManifestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Browser::ALL
            .into_iter()
            .find(|b| b.name() == text)
            .ok_or_else(|| ManifestError::UnknownBrowser(text.to_string()))
    }
}

/// The OS whose conventions a place follows (the engine's: other unixes use the Linux places,
/// as the browsers do).
pub use model_cache::env::Os;

/// What is wrong with an install request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("`{0}` is not a browser this host knows; use chrome, chromium, edge or firefox")]
    UnknownBrowser(String),
    #[error(
        "`{origin}` is not an extension origin {browser} accepts; use `chrome-extension://<32 letters a-p>/`"
    )]
    BadChromeOrigin {
        browser: &'static str,
        origin: String,
    },
    #[error(
        "`{0}` is not a Firefox extension id; use the add-on's id, such as `models@example.org`"
    )]
    BadFirefoxId(String),
    #[error("Firefox has no user data folder for host manifests; drop --user-data-dir")]
    FirefoxUserDataDir,
    #[error("Name at least one extension allowed to use the host (--allow-origin)")]
    NoOrigin,
    #[error("On Windows the browser finds the manifest through the registry; drop --user-data-dir")]
    WindowsUserDataDir,
}

/// The folder the browser reads user-level host manifests from. With `user_data_dir` (a
/// Chromium-family browser started with `--user-data-dir DIR`), it is that profile's own
/// `NativeMessagingHosts` folder. On Windows the manifest may be anywhere: the place returned
/// is a folder of the app-data folder's choosing, `windows_dir`.
pub fn manifest_dir(
    browser: Browser,
    os: Os,
    home: &Path,
    user_data_dir: Option<&Path>,
    windows_dir: &Path,
) -> Result<PathBuf, ManifestError> {
    if let Some(dir) = user_data_dir {
        return match (browser, os) {
            (Browser::Firefox, _) => Err(ManifestError::FirefoxUserDataDir),
            (_, Os::Windows) => Err(ManifestError::WindowsUserDataDir),
            _ => Ok(dir.join("NativeMessagingHosts")),
        };
    }
    Ok(match os {
        Os::Linux => match browser {
            Browser::Chrome => home.join(".config/google-chrome/NativeMessagingHosts"),
            Browser::Chromium => home.join(".config/chromium/NativeMessagingHosts"),
            Browser::Edge => home.join(".config/microsoft-edge/NativeMessagingHosts"),
            Browser::Firefox => home.join(".mozilla/native-messaging-hosts"),
        },
        Os::MacOs => {
            let support = home.join("Library/Application Support");
            match browser {
                Browser::Chrome => support.join("Google/Chrome/NativeMessagingHosts"),
                Browser::Chromium => support.join("Chromium/NativeMessagingHosts"),
                Browser::Edge => support.join("Microsoft Edge/NativeMessagingHosts"),
                Browser::Firefox => support.join("Mozilla/NativeMessagingHosts"),
            }
        }
        Os::Windows => windows_dir.join(browser.name()),
    })
}

/// The per-user registry key whose default value names the manifest, on Windows.
pub fn windows_registry_key(browser: Browser) -> String {
    let vendor = match browser {
        Browser::Chrome => r"Google\Chrome",
        Browser::Chromium => "Chromium",
        Browser::Edge => r"Microsoft\Edge",
        Browser::Firefox => "Mozilla",
    };
    format!(r"HKEY_CURRENT_USER\Software\{vendor}\NativeMessagingHosts\{HOST_NAME}")
}

/// The manifest file's name.
pub fn manifest_file_name() -> String {
    format!("{HOST_NAME}.json")
}

/// A host manifest, as the browsers read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    #[serde(rename = "type")]
    pub kind: String,
    /// Chromium-family browsers: `chrome-extension://ID/` origins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
    /// Firefox: add-on ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_extensions: Option<Vec<String>>,
}

/// The manifest for `browser` starting `launcher`, open to the extensions `allowed` names,
/// each checked against what that browser accepts.
pub fn manifest(
    browser: Browser,
    launcher: &Path,
    allowed: &[String],
) -> Result<Manifest, ManifestError> {
    if allowed.is_empty() {
        return Err(ManifestError::NoOrigin);
    }
    for entry in allowed {
        if browser.is_chromium_family() {
            if !is_chrome_extension_origin(entry) {
                return Err(ManifestError::BadChromeOrigin {
                    browser: browser.name(),
                    origin: entry.clone(),
                });
            }
        } else if !is_firefox_extension_id(entry) {
            return Err(ManifestError::BadFirefoxId(entry.clone()));
        }
    }
    let (origins, extensions) = if browser.is_chromium_family() {
        (Some(allowed.to_vec()), None)
    } else {
        (None, Some(allowed.to_vec()))
    };
    Ok(Manifest {
        name: HOST_NAME.to_string(),
        description: "Model Cache: the models cached on this machine".to_string(),
        path: launcher.to_path_buf(),
        kind: "stdio".to_string(),
        allowed_origins: origins,
        allowed_extensions: extensions,
    })
}

/// `chrome-extension://` then an extension id (32 letters `a`–`p`) then `/`: the only origin
/// form Chromium accepts in `allowed_origins` (no wildcards).
pub fn is_chrome_extension_origin(origin: &str) -> bool {
    origin
        .strip_prefix("chrome-extension://")
        .and_then(|rest| rest.strip_suffix('/'))
        .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| (b'a'..=b'p').contains(&b)))
}

/// An add-on id: `name@domain` or a `{uuid}`, of the characters Firefox allows.
fn is_firefox_extension_id(id: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._@{}+".contains(c);
    !id.is_empty()
        && id.len() <= 256
        && id.chars().all(allowed)
        && (id.contains('@') || (id.starts_with('{') && id.ends_with('}')))
}

/// The launcher the manifest names on Linux and macOS: a shell script starting
/// `mcache native-host` for `data_dir`, passing on what the browser adds (the caller's origin).
pub fn launcher_script(mcache: &Path, data_dir: &Path) -> String {
    format!(
        "#!/bin/sh\n# Written by `mcache native-host install`: the browser starts this for {HOST_NAME}.\nexec {} --data-dir {} native-host \"$@\"\n",
        shell_quote(&mcache.to_string_lossy()),
        shell_quote(&data_dir.to_string_lossy())
    )
}

/// The launcher on Windows: a batch file.
pub fn launcher_batch(mcache: &Path, data_dir: &Path) -> String {
    format!(
        "@echo off\r\n\"{}\" --data-dir \"{}\" native-host %*\r\n",
        mcache.display(),
        data_dir.display()
    )
}

/// `text` in single quotes for `sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "chrome-extension://abcdefghijklmnopabcdefghijklmnop/";

    fn dir(browser: Browser, os: Os) -> PathBuf {
        manifest_dir(browser, os, Path::new("/home/u"), None, Path::new("/data")).unwrap()
    }

    #[test]
    fn linux_places() {
        assert_eq!(
            dir(Browser::Chrome, Os::Linux),
            Path::new("/home/u/.config/google-chrome/NativeMessagingHosts")
        );
        assert_eq!(
            dir(Browser::Chromium, Os::Linux),
            Path::new("/home/u/.config/chromium/NativeMessagingHosts")
        );
        assert_eq!(
            dir(Browser::Edge, Os::Linux),
            Path::new("/home/u/.config/microsoft-edge/NativeMessagingHosts")
        );
        assert_eq!(
            dir(Browser::Firefox, Os::Linux),
            Path::new("/home/u/.mozilla/native-messaging-hosts")
        );
    }

    #[test]
    fn macos_places() {
        let support = "/home/u/Library/Application Support";
        assert_eq!(
            dir(Browser::Chrome, Os::MacOs),
            Path::new(&format!("{support}/Google/Chrome/NativeMessagingHosts"))
        );
        assert_eq!(
            dir(Browser::Chromium, Os::MacOs),
            Path::new(&format!("{support}/Chromium/NativeMessagingHosts"))
        );
        assert_eq!(
            dir(Browser::Edge, Os::MacOs),
            Path::new(&format!("{support}/Microsoft Edge/NativeMessagingHosts"))
        );
        assert_eq!(
            dir(Browser::Firefox, Os::MacOs),
            Path::new(&format!("{support}/Mozilla/NativeMessagingHosts"))
        );
    }

    #[test]
    fn windows_keys_and_places() {
        assert_eq!(
            windows_registry_key(Browser::Chrome),
            r"HKEY_CURRENT_USER\Software\Google\Chrome\NativeMessagingHosts\dev.modelcache.host"
        );
        assert_eq!(
            windows_registry_key(Browser::Edge),
            r"HKEY_CURRENT_USER\Software\Microsoft\Edge\NativeMessagingHosts\dev.modelcache.host"
        );
        assert_eq!(
            windows_registry_key(Browser::Firefox),
            r"HKEY_CURRENT_USER\Software\Mozilla\NativeMessagingHosts\dev.modelcache.host"
        );
        assert_eq!(dir(Browser::Edge, Os::Windows), Path::new("/data/edge"));
    }

    #[test]
    fn a_user_data_dir_holds_its_own_manifests() {
        let place = |browser, os| {
            manifest_dir(
                browser,
                os,
                Path::new("/home/u"),
                Some(Path::new("/tmp/profile")),
                Path::new("/data"),
            )
        };
        assert_eq!(
            place(Browser::Chromium, Os::Linux).unwrap(),
            Path::new("/tmp/profile/NativeMessagingHosts")
        );
        assert_eq!(
            place(Browser::Chrome, Os::MacOs).unwrap(),
            Path::new("/tmp/profile/NativeMessagingHosts")
        );
        assert_eq!(
            place(Browser::Firefox, Os::Linux),
            Err(ManifestError::FirefoxUserDataDir)
        );
        assert_eq!(
            place(Browser::Chrome, Os::Windows),
            Err(ManifestError::WindowsUserDataDir)
        );
    }

    #[test]
    fn manifests_name_origins_or_add_on_ids() {
        let chrome = manifest(Browser::Chromium, Path::new("/bin/host"), &[ID.into()]).unwrap();
        let json = serde_json::to_value(&chrome).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "dev.modelcache.host",
                "description": "Model Cache: the models cached on this machine",
                "path": "/bin/host",
                "type": "stdio",
                "allowed_origins": [ID]
            })
        );
        let firefox = manifest(
            Browser::Firefox,
            Path::new("/bin/host"),
            &["m@example.org".into()],
        )
        .unwrap();
        let json = serde_json::to_value(&firefox).unwrap();
        assert_eq!(
            json["allowed_extensions"],
            serde_json::json!(["m@example.org"])
        );
        assert!(json.get("allowed_origins").is_none());
    }

    #[test]
    fn bad_origins_are_refused() {
        for bad in [
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
            "chrome-extension://*/",
            "chrome-extension://ABCDEFGHIJKLMNOPABCDEFGHIJKLMNOP/",
            "chrome-extension://abcdefghijklmnopabcdefghijklmnoq/",
            "https://example.com/",
        ] {
            assert!(
                matches!(
                    manifest(Browser::Chrome, Path::new("/h"), &[bad.into()]),
                    Err(ManifestError::BadChromeOrigin { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            manifest(Browser::Firefox, Path::new("/h"), &[ID.into()]),
            Err(ManifestError::BadFirefoxId(ID.into()))
        );
        assert_eq!(
            manifest(Browser::Chrome, Path::new("/h"), &[]),
            Err(ManifestError::NoOrigin)
        );
        assert_eq!(
            "safari".parse::<Browser>(),
            Err(ManifestError::UnknownBrowser("safari".into()))
        );
    }

    #[test]
    fn the_launcher_quotes_its_paths() {
        let script = launcher_script(Path::new("/opt/it's/mcache"), Path::new("/d d"));
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(
            script.contains(r#"exec '/opt/it'\''s/mcache' --data-dir '/d d' native-host "$@""#),
            "{script}"
        );
    }
}
