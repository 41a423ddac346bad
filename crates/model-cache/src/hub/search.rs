//! Model search: `GET /api/models?search=…&filter=…&sort=…&limit=…`, one page at a time.
//!
//! The Hub pages the results with a `Link: <…>; rel="next"` header, like the tree listing. A
//! [`SearchPage`] keeps that link as an opaque cursor; [`HubClient::search_models_next`] follows
//! it only on the endpoint's own origin, so a cursor handed back by a caller cannot send the
//! request (or the token) anywhere else.
//!
//! Each result carries what the listing itself says (`expand=` fields): downloads, likes, the
//! last change, tags, gating, and the parameter counts the Hub reads from GGUF and safetensors
//! headers. No per-result request is made: the Hub rate-limits, and a page of 20 results would
//! cost 20 more requests.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::error::{HubError, redact_url};
use super::types::Gating;
use super::{HubClient, next_link, read_json, same_origin};

/// Most results one page may ask for (the Hub's own cap is 1000; a window shows far fewer).
pub const MAX_SEARCH_LIMIT: u32 = 100;

/// The `expand` fields a search asks for: what a result row shows and what its fit badge needs.
pub const SEARCH_EXPAND: &[&str] = &[
    "downloads",
    "likes",
    "lastModified",
    "tags",
    "library_name",
    "pipeline_tag",
    "gated",
    "gguf",
    "safetensors",
];

/// How results are ordered (always the largest first, as the Hub's site does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchSort {
    #[default]
    Downloads,
    Likes,
    LastModified,
}

impl SearchSort {
    /// The `sort` value on the wire.
    pub fn as_wire(self) -> &'static str {
        match self {
            SearchSort::Downloads => "downloads",
            SearchSort::Likes => "likes",
            SearchSort::LastModified => "lastModified",
        }
    }

    /// Parses `downloads`, `likes` or `last_modified` (`lastModified` too).
    pub fn parse(text: &str) -> Option<SearchSort> {
        match text {
            "downloads" => Some(SearchSort::Downloads),
            "likes" => Some(SearchSort::Likes),
            "last_modified" | "lastModified" => Some(SearchSort::LastModified),
            _ => None,
        }
    }
}

/// A search of the Hub's models.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Words to look for in repo ids; empty lists every model.
    pub search: String,
    /// Tags every result must have (`gguf`, `safetensors`, `mlx`, `onnx`, a library, a task).
    pub filter: Vec<String>,
    pub sort: SearchSort,
    /// Results per page, 1 to [`MAX_SEARCH_LIMIT`].
    pub limit: u32,
}

/// `gguf` of a listed model: what the Hub read from its GGUF files' headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ListedGguf {
    /// Parameter count.
    pub total: Option<u64>,
    pub architecture: Option<String>,
    pub context_length: Option<u64>,
}

/// `safetensors` of a listed model: parameter counts by dtype.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ListedSafetensors {
    pub parameters: std::collections::BTreeMap<String, u64>,
    pub total: Option<u64>,
}

impl ListedSafetensors {
    /// Bytes of the weights, from the parameter count of each dtype (unknown dtypes: 2 bytes).
    pub fn weights_bytes(&self) -> u64 {
        self.parameters
            .iter()
            .map(|(dtype, count)| {
                let bytes = match dtype.to_ascii_uppercase().as_str() {
                    "F64" | "I64" | "U64" => 8,
                    "F32" | "I32" | "U32" => 4,
                    "I8" | "U8" | "BOOL" => 1,
                    d if d.starts_with("F8") => 1,
                    _ => 2,
                };
                count.saturating_mul(bytes)
            })
            .sum()
    }
}

/// One model of a search result, as the listing describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedModel {
    pub id: String,
    pub downloads: u64,
    pub likes: u64,
    /// ISO-8601 as sent by the Hub.
    pub last_modified: Option<String>,
    pub tags: Vec<String>,
    pub library_name: Option<String>,
    pub pipeline_tag: Option<String>,
    pub gated: Gating,
    pub gguf: Option<ListedGguf>,
    pub safetensors: Option<ListedSafetensors>,
}

/// One page of results and the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchPage {
    pub models: Vec<ListedModel>,
    /// The next page's URL (from `Link`), or `None` on the last page.
    pub next: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawListedModel {
    id: String,
    #[serde(default)]
    downloads: Option<u64>,
    #[serde(default)]
    likes: Option<u64>,
    #[serde(default)]
    last_modified: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default, rename = "library_name")]
    library_name: Option<String>,
    #[serde(default, rename = "pipeline_tag")]
    pipeline_tag: Option<String>,
    #[serde(default)]
    gated: Option<serde_json::Value>,
    #[serde(default)]
    gguf: Option<RawGguf>,
    #[serde(default)]
    safetensors: Option<RawSafetensors>,
}

#[derive(Deserialize)]
struct RawGguf {
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    context_length: Option<u64>,
}

#[derive(Deserialize)]
struct RawSafetensors {
    #[serde(default)]
    parameters: Option<std::collections::BTreeMap<String, u64>>,
    #[serde(default)]
    total: Option<u64>,
}

