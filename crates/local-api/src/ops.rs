//! The API's operations, independent of the transport: the HTTP routes ([`crate::routes`]) and
//! the desktop app's IPC commands both call these, so a browser and the app window get exactly
//! the same answers (`docs/local-api.md`). Each operation translates a request into one facade
//! call and the result into the contract's JSON ([`crate::contract`]).

use std::collections::HashMap;
use std::sync::Arc;

use model_cache::RepoId;
use model_cache::engine::SearchRequest;
use model_cache::engine::{
    AppSettings, CachedRepoView, Engine, EngineError, JobAction, PreferencesPatch, PullRequest,
    Room, TrustChange, UpdateCheckPolicy, UpdateCheckReport, UpdateView,
};
use model_cache::engine::{PairingCode, PeerView, PeersView};
use model_cache::hub::SearchSort;
use model_cache::index::queue::QueueState;
use model_cache::peers::client::PeerRef;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::contract::{
    self, Affected, ContractEvent, ConvertBody, Freed, Health, Job, JobCounts, PullBody, Queued,
    Revealed, StatsBody, Storage, TokenState, Tracker, Variants,
};
use crate::error::ApiError;

/// Contract events buffered per subscriber before a slow one is cut off (it then resyncs).
const EVENT_BUFFER: usize = 1024;

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The result of an operation: a contract type, or an error with a stable kind.
pub type ApiResult<T> = Result<T, ApiError>;

/// The operations over one engine. Cheap to clone; clones share the event translation.
#[derive(Clone)]
pub struct Api {
    engine: Engine,
    tracker: Arc<Tracker>,
    events: broadcast::Sender<ContractEvent>,
}

