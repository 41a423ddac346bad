//! The `/api/*` routes of `docs/local-api.md`: HTTP in and out, the work in [`crate::ops`].

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use crate::contract::{
    Affected, CheckBody, CompressionBody, ConvertBody, DeleteBody, Freed, Health, HoldBody, Job,
    PairBody, PinBody, PullBody, Queued, RevealBody, Revealed, SearchParams, SearchResults,
    SharingBody, StatsBody, TokenBody, TokenState, UnpairBody, UpdateBody, Variants,
};
use crate::error::ApiError;
use crate::events::EventStreams;
use crate::ops::Api;
use model_cache::engine::{
    AppSettings, CachedRepoView, PairingCode, PeerView, PeersView, Room, UpdateCheckReport,
    UpdateView,
};

#[derive(Clone)]
struct RouteState {
    api: Api,
    streams: EventStreams,
}

type Reply<T> = Result<Json<T>, ApiError>;

fn reply<T>(result: Result<T, ApiError>) -> Reply<T> {
    result.map(Json)
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|err| ApiError::invalid_input(format!("Invalid request body: {err}")))
}

/// Builds the API router over `api`; `streams` opens (and limits) the event streams.
pub(crate) fn router(api: Api, streams: EventStreams) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/variants", get(variants))
        .route("/search", get(search))
        .route("/model", get(model_page))
        .route("/pulls", post(pull))
        .route("/pulls/room", post(pull_room))
        .route("/jobs", get(jobs))
        .route("/jobs/pause-all", post(pause_all))
        .route("/jobs/resume-all", post(resume_all))
        .route("/jobs/clear-finished", post(clear_finished))
        .route("/jobs/{id}/{action}", post(job_action))
        .route("/cache", get(cache_list))
        .route("/cache/pin", post(cache_pin))
        .route("/cache/delete", post(cache_delete))
        .route("/cache/update", post(cache_update))
        .route("/cache/hold", post(cache_hold))
        .route("/convert", post(convert))
        .route("/updates", get(updates))
        .route("/peers", get(peers))
        .route("/peers/sharing", post(peers_sharing))
        .route("/peers/compression", post(peers_compression))
        .route("/peers/pairing", post(peers_pairing))
        .route("/peers/pair", post(peers_pair))
        .route("/peers/unpair", post(peers_unpair))
        .route("/peers/holdings", get(peers_holdings))
        .route("/updates/check", post(check_updates))
        .route("/cache/reveal", post(cache_reveal))
        .route("/import", post(import))
        .route("/settings", get(settings_get).put(settings_set))
        .route("/token", post(set_token))
        .route("/stats", get(stats))
        .route("/events", get(events_stream))
        .with_state(RouteState { api, streams })
}

async fn health(State(s): State<RouteState>) -> Reply<Health> {
    reply(s.api.health().await)
}

#[derive(Deserialize)]
struct VariantsQuery {
    repo: Option<String>,
    revision: Option<String>,
}

async fn variants(State(s): State<RouteState>, Query(q): Query<VariantsQuery>) -> Reply<Variants> {
    reply(
        s.api
            .variants(q.repo.as_deref().unwrap_or(""), q.revision.as_deref())
            .await,
    )
}

async fn model_page(
    State(s): State<RouteState>,
    Query(q): Query<VariantsQuery>,
) -> Reply<model_cache::engine::ModelPage> {
    reply(
        s.api
            .model_page(q.repo.as_deref().unwrap_or(""), q.revision.as_deref())
            .await,
    )
}

