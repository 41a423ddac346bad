//! "A newer commit is available": the cache follows the branches it was pulled from (`refs/main`
//! and the like); a background check asks the Hub, one small request per followed ref and at
//! most once per [`UpdateCheckPolicy::per_ref`], which commit each names now, and marks the
//! models whose branch moved. The user updates with one action ([`Engine::update`]: the same
//! files at the branch's new commit; files whose hash did not change are not downloaded again)
//! or keeps the current commit ([`Engine::hold`]: the checks leave that ref alone).
//!
//! Checks never run offline, and the background loop skips them on a metered connection.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Engine, EngineError, PullPlan, PullRequest};
use crate::index::queue::QueueJob;
use crate::repo::RepoId;
use crate::scheduler::SchedulerEvent;
use crate::store::Inventory;
use crate::store::is_commit_hash;

/// Only `Some(true)` stops the background checks.
pub use crate::policy::{MeteredProbe, UnknownMetering};

/// How often the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateCheckPolicy {
    /// The background loop wakes this often.
    pub every: Duration,
    /// Its first round waits this long after start (start-up stays quiet).
    pub first_after: Duration,
    /// A ref is asked about at most once in this time (a forced check ignores it).
    pub per_ref: Duration,
    /// Pause between two requests of one round.
    pub spacing: Duration,
}

impl Default for UpdateCheckPolicy {
    fn default() -> Self {
        UpdateCheckPolicy {
            every: Duration::from_secs(30 * 60),
            first_after: Duration::from_secs(60),
            per_ref: Duration::from_secs(6 * 3600),
            spacing: Duration::from_millis(500),
        }
    }
}

/// A followed ref of a cached model whose branch has moved on the Hub.
///
/// **API Boundary:** part of [`super::CachedRepoView`] and of the `updates_found` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateView {
    pub repo: String,
    /// The branch (or tag) followed: `main`.
    pub branch: String,
    /// The commit the cache holds for it.
    pub commit: String,
    /// The commit the Hub named at the last check.
    pub latest: String,
    /// Unix milliseconds of that check.
    pub checked_at: i64,
}

/// A ref the user keeps at its current commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldView {
    pub branch: String,
    pub commit: String,
    /// Unix milliseconds.
    pub held_at: i64,
}

/// What one round of checks did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateCheckReport {
    /// Refs asked about (one request each).
    pub checked: usize,
    /// Refs asked about recently enough to be left alone this round.
    pub recent: usize,
    /// Refs the user keeps where they are.
    pub held: usize,
    /// Every followed ref with a newer commit, after this round.
    pub updates: Vec<UpdateView>,
    /// Refs whose check failed: `(repo, branch, error kind)`.
    pub failed: Vec<(String, String, String)>,
    /// Why no request was made at all (`offline`, `metered`).
    pub skipped: Option<String>,
}

/// The refs of the cache that follow a branch or tag: `(repo, ref, commit)`.
fn followed_refs(engine: &Engine) -> Result<Vec<(RepoId, String, String)>, EngineError> {
    let inventory = engine.inner.scheduler.janitor().scan()?;
    Ok(followed_in(&inventory))
}

/// [`followed_refs`] of an inventory already scanned.
pub(super) fn followed_in(inventory: &Inventory) -> Vec<(RepoId, String, String)> {
    followed(inventory.repos.iter().flat_map(|repo| {
        repo.revisions
            .iter()
            .map(move |r| (&repo.repo, r.commit.as_str(), r.refs.as_slice()))
    }))
}

/// [`followed_in`] for the library's listing.
pub(super) fn followed_in_listing(
    listed: &[crate::policy::cleanup::ListedRepo],
) -> Vec<(RepoId, String, String)> {
    followed(listed.iter().flat_map(|l| {
        l.listing
            .revisions
            .iter()
            .map(move |r| (&l.listing.repo, r.commit.as_str(), r.refs.as_slice()))
    }))
}

/// The followed refs among `(repo, commit, refs)` revisions.
fn followed<'a>(
    revisions: impl Iterator<Item = (&'a RepoId, &'a str, &'a [String])>,
) -> Vec<(RepoId, String, String)> {
    let mut out = Vec::new();
    for (repo, commit, refs) in revisions {
        for name in refs {
            // `refs/pr/N` are pull requests, not something a model follows.
            if !is_commit_hash(name) && !name.starts_with("pr/") {
                out.push((repo.clone(), name.clone(), commit.to_string()));
            }
        }
    }
    out
}

