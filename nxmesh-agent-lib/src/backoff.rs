//! Exponential backoff with full jitter between reconnect attempts.
//!
//! The delay before attempt `n` is uniform in `[0, min(cap, base * 2^n)]`
//! ("full jitter"), so thousands of agents that lost the same master spread
//! their reconnects over the whole window instead of arriving in waves.

use std::time::Duration;

/// Reconnect delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The ceiling of the first delay.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
    /// A connection that stayed registered at least this long resets the
    /// attempt count, so the next failure starts again from `base`.
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// The attempt counter of one connection manager.
#[derive(Debug)]
pub(crate) struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig) -> Self {
        Backoff { config, attempt: 0 }
    }

    /// Starts again from `base`.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The ceiling of the next delay: `min(cap, base * 2^attempt)`.
    fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        self.config
            .base
            .checked_mul(factor)
            .map_or(self.config.cap, |d| d.min(self.config.cap))
    }

    /// The next delay, uniform in `[0, ceiling]`; advances the attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        jitter(ceiling, random_u64())
    }
}

/// Uniform in `[0, ceiling]` from one random word (the modulo bias is
/// negligible for ceilings of seconds in nanoseconds).
fn jitter(ceiling: Duration, random: u64) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(random % nanos.saturating_add(1))
}

fn random_u64() -> u64 {
    // The OS generator does not fail on supported platforms; if it ever did,
    // a fixed mid-window delay is a safe fallback (jitter is an optimization
    // against stampedes, not a correctness property).
    getrandom::u64().unwrap_or(u64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(config());
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(b.ceiling().as_millis());
            b.next_delay();
        }
        assert_eq!(
            ceilings,
            [
                500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000
            ]
        );
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_secs(30), "no overflow");
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(500));
    }

    #[test]
    fn delays_stay_within_zero_and_the_ceiling() {
        let mut b = Backoff::new(config());
        for _ in 0..200 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d <= ceiling, "{d:?} > {ceiling:?}");
        }
    }

    #[test]
    fn jitter_spans_the_whole_window() {
        let c = Duration::from_secs(2);
        assert_eq!(jitter(c, 0), Duration::ZERO);
        assert_eq!(jitter(c, 2_000_000_000), c);
        assert_eq!(jitter(c, 1_000_000_000), Duration::from_secs(1));
        assert!(jitter(c, u64::MAX) <= c);
    }
}
