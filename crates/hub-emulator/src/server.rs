//! The HTTP listeners: the hub (API and `resolve`), the CDN (LFS content) and, with the feature
//! `xet`, the CAS (see [`crate::xet`]).
//!
//! Paths are matched by hand, not with a router, because repo ids have one or two segments:
//! the `/resolve/`, `/tree/`, `/revision/` and `/paths-info/` markers split them.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Value, json};

use crate::auth::{Caller, TokenTable, fingerprint};
use crate::catalog::Catalog;
use crate::faults::{BodyFaults, Fault, Faults};
use crate::log::{Entry, Listener, RequestLog, RequestRecord};
use crate::repo::{Commit, FileBody, Gate, RepoFile, RepoKind};

/// Body chunk size: large enough for GB/s, small enough to pace bandwidth smoothly.
const CHUNK: usize = 256 * 1024;

/// State shared by all listeners.
pub(crate) struct Shared {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) tokens: RwLock<TokenTable>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) log: Arc<RequestLog>,
    pub(crate) page_size: AtomicUsize,
    pub(crate) hub_url: String,
    pub(crate) cdn_url: String,
    /// Signed, expiring CDN URLs (see `EmulatorConfig::signed_url_ttl`).
    pub(crate) signing: Option<UrlSigning>,
    /// The Xet CAS behind repos marked Xet.
    #[cfg(feature = "xet")]
    pub(crate) xet: Option<Arc<crate::xet::XetCas>>,
}

impl Shared {
    /// Whether the Hub presents `kind/id` as stored with Xet: the repo is marked so and the
    /// emulator runs a CAS. Every other repo is served as plain LFS, without Xet metadata.
    fn is_xet_repo(&self, kind: RepoKind, id: &str) -> bool {
        #[cfg(feature = "xet")]
        if self.xet.is_some() {
            return self.catalog.with_repo(kind, id, |r| r.xet).unwrap_or(false);
        }
        let _ = (kind, id);
        false
    }

    /// The Xet hash the Hub publishes for `f`: only for LFS files of Xet repos (see
    /// [`Shared::is_xet_repo`]). The file is stored in the CAS first if it was not yet.
    async fn published_xet_hash(&self, xet_repo: bool, f: &Arc<RepoFile>) -> Option<String> {
        #[cfg(feature = "xet")]
        if xet_repo
            && f.lfs
            && let Some(cas) = &self.xet
        {
            return cas.hash_of(f).await;
        }
        let _ = (xet_repo, f);
        None
    }
}

/// Signs CDN URLs with an expiry, as the Hub's CDN does: `?Expires=<unix s>&Signature=<hex>`.
pub(crate) struct UrlSigning {
    ttl: std::time::Duration,
    key: String,
}

impl UrlSigning {
    pub(crate) fn new(ttl: std::time::Duration) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        UrlSigning {
            ttl,
            key: format!("{nanos}-{}", std::process::id()),
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    }

    fn signature(&self, object: &str, expires: u64) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("{}\n{object}\n{expires}", self.key));
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    /// The query a URL for `object` carries, valid for the TTL from now.
    fn query(&self, object: &str) -> String {
        let expires = Self::now() + self.ttl.as_secs_f64().ceil() as u64;
        format!(
            "Expires={expires}&Signature={}",
            self.signature(object, expires)
        )
    }

    /// Why a request for `object` with `query` is refused, if it is.
    fn refusal(&self, object: &str, query: Option<&str>) -> Option<&'static str> {
        let mut expires = None;
        let mut signature = None;
        for pair in query.unwrap_or_default().split('&') {
            match pair.split_once('=') {
                Some(("Expires", v)) => expires = v.parse::<u64>().ok(),
                Some(("Signature", v)) => signature = Some(v),
                _ => {}
            }
        }
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Some("Missing Key-Pair-Id query parameter or cookie value");
        };
        if signature != self.signature(object, expires) {
            return Some("Invalid signature");
        }
        (Self::now() > expires).then_some("Request has expired")
    }
}

