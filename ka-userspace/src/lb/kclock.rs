//! The kernel's tick clock for userspace: the XDP VRRP fast path stamps a steady advert with
//! `bpf_jiffies64()` (the verifier inlines it into two loads, where a clock read is a helper
//! call, a tenth of that path), and the engine needs CLOCK_MONOTONIC time. [`KernelClock`]
//! reads the kernel's clocks through the sweeper program (`ka_common::sched::SWEEP_PROGRAM`,
//! run by BPF_PROG_TEST_RUN) and knows the tick rate (`CONFIG_HZ`), measured once at start
//! between two tick edges ([`calibrate`]).

use std::{
    io,
    os::fd::{AsFd, OwnedFd},
    time::Duration,
};

use aya::Ebpf;
use ka_common::sched::SWEEP_PROGRAM;

use super::conns::{clock_sample, snap_hz, ClockSample};

/// Samples [`calibrate`] takes at most (each a BPF_PROG_TEST_RUN with a short sleep between:
/// well over the 5 ticks it waits for at 100 Hz).
const CALIBRATE_SAMPLES: u32 = 20_000;

/// Pause between two calibration samples.
const CALIBRATE_PAUSE: Duration = Duration::from_micros(20);

/// Tick edges [`calibrate`] measures across (one more is waited for first).
const CALIBRATE_TICKS: u64 = 4;

/// The kernel's clocks, and its tick rate.
#[derive(Debug)]
pub struct KernelClock {
    prog: OwnedFd,
    hz: u32,
}

/// The tick rate from samples `sample` takes: the first sample after a tick edge, then the
/// first after [`CALIBRATE_TICKS`] more ticks; their jiffies over their CLOCK_MONOTONIC times,
/// snapped to the usual `CONFIG_HZ` values ([`snap_hz`]). Each edge is seen at most one sample
/// late, so the pause between samples bounds the error. `None`: no edge within `max` samples.
///
/// # Errors
/// A sample fails.
pub fn calibrate(mut sample: impl FnMut() -> io::Result<ClockSample>, max: u32) -> io::Result<Option<u32>> {
    let first = sample()?;
    let mut edge: Option<ClockSample> = None;
    for _ in 0..max {
        let s = sample()?;
        match edge {
            None if s.jiffies != first.jiffies => edge = Some(s),
            Some(a) if s.jiffies >= a.jiffies + CALIBRATE_TICKS => {
                let (dj, dt) = (s.jiffies - a.jiffies, s.ktime_ns.saturating_sub(a.ktime_ns));
                if dt == 0 {
                    return Ok(None);
                }
                return Ok(snap_hz(dj as f64 * 1e9 / dt as f64));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// CLOCK_MONOTONIC time of the tick `jiffies` counted, from a sample of the clocks taken
/// later (`now`) and the tick rate: the coarse clock (the time of `now`'s last tick) minus the
/// ticks since (pure). A tick count ahead of the sample's is taken as the sample's.
pub fn jiffies_to_monotonic(now: ClockSample, jiffies: u64, hz: u32) -> Duration {
    let ticks = u128::from(now.jiffies.saturating_sub(jiffies));
    let back = ticks * 1_000_000_000 / u128::from(hz.max(1));
    Duration::from_nanos(now.coarse_ns.saturating_sub(u64::try_from(back).unwrap_or(u64::MAX)))
}

impl KernelClock {
    /// The clock of a loaded object (its [`SWEEP_PROGRAM`] loaded), its tick rate measured
    /// (blocks for about [`CALIBRATE_TICKS`] + 1 ticks: 50 ms at 100 Hz, 5 ms at 1000 Hz).
    ///
    /// # Errors
    /// The program is missing or cannot be run, or no tick edge came.
    pub fn new(ebpf: &Ebpf) -> io::Result<KernelClock> {
        let prog: &aya::programs::Xdp = ebpf
            .program(SWEEP_PROGRAM)
            .ok_or_else(|| io::Error::other(format!("program {SWEEP_PROGRAM} missing from the object")))?
            .try_into()
            .map_err(|e| io::Error::other(format!("program {SWEEP_PROGRAM}: {e}")))?;
        let fd = prog.fd().map_err(|e| io::Error::other(format!("program {SWEEP_PROGRAM} not loaded: {e}")))?;
        let prog = fd.as_fd().try_clone_to_owned()?;
        let hz = calibrate(
            || {
                std::thread::sleep(CALIBRATE_PAUSE);
                clock_sample(&prog)
            },
            CALIBRATE_SAMPLES,
        )?
        .ok_or_else(|| io::Error::other("the kernel's tick count did not move"))?;
        Ok(KernelClock { prog, hz })
    }

    /// CLOCK_MONOTONIC time of the tick `jiffies` counted ([`jiffies_to_monotonic`], from
    /// the clocks now).
    ///
    /// # Errors
    /// The clocks cannot be read.
    pub fn monotonic_of(&self, jiffies: u64) -> io::Result<Duration> {
        Ok(jiffies_to_monotonic(clock_sample(&self.prog)?, jiffies, self.hz))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A simulated kernel at `hz`, sampled every `step_ns` from `start_ns`: calibration finds
    /// the rate whatever the phase of the first sample.
    #[test]
    fn calibration_finds_the_tick_rate() {
        for hz in [100u32, 250, 300, 1000] {
            for start_ns in [0u64, 1_234_567, 3_999_999] {
                let tick = 1_000_000_000 / u64::from(hz);
                let t = Cell::new(start_ns);
                let sample = || {
                    let now = t.get();
                    t.set(now + 70_000);
                    Ok(ClockSample { jiffies: 4_294_000_000 + now / tick, ktime_ns: now, coarse_ns: now / tick * tick })
                };
                assert_eq!(calibrate(sample, CALIBRATE_SAMPLES).expect("samples"), Some(hz), "{hz} Hz from {start_ns}");
            }
        }
        // A clock that never ticks: no rate.
        let frozen = || Ok(ClockSample { jiffies: 7, ktime_ns: 1, coarse_ns: 0 });
        assert_eq!(calibrate(frozen, 100).expect("samples"), None);
    }

    /// (sample, stamp, hz, CLOCK_MONOTONIC of the stamp)
    #[test]
    fn ticks_become_monotonic_time() {
        let now = ClockSample { jiffies: 1_000, ktime_ns: 4_003_000_000, coarse_ns: 4_000_000_000 };
        let cases = [
            (now, 1_000, 250, 4_000_000_000),
            (now, 999, 250, 3_996_000_000),
            (now, 750, 250, 3_000_000_000),
            (now, 700, 1000, 3_700_000_000),
            (now, 997, 300, 3_990_000_000),
            // Ahead of the sample (cannot happen): the sample's tick.
            (now, 1_001, 250, 4_000_000_000),
            // Before boot: zero.
            (now, 0, 100, 0),
        ];
        for (i, (now, stamp, hz, want)) in cases.into_iter().enumerate() {
            assert_eq!(jiffies_to_monotonic(now, stamp, hz), Duration::from_nanos(want), "case {i}");
        }
    }
}
