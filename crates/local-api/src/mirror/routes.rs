//! The Hub's read routes over the cache: `resolve`, repo info and the tree listing, in the
//! Hub's own headers and JSON (`shared/reference/hub-protocol.md` §1–2), so that
//! `huggingface_hub`, `@huggingface/hub` and `hf_transfer` work with `HF_ENDPOINT` set to the
//! mirror.
//!
//! Who gets what:
//! - **Without the mirror token** (no `Authorization`, or a token that is not the mirror's, such
//!   as the user's Hub token a client sends by habit): the cached files of repos known to be
//!   public, nothing else. Branches resolve through the cache's refs.
//! - **With the mirror token**: every cached repo, and misses are fetched through the engine
//!   (pull-through, see `pull.rs`). A branch is resolved upstream when the Hub answers, so a
//!   client sees a new commit; when the Hub is unreachable the cache answers.
//!
//! Xet metadata (`X-Xet-Hash`, xet-auth links, `xetHash`) is never sent: clients with `hf_xet`
//! use plain HTTP through the mirror.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use model_cache::engine::EngineError;
use model_cache::hub::{EntryKind, HubError, RepoInfo, TreeEntry};
use model_cache::repo::{RepoId, RepoType};
use model_cache::serve::{Access, ServedFile, TreeItem, tree};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use super::bytes::{Multipart, Ranges, mapped, parse_ranges};
use super::{MirrorState, pull};

/// Entries per page of a tree listing (the Hub's page size).
pub(crate) const PAGE_SIZE: usize = 1000;

/// A request the mirror understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/{prefix}{repo}/resolve/{revision}/{path}`
    Resolve {
        repo: RepoId,
        revision: String,
        path: String,
    },
    /// `/api/{type}s/{repo}[/revision/{revision}]`
    Info {
        repo: RepoId,
        revision: Option<String>,
    },
    /// `/api/{type}s/{repo}/tree/{revision}[/{path}]`
    Tree {
        repo: RepoId,
        revision: String,
        path: String,
    },
}

