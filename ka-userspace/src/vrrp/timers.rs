//! Injected integer time and the VRRP timer arithmetic (Skew_Time, Master_Down_Interval).
//!
//! No floats anywhere: intervals are [`Duration`]s built from integer centiseconds, and the skew
//! is computed in nanoseconds, where `(256 - Priority) / 256` of a centisecond-multiple is exact.

use std::ops::Add;
use std::time::Duration;

use ka_common::vrrp::Version;

/// A point in time: the [`Duration`] since an epoch chosen by the runtime (a monotonic clock).
/// Tests use a fake clock by building these directly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(Duration);

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// The time `d` after the epoch.
    pub const fn from_epoch(d: Duration) -> Time {
        Time(d)
    }

    /// The time `ms` milliseconds after the epoch (for tests and logs).
    pub const fn from_millis(ms: u64) -> Time {
        Time(Duration::from_millis(ms))
    }

    /// Time since the epoch.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d))
    }
}

/// `cs` centiseconds.
pub const fn centis(cs: u16) -> Duration {
    Duration::from_millis(cs as u64 * 10)
}

/// Skew_Time.
///
/// - VRRPv2 (RFC 3768 §6.1): `(256 - Priority) / 256` seconds.
/// - VRRPv3 (RFC 5798 §6.1): `((256 - Priority) * Master_Adver_Interval) / 256`, with
///   Master_Adver_Interval learnt from the Master's adverts.
pub fn skew_time(version: Version, priority: u8, master_adver_int_cs: u16) -> Duration {
    let factor = 256 - u64::from(priority);
    let nanos = match version {
        Version::V2 => factor * 1_000_000_000 / 256,
        Version::V3 => factor * u64::from(master_adver_int_cs) * 10_000_000 / 256,
    };
    Duration::from_nanos(nanos)
}

/// Master_Down_Interval = `down_timer_adverts` × Master_Adver_Interval + Skew_Time
/// (RFC 3768 §6.1 and RFC 5798 §6.1 with `down_timer_adverts` = 3; keepalived's
/// `down_timer_adverts` changes the multiplier).
pub fn master_down_interval(
    version: Version,
    down_timer_adverts: u8,
    master_adver_int_cs: u16,
    priority: u8,
) -> Duration {
    centis(master_adver_int_cs) * u32::from(down_timer_adverts)
        + skew_time(version, priority, master_adver_int_cs)
}

/// The timers of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Adver_Timer: a Master sends an advert when it fires (RFC 5798 §6.2).
    Advert,
    /// Master_Down_Timer: a Backup becomes Master when it fires (RFC 5798 §6.2).
    MasterDown,
    /// keepalived `vrrp_startup_delay`: the instance starts when it fires.
    StartupDelay,
    /// keepalived `garp_master_delay`: the second burst of gratuitous ARPs / NAs after becoming
    /// Master.
    GarpDelay,
    /// keepalived `garp_lower_prio_delay`: the second burst of gratuitous ARPs / NAs after a
    /// lower-priority advert reached the Master.
    LowerPrioGarp,
}

const KINDS: usize = 5;

impl TimerKind {
    const fn slot(self) -> usize {
        match self {
            TimerKind::Advert => 0,
            TimerKind::MasterDown => 1,
            TimerKind::StartupDelay => 2,
            TimerKind::GarpDelay => 3,
            TimerKind::LowerPrioGarp => 4,
        }
    }
}

/// The deadlines an instance has asked the runtime for. A `TimerFired` is acted upon only if the
/// timer is armed and due, so a stale wake-up (cancelled or re-armed timer) is harmless.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimerSet {
    deadlines: [Option<Time>; KINDS],
}

impl TimerSet {
    /// Records `kind` as armed for `at`.
    pub fn arm(&mut self, kind: TimerKind, at: Time) {
        self.deadlines[kind.slot()] = Some(at);
    }

    /// Disarms `kind`; returns whether it was armed.
    pub fn cancel(&mut self, kind: TimerKind) -> bool {
        self.deadlines[kind.slot()].take().is_some()
    }

    /// The deadline of `kind`, if armed.
    pub fn deadline(&self, kind: TimerKind) -> Option<Time> {
        self.deadlines[kind.slot()]
    }

    /// If `kind` is armed and due at `now`, disarms it and returns true.
    pub fn take_due(&mut self, kind: TimerKind, now: Time) -> bool {
        match self.deadlines[kind.slot()] {
            Some(at) if at <= now => {
                self.deadlines[kind.slot()] = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5798 §6.1 with the values of its own example: priority 100, 1 s interval.
    #[test]
    fn skew_and_down_interval_v3() {
        assert_eq!(
            skew_time(Version::V3, 100, 100),
            Duration::from_nanos(609_375_000)
        );
        assert_eq!(
            master_down_interval(Version::V3, 3, 100, 100),
            Duration::from_nanos(3_609_375_000)
        );
        // Sub-second interval (v3, centiseconds): 50 cs, priority 255.
        assert_eq!(
            skew_time(Version::V3, 255, 50),
            Duration::from_nanos(1_953_125)
        );
        // No truncation to zero (holo's f32 bug): priority 254, 1 cs.
        assert_eq!(skew_time(Version::V3, 254, 1), Duration::from_nanos(78_125));
    }

    /// RFC 3768 §6.1: the v2 skew is in seconds and ignores the interval.
    #[test]
    fn skew_v2_is_seconds() {
        assert_eq!(skew_time(Version::V2, 128, 300), Duration::from_millis(500));
        assert_eq!(
            master_down_interval(Version::V2, 3, 100, 128),
            Duration::from_millis(3500)
        );
        // keepalived down_timer_adverts.
        assert_eq!(
            master_down_interval(Version::V2, 1, 100, 128),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn timer_set_ignores_stale_and_early_fires() {
        let mut t = TimerSet::default();
        assert!(!t.take_due(TimerKind::Advert, Time::from_millis(5)));
        t.arm(TimerKind::Advert, Time::from_millis(10));
        assert!(!t.take_due(TimerKind::Advert, Time::from_millis(9)));
        assert!(t.take_due(TimerKind::Advert, Time::from_millis(10)));
        assert!(!t.take_due(TimerKind::Advert, Time::from_millis(20)));
    }
}
