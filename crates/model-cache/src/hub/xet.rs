//! Xet storage as the Hub serves it: the metadata that marks a file as stored in Xet, the read
//! token route, and the CAS read protocol (a file's reconstruction, then ranges of xorbs).
//!
//! A Xet file is a list of *terms*, each a run of chunks `[start, end)` of one *xorb* (a
//! content-addressed object of about 64 MiB of compressed chunks). `HEAD /resolve/…` names the
//! file's Xet hash (`X-Xet-Hash`) and the route that hands out a CAS token (`Link: <…>;
//! rel="xet-auth"`); the token goes to the CAS only (never the user's Hub token), and the xorb
//! ranges the CAS points to are presigned URLs that get no credentials at all.
//!
//! The client asks for V2 reconstructions and reads V1 where the CAS does not offer V2; both
//! become [`Reconstruction`]. A reconstruction can be asked for a byte range of the file: the CAS
//! then answers with just the terms and xorb ranges that cover it.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{HubClient, HubError, is_hex, link_with_rel, read_capped, read_json, redact_url};
use crate::repo::RepoId;
use crate::secret::Token;

/// What the Hub says of a file stored with Xet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XetFile {
    /// The file's Xet hash (64 hex): what its reconstruction is asked by.
    pub hash: String,
    /// The Hub route that hands out CAS read tokens for the file's repo and commit.
    pub token_route: String,
}

/// A CAS read token, from the Hub's `xet-read-token` route.
#[derive(Clone)]
pub struct XetToken {
    /// Sent as `Authorization: Bearer` to the CAS only.
    pub access_token: Token,
    /// Unix seconds after which the CAS refuses it.
    pub expires_at: u64,
    /// The CAS base URL, without a trailing `/`.
    pub cas_url: String,
}

impl std::fmt::Debug for XetToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XetToken")
            .field("access_token", &self.access_token)
            .field("expires_at", &self.expires_at)
            .field("cas_url", &self.cas_url)
            .finish()
    }
}

impl XetToken {
    /// Whether the token is expired or expires within `margin`.
    pub fn expires_within(&self, margin: Duration) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        now + margin.as_secs() >= self.expires_at
    }
}

/// Chunks `[start, end)` of a xorb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRange {
    pub start: u32,
    pub end: u32,
}

/// Bytes `[start, end]` of a xorb (`end` inclusive, as in a `Range` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusiveRange {
    pub start: u64,
    pub end: u64,
}

impl InclusiveRange {
    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start) + 1
    }

    /// Never empty: an inclusive range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// One term of a reconstruction: chunks of a xorb that decode to `unpacked_length` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// The xorb's hash.
    pub hash: String,
    pub unpacked_length: u32,
    pub range: ChunkRange,
}

/// One presigned URL of a xorb and the byte ranges it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XorbFetch {
    pub url: String,
    pub ranges: Vec<XorbRange>,
}

/// Chunks of a xorb and the serialized bytes that hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct XorbRange {
    pub chunks: ChunkRange,
    pub bytes: InclusiveRange,
}

/// A file's reconstruction (the V2 form): its terms in file order and where each xorb's chunks
/// are fetched. For a ranged query, the first term starts `offset_into_first_range` bytes
/// before the range does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconstruction {
    pub offset_into_first_range: u64,
    pub terms: Vec<Term>,
    pub xorbs: HashMap<String, Vec<XorbFetch>>,
}

/// The V1 answer: one URL per range.
#[derive(Debug, Deserialize)]
struct ReconstructionV1 {
    offset_into_first_range: u64,
    terms: Vec<Term>,
    fetch_info: HashMap<String, Vec<FetchInfoV1>>,
}

#[derive(Debug, Deserialize)]
struct FetchInfoV1 {
    range: ChunkRange,
    url: String,
    url_range: InclusiveRange,
}

impl From<ReconstructionV1> for Reconstruction {
    fn from(v1: ReconstructionV1) -> Self {
        Reconstruction {
            offset_into_first_range: v1.offset_into_first_range,
            terms: v1.terms,
            xorbs: v1
                .fetch_info
                .into_iter()
                .map(|(xorb, infos)| {
                    let fetches = infos
                        .into_iter()
                        .map(|info| XorbFetch {
                            url: info.url,
                            ranges: vec![XorbRange {
                                chunks: info.range,
                                bytes: info.url_range,
                            }],
                        })
                        .collect();
                    (xorb, fetches)
                })
                .collect(),
        }
    }
}

/// The token route's JSON answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    access_token: String,
    exp: u64,
    cas_url: String,
}

