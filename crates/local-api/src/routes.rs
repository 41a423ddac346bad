//! The `/api/*` routes of `docs/local-api.md` over the engine facade. Handlers only translate:
//! request to facade call, result to the contract's JSON ([`crate::contract`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use model_cache::RepoId;
use model_cache::engine::{Engine, EngineError, JobAction, PullRequest};
use model_cache::index::queue::QueueState;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::contract::{self, Tracker};
use crate::error::ApiError;
use crate::events;

/// Contract events buffered per subscriber before a slow one is cut off (it then resyncs).
const EVENT_BUFFER: usize = 1024;

#[derive(Clone)]
struct AppState {
    engine: Engine,
    tracker: Arc<Tracker>,
    events: broadcast::Sender<Value>,
    shutdown: CancellationToken,
}

type ApiResult = Result<Json<Value>, ApiError>;

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> ApiError {
        // Engine kinds outside the contract's list are folded into the nearest contract kind.
        let kind = match err.kind() {
            "no_such_job" | "not_cached" | "no_such_variant" => "not_found",
            "nothing_selected" | "bad_pattern" => "invalid_input",
            "job_finished" | "pinned" => "conflict",
            other => other,
        };
        // HTTP 401 is reserved for a missing or wrong API secret, so a client can tell "this
        // API refused me" from "the Hub refused the engine".
        let status = match ApiError::status_for_kind(kind) {
            StatusCode::UNAUTHORIZED => StatusCode::FORBIDDEN,
            status => status,
        };
        let mut api = ApiError::new(status, kind, err.headline());
        api.hint = err.hint();
        if api.status.is_server_error() {
            tracing::warn!(kind, error = %api.message, "An API request failed");
        }
        api
    }
}

/// Builds the API router and starts translating engine events into contract events.
pub(crate) fn router(engine: Engine, shutdown: CancellationToken) -> Router {
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let state = AppState {
        engine,
        tracker: Arc::new(Tracker::default()),
        events,
        shutdown,
    };
    spawn_translator(state.clone());
    Router::new()
        .route("/health", get(health))
        .route("/variants", get(variants))
        .route("/pulls", post(pull))
        .route("/jobs", get(jobs))
        .route("/jobs/pause-all", post(pause_all))
        .route("/jobs/resume-all", post(resume_all))
        .route("/jobs/{id}/{action}", post(job_action))
        .route("/cache", get(cache_list))
        .route("/cache/pin", post(cache_pin))
        .route("/cache/delete", post(cache_delete))
        .route("/cache/reveal", post(cache_reveal))
        .route("/settings", get(settings_get).put(settings_set))
        .route("/token", post(set_token))
        .route("/stats", get(stats))
        .route("/events", get(events_stream))
        .with_state(state)
}

fn spawn_translator(state: AppState) {
    let mut rx = state.engine.subscribe();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = state.shutdown.cancelled() => return,
                event = rx.recv() => event,
            };
            match event {
                Ok(event) => {
                    for out in state.tracker.translate(&state.engine, &event) {
                        // No subscriber is fine: nobody is watching.
                        let _ = state.events.send(out);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "The local API fell behind the engine's events");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// Runs a synchronous engine call (SQLite, disk scans) off the async threads.
async fn blocking<T: Send + 'static>(
    engine: &Engine,
    f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
) -> Result<T, ApiError> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("An engine task failed: {e}"),
            )
        })?
        .map_err(ApiError::from)
}

fn parse_repo(text: &str) -> Result<RepoId, ApiError> {
    RepoId::parse_user_input(text).map_err(|e| {
        ApiError::invalid_input(e.to_string())
            .with_hint("A repository id looks like `org/name`; a Hub URL works too")
    })
}

fn body_error(err: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_input(format!("Invalid request body: {err}"))
}

