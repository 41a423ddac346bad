//! The Hub client on the networks of labs and offices (issue 27): through a proxy (and around
//! it, for `NO_PROXY` hosts and loopback).
//!
//! Loopback is never proxied, so these tests name the emulator `hub.test` and its CDN
//! `cdn.test`: names the proxy rule sees as any other host. The test's proxy maps the names to
//! the emulator's loopback addresses; a request that bypasses the proxy reaches them through
//! [`HubClient::with_resolved_hosts`] (curl's `--resolve`), which changes only how a name is
//! resolved, never which proxy is chosen. Hermetic: everything listens on 127.0.0.1.

mod proxy;
mod tls;

use std::net::SocketAddr;

use hub_emulator::{Emulator, EmulatorConfig, Listener};
use model_cache::error::{ErrorKind, Hint};
use model_cache::hub::HubClient;
use model_cache::hub::proxy::{ProxySettings, ProxyUrl};
use model_cache::hub::retry::RetryPolicy;
use model_cache::{RepoId, Settings};
use proxy::LoggingProxy;
use tls::{TestCa, TlsFront};

const REPO: &str = "demo/tiny-gguf";

fn repo() -> RepoId {
    RepoId::model(REPO).unwrap()
}

/// An emulator whose redirects name its CDN `http://cdn.test:{port}`.
async fn emulator_with_named_cdn() -> Emulator {
    // The CDN's port is chosen first, so the Hub's redirects can name it.
    let cdn_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    Emulator::start(EmulatorConfig {
        cdn_port,
        cdn_base_url: Some(format!("http://cdn.test:{cdn_port}")),
        ..EmulatorConfig::demo_with_big_size(1 << 20)
    })
    .await
    .unwrap()
}

fn names(emulator: &Emulator) -> [(&'static str, SocketAddr); 2] {
    [
        ("hub.test", emulator.hub_addr()),
        ("cdn.test", emulator.cdn_addr()),
    ]
}

fn settings(endpoint: String, proxy: ProxySettings) -> Settings {
    let mut settings = Settings::new("/nonexistent/hub".into(), "/nonexistent/data".into());
    settings.endpoint = endpoint;
    settings.retry = RetryPolicy::immediate();
    settings.retry.max_attempts = 2;
    settings.proxy = proxy;
    settings
}

fn proxy_for_all(url: &str, no_proxy: Option<&str>) -> ProxySettings {
    let mut proxy = ProxySettings {
        no_proxy: no_proxy.map(str::to_string),
        ..ProxySettings::default()
    };
    proxy.set_all(ProxyUrl::new(url));
    proxy
}

/// Lists the repo, resolves one GGUF file (an LFS file the Hub redirects to its CDN) and reads
/// its first bytes; returns the file's path.
async fn use_the_hub(hub: &HubClient) -> String {
    use_the_hub_with_cdn(hub, "http://cdn.test:").await
}

async fn use_the_hub_with_cdn(hub: &HubClient, cdn: &str) -> String {
    hub.repo_info(&repo(), None).await.unwrap();
    let tree = hub.list_tree(&repo(), "main", None, true).await.unwrap();
    let file = tree
        .iter()
        .map(|entry| entry.path.clone())
        .find(|path| path.ends_with(".gguf"))
        .unwrap();
    let meta = hub.file_metadata(&repo(), "main", &file).await.unwrap();
    assert!(
        meta.download_url.starts_with(cdn),
        "the Hub redirects to the named CDN: {}",
        meta.download_url
    );
    let mut range = hub
        .get_range(&meta.download_url, Some(0..4), None)
        .await
        .unwrap();
    let bytes = range.body.chunk().await.unwrap().unwrap();
    assert_eq!(&bytes[..], b"GGUF");
    file
}

fn targets(proxy: &LoggingProxy) -> Vec<String> {
    proxy
        .seen()
        .iter()
        .map(|seen| format!("{} {}", seen.method, seen.target))
        .collect()
}

#[tokio::test]
async fn the_hub_and_its_cdn_are_reached_through_the_proxy_with_its_credentials() {
    let emulator = emulator_with_named_cdn().await;
    let proxy = LoggingProxy::start(&names(&emulator)).await;
    let hub_port = emulator.hub_addr().port();
    let cdn_port = emulator.cdn_addr().port();
    // No name is resolved by the client: only the proxy knows where `hub.test` is.
    let hub = HubClient::new(&settings(
        format!("http://hub.test:{hub_port}"),
        proxy_for_all(&proxy.url(Some("alice:s3cret")), Some("other.example")),
    ))
    .unwrap();
    let file = use_the_hub(&hub).await;

    let seen = targets(&proxy);
    let hub_base = format!("http://hub.test:{hub_port}");
    assert!(
        seen.contains(&format!("GET {hub_base}/api/models/{REPO}?blobs=true")),
        "{seen:#?}"
    );
    assert!(
        seen.contains(&format!("HEAD {hub_base}/{REPO}/resolve/main/{file}")),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.starts_with(&format!("GET http://cdn.test:{cdn_port}/"))),
        "the CDN is reached through the proxy too: {seen:#?}"
    );
    assert!(
        proxy
            .seen()
            .iter()
            .all(|s| s.proxy_authorization.as_deref() == Some("Basic YWxpY2U6czNjcmV0")),
        "every request carries the proxy's credentials"
    );
    // What the emulator served came through the proxy: one request there per proxied one.
    assert_eq!(emulator.requests().len(), seen.len());
}