async fn search(
    State(s): State<RouteState>,
    q: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Reply<SearchResults> {
    let Query(q) =
        q.map_err(|err| ApiError::invalid_input(format!("Invalid search: {}", err.body_text())))?;
    reply(s.api.search(q).await)
}

async fn pull(
    State(s): State<RouteState>,
    b: Result<Json<PullBody>, JsonRejection>,
) -> Reply<Queued> {
    reply(s.api.pull(body(b)?).await)
}

async fn pull_room(
    State(s): State<RouteState>,
    b: Result<Json<PullBody>, JsonRejection>,
) -> Reply<Room> {
    reply(s.api.pull_room(body(b)?).await)
}

async fn jobs(State(s): State<RouteState>) -> Reply<Vec<Job>> {
    reply(s.api.jobs().await)
}

async fn job_action(
    State(s): State<RouteState>,
    Path((id, action)): Path<(String, String)>,
) -> Reply<Job> {
    reply(s.api.job_action(&id, &action).await)
}

async fn clear_finished(State(s): State<RouteState>) -> Reply<Affected> {
    reply(s.api.clear_finished().await)
}

async fn pause_all(State(s): State<RouteState>) -> Reply<Affected> {
    reply(s.api.pause_all(true).await)
}

async fn resume_all(State(s): State<RouteState>) -> Reply<Affected> {
    reply(s.api.pause_all(false).await)
}

async fn cache_list(State(s): State<RouteState>) -> Reply<Vec<CachedRepoView>> {
    reply(s.api.cache_list().await)
}

async fn cache_pin(
    State(s): State<RouteState>,
    b: Result<Json<PinBody>, JsonRejection>,
) -> Reply<CachedRepoView> {
    let b = body(b)?;
    reply(s.api.cache_pin(&b.repo, b.pinned).await)
}

async fn cache_update(
    State(s): State<RouteState>,
    b: Result<Json<UpdateBody>, JsonRejection>,
) -> Reply<Queued> {
    let b = body(b)?;
    reply(s.api.cache_update(&b.repo, b.branch.as_deref()).await)
}

async fn convert(
    State(s): State<RouteState>,
    b: Result<Json<ConvertBody>, JsonRejection>,
) -> Reply<Queued> {
    let b = body(b)?;
    reply(s.api.convert(b).await)
}

async fn cache_hold(
    State(s): State<RouteState>,
    b: Result<Json<HoldBody>, JsonRejection>,
) -> Reply<CachedRepoView> {
    let b = body(b)?;
    reply(s.api.cache_hold(&b.repo, b.branch.as_deref(), b.held).await)
}

async fn peers(State(s): State<RouteState>) -> Reply<PeersView> {
    reply(s.api.peers().await)
}

async fn peers_sharing(
    State(s): State<RouteState>,
    b: Result<Json<SharingBody>, JsonRejection>,
) -> Reply<PeersView> {
    let b = body(b)?;
    reply(s.api.peers_sharing(b.on).await)
}

async fn peers_compression(
    State(s): State<RouteState>,
    b: Result<Json<CompressionBody>, JsonRejection>,
) -> Reply<PeersView> {
    let b = body(b)?;
    reply(s.api.peers_compression(b.on).await)
}

async fn peers_pairing(State(s): State<RouteState>) -> Reply<PairingCode> {
    reply(s.api.peers_pairing().await)
}

async fn peers_pair(
    State(s): State<RouteState>,
    b: Result<Json<PairBody>, JsonRejection>,
) -> Reply<PeerView> {
    let b = body(b)?;
    reply(s.api.peers_pair(&b.address, &b.code).await)
}

#[derive(Deserialize)]
struct PeerQuery {
    peer: Option<String>,
}

async fn peers_holdings(
    State(s): State<RouteState>,
    Query(q): Query<PeerQuery>,
) -> Reply<Vec<model_cache::peers::client::PeerRef>> {
    reply(s.api.peers_holdings(q.peer.as_deref().unwrap_or("")).await)
}

async fn peers_unpair(
    State(s): State<RouteState>,
    b: Result<Json<UnpairBody>, JsonRejection>,
) -> Reply<PeersView> {
    let b = body(b)?;
    reply(s.api.peers_unpair(&b.peer).await)
}

async fn updates(State(s): State<RouteState>) -> Reply<Vec<UpdateView>> {
    reply(s.api.updates().await)
}

async fn check_updates(
    State(s): State<RouteState>,
    b: Result<Json<CheckBody>, JsonRejection>,
) -> Reply<UpdateCheckReport> {
    let b = body(b)?;
    reply(s.api.check_updates(b.force).await)
}

async fn cache_delete(
    State(s): State<RouteState>,
    b: Result<Json<DeleteBody>, JsonRejection>,
) -> Reply<Freed> {
    let b = body(b)?;
    reply(s.api.cache_delete(&b.repo, b.revision, b.variant).await)
}

async fn cache_reveal(
    State(s): State<RouteState>,
    b: Result<Json<RevealBody>, JsonRejection>,
) -> Reply<Revealed> {
    reply(s.api.cache_reveal(&body(b)?.repo).await)
}

async fn import(
    State(s): State<RouteState>,
    b: Result<Json<crate::contract::ImportBody>, JsonRejection>,
) -> Reply<model_cache::import::ImportReport> {
    reply(s.api.import(body(b)?).await)
}

async fn settings_get(State(s): State<RouteState>) -> Reply<AppSettings> {
    reply(s.api.settings_get())
}

async fn settings_set(
    State(s): State<RouteState>,
    b: Result<Json<Value>, JsonRejection>,
) -> Reply<AppSettings> {
    reply(s.api.settings_set(body(b)?).await)
}

async fn set_token(
    State(s): State<RouteState>,
    b: Result<Json<TokenBody>, JsonRejection>,
) -> Reply<TokenState> {
    reply(s.api.set_token(body(b)?.token).await)
}

async fn stats(State(s): State<RouteState>) -> Reply<StatsBody> {
    reply(s.api.stats().await)
}

async fn events_stream(State(s): State<RouteState>) -> impl axum::response::IntoResponse {
    s.streams.open(s.api.subscribe())
}
