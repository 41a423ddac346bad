//! A client for the local API of another process: `mcache queue` uses it to reach the queue of a
//! running desktop app or `mcache serve`.
//!
//! The server announces itself in the app-data folder it uses: [`DISCOVERY_FILE`] holds a
//! [`Discovery`] record (`{"url", "pid", "secret_file"}`) and the file it names the secret every
//! request carries as a bearer token (see `docs/local-api.md`). [`Client::discover`] reads both,
//! on every OS only after checking that the URL is on this machine (a loopback address or
//! `localhost`, over plain HTTP) and that the process is alive: the secret is never sent to a
//! host a tampered or stale record names. The methods then call the routes of the contract. Bodies come back as the contract's JSON, unchanged, so a caller that prints them
//! (`mcache queue --json`) shows exactly what the server sent.
//!
//! ```no_run
//! # async fn run(data_dir: &std::path::Path) -> Result<(), local_api::client::ClientError> {
//! use local_api::client::Client;
//! use model_cache::engine::JobAction;
//!
//! let client = Client::discover(data_dir)?;
//! let jobs = client.jobs().await?;
//! if let Some(id) = jobs[0]["id"].as_u64() {
//!     client.job_action(id, JobAction::Pause).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! Errors are data: [`ClientError::NoServer`] and [`ClientError::StaleDiscovery`] say that
//! nothing is listening, [`ClientError::NotLoopback`] that the record names another machine, [`ClientError::Unreachable`] that the server went away, and
//! [`ClientError::Api`] carries the server's own error (its stable `kind`, message and hint).
//! What to tell the user is the caller's choice.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use model_cache::engine::JobAction;
use serde_json::Value;
use url::Url;

use crate::discovery::{DISCOVERY_FILE, Discovery};
use crate::error::ApiError;
use crate::secret::ApiSecret;

