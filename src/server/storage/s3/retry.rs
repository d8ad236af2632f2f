//! When to try an S3 request again, as a pure schedule: the worker that sends the request asks
//! [`next_delay`] after each transient failure and sleeps for the answer, or gives up.
//!
//! Two bounds, both needed: a store that refuses connections fails each attempt in microseconds,
//! so only the attempt count stops it; a store that accepts and then stalls fails each attempt
//! only at its timeout, so only the total time keeps the client's wait (and the FTP reply, a 451)
//! within a known bound.

use std::time::Duration;

/// How transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retry).
    pub attempts: u32,
    /// Delay before the second attempt; it doubles for each later one.
    pub first_delay: Duration,
    /// Cap on one delay, so the doubling cannot outgrow the total.
    pub max_delay: Duration,
    /// Wall time from the first attempt after which no attempt starts, and past which the
    /// running one is cut off by its timeout.
    pub total: Duration,
}

impl Default for RetryPolicy {
    /// Four attempts within 30 s: enough to ride out a Garage node restarting or a brief 503
    /// SlowDown, short enough that an FTP client gets its 451 before it gives up on its own.
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            total: Duration::from_secs(30),
        }
    }
}

/// The delay before the next attempt, after `failed` attempts have failed and `elapsed` has gone
/// by since the first one started; `None` when no attempt is left or none would start in time.
///
/// `jitter` is any random `u32`: the delay is between half and all of the exponential step
/// ("equal jitter"), so many uploads failing together do not retry in lock-step against a store
/// that is just coming back, while each still waits at least half its step.
pub fn next_delay(
    policy: &RetryPolicy,
    failed: u32,
    elapsed: Duration,
    jitter: u32,
) -> Option<Duration> {
    if failed == 0 || failed >= policy.attempts {
        return None;
    }
    let doublings = (failed - 1).min(31);
    let step = policy
        .first_delay
        .checked_mul(1u32 << doublings)
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay);
    let half = step / 2;
    let extra = (step - half).mul_f64(f64::from(jitter) / f64::from(u32::MAX));
    let delay = half + extra;
    if elapsed.saturating_add(delay) >= policy.total {
        return None;
    }
    Some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            total: Duration::from_secs(10),
        }
    }

    #[test]
    fn steps_double_up_to_the_cap() {
        let p = policy();
        let full: Vec<_> = (1..5)
            .map(|n| next_delay(&p, n, Duration::ZERO, u32::MAX).unwrap())
            .collect();
        assert_eq!(
            full,
            [100, 200, 400, 500].map(Duration::from_millis).to_vec()
        );
        let least: Vec<_> = (1..5)
            .map(|n| next_delay(&p, n, Duration::ZERO, 0).unwrap())
            .collect();
        assert_eq!(
            least,
            [50, 100, 200, 250].map(Duration::from_millis).to_vec()
        );
    }

    #[test]
    fn jitter_stays_within_the_step() {
        let p = policy();
        for j in [1, 7, u32::MAX / 3, u32::MAX / 2, u32::MAX - 1] {
            let d = next_delay(&p, 2, Duration::ZERO, j).unwrap();
            assert!(
                d >= Duration::from_millis(100) && d <= Duration::from_millis(200),
                "{d:?}"
            );
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let p = policy();
        assert!(next_delay(&p, 4, Duration::ZERO, 0).is_some());
        assert_eq!(next_delay(&p, 5, Duration::ZERO, 0), None);
        assert_eq!(next_delay(&p, 99, Duration::ZERO, 0), None);
        // Zero failures is not a retry.
        assert_eq!(next_delay(&p, 0, Duration::ZERO, 0), None);
        let once = RetryPolicy { attempts: 1, ..p };
        assert_eq!(next_delay(&once, 1, Duration::ZERO, 0), None);
    }

    #[test]
    fn total_time_is_bounded() {
        let p = policy();
        assert!(next_delay(&p, 1, Duration::from_millis(9_899), 0).is_some());
        // A delay that would end at or past the total means no further attempt.
        assert_eq!(next_delay(&p, 1, Duration::from_millis(9_950), 0), None);
        assert_eq!(next_delay(&p, 1, Duration::from_secs(11), 0), None);
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let p = RetryPolicy {
            attempts: u32::MAX,
            first_delay: Duration::from_secs(u64::MAX / 4),
            max_delay: Duration::from_secs(60),
            total: Duration::MAX,
        };
        assert_eq!(
            next_delay(&p, 40, Duration::ZERO, u32::MAX),
            Some(Duration::from_secs(60))
        );
        assert!(next_delay(&p, 3, Duration::MAX, 0).is_none());
    }
}
