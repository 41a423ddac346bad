//! Desktop notifications, behind a small trait so the event glue can be tested without D-Bus.
//!
//! The real implementation calls `notify-rust` directly rather than the Tauri notification
//! plugin: the plugin sends on a background task and swallows D-Bus errors, and we want a failure
//! to reach the log.

/// Something that shows a notification to the user.
pub trait Notifier: Send + Sync + 'static {
    /// Shows `title` / `body`. Errors are returned so callers can log them.
    fn notify(&self, title: &str, body: &str) -> Result<(), String>;
}

/// Notifications over the freedesktop D-Bus interface (and the native APIs elsewhere).
#[derive(Debug, Default, Clone, Copy)]
pub struct DesktopNotifier;

impl Notifier for DesktopNotifier {
    fn notify(&self, title: &str, body: &str) -> Result<(), String> {
        notify_rust::Notification::new()
            .appname("Model Cache")
            .summary(title)
            .body(body)
            .show()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
