//! The tray icon: status, pause all, resume all, show window, quit.
//!
//! On Linux the AppIndicator backend emits menu events only (no clicks), so every action is a
//! menu item. The handlers live in [`handle_menu`] so tests can call them without a tray host.
//!
//! The status line is pushed, not polled: the event forwarder (`lib.rs`) refreshes it when a
//! job changes or bytes arrive, at most once per [`TrayThrottle`] period, and not at all while
//! nothing happens, so an idle app never wakes up for its tray.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Runtime};

pub const TRAY_ID: &str = "main-tray";
pub const MENU_STATUS: &str = "status";
pub const MENU_PAUSE_ALL: &str = "pause-all";
pub const MENU_RESUME_ALL: &str = "resume-all";
pub const MENU_SHOW: &str = "show";
pub const MENU_QUIT: &str = "quit";

/// How often, at most, the status line changes while bytes flow.
pub const TRAY_REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Creates the tray icon and its menu. Without a tray host (a bare X server) this still
/// succeeds; the app keeps working from its window.
pub fn build<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<TrayIcon<R>> {
    let status = MenuItem::with_id(app, MENU_STATUS, "Idle", false, None::<&str>)?;
    let pause = MenuItem::with_id(app, MENU_PAUSE_ALL, "Pause all", true, None::<&str>)?;
    let resume = MenuItem::with_id(app, MENU_RESUME_ALL, "Resume all", true, None::<&str>)?;
    let show = MenuItem::with_id(app, MENU_SHOW, "Show window", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, MENU_QUIT, "Quit", true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&status, &separator, &pause, &resume, &show, &quit])?;
    let mut builder = TrayIconBuilder::with_id(TRAY_ID)
        .tooltip("Model Cache")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| handle_menu(app, event.id.as_ref()));
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    let tray = builder.build(app)?;
    app.manage(TrayStatus::new(Some(status)));
    Ok(tray)
}

/// The status line of the tray menu: the text last shown, and the menu item showing it (none
/// without a tray, and in tests).
pub struct TrayStatus<R: Runtime> {
    item: Option<MenuItem<R>>,
    text: Mutex<String>,
}

impl<R: Runtime> TrayStatus<R> {
    pub fn new(item: Option<MenuItem<R>>) -> Self {
        TrayStatus {
            item,
            text: Mutex::new("Idle".to_string()),
        }
    }

    /// Shows `text`; the menu item is touched only when the text changed.
    pub fn set(&self, text: &str) {
        let mut shown = self.text.lock().unwrap_or_else(|e| e.into_inner());
        if *shown == text {
            return;
        }
        *shown = text.to_string();
        if let Some(item) = &self.item {
            let _ = item.set_text(text);
        }
    }

    /// The text shown now.
    pub fn text(&self) -> String {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// When the tray's status line is refreshed: at once for the first change after a quiet
/// period, then at most once per `every` while changes keep coming (the last change always
/// shows, at the end of its period), and never without a change.
#[derive(Debug, Clone)]
pub struct TrayThrottle {
    every: Duration,
    last: Option<Instant>,
    pending: bool,
}

impl TrayThrottle {
    pub fn new(every: Duration) -> Self {
        TrayThrottle {
            every,
            last: None,
            pending: false,
        }
    }

    /// Something changed at `now`: `true` to refresh now; otherwise a refresh is due at
    /// [`TrayThrottle::deadline`].
    pub fn changed(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.pending = true;
                false
            }
            _ => {
                self.refreshed(now);
                true
            }
        }
    }

    /// When the refresh a change is waiting for is due; `None` when nothing waits (no timer).
    pub fn deadline(&self) -> Option<Instant> {
        match (self.pending, self.last) {
            (true, Some(last)) => Some(last + self.every),
            _ => None,
        }
    }

    /// The status line was refreshed at `now`.
    pub fn refreshed(&mut self, now: Instant) {
        self.last = Some(now);
        self.pending = false;
    }
}

/// Runs the action of a tray menu item.
pub fn handle_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    match id {
        MENU_PAUSE_ALL => crate::actions::pause_all(app),
        MENU_RESUME_ALL => crate::actions::resume_all(app),
        MENU_SHOW => crate::actions::show_window(app),
        MENU_QUIT => crate::actions::quit(app),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_changes_at_most_once_per_period_and_never_when_idle() {
        let second = Duration::from_secs(1);
        let mut throttle = TrayThrottle::new(second);
        let t0 = Instant::now();
        assert_eq!(throttle.deadline(), None, "idle: no timer");
        assert!(throttle.changed(t0), "the first change shows at once");
        assert_eq!(throttle.deadline(), None);
        // Bytes keep flowing: later changes in the same second wait for its end.
        assert!(!throttle.changed(t0 + Duration::from_millis(100)));
        assert!(!throttle.changed(t0 + Duration::from_millis(700)));
        assert_eq!(throttle.deadline(), Some(t0 + second));
        throttle.refreshed(t0 + second);
        assert_eq!(
            throttle.deadline(),
            None,
            "refreshed: no timer until the next change"
        );
        assert!(!throttle.changed(t0 + Duration::from_millis(1500)));
        assert_eq!(throttle.deadline(), Some(t0 + 2 * second));
        throttle.refreshed(t0 + 2 * second);
        // After a quiet spell a change shows at once again.
        assert!(throttle.changed(t0 + Duration::from_secs(10)));
        assert_eq!(throttle.deadline(), None);
    }
}
