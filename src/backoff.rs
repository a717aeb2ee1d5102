//! Exponential backoff with jitter, for retries that no `Retry-After` header times.

use std::time::Duration;

use rand::Rng;

/// Returns `first` doubled `step` times (at most 16), capped at `max`, plus `jitter` (0 to 1) as
/// a share of that wait.
pub fn exponential(first: Duration, max: Duration, step: u32, jitter: f64) -> Duration {
    let base = first
        .saturating_mul(2u32.saturating_pow(step.min(16)))
        .min(max);
    base + base.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Returns a random jitter share between 0 and 0.2, for [`exponential`].
pub fn random_jitter() -> f64 {
    rand::thread_rng().gen_range(0.0..0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_up_to_max() {
        let wait = |step, jitter| {
            exponential(
                Duration::from_secs(1),
                Duration::from_secs(60),
                step,
                jitter,
            )
        };
        assert_eq!(wait(0, 0.0), Duration::from_secs(1));
        assert_eq!(wait(3, 0.0), Duration::from_secs(8));
        assert_eq!(wait(6, 0.0), Duration::from_secs(60));
        assert_eq!(wait(u32::MAX, 0.0), Duration::from_secs(60));
        assert_eq!(wait(0, 0.2), Duration::from_millis(1200));
        assert_eq!(wait(6, 5.0), Duration::from_secs(120));
    }

    #[test]
    fn random_jitter_stays_below_a_fifth() {
        for _ in 0..100 {
            let jitter = random_jitter();
            assert!((0.0..0.2).contains(&jitter), "{jitter}");
        }
    }
}
