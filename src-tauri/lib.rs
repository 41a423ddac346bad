//! The Model Cache desktop app: a thin Tauri v2 shell around the `model_cache` engine.
//!
//! Everything here is glue: it reads configuration from the environment and the command line,
//! builds the engine's settings, and wires the engine to the window, the tray and notifications.

pub mod commands {
    /// Reports the engine version; the placeholder UI shows it to prove IPC works.
    #[tauri::command]
    pub fn app_version() -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }
}

/// Registers the commands; shared by the real app and the mock-runtime tests.
pub fn app_builder<R: tauri::Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder.invoke_handler(tauri::generate_handler![commands::app_version])
}

/// Runs the desktop app until the user quits.
pub fn run() {
    app_builder(tauri::Builder::default())
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            use tauri::Manager;
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.show();
                let _ = window.set_focus();
            }
        }))
        .run(tauri::generate_context!())
        .expect("error while running the Model Cache app");
}
