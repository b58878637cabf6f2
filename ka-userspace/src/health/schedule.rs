//! When checks run: first checks are spread over `warmup` (keepalived: a random delay up to
//! `warmup`, which defaults to `delay_loop`) with a low-discrepancy sequence, so 10,000 checkers
//! never fire in a burst; later checks keep their phase (`start + delay_loop`), so the spread
//! survives. Retries are timed like keepalived's: `delay_before_retry` from the end of the
//! failed attempt.
//!
//! Pure functions of integer time; the runtime supplies the clock.

use std::time::Duration;

use super::state::Next;

/// 2^64 / φ: the multiplier of Fibonacci hashing. Multiples of it, taken modulo 2^64, are
/// spread as evenly as any sequence can be for every prefix length.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Delay of checker number `i`'s first check, in `[0, warmup)`.
pub fn first_check_offset(i: usize, warmup: Duration) -> Duration {
    let frac = (i as u64).wrapping_mul(GOLDEN);
    let nanos = (warmup.as_nanos() * u128::from(frac)) >> 64;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Deadline of the next check, as an offset from the same epoch as `started` and `ended` (when
/// the previous attempt started and when it finished):
///
/// - [`Next::Loop`]: `delay_loop` after the previous check started (so the phase is kept), or
///   `ended` if that is already past (a check slower than its interval runs again at once,
///   never twice);
/// - [`Next::Retry`]: `delay_before_retry` after the failed attempt ended (keepalived arms the
///   retry timer when the attempt fails, so a timed-out attempt is followed by the full pause).
pub fn next_deadline(started: Duration, ended: Duration, next: Next) -> Duration {
    match next {
        Next::Loop(interval) => (started + interval).max(ended),
        Next::Retry(delay) => ended.max(started) + delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::state::{CheckerChange, CheckerFsm, CheckerTiming};

    /// 10,000 first checks over 1 s land at most ~2× the mean in any 10 ms slot: no burst.
    #[test]
    fn first_checks_are_spread() {
        let n = 10_000;
        let warmup = Duration::from_secs(1);
        let mut buckets = [0u32; 100];
        for i in 0..n {
            let off = first_check_offset(i, warmup);
            assert!(off < warmup);
            buckets[(off.as_millis() / 10) as usize] += 1;
        }
        let (min, max) = (buckets.iter().min().copied(), buckets.iter().max().copied());
        assert!(max <= Some(200) && min >= Some(50), "uneven spread: min {min:?} max {max:?}");
    }

    /// A zero warmup starts everything at once (what the user asked for).
    #[test]
    fn zero_warmup() {
        assert_eq!(first_check_offset(12345, Duration::ZERO), Duration::ZERO);
    }

    /// The next check keeps the phase, unless the check overran its interval.
    #[test]
    fn phase_is_kept() {
        let s = Duration::from_secs;
        assert_eq!(next_deadline(s(10), s(10) + Duration::from_millis(30), Next::Loop(s(1))), s(11));
        assert_eq!(next_deadline(s(10), s(13), Next::Loop(s(1))), s(13));
    }

    /// A retry waits the whole `delay_before_retry` after the failed attempt ended, however
    /// long the attempt took (keepalived), not after it started.
    #[test]
    fn retry_counts_from_the_end_of_the_attempt() {
        let ms = Duration::from_millis;
        assert_eq!(next_deadline(ms(10_000), ms(10_030), Next::Retry(ms(1000))), ms(11_030));
        assert_eq!(next_deadline(ms(10_000), ms(11_500), Next::Retry(ms(1000))), ms(12_500));
        assert_eq!(next_deadline(ms(10_000), ms(11_500), Next::Retry(Duration::ZERO)), ms(11_500));
    }

    /// Drives a [`CheckerFsm`] with a fake clock against a server that goes silent at `cut`
    /// (every attempt from then on fails after `connect_timeout`); returns when the checker
    /// goes down and the start times of every attempt.
    fn silent_at(t: CheckerTiming, connect_timeout: Duration, first: Duration, cut: Duration) -> (Duration, Vec<Duration>) {
        let mut fsm = CheckerFsm::new(t);
        let mut at = first;
        let mut starts = Vec::new();
        for _ in 0..1000 {
            starts.push(at);
            let (ok, ended) = if at < cut { (true, at + Duration::from_millis(1)) } else { (false, at + connect_timeout) };
            let step = fsm.on_result(ok);
            if step.change == Some(CheckerChange::Down) {
                return (ended, starts);
            }
            at = next_deadline(at, ended, step.next);
        }
        panic!("never went down: {starts:?}");
    }

    /// Scenario with a fake clock: retries start `delay_before_retry` after each timed-out
    /// attempt, and a server that goes silent right after a passing check is down after at
    /// most `delay_loop + (retry + 1) × connect_timeout + retry × delay_before_retry` — the
    /// bound the integration tests assert.
    #[test]
    fn silent_server_goes_down_within_the_bound() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let t = CheckerTiming { delay_loop: s(2), retry: 2, delay_before_retry: s(1), alpha: false };
        let ct = s(1);
        let bound = t.delay_loop + ct * (t.retry + 1) + t.delay_before_retry * t.retry;
        // Checks at 0.3, 2.3, 4.3 pass; the server goes silent at 4.301.
        let (down, starts) = silent_at(t, ct, ms(300), ms(4301));
        // Attempts: 6.3 (times out at 7.3), retry at 8.3 (fails 9.3), retry at 10.3 (fails 11.3).
        assert_eq!(starts, vec![ms(300), ms(2300), ms(4300), ms(6300), ms(8300), ms(10_300)]);
        assert_eq!(down, ms(11_300));
        assert!(down - ms(4301) <= bound, "down {:?} after the cut, bound {bound:?}", down - ms(4301));
        // Worst phase over a sweep of cut times: never above the bound.
        for cut in (0..40).map(|i| ms(4301 + i * 50)) {
            let (down, _) = silent_at(t, ct, ms(300), cut);
            assert!(down - cut <= bound, "cut at {cut:?}: down after {:?}, bound {bound:?}", down - cut);
        }
    }
}