async fn health(State(s): State<AppState>) -> ApiResult {
    let report = blocking(&s.engine, |e| e.health()).await?;
    let settings = s.engine.settings();
    let count = |k: &str| report.jobs.get(k).copied().unwrap_or(0);
    Ok(Json(json!({
        "status": if report.status == "ok" { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "offline": settings.offline,
        "endpoint": settings.endpoint,
        "cache_dir": settings.hub_cache,
        "jobs": {"running": count("running"), "queued": count("queued"), "deferred": count("deferred")},
        "storage": {
            "used_bytes": report.storage.used,
            "budget_bytes": report.storage.budget,
            "free_bytes": report.volume.space.map(|d| d.available),
        },
        "alerts": report.problems,
    })))
}

#[derive(Deserialize)]
struct VariantsQuery {
    repo: Option<String>,
    revision: Option<String>,
}

async fn variants(State(s): State<AppState>, Query(q): Query<VariantsQuery>) -> ApiResult {
    let repo = parse_repo(q.repo.as_deref().unwrap_or(""))?;
    let revision = q.revision.filter(|r| !r.is_empty());
    let report = s.engine.variants(&repo, revision.as_deref()).await?;
    Ok(Json(contract::variants(&report)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PullBody {
    repo: String,
    revision: Option<String>,
    variant: Option<String>,
    files: Option<Vec<String>>,
}

async fn pull(
    State(s): State<AppState>,
    body: Result<Json<PullBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(body_error)?;
    let request = PullRequest {
        repo: Some(parse_repo(&body.repo)?),
        revision: body.revision.filter(|r| !r.is_empty()),
        variant: body.variant.filter(|v| !v.is_empty()),
        files: body.files.unwrap_or_default(),
        ..PullRequest::default()
    };
    if request.variant.is_some() && !request.files.is_empty() {
        return Err(ApiError::invalid_input(
            "Give either `variant` or `files`, not both",
        ));
    }
    let plan = s.engine.plan_pull(&request).await?;
    let job = blocking(&s.engine, move |e| e.enqueue(&plan)).await?;
    Ok(Json(json!({"job_id": job.id})))
}

async fn jobs(State(s): State<AppState>) -> ApiResult {
    let jobs = blocking(&s.engine, |e| e.jobs()).await?;
    Ok(Json(Value::Array(
        jobs.iter().map(|j| s.tracker.job(&s.engine, j)).collect(),
    )))
}

async fn job_action(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid_input(format!("`{id}` is not a job id")))?;
    let action: JobAction = serde_json::from_value(json!(action)).map_err(|_| {
        ApiError::invalid_input(format!("Unknown job action `{action}`"))
            .with_hint("Actions: pause, resume, cancel, move-up, move-down")
    })?;
    let job = blocking(&s.engine, move |e| e.job_action(id, action)).await?;
    Ok(Json(s.tracker.job(&s.engine, &job)))
}

/// Runs a bulk action and counts the jobs whose state it changed.
async fn bulk(s: &AppState, pause: bool) -> ApiResult {
    let affected = blocking(&s.engine, move |e| {
        let before: HashMap<i64, QueueState> =
            e.jobs()?.into_iter().map(|j| (j.id, j.state)).collect();
        if pause {
            e.pause_all()?
        } else {
            e.resume_all()?
        }
        let after = e.jobs()?;
        Ok(after
            .iter()
            .filter(|j| before.get(&j.id).is_some_and(|st| *st != j.state))
            .count())
    })
    .await?;
    Ok(Json(json!({"affected": affected})))
}

async fn pause_all(State(s): State<AppState>) -> ApiResult {
    bulk(&s, true).await
}

async fn resume_all(State(s): State<AppState>) -> ApiResult {
    bulk(&s, false).await
}

async fn cache_list(State(s): State<AppState>) -> ApiResult {
    let list = blocking(&s.engine, |e| e.cache_list()).await?;
    Ok(Json(serde_json::to_value(list).unwrap_or(Value::Null)))
}

async fn cached(s: &AppState, repo: RepoId) -> ApiResult {
    let name = repo.to_string();
    let list = blocking(&s.engine, |e| e.cache_list()).await?;
    let found = list
        .into_iter()
        .find(|r| r.repo == name)
        .ok_or_else(|| ApiError::not_found(format!("`{name}` is not in the cache")))?;
    Ok(Json(serde_json::to_value(found).unwrap_or(Value::Null)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinBody {
    repo: String,
    pinned: bool,
}

async fn cache_pin(
    State(s): State<AppState>,
    body: Result<Json<PinBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(body_error)?;
    let repo = parse_repo(&body.repo)?;
    // Pinning something that is not cached would silently protect nothing: refuse it.
    let _exists = cached(&s, repo.clone()).await?;
    let target = repo.clone();
    blocking(&s.engine, move |e| e.set_pinned(&target, body.pinned)).await?;
    cached(&s, repo).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    repo: String,
    revision: Option<String>,
}

async fn cache_delete(
    State(s): State<AppState>,
    body: Result<Json<DeleteBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(body_error)?;
    let repo = parse_repo(&body.repo)?;
    let removal = blocking(&s.engine, move |e| {
        e.delete(&repo, body.revision.as_deref(), false, false)
    })
    .await?;
    Ok(Json(json!({"freed_bytes": removal.bytes_freed})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevealBody {
    repo: String,
}

async fn cache_reveal(
    State(s): State<AppState>,
    body: Result<Json<RevealBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(body_error)?;
    let Json(found) = cached(&s, parse_repo(&body.repo)?).await?;
    Ok(Json(json!({"path": found["path"]})))
}

async fn settings_get(State(s): State<AppState>) -> ApiResult {
    Ok(Json(contract::settings(&s.engine)))
}

async fn settings_set(
    State(s): State<AppState>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(body_error)?;
    let patch = contract::settings_patch(&s.engine, &body).map_err(ApiError::invalid_input)?;
    blocking(&s.engine, move |e| e.update_preferences(patch)).await?;
    Ok(Json(contract::settings(&s.engine)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token: Option<String>,
}

async fn set_token(
    State(s): State<AppState>,
    body: Result<Json<TokenBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(body_error)?;
    let token = match body.token.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(model_cache::Token::new(text).ok_or_else(|| {
            ApiError::invalid_input("The token is not valid")
                .with_hint("Hub tokens start with `hf_`")
        })?),
    };
    blocking(&s.engine, move |e| e.set_token(token)).await?;
    Ok(Json(json!({"token_set": s.engine.has_token()})))
}

async fn stats(State(s): State<AppState>) -> ApiResult {
    let stats = blocking(&s.engine, |e| e.stats()).await?;
    Ok(Json(json!({
        "bytes_downloaded": stats.counters.bytes_downloaded,
        "bytes_from_cache": stats.counters.bytes_from_cache,
        "hits": stats.counters.hits,
        "misses": stats.counters.misses,
        "storage_used_bytes": stats.health.storage.used,
        "budget_bytes": stats.health.storage.budget,
        "downloads": [],
    })))
}

async fn events_stream(State(s): State<AppState>) -> impl axum::response::IntoResponse {
    events::stream(s.events.subscribe(), s.shutdown.clone())
}