/// How long one request may take before the server counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an event stream may stay open.
const EVENT_STREAM_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Why the local API could not be found or did not answer as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The folder has no discovery file: no server uses it.
    #[error("No running Model Cache app or `mcache serve` uses `{}`", data_dir.display())]
    NoServer {
        /// The app-data folder.
        data_dir: PathBuf,
    },
    /// The discovery file was left behind by a server that is no longer running.
    #[error("No running Model Cache app or `mcache serve` uses `{}`", data_dir.display())]
    StaleDiscovery {
        /// The app-data folder.
        data_dir: PathBuf,
        /// The discovery file left behind.
        path: PathBuf,
        /// The process id it names.
        pid: u32,
    },
    /// The discovery file exists but could not be read.
    #[error("Cannot read `{}`", path.display())]
    ReadDiscovery {
        /// The discovery file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The discovery record names a URL that is not on this machine (or not plain HTTP): the
    /// secret is not sent there.
    #[error("`{}` names `{url}`, which is not a loopback address of this machine; refusing to send the API secret there", path.display())]
    NotLoopback {
        /// The discovery file.
        path: PathBuf,
        /// The URL it names.
        url: String,
    },
    /// The discovery file is not the record the server writes.
    #[error("`{}` is not a valid discovery record", path.display())]
    InvalidDiscovery {
        /// The discovery file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The secret could not be read.
    #[error("Cannot read the local API secret `{}`", path.display())]
    ReadSecret {
        /// The secret file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be created.
    #[error("Cannot create an HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The request did not get an answer: the server stopped, or is not where the discovery
    /// file says.
    #[error("Cannot reach the local API at `{base_url}`")]
    Unreachable {
        /// The server's base URL.
        base_url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error (`{"error": {"kind", "message", "hint"}}`). A body
    /// without one becomes kind `internal` with a message naming the HTTP status.
    #[error("{}", .0.message)]
    Api(ApiError),
}

/// A client for the local API of the process that owns an app-data folder.
#[derive(Debug, Clone)]
pub struct Client {
    base_url: String,
    secret: ApiSecret,
    http: reqwest::Client,
    mirror_url: Option<String>,
}

impl Client {
    /// Finds the server that uses `data_dir` through its discovery record and reads the secret
    /// it names. Refuses a record whose URL is not on this machine ([`ClientError::NotLoopback`])
    /// or whose process is gone ([`ClientError::StaleDiscovery`]). Nothing is sent yet.
    pub fn discover(data_dir: &Path) -> Result<Client, ClientError> {
        let discovery_path = data_dir.join(DISCOVERY_FILE);
        let text = match std::fs::read_to_string(&discovery_path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(ClientError::NoServer {
                    data_dir: data_dir.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(ClientError::ReadDiscovery {
                    path: discovery_path,
                    source,
                });
            }
        };
        let discovery: Discovery =
            serde_json::from_str(&text).map_err(|source| ClientError::InvalidDiscovery {
                path: discovery_path.clone(),
                source,
            })?;
        if !is_loopback_url(&discovery.url) {
            return Err(ClientError::NotLoopback {
                path: discovery_path,
                url: discovery.url,
            });
        }
        // A server that died without cleaning up leaves its record behind.
        if !process_is_alive(discovery.pid) {
            return Err(ClientError::StaleDiscovery {
                data_dir: data_dir.to_path_buf(),
                path: discovery_path,
                pid: discovery.pid,
            });
        }
        // The secret file is one in this folder, never a path the record makes up.
        let mut name = Path::new(&discovery.secret_file).components();
        let (Some(Component::Normal(name)), None) = (name.next(), name.next()) else {
            return Err(ClientError::InvalidDiscovery {
                path: discovery_path,
                source: serde::de::Error::custom(
                    "`secret_file` must be a file name in the same folder",
                ),
            });
        };
        let token_path = data_dir.join(name);
        let secret = std::fs::read_to_string(&token_path)
            .map_err(|source| ClientError::ReadSecret {
                path: token_path,
                source,
            })?
            .trim()
            .to_string();
        let mut client = Client::new(&discovery.url, ApiSecret::new(secret))?;
        // The mirror is named by the same record; it is trusted on the same terms.
        client.mirror_url = discovery
            .mirror_url
            .filter(|url| is_loopback_url(url))
            .map(|url| url.trim_end_matches('/').to_string());
        Ok(client)
    }

    /// A client for the server at `base_url` (`http://127.0.0.1:PORT`), sending `secret`.
    /// Proxies are never used: the server is on this machine.
    pub fn new(base_url: &str, secret: ApiSecret) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(ClientError::HttpClient)?;
        Ok(Client {
            base_url: base_url.trim_end_matches('/').to_string(),
            secret,
            http,
            mirror_url: None,
        })
    }

    /// The local mirror's base URL (the cache served as a Hub), when the discovery record
    /// names one on this machine.
    pub fn mirror_url(&self) -> Option<&str> {
        self.mirror_url.as_deref()
    }

    /// `GET /api/cache`: every cached repo (`[CachedRepoView]`).
    pub async fn cache_list(&self) -> Result<Value, ClientError> {
        self.call(reqwest::Method::GET, "/api/cache").await
    }

    /// `GET /api/variants?repo=ID&revision=REV`: a repo's variants (`Variants`).
    pub async fn variants(&self, repo: &str, revision: Option<&str>) -> Result<Value, ClientError> {
        let mut query = vec![("repo", repo)];
        if let Some(revision) = revision {
            query.push(("revision", revision));
        }
        let request = self
            .request(reqwest::Method::GET, "/api/variants")
            .query(&query);
        self.send(request).await
    }

    /// `POST /api/pulls`: queues a pull (`Queued`, `{"job_id": N}`).
    pub async fn pull(&self, body: &crate::contract::PullBody) -> Result<Value, ClientError> {
        let request = self.request(reqwest::Method::POST, "/api/pulls").json(body);
        self.send(request).await
    }

    /// `GET /api/events`: the open event stream (`text/event-stream`), for the caller to read.
    /// It stays open for as long as the caller reads it.
    pub async fn events(&self) -> Result<reqwest::Response, ClientError> {
        // The client's timeout covers a whole response; a stream lasts as long as it is read.
        let request = self
            .request(reqwest::Method::GET, "/api/events")
            .timeout(EVENT_STREAM_TIMEOUT);
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                base_url: self.base_url.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Err(ClientError::Api(api_error(status, &body)))
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /api/jobs`: every job of the queue (`[QueueJob]`).
    pub async fn jobs(&self) -> Result<Value, ClientError> {
        self.call(reqwest::Method::GET, "/api/jobs").await
    }

    /// `POST /api/jobs/{id}/{action}`: the job after the action (`QueueJob`).
    pub async fn job_action(&self, id: u64, action: JobAction) -> Result<Value, ClientError> {
        let path = format!("/api/jobs/{id}/{}", job_action_name(action));
        self.call(reqwest::Method::POST, &path).await
    }

    /// `POST /api/jobs/pause-all`: pauses every job; the answer counts the jobs it changed
    /// (`{"affected": N}`).
    pub async fn pause_all(&self) -> Result<Value, ClientError> {
        self.call(reqwest::Method::POST, "/api/jobs/pause-all")
            .await
    }

    /// `POST /api/jobs/resume-all`: resumes every paused job; the answer counts the jobs it
    /// changed (`{"affected": N}`).
    pub async fn resume_all(&self) -> Result<Value, ClientError> {
        self.call(reqwest::Method::POST, "/api/jobs/resume-all")
            .await
    }

    /// Sends one request with the secret; a success's body is returned as it came (`null` when
    /// it is not JSON), an error body becomes [`ClientError::Api`].
    async fn call(&self, method: reqwest::Method, path: &str) -> Result<Value, ClientError> {
        self.send(self.request(method, path)).await
    }

    /// A request to `path` carrying the secret.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.base_url);
        self.http
            .request(method, &url)
            .bearer_auth(self.secret.expose())
    }

    /// Sends a request; see [`Client::call`].
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                base_url: self.base_url.clone(),
                source,
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        Err(ClientError::Api(api_error(status, &body)))
    }
}

/// Whether `url` is plain HTTP to a loopback address or `localhost`: the only places the
/// secret is sent.
fn is_loopback_url(url: &str) -> bool {
    let Ok(url) = Url::parse(url) else {
        return false;
    };
    if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether a process with this pid is running, on every OS (unknown counts as running).
fn process_is_alive(pid: u32) -> bool {
    model_cache::store::atomic::process_is_alive(pid)
}

/// The action's name in the route: the engine's serde name (`pause`, `move-up`).
fn job_action_name(action: JobAction) -> String {
    match serde_json::to_value(action) {
        Ok(Value::String(name)) => name,
        // A unit variant always serialises to a string.
        _ => unreachable!("JobAction serialises to a string"),
    }
}

/// The contract's error body, read leniently: a missing kind is `internal`, a missing message
/// names the HTTP status.
fn api_error(status: StatusCode, body: &Value) -> ApiError {
    let error = &body["error"];
    let kind = error["kind"].as_str().unwrap_or("internal");
    let message = error["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("The local API answered HTTP {status}"));
    let error = ApiError::new(status, kind, message);
    match body["error"]["hint"].as_str() {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_actions_are_named_as_in_the_routes() {
        assert_eq!(job_action_name(JobAction::Pause), "pause");
        assert_eq!(job_action_name(JobAction::Resume), "resume");
        assert_eq!(job_action_name(JobAction::Cancel), "cancel");
        assert_eq!(job_action_name(JobAction::MoveUp), "move-up");
        assert_eq!(job_action_name(JobAction::MoveDown), "move-down");
    }

    #[test]
    fn error_bodies_keep_kind_message_and_hint() {
        let body = serde_json::json!({
            "error": {"kind": "not_found", "message": "No job 7", "hint": "list the jobs"}
        });
        let error = api_error(StatusCode::NOT_FOUND, &body);
        assert_eq!(error.status, StatusCode::NOT_FOUND);
        assert_eq!(error.kind, "not_found");
        assert_eq!(error.message, "No job 7");
        assert_eq!(error.hint.as_deref(), Some("list the jobs"));

        let error = api_error(StatusCode::BAD_GATEWAY, &Value::Null);
        assert_eq!(error.kind, "internal");
        assert_eq!(error.message, "The local API answered HTTP 502 Bad Gateway");
        assert_eq!(error.hint, None);
    }

    #[test]
    fn a_folder_without_a_discovery_file_has_no_server() {
        let dir = tempfile::tempdir().unwrap();
        let error = Client::discover(dir.path()).unwrap_err();
        assert!(
            matches!(&error, ClientError::NoServer { data_dir } if data_dir == dir.path()),
            "{error:?}"
        );
    }

    fn write_record(dir: &Path, record: &str) {
        std::fs::write(dir.join(DISCOVERY_FILE), record).unwrap();
        std::fs::write(dir.join(crate::secret::TOKEN_FILE), "ab".repeat(32)).unwrap();
    }

    /// A pid no process has: a child that has exited (and been reaped).
    fn dead_pid() -> u32 {
        let program = if cfg!(windows) { "cmd" } else { "true" };
        let mut command = std::process::Command::new(program);
        if cfg!(windows) {
            command.args(["/C", "exit"]);
        }
        let mut child = command.spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    /// The pid was only checked on Linux; elsewhere a record left by a dead server was trusted.
    #[test]
    fn a_discovery_file_of_a_dead_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dead_pid();
        write_record(
            dir.path(),
            &format!(r#"{{"url": "http://127.0.0.1:9", "pid": {pid}}}"#),
        );
        let error = Client::discover(dir.path()).unwrap_err();
        assert!(
            matches!(&error, ClientError::StaleDiscovery { pid: p, .. } if *p == pid),
            "{error:?}"
        );
        // Process ids are below 2^22 on Linux.
        write_record(
            dir.path(),
            r#"{"url": "http://127.0.0.1:9", "pid": 4294967295}"#,
        );
        let error = Client::discover(dir.path()).unwrap_err();
        assert!(
            matches!(&error, ClientError::StaleDiscovery { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_record_without_a_pid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_record(dir.path(), r#"{"url": "http://127.0.0.1:9"}"#);
        let error = Client::discover(dir.path()).unwrap_err();
        assert!(
            matches!(&error, ClientError::InvalidDiscovery { .. }),
            "{error:?}"
        );
    }

    /// A record naming another host made `mcache queue` send the secret there.
    #[test]
    fn a_record_naming_another_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pid = std::process::id();
        for url in [
            "http://192.168.1.5:8080",
            "http://evil.example:80",
            "http://localhost.evil.example:80",
            "https://127.0.0.1:443",
            "http://user:pw@127.0.0.1:80",
            "http://0.0.0.0:80",
            "not a url",
        ] {
            write_record(dir.path(), &format!(r#"{{"url": "{url}", "pid": {pid}}}"#));
            let error = Client::discover(dir.path()).unwrap_err();
            assert!(
                matches!(&error, ClientError::NotLoopback { url: u, .. } if u == url),
                "{url}: {error:?}"
            );
            assert!(error.to_string().contains("refusing"), "{error}");
        }
        for url in [
            "http://127.0.0.1:80",
            "http://127.3.0.1:80",
            "http://[::1]:80",
            "http://LOCALHOST:80/",
        ] {
            write_record(dir.path(), &format!(r#"{{"url": "{url}", "pid": {pid}}}"#));
            let client = Client::discover(dir.path()).unwrap();
            assert_eq!(client.base_url(), url.trim_end_matches('/'));
        }
    }

    #[test]
    fn the_secret_file_is_the_one_the_record_names_in_the_same_folder() {
        let dir = tempfile::tempdir().unwrap();
        let pid = std::process::id();
        std::fs::write(dir.path().join("other-token"), "cd".repeat(32)).unwrap();
        write_record(
            dir.path(),
            &format!(
                r#"{{"url": "http://127.0.0.1:9", "pid": {pid}, "secret_file": "other-token"}}"#
            ),
        );
        let client = Client::discover(dir.path()).unwrap();
        assert_eq!(client.secret.expose(), "cd".repeat(32));
        for bad in ["../api-token", "/etc/passwd", "", "."] {
            write_record(
                dir.path(),
                &format!(
                    r#"{{"url": "http://127.0.0.1:9", "pid": {pid}, "secret_file": "{bad}"}}"#
                ),
            );
            let error = Client::discover(dir.path()).unwrap_err();
            assert!(
                matches!(&error, ClientError::InvalidDiscovery { .. }),
                "{bad}: {error:?}"
            );
        }
    }
}
