//! The web UI's static files, embedded at build time so `mcache serve` works from any folder.
//!
//! A development override (`ApiConfig::ui_dir`) serves the same file names from a folder on disk
//! instead, so UI changes show up on reload without rebuilding.

use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The files of `ui/`, by name.
const EMBEDDED: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../../ui/index.html")),
    ("styles.css", include_bytes!("../../../ui/styles.css")),
    ("app.js", include_bytes!("../../../ui/app.js")),
    ("api.js", include_bytes!("../../../ui/api.js")),
];

/// The page may load only its own scripts and styles and talk only to this server; no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Where the UI's files come from.
#[derive(Clone, Debug)]
pub(crate) enum UiSource {
    Embedded,
    Dir(PathBuf),
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Only plain file names: no folders, no hidden files, no traversal.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

async fn load(source: &UiSource, name: &str) -> Result<Vec<u8>, ApiError> {
    let missing = || ApiError::not_found(format!("No UI file `{name}`"));
    if !is_plain_name(name) {
        return Err(missing());
    }
    match source {
        UiSource::Embedded => EMBEDDED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| bytes.to_vec())
            .ok_or_else(missing),
        UiSource::Dir(dir) => match tokio::fs::read(dir.join(name)).await {
            Ok(bytes) => Ok(bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(missing()),
            Err(err) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("Cannot read the UI file `{name}`: {err}"),
            )),
        },
    }
}

fn respond(name: &str, bytes: Vec<u8>) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// `GET /`: the page.
pub(crate) async fn index(State(source): State<UiSource>) -> Response {
    match load(&source, "index.html").await {
        Ok(bytes) => respond("index.html", bytes),
        Err(err) => err.into_response(),
    }
}

/// `GET /{file}`: a script or stylesheet of the page.
pub(crate) async fn file(State(source): State<UiSource>, Path(name): Path<String>) -> Response {
    match load(&source, &name).await {
        Ok(bytes) => respond(&name, bytes),
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        assert!(is_plain_name("app.js"));
        for bad in ["", ".env", "../secret", "a/b", "a\\b", "%2e%2e"] {
            assert!(!is_plain_name(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn embedded_files_are_served_and_others_are_not() {
        let page = load(&UiSource::Embedded, "index.html").await.unwrap();
        assert!(String::from_utf8(page).unwrap().contains("app.js"));
        assert!(load(&UiSource::Embedded, "api.js").await.is_ok());
        let err = load(&UiSource::Embedded, "api-token").await.unwrap_err();
        assert_eq!(err.status, StatusCode::NOT_FOUND);
    }
}
