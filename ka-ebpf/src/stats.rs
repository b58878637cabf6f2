//! The per-CPU counters (indexes from `ka_common::stats::Counter`).

use aya_ebpf::{bindings::xdp_action, macros::map, maps::PerCpuArray};
use ka_common::stats::{Counter, COUNTER_COUNT};

use crate::parse::{Parsed, L3, L4};

/// `KA_STATS` (name: `ka_common::maps::STATS_MAP`).
#[map(name = "KA_STATS")]
static KA_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// Adds one to a counter.
#[inline(always)]
pub fn inc(counter: Counter) {
    if let Some(p) = KA_STATS.get_ptr_mut(counter.index()) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

/// Counts the verdict and returns it.
#[inline(always)]
pub fn verdict(action: u32) -> u32 {
    inc(match action {
        xdp_action::XDP_PASS => Counter::VerdictPass,
        xdp_action::XDP_DROP => Counter::VerdictDrop,
        xdp_action::XDP_TX => Counter::VerdictTx,
        xdp_action::XDP_REDIRECT => Counter::VerdictRedirect,
        _ => Counter::VerdictAborted,
    });
    action
}

/// Counts what the parser found.
#[inline(always)]
pub fn count_parsed(pkt: &Parsed) {
    if pkt.vlan_tags > 0 {
        inc(Counter::Vlan);
    }
    match pkt.l3 {
        L3::Ipv4 => inc(Counter::Ipv4),
        L3::Ipv6 => inc(Counter::Ipv6),
        L3::Other => {
            inc(Counter::OtherL3);
            return;
        }
    }
    inc(match pkt.l4 {
        L4::Tcp => Counter::Tcp,
        L4::Udp => Counter::Udp,
        L4::Icmp => Counter::Icmp,
        L4::Vrrp => Counter::Vrrp,
        L4::Fragment => Counter::Fragment,
        L4::Other => Counter::OtherL4,
    });
}

/// Adds a packet of `bytes` to service `id`'s counters.
#[inline(always)]
pub fn add_service(id: u32, bytes: u64) {
    if let Some(p) = crate::maps::KA_SVC_STATS.get_ptr_mut(id) {
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
    if let Some(p) = crate::maps::KA_BACKEND_STATS.get_ptr_mut(id) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU.
        unsafe {
            (*p).packets += 1;
            (*p).bytes += bytes;
        }
    }
}