fn decode(text: &str) -> Option<String> {
    percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Splits `rev/rest…` into the percent-decoded revision and path.
fn revision_and_path(rest: &str) -> Option<(String, String)> {
    let (revision, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some((decode(revision)?, decode(path)?))
}

/// Reads a request path (still percent-encoded). Repo ids have one or two segments, so the
/// path is split at the `/resolve/`, `/tree/` and `/revision/` markers, not by counting.
pub(crate) fn route(path: &str) -> Option<Route> {
    let path = path.strip_prefix('/')?;
    if let Some(api) = path.strip_prefix("api/") {
        let (plural, rest) = api.split_once('/')?;
        let repo_type = match plural {
            "models" => RepoType::Model,
            "datasets" => RepoType::Dataset,
            "spaces" => RepoType::Space,
            _ => return None,
        };
        if let Some((repo, rest)) = rest.split_once("/tree/") {
            let (revision, path) = revision_and_path(rest)?;
            let repo = RepoId::new(repo_type, &decode(repo)?).ok()?;
            return Some(Route::Tree {
                repo,
                revision,
                path,
            });
        }
        if let Some((repo, revision)) = rest.split_once("/revision/") {
            let repo = RepoId::new(repo_type, &decode(repo)?).ok()?;
            return Some(Route::Info {
                repo,
                revision: Some(decode(revision)?),
            });
        }
        let repo = RepoId::new(repo_type, &decode(rest.trim_end_matches('/'))?).ok()?;
        return Some(Route::Info {
            repo,
            revision: None,
        });
    }
    let (repo_type, rest) = if let Some(rest) = path.strip_prefix("datasets/") {
        (RepoType::Dataset, rest)
    } else if let Some(rest) = path.strip_prefix("spaces/") {
        (RepoType::Space, rest)
    } else {
        (RepoType::Model, path)
    };
    let (repo, rest) = rest.split_once("/resolve/")?;
    let (revision, path) = revision_and_path(rest)?;
    if path.is_empty() {
        return None;
    }
    Some(Route::Resolve {
        repo: RepoId::new(repo_type, &decode(repo)?).ok()?,
        revision,
        path,
    })
}

/// Every request: routed by path, answered with the Hub's errors when it is not a read route.
pub(crate) async fn handle(State(state): State<Arc<MirrorState>>, request: Request) -> Response {
    let full = state.holds_token(request.headers())
        || request.extensions().get::<super::TrustedOrigin>().is_some();
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD {
        return hub_error(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            "The mirror serves reads only (GET and HEAD)",
        );
    }
    let Some(route) = route(request.uri().path()) else {
        return hub_error(StatusCode::NOT_FOUND, None, "No such route on this mirror");
    };
    let query = request.uri().query().unwrap_or("").to_string();
    let base = state.base_url(request.headers());
    // Without the token, only repos known to be public are answered at all.
    let (Route::Resolve { repo, .. } | Route::Info { repo, .. } | Route::Tree { repo, .. }) =
        &route;
    if !full && state.engine.access(repo) != Access::Public {
        return needs_token(repo);
    }
    match route {
        Route::Resolve {
            repo,
            revision,
            path,
        } => {
            resolve(
                &state,
                full,
                &method,
                request.headers(),
                repo,
                revision,
                path,
            )
            .await
        }
        Route::Info { repo, revision } => info(&state, full, repo, revision).await,
        Route::Tree {
            repo,
            revision,
            path,
        } => listing(&state, full, &base, &query, repo, revision, path).await,
    }
}

/// An error as the Hub words it: JSON `{"error": …}` with `X-Error-Code` and `X-Error-Message`,
/// which `huggingface_hub` turns into its exception types.
pub(crate) fn hub_error(status: StatusCode, code: Option<&str>, message: &str) -> Response {
    let mut response = (status, axum::Json(json!({ "error": message }))).into_response();
    let headers = response.headers_mut();
    if let Some(code) = code {
        headers.insert(
            "x-error-code",
            HeaderValue::from_str(code).expect("ascii code"),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&message.replace(['\r', '\n'], " ")) {
        headers.insert("x-error-message", value);
    }
    response
}

/// What a client without the mirror token gets for anything not cached and public.
fn needs_token(repo: &RepoId) -> Response {
    hub_error(
        StatusCode::UNAUTHORIZED,
        None,
        &format!(
            "`{repo}` is not served without the mirror token: only public repos already in the cache are; send the mirror token (HF_TOKEN) to fetch others through the mirror"
        ),
    )
}

/// The Hub's answer for an upstream failure.
pub(crate) fn upstream_error(error: &EngineError, commit: Option<&str>) -> Response {
    let hub = match error {
        EngineError::Hub(hub) => Some(hub),
        _ => None,
    };
    let message = error.to_string();
    let mut response = match hub {
        Some(HubError::RepoNotFound { .. }) => {
            hub_error(StatusCode::NOT_FOUND, Some("RepoNotFound"), &message)
        }
        Some(HubError::RevisionNotFound { .. }) => {
            hub_error(StatusCode::NOT_FOUND, Some("RevisionNotFound"), &message)
        }
        Some(HubError::EntryNotFound { .. }) => {
            hub_error(StatusCode::NOT_FOUND, Some("EntryNotFound"), &message)
        }
        Some(HubError::Gated { .. }) => {
            hub_error(StatusCode::FORBIDDEN, Some("GatedRepo"), &message)
        }
        Some(HubError::Unauthorized { .. } | HubError::BadToken) => {
            hub_error(StatusCode::UNAUTHORIZED, None, &message)
        }
        Some(HubError::RateLimited { .. }) => {
            hub_error(StatusCode::TOO_MANY_REQUESTS, None, &message)
        }
        _ => hub_error(StatusCode::BAD_GATEWAY, None, &message),
    };
    let commit = commit.or(match hub {
        Some(HubError::EntryNotFound { commit, .. }) => commit.as_deref(),
        _ => None,
    });
    if let Some(value) = commit.and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().insert("x-repo-commit", value);
    }
    response
}

/// Whether the upstream failure leaves the question open (the Hub could not be reached, or
/// answered with an error that says nothing about the repo): the cache answers instead. A
/// definite answer (no such repo, revision or file; no access) is passed on.
fn unreachable(error: &EngineError) -> bool {
    !matches!(
        error,
        EngineError::Hub(
            HubError::RepoNotFound { .. }
                | HubError::RevisionNotFound { .. }
                | HubError::EntryNotFound { .. }
                | HubError::Gated { .. }
                | HubError::Unauthorized { .. }
                | HubError::BadToken
                | HubError::Forbidden { .. }
        )
    )
}

/// The commit a revision points to for this client: upstream when it holds the token, the Hub
/// answers and the revision is not a cached commit; else the cache's.
async fn commit_for(
    state: &MirrorState,
    full: bool,
    repo: &RepoId,
    revision: &str,
) -> Result<Option<String>, Response> {
    let cached = state.engine.cached_commit(repo, revision);
    let is_commit = model_cache::store::is_commit_hash(revision);
    if !full || !state.engine.upstream_enabled() || (is_commit && cached.is_some()) {
        return Ok(cached);
    }
    match state.engine.upstream_info(repo, Some(revision)).await {
        Ok(info) => {
            state.engine.note_ref(repo, revision, &info.sha);
            Ok(Some(info.sha))
        }
        Err(error) if unreachable(&error) => Ok(cached),
        Err(error) => Err(upstream_error(&error, None)),
    }
}

async fn resolve(
    state: &Arc<MirrorState>,
    full: bool,
    method: &Method,
    headers: &HeaderMap,
    repo: RepoId,
    revision: String,
    path: String,
) -> Response {
    let cached = state
        .engine
        .cached_commit(&repo, &revision)
        .and_then(|commit| {
            let file = state.engine.served_file(&repo, &commit, &path)?;
            Some((commit, file))
        });
    // A branch may have moved upstream: a token holder gets the Hub's commit when it answers.
    let upstream_moved =
        full && state.engine.upstream_enabled() && !model_cache::store::is_commit_hash(&revision);
    if let Some((commit, file)) = &cached
        && !upstream_moved
    {
        return serve_file(state, &repo, commit, file, method, headers);
    }
    if !full {
        return match cached {
            Some((commit, file)) => serve_file(state, &repo, &commit, &file, method, headers),
            None => needs_token(&repo),
        };
    }
    let meta = match state.engine.upstream_file(&repo, &revision, &path).await {
        Ok(meta) => meta,
        Err(error) if unreachable(&error) => {
            return match cached {
                Some((commit, file)) => serve_file(state, &repo, &commit, &file, method, headers),
                None => upstream_error(&error, None),
            };
        }
        Err(error) => return upstream_error(&error, None),
    };
    state.engine.note_ref(&repo, &revision, &meta.commit);
    if let Some(file) = state.engine.served_file(&repo, &meta.commit, &path) {
        return serve_file(state, &repo, &meta.commit, &file, method, headers);
    }
    if *method == Method::HEAD {
        let mut response = StatusCode::OK.into_response();
        upstream_file_headers(response.headers_mut(), &meta);
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
        return response;
    }
    pull::stream(state, &repo, &path, &meta, headers).await
}

/// The headers the Hub sends for a file: its commit, etag (and for LFS files the linked etag
/// and size `huggingface_hub` reads first), that ranges are served, and the type.
pub(crate) fn file_headers(
    headers: &mut HeaderMap,
    commit: &str,
    etag: &str,
    size: u64,
    lfs: bool,
) {
    let quoted = HeaderValue::from_str(&format!("\"{etag}\"")).expect("hex etag");
    headers.insert(
        "x-repo-commit",
        HeaderValue::from_str(commit).expect("hex commit"),
    );
    headers.insert(header::ETAG, quoted.clone());
    if lfs {
        headers.insert("x-linked-etag", quoted);
        headers.insert("x-linked-size", HeaderValue::from(size));
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
}

/// [`file_headers`] for a file the Hub described (`HEAD` upstream).
pub(crate) fn upstream_file_headers(
    headers: &mut HeaderMap,
    meta: &model_cache::hub::FileMetadata,
) {
    file_headers(headers, &meta.commit, &meta.etag, meta.size, meta.is_lfs);
}

/// Whether `If-None-Match` names this etag (or `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|value| {
            value.split(',').any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == etag
            })
        })
}