/// Characters `quote(s, safe="")` leaves alone besides alphanumerics.
const QUOTE_ALL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Same, keeping `/` (Python's `quote(filename)`).
const QUOTE_PATH: &AsciiSet = &QUOTE_ALL.remove(b'/');

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

pub(crate) async fn hub_handler(State(s): State<Arc<Shared>>, req: Request) -> Response {
    handle(s, Listener::Hub, req).await
}

pub(crate) async fn cdn_handler(State(s): State<Arc<Shared>>, req: Request) -> Response {
    handle(s, Listener::Cdn, req).await
}

pub(crate) async fn cas_handler(State(s): State<Arc<Shared>>, req: Request) -> Response {
    handle(s, Listener::Cas, req).await
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn handle(s: Arc<Shared>, listener: Listener, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let auth = header_str(&parts.headers, header::AUTHORIZATION);
    let entry = s.log.start(RequestRecord {
        seq: 0,
        listener,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        host: header_str(&parts.headers, header::HOST),
        authorization: auth.as_deref().map(fingerprint),
        range: header_str(&parts.headers, header::RANGE),
        if_range: header_str(&parts.headers, header::IF_RANGE),
        status: 0,
        bytes_sent: 0,
    });
    let decoded_path = decode(parts.uri.path());
    let rf = s.faults.for_request(&decoded_path);
    if rf.latency > Duration::ZERO {
        tokio::time::sleep(rf.latency).await;
    }
    let response = match rf.error {
        Some(Fault::RateLimit { retry_after }) => rate_limited(retry_after),
        Some(Fault::ServerError(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = (
                status,
                axum::Json(json!({"error": "Injected server error"})),
            )
                .into_response();
            r.headers_mut().insert(
                "x-error-message",
                HeaderValue::from_static("Injected server error"),
            );
            r
        }
        _ => match listener {
            Listener::Hub => hub_route(&s, &parts, body, &entry, &decoded_path).await,
            Listener::Cdn => cdn_route(&s, &parts, &entry, &decoded_path).await,
            Listener::Cas => {
                #[cfg(feature = "xet")]
                if let Some(cas) = &s.xet {
                    let cas = Arc::clone(cas);
                    return finish(
                        &entry,
                        &parts,
                        crate::xet::cas_route(&s, &cas, &parts, &entry, &decoded_path).await,
                    );
                }
                not_found()
            }
        },
    };
    finish(&entry, &parts, response)
}

/// Records the answer's status.
fn finish(entry: &Entry, parts: &Parts, response: Response) -> Response {
    entry.set_status(response.status().as_u16());
    tracing::debug!(
        method = %parts.method,
        path = %parts.uri.path(),
        status = response.status().as_u16(),
        "Request"
    );
    response
}

fn rate_limited(retry_after: u64) -> Response {
    let msg = "You have exceeded our hourly quotas for action 'api'. We invite you to retry later.";
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({"error": msg})),
    )
        .into_response();
    let h = r.headers_mut();
    h.insert("x-error-message", HeaderValue::from_static(msg));
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    if let Ok(v) = HeaderValue::from_str(&format!("\"api\";r=0;t={retry_after}")) {
        h.insert("ratelimit", v);
    }
    h.insert(
        "ratelimit-policy",
        HeaderValue::from_static("\"fixed window\";\"api\";q=500;w=300"),
    );
    r
}

/// An error answered the way the Hub does: `X-Error-Code`, `X-Error-Message`, JSON body.
pub(crate) fn hub_error(
    status: StatusCode,
    code: Option<&str>,
    message: &str,
    commit: Option<&str>,
) -> Response {
    let mut r = (status, axum::Json(json!({"error": message}))).into_response();
    let h = r.headers_mut();
    if let Some(code) = code {
        h.insert(
            "x-error-code",
            HeaderValue::from_str(code).unwrap_or(HeaderValue::from_static("Error")),
        );
    }
    if let Ok(v) = HeaderValue::from_str(message) {
        h.insert("x-error-message", v);
    }
    if let Some(c) = commit.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert("x-repo-commit", c);
    }
    r
}

fn not_found() -> Response {
    hub_error(StatusCode::NOT_FOUND, None, "Not Found", None)
}

/// What a request is about, parsed from the path.
enum Route {
    Info {
        rev: String,
    },
    Tree {
        rev: String,
        path: String,
    },
    PathsInfo {
        rev: String,
    },
    Refs,
    Resolve {
        rev: String,
        file: String,
    },
    /// `GET /api/{T}/{id}/xet-read-token/{rev}`.
    #[cfg(feature = "xet")]
    XetReadToken {
        rev: String,
    },
}

fn split_rev_path(after: &str) -> (String, String) {
    // The revision is one encoded segment, but a client may send `refs/pr/1` unencoded.
    let segs: Vec<&str> = after.splitn(4, '/').collect();
    if segs.len() >= 3
        && segs[0] == "refs"
        && matches!(segs[1], "pr" | "heads" | "tags" | "convert")
    {
        let rev = format!("refs/{}/{}", segs[1], segs[2]);
        return (rev, segs.get(3).map(|p| decode(p)).unwrap_or_default());
    }
    match after.split_once('/') {
        Some((r, p)) => (decode(r), decode(p)),
        None => (decode(after), String::new()),
    }
}