/// The Xet metadata of a `HEAD` answer: `X-Xet-Hash` and the token route (`Link: <…>;
/// rel="xet-auth"`, else `X-Xet-Refresh-Route`), resolved against `url`.
pub(super) fn xet_from_headers(headers: &HeaderMap, url: &Url) -> Option<XetFile> {
    let hash = headers
        .get("x-xet-hash")?
        .to_str()
        .ok()?
        .trim()
        .to_ascii_lowercase();
    if !is_hex(&hash, 64) {
        return None;
    }
    let route = link_with_rel(headers, "xet-auth").or_else(|| {
        headers
            .get("x-xet-refresh-route")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
    })?;
    let token_route = url.join(&route).ok()?.to_string();
    Some(XetFile { hash, token_route })
}

/// The token route the Hub would name for files of `repo` at `commit` (what a tree listing's
/// `xetHash` is read with; the listing does not carry the route).
pub(super) fn token_route(endpoint: &str, repo: &RepoId, commit: &str) -> String {
    format!(
        "{endpoint}/api/{}/{}/xet-read-token/{commit}",
        repo.repo_type.plural(),
        repo.id
    )
}

/// The most bytes of one reconstruction answer (a 100 GiB file has about 1,600 terms).
const RECONSTRUCTION_LIMIT: u64 = 64 << 20;
/// The most bytes of one xorb range: chunks of at most 128 KiB, compressed at most twice over,
/// and a range never spans more than a xorb (64 MiB).
const XORB_RANGE_LIMIT: u64 = 160 << 20;

impl HubClient {
    /// A CAS read token from the route the Hub named for a file of `repo`. The route is on the
    /// Hub, so the user's token goes along as for any Hub request (and only to trusted origins).
    pub async fn xet_read_token(&self, repo: &RepoId, route: &str) -> Result<XetToken, HubError> {
        self.check_online(|| format!("get a Xet read token for `{repo}`"))?;
        let ctx = super::Context {
            repo,
            revision: None,
            path: None,
        };
        let response = self.send_api(reqwest::Method::GET, route, ctx).await?;
        let headers = response.headers().clone();
        let from_headers = || -> Option<TokenAnswer> {
            let get = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            Some(TokenAnswer {
                access_token: get("x-xet-access-token")?,
                exp: get("x-xet-token-expiration")?.trim().parse().ok()?,
                cas_url: get("x-xet-cas-url")?,
            })
        };
        let answer = match read_json::<TokenAnswer>(response, route, self.json_limit()).await {
            Ok(answer) => answer,
            Err(error) => from_headers().ok_or(error)?,
        };
        let cas = Url::parse(answer.cas_url.trim()).map_err(|e| HubError::InvalidResponse {
            url: redact_url(route),
            reason: format!("the CAS URL is not a URL: {e}"),
        })?;
        if !matches!(cas.scheme(), "http" | "https") {
            return Err(HubError::InvalidResponse {
                url: redact_url(route),
                reason: "the CAS URL is neither http nor https".into(),
            });
        }
        Ok(XetToken {
            access_token: Token::new(answer.access_token).ok_or_else(|| {
                HubError::InvalidResponse {
                    url: redact_url(route),
                    reason: "the Xet read token is empty".into(),
                }
            })?,
            expires_at: answer.exp,
            cas_url: answer.cas_url.trim().trim_end_matches('/').to_string(),
        })
    }

    /// The reconstruction of the file `hash` (64 hex), or of its bytes `range`, from the CAS:
    /// V2, or V1 when the CAS does not offer V2.
    pub async fn xet_reconstruction(
        &self,
        token: &XetToken,
        hash: &str,
        range: Option<Range<u64>>,
    ) -> Result<Reconstruction, HubError> {
        self.check_online(|| "ask the Xet CAS for a reconstruction".to_string())?;
        if !is_hex(hash, 64) {
            return Err(HubError::InvalidResponse {
                url: redact_url(&token.cas_url),
                reason: format!("`{hash}` is not a Xet hash"),
            });
        }
        let v2 = format!("{}/v2/reconstructions/{hash}", token.cas_url);
        match self.cas_get(token, &v2, range.clone()).await? {
            Ok(response) => read_json::<Reconstruction>(response, &v2, RECONSTRUCTION_LIMIT).await,
            // No V2 here: 404 (no such route) or 501. A missing file is a 404 on V1 too.
            Err(status) if matches!(status.as_u16(), 404 | 405 | 501) => {
                let v1 = format!("{}/v1/reconstructions/{hash}", token.cas_url);
                match self.cas_get(token, &v1, range).await? {
                    Ok(response) => {
                        read_json::<ReconstructionV1>(response, &v1, RECONSTRUCTION_LIMIT)
                            .await
                            .map(Reconstruction::from)
                    }
                    Err(status) => Err(HubError::Http {
                        status: status.as_u16(),
                        url: redact_url(&v1),
                    }),
                }
            }
            Err(status) => Err(HubError::Http {
                status: status.as_u16(),
                url: redact_url(&v2),
            }),
        }
    }

