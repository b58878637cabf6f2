//! The per-CPU counters (indexes from `ka_common::stats::Counter`): one `Counters` value per
//! CPU (`KA_STATS`), looked up once by whoever counts several things ([`Stats::get`]); and the
//! per-service and per-backend packet and byte counts.

use aya_ebpf::bindings::xdp_action;
use ka_common::stats::{Counter, Counters, BUNDLE_SLOTS};

use crate::{
    maps::{KA_BACKEND_STATS, KA_STATS, KA_STATS_BUNDLES, KA_SVC_STATS},
    parse::{Parsed, L3, L4},
};

/// This CPU's counters, looked up once.
#[derive(Clone, Copy)]
pub struct Stats(*mut Counters);

impl Stats {
    /// This CPU's counters (`None` only if the map is missing its entry, which cannot happen
    /// for an array).
    #[inline(always)]
    pub fn get() -> Option<Stats> {
        KA_STATS.get_ptr_mut(0).map(Stats)
    }

    /// Adds `n` to a counter (a count that is 0 or 1 without a branch).
    #[inline(always)]
    pub fn add(self, counter: Counter, n: u64) {
        // SAFETY: as in `inc`.
        unsafe { (*self.0)[counter.index() as usize] += n };
    }

    /// Adds one to a counter.
    #[inline(always)]
    pub fn inc(self, counter: Counter) {
        // SAFETY: this CPU's value (no concurrent writer on this CPU); the index is a
        // `Counter`, below `COUNTER_COUNT`.
        unsafe { (*self.0)[counter.index() as usize] += 1 };
    }
}

/// A path's verdict with this bit set was counted by the path, with a bundle: the entry point
/// clears the bit and counts nothing more (XDP verdicts are 0 to 4).
pub const COUNTED: u32 = 1 << 31;

/// Adds one to bundle `i` (`ka_common::stats::bundle_counters`): one increment for the several
/// counters it stands for.
#[inline(always)]
pub fn bundle(i: usize) {
    if let Some(p) = KA_STATS_BUNDLES.get_ptr_mut(0) {
        // SAFETY: this CPU's value (no concurrent writer on this CPU); the index is a
        // `BUNDLE_*` constant or a `forward_bundle`, masked below `BUNDLE_SLOTS` (a power of
        // two) for the verifier.
        unsafe { (*p)[i & (BUNDLE_SLOTS - 1)] += 1 };
    }
}

/// Adds one to a counter (one lookup; see [`Stats`] to count several).
#[inline(always)]
pub fn inc(counter: Counter) {
    if let Some(s) = Stats::get() {
        s.inc(counter);
    }
}

/// Counts the verdict and returns it.
#[inline(always)]
pub fn verdict(action: u32) -> u32 {
    if let Some(s) = Stats::get() {
        s.verdict(action);
    }
    action
}

impl Stats {
    /// Counts the verdict.
    #[inline(always)]
    pub fn verdict(self, action: u32) {
        self.inc(Self::verdict_counter(action));
    }

    #[inline(always)]
    fn verdict_counter(action: u32) -> Counter {
        match action {
        xdp_action::XDP_PASS => Counter::VerdictPass,
        xdp_action::XDP_DROP => Counter::VerdictDrop,
        xdp_action::XDP_TX => Counter::VerdictTx,
        xdp_action::XDP_REDIRECT => Counter::VerdictRedirect,
        _ => Counter::VerdictAborted,
        }
    }

    /// Counts what the parser found.
    #[inline(always)]
    pub fn parsed(self, pkt: &Parsed) {
    if pkt.vlan_tags > 0 {
        self.inc(Counter::Vlan);
    }
    match pkt.l3 {
        L3::Ipv4 => self.inc(Counter::Ipv4),
        L3::Ipv6 => self.inc(Counter::Ipv6),
        L3::Other => {
            self.inc(Counter::OtherL3);
            return;
        }
    }
    self.inc(match pkt.l4 {
        L4::Tcp => Counter::Tcp,
        L4::Udp => Counter::Udp,
        L4::Icmp => Counter::Icmp,
        L4::Vrrp => Counter::Vrrp,
        L4::Fragment => Counter::Fragment,
        L4::Other => Counter::OtherL4,
    });
    }
}

/// Adds a packet of `bytes` to service `id`'s counters.
#[inline(always)]
pub fn add_service(id: u32, bytes: u64) {
    if let Some(p) = KA_SVC_STATS.get_ptr_mut(id) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU.
        unsafe {
            (*p).packets += 1;
            (*p).bytes += bytes;
        }
    }
}

/// Adds a packet of `bytes` to backend `id`'s counters.
#[inline(always)]
pub fn add_backend(id: u32, bytes: u64) {
    if let Some(p) = KA_BACKEND_STATS.get_ptr_mut(id) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU.
        unsafe {
            (*p).packets += 1;
            (*p).bytes += bytes;
        }
    }
}