#[tokio::test]
async fn no_proxy_hosts_are_reached_directly() {
    let emulator = emulator_with_named_cdn().await;
    let proxy = LoggingProxy::start(&names(&emulator)).await;
    let hub_port = emulator.hub_addr().port();
    // `hub.test` bypasses the proxy (reached through the client's own resolution); `cdn.test`
    // is not listed, so it still goes through the proxy.
    let hub = HubClient::with_resolved_hosts(
        &settings(
            format!("http://hub.test:{hub_port}"),
            proxy_for_all(&proxy.url(None), Some("example.com, .hub.test")),
        ),
        &names(&emulator),
    )
    .unwrap();
    use_the_hub(&hub).await;

    let seen = targets(&proxy);
    assert!(
        seen.iter().all(|s| s.contains("//cdn.test:")),
        "only the CDN went through the proxy: {seen:#?}"
    );
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let direct_to_hub = emulator
        .requests()
        .iter()
        .filter(|r| r.listener == Listener::Hub)
        .count();
    assert!(direct_to_hub >= 3, "the Hub was reached directly");
}

#[tokio::test]
async fn loopback_is_never_sent_to_the_proxy() {
    let emulator = Emulator::start(EmulatorConfig::demo_with_big_size(1 << 20))
        .await
        .unwrap();
    let proxy = LoggingProxy::start(&[]).await;
    let hub = HubClient::new(&settings(
        emulator.url(),
        proxy_for_all(&proxy.url(None), None),
    ))
    .unwrap();
    hub.repo_info(&repo(), None).await.unwrap();
    let meta = hub
        .file_metadata(&repo(), "main", "config.json")
        .await
        .unwrap();
    hub.get_range(&meta.download_url, Some(0..4), None)
        .await
        .unwrap();
    assert_eq!(proxy.seen(), []);
}

#[tokio::test]
async fn an_unreachable_proxy_is_named_without_its_password_and_hinted() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_proxy = format!("http://alice:s3cret@{}", closed.local_addr().unwrap());
    drop(closed);
    let hub = HubClient::new(&settings(
        "http://hub.test:9".into(),
        proxy_for_all(&dead_proxy, None),
    ))
    .unwrap();
    let error = hub.repo_info(&repo(), None).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("through the proxy `http://127.0.0.1:"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
    assert!(!format!("{error:?}").contains("s3cret"));
    assert_eq!(error.kind(), ErrorKind::Network);
    assert!(
        error.hints().contains(&Hint::CheckProxy),
        "{:?}",
        error.hints()
    );
}

#[tokio::test]
async fn a_proxy_that_cannot_be_used_is_refused_when_the_client_is_built() {
    let error = HubClient::new(&settings(
        "https://huggingface.co".into(),
        proxy_for_all("socks5://alice:s3cret@127.0.0.1:1080", None),
    ))
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert_eq!(error.hints(), [Hint::CheckProxy]);
    assert!(!error.to_string().contains("s3cret"), "{error}");
}

/// The emulator behind TLS fronts with certificates the test CA signed: `https://hub.test:{port}`
/// and a CDN its redirects name `https://cdn.test:{port}`.
struct TlsHub {
    emulator: Emulator,
    ca: TestCa,
    hub: TlsFront,
    cdn: TlsFront,
}