    /// One GET on the CAS with the CAS token: the response, or the status of a refusal.
    async fn cas_get(
        &self,
        token: &XetToken,
        url: &str,
        range: Option<Range<u64>>,
    ) -> Result<Result<reqwest::Response, StatusCode>, HubError> {
        let parsed = super::parse_url(url)?;
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.access_token.expose()))
            .map_err(|_| HubError::InvalidResponse {
                url: redact_url(url),
                reason: "the CAS token cannot be sent in a header".into(),
            })?;
        bearer.set_sensitive(true);
        let mut request = self
            .inner
            .http
            .get(parsed.clone())
            .header(header::AUTHORIZATION, bearer)
            .timeout(self.inner.metadata_timeout);
        if let Some(range) = range.filter(|r| r.end > r.start) {
            request = request.header(
                header::RANGE,
                format!("bytes={}-{}", range.start, range.end - 1),
            );
        }
        let response = request
            .send()
            .await
            .map_err(|source| super::network(&parsed, self.proxy_for(&parsed), source))?;
        let status = response.status();
        if status.is_success() {
            Ok(Ok(response))
        } else {
            Ok(Err(status))
        }
    }

    /// The serialized chunks of `ranges` of one presigned xorb URL, one buffer per range. The
    /// URL gets no credentials. One range is one plain range request; several are asked in one
    /// multi-range request (the signed range value, as the CAS hands it out) and read from the
    /// `multipart/byteranges` answer.
    pub async fn xet_fetch(
        &self,
        url: &str,
        ranges: &[InclusiveRange],
    ) -> Result<Vec<bytes::Bytes>, HubError> {
        self.check_online(|| "fetch Xet data".to_string())?;
        let parsed = super::parse_url(url)?;
        let value = format!(
            "bytes={}",
            ranges
                .iter()
                .map(|r| format!("{}-{}", r.start, r.end))
                .collect::<Vec<_>>()
                .join(",")
        );
        let response = self
            .inner
            .http
            .get(parsed.clone())
            .header(header::RANGE, value)
            .send()
            .await
            .map_err(|source| super::network(&parsed, self.proxy_for(&parsed), source))?;
        let status = response.status();
        let shown = redact_url(url);
        if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
            return Err(HubError::DownloadUrlRefused {
                status: status.as_u16(),
                host: parsed.host_str().unwrap_or_default().to_string(),
            });
        }
        if status != StatusCode::PARTIAL_CONTENT {
            return Err(HubError::Http {
                status: status.as_u16(),
                url: shown,
            });
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let content_range = response
            .headers()
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(super::parse_content_range);
        let limit = ranges
            .iter()
            .map(|r| r.len() + 512)
            .sum::<u64>()
            .min(XORB_RANGE_LIMIT);
        let body =
            read_capped(response, limit, url)
                .await?
                .ok_or_else(|| HubError::InvalidResponse {
                    url: shown.clone(),
                    reason: "the xorb range is larger than asked".into(),
                })?;
        let body = bytes::Bytes::from(body);
        let invalid = |reason: String| HubError::InvalidResponse {
            url: shown.clone(),
            reason,
        };
        if let [only] = ranges {
            if content_range.and_then(|(first_last, _)| first_last) != Some((only.start, only.end))
            {
                return Err(invalid("the answer is not the range asked for".into()));
            }
            if body.len() as u64 != only.len() {
                return Err(invalid(format!(
                    "{} bytes came for a range of {}",
                    body.len(),
                    only.len()
                )));
            }
            return Ok(vec![body]);
        }
        let boundary = content_type
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("boundary="))
            .map(|b| b.trim_matches('"').to_string())
            .ok_or_else(|| {
                invalid("several ranges came back without a multipart boundary".into())
            })?;
        let parts = split_multipart(&body, &boundary).map_err(invalid)?;
        ranges
            .iter()
            .map(|want| {
                parts
                    .iter()
                    .find(|(first, last, _)| (*first, *last) == (want.start, want.end))
                    .map(|(_, _, data)| data.clone())
                    .ok_or_else(|| {
                        invalid(format!(
                            "the range {}-{} is missing from the answer",
                            want.start, want.end
                        ))
                    })
            })
            .collect()
    }
}

