//! Secrets and trust boundaries of the Hub client (issue 13): who receives the token when the
//! endpoint fails over to mirrors, caps on what is read from an answer, and URLs in errors
//! without their signed query strings. Hermetic: the hub emulator and tiny servers on 127.0.0.1.

use std::sync::{Arc, Mutex};

use hub_emulator::auth::DEMO_TOKEN;
use hub_emulator::{Emulator, EmulatorConfig, Listener};
use model_cache::error::ErrorKind;
use model_cache::hub::retry::RetryPolicy;
use model_cache::hub::{HubClient, HubError};
use model_cache::settings::ResponseLimits;
use model_cache::{Mirror, RepoId, Settings, Token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GGUF_REPO: &str = "demo/tiny-gguf";

fn settings(endpoint: &str, token: Option<&str>) -> Settings {
    let mut settings = Settings::new("/nonexistent/hub".into(), "/nonexistent/data".into());
    settings.endpoint = endpoint.to_string();
    settings.token = token.and_then(Token::new);
    settings.retry = RetryPolicy::immediate();
    settings
}

fn repo(id: &str) -> RepoId {
    RepoId::model(id).unwrap()
}

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::demo_with_big_size(1 << 20))
        .await
        .unwrap()
}

/// An endpoint nobody listens on: every request fails to connect, so the client fails over.
fn unreachable_endpoint() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    url
}

/// Lists, resolves and reads a file of the demo repo: every kind of request failover makes.
async fn use_the_hub(hub: &HubClient) {
    let repo = repo(GGUF_REPO);
    hub.repo_info(&repo, None).await.unwrap();
    hub.list_tree(&repo, "main", None, true).await.unwrap();
    let meta = hub
        .file_metadata(&repo, "main", "config.json")
        .await
        .unwrap();
    hub.get_range(&meta.download_url, Some(0..4), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_mirror_not_marked_never_receives_the_token_when_the_endpoint_is_down() {
    let mirror = emulator().await;
    let mut s = settings(&unreachable_endpoint(), Some(DEMO_TOKEN));
    s.mirrors = vec![Mirror::new(mirror.url())];
    let hub = HubClient::new(&s).unwrap();
    use_the_hub(&hub).await;
    let requests = mirror.requests();
    assert!(
        requests.iter().any(|r| r.listener == Listener::Hub),
        "the mirror answered"
    );
    assert!(
        requests.iter().all(|r| r.authorization.is_none()),
        "{requests:?}"
    );
}

#[tokio::test]
async fn a_mirror_marked_to_receive_the_token_on_loopback_receives_it() {
    let mirror = emulator().await;
    let mut s = settings(&unreachable_endpoint(), Some(DEMO_TOKEN));
    s.mirrors = vec![Mirror::sent_token(mirror.url())];
    let hub = HubClient::new(&s).unwrap();
    use_the_hub(&hub).await;
    let requests = mirror.requests();
    let to_hub: Vec<_> = requests
        .iter()
        .filter(|r| r.listener == Listener::Hub)
        .collect();
    assert!(!to_hub.is_empty());
    assert!(
        to_hub.iter().all(|r| r.authorization.is_some()),
        "{to_hub:?}"
    );
    assert!(
        !mirror.log().cdn_saw_authorization(),
        "never to its CDN though"
    );
}

#[test]
fn earlier_saved_mirror_lists_read_as_mirrors_without_the_token() {
    let old: Vec<Mirror> = serde_json::from_str(r#"["https://mirror.example"]"#).unwrap();
    assert_eq!(old, [Mirror::new("https://mirror.example")]);
    let new: Vec<Mirror> = serde_json::from_str(
        r#"[{"url": "https://a.example", "send_token": true}, {"url": "https://b.example"}]"#,
    )
    .unwrap();
    assert_eq!(
        new,
        [
            Mirror::sent_token("https://a.example"),
            Mirror::new("https://b.example")
        ]
    );
}

/// A loopback server answering every request with `answer` and closing the connection; it
/// keeps each request's head.
struct TinyServer {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl TinyServer {
    async fn start(answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> TinyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&heads);
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                let answer = Arc::clone(&answer);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    log.lock().unwrap().push(head);
                    // The client may hang up early (a body over its cap): that is fine.
                    let _ = stream.write_all(&answer(&path)).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        TinyServer { url, heads }
    }

    fn requests(&self) -> usize {
        self.heads.lock().unwrap().len()
    }
}

fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn limits(json_bytes: u64, error_text_bytes: u64, tree_entries: usize) -> ResponseLimits {
    ResponseLimits {
        json_bytes,
        error_text_bytes,
        tree_entries,
    }
}

#[tokio::test]
async fn a_json_answer_over_its_cap_is_refused_naming_the_cap() {
    let emulator = emulator().await;
    let mut s = settings(&emulator.url(), None);
    s.response_limits = limits(512, 64 * 1024, 1_000_000);
    let hub = HubClient::new(&s).unwrap();
    let error = hub.repo_info(&repo(GGUF_REPO), None).await.unwrap_err();
    assert!(
        matches!(&error, HubError::InvalidResponse { reason, .. } if reason.contains("512 B")),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::InvalidResponse);

    // Without a `Content-Length` too (chunked): reading stops at the cap.
    let big = format!("[{}]", vec!["{}"; 100_000].join(","));
    let server = TinyServer::start(move |_| {
        let mut out =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        out.extend_from_slice(format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len()).as_bytes());
        out
    })
    .await;
    let mut s = settings(&server.url, None);
    s.response_limits = limits(1024, 64 * 1024, 1_000_000);
    let error = HubClient::new(&s)
        .unwrap()
        .list_tree(&repo(GGUF_REPO), "main", None, true)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, HubError::InvalidResponse { reason, .. } if reason.contains("1.00 KiB")),
        "{error}"
    );
}