/// A cached file: `304` for a matching `If-None-Match`, the whole file, one range (`206`),
/// several (`206 multipart/byteranges`) or `416`.
pub(crate) fn serve_file(
    state: &MirrorState,
    repo: &RepoId,
    commit: &str,
    file: &ServedFile,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let mut response = Response::new(Body::empty());
    file_headers(
        response.headers_mut(),
        commit,
        &file.etag,
        file.size,
        file.is_lfs(),
    );
    if not_modified(headers, &file.etag) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let ranges = parse_ranges(range, file.size);
    let size = file.size;
    let out = response.headers_mut();
    let parts = match ranges {
        Ranges::Unsatisfiable => {
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let out = response.headers_mut();
            out.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            );
            out.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            return response;
        }
        Ranges::Whole => {
            out.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            vec![(0, size)]
        }
        Ranges::Parts(parts) if parts.len() == 1 => {
            let (start, end) = parts[0];
            out.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)).expect("ascii"),
            );
            out.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            parts
        }
        Ranges::Parts(parts) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            parts
        }
    };
    if *method == Method::HEAD {
        if parts.len() > 1 {
            let multipart = Multipart::new(&parts, size, "application/octet-stream");
            set_multipart(response.headers_mut(), &multipart, &parts);
        }
        return response;
    }
    let read = match state.engine.open_served(repo, commit, file) {
        Ok(read) => Arc::new(read),
        Err(error) => {
            tracing::warn!(%repo, path = %file.path, %error, "Cannot open a cached file");
            return hub_error(
                StatusCode::NOT_FOUND,
                Some("EntryNotFound"),
                &format!("`{}` is no longer in the cache", file.path),
            );
        }
    };
    let handle = match read.file.try_clone() {
        Ok(handle) => Arc::new(handle),
        Err(error) => {
            return hub_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                &format!("Cannot read `{}`: {error}", file.path),
            );
        }
    };
    let body = if parts.len() == 1 {
        let (start, end) = parts[0];
        Body::from_stream(mapped(handle, start, end, read))
    } else {
        let multipart = Multipart::new(&parts, size, "application/octet-stream");
        set_multipart(response.headers_mut(), &multipart, &parts);
        let mut pieces = Vec::new();
        for (head, &(start, end)) in multipart.heads.iter().zip(&parts) {
            let head = bytes::Bytes::from(head.clone());
            pieces.push(futures::stream::once(async move { Ok(head) }).boxed());
            pieces.push(mapped(Arc::clone(&handle), start, end, Arc::clone(&read)).boxed());
        }
        let tail = bytes::Bytes::from(multipart.tail.clone());
        pieces.push(futures::stream::once(async move { Ok(tail) }).boxed());
        Body::from_stream(futures::stream::iter(pieces).flatten())
    };
    *response.body_mut() = body;
    response
}

