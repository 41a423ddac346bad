//! Conversions as queue jobs: the [`ConvertRunner`] the scheduler starts for a job whose
//! `convert` is set, like a download (deferred, paused, resumed, cancelled by the same
//! control), reporting the output's bytes as progress.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::job::{self, ConvertContext};
use super::{ConvertError, ConvertRequest};
use crate::download::{DownloadEvent, JobControl, Reporter};
use crate::index::queue::QueueJob;
use crate::scheduler::{JobRunner, RunFailure, RunSummary, StartedJob};

/// Runs conversion jobs.
#[derive(Clone)]
pub struct ConvertRunner {
    pub context: ConvertContext,
}

fn failure(error: ConvertError) -> RunFailure {
    match error {
        ConvertError::Cancelled => RunFailure::Cancelled,
        other => RunFailure::Failed {
            kind: other.kind(),
            message: other.to_string(),
            hints: other.hints(),
            transient: false,
        },
    }
}

fn request_of(job: &QueueJob) -> Result<ConvertRequest, RunFailure> {
    job.convert.clone().ok_or_else(|| RunFailure::Failed {
        kind: crate::error::ErrorKind::InvalidJob,
        message: format!("Job {} is not a conversion", job.id),
        hints: Vec::new(),
        transient: false,
    })
}

impl JobRunner for ConvertRunner {
    fn size(&self, job: &QueueJob) -> BoxFuture<'static, Result<Option<u64>, RunFailure>> {
        let context = self.context.clone();
        let job = job.clone();
        Box::pin(async move {
            let request = request_of(&job)?;
            let plan = tokio::task::spawn_blocking(move || {
                job::plan(&context, &job.repo, &job.revision, &request)
            })
            .await
            .map_err(|e| RunFailure::Failed {
                kind: crate::error::ErrorKind::Io,
                message: e.to_string(),
                hints: Vec::new(),
                transient: false,
            })?
            .map_err(failure)?;
            Ok(Some(plan.estimated_bytes))
        })
    }

    fn start(&self, job: &QueueJob, reporter: Arc<dyn Reporter>) -> StartedJob {
        let control = JobControl::new();
        let inner = control.clone();
        let context = self.context.clone();
        let job = job.clone();
        let outcome = Box::pin(async move {
            let request = request_of(&job)?;
            let result = tokio::task::spawn_blocking(move || {
                let plan = job::plan(&context, &job.repo, &job.revision, &request)?;
                let repo = job.repo.to_string();
                let path = plan
                    .output
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut report = |done: u64, total: u64| {
                    reporter.report(DownloadEvent::Bytes {
                        repo: repo.clone(),
                        path: path.clone(),
                        done,
                        total,
                    });
                };
                job::run(&context, &plan, &request, &mut report, Some(&inner))
            })
            .await;
            match result {
                Ok(Ok(provenance)) => Ok(RunSummary {
                    bytes_downloaded: 0,
                    bytes_saved: 0,
                    commit: Some(provenance.commit),
                }),
                Ok(Err(error)) => Err(failure(error)),
                Err(join) => Err(RunFailure::Failed {
                    kind: crate::error::ErrorKind::Io,
                    message: format!("The conversion stopped: {join}"),
                    hints: Vec::new(),
                    transient: false,
                }),
            }
        });
        StartedJob { control, outcome }
    }
}

/// Runs downloads with one runner and conversions with another.
pub struct RoutingRunner {
    pub downloads: Arc<dyn JobRunner>,
    pub conversions: Arc<dyn JobRunner>,
}

impl RoutingRunner {
    fn pick(&self, job: &QueueJob) -> &Arc<dyn JobRunner> {
        if job.convert.is_some() {
            &self.conversions
        } else {
            &self.downloads
        }
    }
}

impl JobRunner for RoutingRunner {
    fn size(&self, job: &QueueJob) -> BoxFuture<'static, Result<Option<u64>, RunFailure>> {
        self.pick(job).size(job)
    }

    fn start(&self, job: &QueueJob, reporter: Arc<dyn Reporter>) -> StartedJob {
        self.pick(job).start(job, reporter)
    }
}
