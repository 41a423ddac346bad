//! `GET /api/models`: the Hub's model search over the catalog.
//!
//! What is implemented, as the Hub does it: `search` (every word must appear in the repo id,
//! case-insensitively), `filter` (repeated; each must be one of the model's tags), `sort`
//! (`downloads`, `likes`, `lastModified`, `createdAt`; `direction=-1` largest first, the
//! default, or `1`), `limit` (at most 1000), `expand` (repeated; only the named fields are sent
//! besides `_id` and `id`) and pagination through `Link: <…&cursor=N>; rel="next"`. Private
//! repos appear only to tokens that may read them.
//!
//! The listing's `gguf.total` and `safetensors.parameters` are derived from file sizes (the
//! generated files have no real parameter count): a GGUF file's size times 8 over its quant's
//! bits per weight, a safetensors file's size over 2 (`BF16`).

use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::repo::{Commit, RepoKind};
use crate::server::{Shared, hub_error};

/// Results per page when no `limit` is given, and the most a page holds.
pub(crate) const MAX_LIMIT: usize = 1000;

/// Approximate bits per weight of the quant a GGUF file name carries.
fn quant_bits(file: &str) -> f64 {
    let upper = file.to_ascii_uppercase();
    for (name, bits) in [
        ("IQ4_XS", 4.25),
        ("Q2_K", 2.63),
        ("Q3_K_M", 3.91),
        ("Q4_K_M", 4.89),
        ("Q4_0", 4.55),
        ("Q5_K_M", 5.69),
        ("Q6_K", 6.5625),
        ("Q8_0", 8.5),
        ("BF16", 16.0),
        ("F16", 16.0),
        ("F32", 32.0),
    ] {
        if upper.contains(name) {
            return bits;
        }
    }
    16.0
}

/// What the search knows of one model.
struct Listed {
    id: String,
    value: Value,
    tags: Vec<String>,
    downloads: u64,
    likes: u64,
    last_modified: String,
    created_at: String,
}

fn describe(
    id: &str,
    head: &Commit,
    created_at: String,
    downloads: u64,
    likes: u64,
    private: bool,
    gated: Option<&str>,
) -> Listed {
    let ggufs: Vec<_> = head
        .files
        .values()
        .filter(|f| f.path.ends_with(".gguf") && !f.path.contains("mmproj"))
        .collect();
    let safetensors: u64 = head
        .files
        .values()
        .filter(|f| f.path.ends_with(".safetensors"))
        .map(|f| f.size())
        .sum();
    let mut tags = Vec::new();
    let mut library = None;
    if !ggufs.is_empty() {
        tags.push("gguf".to_string());
        library = Some("gguf");
    }
    if safetensors > 0 {
        tags.push("safetensors".to_string());
        library = library.or(Some("transformers"));
    }
    if head.files.keys().any(|p| p.ends_with(".onnx")) {
        tags.push("onnx".to_string());
    }
    if let Some(lib) = library.filter(|lib| !tags.iter().any(|t| t == lib)) {
        tags.push(lib.to_string());
    }
    tags.push("text-generation".to_string());
    // The parameter count from the mid quant's file when there is one, else the first file.
    let gguf = ggufs
        .iter()
        .find(|f| f.path.contains("Q4_K_M"))
        .or_else(|| ggufs.first())
        .map(|f| {
            let params = (f.size() as f64 * 8.0 / quant_bits(&f.path)) as u64;
            json!({"total": params, "architecture": "llama", "context_length": 4096})
        });
    let mut value = json!({
        "_id": &head.sha[..24],
        "id": id,
        "modelId": id,
        "likes": likes,
        "downloads": downloads,
        "trendingScore": 0,
        "private": private,
        "gated": gated.map_or(Value::Bool(false), |g| Value::String(g.into())),
        "tags": tags,
        "pipeline_tag": "text-generation",
        "createdAt": created_at,
        "lastModified": head.date,
        "sha": head.sha,
    });
    if let Some(lib) = library {
        value["library_name"] = json!(lib);
    }
    if let Some(gguf) = gguf {
        value["gguf"] = gguf;
    }
    if safetensors > 0 {
        let params = safetensors / 2;
        value["safetensors"] = json!({"parameters": {"BF16": params}, "total": params});
    }
    Listed {
        id: id.to_string(),
        value,
        tags,
        downloads,
        likes,
        last_modified: head.date.clone(),
        created_at,
    }
}