impl Engine {
    /// Asks the Hub which commit each followed ref names now and records it. Refs checked within
    /// `policy.per_ref` are skipped unless `force`; held refs always are. Nothing is asked
    /// offline, or on a metered connection unless `force` (the user asked).
    pub async fn check_updates(
        &self,
        policy: &UpdateCheckPolicy,
        metered: Option<bool>,
        force: bool,
    ) -> Result<UpdateCheckReport, EngineError> {
        let mut report = UpdateCheckReport::default();
        if self.inner.hub.is_offline() {
            report.skipped = Some("offline".into());
            report.updates = self.updates()?;
            return Ok(report);
        }
        if metered == Some(true) && !force {
            report.skipped = Some("metered".into());
            report.updates = self.updates()?;
            return Ok(report);
        }
        // One scan of the cache serves the round: before, the checks, and after.
        let refs = followed_refs(self)?;
        let before = self.updates_of(&refs)?;
        let now = crate::index::now_ms();
        let mut first = true;
        for (repo, name, local) in refs.iter().cloned() {
            let index = &self.inner.index;
            if index
                .held_refs(&repo)?
                .iter()
                .any(|held| held.ref_name == name)
            {
                report.held += 1;
                continue;
            }
            if !force
                && let Some(at) = index.ref_checked_at(&repo, &name)?
                && now.saturating_sub(at) < policy.per_ref.as_millis() as i64
            {
                report.recent += 1;
                continue;
            }
            if !first {
                tokio::time::sleep(policy.spacing).await;
            }
            first = false;
            report.checked += 1;
            match self.inner.hub.revision_commit(&repo, &name).await {
                Ok(remote) => index.record_ref_check(&repo, &name, &local, Ok(&remote))?,
                Err(error) => {
                    let kind = error.kind().as_str().to_string();
                    tracing::debug!(%repo, %name, %error, "update check failed");
                    index.record_ref_check(&repo, &name, &local, Err(&kind))?;
                    report.failed.push((repo.to_string(), name, kind));
                }
            }
        }
        report.updates = self.updates_of(&refs)?;
        // Tell the listeners about news only: an update already announced is not announced at
        // every round.
        let news: Vec<UpdateView> = report
            .updates
            .iter()
            .filter(|u| {
                !before
                    .iter()
                    .any(|b| b.repo == u.repo && b.branch == u.branch && b.latest == u.latest)
            })
            .cloned()
            .collect();
        if !news.is_empty() {
            self.inner
                .scheduler
                .publish(SchedulerEvent::UpdatesFound { updates: news });
        }
        Ok(report)
    }

    /// Every followed ref whose branch has a newer commit than the cache holds, as the last
    /// checks saw it (no request).
    pub fn updates(&self) -> Result<Vec<UpdateView>, EngineError> {
        self.updates_of(&followed_refs(self)?)
    }

    /// [`Engine::updates`] over followed refs already scanned.
    fn updates_of(
        &self,
        refs: &[(RepoId, String, String)],
    ) -> Result<Vec<UpdateView>, EngineError> {
        let mut out = Vec::new();
        let mut seen: Vec<&RepoId> = Vec::new();
        for (repo, _, _) in refs {
            if seen.contains(&repo) {
                continue;
            }
            seen.push(repo);
            out.extend(self.repo_updates(repo, refs)?);
        }
        Ok(out)
    }

    /// The updates of one repo, given the followed refs of the cache.
    fn repo_updates(
        &self,
        repo: &RepoId,
        refs: &[(RepoId, String, String)],
    ) -> Result<Vec<UpdateView>, EngineError> {
        let index = &self.inner.index;
        let held = index.held_refs(repo)?;
        let mut out = Vec::new();
        for check in index.ref_checks(repo)? {
            let Some(latest) = check.remote else { continue };
            if held.iter().any(|h| h.ref_name == check.ref_name) {
                continue;
            }
            // Against the ref as it is now: a pull by any tool that moved it ends the update.
            let Some((_, _, commit)) = refs
                .iter()
                .find(|(r, name, _)| r == repo && *name == check.ref_name)
            else {
                continue;
            };
            if *commit != latest {
                out.push(UpdateView {
                    repo: repo.to_string(),
                    branch: check.ref_name,
                    commit: commit.clone(),
                    latest,
                    checked_at: check.checked_at,
                });
            }
        }
        Ok(out)
    }