fn set_multipart(headers: &mut HeaderMap, multipart: &Multipart, parts: &[(u64, u64)]) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&format!(
            "multipart/byteranges; boundary={}",
            multipart.boundary
        ))
        .expect("ascii"),
    );
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(multipart.len(parts)),
    );
}

/// `GET /api/{type}s/{repo}[/revision/{rev}]`: from the Hub for a token holder (when it
/// answers), else what the cache holds at the revision.
async fn info(state: &MirrorState, full: bool, repo: RepoId, revision: Option<String>) -> Response {
    if full && state.engine.upstream_enabled() {
        match state.engine.upstream_info(&repo, revision.as_deref()).await {
            Ok(info) => {
                if let Some(revision) = &revision {
                    state.engine.note_ref(&repo, revision, &info.sha);
                }
                return axum::Json(upstream_info_json(&info)).into_response();
            }
            Err(error) if unreachable(&error) => {}
            Err(error) => return upstream_error(&error, None),
        }
    }
    let revision = revision.unwrap_or_else(|| "main".into());
    let Some(commit) = state.engine.cached_commit(&repo, &revision) else {
        return not_cached(&repo, &revision, full);
    };
    let files = state.engine.served_files(&repo, &commit);
    let siblings: Vec<Value> = files.iter().map(cached_sibling_json).collect();
    let public = state.engine.access(&repo) == Access::Public;
    axum::Json(json!({
        "_id": commit,
        "id": repo.id,
        "modelId": repo.id,
        "sha": commit,
        "private": !public,
        "gated": false,
        "disabled": false,
        "tags": [],
        "siblings": siblings,
    }))
    .into_response()
}

