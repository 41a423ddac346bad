//! The Hub client: repo info, tree listings, file metadata and range GETs over HTTP.
//!
//! [`HubClient`] is cheap to clone (one shared `reqwest::Client`). It follows redirects itself,
//! in one follower (`redirect`; the `reqwest` client is built with `redirect::Policy::none()`),
//! so it decides per hop whether the `Authorization` header may go along.
//!
//! **Architecture Invariant (who receives the token):** the token is only ever sent to the
//! endpoint's origin and to the origins of mirrors marked [`Mirror::send_token`], and to none of
//! them over plain `http` unless its host is loopback; never to a CDN the Hub redirects to.
//! [`HubClient::is_trusted`] is the one place that decides. Failover matters here: making the
//! endpoint unreachable moves requests to the mirrors, so a mirror the user did not mark gets
//! them without the token.
//!
//! Requests are retried through [`retry`], the engine's one retry policy (the downloader uses it
//! too); when the endpoint keeps failing with a retryable error, the configured mirrors are tried
//! in order (they serve the same repos and are checked against the same hashes). Answers are read
//! within [`ResponseLimits`]. In offline mode every call fails with
//! [`HubError::Offline`] before touching the network.
//!
//! **API Boundary:** the client does no file I/O; it returns plain data and streaming bodies.

mod error;
pub mod proxy;
mod redirect;
pub mod retry;
pub mod search;
mod types;
pub mod xet;

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

pub use error::{HubError, redact_url};
pub use search::{ListedModel, SearchPage, SearchQuery, SearchSort};
pub use types::{
    EntryKind, FileMetadata, Gating, Lfs, RangeResponse, RepoInfo, Sibling, TreeEntry,
    normalize_etag,
};

use crate::repo::RepoId;
use crate::secret::Token;
use crate::settings::{Mirror, ResponseLimits, Settings};
use crate::units::format_size;
use proxy::ProxyRule;
use redirect::{Foreign, Private, private_class};
use retry::{RetryPolicy, with_retry};
use types::is_hex;

/// `quote(value, safe="")`: everything but unreserved characters is encoded (revisions, tree
/// paths).
const QUOTE_ALL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');
/// `quote(filename)`: like [`QUOTE_ALL`] but `/` is kept (file names in `resolve` URLs).
const QUOTE_PATH: &AsciiSet = &QUOTE_ALL.remove(b'/');

/// Requests one call makes while following redirects before it gives up (as `huggingface_hub`
/// 2.x).
const MAX_REDIRECTS: usize = 20;

/// A client for the Hub's HTTP API (and compatible mirrors).
#[derive(Clone)]
pub struct HubClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: String,
    mirrors: Vec<String>,
    /// Origins that may receive the token: the endpoint's and those of the mirrors marked to
    /// receive it, each only over `https` or to loopback.
    trusted: Vec<url::Origin>,
    /// The [`Private`] classes of the endpoint and the mirrors: where redirects may lead.
    private_sources: Vec<Private>,
    /// Changeable while running (the user logs in or out in the app); clones share it.
    token: std::sync::RwLock<Option<Token>>,
    offline: bool,
    retry: RetryPolicy,
    metadata_timeout: Duration,
    limits: ResponseLimits,
    /// Which proxy each request goes through (none to loopback).
    proxies: Arc<ProxyRule>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("endpoint", &self.inner.endpoint)
            .field("mirrors", &self.inner.mirrors)
            .field("token", &*self.token())
            .field("offline", &self.inner.offline)
            .finish_non_exhaustive()
    }
}

/// What a request is about, for error mapping.
#[derive(Clone, Copy)]
struct Context<'a> {
    repo: &'a RepoId,
    revision: Option<&'a str>,
    path: Option<&'a str>,
}

impl HubClient {
    /// Builds a client from the settings: endpoint, mirrors, token, offline flag, timeouts and
    /// retry policy.
    pub fn new(settings: &Settings) -> Result<Self, HubError> {
        Self::build(settings, |builder| builder)
    }

    /// [`HubClient::new`], with host names resolved to the given addresses instead of through
    /// the system's resolver, as curl's `--resolve` does. Everything else (the proxy rule, who
    /// receives the token, redirects) decides by the name, so tests reach servers on loopback
    /// under names that are not loopback's.
    #[cfg(feature = "test-support")]
    pub fn with_resolved_hosts(
        settings: &Settings,
        hosts: &[(&str, std::net::SocketAddr)],
    ) -> Result<Self, HubError> {
        Self::build(settings, |mut builder| {
            for (name, addr) in hosts {
                builder = builder.resolve(name, *addr);
            }
            builder
        })
    }

