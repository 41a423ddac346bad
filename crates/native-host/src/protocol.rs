//! The messages: what an extension may ask ([`Request`]) and what the host answers ([`Reply`]
//! or [`Failure`]), each echoing the request's `id` when it had one.
//!
//! **API Boundary:** these shapes are what extensions are written against (see
//! `docs/native-messaging.md`); fields are added, never renamed.
//!
//! ```text
//! → {"id": 1, "type": "list"}
//! ← {"id": 1, "type": "list", "models": [CachedRepoView…], "truncated": false}
//! → {"id": 2, "type": "pull", "repo": "org/name", "variant": "Q4_K_M"}
//! ← {"id": 2, "type": "pull", "job_id": 7}
//! → {"id": 3, "type": "progress", "job_id": 7}
//! ← {"id": 3, "type": "event", "event": {"type": "progress", …}}   (repeated)
//! ← {"id": 3, "type": "progress_end", "job": Job}
//! ← {"id": 4, "error": "app_not_running", "message": "…"}
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::framing::MAX_TO_BROWSER;

/// One request of an extension.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The cached models and their revisions.
    List {},
    /// A repo's variants (quantizations, formats) with sizes and fit.
    Variants {
        repo: String,
        revision: Option<String>,
    },
    /// Queue a pull in the app: a variant, files, or the recommended variant.
    Pull {
        repo: String,
        revision: Option<String>,
        variant: Option<String>,
        files: Option<Vec<String>>,
    },
    Pause {
        job_id: i64,
    },
    Resume {
        job_id: i64,
    },
    /// The job's events until it is done, failed, cancelled or paused.
    Progress {
        job_id: i64,
    },
    /// Where a cached file is on this machine.
    Path {
        repo: String,
        file: String,
        revision: Option<String>,
    },
    /// The local mirror's URL of a file (the bytes are fetched from there, never through the
    /// pipe).
    MirrorUrl {
        repo: String,
        file: String,
        revision: Option<String>,
    },
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    List {
        models: Vec<Value>,
        /// The list was cut to fit one message; the models kept are the first ones.
        truncated: bool,
    },
    Variants {
        variants: Value,
    },
    Pull {
        job_id: i64,
    },
    Pause {
        job: Value,
    },
    Resume {
        job: Value,
    },
    /// One event of a job (`ContractEvent`: `job` or `progress`), while a `progress` request
    /// streams.
    Event {
        event: Value,
    },
    /// The last answer to a `progress` request: the job as it ended (or paused).
    ProgressEnd {
        job: Value,
    },
    Path {
        path: PathBuf,
    },
    MirrorUrl {
        url: String,
    },
}

/// A failed request: `error` is a stable snake_case kind. The host's own kinds are the
/// constants of this module; an error of the local API keeps its kind (`repo_not_found`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub error: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// No app or `mcache serve` is running for the app-data folder.
pub const APP_NOT_RUNNING: &str = "app_not_running";
/// The message is not JSON.
pub const INVALID_JSON: &str = "invalid_json";
/// The message is JSON but not a request this host knows.
pub const INVALID_REQUEST: &str = "invalid_request";
/// The message was longer than the host reads.
pub const MESSAGE_TOO_LARGE: &str = "message_too_large";
/// The input ended inside a message.
pub const TRUNCATED_MESSAGE: &str = "truncated_message";
/// The answer would be longer than the browser accepts.
pub const RESPONSE_TOO_LARGE: &str = "response_too_large";
/// The file (or the repo, or the revision) is not in the cache.
pub const NOT_CACHED: &str = "not_cached";
/// The app runs without its local mirror.
pub const MIRROR_NOT_RUNNING: &str = "mirror_not_running";
/// The app's discovery record could not be trusted or read.
pub const DISCOVERY_FAILED: &str = "discovery_failed";