#[tokio::test]
async fn a_tree_listing_over_its_cap_is_refused_across_pages() {
    let emulator = emulator().await;
    let mut s = settings(&emulator.url(), None);
    let all = HubClient::new(&s)
        .unwrap()
        .list_tree(&repo(GGUF_REPO), "main", None, true)
        .await
        .unwrap()
        .len();
    assert!(all > 2, "{all}");
    s.response_limits = limits(64 << 20, 64 * 1024, all - 1);
    let error = HubClient::new(&s)
        .unwrap()
        .list_tree(&repo(GGUF_REPO), "main", None, true)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, HubError::InvalidResponse { reason, .. } if reason.contains(&format!("more than {}", all - 1))),
        "{error}"
    );
    s.response_limits = limits(64 << 20, 64 * 1024, all);
    let listed = HubClient::new(&s)
        .unwrap()
        .list_tree(&repo(GGUF_REPO), "main", None, true)
        .await
        .unwrap();
    assert_eq!(listed.len(), all);
}

#[tokio::test]
async fn an_error_body_is_read_only_up_to_its_cap() {
    // 256 KiB of message in a JSON error body, which the client would otherwise carry whole
    // into the error (and from there into the index, events and notifications).
    let message = "x".repeat(256 * 1024);
    let body = format!(r#"{{"error": "{message}"}}"#);
    let server = TinyServer::start(move |_| response("403 Forbidden", "", body.as_bytes())).await;
    let hub = HubClient::new(&settings(&server.url, None)).unwrap();
    let error = hub.repo_info(&repo(GGUF_REPO), None).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Forbidden, "{error}");
    let text = error.to_string();
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());

    // Within the cap, the message is kept.
    let server = TinyServer::start(|_| {
        response(
            "403 Forbidden",
            "",
            br#"{"error": "Access to this resource is disabled."}"#,
        )
    })
    .await;
    let error = HubClient::new(&settings(&server.url, None))
        .unwrap()
        .repo_info(&repo(GGUF_REPO), None)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Access to this resource is disabled."),
        "{error}"
    );
}

const SIGNATURE: &str = "X-Amz-Signature=0123456789abcdef";

/// Every way an error may carry the URL it was about.
fn assert_no_signature(error: &HubError) {
    let shown = format!("{error} | {error:?}");
    assert!(!shown.contains("X-Amz"), "{shown}");
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
    assert!(!shown.contains("user:pass"), "{shown}");
}

#[tokio::test]
async fn errors_about_a_signed_url_never_contain_its_query() {
    let server = TinyServer::start(|path| {
        if path.starts_with("/500") {
            response("500 Internal Server Error", "", b"")
        } else if path.starts_with("/416") {
            response(
                "416 Range Not Satisfiable",
                "Content-Range: bytes */10\r\n",
                b"",
            )
        } else if path.starts_with("/403") {
            response("403 Forbidden", "", b"")
        } else if path.starts_with("/loop") {
            response(
                "302 Found",
                &format!("Location: /loop?{SIGNATURE}\r\n"),
                b"",
            )
        } else {
            response("404 Not Found", "", b"")
        }
    })
    .await;
    let base = server.url.replace("http://", "http://user:pass@");
    let hub = HubClient::new(&settings(&unreachable_endpoint(), None)).unwrap();
    for path in ["500", "416", "403", "404", "loop"] {
        let url = format!("{base}/{path}/blob?{SIGNATURE}&X-Amz-Expires=3600");
        let error = hub.get_range(&url, Some(0..4), None).await.unwrap_err();
        assert!(error.to_string().contains("127.0.0.1"), "{error}");
        assert_no_signature(&error);
    }
    // Nobody listening: a network error, retried and exhausted.
    let url = format!("{}/blob?{SIGNATURE}", unreachable_endpoint());
    let error = hub.get_range(&url, None, None).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Network, "{error}");
    assert_no_signature(&error);
    assert!(server.requests() > 0);
}
