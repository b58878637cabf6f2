//! Userspace side of the connection counts and lifetimes ([`ka_common::sched`] describes how
//! the datapath keeps them): the entry lifetimes of `lvs_timeouts` turned into jiffies once
//! the kernel's tick rate is known, the sweeper that expires idle entries every second (the
//! [`SWEEP_PROGRAM`] run through BPF_PROG_TEST_RUN, so every change of an entry and its counts
//! stays in the kernel's compare-and-swap protocol), and the counters map, `mmap`ed so that a
//! single field can be zeroed or cleared while the kernel adds to the others.
//!
//! The same pass tallies, per backend, the live entries the datapath does not count (services
//! whose scheduler needs no counts: Maglev, rr...): [`BACKEND_TALLY_MAP`], read and zeroed
//! after each complete pass and published as a [`ConnTally`], so every real server has
//! connection counts (exact at packet time where counted, a snapshot at most one
//! [`SWEEP_PERIOD`] old elsewhere) without any cost in the datapath.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use aya::{maps::Map, Ebpf};
use ka_common::{
    lb::{CONN_SETS, FAMILY_V4, FAMILY_V6, MAX_BACKENDS},
    sched::{
        BackendConns, ConnTimeouts, SweepIo, BACKEND_CONNS_MAP, BACKEND_TALLY_MAP, CLOSE_TIMEOUT_S, CONN_TIMEOUTS_MAP,
        DEFAULT_FLOOD_RATE, DEFAULT_TCP_FIN_TIMEOUT_S, DEFAULT_TCP_TIMEOUT_S, DEFAULT_UDP_TIMEOUT_S, LBLC_EXPIRATION_S,
        SWEEP_PROGRAM, SWEEP_SETS, SYN_TIMEOUT_S,
    },
};
use tracing::{debug, info, warn};

use super::LbError;

/// How often the sweeper visits the whole table: an idle entry leaves the counts within this
/// long after its lifetime.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// Entry lifetimes (`lvs_timeouts tcp|tcpfin|udp`; IPVS's defaults when not given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLifetimes {
    /// ESTABLISHED TCP.
    pub tcp: Duration,
    /// TCP after a FIN.
    pub tcp_fin: Duration,
    /// UDP.
    pub udp: Duration,
    /// `lvs_flood_rate`: new unassured entries per second and CPU above which the CPU is in
    /// flood mode ([`ka_common::sched::flood_count`]); 0: never.
    pub flood_rate: u32,
}

impl Default for ConnLifetimes {
    fn default() -> ConnLifetimes {
        ConnLifetimes {
            tcp: Duration::from_secs(DEFAULT_TCP_TIMEOUT_S.into()),
            tcp_fin: Duration::from_secs(DEFAULT_TCP_FIN_TIMEOUT_S.into()),
            udp: Duration::from_secs(DEFAULT_UDP_TIMEOUT_S.into()),
            flood_rate: DEFAULT_FLOOD_RATE,
        }
    }
}

/// The kernel's lifetimes for `l` at `hz` ticks a second, with IPVS's fixed SYN_RECV and
/// CLOSE lifetimes, the `lblc` expiration and the flood-mode rate per one-second window
/// (pure).
pub fn jiffies_timeouts(l: &ConnLifetimes, hz: u32) -> ConnTimeouts {
    let j = |d: Duration| u32::try_from(d.as_millis().saturating_mul(u128::from(hz)) / 1000).unwrap_or(u32::MAX).max(1);
    let s = |secs: u32| j(Duration::from_secs(secs.into()));
    ConnTimeouts {
        tcp: j(l.tcp),
        tcp_fin: j(l.tcp_fin),
        udp: j(l.udp),
        syn: s(SYN_TIMEOUT_S),
        close: s(CLOSE_TIMEOUT_S),
        lblc: s(LBLC_EXPIRATION_S),
        flood_rate: l.flood_rate,
        flood_window: hz,
    }
}

/// The kernel's clocks as one sweeper run read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSample {
    /// `jiffies_64`.
    pub jiffies: u64,
    /// CLOCK_MONOTONIC, ns.
    pub ktime_ns: u64,
    /// CLOCK_MONOTONIC_COARSE, ns: the time of the last tick.
    pub coarse_ns: u64,
}

/// The `CONFIG_HZ` values kernels are built with.
const HZ_VALUES: [u32; 4] = [100, 250, 300, 1000];