fn parse_route(method: &Method, raw: &str) -> Option<(RepoKind, String, Route)> {
    if let Some(rest) = raw.strip_prefix("/api/") {
        let (plural, rest) = rest.split_once('/')?;
        let kind = RepoKind::from_plural(plural)?;
        if let Some(i) = rest.find("/revision/") {
            let rev = decode(&rest[i + "/revision/".len()..]);
            return Some((kind, decode(&rest[..i]), Route::Info { rev }));
        }
        if let Some(i) = rest.find("/tree/") {
            let (rev, path) = split_rev_path(&rest[i + "/tree/".len()..]);
            return Some((kind, decode(&rest[..i]), Route::Tree { rev, path }));
        }
        if let Some(i) = rest.find("/paths-info/") {
            if method != Method::POST {
                return None;
            }
            let rev = decode(&rest[i + "/paths-info/".len()..]);
            return Some((kind, decode(&rest[..i]), Route::PathsInfo { rev }));
        }
        #[cfg(feature = "xet")]
        if let Some(i) = rest.find("/xet-read-token/") {
            let rev = decode(&rest[i + "/xet-read-token/".len()..]);
            return Some((kind, decode(&rest[..i]), Route::XetReadToken { rev }));
        }
        if let Some(id) = rest.strip_suffix("/refs") {
            return Some((kind, decode(id), Route::Refs));
        }
        let id = rest.trim_end_matches('/');
        if id.split('/').count() > 2 || id.is_empty() {
            return None;
        }
        return Some((kind, decode(id), Route::Info { rev: "main".into() }));
    }
    let i = raw.find("/resolve/")?;
    let prefix = &raw[1..i];
    let (kind, id) = if let Some(id) = prefix.strip_prefix("datasets/") {
        (RepoKind::Dataset, id)
    } else if let Some(id) = prefix.strip_prefix("spaces/") {
        (RepoKind::Space, id)
    } else {
        (RepoKind::Model, prefix)
    };
    let (rev, file) = split_rev_path(&raw[i + "/resolve/".len()..]);
    Some((kind, decode(id), Route::Resolve { rev, file }))
}

fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn flag(pairs: &[(String, String)], key: &str) -> bool {
    pairs
        .iter()
        .any(|(k, v)| k == key && (v.eq_ignore_ascii_case("true") || v == "1"))
}

/// Repo-level access: `Ok` with the repo's `private`/`gated` state or the Hub's error.
fn check_access(
    s: &Shared,
    kind: RepoKind,
    id: &str,
    caller: &Caller,
    files: bool,
) -> Result<(bool, Option<Gate>), Box<Response>> {
    let state = s.catalog.with_repo(kind, id, |r| (r.private, r.gated));
    let allowed = |c: &Caller| matches!(c, Caller::Token(a) if a.allows(id));
    let anonymous = matches!(caller, Caller::Anonymous);
    let not_found = || {
        let msg = "Repository not found";
        if anonymous {
            hub_error(StatusCode::UNAUTHORIZED, Some("RepoNotFound"), msg, None)
        } else {
            hub_error(StatusCode::NOT_FOUND, Some("RepoNotFound"), msg, None)
        }
    };
    let Some((private, gated)) = state else {
        return Err(Box::new(not_found()));
    };
    if private && !allowed(caller) {
        return Err(Box::new(not_found()));
    }
    if files && gated.is_some() && !allowed(caller) {
        let url = format!("{}/{}{}", s.hub_url, kind.url_prefix(), id);
        let what = match kind {
            RepoKind::Model => "model",
            RepoKind::Dataset => "dataset",
            RepoKind::Space => "space",
        };
        return Err(Box::new(if anonymous {
            hub_error(
                StatusCode::UNAUTHORIZED,
                Some("GatedRepo"),
                &format!(
                    "Access to {what} {id} is restricted. You must have access to it and be authenticated to access it. Please log in."
                ),
                None,
            )
        } else {
            hub_error(
                StatusCode::FORBIDDEN,
                Some("GatedRepo"),
                &format!(
                    "Access to {what} {id} is restricted and you are not in the authorized list. Visit {url} to ask for access."
                ),
                None,
            )
        }));
    }
    Ok((private, gated))
}

fn revision_not_found(rev: &str) -> Response {
    hub_error(
        StatusCode::NOT_FOUND,
        Some("RevisionNotFound"),
        &format!("Invalid rev id: {rev}"),
        None,
    )
}

