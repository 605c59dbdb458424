//! Rate limiting per principal (the specification's 1000 requests per
//! minute) and login throttling per account and per address.
//!
//! Both are in-memory and per master: a fixed one-minute window keeps the
//! state to one counter per active principal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The limit per window.
    pub limit: u32,
    /// Requests left in this window.
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_after: u64,
}

const WINDOW: Duration = Duration::from_secs(60);

/// Fixed-window counters per key.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: u32) -> RateLimiter {
        RateLimiter {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of `key`.
    pub(crate) fn check(&self, key: &str) -> RateDecision {
        let now = Instant::now();
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = windows.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        let reset_after = WINDOW
            .saturating_sub(now.duration_since(entry.0))
            .as_secs()
            .max(1);
        if entry.1 >= self.limit {
            return RateDecision {
                allowed: false,
                limit: self.limit,
                remaining: 0,
                reset_after,
            };
        }
        entry.1 += 1;
        RateDecision {
            allowed: true,
            limit: self.limit,
            remaining: self.limit - entry.1,
            reset_after,
        }
    }
}

const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Failed-login counters per account and per address.
#[derive(Debug)]
pub(crate) struct LoginThrottle {
    allowed: u32,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginThrottle {
    pub(crate) fn new(allowed: u32) -> LoginThrottle {
        LoginThrottle {
            allowed,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds to wait when any of `keys` has too many recent failures.
    pub(crate) fn blocked(&self, keys: &[&str]) -> Option<u64> {
        let now = Instant::now();
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut wait = None;
        for k in keys {
            if let Some(times) = failures.get_mut(*k) {
                times.retain(|t| now.duration_since(*t) < LOGIN_WINDOW);
                if times.len() as u32 >= self.allowed {
                    let oldest = times.first().copied().unwrap_or(now);
                    let secs = LOGIN_WINDOW
                        .saturating_sub(now.duration_since(oldest))
                        .as_secs()
                        .max(1);
                    wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
                }
            }
        }
        wait
    }

    /// Records a failed attempt for each of `keys`.
    pub(crate) fn failed(&self, keys: &[&str]) {
        let now = Instant::now();
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for k in keys {
            failures.entry((*k).to_owned()).or_default().push(now);
        }
    }

    /// Forgets the failures of an account after a successful login.
    pub(crate) fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_per_key() {
        let r = RateLimiter::new(3);
        for left in [2, 1, 0] {
            let d = r.check("a");
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        assert!(!r.check("a").allowed);
        assert!(r.check("b").allowed);
    }

    #[test]
    fn login_throttle() {
        let t = LoginThrottle::new(2);
        assert!(t.blocked(&["u", "ip"]).is_none());
        t.failed(&["u", "ip"]);
        t.failed(&["u", "ip"]);
        assert!(t.blocked(&["u"]).is_some());
        assert!(t.blocked(&["other", "ip"]).is_some());
        t.succeeded("u");
        assert!(t.blocked(&["u"]).is_none());
    }
}
