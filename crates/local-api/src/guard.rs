//! The access checks every request passes before it reaches a handler.
//!
//! - `Host` must name this server by a loopback name and its port: a page on `evil.example`
//!   that re-resolves its name to 127.0.0.1 (DNS rebinding) sends `Host: evil.example:PORT` and is
//!   refused.
//! - `Origin`, when present, must be this server's own origin: other web pages cannot drive the
//!   API from the user's browser (no CORS headers are ever sent either).
//! - `/api/*` needs `Authorization: Bearer <secret>`, compared in constant time. The static UI does
//!   not: the page gets the secret from its URL fragment, which browsers never send. A connection
//!   that sent the secret once no longer counts against the limit on unauthenticated connections
//!   ([`crate::connections`]).
//!
//! Host and Origin are checked before the secret so that a foreign page learns nothing from the
//! status code about whether it guessed the secret.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::connections::Unauthenticated;
use crate::error::ApiError;
use crate::secret::ApiSecret;

/// What the checks accept; cheap to clone into every request.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    secret: ApiSecret,
    hosts: Arc<Vec<String>>,
    origins: Arc<Vec<String>>,
}

impl Guard {
    /// Accepts `127.0.0.1:PORT`, `localhost:PORT` (and `[::1]:PORT`), the bound address itself,
    /// plus `extra_hosts` (`name:port`) set by the user for a non-loopback bind.
    pub(crate) fn new(secret: ApiSecret, addr: SocketAddr, extra_hosts: &[String]) -> Guard {
        let port = addr.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        if !addr.ip().is_unspecified() {
            hosts.push(addr.to_string());
        }
        hosts.extend(extra_hosts.iter().map(|h| h.to_ascii_lowercase()));
        hosts.sort();
        hosts.dedup();
        let origins = hosts.iter().map(|h| format!("http://{h}")).collect();
        Guard {
            secret,
            hosts: Arc::new(hosts),
            origins: Arc::new(origins),
        }
    }

    fn check_host(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        match host {
            Some(host) if self.hosts.contains(&host) => Ok(()),
            Some(host) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                format!(
                    "The `Host` header `{}` does not name this server",
                    printable(&host)
                ),
            )
            .with_hint("Use http://127.0.0.1:PORT or http://localhost:PORT")),
            None => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                "The request has no `Host` header",
            )),
        }
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        if self.origins.contains(&origin) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!(
                    "Requests from the web origin `{}` are not allowed",
                    printable(&origin)
                ),
            )
            .with_hint("Only the Model Cache UI served by this API may call it from a browser"))
        }
    }

    fn check_secret(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        match presented {
            Some(token) if self.secret.matches(token) => Ok(()),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

/// Keeps attacker-controlled header text short and printable in error messages.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// Host and Origin checks, for every route (UI and API).
pub(crate) async fn check_site(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(err) = guard
        .check_host(request.headers())
        .and_then(|()| guard.check_origin(request.headers()))
    {
        tracing::warn!(kind = %err.kind, path = %request.uri().path(), "Refused a request");
        return err.into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    response
}

/// The bearer-secret check, for `/api/*`.
pub(crate) async fn check_secret(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(err) = guard.check_secret(request.headers()) {
        tracing::debug!(path = %request.uri().path(), "Refused a request without the API secret");
        return err.into_response();
    }
    if let Some(place) = request.extensions().get::<Unauthenticated>() {
        place.authenticated();
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(
            ApiSecret::generate(),
            "127.0.0.1:4321".parse().unwrap(),
            &[],
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn host_must_be_loopback_name_with_our_port() {
        let g = guard();
        assert!(
            g.check_host(&headers(&[("host", "127.0.0.1:4321")]))
                .is_ok()
        );
        assert!(
            g.check_host(&headers(&[("host", "LOCALHOST:4321")]))
                .is_ok()
        );
        for bad in [
            "evil.example:4321",
            "127.0.0.1:80",
            "127.0.0.1",
            "localhost",
        ] {
            let err = g.check_host(&headers(&[("host", bad)])).unwrap_err();
            assert_eq!(err.kind, "forbidden_host", "{bad}");
        }
        assert!(g.check_host(&HeaderMap::new()).is_err());
    }

    #[test]
    fn origin_must_be_our_own_when_present() {
        let g = guard();
        assert!(g.check_origin(&HeaderMap::new()).is_ok());
        assert!(
            g.check_origin(&headers(&[("origin", "http://localhost:4321")]))
                .is_ok()
        );
        for bad in [
            "https://evil.example",
            "null",
            "http://127.0.0.1:9999",
            "https://127.0.0.1:4321",
        ] {
            let err = g.check_origin(&headers(&[("origin", bad)])).unwrap_err();
            assert_eq!(err.kind, "forbidden_origin", "{bad}");
        }
    }

    #[test]
    fn secret_must_match_exactly() {
        let g = guard();
        let good = format!("Bearer {}", g.secret.expose());
        assert!(
            g.check_secret(&headers(&[("authorization", &good)]))
                .is_ok()
        );
        let lower = format!("bearer {}", g.secret.expose());
        assert!(
            g.check_secret(&headers(&[("authorization", &lower)]))
                .is_ok()
        );
        let truncated = &good[..good.len() - 1];
        for bad in [truncated, "Bearer ", "Basic abc", g.secret.expose()] {
            let err = g
                .check_secret(&headers(&[("authorization", bad)]))
                .unwrap_err();
            assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        }
        assert!(g.check_secret(&HeaderMap::new()).is_err());
    }
}
