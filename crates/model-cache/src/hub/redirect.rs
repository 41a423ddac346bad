//! The one redirect follower of the Hub client.
//!
//! The `reqwest` client never follows a redirect on its own (`redirect::Policy::none()`): every
//! hop is a new request made by [`HubClient::request`], which adds the token only when that hop's
//! URL is on a trusted origin (the endpoint's or a mirror's). [`HubClient::is_trusted`] is the one
//! place that decides, hop by hop; no call can change it, so the token never reaches a CDN, a
//! foreign host, or the endpoint's host over another scheme or port (another origin).
//!
//! What a call may choose is what happens at a redirect to a *foreign* origin, one that is
//! neither the origin of the URL that redirected nor a trusted one. That is its [`Foreign`] rule:
//!
//! | call                                   | a redirect to a foreign origin                      |
//! |----------------------------------------|-----------------------------------------------------|
//! | `file_metadata` (`HEAD` on `resolve`)  | [`Foreign::Stop`]: the 3xx is the metadata, its `Location` the download URL |
//! | `get_range_once` (download URLs)       | [`Foreign::Follow`], without the token               |
//! | API calls (`repo_info`, `list_tree`)   | [`Foreign::Refuse`]: an error naming the foreign host |
//!
//! A redirect that stays on the origin that sent it, or goes to a trusted origin, is followed;
//! before any rule, two kinds of redirect are refused under every rule, with
//! [`HubError::RedirectRefused`] ([`refusal`]):
//!
//! - a downgrade from `https` to `http` (whatever the host): what a secure answer points to
//!   must stay secure;
//! - a redirect into this machine or its cloud's private services: loopback (`127.0.0.0/8`,
//!   `::1`, `localhost`), link-local (`169.254.0.0/16`, `fe80::/10`, where the cloud metadata
//!   service lives) and AWS's IPv6 metadata address `fd00:ec2::254` — unless a configured source
//!   (the endpoint or a mirror) is itself in that class (a Hub on `127.0.0.1` in the tests and the
//!   demo mode redirects to its CDN on `127.0.0.1`). A host name is judged by its text; one that
//!   resolves to such an address is not caught here.
//!
//! After [`MAX_REDIRECTS`] requests that all redirected, the call fails. A response that is
//! neither a redirect nor a success becomes a typed [`HubError`].

use std::net::{Ipv4Addr, Ipv6Addr};

use reqwest::{Method, RequestBuilder};
use url::{Host, Url};

use super::{Context, HubClient, HubError, MAX_REDIRECTS, location, network, shown};

/// What a call does with a redirect to a foreign origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Foreign {
    /// Request the foreign URL too (without the token): the Hub sends downloads to its CDN.
    Follow,
    /// Do not request it: the 3xx is the answer, returned with its `Location`
    /// ([`Landed::foreign`]). `huggingface_hub` resolves files this way.
    Stop,
    /// Fail with [`HubError::InvalidResponse`]: an API answer never lives on another host.
    Refuse,
}

/// What to do with one redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Follow,
    Stop,
    Refuse,
}

/// The decision for one redirect from `from` to `to`, under the call's rule. `to_is_trusted` is
/// [`HubClient::is_trusted`] of `to`.
fn hop(foreign: Foreign, from: &Url, to: &Url, to_is_trusted: bool) -> Hop {
    if to.origin() == from.origin() || to_is_trusted {
        return Hop::Follow;
    }
    match foreign {
        Foreign::Follow => Hop::Follow,
        Foreign::Stop => Hop::Stop,
        Foreign::Refuse => Hop::Refuse,
    }
}

/// Addresses a redirect may not lead to unless a configured source is there too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Private {
    /// This machine: `127.0.0.0/8`, `::1`, the unspecified addresses, `localhost`.
    Loopback,
    /// `169.254.0.0/16` and `fe80::/10` (the cloud metadata service is `169.254.169.254`).
    LinkLocal,
    /// AWS's IPv6 instance metadata service, `fd00:ec2::254`.
    CloudMetadata,
}

