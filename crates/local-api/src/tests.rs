//! Tests of the server machinery (guard, static UI, events, lifecycle) with a minimal in-test API;
//! the routes over the real engine are tested in `tests/`.

use std::time::Duration;

use axum::Json;
use axum::routing::get;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

use super::*;

async fn start_minimal(data_dir: &Path) -> (ApiServer, broadcast::Sender<serde_json::Value>) {
    let (tx, _) = broadcast::channel(16);
    let events = tx.clone();
    let server = start(ApiConfig::new(data_dir.to_path_buf()), move |shutdown| {
        Router::new()
            .route(
                "/health",
                get(|| async { Json(serde_json::json!({"status": "ok"})) }),
            )
            .route(
                "/events",
                get(move || {
                    let rx = events.subscribe();
                    let shutdown = shutdown.clone();
                    async move { events::stream(rx, shutdown) }
                }),
            )
    })
    .await
    .unwrap();
    (server, tx)
}

/// Sends a hand-written HTTP/1.1 request, so headers such as `Host` are exactly what we say.
async fn raw(server: &ApiServer, head: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn kind_of(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    json["error"]["kind"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn api_requires_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _tx) = start_minimal(dir.path()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/health", server.url());

    let none = client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(kind_of(&none.text().await.unwrap()), "unauthorized");

    let wrong = client
        .get(&url)
        .bearer_auth("0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let good = client
        .get(&url)
        .bearer_auth(server.token())
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    assert_eq!(good.headers()["cache-control"], "no-store");
    assert_eq!(
        good.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );

    // Unknown API routes are behind the secret too, then a JSON 404.
    let unknown = client
        .get(format!("{}/api/nope", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
    let unknown = client
        .get(format!("{}/api/nope", server.url()))
        .bearer_auth(server.token())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(kind_of(&unknown.text().await.unwrap()), "not_found");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn foreign_origin_and_host_are_forbidden_even_with_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _tx) = start_minimal(dir.path()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/health", server.url());

    let foreign = client
        .get(&url)
        .bearer_auth(server.token())
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert_eq!(kind_of(&foreign.text().await.unwrap()), "forbidden_origin");

    let own = client
        .get(&url)
        .bearer_auth(server.token())
        .header("Origin", server.url())
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);

    let port = server.local_addr().port();
    let token = server.token().to_string();
    let (status, text) = raw(
        &server,
        &format!("GET /api/health HTTP/1.1\r\nHost: evil.example:{port}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("forbidden_host"), "{text}");
    // The page itself is also refused to a rebound name.
    let (status, _) = raw(
        &server,
        &format!("GET / HTTP/1.1\r\nHost: evil.example:{port}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = raw(
        &server,
        &format!("GET /api/health HTTP/1.1\r\nHost: localhost:{port}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn ui_is_served_without_the_secret_with_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _tx) = start_minimal(dir.path()).await;
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{}/", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<script type=\"module\" src=\"app.js\">")
    );
    let script = client
        .get(format!("{}/api.js", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    for hidden in ["api-token", "api.json", "..%2fapi-token"] {
        let resp = client
            .get(format!("{}/{hidden}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{hidden}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn non_loopback_bind_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ApiConfig::new(dir.path().to_path_buf());
    config.bind = "0.0.0.0:0".parse().unwrap();
    let err = start(config.clone(), |_| Router::new()).await.unwrap_err();
    assert!(matches!(err, ServeError::NonLoopback { .. }), "{err}");
    assert!(err.to_string().contains("hint:"));
    // Nothing was created for a refused start.
    assert!(!dir.path().join(DISCOVERY_FILE).exists());

    config.allow_non_loopback = true;
    let server = start(config, |_| Router::new()).await.unwrap();
    assert!(server.url().starts_with("http://127.0.0.1:"));
    server.shutdown().await.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn secret_file_is_owner_only_and_reused_and_discovery_is_written() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (first, _tx) = start_minimal(dir.path()).await;
    let token = first.token().to_string();
    let path = dir.path().join(secret::TOKEN_FILE);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), token);
    let discovery: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(DISCOVERY_FILE)).unwrap())
            .unwrap();
    assert_eq!(discovery["url"], first.url());
    assert_eq!(discovery["pid"], std::process::id());
    assert!(first.ui_url().ends_with(&format!("/#token={token}")));
    first.shutdown().await.unwrap();
    assert!(!dir.path().join(DISCOVERY_FILE).exists());

    let (second, _tx) = start_minimal(dir.path()).await;
    assert_eq!(second.token(), token);
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn events_stream_as_sse_and_end_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (server, tx) = start_minimal(dir.path()).await;
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/api/events", server.url()))
        .bearer_auth(server.token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // The handler subscribed before the response head was sent, so this event is not missed.
    tx.send(serde_json::json!({"type": "progress", "job_id": 1, "done": 5}))
        .unwrap();
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .expect("a data line");
    let event: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
    assert_eq!(event["type"], "progress");
    assert_eq!(event["done"], 5);

    // Shutdown completes although a stream is open, and the stream ends.
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown does not hang on open streams")
        .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(rest.is_ok(), "the event stream ended");
}
