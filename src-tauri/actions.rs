//! Actions shared by the tray menu, the single-instance hand-off and the event glue.

use tauri::{AppHandle, Emitter, Manager, Runtime};

use crate::AppState;
use crate::links::Opening;

/// Shows and focuses the main window (it may be hidden in the tray).
pub fn show_window<R: Runtime>(app: &AppHandle<R>) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
    }
}

/// Shows the window and asks it to open `opening` (a second launch's repo, a `modelcache://`
/// link). The request is kept until the UI takes it (`open_request`) and the UI is only told
/// that one is waiting: a request that arrives before the page has loaded is taken when it
/// loads, and one delivered twice (by two routes) is opened once.
pub fn request_open<R: Runtime>(app: &AppHandle<R>, opening: Opening) {
    match &opening {
        Opening::Repo(request) => tracing::info!(repo = %request.repo, "asked to open a repo"),
        Opening::Refused { error } => tracing::warn!(reason = %error.message, "refused a link"),
    }
    if let Some(state) = app.try_state::<AppState>() {
        *state.pending_open.lock().unwrap_or_else(|e| e.into_inner()) = Some(opening);
    }
    show_window(app);
    let _ = app.emit(crate::OPEN_REPO_EVENT, ());
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