/// The parts of a `multipart/byteranges` body: `(first, last, bytes)` by `Content-Range`.
fn split_multipart(
    body: &bytes::Bytes,
    boundary: &str,
) -> Result<Vec<(u64, u64, bytes::Bytes)>, String> {
    let delimiter = format!("--{boundary}");
    let find = |from: usize, needle: &[u8]| {
        body.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut at = find(0, delimiter.as_bytes()).ok_or("no multipart boundary in the body")?;
    loop {
        let after = at + delimiter.len();
        if body.get(after..after + 2) == Some(b"--") {
            return Ok(parts);
        }
        let headers_end =
            find(after, b"\r\n\r\n").ok_or("a multipart part has no end of headers")?;
        let head = String::from_utf8_lossy(&body[after..headers_end]);
        let (first, last) = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-range")
                    .then(|| super::parse_content_range(value))
                    .flatten()
                    .and_then(|(first_last, _)| first_last)
            })
            .ok_or("a multipart part has no Content-Range")?;
        let start = headers_end + 4;
        let end = start + (last + 1 - first) as usize;
        if end > body.len() {
            return Err("a multipart part is shorter than its Content-Range".into());
        }
        parts.push((first, last, body.slice(start..end)));
        at = find(end, delimiter.as_bytes()).ok_or("a multipart body ends without its boundary")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_metadata_names_the_xet_hash_and_the_token_route() {
        let mut headers = HeaderMap::new();
        let hash = "ab".repeat(32);
        headers.insert("x-xet-hash", HeaderValue::from_str(&hash).unwrap());
        headers.insert(
            header::LINK,
            HeaderValue::from_static(
                "<https://hub.test/api/models/o/m/xet-read-token/abc>; rel=\"xet-auth\"",
            ),
        );
        let url = Url::parse("https://hub.test/o/m/resolve/main/f.bin").unwrap();
        let xet = xet_from_headers(&headers, &url).unwrap();
        assert_eq!(xet.hash, hash);
        assert_eq!(
            xet.token_route,
            "https://hub.test/api/models/o/m/xet-read-token/abc"
        );

        headers.remove(header::LINK);
        assert!(
            xet_from_headers(&headers, &url).is_none(),
            "no route, no Xet"
        );
        headers.insert(
            "x-xet-refresh-route",
            HeaderValue::from_static("/api/models/o/m/xet-read-token/abc"),
        );
        assert_eq!(
            xet_from_headers(&headers, &url).unwrap().token_route,
            "https://hub.test/api/models/o/m/xet-read-token/abc"
        );
        headers.insert("x-xet-hash", HeaderValue::from_static("nothex"));
        assert!(xet_from_headers(&headers, &url).is_none());
    }

    #[test]
    fn a_v1_reconstruction_reads_as_v2() {
        let json = r#"{"offset_into_first_range":5,
            "terms":[{"hash":"x","unpacked_length":10,"range":{"start":0,"end":2}}],
            "fetch_info":{"x":[{"range":{"start":0,"end":2},"url":"http://c/a","url_range":{"start":0,"end":99}}]}}"#;
        let v1: ReconstructionV1 = serde_json::from_str(json).unwrap();
        let r = Reconstruction::from(v1);
        assert_eq!(r.offset_into_first_range, 5);
        let fetch = &r.xorbs["x"][0];
        assert_eq!(fetch.url, "http://c/a");
        assert_eq!(fetch.ranges[0].chunks, ChunkRange { start: 0, end: 2 });
        assert_eq!(fetch.ranges[0].bytes, InclusiveRange { start: 0, end: 99 });
    }

    #[test]
    fn multipart_byteranges_split_by_content_range() {
        let body = bytes::Bytes::from_static(
            b"--XY\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-2/10\r\n\r\nabc\r\n--XY\r\nContent-Range: bytes 5-6/10\r\n\r\nfg\r\n--XY--\r\n",
        );
        let parts = split_multipart(&body, "XY").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].0, parts[0].1, &parts[0].2[..]),
            (0, 2, &b"abc"[..])
        );
        assert_eq!(
            (parts[1].0, parts[1].1, &parts[1].2[..]),
            (5, 6, &b"fg"[..])
        );
        assert!(split_multipart(&bytes::Bytes::from_static(b"--XY\r\nno end"), "XY").is_err());
    }
}
