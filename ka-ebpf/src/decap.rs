//! The real-server side of TUN: strips the outer IPv4/IPv6 header of IPIP, IP6IP6 (and 4in6 /
//! 6in4) packets whose inner destination is a local VIP, for kernels without the ipip/ip6_tunnel
//! modules. Everything else passes untouched.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_head, programs::XdpContext};
use ka_common::{
    lb::{AddrKey, FAMILY_V4, FAMILY_V6},
    stats::Counter,
    wire::{EthHdr, Ipv4Hdr, Ipv6Hdr, ETH_P_IP, ETH_P_IPV6, IPPROTO_IPIP, IPPROTO_IPV6},
};

use crate::{
    maps::KA_LOCAL_VIPS,
    parse::L3,
    ptr::{ptr_at_mut, read_at},
    stats,
};

/// Decapsulates the stashed packet if it is a tunnel packet to a local VIP.
// Verifier/LLVM: a BPF-to-BPF call reading the stashed parse result (see `scratch::stash`).
#[inline(never)]
pub fn handle(ctx: &XdpContext) -> u32 {
    let Some(w) = crate::scratch::work() else {
        return xdp_action::XDP_PASS;
    };
    let pkt = &w.pkt;
    if pkt.l3 == L3::Other || (pkt.ip_proto != IPPROTO_IPIP && pkt.ip_proto != IPPROTO_IPV6) {
        return xdp_action::XDP_PASS;
    }
    if pkt.vlan_tags != 0 {
        stats::inc(Counter::PassLbUnsupported);
        return xdp_action::XDP_PASS;
    }
    let inner = pkt.l4_off;
    // The inner header must be of the family the outer protocol says and lie inside the outer
    // packet (found by the XDP fuzzer: any 20 bytes to a local VIP were passed on as IPv4,
    // version 11 or read from the Ethernet padding included).
    let end = pkt.l3_off + usize::from(pkt.ip_len);
    let (key, ether_type) = if pkt.ip_proto == IPPROTO_IPIP {
        let Some(ip) = read_at::<Ipv4Hdr>(ctx, inner).filter(|ip| {
            ip.version() == 4 && ip.header_len() >= core::mem::size_of::<Ipv4Hdr>() && inner + ip.header_len() <= end
        }) else {
            stats::inc(Counter::DecapMalformed);
            return xdp_action::XDP_PASS;
        };
        (
            AddrKey {
                addr: ka_common::lb::v4_in_16(ip.dst),
                family: FAMILY_V4,
                _pad: [0; 3],
            },
            ETH_P_IP,
        )
    } else {
        let Some(ip) = read_at::<Ipv6Hdr>(ctx, inner)
            .filter(|ip| ip.version() == 6 && inner + core::mem::size_of::<Ipv6Hdr>() <= end)
        else {
            stats::inc(Counter::DecapMalformed);
            return xdp_action::XDP_PASS;
        };
        (
            AddrKey {
                addr: ip.dst,
                family: FAMILY_V6,
                _pad: [0; 3],
            },
            ETH_P_IPV6,
        )
    };
    if KA_LOCAL_VIPS.get_ptr(&key).is_none() {
        stats::inc(Counter::DecapNotLocal);
        return xdp_action::XDP_PASS;
    }
    let Some(eth) = read_at::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    let outer = inner - pkt.l3_off;
    // SAFETY: plain helper call; pointers are re-derived from ctx afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer as i32) } != 0 {
        stats::inc(Counter::DropAdjust);
        return xdp_action::XDP_DROP;
    }
    let Some(p) = ptr_at_mut::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds-checked.
    unsafe {
        *p = EthHdr {
            dst: eth.dst,
            src: eth.src,
            ether_type: ether_type.to_be_bytes(),
        };
    }
    stats::inc(if pkt.l3 == L3::Ipv4 {
        Counter::DecapIpip
    } else {
        Counter::DecapIp6ip6
    });
    xdp_action::XDP_PASS
}
