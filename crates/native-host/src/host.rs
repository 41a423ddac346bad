//! Answers requests by asking the running app's local API, and the loop that serves a browser.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use local_api::client::{Client, ClientError};
use local_api::contract::PullBody;
use model_cache::RepoId;
use model_cache::store::SafeRelPath;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::framing::{self, Incoming, MAX_TO_BROWSER};
use crate::protocol::{self, Failure, Reply, Request};

/// The states after which a job sends no more progress.
const FINAL_STATES: &[&str] = &["done", "failed", "cancelled", "paused"];

/// A host for one app-data folder: the app using it is found again for every request, so an
/// app started (or restarted) while the browser's port is open is reached.
#[derive(Debug, Clone)]
pub struct Host {
    data_dir: PathBuf,
}

impl Host {
    pub fn new(data_dir: PathBuf) -> Self {
        Host { data_dir }
    }

    /// The app-data folder whose app this host asks.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Answers one message (its JSON bytes, unchecked): each answer is sent to `answers` as
    /// JSON of at most [`MAX_TO_BROWSER`] bytes. Most requests have one answer; `progress` has
    /// one per event of its job and a last one when the job ends.
    pub async fn handle(&self, body: &[u8], answers: &mpsc::UnboundedSender<Vec<u8>>) {
        let (id, request) = protocol::parse(body);
        let id = id.as_ref();
        let send = |bytes: Vec<u8>| {
            // The reader is gone only when the browser closed the port; nothing is left to do.
            let _ = answers.send(bytes);
        };
        let outcome = match request {
            Ok(request) => self.answer(request, id, &send).await,
            Err(failure) => Err(failure),
        };
        match outcome {
            Ok(Some(reply)) => send(encode_reply(id, reply)),
            Ok(None) => {}
            Err(failure) => send(protocol::encode_failure(id, &failure)),
        }
    }

    async fn answer(
        &self,
        request: Request,
        id: Option<&Value>,
        send: &(dyn Fn(Vec<u8>) + Sync),
    ) -> Result<Option<Reply>, Failure> {
        // Inputs are checked before the app is looked for: a bad request is the same mistake
        // whether or not the app runs.
        let client = match &request {
            Request::Path { repo, file, .. } | Request::MirrorUrl { repo, file, .. } => {
                check_repo(repo)?;
                check_file(file)?;
                self.client()?
            }
            Request::Variants { repo, .. } | Request::Pull { repo, .. } => {
                check_repo(repo)?;
                self.client()?
            }
            _ => self.client()?,
        };
        let reply = match request {
            Request::List {} => {
                let models = match client.cache_list().await.map_err(failure)? {
                    Value::Array(models) => models,
                    other => vec![other],
                };
                Reply::List {
                    models,
                    truncated: false,
                }
            }
            Request::Variants { repo, revision } => Reply::Variants {
                variants: client
                    .variants(&repo, revision.as_deref())
                    .await
                    .map_err(failure)?,
            },
            Request::Pull {
                repo,
                revision,
                variant,
                files,
            } => {
                let queued = client
                    .pull(&PullBody {
                        repo,
                        revision,
                        variant,
                        files,
                        evict: None,
                    })
                    .await
                    .map_err(failure)?;
                Reply::Pull {
                    job_id: queued["job_id"].as_i64().ok_or_else(|| {
                        Failure::new(
                            "invalid_response",
                            "The app's answer to the pull has no job id",
                        )
                    })?,
                }
            }
            Request::Pause { job_id } | Request::Resume { job_id } => {
                let pause = matches!(request, Request::Pause { .. });
                let action = if pause {
                    model_cache::engine::JobAction::Pause
                } else {
                    model_cache::engine::JobAction::Resume
                };
                let id = u64::try_from(job_id)
                    .map_err(|_| Failure::new(protocol::INVALID_REQUEST, "`job_id` is negative"))?;
                let job = client.job_action(id, action).await.map_err(failure)?;
                if pause {
                    Reply::Pause { job }
                } else {
                    Reply::Resume { job }
                }
            }
            Request::Progress { job_id } => {
                return stream_progress(&client, job_id, id, send).await.map(Some);
            }
            Request::Path {
                repo,
                file,
                revision,
            } => {
                let models = client.cache_list().await.map_err(failure)?;
                let revision = revision.as_deref().unwrap_or("main");
                let snapshot = snapshot_path(&models, &repo, revision).ok_or_else(|| {
                    Failure::new(
                        protocol::NOT_CACHED,
                        format!("`{repo}` at `{revision}` is not in the cache"),
                    )
                    .hint("send a pull request first")
                })?;
                let path = snapshot.join(&file);
                if !path.is_file() {
                    return Err(Failure::new(
                        protocol::NOT_CACHED,
                        format!("`{file}` of `{repo}` at `{revision}` is not in the cache"),
                    )
                    .hint("send a pull request naming the file first"));
                }
                Reply::Path { path }
            }
            Request::MirrorUrl {
                repo,
                file,
                revision,
            } => {
                let mirror = client.mirror_url().ok_or_else(|| {
                    Failure::new(
                        protocol::MIRROR_NOT_RUNNING,
                        "The app runs without its local mirror",
                    )
                    .hint("turn the mirror on in the app's settings")
                })?;
                let revision = revision.as_deref().unwrap_or("main");
                Reply::MirrorUrl {
                    url: mirror_file_url(mirror, &repo, revision, &file),
                }
            }
        };
        Ok(Some(reply))
    }

