//! A small logging HTTP proxy on loopback, written for the tests: it answers `CONNECT` by
//! tunnelling to the target and an absolute-form request (`GET http://host/path`) by forwarding
//! it in origin form, one request per connection. Target names are looked up in the test's own
//! table (so `hub.test` reaches the emulator without any resolver), and every request is logged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// `CONNECT` or the forwarded method.
    pub(crate) method: String,
    /// `host:port` for `CONNECT`, the absolute URL otherwise.
    pub(crate) target: String,
    /// The `Proxy-Authorization` header, as sent.
    pub(crate) proxy_authorization: Option<String>,
}

pub(crate) struct LoggingProxy {
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LoggingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LoggingProxy {
    /// A proxy that reaches `hosts` (name → address); any other target gets 502.
    pub(crate) async fn start(hosts: &[(&str, SocketAddr)]) -> LoggingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hosts: Arc<HashMap<String, SocketAddr>> = Arc::new(
            hosts
                .iter()
                .map(|(name, addr)| (name.to_string(), *addr))
                .collect(),
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let hosts = Arc::clone(&hosts);
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let _ = serve(client, &hosts, &log).await;
                });
            }
        });
        LoggingProxy { addr, seen, task }
    }

    /// `http://user:password@127.0.0.1:{port}` or without credentials.
    pub(crate) fn url(&self, credentials: Option<&str>) -> String {
        match credentials {
            Some(credentials) => format!("http://{credentials}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
    Ok(head)
}

async fn serve(
    mut client: TcpStream,
    hosts: &HashMap<String, SocketAddr>,
    log: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let head = String::from_utf8_lossy(&read_head(&mut client).await?).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let version = parts.next().unwrap_or("HTTP/1.1").to_string();
    let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let proxy_authorization = headers.iter().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("proxy-authorization")
            .then(|| value.trim().to_string())
    });
    log.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        proxy_authorization,
    });
    let bad_gateway = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if method == "CONNECT" {
        let host = target.rsplit_once(':').map_or(target.as_str(), |(h, _)| h);
        let Some(addr) = hosts.get(host) else {
            return client.write_all(bad_gateway).await;
        };
        let mut upstream = TcpStream::connect(addr).await?;
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        return Ok(());
    }
    let Ok(url) = url::Url::parse(&target) else {
        return client.write_all(bad_gateway).await;
    };
    let Some(addr) = url.host_str().and_then(|h| hosts.get(h)) else {
        return client.write_all(bad_gateway).await;
    };
    let mut origin_form = url.path().to_string();
    if let Some(query) = url.query() {
        origin_form.push('?');
        origin_form.push_str(query);
    }
    let mut forwarded = format!("{method} {origin_form} {version}\r\n");
    for line in headers {
        let name = line.split(':').next().unwrap_or_default();
        if name.eq_ignore_ascii_case("proxy-authorization")
            || name.eq_ignore_ascii_case("proxy-connection")
            || name.eq_ignore_ascii_case("connection")
        {
            continue;
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut upstream = TcpStream::connect(addr).await?;
    upstream.write_all(forwarded.as_bytes()).await?;
    // The requests of these tests have no body; the answer is copied until the server closes.
    tokio::io::copy(&mut upstream, &mut client).await?;
    client.shutdown().await
}
