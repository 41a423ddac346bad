//! The tray icon: status, pause all, resume all, show window, quit.
//!
//! On Linux the AppIndicator backend emits menu events only (no clicks), so every action is a
//! menu item. The handlers live in [`handle_menu`] so tests can call them without a tray host.

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Runtime};

pub const TRAY_ID: &str = "main-tray";
pub const MENU_STATUS: &str = "status";
pub const MENU_PAUSE_ALL: &str = "pause-all";
pub const MENU_RESUME_ALL: &str = "resume-all";
pub const MENU_SHOW: &str = "show";
pub const MENU_QUIT: &str = "quit";

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
    app.manage(TrayStatus(status));
    Ok(tray)
}

/// The status line of the tray menu, updated as downloads progress.
pub struct TrayStatus<R: Runtime>(MenuItem<R>);

impl<R: Runtime> TrayStatus<R> {
    pub fn set(&self, text: &str) {
        let _ = self.0.set_text(text);
    }
}

/// Runs the action of a tray menu item.
pub fn handle_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    match id {
        MENU_PAUSE_ALL => crate::actions::pause_all(app),
        MENU_RESUME_ALL => crate::actions::resume_all(app),
        MENU_SHOW => crate::actions::show_window(app),
        MENU_QUIT => app.exit(0),
        _ => {}
    }
}
