//! The IPC commands the UI calls inside the app. They are the local API's operations
//! ([`local_api::Api`]) under the same names, with the same arguments and JSON shapes
//! (`docs/local-api.md`), so `ui/api.js` can switch transports without the rest of the UI
//! noticing. Errors are `{kind, message, hint}` with a stable `kind`.

use local_api::contract::{
    Affected, Freed, Health, Job, Queued, Revealed, StatsBody, TokenState, Variants,
};
use local_api::{ApiError, ApiResult, PullBody};
use model_cache::engine::{
    AppSettings, CachedRepoView, PairingCode, PeerView, PeersView, Room, UpdateCheckReport,
};
use serde::Serialize;
use serde_json::Value;
use tauri::State;

use crate::AppState;
use crate::links::Opening;

/// The API's health, and what only the app knows: whether it runs the demo hub, and where its
/// local API listens.
#[derive(Serialize)]
pub struct AppHealth {
    #[serde(flatten)]
    health: Health,
    demo: bool,
    api_url: String,
}

#[tauri::command]
pub async fn health(state: State<'_, AppState>) -> ApiResult<AppHealth> {
    Ok(AppHealth {
        health: state.api.health().await?,
        demo: state.demo.is_some(),
        api_url: state.api_url.clone(),
    })
}

#[tauri::command]
pub async fn variants(
    state: State<'_, AppState>,
    repo: String,
    revision: Option<String>,
) -> ApiResult<Variants> {
    state.api.variants(&repo, revision.as_deref()).await
}

#[tauri::command]
pub async fn model_page(
    state: State<'_, AppState>,
    repo: String,
    revision: Option<String>,
) -> ApiResult<model_cache::engine::ModelPage> {
    state.api.model_page(&repo, revision.as_deref()).await
}