impl Api {
    /// Wraps `engine` and starts translating its events into contract events (on the current
    /// Tokio runtime; the task ends with the engine's event channel).
    pub fn new(engine: Engine) -> Api {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let api = Api {
            engine,
            tracker: Arc::new(Tracker::default()),
            events,
        };
        let mut rx = api.engine.subscribe();
        let translator = api.clone();
        tokio::spawn(async move {
            loop {
                // A deferral becomes worth telling after the user's wait: sleep until the next
                // one is due, and not at all while nothing waits.
                let after = translator
                    .engine
                    .notification_preferences()
                    .deferred_after
                    .0;
                let due = translator.tracker.next_deferral_due(after).map(|at_ms| {
                    let wait_ms = (at_ms - contract::unix_ms_now()).max(0) as u64;
                    tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms)
                });
                let received = tokio::select! {
                    received = rx.recv() => received,
                    () = sleep_until_some(due) => {
                        let now = contract::unix_ms_now();
                        for out in translator.tracker.due_deferrals(now, after) {
                            let _ = translator.events.send(out);
                        }
                        continue;
                    }
                };
                match received {
                    Ok(event) => {
                        for out in translator.tracker.translate(&translator.engine, &event) {
                            // No subscriber is fine: nobody is watching.
                            let _ = translator.events.send(out);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "The local API fell behind the engine's events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        api
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Contract events (`job`, `progress`, `notification`), progress throttled.
    pub fn subscribe(&self) -> broadcast::Receiver<ContractEvent> {
        self.events.subscribe()
    }

    /// Runs a synchronous engine call (SQLite, disk scans) off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || f(&engine))
            .await
            .map_err(|e| ApiError::internal(format!("An engine task failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// `GET /api/health`.
    pub async fn health(&self) -> ApiResult<Health> {
        let report = self.blocking(|e| e.health()).await?;
        let settings = self.engine.settings();
        let count = |k: &str| report.jobs.get(k).copied().unwrap_or(0);
        Ok(Health {
            status: if report.status == "ok" {
                "ok"
            } else {
                "degraded"
            }
            .to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            offline: settings.offline,
            endpoint: settings.endpoint.clone(),
            cache_dir: settings.hub_cache.clone(),
            jobs: JobCounts {
                running: count("running"),
                queued: count("queued"),
                deferred: count("deferred"),
            },
            storage: Storage {
                used_bytes: report.storage.used,
                budget_bytes: report.storage.budget,
                free_bytes: report.volume.space.map(|d| d.available),
            },
            alerts: report.problems,
        })
    }

    /// `GET /api/variants?repo=&revision=`.
    pub async fn variants(&self, repo: &str, revision: Option<&str>) -> ApiResult<Variants> {
        let repo = parse_repo(repo)?;
        let revision = revision.filter(|r| !r.is_empty());
        let report = self.engine.variants(&repo, revision).await?;
        let mut body = contract::variants(&report);
        // A variant is cached when each of its files is in the snapshot of the listed commit.
        let commit = report
            .commit
            .clone()
            .unwrap_or_else(|| report.revision.clone());
        let cache = self.engine.cache().repo(&repo);
        for variant in &mut body.variants {
            variant.cached = variant.complete
                && variant.files.iter().chain(&variant.companions).all(|f| {
                    matches!(
                        cache.lookup_cached(&commit, &f.path),
                        model_cache::store::CachedLookup::Found(_)
                    )
                });
        }
        Ok(body)
    }

    /// `GET /api/model?repo=&revision=`: the model's page (card, license, gating).
    pub async fn model_page(
        &self,
        repo: &str,
        revision: Option<&str>,
    ) -> ApiResult<model_cache::engine::ModelPage> {
        let repo = parse_repo(repo)?;
        let revision = revision.filter(|r| !r.is_empty());
        Ok(self.engine.model_page(&repo, revision).await?)
    }

    /// `GET /api/search?q=&filter=&sort=&limit=&cursor=`.
    pub async fn search(
        &self,
        params: contract::SearchParams,
    ) -> ApiResult<contract::SearchResults> {
        let sort = match params
            .sort
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => SearchSort::Downloads,
            Some(text) => SearchSort::parse(text).ok_or_else(|| {
                ApiError::invalid_input(format!("Unknown sort order `{text}`"))
                    .with_hint("Sort by downloads, likes or last_modified")
            })?,
        };
        let request = SearchRequest {
            query: params.q.unwrap_or_default(),
            filter: params
                .filter
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            sort,
            limit: params.limit,
            cursor: params.cursor.filter(|c| !c.is_empty()),
        };
        let report = self.engine.search(&request).await?;
        Ok(contract::search_results(&report))
    }

    /// `POST /api/pulls`: with `evict`, first removes what the user agreed to remove to make
    /// room (and nothing else).
    pub async fn pull(&self, body: PullBody) -> ApiResult<Queued> {
        let consented = body.evict.clone().unwrap_or_default();
        let plan = self.plan_body(body).await?;
        let job = self
            .blocking(move |e| {
                if !consented.is_empty() {
                    e.make_room(&plan, &consented)?;
                }
                e.enqueue(&plan)
            })
            .await?;
        Ok(Queued { job_id: job.id })
    }

    /// `POST /api/pulls/room`: whether the pull fits on the disk and in the budget, and what
    /// making room would remove.
    pub async fn pull_room(&self, body: PullBody) -> ApiResult<Room> {
        let plan = self.plan_body(body).await?;
        self.blocking(move |e| e.room_for(&plan)).await
    }

    async fn plan_body(&self, body: PullBody) -> ApiResult<model_cache::engine::PullPlan> {
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
        Ok(self.engine.plan_pull(&request).await?)
    }

    /// `GET /api/jobs`.
    pub async fn jobs(&self) -> ApiResult<Vec<Job>> {
        let jobs = self.blocking(|e| e.jobs()).await?;
        Ok(jobs
            .iter()
            .map(|j| self.tracker.job(&self.engine, j))
            .collect())
    }

    /// `POST /api/jobs/clear-finished`: the finished jobs leave the Downloads list (the
    /// statistics keep them).
    pub async fn clear_finished(&self) -> ApiResult<Affected> {
        let affected = self.blocking(|e| e.clear_finished()).await?;
        Ok(Affected { affected })
    }

    /// `POST /api/jobs/{id}/{action}`.
    pub async fn job_action(&self, id: &str, action: &str) -> ApiResult<Job> {
        let id: i64 = id
            .parse()
            .map_err(|_| ApiError::invalid_input(format!("`{id}` is not a job id")))?;
        let action: JobAction = serde_json::from_value(Value::from(action)).map_err(|_| {
            ApiError::invalid_input(format!("Unknown job action `{action}`"))
                .with_hint("Actions: pause, resume, cancel, move-up, move-down")
        })?;
        let job = self.blocking(move |e| e.job_action(id, action)).await?;
        Ok(self.tracker.job(&self.engine, &job))
    }

    /// `POST /api/jobs/pause-all` (`pause`) and `/resume-all`: counts the jobs whose state the
    /// action changed.
    pub async fn pause_all(&self, pause: bool) -> ApiResult<Affected> {
        let affected = self
            .blocking(move |e| {
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
        Ok(Affected { affected })
    }

    /// `GET /api/cache`.
    pub async fn cache_list(&self) -> ApiResult<Vec<CachedRepoView>> {
        self.blocking(|e| e.cache_list()).await
    }

    async fn cached(&self, repo: RepoId) -> ApiResult<CachedRepoView> {
        let name = repo.to_string();
        let list = self.blocking(|e| e.cache_list()).await?;
        list.into_iter()
            .find(|r| r.repo == name)
            .ok_or_else(|| ApiError::not_found(format!("`{name}` is not in the cache")))
    }

    /// `POST /api/cache/pin`.
    pub async fn cache_pin(&self, repo: &str, pinned: bool) -> ApiResult<CachedRepoView> {
        let repo = parse_repo(repo)?;
        // Pinning something that is not cached would silently protect nothing: refuse it.
        self.cached(repo.clone()).await?;
        let target = repo.clone();
        self.blocking(move |e| e.set_pinned(&target, pinned))
            .await?;
        self.cached(repo).await
    }

    /// `GET /api/updates`: the followed branches with a newer commit, as last checked.
    pub async fn updates(&self) -> ApiResult<Vec<UpdateView>> {
        self.blocking(|e| e.updates()).await
    }

    /// `GET /api/peers`: this machine, the paired peers, the peers seen on the LAN.
    pub async fn peers(&self) -> ApiResult<PeersView> {
        self.blocking(|e| e.peers()).await
    }

    /// `POST /api/peers/sharing`: sharing on or off (the listener follows within seconds).
    pub async fn peers_sharing(&self, on: bool) -> ApiResult<PeersView> {
        self.blocking(move |e| {
            e.set_sharing(on)?;
            e.peers()
        })
        .await
    }

    /// `POST /api/peers/compression`: compressed peer transfers on or off (for downloads that
    /// start afterwards).
    pub async fn peers_compression(&self, on: bool) -> ApiResult<PeersView> {
        self.blocking(move |e| {
            e.set_peer_compression(on)?;
            e.peers()
        })
        .await
    }

    /// `POST /api/peers/pairing`: a new pairing code to show.
    pub async fn peers_pairing(&self) -> ApiResult<PairingCode> {
        self.blocking(|e| e.start_pairing()).await
    }

    /// `POST /api/peers/pair`: pairs with the peer at `address` (or the peer id discovery saw)
    /// that shows `code`.
    pub async fn peers_pair(&self, address: &str, code: &str) -> ApiResult<PeerView> {
        let view = self.peers().await?;
        let address = view
            .unpaired
            .iter()
            .find(|seen| seen.peer_id == address)
            .map(|seen| seen.address.clone())
            .unwrap_or_else(|| address.to_string());
        let port = self.engine.peer_port();
        Ok(self.engine.pair_with(&address, code, port).await?)
    }

    /// `GET /api/peers/holdings?peer=ID`: what a paired peer holds, asked now.
    pub async fn peers_holdings(&self, peer: &str) -> ApiResult<Vec<PeerRef>> {
        Ok(self.engine.peer_holdings(peer).await?)
    }

    /// `POST /api/peers/unpair`: forgets a paired peer.
    pub async fn peers_unpair(&self, peer: &str) -> ApiResult<PeersView> {
        let peer = peer.to_string();
        self.blocking(move |e| {
            e.unpair(&peer)?;
            e.peers()
        })
        .await
    }

    /// `POST /api/updates/check`: one round of update checks now.
    pub async fn check_updates(&self, force: bool) -> ApiResult<UpdateCheckReport> {
        let report = self
            .engine
            .check_updates(&UpdateCheckPolicy::default(), None, force)
            .await?;
        Ok(report)
    }

    /// `POST /api/cache/update`: queues the update of a followed branch.
    pub async fn cache_update(&self, repo: &str, branch: Option<&str>) -> ApiResult<Queued> {
        let repo = parse_repo(repo)?;
        let branch = branch.filter(|b| !b.is_empty()).unwrap_or("main");
        let job = self.engine.update(&repo, branch).await?;
        Ok(Queued { job_id: job.id })
    }

    /// `POST /api/convert`: queues the conversion of a cached model (safetensors to GGUF).
    pub async fn convert(&self, body: ConvertBody) -> ApiResult<Queued> {
        let repo = parse_repo(&body.repo)?;
        if !body.to.eq_ignore_ascii_case("gguf") {
            return Err(ApiError::invalid_input(format!(
                "`{}` is not a format the converter writes (gguf)",
                body.to
            )));
        }
        let gguf_type = body
            .gguf_type
            .parse::<model_cache::convert::GgufType>()
            .map_err(ApiError::invalid_input)?;
        let request = model_cache::convert::ConvertRequest {
            to: model_cache::convert::Format::Gguf,
            gguf_type,
            out: None,
            backend: model_cache::convert::Backend::Auto,
        };
        let revision = body.revision.filter(|r| !r.is_empty());
        let job = self
            .blocking(move |e| e.enqueue_convert(&repo, revision.as_deref(), &request))
            .await?;
        Ok(Queued { job_id: job.id })
    }

    /// `POST /api/cache/hold`: keeps a followed branch at its cached commit, or follows it again.
    pub async fn cache_hold(
        &self,
        repo: &str,
        branch: Option<&str>,
        held: bool,
    ) -> ApiResult<CachedRepoView> {
        let repo = parse_repo(repo)?;
        let branch = branch
            .filter(|b| !b.is_empty())
            .unwrap_or("main")
            .to_string();
        self.cached(repo.clone()).await?;
        let target = repo.clone();
        self.blocking(move |e| {
            if held {
                e.hold(&target, &branch).map(|_| ())
            } else {
                e.follow(&target, &branch).map(|_| ())
            }
        })
        .await?;
        self.cached(repo).await
    }

    /// `POST /api/cache/delete`.
    pub async fn cache_delete(
        &self,
        repo: &str,
        revision: Option<String>,
        variant: Option<String>,
    ) -> ApiResult<Freed> {
        let repo = parse_repo(repo)?;
        let variant = variant.filter(|v| !v.is_empty());
        let removal = self
            .blocking(move |e| match variant {
                Some(variant) => {
                    e.delete_variant(&repo, revision.as_deref(), &variant, false, false)
                }
                None => e.delete(&repo, revision.as_deref(), false, false),
            })
            .await?;
        Ok(Freed {
            freed_bytes: removal.bytes_freed,
        })
    }

    /// `POST /api/cache/reveal`: the model's folder (the app also opens it in the file manager).
    pub async fn cache_reveal(&self, repo: &str) -> ApiResult<Revealed> {
        let found = self.cached(parse_repo(repo)?).await?;
        Ok(Revealed { path: found.path })
    }

    /// `GET /api/settings`.
    pub fn settings_get(&self) -> ApiResult<AppSettings> {
        Ok(self.engine.app_settings())
    }

    /// `PUT /api/settings` with a partial settings object, validated by the engine (every bad
    /// field is reported).
    ///
    /// **Trust boundary:** a change of where requests and the Hub token go (the endpoint, the
    /// mirrors, the mirrors receiving the token) is refused here, with 403
    /// `forbidden_setting`: any local program holding the API secret could otherwise send the
    /// token to a server of its choosing. Setting them to the values in force is no change. The
    /// app makes such a change with [`Api::settings_set_confirmed`], after the person confirmed
    /// [`Api::settings_trust_changes`] in a native dialog; the HTTP routes never call it.
    pub async fn settings_set(&self, body: Value) -> ApiResult<AppSettings> {
        let patch = PreferencesPatch::from_json(&body).map_err(EngineError::from)?;
        self.blocking(move |e| {
            let changes = e.trust_changes(&patch)?;
            if !changes.is_empty() {
                return Ok(Err(ApiError::forbidden_setting(&changes)));
            }
            e.update_preferences(&patch).map(Ok)
        })
        .await?
    }

    /// What a settings change (the body of [`Api::settings_set`]) would change of where requests
    /// and the Hub token go; empty when nothing. The app shows these in a native confirmation
    /// dialog before it calls [`Api::settings_set_confirmed`]. Nothing is saved.
    pub async fn settings_trust_changes(&self, body: &Value) -> ApiResult<Vec<TrustChange>> {
        let patch = PreferencesPatch::from_json(body).map_err(EngineError::from)?;
        self.blocking(move |e| e.trust_changes(&patch)).await
    }

    /// [`Api::settings_set`] for the app's IPC once the person confirmed the
    /// [`Api::settings_trust_changes`] in a native dialog: the endpoint, the mirrors and the
    /// mirrors receiving the token may change too. Never reachable over HTTP.
    pub async fn settings_set_confirmed(&self, body: Value) -> ApiResult<AppSettings> {
        let patch = PreferencesPatch::from_json(&body).map_err(EngineError::from)?;
        self.blocking(move |e| e.update_preferences(&patch)).await
    }

    /// `POST /api/token`: logs in (`Some`) or out (`None`).
    pub async fn set_token(&self, token: Option<String>) -> ApiResult<TokenState> {
        let token = match token.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(model_cache::Token::new(text).ok_or_else(|| {
                ApiError::invalid_input("The token is not valid")
                    .with_hint("Hub tokens start with `hf_`")
            })?),
        };
        self.blocking(move |e| e.set_token(token)).await?;
        Ok(TokenState {
            token_set: self.engine.has_token(),
        })
    }

    /// `GET /api/stats`.
    pub async fn stats(&self) -> ApiResult<StatsBody> {
        let stats = self.blocking(|e| e.stats()).await?;
        Ok(StatsBody {
            bytes_downloaded: stats.counters.bytes_downloaded,
            bytes_from_cache: stats.counters.bytes_from_cache,
            bytes_reused: stats.counters.bytes_reused,
            hits: stats.counters.hits,
            misses: stats.counters.misses,
            storage_used_bytes: stats.health.storage.used,
            budget_bytes: stats.health.storage.budget,
            downloads: stats.downloads,
        })
    }
}

impl Api {
    /// `POST /api/import`: imports files or folders, or adopts another app's models (a dry run
    /// says how each file would be placed and what that saves). Copies only with `copy`.
    pub async fn import(
        &self,
        body: crate::contract::ImportBody,
    ) -> ApiResult<model_cache::import::ImportReport> {
        use model_cache::import::{ImportOrigin, ImportRequest};
        let from = match body.from.as_str() {
            "files" => ImportOrigin::Files,
            "ollama" => ImportOrigin::Ollama,
            "lmstudio" => ImportOrigin::LmStudio,
            "llama.cpp" => ImportOrigin::LlamaCpp,
            other => {
                return Err(ApiError::invalid_input(format!(
                    "`{other}` is not a source to import from"
                ))
                .with_hint("Use files, ollama, lmstudio or llama.cpp"));
            }
        };
        let mut paths: Vec<std::path::PathBuf> = body
            .paths
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
            .collect();
        if paths.is_empty() {
            let lookup = |name: &str| std::env::var(name).ok();
            let home = lookup("HOME").map(std::path::PathBuf::from);
            match model_cache::env::app_models_folder(from, &lookup, home.as_deref()) {
                Some(folder) => paths.push(folder),
                None => {
                    return Err(ApiError::invalid_input("Nothing to import")
                        .with_hint("Name a file or folder, or choose an app"));
                }
            }
        }
        let request = ImportRequest {
            from,
            paths,
            repo: body.repo.as_deref().map(parse_repo).transpose()?,
            use_suggested_repos: body.suggested_repos,
            revision: body.revision.filter(|r| !r.is_empty()),
            allow_copy: body.copy,
            dry_run: body.dry_run,
        };
        Ok(self.engine.import(&request).await?)
    }
}

fn parse_repo(text: &str) -> Result<RepoId, ApiError> {
    RepoId::parse_user_input(text).map_err(|e| {
        ApiError::invalid_input(e.to_string())
            .with_hint("A repository id looks like `org/name`; a Hub URL works too")
    })
}