impl TlsHub {
    async fn start() -> TlsHub {
        let ca = TestCa::new(&["hub.test", "cdn.test"]);
        let hub_listener = TlsFront::bind().await;
        let cdn_listener = TlsFront::bind().await;
        let cdn_port = cdn_listener.local_addr().unwrap().port();
        let emulator = Emulator::start(EmulatorConfig {
            cdn_base_url: Some(format!("https://cdn.test:{cdn_port}")),
            ..EmulatorConfig::demo_with_big_size(1 << 20)
        })
        .await
        .unwrap();
        let hub = TlsFront::start(hub_listener, &ca, emulator.hub_addr());
        let cdn = TlsFront::start(cdn_listener, &ca, emulator.cdn_addr());
        TlsHub {
            emulator,
            ca,
            hub,
            cdn,
        }
    }

    fn endpoint(&self) -> String {
        format!("https://hub.test:{}", self.hub.addr.port())
    }

    fn names(&self) -> [(&'static str, SocketAddr); 2] {
        [("hub.test", self.hub.addr), ("cdn.test", self.cdn.addr)]
    }
}

#[tokio::test]
async fn a_server_signed_by_a_company_ca_is_trusted_through_the_ca_bundle_setting() {
    let tls = TlsHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(tls.endpoint(), ProxySettings::default());
    settings.ca_bundle = Some(tls.ca.write_bundle(dir.path()));
    let hub = HubClient::with_resolved_hosts(&settings, &tls.names()).unwrap();
    use_the_hub_with_cdn(&hub, "https://cdn.test:").await;
    let listeners: Vec<Listener> = tls.emulator.requests().iter().map(|r| r.listener).collect();
    assert!(listeners.contains(&Listener::Cdn) && listeners.contains(&Listener::Hub));
}

#[tokio::test]
async fn requests_ca_bundle_from_the_environment_is_trusted() {
    let tls = TlsHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = tls.ca.write_bundle(dir.path());
    let bundle_text = bundle.to_str().unwrap().to_string();
    let lookup = move |name: &str| (name == "REQUESTS_CA_BUNDLE").then(|| bundle_text.clone());
    let from_env = model_cache::env::settings_from_env(lookup, None, dir.path().join("data"));
    let mut settings = settings(tls.endpoint(), ProxySettings::default());
    settings.ca_bundle = from_env.ca_bundle;
    let hub = HubClient::with_resolved_hosts(&settings, &tls.names()).unwrap();
    hub.repo_info(&repo(), None).await.unwrap();
}

#[tokio::test]
async fn without_the_company_ca_the_certificate_is_refused_with_a_clear_error() {
    let tls = TlsHub::start().await;
    let hub = HubClient::with_resolved_hosts(
        &settings(tls.endpoint(), ProxySettings::default()),
        &tls.names(),
    )
    .unwrap();
    let error = hub.repo_info(&repo(), None).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UntrustedCertificate, "{error}");
    assert_eq!(error.hints(), [Hint::TrustCertificateAuthority]);
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("The certificate of `{}", tls.endpoint())),
        "{message}"
    );
    assert!(message.contains("UnknownIssuer"), "{message}");
    // Not retried: another attempt cannot succeed, and no request reached the Hub.
    assert!(!error.is_retryable());
    assert_eq!(tls.emulator.requests().len(), 0);
}

#[tokio::test]
async fn a_ca_bundle_that_cannot_be_read_is_refused_when_the_client_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("bundle.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    for path in [not_pem, dir.path().join("missing.pem")] {
        let mut settings = settings("https://huggingface.co".into(), ProxySettings::default());
        settings.ca_bundle = Some(path.clone());
        let error = HubClient::new(&settings).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
        assert_eq!(error.hints(), [Hint::TrustCertificateAuthority]);
        assert!(
            error.to_string().contains(path.to_str().unwrap()),
            "{error}"
        );
    }
}

#[tokio::test]
async fn https_goes_through_the_proxy_in_a_connect_tunnel() {
    let tls = TlsHub::start().await;
    let proxy = LoggingProxy::start(&tls.names()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(tls.endpoint(), proxy_for_all(&proxy.url(None), None));
    settings.ca_bundle = Some(tls.ca.write_bundle(dir.path()));
    // No name is resolved by the client: only the proxy knows where the names are.
    let hub = HubClient::new(&settings).unwrap();
    use_the_hub_with_cdn(&hub, "https://cdn.test:").await;
    let seen = targets(&proxy);
    assert!(
        seen.contains(&format!("CONNECT hub.test:{}", tls.hub.addr.port())),
        "{seen:#?}"
    );
    assert!(
        seen.contains(&format!("CONNECT cdn.test:{}", tls.cdn.addr.port())),
        "{seen:#?}"
    );
    assert!(seen.iter().all(|s| s.starts_with("CONNECT ")), "{seen:#?}");
}
