//! Benchmark helpers of the `ka_xdp_bench_*` programs (never attached by ka).

use aya_ebpf::programs::XdpContext;

use crate::ptr::ptr_at_mut;

/// Offset of the IPv4 source address in an untagged frame without IP options.
const SRC_OFF: usize = 14 + 12;
/// Offset of the TCP/UDP source port in the same frame.
const SPORT_OFF: usize = 14 + 20;

/// Advances the source port of an untagged IPv4 TCP/UDP frame without options by one, and the
/// low 16 bits of the source address when the port wraps: the next run is a new 5-tuple.
/// Checksums are left alone (the benchmarked paths do not verify them).
#[inline(always)]
pub fn next_flow(ctx: &XdpContext) {
    let (Some(port), Some(src)) = (
        ptr_at_mut::<[u8; 2]>(ctx, SPORT_OFF),
        ptr_at_mut::<[u8; 4]>(ctx, SRC_OFF),
    ) else {
        return;
    };
    // SAFETY: both bounds-checked by ptr_at_mut.
    unsafe {
        let p = u16::from_be_bytes(*port).wrapping_add(1);
        *port = p.to_be_bytes();
        if p == 0 {
            let a = *src;
            let low = u16::from_be_bytes([a[2], a[3]]).wrapping_add(1).to_be_bytes();
            *src = [a[0], a[1], low[0], low[1]];
        }
    }
}
