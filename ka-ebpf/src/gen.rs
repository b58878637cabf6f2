//! Benchmark tools, never attached by ka (layouts in `ka_common::bench`): the end-to-end
//! benchmark's traffic generator, run by `BPF_PROG_TEST_RUN` in live-frames mode, the sink
//! that counts and drops what reaches the far side, and the forwarding floor.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_redirect, programs::XdpContext};
use ka_common::bench::{GEN_HDR_LEN, GEN_SPORT_OFF, GEN_UDP_CHECK_OFF, SINK_BYTES, SINK_PACKETS};

use crate::{
    csum::Delta,
    maps::{KA_FWD, KA_GEN, KA_GEN_SEQ, KA_SINK},
};

/// Writes the template header into the frame, picks the next flow's source port, and returns
/// `XDP_TX` (`XDP_ABORTED` when there is no template or the frame is shorter than the header).
#[inline(always)]
pub fn generate(ctx: &XdpContext) -> u32 {
    let Some(cfg) = KA_GEN.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let start = ctx.data();
    if start + GEN_HDR_LEN > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let src = cfg.hdr.as_ptr();
    // SAFETY: the frame holds GEN_HDR_LEN bytes (checked above) and the template
    // GEN_HDR_ROOM >= GEN_HDR_LEN. Word copies: the x86 BPF JIT and the verifier (without
    // BPF_F_STRICT_ALIGNMENT) accept packet and map accesses at any alignment.
    unsafe {
        let s = src as *const u64;
        let d = start as *mut u64;
        for i in 0..GEN_HDR_LEN / 8 {
            d.add(i).write_volatile(s.add(i).read_volatile());
        }
        let tail = GEN_HDR_LEN / 8 * 8;
        ((start + tail) as *mut u16).write_volatile((src.add(tail) as *const u16).read_volatile());
    }
    if cfg.flows > 1 {
        let Some(seq) = KA_GEN_SEQ.get_ptr_mut(0) else {
            return xdp_action::XDP_ABORTED;
        };
        // SAFETY: per-CPU value, one program run at a time on this CPU.
        let n = unsafe {
            *seq = (*seq).wrapping_add(1);
            *seq
        };
        let old = [cfg.hdr[GEN_SPORT_OFF], cfg.hdr[GEN_SPORT_OFF + 1]];
        let new = (u16::from_be_bytes(old).wrapping_add((n % cfg.flows) as u16)).to_be_bytes();
        let mut c = Delta::default();
        c.replace(&old, &new);
        let mut check = c.apply([cfg.hdr[GEN_UDP_CHECK_OFF], cfg.hdr[GEN_UDP_CHECK_OFF + 1]]);
        if check == [0, 0] {
            // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
            check = [0xff, 0xff];
        }
        // SAFETY: both fields lie inside the GEN_HDR_LEN bytes checked above.
        unsafe {
            ((start + GEN_SPORT_OFF) as *mut [u8; 2]).write_volatile(new);
            ((start + GEN_UDP_CHECK_OFF) as *mut [u8; 2]).write_volatile(check);
        }
    }
    xdp_action::XDP_TX
}

/// Counts the frame and its bytes, then drops it.
#[inline(always)]
pub fn sink(ctx: &XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    if let Some(p) = KA_SINK.get_ptr_mut(SINK_PACKETS) {
        // SAFETY: per-CPU value, one program run at a time on this CPU.
        unsafe { *p += 1 };
    }
    if let Some(p) = KA_SINK.get_ptr_mut(SINK_BYTES) {
        // SAFETY: as above.
        unsafe { *p += len };
    }
    xdp_action::XDP_DROP
}

/// Reads the frame's Ethernet and IPv4 headers and swaps its Ethernet addresses (what the
/// least load balancer does to a frame), then [`forward`]s it; a frame too short for both
/// headers is passed.
#[inline(always)]
pub fn forward_touch(ctx: &XdpContext) -> u32 {
    let Some(eth) = crate::ptr::ptr_at_mut::<ka_common::wire::EthHdr>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    let Some(ip) = crate::ptr::ptr_at_mut::<ka_common::wire::Ipv4Hdr>(ctx, core::mem::size_of::<ka_common::wire::EthHdr>()) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: bounds-checked by ptr_at_mut; the wire structs have alignment 1.
    unsafe {
        if (*ip).version_ihl >> 4 != 4 {
            return xdp_action::XDP_PASS;
        }
        let d = (*eth).dst;
        (*eth).dst = (*eth).src;
        (*eth).src = d;
    }
    forward()
}

/// Redirects the frame, untouched, to the interface in `KA_FWD`.
#[inline(always)]
pub fn forward() -> u32 {
    let ifindex = KA_FWD.get(0).copied().unwrap_or(0);
    // SAFETY: plain helper call; an unknown ifindex makes the redirect fail, not the program.
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}
