//! Conversions through the facade: planned against the cache, run in this process (the CLI)
//! or queued for the scheduler (the app and the local API), listed from our own area.

use std::sync::Arc;

use super::{Engine, EngineError};
use crate::convert::job::{self, ConvertContext, ConvertPlan};
use crate::convert::{ConvertRequest, Provenance};
use crate::download::{DownloadEvent, JobControl, Reporter};
use crate::index::queue::{NewQueueJob, QueueJob};
use crate::repo::RepoId;
use crate::selection::Selection;

impl Engine {
    pub(super) fn convert_context(&self) -> ConvertContext {
        ConvertContext {
            hub_cache: self.inner.settings.hub_cache.clone(),
            data_dir: self.inner.settings.data_dir.clone(),
            llama_cpp: self.inner.settings.llama_cpp_converter.clone(),
        }
    }

    /// Finds the cached source of a conversion, the converter that will run and the output
    /// path, without writing anything.
    pub fn plan_convert(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
        request: &ConvertRequest,
    ) -> Result<ConvertPlan, EngineError> {
        Ok(job::plan(
            &self.convert_context(),
            repo,
            revision.unwrap_or("main"),
            request,
        )?)
    }

    /// Converts in this process (off the async threads), reporting the output's bytes as
    /// [`DownloadEvent::Bytes`]; `control` pauses and cancels it.
    pub async fn convert(
        &self,
        plan: ConvertPlan,
        request: ConvertRequest,
        reporter: Arc<dyn Reporter>,
        control: JobControl,
    ) -> Result<Provenance, EngineError> {
        let context = self.convert_context();
        let repo = plan.repo.clone();
        let commit = plan.commit.clone();
        let provenance = tokio::task::spawn_blocking(move || {
            let path = plan
                .output
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = plan.repo.to_string();
            let mut report = |done: u64, total: u64| {
                reporter.report(DownloadEvent::Bytes {
                    repo: name.clone(),
                    path: path.clone(),
                    done,
                    total,
                });
            };
            job::run(&context, &plan, &request, &mut report, Some(&control))
        })
        .await
        .map_err(|e| {
            crate::convert::ConvertError::io(
                "run the conversion of",
                std::path::Path::new(&repo.id),
                std::io::Error::other(e.to_string()),
            )
        })??;
        // The source was used: LRU eviction should not pick it first.
        self.touch(
            &repo,
            crate::policy::usage::Used::CachedFile {
                revision: &commit,
                file: "config.json",
            },
        );
        Ok(provenance)
    }

    /// Queues a conversion; the scheduler runs it like a download. The source must be in the
    /// cache now (checked here, so a mistake is reported at once).
    pub fn enqueue_convert(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
        request: &ConvertRequest,
    ) -> Result<QueueJob, EngineError> {
        let plan = self.plan_convert(repo, revision, request)?;
        Ok(self.inner.scheduler.enqueue(NewQueueJob {
            repo: repo.clone(),
            revision: plan.commit.clone(),
            selection: Selection::default(),
            priority: 0,
            bytes_total: Some(plan.estimated_bytes),
            convert: Some(request.clone()),
        })?)
    }

    /// The converted models in our own area, newest first.
    pub fn converted(&self) -> Vec<Provenance> {
        job::list(&self.inner.settings.data_dir)
    }
}