    fn client(&self) -> Result<Client, Failure> {
        Client::discover(&self.data_dir).map_err(failure)
    }
}

/// The JSON of a reply; a list too long for one message keeps its first models.
fn encode_reply(id: Option<&Value>, reply: Reply) -> Vec<u8> {
    let Reply::List { mut models, .. } = reply else {
        return protocol::encode(id, &reply);
    };
    let mut truncated = false;
    loop {
        let reply = Reply::List { models, truncated };
        let bytes = serde_json::to_vec(&reply).unwrap_or_default();
        // The envelope adds the id; leave room for it.
        let id_len = id.map_or(0, |id| id.to_string().len() + 8);
        let Reply::List {
            models: mut kept, ..
        } = reply
        else {
            unreachable!("built above")
        };
        if bytes.len() + id_len <= MAX_TO_BROWSER || kept.is_empty() {
            return protocol::encode(
                id,
                &Reply::List {
                    models: kept,
                    truncated,
                },
            );
        }
        // Drop about the share of models that is too much, at least one.
        let excess = (bytes.len() + id_len - MAX_TO_BROWSER) as f64 / bytes.len() as f64;
        let drop = ((kept.len() as f64 * excess).ceil() as usize).max(1);
        kept.truncate(kept.len().saturating_sub(drop));
        models = kept;
        truncated = true;
    }
}

/// Streams a job's events until it ends or pauses; the job as it ended is the last answer.
async fn stream_progress(
    client: &Client,
    job_id: i64,
    id: Option<&Value>,
    send: &(dyn Fn(Vec<u8>) + Sync),
) -> Result<Reply, Failure> {
    // Subscribe first, then read the job: an end between the two is not missed.
    let response = client.events().await.map_err(failure)?;
    let job = find_job(client, job_id).await?;
    if is_final(&job) {
        return Ok(Reply::ProgressEnd { job });
    }
    send(protocol::encode(
        id,
        &Reply::Event {
            event: job_event(job),
        },
    ));
    let mut stream = response.bytes_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            Failure::new(
                APP_STOPPED,
                format!("The app's event stream ended: {error}"),
            )
        })?;
        buffer.extend_from_slice(&chunk);
        while let Some(event) = next_sse_data(&mut buffer) {
            let Ok(event) = serde_json::from_slice::<Value>(&event) else {
                continue;
            };
            let of_job = match event["type"].as_str() {
                Some("job") => event["id"].as_i64() == Some(job_id),
                Some("progress") => event["job_id"].as_i64() == Some(job_id),
                _ => false,
            };
            if !of_job {
                continue;
            }
            if event["type"] == "job" && is_final(&event) {
                let mut job = event;
                if let Value::Object(fields) = &mut job {
                    fields.remove("type");
                }
                return Ok(Reply::ProgressEnd { job });
            }
            send(protocol::encode(id, &Reply::Event { event }));
        }
    }
    Err(Failure::new(APP_STOPPED, "The app's event stream ended"))
}