fn not_cached(repo: &RepoId, revision: &str, full: bool) -> Response {
    if full {
        hub_error(
            StatusCode::NOT_FOUND,
            Some("RevisionNotFound"),
            &format!("`{repo}` at `{revision}` is not in the cache, and the Hub cannot be reached"),
        )
    } else {
        needs_token(repo)
    }
}

/// A file's LFS object as listings describe it: its sha256 under `hash_key` (`sha256` in repo
/// info, `oid` in the tree), its size and its pointer file's size.
fn lfs_json(hash_key: &str, sha256: &str, size: u64) -> Value {
    let mut value = json!({ "size": size, "pointerSize": pointer_size(sha256, size) });
    value[hash_key] = json!(sha256);
    value
}

/// A file of repo info (`siblings`, as with `blobs=true`).
fn sibling_json(
    path: &str,
    size: Option<u64>,
    blob_id: Option<&str>,
    lfs: Option<(&str, u64)>,
) -> Value {
    let mut value = json!({ "rfilename": path });
    if let Some(size) = size {
        value["size"] = json!(size);
    }
    if let Some(blob_id) = blob_id {
        value["blobId"] = json!(blob_id);
    }
    if let Some((sha256, size)) = lfs {
        value["lfs"] = lfs_json("sha256", sha256, size);
    }
    value
}

fn cached_sibling_json(file: &ServedFile) -> Value {
    let lfs = file.is_lfs().then_some((file.etag.as_str(), file.size));
    sibling_json(&file.path, Some(file.size), Some(&file.oid()), lfs)
}

/// Repo info from the Hub, as the mirror passes it on (the fields clients read).
fn upstream_info_json(info: &RepoInfo) -> Value {
    let siblings: Vec<Value> = info
        .siblings
        .iter()
        .map(|s| {
            let lfs = s.lfs.as_ref().map(|l| (l.sha256.as_str(), l.size));
            sibling_json(&s.rfilename, s.size, s.blob_id.as_deref(), lfs)
        })
        .collect();
    let gated = match info.gated {
        model_cache::hub::Gating::Open => json!(false),
        model_cache::hub::Gating::Auto => json!("auto"),
        model_cache::hub::Gating::Manual => json!("manual"),
    };
    json!({
        "_id": info.sha,
        "id": info.id,
        "modelId": info.id,
        "sha": info.sha,
        "private": info.private,
        "gated": gated,
        "disabled": false,
        "lastModified": info.last_modified,
        "tags": [],
        "siblings": siblings,
    })
}

fn pointer_size(sha256: &str, size: u64) -> u64 {
    model_cache::serve::lfs_pointer(sha256, size).len() as u64
}

