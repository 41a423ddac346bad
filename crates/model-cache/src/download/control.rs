//! Pause, resume and cancel for one download job.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The handle a caller keeps to steer a running job. Cloning shares it.
///
/// Pausing closes the job's connections at the next read and keeps every byte written; resuming
/// reconnects from where each range stopped. Cancelling stops the job, removes the `.incomplete`
/// files and index rows of files it had not finished, and leaves finished files in place.
#[derive(Clone)]
pub struct JobControl {
    cancel: CancellationToken,
    paused: watch::Sender<bool>,
}

impl Default for JobControl {
    fn default() -> Self {
        JobControl {
            cancel: CancellationToken::new(),
            paused: watch::Sender::new(false),
        }
    }
}

impl JobControl {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    pub fn cancel(&self) {
        self.cancel.cancel();
        // A paused job must wake up to notice.
        self.paused.send_replace(false);
    }

    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the job is cancelled.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Resolves when the job becomes paused (at once if it is).
    pub async fn paused(&self) {
        let mut receiver = self.paused.subscribe();
        let _ = receiver.wait_for(|paused| *paused).await;
    }

    /// Resolves when the job is not paused (at once if it is running).
    pub async fn running(&self) {
        let mut receiver = self.paused.subscribe();
        let _ = receiver.wait_for(|paused| !*paused).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn pause_resume_cancel() {
        let control = JobControl::new();
        assert!(control.running().now_or_never().is_some());
        assert!(control.paused().now_or_never().is_none());
        control.pause();
        assert!(control.is_paused());
        assert!(control.paused().now_or_never().is_some());
        assert!(control.running().now_or_never().is_none());
        control.cancel();
        assert!(control.is_cancelled());
        assert!(!control.is_paused(), "cancel wakes a paused job");
        assert!(control.cancelled().now_or_never().is_some());
    }
}