/// The app stopped while a `progress` request streamed.
const APP_STOPPED: &str = "app_stopped";

async fn find_job(client: &Client, job_id: i64) -> Result<Value, Failure> {
    let jobs = client.jobs().await.map_err(failure)?;
    jobs.as_array()
        .and_then(|jobs| jobs.iter().find(|job| job["id"].as_i64() == Some(job_id)))
        .cloned()
        .ok_or_else(|| {
            Failure::new("no_such_job", format!("The app has no job {job_id}"))
                .hint("send a pull request first; its answer names the job")
        })
}

fn is_final(job: &Value) -> bool {
    job["state"]
        .as_str()
        .is_some_and(|state| FINAL_STATES.contains(&state))
}

/// A job as the event the app sends when it changes (`{"type": "job", …}`).
fn job_event(job: Value) -> Value {
    match job {
        Value::Object(mut fields) => {
            fields.insert("type".into(), Value::from("job"));
            Value::Object(fields)
        }
        other => other,
    }
}

/// Takes the next whole event's `data` out of a server-sent-events buffer.
fn next_sse_data(buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        let end = buffer.windows(2).position(|w| w == b"\n\n")?;
        let event: Vec<u8> = buffer.drain(..end + 2).collect();
        let text = String::from_utf8_lossy(&event);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|data| data.strip_prefix(' ').unwrap_or(data))
            .collect();
        if !data.is_empty() {
            return Some(data.join("\n").into_bytes());
        }
    }
}

/// The snapshot folder of a cached revision: a ref's name, a commit or a commit's prefix.
fn snapshot_path(models: &Value, repo: &str, revision: &str) -> Option<PathBuf> {
    let model = models
        .as_array()?
        .iter()
        .find(|model| model["repo"].as_str() == Some(repo))?;
    let revisions = model["revisions"].as_array()?;
    let named = |r: &&Value| {
        r["refs"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|name| name.as_str() == Some(revision)))
    };
    let by_commit = |r: &&Value| {
        r["commit"]
            .as_str()
            .is_some_and(|commit| revision.len() >= 7 && commit.starts_with(revision))
    };
    let found = revisions
        .iter()
        .find(named)
        .or_else(|| revisions.iter().find(by_commit))?;
    found["snapshot_path"].as_str().map(PathBuf::from)
}

/// `{mirror}/{repo}/resolve/{revision}/{file}`, each part escaped as the Hub's URLs are.
fn mirror_file_url(mirror: &str, repo: &str, revision: &str, file: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let file: Vec<String> = file
        .split('/')
        .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
        .collect();
    format!(
        "{}/{repo}/resolve/{}/{}",
        mirror.trim_end_matches('/'),
        utf8_percent_encode(revision, SEGMENT),
        file.join("/")
    )
}

fn check_repo(repo: &str) -> Result<(), Failure> {
    repo.parse::<RepoId>().map(|_| ()).map_err(|error| {
        Failure::new(protocol::INVALID_REQUEST, format!("`repo`: {error}"))
            .hint("name a repo as `org/name`")
    })
}

fn check_file(file: &str) -> Result<(), Failure> {
    SafeRelPath::new(file)
        .map(|_| ())
        .map_err(|error| Failure::new(protocol::INVALID_REQUEST, format!("`file`: {error}")))
}

/// A client error as an answer: nothing listening is `app_not_running`; the API's own errors
/// keep their kind, message and hint.
fn failure(error: ClientError) -> Failure {
    match error {
        ClientError::NoServer { .. }
        | ClientError::StaleDiscovery { .. }
        | ClientError::Unreachable { .. } => {
            Failure::new(protocol::APP_NOT_RUNNING, "Model Cache is not running")
                .hint("start the Model Cache app (or `mcache serve`)")
        }
        ClientError::Api(api) => Failure {
            error: api.kind.to_string(),
            message: api.message.clone(),
            hint: api.hint.clone(),
        },
        other => Failure::new(protocol::DISCOVERY_FAILED, other.to_string()),
    }
}