/// Opens an `http(s)` link (a model card's, a gated repo's request page) in the system
/// browser; anything else is refused.
#[tauri::command]
pub fn open_link(url: String) -> ApiResult<()> {
    let parsed = url::Url::parse(&url)
        .map_err(|_| local_api::error::ApiError::invalid_input(format!("`{url}` is not a link")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(local_api::error::ApiError::invalid_input(format!(
            "Only web links open in the browser, not `{}`",
            parsed.scheme()
        )));
    }
    tauri_plugin_opener::open_url(parsed.as_str(), None::<&str>).map_err(|e| {
        local_api::error::ApiError::invalid_input(format!("No web browser answered: {e}"))
    })
}

#[tauri::command]
pub async fn search(
    state: State<'_, AppState>,
    q: Option<String>,
    filter: Option<String>,
    sort: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
) -> ApiResult<local_api::contract::SearchResults> {
    let params = local_api::contract::SearchParams {
        q,
        filter,
        sort,
        limit,
        cursor,
    };
    state.api.search(params).await
}

#[tauri::command]
pub async fn pull(
    state: State<'_, AppState>,
    repo: String,
    revision: Option<String>,
    variant: Option<String>,
    files: Option<Vec<String>>,
    evict: Option<Vec<String>>,
) -> ApiResult<Queued> {
    state
        .api
        .pull(PullBody {
            repo,
            revision,
            variant,
            files,
            evict,
        })
        .await
}

#[tauri::command]
pub async fn pull_room(
    state: State<'_, AppState>,
    repo: String,
    revision: Option<String>,
    variant: Option<String>,
    files: Option<Vec<String>>,
) -> ApiResult<Room> {
    state
        .api
        .pull_room(PullBody {
            repo,
            revision,
            variant,
            files,
            evict: None,
        })
        .await
}

#[tauri::command]
pub async fn jobs(state: State<'_, AppState>) -> ApiResult<Vec<Job>> {
    state.api.jobs().await
}

#[tauri::command]
pub async fn job_action(state: State<'_, AppState>, id: Value, action: String) -> ApiResult<Job> {
    let id = match id {
        Value::String(text) => text,
        other => other.to_string(),
    };
    state.api.job_action(&id, &action).await
}

#[tauri::command]
pub async fn pause_all(state: State<'_, AppState>) -> ApiResult<Affected> {
    state.api.pause_all(true).await
}

#[tauri::command]
pub async fn clear_finished(state: State<'_, AppState>) -> ApiResult<Affected> {
    state.api.clear_finished().await
}

#[tauri::command]
pub async fn resume_all(state: State<'_, AppState>) -> ApiResult<Affected> {
    state.api.pause_all(false).await
}

#[tauri::command]
pub async fn cache_list(state: State<'_, AppState>) -> ApiResult<Vec<CachedRepoView>> {
    state.api.cache_list().await
}

#[tauri::command]
pub async fn cache_pin(
    state: State<'_, AppState>,
    repo: String,
    pinned: bool,
) -> ApiResult<CachedRepoView> {
    state.api.cache_pin(&repo, pinned).await
}

#[tauri::command]
pub async fn cache_update(
    state: State<'_, AppState>,
    repo: String,
    branch: Option<String>,
) -> ApiResult<Queued> {
    state.api.cache_update(&repo, branch.as_deref()).await
}

#[tauri::command]
pub async fn convert(
    state: State<'_, AppState>,
    repo: String,
    precision: String,
) -> ApiResult<Queued> {
    state
        .api
        .convert(local_api::contract::ConvertBody {
            repo,
            revision: None,
            to: "gguf".to_string(),
            gguf_type: precision,
        })
        .await
}

#[tauri::command]
pub async fn cache_hold(
    state: State<'_, AppState>,
    repo: String,
    branch: Option<String>,
    held: bool,
) -> ApiResult<CachedRepoView> {
    state.api.cache_hold(&repo, branch.as_deref(), held).await
}

#[tauri::command]
pub async fn peers(state: State<'_, AppState>) -> ApiResult<PeersView> {
    state.api.peers().await
}

#[tauri::command]
pub async fn peers_sharing(state: State<'_, AppState>, on: bool) -> ApiResult<PeersView> {
    state.api.peers_sharing(on).await
}

#[tauri::command]
pub async fn peers_compression(state: State<'_, AppState>, on: bool) -> ApiResult<PeersView> {
    state.api.peers_compression(on).await
}

#[tauri::command]
pub async fn peers_pairing(state: State<'_, AppState>) -> ApiResult<PairingCode> {
    state.api.peers_pairing().await
}

#[tauri::command]
pub async fn peers_pair(
    state: State<'_, AppState>,
    address: String,
    code: String,
) -> ApiResult<PeerView> {
    state.api.peers_pair(&address, &code).await
}

#[tauri::command]
pub async fn peers_holdings(
    state: State<'_, AppState>,
    peer: String,
) -> ApiResult<Vec<model_cache::peers::client::PeerRef>> {
    state.api.peers_holdings(&peer).await
}

#[tauri::command]
pub async fn peers_unpair(state: State<'_, AppState>, peer: String) -> ApiResult<PeersView> {
    state.api.peers_unpair(&peer).await
}

#[tauri::command]
pub async fn check_updates(
    state: State<'_, AppState>,
    force: bool,
) -> ApiResult<UpdateCheckReport> {
    state.api.check_updates(force).await
}

#[tauri::command]
pub async fn cache_delete(
    state: State<'_, AppState>,
    repo: String,
    revision: Option<String>,
    variant: Option<String>,
) -> ApiResult<Freed> {
    state.api.cache_delete(&repo, revision, variant).await
}

/// Like the API's reveal, and opens the folder in the file manager.
#[tauri::command]
pub async fn import_models(
    state: State<'_, AppState>,
    body: local_api::contract::ImportBody,
) -> ApiResult<model_cache::import::ImportReport> {
    state.api.import(body).await
}

#[tauri::command]
pub async fn cache_reveal(state: State<'_, AppState>, repo: String) -> ApiResult<Revealed> {
    let revealed = state.api.cache_reveal(&repo).await?;
    tauri_plugin_opener::reveal_item_in_dir(&revealed.path).map_err(|e| {
        ApiError::new(
            tauri::http::StatusCode::INTERNAL_SERVER_ERROR,
            "reveal_failed",
            format!("Could not open the file manager: {e}"),
        )
        .with_hint(format!("the folder is {}", revealed.path.display()))
    })?;
    Ok(revealed)
}

#[tauri::command]
pub fn settings_get(state: State<'_, AppState>) -> ApiResult<AppSettings> {
    state.api.settings_get()
}

/// Changes settings. A change of where requests and the Hub token go (the endpoint, the mirrors,
/// which mirrors receive the token) is the one thing the local API refuses: here it is made
/// once the person confirms it in a native dialog that names each change.
#[tauri::command]
pub async fn settings_set(state: State<'_, AppState>, settings: Value) -> ApiResult<AppSettings> {
    let changes = state.api.settings_trust_changes(&settings).await?;
    if changes.is_empty() {
        return state.api.settings_set(settings).await;
    }
    let list: Vec<String> = changes.iter().map(ToString::to_string).collect();
    let question = format!(
        "Change where Model Cache sends its requests and your Hugging Face token?\n\n{}",
        list.join("\n")
    );
    let confirmed = match &state.confirm {
        Some(confirm) => confirm(question).await,
        None => false,
    };
    if !confirmed {
        return Err(local_api::ApiError::cancelled(
            "The change of where requests and the token go was not confirmed",
        ));
    }
    state.api.settings_set_confirmed(settings).await
}

#[tauri::command]
pub async fn set_token(state: State<'_, AppState>, token: Option<String>) -> ApiResult<TokenState> {
    state.api.set_token(token).await
}

#[tauri::command]
pub async fn stats(state: State<'_, AppState>) -> ApiResult<StatsBody> {
    state.api.stats().await
}

/// What the window is asked to open, once: `{repo, file, quant}`, `{error: {kind, message,
/// hint}}` for a refused link, or null. The app keeps it until this is called (see
/// `actions::request_open`).
#[tauri::command]
pub fn open_request(state: State<'_, AppState>) -> Option<Opening> {
    state
        .pending_open
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
}

fn autostart_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        tauri::http::StatusCode::INTERNAL_SERVER_ERROR,
        "autostart",
        format!("Could not change start at login: {e}"),
    )
}

