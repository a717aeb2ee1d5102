//! Retries of transient Trackly failures with exponential backoff and jitter, inside a total
//! time budget so that an interactive command always ends well within Discord's limits.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

use super::TracklyError;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Time for all attempts and waits together.
    pub budget: Duration,
    /// Backoff before the first retry; doubles for each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            budget: Duration::from_secs(25),
            base_delay: Duration::from_millis(300),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Returns the backoff before retry number `retry` (0-based): half the exponential delay
    /// plus a random share of the other half, so that many clients do not retry in step.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponential = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let half = exponential / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the retries or the budget run
    /// out. `attempt` receives the time left in the budget so that it can cap its own timeout.
    /// A 429's `Retry-After` replaces the backoff; one longer than the budget ends the call.
    pub async fn run<T, F, Fut>(&self, operation: &str, mut attempt: F) -> Result<T, TracklyError>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = Result<T, TracklyError>>,
    {
        let deadline = Instant::now() + self.budget;
        let mut retry = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let error = match attempt(left).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !error.is_transient() || retry >= self.max_retries {
                return Err(error);
            }

            let delay = match &error {
                TracklyError::RateLimited {
                    retry_after: Some(retry_after),
                } => *retry_after,
                _ => self.backoff(retry),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            // Waiting is pointless unless an attempt of useful length still fits afterwards.
            if delay + Duration::from_millis(250) >= left {
                tracing::warn!(
                    operation,
                    error = %error,
                    delay_ms = delay.as_millis() as u64,
                    "trackly retry budget exhausted"
                );
                return Err(error);
            }
            retry += 1;
            tracing::warn!(
                operation,
                retry,
                error = %error,
                delay_ms = delay.as_millis() as u64,
                "retrying trackly request"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast_policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            budget: Duration::from_secs(5),
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        }
    }

    #[test]
    fn backoff_stays_within_bounds() {
        let policy = fast_policy();
        for retry in 0..10 {
            let delay = policy.backoff(retry);
            let full = (policy.base_delay * 2u32.pow(retry.min(8))).min(policy.max_delay);
            assert!(
                delay >= full / 2,
                "retry {retry}: {delay:?} < {:?}",
                full / 2
            );
            assert!(delay <= full, "retry {retry}: {delay:?} > {full:?}");
        }
    }

    #[tokio::test]
    async fn transient_then_success() {
        let calls = AtomicU32::new(0);
        let result = fast_policy()
            .run("test", |_| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(TracklyError::Unavailable {
                        detail: "HTTP 503".into(),
                    })
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_error_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast_policy()
            .run("test", |_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(TracklyError::InvalidKey { code: None })
            })
            .await;
        assert_eq!(result, Err(TracklyError::InvalidKey { code: None }));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_stop_at_maximum() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast_policy()
            .run("test", |_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(TracklyError::TimedOut(Duration::from_millis(1)))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let result = fast_policy()
            .run("test", |_| async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(TracklyError::RateLimited {
                        retry_after: Some(Duration::from_millis(300)),
                    })
                } else {
                    Ok(())
                }
            })
            .await;
        assert_eq!(result, Ok(()));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn retry_after_beyond_budget_gives_up() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast_policy()
            .run("test", |_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(TracklyError::RateLimited {
                    retry_after: Some(Duration::from_secs(60)),
                })
            })
            .await;
        assert!(matches!(result, Err(TracklyError::RateLimited { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