async fn hub_route(
    s: &Arc<Shared>,
    parts: &Parts,
    body: Body,
    entry: &Arc<Entry>,
    decoded_path: &str,
) -> Response {
    let auth = header_str(&parts.headers, header::AUTHORIZATION);
    let caller = s
        .tokens
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .caller(auth.as_deref());
    if caller == Caller::Invalid {
        return hub_error(
            StatusCode::UNAUTHORIZED,
            None,
            "Invalid credentials in Authorization header",
            None,
        );
    }
    let raw = parts.uri.path();
    if matches!(raw, "/api/models" | "/api/models/") && parts.method == Method::GET {
        return crate::search::search(s, parts, &query_pairs(parts), &caller);
    }
    let Some((kind, id, route)) = parse_route(&parts.method, raw) else {
        return not_found();
    };
    #[cfg(feature = "xet")]
    let files = matches!(route, Route::Resolve { .. } | Route::XetReadToken { .. });
    #[cfg(not(feature = "xet"))]
    let files = matches!(route, Route::Resolve { .. });
    let (private, gated) = match check_access(s, kind, &id, &caller, files) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let pairs = query_pairs(parts);
    let xet_repo = s.is_xet_repo(kind, &id);
    match route {
        Route::Info { rev } => {
            let Some(commit) = s.catalog.resolve(kind, &id, &rev) else {
                return revision_not_found(&rev);
            };
            repo_info(s, kind, &id, private, gated, &commit, flag(&pairs, "blobs")).await
        }
        Route::Tree { rev, path } => {
            let Some(commit) = s.catalog.resolve(kind, &id, &rev) else {
                return revision_not_found(&rev);
            };
            let at = TreeAt {
                kind,
                id: &id,
                commit: &commit,
                rev: &rev,
                xet_repo,
            };
            tree(s, parts, &at, &path, &pairs).await
        }
        Route::PathsInfo { rev } => {
            let Some(commit) = s.catalog.resolve(kind, &id, &rev) else {
                return revision_not_found(&rev);
            };
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let form: Vec<(String, String)> =
                url::form_urlencoded::parse(&body).into_owned().collect();
            let expand = flag(&form, "expand");
            let mut out = Vec::new();
            for (k, p) in &form {
                if k != "paths" {
                    continue;
                }
                let p = p.trim_matches('/');
                if let Some(f) = commit.files.get(p) {
                    out.push(file_entry(s, kind, &id, &commit, f, expand, xet_repo).await);
                } else if commit.files.keys().any(|k| k.starts_with(&format!("{p}/"))) {
                    out.push(dir_entry(&commit, p));
                }
            }
            axum::Json(Value::Array(out)).into_response()
        }
        Route::Refs => {
            let include_prs = pairs
                .iter()
                .any(|(k, v)| k == "include_prs" && (v == "1" || v.eq_ignore_ascii_case("true")));
            let v = s
                .catalog
                .with_repo(kind, &id, |r| {
                    let list = |m: &std::collections::BTreeMap<String, String>, prefix: &str| {
                        m.iter()
                            .map(|(n, c)| json!({"name": n, "ref": format!("{prefix}{n}"), "targetCommit": c}))
                            .collect::<Vec<_>>()
                    };
                    let prs: Vec<Value> = if include_prs {
                        r.pull_requests
                            .iter()
                            .map(|(n, c)| json!({"name": n.to_string(), "ref": format!("refs/pr/{n}"), "targetCommit": c}))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    json!({
                        "branches": list(&r.branches, "refs/heads/"),
                        "tags": list(&r.tags, "refs/tags/"),
                        "converts": [],
                        "pullRequests": prs,
                    })
                })
                .unwrap_or(Value::Null);
            axum::Json(v).into_response()
        }
        Route::Resolve { rev, file } => {
            let Some(commit) = s.catalog.resolve(kind, &id, &rev) else {
                return revision_not_found(&rev);
            };
            let Some(f) = commit.files.get(&file).cloned() else {
                return hub_error(
                    StatusCode::NOT_FOUND,
                    Some("EntryNotFound"),
                    &format!("{file} does not exist on \"{rev}\""),
                    Some(&commit.sha),
                );
            };
            let hashes = s.catalog.hashes(&f).await;
            let mut extra = HeaderMap::new();
            extra.insert(
                "x-repo-commit",
                HeaderValue::from_str(&commit.sha).unwrap_or(HeaderValue::from_static("")),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", hashes.git_oid)) {
                extra.insert(header::ETAG, v);
            }
            let xet_hash = s.published_xet_hash(xet_repo, &f).await;
            extra.insert(
                "access-control-expose-headers",
                HeaderValue::from_static(if xet_hash.is_some() {
                    "X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,X-Total-Count,ETag,Link,Accept-Ranges,Content-Range,X-Linked-Size,X-Linked-ETag,X-Xet-Access-Token,X-Xet-Token-Expiration,X-Xet-Refresh-Route,X-Xet-Cas-Url,X-Xet-Hash"
                } else {
                    "X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,X-Total-Count,ETag,Link,Accept-Ranges,Content-Range,X-Linked-Size,X-Linked-ETag"
                }),
            );
            if let Some(hash) = &xet_hash {
                // Xet clients read the file's hash here and get a CAS token from the linked
                // route; everything else about the answer stays the LFS one.
                let link = format!(
                    "<{}/api/{}/{}/xet-read-token/{}>; rel=\"xet-auth\"",
                    s.hub_url,
                    kind.plural(),
                    id,
                    commit.sha
                );
                if let (Ok(h), Ok(l)) = (HeaderValue::from_str(hash), HeaderValue::from_str(&link))
                {
                    extra.insert("x-xet-hash", h);
                    extra.insert(header::LINK, l);
                }
            }
            if f.lfs {
                let mut location = format!(
                    "{}/cdn/{}/{}",
                    s.cdn_url,
                    hashes.sha256,
                    utf8_percent_encode(&f.path, QUOTE_PATH)
                );
                if let Some(signing) = &s.signing {
                    location = format!("{location}?{}", signing.query(&hashes.sha256));
                }
                let text = format!("Found. Redirecting to {location}");
                let mut r = (StatusCode::FOUND, text).into_response();
                let h = r.headers_mut();
                h.extend(extra);
                if let Ok(v) = HeaderValue::from_str(&location) {
                    h.insert(header::LOCATION, v);
                }
                if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", hashes.sha256)) {
                    h.insert("x-linked-etag", v);
                }
                h.insert("x-linked-size", HeaderValue::from(f.size()));
                r
            } else {
                let etag = hashes.git_oid.clone();
                serve_file(s, parts, &f.body, &etag, extra, entry, decoded_path)
            }
        }
        #[cfg(feature = "xet")]
        Route::XetReadToken { rev } => {
            if s.catalog.resolve(kind, &id, &rev).is_none() {
                return revision_not_found(&rev);
            }
            match s.xet.as_ref().filter(|_| xet_repo) {
                Some(cas) => crate::xet::read_token_response(cas),
                None => hub_error(
                    StatusCode::NOT_FOUND,
                    Some("EntryNotFound"),
                    &format!("{id} is not stored with Xet"),
                    None,
                ),
            }
        }
    }
}

