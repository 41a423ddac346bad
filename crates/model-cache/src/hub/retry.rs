//! The retry policy, in one place.
//!
//! Errors say whether they are worth retrying through [`Retryable`] (network errors, timeouts,
//! 408, 429 and 5xx are; everything else is fatal). [`with_retry`] runs an operation until it
//! succeeds, fails fatally, or exhausts [`RetryPolicy::max_attempts`], sleeping between attempts
//! with exponential backoff and full jitter, or for exactly as long as the server asked
//! (`Retry-After`, `RateLimit: ...;t=N`). Each retry is logged at debug level; the final error
//! says how many attempts were made and what the last failure was.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use reqwest::header::HeaderMap;

pub use crate::settings::RetryPolicy;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again, after the server-requested delay if there is one, else after a backoff.
    Retry { after: Option<Duration> },
    /// Give up at once.
    Fatal,
}

/// An error that knows whether another attempt could succeed.
pub trait Retryable {
    fn decision(&self) -> Decision;
}

/// Classifies an HTTP status: 408, 429 and 5xx are retried (with the delay the headers ask for),
/// everything else is fatal.
pub fn classify_status(status: u16, headers: &HeaderMap) -> Decision {
    match status {
        408 | 429 | 500..=599 => Decision::Retry {
            after: retry_after(headers),
        },
        _ => Decision::Fatal,
    }
}

/// The delay a server asks for: `Retry-After` (seconds or an HTTP date), else the `t=` parameter
/// of the IETF `RateLimit` header (`"api";r=0;t=55`), plus one second as `huggingface_hub` does.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(value) = headers.get("retry-after").and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(when) = httpdate::parse_http_date(value) {
            return Some(
                when.duration_since(std::time::SystemTime::now())
                    .unwrap_or(Duration::ZERO),
            );
        }
    }
    let value = headers.get("ratelimit").and_then(|v| v.to_str().ok())?;
    value
        .split([';', ','])
        .filter_map(|part| part.trim().strip_prefix("t="))
        .find_map(|t| t.trim().parse::<u64>().ok())
        .map(|t| Duration::from_secs(t + 1))
}

/// The backoff before attempt `attempt + 1` (attempt counts from 1): a uniformly random delay
/// between zero and `min(max_delay, base_delay × 2^(attempt-1))` ("full jitter"), which spreads
/// out clients that failed together.
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)));
    let cap = exp.min(policy.max_delay);
    if cap.is_zero() {
        return Duration::ZERO;
    }
    let nanos = rand::rng().random_range(0..=cap.as_nanos().min(u64::MAX as u128) as u64);
    Duration::from_nanos(nanos)
}

/// Why [`with_retry`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    /// The last attempt failed with an error that retrying cannot fix.
    #[error("{error}")]
    Fatal { error: E, attempts: u32 },
    /// Every attempt failed with a retryable error, or the server asked to wait longer than the
    /// policy allows.
    #[error("Gave up on {what} after {attempts} attempt(s): {last}")]
    Exhausted {
        what: String,
        attempts: u32,
        last: E,
    },
}

impl<E> RetryError<E> {
    /// The last error seen.
    pub fn into_last(self) -> E {
        match self {
            RetryError::Fatal { error, .. } => error,
            RetryError::Exhausted { last, .. } => last,
        }
    }

    /// Attempts made.
    pub fn attempts(&self) -> u32 {
        match self {
            RetryError::Fatal { attempts, .. } | RetryError::Exhausted { attempts, .. } => {
                *attempts
            }
        }
    }
}

/// Runs `op` (given the attempt number, from 1) until it succeeds, fails fatally or the policy's
/// attempts are used up. `what` names the operation in logs and in the final error.
pub async fn with_retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut op: F,
) -> Result<T, RetryError<E>>
where
    E: Retryable + std::fmt::Display,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let error = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let after = match error.decision() {
            Decision::Fatal => {
                return Err(RetryError::Fatal {
                    error,
                    attempts: attempt,
                });
            }
            Decision::Retry { after } => after,
        };
        let too_long = after.is_some_and(|after| after > policy.max_retry_after);
        if attempt >= max_attempts || too_long {
            return Err(RetryError::Exhausted {
                what: what.to_string(),
                attempts: attempt,
                last: error,
            });
        }
        let delay = after.unwrap_or_else(|| backoff(policy, attempt));
        tracing::debug!(
            what,
            attempt,
            max_attempts,
            delay_ms = delay.as_millis() as u64,
            error = %error,
            "Retrying after a retryable failure"
        );
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use reqwest::header::HeaderValue;

    use super::*;

    #[derive(Debug)]
    struct Failure(Decision);

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failure {:?}", self.0)
        }
    }

    impl Retryable for Failure {
        fn decision(&self) -> Decision {
            self.0
        }
    }

    #[test]
    fn statuses_and_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(classify_status(404, &headers), Decision::Fatal);
        assert_eq!(classify_status(401, &headers), Decision::Fatal);
        assert_eq!(
            classify_status(503, &headers),
            Decision::Retry { after: None }
        );
        assert_eq!(
            classify_status(408, &headers),
            Decision::Retry { after: None }
        );
        headers.insert("ratelimit", HeaderValue::from_static("\"api\";r=0;t=55"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(56)));
        headers.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(
            classify_status(429, &headers),
            Decision::Retry {
                after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
            ..RetryPolicy::default()
        };
        for attempt in 1..40 {
            let cap = Duration::from_millis(100 * (1u64 << (attempt - 1).min(20)))
                .min(Duration::from_millis(300));
            assert!(backoff(&policy, attempt) <= cap);
        }
        assert_eq!(backoff(&RetryPolicy::immediate(), 3), Duration::ZERO);
    }

    #[tokio::test]
    async fn retries_until_success_then_reports_exhaustion() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::immediate();
        let result: Result<u32, RetryError<Failure>> = with_retry(&policy, "thing", |attempt| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt < 3 {
                    Err(Failure(Decision::Retry { after: None }))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);

        let err = with_retry(&policy, "the `x` file", |_| async {
            Err::<(), _>(Failure(Decision::Retry { after: None }))
        })
        .await
        .unwrap_err();
        assert_eq!(err.attempts(), policy.max_attempts);
        let message = err.to_string();
        assert!(
            message.contains("Gave up on the `x` file after 6 attempt(s)"),
            "{message}"
        );

        let err = with_retry(&policy, "y", |_| async {
            Err::<(), _>(Failure(Decision::Fatal))
        })
        .await
        .unwrap_err();
        assert!(matches!(err, RetryError::Fatal { attempts: 1, .. }));

        let err = with_retry(&policy, "z", |_| async {
            Err::<(), _>(Failure(Decision::Retry {
                after: Some(Duration::from_secs(3600)),
            }))
        })
        .await
        .unwrap_err();
        assert!(
            matches!(err, RetryError::Exhausted { attempts: 1, .. }),
            "a Retry-After beyond the policy gives up at once"
        );
    }
}