/// Whether the app starts (in the tray) when the user logs in.
#[tauri::command]
pub fn autostart_get<R: tauri::Runtime>(app: tauri::AppHandle<R>) -> Result<bool, ApiError> {
    use tauri_plugin_autostart::ManagerExt;
    app.autolaunch().is_enabled().map_err(autostart_error)
}

/// Turns start at login on or off; returns the new state.
#[tauri::command]
pub fn autostart_set<R: tauri::Runtime>(
    app: tauri::AppHandle<R>,
    enabled: bool,
) -> Result<bool, ApiError> {
    use tauri_plugin_autostart::ManagerExt;
    let launcher = app.autolaunch();
    if enabled {
        launcher.enable().map_err(autostart_error)?;
    } else {
        launcher.disable().map_err(autostart_error)?;
    }
    launcher.is_enabled().map_err(autostart_error)
}

/// The system's folder chooser, titled `title` and opened at `start` (or its nearest existing
/// parent): the folder picked, or null when the person cancels. The setting it fills is saved
/// (and checked by the engine) like a typed one.
#[tauri::command]
pub async fn pick_folder<R: tauri::Runtime>(
    app: tauri::AppHandle<R>,
    title: String,
    start: Option<String>,
) -> ApiResult<Option<String>> {
    use tauri::Manager;
    use tauri_plugin_dialog::DialogExt;
    let (answer, answered) = tokio::sync::oneshot::channel();
    let mut dialog = app.dialog().file().set_title(title);
    if let Some(start) = start.as_deref().filter(|s| !s.is_empty())
        && let Some(existing) = std::path::Path::new(start).ancestors().find(|p| p.is_dir())
    {
        dialog = dialog.set_directory(existing);
    }
    if let Some(window) = app.get_webview_window("main") {
        dialog = dialog.set_parent(&window);
    }
    dialog.pick_folder(move |picked| {
        let _ = answer.send(picked.and_then(|p| p.into_path().ok()));
    });
    let picked = answered.await.ok().flatten();
    Ok(picked.map(|p| p.display().to_string()))
}

/// `{"waiting": {message, hint}}` while the app waits for its cache folder, `{"waiting": null}`
/// once it runs.
#[tauri::command]
pub fn startup_state(waiting: State<'_, crate::startup::Waiting>) -> Value {
    serde_json::json!({ "waiting": waiting.get() })
}

/// The invoke handler with every command.
pub fn handler<R: tauri::Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static
{
    tauri::generate_handler![
        startup_state,
        health,
        variants,
        model_page,
        open_link,
        search,
        pull,
        jobs,
        job_action,
        pause_all,
        resume_all,
        clear_finished,
        pull_room,
        pick_folder,
        cache_list,
        cache_pin,
        cache_update,
        cache_hold,
        peers,
        peers_sharing,
        peers_compression,
        peers_pairing,
        peers_pair,
        peers_unpair,
        peers_holdings,
        convert,
        check_updates,
        cache_delete,
        cache_reveal,
        import_models,
        settings_get,
        settings_set,
        set_token,
        stats,
        open_request,
        autostart_get,
        autostart_set
    ]
}
