//! When to renew, when to retry, when to alert: pure functions of the
//! certificate's validity, the failures so far and the policy.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The renewal policy.
#[derive(Debug, Clone)]
pub struct RenewalPolicy {
    /// Renew at the latest this long before expiry (30 days).
    pub before_expiry: Duration,
    /// First retry delay after a failure; doubles per failure.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Alert after this many consecutive failures of a certificate that is
    /// still being served…
    pub alert_after_failures: u32,
    /// …or at any failure this close to expiry.
    pub alert_before_expiry: Duration,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        RenewalPolicy {
            before_expiry: Duration::from_secs(30 * 86_400),
            retry_base: Duration::from_secs(5 * 60),
            retry_max: Duration::from_secs(6 * 3600),
            alert_after_failures: 3,
            alert_before_expiry: Duration::from_secs(14 * 86_400),
        }
    }
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// When a certificate valid from `issued` to `expires` is renewed: at two
/// thirds of its lifetime or `before_expiry` before it expires, whichever
/// comes first (two thirds alone for lifetimes under twice
/// `before_expiry`); earlier when the CA's renewal information (`ari_window`,
/// RFC 9773) says so. Never before `issued`.
pub fn renew_at(
    issued: DateTime<Utc>,
    expires: DateTime<Utc>,
    ari_window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    policy: &RenewalPolicy,
) -> DateTime<Utc> {
    let lifetime = expires - issued;
    let two_thirds = issued + lifetime * 2 / 3;
    let before = expires - chrono(policy.before_expiry);
    // For lifetimes under twice `before_expiry` (short-lived certificates)
    // "30 days before expiry" would mean "at once, forever"; two thirds of
    // the lifetime is then the rule.
    let mut at = if before < issued + lifetime / 2 {
        two_thirds
    } else {
        two_thirds.min(before)
    };
    if let Some((start, end)) = ari_window
        && end >= start
    {
        // RFC 9773 asks for a time inside the window; its middle keeps
        // the choice reproducible and away from both edges.
        at = at.min(start + (end - start) / 2);
    }
    at.max(issued)
}

/// When to try again after the `failures`-th consecutive failure at `now`:
/// exponential backoff from `retry_base`, capped at `retry_max`.
pub fn retry_at(now: DateTime<Utc>, failures: u32, policy: &RenewalPolicy) -> DateTime<Utc> {
    let exp = failures.saturating_sub(1).min(20);
    let delay = policy
        .retry_base
        .saturating_mul(1u32 << exp)
        .min(policy.retry_max);
    now + chrono(delay)
}

/// Whether a failed renewal of a certificate that expires at `expires`
/// deserves an expiry alert.
pub fn should_alert(
    now: DateTime<Utc>,
    expires: DateTime<Utc>,
    failures: u32,
    policy: &RenewalPolicy,
) -> bool {
    failures >= policy.alert_after_failures || expires - now <= chrono(policy.alert_before_expiry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn t(days: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::days(days)
    }

    #[test]
    fn renews_at_two_thirds_or_thirty_days_before_expiry() {
        let p = RenewalPolicy::default();
        // 90 days: two thirds (day 60) is exactly 30 days before expiry.
        assert_eq!(renew_at(t(0), t(90), None, &p), t(60));
        // 75 days: 30 days before expiry (day 45) comes before day 50.
        assert_eq!(renew_at(t(0), t(75), None, &p), t(45));
        // 360 days: two thirds (day 240) comes before day 330.
        assert_eq!(renew_at(t(0), t(360), None, &p), t(240));
        // 6 days: too short for "30 days before"; two thirds.
        assert_eq!(renew_at(t(0), t(6), None, &p), t(4));
        // An ARI window earlier than the policy wins; a later one does not.
        assert_eq!(renew_at(t(0), t(90), Some((t(10), t(20))), &p), t(15));
        assert_eq!(renew_at(t(0), t(90), Some((t(70), t(80))), &p), t(60));
        // A window in the past still never schedules before issue.
        assert_eq!(renew_at(t(5), t(90), Some((t(0), t(2))), &p), t(5));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let p = RenewalPolicy::default();
        let now = t(0);
        assert_eq!(retry_at(now, 1, &p) - now, chrono::Duration::minutes(5));
        assert_eq!(retry_at(now, 2, &p) - now, chrono::Duration::minutes(10));
        assert_eq!(retry_at(now, 4, &p) - now, chrono::Duration::minutes(40));
        assert_eq!(retry_at(now, 30, &p) - now, chrono::Duration::hours(6));
    }

    #[test]
    fn alerts_when_failures_pile_up_or_expiry_is_near() {
        let p = RenewalPolicy::default();
        assert!(!should_alert(t(0), t(60), 1, &p));
        assert!(should_alert(t(0), t(60), 3, &p));
        assert!(should_alert(t(0), t(10), 1, &p));
    }
}
