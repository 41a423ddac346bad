//! Tests of the server machinery (guard, static UI, events, lifecycle) with a minimal in-test API;
//! the routes over the real engine are tested in `tests/`.

use std::path::Path;
use std::time::Duration;

use axum::Json;
use axum::routing::get;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

use super::*;

async fn start_minimal(data_dir: &Path) -> (ApiServer, broadcast::Sender<serde_json::Value>) {
    start_minimal_with(ApiConfig::new(data_dir.to_path_buf()))
        .await
        .unwrap()
}

async fn start_minimal_with(
    config: ApiConfig,
) -> Result<(ApiServer, broadcast::Sender<serde_json::Value>), ServeError> {
    let (tx, _) = broadcast::channel(16);
    let events = tx.clone();
    let server = start(config, move |streams| {
        Router::new()
            .route(
                "/health",
                get(|| async { Json(serde_json::json!({"status": "ok"})) }),
            )
            .route(
                "/events",
                get(move || {
                    let rx = events.subscribe();
                    let streams = streams.clone();
                    async move { streams.open(rx) }
                }),
            )
    })
    .await?;
    Ok((server, tx))
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
async fn secret_file_is_owner_only_and_named_in_the_discovery_record() {
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
    assert_eq!(
        discovery,
        serde_json::json!({
            "url": first.url(),
            "pid": std::process::id(),
            "secret_file": secret::TOKEN_FILE,
        })
    );
    assert!(first.ui_url().ends_with(&format!("/#token={token}")));
    first.shutdown().await.unwrap();
    assert!(!dir.path().join(DISCOVERY_FILE).exists());
}

/// The secret was kept in `api-token` for ever: one that leaked kept working after restarts.
#[tokio::test]
async fn a_restart_rotates_the_secret_and_the_old_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _tx) = start_minimal(dir.path()).await;
    let old = first.token().to_string();
    first.shutdown().await.unwrap();

    let (second, _tx) = start_minimal(dir.path()).await;
    assert_ne!(second.token(), old);
    let client = reqwest::Client::new();
    let url = format!("{}/api/health", second.url());
    let stale = client.get(&url).bearer_auth(&old).send().await.unwrap();
    assert_eq!(stale.status(), 401);
    assert_eq!(kind_of(&stale.text().await.unwrap()), "unauthorized");
    let fresh = client
        .get(&url)
        .bearer_auth(second.token())
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(secret::TOKEN_FILE)).unwrap(),
        second.token()
    );
    second.shutdown().await.unwrap();
}

/// The app and `mcache serve` used to share a folder, each overwriting the other's record.
#[tokio::test]
async fn a_second_server_on_the_same_folder_is_refused_while_the_first_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _tx) = start_minimal(dir.path()).await;
    let record = std::fs::read(dir.path().join(DISCOVERY_FILE)).unwrap();

    let error = start_minimal_with(ApiConfig::new(dir.path().to_path_buf()))
        .await
        .unwrap_err();
    match &error {
        ServeError::AlreadyRunning { data_dir, running } => {
            assert_eq!(data_dir, dir.path());
            let running = running.as_ref().expect("the first server's record");
            assert_eq!(running.pid, std::process::id());
            assert_eq!(running.url, first.url());
        }
        other => panic!("{other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("already uses"), "{message}");
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    // The refused start changed nothing the first server relies on.
    assert_eq!(
        std::fs::read(dir.path().join(DISCOVERY_FILE)).unwrap(),
        record
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(secret::TOKEN_FILE)).unwrap(),
        first.token()
    );
    let health = reqwest::Client::new()
        .get(format!("{}/api/health", first.url()))
        .bearer_auth(first.token())
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Once the first has stopped, the folder is free again.
    first.shutdown().await.unwrap();
    let (second, _tx) = start_minimal(dir.path()).await;
    second.shutdown().await.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn the_server_makes_its_data_folder_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let created = dir.path().join("new");
    let (server, _tx) = start_minimal(&created).await;
    let mode = std::fs::metadata(&created).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    server.shutdown().await.unwrap();

    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (server, _tx) = start_minimal(&open).await;
    let mode = std::fs::metadata(&open).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    server.shutdown().await.unwrap();
}

/// A secret left world-readable by an earlier start was chmodded and reused.
#[cfg(unix)]
#[tokio::test]
async fn a_world_readable_secret_left_behind_is_never_accepted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(secret::TOKEN_FILE);
    let leaked = "ab".repeat(32);
    std::fs::write(&path, &leaked).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (server, _tx) = start_minimal(dir.path()).await;
    assert_ne!(server.token(), leaked);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let refused = reqwest::Client::new()
        .get(format!("{}/api/health", server.url()))
        .bearer_auth(&leaked)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    server.shutdown().await.unwrap();
}

/// A client that sent part of a request line and then nothing held its connection for ever.
#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ApiConfig::new(dir.path().to_path_buf());
    config.limits.header_read_timeout = Duration::from_millis(200);
    let (server, _tx) = start_minimal_with(config).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    stream.write_all(b"GET /api/health HT").await.unwrap();
    // The server closes the connection (EOF or reset); the outer timeout only keeps a broken
    // server from hanging the test.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest))
        .await
        .expect("the server closes a connection whose headers do not arrive");
    assert!(
        closed.is_err() || !String::from_utf8_lossy(&rest).contains("200 OK"),
        "{rest:?}"
    );

    // A client that sends its request in time is served.
    let (status, _) = raw(
        &server,
        &format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            server.local_addr().port()
        ),
    )
    .await;
    assert_eq!(status, 200);
    server.shutdown().await.unwrap();
}

/// Connections without the secret were unlimited: enough idle ones exhausted the process.
#[tokio::test]
async fn connections_without_the_secret_are_limited_and_the_next_one_gets_a_503() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _tx) = start_minimal(dir.path()).await;
    let port = server.local_addr().port();
    let mut idle = Vec::new();
    for _ in 0..MAX_UNAUTHENTICATED_CONNECTIONS {
        idle.push(
            tokio::net::TcpStream::connect(server.local_addr())
                .await
                .unwrap(),
        );
    }
    let page = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let (status, text) = raw(&server, &page).await;
    assert_eq!(status, 503, "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(kind_of(body), "too_many_connections");

    // A connection that sends the secret gives up its place.
    let token = server.token().to_string();
    let first = &mut idle[0];
    first
        .write_all(
            format!("GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    first.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let (status, text) = raw(&server, &page).await;
    assert_eq!(status, 200, "{text}");
    server.shutdown().await.unwrap();
}

/// Event streams were unlimited; each holds a connection and a subscription for as long as
/// the client keeps it.
#[tokio::test]
async fn at_most_eight_event_streams_are_open_at_once() {
    assert_eq!(MAX_EVENT_STREAMS, 8);
    let dir = tempfile::tempdir().unwrap();
    let (server, _tx) = start_minimal(dir.path()).await;
    let client = reqwest::Client::new();
    let open = || {
        client
            .get(format!("{}/api/events", server.url()))
            .bearer_auth(server.token())
            .send()
    };
    let mut streams = Vec::new();
    for _ in 0..MAX_EVENT_STREAMS {
        let response = open().await.unwrap();
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    let refused = open().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(
        kind_of(&refused.text().await.unwrap()),
        "too_many_connections"
    );

    // A stream whose client goes away frees its place.
    drop(streams.pop());
    let mut reopened = None;
    for _ in 0..100 {
        let response = open().await.unwrap();
        if response.status() == 200 {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "a place was freed");
    server.shutdown().await.unwrap();
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
