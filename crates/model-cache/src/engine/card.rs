//! A model's page: its card (the repo's `README.md`, rendered safe by [`crate::card`]), its
//! license and whether it is gated, with the Hub page where access is requested.

use serde::{Deserialize, Serialize};

use super::{Engine, EngineError};
use crate::hub::Gating;
use crate::repo::RepoId;
use crate::store::CachedLookup;

/// The most of a card that is read (a card is a few KiB; this bounds a hostile one).
const MAX_CARD_BYTES: usize = 1024 * 1024;
const CARD_FILE: &str = "README.md";

/// A model's page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPage {
    pub repo: String,
    pub revision: String,
    /// The commit the card was read at, when known.
    pub commit: Option<String>,
    /// The repo's page on the Hub: where its files are browsed and gated access is requested.
    pub page_url: String,
    /// `open`, `auto` (access granted on request) or `manual` (the authors review requests).
    pub gated: Gating,
    /// Whether this machine may read the repo's files (a gated repo refuses those who have not
    /// been granted access; `None` when it could not be told, e.g. offline).
    pub access: Option<bool>,
    /// The card's `license` (`mit`, `apache-2.0`, `other`), `license_name` and `license_link`.
    pub license: Option<String>,
    pub license_name: Option<String>,
    pub license_link: Option<String>,
    /// The card as sanitised HTML; `None` when the repo has no card (or it cannot be read).
    pub card_html: Option<String>,
    /// Read from the cache (offline, or the card is cached at that commit).
    pub from_cache: bool,
}

impl Engine {
    /// The page of `repo` at `revision` (default `main`): the card from the cache when it is
    /// there, else one small request for it; gating from the repo's info (online).
    pub async fn model_page(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
    ) -> Result<ModelPage, EngineError> {
        let revision = revision.unwrap_or("main").to_string();
        let hub = &self.inner.hub;
        let page_url = format!(
            "{}/{}{}",
            hub.endpoint().trim_end_matches('/'),
            repo.repo_type.url_prefix(),
            repo.id
        );
        let (commit, gated, has_card) = if hub.is_offline() {
            let commit = self.inner.cache.repo(repo).cached_commit(&revision);
            (commit, Gating::Open, None)
        } else {
            let info = hub.repo_info(repo, Some(&revision)).await?;
            let has_card = info.siblings.iter().any(|s| s.rfilename == CARD_FILE);
            (Some(info.sha), info.gated, Some(has_card))
        };
        let at = commit.clone().unwrap_or_else(|| revision.clone());
        let base = format!("{page_url}/blob/{at}/");
        let mut page = ModelPage {
            repo: repo.to_string(),
            revision: revision.clone(),
            commit: commit.clone(),
            page_url,
            gated: gated.clone(),
            access: None,
            license: None,
            license_name: None,
            license_link: None,
            card_html: None,
            from_cache: false,
        };
        let cached = match self.inner.cache.repo(repo).lookup_cached(&at, CARD_FILE) {
            CachedLookup::Found(path) => tokio::fs::read(&path).await.ok(),
            _ => None,
        };
        let markdown = match cached {
            Some(bytes) => {
                page.from_cache = true;
                Some(bytes)
            }
            None if has_card == Some(true) => match self.fetch_card(repo, &at).await {
                Ok(bytes) => {
                    page.access = Some(true);
                    Some(bytes)
                }
                Err(error) if gated != Gating::Open => {
                    tracing::debug!(%repo, %error, "The gated repo's card is not readable");
                    page.access = Some(false);
                    None
                }
                Err(error) => {
                    tracing::warn!(%repo, %error, "Could not read the model card");
                    None
                }
            },
            None => None,
        };
        if let Some(bytes) = markdown {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_CARD_BYTES)]);
            let card = crate::card::parse(&text, &base);
            page.license = card.license;
            page.license_name = card.license_name;
            page.license_link = card.license_link;
            page.card_html = Some(card.html);
        }
        Ok(page)
    }

    /// The card's bytes at `commit`, read whole (up to [`MAX_CARD_BYTES`]) in one request.
    async fn fetch_card(&self, repo: &RepoId, commit: &str) -> Result<Vec<u8>, EngineError> {
        let hub = &self.inner.hub;
        let url = hub.resolve_url(repo, commit, CARD_FILE);
        let mut response = hub.get_range(&url, None, None).await?;
        if !(200..300).contains(&response.status) {
            return Err(crate::hub::HubError::Http {
                status: response.status,
                url: crate::hub::redact_url(&url),
            }
            .into());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) =
            response
                .body
                .chunk()
                .await
                .map_err(|source| crate::hub::HubError::Network {
                    url: crate::hub::redact_url(&url),
                    proxy: None,
                    source,
                })?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() >= MAX_CARD_BYTES {
                break;
            }
        }
        Ok(bytes)
    }
}