async fn repo_info(
    s: &Shared,
    kind: RepoKind,
    id: &str,
    private: bool,
    gated: Option<Gate>,
    commit: &Arc<Commit>,
    blobs: bool,
) -> Response {
    let mut siblings = Vec::new();
    let mut used = 0u64;
    for f in commit.files.values() {
        used += f.size();
        if blobs {
            let h = s.catalog.hashes(f).await;
            let mut v = json!({"rfilename": f.path, "size": f.size(), "blobId": h.git_oid});
            if f.lfs {
                v["lfs"] =
                    json!({"sha256": h.sha256, "size": f.size(), "pointerSize": h.pointer_size});
            }
            siblings.push(v);
        } else {
            siblings.push(json!({"rfilename": f.path}));
        }
    }
    let created = s
        .catalog
        .with_repo(kind, id, |r| {
            r.commits.values().map(|c| c.date.clone()).min()
        })
        .flatten()
        .unwrap_or_else(|| commit.date.clone());
    let mut v = json!({
        "_id": &commit.sha[..24],
        "id": id,
        "author": id.split_once('/').map(|(a, _)| a),
        "sha": commit.sha,
        "lastModified": commit.date,
        "createdAt": created,
        "private": private,
        "gated": gated.map_or(Value::Bool(false), |g| Value::String(g.as_str().into())),
        "disabled": false,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": used,
    });
    if kind == RepoKind::Model {
        v["modelId"] = json!(id);
        if commit.files.keys().any(|k| k.ends_with(".gguf")) {
            v["library_name"] = json!("gguf");
            v["tags"] = json!(["gguf"]);
        }
    }
    if kind == RepoKind::Space {
        v["sdk"] = json!("static");
    }
    axum::Json(v).into_response()
}

fn dir_entry(commit: &Commit, path: &str) -> Value {
    use sha1::{Digest, Sha1};
    let oid = hex::encode(Sha1::digest(
        format!("tree {}/{}", commit.sha, path).as_bytes(),
    ));
    json!({"type": "directory", "oid": oid, "size": 0, "path": path})
}

