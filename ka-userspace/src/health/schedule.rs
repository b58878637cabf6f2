//! When checks run: first checks are spread over `warmup` (keepalived: a random delay up to
//! `warmup`, which defaults to `delay_loop`) with a low-discrepancy sequence, so 10,000 checkers
//! never fire in a burst; later checks keep their phase (`start + interval`), so the spread
//! survives.
//!
//! Pure functions of integer time; the runtime supplies the clock.

use std::time::Duration;

/// 2^64 / φ: the multiplier of Fibonacci hashing. Multiples of it, taken modulo 2^64, are
/// spread as evenly as any sequence can be for every prefix length.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Delay of checker number `i`'s first check, in `[0, warmup)`.
pub fn first_check_offset(i: usize, warmup: Duration) -> Duration {
    let frac = (i as u64).wrapping_mul(GOLDEN);
    let nanos = (warmup.as_nanos() * u128::from(frac)) >> 64;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Deadline of the next check, as an offset from the same epoch as `started` and `now`:
/// `interval` after the previous check started (so the phase is kept), or `now` if that is
/// already past (a check slower than its interval runs again at once, never twice).
pub fn next_deadline(started: Duration, now: Duration, interval: Duration) -> Duration {
    (started + interval).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(next_deadline(s(10), s(10) + Duration::from_millis(30), s(1)), s(11));
        assert_eq!(next_deadline(s(10), s(13), s(1)), s(13));
    }
}