impl Failure {
    pub fn new(error: &str, message: impl Into<String>) -> Self {
        Failure {
            error: error.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The answer to a message longer than the host reads.
    pub fn too_large(length: u64) -> Self {
        Failure::new(
            MESSAGE_TOO_LARGE,
            format!(
                "The message is {length} bytes, over the host's limit of {} bytes",
                crate::framing::MAX_FROM_BROWSER
            ),
        )
    }

    /// The answer to a message cut short.
    pub fn truncated(expected: u64, received: u64) -> Self {
        Failure::new(
            TRUNCATED_MESSAGE,
            format!("The input ended after {received} of {expected} bytes of a message"),
        )
    }
}

/// An answer on the wire: the request's `id`, then the reply's or failure's fields.
#[derive(Serialize)]
struct Envelope<'a, T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    #[serde(flatten)]
    body: &'a T,
}

/// The JSON of an answer, at most [`MAX_TO_BROWSER`] bytes: a longer one becomes a
/// [`RESPONSE_TOO_LARGE`] failure (`List` is cut to fit before it gets there).
pub fn encode<T: Serialize>(id: Option<&Value>, body: &T) -> Vec<u8> {
    match serde_json::to_vec(&Envelope { id, body }) {
        Ok(bytes) if bytes.len() <= MAX_TO_BROWSER => bytes,
        Ok(bytes) => encode_failure(
            id,
            &Failure::new(
                RESPONSE_TOO_LARGE,
                format!(
                    "The answer is {} bytes, over the browser's limit of {MAX_TO_BROWSER} bytes",
                    bytes.len()
                ),
            ),
        ),
        Err(error) => encode_failure(
            id,
            &Failure::new(
                RESPONSE_TOO_LARGE,
                format!("The answer could not be written: {error}"),
            ),
        ),
    }
}

/// The JSON of a failure (always small).
pub fn encode_failure(id: Option<&Value>, failure: &Failure) -> Vec<u8> {
    // A failure's fields are strings: it always serialises. An `id` too long to echo is dropped.
    let bytes = serde_json::to_vec(&Envelope { id, body: failure }).unwrap_or_default();
    if bytes.len() <= MAX_TO_BROWSER {
        return bytes;
    }
    serde_json::to_vec(&Envelope {
        id: None,
        body: failure,
    })
    .unwrap_or_default()
}

/// A message read from the browser: its `id` (any JSON value, echoed back) and the request,
/// or the failure to answer.
pub fn parse(body: &[u8]) -> (Option<Value>, Result<Request, Failure>) {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => {
            return (
                None,
                Err(Failure::new(
                    INVALID_JSON,
                    format!("The message is not UTF-8 JSON: {error}"),
                )),
            );
        }
    };
    let Value::Object(mut object) = value else {
        return (
            None,
            Err(Failure::new(
                INVALID_REQUEST,
                "The message is not a JSON object",
            )),
        );
    };
    let id = object.remove("id");
    let request = serde_json::from_value::<Request>(Value::Object(object)).map_err(|error| {
        Failure::new(INVALID_REQUEST, format!("The request is not valid: {error}")).hint(
            "send {\"type\": ...} with one of list, variants, pull, pause, resume, progress, path, mirror_url",
        )
    });
    (id, request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_parse_with_their_id() {
        let (id, request) = parse(br#"{"id": "a", "type": "variants", "repo": "org/name"}"#);
        assert_eq!(id, Some(json!("a")));
        assert_eq!(
            request.unwrap(),
            Request::Variants {
                repo: "org/name".into(),
                revision: None
            }
        );
        let (id, request) = parse(br#"{"type": "pause", "job_id": 4}"#);
        assert_eq!(id, None);
        assert_eq!(request.unwrap(), Request::Pause { job_id: 4 });
    }

    #[test]
    fn bad_messages_fail_with_a_kind() {
        assert_eq!(parse(b"{not json").1.unwrap_err().error, INVALID_JSON);
        assert_eq!(parse(b"").1.unwrap_err().error, INVALID_JSON);
        assert_eq!(parse(b"[1]").1.unwrap_err().error, INVALID_REQUEST);
        let (id, request) = parse(br#"{"id": 9, "type": "format_disk"}"#);
        assert_eq!(id, Some(json!(9)));
        assert_eq!(request.unwrap_err().error, INVALID_REQUEST);
        let (_, request) = parse(br#"{"type": "list", "extra": 1}"#);
        assert_eq!(request.unwrap_err().error, INVALID_REQUEST);
        let (_, request) = parse(br#"{"type": "pause"}"#);
        assert!(request.unwrap_err().message.contains("job_id"));
    }

    #[test]
    fn answers_echo_the_id_and_stay_under_the_limit() {
        let bytes = encode(Some(&json!(3)), &Reply::Pull { job_id: 7 });
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).unwrap(),
            json!({"id": 3, "type": "pull", "job_id": 7})
        );
        let bytes = encode_failure(None, &Failure::new(APP_NOT_RUNNING, "No app"));
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).unwrap(),
            json!({"error": "app_not_running", "message": "No app"})
        );
        let huge = Reply::Variants {
            variants: json!("x".repeat(MAX_TO_BROWSER)),
        };
        let bytes = encode(Some(&json!(5)), &huge);
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["error"], RESPONSE_TOO_LARGE);
        assert!(bytes.len() <= MAX_TO_BROWSER);
    }
}