/// The [`Private`] class of `url`'s host, if it has one.
pub(super) fn private_class(url: &Url) -> Option<Private> {
    fn v4(ip: Ipv4Addr) -> Option<Private> {
        if ip.is_loopback() || ip.is_unspecified() {
            Some(Private::Loopback)
        } else if ip.is_link_local() {
            Some(Private::LinkLocal)
        } else {
            None
        }
    }
    match url.host()? {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost")).then_some(Private::Loopback)
        }
        Host::Ipv4(ip) => v4(ip),
        Host::Ipv6(ip) => {
            if let Some(mapped) = ip.to_ipv4_mapped() {
                v4(mapped)
            } else if ip.is_loopback() || ip.is_unspecified() {
                Some(Private::Loopback)
            } else if ip.segments()[0] & 0xffc0 == 0xfe80 {
                Some(Private::LinkLocal)
            } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some(Private::CloudMetadata)
            } else {
                None
            }
        }
    }
}

/// Why a redirect from `from` to `to` is refused under every rule, if it is. `allowed` are the
/// [`Private`] classes of the configured sources.
pub(super) fn refusal(from: &Url, to: &Url, allowed: &[Private]) -> Option<String> {
    if from.scheme() == "https" && to.scheme() != "https" {
        return Some(format!("a downgrade from https to {}", to.scheme()));
    }
    match private_class(to) {
        Some(class) if !allowed.contains(&class) => Some(
            match class {
                Private::Loopback => "a loopback address, and no configured source is one",
                Private::LinkLocal => "a link-local address, and no configured source is one",
                Private::CloudMetadata => "a cloud metadata address",
            }
            .to_string(),
        ),
        _ => None,
    }
}

/// Where a call ended.
pub(super) struct Landed {
    /// A success, or (under [`Foreign::Stop`]) the redirect to a foreign origin.
    pub response: reqwest::Response,
    /// The URL that answered `response`.
    pub url: Url,
    /// The foreign `Location` a [`Foreign::Stop`] call stopped at.
    pub foreign: Option<Url>,
}

