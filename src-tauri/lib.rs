//! The Model Cache desktop app: a thin Tauri v2 shell around the `model_cache` engine.
//!
//! Everything here is glue. At start the app resolves its settings from the environment and the
//! saved preferences (like `mcache` does), opens the [`model_cache::engine::Engine`] in-process,
//! starts the local API (so the UI also works in a browser and other tools can drive the app),
//! and wires engine events to the window, the tray and desktop notifications.
//!
//! Demo mode (`--demo`, or automatically when the Hub cannot be reached) runs the hub emulator
//! in-process on 127.0.0.1 and points the engine at it, so the app shows real repos, real
//! variants and real downloads with no network.

pub mod actions;
pub mod args;
pub mod commands;
pub mod events;
pub mod links;
pub mod metered;
pub mod notify;
pub mod startup;
pub mod tray;

use std::sync::Arc;

use tauri::{Emitter, Manager, Runtime, WindowEvent};
use tauri_plugin_deep_link::DeepLinkExt;

pub use startup::AppState;

/// The event the UI listens to for engine events (`ui/api.js`).
pub const ENGINE_EVENT: &str = "engine-event";
/// The event that tells the UI a repo is waiting to be opened (a second launch handed one over,
/// or a `modelcache://` link arrived); the UI takes it with the `open_request` command.
pub const OPEN_REPO_EVENT: &str = "open-repo";
/// The event that tells a window showing "waiting for the cache folder" that the app has started
/// (the UI reloads).
pub const APP_READY_EVENT: &str = "app-ready";

/// Registers the commands and the plugins they use; shared by the real app and the
/// mock-runtime tests.
pub fn app_builder<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder
        .plugin(tauri_plugin_dialog::init())
        // Start at login runs the app with `--hidden`: in the tray, no window (Linux: an XDG
        // autostart entry in `~/.config/autostart/`; macOS: a launch agent; Windows: the Run
        // key).
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec![args::HIDDEN]),
        ))
        .invoke_handler(commands::handler())
}

/// Runs the desktop app until the user quits.
pub fn run() {
    let args = args::AppArgs::parse(std::env::args().skip(1));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MODEL_CACHE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();

    // Single instance first: a second launch hands its arguments over and exits before any
    // other plugin starts. On Linux and Windows a `modelcache://` link arrives that way too (the
    // OS starts the app with the link as its argument), and is read here with the rest.
    let builder =
        tauri::Builder::default().plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            let handed = args::AppArgs::parse(argv.into_iter().skip(1));
            actions::show_window(app);
            if let Some(opening) = handed.opening() {
                actions::request_open(app, opening);
            }
        }));
    app_builder(builder)
        // The `modelcache` scheme (tauri.conf.json > plugins > deep-link): the packages register
        // it from there, and on macOS links arrive as events through this plugin.
        .plugin(tauri_plugin_deep_link::init())
        // The window's place and size are restored, not whether it is shown: that is the
        // command line's (`--hidden`) and the tray's.
        .plugin(
            tauri_plugin_window_state::Builder::default()
                .with_state_flags(
                    tauri_plugin_window_state::StateFlags::all()
                        - tauri_plugin_window_state::StateFlags::VISIBLE,
                )
                .build(),
        )
        .setup(move |app| {
            app.manage(startup::Waiting::default());
            if let Err(error) = tray::build(app.handle()) {
                // No tray host (a bare X server, some desktops): the window still works.
                tracing::warn!(%error, "no tray icon");
            }
            let handle = app.handle().clone();
            app.deep_link().on_open_url(move |event| {
                for url in event.urls() {
                    actions::request_open(&handle, links::Opening::from_link(url.as_str()));
                }
            });
            // The window is created hidden (tauri.conf.json) and shown here unless the app
            // starts in the tray: a login start never flashes a window.
            if let Some(window) = app.get_webview_window("main") {
                if args.hidden {
                    tracing::info!("started in the tray (--hidden)");
                } else {
                    let _ = window.show();
                    let _ = window.set_focus();
                }
            }
            // The chosen cache folder is not there (an unplugged drive): say so and wait for it,
            // never fall back to another folder.
            if !args.demo
                && let Err(missing) = startup::settings()
                    .map_err(|e| e.to_string())
                    .and_then(|s| {
                        model_cache::engine::check_cache_folder(&s).map_err(|e| e.to_string())
                    })
            {
                tracing::warn!(reason = %missing, "waiting for the cache folder");
                app.state::<startup::Waiting>()
                    .set(Some(startup::waiting_view(&missing)));
                let data_dir = startup::settings()
                    .map(|s| s.data_dir)
                    .unwrap_or_else(|_| std::env::temp_dir());
                let notifier = notify::DesktopNotifier::with_icon_in(&data_dir);
                if let Err(error) = notify::Notifier::notify(
                    &notifier,
                    "Cache drive not connected",
                    &format!("{missing}. Model Cache starts when it is back."),
                ) {
                    tracing::warn!(%error, "could not show a notification");
                }
                let handle = app.handle().clone();
                let args = args.clone();
                std::thread::spawn(move || {
                    startup::wait_for_cache_folder(std::time::Duration::from_secs(2));
                    if let Err(error) = start_engine(&handle, &args) {
                        tracing::error!(%error, "Model Cache could not start");
                        handle
                            .state::<startup::Waiting>()
                            .set(Some(startup::waiting_view(&error.to_string())));
                        return;
                    }
                    handle.state::<startup::Waiting>().set(None);
                    let _ = handle.emit(APP_READY_EVENT, ());
                });
                return Ok(());
            }
            start_engine(app.handle(), &args)?;
            Ok(())
        })
        .on_window_event(|window, event| {
            // Closing the window keeps downloads going in the background; quit from the tray.
            if let WindowEvent::CloseRequested { api, .. } = event {
                let _ = window.hide();
                api.prevent_close();
            }
        })
        .build(tauri::generate_context!())
        .expect("error while building the Model Cache app")
        .run(|app, event| {
            // The OS's own quit (the macOS menu, a session asking the app to end) asks like the
            // tray's Quit when downloads would stop; `app.exit` (the answer) carries a code.
            if let tauri::RunEvent::ExitRequested {
                code: None, api, ..
            } = event
            {
                api.prevent_exit();
                actions::quit(app);
            }
        });
}