/// Serves a browser on `input` and `output` until the browser closes the port: every request
/// is answered in its own task (a `progress` stream does not hold up a `pause`), and the host
/// returns once the input has ended and every answer is written. A message that cannot be read
/// gets a failure as its answer; the host goes on with the next one.
pub async fn serve<R, W>(host: Host, mut input: R, mut output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (answers, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(body) = outgoing.recv().await {
            framing::write_message(&mut output, &body).await?;
        }
        std::io::Result::Ok(())
    });
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        match framing::read_message(&mut input).await? {
            Incoming::Message(body) => {
                let host = host.clone();
                let answers = answers.clone();
                tasks.spawn(async move { host.handle(&body, &answers).await });
            }
            Incoming::TooLarge { length } => {
                let _ = answers.send(protocol::encode_failure(None, &Failure::too_large(length)));
            }
            Incoming::Truncated { expected, received } => {
                let _ = answers.send(protocol::encode_failure(
                    None,
                    &Failure::truncated(expected, received),
                ));
                break;
            }
            Incoming::End => break,
        }
    }
    while tasks.join_next().await.is_some() {}
    drop(answers);
    writer.await.map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_sent_events_are_split_into_their_data() {
        let mut buffer = b"data: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\"".to_vec();
        assert_eq!(next_sse_data(&mut buffer).unwrap(), br#"{"a":1}"#);
        assert_eq!(next_sse_data(&mut buffer), None);
        buffer.extend_from_slice(b":2}\n\n");
        assert_eq!(next_sse_data(&mut buffer).unwrap(), br#"{"b":2}"#);
    }

    #[test]
    fn a_revision_is_found_by_ref_or_commit() {
        let models = json!([{"repo": "org/m", "revisions": [
            {"commit": "abcdef0123", "refs": ["main"], "snapshot_path": "/c/s/abcdef0123"},
            {"commit": "9999999999", "refs": [], "snapshot_path": "/c/s/9999999999"}
        ]}]);
        assert_eq!(
            snapshot_path(&models, "org/m", "main"),
            Some(PathBuf::from("/c/s/abcdef0123"))
        );
        assert_eq!(
            snapshot_path(&models, "org/m", "9999999"),
            Some(PathBuf::from("/c/s/9999999999"))
        );
        assert_eq!(snapshot_path(&models, "org/m", "999"), None);
        assert_eq!(snapshot_path(&models, "org/other", "main"), None);
    }

    #[test]
    fn mirror_urls_escape_each_part() {
        assert_eq!(
            mirror_file_url(
                "http://127.0.0.1:7870/",
                "org/m",
                "refs/pr/1",
                "dir/a b.gguf"
            ),
            "http://127.0.0.1:7870/org/m/resolve/refs%2Fpr%2F1/dir/a%20b.gguf"
        );
    }

    #[test]
    fn a_long_list_is_cut_to_fit_one_message() {
        let model = json!({"repo": "org/m", "path": "x".repeat(10_000)});
        let models = vec![model; 300];
        let bytes = encode_reply(
            Some(&json!(1)),
            Reply::List {
                models,
                truncated: false,
            },
        );
        assert!(bytes.len() <= MAX_TO_BROWSER);
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["truncated"], true);
        assert_eq!(answer["id"], 1);
        let kept = answer["models"].as_array().unwrap().len();
        assert!((50..300).contains(&kept), "{kept}");
    }

    #[tokio::test]
    async fn without_an_app_every_request_is_answered_app_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path().to_path_buf());
        let (sender, mut receiver) = mpsc::unbounded_channel();
        host.handle(br#"{"id": 1, "type": "list"}"#, &sender).await;
        let answer: Value = serde_json::from_slice(&receiver.recv().await.unwrap()).unwrap();
        assert_eq!(answer["id"], 1);
        assert_eq!(answer["error"], "app_not_running");
        // A bad input is refused as such, app or not.
        host.handle(
            br#"{"type": "path", "repo": "org/m", "file": "../x"}"#,
            &sender,
        )
        .await;
        let answer: Value = serde_json::from_slice(&receiver.recv().await.unwrap()).unwrap();
        assert_eq!(answer["error"], "invalid_request");
    }
}
