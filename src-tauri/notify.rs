//! Desktop notifications, behind a small trait so the event glue can be tested without D-Bus.
//!
//! The real implementation calls `notify-rust` directly rather than the Tauri notification
//! plugin: the plugin sends on a background task and swallows D-Bus errors, and we want a failure
//! to reach the log.
//!
//! Every notification carries the app's icon. Notification servers take an icon name from the
//! theme or a file path; the app writes its own icon (built into the binary) once into its
//! app-data folder and passes that path, so the icon shows whether or not the app is installed.

use std::path::{Path, PathBuf};

/// The app's icon, built into the binary.
const ICON_PNG: &[u8] = include_bytes!("../icons/128x128.png");

/// Something that shows a notification to the user.
pub trait Notifier: Send + Sync + 'static {
    /// Shows `title` / `body`. Errors are returned so callers can log them.
    fn notify(&self, title: &str, body: &str) -> Result<(), String>;
}

/// Notifications over the freedesktop D-Bus interface (and the native APIs elsewhere).
#[derive(Debug, Default, Clone)]
pub struct DesktopNotifier {
    /// The icon file shown with each notification.
    icon: Option<PathBuf>,
}

impl DesktopNotifier {
    /// A notifier showing the app's icon, written into `data_dir` when it is not there yet.
    pub fn with_icon_in(data_dir: &Path) -> Self {
        DesktopNotifier {
            icon: app_icon(data_dir),
        }
    }

    /// The icon file shown with each notification.
    pub fn icon(&self) -> Option<&Path> {
        self.icon.as_deref()
    }
}

impl Notifier for DesktopNotifier {
    fn notify(&self, title: &str, body: &str) -> Result<(), String> {
        let mut note = notify_rust::Notification::new();
        note.appname("Model Cache").summary(title).body(body);
        if let Some(icon) = &self.icon {
            note.icon(&icon.to_string_lossy());
        }
        note.show().map(|_| ()).map_err(|e| e.to_string())
    }
}

/// `<data_dir>/icons/model-cache.png`, the app's icon, written (atomically) when missing or
/// different. `None` when it cannot be written: notifications then go without an icon.
pub fn app_icon(data_dir: &Path) -> Option<PathBuf> {
    let path = data_dir.join("icons").join("model-cache.png");
    if std::fs::read(&path).is_ok_and(|bytes| bytes == ICON_PNG) {
        return Some(path);
    }
    let written = std::fs::create_dir_all(path.parent()?)
        .and_then(|()| model_cache::store::atomic::write(&path, ICON_PNG));
    match written {
        Ok(()) => Some(path),
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "could not write the notification icon");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_icon_is_written_once_into_the_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = super::app_icon(dir.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), super::ICON_PNG);
        assert!(super::ICON_PNG.starts_with(b"\x89PNG"));
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(super::app_icon(dir.path()).unwrap(), path);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified
        );
    }
}
