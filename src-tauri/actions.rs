//! Actions shared by the tray menu, the single-instance hand-off and the event glue.

use tauri::{AppHandle, Manager, Runtime};

use crate::AppState;

/// Shows and focuses the main window (it may be hidden in the tray).
pub fn show_window<R: Runtime>(app: &AppHandle<R>) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
    }
}

/// Pauses every download ("Paused by you").
pub fn pause_all<R: Runtime>(app: &AppHandle<R>) {
    set_paused(app, true);
}

/// Lifts "pause all".
pub fn resume_all<R: Runtime>(app: &AppHandle<R>) {
    set_paused(app, false);
}

fn set_paused<R: Runtime>(app: &AppHandle<R>, pause: bool) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let api = state.api.clone();
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        if let Err(error) = api.pause_all(pause).await {
            tracing::warn!(error = %error.message, pause, "could not change the global pause");
        }
        refresh_tray(&app).await;
    });
}

/// Recomputes the tray's status line from the job list.
pub async fn refresh_tray<R: Runtime>(app: &AppHandle<R>) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let api = state.api.clone();
    let Ok(jobs) = api.jobs().await else {
        return;
    };
    let paused = api.engine().scheduler().is_paused().unwrap_or(false);
    let text = crate::events::tray_status(&jobs, paused);
    if let Some(status) = app.try_state::<crate::tray::TrayStatus<R>>() {
        status.set(&text);
    }
}

/// A native yes/no dialog on the app's window: the confirmation a change of where requests and
/// the Hub token go needs (see `commands::settings_set`).
pub fn dialog_confirm<R: Runtime>(app: AppHandle<R>) -> crate::startup::Confirm {
    std::sync::Arc::new(move |question: String| {
        use tauri_plugin_dialog::{DialogExt, MessageDialogButtons, MessageDialogKind};
        let (answer, answered) = tokio::sync::oneshot::channel();
        app.dialog()
            .message(question)
            .title("Model Cache")
            .kind(MessageDialogKind::Warning)
            .buttons(MessageDialogButtons::OkCancelCustom(
                "Change".into(),
                "Cancel".into(),
            ))
            .show(move |confirmed| {
                let _ = answer.send(confirmed);
            });
        Box::pin(async move { answered.await.unwrap_or(false) })
    })
}