/// `GET /api/{type}s/{repo}/tree/{rev}[/{path}]?recursive=&cursor=`, paginated with a `Link`
/// header to the next page (an absolute URL, as clients follow it verbatim).
async fn listing(
    state: &MirrorState,
    full: bool,
    base: &str,
    query: &str,
    repo: RepoId,
    revision: String,
    path: String,
) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let recursive = param("recursive").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let cursor: usize = param("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut entries: Option<Vec<Value>> = None;
    if full && state.engine.upstream_enabled() {
        let under = (!path.is_empty()).then_some(path.as_str());
        match state
            .engine
            .upstream_tree(&repo, &revision, under, recursive)
            .await
        {
            Ok(listed) => entries = Some(listed.iter().map(upstream_entry_json).collect()),
            Err(error) if unreachable(&error) => {}
            Err(error) => return upstream_error(&error, None),
        }
    }
    let entries = match entries {
        Some(entries) => entries,
        None => {
            let commit = match commit_for(state, false, &repo, &revision).await {
                Ok(Some(commit)) => commit,
                Ok(None) | Err(_) => return not_cached(&repo, &revision, full),
            };
            let files = state.engine.served_files(&repo, &commit);
            match tree(&files, &path, recursive) {
                Some(items) => items.iter().map(item_json).collect(),
                None => {
                    return hub_error(
                        StatusCode::NOT_FOUND,
                        Some("EntryNotFound"),
                        &format!("No folder `{path}` in `{repo}` at `{revision}`"),
                    );
                }
            }
        }
    };
    let page: Vec<Value> = entries
        .iter()
        .skip(cursor)
        .take(PAGE_SIZE)
        .cloned()
        .collect();
    let mut response = axum::Json(page).into_response();
    if cursor + PAGE_SIZE < entries.len() {
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in params.iter().filter(|(k, _)| k != "cursor") {
            next.append_pair(key, value);
        }
        next.append_pair("cursor", &(cursor + PAGE_SIZE).to_string());
        let encoded_path = if path.is_empty() {
            String::new()
        } else {
            format!(
                "/{}",
                percent_encoding::utf8_percent_encode(&path, percent_encoding::NON_ALPHANUMERIC)
            )
        };
        let link = format!(
            "<{base}/api/{}/{}/tree/{}{encoded_path}?{}>; rel=\"next\"",
            repo.repo_type.plural(),
            repo.id,
            percent_encoding::utf8_percent_encode(&revision, percent_encoding::NON_ALPHANUMERIC),
            next.finish()
        );
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

/// A tree listing's entry: a folder, or a file with its LFS object.
fn entry_json(path: &str, oid: &str, size: u64, lfs: Option<(&str, u64)>, folder: bool) -> Value {
    if folder {
        return json!({ "type": "directory", "oid": oid, "size": 0, "path": path });
    }
    let mut value = json!({ "type": "file", "oid": oid, "size": size, "path": path });
    if let Some((sha256, size)) = lfs {
        value["lfs"] = lfs_json("oid", sha256, size);
    }
    value
}

fn item_json(item: &TreeItem) -> Value {
    match item {
        TreeItem::Directory { path, oid } => entry_json(path, oid, 0, None, true),
        TreeItem::File(file) => {
            let lfs = file.is_lfs().then_some((file.etag.as_str(), file.size));
            entry_json(&file.path, &file.oid(), file.size, lfs, false)
        }
    }
}

fn upstream_entry_json(entry: &TreeEntry) -> Value {
    let lfs = entry.lfs.as_ref().map(|l| (l.sha256.as_str(), l.size));
    let folder = entry.kind == EntryKind::Directory;
    entry_json(&entry.path, &entry.oid, entry.size, lfs, folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_at_markers_and_decode() {
        let model = |id: &str| RepoId::new(RepoType::Model, id).unwrap();
        assert_eq!(
            route("/org/name/resolve/main/dir/a%20b.gguf"),
            Some(Route::Resolve {
                repo: model("org/name"),
                revision: "main".into(),
                path: "dir/a b.gguf".into()
            })
        );
        assert_eq!(
            route("/gpt2/resolve/refs%2Fpr%2F1/config.json"),
            Some(Route::Resolve {
                repo: model("gpt2"),
                revision: "refs/pr/1".into(),
                path: "config.json".into()
            })
        );
        assert_eq!(
            route("/datasets/org/ds/resolve/main/x.csv"),
            Some(Route::Resolve {
                repo: RepoId::new(RepoType::Dataset, "org/ds").unwrap(),
                revision: "main".into(),
                path: "x.csv".into()
            })
        );
        assert_eq!(
            route("/api/models/org/name"),
            Some(Route::Info {
                repo: model("org/name"),
                revision: None
            })
        );
        assert_eq!(
            route("/api/models/org/name/revision/main"),
            Some(Route::Info {
                repo: model("org/name"),
                revision: Some("main".into())
            })
        );
        assert_eq!(
            route("/api/models/org/name/tree/main/sub%2Fdir"),
            Some(Route::Tree {
                repo: model("org/name"),
                revision: "main".into(),
                path: "sub/dir".into()
            })
        );
        assert_eq!(route("/org/name/resolve/main/"), None);
        assert_eq!(route("/api/things/org/name"), None);
        assert_eq!(route("/../etc/resolve/main/passwd"), None);
    }
}