/// Starts the engine, the local API and the mirror, and wires their events to the window, the
/// tray and notifications.
fn start_engine<R: Runtime>(
    app: &tauri::AppHandle<R>,
    args: &args::AppArgs,
) -> Result<(), startup::StartupError> {
    let mut state = tauri::async_runtime::block_on(startup::start(args))?;
    state.confirm = Some(actions::dialog_confirm(app.clone()));
    tracing::info!(
        endpoint = %state.api.engine().settings().endpoint,
        demo = state.demo.is_some(),
        api = %state.api_url,
        "Model Cache started"
    );
    let api = state.api.clone();
    app.manage(state);
    spawn_event_forwarder(app.clone(), api);
    Ok(())
}

/// Forwards the API's events to the UI, shows notifications and keeps the tray's status fresh.
///
/// The tray's status line is pushed by events: refreshed when a job changes or bytes arrive, at
/// most once per [`tray::TRAY_REFRESH_EVERY`] (the last change always shows), and never while
/// nothing happens.
pub fn spawn_event_forwarder<R: Runtime>(app: tauri::AppHandle<R>, api: local_api::Api) {
    let data_dir = api.engine().settings().data_dir.clone();
    let notifier: Arc<dyn notify::Notifier> =
        Arc::new(notify::DesktopNotifier::with_icon_in(&data_dir));
    forward_events(app, api, notifier);
}

/// [`spawn_event_forwarder`] with the notifier given (tests record what would be shown).
pub fn forward_events<R: Runtime>(
    app: tauri::AppHandle<R>,
    api: local_api::Api,
    notifier: Arc<dyn notify::Notifier>,
) {
    let mut events = api.subscribe();
    tauri::async_runtime::spawn(async move {
        let mut throttle = tray::TrayThrottle::new(tray::TRAY_REFRESH_EVERY);
        actions::refresh_tray(&app).await;
        loop {
            let deadline = throttle.deadline();
            let event = tokio::select! {
                () = sleep_until(deadline) => {
                    throttle.refreshed(std::time::Instant::now());
                    actions::refresh_tray(&app).await;
                    continue;
                }
                event = events.recv() => event,
            };
            let event = match event {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            };
            let _ = app.emit(ENGINE_EVENT, &event);
            if events::changes_tray(&event) && throttle.changed(std::time::Instant::now()) {
                actions::refresh_tray(&app).await;
            }
            let wanted = api.engine().notification_preferences();
            if let Some((title, body)) = events::notification(&event, &wanted) {
                let notifier = notifier.clone();
                // Fire and forget: the D-Bus call blocks, and nothing waits for its answer.
                drop(tauri::async_runtime::spawn_blocking(move || {
                    if let Err(error) = notifier.notify(&title, &body) {
                        tracing::warn!(%error, "could not show a notification");
                    }
                }));
            }
        }
    });
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