    /// The updates and held refs of one repo, for [`super::CachedRepoView`].
    pub(super) fn update_state(
        &self,
        repo: &RepoId,
        refs: &[(RepoId, String, String)],
    ) -> Result<(Vec<UpdateView>, Vec<HeldView>), EngineError> {
        let held = self
            .inner
            .index
            .held_refs(repo)?
            .into_iter()
            .map(|h| HeldView {
                branch: h.ref_name,
                commit: h.commit,
                held_at: h.held_at,
            })
            .collect();
        Ok((self.repo_updates(repo, refs)?, held))
    }

    /// Keeps `branch` of a cached model at the commit the cache holds: the update checks leave
    /// it alone until [`Engine::follow`].
    pub fn hold(&self, repo: &RepoId, branch: &str) -> Result<HeldView, EngineError> {
        let commit = self
            .inner
            .cache
            .repo(repo)
            .read_ref(branch)
            .filter(|c| is_commit_hash(c))
            .ok_or_else(|| EngineError::NotCached {
                repo: format!("{repo}@{branch}"),
            })?;
        self.inner.index.hold_ref(repo, branch, &commit)?;
        Ok(HeldView {
            branch: branch.to_string(),
            commit,
            held_at: crate::index::now_ms(),
        })
    }

    /// Follows `branch` again (the next check looks at it). Returns whether it was held.
    pub fn follow(&self, repo: &RepoId, branch: &str) -> Result<bool, EngineError> {
        Ok(self.inner.index.release_ref(repo, branch)?)
    }

    /// Plans the update of a followed ref: the files the cached snapshot has, at the branch's
    /// commit now. Files the new commit no longer has are left out; files whose hash did not
    /// change are already cached and cost nothing.
    pub async fn plan_update(&self, repo: &RepoId, branch: &str) -> Result<PullPlan, EngineError> {
        let repo_cache = self.inner.cache.repo(repo);
        let commit = repo_cache
            .read_ref(branch)
            .filter(|c| is_commit_hash(c))
            .ok_or_else(|| EngineError::NotCached {
                repo: format!("{repo}@{branch}"),
            })?;
        let held: Vec<String> = repo_cache
            .snapshot_files(&commit)
            .into_iter()
            .map(|f| f.path)
            .collect();
        let (entries, _, _) = self.listing(repo, branch).await?;
        let files: Vec<String> = entries
            .iter()
            .filter(|e| held.contains(&e.path))
            .map(|e| e.path.clone())
            .collect();
        if files.is_empty() {
            return Err(EngineError::NothingSelected {
                repo: repo.to_string(),
            });
        }
        self.plan_pull(&PullRequest {
            repo: Some(repo.clone()),
            revision: Some(branch.to_string()),
            files,
            ..PullRequest::default()
        })
        .await
    }

    /// Queues the update of a followed ref ([`Engine::plan_update`]) and releases a hold on it.
    pub async fn update(&self, repo: &RepoId, branch: &str) -> Result<QueueJob, EngineError> {
        let plan = self.plan_update(repo, branch).await?;
        let job = self.enqueue(&plan)?;
        self.inner.index.release_ref(repo, branch)?;
        Ok(job)
    }

    /// Lets the scheduler know whether the connection is metered (read from `probe` now and
    /// every 30 s), for the "on a metered connection" policy. Ends when the engine shuts down.
    pub fn watch_metering(&self, probe: Arc<dyn MeteredProbe>) -> tokio::task::JoinHandle<()> {
        self.inner
            .scheduler
            .watch_metering(probe, std::time::Duration::from_secs(30))
    }

    /// Runs [`Engine::check_updates`] in the background, every `policy.every`, skipping rounds
    /// while the connection is metered. Ends when the engine shuts down.
    pub fn spawn_update_checks(
        &self,
        policy: UpdateCheckPolicy,
        probe: Arc<dyn MeteredProbe>,
    ) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(policy.first_after).await;
            loop {
                if engine.inner.scheduler.is_shut_down() {
                    break;
                }
                let asked = Arc::clone(&probe);
                let metered = tokio::task::spawn_blocking(move || asked.metered())
                    .await
                    .unwrap_or(None);
                match engine.check_updates(&policy, metered, false).await {
                    Ok(report) => tracing::debug!(?report, "update checks"),
                    Err(error) => tracing::warn!(%error, "update checks failed"),
                }
                tokio::time::sleep(policy.every).await;
            }
        })
    }
}