/// The fields sent without `expand` (the Hub's default set).
const DEFAULT_FIELDS: &[&str] = &[
    "_id",
    "id",
    "modelId",
    "likes",
    "trendingScore",
    "private",
    "downloads",
    "tags",
    "pipeline_tag",
    "library_name",
    "createdAt",
];

/// Answers `GET /api/models`.
pub(crate) fn search(
    s: &Shared,
    parts: &Parts,
    pairs: &[(String, String)],
    caller: &Caller,
) -> Response {
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let all = |key: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k == key || *k == format!("{key}[]"))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let words: Vec<String> = get("search")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let filters = all("filter");
    let expand = all("expand");
    let sort = get("sort").unwrap_or("");
    if !matches!(
        sort,
        "" | "downloads" | "likes" | "lastModified" | "createdAt" | "trendingScore"
    ) {
        return hub_error(
            StatusCode::BAD_REQUEST,
            None,
            &format!("Invalid sort parameter: {sort}"),
            None,
        );
    }
    let ascending = get("direction") == Some("1");
    let limit = match get("limit").map(str::parse::<usize>) {
        None => MAX_LIMIT,
        Some(Ok(n)) if n > 0 => n.min(MAX_LIMIT),
        Some(_) => {
            return hub_error(StatusCode::BAD_REQUEST, None, "Invalid limit", None);
        }
    };
    let start = match get("cursor").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return hub_error(StatusCode::BAD_REQUEST, None, "Invalid cursor", None),
    };
    let mut found = Vec::new();
    for (kind, id) in s.catalog.repo_ids() {
        if kind != RepoKind::Model {
            continue;
        }
        let lower = id.to_ascii_lowercase();
        if !words.iter().all(|w| lower.contains(w.as_str())) {
            continue;
        }
        let listed = s.catalog.with_repo(kind, &id, |r| {
            if r.private && !matches!(caller, Caller::Token(a) if a.allows(&id)) {
                return None;
            }
            let head = r.resolve("main")?;
            let created = r
                .commits
                .values()
                .map(|c| c.date.clone())
                .min()
                .unwrap_or_else(|| head.date.clone());
            Some(describe(
                &id,
                &head,
                created,
                r.downloads,
                r.likes,
                r.private,
                r.gated.map(|g| g.as_str()),
            ))
        });
        let Some(Some(listed)) = listed else {
            continue;
        };
        if !filters
            .iter()
            .all(|f| listed.tags.iter().any(|t| t.eq_ignore_ascii_case(f)))
        {
            continue;
        }
        found.push(listed);
    }
    found.sort_by(|a, b| {
        let order = match sort {
            "likes" => a.likes.cmp(&b.likes),
            "lastModified" => a.last_modified.cmp(&b.last_modified),
            "createdAt" => a.created_at.cmp(&b.created_at),
            "downloads" => a.downloads.cmp(&b.downloads),
            _ => std::cmp::Ordering::Equal,
        };
        let order = if ascending { order } else { order.reverse() };
        order.then_with(|| a.id.cmp(&b.id))
    });
    let end = (start + limit).min(found.len());
    let page: Vec<Value> = found
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let keep = |k: &str| {
                if expand.is_empty() {
                    DEFAULT_FIELDS.contains(&k)
                } else {
                    k == "_id" || k == "id" || expand.contains(&k)
                }
            };
            let Value::Object(map) = &l.value else {
                return Value::Null;
            };
            Value::Object(
                map.iter()
                    .filter(|(k, _)| keep(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        })
        .collect();
    let mut response = axum::Json(Value::Array(page)).into_response();
    if end < found.len() {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs.iter().filter(|(k, _)| k != "cursor") {
            q.append_pair(k, v);
        }
        q.append_pair("cursor", &end.to_string());
        let link = format!(
            "<{}{}?{}>; rel=\"next\"",
            s.hub_url,
            parts.uri.path(),
            q.finish()
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}