/// The tick rate (`CONFIG_HZ`) from two samples: the nearest usual value within 10 %, else the
/// measured rate rounded; `None` when they are less than 100 ms apart (pure).
pub fn hz_from_samples(a: ClockSample, b: ClockSample) -> Option<u32> {
    let dt = b.ktime_ns.checked_sub(a.ktime_ns)?;
    if dt < 100_000_000 {
        return None;
    }
    let dj = b.jiffies.checked_sub(a.jiffies)?;
    snap_hz(dj as f64 * 1e9 / dt as f64)
}

/// The usual `CONFIG_HZ` value within 10 % of a measured tick rate, else the rate rounded
/// (`None` for no rate) (pure).
pub fn snap_hz(rate: f64) -> Option<u32> {
    let nearest = HZ_VALUES.iter().copied().min_by(|x, y| (f64::from(*x) - rate).abs().total_cmp(&(f64::from(*y) - rate).abs()))?;
    if (f64::from(nearest) - rate).abs() <= f64::from(nearest) * 0.1 {
        Some(nearest)
    } else {
        u32::try_from(rate.round() as u64).ok().filter(|hz| *hz > 0)
    }
}

/// An owned duplicate of the descriptor of array map `name`.
fn array_fd(ebpf: &Ebpf, name: &'static str) -> Result<OwnedFd, LbError> {
    match ebpf.map(name) {
        Some(Map::Array(d)) => d.fd().as_fd().try_clone_to_owned().map_err(|e| io_err(name, "dup", e)),
        Some(_) => Err(LbError::Unsupported(format!("map {name} is not an array"))),
        None => Err(LbError::MissingMap(name)),
    }
}

fn io_err(map: &'static str, call: &'static str, io_error: io::Error) -> LbError {
    LbError::Map { map, source: Box::new(aya::maps::MapError::SyscallError(aya::sys::SyscallError { call, io_error })) }
}

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_TEST_RUN: libc::c_long = 10;

fn bpf(cmd: libc::c_long, attr: &mut [u64; 10]) -> io::Result<()> {
    // SAFETY: bpf(2) with an attribute block of the size we pass; the pointers in it point to
    // buffers that outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), std::mem::size_of_val(attr) as u32) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One run of the loaded [`SWEEP_PROGRAM`] (descriptor `prog`) on `io`, through
/// BPF_PROG_TEST_RUN.
///
/// # Errors
/// BPF_PROG_TEST_RUN fails, or the program says the frame was too short.
pub fn run_sweep(prog: &OwnedFd, mut io: SweepIo) -> io::Result<SweepIo> {
    let mut out = SweepIo::default();
    let size = std::mem::size_of::<SweepIo>() as u64;
    // union bpf_attr, test: prog_fd, retval, data_size_in, data_size_out, data_in,
    // data_out, repeat, duration...
    let mut attr = [0u64; 10];
    attr[0] = u64::from(u32::try_from(prog.as_raw_fd()).unwrap_or(u32::MAX));
    attr[1] = size | size << 32;
    attr[2] = std::ptr::from_mut(&mut io) as u64;
    attr[3] = std::ptr::from_mut(&mut out) as u64;
    attr[4] = 1;
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    let retval = attr[0] >> 32;
    // XDP_PASS; XDP_ABORTED for a frame too short.
    if retval != 2 {
        return Err(io::Error::other(format!("{SWEEP_PROGRAM} returned {retval}")));
    }
    Ok(out)
}

/// The kernel's clocks now, read by a run of the [`SWEEP_PROGRAM`] that visits no set.
///
/// # Errors
/// BPF_PROG_TEST_RUN fails.
pub fn clock_sample(prog: &OwnedFd) -> io::Result<ClockSample> {
    let o = run_sweep(prog, SweepIo { family: FAMILY_V4.into(), ..Default::default() })?;
    Ok(ClockSample { jiffies: o.jiffies, ktime_ns: o.ktime_ns, coarse_ns: o.ktime_coarse_ns })
}

/// The sweeper: the loaded [`SWEEP_PROGRAM`] and the lifetimes map, by descriptors of their
/// own (so it can run on another task than the one owning the object).
#[derive(Debug)]
pub struct Sweeper {
    prog: OwnedFd,
    timeouts: OwnedFd,
    /// The tally of uncounted entries, mapped (absent from an older object: no tally).
    tally: Option<ConnCounters>,
}

/// The live connection-table entries of each backend id that the datapath does not count
/// (index: backend id), as the last complete sweep found them.
pub type ConnTally = std::sync::Arc<Vec<BackendConns>>;

/// What one pass over both tables found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepTotals {
    /// Entries expired.
    pub expired: u64,
    /// Live entries.
    pub live: u64,
}