async fn file_entry(
    s: &Shared,
    kind: RepoKind,
    id: &str,
    commit: &Arc<Commit>,
    f: &Arc<RepoFile>,
    expand: bool,
    xet_repo: bool,
) -> Value {
    let h = s.catalog.hashes(f).await;
    let mut v = json!({"type": "file", "oid": h.git_oid, "size": f.size(), "path": f.path});
    if f.lfs {
        v["lfs"] = json!({"oid": h.sha256, "size": f.size(), "pointerSize": h.pointer_size});
    }
    if let Some(hash) = s.published_xet_hash(xet_repo, f).await {
        v["xetHash"] = json!(hash);
    }
    if expand {
        let last = s.catalog.last_commit_touching(kind, id, commit, &f.path);
        v["lastCommit"] = json!({"id": last.sha, "title": last.title, "date": last.date});
        v["securityFileStatus"] = json!({"status": "safe", "avScan": {"virusFound": false, "virusNames": null}, "pickleImportScan": null});
    }
    v
}

/// The repo and revision a tree listing is of.
struct TreeAt<'a> {
    kind: RepoKind,
    id: &'a str,
    commit: &'a Arc<Commit>,
    rev: &'a str,
    xet_repo: bool,
}

async fn tree(
    s: &Shared,
    parts: &Parts,
    at: &TreeAt<'_>,
    path: &str,
    pairs: &[(String, String)],
) -> Response {
    let TreeAt {
        kind,
        id,
        commit,
        rev,
        xet_repo,
    } = *at;
    let prefix = path.trim_matches('/');
    let recursive = flag(pairs, "recursive");
    let expand = flag(pairs, "expand");
    let under = |p: &str| prefix.is_empty() || p.starts_with(&format!("{prefix}/"));
    if !prefix.is_empty() && !commit.files.keys().any(|p| under(p)) {
        return hub_error(
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
            &format!("{prefix} does not exist on \"{rev}\""),
            Some(&commit.sha),
        );
    }
    // Entries sorted by path; a folder sorts before its content.
    enum E<'a> {
        Dir,
        File(&'a Arc<RepoFile>),
    }
    let base = if prefix.is_empty() {
        0
    } else {
        prefix.len() + 1
    };
    let mut dirs = BTreeSet::new();
    let mut entries: Vec<(String, E)> = Vec::new();
    for (p, f) in commit.files.iter().filter(|(p, _)| under(p)) {
        let rel = &p[base..];
        let comps: Vec<&str> = rel.split('/').collect();
        if recursive {
            for i in 1..comps.len() {
                dirs.insert(format!("{}{}", &p[..base], comps[..i].join("/")));
            }
            entries.push((p.clone(), E::File(f)));
        } else if comps.len() == 1 {
            entries.push((p.clone(), E::File(f)));
        } else {
            dirs.insert(format!("{}{}", &p[..base], comps[0]));
        }
    }
    entries.extend(dirs.into_iter().map(|d| (d, E::Dir)));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let page_size = s.page_size.load(Ordering::Relaxed).max(1);
    let page_size = if expand { page_size.min(50) } else { page_size };
    let start = match pairs.iter().find(|(k, _)| k == "cursor") {
        Some((_, c)) => match c.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return hub_error(StatusCode::BAD_REQUEST, None, "Invalid cursor", None),
        },
        None => 0,
    };
    let end = (start + page_size).min(entries.len());
    let mut out = Vec::new();
    for (p, e) in entries.get(start..end).unwrap_or_default() {
        out.push(match e {
            E::Dir => dir_entry(commit, p),
            E::File(f) => file_entry(s, kind, id, commit, f, expand, xet_repo).await,
        });
    }
    let mut r = axum::Json(Value::Array(out)).into_response();
    if end < entries.len() {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs.iter().filter(|(k, _)| k != "cursor") {
            q.append_pair(k, v);
        }
        q.append_pair("cursor", &end.to_string());
        let link = format!(
            "<{}{}?{}>; rel=\"next\"",
            s.hub_url,
            parts.uri.path(),
            q.finish()
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

async fn cdn_route(
    s: &Arc<Shared>,
    parts: &Parts,
    entry: &Arc<Entry>,
    decoded_path: &str,
) -> Response {
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed").into_response();
    }
    let sha = parts
        .uri
        .path()
        .strip_prefix("/cdn/")
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    let Some(f) = s.catalog.cdn_object(sha) else {
        return (StatusCode::NOT_FOUND, "NoSuchKey").into_response();
    };
    if let Some(reason) = s
        .signing
        .as_ref()
        .and_then(|signing| signing.refusal(sha, parts.uri.query()))
    {
        let body = format!("<Error><Code>AccessDenied</Code><Message>{reason}</Message></Error>");
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    let h = s.catalog.hashes(&f).await;
    let mut extra = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", h.sha256)) {
        extra.insert(header::ETAG, v);
    }
    extra.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=604800, immutable"),
    );
    serve_file(s, parts, &f.body, &h.sha256, extra, entry, decoded_path)
}