impl RawListedModel {
    fn into_model(self) -> ListedModel {
        let gated = match self.gated {
            Some(serde_json::Value::String(s)) if s == "manual" => Gating::Manual,
            Some(serde_json::Value::String(s)) if s == "auto" => Gating::Auto,
            Some(serde_json::Value::Bool(true)) => Gating::Auto,
            _ => Gating::Open,
        };
        ListedModel {
            id: self.id,
            downloads: self.downloads.unwrap_or(0),
            likes: self.likes.unwrap_or(0),
            last_modified: self.last_modified,
            tags: self.tags.unwrap_or_default(),
            library_name: self.library_name,
            pipeline_tag: self.pipeline_tag,
            gated,
            gguf: self.gguf.map(|g| ListedGguf {
                total: g.total,
                architecture: g.architecture,
                context_length: g.context_length,
            }),
            safetensors: self.safetensors.map(|s| ListedSafetensors {
                parameters: s.parameters.unwrap_or_default(),
                total: s.total,
            }),
        }
    }
}

/// The URL of a search's first page on `base`.
pub fn search_url(base: &str, query: &SearchQuery) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    let words = query.search.trim();
    if !words.is_empty() {
        q.append_pair("search", words);
    }
    for tag in query.filter.iter().filter(|t| !t.trim().is_empty()) {
        q.append_pair("filter", tag.trim());
    }
    q.append_pair("sort", query.sort.as_wire());
    q.append_pair("direction", "-1");
    q.append_pair("limit", &query.limit.clamp(1, MAX_SEARCH_LIMIT).to_string());
    for field in SEARCH_EXPAND {
        q.append_pair("expand", field);
    }
    format!("{}/api/models?{}", base.trim_end_matches('/'), q.finish())
}

impl HubClient {
    /// The first page of a model search, from the endpoint (mirrors serve files, not search).
    pub async fn search_models(&self, query: &SearchQuery) -> Result<SearchPage, HubError> {
        self.check_online(|| "search the Hub".to_string())?;
        let url = search_url(self.endpoint(), query);
        self.search_page(url).await
    }

    /// The page a [`SearchPage::next`] cursor names. A cursor on another origin than the
    /// endpoint is refused.
    pub async fn search_models_next(&self, cursor: &str) -> Result<SearchPage, HubError> {
        self.check_online(|| "search the Hub".to_string())?;
        if !same_origin(cursor, self.endpoint()) || !cursor.contains("/api/models?") {
            return Err(HubError::InvalidResponse {
                url: redact_url(cursor),
                reason: "the search cursor is not a page of this endpoint's model search".into(),
            });
        }
        self.search_page(cursor.to_string()).await
    }

    async fn search_page(&self, url: String) -> Result<SearchPage, HubError> {
        let what = "a page of search results".to_string();
        super::retry::with_retry(self.retry_policy(), &what, |_| {
            let url = url.clone();
            async move {
                let response = self.send_unscoped(Method::GET, &url).await?;
                let next = next_link(response.headers(), &url);
                let raw: Vec<RawListedModel> = read_json(response, &url, self.json_limit()).await?;
                let next = match next {
                    Some(next) if !same_origin(&next, &url) => {
                        return Err(HubError::InvalidResponse {
                            url: redact_url(&url),
                            reason: format!(
                                "the next page `{}` is on another origin",
                                redact_url(&next)
                            ),
                        });
                    }
                    Some(next) if next == url => None,
                    other => other,
                };
                Ok::<_, HubError>(SearchPage {
                    models: raw.into_iter().map(RawListedModel::into_model).collect(),
                    next,
                })
            }
        })
        .await
        .map_err(HubError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_page_url_names_every_parameter() {
        let url = search_url(
            "https://huggingface.co/",
            &SearchQuery {
                search: " llama 3 ".into(),
                filter: vec!["gguf".into(), " ".into()],
                sort: SearchSort::LastModified,
                limit: 5000,
            },
        );
        assert_eq!(
            url,
            "https://huggingface.co/api/models?search=llama+3&filter=gguf&sort=lastModified&direction=-1&limit=100&expand=downloads&expand=likes&expand=lastModified&expand=tags&expand=library_name&expand=pipeline_tag&expand=gated&expand=gguf&expand=safetensors"
        );
        assert!(search_url("http://h", &SearchQuery::default()).contains("limit=1&"));
    }

    #[test]
    fn sorts_parse_from_the_contract_and_the_wire() {
        assert_eq!(
            SearchSort::parse("last_modified"),
            Some(SearchSort::LastModified)
        );
        assert_eq!(
            SearchSort::parse("lastModified"),
            Some(SearchSort::LastModified)
        );
        assert_eq!(SearchSort::parse("likes"), Some(SearchSort::Likes));
        assert_eq!(SearchSort::parse("trending"), None);
    }

    #[test]
    fn listed_models_read_the_hub_fields() {
        let raw: Vec<RawListedModel> = serde_json::from_str(
            r#"[{"_id":"x","id":"o/m","downloads":12,"likes":3,"lastModified":"2024-01-01T00:00:00.000Z",
                "tags":["gguf"],"library_name":"gguf","gated":"manual",
                "gguf":{"total":8030261248,"architecture":"llama","context_length":131072},
                "safetensors":{"parameters":{"BF16":1000,"F32":10},"total":1010}},
               {"id":"legacy"}]"#,
        )
        .unwrap();
        let models: Vec<ListedModel> = raw.into_iter().map(RawListedModel::into_model).collect();
        assert_eq!(models[0].gated, Gating::Manual);
        assert_eq!(models[0].gguf.as_ref().unwrap().total, Some(8_030_261_248));
        assert_eq!(
            models[0].safetensors.as_ref().unwrap().weights_bytes(),
            2040
        );
        assert_eq!(models[1].downloads, 0);
        assert!(models[1].tags.is_empty());
        assert_eq!(models[1].gated, Gating::Open);
    }
}
