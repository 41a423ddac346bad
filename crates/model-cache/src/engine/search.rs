//! Searching the Hub for models: one listing request per page, each result described from the
//! listing alone (formats, a size estimate and its fit on this machine), so a page of results
//! costs one request however many results it holds.

use serde::{Deserialize, Serialize};

use crate::fit::{self, FitEstimate, MachineMemory, PREFERRED_QUANT};
use crate::formats::ggml::quant_bits_per_weight;
use crate::hub::search::{ListedModel, MAX_SEARCH_LIMIT};
use crate::hub::{Gating, SearchQuery, SearchSort};
use crate::repo::RepoId;

use super::{Engine, EngineError};

/// Results per page when the caller names no limit.
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;

/// A search from an edge: words, tags, order and page size, or the cursor of a next page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub query: String,
    pub filter: Vec<String>,
    pub sort: SearchSort,
    /// Results per page; `None` is [`DEFAULT_SEARCH_LIMIT`].
    pub limit: Option<u32>,
    /// A [`SearchReport::next`] cursor: the next page of the same search (the other fields
    /// are then ignored).
    pub cursor: Option<String>,
}

/// What a search result's size estimate is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeEstimate {
    /// The variant the size is for: a quant (`Q4_K_M`, the default choice) or a dtype (`BF16`).
    pub variant: String,
    pub weights_bytes: u64,
    /// Parameters, as the Hub counted them.
    pub parameters: u64,
}

/// One model of a search, as a result row shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResultView {
    pub repo: String,
    pub downloads: u64,
    pub likes: u64,
    /// ISO-8601, as the Hub sent it.
    pub last_modified: Option<String>,
    /// `gguf`, `safetensors`, `mlx`, `onnx`: the weight formats the listing names.
    pub formats: Vec<String>,
    pub pipeline_tag: Option<String>,
    pub gated: Gating,
    /// The size of the variant a download would take by default, when the listing says enough.
    pub size: Option<SizeEstimate>,
    /// Whether that size fits this machine (`None` without a size).
    pub fit: Option<FitEstimate>,
    /// Whether the cache holds a snapshot of the repo's `main`.
    pub cached: bool,
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchReport {
    pub results: Vec<SearchResultView>,
    /// The cursor of the next page, `None` on the last one.
    pub next: Option<String>,
    pub machine: MachineMemory,
}

/// The formats a listed model names, in a fixed order.
pub fn listed_formats(model: &ListedModel) -> Vec<String> {
    let has = |tag: &str| {
        model.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
            || model
                .library_name
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case(tag))
    };
    let mut out = Vec::new();
    if has("gguf") || model.gguf.is_some() {
        out.push("gguf".to_string());
    }
    if has("safetensors") || model.safetensors.is_some() {
        out.push("safetensors".to_string());
    }
    if has("mlx") {
        out.push("mlx".to_string());
    }
    if has("onnx") {
        out.push("onnx".to_string());
    }
    out
}

/// The size of the default download of a listed model: the preferred quant of a GGUF repo
/// (parameters × its bits per weight), else the safetensors weights.
pub fn listed_size(model: &ListedModel) -> Option<SizeEstimate> {
    if let Some(params) = model.gguf.as_ref().and_then(|g| g.total).filter(|p| *p > 0) {
        let bits = quant_bits_per_weight(PREFERRED_QUANT).unwrap_or(4.89);
        return Some(SizeEstimate {
            variant: PREFERRED_QUANT.to_string(),
            weights_bytes: (params as f64 * bits / 8.0) as u64,
            parameters: params,
        });
    }
    let st = model.safetensors.as_ref()?;
    let weights = st.weights_bytes();
    if weights == 0 {
        return None;
    }
    let dominant = st
        .parameters
        .iter()
        .max_by_key(|(_, count)| **count)
        .map(|(dtype, _)| dtype.clone())
        .unwrap_or_default();
    Some(SizeEstimate {
        variant: dominant,
        weights_bytes: weights,
        parameters: st.total.unwrap_or_else(|| st.parameters.values().sum()),
    })
}

impl Engine {
    /// One page of a model search of the Hub. Nothing but the listing is asked for.
    pub async fn search(&self, request: &SearchRequest) -> Result<SearchReport, EngineError> {
        let page = match request.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(cursor) => self.inner.hub.search_models_next(cursor).await?,
            None => {
                let limit = request.limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
                if limit == 0 || limit > MAX_SEARCH_LIMIT {
                    return Err(EngineError::InvalidSearch {
                        reason: format!(
                            "a page holds 1 to {MAX_SEARCH_LIMIT} results, not {limit}"
                        ),
                    });
                }
                let query = SearchQuery {
                    search: request.query.trim().to_string(),
                    filter: request.filter.clone(),
                    sort: request.sort,
                    limit,
                };
                self.inner.hub.search_models(&query).await?
            }
        };
        let machine = self.inner.machine.memory();
        let results =
            page.models
                .iter()
                .map(|model| {
                    let size = listed_size(model);
                    let fit = size.as_ref().map(|s| {
                        fit::estimate_bytes(
                            s.weights_bytes,
                            model.gguf.as_ref().and_then(|g| g.context_length),
                            None,
                            &machine,
                            &self.inner.fit,
                        )
                    });
                    let cached = model.id.parse::<RepoId>().is_ok_and(|repo| {
                        self.inner.cache.repo(&repo).cached_commit("main").is_some()
                    });
                    SearchResultView {
                        repo: model.id.clone(),
                        downloads: model.downloads,
                        likes: model.likes,
                        last_modified: model.last_modified.clone(),
                        formats: listed_formats(model),
                        pipeline_tag: model.pipeline_tag.clone(),
                        gated: model.gated.clone(),
                        size,
                        fit,
                        cached,
                    }
                })
                .collect();
        Ok(SearchReport {
            results,
            next: page.next,
            machine,
        })
    }
}