/// The outcome of parsing `Range` against a size.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeSpec {
    /// Whole file (no or ignored `Range`).
    Full,
    /// Inclusive byte range.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

pub(crate) fn parse_range(value: Option<&str>, size: u64) -> RangeSpec {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return RangeSpec::Full;
        };
        if n == 0 || size == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Part(size - n.min(size), size - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeSpec::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return RangeSpec::Full,
        }
    };
    if start >= size {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Part(start, end.min(size - 1))
}

fn serve_file(
    s: &Arc<Shared>,
    parts: &Parts,
    body: &FileBody,
    etag: &str,
    extra: HeaderMap,
    entry: &Arc<Entry>,
    decoded_path: &str,
) -> Response {
    let size = body.size();
    let is_get = parts.method == Method::GET;
    if !is_get && parts.method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed").into_response();
    }
    let faults = if is_get {
        s.faults.for_body(decoded_path)
    } else {
        BodyFaults::default()
    };
    let range_header = header_str(&parts.headers, header::RANGE);
    let mut range = if faults.ignore_range {
        RangeSpec::Full
    } else {
        parse_range(range_header.as_deref(), size)
    };
    // A stale validator means the client's partial copy is of other content: send it all.
    if let Some(ir) = header_str(&parts.headers, header::IF_RANGE) {
        let ir = ir.trim().trim_start_matches("W/").trim_matches('"');
        if ir != etag {
            range = RangeSpec::Full;
        }
    }
    let (status, start, end) = match range {
        RangeSpec::Full => (StatusCode::OK, 0, size),
        RangeSpec::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        RangeSpec::Unsatisfiable => {
            let mut r = (StatusCode::RANGE_NOT_SATISFIABLE, Body::empty()).into_response();
            let h = r.headers_mut();
            h.extend(extra);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return r;
        }
    };
    let body = if is_get {
        Body::from_stream(body_stream(
            BodySource::File(body.clone()),
            start,
            end,
            faults,
            Arc::clone(&s.faults),
            Arc::clone(&s.log),
            Arc::clone(entry),
        ))
    } else {
        Body::empty()
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.extend(extra);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}

/// Where a response body's bytes come from.
pub(crate) enum BodySource {
    /// A file, read at offsets (the CDN and small hub files).
    File(FileBody),
    /// An upstream response, passed through (the CAS listener); `pending` holds what was
    /// received and not yet sent.
    #[cfg_attr(
        not(feature = "xet"),
        expect(dead_code, reason = "only the CAS proxy streams")
    )]
    Stream {
        /// The upstream body.
        upstream: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
        /// Received, not yet sent.
        pending: Bytes,
    },
}

impl BodySource {
    /// Up to `n` bytes at `pos` (an empty result is the end of the body).
    async fn next(
        &mut self,
        pos: u64,
        n: usize,
        buf: &mut BytesMut,
    ) -> Result<Bytes, std::io::Error> {
        match self {
            Self::File(body) => {
                buf.reserve(n);
                buf.resize(n, 0);
                let got = body.read_at(pos, &mut buf[..n]);
                buf.truncate(got);
                Ok(buf.split().freeze())
            }
            Self::Stream { upstream, pending } => {
                use futures::StreamExt as _;
                while pending.is_empty() {
                    match upstream.next().await {
                        Some(chunk) => *pending = chunk?,
                        None => return Ok(Bytes::new()),
                    }
                }
                Ok(pending.split_to(n.min(pending.len())))
            }
        }
    }
}

struct BodyState {
    source: BodySource,
    pos: u64,
    end: u64,
    sent: u64,
    faults: BodyFaults,
    shared: Arc<Faults>,
    log: Arc<RequestLog>,
    entry: Arc<Entry>,
    buf: BytesMut,
    stalled: bool,
    clock: Option<tokio::time::Instant>,
}

