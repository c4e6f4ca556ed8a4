//! Rate limits as their message states them: at most `actions` actions in any window of
//! `perSeconds` seconds, per application and across all of them — a sliding-window log of
//! when actions were taken.
//!
//! Not a token bucket (`governor`'s GCRA and the like): a bucket refilled continuously lets a
//! third action through half a window after a burst of two, which is not what "at most 2 per
//! 60 s" says and not what an SRE reading the hold expects. The log is also persisted with the
//! rest of the guardrail state (one ConfigMap shared by every replica), which an in-memory
//! limiter is not. Only the newest `actions` times can ever decide, so the log stays that small.

use super::RateSpec;

/// Whether an action taken at `at` still counts at `now`. A clock that went back counts the
/// action as recent rather than letting a burst through.
fn counts(spec: RateSpec, at: i64, now: i64) -> bool {
    now - at < i64::from(spec.per_seconds)
}

/// Keep only what can still decide: the newest `spec.actions` times within the window.
pub(super) fn prune(log: &mut Vec<i64>, spec: RateSpec, now: i64) {
    log.retain(|at| counts(spec, *at, now));
    log.sort_unstable();
    let keep = spec.actions as usize;
    if log.len() > keep {
        log.drain(..log.len() - keep);
    }
}

/// `None` if one more action at `now` keeps every window at `spec.actions` or fewer; else the
/// first second at which it would.
pub(super) fn next_allowed(log: &[i64], spec: RateSpec, now: i64) -> Option<i64> {
    let mut recent: Vec<i64> = log
        .iter()
        .copied()
        .filter(|at| counts(spec, *at, now))
        .collect();
    let limit = spec.actions as usize;
    if recent.len() < limit {
        return None;
    }
    recent.sort_unstable();
    // With `limit` actions at or after recent[len - limit] in the window, the next one may
    // go when that one stops counting.
    Some(recent[recent.len() - limit] + i64::from(spec.per_seconds))
}

/// Take an action at `now`.
pub(super) fn record(log: &mut Vec<i64>, spec: RateSpec, now: i64) {
    log.push(now);
    prune(log, spec, now);
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_MINUTE: RateSpec = RateSpec {
        actions: 2,
        per_seconds: 60,
    };

    /// Every window of 60 s over `times` holds at most 2.
    fn capped(times: &[i64]) -> bool {
        times.iter().all(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && **t < start + 60)
                .count()
                <= 2
        })
    }

    #[test]
    fn a_burst_waits_for_the_whole_window_not_half_of_it() {
        let mut log = Vec::new();
        assert_eq!(next_allowed(&log, PER_MINUTE, 0), None);
        record(&mut log, PER_MINUTE, 0);
        assert_eq!(next_allowed(&log, PER_MINUTE, 0), None);
        record(&mut log, PER_MINUTE, 0);
        assert_eq!(next_allowed(&log, PER_MINUTE, 0), Some(60));
        assert_eq!(next_allowed(&log, PER_MINUTE, 30), Some(60));
        assert_eq!(next_allowed(&log, PER_MINUTE, 59), Some(60));
        assert_eq!(next_allowed(&log, PER_MINUTE, 60), None);
    }

    #[test]
    fn staggered_actions_free_up_one_at_a_time() {
        let mut log = Vec::new();
        record(&mut log, PER_MINUTE, 0);
        record(&mut log, PER_MINUTE, 40);
        assert_eq!(next_allowed(&log, PER_MINUTE, 41), Some(60));
        record(&mut log, PER_MINUTE, 60);
        assert_eq!(next_allowed(&log, PER_MINUTE, 61), Some(100));
        assert_eq!(log, [40, 60], "only what can still decide is kept");
    }

    #[test]
    fn greedy_use_never_puts_more_than_the_limit_in_any_window() {
        let mut log = Vec::new();
        let mut taken = Vec::new();
        for now in 0..600 {
            // Three apps ask every second.
            for _ in 0..3 {
                if next_allowed(&log, PER_MINUTE, now).is_none() {
                    record(&mut log, PER_MINUTE, now);
                    taken.push(now);
                }
            }
        }
        assert!(capped(&taken), "{taken:?}");
        assert_eq!(taken.len(), 20, "2 per minute for 10 minutes: {taken:?}");
    }

    #[test]
    fn a_clock_that_went_back_does_not_open_the_limit() {
        let mut log = vec![100, 100];
        assert_eq!(next_allowed(&log, PER_MINUTE, 90), Some(160));
        prune(&mut log, PER_MINUTE, 90);
        assert_eq!(log, [100, 100]);
    }
}