impl Sweeper {
    /// The sweeper of a loaded object (its [`SWEEP_PROGRAM`] must be loaded).
    ///
    /// # Errors
    /// The program or the map is missing, or a descriptor cannot be duplicated.
    pub fn new(ebpf: &Ebpf) -> Result<Sweeper, LbError> {
        let prog: &aya::programs::Xdp = ebpf
            .program(SWEEP_PROGRAM)
            .ok_or_else(|| LbError::Unsupported(format!("program {SWEEP_PROGRAM} missing from the object")))?
            .try_into()
            .map_err(|e| LbError::Unsupported(format!("program {SWEEP_PROGRAM}: {e}")))?;
        let fd = prog.fd().map_err(|e| LbError::Unsupported(format!("program {SWEEP_PROGRAM} not loaded: {e}")))?;
        let prog = fd.as_fd().try_clone_to_owned().map_err(|e| io_err(CONN_TIMEOUTS_MAP, "dup program", e))?;
        let tally = match ConnCounters::map_named(ebpf, BACKEND_TALLY_MAP) {
            Ok(t) => Some(t),
            Err(e) => {
                warn!(error = %e, "no connection tally: real servers of services without counts show none");
                None
            }
        };
        Ok(Sweeper { prog, timeouts: array_fd(ebpf, CONN_TIMEOUTS_MAP)?, tally })
    }

    /// One run: `count` (≤ [`SWEEP_SETS`]) sets of the `family` table from set `first`.
    ///
    /// # Errors
    /// BPF_PROG_TEST_RUN fails.
    pub fn run(&self, family: u8, first: u32, count: u32) -> io::Result<SweepIo> {
        run_sweep(&self.prog, SweepIo { family: family.into(), first, count, ..Default::default() })
    }

    /// The kernel's clocks now.
    ///
    /// # Errors
    /// BPF_PROG_TEST_RUN fails.
    pub fn clock(&self) -> io::Result<ClockSample> {
        clock_sample(&self.prog)
    }

    /// Visits every set of both tables once.
    ///
    /// # Errors
    /// A run fails (the sets after it are left for the next pass).
    pub fn sweep_all(&self) -> io::Result<SweepTotals> {
        if let Some(t) = &self.tally {
            t.zero_all();
        }
        let mut t = SweepTotals::default();
        for family in [FAMILY_V4, FAMILY_V6] {
            for first in (0..CONN_SETS).step_by(SWEEP_SETS as usize) {
                let o = self.run(family, first, SWEEP_SETS)?;
                t.expired += u64::from(o.expired);
                t.live += u64::from(o.live);
            }
        }
        Ok(t)
    }

    /// The tally the last [`Sweeper::sweep_all`] left (call it after a complete pass).
    pub fn tally(&self) -> Option<ConnTally> {
        let t = self.tally.as_ref()?;
        Some(std::sync::Arc::new((0..MAX_BACKENDS).map(|id| t.get(id)).collect()))
    }

    /// Writes the lifetimes the datapath applies.
    ///
    /// # Errors
    /// The map update fails.
    pub fn set_timeouts(&self, t: &ConnTimeouts) -> io::Result<()> {
        let key = 0u32;
        // union bpf_attr, elem: map_fd, key, value, flags.
        let mut attr = [0u64; 10];
        attr[0] = u64::from(u32::try_from(self.timeouts.as_raw_fd()).unwrap_or(u32::MAX));
        attr[1] = std::ptr::from_ref(&key) as u64;
        attr[2] = std::ptr::from_ref(t) as u64;
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
    }
}

