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
//! A redirect that stays on the origin that sent it, or goes to a trusted origin, is always
//! followed. After [`MAX_REDIRECTS`] requests that all redirected, the call fails. A response
//! that is neither a redirect nor a success becomes a typed [`HubError`].

use reqwest::{Method, RequestBuilder};
use url::Url;

use super::{Context, HubClient, HubError, MAX_REDIRECTS, location, network};

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
                .map_err(|source| network(&url, source))?;
            let status = response.status();
            if status.is_redirection() {
                let target = location(&response, &url)?;
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
                            url: url.to_string(),
                            reason: format!("unexpected redirect to a foreign host `{target}`"),
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
            url: url.to_string(),
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
    use crate::settings::Settings;

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

    fn client(endpoint: &str, mirrors: &[&str]) -> HubClient {
        let mut settings = Settings::new("/c".into(), "/d".into());
        settings.endpoint = endpoint.to_string();
        settings.mirrors = mirrors.iter().map(|m| m.to_string()).collect();
        settings.token = Token::new("hf_secret");
        HubClient::new(&settings).unwrap()
    }

    /// Follows redirects from `{hub}/start`, with `hub` as the endpoint.
    async fn follow_from(
        hub: &Server,
        mirrors: &[&str],
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
    async fn a_mirror_is_trusted_like_the_endpoint() {
        let mirror = Server::start(|_| ok()).await;
        let hub = hub_redirecting_to(&mirror).await;
        let landed = follow_from(&hub, &[&mirror.url], Method::GET, Foreign::Refuse)
            .await
            .unwrap();
        assert_eq!(landed.url.as_str(), format!("{}/file", mirror.url));
        assert_eq!(mirror.seen(), [seen("/file", true)]);
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
        // A downgrade to `http` on the same host is a foreign origin: no token, and the call's
        // rule decides.
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