impl HubClient {
    /// Sends `method` to `start` and follows redirects hop by hop under the `foreign` rule.
    /// `prepare` adds the call's own headers and timeout to each hop's request; the token is
    /// not its business. Error statuses are mapped with `context` (what the call is about;
    /// `None` for a plain download URL).
    pub(super) async fn follow(
        &self,
        method: Method,
        start: Url,
        foreign: Foreign,
        context: Option<Context<'_>>,
        prepare: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Landed, HubError> {
        let mut url = start;
        for _ in 0..MAX_REDIRECTS {
            let response = prepare(self.request(method.clone(), &url))
                .send()
                .await
                .map_err(|source| network(&url, self.proxy_for(&url), source))?;
            let status = response.status();
            if status.is_redirection() {
                let target = location(&response, &url)?;
                if let Some(reason) = refusal(&url, &target, &self.inner.private_sources) {
                    return Err(HubError::RedirectRefused {
                        url: shown(&url),
                        target: shown(&target),
                        reason,
                    });
                }
                match hop(foreign, &url, &target, self.is_trusted(&target)) {
                    Hop::Follow => {
                        tracing::debug!(
                            from = %url.origin().ascii_serialization(),
                            to = %target.origin().ascii_serialization(),
                            "Following a redirect"
                        );
                        url = target;
                        continue;
                    }
                    Hop::Stop => {
                        return Ok(Landed {
                            response,
                            url,
                            foreign: Some(target),
                        });
                    }
                    Hop::Refuse => {
                        return Err(HubError::InvalidResponse {
                            url: shown(&url),
                            reason: format!(
                                "unexpected redirect to a foreign host `{}`",
                                shown(&target)
                            ),
                        });
                    }
                }
            }
            if !status.is_success() {
                return Err(self.error_from(response, &url, context).await);
            }
            return Ok(Landed {
                response,
                url,
                foreign: None,
            });
        }
        Err(HubError::InvalidResponse {
            url: shown(&url),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use reqwest::header;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::secret::Token;
    use crate::settings::{Mirror, Settings};

    /// A request a [`Server`] saw.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Seen {
        path: String,
        authorization: bool,
    }

    /// A loopback HTTP server that answers each request with `answer(path)` and closes the
    /// connection.
    struct Server {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Server {
        async fn start(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> Server {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = Arc::clone(&seen);
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
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
                    let authorization = head
                        .lines()
                        .any(|line| line.to_ascii_lowercase().starts_with("authorization:"));
                    log.lock().unwrap().push(Seen {
                        path: path.clone(),
                        authorization,
                    });
                    let _ = stream.write_all(answer(&path).as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            });
            Server { url, seen }
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    fn redirect(to: &str) -> String {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    }

    fn ok() -> String {
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    }

    fn seen(path: &str, authorization: bool) -> Seen {
        Seen {
            path: path.to_string(),
            authorization,
        }
    }

    fn settings(endpoint: &str, mirrors: &[Mirror]) -> Settings {
        let mut settings = Settings::new("/c".into(), "/d".into());
        settings.endpoint = endpoint.to_string();
        settings.mirrors = mirrors.to_vec();
        settings.token = Token::new("hf_secret");
        settings
    }

    fn client(endpoint: &str, mirrors: &[Mirror]) -> HubClient {
        HubClient::new(&settings(endpoint, mirrors)).unwrap()
    }

    /// A client whose endpoint is `http://hub.test:{port}` (not loopback by its name), which
    /// resolves to `server`.
    fn client_named_hub_test(server: &Server) -> (HubClient, String) {
        let addr: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
        let endpoint = format!("http://hub.test:{}", addr.port());
        let client = HubClient::build(&settings(&endpoint, &[]), |builder| {
            builder.resolve("hub.test", addr)
        })
        .unwrap();
        (client, endpoint)
    }

    /// Follows redirects from `{hub}/start`, with `hub` as the endpoint.
    async fn follow_from(
        hub: &Server,
        mirrors: &[Mirror],
        method: Method,
        foreign: Foreign,
    ) -> Result<Landed, HubError> {
        let start = url(&format!("{}/start", hub.url));
        client(&hub.url, mirrors)
            .follow(method, start, foreign, None, |request| request)
            .await
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    /// A Hub whose `/start` redirects to `/same` (same origin, relative), which redirects to
    /// `{cdn}/file`.
    async fn hub_redirecting_to(cdn: &Server) -> Server {
        let file = format!("{}/file", cdn.url);
        Server::start(move |path| match path {
            "/start" => redirect("/same"),
            "/same" => redirect(&file),
            _ => ok(),
        })
        .await
    }

    #[tokio::test]
    async fn the_token_goes_to_the_hub_on_every_hop_and_never_to_a_foreign_origin() {
        let cdn = Server::start(|_| ok()).await;
        let hub = hub_redirecting_to(&cdn).await;
        let landed = follow_from(&hub, &[], Method::GET, Foreign::Follow)
            .await
            .unwrap();
        assert_eq!(landed.url.as_str(), format!("{}/file", cdn.url));
        assert_eq!(landed.foreign, None);
        assert_eq!(hub.seen(), [seen("/start", true), seen("/same", true)]);
        assert_eq!(cdn.seen(), [seen("/file", false)]);
    }

    #[tokio::test]
    async fn a_mirror_marked_to_receive_the_token_is_trusted_like_the_endpoint() {
        let mirror = Server::start(|_| ok()).await;
        let hub = hub_redirecting_to(&mirror).await;
        let marked = [Mirror::sent_token(mirror.url.clone())];
        let landed = follow_from(&hub, &marked, Method::GET, Foreign::Refuse)
            .await
            .unwrap();
        assert_eq!(landed.url.as_str(), format!("{}/file", mirror.url));
        assert_eq!(mirror.seen(), [seen("/file", true)]);
    }

    #[tokio::test]
    async fn a_mirror_not_marked_never_receives_the_token() {
        let mirror = Server::start(|_| ok()).await;
        let hub = hub_redirecting_to(&mirror).await;
        let unmarked = [Mirror::new(mirror.url.clone())];
        // Requested directly (as failover does) and through a redirect alike.
        let client = client(&hub.url, &unmarked);
        client
            .follow(
                Method::GET,
                url(&format!("{}/direct", mirror.url)),
                Foreign::Refuse,
                None,
                |request| request,
            )
            .await
            .unwrap();
        follow_from(&hub, &unmarked, Method::GET, Foreign::Follow)
            .await
            .unwrap();
        assert_eq!(
            mirror.seen(),
            [seen("/direct", false), seen("/file", false)]
        );
        assert_eq!(hub.seen(), [seen("/start", true), seen("/same", true)]);
    }

    #[tokio::test]
    async fn the_token_never_goes_over_plain_http_to_a_host_that_is_not_loopback() {
        let hub = Server::start(|_| ok()).await;
        let (named, endpoint) = client_named_hub_test(&hub);
        named
            .follow(
                Method::GET,
                url(&format!("{endpoint}/api/models/a/b")),
                Foreign::Refuse,
                None,
                |request| request,
            )
            .await
            .unwrap();
        assert_eq!(hub.seen(), [seen("/api/models/a/b", false)]);
        // A mirror marked to receive it, on plain http to a host that is not loopback, does not
        // either.
        let mirrored = client(
            "https://hub.example",
            &[Mirror::sent_token("http://mirror.example")],
        );
        let has_token = mirrored
            .request(Method::GET, &url("http://mirror.example/x"))
            .build()
            .unwrap()
            .headers()
            .contains_key(header::AUTHORIZATION);
        assert!(!has_token);
    }

    /// A Hub (reached as `http://hub.test`, not loopback by its name) whose `/start` redirects
    /// to `target`.
    async fn refused_from_hub_test(target: String) -> (HubError, Server) {
        let hub = Server::start(move |_| redirect(&target)).await;
        let (client, endpoint) = client_named_hub_test(&hub);
        let error = client
            .follow(
                Method::GET,
                url(&format!("{endpoint}/start")),
                Foreign::Follow,
                None,
                |request| request,
            )
            .await
            .err()
            .expect("the redirect is refused");
        (error, hub)
    }

    #[tokio::test]
    async fn a_redirect_to_loopback_is_refused_unless_the_endpoint_is_there() {
        let local = Server::start(|_| ok()).await;
        for target in [
            format!("{}/secret", local.url),
            format!("{}/secret", local.url.replace("127.0.0.1", "localhost")),
        ] {
            let (error, hub) = refused_from_hub_test(target.clone()).await;
            assert!(
                matches!(&error, HubError::RedirectRefused { reason, .. } if reason.contains("loopback")),
                "{target}: {error}"
            );
            assert_eq!(hub.seen().len(), 1);
        }
        assert!(local.seen().is_empty(), "{:?}", local.seen());
        // From a Hub on loopback (the emulator, the demo mode), its CDN on loopback is fine.
        let cdn = Server::start(|_| ok()).await;
        let hub = hub_redirecting_to(&cdn).await;
        follow_from(&hub, &[], Method::GET, Foreign::Follow)
            .await
            .unwrap();
        assert_eq!(cdn.seen(), [seen("/file", false)]);
    }

    #[tokio::test]
    async fn a_redirect_to_link_local_or_cloud_metadata_addresses_is_refused() {
        for target in [
            "http://169.254.169.254/latest/meta-data/iam",
            "http://[fe80::1]/x",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/x",
        ] {
            // From a Hub on loopback too: loopback is allowed, link-local is not.
            let hub = Server::start(move |_| redirect(target)).await;
            let error = follow_from(&hub, &[], Method::GET, Foreign::Follow)
                .await
                .err()
                .expect("the redirect is refused");
            assert!(
                matches!(error, HubError::RedirectRefused { .. }),
                "{target}: {error}"
            );
            assert_eq!(error.kind(), crate::error::ErrorKind::InvalidResponse);
        }
    }

    #[test]
    fn a_downgrade_from_https_is_refused_under_every_rule() {
        let from = url("https://hub.example/a");
        for to in [
            "http://hub.example/b",
            "http://cdn.example/b",
            "ftp://cdn.example/b",
        ] {
            assert!(
                refusal(&from, &url(to), &[]).is_some_and(|r| r.contains("downgrade")),
                "{to}"
            );
        }
        assert_eq!(refusal(&from, &url("https://cdn.example/b"), &[]), None);
        // An upgrade is fine.
        assert_eq!(
            refusal(
                &url("http://hub.example/a"),
                &url("https://cdn.example/b"),
                &[]
            ),
            None
        );
    }

    #[test]
    fn private_addresses_are_classified() {
        let class = |text: &str| private_class(&url(text));
        assert_eq!(class("http://127.0.0.1/"), Some(Private::Loopback));
        assert_eq!(class("http://127.1.2.3/"), Some(Private::Loopback));
        assert_eq!(class("http://[::1]/"), Some(Private::Loopback));
        assert_eq!(class("http://0.0.0.0/"), Some(Private::Loopback));
        assert_eq!(class("http://LOCALHOST./"), Some(Private::Loopback));
        assert_eq!(class("http://a.localhost/"), Some(Private::Loopback));
        assert_eq!(class("http://169.254.0.1/"), Some(Private::LinkLocal));
        assert_eq!(class("http://[fe80::abcd]/"), Some(Private::LinkLocal));
        assert_eq!(class("http://[febf::1]/"), Some(Private::LinkLocal));
        assert_eq!(
            class("http://[fd00:ec2::254]/"),
            Some(Private::CloudMetadata)
        );
        assert_eq!(class("http://[fd00:ec2::253]/"), None);
        assert_eq!(class("https://cdn.example/"), None);
        assert_eq!(class("http://10.0.0.1/"), None);
    }

    #[tokio::test]
    async fn a_stopping_call_returns_the_foreign_location_without_requesting_it() {
        let cdn = Server::start(|_| ok()).await;
        let hub = hub_redirecting_to(&cdn).await;
        let landed = follow_from(&hub, &[], Method::HEAD, Foreign::Stop)
            .await
            .unwrap();
        assert_eq!(landed.response.status(), 302);
        assert_eq!(landed.url.as_str(), format!("{}/same", hub.url));
        assert_eq!(
            landed.foreign.map(String::from),
            Some(format!("{}/file", cdn.url))
        );
        assert!(cdn.seen().is_empty());
    }

    #[tokio::test]
    async fn a_refusing_call_names_the_foreign_host_without_requesting_it() {
        let cdn = Server::start(|_| ok()).await;
        let hub = hub_redirecting_to(&cdn).await;
        let error = follow_from(&hub, &[], Method::GET, Foreign::Refuse)
            .await
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "Invalid response from `{}/same`: unexpected redirect to a foreign host `{}/file`",
                hub.url, cdn.url
            )
        );
        assert!(cdn.seen().is_empty());
    }

    #[tokio::test]
    async fn redirects_end_after_the_limit() {
        let hub = Server::start(|_| redirect("/again")).await;
        let error = follow_from(&hub, &[], Method::GET, Foreign::Follow)
            .await
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "Invalid response from `{}/again`: more than {MAX_REDIRECTS} redirects",
                hub.url
            )
        );
        assert_eq!(hub.seen().len(), MAX_REDIRECTS);
    }

    #[test]
    fn another_scheme_or_port_is_another_origin() {
        let client = client("https://hub.example", &[]);
        let decide = |foreign, from: &str, to: &str| {
            let (from, to) = (url(from), url(to));
            hop(foreign, &from, &to, client.is_trusted(&to))
        };
        let has_token = |to: &str| {
            client
                .request(Method::GET, &url(to))
                .build()
                .unwrap()
                .headers()
                .contains_key(header::AUTHORIZATION)
        };
        // Same origin (the default port spelled out): followed under every rule, with the token.
        for foreign in [Foreign::Follow, Foreign::Stop, Foreign::Refuse] {
            assert_eq!(
                decide(
                    foreign,
                    "https://hub.example/a",
                    "https://hub.example:443/b"
                ),
                Hop::Follow
            );
        }
        assert!(has_token("https://hub.example:443/b"));
        // A downgrade to `http` on the same host is a foreign origin: no token (and `follow`
        // refuses it before any rule, see `refusal`).
        let downgrade = ("https://hub.example/a", "http://hub.example/b");
        assert_eq!(
            decide(Foreign::Follow, downgrade.0, downgrade.1),
            Hop::Follow
        );
        assert_eq!(decide(Foreign::Stop, downgrade.0, downgrade.1), Hop::Stop);
        assert_eq!(
            decide(Foreign::Refuse, downgrade.0, downgrade.1),
            Hop::Refuse
        );
        assert!(!has_token("http://hub.example/b"));
        // So is another port.
        assert_eq!(
            decide(
                Foreign::Stop,
                "https://hub.example/a",
                "https://hub.example:8443/b"
            ),
            Hop::Stop
        );
        assert!(!has_token("https://hub.example:8443/b"));
        // A CDN redirecting within itself is followed, still without the token.
        assert_eq!(
            decide(
                Foreign::Refuse,
                "https://cdn.example/a",
                "https://cdn.example/b"
            ),
            Hop::Follow
        );
        assert!(!has_token("https://cdn.example/b"));
    }
}