/// The sweeper task: learns the tick rate from two clock samples a sweep period apart, writes
/// the lifetimes (again whenever `lifetimes` changes), and sweeps both tables every
/// [`SWEEP_PERIOD`]. Aborted when the returned handle is dropped.
pub fn spawn(sweeper: Sweeper, mut lifetimes: tokio::sync::watch::Receiver<ConnLifetimes>) -> SweepTask {
    let (tally_tx, tally) = tokio::sync::watch::channel(None);
    let handle = tokio::spawn(async move {
        let sweeper = std::sync::Arc::new(sweeper);
        let first = match sweeper.clock() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "connection sweeper cannot run: entries expire only when a packet finds them");
                return;
            }
        };
        let mut hz: Option<u32> = None;
        let mut tick = tokio::time::interval(SWEEP_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = lifetimes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if let Some(hz) = hz {
                        write_timeouts(&sweeper, &lifetimes.borrow(), hz);
                    }
                    continue;
                }
            }
            if hz.is_none() {
                match sweeper.clock().map(|now| hz_from_samples(first, now)) {
                    Ok(Some(h)) => {
                        info!(hz = h, "kernel tick rate measured: connection lifetimes apply");
                        write_timeouts(&sweeper, &lifetimes.borrow(), h);
                        hz = Some(h);
                    }
                    Ok(None) => continue,
                    Err(e) => warn!(error = %e, "reading the kernel clocks failed"),
                }
            }
            let s = sweeper.clone();
            match tokio::task::spawn_blocking(move || s.sweep_all().map(|t| (t, s.tally()))).await {
                Ok(Ok((t, tally))) => {
                    if t.expired > 0 {
                        debug!(expired = t.expired, live = t.live, "connection table swept");
                    }
                    tally_tx.send_replace(tally);
                }
                Ok(Err(e)) => warn!(error = %e, "connection table sweep failed"),
                Err(e) => warn!(error = %e, "connection table sweep task failed"),
            }
        }
    });
    SweepTask { handle, tally }
}

fn write_timeouts(sweeper: &Sweeper, l: &ConnLifetimes, hz: u32) {
    let t = jiffies_timeouts(l, hz);
    match sweeper.set_timeouts(&t) {
        Ok(()) => debug!(?l, hz, "connection lifetimes written"),
        Err(e) => warn!(error = %e, "writing the connection lifetimes failed"),
    }
}

/// The running sweeper task; dropping it stops the task.
#[derive(Debug)]
pub struct SweepTask {
    handle: tokio::task::JoinHandle<()>,
    tally: tokio::sync::watch::Receiver<Option<ConnTally>>,
}

impl SweepTask {
    /// The tally of the last complete sweep (`None` before the first one).
    pub fn tally(&self) -> Option<ConnTally> {
        self.tally.borrow().clone()
    }
}

impl Drop for SweepTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The counters map ([`BACKEND_CONNS_MAP`]), mapped into this process.
#[derive(Debug)]
pub struct ConnCounters {
    base: *mut BackendConns,
    len: usize,
}

// SAFETY: shared memory accessed only through atomics; the mapping lives as long as the value.
unsafe impl Send for ConnCounters {}
// SAFETY: as above.
unsafe impl Sync for ConnCounters {}

impl ConnCounters {
    /// Maps the counters of a loaded object.
    ///
    /// # Errors
    /// The map is missing or cannot be mapped (it must be `BPF_F_MMAPABLE`).
    pub fn map(ebpf: &Ebpf) -> Result<ConnCounters, LbError> {
        Self::map_named(ebpf, BACKEND_CONNS_MAP)
    }

    /// Maps an mmap-able array of [`BackendConns`] of [`MAX_BACKENDS`] entries.
    ///
    /// # Errors
    /// As [`ConnCounters::map`].
    pub fn map_named(ebpf: &Ebpf, name: &'static str) -> Result<ConnCounters, LbError> {
        let fd = array_fd(ebpf, name)?;
        let bytes = MAX_BACKENDS as usize * std::mem::size_of::<BackendConns>();
        // SAFETY: plain sysconf(3).
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
        let len = bytes.div_ceil(page) * page;
        // SAFETY: a shared read-write mapping of an mmap-able array map of at least `len`
        // bytes (the kernel rounds the array up to whole pages).
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
        if p == libc::MAP_FAILED {
            return Err(io_err(name, "mmap", io::Error::last_os_error()));
        }
        // The descriptor may close: the mapping holds the map.
        drop(fd);
        Ok(ConnCounters { base: p.cast(), len })
    }

    fn field(&self, id: u32, f: fn(*mut BackendConns) -> *mut u32) -> Option<&AtomicU32> {
        if id >= MAX_BACKENDS {
            return None;
        }
        // SAFETY: id < MAX_BACKENDS: inside the mapping; the fields are 4-aligned u32s that
        // the kernel also accesses atomically.
        Some(unsafe { AtomicU32::from_ptr(f(self.base.add(id as usize))) })
    }

