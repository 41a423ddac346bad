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
    tracing::debug!(status = %text, "tray status line");
    if let Some(status) = app.try_state::<crate::tray::TrayStatus<R>>() {
        status.set(&text);
    }
}

/// The question Quit asks before it stops downloads, or `None` to quit at once: downloads
/// running, queued or waiting for a condition would stop (they resume at the next start, but
/// the person may not expect that from a tray icon). Jobs the person paused do not count.
pub fn quit_question(jobs: &[local_api::contract::Job]) -> Option<String> {
    let unfinished = jobs
        .iter()
        .filter(|j| matches!(j.state.as_str(), "running" | "queued" | "deferred"))
        .count();
    match unfinished {
        0 => None,
        1 => Some(
            "A download is not finished. Quit Model Cache anyway? It goes on from where it \
             stopped the next time Model Cache starts."
                .to_string(),
        ),
        n => Some(format!(
            "{n} downloads are not finished. Quit Model Cache anyway? They go on from where they \
             stopped the next time Model Cache starts."
        )),
    }
}

/// Whether to quit with these jobs: at once when none would stop, else what the person
/// answers to [`quit_question`].
pub async fn confirm_quit(
    jobs: &[local_api::contract::Job],
    ask: &crate::startup::Confirm,
) -> bool {
    match quit_question(jobs) {
        None => true,
        Some(question) => ask(question).await,
    }
}

/// Quit, from the tray (or the OS's quit command): asks first when downloads would stop,
/// with the window shown so the question is not asked from nowhere.
pub fn quit<R: Runtime>(app: &AppHandle<R>) {
    static ASKING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let Some(state) = app.try_state::<AppState>() else {
        // Not started yet (waiting for the cache folder): nothing to stop.
        app.exit(0);
        return;
    };
    if ASKING.swap(true, std::sync::atomic::Ordering::SeqCst) {
        show_window(app);
        return;
    }
    let api = state.api.clone();
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let jobs = api.jobs().await.unwrap_or_default();
        if quit_question(&jobs).is_some() {
            show_window(&app);
        }
        let quit = confirm_quit(&jobs, &quit_dialog(app.clone())).await;
        ASKING.store(false, std::sync::atomic::Ordering::SeqCst);
        if quit {
            tracing::info!("quitting");
            app.exit(0);
        }
    });
}

/// The native dialog Quit asks with: "Quit" or "Keep downloading".
fn quit_dialog<R: Runtime>(app: AppHandle<R>) -> crate::startup::Confirm {
    std::sync::Arc::new(move |question: String| {
        use tauri_plugin_dialog::{DialogExt, MessageDialogButtons, MessageDialogKind};
        let (answer, answered) = tokio::sync::oneshot::channel();
        let mut dialog = app
            .dialog()
            .message(question)
            .title("Quit Model Cache?")
            .kind(MessageDialogKind::Warning)
            .buttons(MessageDialogButtons::OkCancelCustom(
                "Quit".into(),
                "Keep downloading".into(),
            ));
        if let Some(window) = app.get_webview_window("main") {
            dialog = dialog.parent(&window);
        }
        dialog.show(move |confirmed| {
            let _ = answer.send(confirmed);
        });
        Box::pin(async move { answered.await.unwrap_or(false) })
    })
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

#[cfg(test)]
mod tests {
    use super::quit_question;

    fn job(state: &str) -> local_api::contract::Job {
        local_api::contract::Job {
            id: 1,
            repo: "demo/x".into(),
            revision: "main".into(),
            variant: None,
            state: state.into(),
            reason: None,
            bytes_done: 0,
            bytes_total: 0,
            speed_bps: 0,
            eta_seconds: None,
            files: vec![],
            error: None,
            snapshot_path: None,
        }
    }

    #[test]
    fn quit_asks_only_when_downloads_would_stop() {
        assert_eq!(quit_question(&[]), None);
        let finished = [job("done"), job("failed"), job("cancelled"), job("paused")];
        assert_eq!(quit_question(&finished), None, "nothing would stop");
        let one = quit_question(&[job("deferred"), job("done")]).unwrap();
        assert!(one.starts_with("A download is not finished."), "{one}");
        let three = quit_question(&[job("running"), job("queued"), job("deferred")]).unwrap();
        assert!(
            three.starts_with("3 downloads are not finished."),
            "{three}"
        );
        assert!(three.contains("next time Model Cache starts"), "{three}");
    }
}