    /// [`HubClient::new`] with its own TLS configuration instead of the trusted roots: a
    /// client of one LAN peer, pinned to its certificate (`peers::client::peer_hub_client`).
    pub fn with_tls(settings: &Settings, tls: rustls::ClientConfig) -> Result<Self, HubError> {
        Self::build(settings, |builder| builder.use_preconfigured_tls(tls))
    }

    /// [`HubClient::new`], with `configure` adjusting the HTTP client (tests resolve a host name
    /// to loopback with it).
    fn build(
        settings: &Settings,
        configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<Self, HubError> {
        let endpoint = settings.endpoint.trim_end_matches('/').to_string();
        let sources: Vec<Mirror> = std::iter::once(Mirror::sent_token(endpoint.clone()))
            .chain(settings.mirrors.iter().map(|m| Mirror {
                url: m.url.trim_end_matches('/').to_string(),
                send_token: m.send_token,
            }))
            .collect();
        let mut trusted = Vec::new();
        let mut private_sources = Vec::new();
        for source in &sources {
            let url = Url::parse(&source.url).map_err(|e| HubError::InvalidEndpoint {
                url: redact_url(&source.url),
                reason: e.to_string(),
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(HubError::InvalidEndpoint {
                    url: redact_url(&source.url),
                    reason: "only `http` and `https` are supported".into(),
                });
            }
            let class = private_class(&url);
            private_sources.extend(class);
            if source.send_token && !may_carry_token(&url) {
                tracing::warn!(source = %redact_url(&source.url), "The token is never sent over plain http except to loopback");
            }
            if source.send_token && may_carry_token(&url) {
                trusted.push(url.origin());
            }
        }
        let mirrors = sources.into_iter().skip(1).map(|m| m.url).collect();
        let proxies = Arc::new(
            ProxyRule::new(&settings.proxy)
                .map_err(|(proxy, reason)| HubError::InvalidProxy { proxy, reason })?,
        );
        // `no_proxy()` turns off reqwest's own reading of the environment: the edges resolved
        // the proxy variables into the settings, and one rule decides every request.
        let mut builder = reqwest::Client::builder().no_proxy();
        if proxies.is_set() {
            let rule = Arc::clone(&proxies);
            builder = builder.proxy(reqwest::Proxy::custom(move |url| {
                rule.proxy_for(url).cloned()
            }));
        }
        if let Some(path) = &settings.ca_bundle {
            for certificate in ca_bundle(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = configure(
            builder
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(settings.timeouts.connect)
                .read_timeout(settings.timeouts.stall)
                .user_agent(settings.user_agent.clone()),
        )
        .build()
        .map_err(|e| HubError::InvalidEndpoint {
            url: redact_url(&endpoint),
            reason: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(HubClient {
            inner: Arc::new(Inner {
                http,
                endpoint,
                mirrors,
                trusted,
                private_sources,
                token: std::sync::RwLock::new(settings.token.clone()),
                offline: settings.offline,
                retry: settings.retry.clone(),
                metadata_timeout: settings.timeouts.metadata,
                limits: settings.response_limits.clone(),
                proxies,
            }),
        })
    }

    /// The endpoint, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The mirrors, in failover order.
    pub fn mirrors(&self) -> &[String] {
        &self.inner.mirrors
    }

    /// Whether the client refuses all network access.
    pub fn is_offline(&self) -> bool {
        self.inner.offline
    }

    /// Whether a token is configured (its value is never exposed).
    pub fn has_token(&self) -> bool {
        self.token().is_some()
    }

    /// Replaces the token (log in / log out) for this client and all its clones.
    pub fn set_token(&self, token: Option<Token>) {
        *self.inner.token.write().unwrap_or_else(|e| e.into_inner()) = token;
    }

    fn token(&self) -> std::sync::RwLockReadGuard<'_, Option<Token>> {
        self.inner.token.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The proxy a request to `url` goes through, if any.
    fn proxy_for(&self, url: &Url) -> Option<&Url> {
        self.inner.proxies.proxy_for(url)
    }

    /// The retry policy requests use.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// `{endpoint}/{prefix}{repo}/resolve/{quote(revision)}/{quote(path)}` on the endpoint.
    pub fn resolve_url(&self, repo: &RepoId, revision: &str, path: &str) -> String {
        resolve_url(&self.inner.endpoint, repo, revision, path)
    }

    /// What a `HEAD` would say of a file, from the tree listing at `commit` (its size and hash):
    /// the download URL is the `resolve` URL at that commit, whose redirect the `GET` follows
    /// (a refused or expired link is renewed with a `HEAD`, as for any download URL).
    pub fn listed_metadata(&self, repo: &RepoId, commit: &str, entry: &TreeEntry) -> FileMetadata {
        let download_url = self.resolve_url(repo, commit, &entry.path);
        let etag = entry.etag().to_ascii_lowercase();
        let is_lfs = entry.lfs.is_some();
        FileMetadata {
            commit: commit.to_string(),
            size: entry.size,
            over_https: download_url.starts_with("https://"),
            download_url,
            is_lfs,
            sha256: (is_lfs && is_hex(&etag, 64)).then(|| etag.clone()),
            git_sha1: (!is_lfs && is_hex(&etag, 40)).then(|| etag.clone()),
            etag,
            xet: entry
                .xet_hash
                .as_ref()
                .filter(|h| is_hex(h, 64))
                .map(|hash| xet::XetFile {
                    hash: hash.to_ascii_lowercase(),
                    token_route: xet::token_route(&self.inner.endpoint, repo, commit),
                }),
        }
    }

    /// Repo info at a revision (or the default branch), with sizes and LFS hashes of files.
    pub async fn repo_info(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
    ) -> Result<RepoInfo, HubError> {
        self.check_online(|| format!("fetch info of `{repo}`"))?;
        let ctx = Context {
            repo,
            revision,
            path: None,
        };
        let what = format!("repo info of `{repo}`");
        self.with_failover(&what, |base| async move {
            let mut url = format!("{base}/api/{}/{}", repo.repo_type.plural(), repo.id);
            if let Some(revision) = revision {
                url.push_str("/revision/");
                url.extend(utf8_percent_encode(revision, QUOTE_ALL));
            }
            url.push_str("?blobs=true");
            let response = self.send_api(Method::GET, &url, ctx).await?;
            let raw: RawRepoInfo = read_json(response, &url, self.inner.limits.json_bytes).await?;
            raw.into_info(&url)
        })
        .await
    }

    /// The commit a branch or tag points to now: one small request (the repo info without its
    /// file list), what the update checks ask for each followed ref.
    pub async fn revision_commit(&self, repo: &RepoId, revision: &str) -> Result<String, HubError> {
        self.check_online(|| format!("check `{repo}` for a newer commit"))?;
        let ctx = Context {
            repo,
            revision: Some(revision),
            path: None,
        };
        let what = format!("the commit of `{repo}` at `{revision}`");
        self.with_failover(&what, |base| async move {
            let mut url = format!(
                "{base}/api/{}/{}/revision/",
                repo.repo_type.plural(),
                repo.id
            );
            url.extend(utf8_percent_encode(revision, QUOTE_ALL));
            let response = self.send_api(Method::GET, &url, ctx).await?;
            let raw: RawRepoInfo = read_json(response, &url, self.inner.limits.json_bytes).await?;
            Ok(raw.into_info(&url)?.sha)
        })
        .await
    }

    /// Lists files (and folders) at a revision, optionally under `path` and recursively, following
    /// `Link: <...>; rel="next"` pagination to the end.
    pub async fn list_tree(
        &self,
        repo: &RepoId,
        revision: &str,
        path: Option<&str>,
        recursive: bool,
    ) -> Result<Vec<TreeEntry>, HubError> {
        self.check_online(|| format!("list the files of `{repo}`"))?;
        let ctx = Context {
            repo,
            revision: Some(revision),
            path,
        };
        let what = format!("the file list of `{repo}`");
        self.with_failover(&what, |base| {
            let what = what.clone();
            async move {
                let mut url = format!(
                    "{base}/api/{}/{}/tree/{}",
                    repo.repo_type.plural(),
                    repo.id,
                    utf8_percent_encode(revision, QUOTE_ALL)
                );
                if let Some(path) = path.filter(|p| !p.is_empty()) {
                    url.push('/');
                    url.extend(utf8_percent_encode(path, QUOTE_ALL));
                }
                url.push_str(&format!("?recursive={recursive}&expand=false"));
                let mut entries = Vec::new();
                let mut pages = 0usize;
                loop {
                    pages += 1;
                    // Each page is retried on its own: a failure on page 40 does not restart
                    // the listing. The first page's failure goes back to the failover loop.
                    let (page, next) = with_retry(&self.inner.retry, &what, |_| {
                        let url = url.clone();
                        async move {
                            let response = self.send_api(Method::GET, &url, ctx).await?;
                            let next = next_link(response.headers(), &url);
                            let page: Vec<RawTreeEntry> =
                                read_json(response, &url, self.inner.limits.json_bytes).await?;
                            Ok::<_, HubError>((page, next))
                        }
                    })
                    .await?;
                    let cap = self.inner.limits.tree_entries;
                    if entries.len().saturating_add(page.len()) > cap {
                        return Err(HubError::InvalidResponse {
                            url: redact_url(&url),
                            reason: format!(
                                "the file list has more than {cap} entries, the most accepted"
                            ),
                        });
                    }
                    for raw in page {
                        entries.push(raw.into_entry());
                    }
                    match next {
                        // The next page is on the same origin: a `Link` cannot send the
                        // listing (and the token) elsewhere.
                        Some(next) if !same_origin(&next, &url) => {
                            return Err(HubError::InvalidResponse {
                                url: redact_url(&url),
                                reason: format!(
                                    "the next page `{}` is on another origin",
                                    redact_url(&next)
                                ),
                            });
                        }
                        Some(next) if next != url && pages < 1_000_000 => url = next,
                        Some(next) => {
                            return Err(HubError::InvalidResponse {
                                url: redact_url(&next),
                                reason: "pagination does not advance".into(),
                            });
                        }
                        None => return Ok(entries),
                    }
                }
            }
        })
        .await
    }

    /// `HEAD` on the file's `resolve` URL, as `huggingface_hub` does it: `Accept-Encoding:
    /// identity`, relative and same-origin redirects followed, a redirect to a foreign origin (a
    /// CDN) not followed — the metadata then comes from that 3xx and its `Location` is the
    /// download URL.
    pub async fn file_metadata(
        &self,
        repo: &RepoId,
        revision: &str,
        path: &str,
    ) -> Result<FileMetadata, HubError> {
        self.check_online(|| format!("resolve `{path}` in `{repo}`"))?;
        let what = format!("the metadata of `{path}` in `{repo}`");
        self.with_failover(&what, |base| async move {
            self.file_metadata_on(&base, repo, revision, path).await
        })
        .await
    }

    /// [`HubClient::file_metadata`] on one source only (`base`, the endpoint or a mirror), in
    /// one attempt: no retry, no failover. The downloader asks each mirror this way whether it
    /// has a file; one that fails to answer is simply not used for it. The token goes to `base`
    /// only when it is trusted, as for every request.
    pub async fn file_metadata_on(
        &self,
        base: &str,
        repo: &RepoId,
        revision: &str,
        path: &str,
    ) -> Result<FileMetadata, HubError> {
        self.check_online(|| format!("resolve `{path}` in `{repo}`"))?;
        let ctx = Context {
            repo,
            revision: Some(revision),
            path: Some(path),
        };
        self.head_metadata(base, ctx).await
    }

    /// One `HEAD` of a file's `resolve` URL on `base` (see [`HubClient::file_metadata`]).
    async fn head_metadata(&self, base: &str, ctx: Context<'_>) -> Result<FileMetadata, HubError> {
        let revision = ctx.revision.unwrap_or_default();
        let path = ctx.path.unwrap_or_default();
        let start = parse_url(&resolve_url(base, ctx.repo, revision, path))?;
        // Redirects never downgrade, so every hop after an `https` start is `https` too.
        let over_https = start.scheme() == "https";
        let landed = self
            .follow(Method::HEAD, start, Foreign::Stop, Some(ctx), |request| {
                request
                    .header(header::ACCEPT_ENCODING, "identity")
                    .timeout(self.inner.metadata_timeout)
            })
            .await?;
        metadata_from(
            landed.response.headers(),
            landed.foreign,
            &landed.url,
            over_https,
        )
    }

    /// A `GET` of `url` (a download URL from [`FileMetadata`], or any Hub/CDN URL) with an
    /// optional byte range (`end` exclusive) and `If-Range` validator, retried per the policy
    /// until the response head arrives. The body streams from [`RangeResponse::body`].
    pub async fn get_range(
        &self,
        url: &str,
        range: Option<Range<u64>>,
        if_range: Option<&str>,
    ) -> Result<RangeResponse, HubError> {
        self.check_online(|| format!("download `{}`", redact_url(url)))?;
        let what = format!("`{}`", redact_url(url));
        Ok(with_retry(&self.inner.retry, &what, |_| {
            self.get_range_once(url, range.clone(), if_range)
        })
        .await?)
    }

    /// One attempt of [`HubClient::get_range`], for callers with their own retry budget (the
    /// downloader). Redirects are followed; the token goes only to trusted origins.
    pub async fn get_range_once(
        &self,
        url: &str,
        range: Option<Range<u64>>,
        if_range: Option<&str>,
    ) -> Result<RangeResponse, HubError> {
        self.get_range_encoded(url, range, if_range, false).await
    }

    /// [`HubClient::get_range_once`], asking a paired peer for the compressed encoding of
    /// `crate::peers::planes` when `planes` is set; [`RangeResponse::planes`] says whether the
    /// body is in it.
    pub async fn get_range_encoded(
        &self,
        url: &str,
        range: Option<Range<u64>>,
        if_range: Option<&str>,
        planes: bool,
    ) -> Result<RangeResponse, HubError> {
        self.check_online(|| format!("download `{}`", redact_url(url)))?;
        let start = parse_url(url)?;
        if let Some(range) = &range
            && range.end <= range.start
        {
            return Err(HubError::RangeNotSatisfiable {
                url: redact_url(url),
                total: None,
            });
        }
        let landed = self
            .follow(Method::GET, start, Foreign::Follow, None, |mut request| {
                request = request.header(header::ACCEPT_ENCODING, "identity");
                if let Some(range) = &range {
                    request = request.header(
                        header::RANGE,
                        format!("bytes={}-{}", range.start, range.end - 1),
                    );
                }
                if let Some(validator) = if_range {
                    request = request.header(header::IF_RANGE, validator);
                }
                if planes {
                    request = request
                        .header(crate::peers::planes::HEADER, crate::peers::planes::ENCODING);
                }
                request
            })
            .await?;
        let response = landed.response;
        let status = response.status();
        let headers = response.headers();
        let content_range = headers
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range)
            .and_then(|(range, total)| range.map(|(a, b)| (a, b, total)));
        let partial = status == StatusCode::PARTIAL_CONTENT
            && match (&range, content_range) {
                (Some(asked), Some((first, _, _))) => first == asked.start,
                _ => false,
            };
        let etag = headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(normalize_etag);
        let content_length = header_u64(headers, header::CONTENT_LENGTH.as_str());
        let planes = planes
            && headers
                .get(crate::peers::planes::HEADER)
                .is_some_and(|v| v.as_bytes() == crate::peers::planes::ENCODING.as_bytes());
        Ok(RangeResponse {
            status: status.as_u16(),
            partial,
            content_range,
            etag,
            content_length,
            planes,
            body: response,
        })
    }

    fn check_online(&self, what: impl FnOnce() -> String) -> Result<(), HubError> {
        if self.inner.offline {
            return Err(HubError::Offline { what: what() });
        }
        Ok(())
    }

    /// Whether `url` may receive the token: it is on the endpoint's origin or that of a mirror
    /// marked to receive it, over `https` or to loopback. The one place that decides (see
    /// [`redirect`]).
    fn is_trusted(&self, url: &Url) -> bool {
        let origin = url.origin();
        self.inner.trusted.contains(&origin)
    }

    /// A request with `Authorization` only if `url` is on a trusted origin.
    fn request(&self, method: Method, url: &Url) -> reqwest::RequestBuilder {
        let mut request = self.inner.http.request(method, url.clone());
        if let Some(token) = &*self.token()
            && self.is_trusted(url)
        {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            value.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, value);
        }
        request
    }

    /// An API request on the endpoint (or a mirror): non-2xx statuses become typed errors.
    async fn send_api(
        &self,
        method: Method,
        url: &str,
        ctx: Context<'_>,
    ) -> Result<reqwest::Response, HubError> {
        // API redirects (renamed repos) stay on the Hub; follow them only there.
        let landed = self
            .follow(
                method,
                parse_url(url)?,
                Foreign::Refuse,
                Some(ctx),
                |request| request.timeout(self.inner.metadata_timeout),
            )
            .await?;
        Ok(landed.response)
    }

    /// An API request that names no repo (a search): non-2xx statuses become typed errors.
    async fn send_unscoped(
        &self,
        method: Method,
        url: &str,
    ) -> Result<reqwest::Response, HubError> {
        let landed = self
            .follow(method, parse_url(url)?, Foreign::Refuse, None, |request| {
                request.timeout(self.inner.metadata_timeout)
            })
            .await?;
        Ok(landed.response)
    }

    /// The most bytes a JSON answer may have.
    fn json_limit(&self) -> u64 {
        self.inner.limits.json_bytes
    }

    /// Runs `op` against the endpoint, then against each mirror while the failure is retryable.
    async fn with_failover<T, F, Fut>(&self, what: &str, op: F) -> Result<T, HubError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, HubError>>,
    {
        let sources: Vec<&String> = std::iter::once(&self.inner.endpoint)
            .chain(&self.inner.mirrors)
            .collect();
        let count = sources.len();
        let mut last_error = None;
        for (index, base) in sources.into_iter().enumerate() {
            let result: Result<T, HubError> =
                with_retry(&self.inner.retry, what, |_| op(base.clone()))
                    .await
                    .map_err(HubError::from);
            match result {
                Ok(value) => return Ok(value),
                Err(error) if error.is_retryable() && index + 1 < count => {
                    tracing::warn!(source = %base, error = %error, "Source failed, trying the next mirror");
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| HubError::InvalidEndpoint {
            url: redact_url(&self.inner.endpoint),
            reason: "no source configured".into(),
        }))
    }

    /// Maps a non-success response to a typed error, in the order `hf_raise_for_status` checks.
    async fn error_from(
        &self,
        response: reqwest::Response,
        url: &Url,
        ctx: Option<Context<'_>>,
    ) -> HubError {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = |name: &str| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let code = text("x-error-code").unwrap_or_default();
        let cap = self.inner.limits.error_text_bytes;
        let mut message = text("x-error-message").unwrap_or_default();
        if message.len() as u64 > cap {
            // Hub text goes into messages, the index and notifications: no more than the cap.
            let mut end = cap as usize;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        if message.is_empty() {
            // The message may be in a JSON body: `{"error": "..."}` and variants. A body over
            // the cap is not read further; the status alone then makes the error.
            if let Ok(Some(body)) = read_capped(response, cap, url.as_str()).await {
                message =
                    error_message_from_body(&String::from_utf8_lossy(&body)).unwrap_or_default();
            }
        }
        let had_token = self.has_token() && self.is_trusted(url);
        let url_text = shown(url);
        if status == 429 {
            return HubError::RateLimited {
                retry_after: retry::retry_after(&headers),
            };
        }
        if status == 416 {
            let total = text("content-range")
                .as_deref()
                .and_then(parse_content_range)
                .and_then(|(_, total)| total);
            return HubError::RangeNotSatisfiable {
                url: url_text,
                total,
            };
        }
        if status == 401 && message.contains("Invalid credentials in Authorization header") {
            return HubError::BadToken;
        }
        // A plain download URL on a host we send no token to (the CDN of a redirect) is a
        // signed link: refused, it has expired (or been revoked), whatever the body says.
        if ctx.is_none() && matches!(status, 401 | 403) && !self.is_trusted(url) {
            return HubError::DownloadUrlRefused {
                status,
                host: url.host_str().unwrap_or_default().to_string(),
            };
        }
        if let Some(ctx) = ctx {
            let repo = ctx.repo.to_string();
            match code.as_str() {
                "RevisionNotFound" => {
                    return HubError::RevisionNotFound {
                        repo,
                        revision: ctx.revision.unwrap_or("main").to_string(),
                    };
                }
                "EntryNotFound" => {
                    return HubError::EntryNotFound {
                        repo,
                        revision: ctx.revision.unwrap_or("main").to_string(),
                        path: ctx.path.unwrap_or_default().to_string(),
                        commit: text("x-repo-commit").filter(|c| is_hex(c, 40)),
                    };
                }
                "GatedRepo" => {
                    return HubError::gated(ctx.repo, &self.inner.endpoint, had_token);
                }
                _ => {}
            }
            if message == "Access to this resource is disabled." {
                return HubError::Forbidden { message };
            }
            // As `huggingface_hub` does: `RepoNotFound` means not found, whatever the status
            // (the Hub answers 401 to anyone without a token, for a missing repo and a private
            // one alike; the hint then says a private repo needs a login).
            if code == "RepoNotFound" {
                return HubError::RepoNotFound {
                    repo,
                    token_sent: had_token,
                };
            }
            if status == 401 {
                return HubError::Unauthorized { repo };
            }
        }
        match status {
            403 => HubError::Forbidden {
                message: if message.is_empty() {
                    format!("access to `{url_text}` was refused")
                } else {
                    message
                },
            },
            _ => HubError::Http {
                status,
                url: url_text,
            },
        }
    }
}

/// `{base}/{prefix}{repo}/resolve/{quote(revision, safe="")}/{quote(path)}`.
pub fn resolve_url(base: &str, repo: &RepoId, revision: &str, path: &str) -> String {
    format!(
        "{}/{}{}/resolve/{}/{}",
        base.trim_end_matches('/'),
        repo.repo_type.url_prefix(),
        repo.id,
        utf8_percent_encode(revision, QUOTE_ALL),
        utf8_percent_encode(path, QUOTE_PATH)
    )
}

/// Whether a request to `url` may carry the token at all: over `https`, or plain `http` to
/// loopback (the token is not sent in the clear across a network).
fn may_carry_token(url: &Url) -> bool {
    url.scheme() == "https"
        || (url.scheme() == "http" && private_class(url) == Some(Private::Loopback))
}

fn same_origin(a: &str, b: &str) -> bool {
    match (Url::parse(a), Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// `url` as errors show it ([`redact_url`]).
fn shown(url: &Url) -> String {
    redact_url(url.as_str())
}

fn parse_url(url: &str) -> Result<Url, HubError> {
    Url::parse(url).map_err(|e| HubError::InvalidResponse {
        url: redact_url(url),
        reason: format!("not a valid URL: {e}"),
    })
}

/// The certificates of a PEM bundle, added to the trusted roots (the built-in ones and the
/// system's store stay trusted). Reading this one file, named by the settings, is the only file
/// I/O of the client.
fn ca_bundle(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, HubError> {
    let invalid = |reason: String| HubError::InvalidCaBundle {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| invalid(format!("not a PEM bundle: {e}")))?;
    if certificates.is_empty() {
        return Err(invalid("it holds no PEM certificate".into()));
    }
    Ok(certificates)
}

/// What TLS said about the server's certificate, when that is why a request failed.
fn certificate_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>()
            && matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_)
            )
        {
            return Some(tls.to_string());
        }
        // An `io::Error` hides the error it wraps from `source()` (the connector nests one in
        // another): look inside it instead.
        next = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

fn network(url: &Url, proxy: Option<&Url>, source: reqwest::Error) -> HubError {
    if let Some(reason) = certificate_failure(&source) {
        return HubError::UntrustedCertificate {
            url: shown(url),
            reason,
        };
    }
    HubError::Network {
        url: shown(url),
        proxy: proxy.map(shown),
        source: source.without_url(),
    }
}

fn location(response: &reqwest::Response, url: &Url) -> Result<Url, HubError> {
    let raw = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| HubError::InvalidResponse {
            url: shown(url),
            reason: format!("redirect {} without a `Location`", response.status()),
        })?;
    url.join(raw).map_err(|e| HubError::InvalidResponse {
        url: shown(url),
        reason: format!("bad `Location` `{}`: {e}", redact_url(raw)),
    })
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Builds metadata from the final HEAD response (or the 3xx to a foreign CDN, `redirect`).
fn metadata_from(
    headers: &HeaderMap,
    redirect: Option<Url>,
    url: &Url,
    over_https: bool,
) -> Result<FileMetadata, HubError> {
    let invalid = |reason: &str| HubError::InvalidResponse {
        url: shown(url),
        reason: reason.to_string(),
    };
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let commit = get("x-repo-commit")
        .map(str::trim)
        .filter(|c| is_hex(c, 40))
        .ok_or_else(|| {
            invalid("no valid `X-Repo-Commit`: this does not look like a Hugging Face Hub endpoint")
        })?
        .to_ascii_lowercase();
    let linked = get("x-linked-etag").map(normalize_etag);
    let etag = linked
        .clone()
        .or_else(|| get("etag").map(normalize_etag))
        .filter(|e| !e.is_empty())
        .ok_or_else(|| invalid("no `ETag`: cannot name the file in the cache"))?;
    if !crate::store::is_valid_etag(&etag) {
        return Err(invalid("the `ETag` cannot name a file in the cache"));
    }
    let size = header_u64(headers, "x-linked-size")
        .or_else(|| {
            redirect
                .is_none()
                .then(|| header_u64(headers, "content-length"))
                .flatten()
        })
        .ok_or_else(|| invalid("no `X-Linked-Size` or `Content-Length`: unknown file size"))?;
    let is_lfs = linked.is_some();
    let sha256 = (is_lfs && is_hex(&etag, 64)).then(|| etag.to_ascii_lowercase());
    let git_sha1 = (!is_lfs && is_hex(&etag, 40)).then(|| etag.to_ascii_lowercase());
    Ok(FileMetadata {
        commit,
        etag,
        size,
        download_url: redirect.unwrap_or_else(|| url.clone()).to_string(),
        is_lfs,
        sha256,
        git_sha1,
        over_https,
        xet: xet::xet_from_headers(headers, url),
    })
}

/// `(Some((first, last)), total)` of a `Content-Range` header; `last` is inclusive.
pub type ContentRangeParts = (Option<(u64, u64)>, Option<u64>);

/// Parses `bytes first-last/total` and `bytes */total` into `(Some((first, last)), total)`.
pub fn parse_content_range(value: &str) -> Option<ContentRangeParts> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let range = match range.trim() {
        "*" => None,
        r => {
            let (a, b) = r.split_once('-')?;
            let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            if b < a {
                return None;
            }
            Some((a, b))
        }
    };
    Some((range, total))
}

/// The `rel="next"` target of a `Link` header, resolved against the request URL.
fn next_link(headers: &HeaderMap, url: &str) -> Option<String> {
    let target = link_with_rel(headers, "next")?;
    let base = Url::parse(url).ok()?;
    base.join(&target).ok().map(|u| u.to_string())
}

/// The target of the `Link` header entry with `rel=<rel>` (as written, not yet resolved).
fn link_with_rel(headers: &HeaderMap, rel: &str) -> Option<String> {
    for value in headers.get_all(header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let Some(rest) = part.trim().strip_prefix('<') else {
                continue;
            };
            let Some((target, params)) = rest.split_once('>') else {
                continue;
            };
            let wanted = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p == format!("rel=\"{rel}\"") || p == format!("rel={rel}")
            });
            if wanted {
                return Some(target.to_string());
            }
        }
    }
    None
}

fn error_message_from_body(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    match value.get("error")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

/// The body of `response`, or `None` as soon as it is known to be longer than `cap` bytes (the
/// rest is not read).
async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
    url: &str,
) -> Result<Option<Vec<u8>>, HubError> {
    if response.content_length().is_some_and(|length| length > cap) {
        return Ok(None);
    }
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = response.chunk().await.map_err(|source| HubError::Network {
        url: redact_url(url),
        proxy: None,
        source: source.without_url(),
    })? {
        if (body.len() + chunk.len()) as u64 > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A JSON answer of at most `cap` bytes.
async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    url: &str,
    cap: u64,
) -> Result<T, HubError> {
    let bytes =
        read_capped(response, cap, url)
            .await?
            .ok_or_else(|| HubError::InvalidResponse {
                url: redact_url(url),
                reason: format!(
                    "the answer is larger than {}, the most accepted for JSON",
                    format_size(cap)
                ),
            })?;
    serde_json::from_slice(&bytes).map_err(|e| HubError::InvalidResponse {
        url: redact_url(url),
        reason: format!("unexpected JSON: {e}"),
    })
}

#[derive(Deserialize)]
struct RawLfs {
    #[serde(alias = "oid")]
    sha256: String,
    size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSibling {
    rfilename: String,
    size: Option<u64>,
    blob_id: Option<String>,
    lfs: Option<RawLfs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRepoInfo {
    id: Option<String>,
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<RawSibling>,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    gated: serde_json::Value,
    last_modified: Option<String>,
}

impl RawRepoInfo {
    fn into_info(self, url: &str) -> Result<RepoInfo, HubError> {
        let sha = self
            .sha
            .filter(|s| is_hex(s, 40))
            .ok_or_else(|| HubError::InvalidResponse {
                url: redact_url(url),
                reason: "no commit `sha` in the repo info".into(),
            })?;
        let gated = match self.gated.as_str() {
            Some("manual") => Gating::Manual,
            Some(_) => Gating::Auto,
            None if self.gated.as_bool() == Some(true) => Gating::Auto,
            None => Gating::Open,
        };
        Ok(RepoInfo {
            id: self.id.unwrap_or_default(),
            sha,
            siblings: self
                .siblings
                .into_iter()
                .map(|s| Sibling {
                    rfilename: s.rfilename,
                    size: s.size,
                    blob_id: s.blob_id,
                    lfs: s.lfs.map(|l| Lfs {
                        sha256: l.sha256,
                        size: l.size,
                    }),
                })
                .collect(),
            private: self.private,
            gated,
            last_modified: self.last_modified,
        })
    }
}

#[derive(Deserialize)]
struct RawTreeEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    oid: String,
    #[serde(default)]
    size: u64,
    path: String,
    lfs: Option<RawLfs>,
    #[serde(default, rename = "xetHash")]
    xet_hash: Option<String>,
}

impl RawTreeEntry {
    fn into_entry(self) -> TreeEntry {
        TreeEntry {
            kind: if self.kind == "directory" {
                EntryKind::Directory
            } else {
                EntryKind::File
            },
            path: self.path,
            size: self.size,
            oid: self.oid,
            lfs: self.lfs.map(|l| Lfs {
                sha256: l.sha256,
                size: l.size,
            }),
            xet_hash: self.xet_hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_encoded_like_huggingface_hub() {
        let repo = RepoId::model("org/tiny").unwrap();
        assert_eq!(
            resolve_url("http://h/", &repo, "refs/pr/1", "data/train file.csv"),
            "http://h/org/tiny/resolve/refs%2Fpr%2F1/data/train%20file.csv"
        );
        let ds = RepoId::new(crate::repo::RepoType::Dataset, "org/ds").unwrap();
        assert_eq!(
            resolve_url("http://h", &ds, "main", "a.bin"),
            "http://h/datasets/org/ds/resolve/main/a.bin"
        );
    }

    #[test]
    fn content_range_and_link_parsing() {
        assert_eq!(
            parse_content_range("bytes 0-0/100"),
            Some((Some((0, 0)), Some(100)))
        );
        assert_eq!(parse_content_range("bytes */7"), Some((None, Some(7))));
        assert_eq!(parse_content_range("bytes 5-1/7"), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LINK,
            HeaderValue::from_static(
                "<http://h/api/models/a/b/tree/main?cursor=x>; rel=\"next\", <http://h/z>; rel=\"prev\"",
            ),
        );
        assert_eq!(
            next_link(&headers, "http://h/api/models/a/b/tree/main").as_deref(),
            Some("http://h/api/models/a/b/tree/main?cursor=x")
        );
    }

    #[test]
    fn etags_are_normalized() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
    }

    #[test]
    fn debug_hides_the_token() {
        let mut settings = Settings::new("/c".into(), "/d".into());
        settings.token = Token::new("hf_supersecret");
        let client = HubClient::new(&settings).unwrap();
        assert!(!format!("{client:?}").contains("hf_supersecret"));
    }
}