    /// The counts of backend `id` (negative counts read as 0).
    pub fn get(&self, id: u32) -> BackendConns {
        let load = |f: fn(*mut BackendConns) -> *mut u32| self.field(id, f).map_or(0, |a| a.load(Ordering::Relaxed));
        let clamp = |v: u32| if (v as i32) < 0 { 0 } else { v };
        BackendConns {
            active: clamp(load(|c| unsafe { &raw mut (*c).active })),
            inactive: clamp(load(|c| unsafe { &raw mut (*c).inactive })),
            overloaded: load(|c| unsafe { &raw mut (*c).overloaded }),
            _pad: 0,
        }
    }

    /// Zeroes the counts of a newly allocated backend id.
    pub fn reset(&self, id: u32) {
        for f in [
            (|c| unsafe { &raw mut (*c).active }) as fn(*mut BackendConns) -> *mut u32,
            |c| unsafe { &raw mut (*c).inactive },
            |c| unsafe { &raw mut (*c).overloaded },
        ] {
            if let Some(a) = self.field(id, f) {
                a.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Zeroes every entry (the sweeper's tally, before a pass; nothing else writes it then).
    pub fn zero_all(&self) {
        for id in 0..MAX_BACKENDS {
            self.reset(id);
        }
    }

    /// Clears the overload flag (IPVS does when `uthreshold` is removed or raised).
    pub fn clear_overload(&self, id: u32) {
        if let Some(a) = self.field(id, |c| unsafe { &raw mut (*c).overloaded }) {
            a.store(0, Ordering::Relaxed);
        }
    }
}

impl Drop for ConnCounters {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, not used after this.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Whether IPVS clears a backend's overload flag when its `uthreshold` changes from `old` to
/// `new` (`__ip_vs_update_dest`: removed or raised) (pure).
pub fn threshold_change_clears(old: u32, new: u32) -> bool {
    new == 0 || new > old
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The usual tick rates are recognised from samples a second apart, even one jiffy off;
    /// samples too close together give no answer.
    #[test]
    fn hz_is_measured_from_two_samples() {
        let s = |jiffies, ms: u64| ClockSample { jiffies, ktime_ns: ms * 1_000_000, coarse_ns: 0 };
        let cases = [
            (s(1000, 0), s(1250, 1000), Some(250)),
            (s(1000, 0), s(1251, 1000), Some(250)),
            (s(1000, 0), s(1300, 1000), Some(300)),
            (s(5, 0), s(105, 1000), Some(100)),
            (s(0, 0), s(999, 1000), Some(1000)),
            (s(0, 0), s(25, 100), Some(250)),
            (s(0, 0), s(64, 1000), Some(64)),
            (s(0, 0), s(5, 50), None),
            (s(10, 1000), s(5, 2000), None),
        ];
        for (a, b, want) in cases {
            assert_eq!(hz_from_samples(a, b), want, "{a:?} {b:?}");
        }
    }

    /// Lifetimes become jiffies at the measured rate; IPVS's fixed ones come along.
    #[test]
    fn lifetimes_in_jiffies() {
        let l = ConnLifetimes { tcp: Duration::from_secs(7200), tcp_fin: Duration::from_secs(120), udp: Duration::from_millis(1500), flood_rate: 500 };
        let t = jiffies_timeouts(&l, 250);
        assert_eq!(
            t,
            ConnTimeouts { tcp: 1_800_000, tcp_fin: 30_000, udp: 375, syn: 15_000, close: 2_500, lblc: 21_600_000, flood_rate: 500, flood_window: 250 }
        );
        assert_eq!(jiffies_timeouts(&ConnLifetimes::default(), 1000).tcp, 900_000, "IPVS default 15 min");
        let tiny = ConnLifetimes { tcp: Duration::ZERO, ..l };
        assert_eq!(jiffies_timeouts(&tiny, 100).tcp, 1, "never 0, which would mean no expiry");
    }

    #[test]
    fn overload_flag_clears_when_threshold_removed_or_raised() {
        assert!(threshold_change_clears(10, 0));
        assert!(threshold_change_clears(10, 20));
        assert!(!threshold_change_clears(10, 10));
        assert!(!threshold_change_clears(10, 5));
    }
}
