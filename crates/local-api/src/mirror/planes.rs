//! Compressed ranges for paired peers (`model_cache::peers::planes`): a peer that asks for the
//! encoding gets it for a range of a safetensors file whose tensors are mostly F16/BF16, the
//! one kind of model file the measurement in `docs/peers.md` found worth compressing. Any other
//! file, and any response but a single range, is sent as it is, without the header, and the
//! peer reads it as such.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use model_cache::peers::planes::{self, Encoder};

use super::MirrorState;
use super::routes::{Route, route};

/// Whether a file (by etag) is worth compressing, as its header said: read once per file, at
/// most [`REMEMBERED`] kept.
#[derive(Debug, Default)]
pub(crate) struct Compressible(Mutex<HashMap<String, bool>>);

const REMEMBERED: usize = 4096;

/// Whether the request asks for the encoding.
pub(crate) fn asked(headers: &HeaderMap) -> bool {
    headers
        .get(planes::HEADER)
        .is_some_and(|v| v.as_bytes() == planes::ENCODING.as_bytes())
}

/// `response` (to a request for `path` that asked for the encoding) compressed, when it is one
/// range of a file worth it; otherwise as it was.
pub(crate) async fn encode(state: &MirrorState, path: &str, response: Response) -> Response {
    if response.status() != StatusCode::PARTIAL_CONTENT
        || response.headers().get(header::CONTENT_TYPE)
            != Some(&HeaderValue::from_static("application/octet-stream"))
    {
        return response;
    }
    let Some(etag) = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_string())
    else {
        return response;
    };
    if !worth(state, path, &etag).await {
        return response;
    }
    let encoder = match Encoder::new() {
        Ok(encoder) => encoder,
        Err(error) => {
            tracing::warn!(%error, "Cannot compress for a peer; the range goes as it is");
            return response;
        }
    };
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(planes::HEADER, HeaderValue::from_static(planes::ENCODING));
    let stream = futures::stream::unfold(
        (body.into_data_stream(), Some(encoder)),
        |(mut body, mut encoder)| async move {
            loop {
                let active = encoder.as_mut()?;
                let out = match body.next().await {
                    Some(Ok(bytes)) => active.push(&bytes),
                    Some(Err(error)) => Err(std::io::Error::other(error)),
                    None => encoder.take().expect("encoder").finish(),
                };
                match out {
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Some((Ok(bytes::Bytes::from(out)), (body, encoder))),
                    // The connection ends without the frame's end: the peer sees a body cut
                    // short and asks again.
                    Err(error) => return Some((Err(error), (body, None))),
                }
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Whether the file `path` names (by the request's route) is worth compressing, remembered by
/// its etag.
async fn worth(state: &MirrorState, path: &str, etag: &str) -> bool {
    let remembered = &state.compressible.0;
    if let Some(&known) = remembered
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(etag)
    {
        return known;
    }
    let Some(Route::Resolve {
        repo,
        revision,
        path,
    }) = route(path)
    else {
        return false;
    };
    if !path.ends_with(".safetensors") {
        return false;
    }
    let engine = state.engine.clone();
    let read = tokio::task::spawn_blocking(move || {
        let commit = engine.cached_commit(&repo, &revision)?;
        let file = engine.served_file(&repo, &commit, &path)?;
        let mut read = engine.open_served(&repo, &commit, &file).ok()?;
        let mut first = [0u8; 8];
        read.file.read_exact(&mut first).ok()?;
        let length = planes::head_length(&first)?;
        let mut head = first.to_vec();
        head.resize(length, 0);
        read.file.read_exact(&mut head[8..]).ok()?;
        Some(planes::worth_compressing(&head))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(false);
    let mut known = remembered.lock().unwrap_or_else(|e| e.into_inner());
    if known.len() >= REMEMBERED {
        known.clear();
    }
    known.insert(etag.to_string(), read);
    read
}