/// A response body `start..end` of `source` (offsets of the file, or of the upstream body),
/// shaped by `faults` and counted in the log.
pub(crate) fn body_stream(
    source: BodySource,
    start: u64,
    end: u64,
    faults: BodyFaults,
    shared: Arc<Faults>,
    log: Arc<RequestLog>,
    entry: Arc<Entry>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let state = BodyState {
        source,
        pos: start,
        end,
        sent: 0,
        faults,
        shared,
        log,
        entry,
        buf: BytesMut::new(),
        stalled: false,
        clock: None,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.pos >= st.end {
            return None;
        }
        if let Some(limit) = st.faults.drop_after
            && st.sent >= limit
        {
            st.end = st.pos;
            // hyper abandons its write buffer when the body fails: give it a moment to flush
            // the bytes already sent, so the client sees exactly `limit` bytes.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let e = std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "Injected connection drop",
            );
            return Some((Err(e), st));
        }
        let mut len = (CHUNK as u64).min(st.end - st.pos);
        if let Some(limit) = st.faults.drop_after {
            len = len.min(limit - st.sent);
        }
        if let Some((after, duration)) = st.faults.stall
            && !st.stalled
        {
            if st.sent >= after {
                st.stalled = true;
                tokio::time::sleep(duration).await;
            } else {
                len = len.min(after - st.sent);
            }
        }
        for rate in [st.faults.conn_bandwidth, st.faults.total_bandwidth]
            .into_iter()
            .flatten()
        {
            // Pace in slices of about 1/20 s so the rate is smooth at any scale.
            len = len.min((rate / 20).max(512));
        }
        let mut chunk = match st.source.next(st.pos, len as usize, &mut st.buf).await {
            Ok(chunk) => chunk,
            Err(e) => {
                st.end = st.pos;
                return Some((Err(e), st));
            }
        };
        let got = chunk.len();
        if got == 0 {
            return None;
        }
        let hit = |&(cs, ce): &(u64, u64)| cs < st.pos + got as u64 && ce > st.pos;
        if st.faults.corrupt.iter().any(hit) {
            let mut bytes = BytesMut::from(&chunk[..]);
            for &(cs, ce) in &st.faults.corrupt {
                let (a, b) = (cs.max(st.pos), ce.min(st.pos + got as u64));
                for off in a..b {
                    bytes[(off - st.pos) as usize] ^= 0xFF;
                }
            }
            chunk = bytes.freeze();
        }
        if let Some(rate) = st.faults.conn_bandwidth {
            let now = tokio::time::Instant::now();
            let at = st.clock.map_or(now, |c| c.max(now))
                + Duration::from_secs_f64(got as f64 / rate.max(1) as f64);
            st.clock = Some(at);
            tokio::time::sleep_until(at).await;
        }
        if let Some(rate) = st.faults.total_bandwidth {
            let at = st.shared.total_slot(got as u64, rate);
            tokio::time::sleep_until(at).await;
        }
        st.log.add_bytes(&st.entry, got as u64);
        st.pos += got as u64;
        st.sent += got as u64;
        Some((Ok(chunk), st))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeSpec::Full);
        assert_eq!(parse_range(Some("bytes=0-0"), 10), RangeSpec::Part(0, 0));
        assert_eq!(parse_range(Some("bytes=5-"), 10), RangeSpec::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), RangeSpec::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeSpec::Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), RangeSpec::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), RangeSpec::Full);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeSpec::Full);
    }

    #[test]
    fn routes() {
        let get = Method::GET;
        let (k, id, r) = parse_route(&get, "/api/models/demo/x/revision/refs%2Fpr%2F1").unwrap();
        assert_eq!((k, id.as_str()), (RepoKind::Model, "demo/x"));
        assert!(matches!(r, Route::Info { rev } if rev == "refs/pr/1"));
        let (_, id, r) = parse_route(&get, "/api/datasets/gpt2/tree/main/sub%2Fdir").unwrap();
        assert_eq!(id, "gpt2");
        assert!(matches!(r, Route::Tree { rev, path } if rev == "main" && path == "sub/dir"));
        let (k, id, r) =
            parse_route(&get, "/datasets/o/d/resolve/main/data/train%20file.csv").unwrap();
        assert_eq!((k, id.as_str()), (RepoKind::Dataset, "o/d"));
        assert!(
            matches!(r, Route::Resolve { rev, file } if rev == "main" && file == "data/train file.csv")
        );
        let (_, _, r) = parse_route(&get, "/o/m/resolve/refs/pr/1/a.gguf").unwrap();
        assert!(
            matches!(r, Route::Resolve { rev, file } if rev == "refs/pr/1" && file == "a.gguf")
        );
        assert!(parse_route(&get, "/api/whatever/x").is_none());
    }
}
